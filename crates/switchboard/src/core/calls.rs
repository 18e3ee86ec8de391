//! Calls: the daemon as a stateful forking proxy (RFC 3261 §16).
//!
//! An initial INVITE is admitted (loops, preloaded routes, the domain), its caller
//! identified (digest, `407`; trunks by source address or by their own credentials), and
//! — unless it dials a feature code — planned (`policy::plan` over a live view of
//! presence, registrations and memory); the plan runs in an [`Execution`] whose commands
//! become branches — client INVITE transactions with this proxy's Via and Record-Route —
//! and whose outcome becomes the caller's final response. Provisional responses and every
//! 2xx are relayed (§16.7); a caller's CANCEL cancels every branch and ends the call with
//! 487. The first 2xx hands the call to [`Dialogs`] until its BYE.
//!
//! Call state (ringing, answered, ended) goes to presence as it happens, so call waiting,
//! team skipping and BLF see who is on a call. A sub-machine of the core: it owns the
//! calls being set up, their timers and the groups' memory, and is handed a [`Ctx`].

use super::carrier_auth::{self, Challenged};
use super::context::Ctx;
use super::dialogs::{Answer, Carrier, Dialogs};
use super::ledger::Pending;
use super::locating::{target_of, Located, Waiter};
use super::mailbox_menu::{self, Access, Do, Env, MailboxMenu, PinGuard, Source};
use super::media::{Endpoint, Happened, PhoneEvent};
use super::records::{BranchSeen, CallRecord, LiveCall, Opening, Settled};
use super::registrant::Registrant;
use super::relays::{call_id_of, send_cancel};
use super::targets::{binding_hop, binding_peer, distinct_targets, newer, peer_for_uri};
use super::voicemail::{self, Deposit, MailboxRun, VoicemailConfig, VoicemailStats};
use super::wire::{Local, Output, Owner};
use crate::executor::{BranchId, BranchTarget, CancelCause, Command, Execution, Limits, Phase};
use crate::metrics::{Histogram, Outcome, Outcomes, SETUP_BUCKETS};
use crate::presence_service::PresenceService;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};
use switchboard_media::session::{Command as MediaCommand, SessionId};
use switchboard_policy::plan::{Next, RoutePlan, Step};
use switchboard_policy::{
    Action, Call, Caller, CallerIdRule, DeviceView, GroupMemory, MailboxOwner, Message, PersonView,
    Policy, ViewSource, VoicemailReason,
};
use switchboard_presence::model::LegState;
use switchboard_sip::auth::Role;
use switchboard_sip::locate::{LocateError, ResolutionId, Resolved, Target};
use switchboard_sip::message::{self, split_first_value};
use switchboard_sip::msg::headers::Header;
use switchboard_sip::msg::prelude::*;
use switchboard_sip::msg::{Method, Request, Response, Uri};
use switchboard_sip::peer::Peer;
use switchboard_sip::proxy;
use switchboard_sip::registrar::Registrar;
use switchboard_sip::transaction::TxId;
use switchboard_sip::GrowingMap;
use switchboard_store::tables::MEMORY;
use switchboard_store::Write;

/// Settings of call routing.
#[derive(Clone, Debug)]
pub struct RoutingConfig {
    /// Most calls being set up at once; further INVITEs get 503.
    pub max_calls: usize,
    /// How long a step without a ring time of its own rings at most.
    pub max_ring: Duration,
    /// How long an answered call is remembered without a BYE.
    pub max_call_secs: u64,
    /// How often each end of an answered call is probed with an in-dialog OPTIONS (0:
    /// never); see [`super::dialogs`].
    pub dialog_probe_secs: u64,
    /// Keys the Record-Route tokens; kept across restarts by the shell.
    pub route_secret: [u8; 32],
    /// Whether a branch's redirect (3xx) is followed to its contacts that are allowed:
    /// our own users, and URIs in `redirect_domains`. Never to a number through a trunk.
    pub follow_redirects: bool,
    /// Domains (lower-case) a redirect may send a call to.
    pub redirect_domains: Vec<String>,
    /// How long a branch to a URI with several targets (RFC 3263) waits for a
    /// provisional response from one before it goes on to the next.
    pub failover_after: Duration,
    /// Local media: messages the daemon plays to callers itself.
    pub media: super::media::MediaConfig,
    /// The daemon's own mailboxes: how long a message, how many, what ends one.
    pub voicemail: VoicemailConfig,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        RoutingConfig {
            max_calls: 10_000,
            max_ring: Duration::from_secs(180),
            max_call_secs: 14_400,
            dialog_probe_secs: 90,
            follow_redirects: true,
            redirect_domains: Vec::new(),
            failover_after: Duration::from_secs(3),
            route_secret: rand::random(),
            media: super::media::MediaConfig::default(),
            voicemail: VoicemailConfig::default(),
        }
    }
}

/// Counters of call routing.
#[derive(Clone, Debug, Default)]
pub struct RoutingStats {
    /// Initial INVITEs that were planned.
    pub calls: u64,
    pub answered: u64,
    /// Calls that ended without an answer (busy, unavailable, no answer, cancelled).
    pub unanswered: u64,
    /// INVITEs refused before planning (403, 404, 482, 503…).
    pub refused: u64,
    /// In-dialog requests relayed.
    pub relayed: u64,
    /// In-dialog requests refused (no Route of ours, a wrong token, no next hop).
    pub relay_refused: u64,
    /// In-dialog OPTIONS sent to ends of answered calls.
    pub probes: u64,
    /// Answered calls ended because an end no longer had the dialog or was unreachable.
    pub lost: u64,
    /// Carriers' challenges answered with a trunk's account.
    pub carrier_answers: u64,
    /// Requests that failed because the carrier refused a trunk's account (or asked for
    /// something it cannot give).
    pub carrier_refusals: u64,
}

/// One branch of a call as the core sees it.
#[derive(Default)]
struct Branch {
    tx: Option<TxId>,
    peer: Option<Peer>,
    /// The person it rings, for call status.
    user: Option<String>,
    /// For the log.
    what: String,
    provisional: bool,
    /// A CANCEL waits for the first provisional response (§9.1).
    cancel: Option<CancelCause>,
    /// A CANCEL was sent (or waits): a challenge that comes now is not answered.
    cancelled: bool,
    /// A branch to a trunk with an account: its INVITE as last sent, to send again with
    /// the account's credentials when the carrier challenges it ([`carrier_auth`]).
    carrier: Option<Box<Challenged>>,
    /// The final response, Via stripped, to relay if it turns out the best.
    response: Option<Response>,
    /// No more outcome is expected from it by the executor.
    done: bool,
    /// What its INVITE is made from (kept to send it to another target).
    prepared: Option<Box<Prepared>>,
    /// The resolution of its URI it waits for (a host name, RFC 3263).
    resolving: Option<ResolutionId>,
    /// Its URI's targets not tried yet, in order.
    next_targets: VecDeque<Target>,
    /// When it goes on to the next target if its INVITE has had no provisional response.
    failover_at: Option<Instant>,
    /// Its INVITE transactions to targets it went on from without their provisional
    /// response (still retransmitting, until Timer B): each is CANCELled when a
    /// provisional response comes after all, so a late target never goes on ringing.
    abandoned: Vec<Abandoned>,
    /// A message branch's media session while it is open (see [`super::media`]).
    media: Option<SessionId>,
    /// A local media endpoint the call is for ([`BranchTarget::Announcement`]): its
    /// response is our own, relayed as it is; with `answer`, it answers the call.
    local: Option<LocalBranch>,
    /// A mailbox branch whose mailbox was full: the caller is told so (a message in
    /// early media), and the plan goes on as when nobody answers.
    full_mailbox: bool,
    /// A branch whose target must confirm the call: its back-to-back leg
    /// ([`confirm_b2b`]).
    confirm: Option<Box<confirm_b2b::ConfirmLeg>>,
}

/// What an announcement branch is (see [`Branch::local`]).
#[derive(Clone, Copy, Default)]
struct LocalBranch {
    answer: bool,
}

/// The dialog of a call the daemon answered itself (an answered announcement): the daemon
/// is its UAS. In-dialog requests of the caller come to it (matched by Call-ID and our
/// To tag, [`Calls::local_dialog`]); a BYE of ours ends it.
struct LocalDialog {
    /// The branch answering now (the announcement playing) and its session.
    branch: BranchId,
    session: SessionId,
    /// Our To tag.
    tag: String,
    /// A 2xx of ours not yet acknowledged (§13.3.1.4).
    unacked: Option<Unacked>,
}

/// A 2xx of ours to an INVITE (or re-INVITE) of a local dialog, sent again until its ACK.
struct Unacked {
    tx: TxId,
    response: Response,
    /// The CSeq number its ACK carries.
    cseq: u32,
    at: Instant,
    interval: Duration,
    /// 64·T1 after the first: no ACK came; the call is hung up.
    give_up: Instant,
}

/// Whose dialog an [`Unacked`] 2xx of ours is in: the caller's (the daemon answered it),
/// or a confirmed forward's target's (its re-INVITE).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Side {
    Caller,
    Target(BranchId),
}

/// Our 2xx with `sdp` to re-INVITE `req` (on `tx`) in a dialog of ours whose Contact is
/// `contact`: sent, and kept in `unacked` to be sent again until its ACK (§13.3.1.4),
/// replacing the one it kept before.
#[allow(clippy::too_many_arguments)]
fn answer_reinvite(
    cx: &mut Ctx<'_>,
    resends: &mut BTreeSet<(Instant, u64, Side)>,
    (key, side): (u64, Side),
    unacked: &mut Option<Unacked>,
    tx: TxId,
    req: &Request,
    contact: String,
    sdp: Vec<u8>,
) {
    let now = cx.now;
    let mut resp = message::response(req, 200, None, &cx.wire.server);
    resp.headers
        .retain(|h| !matches!(h, Header::ContentLength(_)));
    resp.headers.push(Header::Contact(contact.into()));
    resp.headers.push(Header::Allow(LOCAL_ALLOW.into()));
    resp.headers
        .push(Header::ContentType("application/sdp".into()));
    resp.headers
        .push(Header::ContentLength((sdp.len() as u32).into()));
    resp.body = sdp;
    let cseq = message::cseq_number(&req.headers).unwrap_or(0);
    if let Some(u) = unacked.take() {
        resends.remove(&(u.at, key, side));
    }
    let at = now.mono + T1;
    resends.insert((at, key, side));
    *unacked = Some(Unacked {
        tx,
        response: resp.clone(),
        cseq,
        at,
        interval: T1,
        give_up: now.mono + 64 * T1,
    });
    cx.wire.respond(tx, resp, now);
}

/// RFC 3261 timers for the retransmission of our 2xx (§13.3.1.4): from T1, doubling up to
/// T2, for 64·T1.
const T1: Duration = Duration::from_millis(500);
const T2: Duration = Duration::from_secs(4);

/// The methods a local dialog answers (its 200 and 405s say so).
const LOCAL_ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO";

/// What the core is to do with the tracked dialog of a call the daemon answered
/// (see [`Calls::local_ends`]).
pub(crate) enum LocalEnd {
    /// Track it from its 200 (its BYE, the caller's probes, `max_call_secs`).
    Answered {
        call_id: String,
        invite: Box<Request>,
        response: Box<Response>,
        caller: Option<String>,
        caller_peer: Option<Peer>,
    },
    /// It is over: a BYE of ours to the caller when `bye`; `how` for the record.
    Over {
        call_id: String,
        bye: bool,
        how: &'static str,
    },
}

/// An INVITE transaction a branch went on from (see [`Branch::abandoned`]).
struct Abandoned {
    tx: TxId,
    peer: Peer,
    /// Its CANCEL went.
    cancelled: bool,
}

struct CallState {
    /// Its key in [`Calls`]'s table.
    key: u64,
    server_tx: TxId,
    /// The INVITE as received (Via stamped, our Route consumed).
    invite: Request,
    call_id: String,
    from: String,
    to: String,
    caller_user: Option<String>,
    /// A trunk's identity headers are trusted; a user's are set by us.
    caller_trunk: bool,
    /// Where the INVITE came to (the Record-Route entry the caller faces).
    inbound: Local,
    loop_key: u64,
    exec: Execution,
    branches: Vec<Branch>,
    final_sent: bool,
    wake: Option<Instant>,
    /// The Reason of the caller's CANCEL, passed on to the branches.
    cancel_reason: Option<Header>,
    /// The Record-Route parameter carrying the dialog's token (`;sbt=…`).
    rr_params: String,
    /// How long a branch waits for a provisional response before its next target.
    failover_after: Duration,
    /// When the INVITE was taken in (for the setup time).
    started: Instant,
    /// The final response the caller got, when one went out.
    final_code: Option<u16>,
    /// The caller cancelled before a final response.
    cancelled: bool,
    /// What its record starts from ([`super::records`]).
    record: Opening,
    /// The daemon answered it itself (see [`LocalDialog`]).
    local: Option<LocalDialog>,
    /// The early dialogs of our own 183s: our To tag and the message branch (at most one
    /// per branch).
    early_tags: Vec<(String, BranchId)>,
}

