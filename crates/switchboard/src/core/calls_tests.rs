//! Call routing driven through the whole core with a virtual clock (see test_harness).

use crate::test_harness::*;
use switchboard_presence::model::CallStatus;
use switchboard_store::tables::MEMORY;

#[test]
fn an_answered_call_is_relayed_and_its_dialog_follows_the_record_route() {
    let mut t = T::new(false);
    t.register("bob", BOB);
    t.input(ALICE, &invite("alice", ALICE, "1002", "c1", ""));
    let out = t.take();
    assert_eq!(first_line(&to(&out, ALICE)[0]), "SIP/2.0 100 Trying");
    let branch = &to(&out, BOB)[0];
    assert_eq!(first_line(branch), "INVITE sip:bob@127.0.0.1:5072 SIP/2.0");
    assert!(branch.contains("Max-Forwards: 69"), "{branch}");
    assert!(
        branch.contains("Record-Route: <sip:127.0.0.1:5060;lr;sbt="),
        "{branch}"
    );
    assert!(
        header(branch, "Via")
            .unwrap()
            .starts_with("SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-sb"),
        "{branch}"
    );
    assert!(
        branch.contains("P-Asserted-Identity: \"Alice A\" <sip:1001@switchboard.local>"),
        "{branch}"
    );
    assert_eq!(
        t.core.presence().model().call_state("bob"),
        CallStatus::Ringing
    );

    t.input(BOB, &answer(branch, 180, "bob1", BOB));
    let out = t.take();
    let ringing = &to(&out, ALICE)[0];
    assert_eq!(first_line(ringing), "SIP/2.0 180 Ringing");
    assert_eq!(
        switchboard_sip::proxy::via_values(&request_of_resp(ringing)).len(),
        1,
        "our Via is gone: {ringing}"
    );

    let ok = answer(branch, 200, "bob1", BOB);
    t.input(BOB, &ok);
    let out = t.take();
    let relayed = &to(&out, ALICE)[0];
    assert_eq!(first_line(relayed), "SIP/2.0 200 OK");
    assert_eq!(
        t.core.presence().model().call_state("bob"),
        CallStatus::Busy
    );
    assert!(t.core.presence().model().in_call("alice"));

    // ACK and BYE from alice along the Route set reach bob's contact.
    t.input(
        ALICE,
        &in_dialog("ACK", "bob@127.0.0.1:5072", relayed, ALICE, 1),
    );
    let out = t.take();
    let ack = &to(&out, BOB)[0];
    assert_eq!(first_line(ack), "ACK sip:bob@127.0.0.1:5072 SIP/2.0");
    assert!(!ack.contains("Route:"), "our Route was consumed: {ack}");
    t.input(
        ALICE,
        &in_dialog("BYE", "bob@127.0.0.1:5072", relayed, ALICE, 2),
    );
    let out = t.take();
    let bye = to(&out, BOB).pop().unwrap();
    assert_eq!(first_line(&bye), "BYE sip:bob@127.0.0.1:5072 SIP/2.0");
    t.input(BOB, &answer(&bye, 200, "bob1", BOB));
    let out = t.take();
    assert_eq!(first_line(&to(&out, ALICE)[0]), "SIP/2.0 200 OK");
    assert_eq!(
        t.core.presence().model().call_state("bob"),
        CallStatus::Free
    );
    assert!(!t.core.presence().model().in_call("alice"));
    assert_eq!(t.core.answered_calls(), 0);
    assert_eq!(t.core.calls().len(), 0);
    assert_eq!(t.core.routing_counters().answered, 1);
}

#[test]
fn ring_all_devices_and_cancel_the_others_as_completed_elsewhere() {
    let mut t = T::new(false);
    t.register("bob", BOB);
    t.register("bob", BOB2);
    t.input(ALICE, &invite("alice", ALICE, "bob", "c2", ""));
    let out = t.take();
    let (b1, b2) = (to(&out, BOB)[0].clone(), to(&out, BOB2)[0].clone());
    // Only the first device has rung when the second answers.
    t.input(BOB, &answer(&b1, 180, "d1", BOB));
    t.input(BOB2, &answer(&b2, 200, "d2", BOB2));
    let out = t.take();
    let cancel = &to(&out, BOB)[0];
    assert!(
        cancel.starts_with("CANCEL sip:bob@127.0.0.1:5072 SIP/2.0"),
        "{cancel}"
    );
    assert_eq!(
        header(cancel, "Via"),
        header(&b1, "Via"),
        "same branch as the INVITE"
    );
    assert!(
        cancel.contains("Reason: SIP;cause=200;text=\"Call completed elsewhere\""),
        "{cancel}"
    );
    assert_eq!(
        first_line(&to(&out, ALICE).pop().unwrap()),
        "SIP/2.0 200 OK"
    );
    // The cancelled device answers the CANCEL and its INVITE 487: nothing reaches alice.
    t.input(BOB, &answer(cancel, 200, "d1", BOB));
    t.input(BOB, &answer(&b1, 487, "d1", BOB));
    let out = t.take();
    assert!(to(&out, ALICE).is_empty(), "{out:?}");
    assert!(
        to(&out, BOB)[0].starts_with("ACK "),
        "the 487 is ACKed: {out:?}"
    );
    assert_eq!(t.core.calls().len(), 0);
}

#[test]
fn a_cancel_waits_for_the_first_provisional_response() {
    let mut t = T::new(false);
    t.register("bob", BOB);
    t.register("bob", BOB2);
    t.input(ALICE, &invite("alice", ALICE, "bob", "c3", ""));
    let out = t.take();
    let b1 = to(&out, BOB)[0].clone();
    let b2 = to(&out, BOB2)[0].clone();
    t.input(BOB2, &answer(&b2, 200, "d2", BOB2));
    let out = t.take();
    assert!(
        !to(&out, BOB).iter().any(|m| m.starts_with("CANCEL")),
        "no CANCEL before a provisional response (§9.1): {out:?}"
    );
    t.input(BOB, &answer(&b1, 100, "", BOB));
    let out = t.take();
    assert!(to(&out, BOB)[0].starts_with("CANCEL "), "{out:?}");
}

#[test]
fn caller_cancel_ends_the_call_with_487_and_cancels_the_branches() {
    let mut t = T::new(false);
    t.register("bob", BOB);
    let inv = invite("alice", ALICE, "1002", "c4", "");
    t.input(ALICE, &inv);
    let out = t.take();
    let b1 = to(&out, BOB)[0].clone();
    t.input(BOB, &answer(&b1, 180, "d1", BOB));
    t.take();
    let cancel = inv
        .replacen("INVITE sip:", "CANCEL sip:", 1)
        .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL")
        .replace(
            "Content-Type: application/sdp\r\nContent-Length: 4\r\n\r\nv=0\n",
            "Content-Length: 0\r\n\r\n",
        );
    t.input(ALICE, &cancel);
    let out = t.take();
    let to_alice: Vec<_> = to(&out, ALICE)
        .iter()
        .map(|m| first_line(m).to_string())
        .collect();
    assert!(
        to_alice.contains(&"SIP/2.0 200 OK".to_string()),
        "{to_alice:?}"
    );
    assert!(
        to_alice.contains(&"SIP/2.0 487 Request Terminated".to_string()),
        "{to_alice:?}"
    );
    assert!(to(&out, BOB)[0].starts_with("CANCEL "), "{out:?}");
    assert_eq!(
        t.core.presence().model().call_state("bob"),
        CallStatus::Free
    );
}

