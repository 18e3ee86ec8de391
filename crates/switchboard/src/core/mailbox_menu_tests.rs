//! The mailbox menu's state machine, step by step: what it says and does for each key,
//! each prompt played, each read and each store outcome.

use super::*;
use crate::core::mailboxes::MessageRow;
use switchboard_media::say::ENGLISH;

const POLICY: &str = r#"
[schedules.office]
timezone = "Europe/Berlin"
hours = ["mon-fri 09:00-17:00"]

[users.bob]
extension = "1002"
schedule = "office"
[users.bob.voicemail]
pin = "4321"

[users.alice]
extension = "1001"

[users.nopin]
extension = "1003"

[users.off]
extension = "1004"
[users.off.voicemail]
enabled = false
pin = "1111"
"#;

/// 2023-11-14 22:13:20 UTC: Tuesday, 23:13 in Berlin.
const NOW: u64 = 1_700_000_000;

struct World {
    policy: Policy,
    mailboxes: Mailboxes,
    pins: PinGuard,
    now: Instant,
    unix: u64,
}

impl World {
    fn new() -> World {
        World {
            policy: Policy::from_sources(&[switchboard_policy::Source {
                name: "p.toml".into(),
                text: POLICY.into(),
            }])
            .unwrap(),
            mailboxes: Mailboxes::default(),
            pins: PinGuard::default(),
            now: Instant::now(),
            unix: NOW,
        }
    }

    fn env(&mut self) -> Env<'_> {
        Env {
            mailboxes: &mut self.mailboxes,
            policy: &self.policy,
            pins: &mut self.pins,
            language: &ENGLISH,
            now: self.now,
            unix: self.unix,
        }
    }

    /// A message in `mailbox`, left at `at` by `caller`.
    fn leave(&mut self, mailbox: &str, at: u64, caller: &str, heard: bool) -> String {
        let id = self.mailboxes.new_id(at);
        let row = MessageRow {
            id: id.clone(),
            mailbox: mailbox.into(),
            received: at,
            duration_ms: 1000,
            caller: caller.into(),
            caller_name: None,
            called: "1002".into(),
            original: None,
            reason: "no_answer".into(),
            profile: None,
            call_id: format!("c{at}"),
            heard,
        };
        self.mailboxes.deposit(row, Vec::new(), 100, &[]).unwrap();
        id
    }
}

fn bob() -> MailboxOwner {
    MailboxOwner::User("bob".into())
}

fn source() -> Source {
    Source::Address("192.0.2.7".parse().unwrap())
}

/// The prompts of a step's (only) Play.
fn said(out: &[Do]) -> Vec<&'static str> {
    let plays: Vec<&Vec<Say>> = out
        .iter()
        .filter_map(|d| match d {
            Do::Play(s) => Some(s),
            _ => None,
        })
        .collect();
    assert_eq!(plays.len(), 1, "{out:?}");
    plays[0]
        .iter()
        .map(|s| match s {
            Say::Prompt(p) => *p,
            Say::Audio(_) => "<audio>",
        })
        .collect()
}

fn starts_with(out: &[Do], words: &[&str]) {
    let s = said(out);
    assert!(s.starts_with(words), "{s:?} does not start with {words:?}");
}

fn keys(m: &mut MailboxMenu, w: &mut World, keys: &str) -> Vec<Do> {
    let mut last = Vec::new();
    for k in keys.chars() {
        last = m.digit(&mut w.env(), k);
    }
    last
}

/// Bob, in his mailbox from his own phone, the menu played.
fn bob_in(w: &mut World) -> MailboxMenu {
    let mut m = MailboxMenu::new(Access::Trusted(bob()), source());
    m.begin(&mut w.env());
    m.played(&mut w.env());
    m
}

#[test]
fn the_owner_is_told_the_counts_then_the_menu() {
    let mut w = World::new();
    w.leave("user:bob", NOW - 60, "1001", false);
    w.leave("user:bob", NOW - 50, "1001", false);
    w.leave("user:bob", NOW - 40, "1001", true);
    let mut m = MailboxMenu::new(Access::Trusted(bob()), source());
    let out = m.begin(&mut w.env());
    assert_eq!(
        said(&out),
        [
            "phrases/you_have",
            "digits/2",
            "phrases/new_messages",
            "digits/and",
            "digits/1",
            "phrases/saved_message",
            "phrases/to_listen_to_your_messages",
            "phrases/press",
            "digits/1",
            "phrases/for_mailbox_options",
            "phrases/press",
            "digits/0",
            "phrases/to_finish",
            "phrases/press",
            "digits/hash",
        ]
    );
    assert_eq!(m.mailbox(), Some(&bob()));
    // The wait for a key begins once the menu is played.
    assert_eq!(m.deadline(), None);
    m.played(&mut w.env());
    assert_eq!(m.deadline(), Some(w.now + KEY_WAIT));
}