/// The calls being set up (see the module's documentation).
pub struct Calls {
    config: RoutingConfig,
    /// Calls are boxed (hundreds of bytes each), so the table stays small.
    calls: GrowingMap<u64, Box<CallState>>,
    memory: HashMap<String, GroupMemory>,
    wakes: BTreeSet<(Instant, u64)>,
    /// Branches that go on to their next target at a time if still silent.
    failovers: BTreeSet<(Instant, u64, BranchId)>,
    next_call: u64,
    pub(crate) stats: RoutingStats,
    /// Calls settled, by outcome.
    pub(crate) ended: Outcomes,
    /// Voicemail messages left, by what became of them.
    pub(crate) voicemail: VoicemailStats,
    /// From the INVITE to the answer, of answered calls.
    pub(crate) setup: Histogram,
    /// Records of calls whose set-up is over, for [`super::records::Records`] (taken by
    /// the core after each event).
    pub(crate) settled: Vec<CallRecord>,
    /// Calls with a dialog of the daemon's own (an early one of a message's 183, or one
    /// it answered), by Call-ID; the To tag is checked against the call's.
    local_dialogs: HashMap<String, u64>,
    /// When a 2xx of ours is sent again (see [`Unacked`]).
    resends: BTreeSet<(Instant, u64, Side)>,
    /// Dialogs of calls the daemon answered to track or end, for [`super::dialogs`] (taken
    /// by the core after each event, after `settled`).
    pub(crate) local_ends: Vec<LocalEnd>,
    /// The back-to-back legs of confirmed forwarding: their sessions, dialogs and waits.
    confirm: confirm_b2b::Index,
    /// Calls to the mailbox by phone, by their media session.
    phones: BTreeMap<SessionId, PhoneRun>,
    /// Wrong mailbox PINs, by mailbox and by source address.
    pins: PinGuard,
}

/// A call to the mailbox by phone: its menu ([`MailboxMenu`]), and the call and branch
/// it runs in.
struct PhoneRun {
    call: u64,
    branch: BranchId,
    menu: MailboxMenu,
}

/// What the menu of the mailbox by phone is handed.
enum PhoneInput {
    /// The call is answered: it begins.
    Begin,
    /// Its session's event.
    Event(PhoneEvent),
    /// Its wait for a key may be over.
    Timeout,
    /// The outcome of a change it waits for.
    Stored(bool),
}

impl Calls {
    pub fn new(config: RoutingConfig) -> Self {
        Calls {
            config,
            calls: GrowingMap::new(),
            memory: HashMap::new(),
            wakes: BTreeSet::new(),
            failovers: BTreeSet::new(),
            next_call: 1,
            stats: RoutingStats::default(),
            ended: Outcomes::default(),
            voicemail: VoicemailStats::default(),
            setup: Histogram::new(SETUP_BUCKETS),
            settled: Vec::new(),
            local_dialogs: HashMap::new(),
            resends: BTreeSet::new(),
            local_ends: Vec::new(),
            confirm: confirm_b2b::Index::default(),
            phones: BTreeMap::new(),
            pins: PinGuard::default(),
        }
    }

    /// The calls being set up (and answered ones whose other branches still settle), as
    /// `GET /v1/calls` shows them.
    pub(crate) fn live(&self) -> Vec<LiveCall> {
        let mut list: Vec<LiveCall> = self
            .calls
            .iter()
            .map(|(_, c)| {
                let step = c.exec.step();
                let answered = match c.exec.phase() {
                    Phase::Answered { branch } => c.branches.get(*branch).map(|b| b.what.clone()),
                    _ => None,
                };
                LiveCall {
                    call_id: c.call_id.clone(),
                    caller: c.from.clone(),
                    dialled: c.to.clone(),
                    started: c.record.started,
                    answered: c.record.answered,
                    phase: if answered.is_some() {
                        "answered"
                    } else {
                        "ringing"
                    },
                    step: step.map(|i| i + 1),
                    step_why: step
                        .and_then(|i| c.exec.plan().steps.get(i))
                        .map(|s| s.why.clone()),
                    ringing: c
                        .branches
                        .iter()
                        .filter(|b| !b.done && !b.cancelled && b.cancel.is_none() && b.tx.is_some())
                        .map(|b| b.what.clone())
                        .collect(),
                    answered_by: answered,
                }
            })
            .collect();
        list.sort_by(|a, b| (a.started, &a.call_id).cmp(&(b.started, &b.call_id)));
        list
    }

    pub fn stats(&self) -> &RoutingStats {
        &self.stats
    }

    /// Calls being set up (not yet ended or answered with branches still to settle).
    pub fn len(&self) -> usize {
        self.calls.len()
    }

    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// What a group remembers.
    pub fn memory(&self, group: &str) -> Option<&GroupMemory> {
        self.memory.get(group)
    }

    /// Loads group memory read back from the store.
    pub fn restore_memory(&mut self, rows: Vec<(String, Vec<u8>)>) -> usize {
        for (group, value) in rows {
            match serde_json::from_slice::<GroupMemory>(&value) {
                Ok(m) => {
                    self.memory.insert(group, m);
                }
                Err(e) => tracing::warn!(group, error = %e, "unreadable group memory; skipped"),
            }
        }
        self.memory.len()
    }

    /// Holds what a group remembers as another node stored it (None: forgotten).
    pub fn apply_shared_memory(&mut self, group: String, row: Option<&[u8]>) {
        match row {
            None => {
                self.memory.remove(&group);
            }
            Some(row) => {
                self.restore_memory(vec![(group, row.to_vec())]);
            }
        }
    }

    /// The groups with memory held.
    pub fn memory_groups(&self) -> Vec<String> {
        self.memory.keys().cloned().collect()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let wake = self.wakes.first().map(|(t, _)| *t);
        let failover = self.failovers.first().map(|(t, _, _)| *t);
        let resend = self.resends.first().map(|(t, _, _)| *t);
        let confirm = self.confirm.poll_timeout();
        let phone = self.phones.values().filter_map(|r| r.menu.deadline()).min();
        wake.into_iter()
            .chain(failover)
            .chain(resend)
            .chain(confirm)
            .chain(phone)
            .min()
    }
}

/// The planner's view of the live state: presence, registrations, memory.
struct LiveView<'a> {
    policy: &'a Policy,
    presence: &'a PresenceService,
    registrar: &'a Registrar,
    memory: &'a HashMap<String, GroupMemory>,
    now: u64,
}

impl ViewSource for LiveView<'_> {
    fn person(&self, id: &str) -> PersonView {
        let mut view = self.presence.person_view(id, self.policy);
        view.devices = distinct_targets(self.registrar.lookup(id, self.now))
            .into_iter()
            .map(|b| DeviceView {
                id: b.contact.clone(),
                label: match &b.user_agent {
                    Some(ua) => format!("{} {ua}", b.contact),
                    None => b.contact.clone(),
                },
            })
            .collect();
        view
    }

    fn memory(&self, group: &str) -> GroupMemory {
        self.memory.get(group).cloned().unwrap_or_default()
    }
}

/// Whether `user` is the contact trunk `trunk` registers at its carrier.
fn registers_as(policy: &Policy, trunk: &str, user: &str) -> bool {
    policy
        .trunk(trunk)
        .and_then(|t| t.account.as_ref()?.registration.as_ref())
        .is_some_and(|r| r.contact_user == user)
}

/// The user part of a From/To header's URI.
fn header_user(value: Option<&str>) -> Option<String> {
    let uri = proxy::strip_angle(split_first_value(value?).0);
    let uri = Uri::try_from(uri.split(';').next().unwrap_or(uri)).ok()?;
    uri.user().map(str::to_string)
}

fn quote(s: &str) -> String {
    s.chars().filter(|c| *c != '"' && *c != '\\').collect()
}

/// An initial INVITE that passed the checks: who calls whom. The request route decides
/// what it becomes (a feature code, or a call: [`Calls::start`]).
pub(crate) struct Admitted {
    pub tx: TxId,
    /// The INVITE as received (Via stamped, our Route consumed).
    pub req: Request,
    pub caller: Caller,
    /// The Request-URI's user: what was dialled.
    pub dialled: String,
    loop_key: u64,
}

impl Calls {
    /// Refuses an INVITE being admitted with `code`, a Warning saying why, and a log
    /// line; statelessly, as nothing vouches for its sender yet.
    fn refuse(&mut self, cx: &mut Ctx<'_>, tx: TxId, req: &Request, code: u16, why: &str) {
        self.stats.refused += 1;
        if switchboard_sip::log_limit::allow("call refused") {
            tracing::info!(code, why, call_id = %call_id_of(req), "call refused");
        }
        cx.wire
            .reply_stateless(tx, req, code, vec![message::warning(why)]);
    }

    /// An initial INVITE (no To tag): loops, routes, domain and caller checked. None when
    /// it has been answered (403, 482, 404, 484, or the digest gate's 407/403/400).
    /// `registrant` knows the contacts trunks registered at their carriers: a call to one
    /// of them is the trunk's, dialling the number in its To header.
    pub(crate) fn admit(
        &mut self,
        cx: &mut Ctx<'_>,
        registrant: &Registrant,
        tx: TxId,
        mut req: Request,
        peer: Peer,
    ) -> Option<Admitted> {
        if cx
            .gate
            .blocked(peer.addr.ip(), cx.directory, cx.sources, cx.now.mono)
        {
            self.refuse(cx, tx, &req, 403, "too many failed attempts; try later");
            return None;
        }
        // §16.3 step 4: a request that came back in the same state is a loop.
        if proxy::is_loop(&req, |sb| cx.wire.sent_by_is_ours(sb)) {
            self.refuse(cx, tx, &req, 482, "loop detected");
            return None;
        }
        let loop_key = proxy::loop_key(&req);
        // §16.4: a preloaded Route naming us is consumed; one naming others is not
        // followed for an initial request (this server decides where calls go).
        proxy::pop_own_routes(&mut req, |u| cx.wire.uri_is_ours(u));
        if !proxy::route_set(&req).is_empty() {
            let why = "a preloaded Route to elsewhere is not followed";
            self.refuse(cx, tx, &req, 403, why);
            return None;
        }
        let host = req.uri.host_with_port.host.to_string();
        if !cx.wire.is_local_host(&host) {
            self.refuse(cx, tx, &req, 404, "domain not served here");
            return None;
        }
        let Some(mut dialled) = req.uri.user().map(str::to_string) else {
            self.refuse(cx, tx, &req, 484, "no number or name in the Request-URI");
            return None;
        };
        let caller = self.identify_caller(cx, registrant, tx, &req, peer, &dialled)?;
        // A carrier sends a registered trunk's calls to the contact it registered, the
        // number called in To (as it would be addressed at the carrier).
        if let Caller::Trunk { trunk, .. } = &caller {
            if registers_as(cx.directory.policy(), trunk, &dialled) {
                match header_user(req.to_header().ok().map(|t| t.value())) {
                    Some(to) => dialled = to,
                    None => {
                        self.refuse(cx, tx, &req, 484, "no number in the To header");
                        return None;
                    }
                }
            }
        }
        Some(Admitted {
            tx,
            req,
            caller,
            dialled,
            loop_key,
        })
    }

    /// Who is calling: a trunk (by source address — unless it is where one of the From
    /// user's devices registered from: a phone of ours beside the carrier —, by the contact
    /// it registered and the registrar it registered with, or by credentials), a user
    /// (digest), or anyone (when authentication is off). None when the request was answered instead.
    fn identify_caller(
        &mut self,
        cx: &mut Ctx<'_>,
        registrant: &Registrant,
        tx: TxId,
        req: &Request,
        peer: Peer,
        dialled: &str,
    ) -> Option<Caller> {
        let directory = cx.directory;
        let from_user = header_user(req.from_header().ok().map(|f| f.value()))
            .unwrap_or_else(|| "anonymous".into());
        if let Some(t) = cx.trunk_for_source(peer.addr.ip()) {
            // A phone of ours on the trunk's address (one machine, one NAT): the request
            // comes from where one of the From user's devices registered from, so it is
            // that phone's, and it authenticates as any phone does. This only takes the
            // trunk's trust away, never grants any.
            let phone = directory.user_for(&from_user).is_some_and(|u| {
                cx.registrar
                    .lookup(&u, cx.now.unix)
                    .iter()
                    .any(|b| b.source == peer.addr)
            });
            if !phone {
                return Some(Caller::Trunk {
                    trunk: t.id.clone(),
                    number: from_user,
                });
            }
        }
        if let Some(trunk) = registrant.trunk_for_contact(dialled, peer.addr.ip(), cx.now) {
            return Some(Caller::Trunk {
                trunk: trunk.to_string(),
                number: from_user,
            });
        }
        if !cx.config.auth_required {
            return Some(match directory.user_for(&from_user) {
                Some(u) => Caller::User(u),
                None => Caller::External(from_user),
            });
        }
        // None: challenged, or refused (counted as an authentication failure).
        let username = cx.digest(tx, req, peer, Role::Proxy)?;
        if let Some(u) = directory.user_of_username(&username) {
            return Some(Caller::User(u));
        }
        if let Some(t) = directory.trunk_of_username(&username) {
            return Some(Caller::Trunk {
                trunk: t,
                number: from_user,
            });
        }
        self.refuse(cx, tx, req, 403, "not allowed to call");
        None
    }

