//! The daemon's SIP core: one state machine made of sub-machines.
//!
//! Sans-I/O like the pieces it is made of. Everything that happens to it is one [`Input`],
//! handed in with the time by [`Core::handle`]; [`Core::poll_output`] hands back what to
//! send, what to make durable, what to answer; [`Core::poll_timeout`] says when to hand in
//! [`Input::Timeout`]. The async shell in `server.rs` does the sockets, the store and the
//! clock, and tests drive the core directly with a virtual clock.
//!
//! `Core` owns its sub-machines, each with its own tables and no reference back to the
//! core: [`registrations`] (REGISTER), [`registrant`] (trunks registering with their
//! carriers), [`trunk_sources`] (the addresses of trunks' sources given by host name),
//! [`calls`] (initial INVITEs, their branches and
//! CANCEL), [`dialogs`] (answered calls until their BYE), [`relays`] (requests inside
//! dialogs), [`watchers`] (SUBSCRIBE, NOTIFY), [`own_presence`] (PUBLISH, feature codes), the
//! presence service,
//! the [`auth_gate`] and the [`ledger`]. They are handed a [`context::Ctx`] of what they share,
//! borrowed from the core's other fields; what one asks of another (a feature code's
//! presence change, an answered call's dialog) goes through the core. [`Core::request_route`]
//! says, in one place, which sub-machine handles which request; [`wire::Owner`] says, in one
//! lookup, which owns a transaction.
//!
//! The core is deterministic: it reads no clock, no global and no shared state (the policy
//! comes in as [`Input::PolicyChanged`]), and its random numbers come from the seed in its
//! [`CoreConfig`]. The same seed and the same inputs give the same outputs, byte for byte.

use crate::directory::Snapshot;
use crate::presence_service::{self, ErrorKind, PresenceError, PresenceService, PresenceView};
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};
use switchboard_presence::model::{Availability, Interface};
use switchboard_sip::auth::{Authenticator, DigestConfig};
use switchboard_sip::entropy::Entropy;
use switchboard_sip::locate::{Locator, LocatorConfig};
use switchboard_sip::message::{self, check_request, Capabilities};
use switchboard_sip::msg::headers::Header;
use switchboard_sip::msg::{Method, Request, SipMessage};
use switchboard_sip::peer::Peer;
use switchboard_sip::registrar::{Binding, Change, Registrar};
use switchboard_sip::subscription::NotifierStats;
use switchboard_sip::throttle::{Throttle, ThrottleConfig};
use switchboard_sip::transaction::{
    Action, ClientOutcome, ServerOutcome, Timer, TransactionLayer, TxId,
};
use switchboard_sip::transport::{Inbound, Interfaces, Listener};
use switchboard_sip::GrowingMap;

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

pub mod auth_gate;
pub mod board;
pub mod calls;
pub mod carrier_auth;
pub mod config;
pub(crate) mod confirm;
pub(crate) mod confirm_leg;
pub mod context;
pub mod dialogs;
pub mod ledger;
pub mod locating;
pub mod mailbox_menu;
pub mod mailboxes;
pub mod media;
mod menu;
pub(crate) mod our_stream;
pub mod own_presence;
pub mod records;
pub mod registrant;
pub mod registrations;
pub mod relays;
mod shared;
#[cfg(test)]
mod shared_tests;
pub mod targets;
pub mod trunk_sources;
pub mod voicemail;
pub mod watchers;
pub mod wire;

pub use auth_gate::GateStats;
pub use calls::{RoutingConfig, RoutingStats};
pub use config::CoreConfig;
pub use media::{Library, MediaConfig, MediaStats};
pub use own_presence::FeatureCodes;
pub use registrant::{RegState, TrunkStatus};
pub use trunk_sources::SourceNameStatus;
pub use voicemail::{VoicemailConfig, VoicemailStats};
pub use watchers::WatchersConfig;
pub use wire::{Now, Output, MAX_READ};

use auth_gate::AuthGate;
use board::BoardFeed;
use calls::Calls;
use carrier_auth::CarrierAuth;
use context::ctx;
use dialogs::Dialogs;
use ledger::{Ledger, Pending};
use locating::{Locating, Waiter};
use own_presence::{OwnPresence, SipChange};
use records::{LiveCall, Records};
use registrant::Registrant;
use registrations::Registered;
use relays::Relays;
use trunk_sources::TrunkSources;
use watchers::Watchers;
use wire::{in_dialog, Local, LocalNames, Owner, Wire};

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
    /// The daemon is stopping: new requests get 503, what is under way finishes, the
    /// trunks' registrations are removed at their carriers (see [`Core::unregistering`]).
    Drain,
    /// The answer to [`Output::Lookup`] `query`.
    DnsAnswer {
        query: switchboard_sip::locate::Query,
        answer: switchboard_sip::locate::Answer,
    },
    /// What the media engine reports of a session opened by [`Output::Media`].
    Media(switchboard_media::session::Event),
    /// The answer to [`Output::Read`] `token`: the row's bytes, or None (no such row, or
    /// the store could not read it).
    Read { token: u64, value: Option<Vec<u8>> },
    /// What other nodes sharing the store changed (see [`shared`]).
    Shared(switchboard_store::FeedEvent),
}

/// Counters of the core.
#[derive(Debug, Default, Clone)]
pub struct CoreStats {
    pub requests: u64,
    /// Requests by method (`crate::metrics::method_index`), retransmissions included.
    pub by_method: [u64; METHODS.len() + 1],
    pub responses: u64,
    /// Responses received by class (`1xx` first).
    pub by_class: [u64; 6],
    pub rejected: u64,
    pub dropped: u64,
    pub store_failures: u64,
}

/// A presence change that waits for an earlier change of the same person to be stored:
/// changes of one person are stored one after another, so that undoing one that could not
/// be stored never undoes (in memory) a later one that was.
pub(crate) enum Queued {
    Api(u64, Box<presence_service::Request>),
    Sip(Box<SipChange>),
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
    config: CoreConfig,
    /// The policy's directory as last handed in.
    directory: Snapshot,
    /// Transactions and their owners, outputs, random numbers, our names.
    wire: Wire,
    registrar: Registrar,
    /// The digest gate: nonces, failure counts and blocks.
    gate: AuthGate,
    /// Our answers to carriers' challenges: nonce counts.
    carrier: CarrierAuth,
    /// Answers waiting for the store.
    ledger: Ledger,
    presence: PresenceService,
    calls: Calls,
    dialogs: Dialogs,
    /// Answered calls until they end, for their records.
    records: Records,
    relays: Relays,
    watchers: Watchers,
    /// Voicemail mailboxes: every message's row (audio stays in the store).
    mailboxes: mailboxes::Mailboxes,
    /// Mailboxes with a change from the API on its way to the store, and the changes
    /// waiting for it, in order (one mailbox's changes are stored one after another, so
    /// that undoing one the store refused never undoes a later one it took).
    mailbox_writes: HashMap<String, VecDeque<(u64, presence_service::Request)>>,
    own_presence: OwnPresence,
    /// Trunks' registrations with their carriers.
    registrant: Registrant,
    /// The addresses of trunks' sources given by host name, kept fresh.
    sources: TrunkSources,
    /// People with presence changes on their way to the store, and how many.
    presence_writes: HashMap<String, usize>,
    /// What this node last told the other nodes of each person's calls through it
    /// (ringing or busy; free people are not listed). Empty alone.
    published_calls: HashMap<String, switchboard_presence::model::CallStatus>,
    /// Changes waiting for those, per person, in order.
    queued_changes: HashMap<String, VecDeque<Queued>>,
    /// People whose watchers were held back while their change was being stored.
    renotify: Vec<String>,
    /// Host names to targets (RFC 3263): the locator and who waits for its resolutions.
    locating: Locating,
    /// Local media endpoints: the messages played to callers.
    media: media::Media,
    stats: CoreStats,
    draining: bool,
    /// Who changed for the live presence board (off while no board is open).
    board: BoardFeed,
}

