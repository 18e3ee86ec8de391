//! G.711 (ITU-T Recommendation G.711), the two 8-bit telephone codecs every SIP phone speaks:
//! µ-law (PCMU, RTP payload type 0) and A-law (PCMA, payload type 8), at 8,000 samples a
//! second, one byte a sample.
//!
//! Both squeeze a linear sample into 8 bits: a sign, a 3-bit segment (which power of two the
//! magnitude falls in) and a 4-bit step within the segment. The segment boundaries and steps
//! are the standard's (its tables 1 and 2), here on the 16-bit scale of WAV files: µ-law's
//! 14-bit values × 4, A-law's 13-bit values × 8. A code decodes to the middle of its step.
//!
//! Two codes of µ-law decode to zero: `0xFF` (+0) and `0x7F` (−0), as the standard's table
//! lists a positive and a negative character for the smallest step. Encoding zero gives +0,
//! and small negative samples (−1 to −3) give −0, so `0x7F` is the only code of either law
//! that does not come back from a decode and an encode unchanged. A-law has no such pair:
//! its smallest steps decode to ±8. Zero-code suppression (a T1 line's replacement of `0x00`)
//! is a property of old transmission systems, not of G.711 over RTP, and is not done.

/// Which of the two G.711 laws.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Law {
    /// µ-law: North America and Japan; RTP's PCMU.
    MuLaw,
    /// A-law: the rest of the world; RTP's PCMA.
    ALaw,
}

impl Law {
    /// The static RTP payload type of the law (RFC 3551 §6): PCMU 0, PCMA 8.
    pub fn payload_type(self) -> u8 {
        match self {
            Law::MuLaw => 0,
            Law::ALaw => 8,
        }
    }

    /// The encoding name in an SDP `a=rtpmap` line.
    pub fn encoding_name(self) -> &'static str {
        match self {
            Law::MuLaw => "PCMU",
            Law::ALaw => "PCMA",
        }
    }

    /// The code of silence (a zero sample): what fills a short last packet.
    pub fn silence(self) -> u8 {
        self.encode_sample(0)
    }

    /// One linear sample to its code.
    pub fn encode_sample(self, sample: i16) -> u8 {
        match self {
            Law::MuLaw => ulaw_encode(sample),
            Law::ALaw => alaw_encode(sample),
        }
    }

    /// One code to its linear sample.
    pub fn decode_sample(self, code: u8) -> i16 {
        match self {
            Law::MuLaw => ULAW_DECODE[usize::from(code)],
            Law::ALaw => ALAW_DECODE[usize::from(code)],
        }
    }

    /// Linear samples to codes, appended to `out`.
    pub fn encode_into(self, samples: &[i16], out: &mut Vec<u8>) {
        out.extend(samples.iter().map(|&s| self.encode_sample(s)));
    }

    /// Codes to linear samples, appended to `out`.
    pub fn decode_into(self, codes: &[u8], out: &mut Vec<i16>) {
        out.extend(codes.iter().map(|&c| self.decode_sample(c)));
    }

    /// Linear samples to a new buffer of codes.
    pub fn encode(self, samples: &[i16]) -> Vec<u8> {
        let mut out = Vec::with_capacity(samples.len());
        self.encode_into(samples, &mut out);
        out
    }

    /// Codes to a new buffer of linear samples.
    pub fn decode(self, codes: &[u8]) -> Vec<i16> {
        let mut out = Vec::with_capacity(codes.len());
        self.decode_into(codes, &mut out);
        out
    }
}

/// What µ-law adds to the magnitude so that every segment starts at a power of two (33 on
/// the 14-bit scale, × 4).
const ULAW_BIAS: i32 = 0x84;
/// The largest magnitude that still fits 15 bits with the bias (32635 + 132 = 32767); every
/// larger one is in the top step anyway, which reaches 32636 (8159 × 4).
const ULAW_CLIP: i32 = 32635;

/// A 16-bit sample to µ-law: sign, segment (the highest set bit of magnitude + bias), the
/// four bits after it, all inverted (the transmitted character is the complement).
pub fn ulaw_encode(sample: i16) -> u8 {
    let sample = i32::from(sample);
    let sign = if sample < 0 { 0x80 } else { 0 };
    let biased = sample.abs().min(ULAW_CLIP) + ULAW_BIAS;
    // biased is within 132..=32767: its highest bit is bit 7 to bit 14, segment 0 to 7.
    let segment = 31 - biased.leading_zeros() as i32 - 7;
    let step = (biased >> (segment + 3)) & 0x0F;
    !(sign | (segment << 4) | step) as u8
}

/// A µ-law code to its 16-bit sample (the middle of its step).
pub fn ulaw_decode(code: u8) -> i16 {
    ULAW_DECODE[usize::from(code)]
}

