//! Host names end to end beyond a call's INVITE: the real daemon asking a dnsmasq on a
//! loopback port (`[dns] servers`).
//!
//! - A carrier whose Contact names a host (`sip:+441632960001@sbc.carrier.test;
//!   transport=udp`, its SRV record pointing at the SIPp carrier's port): the caller's ACK,
//!   re-INVITE and BYE must reach it, the daemon locating that name (RFC 3263) for each
//!   request inside the dialog.
//! - A trunk's records with a 1 s TTL that change (dnsmasq restarted with other records on
//!   the same port): once the TTL has passed, the next call goes where the new records say.
//!
//! Every process is owned by a guard that kills it, also when the test fails; every wait
//! is bounded; only loopback addresses are used.

mod common;

use common::dns::{Dnsmasq, NAMED_CARRIER_POLICY};
use common::*;
use std::time::Duration;

/// The dialled number's digest URI for alice's calls.
const DIALLED: &str = "+447700900123";

#[test]
fn ack_reinvite_and_bye_reach_a_carrier_whose_contact_is_a_host_name() {
    require("sipp");
    let uas_port = free_port();
    // The trunk's name and the carrier's Contact name both lead to the SIPp carrier, by
    // SRV records (the Contact's `transport=udp` asks for `_sip._udp` only).
    let dns = Dnsmasq::start(&[
        format!("--srv-host=_sip._udp.carrier.test,uas.carrier.test,{uas_port},10,0"),
        format!("--srv-host=_sip._udp.sbc.carrier.test,uas.carrier.test,{uas_port},10,0"),
        "--host-record=uas.carrier.test,127.0.0.1".into(),
    ]);
    let uas = Uas::start_on(
        "127.0.0.1",
        uas_port,
        "uas_answer_named_contact.xml",
        1,
        &[
            "-s",
            "+441632960001",
            "-key",
            "contact_host",
            "sbc.carrier.test;transport=udp",
        ],
    );
    let d = Daemon::start(Options {
        policy: NAMED_CARRIER_POLICY.into(),
        extra: dns.daemon_config(),
        ..Options::default()
    });
    // alice, a registered user, calls out through the trunk.
    Sipp::new(&d, "register.xml")
        .row(row("alice", "alice-secret", free_port(), 600))
        .ok();
    let r = Sipp::new(&d, "call_reinvite.xml")
        .row(call_row("alice", "alice-secret", DIALLED, "200"))
        .auth_uri(&format!("{DIALLED}@{REALM}"))
        .limit(Duration::from_secs(40))
        .run();
    assert!(r.success, "{}\ndaemon log:\n{}", r.report(), d.log());
    assert_eq!(r.logged("reinvite"), ["200"], "{}", r.report());
    let contact = r.logged("answered contact");
    assert!(
        contact[0].contains("@sbc.carrier.test;transport=udp"),
        "{contact:?}"
    );
    let uas = uas.finish(Duration::from_secs(20));
    assert!(uas.success, "{}\ndaemon log:\n{}", uas.report(), d.log());
    // Each reached the carrier with its Contact as the Request-URI; our Route consumed.
    let target = "sip:+441632960001@sbc.carrier.test;transport=udp SIP/2.0";
    for method in ["ACK", "BYE"] {
        let got = uas.requests(method);
        assert!(!got.is_empty(), "no {method}:\n{}", uas.report());
        assert!(
            got.iter()
                .all(|m| m.starts_with(&format!("{method} {target}"))),
            "{got:?}"
        );
    }
    let invites = uas.requests("INVITE");
    assert!(
        invites
            .iter()
            .any(|m| m.starts_with(&format!("INVITE {target}"))),
        "no re-INVITE: {invites:?}"
    );
    assert!(
        !d.log_contains("the next hop cannot be reached"),
        "{}",
        d.log()
    );
}

#[test]
fn once_its_ttl_has_passed_a_changed_record_sends_the_next_call_elsewhere() {
    require("sipp");
    let (x_port, y_port) = (free_port(), free_port());
    let records = |port: u16| {
        vec![
            format!("--srv-host=_sip._udp.carrier.test,sbc.carrier.test,{port},10,0"),
            "--host-record=sbc.carrier.test,127.0.0.1".to_string(),
        ]
    };
    let mut dns = Dnsmasq::start_with_ttl(&records(x_port), 1);
    // X would take a second call too: only the records keep it from getting one.
    let x = Uas::start_on("127.0.0.1", x_port, "uas_answer.xml", 2, &[]);
    let y = Uas::start_on("127.0.0.1", y_port, "uas_answer.xml", 1, &[]);
    let d = Daemon::start(Options {
        policy: NAMED_CARRIER_POLICY.into(),
        extra: dns.daemon_config(),
        ..Options::default()
    });
    let call = |d: &Daemon| {
        Sipp::new(d, "call_answered.xml")
            .row(call_row("alice", "alice-secret", DIALLED, "100"))
            .auth_uri(&format!("{DIALLED}@{REALM}"))
            .limit(Duration::from_secs(30))
            .ok()
    };
    call(&d);
    // The zone changes: the carrier now answers at Y.
    dns.restart(&records(y_port), 1);
    // Past the 1 s TTL of what the daemon was told (with a margin).
    std::thread::sleep(Duration::from_millis(2500));
    call(&d);
    let y = y.finish(Duration::from_secs(20));
    assert!(y.success, "{}\ndaemon log:\n{}", y.report(), d.log());
    assert_eq!(y.requests("INVITE").len(), 1, "{}", y.report());
    let x = x.stop();
    let at_x: Vec<String> = x
        .requests("INVITE")
        .iter()
        .map(|m| m.lines().next().unwrap_or("").to_string())
        .collect();
    assert_eq!(at_x.len(), 1, "X got the first call only: {at_x:?}");
}