impl Core {
    pub fn new(
        config: CoreConfig,
        directory: Snapshot,
        listeners: Vec<Listener>,
        now: Now,
    ) -> Self {
        let ipv4 = listeners.iter().any(|l| l.addr.is_ipv4());
        let ipv6 = listeners.iter().any(|l| l.addr.is_ipv6());
        let local = LocalNames::new(config.domains.clone(), listeners, None);
        let mut entropy = Entropy::from_seed(config.seed);
        let mut auth = Authenticator::new(
            DigestConfig {
                realm: config.realm.clone(),
                nonce_lifetime: config.nonce_lifetime,
                max_tracked_nonces: 100_000,
                algorithms: config.auth_algorithms.clone(),
            },
            now.mono,
            entropy.fork(),
        );
        let mut registrar = Registrar::new(config.registrar);
        if let Some(name) = &config.node {
            registrar.set_node(name.clone(), config.node_hop.clone());
        }
        if let Some(key) = config.nonce_secret {
            auth.share(key, now.unix);
        }
        let throttle = Throttle::new(ThrottleConfig {
            max_failures: config.max_failures,
            window: config.failure_window,
            block: config.block,
        });
        let routing = config.routing.clone();
        // The families the daemon has sockets for; its own generator, forked from the
        // core's, so that a recorded run replays (SRV weights are drawn from it).
        let locator = Locator::new(
            LocatorConfig {
                ipv4,
                ipv6,
                ..LocatorConfig::default()
            },
            entropy.fork(),
        );
        let mut core = Core {
            locating: Locating::new(locator),
            media: media::Media::new(routing.media.clone()),
            presence: PresenceService::new(directory.policy()),
            calls: Calls::new(routing.clone()),
            dialogs: Dialogs::new(routing.dialog_probe_secs, routing.max_call_secs),
            records: Records::default(),
            relays: Relays::new(routing.route_secret),
            watchers: Watchers::new(&config.watchers, entropy.fork()),
            mailboxes: mailboxes::Mailboxes::default(),
            mailbox_writes: HashMap::new(),
            own_presence: OwnPresence::new(&config.watchers),
            wire: Wire {
                transactions: TransactionLayer::new(config.timers),
                owners: GrowingMap::new(),
                out: VecDeque::new(),
                events: VecDeque::new(),
                entropy,
                server: config.server.clone(),
                local,
                sent: [0; 6],
            },
            presence_writes: HashMap::new(),
            published_calls: HashMap::new(),
            queued_changes: HashMap::new(),
            renotify: Vec::new(),
            registrar,
            gate: AuthGate::new(
                auth,
                throttle,
                config.trusted.clone(),
                config.node.is_some(),
            ),
            carrier: CarrierAuth::default(),
            config,
            directory,
            ledger: Ledger::new(),
            stats: CoreStats::default(),
            draining: false,
            board: BoardFeed::default(),
            registrant: Registrant::new(),
            sources: TrunkSources::new(),
        };
        // Every registering trunk is due at once: its REGISTER goes with the first
        // Input::Timeout, which poll_timeout asks for now. So is the lookup of every
        // trunk's source name.
        core.registrant.sync(&mut ctx!(core, now));
        let policy = core.directory.policy();
        core.sources.sync(policy, &mut core.locating, now.mono);
        core
    }

    /// What the system says of its own addresses, for listeners bound to every interface
    /// (the daemon: `switchboard_net::interfaces::SystemInterfaces`). Without it, only
    /// loopback and the listeners' own addresses count as this machine's.
    pub fn set_interfaces(&mut self, interfaces: Box<dyn Interfaces>) {
        self.wire.local.interfaces = interfaces;
    }

