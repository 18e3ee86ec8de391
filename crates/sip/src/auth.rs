//! Digest authentication of requests (RFC 3261 §22, RFC 7616, RFC 8760), sans-I/O.
//!
//! * MD5 and SHA-256 with `qop=auth`. The challenge offers the configured algorithms (one
//!   `WWW-Authenticate` per algorithm, in the configured order, RFC 8760 §2.4) to every
//!   request alike, whoever it claims to be; by default MD5 alone, the one challenge every
//!   common client answers. A user's credential may further restrict which of them the
//!   user may answer with.
//! * Nonces carry their own issue time and a keyed hash, so they need no storage to be
//!   checked; an old nonce is answered with `stale=true`. The highest nonce-count seen for
//!   each nonce is remembered, so a replayed `nc` is refused.
//! * An unknown user gets exactly the challenge a known user gets, and a wrong answer from
//!   either is the same failure: nothing tells whether a user exists.
//! * [`Throttle`] counts failures per source address and blocks a source for a while.

use crate::entropy::Entropy;
use crate::msg::headers::Header;
use crate::msg::Request;
use md5::Md5;
use sha2::{Digest as _, Sha256};
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// A digest algorithm (RFC 7616 §3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Md5,
    Sha256,
}

impl Algorithm {
    /// The token in `algorithm=`.
    pub fn token(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    fn from_token(s: &str) -> Option<Self> {
        if s.eq_ignore_ascii_case("MD5") {
            Some(Algorithm::Md5)
        } else if s.eq_ignore_ascii_case("SHA-256") {
            Some(Algorithm::Sha256)
        } else {
            None
        }
    }

    /// Lower-case hex of the digest of `data`.
    pub fn hash(self, data: &str) -> String {
        match self {
            Algorithm::Md5 => hex::encode(Md5::digest(data.as_bytes())),
            Algorithm::Sha256 => hex::encode(Sha256::digest(data.as_bytes())),
        }
    }

    /// HA1 = H(username:realm:password) (RFC 7616 §3.4.2).
    pub fn ha1(self, username: &str, realm: &str, password: &str) -> String {
        self.hash(&format!("{username}:{realm}:{password}"))
    }

    /// The `response` of a digest answer to `method` on `uri` (RFC 7616 §3.4.1, RFC 2617
    /// §3.2.2.1), HA2 = H(method:uri): with `qop=auth` (`Some((nc, cnonce))`)
    /// H(HA1:nonce:nc:cnonce:auth:HA2), without a qop (RFC 2069) H(HA1:nonce:HA2). The one
    /// computation of both sides: the authenticator checks answers with it, and
    /// [`crate::auth_client`] makes them.
    pub fn response(
        self,
        ha1: &str,
        nonce: &str,
        qop_auth: Option<(&str, &str)>,
        method: &str,
        uri: &str,
    ) -> String {
        let ha2 = self.hash(&format!("{method}:{uri}"));
        match qop_auth {
            Some((nc, cnonce)) => self.hash(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")),
            None => self.hash(&format!("{ha1}:{nonce}:{ha2}")),
        }
    }
}

/// How a user's secret is known: the password itself, or HA1 = H(user:realm:password)
/// per algorithm.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Secret {
    Password(String),
    Ha1 {
        md5: Option<String>,
        sha256: Option<String>,
    },
}

/// What the authenticator needs to know of a user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credential {
    pub secret: Secret,
    /// Algorithms the user may answer with (of those the challenge offers).
    pub algorithms: Vec<Algorithm>,
}

impl Credential {
    fn ha1(&self, algorithm: Algorithm, username: &str, realm: &str) -> Option<String> {
        if !self.algorithms.contains(&algorithm) {
            return None;
        }
        match &self.secret {
            Secret::Password(p) => Some(algorithm.ha1(username, realm, p)),
            Secret::Ha1 { md5, sha256 } => match algorithm {
                Algorithm::Md5 => md5.as_ref().map(|h| h.to_ascii_lowercase()),
                Algorithm::Sha256 => sha256.as_ref().map(|h| h.to_ascii_lowercase()),
            },
        }
    }
}

