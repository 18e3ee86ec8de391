//! Call records and calls in progress, driven through the whole core (see test_harness).

use super::{CallRecord, RecordOutcome};
use crate::test_harness::*;
use switchboard_store::tables::CALL_RECORDS;

/// Every version of `call`'s record the core stored, oldest first.
fn stored(t: &T, call: &str) -> Vec<CallRecord> {
    t.persisted
        .iter()
        .filter(|w| w.table == CALL_RECORDS && w.key.ends_with(&format!("\n{call}")))
        .map(|w| serde_json::from_slice(w.value.as_ref().expect("a put")).unwrap())
        .collect()
}

/// The one complete record of `call` (it has its end).
fn record(t: &T, call: &str) -> CallRecord {
    let all = stored(t, call);
    let done: Vec<&CallRecord> = all.iter().filter(|r| r.ended.is_some()).collect();
    assert_eq!(done.len(), 1, "{all:#?}");
    done[0].clone()
}

fn cancel_of_invite(inv: &str) -> String {
    inv.replacen("INVITE sip:", "CANCEL sip:", 1)
        .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL")
        .replace(
            "Content-Type: application/sdp\r\nContent-Length: 4\r\n\r\nv=0\n",
            "Content-Length: 0\r\n\r\n",
        )
}

#[test]
fn an_answered_call_is_listed_while_it_rings_and_recorded_at_its_bye() {
    let mut t = T::new(false);
    t.register("bob", BOB);
    t.input(ALICE, &invite("alice", ALICE, "1002", "r1", ""));
    let branch = to(&t.take(), BOB)[0].clone();
    t.input(BOB, &answer(&branch, 180, "bob1", BOB));
    t.take();
    let live = t.core.calls_in_progress();
    assert_eq!(live.len(), 1, "{live:?}");
    let c = &live[0];
    assert_eq!((c.call_id.as_str(), c.phase), ("r1", "ringing"));
    assert_eq!((c.caller.as_str(), c.dialled.as_str()), ("alice", "1002"));
    assert_eq!(c.step, Some(1));
    assert_eq!(c.ringing, ["bob at sip:bob@127.0.0.1:5072"]);
    assert_eq!(c.started, 1_800_000_000);
    assert!(
        stored(&t, "r1").is_empty(),
        "nothing before the set-up is over"
    );

    t.advance(3);
    t.input(BOB, &answer(&branch, 200, "bob1", BOB));
    let relayed = to(&t.take(), ALICE).pop().unwrap();
    let live = t.core.calls_in_progress();
    assert_eq!(live.len(), 1, "{live:?}");
    assert_eq!(live[0].phase, "answered");
    assert_eq!(
        live[0].answered_by.as_deref(),
        Some("bob at sip:bob@127.0.0.1:5072")
    );
    // Stored at once without its end: a daemon killed now still has the call.
    let first = stored(&t, "r1");
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].ended, None);
    assert_eq!(first[0].outcome, RecordOutcome::Answered);

    t.advance(60);
    for (method, cseq) in [("ACK", 1), ("BYE", 2)] {
        t.input(
            ALICE,
            &in_dialog(method, "bob@127.0.0.1:5072", &relayed, ALICE, cseq),
        );
    }
    t.take();
    assert!(t.core.calls_in_progress().is_empty());
    let r = record(&t, "r1");
    assert_eq!(r.outcome, RecordOutcome::Answered);
    assert_eq!(r.caller_user.as_deref(), Some("alice"));
    assert_eq!(r.dialled_user.as_deref(), Some("bob"));
    assert_eq!(r.team, None);
    assert_eq!(r.started, 1_800_000_000);
    assert_eq!(r.answered, Some(1_800_000_003));
    assert_eq!(r.ended, Some(1_800_000_063));
    assert_eq!(r.rang, ["bob at sip:bob@127.0.0.1:5072"]);
    assert_eq!(r.rang_users, ["bob"]);
    assert_eq!(r.answered_user.as_deref(), Some("bob"));
    assert_eq!(r.code, Some(200));
    assert_eq!(r.end_reason.as_deref(), Some("bye"));
    assert!(
        r.steps.iter().any(|s| s.contains("answered by bob")),
        "{r:?}"
    );
    assert_eq!(t.core.records_written(), 1);
}

