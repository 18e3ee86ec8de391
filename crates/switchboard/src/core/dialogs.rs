//! Answered calls, from their 2xx to their BYE: who is in them (call status in presence),
//! and whether both ends still know them.
//!
//! A BYE that bypasses the proxy (a phone that lost power, a network that went away, a
//! trunk that dropped the call) would leave its people busy until `routing.max_call_secs`.
//! So every `routing.dialog_probe_secs` the proxy sends each end of every answered call an
//! OPTIONS inside the dialog: the dialog's Call-ID and tags, From and To as the other end
//! would write them, the end's remote target as Request-URI, the Route set toward it
//! beyond this proxy, a Via of ours, over the flow the dialog reaches it by — a client
//! transaction like any other, so retransmissions and Timer F apply.
//!
//! The proxy has no CSeq space of its own in a dialog. A probe carries the highest CSeq
//! number the other end has sent that end through this proxy (the INVITE's toward the
//! callee; 0 toward the caller before the callee has sent anything): never lower than what
//! the end has seen (RFC 3261 §12.2.2 would accept it), and never higher than what the
//! other end sends next, so the real requests of the dialog are never taken out of order.
//! An end that wants strictly higher numbers answers 500: that answer, like any other but
//! 408 and 481, says the end still has the dialog.
//!
//! A probe answered 481 (the end no longer knows the dialog) or 408, or that gets no
//! answer (Timer F) or cannot be sent (a transport error, a flow that closed), ends the
//! call: its people's call legs end in presence (as a relayed BYE ends them, so watchers
//! are told), the other end gets a BYE from the proxy (so its phone hangs up too), and one
//! line is logged. A BYE passing through, or `max_call_secs`, ends the tracking with no
//! further probe.
//!
//! Where the phones use session timers (RFC 4028), the Session-Expires of the 2xx to the
//! INVITE, and of the 2xx to each refresh (re-INVITE or UPDATE) since, says when the session
//! ends unless refreshed again; a 2xx to a refresh without one turns the timer off (§7.2).
//! A session that reaches its end without a refresh (the phones would have sent BYE before
//! then, §10) is ended the same way, with a BYE to both ends.
//!
//! A request of the proxy's own goes where the dialog reached its end when it was set up;
//! after a target refresh moved the end, where its new next hop says. When that has a
//! host name not in the locator's cache (a carrier's new Contact), the request waits for
//! its targets (RFC 3263, [`super::locating`]) and then goes to the first: a probe only if
//! its end still waits for it, a BYE in any case.

use super::context::Ctx;
use super::locating::{Located, Waiter};
use super::targets::binding_peer;
use super::wire::{Now, Owner, Wire};
use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant};
use switchboard_presence::model::LegState;
use switchboard_sip::locate::{LocateError, Resolved};
use switchboard_sip::message::{cseq_number, set_cseq_number, split_first_value, tag_of};
use switchboard_sip::msg::headers::{Header, Headers};
use switchboard_sip::msg::{Method, Request, Response, Version};
use switchboard_sip::peer::Peer;
use switchboard_sip::proxy;
use switchboard_sip::registrar::Registrar;
use switchboard_sip::transaction::TxId;
use switchboard_sip::GrowingMap;

/// One end of an answered call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    Caller,
    Callee,
}

impl Side {
    fn index(self) -> usize {
        match self {
            Side::Caller => 0,
            Side::Callee => 1,
        }
    }

    fn other(self) -> Side {
        match self {
            Side::Caller => Side::Callee,
            Side::Callee => Side::Caller,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Side::Caller => "caller",
            Side::Callee => "callee",
        }
    }
}

/// One end of an answered call, as this proxy reaches it with a request of its own.
struct End {
    /// From and To of a request to this end: the dialog as the other end sees it.
    from: String,
    to: String,
    /// The end's tag (in `to`).
    tag: String,
    /// The end's remote target (its Contact): the Request-URI.
    target: String,
    /// The Route set from this proxy toward it (other proxies on the way; usually none).
    routes: Vec<String>,
    /// The hop the dialog reached it over when it was set up (None once a target refresh
    /// moved it: then where its target says).
    peer: Option<Peer>,
    /// The address of ours it reached this proxy at when the dialog was set up: our
    /// requests to it leave from there, also after a target refresh.
    local: Option<std::net::SocketAddr>,
    /// The highest CSeq number the other end sent it through this proxy.
    cseq: Option<u32>,
    /// A probe waiting for its answer.
    probe: Option<TxId>,
    /// A probe waiting for its next hop's targets (the key of its [`Unsent`]).
    locating: Option<u64>,
    /// The person at this end, for the log.
    user: Option<String>,
}

/// An answered call being tracked.
struct Tracked {
    /// Unix second at which it is forgotten without a BYE (`max_call_secs`).
    ends_at: u64,
    /// Caller and callee, as requests of ours reach them. None when neither probes nor a
    /// session timer may need one, or when the 2xx lacked what a request of ours needs (a
    /// Contact, a tag): such a call is not probed.
    ends: Option<Box<[End; 2]>>,
    /// When both ends are probed next.
    next_probe: Option<Instant>,
    /// When its session ends unless refreshed (RFC 4028: the Session-Expires of the last
    /// 2xx to the INVITE or a refresh).
    session_ends: Option<Instant>,
    /// The daemon itself answered it (an answered announcement): its callee end is us,
    /// never probed nor sent a BYE.
    local: bool,
}

