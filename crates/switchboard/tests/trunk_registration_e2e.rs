//! A trunk that registers with its carrier, end to end: the real daemon, Kamailio as a
//! carrier that wants its PBX to register (`tests/kamailio/registrar.cfg`: registrar and
//! usrloc in memory, the auth module challenging REGISTERs with 401 and the PBX's INVITEs
//! with 407, a plain password), SIPp as the telephone network behind it (at 127.0.0.3) and
//! as the PBX's phones. The trunk has no `sources`: the carrier's calls are known by the
//! contact it registered. Calls both ways through a DID with BYE from either side,
//! `GET /v1/trunks` and `switchboard trunks`, a `kill -9` and a new start that registers
//! again, a stop that unregisters, and a stranger who writes the contact. Loopback only.

mod common;

use common::carrier::*;
use common::*;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

/// How long a registration may take at most.
const REGISTERING: Duration = Duration::from_secs(20);
const REALM_OF_CARRIER: &str = "carrier.example";
/// The account's user name at the carrier (the address of record)…
const ACCOUNT: &str = "pbx-7";
/// …and the digest user name the carrier gave it.
const AUTH_USER: &str = "acct-7";
const PASSWORD: &str = "trunk-secret";
/// The trunk's number, which rings bob.
const DID: &str = "+441632960000";
/// A number alice dials out through the trunk.
const DIALLED: &str = "+33140000000";

/// The daemon's policy: alice and bob, and the carrier's trunk, whose account registers.
fn policy(carrier: SocketAddr) -> String {
    format!(
        r#"{POLICY}
[trunks.carrier]
uri = "sip:{carrier}"
outbound = ["+33*"]
dids = {{ "{DID}" = "user:bob" }}
[trunks.carrier.account]
username = "{ACCOUNT}"
password = "{PASSWORD}"
auth_username = "{AUTH_USER}"
realm = "{REALM_OF_CARRIER}"
register = true
expires = 600
"#
    )
}

type Net = CarrierNet;

/// Kamailio first (the daemon registers as it starts), then the daemon; waits until the
/// trunk is registered.
fn net() -> Net {
    let dir = tempfile::Builder::new()
        .prefix("carrier-registrar-")
        .tempdir()
        .unwrap();
    let pstn_port = free_port();
    let carrier_addr: SocketAddr = format!("127.0.0.2:{}", free_port()).parse().unwrap();
    let carrier = Kamailio::start(
        "registrar.cfg",
        dir.path(),
        carrier_addr,
        &[
            format!("PSTN=\"sip:{PSTN_IP}:{pstn_port}\""),
            format!("PSTN_IP=\"{PSTN_IP}\""),
            format!("REALM=\"{REALM_OF_CARRIER}\""),
            format!("PASSWORD=\"{PASSWORD}\""),
            format!("AUTH_USER=\"{AUTH_USER}\""),
            format!("ACCOUNT=\"{ACCOUNT}\""),
        ],
    );
    let mut d = Daemon::start(Options {
        policy: policy(carrier_addr),
        ..Options::default()
    });
    d.wait_for_log("trunk registered", REGISTERING);
    // The carrier logs its REGISTER-OK after save() has sent the 200 the daemon acts on:
    // wait for the line too, or a busy machine reads the log before it is written.
    carrier.wait_for_lines("REGISTER-OK", 1, REGISTERING);
    Net {
        carrier,
        carrier_addr,
        pstn_port,
        d,
        _dir: dir,
    }
}

/// The trunk as `GET /v1/trunks` shows it.
fn trunk_state(d: &Daemon) -> serde_json::Value {
    let (status, body) = admin_api(d, "GET", "/v1/trunks", "");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let trunks = v["trunks"].as_array().unwrap();
    assert_eq!(trunks.len(), 1, "{body}");
    trunks[0].clone()
}

/// The REGISTER-OK lines of the carrier: (Call-ID, contact, expires) of each.
fn registrations(n: &Net) -> Vec<(String, String, String)> {
    n.carrier
        .lines("REGISTER-OK")
        .iter()
        .map(|l| {
            let field = |name: &str| {
                l.split_whitespace()
                    .find_map(|w| w.strip_prefix(&format!("{name}=")))
                    .unwrap_or("")
                    .to_string()
            };
            (field("call"), field("contact"), field("expires"))
        })
        .collect()
}

