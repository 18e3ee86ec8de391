//! The daemon's SIP core: transactions, registrar, authentication, as one state machine.
//!
//! Sans-I/O like the pieces it is made of. Everything that happens to it is one [`Input`],
//! handed in with the time by [`Core::handle`]; [`Core::poll_output`] hands back what to
//! send, what to make durable, what to answer; [`Core::poll_timeout`] says when to hand in
//! [`Input::Timeout`]. The async shell in `server.rs` does the sockets, the store and the
//! clock, and tests drive the core directly with a virtual clock.
//!
//! The core is deterministic: it reads no clock, no global and no shared state (the policy
//! comes in as [`Input::PolicyChanged`]), and its random numbers come from the seed in its
//! [`CoreConfig`]. The same seed and the same inputs give the same outputs, byte for byte.

use crate::directory::Snapshot;
use crate::presence_service::{self, ErrorKind, PresenceError, PresenceService, Reply};
use crate::routing::{Routing, RoutingConfig, RoutingStats};
use crate::watchers::{Watchers, WatchersConfig};
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use switchboard_sip::auth::{Algorithm, Authenticator, DigestConfig, Role, Throttle};
use switchboard_sip::entropy::Entropy;
use switchboard_sip::message::{self, check_request, Capabilities};
use switchboard_sip::msg::headers::Header;
use switchboard_sip::msg::{Method, Request, Response, SipMessage};
use switchboard_sip::peer::Peer;
use switchboard_sip::registrar::{Binding, Registrar, RegistrarConfig};
use switchboard_sip::subscription::Notifier;
use switchboard_sip::transaction::{Action, ServerOutcome, TimerConfig, TransactionLayer, TxId};
use switchboard_sip::transport::{Inbound, ListenAddr};
use switchboard_store::Write;

/// Methods this server handles (as registrar, as proxy of calls and of their dialogs);
/// others are answered 405 with this list in `Allow`.
pub const METHODS: &[Method] = &[
    Method::Invite,
    Method::Ack,
    Method::Bye,
    Method::Cancel,
    Method::Register,
    Method::Options,
    Method::Update,
    Method::Info,
    Method::PRack,
    Method::Refer,
    Method::Notify,
    Method::Subscribe,
    Method::Publish,
    Method::Message,
];

/// What requests to this server itself may ask: its methods, and no `Require` extensions
/// yet.
const CAPABILITIES: Capabilities<'static> = Capabilities {
    methods: METHODS,
    extensions: &[],
    proxy: false,
};

/// What requests this server proxies may ask: `Require` is for the endpoints; no
/// `Proxy-Require` extension is supported.
const PROXY_CAPABILITIES: Capabilities<'static> = Capabilities {
    methods: METHODS,
    extensions: &[],
    proxy: true,
};

mod auth_gate;
mod ledger;
mod registrations;

pub use auth_gate::GateStats;
use auth_gate::{AuthGate, Gate};
use ledger::{Ledger, Pending};
use registrations::Registered;

/// Who a transaction belongs to: one lookup when its response, timeout or end comes, then
/// one `match` (see `routing::route_response`, `route_tx_event`). Filed when the
/// transaction is made, forgotten when it ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Owner {
    /// A call's INVITE server transaction (the call's key).
    Call(u64),
    /// A branch of a call: a client INVITE.
    Branch {
        call: u64,
        branch: crate::executor::BranchId,
    },
    /// A request relayed inside a dialog (its state is in `routing.relays`).
    Relay,
    /// A NOTIFY to a watcher of this subscription.
    Notify(switchboard_sip::subscription::SubId),
    /// A probe or BYE of an answered call (its state is in `dialogs`).
    Dialog,
}

/// What names this server: its domains (lower-case) and the addresses it listens on.
#[derive(Clone, Debug)]
pub(crate) struct LocalNames {
    pub domains: Vec<String>,
    pub addrs: Vec<SocketAddr>,
}

impl LocalNames {
    /// Whether a host (a domain, or an IP literal, bracketed or not) names this server.
    pub(crate) fn is_local_host(&self, host: &str) -> bool {
        let h = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        if self.domains.contains(&h) {
            return true;
        }
        match h.parse::<std::net::IpAddr>() {
            Ok(ip) => self
                .addrs
                .iter()
                .any(|a| a.ip() == ip || (a.ip().is_unspecified() && a.is_ipv4() == ip.is_ipv4())),
            Err(_) => false,
        }
    }
}

/// The current time, both ways the core needs it.
#[derive(Clone, Copy, Debug)]
pub struct Now {
    /// Monotonic time, for protocol timers.
    pub mono: Instant,
    /// Wall-clock Unix seconds, for binding expiry (which must survive restarts).
    pub unix: u64,
}

/// Settings of the core.
#[derive(Clone, Debug)]
pub struct CoreConfig {
    pub realm: String,
    /// Domains (lower-case) and local addresses this server is responsible for.
    pub domains: Vec<String>,
    pub server: String,
    pub timers: TimerConfig,
    pub registrar: RegistrarConfig,
    pub auth_required: bool,
    /// What every digest challenge offers, in order, whoever the request claims to be.
    pub auth_algorithms: Vec<Algorithm>,
    pub nonce_lifetime: Duration,
    pub max_failures: u32,
    pub failure_window: Duration,
    pub block: Duration,
    pub routing: RoutingConfig,
    pub watchers: WatchersConfig,
    /// The seed of every random number the core makes (tags, branches, nonces): secret,
    /// from the operating system, in the daemon; fixed in tests and replays.
    pub seed: [u8; 32],
}