#[test]
fn no_answer_cancels_after_the_ring_time_and_goes_to_voicemail() {
    let mut t = T::new(false);
    t.register("bob", BOB);
    t.input(ALICE, &invite("alice", ALICE, "1002", "c5", ""));
    let out = t.take();
    let b1 = to(&out, BOB)[0].clone();
    t.input(BOB, &answer(&b1, 180, "d1", BOB));
    t.take();
    t.advance(19);
    assert!(!t.take().iter().any(|(_, m)| m.starts_with("CANCEL")));
    t.advance(1);
    let out = t.take();
    assert!(
        to(&out, BOB).iter().any(|m| m.starts_with("CANCEL ")),
        "{out:?}"
    );
    let vm = &to(&out, VM)[0];
    assert_eq!(first_line(vm), "INVITE sip:vm-bob@127.0.0.1:5090 SIP/2.0");
    // The server is told whose mailbox, and why (RFC 5806, RFC 7044 with RFC 4458's cause).
    assert_eq!(
        header(vm, "Diversion"),
        Some("<sip:1002@switchboard.local>;reason=no-answer;counter=1")
    );
    assert_eq!(
        header(vm, "History-Info"),
        Some(
            "<sip:1002@switchboard.local?Reason=SIP%3Bcause%3D408>;index=1, \
             <sip:vm-bob@127.0.0.1:5090>;index=1.1;mp=1"
        )
    );
    t.input(VM, &answer(vm, 200, "vm", VM));
    let out = t.take();
    assert_eq!(first_line(&to(&out, ALICE)[0]), "SIP/2.0 200 OK");
}

#[test]
fn a_busy_device_takes_the_busy_path() {
    let mut t = T::new(false);
    t.register("bob", BOB);
    t.input(ALICE, &invite("alice", ALICE, "1002", "c6", ""));
    let out = t.take();
    let b1 = to(&out, BOB)[0].clone();
    t.input(BOB, &answer(&b1, 486, "d1", BOB));
    let out = t.take();
    assert!(to(&out, BOB)[0].starts_with("ACK "), "{out:?}");
    assert_eq!(
        first_line(&to(&out, VM)[0]),
        "INVITE sip:vm-bob@127.0.0.1:5090 SIP/2.0"
    );
    assert_eq!(
        header(&to(&out, VM)[0], "Diversion"),
        Some("<sip:1002@switchboard.local>;reason=user-busy;counter=1")
    );
    // The voicemail server is down too: the busy answer wins over its failure.
    let vm = to(&out, VM)[0].clone();
    t.input(VM, &answer(&vm, 503, "vm", VM));
    let out = t.take();
    assert_eq!(first_line(&to(&out, ALICE)[0]), "SIP/2.0 486 Busy Here");
}

#[test]
fn nobody_registered_follows_the_unavailable_path() {
    let mut t = T::new(false);
    t.input(ALICE, &invite("alice", ALICE, "1003", "c7", ""));
    let out = t.take();
    let finals: Vec<_> = to(&out, ALICE)
        .iter()
        .map(|m| first_line(m).to_string())
        .collect();
    assert_eq!(
        finals.last().unwrap(),
        "SIP/2.0 480 Temporarily Unavailable"
    );
}

#[test]
fn memory_hunt_starts_with_whoever_answered_last() {
    let mut t = T::new(false);
    t.register("bob", BOB);
    t.register("carol", CAROL);
    // First call: bob first (list order); he does not answer, carol does.
    t.input(
        CARRIER,
        &invite("+447700900123", CARRIER, "+441632960000", "m1", ""),
    );
    let out = t.take();
    let b = to(&out, BOB)[0].clone();
    assert!(to(&out, CAROL).is_empty());
    t.input(BOB, &answer(&b, 180, "b", BOB));
    t.advance(10);
    let out = t.take();
    let c = to(&out, CAROL)[0].clone();
    t.input(CAROL, &answer(&c, 200, "c", CAROL));
    let ok = to(&t.take(), CARRIER).pop().unwrap();
    // The call ends (carol is free again: a team skips members in a call).
    t.input(
        CARRIER,
        &in_dialog("BYE", "carol@127.0.0.1:5074", &ok, CARRIER, 2),
    );
    assert!(!t.core.presence().model().in_call("carol"));
    let row = t
        .persisted
        .iter()
        .find(|w| w.table == MEMORY && w.key == "support")
        .expect("memory stored");
    assert!(String::from_utf8_lossy(row.value.as_ref().unwrap()).contains("carol"));
    t.take();
    // Second call: carol rings first.
    t.input(
        CARRIER,
        &invite("+447700900123", CARRIER, "+441632960000", "m2", ""),
    );
    let out = t.take();
    assert_eq!(to(&out, CAROL).len(), 1, "{out:?}");
    assert!(to(&out, BOB).is_empty());
}

#[test]
fn in_dialog_requests_need_our_route_and_its_token() {
    let mut t = T::new(false);
    let bye = "BYE sip:bob@127.0.0.1:5072 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bK-x1\r\n\
        Route: <sip:127.0.0.1:5060;lr;sbt=0000000000000000>\r\nMax-Forwards: 70\r\n\
        From: <sip:alice@switchboard.local>;tag=a\r\nTo: <sip:bob@switchboard.local>;tag=b\r\n\
        Call-ID: forged\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n";
    t.input(ALICE, bye);
    let out = t.take();
    assert_eq!(first_line(&out[0].1), "SIP/2.0 403 Forbidden");
    assert!(to(&out, BOB).is_empty());
    let no_route = bye.replace(
        "Route: <sip:127.0.0.1:5060;lr;sbt=0000000000000000>\r\n",
        "",
    );
    t.input(ALICE, &no_route.replace("z9hG4bK-x1", "z9hG4bK-x2"));
    let out = t.take();
    assert_eq!(
        first_line(&out[0].1),
        "SIP/2.0 481 Call/Transaction Does Not Exist"
    );
}

#[test]
fn a_request_that_comes_back_unchanged_is_a_loop() {
    let mut t = T::new(false);
    t.register("bob", BOB);
    let inv = invite("alice", ALICE, "1002", "l1", "");
    let req = request_of(&inv);
    let key = switchboard_sip::proxy::loop_key(&req);
    let ours = format!(
        "Via: SIP/2.0/UDP 127.0.0.1:5060;branch={};rport\r\nVia: SIP/2.0/UDP",
        switchboard_sip::proxy::branch(key, 1)
    );
    t.input(ALICE, &inv.replacen("Via: SIP/2.0/UDP", &ours, 1));
    let out = t.take();
    assert_eq!(first_line(&out[0].1), "SIP/2.0 482 Loop Detected");
}