/// A 16-bit sample to A-law: sign (1 for positive), segment, four bits of step, the even
/// bits inverted (the transmitted character is XORed with `0x55`).
pub fn alaw_encode(sample: i16) -> u8 {
    let sample = i32::from(sample);
    let sign = if sample >= 0 { 0x80 } else { 0 };
    // 13-bit scale: the magnitude in units of 8, 0..=4095.
    let magnitude = sample.abs().min(32767) >> 3;
    let code = if magnitude < 32 {
        // Segment 0: steps of 2 (on the 13-bit scale) from 0.
        magnitude >> 1
    } else {
        // Segment 1 to 7: magnitude within 32·2^(s-1) .. 64·2^(s-1), 16 steps each.
        let segment = 31 - magnitude.leading_zeros() as i32 - 4;
        let step = (magnitude >> segment) & 0x0F;
        (segment << 4) | step
    };
    ((sign | code) ^ 0x55) as u8
}

/// An A-law code to its 16-bit sample (the middle of its step).
pub fn alaw_decode(code: u8) -> i16 {
    ALAW_DECODE[usize::from(code)]
}

const fn ulaw_decode_calc(code: u8) -> i16 {
    let bits = !code;
    let segment = (bits >> 4) & 0x07;
    let step = (bits & 0x0F) as i32;
    let magnitude = (((step << 3) + ULAW_BIAS) << segment) - ULAW_BIAS;
    if bits & 0x80 != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

const fn alaw_decode_calc(code: u8) -> i16 {
    let bits = code ^ 0x55;
    let segment = (bits >> 4) & 0x07;
    let step = (bits & 0x0F) as i32;
    // On the 16-bit scale: segment 0 from 0, segment s from 256·2^(s-1), steps of
    // 16·2^(s-1) (16 in segment 0); the middle of the step is half a step up.
    let magnitude = if segment == 0 {
        (step << 4) + 8
    } else {
        ((step << 4) + 0x108) << (segment - 1)
    };
    if bits & 0x80 != 0 {
        magnitude as i16
    } else {
        -magnitude as i16
    }
}

const fn table(law: Law) -> [i16; 256] {
    let mut out = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        out[i] = match law {
            Law::MuLaw => ulaw_decode_calc(i as u8),
            Law::ALaw => alaw_decode_calc(i as u8),
        };
        i += 1;
    }
    out
}

/// Every µ-law code's sample, computed at compile time.
static ULAW_DECODE: [i16; 256] = table(Law::MuLaw);
/// Every A-law code's sample, computed at compile time.
static ALAW_DECODE: [i16; 256] = table(Law::ALaw);

#[cfg(test)]
mod tests {
    use super::*;

    /// The standard's quantizer written out plainly: each segment as (first decision value,
    /// step), on the 16-bit scale, for positive magnitudes; 16 steps per segment. A sample
    /// falls in the step whose interval holds its magnitude ([low, high), the top one open
    /// up to the clip), and the code is sign · segment · step.
    struct Reference {
        segments: [(i32, i32); 8],
        law: Law,
    }

    impl Reference {
        /// G.711 table 2 (µ-law), 14-bit decision values 0, 1, 31, 95, 223, 479, 991, 2015,
        /// 4063 (the first step is 1 wide, the rest of segment 0 2 wide) × 4.
        fn mu() -> Reference {
            Reference {
                segments: [
                    (-4, 8), // the first step [0, 4) is half of a step centred on 0
                    (124, 16),
                    (380, 32),
                    (892, 64),
                    (1916, 128),
                    (3964, 256),
                    (8060, 512),
                    (16252, 1024),
                ],
                law: Law::MuLaw,
            }
        }

        /// G.711 table 1 (A-law), 13-bit decision values 0, 32, 64, 128, … 2048, with steps
        /// of 2, 2, 4, … 128, × 8.
        fn a() -> Reference {
            Reference {
                segments: [
                    (0, 16),
                    (256, 16),
                    (512, 32),
                    (1024, 64),
                    (2048, 128),
                    (4096, 256),
                    (8192, 512),
                    (16384, 1024),
                ],
                law: Law::ALaw,
            }
        }

        fn encode(&self, sample: i16) -> u8 {
            let magnitude = i32::from(sample).abs();
            let negative = sample < 0;
            let mut found = (7, 15); // beyond the last decision value: the top step
            'outer: for (segment, &(low, step)) in self.segments.iter().enumerate() {
                for k in 0..16 {
                    let start = low + k * step;
                    if magnitude >= start.max(0) && magnitude < start + step {
                        found = (segment as u8, k as u8);
                        break 'outer;
                    }
                }
            }
            let (segment, k) = found;
            match self.law {
                Law::MuLaw => !((if negative { 0x80 } else { 0 }) | (segment << 4) | k),
                Law::ALaw => ((if negative { 0 } else { 0x80 }) | (segment << 4) | k) ^ 0x55,
            }
        }

