//! Several nodes sharing their state through Redis, end to end: `redis-server` started by
//! the test on a loopback port of its own, three daemons (a, b, c) on ports of their own
//! keeping their state in it, SIPp phones. A phone registered on one node is rung by a
//! call arriving at another; a status set through a third node's API changes routing on
//! the other two and reaches a watcher subscribed through the first, within a second.

mod common;

use common::redis::{Redis, RedisCluster, Site};
use common::*;
use std::time::{Duration, Instant};

fn node(redis: &dyn Site, name: &str) -> Daemon {
    node_with(redis, name, "")
}

/// A node with more `[store]` keys.
fn node_with(redis: &dyn Site, name: &str, store: &str) -> Daemon {
    Daemon::start(Options {
        store: format!("{}{store}", redis.store_keys(name)),
        policy: format!("{POLICY}{CAROL_MD5}"),
        ..Options::default()
    })
}

const CAROL_MD5: &str = "[users.carol]\nextension = \"1004\"\n[users.carol.sip]\npassword = \"carol-secret\"\nalgorithms = [\"md5\"]\n";

/// `who` watches bob's presence through `d`, expecting `more` NOTIFYs after the first.
fn watch_presence(d: &Daemon, who: &str, more: usize) -> Uas {
    watch(d, who, "presence", more)
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
    three_nodes_route_and_notify_as_one(&Redis::start());
}

#[test]
fn the_same_with_the_site_spread_over_the_masters_of_a_redis_cluster() {
    let cluster = RedisCluster::start();
    three_nodes_route_and_notify_as_one(&cluster);
    memory_hunt_across_nodes(&cluster);
    // Each master holds its part of the site (two shards of six).
    let held = cluster.keys_per_master();
    assert!(held.iter().all(|&n| n > 0), "keys per master: {held:?}");
}

fn three_nodes_route_and_notify_as_one(redis: &dyn Site) {
    let a = node(redis, "a");
    let b = node(redis, "b");
    let c = node(redis, "c");
    assert!(a.log_contains("state kept in Redis"), "{}", a.log());

    // bob's phone registers with a; b and c learn of it within a second.
    let bob = Uas::start("uas_answer.xml", 1, &[]);
    bob.register(&a, "bob", "bob-secret");
    for other in [&b, &c] {
        let took = registered_within(other, "bob", Duration::from_secs(1));
        eprintln!("bob's registration reached a node after {took:?}");
        assert!(metric(other, "switchboard_shared_changes_total") >= 1);
        assert_eq!(metric(other, "switchboard_shared_resyncs_total"), 0);
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

#[test]
fn a_lamp_on_one_node_shows_a_call_through_another_until_it_ends_or_that_node_dies() {
    let redis = Redis::start();
    // Liveness renewed every 300 ms: a node is taken for gone after 0.9 s of silence.
    let beat = "redis_heartbeat_ms = 300\n";
    let a = node_with(&redis, "a", beat);
    let mut b = node_with(&redis, "b", beat);

    // carol's lamp for bob, through a: idle, ringing, in a call, idle.
    let lamp = watch(&a, "carol", "dialog", 3);
    // bob's phone (registered with a) rings for half a second, then answers alice's call,
    // which came to b.
    let bob = Uas::start("uas_ring_then_answer.xml", 1, &["-d", "500"]);
    bob.register(&a, "bob", "bob-secret");
    registered_within(&b, "bob", Duration::from_secs(1));
    let call = Sipp::new(&b, "call_answered.xml")
        .row(call_row("alice", "alice-secret", "1002", "300"))
        .auth_uri(&format!("1002@{REALM}"))
        .run();
    assert!(call.success, "{}\n{}", call.report(), b.log());
    assert!(bob.finish(Duration::from_secs(30)).success);
    let lamp = lamp.finish(Duration::from_secs(10));
    assert!(lamp.success, "{}\n{}", lamp.report(), a.log());
    let shown = notify_bodies(&lamp);
    assert!(!shown[0].contains("<dialog "), "idle first: {shown:?}");
    assert!(shown[1].contains("<state>early</state>"), "{shown:?}");
    assert!(shown[2].contains("<state>confirmed</state>"), "{shown:?}");
    assert!(
        !shown[3].contains("<dialog "),
        "idle after the BYE: {shown:?}"
    );

    // Now b dies (kill -9) in the middle of a call: a's lamp does not show bob busy for
    // ever, only until b's liveness lapses (ringing, in a call, idle).
    let lamp = watch(&a, "carol", "dialog", 3);
    // (Ringing for a while: SIPp's watcher takes NOTIFYs only some time apart.)
    let bob = Uas::start("uas_ring_then_answer.xml", 1, &["-d", "300"]);
    bob.register(&a, "bob", "bob-secret");
    registered_within(&b, "bob", Duration::from_secs(1));
    let caller = Sipp::new(&b, "call_answered.xml")
        .row(call_row("alice", "alice-secret", "1002", "60000"))
        .auth_uri(&format!("1002@{REALM}"))
        .spawn();
    wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
        let (_, body) = admin_api(&a, "GET", "/v1/presence/bob", "");
        body.contains("\"call_status\":\"busy\"").then_some(())
    })
    .unwrap_or_else(|| panic!("a never saw bob busy:\n{}", a.log()));
    b.kill9();
    let killed = Instant::now();
    let lamp = lamp.finish(Duration::from_secs(10));
    let idle_after = killed.elapsed();
    assert!(lamp.success, "{}\n{}", lamp.report(), a.log());
    let shown = notify_bodies(&lamp);
    assert!(!shown.last().unwrap().contains("<dialog "), "{shown:?}");
    assert!(
        idle_after < Duration::from_secs(5),
        "idle after {idle_after:?}"
    );
    eprintln!("the lamp went idle {idle_after:?} after b was killed");
    assert!(
        a.log_contains("removing the call status rows of a node that is gone"),
        "{}",
        a.log()
    );
    drop(caller.stop());
    drop(bob.stop());
}

