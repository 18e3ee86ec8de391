//! A bridge's relay, sans-I/O: the packets accepted from one session's far end sent on to
//! another session's far end as that session's own stream.
//!
//! Two bridged sessions (the two legs of a call whose media the daemon anchors) each keep
//! the stream agreed in their own offer/answer. A packet of one is therefore not forwarded
//! as it is but re-packetised as the other's: that stream's SSRC, its payload types (the
//! codec's, the telephone-event's), its law (µ-law ↔ A-law, sample for sample through the
//! linear value, as [`crate::g711`] decodes and encodes), and its sequence numbers and
//! timestamps, which continue where that stream stands (after what the session played
//! before the bridge), not where the relayed one does.
//!
//! The numbers are mapped, not counted: at the first packet (the *anchor*) the relay takes
//! the offsets that put it at the outgoing stream's next sequence number and at the
//! timestamp of the outgoing stream's clock for that instant (never behind audio already
//! sent on it), and every later packet keeps its distance from the first. So the far end
//! sees the relayed stream's loss (a gap in the numbers), its silences (a jump in the
//! timestamps: silence suppression, RFC 3551 §4.1) and its order: a packet out of order is
//! relayed at once, in the order received, under its own mapped numbers, and the far end's
//! jitter buffer puts it back in place. Nothing is buffered and nothing is re-framed: one
//! packet out for each packet in, with the packet time its sender chose.
//!
//! The relay anchors again, and marks a new talkspurt, when the relayed stream changes its
//! SSRC (its sender restarted it; a re-INVITE moved it), when its sequence numbers jump as
//! far as a receiver takes for a restart, or when its timestamps stray more than
//! [`MAX_DRIFT`] from the outgoing stream's clock (a sender whose clock runs fast, for
//! hours; a jump of its timestamps): the outgoing stream stays within a second of its own
//! clock, which times the player's packets and the sender reports' timestamps.
//!
//! Telephone-events (RFC 4733) are relayed as events: the outgoing stream's telephone-event
//! payload type, the payload unchanged, the marker as received (it marks an event's first
//! packet). When the outgoing stream has no telephone-event type they are not relayed (the
//! session they came in on still reports the key: the engine's business).

use std::borrow::Cow;
use std::time::Instant;

use crate::g711::Law;
use crate::player::Player;
use crate::rtp::{sequence_delta, timestamp_after, timestamp_delta, Packet};

/// How far (in timestamp units, 8,000 a second) the relayed stream's mapped timestamps may
/// stray from the outgoing stream's clock before the relay anchors again: one second, far
/// more than any jitter, far less than a listener would mind once.
pub const MAX_DRIFT: u32 = 8_000;

/// A mapped sequence number this far ahead of the outgoing stream's next one, or further, is
/// a jump a receiver would take for a restart (RFC 3550 A.1's MAX_DROPOUT): anchor again.
const MAX_AHEAD: i32 = 3_000;

/// A mapped sequence number further behind than this is no late packet (RFC 3550 A.1's
/// MAX_MISORDER): anchor again.
const MAX_BEHIND: i32 = 100;

/// What the relay needs to know of one side's stream, as agreed in its offer/answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stream {
    /// The codec's law.
    pub law: Law,
    /// The codec's payload type.
    pub payload_type: u8,
    /// The telephone-event payload type, when the side has one.
    pub telephone_event: Option<u8>,
}

/// The offsets from the relayed stream's numbers to the outgoing stream's, for one SSRC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Anchor {
    ssrc: u32,
    sequence: u16,
    timestamp: u32,
}

/// One direction of a bridge: packets of stream `from` out as packets of stream `to`.
#[derive(Clone, Debug)]
pub struct Relay {
    from: Stream,
    to: Stream,
    /// The code of `to`'s law for each code of `from`'s, when the laws differ.
    transcode: Option<[u8; 256]>,
    anchor: Option<Anchor>,
}

