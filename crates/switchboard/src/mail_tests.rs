//! Who is mailed for which call, and what the mail says.

use super::*;
use switchboard_policy::Source;

/// Four people, one per setting, all in team `sales`; `dora` keeps Stockholm time.
const POLICY: &str = r#"
[users.alice]
extension = "1001"
email = "alice@example.com"
missed_call_email = "all"

[users.bob]
extension = "1002"
email = "bob@example.com"
missed_call_email = "direct"

[users.carol]
extension = "1003"
email = "carol@example.com"
missed_call_email = "teams"

[users.dora]
extension = "1004"
email = "dora@example.com"
schedule = "office"

[schedules.office]
timezone = "Europe/Stockholm"
hours = ["mon-fri 08:00-17:00"]

[teams.sales]
name = "Sales"
extension = "2000"
members = ["alice", "bob", "carol", "dora"]
"#;

fn policy() -> Policy {
    Policy::from_sources(&[Source {
        name: "policy.toml".into(),
        text: POLICY.into(),
    }])
    .unwrap()
}

fn direct(to: &str, outcome: RecordOutcome) -> CallRecord {
    CallRecord {
        call_id: "c1".into(),
        caller: "+15550100 via trunk carrier".into(),
        caller_user: None,
        trunk: Some("carrier".into()),
        dialled: "1001".into(),
        dialled_user: Some(to.into()),
        team: None,
        started: 1_765_000_000,
        answered: None,
        ended: Some(1_765_000_020),
        steps: Vec::new(),
        rang: Vec::new(),
        rang_users: vec![to.into()],
        answered_by: None,
        answered_user: None,
        outcome,
        code: Some(480),
        why: String::new(),
        end_reason: None,
        mailbox: None,
    }
}

fn team(outcome: RecordOutcome) -> CallRecord {
    CallRecord {
        dialled: "2000".into(),
        dialled_user: None,
        team: Some("sales".into()),
        rang_users: vec!["alice".into(), "bob".into(), "carol".into(), "dora".into()],
        ..direct("alice", outcome)
    }
}

fn users(r: &CallRecord) -> Vec<String> {
    recipients(r, &policy())
        .into_iter()
        .map(|r| r.user)
        .collect()
}

#[test]
fn a_missed_direct_call_mails_all_and_direct_only() {
    assert_eq!(users(&direct("alice", RecordOutcome::Missed)), ["alice"]);
    assert_eq!(users(&direct("bob", RecordOutcome::Missed)), ["bob"]);
    assert!(users(&direct("carol", RecordOutcome::Missed)).is_empty());
    assert!(users(&direct("dora", RecordOutcome::Missed)).is_empty());
}

#[test]
fn a_missed_team_call_mails_all_and_teams_among_those_it_rang() {
    assert_eq!(users(&team(RecordOutcome::Missed)), ["alice", "carol"]);
    let mut only_bob_and_carol = team(RecordOutcome::Missed);
    only_bob_and_carol.rang_users = vec!["bob".into(), "carol".into()];
    assert_eq!(users(&only_bob_and_carol), ["carol"]);
}

#[test]
fn a_caller_hanging_up_while_it_rang_counts_as_missed_an_answer_never() {
    assert_eq!(users(&direct("alice", RecordOutcome::Cancelled)), ["alice"]);
    assert_eq!(users(&direct("alice", RecordOutcome::Busy)), ["alice"]);
    assert_eq!(users(&direct("alice", RecordOutcome::Voicemail)), ["alice"]);
    assert!(users(&direct("alice", RecordOutcome::Answered)).is_empty());
    assert!(users(&direct("alice", RecordOutcome::Rejected)).is_empty());
    let mut answered = team(RecordOutcome::Answered);
    answered.answered = Some(1_765_000_005);
    assert!(users(&answered).is_empty());
}

#[test]
fn the_caller_is_never_mailed_about_their_own_call() {
    let mut r = team(RecordOutcome::Missed);
    r.caller_user = Some("alice".into());
    assert_eq!(users(&r), ["carol"]);
}

