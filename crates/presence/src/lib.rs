//! Switchboard's presence: statuses, profiles, call state, time in status, and the durable
//! state store they (and the registrar's bindings) live in. Knows nothing of SIP.

pub mod model;
pub mod store;
