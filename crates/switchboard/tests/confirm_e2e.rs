//! Confirmed forwarding end to end with real phones (baresip from Debian, each with a sine
//! of its own as microphone and recording what it hears): alice calls carol, who has no
//! phone and forwards to bob, then dave (a hunt), with `require_confirmation`. bob's phone
//! answers by itself and hears the question; pressing 1 (RFC 4733) connects alice, and
//! each side's recording has the other's tone in it (the daemon relays the audio between
//! its two sessions). Either may put the other on hold and take them back (re-INVITEs,
//! each answered by the leg it is on) and the audio flows again. When bob presses
//! nothing, bob gets our BYE and dave rings next.

mod common;

use common::baresip::Baresip;
use common::*;
use std::path::Path;
use std::time::Duration;

const POLICY: &str = r##"
[users.alice]
extension = "1001"
[users.alice.sip]
password = "alice-secret"
algorithms = ["md5"]

[users.bob]
extension = "1002"
[users.bob.sip]
password = "bob-secret"
algorithms = ["md5"]

[users.dave]
extension = "1004"
[users.dave.sip]
password = "dave-secret"
algorithms = ["md5"]

[users.carol]
extension = "1003"
no_answer = "hangup"
[users.carol.forwarding]
targets = ["user:bob", "user:dave"]
strategy = "hunt"
ring_time = 30
require_confirmation = true
"##;

/// alice's microphone, and bob's: told apart in the recordings by their pitch.
const ALICE_HZ: u32 = 440;
const BOB_HZ: u32 = 1200;

/// The samples of the first channel of a WAV file of 16-bit PCM, and its sample rate.
fn wav_channel(path: &Path) -> (Vec<i16>, u32) {
    let bytes = std::fs::read(path).unwrap();
    let mut at = 12;
    let (mut channels, mut rate) = (1usize, 8000u32);
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        let body = &bytes[at + 8..(at + 8 + len).min(bytes.len())];
        if id == b"fmt " && body.len() >= 16 {
            channels = u16::from_le_bytes([body[2], body[3]]).max(1) as usize;
            rate = u32::from_le_bytes(body[4..8].try_into().unwrap());
        }
        if id == b"data" {
            let samples = body
                .chunks_exact(2 * channels)
                .map(|c| i16::from_le_bytes([c[0], c[1]]))
                .collect();
            return (samples, rate);
        }
        at += 8 + len + (len & 1);
    }
    (Vec::new(), rate)
}

/// The pitch of the loudest second of `samples` (by zero crossings), if any is loud.
fn pitch_of_last_second(samples: &[i16], rate: u32) -> Option<f64> {
    let n = rate as usize;
    // The last whole second before the end (the call's last moments may be cut).
    let end = samples.len().checked_sub(n / 4)?;
    let start = end.checked_sub(n)?;
    let part = &samples[start..end];
    let loud = part.iter().map(|s| (*s as f64).abs()).sum::<f64>() / part.len() as f64;
    if loud < 300.0 {
        return None;
    }
    let crossings = part.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
    Some(crossings as f64 / 2.0)
}

/// The recording of what a phone heard in its call (sndfile's `*-dec.wav`).
fn heard(dir: &Path) -> (Vec<i16>, u32) {
    let file = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        std::fs::read_dir(dir)
            .ok()?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().ends_with("-dec.wav"))
    })
    .unwrap_or_else(|| panic!("no recording in {}", dir.display()));
    // Written while the call lasts: read once it stops growing.
    let mut size = 0;
    for _ in 0..50 {
        let now = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
        if now == size && now > 44 {
            break;
        }
        size = now;
        std::thread::sleep(Duration::from_millis(100));
    }
    wav_channel(&file)
}

fn near(pitch: Option<f64>, hz: u32) -> bool {
    pitch.is_some_and(|p| (p - hz as f64).abs() < hz as f64 * 0.15)
}

/// The last second of what `who` heard (its recording in `dir`) is the other's tone of
/// `hz`.
fn assert_hears(d: &Daemon, dir: &Path, who: &str, whose: &str, hz: u32) {
    let (samples, rate) = heard(dir);
    let pitch = pitch_of_last_second(&samples, rate);
    eprintln!(
        "{who} heard {} samples at {rate}: pitch {pitch:?}",
        samples.len()
    );
    assert!(
        near(pitch, hz),
        "{who} should hear {whose} {hz} Hz, heard {pitch:?} ({} samples at {rate})\n{}",
        samples.len(),
        d.log()
    );
}