#[test]
fn a_hunt_answered_by_the_second_member_names_both_and_the_team() {
    let mut t = T::new(false);
    t.register("bob", BOB);
    t.register("carol", CAROL);
    t.input(
        CARRIER,
        &invite("+447700900123", CARRIER, "+441632960000", "r2", ""),
    );
    let b = to(&t.take(), BOB)[0].clone();
    t.input(BOB, &answer(&b, 180, "b", BOB));
    t.advance(10);
    let out = t.take();
    let c = to(&out, CAROL)[0].clone();
    let live = t.core.calls_in_progress();
    assert_eq!(live[0].ringing, ["carol at sip:carol@127.0.0.1:5074"]);
    t.input(CAROL, &answer(&c, 200, "c", CAROL));
    let ok = to(&t.take(), CARRIER).pop().unwrap();
    // bob's branch was cancelled at the end of his turn: its 487 settles the set-up.
    t.input(BOB, &answer(&b, 487, "b", BOB));
    t.input(
        CARRIER,
        &in_dialog("BYE", "carol@127.0.0.1:5074", &ok, CARRIER, 2),
    );
    t.take();
    let r = record(&t, "r2");
    assert_eq!(r.outcome, RecordOutcome::Answered);
    assert_eq!(r.trunk.as_deref(), Some("carrier"));
    assert_eq!(r.team.as_deref(), Some("support"));
    assert_eq!(r.rang_users, ["bob", "carol"]);
    assert_eq!(r.answered_user.as_deref(), Some("carol"));
    assert!(r.caller.contains("+447700900123"), "{r:?}");
}

#[test]
fn no_answer_to_voicemail_is_recorded_as_voicemail() {
    let mut t = T::new(false);
    t.register("bob", BOB);
    t.input(ALICE, &invite("alice", ALICE, "1002", "r3", ""));
    let b1 = to(&t.take(), BOB)[0].clone();
    t.input(BOB, &answer(&b1, 180, "d1", BOB));
    t.advance(20);
    let vm = to(&t.take(), VM)[0].clone();
    t.input(BOB, &answer(&b1, 487, "d1", BOB));
    t.input(VM, &answer(&vm, 200, "vm", VM));
    let relayed = to(&t.take(), ALICE).pop().unwrap();
    t.input(
        ALICE,
        &in_dialog("BYE", "vm-bob@127.0.0.1:5090", &relayed, ALICE, 2),
    );
    t.take();
    let r = record(&t, "r3");
    assert_eq!(r.outcome, RecordOutcome::Voicemail);
    assert_eq!(r.rang_users, ["bob"]);
    assert_eq!(r.answered_user, None);
    assert!(r.outcome.is_missed());
}

#[test]
fn busy_and_caller_cancel_and_nobody_there_have_their_outcomes() {
    let mut t = T::new(false);
    t.register("bob", BOB);
    // Busy; voicemail down too: the caller gets 486.
    t.input(ALICE, &invite("alice", ALICE, "1002", "r4", ""));
    let b1 = to(&t.take(), BOB)[0].clone();
    t.input(BOB, &answer(&b1, 486, "d1", BOB));
    let vm = to(&t.take(), VM)[0].clone();
    t.input(VM, &answer(&vm, 503, "vm", VM));
    t.take();
    let r = record(&t, "r4");
    assert_eq!((r.outcome, r.code), (RecordOutcome::Busy, Some(486)));

    // The caller hangs up while bob rings.
    let inv = invite("alice", ALICE, "1002", "r5", "");
    t.input(ALICE, &inv);
    let b1 = to(&t.take(), BOB)[0].clone();
    t.input(BOB, &answer(&b1, 180, "d5", BOB));
    t.input(ALICE, &cancel_of_invite(&inv));
    t.input(BOB, &answer(&b1, 487, "d5", BOB));
    t.take();
    let r = record(&t, "r5");
    assert_eq!((r.outcome, r.code), (RecordOutcome::Cancelled, Some(487)));
    assert_eq!(r.rang_users, ["bob"]);
    assert!(r.steps.iter().any(|s| s.contains("hung up")), "{r:?}");

    // Carol has no device: missed (hers, though nothing rang).
    t.input(ALICE, &invite("alice", ALICE, "1003", "r6", ""));
    t.take();
    let r = record(&t, "r6");
    assert_eq!(r.outcome, RecordOutcome::Missed);
    assert_eq!(r.dialled_user.as_deref(), Some("carol"));
    assert!(r.rang.is_empty());
    assert!(!r.why.is_empty());
}

