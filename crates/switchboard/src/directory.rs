//! What the SIP core needs to know of the people in the policy: who a SIP user name or
//! extension is, and their digest credentials. One definition of a user: the policy's.

use switchboard_policy::{DigestAlgorithm, Policy, Secret};
use switchboard_sip::auth::{Algorithm, Credential, Secret as SipSecret};

/// One version of the directory, as the core holds it: the core is handed a new one when
/// the policy is reloaded ([`crate::core::Input::PolicyChanged`]) and reads no other.
pub type Snapshot = std::sync::Arc<Box<dyn Directory>>;

/// Lookups the SIP core makes.
pub trait Directory: Send + Sync {
    /// The id of the user a request-URI or To user part names (SIP user name, user id or
    /// extension), or None.
    fn user_for(&self, uri_user: &str) -> Option<String>;
    /// The digest credential of a SIP user name.
    fn credential(&self, username: &str) -> Option<Credential>;
    /// The id of the user a SIP user name (as authenticated) belongs to.
    fn user_of_username(&self, username: &str) -> Option<String>;
    /// The whole policy (profiles, people) for presence and routing.
    fn policy(&self) -> &Policy;
    /// The user whose presence API token this is.
    fn user_for_token(&self, token: &str) -> Option<String>;
    /// The trunk whose SIP user name (digest credentials) this is.
    fn trunk_of_username(&self, username: &str) -> Option<String>;
}

impl std::fmt::Debug for dyn Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Directory")
    }
}

fn sip_algorithms(list: &[DigestAlgorithm]) -> Vec<Algorithm> {
    list.iter()
        .map(|a| match a {
            DigestAlgorithm::Md5 => Algorithm::Md5,
            DigestAlgorithm::Sha256 => Algorithm::Sha256,
        })
        .collect()
}

/// The policy as the SIP core sees it, with what is derived from it computed once.
pub struct PolicyDirectory {
    policy: Policy,
    tokens: std::collections::HashMap<String, String>,
    /// SIP user name of a trunk's credentials → trunk id.
    trunk_users: std::collections::HashMap<String, String>,
}

impl PolicyDirectory {
    pub fn new(policy: Policy) -> Self {
        let tokens = policy
            .users()
            .filter_map(|u| u.api_token.clone().map(|t| (t, u.id.clone())))
            .collect();
        let trunk_users = policy
            .trunks()
            .filter_map(|t| {
                t.credentials
                    .as_ref()
                    .map(|c| (c.username.clone(), t.id.clone()))
            })
            .collect();
        PolicyDirectory {
            policy,
            tokens,
            trunk_users,
        }
    }
}

impl Directory for PolicyDirectory {
    fn user_for(&self, uri_user: &str) -> Option<String> {
        let p = &self.policy;
        if let Some(u) = p.sip_user(uri_user) {
            return Some(u.to_string());
        }
        if p.user(uri_user).is_some() {
            return Some(uri_user.to_string());
        }
        p.user_by_extension(uri_user).map(|u| u.id.to_string())
    }

    fn credential(&self, username: &str) -> Option<Credential> {
        let c = match self.policy.sip_credentials(username) {
            Some(c) => c,
            None => {
                let trunk = self.trunk_users.get(username)?;
                self.policy.trunk(trunk)?.credentials.as_ref()?
            }
        };
        Some(Credential {
            secret: match &c.secret {
                Secret::Password(p) => SipSecret::Password(p.clone()),
                Secret::Ha1 { md5, sha256 } => SipSecret::Ha1 {
                    md5: md5.clone(),
                    sha256: sha256.clone(),
                },
            },
            algorithms: sip_algorithms(&c.algorithms),
        })
    }

    fn policy(&self) -> &Policy {
        &self.policy
    }

    fn user_for_token(&self, token: &str) -> Option<String> {
        self.tokens.get(token).cloned()
    }

    fn trunk_of_username(&self, username: &str) -> Option<String> {
        self.trunk_users.get(username).cloned()
    }

    fn user_of_username(&self, username: &str) -> Option<String> {
        self.policy.sip_user(username).map(str::to_string)
    }
}
