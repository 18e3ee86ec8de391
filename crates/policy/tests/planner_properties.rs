//! Properties of the planner over random policies and views: it terminates, plans are
//! bounded, a Busy/DND member is never rung on a team call, and every path of every plan
//! ends in a final outcome.

use chrono::{TimeZone, Utc};
use proptest::prelude::*;
use switchboard_policy::plan::{Action, LegTarget, Next, MAX_LEGS, MAX_STEPS};
use switchboard_policy::{plan, Availability, Call, Caller, Policy, RoutePlan, Source, View};

const STRATEGIES: [&str; 8] = [
    "ring_all",
    "hunt",
    "memory_hunt",
    "round_robin",
    "cumulative",
    "first_available",
    "random",
    "least_recent",
];

#[derive(Debug, Clone)]
struct Spec {
    users: Vec<(u8, bool, u8, bool)>, // (no_answer choice, call_waiting, busy choice, forwarding)
    teams: Vec<(Vec<u8>, u8, u8)>,    // (members, strategy, no_answer choice)
    statuses: Vec<(u8, u8, bool, u8)>, // per user: (status, devices, in_call, profile)
    to: u8,
}

fn target(choice: u8, n_users: usize, n_teams: usize) -> String {
    match choice % 5 {
        0 => "hangup".into(),
        1 => "voicemail:vm".into(),
        2 => format!("user:u{}", choice as usize % n_users),
        3 if n_teams > 0 => format!("team:t{}", choice as usize % n_teams),
        _ => "number:+441632960999".into(),
    }
}

fn policy_text(s: &Spec) -> String {
    let (nu, nt) = (s.users.len(), s.teams.len());
    let mut t =
        String::from("[destinations.vm]\nkind = \"voicemail\"\nuri = \"sip:vm@127.0.0.1\"\n");
    t.push_str("[trunks.c]\nsources = [\"127.0.0.1\"]\noutbound = [\"+44*\"]\n");
    for (i, (na, cw, busy, fwd)) in s.users.iter().enumerate() {
        t.push_str(&format!(
            "[users.u{i}]\nextension = \"{}\"\nno_answer = \"{}\"\ncall_waiting = {cw}\nbusy = \"{}\"\n",
            100 + i,
            target(*na, nu, nt),
            if busy % 2 == 0 { "engaged".into() } else { target(*busy, nu, nt) }
        ));
        if *fwd {
            t.push_str(&format!(
                "[users.u{i}.forwarding]\ntargets = [\"number:+441632960001\", \"user:u{}\"]\nring_own_first = 5\nstrategy = \"{}\"\n",
                (i + 1) % nu,
                STRATEGIES[i % 8]
            ));
        }
    }
    for (i, (members, strategy, na)) in s.teams.iter().enumerate() {
        let mut ms: Vec<String> = members
            .iter()
            .map(|m| format!("\"u{}\"", *m as usize % nu))
            .collect();
        ms.sort();
        ms.dedup();
        t.push_str(&format!(
            "[teams.t{i}]\nextension = \"{}\"\nmembers = [{}]\nstrategy = \"{}\"\nno_answer = \"{}\"\n",
            900 + i,
            ms.join(", "),
            STRATEGIES[*strategy as usize % 8],
            target(*na, nu, nt)
        ));
    }
    t
}

fn view(s: &Spec) -> View {
    let mut v = View::default();
    for (i, (status, devices, in_call, profile)) in
        s.statuses.iter().enumerate().take(s.users.len())
    {
        let id = format!("u{i}");
        v = v.with_person(&id, *devices as usize % 3);
        v = v.with_status(&id, Availability::ALL[*status as usize % 8]);
        if *in_call {
            v = v.with_in_call(&id);
        }
        let profiles = ["available", "lunch", "meeting", "holiday", "training"];
        if *profile % 3 == 0 {
            v = v.with_profile(&id, profiles[*profile as usize % 5]);
        }
        if i % 2 == 0 {
            v = v.with_last_answerer("t0", &id, i as i64);
        }
    }
    v
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        prop::collection::vec(
            (any::<u8>(), any::<bool>(), any::<u8>(), any::<bool>()),
            2..7,
        ),
        prop::collection::vec(
            (
                prop::collection::vec(any::<u8>(), 1..6),
                any::<u8>(),
                any::<u8>(),
            ),
            0..3,
        ),
        prop::collection::vec((any::<u8>(), any::<u8>(), any::<bool>(), any::<u8>()), 7),
        any::<u8>(),
    )
        .prop_map(|(users, teams, statuses, to)| Spec {
            users,
            teams,
            statuses,
            to,
        })
}

/// Every path from `start` reaches a final outcome without revisiting a step.
fn all_paths_end(p: &RoutePlan) -> bool {
    fn walk(p: &RoutePlan, n: &Next, seen: &mut Vec<usize>) -> bool {
        match n {
            Next::Final(_) => true,
            Next::Step(i) => {
                if *i >= p.steps.len() || seen.contains(i) {
                    return false;
                }
                seen.push(*i);
                let s = &p.steps[*i];
                let ok = [&s.on_no_answer, &s.on_busy, &s.on_unavailable]
                    .iter()
                    .all(|n| walk(p, n, seen));
                seen.pop();
                ok
            }
        }
    }
    walk(p, &p.start, &mut Vec::new())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn plans_are_bounded_final_and_skip_red_members(s in spec()) {
        let text = policy_text(&s);
        let policy = match Policy::from_sources(&[Source { name: "p".into(), text }]) {
            Ok(p) => p,
            // Generated loops are refused by validation, as they must be.
            Err(e) => { prop_assume!(e.iter().all(|d| d.message.starts_with("routing loop"))); return Ok(()); }
        };
        let v = view(&s);
        let n_targets = s.users.len() + s.teams.len();
        let to_idx = s.to as usize % n_targets;
        let to = if to_idx < s.users.len() { format!("{}", 100 + to_idx) } else { format!("{}", 900 + to_idx - s.users.len()) };
        for from in [Caller::External("+15550100".into()), Caller::User("u0".into())] {
            let c = Call { from, to: to.clone(), call_id: format!("call-{}", s.to) };
            let p = plan(&policy, &c, &v, Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0).unwrap());
            prop_assert!(p.steps.len() <= MAX_STEPS);
            prop_assert!(all_paths_end(&p), "a path does not end:\n{}", p);
            for step in &p.steps {
                if let Action::Ring { legs, .. } = &step.action {
                    prop_assert!(legs.len() <= MAX_LEGS);
                    for l in legs {
                        prop_assert!(l.start <= l.stop || l.stop == 0);
                        if let (true, LegTarget::Person { user, .. }) = (l.team_call, &l.target) {
                            let a = v.person(user).availability;
                            prop_assert!(
                                !matches!(a, Some(Availability::Busy | Availability::DoNotDisturb)),
                                "{} is {:?} but rings on a team call:\n{}", user, a, p
                            );
                        }
                    }
                }
            }
        }
    }
}
