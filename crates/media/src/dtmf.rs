//! Keypad digits (DTMF) the two ways they travel besides audio: RFC 4733 telephone-events in
//! the RTP stream, and SIP INFO requests (`application/dtmf-relay`, `application/dtmf`).
//!
//! A telephone-event is sent as several RTP packets, all with the event's start as their
//! timestamp: the first with the marker bit, each with the duration so far, and the last,
//! with the end bit, three times (RFC 4733 §2.5.1). The receiver therefore sees the same
//! event many times, and may lose, reorder or see repeated any of its packets: it reports a
//! digit on the first packet it gets of an event (an event is its timestamp and its code)
//! and ignores the rest.

/// The keys of the telephone keypad, in the order of their event codes (RFC 4733 §3.2).
const KEYS: &[u8; 16] = b"0123456789*#ABCD";

/// The volume sent with our events: −10 dBm0, a usual level for a key press.
const VOLUME: u8 = 10;

/// How many events the receiver remembers to recognise their later packets.
const REMEMBERED: usize = 16;

/// The longest SIP INFO body read.
const MAX_INFO_BODY: usize = 512;

/// A key of the keypad: `0`–`9`, `*`, `#`, `A`–`D` (events 0 to 15).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Digit(u8);

impl Digit {
    /// The key of an RFC 4733 event code; `None` for codes that are not keys (flash, tones).
    pub fn from_event(code: u8) -> Option<Digit> {
        (usize::from(code) < KEYS.len()).then_some(Digit(code))
    }

    /// The key written as a character (`a`–`d` as well as `A`–`D`).
    pub fn from_char(c: char) -> Option<Digit> {
        let upper = c.to_ascii_uppercase();
        KEYS.iter()
            .position(|&k| char::from(k) == upper)
            .map(|i| Digit(i as u8))
    }

    /// The key's event code.
    pub fn event(self) -> u8 {
        self.0
    }

    /// The key as a character.
    pub fn to_char(self) -> char {
        char::from(KEYS[usize::from(self.0)])
    }
}

/// The payload of a telephone-event packet (RFC 4733 §2.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventPayload {
    /// The event code (0–15 for the keys).
    pub event: u8,
    /// The end bit: the event is over, `duration` is its whole length.
    pub end: bool,
    /// The power level, in −dBm0 (6 bits).
    pub volume: u8,
    /// The duration so far, in timestamp units.
    pub duration: u16,
}

impl EventPayload {
    /// The four octets of the payload (the reserved bit zero).
    pub fn to_bytes(self) -> [u8; 4] {
        let [high, low] = self.duration.to_be_bytes();
        let flags = if self.end { 0x80 } else { 0 } | (self.volume & 0x3F);
        [self.event, flags, high, low]
    }

    /// Reads the first event of a payload; `None` when it is shorter than four octets.
    pub fn parse(payload: &[u8]) -> Option<EventPayload> {
        let &[event, flags, high, low, ..] = payload else {
            return None;
        };
        Some(EventPayload {
            event,
            end: flags & 0x80 != 0,
            volume: flags & 0x3F,
            duration: u16::from_be_bytes([high, low]),
        })
    }
}

/// One packet of a digit as it is to be sent. Every packet of the digit carries the same
/// RTP timestamp (the digit's start) and the payload type negotiated for telephone-event;
/// each gets its own sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventPacket {
    /// The marker bit: set on the first packet only.
    pub marker: bool,
    /// The payload.
    pub payload: [u8; 4],
}

/// The packets that send `digit` for `duration` timestamp units (800 = 100 ms at 8 kHz),
/// one every `interval` units (160 = 20 ms): packet k reports the duration up to the end of
/// its interval, and the end packet, with the whole duration, goes three times. A duration
/// of zero is sent as one interval; an interval of zero as 160.
pub fn digit_packets(digit: Digit, duration: u16, interval: u16) -> Vec<EventPacket> {
    let interval = if interval == 0 { 160 } else { interval };
    let duration = duration.max(1);
    let payload = |duration: u16, end: bool| {
        EventPayload {
            event: digit.event(),
            end,
            volume: VOLUME,
            duration,
        }
        .to_bytes()
    };
    let mut packets = Vec::new();
    let mut so_far = interval;
    while so_far < duration {
        packets.push(payload(so_far, false));
        so_far = so_far.saturating_add(interval);
    }
    packets.extend([payload(duration, true); 3]);
    packets
        .into_iter()
        .enumerate()
        .map(|(k, payload)| EventPacket {
            marker: k == 0,
            payload,
        })
        .collect()
}

