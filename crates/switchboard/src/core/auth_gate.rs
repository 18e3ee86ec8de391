//! The one digest gate (RFC 7616, RFC 8760) every request passes that must prove who sends
//! it: REGISTER and SUBSCRIBE/PUBLISH as a UAS (`401`), INVITE as a proxy (`407`).
//!
//! A sub-machine of the core: it owns the authenticator (nonces, nonce counts) and the
//! throttle (failures and blocks per source), is handed the directory it checks against,
//! and answers with a [`Gate`] — it sends nothing itself. The challenge is the same for
//! every user name, known or not.

use std::net::IpAddr;
use std::time::{Duration, Instant};
use switchboard_sip::auth::{Authenticator, FailureOutcome, Role, Throttle, Verdict};
use switchboard_sip::message;
use switchboard_sip::msg::headers::Header;
use switchboard_sip::msg::Request;
use switchboard_sip::peer::Peer;

use crate::directory::Directory;

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
    /// Credentials that were wrong (each counted against its source).
    pub failures: u64,
    /// Requests refused because their source is blocked.
    pub blocked: u64,
}

pub(crate) struct AuthGate {
    auth: Authenticator,
    throttle: Throttle,
    /// How long a block lasts (for the log line).
    block: Duration,
    pub(crate) stats: GateStats,
}

impl AuthGate {
    pub(crate) fn new(auth: Authenticator, throttle: Throttle, block: Duration) -> Self {
        AuthGate {
            auth,
            throttle,
            block,
            stats: GateStats::default(),
        }
    }

    /// Whether requests from `source` are refused for now (counted when they are).
    pub(crate) fn blocked(&mut self, source: IpAddr, now: Instant) -> bool {
        let blocked = self.throttle.is_blocked(source, now);
        if blocked {
            self.stats.blocked += 1;
        }
        blocked
    }

    /// The headers of the 403 to a request from a blocked source.
    pub(crate) fn blocked_headers() -> Vec<Header> {
        vec![message::warning("too many failed attempts; try later")]
    }

    /// Checks a request's credentials, as a UAS (`Role::Server`, 401) or a proxy
    /// (`Role::Proxy`, 407).
    pub(crate) fn check(
        &mut self,
        req: &Request,
        peer: Peer,
        role: Role,
        directory: &dyn Directory,
        now: Instant,
    ) -> Gate {
        if self.blocked(peer.addr.ip(), now) {
            return Gate::Answer {
                code: 403,
                headers: Self::blocked_headers(),
            };
        }
        match self
            .auth
            .verify(req, role, |u| directory.credential(u), now)
        {
            Verdict::Authenticated { username } => {
                self.throttle.record_success(peer.addr.ip());
                Gate::Passed(username)
            }
            Verdict::Challenge { stale } => Gate::Answer {
                code: match role {
                    Role::Server => 401,
                    Role::Proxy => 407,
                },
                headers: self.auth.challenge(stale, role, now),
            },
            Verdict::Failed { username, why } => {
                self.stats.failures += 1;
                match self.throttle.record_failure(peer.addr.ip(), now) {
                    FailureOutcome::Blocked(_) => tracing::warn!(
                        source = %peer.addr.ip(),
                        block_secs = self.block.as_secs(),
                        "source blocked after repeated authentication failures"
                    ),
                    FailureOutcome::Counted(n) => {
                        tracing::info!(from = %peer, username, why, failures = n, method = %req.method, "authentication failed")
                    }
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

    /// Forgets blocks and failure counts that have run out.
    pub(crate) fn expire(&mut self, now: Instant) {
        self.throttle.expire(now);
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
