//! Requests inside dialogs whose next hop has a host name (RFC 3263), driven through the
//! whole core with a virtual clock and a scripted name server (see test_harness): the
//! carrier of an outbound call answers from a Contact at `carrier.test` ([`carrier_dns`]:
//! SRV to `127.0.0.8:5080`, then `127.0.0.9:5080`), so alice's ACK, BYE and re-INVITE
//! need its targets.

use crate::test_harness::*;
use std::net::SocketAddr;
use switchboard_sip::locate::Answer;
use switchboard_sip::peer::Peer;
use switchboard_sip::transport::{Inbound, Transport, Unreachable};

/// The carrier's Contact: a number at a host name.
const CONTACT: &str = "+441632960001@carrier.test";

/// alice calls a number through the trunk `carrier` (an address), which answers 200 with
/// Contact `contact`: (the 200 as the carrier sent it, the 200 alice got).
fn answered_by(t: &mut T, call: &str, contact: &str) -> (String, String) {
    t.input(ALICE, &invite("alice", ALICE, "+447700900999", call, ""));
    let branch = to(&t.take(), CARRIER).remove(0);
    let ok = answer(&branch, 200, "pstn", contact);
    t.input(CARRIER, &ok);
    let relayed = to(&t.take(), ALICE)
        .into_iter()
        .find(|m| m.starts_with("SIP/2.0 200"))
        .expect("the 200 is relayed to alice");
    (ok, relayed)
}

/// The messages sent to `at` whose first line starts with `start`.
fn starting(out: &[(SocketAddr, String)], at: &str, start: &str) -> Vec<String> {
    to(out, at)
        .into_iter()
        .filter(|m| m.starts_with(start))
        .collect()
}