    /// An admitted INVITE becomes a call: planned, then its branches started.
    pub(crate) fn start(&mut self, cx: &mut Ctx<'_>, call: Admitted, inbound: Local) {
        let Admitted {
            tx,
            req,
            caller,
            dialled: to,
            loop_key,
        } = call;
        let now = cx.now;
        if self.calls.len() >= self.config.max_calls {
            self.stats.refused += 1;
            if switchboard_sip::log_limit::allow("call limit reached") {
                tracing::warn!(calls = self.calls.len(), "call limit reached: 503");
            }
            let retry = vec![Header::RetryAfter("5".into())];
            return cx.wire.reply_to(tx, &req, 503, retry, now);
        }
        // §16.2: the INVITE is answered 100 at once; the branches take their time.
        let trying = message::response(&req, 100, None, &cx.wire.server);
        cx.wire.respond(tx, trying, now);

        let call_id = call_id_of(&req);
        let token = proxy::route_token(&self.config.route_secret, &call_id);
        let rr_params = format!(";sbt={token}");
        let call = Call {
            from: caller.clone(),
            to: to.clone(),
            call_id: call_id.clone(),
        };
        let policy = cx.directory.policy();
        let at = chrono::DateTime::from_timestamp(now.unix as i64, 0).unwrap_or_default();
        let phone = self.mailbox_phone(policy, &caller, &to);
        let plan = if let Some(action) = phone {
            RoutePlan {
                start: Next::Step(0),
                steps: vec![Step {
                    action,
                    on_no_answer: Next::Final(480),
                    on_busy: Next::Final(486),
                    on_unavailable: Next::Final(480),
                    why: "dialled the mailbox by phone".into(),
                }],
                notes: Vec::new(),
            }
        } else {
            let view = LiveView {
                policy,
                presence: cx.presence,
                registrar: cx.registrar,
                memory: &self.memory,
                now: now.unix,
            };
            switchboard_policy::plan(policy, &call, &view, at)
        };
        tracing::debug!(%call_id, plan = %plan, "call planned");
        let trunk = match &caller {
            Caller::Trunk { trunk, .. } => Some(trunk.as_str()),
            _ => None,
        };
        let record = Opening::new(policy, trunk, &to, now.unix);
        let (from, caller_user, caller_trunk) = match &caller {
            Caller::User(u) => (u.clone(), Some(u.clone()), false),
            Caller::Trunk { trunk, number } => (format!("{number} via trunk {trunk}"), None, true),
            Caller::External(x) => (x.clone(), None, false),
        };
        if let Some(u) = &caller_user {
            cx.presence
                .model_mut()
                .leg(u, &call_id, "caller", LegState::Ringing);
        }
        self.stats.calls += 1;
        let limits = Limits {
            max_ring: self.config.max_ring,
            ..Limits::default()
        };
        let key = self.next_call;
        self.next_call += 1;
        let state = CallState {
            key,
            server_tx: tx,
            invite: req,
            call_id,
            from,
            to,
            caller_user,
            caller_trunk,
            inbound,
            loop_key,
            exec: Execution::new(plan, limits, now.mono),
            branches: Vec::new(),
            final_sent: false,
            wake: None,
            cancel_reason: None,
            rr_params,
            failover_after: self.config.failover_after,
            started: now.mono,
            final_code: None,
            cancelled: false,
            record,
            local: None,
            early_tags: Vec::new(),
        };
        cx.wire.owners.insert(tx, Owner::Call(key));
        self.calls.insert(key, Box::new(state));
        self.drive(cx, key);
    }

    /// Carries out a call's pending commands and re-arms its timer; forgets the call once
    /// it is over and every branch has settled.
    fn drive(&mut self, cx: &mut Ctx<'_>, key: u64) {
        let now = cx.now;
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        while let Some(cmd) = call.exec.poll_command() {
            match cmd {
                Command::Start(crate::executor::BranchStart {
                    branch,
                    target: BranchTarget::Message { message },
                    ..
                }) => start_local(cx, key, call, branch, Endpoint::Message(&message), None),
                Command::Start(crate::executor::BranchStart {
                    branch,
                    target: BranchTarget::Menu { menu },
                    ..
                }) => start_local(cx, key, call, branch, Endpoint::Menu(&menu), None),
                Command::Start(crate::executor::BranchStart {
                    branch,
                    target:
                        BranchTarget::Announcement {
                            id,
                            message,
                            answer,
                        },
                    ..
                }) => {
                    let local = Some(LocalBranch { answer });
                    start_local(cx, key, call, branch, Endpoint::Message(&message), local);
                    if let Some(b) = call.branches.get_mut(branch) {
                        b.what = format!("announcement {id}");
                    }
                }
                Command::Start(crate::executor::BranchStart {
                    branch,
                    target: BranchTarget::Mailbox { mailbox, reason },
                    ..
                }) => {
                    let vm = (&self.config.voicemail, &mut self.voicemail);
                    start_mailbox(cx, key, call, branch, &mailbox, &reason, vm);
                }
                Command::Start(start) if start.confirm => {
                    // A back-to-back leg: the target is asked before the caller is connected.
                    let b = start.branch;
                    if let Err(code) = confirm_b2b::start(cx, &mut self.confirm, key, call, start) {
                        tracing::info!(call_id = %call.call_id, branch = b, code, "a forward target to confirm is not rung");
                        if let Some(br) = call.branches.get_mut(b) {
                            br.done = true;
                        }
                        call.exec.branch_unstartable(b, code, now.mono);
                    }
                }
                Command::Start(crate::executor::BranchStart {
                    branch,
                    target: BranchTarget::MailboxPhone { mailbox, number },
                    ..
                }) => {
                    let access = match (mailbox, number) {
                        (Some(m), _) => Access::Trusted(m),
                        (None, Some(n)) => Access::Number(n),
                        (None, None) => Access::Ask,
                    };
                    // PIN failures count against who calls: a person of ours, a trunk's
                    // caller by number (a carrier's callers share its address), else where
                    // the INVITE came from.
                    let source = match (&call.caller_user, &call.record.trunk) {
                        (Some(u), _) => Source::User(u.clone()),
                        (None, Some(trunk)) if call.caller_trunk => Source::TrunkCaller {
                            trunk: trunk.clone(),
                            number: caller_identity(call, cx.directory.policy()).0,
                        },
                        _ => Source::Address(
                            cx.wire
                                .transactions
                                .peer(call.server_tx)
                                .map_or(std::net::Ipv4Addr::UNSPECIFIED.into(), |p| p.addr.ip()),
                        ),
                    };
                    let local = Some(LocalBranch { answer: true });
                    start_local(cx, key, call, branch, Endpoint::Phone, local);
                    if let Some(id) = call.branches.get(branch).and_then(|b| b.media) {
                        let menu = MailboxMenu::new(access, source);
                        self.phones.insert(
                            id,
                            PhoneRun {
                                call: key,
                                branch,
                                menu,
                            },
                        );
                    }
                }
                Command::Start(start) => {
                    let b = start.branch;
                    if let Err(code) = start_branch(cx, key, call, start) {
                        if let Some(br) = call.branches.get_mut(b) {
                            br.done = true;
                        }
                        call.exec.branch_unstartable(b, code, now.mono);
                    }
                }
                Command::Cancel { branch, .. }
                    if call
                        .branches
                        .get(branch)
                        .is_some_and(|b| b.confirm.is_some()) =>
                {
                    confirm_b2b::cancel(cx, &mut self.confirm, key, call, branch)
                }
                Command::Cancel { branch, cause } => cancel_branch(cx, call, branch, cause),
                Command::Relay { branch } => {
                    let resp = call
                        .branches
                        .get_mut(branch)
                        .and_then(|b| b.response.take());
                    let resp = match resp {
                        Some(mut resp) => {
                            let code = resp.status_code.code();
                            let relayed = proxy::relayable_code(code);
                            let ours = call.branches.get(branch).is_some_and(|b| b.local.is_some());
                            if relayed != code && !ours {
                                resp.status_code = relayed.into();
                            }
                            resp
                        }
                        None => {
                            let tag = cx.wire.tag();
                            message::response(&call.invite, 480, Some(&tag), &cx.wire.server)
                        }
                    };
                    call.final_code.get_or_insert(resp.status_code.code());
                    cx.wire.respond(call.server_tx, resp, now);
                    call.final_sent = true;
                }
                Command::Respond { code, reason } => {
                    let tag = cx.wire.tag();
                    let mut resp =
                        message::response(&call.invite, code, Some(&tag), &cx.wire.server);
                    if let Some(r) = reason {
                        // The plan's words on the phone's display, and in Reason.
                        message::set_reason_phrase(&mut resp, &r);
                        resp.headers.push(proxy::reason(code, &r));
                    }
                    call.final_code.get_or_insert(code);
                    cx.wire.respond(call.server_tx, resp, now);
                    call.final_sent = true;
                }
                Command::HangUp { branch } => {
                    if let Some(b) = call.branches.get_mut(branch) {
                        b.done = true;
                    }
                    end_local(cx, &mut self.local_ends, call, true, "hung up");
                }
                Command::Remember { group, user } => {
                    let m = self.memory.entry(group.clone()).or_default();
                    m.last_answerer = Some(user.clone());
                    m.last_answered.insert(user, now.unix as i64);
                    let row = serde_json::to_vec(m).unwrap_or_default();
                    cx.persist_unacknowledged(vec![Write::put(MEMORY, group, row)]);
                }
            }
        }
        if let Some(w) = call.wake.take() {
            self.wakes.remove(&(w, key));
        }
        // Branches just sent to a target with others behind it (a set: filed once).
        for (i, b) in call.branches.iter().enumerate() {
            if let Some(at) = b.failover_at {
                self.failovers.insert((at, key, i));
            }
        }
        // The outcome is settled (answered, or the caller has its final response): the
        // record goes now, not once every branch has ended.
        if call.exec.phase() != &Phase::Routing && !call.record.recorded {
            call.record.recorded = true;
            self.settled.push(record_of(call, now.unix));
        }
        // A call the daemon answered itself lasts as long as its announcements.
        let local_live = call.local.is_some() && call.branches.iter().any(|b| !b.done);
        let ended = call.exec.phase() != &Phase::Routing
            && !local_live
            && call
                .branches
                .iter()
                .all(|b| (b.done || b.tx.is_none()) && b.abandoned.is_empty());
        if ended {
            confirm_b2b::hang_up(cx, &mut self.confirm, call);
        }
        let done = ended && call.branches.iter().all(confirm_b2b::settled);
        if !done {
            if let Some(w) = call.exec.poll_timeout() {
                self.wakes.insert((w, key));
                call.wake = Some(w);
            }
            return;
        }
        if let Some(mut call) = self.calls.remove(&key) {
            confirm_b2b::forget(cx, &mut self.confirm, &mut call);
            self.forget(cx, &call);
        }
    }

    /// A call whose outcome is settled and whose branches have all ended: counted, its
    /// transactions disowned.
    fn forget(&mut self, cx: &mut Ctx<'_>, call: &CallState) {
        cx.wire.owners.remove(&call.server_tx);
        self.phones.retain(|_, r| r.call != call.key);
        if self.local_dialogs.get(&call.call_id) == Some(&call.key) {
            self.local_dialogs.remove(&call.call_id);
        }
        if let Some(l) = &call.local {
            cx.media.close(&mut cx.wire.out, l.session);
        }
        for b in &call.branches {
            if let Some(id) = b.media {
                cx.media.close(&mut cx.wire.out, id);
            }
            if let Some(tx) = b.tx {
                cx.wire.owners.remove(&tx);
            }
            for a in &b.abandoned {
                cx.wire.owners.remove(&a.tx);
            }
            if let Some(id) = b.resolving {
                cx.locating.cancel(id);
            }
        }
        let answered = matches!(call.exec.phase(), Phase::Answered { .. });
        let settled = if answered {
            Outcome::Answered
        } else {
            Outcome::of(call.final_code, call.cancelled)
        };
        self.ended.count(settled);
        if answered {
            self.stats.answered += 1;
        } else {
            self.stats.unanswered += 1;
            cx.presence.model_mut().call_ended(&call.call_id);
        }
    }

    /// A CANCEL from the caller (§16.10): 200 to it; every branch cancelled; 487 to the
    /// INVITE.
    pub(crate) fn cancel(&mut self, cx: &mut Ctx<'_>, cancel_tx: TxId, key: u64, req: &Request) {
        let now = cx.now;
        let ok = message::response(req, 200, Some(&cx.wire.tag()), &cx.wire.server);
        cx.wire.respond(cancel_tx, ok, now);
        if let Some(call) = self.calls.get_mut(&key) {
            call.cancel_reason = req
                .headers
                .iter()
                .find(|h| matches!(h, Header::Reason(_)))
                .cloned();
            if call.final_sent {
                return;
            }
            call.exec.caller_cancelled(now.mono);
            call.final_sent = true;
            call.cancelled = true;
            call.final_code.get_or_insert(487);
            let tag = cx.wire.tag();
            let resp = message::response(&call.invite, 487, Some(&tag), &cx.wire.server);
            cx.wire.respond(call.server_tx, resp, now);
        }
        self.drive(cx, key);
    }

