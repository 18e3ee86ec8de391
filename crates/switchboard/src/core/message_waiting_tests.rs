//! Message-waiting lamps: who may watch which mailbox, what its subscription shows at once
//! and on every change (deposit, heard, deleted), after a restart and a reload, and the
//! NOTIFYs sent to registered devices without a subscription.

use super::*;

fn rules() -> Policy {
    Policy::from_sources(&[switchboard_policy::Source {
        name: "p.toml".into(),
        text: r#"
[users.alice]
extension = "1001"
[users.alice.sip]
username = "alice-desk"
password = "pw"
[users.alice.voicemail]
number = "8001"
unsolicited_mwi = true

[users.bob]
extension = "1002"

[users.dave]
extension = "1004"
[users.dave.voicemail]
enabled = false

[teams.sales]
extension = "2000"
members = ["alice", "bob"]
[teams.sales.voicemail]
unsolicited_mwi = true

[teams.night]
extension = "2001"
members = ["bob"]
[teams.night.voicemail]
number = "8100"
"#
        .into(),
    }])
    .unwrap()
}

fn user(u: &str) -> MailboxOwner {
    MailboxOwner::User(u.into())
}

fn team(t: &str) -> MailboxOwner {
    MailboxOwner::Team(t.into())
}

#[test]
fn people_watch_their_own_mailbox_and_their_teams() {
    let p = rules();
    let named = |person: Option<&str>, n: &str, who: &str| {
        mailbox_named(&p, person.map(str::to_string), n, who)
    };
    // By the person the URI names (the directory's lookup) or by the mailbox number.
    assert_eq!(
        named(Some("alice"), "alice-desk", "alice"),
        Ok(user("alice"))
    );
    assert_eq!(named(None, "8001", "alice"), Ok(user("alice")));
    // A team's by its extension or its mailbox number, for members only.
    assert_eq!(named(None, "2000", "bob"), Ok(team("sales")));
    assert_eq!(named(None, "8100", "bob"), Ok(team("night")));
    assert_eq!(
        named(None, "8100", "alice"),
        Err(Refusal::NotYours("not your mailbox"))
    );
    // Someone else's: 403; nobody's or turned off: 404.
    let r = named(Some("alice"), "1001", "bob").unwrap_err();
    assert_eq!((r.code(), r.reason()), (403, "rejected"));
    let r = named(None, "7777", "bob").unwrap_err();
    assert_eq!((r.code(), r.reason()), (404, "noresource"));
    let r = named(Some("dave"), "1004", "dave").unwrap_err();
    assert_eq!(r, Refusal::Gone("this mailbox is turned off"));
    // Someone else asking for a mailbox that is off is told it is not theirs.
    assert_eq!(named(Some("dave"), "1004", "bob").unwrap_err().code(), 403);
}

#[test]
fn accounts_name_the_mailbox_number() {
    let p = rules();
    assert_eq!(account_uri(&p, &user("alice"), "r"), "sip:8001@r");
    assert_eq!(account_uri(&p, &user("bob"), "r"), "sip:1002@r");
    assert_eq!(account_uri(&p, &team("sales"), "r"), "sip:2000@r");
    assert_eq!(account_uri(&p, &team("gone"), "r"), "sip:gone@r");
}

#[test]
fn unsolicited_mailboxes_are_the_owners_then_the_teams() {
    let p = rules();
    assert_eq!(
        unsolicited_mailboxes(&p, "alice"),
        vec![user("alice"), team("sales")]
    );
    assert_eq!(unsolicited_mailboxes(&p, "bob"), vec![team("sales")]);
    assert!(unsolicited_mailboxes(&p, "dave").is_empty());
    assert_eq!(unsolicited_people(&p, &team("sales")), ["alice", "bob"]);
    assert!(unsolicited_people(&p, &team("night")).is_empty());
    assert!(unsolicited_people(&p, &user("bob")).is_empty());
}

// ---- through the whole core, with a virtual clock --------------------------------------

use crate::core::mailboxes::MessageRow;
use crate::core::Input;
use crate::test_harness::{self as h, addr, answer, header, to, T};
use std::net::SocketAddr;
use switchboard_sip::events::parse_message_summary;
use switchboard_store::tables::{SUBSCRIPTIONS, VOICEMAIL};

