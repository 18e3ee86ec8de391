//! The offer/answer model (RFC 3264) for our one kind of stream: G.711 audio over RTP/AVP,
//! with telephone-events (RFC 4733) when the peer offers them.
//!
//! Given an offer, [`answer`] takes the first audio stream over RTP/AVP that has a codec in
//! common — PCMU or PCMA, in the offerer's order of preference, at the payload type the offer
//! gives it — and refuses every other stream (port 0, as RFC 3264 §6 says), non-audio ones
//! included. It answers with telephone-event at the payload type the offer uses for it at
//! 8,000 Hz, the offer's packet time when we can pace at it (10 to 60 ms, in 10 ms steps),
//! and the direction that mirrors the offer's: a stream the offerer only sends (hold, with
//! `a=sendonly`) we only receive, and one at the address `0.0.0.0` (the old way of holding,
//! RFC 3264 §8.4) we never send to. When no stream can be taken the error says which SIP
//! warning to answer 488 with. [`offer`] makes our own offer, and [`answered`] reads the
//! answer to it.

use std::net::{IpAddr, SocketAddr};

use crate::g711::Law;
use crate::sdp::{Attribute, Direction, Media, Origin, Session};

/// The packet time used when the peer asks for none (or one we do not pace at), in ms.
pub const DEFAULT_PTIME: u32 = 20;

/// The telephone-events we send and understand: the sixteen keys (RFC 4733 §3.2).
const EVENTS: &str = "0-15";

/// Our side of a session: where our RTP port is, the description's id and version, and the
/// G.711 laws we take.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Local {
    /// The address peers send our RTP to.
    pub address: IpAddr,
    /// Our RTP port (even; RTCP on the next one).
    pub port: u16,
    /// The `o=` session id.
    pub session_id: u64,
    /// The `o=` version: raised for each new description in the session.
    pub version: u64,
    /// The laws we take, in our order of preference for our own offers.
    pub laws: Vec<Law>,
    /// The payload type our offers give telephone-event.
    pub telephone_event: u8,
}

/// The stream agreed on, as we are to send and receive it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stream {
    /// Which media description (counted from 0) it is.
    pub index: usize,
    /// The codec.
    pub law: Law,
    /// The codec's payload type.
    pub payload_type: u8,
    /// The telephone-event payload type, when both sides have one.
    pub telephone_event: Option<u8>,
    /// The packet time we send with, in ms.
    pub ptime: u32,
    /// Our direction: whether we send, and whether we receive.
    pub direction: Direction,
    /// Where to send RTP; `None` when the peer gave no address to send to (`0.0.0.0`).
    pub remote: Option<SocketAddr>,
    /// Where to send RTCP: the `a=rtcp` address (RFC 3605), else the RTP port plus one.
    pub remote_rtcp: Option<SocketAddr>,
}

/// Why no stream could be agreed on. The order is of how much was in common: the most
/// telling reason is given when streams fail for different ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, thiserror::Error)]
pub enum NegotiationError {
    /// No audio stream offered (or only disabled ones, port 0).
    #[error("no audio stream offered")]
    NoAudio,
    /// Audio offered only over transports other than RTP/AVP (SRTP, DTLS).
    #[error("audio offered only over transports other than RTP/AVP")]
    Transport,
    /// Audio over RTP/AVP, but with no codec we take.
    #[error("no codec in common (PCMU, PCMA)")]
    NoCommonCodec,
    /// The answer to our offer refused our audio stream.
    #[error("the answer refused the audio stream")]
    Refused,
}

impl NegotiationError {
    /// The SIP warning code and text (RFC 3261 §20.43) to send with a 488.
    pub fn warning(self) -> (u16, &'static str) {
        match self {
            NegotiationError::NoAudio | NegotiationError::Refused => {
                (304, "Media type not available")
            }
            NegotiationError::Transport => (300, "Incompatible network protocol"),
            NegotiationError::NoCommonCodec => (305, "Incompatible media format"),
        }
    }
}

