//! Message-waiting lamps end to end (RFC 3842): messages are put in the state directory's
//! store before the daemon starts (as the deposit would have left them), then SIPp phones
//! subscribe to `message-summary` with digest credentials and get the stored counts in
//! their first NOTIFY; someone else's mailbox is refused 403, a mailbox nobody has 404; a
//! registered phone that never subscribes gets the counts in a NOTIFY outside any dialog
//! when its person's mailbox has `unsolicited_mwi`, as it registers and again after it
//! restarts (a new Call-ID). baresip, a real phone, subscribes with its `mwi` module once
//! registered and shows what the NOTIFY says; without subscribing it refuses an
//! unsolicited NOTIFY (481), which is not sent again.
//!
//! A change while the daemon runs (a message left, heard, deleted) cannot be made from
//! outside yet: the deposit and the mailbox API come with other parts of voicemail. The
//! NOTIFYs such changes send are covered by the core's tests (`message_waiting_tests.rs`).

mod common;

use common::baresip::Baresip;
use common::*;
use std::time::Duration;
use switchboard::core::mailboxes::MessageRow;
use switchboard_sip::events::{parse_message_summary, MessageSummary};
use switchboard_store::tables::{voicemail_key, VOICEMAIL, VOICEMAIL_AUDIO};
use switchboard_store::{RedbStore, Store, Write};

/// alice and bob of the test policy, carol with a mailbox number of her own, a team of
/// alice's; bob's phone lights its lamp without subscribing.
fn policy() -> String {
    format!(
        "{POLICY}\n[users.bob.voicemail]\nunsolicited_mwi = true\n\n\
         [users.carol]\nextension = \"1004\"\n[users.carol.sip]\npassword = \"carol-secret\"\n\
         algorithms = [\"md5\"]\n[users.carol.voicemail]\nnumber = \"8004\"\n\n\
         [teams.sales]\nextension = \"2000\"\nmembers = [\"alice\"]\n"
    )
}

/// A message row of `mailbox`, left at `at`, heard or not.
fn message(mailbox: &str, at: u64, n: u32, heard: bool) -> MessageRow {
    MessageRow {
        id: format!("{at:020}-{n}"),
        mailbox: mailbox.into(),
        received: at,
        duration_ms: 4200,
        caller: "+441632960001".into(),
        caller_name: Some("A caller".into()),
        called: "1001".into(),
        original: None,
        reason: "no_answer".into(),
        profile: None,
        call_id: format!("seeded-{n}@example.com"),
        heard,
    }
}

/// Starts the daemon with `rows` in its store: started once (its state directory made),
/// killed, the rows written as the deposit writes them (row and audio in one commit), and
/// started again.
fn daemon_with(rows: &[MessageRow]) -> Daemon {
    let mut d = Daemon::start(Options {
        policy: policy(),
        ..Options::default()
    });
    d.kill9();
    {
        let store = RedbStore::open(&d.state_dir()).expect("the state directory's store");
        let mut writes = Vec::new();
        for r in rows {
            let key = voicemail_key(&r.mailbox, &r.id);
            writes.push(Write::put(VOICEMAIL_AUDIO, key.clone(), vec![0; 44]));
            writes.push(Write::put(VOICEMAIL, key, serde_json::to_vec(r).unwrap()));
        }
        store.commit(&writes).expect("the rows are written");
    }
    d.restart();
    d.wait_for_log(
        &format!("voicemail restored messages={}", rows.len()),
        Duration::from_secs(5),
    );
    d
}

/// The documents of the NOTIFYs a run received, read as a phone reads them.
fn summaries(r: &SippRun) -> Vec<MessageSummary> {
    r.requests("NOTIFY")
        .iter()
        .filter_map(|m| m.split_once("\r\n\r\n").map(|(_, b)| b.to_string()))
        .filter(|b| !b.trim().is_empty())
        .map(|b| parse_message_summary(b.as_bytes()).unwrap_or_else(|e| panic!("{e}: {b:?}")))
        .collect()
}

