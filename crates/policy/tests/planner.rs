//! The planner, one or more tests per rule, named after the rule.

use chrono::{DateTime, TimeZone, Utc};
use switchboard_policy::plan::{Action, LegTarget, Message, Next, Step};
use switchboard_policy::{
    plan, Availability, Call, Caller, CallerIdRule, Policy, RoutePlan, Source, View,
};

const POLICY: &str = r#"
[users.alice]
extension = "1001"
caller_id = "+441632960001"
no_answer = "voicemail:alice-vm"
out_of_hours = "voicemail:alice-oh"
busy = "voicemail:alice-vm"
profile_caller_ids = { left_for_the_day = "+447700900001" }
devices = [{ name = "mobile", contact_match = "alice-dev1" }]
[users.alice.sip]
password = "a"

[users.bob]
extension = "1002"
call_waiting = false
no_answer = "hangup"
[users.bob.sip]
password = "b"

[users.carol]
extension = "1003"
no_answer = "voicemail:carol-vm"
[users.carol.sip]
password = "c"

[users.dave]
extension = "1004"
no_answer = "voicemail:dave-vm"
[users.dave.sip]
password = "d"
[users.dave.forwarding]
targets = ["number:+447700900123"]
ring_own_first = 10
ring_time = 20
direct_calls_only = true
caller_id = "local"
message = "forwarding-notice"

[users.erin]
extension = "1005"
schedule = "office"
out_of_hours = "voicemail:alice-oh"
[users.erin.sip]
password = "e"

[teams.support]
extension = "2000"
members = ["alice", "bob", "carol", "dave"]
strategy = "hunt"
member_ring_time = 10
ring_time = 40
no_answer = "voicemail:support-vm"

[destinations.alice-vm]
kind = "voicemail"
uri = "sip:vm-alice@127.0.0.1:5090"
[destinations.alice-oh]
kind = "voicemail"
uri = "sip:oh-alice@127.0.0.1:5090"
[destinations.carol-vm]
kind = "voicemail"
uri = "sip:vm-carol@127.0.0.1:5090"
[destinations.dave-vm]
kind = "voicemail"
uri = "sip:vm-dave@127.0.0.1:5090"
[destinations.support-vm]
kind = "voicemail"
uri = "sip:vm-support@127.0.0.1:5090"

[schedules.office]
timezone = "Europe/London"
hours = ["mon-fri 09:00-17:00"]
holidays = ["2026-12-25"]

[trunks.carrier]
sources = ["127.0.0.1"]
outbound = ["+44*"]
dids = { "+441632960000" = "team:support" }
[[trunks.carrier.numbers]]
number = "+441632960002"
to = "user:alice"
schedule = "office"
out_of_hours = "voicemail:carol-vm"

[profiles.lunch]
incoming = "ring_devices"
devices = ["mobile"]
[profiles.meeting]
incoming = "reject"
reject_code = 480
reject_reason = "In a meeting"
"#;

fn policy() -> Policy {
    Policy::from_sources(&[Source {
        name: "p.toml".into(),
        text: POLICY.into(),
    }])
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Monday 2026-11-23 10:00 UTC (10:00 in London: office open).
fn monday() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0).unwrap()
}

fn call(to: &str) -> Call {
    Call {
        from: Caller::External("+15550100".into()),
        to: to.into(),
        call_id: "c1".into(),
    }
}

fn everyone() -> View {
    View::default()
        .with_person("alice", 2)
        .with_person("bob", 1)
        .with_person("carol", 1)
        .with_person("dave", 1)
        .with_person("erin", 1)
}

fn run(c: &Call, v: &View) -> RoutePlan {
    plan(&policy(), c, v, monday())
}

/// The first action of the plan.
fn first(p: &RoutePlan) -> &Action {
    match p.start {
        Next::Step(i) => &p.steps[i].action,
        Next::Final(c) => panic!("plan ends at once with {c}:\n{p}"),
    }
}

