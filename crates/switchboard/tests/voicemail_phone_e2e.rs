//! The mailbox by phone end to end, against the real daemon: SIPp does the SIP of each
//! call (`call_voicemail_hang_up.xml` to leave a message, `call_mailbox_phone.xml` to dial
//! the mailbox, hung up by the daemon's BYE) and this test is the phone's audio: it hears
//! the RTP the daemon sends, speaks, and presses keys as RFC 4733 events.
//!
//! - alice leaves bob a message; bob dials `*97` from his own phone, hears "you have one
//!   new message and no saved messages" and the menu, presses 1 and hears the message —
//!   what alice said, sample for sample —, presses 7 ("message deleted"), then `#`
//!   (goodbye, the daemon's BYE): the stopped daemon's store holds no message.
//! - alice dials `*97` and bob's mailbox number: three wrong PINs, "please try again"
//!   twice, then goodbye and the BYE; two more wrong ones in another call lock the
//!   mailbox and the address out: bob's right PIN is then refused too.
//! - bob records a greeting by phone (0, 1, the tone, speech, `#`), hears it played back,
//!   keeps it (1: "your greeting has been saved"); a caller to his mailbox then hears it.

mod common;

use common::media::media_daemon;
use common::voicemail::{default_greeting, said, speech, stop, wait_count, Phone, RECORDING};
use common::*;
use std::time::Duration;
use switchboard_media::g711::Law;
use switchboard_media::say::phrase;
use switchboard_store::tables::VOICEMAIL;
use switchboard_store::{RedbStore, Store};

const POLICY: &str = r#"
[users.alice]
extension = "1001"
[users.bob]
extension = "1002"
display_name = "Bob B"
no_answer = "voicemail"
[users.bob.voicemail]
pin = "2468"
"#;

/// `user` calls bob (no answer: his mailbox), hears `greeting` (decoded), says `words`
/// once the recording starts (the `n`th of this run) and hangs up.
fn leave_message(d: &Daemon, user: &str, greeting: &[i16], words: &[u8], n: usize) {
    let mut phone = Phone::new();
    let pause = (greeting.len() + words.len()) as u64 / 8 + 3000;
    let caller = Sipp::new(d, "call_voicemail_hang_up.xml")
        .row(call_row(
            user,
            "",
            "1002",
            &format!("{};{pause}", phone.port()),
        ))
        .spawn();
    phone.hear(greeting, "the greeting", Duration::from_secs(30));
    wait_count(d, RECORDING, n);
    phone.speak(words);
    let run = caller.finish(Duration::from_secs(60));
    assert!(run.success, "{}\ndaemon log:\n{}", run.report(), d.log());
}

/// `user` dials `dialled` (the mailbox by phone); its phone, and the SIPp call.
fn dial(d: &Daemon, user: &str, dialled: &str) -> (Phone, Uas) {
    let phone = Phone::new();
    let call = Sipp::new(d, "call_mailbox_phone.xml")
        .limit(Duration::from_secs(150))
        // Longer than SIPp's 40 s by default: a whole session at the mailbox.
        .arg("-timeout")
        .arg("140s")
        .row(call_row(user, "", dialled, &format!("{};0", phone.port())))
        .spawn();
    (phone, call)
}

/// The SIPp call ended with the daemon's BYE.
fn hung_up_by_the_daemon(d: &Daemon, call: Uas) {
    let run = call.finish(Duration::from_secs(150));
    assert!(run.success, "{}\ndaemon log:\n{}", run.report(), d.log());
    assert!(run.logs.contains("BYE from the daemon"), "{}", run.report());
}

fn menu() -> Vec<&'static str> {
    vec![
        phrase::TO_LISTEN_TO_YOUR_MESSAGES,
        phrase::PRESS,
        "digits/1",
        phrase::FOR_MAILBOX_OPTIONS,
        phrase::PRESS,
        "digits/0",
        phrase::TO_FINISH,
        phrase::PRESS,
        "digits/hash",
    ]
}

