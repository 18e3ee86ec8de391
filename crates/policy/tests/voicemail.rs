//! Mailboxes in the policy: `voicemail` alone is the mailbox of whoever's setting it is,
//! `voicemail:ID` a user's or team's (or the media server's destination ID), each plan step
//! says whose mailbox and why the call came there, and the settings are checked.

use chrono::{DateTime, TimeZone, Utc};
use switchboard_policy::plan::{Action, Next};
use switchboard_policy::{
    plan, Availability, Call, Caller, Diagnostics, MailboxOwner, Policy, RoutePlan, Source, View,
    VoicemailReason,
};

const POLICY: &str = r#"
[users.alice]
extension = "1001"
email = "alice@example.com"
no_answer = "voicemail"
busy = "voicemail"
[users.alice.sip]
password = "a"
[users.alice.voicemail]
pin = "4321"
email = ["alice@example.com", "desk@example.com"]
max_messages = 20

[users.bob]
extension = "1002"
no_answer = "voicemail"
out_of_hours = "voicemail"
[users.bob.sip]
password = "b"
[users.bob.forwarding]
targets = ["user:carol"]
ring_time = 10
no_answer = "voicemail"

[users.carol]
extension = "1003"
no_answer = "voicemail:alice"
[users.carol.sip]
password = "c"
[users.carol.voicemail]
number = "8003"

[users.dave]
extension = "1004"
no_answer = "voicemail"
[users.dave.voicemail]
enabled = false

[teams.sales]
extension = "2000"
members = ["alice", "bob"]
no_answer = "voicemail"
[teams.sales.voicemail]
pin = "0000"

[profiles.meeting]
number = 3
incoming = "send_to:voicemail"

[trunks.carrier]
sources = ["127.0.0.1"]
dids = { "+441632960100" = "voicemail:sales" }
"#;

fn load(text: &str) -> Result<Policy, Diagnostics> {
    Policy::from_sources(&[Source {
        name: "p.toml".into(),
        text: text.into(),
    }])
}

fn policy() -> Policy {
    load(POLICY).unwrap_or_else(|e| panic!("{e}"))
}

fn errors(text: &str) -> Vec<(usize, String, String)> {
    load(text)
        .expect_err("the policy must be refused")
        .0
        .into_iter()
        .map(|d| (d.line, d.key, d.message))
        .collect()
}

fn monday() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0).unwrap()
}

fn run(to: &str, view: &View) -> RoutePlan {
    let call = Call {
        from: Caller::External("+15550100".into()),
        to: to.into(),
        call_id: "c1".into(),
    };
    plan(&policy(), &call, view, monday())
}

/// Every mailbox step of a plan: whose, and why.
fn mailboxes(p: &RoutePlan) -> Vec<(String, VoicemailReason)> {
    p.steps
        .iter()
        .filter_map(|s| match &s.action {
            Action::Voicemail { mailbox, reason } => Some((mailbox.key(), reason.clone())),
            _ => None,
        })
        .collect()
}

fn user(id: &str) -> MailboxOwner {
    MailboxOwner::User(id.into())
}

#[test]
fn settings_have_defaults_from_the_person_and_can_be_set() {
    let p = policy();
    let alice = &p.user("alice").unwrap().voicemail;
    assert!(alice.enabled);
    assert_eq!(alice.number.as_deref(), Some("1001"));
    assert_eq!(alice.pin.as_deref(), Some("4321"));
    assert_eq!(alice.email, ["alice@example.com", "desk@example.com"]);
    assert_eq!(alice.max_messages, Some(20));
    let bob = &p.user("bob").unwrap().voicemail;
    assert_eq!((bob.pin.as_deref(), bob.email.len()), (None, 0));
    assert_eq!(p.mailbox_by_number("8003"), Some(&user("carol")));
    assert_eq!(p.mailbox_by_number("1003"), None);
    assert_eq!(
        p.mailbox_by_number("2000"),
        Some(&MailboxOwner::Team("sales".into()))
    );
    assert_eq!(p.mailbox_by_number("1004"), None, "dave's is off");
    assert!(p.mailbox_problem(&user("dave")).is_some());
    assert!(p.mailbox_problem(&user("nobody")).is_some());
    assert_eq!(
        MailboxOwner::from_key("team:sales"),
        Some(MailboxOwner::Team("sales".into()))
    );
    assert_eq!(MailboxOwner::from_key("sales"), None);
}

#[test]
fn no_answer_reaches_the_callees_own_mailbox() {
    let view = View::default().with_person("alice", 1);
    let p = run("1001", &view);
    // Ringing alice, then her mailbox when she does not answer (or is busy).
    let ring = &p.steps[match p.start {
        Next::Step(i) => i,
        Next::Final(c) => panic!("{c}"),
    }];
    let Next::Step(after) = ring.on_no_answer else {
        panic!("{p}")
    };
    assert_eq!(
        p.steps[after].action,
        Action::Voicemail {
            mailbox: user("alice"),
            reason: VoicemailReason::NoAnswer
        }
    );
    assert_eq!(
        mailboxes(&p),
        [
            ("user:alice".into(), VoicemailReason::NoAnswer),
            ("user:alice".into(), VoicemailReason::Busy)
        ]
    );
    let text = p.to_string();
    assert!(
        text.contains("take a message in the mailbox of user alice (no answer)"),
        "{text}"
    );
}