fn ringing(p: &RoutePlan) -> Vec<(String, u32, u32)> {
    match first(p) {
        Action::Ring { legs, .. } => legs
            .iter()
            .map(|l| {
                let who = match &l.target {
                    LegTarget::Person { user, .. } => user.clone(),
                    LegTarget::External { number, .. } => number.clone(),
                };
                (who, l.start, l.stop)
            })
            .collect(),
        other => panic!("not ringing: {other:?}\n{p}"),
    }
}

fn order_of(p: &RoutePlan) -> Vec<String> {
    ringing(p).into_iter().map(|(w, _, _)| w).collect()
}

fn destination_of(p: &RoutePlan) -> String {
    match first(p) {
        Action::Destination { id, .. } => id.clone(),
        other => panic!("not a destination: {other:?}\n{p}"),
    }
}

#[test]
fn available_user_rings_all_devices_for_ring_time() {
    let p = run(&call("1001"), &everyone());
    assert_eq!(ringing(&p), vec![("alice".into(), 0, 20)]);
    let Next::Step(i) = p.start else { panic!() };
    let Next::Step(vm) = p.steps[i].on_no_answer else {
        panic!("{p}")
    };
    assert!(matches!(&p.steps[vm].action, Action::Destination { id, .. } if id == "alice-vm"));
}

#[test]
fn dnd_follows_out_of_hours_route() {
    let p = run(
        &call("1001"),
        &everyone().with_status("alice", Availability::DoNotDisturb),
    );
    assert_eq!(destination_of(&p), "alice-oh");
}

#[test]
fn busy_status_follows_out_of_hours_route() {
    let p = run(
        &call("1001"),
        &everyone().with_status("alice", Availability::Busy),
    );
    assert_eq!(destination_of(&p), "alice-oh");
}

#[test]
fn away_still_rings() {
    let p = run(
        &call("1001"),
        &everyone().with_status("alice", Availability::Away),
    );
    assert_eq!(order_of(&p), vec!["alice"]);
}

#[test]
fn custom_keeps_ringing_and_shows_its_text() {
    let mut v = everyone().with_status("alice", Availability::Custom);
    v.people.get_mut("alice").unwrap().custom_text = Some("Out to lunch".into());
    let p = run(&call("1001"), &v);
    assert_eq!(order_of(&p), vec!["alice"]);
    assert!(p.notes.iter().any(|n| n.contains("Out to lunch")), "{p}");
}

#[test]
fn team_calls_skip_busy_and_dnd_members() {
    let v = everyone()
        .with_status("alice", Availability::DoNotDisturb)
        .with_status("carol", Availability::Busy);
    let p = run(&call("2000"), &v);
    // Hunt goes round the two remaining members for the team's 40 s.
    assert_eq!(order_of(&p), vec!["bob", "dave", "bob", "dave"]);
    assert!(
        p.notes.iter().any(|n| n.contains("alice skipped (dnd)")),
        "{p}"
    );
}

#[test]
fn team_call_never_reaches_a_members_voicemail() {
    let p = run(&call("2000"), &everyone());
    let Next::Step(i) = p.start else { panic!() };
    let Next::Step(vm) = p.steps[i].on_no_answer else {
        panic!()
    };
    assert!(
        matches!(&p.steps[vm].action, Action::Destination { id, .. } if id == "support-vm"),
        "{p}"
    );
    assert!(
        !p.steps
            .iter()
            .any(|s| matches!(&s.action, Action::Destination { id, .. } if id == "alice-vm")),
        "{p}"
    );
}

#[test]
fn call_waiting_off_and_in_a_call_gets_busy_handling() {
    let p = run(&call("1002"), &everyone().with_in_call("bob"));
    assert_eq!(p.start, Next::Final(486));
    // With call waiting on, a second call still rings.
    let p = run(&call("1003"), &everyone().with_in_call("carol"));
    assert_eq!(order_of(&p), vec!["carol"]);
}

