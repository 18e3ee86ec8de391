//! What reaches a media port: RTP and RTCP datagrams from the stream's source, from a port
//! that may be latched onto, from strangers, at times inside and past the learning window,
//! telephone-events among them; and DTMF in SIP INFO bodies. Never a panic; every datagram
//! accepted or counted as dropped; an accepted packet's payload lies within its datagram.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use switchboard_media::{dtmf, rtcp, rtp};

fuzz_target!(|data: &[u8]| {
    // The whole input as one datagram.
    if let Some(packet) = rtp::parse(data) {
        assert!(packet.payload.len() + rtp::HEADER_LEN <= data.len());
    }
    let _ = rtcp::parse(data);
    let _ = rtcp::is_rtcp(data);
    let _ = dtmf::parse_info("application/dtmf-relay", data);
    let _ = dtmf::parse_info("application/dtmf", data);

    // Then as a run of datagrams, each one [length][who and when][bytes].
    let sources = ["192.0.2.10:4000", "198.51.100.7:31000", "203.0.113.66:5000"];
    let t0 = Instant::now();
    let mut receiver = rtp::Receiver::new(
        rtp::ReceiveConfig {
            payload_types: vec![0, 8, 101],
            remote: Some(sources[0].parse().unwrap()),
            signalling: "198.51.100.7".parse().unwrap(),
            learning: Duration::from_secs(2),
        },
        t0,
    );
    let mut digits = dtmf::Receiver::new();
    let mut now = t0;
    let mut rest = data;
    let mut datagrams = 0;
    while rest.len() >= 2 {
        let len = usize::from(rest[0]).min(rest.len() - 2);
        let who = usize::from(rest[1] & 3) % sources.len();
        now += Duration::from_millis(u64::from(rest[1] >> 2) * 50);
        let datagram = &rest[2..2 + len];
        rest = &rest[2 + len..];
        if let Ok(packet) = receiver.receive(datagram, sources[who].parse().unwrap(), now) {
            assert!(packet.payload.len() + rtp::HEADER_LEN <= datagram.len());
            assert_eq!(receiver.ssrc(), Some(packet.ssrc));
            if packet.payload_type == 101 {
                let _ = digits.receive(packet.timestamp, packet.payload);
            }
        }
        datagrams += 1;
    }
    let counters = receiver.counters();
    assert_eq!(counters.accepted + counters.dropped(), datagrams);
});