/// Our answer to `offer`, and the stream agreed on.
pub fn answer(offer: &Session, local: &Local) -> Result<(Session, Stream), NegotiationError> {
    let mut chosen = None;
    let mut error = NegotiationError::NoAudio;
    for (index, media) in offer.media.iter().enumerate() {
        if chosen.is_some() || !media.kind.eq_ignore_ascii_case("audio") || media.port == 0 {
            continue;
        }
        if !media.proto.eq_ignore_ascii_case("RTP/AVP") {
            error = error.max(NegotiationError::Transport);
            continue;
        }
        match read_stream(offer, index, &local.laws) {
            Ok(stream) => chosen = Some(stream),
            Err(e) => error = error.max(e),
        }
    }
    let stream = chosen.ok_or(error)?;
    let media = offer
        .media
        .iter()
        .enumerate()
        .map(|(index, offered)| {
            if index == stream.index {
                our_media(
                    local.port,
                    &[(stream.law, stream.payload_type)],
                    stream.telephone_event,
                    stream.ptime,
                    stream.direction,
                )
            } else {
                refused(offered)
            }
        })
        .collect();
    Ok((description(local, media), stream))
}

/// Our offer: one audio stream with our laws at their static payload types and
/// telephone-event, 20 ms packets, both ways.
pub fn offer(local: &Local) -> Session {
    let codecs: Vec<(Law, u8)> = local.laws.iter().map(|&l| (l, l.payload_type())).collect();
    let media = our_media(
        local.port,
        &codecs,
        Some(local.telephone_event),
        DEFAULT_PTIME,
        Direction::SendRecv,
    );
    description(local, vec![media])
}

/// The stream agreed on by the `answer` to our `offer`.
pub fn answered(
    offer: &Session,
    answer: &Session,
    local: &Local,
) -> Result<Stream, NegotiationError> {
    let index = offer
        .media
        .iter()
        .position(|m| m.kind == "audio" && m.port != 0)
        .ok_or(NegotiationError::NoAudio)?;
    match answer.media.get(index) {
        Some(m) if m.port != 0 && m.kind.eq_ignore_ascii_case("audio") => {
            read_stream(answer, index, &local.laws)
        }
        _ => Err(NegotiationError::Refused),
    }
}

/// The stream of the peer's media description `index`, as we are to use it.
fn read_stream(session: &Session, index: usize, laws: &[Law]) -> Result<Stream, NegotiationError> {
    let media = &session.media[index];
    let (law, payload_type) = codec(media, laws).ok_or(NegotiationError::NoCommonCodec)?;
    let ptime = media
        .ptime()
        .filter(|p| p.is_multiple_of(10) && (10..=60).contains(p))
        .filter(|p| media.maxptime().is_none_or(|max| *p <= max))
        .unwrap_or(DEFAULT_PTIME);
    let address = session.connection_of(media).filter(|a| !a.is_unspecified());
    let remote = address.map(|a| SocketAddr::new(a, media.port));
    // The peer's direction; one that gave no address cannot receive.
    let theirs = session.direction_of(media);
    let theirs = Direction::from_flags(theirs.sends(), theirs.receives() && remote.is_some());
    Ok(Stream {
        index,
        law,
        payload_type,
        telephone_event: telephone_event(media),
        ptime,
        direction: theirs.reversed(),
        remote,
        remote_rtcp: remote.and_then(|r| rtcp_address(media, r)),
    })
}

/// The first format (in the writer's order) that is a law we take: by its `a=rtpmap` (8 kHz,
/// one channel), or by its static payload type when it has none.
fn codec(media: &Media, laws: &[Law]) -> Option<(Law, u8)> {
    media.formats.iter().find_map(|format| {
        let payload_type: u8 = format.parse().ok().filter(|pt| *pt < 128)?;
        let law = match media.rtpmap(format) {
            Some(map) => {
                let mono = map.channels.is_none_or(|c| c == 1);
                if map.clock_rate != 8000 || !mono {
                    return None;
                }
                [Law::MuLaw, Law::ALaw]
                    .into_iter()
                    .find(|l| map.encoding.eq_ignore_ascii_case(l.encoding_name()))?
            }
            None => [Law::MuLaw, Law::ALaw]
                .into_iter()
                .find(|l| l.payload_type() == payload_type)?,
        };
        laws.contains(&law).then_some((law, payload_type))
    })
}