#[test]
fn busy_with_redirect_goes_to_the_busy_destination() {
    let mut pol = POLICY.replace(
        "[users.bob]\nextension = \"1002\"\ncall_waiting = false",
        "[users.bob]\nextension = \"1002\"\ncall_waiting = false\nbusy = \"voicemail:carol-vm\"",
    );
    pol.push('\n');
    let policy = Policy::from_sources(&[Source {
        name: "p".into(),
        text: pol,
    }])
    .unwrap();
    let p = plan(
        &policy,
        &call("1002"),
        &everyone().with_in_call("bob"),
        monday(),
    );
    assert_eq!(destination_of(&p), "carol-vm");
}

#[test]
fn busy_can_play_the_daemons_own_message_then_end() {
    let mut pol = POLICY.replace(
        "[users.bob]\nextension = \"1002\"\ncall_waiting = false",
        "[users.bob]\nextension = \"1002\"\ncall_waiting = false\nbusy = \"announcement:engaged\"",
    );
    pol.push_str("\n[destinations.engaged]\nkind = \"announcement\"\nmessage = \"is_on_another_call\"\ncode = 486\n");
    let policy = Policy::from_sources(&[Source {
        name: "p".into(),
        text: pol,
    }])
    .unwrap();
    let p = plan(
        &policy,
        &call("1002"),
        &everyone().with_in_call("bob"),
        monday(),
    );
    let Next::Step(i) = p.start else {
        panic!("{p}")
    };
    let step = &p.steps[i];
    // The call is for the announcement (an offer it cannot answer is refused, 488).
    assert_eq!(
        step.action,
        Action::Announcement {
            id: "engaged".into(),
            message: Message::Named("is_on_another_call".into()),
            answer: false,
        },
        "{p}"
    );
    assert_eq!(step.on_no_answer, Next::Final(486));
}

/// The refusal a profile's announcement leads to (the first step, when there is none).
fn refusal(p: &RoutePlan) -> &Action {
    let Next::Step(i) = p.start else {
        panic!("{p}")
    };
    match &p.steps[i] {
        Step {
            action: Action::Message { .. },
            on_no_answer: Next::Step(j),
            ..
        } => &p.steps[*j].action,
        s => &s.action,
    }
}