#[test]
fn none_is_no_and_one_is_singular() {
    let mut w = World::new();
    w.leave("user:bob", NOW - 60, "1001", false);
    let mut m = MailboxMenu::new(Access::Trusted(bob()), source());
    let out = m.begin(&mut w.env());
    starts_with(
        &out,
        &[
            "phrases/you_have",
            "digits/1",
            "phrases/new_message",
            "digits/and",
            "phrases/no",
            "phrases/saved_messages",
        ],
    );
}

#[test]
fn listening_new_first_then_saved_each_announced_then_played_and_heard() {
    let mut w = World::new();
    let saved = w.leave("user:bob", NOW - 3 * 86_400, "1001", true);
    let new = w.leave("user:bob", NOW - 600, "015112345", false);
    let mut m = bob_in(&mut w);
    let out = keys(&mut m, &mut w, "1");
    // Received 23:03 Berlin time, today.
    assert_eq!(
        said(&out),
        [
            "phrases/message",
            "digits/1",
            "phrases/received",
            "time/today",
            "time/at",
            "digits/20",
            "digits/3",
            "digits/oh",
            "digits/3",
            "phrases/from",
            "digits/0",
            "digits/1",
            "digits/5",
            "digits/1",
            "digits/1",
            "digits/2",
            "digits/3",
            "digits/4",
            "digits/5",
        ]
    );
    assert!(out.contains(&Do::Read {
        table: VOICEMAIL_AUDIO,
        key: voicemail_key("user:bob", &new)
    }));
    // The announcement ends before the audio is read: it plays when it comes.
    assert!(m.played(&mut w.env()).is_empty());
    let out = m.read(
        &voicemail_key("user:bob", &new),
        Some(wav::encode(&[1000; 800])),
    );
    assert_eq!(out, [Do::Play(vec![Say::Audio(vec![1000; 800])])]);
    // Played to its end: heard (stored, nothing waits for it), then the choices.
    let out = m.played(&mut w.env());
    let Do::Persist {
        writes,
        before,
        wait: false,
    } = &out[0]
    else {
        panic!("{out:?}")
    };
    assert_eq!(writes.len(), 1);
    assert_eq!(
        **before,
        Undo::Heard {
            mailbox: "user:bob".into(),
            id: new.clone(),
            was: false
        }
    );
    assert!(w.mailboxes.message("user:bob", &new).unwrap().heard);
    assert_eq!(
        said(&out[1..]),
        [
            "phrases/to_replay_this_message",
            "phrases/press",
            "digits/1",
            "phrases/to_delete_this_message",
            "phrases/press",
            "digits/7",
            "phrases/to_save_this_message",
            "phrases/press",
            "digits/9",
            "phrases/for_the_next_message",
            "phrases/press",
            "digits/hash",
        ]
    );
    // 1: again, the audio alone.
    let out = keys(&mut m, &mut w, "1");
    assert_eq!(out, [Do::Play(vec![Say::Audio(vec![1000; 800])])]);
    // #: the next, the saved one, three days ago (a Saturday), from an extension.
    let out = keys(&mut m, &mut w, "#");
    assert_eq!(
        said(&out)[..10],
        [
            "phrases/message",
            "digits/2",
            "phrases/received",
            "time/saturday",
            "time/the",
            "digits/11th",
            "time/of",
            "time/november",
            "time/at",
            "digits/20",
        ]
    );
    assert!(out.contains(&Do::Read {
        table: VOICEMAIL_AUDIO,
        key: voicemail_key("user:bob", &saved)
    }));
    // Read before the announcement ends: it plays right after.
    assert!(m
        .read(
            &voicemail_key("user:bob", &saved),
            Some(wav::encode(&[5; 400]))
        )
        .is_empty());
    assert_eq!(
        m.played(&mut w.env()),
        [Do::Play(vec![Say::Audio(vec![5; 400])])]
    );
    // # during the audio: the next — there is none.
    let out = keys(&mut m, &mut w, "#");
    assert_eq!(said(&out), ["phrases/no_more_messages"]);
    // Then the menu.
    let out = m.played(&mut w.env());
    starts_with(&out, &["phrases/to_listen_to_your_messages"]);
}

