//! Confirmed forwarding's back-to-back leg (see [`super::super::confirm`]): a child of
//! `core::calls`, so that the call's state is at hand and the hooks in `calls.rs` stay
//! small.
//!
//! A branch that must confirm is not proxied. The daemon opens a media session of its own
//! for the target (nothing is sent until the target's answer), and once the engine gives
//! its port, sends the target an INVITE of its own ([`TargetLeg`]), offering only the
//! codec agreed with the caller. The target's provisional responses are 180 to the
//! caller. Its 2xx is acknowledged, the session pointed at its answer, and the question
//! ([`super::super::confirm::prompt`]) played; its keys (RFC 4733, or INFO in our
//! dialog) are judged by [`ConfirmRun`]. `1`: a second session of ours is opened for the
//! caller, who is answered 200 from it (the daemon is the caller's UAS, as for an answered
//! announcement), the two sessions are bridged, and the executor takes the branch as the
//! one that answered. Another key, silence, or the target hanging up: our BYE to it, and
//! the branch fails (480, or the target's own code), so the plan goes on. A final failure
//! of the INVITE is the branch's failure with its code; an answer without the agreed codec
//! is acknowledged, hung up, and a 488.
//!
//! Once connected: the caller's BYE ends the call as any local dialog's does, and our
//! BYE goes to the target; the target's BYE is answered 200 and the caller gets our BYE;
//! no RTP on either session hangs up both; shutdown hangs up both.
//!
//! Either side may describe its stream again (a re-INVITE: hold, resume, a new address):
//! the leg it is on answers it from its own end of the stream ([`OurStream`]), and the
//! other side is not asked — the daemon relays between its two sessions, so what a
//! holding phone still sends (music) reaches the other, and a held side is sent nothing.
//! Our 2xx to the target's re-INVITE is sent again until its ACK.
//!
//! The target is found as a proxied branch's would be (`route_of`): a host name (a trunk
//! named so, a destination's URI) is located first (RFC 3263), the leg's session opened
//! once it is, and an INVITE that fails at one target before any provisional response
//! (no answer, a transport error, 503) goes to the next. A carrier that challenges our
//! INVITE to a trunk with an account gets the account's credentials, as for a proxied
//! branch (a second challenge fails the leg 403, "Trunk Authentication Failed").
//! Our BYE to the target is answered the same way when challenged; the call is kept until
//! it is over (`settled`).

use super::*;
use crate::core::carrier_auth::Challenged;
use crate::core::confirm::{prompt, ConfirmRun, Verdict, CONFIRM_REPEATS, CONFIRM_WAIT};
use crate::core::confirm_leg::{agreed_codec, LegSetup, TargetLeg};
use crate::core::locating::{target_of, Located, Waiter};
use crate::core::media::{Library, Refusal};
use crate::core::our_stream::{self, OurStream};
use crate::core::wire::Output;
use std::net::IpAddr;
use std::sync::Arc;
use switchboard_media::g711::Law;
use switchboard_media::sdp;
use switchboard_media::session::{Command as MediaCommand, Event, Open};
use switchboard_policy::CallerIdRule;

/// The payload type of telephone-event in our SDP.
const TELEPHONE_EVENT: u8 = 101;

/// The code a branch fails with when its target did not accept the call.
const NOT_ACCEPTED: u16 = 480;

/// Where a confirmed leg is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Its target's host name is being located (RFC 3263); its session is reserved.
    Resolving,
    /// Its target-side session is opening (no INVITE yet).
    Opening,
    /// Our INVITE is out.
    Inviting,
    /// The target answered: the question plays, a key is awaited.
    Asking,
    /// The target accepted: the caller-side session is opening.
    Accepting,
    /// The caller is answered and the sessions bridged.
    Connected,
    /// Over (the branch has its outcome).
    Over,
}

/// A confirmed branch's back-to-back leg (kept in its [`Branch`]).
pub(super) struct ConfirmLeg {
    phase: Phase,
    /// The target-side session, and the caller-side one once asked for.
    target_session: SessionId,
    caller_session: Option<SessionId>,
    /// The dialog with the target, once its INVITE is made.
    leg: Option<TargetLeg>,
    /// Where our requests to the target go (once located), and the targets of its URI
    /// not tried yet (RFC 3263: the next when one fails without a provisional response).
    peer: Option<Peer>,
    targets: VecDeque<Peer>,
    /// The target's URI and To.
    uri: String,
    to: String,
    /// The caller ID the leg's rule gives (written as a trunk's carrier wants numbers),
    /// and header fields our INVITE carries besides.
    rule: CallerIdRule,
    headers: Vec<Header>,
    /// The trunk whose account answers the carrier's challenges, and our INVITE as last
    /// sent to answer them with.
    account_of: Option<String>,
    carrier: Option<Box<Challenged>>,
    law: Law,
    telephone_event: bool,
    /// Media settings of the engine.
    address: Option<IpAddr>,
    rtp_timeout: Duration,
    library: Arc<Library>,
    /// Our INVITE's transaction, and our BYE's (the call is kept until both are over, so
    /// that a carrier's challenge to either is answered).
    invite_tx: Option<TxId>,
    bye_tx: Option<TxId>,
    provisional: bool,
    /// A CANCEL waits for the first provisional response (§9.1).
    cancel: bool,
    /// The question, once the target answered.
    run: Option<ConfirmRun>,
    /// When its wait for a key is due (filed in [`Index::waits`]).
    wait: Option<Instant>,
    /// The To tag of our 180s to the caller.
    ringing_tag: String,
    /// Our ends of the two streams once they begin (the target's at its 2xx, the
    /// caller's when it is answered): what answers each side's re-INVITEs.
    target_stream: Option<OurStream>,
    caller_stream: Option<OurStream>,
    /// Our 2xx to the target's re-INVITE, until its ACK.
    unacked: Option<Unacked>,
}