#[test]
fn profile_reject_answers_with_its_code() {
    let p = run(&call("1001"), &everyone().with_profile("alice", "meeting"));
    match refusal(&p) {
        Action::Reject { code, reason } => {
            assert_eq!((*code, reason.as_str()), (480, "In a meeting"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_refusing_profile_says_so_first_until_its_end_on_the_callees_clock() {
    // Monday 10:00 UTC; the meeting ends at 14:30 UTC, 14:30 in London in November.
    let mut v = everyone().with_profile("alice", "meeting");
    let end = monday() + chrono::Duration::minutes(4 * 60 + 30);
    v.people.get_mut("alice").unwrap().profile_until = Some(end.timestamp());
    let p = run(&call("1001"), &v);
    let Action::Message {
        message: Message::Profile(m),
    } = first(&p)
    else {
        panic!("{p}")
    };
    assert_eq!((m.user.as_str(), m.extension.as_str()), ("alice", "1001"));
    assert_eq!(m.profile, "meeting");
    let until = m.until.unwrap();
    assert_eq!((until.hour, until.minute, until.days_ahead), (14, 30, 0));
    assert_eq!((until.weekday, until.day, until.month), (1, 23, 11));
    let text = p.to_string();
    assert!(
        text.contains(
            "play message the announcement of 1001's profile meeting until 14:30 to the caller (early media), then: step"
        ),
        "{text}"
    );
    // Tomorrow's end; none (no end time).
    v.people.get_mut("alice").unwrap().profile_until =
        Some((end + chrono::Duration::days(1)).timestamp());
    let p = run(&call("1001"), &v);
    let Action::Message {
        message: Message::Profile(m),
    } = first(&p)
    else {
        panic!()
    };
    assert_eq!(m.until.unwrap().days_ahead, 1);
    v.people.get_mut("alice").unwrap().profile_until = None;
    let p = run(&call("1001"), &v);
    let Action::Message {
        message: Message::Profile(m),
    } = first(&p)
    else {
        panic!()
    };
    assert_eq!(m.until, None);

    // `announce = false`: the refusal at once.
    let text = POLICY.replace(
        "reject_reason = \"In a meeting\"",
        "reject_reason = \"In a meeting\"\nannounce = false",
    );
    let pol = Policy::from_sources(&[Source {
        name: "p.toml".into(),
        text,
    }])
    .unwrap();
    let p = plan(&pol, &call("1001"), &v, monday());
    assert!(matches!(first(&p), Action::Reject { code: 480, .. }), "{p}");
}

#[test]
fn profile_ring_only_some_devices() {
    let p = run(&call("1001"), &everyone().with_profile("alice", "lunch"));
    match first(&p) {
        Action::Ring { legs, .. } => match &legs[0].target {
            LegTarget::Person { devices, .. } => {
                assert_eq!(devices, &vec!["sip:alice-dev1@127.0.0.1".to_string()])
            }
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

#[test]
fn profile_following_out_of_hours() {
    let p = run(&call("1001"), &everyone().with_profile("alice", "holiday"));
    assert_eq!(destination_of(&p), "alice-oh");
}

#[test]
fn a_persons_own_profile_is_honoured_over_the_policys() {
    use switchboard_policy::{build_profile, ProfileDraft};
    // A profile alice made herself (through the presence API): it rejects with its code.
    let own = build_profile(
        "focus",
        &ProfileDraft {
            number: Some(20),
            name: Some("Focus".into()),
            availability: Some("dnd".into()),
            incoming: Some("reject".into()),
            reject_code: Some(486),
            reject_reason: Some("Focusing".into()),
            ..Default::default()
        },
        None,
    )
    .unwrap();
    let p = run(&call("1001"), &everyone().with_own_profile("alice", own));
    match refusal(&p) {
        Action::Reject { code, reason } => {
            assert_eq!((*code, reason.as_str()), (486, "Focusing"));
        }
        other => panic!("{other:?}"),
    }
    // Her own change of the policy's Meeting (calls ring as normal) wins over the policy's
    // rejection.
    let policy = policy();
    let meeting = build_profile(
        "meeting",
        &ProfileDraft {
            incoming: Some("ring".into()),
            ..Default::default()
        },
        policy.profile("meeting"),
    )
    .unwrap();
    let v = everyone()
        .with_status("alice", Availability::Available)
        .with_own_profile("alice", meeting);
    assert!(matches!(
        first(&run(&call("1001"), &v)),
        Action::Ring { .. }
    ));
}

#[test]
fn forwarding_rings_own_devices_first_then_both_without_dead_air() {
    let p = run(&call("1004"), &everyone());
    let legs = ringing(&p);
    // dave's phone 0..30 s (keeps ringing), the forward target from 10 s to 30 s.
    assert_eq!(
        legs,
        vec![("dave".into(), 0, 30), ("+447700900123".into(), 10, 30)]
    );
    match first(&p) {
        Action::Ring {
            legs,
            announcements,
            ..
        } => {
            assert_eq!(
                legs[1].caller_id,
                CallerIdRule::Number {
                    number: "1004".into(),
                    display: Some("dave".into())
                }
            );
            // The outgoing message plays when forwarding begins.
            assert_eq!(announcements, &vec![(10, "forwarding-notice".to_string())]);
        }
        _ => unreachable!(),
    }
}

#[test]
fn direct_only_forwarding_is_not_applied_to_team_calls() {
    let p = run(&call("2000"), &everyone());
    assert!(!order_of(&p).contains(&"+447700900123".to_string()), "{p}");
    assert!(
        p.notes.iter().any(|n| n.contains("direct calls only")),
        "{p}"
    );
}

#[test]
fn no_registered_devices_takes_the_unavailable_path() {
    let p = run(&call("1003"), &View::default());
    assert_eq!(destination_of(&p), "carol-vm");
    let p = run(&call("1002"), &View::default());
    assert_eq!(p.start, Next::Final(480), "{p}");
}

#[test]
fn trunk_did_routes_to_its_destination() {
    let c = Call {
        from: Caller::Trunk {
            trunk: "carrier".into(),
            number: "+15550100".into(),
        },
        to: "+441632960000".into(),
        call_id: "c2".into(),
    };
    let p = run(&c, &everyone());
    assert_eq!(order_of(&p), vec!["alice", "bob", "carol", "dave"]);
    let c = Call {
        to: "+449999".into(),
        ..c
    };
    assert_eq!(run(&c, &everyone()).start, Next::Final(404));
}

#[test]
fn did_out_of_hours_goes_to_its_own_destination() {
    let c = Call {
        from: Caller::Trunk {
            trunk: "carrier".into(),
            number: "+15550100".into(),
        },
        to: "+441632960002".into(),
        call_id: "c4".into(),
    };
    assert_eq!(order_of(&run(&c, &everyone())), vec!["alice"]);
    let night = Utc.with_ymd_and_hms(2026, 11, 23, 22, 0, 0).unwrap();
    assert_eq!(
        destination_of(&plan(&policy(), &c, &everyone(), night)),
        "carol-vm"
    );
}

#[test]
fn out_of_office_hours_follow_the_out_of_hours_destination() {
    let saturday = Utc.with_ymd_and_hms(2026, 11, 28, 10, 0, 0).unwrap();
    let p = plan(&policy(), &call("1005"), &everyone(), saturday);
    assert_eq!(destination_of(&p), "alice-oh");
    let christmas = Utc.with_ymd_and_hms(2026, 12, 25, 10, 0, 0).unwrap();
    assert_eq!(
        destination_of(&plan(&policy(), &call("1005"), &everyone(), christmas)),
        "alice-oh"
    );
    // 08:30 UTC in winter is 08:30 in London: still closed.
    let early = Utc.with_ymd_and_hms(2026, 11, 23, 8, 30, 0).unwrap();
    assert_eq!(
        destination_of(&plan(&policy(), &call("1005"), &everyone(), early)),
        "alice-oh"
    );
    assert_eq!(order_of(&run(&call("1005"), &everyone())), vec!["erin"]);
}

#[test]
fn outbound_call_carries_the_profile_caller_id() {
    let c = Call {
        from: Caller::User("alice".into()),
        to: "+442079460000".into(),
        call_id: "c3".into(),
    };
    let p = run(&c, &everyone());
    let Action::Ring { legs, .. } = first(&p) else {
        panic!()
    };
    assert_eq!(
        legs[0].caller_id,
        CallerIdRule::Number {
            number: "+441632960001".into(),
            display: Some("alice".into())
        }
    );
    assert!(
        matches!(&legs[0].target, LegTarget::External { trunk: Some(t), .. } if t == "carrier")
    );
    let p = run(&c, &everyone().with_profile("alice", "left_for_the_day"));
    let Action::Ring { legs, .. } = first(&p) else {
        panic!()
    };
    assert_eq!(
        legs[0].caller_id,
        CallerIdRule::Number {
            number: "+447700900001".into(),
            display: Some("alice".into())
        }
    );
}

/// The trunk of the shared policy with a UK numbering plan and a caller ID of its own.
fn uk_trunk() -> Policy {
    let text = POLICY.replace(
        "[trunks.carrier]\n",
        "[trunks.carrier]\ncountry_code = \"44\"\nnumber_format = \"national\"\n\
         caller_id = \"01632 960000\"\n",
    );
    Policy::from_sources(&[Source {
        name: "p".into(),
        text,
    }])
    .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn numbers_are_compared_and_carried_in_one_form() {
    let policy = uk_trunk();
    // A DID the carrier sends nationally is the DID written with +44.
    let c = Call {
        from: Caller::Trunk {
            trunk: "carrier".into(),
            number: "07700900123".into(),
        },
        to: "01632 960000".into(),
        call_id: "n1".into(),
    };
    let p = plan(&policy, &c, &everyone(), monday());
    assert_eq!(order_of(&p), vec!["alice", "bob", "carol", "dave"]);
    // A national number dialled by bob (no caller ID of his own) leaves through the trunk
    // as +44…, with the trunk's caller ID; the pattern "+44*" matches it in that form.
    let c = Call {
        from: Caller::User("bob".into()),
        to: "020 7946 0000".into(),
        call_id: "n2".into(),
    };
    let p = plan(&policy, &c, &everyone(), monday());
    let Action::Ring { legs, .. } = first(&p) else {
        panic!("{p}")
    };
    assert_eq!(
        legs[0].target,
        LegTarget::External {
            number: "+442079460000".into(),
            trunk: Some("carrier".into())
        }
    );
    assert_eq!(
        legs[0].caller_id,
        CallerIdRule::Number {
            number: "+441632960000".into(),
            display: Some("bob".into())
        }
    );
    // alice's own caller ID comes before the trunk's.
    let c = Call {
        from: Caller::User("alice".into()),
        ..c
    };
    let p = plan(&policy, &c, &everyone(), monday());
    let Action::Ring { legs, .. } = first(&p) else {
        panic!("{p}")
    };
    assert!(
        matches!(&legs[0].caller_id, CallerIdRule::Number { number, .. } if number == "+441632960001")
    );
}

fn team_with(strategy: &str) -> Policy {
    let text = POLICY.replace("strategy = \"hunt\"", &format!("strategy = \"{strategy}\""));
    Policy::from_sources(&[Source {
        name: "p".into(),
        text,
    }])
    .unwrap()
}

#[test]
fn hunt_rings_in_list_order_one_at_a_time() {
    let p = plan(&team_with("hunt"), &call("2000"), &everyone(), monday());
    assert_eq!(
        ringing(&p),
        vec![
            ("alice".into(), 0, 10),
            ("bob".into(), 10, 20),
            ("carol".into(), 20, 30),
            ("dave".into(), 30, 40)
        ]
    );
}

#[test]
fn hunt_goes_round_again_while_the_team_ring_time_lasts() {
    let text = POLICY.replace(
        "ring_time = 40\nno_answer = \"voicemail:support-vm\"",
        "ring_time = 55\nno_answer = \"voicemail:support-vm\"",
    );
    let pol = Policy::from_sources(&[Source {
        name: "p".into(),
        text,
    }])
    .unwrap();
    let v = everyone()
        .with_status("alice", Availability::DoNotDisturb)
        .with_status("carol", Availability::Busy);
    let p = plan(&pol, &call("2000"), &v, monday());
    assert_eq!(
        ringing(&p),
        vec![
            ("bob".into(), 0, 10),
            ("dave".into(), 10, 20),
            ("bob".into(), 20, 30),
            ("dave".into(), 30, 40),
            ("bob".into(), 40, 50),
            ("dave".into(), 50, 55)
        ]
    );
    // A team of one rings on, not in pieces.
    let v = v.with_status("dave", Availability::DoNotDisturb);
    assert_eq!(
        ringing(&plan(&pol, &call("2000"), &v, monday())),
        vec![("bob".into(), 0, 55)]
    );
}

#[test]
fn ring_all_rings_everyone_at_once() {
    let p = plan(&team_with("ring_all"), &call("2000"), &everyone(), monday());
    assert!(ringing(&p).iter().all(|(_, s, e)| (*s, *e) == (0, 40)));
}

#[test]
fn memory_hunt_starts_with_the_last_answerer() {
    let v = everyone().with_last_answerer("support", "carol", 100);
    let p = plan(&team_with("memory_hunt"), &call("2000"), &v, monday());
    assert_eq!(order_of(&p), vec!["carol", "dave", "alice", "bob"]);
}

#[test]
fn round_robin_starts_after_the_last_answerer() {
    let v = everyone().with_last_answerer("support", "carol", 100);
    let p = plan(&team_with("round_robin"), &call("2000"), &v, monday());
    assert_eq!(order_of(&p), vec!["dave", "alice", "bob", "carol"]);
}

#[test]
fn cumulative_adds_one_member_at_a_time() {
    let p = plan(
        &team_with("cumulative"),
        &call("2000"),
        &everyone(),
        monday(),
    );
    assert_eq!(
        ringing(&p),
        vec![
            ("alice".into(), 0, 40),
            ("bob".into(), 10, 40),
            ("carol".into(), 20, 40),
            ("dave".into(), 30, 40)
        ]
    );
}

#[test]
fn first_available_skips_anyone_on_a_call() {
    let text = POLICY.replace(
        "strategy = \"hunt\"",
        "strategy = \"first_available\"\nskip_in_call = false",
    );
    let pol = Policy::from_sources(&[Source {
        name: "p".into(),
        text,
    }])
    .unwrap();
    let p = plan(
        &pol,
        &call("2000"),
        &everyone().with_in_call("alice"),
        monday(),
    );
    assert_eq!(order_of(&p), vec!["bob", "carol", "dave", "bob"]);
}

#[test]
fn least_recent_starts_with_the_longest_idle() {
    let mut v = everyone();
    let m = v.memory.entry("support".into()).or_default();
    m.last_answered.insert("alice".into(), 300);
    m.last_answered.insert("bob".into(), 100);
    m.last_answered.insert("carol".into(), 200);
    let p = plan(&team_with("least_recent"), &call("2000"), &v, monday());
    assert_eq!(order_of(&p), vec!["dave", "bob", "carol", "alice"]);
}

#[test]
fn random_is_reproducible_per_call() {
    let pol = team_with("random");
    let a = plan(&pol, &call("2000"), &everyone(), monday());
    let b = plan(&pol, &call("2000"), &everyone(), monday());
    assert_eq!(order_of(&a), order_of(&b));
    let mut sorted = order_of(&a);
    sorted.sort();
    assert_eq!(sorted, vec!["alice", "bob", "carol", "dave"]);
}

#[test]
fn team_with_nobody_available_goes_to_its_no_answer_destination() {
    let v = View::default();
    let p = run(&call("2000"), &v);
    assert_eq!(destination_of(&p), "support-vm");
}

#[test]
fn unknown_number_is_404() {
    assert_eq!(run(&call("9999"), &everyone()).start, Next::Final(404));
}

#[test]
fn explain_prints_steps_and_reasons() {
    let p = run(
        &call("2000"),
        &everyone().with_status("alice", Availability::DoNotDisturb),
    );
    let text = p.to_string();
    assert!(text.contains("ring (hunt)"), "{text}");
    assert!(text.contains("alice skipped (dnd)"), "{text}");
    assert!(text.contains("send to voicemail support-vm"), "{text}");
}

#[test]
fn an_answered_announcement_goes_on_to_the_next_announcement_and_explain_shows_it() {
    let text = "[users.e]\nextension = \"5\"\nno_answer = \"announcement:closed\"\n\
        [destinations.closed]\nkind = \"announcement\"\nmessage = \"closed\"\nanswer = true\nnext = \"announcement:bye\"\n\
        [destinations.bye]\nkind = \"announcement\"\nmessage = \"goodbye\"\nanswer = true\nnext = \"hangup\"\n";
    let policy = Policy::from_sources(&[Source {
        name: "p.toml".into(),
        text: text.into(),
    }])
    .unwrap();
    let plan = plan(&policy, &call("5"), &View::default(), monday());
    let announcements: Vec<(String, bool)> = plan
        .steps
        .iter()
        .filter_map(|s| match &s.action {
            Action::Announcement { id, answer, .. } => Some((id.clone(), *answer)),
            _ => None,
        })
        .collect();
    assert_eq!(
        announcements,
        vec![("closed".to_string(), true), ("bye".to_string(), true)],
        "{plan}"
    );
    let shown = plan.to_string();
    assert!(
        shown
            .contains("play announcement closed (message closed) to the caller (answered: 200 OK)"),
        "{shown}"
    );
    assert!(shown.contains("hang up (BYE)"), "{shown}");
}
