//! The one digest gate (RFC 7616, RFC 8760) every request passes that must prove who sends
//! it: REGISTER and SUBSCRIBE/PUBLISH as a UAS (`401`), INVITE as a proxy (`407`).
//!
//! A sub-machine of the core: it owns the authenticator (nonces, nonce counts) and the
//! throttle (failures and blocks per source and per user, see
//! [`switchboard_sip::throttle`]), is handed the directory it checks against, and answers
//! with a [`Gate`] — it sends nothing itself. The challenge is the same for every user
//! name, known or not; its nonce is good only from the address it was sent to, so a
//! wrong answer sent with another's address is challenged again, never counted against
//! that address.
//!
//! Trunks (by source address or by their credentials) and the operator's trusted networks
//! are never counted or blocked. A blocked user's credentials are refused (403, the same
//! answer whether they are right or wrong) except from addresses it authenticated from
//! lately.
//!
//! Blocks, unblocks and failures are logged under the target `switchboard::security`, one
//! line each in a fixed format that log watchers such as fail2ban can match
//! (docs/security.md):
//!
//! ```text
//! auth-fail source=203.0.113.7 user=alice method=REGISTER why="wrong credentials" failures=3
//! auth-block source=203.0.113.7 seconds=300
//! auth-block user=alice source=203.0.113.7 seconds=600
//! auth-unblock source=203.0.113.7
//! auth-unblock user=alice
//! ```

use crate::logging::printable;
use std::net::IpAddr;
use std::time::Instant;
use switchboard_policy::Network;
use switchboard_sip::auth::{Authenticator, Role, Verdict};
use switchboard_sip::message;
use switchboard_sip::msg::headers::Header;
use switchboard_sip::msg::Request;
use switchboard_sip::peer::Peer;
use switchboard_sip::throttle::{Count, Throttle, Unblocked};

use super::trunk_sources::TrunkSources;
use crate::directory::Directory;

/// The log target of the lines about failures and blocks.
pub const SECURITY: &str = "switchboard::security";

/// What the gate says of a request.
#[derive(Debug)]
pub(crate) enum Gate {
    /// The request proves this SIP user name.
    Passed(String),
    /// The request goes no further: answer it with this code and these headers (a
    /// challenge, 403 for a failed or blocked source, 400 for unreadable credentials).
    Answer { code: u16, headers: Vec<Header> },
}

/// Counters of the gate.
#[derive(Clone, Copy, Debug, Default)]
pub struct GateStats {
    /// Credentials that were wrong.
    pub failures: u64,
    /// Requests refused because their source, or the user they claim, is blocked.
    pub blocked: u64,
    /// Challenges sent (401, 407).
    pub challenges: u64,
}

pub(crate) struct AuthGate {
    auth: Authenticator,
    throttle: Throttle,
    /// Networks whose requests are never counted or blocked.
    trusted: Vec<Network>,
    pub(crate) stats: GateStats,
    /// What the other nodes sharing the state must count too, oldest first: a counted
    /// failure as a user (true), or a user that proved itself (false). Kept only while
    /// `sharing`.
    pub(crate) to_share: Vec<(String, bool)>,
    sharing: bool,
}

impl AuthGate {
    /// `sharing`: other nodes share the state, and count this node's failures too.
    pub(crate) fn new(
        auth: Authenticator,
        throttle: Throttle,
        trusted: Vec<Network>,
        sharing: bool,
    ) -> Self {
        AuthGate {
            auth,
            throttle,
            trusted,
            stats: GateStats::default(),
            to_share: Vec::new(),
            sharing,
        }
    }

    /// Another node counted a failure as `user` (`failed`), or `user` proved itself there.
    pub(crate) fn shared_attempt(&mut self, user: &str, failed: bool, now: Instant) {
        if !failed {
            self.throttle.clear_user(user);
            return;
        }
        if let Some(Count::Blocked(d)) = self.throttle.record_user_failure(user, now) {
            let name = printable(user);
            tracing::warn!(target: SECURITY, "auth-block user={name} source=elsewhere seconds={}", d.as_secs());
        }
    }

    /// Whether requests from `source` are never counted or blocked: a trusted network, or
    /// a trunk's address (a network of its sources, or an address of a source name).
    fn exempt(&self, source: IpAddr, directory: &dyn Directory, sources: &TrunkSources) -> bool {
        let ip = source.to_canonical();
        self.trusted.iter().any(|n| n.contains(ip))
            || sources.trunk_for(directory.policy(), ip).is_some()
    }