/// Everything that happens to the core, handed in by [`Core::handle`] with the time.
// Nearly every input is a message: boxing it would cost an allocation per message.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Input {
    /// From the sockets: a message, a message that failed the checks, a peer that cannot
    /// be reached, a connection that closed.
    Inbound(Inbound),
    /// The outcome of [`Output::Persist`] `token`: durable (`ok`) or refused by the store.
    Persisted { token: u64, ok: bool },
    /// The time asked for by [`Core::poll_timeout`] has come (early calls are harmless).
    Timeout,
    /// A presence command from the API or the CLI, answered as [`Output::Reply`] `id`.
    Command {
        id: u64,
        req: presence_service::Request,
    },
    /// The policy was reloaded: from now on the core reads this version.
    PolicyChanged(Snapshot),
}

/// What the core asks the shell to do.
#[derive(Debug)]
pub enum Output {
    Send {
        to: Peer,
        bytes: Bytes,
    },
    /// Make these writes durable, then call [`Core::handle_persisted`] with `token`.
    Persist {
        token: u64,
        writes: Vec<Write>,
    },
    /// The answer to presence command `id` (see [`Core::handle_command`]); boxed, as it is
    /// far larger than the other outputs.
    Reply {
        id: u64,
        reply: Box<Reply>,
    },
    /// Keep the stream connection `peer.conn` open until `until` however idle it is: it
    /// carries a registration (a flow, RFC 5626), the only way to reach its phone.
    Hold {
        peer: Peer,
        until: Instant,
    },
}

/// Counters of the core.
#[derive(Debug, Default, Clone)]
pub struct CoreStats {
    pub requests: u64,
    pub responses: u64,
    pub rejected: u64,
    pub dropped: u64,
    pub store_failures: u64,
}

/// A presence change that waits for an earlier change of the same person to be stored:
/// changes of one person are stored one after another, so that undoing one that could not
/// be stored never undoes (in memory) a later one that was.
pub(crate) enum Queued {
    Api {
        id: u64,
        req: presence_service::Request,
    },
    Sip {
        tx: TxId,
        req: Box<Request>,
        command: presence_service::Command,
        ok: Box<Response>,
    },
}

/// The person a presence command changes (None: a read).
pub(crate) fn changed_person(c: &presence_service::Command) -> Option<&str> {
    use presence_service::Command as C;
    match c {
        C::SetStatus { user, .. }
        | C::SetMessage { user, .. }
        | C::SetProfile { user, .. }
        | C::CreateProfile { user, .. }
        | C::UpdateProfile { user, .. }
        | C::RemoveProfile { user, .. } => Some(user),
        _ => None,
    }
}

/// The daemon's SIP core (see the module's documentation).
///
/// The drain contract: after each [`Core::handle`], call [`Core::poll_output`] until it
/// returns `None` and carry out each output in order (a `Persist`'s outcome comes back as
/// [`Input::Persisted`], in any order relative to other inputs); then ask
/// [`Core::poll_timeout`] when to hand in [`Input::Timeout`].
pub struct Core {
    pub(crate) config: CoreConfig,
    /// The policy's directory as last handed in.
    pub(crate) directory: Snapshot,
    /// Every random number the core itself makes.
    pub(crate) entropy: Entropy,
    pub(crate) transactions: TransactionLayer,
    /// Whose each live transaction is.
    pub(crate) owners: switchboard_sip::GrowingMap<TxId, Owner>,
    pub(crate) registrar: Registrar,
    /// The digest gate: nonces, failure counts and blocks.
    pub(crate) gate: AuthGate,
    /// Answers waiting for the store.
    ledger: Ledger,
    pub(crate) presence: PresenceService,
    pub(crate) out: VecDeque<Output>,
    pub(crate) stats: CoreStats,
    /// Our domains and the addresses the listeners are bound to.
    pub(crate) local: LocalNames,
    /// The listeners, with their transports (Via and Record-Route of what we send).
    pub(crate) listeners: Vec<ListenAddr>,
    pub(crate) routing: Routing,
    /// Subscriptions to people's dialog and presence state.
    pub(crate) notifier: Notifier,
    pub(crate) watchers: Watchers,
    /// People with presence changes on their way to the store, and how many.
    pub(crate) presence_writes: HashMap<String, usize>,
    /// Changes waiting for those, per person, in order.
    pub(crate) queued_changes: HashMap<String, VecDeque<Queued>>,
    /// People whose watchers were held back while their change was being stored.
    pub(crate) renotify: Vec<String>,
    /// Transaction events other than transmissions, handled once the event that caused
    /// them is done (so that no handler runs inside another).
    tx_events: VecDeque<Action>,
    draining: bool,
}

impl Core {
    pub fn new(
        config: CoreConfig,
        directory: Snapshot,
        listeners: Vec<ListenAddr>,
        now: Now,
    ) -> Self {
        let local = LocalNames {
            domains: config.domains.clone(),
            addrs: listeners.iter().map(|l| l.addr).collect(),
        };
        let mut entropy = Entropy::from_seed(config.seed);
        let auth = Authenticator::new(
            DigestConfig {
                realm: config.realm.clone(),
                nonce_lifetime: config.nonce_lifetime,
                max_tracked_nonces: 100_000,
                algorithms: config.auth_algorithms.clone(),
            },
            now.mono,
            entropy.fork(),
        );
        let throttle = Throttle::new(config.max_failures, config.failure_window, config.block);
        let presence = PresenceService::new(directory.policy());
        Core {
            presence,
            routing: Routing::new(config.routing),
            notifier: Notifier::new(config.watchers.subscriptions, entropy.fork()),
            entropy,
            watchers: Watchers::new(&config.watchers),
            presence_writes: HashMap::new(),
            queued_changes: HashMap::new(),
            renotify: Vec::new(),
            listeners,
            tx_events: VecDeque::new(),
            transactions: TransactionLayer::new(config.timers),
            owners: switchboard_sip::GrowingMap::new(),
            registrar: Registrar::new(config.registrar),
            gate: AuthGate::new(auth, throttle, config.block),
            config,
            directory,
            ledger: Ledger::new(),
            out: VecDeque::new(),
            stats: CoreStats::default(),
            local,
            draining: false,
        }
    }