/// The carrier's end of a call through a trunk with an account
/// ([`super::carrier_auth`]), from its first provisional response or its answered
/// challenge on. Each challenge this proxy answered with the account — the INVITE's, and
/// any of a later request of the caller — sent the carrier one CSeq number the caller
/// never used, so the caller's requests (PRACK and UPDATE in the early dialog too) reach
/// the carrier `offset` higher than the caller wrote them (RFC 3261 §12.2.1.1: they must
/// keep rising in the carrier's view), and the answers come back with the caller's
/// numbers. The carrier's own requests to the caller are numbered in its own space, and
/// pass unchanged.
struct CarrierLeg {
    /// Whose account answers the carrier's challenges.
    trunk: String,
    /// The caller's tag (its requests carry it in From).
    caller_tag: String,
    offset: u32,
    /// The highest CSeq number the carrier got from the caller's side (probes of the
    /// carrier use it once the call is answered).
    sent: Option<u32>,
}

/// How long a carrier leg of a call not answered yet is kept (the longest a call may
/// ring and hunt is well within it), and how many such legs at most: past either, the
/// oldest are forgotten (an unanswered call's leg has no other end).
const EARLY_LIFETIME: Duration = Duration::from_secs(900);
const EARLY_MAX: usize = 100_000;

/// Where a request of ours to an end of a call goes next.
enum Next {
    Peer(Peer),
    /// A URI with a host name, to locate (RFC 3263).
    Locate(String),
}

/// What became of a request of ours to an end of a call.
enum Sent {
    /// It went, on this client transaction.
    Tx(TxId),
    /// It waits for its next hop's targets (the key of its [`Unsent`]).
    Locating(u64),
}

/// A request of ours inside a dialog waiting for its next hop's targets.
struct Unsent {
    call_id: String,
    side: Side,
    purpose: Purpose,
    /// The request, without its Via (on top once it is known where it leaves from).
    req: Request,
    /// The address of ours the end reached this proxy at.
    local: Option<std::net::SocketAddr>,
}

/// What a request the proxy sent inside a dialog was for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Purpose {
    Probe,
    /// The other end is gone (Reason 408).
    Bye,
    /// A call the daemon answered is over (no Reason: it simply hangs up).
    HangUp,
}

/// The answered calls the proxy tracks: a sub-machine of the core.
pub(crate) struct Dialogs {
    /// How often each end is probed (None: never).
    probe_every: Option<Duration>,
    max_call_secs: u64,
    map: GrowingMap<String, Tracked>,
    /// When each is forgotten without a BYE (`max_call_secs`).
    forget_at: BTreeSet<(u64, String)>,
    probes_due: BTreeSet<(Instant, String)>,
    sessions_due: BTreeSet<(Instant, String)>,
    /// Our requests inside dialogs, until their transactions end.
    txs: GrowingMap<TxId, (String, Side, Purpose)>,
    /// The carrier legs of calls through trunks with accounts, by Call-ID: answered ones
    /// (forgotten with the call), and ones not answered yet (see `early`).
    carriers: GrowingMap<String, CarrierLeg>,
    /// The carrier legs made before an answer, oldest first, to forget those whose call
    /// was never answered.
    early: VecDeque<(Instant, String)>,
    /// In-dialog OPTIONS sent to ends of answered calls.
    pub probes: u64,
    /// Answered calls ended because an end no longer had the dialog or was unreachable.
    pub lost: u64,
    /// The Call-IDs of the calls ended since the core last looked ([`Dialogs::take_ended`]),
    /// each with how it ended: requests of theirs held in `relays` are answered then, and
    /// their records completed.
    ended: Vec<(String, &'static str)>,
    /// Our requests waiting for their next hop's targets, by key (their
    /// [`Waiter::Dialog`]).
    unsent: GrowingMap<u64, Box<Unsent>>,
    next_unsent: u64,
}

impl Dialogs {
    pub(crate) fn new(probe_secs: u64, max_call_secs: u64) -> Self {
        Dialogs {
            probe_every: (probe_secs > 0).then(|| Duration::from_secs(probe_secs)),
            max_call_secs,
            map: GrowingMap::new(),
            forget_at: BTreeSet::new(),
            probes_due: BTreeSet::new(),
            sessions_due: BTreeSet::new(),
            txs: GrowingMap::new(),
            carriers: GrowingMap::new(),
            early: VecDeque::new(),
            probes: 0,
            lost: 0,
            ended: Vec::new(),
            unsent: GrowingMap::new(),
            next_unsent: 0,
        }
    }

