//! Answered calls probed through the whole core with a virtual clock (see test_harness):
//! the test config probes every 90 s (the default), Timer F is 32 s.

use crate::test_harness::*;
use std::net::SocketAddr;
use switchboard_presence::model::CallStatus;

const WATCHER: &str = "127.0.0.1:5081";

/// What was sent since the last call, the watcher's NOTIFYs answered.
fn take(t: &mut T) -> Vec<(SocketAddr, String)> {
    let out = t.take();
    watcher_notifies(t, &out);
    out
}

/// alice calls bob, bob answers, alice ACKs: (bob's 200 as sent, the 200 alice got).
fn answered(t: &mut T, call: &str) -> (String, String) {
    t.register("bob", BOB);
    t.input(ALICE, &invite("alice", ALICE, "1002", call, ""));
    let branch = to(&take(t), BOB)[0].clone();
    // A Contact as phones write it, a quoted <…> in a parameter after its URI.
    let ok = answer(&branch, 200, "bob1", BOB).replace(
        "Contact: <sip:127.0.0.1:5072>",
        "Contact: <sip:127.0.0.1:5072;transport=udp>;expires=600;+sip.instance=\"<urn:uuid:e049c972>\"",
    );
    assert!(ok.contains("+sip.instance"), "{ok}");
    t.input(BOB, &ok);
    let relayed = to(&take(t), ALICE)[0].clone();
    assert_eq!(first_line(&relayed), "SIP/2.0 200 OK");
    t.input(
        ALICE,
        &in_dialog("ACK", "bob@127.0.0.1:5072", &relayed, ALICE, 1),
    );
    take(t);
    assert_eq!(bob(t), CallStatus::Busy);
    assert!(t.core.presence().model().in_call("alice"));
    (ok, relayed)
}

fn bob(t: &T) -> CallStatus {
    t.core.presence().model().call_state("bob")
}

fn with_method(out: &[(SocketAddr, String)], at: &str, method: &str) -> Vec<String> {
    to(out, at)
        .into_iter()
        .filter(|m| m.starts_with(&format!("{method} ")))
        .collect()
}

fn options_sent(out: &[(SocketAddr, String)]) -> usize {
    out.iter()
        .filter(|(_, m)| m.starts_with("OPTIONS "))
        .count()
}

/// The probes of one round: (to bob, to alice).
fn probes(t: &mut T) -> (String, String) {
    let out = t.take();
    let to_bob = with_method(&out, BOB, "OPTIONS");
    let to_alice = with_method(&out, ALICE, "OPTIONS");
    assert_eq!((to_bob.len(), to_alice.len()), (1, 1), "{out:?}");
    (to_bob[0].clone(), to_alice[0].clone())
}

/// Subscribes a watcher to bob's dialog state; returns its first NOTIFY (answered).
fn watch_bob(t: &mut T) -> String {
    let sub = format!(
        "SUBSCRIBE sip:bob@switchboard.local SIP/2.0\r\nVia: SIP/2.0/UDP {WATCHER};branch=z9hG4bK-w1;rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:carol@switchboard.local>;tag=w1\r\nTo: <sip:bob@switchboard.local>\r\n\
         Call-ID: watch-bob\r\nCSeq: 1 SUBSCRIBE\r\nContact: <sip:carol@{WATCHER}>\r\nEvent: dialog\r\n\
         Expires: 3600\r\nContent-Length: 0\r\n\r\n"
    );
    t.input(WATCHER, &sub);
    let notify = with_method(&t.take(), WATCHER, "NOTIFY").remove(0);
    t.input(WATCHER, &answer(&notify, 200, "", WATCHER));
    notify
}

/// Answers every NOTIFY sent to the watcher in `out`; returns them.
fn watcher_notifies(t: &mut T, out: &[(SocketAddr, String)]) -> Vec<String> {
    let n = with_method(out, WATCHER, "NOTIFY");
    for m in &n {
        t.input(WATCHER, &answer(m, 200, "", WATCHER));
    }
    n
}