/// The payload type of telephone-event at 8 kHz, the codec's clock (a peer may offer it at
/// other rates too, for its wide-band codecs).
fn telephone_event(media: &Media) -> Option<u8> {
    media.formats.iter().find_map(|format| {
        let map = media.rtpmap(format)?;
        let event = map.encoding.eq_ignore_ascii_case("telephone-event") && map.clock_rate == 8000;
        format.parse().ok().filter(|pt| event && *pt < 128)
    })
}

/// `a=rtcp:port [IN IP4 address]` (RFC 3605), else the port after RTP's.
fn rtcp_address(media: &Media, rtp: SocketAddr) -> Option<SocketAddr> {
    let Some(value) = media.attribute("rtcp") else {
        return Some(SocketAddr::new(rtp.ip(), rtp.port().checked_add(1)?));
    };
    let mut fields = value.split_ascii_whitespace();
    let port = fields.next()?.parse().ok()?;
    let address = match (fields.next(), fields.next(), fields.next()) {
        (Some("IN"), Some(_), Some(address)) => address.parse().ok()?,
        _ => rtp.ip(),
    };
    Some(SocketAddr::new(address, port))
}

/// Our media description: the codecs, telephone-event, packet time and direction.
fn our_media(
    port: u16,
    codecs: &[(Law, u8)],
    telephone_event: Option<u8>,
    ptime: u32,
    direction: Direction,
) -> Media {
    let mut formats = Vec::new();
    let mut attributes = Vec::new();
    for &(law, payload_type) in codecs {
        formats.push(payload_type.to_string());
        attributes.push(Attribute::new(
            "rtpmap",
            format!("{payload_type} {}/8000", law.encoding_name()),
        ));
    }
    if let Some(pt) = telephone_event {
        formats.push(pt.to_string());
        attributes.push(Attribute::new(
            "rtpmap",
            format!("{pt} telephone-event/8000"),
        ));
        attributes.push(Attribute::new("fmtp", format!("{pt} {EVENTS}")));
    }
    attributes.push(Attribute::new("ptime", ptime.to_string()));
    attributes.push(Attribute::flag(direction.name()));
    Media {
        kind: "audio".into(),
        port,
        proto: "RTP/AVP".into(),
        formats,
        connection: None,
        attributes,
    }
}

/// A refused stream: the offered one with port 0, its formats kept (an `m=` line needs one).
fn refused(offered: &Media) -> Media {
    Media {
        port: 0,
        connection: None,
        attributes: Vec::new(),
        ..offered.clone()
    }
}

