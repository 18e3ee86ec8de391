//! Call routing: the daemon as a stateful forking proxy (RFC 3261 §16).
//!
//! An initial INVITE is authenticated (digest, `407`; trunks by source address or by their
//! own credentials), classified and planned (`policy::plan` over a live view of presence,
//! registrations and memory); the plan runs in an [`Execution`] whose commands become
//! branches — client INVITE transactions with this proxy's Via and Record-Route — and whose
//! outcome becomes the caller's final response. Provisional responses and every 2xx are
//! relayed (§16.7); a caller's CANCEL cancels every branch and ends the call with 487.
//!
//! In-dialog requests (ACK for 2xx, BYE, re-INVITE, UPDATE, INFO, REFER, NOTIFY…) follow
//! their Route set: the Route naming this proxy is consumed (it must carry the dialog's
//! token), and the request goes to the next Route or, at the end of the set, to its
//! Request-URI — over the registered flow when that is a registered contact (phones behind
//! NAT). ACK goes statelessly; other requests through a server and a client transaction
//! whose responses are relayed.
//!
//! Call state (ringing, answered, ended) goes to presence as it happens, so call waiting,
//! team skipping and BLF see who is on a call. All of this is `impl Core`: the same sans-I/O
//! state machine as the registrar, driven by the same events.

use crate::core::{Core, Now, Output, Owner};
use crate::dialogs::{Answer, Dialogs};
use crate::executor::{BranchId, BranchTarget, CancelCause, Command, Execution, Limits, Phase};
use crate::presence_service::PresenceService;
use bytes::Bytes;
use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use switchboard_policy::{
    Call, Caller, CallerIdRule, DeviceView, GroupMemory, PersonView, Policy, ViewSource,
};
use switchboard_presence::model::LegState;
use switchboard_sip::auth::Role;
use switchboard_sip::message::{self, has_tag, split_first_value};
use switchboard_sip::msg::headers::Header;
use switchboard_sip::msg::prelude::*;
use switchboard_sip::msg::{Method, Request, Response, Uri};
use switchboard_sip::peer::Peer;
use switchboard_sip::proxy;
use switchboard_sip::registrar::{Binding, Registrar};
use switchboard_sip::transaction::{Action, ClientOutcome, Timer, TxId};
use switchboard_sip::transport::ListenAddr;
use switchboard_sip::transport::Transport;
use switchboard_sip::GrowingMap;
use switchboard_store::tables::MEMORY;
use switchboard_store::Write;

/// Settings of call routing.
#[derive(Clone, Copy, Debug)]
pub struct RoutingConfig {
    /// Most calls being set up at once; further INVITEs get 503.
    pub max_calls: usize,
    /// How long a step without a ring time of its own rings at most.
    pub max_ring: Duration,
    /// How long an answered call is remembered without a BYE.
    pub max_call_secs: u64,
    /// How often each end of an answered call is probed with an in-dialog OPTIONS (0:
    /// never); see [`crate::dialogs`].
    pub dialog_probe_secs: u64,
    /// Keys the Record-Route tokens; kept across restarts by the shell.
    pub route_secret: [u8; 32],
}

impl Default for RoutingConfig {
    fn default() -> Self {
        RoutingConfig {
            max_calls: 10_000,
            max_ring: Duration::from_secs(180),
            max_call_secs: 14_400,
            dialog_probe_secs: 90,
            route_secret: rand::random(),
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
}

/// One branch of a call as the core sees it.
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
    /// The final response, Via stripped, to relay if it turns out the best.
    response: Option<Response>,
    /// No more outcome is expected from it by the executor.
    done: bool,
}

struct CallState {
    server_tx: TxId,
    /// The INVITE as received (Via stamped, our Route consumed).
    invite: Request,
    call_id: String,
    from: String,
    to: String,
    caller_user: Option<String>,
    /// A trunk's identity headers are trusted; a user's are set by us.
    caller_trunk: bool,
    inbound: ListenAddr,
    loop_key: u64,
    exec: Execution,
    branches: Vec<Branch>,
    final_sent: bool,
    wake: Option<Instant>,
    /// The Reason of the caller's CANCEL, passed on to the branches.
    cancel_reason: Option<Header>,
    /// The Record-Route parameter carrying the dialog's token (`;sbt=…`).
    rr_params: String,
}

/// An in-dialog request relayed through a server and a client transaction.
struct Relay {
    server_tx: TxId,
    /// The request as received, to answer it if the next hop never does.
    request: Request,
    answered: bool,
}

/// The routing state the core keeps.
pub struct Routing {
    config: RoutingConfig,
    /// Calls and relays are boxed (hundreds of bytes each), so the tables stay small.
    calls: GrowingMap<u64, Box<CallState>>,
    relays: GrowingMap<TxId, Box<Relay>>,
    relay_of_server: GrowingMap<TxId, TxId>,
    /// Answered calls, until their BYE.
    pub(crate) dialogs: Dialogs,
    memory: HashMap<String, GroupMemory>,
    wakes: BTreeSet<(Instant, u64)>,
    next_call: u64,
    pub(crate) stats: RoutingStats,
}

impl Routing {
    pub fn new(config: RoutingConfig) -> Self {
        Routing {
            config,
            calls: GrowingMap::new(),
            relays: GrowingMap::new(),
            relay_of_server: GrowingMap::new(),
            dialogs: Dialogs::new(config.dialog_probe_secs, config.max_call_secs),
            memory: HashMap::new(),
            wakes: BTreeSet::new(),
            next_call: 1,
            stats: RoutingStats::default(),
        }
    }

