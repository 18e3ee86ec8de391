//! The daemon's own IVR menu in the policy: read, checked and planned.

use switchboard_policy::plan::{Action, LegTarget, Next};
use switchboard_policy::{
    plan, Call, Caller, Context, DestinationKind, Policy, RoutePlan, Severity, Source, Target, View,
};

const POLICY: &str = r##"
[users.bob]
extension = "1002"
[users.carol]
extension = "1003"
[users.reception]
extension = "1000"
no_answer = "menu:main"
[teams.sales]
extension = "2000"
members = ["carol"]
[destinations.closed]
kind = "announcement"
message = "our_office_is_now_closed"
[destinations.main]
kind = "menu"
prompt = "main_menu"
options = { "1" = "user:bob", "2" = "team:sales", "0" = "number:+493012345", "9" = "announcement:closed", "*" = "menu:more", "#" = "menu:main" }
timeout_secs = 4
retries = 1
default = "user:bob"
[destinations.more]
kind = "menu"
prompt = "more_menu"
options = { "0" = "menu:main" }
"##;

fn load_in(
    text: &str,
    prompts: Option<&[&str]>,
) -> Result<Policy, switchboard_policy::Diagnostics> {
    Policy::from_sources_in(
        &[Source {
            name: "p.toml".into(),
            text: text.into(),
        }],
        &Context {
            prompts: prompts.map(|names| names.iter().map(|n| n.to_string()).collect()),
            ..Default::default()
        },
    )
}

const PROMPTS: &[&str] = &[
    "messages/main_menu",
    "messages/more_menu",
    "phrases/our_office_is_now_closed",
    "phrases/invalid_option",
];

fn plan_to(policy: &Policy, to: &str) -> RoutePlan {
    let call = Call {
        from: Caller::External("+15550100".into()),
        to: to.into(),
        call_id: "m1".into(),
    };
    let view = View::default()
        .with_person("bob", 1)
        .with_person("carol", 1)
        .with_person("reception", 0);
    plan(policy, &call, &view, chrono::Utc::now())
}

#[test]
fn a_menu_is_read_with_its_defaults_and_keys_in_phone_order() {
    let p = load_in(POLICY, Some(PROMPTS)).unwrap();
    let main = p.destination("main").unwrap();
    assert_eq!(main.kind, DestinationKind::Menu);
    assert!(main.uri.is_empty());
    let m = main.menu.as_ref().unwrap();
    assert_eq!(m.prompt, "main_menu");
    let keys: String = m.options.iter().map(|(k, _)| *k).collect();
    assert_eq!(keys, "1290*#");
    assert_eq!(m.options[1].1, Target::Team("sales".into()));
    assert_eq!((m.timeout_secs, m.retries), (4, 1));
    assert_eq!(m.default, Target::User("bob".into()));
    // The phrase "that is not a valid option", as the prompts have it.
    assert_eq!(m.invalid.as_deref(), Some("invalid_option"));
    let more = p.destination("more").unwrap().menu.clone().unwrap();
    assert_eq!((more.timeout_secs, more.retries), (5, 2));
    assert_eq!(more.default, Target::Hangup);
    assert_eq!(p.destination("more").unwrap().code, 480);
    // Without the phrase among the prompts: no invalid-key message.
    let p = load_in(POLICY, Some(&PROMPTS[..3])).unwrap();
    assert_eq!(
        p.destination("main")
            .unwrap()
            .menu
            .as_ref()
            .unwrap()
            .invalid,
        None
    );
    // A menu of a media server stays one.
    let p = load_in(
        "[destinations.ivr]\nkind = \"menu\"\nuri = \"sip:ivr@127.0.0.1\"\n",
        None,
    )
    .unwrap();
    assert!(p.destination("ivr").unwrap().menu.is_none());
}

#[test]
fn a_menu_must_name_prompts_the_daemon_has() {
    let e = load_in(
        &POLICY.replace("retries = 1", "retries = 1\ninvalid = \"huh\""),
        Some(&PROMPTS[1..]),
    )
    .expect_err("no main_menu, no huh");
    let found: Vec<(usize, usize, &str)> = e
        .iter()
        .map(|d| (d.line, d.column, d.key.as_str()))
        .collect();
    assert_eq!(
        found,
        vec![
            (17, 10, "destinations.main.prompt"),
            (21, 11, "destinations.main.invalid")
        ],
        "{e}"
    );
    assert!(
        e.0[0].message.contains("no prompt is named \"main_menu\""),
        "{e}"
    );
}