#[test]
fn delete_is_said_once_stored_and_a_failed_store_is_told() {
    let mut w = World::new();
    let first = w.leave("user:bob", NOW - 600, "1001", false);
    let second = w.leave("user:bob", NOW - 500, "", false);
    let mut m = bob_in(&mut w);
    keys(&mut m, &mut w, "1");
    // 7 during the announcement: deleted at once in memory, said once stored.
    let out = keys(&mut m, &mut w, "7");
    assert_eq!(out[0], Do::Stop);
    let Do::Persist {
        writes,
        before,
        wait: true,
    } = &out[1]
    else {
        panic!("{out:?}")
    };
    assert!(writes.iter().all(|w| w.value.is_none()));
    assert!(matches!(&**before, Undo::Deleted(r) if r.id == first));
    assert!(w.mailboxes.message("user:bob", &first).is_none());
    // Keys while the store is asked do nothing.
    assert!(keys(&mut m, &mut w, "9").is_empty());
    assert_eq!(said(&m.stored(true)), ["phrases/message_deleted"]);
    // Then the next message (no number shown: "an unknown caller").
    let out = m.played(&mut w.env());
    let s = said(&out);
    assert_eq!(s[..2], ["phrases/message", "digits/2"]);
    assert_eq!(s.last(), Some(&"phrases/an_unknown_caller"));
    // Unreadable audio: straight to the choices.
    m.played(&mut w.env());
    let out = m.read(&voicemail_key("user:bob", &second), Some(b"RIFF".to_vec()));
    starts_with(&out, &["phrases/to_replay_this_message"]);
    // The store refuses a deletion: "sorry", the choices again.
    keys(&mut m, &mut w, "7");
    starts_with(
        &m.stored(false),
        &["phrases/sorry", "phrases/to_replay_this_message"],
    );
}

#[test]
fn save_marks_heard_and_is_said_once_stored_or_at_once_when_heard() {
    let mut w = World::new();
    let new = w.leave("user:bob", NOW - 600, "1001", false);
    w.leave("user:bob", NOW - 500, "1001", true);
    let mut m = bob_in(&mut w);
    keys(&mut m, &mut w, "1");
    let out = keys(&mut m, &mut w, "9");
    assert_eq!(out[0], Do::Stop);
    assert!(matches!(&out[1], Do::Persist { wait: true, .. }));
    assert!(w.mailboxes.message("user:bob", &new).unwrap().heard);
    assert_eq!(said(&m.stored(true)), ["phrases/message_saved"]);
    let out = m.played(&mut w.env());
    assert_eq!(said(&out)[1], "digits/2");
    // A heard one: nothing to store.
    assert_eq!(said(&keys(&mut m, &mut w, "9")), ["phrases/message_saved"]);
    // * from a message: the menu, with the counts.
    m.played(&mut w.env());
    let out = keys(&mut m, &mut w, "*");
    starts_with(
        &out,
        &["phrases/you_have", "phrases/no", "phrases/new_messages"],
    );
}

#[test]
fn a_number_and_pin_let_in_and_wrong_pins_end_the_call_after_three() {
    let mut w = World::new();
    let mut m = MailboxMenu::new(Access::Ask, source());
    assert_eq!(
        said(&m.begin(&mut w.env())),
        ["phrases/please_enter_your_mailbox_number"]
    );
    // The first key stops the prompt.
    assert_eq!(keys(&mut m, &mut w, "1"), [Do::Stop]);
    assert_eq!(
        said(&keys(&mut m, &mut w, "002#")),
        ["phrases/please_enter_your_pin"]
    );
    // Wrong: the number is asked again.
    assert_eq!(
        said(&keys(&mut m, &mut w, "9999#")),
        [
            "phrases/please_try_again",
            "phrases/please_enter_your_mailbox_number"
        ]
    );
    keys(&mut m, &mut w, "1002#");
    let out = keys(&mut m, &mut w, "4321#");
    starts_with(&out, &["phrases/you_have"]);
    assert_eq!(m.mailbox(), Some(&bob()));
    // A success clears what this source and mailbox had against them.
    assert!(w.pins.is_empty());

    let mut m = MailboxMenu::new(Access::Number("1002".into()), source());
    assert_eq!(
        said(&m.begin(&mut w.env())),
        ["phrases/please_enter_your_pin"]
    );
    assert_eq!(
        said(&keys(&mut m, &mut w, "1#")),
        ["phrases/please_try_again", "phrases/please_enter_your_pin"]
    );
    keys(&mut m, &mut w, "2#");
    assert_eq!(said(&keys(&mut m, &mut w, "3#")), ["phrases/goodbye"]);
    assert_eq!(m.played(&mut w.env()), [Do::HangUp]);
    assert!(m.is_over());
    assert_eq!(m.mailbox(), None);
}

