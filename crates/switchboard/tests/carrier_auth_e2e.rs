//! Calls leaving through a trunk whose carrier wants credentials, end to end: the real
//! daemon, Kamailio as the carrier (`tests/kamailio/carrier.cfg`: the auth module
//! challenges INVITEs with 407, a plain password, no database; in-dialog requests must
//! number on as RFC 3261 §12.2.2 says, or get 500), a SIPp server behind it standing in for
//! the telephone network, and a SIPp phone of a user that dials out: answered calls (MD5,
//! SHA-256), BYE from either side, a re-INVITE, a carrier that challenges the re-INVITE and
//! the BYE too, a CANCEL, a wrong password. Loopback only: the carrier at 127.0.0.2 (the
//! trunk's source), everything else at 127.0.0.1.

mod common;

use common::*;
use std::path::Path;
use std::time::Duration;

/// How long a SIPp server waits for its calls to end at most.
const LIMIT: Duration = Duration::from_secs(40);
/// The number alice dials (the trunk carries `+33…`).
const DIALLED: &str = "+33140000000";
const REALM_OF_CARRIER: &str = common::carrier::ACCOUNT_REALM;
const AUTH_USER: &str = common::carrier::ACCOUNT_AUTH_USER;
const PASSWORD: &str = common::carrier::ACCOUNT_PASSWORD;

/// Kamailio as the carrier on 127.0.0.2 (`tests/kamailio/carrier.cfg`) on `port`
/// (`pstn`: the SIPp server's port; `flags`: `WITH_SHA256`, `WITH_DIALOG_AUTH`).
fn carrier(dir: &Path, port: u16, pstn: u16, flags: &[&str]) -> Kamailio {
    let addr = format!("127.0.0.2:{port}").parse().unwrap();
    common::carrier::challenging_carrier(dir, addr, pstn, flags)
}

/// The daemon's policy: alice, and the carrier's trunk with our account there.
fn policy(carrier: u16, password: &str) -> String {
    format!(
        r#"
[users.alice]
extension = "1001"
[users.alice.sip]
password = "alice-secret"
algorithms = ["md5"]

[trunks.carrier]
sources = ["127.0.0.2/32"]
uri = "sip:127.0.0.2:{carrier}"
outbound = ["+33*"]
[trunks.carrier.account]
username = "441632960999"
password = "{password}"
auth_username = "{AUTH_USER}"
realm = "{REALM_OF_CARRIER}"
"#
    )
}

/// The pieces of one test: the far end (when there is one), the carrier, the daemon.
struct Net {
    pstn: Option<Uas>,
    carrier: Kamailio,
    d: Daemon,
}

/// A far end running `pstn` (one call, `args`), Kamailio with `flags` in front of it,
/// the daemon with the account's `password`.
fn net(pstn: Option<(&str, &[&str])>, flags: &[&str], password: &str) -> Net {
    let pstn = pstn.map(|(scenario, args)| Uas::start(scenario, 1, args));
    // With no far end, authenticated INVITEs would go to a port nobody listens on.
    let pstn_port = pstn.as_ref().map_or_else(free_port, |u| u.port);
    let carrier_port = free_port();
    let d = Daemon::start(Options {
        policy: policy(carrier_port, password),
        ..Options::default()
    });
    // Its work directory and log live in the daemon's test directory.
    let carrier = carrier(d.dir.path(), carrier_port, pstn_port, flags);
    Net { pstn, carrier, d }
}

/// alice dials out with `scenario` (`extra` as the scenario reads it).
fn alice_dials(n: &Net, scenario: &str, extra: &str) -> SippRun {
    Sipp::new(&n.d, scenario)
        .row(call_row("alice", "alice-secret", DIALLED, extra))
        .auth_uri(&format!("{DIALLED}@{REALM}"))
        .run()
}

/// Fails with everything the peers saw unless the run passed.
fn ok(n: &Net, r: SippRun) -> SippRun {
    passed_via(r, &n.d, &n.carrier)
}