#[test]
fn a_default_back_to_the_same_menu_is_a_warning() {
    let p = load_in(
        &POLICY.replace("default = \"user:bob\"", "default = \"menu:main\""),
        None,
    )
    .unwrap();
    let w: Vec<_> = p
        .warnings()
        .iter()
        .filter(|w| w.key.starts_with("destinations."))
        .collect();
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(w[0].severity, Severity::Warning);
    assert_eq!(w[0].key, "destinations.main.default");
    assert!(w[0].message.contains("leads back to this menu"), "{w:?}");
}

#[test]
fn a_menu_is_planned_as_a_step_whose_keys_lead_to_planned_targets() {
    let p = load_in(POLICY, Some(PROMPTS)).unwrap();
    let plan = plan_to(&p, "1000");
    let Next::Step(i) = plan.start else {
        panic!("{plan}")
    };
    let Action::Menu { menu } = &plan.steps[i].action else {
        panic!("{plan}")
    };
    assert_eq!(menu.id, "main");
    assert_eq!(menu.invalid.as_deref(), Some("invalid_option"));
    let next = |key| menu.option(key).unwrap().next.clone();
    // Key 1: bob's devices ring.
    let Next::Step(b) = next('1') else {
        panic!("{plan}")
    };
    let Action::Ring { legs, .. } = &plan.steps[b].action else {
        panic!("{plan}")
    };
    assert!(matches!(&legs[0].target, LegTarget::Person { user, .. } if user == "bob"));
    // Key 9: the daemon's own announcement.
    let Next::Step(a) = next('9') else {
        panic!("{plan}")
    };
    assert!(
        matches!(plan.steps[a].action, Action::Announcement { .. }),
        "{plan}"
    );
    // Key #: this menu again; key * another menu whose 0 comes back here.
    assert_eq!(next('#'), Next::Step(i), "{plan}");
    let Next::Step(more) = next('*') else {
        panic!("{plan}")
    };
    let Action::Menu { menu: more_menu } = &plan.steps[more].action else {
        panic!("{plan}")
    };
    assert_eq!(more_menu.option('0').unwrap().next, Next::Step(i), "{plan}");
    // No choice: the default (bob), and for `more` (no default) hang up with 480.
    let Next::Step(d) = plan.steps[i].on_no_answer else {
        panic!("{plan}")
    };
    assert!(plan.steps[d].why.contains("menu main: no choice"), "{plan}");
    assert!(
        matches!(&plan.steps[d].action, Action::Ring { legs, .. } if matches!(&legs[0].target, LegTarget::Person { user, .. } if user == "bob")),
        "{plan}"
    );
    assert_eq!(plan.steps[more].on_no_answer, Next::Final(480));
    assert!(menu.option('5').is_none());

    // What explain shows.
    let text = plan.to_string();
    for line in [
        "menu main (early media): play main_menu, wait 4 s for a key, 1 more time(s)",
        "key 2: team:sales — step",
        "key #: menu:main — step 1",
        "key 9: announcement:closed — step",
        "no choice: step",
    ] {
        assert!(text.contains(line), "{line:?} in\n{text}");
    }
}

#[test]
fn a_key_back_to_whoever_led_to_the_menu_rings_them_again() {
    // Reception's no-answer is the menu; its key 0 rings reception again, whose no-answer
    // is the menu's step again: a finite plan.
    let p = load_in(
        &POLICY.replace(
            "\"#\" = \"menu:main\"",
            "\"#\" = \"menu:main\", \"3\" = \"user:reception\"",
        ),
        Some(PROMPTS),
    )
    .unwrap();
    let call = Call {
        from: Caller::External("+15550100".into()),
        to: "1000".into(),
        call_id: "m2".into(),
    };
    let view = View::default()
        .with_person("bob", 1)
        .with_person("carol", 1)
        .with_person("reception", 1);
    let plan = plan(&p, &call, &view, chrono::Utc::now());
    let Next::Step(ring) = plan.start else {
        panic!("{plan}")
    };
    let Next::Step(m) = plan.steps[ring].on_no_answer else {
        panic!("{plan}")
    };
    let Action::Menu { menu } = &plan.steps[m].action else {
        panic!("{plan}")
    };
    let Next::Step(again) = menu.option('3').unwrap().next else {
        panic!("{plan}")
    };
    assert!(
        matches!(&plan.steps[again].action, Action::Ring { legs, .. } if matches!(&legs[0].target, LegTarget::Person { user, .. } if user == "reception")),
        "{plan}"
    );
    assert_eq!(plan.steps[again].on_no_answer, Next::Step(m), "{plan}");
}