impl Relay {
    /// A relay from stream `from` to stream `to` that has relayed nothing yet (its first
    /// packet anchors it).
    pub fn new(from: Stream, to: Stream) -> Relay {
        let transcode = (from.law != to.law).then(|| {
            let mut table = [0u8; 256];
            for (code, out) in (0..=255u8).zip(table.iter_mut()) {
                *out = to.law.encode_sample(from.law.decode_sample(code));
            }
            table
        });
        Relay {
            from,
            to,
            transcode,
            anchor: None,
        }
    }

    /// Re-packetises a packet accepted from stream `from` (its receiver's checks passed) as
    /// the next of `out`, the player of stream `to` (its SSRC, its numbering, its clock at
    /// `now`, its counts for the sender reports): the datagram to send. `None` when it is not
    /// to be relayed: a telephone-event while `to` has no telephone-event type, or a payload
    /// type of neither of `from`'s.
    pub fn relay(
        &mut self,
        packet: &Packet<'_>,
        out: &mut Player,
        now: Instant,
    ) -> Option<Vec<u8>> {
        let audio = packet.payload_type == self.from.payload_type;
        let payload_type = if audio {
            self.to.payload_type
        } else if Some(packet.payload_type) == self.from.telephone_event {
            self.to.telephone_event?
        } else {
            return None;
        };
        let clock = out.rtp_timestamp_at(now);
        let next_sequence = out.sender().next_sequence();
        let fits = |anchor: &Anchor| {
            let sequence = packet.sequence.wrapping_add(anchor.sequence);
            let timestamp = packet.timestamp.wrapping_add(anchor.timestamp);
            anchor.ssrc == packet.ssrc
                && (-MAX_BEHIND..MAX_AHEAD).contains(&sequence_delta(sequence, next_sequence))
                && timestamp_delta(timestamp, clock).unsigned_abs() <= MAX_DRIFT
        };
        let mut marker = packet.marker;
        let anchor = match self.anchor {
            Some(anchor) if fits(&anchor) => anchor,
            _ => {
                // Right after the audio already sent when that runs ahead of the clock (the
                // player's last packet is still playing out), else at the clock; never more
                // than half the drift allowed ahead, so the next packet fits.
                let start = match out.end_timestamp() {
                    Some(end)
                        if timestamp_after(end, clock)
                            && timestamp_delta(end, clock).unsigned_abs() < MAX_DRIFT / 2 =>
                    {
                        end
                    }
                    _ => clock,
                };
                let anchor = Anchor {
                    ssrc: packet.ssrc,
                    sequence: next_sequence.wrapping_sub(packet.sequence),
                    timestamp: start.wrapping_sub(packet.timestamp),
                };
                self.anchor = Some(anchor);
                // A new talkspurt for the far end's jitter buffer (an event keeps its own
                // marker: it says where the event starts).
                marker |= audio;
                anchor
            }
        };
        let payload: Cow<'_, [u8]> = match &self.transcode {
            Some(table) if audio => packet
                .payload
                .iter()
                .map(|&code| table[usize::from(code)])
                .collect(),
            _ => Cow::Borrowed(packet.payload),
        };
        let samples = if audio { payload.len() as u32 } else { 0 };
        Some(out.relayed(
            packet.sequence.wrapping_add(anchor.sequence),
            payload_type,
            marker,
            packet.timestamp.wrapping_add(anchor.timestamp),
            &payload,
            samples,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtmf::{digit_packets, Digit};
    use crate::player::PlayerConfig;
    use crate::rtp::{build, parse};
    use std::sync::Arc;
    use std::time::Duration;

    const MS: Duration = Duration::from_millis(1);
    const THEIR_SSRC: u32 = 0x5EED;

    fn a_law() -> Stream {
        Stream {
            law: Law::ALaw,
            payload_type: 8,
            telephone_event: Some(101),
        }
    }

    fn mu_law() -> Stream {
        Stream {
            law: Law::MuLaw,
            payload_type: 0,
            telephone_event: Some(96),
        }
    }

    /// The outgoing stream: SSRC 0xABCD, numbered from 1000, timestamps from 50,000 at `t0`.
    fn player(to: Stream, t0: Instant) -> Player {
        Player::new(
            PlayerConfig {
                law: to.law,
                payload_type: to.payload_type,
                ptime_ms: 20,
                ssrc: 0xABCD,
                first_sequence: 1000,
                first_timestamp: 50_000,
            },
            t0,
        )
    }

    /// A packet of the relayed stream (SSRC 0x5EED), its audio saying where it is.
    fn theirs(payload_type: u8, sequence: u16, timestamp: u32) -> Vec<u8> {
        let audio: Vec<u8> = (0..160).map(|i| (i as u16 + sequence) as u8).collect();
        build(payload_type, false, sequence, timestamp, THEIR_SSRC, &audio)
    }

    /// Relays `data` at `now`: the outgoing packet's (sequence, timestamp, marker).
    fn relay_at(relay: &mut Relay, out: &mut Player, data: &[u8], now: Instant) -> Vec<u8> {
        relay
            .relay(&parse(data).unwrap(), out, now)
            .expect("relayed")
    }

    fn numbers(data: &[u8]) -> (u16, u32, bool) {
        let p = parse(data).unwrap();
        (p.sequence, p.timestamp, p.marker)
    }

    #[test]
    fn a_bridge_started_mid_stream_continues_the_outgoing_numbering() {
        let t0 = Instant::now();
        let mut out = player(a_law(), t0);
        let mut relay = Relay::new(a_law(), a_law());
        // Their stream is well under way (sequence 5000, timestamp 1,000,000); ours has
        // sent nothing, and a second has passed on its clock.
        let now = t0 + 1000 * MS;
        let first = relay_at(&mut relay, &mut out, &theirs(8, 5000, 1_000_000), now);
        let p = parse(&first).unwrap();
        assert_eq!(
            (p.ssrc, p.payload_type, p.sequence, p.timestamp, p.marker),
            (0xABCD, 8, 1000, 58_000, true),
            "our SSRC, our next number, our clock, a new talkspurt"
        );
        assert_eq!(p.payload, parse(&theirs(8, 5000, 0)).unwrap().payload);
        // The next packets keep their distance from the first, whenever they arrive.
        let next = relay_at(
            &mut relay,
            &mut out,
            &theirs(8, 5001, 1_000_160),
            now + 35 * MS,
        );
        assert_eq!(numbers(&next), (1001, 58_160, false));
        // A packet lost before us: the gap stays a gap.
        let after_loss = relay_at(
            &mut relay,
            &mut out,
            &theirs(8, 5003, 1_000_480),
            now + 60 * MS,
        );
        assert_eq!(numbers(&after_loss), (1003, 58_480, false));
        // Out of order: relayed as received, each under its own numbers.
        let later = relay_at(
            &mut relay,
            &mut out,
            &theirs(8, 5005, 1_000_800),
            now + 100 * MS,
        );
        let earlier = relay_at(
            &mut relay,
            &mut out,
            &theirs(8, 5004, 1_000_640),
            now + 101 * MS,
        );
        assert_eq!(numbers(&later), (1005, 58_800, false));
        assert_eq!(numbers(&earlier), (1004, 58_640, false));
        assert_eq!(out.sender().next_sequence(), 1006);
        assert_eq!(
            out.end_timestamp(),
            Some(58_960),
            "a late packet does not move the end"
        );
        // A silence of theirs (silence suppression): the timestamps jump as theirs did.
        let resumed = relay_at(
            &mut relay,
            &mut out,
            &theirs(8, 5006, 1_024_800),
            now + 3100 * MS,
        );
        assert_eq!(numbers(&resumed), (1006, 82_800, false));
        // Relayed packets count in our sender reports.
        assert_eq!(
            (out.sender().packets_sent(), out.sender().octets_sent()),
            (6, 6 * 160)
        );
    }

    #[test]
    fn after_a_play_the_timestamps_and_numbers_continue() {
        let t0 = Instant::now();
        let mut out = player(a_law(), t0);
        out.push(Arc::from(vec![1u8; 480]));
        for n in 0..3 {
            out.poll_transmit(t0 + n * 20 * MS).unwrap();
        }
        assert_eq!(out.end_timestamp(), Some(50_480));
        let mut relay = Relay::new(a_law(), a_law());
        // The bridge's first packet comes while the last played one still plays out (at 45
        // ms of a packet that ends at 60): right after it, not over it.
        let first = relay_at(&mut relay, &mut out, &theirs(8, 7, 99), t0 + 45 * MS);
        assert_eq!(numbers(&first), (1003, 50_480, true));
        let second = relay_at(&mut relay, &mut out, &theirs(8, 8, 259), t0 + 65 * MS);
        assert_eq!(numbers(&second), (1004, 50_640, false));

        // A bridge that starts later, after a pause: at the clock's timestamp.
        let mut out = player(a_law(), t0);
        out.push(Arc::from(vec![1u8; 160]));
        out.poll_transmit(t0).unwrap();
        let mut relay = Relay::new(a_law(), a_law());
        let first = relay_at(&mut relay, &mut out, &theirs(8, 7, 99), t0 + 500 * MS);
        assert_eq!(numbers(&first), (1001, 54_000, true));

        // And the player's own next packet (after the bridge) starts a talkspurt.
        out.push(Arc::from(vec![1u8; 160]));
        let own = out.poll_transmit(t0 + 520 * MS).unwrap();
        let p = parse(&own).unwrap();
        assert_eq!((p.sequence, p.marker, p.ssrc), (1002, true, 0xABCD));
    }

    #[test]
    fn laws_are_transcoded_sample_for_sample_as_g711_round_trips() {
        let t0 = Instant::now();
        let every_code: Vec<u8> = (0..=255).collect();
        for (from, to) in [(mu_law(), a_law()), (a_law(), mu_law())] {
            let mut out = player(to, t0);
            let mut relay = Relay::new(from, to);
            let data = build(from.payload_type, false, 1, 0, THEIR_SSRC, &every_code);
            let sent = relay_at(&mut relay, &mut out, &data, t0);
            let p = parse(&sent).unwrap();
            assert_eq!(p.payload_type, to.payload_type);
            assert_eq!(p.payload, &to.law.encode(&from.law.decode(&every_code))[..]);
            assert_eq!(out.end_timestamp(), Some(50_000 + 256), "256 samples");
        }
        // The same law: the bytes as they came.
        let mut out = player(mu_law(), t0);
        let mut relay = Relay::new(mu_law(), mu_law());
        let data = build(0, false, 1, 0, THEIR_SSRC, &every_code);
        let sent = relay_at(&mut relay, &mut out, &data, t0);
        assert_eq!(parse(&sent).unwrap().payload, &every_code[..]);
    }

    #[test]
    fn telephone_events_are_relayed_as_events_under_our_payload_type() {
        let t0 = Instant::now();
        let mut out = player(mu_law(), t0);
        let mut relay = Relay::new(a_law(), mu_law());
        // Sound first, then a key press of three or more packets sharing one timestamp.
        relay_at(&mut relay, &mut out, &theirs(8, 20, 8_000), t0);
        let mut relayed = Vec::new();
        let events = digit_packets(Digit::from_char('7').unwrap(), 480, 160);
        for (sequence, event) in (21..).zip(events) {
            let data = build(
                101,
                event.marker,
                sequence,
                8_160,
                THEIR_SSRC,
                &event.payload,
            );
            let sent = relay_at(&mut relay, &mut out, &data, t0 + 20 * MS);
            let p = parse(&sent).unwrap();
            assert_eq!(p.payload_type, 96, "our telephone-event type");
            assert_eq!(p.payload, &event.payload[..], "the event as it came");
            assert_eq!(p.marker, event.marker, "the event's own marker");
            relayed.push((p.sequence, p.timestamp));
        }
        let n = relayed.len() as u16;
        assert_eq!(
            relayed,
            (0..n).map(|k| (1001 + k, 50_160)).collect::<Vec<_>>(),
            "consecutive numbers, one timestamp: the event's start mapped"
        );
        assert_eq!(out.end_timestamp(), Some(50_160), "events carry no audio");

        // Towards a side without telephone-events: not relayed (its sound goes on).
        let mut out = player(a_law(), t0);
        let mut relay = Relay::new(
            mu_law(),
            Stream {
                telephone_event: None,
                ..a_law()
            },
        );
        let event = build(96, true, 1, 0, THEIR_SSRC, &[7, 10, 0, 160]);
        assert_eq!(relay.relay(&parse(&event).unwrap(), &mut out, t0), None);
        // Nor is a payload type of neither of theirs.
        let other = build(9, false, 2, 0, THEIR_SSRC, &[0; 160]);
        assert_eq!(relay.relay(&parse(&other).unwrap(), &mut out, t0), None);
        assert_eq!(out.sender().packets_sent(), 0);
    }

    #[test]
    fn a_new_ssrc_a_restart_or_a_drift_anchors_again() {
        let t0 = Instant::now();
        let mut out = player(a_law(), t0);
        let mut relay = Relay::new(a_law(), a_law());
        relay_at(&mut relay, &mut out, &theirs(8, 100, 0), t0);
        relay_at(&mut relay, &mut out, &theirs(8, 101, 160), t0 + 20 * MS);
        // Another SSRC (the far end restarted its stream): our numbers go on, a talkspurt.
        let restarted = build(8, false, 9, 77_777, 0xBEEF, &[1; 160]);
        let p = relay_at(&mut relay, &mut out, &restarted, t0 + 40 * MS);
        assert_eq!(numbers(&p), (1002, 50_320, true));
        let p = relay_at(
            &mut relay,
            &mut out,
            &build(8, false, 10, 77_937, 0xBEEF, &[1; 160]),
            t0 + 60 * MS,
        );
        assert_eq!(numbers(&p), (1003, 50_480, false));
        // The same SSRC jumping its sequence numbers far ahead: anchored again.
        let p = relay_at(
            &mut relay,
            &mut out,
            &build(8, false, 30_000, 78_097, 0xBEEF, &[1; 160]),
            t0 + 80 * MS,
        );
        assert_eq!(numbers(&p), (1004, 50_640, true));
        // Timestamps that jump ten seconds ahead of the clock: back to the clock.
        let p = relay_at(
            &mut relay,
            &mut out,
            &build(8, false, 30_001, 158_257, 0xBEEF, &[1; 160]),
            t0 + 100 * MS,
        );
        assert_eq!(numbers(&p), (1005, 50_800, true));
        // A sender whose clock runs fast: followed within the drift allowed, then pulled back.
        let p = relay_at(
            &mut relay,
            &mut out,
            &build(8, false, 30_002, 158_257 + 160 + 7_000, 0xBEEF, &[1; 160]),
            t0 + 120 * MS,
        );
        assert_eq!(numbers(&p), (1006, 50_960 + 7_000, false));
        let p = relay_at(
            &mut relay,
            &mut out,
            &build(8, false, 30_003, 158_257 + 320 + 9_000, 0xBEEF, &[1; 160]),
            t0 + 140 * MS,
        );
        assert_eq!(
            numbers(&p),
            (1007, 51_120, true),
            "at the clock, not after the end 1 s ahead"
        );
    }
}