    /// A response to one of a call's branches.
    pub(crate) fn branch_response(
        &mut self,
        cx: &mut Ctx<'_>,
        dialogs: &mut Dialogs,
        key: u64,
        branch: BranchId,
        tx: TxId,
        mut resp: Response,
    ) {
        let now = cx.now;
        let code = resp.status_code.code();
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        proxy::strip_top_via(&mut resp);
        message::keep_reason_phrase(&mut resp);
        let Some(b) = call.branches.get_mut(branch) else {
            return;
        };
        if b.tx != Some(tx) {
            return self.abandoned_response(cx, key, branch, tx, resp);
        }
        if let Some(peer) = b.peer {
            if code == 503 {
                // RFC 3263 §4.3: the next target, the failed one put last for a while
                // (its Retry-After's while, when it says).
                let retry_after = message::retry_after(&resp.headers).map(Duration::from_secs);
                cx.locating
                    .locator
                    .report_failure(target_of(peer), retry_after, now.mono);
                if !b.done && fail_over(cx, key, call, branch, "503") {
                    return self.drive(cx, key);
                }
            } else {
                cx.locating.locator.report_success(target_of(peer));
            }
        }
        let Some(b) = call.branches.get_mut(branch) else {
            return;
        };
        b.failover_at = None;
        if matches!(code, 401 | 407) && !b.done && b.carrier.is_some() {
            if answer_challenge(cx, key, call, branch, &resp) {
                return;
            }
            // The challenge was the account's to answer: the caller could not.
            resp = carrier_auth::refusal(resp, "the carrier refused the trunk's credentials");
        }
        let Some(b) = call.branches.get_mut(branch) else {
            return;
        };
        // The carrier numbers this INVITE as answered with credentials; the caller, as
        // sent.
        let answers = b.carrier.as_ref().map_or(0, |c| u32::from(c.answers));
        if answers > 0 {
            if let Some(n) = message::cseq_number(&call.invite.headers) {
                message::set_cseq_number(&mut resp.headers, n);
            }
        }
        let server_tx = call.server_tx;
        if code < 200 {
            if let (101.., Some(c)) = (code, &b.carrier) {
                // An early dialog with the carrier: the caller's PRACK or UPDATE in it
                // are renumbered (and their challenges answered) like the rest.
                if let Ok(from) = call.invite.from_header() {
                    let answers = u32::from(c.answers);
                    dialogs.carrier_early(&call.call_id, &c.trunk, from.value(), answers, now.mono);
                }
            }
            if !b.provisional {
                b.provisional = true;
                if let Some(cause) = b.cancel.take() {
                    if let Some(tx) = b.tx {
                        let reason = cancel_reason(cause, &call.cancel_reason);
                        send_cancel(cx, tx, b.peer, reason);
                    }
                    return;
                }
            }
            // §16.7 step 5: provisional responses other than 100 are relayed.
            if code > 100 && !call.final_sent && b.cancel.is_none() {
                cx.wire.respond(server_tx, resp, now);
            }
            return;
        }
        if (200..300).contains(&code) {
            let first = !b.done;
            b.done = true;
            if first {
                let b = &call.branches[branch];
                let answer = Answer {
                    call_id: &call.call_id,
                    invite: &call.invite,
                    response: &resp,
                    caller: call.caller_user.as_deref(),
                    caller_peer: cx.wire.transactions.peer(server_tx),
                    callee: b.user.as_deref(),
                    callee_leg: &format!("b{branch}"),
                    callee_peer: b.peer,
                    carrier: b.carrier.as_ref().map(|c| Carrier {
                        trunk: &c.trunk,
                        offset: answers,
                    }),
                    local: false,
                };
                dialogs.track(cx, answer);
            }
            // §16.7 step 9: every 2xx is relayed at once (retransmissions too).
            cx.wire.relay_2xx(server_tx, resp, now);
            if first {
                call.record.answered.get_or_insert(now.unix);
                if call.final_code.is_none() {
                    call.final_code = Some(code);
                    self.setup
                        .observe(now.mono.saturating_duration_since(call.started));
                }
                call.final_sent = true;
                call.exec.branch_answered(branch, now.mono);
                self.drive(cx, key);
            }
            return;
        }
        // A final failure.
        if b.done {
            return;
        }
        b.done = true;
        b.cancel = None;
        if let Some(u) = &b.user {
            cx.presence
                .model_mut()
                .leg_ended(u, &call.call_id, &format!("b{branch}"));
        }
        if (300..400).contains(&code) && self.config.follow_redirects {
            let targets = redirect_targets(cx, &self.config.redirect_domains, &resp);
            let offered = targets.len();
            b.response = Some(resp);
            let started = call.exec.branch_redirected(branch, code, targets, now.mono);
            tracing::info!(call_id = %call.call_id, branch, code, offered, started, "branch redirected");
        } else {
            b.response = Some(resp);
            call.exec.branch_failed(branch, code, now.mono);
        }
        self.drive(cx, key);
    }

    /// A branch got no final response: its transaction timed out (`timer_c`: it rang
    /// too long) or could not reach its peer.
    pub(crate) fn branch_failed(
        &mut self,
        cx: &mut Ctx<'_>,
        key: u64,
        branch: BranchId,
        tx: TxId,
        code: u16,
        timer_c: bool,
    ) {
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        let Some(b) = call.branches.get_mut(branch) else {
            return;
        };
        if b.tx != Some(tx) {
            return; // an abandoned transaction: its end is awaited, nothing more
        }
        if !timer_c && !b.provisional && !b.done {
            // A transport error, or no answer at all: the URI's next target, if any.
            if let Some(peer) = b.peer {
                let now = cx.now.mono;
                cx.locating
                    .locator
                    .report_failure(target_of(peer), None, now);
            }
            let why = if code == 408 {
                "no answer"
            } else {
                "unreachable"
            };
            if fail_over(cx, key, call, branch, why) {
                return self.drive(cx, key);
            }
        }
        let Some(b) = call.branches.get_mut(branch) else {
            return;
        };
        if timer_c && b.provisional {
            // §16.8: a branch that rang too long is cancelled (or given up when it never
            // answered at all).
            b.cancelled = true;
            if let Some(tx) = b.tx {
                send_cancel(cx, tx, b.peer, None);
            }
        }
        if !b.done {
            b.done = true;
            if let Some(u) = &b.user {
                cx.presence
                    .model_mut()
                    .leg_ended(u, &call.call_id, &format!("b{branch}"));
            }
            call.exec.branch_failed(branch, code, cx.now.mono);
        }
        self.drive(cx, key);
    }

    /// A branch's transaction ended: without a final response, the branch failed (408).
    pub(crate) fn branch_ended(&mut self, cx: &mut Ctx<'_>, key: u64, branch: BranchId, tx: TxId) {
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        if let Some(b) = call.branches.get_mut(branch) {
            if b.tx != Some(tx) {
                b.abandoned.retain(|a| a.tx != tx);
                return self.drive(cx, key);
            }
            b.tx = None;
            if !b.done {
                b.done = true;
                call.exec.branch_failed(branch, 408, cx.now.mono);
            }
        }
        self.drive(cx, key);
    }

    /// The caller's transaction ended (e.g. timer H): nothing more can be relayed.
    pub(crate) fn caller_gone(&mut self, key: u64) {
        if let Some(call) = self.calls.get_mut(&key) {
            call.final_sent = true;
        }
    }

    /// A response to an INVITE transaction the branch went on from: a provisional one
    /// has it CANCELled (the target rings after all, and must not go on ringing); a 2xx
    /// (it answered before the CANCEL reached it) is relayed like every 2xx (§16.7 step
    /// 9), and the caller ends that extra dialog; a final failure is the end of it.
    fn abandoned_response(
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
        let server_tx = call.server_tx;
        let Some(b) = call.branches.get_mut(branch) else {
            return;
        };
        let Some(a) = b.abandoned.iter_mut().find(|a| a.tx == tx) else {
            return;
        };
        if code < 200 {
            if !a.cancelled {
                a.cancelled = true;
                tracing::info!(call_id = %call.call_id, branch, to = %a.peer, "a target gone on from answered late: cancelled");
                send_cancel(cx, tx, Some(a.peer), Some(proxy::completed_elsewhere()));
            }
        } else if code < 300 {
            tracing::warn!(call_id = %call.call_id, branch, to = %a.peer, "a target gone on from answered 2xx: relayed; the caller ends that dialog");
            cx.wire.relay_2xx(server_tx, resp, now);
        }
    }

    /// The resolution branch `branch` of call `key` waited for: its INVITE goes to the
    /// first target, or it fails 503 with a Warning saying why.
    pub(crate) fn located(
        &mut self,
        cx: &mut Ctx<'_>,
        key: u64,
        branch: BranchId,
        id: ResolutionId,
        outcome: Result<Resolved, LocateError>,
    ) {
        let now = cx.now;
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        let Some(b) = call.branches.get_mut(branch) else {
            return;
        };
        if b.resolving != Some(id) {
            return;
        }
        b.resolving = None;
        if b.done || b.cancelled {
            return self.drive(cx, key);
        }
        if b.confirm.is_some() {
            return self.confirm_located(cx, key, branch, outcome);
        }
        let uri = match &b.prepared {
            Some(p) => p.uri.clone(),
            None => String::new(),
        };
        if let Err(code) = go_to_targets(cx, key, call, branch, &uri, outcome) {
            if let Some(b) = call.branches.get_mut(branch) {
                b.done = true;
            }
            call.exec.branch_unstartable(branch, code, now.mono);
        }
        self.drive(cx, key);
    }

    /// What the media engine did for a message branch: opened its session (the caller is
    /// answered 183 with our SDP — or 200 OK for an announcement or a mailbox, which
    /// answer — then the message plays), or the message is over (played or not: the plan
    /// goes on), or an answered caller went silent (hung up), or a mailbox's recording
    /// ended (the message is kept, whether or not the call is still there).
    pub(crate) fn media_event(
        &mut self,
        cx: &mut Ctx<'_>,
        key: u64,
        branch: BranchId,
        what: Happened,
    ) {
        let now = cx.now;
        let what = match what {
            Happened::Phone { id, event } => {
                return self.phone_step(cx, id, PhoneInput::Event(event));
            }
            Happened::Recorded {
                deposit,
                recording,
                closing,
            } => {
                // Kept whether or not the caller is still there (one who hung up has
                // left a whole message); the call, if it is, hears "goodbye" next.
                let kept = voicemail::keep(cx, &deposit, &recording, &mut self.voicemail);
                tracing::debug!(call_id = %deposit.call_id, ?kept, closing, "mailbox recording ended");
                return;
            }
            other => other,
        };
        let Some(call) = self.calls.get_mut(&key) else {
            if let Happened::Opened { id, .. } = what {
                cx.media.close(&mut cx.wire.out, id);
            }
            return;
        };
        let Some(b) = call.branches.get_mut(branch) else {
            return;
        };
        match what {
            Happened::Opened { id, sdp } => {
                if call.final_sent || b.cancelled || b.media != Some(id) {
                    b.media = None;
                    cx.media.close(&mut cx.wire.out, id);
                    return;
                }
                if b.local.is_some_and(|l| l.answer) {
                    self.answer_caller(cx, key, branch, id, sdp);
                    cx.media.answered(id);
                    if let Some(call) = self.calls.get_mut(&key) {
                        call.exec.local_answered(branch, now.mono);
                    }
                    cx.media.play(&mut cx.wire.out, id, now.mono);
                    if self.phones.contains_key(&id) {
                        self.phone_step(cx, id, PhoneInput::Begin);
                    }
                    return self.drive(cx, key);
                }
                let tag = cx.wire.tag();
                let resp = local_response(cx, call, 183, &tag, sdp);
                cx.wire.respond(call.server_tx, resp, now);
                cx.media.play(&mut cx.wire.out, id, now.mono);
                // Its early dialog: the caller's INFO (keys) and OPTIONS come to us.
                call.early_tags.push((tag, branch));
                self.local_dialogs
                    .entry(call.call_id.clone())
                    .or_insert(key);
            }
            Happened::Ended { how } => {
                if call.local.as_ref().is_some_and(|l| l.branch == branch) {
                    // The answering announcement is over: the plan's next one plays in
                    // the same session, or the call is hung up.
                    tracing::info!(call_id = %call.call_id, branch, how, "announcement");
                    b.done = true;
                    call.exec.media_ended(branch, &how, now.mono);
                    return self.drive(cx, key);
                }
                b.media = None;
                b.done = true;
                let how = if b.full_mailbox && how == "played" {
                    "full: the caller was told so".to_string()
                } else {
                    how
                };
                if b.what.starts_with("menu ") {
                    tracing::info!(call_id = %call.call_id, branch, how, what = b.what, "menu over without a choice: its default");
                } else {
                    tracing::info!(call_id = %call.call_id, branch, how, "message");
                }
                call.exec.media_ended(branch, &how, now.mono);
                self.drive(cx, key);
            }
            Happened::Chosen { key: digit } => {
                // The menu's session is closed: the call goes on to the option, still
                // unanswered (whoever the option rings answers the caller).
                b.media = None;
                b.done = true;
                tracing::info!(call_id = %call.call_id, branch, %digit, what = b.what, "menu option chosen");
                call.exec.menu_chosen(branch, digit, now.mono);
                self.drive(cx, key);
            }
            Happened::Unavailable { how } => {
                b.media = None;
                b.done = true;
                tracing::info!(call_id = %call.call_id, branch, how, "message");
                if b.local.is_some() && call.local.is_none() && !call.final_sent {
                    // The call is for it: 503, to try again later.
                    let tag = cx.wire.tag();
                    let mut resp =
                        message::response(&call.invite, 503, Some(&tag), &cx.wire.server);
                    resp.headers.push(Header::RetryAfter("5".into()));
                    resp.headers.push(message::warning(&how));
                    b.response = Some(resp);
                    call.exec.local_refused(branch, 503, now.mono);
                } else {
                    call.exec.media_ended(branch, &how, now.mono);
                }
                self.drive(cx, key);
            }
            Happened::Silent { id } => {
                if call.local.as_ref().is_some_and(|l| l.session == id) {
                    tracing::info!(call_id = %call.call_id, "no RTP from the caller: hung up");
                    end_local(cx, &mut self.local_ends, call, true, "rtp timeout");
                    self.drive(cx, key);
                }
            }
            // Kept above, before the call is looked for.
            Happened::Recorded { .. } | Happened::Phone { .. } => {}
        }
    }

    /// Answers a call 200 from our session `id` (SDP `sdp`) for branch `branch`: the
    /// daemon becomes the caller's UAS ([`LocalDialog`]: our 2xx sent again until its ACK,
    /// the caller's requests in the dialog come to us), and the dialog is tracked
    /// ([`LocalEnd::Answered`]). What the branch does next is the caller's to say (an
    /// announcement plays; a confirmed forward bridges).
    fn answer_caller(
        &mut self,
        cx: &mut Ctx<'_>,
        key: u64,
        branch: BranchId,
        id: SessionId,
        sdp: Vec<u8>,
    ) {
        let now = cx.now;
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        let tag = cx.wire.tag();
        let resp = local_response(cx, call, 200, &tag, sdp);
        let cseq = message::cseq_number(&call.invite.headers).unwrap_or(0);
        let at = now.mono + T1;
        self.resends.insert((at, key, Side::Caller));
        call.local = Some(LocalDialog {
            branch,
            session: id,
            tag: tag.clone(),
            unacked: Some(Unacked {
                tx: call.server_tx,
                response: resp.clone(),
                cseq,
                at,
                interval: T1,
                give_up: now.mono + 64 * T1,
            }),
        });
        self.local_dialogs
            .entry(call.call_id.clone())
            .or_insert(key);
        cx.wire.respond(call.server_tx, resp.clone(), now);
        call.record.answered.get_or_insert(now.unix);
        if call.final_code.is_none() {
            call.final_code = Some(200);
            self.setup
                .observe(now.mono.saturating_duration_since(call.started));
        }
        call.final_sent = true;
        self.local_ends.push(LocalEnd::Answered {
            call_id: call.call_id.clone(),
            invite: Box::new(call.invite.clone()),
            response: Box::new(resp),
            caller: call.caller_user.clone(),
            caller_peer: cx.wire.transactions.peer(call.server_tx),
        });
    }