/// Digits out of received telephone-event packets, each reported once.
#[derive(Clone, Debug, Default)]
pub struct Receiver {
    /// The last events seen, as (timestamp, event code), the oldest overwritten first.
    recent: [Option<(u32, u8)>; REMEMBERED],
    next: usize,
}

impl Receiver {
    /// A receiver that has seen nothing.
    pub fn new() -> Receiver {
        Receiver::default()
    }

    /// Takes the payload of a telephone-event packet with its RTP timestamp: the digit when
    /// this is the first packet received of a key's event, `None` for the event's other
    /// packets, for events that are not keys, and for payloads too short to read.
    pub fn receive(&mut self, timestamp: u32, payload: &[u8]) -> Option<Digit> {
        let event = EventPayload::parse(payload)?;
        let digit = Digit::from_event(event.event)?;
        let key = (timestamp, event.event);
        if self.recent.contains(&Some(key)) {
            return None;
        }
        self.recent[self.next] = Some(key);
        self.next = (self.next + 1) % REMEMBERED;
        Some(digit)
    }
}

/// A digit read from a SIP INFO body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InfoDigit {
    /// The key.
    pub digit: Digit,
    /// How long it was pressed, in milliseconds, when the body says.
    pub duration_ms: Option<u32>,
}

/// Why a SIP INFO body gave no digit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InfoError {
    /// A content type other than `application/dtmf-relay` and `application/dtmf`.
    #[error("not a DTMF content type")]
    ContentType,
    /// A body longer than a DTMF body is.
    #[error("DTMF body too long")]
    TooLong,
    /// No signal, or one that is not a key, or a duration that is not a number.
    #[error("malformed DTMF body")]
    Malformed,
}