/// `who` subscribes to the mailbox `mailbox` names and unsubscribes.
fn subscribe(d: &Daemon, who: &str, mailbox: &str) -> SippRun {
    Sipp::new(d, "subscribe_mwi.xml")
        .row(call_row(who, &format!("{who}-secret"), mailbox, "0"))
        .auth_uri(&format!("{mailbox}@{REALM}"))
        .ok()
}

#[test]
fn phones_subscribe_to_their_mailbox_and_see_the_stored_counts() {
    let t0 = 1_790_000_000;
    let d = daemon_with(&[
        message("user:alice", t0, 1, false),
        message("user:alice", t0 + 60, 2, true),
        message("user:alice", t0 + 120, 3, false),
        message("team:sales", t0 + 180, 4, false),
        message("user:carol", t0 + 240, 5, true),
    ]);

    // alice's own mailbox, by her user name: two new, one heard.
    let r = subscribe(&d, "alice", "alice");
    assert_eq!(
        r.logged("refused code"),
        Vec::<String>::new(),
        "{}",
        r.report()
    );
    let docs = summaries(&r);
    assert_eq!(
        docs.len(),
        2,
        "the first NOTIFY, and the final one (terminated)"
    );
    assert!(docs.iter().all(|d| (d.new, d.old) == (2, 1)), "{docs:?}");
    assert!(docs[0].waiting());
    assert_eq!(
        docs[0].account.as_deref(),
        Some("sip:1001@switchboard.local")
    );
    let first = &r.requests("NOTIFY")[0];
    assert!(
        first.contains("\r\nMessages-Waiting: yes\r\n")
            && first.contains("\r\nVoice-Message: 2/1 (0/0)\r\n"),
        "{first}"
    );

    // Her team's mailbox, by its extension.
    let docs = summaries(&subscribe(&d, "alice", "2000"));
    assert_eq!((docs[0].new, docs[0].old), (1, 0));
    assert_eq!(
        docs[0].account.as_deref(),
        Some("sip:2000@switchboard.local")
    );

    // carol's, by its mailbox number: nothing new, the lamp off.
    let r = subscribe(&d, "carol", "8004");
    let docs = summaries(&r);
    assert_eq!((docs[0].new, docs[0].old), (0, 1));
    assert!(r.requests("NOTIFY")[0].contains("Messages-Waiting: no\r\n"));

    // Someone else's mailbox, a team that is not theirs, a mailbox nobody has.
    for (who, mailbox, code) in [
        ("bob", "alice", "403"),
        ("bob", "8004", "403"),
        ("carol", "2000", "403"),
        ("bob", "7777", "404"),
    ] {
        let r = subscribe(&d, who, mailbox);
        assert_eq!(r.logged("refused code"), [code], "{who} → {mailbox}");
        assert!(r.requests("NOTIFY").is_empty(), "{}", r.report());
    }
    assert!(
        d.log_contains("message-waiting subscription refused"),
        "{}",
        d.log()
    );

    // Counted with the other packages' NOTIFYs: three first ones and three final ones.
    assert_eq!(
        metric(
            &d,
            "switchboard_sip_notifies_sent_total{package=\"message-summary\"}"
        ),
        6
    );
    assert_eq!(metric(&d, "switchboard_subscriptions"), 0);
}