/// The algorithms a challenge offers unless configured otherwise: MD5 alone. Several
/// challenges, or a SHA-256 one, make some common clients fail (one refuses any SHA-256
/// challenge present, others take only the first or only the last), while one MD5
/// challenge is answered by all of them.
pub const DEFAULT_ALGORITHMS: [Algorithm; 1] = [Algorithm::Md5];

/// Settings of the authenticator.
#[derive(Clone, Debug)]
pub struct DigestConfig {
    pub realm: String,
    /// After this a nonce is answered with `stale=true`.
    pub nonce_lifetime: Duration,
    /// Most nonces whose nonce-count is tracked at once; past it the oldest are forgotten
    /// (a forgotten nonce is answered as stale).
    pub max_tracked_nonces: usize,
    /// What every challenge offers, one header per algorithm in this order: the same for
    /// every user name, known or not. Answers with another algorithm are challenged again.
    pub algorithms: Vec<Algorithm>,
}

/// Which header pair a challenge uses: `WWW-Authenticate`/`Authorization` (401, a
/// registrar or UAS) or `Proxy-Authenticate`/`Proxy-Authorization` (407, a proxy).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Server,
    Proxy,
}

/// The result of checking a request's credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The request proves knowledge of `username`'s secret.
    Authenticated { username: String },
    /// No usable credentials: challenge (`stale` when the nonce was good but old).
    Challenge { stale: bool },
    /// Credentials that do not match (wrong password, unknown user, replayed nonce-count):
    /// answer 403 and count a failure for the source.
    Failed { username: String, why: &'static str },
    /// An Authorization header that cannot be read: answer 400.
    Malformed(&'static str),
}

/// Checks digest credentials and issues challenges.
pub struct Authenticator {
    config: DigestConfig,
    key: [u8; 32],
    entropy: Entropy,
    /// Issue time origin: nonces carry seconds since this instant, plus `clock`.
    epoch: Instant,
    /// What `epoch` is in the clock nonces are issued by: 0 (seconds since the start) for
    /// an authenticator of its own, Unix seconds for one sharing its key
    /// ([`Authenticator::share`]).
    clock: u64,
    /// Highest nonce-count seen per nonce, and when the nonce was issued.
    counts: HashMap<String, (u32, u64)>,
    /// Tracked nonces in the order they were first used, for eviction.
    order: VecDeque<(u64, String)>,
    /// Nonces issued at or before this (seconds since `epoch`) are no longer tracked: a
    /// forgotten count must not let a replay through, so such nonces count as stale.
    forgotten_up_to: Option<u64>,
}

impl Authenticator {
    /// `epoch` is any instant not after the first `now` passed in (the daemon's start);
    /// `entropy` gives the nonce key and salts.
    pub fn new(config: DigestConfig, epoch: Instant, mut entropy: Entropy) -> Self {
        Authenticator {
            config,
            key: entropy.key(),
            entropy,
            epoch,
            clock: 0,
            counts: HashMap::new(),
            order: VecDeque::new(),
            forgotten_up_to: None,
        }
    }

    pub fn realm(&self) -> &str {
        &self.config.realm
    }

    /// Makes and checks nonces with `key`, the same for every authenticator given it (the
    /// nodes sharing their state, or this node across restarts), and with issue times in
    /// Unix seconds (`epoch_unix`: the Unix time of the `epoch` this was made with), so a
    /// nonce issued by one is good at another. Replays are caught by each authenticator
    /// for the nonces it has seen: a nonce issued before this one began (and never seen
    /// here) is answered with a fresh challenge (stale), never taken on trust.
    pub fn share(&mut self, key: [u8; 32], epoch_unix: u64) {
        self.key = key;
        self.clock = epoch_unix;
        // Seconds before this one's first: nonces issued since have been seen only here.
        self.forgotten_up_to = Some(epoch_unix.saturating_sub(1));
        self.counts.clear();
        self.order.clear();
    }

    /// Seconds at `now` in the clock nonces are issued by.
    fn secs(&self, now: Instant) -> u64 {
        self.clock + now.saturating_duration_since(self.epoch).as_secs()
    }

    /// The MAC that binds a nonce to when it was issued, to the address it was issued to
    /// and to the realm: a nonce fetched from one address is not good from another.
    fn nonce_mac(&self, issued: u64, salt: u64, source: IpAddr) -> String {
        let mut h = Sha256::new();
        h.update(self.key);
        h.update(self.config.realm.as_bytes());
        h.update([0]);
        h.update(issued.to_be_bytes());
        h.update(salt.to_be_bytes());
        match source.to_canonical() {
            IpAddr::V4(a) => h.update(a.octets()),
            IpAddr::V6(a) => h.update(a.octets()),
        }
        hex::encode(&h.finalize()[..12])
    }

    /// Fixed width (zero-padded), so that a nonce's length says nothing about the request.
    fn new_nonce(&mut self, source: IpAddr, now: Instant) -> String {
        let issued = self.secs(now);
        let salt = self.entropy.u64();
        let mac = self.nonce_mac(issued, salt, source);
        format!("{issued:08x}.{salt:016x}.{mac}")
    }

    /// The issue time of a nonce this authenticator made for `source`, or None for a
    /// foreign or forged one, or one issued to another address.
    fn nonce_issued(&self, nonce: &str, source: IpAddr) -> Option<u64> {
        let mut parts = nonce.split('.');
        let issued = u64::from_str_radix(parts.next()?, 16).ok()?;
        let salt = u64::from_str_radix(parts.next()?, 16).ok()?;
        let mac = parts.next()?;
        let ours = constant_time_eq(mac, &self.nonce_mac(issued, salt, source));
        (parts.next().is_none() && ours).then_some(issued)
    }

    /// The challenge headers for a 401 (or 407) to a request from `source`: one per
    /// configured algorithm, in the configured order, whoever the request claims to be.
    pub fn challenge(
        &mut self,
        stale: bool,
        role: Role,
        source: IpAddr,
        now: Instant,
    ) -> Vec<Header> {
        let nonce = self.new_nonce(source, now);
        self.config
            .algorithms
            .iter()
            .map(|a| {
                let mut v = format!(
                    "Digest realm=\"{}\", nonce=\"{}\", algorithm={}, qop=\"auth\"",
                    self.config.realm,
                    nonce,
                    a.token()
                );
                if stale {
                    v.push_str(", stale=true");
                }
                match role {
                    Role::Server => Header::WwwAuthenticate(v.into()),
                    Role::Proxy => Header::ProxyAuthenticate(v.into()),
                }
            })
            .collect()
    }

    /// The user name a request's credentials for our realm claim, unchecked.
    pub fn claimed_username(&self, req: &Request, role: Role) -> Option<String> {
        req.headers
            .iter()
            .filter_map(|h| match (role, h) {
                (Role::Server, Header::Authorization(a)) => Some(a.value()),
                (Role::Proxy, Header::ProxyAuthorization(a)) => Some(a.value()),
                _ => None,
            })
            .filter_map(parse_digest)
            .find(|p| p.get("realm").map(String::as_str) == Some(self.config.realm.as_str()))
            .and_then(|mut p| p.remove("username"))
    }

    /// Checks the credentials of a request from `source` for our realm. `lookup` gives a
    /// user's credential by username, or None for an unknown user.
    pub fn verify(
        &mut self,
        req: &Request,
        role: Role,
        source: IpAddr,
        lookup: impl Fn(&str) -> Option<Credential>,
        now: Instant,
    ) -> Verdict {
        let values = req.headers.iter().filter_map(|h| match (role, h) {
            (Role::Server, Header::Authorization(a)) => Some(a.value()),
            (Role::Proxy, Header::ProxyAuthorization(a)) => Some(a.value()),
            _ => None,
        });
        // Use the credentials for our realm (RFC 3261 §22.4: there may be several).
        let mut ours = None;
        for v in values {
            let Some(params) = parse_digest(v) else {
                return Verdict::Malformed("unreadable Authorization header");
            };
            if params.get("realm").map(String::as_str) == Some(self.config.realm.as_str()) {
                ours = Some(params);
                break;
            }
        }
        let Some(p) = ours else {
            return Verdict::Challenge { stale: false };
        };
        let field = |k: &str| p.get(k).map(String::as_str);
        let (Some(username), Some(nonce), Some(uri), Some(response)) = (
            field("username"),
            field("nonce"),
            field("uri"),
            field("response"),
        ) else {
            return Verdict::Malformed("Authorization lacks username, nonce, uri or response");
        };
        let algorithm = match field("algorithm") {
            None => Algorithm::Md5,
            Some(t) => match Algorithm::from_token(t) {
                Some(a) => a,
                None => return Verdict::Challenge { stale: false },
            },
        };
        // Only what the challenge offers is accepted.
        if !self.config.algorithms.contains(&algorithm) {
            return Verdict::Challenge { stale: false };
        }
        let Some(issued) = self.nonce_issued(nonce, source) else {
            // Not ours (say, from before a restart), or fetched from another address (an
            // answer sent with a forged source): a fresh challenge, not a failure — a
            // failure would count against the address the request claims to come from.
            return Verdict::Challenge { stale: false };
        };
        let age = self.secs(now).saturating_sub(issued);
        if age > self.config.nonce_lifetime.as_secs() {
            return Verdict::Challenge { stale: true };
        }
        if !uri_matches(uri, &req.uri.to_string()) {
            return Verdict::Failed {
                username: username.to_string(),
                why: "digest uri differs from the Request-URI",
            };
        }
        if field("qop")
            .map(|q| !q.eq_ignore_ascii_case("auth"))
            .unwrap_or(true)
        {
            return Verdict::Malformed("qop=auth is required");
        }
        let (Some(nc_text), Some(cnonce)) = (field("nc"), field("cnonce")) else {
            return Verdict::Malformed("qop=auth needs nc and cnonce");
        };
        let Ok(nc) = u32::from_str_radix(nc_text, 16) else {
            return Verdict::Malformed("unreadable nonce-count");
        };
        let failed = |why| Verdict::Failed {
            username: username.to_string(),
            why,
        };
        let Some(ha1) =
            lookup(username).and_then(|c| c.ha1(algorithm, username, &self.config.realm))
        else {
            return failed("wrong credentials");
        };
        let method = crate::wire::method_name(&req.method);
        let expected = algorithm.response(&ha1, nonce, Some((nc_text, cnonce)), method, uri);
        if !constant_time_eq(&expected, &response.to_ascii_lowercase()) {
            return failed("wrong credentials");
        }
        // Replay protection: the nonce-count must grow.
        if !self.counts.contains_key(nonce) {
            if self.forgotten_up_to.is_some_and(|f| issued <= f) {
                return Verdict::Challenge { stale: true };
            }
            self.counts.insert(nonce.to_string(), (0, issued));
            self.order.push_back((issued, nonce.to_string()));
        }
        let Some(entry) = self.counts.get_mut(nonce) else {
            return Verdict::Challenge { stale: true };
        };
        if nc <= entry.0 {
            return failed("replayed nonce-count");
        }
        entry.0 = nc;
        self.evict(now);
        Verdict::Authenticated {
            username: username.to_string(),
        }
    }

    /// Forgets expired nonces, and the oldest when too many are tracked; O(1) amortised.
    fn evict(&mut self, now: Instant) {
        let now_s = self.secs(now);
        let life = self.config.nonce_lifetime.as_secs();
        while let Some((issued, _)) = self.order.front() {
            let expired = now_s.saturating_sub(*issued) > life;
            if !expired && self.order.len() <= self.config.max_tracked_nonces {
                break;
            }
            let Some((issued, nonce)) = self.order.pop_front() else {
                break;
            };
            self.counts.remove(&nonce);
            if !expired {
                self.forgotten_up_to = Some(self.forgotten_up_to.map_or(issued, |f| f.max(issued)));
            }
        }
    }

    /// Nonces currently tracked for replay protection.
    pub fn tracked_nonces(&self) -> usize {
        self.counts.len()
    }
}

fn uri_matches(digest_uri: &str, request_uri: &str) -> bool {
    digest_uri == request_uri
        || digest_uri
            .trim_end_matches(';')
            .eq_ignore_ascii_case(request_uri)
        || normalize_uri(digest_uri) == normalize_uri(request_uri)
}

fn normalize_uri(u: &str) -> String {
    u.trim().to_ascii_lowercase()
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Reads `Digest k=v, k="v", …` into a map with lower-case keys; None when it is not a
/// well-formed digest credential.
pub fn parse_digest(value: &str) -> Option<HashMap<String, String>> {
    let value = value.trim();
    let (scheme, rest) = value.split_once(|c: char| c.is_ascii_whitespace())?;
    if !scheme.eq_ignore_ascii_case("Digest") {
        return None;
    }
    let mut out = HashMap::new();
    let mut chars = rest.char_indices().peekable();
    let bytes = rest;
    loop {
        // skip separators
        while let Some(&(_, c)) = chars.peek() {
            if c == ',' || c.is_ascii_whitespace() {
                chars.next();
            } else {
                break;
            }
        }
        let Some(&(start, _)) = chars.peek() else {
            break;
        };
        let mut eq = None;
        for (i, c) in chars.by_ref() {
            if c == '=' {
                eq = Some(i);
                break;
            }
        }
        let eq = eq?;
        let key = bytes[start..eq].trim().to_ascii_lowercase();
        if key.is_empty() || out.len() > 32 {
            return None;
        }
        while let Some(&(_, c)) = chars.peek() {
            if c.is_ascii_whitespace() {
                chars.next();
            } else {
                break;
            }
        }
        let val = if let Some(&(_, '"')) = chars.peek() {
            chars.next();
            let mut v = String::new();
            let mut closed = false;
            while let Some((_, c)) = chars.next() {
                match c {
                    '\\' => v.push(chars.next()?.1),
                    '"' => {
                        closed = true;
                        break;
                    }
                    c => v.push(c),
                }
            }
            if !closed {
                return None;
            }
            v
        } else {
            let mut v = String::new();
            while let Some(&(_, c)) = chars.peek() {
                if c == ',' {
                    break;
                }
                v.push(c);
                chars.next();
            }
            v.trim().to_string()
        };
        out.insert(key, val);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where the test requests come from.
    const SRC: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 9));
    use crate::msg::SipMessage;
    use crate::parse::{parse, Limits};

    fn auth() -> (Authenticator, Instant) {
        auth_offering(&DEFAULT_ALGORITHMS)
    }

    fn auth_offering(algorithms: &[Algorithm]) -> (Authenticator, Instant) {
        let t0 = Instant::now();
        let a = Authenticator::new(
            DigestConfig {
                realm: "switchboard.local".into(),
                nonce_lifetime: Duration::from_secs(300),
                max_tracked_nonces: 4,
                algorithms: algorithms.to_vec(),
            },
            t0,
            Entropy::from_seed([3; 32]),
        );
        (a, t0)
    }

    const BOTH: [Algorithm; 2] = [Algorithm::Sha256, Algorithm::Md5];

    fn cred(algs: &[Algorithm]) -> Option<Credential> {
        Some(Credential {
            secret: Secret::Password("pw".into()),
            algorithms: algs.to_vec(),
        })
    }

    fn nonce_of(h: &Header) -> String {
        let Header::WwwAuthenticate(w) = h else {
            panic!()
        };
        parse_digest(w.value()).unwrap()["nonce"].clone()
    }

    /// A REGISTER answering `nonce` as a client would.
    fn answered(alg: Algorithm, user: &str, password: &str, nonce: &str, nc: u32) -> Request {
        let uri = "sip:switchboard.local";
        let ha1 = alg.hash(&format!("{user}:switchboard.local:{password}"));
        let ha2 = alg.hash(&format!("REGISTER:{uri}"));
        let nc = format!("{nc:08x}");
        let resp = alg.hash(&format!("{ha1}:{nonce}:{nc}:c0ffee:auth:{ha2}"));
        let text = format!(
            "REGISTER {uri} SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nMax-Forwards: 70\r\n\
             From: <sip:{user}@switchboard.local>;tag=1\r\nTo: <sip:{user}@switchboard.local>\r\n\
             Call-ID: c\r\nCSeq: 2 REGISTER\r\nAuthorization: Digest username=\"{user}\", \
             realm=\"switchboard.local\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{resp}\", \
             algorithm={}, qop=auth, nc={nc}, cnonce=\"c0ffee\"\r\nContent-Length: 0\r\n\r\n",
            alg.token()
        );
        match parse(text.as_bytes(), &Limits::default()).unwrap() {
            SipMessage::Request(r) => r,
            _ => unreachable!(),
        }
    }

    #[test]
    fn md5_and_sha256_succeed_when_offered() {
        let (mut a, t0) = auth_offering(&BOTH);
        for alg in [Algorithm::Md5, Algorithm::Sha256] {
            let ch = a.challenge(false, Role::Server, SRC, t0);
            let req = answered(alg, "alice", "pw", &nonce_of(&ch[0]), 1);
            assert_eq!(
                a.verify(&req, Role::Server, SRC, |_| cred(&BOTH), t0),
                Verdict::Authenticated {
                    username: "alice".into()
                }
            );
        }
    }

    #[test]
    fn ha1_secrets_work() {
        let (mut a, t0) = auth();
        let ha1 = Algorithm::Md5.hash("alice:switchboard.local:pw");
        let c = Credential {
            secret: Secret::Ha1 {
                md5: Some(ha1.to_uppercase()),
                sha256: None,
            },
            algorithms: vec![Algorithm::Md5],
        };
        let ch = a.challenge(false, Role::Server, SRC, t0);
        let req = answered(Algorithm::Md5, "alice", "pw", &nonce_of(&ch[0]), 1);
        assert!(matches!(
            a.verify(&req, Role::Server, SRC, |_| Some(c.clone()), t0),
            Verdict::Authenticated { .. }
        ));
    }

    #[test]
    fn algorithm_not_allowed_for_user_fails() {
        let (mut a, t0) = auth();
        let ch = a.challenge(false, Role::Server, SRC, t0);
        let req = answered(Algorithm::Md5, "alice", "pw", &nonce_of(&ch[0]), 1);
        assert!(matches!(
            a.verify(&req, Role::Server, SRC, |_| cred(&[Algorithm::Sha256]), t0),
            Verdict::Failed { .. }
        ));
    }

    #[test]
    fn wrong_password_and_unknown_user_fail_alike() {
        let (mut a, t0) = auth();
        let n = nonce_of(&a.challenge(false, Role::Server, SRC, t0)[0]);
        let wrong = answered(Algorithm::Md5, "alice", "nope", &n, 1);
        let unknown = answered(Algorithm::Md5, "mallory", "pw", &n, 1);
        let v1 = a.verify(&wrong, Role::Server, SRC, |_| cred(&DEFAULT_ALGORITHMS), t0);
        let v2 = a.verify(&unknown, Role::Server, SRC, |_| None, t0);
        assert!(matches!(
            v1,
            Verdict::Failed {
                why: "wrong credentials",
                ..
            }
        ));
        assert!(matches!(
            v2,
            Verdict::Failed {
                why: "wrong credentials",
                ..
            }
        ));
    }

    #[test]
    fn replayed_nonce_count_is_refused() {
        let (mut a, t0) = auth();
        let n = nonce_of(&a.challenge(false, Role::Server, SRC, t0)[0]);
        let look = |_: &str| cred(&DEFAULT_ALGORITHMS);
        let r1 = answered(Algorithm::Md5, "alice", "pw", &n, 1);
        assert!(matches!(
            a.verify(&r1, Role::Server, SRC, look, t0),
            Verdict::Authenticated { .. }
        ));
        assert!(matches!(
            a.verify(&r1, Role::Server, SRC, look, t0),
            Verdict::Failed {
                why: "replayed nonce-count",
                ..
            }
        ));
        let r2 = answered(Algorithm::Md5, "alice", "pw", &n, 2);
        assert!(matches!(
            a.verify(&r2, Role::Server, SRC, look, t0),
            Verdict::Authenticated { .. }
        ));
    }

    #[test]
    fn old_nonce_is_stale_and_forged_nonce_rechallenged() {
        let (mut a, t0) = auth();
        let n = nonce_of(&a.challenge(false, Role::Server, SRC, t0)[0]);
        let r = answered(Algorithm::Md5, "alice", "pw", &n, 1);
        let later = t0 + Duration::from_secs(301);
        assert_eq!(
            a.verify(&r, Role::Server, SRC, |_| cred(&DEFAULT_ALGORITHMS), later),
            Verdict::Challenge { stale: true }
        );
        let forged = answered(Algorithm::Md5, "alice", "pw", "0.1.abcdef", 1);
        assert_eq!(
            a.verify(
                &forged,
                Role::Server,
                SRC,
                |_| cred(&DEFAULT_ALGORITHMS),
                t0
            ),
            Verdict::Challenge { stale: false }
        );
        let ch = a.challenge(true, Role::Server, SRC, t0);
        assert_eq!(ch.len(), 1);
        let Header::WwwAuthenticate(w) = &ch[0] else {
            panic!()
        };
        assert!(w.value().contains("algorithm=MD5"));
        assert!(w.value().contains("stale=true"));
    }

    #[test]
    fn the_default_challenge_is_one_md5_header() {
        let (mut a, t0) = auth();
        let ch = a.challenge(false, Role::Proxy, SRC, t0);
        assert_eq!(ch.len(), 1, "{ch:?}");
        let Header::ProxyAuthenticate(p) = &ch[0] else {
            panic!("{ch:?}")
        };
        let params = parse_digest(p.value()).unwrap();
        assert_eq!(params["algorithm"], "MD5");
        assert_eq!(params["qop"], "auth");
        assert_eq!(params["realm"], "switchboard.local");
    }

    #[test]
    fn configured_algorithms_are_offered_in_order_with_one_nonce() {
        let (mut a, t0) = auth_offering(&BOTH);
        let ch = a.challenge(false, Role::Server, SRC, t0);
        let algs: Vec<String> = ch
            .iter()
            .map(|h| {
                let Header::WwwAuthenticate(w) = h else {
                    panic!()
                };
                parse_digest(w.value()).unwrap()["algorithm"].clone()
            })
            .collect();
        assert_eq!(algs, ["SHA-256", "MD5"]);
        assert_eq!(nonce_of(&ch[0]), nonce_of(&ch[1]));
    }

    #[test]
    fn an_answer_with_an_algorithm_not_offered_is_challenged_again() {
        let (mut a, t0) = auth();
        let n = nonce_of(&a.challenge(false, Role::Server, SRC, t0)[0]);
        let req = answered(Algorithm::Sha256, "alice", "pw", &n, 1);
        assert_eq!(
            a.verify(&req, Role::Server, SRC, |_| cred(&BOTH), t0),
            Verdict::Challenge { stale: false }
        );
    }

    #[test]
    fn nonces_have_one_length_whatever_their_time_and_salt() {
        let (mut a, t0) = auth();
        let lengths: std::collections::BTreeSet<usize> = (0..2000u64)
            .map(|i| {
                let h = &a.challenge(false, Role::Server, SRC, t0 + Duration::from_secs(i * 37))[0];
                nonce_of(h).len()
            })
            .collect();
        assert_eq!(lengths.len(), 1, "nonce lengths seen: {lengths:?}");
    }

    #[test]
    fn tracked_nonces_are_bounded() {
        let (mut a, t0) = auth();
        for i in 0..20u64 {
            let now = t0 + Duration::from_secs(i);
            let n = nonce_of(&a.challenge(false, Role::Server, SRC, now)[0]);
            let r = answered(Algorithm::Md5, "alice", "pw", &n, 1);
            a.verify(&r, Role::Server, SRC, |_| cred(&DEFAULT_ALGORITHMS), now);
            assert!(a.tracked_nonces() <= 5);
        }
    }

    #[test]
    fn a_forgotten_nonce_is_stale_not_replayable() {
        let (mut a, t0) = auth();
        let look = |_: &str| cred(&DEFAULT_ALGORITHMS);
        let first = nonce_of(&a.challenge(false, Role::Server, SRC, t0)[0]);
        let r1 = answered(Algorithm::Md5, "alice", "pw", &first, 1);
        assert!(matches!(
            a.verify(&r1, Role::Server, SRC, look, t0),
            Verdict::Authenticated { .. }
        ));
        // Push it out of the table (max 4 tracked).
        for i in 1..=5u64 {
            let now = t0 + Duration::from_secs(i);
            let n = nonce_of(&a.challenge(false, Role::Server, SRC, now)[0]);
            let r = answered(Algorithm::Md5, "alice", "pw", &n, 1);
            assert!(matches!(
                a.verify(&r, Role::Server, SRC, look, now),
                Verdict::Authenticated { .. }
            ));
        }
        assert_eq!(a.tracked_nonces(), 4);
        let later = t0 + Duration::from_secs(6);
        assert_eq!(
            a.verify(&r1, Role::Server, SRC, look, later),
            Verdict::Challenge { stale: true }
        );
    }

    #[test]
    fn digest_parsing() {
        let p =
            parse_digest(r#"Digest username="a\"b", realm="r", nc=00000001, qop=auth"#).unwrap();
        assert_eq!(p["username"], "a\"b");
        assert_eq!(p["nc"], "00000001");
        assert!(parse_digest("Basic abc").is_none());
        assert!(parse_digest(r#"Digest username="unterminated"#).is_none());
    }

    #[test]
    fn a_nonce_from_one_node_is_good_at_another_sharing_its_key_and_replays_are_caught_at_each() {
        let unix = 1_800_000_000;
        let (mut a, t0) = auth();
        a.share([7; 32], unix);
        // b started 100 s before a, on its own monotonic clock.
        let (mut b, b0) = auth();
        b.share([7; 32], unix - 100);
        let (mut other, _) = auth();
        other.share([8; 32], unix);
        let look = |_: &str| cred(&DEFAULT_ALGORITHMS);
        let n = nonce_of(&a.challenge(false, Role::Server, SRC, t0 + Duration::from_secs(1))[0]);
        let r1 = answered(Algorithm::Md5, "alice", "pw", &n, 1);
        let at_b = b0 + Duration::from_secs(102);
        assert!(matches!(
            b.verify(&r1, Role::Server, SRC, look, at_b),
            Verdict::Authenticated { .. }
        ));
        assert_eq!(
            b.verify(&r1, Role::Server, SRC, look, at_b),
            Verdict::Failed {
                username: "alice".into(),
                why: "replayed nonce-count"
            }
        );
        // A node with another key does not know it.
        assert_eq!(
            other.verify(&r1, Role::Server, SRC, look, t0 + Duration::from_secs(2)),
            Verdict::Challenge { stale: false }
        );
        // Expiry is by the shared clock: 300 s after issue, at either node.
        assert_eq!(
            b.verify(
                &answered(Algorithm::Md5, "alice", "pw", &n, 2),
                Role::Server,
                SRC,
                look,
                b0 + Duration::from_secs(402)
            ),
            Verdict::Challenge { stale: true }
        );
        // A node (re)started after a nonce was issued has not seen its counts: stale, so
        // a request captured before a restart is not taken once more after it.
        let (mut c, c0) = auth();
        c.share([7; 32], unix + 5);
        assert_eq!(
            c.verify(&r1, Role::Server, SRC, look, c0),
            Verdict::Challenge { stale: true }
        );
    }

    #[test]
    fn a_nonce_is_good_only_from_the_address_it_was_issued_to() {
        let (mut a, t0) = auth();
        let n = nonce_of(&a.challenge(false, Role::Server, SRC, t0)[0]);
        let look = |_: &str| cred(&DEFAULT_ALGORITHMS);
        // Wrong credentials over a nonce fetched from SRC, sent as if from elsewhere: a
        // fresh challenge, never a failure (which would count against the other address).
        let wrong = answered(Algorithm::Md5, "alice", "nope", &n, 1);
        let elsewhere: IpAddr = "127.0.0.10".parse().unwrap();
        assert_eq!(
            a.verify(&wrong, Role::Server, elsewhere, look, t0),
            Verdict::Challenge { stale: false }
        );
        // Good credentials too: only from SRC.
        let right = answered(Algorithm::Md5, "alice", "pw", &n, 1);
        assert_eq!(
            a.verify(&right, Role::Server, elsewhere, look, t0),
            Verdict::Challenge { stale: false }
        );
        assert!(matches!(
            a.verify(&right, Role::Server, SRC, look, t0),
            Verdict::Authenticated { .. }
        ));
        // An IPv4 source seen as IPv4-mapped IPv6 (a dual-stack socket) is the same address.
        let mapped: IpAddr = "::ffff:127.0.0.9".parse().unwrap();
        let again = answered(Algorithm::Md5, "alice", "pw", &n, 2);
        assert!(matches!(
            a.verify(&again, Role::Server, mapped, look, t0),
            Verdict::Authenticated { .. }
        ));
    }

    proptest::proptest! {
        #[test]
        fn digest_parser_never_panics(s in ".{0,200}") {
            let _ = parse_digest(&s);
        }
    }
}