const ALICE: &str = "127.0.0.1:5071";
const BOB: &str = "127.0.0.1:5072";
const CAROL: &str = "127.0.0.1:5074";
const DAVE: &str = "127.0.0.1:5075";

const MAILBOXES: &str = r#"
[users.alice]
extension = "1001"
[users.alice.sip]
password = "pw"
[users.alice.voicemail]
number = "8001"

[users.bob]
extension = "1002"
[users.bob.sip]
password = "pw"

[users.carol]
extension = "1003"
[users.carol.sip]
password = "pw"

[users.dave]
extension = "1004"
[users.dave.sip]
password = "pw"
[users.dave.voicemail]
enabled = false

[teams.sales]
extension = "2000"
members = ["alice", "bob"]
"#;

/// [`MAILBOXES`] with alice's mailbox (and with `team`, the team's) sent without
/// subscribing.
fn unsolicited(team: bool) -> String {
    let mut p = MAILBOXES.replace(
        "number = \"8001\"\n",
        "number = \"8001\"\nunsolicited_mwi = true\n",
    );
    if team {
        p.push_str("[teams.sales.voicemail]\nunsolicited_mwi = true\n");
    }
    p
}

/// An initial SUBSCRIBE to `message-summary` from `who` at `at` for `target` (a Request-URI
/// user).
fn subscribe(who: &str, at: &str, target: &str, call: &str) -> String {
    format!(
        "SUBSCRIBE sip:{target}@switchboard.local SIP/2.0\r\nVia: SIP/2.0/UDP {at};branch=z9hG4bK-{call};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:{who}@switchboard.local>;tag=w-{call}\r\nTo: <sip:{target}@switchboard.local>\r\n\
         Call-ID: {call}\r\nCSeq: 1 SUBSCRIBE\r\nContact: <sip:{who}@{at}>\r\nEvent: message-summary\r\n\
         Accept: application/simple-message-summary\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n"
    )
}

/// `who` at `at` subscribes to `target`'s mailbox: the 200 and the first NOTIFY (answered
/// 200).
fn subscribed(t: &mut T, who: &str, at: &str, target: &str, call: &str) -> (String, String) {
    t.input(at, &subscribe(who, at, target, call));
    let msgs = to(&t.take(), at);
    assert!(msgs[0].starts_with("SIP/2.0 200"), "{msgs:?}");
    let notify = msgs
        .iter()
        .find(|m| m.starts_with("NOTIFY "))
        .unwrap_or_else(|| panic!("a NOTIFY at once: {msgs:?}"))
        .clone();
    t.input(at, &answer(&notify, 200, "", at));
    (msgs[0].clone(), notify)
}

/// The NOTIFYs sent to `at` among `out`.
fn notifies(out: &[(SocketAddr, String)], at: &str) -> Vec<String> {
    to(out, at)
        .into_iter()
        .filter(|m| m.starts_with("NOTIFY "))
        .collect()
}

/// The counts a NOTIFY's body shows (new, old), read as a phone would.
fn counts(notify: &str) -> (u32, u32) {
    let body = notify.split_once("\r\n\r\n").expect("a body").1;
    let doc = parse_message_summary(body.as_bytes()).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(doc.waiting(), doc.new > 0, "{body}");
    (doc.new, doc.old)
}

/// The Message-Account a NOTIFY's body names.
fn account(notify: &str) -> Option<String> {
    let body = notify.split_once("\r\n\r\n").expect("a body").1;
    parse_message_summary(body.as_bytes()).unwrap().account
}

/// Leaves a message in `mailbox` (as the deposit does); returns its row and the writes.
fn deposit(t: &mut T, mailbox: &str) -> (MessageRow, Vec<switchboard_store::Write>) {
    let at = 1_800_000_000;
    let id = t.core.mailboxes.new_id(at);
    let row = MessageRow {
        id,
        mailbox: mailbox.into(),
        received: at,
        duration_ms: 3000,
        caller: "+441632960001".into(),
        caller_name: None,
        called: "1001".into(),
        original: None,
        reason: "no_answer".into(),
        profile: None,
        call_id: format!("vm-{at}"),
        heard: false,
    };
    let writes = t
        .core
        .mailboxes
        .deposit(row.clone(), vec![0; 8], 100, &[])
        .unwrap();
    (row, writes)
}

