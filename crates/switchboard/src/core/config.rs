//! The core's settings, from the daemon's configuration (or a test's).

use super::calls::RoutingConfig;
use super::watchers::WatchersConfig;
use std::time::Duration;
use switchboard_sip::auth::Algorithm;
use switchboard_sip::registrar::RegistrarConfig;
use switchboard_sip::transaction::TimerConfig;

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
    /// Networks whose requests are never counted or blocked by the digest gate.
    pub trusted: Vec<switchboard_policy::Network>,
    pub routing: RoutingConfig,
    pub watchers: WatchersConfig,
    /// The seed of every random number the core makes (tags, branches, nonces): secret,
    /// from the operating system, in the daemon; fixed in tests and replays.
    pub seed: [u8; 32],
    /// `[mail]` is configured: each missed call's record also goes to the mail outbox
    /// ([`switchboard_store::tables::MAIL_OUTBOX`]) for the mail task.
    pub mail: bool,
    /// This node's name among the nodes sharing the state (`[store] node`, with a shared
    /// store): who is in a call through it is told to the others
    /// ([`switchboard_store::tables::CALL_STATUS`], [`super::Output::Share`]). None alone.
    pub node: Option<String>,
    /// The URI the other nodes reach this one at (`sip:HOST:PORT`), written into the
    /// bindings it takes: calls to a phone only this node's flow reaches are sent through
    /// it. None: such phones are reached from this node only.
    pub node_hop: Option<String>,
    /// The key digest nonces are made and checked with, kept in the store so that a nonce
    /// one node issued is good at another (and across a restart): nonces then carry Unix
    /// times. None: a key of the core's own making, gone with it (tests).
    pub nonce_secret: Option<[u8; 32]>,
}