    /// The Call-IDs of the calls that ended since the last call, oldest first, each with
    /// how it ended (`bye`, `session expired`, `max_call_secs`, `lost`).
    pub(crate) fn take_ended(&mut self) -> Vec<(String, &'static str)> {
        std::mem::take(&mut self.ended)
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    pub(crate) fn carrier_legs(&self) -> usize {
        self.carriers.len()
    }

    pub(crate) fn poll_timeout(&self, now: Now) -> Option<Instant> {
        let end = self
            .forget_at
            .first()
            .map(|(t, _)| now.mono + Duration::from_secs(t.saturating_sub(now.unix)));
        let probe = self.probes_due.first().map(|(t, _)| *t);
        let session = self.sessions_due.first().map(|(t, _)| *t);
        end.into_iter().chain(probe).chain(session).min()
    }

    /// Forgets a dialog; whether it was tracked.
    fn remove(&mut self, call_id: &str) -> bool {
        self.carriers.remove(call_id);
        let Some(d) = self.map.remove(call_id) else {
            return false;
        };
        self.forget_at.remove(&(d.ends_at, call_id.to_string()));
        if let Some(at) = d.next_probe {
            self.probes_due.remove(&(at, call_id.to_string()));
        }
        if let Some(at) = d.session_ends {
            self.sessions_due.remove(&(at, call_id.to_string()));
        }
        true
    }

    /// A 2xx to the INVITE or to a refresh set the session's interval (RFC 4028 §7.2,
    /// §9): it ends `secs` from now unless refreshed; None: no session timer.
    fn set_session(&mut self, call_id: &str, secs: Option<u64>, now: Now) {
        let Some(d) = self.map.get_mut(call_id) else {
            return;
        };
        if let Some(at) = d.session_ends.take() {
            self.sessions_due.remove(&(at, call_id.to_string()));
        }
        if let Some(secs) = secs {
            let at = now.mono + Duration::from_secs(secs);
            d.session_ends = Some(at);
            self.sessions_due.insert((at, call_id.to_string()));
        }
    }
}

/// What the proxy knows of a call when its first 2xx passes through.
pub(crate) struct Answer<'a> {
    pub call_id: &'a str,
    /// The caller's INVITE as received.
    pub invite: &'a Request,
    /// The 2xx as relayed to the caller (our Via removed).
    pub response: &'a Response,
    /// The caller's person (a registered user) and the hop its INVITE came from.
    pub caller: Option<&'a str>,
    pub caller_peer: Option<Peer>,
    /// The answering person, their call leg, and the hop the branch went to.
    pub callee: Option<&'a str>,
    pub callee_leg: &'a str,
    pub callee_peer: Option<Peer>,
    /// The answering branch went to a trunk with an account.
    pub carrier: Option<Carrier<'a>>,
    /// The daemon answered it itself (the 2xx is ours; the callee end is us).
    pub local: bool,
}

/// What [`Answer`] says of a call answered through a trunk with an account.
pub(crate) struct Carrier<'a> {
    pub trunk: &'a str,
    /// Challenges answered for the INVITE: how far the carrier's CSeq numbers of the
    /// caller's requests are ahead.
    pub offset: u32,
}

/// The first value of a header, as written.
fn first_value<'a>(
    headers: &'a Headers,
    pick: impl Fn(&'a Header) -> Option<&'a str>,
) -> Option<&'a str> {
    headers.iter().find_map(pick).map(|v| v.trim())
}

/// The URI of a name-addr or addr-spec: inside the first `<…>` (parameters after it may
/// hold quoted `<…>` of their own, as `+sip.instance` does), else up to the first `;`
/// (what follows are the header's parameters).
fn addr_uri(value: &str) -> &str {
    match value.find('<') {
        Some(open) => value[open + 1..].split('>').next().unwrap_or(""),
        None => value.split(';').next().unwrap_or(value),
    }
    .trim()
}

/// The URI of a Contact header value's first entry.
fn contact_uri(headers: &Headers) -> Option<String> {
    let v = first_value(headers, |h| match h {
        Header::Contact(c) => Some(c.value()),
        _ => None,
    })?;
    let uri = addr_uri(split_first_value(v).0);
    (!uri.is_empty() && uri != "*").then(|| uri.to_string())
}

/// The interval of a Session-Expires header (RFC 4028 §4), if any and above 0.
fn session_expires(headers: &Headers) -> Option<u64> {
    first_value(headers, |h| match h {
        Header::SessionExpires(v) => Some(v.value()),
        _ => None,
    })?
    .split(';')
    .next()?
    .trim()
    .parse()
    .ok()
    .filter(|s| *s > 0)
}

fn from_value(headers: &Headers) -> Option<&str> {
    first_value(headers, |h| match h {
        Header::From(f) => Some(f.value()),
        _ => None,
    })
}

fn to_value(headers: &Headers) -> Option<&str> {
    first_value(headers, |h| match h {
        Header::To(t) => Some(t.value()),
        _ => None,
    })
}

/// The URIs of a message's Record-Route set, top first.
fn record_routes(headers: &Headers) -> Vec<String> {
    headers
        .iter()
        .filter_map(|h| match h {
            Header::RecordRoute(r) => Some(r.value()),
            _ => None,
        })
        .flat_map(switchboard_sip::message::split_values)
        .map(|v| addr_uri(v).to_string())
        .collect()
}