#[test]
fn a_callee_that_stops_answering_is_ended_after_a_probe_and_timer_f() {
    let mut t = T::new(false);
    t.register("bob", BOB);
    watch_bob(&mut t);
    answered(&mut t, "lost1");
    // The watcher saw bob in the call.
    assert!(t.outputs.iter().any(|o| o.contains("confirmed")));

    t.advance(89);
    let out = take(&mut t);
    assert_eq!(options_sent(&out), 0, "no probe before 90 s: {out:?}");
    t.advance(1);
    let (to_bob, to_alice) = probes(&mut t);
    // To bob: the dialog as alice sees it, to his Contact, alice's CSeq number.
    assert_eq!(
        first_line(&to_bob),
        "OPTIONS sip:127.0.0.1:5072;transport=udp SIP/2.0"
    );
    assert_eq!(header(&to_bob, "Call-ID"), Some("lost1"));
    assert!(header(&to_bob, "From")
        .unwrap()
        .ends_with(";tag=from-lost1"));
    assert!(header(&to_bob, "To").unwrap().ends_with(";tag=bob1"));
    assert_eq!(header(&to_bob, "CSeq"), Some("1 OPTIONS"));
    assert_eq!(header(&to_bob, "Max-Forwards"), Some("70"));
    assert!(header(&to_bob, "Via")
        .unwrap()
        .starts_with("SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK"));
    // To alice: the reverse, to her Contact; bob has sent nothing, so CSeq 0.
    assert_eq!(
        first_line(&to_alice),
        "OPTIONS sip:alice@127.0.0.1:5071 SIP/2.0"
    );
    assert!(header(&to_alice, "From").unwrap().ends_with(";tag=bob1"));
    assert!(header(&to_alice, "To")
        .unwrap()
        .ends_with(";tag=from-lost1"));
    assert_eq!(header(&to_alice, "CSeq"), Some("0 OPTIONS"));
    t.input(ALICE, &answer(&to_alice, 200, "", ALICE));

    // bob never answers: retransmissions, then Timer F (64·T1 = 32 s).
    t.advance(31);
    let out = take(&mut t);
    assert!(with_method(&out, BOB, "OPTIONS").len() > 3, "{out:?}");
    assert!(with_method(&out, ALICE, "BYE").is_empty());
    assert_eq!(bob(&t), CallStatus::Busy);
    t.advance(2);
    let out = t.take();
    assert_eq!(bob(&t), CallStatus::Free);
    assert!(!t.core.presence().model().in_call("alice"));
    assert_eq!(t.core.answered_calls(), 0);
    assert_eq!(t.core.routing_counters().lost, 1);
    // alice's phone is hung up by a BYE of ours inside her dialog (retransmitted until
    // she answers).
    let bye = with_method(&out, ALICE, "BYE");
    assert!(
        !bye.is_empty() && bye.iter().all(|b| *b == bye[0]),
        "{out:?}"
    );
    assert_eq!(first_line(&bye[0]), "BYE sip:alice@127.0.0.1:5071 SIP/2.0");
    assert_eq!(header(&bye[0], "CSeq"), Some("1 BYE"));
    assert!(header(&bye[0], "To").unwrap().ends_with(";tag=from-lost1"));
    assert!(header(&bye[0], "Reason").is_some(), "{}", bye[0]);
    // bob's BLF lamp goes idle.
    let n = watcher_notifies(&mut t, &out);
    assert!(!n.is_empty() && n.iter().all(|m| *m == n[0]), "{out:?}");
    assert!(!n[0].contains("<dialog "), "idle: {}", n[0]);
    t.input(ALICE, &answer(&bye[0], 200, "", ALICE));
    // Nothing more is sent about the call.
    t.advance(200);
    let out = t.take();
    assert_eq!(options_sent(&out), 0, "{out:?}");
    assert!(with_method(&out, ALICE, "BYE").is_empty(), "{out:?}");
}

#[test]
fn a_callee_answering_481_ends_the_call_at_once() {
    let mut t = T::new(false);
    answered(&mut t, "lost2");
    t.advance(90);
    let (to_bob, to_alice) = probes(&mut t);
    t.input(ALICE, &answer(&to_alice, 200, "", ALICE));
    assert_eq!(bob(&t), CallStatus::Busy);
    t.input(BOB, &answer(&to_bob, 481, "", BOB));
    assert_eq!(bob(&t), CallStatus::Free);
    assert!(!t.core.presence().model().in_call("alice"));
    assert_eq!(t.core.answered_calls(), 0);
    let out = t.take();
    let bye = with_method(&out, ALICE, "BYE");
    assert_eq!(bye.len(), 1, "{out:?}");
    assert!(with_method(&out, BOB, "BYE").is_empty(), "{out:?}");
}