    /// Loads bindings read back from the durable store; returns how many are live.
    pub fn restore_bindings(&mut self, rows: Vec<(String, Vec<u8>)>, now: Now) -> usize {
        let mut bindings = Vec::with_capacity(rows.len());
        for (key, value) in rows {
            match serde_json::from_slice::<Binding>(&value) {
                Ok(b) => bindings.push(b),
                Err(e) => {
                    tracing::warn!(key, error = %e, "unreadable binding in the store; skipped")
                }
            }
        }
        self.registrar.restore(bindings, now.unix)
    }

    /// Loads people's own profiles read back from the durable store (before presence).
    pub fn restore_profiles(&mut self, rows: Vec<(String, Vec<u8>)>) -> usize {
        self.presence.restore_profiles(rows)
    }

    /// Loads presence read back from the durable store (profiles that ended while the
    /// daemon was down end now, and that is stored).
    pub fn restore_presence(&mut self, rows: Vec<(String, Vec<u8>)>, now: Now) {
        let directory = self.directory.clone();
        let writes = self
            .presence
            .restore(rows, directory.policy(), now.unix as i64);
        self.persist_unacknowledged(writes);
    }

    pub fn presence(&self) -> &PresenceService {
        &self.presence
    }

    /// Loads group memory (who answered last) read back from the durable store.
    pub fn restore_memory(&mut self, rows: Vec<(String, Vec<u8>)>) -> usize {
        self.routing.restore_memory(rows)
    }

    /// Call routing's state and counters.
    pub fn routing(&self) -> &Routing {
        &self.routing
    }

    pub fn routing_counters(&self) -> &RoutingStats {
        self.routing_stats()
    }

    pub(crate) fn persist_unacknowledged(&mut self, writes: Vec<Write>) {
        if !writes.is_empty() {
            let token = self.ledger.token();
            self.out.push_back(Output::Persist { token, writes });
        }
    }

    /// A presence command from the API or the CLI; the answer comes as [`Output::Reply`]
    /// with `id`, after any change it makes is durable.
    pub(crate) fn handle_command(&mut self, id: u64, req: presence_service::Request, now: Now) {
        self.command(id, req, now);
        self.after_event(now);
    }

    fn command(&mut self, id: u64, req: presence_service::Request, now: Now) {
        let person = changed_person(&req.command).map(str::to_string);
        if let Some(p) = &person {
            if self.presence_writes.contains_key(p) {
                self.queued_changes
                    .entry(p.clone())
                    .or_default()
                    .push_back(Queued::Api { id, req });
                return;
            }
        }
        let directory = self.directory.clone();
        let result = self
            .presence
            .handle(&req, directory.policy(), now.unix as i64);
        match result {
            Err(e) => self.out.push_back(Output::Reply {
                id,
                reply: Box::new(Err(e)),
            }),
            Ok(Ok(answer)) => self.out.push_back(Output::Reply {
                id,
                reply: Box::new(Ok(answer)),
            }),
            Ok(Err(p)) => {
                if let Some(who) = &person {
                    *self.presence_writes.entry(who.clone()).or_default() += 1;
                }
                self.persist(
                    Pending::Presence {
                        id,
                        answer: p.answer,
                        before: p.before,
                        person,
                    },
                    p.writes,
                );
            }
        }
    }

    pub fn registrar(&self) -> &Registrar {
        &self.registrar
    }

    pub fn stats(&self) -> &CoreStats {
        &self.stats
    }

    /// The digest gate's counters: failed credentials, requests from blocked sources.
    pub fn gate_stats(&self) -> GateStats {
        self.gate.stats
    }

    /// Requests whose answer waits for the store.
    pub fn pending(&self) -> usize {
        self.ledger.len()
    }

    /// Stop taking new requests (they get 503); finish what is under way.
    pub fn drain(&mut self) {
        self.draining = true;
    }

    /// Hands an input to the core (see [`Input`] and the drain contract on [`Core`]).
    pub fn handle(&mut self, input: Input, now: Now) {
        match input {
            Input::Inbound(i) => self.handle_inbound(i, now),
            Input::Persisted { token, ok } => self.handle_persisted(token, ok, now),
            Input::Timeout => self.handle_timeout(now),
            Input::Command { id, req } => self.handle_command(id, req, now),
            Input::PolicyChanged(directory) => self.policy_changed(directory, now),
        }
    }

    /// A fresh tag (To tags of our responses, ETags): from the core's seeded generator.
    pub(crate) fn tag(&mut self) -> String {
        self.entropy.token()
    }

