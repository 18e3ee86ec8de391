//! RTP (RFC 3550): reading and building packets, and what a receiver must decide about each
//! datagram that reaches a media port.
//!
//! The packet format is `rtp-rs`'s (`RtpReader`, `RtpPacketBuilder`); this module adds what
//! that crate leaves out: sequence and timestamp arithmetic across the wrap, a sender's
//! numbering ([`Sender`]), and a receive state per stream ([`Receiver`]) that accepts only
//! the negotiated payload types, one SSRC, in sequence order, from one source, and counts
//! everything it drops by reason.
//!
//! The source is where RTP bleed lives: a media server that "latches" onto whatever address
//! sends to its port first, or at any time, hands the call's audio to whoever sprays packets
//! at its ports. Here a packet is accepted from the address the SDP gave; a packet from
//! elsewhere is latched onto (symmetric RTP behind NAT, RFC 4961) only while a short learning
//! window is open after the start or a renegotiation, only if it comes from the IP address
//! the signalling came from (or the SDP's), and only once: after that the source is fixed.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rtp_rs::{RtpPacketBuilder, RtpReader, Seq};

/// A fixed RTP header's length: what a packet without CSRCs or extension carries before its
/// payload.
pub const HEADER_LEN: usize = 12;

/// A packet's header fields and payload, read from a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet<'a> {
    /// The payload type (7 bits).
    pub payload_type: u8,
    /// The marker bit: the start of a talkspurt, the first packet of a telephone-event.
    pub marker: bool,
    /// The sequence number.
    pub sequence: u16,
    /// The media timestamp (8,000 per second for G.711 and telephone-events).
    pub timestamp: u32,
    /// The synchronization source: which stream the packet belongs to.
    pub ssrc: u32,
    /// The payload, after CSRCs and extension, without padding.
    pub payload: &'a [u8],
}

/// Reads an RTP packet (version 2, consistent CSRC count, extension and padding lengths);
/// `None` for anything else.
pub fn parse(data: &[u8]) -> Option<Packet<'_>> {
    let reader = RtpReader::new(data).ok()?;
    Some(Packet {
        payload_type: reader.payload_type(),
        marker: reader.mark(),
        sequence: reader.sequence_number().into(),
        timestamp: reader.timestamp(),
        ssrc: reader.ssrc(),
        payload: reader.payload(),
    })
}

/// Writes an RTP packet with a fixed header (no CSRC, no extension, no padding). The payload
/// type is 7 bits; higher bits are dropped.
pub fn build(
    payload_type: u8,
    marker: bool,
    sequence: u16,
    timestamp: u32,
    ssrc: u32,
    payload: &[u8],
) -> Vec<u8> {
    let builder = RtpPacketBuilder::new()
        .payload_type(payload_type & 0x7F)
        .marked(marker)
        .sequence(Seq::from(sequence))
        .timestamp(timestamp)
        .ssrc(ssrc)
        .payload(payload);
    let mut out = vec![0; builder.target_length()];
    let len = builder.build_into_unchecked(&mut out);
    out.truncate(len);
    out
}

/// How many sequence numbers `later` is after `earlier`, across the wrap: −32768 to 32767
/// (negative when `later` is in fact earlier).
pub fn sequence_delta(later: u16, earlier: u16) -> i32 {
    Seq::from(later) - Seq::from(earlier)
}

/// How many timestamp units `later` is after `earlier`, across the wrap: −2³¹ to 2³¹ − 1.
pub fn timestamp_delta(later: u32, earlier: u32) -> i32 {
    later.wrapping_sub(earlier) as i32
}

/// Whether timestamp `a` is after `b` (within half the timestamp space).
pub fn timestamp_after(a: u32, b: u32) -> bool {
    timestamp_delta(a, b) > 0
}

/// The sending side of one stream: its SSRC, the next sequence number, and the counts an
/// RTCP sender report carries. The first sequence number and the SSRC should be random
/// (RFC 3550 §5.1); the caller brings them, so a run can be replayed.
#[derive(Clone, Debug)]
pub struct Sender {
    ssrc: u32,
    next_sequence: u16,
    packets: u32,
    octets: u32,
}

impl Sender {
    /// A stream with this SSRC whose first packet gets `first_sequence`.
    pub fn new(ssrc: u32, first_sequence: u16) -> Sender {
        Sender {
            ssrc,
            next_sequence: first_sequence,
            packets: 0,
            octets: 0,
        }
    }