/// An input after a change made on the core's mailboxes directly (the deposit, the API
/// and the phone menu make theirs while handling one).
fn settle(t: &mut T) -> Vec<(SocketAddr, String)> {
    t.tick();
    t.take()
}

/// `user`'s device at `at` registers (`call`: its Call-ID; a new one is a restarted
/// phone): what the core sent, the 200 first.
fn register(t: &mut T, user: &str, at: &str, call: &str, cseq: u32) -> Vec<(SocketAddr, String)> {
    let text = format!(
        "REGISTER sip:switchboard.local SIP/2.0\r\nVia: SIP/2.0/UDP {at};branch=z9hG4bK-{call}-{cseq}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:{user}@switchboard.local>;tag=r\r\nTo: <sip:{user}@switchboard.local>\r\n\
         Call-ID: {call}\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:{user}@{at}>\r\nExpires: 3600\r\n\
         Content-Length: 0\r\n\r\n"
    );
    t.input(at, &text);
    let out = t.take();
    assert!(to(&out, at)[0].starts_with("SIP/2.0 200"), "{out:?}");
    out
}

#[test]
fn a_person_subscribes_to_their_mailbox_and_sees_its_counts() {
    let mut t = T::with_policy(false, MAILBOXES);
    let (first, _) = deposit(&mut t, "user:alice");
    deposit(&mut t, "user:alice");
    deposit(&mut t, "user:alice");
    t.core
        .mailboxes
        .set_heard("user:alice", &first.id, true)
        .unwrap();
    deposit(&mut t, "user:bob");
    settle(&mut t);
    // By her id, her extension, her mailbox number: the same mailbox.
    for (target, call) in [("alice", "m1"), ("1001", "m2"), ("8001", "m3")] {
        let (ok, notify) = subscribed(&mut t, "alice", ALICE, target, call);
        assert!(ok.contains("Expires: 600"), "{ok}");
        assert!(
            notify.starts_with("NOTIFY sip:alice@127.0.0.1:5071 SIP/2.0"),
            "{notify}"
        );
        assert_eq!(header(&notify, "Event"), Some("message-summary"));
        assert_eq!(
            header(&notify, "Content-Type"),
            Some("application/simple-message-summary")
        );
        assert!(header(&notify, "Subscription-State")
            .unwrap()
            .starts_with("active;expires="));
        assert_eq!(counts(&notify), (2, 1), "{notify}");
        assert!(
            notify.contains("\r\n\r\nMessages-Waiting: yes\r\n"),
            "{notify}"
        );
        assert_eq!(
            account(&notify).as_deref(),
            Some("sip:8001@switchboard.local")
        );
    }
    let (_, empty) = subscribed(&mut t, "bob", BOB, "bob", "b1");
    assert_eq!(counts(&empty), (1, 0));
    assert_eq!(
        account(&empty).as_deref(),
        Some("sip:1002@switchboard.local"),
        "a mailbox's number is its owner's extension unless set"
    );
    let m = t.core.metrics();
    assert_eq!(m.notifies_sent[Package::MessageSummary.index()], 4);
    assert_eq!(m.notifies_sent[Package::Dialog.index()], 0);
    assert_eq!(m.subscriptions, 4);
}

