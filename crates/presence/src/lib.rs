//! Switchboard's presence: statuses, profiles, call state, time in status. Knows nothing of
//! SIP; the daemon stores its changes as rows of `switchboard-store`'s tables.

pub mod model;