#[test]
fn a_caller_that_is_gone_gets_the_callee_a_bye() {
    let mut t = T::new(false);
    answered(&mut t, "lost3");
    t.advance(90);
    let (to_bob, to_alice) = probes(&mut t);
    t.input(ALICE, &answer(&to_alice, 481, "", ALICE));
    assert_eq!(bob(&t), CallStatus::Free);
    let out = t.take();
    let bye = with_method(&out, BOB, "BYE");
    assert_eq!(bye.len(), 1, "{out:?}");
    assert_eq!(
        first_line(&bye[0]),
        "BYE sip:127.0.0.1:5072;transport=udp SIP/2.0"
    );
    // alice's INVITE was CSeq 1: bob takes the next.
    assert_eq!(header(&bye[0], "CSeq"), Some("2 BYE"));
    // bob's late answer to his probe changes nothing.
    t.input(BOB, &answer(&to_bob, 200, "", BOB));
    t.input(BOB, &answer(&bye[0], 200, "", BOB));
    assert_eq!(t.core.routing_counters().lost, 1);
}

#[test]
fn ends_that_answer_keep_the_call_up_and_probes_follow_the_cseq() {
    let mut t = T::new(false);
    let (_, relayed) = answered(&mut t, "alive");
    for round in 0..4 {
        t.advance(90);
        let (to_bob, to_alice) = probes(&mut t);
        // A 500 (our CSeq number not above the last one) still comes from a live end.
        t.input(BOB, &answer(&to_bob, 200, "", BOB));
        t.input(ALICE, &answer(&to_alice, 500, "", ALICE));
        assert_eq!(bob(&t), CallStatus::Busy, "round {round}");
    }
    // A re-INVITE from alice (CSeq 7) passes, and bob's phone answers it from another
    // address: the next probe to bob carries her 7 and goes where his new Contact says.
    let reinvite = in_dialog("INVITE", "bob@127.0.0.1:5072", &relayed, ALICE, 7);
    t.input(ALICE, &reinvite);
    let fwd = with_method(&t.take(), BOB, "INVITE").remove(0);
    t.input(BOB, &answer(&fwd, 200, "bob1", "127.0.0.1:5075"));
    t.take();
    t.advance(90);
    let out = t.take();
    let to_bob = with_method(&out, "127.0.0.1:5075", "OPTIONS").remove(0);
    let to_alice = with_method(&out, ALICE, "OPTIONS").remove(0);
    assert_eq!(first_line(&to_bob), "OPTIONS sip:127.0.0.1:5075 SIP/2.0");
    assert_eq!(header(&to_bob, "CSeq"), Some("7 OPTIONS"));
    assert_eq!(header(&to_alice, "CSeq"), Some("0 OPTIONS"));
    t.input("127.0.0.1:5075", &answer(&to_bob, 200, "", BOB));
    t.input(ALICE, &answer(&to_alice, 200, "", ALICE));
    t.advance(60);
    assert_eq!(bob(&t), CallStatus::Busy);
    assert!(t.core.presence().model().in_call("alice"));
    assert_eq!(t.core.answered_calls(), 1);
    assert_eq!(t.core.routing_counters().probes, 10);
    assert_eq!(t.core.routing_counters().lost, 0);
}

#[test]
fn a_bye_stops_the_probes() {
    let mut t = T::new(false);
    let (_, relayed) = answered(&mut t, "byed");
    t.advance(90);
    let (to_bob, to_alice) = probes(&mut t);
    t.input(BOB, &answer(&to_bob, 200, "", BOB));
    t.input(ALICE, &answer(&to_alice, 200, "", ALICE));
    t.advance(30);
    t.input(
        ALICE,
        &in_dialog("BYE", "bob@127.0.0.1:5072", &relayed, ALICE, 2),
    );
    let bye = with_method(&t.take(), BOB, "BYE").remove(0);
    t.input(BOB, &answer(&bye, 200, "bob1", BOB));
    assert_eq!(bob(&t), CallStatus::Free);
    t.advance(400);
    let out = t.take();
    assert_eq!(options_sent(&out), 0, "no probe after the BYE: {out:?}");
    assert_eq!(t.core.routing_counters().probes, 2);
}

/// alice calls bob, whose phone registered over TCP connection 7 and answers with its
/// registered Contact; returns bob's flow.
fn tcp_call(t: &mut T, call: &str) -> switchboard_sip::peer::Peer {
    let flow = switchboard_sip::peer::Peer::tcp(addr(BOB), 7);
    t.register_from("bob", flow);
    t.input(ALICE, &invite("alice", ALICE, "1002", call, ""));
    let branch = to(&t.take(), BOB)[0].clone();
    let ok = answer(&branch, 200, "bob1", "bob@127.0.0.1:5072;transport=tcp");
    t.input_from(flow, &ok);
    let relayed = to(&t.take(), ALICE)[0].clone();
    t.input(
        ALICE,
        &in_dialog("ACK", "bob@127.0.0.1:5072", &relayed, ALICE, 1),
    );
    t.take();
    assert_eq!(bob(t), CallStatus::Busy);
    flow
}

