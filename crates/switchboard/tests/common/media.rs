//! The daemon's voice in the tests: a daemon with its media on free loopback ports, the
//! prompts it plays, and RTP as a caller's audio port receives it (the tests' own socket
//! stands for a phone's).

use super::{free_ports, Daemon, Options};
use std::net::UdpSocket;
use std::path::Path;
use std::time::{Duration, Instant};
use switchboard_media::prompts::Prompts;

/// A daemon with `policy`, its `[media]` on 127.0.0.1 and a range of free ports, started
/// with authentication required or not (`auth`), its media ready.
pub fn media_daemon(policy: &str, auth: bool) -> Daemon {
    media_daemon_with(policy, auth, "")
}

/// As [`media_daemon`], with more config sections (`extra`: `[mail]`…).
pub fn media_daemon_with(policy: &str, auth: bool, extra: &str) -> Daemon {
    let media = free_ports(100);
    let media = media + media % 2;
    let d = Daemon::start(Options {
        policy: policy.into(),
        auth,
        extra: format!(
            "[media]\nbind = \"127.0.0.1\"\nfirst_port = {media}\nlast_port = {}\n{extra}",
            media + 97
        ),
        ..Options::default()
    });
    assert!(d.log_contains("media ready"), "{}", d.log());
    d
}

/// The prompts of the repository (prompts/en): what the daemon plays unless an operator
/// replaced them.
pub fn prompts() -> Prompts {
    Prompts::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../prompts"),
        None,
        "en",
    )
    .unwrap()
}

/// One RTP packet as received: sequence number, payload type, payload, and when.
pub struct Packet {
    pub at: Instant,
    pub seq: u16,
    pub pt: u8,
    pub payload: Vec<u8>,
}

/// Reads RTP on `socket` until `quiet` passes without a packet after the first (or
/// `limit` in all).
pub fn receive_rtp(socket: &UdpSocket, quiet: Duration, limit: Duration) -> Vec<Packet> {
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let start = Instant::now();
    let mut last = None;
    let mut packets = Vec::new();
    let mut buf = [0u8; 2048];
    while start.elapsed() < limit {
        if let Some(at) = last {
            if Instant::now().duration_since(at) > quiet {
                break;
            }
        }
        let Ok(n) = socket.recv(&mut buf) else {
            continue;
        };
        let p = &buf[..n];
        // A plain RTP header (version 2, no CSRC, no extension): 12 octets.
        if n < 12 || p[0] >> 6 != 2 || p[0] & 0x1f != 0 {
            continue;
        }
        packets.push(Packet {
            at: Instant::now(),
            seq: u16::from_be_bytes([p[2], p[3]]),
            pt: p[1] & 0x7f,
            payload: p[12..].to_vec(),
        });
        last = Some(Instant::now());
    }
    packets
}

/// Whether `packets` are one stream, in order, of payload type `pt` and 20 ms (160 codes)
/// each, whose payload is exactly `expected` then `silence` up to the end of the last
/// packet: what a caller hears of a message. Or what differs.
pub fn check_heard(packets: &[Packet], pt: u8, expected: &[u8], silence: u8) -> Result<(), String> {
    if packets.is_empty() {
        return Err("no RTP".into());
    }
    if let Some(p) = packets.iter().find(|p| p.pt != pt) {
        return Err(format!("payload type {} (not {pt})", p.pt));
    }
    for w in packets.windows(2) {
        if w[1].seq != w[0].seq.wrapping_add(1) {
            return Err(format!("lost or reordered: {} then {}", w[0].seq, w[1].seq));
        }
    }
    if let Some(p) = packets.iter().find(|p| p.payload.len() != 160) {
        return Err(format!("a packet of {} codes", p.payload.len()));
    }
    let heard: Vec<u8> = packets.iter().flat_map(|p| p.payload.clone()).collect();
    if heard.len() < expected.len() || heard.len() - expected.len() >= 160 {
        return Err(format!(
            "{} codes heard, {} expected",
            heard.len(),
            expected.len()
        ));
    }
    if heard[..expected.len()] != expected[..] {
        return Err("the audio differs from the prompts".into());
    }
    if !heard[expected.len()..].iter().all(|&b| b == silence) {
        return Err("the last packet is not filled up with silence".into());
    }
    Ok(())
}

/// The RMS of each 20 ms frame (160 samples at 8 kHz).
pub fn envelope(samples: &[i16]) -> Vec<f64> {
    samples
        .chunks(160)
        .map(|c| (c.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / c.len() as f64).sqrt())
        .collect()
}

/// The correlation coefficient of `a` and `b` over their common length.
pub fn correlation(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    if n == 0 {
        return 0.0;
    }
    let (a, b) = (&a[..n], &b[..n]);
    let mean = |x: &[f64]| x.iter().sum::<f64>() / n as f64;
    let (ma, mb) = (mean(a), mean(b));
    let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
    for i in 0..n {
        let (x, y) = (a[i] - ma, b[i] - mb);
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    ab / (aa.sqrt() * bb.sqrt()).max(f64::MIN_POSITIVE)
}
