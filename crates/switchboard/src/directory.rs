//! What the SIP core needs to know of the people in the policy: who a SIP user name or
//! extension is, and their digest credentials. One definition of a user: the policy's.

use switchboard_policy::{DigestAlgorithm, Policy, Secret};
use switchboard_sip::auth::{Algorithm, Credential, Secret as SipSecret};

/// Lookups the SIP core makes.
pub trait Directory: Send + Sync {
    /// The id of the user a request-URI or To user part names (SIP user name, user id or
    /// extension), or None.
    fn user_for(&self, uri_user: &str) -> Option<String>;
    /// The digest credential of a SIP user name.
    fn credential(&self, username: &str) -> Option<Credential>;
    /// The id of the user a SIP user name (as authenticated) belongs to.
    fn user_of_username(&self, username: &str) -> Option<String>;
}

impl Directory for Policy {
    fn user_for(&self, uri_user: &str) -> Option<String> {
        if let Some(u) = self.sip_user(uri_user) {
            return Some(u.to_string());
        }
        if self.user(uri_user).is_some() {
            return Some(uri_user.to_string());
        }
        self.user_by_extension(uri_user).map(|u| u.id.to_string())
    }

    fn credential(&self, username: &str) -> Option<Credential> {
        let c = self.sip_credentials(username)?;
        Some(Credential {
            secret: match &c.secret {
                Secret::Password(p) => SipSecret::Password(p.clone()),
                Secret::Ha1 { md5, sha256 } => SipSecret::Ha1 {
                    md5: md5.clone(),
                    sha256: sha256.clone(),
                },
            },
            algorithms: c
                .algorithms
                .iter()
                .map(|a| match a {
                    DigestAlgorithm::Md5 => Algorithm::Md5,
                    DigestAlgorithm::Sha256 => Algorithm::Sha256,
                })
                .collect(),
        })
    }

    fn user_of_username(&self, username: &str) -> Option<String> {
        self.sip_user(username).map(str::to_string)
    }
}