    /// The call whose dialog of the daemon's own `req` is in (its Call-ID, and our To tag:
    /// of the 200 that answered it, or of one of its messages' 183s), if any.
    pub(crate) fn local_dialog(&self, req: &Request) -> Option<u64> {
        // Every in-dialog request asks: no answered or early local dialog, no work.
        if self.local_dialogs.is_empty() {
            return None;
        }
        let call_id = req.call_id_header().ok()?;
        let key = *self.local_dialogs.get(call_id.value().trim())?;
        let to = req.to_header().ok()?;
        let tag = message::tag_of(to.value())?;
        let call = self.calls.get(&key)?;
        let answered = call.local.as_ref().is_some_and(|l| l.tag == tag);
        let early = call.early_tags.iter().any(|(t, _)| t == tag);
        (answered || early).then_some(key)
    }

    /// An ACK in a dialog the daemon answered: the end of our 2xx's retransmissions (and,
    /// after a re-INVITE without an offer, the answer to the offer our 2xx made).
    pub(crate) fn local_ack(&mut self, cx: &mut Ctx<'_>, key: u64, req: &Request) {
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        let Some(l) = call.local.as_mut() else {
            return;
        };
        let cseq = message::cseq_number(&req.headers);
        let Some(u) = l.unacked.take_if(|u| Some(u.cseq) == cseq) else {
            return;
        };
        self.resends.remove(&(u.at, key, Side::Caller));
        let out = &mut cx.wire.out;
        match call
            .branches
            .get_mut(l.branch)
            .and_then(|b| b.confirm.as_mut())
        {
            Some(c) if self.confirm.has(l.session) => c.reacked(out, l.session, req),
            _ => cx.media.reacked(out, l.session, req),
        }
    }

    /// A request of the caller in a dialog the daemon answered (§12.2.2): BYE ends the
    /// call (200); INFO with a DTMF body is a key pressed (200, and the digit goes to the
    /// session as [`Event::Digit`](switchboard_media::session::Event::Digit), returned for
    /// the core to hand to [`super::media::Media::event`]); OPTIONS 200; a re-INVITE 200
    /// with our SDP (or 488); other methods 405.
    pub(crate) fn in_local_dialog(
        &mut self,
        cx: &mut Ctx<'_>,
        key: u64,
        tx: TxId,
        req: &Request,
    ) -> Option<switchboard_media::session::Event> {
        let now = cx.now;
        let Some(call) = self.calls.get_mut(&key) else {
            cx.wire.reply_stateless(tx, req, 481, Vec::new());
            return None;
        };
        let allow = || Header::Allow(LOCAL_ALLOW.into());
        let tag = req
            .to_header()
            .ok()
            .and_then(|t| message::tag_of(t.value()).map(str::to_string))
            .unwrap_or_default();
        let answered = call.local.as_ref().is_some_and(|l| l.tag == tag);
        if !answered {
            return self.in_early_dialog(cx, key, tx, req, &tag);
        }
        let Some(l) = call.local.as_mut() else {
            cx.wire.reply_to(tx, req, 481, Vec::new(), now);
            return None;
        };
        match req.method {
            Method::Bye => {
                cx.wire.reply_to(tx, req, 200, Vec::new(), now);
                tracing::info!(call_id = %call.call_id, "the caller hung up");
                end_local(cx, &mut self.local_ends, call, false, "bye");
                self.drive(cx, key);
                None
            }
            Method::Info => info_digit(cx, tx, req, Some(l.session)),
            Method::Options => {
                let headers = vec![allow(), Header::Accept("application/sdp".into())];
                cx.wire.reply_to(tx, req, 200, headers, now);
                None
            }
            Method::Invite => {
                let session = l.session;
                let out = &mut cx.wire.out;
                let answer = match call
                    .branches
                    .get_mut(l.branch)
                    .and_then(|b| b.confirm.as_mut())
                {
                    // A confirmed forward's caller: its leg's stream answers.
                    Some(c) if self.confirm.has(session) => c.reoffered(out, session, req),
                    _ => cx.media.reanswer(out, session, req),
                };
                match answer {
                    Ok(sdp) => {
                        let contact = call.inbound.contact();
                        let side = (key, Side::Caller);
                        answer_reinvite(
                            cx,
                            &mut self.resends,
                            side,
                            &mut l.unacked,
                            tx,
                            req,
                            contact,
                            sdp,
                        );
                    }
                    Err(refusal) => {
                        let code = refusal.code.unwrap_or(488);
                        let warning = if code == 488 {
                            incompatible(&call.inbound)
                        } else {
                            message::warning(&refusal.why)
                        };
                        cx.wire.reply_to(tx, req, code, vec![warning], now);
                    }
                }
                None
            }
            _ => {
                cx.wire.reply_to(tx, req, 405, vec![allow()], now);
                None
            }
        }
    }

    /// A request of the caller in the early dialog of one of our 183s (tag `tag`): INFO
    /// with a DTMF body is a key pressed during the message (200, the digit for its
    /// session); OPTIONS 200; a BYE ends the call as a CANCEL would (200, and 487 to the
    /// INVITE, §15.1.2); a second INVITE before our final response 500 with Retry-After
    /// (§14.2); PRACK 481 (we send no reliable provisional response); others 405.
    fn in_early_dialog(
        &mut self,
        cx: &mut Ctx<'_>,
        key: u64,
        tx: TxId,
        req: &Request,
        tag: &str,
    ) -> Option<switchboard_media::session::Event> {
        let now = cx.now;
        let Some(call) = self.calls.get_mut(&key) else {
            cx.wire.reply_stateless(tx, req, 481, Vec::new());
            return None;
        };
        let branch = call
            .early_tags
            .iter()
            .find(|(t, _)| t == tag)
            .map(|(_, b)| *b);
        let session = branch
            .and_then(|b| call.branches.get(b))
            .and_then(|b| b.media);
        match req.method {
            Method::Info => info_digit(cx, tx, req, session),
            Method::Options => {
                let headers = vec![
                    Header::Allow(LOCAL_ALLOW.into()),
                    Header::Accept("application/sdp".into()),
                ];
                cx.wire.reply_to(tx, req, 200, headers, now);
                None
            }
            Method::Bye if !call.final_sent => {
                cx.wire.reply_to(tx, req, 200, Vec::new(), now);
                tracing::info!(call_id = %call.call_id, "the caller hung up in early media (BYE)");
                call.exec.caller_cancelled(now.mono);
                call.final_sent = true;
                call.cancelled = true;
                call.final_code.get_or_insert(487);
                let tag = cx.wire.tag();
                let resp = message::response(&call.invite, 487, Some(&tag), &cx.wire.server);
                cx.wire.respond(call.server_tx, resp, now);
                self.drive(cx, key);
                None
            }
            Method::Invite => {
                let retry = vec![Header::RetryAfter("2".into())];
                cx.wire.reply_to(tx, req, 500, retry, now);
                None
            }
            Method::Bye | Method::PRack => {
                cx.wire.reply_to(tx, req, 481, Vec::new(), now);
                None
            }
            _ => {
                let allow = vec![Header::Allow(LOCAL_ALLOW.into())];
                cx.wire.reply_to(tx, req, 405, allow, now);
                None
            }
        }
    }

    /// The dialog of a call the daemon answered ended elsewhere (the caller lost, its
    /// session expired, `max_call_secs`): its session is closed.
    pub(crate) fn dialog_ended(&mut self, cx: &mut Ctx<'_>, call_id: &str) {
        let Some(&key) = self.local_dialogs.get(call_id) else {
            return;
        };
        if let Some(call) = self.calls.get_mut(&key).filter(|c| c.local.is_some()) {
            let live = call.branches.iter().any(|b| !b.done);
            if live {
                let mut ignored = Vec::new();
                end_local(cx, &mut ignored, call, false, "ended");
            }
        }
        self.drive(cx, key);
    }

    /// The daemon is stopping: every call it answered itself is hung up (a BYE each).
    pub(crate) fn hang_up_all(&mut self, cx: &mut Ctx<'_>) {
        let keys: Vec<u64> = self.local_dialogs.values().copied().collect();
        for key in keys {
            if let Some(call) = self.calls.get_mut(&key).filter(|c| c.local.is_some()) {
                if call.branches.iter().any(|b| !b.done) {
                    end_local(cx, &mut self.local_ends, call, true, "shutdown");
                }
            }
            self.drive(cx, key);
        }
    }

    /// Our 2xx of local dialogs not yet acknowledged, sent again when due (T1 doubling to
    /// T2); one without its ACK for 64·T1 has its call hung up (§13.3.1.4).
    fn resend_2xx(&mut self, cx: &mut Ctx<'_>) {
        let now = cx.now;
        while let Some(&(at, key, side)) = self.resends.first() {
            if at > now.mono {
                break;
            }
            self.resends.remove(&(at, key, side));
            let Some(call) = self.calls.get_mut(&key) else {
                continue;
            };
            let unacked = match side {
                Side::Caller => call.local.as_mut().map(|l| &mut l.unacked),
                Side::Target(b) => call
                    .branches
                    .get_mut(b)
                    .and_then(|b| b.confirm.as_mut())
                    .map(|c| c.unacked()),
            };
            let Some(slot) = unacked else {
                continue;
            };
            let Some(u) = slot.as_mut().filter(|u| u.at == at) else {
                continue;
            };
            if now.mono >= u.give_up {
                *slot = None;
                tracing::info!(call_id = %call.call_id, ?side, "no ACK for our 2xx: hung up");
                match side {
                    // A target not yet connected to the caller: its leg alone ends.
                    Side::Target(b) if call.local.is_none() => {
                        confirm_b2b::unacked_target(cx, &mut self.confirm, call, b)
                    }
                    _ => end_local(cx, &mut self.local_ends, call, true, "no ack"),
                }
                self.drive(cx, key);
                continue;
            }
            cx.wire.respond(u.tx, u.response.clone(), now);
            u.interval = (u.interval * 2).min(T2);
            u.at = now.mono + u.interval;
            self.resends.insert((u.at, key, side));
        }
    }

    /// Calls whose timeline has something due.
    pub(crate) fn timeout(&mut self, cx: &mut Ctx<'_>) {
        self.resend_2xx(cx);
        self.confirm_timeout(cx);
        let due: Vec<SessionId> = self
            .phones
            .iter()
            .filter(|(_, r)| r.menu.deadline().is_some_and(|at| at <= cx.now.mono))
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.phone_step(cx, id, PhoneInput::Timeout);
        }
        while let Some(&(at, key, branch)) = self.failovers.first() {
            if at > cx.now.mono {
                break;
            }
            self.failovers.remove(&(at, key, branch));
            self.silent_target(cx, key, branch, at);
        }
        while let Some(&(at, key)) = self.wakes.first() {
            if at > cx.now.mono {
                break;
            }
            self.wakes.remove(&(at, key));
            if let Some(call) = self.calls.get_mut(&key) {
                call.wake = None;
                call.exec.handle_timeout(cx.now.mono);
            }
            self.drive(cx, key);
        }
    }
}

impl Calls {
    /// Whether a call dials the mailbox by phone, and how it is let in: the access number
    /// (number and PIN asked), or the feature code from a person's own device — alone,
    /// their own mailbox; followed by a number, the mailbox of that number (its PIN asked,
    /// unless it is theirs or a team's they are a member of). None: an ordinary call.
    fn mailbox_phone(&self, policy: &Policy, caller: &Caller, dialled: &str) -> Option<Action> {
        let vm = &self.config.voicemail;
        if vm.access_number.as_deref() == Some(dialled) {
            return Some(Action::MailboxPhone {
                mailbox: None,
                number: None,
            });
        }
        let Caller::User(user) = caller else {
            return None;
        };
        let rest = dialled.strip_prefix(vm.feature_code.as_str())?;
        if vm.feature_code.is_empty() {
            return None;
        }
        if rest.is_empty() {
            return Some(Action::MailboxPhone {
                mailbox: Some(MailboxOwner::User(user.clone())),
                number: None,
            });
        }
        if rest.len() > mailbox_menu::MAX_NUMBER_DIGITS || !rest.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let own = policy
            .mailbox_by_number(rest)
            .filter(|owner| match owner {
                MailboxOwner::User(u) => u == user,
                MailboxOwner::Team(t) => policy.team(t).is_some_and(|t| t.members.contains(user)),
            })
            .cloned();
        Some(match own {
            Some(owner) => Action::MailboxPhone {
                mailbox: Some(owner),
                number: None,
            },
            None => Action::MailboxPhone {
                mailbox: None,
                number: Some(rest.to_string()),
            },
        })
    }

    /// A change of the mailbox by phone of session `session` reached the store or not.
    pub(crate) fn phone_stored(&mut self, cx: &mut Ctx<'_>, session: SessionId, ok: bool) {
        self.phone_step(cx, session, PhoneInput::Stored(ok));
    }