/// Our session description around `media`.
fn description(local: &Local, media: Vec<Media>) -> Session {
    Session {
        origin: Origin {
            username: "switchboard".into(),
            session_id: local.session_id.to_string(),
            version: local.version.to_string(),
            address_type: if local.address.is_ipv4() {
                "IP4"
            } else {
                "IP6"
            }
            .into(),
            address: local.address.to_string(),
        },
        name: "switchboard".into(),
        connection: Some(local.address),
        attributes: Vec::new(),
        media,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sdp::Limits;

    fn local() -> Local {
        Local {
            address: "192.0.2.1".parse().unwrap(),
            port: 40000,
            session_id: 7,
            version: 1,
            laws: vec![Law::MuLaw, Law::ALaw],
            telephone_event: 101,
        }
    }

    fn parse(text: &str) -> Session {
        Session::parse(text.replace('\n', "\r\n").as_bytes(), &Limits::default()).unwrap()
    }

    fn answer_text(offer: &str) -> (String, Stream) {
        let (answer, stream) = answer(&parse(offer), &local()).unwrap();
        (
            String::from_utf8(answer.to_bytes())
                .unwrap()
                .replace("\r\n", "\n"),
            stream,
        )
    }

    fn addr(s: &str) -> Option<SocketAddr> {
        Some(s.parse().unwrap())
    }

    /// What SIPp sends (tests/sipp/call_answered.xml with its keywords filled in).
    const SIPP: &str = "v=0
o=- 12341 1 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio 6000 RTP/AVP 0
a=rtpmap:0 PCMU/8000
";

    #[test]
    fn sipp() {
        let (text, stream) = answer_text(SIPP);
        assert_eq!(
            text,
            "v=0
o=switchboard 7 1 IN IP4 192.0.2.1
s=switchboard
c=IN IP4 192.0.2.1
t=0 0
m=audio 40000 RTP/AVP 0
a=rtpmap:0 PCMU/8000
a=ptime:20
a=sendrecv
"
        );
        assert_eq!(
            stream,
            Stream {
                index: 0,
                law: Law::MuLaw,
                payload_type: 0,
                telephone_event: None,
                ptime: 20,
                direction: Direction::SendRecv,
                remote: addr("127.0.0.1:6000"),
                remote_rtcp: addr("127.0.0.1:6001"),
            }
        );
    }

    /// The shape of baresip's offer: opus and G.722 first, the session's tool, SSRC and
    /// RTCP attributes, telephone-event at 101.
    const BARESIP: &str = "v=0
o=- 1786253371 2204771329 IN IP4 10.0.0.23
s=-
c=IN IP4 10.0.0.23
t=0 0
a=tool:baresip 3.16.0
m=audio 10130 RTP/AVP 111 9 0 8 101
b=AS:125
a=rtpmap:111 opus/48000/2
a=fmtp:111 stereo=1;sprop-stereo=1
a=rtpmap:9 G722/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=sendrecv
a=label:1
a=rtcp-rsize
a=ssrc:2914183307 cname:9f1d4b27-3a0f-4c55-b6e2-07c0f0a5d1b8
a=rtcp-mux
a=ptime:20
";

    #[test]
    fn baresip() {
        let (text, stream) = answer_text(BARESIP);
        assert!(text.contains(
            "m=audio 40000 RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=ptime:20
a=sendrecv
"
        ));
        // We do not multiplex RTCP: nothing of rtcp-mux in the answer.
        assert!(!text.contains("rtcp-mux"));
        assert_eq!((stream.law, stream.payload_type), (Law::MuLaw, 0));
        assert_eq!(stream.telephone_event, Some(101));
        assert_eq!(stream.remote, addr("10.0.0.23:10130"));
    }

    /// The shape of linphone's offer: a session-level RTCP-XR attribute, several
    /// telephone-event rates, a video stream.
    const LINPHONE: &str = "v=0
o=alice 2243 3124 IN IP4 192.168.1.34
s=Talk
c=IN IP4 192.168.1.34
t=0 0
a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics
a=record:off
m=audio 7078 RTP/AVP 96 97 98 0 8 18 101 99 100
a=rtpmap:96 opus/48000/2
a=fmtp:96 useinbandfec=1
a=rtpmap:97 speex/16000
a=fmtp:97 vbr=on
a=rtpmap:98 speex/8000
a=fmtp:98 vbr=on
a=fmtp:18 annexb=yes
a=rtpmap:101 telephone-event/48000
a=rtpmap:99 telephone-event/16000
a=rtpmap:100 telephone-event/8000
a=rtcp-fb:* trr-int 1000
a=rtcp-fb:* ccm tmmbr
m=video 9078 RTP/AVP 96
a=rtpmap:96 VP8/90000
a=rtcp-fb:* trr-int 1000
a=rtcp-fb:96 nack pli
";

    #[test]
    fn linphone() {
        let (text, stream) = answer_text(LINPHONE);
        // PCMU by its static payload type, telephone-event at 8 kHz; video refused.
        assert!(text.contains(
            "m=audio 40000 RTP/AVP 0 100
a=rtpmap:0 PCMU/8000
a=rtpmap:100 telephone-event/8000
a=fmtp:100 0-15
"
        ));
        assert!(text.ends_with("a=sendrecv\nm=video 0 RTP/AVP 96\n"));
        assert_eq!(stream.telephone_event, Some(100));
        assert_eq!(stream.remote, addr("192.168.1.34:7078"));
    }

    /// A carrier's offer: many codecs, PCMA before PCMU, telephone-event at 16 kHz before
    /// 8 kHz, a media-level address, 30 ms packets.
    const CARRIER: &str = "v=0
o=SBC 1073741824 1073741824 IN IP4 203.0.113.10
s=SIP Media Capabilities
t=0 0
m=audio 26420 RTP/AVP 18 9 111 8 0 102 101
c=IN IP4 203.0.113.20
a=rtpmap:18 G729/8000
a=fmtp:18 annexb=no
a=rtpmap:9 G722/8000
a=rtpmap:111 opus/48000/2
a=fmtp:111 useinbandfec=1
a=rtpmap:8 PCMA/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:102 telephone-event/16000
a=fmtp:102 0-15
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:30
a=maxptime:40
a=sendrecv
";

    #[test]
    fn carrier() {
        let (text, stream) = answer_text(CARRIER);
        assert!(text.contains(
            "m=audio 40000 RTP/AVP 8 101
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=ptime:30
a=sendrecv
"
        ));
        assert_eq!(
            (stream.law, stream.payload_type, stream.ptime),
            (Law::ALaw, 8, 30)
        );
        assert_eq!(stream.telephone_event, Some(101));
        assert_eq!(stream.remote, addr("203.0.113.20:26420"));
        // With µ-law only, the carrier's PCMU.
        let mu = Local {
            laws: vec![Law::MuLaw],
            ..local()
        };
        let (_, stream) = answer(&parse(CARRIER), &mu).unwrap();
        assert_eq!((stream.law, stream.payload_type), (Law::MuLaw, 0));
    }

    #[test]
    fn no_common_codec_is_a_488_with_305() {
        let offer = "v=0
o=- 1 1 IN IP4 198.51.100.1
s=-
c=IN IP4 198.51.100.1
t=0 0
m=audio 5000 RTP/AVP 18 9 101
a=rtpmap:18 G729/8000
a=rtpmap:9 G722/8000
a=rtpmap:101 telephone-event/8000
";
        let error = answer(&parse(offer), &local()).unwrap_err();
        assert_eq!(error, NegotiationError::NoCommonCodec);
        assert_eq!(error.warning(), (305, "Incompatible media format"));
        // PCMU at another clock rate, or in stereo, is not G.711.
        for map in ["0 PCMU/16000", "0 PCMU/8000/2"] {
            let offer = SIPP.replace("0 PCMU/8000", map);
            assert_eq!(
                answer(&parse(&offer), &local()).unwrap_err(),
                NegotiationError::NoCommonCodec,
                "{map}"
            );
        }
        // The law offered is one we do not take.
        let a_only = Local {
            laws: vec![Law::ALaw],
            ..local()
        };
        assert_eq!(
            answer(&parse(SIPP), &a_only).unwrap_err(),
            NegotiationError::NoCommonCodec
        );
    }

    #[test]
    fn no_audio_and_other_transports() {
        let video = SIPP.replace("m=audio 6000 RTP/AVP 0", "m=video 6000 RTP/AVP 96");
        let error = answer(&parse(&video), &local()).unwrap_err();
        assert_eq!((error, error.warning().0), (NegotiationError::NoAudio, 304));
        let disabled = SIPP.replace("6000", "0");
        assert_eq!(
            answer(&parse(&disabled), &local()).unwrap_err(),
            NegotiationError::NoAudio
        );
        let srtp = SIPP.replace("RTP/AVP", "RTP/SAVP");
        let error = answer(&parse(&srtp), &local()).unwrap_err();
        assert_eq!(
            (error, error.warning().0),
            (NegotiationError::Transport, 300)
        );
        // An SRTP stream and a plain one: the plain one.
        let both = format!("{srtp}m=audio 6002 RTP/AVP 8\n");
        let (ours, stream) = answer(&parse(&both), &local()).unwrap();
        assert_eq!((stream.index, stream.law), (1, Law::ALaw));
        assert_eq!(ours.media[0].port, 0);
        assert_eq!(ours.media[0].proto, "RTP/SAVP");
        assert_eq!(ours.media[1].port, 40000);
    }

    #[test]
    fn dynamic_payload_type_for_pcmu() {
        let offer = SIPP.replace(
            "RTP/AVP 0\na=rtpmap:0 PCMU/8000",
            "RTP/AVP 96\na=rtpmap:96 pcmu/8000/1",
        );
        let (text, stream) = answer_text(&offer);
        assert_eq!((stream.law, stream.payload_type), (Law::MuLaw, 96));
        assert!(text.contains("m=audio 40000 RTP/AVP 96\na=rtpmap:96 PCMU/8000\n"));
    }

    #[test]
    fn only_the_first_usable_audio_stream_is_taken() {
        let offer = format!("{SIPP}m=audio 6002 RTP/AVP 8\nm=application 9 UDP/BFCP *\n");
        let (ours, stream) = answer(&parse(&offer), &local()).unwrap();
        assert_eq!(stream.index, 0);
        let ports: Vec<u16> = ours.media.iter().map(|m| m.port).collect();
        assert_eq!(ports, [40000, 0, 0]);
        assert_eq!(ours.media[2].formats, ["*"]);
        // A disabled first stream: the second one.
        let offer = format!("{}m=audio 6002 RTP/AVP 8\n", SIPP.replace("6000", "0"));
        let (_, stream) = answer(&parse(&offer), &local()).unwrap();
        assert_eq!((stream.index, stream.remote), (1, addr("127.0.0.1:6002")));
    }

    fn with(offer: &str, extra: &str) -> Stream {
        let offer = format!("{offer}{extra}");
        answer(&parse(&offer), &local()).unwrap().1
    }

    #[test]
    fn directions_mirror_the_offer() {
        use Direction::*;
        assert_eq!(with(SIPP, "a=sendonly\n").direction, RecvOnly, "hold");
        assert_eq!(with(SIPP, "a=recvonly\n").direction, SendOnly);
        assert_eq!(with(SIPP, "a=inactive\n").direction, Inactive);
        assert_eq!(with(SIPP, "a=sendrecv\n").direction, SendRecv);
        // At the session level.
        let session_hold = SIPP.replace("t=0 0\n", "t=0 0\na=sendonly\n");
        assert_eq!(with(&session_hold, "").direction, RecvOnly);
        // The media level wins.
        assert_eq!(with(&session_hold, "a=sendrecv\n").direction, SendRecv);
        let (text, _) = answer_text(&format!("{SIPP}a=sendonly\n"));
        assert!(text.ends_with("a=recvonly\n"));
    }

    #[test]
    fn hold_by_the_unspecified_address() {
        use Direction::*;
        let held = SIPP.replace("c=IN IP4 127.0.0.1", "c=IN IP4 0.0.0.0");
        let stream = with(&held, "");
        assert_eq!(
            (stream.direction, stream.remote, stream.remote_rtcp),
            (RecvOnly, None, None)
        );
        assert_eq!(with(&held, "a=recvonly\n").direction, Inactive);
        let held6 = SIPP.replace("c=IN IP4 127.0.0.1", "c=IN IP6 ::");
        assert_eq!(with(&held6, "").remote, None);
    }

    #[test]
    fn packet_times() {
        assert_eq!(with(SIPP, "a=ptime:10\n").ptime, 10);
        assert_eq!(with(SIPP, "a=ptime:60\n").ptime, 60);
        assert_eq!(with(SIPP, "a=ptime:25\n").ptime, 20, "not a 10 ms step");
        assert_eq!(with(SIPP, "a=ptime:90\n").ptime, 20, "longer than we pace");
        assert_eq!(
            with(SIPP, "a=ptime:40\na=maxptime:30\n").ptime,
            20,
            "over the maximum"
        );
        assert_eq!(with(SIPP, "a=ptime:x\n").ptime, 20);
    }

    #[test]
    fn rtcp_addresses() {
        assert_eq!(
            with(SIPP, "a=rtcp:7001\n").remote_rtcp,
            addr("127.0.0.1:7001")
        );
        assert_eq!(
            with(SIPP, "a=rtcp:7001 IN IP4 198.51.100.9\n").remote_rtcp,
            addr("198.51.100.9:7001")
        );
        assert_eq!(with(SIPP, "a=rtcp:x\n").remote_rtcp, None);
        assert_eq!(with(&SIPP.replace("6000", "65535"), "").remote_rtcp, None);
    }

    #[test]
    fn ipv6() {
        let offer = SIPP.replace("IN IP4 127.0.0.1", "IN IP6 2001:db8::5");
        let six = Local {
            address: "2001:db8::1".parse().unwrap(),
            ..local()
        };
        let (ours, stream) = answer(&parse(&offer), &six).unwrap();
        assert_eq!(stream.remote, addr("[2001:db8::5]:6000"));
        let text = String::from_utf8(ours.to_bytes()).unwrap();
        assert!(text.contains("o=switchboard 7 1 IN IP6 2001:db8::1\r\n"));
        assert!(text.contains("c=IN IP6 2001:db8::1\r\n"));
    }

    #[test]
    fn our_offer_and_its_answer() {
        let ours = offer(&local());
        let text = String::from_utf8(ours.to_bytes()).unwrap();
        assert_eq!(
            text.replace("\r\n", "\n"),
            "v=0
o=switchboard 7 1 IN IP4 192.0.2.1
s=switchboard
c=IN IP4 192.0.2.1
t=0 0
m=audio 40000 RTP/AVP 0 8 101
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=ptime:20
a=sendrecv
"
        );
        // A phone answers with PCMA and telephone-event, on hold.
        let reply = parse(
            "v=0
o=- 5 5 IN IP4 10.0.0.23
s=-
c=IN IP4 10.0.0.23
t=0 0
m=audio 10130 RTP/AVP 8 101
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=sendonly
",
        );
        let stream = answered(&ours, &reply, &local()).unwrap();
        assert_eq!((stream.law, stream.payload_type), (Law::ALaw, 8));
        assert_eq!(stream.telephone_event, Some(101));
        assert_eq!(stream.direction, Direction::RecvOnly);
        assert_eq!(stream.remote, addr("10.0.0.23:10130"));
        // Our own offer answered by ourselves.
        let (self_answer, _) = answer(&ours, &local()).unwrap();
        let stream = answered(&ours, &self_answer, &local()).unwrap();
        assert_eq!(
            (stream.law, stream.direction),
            (Law::MuLaw, Direction::SendRecv)
        );
        // Refused, or missing.
        let refused = parse(&BARESIP.replace("m=audio 10130", "m=audio 0"));
        assert_eq!(
            answered(&ours, &refused, &local()),
            Err(NegotiationError::Refused)
        );
        let mut empty = reply.clone();
        empty.media.clear();
        assert_eq!(
            answered(&ours, &empty, &local()),
            Err(NegotiationError::Refused)
        );
    }

    #[test]
    fn every_answer_reads_back_and_keeps_the_number_of_streams() {
        for offer in [SIPP, BARESIP, LINPHONE, CARRIER] {
            let offer = parse(offer);
            let (answer, _) = super::answer(&offer, &local()).unwrap();
            assert_eq!(answer.media.len(), offer.media.len());
            let again = Session::parse(&answer.to_bytes(), &Limits::default()).unwrap();
            assert_eq!(again, answer);
        }
    }
}
