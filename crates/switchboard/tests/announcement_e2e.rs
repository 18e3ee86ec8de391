//! The daemon's voice end to end: bob's Meeting profile refuses calls until a known time; a
//! SIPp caller (`call_early_media.xml`) calls him with an SDP offer whose audio port is a
//! UDP socket of this test. The caller gets 183 with our SDP answer, the test receives the
//! announcement's RTP and checks its payload is exactly the G.711 of the prompts "extension
//! one zero zero two is in a meeting until HH MM", then the caller gets the profile's 480.
//! And baresip, calling the same way, records what it hears (its `sndfile` module): the
//! recording matches the rendered prompts by energy envelope and sample correlation.

mod common;

use common::media::{check_heard, correlation, envelope, media_daemon, prompts, receive_rtp};
use common::*;
use std::net::UdpSocket;
use std::time::Duration;
use switchboard_media::g711::Law;
use switchboard_media::say::{self, ClockTime, HourCycle};

const POLICY: &str = r#"
[users.alice]
extension = "1001"
[users.bob]
extension = "1002"
[profiles.meeting]
incoming = "reject"
reject_reason = "In a meeting"
"#;

/// Puts bob in a meeting that ends in a few minutes, on the minute (UTC: he has no
/// schedule), and gives the prompts a caller must hear, rendered from the prompt files:
/// "extension one zero zero two is in a meeting until HH MM" (their names, and the prompts).
fn meeting_until_soon(d: &Daemon) -> (Vec<&'static str>, Vec<switchboard_media::prompts::Prompt>) {
    use chrono::Timelike;
    let now = chrono::Utc::now();
    let end = chrono::DateTime::from_timestamp((now.timestamp() / 60 + 5) * 60, 0).unwrap();
    let body = format!(
        r#"{{"profile":"meeting","until":"{}"}}"#,
        end.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    let (code, answer) = admin_api(d, "PUT", "/v1/presence/bob/profile", &body);
    assert_eq!(code, 200, "{answer}");
    let en = say::language("en").unwrap();
    let mut names = vec![say::phrase::EXTENSION];
    en.say_digits("1002", &mut names).unwrap();
    names.extend([say::phrase::IS_IN_A_MEETING, say::phrase::UNTIL]);
    if end.date_naive() != now.date_naive() {
        names.extend(["time/tomorrow", "time/at"]);
    }
    let time = ClockTime::new(end.hour() as u8, end.minute() as u8).unwrap();
    en.say_time(time, HourCycle::H24, &mut names);
    let prompts = prompts();
    let said = names
        .iter()
        .map(|n| {
            prompts
                .get(n)
                .unwrap_or_else(|| panic!("no prompt {n}"))
                .clone()
        })
        .collect();
    (names, said)
}

#[test]
fn a_meeting_profile_is_announced_with_its_end_time_then_refused() {
    let d = media_daemon(POLICY, false);

    // Bob's meeting ends in a few minutes; what the caller must hear, in µ-law (the
    // offer's codec).
    let (names, said) = meeting_until_soon(&d);
    let expected: Vec<u8> = said
        .iter()
        .flat_map(|p| Law::MuLaw.encode(p.samples()))
        .collect();

    // The caller's audio port: this test's socket.
    let audio = UdpSocket::bind(("127.0.0.1", 0)).unwrap();
    let port = audio.local_addr().unwrap().port();
    let reader = std::thread::spawn(move || {
        receive_rtp(&audio, Duration::from_secs(2), Duration::from_secs(40))
    });
    let run = Sipp::new(&d, "call_early_media.xml")
        .row(call_row("alice", "", "1002", &port.to_string()))
        .ok();
    let packets = reader.join().unwrap();

    // 183 with our SDP (PCMU), then 480 with the profile's words.
    let statuses = run.statuses();
    assert!(statuses.contains(&183), "{statuses:?}");
    assert_eq!(statuses.last(), Some(&480), "{statuses:?}");
    let early = run
        .received()
        .into_iter()
        .find(|m| m.starts_with("SIP/2.0 183"))
        .unwrap();
    assert!(early.contains("Content-Type: application/sdp"), "{early}");
    assert!(early.contains("c=IN IP4 127.0.0.1"), "{early}");
    let last = run.received().into_iter().last().unwrap();
    assert!(last.starts_with("SIP/2.0 480 In a meeting"), "{last}");

    // The RTP: PCMU, in order, one stream, exactly the prompts (the last packet filled
    // up with silence).
    check_heard(&packets, 0, &expected, Law::MuLaw.silence())
        .unwrap_or_else(|e| panic!("{e}: the prompts {names:?}\n{}", d.log()));
    // Played to its end, the session closed, as the metrics say.
    assert!(d.log_contains("played"), "{}", d.log());
    let (_, metrics) = admin_api(&d, "GET", "/metrics", "");
    assert!(
        metrics.contains("switchboard_messages_total{result=\"played\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("switchboard_media_sessions 0"),
        "{metrics}"
    );
    // One session was opened for it, and the refused call has its record.
    assert!(
        metrics.contains("switchboard_media_sessions_opened_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("switchboard_call_records_total{outcome=\"rejected\"} 1"),
        "{metrics}"
    );
}

/// baresip calls bob (Meeting until a known minute) and records what it hears (its
/// `sndfile` module): the recording matches the rendered prompts of the announcement by
/// energy envelope and, aligned, sample by sample; then baresip gets 480 In a meeting.
#[test]
fn baresip_hears_the_announcement() {
    require("baresip");
    let d = media_daemon(POLICY, false);
    // What it should hear: the prompts, through µ-law and back.
    let (_, said) = meeting_until_soon(&d);
    let expected: Vec<i16> = said
        .iter()
        .flat_map(|p| Law::MuLaw.decode(&Law::MuLaw.encode(p.samples())))
        .collect();

    let dir = tempfile::tempdir_in(d.dir.path()).unwrap().keep();
    let rec = dir.join("rec");
    std::fs::create_dir_all(&rec).unwrap();
    let sip_port = free_ports(2);
    std::fs::write(
        dir.join("config"),
        format!(
            "poll_method epoll\nsip_listen 127.0.0.1:{sip_port}\nnet_interface 127.0.0.1\n\
             audio_source aubridge,nullmic\naudio_player aubridge,nullspk\n\
             ausrc_srate 8000\nausrc_channels 1\nauplay_srate 8000\nauplay_channels 1\n\
             module_path /usr/lib/baresip/modules\nmodule g711.so\nmodule aubridge.so\n\
             module sndfile.so\nsnd_path {}\nmodule_app account.so\nmodule_app menu.so\n",
            rec.display()
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
    let mut cmd = std::process::Command::new("baresip");
    // -t: baresip quits by itself should the guard somehow not stop it.
    cmd.arg("-f")
        .arg(&dir)
        .args(["-e", &format!("/dial sip:1002@{REALM}"), "-t", "40"]);
    let mut phone = Proc::spawn("baresip", &mut cmd, dir.join("baresip.log"), false);
    phone.wait_for_log("480 In a meeting", Duration::from_secs(30));
    phone.kill();
    assert!(
        phone.log_contains("183 Session Progress"),
        "{}",
        phone.log()
    );

    // The decoder's side of the recording: what baresip played to its speaker.
    let file = std::fs::read_dir(&rec)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.to_string_lossy().ends_with("-dec.wav"))
        .unwrap_or_else(|| panic!("no recording\n{}", phone.log()));
    let mut reader = hound::WavReader::open(&file).unwrap();
    assert_eq!(reader.spec().sample_rate, 8000);
    let heard: Vec<i16> = reader.samples::<i16>().map(|s| s.unwrap()).collect();
    assert!(
        heard.len() + 1600 >= expected.len(),
        "heard {} samples, expected {}",
        heard.len(),
        expected.len()
    );

    // Aligned by the energy envelope (a jitter buffer delays the start)…
    let (he, ee) = (envelope(&heard), envelope(&expected));
    let (lag, best) = (0..he.len().saturating_sub(ee.len() / 2).min(100))
        .map(|lag| (lag, correlation(&he[lag..], &ee)))
        .fold((0, f64::MIN), |a, b| if b.1 > a.1 { b } else { a });
    assert!(best > 0.9, "envelope correlation {best:.3} at {lag} frames");
    // …then sample by sample around that lag.
    let to_f = |s: &[i16]| s.iter().map(|&x| f64::from(x)).collect::<Vec<_>>();
    let (hf, ef) = (to_f(&heard), to_f(&expected));
    let from = (lag * 160).saturating_sub(160);
    let fine = (from..(lag * 160 + 160).min(hf.len()))
        .map(|at| correlation(&hf[at..], &ef))
        .fold(f64::MIN, f64::max);
    eprintln!("envelope {best:.3} at {lag} frames, samples {fine:.3}");
    assert!(fine > 0.9, "sample correlation {fine:.3}");
}

/// Erin has no phone: her calls go to an announcement that answers (200), then to a
/// second one in the same call, then the daemon hangs up. Frank's go to a long one the
/// caller hangs up on.
const ANSWERED_POLICY: &str = r#"
[users.erin]
extension = "1005"
no_answer = "announcement:closed"
[users.frank]
extension = "1006"
no_answer = "announcement:long"
[destinations.closed]
kind = "announcement"
message = "our_office_is_now_closed"
answer = true
next = "announcement:bye"
[destinations.bye]
kind = "announcement"
message = "goodbye"
answer = true
next = "hangup"
[destinations.long]
kind = "announcement"
message = "when_you_have_finished"
answer = true
"#;

/// The daemon with its voice, for the answered announcements.
fn answering_daemon() -> Daemon {
    media_daemon(ANSWERED_POLICY, false)
}

/// Prompt `name` of prompts/en in µ-law, its last packet filled up with silence (each
/// message is played to the end of its last packet).
fn mulaw_padded(name: &str) -> Vec<u8> {
    let prompts = prompts();
    let p = prompts
        .get(name)
        .unwrap_or_else(|| panic!("no prompt {name}"));
    let mut bytes = Law::MuLaw.encode(p.samples());
    while !bytes.len().is_multiple_of(160) {
        bytes.push(Law::MuLaw.silence());
    }
    bytes
}

#[test]
fn an_answered_announcement_is_heard_then_the_next_one_then_the_daemon_hangs_up() {
    let d = answering_daemon();
    let mut expected = mulaw_padded("phrases/our_office_is_now_closed");
    expected.extend(mulaw_padded("phrases/goodbye"));

    let audio = UdpSocket::bind(("127.0.0.1", 0)).unwrap();
    let port = audio.local_addr().unwrap().port();
    let reader = std::thread::spawn(move || {
        receive_rtp(&audio, Duration::from_secs(2), Duration::from_secs(40))
    });
    let run = Sipp::new(&d, "call_announcement_answered.xml")
        .row(call_row("caller", "", "1005", &port.to_string()))
        .ok();
    let packets = reader.join().unwrap();

    // 200 with our SDP (PCMU); our BYE came and was answered.
    let statuses = run.statuses();
    assert_eq!(statuses.last(), Some(&200), "{statuses:?}");
    let ok = run
        .received()
        .into_iter()
        .find(|m| m.starts_with("SIP/2.0 200"))
        .unwrap();
    assert!(ok.contains("Content-Type: application/sdp"), "{ok}");
    assert!(ok.contains("c=IN IP4 127.0.0.1"), "{ok}");
    let bye = run
        .received()
        .into_iter()
        .find(|m| m.starts_with("BYE "))
        .unwrap_or_else(|| panic!("no BYE\n{}", run.report()));
    assert!(bye.starts_with("BYE sip:caller@127.0.0.1:"), "{bye}");

    // What the caller heard: both messages, exactly, in one stream.
    assert!(!packets.is_empty(), "no RTP\n{}", d.log());
    assert!(packets.iter().all(|p| p.pt == 0));
    for w in packets.windows(2) {
        assert_eq!(w[1].seq, w[0].seq.wrapping_add(1), "lost or reordered");
    }
    let heard: Vec<u8> = packets.iter().flat_map(|p| p.payload.clone()).collect();
    assert_eq!(heard.len(), expected.len(), "{}", d.log());
    assert!(heard == expected, "the audio differs from the two prompts");

    // The call was answered, by the announcement; its session is closed.
    let (_, metrics) = admin_api(&d, "GET", "/metrics", "");
    assert!(
        metrics.contains("switchboard_media_sessions 0"),
        "{metrics}"
    );
    assert!(
        d.log_contains("answered by announcement closed"),
        "{}",
        d.log()
    );
}

#[test]
fn a_caller_who_hangs_up_an_answered_announcement_gets_200_and_its_rtp_stops() {
    let d = answering_daemon();
    let whole = mulaw_padded("phrases/when_you_have_finished");

    let audio = UdpSocket::bind(("127.0.0.1", 0)).unwrap();
    let port = audio.local_addr().unwrap().port();
    let reader = std::thread::spawn(move || {
        receive_rtp(&audio, Duration::from_secs(2), Duration::from_secs(40))
    });
    let run = Sipp::new(&d, "call_announcement_hang_up.xml")
        .row(call_row("caller", "", "1006", &port.to_string()))
        .ok();
    let packets = reader.join().unwrap();
    // The BYE's 200 (the INVITE's 200 before it).
    assert_eq!(run.statuses().last(), Some(&200), "{}", run.report());
    // Some of the message, not all of it: the session stopped at the BYE.
    assert!(!packets.is_empty(), "no RTP\n{}", d.log());
    let heard: usize = packets.iter().map(|p| p.payload.len()).sum();
    assert!(heard < whole.len(), "{heard} of {}", whole.len());
    let (_, metrics) = admin_api(&d, "GET", "/metrics", "");
    assert!(
        metrics.contains("switchboard_media_sessions 0"),
        "{metrics}"
    );
}

#[test]
fn an_offer_with_only_a_codec_we_lack_gets_488_with_a_warning() {
    let d = answering_daemon();
    let run = Sipp::new(&d, "call_only_g722.xml")
        .row(call_row("caller", "", "1005", "40000"))
        .ok();
    assert_eq!(run.statuses().last(), Some(&488), "{}", run.report());
    let refusal = run
        .received()
        .into_iter()
        .find(|m| m.starts_with("SIP/2.0 488"))
        .unwrap();
    assert!(
        refusal.contains("Warning: 305 ") && refusal.contains("\"Incompatible media format\""),
        "{refusal}"
    );
    let (_, metrics) = admin_api(&d, "GET", "/metrics", "");
    assert!(
        metrics.contains("switchboard_media_sessions 0"),
        "{metrics}"
    );
}

/// bob records his name (uploaded through the API, as `*97` then 0 would record it): the
/// announcement of his meeting says that name instead of "extension one zero zero two".
#[test]
fn a_name_the_person_recorded_is_said_instead_of_their_extension() {
    let d = media_daemon(POLICY, false);
    // Half a second of a recognisable sound, in the WAV format uploads take.
    let name: Vec<i16> = (0..4000).map(|i| ((i % 40) as i16 - 20) * 500).collect();
    let r = http_exchange(
        &d,
        "PUT",
        "/v1/users/bob/voicemail/name",
        Some(ADMIN_TOKEN),
        Some("audio/wav"),
        &switchboard_media::wav::encode(&name),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));

    let (names, said) = meeting_until_soon(&d);
    // The name, then what follows "extension" and its four digits.
    let mut expected = Law::MuLaw.encode(&name);
    expected.extend(
        said[5..]
            .iter()
            .flat_map(|p| Law::MuLaw.encode(p.samples())),
    );

    let audio = UdpSocket::bind(("127.0.0.1", 0)).unwrap();
    let port = audio.local_addr().unwrap().port();
    let reader = std::thread::spawn(move || {
        receive_rtp(&audio, Duration::from_secs(2), Duration::from_secs(40))
    });
    let run = Sipp::new(&d, "call_early_media.xml")
        .row(call_row("alice", "", "1002", &port.to_string()))
        .ok();
    let packets = reader.join().unwrap();
    assert_eq!(run.statuses().last(), Some(&480));
    check_heard(&packets, 0, &expected, Law::MuLaw.silence())
        .unwrap_or_else(|e| panic!("{e}: bob's name, then {:?}\n{}", &names[5..], d.log()));
}