        /// The middle of the code's step, from the same table.
        fn decode(&self, code: u8) -> i16 {
            let bits = match self.law {
                Law::MuLaw => !code,
                Law::ALaw => code ^ 0x55 ^ 0x80, // sign bit 1 = negative, like µ-law
            };
            let (low, step) = self.segments[usize::from((bits >> 4) & 7)];
            let middle = low + i32::from(bits & 0x0F) * step + step / 2;
            let value = if bits & 0x80 != 0 { -middle } else { middle };
            value as i16
        }
    }

    #[test]
    fn every_sample_encodes_as_the_standard_table_says() {
        for reference in [Reference::mu(), Reference::a()] {
            for sample in i16::MIN..=i16::MAX {
                assert_eq!(
                    reference.law.encode_sample(sample),
                    reference.encode(sample),
                    "{:?} {sample}",
                    reference.law
                );
            }
        }
    }

    #[test]
    fn every_code_decodes_to_the_middle_of_its_step() {
        for reference in [Reference::mu(), Reference::a()] {
            for code in 0..=255u8 {
                assert_eq!(
                    reference.law.decode_sample(code),
                    reference.decode(code),
                    "{:?} {code:#04x}",
                    reference.law
                );
            }
        }
    }

    #[test]
    fn every_alaw_code_comes_back_unchanged() {
        for code in 0..=255u8 {
            assert_eq!(alaw_encode(alaw_decode(code)), code, "{code:#04x}");
        }
    }

    #[test]
    fn every_ulaw_code_comes_back_unchanged_but_negative_zero() {
        for code in 0..=255u8 {
            let back = ulaw_encode(ulaw_decode(code));
            if code == 0x7F {
                // −0 decodes to 0, and 0 is encoded as +0.
                assert_eq!((ulaw_decode(code), back), (0, 0xFF));
            } else {
                assert_eq!(back, code, "{code:#04x}");
            }
        }
        assert_eq!(ulaw_decode(0xFF), 0);
        assert_eq!(ulaw_encode(0), 0xFF);
        assert_eq!(ulaw_encode(-1), 0x7F);
        assert_eq!(ulaw_encode(-3), 0x7F);
        assert_eq!(ulaw_encode(-4), 0x7E);
    }

    #[test]
    fn decoded_samples_are_distinct_and_ordered() {
        // µ-law: 255 distinct values (the two zeros are one); A-law: 256.
        for (law, distinct) in [(Law::MuLaw, 255), (Law::ALaw, 256)] {
            let mut values: Vec<i16> = (0..=255u8).map(|c| law.decode_sample(c)).collect();
            values.sort_unstable();
            values.dedup();
            assert_eq!(values.len(), distinct, "{law:?}");
        }
        // Encoding is monotonic: a larger sample never gets a smaller decoded value.
        for law in [Law::MuLaw, Law::ALaw] {
            let mut last = i16::MIN;
            for sample in i16::MIN..=i16::MAX {
                let v = law.decode_sample(law.encode_sample(sample));
                assert!(v >= last, "{law:?} {sample}");
                last = v;
            }
        }
    }

    #[test]
    fn known_values() {
        // Silence, the extremes, and the first steps.
        assert_eq!(Law::MuLaw.silence(), 0xFF);
        assert_eq!(Law::ALaw.silence(), 0xD5);
        assert_eq!(ulaw_encode(i16::MAX), 0x80);
        assert_eq!(ulaw_encode(i16::MIN), 0x00);
        assert_eq!(ulaw_decode(0x80), 32124);
        assert_eq!(ulaw_decode(0x00), -32124);
        assert_eq!(alaw_encode(i16::MAX), 0xAA);
        assert_eq!(alaw_encode(i16::MIN), 0x2A);
        assert_eq!(alaw_decode(0xAA), 32256);
        assert_eq!(alaw_decode(0x2A), -32256);
        assert_eq!(alaw_decode(0xD5), 8);
        assert_eq!(alaw_decode(0x55), -8);
        assert_eq!(ulaw_decode(0xFE), 8);
    }

    #[test]
    fn slices() {
        let samples = [0i16, 1000, -1000, 32767, -32768, 8];
        for law in [Law::MuLaw, Law::ALaw] {
            let codes = law.encode(&samples);
            assert_eq!(codes.len(), samples.len());
            let back = law.decode(&codes);
            for (s, b) in samples.iter().zip(&back) {
                assert_eq!(law.encode_sample(*b), law.encode_sample(*s));
            }
            let mut appended = vec![1u8];
            law.encode_into(&samples, &mut appended);
            assert_eq!(&appended[1..], &codes[..]);
            let mut decoded = vec![7i16];
            law.decode_into(&codes, &mut decoded);
            assert_eq!(&decoded[1..], &back[..]);
        }
        assert!(Law::MuLaw.encode(&[]).is_empty());
    }

    #[test]
    fn payload_types() {
        assert_eq!(Law::MuLaw.payload_type(), 0);
        assert_eq!(Law::ALaw.payload_type(), 8);
        assert_eq!(Law::MuLaw.encoding_name(), "PCMU");
        assert_eq!(Law::ALaw.encoding_name(), "PCMA");
    }
}
