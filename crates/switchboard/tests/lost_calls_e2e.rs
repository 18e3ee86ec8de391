//! Answered calls whose BYE never comes, end to end: the daemon probes both ends of every
//! answered call inside its dialog (`routing.dialog_probe_secs`, 2 s here) and ends a call
//! one end has lost — presence shows the other person free again, and the other end gets
//! a BYE. SIPp plays the caller (answering the probes, waiting for the BYE) and a callee
//! that goes away or forgets the call.

mod common;

use common::*;
use std::time::{Duration, Instant};

const PROBE_SECS: u64 = 2;

fn daemon() -> Daemon {
    Daemon::start(Options::with(&format!(
        "[routing]\ndialog_probe_secs = {PROBE_SECS}\n"
    )))
}

fn call_status(d: &Daemon, user: &str) -> String {
    let (code, body) = admin_api(d, "GET", &format!("/v1/presence/{user}"), "");
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["call_status"].as_str().unwrap_or("").to_string()
}

/// alice calls bob, whose phone runs `callee`; returns the caller, running, once bob's
/// phone has answered and ended its part (its SIPp exited).
fn call_then_callee_leaves(d: &Daemon, callee: &str) -> Uas {
    let bob = Uas::start(callee, 1, &[]);
    bob.register(d, "bob", "bob-secret");
    let caller = probed_call(d);
    let bob = bob.finish(Duration::from_secs(40));
    assert!(bob.success, "{}\ndaemon log:\n{}", bob.report(), d.log());
    caller
}

/// Waits (at most `limit`) until bob is free; how long it took.
fn until_bob_is_free(d: &Daemon, limit: Duration) -> Duration {
    let start = Instant::now();
    wait_until(limit, Duration::from_millis(200), || {
        (call_status(d, "bob") == "free").then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "bob still {} after {limit:?}\ndaemon log:\n{}",
            call_status(d, "bob"),
            d.log()
        )
    });
    start.elapsed()
}

/// The caller's run: passed, probed, and hung up by the daemon's BYE.
fn caller_got_the_bye(d: &Daemon, caller: Uas) -> SippRun {
    let r = caller.finish(Duration::from_secs(60));
    assert!(r.success, "{}\ndaemon log:\n{}", r.report(), d.log());
    assert!(!r.logged("probe cseq").is_empty(), "{}", r.report());
    let reason = r.logged("bye reason");
    assert_eq!(reason.len(), 1, "{}", r.report());
    assert!(reason[0].contains("cause=408"), "{reason:?}");
    r
}

#[test]
fn a_callee_that_vanishes_is_freed_and_the_caller_hung_up() {
    let mut d = daemon();
    let caller = call_then_callee_leaves(&d, "uas_answer_then_vanish.xml");
    // bob's phone is gone, but the call is still up: bob is busy until a probe times out.
    assert_eq!(call_status(&d, "bob"), "busy");
    let took = until_bob_is_free(&d, Duration::from_secs(PROBE_SECS + 32 + 8));
    assert!(
        took > Duration::from_secs(20),
        "freed after {took:?}: before Timer F?"
    );
    caller_got_the_bye(&d, caller);
    assert_eq!(call_status(&d, "alice"), "free");
    d.wait_for_log("answered call lost", Duration::from_secs(5));
    assert!(
        d.log_contains("side=\"callee\"") || d.log_contains("side=callee"),
        "{}",
        d.log()
    );
}

#[test]
fn a_callee_answering_481_is_freed_at_the_next_probe() {
    let d = daemon();
    let caller = call_then_callee_leaves(&d, "uas_answer_then_481.xml");
    // The 481 came at the first probe; the call ended then.
    let took = until_bob_is_free(&d, Duration::from_secs(5));
    assert!(took < Duration::from_secs(5));
    caller_got_the_bye(&d, caller);
    assert_eq!(call_status(&d, "alice"), "free");
    assert!(d.log_contains("the dialog is gone (481)"), "{}", d.log());
}
