//! A carrier that knows its PBX by address, end to end: the real daemon, Kamailio as the
//! carrier (`tests/kamailio/ip_carrier.cfg`: no registration, no challenge; calls from the
//! PBX's address go to the telephone network, calls from the network go to the PBX) and
//! SIPp as the network behind it (at 127.0.0.3) and as the PBX's phones. The trunk is known
//! by its `sources`; it has no account. Calls both ways through a DID, with BYE from either
//! side. Loopback only.

mod common;

use common::carrier::*;
use common::*;
use std::net::SocketAddr;

/// The trunk's number, which rings bob (the carrier sends it nationally: 01632 960000).
const DID: &str = "+441632960000";
const DID_AS_SENT: &str = "01632960000";
/// A number alice dials out through the trunk, nationally; it leaves as +44….
const DIALLED: &str = "07700900123";

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

type Net = CarrierNet;

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

#[test]
fn calls_both_ways_through_a_carrier_that_knows_us_by_address() {
    let n = net();
    // The network calls the DID, written nationally: bob answers; the caller hangs up.
    n.caller_hangs_up(DID_AS_SENT);
    assert_eq!(n.carrier.lines("INBOUND").len(), 1, "{}", n.carrier.log());
    // Again, and bob hangs up: his BYE reaches the network's caller through the carrier.
    n.bob_hangs_up(DID_AS_SENT);

    // alice dials out nationally: the carrier gets +44… (the trunk's numbers are E.164),
    // no challenge on either side of it; the far end answers, alice hangs up.
    n.alice_calls_out(DIALLED);
    let out = n.carrier.lines("OUTBOUND");
    assert_eq!(out.len(), 1, "{}", n.carrier.log());
    assert!(out[0].starts_with("OUTBOUND to=+447700900123 "), "{out:?}");
}