/// Reads a SIP INFO body of type `application/dtmf-relay` (lines `Signal=5` and
/// `Duration=160`, in milliseconds) or `application/dtmf` (the key alone). A signal may be the
/// key's character or its event code (`10` for `*`, `11` for `#`).
pub fn parse_info(content_type: &str, body: &[u8]) -> Result<InfoDigit, InfoError> {
    let media_type = content_type.split(';').next().unwrap_or("").trim();
    let relay = media_type.eq_ignore_ascii_case("application/dtmf-relay");
    if !relay && !media_type.eq_ignore_ascii_case("application/dtmf") {
        return Err(InfoError::ContentType);
    }
    if body.len() > MAX_INFO_BODY {
        return Err(InfoError::TooLong);
    }
    let body = std::str::from_utf8(body).map_err(|_| InfoError::Malformed)?;
    if !relay {
        let digit = signal(body.trim()).ok_or(InfoError::Malformed)?;
        return Ok(InfoDigit {
            digit,
            duration_ms: None,
        });
    }
    let mut digit = None;
    let mut duration_ms = None;
    for line in body.lines() {
        let Some((name, value)) = line.split_once('=') else {
            continue;
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("signal") {
            digit = Some(signal(value).ok_or(InfoError::Malformed)?);
        } else if name.eq_ignore_ascii_case("duration") {
            duration_ms = Some(value.parse().map_err(|_| InfoError::Malformed)?);
        }
    }
    Ok(InfoDigit {
        digit: digit.ok_or(InfoError::Malformed)?,
        duration_ms,
    })
}

/// A signal as a key's character or its event code.
fn signal(value: &str) -> Option<Digit> {
    let mut chars = value.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) => Digit::from_char(c),
        _ => Digit::from_event(value.parse().ok()?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn digits_and_their_codes() {
        for (code, c) in "0123456789*#ABCD".chars().enumerate() {
            let digit = Digit::from_char(c).unwrap();
            assert_eq!(digit.event(), code as u8);
            assert_eq!(digit.to_char(), c);
            assert_eq!(Digit::from_event(code as u8), Some(digit));
        }
        assert_eq!(Digit::from_char('d'), Digit::from_char('D'));
        assert_eq!(Digit::from_char('E'), None);
        assert_eq!(Digit::from_event(16), None, "flash is not a key");
    }

    #[test]
    fn payload_bytes() {
        let payload = EventPayload {
            event: 11,
            end: true,
            volume: 10,
            duration: 800,
        };
        assert_eq!(payload.to_bytes(), [11, 0x8A, 0x03, 0x20]);
        assert_eq!(EventPayload::parse(&[11, 0x8A, 0x03, 0x20]), Some(payload));
        // The reserved bit is ignored; more octets (another event) too.
        assert_eq!(
            EventPayload::parse(&[11, 0xCA, 0x03, 0x20, 9]),
            Some(payload)
        );
        assert_eq!(EventPayload::parse(&[11, 0x8A, 0x03]), None);
    }

    #[test]
    fn the_packets_of_one_digit() {
        let five = Digit::from_char('5').unwrap();
        let packets = digit_packets(five, 800, 160);
        let read: Vec<(bool, EventPayload)> = packets
            .iter()
            .map(|p| (p.marker, EventPayload::parse(&p.payload).unwrap()))
            .collect();
        let progress = |duration| EventPayload {
            event: 5,
            end: false,
            volume: 10,
            duration,
        };
        let end = EventPayload {
            end: true,
            ..progress(800)
        };
        assert_eq!(
            read,
            [
                (true, progress(160)),
                (false, progress(320)),
                (false, progress(480)),
                (false, progress(640)),
                (false, end),
                (false, end),
                (false, end),
            ]
        );
    }

    #[test]
    fn short_and_odd_durations() {
        let one = Digit::from_char('1').unwrap();
        // Shorter than an interval: the end packets only, the first one marked.
        let packets = digit_packets(one, 100, 160);
        assert_eq!(packets.len(), 3);
        assert!(packets[0].marker && !packets[1].marker);
        assert_eq!(
            EventPayload::parse(&packets[0].payload).unwrap().duration,
            100
        );
        // Not a multiple: the end carries the true duration.
        let packets = digit_packets(one, 500, 160);
        let durations: Vec<u16> = packets
            .iter()
            .map(|p| EventPayload::parse(&p.payload).unwrap().duration)
            .collect();
        assert_eq!(durations, [160, 320, 480, 500, 500, 500]);
        // The longest duration the field holds, without overflow.
        let packets = digit_packets(one, u16::MAX, 160);
        assert_eq!(packets.len(), 409 + 3);
        // Zero duration and zero interval.
        assert_eq!(digit_packets(one, 0, 0).len(), 3);
    }

    #[test]
    fn reports_each_digit_once() {
        let mut rx = Receiver::new();
        let two = Digit::from_char('2').unwrap();
        let packets = digit_packets(two, 800, 160);
        let reported: Vec<Digit> = packets
            .iter()
            .filter_map(|p| rx.receive(1000, &p.payload))
            .collect();
        assert_eq!(reported, [two]);
        // The same key again is a new event: a new timestamp.
        assert_eq!(rx.receive(5000, &packets[3].payload), Some(two));
        // Not keys, too short: nothing.
        assert_eq!(rx.receive(9000, &[16, 0x0A, 0, 160]), None);
        assert_eq!(rx.receive(9000, &[1, 0x0A]), None);
    }

    #[test]
    fn an_event_whose_first_packets_were_lost_is_reported_by_its_end() {
        let mut rx = Receiver::new();
        let hash = Digit::from_char('#').unwrap();
        let packets = digit_packets(hash, 800, 160);
        assert_eq!(rx.receive(42, &packets[5].payload), Some(hash));
        assert_eq!(rx.receive(42, &packets[6].payload), None);
    }

    proptest! {
        /// Whatever is lost (but one packet of each event), reordered (by up to 8 packets)
        /// or repeated, each event is reported exactly once.
        #[test]
        fn loss_reordering_and_repeats_report_each_event_once(
            keys in proptest::collection::vec(0u8..16, 1..40),
            fate in proptest::collection::vec((any::<bool>(), 0u8..3, any::<u16>()), 200),
        ) {
            // Every event's packets, with its timestamp; the timestamps wrap on the way.
            let mut sent = Vec::new();
            for (i, &code) in keys.iter().enumerate() {
                let timestamp = (i as u32).wrapping_mul(2000).wrapping_sub(5000);
                for packet in digit_packets(Digit::from_event(code).unwrap(), 800, 160) {
                    sent.push((timestamp, packet.payload));
                }
            }
            // Losses (keeping the last packet of each event), repeats, then reordering.
            let mut wire = Vec::new();
            for (i, &(timestamp, payload)) in sent.iter().enumerate() {
                let (keep, copies, _) = fate[i % fate.len()];
                let last_of_event = sent.get(i + 1).is_none_or(|n| n.0 != timestamp);
                if keep || last_of_event {
                    for _ in 0..=copies {
                        wire.push((timestamp, payload));
                    }
                }
            }
            // Each packet moves up to 8 places (a network reorders packets close in time).
            let mut order: Vec<(usize, (u32, [u8; 4]))> = wire
                .into_iter()
                .enumerate()
                .map(|(i, packet)| (i + usize::from(fate[i % fate.len()].2 % 9), packet))
                .collect();
            order.sort_by_key(|&(at, _)| at);
            let mut rx = Receiver::new();
            let mut reported: Vec<(u32, u8)> = order
                .iter()
                .filter_map(|&(_, (t, p))| rx.receive(t, &p).map(|d| (t, d.event())))
                .collect();
            reported.sort_unstable();
            let mut expected: Vec<(u32, u8)> = keys
                .iter()
                .enumerate()
                .map(|(i, &k)| ((i as u32).wrapping_mul(2000).wrapping_sub(5000), k))
                .collect();
            expected.sort_unstable();
            prop_assert_eq!(reported, expected);
        }

        #[test]
        fn reading_anything_never_panics(timestamp: u32, payload: Vec<u8>, text: String) {
            let _ = Receiver::new().receive(timestamp, &payload);
            let _ = parse_info("application/dtmf-relay", text.as_bytes());
            let _ = parse_info("application/dtmf", &payload);
        }
    }

    #[test]
    fn sip_info_dtmf_relay() {
        let five = InfoDigit {
            digit: Digit::from_char('5').unwrap(),
            duration_ms: Some(160),
        };
        let relay = "application/dtmf-relay";
        assert_eq!(parse_info(relay, b"Signal=5\r\nDuration=160\r\n"), Ok(five));
        assert_eq!(parse_info(relay, b"Signal=5\r\nDuration=160"), Ok(five));
        assert_eq!(
            parse_info(
                "Application/DTMF-Relay; x=y",
                b"signal = 5\nduration= 160\n"
            ),
            Ok(five)
        );
        let star = parse_info(relay, b"Signal=*\r\nDuration=250\r\n").unwrap();
        assert_eq!((star.digit.to_char(), star.duration_ms), ('*', Some(250)));
        assert_eq!(
            parse_info(relay, b"Signal=11\r\n").unwrap().digit.to_char(),
            '#'
        );
        assert_eq!(
            parse_info(relay, b"Signal=d\r\n").unwrap().digit.to_char(),
            'D'
        );
        assert_eq!(parse_info(relay, b"Signal=5").unwrap().duration_ms, None);
        assert_eq!(
            parse_info(relay, b"Duration=160\r\n"),
            Err(InfoError::Malformed)
        );
        assert_eq!(
            parse_info(relay, b"Signal=!\r\n"),
            Err(InfoError::Malformed)
        );
        assert_eq!(
            parse_info(relay, b"Signal=16\r\n"),
            Err(InfoError::Malformed)
        );
        assert_eq!(
            parse_info(relay, b"Signal=5\r\nDuration=x\r\n"),
            Err(InfoError::Malformed)
        );
        assert_eq!(
            parse_info(relay, &[0xFF, b'=', b'5']),
            Err(InfoError::Malformed)
        );
        assert_eq!(parse_info(relay, &[b' '; 600]), Err(InfoError::TooLong));
    }

    #[test]
    fn sip_info_dtmf() {
        assert_eq!(
            parse_info("application/dtmf", b"7")
                .unwrap()
                .digit
                .to_char(),
            '7'
        );
        assert_eq!(
            parse_info("application/dtmf", b" # \r\n")
                .unwrap()
                .digit
                .to_char(),
            '#'
        );
        assert_eq!(
            parse_info("application/dtmf", b"10")
                .unwrap()
                .digit
                .to_char(),
            '*'
        );
        assert_eq!(
            parse_info("application/dtmf", b""),
            Err(InfoError::Malformed)
        );
        assert_eq!(
            parse_info("application/dtmf", b"77"),
            Err(InfoError::Malformed)
        );
        assert_eq!(parse_info("text/plain", b"7"), Err(InfoError::ContentType));
    }
}
