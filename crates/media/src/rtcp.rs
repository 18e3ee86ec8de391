//! RTCP (RFC 3550 §6), as little as a sender of announcements needs: a sender report with
//! our CNAME to send now and then, and a reading of received RTCP tolerant enough to count
//! it (and to notice a BYE) without trusting any of it.

use std::time::Duration;

/// A sender report's packet type (RFC 3550 §12.1).
const SR: u8 = 200;
/// A receiver report's packet type.
const RR: u8 = 201;
/// A source description's packet type.
const SDES: u8 = 202;
/// A goodbye's packet type.
const BYE: u8 = 203;
/// The SDES item that carries the canonical name.
const CNAME: u8 = 1;
/// Seconds from the NTP epoch (1900) to the Unix epoch (1970).
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// The sender information of a sender report (RFC 3550 §6.4.1), without report blocks: we
/// send announcements and report nothing of what we receive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SenderReport {
    /// The SSRC of the stream reported on.
    pub ssrc: u32,
    /// The wall-clock time of the report, in NTP format ([`ntp_timestamp`]).
    pub ntp: u64,
    /// The same instant in the stream's RTP timestamp units.
    pub rtp_timestamp: u32,
    /// Packets sent so far.
    pub packets: u32,
    /// Payload octets sent so far.
    pub octets: u32,
}

impl SenderReport {
    /// A compound RTCP packet: this sender report, then a source description with our
    /// CNAME (every compound packet carries one, RFC 3550 §6.1). A CNAME longer than 255
    /// octets is cut.
    pub fn build(&self, cname: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(28 + 12 + cname.len());
        out.extend_from_slice(&[0x80, SR, 0, 6]); // V=2, no report blocks; 7 words
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        out.extend_from_slice(&self.ntp.to_be_bytes());
        out.extend_from_slice(&self.rtp_timestamp.to_be_bytes());
        out.extend_from_slice(&self.packets.to_be_bytes());
        out.extend_from_slice(&self.octets.to_be_bytes());

        let name = &cname.as_bytes()[..cname.len().min(255)];
        let start = out.len();
        out.extend_from_slice(&[0x81, SDES, 0, 0]); // V=2, one chunk; length below
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        out.extend_from_slice(&[CNAME, name.len() as u8]);
        out.extend_from_slice(name);
        // The item list ends with a null octet, and the chunk with nulls to a 32-bit boundary.
        out.push(0);
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
        let words = ((out.len() - start) / 4 - 1) as u16;
        out[start + 2..start + 4].copy_from_slice(&words.to_be_bytes());
        out
    }
}

/// A wall-clock time, given as the time since the Unix epoch, in NTP format: seconds since
/// 1900 in the high 32 bits, the fraction of a second in the low 32.
pub fn ntp_timestamp(since_unix_epoch: Duration) -> u64 {
    let seconds = since_unix_epoch.as_secs().wrapping_add(NTP_UNIX_OFFSET);
    let fraction = (u64::from(since_unix_epoch.subsec_nanos()) << 32) / 1_000_000_000;
    (seconds << 32) | fraction
}

/// Whether a datagram looks like RTCP rather than RTP: version 2 and a packet type in the
/// range RFC 5761 §4 sets apart for RTCP (192 to 223, which RTP payload types with the
/// marker bit would collide with only for the payload types 64 to 95, never negotiated).
pub fn is_rtcp(data: &[u8]) -> bool {
    data.len() >= 8 && data[0] >> 6 == 2 && (192..=223).contains(&data[1])
}

/// What a received compound RTCP packet holds, counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Received {
    /// RTCP packets in the datagram.
    pub packets: usize,
    /// The first sender report's sender information, if there was one.
    pub sender: Option<SenderReport>,
    /// Receiver reports.
    pub receiver_reports: usize,
    /// Whether a BYE was among them.
    pub bye: bool,
}

/// Why a datagram was not read as RTCP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    /// Not version 2, or a packet type outside RTCP's range.
    #[error("not an RTCP packet")]
    NotRtcp,
    /// A packet's length runs past the datagram (or is not whole 32-bit words).
    #[error("an RTCP packet's length runs past the datagram")]
    Length,
    /// A sender report too short for its sender information.
    #[error("a sender report too short for its sender information")]
    ShortSenderReport,
}

