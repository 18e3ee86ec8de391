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
use crate::presence_service::{self, ApiError, PresenceService, Reply};
use crate::routing::{Routing, RoutingConfig, RoutingStats};
use crate::watchers::{Watchers, WatchersConfig};
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use switchboard_sip::auth::{
    Algorithm, Authenticator, DigestConfig, FailureOutcome, Role, Throttle, Verdict,
};
use switchboard_sip::entropy::Entropy;
use switchboard_sip::message::{self, check_request, Capabilities};
use switchboard_sip::msg::headers::Header;
use switchboard_sip::msg::prelude::*;
use switchboard_sip::msg::{Method, Request, Response, SipMessage};
use switchboard_sip::peer::Peer;
use switchboard_sip::registrar::{Binding, Change, Registrar, RegistrarConfig};
use switchboard_sip::subscription::Notifier;
use switchboard_sip::transaction::{Action, ServerOutcome, TimerConfig, TransactionLayer, TxId};
use switchboard_sip::transport::{Inbound, ListenAddr};
use switchboard_store::tables::{binding_key, BINDINGS};
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
    /// The answer to presence command `id` (see [`Core::handle_command`]).
    Reply {
        id: u64,
        reply: Reply,
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
    pub auth_failures: u64,
    pub blocked: u64,
    pub store_failures: u64,
}