/// A REGISTER as alice (from a socket of its own) challenged by `challenger` and answered
/// with `password` to `answerer`: the final answer's status.
fn register_across(challenger: &Daemon, answerer: &Daemon, user: &str, password: &str) -> u16 {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 4096];
    let mut exchange = |to: std::net::SocketAddr, text: &str| {
        sock.send_to(text.as_bytes(), to).unwrap();
        let (n, _) = sock.recv_from(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).to_string()
    };
    let contact = format!("Contact: <sip:{user}@127.0.0.1:9>\r\n");
    let register = |extra: &str| {
        request("REGISTER", &format!("{contact}{extra}"))
            .replace("sip:alice@", &format!("sip:{user}@"))
    };
    let challenge = exchange(challenger.addr(), &register(""));
    assert_eq!(status_of(&challenge), 401, "{challenge}");
    let nonce =
        challenge_param(&header_values(&challenge, "WWW-Authenticate")[0], "nonce").unwrap();
    let auth = register_authorization(user, password, &nonce);
    status_of(&exchange(answerer.addr(), &register(&auth)))
}

#[test]
fn a_nonce_from_one_node_is_good_at_another_and_failures_count_at_every_node() {
    let redis = Redis::start();
    let limit = "[auth]\nrequired = true\nmax_failures = 3\n";
    let start = |name: &str| {
        Daemon::start(Options {
            store: redis.store_keys(name),
            extra: limit.into(),
            ..Options::default()
        })
    };
    let (a, b, c) = (start("a"), start("b"), start("c"));
    // A node takes no nonce issued before it started (in whole seconds, as nonces carry
    // them): it could not tell a replay of a request it never saw. Nodes up for a while,
    // as they are in service, take each other's.
    std::thread::sleep(Duration::from_millis(2100));
    // A nonce a gave, answered to b.
    assert_eq!(register_across(&a, &b, "alice", "alice-secret"), 200);
    // Three wrong passwords for bob, one at each node (each node sees the address fail
    // once, below any limit): bob is blocked at every node, his right password too.
    for d in [&a, &b, &c] {
        assert_eq!(register_across(d, d, "bob", "guess"), 403);
    }
    for d in [&a, &b, &c] {
        wait_until(Duration::from_secs(2), Duration::from_millis(20), || {
            d.log_contains("auth-block user=bob").then_some(())
        })
        .unwrap_or_else(|| panic!("bob is not blocked at every node:\n{}", d.log()));
        assert_eq!(
            register_across(d, d, "bob", "bob-secret"),
            403,
            "{}",
            d.log()
        );
    }
    // alice, who never failed, still registers anywhere.
    assert_eq!(register_across(&c, &a, "alice", "alice-secret"), 200);
}

/// The users whose REGISTER the run saw answered 200.
fn acknowledged(run: &SippRun) -> Vec<String> {
    run.received()
        .into_iter()
        .filter(|m| m.starts_with("SIP/2.0 200") && m.contains(" REGISTER\r\n"))
        .filter_map(|m| {
            let to = m.lines().find(|l| l.starts_with("To:"))?;
            let user = to.split("sip:").nth(1)?.split('@').next()?;
            Some(user.to_string())
        })
        .collect()
}

