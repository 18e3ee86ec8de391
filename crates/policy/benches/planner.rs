//! Plan time for a 50-member team per strategy, and load + validate of a 10,000-user
//! policy: `cargo bench -p switchboard-policy --bench planner`.

use chrono::{TimeZone, Utc};
use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use switchboard_policy::model::RingStrategy;
use switchboard_policy::{plan, Call, Caller, Policy, Source, View};

fn team_policy(strategy: &str) -> String {
    let mut t =
        String::from("[destinations.vm]\nkind = \"voicemail\"\nuri = \"sip:vm@127.0.0.1\"\n");
    for i in 0..50 {
        t.push_str(&format!(
            "[users.m{i}]\nextension = \"{}\"\nno_answer = \"voicemail:vm\"\n[users.m{i}.sip]\npassword = \"pw\"\n",
            1000 + i
        ));
    }
    let members: Vec<String> = (0..50).map(|i| format!("\"m{i}\"")).collect();
    t.push_str(&format!(
        "[teams.big]\nextension = \"2000\"\nmembers = [{}]\nstrategy = \"{strategy}\"\nmember_ring_time = 10\nring_time = 600\nno_answer = \"voicemail:vm\"\n",
        members.join(", ")
    ));
    t
}

fn users_policy(n: usize) -> String {
    let mut t = String::with_capacity(n * 120);
    t.push_str("[destinations.vm]\nkind = \"voicemail\"\nuri = \"sip:vm@127.0.0.1\"\n");
    for i in 0..n {
        t.push_str(&format!(
            "[users.u{i}]\nextension = \"{}\"\nno_answer = \"voicemail:vm\"\n[users.u{i}.sip]\npassword = \"pw-{i}\"\n",
            100_000 + i
        ));
    }
    t
}

fn bench(c: &mut Criterion) {
    let now = Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0).unwrap();
    let mut g = c.benchmark_group("plan_team_of_50");
    for strategy in RingStrategy::NAMES {
        let policy = Policy::from_sources(&[Source {
            name: "p".into(),
            text: team_policy(strategy),
        }])
        .unwrap();
        let mut view = View::default();
        for i in 0..50 {
            view = view.with_person(&format!("m{i}"), 2);
        }
        view = view.with_last_answerer("big", "m17", 1_700_000_000);
        let call = Call {
            from: Caller::External("+15550100".into()),
            to: "2000".into(),
            call_id: "bench-call".into(),
        };
        g.bench_function(strategy, |b| {
            b.iter(|| plan(black_box(&policy), &call, &view, now))
        });
    }
    g.finish();

    let text = users_policy(10_000);
    let mut g = c.benchmark_group("load_validate");
    g.sample_size(10);
    g.bench_function("10000_users", |b| {
        b.iter(|| {
            Policy::from_sources(&[Source {
                name: "p".into(),
                text: black_box(text.clone()),
            }])
            .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