    /// Whether requests from `source` are refused for now (counted when they are).
    pub(crate) fn blocked(
        &mut self,
        source: IpAddr,
        directory: &dyn Directory,
        sources: &TrunkSources,
        now: Instant,
    ) -> bool {
        let blocked =
            self.throttle.source_blocked(source, now) && !self.exempt(source, directory, sources);
        if blocked {
            self.stats.blocked += 1;
        }
        blocked
    }

    /// The headers of the 403 to a request from a blocked source, or for a blocked user.
    pub(crate) fn blocked_headers() -> Vec<Header> {
        vec![message::warning("too many failed attempts; try later")]
    }

    fn blocked_answer(&mut self) -> Gate {
        self.stats.blocked += 1;
        Gate::Answer {
            code: 403,
            headers: Self::blocked_headers(),
        }
    }

    /// Checks a request's credentials, as a UAS (`Role::Server`, 401) or a proxy
    /// (`Role::Proxy`, 407).
    pub(crate) fn check(
        &mut self,
        req: &Request,
        peer: Peer,
        role: Role,
        directory: &dyn Directory,
        sources: &TrunkSources,
        now: Instant,
    ) -> Gate {
        let ip = peer.addr.ip();
        let exempt = self.exempt(ip, directory, sources);
        let is_trunk = |u: &str| directory.trunk_of_username(u).is_some();
        if !exempt && self.throttle.source_blocked(ip, now) {
            // A trunk's own credentials still get through a blocked address.
            let claimed = self.auth.claimed_username(req, role);
            if !claimed.as_deref().is_some_and(is_trunk) {
                return self.blocked_answer();
            }
        }
        let verdict = self
            .auth
            .verify(req, role, ip, |u| directory.credential(u), now);
        // A blocked user is refused the same way whether its credentials are right or
        // wrong (a guess must not learn it was right), but from addresses it proved itself
        // from lately.
        let user_blocked = |gate: &Self, u: &str| {
            !exempt && !is_trunk(u) && gate.throttle.user_blocked(u, ip, now)
        };
        match verdict {
            Verdict::Authenticated { username } => {
                if user_blocked(self, &username) {
                    return self.blocked_answer();
                }
                // Others need hear of a success only when failures were being counted.
                if self.sharing && self.throttle.user_counted(&username) {
                    self.to_share.push((username.clone(), false));
                }
                self.throttle.record_success(ip, &username, now);
                Gate::Passed(username)
            }
            Verdict::Challenge { stale } => {
                self.stats.challenges += 1;
                Gate::Answer {
                    code: match role {
                        Role::Server => 401,
                        Role::Proxy => 407,
                    },
                    headers: self.auth.challenge(stale, role, ip, now),
                }
            }
            Verdict::Failed { username, why } => {
                self.stats.failures += 1;
                let name = printable(&username);
                let blocked = user_blocked(self, &username);
                if exempt || is_trunk(&username) {
                    tracing::info!(target: SECURITY, "auth-fail source={ip} user={name} method={} why=\"{why}\" failures=uncounted", req.method);
                } else {
                    // Only names that exist are counted per user: made-up names would
                    // only fill the table (their source is counted all the same).
                    let known = directory.credential(&username).is_some();
                    let f =
                        self.throttle
                            .record_failure(ip, known.then_some(username.as_str()), now);
                    if known && self.sharing {
                        self.to_share.push((username.clone(), true));
                    }
                    let n = match f.source {
                        Count::Counted(n) => n.to_string(),
                        Count::Blocked(_) => "max".to_string(),
                    };
                    tracing::info!(target: SECURITY, "auth-fail source={ip} user={name} method={} why=\"{why}\" failures={n}", req.method);
                    if let Count::Blocked(d) = f.source {
                        tracing::warn!(target: SECURITY, "auth-block source={ip} seconds={}", d.as_secs());
                    }
                    if let Some(Count::Blocked(d)) = f.user {
                        tracing::warn!(target: SECURITY, "auth-block user={name} source={ip} seconds={}", d.as_secs());
                    }
                }
                if blocked {
                    return self.blocked_answer();
                }
                Gate::Answer {
                    code: 403,
                    headers: vec![message::warning("authentication failed")],
                }
            }
            Verdict::Malformed(why) => Gate::Answer {
                code: 400,
                headers: vec![message::warning(why)],
            },
        }
    }

