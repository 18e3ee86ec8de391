//! Voicemail end to end: bob has no phone, so a call to him reaches his own mailbox
//! (`no_answer = "voicemail"`). The caller is answered, hears the default greeting
//! ("extension one zero zero two is not available, please leave a message after the
//! tone", the beep), speaks, and the message is kept: after the daemon stops, the test
//! opens its store and finds the row and a WAV whose samples are what the caller sent
//! (through G.711).
//!
//! - A SIPp caller (`call_voicemail_hang_up.xml`) whose audio port is this test's socket:
//!   the RTP received is exactly the greeting's µ-law; the test then sends known speech as
//!   RTP, SIPp hangs up, and the WAV holds exactly that speech.
//! - `kill -9` while a second message is being recorded: after a restart the mailbox
//!   holds the first message, whole, and nothing of the second.
//! - baresip calls with a WAV file as its microphone (`aufile`) and presses `#`
//!   (RFC 4733): the daemon says goodbye and hangs up (BYE), and the message matches the
//!   file where the recording began.
//! - The whole way, as the callee lives it: dave's baresip (with its `mwi` module) rings
//!   and is not answered; the caller leaves a message; dave's lamp lights (a NOTIFY with
//!   `Voice-Message: 1/0`), the mail relay the test runs (aiosmtpd) receives the message
//!   with its audio attached, and the API gives the same audio; both decode to what the
//!   caller said. Marked heard through the API, the lamp goes out (`0/1`).

mod common;

use common::baresip::Baresip;
use common::mail::{mail_files, read_mail, smtp_sink};
use common::media::{check_heard, correlation, envelope, media_daemon, media_daemon_with, prompts};
use common::voicemail::{default_greeting, said, speech, stop, wait_count, RECORDING};
use common::*;
use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};
use switchboard_media::g711::Law;
use switchboard_store::tables::{VOICEMAIL, VOICEMAIL_AUDIO};
use switchboard_store::{RedbStore, Store};

const POLICY: &str = r#"
[users.alice]
extension = "1001"
[users.bob]
extension = "1002"
display_name = "Bob B"
no_answer = "voicemail"
"#;

/// dave has a phone (baresip, which lets it ring) and his messages mailed.
const FLOW_POLICY: &str = r#"
[users.dave]
extension = "1002"
display_name = "Dave D"
ring_time = 2
no_answer = "voicemail"
[users.dave.sip]
password = "dave-secret"
[users.dave.voicemail]
email = ["dave@example.com"]
"#;

/// What a caller to bob's mailbox hears first, in µ-law: the default greeting and the
/// beep.
fn greeting() -> Vec<u8> {
    Law::MuLaw.encode(&default_greeting("1002"))
}

fn ms_of(codes: usize) -> u64 {
    codes as u64 / 8
}

/// Receives RTP on `socket` until `bytes` codes have come (or `limit`): the codes, in
/// order (checked by [`check_heard`]), and where they came from.
fn hear(
    socket: &UdpSocket,
    bytes: usize,
    limit: Duration,
) -> (Vec<common::media::Packet>, SocketAddr) {
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let start = Instant::now();
    let mut packets = Vec::new();
    let mut heard = 0;
    let mut from = None;
    let mut buf = [0u8; 2048];
    while heard < bytes && start.elapsed() < limit {
        let Ok((n, src)) = socket.recv_from(&mut buf) else {
            continue;
        };
        let p = &buf[..n];
        if n < 12 || p[0] >> 6 != 2 || p[0] & 0x1f != 0 {
            continue;
        }
        from = Some(src);
        heard += n - 12;
        packets.push(common::media::Packet {
            at: Instant::now(),
            seq: u16::from_be_bytes([p[2], p[3]]),
            pt: p[1] & 0x7f,
            payload: p[12..].to_vec(),
        });
    }
    let from = from.unwrap_or_else(|| panic!("no RTP within {limit:?}"));
    (packets, from)
}

