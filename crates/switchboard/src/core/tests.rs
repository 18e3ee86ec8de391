//! The core driven directly: REGISTER, the ledger, the digest gate, draining.
use super::*;

use switchboard_sip::auth::{parse_digest, Algorithm};
use switchboard_sip::parse::{parse, Limits};

const POLICY: &str = "[users.alice]\nextension = \"1001\"\n[users.alice.sip]\npassword = \"pw\"\nalgorithms = [\"md5\"]\n";

fn core(t0: Instant) -> Core {
    core_with(t0, POLICY, &switchboard_sip::auth::DEFAULT_ALGORITHMS)
}

fn core_with(t0: Instant, policy: &str, algorithms: &[Algorithm]) -> Core {
    let config = CoreConfig {
        auth_algorithms: algorithms.to_vec(),
        max_failures: 3,
        ..crate::test_harness::config(true)
    };
    Core::new(
        config,
        crate::test_harness::snapshot(policy),
        vec!["udp:127.0.0.1:5060".parse().unwrap()],
        at(t0, 0),
    )
}

fn at(t0: Instant, s: u64) -> Now {
    Now {
        mono: t0 + Duration::from_secs(s),
        unix: 1_800_000_000 + s,
    }
}

fn peer() -> Peer {
    Peer::udp("127.0.0.1:5070".parse().unwrap())
}

fn register(cseq: u32, branch: &str, expires: u32, auth: Option<&str>) -> Inbound {
    let text = format!(
        "REGISTER sip:switchboard.local SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;rport;branch=z9hG4bK{branch}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@switchboard.local>;tag=1\r\nTo: <sip:alice@switchboard.local>\r\n\
         Call-ID: reg-1\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:alice@127.0.0.1:5070>\r\nExpires: {expires}\r\n{}\
         Content-Length: 0\r\n\r\n",
        auth.map(|a| format!("Authorization: {a}\r\n")).unwrap_or_default()
    );
    Inbound::Message {
        msg: parse(text.as_bytes(), &Limits::default()).unwrap(),
        peer: peer(),
        local: "127.0.0.1:5060".parse().unwrap(),
    }
}

fn outputs(c: &mut Core) -> Vec<Output> {
    std::iter::from_fn(|| c.poll_output()).collect()
}

fn sent(o: &[Output]) -> Vec<String> {
    o.iter()
        .filter_map(|o| match o {
            Output::Send { bytes, .. } => Some(String::from_utf8_lossy(bytes).to_string()),
            _ => None,
        })
        .collect()
}

/// Answers the challenge in `resp` as a phone would.
fn answer(resp: &str, nc: u32) -> String {
    let line = resp
        .lines()
        .find(|l| l.starts_with("WWW-Authenticate:"))
        .unwrap();
    let p = parse_digest(line.trim_start_matches("WWW-Authenticate:").trim()).unwrap();
    let nonce = &p["nonce"];
    let ha1 = Algorithm::Md5.hash("alice:switchboard.local:pw");
    let ha2 = Algorithm::Md5.hash("REGISTER:sip:switchboard.local");
    let nc = format!("{nc:08x}");
    let r = Algorithm::Md5.hash(&format!("{ha1}:{nonce}:{nc}:abc:auth:{ha2}"));
    format!(
        "Digest username=\"alice\", realm=\"switchboard.local\", nonce=\"{nonce}\", uri=\"sip:switchboard.local\", \
         response=\"{r}\", algorithm=MD5, qop=auth, nc={nc}, cnonce=\"abc\""
    )
}