#[test]
fn a_probe_that_cannot_be_sent_ends_the_call() {
    use switchboard_sip::transport::{Inbound, Unreachable};
    let mut t = T::new(false);
    let flow = tcp_call(&mut t, "tcp1");
    t.advance(90);
    let (to_bob, _) = probes(&mut t);
    assert!(to_bob.contains("SIP/2.0/TCP"), "{to_bob}");
    // The send over bob's flow fails: the call ends at once.
    t.event(Inbound::Unreachable {
        peer: flow,
        why: Unreachable::FlowGone,
    });
    assert_eq!(bob(&t), CallStatus::Free);
    assert_eq!(with_method(&t.take(), ALICE, "BYE").len(), 1);
}

#[test]
fn a_callee_whose_registered_flow_closed_is_ended_at_the_next_probe() {
    use switchboard_sip::transport::Inbound;
    let mut t = T::new(false);
    let flow = tcp_call(&mut t, "tcp2");
    t.event(Inbound::Closed { peer: flow });
    assert_eq!(bob(&t), CallStatus::Busy);
    t.advance(90);
    assert_eq!(bob(&t), CallStatus::Free);
    let out = t.take();
    assert!(with_method(&out, BOB, "OPTIONS").is_empty(), "{out:?}");
    assert_eq!(with_method(&out, ALICE, "BYE").len(), 1, "{out:?}");
    assert_eq!(t.core.routing_counters().lost, 1);
}

/// alice calls bob, whose 200 carries `Session-Expires: {secs}`; returns the 200 alice got.
fn timed_call(t: &mut T, call: &str, secs: u32) -> String {
    t.register("bob", BOB);
    t.input(ALICE, &invite("alice", ALICE, "1002", call, ""));
    let branch = to(&t.take(), BOB)[0].clone();
    let ok = answer(&branch, 200, "bob1", BOB).replace(
        "Content-Length: 0",
        &format!("Session-Expires: {secs};refresher=uac\r\nContent-Length: 0"),
    );
    t.input(BOB, &ok);
    let relayed = to(&t.take(), ALICE)[0].clone();
    assert!(relayed.contains("Session-Expires: "), "{relayed}");
    t.input(
        ALICE,
        &in_dialog("ACK", "bob@127.0.0.1:5072", &relayed, ALICE, 1),
    );
    t.take();
    relayed
}

/// alice refreshes the session with an UPDATE (CSeq `cseq`), answered 200 by bob with
/// `session_expires` (a header line, or nothing).
fn refresh(t: &mut T, relayed: &str, cseq: u32, session_expires: &str) {
    t.input(
        ALICE,
        &in_dialog("UPDATE", "bob@127.0.0.1:5072", relayed, ALICE, cseq),
    );
    let fwd = with_method(&t.take(), BOB, "UPDATE").remove(0);
    let ok = answer(&fwd, 200, "bob1", BOB).replace(
        "Content-Length: 0",
        &format!("{session_expires}Content-Length: 0"),
    );
    t.input(BOB, &ok);
    t.take();
}

/// Both ends answer the probes of the round that is due.
fn probes_answered(t: &mut T) {
    let (to_bob, to_alice) = probes(t);
    t.input(BOB, &answer(&to_bob, 200, "", BOB));
    t.input(ALICE, &answer(&to_alice, 200, "", ALICE));
}

#[test]
fn a_session_that_is_not_refreshed_ends_with_its_session_timer() {
    let mut t = T::new(false);
    timed_call(&mut t, "timer", 120);
    // Both ends answer the probe at 90 s: they are there, but nobody refreshes.
    t.advance(90);
    probes_answered(&mut t);
    t.advance(29);
    assert_eq!(bob(&t), CallStatus::Busy);
    t.take();
    t.advance(1);
    assert_eq!(bob(&t), CallStatus::Free);
    assert!(!t.core.presence().model().in_call("alice"));
    assert_eq!(t.core.answered_calls(), 0);
    // Either may be the one gone: both get a BYE.
    let out = t.take();
    let (bye_bob, bye_alice) = (
        with_method(&out, BOB, "BYE"),
        with_method(&out, ALICE, "BYE"),
    );
    assert_eq!((bye_bob.len(), bye_alice.len()), (1, 1), "{out:?}");
    assert_eq!(header(&bye_bob[0], "CSeq"), Some("2 BYE"));
    assert_eq!(header(&bye_alice[0], "CSeq"), Some("1 BYE"));
}

