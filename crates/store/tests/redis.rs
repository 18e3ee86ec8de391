//! The Redis store against a real `redis-server` (Debian's redis-server package), started
//! by each test on a loopback port of its own with its own data directory.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchboard_store::tables::{BINDINGS, CACHED, PRESENCE, STATUS_LOG, SUBSCRIPTIONS};
use switchboard_store::{FeedEvent, RedisConfig, RedisStore, Shard, Store, StoreError, Write};

struct Redis {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    settings: Vec<String>,
}

impl Redis {
    /// A server that fsyncs every write before answering it (what the store asks for).
    fn start() -> Redis {
        Redis::start_with(&["--appendonly", "yes", "--appendfsync", "always"])
    }

    fn start_with(settings: &[&str]) -> Redis {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = spawn(dir.path(), port, settings);
        let settings = settings.iter().map(|s| s.to_string()).collect();
        let r = Redis {
            child,
            port,
            dir,
            settings,
        };
        r.wait_up();
        r
    }

    fn wait_up(&self) {
        let until = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < until, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `kill -9`, then the same server again on the same port and data.
    fn kill_and_restart(&mut self) {
        self.kill();
        self.restart();
    }

    /// The same server again (after [`Redis::kill`]), on its port, data and settings.
    fn restart(&mut self) {
        let settings: Vec<&str> = self.settings.iter().map(String::as_str).collect();
        self.child = spawn(self.dir.path(), self.port, &settings);
        self.wait_up();
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn config(&self, node: &str) -> RedisConfig {
        RedisConfig {
            url: format!("redis://127.0.0.1:{}/", self.port),
            node: node.into(),
            timeout: Duration::from_secs(2),
            ..RedisConfig::default()
        }
    }

    /// A server that can be a master of a Redis Cluster.
    fn cluster_master() -> Redis {
        Redis::start_with(&[
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--cluster-enabled",
            "yes",
            "--cluster-node-timeout",
            "2000",
            "--repl-diskless-sync-delay",
            "0",
        ])
    }

    fn wait_cluster_ok(&self) {
        let until = Instant::now() + Duration::from_secs(20);
        while !self.cli(&["cluster", "info"]).contains("cluster_state:ok") {
            assert!(Instant::now() < until, "the cluster did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// As [`Redis::config`], the site laid out in `shards`.
    fn sharded(&self, node: &str, shards: u32) -> RedisConfig {
        RedisConfig {
            shards,
            ..self.config(node)
        }
    }

    fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .arg("-p")
            .arg(self.port.to_string())
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn(dir: &Path, port: u16, settings: &[&str]) -> Child {
    Command::new("redis-server")
        .arg("--port")
        .arg(port.to_string())
        .arg("--bind")
        .arg("127.0.0.1")
        .arg("--dir")
        .arg(dir)
        .arg("--save")
        .arg("")
        .args(settings)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server (apt-get install redis-server)")
}

fn rows(s: &RedisStore, t: switchboard_store::Table) -> Vec<(String, Vec<u8>)> {
    s.scan(t).unwrap()
}

#[test]
fn commits_read_back_in_key_order_and_by_range() {
    let r = Redis::start();
    let s = RedisStore::open(r.config("a")).unwrap();
    s.commit(&[
        Write::put(BINDINGS, "bob\nx", b"2".to_vec()),
        Write::put(BINDINGS, "alice\nx", b"1".to_vec()),
        Write::put(BINDINGS, "alice\ny", vec![0, 255, 10]),
        Write::put(PRESENCE, "alice", b"p".to_vec()),
    ])
    .unwrap();
    assert_eq!(
        rows(&s, BINDINGS),
        vec![
            ("alice\nx".to_string(), b"1".to_vec()),
            ("alice\ny".to_string(), vec![0, 255, 10]),
            ("bob\nx".to_string(), b"2".to_vec()),
        ]
    );
    let alice = s.scan_range(BINDINGS, "alice\n", "alice\u{b}").unwrap();
    assert_eq!(alice.len(), 2);
    assert_eq!(
        s.scan_range_limited(BINDINGS, "", "zzz", 1).unwrap(),
        vec![("alice\nx".to_string(), b"1".to_vec())]
    );
    assert!(s.scan_range(BINDINGS, "b", "a").unwrap().is_empty());
    assert!(rows(&s, STATUS_LOG).is_empty());
    s.commit(&[
        Write::delete(BINDINGS, "alice\nx"),
        Write::put(BINDINGS, "bob\nx", b"3".to_vec()),
    ])
    .unwrap();
    assert_eq!(
        rows(&s, BINDINGS),
        vec![
            ("alice\ny".to_string(), vec![0, 255, 10]),
            ("bob\nx".to_string(), b"3".to_vec()),
        ]
    );
    // A node's own tables are its own; shared ones are everyone's.
    s.commit(&[Write::put(SUBSCRIPTIONS, "s1", b"a's".to_vec())])
        .unwrap();
    let b = RedisStore::open(r.config("b")).unwrap();
    assert!(rows(&b, SUBSCRIPTIONS).is_empty());
    assert_eq!(rows(&b, BINDINGS).len(), 2);
    assert_eq!(rows(&s, SUBSCRIPTIONS).len(), 1);
}

#[test]
fn a_server_that_answers_before_fsync_is_refused_unless_allowed() {
    let r = Redis::start_with(&["--appendonly", "yes", "--appendfsync", "everysec"]);
    let e = RedisStore::open(r.config("a")).err().expect("refused");
    let text = e.to_string() + &format!("{:?}", e);
    assert!(text.contains("appendfsync everysec"), "{text}");
    assert!(text.contains("redis_require_fsync"), "{text}");
    let allowed = RedisConfig {
        require_fsync: false,
        ..r.config("a")
    };
    RedisStore::open(allowed).unwrap();
    // Waiting for a replica that does not exist: the commit is not acknowledged.
    let waiting = RedisConfig {
        replicas: 1,
        replica_timeout: Duration::from_millis(100),
        ..r.config("a")
    };
    let s = RedisStore::open(waiting).unwrap();
    let e = s
        .commit(&[Write::put(PRESENCE, "alice", b"p".to_vec())])
        .unwrap_err();
    assert!(format!("{e:?}").contains("0 of 1"), "{e:?}");
}

#[test]
fn bad_node_names_and_unreachable_servers_are_refused_at_open() {
    let r = Redis::start();
    for bad in ["", "a:b", "{x}"] {
        assert!(RedisStore::open(r.config(bad)).is_err(), "{bad:?}");
    }
    let nowhere = RedisConfig {
        url: format!("redis://127.0.0.1:{}/", r.port),
        ..r.config("a")
    };
    drop(r);
    assert!(matches!(
        RedisStore::open(nowhere),
        Err(StoreError::Open { .. })
    ));
}

#[test]
fn an_acknowledged_commit_survives_kill_9_of_the_server_and_a_lost_one_reconnects() {
    let mut r = Redis::start();
    let s = RedisStore::open(r.config("a")).unwrap();
    s.commit(&[Write::put(PRESENCE, "alice", b"dnd".to_vec())])
        .unwrap();
    r.kill();
    // The server is gone: a commit fails (never acknowledged), reads fail.
    assert!(s
        .commit(&[Write::put(PRESENCE, "bob", b"x".to_vec())])
        .is_err());
    assert!(s.scan(PRESENCE).is_err());
    r.kill_and_restart();
    // The store reconnects by itself; what was acknowledged is there.
    assert_eq!(
        rows(&s, PRESENCE),
        vec![("alice".to_string(), b"dnd".to_vec())]
    );
    s.commit(&[Write::put(PRESENCE, "carol", b"y".to_vec())])
        .unwrap();
    assert_eq!(rows(&s, PRESENCE).len(), 2);
}

/// Follows `store`'s feed from now; what it hears comes out of the receiver.
fn follow(store: &Arc<RedisStore>) -> mpsc::Receiver<FeedEvent> {
    let (tx, rx) = mpsc::channel();
    let from = store.feed_position().unwrap();
    store.follow(from, move |e| {
        if matches!(&e, FeedEvent::Changes(c) if c.is_empty()) {
            return true;
        }
        tx.send(e).is_ok()
    });
    rx
}

fn next_changes(rx: &mpsc::Receiver<FeedEvent>) -> Vec<Write> {
    match rx.recv_timeout(Duration::from_secs(5)) {
        Ok(FeedEvent::Changes(c)) => c,
        other => panic!("expected changes, got {other:?}"),
    }
}

fn quiet(rx: &mpsc::Receiver<FeedEvent>) {
    if let Ok(e) = rx.recv_timeout(Duration::from_millis(1500)) {
        panic!("nothing expected, got {e:?}");
    }
}

#[test]
fn each_node_hears_the_others_changes_to_cached_tables_and_not_its_own() {
    let r = Redis::start();
    let a = Arc::new(RedisStore::open(r.config("a")).unwrap());
    let b = Arc::new(RedisStore::open(r.config("b")).unwrap());
    let (heard_a, heard_b) = (follow(&a), follow(&b));
    let dnd = Write::put(PRESENCE, "alice", b"dnd".to_vec());
    a.commit(&[
        dnd.clone(),
        Write::put(STATUS_LOG, "alice\n1", b"log".to_vec()),
    ])
    .unwrap();
    // b hears the cached table's change (the status log is not cached: read from the
    // store when asked); a does not hear its own.
    assert_eq!(next_changes(&heard_b), vec![dnd]);
    let gone = Write::delete(BINDINGS, "bob\nx");
    b.commit(std::slice::from_ref(&gone)).unwrap();
    assert_eq!(next_changes(&heard_a), vec![gone]);
    quiet(&heard_a);
    quiet(&heard_b);
}

#[test]
fn a_nodes_own_write_overtaken_by_an_older_one_from_elsewhere_is_applied_again() {
    // a writes alice twice; between the two, b's write lands. a heard b's write after
    // having applied its own second one in memory, so a must apply its own second write
    // again when it reads it back: the feed's order is the store's.
    let r = Redis::start();
    let a = Arc::new(RedisStore::open(r.config("a")).unwrap());
    let b = RedisStore::open(r.config("b")).unwrap();
    let heard_a = follow(&a);
    let first = Write::put(PRESENCE, "alice", b"1".to_vec());
    a.commit(std::slice::from_ref(&first)).unwrap();
    b.commit(&[Write::put(PRESENCE, "alice", b"b".to_vec())])
        .unwrap();
    let last = Write::put(PRESENCE, "alice", b"2".to_vec());
    a.commit(std::slice::from_ref(&last)).unwrap();
    let mut heard = Vec::new();
    while heard.len() < 2 {
        heard.extend(next_changes(&heard_a));
    }
    assert_eq!(
        heard,
        vec![Write::put(PRESENCE, "alice", b"b".to_vec()), last]
    );
    quiet(&heard_a);
}

#[test]
fn a_node_away_longer_than_the_feed_keeps_reads_every_cached_table_again() {
    let r = Redis::start();
    let a = Arc::new(RedisStore::open(r.config("a")).unwrap());
    let b = RedisStore::open(r.config("b")).unwrap();
    b.commit(&[Write::put(PRESENCE, "alice", b"0".to_vec())])
        .unwrap();
    let from = a.feed_position().unwrap();
    for i in 0..50 {
        b.commit(&[Write::put(PRESENCE, "alice", format!("{i}").into_bytes())])
            .unwrap();
    }
    // The feed forgets what a has not read yet.
    r.cli(&["XTRIM", "{sb}:feed", "MAXLEN", "10"]);
    let (tx, rx) = mpsc::channel();
    a.follow(from, move |e| tx.send(e).is_ok());
    match rx.recv_timeout(Duration::from_secs(5)).unwrap() {
        FeedEvent::Resync { shard, tables } => {
            assert_eq!(shard, Shard::WHOLE);
            let names: Vec<_> = tables.iter().map(|(t, _)| *t).collect();
            assert_eq!(names, CACHED);
            let presence = &tables.iter().find(|(t, _)| *t == PRESENCE).unwrap().1;
            assert_eq!(presence, &vec![("alice".to_string(), b"49".to_vec())]);
        }
        other => panic!("expected a resync, got {other:?}"),
    }
    // …then reads on from there.
    b.commit(&[Write::put(PRESENCE, "alice", b"50".to_vec())])
        .unwrap();
    loop {
        match rx.recv_timeout(Duration::from_secs(5)).unwrap() {
            FeedEvent::Changes(c) if c.is_empty() => continue,
            FeedEvent::Changes(c) => {
                assert_eq!(c, vec![Write::put(PRESENCE, "alice", b"50".to_vec())]);
                break;
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn the_feed_follows_the_server_through_a_restart() {
    let mut r = Redis::start();
    let a = Arc::new(RedisStore::open(r.config("a")).unwrap());
    let b = RedisStore::open(r.config("b")).unwrap();
    let heard_a = follow(&a);
    r.kill_and_restart();
    let w = Write::put(PRESENCE, "alice", b"after".to_vec());
    b.commit(std::slice::from_ref(&w)).unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(
            Instant::now() < until,
            "a never heard b's write after the restart"
        );
        match heard_a.recv_timeout(Duration::from_secs(10)) {
            Ok(FeedEvent::Changes(c)) if c == vec![w.clone()] => break,
            Ok(_) => continue,
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn call_status_is_told_to_the_others_and_removed_when_its_node_stops_renewing_its_liveness() {
    for shards in [1, 5] {
        call_status_of_a_node_that_stops(shards);
    }
}

fn call_status_of_a_node_that_stops(shards: u32) {
    use switchboard_store::tables::{call_status_key, CALL_STATUS, NODES};
    let r = Redis::start();
    let quick = |node: &str| RedisConfig {
        heartbeat: Duration::from_millis(100),
        ..r.sharded(node, shards)
    };
    // What b hears next: the changes up to (and with) one that `done` says ends the wait.
    let hear_until = |rx: &mpsc::Receiver<FeedEvent>, done: &dyn Fn(&Write) -> bool| {
        let mut heard = Vec::new();
        while !heard.iter().any(done) {
            heard.extend(next_changes(rx));
        }
        heard
    };
    let a = RedisStore::open(quick("a")).unwrap();
    let b = Arc::new(RedisStore::open(quick("b")).unwrap());
    let heard_b = follow(&b);
    let bob = call_status_key("a", "bob");
    let busy = Write::put(CALL_STATUS, bob.clone(), b"\"busy\"".to_vec());
    a.publish(vec![busy.clone()]);
    assert_eq!(next_changes(&heard_b), vec![busy]);
    assert_eq!(rows(&b, CALL_STATUS).len(), 1);
    // a stops (its liveness is no longer renewed): b removes its rows and says a is gone,
    // and hears both too.
    drop(a);
    let gone = hear_until(&heard_b, &|w| w.table == NODES);
    assert_eq!(
        gone,
        vec![
            Write::delete(CALL_STATUS, bob),
            Write::put(NODES, "a", b"gone".to_vec())
        ]
    );
    assert!(rows(&b, CALL_STATUS).is_empty());
    assert!(rows(&b, NODES).is_empty(), "told only");
    // A node that starts again clears what its earlier run left.
    let carol = call_status_key("a", "carol");
    let a = RedisStore::open(quick("a")).unwrap();
    a.publish(vec![Write::put(
        CALL_STATUS,
        carol.clone(),
        b"\"ringing\"".to_vec(),
    )]);
    hear_until(&heard_b, &|w| w.key == carol);
    drop(a);
    std::thread::sleep(Duration::from_millis(50));
    let a = RedisStore::open(quick("a")).unwrap();
    let cleared = hear_until(&heard_b, &|w| w.key == carol);
    assert!(
        cleared.contains(&Write::delete(CALL_STATUS, carol)),
        "{cleared:?}"
    );
    drop(a);
}

#[test]
fn a_row_made_if_absent_is_the_first_ones_for_everyone() {
    use switchboard_store::tables::SECRETS;
    let r = Redis::start();
    let a = RedisStore::open(r.config("a")).unwrap();
    let b = RedisStore::open(r.config("b")).unwrap();
    assert_eq!(
        a.put_if_absent(SECRETS, "k", b"from a".to_vec()).unwrap(),
        b"from a"
    );
    assert_eq!(
        b.put_if_absent(SECRETS, "k", b"from b".to_vec()).unwrap(),
        b"from a"
    );
    assert_eq!(
        rows(&b, SECRETS),
        vec![("k".to_string(), b"from a".to_vec())]
    );
    // The embedded store's default does the same.
    let m = switchboard_store::MemoryStore::default();
    assert_eq!(m.put_if_absent(SECRETS, "k", b"1".to_vec()).unwrap(), b"1");
    assert_eq!(m.put_if_absent(SECRETS, "k", b"2".to_vec()).unwrap(), b"1");
    m.commit(&[Write::put(SECRETS, "k2", b"x".to_vec())])
        .unwrap();
    assert_eq!(m.put_if_absent(SECRETS, "k", b"3".to_vec()).unwrap(), b"1");
}

#[test]
fn what_is_only_told_reaches_the_others_and_leaves_no_row() {
    use switchboard_store::tables::AUTH_ATTEMPTS;
    let r = Redis::start();
    let a = RedisStore::open(r.config("a")).unwrap();
    let b = Arc::new(RedisStore::open(r.config("b")).unwrap());
    let heard_b = follow(&b);
    let failed = Write::put(AUTH_ATTEMPTS, "alice", b"failed".to_vec());
    a.publish(vec![failed.clone(), failed.clone()]);
    let mut heard = Vec::new();
    while heard.len() < 2 {
        heard.extend(next_changes(&heard_b));
    }
    assert_eq!(heard, vec![failed.clone(), failed]);
    assert!(rows(&b, AUTH_ATTEMPTS).is_empty());
}

/// `redis-cli --cluster ARGS`, which must succeed.
fn cluster_command(args: &[String]) {
    let out = Command::new("redis-cli")
        .arg("--cluster")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "redis-cli --cluster {args:?}: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// A Redis Cluster of three masters on loopback (no replicas), each fsyncing every write.
struct Cluster {
    nodes: Vec<Redis>,
}

impl Cluster {
    fn start() -> Cluster {
        Cluster::start_with(0)
    }

    /// Three masters with `replicas` replicas each.
    fn start_with(replicas: usize) -> Cluster {
        let nodes: Vec<Redis> = (0..3 * (1 + replicas))
            .map(|_| Redis::cluster_master())
            .collect();
        let mut create = vec!["create".to_string()];
        create.extend(nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)));
        create.extend(["--cluster-replicas".into(), replicas.to_string()]);
        create.push("--cluster-yes".into());
        cluster_command(&create);
        for n in &nodes {
            n.wait_cluster_ok();
        }
        // Replicas that have their master's data.
        for n in &nodes {
            let until = Instant::now() + Duration::from_secs(20);
            while n.cli(&["role"]).starts_with("slave")
                && !n
                    .cli(&["info", "replication"])
                    .contains("master_link_status:up")
            {
                assert!(Instant::now() < until, "a replica did not sync");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Cluster { nodes }
    }

    /// A master that does not hold the site's keys (`{sb}`): it redirects.
    fn elsewhere(&self) -> &Redis {
        self.nodes
            .iter()
            .find(|n| n.cli(&["exists", "{sb}:feed"]).contains("MOVED"))
            .expect("a master without the {sb} slot")
    }

    fn masters(&mut self) -> Vec<&mut Redis> {
        self.nodes
            .iter_mut()
            .filter(|n| n.cli(&["role"]).starts_with("master"))
            .collect()
    }
}

#[test]
fn a_redis_cluster_is_followed_to_the_master_holding_the_sites_keys() {
    let c = Cluster::start();
    let r = c.elsewhere();
    let a = Arc::new(RedisStore::open(r.config("a")).unwrap());
    let b = Arc::new(RedisStore::open(r.config("b")).unwrap());
    let heard_b = follow(&b);
    let w = Write::put(PRESENCE, "alice", b"dnd".to_vec());
    a.commit(std::slice::from_ref(&w)).unwrap();
    assert_eq!(next_changes(&heard_b), vec![w]);
    assert_eq!(
        rows(&b, PRESENCE),
        vec![("alice".to_string(), b"dnd".to_vec())]
    );
    // The rows are on the master that holds the slot, not on the one named.
    assert_eq!(r.cli(&["dbsize"]).trim(), "0");
}

/// Presence rows of `n` people, one commit.
fn many_people(n: usize) -> Vec<Write> {
    (0..n)
        .map(|i| Write::put(PRESENCE, format!("user{i:03}"), format!("{i}").into_bytes()))
        .collect()
}

#[test]
fn a_site_in_several_shards_is_spread_over_the_masters_of_a_cluster() {
    use switchboard_store::tables::{binding_key, SECRETS};
    let c = Cluster::start();
    let r = c.elsewhere();
    let a = Arc::new(RedisStore::open(r.sharded("a", 6)).unwrap());
    let b = Arc::new(RedisStore::open(r.sharded("b", 6)).unwrap());
    let heard_b = follow(&b);
    // One commit of sixty people's rows: a transaction in each shard.
    let writes = many_people(60);
    a.commit(&writes).unwrap();
    let mut heard = Vec::new();
    while heard.len() < writes.len() {
        heard.extend(next_changes(&heard_b));
    }
    heard.sort_by(|x, y| x.key.cmp(&y.key));
    assert_eq!(heard, writes);
    // Every master holds a part of the site: six shards' slots are spread evenly, two a
    // master (the cluster gave each a third of the slots).
    for n in &c.nodes {
        let feeds = n.cli(&["--scan", "--pattern", "{sb:*}:feed"]);
        assert_eq!(feeds.lines().count(), 2, "{} holds {feeds:?}", n.port);
    }
    // Read back whole, in key order, from every shard; a limited range too; a person's
    // rows from their shard.
    let all = rows(&b, PRESENCE);
    let expected: Vec<(String, Vec<u8>)> = writes
        .iter()
        .map(|w| (w.key.clone(), w.value.clone().unwrap()))
        .collect();
    assert_eq!(all, expected);
    assert_eq!(
        b.scan_range_limited(PRESENCE, "user010", "~", 5).unwrap(),
        expected[10..15].to_vec()
    );
    let bindings = [
        Write::put(BINDINGS, binding_key("alice", "1"), b"x".to_vec()),
        Write::put(BINDINGS, binding_key("alice", "2"), b"y".to_vec()),
        Write::put(BINDINGS, binding_key("alicf", "1"), b"z".to_vec()),
    ];
    a.commit(&bindings).unwrap();
    let alice = b.scan_range(BINDINGS, "alice\n", "alice\u{b}").unwrap();
    assert_eq!(alice.len(), 2);
    assert_eq!(b.scan(BINDINGS).unwrap().len(), 3);
    // A row made if absent is the first node's, from wherever it is read.
    let first = a.put_if_absent(SECRETS, "nonce", b"a".to_vec()).unwrap();
    let second = b.put_if_absent(SECRETS, "nonce", b"b".to_vec()).unwrap();
    assert_eq!((first, second), (b"a".to_vec(), b"a".to_vec()));
    // A node laid out in another count of shards is refused.
    match RedisStore::open(r.sharded("c", 4)) {
        Err(e) => assert!(anyhow_chain(&e).contains("redis_shards"), "{e}"),
        Ok(_) => panic!("a node of four shards opened a site of six"),
    }
}

#[test]
fn a_site_keeps_the_count_of_shards_it_was_made_with() {
    let r = Redis::start();
    let one = RedisStore::open(r.config("a")).unwrap();
    one.commit(&many_people(3)).unwrap();
    drop(one);
    let refused = |config: RedisConfig| match RedisStore::open(config) {
        Err(e) => {
            let text = format!("{:?}", anyhow_chain(&e));
            assert!(text.contains("redis_shards"), "{text}");
        }
        Ok(_) => panic!("opened a site laid out otherwise"),
    };
    refused(r.sharded("a", 4));
    // A site written before its count was recorded counts as one shard.
    r.cli(&["del", "{sb}:shards"]);
    refused(r.sharded("a", 4));
    assert_eq!(
        rows(&RedisStore::open(r.config("b")).unwrap(), PRESENCE).len(),
        3
    );
    // Another site on the same server (another prefix) has its own.
    let other = |shards| RedisConfig {
        prefix: "other".into(),
        ..r.sharded("a", shards)
    };
    RedisStore::open(other(4))
        .unwrap()
        .commit(&many_people(3))
        .unwrap();
    refused(other(1));
    assert_eq!(
        rows(&RedisStore::open(other(4)).unwrap(), PRESENCE).len(),
        3
    );
    match RedisStore::open(r.sharded("a", 65)) {
        Err(e) => assert!(anyhow_chain(&e).contains("1 to 64"), "{e}"),
        Ok(_) => panic!("65 shards"),
    }
}

/// An error and its sources, in one line.
fn anyhow_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[test]
fn a_node_away_longer_than_a_shards_feed_keeps_reads_that_shard_again() {
    let r = Redis::start();
    let a = Arc::new(RedisStore::open(r.sharded("a", 4)).unwrap());
    let b = RedisStore::open(r.sharded("b", 4)).unwrap();
    b.commit(&many_people(20)).unwrap();
    let from = a.feed_position().unwrap();
    let alice = Shard::of("user000", 4);
    for i in 0..50 {
        b.commit(&[Write::put(
            PRESENCE,
            "user000",
            format!("x{i}").into_bytes(),
        )])
        .unwrap();
    }
    // The feed of alice's shard forgets what a has not read yet; the others keep theirs.
    let feeds = r.cli(&["--scan", "--pattern", "{sb:*}:feed"]);
    let mut trimmed = 0;
    for feed in feeds.lines() {
        if r.cli(&["xlen", feed]).trim().parse::<u64>().unwrap() > 40 {
            r.cli(&["XTRIM", feed, "MAXLEN", "10"]);
            trimmed += 1;
        }
    }
    assert_eq!(trimmed, 1, "{feeds}");
    let (tx, rx) = mpsc::channel();
    a.follow(from, move |e| {
        if matches!(&e, FeedEvent::Changes(c) if c.is_empty()) {
            return true;
        }
        tx.send(e).is_ok()
    });
    match rx.recv_timeout(Duration::from_secs(5)).unwrap() {
        FeedEvent::Resync { shard, tables } => {
            assert_eq!(shard, alice);
            let presence = &tables.iter().find(|(t, _)| *t == PRESENCE).unwrap().1;
            assert!(presence.iter().all(|(k, _)| shard.holds(k)));
            assert!(presence.len() < 20, "only its shard's rows");
            assert!(presence.contains(&("user000".to_string(), b"x49".to_vec())));
        }
        other => panic!("expected a resync, got {other:?}"),
    }
    quiet(&rx);
}

#[test]
fn a_site_stays_whole_while_its_shards_move_to_a_master_added_to_the_cluster() {
    let c = Cluster::start();
    let r = &c.nodes[0];
    let a = Arc::new(RedisStore::open(r.sharded("a", 8)).unwrap());
    let b = Arc::new(RedisStore::open(r.sharded("b", 8)).unwrap());
    let heard_b = follow(&b);
    // a writes a row per commit, of people in every shard, while a fourth master joins
    // and a quarter of the slots move to it.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (a, stop) = (a.clone(), stop.clone());
        std::thread::spawn(move || {
            let (mut acknowledged, mut refused) = (Vec::new(), 0);
            let until = Instant::now() + Duration::from_secs(60);
            let mut i = 0;
            while Instant::now() < until && !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let w = Write::put(
                    PRESENCE,
                    format!("user{:03}", i % 200),
                    format!("{i}").into_bytes(),
                );
                match a.commit(std::slice::from_ref(&w)) {
                    Ok(()) => acknowledged.push(w),
                    Err(_) => refused += 1,
                }
                i += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
            (acknowledged, refused)
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let new = Redis::cluster_master();
    let (new_at, at) = (
        format!("127.0.0.1:{}", new.port),
        format!("127.0.0.1:{}", r.port),
    );
    cluster_command(&["add-node".into(), new_at, at.clone()]);
    new.wait_cluster_ok();
    cluster_command(&["rebalance".into(), at, "--cluster-use-empty-masters".into()]);
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (acknowledged, refused) = writer.join().unwrap();
    eprintln!(
        "{} commits acknowledged, {refused} refused while slots moved",
        acknowledged.len()
    );
    // The new master holds shards now.
    let moved = new.cli(&["--scan", "--pattern", "{sb:*}:feed"]);
    assert!(!moved.is_empty(), "no shard moved to the new master");
    // Every acknowledged write is in the store (the newest of each person's), and b
    // heard it.
    let mut newest: std::collections::BTreeMap<String, Vec<u8>> = Default::default();
    for w in &acknowledged {
        newest.insert(w.key.clone(), w.value.clone().unwrap());
    }
    let stored: std::collections::BTreeMap<String, Vec<u8>> =
        rows(&b, PRESENCE).into_iter().collect();
    for (k, v) in &newest {
        // A refused commit after it may have been made all the same (its answer lost).
        let at = |v: &[u8]| String::from_utf8_lossy(v).parse::<u64>().unwrap();
        assert!(
            at(&stored[k]) >= at(v),
            "{k}: stored {:?}, acknowledged {:?}",
            stored[k],
            v
        );
    }
    let mut heard: std::collections::BTreeMap<String, Vec<u8>> = Default::default();
    let until = Instant::now() + Duration::from_secs(10);
    while heard != stored {
        assert!(
            Instant::now() < until,
            "b heard {} of {} rows",
            heard.len(),
            stored.len()
        );
        if let Ok(FeedEvent::Changes(c)) = heard_b.recv_timeout(Duration::from_secs(1)) {
            for w in c {
                heard.insert(w.key, w.value.unwrap());
            }
        }
    }
}

#[test]
fn a_commit_waited_for_by_a_replica_is_acknowledged_in_every_shard() {
    let master = Redis::start_with(&[
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
        "--repl-diskless-sync-delay",
        "0",
    ]);
    let port = master.port.to_string();
    let replica = Redis::start_with(&["--replicaof", "127.0.0.1", &port]);
    let until = Instant::now() + Duration::from_secs(10);
    while !replica
        .cli(&["info", "replication"])
        .contains("master_link_status:up")
    {
        assert!(Instant::now() < until, "the replica did not connect");
        std::thread::sleep(Duration::from_millis(50));
    }
    for shards in [1, 4] {
        let s = RedisStore::open(RedisConfig {
            replicas: 1,
            prefix: format!("s{shards}"),
            ..master.sharded("a", shards)
        })
        .unwrap();
        s.commit(&many_people(12)).unwrap();
        assert_eq!(rows(&s, PRESENCE).len(), 12);
    }
    // The replica has every row.
    let keys = replica.cli(&["--scan", "--pattern", "{s*}:t:presence"]);
    assert_eq!(keys.lines().count(), 1 + 4, "{keys}");
}

#[test]
fn a_site_in_a_cluster_survives_a_master_failing_over_to_its_replica() {
    let mut c = Cluster::start_with(1);
    // Every commit waits for a replica: what was acknowledged is on the one promoted.
    let config = |node: &str, r: &Redis| RedisConfig {
        replicas: 1,
        ..r.sharded(node, 6)
    };
    let named = c.masters().remove(0);
    let (a, b) = (config("a", named), config("b", named));
    let gone_port = named.port;
    let a = Arc::new(RedisStore::open(a).unwrap());
    let b = Arc::new(RedisStore::open(b).unwrap());
    let heard_b = follow(&b);
    let before = many_people(60);
    a.commit(&before).unwrap();
    // The master both nodes were pointed at dies; its replica takes over, found through
    // the cluster's other nodes. Commits to its shards are refused meanwhile, and then
    // until the promoted replica has a replica in turn.
    c.nodes
        .iter_mut()
        .find(|n| n.port == gone_port)
        .unwrap()
        .kill();
    let after: Vec<Write> = (0..60)
        .map(|i| Write::put(PRESENCE, format!("user{i:03}"), b"after".to_vec()))
        .collect();
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let e = a.commit(&after).expect_err("no replica to wait for");
        if e.to_string().contains("too few replicas") {
            break;
        }
        assert!(Instant::now() < until, "the new master was not found: {e}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The old master, started again, becomes the new one's replica.
    c.nodes
        .iter_mut()
        .find(|n| n.port == gone_port)
        .unwrap()
        .restart();
    let until = Instant::now() + Duration::from_secs(30);
    while let Err(e) = a.commit(&after) {
        assert!(Instant::now() < until, "no commit after the failover: {e}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let expected: Vec<(String, Vec<u8>)> = after
        .iter()
        .map(|w| (w.key.clone(), w.value.clone().unwrap()))
        .collect();
    assert_eq!(rows(&b, PRESENCE), expected);
    // b heard it all, the rows of the shards that moved included.
    let mut heard: std::collections::BTreeMap<String, Vec<u8>> = Default::default();
    let until = Instant::now() + Duration::from_secs(15);
    while heard.values().filter(|v| v.as_slice() == b"after").count() < 60 {
        assert!(Instant::now() < until, "b heard {heard:?}");
        if let Ok(FeedEvent::Changes(c)) = heard_b.recv_timeout(Duration::from_secs(1)) {
            for w in c {
                heard.insert(w.key, w.value.unwrap());
            }
        }
    }
}