    // ---- restoring from the store (in `switchboard_store::tables::RESTORE_ORDER`) -------

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
        let mut cx = ctx!(self, now);
        let writes = cx
            .presence
            .restore(rows, cx.directory.policy(), now.unix as i64);
        cx.persist_unacknowledged(writes);
    }

    /// Loads the other nodes' word on who is in a call through them (a shared store only;
    /// this node's own rows are an earlier run's, which it clears).
    pub fn restore_call_status(&mut self, rows: Vec<(String, Vec<u8>)>, now: Now) -> usize {
        let n = rows.len();
        for (key, value) in rows {
            let w =
                switchboard_store::Write::put(switchboard_store::tables::CALL_STATUS, key, value);
            self.apply_shared(w, now);
        }
        n
    }

    /// Loads group memory (who answered last) read back from the durable store.
    pub fn restore_memory(&mut self, rows: Vec<(String, Vec<u8>)>) -> usize {
        self.calls.restore_memory(rows)
    }

    /// Loads the voicemail messages' rows read back from the durable store (before the
    /// subscriptions: message-waiting lamps show these counts); returns how many.
    pub fn restore_voicemail(&mut self, rows: Vec<(String, Vec<u8>)>) -> usize {
        let n = self.mailboxes.restore(rows);
        // Nothing is told yet: restored subscriptions get their counts when restored.
        self.mailboxes.take_changed();
        n
    }

    /// Takes back the subscriptions kept across a restart, and tells each what it shows
    /// now (lamps may have changed meanwhile).
    pub fn restore_subscriptions(&mut self, rows: Vec<(String, Vec<u8>)>, now: Now) -> usize {
        self.watchers.restore(&mut ctx!(self, now), rows)
    }

    // ---- what the shell and the API read -------------------------------------------------

    pub fn presence(&self) -> &PresenceService {
        &self.presence
    }

    pub fn registrar(&self) -> &Registrar {
        &self.registrar
    }

    /// The calls being set up.
    pub fn calls(&self) -> &Calls {
        &self.calls
    }

    /// Local media sessions open (or closing) and what they counted.
    pub fn media(&self) -> (usize, MediaStats) {
        (self.media.len(), self.media.stats())
    }

    /// What `mailbox`'s lamp shows (`user:ID`, `team:ID`): its new and old messages.
    pub fn mailbox_counts(&self, mailbox: &str) -> mailboxes::Counts {
        self.mailboxes.counts(mailbox)
    }

    /// Answered calls being tracked until their BYE.
    pub fn answered_calls(&self) -> usize {
        self.dialogs.len()
    }

    /// Calls through a trunk with an account whose CSeq numbers toward the carrier are
    /// followed (answered ones, and ones not answered yet).
    pub fn carrier_legs(&self) -> usize {
        self.dialogs.carrier_legs()
    }

    /// Counters of calls, relayed requests and answered calls.
    pub fn routing_counters(&self) -> RoutingStats {
        RoutingStats {
            relayed: self.relays.relayed,
            relay_refused: self.relays.refused,
            probes: self.dialogs.probes,
            lost: self.dialogs.lost,
            carrier_answers: self.carrier.answered,
            carrier_refusals: self.carrier.refused,
            ..self.calls.stats().clone()
        }
    }

    pub fn stats(&self) -> &CoreStats {
        &self.stats
    }

    /// The digest gate's counters: failed credentials, requests from blocked sources.
    pub fn gate_stats(&self) -> GateStats {
        self.gate.stats
    }

    /// The subscriptions' counters: SUBSCRIBEs refused at the server's limit (503) or at
    /// their subscriber's (403), and kept ones not taken back after a restart.
    pub fn subscription_stats(&self) -> NotifierStats {
        self.watchers.notifier.stats()
    }

    /// A copy of what the core and its sub-machines count, for `/metrics`.
    pub fn metrics(&self) -> crate::metrics::CoreMetrics {
        let gate = self.gate.stats;
        let (blocked_sources, blocked_users) = self.gate.blocks();
        let mut presence = [0; Availability::ALL.len()];
        for (_, p) in self.presence.model().people() {
            if let Some(i) = Availability::ALL.iter().position(|a| *a == p.availability) {
                presence[i] += 1;
            }
        }
        let calls = self.calls.stats();
        crate::metrics::CoreMetrics {
            requests: self.stats.by_method,
            responses_received: self.stats.by_class,
            responses_sent: self.wire.sent,
            rejected: self.stats.rejected,
            dropped: self.stats.dropped,
            transactions: self.wire.transactions.len(),
            aors: self.registrar.aors(),
            contacts: self.registrar.len(),
            auth_challenges: gate.challenges,
            auth_failures: gate.failures,
            auth_blocked: gate.blocked,
            blocked_sources,
            blocked_users,
            calls_in_setup: self.calls.len(),
            calls_answered_active: self.dialogs.len(),
            calls_started: calls.calls,
            calls_refused: calls.refused,
            calls_ended: self.calls.ended,
            call_setup: self.calls.setup.clone(),
            presence,
            subscriptions: self.watchers.notifier.len(),
            notifies_sent: self.watchers.notifies_sent(),
            unsolicited_notifies: self.watchers.unsolicited_stats(),
            store_failures: self.stats.store_failures,
            media_sessions: self.media.len(),
            messages_played: self.media.stats().played,
            messages_skipped: self.media.stats().skipped,
            media_sessions_opened: self.media.stats().sessions,
            records_written: self.records.written,
            mail_notices: self.records.mail_notices,
            voicemail_mail_notices: self.mailboxes.mail_notices(),
            voicemail: self.calls.voicemail,
        }
    }

    /// Requests whose answer waits for the store.
    pub fn pending(&self) -> usize {
        self.ledger.len()
    }

    /// [`Input::Drain`]: stop taking new requests (they get 503); finish what is under
    /// way; remove the trunks' registrations at their carriers.
    fn drain(&mut self, now: Now) {
        if self.draining {
            return;
        }
        self.draining = true;
        // Calls the daemon answered itself are hung up; messages being played stop,
        // their calls go on to their next steps.
        let cx = &mut ctx!(self, now);
        self.calls.hang_up_all(cx);
        for (call, branch) in cx.media.close_all(&mut cx.wire.out) {
            let how = "stopped: the daemon is stopping".to_string();
            self.calls
                .media_event(cx, call, branch, media::Happened::Ended { how });
        }
        let removing = self.registrant.unregister_all(&mut ctx!(self, now));
        if removing > 0 {
            tracing::info!(trunks = removing, "unregistering trunks");
        }
    }

    /// Unregistrations of trunks still waiting for their carrier's answer (a shutdown
    /// waits for them, bounded).
    pub fn unregistering(&self) -> usize {
        self.registrant.leaving()
    }

    /// Every trunk of the policy with its registration and the addresses of its source
    /// names (a read: nothing changes).
    /// The registered devices (live bindings) of `user`, or of everyone, at `unix` (Unix
    /// seconds): by user, then by first registration.
    pub fn registrations(&self, user: Option<&str>, unix: u64) -> Vec<Binding> {
        let mut list: Vec<Binding> = self
            .registrar
            .live(unix)
            .filter(|b| user.is_none_or(|u| b.aor == u))
            .cloned()
            .collect();
        list.sort_by(|a, b| (&a.aor, a.registered_at).cmp(&(&b.aor, b.registered_at)));
        list
    }

    /// The policy's directory as last handed in.
    pub fn directory(&self) -> &Snapshot {
        &self.directory
    }

    /// Turns the live presence board's feed on (a board is open) or off.
    pub fn board_on(&mut self, on: bool) {
        if on != self.board.is_on() {
            self.board.set_on(on);
        }
    }

    /// The people whose board row may have changed since the last call, each as colleagues
    /// see them now (devices counted at `unix`), or None when they are no longer in the
    /// policy. Empty while the feed is off.
    pub fn board_changes(&mut self, unix: u64) -> Vec<(String, Option<PresenceView>)> {
        let people = self.board.take();
        let policy = self.directory.policy();
        people
            .into_iter()
            .map(|user| {
                let view = policy
                    .user(&user)
                    .and_then(|_| self.presence.view(&user, policy))
                    .map(|mut v| {
                        v.devices = self.registrar.lookup(&v.user, unix).len() as u32;
                        v
                    });
                (user, view)
            })
            .collect()
    }

    /// Everyone as the board shows them, as `GET /v1/presence` does (devices counted at
    /// `unix`).
    pub fn board_people(&self, unix: u64) -> Vec<PresenceView> {
        let policy = self.directory.policy();
        self.presence
            .model()
            .people()
            .filter(|(u, _)| policy.user(u).is_some())
            .filter_map(|(u, _)| self.presence.view(u, policy))
            .map(|mut v| {
                v.devices = self.registrar.lookup(&v.user, unix).len() as u32;
                v
            })
            .collect()
    }

    /// The calls in progress: those being set up (with their plan step and the branches
    /// ringing), then answered ones, oldest first.
    pub fn calls_in_progress(&self) -> Vec<LiveCall> {
        let mut list = self.calls.live();
        let setting_up: std::collections::HashSet<String> =
            list.iter().map(|c| c.call_id.clone()).collect();
        let mut answered: Vec<LiveCall> = self
            .records
            .open()
            .filter(|r| !setting_up.contains(&r.call_id))
            .map(LiveCall::of_record)
            .collect();
        list.append(&mut answered);
        list.sort_by(|a, b| (a.started, &a.call_id).cmp(&(b.started, &b.call_id)));
        list
    }

    /// Complete call records written since the start.
    pub fn records_written(&self) -> u64 {
        self.records.written.iter().sum()
    }

    pub fn trunks(&self) -> Vec<TrunkStatus> {
        let policy = self.directory.policy();
        let mut list = self.registrant.status(policy);
        for status in &mut list {
            if let Some(t) = policy.trunk(&status.trunk) {
                status.source_names = self.sources.status(t);
            }
        }
        list
    }

    // ---- the input, the outputs, the timer -------------------------------------------------

    /// Hands an input to the core (see [`Input`] and the drain contract on [`Core`]).
    pub fn handle(&mut self, input: Input, now: Now) {
        match input {
            Input::Inbound(i) => self.handle_inbound(i, now),
            Input::Persisted { token, ok } => self.persisted(token, ok, now),
            Input::Timeout => self.handle_timeout(now),
            Input::Command { id, req } => self.command(id, req, now),
            Input::PolicyChanged(directory) => self.policy_changed(directory, now),
            Input::Drain => self.drain(now),
            Input::DnsAnswer { query, answer } => {
                self.locating.locator.handle_answer(query, answer, now.mono)
            }
            Input::Media(event) => {
                let cx = &mut ctx!(self, now);
                // The sessions of confirmed forwarding's legs are the calls' own.
                if self.calls.confirm_media(cx, &event) {
                    return self.after_event(now);
                }
                if let Some((call, branch, what)) =
                    cx.media.event(&mut cx.wire.out, event, now.mono)
                {
                    self.calls.media_event(cx, call, branch, what);
                }
            }
            Input::Shared(event) => self.shared(event, now),
            Input::Read { token, value } => {
                let cx = &mut ctx!(self, now);
                if let Some((call, branch, what)) = cx.media.read(&mut cx.wire.out, token, value) {
                    self.calls.media_event(cx, call, branch, what);
                }
            }
        }
        self.after_event(now);
    }

    #[must_use = "every output must be carried out, in order"]
    pub fn poll_output(&mut self) -> Option<Output> {
        self.wire.out.pop_front()
    }

    /// When [`Input::Timeout`] must next be handed in.
    #[must_use = "the core needs Input::Timeout at this time"]
    pub fn poll_timeout(&self, now: Now) -> Option<Instant> {
        let at_unix = |t: u64| now.mono + Duration::from_secs(t.saturating_sub(now.unix));
        let expiry = self.registrar.next_expiry().map(at_unix);
        let profile_end = self.presence.next_end().map(|t| at_unix(t.max(0) as u64));
        let subscription_end = self.watchers.next_expiry().map(at_unix);
        let publication_end = self.own_presence.next_expiry().map(at_unix);
        [
            self.wire.transactions.poll_timeout(),
            self.gate.poll_timeout(),
            expiry,
            profile_end,
            self.calls.poll_timeout(),
            self.media.poll_timeout(),
            self.dialogs.poll_timeout(now),
            subscription_end,
            publication_end,
            self.registrant.poll_timeout(),
            self.sources.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// What every event ends with: transaction events handed to their owners, watchers
    /// told what changed.
    fn after_event(&mut self, now: Now) {
        self.located(now);
        self.handle_tx_events(now);
        let mut changed = self.presence.model_mut().take_changed();
        self.share_calls(&changed);
        changed.append(&mut self.renotify);
        let held = &self.presence_writes;
        self.board.note_people(&changed, held);
        self.watchers
            .notify_changes(&mut ctx!(self, now), changed, held);
        // Mailboxes whose counts changed: their message-waiting lamps are told. The one
        // place the set is taken; whatever else follows such a change is handed it here.
        let mailboxes = self.mailboxes.take_changed();
        if !mailboxes.is_empty() {
            self.watchers
                .mailboxes_changed(&mut ctx!(self, now), &mailboxes);
        }
        self.handle_tx_events(now);
        // Calls whose set-up is over have their records written (or kept until they end).
        for record in std::mem::take(&mut self.calls.settled) {
            self.records.settled(&mut ctx!(self, now), record);
        }
        // Dialogs of calls the daemon answered itself: tracked from their 200, ended
        // (with a BYE of ours) when they are over.
        for end in std::mem::take(&mut self.calls.local_ends) {
            let cx = &mut ctx!(self, now);
            match end {
                calls::LocalEnd::Answered {
                    call_id,
                    invite,
                    response,
                    caller,
                    caller_peer,
                } => {
                    let answer = dialogs::Answer {
                        call_id: &call_id,
                        invite: &invite,
                        response: &response,
                        caller: caller.as_deref(),
                        caller_peer,
                        callee: None,
                        callee_leg: "local",
                        callee_peer: None,
                        carrier: None,
                        local: true,
                    };
                    self.dialogs.track(cx, answer);
                }
                calls::LocalEnd::Over { call_id, bye, how } => {
                    self.dialogs.local_over(cx, &call_id, bye, how)
                }
            }
        }
        // Requests held for DNS in dialogs that ended meanwhile are answered; the calls'
        // records are completed.
        for (call_id, how) in self.dialogs.take_ended() {
            self.calls.dialog_ended(&mut ctx!(self, now), &call_id);
            self.relays.dialog_ended(&mut ctx!(self, now), &call_id);
            self.records.ended(&mut ctx!(self, now), &call_id, how);
        }
        self.handle_tx_events(now);
        // The DNS questions of every resolution this event started, after its other
        // outputs.
        while let Some(query) = self.locating.locator.poll_query() {
            self.wire.out.push_back(Output::Lookup(query));
        }
    }

    /// Finished resolutions, each to the sub-machine waiting for it.
    fn located(&mut self, now: Now) {
        while let Some((waiter, id, outcome)) = self.locating.poll_resolved() {
            match waiter {
                Waiter::Branch { call, branch } => {
                    let cx = &mut ctx!(self, now);
                    self.calls.located(cx, call, branch, id, outcome)
                }
                Waiter::Registration(key) => {
                    let cx = &mut ctx!(self, now);
                    self.registrant.located(cx, key, id, outcome)
                }
                Waiter::SourceName(key) => self.sources.located(key, id, outcome, now.mono),
                Waiter::Relay(key) => {
                    let cx = &mut ctx!(self, now);
                    self.relays.located(cx, &mut self.dialogs, key, outcome)
                }
                Waiter::Dialog(key) => {
                    let cx = &mut ctx!(self, now);
                    self.dialogs.located(cx, key, outcome)
                }
            }
            self.handle_tx_events(now);
        }
    }

    fn handle_timeout(&mut self, now: Now) {
        self.wire.transactions.handle_timeout(now.mono);
        self.wire.flush();
        self.locating.expire(now.mono);
        self.sources.timeout(&mut self.locating, now.mono);
        self.handle_tx_events(now);
        self.calls.timeout(&mut ctx!(self, now));
        // Menus whose wait for a key is over.
        let cx = &mut ctx!(self, now);
        for (call, branch, what) in cx.media.timeout(&mut cx.wire.out, now.mono) {
            self.calls.media_event(cx, call, branch, what);
        }
        self.dialogs.timeout(&mut ctx!(self, now));
        self.watchers.timeout(&mut ctx!(self, now));
        self.own_presence.timeout(&mut ctx!(self, now));
        self.registrant.timeout(&mut ctx!(self, now));
        self.handle_tx_events(now);
        let mut cx = ctx!(self, now);
        let lapsed = cx.registrar.expire(now.unix);
        if !lapsed.is_empty() {
            tracing::info!(count = lapsed.len(), "bindings expired");
            for c in &lapsed {
                let aor = match c {
                    Change::Upsert(b) => &b.aor,
                    Change::Remove { aor, .. } => aor,
                };
                self.board.note_person(aor);
                // Their last device gone: presence watchers may now see them offline.
                if self.config.watchers.offline_without_devices {
                    self.renotify.push(aor.clone());
                }
            }
            cx.persist_unacknowledged(lapsed.iter().map(registrations::change_to_write).collect());
        }
        cx.gate.expire(now.mono);
        let ended = cx.presence.expire(now.unix as i64);
        cx.persist_unacknowledged(ended);
    }

    /// The policy was replaced (a reload): the core reads the new version from now on, and
    /// presence takes in its people and profiles (newcomers are stored, everyone's watchers
    /// see what changed for them).
    fn policy_changed(&mut self, directory: Snapshot, now: Now) {
        self.directory = directory;
        let mut cx = ctx!(self, now);
        let writes = cx
            .presence
            .policy_changed(cx.directory.policy(), now.unix as i64);
        cx.persist_unacknowledged(writes);
        // Trunks that now register, no longer do or changed their account.
        self.registrant.sync(&mut cx);
        self.registrant.timeout(&mut cx);
        // Source names it brings are looked up now; those it drops are forgotten.
        let policy = self.directory.policy();
        self.sources.sync(policy, &mut self.locating, now.mono);
        self.sources.timeout(&mut self.locating, now.mono);
        // Message-waiting subscriptions it no longer allows end; the others see a new
        // mailbox number.
        self.watchers.recheck_mailboxes(&mut ctx!(self, now));
    }

    // ---- messages --------------------------------------------------------------------------

    fn handle_inbound(&mut self, inbound: Inbound, now: Now) {
        match inbound {
            Inbound::Unreachable { peer, why } => {
                // §17.1.4, §17.2.4: what waits on it ends now (a branch answers 503).
                let ended = self
                    .wire
                    .transactions
                    .handle_peer_unreachable(peer, now.mono);
                self.wire.flush();
                if switchboard_sip::log_limit::allow("peer unreachable") {
                    tracing::info!(to = %peer, %why, transactions = ended, "peer unreachable");
                }
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
                        if switchboard_sip::log_limit::allow("bad request answered") {
                            tracing::info!(from = %peer, reason = %error, "bad request answered");
                        }
                        self.wire.send(peer, bytes);
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
                let local = self.wire.local_at(peer.transport, local, peer.addr.ip());
                self.handle_request(req, peer, local, now)
            }
            Inbound::Message {
                msg: SipMessage::Response(resp),
                peer,
                ..
            } => {
                self.stats.responses += 1;
                if let Some(i) = crate::metrics::class_index(resp.status_code.code()) {
                    self.stats.by_class[i] += 1;
                }
                let outcome = self.wire.transactions.handle_response(resp, peer, now.mono);
                self.wire.flush();
                self.route_response(outcome, now);
            }
        }
    }

    fn handle_request(&mut self, mut req: Request, peer: Peer, local: Local, now: Now) {
        self.stats.requests += 1;
        self.stats.by_method[crate::metrics::method_index(&req.method)] += 1;
        message::stamp_via(&mut req, peer.addr);
        // Requests this server forwards rather than answers: INVITE, ACK, CANCEL, and
        // anything inside a dialog.
        let proxied =
            matches!(req.method, Method::Invite | Method::Ack | Method::Cancel) || in_dialog(&req);
        let caps = if proxied {
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
            if switchboard_sip::log_limit::allow("request refused") {
                tracing::info!(from = %peer, method = %req.method, code = refusal.code, reason = %refusal.reason, "request refused");
            }
            let resp = refusal.response(&req, &self.config.server);
            // Statelessly, through a transaction made for the purpose (it finds where the
            // response goes) and forgotten at once.
            match self.wire.transactions.handle_request(req, peer, now.mono) {
                ServerOutcome::New(tx, _) => self.wire.respond_stateless(tx, resp),
                _ => self.wire.flush(),
            }
            return;
        }
        let outcome = self.wire.transactions.handle_request(req, peer, now.mono);
        self.request_route(outcome, peer, local, now);
    }

    /// The request route: which sub-machine handles each request that passed the checks,
    /// by method and condition — the whole routing logic in one place.
    ///
    /// - the transaction layer absorbs retransmissions (and answers them from the
    ///   transaction);
    /// - CANCEL ends its INVITE's call (`calls`: every branch cancelled, 487), or goes on
    ///   after a relayed re-INVITE (`relays`), or ends a re-INVITE held while its next hop
    ///   is looked up (`relays`: 487); otherwise 481;
    /// - ACK for a 2xx goes along its dialog (`relays`); for a non-2xx final response its
    ///   transaction absorbs it;
    /// - while draining, a new request gets 503;
    /// - inside a dialog (a To tag): a SUBSCRIBE refreshing or ending one of our
    ///   subscriptions goes to `watchers`; anything else (BYE, re-INVITE, UPDATE, INFO,
    ///   PRACK, REFER, NOTIFY, MESSAGE…) is relayed along the dialog's route (`relays`);
    /// - INVITE: admitted by `calls` (loops, routes, domain; the caller: a trunk by
    ///   source or credentials, a user by digest, 407); a user dialling a feature code
    ///   changes their presence (`own_presence`, then made and stored here); any other
    ///   call is planned and forked (`calls`);
    /// - REGISTER: `registrations` (digest, 401), stored before its 200;
    /// - OPTIONS: answered here, 200 with what we allow;
    /// - SUBSCRIBE: `watchers` (digest, 401), stored before its 200;
    /// - PUBLISH: `own_presence` (digest, 401), the change made and stored here;
    /// - BYE, UPDATE, INFO, PRACK, NOTIFY outside a dialog: 481;
    /// - REFER and MESSAGE outside a dialog: 501; anything else: 405.
    fn request_route(&mut self, outcome: ServerOutcome, peer: Peer, local: Local, now: Now) {
        let cx = &mut ctx!(self, now);
        let (tx, req) = match outcome {
            ServerOutcome::New(tx, req) => (tx, req),
            ServerOutcome::Cancel {
                cancel_tx,
                invite_tx,
                request,
            } => {
                let owner = invite_tx.and_then(|t| cx.wire.owners.get(&t).copied());
                let relayed = invite_tx.and_then(|t| self.relays.client_of(t));
                let held = invite_tx.filter(|t| self.relays.is_held(*t));
                return match (owner, relayed, held) {
                    (Some(Owner::Call(call)), _, _) => {
                        self.calls.cancel(cx, cancel_tx, call, &request)
                    }
                    (_, Some(client), _) => self.relays.cancel(cx, cancel_tx, client, &request),
                    (_, _, Some(server)) => {
                        self.relays.cancel_held(cx, cancel_tx, server, &request)
                    }
                    // §9.2: nothing to cancel.
                    _ => cx
                        .wire
                        .reply_stateless(cancel_tx, &request, 481, Vec::new()),
                };
            }
            ServerOutcome::Ack(req) if in_dialog(&req) => {
                if let Some((call, branch)) = self.calls.confirm_dialog(&req) {
                    return self.calls.confirm_ack(cx, call, branch, &req);
                }
                if let Some(call) = self.calls.local_dialog(&req) {
                    return self.calls.local_ack(cx, call, &req);
                }
                return self.relays.route(cx, &mut self.dialogs, None, req);
            }
            ServerOutcome::Ack(_) => {
                self.stats.dropped += 1;
                return;
            }
            _ => return cx.wire.flush(),
        };
        if self.draining {
            let retry = vec![Header::RetryAfter("5".into())];
            return cx.wire.reply_stateless(tx, &req, 503, retry);
        }
        if in_dialog(&req) {
            if req.method == Method::Subscribe && self.watchers.notifier.find(&req).is_some() {
                return self.watchers.subscribe(cx, tx, req, peer, local);
            }
            if let Some((call, branch)) = self.calls.confirm_dialog(&req) {
                return self.calls.confirm_request(cx, call, branch, tx, &req);
            }
            if let Some(call) = self.calls.local_dialog(&req) {
                if let Some(digit) = self.calls.in_local_dialog(cx, call, tx, &req) {
                    if let Some((call, branch, what)) =
                        cx.media.event(&mut cx.wire.out, digit, cx.now.mono)
                    {
                        self.calls.media_event(cx, call, branch, what);
                    }
                }
                return;
            }
            return self.relays.route(cx, &mut self.dialogs, Some(tx), req);
        }
        // A call another node sends through this one to a phone whose flow it holds.
        if req.method == Method::Invite && self.relays.is_node_hop(cx, &req) {
            return self.relays.route_node_hop(cx, &mut self.dialogs, tx, req);
        }
        match req.method {
            Method::Invite => {
                let Some(call) = self.calls.admit(cx, &self.registrant, tx, req, peer) else {
                    return; // refused, or challenged
                };
                match self.own_presence.feature_code(&call) {
                    Some(feature) => {
                        let change = self.own_presence.feature_change(cx, call, feature);
                        self.sip_presence_change(change, now)
                    }
                    None => self.calls.start(cx, call, local),
                }
            }
            Method::Register => self.register(tx, req, peer, now),
            Method::Options => {
                let headers = vec![
                    Header::Allow(CAPABILITIES.allow().into()),
                    Header::Accept("application/sdp".into()),
                ];
                cx.wire.reply_stateless(tx, &req, 200, headers)
            }
            Method::Subscribe => self.watchers.subscribe(cx, tx, req, peer, local),
            Method::Publish => {
                if let Some(change) = self.own_presence.publish_request(cx, tx, req, peer) {
                    self.sip_presence_change(change, now);
                }
            }
            // Methods that only exist inside a dialog (§15, RFC 3311/6086/3262/3515/6665).
            Method::Bye | Method::Update | Method::Info | Method::PRack | Method::Notify => {
                cx.wire.reply_stateless(tx, &req, 481, Vec::new())
            }
            // Out-of-dialog REFER and MESSAGE are not served yet.
            Method::Refer | Method::Message => {
                let allow = vec![Header::Allow(CAPABILITIES.allow().into())];
                cx.wire.reply_stateless(tx, &req, 501, allow)
            }
            _ => {
                let allow = vec![Header::Allow(CAPABILITIES.allow().into())];
                cx.wire.reply_stateless(tx, &req, 405, allow)
            }
        }
    }

    fn register(&mut self, tx: TxId, req: Request, peer: Peer, now: Now) {
        let mut cx = ctx!(self, now);
        match registrations::register(&mut cx, &req, peer) {
            Registered::Answer(resp) => cx.wire.respond(tx, resp, now),
            Registered::Refuse(resp) => cx.wire.respond_stateless(tx, resp),
            Registered::Store {
                ok,
                writes,
                aor,
                previous,
            } => {
                let pending = Pending::Register {
                    tx,
                    response: ok,
                    aor,
                    previous,
                };
                cx.persist(pending, writes)
            }
        }
    }

    /// A response received for one of our client transactions (to its owner), or a
    /// stray one.
    fn route_response(&mut self, outcome: ClientOutcome, now: Now) {
        let (tx, resp, last) = match outcome {
            ClientOutcome::Provisional(tx, resp) => (tx, resp, false),
            ClientOutcome::Final(tx, resp) => (tx, resp, true),
            ClientOutcome::Stray(resp) => return self.stray_response(resp),
            ClientOutcome::Absorbed => return,
        };
        let code = resp.status_code.code();
        let cx = &mut ctx!(self, now);
        match cx.wire.owners.get(&tx).copied() {
            Some(Owner::Branch { call, branch }) => {
                self.calls
                    .branch_response(cx, &mut self.dialogs, call, branch, tx, resp)
            }
            Some(Owner::Confirm { call, branch }) => {
                self.calls.confirm_response(cx, call, branch, tx, resp)
            }
            Some(Owner::Relay) => self.relays.response(cx, &mut self.dialogs, tx, resp),
            Some(Owner::Notify(id)) if last => {
                cx.wire.owners.remove(&tx);
                self.watchers.notify_answered(cx, id, Some(code));
            }
            Some(Owner::Mwi(id)) if last => {
                cx.wire.owners.remove(&tx);
                self.watchers.unsolicited_answered(cx, id, Some(code));
            }
            Some(Owner::Dialog) => self.dialogs.response(cx, tx, code),
            Some(Owner::Registration(key)) => self.registrant.response(cx, key, tx, resp),
            Some(Owner::Notify(_)) | Some(Owner::Mwi(_)) | Some(Owner::Call(_)) | None => {}
        }
    }

    /// §16.7 step 9 / §16.11: a 2xx to INVITE that matches no transaction (a late
    /// retransmission) is relayed statelessly when it carries our Via; anything else is
    /// dropped.
    fn stray_response(&mut self, mut resp: switchboard_sip::msg::Response) {
        use switchboard_sip::msg::prelude::*;
        use switchboard_sip::proxy;
        let is_invite_2xx = (200..300).contains(&resp.status_code.code())
            && resp
                .cseq_header()
                .is_ok_and(|c| c.value().trim_end().ends_with("INVITE"));
        let top_is_ours = proxy::via_values(&resp).first().is_some_and(|v| {
            let head = v.split(';').next().unwrap_or("");
            head.split_whitespace()
                .last()
                .is_some_and(|sb| self.wire.sent_by_is_ours(sb))
        });
        if is_invite_2xx && top_is_ours && proxy::strip_top_via(&mut resp) {
            message::keep_reason_phrase(&mut resp);
            self.dialogs.toward_caller(&mut resp);
            self.wire.send_stateless_response(&resp, None);
        } else {
            self.stats.dropped += 1;
        }
    }

    /// Hands transaction timeouts, transport errors and ends to their owners, in the order
    /// they happened. Handling one may cause more (a CANCEL sent, a response relayed): they
    /// join the end of the queue, so no handler runs inside another. The queue runs dry:
    /// each event is a step of one transaction towards its end, and a transaction takes
    /// finitely many (a timeout per timer, one transport error, one end).
    fn handle_tx_events(&mut self, now: Now) {
        while let Some(event) = self.wire.events.pop_front() {
            self.route_tx_event(event, now);
            self.wire.flush();
        }
    }

    /// A timeout, transport error or end of one of our transactions, to its owner.
    fn route_tx_event(&mut self, action: Action, now: Now) {
        let cx = &mut ctx!(self, now);
        let (tx, code, timer_c) = match action {
            Action::Timeout {
                tx,
                timer: Timer::C,
            } => (tx, 408, true),
            Action::Timeout { tx, .. } => (tx, 408, false),
            Action::TransportError(tx) => (tx, 503, false),
            Action::Terminated(tx) => {
                return match cx.wire.owners.remove(&tx) {
                    // A NOTIFY that ended without a final response: the subscriber is gone.
                    Some(Owner::Notify(id)) => self.watchers.notify_answered(cx, id, None),
                    // An unsolicited NOTIFY without a final response: not sent again.
                    Some(Owner::Mwi(id)) => self.watchers.unsolicited_answered(cx, id, None),
                    Some(Owner::Dialog) => self.dialogs.tx_failed(cx, tx, "no answer"),
                    Some(Owner::Branch { call, branch }) => {
                        self.calls.branch_ended(cx, call, branch, tx)
                    }
                    Some(Owner::Confirm { call, branch }) => {
                        self.calls.confirm_failed(cx, call, branch, tx, 408)
                    }
                    Some(Owner::Relay) => self.relays.ended(tx),
                    Some(Owner::Call(call)) => self.calls.caller_gone(call),
                    Some(Owner::Registration(_)) => self.registrant.ended(tx),
                    None => {}
                };
            }
            Action::Transmit { .. } => return,
        };
        let why = if code == 408 {
            "no answer"
        } else {
            "unreachable"
        };
        match cx.wire.owners.get(&tx).copied() {
            Some(Owner::Notify(id)) => {
                // No final response to a NOTIFY: the subscriber is gone.
                cx.wire.owners.remove(&tx);
                self.watchers.notify_answered(cx, id, None);
            }
            Some(Owner::Mwi(id)) => {
                cx.wire.owners.remove(&tx);
                self.watchers.unsolicited_answered(cx, id, None);
            }
            Some(Owner::Dialog) => self.dialogs.tx_failed(cx, tx, why),
            Some(Owner::Branch { call, branch }) => self
                .calls
                .branch_failed(cx, call, branch, tx, code, timer_c),
            Some(Owner::Confirm { call, branch }) => {
                self.calls.confirm_failed(cx, call, branch, tx, code)
            }
            Some(Owner::Relay) => self.relays.failed(cx, tx, code),
            Some(Owner::Registration(key)) => self.registrant.failed(cx, key, tx, code),
            Some(Owner::Call(_)) | None => {}
        }
    }

    // ---- the store's answers, presence changes -------------------------------------------

    /// The outcome of a [`Output::Persist`]: the answer it held back goes out, or the
    /// change is undone and an error goes out instead.
    fn persisted(&mut self, token: u64, ok: bool, now: Now) {
        if !ok {
            self.stats.store_failures += 1;
        }
        let Some(pending) = self.ledger.settle(token) else {
            return;
        };
        let cx = &mut ctx!(self, now);
        match pending {
            Pending::Subscribe { tx, id, ok: answer } => {
                self.watchers.subscription_stored(cx, tx, id, *answer, ok)
            }
            Pending::Sip {
                tx,
                ok: answer,
                failed,
                before,
                person,
            } => {
                if ok {
                    cx.wire.respond(tx, answer, now);
                } else {
                    cx.presence.rollback(before);
                    cx.wire.respond(tx, failed, now);
                }
                self.presence_stored(&person, now);
            }
            Pending::Presence {
                id,
                answer,
                before,
                person,
            } => {
                let reply = if ok {
                    Ok(answer)
                } else {
                    cx.presence.rollback(before);
                    Err(PresenceError::new(
                        ErrorKind::Unavailable,
                        None,
                        "the change could not be stored; try again",
                    ))
                };
                let mut reply = Box::new(reply);
                count_devices(&mut reply, cx.registrar, now.unix);
                cx.wire.out.push_back(Output::Reply { id, reply });
                if let Some(p) = person {
                    self.presence_stored(&p, now);
                }
            }
            Pending::Voicemail {
                id,
                answer,
                before,
                mailbox,
            } => {
                let reply = if ok {
                    Ok(presence_service::Answer::Voicemail(answer))
                } else {
                    crate::voicemail::undo(cx.mailboxes, before);
                    Err(PresenceError::new(
                        ErrorKind::Unavailable,
                        None,
                        "the change could not be stored; try again",
                    ))
                };
                let reply = Box::new(reply);
                cx.wire.out.push_back(Output::Reply { id, reply });
                if let Some(m) = mailbox {
                    self.mailbox_stored(&m, now);
                }
            }
            Pending::Deposit { mailbox, id } => {
                if !ok {
                    // Nothing of it was stored: out of memory too (the writes that delete
                    // it have nothing to delete), and its lamp goes back.
                    let _ = cx.mailboxes.delete(&mailbox, &id);
                    tracing::error!(mailbox, id, "voicemail message lost: the store refused it");
                }
            }
            Pending::Phone {
                session,
                before,
                wait,
            } => {
                if !ok {
                    crate::voicemail::undo(cx.mailboxes, before);
                }
                if wait {
                    self.calls.phone_stored(cx, session, ok);
                }
            }
            Pending::Register {
                tx,
                response,
                aor,
                previous,
            } => {
                self.board.note_person(&aor);
                let had_devices = previous.iter().any(|b| b.live_at(now.unix));
                if ok {
                    // A REGISTER over a stream connection: the connection is the bindings'
                    // flow, held open until they lapse (the idle timeout must not close it).
                    if let Some(peer) = cx.wire.transactions.peer(tx) {
                        if let Some(until) = registrations::flow_hold(cx.registrar, &aor, peer, now)
                        {
                            cx.wire.out.push_back(Output::Hold { peer, until });
                        }
                    }
                    cx.wire.respond(tx, response, now);
                    // A device registered anew is told the counts of the mailboxes it
                    // shows without subscribing (none unless one has `unsolicited_mwi`).
                    let policy = cx.directory.policy();
                    if !watchers::message_waiting::unsolicited_mailboxes(policy, &aor).is_empty() {
                        let anew = registered_anew(cx.registrar, &aor, &previous, now.unix);
                        if !anew.is_empty() {
                            self.watchers.registered_anew(cx, &aor, anew);
                        }
                    }
                } else {
                    let resp = registrations::failed(cx.registrar, &aor, previous, response);
                    cx.wire.respond(tx, resp, now);
                }
                // A first device, or the last one removed: offline or not to presence
                // watchers (a refresh changes nothing they see).
                let has_devices = !cx.registrar.lookup(&aor, now.unix).is_empty();
                if cx.config.watchers.offline_without_devices && had_devices != has_devices {
                    self.renotify.push(aor);
                }
            }
        }
    }

    /// A presence command from the API or the CLI; the answer comes as [`Output::Reply`]
    /// with `id`, after any change it makes is durable.
    fn command(&mut self, id: u64, req: presence_service::Request, now: Now) {
        if let presence_service::Command::Voicemail { .. } = &req.command {
            return self.voicemail_command(id, req, now);
        }
        let person = changed_person(&req.command).map(str::to_string);
        if let Some(p) = &person {
            if self.presence_writes.contains_key(p) {
                let queue = self.queued_changes.entry(p.clone()).or_default();
                queue.push_back(Queued::Api(id, Box::new(req)));
                return;
            }
        }
        let cx = &mut ctx!(self, now);
        let reply = match cx
            .presence
            .handle(&req, cx.directory.policy(), now.unix as i64)
        {
            Err(e) => Err(e),
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(p)) => {
                if let Some(who) = &person {
                    *self.presence_writes.entry(who.clone()).or_default() += 1;
                }
                let pending = Pending::Presence {
                    id,
                    answer: p.answer,
                    before: p.before,
                    person,
                };
                return cx.persist(pending, p.writes);
            }
        };
        let mut reply = Box::new(reply);
        count_devices(&mut reply, cx.registrar, now.unix);
        cx.wire.out.push_back(Output::Reply { id, reply });
    }

    /// Something asked of a mailbox through the API or the CLI
    /// ([`presence_service::Command::Voicemail`]): answered as [`Output::Reply`] `id`, a
    /// change once it is durable (after the mailbox's earlier changes), a read of audio
    /// once every earlier write is.
    fn voicemail_command(&mut self, id: u64, req: presence_service::Request, now: Now) {
        let presence_service::Command::Voicemail { mailbox, action } = &req.command else {
            return;
        };
        let key = mailbox.key();
        let changes = action.changes();
        if changes {
            if let Some(waiting) = self.mailbox_writes.get_mut(&key) {
                waiting.push_back((id, req));
                return;
            }
        }
        let presence_service::Request {
            who,
            admin,
            via,
            command: presence_service::Command::Voicemail { mailbox, action },
        } = req
        else {
            return;
        };
        let cx = &mut ctx!(self, now);
        let policy = cx.directory.policy();
        let reply = match crate::voicemail::handle(
            cx.mailboxes,
            policy,
            &who,
            admin,
            via,
            &mailbox,
            action,
        ) {
            Err(e) => Err(e),
            Ok(Ok(answer)) => Ok(presence_service::Answer::Voicemail(answer)),
            Ok(Err(change)) => {
                let mailbox = (changes && !change.writes.is_empty()).then_some(key);
                if let Some(m) = &mailbox {
                    self.mailbox_writes.insert(m.clone(), VecDeque::new());
                }
                let pending = Pending::Voicemail {
                    id,
                    answer: change.answer,
                    before: change.before,
                    mailbox,
                };
                return cx.persist(pending, change.writes);
            }
        };
        cx.wire.out.push_back(Output::Reply {
            id,
            reply: Box::new(reply),
        });
    }

    /// A mailbox's change reached the store (or failed to): its next change waiting, if
    /// any, goes ahead.
    fn mailbox_stored(&mut self, mailbox: &str, now: Now) {
        let Some(mut waiting) = self.mailbox_writes.remove(mailbox) else {
            return;
        };
        while let Some((id, req)) = waiting.pop_front() {
            self.voicemail_command(id, req, now);
            // That one is on its way to the store: the rest wait for it.
            if let Some(queue) = self.mailbox_writes.get_mut(mailbox) {
                queue.extend(waiting);
                return;
            }
        }
    }

    /// A presence change asked over SIP (PUBLISH, a feature code): made, stored, then
    /// answered with its `ok`; a refused change gets 4xx with the reason, a failed store
    /// 500.
    fn sip_presence_change(&mut self, change: SipChange, now: Now) {
        if self.presence_writes.contains_key(&change.user) {
            // An earlier change of this person is still on its way to the store.
            let queue = self.queued_changes.entry(change.user.clone()).or_default();
            queue.push_back(Queued::Sip(Box::new(change)));
            return;
        }
        let SipChange {
            tx,
            req,
            user,
            command,
            ok,
        } = change;
        let via = if req.method == Method::Publish {
            Interface::Sip
        } else {
            Interface::FeatureCode
        };
        let request = presence_service::Request {
            who: user.clone(),
            admin: false,
            via,
            command,
        };
        let cx = &mut ctx!(self, now);
        match cx
            .presence
            .handle(&request, cx.directory.policy(), now.unix as i64)
        {
            Err(e) => {
                let code = match e.kind {
                    ErrorKind::NotFound => 404,
                    // A profile number nobody has is "not found" to a phone.
                    _ if e.field.as_deref() == Some("profile") => 404,
                    // A phone changes only its own person's presence and makes no profiles:
                    // anything else it is refused is a request it should not have sent.
                    ErrorKind::Invalid
                    | ErrorKind::Forbidden
                    | ErrorKind::Conflict
                    | ErrorKind::Unavailable => 400,
                };
                let warning = vec![message::warning(&e.to_string())];
                cx.wire.reply_to(tx, &req, code, warning, now);
            }
            Ok(Ok(_)) => cx.wire.respond(tx, ok, now),
            Ok(Err(p)) => {
                let tag = cx.wire.tag();
                let mut failed = message::response(&req, 500, Some(&tag), &cx.wire.server);
                failed
                    .headers
                    .push(message::warning("the change could not be stored"));
                failed.headers.push(Header::RetryAfter("5".into()));
                *self.presence_writes.entry(user.clone()).or_default() += 1;
                let pending = Pending::Sip {
                    tx,
                    ok,
                    failed,
                    before: p.before,
                    person: user,
                };
                cx.persist(pending, p.writes);
            }
        }
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
            Some(Queued::Api(id, req)) => self.command(id, *req, now),
            Some(Queued::Sip(change)) => self.sip_presence_change(*change, now),
            None => {}
        }
    }
}

#[cfg(test)]
mod tests;

/// The bindings of `aor` live at `unix` that are new since `previous`: not there before, or
/// there with another Call-ID (a phone that restarted, RFC 3261 §10.2.4).
fn registered_anew(
    registrar: &Registrar,
    aor: &str,
    previous: &[Binding],
    unix: u64,
) -> Vec<Binding> {
    registrar
        .lookup(aor, unix)
        .into_iter()
        .filter(|b| {
            !previous
                .iter()
                .any(|p| p.live_at(unix) && p.call_id == b.call_id && b.has_key(&p.key()))
        })
        .cloned()
        .collect()
}

/// Each person a presence answer shows, with the devices they have registered at `unix`.
fn count_devices(reply: &mut presence_service::Reply, registrar: &Registrar, unix: u64) {
    let count = |v: &mut presence_service::PresenceView| {
        v.devices = registrar.lookup(&v.user, unix).len() as u32;
    };
    match reply {
        Ok(presence_service::Answer::People(people)) => people.iter_mut().for_each(count),
        Ok(presence_service::Answer::Person(p))
        | Ok(presence_service::Answer::Removed { presence: p, .. }) => count(p),
        _ => {}
    }
}