#[test]
fn bob_dials_star_97_hears_his_message_and_deletes_it() {
    let mut d = media_daemon(POLICY, false);
    let words = speech(&["phrases/thank_you_for_calling", "digits/4", "digits/2"]);
    leave_message(&d, "alice", &default_greeting("1002"), &words, 1);
    wait_count(&d, "voicemail message kept", 1);

    let (mut phone, call) = dial(&d, "bob", "*97");
    let mut intro = vec![
        phrase::YOU_HAVE,
        "digits/1",
        phrase::NEW_MESSAGE,
        "digits/and",
        phrase::NO,
        phrase::SAVED_MESSAGES,
    ];
    intro.extend(menu());
    phone.hear(
        &said(&intro),
        "the counts and the menu",
        Duration::from_secs(30),
    );
    phone.then_press("1");
    // "Message one received today at …" (the time is the daemon's), "from one zero zero
    // one", then what alice said.
    phone.hears(
        &[phrase::FROM, "digits/1", "digits/0", "digits/0", "digits/1"],
        "from 1001",
    );
    phone.hear(
        &Law::MuLaw.decode(&words),
        "the message",
        Duration::from_secs(30),
    );
    phone.hears(&[phrase::TO_REPLAY_THIS_MESSAGE], "the choices");
    phone.then_press("7");
    // Said once the deletion is stored; then, in a play of its own, the end of the list.
    phone.hears(&[phrase::MESSAGE_DELETED], "message deleted");
    phone.hears(&[phrase::NO_MORE_MESSAGES], "no more messages");
    phone.then_press("#");
    phone.hears(&[phrase::GOODBYE], "goodbye");
    hung_up_by_the_daemon(&d, call);
    assert!(d.log_contains("mailbox by phone: in"), "{}", d.log());
    stop(&mut d);
    let store = RedbStore::open(&d.state_dir()).unwrap();
    assert!(
        store.scan(VOICEMAIL).unwrap().is_empty(),
        "the message is still there"
    );
}

#[test]
fn wrong_pins_end_the_call_and_repeated_ones_lock_the_mailbox_out() {
    let mut d = media_daemon(POLICY, false);
    // alice, for bob's mailbox: three wrong PINs.
    let (mut phone, call) = dial(&d, "alice", "*971002");
    phone.hears(&[phrase::PLEASE_ENTER_YOUR_PIN], "the PIN asked");
    phone.drain(Duration::from_millis(300));
    for _ in 0..2 {
        phone.press("1111#");
        phone.hears(
            &[phrase::PLEASE_TRY_AGAIN, phrase::PLEASE_ENTER_YOUR_PIN],
            "please try again",
        );
        phone.drain(Duration::from_millis(300));
    }
    phone.press("1111#");
    phone.hears(&[phrase::GOODBYE], "goodbye");
    hung_up_by_the_daemon(&d, call);
    wait_count(&d, "PIN refused", 3);

    // Two more: the fifth failure locks bob's mailbox and this address out.
    let (mut phone, call) = dial(&d, "alice", "*971002");
    phone.hears(&[phrase::PLEASE_ENTER_YOUR_PIN], "the PIN asked");
    phone.then_press("2222#");
    phone.hears(&[phrase::PLEASE_TRY_AGAIN], "please try again");
    phone.then_press("3333#");
    phone.hears(&[phrase::PLEASE_TRY_AGAIN], "please try again");
    assert!(
        d.log_contains("mailbox PINs refused for a while"),
        "{}",
        d.log()
    );
    phone.drain(Duration::from_millis(300));
    // The right PIN now: refused the same way.
    phone.press("2468#");
    phone.hears(&[phrase::GOODBYE], "goodbye");
    hung_up_by_the_daemon(&d, call);
    wait_count(&d, "locked=true", 1);
    assert!(!d.log_contains("mailbox by phone: in"), "{}", d.log());
    stop(&mut d);
}

#[test]
fn a_greeting_recorded_by_phone_is_what_callers_hear() {
    let d = media_daemon(POLICY, false);
    let (mut phone, call) = dial(&d, "bob", "*97");
    phone.hear(&said(&menu()), "the menu", Duration::from_secs(30));
    phone.then_press("0");
    phone.hears(&[phrase::TO_RECORD_YOUR_GREETING], "the options");
    phone.then_press("1");
    phone.hears(
        &[phrase::RECORD_AFTER_THE_TONE, phrase::BEEP],
        "record after the tone",
    );
    // The recording starts once the tone is played.
    std::thread::sleep(Duration::from_millis(300));
    let greeting = speech(&["phrases/our_office_is_now_closed", "digits/7", "digits/3"]);
    phone.speak(&greeting);
    phone.press("#");
    // Played back: "you recorded", then what was said, sample for sample.
    phone.hears(&[phrase::YOU_RECORDED], "you recorded");
    phone.hear(
        &Law::MuLaw.decode(&greeting),
        "the play-back",
        Duration::from_secs(30),
    );
    phone.then_press("1");
    phone.hears(
        &[phrase::YOUR_GREETING_IS_SAVED],
        "your greeting has been saved",
    );
    phone.then_press("#");
    phone.hears(&[phrase::GOODBYE], "goodbye");
    hung_up_by_the_daemon(&d, call);

    // A caller to bob's mailbox hears it (instead of the default greeting).
    let heard = Law::MuLaw.decode(&greeting);
    let words = speech(&["phrases/thank_you_for_calling", "digits/5"]);
    leave_message(&d, "alice", &heard, &words, 1);
    // (Kept once the BYE is through, which the caller does not wait for.)
    wait_count(&d, "voicemail message kept", 1);
}