/// The far end's run, which must have passed.
fn pstn_ok(n: &mut Net) -> SippRun {
    let run = n.pstn.take().expect("a far end").finish(LIMIT);
    ok(n, run)
}

/// alice saw no challenge of the carrier's: one challenge in all (retransmissions aside),
/// the daemon's own (for its realm, to her first INVITE, which had no credentials).
fn no_carrier_challenge(r: &SippRun) {
    let mut challenged = std::collections::BTreeSet::new();
    for m in r.received() {
        assert!(
            !m.contains(REALM_OF_CARRIER),
            "alice got something of the carrier's realm:\n{m}"
        );
        if m.starts_with("SIP/2.0 407") || m.starts_with("SIP/2.0 401") {
            assert!(m.contains(&format!("realm=\"{REALM}\"")), "{m}");
            challenged.insert(header_values(&m, "CSeq").join(""));
        }
    }
    assert_eq!(challenged.len(), 1, "{challenged:?}\n{}", r.report());
}

/// The carrier's log says the CSeq rule held for every request of alice's side.
fn cseq_kept(n: &Net) {
    let bad = n.carrier.lines("CSEQ-BAD");
    assert!(bad.is_empty(), "{bad:?}\n{}", n.carrier.log());
}

#[test]
fn a_challenged_call_is_answered_and_the_callers_bye_accepted() {
    let mut n = net(Some(("uas_answer.xml", &[])), &[], PASSWORD);
    let r = ok(&n, alice_dials(&n, "call_answered.xml", "300"));
    no_carrier_challenge(&r);
    let bye_answers: Vec<u16> = r
        .received()
        .iter()
        .filter(|m| m.starts_with("SIP/2.0 "))
        .filter(|m| header_values(m, "CSeq").join("").ends_with("BYE"))
        .map(|m| status_of(m))
        .collect();
    assert_eq!(bye_answers, vec![200], "{}", r.report());
    pstn_ok(&mut n);
    // alice's INVITE with her credentials is CSeq 2: the carrier challenged it as 2 and
    // took it with the account's credentials as 3; her ACK (2) and BYE (3) reached it as
    // 3 and 4.
    assert_eq!(
        n.carrier.lines("CHALLENGED"),
        [format!("CHALLENGED INVITE cseq=2 call={}", call_id(&r))]
    );
    let ok_lines = n.carrier.lines("AUTH-OK");
    assert_eq!(ok_lines.len(), 1, "{ok_lines:?}");
    assert!(
        ok_lines[0].starts_with(&format!("AUTH-OK INVITE cseq=3 user={AUTH_USER} ")),
        "{ok_lines:?}"
    );
    assert_eq!(
        n.carrier.lines("CSEQ-OK"),
        ["CSEQ-OK ACK cseq=3", "CSEQ-OK BYE cseq=4"]
    );
    cseq_kept(&n);
}

/// The Call-ID of alice's call.
fn call_id(r: &SippRun) -> String {
    r.received()
        .first()
        .and_then(|m| header_values(m, "Call-ID").into_iter().next())
        .unwrap_or_default()
}

#[test]
fn sha256_and_a_reinvite_after_the_authenticated_invite() {
    let mut n = net(Some(("uas_answer.xml", &[])), &["WITH_SHA256"], PASSWORD);
    let r = ok(&n, alice_dials(&n, "call_reinvite.xml", "300"));
    no_carrier_challenge(&r);
    assert_eq!(r.logged("reinvite"), ["200"], "{}", r.report());
    let pstn = pstn_ok(&mut n);
    assert_eq!(
        pstn.requests("INVITE").len(),
        2,
        "the INVITE and the re-INVITE"
    );
    assert_eq!(n.carrier.lines("AUTH-OK").len(), 1);
    assert_eq!(
        n.carrier.lines("CSEQ-OK"),
        [
            "CSEQ-OK ACK cseq=3",
            "CSEQ-OK INVITE cseq=4",
            "CSEQ-OK ACK cseq=4",
            "CSEQ-OK BYE cseq=5"
        ]
    );
    cseq_kept(&n);
}