/// An answer waiting for its writes to be durable.
enum Pending {
    /// A REGISTER's 200.
    Register {
        tx: TxId,
        response: Response,
        aor: String,
        previous: Vec<Binding>,
    },
    /// The answer to a presence change asked over SIP (PUBLISH, a feature code): `ok` once
    /// stored, `failed` (and the change undone) if it could not be.
    Sip {
        tx: TxId,
        ok: Response,
        failed: Response,
        before: presence_service::Undo,
        person: String,
    },
    /// A SUBSCRIBE's 200 (then its NOTIFY), once the subscription is stored.
    Subscribe {
        tx: TxId,
        id: switchboard_sip::subscription::SubId,
        ok: Box<Response>,
    },
    /// A presence change's answer.
    Presence {
        id: u64,
        answer: serde_json::Value,
        before: presence_service::Undo,
        person: Option<String>,
    },
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
    pub(crate) registrar: Registrar,
    pub(crate) auth: Authenticator,
    pub(crate) throttle: Throttle,
    pending: HashMap<u64, Pending>,
    pub(crate) presence: PresenceService,
    next_token: u64,
    pub(crate) out: VecDeque<Output>,
    pub(crate) stats: CoreStats,
    /// Addresses the listeners are bound to (accepted as our own domain).
    local_addrs: Vec<SocketAddr>,
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
        let local_addrs = listeners.iter().map(|l| l.addr).collect();
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
            registrar: Registrar::new(config.registrar),
            auth,
            throttle,
            config,
            directory,
            pending: HashMap::new(),
            next_token: 1,
            out: VecDeque::new(),
            stats: CoreStats::default(),
            local_addrs,
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
            let token = self.token();
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
            Err(e) => self.out.push_back(Output::Reply { id, reply: Err(e) }),
            Ok(Ok(answer)) => self.out.push_back(Output::Reply {
                id,
                reply: Ok(answer),
            }),
            Ok(Err(p)) => {
                let token = self.token();
                if let Some(who) = &person {
                    *self.presence_writes.entry(who.clone()).or_default() += 1;
                }
                self.pending.insert(
                    token,
                    Pending::Presence {
                        id,
                        answer: p.answer,
                        before: p.before,
                        person,
                    },
                );
                self.out.push_back(Output::Persist {
                    token,
                    writes: p.writes,
                });
            }
        }
    }

    pub fn registrar(&self) -> &Registrar {
        &self.registrar
    }

    pub fn stats(&self) -> &CoreStats {
        &self.stats
    }

    /// Requests whose answer waits for the store.
    pub fn pending(&self) -> usize {
        self.pending.len()
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
            let writes = lapsed.iter().map(change_to_write).collect();
            let token = self.token();
            self.out.push_back(Output::Persist { token, writes });
        }
        self.throttle.expire(now.mono);
        let ended = self.presence.expire(now.unix as i64);
        self.persist_unacknowledged(ended);
        self.after_event(now);
    }

    fn token(&mut self) -> u64 {
        let t = self.next_token;
        self.next_token += 1;
        t
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
        let token = self.token();
        self.pending.insert(
            token,
            Pending::Subscribe {
                tx,
                id,
                ok: Box::new(ok),
            },
        );
        self.out.push_back(Output::Persist { token, writes });
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
        let token = self.token();
        let (person, before) = change;
        *self.presence_writes.entry(person.clone()).or_default() += 1;
        self.pending.insert(
            token,
            Pending::Sip {
                tx,
                ok,
                failed,
                before,
                person,
            },
        );
        self.out.push_back(Output::Persist { token, writes });
    }

    fn persisted(&mut self, token: u64, ok: bool, now: Now) {
        if !ok {
            self.stats.store_failures += 1;
        }
        let (tx, response, aor, previous) = match self.pending.remove(&token) {
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
                    Err(ApiError::new(
                        503,
                        None,
                        "the change could not be stored; try again",
                    ))
                };
                self.out.push_back(Output::Reply { id, reply });
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
            self.hold_flow(tx, &aor, now);
            self.respond(tx, response, now);
        } else {
            self.registrar.rollback(&aor, previous);
            let mut resp = response;
            resp.status_code = 500.into();
            resp.headers.retain(|h| !matches!(h, Header::Contact(_)));
            resp.headers
                .push(message::warning("bindings could not be stored"));
            resp.headers.push(Header::RetryAfter("5".into()));
            self.respond(tx, resp, now);
        }
    }

    /// A REGISTER over a stream connection was stored: the connection is the binding's
    /// flow, kept open until the binding lapses (the idle timeout must not close it).
    fn hold_flow(&mut self, tx: TxId, aor: &str, now: Now) {
        let Some(peer) = self.transactions.peer(tx) else {
            return;
        };
        let Some(conn) = peer.conn.filter(|_| peer.transport.is_stream()) else {
            return;
        };
        if let Some(expires_at) = self.registrar.flow_expiry(aor, conn) {
            let until = now.mono + Duration::from_secs(expires_at.saturating_sub(now.unix) + 1);
            self.out.push_back(Output::Hold { peer, until });
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
        match outcome {
            ServerOutcome::New(tx, req) => self.dispatch(tx, req, peer, local, now),
            ServerOutcome::Cancel {
                cancel_tx,
                invite_tx,
                request,
            } => self.route_cancel(cancel_tx, invite_tx, request, now),
            ServerOutcome::Ack(req) => {
                if Core::is_in_dialog(&req) {
                    self.route_in_dialog(None, req, now);
                } else {
                    self.stats.dropped += 1;
                }
            }
            _ => self.flush_transactions(),
        }
    }

    fn dispatch(&mut self, tx: TxId, req: Request, peer: Peer, local: ListenAddr, now: Now) {
        if self.draining {
            let mut resp = message::response(&req, 503, Some(&self.tag()), &self.config.server);
            resp.headers.push(Header::RetryAfter("5".into()));
            return self.respond(tx, resp, now);
        }
        if Core::is_in_dialog(&req) {
            if req.method == Method::Subscribe && self.notifier.find(&req).is_some() {
                return self.handle_subscribe(tx, req, peer, local, now);
            }
            return self.route_in_dialog(Some(tx), req, now);
        }
        match req.method {
            Method::Invite => self.route_invite(tx, req, peer, local, now),
            Method::Options => {
                let mut resp = message::response(&req, 200, Some(&self.tag()), &self.config.server);
                let allow = CAPABILITIES.allow();
                resp.headers.push(Header::Allow(allow.into()));
                resp.headers.push(Header::Accept("application/sdp".into()));
                self.respond(tx, resp, now)
            }
            Method::Register => self.register(tx, req, peer, now),
            // Methods that only exist inside a dialog (§15, RFC 3311/6086/3262/3515/6665).
            Method::Bye | Method::Update | Method::Info | Method::PRack | Method::Notify => {
                let resp = message::response(&req, 481, Some(&self.tag()), &self.config.server);
                self.respond(tx, resp, now)
            }
            Method::Subscribe => self.handle_subscribe(tx, req, peer, local, now),
            Method::Publish => self.handle_publish(tx, req, peer, now),
            // Out-of-dialog REFER and MESSAGE are not served yet.
            Method::Refer | Method::Message => {
                let mut resp = message::response(&req, 501, Some(&self.tag()), &self.config.server);
                resp.headers
                    .push(Header::Allow(CAPABILITIES.allow().into()));
                self.respond(tx, resp, now)
            }
            _ => {
                let mut resp = message::response(&req, 405, Some(&self.tag()), &self.config.server);
                let allow = CAPABILITIES.allow();
                resp.headers.push(Header::Allow(allow.into()));
                self.respond(tx, resp, now)
            }
        }
    }

    pub(crate) fn is_local_host(&self, host: &str) -> bool {
        let h = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        if self.config.domains.contains(&h) {
            return true;
        }
        match h.parse::<std::net::IpAddr>() {
            Ok(ip) => self
                .local_addrs
                .iter()
                .any(|a| a.ip() == ip || (a.ip().is_unspecified() && a.is_ipv4() == ip.is_ipv4())),
            Err(_) => false,
        }
    }

    fn register(&mut self, tx: TxId, req: Request, peer: Peer, now: Now) {
        let reply = |core: &mut Core, code: u16, extra: Vec<Header>| {
            let mut resp = message::response(&req, code, Some(&core.tag()), &core.config.server);
            resp.headers.extend(extra);
            core.respond(tx, resp, now);
        };
        if self.throttle.is_blocked(peer.addr.ip(), now.mono) {
            self.stats.blocked += 1;
            return reply(
                self,
                403,
                vec![message::warning("too many failed attempts; try later")],
            );
        }
        // §10.3 step 1: the registrar is responsible for the Request-URI's domain.
        let host = req.uri.host_with_port.host.to_string();
        if !self.is_local_host(&host) {
            return reply(self, 404, vec![message::warning("domain not served here")]);
        }
        // The AoR from To (§10.3 step 5).
        let to_user = req
            .to_header()
            .ok()
            .and_then(|t| t.typed().ok())
            .and_then(|t| t.uri.user().map(str::to_string));
        let to_host = req
            .to_header()
            .ok()
            .and_then(|t| t.typed().ok())
            .map(|t| t.uri.host_with_port.host.to_string())
            .unwrap_or_default();
        let directory = self.directory.clone();
        let aor = match (&to_user, self.is_local_host(&to_host)) {
            (Some(u), true) => directory.user_for(u),
            _ => None,
        };
        // §10.3 step 3: authenticate (the same challenge for every user name, known or not).
        if self.config.auth_required {
            let verdict =
                self.auth
                    .verify(&req, Role::Server, |u| directory.credential(u), now.mono);
            match verdict {
                Verdict::Authenticated { username } => {
                    self.throttle.record_success(peer.addr.ip());
                    // §10.3 step 4: may this user change this AoR's bindings?
                    let own = directory.user_of_username(&username);
                    if own.is_none() || own != aor {
                        tracing::info!(from = %peer, username, "REGISTER for another user's address refused");
                        return reply(
                            self,
                            403,
                            vec![message::warning("not allowed to register this address")],
                        );
                    }
                }
                Verdict::Challenge { stale } => {
                    let headers = self.auth.challenge(stale, Role::Server, now.mono);
                    return reply(self, 401, headers);
                }
                Verdict::Failed { username, why } => {
                    self.stats.auth_failures += 1;
                    match self.throttle.record_failure(peer.addr.ip(), now.mono) {
                        FailureOutcome::Blocked(_) => tracing::warn!(
                            source = %peer.addr.ip(),
                            block_secs = self.config.block.as_secs(),
                            "source blocked after repeated authentication failures"
                        ),
                        FailureOutcome::Counted(n) => {
                            tracing::info!(from = %peer, username, why, failures = n, "authentication failed")
                        }
                    }
                    return reply(self, 403, vec![message::warning("authentication failed")]);
                }
                Verdict::Malformed(why) => {
                    return reply(self, 400, vec![message::warning(why)]);
                }
            }
        }
        let Some(aor) = aor else {
            return reply(self, 404, vec![message::warning("no such user")]);
        };
        let outcome = self.registrar.register(&aor, &req, peer, now.unix);
        let mut resp =
            message::response(&req, outcome.code, Some(&self.tag()), &self.config.server);
        resp.headers.extend(outcome.headers);
        if outcome.code != 200 || outcome.changes.is_empty() {
            return self.respond(tx, resp, now);
        }
        for c in &outcome.changes {
            match c {
                Change::Upsert(b) => {
                    tracing::info!(aor = %b.aor, contact = %b.contact, source = %b.source, expires_in = b.expires_at.saturating_sub(now.unix), "binding stored")
                }
                Change::Remove { aor, key } => tracing::info!(aor, key, "binding removed"),
            }
        }
        let writes = outcome.changes.iter().map(change_to_write).collect();
        let token = self.token();
        self.pending.insert(
            token,
            Pending::Register {
                tx,
                response: resp,
                aor,
                previous: outcome.previous,
            },
        );
        self.out.push_back(Output::Persist { token, writes });
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

    /// Hands transaction timeouts, transport errors and ends to call routing.
    fn handle_tx_events(&mut self, now: Now) {
        // Handling an event may cause more (a CANCEL sent, a response relayed); each
        // round takes what is queued; the bound guards against a mistake.
        for _ in 0..64 {
            if self.tx_events.is_empty() {
                return;
            }
            let events: Vec<Action> = self.tx_events.drain(..).collect();
            for e in events {
                self.route_tx_event(e, now);
                self.flush_transactions();
            }
        }
        self.tx_events.clear();
    }
}

fn change_to_write(c: &Change) -> Write {
    match c {
        Change::Upsert(b) => Write::put(
            BINDINGS,
            binding_key(&b.aor, &b.key()),
            serde_json::to_vec(b).unwrap_or_default(),
        ),
        Change::Remove { aor, key } => Write::delete(BINDINGS, binding_key(aor, key)),
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
                assert_eq!(writes[0].table, BINDINGS);
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
            [Output::Reply {
                id: 1,
                reply: Err(e),
            }] => assert_eq!(e.status, 503),
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
            [Output::Reply {
                id: 2,
                reply: Ok(v),
            }] => assert_eq!(v["availability"], "away"),
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