#[test]
fn a_phone_that_does_not_subscribe_is_sent_its_counts_as_it_registers() {
    let t0 = 1_790_000_000;
    let d = daemon_with(&[
        message("user:bob", t0, 1, false),
        message("user:bob", t0 + 60, 2, false),
        message("user:bob", t0 + 120, 3, true),
        message("user:alice", t0 + 180, 4, false),
    ]);

    // bob's phone registers: the counts at once; it restarts (a new Call-ID, as each run
    // of the REGISTER scenario has): again.
    let bob = Uas::start("uas_notify.xml", 2, &[]);
    bob.register(&d, "bob", "bob-secret");
    wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
        bob.logs_so_far().contains("notify").then_some(())
    })
    .unwrap_or_else(|| panic!("no NOTIFY at bob's phone:\n{}", d.log()));
    bob.register(&d, "bob", "bob-secret");
    let run = bob.finish(Duration::from_secs(20));
    assert!(run.success, "{}\n{}", run.report(), d.log());
    let notifies = run.requests("NOTIFY");
    assert_eq!(notifies.len(), 2, "{}", run.report());
    for n in &notifies {
        assert!(n.starts_with("NOTIFY sip:bob@127.0.0.1:"), "{n}");
        assert!(n.contains("\r\nSubscription-State: active\r\n"), "{n}");
        assert!(n.contains("\r\nCSeq: 1 NOTIFY\r\n"), "{n}");
    }
    assert_eq!(run.logged("notify to_tag"), ["", ""], "outside any dialog");
    let docs = summaries(&run);
    assert!(docs.iter().all(|d| (d.new, d.old) == (2, 1)), "{docs:?}");
    assert_eq!(
        docs[0].account.as_deref(),
        Some("sip:1002@switchboard.local")
    );

    // alice's mailbox has no unsolicited_mwi: her phone hears nothing.
    let alice = Uas::start("uas_notify.xml", 1, &[]);
    alice.register(&d, "alice", "alice-secret");
    std::thread::sleep(Duration::from_secs(2));
    let run = alice.stop();
    assert!(run.requests("NOTIFY").is_empty(), "{}", run.report());

    assert_eq!(
        metric(
            &d,
            "switchboard_mwi_unsolicited_notifies_total{result=\"sent\"}"
        ),
        2
    );
    assert_eq!(
        metric(
            &d,
            "switchboard_mwi_unsolicited_notifies_total{result=\"failed\"}"
        ),
        0
    );
}

#[test]
fn baresip_subscribes_once_registered_and_shows_the_counts() {
    let t0 = 1_790_000_000;
    let mut d = daemon_with(&[
        message("user:alice", t0, 1, false),
        message("user:alice", t0 + 60, 2, true),
        message("user:alice", t0 + 120, 3, true),
    ]);
    let alice = Baresip::start_with(&d, "alice", d.addr(), &["mwi.so"], ";mwi=yes");
    // What its mwi module prints of the NOTIFY it took (after the SIP trace's copy).
    let heading = format!("----- MWI for sip:alice@{REALM} -----");
    alice.wait(0, &heading, "did not take a NOTIFY");
    let shown = alice.since(0).replace("\r\n", "\n");
    let shown = shown.split_once(&heading).unwrap().1;
    assert!(
        shown.trim_start().starts_with(
            "Messages-Waiting: yes\nMessage-Account: sip:1001@switchboard.local\n\
             Voice-Message: 1/2 (0/0)\n"
        ),
        "{shown}"
    );
    assert!(
        d.log_contains("subscription stored and answered subscriber=alice resource=user:alice"),
        "{}",
        d.log()
    );

    // bob's baresip, which does not subscribe, is sent his counts as it registers
    // (unsolicited_mwi) and refuses them: baresip 1.0 takes no NOTIFY outside a
    // subscription. It is not sent another.
    let bob = Baresip::start(&d, "bob", d.addr());
    d.wait_for_log(
        "message-waiting NOTIFY refused or unanswered; not sent again until the counts change user=bob code=481",
        Duration::from_secs(10),
    );
    let mark = bob.proc.log_len();
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        !bob.since(mark).contains("NOTIFY sip:"),
        "{}",
        bob.since(mark)
    );
    assert_eq!(
        metric(
            &d,
            "switchboard_mwi_unsolicited_notifies_total{result=\"sent\"}"
        ),
        1
    );
    assert_eq!(
        metric(
            &d,
            "switchboard_mwi_unsolicited_notifies_total{result=\"failed\"}"
        ),
        1
    );
}
