//! Confirmed forwarding: `[users.ID.forwarding] require_confirmation` marks the forward
//! targets' legs (never the person's own devices) as needing the target's confirmation.

use chrono::{TimeZone, Utc};
use switchboard_policy::plan::{Action, LegTarget, Next};
use switchboard_policy::{plan, Call, Caller, Policy, RoutePlan, Source, View};

const POLICY: &str = r#"
[users.alice]
extension = "1001"
[users.alice.sip]
password = "a"
[users.alice.forwarding]
targets = ["user:bob", "user:carol", "number:+447700900123"]
strategy = "hunt"
ring_time = 10
require_confirmation = true

[users.bob]
extension = "1002"
[users.bob.sip]
password = "b"
[users.bob.forwarding]
targets = ["user:carol"]

[users.carol]
extension = "1003"
[users.carol.sip]
password = "c"

[trunks.carrier]
sources = ["127.0.0.1"]
outbound = ["+44*"]
"#;

fn policy(text: &str) -> Policy {
    Policy::from_sources(&[Source {
        name: "p.toml".into(),
        text: text.into(),
    }])
    .unwrap_or_else(|e| panic!("{e}"))
}

fn run(to: &str) -> RoutePlan {
    let view = View::default()
        .with_person("alice", 1)
        .with_person("bob", 1)
        .with_person("carol", 1);
    let call = Call {
        from: Caller::External("+15550100".into()),
        to: to.into(),
        call_id: "c1".into(),
    };
    plan(
        &policy(POLICY),
        &call,
        &view,
        Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0).unwrap(),
    )
}

/// (who, confirm) of each leg of the plan's first step.
fn legs(p: &RoutePlan) -> Vec<(String, bool)> {
    let Next::Step(i) = p.start else {
        panic!("no step:\n{p}")
    };
    let Action::Ring { legs, .. } = &p.steps[i].action else {
        panic!("not a ring step:\n{p}")
    };
    legs.iter()
        .map(|l| {
            let who = match &l.target {
                LegTarget::Person { user, .. } => user.clone(),
                LegTarget::External { number, .. } => number.clone(),
            };
            (who, l.confirm)
        })
        .collect()
}

#[test]
fn forward_targets_need_confirmation_and_own_devices_do_not() {
    let p = run("1001");
    assert_eq!(
        legs(&p),
        vec![
            ("alice".to_string(), false),
            ("bob".to_string(), true),
            ("carol".to_string(), true),
            ("+447700900123".to_string(), true),
        ],
        "{p}"
    );
    let text = p.to_string();
    assert_eq!(
        text.matches("connected once they press 1").count(),
        3,
        "{text}"
    );
}

#[test]
fn forwarding_without_it_needs_no_confirmation() {
    // bob forwards to carol without require_confirmation (the default).
    let p = run("1002");
    assert_eq!(
        legs(&p),
        vec![("bob".to_string(), false), ("carol".to_string(), false)],
        "{p}"
    );
    assert!(!p.to_string().contains("press 1"), "{p}");
}

#[test]
fn it_is_a_boolean() {
    let bad = POLICY.replace(
        "require_confirmation = true",
        "require_confirmation = \"yes\"",
    );
    let Err(err) = Policy::from_sources(&[Source {
        name: "p.toml".into(),
        text: bad,
    }]) else {
        panic!("a string is refused")
    };
    assert!(
        err.to_string().contains("require_confirmation") || err.to_string().contains("bool"),
        "{err}"
    );
}
