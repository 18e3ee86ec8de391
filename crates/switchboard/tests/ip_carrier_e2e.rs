//! A carrier that knows its PBX by address, end to end: the real daemon, Kamailio as the
//! carrier (`tests/kamailio/ip_carrier.cfg`: no registration, no challenge; calls from the
//! PBX's address go to the telephone network, calls from the network go to the PBX) and
//! SIPp as the network behind it (at 127.0.0.3) and as the PBX's phones. The trunk is known
//! by its `sources`; it has no account. Calls both ways through a DID, with BYE from either
//! side. Loopback only.

mod common;

use common::*;
use std::net::SocketAddr;
use std::time::Duration;

/// How long a SIPp server waits for its calls to end at most.
const LIMIT: Duration = Duration::from_secs(40);
/// The trunk's number, which rings bob (the carrier sends it nationally: 01632 960000).
const DID: &str = "+441632960000";
const DID_AS_SENT: &str = "01632960000";
/// A number alice dials out through the trunk, nationally; it leaves as +44….
const DIALLED: &str = "07700900123";
/// The network behind the carrier: its callers and its far ends.
const PSTN_IP: &str = "127.0.0.3";

/// The daemon's policy: alice and bob, and the carrier's trunk, known by its address.
fn policy(carrier: SocketAddr) -> String {
    format!(
        r#"{POLICY}
[trunks.carrier]
sources = ["{ip}/32"]
uri = "sip:{carrier}"
country_code = "44"
outbound = ["+44*"]
dids = {{ "{DID}" = "user:bob" }}
"#,
        ip = carrier.ip()
    )
}

/// The carrier, the daemon, and the port of the network's far end.
struct Net {
    carrier: Kamailio,
    carrier_addr: SocketAddr,
    pstn_port: u16,
    d: Daemon,
    _dir: tempfile::TempDir,
}

fn net() -> Net {
    let dir = tempfile::Builder::new()
        .prefix("carrier-by-address-")
        .tempdir()
        .unwrap();
    let pstn_port = free_port();
    let carrier_addr: SocketAddr = format!("127.0.0.2:{}", free_port()).parse().unwrap();
    // The daemon first: the carrier needs its port.
    let d = Daemon::start(Options {
        policy: policy(carrier_addr),
        ..Options::default()
    });
    let carrier = Kamailio::start(
        "ip_carrier.cfg",
        dir.path(),
        carrier_addr,
        &[
            "PBX_IP=\"127.0.0.1\"".to_string(),
            format!("PBX=\"127.0.0.1:{}\"", d.port),
            format!("PSTN=\"sip:{PSTN_IP}:{pstn_port}\""),
        ],
    );
    Net {
        carrier,
        carrier_addr,
        pstn_port,
        d,
        _dir: dir,
    }
}

/// Fails with everything the peers saw unless the run passed.
fn ok(n: &Net, r: SippRun) -> SippRun {
    passed_via(r, &n.d, &n.carrier)
}

/// A caller of the network dials the DID through the carrier with `scenario`.
fn network_calls(n: &Net, scenario: &str, extra: &str) -> SippRun {
    call_through(&n.d, n.carrier_addr, PSTN_IP, DID_AS_SENT, scenario, extra)
}

#[test]
fn calls_both_ways_through_a_carrier_that_knows_us_by_address() {
    let n = net();
    // The network calls the DID, written nationally: bob answers; the caller hangs up.
    let bob = registered_phone(&n.d, "bob", "bob-secret", "uas_answer.xml", &[]);
    let r = ok(&n, network_calls(&n, "trunk_call_answered.xml", "300"));
    assert_eq!(r.finals(), vec![200]);
    let bob = ok(&n, bob.finish(LIMIT));
    let invite = &bob.requests("INVITE")[0];
    assert!(invite.contains("+447700900123"), "the caller: {invite}");
    assert_eq!(n.carrier.lines("INBOUND").len(), 1, "{}", n.carrier.log());

    // Again, and bob hangs up: his BYE reaches the network's caller through the carrier.
    let bob = registered_phone(
        &n.d,
        "bob",
        "bob-secret",
        "uas_answer_callee_hangs_up.xml",
        &["-d", "300"],
    );
    let r = ok(&n, network_calls(&n, "trunk_call_callee_hangs_up.xml", ""));
    assert_eq!(r.requests("BYE").len(), 1, "{}", r.report());
    ok(&n, bob.finish(LIMIT));

    // alice dials out nationally: the carrier gets +44… (the trunk's numbers are E.164),
    // no challenge on either side of it; the far end answers, alice hangs up.
    let pstn = Uas::start_on(PSTN_IP, n.pstn_port, "uas_answer.xml", 1, &[]);
    let r = Sipp::new(&n.d, "call_answered.xml")
        .row(call_row("alice", "alice-secret", DIALLED, "300"))
        .auth_uri(&format!("{DIALLED}@{REALM}"))
        .run();
    ok(&n, r);
    let far = ok(&n, pstn.finish(LIMIT));
    let out = n.carrier.lines("OUTBOUND");
    assert_eq!(out.len(), 1, "{}", n.carrier.log());
    assert!(out[0].starts_with("OUTBOUND to=+447700900123 "), "{out:?}");
    assert_eq!(far.requests("BYE").len(), 1, "{}", far.report());
}
