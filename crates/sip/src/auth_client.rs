//! Answering digest challenges as a client (RFC 3261 §22.2–22.3, RFC 7616, RFC 8760),
//! sans-I/O: what this server does when a carrier challenges a request it sent on an
//! account's behalf.
//!
//! * A 401 or 407 may carry several challenges ([`challenges`]): one per realm that wants
//!   credentials, and per realm one per algorithm the server offers. [`choose`] keeps one
//!   per realm — SHA-256 when the realm offers it, else MD5 (RFC 8760 §2.4: the client
//!   answers the strongest it supports) — and only the realms the account answers.
//! * Answers use `qop=auth` when offered, with a cnonce from the caller's generator (the
//!   core's, so a run replays exactly) and a nonce count kept per nonce ([`NonceCounts`]):
//!   a server that hands out the same nonce again sees it counted up, never replayed. A
//!   challenge without qop gets the RFC 2069 answer (no cnonce, no count).
//! * The hashing is [`Algorithm::ha1`] and [`Algorithm::response`], the same code the
//!   authenticator checks answers with.

use crate::auth::{parse_digest, Algorithm, Role};
use crate::entropy::Entropy;
use crate::msg::headers::Header;
use crate::msg::{Request, Response};
use std::collections::{HashMap, VecDeque};

/// One digest challenge of a 401 (`WWW-Authenticate`) or 407 (`Proxy-Authenticate`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    /// `Server`: a 401, answered in `Authorization`; `Proxy`: a 407, answered in
    /// `Proxy-Authorization`.
    pub role: Role,
    pub realm: String,
    pub nonce: String,
    pub algorithm: Algorithm,
    /// The challenge offers `qop=auth`: the answer carries `qop`, `nc` and `cnonce`.
    pub qop_auth: bool,
    /// Returned as is in the answer.
    pub opaque: Option<String>,
    /// The previous answer's nonce was good but old (RFC 7616 §3.3): answering again is
    /// no sign of wrong credentials.
    pub stale: bool,
}

impl Challenge {
    /// Reads one challenge; None when it is not one this client can answer: not Digest,
    /// no realm or nonce, an algorithm other than MD5 and SHA-256 (the `-sess` variants,
    /// SHA-512-256), or a qop list without `auth` (`auth-int` alone).
    pub fn parse(role: Role, value: &str) -> Option<Challenge> {
        let mut p = parse_digest(value)?;
        let realm = p.remove("realm")?;
        let nonce = p.remove("nonce")?;
        let algorithm = match p.get("algorithm") {
            None => Algorithm::Md5,
            Some(a) if a.eq_ignore_ascii_case("MD5") => Algorithm::Md5,
            Some(a) if a.eq_ignore_ascii_case("SHA-256") => Algorithm::Sha256,
            Some(_) => return None,
        };
        let qop_auth = match p.get("qop") {
            None => false,
            Some(list) => {
                if !list
                    .split(',')
                    .any(|q| q.trim().eq_ignore_ascii_case("auth"))
                {
                    return None;
                }
                true
            }
        };
        let stale = p
            .get("stale")
            .is_some_and(|s| s.trim().eq_ignore_ascii_case("true"));
        Some(Challenge {
            role,
            realm,
            nonce,
            algorithm,
            qop_auth,
            opaque: p.remove("opaque"),
            stale,
        })
    }
}

/// Every challenge of a 401 or 407 this client can answer, in the order written.
pub fn challenges(resp: &Response) -> Vec<Challenge> {
    resp.headers
        .iter()
        .filter_map(|h| match h {
            Header::WwwAuthenticate(v) => Challenge::parse(Role::Server, v.value()),
            Header::ProxyAuthenticate(v) => Challenge::parse(Role::Proxy, v.value()),
            _ => None,
        })
        .collect()
}