/// Registers alice; returns the token of the pending store write.
fn challenge_and_answer(c: &mut Core, t0: Instant, expires: u32) -> u64 {
    c.handle(Input::Inbound(register(1, "a", expires, None)), at(t0, 0));
    let out = sent(&outputs(c));
    assert!(out[0].starts_with("SIP/2.0 401"), "{out:?}");
    let auth = answer(&out[0], 1);
    c.handle(
        Input::Inbound(register(2, "b", expires, Some(&auth))),
        at(t0, 0),
    );
    let out = outputs(c);
    assert!(
        sent(&out).is_empty(),
        "no answer before the binding is durable: {out:?}"
    );
    match &out[..] {
        [Output::Persist { token, writes }] => {
            assert_eq!(writes.len(), 1);
            assert_eq!(writes[0].table, switchboard_store::tables::BINDINGS);
            *token
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn register_is_answered_only_once_durable() {
    let t0 = Instant::now();
    let mut c = core(t0);
    let token = challenge_and_answer(&mut c, t0, 600);
    assert_eq!(c.pending(), 1);
    // A retransmission while waiting is absorbed: still no answer.
    let out = outputs(&mut c);
    assert!(out.is_empty());
    c.handle(Input::Persisted { token, ok: true }, at(t0, 0));
    let out = sent(&outputs(&mut c));
    assert!(out[0].starts_with("SIP/2.0 200 OK"), "{out:?}");
    assert!(
        out[0].contains("Contact: <sip:alice@127.0.0.1:5070>;expires=600"),
        "{out:?}"
    );
    assert_eq!(c.registrar().len(), 1);
    assert_eq!(c.pending(), 0);
}

#[test]
fn store_failure_answers_500_and_rolls_back() {
    let t0 = Instant::now();
    let mut c = core(t0);
    let token = challenge_and_answer(&mut c, t0, 600);
    c.handle(Input::Persisted { token, ok: false }, at(t0, 0));
    let out = sent(&outputs(&mut c));
    assert!(out[0].starts_with("SIP/2.0 500"), "{out:?}");
    assert!(!out[0].contains("Contact:"), "{out:?}");
    assert!(out[0].contains("Retry-After: 5"), "{out:?}");
    assert!(c.registrar().is_empty());
    assert_eq!(c.stats().store_failures, 1);
}

#[test]
fn expiry_fires_from_poll_timeout_and_is_persisted() {
    let t0 = Instant::now();
    let mut c = core(t0);
    let token = challenge_and_answer(&mut c, t0, 60);
    c.handle(Input::Persisted { token, ok: true }, at(t0, 0));
    outputs(&mut c);
    let wake = c.poll_timeout(at(t0, 0)).unwrap();
    assert!(wake <= t0 + Duration::from_secs(60));
    c.handle(Input::Timeout, at(t0, 61));
    let out = outputs(&mut c);
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::Persist { writes, .. } if writes[0].value.is_none())));
    assert!(c.registrar().is_empty());
}

#[test]
fn draining_refuses_new_requests_with_503() {
    let t0 = Instant::now();
    let mut c = core(t0);
    c.handle(Input::Drain, at(t0, 0));
    c.handle(Input::Inbound(register(1, "a", 600, None)), at(t0, 0));
    let out = sent(&outputs(&mut c));
    assert!(out[0].starts_with("SIP/2.0 503"), "{out:?}");
}

#[test]
fn presence_change_is_answered_once_durable_and_rolled_back_on_failure() {
    use crate::presence_service::{Command, Request};
    use switchboard_presence::model::Interface;
    let t0 = Instant::now();
    let mut c = core(t0);
    let req = |status: &str| Request {
        who: "alice".into(),
        admin: false,
        via: Interface::Api,
        command: Command::SetStatus {
            user: "alice".into(),
            status: status.into(),
            text: None,
            until: None,
        },
    };
    c.handle(
        Input::Command {
            id: 1,
            req: req("dnd"),
        },
        at(t0, 0),
    );
    let token = match &outputs(&mut c)[..] {
        [Output::Persist { token, writes }] => {
            assert_eq!(writes[0].table, switchboard_store::tables::PRESENCE);
            *token
        }
        other => panic!("no answer before the change is durable: {other:?}"),
    };
    c.handle(Input::Persisted { token, ok: false }, at(t0, 0));
    match &outputs(&mut c)[..] {
        [Output::Reply { id: 1, reply }] => assert!(
            matches!(&**reply, Err(e) if e.kind == ErrorKind::Unavailable),
            "{reply:?}"
        ),
        other => panic!("{other:?}"),
    }
    // Rolled back: still available.
    let avail = c.presence().model().get("alice").unwrap().availability;
    assert_eq!(avail.as_str(), "available");
    c.handle(
        Input::Command {
            id: 2,
            req: req("away"),
        },
        at(t0, 1),
    );
    let Some(Output::Persist { token, .. }) = c.poll_output() else {
        panic!()
    };
    c.handle(Input::Persisted { token, ok: true }, at(t0, 1));
    match &outputs(&mut c)[..] {
        [Output::Reply { id: 2, reply }] => assert!(
            matches!(&**reply, Ok(presence_service::Answer::Person(p)) if p.availability.as_str() == "away"),
            "{reply:?}"
        ),
        other => panic!("{other:?}"),
    }
}

