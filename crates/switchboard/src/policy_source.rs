//! Where the routing policy comes from: the configured file or directory, or the example
//! policy compiled into the binary.

use crate::config::Config;
use std::path::PathBuf;
use std::time::SystemTime;
use switchboard_policy::{Context, Diagnostics, DigestAlgorithm, Policy, Source};
use switchboard_sip::auth::Algorithm;

/// The example policy compiled into the binary, used when the config names none.
pub const EMBEDDED_POLICY: &str = include_str!("../../../config/policy.toml");
pub const EMBEDDED_POLICY_NAME: &str = "<embedded config/policy.toml>";

/// Loads and validates the policy the configuration points at, also against the
/// configuration: credentials must allow one of the algorithms the challenges offer.
pub fn load(config: &Config) -> Result<Policy, Diagnostics> {
    let context = Context {
        offered_algorithms: Some(
            config
                .auth_algorithms
                .iter()
                .map(|a| match a {
                    Algorithm::Md5 => DigestAlgorithm::Md5,
                    Algorithm::Sha256 => DigestAlgorithm::Sha256,
                })
                .collect(),
        ),
    };
    match &config.policy_path {
        Some(path) => Policy::load_path_in(path, &context),
        None => Policy::from_sources_in(
            &[Source {
                name: EMBEDDED_POLICY_NAME.into(),
                text: EMBEDDED_POLICY.into(),
            }],
            &context,
        ),
    }
}

/// What identifies the policy files' current contents cheaply: each file's path, length and
/// modification time. Editors that save by writing a new file and renaming it change it too.
pub type Fingerprint = Vec<(PathBuf, u64, Option<SystemTime>)>;

/// The fingerprint of the configured policy (None for the embedded one).
pub fn fingerprint(config: &Config) -> Option<Fingerprint> {
    let path = config.policy_path.as_ref()?;
    let mut files = Vec::new();
    if path.is_dir() {
        if let Ok(rd) = std::fs::read_dir(path) {
            files.extend(
                rd.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "toml")),
            );
        }
    } else {
        files.push(path.clone());
    }
    files.sort();
    Some(
        files
            .into_iter()
            .map(|f| {
                let m = std::fs::metadata(&f).ok();
                let len = m.as_ref().map(|m| m.len()).unwrap_or(0);
                let modified = m.and_then(|m| m.modified().ok());
                (f, len, modified)
            })
            .collect(),
    )
}