impl ConfirmLeg {
    /// A re-INVITE of the far end of session `id` (the caller's or the target's): our SDP
    /// for its 2xx (see [`OurStream::reoffered`]: the other leg is not asked, as the
    /// daemon relays the media between the two; a side on hold gets nothing and what it
    /// still sends, music on hold, is relayed). Err with the refusal; 491 when that
    /// side's stream has not begun.
    pub(super) fn reoffered(
        &mut self,
        out: &mut VecDeque<Output>,
        id: SessionId,
        req: &Request,
    ) -> Result<Vec<u8>, Refusal> {
        let rtp_timeout = self.rtp_timeout;
        match self.stream(id) {
            Some(stream) => stream.reoffered(out, id, req, rtp_timeout),
            None => Err(Refusal {
                why: "the stream is still being set up".into(),
                code: Some(491),
            }),
        }
    }

    /// The ACK of our 2xx to a re-INVITE of the far end of session `id` (see
    /// [`OurStream::acked`]).
    pub(super) fn reacked(&mut self, out: &mut VecDeque<Output>, id: SessionId, ack: &Request) {
        let rtp_timeout = self.rtp_timeout;
        if let Some(stream) = self.stream(id) {
            stream.acked(out, id, ack, rtp_timeout);
        }
    }

    /// Our 2xx to the target's re-INVITE not yet acknowledged.
    pub(super) fn unacked(&mut self) -> &mut Option<Unacked> {
        &mut self.unacked
    }

    fn stream(&mut self, id: SessionId) -> Option<&mut OurStream> {
        if id == self.target_session {
            self.target_stream.as_mut()
        } else if Some(id) == self.caller_session {
            self.caller_stream.as_mut()
        } else {
            None
        }
    }
}

/// What `Calls` keeps for the confirmed legs of all calls.
#[derive(Default)]
pub(super) struct Index {
    /// The sessions of confirmed legs: their call and branch.
    sessions: HashMap<SessionId, (u64, BranchId)>,
    /// The target dialogs by our Call-ID: their call and branch.
    dialogs: HashMap<String, (u64, BranchId)>,
    /// Waits for a key, by when they end.
    waits: BTreeSet<(Instant, u64, BranchId)>,
}

impl Index {
    /// Whether session `id` is one of a confirmed leg's.
    pub(super) fn has(&self, id: SessionId) -> bool {
        self.sessions.contains_key(&id)
    }

    /// When [`Calls::confirm_timeout`] is next due.
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        self.waits.first().map(|(at, _, _)| *at)
    }
}

/// The confirmed leg of branch `branch` of a call's `branches`, if it is one.
fn leg_mut(branches: &mut [Branch], branch: BranchId) -> Option<&mut ConfirmLeg> {
    branches
        .get_mut(branch)
        .and_then(|b| b.confirm.as_deref_mut())
}

/// Whether a branch has no INVITE or BYE of a confirmed leg still open (a call is kept
/// until their final responses, so that a 2xx crossing our CANCEL is acknowledged and hung
/// up, and a carrier's challenge to our BYE answered).
pub(super) fn settled(b: &Branch) -> bool {
    b.confirm
        .as_ref()
        .is_none_or(|c| c.invite_tx.is_none() && c.bye_tx.is_none())
}

/// Starts confirmed branch `start.branch`: where it goes is found as a proxied branch's
/// would be ([`route_of`]: a registered device's binding, a number at its trunk, a
/// destination's URI), its target-side session reserved, and opened once the target's
/// address is known (at once, or when its host name is located: [`located`]). Err with
/// the code the branch fails with.
pub(super) fn start(
    cx: &mut Ctx<'_>,
    index: &mut Index,
    key: u64,
    call: &mut CallState,
    start: crate::executor::BranchStart,
) -> Result<(), u16> {
    let now = cx.now;
    let b = start.branch;
    while call.branches.len() <= b {
        call.branches.push(Branch::default());
    }
    let (prepared, whither) = route_of(cx, call, &start)?;
    let to = match (&start.target, &prepared.user) {
        (BranchTarget::Device { .. }, Some(user)) => format!("<sip:{user}@{}>", cx.config.realm),
        _ => format!("<{}>", prepared.uri),
    };
    let offer =
        sdp::Session::parse(&call.invite.body, &sdp::Limits::default()).map_err(|_| 488u16)?;
    let (law, telephone_event) = agreed_codec(&offer).map_err(|_| 488u16)?;
    let others = index.sessions.len();
    let Some((id, address, rtp_timeout, library)) = cx.media.reserve(others) else {
        tracing::info!(call_id = %call.call_id, "no media session for a leg to confirm");
        return Err(503);
    };
    index.sessions.insert(id, (key, b));
    let ringing_tag = cx.wire.tag();
    let br = &mut call.branches[b];
    br.what = format!("{} (to confirm)", prepared.what);
    br.user = prepared.user;
    br.confirm = Some(Box::new(ConfirmLeg {
        phase: Phase::Resolving,
        target_session: id,
        caller_session: None,
        leg: None,
        peer: None,
        targets: VecDeque::new(),
        uri: prepared.uri,
        to,
        rule: prepared.caller_id,
        headers: prepared.headers,
        account_of: prepared.account_of,
        carrier: None,
        law,
        telephone_event,
        address,
        rtp_timeout,
        library,
        invite_tx: None,
        bye_tx: None,
        provisional: false,
        cancel: false,
        run: None,
        wait: None,
        ringing_tag,
        target_stream: None,
        caller_stream: None,
        unacked: None,
    }));
    let located = match whither {
        // As found (a device's flow and the address it registered to kept).
        Where::Peer(peer) => Ok(vec![peer]),
        Where::Locate(uri) => {
            let waiter = Waiter::Branch {
                call: key,
                branch: b,
            };
            match cx.locating.resolve(&uri, waiter, now.mono) {
                Located::Done(outcome) => outcome.map(peers),
                Located::Pending(rid) => {
                    tracing::debug!(call_id = %call.call_id, branch = b, uri, "confirm leg waits for its URI's targets (DNS)");
                    call.branches[b].resolving = Some(rid);
                    return Ok(());
                }
            }
        }
    };
    if let Err(code) = open_target(cx, call, b, located) {
        index.sessions.remove(&id);
        call.branches[b].confirm = None;
        return Err(code);
    }
    Ok(())
}