#[test]
fn a_change_to_the_mailbox_is_notified_with_the_new_counts() {
    let mut t = T::with_policy(false, MAILBOXES);
    let (_, first) = subscribed(&mut t, "alice", ALICE, "alice", "c1");
    assert_eq!(counts(&first), (0, 0));
    assert!(first.contains("Messages-Waiting: no\r\n"), "{first}");
    // A message arrives.
    let (row, _) = deposit(&mut t, "user:alice");
    let n = notifies(&settle(&mut t), ALICE);
    assert_eq!(n.len(), 1, "{n:?}");
    assert_eq!(counts(&n[0]), (1, 0));
    assert_eq!(header(&n[0], "CSeq"), Some("2 NOTIFY"));
    t.input(ALICE, &answer(&n[0], 200, "", ALICE));
    // Heard.
    t.core
        .mailboxes
        .set_heard("user:alice", &row.id, true)
        .unwrap();
    let n = notifies(&settle(&mut t), ALICE);
    assert_eq!(counts(&n[0]), (0, 1));
    assert!(n[0].contains("Messages-Waiting: no\r\n"), "{}", n[0]);
    t.input(ALICE, &answer(&n[0], 200, "", ALICE));
    // Heard again (no change), and someone else's mailbox: nothing to tell.
    t.core
        .mailboxes
        .set_heard("user:alice", &row.id, true)
        .unwrap();
    deposit(&mut t, "user:bob");
    assert!(notifies(&settle(&mut t), ALICE).is_empty());
    // Deleted.
    t.core.mailboxes.delete("user:alice", &row.id).unwrap();
    let n = notifies(&settle(&mut t), ALICE);
    assert_eq!(counts(&n[0]), (0, 0));
    t.input(ALICE, &answer(&n[0], 200, "", ALICE));
    // A change whose counts end where they were (left and deleted within one input)
    // sends nothing.
    let (row, _) = deposit(&mut t, "user:alice");
    t.core.mailboxes.delete("user:alice", &row.id).unwrap();
    assert!(notifies(&settle(&mut t), ALICE).is_empty());
}

#[test]
fn strangers_unknown_and_turned_off_mailboxes_are_refused() {
    let mut t = T::with_policy(false, MAILBOXES);
    let refused = |t: &mut T, who: &str, at: &str, target: &str, call: &str| {
        t.input(at, &subscribe(who, at, target, call));
        let msgs = to(&t.take(), at);
        assert_eq!(msgs.len(), 1, "no NOTIFY: {msgs:?}");
        msgs[0].clone()
    };
    // Someone else's mailbox, by any of its names.
    for (target, call) in [("alice", "s1"), ("1001", "s2"), ("8001", "s3")] {
        let r = refused(&mut t, "bob", BOB, target, call);
        assert!(r.starts_with("SIP/2.0 403"), "{r}");
        assert!(r.contains("not your mailbox"), "{r}");
    }
    // A team that is not theirs.
    let r = refused(&mut t, "carol", CAROL, "2000", "s4");
    assert!(r.starts_with("SIP/2.0 403"), "{r}");
    // Nobody's; another domain's.
    let r = refused(&mut t, "bob", BOB, "7777", "s5");
    assert!(r.starts_with("SIP/2.0 404"), "{r}");
    let other = subscribe("bob", BOB, "bob", "s6").replace(
        "SUBSCRIBE sip:bob@switchboard.local",
        "SUBSCRIBE sip:bob@elsewhere.example",
    );
    t.input(BOB, &other);
    assert!(to(&t.take(), BOB)[0].starts_with("SIP/2.0 404"));
    // Their own, turned off.
    let r = refused(&mut t, "dave", DAVE, "dave", "s7");
    assert!(r.starts_with("SIP/2.0 404"), "{r}");
    assert!(r.contains("turned off"), "{r}");
    // A phone that takes only BLF documents.
    let picky = subscribe("alice", ALICE, "alice", "s8").replace(
        "Accept: application/simple-message-summary",
        "Accept: application/dialog-info+xml",
    );
    t.input(ALICE, &picky);
    let r = &to(&t.take(), ALICE)[0];
    assert!(r.starts_with("SIP/2.0 406"), "{r}");
    assert!(
        r.contains("Accept: application/simple-message-summary"),
        "{r}"
    );
    assert_eq!(t.core.metrics().subscriptions, 0);
    // Without credentials: challenged, as for the other packages.
    let mut t = T::with_policy(true, MAILBOXES);
    t.input(ALICE, &subscribe("alice", ALICE, "alice", "s9"));
    let r = &to(&t.take(), ALICE)[0];
    assert!(r.starts_with("SIP/2.0 401"), "{r}");
}

