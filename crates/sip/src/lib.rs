//! Switchboard's SIP signalling core.
//!
//! Everything in this crate except [`transport`] is sans-I/O: state machines take events
//! (a message received, a timer fired, a command) with the current time passed in, and hand
//! back actions (send these bytes there, arm that timer). The daemon's async shell does the
//! sockets and the clock, so tests can drive the machines with a virtual clock.
//!
//! Messages are parsed with the maintained rsip-derived parser of `rsipstack`
//! ([`msg`]), wrapped by [`parse`] so that no input can take the process down.

pub use rsipstack::sip as msg;

pub mod auth;
pub mod events;
pub mod message;
pub mod parse;
pub mod peer;
pub mod proxy;
pub mod registrar;
pub mod subscription;
pub mod transaction;
pub mod transport;
pub mod wire;