    /// When a block ends next (so that its end is logged on time).
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.throttle.next_unblock()
    }

    /// Forgets blocks and failure counts that have run out, and logs the blocks that
    /// ended.
    /// Blocks in force: `(sources, users)`.
    pub(crate) fn blocks(&self) -> (usize, usize) {
        self.throttle.blocked()
    }

    pub(crate) fn expire(&mut self, now: Instant) {
        for ended in self.throttle.expire(now) {
            match ended {
                Unblocked::Source(ip) => {
                    tracing::info!(target: SECURITY, "auth-unblock source={ip}")
                }
                Unblocked::User(u) => {
                    tracing::info!(target: SECURITY, "auth-unblock user={}", printable(&u))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::test_harness::*;

    /// A request from ALICE's address with credentials for `user` over `nonce` that are
    /// wrong (any response digest but the right one).
    fn with_bad_credentials(method: &str, header: &str, nonce: &str, call: &str) -> String {
        let (target, extra) = match method {
            "INVITE" => ("1002", "Content-Type: application/sdp\r\n"),
            "SUBSCRIBE" => ("bob", "Event: presence\r\nExpires: 600\r\n"),
            _ => ("", "Expires: 600\r\n"),
        };
        let uri = if target.is_empty() {
            "sip:switchboard.local".to_string()
        } else {
            format!("sip:{target}@switchboard.local")
        };
        format!(
            "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {ALICE};branch=z9hG4bK-{call}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:alice@switchboard.local>;tag=f-{call}\r\n\
             To: <sip:{}@switchboard.local>\r\nCall-ID: {call}\r\nCSeq: 1 {method}\r\n\
             Contact: <sip:alice@{ALICE}>\r\n{extra}\
             {header}: Digest username=\"alice\", realm=\"switchboard.local\", nonce=\"{nonce}\", \
             uri=\"{uri}\", response=\"00000000000000000000000000000000\", algorithm=MD5, \
             qop=auth, nc=00000001, cnonce=\"c\"\r\nContent-Length: 0\r\n\r\n",
            if target.is_empty() { "alice" } else { target },
        )
    }

    fn challenge_of(msg: &str, header: &str) -> String {
        header_value(msg, header).unwrap_or_else(|| panic!("no {header}: {msg}"))
    }

    fn header_value(msg: &str, name: &str) -> Option<String> {
        msg.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .map(str::to_string)
    }

    fn without_nonce(challenge: &str) -> String {
        challenge
            .split(", ")
            .filter(|p| !p.starts_with("nonce="))
            .collect::<Vec<_>>()
            .join(", ")
    }

    #[test]
    fn one_gate_for_every_method_one_count_and_one_challenge() {
        let mut t = T::new(true);
        // REGISTER is challenged 401, INVITE 407: the same challenge but for the nonce.
        t.input(
            ALICE,
            &with_bad_credentials("REGISTER", "X-None", "n", "r0"),
        );
        let out = t.take();
        assert!(out[0].1.starts_with("SIP/2.0 401"), "{out:?}");
        let www = challenge_of(&out[0].1, "WWW-Authenticate");
        t.input(ALICE, &with_bad_credentials("INVITE", "X-None", "n", "i0"));
        let out = t.take();
        let proxy = out
            .iter()
            .find(|(_, m)| m.starts_with("SIP/2.0 407"))
            .unwrap_or_else(|| panic!("{out:?}"));
        assert_eq!(
            without_nonce(&www),
            without_nonce(&challenge_of(&proxy.1, "Proxy-Authenticate"))
        );
        let nonce = www
            .split("nonce=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap()
            .to_string();
        // Wrong credentials over REGISTER, SUBSCRIBE and INVITE count against the same
        // source: the policy's three failures block it, whatever the method.
        for (i, (method, header)) in [
            ("REGISTER", "Authorization"),
            ("SUBSCRIBE", "Authorization"),
            ("INVITE", "Proxy-Authorization"),
        ]
        .into_iter()
        .enumerate()
        {
            t.input(
                ALICE,
                &with_bad_credentials(method, header, &nonce, &format!("bad{i}")),
            );
            let out = t.take();
            let answer = out
                .iter()
                .map(|(_, m)| m)
                .find(|m| m.starts_with("SIP/2.0 4"))
                .unwrap_or_else(|| panic!("{method}: {out:?}"));
            assert!(answer.starts_with("SIP/2.0 403"), "{method}: {answer}");
            assert!(answer.contains("authentication failed"), "{answer}");
        }
        assert_eq!(t.core.gate_stats().failures, 3);
        t.input(
            ALICE,
            &with_bad_credentials("REGISTER", "X-None", "n", "r9"),
        );
        let out = t.take();
        assert!(out[0].1.starts_with("SIP/2.0 403"), "{out:?}");
        assert!(out[0].1.contains("too many failed attempts"), "{out:?}");
        assert_eq!(t.core.gate_stats().blocked, 1);
    }
}