#[test]
fn registered_users_are_challenged_and_trunks_are_known_by_address() {
    let mut t = T::new(true);
    t.input(ALICE, &invite("alice", ALICE, "1002", "a1", ""));
    let out = t.take();
    assert_eq!(
        first_line(&out[0].1),
        "SIP/2.0 407 Proxy Authentication Required"
    );
    assert!(out[0]
        .1
        .contains("Proxy-Authenticate: Digest realm=\"switchboard.local\""));
    // A call from the carrier's address to a DID is not challenged.
    t.input(
        CARRIER,
        &invite("+447700900123", CARRIER, "+441632960000", "a2", ""),
    );
    let out = t.take();
    assert_eq!(first_line(&to(&out, CARRIER)[0]), "SIP/2.0 100 Trying");
    // Nobody of the team is registered: the call ends (team no-answer: hang up).
    assert!(first_line(to(&out, CARRIER).last().unwrap()).starts_with("SIP/2.0 480"));
}

#[test]
fn outbound_calls_go_to_the_trunk_with_the_callers_number() {
    let mut t = T::new(false);
    t.input(ALICE, &invite("alice", ALICE, "+447700900999", "o1", ""));
    let out = t.take();
    let branch = &to(&out, CARRIER)[0];
    // Numbers leave as this carrier wants them: nationally. alice has no caller ID of her
    // own: the trunk's is hers.
    assert_eq!(
        first_line(branch),
        "INVITE sip:07700900999@127.0.0.2:5080 SIP/2.0"
    );
    let pai = "\"Alice A\" <sip:01632960000@switchboard.local>";
    assert_eq!(header(branch, "P-Asserted-Identity"), Some(pai));
    assert!(header(branch, "From").unwrap().starts_with(pai), "{branch}");
    // Dialled nationally, the same number.
    t.input(ALICE, &invite("alice", ALICE, "07700900999", "o3", ""));
    let out = t.take();
    assert_eq!(
        first_line(&to(&out, CARRIER)[0]),
        "INVITE sip:07700900999@127.0.0.2:5080 SIP/2.0"
    );
    // A number no trunk carries: 404.
    t.input(ALICE, &invite("alice", ALICE, "+33123456789", "o2", ""));
    let out = t.take();
    assert_eq!(
        first_line(to(&out, ALICE).last().unwrap()),
        "SIP/2.0 404 Not Found"
    );
}

#[test]
fn a_branch_that_never_answers_is_given_up_and_the_caller_hears_back() {
    let mut t = T::new(false);
    t.register("carol", CAROL);
    t.input(ALICE, &invite("alice", ALICE, "1003", "g1", ""));
    t.take();
    // No response at all from carol's phone: timer B (32 s) ends the branch.
    t.advance(40);
    let out = t.take();
    let last = to(&out, ALICE).last().cloned().unwrap_or_default();
    assert!(
        first_line(&last).starts_with("SIP/2.0 408")
            || first_line(&last).starts_with("SIP/2.0 480"),
        "{out:?}"
    );
    assert_eq!(t.core.calls().len(), 0);
}

#[test]
fn call_waiting_off_gives_a_second_caller_the_busy_handling() {
    let mut t = T::new(false);
    t.register("carol", CAROL);
    t.input(ALICE, &invite("alice", ALICE, "1003", "w1", ""));
    let out = t.take();
    let b = to(&out, CAROL)[0].clone();
    t.input(CAROL, &answer(&b, 200, "c", CAROL));
    t.take();
    assert!(t.core.presence().model().in_call("carol"));
    // bob calls carol while she is on the phone: engaged, her phone does not ring.
    t.input(BOB, &invite("bob", BOB, "1003", "w2", ""));
    let out = t.take();
    assert!(to(&out, CAROL).is_empty(), "{out:?}");
    assert_eq!(
        first_line(to(&out, BOB).last().unwrap()),
        "SIP/2.0 486 Busy Here"
    );
}

#[test]
fn a_tcp_flow_is_held_while_registered_and_once_closed_fails_its_branch_at_once() {
    use switchboard_sip::peer::Peer;
    use switchboard_sip::transport::Inbound;
    let mut t = T::new(false);
    // bob's phone registers over a TCP connection from an ephemeral port.
    let flow = Peer::tcp(addr(BOB), 7);
    t.register_from("bob", flow);
    let until = t.now().mono + std::time::Duration::from_secs(3600);
    match &t.holds[..] {
        [(p, u)] => {
            assert_eq!(*p, flow);
            assert!(*u >= until, "held until the binding lapses");
        }
        other => panic!("the flow is held: {other:?}"),
    }
    // While it is open, calls go over it.
    t.input(ALICE, &invite("alice", ALICE, "1002", "c1", ""));
    let out = t.take();
    assert_eq!(
        first_line(&to(&out, BOB)[0]).to_ascii_lowercase(),
        "invite sip:bob@127.0.0.1:5072;transport=tcp sip/2.0"
    );
    t.input(
        ALICE,
        &invite("alice", ALICE, "1002", "c1", "").replacen("INVITE", "CANCEL", 2),
    );
    t.advance(1);
    t.take();
    // The connection closes: the next call does not dial bob's old port; his branch fails
    // at once and his no-answer destination rings without waiting out his ring time.
    t.event(Inbound::Closed { peer: flow });
    t.input(ALICE, &invite("alice", ALICE, "1002", "c2", ""));
    let out = t.take();
    assert!(to(&out, BOB).is_empty(), "{out:?}");
    let vm = to(&out, VM);
    assert!(
        vm.first()
            .is_some_and(|m| m.starts_with("INVITE sip:vm-bob@")),
        "{out:?}"
    );
}

/// bob answers `branch` (200); alice ACKs the relayed 200, then hangs up (BYE).
fn answered_then_bye(t: &mut T, branch: &str) {
    t.input(BOB, &answer(branch, 200, "b1", BOB));
    let relayed = to(&t.take(), ALICE).pop().unwrap();
    for (method, cseq) in [("ACK", 1), ("BYE", 2)] {
        t.input(
            ALICE,
            &in_dialog(method, "bob@127.0.0.1:5072", &relayed, ALICE, cseq),
        );
    }
}

/// Replays every input of a run into a fresh core and compares the outputs, byte for byte.
fn assert_replays(t: &T) {
    let replayed = t.replay();
    assert_eq!(replayed.len(), t.outputs.len());
    for (i, (a, b)) in t.outputs.iter().zip(&replayed).enumerate() {
        assert_eq!(a, b, "output {i} differs");
    }
    // The seed is what makes it so: another seed, other tags and branches.
    assert_ne!(t.replay_seeded([6; 32]), t.outputs);
}

