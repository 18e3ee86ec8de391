//! switchboard-policy
