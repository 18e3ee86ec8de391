//! Voicemail in the tests: the prompts a caller hears, speech to leave, a phone's audio
//! played by the test (it hears the daemon's RTP, speaks and presses keys as RFC 4733
//! events), and waiting for the daemon's log and its stop.

use super::media::prompts;
use super::{wait_until, Daemon};
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};
use switchboard_media::dtmf::{self, Digit};
use switchboard_media::g711::Law;
use switchboard_media::say::{self, phrase};

/// The log line of a mailbox whose greeting (and beep) has played: the recording starts.
pub const RECORDING: &str = "mailbox greeting played; recording";

/// The samples of these prompts of prompts/en, one after another.
pub fn said<S: AsRef<str>>(names: &[S]) -> Vec<i16> {
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
pub fn speech(names: &[&str]) -> Vec<u8> {
    let mut codes = Law::MuLaw.encode(&said(names));
    codes.truncate(codes.len() / 160 * 160);
    codes
}

/// The default greeting of the mailbox of a person at `extension` without a recorded
/// name ("extension 1 0 0 2 is not available, please leave a message after the tone")
/// and the beep.
pub fn default_greeting(extension: &str) -> Vec<i16> {
    let mut names = vec![phrase::EXTENSION];
    say::language("en")
        .unwrap()
        .say_digits(extension, &mut names)
        .unwrap();
    names.extend([
        phrase::IS_NOT_AVAILABLE,
        phrase::PLEASE_LEAVE_A_MESSAGE_AFTER_THE_TONE,
        phrase::BEEP,
    ]);
    said(&names)
}

/// A phone's audio: the test's socket, where the daemon sends its RTP and from where the
/// test speaks and presses keys.
pub struct Phone {
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
    pub fn new() -> Phone {
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

    pub fn port(&self) -> u16 {
        self.socket.local_addr().unwrap().port()
    }

    /// Listens until `quiet` passes without a packet after some came (or `limit`): what
    /// was heard meanwhile, in µ-law.
    pub fn listen(&mut self, quiet: Duration, limit: Duration) -> Vec<u8> {
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
    pub fn hear(&mut self, expected: &[i16], what: &str, limit: Duration) {
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
    pub fn drain(&mut self, quiet: Duration) {
        self.listen(quiet, Duration::from_secs(60));
        self.mark = self.heard.len();
    }

    pub fn send(&mut self, pt: u8, marker: bool, payload: &[u8], advance: u32) {
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
    pub fn speak(&mut self, codes: &[u8]) {
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
    pub fn press(&mut self, keys: &str) {
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

    /// Hears `prompts` (of prompts/en, one after another), as [`Phone::hear`] within 30 s.
    pub fn hears(&mut self, prompts: &[&str], what: &str) {
        self.hear(&said(prompts), what, Duration::from_secs(30));
    }

    /// Lets what is playing end (nothing more for half a second), then presses `keys`.
    pub fn then_press(&mut self, keys: &str) {
        self.drain(Duration::from_millis(500));
        self.press(keys);
    }
}

/// Where `hay` holds `needle`, if it does.
pub fn find(hay: &[i16], needle: &[i16]) -> Option<usize> {
    if hay.len() < needle.len() {
        return None;
    }
    (0..=hay.len() - needle.len()).find(|&at| hay[at..].starts_with(needle))
}

/// Waits (bounded) until `pattern` is in the daemon's log `n` times.
pub fn wait_count(d: &Daemon, pattern: &str, n: usize) {
    let seen = wait_until(Duration::from_secs(30), Duration::from_millis(20), || {
        (d.log().matches(pattern).count() >= n).then_some(())
    });
    assert!(seen.is_some(), "no {pattern:?} ×{n} in\n{}", d.log());
}

/// SIGTERM, and the daemon gone (bounded).
pub fn stop(d: &mut Daemon) {
    std::process::Command::new("kill")
        .args(["-TERM", &d.pid().to_string()])
        .status()
        .unwrap();
    let gone = wait_until(Duration::from_secs(15), Duration::from_millis(50), || {
        (!d.running()).then_some(())
    });
    assert!(gone.is_some(), "still running after SIGTERM\n{}", d.log());
}
