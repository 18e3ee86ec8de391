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

use common::media::{media_daemon, prompts};
use common::*;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};
use switchboard_media::dtmf::{self, Digit};
use switchboard_media::g711::Law;
use switchboard_media::say::{self, phrase};
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

/// The log line of a mailbox whose greeting (and beep) has played: the recording starts.
const RECORDING: &str = "mailbox greeting played; recording";

/// The samples of these prompts of prompts/en, one after another.
fn said<S: AsRef<str>>(names: &[S]) -> Vec<i16> {
    let prompts = prompts();
    names
        .iter()
        .map(AsRef::as_ref)
        .flat_map(|n| {
            prompts
                .get(n)
                .unwrap_or_else(|| panic!("no prompt {n}"))
                .samples()
                .to_vec()
        })
        .collect()
}

/// Whole 20 ms packets of speech, in µ-law.
fn speech(names: &[&str]) -> Vec<u8> {
    let mut codes = Law::MuLaw.encode(&said(names));
    codes.truncate(codes.len() / 160 * 160);
    codes
}

/// A phone's audio: the test's socket, where the daemon sends its RTP and from where the
/// test speaks and presses keys.
struct Phone {
    socket: UdpSocket,
    /// Where the daemon's RTP comes from (learned from the first packet).
    daemon: Option<SocketAddr>,
    seq: u16,
    ts: u32,
    /// Everything heard so far, in µ-law, packet after packet.
    heard: Vec<u8>,
    /// Where in `heard` the last thing heard ended.
    mark: usize,
}

impl Phone {
    fn new() -> Phone {
        let socket = UdpSocket::bind(("127.0.0.1", 0)).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        Phone {
            socket,
            daemon: None,
            seq: 1000,
            ts: 8000,
            heard: Vec::new(),
            mark: 0,
        }
    }

    fn port(&self) -> u16 {
        self.socket.local_addr().unwrap().port()
    }

    /// Listens until `quiet` passes without a packet after some came (or `limit`): what
    /// was heard meanwhile, in µ-law.
    fn listen(&mut self, quiet: Duration, limit: Duration) -> Vec<u8> {
        let start = Instant::now();
        let mut last: Option<Instant> = None;
        let mut got = Vec::new();
        let mut buf = [0u8; 2048];
        while start.elapsed() < limit {
            if last.is_some_and(|at| at.elapsed() > quiet) {
                break;
            }
            let Ok((n, src)) = self.socket.recv_from(&mut buf) else {
                continue;
            };
            let p = &buf[..n];
            if n < 12 || p[0] >> 6 != 2 || p[1] & 0x7f != 0 {
                continue;
            }
            self.daemon = Some(src);
            got.extend_from_slice(&p[12..]);
            last = Some(Instant::now());
        }
        self.heard.extend_from_slice(&got);
        got
    }

    /// Listens until what is heard since the last thing heard holds `expected` (decoded,
    /// compared sample for sample) or `limit` passes; panics with `what` if it never does.
    fn hear(&mut self, expected: &[i16], what: &str, limit: Duration) {
        // What it sounds like through µ-law.
        let expected = Law::MuLaw.decode(&Law::MuLaw.encode(expected));
        let start = Instant::now();
        loop {
            let hay = Law::MuLaw.decode(&self.heard[self.mark..]);
            if let Some(at) = find(&hay, &expected) {
                self.mark += at + expected.len();
                return;
            }
            if start.elapsed() > limit {
                panic!(
                    "never heard {what} ({} samples) in {} samples",
                    expected.len(),
                    hay.len()
                );
            }
            self.listen(Duration::from_millis(300), Duration::from_millis(500));
        }
    }

    /// Listens until nothing more comes for `quiet`.
    fn drain(&mut self, quiet: Duration) {
        self.listen(quiet, Duration::from_secs(60));
        self.mark = self.heard.len();
    }

