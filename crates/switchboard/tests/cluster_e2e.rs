//! Several nodes sharing their state through Redis, end to end: `redis-server` started by
//! the test on a loopback port of its own, three daemons (a, b, c) on ports of their own
//! keeping their state in it, SIPp phones. A phone registered on one node is rung by a
//! call arriving at another; a status set through a third node's API changes routing on
//! the other two and reaches a watcher subscribed through the first, within a second.

mod common;

use common::redis::Redis;
use common::*;
use std::time::{Duration, Instant};

fn node(redis: &Redis, name: &str) -> Daemon {
    Daemon::start(Options {
        store: redis.store_keys(name),
        ..Options::default()
    })
}

/// `who` watches bob's presence through `d`, expecting `more` NOTIFYs after the first.
fn watch_presence(d: &Daemon, who: &str, more: usize) -> Uas {
    let w = Sipp::new(d, "subscribe.xml")
        .row(call_row(
            who,
            &format!("{who}-secret"),
            "bob",
            &more.to_string(),
        ))
        .auth_uri(&format!("bob@{REALM}"))
        .arg("-key")
        .arg("event")
        .arg("presence")
        .spawn();
    wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
        w.logs_so_far().contains("notified").then_some(())
    })
    .unwrap_or_else(|| panic!("{who} did not subscribe:\n{}", d.log()));
    w
}

/// How long until `d` lists a registration of `user` (at most `limit`).
fn registered_within(d: &Daemon, user: &str, limit: Duration) -> Duration {
    let start = Instant::now();
    wait_until(limit, Duration::from_millis(5), || {
        let (code, body) = admin_api(d, "GET", &format!("/v1/registrations?user={user}"), "");
        (code == 200 && body.contains("\"contact\"")).then_some(())
    })
    .unwrap_or_else(|| panic!("{user}'s registration did not reach the node:\n{}", d.log()));
    start.elapsed()
}

#[test]
fn a_phone_on_one_node_is_rung_through_another_and_a_status_set_on_a_third_routes_and_notifies_everywhere(
) {
    let redis = Redis::start();
    let a = node(&redis, "a");
    let b = node(&redis, "b");
    let c = node(&redis, "c");
    assert!(a.log_contains("state kept in Redis"), "{}", a.log());

    // bob's phone registers with a; b and c learn of it within a second.
    let bob = Uas::start("uas_answer.xml", 1, &[]);
    bob.register(&a, "bob", "bob-secret");
    for other in [&b, &c] {
        let took = registered_within(other, "bob", Duration::from_secs(1));
        eprintln!("bob's registration reached a node after {took:?}");
    }

    // alice's call comes to b, which rings bob's phone (registered with a).
    let call = Sipp::new(&b, "call_answered.xml")
        .row(call_row("alice", "alice-secret", "1002", "100"))
        .auth_uri(&format!("1002@{REALM}"))
        .run();
    assert!(call.success, "{}\n{}\n{}", call.report(), b.log(), a.log());
    let bob_run = bob.finish(Duration::from_secs(30));
    assert!(bob_run.success, "{}", bob_run.report());

    // alice watches bob's presence through a; bob's Do Not Disturb is set through c.
    let watcher = watch_presence(&a, "alice", 1);
    let set_at = Instant::now();
    let (code, body) = admin_api(&c, "PUT", "/v1/presence/bob/status", r#"{"status":"dnd"}"#);
    assert_eq!(code, 200, "{body}");
    let watcher = watcher.finish(Duration::from_secs(5));
    let told_after = set_at.elapsed();
    assert!(watcher.success, "{}\n{}", watcher.report(), a.log());
    let last = watcher.requests("NOTIFY").pop().unwrap();
    assert!(last.contains("Do not disturb"), "{last}");
    assert!(
        told_after < Duration::from_secs(1),
        "the watcher on a was told after {told_after:?}"
    );

    // Routing on a and b both sees it: bob's phone does not ring, the caller hears why.
    let phone = Uas::start("uas_answer.xml", 1, &[]);
    phone.register(&a, "bob", "bob-secret");
    registered_within(&b, "bob", Duration::from_secs(1));
    for d in [&a, &b] {
        let r = Sipp::new(d, "call_expect_final.xml")
            .row(call_row("alice", "alice-secret", "1002", "480"))
            .auth_uri(&format!("1002@{REALM}"))
            .run();
        assert!(r.success, "{}\n{}", r.report(), d.log());
    }
    let phone = phone.stop();
    assert!(
        phone.requests("INVITE").is_empty(),
        "bob's phone rang while he is DND"
    );
}