/// The peers of a resolution's targets, in order.
fn peers(resolved: Resolved) -> Vec<Peer> {
    resolved.targets.into_iter().map(Target::peer).collect()
}

/// The targets of a leg's URI are known: its target-side session opens, with the first
/// as where our requests go (the others kept to fail over to). Err(503) when there is
/// none.
fn open_target(
    cx: &mut Ctx<'_>,
    call: &mut CallState,
    branch: BranchId,
    located: Result<Vec<Peer>, LocateError>,
) -> Result<(), u16> {
    let Some(c) = leg_mut(&mut call.branches, branch) else {
        return Err(500);
    };
    let mut targets: VecDeque<Peer> = match located {
        Ok(targets) => targets.into(),
        Err(e) => {
            tracing::warn!(call_id = %call.call_id, branch, uri = %c.uri, error = %e, "a leg to confirm cannot be located");
            told(cx, call, branch, 503, message::warning(&e.to_string()));
            return Err(503);
        }
    };
    let Some(peer) = targets.pop_front() else {
        return Err(503);
    };
    c.peer = Some(peer);
    c.targets = targets;
    c.phase = Phase::Opening;
    cx.wire
        .out
        .push_back(Output::Media(MediaCommand::Open(Open {
            id: c.target_session,
            remote: None,
            signalling: peer.addr.ip(),
            law: c.law,
            payload_type: c.law.payload_type(),
            telephone_event: c.telephone_event.then_some(TELEPHONE_EVENT),
            ptime_ms: 20,
            send: true,
            rtp_timeout: c.rtp_timeout,
        })));
    Ok(())
}

impl Calls {
    /// The resolution a confirmed branch waited for (see [`Calls::located`]): its session
    /// opens, or the branch fails 503.
    pub(super) fn confirm_located(
        &mut self,
        cx: &mut Ctx<'_>,
        key: u64,
        branch: BranchId,
        outcome: Result<Resolved, LocateError>,
    ) {
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        if let Err(code) = open_target(cx, call, branch, outcome.map(peers)) {
            end_leg(cx, &mut self.confirm, key, call, branch, Some(code));
        }
        self.drive(cx, key);
    }
}

/// A request of ours to the target, with a Via of ours, on a client transaction owned by
/// the leg.
fn send_to_target(
    cx: &mut Ctx<'_>,
    key: u64,
    branch: BranchId,
    mut req: Request,
    mut dest: Peer,
) -> Option<(TxId, Request)> {
    let local = cx.wire.leave_from(&mut dest)?;
    let via = Header::Via(local.via(&cx.wire.branch(None)).into());
    req.headers.0.insert(0, via);
    let owner = Owner::Confirm { call: key, branch };
    let sent = req.clone();
    let tx = cx.wire.send_request(req, dest, owner, cx.now).ok()?;
    Some((tx, sent))
}

/// The From of our INVITE: the number the leg's rule gives, else the caller's own.
fn leg_from(cx: &Ctx<'_>, call: &CallState, rule: &CallerIdRule) -> String {
    let realm = &cx.config.realm;
    let (number, name) = match rule {
        CallerIdRule::Number { number, display } => (number.clone(), display.clone()),
        CallerIdRule::Caller => caller_identity(call, cx.directory.policy()),
    };
    let number = if number.is_empty() {
        "anonymous".to_string()
    } else {
        number
    };
    let uri = format!("sip:{}@{realm}", quote(&number));
    match name {
        Some(n) => format!("\"{}\" <{uri}>", quote(&n)),
        None => format!("<{uri}>"),
    }
}

/// Sends the leg's INVITE to where its requests go now (`c.peer`), on a new transaction:
/// with the caller ID the leg's rule gives (P-Asserted-Identity too) and its other header
/// fields, kept to answer a carrier's challenge when the leg leaves through a trunk with an
/// account. False when it cannot be sent.
fn send_invite(cx: &mut Ctx<'_>, key: u64, call: &mut CallState, branch: BranchId) -> bool {
    let Some(c) = call.branches.get(branch).and_then(|b| b.confirm.as_ref()) else {
        return false;
    };
    let (Some(dest), Some(mut invite)) = (c.peer, c.leg.as_ref().and_then(TargetLeg::invite))
    else {
        return false;
    };
    let policy = cx.directory.policy();
    apply_identity(&cx.config.realm, &mut invite, call, &c.rule, policy);
    for h in &c.headers {
        invite.headers.push(h.clone());
    }
    let Some((tx, sent)) = send_to_target(cx, key, branch, invite, dest) else {
        return false;
    };
    let b = &mut call.branches[branch];
    b.peer = Some(dest);
    let Some(c) = b.confirm.as_mut() else {
        return false;
    };
    c.carrier = c
        .account_of
        .clone()
        .map(|trunk| Challenged::new(trunk, sent));
    c.invite_tx = Some(tx);
    c.provisional = false;
    tracing::debug!(call_id = %call.call_id, branch, to = %dest, "confirm leg: INVITE sent");
    true
}

/// Our INVITE failed at its target before any provisional response (no answer, a
/// transport error, 503): it goes to the URI's next target (RFC 3263 §4.3), the failed
/// one reported (put last for `retry_after` when the 503 said). False when there is none
/// left (or none could be sent to).
fn fail_over(
    cx: &mut Ctx<'_>,
    key: u64,
    call: &mut CallState,
    branch: BranchId,
    retry_after: Option<Duration>,
) -> bool {
    loop {
        let Some(c) = leg_mut(&mut call.branches, branch)
            .filter(|c| c.phase == Phase::Inviting && !c.provisional && !c.cancel)
        else {
            return false;
        };
        if let Some(failed) = c.peer {
            cx.locating
                .locator
                .report_failure(target_of(failed), retry_after, cx.now.mono);
        }
        let Some(next) = c.targets.pop_front() else {
            return false;
        };
        c.peer = Some(next);
        c.invite_tx = None;
        // Reached from another address of ours: our Contact and offer say that one.
        let mut dest = next;
        if let Some(local) = cx.wire.leave_from(&mut dest) {
            let media = c.address.unwrap_or(local.addr.ip());
            if let Some(leg) = c.leg.as_mut() {
                leg.moved(proxy::strip_angle(&local.contact()).to_string(), media);
            }
        }
        tracing::info!(call_id = %call.call_id, branch, to = %next.addr, "confirm leg: on to the next target");
        if send_invite(cx, key, call, branch) {
            return true;
        }
    }
}

