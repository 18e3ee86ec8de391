//! Bindings are durable: a 200 to REGISTER is only sent once the change is on disk, so
//! after `kill -9` and a restart on the same state directory every acknowledged
//! registration (and every acknowledged removal) is still in force.

mod common;

use common::*;

#[test]
fn restart_keeps_all_bindings() {
    const N: usize = 50;
    let mut d = Daemon::start(Options {
        policy: format!("{POLICY}{}", many_users(N)),
        ..Options::default()
    });
    // N addresses, one contact each, registered by one SIPp run (each call checks its 200).
    let rows: Vec<Row> = (0..N)
        .map(|i| row(&format!("u{i}"), "pw", 8000 + i as u16, 600))
        .collect();
    Sipp::new(&d, "register.xml")
        .rows(rows.clone())
        .rate(100)
        .ok();
    // kill -9 right after the last 200, then start again on the same state.
    d.restart();
    // Every address still has exactly its contact: each call of the run checks one.
    Sipp::new(&d, "query_one.xml").rows(rows).rate(100).ok();
}

#[test]
fn restart_keeps_removals() {
    let mut d = Daemon::start(Options::default());
    for port in [8101, 8102] {
        Sipp::new(&d, "register.xml")
            .row(row("alice", "alice-secret", port, 600))
            .ok();
    }
    Sipp::new(&d, "register.xml")
        .row(row("bob", "bob-secret", 8103, 600))
        .ok();
    Sipp::new(&d, "deregister.xml")
        .row(row("alice", "alice-secret", 8101, 0))
        .ok();
    Sipp::new(&d, "unregister_all.xml")
        .row(row("bob", "bob-secret", 0, 0))
        .ok();
    d.restart();
    Sipp::new(&d, "query_one.xml")
        .row(row("alice", "alice-secret", 8102, 0))
        .ok();
    Sipp::new(&d, "query_none.xml")
        .row(row("bob", "bob-secret", 0, 0))
        .ok();
}

#[test]
fn restart_twice_with_traffic_between() {
    // The state written by a restarted daemon is as durable as the first run's.
    let mut d = Daemon::start(Options::default());
    Sipp::new(&d, "register.xml")
        .row(row("alice", "alice-secret", 8201, 600))
        .ok();
    d.restart();
    Sipp::new(&d, "register.xml")
        .row(row("bob", "bob-secret", 8202, 600))
        .ok();
    d.restart();
    Sipp::new(&d, "query_one.xml")
        .row(row("alice", "alice-secret", 8201, 0))
        .ok();
    Sipp::new(&d, "query_one.xml")
        .row(row("bob", "bob-secret", 8202, 0))
        .ok();
}