    /// One step of the mailbox by phone of session `id`: its menu takes `input`, and what
    /// it asks is carried out on the session (plays, recordings, reads), in the store
    /// (changes, undone if refused) or on the call (hung up once goodbye is said).
    fn phone_step(&mut self, cx: &mut Ctx<'_>, id: SessionId, input: PhoneInput) {
        let Some(run) = self.phones.get_mut(&id) else {
            return;
        };
        let mut env = Env {
            mailboxes: &mut *cx.mailboxes,
            policy: cx.directory.policy(),
            pins: &mut self.pins,
            language: cx.media.language(),
            now: cx.now.mono,
            unix: cx.now.unix,
        };
        let todo = match input {
            PhoneInput::Begin => run.menu.begin(&mut env),
            PhoneInput::Event(PhoneEvent::Played) => run.menu.played(&mut env),
            PhoneInput::Event(PhoneEvent::Digit(d)) => run.menu.digit(&mut env, d),
            PhoneInput::Event(PhoneEvent::Recorded(samples)) => run.menu.recorded(samples),
            PhoneInput::Event(PhoneEvent::Read { key, value }) => run.menu.read(&key, value),
            PhoneInput::Timeout => run.menu.timeout(&mut env),
            PhoneInput::Stored(ok) => run.menu.stored(ok),
        };
        let (call, branch) = (run.call, run.branch);
        let mut hang_up = false;
        for step in todo {
            match step {
                Do::Play(say) => cx.media.phone_say(&mut cx.wire.out, id, say, cx.now.mono),
                Do::Stop => cx.media.phone_stop(&mut cx.wire.out, id),
                Do::Record { max } => cx.wire.out.push_back(Output::Media(MediaCommand::Record {
                    id,
                    max,
                    silence: None,
                })),
                Do::StopRecording => cx
                    .wire
                    .out
                    .push_back(Output::Media(MediaCommand::StopRecording { id })),
                Do::Read { table, key } => cx.media.phone_read(&mut cx.wire.out, id, table, key),
                Do::Persist {
                    writes,
                    before,
                    wait,
                } => {
                    let pending = Pending::Phone {
                        session: id,
                        before: *before,
                        wait,
                    };
                    cx.persist(pending, writes);
                }
                Do::HangUp => hang_up = true,
            }
        }
        if !hang_up {
            return;
        }
        self.phones.remove(&id);
        if let Some(c) = self.calls.get_mut(&call) {
            if let Some(b) = c.branches.get_mut(branch) {
                b.done = true;
            }
            tracing::info!(call_id = %c.call_id, "mailbox by phone: goodbye");
            c.exec.media_ended(branch, "said goodbye", cx.now.mono);
        }
        self.drive(cx, call);
    }
}

impl Calls {
    /// A branch's target gave no provisional response within the per-target time: the
    /// branch goes on to its next target; the silent transaction is abandoned (see
    /// [`Branch::abandoned`]).
    fn silent_target(&mut self, cx: &mut Ctx<'_>, key: u64, branch: BranchId, at: Instant) {
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        let Some(b) = call.branches.get_mut(branch) else {
            return;
        };
        if b.failover_at != Some(at) || b.provisional || b.done || b.cancelled {
            return;
        }
        b.failover_at = None;
        let (Some(tx), Some(peer)) = (b.tx, b.peer) else {
            return;
        };
        if b.next_targets.is_empty() {
            return;
        }
        cx.locating
            .locator
            .report_failure(target_of(peer), None, cx.now.mono);
        b.abandoned.push(Abandoned {
            tx,
            peer,
            cancelled: false,
        });
        b.tx = None;
        if !fail_over(cx, key, call, branch, "no provisional response in time") {
            // Every other target failed to be sent to: the silent one is the branch's still.
            let b = &mut call.branches[branch];
            if let Some(a) = b.abandoned.pop() {
                b.tx = Some(a.tx);
            }
        }
        self.drive(cx, key);
    }
}

/// The record of a call whose outcome is settled (answered, or its final response sent).
fn record_of(call: &CallState, now: u64) -> CallRecord {
    let answered = match call.exec.phase() {
        Phase::Answered { branch } => Some((*branch, call.exec.branch_step(*branch))),
        _ => None,
    };
    let settled = Settled {
        call_id: &call.call_id,
        caller: &call.from,
        caller_user: call.caller_user.as_deref(),
        dialled: &call.to,
        opening: &call.record,
        plan: call.exec.plan(),
        history: call.exec.history(),
        branches: call
            .branches
            .iter()
            .enumerate()
            .map(|(i, b)| BranchSeen {
                what: &b.what,
                user: b.user.as_deref(),
                rang: b.provisional || answered.is_some_and(|(a, _)| a == i),
            })
            .collect(),
        answered,
        last_step: call.exec.last_step(),
        final_code: call.final_code,
        cancelled: call.cancelled,
        now,
    };
    settled.record()
}

/// A branch's target failed (`why`, for the log): its INVITE goes to the URI's next
/// target on a new transaction. False when there is none left (or the branch is being
/// cancelled): the failure is the branch's.
fn fail_over(
    cx: &mut Ctx<'_>,
    key: u64,
    call: &mut CallState,
    branch: BranchId,
    why: &str,
) -> bool {
    let Some(b) = call.branches.get_mut(branch) else {
        return false;
    };
    if b.cancelled || b.cancel.is_some() || b.prepared.is_none() {
        return false;
    }
    let from = b.peer;
    while let Some(next) = call.branches[branch].next_targets.pop_front() {
        tracing::info!(call_id = %call.call_id, branch, from = from.map(|p| p.to_string()), to = %next, why, "branch failing over to the next target");
        if let Some(old) = call.branches[branch].tx.take() {
            // The failed transaction is over (a final response, a transport error):
            // whatever is left of it is no longer the branch's.
            cx.wire.owners.remove(&old);
        }
        if send_branch(cx, key, call, branch, next.peer()).is_ok() {
            return true;
        }
    }
    false
}

/// The Reason a branch's CANCEL carries.
fn cancel_reason(cause: CancelCause, caller_reason: &Option<Header>) -> Option<Header> {
    match cause {
        CancelCause::CompletedElsewhere => Some(proxy::completed_elsewhere()),
        CancelCause::CallerCancelled => caller_reason.clone(),
        CancelCause::NoAnswer => None,
    }
}

/// What a branch's INVITE is made from, whichever target of its URI it goes to: kept
/// while the branch waits for its URI's targets and for failing over to the next one.
struct Prepared {
    /// The Request-URI.
    uri: String,
    /// The person it rings, for call status.
    user: Option<String>,
    /// For the log.
    what: String,
    /// The trunk whose account answers the carrier's challenges.
    account_of: Option<String>,
    /// The caller ID, already written as a trunk's carrier wants numbers.
    caller_id: CallerIdRule,
    /// Header fields added to the forwarded INVITE (a voicemail server's diversion).
    headers: Vec<Header>,
}

/// Where a branch goes: a known peer, or the targets of a URI with a host name.
enum Where {
    Peer(Peer),
    Locate(String),
}

/// A branch that cannot be sent to its URI's targets: it fails 503, the caller told why
/// in a Warning (should its answer be the best the call gets).
fn unreachable_branch(cx: &mut Ctx<'_>, call: &mut CallState, index: BranchId, why: &str) {
    let tag = cx.wire.tag();
    let mut resp = message::response(&call.invite, 503, Some(&tag), &cx.wire.server);
    resp.headers.push(message::warning(why));
    if let Some(b) = call.branches.get_mut(index) {
        b.response = Some(resp);
    }
}

/// Where a branch to `start`'s target goes, and what its request is made from: the
/// Request-URI, a known peer or a URI to locate, the person it rings, for the log, the
/// trunk whose account answers challenges, the caller ID (written as a trunk's carrier
/// wants numbers) and header fields to add. Err with the code the branch fails with.
fn route_of(
    cx: &Ctx<'_>,
    call: &CallState,
    start: &crate::executor::BranchStart,
) -> Result<(Prepared, Where), u16> {
    let now = cx.now;
    let policy = cx.directory.policy();
    let mut account_of = None;
    let mut headers = Vec::new();
    let (uri, whither, user, what) = match &start.target {
        BranchTarget::Device { user, device } => {
            let binding = cx
                .registrar
                .lookup(user, now.unix)
                .into_iter()
                .filter(|b| b.contact == *device)
                .reduce(|a, b| if newer(b, a) { b } else { a })
                .cloned();
            let Some(b) = binding else {
                tracing::info!(call_id = %call.call_id, user, device, "device no longer registered");
                return Err(480);
            };
            let peer = match (binding_peer(&b), binding_hop(&b)) {
                (Some(peer), _) => peer,
                // Through the node that holds the phone's flow: the Route naming it
                // carries the call's token, which that node checks (the nodes share the
                // secret that keys it).
                (None, Some((node, hop))) => {
                    headers.push(Header::Route(
                        format!("<{hop};lr{}>", call.rr_params).into(),
                    ));
                    node
                }
                (None, None) => {
                    tracing::info!(call_id = %call.call_id, user, device, "device's connection is closed");
                    return Err(503);
                }
            };
            (
                b.contact.clone(),
                Where::Peer(peer),
                Some(user.clone()),
                format!("{user} at {}", b.contact),
            )
        }
        BranchTarget::External { number, trunk } => {
            let Some(t) = trunk.as_ref().and_then(|t| policy.trunk(t)) else {
                tracing::info!(call_id = %call.call_id, number, "no trunk carries this number");
                return Err(404);
            };
            let Some(trunk_uri) = t.uri.clone() else {
                tracing::info!(call_id = %call.call_id, trunk = %t.id, "trunk has no uri for outbound calls");
                return Err(503);
            };
            if t.account.is_some() {
                account_of = Some(t.id.clone());
            }
            // Written as the carrier wants it (national, international or E.164).
            let number = t.numbers.format(number);
            let what = format!("{number} via trunk {}", t.id);
            match proxy::uri_target(&trunk_uri) {
                // An address: the Request-URI names it.
                Some((transport, addr)) => {
                    let hp = proxy::host_port(addr);
                    let tp = transport.uri_suffix();
                    let peer = Peer {
                        transport,
                        addr,
                        conn: None,
                        local: None,
                    };
                    (
                        format!("sip:{number}@{hp}{tp}"),
                        Where::Peer(peer),
                        None,
                        what,
                    )
                }
                // A host name: the Request-URI keeps it (and its port and parameters);
                // the INVITE goes to its targets (RFC 3263).
                None => (
                    format!("sip:{number}@{}", uri_host_part(&trunk_uri)),
                    Where::Locate(trunk_uri),
                    None,
                    what,
                ),
            }
        }
        BranchTarget::Destination { id, uri, diverted } => {
            if let Some((owner, reason)) = diverted {
                headers = diversion(policy, &cx.config.realm, owner, reason, uri);
            }
            let whither = match peer_for_uri(cx.registrar, uri, now) {
                Some(dest) => Where::Peer(dest),
                None => Where::Locate(uri.clone()),
            };
            (uri.clone(), whither, None, format!("destination {id}"))
        }
        BranchTarget::Message { .. }
        | BranchTarget::Menu { .. }
        | BranchTarget::Announcement { .. }
        | BranchTarget::Mailbox { .. }
        | BranchTarget::MailboxPhone { .. } => {
            // Started by `start_local`, never here.
            return Err(500);
        }
        BranchTarget::Redirect { uri } => {
            let whither = match peer_for_uri(cx.registrar, uri, now) {
                Some(dest) => Where::Peer(dest),
                None => Where::Locate(uri.clone()),
            };
            (uri.clone(), whither, None, format!("redirect to {uri}"))
        }
    };
    // A caller ID leaving through a trunk is written as its carrier wants numbers.
    let trunk_plan = match &start.target {
        BranchTarget::External { trunk, .. } => trunk.as_ref().and_then(|t| policy.trunk(t)),
        _ => None,
    };
    let caller_id = match (&start.caller_id, trunk_plan) {
        (CallerIdRule::Number { number, display }, Some(t)) => CallerIdRule::Number {
            number: t.numbers.format(number),
            display: display.clone(),
        },
        (rule, _) => rule.clone(),
    };
    let prepared = Prepared {
        uri,
        user,
        what,
        account_of,
        caller_id,
        headers,
    };
    Ok((prepared, whither))
}

/// Starts a branch of call `key`: its target found, the INVITE forwarded to it — or, when
/// its URI has a host name not yet located, left waiting for the resolution
/// ([`Calls::located`]). Err with the code the branch fails with when it cannot be
/// started.
fn start_branch(
    cx: &mut Ctx<'_>,
    key: u64,
    call: &mut CallState,
    start: crate::executor::BranchStart,
) -> Result<(), u16> {
    let now = cx.now;
    let index = start.branch;
    while call.branches.len() <= index {
        call.branches.push(Branch::default());
    }
    let (prepared, whither) = route_of(cx, call, &start)?;
    let b = &mut call.branches[index];
    b.what = prepared.what.clone();
    b.prepared = Some(Box::new(prepared));
    let uri = match whither {
        Where::Peer(dest) => return send_branch(cx, key, call, index, dest),
        Where::Locate(uri) => uri,
    };
    let waiter = Waiter::Branch {
        call: key,
        branch: index,
    };
    match cx.locating.resolve(&uri, waiter, now.mono) {
        Located::Done(outcome) => go_to_targets(cx, key, call, index, &uri, outcome),
        Located::Pending(id) => {
            tracing::debug!(call_id = %call.call_id, branch = index, uri, "branch waits for its URI's targets (DNS)");
            call.branches[index].resolving = Some(id);
            Ok(())
        }
    }
}

/// How a voicemail server of the policy learns whose mailbox a call is for, when a person's
/// or team's setting sent it there (`owner`, for `reason`): `Diversion` (RFC 5806, what
/// most voicemail servers read) naming the owner's extension and why, and `History-Info`
/// (RFC 7044) with the owner's entry, the response cause that retargeted it (RFC 4458's
/// codes: 408 no reply, 486 busy, 302 unconditional, 503 not reachable), and the server's
/// entry, mapped from it. A call dialled to the mailbox itself carries neither.
fn diversion(
    policy: &switchboard_policy::Policy,
    realm: &str,
    owner: &switchboard_policy::MailboxOwner,
    reason: &switchboard_policy::VoicemailReason,
    server: &str,
) -> Vec<Header> {
    use switchboard_policy::{MailboxOwner, VoicemailReason as R};
    let (why, cause) = match reason {
        R::NoAnswer => ("no-answer", 408),
        R::Busy => ("user-busy", 486),
        R::OutOfHours => ("time-of-day", 302),
        R::Unavailable => ("unavailable", 503),
        R::Profile(_) => ("away", 302),
        R::Direct => return Vec::new(),
    };
    let number = match owner {
        MailboxOwner::User(u) => policy.user(u).map(|u| u.extension.clone()),
        MailboxOwner::Team(t) => policy.team(t).and_then(|t| t.extension.clone()),
    }
    .filter(|e| !e.is_empty())
    .unwrap_or_else(|| owner.id().to_string());
    let from = format!("sip:{number}@{realm}");
    let server = proxy::strip_angle(server);
    vec![
        Header::Other(
            "Diversion".into(),
            format!("<{from}>;reason={why};counter=1"),
        ),
        Header::Other(
            "History-Info".into(),
            format!("<{from}?Reason=SIP%3Bcause%3D{cause}>;index=1, <{server}>;index=1.1;mp=1"),
        ),
    ]
}