/// The carrier challenged our INVITE (or our BYE) of a leg through a trunk with an account
/// (401 or 407): it goes again with the account's credentials, one CSeq number higher, on
/// a new transaction (as a proxied branch's, see [`super::carrier_auth`]). Ok when it went;
/// Err(Some(403)) when the carrier refused the account (or asks what it cannot give:
/// logged and counted); Err(None) when there is no account to answer with (the leg fails
/// with the challenge's code).
fn answer_challenge(
    cx: &mut Ctx<'_>,
    key: u64,
    call: &mut CallState,
    branch: BranchId,
    tx: TxId,
    resp: &Response,
) -> Result<(), Option<u16>> {
    let now = cx.now;
    let directory = cx.directory;
    let code = resp.status_code.code();
    let Some(c) = leg_mut(&mut call.branches, branch) else {
        return Err(None);
    };
    let (Some(carrier), Some(mut peer)) = (c.carrier.as_mut(), c.peer) else {
        return Err(None);
    };
    let Some(account) = directory
        .policy()
        .trunk(&carrier.trunk)
        .and_then(|t| t.account.as_ref())
    else {
        let why = "the trunk has no account any more";
        cx.carrier.refused(&carrier.trunk, &call.call_id, code, why);
        told(cx, call, branch, 403, proxy::reason(code, why));
        return Err(Some(403));
    };
    let Some(local) = cx.wire.leave_from(&mut peer) else {
        return Err(Some(503));
    };
    let via = local.via(&cx.wire.branch(None));
    let req = match cx
        .carrier
        .answer(&mut cx.wire.entropy, account, carrier, resp, via)
    {
        Ok(req) => req,
        Err(why) => {
            cx.carrier.refused(&carrier.trunk, &call.call_id, code, why);
            told(cx, call, branch, 403, proxy::reason(code, why));
            return Err(Some(403));
        }
    };
    let Some(cseq) = message::cseq_number(&req.headers) else {
        return Err(Some(500));
    };
    // The challenged transaction absorbs what is left of it on its own.
    cx.wire.owners.remove(&tx);
    let owner = Owner::Confirm { call: key, branch };
    match cx.wire.send_request(req, peer, owner, now) {
        Ok(new) => {
            tracing::debug!(call_id = %call.call_id, branch, trunk = %carrier.trunk, code, "carrier's challenge to a leg to confirm answered");
            let bye = c.bye_tx == Some(tx);
            if let Some(leg) = c.leg.as_mut() {
                leg.renumbered(cseq, !bye);
            }
            if bye {
                c.bye_tx = Some(new);
            } else {
                c.invite_tx = Some(new);
                c.provisional = false;
            }
            Ok(())
        }
        Err(e) => {
            tracing::warn!(call_id = %call.call_id, error = %e, "authenticated request of a leg to confirm not sent");
            Err(Some(503))
        }
    }
}

/// What the caller is told when a leg fails with `code` and its answer is the best the
/// call gets: our response, with `why` (a Warning, a Reason); a refused trunk account is
/// "Trunk Authentication Failed", as for a proxied branch.
fn told(cx: &mut Ctx<'_>, call: &mut CallState, branch: BranchId, code: u16, why: Header) {
    let tag = cx.wire.tag();
    let mut resp = message::response(&call.invite, code, Some(&tag), &cx.wire.server);
    if matches!(why, Header::Reason(_)) {
        message::set_reason_phrase(&mut resp, "Trunk Authentication Failed");
    }
    resp.headers.push(why);
    if let Some(b) = call.branches.get_mut(branch) {
        b.response = Some(resp);
    }
}

/// Our BYE to the target of an answered leg (nothing when it is not answered).
fn bye_target(cx: &mut Ctx<'_>, key: u64, branch: BranchId, c: &mut ConfirmLeg) {
    let Some(dest) = c.peer else {
        return;
    };
    if let Some(bye) = c.leg.as_mut().and_then(TargetLeg::bye) {
        match send_to_target(cx, key, branch, bye, dest) {
            Some((tx, sent)) => {
                c.bye_tx = Some(tx);
                c.carrier = c
                    .account_of
                    .clone()
                    .map(|trunk| Challenged::new(trunk, sent));
            }
            None => tracing::debug!(branch, "BYE to the confirm target not sent"),
        }
    }
}

/// Ends a leg that did not connect: its target hung up on (after its 2xx) or cancelled
/// (before), its sessions closed; the branch fails with `code` unless `quiet` (the call
/// no longer waits on it).
fn end_leg(
    cx: &mut Ctx<'_>,
    index: &mut Index,
    key: u64,
    call: &mut CallState,
    branch: BranchId,
    code: Option<u16>,
) {
    let now = cx.now;
    let Some(b) = call.branches.get_mut(branch) else {
        return;
    };
    let Some(c) = b.confirm.as_mut() else {
        return;
    };
    let answered = matches!(c.phase, Phase::Asking | Phase::Accepting | Phase::Connected);
    if c.phase == Phase::Over {
        return;
    }
    if answered {
        bye_target(cx, key, branch, c);
    } else if let Some(tx) = c.invite_tx {
        if c.provisional {
            send_cancel(cx, tx, c.peer, None);
        } else {
            c.cancel = true;
        }
    }
    c.phase = Phase::Over;
    c.run = None;
    // Our 2xx to a re-INVITE of the target is not sent again (its entry in the resends
    // finds nothing).
    c.unacked = None;
    if let Some(at) = c.wait.take() {
        index.waits.remove(&(at, key, branch));
    }
    for id in [Some(c.target_session), c.caller_session]
        .into_iter()
        .flatten()
    {
        cx.wire
            .out
            .push_back(Output::Media(MediaCommand::Close { id }));
        index.sessions.remove(&id);
    }
    if let Some(u) = &b.user {
        cx.presence
            .model_mut()
            .leg_ended(u, &call.call_id, &format!("b{branch}"));
    }
    if !b.done {
        b.done = true;
        if let Some(code) = code {
            if b.response.is_none() {
                // What the caller is told should this be the best answer the call gets:
                // the target's code where it means the same to the caller and needs no
                // header field of the target's (a redirect's Contact, a challenge…), else
                // 480.
                let code = match code {
                    403 | 404 | 408 | 410 | 480 | 486 | 488 | 500..=599 | 600 | 603 | 604 => code,
                    _ => NOT_ACCEPTED,
                };
                let tag = cx.wire.tag();
                let resp = message::response(&call.invite, code, Some(&tag), &cx.wire.server);
                b.response = Some(resp);
            }
            call.exec.branch_failed(branch, code, now.mono);
        }
    }
}