/// A request of the carrier inside the dialog its 200 `ok` set up (the Record-Route set
/// as its Route).
fn from_carrier(method: &str, ruri: &str, ok: &str, cseq: u32) -> String {
    let rr = header(ok, "Record-Route").unwrap();
    let from = header(ok, "To").unwrap();
    let to = header(ok, "From").unwrap();
    let call = header(ok, "Call-ID").unwrap();
    format!(
        "{method} sip:{ruri} SIP/2.0\r\nVia: SIP/2.0/UDP {CARRIER};branch=z9hG4bK-c{method}-{cseq}\r\n\
         Route: {rr}\r\nMax-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {call}\r\nCSeq: {cseq} {method}\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// A CANCEL of alice's in-dialog INVITE `inv` with CSeq number `cseq`.
fn cancel_of(inv: &str, cseq: u32) -> String {
    inv.replacen("INVITE sip:", "CANCEL sip:", 1).replace(
        &format!("CSeq: {cseq} INVITE"),
        &format!("CSeq: {cseq} CANCEL"),
    )
}

fn udp(at: &str) -> Peer {
    Peer {
        transport: Transport::Udp,
        addr: addr(at),
        conn: None,
        local: None,
    }
}

#[test]
fn an_ack_and_a_bye_wait_for_the_contacts_targets_then_go_to_the_first() {
    let mut t = T::new(false);
    let (_, relayed) = answered_by(&mut t, "h1", CONTACT);
    // The ACK for the 2xx: no transaction; held until the name is known.
    t.input(ALICE, &in_dialog("ACK", CONTACT, &relayed, ALICE, 1));
    let out = t.take();
    assert!(out.is_empty(), "nothing is sent yet: {out:?}");
    assert!(!t.lookups.is_empty(), "the Contact's host is looked up");
    assert_eq!(t.core.relays.held(), 1);
    t.answer_dns(carrier_dns);
    let out = t.take();
    let acks = starting(&out, CARRIER_A, "ACK ");
    assert_eq!(acks.len(), 1, "{out:?}");
    assert_eq!(first_line(&acks[0]), format!("ACK sip:{CONTACT} SIP/2.0"));
    assert!(!acks[0].contains("Route:"), "our Route was consumed");
    assert!(to(&out, CARRIER_B).is_empty(), "{out:?}");
    assert_eq!(t.core.relays.held(), 0);
    // The answers are kept: the BYE goes at once, with no lookup.
    t.input(ALICE, &in_dialog("BYE", CONTACT, &relayed, ALICE, 2));
    assert!(t.lookups.is_empty(), "{:?}", t.lookups);
    let out = t.take();
    let bye = starting(&out, CARRIER_A, "BYE ").remove(0);
    t.input(CARRIER_A, &answer(&bye, 200, "pstn", CONTACT));
    let out = t.take();
    assert_eq!(first_line(&to(&out, ALICE)[0]), "SIP/2.0 200 OK");
    assert_eq!(t.core.answered_calls(), 0);
}

#[test]
fn a_held_request_is_sent_once_its_targets_are_known_and_its_retransmissions_are_absorbed() {
    let mut t = T::new(false);
    let (_, relayed) = answered_by(&mut t, "h2", CONTACT);
    let bye = in_dialog("BYE", CONTACT, &relayed, ALICE, 2);
    t.input(ALICE, &bye);
    assert!(t.take().is_empty());
    let asked = t.lookups.len();
    // The sender retransmits while the lookup runs: absorbed, nothing asked again.
    t.input(ALICE, &bye);
    assert!(t.take().is_empty());
    assert_eq!(t.lookups.len(), asked);
    assert_eq!(t.core.relays.held(), 1);
    t.answer_dns(carrier_dns);
    let out = t.take();
    let sent = starting(&out, CARRIER_A, "BYE ");
    assert_eq!(sent.len(), 1, "{out:?}");
    assert_eq!(first_line(&sent[0]), format!("BYE sip:{CONTACT} SIP/2.0"));
    assert!(
        header(&sent[0], "Via")
            .unwrap()
            .starts_with("SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-sb"),
        "{}",
        sent[0]
    );
    t.input(CARRIER_A, &answer(&sent[0], 200, "pstn", CONTACT));
    let out = t.take();
    assert_eq!(first_line(&to(&out, ALICE)[0]), "SIP/2.0 200 OK");
    assert_eq!(t.core.routing_counters().relayed, 1, "the BYE, once");
}

#[test]
fn a_held_reinvite_is_answered_100_and_a_503_fails_over_to_the_next_target() {
    let mut t = T::new(false);
    let (_, relayed) = answered_by(&mut t, "h3", CONTACT);
    let reinvite = in_dialog("INVITE", CONTACT, &relayed, ALICE, 2);
    t.input(ALICE, &reinvite);
    let out = t.take();
    let lines: Vec<String> = to(&out, ALICE)
        .iter()
        .map(|m| first_line(m).to_string())
        .collect();
    assert_eq!(lines, ["SIP/2.0 100 Trying"], "the lookup may take a while");
    t.answer_dns(carrier_dns);
    let out = t.take();
    let first = starting(&out, CARRIER_A, "INVITE ").remove(0);
    // 503 from the first target: the second at once, on a new transaction; alice never
    // sees the 503.
    let busy = answer(&first, 503, "pstn", CONTACT).replacen(
        "\r\n\r\n",
        "\r\nRetry-After: 120\r\n\r\n",
        1,
    );
    t.input(CARRIER_A, &busy);
    let out = t.take();
    assert!(
        !to(&out, ALICE).iter().any(|m| m.starts_with("SIP/2.0 503")),
        "{out:?}"
    );
    let second = starting(&out, CARRIER_B, "INVITE ");
    assert_eq!(second.len(), 1, "{out:?}");
    assert_eq!(
        first_line(&second[0]),
        format!("INVITE sip:{CONTACT} SIP/2.0")
    );
    assert_ne!(header(&second[0], "Via"), header(&first, "Via"));
    assert_eq!(header(&second[0], "CSeq"), Some("2 INVITE"));
    assert_eq!(header(&second[0], "Max-Forwards"), Some("69"));
    t.input(CARRIER_B, &answer(&second[0], 200, "pstn", CONTACT));
    let out = t.take();
    assert_eq!(first_line(&to(&out, ALICE)[0]), "SIP/2.0 200 OK", "{out:?}");
    // The failed target is put last for its Retry-After: the BYE goes to B first.
    t.input(ALICE, &in_dialog("BYE", CONTACT, &relayed, ALICE, 3));
    let out = t.take();
    assert_eq!(starting(&out, CARRIER_B, "BYE ").len(), 1, "{out:?}");
    assert!(starting(&out, CARRIER_A, "BYE ").is_empty(), "{out:?}");
}

#[test]
fn a_transport_error_fails_over_and_the_last_target_failing_is_a_408() {
    let mut t = T::new(false);
    let (_, relayed) = answered_by(&mut t, "h4", CONTACT);
    t.input(ALICE, &in_dialog("INFO", CONTACT, &relayed, ALICE, 2));
    t.answer_dns(carrier_dns);
    assert_eq!(starting(&t.take(), CARRIER_A, "INFO ").len(), 1);
    t.event(Inbound::Unreachable {
        peer: udp(CARRIER_A),
        why: Unreachable::SendFailed,
    });
    let out = t.take();
    assert_eq!(starting(&out, CARRIER_B, "INFO ").len(), 1, "{out:?}");
    assert!(to(&out, ALICE).is_empty(), "{out:?}");
    // No target left: the sender hears 408, as for any next hop that never answers.
    t.event(Inbound::Unreachable {
        peer: udp(CARRIER_B),
        why: Unreachable::SendFailed,
    });
    let out = t.take();
    assert_eq!(
        first_line(&to(&out, ALICE)[0]),
        "SIP/2.0 408 Request Timeout"
    );
}

#[test]
fn a_name_without_a_sip_server_is_404_with_a_warning_and_a_failed_lookup_503() {
    let mut t = T::new(false);
    let (_, relayed) = answered_by(&mut t, "h5", "+441632960001@gone.test");
    let ruri = "+441632960001@gone.test";
    t.input(ALICE, &in_dialog("ACK", ruri, &relayed, ALICE, 1));
    t.input(ALICE, &in_dialog("UPDATE", ruri, &relayed, ALICE, 2));
    t.answer_dns(carrier_dns);
    let out = t.take();
    // The ACK is dropped; the UPDATE is answered.
    assert_eq!(to(&out, ALICE).len(), 1, "{out:?}");
    let resp = &to(&out, ALICE)[0];
    assert_eq!(first_line(resp), "SIP/2.0 404 Not Found");
    let warning = header(resp, "Warning").unwrap();
    assert!(
        warning.starts_with("399 switchboard \"gone.test has no SIP server"),
        "{warning}"
    );
    assert!(out.iter().all(|(a, _)| *a == addr(ALICE)), "{out:?}");
    assert_eq!(t.core.relays.held(), 0);

    // A lookup that fails (no answer in time): a passing trouble, 503 with Retry-After.
    let mut t = T::new(false);
    let (_, relayed) = answered_by(&mut t, "h6", CONTACT);
    t.input(ALICE, &in_dialog("UPDATE", CONTACT, &relayed, ALICE, 2));
    t.answer_dns(|_| Answer::Failed("timed out".into()));
    let out = t.take();
    let resp = &to(&out, ALICE)[0];
    assert_eq!(first_line(resp), "SIP/2.0 503 Service Unavailable");
    assert!(header(resp, "Retry-After").is_some(), "{resp}");
    assert!(
        header(resp, "Warning").unwrap().contains("failed"),
        "{resp}"
    );
}

#[test]
fn past_the_cap_of_held_requests_a_request_is_refused_503_with_retry_after() {
    let mut t = T::new(false);
    t.core.relays.max_held = 1;
    let (_, relayed) = answered_by(&mut t, "h7", CONTACT);
    t.input(ALICE, &in_dialog("INFO", CONTACT, &relayed, ALICE, 2));
    assert!(t.take().is_empty());
    t.input(ALICE, &in_dialog("UPDATE", CONTACT, &relayed, ALICE, 3));
    let out = t.take();
    let resp = &to(&out, ALICE)[0];
    assert_eq!(first_line(resp), "SIP/2.0 503 Service Unavailable");
    assert_eq!(header(resp, "CSeq"), Some("3 UPDATE"));
    assert!(header(resp, "Retry-After").is_some(), "{resp}");
    assert_eq!(t.core.relays.held(), 1);
    assert_eq!(
        t.core.locating.waiting(),
        1,
        "the refused one waits for nothing"
    );
    // The held one goes once the answers come; the refused one never does.
    t.answer_dns(carrier_dns);
    let out = t.take();
    assert_eq!(starting(&out, CARRIER_A, "INFO ").len(), 1, "{out:?}");
    assert!(starting(&out, CARRIER_A, "UPDATE ").is_empty(), "{out:?}");
    // With the answers cached, nothing is held: the cap does not stand in the way.
    t.input(ALICE, &in_dialog("UPDATE", CONTACT, &relayed, ALICE, 4));
    assert_eq!(starting(&t.take(), CARRIER_A, "UPDATE ").len(), 1);
}

#[test]
fn a_cancel_of_a_held_reinvite_answers_it_487_and_nothing_is_sent() {
    let mut t = T::new(false);
    let (_, relayed) = answered_by(&mut t, "h8", CONTACT);
    let reinvite = in_dialog("INVITE", CONTACT, &relayed, ALICE, 2);
    t.input(ALICE, &reinvite);
    t.take();
    t.input(ALICE, &cancel_of(&reinvite, 2));
    let out = t.take();
    let to_alice = to(&out, ALICE);
    let lines: Vec<&str> = to_alice.iter().map(|m| first_line(m)).collect();
    assert!(lines.contains(&"SIP/2.0 200 OK"), "the CANCEL: {out:?}");
    assert!(lines.contains(&"SIP/2.0 487 Request Terminated"), "{out:?}");
    assert_eq!(t.core.relays.held(), 0);
    assert_eq!(t.core.locating.waiting(), 0, "nobody waits for the lookup");
    t.answer_dns(carrier_dns);
    let out = t.take();
    assert!(
        to(&out, CARRIER_A).is_empty() && to(&out, CARRIER_B).is_empty(),
        "{out:?}"
    );
}

#[test]
fn the_end_of_the_dialog_answers_its_held_requests_481() {
    let mut t = T::new(false);
    let (ok, relayed) = answered_by(&mut t, "h9", CONTACT);
    t.input(ALICE, &in_dialog("INFO", CONTACT, &relayed, ALICE, 2));
    assert!(t.take().is_empty());
    // The carrier hangs up meanwhile (alice's Contact is an address: no lookup).
    t.input(
        CARRIER,
        &from_carrier("BYE", "alice@127.0.0.1:5071", &ok, 2),
    );
    let out = t.take();
    assert_eq!(starting(&out, ALICE, "BYE ").len(), 1, "{out:?}");
    let info = to(&out, ALICE)
        .into_iter()
        .find(|m| header(m, "CSeq") == Some("2 INFO"))
        .expect("the held INFO is answered");
    assert!(
        info.starts_with("SIP/2.0 481 Call/Transaction Does Not Exist"),
        "{info}"
    );
    assert!(
        header(&info, "Warning").unwrap().contains("dialog ended"),
        "{info}"
    );
    assert_eq!(t.core.relays.held(), 0);
    assert_eq!(t.core.locating.waiting(), 0);
    t.answer_dns(carrier_dns);
    assert!(to(&t.take(), CARRIER_A).is_empty());
}

/// An address as the next hop is sent at once, as before: no lookup, nothing held.
#[test]
fn a_next_hop_with_an_address_needs_no_lookup() {
    let mut t = T::new(false);
    let (_, relayed) = answered_by(&mut t, "h10", "+441632960001@127.0.0.2:5080");
    t.input(
        ALICE,
        &in_dialog("BYE", "+441632960001@127.0.0.2:5080", &relayed, ALICE, 2),
    );
    assert!(t.lookups.is_empty());
    assert_eq!(starting(&t.take(), CARRIER, "BYE ").len(), 1);
}

#[test]
fn a_run_with_held_requests_replays_byte_for_byte() {
    let mut t = T::new(false);
    let (_, relayed) = answered_by(&mut t, "h11", CONTACT);
    t.input(ALICE, &in_dialog("ACK", CONTACT, &relayed, ALICE, 1));
    t.input(ALICE, &in_dialog("BYE", CONTACT, &relayed, ALICE, 2));
    t.answer_dns(carrier_dns);
    assert_eq!(t.replay(), t.outputs);
}
