//! Presence over SIP end to end: SIPp watchers subscribe to a colleague's dialog (BLF) and
//! presence state and get a NOTIFY as the colleague's calls ring and end, as their profile
//! changes through the API and through feature codes dialled from a phone. A colleague
//! with no phone registered is offline (`<basic>closed</basic>`) until one registers.

mod common;

use common::*;
use std::time::Duration;

fn policy() -> String {
    format!(
        "{POLICY}\n[users.carol]\nextension = \"1004\"\n[users.carol.sip]\npassword = \"carol-secret\"\nalgorithms = [\"md5\"]\n"
    )
}

#[test]
fn watchers_see_calls_profile_changes_and_feature_codes() {
    let mut d = Daemon::start(Options {
        policy: policy(),
        ..Options::default()
    });
    let bob = Uas::start("uas_ring_then_answer.xml", 1, &["-d", "500"]);
    bob.register(&d, "bob", "bob-secret");

    // carol's BLF lamp for bob: idle, ringing, in a call, idle.
    let blf = watch(&d, "carol", "dialog", 3);
    // alice watches bob's presence: on the phone, off it, Meeting (API), Do Not Disturb
    // (*78), back to the meeting's status (*79), Lunch (*32: profile 2).
    let presence = watch(&d, "alice", "presence", 6);

    let call = Sipp::new(&d, "call_answered.xml")
        .row(call_row("alice", "alice-secret", "1002", "300"))
        .auth_uri(&format!("1002@{REALM}"))
        .run();
    assert!(call.success, "{}\n{}", call.report(), d.log());
    let bob_run = bob.finish(Duration::from_secs(30));
    assert!(bob_run.success, "{}", bob_run.report());

    let (code, body) = admin_api(
        &d,
        "PUT",
        "/v1/presence/bob/profile",
        r#"{"profile":"meeting","message":"Planning"}"#,
    );
    assert_eq!(code, 200, "{body}");
    // bob dials *78, *79 and *32 from his phone (SIPp as bob): each ends with 480 and says
    // what happened.
    for (code, what) in [
        ("*78", "SIP/2.0 480 Do Not Disturb On"),
        ("*79", "SIP/2.0 480 Do Not Disturb Off"),
        ("*32", "SIP/2.0 480 Profile 2 Active"),
    ] {
        let r = Sipp::new(&d, "call_expect_final.xml")
            .row(call_row("bob", "bob-secret", code, "480"))
            .auth_uri(&format!("{code}@{REALM}"))
            .run();
        assert!(r.success, "{}\n{}", r.report(), d.log());
        let last = r
            .received()
            .into_iter()
            .rev()
            .find(|m| m.starts_with("SIP/2.0 480"))
            .unwrap();
        assert!(last.contains(what), "{last}");
    }

    let blf = blf.finish(Duration::from_secs(30));
    assert!(blf.success, "{}\n{}", blf.report(), d.log());
    let lamp = notify_bodies(&blf);
    assert!(!lamp[0].contains("<dialog "), "idle first: {lamp:?}");
    assert!(
        lamp[1].contains("<state>early</state>"),
        "{lamp:?}\n{}",
        blf.messages
    );
    assert!(lamp[2].contains("<state>confirmed</state>"), "{}", lamp[2]);
    assert!(
        !lamp[3].contains("<dialog "),
        "idle after the BYE: {}",
        lamp[3]
    );

    let presence = presence.finish(Duration::from_secs(30));
    assert!(presence.success, "{}\n{}", presence.report(), d.log());
    let docs = notify_bodies(&presence);
    assert!(docs[0].contains("<basic>open</basic>"), "{}", docs[0]);
    assert!(docs[1].contains("<rpid:on-the-phone/>"), "{}", docs[1]);
    assert!(!docs[2].contains("on-the-phone"), "{}", docs[2]);
    assert!(
        docs[3].contains("<note>Meeting - Planning</note>"),
        "{}",
        docs[3]
    );
    assert!(docs[4].contains("Do not disturb"), "{}", docs[4]);
    assert!(
        !docs[5].contains("Do not disturb") && docs[5].contains("Meeting"),
        "{}",
        docs[5]
    );
    assert!(docs[6].contains("Lunch"), "{}", docs[6]);
    d.wait_for_log("via=FeatureCode", Duration::from_secs(5));
}