#[test]
fn a_recorded_run_replays_byte_for_byte() {
    use crate::core::Input;
    use crate::presence_service::{Command, Request};
    use switchboard_presence::model::Interface;
    let mut t = T::new(false);
    t.register("bob", BOB);
    t.register("bob", BOB2);
    t.register("carol", CAROL);
    // A watcher of bob's lamp.
    t.input(
        ALICE,
        "SUBSCRIBE sip:bob@switchboard.local SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bK-s1;rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@switchboard.local>;tag=w1\r\nTo: <sip:bob@switchboard.local>\r\n\
         Call-ID: sub1\r\nCSeq: 1 SUBSCRIBE\r\nContact: <sip:alice@127.0.0.1:5071>\r\nEvent: dialog\r\n\
         Expires: 600\r\nContent-Length: 0\r\n\r\n",
    );
    // A call to bob rings both devices; one answers, the other is cancelled; BYE.
    t.input(ALICE, &invite("alice", ALICE, "1002", "c1", ""));
    let out = t.take();
    let branch = to(&out, BOB)[0].clone();
    t.input(BOB, &answer(&branch, 180, "b1", BOB));
    t.advance(1);
    answered_then_bye(&mut t, &branch);
    // A team call hunts with timers, nobody answers.
    t.input(ALICE, &invite("alice", ALICE, "2000", "c2", ""));
    t.advance(25);
    // A presence change through the API, a policy handed in again, time passing.
    t.feed(Input::Command {
        id: 1,
        req: Request {
            who: "admin".into(),
            admin: true,
            via: Interface::Api,
            command: Command::SetStatus {
                user: "carol".into(),
                status: "dnd".into(),
                text: None,
                until: None,
            },
        },
    });
    t.pump();
    t.feed(Input::PolicyChanged(snapshot(POLICY)));
    t.pump();
    t.advance(40);
    assert!(t.outputs.len() > 50, "a run with something in it");
    assert_replays(&t);
}

#[test]
fn challenges_replay_with_the_same_nonces() {
    let mut t = T::new(true);
    t.input(
        BOB,
        "REGISTER sip:switchboard.local SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5072;branch=z9hG4bK-r1\r\n\
         Max-Forwards: 70\r\nFrom: <sip:bob@switchboard.local>;tag=r\r\nTo: <sip:bob@switchboard.local>\r\n\
         Call-ID: r1\r\nCSeq: 1 REGISTER\r\nContact: <sip:bob@127.0.0.1:5072>\r\nContent-Length: 0\r\n\r\n",
    );
    t.input(ALICE, &invite("alice", ALICE, "1002", "c1", ""));
    let out = t.take();
    assert!(
        out.iter().any(|(_, m)| m.starts_with("SIP/2.0 401")),
        "{out:?}"
    );
    assert!(
        out.iter().any(|(_, m)| m.starts_with("SIP/2.0 407")),
        "{out:?}"
    );
    t.advance(40);
    assert_replays(&t);
}

#[test]
fn what_is_relayed_keeps_reason_phrases_and_uri_parameters_as_written() {
    let mut t = T::new(false);
    let contact = "sip:bob@127.0.0.1:5072;transport=udp;foo=Bar";
    t.input(
        BOB,
        &format!(
            "REGISTER sip:switchboard.local SIP/2.0\r\nVia: SIP/2.0/UDP {BOB};branch=z9hG4bK-reg-case\r\n\
             Max-Forwards: 70\r\nFrom: <sip:bob@switchboard.local>;tag=r\r\nTo: <sip:bob@switchboard.local>\r\n\
             Call-ID: reg-case\r\nCSeq: 1 REGISTER\r\nContact: <{contact}>\r\nExpires: 3600\r\n\
             Content-Length: 0\r\n\r\n"
        ),
    );
    let out = t.take();
    assert!(out[0].1.starts_with("SIP/2.0 200"), "{out:?}");
    t.input(ALICE, &invite("alice", ALICE, "1002", "case", ""));
    let out = t.take();
    let branch = &to(&out, BOB)[0];
    assert_eq!(first_line(branch), format!("INVITE {contact} SIP/2.0"));
    let ringing = answer(branch, 180, "b", BOB).replacen("180 Ringing", "180 Ringing Now", 1);
    t.input(BOB, &ringing);
    let out = t.take();
    assert_eq!(first_line(&to(&out, ALICE)[0]), "SIP/2.0 180 Ringing Now");
    let ok = answer(branch, 200, "b", BOB)
        .replacen("200 OK", "200 Ok", 1)
        .replace(
            "Contact: <sip:127.0.0.1:5072>",
            &format!("Contact: <{contact}>"),
        );
    t.input(BOB, &ok);
    let out = t.take();
    let relayed = &to(&out, ALICE)[0];
    assert_eq!(first_line(relayed), "SIP/2.0 200 Ok");
    // The 200's Contact as bob wrote it.
    assert!(
        relayed.contains(&format!("Contact: <{contact}>\r\n")),
        "{relayed}"
    );
}

/// bob's phone registers from `BOB` with `contact` as instance `instance`.
fn register_instance(t: &mut T, contact: &str, instance: &str, cseq: u32) {
    t.input(
        BOB,
        &format!(
            "REGISTER sip:switchboard.local SIP/2.0\r\nVia: SIP/2.0/UDP {BOB};branch=z9hG4bK-reg-{instance}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:bob@switchboard.local>;tag=r\r\nTo: <sip:bob@switchboard.local>\r\n\
             Call-ID: reg-{instance}\r\nCSeq: {cseq} REGISTER\r\n\
             Contact: <{contact}>;+sip.instance=\"<urn:uuid:{instance}>\"\r\nExpires: 3600\r\n\
             Content-Length: 0\r\n\r\n"
        ),
    );
    let out = t.take();
    assert!(out[0].1.starts_with("SIP/2.0 200"), "{out:?}");
}

#[test]
fn bindings_sharing_a_contact_are_forked_to_once_the_newest_kept() {
    let mut t = T::new(false);
    // A phone restarted with a new instance id from the same address: two bindings, one
    // contact (equal as RFC 3261 §19.1.4 compares URIs: the transport's case aside).
    register_instance(&mut t, "sip:bob@127.0.0.1:5072;transport=udp", "old", 1);
    t.advance(5);
    register_instance(&mut t, "sip:bob@127.0.0.1:5072;transport=UDP", "new", 1);
    assert_eq!(t.core.registrar().len(), 2);
    t.input(ALICE, &invite("alice", ALICE, "1002", "dup", ""));
    let out = t.take();
    let invites: Vec<String> = to(&out, BOB)
        .into_iter()
        .filter(|m| m.starts_with("INVITE "))
        .collect();
    assert_eq!(invites.len(), 1, "{invites:?}");
    assert_eq!(
        first_line(&invites[0]),
        "INVITE sip:bob@127.0.0.1:5072;transport=UDP SIP/2.0",
        "the newest binding"
    );
    // A second phone at another contact still rings.
    t.register("bob", BOB2);
    t.input(ALICE, &invite("alice", ALICE, "1002", "dup2", ""));
    let out = t.take();
    assert_eq!(to(&out, BOB).len(), 1, "{out:?}");
    assert_eq!(to(&out, BOB2).len(), 1, "{out:?}");
}