#[test]
fn a_refresh_moves_the_end_of_the_session() {
    let mut t = T::new(false);
    let relayed = timed_call(&mut t, "refreshed", 120);
    // alice refreshes at 60 s: the session now ends at 180 s.
    t.advance(60);
    refresh(
        &mut t,
        &relayed,
        2,
        "Session-Expires: 120;refresher=uac\r\n",
    );
    t.advance(30);
    probes_answered(&mut t);
    t.advance(89);
    assert_eq!(bob(&t), CallStatus::Busy);
    t.take();
    t.advance(1);
    assert_eq!(bob(&t), CallStatus::Free);
    let out = t.take();
    // bob's BYE follows alice's UPDATE (CSeq 2).
    assert_eq!(
        header(&with_method(&out, BOB, "BYE")[0], "CSeq"),
        Some("3 BYE")
    );
}

#[test]
fn a_refresh_without_session_expires_turns_the_session_timer_off() {
    let mut t = T::new(false);
    let relayed = timed_call(&mut t, "notimer", 100);
    t.advance(40);
    refresh(&mut t, &relayed, 2, "");
    t.advance(50);
    probes_answered(&mut t);
    t.advance(60);
    assert_eq!(bob(&t), CallStatus::Busy, "no session end at 100 s");
    assert_eq!(t.core.answered_calls(), 1);
}

#[test]
fn an_answer_from_where_an_end_moved_from_does_not_end_the_call() {
    let mut t = T::new(false);
    let (_, relayed) = answered(&mut t, "moved");
    t.advance(90);
    let (to_bob, to_alice) = probes(&mut t);
    t.input(ALICE, &answer(&to_alice, 200, "", ALICE));
    // Before bob's old address answers, a re-INVITE moves him elsewhere.
    let reinvite = in_dialog("INVITE", "bob@127.0.0.1:5072", &relayed, ALICE, 3);
    t.input(ALICE, &reinvite);
    let fwd = with_method(&t.take(), BOB, "INVITE").remove(0);
    t.input(BOB, &answer(&fwd, 200, "bob1", "127.0.0.1:5075"));
    t.input(BOB, &answer(&to_bob, 481, "", BOB));
    assert_eq!(bob(&t), CallStatus::Busy);
    assert_eq!(t.core.answered_calls(), 1);
    t.take();
    // The next probe goes to where he is; his answer there counts.
    t.advance(90);
    let out = t.take();
    let to_bob = with_method(&out, "127.0.0.1:5075", "OPTIONS").remove(0);
    t.input(
        "127.0.0.1:5075",
        &answer(&to_bob, 481, "", "127.0.0.1:5075"),
    );
    assert_eq!(bob(&t), CallStatus::Free);
}

/// bob's phone answers a re-INVITE with a Contact at a host name: each probe to him waits
/// for the name's targets (RFC 3263) when the answers are no longer kept, then goes to
/// the first.
#[test]
fn probes_follow_a_target_refresh_to_a_host_name() {
    let mut t = T::new(false);
    let (_, relayed) = answered(&mut t, "named");
    let reinvite = in_dialog("INVITE", "bob@127.0.0.1:5072", &relayed, ALICE, 3);
    t.input(ALICE, &reinvite);
    let fwd = with_method(&t.take(), BOB, "INVITE").remove(0);
    t.input(BOB, &answer(&fwd, 200, "bob1", "bob@carrier.test"));
    t.take();
    t.advance(90);
    let out = t.take();
    assert_eq!(options_sent(&out), 1, "alice's; bob's waits: {out:?}");
    let to_alice = with_method(&out, ALICE, "OPTIONS").remove(0);
    t.input(ALICE, &answer(&to_alice, 200, "", ALICE));
    assert!(!t.lookups.is_empty(), "bob's new Contact is looked up");
    t.answer_dns(carrier_dns);
    let out = t.take();
    let to_bob = with_method(&out, CARRIER_A, "OPTIONS").remove(0);
    assert_eq!(first_line(&to_bob), "OPTIONS sip:bob@carrier.test SIP/2.0");
    assert_eq!(header(&to_bob, "CSeq"), Some("3 OPTIONS"));
    assert!(header(&to_bob, "Via")
        .unwrap()
        .starts_with("SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK"));
    t.input(CARRIER_A, &answer(&to_bob, 200, "", CARRIER_A));
    // 90 s on, the negative answers (no NAPTR, no TCP SRV record: 60 s) are asked again;
    // meanwhile alice is found gone: the BYE to bob waits for the answers too, though the
    // call is forgotten at once, and bob's probe is not sent.
    t.advance(90);
    let to_alice = with_method(&t.take(), ALICE, "OPTIONS").remove(0);
    assert!(!t.lookups.is_empty());
    t.input(ALICE, &answer(&to_alice, 481, "", ALICE));
    assert_eq!(bob(&t), CallStatus::Free);
    assert!(t.take().is_empty());
    t.answer_dns(carrier_dns);
    let out = t.take();
    assert!(
        with_method(&out, CARRIER_A, "OPTIONS").is_empty(),
        "{out:?}"
    );
    let bye = with_method(&out, CARRIER_A, "BYE").remove(0);
    assert_eq!(first_line(&bye), "BYE sip:bob@carrier.test SIP/2.0");
    assert_eq!(header(&bye, "CSeq"), Some("4 BYE"));
    assert_eq!(t.core.routing_counters().lost, 1);
}