/// The WWW-Authenticate values of the 401 a REGISTER for `user` gets, nonces blanked.
fn challenge_for(c: &mut Core, t0: Instant, user: &str, branch: &str) -> Vec<String> {
    let text = format!(
        "REGISTER sip:switchboard.local SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;rport;branch=z9hG4bK{branch}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:{user}@switchboard.local>;tag=1\r\nTo: <sip:{user}@switchboard.local>\r\n\
         Call-ID: reg-{branch}\r\nCSeq: 1 REGISTER\r\nContact: <sip:{user}@127.0.0.1:5070>\r\n\
         Content-Length: 0\r\n\r\n"
    );
    let inbound = Inbound::Message {
        msg: parse(text.as_bytes(), &Limits::default()).unwrap(),
        peer: peer(),
        local: "127.0.0.1:5060".parse().unwrap(),
    };
    c.handle(Input::Inbound(inbound), at(t0, 0));
    let out = sent(&outputs(c));
    assert!(out[0].starts_with("SIP/2.0 401"), "{user}: {out:?}");
    out[0]
        .lines()
        .filter_map(|l| l.strip_prefix("WWW-Authenticate: "))
        .map(|v| {
            let nonce = &parse_digest(v).unwrap()["nonce"];
            assert!(!nonce.is_empty());
            v.replace(nonce.as_str(), "N")
        })
        .collect()
}

#[test]
fn the_challenge_is_the_same_for_every_user_name() {
    let policy = format!(
        "{POLICY}[users.sha]\nextension = \"1002\"\n[users.sha.sip]\npassword = \"pw\"\nalgorithms = [\"sha-256\"]\n\
         [users.both]\nextension = \"1003\"\n[users.both.sip]\npassword = \"pw\"\nalgorithms = [\"sha-256\", \"md5\"]\n\
         [users.plain]\nextension = \"1004\"\n[users.plain.sip]\npassword = \"pw\"\n"
    );
    let t0 = Instant::now();
    for offered in [
        &switchboard_sip::auth::DEFAULT_ALGORITHMS[..],
        &[Algorithm::Sha256, Algorithm::Md5][..],
    ] {
        let mut c = core_with(t0, &policy, offered);
        let ghost = challenge_for(&mut c, t0, "ghost", "g");
        let tokens: Vec<String> = offered
            .iter()
            .map(|a| format!("algorithm={}", a.token()))
            .collect();
        assert_eq!(ghost.len(), offered.len(), "{ghost:?}");
        for (h, t) in ghost.iter().zip(&tokens) {
            assert!(h.contains(t.as_str()), "{ghost:?}");
        }
        for user in ["alice", "sha", "both", "plain"] {
            let known = challenge_for(&mut c, t0, user, user);
            assert_eq!(known, ghost, "{user} is told apart from an unknown name");
        }
    }
}

#[test]
fn replayed_authorization_is_refused() {
    let t0 = Instant::now();
    let mut c = core(t0);
    c.handle(Input::Inbound(register(1, "a", 600, None)), at(t0, 0));
    let challenge = sent(&outputs(&mut c)).remove(0);
    let auth = answer(&challenge, 1);
    c.handle(
        Input::Inbound(register(2, "b", 600, Some(&auth))),
        at(t0, 0),
    );
    let Some(Output::Persist { token, .. }) = c.poll_output() else {
        panic!()
    };
    c.handle(Input::Persisted { token, ok: true }, at(t0, 0));
    outputs(&mut c);
    // The same nonce-count again, in a new transaction: a replay.
    c.handle(
        Input::Inbound(register(3, "c", 600, Some(&auth))),
        at(t0, 1),
    );
    let out = sent(&outputs(&mut c));
    assert!(out[0].starts_with("SIP/2.0 403"), "{out:?}");
}