/// alice dials bob's forwarding (1003), and bob's phone answers the daemon's own call that
/// asks him; the two phones' log marks from before the dial.
fn alice_calls_and_bob_is_asked(alice: &Baresip, bob: &Baresip) -> (usize, usize) {
    let (a, b) = (alice.proc.log_len(), bob.proc.log_len());
    alice.command("/dial sip:1003@switchboard.local");
    // bob's phone answers the daemon's own call; alice only hears it ring.
    bob.wait(b, "Call established", "answered the question's call");
    (a, b)
}

#[test]
fn bob_presses_1_and_the_audio_flows_both_ways() {
    let d = common::media::media_daemon(POLICY, true);
    let rec = tempfile::tempdir_in(d.dir.path()).unwrap();
    let (alice_dir, bob_dir) = (rec.path().join("alice"), rec.path().join("bob"));
    std::fs::create_dir_all(&alice_dir).unwrap();
    std::fs::create_dir_all(&bob_dir).unwrap();
    let bob = Baresip::start_recording(&d, "bob", d.addr(), BOB_HZ, &bob_dir);
    let alice = Baresip::start_recording(&d, "alice", d.addr(), ALICE_HZ, &alice_dir);
    let (a, b) = alice_calls_and_bob_is_asked(&alice, &bob);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        !alice.since(a).contains("Call established"),
        "alice connected before bob accepted:\n{}",
        alice.since(a)
    );
    bob.key('1');
    alice.wait(a, "Call established", "connected once bob pressed 1");
    std::thread::sleep(Duration::from_secs(3));
    alice.command("/hangup");
    bob.wait(b, "terminated", "hung up by the daemon after alice's BYE");

    assert_hears(&d, &alice_dir, "alice", "bob's", BOB_HZ);
    assert_hears(&d, &bob_dir, "bob", "alice's", ALICE_HZ);
    assert!(
        bob.since(b).contains("send DTMF digit: '1'"),
        "{}",
        bob.since(b)
    );
    // The call's record says bob answered it.
    let record = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        let (code, body) = admin_api(&d, "GET", "/v1/records?limit=10", "");
        assert_eq!(code, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["records"]
            .as_array()?
            .iter()
            .find(|r| r["ended"].is_u64())
            .cloned()
    })
    .unwrap_or_else(|| panic!("no record\n{}", d.log()));
    assert_eq!(record["outcome"], "answered", "{record}");
    assert_eq!(record["answered_user"], "bob", "{record}");
}

/// Whether a phone's call status since `mark` says audio came in (baresip's
/// `audio=<sent>/<received> (bit/s)`, a received rate above 0).
fn receives_audio(phone: &Baresip, mark: usize) -> bool {
    phone.since(mark).split("audio=").skip(1).any(|s| {
        let rate = s.split_once('/').map(|(_, rest)| rest);
        let received = rate.and_then(|r| r.split_whitespace().next());
        received
            .and_then(|r| r.parse::<u64>().ok())
            .is_some_and(|r| r > 0)
    })
}