    #[must_use = "every output must be carried out, in order"]
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When [`Input::Timeout`] must next be handed in.
    #[must_use = "the core needs Input::Timeout at this time"]
    pub fn poll_timeout(&self, now: Now) -> Option<Instant> {
        let expiry = self
            .registrar
            .next_expiry()
            .map(|t| now.mono + Duration::from_secs(t.saturating_sub(now.unix)));
        let profile_end = self
            .presence
            .next_end()
            .map(|t| now.mono + Duration::from_secs((t.max(0) as u64).saturating_sub(now.unix)));
        let subscription_end = self
            .notifier
            .next_expiry()
            .into_iter()
            .chain(self.watchers.next_publication_end())
            .min()
            .map(|t| now.mono + Duration::from_secs(t.saturating_sub(now.unix)));
        [
            self.transactions.poll_timeout(),
            expiry,
            profile_end,
            self.routing.poll_timeout(now),
            subscription_end,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    pub(crate) fn handle_timeout(&mut self, now: Now) {
        self.transactions.handle_timeout(now.mono);
        self.flush_transactions();
        self.handle_tx_events(now);
        self.routing_timeout(now);
        self.watchers_timeout(now);
        self.handle_tx_events(now);
        let lapsed = self.registrar.expire(now.unix);
        if !lapsed.is_empty() {
            tracing::info!(count = lapsed.len(), "bindings expired");
            let writes = lapsed.iter().map(registrations::change_to_write).collect();
            let token = self.ledger.token();
            self.out.push_back(Output::Persist { token, writes });
        }
        self.gate.expire(now.mono);
        let ended = self.presence.expire(now.unix as i64);
        self.persist_unacknowledged(ended);
        self.after_event(now);
    }

    /// Makes `writes` durable, then answers as `pending` says (see [`ledger`]).
    fn persist(&mut self, pending: Pending, writes: Vec<Write>) {
        let token = self.ledger.file(pending);
        self.out.push_back(Output::Persist { token, writes });
    }

    /// The outcome of a [`Output::Persist`].
    pub(crate) fn handle_persisted(&mut self, token: u64, ok: bool, now: Now) {
        self.persisted(token, ok, now);
        self.after_event(now);
    }

    /// The policy was replaced (a reload): the core reads the new version from now on, and
    /// presence takes in its people and profiles (newcomers are stored, everyone's watchers
    /// see what changed for them).
    pub(crate) fn policy_changed(&mut self, directory: Snapshot, now: Now) {
        self.directory = directory.clone();
        let writes = self
            .presence
            .policy_changed(directory.policy(), now.unix as i64);
        self.persist_unacknowledged(writes);
        self.after_event(now);
    }

    /// A subscription is stored before its 200.
    pub(crate) fn persist_subscription(
        &mut self,
        tx: TxId,
        id: switchboard_sip::subscription::SubId,
        ok: Response,
        writes: Vec<Write>,
    ) {
        self.persist(
            Pending::Subscribe {
                tx,
                id,
                ok: Box::new(ok),
            },
            writes,
        );
    }

    /// A person's change reached the store (or failed to): their watchers may hear of it
    /// now, and their next change waiting, if any, goes ahead.
    fn presence_stored(&mut self, person: &str, now: Now) {
        let left = match self.presence_writes.get_mut(person) {
            Some(n) => {
                *n = n.saturating_sub(1);
                *n
            }
            None => 0,
        };
        if left > 0 {
            return;
        }
        self.presence_writes.remove(person);
        self.renotify.push(person.to_string());
        let next = self
            .queued_changes
            .get_mut(person)
            .and_then(|q| q.pop_front());
        if self
            .queued_changes
            .get(person)
            .is_some_and(|q| q.is_empty())
        {
            self.queued_changes.remove(person);
        }
        match next {
            Some(Queued::Api { id, req }) => self.command(id, req, now),
            Some(Queued::Sip {
                tx,
                req,
                command,
                ok,
            }) => self.sip_presence_change(tx, &req, person, command, *ok, now),
            None => {}
        }
    }

    /// What every event ends with: transaction events handed on, watchers notified.
    fn after_event(&mut self, now: Now) {
        self.handle_tx_events(now);
        self.notify_changes(now);
        self.handle_tx_events(now);
    }

    /// A presence change asked over SIP waits for the store before its answer.
    pub(crate) fn persist_sip_change(
        &mut self,
        tx: TxId,
        ok: Response,
        failed: Response,
        change: (String, presence_service::Undo),
        writes: Vec<Write>,
    ) {
        let (person, before) = change;
        *self.presence_writes.entry(person.clone()).or_default() += 1;
        self.persist(
            Pending::Sip {
                tx,
                ok,
                failed,
                before,
                person,
            },
            writes,
        );
    }

    fn persisted(&mut self, token: u64, ok: bool, now: Now) {
        if !ok {
            self.stats.store_failures += 1;
        }
        let (tx, response, aor, previous) = match self.ledger.settle(token) {
            None => return,
            Some(Pending::Subscribe { tx, id, ok: answer }) => {
                self.subscription_stored(tx, id, *answer, ok, now);
                return;
            }
            Some(Pending::Sip {
                tx,
                ok: answer,
                failed,
                before,
                person,
            }) => {
                if ok {
                    self.respond(tx, answer, now);
                } else {
                    self.presence.rollback(before);
                    self.respond(tx, failed, now);
                }
                self.presence_stored(&person, now);
                return;
            }
            Some(Pending::Presence {
                id,
                answer,
                before,
                person,
            }) => {
                let reply = if ok {
                    Ok(answer)
                } else {
                    self.presence.rollback(before);
                    Err(PresenceError::new(
                        ErrorKind::Unavailable,
                        None,
                        "the change could not be stored; try again",
                    ))
                };
                self.out.push_back(Output::Reply {
                    id,
                    reply: Box::new(reply),
                });
                if let Some(p) = person {
                    self.presence_stored(&p, now);
                }
                return;
            }
            Some(Pending::Register {
                tx,
                response,
                aor,
                previous,
            }) => (tx, response, aor, previous),
        };
        if ok {
            // A REGISTER over a stream connection: the connection is the bindings' flow,
            // held open until they lapse (the idle timeout must not close it).
            let peer = self.transactions.peer(tx);
            if let Some(peer) = peer {
                if let Some(until) = registrations::flow_hold(&self.registrar, &aor, peer, now) {
                    self.out.push_back(Output::Hold { peer, until });
                }
            }
            self.respond(tx, response, now);
        } else {
            let resp = registrations::failed(&mut self.registrar, &aor, previous, response);
            self.respond(tx, resp, now);
        }
    }

    pub(crate) fn handle_inbound(&mut self, inbound: Inbound, now: Now) {
        match inbound {
            Inbound::Unreachable { peer, why } => {
                // §17.1.4, §17.2.4: what waits on it ends now (a branch answers 503).
                let ended = self.transactions.handle_peer_unreachable(peer, now.mono);
                self.flush_transactions();
                tracing::info!(to = %peer, %why, transactions = ended, "peer unreachable");
            }
            Inbound::Closed { peer } => {
                if let Some(conn) = peer.conn {
                    let flows = self.registrar.flow_closed(conn);
                    if flows > 0 {
                        tracing::info!(peer = %peer, bindings = flows, "registered flow closed; its bindings are unreachable until they register again");
                    }
                }
            }
            Inbound::Invalid { error, peer } => {
                let allow = CAPABILITIES.allow();
                match error.response(&self.config.server, &allow) {
                    Some(bytes) => {
                        self.stats.rejected += 1;
                        tracing::info!(from = %peer, reason = %error, "bad request answered");
                        self.out.push_back(Output::Send {
                            to: peer,
                            bytes: Bytes::from(bytes),
                        });
                    }
                    None => {
                        self.stats.dropped += 1;
                        tracing::debug!(from = %peer, reason = %error, "unreadable message dropped");
                    }
                }
            }
            Inbound::Message {
                msg: SipMessage::Request(req),
                peer,
                local,
            } => {
                let local = ListenAddr {
                    transport: peer.transport,
                    addr: local,
                };
                self.handle_request(req, peer, local, now)
            }
            Inbound::Message {
                msg: SipMessage::Response(resp),
                peer,
                ..
            } => {
                self.stats.responses += 1;
                let outcome = self.transactions.handle_response(resp, peer, now.mono);
                self.flush_transactions();
                self.route_response(outcome, now);
            }
        }
        self.after_event(now);
    }

    /// Whether a request is one this server forwards rather than answers: an INVITE, an
    /// ACK or CANCEL, anything inside a dialog.
    fn is_proxied(req: &Request) -> bool {
        matches!(req.method, Method::Invite | Method::Ack | Method::Cancel)
            || Core::is_in_dialog(req)
    }

    fn handle_request(&mut self, mut req: Request, peer: Peer, local: ListenAddr, now: Now) {
        self.stats.requests += 1;
        message::stamp_via(&mut req, peer.addr);
        let caps = if Core::is_proxied(&req) {
            &PROXY_CAPABILITIES
        } else {
            &CAPABILITIES
        };
        if let Err(refusal) = check_request(&req, caps) {
            if req.method == Method::Ack {
                self.stats.dropped += 1;
                return; // an ACK is never answered
            }
            self.stats.rejected += 1;
            tracing::info!(from = %peer, method = %req.method, code = refusal.code, reason = %refusal.reason, "request refused");
            let resp = refusal.response(&req, &self.config.server);
            // Through a transaction where one can be made, so retransmissions are absorbed.
            match self.transactions.handle_request(req, peer, now.mono) {
                ServerOutcome::New(tx, _) => self.respond(tx, resp, now),
                _ => self.flush_transactions(),
            }
            return;
        }
        let outcome = self.transactions.handle_request(req, peer, now.mono);
        self.request_route(outcome, peer, local, now);
    }

    /// The request route: which part of the core handles each request that passed the
    /// checks, by method and condition — the whole routing logic in one place.
    ///
    /// - the transaction layer absorbs retransmissions (and answers them from the
    ///   transaction);
    /// - CANCEL ends its INVITE's call (`routing`: every branch cancelled, 487);
    /// - ACK for a 2xx goes along its dialog (`routing`); for a non-2xx final response
    ///   its transaction absorbs it;
    /// - while draining, a new request gets 503;
    /// - inside a dialog (a To tag): a SUBSCRIBE refreshing or ending one of our
    ///   subscriptions goes to `watchers`; anything else (BYE, re-INVITE, UPDATE, INFO,
    ///   PRACK, REFER, NOTIFY, MESSAGE…) is proxied along the dialog's route (`routing`);
    /// - INVITE: `routing` — a feature code from a user (presence), a call from a trunk
    ///   (by source or credentials) or from a user (digest, 407), planned and forked;
    /// - REGISTER: `registrations` (digest, 401);
    /// - OPTIONS: answered here, 200 with what we allow;
    /// - SUBSCRIBE and PUBLISH: `watchers` (digest, 401);
    /// - BYE, UPDATE, INFO, PRACK, NOTIFY outside a dialog: 481;
    /// - REFER and MESSAGE outside a dialog: 501; anything else: 405.
    fn request_route(&mut self, outcome: ServerOutcome, peer: Peer, local: ListenAddr, now: Now) {
        let (tx, req) = match outcome {
            ServerOutcome::New(tx, req) => (tx, req),
            ServerOutcome::Cancel {
                cancel_tx,
                invite_tx,
                request,
            } => return self.route_cancel(cancel_tx, invite_tx, request, now),
            ServerOutcome::Ack(req) if Core::is_in_dialog(&req) => {
                return self.route_in_dialog(None, req, now)
            }
            ServerOutcome::Ack(_) => {
                self.stats.dropped += 1;
                return;
            }
            _ => return self.flush_transactions(),
        };
        if self.draining {
            return self.reply_to(tx, &req, 503, vec![Header::RetryAfter("5".into())], now);
        }
        if Core::is_in_dialog(&req) {
            if req.method == Method::Subscribe && self.notifier.find(&req).is_some() {
                return self.handle_subscribe(tx, req, peer, local, now);
            }
            return self.route_in_dialog(Some(tx), req, now);
        }
        match req.method {
            Method::Invite => self.route_invite(tx, req, peer, local, now),
            Method::Register => self.register(tx, req, peer, now),
            Method::Options => {
                let headers = vec![
                    Header::Allow(CAPABILITIES.allow().into()),
                    Header::Accept("application/sdp".into()),
                ];
                self.reply_to(tx, &req, 200, headers, now)
            }
            Method::Subscribe => self.handle_subscribe(tx, req, peer, local, now),
            Method::Publish => self.handle_publish(tx, req, peer, now),
            // Methods that only exist inside a dialog (§15, RFC 3311/6086/3262/3515/6665).
            Method::Bye | Method::Update | Method::Info | Method::PRack | Method::Notify => {
                self.reply_to(tx, &req, 481, Vec::new(), now)
            }
            // Out-of-dialog REFER and MESSAGE are not served yet.
            Method::Refer | Method::Message => {
                let allow = vec![Header::Allow(CAPABILITIES.allow().into())];
                self.reply_to(tx, &req, 501, allow, now)
            }
            _ => {
                let allow = vec![Header::Allow(CAPABILITIES.allow().into())];
                self.reply_to(tx, &req, 405, allow, now)
            }
        }
    }

    pub(crate) fn is_local_host(&self, host: &str) -> bool {
        self.local.is_local_host(host)
    }

    /// Digest authentication of a request (RFC 7616) as a UAS (`401`) or a proxy (`407`),
    /// through the one gate: the user name it proves, or None when it has been answered —
    /// challenged (the same challenge whoever it claims to be), refused 403 (a failure
    /// counted against its source, or a blocked source), or 400 when unreadable.
    pub(crate) fn digest(
        &mut self,
        tx: TxId,
        req: &Request,
        peer: Peer,
        role: Role,
        now: Now,
    ) -> Option<String> {
        let directory = self.directory.clone();
        match self
            .gate
            .check(req, peer, role, directory.as_ref().as_ref(), now.mono)
        {
            Gate::Passed(username) => Some(username),
            Gate::Answer { code, headers } => {
                self.reply_to(tx, req, code, headers, now);
                None
            }
        }
    }

    fn register(&mut self, tx: TxId, req: Request, peer: Peer, now: Now) {
        let directory = self.directory.clone();
        let ctx = registrations::Ctx {
            directory: directory.as_ref().as_ref(),
            local: &self.local,
            entropy: &mut self.entropy,
            server: &self.config.server,
            auth_required: self.config.auth_required,
        };
        match registrations::register(ctx, &mut self.gate, &mut self.registrar, &req, peer, now) {
            Registered::Answer(resp) => self.respond(tx, resp, now),
            Registered::Store {
                ok,
                writes,
                aor,
                previous,
            } => self.persist(
                Pending::Register {
                    tx,
                    response: ok,
                    aor,
                    previous,
                },
                writes,
            ),
        }
    }

    pub(crate) fn respond(&mut self, tx: TxId, resp: Response, now: Now) {
        if let Err(e) = self.transactions.respond(tx, resp, now.mono) {
            tracing::debug!(error = ?e, "response for a finished transaction dropped");
        }
        self.flush_transactions();
    }

    pub(crate) fn flush_transactions(&mut self) {
        while let Some(action) = self.transactions.poll_action() {
            match action {
                Action::Transmit { to, bytes } => self.out.push_back(Output::Send { to, bytes }),
                other => {
                    tracing::trace!(action = ?other, "transaction event");
                    self.tx_events.push_back(other);
                }
            }
        }
    }

    /// Hands transaction timeouts, transport errors and ends to their owners, in the order
    /// they happened. Handling one may cause more (a CANCEL sent, a response relayed): they
    /// join the end of the queue, so no handler runs inside another. The queue runs dry:
    /// each event is a step of one transaction towards its end, and a transaction takes
    /// finitely many (a timeout per timer, one transport error, one end).
    fn handle_tx_events(&mut self, now: Now) {
        while let Some(event) = self.tx_events.pop_front() {
            self.route_tx_event(event, now);
            self.flush_transactions();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use switchboard_sip::auth::{parse_digest, Algorithm};
    use switchboard_sip::parse::{parse, Limits};

    const POLICY: &str = "[users.alice]\nextension = \"1001\"\n[users.alice.sip]\npassword = \"pw\"\nalgorithms = [\"md5\"]\n";

    fn core(t0: Instant) -> Core {
        core_with(t0, POLICY, &switchboard_sip::auth::DEFAULT_ALGORITHMS)
    }

    fn core_with(t0: Instant, policy: &str, algorithms: &[Algorithm]) -> Core {
        let config = CoreConfig {
            auth_algorithms: algorithms.to_vec(),
            max_failures: 3,
            ..crate::test_harness::config(true)
        };
        Core::new(
            config,
            crate::test_harness::snapshot(policy),
            vec!["udp:127.0.0.1:5060".parse().unwrap()],
            at(t0, 0),
        )
    }

    fn at(t0: Instant, s: u64) -> Now {
        Now {
            mono: t0 + Duration::from_secs(s),
            unix: 1_800_000_000 + s,
        }
    }

    fn peer() -> Peer {
        Peer::udp("127.0.0.1:5070".parse().unwrap())
    }

    fn register(cseq: u32, branch: &str, expires: u32, auth: Option<&str>) -> Inbound {
        let text = format!(
            "REGISTER sip:switchboard.local SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;rport;branch=z9hG4bK{branch}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:alice@switchboard.local>;tag=1\r\nTo: <sip:alice@switchboard.local>\r\n\
             Call-ID: reg-1\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:alice@127.0.0.1:5070>\r\nExpires: {expires}\r\n{}\
             Content-Length: 0\r\n\r\n",
            auth.map(|a| format!("Authorization: {a}\r\n")).unwrap_or_default()
        );
        Inbound::Message {
            msg: parse(text.as_bytes(), &Limits::default()).unwrap(),
            peer: peer(),
            local: "127.0.0.1:5060".parse().unwrap(),
        }
    }

    fn outputs(c: &mut Core) -> Vec<Output> {
        std::iter::from_fn(|| c.poll_output()).collect()
    }

    fn sent(o: &[Output]) -> Vec<String> {
        o.iter()
            .filter_map(|o| match o {
                Output::Send { bytes, .. } => Some(String::from_utf8_lossy(bytes).to_string()),
                _ => None,
            })
            .collect()
    }

    /// Answers the challenge in `resp` as a phone would.
    fn answer(resp: &str, nc: u32) -> String {
        let line = resp
            .lines()
            .find(|l| l.starts_with("WWW-Authenticate:"))
            .unwrap();
        let p = parse_digest(line.trim_start_matches("WWW-Authenticate:").trim()).unwrap();
        let nonce = &p["nonce"];
        let ha1 = Algorithm::Md5.hash("alice:switchboard.local:pw");
        let ha2 = Algorithm::Md5.hash("REGISTER:sip:switchboard.local");
        let nc = format!("{nc:08x}");
        let r = Algorithm::Md5.hash(&format!("{ha1}:{nonce}:{nc}:abc:auth:{ha2}"));
        format!(
            "Digest username=\"alice\", realm=\"switchboard.local\", nonce=\"{nonce}\", uri=\"sip:switchboard.local\", \
             response=\"{r}\", algorithm=MD5, qop=auth, nc={nc}, cnonce=\"abc\""
        )
    }

    /// Registers alice; returns the token of the pending store write.
    fn challenge_and_answer(c: &mut Core, t0: Instant, expires: u32) -> u64 {
        c.handle_inbound(register(1, "a", expires, None), at(t0, 0));
        let out = sent(&outputs(c));
        assert!(out[0].starts_with("SIP/2.0 401"), "{out:?}");
        c.handle_inbound(
            register(2, "b", expires, Some(&answer(&out[0], 1))),
            at(t0, 0),
        );
        let out = outputs(c);
        assert!(
            sent(&out).is_empty(),
            "no answer before the binding is durable: {out:?}"
        );
        match &out[..] {
            [Output::Persist { token, writes }] => {
                assert_eq!(writes.len(), 1);
                assert_eq!(writes[0].table, switchboard_store::tables::BINDINGS);
                *token
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn register_is_answered_only_once_durable() {
        let t0 = Instant::now();
        let mut c = core(t0);
        let token = challenge_and_answer(&mut c, t0, 600);
        assert_eq!(c.pending(), 1);
        // A retransmission while waiting is absorbed: still no answer.
        let out = outputs(&mut c);
        assert!(out.is_empty());
        c.handle_persisted(token, true, at(t0, 0));
        let out = sent(&outputs(&mut c));
        assert!(out[0].starts_with("SIP/2.0 200 OK"), "{out:?}");
        assert!(
            out[0].contains("Contact: <sip:alice@127.0.0.1:5070>;expires=600"),
            "{out:?}"
        );
        assert_eq!(c.registrar().len(), 1);
        assert_eq!(c.pending(), 0);
    }

    #[test]
    fn store_failure_answers_500_and_rolls_back() {
        let t0 = Instant::now();
        let mut c = core(t0);
        let token = challenge_and_answer(&mut c, t0, 600);
        c.handle_persisted(token, false, at(t0, 0));
        let out = sent(&outputs(&mut c));
        assert!(out[0].starts_with("SIP/2.0 500"), "{out:?}");
        assert!(!out[0].contains("Contact:"), "{out:?}");
        assert!(out[0].contains("Retry-After: 5"), "{out:?}");
        assert!(c.registrar().is_empty());
        assert_eq!(c.stats().store_failures, 1);
    }

    #[test]
    fn expiry_fires_from_poll_timeout_and_is_persisted() {
        let t0 = Instant::now();
        let mut c = core(t0);
        let token = challenge_and_answer(&mut c, t0, 60);
        c.handle_persisted(token, true, at(t0, 0));
        outputs(&mut c);
        let wake = c.poll_timeout(at(t0, 0)).unwrap();
        assert!(wake <= t0 + Duration::from_secs(60));
        c.handle_timeout(at(t0, 61));
        let out = outputs(&mut c);
        assert!(out
            .iter()
            .any(|o| matches!(o, Output::Persist { writes, .. } if writes[0].value.is_none())));
        assert!(c.registrar().is_empty());
    }

    #[test]
    fn draining_refuses_new_requests_with_503() {
        let t0 = Instant::now();
        let mut c = core(t0);
        c.drain();
        c.handle_inbound(register(1, "a", 600, None), at(t0, 0));
        let out = sent(&outputs(&mut c));
        assert!(out[0].starts_with("SIP/2.0 503"), "{out:?}");
    }

    #[test]
    fn presence_change_is_answered_once_durable_and_rolled_back_on_failure() {
        use crate::presence_service::{Command, Request};
        use switchboard_presence::model::Interface;
        let t0 = Instant::now();
        let mut c = core(t0);
        let req = |status: &str| Request {
            who: "alice".into(),
            admin: false,
            via: Interface::Api,
            command: Command::SetStatus {
                user: "alice".into(),
                status: status.into(),
                text: None,
                until: None,
            },
        };
        c.handle_command(1, req("dnd"), at(t0, 0));
        let token = match &outputs(&mut c)[..] {
            [Output::Persist { token, writes }] => {
                assert_eq!(writes[0].table, switchboard_store::tables::PRESENCE);
                *token
            }
            other => panic!("no answer before the change is durable: {other:?}"),
        };
        c.handle_persisted(token, false, at(t0, 0));
        match &outputs(&mut c)[..] {
            [Output::Reply { id: 1, reply }] => assert!(
                matches!(&**reply, Err(e) if e.kind == ErrorKind::Unavailable),
                "{reply:?}"
            ),
            other => panic!("{other:?}"),
        }
        // Rolled back: still available.
        let avail = c.presence().model().get("alice").unwrap().availability;
        assert_eq!(avail.as_str(), "available");
        c.handle_command(2, req("away"), at(t0, 1));
        let Some(Output::Persist { token, .. }) = c.poll_output() else {
            panic!()
        };
        c.handle_persisted(token, true, at(t0, 1));
        match &outputs(&mut c)[..] {
            [Output::Reply { id: 2, reply }] => assert!(
                matches!(&**reply, Ok(presence_service::Answer::Person(p)) if p.availability.as_str() == "away"),
                "{reply:?}"
            ),
            other => panic!("{other:?}"),
        }
    }

    /// The WWW-Authenticate values of the 401 a REGISTER for `user` gets, nonces blanked.
    fn challenge_for(c: &mut Core, t0: Instant, user: &str, branch: &str) -> Vec<String> {
        let text = format!(
            "REGISTER sip:switchboard.local SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;rport;branch=z9hG4bK{branch}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:{user}@switchboard.local>;tag=1\r\nTo: <sip:{user}@switchboard.local>\r\n\
             Call-ID: reg-{branch}\r\nCSeq: 1 REGISTER\r\nContact: <sip:{user}@127.0.0.1:5070>\r\n\
             Content-Length: 0\r\n\r\n"
        );
        let inbound = Inbound::Message {
            msg: parse(text.as_bytes(), &Limits::default()).unwrap(),
            peer: peer(),
            local: "127.0.0.1:5060".parse().unwrap(),
        };
        c.handle_inbound(inbound, at(t0, 0));
        let out = sent(&outputs(c));
        assert!(out[0].starts_with("SIP/2.0 401"), "{user}: {out:?}");
        out[0]
            .lines()
            .filter_map(|l| l.strip_prefix("WWW-Authenticate: "))
            .map(|v| {
                let nonce = &parse_digest(v).unwrap()["nonce"];
                assert!(!nonce.is_empty());
                v.replace(nonce.as_str(), "N")
            })
            .collect()
    }

    #[test]
    fn the_challenge_is_the_same_for_every_user_name() {
        let policy = format!(
            "{POLICY}[users.sha]\nextension = \"1002\"\n[users.sha.sip]\npassword = \"pw\"\nalgorithms = [\"sha-256\"]\n\
             [users.both]\nextension = \"1003\"\n[users.both.sip]\npassword = \"pw\"\nalgorithms = [\"sha-256\", \"md5\"]\n\
             [users.plain]\nextension = \"1004\"\n[users.plain.sip]\npassword = \"pw\"\n"
        );
        let t0 = Instant::now();
        for offered in [
            &switchboard_sip::auth::DEFAULT_ALGORITHMS[..],
            &[Algorithm::Sha256, Algorithm::Md5][..],
        ] {
            let mut c = core_with(t0, &policy, offered);
            let ghost = challenge_for(&mut c, t0, "ghost", "g");
            let tokens: Vec<String> = offered
                .iter()
                .map(|a| format!("algorithm={}", a.token()))
                .collect();
            assert_eq!(ghost.len(), offered.len(), "{ghost:?}");
            for (h, t) in ghost.iter().zip(&tokens) {
                assert!(h.contains(t.as_str()), "{ghost:?}");
            }
            for user in ["alice", "sha", "both", "plain"] {
                let known = challenge_for(&mut c, t0, user, user);
                assert_eq!(known, ghost, "{user} is told apart from an unknown name");
            }
        }
    }

    #[test]
    fn replayed_authorization_is_refused() {
        let t0 = Instant::now();
        let mut c = core(t0);
        c.handle_inbound(register(1, "a", 600, None), at(t0, 0));
        let challenge = sent(&outputs(&mut c)).remove(0);
        let auth = answer(&challenge, 1);
        c.handle_inbound(register(2, "b", 600, Some(&auth)), at(t0, 0));
        let Some(Output::Persist { token, .. }) = c.poll_output() else {
            panic!()
        };
        c.handle_persisted(token, true, at(t0, 0));
        outputs(&mut c);
        // The same nonce-count again, in a new transaction: a replay.
        c.handle_inbound(register(3, "c", 600, Some(&auth)), at(t0, 1));
        let out = sent(&outputs(&mut c));
        assert!(out[0].starts_with("SIP/2.0 403"), "{out:?}");
    }
}
