//! A confirmed forward to a number through a carrier known by host name, end to end: the
//! real daemon finds the trunk in a dnsmasq on loopback (SRV for `carrier.test`), Kamailio
//! as the carrier challenges the leg's INVITE (`tests/kamailio/carrier.cfg`: 407, relayed
//! on only with the account's credentials), and a SIPp server behind it stands for the
//! forward target: it answers, hears the question and presses 1 (RFC 4733). alice (baresip)
//! is then connected, and her hang-up reaches the target as the daemon's BYE through the
//! carrier, which challenges that too.
//!
//! Every process is owned by a guard that kills it, also when the test fails; every wait
//! is bounded; only loopback addresses are used.

mod common;

use common::baresip::Baresip;
use common::dns::Dnsmasq;
use common::*;
use std::time::Duration;

use common::carrier::{challenging_carrier, ACCOUNT_REALM as REALM_OF_CARRIER};
use common::carrier::{ACCOUNT_AUTH_USER as AUTH_USER, ACCOUNT_PASSWORD as PASSWORD};

/// alice calls erin, whose calls go at once to +33140000000 through the carrier, to be
/// confirmed (erin's own phone is on, and does not ring).
fn policy() -> String {
    format!(
        r#"
[users.alice]
extension = "1001"
[users.alice.sip]
password = "alice-secret"
algorithms = ["md5"]

[users.erin]
extension = "1005"
no_answer = "hangup"
[users.erin.sip]
password = "erin-secret"
algorithms = ["md5"]
[users.erin.forwarding]
targets = ["number:+33140000000"]
require_confirmation = true
keep_ringing_own = false

[trunks.carrier]
sources = ["127.0.0.2/32"]
uri = "sip:carrier.test"
outbound = ["+33*"]
[trunks.carrier.account]
username = "441632960999"
password = "{PASSWORD}"
auth_username = "{AUTH_USER}"
realm = "{REALM_OF_CARRIER}"
"#
    )
}

#[test]
fn a_target_through_a_named_challenging_carrier_presses_1_and_is_connected() {
    require("sipp");
    let (carrier_port, target_port, target_media) = (free_port(), free_port(), free_port());
    let dns = Dnsmasq::start(&[
        format!("--srv-host=_sip._udp.carrier.test,edge.carrier.test,{carrier_port},10,0"),
        "--host-record=edge.carrier.test,127.0.0.2".into(),
    ]);
    let d = common::media::media_daemon_with(&policy(), true, &dns.daemon_config());
    let carrier = challenging_carrier(
        d.dir.path(),
        format!("127.0.0.2:{carrier_port}").parse().unwrap(),
        target_port,
        // Our BYE is challenged too.
        &["WITH_DIALOG_AUTH"],
    );
    let media = target_media.to_string();
    let target = Uas::start_on(
        "127.0.0.1",
        target_port,
        "uas_answer_press_1.xml",
        1,
        &["-mi", "127.0.0.1", "-mp", &media],
    );
    // erin's phone is on (her calls are forwarded, not "unavailable").
    Sipp::new(&d, "register.xml")
        .row(row("erin", "erin-secret", free_port(), 600))
        .ok();
    let alice = Baresip::start(&d, "alice", d.addr());
    let a = alice.proc.log_len();
    alice.command("/dial sip:1005@switchboard.local");
    let connected = wait_until(Duration::from_secs(20), Duration::from_millis(50), || {
        alice.since(a).contains("Call established").then_some(())
    });
    assert!(
        connected.is_some(),
        "alice was not connected:\n{}\n--- carrier ---\n{}\n--- daemon ---\n{}",
        alice.since(a),
        carrier.log(),
        d.log()
    );
    assert!(
        d.log_contains("the forward target accepted the call: connected"),
        "{}",
        d.log()
    );
    std::thread::sleep(Duration::from_millis(500));
    alice.command("/hangup");
    let target = passed_via(target.finish(Duration::from_secs(30)), &d, &carrier);
    // The carrier let the INVITE through only with the account's answer to its challenge;
    // the Request-URI kept the trunk's host name.
    let invite = &target.requests("INVITE")[0];
    assert!(
        invite.starts_with("INVITE sip:+33140000000@carrier.test SIP/2.0"),
        "{invite}"
    );
    assert_eq!(
        carrier.lines("CHALLENGED INVITE").len(),
        1,
        "{}",
        carrier.log()
    );
    assert_eq!(
        carrier.lines("AUTH-OK INVITE cseq=2 user=acct-7").len(),
        1,
        "{}",
        carrier.log()
    );
    // Our BYE, numbered on from the INVITE the carrier took (as it checks), challenged in
    // turn and answered with the account.
    assert!(carrier.lines("CSEQ-BAD").is_empty(), "{}", carrier.log());
    assert_eq!(
        carrier.lines("CHALLENGED BYE").len(),
        1,
        "{}",
        carrier.log()
    );
    assert_eq!(
        carrier.lines("AUTH-OK BYE cseq=4 user=acct-7").len(),
        1,
        "{}",
        carrier.log()
    );
    assert_eq!(target.requests("BYE").len(), 1, "{}", target.report());
}