#[test]
fn either_side_holds_and_resumes_and_the_call_goes_on() {
    let d = common::media::media_daemon(POLICY, true);
    let bob = Baresip::start(&d, "bob", d.addr());
    let alice = Baresip::start(&d, "alice", d.addr());
    let (a, b) = alice_calls_and_bob_is_asked(&alice, &bob);
    std::thread::sleep(Duration::from_millis(500));
    bob.key('1');
    alice.wait(a, "Call established", "connected once bob pressed 1");
    std::thread::sleep(Duration::from_secs(1));
    // Each holds (a=sendonly, answered a=recvonly by the leg it is on) and resumes
    // (a=sendrecv both ways); neither re-INVITE reaches the other phone.
    for (phone, other, who) in [(&alice, &bob, "alice"), (&bob, &alice, "bob")] {
        let (mark, theirs) = (phone.proc.log_len(), other.proc.log_len());
        phone.command("/hold");
        phone.wait(mark, "a=recvonly", &format!("{who}'s hold answered"));
        std::thread::sleep(Duration::from_millis(500));
        let mark = phone.proc.log_len();
        phone.command("/resume");
        let answered = wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
            let log = phone.since(mark);
            let ok = log.split("SIP/2.0 200 OK").nth(1)?;
            ok.contains("a=sendrecv").then_some(())
        });
        assert!(answered.is_some(), "{who}'s resume:\n{}", phone.since(mark));
        assert!(
            !other.since(theirs).contains("INVITE sip:"),
            "{who}'s re-INVITE went through to the other phone:\n{}",
            other.since(theirs)
        );
    }
    // After both resumed, each phone receives audio again, and neither call ended.
    let (a2, b2) = (alice.proc.log_len(), bob.proc.log_len());
    let flowing = wait_until(Duration::from_secs(10), Duration::from_millis(200), || {
        (receives_audio(&alice, a2) && receives_audio(&bob, b2)).then_some(())
    });
    assert!(
        flowing.is_some(),
        "no audio after the resumes:\nalice: {}\nbob: {}\n{}",
        alice.since(a2),
        bob.since(b2),
        d.log()
    );
    for (phone, who, mark) in [(&alice, "alice", a), (&bob, "bob", b)] {
        assert!(
            !phone.since(mark).contains("terminated"),
            "{who}'s call ended:\n{}",
            phone.since(mark)
        );
    }
    alice.command("/hangup");
    bob.wait(b, "terminated", "hung up by the daemon after alice's BYE");
}

#[test]
fn the_caller_hangs_up_while_bob_is_asked_and_bob_gets_our_bye() {
    let d = common::media::media_daemon(POLICY, true);
    let bob = Baresip::start(&d, "bob", d.addr());
    let alice = Baresip::start(&d, "alice", d.addr());
    let (a, b) = alice_calls_and_bob_is_asked(&alice, &bob);
    // alice gives up while the question plays: her CANCEL, and our BYE to bob.
    alice.command("/hangup");
    alice.wait(a, "487", "her CANCEL answered");
    // Our BYE, and bob's 200 to it.
    let hung_up = wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
        let log = bob.since(b);
        let after_bye = log.split("BYE sip:").nth(1)?;
        after_bye.contains("SIP/2.0 200 OK").then_some(())
    });
    assert!(
        hung_up.is_some(),
        "bob got no BYE:\n{}\n{}",
        bob.since(b),
        d.log()
    );
    assert!(
        !alice.since(a).contains("Call established"),
        "{}",
        alice.since(a)
    );
}

#[test]
fn bob_presses_nothing_gets_our_bye_and_dave_rings_next() {
    let d = common::media::media_daemon(POLICY, true);
    let bob = Baresip::start(&d, "bob", d.addr());
    let dave = Baresip::start(&d, "dave", d.addr());
    let alice = Baresip::start(&d, "alice", d.addr());
    let v = dave.proc.log_len();
    let (a, b) = alice_calls_and_bob_is_asked(&alice, &bob);
    // The question, 5 s, the question again, 5 s (some 21 s: within bob's 30 s ring time):
    // then our BYE.
    let bye = wait_until(Duration::from_secs(30), Duration::from_millis(200), || {
        bob.since(b).contains("terminated").then_some(())
    });
    assert!(
        bye.is_some(),
        "bob was not hung up:\n{}\n{}",
        bob.since(b),
        d.log()
    );
    assert!(
        bob.since(b).contains("BYE sip:"),
        "bob got no BYE:\n{}",
        bob.since(b)
    );
    assert!(
        d.log()
            .contains("the forward target did not accept the call"),
        "{}",
        d.log()
    );
    assert!(
        !alice.since(a).contains("Call established"),
        "{}",
        alice.since(a)
    );
    // bob's leg is over: the hunt goes on to dave at once (carol has no phone of her own
    // ringing in the step), whose phone answers the daemon's call in turn.
    let rang = wait_until(Duration::from_secs(30), Duration::from_millis(200), || {
        dave.since(v).contains("Call established").then_some(())
    });
    assert!(
        rang.is_some(),
        "dave did not ring:\n{}\n{}",
        dave.since(v),
        d.log()
    );
    alice.command("/hangup");
}