/// The caller-side session opened: the caller is answered 200 from it, the sessions
/// bridged, the branch the one that answered.
fn connect(
    calls: &mut Calls,
    cx: &mut Ctx<'_>,
    key: u64,
    branch: BranchId,
    id: SessionId,
    port: u16,
) {
    let now = cx.now;
    let Some(call) = calls.calls.get_mut(&key) else {
        return;
    };
    let Some(c) = leg_mut(&mut call.branches, branch) else {
        return;
    };
    let address = c.address.unwrap_or(call.inbound.addr.ip());
    let local = switchboard_media::offer_answer::Local {
        address,
        port,
        session_id: id.0,
        version: 1,
        laws: vec![c.law],
        telephone_event: TELEPHONE_EVENT,
    };
    let answer = sdp::Session::parse(&call.invite.body, &sdp::Limits::default())
        .ok()
        .and_then(|offer| switchboard_media::offer_answer::answer(&offer, &local).ok());
    let Some((sdp, stream)) = answer else {
        // The offer was answered before the open: not reached.
        return end_leg(cx, &mut calls.confirm, key, call, branch, Some(488));
    };
    c.phase = Phase::Connected;
    let target = c.target_session;
    let sdp = sdp.to_bytes();
    c.caller_stream = Some(OurStream::new(local, c.law, sdp.clone()));
    cx.wire
        .out
        .push_back(our_stream::update(id, &stream, c.rtp_timeout));
    cx.wire
        .out
        .push_back(Output::Media(MediaCommand::Bridge { a: id, b: target }));
    calls.answer_caller(cx, key, branch, id, sdp);
    if let Some(call) = calls.calls.get_mut(&key) {
        if let Some(u) = call.branches.get(branch).and_then(|b| b.user.as_ref()) {
            // Busy until the call ends (`end_leg` when it is forgotten).
            cx.presence.model_mut().leg(
                u,
                &call.call_id,
                &format!("b{branch}"),
                LegState::Answered,
            );
        }
        call.exec.branch_answered(branch, now.mono);
        tracing::info!(call_id = %call.call_id, branch, "the forward target accepted the call: connected");
    }
}

impl Calls {
    /// An event of the engine for a session of a confirmed leg: handled (true), or not
    /// one of theirs (false).
    pub(crate) fn confirm_media(&mut self, cx: &mut Ctx<'_>, event: &Event) -> bool {
        let id = match event {
            Event::Opened { id, .. }
            | Event::Failed { id, .. }
            | Event::Played { id }
            | Event::Digit { id, .. }
            | Event::Timeout { id }
            | Event::Recorded { id, .. }
            | Event::Closed { id, .. } => *id,
        };
        let Some(&(key, branch)) = self.confirm.sessions.get(&id) else {
            return false;
        };
        let now = cx.now;
        let Some(call) = self.calls.get_mut(&key) else {
            self.confirm.sessions.remove(&id);
            return true;
        };
        let Some(c) = leg_mut(&mut call.branches, branch) else {
            return true;
        };
        match event {
            Event::Opened { port, .. } if id == c.target_session && c.phase == Phase::Opening => {
                let port = *port;
                self.invite_target(cx, key, branch, id, port);
            }
            Event::Opened { port, .. }
                if Some(id) == c.caller_session && c.phase == Phase::Accepting =>
            {
                let port = *port;
                connect(self, cx, key, branch, id, port);
                self.drive(cx, key);
            }
            Event::Failed { why, .. } => {
                self.confirm.sessions.remove(&id);
                tracing::warn!(call_id = %call.call_id, branch, %why, "confirm leg: media session not opened");
                end_leg(cx, &mut self.confirm, key, call, branch, Some(503));
                self.drive(cx, key);
            }
            Event::Played { .. } if id == c.target_session && c.phase == Phase::Asking => {
                if let Some(run) = c.run.as_mut() {
                    run.played(now.mono);
                    let at = run.deadline();
                    if let Some(old) = c.wait.take() {
                        self.confirm.waits.remove(&(old, key, branch));
                    }
                    if let Some(at) = at {
                        c.wait = Some(at);
                        self.confirm.waits.insert((at, key, branch));
                    }
                }
            }
            Event::Digit { digit, .. } if id == c.target_session && c.phase == Phase::Asking => {
                let verdict = c
                    .run
                    .as_mut()
                    .map_or(Verdict::Nothing, |r| r.digit(*digit, now.mono));
                self.confirm_verdict(cx, key, branch, verdict);
            }
            Event::Timeout { .. } if c.phase == Phase::Connected => {
                tracing::info!(call_id = %call.call_id, branch, "no RTP on a confirmed call: both hung up");
                end_local(cx, &mut self.local_ends, call, true, "rtp timeout");
                self.drive(cx, key);
            }
            Event::Closed { .. } => {
                self.confirm.sessions.remove(&id);
            }
            _ => {}
        }
        true
    }