#[test]
fn the_mail_says_who_when_what_and_how_and_network_text_cannot_add_headers() {
    let p = policy();
    let mut r = team(RecordOutcome::Cancelled);
    r.caller = "Eve\r\nBcc: victim@example.com\u{0}".into();
    let to = recipients(&r, &p).remove(0);
    let (subject, body) = compose(&r, &to, &p);
    assert!(!subject.contains(['\r', '\n', '\0']), "{subject:?}");
    assert_eq!(subject, "Missed call from Eve Bcc: victim@example.com");
    assert!(body.contains("Dialled: 2000 (team Sales)"), "{body}");
    assert!(body.contains("When:    2025-12-06 05:46:40 UTC"), "{body}");
    assert!(body.contains("Outcome: cancelled (the caller hung up while it rang)"));
    assert!(!body.contains('\r') && body.lines().all(|l| !l.starts_with("Bcc")));
}

#[test]
fn the_time_is_on_the_callees_clock_when_known() {
    // dora's schedule keeps Stockholm time; give her mail for this test.
    let text = POLICY.replace(
        "schedule = \"office\"",
        "schedule = \"office\"\nmissed_call_email = \"all\"",
    );
    let p = Policy::from_sources(&[Source {
        name: "policy.toml".into(),
        text,
    }])
    .unwrap();
    let r = direct("dora", RecordOutcome::Missed);
    let to = recipients(&r, &p).remove(0);
    let (_, body) = compose(&r, &to, &p);
    assert!(body.contains("When:    2025-12-06 06:46:40 CET"), "{body}");
}

#[test]
fn clean_removes_control_characters_and_cuts() {
    assert_eq!(clean("a\r\n\tb  c\u{7f}"), "a b c");
    assert_eq!(clean(&"x".repeat(500)).len(), MAX_TEXT);
}

#[test]
fn backoff_doubles_up_to_its_ceiling() {
    let c = MailConfig {
        relay: "127.0.0.1".into(),
        port: 25,
        tls: crate::config::MailTls::None,
        ca: None,
        credentials: None,
        from: "switchboard@example.com".into(),
        queue: 10,
        retry_first: Duration::from_secs(30),
        retry_max: Duration::from_secs(1800),
        give_up: Duration::from_secs(86_400),
    };
    let waits: Vec<u64> = (0..8).map(|f| backoff(&c, f).as_secs()).collect();
    assert_eq!(waits, [30, 60, 120, 240, 480, 960, 1800, 1800]);
    assert_eq!(backoff(&c, u32::MAX).as_secs(), 1800);
}

/// A CA certificate made for these tests (openssl, P-256, valid to 2126).
const TEST_CA: &str = "-----BEGIN CERTIFICATE-----\n\
MIIBozCCAUmgAwIBAgIUF+Z0j8CZBAKcMOz+r9lY97yC2P8wCgYIKoZIzj0EAwIw\n\
HjEcMBoGA1UEAwwTU3dpdGNoYm9hcmQgdGVzdCBDQTAgFw0yNjEyMDcxMDMwNDha\n\
GA8yMTI2MTExMzEwMzA0OFowHjEcMBoGA1UEAwwTU3dpdGNoYm9hcmQgdGVzdCBD\n\
QTBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABDBU7qyshJT4GoCQQ77d6FHolroO\n\
GYJGP4Ad5oOo4pIBrWqa2niFZks2v/u+aj1+oWgKxHa6VdlTrNQ46k8dQ/+jYzBh\n\
MB0GA1UdDgQWBBS8lcdf/BFQd+yhHHacKPTBnX3ULjAfBgNVHSMEGDAWgBS8lcdf\n\
/BFQd+yhHHacKPTBnX3ULjAPBgNVHRMBAf8EBTADAQH/MA4GA1UdDwEB/wQEAwIC\n\
BDAKBggqhkjOPQQDAgNIADBFAiEA3hKzBtTkArkOZf2gizhpQAa55xGzJ5cgdoNe\n\
yypMQYcCIErFlIegVNzr7utR/UZjB8DDT9t6hDoWcACbwcy52df5\n\
-----END CERTIFICATE-----\n\
";