impl End {
    /// A target refresh (§12.2): the end's Contact in a re-INVITE or UPDATE, or in a 2xx
    /// to one.
    fn refresh(&mut self, headers: &Headers) {
        if let Some(target) = contact_uri(headers) {
            if target != self.target {
                self.target = target;
                self.peer = None;
                // An answer from where it was says nothing about where it is.
                self.probe = None;
                self.locating = None;
            }
        }
    }
}

/// Which end sent a request: the one whose tag its From carries.
fn sender(ends: &[End; 2], req: &Request) -> Option<Side> {
    let tag = from_value(&req.headers).and_then(tag_of)?;
    [Side::Caller, Side::Callee]
        .into_iter()
        .find(|s| ends[s.index()].tag == tag)
}

/// Both ends of an answered call, as requests of ours reach them.
/// `callee_cseq`: the highest CSeq number the callee got from the caller, in its own
/// numbering (a carrier that challenged counts higher than the caller's INVITE says).
fn ends_of(wire: &Wire, a: &Answer<'_>, callee_cseq: Option<u32>) -> Option<Box<[End; 2]>> {
    let caller_from = from_value(&a.invite.headers)?;
    let callee_from = from_value(&a.response.headers)?;
    let callee_to = to_value(&a.response.headers)?;
    let caller_tag = tag_of(caller_from)?.to_string();
    let callee_tag = tag_of(callee_to)?.to_string();
    // The Record-Route set of the 2xx, split around our own entries: the proxies
    // toward the callee were added above ours, those toward the caller below.
    let rr = record_routes(&a.response.headers);
    let (mut first, mut last) = (None, None);
    for (i, r) in rr.iter().enumerate() {
        if wire.uri_is_ours(r) {
            first.get_or_insert(i);
            last = Some(i);
        }
    }
    let (toward_callee, toward_caller) = match (first, last) {
        (Some(first), Some(last)) => (
            rr[..first].iter().rev().cloned().collect(),
            rr[last + 1..].to_vec(),
        ),
        // The daemon is the UAS: the route set is the Record-Route, in order (§12.1.1).
        _ if a.local => (Vec::new(), rr.clone()),
        _ => (Vec::new(), Vec::new()),
    };
    let caller = End {
        from: callee_to.to_string(),
        to: caller_from.to_string(),
        tag: caller_tag,
        target: contact_uri(&a.invite.headers)?,
        routes: toward_caller,
        peer: a.caller_peer,
        local: a.caller_peer.and_then(|p| p.local),
        cseq: None,
        probe: None,
        locating: None,
        user: a.caller.map(str::to_string),
    };
    let callee = End {
        from: callee_from.to_string(),
        to: callee_to.to_string(),
        tag: callee_tag,
        target: contact_uri(&a.response.headers)?,
        routes: toward_callee,
        peer: a.callee_peer,
        local: a.callee_peer.and_then(|p| p.local),
        cseq: callee_cseq,
        probe: None,
        locating: None,
        user: a.callee.map(str::to_string),
    };
    Some(Box::new([caller, callee]))
}

impl Dialogs {
    /// An answered call: its people are busy until the BYE, and both ends are probed (and
    /// its session timer followed).
    pub(crate) fn track(&mut self, cx: &mut Ctx<'_>, a: Answer<'_>) {
        let now = cx.now;
        let model = cx.presence.model_mut();
        if let Some(u) = a.callee {
            model.leg(u, a.call_id, a.callee_leg, LegState::Answered);
        }
        if let Some(c) = a.caller {
            model.leg(c, a.call_id, "caller", LegState::Answered);
        }
        // The carrier leg: the one of the early dialog when there was one (its offset may
        // have grown since the INVITE), else what the answering branch says.
        let early = self.carriers.remove(a.call_id);
        let carrier = a.carrier.as_ref().and_then(|c| match early {
            Some(leg) if leg.trunk == c.trunk => Some(leg),
            _ => {
                let caller_tag = from_value(&a.invite.headers).and_then(tag_of)?;
                Some(CarrierLeg {
                    trunk: c.trunk.to_string(),
                    caller_tag: caller_tag.to_string(),
                    offset: c.offset,
                    sent: None,
                })
            }
        });
        let invite_cseq = cseq_number(&a.invite.headers);
        let callee_cseq = match &carrier {
            // The number the carrier saw, credentials answered.
            Some(leg) => invite_cseq
                .map(|n| n.saturating_add(a.carrier.as_ref().map_or(0, |c| c.offset)))
                .max(leg.sent),
            None => invite_cseq,
        };
        let session = session_expires(&a.response.headers);
        let needed = self.probe_every.is_some() || session.is_some() || a.local;
        let ends = needed.then(|| ends_of(cx.wire, &a, callee_cseq)).flatten();
        if needed && ends.is_none() {
            tracing::debug!(call_id = %a.call_id, "answered call without Contact or tags: not probed");
        }
        let dialogs = &mut *self;
        let call_id = a.call_id.to_string();
        dialogs.remove(&call_id);
        if let Some(leg) = carrier {
            dialogs.carriers.insert(call_id.clone(), leg);
        }
        let ends_at = now.unix + dialogs.max_call_secs;
        let next_probe = dialogs
            .probe_every
            .filter(|_| ends.is_some())
            .map(|every| now.mono + every);
        dialogs.forget_at.insert((ends_at, call_id.clone()));
        if let Some(at) = next_probe {
            dialogs.probes_due.insert((at, call_id.clone()));
        }
        dialogs.map.insert(
            call_id,
            Tracked {
                ends_at,
                ends,
                next_probe,
                session_ends: None,
                local: a.local,
            },
        );
        self.set_session(a.call_id, session, now);
    }