/// Sends `codes` (µ-law) to `to` as a phone would: 20 ms packets, paced, PCMU.
fn speak(socket: &UdpSocket, to: SocketAddr, codes: &[u8], packets: Option<usize>) {
    let start = Instant::now();
    for (n, chunk) in codes
        .chunks(160)
        .take(packets.unwrap_or(usize::MAX))
        .enumerate()
    {
        let due = start + Duration::from_millis(20 * n as u64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let mut p = vec![0x80, if n == 0 { 0x80 } else { 0 }];
        p.extend((1000u16 + n as u16).to_be_bytes());
        p.extend((8000u32 + 160 * n as u32).to_be_bytes());
        p.extend(0x5eed_0001u32.to_be_bytes());
        p.extend_from_slice(chunk);
        socket.send_to(&p, to).unwrap();
    }
}

/// Every message in the (stopped) daemon's store: its row, and its audio decoded. A row
/// without its audio, audio without its row, or audio that is not a WAV fails the test.
fn stored(d: &Daemon) -> Vec<(serde_json::Value, Vec<i16>)> {
    let store = RedbStore::open(&d.state_dir()).unwrap();
    let rows = store.scan(VOICEMAIL).unwrap();
    let audio = store.scan(VOICEMAIL_AUDIO).unwrap();
    let keys = |t: &[(String, Vec<u8>)]| t.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
    assert_eq!(keys(&rows), keys(&audio), "rows and audio differ");
    rows.iter()
        .zip(&audio)
        .map(|((_, row), (_, wav))| {
            let row: serde_json::Value = serde_json::from_slice(row).unwrap();
            let samples = switchboard_media::wav::decode(wav, usize::MAX)
                .unwrap_or_else(|e| panic!("the audio of {row} is no WAV: {e}"));
            (row, samples)
        })
        .collect()
}

/// A SIPp caller (`carl`) to bob: checks the greeting heard, says `words` once the
/// recording starts (the `n`th of this run), and hangs up; returns the codes said.
fn leave_message(d: &Daemon, words: &[&str], n: usize) -> Vec<u8> {
    let greeting = greeting();
    let speech = speech(words);
    let audio = UdpSocket::bind(("127.0.0.1", 0)).unwrap();
    let port = audio.local_addr().unwrap().port();
    // The caller hangs up once the greeting and its speech are over, with time to spare.
    let pause = ms_of(greeting.len()) + ms_of(speech.len()) + 3000;
    let caller = Sipp::new(d, "call_voicemail_hang_up.xml")
        .row(call_row("carl", "", "1002", &format!("{port};{pause}")))
        .spawn();
    let (packets, daemon) = hear(&audio, greeting.len(), Duration::from_secs(30));
    check_heard(&packets, 0, &greeting, Law::MuLaw.silence())
        .unwrap_or_else(|e| panic!("{e}: not the greeting\n{}", d.log()));
    wait_count(d, RECORDING, n);
    speak(&audio, daemon, &speech, None);
    let run = caller.finish(Duration::from_secs(60));
    assert!(run.success, "{}\ndaemon log:\n{}", run.report(), d.log());
    assert!(run.logs.contains("answered m=audio"), "{}", run.report());
    speech
}

#[test]
fn a_message_left_after_the_greeting_is_kept_whole() {
    let mut d = media_daemon(POLICY, false);
    let said = leave_message(
        &d,
        &["phrases/thank_you_for_calling", "digits/4", "digits/2"],
        1,
    );
    wait_count(&d, "voicemail message kept", 1);
    let (_, metrics) = admin_api(&d, "GET", "/metrics", "");
    assert!(
        metrics.contains("switchboard_voicemail_messages_total{result=\"kept\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("switchboard_call_records_total{outcome=\"voicemail\"} 1"),
        "{metrics}"
    );
    stop(&mut d);

    let messages = stored(&d);
    let [(row, samples)] = messages.as_slice() else {
        panic!("{messages:?}")
    };
    // Exactly what the caller said, through µ-law.
    let expected = Law::MuLaw.decode(&said);
    assert_eq!(samples.len(), expected.len(), "{row}");
    assert!(
        samples == &expected,
        "the message differs from what was said"
    );
    assert_eq!(row["mailbox"], "user:bob");
    assert_eq!(row["caller"], "carl");
    assert_eq!(row["called"], "1002");
    assert_eq!(row["original"], "user:bob");
    assert_eq!(row["reason"], "unavailable");
    assert_eq!(row["duration_ms"], ms_of(said.len()));
    assert_eq!(row["heard"], false);
    assert!(
        row["call_id"].as_str().is_some_and(|c| !c.is_empty()),
        "{row}"
    );
}

#[test]
fn kill_9_while_recording_leaves_no_message_and_the_kept_one_whole() {
    let mut d = media_daemon(POLICY, false);
    let first = leave_message(&d, &["digits/1", "digits/2", "digits/3"], 1);
    wait_count(&d, "voicemail message kept", 1);

    // A second caller is killed off while speaking.
    let greeting = greeting();
    let audio = UdpSocket::bind(("127.0.0.1", 0)).unwrap();
    let port = audio.local_addr().unwrap().port();
    let caller = Sipp::new(&d, "call_voicemail_hang_up.xml")
        .row(call_row("dora", "", "1002", &format!("{port};30000")))
        .spawn();
    let (_, daemon) = hear(&audio, greeting.len(), Duration::from_secs(30));
    wait_count(&d, RECORDING, 2);
    let words = speech(&["phrases/when_you_have_finished", "digits/9"]);
    speak(&audio, daemon, &words, Some(50));
    d.kill9();
    let _ = caller.stop();

    d.restart();
    let restored = d
        .log()
        .lines()
        .find(|l| l.contains("voicemail restored"))
        .map(str::to_string)
        .unwrap_or_default();
    assert!(restored.contains("messages=1"), "{}", d.log());
    stop(&mut d);
    let messages = stored(&d);
    let [(row, samples)] = messages.as_slice() else {
        panic!("{messages:?}")
    };
    assert_eq!(row["caller"], "carl");
    assert!(
        samples == &Law::MuLaw.decode(&first),
        "the kept message changed"
    );
}

/// baresip calls bob with a WAV file as its microphone; once the recording has begun it
/// speaks for a few seconds and presses `#`: the daemon says goodbye and hangs up, and the
/// message kept is the file's audio from where the recording began.
#[test]
fn baresip_presses_hash_to_end_its_message_and_the_daemon_hangs_up() {
    require("baresip");
    let mut d = media_daemon(POLICY, false);
    let dir = tempfile::tempdir_in(d.dir.path()).unwrap().keep();

    // Its microphone: 40 s of speech (the prompts of the digits and phrases, over and
    // over), 8 kHz mono.
    let names: Vec<String> = prompts()
        .iter()
        .map(|(n, _)| n.to_string())
        .filter(|n| n.starts_with("digits/") || n.starts_with("phrases/"))
        .collect();
    let mut mic: Vec<i16> = Vec::new();
    while mic.len() < 40 * 8000 {
        mic.extend(said(&names));
    }
    let wav = dir.join("mic.wav");
    std::fs::write(&wav, switchboard_media::wav::encode(&mic)).unwrap();

    let sip_port = free_ports(2);
    let cons = free_port();
    std::fs::write(
        dir.join("config"),
        format!(
            "poll_method epoll\nsip_listen 127.0.0.1:{sip_port}\nnet_interface 127.0.0.1\n\
             audio_source aufile,{}\naudio_player aubridge,nullspk\n\
             ausrc_srate 8000\nausrc_channels 1\nauplay_srate 8000\nauplay_channels 1\n\
             module_path /usr/lib/baresip/modules\nmodule g711.so\nmodule aufile.so\n\
             module aubridge.so\nmodule cons.so\ncons_listen 127.0.0.1:{cons}\n\
             module_app account.so\nmodule_app menu.so\n",
            wav.display()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("accounts"),
        format!(
            "<sip:alice@{REALM}>;outbound=\"sip:127.0.0.1:{}\";regint=0;audio_codecs=PCMU\n",
            d.port
        ),
    )
    .unwrap();
    let mut cmd = Command::new("baresip");
    // -t: it quits by itself should the guard somehow not stop it; -s: SIP in its log.
    cmd.arg("-f")
        .arg(&dir)
        .args(["-e", &format!("/dial sip:1002@{REALM}"), "-t", "60", "-s"]);
    let mut phone = Proc::spawn("baresip", &mut cmd, dir.join("baresip.log"), false);
    phone.wait_for_log("Call established", Duration::from_secs(20));
    wait_count(&d, RECORDING, 1);
    // What it says after the tone: about three seconds of its file.
    std::thread::sleep(Duration::from_secs(3));
    let key = UdpSocket::bind("127.0.0.1:0").unwrap();
    key.send_to(b"#", ("127.0.0.1", cons)).unwrap();
    // Goodbye, then our BYE.
    wait_count(&d, "voicemail message kept", 1);
    phone.wait_for_log("BYE sip:", Duration::from_secs(15));
    wait_count(&d, "end_reason=hung up", 1);
    assert!(
        phone.log_contains("send DTMF digit: '#'"),
        "{}",
        phone.log()
    );
    phone.kill();
    stop(&mut d);

    let messages = stored(&d);
    let [(row, message)] = messages.as_slice() else {
        panic!("{messages:?}\n{}", d.log())
    };
    // A user of ours, shown by extension.
    assert_eq!(row["caller"], "1001");
    assert_eq!(row["reason"], "unavailable");
    let ms = row["duration_ms"].as_u64().unwrap();
    assert!((2000..=5000).contains(&ms), "{row}");

    // Where in the file the recording began: found by the energy envelope (the file went
    // on while the greeting played), then sample by sample.
    let expected = Law::MuLaw.decode(&Law::MuLaw.encode(&mic));
    let (me, fe) = (envelope(message), envelope(&expected));
    let (lag, best) = (0..fe.len().saturating_sub(me.len()))
        .map(|lag| (lag, correlation(&me, &fe[lag..])))
        .fold((0, f64::MIN), |a, b| if b.1 > a.1 { b } else { a });
    assert!(best > 0.9, "envelope correlation {best:.3} at {lag} frames");
    let to_f = |s: &[i16]| s.iter().map(|&x| f64::from(x)).collect::<Vec<_>>();
    let (mf, ef) = (to_f(message), to_f(&expected));
    let from = (lag * 160).saturating_sub(160);
    let (at, fine) = (from..(lag * 160 + 160).min(ef.len()))
        .map(|at| (at, correlation(&mf, &ef[at..])))
        .fold((0, f64::MIN), |a, b| if b.1 > a.1 { b } else { a });
    let same = message
        .iter()
        .zip(&expected[at..])
        .filter(|(a, b)| a == b)
        .count();
    eprintln!(
        "envelope {best:.3} at {lag} frames, samples {fine:.3} at {at}: {same} of {} equal",
        message.len()
    );
    assert!(fine > 0.95, "sample correlation {fine:.3}");
    // Nothing between the file and the message but G.711 (no resampling, no filter): on
    // loopback, sample for sample.
    assert!(
        same * 100 >= message.len() * 99,
        "{same} of {} equal",
        message.len()
    );
}

/// The message-waiting document baresip's `mwi` module printed last, from `since`.
fn last_mwi(phone: &Baresip, since: usize) -> Option<String> {
    let heading = format!("----- MWI for sip:dave@{REALM} -----");
    let shown = phone.since(since).replace("\r\n", "\n");
    let (_, last) = shown.rsplit_once(&heading)?;
    last.lines()
        .find(|l| l.starts_with("Voice-Message:"))
        .map(str::to_string)
}

#[test]
fn a_message_lights_the_lamp_is_mailed_and_fetched_as_it_was_said() {
    let smtp_port = free_port();
    let sink = tempfile::Builder::new()
        .prefix("switchboard-vm-flow-")
        .tempdir()
        .unwrap();
    let _relay = smtp_sink(sink.path(), smtp_port);
    let d = media_daemon_with(
        FLOW_POLICY,
        false,
        &format!(
            "[mail]\nrelay = \"127.0.0.1\"\nport = {smtp_port}\nfrom = \"switchboard@example.com\"\n"
        ),
    );
    // dave's phone subscribes to his mailbox and rings without answering.
    let phone = Baresip::start_with(
        &d,
        "dave",
        d.addr(),
        &["mwi.so"],
        ";mwi=yes;answermode=manual",
    );
    let shown = wait_until(Duration::from_secs(20), Duration::from_millis(50), || {
        last_mwi(&phone, 0).filter(|l| l.starts_with("Voice-Message: 0/0"))
    });
    assert!(shown.is_some(), "no lamp at first\n{}", phone.since(0));
    let mark = phone.proc.log_len();

    let said = leave_message(
        &d,
        &["digits/7", "phrases/thank_you_for_calling", "digits/3"],
        1,
    );
    wait_count(&d, "voicemail message kept", 1);
    assert!(
        phone.since(0).contains("INVITE sip:dave"),
        "the phone never rang"
    );
    let expected = Law::MuLaw.decode(&said);

    // The lamp lights.
    let lit = wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
        last_mwi(&phone, mark).filter(|l| l.starts_with("Voice-Message: 1/0"))
    });
    assert!(
        lit.is_some(),
        "the lamp did not light\n{}",
        phone.since(mark)
    );

    // The API lists it and gives its audio.
    let list = http(&d, "GET", "/v1/users/dave/voicemail", Some(ADMIN_TOKEN), "");
    assert_eq!(list.status, 200, "{}", list.body);
    let list: serde_json::Value = serde_json::from_str(&list.body).unwrap();
    let message = &list["messages"][0];
    assert_eq!(message["reason"], "no_answer", "{list}");
    assert_eq!(message["caller"], "carl", "{list}");
    let id = message["id"].as_str().unwrap().to_string();
    let audio = http_exchange(
        &d,
        "GET",
        &format!("/v1/users/dave/voicemail/{id}/audio"),
        Some(ADMIN_TOKEN),
        None,
        b"",
    );
    assert_eq!(audio.status, 200);
    let audio = audio.body;
    let fetched = switchboard_media::wav::decode(&audio, usize::MAX).unwrap();
    assert!(fetched == expected, "the API's audio is not what was said");

    // The mail, with the same audio attached.
    let mail = wait_until(Duration::from_secs(20), Duration::from_millis(100), || {
        mail_files(sink.path()).into_iter().next()
    })
    .unwrap_or_else(|| panic!("no mail\n{}", d.log()));
    let (text, attachment) = read_mail(&mail, sink.path());
    assert!(text.contains("To: dave@example.com"), "{text}");
    assert!(text.contains("Attachment: audio/wav"), "{text}");
    assert_eq!(
        attachment, audio,
        "the attachment is not the message's audio"
    );

    // Heard: the lamp goes out.
    let mark = phone.proc.log_len();
    let r = http(
        &d,
        "PUT",
        &format!("/v1/users/dave/voicemail/{id}"),
        Some(ADMIN_TOKEN),
        r#"{"heard": true}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let out = wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
        last_mwi(&phone, mark).filter(|l| l.starts_with("Voice-Message: 0/1"))
    });
    assert!(out.is_some(), "the lamp stayed lit\n{}", phone.since(mark));
}
