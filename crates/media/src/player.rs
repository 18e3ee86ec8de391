//! A paced player: G.711 audio out as RTP packets, one every packet time (20 ms, 160
//! samples, unless the SDP asked for another), sans-I/O.
//!
//! Packet n is due at `start + n · ptime`, and carries the timestamp `first + n · samples`:
//! the schedule is fixed by the start, not by when the previous packet went, so it does not
//! drift. [`Player::poll_timeout`] says when the next packet is due and
//! [`Player::poll_transmit`] gives it once it is. A caller that comes late — the thread was
//! descheduled, the machine stalled — gets one packet, never a burst of the ones it missed:
//! the player skips ahead to the current slot, its timestamp moves by the samples skipped
//! (the receiver hears a gap, as after lost packets), its sequence number by one (nothing was
//! lost), and its marker bit is set (a new talkspurt, so the receiver's jitter buffer may
//! adjust). The audio is not skipped: it resumes where it stopped.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::g711::Law;
use crate::rtp::{timestamp_after, Sender};

/// G.711 samples per millisecond.
const SAMPLES_PER_MS: u32 = 8;

/// What a player sends with: the codec, its payload type, the packet time, and the stream's
/// first numbers (random, RFC 3550 §5.1; brought by the caller so a run can be replayed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlayerConfig {
    /// The law of the audio given to the player (it is sent as it is).
    pub law: Law,
    /// The payload type negotiated for it.
    pub payload_type: u8,
    /// The packet time, in ms (20 unless the SDP asked for another; at least 1).
    pub ptime_ms: u32,
    /// The stream's SSRC.
    pub ssrc: u32,
    /// The first packet's sequence number.
    pub first_sequence: u16,
    /// The timestamp of slot 0.
    pub first_timestamp: u32,
}

/// A stream of packets paced from a start instant, playing the buffers queued on it in order.
#[derive(Clone, Debug)]
pub struct Player {
    config: PlayerConfig,
    start: Instant,
    ptime: Duration,
    samples: usize,
    sender: Sender,
    /// The slot of the next packet: no packet is sent for an earlier one.
    next_slot: u64,
    queue: VecDeque<Arc<[u8]>>,
    /// How far into the front buffer playing has come.
    offset: usize,
    /// Whether the next packet starts a talkspurt (the first, and the first after a gap or
    /// after relayed packets).
    marker: bool,
    /// The timestamp just after the audio last sent on the stream, played or relayed.
    end: Option<u32>,
}

impl Player {
    /// A player whose slot 0 is due at `start`, with nothing queued.
    pub fn new(config: PlayerConfig, start: Instant) -> Player {
        let ptime_ms = config.ptime_ms.max(1);
        Player {
            config,
            start,
            ptime: Duration::from_millis(u64::from(ptime_ms)),
            samples: (ptime_ms * SAMPLES_PER_MS) as usize,
            sender: Sender::new(config.ssrc, config.first_sequence),
            next_slot: 0,
            queue: VecDeque::new(),
            offset: 0,
            marker: true,
            end: None,
        }
    }

    /// Queues audio (codes of the player's law) to play after what is queued. Prompts are
    /// shared, hence the `Arc`: nothing is copied until a packet is made.
    pub fn push(&mut self, audio: Arc<[u8]>) {
        if !audio.is_empty() {
            self.queue.push_back(audio);
        }
    }

    /// Drops everything queued (a caller pressed a key during a prompt): the player is
    /// finished until more is pushed.
    pub fn clear(&mut self) {
        self.queue.clear();
        self.offset = 0;
    }

    /// Whether nothing is left to play.
    pub fn is_finished(&self) -> bool {
        self.queue.is_empty()
    }

    /// When the next packet is due; `None` when nothing is queued.
    pub fn poll_timeout(&self) -> Option<Instant> {
        (!self.is_finished()).then(|| self.due(self.next_slot))
    }

