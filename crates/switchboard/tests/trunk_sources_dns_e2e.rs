//! A trunk whose `sources` name its carrier's SBC by host name, end to end: the real daemon
//! asking a dnsmasq on a loopback port (`[dns] servers`) for `sbc.carrier.test`, SIPp as the
//! SBC sending an INVITE to the trunk's DID from the address the name has, and bob's phone
//! (a registered SIPp server) answering. The same INVITE from another address is a
//! stranger's (challenged 407). Then the record changes (dnsmasq restarted with a new
//! address, TTL 2 s): once the TTL has run out the new address is the trunk's and the old
//! one a stranger's.
//!
//! Every process is owned by a guard that kills it, also when the test fails; every wait
//! is bounded; only loopback addresses are used.

mod common;

use common::dns::Dnsmasq;
use common::*;
use std::time::Duration;

/// The SBC's name, and its address before and after the carrier moves it.
const SBC: &str = "sbc.carrier.test";
const FIRST: &str = "127.0.0.7";
const SECOND: &str = "127.0.0.8";
/// The records' TTL (seconds).
const TTL: u32 = 2;
/// The trunk's number, which rings bob; the carrier sends it nationally.
const DID: &str = "+441632960000";
const DID_AS_SENT: &str = "01632960000";
/// How long a SIPp server waits for its calls to end at most.
const LIMIT: Duration = Duration::from_secs(40);

fn policy() -> String {
    format!(
        r#"{POLICY}
[trunks.carrier]
sources = ["{SBC}"]
country_code = "44"
dids = {{ "{DID}" = "user:bob" }}
"#
    )
}

fn record(ip: &str) -> Vec<String> {
    vec![format!("--host-record={SBC},{ip}")]
}

/// bob's phone, registered, answering one call.
fn bobs_phone(d: &Daemon) -> Uas {
    let uas = Uas::start("uas_answer.xml", 1, &[]);
    uas.register(d, "bob", "bob-secret");
    uas
}

/// The carrier's SBC at `ip` calls the DID: answered by bob, never challenged.
fn answered_from(d: &Daemon, ip: &str) {
    let bob = bobs_phone(d);
    let r = Sipp::new(d, "trunk_call_answered.xml")
        .row(call_row("+447700900123", "", DID_AS_SENT, "200"))
        .local_ip(ip)
        .limit(Duration::from_secs(30))
        .ok();
    assert_eq!(r.finals(), vec![200], "{}", r.report());
    assert!(r.statuses().iter().all(|s| *s != 407), "{}", r.report());
    let bob = bob.finish(LIMIT);
    assert!(bob.success, "{}\ndaemon log:\n{}", bob.report(), d.log());
    let invite = &bob.requests("INVITE")[0];
    assert!(
        invite.contains("+447700900123"),
        "the caller's number: {invite}"
    );
}

/// The same INVITE from `ip`: a stranger's, challenged (and never routed).
fn challenged_from(d: &Daemon, ip: &str) {
    let r = Sipp::new(d, "trunk_call_expect_final.xml")
        .row(call_row("+447700900123", "", DID_AS_SENT, "407"))
        .local_ip(ip)
        .limit(Duration::from_secs(30))
        .ok();
    assert_eq!(r.finals(), vec![407], "{}", r.report());
}

/// The addresses `GET /v1/trunks` shows for the SBC's name, and its error.
fn shown(d: &Daemon) -> (Vec<String>, Option<String>) {
    let (code, body) = admin_api(d, "GET", "/v1/trunks", "");
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let name = &v["trunks"][0]["source_names"][0];
    assert_eq!(name["name"], SBC, "{body}");
    let addresses = name["addresses"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"))
        .iter()
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect();
    (addresses, name["error"].as_str().map(str::to_string))
}

/// Waits (at most 15 s) until the SBC's name shows exactly `ip`.
fn wait_for_address(d: &Daemon, ip: &str) {
    let found = wait_until(Duration::from_secs(15), Duration::from_millis(100), || {
        (shown(d).0 == [ip]).then_some(())
    });
    assert!(
        found.is_some(),
        "{SBC} never showed {ip} alone: {:?}\ndaemon log:\n{}",
        shown(d),
        d.log()
    );
}

#[test]
fn a_trunk_source_by_host_name_follows_its_address_in_dns() {
    require("sipp");
    let mut dns = Dnsmasq::start_with_ttl(&record(FIRST), TTL);
    let d = Daemon::start(Options {
        policy: policy(),
        extra: dns.daemon_config(),
        ..Options::default()
    });
    wait_for_address(&d, FIRST);
    assert_eq!(shown(&d).1, None);
    assert!(d.log_contains("trunk source name resolved"), "{}", d.log());

    // From the name's address: the trunk's call, to bob. From elsewhere: a stranger's.
    answered_from(&d, FIRST);
    challenged_from(&d, SECOND);

    // The carrier moves its SBC: once the old answer's TTL runs out, the new address is
    // the trunk's and the old one no longer is.
    dns.restart(&record(SECOND), TTL);
    wait_for_address(&d, SECOND);
    answered_from(&d, SECOND);
    challenged_from(&d, FIRST);
    // `switchboard trunks` shows it too.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("trunks")
        .arg("--config")
        .arg(d.config_path())
        .output()
        .expect("switchboard trunks runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(&format!("  source {SBC}: {SECOND}")),
        "{text}"
    );
}