#[test]
fn mailboxes_without_a_pin_turned_off_or_unknown_refuse_any_pin() {
    let mut w = World::new();
    for (number, pin) in [("1003", "1234"), ("1004", "1111"), ("7777", "1234")] {
        let mut m = MailboxMenu::new(Access::Number(number.into()), source());
        m.begin(&mut w.env());
        let out = keys(&mut m, &mut w, &format!("{pin}#"));
        assert_eq!(
            said(&out),
            ["phrases/please_try_again", "phrases/please_enter_your_pin"],
            "{number}"
        );
        assert_eq!(m.mailbox(), None);
    }
    // A PIN longer than any is wrong, even when it begins with the right one.
    let mut m = MailboxMenu::new(Access::Number("1002".into()), source());
    m.begin(&mut w.env());
    let out = keys(&mut m, &mut w, "4321000000000000#");
    starts_with(&out, &["phrases/please_try_again"]);
}

#[test]
fn repeated_failures_lock_the_mailbox_and_the_source_out_whatever_the_pin() {
    let mut w = World::new();
    // Five wrong PINs for bob's mailbox from five addresses: the mailbox is locked.
    for n in 0..LOCK_AFTER {
        let ip: IpAddr = format!("198.51.100.{n}").parse().unwrap();
        let mut m = MailboxMenu::new(Access::Number("1002".into()), Source::Address(ip));
        m.begin(&mut w.env());
        keys(&mut m, &mut w, "0000#");
    }
    let mut m = MailboxMenu::new(Access::Number("1002".into()), source());
    m.begin(&mut w.env());
    // The right PIN is refused too, said as a wrong one.
    let out = keys(&mut m, &mut w, "4321#");
    assert_eq!(
        said(&out),
        ["phrases/please_try_again", "phrases/please_enter_your_pin"]
    );
    // After the lock-out it is taken again.
    w.now += LOCK_FOR + Duration::from_secs(1);
    starts_with(&keys(&mut m, &mut w, "4321#"), &["phrases/you_have"]);

    // Five failures from one address, on unknown numbers: that address is locked out,
    // for bob's mailbox too; another address is not.
    let mut w = World::new();
    for _ in 0..LOCK_AFTER {
        let mut m = MailboxMenu::new(Access::Number("5555".into()), source());
        m.begin(&mut w.env());
        keys(&mut m, &mut w, "0000#");
    }
    let mut m = MailboxMenu::new(Access::Number("1002".into()), source());
    m.begin(&mut w.env());
    starts_with(
        &keys(&mut m, &mut w, "4321#"),
        &["phrases/please_try_again"],
    );
    let other: IpAddr = "203.0.113.9".parse().unwrap();
    let mut m = MailboxMenu::new(Access::Number("1002".into()), Source::Address(other));
    m.begin(&mut w.env());
    starts_with(&keys(&mut m, &mut w, "4321#"), &["phrases/you_have"]);
}