#[test]
fn every_transaction_has_one_owner_until_it_ends() {
    use crate::core::Owner;
    let mut t = T::new(false);
    t.register("bob", BOB);
    t.register("carol", CAROL);
    t.input(ALICE, &invite("alice", ALICE, "1002", "o1", ""));
    let out = t.take();
    let branch = to(&out, BOB)[0].clone();
    // The caller's INVITE and bob's branch, each filed once, under its part of the core.
    let owners: Vec<Owner> = t.core.wire.owners.values().copied().collect();
    assert_eq!(owners.len(), 2, "{owners:?}");
    assert!(owners.iter().any(|o| matches!(o, Owner::Call(_))));
    assert!(owners
        .iter()
        .any(|o| matches!(o, Owner::Branch { branch: 0, .. })));
    // The BYE relayed inside the dialog is a relay's.
    answered_then_bye(&mut t, &branch);
    assert!(t.core.wire.owners.values().any(|o| *o == Owner::Relay));
    let bye = to(&t.take(), BOB).pop().unwrap();
    t.input(BOB, &answer(&bye, 200, "b1", BOB));
    // Once every transaction has run its course (timers K, J), nobody owns anything.
    t.advance(40);
    assert_eq!(t.core.wire.transactions.len(), 0);
    assert!(t.core.wire.owners.is_empty(), "{:?}", t.core.wire.owners);
}

// ---- a carrier that challenges calls leaving through a trunk with an account ----------

/// Both algorithms, MD5 first: the answer must pick SHA-256.
const CARRIER_CHALLENGES: [&str; 2] = [
    "Digest realm=\"carrier.example\", nonce=\"n-md5\", algorithm=MD5, qop=\"auth\"",
    "Digest realm=\"carrier.example\", nonce=\"n-sha\", algorithm=SHA-256, qop=\"auth\", opaque=\"op1\"",
];

/// alice dials a number the `authed` trunk carries; the carrier's INVITE as it got it.
fn outbound_call(t: &mut T, call: &str) -> String {
    t.input(ALICE, &invite("alice", ALICE, "+33140000000", call, ""));
    let out = t.take();
    assert_eq!(first_line(&to(&out, ALICE)[0]), "SIP/2.0 100 Trying");
    let inv = to(&out, AUTHED).remove(0);
    assert_eq!(
        first_line(&inv),
        "INVITE sip:+33140000000@127.0.0.3:5080 SIP/2.0"
    );
    assert!(header(&inv, "Proxy-Authorization").is_none(), "{inv}");
    inv
}

/// The carrier challenges `inv` with 407: (what the carrier got next, what alice got).
fn challenged(t: &mut T, inv: &str, challenges: &[&str]) -> (Vec<String>, Vec<String>) {
    t.input(AUTHED, &challenge(inv, 407, challenges));
    let out = t.take();
    (to(&out, AUTHED), to(&out, ALICE))
}

#[test]
fn a_carriers_challenge_is_answered_with_the_trunks_account_and_the_caller_never_sees_it() {
    let mut t = T::new(false);
    let inv = outbound_call(&mut t, "ca1");
    let (carrier, alice) = challenged(&mut t, &inv, &CARRIER_CHALLENGES);
    assert!(alice.is_empty(), "alice sees no challenge: {alice:?}");
    assert_eq!(carrier.len(), 2, "{carrier:?}");
    // The challenge ACKed hop by hop (its own branch and number), then the INVITE again.
    assert!(carrier[0].starts_with("ACK sip:+33140000000@127.0.0.3:5080 "));
    assert_eq!(header(&carrier[0], "Via"), header(&inv, "Via"));
    assert_eq!(header(&carrier[0], "CSeq"), Some("1 ACK"));
    let again = &carrier[1];
    assert_eq!(
        first_line(again),
        "INVITE sip:+33140000000@127.0.0.3:5080 SIP/2.0"
    );
    assert_eq!(header(again, "CSeq"), Some("2 INVITE"));
    assert_ne!(header(again, "Via"), header(&inv, "Via"), "a new branch");
    assert_eq!(header(again, "Call-ID"), header(&inv, "Call-ID"));
    assert_eq!(header(again, "From"), header(&inv, "From"));
    let d = answered_digest(again, "Proxy-Authorization", "acct-auth", "trunk-pw");
    assert_eq!(d["algorithm"], "SHA-256");
    assert_eq!(d["nonce"], "n-sha");
    assert_eq!(d["nc"], "00000001");
    assert_eq!(d["qop"], "auth");
    assert_eq!(d["opaque"], "op1");
    assert_eq!(d["realm"], "carrier.example");
    assert_eq!(t.core.routing_counters().carrier_answers, 1);

    // Its answers reach alice numbered as her INVITE was.
    t.input(AUTHED, &answer(again, 180, "pstn", AUTHED));
    let ringing = to(&t.take(), ALICE).remove(0);
    assert_eq!(first_line(&ringing), "SIP/2.0 180 Ringing");
    assert_eq!(header(&ringing, "CSeq"), Some("1 INVITE"));
    t.input(AUTHED, &answer(again, 200, "pstn", AUTHED));
    let ok = to(&t.take(), ALICE).remove(0);
    assert_eq!(first_line(&ok), "SIP/2.0 200 OK");
    assert_eq!(header(&ok, "CSeq"), Some("1 INVITE"));
    assert_eq!(t.core.answered_calls(), 1);
    // The cnonce comes from the core's generator: the run replays exactly.
    assert_replays(&t);
}

#[test]
fn a_second_challenge_is_a_refusal_the_caller_gets_as_403() {
    let mut t = T::new(false);
    let inv = outbound_call(&mut t, "ca2");
    let (carrier, _) = challenged(&mut t, &inv, &CARRIER_CHALLENGES);
    let again = carrier[1].clone();
    let fresh = ["Digest realm=\"carrier.example\", nonce=\"n2\", algorithm=MD5, qop=\"auth\""];
    let (carrier, alice) = challenged(&mut t, &again, &fresh);
    assert_eq!(
        carrier.len(),
        1,
        "only the ACK, no third INVITE: {carrier:?}"
    );
    assert!(carrier[0].starts_with("ACK "), "{carrier:?}");
    assert_eq!(header(&carrier[0], "CSeq"), Some("2 ACK"));
    let last = alice.last().expect("alice gets a final answer");
    assert_eq!(first_line(last), "SIP/2.0 403 Trunk Authentication Failed");
    assert!(header(last, "Proxy-Authenticate").is_none(), "{last}");
    assert!(
        header(last, "Reason").unwrap().contains("cause=407"),
        "{last}"
    );
    assert_eq!(header(last, "CSeq"), Some("1 INVITE"));
    assert_eq!(t.core.routing_counters().carrier_refusals, 1);
    assert_eq!(t.core.calls().len(), 0);
}