#[test]
fn a_ca_file_needs_usable_certificates() {
    assert_eq!(check_ca(TEST_CA.as_bytes()), Ok(1));
    let two = format!("{TEST_CA}{TEST_CA}");
    assert_eq!(check_ca(two.as_bytes()), Ok(2));
    for (text, says) in [
        ("", "no certificate"),
        ("not a certificate at all\n", "no certificate"),
        (
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            "not usable as a CA",
        ),
        (
            "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
            "not a PEM",
        ),
    ] {
        let e = check_ca(text.as_bytes()).unwrap_err();
        assert!(e.contains(says), "{text:?}: {e}");
    }
    let many = TEST_CA.repeat(MAX_CA_CERTS + 1);
    assert!(check_ca(many.as_bytes()).unwrap_err().contains("more than"));
}

#[test]
fn plain_smtp_to_this_machine_only_is_quiet() {
    for relay in ["localhost", "127.0.0.1", "::1", "[::1]"] {
        assert!(is_loopback(relay), "{relay}");
    }
    for relay in ["smtp.example.com", "192.0.2.25", "2001:db8::25"] {
        assert!(!is_loopback(relay), "{relay}");
    }
}

/// A message left for `mailbox` at 2025-12-06 06:26:40 UTC.
fn message(mailbox: &str) -> MailNotice {
    MailNotice {
        to: vec!["x@example.com".into()],
        message: MessageRow {
            id: "00000000001765002400-1".into(),
            mailbox: mailbox.into(),
            received: 1_765_002_400,
            duration_ms: 42_300,
            caller: "+15550100".into(),
            caller_name: Some("Pat\r\nBcc: evil@example.com".into()),
            called: "1004".into(),
            original: None,
            reason: "no_answer".into(),
            profile: None,
            call_id: "c9".into(),
            heard: false,
        },
    }
}

#[test]
fn a_voicemail_mail_says_who_called_whom_when_on_the_owners_clock_and_how_long() {
    let p = policy();
    let (subject, body, file) = compose_voicemail(&message("user:dora"), &p);
    // Header injection is cut: CR and LF become spaces.
    assert_eq!(
        subject,
        "Voicemail from Pat Bcc: evil@example.com (+15550100) (0:43)"
    );
    assert!(
        body.starts_with("A new voicemail message for dora.\n"),
        "{body}"
    );
    assert!(body.contains("\nDialled: 1004\n"), "{body}");
    // Stockholm: UTC+1 in December.
    assert!(
        body.contains("\nWhen:    2025-12-06 07:26:40 CET\n"),
        "{body}"
    );
    assert!(body.contains("\nLength:  0:43\n"), "{body}");
    assert!(body.contains("\nWhy:     nobody answered\n"), "{body}");
    assert!(!body.contains("For:"), "{body}");
    assert_eq!(file, "voicemail-20251206-072640.wav");
    assert!(body.contains(&file), "{body}");

    // A team's mailbox, first for a person, in UTC; a caller with no name or number.
    let mut n = message("team:sales");
    n.message.original = Some("user:alice".into());
    n.message.caller = String::new();
    n.message.caller_name = None;
    n.message.reason = "profile".into();
    n.message.profile = Some("lunch".into());
    let (subject, body, file) = compose_voicemail(&n, &p);
    assert_eq!(subject, "Voicemail from an unknown caller (0:43)");
    assert!(
        body.starts_with("A new voicemail message for team Sales.\n"),
        "{body}"
    );
    assert!(body.contains("\nFor:     alice at first\n"), "{body}");
    assert!(
        body.contains("\nWhen:    2025-12-06 06:26:40 UTC\n"),
        "{body}"
    );
    assert!(body.contains("\nWhy:     profile lunch\n"), "{body}");
    assert_eq!(file, "voicemail-20251206-062640.wav");
    assert_eq!(minutes(0), "0:00");
    assert_eq!(minutes(61_001), "1:02");
    assert_eq!(minutes(600_000), "10:00");
}