#[test]
fn callers_through_one_trunk_are_counted_each_by_their_number() {
    // A carrier's callers all come from its address: one guessing there locks out only
    // itself (and the mailboxes it tried), not the carrier's other callers.
    let mut w = World::new();
    let caller = |number: &str| Source::TrunkCaller {
        trunk: "carrier".into(),
        number: number.into(),
    };
    for _ in 0..LOCK_AFTER {
        let mut m = MailboxMenu::new(Access::Number("5555".into()), caller("+447700900666"));
        m.begin(&mut w.env());
        keys(&mut m, &mut w, "0000#");
    }
    let mut m = MailboxMenu::new(Access::Number("1002".into()), caller("+447700900666"));
    m.begin(&mut w.env());
    starts_with(
        &keys(&mut m, &mut w, "4321#"),
        &["phrases/please_try_again"],
    );
    let mut m = MailboxMenu::new(Access::Number("1002".into()), caller("+447700900123"));
    m.begin(&mut w.env());
    starts_with(&keys(&mut m, &mut w, "4321#"), &["phrases/you_have"]);

    // A caller whose number changes each call is still counted with the trunk's others:
    // after TRUNK_LOCK_AFTER, every caller of the trunk is refused for a while, and a
    // right PIN meanwhile does not undo it.
    let mut w = World::new();
    for n in 0..TRUNK_LOCK_AFTER {
        let mut m = MailboxMenu::new(
            Access::Number("5555".into()),
            caller(&format!("+4477009{n:05}")),
        );
        m.begin(&mut w.env());
        keys(&mut m, &mut w, "0000#");
    }
    let mut m = MailboxMenu::new(Access::Number("1002".into()), caller("+447700900123"));
    m.begin(&mut w.env());
    starts_with(
        &keys(&mut m, &mut w, "4321#"),
        &["phrases/please_try_again"],
    );
    // Another trunk's callers, and the people of ours, are not.
    let other = Source::TrunkCaller {
        trunk: "other".into(),
        number: "+447700900123".into(),
    };
    let mut m = MailboxMenu::new(Access::Number("1002".into()), other);
    m.begin(&mut w.env());
    starts_with(&keys(&mut m, &mut w, "4321#"), &["phrases/you_have"]);
}

#[test]
fn the_guard_forgets_old_failures_and_stays_bounded() {
    let mut g = PinGuard::default();
    let now = Instant::now();
    let k = vec![Guarded::new("source a".to_string(), LOCK_AFTER)];
    for _ in 0..LOCK_AFTER - 1 {
        g.failed(&k, now);
    }
    assert!(!g.locked(&k, now));
    // Long after: counted from the start again.
    let later = now + FORGET_AFTER + Duration::from_secs(1);
    g.failed(&k, later);
    assert!(!g.locked(&k, later));
    for n in 0..MAX_GUARDED + 10 {
        g.failed(&[Guarded::new(format!("source {n}"), LOCK_AFTER)], later);
    }
    assert!(g.len() <= MAX_GUARDED);
}

#[test]
fn unanswered_menus_are_said_again_then_goodbye() {
    let mut w = World::new();
    let mut m = bob_in(&mut w);
    assert!(m.timeout(&mut w.env()).is_empty(), "not due yet");
    for _ in 1..MAX_UNANSWERED {
        w.now += KEY_WAIT;
        starts_with(
            &m.timeout(&mut w.env()),
            &["phrases/to_listen_to_your_messages"],
        );
        m.played(&mut w.env());
    }
    w.now += KEY_WAIT;
    assert_eq!(said(&m.timeout(&mut w.env())), ["phrases/goodbye"]);
    assert_eq!(m.played(&mut w.env()), [Do::HangUp]);
}

#[test]
fn a_pin_keyed_in_without_hash_counts_when_the_wait_ends() {
    let mut w = World::new();
    let mut m = MailboxMenu::new(Access::Number("1002".into()), source());
    m.begin(&mut w.env());
    m.played(&mut w.env());
    keys(&mut m, &mut w, "4321");
    w.now += KEY_WAIT;
    starts_with(&m.timeout(&mut w.env()), &["phrases/you_have"]);
}

#[test]
fn invalid_keys_say_so_and_hash_says_goodbye() {
    let mut w = World::new();
    let mut m = bob_in(&mut w);
    starts_with(
        &keys(&mut m, &mut w, "5"),
        &[
            "phrases/invalid_option",
            "phrases/to_listen_to_your_messages",
        ],
    );
    // No messages: "no more messages", then the menu.
    assert_eq!(
        said(&keys(&mut m, &mut w, "1")),
        ["phrases/no_more_messages"]
    );
    m.played(&mut w.env());
    assert_eq!(said(&keys(&mut m, &mut w, "#")), ["phrases/goodbye"]);
    // Keys while goodbye is said: nothing.
    assert!(keys(&mut m, &mut w, "1").is_empty());
}