    fn send(&mut self, pt: u8, marker: bool, payload: &[u8], advance: u32) {
        let to = self
            .daemon
            .expect("the daemon's RTP address (nothing heard yet)");
        let mut p = vec![0x80, pt | if marker { 0x80 } else { 0 }];
        p.extend(self.seq.to_be_bytes());
        p.extend(self.ts.to_be_bytes());
        p.extend(0x5eed_0002u32.to_be_bytes());
        p.extend_from_slice(payload);
        self.socket.send_to(&p, to).unwrap();
        self.seq = self.seq.wrapping_add(1);
        self.ts = self.ts.wrapping_add(advance);
    }

    /// Says `codes` (µ-law), paced as a phone does.
    fn speak(&mut self, codes: &[u8]) {
        let start = Instant::now();
        for (n, chunk) in codes.chunks(160).enumerate() {
            let due = start + Duration::from_millis(20 * n as u64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            self.send(0, n == 0, chunk, 160);
        }
    }

    /// Presses `keys`, each as RFC 4733 events (100 ms, payload type 101), 200 ms apart.
    fn press(&mut self, keys: &str) {
        for key in keys.chars() {
            let digit = Digit::from_char(key).unwrap();
            let packets = dtmf::digit_packets(digit, 800, 160);
            let count = packets.len();
            for (k, packet) in packets.into_iter().enumerate() {
                // One timestamp for the whole event; the next starts after it.
                let advance = if k + 1 == count { 800 } else { 0 };
                self.send(101, packet.marker, &packet.payload, advance);
                std::thread::sleep(Duration::from_millis(20));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Where `hay` holds `needle`, if it does.
fn find(hay: &[i16], needle: &[i16]) -> Option<usize> {
    if hay.len() < needle.len() {
        return None;
    }
    (0..=hay.len() - needle.len()).find(|&at| hay[at..].starts_with(needle))
}

/// Waits (bounded) until `pattern` is in the daemon's log `n` times.
fn wait_count(d: &Daemon, pattern: &str, n: usize) {
    let seen = wait_until(Duration::from_secs(30), Duration::from_millis(20), || {
        (d.log().matches(pattern).count() >= n).then_some(())
    });
    assert!(seen.is_some(), "no {pattern:?} ×{n} in\n{}", d.log());
}

/// SIGTERM, and the daemon gone (bounded).
fn stop(d: &mut Daemon) {
    std::process::Command::new("kill")
        .args(["-TERM", &d.pid().to_string()])
        .status()
        .unwrap();
    let gone = wait_until(Duration::from_secs(15), Duration::from_millis(50), || {
        (!d.running()).then_some(())
    });
    assert!(gone.is_some(), "still running after SIGTERM\n{}", d.log());
}

/// The default greeting of bob's mailbox and the beep, decoded.
fn default_greeting() -> Vec<i16> {
    let mut names = vec![phrase::EXTENSION];
    say::language("en")
        .unwrap()
        .say_digits("1002", &mut names)
        .unwrap();
    names.extend([
        phrase::IS_NOT_AVAILABLE,
        phrase::PLEASE_LEAVE_A_MESSAGE_AFTER_THE_TONE,
        phrase::BEEP,
    ]);
    said(&names)
}

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
    leave_message(&d, "alice", &default_greeting(), &words, 1);
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
    phone.drain(Duration::from_millis(500));
    phone.press("1");
    // "Message one received today at …" (the time is the daemon's), "from one zero zero
    // one", then what alice said.
    phone.hear(
        &said(&[phrase::FROM, "digits/1", "digits/0", "digits/0", "digits/1"]),
        "from 1001",
        Duration::from_secs(30),
    );
    phone.hear(
        &Law::MuLaw.decode(&words),
        "the message",
        Duration::from_secs(30),
    );
    phone.hear(
        &said(&[phrase::TO_REPLAY_THIS_MESSAGE]),
        "the choices",
        Duration::from_secs(30),
    );
    phone.drain(Duration::from_millis(500));
    phone.press("7");
    // Said once the deletion is stored; then, in a play of its own, the end of the list.
    phone.hear(
        &said(&[phrase::MESSAGE_DELETED]),
        "message deleted",
        Duration::from_secs(30),
    );
    phone.hear(
        &said(&[phrase::NO_MORE_MESSAGES]),
        "no more messages",
        Duration::from_secs(30),
    );
    phone.drain(Duration::from_millis(500));
    phone.press("#");
    phone.hear(
        &said(&[phrase::GOODBYE]),
        "goodbye",
        Duration::from_secs(30),
    );
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
    phone.hear(
        &said(&[phrase::PLEASE_ENTER_YOUR_PIN]),
        "the PIN asked",
        Duration::from_secs(30),
    );
    phone.drain(Duration::from_millis(300));
    for _ in 0..2 {
        phone.press("1111#");
        phone.hear(
            &said(&[phrase::PLEASE_TRY_AGAIN, phrase::PLEASE_ENTER_YOUR_PIN]),
            "please try again",
            Duration::from_secs(30),
        );
        phone.drain(Duration::from_millis(300));
    }
    phone.press("1111#");
    phone.hear(
        &said(&[phrase::GOODBYE]),
        "goodbye",
        Duration::from_secs(30),
    );
    hung_up_by_the_daemon(&d, call);
    wait_count(&d, "PIN refused", 3);

    // Two more: the fifth failure locks bob's mailbox and this address out.
    let (mut phone, call) = dial(&d, "alice", "*971002");
    phone.hear(
        &said(&[phrase::PLEASE_ENTER_YOUR_PIN]),
        "the PIN asked",
        Duration::from_secs(30),
    );
    phone.drain(Duration::from_millis(300));
    phone.press("2222#");
    phone.hear(
        &said(&[phrase::PLEASE_TRY_AGAIN]),
        "please try again",
        Duration::from_secs(30),
    );
    phone.drain(Duration::from_millis(300));
    phone.press("3333#");
    phone.hear(
        &said(&[phrase::PLEASE_TRY_AGAIN]),
        "please try again",
        Duration::from_secs(30),
    );
    assert!(
        d.log_contains("mailbox PINs refused for a while"),
        "{}",
        d.log()
    );
    phone.drain(Duration::from_millis(300));
    // The right PIN now: refused the same way.
    phone.press("2468#");
    phone.hear(
        &said(&[phrase::GOODBYE]),
        "goodbye",
        Duration::from_secs(30),
    );
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
    phone.drain(Duration::from_millis(300));
    phone.press("0");
    phone.hear(
        &said(&[phrase::TO_RECORD_YOUR_GREETING]),
        "the options",
        Duration::from_secs(30),
    );
    phone.drain(Duration::from_millis(300));
    phone.press("1");
    phone.hear(
        &said(&[phrase::RECORD_AFTER_THE_TONE, phrase::BEEP]),
        "record after the tone",
        Duration::from_secs(30),
    );
    // The recording starts once the tone is played.
    std::thread::sleep(Duration::from_millis(300));
    let greeting = speech(&["phrases/our_office_is_now_closed", "digits/7", "digits/3"]);
    phone.speak(&greeting);
    phone.press("#");
    // Played back: "you recorded", then what was said, sample for sample.
    phone.hear(
        &said(&[phrase::YOU_RECORDED]),
        "you recorded",
        Duration::from_secs(30),
    );
    phone.hear(
        &Law::MuLaw.decode(&greeting),
        "the play-back",
        Duration::from_secs(30),
    );
    phone.drain(Duration::from_millis(300));
    phone.press("1");
    phone.hear(
        &said(&[phrase::YOUR_GREETING_IS_SAVED]),
        "your greeting has been saved",
        Duration::from_secs(30),
    );
    phone.drain(Duration::from_millis(300));
    phone.press("#");
    phone.hear(
        &said(&[phrase::GOODBYE]),
        "goodbye",
        Duration::from_secs(30),
    );
    hung_up_by_the_daemon(&d, call);

    // A caller to bob's mailbox hears it (instead of the default greeting).
    let heard = Law::MuLaw.decode(&greeting);
    let words = speech(&["phrases/thank_you_for_calling", "digits/5"]);
    leave_message(&d, "alice", &heard, &words, 1);
    assert!(d.log_contains("voicemail message kept"), "{}", d.log());
}
