//! The daemon's own IVR menu end to end: a carrier's call (SIPp at the trunk's source
//! address, `call_early_media_answered.xml`) to a DID that goes to menu `main`. Its SDP
//! offer's audio port is a UDP socket of this test: the test receives the prompt's RTP
//! (and so learns the daemon's RTP address, symmetric RTP), then sends an RFC 4733 key press
//! back to it from that socket. Key 2 rings bob (a SIPp UAS registered as him), who answers
//! the caller; with no key the prompt plays again, then the menu's default (carol)
//! answers. The calls' records say which way the menu went. And a phone from Debian,
//! baresip, presses 2 in the same menu (its menu module sends RFC 4733 in early media).

mod common;

use common::baresip::Baresip;
use common::*;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};
use switchboard_media::dtmf::{digit_packets, Digit};
use switchboard_media::rtp::Sender;

/// The DID of the menu.
const DID: &str = "+493055500";

const POLICY: &str = r##"
[users.bob]
extension = "1002"
[users.bob.sip]
password = "bob-secret"
algorithms = ["md5"]

[users.carol]
extension = "1003"
[users.carol.sip]
password = "carol-secret"
algorithms = ["md5"]

[users.alice]
extension = "1001"
[users.alice.sip]
password = "alice-secret"
algorithms = ["md5"]

# The menu for colleagues: an extension without devices, whose calls go to it.
[users.ivr]
extension = "1005"
no_answer = "menu:main"

[trunks.carrier]
sources = ["127.0.0.2/32"]
dids = { "+493055500" = "menu:main" }

[destinations.main]
kind = "menu"
prompt = "thank_you_for_calling"
options = { "1" = "user:carol", "2" = "user:bob", "#" = "menu:main" }
timeout_secs = 1
retries = 1
default = "user:carol"
"##;

/// The daemon with its media on a range of free ports.
fn daemon() -> Daemon {
    common::media::media_daemon(POLICY, true)
}

/// What the caller's audio socket saw: RTP packets (with when they came) and where they
/// came from.
struct Heard {
    /// Arrival time and sequence number of each RTP packet.
    packets: Vec<(Instant, u16)>,
    from: Option<SocketAddr>,
    /// When each key press was sent, and how many packets had come by then.
    keys_sent: Vec<(Instant, usize)>,
}

/// Reads RTP on `socket` until `quiet` passes without a packet after the first (or `limit`
/// in all). For each of `keys` in turn, once `after` packets have come, sends that key press
/// to where they came from as RFC 4733 telephone-events (payload type 101: the offer's):
/// every packet with the same timestamp, the marker on the first, a growing duration, the
/// end three times, 20 ms apart.
fn listen(socket: &UdpSocket, keys: &[(char, usize)], quiet: Duration, limit: Duration) -> Heard {
    socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let start = Instant::now();
    let mut heard = Heard {
        packets: Vec::new(),
        from: None,
        keys_sent: Vec::new(),
    };
    let mut buf = [0u8; 2048];
    let mut sender = Sender::new(0x4d45_4e55, 1000);
    while start.elapsed() < limit {
        if let Some(&(at, _)) = heard.packets.last() {
            if at.elapsed() > quiet {
                break;
            }
        }
        let next = keys.get(heard.keys_sent.len());
        if let (Some(&(k, after)), Some(to)) = (next, heard.from) {
            if heard.packets.len() >= after {
                let digit = Digit::from_char(k).unwrap();
                // Each press an event of its own: its own timestamp.
                let timestamp = 160_000 + 16_000 * heard.keys_sent.len() as u32;
                for p in digit_packets(digit, 800, 160) {
                    let packet = sender.packet(101, p.marker, timestamp, &p.payload);
                    socket.send_to(&packet, to).unwrap();
                    std::thread::sleep(Duration::from_millis(20));
                }
                heard.keys_sent.push((Instant::now(), heard.packets.len()));
            }
        }
        let Ok((n, from)) = socket.recv_from(&mut buf) else {
            continue;
        };
        let p = &buf[..n];
        if n < 12 || p[0] >> 6 != 2 || p[1] & 0x7f != 0 {
            continue; // not PCMU RTP (RTCP, say)
        }
        heard.from.get_or_insert(from);
        heard
            .packets
            .push((Instant::now(), u16::from_be_bytes([p[2], p[3]])));
    }
    heard
}

/// A SIPp UAS registered as `user`, answering one call.
fn phone(d: &Daemon, user: &str, password: &str) -> Uas {
    let uas = Uas::start("uas_answer.xml", 1, &[]);
    uas.register(d, user, password);
    uas
}

/// The carrier's caller calls the menu's DID from 127.0.0.2, its audio on `port`.
fn call(d: &Daemon, port: u16) -> Uas {
    Sipp::new(d, "call_early_media_answered.xml")
        .local_ip("127.0.0.2")
        .row(call_row("+4915112345", "", DID, &port.to_string()))
        .spawn()
}

