//! Switchboard's SIP signalling core.
//!
//! Everything in this crate is sans-I/O: state machines take events
//! (a message received, a timer fired, a command) with the current time passed in, and hand
//! back actions (send these bytes there, arm that timer). The sockets are the
//! `switchboard-net` crate's; the daemon's shell does the clock, so tests can drive the
//! machines with a virtual clock.
//!
//! Messages are parsed with the maintained rsip-derived parser of `rsipstack`
//! ([`msg`]), wrapped by [`parse`] so that no input can take the process down.

pub use rsipstack::sip as msg;

/// The map for tables that grow with the load (transactions, calls, dialogs): it grows
/// incrementally, moving a few entries across on each insert, where a standard map moves
/// all of them at once when it doubles. At a few thousand calls/s such a table holds
/// hundreds of thousands of entries (transactions live 32 s, RFC 3261 timer J and RFC 6026
/// timer L/M), and one all-at-once doubling stalls the single core thread for tens of
/// milliseconds: long enough to overflow the UDP receive buffer. Keyed with a random
/// seed (ahash), so peers cannot choose colliding keys.
pub type GrowingMap<K, V> = griddle::HashMap<K, V>;

pub mod auth;
pub mod auth_client;
pub mod entropy;
pub mod events;
pub mod locate;
pub mod log_limit;
pub mod message;
pub mod parse;
pub mod peer;
pub mod proxy;
pub mod registrar;
pub mod subscription;
pub mod throttle;
pub mod transaction;
pub mod transport;
pub mod wire;