#[test]
fn a_record_is_not_held_back_by_branches_still_being_cancelled() {
    let mut t = T::new(false);
    t.register("bob", BOB);
    t.register("bob", BOB2);
    t.input(ALICE, &invite("alice", ALICE, "bob", "r7", ""));
    let out = t.take();
    let (b1, b2) = (to(&out, BOB)[0].clone(), to(&out, BOB2)[0].clone());
    t.input(BOB, &answer(&b1, 180, "d1", BOB));
    t.input(BOB2, &answer(&b2, 200, "d2", BOB2));
    let relayed = to(&t.take(), ALICE).pop().unwrap();
    assert_eq!(stored(&t, "r7").len(), 1, "stored at the answer");
    // The first device has not answered its CANCEL yet when the call ends.
    t.advance(5);
    t.input(
        ALICE,
        &in_dialog("BYE", "bob@127.0.0.1:5073", &relayed, ALICE, 2),
    );
    t.take();
    let r = record(&t, "r7");
    assert_eq!(r.outcome, RecordOutcome::Answered);
    assert_eq!(r.ended, Some(1_800_000_005), "the BYE's time");
    assert_eq!(
        r.answered_by.as_deref(),
        Some("bob at sip:bob@127.0.0.1:5073")
    );
    assert_eq!(
        r.rang,
        [
            "bob at sip:bob@127.0.0.1:5072",
            "bob at sip:bob@127.0.0.1:5073"
        ]
    );
    t.advance(1);
    t.input(BOB, &answer(&b1, 487, "d1", BOB));
    t.take();
    assert_eq!(stored(&t, "r7").len(), 2, "nothing more once complete");

    // A caller who hangs up while a device ignores the CANCEL: recorded at the 487 to
    // the caller.
    let inv = invite("alice", ALICE, "1002", "r8", "");
    t.input(ALICE, &inv);
    let out = t.take();
    let b1 = to(&out, BOB)[0].clone();
    t.input(BOB, &answer(&b1, 180, "d8", BOB));
    t.input(ALICE, &cancel_of_invite(&inv));
    t.take();
    let r = record(&t, "r8");
    assert_eq!(r.outcome, RecordOutcome::Cancelled);
}

#[test]
fn a_profile_that_rejects_calls_is_recorded_as_rejected_and_not_missed() {
    use crate::presence_service::{Command, Request};
    use switchboard_presence::model::Interface;
    let policy = format!(
        "{POLICY}\n[profiles.meeting]\nincoming = \"reject\"\nreject_reason = \"In a meeting\"\nannounce = false\n"
    );
    let mut t = T::with_policy(false, &policy);
    t.register("bob", BOB);
    t.feed(crate::core::Input::Command {
        id: 1,
        req: Request {
            who: "admin".into(),
            admin: true,
            via: Interface::Api,
            command: Command::SetProfile {
                user: "bob".into(),
                profile: "meeting".into(),
                until: None,
                message: None,
            },
        },
    });
    t.pump();
    t.input(ALICE, &invite("alice", ALICE, "1002", "r9", ""));
    let out = t.take();
    assert_eq!(
        first_line(&to(&out, ALICE).pop().unwrap()),
        "SIP/2.0 480 In a meeting"
    );
    let r = record(&t, "r9");
    assert_eq!((r.outcome, r.code), (RecordOutcome::Rejected, Some(480)));
    assert!(r.why.contains("profile"), "{r:?}");
    assert!(!r.outcome.is_missed());
    assert!(r.rang.is_empty());
}

/// The keys of the mail outbox rows the core wrote.
fn outbox(t: &T) -> Vec<String> {
    t.persisted
        .iter()
        .filter(|w| w.table == switchboard_store::tables::MAIL_OUTBOX)
        .map(|w| w.key.rsplit('\n').next().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn with_mail_configured_a_missed_call_and_only_a_missed_one_is_also_a_mail_notice() {
    let mail = |on: bool| {
        let net = Net {
            listeners: default_listeners(),
            interfaces: None,
        };
        let config = crate::core::CoreConfig {
            mail: on,
            ..config(false)
        };
        let mut t = T::with_config(config, net, POLICY);
        t.register("bob", BOB);
        // Answered: no notice.
        t.input(ALICE, &invite("alice", ALICE, "1002", "m1", ""));
        let b1 = to(&t.take(), BOB)[0].clone();
        t.input(BOB, &answer(&b1, 200, "dm1", BOB));
        t.take();
        // The caller hangs up while bob rings: a notice.
        let inv = invite("alice", ALICE, "1002", "m2", "");
        t.input(ALICE, &inv);
        let b2 = to(&t.take(), BOB)[0].clone();
        t.input(BOB, &answer(&b2, 180, "dm2", BOB));
        t.input(ALICE, &cancel_of_invite(&inv));
        t.input(BOB, &answer(&b2, 487, "dm2", BOB));
        t.take();
        // Carol has no device: missed, a notice.
        t.input(ALICE, &invite("alice", ALICE, "1003", "m3", ""));
        t.take();
        assert_eq!(record(&t, "m3").outcome, RecordOutcome::Missed);
        outbox(&t)
    };
    assert_eq!(mail(true), ["m2", "m3"]);
    assert!(mail(false).is_empty());
}
