//! RFC 3263 server location fed by the network: a URI as a request carries it (the first
//! line of the input), then DNS answers made of the rest. Never a panic; every resolution
//! ends; a list holds each target once, at most MAX_TARGETS.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::time::{Duration, Instant};
use switchboard_sip::entropy::Entropy;
use switchboard_sip::locate::{
    Answer, Locator, LocatorConfig, Naptr, Record, Resolution, Srv, MAX_TARGETS,
};

/// An answer made of input bytes: its kind and records.
fn answer(bytes: &mut impl Iterator<Item = u8>) -> Answer {
    let mut next = || bytes.next().unwrap_or(0);
    let ttl = Duration::from_secs(u64::from(next() % 4));
    match next() % 4 {
        0 => Answer::Failed("fuzz".into()),
        1 => Answer::NoRecords { ttl: Some(ttl) },
        _ => {
            let mut records = Vec::new();
            for _ in 0..next() % 6 {
                let (a, b, c) = (next(), next(), next());
                let host = [
                    "a.test",
                    "b.test.",
                    ".",
                    "",
                    "_sip._udp.x.test",
                    "192.0.2.1",
                ][usize::from(c % 6)];
                records.push(match a % 4 {
                    0 => Record::Srv(Srv {
                        priority: u16::from(b % 3),
                        weight: u16::from(c),
                        port: u16::from(b),
                        target: host.into(),
                    }),
                    1 => Record::Naptr(Naptr {
                        order: u16::from(b % 3),
                        preference: u16::from(c % 3),
                        flags: ["S", "s", "A", ""][usize::from(b % 4)].into(),
                        services: ["SIP+D2U", "SIP+D2T", "SIPS+D2T", "x"][usize::from(c % 4)]
                            .into(),
                        regexp: String::new(),
                        replacement: host.into(),
                    }),
                    2 => Record::Ip([192, 0, 2, b].into()),
                    _ => Record::Ip(
                        std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, u16::from(b)).into(),
                    ),
                });
            }
            Answer::Records { records, ttl }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|b| *b == b'\n').unwrap_or(data.len());
    let Ok(uri) = std::str::from_utf8(&data[..split]) else {
        return;
    };
    let mut bytes = data[split..].iter().copied();
    let mut loc = Locator::new(LocatorConfig::default(), Entropy::from_seed([7; 32]));
    let now = Instant::now();
    let outcome = match loc.resolve_uri(uri, now) {
        Resolution::Done(outcome) => outcome,
        Resolution::Pending(id) => {
            let mut outcome = None;
            for _ in 0..1000 {
                while let Some(q) = loc.poll_query() {
                    loc.handle_answer(q, answer(&mut bytes), now);
                }
                if let Some((got, o)) = loc.poll_resolved() {
                    assert_eq!(got, id);
                    outcome = Some(o);
                    break;
                }
            }
            outcome.expect("a resolution whose questions are all answered ends")
        }
    };
    if let Ok(r) = outcome {
        assert!(!r.targets.is_empty() && r.targets.len() <= MAX_TARGETS);
        for (i, t) in r.targets.iter().enumerate() {
            assert!(!r.targets[..i].contains(t));
        }
    }
});