    /// The target-side session of a leg is open on `port`: our INVITE goes to the target.
    fn invite_target(
        &mut self,
        cx: &mut Ctx<'_>,
        key: u64,
        branch: BranchId,
        id: SessionId,
        port: u16,
    ) {
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        let Some(c) = call.branches.get(branch).and_then(|b| b.confirm.as_ref()) else {
            return;
        };
        let local = c.peer.and_then(|mut dest| cx.wire.leave_from(&mut dest));
        let Some(local) = local else {
            end_leg(cx, &mut self.confirm, key, call, branch, Some(503));
            return self.drive(cx, key);
        };
        let setup = LegSetup {
            call_id: format!("{}-confirm", cx.wire.tag()),
            from_tag: cx.wire.tag(),
            from: leg_from(cx, call, &c.rule),
            target: c.uri.clone(),
            to: c.to.clone(),
            // Bare: the leg puts it in angle brackets.
            contact: proxy::strip_angle(&local.contact()).to_string(),
            media: std::net::SocketAddr::new(c.address.unwrap_or(local.addr.ip()), port),
            session_id: id.0,
            law: c.law,
            telephone_event: c.telephone_event,
        };
        let leg = TargetLeg::new(setup);
        self.confirm
            .dialogs
            .insert(leg.call_id().to_string(), (key, branch));
        let b = &mut call.branches[branch];
        if let Some(c) = b.confirm.as_mut() {
            c.leg = Some(leg);
            c.phase = Phase::Inviting;
        }
        if let Some(u) = &b.user {
            cx.presence
                .model_mut()
                .leg(u, &call.call_id, &format!("b{branch}"), LegState::Ringing);
        }
        if !send_invite(cx, key, call, branch) && !fail_over(cx, key, call, branch, None) {
            end_leg(cx, &mut self.confirm, key, call, branch, Some(503));
            self.drive(cx, key);
        }
    }

    /// What the target's key (or silence) amounts to.
    fn confirm_verdict(&mut self, cx: &mut Ctx<'_>, key: u64, branch: BranchId, verdict: Verdict) {
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        let Some(c) = leg_mut(&mut call.branches, branch) else {
            return;
        };
        if let Some(at) = c.wait.take() {
            self.confirm.waits.remove(&(at, key, branch));
        }
        match verdict {
            Verdict::Nothing => {
                if let Some(at) = c.run.as_ref().and_then(ConfirmRun::deadline) {
                    c.wait = Some(at);
                    self.confirm.waits.insert((at, key, branch));
                }
            }
            Verdict::Play { stop, clips } => {
                let id = c.target_session;
                if stop {
                    cx.wire
                        .out
                        .push_back(Output::Media(MediaCommand::Stop { id }));
                }
                cx.wire
                    .out
                    .push_back(Output::Media(MediaCommand::Play { id, clips }));
            }
            Verdict::Accepted => {
                if call.final_sent {
                    // The caller is gone (or answered elsewhere) meanwhile.
                    end_leg(cx, &mut self.confirm, key, call, branch, None);
                    return self.drive(cx, key);
                }
                let others = self.confirm.sessions.len();
                let Some((id, _, _, _)) = cx.media.reserve(others) else {
                    end_leg(cx, &mut self.confirm, key, call, branch, Some(503));
                    return self.drive(cx, key);
                };
                let signalling = cx
                    .wire
                    .transactions
                    .peer(call.server_tx)
                    .map(|p| p.addr.ip())
                    .unwrap_or(call.inbound.addr.ip());
                c.run = None;
                c.phase = Phase::Accepting;
                c.caller_session = Some(id);
                cx.wire
                    .out
                    .push_back(Output::Media(MediaCommand::Open(Open {
                        id,
                        remote: None,
                        signalling,
                        law: c.law,
                        payload_type: c.law.payload_type(),
                        telephone_event: c.telephone_event.then_some(TELEPHONE_EVENT),
                        ptime_ms: 20,
                        send: true,
                        rtp_timeout: c.rtp_timeout,
                    })));
                self.confirm.sessions.insert(id, (key, branch));
                tracing::info!(call_id = %call.call_id, branch, "the forward target pressed 1");
            }
            Verdict::Declined(how) => {
                tracing::info!(call_id = %call.call_id, branch, how, "the forward target did not accept the call");
                end_leg(cx, &mut self.confirm, key, call, branch, Some(NOT_ACCEPTED));
                self.drive(cx, key);
            }
        }
    }

    /// Waits for the target's key that are over.
    pub(super) fn confirm_timeout(&mut self, cx: &mut Ctx<'_>) {
        while let Some(&(at, key, branch)) = self.confirm.waits.first() {
            if at > cx.now.mono {
                break;
            }
            self.confirm.waits.remove(&(at, key, branch));
            let now = cx.now.mono;
            let verdict = self
                .calls
                .get_mut(&key)
                .and_then(|call| call.branches.get_mut(branch))
                .and_then(|b| b.confirm.as_mut())
                .filter(|c| c.wait == Some(at))
                .and_then(|c| {
                    c.wait = None;
                    c.run.as_mut()
                })
                .map(|run| run.timeout(now));
            if let Some(v) = verdict {
                self.confirm_verdict(cx, key, branch, v);
            }
        }
    }

