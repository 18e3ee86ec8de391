//! A recorder: what the far end says, as 16-bit linear samples at 8 kHz, sans-I/O (the
//! start of a voicemail message, a greeting, a recorded name).
//!
//! Each packet's audio is placed by its RTP timestamp, not by when it arrived: a packet that
//! comes late but in time lands where it belongs, a lost one leaves silence of its length,
//! and a sender that stops sending while nothing is said (silence suppression) moves its
//! timestamp on, which the recording keeps as silence. The first packet's timestamp is
//! the recording's start; a packet from before it is ignored. The recording is bounded: at
//! most `max` long whatever the timestamps say, so a sender that jumps its timestamp far
//! ahead only ends the recording sooner.
//!
//! [`Recorder::push`] says when the recording must end by itself: it reached `max`, or
//! nothing louder than the silence level was heard for the silence time (from the start, for
//! a caller who says nothing). The rest — a key pressed, the caller hanging up, the session
//! closing — is the owner's to decide, with [`Recorder::finish`].

use std::time::Duration;

use crate::g711::Law;
use crate::rtp;

/// Samples per second (G.711).
const RATE: usize = 8000;

/// When quiet ends a recording.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Silence {
    /// The loudest a packet may be (its RMS, in linear 16-bit units) and still count as
    /// silence. Speech is some hundreds to thousands; line noise tens.
    pub level: u16,
    /// Quiet this long ends the recording.
    pub after: Duration,
}

/// What a recorder records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecorderConfig {
    /// The law of the payloads pushed.
    pub law: Law,
    /// The longest recording.
    pub max: Duration,
    /// Quiet that ends the recording; `None`: only `max` and the owner end it.
    pub silence: Option<Silence>,
}

/// Why a recording ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// It reached the longest allowed.
    MaxLength,
    /// Nothing was said for the silence time (the quiet at its end is cut off).
    Silence,
    /// Its owner stopped it (a key pressed, a command).
    Stopped,
    /// Its session closed (the far end hung up).
    Closed,
}

/// A finished recording.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recording {
    /// 16-bit linear samples at 8 kHz, mono.
    pub samples: Vec<i16>,
    pub ended: Ended,
}

impl Recording {
    /// How long it is.
    pub fn duration(&self) -> Duration {
        samples_to_duration(self.samples.len())
    }
}

/// Audio kept after the last sound when silence ends a recording: the end of the last
/// word, not the quiet that followed.
const TAIL_KEPT: Duration = Duration::from_millis(300);

/// A recording in progress (see the module's documentation).
#[derive(Clone, Debug)]
pub struct Recorder {
    config: RecorderConfig,
    max_samples: usize,
    silence_samples: Option<usize>,
    samples: Vec<i16>,
    /// The timestamp of sample 0: the first packet's.
    origin: Option<u32>,
    /// Just after the last sample of the last packet louder than the silence level.
    sound_until: usize,
    /// Packets ignored: from before the start.
    early: u64,
}

impl Recorder {
    pub fn new(config: RecorderConfig) -> Recorder {
        Recorder {
            config,
            max_samples: duration_to_samples(config.max),
            silence_samples: config.silence.map(|s| duration_to_samples(s.after).max(1)),
            samples: Vec::new(),
            origin: None,
            sound_until: 0,
            early: 0,
        }
    }