    /// The next packet of the stream: the next sequence number, this stream's SSRC.
    pub fn packet(
        &mut self,
        payload_type: u8,
        marker: bool,
        timestamp: u32,
        data: &[u8],
    ) -> Vec<u8> {
        let sequence = self.next_sequence;
        self.next_sequence = sequence.wrapping_add(1);
        self.packets = self.packets.wrapping_add(1);
        self.octets = self.octets.wrapping_add(data.len() as u32);
        build(payload_type, marker, sequence, timestamp, self.ssrc, data)
    }

    /// A packet of the stream with a sequence number the caller chose (a relay, which keeps
    /// the gaps and the order of the stream it relays: see [`crate::relay`]): this stream's
    /// SSRC; the next sequence number moves past it when it is not behind, and stays when it
    /// is (a late packet). Counted as [`Sender::packet`]'s are.
    pub fn packet_numbered(
        &mut self,
        sequence: u16,
        payload_type: u8,
        marker: bool,
        timestamp: u32,
        data: &[u8],
    ) -> Vec<u8> {
        if sequence_delta(sequence, self.next_sequence) >= 0 {
            self.next_sequence = sequence.wrapping_add(1);
        }
        self.packets = self.packets.wrapping_add(1);
        self.octets = self.octets.wrapping_add(data.len() as u32);
        build(payload_type, marker, sequence, timestamp, self.ssrc, data)
    }

    /// The stream's SSRC.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// The sequence number the next packet gets.
    pub fn next_sequence(&self) -> u16 {
        self.next_sequence
    }

    /// Packets sent (wrapping at 2³², as in a sender report).
    pub fn packets_sent(&self) -> u32 {
        self.packets
    }

    /// Payload octets sent (wrapping at 2³², as in a sender report).
    pub fn octets_sent(&self) -> u32 {
        self.octets
    }
}

/// Why a received datagram was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dropped {
    /// Not an RTP packet: too short, not version 2, lengths that do not fit.
    Malformed,
    /// From an address other than the stream's source, and not one that may be latched.
    WrongSource,
    /// From the source but with another SSRC (not, or not yet, taken as the stream's new one).
    WrongSsrc,
    /// A payload type the SDP did not negotiate.
    WrongPayloadType,
    /// A sequence number already received.
    Duplicate,
    /// A sequence number far from the stream's (a jump ahead of 3,000 or more, or more than
    /// 100 behind), taken as a restart only when the next packet follows it.
    OutOfSequence,
}

/// How many datagrams a receiver accepted, and how many it dropped for each reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Accepted packets.
    pub accepted: u64,
    /// [`Dropped::Malformed`].
    pub malformed: u64,
    /// [`Dropped::WrongSource`].
    pub wrong_source: u64,
    /// [`Dropped::WrongSsrc`].
    pub wrong_ssrc: u64,
    /// [`Dropped::WrongPayloadType`].
    pub wrong_payload_type: u64,
    /// [`Dropped::Duplicate`].
    pub duplicate: u64,
    /// [`Dropped::OutOfSequence`].
    pub out_of_sequence: u64,
}

impl Counters {
    /// Every dropped datagram, whatever the reason.
    pub fn dropped(&self) -> u64 {
        self.malformed
            + self.wrong_source
            + self.wrong_ssrc
            + self.wrong_payload_type
            + self.duplicate
            + self.out_of_sequence
    }

    fn count(&mut self, reason: Dropped) {
        let counter = match reason {
            Dropped::Malformed => &mut self.malformed,
            Dropped::WrongSource => &mut self.wrong_source,
            Dropped::WrongSsrc => &mut self.wrong_ssrc,
            Dropped::WrongPayloadType => &mut self.wrong_payload_type,
            Dropped::Duplicate => &mut self.duplicate,
            Dropped::OutOfSequence => &mut self.out_of_sequence,
        };
        *counter += 1;
    }
}

/// What a receiver is told of a stream by the signalling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceiveConfig {
    /// The payload types the SDP negotiated (the codec's, the telephone-event's).
    pub payload_types: Vec<u8>,
    /// Where the peer's SDP says it receives, and so most likely sends from; `None` when it
    /// gave no usable address (`c=0.0.0.0`).
    pub remote: Option<SocketAddr>,
    /// The IP address the peer's SIP request or response came from.
    pub signalling: IpAddr,
    /// How long after the start, or a renegotiation, another source may be latched onto.
    pub learning: Duration,
}