    /// A call the daemon answered itself is over (`how`): a BYE of ours to the caller
    /// when `bye` (its response or timeout end nothing more), then as [`Dialogs::end`].
    pub(crate) fn local_over(
        &mut self,
        cx: &mut Ctx<'_>,
        call_id: &str,
        bye: bool,
        how: &'static str,
    ) {
        if bye {
            match self.send_in_dialog(cx, call_id, Side::Caller, Purpose::HangUp) {
                Ok(Some(_)) => {}
                Ok(None) => tracing::debug!(%call_id, "no BYE could be made for the caller"),
                Err(e) => tracing::debug!(%call_id, error = e, "no BYE to the caller"),
            }
        }
        self.end(cx, call_id, how);
    }

    /// Whether the daemon answered call `call_id` itself.
    fn is_local(&self, call_id: &str) -> bool {
        self.map.get(call_id).is_some_and(|d| d.local)
    }

    /// A call ended (a BYE passed through, `max_call_secs`, an end was gone; `how` says
    /// which): forgotten, no longer probed, its people's call legs ended.
    pub(crate) fn end(&mut self, cx: &mut Ctx<'_>, call_id: &str, how: &'static str) {
        if self.remove(call_id) {
            self.ended.push((call_id.to_string(), how));
        }
        // Branches of the call still being cancelled ring no more either.
        cx.presence.model_mut().call_ended(call_id);
    }

    /// A request on its way through, as forwarded: one the caller sends to the carrier of
    /// a call answered through a trunk with an account gets its CSeq number raised by the
    /// dialog's offset (so the ACK for the 2xx carries the number of the INVITE the
    /// carrier answered), and the trunk is returned: its account answers the carrier's
    /// challenges to it. Requests the other way, or in other calls, are left as they are.
    pub(crate) fn toward_carrier(&mut self, call_id: &str, req: &mut Request) -> Option<String> {
        let leg = self.carriers.get_mut(call_id)?;
        if from_value(&req.headers).and_then(tag_of) != Some(leg.caller_tag.as_str()) {
            return None;
        }
        if let Some(n) = cseq_number(&req.headers) {
            let n = n.saturating_add(leg.offset);
            if leg.offset > 0 {
                set_cseq_number(&mut req.headers, n);
            }
            leg.sent = leg.sent.max(Some(n));
        }
        Some(leg.trunk.clone())
    }

    /// A call through a trunk with an account, not answered yet, whose carrier has sent a
    /// provisional response or had a challenge answered: `offset` challenges answered for
    /// its INVITE so far. Requests of the caller in the early dialog (PRACK, UPDATE) are
    /// renumbered from now on, and the answer takes the leg over. `caller_from` is the
    /// caller's From.
    pub(crate) fn carrier_early(
        &mut self,
        call_id: &str,
        trunk: &str,
        caller_from: &str,
        offset: u32,
        now: Instant,
    ) {
        if let Some(leg) = self.carriers.get_mut(call_id) {
            leg.offset = leg.offset.max(offset);
            return;
        }
        if self.map.contains_key(call_id) {
            // Answered already (a late provisional response of another branch).
            return;
        }
        let Some(caller_tag) = tag_of(caller_from) else {
            return;
        };
        // Forget the legs of calls that were never answered.
        while let Some((at, id)) = self.early.front() {
            let old = now.saturating_duration_since(*at) > EARLY_LIFETIME;
            if !old && self.early.len() < EARLY_MAX {
                break;
            }
            if !self.map.contains_key(id) {
                self.carriers.remove(id);
            }
            self.early.pop_front();
        }
        self.carriers.insert(
            call_id.to_string(),
            CarrierLeg {
                trunk: trunk.to_string(),
                caller_tag: caller_tag.to_string(),
                offset,
                sent: None,
            },
        );
        self.early.push_back((now, call_id.to_string()));
    }

    /// The carrier challenged a request of the caller and the account answered it, with
    /// CSeq number `sent`: the carrier is one number further ahead.
    pub(crate) fn carrier_challenge_answered(&mut self, call_id: &str, sent: u32) {
        if let Some(leg) = self.carriers.get_mut(call_id) {
            leg.offset = leg.offset.saturating_add(1);
            leg.sent = leg.sent.max(Some(sent));
        }
        let Some(d) = self.map.get_mut(call_id) else {
            return;
        };
        if let Some(ends) = d.ends.as_mut() {
            let callee = &mut ends[Side::Callee.index()];
            callee.cseq = Some(callee.cseq.map_or(sent, |c| c.max(sent)));
        }
    }