#[test]
fn a_team_member_sees_the_teams_counts() {
    let mut t = T::with_policy(false, MAILBOXES);
    deposit(&mut t, "team:sales");
    deposit(&mut t, "user:bob");
    settle(&mut t);
    let (_, first) = subscribed(&mut t, "bob", BOB, "2000", "t1");
    assert_eq!(counts(&first), (1, 0));
    assert_eq!(
        account(&first).as_deref(),
        Some("sip:2000@switchboard.local")
    );
    let (_, own) = subscribed(&mut t, "bob", BOB, "1002", "t2");
    assert_eq!(counts(&own), (1, 0));
    deposit(&mut t, "team:sales");
    let n = notifies(&settle(&mut t), BOB);
    assert_eq!(n.len(), 1, "only the team's subscription: {n:?}");
    assert_eq!(counts(&n[0]), (2, 0));
    assert_eq!(header(&n[0], "Call-ID"), Some("t1"));
}

#[test]
fn a_restart_tells_restored_subscriptions_the_restored_counts() {
    let mut t = T::with_policy(false, MAILBOXES);
    let mut rows = Vec::new();
    for mailbox in ["user:alice", "user:alice", "user:dave", "team:sales"] {
        let (_, writes) = deposit(&mut t, mailbox);
        rows.extend(
            writes
                .into_iter()
                .filter(|w| w.table == VOICEMAIL)
                .map(|w| (w.key, w.value.unwrap())),
        );
    }
    settle(&mut t);
    subscribed(&mut t, "alice", ALICE, "alice", "r1");
    subscribed(&mut t, "bob", BOB, "2000", "r2");
    let kept: Vec<(String, Vec<u8>)> = t
        .persisted
        .iter()
        .filter(|w| w.table == SUBSCRIPTIONS)
        .filter_map(|w| Some((w.key.clone(), w.value.clone()?)))
        .collect();
    assert_eq!(kept.len(), 2);
    // The next start: bob has left the team meanwhile.
    let after = MAILBOXES.replace(r#"members = ["alice", "bob"]"#, r#"members = ["alice"]"#);
    let mut t = T::with_policy(false, &after);
    let now = t.now();
    assert_eq!(t.core.restore_voicemail(rows), 4);
    assert_eq!(t.core.restore_subscriptions(kept, now), 1);
    t.pump();
    let out = t.take();
    let n = notifies(&out, ALICE);
    assert_eq!(n.len(), 1, "{out:?}");
    assert_eq!(counts(&n[0]), (2, 0));
    assert_eq!(header(&n[0], "Call-ID"), Some("r1"));
    let n = notifies(&out, BOB);
    assert_eq!(n.len(), 1, "{out:?}");
    assert_eq!(
        header(&n[0], "Subscription-State"),
        Some("terminated;reason=rejected")
    );
    assert_eq!(t.core.metrics().subscriptions, 1);
    assert!(t
        .persisted
        .iter()
        .any(|w| w.table == SUBSCRIPTIONS && w.value.is_none()));
}

#[test]
fn a_reload_ends_what_it_no_longer_allows_and_shows_a_new_number() {
    let mut t = T::with_policy(false, MAILBOXES);
    subscribed(&mut t, "alice", ALICE, "alice", "p1");
    subscribed(&mut t, "bob", BOB, "bob", "p2");
    // Nothing the subscriptions show changed: nothing sent.
    t.feed(Input::PolicyChanged(h::snapshot(MAILBOXES)));
    t.pump();
    assert!(t.take().is_empty());
    // alice's mailbox gets another number, bob's is turned off.
    let reloaded = MAILBOXES
        .replace("number = \"8001\"", "number = \"8011\"")
        .replace(
            "[users.bob.sip]\npassword = \"pw\"\n",
            "[users.bob.sip]\npassword = \"pw\"\n[users.bob.voicemail]\nenabled = false\n",
        );
    t.feed(Input::PolicyChanged(h::snapshot(&reloaded)));
    t.pump();
    let out = t.take();
    let n = notifies(&out, ALICE);
    assert_eq!(
        account(&n[0]).as_deref(),
        Some("sip:8011@switchboard.local"),
        "{out:?}"
    );
    let n = notifies(&out, BOB);
    assert_eq!(
        header(&n[0], "Subscription-State"),
        Some("terminated;reason=noresource")
    );
    assert_eq!(t.core.metrics().subscriptions, 1);
    // The same inputs, the same outputs, byte for byte.
    assert_eq!(t.replay(), t.outputs);
}

#[test]
fn an_unsolicited_notify_reaches_a_device_as_it_registers_and_on_each_change() {
    let mut t = T::with_policy(false, &unsolicited(false));
    deposit(&mut t, "user:alice");
    settle(&mut t);
    // The first registration: the counts at once, outside any dialog.
    let out = register(&mut t, "alice", ALICE, "reg-a", 1);
    let n = notifies(&out, ALICE);
    assert_eq!(n.len(), 1, "{out:?}");
    assert!(
        n[0].starts_with("NOTIFY sip:alice@127.0.0.1:5071 SIP/2.0\r\n"),
        "{}",
        n[0]
    );
    assert_eq!(header(&n[0], "To"), Some("<sip:alice@switchboard.local>"));
    assert!(header(&n[0], "From")
        .unwrap()
        .starts_with("<sip:8001@switchboard.local>;tag="));
    assert_eq!(header(&n[0], "CSeq"), Some("1 NOTIFY"));
    assert_eq!(header(&n[0], "Event"), Some("message-summary"));
    assert_eq!(header(&n[0], "Subscription-State"), Some("active"));
    assert_eq!(counts(&n[0]), (1, 0));
    t.input(ALICE, &answer(&n[0], 200, "p", ALICE));
    // A refresh (same Call-ID) is no new registration; bob has none of this.
    assert!(notifies(&register(&mut t, "alice", ALICE, "reg-a", 2), ALICE).is_empty());
    let out = register(&mut t, "bob", BOB, "reg-b", 1);
    assert!(notifies(&out, BOB).is_empty(), "{out:?}");
    // A message: a NOTIFY of its own (new Call-ID).
    deposit(&mut t, "user:alice");
    let n2 = notifies(&settle(&mut t), ALICE);
    assert_eq!(n2.len(), 1);
    assert_eq!(counts(&n2[0]), (2, 0));
    assert_ne!(header(&n2[0], "Call-ID"), header(&n[0], "Call-ID"));
    // The phone refuses it: nothing more until the next change.
    t.input(ALICE, &answer(&n2[0], 489, "p", ALICE));
    t.advance(40);
    assert!(notifies(&t.take(), ALICE).is_empty());
    deposit(&mut t, "user:alice");
    let n3 = notifies(&settle(&mut t), ALICE);
    assert_eq!(counts(&n3[0]), (3, 0));
    // Two changes while it waits for its answer: one NOTIFY after the 200, with the
    // newest counts.
    deposit(&mut t, "user:alice");
    assert!(notifies(&settle(&mut t), ALICE).is_empty());
    deposit(&mut t, "user:alice");
    assert!(notifies(&settle(&mut t), ALICE).is_empty());
    t.input(ALICE, &answer(&n3[0], 200, "p", ALICE));
    let n4 = notifies(&t.take(), ALICE);
    assert_eq!(n4.len(), 1);
    assert_eq!(counts(&n4[0]), (5, 0));
    // Never answered: given up after the transaction's own retransmissions, not sent
    // again by itself.
    t.advance(40);
    let resent = notifies(&t.take(), ALICE);
    assert!(
        resent
            .iter()
            .all(|r| header(r, "Call-ID") == header(&n4[0], "Call-ID")),
        "{resent:?}"
    );
    t.advance(40);
    assert!(notifies(&t.take(), ALICE).is_empty());
    // A phone that restarted (a new Call-ID) is told again.
    let out = register(&mut t, "alice", ALICE, "reg-a2", 1);
    assert_eq!(counts(&notifies(&out, ALICE)[0]), (5, 0));
    let stats = t.core.metrics().unsolicited_notifies;
    assert_eq!((stats.sent, stats.failed, stats.skipped), (5, 2, 0));
}

#[test]
fn a_device_that_subscribes_is_told_only_in_its_subscription() {
    let mut t = T::with_policy(false, &unsolicited(false));
    // Registered, it is sent the counts; it then subscribes (as a phone that does both).
    let n = notifies(&register(&mut t, "alice", ALICE, "reg-a", 1), ALICE);
    assert_eq!(n.len(), 1);
    t.input(ALICE, &answer(&n[0], 200, "x", ALICE));
    let out = register(&mut t, "alice", "127.0.0.1:5081", "reg-a2", 1);
    let other = notifies(&out, "127.0.0.1:5081");
    t.input(
        "127.0.0.1:5081",
        &answer(&other[0], 200, "x", "127.0.0.1:5081"),
    );
    subscribed(&mut t, "alice", ALICE, "alice", "d1");
    deposit(&mut t, "user:alice");
    let out = settle(&mut t);
    let n = notifies(&out, ALICE);
    assert_eq!(n.len(), 1, "{out:?}");
    assert_eq!(header(&n[0], "Call-ID"), Some("d1"), "in the subscription");
    // Her other phone, which does not subscribe, is sent its own.
    let n = notifies(&out, "127.0.0.1:5081");
    assert_eq!(n.len(), 1, "{out:?}");
    assert_eq!(header(&n[0], "Subscription-State"), Some("active"));
}

#[test]
fn a_teams_unsolicited_counts_reach_its_members_summed_with_their_own() {
    let mut t = T::with_policy(false, &unsolicited(true));
    for (user, at) in [("alice", ALICE), ("bob", BOB), ("carol", CAROL)] {
        let out = register(&mut t, user, at, &format!("reg-{user}"), 1);
        for n in notifies(&out, at) {
            assert_eq!(counts(&n), (0, 0));
            t.input(at, &answer(&n, 200, "x", at));
        }
    }
    deposit(&mut t, "user:alice");
    let n = notifies(&settle(&mut t), ALICE);
    assert_eq!(counts(&n[0]), (1, 0));
    t.input(ALICE, &answer(&n[0], 200, "x", ALICE));
    deposit(&mut t, "team:sales");
    let out = settle(&mut t);
    // alice's phone: her own message and the team's, one lamp.
    let a = notifies(&out, ALICE);
    assert_eq!(a.len(), 1, "{out:?}");
    assert_eq!(counts(&a[0]), (2, 0));
    assert_eq!(
        account(&a[0]).as_deref(),
        Some("sip:8001@switchboard.local")
    );
    // bob's: the team's alone (his own mailbox is not sent unsolicited).
    let b = notifies(&out, BOB);
    assert_eq!(counts(&b[0]), (1, 0));
    assert_eq!(
        account(&b[0]).as_deref(),
        Some("sip:2000@switchboard.local")
    );
    assert!(notifies(&out, CAROL).is_empty(), "not a member");
}

#[test]
fn unsolicited_notifies_are_bounded_per_change() {
    let n = MAX_UNSOLICITED_PER_CHANGE + 6;
    let mut policy = String::new();
    let members: Vec<String> = (0..n).map(|i| format!("\"u{i}\"")).collect();
    for i in 0..n {
        policy.push_str(&format!(
            "[users.u{i}]\nextension = \"{}\"\n[users.u{i}.sip]\npassword = \"pw\"\n",
            3000 + i
        ));
    }
    policy.push_str(&format!(
        "[teams.all]\nextension = \"2999\"\nmembers = [{}]\n[teams.all.voicemail]\nunsolicited_mwi = true\n",
        members.join(", ")
    ));
    let mut t = T::with_policy(false, &policy);
    let at = |i: usize| format!("127.0.0.2:{}", 6000 + i);
    for i in 0..n {
        let out = register(&mut t, &format!("u{i}"), &at(i), &format!("r{i}"), 1);
        let sent = notifies(&out, &at(i));
        t.input(&at(i), &answer(&sent[0], 200, "x", &at(i)));
    }
    deposit(&mut t, "team:all");
    let out = settle(&mut t);
    let sent = out.iter().filter(|(_, m)| m.starts_with("NOTIFY ")).count();
    assert_eq!(sent, MAX_UNSOLICITED_PER_CHANGE);
    let stats = t.core.metrics().unsolicited_notifies;
    assert_eq!(stats.skipped, 6);
    assert!(addr(&at(0)).port() > 0);
}