/// The challenges to answer: for each realm `accept` allows (in the order first seen),
/// its SHA-256 challenge when it offers one, else its first MD5 one.
pub fn choose(all: &[Challenge], accept: impl Fn(&str) -> bool) -> Vec<&Challenge> {
    let mut out: Vec<&Challenge> = Vec::new();
    for c in all.iter().filter(|c| accept(&c.realm)) {
        match out
            .iter_mut()
            .find(|o| o.realm == c.realm && o.role == c.role)
        {
            None => out.push(c),
            Some(o) => {
                if o.algorithm == Algorithm::Md5 && c.algorithm == Algorithm::Sha256 {
                    *o = c;
                }
            }
        }
    }
    out
}

/// What a client answers challenges with.
#[derive(Clone, Copy)]
pub struct ClientCredentials<'a> {
    /// The digest user name.
    pub username: &'a str,
    pub password: &'a str,
}

/// The nonce count of each nonce answered (RFC 7616 §3.4: `nc` counts the requests sent
/// with one nonce, from 1), for at most `max` nonces: past it the oldest is forgotten
/// (a server that still knew it would ask again with a fresh one).
#[derive(Debug)]
pub struct NonceCounts {
    counts: HashMap<(String, String), u32>,
    order: VecDeque<(String, String)>,
    max: usize,
}

impl NonceCounts {
    pub fn new(max: usize) -> Self {
        NonceCounts {
            counts: HashMap::new(),
            order: VecDeque::new(),
            max: max.max(1),
        }
    }

    /// The count of the next answer with `nonce` of `realm`: 1 for a new nonce, one more
    /// each time after.
    pub fn next(&mut self, realm: &str, nonce: &str) -> u32 {
        let key = (realm.to_string(), nonce.to_string());
        if let Some(n) = self.counts.get_mut(&key) {
            *n = n.saturating_add(1);
            return *n;
        }
        while self.order.len() >= self.max {
            if let Some(old) = self.order.pop_front() {
                self.counts.remove(&old);
            }
        }
        self.order.push_back(key.clone());
        self.counts.insert(key, 1);
        1
    }

    /// Nonces whose count is kept.
    pub fn len(&self) -> usize {
        self.counts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }
}