/// The steps of the record of the one call, once it has ended.
fn steps(d: &Daemon) -> Vec<String> {
    let record = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        let (code, body) = admin_api(d, "GET", "/v1/records?limit=10", "");
        assert_eq!(code, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["records"]
            .as_array()?
            .iter()
            .find(|r| r["ended"].is_u64())
            .cloned()
    })
    .unwrap_or_else(|| panic!("no record\n{}", d.log()));
    record["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn key_2_pressed_during_the_prompt_rings_bob_who_answers_the_caller() {
    let d = daemon();
    let bob = phone(&d, "bob", "bob-secret");
    let audio = UdpSocket::bind(("127.0.0.1", 0)).unwrap();
    let port = audio.local_addr().unwrap().port();
    let caller = call(&d, port);
    // Ten packets (200 ms) of the 1.3 s prompt, then key 2: barge-in.
    let heard = listen(
        &audio,
        &[('2', 10)],
        Duration::from_secs(2),
        Duration::from_secs(20),
    );
    let run = caller.finish(Duration::from_secs(40));
    assert!(run.success, "{}\ndaemon log:\n{}", run.report(), d.log());

    // The caller heard the prompt in early media (183 with our SDP), then bob's 200.
    let statuses = run.statuses();
    assert!(statuses.contains(&183), "{statuses:?}");
    assert_eq!(run.finals(), vec![200], "{}", run.report());
    let (sent, _) = *heard
        .keys_sent
        .first()
        .unwrap_or_else(|| panic!("no RTP to answer\n{}", d.log()));
    assert!(heard.packets.len() >= 10);
    // The prompt stopped at the key: no packet of ours well after it.
    let late = heard
        .packets
        .iter()
        .filter(|(at, _)| *at > sent + Duration::from_millis(300))
        .count();
    assert_eq!(late, 0, "the prompt went on after the key");

    // Bob's phone got the caller's INVITE and answered it.
    let bob = bob.finish(Duration::from_secs(20));
    assert!(bob.success, "{}\ndaemon log:\n{}", bob.report(), d.log());
    assert_eq!(bob.requests("INVITE").len(), 1);
    let steps = steps(&d);
    assert!(
        steps
            .iter()
            .any(|s| s.ends_with("menu main: key 2 → user:bob")),
        "{steps:?}"
    );
}

#[test]
fn no_key_plays_the_prompt_again_then_the_default_answers() {
    let d = daemon();
    let carol = phone(&d, "carol", "carol-secret");
    let audio = UdpSocket::bind(("127.0.0.1", 0)).unwrap();
    let port = audio.local_addr().unwrap().port();
    let caller = call(&d, port);
    // The prompt, a second of silence, the prompt again, a second: then carol rings.
    let heard = listen(&audio, &[], Duration::from_secs(3), Duration::from_secs(20));
    let run = caller.finish(Duration::from_secs(40));
    assert!(run.success, "{}\ndaemon log:\n{}", run.report(), d.log());
    assert_eq!(run.finals(), vec![200], "{}", run.report());

    // Two plays of the prompt, apart by the wait for a key (a gap of about a second).
    let gaps: Vec<Duration> = heard
        .packets
        .windows(2)
        .map(|w| w[1].0.duration_since(w[0].0))
        .filter(|g| *g > Duration::from_millis(500))
        .collect();
    assert_eq!(gaps.len(), 1, "{gaps:?}");
    assert!(heard.packets.len() >= 2 * 60, "{}", heard.packets.len());

    let carol = carol.finish(Duration::from_secs(20));
    assert!(
        carol.success,
        "{}\ndaemon log:\n{}",
        carol.report(),
        d.log()
    );
    let steps = steps(&d);
    assert!(
        steps
            .iter()
            .any(|s| s.ends_with("menu main: no key after 2 prompts → default")),
        "{steps:?}"
    );
}

#[test]
fn a_key_with_no_option_is_said_to_be_invalid_and_the_next_key_counts() {
    let d = daemon();
    let bob = phone(&d, "bob", "bob-secret");
    let audio = UdpSocket::bind(("127.0.0.1", 0)).unwrap();
    let port = audio.local_addr().unwrap().port();
    let caller = call(&d, port);
    // Key 5 (no option) during the prompt: "that is not a valid option" (1.6 s) and the
    // prompt again play; key 2 during them.
    let heard = listen(
        &audio,
        &[('5', 10), ('2', 60)],
        Duration::from_secs(2),
        Duration::from_secs(20),
    );
    let run = caller.finish(Duration::from_secs(40));
    assert!(run.success, "{}\ndaemon log:\n{}", run.report(), d.log());
    assert_eq!(run.finals(), vec![200], "{}", run.report());
    assert_eq!(
        heard.keys_sent.len(),
        2,
        "the menu stopped sending after the bad key"
    );
    let bob = bob.finish(Duration::from_secs(20));
    assert!(bob.success, "{}\ndaemon log:\n{}", bob.report(), d.log());
    let steps = steps(&d);
    assert!(
        steps
            .iter()
            .any(|s| s.ends_with("menu main: key 2 → user:bob")),
        "{steps:?}"
    );
}

#[test]
fn baresip_presses_a_key_in_early_media_and_reaches_the_option() {
    let d = daemon();
    let bob = phone(&d, "bob", "bob-secret");
    let alice = Baresip::start(&d, "alice", d.addr());
    let mark = alice.proc.log_len();
    alice.command("/dial sip:1005@switchboard.local");
    // The prompt plays in early media; a key during it.
    alice.wait(mark, "183 Session Progress", "early media");
    std::thread::sleep(Duration::from_millis(800));
    alice.key('2');
    alice.wait(mark, "Call established", "answered");
    alice.command("/hangup");
    let bob = bob.finish(Duration::from_secs(20));
    assert!(
        bob.success,
        "{}\ndaemon log:\n{}\nbaresip:\n{}",
        bob.report(),
        d.log(),
        alice.since(mark)
    );
    assert!(
        alice.since(mark).contains("send DTMF digit: '2'"),
        "{}",
        alice.since(mark)
    );
    let steps = steps(&d);
    assert!(
        steps
            .iter()
            .any(|s| s.ends_with("menu main: key 2 → user:bob")),
        "{steps:?}"
    );
}
