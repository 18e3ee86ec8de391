//! WAV files of the daemon's audio: 8000 Hz, mono, 16-bit PCM — what prompts are read
//! from, what voicemail messages are kept and fetched as, and what an uploaded greeting must
//! be.
//!
//! Reading never trusts the header's length for an allocation (the bytes given bound it),
//! and says what a file of another format is, so that a person can convert it.

use std::io::Cursor;

/// The one sample rate (G.711).
pub const SAMPLE_RATE: u32 = 8000;

/// Why bytes are not audio the daemon can use.
#[derive(Debug, thiserror::Error)]
pub enum WavError {
    /// Not a PCM WAV file hound can read (µ-law WAV, MP3, truncated…).
    #[error("not a PCM WAV file ({0})")]
    Unreadable(#[from] hound::Error),
    /// A WAV file of another rate, channel count or sample format (what it is).
    #[error("{0}, not 8000 Hz mono 16-bit PCM")]
    Format(String),
    /// More samples than allowed.
    #[error("longer than {max_secs} s")]
    TooLong { max_secs: u64 },
}

/// The WAV file (8000 Hz, mono, 16-bit PCM) of `samples`.
pub fn encode(samples: &[i16]) -> Vec<u8> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: SAMPLE_RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut out = Cursor::new(Vec::with_capacity(44 + samples.len() * 2));
    {
        // Writing to memory with this spec cannot fail but for a file over 4 GiB, which
        // no sample count the daemon keeps comes near.
        let mut w = hound::WavWriter::new(&mut out, spec).expect("in-memory WAV header");
        let mut w16 = w.get_i16_writer(samples.len() as u32);
        for s in samples {
            w16.write_sample(*s);
        }
        w16.flush().expect("in-memory WAV samples");
        w.finalize().expect("in-memory WAV");
    }
    out.into_inner()
}

/// The samples of a WAV file of 8000 Hz, mono, 16-bit PCM, at most `max_samples` of them.
pub fn decode(bytes: &[u8], max_samples: usize) -> Result<Vec<i16>, WavError> {
    let mut reader = hound::WavReader::new(bytes)?;
    let spec = reader.spec();
    if spec.sample_rate != SAMPLE_RATE
        || spec.channels != 1
        || spec.bits_per_sample != 16
        || spec.sample_format != hound::SampleFormat::Int
    {
        let format = match spec.sample_format {
            hound::SampleFormat::Int => "PCM",
            hound::SampleFormat::Float => "floating point",
        };
        return Err(WavError::Format(format!(
            "{} Hz, {} channel{}, {}-bit {format}",
            spec.sample_rate,
            spec.channels,
            if spec.channels == 1 { "" } else { "s" },
            spec.bits_per_sample
        )));
    }
    let declared = reader.len() as usize;
    if declared > max_samples {
        return Err(WavError::TooLong {
            max_secs: (max_samples as u64).div_ceil(SAMPLE_RATE.into()),
        });
    }
    let mut samples = Vec::with_capacity(declared.min(bytes.len() / 2));
    for sample in reader.samples::<i16>() {
        samples.push(sample?);
    }
    Ok(samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_samples_decode_to_themselves() {
        let samples: Vec<i16> = (0..8000)
            .map(|i| ((i * 37) % 65536 - 32768) as i16)
            .collect();
        let bytes = encode(&samples);
        assert_eq!(bytes.len(), 44 + samples.len() * 2);
        assert_eq!(decode(&bytes, samples.len()).unwrap(), samples);
        assert_eq!(decode(&encode(&[]), 0).unwrap(), Vec::<i16>::new());
    }

    #[test]
    fn other_formats_too_long_and_garbage_are_refused() {
        let bytes = encode(&[1; 8001]);
        assert!(matches!(
            decode(&bytes, 8000),
            Err(WavError::TooLong { max_secs: 1 })
        ));
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 44100,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut out = Cursor::new(Vec::new());
        let mut w = hound::WavWriter::new(&mut out, spec).unwrap();
        w.write_sample(0i16).unwrap();
        w.write_sample(0i16).unwrap();
        w.finalize().unwrap();
        let e = decode(&out.into_inner(), 100).unwrap_err().to_string();
        assert_eq!(
            e,
            "44100 Hz, 2 channels, 16-bit PCM, not 8000 Hz mono 16-bit PCM"
        );
        assert!(matches!(
            decode(b"RIFF\0\0", 10),
            Err(WavError::Unreadable(_))
        ));
        // A header that claims more samples than the bytes hold allocates only what is there.
        let mut lying = encode(&[5; 10]);
        lying[40..44].copy_from_slice(&(2_000_000u32).to_le_bytes());
        assert!(decode(&lying, 10_000_000).is_err());
    }
}