#[test]
fn the_far_ends_bye_reaches_the_caller() {
    let mut n = net(
        Some(("uas_answer_callee_hangs_up.xml", &["-d", "500"])),
        &[],
        PASSWORD,
    );
    let r = ok(&n, alice_dials(&n, "call_callee_hangs_up.xml", ""));
    no_carrier_challenge(&r);
    let byes = r.requests("BYE");
    assert_eq!(byes.len(), 1, "{}", r.report());
    // The carrier's side numbers its own requests: they reach alice as they are.
    assert_eq!(header_values(&byes[0], "CSeq"), ["1 BYE"]);
    pstn_ok(&mut n);
    assert_eq!(n.carrier.lines("CSEQ-OK"), ["CSEQ-OK ACK cseq=3"]);
    cseq_kept(&n);
}

#[test]
fn a_carrier_that_challenges_the_reinvite_and_the_bye_too() {
    let mut n = net(
        Some(("uas_answer.xml", &[])),
        &["WITH_DIALOG_AUTH"],
        PASSWORD,
    );
    let r = ok(&n, alice_dials(&n, "call_reinvite.xml", "300"));
    no_carrier_challenge(&r);
    pstn_ok(&mut n);
    let challenged: Vec<String> = n
        .carrier
        .lines("CHALLENGED")
        .iter()
        .map(|l| l.split(" call=").next().unwrap_or("").to_string())
        .collect();
    // alice's re-INVITE (3) and BYE (4) left as 4 and 6; each challenged, each sent again
    // one higher: the offset grew from 1 to 3.
    assert_eq!(
        challenged,
        [
            "CHALLENGED INVITE cseq=2",
            "CHALLENGED INVITE cseq=4",
            "CHALLENGED BYE cseq=6"
        ]
    );
    let authed: Vec<String> = n
        .carrier
        .lines("AUTH-OK")
        .iter()
        .map(|l| l.split(" user=").next().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        authed,
        [
            "AUTH-OK INVITE cseq=3",
            "AUTH-OK INVITE cseq=5",
            "AUTH-OK BYE cseq=7"
        ]
    );
    cseq_kept(&n);
}

#[test]
fn a_wrong_password_gives_the_caller_a_failure() {
    let n = net(None, &[], "not-the-password");
    let r = ok(&n, alice_dials(&n, "call_expect_final.xml", "403"));
    assert_eq!(r.finals(), vec![403], "{}", r.report());
    no_carrier_challenge(&r);
    let refused = r
        .received()
        .into_iter()
        .find(|m| m.starts_with("SIP/2.0 403"))
        .unwrap();
    assert!(
        header_values(&refused, "Reason")
            .join(" ")
            .contains("cause=407"),
        "{refused}"
    );
    // Challenged, answered once, challenged again: never through.
    assert_eq!(
        n.carrier.lines("CHALLENGED").len(),
        2,
        "{}",
        n.carrier.log()
    );
    assert!(n.carrier.lines("AUTH-OK").is_empty());
    assert!(
        n.d.log_contains("trunk authentication failed"),
        "{}",
        n.d.log()
    );
}

#[test]
fn the_callers_cancel_cancels_the_authenticated_invite() {
    let mut n = net(Some(("uas_ring_cancelled.xml", &[])), &[], PASSWORD);
    let r = ok(&n, alice_dials(&n, "call_cancel.xml", "500"));
    no_carrier_challenge(&r);
    // The carrier matched the CANCEL to the INVITE it had authenticated (same branch,
    // same number): it reached the far end, which ended the call 487.
    let pstn = pstn_ok(&mut n);
    let cancels = pstn.requests("CANCEL");
    assert_eq!(cancels.len(), 1, "{}", pstn.report());
    assert_eq!(header_values(&cancels[0], "CSeq"), ["3 CANCEL"]);
}
