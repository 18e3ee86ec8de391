//! Where the routing policy comes from: the configured file or directory, or the example
//! policy compiled into the binary.

use crate::config::Config;
use switchboard_policy::{Diagnostics, Policy, Source};

/// The example policy compiled into the binary, used when the config names none.
pub const EMBEDDED_POLICY: &str = include_str!("../../../config/policy.toml");
pub const EMBEDDED_POLICY_NAME: &str = "<embedded config/policy.toml>";

/// Loads and validates the policy the configuration points at.
pub fn load(config: &Config) -> Result<Policy, Diagnostics> {
    match &config.policy_path {
        Some(path) => Policy::load_path(path),
        None => Policy::from_sources(&[Source {
            name: EMBEDDED_POLICY_NAME.into(),
            text: EMBEDDED_POLICY.into(),
        }]),
    }
}