// ---- calls answered through a trunk whose carrier challenged the INVITE ---------------

const CARRIER_CONTACT: &str = "127.0.0.3:5080";

/// alice calls a number of the `authed` trunk; the carrier challenges the INVITE, takes
/// the authenticated one (CSeq 2) and answers; alice ACKs (CSeq 1). (The carrier's 200 as
/// sent, the 200 alice got.)
fn authed_call(t: &mut T, call: &str) -> (String, String) {
    t.input(ALICE, &invite("alice", ALICE, "+33140000000", call, ""));
    let inv = to(&take(t), AUTHED).remove(0);
    let ch = "Digest realm=\"carrier.example\", nonce=\"n1\", qop=\"auth\"";
    t.input(AUTHED, &challenge(&inv, 407, &[ch]));
    let again = with_method(&take(t), AUTHED, "INVITE").remove(0);
    assert_eq!(header(&again, "CSeq"), Some("2 INVITE"));
    let ok = answer(&again, 200, "pstn", CARRIER_CONTACT);
    t.input(AUTHED, &ok);
    let relayed = to(&take(t), ALICE).remove(0);
    assert_eq!(header(&relayed, "CSeq"), Some("1 INVITE"));
    t.input(
        ALICE,
        &in_dialog("ACK", CARRIER_CONTACT, &relayed, ALICE, 1),
    );
    let ack = to(&take(t), AUTHED).remove(0);
    assert!(ack.starts_with("ACK sip:127.0.0.3:5080 SIP/2.0"), "{ack}");
    assert_eq!(
        header(&ack, "CSeq"),
        Some("2 ACK"),
        "the ACK of the 2xx carries the authenticated INVITE's number"
    );
    (ok, relayed)
}

#[test]
fn the_callers_requests_reach_the_carrier_renumbered_and_their_answers_come_back() {
    let mut t = T::new(false);
    let (_, relayed) = authed_call(&mut t, "au1");
    t.input(
        ALICE,
        &in_dialog("BYE", CARRIER_CONTACT, &relayed, ALICE, 2),
    );
    let bye = with_method(&take(&mut t), AUTHED, "BYE").remove(0);
    assert_eq!(header(&bye, "CSeq"), Some("3 BYE"));
    t.input(AUTHED, &answer(&bye, 200, "pstn", CARRIER_CONTACT));
    let ok = to(&take(&mut t), ALICE).remove(0);
    assert_eq!(first_line(&ok), "SIP/2.0 200 OK");
    assert_eq!(header(&ok, "CSeq"), Some("2 BYE"));
    assert_eq!(t.core.answered_calls(), 0);
}

/// A request of the carrier's to alice in the dialog of `carrier_ok` (its 200).
fn from_carrier(method: &str, carrier_ok: &str, cseq: u32) -> String {
    let rr = header(carrier_ok, "Record-Route").unwrap();
    let from = header(carrier_ok, "To").unwrap();
    let to = header(carrier_ok, "From").unwrap();
    let call = header(carrier_ok, "Call-ID").unwrap();
    format!(
        "{method} sip:alice@127.0.0.1:5071 SIP/2.0\r\nVia: SIP/2.0/UDP {AUTHED};branch=z9hG4bK-c{method}{cseq}\r\n\
         Route: {rr}\r\nMax-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {call}\r\n\
         CSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n"
    )
}

#[test]
fn the_carriers_requests_reach_the_caller_as_they_are() {
    let mut t = T::new(false);
    let (ok, _) = authed_call(&mut t, "au2");
    t.input(AUTHED, &from_carrier("BYE", &ok, 1));
    let bye = with_method(&take(&mut t), ALICE, "BYE").remove(0);
    assert_eq!(header(&bye, "CSeq"), Some("1 BYE"));
    t.input(ALICE, &answer(&bye, 200, "", ALICE));
    let resp = to(&take(&mut t), AUTHED).remove(0);
    assert_eq!(first_line(&resp), "SIP/2.0 200 OK");
    assert_eq!(header(&resp, "CSeq"), Some("1 BYE"));
    assert!(!t.core.presence().model().in_call("alice"));
}