#[test]
fn a_stale_nonce_is_answered_again() {
    let mut t = T::new(false);
    let inv = outbound_call(&mut t, "ca3");
    let (carrier, _) = challenged(&mut t, &inv, &CARRIER_CHALLENGES);
    let stale = ["Digest realm=\"carrier.example\", nonce=\"n3\", qop=\"auth\", stale=true"];
    let (carrier, alice) = challenged(&mut t, &carrier[1], &stale);
    assert!(alice.is_empty(), "{alice:?}");
    let third = &carrier[1];
    assert_eq!(header(third, "CSeq"), Some("3 INVITE"));
    let d = answered_digest(third, "Proxy-Authorization", "acct-auth", "trunk-pw");
    assert_eq!(d["nonce"], "n3");
    assert_eq!(
        third.matches("Proxy-Authorization:").count(),
        1,
        "the earlier answer is replaced: {third}"
    );
}

#[test]
fn a_challenge_for_another_realm_is_not_answered() {
    let mut t = T::new(false);
    let inv = outbound_call(&mut t, "ca4");
    let other = ["Digest realm=\"elsewhere\", nonce=\"x\", qop=\"auth\""];
    let (carrier, alice) = challenged(&mut t, &inv, &other);
    assert_eq!(carrier.len(), 1, "{carrier:?}");
    assert_eq!(
        first_line(alice.last().unwrap()),
        "SIP/2.0 403 Trunk Authentication Failed"
    );
}

#[test]
fn a_401_is_answered_in_authorization() {
    let mut t = T::new(false);
    let inv = outbound_call(&mut t, "ca5");
    t.input(
        AUTHED,
        &challenge(
            &inv,
            401,
            &["Digest realm=\"carrier.example\", nonce=\"w\""],
        ),
    );
    let again = to(&t.take(), AUTHED).remove(1);
    let d = answered_digest(&again, "Authorization", "acct-auth", "trunk-pw");
    assert_eq!(d["algorithm"], "MD5");
    assert!(!d.contains_key("nc"), "no qop offered: the RFC 2069 answer");
    assert!(header(&again, "Proxy-Authorization").is_none());
}

/// A caller's CANCEL of its INVITE `inv`.
fn cancel_of(inv: &str) -> String {
    inv.replacen("INVITE sip:", "CANCEL sip:", 1)
        .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL")
        .replace(
            "Content-Type: application/sdp\r\nContent-Length: 4\r\n\r\nv=0\n",
            "Content-Length: 0\r\n\r\n",
        )
}

#[test]
fn a_cancel_cancels_the_authenticated_invite() {
    let mut t = T::new(false);
    let caller_inv = invite("alice", ALICE, "+33140000000", "ca6", "");
    t.input(ALICE, &caller_inv);
    let inv = to(&t.take(), AUTHED).remove(0);
    let (carrier, _) = challenged(&mut t, &inv, &CARRIER_CHALLENGES);
    let again = carrier[1].clone();
    // Before the authenticated INVITE has rung, the CANCEL waits (§9.1)…
    t.input(ALICE, &cancel_of(&caller_inv));
    let out = t.take();
    assert!(to(&out, AUTHED).is_empty(), "{out:?}");
    assert!(to(&out, ALICE)
        .iter()
        .any(|m| first_line(m) == "SIP/2.0 487 Request Terminated"));
    // …and goes with its first provisional response: its branch, its number.
    t.input(AUTHED, &answer(&again, 100, "", AUTHED));
    let cancel = to(&t.take(), AUTHED).remove(0);
    assert_eq!(
        first_line(&cancel),
        "CANCEL sip:+33140000000@127.0.0.3:5080 SIP/2.0"
    );
    assert_eq!(header(&cancel, "Via"), header(&again, "Via"));
    assert_eq!(header(&cancel, "CSeq"), Some("2 CANCEL"));
    t.input(AUTHED, &answer(&cancel, 200, "pstn", AUTHED));
    t.input(AUTHED, &answer(&again, 487, "pstn", AUTHED));
    let out = t.take();
    assert!(to(&out, ALICE).is_empty(), "{out:?}");
    assert_eq!(t.core.calls().len(), 0);
}

#[test]
fn a_challenge_to_a_cancelled_branch_is_not_answered() {
    let mut t = T::new(false);
    let caller_inv = invite("alice", ALICE, "+33140000000", "ca7", "");
    t.input(ALICE, &caller_inv);
    let inv = to(&t.take(), AUTHED).remove(0);
    t.input(ALICE, &cancel_of(&caller_inv));
    t.take();
    let (carrier, alice) = challenged(&mut t, &inv, &CARRIER_CHALLENGES);
    assert_eq!(carrier.len(), 1, "the ACK only: {carrier:?}");
    assert!(alice.is_empty(), "{alice:?}");
    assert_eq!(t.core.routing_counters().carrier_answers, 0);
    assert_eq!(t.core.calls().len(), 0);
}

#[test]
fn a_trunk_without_an_account_passes_the_challenge_on() {
    let mut t = T::new(false);
    t.input(ALICE, &invite("alice", ALICE, "+447700900999", "ca8", ""));
    let inv = to(&t.take(), CARRIER).remove(0);
    let c = challenge(&inv, 407, &CARRIER_CHALLENGES[..1]);
    t.input(CARRIER, &c);
    let out = t.take();
    assert_eq!(to(&out, CARRIER).len(), 1, "the ACK: {out:?}");
    let last = to(&out, ALICE).pop().unwrap();
    assert!(last.starts_with("SIP/2.0 407"), "{last}");
    assert!(header(&last, "Proxy-Authenticate").is_some());
}

/// A 3xx from a branch with `contacts` (the values of its Contact header).
fn redirect(branch: &str, contacts: &str) -> String {
    answer(branch, 302, "r", BOB).replacen("\r\n", &format!("\r\nContact: {contacts}\r\n"), 1)
}

#[test]
fn a_redirect_to_one_of_ours_rings_them_and_nothing_else_is_followed() {
    let mut t = T::new(false);
    t.register("bob", BOB);
    t.register("carol", CAROL);
    t.input(ALICE, &invite("alice", ALICE, "1002", "r1", ""));
    let out = t.take();
    let b = to(&out, BOB)[0].clone();
    // bob's phone forwards the call itself: to carol (by extension), to a number and to a
    // stranger's domain, best q first. Only carol rings.
    t.input(
        BOB,
        &redirect(
            &b,
            "<sip:+447700900123@switchboard.local>;q=1.0, <sip:1003@switchboard.local>;q=0.5, \
             <sip:mallory@evil.example>",
        ),
    );
    let out = t.take();
    assert!(
        to(&out, CARRIER).is_empty(),
        "a number in a redirect is never dialled out: {out:?}"
    );
    let ringing = to(&out, CAROL);
    assert_eq!(ringing.len(), 1, "{out:?}");
    assert_eq!(
        first_line(&ringing[0]),
        "INVITE sip:carol@127.0.0.1:5074 SIP/2.0"
    );
    assert!(
        !to(&out, ALICE)
            .iter()
            .any(|m| first_line(m).starts_with("SIP/2.0 3")),
        "the redirect followed is not relayed: {out:?}"
    );
    // carol answers: the caller gets her 200.
    t.input(CAROL, &answer(&ringing[0], 200, "c", CAROL));
    let out = t.take();
    assert_eq!(first_line(&to(&out, ALICE)[0]), "SIP/2.0 200 OK");
}