    /// A 2xx relayed without a transaction (a late retransmission, §16.7 step 9) of a
    /// request of the caller in a call answered through a trunk with an account: back to
    /// the caller's numbering.
    pub(crate) fn toward_caller(&self, resp: &mut Response) {
        let Some(call_id) = first_value(&resp.headers, |h| match h {
            Header::CallId(c) => Some(c.value()),
            _ => None,
        }) else {
            return;
        };
        let Some(leg) = self.carriers.get(call_id) else {
            return;
        };
        if leg.offset == 0
            || from_value(&resp.headers).and_then(tag_of) != Some(leg.caller_tag.as_str())
        {
            return;
        }
        if let Some(n) = cseq_number(&resp.headers) {
            set_cseq_number(&mut resp.headers, n.saturating_sub(leg.offset));
        }
    }

    /// An in-dialog request passing through: the CSeq number its sender reached (the
    /// probes to the other end use it) and, for a target refresh, the sender's new
    /// Contact.
    pub(crate) fn request_seen(&mut self, call_id: &str, req: &Request) {
        if matches!(req.method, Method::Ack | Method::Cancel) {
            return;
        }
        let Some(ends) = self.map.get_mut(call_id).and_then(|d| d.ends.as_mut()) else {
            return;
        };
        let Some(sender) = sender(ends, req) else {
            return;
        };
        if let Some(n) = cseq_number(&req.headers) {
            let toward = &mut ends[sender.other().index()];
            toward.cseq = Some(toward.cseq.map_or(n, |c| c.max(n)));
        }
        if matches!(req.method, Method::Invite | Method::Update) {
            ends[sender.index()].refresh(&req.headers);
        }
    }

    /// A 2xx relayed for an in-dialog request `req`: for a re-INVITE or UPDATE (a session
    /// refresh, a target refresh), the session's new interval and the answering end's new
    /// Contact.
    pub(crate) fn response_seen(&mut self, req: &Request, resp: &Response, now: Now) {
        if !matches!(req.method, Method::Invite | Method::Update) {
            return;
        }
        let Some(call_id) = first_value(&req.headers, |h| match h {
            Header::CallId(c) => Some(c.value()),
            _ => None,
        }) else {
            return;
        };
        let dialogs = &mut *self;
        if !dialogs.map.contains_key(call_id) {
            return;
        }
        dialogs.set_session(call_id, session_expires(&resp.headers), now);
        let Some(ends) = dialogs.map.get_mut(call_id).and_then(|d| d.ends.as_mut()) else {
            return;
        };
        if let Some(sender) = sender(ends, req) {
            ends[sender.other().index()].refresh(&resp.headers);
        }
    }

    /// Probes the ends of the calls that are due, and forgets calls that reached
    /// `max_call_secs`.
    pub(crate) fn timeout(&mut self, cx: &mut Ctx<'_>) {
        let now = cx.now;
        while let Some((at, call_id)) = self.probes_due.first().cloned() {
            if at > now.mono {
                break;
            }
            let dialogs = &mut *self;
            dialogs.probes_due.remove(&(at, call_id.clone()));
            let (Some(every), Some(d)) = (dialogs.probe_every, dialogs.map.get_mut(&call_id))
            else {
                continue;
            };
            let next = now.mono + every;
            d.next_probe = Some(next);
            dialogs.probes_due.insert((next, call_id.clone()));
            let local = self.is_local(&call_id);
            for side in [Side::Callee, Side::Caller] {
                if local && side == Side::Callee {
                    continue; // that end is us
                }
                let waiting = self
                    .map
                    .get(&call_id)
                    .and_then(|d| d.ends.as_ref())
                    .is_none_or(|e| {
                        let end = &e[side.index()];
                        end.probe.is_some() || end.locating.is_some()
                    });
                if waiting {
                    continue;
                }
                match self.send_in_dialog(cx, &call_id, side, Purpose::Probe) {
                    Ok(Some(sent)) => {
                        if matches!(sent, Sent::Tx(_)) {
                            self.probes += 1;
                        }
                        if let Some(e) = self.map.get_mut(&call_id).and_then(|d| d.ends.as_mut()) {
                            let end = &mut e[side.index()];
                            match sent {
                                Sent::Tx(tx) => end.probe = Some(tx),
                                Sent::Locating(key) => end.locating = Some(key),
                            }
                        }
                    }
                    Ok(None) => {}
                    Err(why) => {
                        self.lose(cx, &call_id, side, why);
                        break;
                    }
                }
            }
        }
        while let Some((at, call_id)) = self.sessions_due.first().cloned() {
            if at > now.mono {
                break;
            }
            self.sessions_due.remove(&(at, call_id.clone()));
            tracing::info!(%call_id, "answered call lost: its session expired without a refresh; ended");
            self.lost += 1;
            // Either end may be the one gone: both are told (RFC 4028 §10).
            let local = self.is_local(&call_id);
            for side in [Side::Caller, Side::Callee] {
                if local && side == Side::Callee {
                    continue;
                }
                if let Err(e) = self.send_in_dialog(cx, &call_id, side, Purpose::Bye) {
                    tracing::debug!(%call_id, error = e, "no BYE to this end");
                }
            }
            self.end(cx, &call_id, "session expired");
        }
        while let Some((at, call_id)) = self.forget_at.first().cloned() {
            if at > now.unix {
                break;
            }
            tracing::info!(%call_id, "answered call without a BYE for max_call_secs: forgotten");
            self.end(cx, &call_id, "max_call_secs");
        }
    }