/// An inbound call through the carrier: the network's caller hangs up.
fn inbound_call_caller_hangs_up(n: &Net) {
    let bob = n.caller_hangs_up(DID);
    let invite = &bob.requests("INVITE")[0];
    assert!(
        header_values(invite, "To").join("").contains(DID),
        "{invite}"
    );
}

#[test]
fn registers_takes_calls_both_ways_and_registers_again_after_a_crash() {
    let mut n = net();
    // Registered once, challenged first, with the contact its calls come to.
    let regs = registrations(&n);
    assert_eq!(regs.len(), 1, "{}", n.carrier.log());
    let (call_id, contact, expires) = regs[0].clone();
    assert_eq!(contact, format!("<sip:carrier@127.0.0.1:{}>", n.d.port));
    assert_eq!(expires, "600");
    assert_eq!(
        n.carrier.lines("REGISTER-CHALLENGED").len(),
        1,
        "{}",
        n.carrier.log()
    );
    let t = trunk_state(&n.d);
    assert_eq!(t["state"], "registered", "{t}");
    assert_eq!(t["aor"], format!("sip:{ACCOUNT}@127.0.0.2"));
    assert_eq!(t["contact"], format!("sip:carrier@127.0.0.1:{}", n.d.port));
    assert!(
        t["expires_at"].as_u64().is_some() && t["last_error"].is_null(),
        "{t}"
    );
    // The CLI says the same.
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["trunks", "--api", &format!("127.0.0.1:{}", n.d.api_port)])
        .args(["--token", ADMIN_TOKEN])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("carrier") && l.contains("registered")),
        "{text}"
    );

    // A call from the network to the DID: to the registered contact, the DID in To; bob
    // answers; the caller hangs up.
    inbound_call_caller_hangs_up(&n);
    assert_eq!(n.carrier.lines("INBOUND").len(), 1);
    // Again, and bob hangs up.
    n.bob_hangs_up(DID);

    // alice dials out: the carrier challenges the INVITE, the account answers.
    n.alice_calls_out(DIALLED);
    assert_eq!(n.carrier.lines("OUTBOUND-CHALLENGED").len(), 1);
    let authed = n.carrier.lines("OUTBOUND-OK");
    assert_eq!(authed.len(), 1, "{authed:?}");
    assert!(
        authed[0].starts_with(&format!("OUTBOUND-OK to={DIALLED} ")),
        "{authed:?}"
    );

    // kill -9 and a new start: it registers again at once (a new Call-ID, the same
    // contact, which replaces the old binding), and the carrier's calls reach it.
    n.d.restart();
    n.d.wait_for_log("trunk registered", REGISTERING);
    let regs = registrations(&n);
    assert_eq!(regs.len(), 2, "{}", n.carrier.log());
    assert_ne!(regs[1].0, call_id);
    assert_eq!(regs[1].1, contact);
    assert_eq!(trunk_state(&n.d)["state"], "registered");
    inbound_call_caller_hangs_up(&n);
}

#[test]
fn a_stop_unregisters_and_the_contact_alone_is_no_trunk() {
    let mut n = net();
    // Someone other than the carrier writes to the trunk's contact: challenged like anyone
    // (a 407), never taken for the trunk.
    let r = Sipp::new(&n.d, "trunk_call_expect_final.xml")
        .row(call_row("+447700900123", "", "carrier", "407"))
        .domain("127.0.0.1")
        .run();
    assert_eq!(n.ok(r).finals(), vec![407]);

    // SIGTERM: the binding is removed before the daemon stops.
    let pid = n.d.pid().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    n.d.wait_for_log("switchboard stopped", Duration::from_secs(10));
    assert!(n.d.log_contains("trunk unregistered"), "{}", n.d.log());
    let regs = registrations(&n);
    assert_eq!(regs.len(), 2, "{}", n.carrier.log());
    assert_eq!(regs[1].2, "0");
    // The carrier has nowhere to send the DID's calls now.
    let r = n.network_calls(DID, "trunk_call_expect_final.xml", "404");
    n.ok(r);
    assert_eq!(n.carrier.lines("NOT-REGISTERED").len(), 1);
}