/// Reads a compound RTCP packet: each packet's header and length, a sender report's sender
/// information, receiver reports and BYEs counted; any other RTCP type (SDES, APP,
/// feedback, extended reports) counted and skipped. Padding and the order of the packets
/// are not checked.
pub fn parse(data: &[u8]) -> Result<Received, Malformed> {
    if data.is_empty() || !data.len().is_multiple_of(4) {
        return Err(Malformed::Length);
    }
    let mut received = Received::default();
    let mut rest = data;
    while !rest.is_empty() {
        if rest.len() < 4 || rest[0] >> 6 != 2 || !(192..=223).contains(&rest[1]) {
            return Err(Malformed::NotRtcp);
        }
        let len = (usize::from(u16::from_be_bytes([rest[2], rest[3]])) + 1) * 4;
        if len > rest.len() {
            return Err(Malformed::Length);
        }
        let (packet, tail) = rest.split_at(len);
        match packet[1] {
            SR => {
                if packet.len() < 28 {
                    return Err(Malformed::ShortSenderReport);
                }
                let word = |i: usize| {
                    u32::from_be_bytes([packet[i], packet[i + 1], packet[i + 2], packet[i + 3]])
                };
                received.sender.get_or_insert(SenderReport {
                    ssrc: word(4),
                    ntp: (u64::from(word(8)) << 32) | u64::from(word(12)),
                    rtp_timestamp: word(16),
                    packets: word(20),
                    octets: word(24),
                });
            }
            RR => received.receiver_reports += 1,
            BYE => received.bye = true,
            _ => {}
        }
        received.packets += 1;
        rest = tail;
    }
    Ok(received)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn report() -> SenderReport {
        SenderReport {
            ssrc: 0x0102_0304,
            ntp: ntp_timestamp(Duration::from_millis(500)),
            rtp_timestamp: 160,
            packets: 2,
            octets: 320,
        }
    }

    #[test]
    fn ntp_format() {
        assert_eq!(ntp_timestamp(Duration::ZERO), 0x83AA_7E80_0000_0000);
        assert_eq!(
            ntp_timestamp(Duration::from_millis(500)),
            0x83AA_7E80_8000_0000
        );
        assert_eq!(
            ntp_timestamp(Duration::from_millis(250)),
            0x83AA_7E80_4000_0000
        );
        assert_eq!(
            ntp_timestamp(Duration::from_secs(1_700_000_000)) >> 32,
            1_700_000_000 + 2_208_988_800
        );
    }

    #[test]
    fn sender_report_bytes() {
        let bytes = report().build("sb@host");
        let expected: &[u8] = &[
            // SR: V=2 P=0 RC=0, PT 200, length 6 (7 words)
            0x80, 200, 0x00, 0x06, //
            0x01, 0x02, 0x03, 0x04, // SSRC
            0x83, 0xAA, 0x7E, 0x80, // NTP seconds: 1900 → 1970
            0x80, 0x00, 0x00, 0x00, // NTP fraction: half a second
            0x00, 0x00, 0x00, 0xA0, // RTP timestamp 160
            0x00, 0x00, 0x00, 0x02, // packets
            0x00, 0x00, 0x01, 0x40, // octets 320
            // SDES: V=2 P=0 SC=1, PT 202, length 4 (5 words)
            0x81, 202, 0x00, 0x04, //
            0x01, 0x02, 0x03, 0x04, // SSRC
            0x01, 0x07, b's', b'b', // CNAME, 7 octets
            b'@', b'h', b'o', b's', //
            b't', 0x00, 0x00, 0x00, // end of items, padding to the word
        ];
        assert_eq!(bytes, expected);
    }

    #[test]
    fn a_cname_that_fills_the_last_word_gets_a_word_of_nulls() {
        // 4 (SSRC) + 2 + 2 octets of name = 8: the null that ends the list needs a new word.
        let bytes = report().build("ab");
        assert_eq!(
            &bytes[28..],
            &[0x81, 202, 0, 3, 1, 2, 3, 4, 1, 2, b'a', b'b', 0, 0, 0, 0]
        );
        let long = "x".repeat(300);
        let bytes = report().build(&long);
        assert_eq!(bytes[28 + 9], 255);
        assert_eq!(bytes.len() % 4, 0);
    }

    #[test]
    fn reads_its_own_report() {
        let bytes = report().build("sb@host");
        assert!(is_rtcp(&bytes));
        let got = parse(&bytes).unwrap();
        assert_eq!(
            got,
            Received {
                packets: 2,
                sender: Some(report()),
                receiver_reports: 0,
                bye: false,
            }
        );
    }

    #[test]
    fn reads_receiver_reports_and_bye() {
        // RR with one report block (6 words) + BYE with one SSRC.
        let mut data = vec![0x81, 201, 0, 7];
        data.extend_from_slice(&[0; 28]);
        data.extend_from_slice(&[0x81, 203, 0, 1, 0, 0, 0, 9]);
        let got = parse(&data).unwrap();
        assert_eq!((got.packets, got.receiver_reports, got.bye), (2, 1, true));
        assert_eq!(got.sender, None);
    }

    #[test]
    fn refuses_malformed() {
        let bytes = report().build("sb@host");
        assert_eq!(parse(&[]), Err(Malformed::Length));
        assert_eq!(parse(&bytes[..30]), Err(Malformed::Length));
        assert_eq!(
            parse(&bytes[..32]),
            Err(Malformed::Length),
            "SDES cut short"
        );
        let mut rtp = bytes.clone();
        rtp[1] = 0; // PCMU
        assert_eq!(parse(&rtp), Err(Malformed::NotRtcp));
        assert!(!is_rtcp(&rtp));
        let mut v1 = bytes.clone();
        v1[0] = 0x40;
        assert_eq!(parse(&v1), Err(Malformed::NotRtcp));
        let short_sr = [0x80, 200, 0, 1, 0, 0, 0, 1];
        assert_eq!(parse(&short_sr), Err(Malformed::ShortSenderReport));
    }

    proptest! {
        #[test]
        fn reading_anything_never_panics(data in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = parse(&data);
            let _ = is_rtcp(&data);
        }
    }
}