#[test]
fn a_redirect_to_nothing_allowed_counts_as_a_failure() {
    let mut t = T::new(false);
    t.register("carol", CAROL);
    t.input(ALICE, &invite("alice", ALICE, "1003", "r2", ""));
    let out = t.take();
    let b = to(&out, CAROL)[0].clone();
    t.input(
        CAROL,
        &redirect(&b, "<sip:+447700900123@switchboard.local>"),
    );
    let out = t.take();
    assert!(to(&out, CARRIER).is_empty(), "{out:?}");
    // carol's no-answer handling is hang up: the call ends, with the redirect relayed as
    // the best response there was.
    let last = to(&out, ALICE).last().cloned().unwrap_or_default();
    assert!(first_line(&last).starts_with("SIP/2.0 302"), "{out:?}");
}

// ---- trunks known by host name (RFC 3263, a scripted name server) ----------------------

/// The policy with the `carrier` trunk's calls sent to `uri`.
fn carrier_at(uri: &str) -> String {
    POLICY.replace(
        "uri = \"sip:carrier@127.0.0.2:5080\"",
        &format!("uri = \"{uri}\""),
    )
}

/// The INVITEs (retransmissions counted once) sent to `at` since the last look.
fn invites_to(out: &[(std::net::SocketAddr, String)], at: &str) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    for m in to(out, at) {
        if m.starts_with("INVITE ") && !seen.iter().any(|s| header(s, "Via") == header(&m, "Via")) {
            seen.push(m);
        }
    }
    seen
}

#[test]
fn a_branch_to_a_trunk_by_host_name_waits_for_dns_then_fails_over_on_503() {
    let mut t = T::with_policy(false, &carrier_at("sip:carrier.test"));
    t.input(ALICE, &invite("alice", ALICE, "+447700900999", "d1", ""));
    let out = t.take();
    assert_eq!(first_line(&to(&out, ALICE)[0]), "SIP/2.0 100 Trying");
    assert!(to(&out, CARRIER_A).is_empty() && to(&out, CARRIER_B).is_empty());
    assert!(!t.lookups.is_empty(), "the trunk's name is looked up");
    t.answer_dns(carrier_dns);
    let out = t.take();
    // SRV priority 10 first; the Request-URI keeps the host name.
    let first = invites_to(&out, CARRIER_A);
    assert_eq!(first.len(), 1, "{out:?}");
    assert!(invites_to(&out, CARRIER_B).is_empty());
    assert_eq!(
        first_line(&first[0]),
        "INVITE sip:07700900999@carrier.test SIP/2.0"
    );
    // 503: the next target at once, on a new transaction; alice never sees the 503.
    let busy = answer(&first[0], 503, "a", "x@127.0.0.8").replacen(
        "\r\n\r\n",
        "\r\nRetry-After: 60\r\n\r\n",
        1,
    );
    t.input(CARRIER_A, &busy);
    let out = t.take();
    assert!(
        !to(&out, ALICE).iter().any(|m| m.starts_with("SIP/2.0 503")),
        "{out:?}"
    );
    let second = invites_to(&out, CARRIER_B);
    assert_eq!(second.len(), 1, "{out:?}");
    assert_ne!(header(&second[0], "Via"), header(&first[0], "Via"));
    t.input(CARRIER_B, &answer(&second[0], 200, "b", "x@127.0.0.9:5080"));
    let out = t.take();
    assert!(
        first_line(&to(&out, ALICE)[0]).starts_with("SIP/2.0 200"),
        "{out:?}"
    );
    // The failed target is put last for its Retry-After: the next call goes to B first.
    t.input(ALICE, &invite("alice", ALICE, "+447700900999", "d1b", ""));
    let out = t.take();
    assert!(t.lookups.is_empty(), "the answers are cached");
    assert_eq!(invites_to(&out, CARRIER_B).len(), 1, "{out:?}");
    assert!(invites_to(&out, CARRIER_A).is_empty());
}

#[test]
fn a_silent_target_is_failed_over_after_the_per_target_time_and_cancelled_if_it_rings_late() {
    let mut t = T::with_policy(false, &carrier_at("sip:carrier.test"));
    t.input(ALICE, &invite("alice", ALICE, "+447700900999", "d2", ""));
    t.answer_dns(carrier_dns);
    let first = invites_to(&t.take(), CARRIER_A).remove(0);
    // No provisional response within 3 s: the next target.
    t.advance(2);
    assert!(invites_to(&t.take(), CARRIER_B).is_empty());
    t.advance(1);
    let out = t.take();
    let second = invites_to(&out, CARRIER_B);
    assert_eq!(second.len(), 1, "{out:?}");
    // The silent target rings after all: it is cancelled, and alice hears nothing of it.
    t.input(CARRIER_A, &answer(&first, 180, "a", "x@127.0.0.8:5080"));
    let out = t.take();
    assert!(
        to(&out, CARRIER_A).iter().any(|m| m.starts_with("CANCEL ")),
        "{out:?}"
    );
    assert!(to(&out, ALICE).is_empty(), "{out:?}");
    // The second target rings and answers: alice gets both.
    t.input(CARRIER_B, &answer(&second[0], 180, "b", "x@127.0.0.9:5080"));
    t.input(CARRIER_B, &answer(&second[0], 200, "b", "x@127.0.0.9:5080"));
    let out = t.take();
    let to_alice = to(&out, ALICE);
    let lines: Vec<&str> = to_alice.iter().map(|m| first_line(m)).collect();
    assert_eq!(lines, ["SIP/2.0 180 Ringing", "SIP/2.0 200 OK"]);
}

#[test]
fn a_transport_error_fails_over_at_once() {
    use switchboard_sip::transport::{Inbound, Unreachable};
    let mut t = T::with_policy(false, &carrier_at("sip:carrier.test"));
    t.input(ALICE, &invite("alice", ALICE, "+447700900999", "d3", ""));
    t.answer_dns(carrier_dns);
    assert_eq!(invites_to(&t.take(), CARRIER_A).len(), 1);
    let peer = switchboard_sip::peer::Peer {
        transport: switchboard_sip::transport::Transport::Udp,
        addr: addr(CARRIER_A),
        conn: None,
        local: None,
    };
    t.event(Inbound::Unreachable {
        peer,
        why: Unreachable::SendFailed,
    });
    let out = t.take();
    assert_eq!(invites_to(&out, CARRIER_B).len(), 1, "{out:?}");
    assert!(to(&out, ALICE).is_empty(), "{out:?}");
}