    /// Adds a packet: `payload` (codes of the configured law) whose first sample has RTP
    /// timestamp `timestamp`. Whether the recording has ended by itself with it.
    pub fn push(&mut self, timestamp: u32, payload: &[u8]) -> Option<Ended> {
        let origin = *self.origin.get_or_insert(timestamp);
        let offset = rtp::timestamp_delta(timestamp, origin);
        if offset < 0 {
            self.early += 1;
            return None;
        }
        let offset = offset as usize;
        let end = offset.saturating_add(payload.len());
        let fits = end.min(self.max_samples);
        if fits > self.samples.len() {
            self.samples.resize(fits, 0);
        }
        let mut energy = 0u64;
        for (slot, &code) in self.samples[offset.min(fits)..fits].iter_mut().zip(payload) {
            let s = self.config.law.decode_sample(code);
            *slot = s;
            energy += (i64::from(s) * i64::from(s)) as u64;
        }
        let written = fits.saturating_sub(offset);
        if end >= self.max_samples {
            return Some(Ended::MaxLength);
        }
        let (Some(silence), Some(quiet)) = (self.config.silence, self.silence_samples) else {
            return None;
        };
        let loud =
            written > 0 && ((energy / written as u64) as f64).sqrt() > f64::from(silence.level);
        if loud {
            // Quiet until this packet (a gap in the timestamps is quiet too) may have been
            // long enough already.
            if offset.saturating_sub(self.sound_until) >= quiet {
                return Some(Ended::Silence);
            }
            self.sound_until = self.sound_until.max(fits);
            None
        } else {
            (self.samples.len() - self.sound_until >= quiet).then_some(Ended::Silence)
        }
    }

    /// How long the recording is so far.
    pub fn duration(&self) -> Duration {
        samples_to_duration(self.samples.len())
    }

    /// Packets ignored because they were from before the recording's start.
    pub fn early_packets(&self) -> u64 {
        self.early
    }

    /// The recording, ended for `ended`. Ended by silence, the quiet at its end is cut off
    /// (all but a moment after the last sound).
    pub fn finish(mut self, ended: Ended) -> Recording {
        if ended == Ended::Silence {
            let keep = self
                .sound_until
                .saturating_add(duration_to_samples(TAIL_KEPT));
            self.samples.truncate(keep);
        }
        Recording {
            samples: self.samples,
            ended,
        }
    }
}

fn duration_to_samples(d: Duration) -> usize {
    (d.as_millis() as usize).saturating_mul(RATE / 1000)
}