#[test]
fn a_challenged_reinvite_and_bye_are_answered_and_the_offset_grows() {
    let mut t = T::new(false);
    let (_, relayed) = authed_call(&mut t, "au3");
    // re-INVITE (alice's 2, the carrier's 3), challenged: sent again as 4.
    let reinvite = in_dialog("INVITE", CARRIER_CONTACT, &relayed, ALICE, 2);
    t.input(ALICE, &reinvite);
    let fwd = with_method(&take(&mut t), AUTHED, "INVITE").remove(0);
    assert_eq!(header(&fwd, "CSeq"), Some("3 INVITE"));
    let ch = "Digest realm=\"carrier.example\", nonce=\"n2\", algorithm=SHA-256, qop=\"auth\"";
    t.input(AUTHED, &challenge(&fwd, 407, &[ch]));
    let out = take(&mut t);
    assert!(
        to(&out, ALICE).is_empty(),
        "alice sees no challenge: {out:?}"
    );
    let carrier = to(&out, AUTHED);
    assert_eq!(header(&carrier[0], "CSeq"), Some("3 ACK"));
    let again = &carrier[1];
    assert_eq!(header(again, "CSeq"), Some("4 INVITE"));
    assert_ne!(header(again, "Via"), header(&fwd, "Via"));
    let d = answered_digest(again, "Proxy-Authorization", "acct-auth", "trunk-pw");
    assert_eq!(d["algorithm"], "SHA-256");
    t.input(AUTHED, &answer(again, 200, "pstn", CARRIER_CONTACT));
    let ok = to(&take(&mut t), ALICE).remove(0);
    assert_eq!(first_line(&ok), "SIP/2.0 200 OK");
    assert_eq!(header(&ok, "CSeq"), Some("2 INVITE"));
    t.input(
        ALICE,
        &in_dialog("ACK", CARRIER_CONTACT, &relayed, ALICE, 2),
    );
    let ack = to(&take(&mut t), AUTHED).remove(0);
    assert_eq!(header(&ack, "CSeq"), Some("4 ACK"));
    // BYE (alice's 3, the carrier's 5), challenged with 401: sent again as 6.
    t.input(
        ALICE,
        &in_dialog("BYE", CARRIER_CONTACT, &relayed, ALICE, 3),
    );
    let bye = with_method(&take(&mut t), AUTHED, "BYE").remove(0);
    assert_eq!(header(&bye, "CSeq"), Some("5 BYE"));
    let ch = "Digest realm=\"carrier.example\", nonce=\"n3\", qop=\"auth\"";
    t.input(AUTHED, &challenge(&bye, 401, &[ch]));
    let out = take(&mut t);
    assert!(to(&out, ALICE).is_empty(), "{out:?}");
    let bye2 = with_method(&out, AUTHED, "BYE").remove(0);
    assert_eq!(header(&bye2, "CSeq"), Some("6 BYE"));
    answered_digest(&bye2, "Authorization", "acct-auth", "trunk-pw");
    t.input(AUTHED, &answer(&bye2, 200, "pstn", CARRIER_CONTACT));
    let ok = to(&take(&mut t), ALICE).remove(0);
    assert_eq!(first_line(&ok), "SIP/2.0 200 OK");
    assert_eq!(header(&ok, "CSeq"), Some("3 BYE"));
    assert_eq!(t.core.routing_counters().carrier_answers, 3);
}

#[test]
fn a_refused_in_dialog_request_gets_the_caller_a_403() {
    let mut t = T::new(false);
    let (_, relayed) = authed_call(&mut t, "au4");
    t.input(
        ALICE,
        &in_dialog("BYE", CARRIER_CONTACT, &relayed, ALICE, 2),
    );
    let bye = with_method(&take(&mut t), AUTHED, "BYE").remove(0);
    let ch = |n: &str| format!("Digest realm=\"carrier.example\", nonce=\"{n}\", qop=\"auth\"");
    t.input(AUTHED, &challenge(&bye, 407, &[&ch("b1")]));
    let bye2 = with_method(&take(&mut t), AUTHED, "BYE").remove(0);
    t.input(AUTHED, &challenge(&bye2, 407, &[&ch("b2")]));
    let out = take(&mut t);
    assert!(with_method(&out, AUTHED, "BYE").is_empty(), "{out:?}");
    let resp = to(&out, ALICE).remove(0);
    assert_eq!(first_line(&resp), "SIP/2.0 403 Trunk Authentication Failed");
    assert_eq!(header(&resp, "CSeq"), Some("2 BYE"));
    assert!(header(&resp, "Proxy-Authenticate").is_none());
    assert_eq!(t.core.routing_counters().carrier_refusals, 1);
}