    pub fn stats(&self) -> &RoutingStats {
        &self.stats
    }

    /// Calls being set up (not yet ended or answered with branches still to settle).
    pub fn calls(&self) -> usize {
        self.calls.len()
    }

    /// Answered calls being tracked until their BYE.
    pub fn dialogs(&self) -> usize {
        self.dialogs.len()
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

    pub fn poll_timeout(&self, now: Now) -> Option<Instant> {
        let wake = self.wakes.first().map(|(t, _)| *t);
        let dialog = self.dialogs.poll_timeout(now);
        wake.into_iter().chain(dialog).min()
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

/// One binding per place a request would reach (RFC 3261 §16.5: a target is forked to
/// once): bindings whose contact URIs are equal as §19.1.4 compares them and that are
/// reached over the same flow (transport and address, see [`binding_peer`]) are one
/// target, the newest binding of them kept — as when a phone restarts with a new
/// `+sip.instance` from the same address, and its old binding lingers until it expires.
/// The order (q-value, highest first) is kept.
fn distinct_targets(bindings: Vec<&Binding>) -> Vec<&Binding> {
    if bindings.len() < 2 {
        return bindings; // nothing to compare (most people have one device)
    }
    type Place = (Transport, std::net::SocketAddr);
    let mut kept: Vec<(String, Place, &Binding)> = Vec::with_capacity(bindings.len());
    for b in bindings {
        let key = switchboard_sip::registrar::contact_compare_key(&b.contact);
        // Where requests go; a binding whose flow is gone, where its flow was.
        let place = binding_peer(b).map_or((b.transport, b.source), |p| (p.transport, p.addr));
        match kept.iter_mut().find(|(k, p, _)| *k == key && *p == place) {
            Some(e) => {
                if newer(b, e.2) {
                    e.2 = b;
                }
            }
            None => kept.push((key, place, b)),
        }
    }
    kept.into_iter().map(|(_, _, b)| b).collect()
}

/// Whether binding `a` is newer than `b`: registered later (or, registered at the same
/// second, lasting longer).
fn newer(a: &Binding, b: &Binding) -> bool {
    (a.registered_at, a.expires_at) > (b.registered_at, b.expires_at)
}

/// Where requests for a binding go: over its flow (the address the REGISTER came from, and
/// for a stream its connection) when the phone is behind NAT, asked for it (RFC 5626
/// `reg-id`) or uses a stream transport; otherwise to its contact address. `None` when the
/// binding can only be reached over its flow and that flow is gone.
pub(crate) fn binding_peer(b: &Binding) -> Option<Peer> {
    if b.flow_gone() {
        return None;
    }
    let flow = b.peer();
    if b.transport.is_stream() || b.reg_id.is_some() {
        return Some(flow);
    }
    Some(match proxy::uri_target(&b.contact) {
        Some((transport, addr)) if addr.ip() == b.source.ip() => Peer {
            transport,
            addr,
            conn: None,
        },
        _ => flow,
    })
}

fn call_id_of(req: &Request) -> String {
    req.call_id_header()
        .map(|c| c.value().trim().to_string())
        .unwrap_or_default()
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

impl Core {
    pub(crate) fn routing_stats(&self) -> &RoutingStats {
        &self.routing.stats
    }

    fn route_secret(&self) -> &[u8; 32] {
        &self.routing.config.route_secret
    }

    /// Whether a Route/Request-URI names this proxy: one of our listening addresses, or one
    /// of our domains (any port we listen on, or none).
    pub(crate) fn uri_is_ours(&self, uri: &str) -> bool {
        if let Some((_, addr)) = proxy::uri_target(uri) {
            return self.listeners.iter().any(|l| {
                l.addr.port() == addr.port()
                    && (l.addr.ip() == addr.ip()
                        || (l.addr.ip().is_unspecified() && l.addr.is_ipv4() == addr.is_ipv4()))
            });
        }
        let Ok(parsed) = Uri::try_from(proxy::strip_angle(uri)) else {
            return false;
        };
        if parsed.user().is_some() {
            return false;
        }
        let host = parsed.host_with_port.host.to_string().to_ascii_lowercase();
        let port = parsed.host_with_port.port.as_ref().map(|p| p.value());
        self.config.domains.contains(&host)
            && port.is_none_or(|p| self.listeners.iter().any(|l| l.addr.port() == p))
    }

    /// Whether a Via sent-by (`host[:port]`) is one of our listening addresses.
    fn sent_by_is_ours(&self, sent_by: &str) -> bool {
        self.uri_is_ours(&format!("sip:{sent_by}"))
    }

    /// Our listening address to send from over `transport` to `to`.
    pub(crate) fn local_for(&self, transport: Transport, to: IpAddr) -> Option<SocketAddr> {
        let same = |l: &&ListenAddr| l.transport == transport && l.addr.is_ipv4() == to.is_ipv4();
        self.listeners
            .iter()
            .filter(same)
            .find(|l| l.addr.ip().is_loopback() == to.is_loopback())
            .or_else(|| self.listeners.iter().find(same))
            .map(|l| l.addr)
    }

    /// Where a URI is reached: over the flow of the registered contact it names, else at
    /// the address it names.
    fn peer_for_uri(&self, uri: &str, now: Now) -> Option<Peer> {
        if let Some(b) = self.registrar.find_contact(uri, now.unix) {
            return binding_peer(b);
        }
        proxy::uri_target(uri).map(|(transport, addr)| Peer {
            transport,
            addr,
            conn: None,
        })
    }

    pub(crate) fn reply_to(
        &mut self,
        tx: TxId,
        req: &Request,
        code: u16,
        extra: Vec<Header>,
        now: Now,
    ) {
        let mut resp = message::response(req, code, Some(&self.tag()), &self.config.server);
        resp.headers.extend(extra);
        self.respond(tx, resp, now);
    }

    // ---- initial INVITE ---------------------------------------------------------------

    /// An initial INVITE (no To tag): authenticate, classify, plan, start.
    pub(crate) fn route_invite(
        &mut self,
        tx: TxId,
        mut req: Request,
        peer: Peer,
        local: ListenAddr,
        now: Now,
    ) {
        let refuse = |core: &mut Core, req: &Request, code: u16, why: &str| {
            core.routing.stats.refused += 1;
            tracing::info!(from = %peer, code, why, call_id = %call_id_of(req), "call refused");
            core.reply_to(tx, req, code, vec![message::warning(why)], now);
        };
        if self.gate.blocked(peer.addr.ip(), now.mono) {
            return refuse(self, &req, 403, "too many failed attempts; try later");
        }
        // §16.3 step 4: a request that came back in the same state is a loop.
        if proxy::is_loop(&req, |sb| self.sent_by_is_ours(sb)) {
            return refuse(self, &req, 482, "loop detected");
        }
        let loop_key = proxy::loop_key(&req);
        // §16.4: a preloaded Route naming us is consumed; one naming others is not
        // followed for an initial request (this server decides where calls go).
        proxy::pop_own_routes(&mut req, |u| self.uri_is_ours(u));
        if !proxy::route_set(&req).is_empty() {
            return refuse(
                self,
                &req,
                403,
                "a preloaded Route to elsewhere is not followed",
            );
        }
        let host = req.uri.host_with_port.host.to_string();
        if !self.is_local_host(&host) {
            return refuse(self, &req, 404, "domain not served here");
        }
        let Some(to) = req.uri.user().map(str::to_string) else {
            return refuse(self, &req, 484, "no number or name in the Request-URI");
        };
        let Some(caller) = self.identify_caller(tx, &req, peer, now) else {
            return; // answered (407, 403, 400)
        };
        if let Caller::User(u) = &caller {
            if self.feature_code(tx, &req, u, &to, now) {
                return;
            }
        }
        if self.routing.calls.len() >= self.routing.config.max_calls {
            self.routing.stats.refused += 1;
            tracing::warn!(calls = self.routing.calls.len(), "call limit reached: 503");
            return self.reply_to(tx, &req, 503, vec![Header::RetryAfter("5".into())], now);
        }
        // §16.2: the INVITE is answered 100 at once; the branches take their time.
        let trying = message::response(&req, 100, None, &self.config.server);
        self.respond(tx, trying, now);

        let call_id = call_id_of(&req);
        let rr_params = format!(";sbt={}", proxy::route_token(self.route_secret(), &call_id));
        let call = Call {
            from: caller.clone(),
            to: to.clone(),
            call_id: call_id.clone(),
        };
        let directory = self.directory.clone();
        let policy = directory.policy();
        let at = chrono::DateTime::from_timestamp(now.unix as i64, 0).unwrap_or_default();
        let plan = {
            let view = LiveView {
                policy,
                presence: &self.presence,
                registrar: &self.registrar,
                memory: &self.routing.memory,
                now: now.unix,
            };
            switchboard_policy::plan(policy, &call, &view, at)
        };
        tracing::debug!(%call_id, plan = %plan, "call planned");
        let (from, caller_user, caller_trunk) = match &caller {
            Caller::User(u) => (u.clone(), Some(u.clone()), false),
            Caller::Trunk { trunk, number } => (format!("{number} via trunk {trunk}"), None, true),
            Caller::External(x) => (x.clone(), None, false),
        };
        if let Some(u) = &caller_user {
            self.presence
                .model_mut()
                .leg(u, &call_id, "caller", LegState::Ringing);
        }
        self.routing.stats.calls += 1;
        let limits = Limits {
            max_ring: self.routing.config.max_ring,
            ..Limits::default()
        };
        let key = self.routing.next_call;
        self.routing.next_call += 1;
        let state = CallState {
            server_tx: tx,
            invite: req,
            call_id,
            from,
            to,
            caller_user,
            caller_trunk,
            inbound: local,
            loop_key,
            exec: Execution::new(plan, limits, now.mono),
            branches: Vec::new(),
            final_sent: false,
            wake: None,
            cancel_reason: None,
            rr_params,
        };
        self.owners.insert(tx, Owner::Call(key));
        self.routing.calls.insert(key, Box::new(state));
        self.drive(key, now);
    }

    /// Who is calling: a trunk (by source address or credentials), a user (digest), or
    /// anyone (when authentication is off). None when the request was answered instead.
    fn identify_caller(&mut self, tx: TxId, req: &Request, peer: Peer, now: Now) -> Option<Caller> {
        let directory = self.directory.clone();
        let policy = directory.policy();
        let from_user = header_user(req.from_header().ok().map(|f| f.value()))
            .unwrap_or_else(|| "anonymous".into());
        if let Some(t) = policy.trunk_for_source(peer.addr.ip()) {
            return Some(Caller::Trunk {
                trunk: t.id.clone(),
                number: from_user,
            });
        }
        if !self.config.auth_required {
            return Some(match directory.user_for(&from_user) {
                Some(u) => Caller::User(u),
                None => Caller::External(from_user),
            });
        }
        let username = self.digest(tx, req, peer, Role::Proxy, now);
        let Some(username) = username else {
            return None; // challenged, or refused (counted as an authentication failure)
        };
        if let Some(u) = directory.user_of_username(&username) {
            return Some(Caller::User(u));
        }
        if let Some(t) = directory.trunk_of_username(&username) {
            return Some(Caller::Trunk {
                trunk: t,
                number: from_user,
            });
        }
        self.routing.stats.refused += 1;
        self.reply_to(
            tx,
            req,
            403,
            vec![message::warning("not allowed to call")],
            now,
        );
        None
    }

    /// Carries out a call's pending commands and re-arms its timer; forgets the call once
    /// it is over and every branch has settled.
    fn drive(&mut self, key: u64, now: Now) {
        let Some(mut call) = self.routing.calls.remove(&key) else {
            return;
        };
        while let Some(cmd) = call.exec.poll_command() {
            match cmd {
                Command::Start(start) => {
                    let b = start.branch;
                    if let Err(code) = self.start_branch(key, &mut call, start, now) {
                        if let Some(br) = call.branches.get_mut(b) {
                            br.done = true;
                        }
                        call.exec.branch_unstartable(b, code, now.mono);
                    }
                }
                Command::Cancel { branch, cause } => {
                    self.cancel_branch(&mut call, branch, cause, now)
                }
                Command::Relay { branch } => {
                    let resp = call
                        .branches
                        .get_mut(branch)
                        .and_then(|b| b.response.take());
                    match resp {
                        Some(mut resp) => {
                            let code = resp.status_code.code();
                            let relayed = proxy::relayable_code(code);
                            if relayed != code {
                                resp.status_code = relayed.into();
                            }
                            self.respond(call.server_tx, resp, now);
                        }
                        None => {
                            let resp = message::response(
                                &call.invite,
                                480,
                                Some(&self.tag()),
                                &self.config.server,
                            );
                            self.respond(call.server_tx, resp, now);
                        }
                    }
                    call.final_sent = true;
                }
                Command::Respond { code, reason } => {
                    let mut resp = message::response(
                        &call.invite,
                        code,
                        Some(&self.tag()),
                        &self.config.server,
                    );
                    if let Some(r) = reason {
                        // The plan's words on the phone's display, and in Reason.
                        message::set_reason_phrase(&mut resp, &r);
                        resp.headers.push(proxy::reason(code, &r));
                    }
                    self.respond(call.server_tx, resp, now);
                    call.final_sent = true;
                }
                Command::Remember { group, user } => {
                    let m = self.routing.memory.entry(group.clone()).or_default();
                    m.last_answerer = Some(user.clone());
                    m.last_answered.insert(user, now.unix as i64);
                    let row = serde_json::to_vec(m).unwrap_or_default();
                    self.persist_unacknowledged(vec![Write::put(MEMORY, group, row)]);
                }
            }
        }
        if let Some(w) = call.wake.take() {
            self.routing.wakes.remove(&(w, key));
        }
        let done = call.exec.phase() != &Phase::Routing
            && call.branches.iter().all(|b| b.done || b.tx.is_none());
        if done {
            self.forget(key, call, now);
            return;
        }
        if let Some(w) = call.exec.poll_timeout() {
            self.routing.wakes.insert((w, key));
            call.wake = Some(w);
        }
        self.routing.calls.insert(key, call);
    }

    /// A call whose outcome is settled: logged once, its state freed.
    fn forget(&mut self, key: u64, call: Box<CallState>, _now: Now) {
        self.owners.remove(&call.server_tx);
        for b in &call.branches {
            if let Some(tx) = b.tx {
                self.owners.remove(&tx);
            }
        }
        let answered = matches!(call.exec.phase(), Phase::Answered { .. });
        if answered {
            self.routing.stats.answered += 1;
        } else {
            self.routing.stats.unanswered += 1;
            self.presence.model_mut().call_ended(&call.call_id);
        }
        let outcome = match call.exec.phase() {
            Phase::Answered { branch } => format!(
                "answered by {}",
                call.branches
                    .get(*branch)
                    .map(|b| b.what.as_str())
                    .unwrap_or("?")
            ),
            _ => "not answered".to_string(),
        };
        tracing::info!(
            call_id = %call.call_id,
            from = %call.from,
            to = %call.to,
            outcome,
            path = %call.exec.history().join("; "),
            "call routed"
        );
        let _ = key;
    }

    fn start_branch(
        &mut self,
        key: u64,
        call: &mut CallState,
        start: crate::executor::BranchStart,
        now: Now,
    ) -> Result<(), u16> {
        let directory = self.directory.clone();
        let policy = directory.policy();
        let index = start.branch;
        while call.branches.len() <= index {
            call.branches.push(Branch {
                tx: None,
                peer: None,
                user: None,
                what: String::new(),
                provisional: false,
                cancel: None,
                response: None,
                done: false,
            });
        }
        let (uri, dest, user, what) = match &start.target {
            BranchTarget::Device { user, device } => {
                let binding = self
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
                let Some(peer) = binding_peer(&b) else {
                    tracing::info!(call_id = %call.call_id, user, device, "device's connection is closed");
                    return Err(503);
                };
                (
                    b.contact.clone(),
                    peer,
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
                let Some((transport, addr)) = proxy::uri_target(&trunk_uri) else {
                    tracing::warn!(call_id = %call.call_id, uri = %trunk_uri, "trunk uri is not an IP address (names are not resolved yet)");
                    return Err(503);
                };
                let hp = proxy::host_port(addr);
                let tp = transport.uri_suffix();
                (
                    format!("sip:{number}@{hp}{tp}"),
                    Peer {
                        transport,
                        addr,
                        conn: None,
                    },
                    None,
                    format!("{number} via trunk {}", t.id),
                )
            }
            BranchTarget::Destination { id, uri } => {
                let Some(dest) = self.peer_for_uri(uri, now) else {
                    tracing::warn!(call_id = %call.call_id, destination = %id, uri, "destination uri is not an IP address (names are not resolved yet)");
                    return Err(503);
                };
                (uri.clone(), dest, None, format!("destination {id}"))
            }
        };
        let Ok(uri) = switchboard_sip::parse::uri_as_written(&uri) else {
            return Err(480);
        };
        let Some(local_out) = self.local_for(dest.transport, dest.addr.ip()) else {
            tracing::warn!(call_id = %call.call_id, transport = %dest.transport, "no listener to send this branch from");
            return Err(503);
        };
        let params = &call.rr_params;
        let rr_out = proxy::own_uri(dest.transport, local_out, params);
        let mut rr = vec![rr_out.clone()];
        // §16.6 step 4: two Record-Routes when the two sides reach us differently.
        let rr_in = proxy::own_uri(call.inbound.transport, call.inbound.addr, params);
        if rr_in != rr_out {
            rr.push(rr_in);
        }
        let via = proxy::via_value(
            dest.transport,
            local_out,
            &proxy::branch(call.loop_key, self.entropy.u64()),
        );
        let mut out = proxy::forward(&call.invite, Some(uri), &via, &rr);
        self.apply_identity(&mut out, call, &start.caller_id, policy);
        let tx = match self.transactions.send_request(out, dest, now.mono) {
            Ok(tx) => tx,
            Err(e) => {
                tracing::warn!(call_id = %call.call_id, error = %e, "branch not sent");
                return Err(500);
            }
        };
        self.flush_transactions();
        self.owners.insert(
            tx,
            Owner::Branch {
                call: key,
                branch: index,
            },
        );
        if let Some(u) = &user {
            self.presence.model_mut().leg(
                u,
                &call.call_id,
                &format!("b{index}"),
                LegState::Ringing,
            );
        }
        tracing::debug!(call_id = %call.call_id, branch = index, to = %dest, what, "branch started");
        let b = &mut call.branches[index];
        b.tx = Some(tx);
        b.peer = Some(dest);
        b.user = user;
        b.what = what;
        Ok(())
    }

    /// Identity headers of a branch: our realm's credentials consumed; the caller's
    /// identity asserted (P-Asserted-Identity, RFC 3325) as the plan says.
    fn apply_identity(
        &self,
        req: &mut Request,
        call: &CallState,
        rule: &CallerIdRule,
        policy: &Policy,
    ) {
        let realm = self.config.realm.clone();
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

    fn cancel_branch(
        &mut self,
        call: &mut CallState,
        branch: BranchId,
        cause: CancelCause,
        now: Now,
    ) {
        let Some(b) = call.branches.get_mut(branch) else {
            return;
        };
        if let Some(u) = &b.user {
            self.presence
                .model_mut()
                .leg_ended(u, &call.call_id, &format!("b{branch}"));
        }
        let Some(tx) = b.tx else {
            return;
        };
        if !b.provisional {
            // §9.1: no CANCEL before a provisional response; it goes when one arrives.
            b.cancel = Some(cause);
            return;
        }
        let reason = match cause {
            CancelCause::CompletedElsewhere => Some(proxy::completed_elsewhere()),
            CancelCause::CallerCancelled => call.cancel_reason.clone(),
            CancelCause::NoAnswer => None,
        };
        let peer = b.peer;
        self.send_cancel(tx, peer, reason, now);
    }

    fn send_cancel(&mut self, tx: TxId, peer: Option<Peer>, reason: Option<Header>, now: Now) {
        let (Some(mut cancel), Some(peer)) = (self.transactions.cancel_for(tx), peer) else {
            return;
        };
        if let Some(r) = reason {
            cancel.headers.push(r);
        }
        if let Err(e) = self.transactions.send_request(cancel, peer, now.mono) {
            tracing::debug!(error = %e, "CANCEL not sent");
        }
        self.flush_transactions();
    }

    /// A CANCEL from the caller (§16.10): 200 to it; every branch cancelled; 487 to the
    /// INVITE. A CANCEL for a relayed in-dialog re-INVITE is passed on.
    pub(crate) fn route_cancel(
        &mut self,
        cancel_tx: TxId,
        invite_tx: Option<TxId>,
        req: Request,
        now: Now,
    ) {
        let key = invite_tx.and_then(|t| match self.owners.get(&t) {
            Some(Owner::Call(key)) => Some(*key),
            _ => None,
        });
        let relay = invite_tx.and_then(|t| self.routing.relay_of_server.get(&t).copied());
        let ok = |core: &mut Core| {
            let resp = message::response(&req, 200, Some(&core.tag()), &core.config.server);
            core.respond(cancel_tx, resp, now);
        };
        if let Some(key) = key {
            ok(self);
            if let Some(call) = self.routing.calls.get_mut(&key) {
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
                let resp = message::response(
                    &call.invite,
                    487,
                    Some(&self.entropy.token()),
                    &self.config.server,
                );
                let tx = call.server_tx;
                self.respond(tx, resp, now);
            }
            self.drive(key, now);
            return;
        }
        if let Some(client) = relay {
            ok(self);
            let peer = self.transactions.peer(client);
            self.send_cancel(client, peer, None, now);
            return;
        }
        // §9.2: nothing to cancel.
        let resp = message::response(&req, 481, Some(&self.tag()), &self.config.server);
        self.respond(cancel_tx, resp, now);
    }

    // ---- responses ----------------------------------------------------------------------

    /// A response received for one of our client transactions, or a stray one.
    pub(crate) fn route_response(&mut self, outcome: ClientOutcome, now: Now) {
        let (tx, resp, last) = match outcome {
            ClientOutcome::Provisional(tx, resp) => (tx, resp, false),
            ClientOutcome::Final(tx, resp) => (tx, resp, true),
            ClientOutcome::Stray(resp) => return self.stray_response(resp),
            ClientOutcome::Absorbed => return,
        };
        let code = resp.status_code.code();
        match self.owners.get(&tx).copied() {
            Some(Owner::Branch { call, branch }) => self.branch_response(call, branch, resp, now),
            Some(Owner::Relay) => self.relay_response(tx, resp, now),
            Some(Owner::Notify(id)) if last => {
                self.owners.remove(&tx);
                self.notify_answered(id, Some(code));
            }
            Some(Owner::Dialog) => self.dialog_response(tx, code, now),
            Some(Owner::Notify(_)) | Some(Owner::Call(_)) | None => {}
        }
    }

    fn branch_response(&mut self, key: u64, branch: BranchId, mut resp: Response, now: Now) {
        let code = resp.status_code.code();
        let Some(call) = self.routing.calls.get_mut(&key) else {
            return;
        };
        proxy::strip_top_via(&mut resp);
        message::keep_reason_phrase(&mut resp);
        let Some(b) = call.branches.get_mut(branch) else {
            return;
        };
        let server_tx = call.server_tx;
        if code < 200 {
            if !b.provisional {
                b.provisional = true;
                if let Some(cause) = b.cancel.take() {
                    let (tx, peer) = (b.tx, b.peer);
                    let reason = match cause {
                        CancelCause::CompletedElsewhere => Some(proxy::completed_elsewhere()),
                        CancelCause::CallerCancelled => call.cancel_reason.clone(),
                        CancelCause::NoAnswer => None,
                    };
                    if let Some(tx) = tx {
                        self.send_cancel(tx, peer, reason, now);
                    }
                    return;
                }
            }
            // §16.7 step 5: provisional responses other than 100 are relayed.
            if code > 100 && !call.final_sent && b.cancel.is_none() {
                self.respond(server_tx, resp, now);
            }
            return;
        }
        if (200..300).contains(&code) {
            let first = !b.done;
            b.done = true;
            // §16.7 step 9: every 2xx is relayed at once (retransmissions too).
            if self
                .transactions
                .respond(server_tx, resp.clone(), now.mono)
                .is_err()
            {
                // The caller already has a final response: statelessly, by its Via.
                self.send_stateless_response(&resp);
            }
            self.flush_transactions();
            if first {
                if let Some(mut call) = self.routing.calls.remove(&key) {
                    let b = &call.branches[branch];
                    let answer = Answer {
                        call_id: &call.call_id,
                        invite: &call.invite,
                        response: &resp,
                        caller: call.caller_user.as_deref(),
                        caller_peer: self.transactions.peer(server_tx),
                        callee: b.user.as_deref(),
                        callee_leg: &format!("b{branch}"),
                        callee_peer: b.peer,
                    };
                    self.track_dialog(answer, now);
                    call.final_sent = true;
                    call.exec.branch_answered(branch, now.mono);
                    self.routing.calls.insert(key, call);
                }
                self.drive(key, now);
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
            self.presence
                .model_mut()
                .leg_ended(u, &call.call_id, &format!("b{branch}"));
        }
        b.response = Some(resp);
        call.exec.branch_failed(branch, code, now.mono);
        self.drive(key, now);
    }

    fn relay_response(&mut self, client: TxId, mut resp: Response, now: Now) {
        let code = resp.status_code.code();
        if code == 100 {
            return;
        }
        let Some(relay) = self.routing.relays.get_mut(&client) else {
            return;
        };
        if code >= 200 {
            relay.answered = true;
        }
        let server = relay.server_tx;
        proxy::strip_top_via(&mut resp);
        message::keep_reason_phrase(&mut resp);
        if (200..300).contains(&code) {
            // A target refresh's answer may move the answering end (§12.2).
            let refresh = matches!(relay.request.method, Method::Invite | Method::Update);
            if let Some(relay) = refresh
                .then(|| self.routing.relays.remove(&client))
                .flatten()
            {
                self.dialog_response_seen(&relay.request, &resp, now);
                self.routing.relays.insert(client, relay);
            }
            if self
                .transactions
                .respond(server, resp.clone(), now.mono)
                .is_err()
            {
                self.send_stateless_response(&resp);
            }
            self.flush_transactions();
        } else {
            self.respond(server, resp, now);
        }
    }

    /// §16.7 step 9 / §16.11: a 2xx to INVITE that matches no transaction (a late
    /// retransmission) is relayed statelessly when it carries our Via; anything else is
    /// dropped.
    fn stray_response(&mut self, mut resp: Response) {
        let is_invite_2xx = (200..300).contains(&resp.status_code.code())
            && resp
                .cseq_header()
                .is_ok_and(|c| c.value().trim_end().ends_with("INVITE"));
        let top_is_ours = proxy::via_values(&resp).first().is_some_and(|v| {
            let head = v.split(';').next().unwrap_or("");
            head.split_whitespace()
                .last()
                .is_some_and(|sb| self.sent_by_is_ours(sb))
        });
        if is_invite_2xx && top_is_ours && proxy::strip_top_via(&mut resp) {
            message::keep_reason_phrase(&mut resp);
            self.send_stateless_response(&resp);
        } else {
            self.stats.dropped += 1;
        }
    }

    fn send_stateless_response(&mut self, resp: &Response) {
        if let Some((transport, addr)) = proxy::response_destination(resp) {
            self.out.push_back(Output::Send {
                to: Peer {
                    transport,
                    addr,
                    conn: None,
                },
                bytes: Bytes::from(switchboard_sip::wire::response_bytes(resp)),
            });
        }
    }

    // ---- transaction events --------------------------------------------------------------

    /// Timeouts, transport errors and ends of our client transactions.
    pub(crate) fn route_tx_event(&mut self, action: Action, now: Now) {
        let (tx, code, timer_c) = match action {
            Action::Timeout {
                tx,
                timer: Timer::C,
            } => (tx, 408, true),
            Action::Timeout { tx, .. } => (tx, 408, false),
            Action::TransportError(tx) => (tx, 503, false),
            Action::Terminated(tx) => return self.tx_terminated(tx, now),
            Action::Transmit { .. } => return,
        };
        let why = if code == 408 {
            "no answer"
        } else {
            "unreachable"
        };
        let owner = self.owners.get(&tx).copied();
        if let Some(Owner::Notify(id)) = owner {
            // No final response to a NOTIFY: the subscriber is gone.
            self.owners.remove(&tx);
            self.notify_answered(id, None);
        } else if owner == Some(Owner::Dialog) {
            self.dialog_tx_failed(tx, why, now);
        } else if let Some(Owner::Branch { call: key, branch }) = owner {
            let Some(call) = self.routing.calls.get_mut(&key) else {
                return;
            };
            let Some(b) = call.branches.get_mut(branch) else {
                return;
            };
            if timer_c {
                // §16.8: a branch that rang too long is cancelled (or given up when it
                // never answered at all).
                let peer = b.peer;
                if b.provisional {
                    self.send_cancel(tx, peer, None, now);
                }
            }
            let Some(call) = self.routing.calls.get_mut(&key) else {
                return;
            };
            let b = &mut call.branches[branch];
            if !b.done {
                b.done = true;
                if let Some(u) = &b.user {
                    self.presence
                        .model_mut()
                        .leg_ended(u, &call.call_id, &format!("b{branch}"));
                }
                call.exec.branch_failed(branch, code, now.mono);
            }
            self.drive(key, now);
        } else if let (Some(Owner::Relay), Some(relay)) = (owner, self.routing.relays.get(&tx)) {
            if !relay.answered {
                let (server, req) = (relay.server_tx, relay.request.clone());
                self.reply_to(server, &req, 408, Vec::new(), now);
            }
        }
    }

    fn tx_terminated(&mut self, tx: TxId, now: Now) {
        match self.owners.remove(&tx) {
            // A NOTIFY that ended without a final response: the subscriber is gone.
            Some(Owner::Notify(id)) => self.notify_answered(id, None),
            Some(Owner::Dialog) => self.dialog_tx_failed(tx, "no answer", now),
            Some(Owner::Branch { call: key, branch }) => self.branch_ended(key, branch, now),
            Some(Owner::Relay) => {
                if let Some(relay) = self.routing.relays.remove(&tx) {
                    self.routing.relay_of_server.remove(&relay.server_tx);
                }
            }
            Some(Owner::Call(key)) => {
                // The caller's transaction ended (e.g. timer H): nothing more can be relayed.
                if let Some(call) = self.routing.calls.get_mut(&key) {
                    call.final_sent = true;
                }
            }
            None => {}
        }
    }

    /// A branch's transaction ended: without a final response, the branch failed (408).
    fn branch_ended(&mut self, key: u64, branch: BranchId, now: Now) {
        let Some(call) = self.routing.calls.get_mut(&key) else {
            return;
        };
        if let Some(b) = call.branches.get_mut(branch) {
            b.tx = None;
            if !b.done {
                b.done = true;
                call.exec.branch_failed(branch, 408, now.mono);
            }
        }
        self.drive(key, now);
    }

    /// Calls whose timeline has something due; answered calls whose BYE never came.
    pub(crate) fn routing_timeout(&mut self, now: Now) {
        while let Some(&(at, key)) = self.routing.wakes.first() {
            if at > now.mono {
                break;
            }
            self.routing.wakes.remove(&(at, key));
            if let Some(call) = self.routing.calls.get_mut(&key) {
                call.wake = None;
                call.exec.handle_timeout(now.mono);
            }
            self.drive(key, now);
        }
        self.dialogs_timeout(now);
    }

    // ---- in-dialog requests ------------------------------------------------------------------

    /// A request inside a dialog this proxy record-routed (or an ACK for a 2xx): on along
    /// its Route set. `tx` is None for an ACK (no transaction, RFC 6026).
    pub(crate) fn route_in_dialog(&mut self, tx: Option<TxId>, mut req: Request, now: Now) {
        let refuse = |core: &mut Core, req: &Request, code: u16, why: &str| {
            core.routing.stats.relay_refused += 1;
            tracing::info!(method = %req.method, call_id = %call_id_of(req), code, why, "in-dialog request refused");
            if let Some(tx) = tx {
                core.reply_to(tx, req, code, vec![message::warning(why)], now);
            }
        };
        let call_id = call_id_of(&req);
        let loop_key = proxy::loop_key(&req);
        let popped = proxy::pop_own_routes(&mut req, |u| self.uri_is_ours(u));
        if popped.is_empty() {
            return refuse(self, &req, 481, "no dialog of this server");
        }
        let token = proxy::route_token(self.route_secret(), &call_id);
        if !popped
            .iter()
            .any(|r| proxy::uri_param(r, "sbt") == Some(token.as_str()))
        {
            return refuse(self, &req, 403, "not a dialog of this server");
        }
        let next = proxy::next_hop_uri(&req);
        let dest = if proxy::route_set(&req).is_empty() {
            self.peer_for_uri(&next, now)
        } else {
            proxy::uri_target(&next).map(|(transport, addr)| Peer {
                transport,
                addr,
                conn: None,
            })
        };
        let Some(dest) = dest else {
            return refuse(self, &req, 404, "the next hop cannot be reached");
        };
        let Some(local_out) = self.local_for(dest.transport, dest.addr.ip()) else {
            return refuse(self, &req, 503, "no listener for the next hop's transport");
        };
        let via = proxy::via_value(
            dest.transport,
            local_out,
            &proxy::branch(loop_key, self.entropy.u64()),
        );
        let out = proxy::forward(&req, None, &via, &[]);
        if req.method == Method::Bye {
            self.end_dialog(&call_id);
        } else {
            self.dialog_request_seen(&call_id, &req);
        }
        self.routing.stats.relayed += 1;
        match tx {
            None => self.out.push_back(Output::Send {
                to: dest,
                bytes: Bytes::from(switchboard_sip::wire::request_bytes(&out)),
            }),
            Some(server) => match self.transactions.send_request(out, dest, now.mono) {
                Ok(client) => {
                    self.flush_transactions();
                    self.owners.insert(client, Owner::Relay);
                    self.routing.relays.insert(
                        client,
                        Box::new(Relay {
                            server_tx: server,
                            request: req,
                            answered: false,
                        }),
                    );
                    self.routing.relay_of_server.insert(server, client);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "in-dialog request not relayed");
                    self.reply_to(server, &req, 500, Vec::new(), now);
                }
            },
        }
    }

    /// Whether a request belongs in a dialog (To tag) rather than starting one.
    pub(crate) fn is_in_dialog(req: &Request) -> bool {
        req.to_header().is_ok_and(|t| has_tag(t.value()))
    }
}

#[cfg(test)]
#[path = "routing_tests.rs"]
mod tests;