    /// A response to a request of a confirmed leg (our INVITE, or our BYE).
    pub(crate) fn confirm_response(
        &mut self,
        cx: &mut Ctx<'_>,
        key: u64,
        branch: BranchId,
        tx: TxId,
        resp: Response,
    ) {
        let now = cx.now;
        let code = resp.status_code.code();
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        let caller = caller_identity(call, cx.directory.policy()).0;
        let Some(b) = call.branches.get_mut(branch) else {
            return;
        };
        let Some(c) = b.confirm.as_mut() else {
            return;
        };
        let invite = c.leg.as_ref().is_some_and(|l| l.answers_invite(&resp))
            && resp
                .cseq_header()
                .is_ok_and(|h| h.value().trim_end().ends_with("INVITE"));
        if !invite {
            if c.bye_tx != Some(tx) || code < 200 {
                return;
            }
            // Our BYE's answer: a challenge is answered, anything else ends it.
            if matches!(code, 401 | 407)
                && answer_challenge(cx, key, call, branch, tx, &resp).is_ok()
            {
                return;
            }
            if let Some(c) = leg_mut(&mut call.branches, branch) {
                c.bye_tx = None;
            }
            return self.drive(cx, key);
        }
        if let (true, false, Some(peer)) = (c.invite_tx == Some(tx), code == 503, c.peer) {
            cx.locating.locator.report_success(target_of(peer));
        }
        if code < 200 {
            if c.invite_tx == Some(tx) && !c.provisional {
                c.provisional = true;
                if c.cancel {
                    c.cancel = false;
                    send_cancel(cx, tx, c.peer, None);
                    return;
                }
            }
            if code > 100 && c.phase == Phase::Inviting {
                b.provisional = true;
                if !call.final_sent {
                    // The caller hears it ring, as for a proxied branch.
                    let tag = c.ringing_tag.clone();
                    let ringing = message::response(&call.invite, 180, Some(&tag), &cx.wire.server);
                    cx.wire.respond(call.server_tx, ringing, now);
                }
            }
            return;
        }
        if code >= 300 {
            if c.invite_tx != Some(tx) {
                return;
            }
            if c.phase == Phase::Inviting {
                let retry_after = message::retry_after(&resp.headers).map(Duration::from_secs);
                if code == 503 && fail_over(cx, key, call, branch, retry_after) {
                    return;
                }
                if matches!(code, 401 | 407) {
                    match answer_challenge(cx, key, call, branch, tx, &resp) {
                        Ok(()) => return,
                        Err(Some(code)) => {
                            if let Some(c) = leg_mut(&mut call.branches, branch) {
                                c.invite_tx = None;
                            }
                            end_leg(cx, &mut self.confirm, key, call, branch, Some(code));
                            return self.drive(cx, key);
                        }
                        Err(None) => {}
                    }
                }
            }
            // The INVITE is over: nothing to CANCEL any more.
            if let Some(c) = leg_mut(&mut call.branches, branch).filter(|c| c.invite_tx == Some(tx))
            {
                c.invite_tx = None;
                if c.phase == Phase::Inviting {
                    tracing::info!(call_id = %call.call_id, branch, code, "the forward target refused the call");
                    end_leg(cx, &mut self.confirm, key, call, branch, Some(code));
                }
            }
            return self.drive(cx, key);
        }
        // A 2xx: acknowledged, every time it comes (§13.2.2.4).
        let first = c.phase == Phase::Inviting;
        // Answered after our CANCEL (they crossed): acknowledged, then hung up (§15).
        let crossed = c.phase == Phase::Over && c.invite_tx == Some(tx);
        let Some(leg) = c.leg.as_mut() else {
            return;
        };
        let stream = if first || crossed {
            Some(leg.answered(&resp))
        } else {
            None
        };
        if let (Some(ack), Some(mut dest)) = (leg.ack(), c.peer) {
            if let Some(local) = cx.wire.leave_from(&mut dest) {
                let mut ack = ack;
                let via = Header::Via(local.via(&cx.wire.branch(None)).into());
                ack.headers.0.insert(0, via);
                cx.wire.send(dest, ack.to_string().into_bytes());
            }
        }
        let Some(stream) = stream else {
            return;
        };
        c.invite_tx = None;
        if crossed {
            tracing::debug!(call_id = %call.call_id, branch, "the forward target answered after our CANCEL: BYE");
            return bye_target(cx, key, branch, c);
        }
        c.phase = Phase::Asking;
        let stream = match stream {
            Ok(s) if !call.final_sent && !b.done => s,
            Ok(_) => {
                // Answered too late: the caller is answered elsewhere, or gone.
                end_leg(cx, &mut self.confirm, key, call, branch, None);
                return self.drive(cx, key);
            }
            Err(code) => {
                tracing::info!(call_id = %call.call_id, branch, "the forward target answered without the agreed codec: hung up");
                end_leg(cx, &mut self.confirm, key, call, branch, Some(code));
                return self.drive(cx, key);
            }
        };
        let id = c.target_session;
        c.target_stream = Some(leg.our_stream());
        cx.wire
            .out
            .push_back(our_stream::update(id, &stream, c.rtp_timeout));
        let language = c.library.language();
        let clips: Vec<_> = prompt(language, Some(caller.as_str()))
            .iter()
            .filter_map(|p| c.library.clip(p, c.law))
            .collect();
        let mut run = ConfirmRun::new(clips, CONFIRM_WAIT, CONFIRM_REPEATS);
        let clips = run.begin(now.mono);
        c.run = Some(run);
        cx.wire
            .out
            .push_back(Output::Media(MediaCommand::Play { id, clips }));
        tracing::info!(call_id = %call.call_id, branch, "the forward target answered: asked to accept the call");
    }

    /// Our INVITE of a confirmed leg got no final response (timeout, transport error).
    pub(crate) fn confirm_failed(
        &mut self,
        cx: &mut Ctx<'_>,
        key: u64,
        branch: BranchId,
        tx: TxId,
        code: u16,
    ) {
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        let Some(c) = leg_mut(&mut call.branches, branch) else {
            return;
        };
        if c.bye_tx == Some(tx) {
            c.bye_tx = None;
            return self.drive(cx, key);
        }
        if c.invite_tx != Some(tx) {
            return;
        }
        if c.phase == Phase::Inviting && fail_over(cx, key, call, branch, None) {
            return;
        }
        if let Some(c) = leg_mut(&mut call.branches, branch) {
            c.invite_tx = None;
            if c.phase == Phase::Inviting {
                end_leg(cx, &mut self.confirm, key, call, branch, Some(code));
            }
        }
        self.drive(cx, key);
    }

    /// The call and branch of the target dialog a request is in, if any.
    pub(crate) fn confirm_dialog(&self, req: &Request) -> Option<(u64, BranchId)> {
        if self.confirm.dialogs.is_empty() {
            return None;
        }
        let call_id = req.call_id_header().ok()?;
        let &(key, branch) = self.confirm.dialogs.get(call_id.value().trim())?;
        let c = self
            .calls
            .get(&key)?
            .branches
            .get(branch)?
            .confirm
            .as_ref()?;
        c.leg.as_ref()?.owns(req).then_some((key, branch))
    }