#[test]
fn busy_unavailable_and_profiles_say_why() {
    let mut view = View::default().with_person("alice", 1);
    view.people.get_mut("alice").unwrap().in_call = true;
    let p = run("1001", &view);
    assert!(mailboxes(&p).contains(&("user:alice".into(), VoicemailReason::Busy)));
    // No registered device: unavailable.
    let p = run("1001", &View::default());
    assert_eq!(
        mailboxes(&p),
        [("user:alice".into(), VoicemailReason::Unavailable)]
    );
    // A profile that sends calls to `voicemail`: the person's own, because of it.
    let mut view = View::default().with_person("alice", 1);
    view.people.get_mut("alice").unwrap().profile = Some("meeting".into());
    let p = run("1001", &view);
    assert_eq!(
        mailboxes(&p),
        [(
            "user:alice".into(),
            VoicemailReason::Profile("meeting".into())
        )]
    );
    // Do not disturb follows out-of-hours routing.
    let mut view = View::default().with_person("bob", 1);
    view.people.get_mut("bob").unwrap().availability = Some(Availability::DoNotDisturb);
    let p = run("1002", &view);
    assert_eq!(
        mailboxes(&p),
        [("user:bob".into(), VoicemailReason::OutOfHours)]
    );
}

#[test]
fn forwarding_keeps_the_forwarders_mailbox_and_voicemail_id_names_another() {
    // bob forwards to carol; nobody answers: bob's own mailbox, not carol's.
    let view = View::default()
        .with_person("bob", 1)
        .with_person("carol", 1);
    let p = run("1002", &view);
    assert_eq!(
        mailboxes(&p),
        [("user:bob".into(), VoicemailReason::NoAnswer)]
    );
    // carol's no_answer names alice's mailbox.
    let p = run("1003", &View::default().with_person("carol", 1));
    assert_eq!(
        mailboxes(&p),
        [("user:alice".into(), VoicemailReason::NoAnswer)]
    );
}

#[test]
fn a_team_has_its_own_mailbox_and_a_did_can_dial_one() {
    let view = View::default()
        .with_person("alice", 1)
        .with_person("bob", 1);
    let p = run("2000", &view);
    assert_eq!(
        mailboxes(&p),
        [("team:sales".into(), VoicemailReason::NoAnswer)]
    );
    let p = run("+441632960100", &view);
    assert_eq!(
        mailboxes(&p),
        [("team:sales".into(), VoicemailReason::Direct)]
    );
}

#[test]
fn a_mailbox_that_is_off_ends_the_call_unanswered() {
    let p = run("1004", &View::default());
    assert_eq!(p.start, Next::Final(480), "{p}");
    assert!(mailboxes(&p).is_empty());
}

#[test]
fn voicemail_alone_needs_an_owner_and_voicemail_id_must_name_one() {
    let e = errors(
        "[users.a]\nextension = \"1\"\n[trunks.c]\nsources = [\"127.0.0.1\"]\n\
         dids = { \"+441632960100\" = \"voicemail\" }\n",
    );
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].0, 5);
    assert!(e[0].1.starts_with("trunks.c.dids"), "{}", e[0].1);
    assert!(e[0].2.contains("voicemail:ID"), "{}", e[0].2);
    let e = errors("[users.a]\nextension = \"1\"\nno_answer = \"voicemail:ghost\"\n");
    assert_eq!(e[0].1, "users.a.no_answer");
    assert!(
        e[0].2.contains("unknown destination \"ghost\""),
        "{}",
        e[0].2
    );
    let e = errors(
        "[users.x]\nextension = \"1\"\n[teams.x]\nextension = \"2\"\nmembers = [\"x\"]\n\
         [users.y]\nextension = \"3\"\nno_answer = \"voicemail:x\"\n",
    );
    assert!(
        e[0].2.contains("could be user x's mailbox or team x's"),
        "{}",
        e[0].2
    );
    let e = errors(
        "[users.x]\nextension = \"1\"\n[users.x.voicemail]\nenabled = false\n\
         [users.y]\nextension = \"3\"\nno_answer = \"voicemail:x\"\n",
    );
    assert!(e[0].2.contains("x's voicemail is turned off"), "{}", e[0].2);
}

#[test]
fn bad_settings_name_their_key() {
    let e = errors(
        "[users.a]\nextension = \"1\"\n[users.a.voicemail]\npin = \"12\"\nnumber = \"x1\"\n\
         email = [\"not mail\"]\nmax_messages = 0\nmax_message_secs = 100000\n",
    );
    let keys: Vec<&str> = e.iter().map(|(_, k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "users.a.voicemail.number",
            "users.a.voicemail.pin",
            "users.a.voicemail.email[0]",
            "users.a.voicemail.max_messages",
            "users.a.voicemail.max_message_secs"
        ],
        "{e:?}"
    );
    // A mailbox number that is someone else's.
    let e = errors(
        "[users.a]\nextension = \"1\"\n[users.b]\nextension = \"2\"\n\
         [users.b.voicemail]\nnumber = \"1\"\n",
    );
    assert_eq!(e[0].1, "users.b.voicemail.number");
    assert!(e[0].2.contains("already user:a's"), "{}", e[0].2);
    // An unknown key in the table.
    let e = errors("[users.a]\nextension = \"1\"\n[users.a.voicemail]\ngreeting = \"x\"\n");
    assert!(e[0].2.contains("unknown field"), "{}", e[0].2);
}
