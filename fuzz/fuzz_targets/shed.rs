//! Shedding before the parser, on whatever comes off a UDP socket: never a panic; a 503
//! only for a request, at most about twice its size (compact header names written out),
//! whole (its header section ends once), printable ASCII.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_net::shed::{triage, Triage};

fuzz_target!(|data: &[u8]| {
    if let Triage::Refuse(answer) = triage(data, "shed7", "Switchboard", "5") {
        assert!(
            answer.len() <= 2 * data.len() + 160,
            "{} for {}",
            answer.len(),
            data.len()
        );
        assert!(answer.starts_with(b"SIP/2.0 503 Service Unavailable\r\n"));
        assert!(answer.ends_with(b"\r\nContent-Length: 0\r\n\r\n"));
        assert_eq!(memchr_count(&answer, b"\r\n\r\n"), 1);
        assert!(answer
            .iter()
            .all(|&b| matches!(b, b'\r' | b'\n' | b'\t' | 0x20..=0x7e)));
    }
});

/// How many times `needle` is in `hay`.
fn memchr_count(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}