/// The branch fails 503 with a Warning saying why; as the call's only branch, its 503
/// competes with the plan's "unavailable" (480) as RFC 3261 §16.7 says, and the 4xx wins.
#[test]
fn a_trunk_whose_name_cannot_be_located_fails_the_branch() {
    let mut t = T::with_policy(false, &carrier_at("sip:gone.test"));
    t.input(ALICE, &invite("alice", ALICE, "+447700900999", "d4", ""));
    t.answer_dns(carrier_dns);
    let out = t.take();
    let last = to(&out, ALICE).pop().unwrap();
    assert!(last.starts_with("SIP/2.0 480"), "{out:?}");
    assert_eq!(t.core.calls.len(), 0);
    // The negative answers are kept: the next call needs no lookup.
    t.input(ALICE, &invite("alice", ALICE, "+447700900999", "d4b", ""));
    let out = t.take();
    assert!(t.lookups.is_empty());
    assert!(
        to(&out, ALICE).pop().unwrap().starts_with("SIP/2.0 480"),
        "{out:?}"
    );
}

#[test]
fn a_caller_who_hangs_up_while_the_trunk_is_looked_up_rings_nobody() {
    let mut t = T::with_policy(false, &carrier_at("sip:carrier.test"));
    let inv = invite("alice", ALICE, "+447700900999", "d5", "");
    t.input(ALICE, &inv);
    t.take();
    assert!(!t.lookups.is_empty());
    t.input(ALICE, &cancel_of(&inv));
    let out = t.take();
    let to_alice = to(&out, ALICE);
    let lines: Vec<&str> = to_alice.iter().map(|m| first_line(m)).collect();
    assert!(lines.contains(&"SIP/2.0 487 Request Terminated"), "{out:?}");
    assert_eq!(t.core.locating.waiting(), 0, "nobody waits for the lookup");
    t.answer_dns(carrier_dns);
    let out = t.take();
    assert!(
        invites_to(&out, CARRIER_A).is_empty() && invites_to(&out, CARRIER_B).is_empty(),
        "{out:?}"
    );
    assert_eq!(t.core.calls.len(), 0);
}

#[test]
fn a_failed_lookup_fails_the_branch_and_is_not_kept() {
    use switchboard_sip::locate::Answer;
    let mut t = T::with_policy(false, &carrier_at("sip:carrier.test"));
    t.input(ALICE, &invite("alice", ALICE, "+447700900999", "d6", ""));
    t.take();
    t.answer_dns(|_| Answer::Failed("no DNS servers".into()));
    let out = t.take();
    let last = to(&out, ALICE).pop().unwrap();
    assert!(last.starts_with("SIP/2.0 480"), "{out:?}");
    assert_eq!(t.core.calls.len(), 0);
    // A failed lookup is not kept: the next call asks again.
    t.input(ALICE, &invite("alice", ALICE, "+447700900999", "d6b", ""));
    assert!(!t.lookups.is_empty());
}

/// The metrics count what the core did: requests by method, responses by class, calls by
/// outcome, setup time of answered calls, challenges.
#[test]
fn metrics_count_calls_by_outcome_and_messages_by_method_and_class() {
    use crate::metrics::{method_index, Outcome};
    use switchboard_sip::msg::Method;
    let mut t = T::new(false);
    t.register("bob", BOB);
    let m = t.core.metrics();
    assert_eq!(m.requests[method_index(&Method::Register)], 1);
    assert_eq!((m.aors, m.contacts), (1, 1));
    assert_eq!(m.responses_sent[1], 1, "the REGISTER's 200");

    // Answered after a second and a half of ringing.
    t.input(ALICE, &invite("alice", ALICE, "1002", "m1", ""));
    let b1 = to(&t.take(), BOB)[0].clone();
    t.input(BOB, &answer(&b1, 180, "d1", BOB));
    t.advance(1);
    t.tick();
    assert_eq!(t.core.metrics().calls_in_setup, 1);
    t.input(BOB, &answer(&b1, 200, "d1", BOB));
    t.take();
    let m = t.core.metrics();
    assert_eq!(m.call_setup.count(), 1);
    assert!(
        (m.call_setup.sum() - 1.0).abs() < 1e-9,
        "{}",
        m.call_setup.sum()
    );
    assert_eq!(m.calls_ended.get(Outcome::Answered), 1);
    assert_eq!(m.calls_answered_active, 1);

    // Busy: 486 from bob, then the voicemail fails too; the caller gets 486.
    t.input(ALICE, &invite("alice", ALICE, "1002", "m2", ""));
    let b2 = to(&t.take(), BOB)[0].clone();
    t.input(BOB, &answer(&b2, 486, "d2", BOB));
    let vm = to(&t.take(), VM)[0].clone();
    t.input(VM, &answer(&vm, 503, "vm", VM));
    t.take();

    // Nobody registered: 480.
    t.input(ALICE, &invite("alice", ALICE, "1003", "m3", ""));
    t.take();

    // Cancelled by the caller while it rings.
    let inv = invite("alice", ALICE, "1002", "m4", "");
    t.input(ALICE, &inv);
    let b4 = to(&t.take(), BOB)[0].clone();
    t.input(BOB, &answer(&b4, 180, "d4", BOB));
    let cancel = inv
        .replacen("INVITE sip:", "CANCEL sip:", 1)
        .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL")
        .replace(
            "Content-Type: application/sdp\r\nContent-Length: 4\r\n\r\nv=0\n",
            "Content-Length: 0\r\n\r\n",
        );
    t.input(ALICE, &cancel);
    t.input(BOB, &answer(&b4, 487, "d4", BOB));
    t.take();

    let m = t.core.metrics();
    assert_eq!(m.requests[method_index(&Method::Invite)], 4);
    assert_eq!(m.requests[method_index(&Method::Cancel)], 1);
    assert_eq!(m.calls_started, 4);
    assert_eq!(m.calls_ended.get(Outcome::Answered), 1);
    assert_eq!(m.calls_ended.get(Outcome::Busy), 1);
    assert_eq!(m.calls_ended.get(Outcome::NoAnswer), 1);
    assert_eq!(m.calls_ended.get(Outcome::Cancelled), 1);
    assert_eq!(m.calls_ended.get(Outcome::Failed), 0);
    assert_eq!(
        m.call_setup.count(),
        1,
        "only answered calls have a setup time"
    );
    // Received: bob's 180, 200, 486, 180, 487 and the voicemail's 503.
    assert_eq!(m.responses_received, [2, 1, 0, 2, 1, 0]);
    // Sent 2xx: REGISTER, the relayed 200, the CANCEL's 200.
    assert_eq!(m.responses_sent[1], 3);
    // 486, 480, 487 to alice.
    assert_eq!(m.responses_sent[3], 3);
}

#[test]
fn metrics_count_challenges() {
    let mut t = T::new(true);
    t.input(ALICE, &invite("alice", ALICE, "1002", "m5", ""));
    let out = t.take();
    assert!(first_line(&to(&out, ALICE)[0]).starts_with("SIP/2.0 407"));
    let m = t.core.metrics();
    assert_eq!(m.auth_challenges, 1);
    assert_eq!(m.calls_started, 0);
    assert_eq!(m.responses_sent[3], 1);
}