/// The part of a SIP URI after its scheme and user: `host[:port][;params]`.
fn uri_host_part(uri: &str) -> &str {
    let u = proxy::strip_angle(uri);
    let u = u.split_once(':').map_or(u, |(_, rest)| rest);
    let end = u.find([';', '?']).unwrap_or(u.len());
    match u[..end].rfind('@') {
        Some(at) => &u[at + 1..],
        None => u,
    }
}

/// A branch's URI was located: its INVITE goes to the first target that takes it, the
/// others kept to fail over to. Err(503) — with a Warning saying why — when there is
/// none.
fn go_to_targets(
    cx: &mut Ctx<'_>,
    key: u64,
    call: &mut CallState,
    index: BranchId,
    uri: &str,
    outcome: Result<Resolved, LocateError>,
) -> Result<(), u16> {
    match outcome {
        Ok(resolved) => {
            let b = &mut call.branches[index];
            b.next_targets = resolved.targets.into();
            while let Some(t) = call.branches[index].next_targets.pop_front() {
                if send_branch(cx, key, call, index, t.peer()).is_ok() {
                    return Ok(());
                }
            }
            let why = format!("no target of {uri} could be sent to");
            unreachable_branch(cx, call, index, &why);
            Err(503)
        }
        Err(e) => {
            tracing::warn!(call_id = %call.call_id, branch = index, uri, error = %e, "branch's URI cannot be located");
            unreachable_branch(cx, call, index, &e.to_string());
            Err(503)
        }
    }
}

/// Sends a branch's INVITE (as [`Prepared`]) to `dest` on a new client transaction,
/// with a Via branch of its own; the branch fails over from it after the per-target time
/// when it has more targets. Err with the code the branch fails with when it cannot be
/// sent.
fn send_branch(
    cx: &mut Ctx<'_>,
    key: u64,
    call: &mut CallState,
    index: BranchId,
    dest: Peer,
) -> Result<(), u16> {
    let now = cx.now;
    let Some(prepared) = call.branches.get_mut(index).and_then(|b| b.prepared.take()) else {
        return Err(500);
    };
    let sent = send_prepared(cx, key, call, index, &prepared, dest);
    let b = &mut call.branches[index];
    b.prepared = Some(prepared);
    let (tx, dest, carrier) = sent?;
    let prepared = b.prepared.as_ref().expect("put back above");
    if let Some(u) = &prepared.user {
        cx.presence
            .model_mut()
            .leg(u, &call.call_id, &format!("b{index}"), LegState::Ringing);
    }
    tracing::debug!(call_id = %call.call_id, branch = index, to = %dest, what = %prepared.what, "branch started");
    b.tx = Some(tx);
    b.peer = Some(dest);
    b.user = prepared.user.clone();
    b.what = prepared.what.clone();
    b.carrier = carrier;
    b.provisional = false;
    b.failover_at = None;
    if !b.next_targets.is_empty() {
        b.failover_at = Some(now.mono + call.failover_after);
    }
    Ok(())
}

/// Builds and sends a branch's INVITE to `dest`: the transaction, where it went (with the
/// address it leaves from), and what answers the carrier's challenge.
fn send_prepared(
    cx: &mut Ctx<'_>,
    key: u64,
    call: &CallState,
    index: BranchId,
    prepared: &Prepared,
    dest: Peer,
) -> Result<(TxId, Peer, Option<Box<Challenged>>), u16> {
    let now = cx.now;
    let policy = cx.directory.policy();
    let Ok(uri) = switchboard_sip::parse::uri_as_written(&prepared.uri) else {
        return Err(480);
    };
    let mut dest = dest;
    let Some(local_out) = cx.wire.leave_from(&mut dest) else {
        tracing::warn!(call_id = %call.call_id, transport = %dest.transport, "no listener to send this branch from");
        return Err(503);
    };
    let params = &call.rr_params;
    let rr_out = local_out.route_uri(params);
    let mut rr = vec![rr_out.clone()];
    // §16.6 step 4, RFC 5658: two Record-Routes when the two sides reach us differently
    // (another address, name or transport). Each is the entry of ours one side faces:
    // the outbound side's on top, as the callee takes the set top first, the inbound
    // side's below it, first for the caller, who takes the set in reverse.
    let rr_in = call.inbound.route_uri(params);
    if rr_in != rr_out {
        rr.push(rr_in);
    }
    let via = local_out.via(&cx.wire.branch(Some(call.loop_key)));
    let mut out = proxy::forward(&call.invite, Some(uri), &via, &rr);
    for h in &prepared.headers {
        out.headers.push(h.clone());
    }
    apply_identity(
        &cx.config.realm,
        &mut out,
        call,
        &prepared.caller_id,
        policy,
    );
    let owner = Owner::Branch {
        call: key,
        branch: index,
    };
    // Kept to answer the carrier's challenge with the trunk's account.
    let carrier = prepared
        .account_of
        .clone()
        .map(|trunk| Challenged::new(trunk, out.clone()));
    match cx.wire.send_request(out, dest, owner, now) {
        Ok(tx) => Ok((tx, dest, carrier)),
        Err(e) => {
            tracing::warn!(call_id = %call.call_id, error = %e, "branch not sent");
            Err(500)
        }
    }
}

/// The carrier challenged a branch sent to a trunk with an account (401 or 407): the
/// branch's INVITE goes again with the account's credentials, one CSeq number higher,
/// with a new Via branch, on a new transaction (the challenged one is over: the layer
/// ACKed the challenge). True when it went; false when the challenge is not answered
/// (logged once: the carrier refused the credentials, or asks for something the account
/// cannot give), or when the branch is being cancelled.
fn answer_challenge(
    cx: &mut Ctx<'_>,
    key: u64,
    call: &mut CallState,
    branch: BranchId,
    resp: &Response,
) -> bool {
    let now = cx.now;
    let directory = cx.directory;
    let code = resp.status_code.code();
    let Some(b) = call.branches.get_mut(branch) else {
        return false;
    };
    let (Some(c), Some(peer), Some(old)) = (b.carrier.as_mut(), b.peer, b.tx) else {
        return false;
    };
    if b.cancelled || b.cancel.is_some() {
        return false;
    }
    let Some(account) = directory
        .policy()
        .trunk(&c.trunk)
        .and_then(|t| t.account.as_ref())
    else {
        // The account is gone with a reload: nothing answers for it.
        cx.carrier.refused(
            &c.trunk,
            &call.call_id,
            code,
            "the trunk has no account any more",
        );
        return false;
    };
    // From where the challenged INVITE left (the peer of the branch keeps it).
    let mut peer = peer;
    let Some(local) = cx.wire.leave_from(&mut peer) else {
        return false;
    };
    let via = local.via(&cx.wire.branch(Some(call.loop_key)));
    let req = match cx
        .carrier
        .answer(&mut cx.wire.entropy, account, c, resp, via)
    {
        Ok(req) => req,
        Err(why) => {
            cx.carrier.refused(&c.trunk, &call.call_id, code, why);
            return false;
        }
    };
    let owner = Owner::Branch { call: key, branch };
    // The challenged transaction absorbs what is left of it (retransmissions of the
    // challenge) on its own; its end is no longer the branch's.
    cx.wire.owners.remove(&old);
    match cx.wire.send_request(req, peer, owner, now) {
        Ok(tx) => {
            tracing::debug!(call_id = %call.call_id, branch, trunk = %c.trunk, code, "carrier's challenge answered");
            b.tx = Some(tx);
            // §9.1 again: a CANCEL waits for this transaction's first provisional response.
            b.provisional = false;
            true
        }
        Err(e) => {
            tracing::warn!(call_id = %call.call_id, error = %e, "authenticated branch not sent");
            false
        }
    }
}

/// Cancels a branch (§16.10): at once once it has rung, else when it first does (§9.1).
fn cancel_branch(cx: &mut Ctx<'_>, call: &mut CallState, branch: BranchId, cause: CancelCause) {
    let Some(b) = call.branches.get_mut(branch) else {
        return;
    };
    if let Some(id) = b.media.take() {
        // A message being played: it stops, its session is closed.
        cx.media.close(&mut cx.wire.out, id);
        b.cancelled = true;
        b.done = true;
        return;
    }
    if let Some(u) = &b.user {
        cx.presence
            .model_mut()
            .leg_ended(u, &call.call_id, &format!("b{branch}"));
    }
    b.failover_at = None;
    let Some(tx) = b.tx else {
        if let Some(id) = b.resolving.take() {
            // Still waiting for its URI's targets: nothing will be sent.
            cx.locating.cancel(id);
            b.cancelled = true;
            b.done = true;
        }
        return;
    };
    b.cancelled = true;
    if !b.provisional {
        // §9.1: no CANCEL before a provisional response; it goes when one arrives.
        b.cancel = Some(cause);
        return;
    }
    let reason = cancel_reason(cause, &call.cancel_reason);
    send_cancel(cx, tx, b.peer, reason);
}

/// Starts message or menu branch `branch` of a call: its media session is asked for, or
/// it is skipped (with a log line) and the plan goes on (a menu's: to its default).
/// `local`: the call is for it (an announcement destination): an offer it cannot answer
/// refuses the call (488 with a Warning, 400, 503 with Retry-After). In a call the daemon
/// has answered already, a message plays next in the same session.
fn start_local(
    cx: &mut Ctx<'_>,
    key: u64,
    call: &mut CallState,
    branch: BranchId,
    endpoint: Endpoint<'_>,
    local: Option<LocalBranch>,
) {
    while call.branches.len() <= branch {
        call.branches.push(Branch::default());
    }
    call.branches[branch].local = local;
    call.branches[branch].what = match endpoint {
        Endpoint::Message(message) => format!("message {message}"),
        Endpoint::Menu(menu) => format!("menu {}", menu.id),
        Endpoint::Mailbox(run) => format!("mailbox {}", run.deposit.mailbox),
        Endpoint::Phone => "mailbox by phone".to_string(),
    };
    if let Some(l) = call.local.as_mut() {
        // Answered already: the next announcement, in the same session (a menu's keys
        // ring people, which an answered call cannot: `check` refuses that plan).
        let started = match endpoint {
            Endpoint::Message(message) => {
                cx.media
                    .play_next(&mut cx.wire.out, l.session, branch, message)
            }
            Endpoint::Menu(_) => Err(super::media::Refusal::skip(
                "a menu cannot follow an answered announcement",
            )),
            Endpoint::Mailbox(_) | Endpoint::Phone => Err(super::media::Refusal::skip(
                "a mailbox cannot follow an answered announcement",
            )),
        };
        match started {
            Ok(()) => {
                l.branch = branch;
                call.branches[branch].media = Some(l.session);
            }
            Err(refusal) => {
                call.branches[branch].done = true;
                tracing::info!(call_id = %call.call_id, what = call.branches[branch].what, why = %refusal.why, "skipped");
                let how = format!("skipped: {}", refusal.why);
                call.exec.media_ended(branch, &how, cx.now.mono);
            }
        }
        return;
    }
    let signalling = cx
        .wire
        .transactions
        .peer(call.server_tx)
        .map(|p| p.addr.ip());
    let inbound = call.inbound.addr.ip();
    let started = match signalling {
        Some(signalling) => cx.media.start(
            &mut cx.wire.out,
            key,
            branch,
            &call.invite,
            signalling,
            inbound,
            endpoint,
        ),
        None => Err(super::media::Refusal {
            why: "the caller's transaction is gone".to_string(),
            code: None,
        }),
    };
    let b = &mut call.branches[branch];
    match started {
        Ok(id) => b.media = Some(id),
        Err(refusal) => {
            b.done = true;
            // A flood of calls without an offer would repeat it: rate-limited.
            if switchboard_sip::log_limit::allow("message skipped") {
                let why = &refusal.why;
                match endpoint {
                    Endpoint::Message(message) => {
                        tracing::info!(call_id = %call.call_id, %message, %why, "message skipped")
                    }
                    Endpoint::Menu(menu) => {
                        tracing::info!(call_id = %call.call_id, menu = menu.id, %why, "menu skipped: the call goes to its default")
                    }
                    Endpoint::Mailbox(run) => {
                        tracing::info!(call_id = %call.call_id, mailbox = %run.deposit.mailbox, %why, "mailbox skipped: the plan goes on")
                    }
                    Endpoint::Phone => {
                        tracing::info!(call_id = %call.call_id, %why, "mailbox by phone refused")
                    }
                }
            }
            if let (Some(_), Some(code)) = (local, refusal.code) {
                // The call is for it: the caller is told why it cannot be served.
                let tag = cx.wire.tag();
                let mut resp = message::response(&call.invite, code, Some(&tag), &cx.wire.server);
                match code {
                    488 => resp.headers.push(incompatible(&call.inbound)),
                    503 => resp.headers.push(Header::RetryAfter("5".into())),
                    415 => resp.headers.push(Header::Accept("application/sdp".into())),
                    _ => resp.headers.push(message::warning(&refusal.why)),
                }
                b.response = Some(resp);
                call.exec.local_refused(branch, code, cx.now.mono);
                return;
            }
            call.exec
                .media_ended(branch, &format!("skipped: {}", refusal.why), cx.now.mono);
        }
    }
}