    /// The packet due at `now`, if one is: at most one per slot, for the slot `now` is in.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Vec<u8>> {
        if self.is_finished() || now < self.due(self.next_slot) {
            return None;
        }
        let slot = self.slot_at(now);
        if slot > self.next_slot {
            self.marker = true; // slots were skipped: a gap in the audio
        }
        self.next_slot = slot + 1;
        let payload = self.take();
        let timestamp = self.timestamp_of(slot);
        let marker = std::mem::take(&mut self.marker);
        self.end = Some(timestamp.wrapping_add(payload.len() as u32));
        Some(
            self.sender
                .packet(self.config.payload_type, marker, timestamp, &payload),
        )
    }

    /// Sends a relayed packet as one of this stream (a bridge: see [`crate::relay`]): this
    /// stream's SSRC, with the sequence number and timestamp given (already this stream's),
    /// counted in the sender's report as a played packet is. `samples` is the audio it
    /// carries (0 for a telephone-event): the stream's end moves past it unless it is a late
    /// packet. The player's own next packet starts a talkspurt (the marker).
    pub fn relayed(
        &mut self,
        sequence: u16,
        payload_type: u8,
        marker: bool,
        timestamp: u32,
        payload: &[u8],
        samples: u32,
    ) -> Vec<u8> {
        let end = timestamp.wrapping_add(samples);
        if samples > 0 && self.end.is_none_or(|e| timestamp_after(end, e)) {
            self.end = Some(end);
        }
        self.marker = true;
        self.sender
            .packet_numbered(sequence, payload_type, marker, timestamp, payload)
    }

    /// The timestamp just after the audio last sent on the stream (the last packet's
    /// timestamp plus its samples), played or relayed; `None` before any.
    pub fn end_timestamp(&self) -> Option<u32> {
        self.end
    }

    /// The RTP timestamp of the instant `now` (for an RTCP sender report).
    pub fn rtp_timestamp_at(&self, now: Instant) -> u32 {
        let elapsed = now.saturating_duration_since(self.start);
        let samples = elapsed.as_micros() * u128::from(SAMPLES_PER_MS) / 1000;
        self.config.first_timestamp.wrapping_add(samples as u32)
    }

    /// The sending side: SSRC, next sequence number, packets and octets sent.
    pub fn sender(&self) -> &Sender {
        &self.sender
    }

    fn due(&self, slot: u64) -> Instant {
        let nanos = self.ptime.as_nanos() * u128::from(slot);
        self.start + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    fn slot_at(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.start);
        (elapsed.as_nanos() / self.ptime.as_nanos()) as u64
    }

    fn timestamp_of(&self, slot: u64) -> u32 {
        let offset = slot.wrapping_mul(self.samples as u64);
        self.config.first_timestamp.wrapping_add(offset as u32)
    }

    /// The next packet's worth of audio, from as many buffers as it spans; the last packet
    /// filled up with silence.
    fn take(&mut self) -> Vec<u8> {
        let mut payload = Vec::with_capacity(self.samples);
        while payload.len() < self.samples {
            let Some(front) = self.queue.front() else {
                payload.resize(self.samples, self.config.law.silence());
                break;
            };
            let wanted = self.samples - payload.len();
            let end = (self.offset + wanted).min(front.len());
            payload.extend_from_slice(&front[self.offset..end]);
            self.offset = end;
            if end == front.len() {
                self.queue.pop_front();
                self.offset = 0;
            }
        }
        payload
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::{parse, Packet};
    use proptest::prelude::*;

    const MS: Duration = Duration::from_millis(1);

    fn config() -> PlayerConfig {
        PlayerConfig {
            law: Law::MuLaw,
            payload_type: 0,
            ptime_ms: 20,
            ssrc: 0xABCD,
            first_sequence: 1000,
            first_timestamp: 50_000,
        }
    }

    /// Audio whose every sample says where it is (mod 251, and never µ-law silence).
    fn audio(len: usize) -> Arc<[u8]> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    fn read(packet: &[u8]) -> Packet<'_> {
        parse(packet).unwrap()
    }

    #[test]
    fn packets_at_exact_boundaries() {
        let t0 = Instant::now();
        let mut player = Player::new(config(), t0);
        assert_eq!(player.poll_timeout(), None, "nothing queued");
        assert_eq!(player.poll_transmit(t0), None);
        player.push(audio(480));
        assert_eq!(player.poll_timeout(), Some(t0));
        let first = player.poll_transmit(t0).unwrap();
        let p = read(&first);
        assert_eq!(
            (p.sequence, p.timestamp, p.marker, p.ssrc),
            (1000, 50_000, true, 0xABCD)
        );
        assert_eq!(p.payload, &audio(480)[..160]);
        assert_eq!(player.poll_transmit(t0), None, "one per slot");
        assert_eq!(player.poll_timeout(), Some(t0 + 20 * MS));
        assert_eq!(
            player.poll_transmit(t0 + 20 * MS - Duration::from_nanos(1)),
            None
        );
        let second = player.poll_transmit(t0 + 20 * MS).unwrap();
        let p = read(&second);
        assert_eq!((p.sequence, p.timestamp, p.marker), (1001, 50_160, false));
        assert_eq!(p.payload, &audio(480)[160..320]);
        let third = player.poll_transmit(t0 + 40 * MS).unwrap();
        assert_eq!(read(&third).payload, &audio(480)[320..]);
        assert!(player.is_finished());
        assert_eq!(player.poll_timeout(), None);
        assert_eq!(player.poll_transmit(t0 + 60 * MS), None);
        assert_eq!(
            (
                player.sender().packets_sent(),
                player.sender().octets_sent()
            ),
            (3, 480)
        );
    }

    #[test]
    fn a_late_poll_within_the_slot_sends_that_slot() {
        let t0 = Instant::now();
        let mut player = Player::new(config(), t0);
        player.push(audio(800));
        player.poll_transmit(t0).unwrap();
        let p = player.poll_transmit(t0 + 39 * MS).unwrap();
        assert_eq!((read(&p).timestamp, read(&p).marker), (50_160, false));
        assert_eq!(player.poll_timeout(), Some(t0 + 40 * MS));
    }

    #[test]
    fn after_a_stall_one_packet_for_the_current_slot_then_on_time() {
        let t0 = Instant::now();
        let mut player = Player::new(config(), t0);
        player.push(audio(1600));
        player.poll_transmit(t0).unwrap();
        player.poll_transmit(t0 + 20 * MS).unwrap();
        // Nothing polled from 40 to 109 ms: slots 2, 3 and 4 are missed.
        let now = t0 + 109 * MS;
        let p = player.poll_transmit(now).unwrap();
        let p = read(&p);
        assert_eq!(p.sequence, 1002, "the sequence moves by one");
        assert_eq!(
            p.timestamp,
            50_000 + 5 * 160,
            "the timestamp by the slots skipped"
        );
        assert!(p.marker, "a new talkspurt");
        assert_eq!(
            p.payload,
            &audio(1600)[320..480],
            "the audio resumes where it stopped"
        );
        assert_eq!(player.poll_transmit(now), None, "no burst");
        assert_eq!(player.poll_timeout(), Some(t0 + 120 * MS));
        let p = player.poll_transmit(t0 + 120 * MS).unwrap();
        assert_eq!(
            (read(&p).timestamp, read(&p).marker),
            (50_000 + 6 * 160, false)
        );
        // A polls exactly at the boundary of a later slot: that slot.
        let p = player.poll_transmit(t0 + 200 * MS).unwrap();
        assert_eq!(
            (read(&p).sequence, read(&p).timestamp),
            (1004, 50_000 + 10 * 160)
        );
    }

    #[test]
    fn a_start_in_the_future_waits_for_it() {
        let t0 = Instant::now();
        let start = t0 + 500 * MS;
        let mut player = Player::new(config(), start);
        player.push(audio(160));
        assert_eq!(player.poll_timeout(), Some(start));
        assert_eq!(player.poll_transmit(t0), None);
        assert_eq!(
            read(&player.poll_transmit(start).unwrap()).timestamp,
            50_000
        );
    }

    #[test]
    fn packets_span_buffers_and_the_last_is_filled_with_silence() {
        let t0 = Instant::now();
        let mut player = Player::new(config(), t0);
        let (a, b, c) = (audio(100), audio(100), audio(50));
        player.push(a.clone());
        player.push(Arc::from(Vec::new()));
        player.push(b.clone());
        player.push(c.clone());
        let first = player.poll_transmit(t0).unwrap();
        let expected: Vec<u8> = a.iter().chain(&b[..60]).copied().collect();
        assert_eq!(read(&first).payload, &expected[..]);
        let second = player.poll_transmit(t0 + 20 * MS).unwrap();
        let mut expected: Vec<u8> = b[60..].iter().chain(c.iter()).copied().collect();
        expected.resize(160, 0xFF);
        assert_eq!(read(&second).payload, &expected[..]);
        assert!(player.is_finished());
    }

    #[test]
    fn a_law_silence_and_another_payload_type() {
        let t0 = Instant::now();
        let config = PlayerConfig {
            law: Law::ALaw,
            payload_type: 8,
            ..config()
        };
        let mut player = Player::new(config, t0);
        player.push(audio(10));
        let p = player.poll_transmit(t0).unwrap();
        assert_eq!(read(&p).payload_type, 8);
        assert_eq!(read(&p).payload[10..], [0xD5; 150]);
    }

    #[test]
    fn audio_pushed_after_a_pause_starts_at_the_current_slot() {
        let t0 = Instant::now();
        let mut player = Player::new(config(), t0);
        player.push(audio(160));
        player.poll_transmit(t0).unwrap();
        assert!(player.is_finished());
        // Pushed in time for the next slot: it follows on, no marker.
        player.push(audio(160));
        let p = player.poll_transmit(t0 + 20 * MS).unwrap();
        assert_eq!((read(&p).timestamp, read(&p).marker), (50_160, false));
        // Pushed a second later: the slot of now, with the marker.
        player.push(audio(160));
        assert_eq!(player.poll_timeout(), Some(t0 + 40 * MS), "due at once");
        let p = player.poll_transmit(t0 + 1030 * MS).unwrap();
        assert_eq!(
            (read(&p).sequence, read(&p).timestamp, read(&p).marker),
            (1002, 50_000 + 51 * 160, true)
        );
    }

    #[test]
    fn clear_stops_playing() {
        let t0 = Instant::now();
        let mut player = Player::new(config(), t0);
        player.push(audio(1600));
        player.poll_transmit(t0).unwrap();
        player.clear();
        assert!(player.is_finished());
        assert_eq!(player.poll_transmit(t0 + 20 * MS), None);
        player.push(audio(20));
        assert_eq!(
            read(&player.poll_transmit(t0 + 20 * MS).unwrap()).payload[..20],
            audio(20)[..]
        );
    }

    #[test]
    fn other_packet_times() {
        let t0 = Instant::now();
        let mut player = Player::new(
            PlayerConfig {
                ptime_ms: 30,
                ..config()
            },
            t0,
        );
        player.push(audio(480));
        assert_eq!(read(&player.poll_transmit(t0).unwrap()).payload.len(), 240);
        assert_eq!(player.poll_timeout(), Some(t0 + 30 * MS));
        let p = player.poll_transmit(t0 + 30 * MS).unwrap();
        assert_eq!(read(&p).timestamp, 50_240);
        // A zero packet time is taken as 1 ms.
        let mut player = Player::new(
            PlayerConfig {
                ptime_ms: 0,
                ..config()
            },
            t0,
        );
        player.push(audio(16));
        assert_eq!(read(&player.poll_transmit(t0).unwrap()).payload.len(), 8);
    }

    #[test]
    fn timestamps_and_sequence_numbers_wrap() {
        let t0 = Instant::now();
        let config = PlayerConfig {
            first_sequence: 65535,
            first_timestamp: u32::MAX - 100,
            ..config()
        };
        let mut player = Player::new(config, t0);
        player.push(audio(320));
        player.poll_transmit(t0).unwrap();
        let p = player.poll_transmit(t0 + 20 * MS).unwrap();
        assert_eq!((read(&p).sequence, read(&p).timestamp), (0, 59));
    }

    #[test]
    fn a_stall_of_days_does_not_overflow() {
        let t0 = Instant::now();
        let mut player = Player::new(config(), t0);
        player.push(audio(320));
        player.poll_transmit(t0).unwrap();
        let days = t0 + Duration::from_secs(3 * 86_400);
        let p = player.poll_transmit(days).unwrap();
        let slot: u64 = 3 * 86_400 * 50;
        assert_eq!(
            read(&p).timestamp,
            50_000u32.wrapping_add((slot * 160) as u32)
        );
        assert_eq!(
            player.rtp_timestamp_at(days),
            50_000u32.wrapping_add((slot * 160) as u32)
        );
    }

    #[test]
    fn rtp_timestamp_of_an_instant() {
        let t0 = Instant::now();
        let player = Player::new(config(), t0);
        assert_eq!(player.rtp_timestamp_at(t0), 50_000);
        assert_eq!(player.rtp_timestamp_at(t0 + 1000 * MS), 58_000);
        assert_eq!(
            player.rtp_timestamp_at(t0 + Duration::from_micros(125)),
            50_001
        );
        assert_eq!(player.rtp_timestamp_at(t0 - 5 * MS), 50_000);
    }

    proptest! {
        /// Whenever it is polled: at most one packet per slot, each sent within its own
        /// slot, its timestamp the slot's, the sequence numbers consecutive, the audio in
        /// order and whole.
        #[test]
        fn never_bursts_never_drifts(
            gaps in proptest::collection::vec(0u64..70_000, 1..200),
            len in 1usize..6000,
        ) {
            let t0 = Instant::now();
            let mut player = Player::new(config(), t0);
            player.push(audio(len));
            let mut now = t0;
            let mut sent: Vec<(Instant, Vec<u8>)> = Vec::new();
            for gap in gaps {
                now += Duration::from_micros(gap);
                while let Some(packet) = player.poll_transmit(now) {
                    sent.push((now, packet));
                }
                if let Some(due) = player.poll_timeout() {
                    prop_assert!(due > now);
                }
            }
            let mut played = Vec::new();
            let mut last_slot = None;
            for (i, (at, packet)) in sent.iter().enumerate() {
                let p = read(packet);
                let slot = u64::from(p.timestamp.wrapping_sub(50_000)) / 160;
                prop_assert_eq!(p.timestamp.wrapping_sub(50_000) % 160, 0);
                let due = t0 + 20 * MS * slot as u32;
                prop_assert!(*at >= due && *at < due + 20 * MS, "sent within its slot");
                prop_assert!(last_slot.is_none_or(|l| slot > l), "one packet per slot");
                prop_assert_eq!(p.sequence, 1000u16.wrapping_add(i as u16));
                prop_assert_eq!(p.marker, last_slot.is_none_or(|l| slot > l + 1));
                last_slot = Some(slot);
                played.extend_from_slice(p.payload);
            }
            let whole = audio(len);
            let n = played.len().min(len);
            prop_assert_eq!(&played[..n], &whole[..n]);
            if player.is_finished() {
                prop_assert!(played.len() >= len && played.len() < len + 160);
            }
        }
    }
}