#[test]
fn probes_of_the_carrier_use_its_numbering() {
    let mut t = T::new(false);
    authed_call(&mut t, "au5");
    t.advance(90);
    let out = t.take();
    let to_carrier = with_method(&out, CARRIER_CONTACT, "OPTIONS").remove(0);
    let to_alice = with_method(&out, ALICE, "OPTIONS").remove(0);
    assert_eq!(header(&to_carrier, "CSeq"), Some("2 OPTIONS"));
    assert_eq!(header(&to_alice, "CSeq"), Some("0 OPTIONS"));
}

#[test]
fn a_prack_in_the_early_dialog_is_renumbered_too() {
    let mut t = T::new(false);
    t.input(ALICE, &invite("alice", ALICE, "+33140000000", "au6", ""));
    let inv = to(&take(&mut t), AUTHED).remove(0);
    let ch = "Digest realm=\"carrier.example\", nonce=\"n1\", qop=\"auth\"";
    t.input(AUTHED, &challenge(&inv, 407, &[ch]));
    let again = with_method(&take(&mut t), AUTHED, "INVITE").remove(0);
    // A reliable 183 (RFC 3262): alice PRACKs it in the early dialog, her CSeq 2.
    let progress = answer(&again, 183, "pstn", CARRIER_CONTACT);
    t.input(AUTHED, &progress);
    let relayed = to(&take(&mut t), ALICE).remove(0);
    assert_eq!(first_line(&relayed), "SIP/2.0 183 Session Progress");
    assert_eq!(header(&relayed, "CSeq"), Some("1 INVITE"));
    t.input(
        ALICE,
        &in_dialog("PRACK", CARRIER_CONTACT, &relayed, ALICE, 2),
    );
    let prack = with_method(&take(&mut t), AUTHED, "PRACK").remove(0);
    assert_eq!(
        header(&prack, "CSeq"),
        Some("3 PRACK"),
        "above the authenticated INVITE's 2"
    );
    t.input(AUTHED, &answer(&prack, 200, "pstn", CARRIER_CONTACT));
    let ok = to(&take(&mut t), ALICE).remove(0);
    assert_eq!(header(&ok, "CSeq"), Some("2 PRACK"));
    // Answered: the same leg goes on (ACK of the INVITE as 2, BYE 3 as 4); probes of the
    // carrier start from the highest number it got (3).
    t.input(AUTHED, &answer(&again, 200, "pstn", CARRIER_CONTACT));
    let ok = to(&take(&mut t), ALICE).remove(0);
    t.input(ALICE, &in_dialog("ACK", CARRIER_CONTACT, &ok, ALICE, 1));
    let ack = to(&take(&mut t), AUTHED).remove(0);
    assert_eq!(header(&ack, "CSeq"), Some("2 ACK"));
    t.advance(90);
    let out = t.take();
    let probe = with_method(&out, CARRIER_CONTACT, "OPTIONS").remove(0);
    assert_eq!(header(&probe, "CSeq"), Some("3 OPTIONS"));
    t.input(ALICE, &in_dialog("BYE", CARRIER_CONTACT, &ok, ALICE, 3));
    let bye = with_method(&take(&mut t), AUTHED, "BYE").remove(0);
    assert_eq!(header(&bye, "CSeq"), Some("4 BYE"));
}

#[test]
fn the_leg_of_a_call_never_answered_is_forgotten() {
    let mut t = T::new(false);
    t.input(ALICE, &invite("alice", ALICE, "+33140000000", "au7", ""));
    let inv = to(&take(&mut t), AUTHED).remove(0);
    t.input(AUTHED, &answer(&inv, 180, "pstn", CARRIER_CONTACT));
    t.input(AUTHED, &answer(&inv, 486, "pstn", CARRIER_CONTACT));
    take(&mut t);
    assert_eq!(t.core.calls().len(), 0);
    assert_eq!(t.core.carrier_legs(), 1, "kept for its lifetime");
    // Another call's leg, past that lifetime, sweeps it out.
    t.advance(901);
    t.input(ALICE, &invite("alice", ALICE, "+33140000000", "au8", ""));
    let inv = to(&take(&mut t), AUTHED).remove(0);
    t.input(AUTHED, &answer(&inv, 180, "pstn", CARRIER_CONTACT));
    assert_eq!(t.core.carrier_legs(), 1);
}