    /// An ACK of the target in our dialog with it: the end of our 2xx to its re-INVITE
    /// (see [`ConfirmLeg::reacked`]).
    pub(crate) fn confirm_ack(
        &mut self,
        cx: &mut Ctx<'_>,
        key: u64,
        branch: BranchId,
        req: &Request,
    ) {
        let Some(c) = self
            .calls
            .get_mut(&key)
            .and_then(|call| call.branches.get_mut(branch))
            .and_then(|b| b.confirm.as_mut())
        else {
            return;
        };
        let cseq = message::cseq_number(&req.headers);
        if let Some(u) = c.unacked.take_if(|u| Some(u.cseq) == cseq) {
            self.resends.remove(&(u.at, key, Side::Target(branch)));
            let id = c.target_session;
            c.reacked(&mut cx.wire.out, id, req);
        }
    }

    /// A request of the target in our dialog with it: BYE 200 (before acceptance the leg
    /// fails, once connected the caller gets our BYE); INFO with a key, the key; OPTIONS
    /// 200; a re-INVITE 200 with our answer (see [`ConfirmLeg::reoffered`]); others 405.
    pub(crate) fn confirm_request(
        &mut self,
        cx: &mut Ctx<'_>,
        key: u64,
        branch: BranchId,
        tx: TxId,
        req: &Request,
    ) {
        let now = cx.now;
        let Some(call) = self.calls.get_mut(&key) else {
            return cx.wire.reply_stateless(tx, req, 481, Vec::new());
        };
        let Some(c) = leg_mut(&mut call.branches, branch) else {
            return cx.wire.reply_stateless(tx, req, 481, Vec::new());
        };
        match req.method {
            Method::Bye => {
                cx.wire.reply_to(tx, req, 200, Vec::new(), now);
                let phase = c.phase;
                // Our dialog with it is over: no BYE of ours.
                if let Some(leg) = c.leg.take() {
                    self.confirm.dialogs.remove(leg.call_id());
                }
                match phase {
                    Phase::Connected => {
                        tracing::info!(call_id = %call.call_id, branch, "the forward target hung up");
                        end_local(cx, &mut self.local_ends, call, true, "callee hung up");
                    }
                    Phase::Over => {}
                    _ => {
                        tracing::info!(call_id = %call.call_id, branch, "the forward target hung up before accepting");
                        end_leg(cx, &mut self.confirm, key, call, branch, Some(NOT_ACCEPTED));
                    }
                }
                self.drive(cx, key);
            }
            Method::Info => {
                let session = Some(c.target_session);
                if let Some(Event::Digit { digit, .. }) = info_digit(cx, tx, req, session) {
                    if c.phase == Phase::Asking {
                        let verdict = c
                            .run
                            .as_mut()
                            .map_or(Verdict::Nothing, |r| r.digit(digit, now.mono));
                        self.confirm_verdict(cx, key, branch, verdict);
                    }
                }
            }
            Method::Options => {
                let allow = Header::Allow(LOCAL_ALLOW.into());
                cx.wire.reply_to(tx, req, 200, vec![allow], now);
            }
            Method::Invite if c.phase == Phase::Over => {
                // Our BYE is on its way: the dialog is over for us.
                cx.wire.reply_to(tx, req, 481, Vec::new(), now);
            }
            Method::Invite => {
                let id = c.target_session;
                let contact = c.leg.as_ref().map(|l| format!("<{}>", l.contact()));
                match (contact, c.reoffered(&mut cx.wire.out, id, req)) {
                    (Some(contact), Ok(sdp)) => {
                        let side = (key, Side::Target(branch));
                        let resends = &mut self.resends;
                        answer_reinvite(cx, resends, side, &mut c.unacked, tx, req, contact, sdp);
                    }
                    (None, _) => cx.wire.reply_to(tx, req, 481, Vec::new(), now),
                    (_, Err(refusal)) => {
                        let code = refusal.code.unwrap_or(488);
                        let warning = message::warning(&refusal.why);
                        cx.wire.reply_to(tx, req, code, vec![warning], now);
                    }
                }
            }
            // On its own way: see `confirm_ack`.
            Method::Ack => {}
            _ => {
                let allow = Header::Allow(LOCAL_ALLOW.into());
                cx.wire.reply_to(tx, req, 405, vec![allow], now);
            }
        }
    }
}

/// The executor cancels a confirmed branch (another answered, the caller cancelled, the
/// hunt moved on): CANCEL before the target's 2xx, BYE after.
pub(super) fn cancel(
    cx: &mut Ctx<'_>,
    index: &mut Index,
    key: u64,
    call: &mut CallState,
    branch: BranchId,
) {
    end_leg(cx, index, key, call, branch, None);
    if let Some(b) = call.branches.get_mut(branch) {
        b.cancelled = true;
    }
}

/// The target never acknowledged our 2xx to its re-INVITE while it was being asked
/// (§13.3.1.4): its leg ends as one the target hung up (our BYE; the plan goes on).
pub(super) fn unacked_target(
    cx: &mut Ctx<'_>,
    index: &mut Index,
    call: &mut CallState,
    branch: BranchId,
) {
    let key = call.key;
    end_leg(cx, index, key, call, branch, Some(NOT_ACCEPTED));
}

/// A call is over (its outcome settled, the caller's dialog ended): its confirmed legs still
/// up are hung up now (the call is kept until their BYEs are answered, see [`settled`]).
pub(super) fn hang_up(cx: &mut Ctx<'_>, index: &mut Index, call: &mut CallState) {
    let key = call.key;
    for branch in 0..call.branches.len() {
        let up = call.branches[branch]
            .confirm
            .as_ref()
            .is_some_and(|c| c.phase != Phase::Over);
        if up {
            end_leg(cx, index, key, call, branch, None);
        }
    }
}

/// A call is forgotten: its confirmed legs still up are hung up (the connected one once
/// the caller's dialog ended: BYE to the target), their sessions closed.
pub(super) fn forget(cx: &mut Ctx<'_>, index: &mut Index, call: &mut CallState) {
    let key = call.key;
    for branch in 0..call.branches.len() {
        if call.branches[branch].confirm.is_some() {
            end_leg(cx, index, key, call, branch, None);
            if let Some(id) = call.branches[branch]
                .confirm
                .as_ref()
                .and_then(|c| c.leg.as_ref())
                .map(|l| l.call_id().to_string())
            {
                index.dialogs.remove(&id);
            }
        }
    }
}

#[cfg(test)]
#[path = "confirm_b2b_tests.rs"]
mod tests;