/// Starts mailbox branch `branch` of a call (`mailbox`'s, reached for `reason`): a
/// mailbox that takes messages and has room answers the call and takes one (see
/// [`super::voicemail`]); a caller it cannot serve is refused as an announcement's (488
/// with a Warning, 400, 503 with Retry-After). A mailbox that is off (or gone with a
/// reload) is skipped: the plan goes on as when nobody answers.
///
/// A full mailbox is not answered: the caller hears "the mailbox is full" in early media
/// (a message branch), then the plan goes on as when nobody answers — the step's
/// `on_no_answer`, which for a mailbox is the plan's 480 unless the operator set another.
/// Answering only to hang up would show the call as answered on the caller's phone and
/// start the caller's billing for nothing, and would leave nothing for the plan's next
/// step to do; early media says the same words and keeps the call unanswered.
fn start_mailbox(
    cx: &mut Ctx<'_>,
    key: u64,
    call: &mut CallState,
    branch: BranchId,
    mailbox: &MailboxOwner,
    reason: &VoicemailReason,
    (config, stats): (&VoicemailConfig, &mut VoicemailStats),
) {
    while call.branches.len() <= branch {
        call.branches.push(Branch::default());
    }
    let what = format!("mailbox {mailbox}");
    let policy = cx.directory.policy();
    let Some(settings) = policy.mailbox(mailbox).filter(|v| v.enabled) else {
        let b = &mut call.branches[branch];
        b.what = what;
        b.done = true;
        tracing::info!(call_id = %call.call_id, %mailbox, "mailbox takes no messages (turned off, or gone): the plan goes on");
        let how = format!("skipped: the mailbox of {mailbox} takes no messages");
        call.exec.media_ended(branch, &how, cx.now.mono);
        return;
    };
    let mailbox_key = mailbox.key();
    let max_messages = settings.max_messages.unwrap_or(config.max_messages);
    if !cx.mailboxes.has_room(&mailbox_key, max_messages) {
        stats.full += 1;
        tracing::info!(call_id = %call.call_id, %mailbox, max_messages, "mailbox full: the caller is told so");
        let full = Message::Named(switchboard_media::say::phrase::THE_MAILBOX_IS_FULL.into());
        call.branches[branch].full_mailbox = true;
        start_local(cx, key, call, branch, Endpoint::Message(&full), None);
        call.branches[branch].what = what;
        return;
    }
    let (caller, caller_name) = caller_identity(call, policy);
    let original = match (&call.record.dialled_user, &call.record.team) {
        (Some(u), _) => Some(MailboxOwner::User(u.clone()).key()),
        (None, Some(t)) => Some(MailboxOwner::Team(t.clone()).key()),
        (None, None) => None,
    };
    let deposit = Deposit {
        mailbox: mailbox_key,
        caller,
        caller_name,
        called: super::records::cut(&call.to),
        original,
        reason: reason.as_str().to_string(),
        profile: match reason {
            VoicemailReason::Profile(p) => Some(p.clone()),
            _ => None,
        },
        call_id: super::records::cut(&call.call_id),
        max_messages,
        // Mailed by the mail task, and only with `[mail]` configured.
        mail_to: if cx.config.mail {
            settings.email.clone()
        } else {
            Vec::new()
        },
        min_message: config.min_message,
    };
    let owner = match mailbox {
        MailboxOwner::User(u) => voicemail::Owner {
            name_prompt: Some(format!("name_{u}")),
            extension: policy.user(u).map(|u| u.extension.clone()),
            busy: *reason == VoicemailReason::Busy,
        },
        MailboxOwner::Team(t) => voicemail::Owner {
            name_prompt: None,
            extension: policy.team(t).and_then(|t| t.extension.clone()),
            busy: *reason == VoicemailReason::Busy,
        },
    };
    let max = settings
        .max_message_secs
        .map_or(config.max_message, |s| Duration::from_secs(s.into()));
    let run = MailboxRun::new(deposit, owner, max, config.silence());
    let local = Some(LocalBranch { answer: true });
    start_local(cx, key, call, branch, Endpoint::Mailbox(&run), local);
    call.branches[branch].what = what;
}

/// Our response `code` (183 or 200) to a call's INVITE, with our To tag `tag`, our
/// Contact and SDP `sdp`; a 200 also with the dialog's route set (§12.1.1, as the caller's
/// proxies asked) and what we allow.
fn local_response(
    cx: &mut Ctx<'_>,
    call: &CallState,
    code: u16,
    tag: &str,
    sdp: Vec<u8>,
) -> Response {
    let mut resp = message::response(&call.invite, code, Some(tag), &cx.wire.server);
    resp.headers
        .retain(|h| !matches!(h, Header::ContentLength(_)));
    if code == 200 {
        for h in call.invite.headers.iter() {
            if matches!(h, Header::RecordRoute(_)) {
                resp.headers.push(h.clone());
            }
        }
        resp.headers.push(Header::Allow(LOCAL_ALLOW.into()));
    }
    let contact = call.inbound.contact();
    resp.headers.push(Header::Contact(contact.into()));
    resp.headers
        .push(Header::ContentType("application/sdp".into()));
    resp.headers
        .push(Header::ContentLength((sdp.len() as u32).into()));
    resp.body = sdp;
    resp
}

/// Who called, as a message left in a mailbox shows it: a user of ours by their extension
/// and name; otherwise the number (or user part) and display name of the INVITE's
/// P-Asserted-Identity when a trunk asserted one, else of its From (`anonymous` shows as
/// none).
fn caller_identity(call: &CallState, policy: &Policy) -> (String, Option<String>) {
    if let Some(user) = call.caller_user.as_deref().and_then(|u| policy.user(u)) {
        return (user.extension.clone(), Some(user.display_name.clone()));
    }
    let asserted = call.caller_trunk.then(|| {
        call.invite.headers.iter().find_map(|h| match h {
            Header::PAssertedIdentity(v) => Some(v.value().to_string()),
            _ => None,
        })
    });
    let value = match asserted.flatten() {
        Some(v) => v,
        None => match call.invite.from_header() {
            Ok(f) => f.value().to_string(),
            Err(_) => return (String::new(), None),
        },
    };
    let value = split_first_value(&value).0;
    let number = header_user(Some(value))
        .filter(|u| !u.eq_ignore_ascii_case("anonymous"))
        .unwrap_or_default();
    let name = value
        .split_once('<')
        .map(|(name, _)| name.trim().trim_matches('"').trim())
        .filter(|n| !n.is_empty() && !n.eq_ignore_ascii_case("anonymous"))
        .map(super::records::cut);
    (super::records::cut(&number), name)
}

/// An INFO of the caller in a dialog of ours: a DTMF body (`application/dtmf-relay`,
/// `application/dtmf`) is answered 200 and its key returned as the session's
/// [`Event::Digit`](switchboard_media::session::Event::Digit); another type 415 with what
/// we accept; an unreadable body 400.
fn info_digit(
    cx: &mut Ctx<'_>,
    tx: TxId,
    req: &Request,
    session: Option<SessionId>,
) -> Option<switchboard_media::session::Event> {
    let now = cx.now;
    let content_type = req.headers.iter().find_map(|h| match h {
        Header::ContentType(c) => Some(c.value().to_string()),
        _ => None,
    });
    let digit = content_type.map(|c| switchboard_media::dtmf::parse_info(&c, &req.body));
    match digit {
        Some(Ok(d)) => {
            cx.wire.reply_to(tx, req, 200, Vec::new(), now);
            session.map(|id| switchboard_media::session::Event::Digit {
                id,
                digit: d.digit.to_char(),
            })
        }
        Some(Err(switchboard_media::dtmf::InfoError::ContentType)) | None => {
            let accept = Header::Accept("application/dtmf-relay, application/dtmf".into());
            cx.wire.reply_to(tx, req, 415, vec![accept], now);
            None
        }
        Some(Err(e)) => {
            let warning = message::warning(&e.to_string());
            cx.wire.reply_to(tx, req, 400, vec![warning], now);
            None
        }
    }
}

/// `Warning: 305 <us> "Incompatible media format"` (RFC 3261 §20.43), for an offer we
/// cannot answer.
fn incompatible(inbound: &Local) -> Header {
    let host = inbound.contact();
    let host = host.trim_start_matches('<').trim_start_matches("sip:");
    let host = host.split([';', '>']).next().unwrap_or(host);
    Header::Warning(format!("305 {host} \"Incompatible media format\"").into())
}

/// A call the daemon answered itself is over: its session closed, its dialog ended (with
/// a BYE of ours to the caller when `bye`).
fn end_local(
    cx: &mut Ctx<'_>,
    ends: &mut Vec<LocalEnd>,
    call: &mut CallState,
    bye: bool,
    how: &'static str,
) {
    let Some(l) = call.local.as_mut() else {
        return;
    };
    if let Some(b) = call.branches.get_mut(l.branch) {
        b.done = true;
        b.media = None;
    }
    cx.media.close(&mut cx.wire.out, l.session);
    l.unacked = None;
    for b in call.branches.iter_mut() {
        b.done = true;
    }
    ends.push(LocalEnd::Over {
        call_id: call.call_id.clone(),
        bye,
        how,
    });
}

/// Identity headers of a branch: our realm's credentials consumed; the caller's
/// The contacts of a redirect (3xx) a call may follow, best `q` first (RFC 3261 §16.7
/// step 4; equal `q` in the order given): a user of ours (their registered devices), or a
/// URI in one of `domains`. Anything else — a number, a stranger's domain — is not rung: a
/// redirect must not make the server dial out on someone's behalf.
fn redirect_targets(cx: &Ctx<'_>, domains: &[String], resp: &Response) -> Vec<BranchTarget> {
    let mut contacts: Vec<(u32, usize, String)> = Vec::new();
    for h in resp.headers.iter() {
        let Header::Contact(c) = h else { continue };
        for entry in message::split_values(c.value()) {
            // `<uri>;params` (the URI may hold `;` of its own), or `uri;params`.
            let uri = match entry.split_once('<') {
                Some((_, rest)) => rest.split('>').next().unwrap_or(""),
                None => entry.split(';').next().unwrap_or(""),
            }
            .trim()
            .to_string();
            // q in thousandths (0 to 1000), 1000 when absent.
            let params = entry.rsplit_once('>').map_or(entry, |(_, p)| p);
            let q = params
                .split(';')
                .filter_map(|p| p.trim().split_once('='))
                .find(|(k, _)| k.eq_ignore_ascii_case("q"))
                .and_then(|(_, v)| v.trim().parse::<f32>().ok())
                .map_or(1000, |q| (q.clamp(0.0, 1.0) * 1000.0) as u32);
            let n = contacts.len();
            contacts.push((q, n, uri));
        }
    }
    contacts.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let policy = cx.directory.policy();
    let mut out = Vec::new();
    for (_, _, uri) in contacts {
        let Ok(parsed) = Uri::try_from(uri.as_str()) else {
            continue;
        };
        let host = parsed.host_with_port.host.to_string().to_ascii_lowercase();
        let user = parsed.user().map(str::to_string);
        if cx.wire.local.is_local_host(&host) {
            // One of ours: a user, by id, extension or SIP user name.
            let Some(u) = user.as_deref() else { continue };
            let id = policy
                .user(u)
                .map(|x| x.id.as_str())
                .or_else(|| policy.user_by_extension(u).map(|x| x.id.as_str()))
                .or_else(|| policy.sip_user(u));
            let Some(id) = id else { continue };
            for b in cx.registrar.lookup(id, cx.now.unix) {
                out.push(BranchTarget::Device {
                    user: id.to_string(),
                    device: b.contact.clone(),
                });
            }
        } else if domains.contains(&host) {
            out.push(BranchTarget::Redirect { uri });
        }
    }
    out
}

/// identity asserted (P-Asserted-Identity, RFC 3325) as the plan says.
fn apply_identity(
    realm: &str,
    req: &mut Request,
    call: &CallState,
    rule: &CallerIdRule,
    policy: &Policy,
) {
    let ours = format!("realm=\"{realm}\"");
    req.headers.retain(|h| match h {
        Header::ProxyAuthorization(a) => !a.value().contains(&ours),
        _ => true,
    });
    let asserted = match rule {
        CallerIdRule::Number { number, display } => {
            // The rung party sees this number: From shows it too (its tag kept, so
            // the dialog is the caller's own).
            let name = display.as_deref().map(quote);
            let uri = format!("sip:{}@{realm}", quote(number));
            let value = match &name {
                Some(n) => format!("\"{n}\" <{uri}>"),
                None => format!("<{uri}>"),
            };
            let tag = req
                .from_header()
                .ok()
                .and_then(|f| message::tag_of(f.value()).map(str::to_string));
            for h in req.headers.iter_mut() {
                if let Header::From(_) = h {
                    *h = Header::From(
                        match &tag {
                            Some(t) => format!("{value};tag={t}"),
                            None => value.clone(),
                        }
                        .into(),
                    );
                    break;
                }
            }
            Some(value)
        }
        CallerIdRule::Caller => match &call.caller_user {
            Some(u) => policy.user(u).map(|user| {
                format!(
                    "\"{}\" <sip:{}@{realm}>",
                    quote(&user.display_name),
                    quote(&user.extension)
                )
            }),
            // A trunk's assertion is trusted and passed on.
            None if call.caller_trunk => return,
            None => None,
        },
    };
    req.headers
        .retain(|h| !matches!(h, Header::PAssertedIdentity(_)));
    if let Some(v) = asserted {
        req.headers.push(Header::PAssertedIdentity(v.into()));
    }
}

#[cfg(test)]
#[path = "calls_tests.rs"]
mod tests;

#[path = "confirm_b2b.rs"]
mod confirm_b2b;