/// A value in a quoted digest parameter: `"` and `\` escaped.
fn quoted(v: &str) -> String {
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    for c in v.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// The answer to `challenge` for a request of `method` to `uri` (its Request-URI as
/// sent), as the header its role asks for; `nc` and `cnonce` are used when the
/// challenge offers `qop=auth`.
pub fn answer(
    challenge: &Challenge,
    credentials: ClientCredentials<'_>,
    method: &str,
    uri: &str,
    nc: u32,
    cnonce: &str,
) -> Header {
    let c = challenge;
    let alg = c.algorithm;
    let ha1 = alg.ha1(credentials.username, &c.realm, credentials.password);
    let nc_text = format!("{nc:08x}");
    let qop = c.qop_auth.then_some((nc_text.as_str(), cnonce));
    let response = alg.response(&ha1, &c.nonce, qop, method, uri);
    let mut v = format!(
        "Digest username={}, realm={}, nonce={}, uri={}, response=\"{response}\", algorithm={}",
        quoted(credentials.username),
        quoted(&c.realm),
        quoted(&c.nonce),
        quoted(uri),
        alg.token()
    );
    if let Some((nc, cnonce)) = qop {
        v.push_str(&format!(", cnonce={}, qop=auth, nc={nc}", quoted(cnonce)));
    }
    if let Some(o) = &c.opaque {
        v.push_str(&format!(", opaque={}", quoted(o)));
    }
    match c.role {
        Role::Server => Header::Authorization(v.into()),
        Role::Proxy => Header::ProxyAuthorization(v.into()),
    }
}

/// The Request-URI of a request as it goes on the wire: the digest `uri` of its answers.
pub fn request_uri_text(req: &Request) -> String {
    let mut out = Vec::with_capacity(64);
    crate::wire::push_uri(&mut out, &req.uri);
    String::from_utf8_lossy(&out).into_owned()
}

/// Answers `chosen` in `req` (a copy of the challenged request, with its new CSeq and Via
/// already set): any earlier answer for the same realm and header is replaced, one
/// header per challenge is added, each with a fresh cnonce from `entropy` and the next
/// count of its nonce.
pub fn authorize(
    req: &mut Request,
    chosen: &[&Challenge],
    credentials: ClientCredentials<'_>,
    counts: &mut NonceCounts,
    entropy: &mut Entropy,
) {
    let answered = |role: Role, value: &str| {
        let realm = parse_digest(value).and_then(|mut p| p.remove("realm"));
        chosen
            .iter()
            .any(|c| c.role == role && realm.as_deref() == Some(c.realm.as_str()))
    };
    req.headers.retain(|h| match h {
        Header::Authorization(a) => !answered(Role::Server, a.value()),
        Header::ProxyAuthorization(a) => !answered(Role::Proxy, a.value()),
        _ => true,
    });
    let method = crate::wire::method_name(&req.method);
    let uri = request_uri_text(req);
    for c in chosen {
        let nc = if c.qop_auth {
            counts.next(&c.realm, &c.nonce)
        } else {
            0
        };
        let cnonce = entropy.token();
        let h = answer(c, credentials, method, &uri, nc, &cnonce);
        // Credentials go before the body-related headers, as a UA writes them.
        let at = req
            .headers
            .iter()
            .position(|h| matches!(h, Header::ContentType(_) | Header::ContentLength(_)))
            .unwrap_or(req.headers.len());
        req.headers.0.insert(at, h);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Authenticator, Credential, DigestConfig, Secret, Verdict};
    use crate::msg::SipMessage;
    use crate::parse::{parse, Limits};
    use std::time::{Duration, Instant};

    /// RFC 7616 §3.9.1's example (an HTTP request: the computation is the same).
    const RFC7616: &str = "Digest realm=\"http-auth@example.org\", qop=\"auth, auth-int\", \
        algorithm=ALG, nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", \
        opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"";
    const MUFASA: ClientCredentials<'static> = ClientCredentials {
        username: "Mufasa",
        password: "Circle of Life",
    };
    const CNONCE: &str = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";

    fn param(h: &Header, name: &str) -> String {
        let v = match h {
            Header::Authorization(a) => a.value(),
            Header::ProxyAuthorization(a) => a.value(),
            _ => panic!("{h:?}"),
        };
        parse_digest(v).unwrap()[name].clone()
    }

    #[test]
    fn rfc_7616_md5_and_sha256_examples() {
        for (alg, expected) in [
            ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
            (
                "SHA-256",
                "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
            ),
        ] {
            let c = Challenge::parse(Role::Server, &RFC7616.replace("ALG", alg)).unwrap();
            assert!(c.qop_auth);
            let h = answer(&c, MUFASA, "GET", "/dir/index.html", 1, CNONCE);
            assert_eq!(param(&h, "response"), expected, "{alg}");
            assert_eq!(param(&h, "nc"), "00000001");
            assert_eq!(param(&h, "qop"), "auth");
            assert_eq!(param(&h, "cnonce"), CNONCE);
            assert_eq!(param(&h, "algorithm"), alg);
            assert_eq!(
                param(&h, "opaque"),
                "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"
            );
            assert!(matches!(h, Header::Authorization(_)));
        }
    }

    #[test]
    fn rfc_2617_md5_example() {
        let c = Challenge::parse(
            Role::Server,
            "Digest realm=\"testrealm@host.com\", qop=\"auth,auth-int\", \
             nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", \
             opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"",
        )
        .unwrap();
        let who = ClientCredentials {
            username: "Mufasa",
            password: "Circle Of Life",
        };
        let h = answer(&c, who, "GET", "/dir/index.html", 1, "0a4f113b");
        assert_eq!(param(&h, "response"), "6629fae49393a05397450978507c4ef1");
    }

    #[test]
    fn without_qop_the_rfc_2069_answer() {
        let c = Challenge::parse(Role::Proxy, "Digest realm=\"r\", nonce=\"n\"").unwrap();
        assert!(!c.qop_auth);
        let h = answer(&c, MUFASA, "INVITE", "sip:x@h", 7, "unused");
        assert!(matches!(h, Header::ProxyAuthorization(_)));
        let ha1 = Algorithm::Md5.hash("Mufasa:r:Circle of Life");
        let ha2 = Algorithm::Md5.hash("INVITE:sip:x@h");
        assert_eq!(
            param(&h, "response"),
            Algorithm::Md5.hash(&format!("{ha1}:n:{ha2}"))
        );
        let Header::ProxyAuthorization(v) = &h else {
            unreachable!()
        };
        assert!(!v.value().contains("nc="), "{v:?}");
        assert!(!v.value().contains("cnonce="), "{v:?}");
    }

    #[test]
    fn unusable_challenges_are_skipped() {
        for v in [
            "Basic realm=\"r\"",
            "Digest realm=\"r\", nonce=\"n\", algorithm=MD5-sess",
            "Digest realm=\"r\", nonce=\"n\", algorithm=SHA-512-256",
            "Digest realm=\"r\", nonce=\"n\", qop=\"auth-int\"",
            "Digest nonce=\"n\"",
            "Digest realm=\"r\"",
        ] {
            assert_eq!(Challenge::parse(Role::Proxy, v), None, "{v}");
        }
        let c = Challenge::parse(
            Role::Proxy,
            "Digest realm=\"r\", nonce=\"n\", stale=TRUE, algorithm=sha-256",
        )
        .unwrap();
        assert!(c.stale);
        assert_eq!(c.algorithm, Algorithm::Sha256);
    }

    fn response_with(headers: &str) -> Response {
        let text = format!(
            "SIP/2.0 407 Proxy Authentication Required\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
             From: <sip:a@h>;tag=1\r\nTo: <sip:b@h>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\
             {headers}Content-Length: 0\r\n\r\n"
        );
        match parse(text.as_bytes(), &Limits::default()).unwrap() {
            SipMessage::Response(r) => r,
            _ => unreachable!(),
        }
    }

    #[test]
    fn sha256_is_chosen_over_md5_in_either_order_one_per_realm() {
        for order in [["MD5", "SHA-256"], ["SHA-256", "MD5"]] {
            let headers: String = order
                .iter()
                .map(|a| {
                    format!(
                        "Proxy-Authenticate: Digest realm=\"carrier\", nonce=\"n-{a}\", algorithm={a}, qop=\"auth\"\r\n"
                    )
                })
                .chain(std::iter::once(
                    "Proxy-Authenticate: Digest realm=\"other\", nonce=\"o\", qop=\"auth\"\r\n"
                        .to_string(),
                ))
                .collect();
            let all = challenges(&response_with(&headers));
            assert_eq!(all.len(), 3);
            let chosen = choose(&all, |_| true);
            assert_eq!(chosen.len(), 2, "{chosen:?}");
            assert_eq!(chosen[0].realm, "carrier");
            assert_eq!(chosen[0].algorithm, Algorithm::Sha256);
            assert_eq!(chosen[0].nonce, "n-SHA-256");
            assert_eq!(chosen[1].realm, "other");
            // The account's realm only.
            let only = choose(&all, |r| r == "other");
            assert_eq!(only.len(), 1);
            assert_eq!(only[0].realm, "other");
            assert!(choose(&all, |r| r == "nowhere").is_empty());
        }
    }

    #[test]
    fn nonce_counts_grow_per_nonce_and_are_bounded() {
        let mut n = NonceCounts::new(2);
        assert_eq!(n.next("r", "a"), 1);
        assert_eq!(n.next("r", "a"), 2);
        assert_eq!(n.next("r", "b"), 1);
        assert_eq!(n.next("s", "a"), 1, "a nonce is counted per realm");
        assert_eq!(n.len(), 2);
        assert_eq!(n.next("r", "a"), 1, "the oldest was forgotten");
    }

    fn request(text: &str) -> Request {
        match parse(text.as_bytes(), &Limits::default()).unwrap() {
            SipMessage::Request(r) => r,
            _ => unreachable!(),
        }
    }

    /// The answers this client makes are the ones the authenticator accepts: both sides
    /// share one computation, and a second answer with the same nonce counts up.
    #[test]
    fn our_answers_pass_our_own_authenticator() {
        let src: std::net::IpAddr = "127.0.0.9".parse().unwrap();
        let t0 = Instant::now();
        let mut server = Authenticator::new(
            DigestConfig {
                realm: "carrier.example".into(),
                nonce_lifetime: Duration::from_secs(60),
                max_tracked_nonces: 10,
                algorithms: vec![Algorithm::Sha256, Algorithm::Md5],
            },
            t0,
            Entropy::from_seed([1; 32]),
        );
        let ch_headers: String = server
            .challenge(false, Role::Proxy, src, t0)
            .iter()
            .map(|h| {
                format!(
                    "{}: {}\r\n",
                    crate::wire::header_parts(h).0,
                    crate::wire::header_parts(h).1
                )
            })
            .collect();
        let all = challenges(&response_with(&ch_headers));
        let chosen = choose(&all, |_| true);
        assert_eq!(chosen.len(), 1);
        assert_eq!(chosen[0].algorithm, Algorithm::Sha256);
        let mut req = request(
            "INVITE sip:+441632960000@192.0.2.1:5080 SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK2\r\n\
             Max-Forwards: 70\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:+441632960000@h>\r\nCall-ID: c\r\n\
             CSeq: 2 INVITE\r\nProxy-Authorization: Digest username=\"x\", realm=\"carrier.example\", \
             nonce=\"old\", uri=\"sip:x\", response=\"0\"\r\nContent-Length: 0\r\n\r\n",
        );
        let mut counts = NonceCounts::new(8);
        let mut rng = Entropy::from_seed([2; 32]);
        let who = ClientCredentials {
            username: "acct",
            password: "pw",
        };
        authorize(&mut req, &chosen, who, &mut counts, &mut rng);
        let ours: Vec<&Header> = req
            .headers
            .iter()
            .filter(|h| matches!(h, Header::ProxyAuthorization(_)))
            .collect();
        assert_eq!(
            ours.len(),
            1,
            "the earlier answer for the realm is replaced"
        );
        assert_eq!(param(ours[0], "uri"), "sip:+441632960000@192.0.2.1:5080");
        assert_eq!(param(ours[0], "nc"), "00000001");
        let lookup = |_: &str| {
            Some(Credential {
                secret: Secret::Password("pw".into()),
                algorithms: vec![Algorithm::Sha256, Algorithm::Md5],
            })
        };
        assert_eq!(
            server.verify(&req, Role::Proxy, src, lookup, t0),
            Verdict::Authenticated {
                username: "acct".into()
            }
        );
        // The same nonce again: counted up, accepted (a replayed count would not be).
        authorize(&mut req, &chosen, who, &mut counts, &mut rng);
        assert!(req.headers.iter().any(
            |h| matches!(h, Header::ProxyAuthorization(a) if a.value().contains("nc=00000002"))
        ));
        assert!(matches!(
            server.verify(&req, Role::Proxy, src, lookup, t0),
            Verdict::Authenticated { .. }
        ));
        // A wrong password fails.
        let wrong = ClientCredentials {
            username: "acct",
            password: "nope",
        };
        authorize(&mut req, &chosen, wrong, &mut counts, &mut rng);
        assert!(matches!(
            server.verify(&req, Role::Proxy, src, lookup, t0),
            Verdict::Failed { .. }
        ));
    }

    #[test]
    fn quotes_in_values_are_escaped() {
        let c = Challenge::parse(Role::Server, r#"Digest realm="a\"b", nonce="n""#).unwrap();
        assert_eq!(c.realm, "a\"b");
        let h = answer(&c, MUFASA, "BYE", "sip:x", 1, "c");
        assert_eq!(param(&h, "realm"), "a\"b");
    }
}
