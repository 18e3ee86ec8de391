//! Message-waiting lamps in the policy: `unsolicited_mwi` on a person's or team's mailbox
//! (NOTIFYs to the owner's devices without a subscription), off unless set.

use switchboard_policy::{Diagnostics, MailboxOwner, Policy, Source};

fn load(text: &str) -> Result<Policy, Diagnostics> {
    Policy::from_sources(&[Source {
        name: "p.toml".into(),
        text: text.into(),
    }])
}

const POLICY: &str = r#"
[users.alice]
extension = "1001"
[users.alice.voicemail]
unsolicited_mwi = true

[users.bob]
extension = "1002"
[users.bob.voicemail]
pin = "1234"

[users.carol]
extension = "1003"

[teams.sales]
extension = "2000"
members = ["alice", "bob"]
[teams.sales.voicemail]
unsolicited_mwi = true
"#;

#[test]
fn unsolicited_mwi_is_off_unless_a_mailbox_asks_for_it() {
    let p = load(POLICY).unwrap_or_else(|e| panic!("{e}"));
    let setting = |o: MailboxOwner| p.mailbox(&o).unwrap().unsolicited_mwi;
    assert!(setting(MailboxOwner::User("alice".into())));
    assert!(
        !setting(MailboxOwner::User("bob".into())),
        "a voicemail table without it"
    );
    assert!(
        !setting(MailboxOwner::User("carol".into())),
        "no voicemail table"
    );
    assert!(setting(MailboxOwner::Team("sales".into())));
}

#[test]
fn unsolicited_mwi_is_a_boolean() {
    let text = POLICY.replace(
        "unsolicited_mwi = true\n\n[users.bob]",
        "unsolicited_mwi = \"yes\"\n\n[users.bob]",
    );
    let e = load(&text).expect_err("a string is refused");
    let d = &e.0[0];
    assert_eq!(d.line, 5, "{e}");
    assert!(d.key.contains("alice"), "{e}");
}
