//! switchboard-presence