#[test]
fn recording_a_greeting_plays_it_back_and_keeps_it_once_stored() {
    let mut w = World::new();
    let mut m = bob_in(&mut w);
    starts_with(
        &keys(&mut m, &mut w, "0"),
        &[
            "phrases/to_record_your_greeting",
            "phrases/press",
            "digits/1",
            "phrases/to_record_your_name",
        ],
    );
    assert_eq!(
        said(&keys(&mut m, &mut w, "1")),
        ["phrases/record_after_the_tone", "phrases/beep"]
    );
    // Keys before the tone is over do nothing.
    assert!(keys(&mut m, &mut w, "#").is_empty());
    assert_eq!(
        m.played(&mut w.env()),
        [Do::Record {
            max: Duration::from_secs(60)
        }]
    );
    assert_eq!(keys(&mut m, &mut w, "#"), [Do::StopRecording]);
    assert!(keys(&mut m, &mut w, "#").is_empty(), "once");
    // Too short: recorded again.
    assert_eq!(
        said(&m.recorded(vec![3; 100])),
        ["phrases/record_after_the_tone", "phrases/beep"]
    );
    m.played(&mut w.env());
    let voice = vec![700i16; 8000];
    let out = m.recorded(voice.clone());
    let Do::Play(s) = &out[0] else {
        panic!("{out:?}")
    };
    assert_eq!(s[0], Say::Prompt(phrase::YOU_RECORDED));
    assert_eq!(s[1], Say::Audio(voice.clone()));
    // 2: again; then 1 keeps it: stored, then said.
    keys(&mut m, &mut w, "2");
    m.played(&mut w.env());
    m.recorded(voice.clone());
    let out = keys(&mut m, &mut w, "1");
    let Do::Persist {
        writes,
        wait: true,
        before,
    } = &out[1]
    else {
        panic!("{out:?}")
    };
    assert_eq!(**before, Undo::Nothing);
    assert_eq!(writes[0].table, VOICEMAIL_RECORDINGS);
    assert_eq!(writes[0].key, voicemail_key("user:bob", "greeting"));
    assert_eq!(
        wav::decode(writes[0].value.as_deref().unwrap(), usize::MAX).unwrap(),
        voice
    );
    assert_eq!(said(&m.stored(true)), ["phrases/your_greeting_is_saved"]);
    starts_with(
        &m.played(&mut w.env()),
        &["phrases/to_record_your_greeting"],
    );
}

#[test]
fn a_name_is_five_seconds_at_most_and_the_greeting_can_be_deleted() {
    let mut w = World::new();
    let mut m = bob_in(&mut w);
    keys(&mut m, &mut w, "02");
    assert_eq!(
        m.played(&mut w.env()),
        [Do::Record {
            max: Duration::from_secs(5)
        }]
    );
    // The recording ended by its length (no #).
    m.recorded(vec![9; 40_000]);
    let out = keys(&mut m, &mut w, "1");
    let Do::Persist { writes, .. } = &out[1] else {
        panic!("{out:?}")
    };
    assert_eq!(writes[0].key, voicemail_key("user:bob", "name"));
    assert_eq!(said(&m.stored(true)), ["phrases/your_name_is_saved"]);
    m.played(&mut w.env());
    m.played(&mut w.env());
    // 3: the greeting goes (back to the default).
    let out = keys(&mut m, &mut w, "3");
    let Do::Persist { writes, .. } = &out[1] else {
        panic!("{out:?}")
    };
    assert_eq!(
        *writes,
        [Write::delete(
            VOICEMAIL_RECORDINGS,
            voicemail_key("user:bob", "greeting")
        )]
    );
    assert_eq!(said(&m.stored(true)), ["phrases/your_greeting_is_deleted"]);
    m.played(&mut w.env());
    // * back to the menu; a recording that comes unasked is ignored.
    starts_with(&keys(&mut m, &mut w, "*"), &["phrases/you_have"]);
    assert!(m.recorded(vec![1; 8000]).is_empty());
}

#[test]
fn a_mailbox_turned_off_says_sorry_goodbye() {
    let mut w = World::new();
    let mut m = MailboxMenu::new(Access::Trusted(MailboxOwner::User("off".into())), source());
    assert_eq!(
        said(&m.begin(&mut w.env())),
        ["phrases/sorry", "phrases/goodbye"]
    );
    assert_eq!(m.played(&mut w.env()), [Do::HangUp]);
}

#[test]
fn a_message_deleted_through_the_api_meanwhile_is_skipped() {
    let mut w = World::new();
    let first = w.leave("user:bob", NOW - 600, "1001", false);
    w.leave("user:bob", NOW - 500, "1001", false);
    let mut m = bob_in(&mut w);
    keys(&mut m, &mut w, "1");
    w.mailboxes.delete("user:bob", &first).unwrap();
    // 7 on a message gone: as deleted.
    assert_eq!(
        said(&keys(&mut m, &mut w, "7")),
        ["phrases/message_deleted"]
    );
    assert_eq!(said(&m.played(&mut w.env()))[1], "digits/2");
}