/// A jump ahead this large or larger is not taken as loss (RFC 3550 A.1's MAX_DROPOUT).
const MAX_DROPOUT: u16 = 3000;
/// A packet up to this far behind is a late one, not a restart (RFC 3550 A.1's MAX_MISORDER).
const MAX_MISORDER: u16 = 100;

/// The sequence numbers seen: the highest, the 128 before it (bit i: `highest − i` seen),
/// and a far one that the next packet may confirm as a restart.
#[derive(Clone, Copy, Debug)]
struct SequenceState {
    highest: u16,
    seen: u128,
    restart: Option<u16>,
}

impl SequenceState {
    fn new(first: u16) -> SequenceState {
        SequenceState {
            highest: first,
            seen: 1,
            restart: None,
        }
    }

    fn update(&mut self, sequence: u16) -> Result<(), Dropped> {
        let ahead = sequence.wrapping_sub(self.highest);
        let behind = self.highest.wrapping_sub(sequence);
        if ahead == 0 {
            Err(Dropped::Duplicate)
        } else if ahead < MAX_DROPOUT {
            self.seen = if ahead < 128 {
                (self.seen << ahead) | 1
            } else {
                1
            };
            self.highest = sequence;
            self.restart = None;
            Ok(())
        } else if behind <= MAX_MISORDER {
            let bit = 1u128 << behind;
            if self.seen & bit != 0 {
                return Err(Dropped::Duplicate);
            }
            self.seen |= bit;
            Ok(())
        } else if self.restart == Some(sequence) {
            // Two packets in a row far from the old numbering: the sender restarted.
            *self = SequenceState::new(sequence);
            Ok(())
        } else {
            self.restart = Some(sequence.wrapping_add(1));
            Err(Dropped::OutOfSequence)
        }
    }
}

/// The receive state of one stream: which source, SSRC and payload types it accepts, where
/// its sequence numbers are, when it last accepted a packet, and its counters.
#[derive(Clone, Debug)]
pub struct Receiver {
    config: ReceiveConfig,
    learning_until: Instant,
    latched: Option<SocketAddr>,
    ssrc: Option<u32>,
    /// Another SSRC seen from the source, and the sequence number that would confirm it.
    new_ssrc: Option<(u32, u16)>,
    sequence: Option<SequenceState>,
    last_accepted: Option<Instant>,
    counters: Counters,
}

impl Receiver {
    /// A stream that starts now: its learning window opens.
    pub fn new(config: ReceiveConfig, now: Instant) -> Receiver {
        Receiver {
            learning_until: now + config.learning,
            config,
            latched: None,
            ssrc: None,
            new_ssrc: None,
            sequence: None,
            last_accepted: None,
            counters: Counters::default(),
        }
    }

    /// The signalling changed the stream (a re-INVITE, an UPDATE): the new description
    /// replaces the old, the source and SSRC are learned again, and the window opens again.
    /// The counters go on.
    pub fn renegotiated(&mut self, config: ReceiveConfig, now: Instant) {
        let counters = self.counters;
        *self = Receiver::new(config, now);
        self.counters = counters;
    }