fn samples_to_duration(n: usize) -> Duration {
    Duration::from_millis((n / (RATE / 1000)) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAW: Law = Law::MuLaw;

    fn config(max_ms: u64, silence: Option<(u16, u64)>) -> RecorderConfig {
        RecorderConfig {
            law: LAW,
            max: Duration::from_millis(max_ms),
            silence: silence.map(|(level, ms)| Silence {
                level,
                after: Duration::from_millis(ms),
            }),
        }
    }

    /// A 20 ms packet of a constant sample (a square-ish tone is not needed: the RMS of a
    /// constant is its magnitude).
    fn packet(sample: i16) -> Vec<u8> {
        vec![LAW.encode_sample(sample); 160]
    }

    fn heard(sample: i16) -> i16 {
        LAW.decode_sample(LAW.encode_sample(sample))
    }

    #[test]
    fn packets_in_order_are_the_recording() {
        let mut r = Recorder::new(config(10_000, None));
        for (i, s) in [1000i16, -2000, 3000].iter().enumerate() {
            assert_eq!(r.push(5000 + 160 * i as u32, &packet(*s)), None);
        }
        let rec = r.finish(Ended::Stopped);
        assert_eq!(rec.samples.len(), 480);
        assert_eq!(rec.duration(), Duration::from_millis(60));
        assert!(rec.samples[..160].iter().all(|&s| s == heard(1000)));
        assert!(rec.samples[160..320].iter().all(|&s| s == heard(-2000)));
        assert!(rec.samples[320..].iter().all(|&s| s == heard(3000)));
        assert_eq!(rec.ended, Ended::Stopped);
    }

    #[test]
    fn a_late_packet_lands_in_its_place_and_a_lost_one_is_silence() {
        let mut r = Recorder::new(config(10_000, None));
        r.push(0, &packet(1000));
        r.push(480, &packet(4000)); // 160 and 320 not yet come
        r.push(160, &packet(2000)); // late
        let rec = r.finish(Ended::Closed);
        assert_eq!(rec.samples.len(), 640);
        assert!(rec.samples[160..320].iter().all(|&s| s == heard(2000)));
        assert!(
            rec.samples[320..480].iter().all(|&s| s == 0),
            "lost: silence"
        );
        assert!(rec.samples[480..].iter().all(|&s| s == heard(4000)));
    }

    #[test]
    fn a_packet_from_before_the_start_is_ignored() {
        let mut r = Recorder::new(config(10_000, None));
        r.push(1600, &packet(1000));
        r.push(1440, &packet(2000));
        assert_eq!(r.early_packets(), 1);
        assert_eq!(r.finish(Ended::Stopped).samples.len(), 160);
    }

    #[test]
    fn timestamps_wrap_around() {
        let mut r = Recorder::new(config(10_000, None));
        let first = u32::MAX - 100;
        r.push(first, &packet(1000));
        r.push(first.wrapping_add(160), &packet(2000));
        let rec = r.finish(Ended::Stopped);
        assert_eq!(rec.samples.len(), 320);
        assert!(rec.samples[160..].iter().all(|&s| s == heard(2000)));
    }

    #[test]
    fn the_longest_recording_ends_it_exactly_there() {
        let mut r = Recorder::new(config(100, None)); // 800 samples: 5 packets
        for i in 0..4u32 {
            assert_eq!(r.push(i * 160, &packet(1000)), None);
        }
        assert_eq!(r.push(4 * 160, &packet(1000)), Some(Ended::MaxLength));
        assert_eq!(r.finish(Ended::MaxLength).samples.len(), 800);
    }

    #[test]
    fn a_timestamp_far_ahead_cannot_make_it_longer_than_the_longest() {
        let mut r = Recorder::new(config(1000, None));
        r.push(0, &packet(1000));
        assert_eq!(r.push(1_000_000_000, &packet(1000)), Some(Ended::MaxLength));
        let rec = r.finish(Ended::MaxLength);
        assert_eq!(rec.samples.len(), 8000);
        assert_eq!(rec.duration(), Duration::from_secs(1));
    }

    #[test]
    fn quiet_after_speech_ends_it_and_is_cut_off() {
        // Silence: RMS at most 200 for 1 s.
        let mut r = Recorder::new(config(60_000, Some((200, 1000))));
        let mut ts = 0u32;
        for _ in 0..50 {
            assert_eq!(r.push(ts, &packet(3000)), None); // 1 s of sound
            ts += 160;
        }
        let mut ended = None;
        let mut quiet_packets = 0;
        while ended.is_none() {
            ended = r.push(ts, &packet(50)); // line noise
            ts += 160;
            quiet_packets += 1;
            assert!(quiet_packets <= 50, "not ended after 1 s of quiet");
        }
        assert_eq!(ended, Some(Ended::Silence));
        assert_eq!(quiet_packets, 50);
        let rec = r.finish(Ended::Silence);
        // The second of sound and 300 ms after it.
        assert_eq!(rec.samples.len(), 8000 + 2400);
    }

    #[test]
    fn saying_nothing_from_the_start_ends_it_too() {
        let mut r = Recorder::new(config(60_000, Some((200, 500))));
        let mut ended = None;
        let mut ts = 0;
        for _ in 0..25 {
            ended = r.push(ts, &packet(0));
            ts += 160;
        }
        assert_eq!(ended, Some(Ended::Silence));
        assert_eq!(r.finish(Ended::Silence).samples.len(), 2400);
    }

    #[test]
    fn a_gap_in_the_timestamps_counts_as_quiet() {
        // Silence suppression: the sender stops, then resumes 2 s later.
        let mut r = Recorder::new(config(60_000, Some((200, 1000))));
        r.push(0, &packet(3000));
        assert_eq!(r.push(16_000, &packet(3000)), Some(Ended::Silence));
    }

    #[test]
    fn without_a_silence_setting_quiet_never_ends_it() {
        let mut r = Recorder::new(config(60_000, None));
        for i in 0..500u32 {
            assert_eq!(r.push(i * 160, &packet(0)), None);
        }
        assert_eq!(r.duration(), Duration::from_secs(10));
    }
}