/// The users `d` lists registrations of.
fn registered_users(d: &Daemon) -> std::collections::BTreeSet<String> {
    let (code, body) = admin_api(d, "GET", "/v1/registrations", "");
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["registrations"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["user"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn a_node_killed_during_register_load_and_redis_restarted_under_load_lose_no_acknowledged_binding()
{
    const N: usize = 300;
    let mut redis = Redis::start();
    let keys = |name: &str| redis.store_keys(name);
    let (ka, kb, kc, kd) = (keys("a"), keys("b"), keys("c"), keys("d"));
    let start = |store: &str| {
        Daemon::start(Options {
            store: store.to_string(),
            policy: format!("{POLICY}{}", many_users(N)),
            ..Options::default()
        })
    };
    let mut a = start(&ka);
    let b = start(&kb);
    let rows: Vec<Row> = (0..N)
        .map(|i| row(&format!("u{i}"), "pw", 9000 + i as u16, 600))
        .collect();
    // REGISTERs to a at 300/s; a is killed (-9) once b has heard of 50 of them.
    let load = Sipp::new(&a, "register.xml")
        .rows(rows[..N / 2].to_vec())
        .rate(300)
        .spawn();
    wait_until(Duration::from_secs(10), Duration::from_millis(10), || {
        (registered_users(&b).len() >= 50).then_some(())
    })
    .unwrap_or_else(|| panic!("b heard of too few registrations:\n{}", a.log()));
    a.kill9();
    let run = load.stop();
    let acked = acknowledged(&run);
    assert!(acked.len() >= 50, "{}", run.report());
    // Every registration a acknowledged is known to b, and to a node started afresh.
    let held = registered_users(&b);
    let missing: Vec<&String> = acked.iter().filter(|u| !held.contains(*u)).collect();
    assert!(missing.is_empty(), "b lacks {missing:?}");
    let c = start(&kc);
    let held = registered_users(&c);
    let missing: Vec<&String> = acked.iter().filter(|u| !held.contains(*u)).collect();
    assert!(missing.is_empty(), "c lacks {missing:?}");

    // Now Redis is killed (-9) and started again while b takes REGISTERs: what b
    // acknowledged is there afterwards; what it could not store was refused, never
    // acknowledged.
    let load = Sipp::new(&b, "register.xml")
        .rows(rows[N / 2..].to_vec())
        .rate(300)
        .spawn();
    wait_until(Duration::from_secs(10), Duration::from_millis(10), || {
        (registered_users(&c).len() >= acked.len() + 30).then_some(())
    })
    .unwrap_or_else(|| panic!("c heard of too few registrations:\n{}", b.log()));
    redis.restart();
    let run = load.finish(Duration::from_secs(30));
    let acked_b = acknowledged(&run);
    eprintln!(
        "a acknowledged {} before kill -9; b acknowledged {} of {} around the Redis restart",
        acked.len(),
        acked_b.len(),
        N - N / 2
    );
    // What b could not store was answered with an error, never with silence.
    let refused = run
        .received()
        .into_iter()
        .filter(|m| {
            m.contains(" REGISTER\r\n")
                && (m.starts_with("SIP/2.0 500") || m.starts_with("SIP/2.0 503"))
        })
        .count();
    assert_eq!(acked_b.len() + refused, N - N / 2, "{}", run.report());
    let fresh = start(&kd);
    let held = registered_users(&fresh);
    let missing: Vec<&String> = acked
        .iter()
        .chain(&acked_b)
        .filter(|u| !held.contains(*u))
        .collect();
    assert!(
        missing.is_empty(),
        "after the Redis restart, d lacks {missing:?}"
    );
}

#[test]
fn memory_hunt_remembers_across_nodes() {
    memory_hunt_across_nodes(&Redis::start());
}

/// (A site of its own in `redis`: its keys under another prefix.)
fn memory_hunt_across_nodes(redis: &dyn Site) {
    let team = "[teams.sales]\nextension = \"2000\"\nmembers = [\"bob\", \"carol\"]\n\
                strategy = \"memory_hunt\"\nmember_ring_time = 5\nring_time = 20\nno_answer = \"hangup\"\n";
    let start = |name: &str| {
        Daemon::start(Options {
            store: format!("{}redis_prefix = \"hunt\"\n", redis.store_keys(name)),
            policy: format!("{POLICY}{CAROL_MD5}{team}"),
            ..Options::default()
        })
    };
    let (a, b) = (start("a"), start("b"));
    // The first call, through a, while bob has no phone: carol answers it.
    let carol = Uas::start("uas_answer.xml", 2, &[]);
    carol.register(&a, "carol", "carol-secret");
    let call = Sipp::new(&a, "call_answered.xml")
        .row(call_row("alice", "alice-secret", "2000", "100"))
        .auth_uri(&format!("2000@{REALM}"))
        .run();
    assert!(call.success, "{}\n{}", call.report(), a.log());
    // Now bob's phone is there too; the second call comes to b, which remembers that
    // carol answered last: she rings first, answers, and bob's phone never rings.
    let bob = Uas::start("uas_answer.xml", 1, &[]);
    bob.register(&a, "bob", "bob-secret");
    registered_within(&b, "bob", Duration::from_secs(1));
    registered_within(&b, "carol", Duration::from_secs(1));
    let call = Sipp::new(&b, "call_answered.xml")
        .row(call_row("alice", "alice-secret", "2000", "100"))
        .auth_uri(&format!("2000@{REALM}"))
        .run();
    assert!(call.success, "{}\n{}", call.report(), b.log());
    assert!(carol.finish(Duration::from_secs(30)).success);
    let bob = bob.stop();
    assert!(
        bob.requests("INVITE").is_empty(),
        "b did not remember who answered last"
    );
}

#[test]
fn a_phone_on_a_tcp_connection_to_one_node_is_called_through_another() {
    use common::baresip::Baresip;
    let redis = Redis::start();
    let (a, b) = (node(&redis, "a"), node(&redis, "b"));
    // bob's softphone registers with a over TCP: only a's connection reaches it.
    let bob = Baresip::start_tcp(&a, "bob", a.addr());
    registered_within(&b, "bob", Duration::from_secs(1));
    // alice's call comes to b: b sends it through a, which relays it over bob's
    // connection and stays in the dialog; alice's BYE goes the same way.
    let mark = bob.proc.log_len();
    let call = Sipp::new(&b, "call_answered.xml")
        .row(call_row("alice", "alice-secret", "1002", "500"))
        .auth_uri(&format!("1002@{REALM}"))
        .run();
    assert!(
        call.success,
        "{}\n--- b\n{}\n--- a\n{}",
        call.report(),
        b.log(),
        a.log()
    );
    bob.wait(
        mark,
        "Call established",
        "answered alice's call through b and a",
    );
    bob.wait(mark, "BYE", "heard alice's BYE through b and a");
    // The phone saw a's Record-Route above b's.
    let invite = bob.since(mark);
    assert!(
        invite.contains(&format!("127.0.0.1:{};transport=tcp;lr;sbt=", a.port)),
        "{invite}"
    );
    assert!(
        invite.contains(&format!("127.0.0.1:{};lr;sbt=", b.port)),
        "{invite}"
    );
}

#[test]
fn when_a_node_dies_its_phones_register_elsewhere_and_are_reached_through_any_node() {
    use common::baresip::Baresip;
    let redis = Redis::start();
    let beat = "redis_heartbeat_ms = 300\n";
    let mut a = node_with(&redis, "a", beat);
    let (b, c) = (node_with(&redis, "b", beat), node_with(&redis, "c", beat));
    // bob's softphone is on a TCP connection to a, so only a reaches it.
    let bob = Baresip::start_tcp(&a, "bob", a.addr());
    registered_within(&c, "bob", Duration::from_secs(1));
    a.kill9();
    // Once a's liveness lapses, every node knows bob's phone cannot be reached (its
    // connection died with a): a call through c is refused at once, not tried through a.
    wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
        c.log_contains("a node sharing the state is gone")
            .then_some(())
    })
    .unwrap_or_else(|| panic!("c never heard that a is gone:\n{}", c.log()));
    let r = Sipp::new(&c, "call_expect_final.xml")
        .row(call_row("alice", "alice-secret", "1002", ""))
        .auth_uri(&format!("1002@{REALM}"))
        .run();
    assert!(r.success, "{}\n{}", r.report(), c.log());
    assert!(
        c.log_contains("device's connection is closed"),
        "{}",
        c.log()
    );
    drop(bob);
    // …until it registers again, as DNS SRV would have it, with b: then a call through c
    // rings it, through b.
    let bob = Baresip::start_tcp(&b, "bob", b.addr());
    wait_until(Duration::from_secs(2), Duration::from_millis(10), || {
        let (_, body) = admin_api(&c, "GET", "/v1/registrations?user=bob", "");
        body.contains("\"node\":\"b\"").then_some(())
    });
    let mark = bob.proc.log_len();
    let call = Sipp::new(&c, "call_answered.xml")
        .row(call_row("alice", "alice-secret", "1002", "300"))
        .auth_uri(&format!("1002@{REALM}"))
        .run();
    assert!(call.success, "{}\n{}\n{}", call.report(), c.log(), b.log());
    bob.wait(mark, "Call established", "answered through c and b");
}