    /// Judges a datagram received from `from`: the packet when it is accepted, why not
    /// otherwise (and counted).
    pub fn receive<'a>(
        &mut self,
        data: &'a [u8],
        from: SocketAddr,
        now: Instant,
    ) -> Result<Packet<'a>, Dropped> {
        let result = self.judge(data, from, now);
        match result {
            Ok(_) => {
                self.counters.accepted += 1;
                self.last_accepted = Some(now);
            }
            Err(reason) => self.counters.count(reason),
        }
        result
    }

    fn judge<'a>(
        &mut self,
        data: &'a [u8],
        from: SocketAddr,
        now: Instant,
    ) -> Result<Packet<'a>, Dropped> {
        let packet = parse(data).ok_or(Dropped::Malformed)?;
        let from_source = Some(from) == self.source();
        if !from_source && !self.may_latch(from, now) {
            return Err(Dropped::WrongSource);
        }
        if !self.config.payload_types.contains(&packet.payload_type) {
            return Err(Dropped::WrongPayloadType);
        }
        match self.ssrc {
            Some(ssrc) if ssrc != packet.ssrc => {
                // A new SSRC is taken when two packets of it follow each other from the
                // source (a sender that restarted its stream), never while latching.
                let confirmed =
                    from_source && self.new_ssrc == Some((packet.ssrc, packet.sequence));
                if !confirmed {
                    if from_source {
                        self.new_ssrc = Some((packet.ssrc, packet.sequence.wrapping_add(1)));
                    }
                    return Err(Dropped::WrongSsrc);
                }
                self.ssrc = Some(packet.ssrc);
                self.sequence = None;
            }
            _ => self.ssrc = Some(packet.ssrc),
        }
        self.new_ssrc = None;
        match &mut self.sequence {
            Some(state) => state.update(packet.sequence)?,
            None => self.sequence = Some(SequenceState::new(packet.sequence)),
        }
        if !from_source {
            self.latched = Some(from);
        }
        Ok(packet)
    }

    /// Whether a packet from `from` (not the source) may become the source: the window is
    /// open, nothing was latched yet, and it comes from the signalling's or the SDP's IP.
    fn may_latch(&self, from: SocketAddr, now: Instant) -> bool {
        let known_ip = from.ip() == self.config.signalling
            || self.config.remote.is_some_and(|r| r.ip() == from.ip());
        self.latched.is_none() && now < self.learning_until && known_ip
    }

    /// The address packets are accepted from: the latched one, else the SDP's.
    pub fn source(&self) -> Option<SocketAddr> {
        self.latched.or(self.config.remote)
    }

    /// Where to send this stream's packets (symmetric RTP): the same as [`Receiver::source`].
    pub fn remote(&self) -> Option<SocketAddr> {
        self.source()
    }

    /// Whether the source was latched (learned from received packets) rather than taken
    /// from the SDP.
    pub fn latched(&self) -> bool {
        self.latched.is_some()
    }

    /// The SSRC accepted, once a packet was.
    pub fn ssrc(&self) -> Option<u32> {
        self.ssrc
    }

    /// When the last packet was accepted: what an RTP timeout is measured from.
    pub fn last_accepted(&self) -> Option<Instant> {
        self.last_accepted
    }

    /// The counters of accepted and dropped datagrams.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn builds_the_bytes_of_the_rfc_header() {
        let packet = build(0, true, 0x1234, 0xDEAD_BEEF, 0x0102_0304, &[0xFF, 0x7F]);
        assert_eq!(
            packet,
            [0x80, 0x80, 0x12, 0x34, 0xDE, 0xAD, 0xBE, 0xEF, 0x01, 0x02, 0x03, 0x04, 0xFF, 0x7F]
        );
        let packet = build(101 | 0x80, false, 1, 2, 3, &[]);
        assert_eq!(packet[1], 101);
        assert_eq!(packet.len(), HEADER_LEN);
    }

    #[test]
    fn reads_what_it_builds() {
        let packet = build(8, false, 65535, 160, 42, &[1, 2, 3]);
        assert_eq!(
            parse(&packet),
            Some(Packet {
                payload_type: 8,
                marker: false,
                sequence: 65535,
                timestamp: 160,
                ssrc: 42,
                payload: &[1, 2, 3],
            })
        );
    }

    #[test]
    fn reads_csrcs_extension_and_padding_past() {
        let mut data = vec![
            0x80 | 0x20 | 0x10 | 0x01,
            0x00,
            0,
            1,
            0,
            0,
            0,
            2,
            0,
            0,
            0,
            3,
        ];
        data.extend_from_slice(&[9, 9, 9, 9]); // one CSRC
        data.extend_from_slice(&[0xBE, 0xDE, 0, 1, 7, 7, 7, 7]); // extension, one word
        data.extend_from_slice(&[0xAA, 0xBB]); // payload
        data.extend_from_slice(&[0, 0, 3]); // padding, 3 octets
        let packet = parse(&data).unwrap();
        assert_eq!(packet.payload, &[0xAA, 0xBB]);
        assert_eq!((packet.sequence, packet.timestamp, packet.ssrc), (1, 2, 3));
    }

    #[test]
    fn refuses_malformed() {
        let good = build(0, false, 1, 2, 3, &[0; 4]);
        assert!(parse(&good[..11]).is_none(), "short");
        let mut v1 = good.clone();
        v1[0] = 0x40;
        assert!(parse(&v1).is_none(), "version 1");
        let mut csrc = good.clone();
        csrc[0] |= 0x0F; // 15 CSRCs in 4 octets
        assert!(parse(&csrc).is_none(), "CSRCs past the end");
        let mut ext = good.clone();
        ext[0] |= 0x10;
        assert!(parse(&ext[..14]).is_none(), "extension header past the end");
        let mut pad = good.clone();
        pad[0] |= 0x20;
        *pad.last_mut().unwrap() = 5; // more padding than payload
        assert!(parse(&pad).is_none(), "padding past the header");
        *pad.last_mut().unwrap() = 0;
        assert!(parse(&pad).is_none(), "padding of zero");
        assert!(parse(&[]).is_none());
    }

    #[test]
    fn sequence_and_timestamp_arithmetic_across_the_wrap() {
        assert_eq!(sequence_delta(0, 65535), 1);
        assert_eq!(sequence_delta(65535, 0), -1);
        assert_eq!(sequence_delta(5, 5), 0);
        assert_eq!(sequence_delta(100, 65500), 136);
        assert_eq!(sequence_delta(32767, 0), 32767);
        assert_eq!(sequence_delta(32768, 0), -32768);
        assert_eq!(timestamp_delta(80, u32::MAX - 79), 160);
        assert_eq!(timestamp_delta(u32::MAX - 79, 80), -160);
        assert!(timestamp_after(80, u32::MAX - 79));
        assert!(!timestamp_after(u32::MAX - 79, 80));
        assert!(!timestamp_after(7, 7));
    }

    proptest! {
        #[test]
        fn deltas_undo_additions(start: u16, step in -32768i32..=32767) {
            let later = (i32::from(start) + step).rem_euclid(65536) as u16;
            prop_assert_eq!(sequence_delta(later, start), step);
        }

        #[test]
        fn timestamp_deltas_undo_additions(start: u32, step: i32) {
            prop_assert_eq!(timestamp_delta(start.wrapping_add(step as u32), start), step);
        }

        #[test]
        fn parsing_anything_never_panics(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = parse(&data);
        }
    }

    #[test]
    fn sender_numbers_its_packets() {
        let mut sender = Sender::new(7, 65534);
        let a = sender.packet(0, true, 0, &[1; 160]);
        let b = sender.packet(0, false, 160, &[1; 160]);
        let c = sender.packet(0, false, 320, &[1; 10]);
        let seqs: Vec<u16> = [&a, &b, &c]
            .iter()
            .map(|p| parse(p).unwrap().sequence)
            .collect();
        assert_eq!(seqs, [65534, 65535, 0]);
        assert!(parse(&a).unwrap().marker);
        assert_eq!(parse(&c).unwrap().ssrc, 7);
        assert_eq!((sender.packets_sent(), sender.octets_sent()), (3, 330));
        assert_eq!(sender.next_sequence(), 1);
    }

    #[test]
    fn numbered_packets_move_the_numbering_only_forward() {
        let mut sender = Sender::new(7, 100);
        let a = sender.packet_numbered(100, 8, true, 0, &[1; 160]);
        assert_eq!(parse(&a).unwrap().sequence, 100);
        assert_eq!(sender.next_sequence(), 101);
        // A gap (a packet lost before the relay) is kept.
        sender.packet_numbered(103, 8, false, 480, &[1; 160]);
        assert_eq!(sender.next_sequence(), 104);
        // A late packet goes out under its own number; the numbering stays.
        let late = sender.packet_numbered(102, 8, false, 320, &[1; 160]);
        assert_eq!(parse(&late).unwrap().sequence, 102);
        assert_eq!(sender.next_sequence(), 104);
        // Across the wrap.
        let mut sender = Sender::new(7, 65535);
        sender.packet_numbered(0, 8, false, 0, &[1; 4]);
        assert_eq!(sender.next_sequence(), 1);
        assert_eq!((sender.packets_sent(), sender.octets_sent()), (1, 4));
        assert_eq!(sender.packet(8, false, 0, &[]).get(2..4), Some(&[0, 1][..]));
    }

    const PHONE: &str = "192.0.2.10:4000";

    fn config() -> ReceiveConfig {
        ReceiveConfig {
            payload_types: vec![0, 101],
            remote: Some(addr(PHONE)),
            signalling: "198.51.100.7".parse().unwrap(),
            learning: Duration::from_secs(2),
        }
    }

    fn rtp(seq: u16, ssrc: u32) -> Vec<u8> {
        build(0, false, seq, u32::from(seq) * 160, ssrc, &[0xFF; 160])
    }

    #[test]
    fn accepts_the_sdp_source_and_learns_its_ssrc() {
        let t0 = Instant::now();
        let mut rx = Receiver::new(config(), t0);
        assert_eq!(rx.remote(), Some(addr(PHONE)));
        assert!(rx.receive(&rtp(10, 5), addr(PHONE), t0).is_ok());
        assert_eq!(rx.ssrc(), Some(5));
        assert!(!rx.latched());
        // Long after the window, the SDP's address is still the source.
        let later = t0 + Duration::from_secs(60);
        assert!(rx.receive(&rtp(11, 5), addr(PHONE), later).is_ok());
        assert_eq!(rx.last_accepted(), Some(later));
        assert_eq!(rx.counters().accepted, 2);
    }

    #[test]
    fn latches_onto_the_signalling_address_in_the_window_only_once() {
        let t0 = Instant::now();
        let mut rx = Receiver::new(config(), t0);
        // A phone behind NAT: its packets come from the address its SIP came from.
        let nat = addr("198.51.100.7:31000");
        let t1 = t0 + Duration::from_millis(500);
        assert!(rx.receive(&rtp(1, 9), nat, t1).is_ok());
        assert!(rx.latched());
        assert_eq!(rx.remote(), Some(nat));
        // Once latched, neither another port of the same address nor the SDP's is taken.
        let other_port = addr("198.51.100.7:31002");
        assert_eq!(
            rx.receive(&rtp(2, 9), other_port, t1),
            Err(Dropped::WrongSource)
        );
        assert_eq!(
            rx.receive(&rtp(2, 9), addr(PHONE), t1),
            Err(Dropped::WrongSource)
        );
        assert!(rx.receive(&rtp(2, 9), nat, t1).is_ok());
        assert_eq!(rx.counters().wrong_source, 2);
    }

    #[test]
    fn never_latches_onto_a_stranger_nor_after_the_window() {
        let t0 = Instant::now();
        let mut rx = Receiver::new(config(), t0);
        // RTP bleed: a stranger's packets, in the window, with the right payload type.
        let stranger = addr("203.0.113.66:5000");
        assert_eq!(
            rx.receive(&rtp(1, 9), stranger, t0),
            Err(Dropped::WrongSource)
        );
        // The signalling address, but after the window closed.
        let late = t0 + Duration::from_secs(2);
        let nat = addr("198.51.100.7:31000");
        assert_eq!(rx.receive(&rtp(1, 9), nat, late), Err(Dropped::WrongSource));
        assert!(!rx.latched());
        assert_eq!(rx.remote(), Some(addr(PHONE)));
        // The SDP's IP with another port may be latched in the window.
        let mut rx = Receiver::new(config(), t0);
        assert!(rx.receive(&rtp(1, 9), addr("192.0.2.10:4002"), t0).is_ok());
        assert!(rx.latched());
    }

    #[test]
    fn a_packet_that_fails_other_checks_does_not_latch() {
        let t0 = Instant::now();
        let mut rx = Receiver::new(config(), t0);
        let nat = addr("198.51.100.7:31000");
        let video = build(96, false, 1, 0, 9, &[0; 10]);
        assert_eq!(rx.receive(&video, nat, t0), Err(Dropped::WrongPayloadType));
        assert_eq!(rx.receive(&[0x80, 0], nat, t0), Err(Dropped::Malformed));
        assert!(!rx.latched());
    }

    #[test]
    fn without_an_sdp_address_only_latching_finds_the_source() {
        let t0 = Instant::now();
        let mut rx = Receiver::new(
            ReceiveConfig {
                remote: None,
                ..config()
            },
            t0,
        );
        assert_eq!(rx.remote(), None);
        let nat = addr("198.51.100.7:31000");
        assert!(rx.receive(&rtp(1, 9), nat, t0).is_ok());
        assert_eq!(rx.remote(), Some(nat));
    }

    #[test]
    fn another_ssrc_is_dropped_until_two_follow_each_other() {
        let t0 = Instant::now();
        let mut rx = Receiver::new(config(), t0);
        let phone = addr(PHONE);
        assert!(rx.receive(&rtp(100, 1), phone, t0).is_ok());
        assert_eq!(
            rx.receive(&rtp(7000, 2), phone, t0),
            Err(Dropped::WrongSsrc)
        );
        assert!(rx.receive(&rtp(101, 1), phone, t0).is_ok());
        // Not in a row: still dropped.
        assert_eq!(
            rx.receive(&rtp(7001, 2), phone, t0),
            Err(Dropped::WrongSsrc)
        );
        assert_eq!(
            rx.receive(&rtp(7003, 2), phone, t0),
            Err(Dropped::WrongSsrc)
        );
        // In a row: the stream's new SSRC, numbered anew.
        assert!(rx.receive(&rtp(7004, 2), phone, t0).is_ok());
        assert_eq!(rx.ssrc(), Some(2));
        assert_eq!(rx.receive(&rtp(102, 1), phone, t0), Err(Dropped::WrongSsrc));
        assert_eq!(rx.counters().wrong_ssrc, 4);
    }

    #[test]
    fn sequence_numbers_duplicates_late_and_restarts() {
        let t0 = Instant::now();
        let mut rx = Receiver::new(config(), t0);
        let phone = addr(PHONE);
        let mut accept = |seq: u16| rx.receive(&rtp(seq, 1), phone, t0).map(|p| p.sequence);
        assert_eq!(accept(65534), Ok(65534));
        assert_eq!(accept(65535), Ok(65535));
        assert_eq!(accept(2), Ok(2), "across the wrap, with a gap");
        assert_eq!(accept(0), Ok(0), "late, within the window");
        assert_eq!(accept(0), Err(Dropped::Duplicate));
        assert_eq!(accept(2), Err(Dropped::Duplicate));
        assert_eq!(accept(65535), Err(Dropped::Duplicate));
        assert_eq!(accept(1), Ok(1));
        assert_eq!(accept(2 + 2999), Ok(3001), "a long gap is loss");
        assert_eq!(accept(3001 - 101), Err(Dropped::OutOfSequence), "too late");
        assert_eq!(accept(40000), Err(Dropped::OutOfSequence), "a jump");
        assert_eq!(accept(40001), Ok(40001), "confirmed: a restart");
        assert_eq!(accept(40002), Ok(40002));
        assert_eq!(
            accept(3002),
            Err(Dropped::OutOfSequence),
            "the old numbering"
        );
        assert_eq!(rx.counters().duplicate, 3);
        assert_eq!(rx.counters().out_of_sequence, 3);
        assert_eq!(rx.counters().dropped(), 6);
    }

    #[test]
    fn a_renegotiation_learns_again_and_keeps_counting() {
        let t0 = Instant::now();
        let mut rx = Receiver::new(config(), t0);
        let nat = addr("198.51.100.7:31000");
        assert!(rx.receive(&rtp(1, 9), nat, t0).is_ok());
        let _ = rx.receive(&[0], nat, t0);
        // A re-INVITE long after: the phone moved to another port.
        let t1 = t0 + Duration::from_secs(100);
        rx.renegotiated(config(), t1);
        assert!(!rx.latched());
        let moved = addr("198.51.100.7:32000");
        assert!(rx.receive(&rtp(500, 10), moved, t1).is_ok());
        assert_eq!((rx.remote(), rx.ssrc()), (Some(moved), Some(10)));
        assert_eq!(rx.counters().accepted, 2);
        assert_eq!(rx.counters().malformed, 1);
    }

    proptest! {
        #[test]
        fn receiving_anything_never_panics(
            datagrams in proptest::collection::vec(
                (proptest::collection::vec(any::<u8>(), 0..40), any::<bool>(), 0u64..3000),
                0..40,
            )
        ) {
            let t0 = Instant::now();
            let mut rx = Receiver::new(config(), t0);
            let mut total = 0;
            for (mut data, from_phone, ms) in datagrams {
                if data.len() >= 2 {
                    data[0] = 0x80 | (data[0] & 0x3F);
                    data[1] &= 0x80 | 101;
                }
                let from = if from_phone { addr(PHONE) } else { addr("198.51.100.7:1") };
                let _ = rx.receive(&data, from, t0 + Duration::from_millis(ms));
                total += 1;
            }
            prop_assert_eq!(rx.counters().accepted + rx.counters().dropped(), total);
        }
    }
}