    /// Where a request of ours to `end` goes: over the flow of its registered contact
    /// (as in-dialog requests to it are routed), else to the hop the dialog reached it
    /// over — over any connection open to it, or a new one, as a relayed request to an
    /// address would go (the connection the call came over may have been closed since
    /// without the end being gone) — else, after a target refresh moved it, where its
    /// next hop (first Route, else its new Contact) says: an address, or a host name to
    /// locate (RFC 3263). Err when it can only be reached over a flow that closed.
    fn end_peer(registrar: &Registrar, end: &End, now: Now) -> Result<Next, &'static str> {
        if end.routes.is_empty() {
            if let Some(b) = registrar.find_contact(&end.target, now.unix) {
                return binding_peer(b)
                    .map(Next::Peer)
                    .ok_or("its connection is closed");
            }
        }
        if let Some(p) = end.peer {
            return Ok(Next::Peer(Peer { conn: None, ..p }));
        }
        let next = end.routes.first().unwrap_or(&end.target);
        Ok(match proxy::uri_target(next) {
            Some((transport, addr)) => Next::Peer(Peer {
                transport,
                addr,
                conn: None,
                local: end.local,
            }),
            None => Next::Locate(next.clone()),
        })
    }

    /// Sends `side` of a call an OPTIONS (a probe) or a BYE of ours inside its dialog.
    /// Ok(None) when no request could be made (nothing to say about the end); Err when the
    /// end cannot be reached at all. A next hop with a host name not in the locator's
    /// cache has the request wait for its targets ([`Dialogs::located`]): then it goes to
    /// the first (one request of the proxy's own, no failover: a target that failed lately
    /// is last in the list).
    fn send_in_dialog(
        &mut self,
        cx: &mut Ctx<'_>,
        call_id: &str,
        side: Side,
        purpose: Purpose,
    ) -> Result<Option<Sent>, &'static str> {
        let Some(end) = self
            .map
            .get(call_id)
            .and_then(|d| d.ends.as_ref())
            .map(|e| &e[side.index()])
        else {
            return Ok(None);
        };
        let next = Dialogs::end_peer(cx.registrar, end, cx.now)?;
        let Ok(uri) = switchboard_sip::parse::uri_as_written(&end.target) else {
            tracing::debug!(%call_id, side = side.name(), target = %end.target, "unreadable target: not probed");
            return Ok(None);
        };
        let (method, cseq) = match purpose {
            // As high as the end has seen from the other end, never higher (see above).
            Purpose::Probe => (Method::Options, end.cseq.unwrap_or(0)),
            // The dialog ends: the next number the end would accept.
            Purpose::Bye | Purpose::HangUp => {
                (Method::Bye, end.cseq.map_or(1, |c| c.saturating_add(1)))
            }
        };
        // Its Via goes on top once it is known where it leaves from.
        let mut headers = Headers::default();
        headers.push(Header::MaxForwards("70".into()));
        if !end.routes.is_empty() {
            let routes: Vec<String> = end.routes.iter().map(|r| format!("<{r}>")).collect();
            headers.push(Header::Route(routes.join(", ").into()));
        }
        headers.push(Header::From(end.from.clone().into()));
        headers.push(Header::To(end.to.clone().into()));
        headers.push(Header::CallId(call_id.to_string().into()));
        headers.push(Header::CSeq(format!("{cseq} {method}").into()));
        if purpose == Purpose::Bye {
            headers.push(proxy::reason(408, "the other party is unreachable"));
        }
        headers.push(Header::ContentLength(0u32.into()));
        let req = Request {
            method,
            uri,
            version: Version::V2,
            headers,
            body: Vec::new(),
        };
        let local = end.local;
        let dest = match next {
            Next::Peer(dest) => dest,
            Next::Locate(name) => {
                let key = self.next_unsent;
                match cx.locating.resolve(&name, Waiter::Dialog(key), cx.now.mono) {
                    Located::Done(Ok(r)) if !r.targets.is_empty() => Peer {
                        local,
                        ..r.targets[0].peer()
                    },
                    Located::Done(outcome) => {
                        let why = outcome.err().map(|e| e.to_string()).unwrap_or_default();
                        tracing::debug!(%call_id, side = side.name(), why, "in-dialog request of ours not sent");
                        return Ok(None);
                    }
                    Located::Pending(_) => {
                        self.next_unsent += 1;
                        let unsent = Unsent {
                            call_id: call_id.to_string(),
                            side,
                            purpose,
                            req,
                            local,
                        };
                        self.unsent.insert(key, Box::new(unsent));
                        return Ok(Some(Sent::Locating(key)));
                    }
                }
            }
        };
        Ok(self
            .send_to(cx, call_id, side, purpose, req, dest)
            .map(Sent::Tx))
    }

    /// Sends a request of ours (without its Via) to `dest` on a client transaction.
    fn send_to(
        &mut self,
        cx: &mut Ctx<'_>,
        call_id: &str,
        side: Side,
        purpose: Purpose,
        mut req: Request,
        mut dest: Peer,
    ) -> Option<TxId> {
        let local = cx.wire.leave_from(&mut dest)?;
        let via = Header::Via(local.via(&cx.wire.branch(None)).into());
        req.headers.0.insert(0, via);
        match cx.wire.send_request(req, dest, Owner::Dialog, cx.now) {
            Ok(tx) => {
                self.txs.insert(tx, (call_id.to_string(), side, purpose));
                Some(tx)
            }
            Err(e) => {
                tracing::debug!(%call_id, side = side.name(), error = %e, "in-dialog request not sent");
                None
            }
        }
    }

    /// The resolution request `key` of ours waited for: it goes to the first target. A
    /// probe goes only while its end still waits for it (the call goes on, and the end
    /// has not moved meanwhile); a BYE goes whatever became of its call.
    pub(crate) fn located(
        &mut self,
        cx: &mut Ctx<'_>,
        key: u64,
        outcome: Result<Resolved, LocateError>,
    ) {
        let Some(unsent) = self.unsent.remove(&key) else {
            return;
        };
        let Unsent {
            call_id,
            side,
            purpose,
            req,
            local,
        } = *unsent;
        if purpose == Purpose::Probe {
            let end = self
                .map
                .get_mut(&call_id)
                .and_then(|t| t.ends.as_mut())
                .map(|e| &mut e[side.index()])
                .filter(|e| e.locating == Some(key));
            match end {
                Some(end) => end.locating = None,
                None => return,
            }
        }
        let target = match outcome {
            Ok(r) => r.targets.first().copied(),
            Err(e) => {
                tracing::debug!(%call_id, side = side.name(), error = %e, "in-dialog request of ours not sent");
                None
            }
        };
        let Some(target) = target else {
            return;
        };
        let dest = Peer {
            local,
            ..target.peer()
        };
        let Some(tx) = self.send_to(cx, &call_id, side, purpose, req, dest) else {
            return;
        };
        if purpose == Purpose::Probe {
            self.probes += 1;
            if let Some(e) = self.map.get_mut(&call_id).and_then(|d| d.ends.as_mut()) {
                e[side.index()].probe = Some(tx);
            }
        }
    }

    /// A response to one of our requests inside a dialog (`tx` is owned by dialogs).
    pub(crate) fn response(&mut self, cx: &mut Ctx<'_>, tx: TxId, code: u16) {
        let Some(&(_, _, purpose)) = self.txs.get(&tx) else {
            return;
        };
        if code < 200 {
            return;
        }
        let Some((call_id, side, _)) = self.txs.remove(&tx) else {
            return;
        };
        if matches!(purpose, Purpose::Bye | Purpose::HangUp) {
            tracing::debug!(%call_id, side = side.name(), code, "our BYE answered");
            return;
        }
        tracing::debug!(%call_id, side = side.name(), code, "probe answered");
        // Only the end's current probe speaks for it (not one of a call since ended, nor
        // one sent to a target it has since moved from).
        let Some(end) = self
            .map
            .get_mut(&call_id)
            .and_then(|d| d.ends.as_mut())
            .map(|e| &mut e[side.index()])
            .filter(|end| end.probe == Some(tx))
        else {
            return;
        };
        end.probe = None;
        // 481: the end no longer has the dialog (§12.2.2); 408: nothing reached it. Any
        // other answer, a 500 for our CSeq number included, comes from an end that has it.
        match code {
            481 => self.lose(cx, &call_id, side, "the dialog is gone (481)"),
            408 => self.lose(cx, &call_id, side, "no answer (408)"),
            _ => {}
        }
    }

    /// One of our requests inside a dialog got no final response (`why`: a timeout, a
    /// transport error, or its transaction ended).
    pub(crate) fn tx_failed(&mut self, cx: &mut Ctx<'_>, tx: TxId, why: &'static str) {
        let Some((call_id, side, purpose)) = self.txs.remove(&tx) else {
            return;
        };
        if purpose == Purpose::Probe {
            let ours = self
                .map
                .get(&call_id)
                .and_then(|d| d.ends.as_ref())
                .is_some_and(|e| e[side.index()].probe == Some(tx));
            if ours {
                self.lose(cx, &call_id, side, why);
            }
        }
    }

    /// An end of a call is gone: the call ends (presence, the other end hung up by a BYE
    /// of ours), logged once.
    fn lose(&mut self, cx: &mut Ctx<'_>, call_id: &str, side: Side, why: &'static str) {
        let Some(ends) = self.map.get(call_id).and_then(|d| d.ends.as_ref()) else {
            return;
        };
        let (gone, other) = (&ends[side.index()], &ends[side.other().index()]);
        tracing::info!(
            %call_id,
            side = side.name(),
            user = gone.user.as_deref().unwrap_or("-"),
            target = %gone.target,
            why,
            other = other.user.as_deref().unwrap_or("-"),
            "answered call lost: ended"
        );
        self.lost += 1;
        let us = self.is_local(call_id) && side.other() == Side::Callee;
        if !us {
            if let Err(e) = self.send_in_dialog(cx, call_id, side.other(), Purpose::Bye) {
                tracing::debug!(%call_id, error = e, "no BYE to the other end");
            }
        }
        self.end(cx, call_id, "lost");
    }
}

#[cfg(test)]
#[path = "dialogs_tests.rs"]
mod tests;