#[test]
fn subscriptions_survive_kill_9_and_lamps_are_told_the_state_at_once() {
    let mut d = Daemon::start(Options {
        policy: policy(),
        ..Options::default()
    });
    // bob's phone is registered (else he is offline to watchers whatever his status).
    Sipp::new(&d, "register.xml")
        .row(row("bob", "bob-secret", free_port(), 3600))
        .ok();
    // carol watches bob's presence: the NOTIFY after the restart, then Do Not Disturb.
    let w = watch(&d, "carol", "presence", 2);
    d.restart();
    d.wait_for_log(
        "subscriptions restored subscriptions=1",
        Duration::from_secs(10),
    );
    let (code, body) = admin_api(&d, "PUT", "/v1/presence/bob/status", r#"{"status":"dnd"}"#);
    assert_eq!(code, 200, "{body}");
    let r = w.finish(Duration::from_secs(30));
    assert!(r.success, "{}\n{}", r.report(), d.log());
    let docs = notify_bodies(&r);
    assert!(
        docs[1].contains("<basic>open</basic>"),
        "after the restart: {}",
        docs[1]
    );
    assert!(docs[2].contains("<rpid:busy/>"), "{}", docs[2]);
    // The unsubscription inside the restored dialog was answered, and the row is gone.
    assert!(r.logs.contains("subscribed"));
}

#[test]
fn one_user_at_their_subscription_limit_leaves_room_for_others_also_after_a_restart() {
    let mut d = Daemon::start(Options {
        policy: policy(),
        extra: "[subscriptions]\nmax_per_user = 2\n".into(),
        ..Options::default()
    });
    // alice takes her two (each waits for one NOTIFY more: the one after the restart).
    let a1 = watch(&d, "alice", "dialog", 1);
    let a2 = watch(&d, "alice", "presence", 1);
    // Her third is refused 403 with a Warning.
    let refused = Sipp::new(&d, "subscribe_refused.xml")
        .row(call_row("alice", "alice-secret", "bob", "0"))
        .auth_uri(&format!("bob@{REALM}"))
        .arg("-key")
        .arg("event")
        .arg("dialog")
        .run();
    assert!(refused.success, "{}\n{}", refused.report(), d.log());
    assert!(
        refused.logs.contains("too many subscriptions"),
        "{}",
        refused.logs
    );
    d.wait_for_log("code=403", Duration::from_secs(5));
    // carol still subscribes.
    let _c = watch(&d, "carol", "dialog", 1);

    // Restarted with a lower limit: one of alice's two stored ones is taken back,
    // and carol's.
    d.kill9();
    let config = std::fs::read_to_string(d.config_path()).unwrap();
    std::fs::write(
        d.config_path(),
        config.replace("max_per_user = 2", "max_per_user = 1"),
    )
    .unwrap();
    d.restart();
    d.wait_for_log(
        "subscriptions restored subscriptions=2",
        Duration::from_secs(10),
    );
    assert!(
        d.log_contains("refused=1"),
        "one of alice's not taken back:\n{}",
        d.log()
    );
    // Her phone is told: one subscription active again, the other ended (rejected), not
    // left waiting for NOTIFYs that would never come.
    let states: Vec<String> = [a1, a2]
        .into_iter()
        .flat_map(|w| {
            let run = w.finish(Duration::from_secs(15));
            run.requests("NOTIFY")
                .into_iter()
                .skip(1)
                .take(1)
                .flat_map(|m| header_values(&m, "Subscription-State"))
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(states.len(), 2, "{states:?}\n{}", d.log());
    assert_eq!(
        states
            .iter()
            .filter(|s| s.as_str() == "terminated;reason=rejected")
            .count(),
        1,
        "{states:?}"
    );
    assert_eq!(
        states.iter().filter(|s| s.starts_with("active;")).count(),
        1,
        "{states:?}"
    );
}

#[test]
fn a_colleague_without_a_registered_phone_is_offline_to_presence_watchers() {
    let d = Daemon::start(Options {
        policy: policy(),
        ..Options::default()
    });
    // carol watches bob, who has no phone registered; his phone registers, then removes
    // its registration.
    let w = watch(&d, "carol", "presence", 2);
    let port = free_port();
    Sipp::new(&d, "register.xml")
        .row(row("bob", "bob-secret", port, 600))
        .ok();
    Sipp::new(&d, "deregister.xml")
        .row(row("bob", "bob-secret", port, 0))
        .ok();
    let r = w.finish(Duration::from_secs(30));
    assert!(r.success, "{}\n{}", r.report(), d.log());
    let docs = notify_bodies(&r);
    assert!(
        docs[0].contains("<basic>closed</basic>") && docs[0].contains("<note>Offline</note>"),
        "no phone: offline, as the board shows him: {}",
        docs[0]
    );
    assert!(docs[1].contains("<basic>open</basic>"), "{}", docs[1]);
    assert!(!docs[1].contains("Offline"), "{}", docs[1]);
    assert!(docs[2].contains("<basic>closed</basic>"), "{}", docs[2]);
}
