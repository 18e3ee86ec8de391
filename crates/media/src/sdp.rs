//! SDP (RFC 8866, formerly RFC 4566), as much as an audio call needs: the origin, the
//! connection addresses, the media descriptions with their formats and attributes. Read
//! within limits (bytes, lines, line length, media descriptions, formats), tolerant of LF
//! line ends and of extra spaces between fields, written back with CRLF and single spaces. Lines this model does not keep (`t=`, `b=`, `i=`, `k=`…) are read past and not
//! written. [`crate::offer_answer`] decides what to answer.

use std::fmt::Write as _;
use std::net::IpAddr;

/// How much of an SDP body is read before it is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The whole body, in octets.
    pub max_bytes: usize,
    /// Lines.
    pub max_lines: usize,
    /// One line, in octets.
    pub max_line: usize,
    /// Media descriptions (`m=` lines).
    pub max_media: usize,
    /// Formats on one `m=` line.
    pub max_formats: usize,
}

impl Default for Limits {
    /// Roomy for any telephone's or carrier's offer (a few hundred octets to 2 KB; WebRTC's,
    /// with candidates and fingerprints, stay under 8 KB).
    fn default() -> Limits {
        Limits {
            max_bytes: 16 * 1024,
            max_lines: 256,
            max_line: 1024,
            max_media: 16,
            max_formats: 64,
        }
    }
}

/// Why an SDP body was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    /// Longer than [`Limits::max_bytes`].
    #[error("SDP longer than {0} octets")]
    TooLong(usize),
    /// More lines than [`Limits::max_lines`].
    #[error("SDP with more than {0} lines")]
    TooManyLines(usize),
    /// More media descriptions than [`Limits::max_media`].
    #[error("SDP with more than {0} media descriptions")]
    TooManyMedia(usize),
    /// A line that breaks the grammar (or a limit of its own), counted from 1.
    #[error("SDP line {line}: {what}")]
    Malformed {
        /// The line's number (0 for what is missing from the whole body).
        line: usize,
        /// What is wrong with it.
        what: &'static str,
    },
}

/// The direction of a stream (RFC 3264 §5.1), as the side that wrote it sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Both ways (the default).
    SendRecv,
    /// The writer sends only.
    SendOnly,
    /// The writer receives only.
    RecvOnly,
    /// Neither way.
    Inactive,
}

impl Direction {
    /// The direction from whether the writer sends and whether it receives.
    pub fn from_flags(sends: bool, receives: bool) -> Direction {
        match (sends, receives) {
            (true, true) => Direction::SendRecv,
            (true, false) => Direction::SendOnly,
            (false, true) => Direction::RecvOnly,
            (false, false) => Direction::Inactive,
        }
    }

    /// Whether the writer sends.
    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    /// Whether the writer receives.
    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }

    /// The same stream seen from the other side: sendonly ↔ recvonly.
    pub fn reversed(self) -> Direction {
        Direction::from_flags(self.receives(), self.sends())
    }

    /// The attribute's name.
    pub fn name(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    fn from_name(name: &str) -> Option<Direction> {
        [
            Direction::SendRecv,
            Direction::SendOnly,
            Direction::RecvOnly,
            Direction::Inactive,
        ]
        .into_iter()
        .find(|d| d.name() == name)
    }
}

/// An `a=` line: a name, and a value after a colon when there is one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attribute {
    /// The name (`rtpmap`, `sendonly`…).
    pub name: String,
    /// The value, without the colon.
    pub value: Option<String>,
}

impl Attribute {
    /// An attribute with a value.
    pub fn new(name: &str, value: impl Into<String>) -> Attribute {
        Attribute {
            name: name.into(),
            value: Some(value.into()),
        }
    }

    /// An attribute without a value (a flag such as `sendrecv`).
    pub fn flag(name: &str) -> Attribute {
        Attribute {
            name: name.into(),
            value: None,
        }
    }
}

/// The `o=` line: who made the description, and its version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// The user name (`-` when none).
    pub username: String,
    /// The session id (digits).
    pub session_id: String,
    /// The version, raised with each change of the description (digits).
    pub version: String,
    /// `IP4` or `IP6`.
    pub address_type: String,
    /// The address of the machine that made it (an IP address or a host name).
    pub address: String,
}

/// An `a=rtpmap` value: a payload type's encoding, clock rate and channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtpMap<'a> {
    /// The encoding name (`PCMU`, `telephone-event`…), as written.
    pub encoding: &'a str,
    /// Timestamp units per second.
    pub clock_rate: u32,
    /// Audio channels, when written.
    pub channels: Option<u32>,
}

/// One media description: the `m=` line and the `c=` and `a=` lines under it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Media {
    /// `audio`, `video`, `application`…
    pub kind: String,
    /// The transport port (0: the stream is refused or disabled).
    pub port: u16,
    /// The transport protocol: `RTP/AVP`, `RTP/SAVP`, `UDP/TLS/RTP/SAVPF`…
    pub proto: String,
    /// The formats, in the writer's order of preference: RTP payload types for RTP.
    pub formats: Vec<String>,
    /// The media-level connection address, when there is one.
    pub connection: Option<IpAddr>,
    /// The media-level attributes, in order.
    pub attributes: Vec<Attribute>,
}

impl Media {
    /// The value of the first attribute of that name.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        find(&self.attributes, name)?.value.as_deref()
    }

    /// The `a=rtpmap` of a format, if it has one that can be read.
    pub fn rtpmap(&self, format: &str) -> Option<RtpMap<'_>> {
        let value = self.per_format("rtpmap", format)?;
        let mut parts = value.split('/');
        let encoding = parts.next().filter(|e| !e.is_empty())?;
        let clock_rate = parts.next()?.parse().ok()?;
        let channels = match parts.next() {
            Some(c) => Some(c.parse().ok()?),
            None => None,
        };
        Some(RtpMap {
            encoding,
            clock_rate,
            channels,
        })
    }

    /// The `a=fmtp` parameters of a format.
    pub fn fmtp(&self, format: &str) -> Option<&str> {
        self.per_format("fmtp", format)
    }

    /// The value of attribute `name` whose first word is `format`, without that word.
    fn per_format(&self, name: &str, format: &str) -> Option<&str> {
        self.attributes
            .iter()
            .filter(|a| a.name == name)
            .filter_map(|a| a.value.as_deref()?.split_once(' '))
            .find(|(f, _)| *f == format)
            .map(|(_, rest)| rest.trim())
    }

    /// `a=ptime`, in milliseconds.
    pub fn ptime(&self) -> Option<u32> {
        self.attribute("ptime")?.trim().parse().ok()
    }

    /// `a=maxptime`, in milliseconds.
    pub fn maxptime(&self) -> Option<u32> {
        self.attribute("maxptime")?.trim().parse().ok()
    }
}

/// A session description.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// The `o=` line.
    pub origin: Origin,
    /// The `s=` line.
    pub name: String,
    /// The session-level connection address.
    pub connection: Option<IpAddr>,
    /// The session-level attributes.
    pub attributes: Vec<Attribute>,
    /// The media descriptions, in order.
    pub media: Vec<Media>,
}

impl Session {
    /// The address a media description's stream is at: its own `c=`, else the session's.
    pub fn connection_of(&self, media: &Media) -> Option<IpAddr> {
        media.connection.or(self.connection)
    }

    /// A media description's direction: its own attribute, else the session's, else
    /// sendrecv.
    pub fn direction_of(&self, media: &Media) -> Direction {
        let direction = |attributes: &[Attribute]| {
            attributes
                .iter()
                .find_map(|a| Direction::from_name(&a.name).filter(|_| a.value.is_none()))
        };
        direction(&media.attributes)
            .or_else(|| direction(&self.attributes))
            .unwrap_or(Direction::SendRecv)
    }

    /// Reads an SDP body within `limits`.
    pub fn parse(body: &[u8], limits: &Limits) -> Result<Session, SdpError> {
        if body.len() > limits.max_bytes {
            return Err(SdpError::TooLong(limits.max_bytes));
        }
        let text = std::str::from_utf8(body).map_err(|_| malformed(0, "not UTF-8"))?;
        let mut origin = None;
        let mut session = Session {
            origin: Origin {
                username: String::new(),
                session_id: String::new(),
                version: String::new(),
                address_type: String::new(),
                address: String::new(),
            },
            name: String::new(),
            connection: None,
            attributes: Vec::new(),
            media: Vec::new(),
        };
        let lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
        let mut count = 0;
        for (i, line) in lines.enumerate() {
            let number = i + 1;
            if line.is_empty() {
                continue;
            }
            count += 1;
            if count > limits.max_lines {
                return Err(SdpError::TooManyLines(limits.max_lines));
            }
            if line.len() > limits.max_line {
                return Err(malformed(number, "line too long"));
            }
            let (kind, value) = match line.as_bytes() {
                [k @ b'a'..=b'z', b'=', ..] => (*k, &line[2..]),
                _ => return Err(malformed(number, "not a type=value line")),
            };
            if count == 1 {
                if kind != b'v' || value != "0" {
                    return Err(malformed(number, "does not start with v=0"));
                }
                continue;
            }
            match kind {
                b'o' => origin = Some(parse_origin(value).ok_or(malformed(number, "bad o= line"))?),
                b's' if session.media.is_empty() => session.name = value.to_string(),
                b'c' => {
                    let address =
                        parse_connection(value).ok_or(malformed(number, "bad c= line"))?;
                    match session.media.last_mut() {
                        Some(media) => media.connection = Some(address),
                        None => session.connection = Some(address),
                    }
                }
                b'm' => {
                    if session.media.len() == limits.max_media {
                        return Err(SdpError::TooManyMedia(limits.max_media));
                    }
                    let media =
                        parse_media(value, limits).map_err(|what| malformed(number, what))?;
                    session.media.push(media);
                }
                b'a' => {
                    let attribute =
                        parse_attribute(value).ok_or(malformed(number, "bad a= line"))?;
                    match session.media.last_mut() {
                        Some(media) => media.attributes.push(attribute),
                        None => session.attributes.push(attribute),
                    }
                }
                _ => {} // t=, b=, i=, u=, e=, p=, z=, k=, r= and unknown types
            }
        }
        if count == 0 {
            return Err(malformed(0, "empty"));
        }
        session.origin = origin.ok_or(malformed(0, "no o= line"))?;
        let unreachable = session
            .media
            .iter()
            .any(|m| m.port != 0 && session.connection_of(m).is_none());
        if unreachable {
            return Err(malformed(0, "a media description without a c= line"));
        }
        Ok(session)
    }

    /// Writes the description, each line ending in CRLF.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = String::with_capacity(256);
        let o = &self.origin;
        let _ = write!(
            out,
            "v=0\r\no={} {} {} IN {} {}\r\ns={}\r\n",
            o.username, o.session_id, o.version, o.address_type, o.address, self.name
        );
        if let Some(address) = self.connection {
            write_connection(&mut out, address);
        }
        out.push_str("t=0 0\r\n");
        write_attributes(&mut out, &self.attributes);
        for media in &self.media {
            let _ = write!(out, "m={} {} {}", media.kind, media.port, media.proto);
            for format in &media.formats {
                let _ = write!(out, " {format}");
            }
            out.push_str("\r\n");
            if let Some(address) = media.connection {
                write_connection(&mut out, address);
            }
            write_attributes(&mut out, &media.attributes);
        }
        out.into_bytes()
    }
}

fn find<'a>(attributes: &'a [Attribute], name: &str) -> Option<&'a Attribute> {
    attributes.iter().find(|a| a.name == name)
}

fn malformed(line: usize, what: &'static str) -> SdpError {
    SdpError::Malformed { line, what }
}

/// A token: what stands between spaces, printable and not empty.
fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic())
}

fn parse_origin(value: &str) -> Option<Origin> {
    let fields: Vec<&str> = value.split_ascii_whitespace().collect();
    let &[username, session_id, version, "IN", address_type, address] = fields.as_slice() else {
        return None;
    };
    if !fields.iter().all(|f| is_token(f)) || !matches!(address_type, "IP4" | "IP6") {
        return None;
    }
    Some(Origin {
        username: username.into(),
        session_id: session_id.into(),
        version: version.into(),
        address_type: address_type.into(),
        address: address.into(),
    })
}

/// `IN IP4 192.0.2.1` (a multicast TTL or count after a slash is dropped): the address, which
/// must be an IP address of the type said.
fn parse_connection(value: &str) -> Option<IpAddr> {
    let mut fields = value.split_ascii_whitespace();
    let (Some("IN"), Some(address_type), Some(address), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return None;
    };
    let address: IpAddr = address.split('/').next()?.parse().ok()?;
    match (address_type, address) {
        ("IP4", IpAddr::V4(_)) | ("IP6", IpAddr::V6(_)) => Some(address),
        _ => None,
    }
}

/// `audio 49170 RTP/AVP 0 8 101` (a port count after a slash is dropped).
fn parse_media(value: &str, limits: &Limits) -> Result<Media, &'static str> {
    let mut fields = value.split_ascii_whitespace();
    let (Some(kind), Some(port), Some(proto)) = (fields.next(), fields.next(), fields.next())
    else {
        return Err("bad m= line");
    };
    let port = port
        .split('/')
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or("bad port on the m= line")?;
    let mut formats = Vec::new();
    for format in fields {
        if formats.len() == limits.max_formats {
            return Err("too many formats on the m= line");
        }
        formats.push(format.to_string());
    }
    let tokens = [kind, proto]
        .into_iter()
        .chain(formats.iter().map(String::as_str));
    if formats.is_empty() || !tokens.into_iter().all(is_token) {
        return Err("bad m= line");
    }
    Ok(Media {
        kind: kind.into(),
        port,
        proto: proto.into(),
        formats,
        connection: None,
        attributes: Vec::new(),
    })
}

fn parse_attribute(value: &str) -> Option<Attribute> {
    let (name, value) = match value.split_once(':') {
        Some((name, value)) => (name, Some(value.to_string())),
        None => (value, None),
    };
    is_token(name).then(|| Attribute {
        name: name.into(),
        value,
    })
}

fn write_connection(out: &mut String, address: IpAddr) {
    let kind = if address.is_ipv4() { "IP4" } else { "IP6" };
    let _ = write!(out, "c=IN {kind} {address}\r\n");
}

fn write_attributes(out: &mut String, attributes: &[Attribute]) {
    for a in attributes {
        match &a.value {
            Some(value) => {
                let _ = write!(out, "a={}:{}\r\n", a.name, value);
            }
            None => {
                let _ = write!(out, "a={}\r\n", a.name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(text: &str) -> Result<Session, SdpError> {
        Session::parse(text.as_bytes(), &Limits::default())
    }

    const SIPP: &str = "v=0\r\n\
        o=user1 53655765 2353687637 IN IP4 127.0.0.1\r\n\
        s=-\r\n\
        c=IN IP4 127.0.0.1\r\n\
        t=0 0\r\n\
        m=audio 6000 RTP/AVP 0\r\n\
        a=rtpmap:0 PCMU/8000\r\n";

    #[test]
    fn reads_sipp_offer() {
        let s = parse(SIPP).unwrap();
        assert_eq!(s.origin.username, "user1");
        assert_eq!(s.origin.session_id, "53655765");
        assert_eq!(s.origin.version, "2353687637");
        assert_eq!(s.origin.address, "127.0.0.1");
        assert_eq!(s.name, "-");
        assert_eq!(s.connection, Some("127.0.0.1".parse().unwrap()));
        let m = &s.media[0];
        assert_eq!(
            (m.kind.as_str(), m.port, m.proto.as_str()),
            ("audio", 6000, "RTP/AVP")
        );
        assert_eq!(m.formats, ["0"]);
        assert_eq!(
            m.rtpmap("0"),
            Some(RtpMap {
                encoding: "PCMU",
                clock_rate: 8000,
                channels: None
            })
        );
        assert_eq!(s.direction_of(m), Direction::SendRecv);
        assert_eq!(s.connection_of(m), s.connection);
    }

    #[test]
    fn reads_attributes_of_both_levels() {
        let s = parse(
            "v=0\no=- 1 1 IN IP6 ::1\ns=x\nc=IN IP6 ::1\nt=0 0\na=sendonly\na=tool:x y:z\n\
             m=audio 7078/2 RTP/AVP 96 101\nc=IN IP4 224.2.1.1/127/3\nb=AS:80\n\
             a=rtpmap:96 opus/48000/2\na=fmtp:96 useinbandfec=1; stereo=0\n\
             a=rtpmap:101 telephone-event/8000\na=ptime:30\na=maxptime:60\n\
             m=video 0 RTP/AVP 31\n",
        )
        .unwrap();
        assert_eq!(s.attributes[1], Attribute::new("tool", "x y:z"));
        let audio = &s.media[0];
        assert_eq!(audio.port, 7078);
        assert_eq!(audio.connection, Some("224.2.1.1".parse().unwrap()));
        assert_eq!(audio.rtpmap("96").unwrap().channels, Some(2));
        assert_eq!(audio.fmtp("96"), Some("useinbandfec=1; stereo=0"));
        assert_eq!(audio.fmtp("101"), None);
        assert_eq!(audio.rtpmap("9"), None);
        assert_eq!((audio.ptime(), audio.maxptime()), (Some(30), Some(60)));
        assert_eq!(s.direction_of(audio), Direction::SendOnly, "the session's");
        // A refused stream needs no address.
        assert_eq!(s.media[1].port, 0);
        assert_eq!(s.connection_of(&s.media[1]), Some("::1".parse().unwrap()));
    }

    #[test]
    fn refuses_what_breaks_the_grammar() {
        let cases: &[(&str, usize)] = &[
            ("", 0),
            ("\r\n\r\n", 0),
            ("o=- 1 1 IN IP4 1.2.3.4\r\n", 1),
            ("v=1\r\n", 1),
            ("v=0\r\ns=x\r\n", 0),                     // no o=
            ("v=0\r\nhello\r\n", 2),                   // not type=value
            ("v=0\r\nA=b\r\n", 2),                     // upper-case type
            ("v=0\r\no=- 1 1 IN IP4\r\n", 2),          // five fields
            ("v=0\r\no=- 1 1 ATM IP4 1.2.3.4\r\n", 2), // not IN
            ("v=0\r\no=- 1 1 IN IPX 1.2.3.4\r\n", 2),  // address type
            ("v=0\r\no=- 1 1 IN IP4 h\r\nc=IN IP4 host.example\r\n", 3),
            ("v=0\r\no=- 1 1 IN IP4 h\r\nc=IN IP6 1.2.3.4\r\n", 3),
            ("v=0\r\no=- 1 1 IN IP4 h\r\nc=IN IP4 1.2.3.4 5\r\n", 3),
            (
                "v=0\r\no=- 1 1 IN IP4 h\r\nc=IN IP4 1.2.3.4\r\nm=audio 5 RTP/AVP\r\n",
                4,
            ),
            (
                "v=0\r\no=- 1 1 IN IP4 h\r\nc=IN IP4 1.2.3.4\r\nm=audio x RTP/AVP 0\r\n",
                4,
            ),
            (
                "v=0\r\no=- 1 1 IN IP4 h\r\nc=IN IP4 1.2.3.4\r\nm=audio 70000 RTP/AVP 0\r\n",
                4,
            ),
            ("v=0\r\no=- 1 1 IN IP4 h\r\nc=IN IP4 1.2.3.4\r\na=\r\n", 4),
            ("v=0\r\no=- 1 1 IN IP4 h\r\nc=IN IP4 1.2.3.4\r\na=:x\r\n", 4),
            ("v=0\r\no=- 1 1 IN IP4 h\r\nm=audio 5 RTP/AVP 0\r\n", 0), // no address
        ];
        for &(text, line) in cases {
            match parse(text) {
                Err(SdpError::Malformed { line: l, .. }) => assert_eq!(l, line, "{text:?}"),
                other => panic!("{text:?}: {other:?}"),
            }
        }
        assert!(matches!(
            Session::parse(&[b'v', b'=', b'0', b'\n', 0xFF], &Limits::default()),
            Err(SdpError::Malformed { line: 0, .. })
        ));
    }

    #[test]
    fn limits() {
        let limits = Limits {
            max_bytes: 200,
            max_lines: 8,
            max_line: 40,
            max_media: 2,
            max_formats: 3,
        };
        let head = "v=0\r\no=- 1 1 IN IP4 h\r\nc=IN IP4 1.2.3.4\r\n";
        let check = |text: String| Session::parse(text.as_bytes(), &limits);
        assert!(check(format!("{head}m=audio 5 RTP/AVP 0 8 101\r\n")).is_ok());
        assert_eq!(
            check(format!("{head}m=audio 5 RTP/AVP 0 8 9 101\r\n")),
            Err(malformed(4, "too many formats on the m= line"))
        );
        assert_eq!(
            check(format!("{head}a={}\r\n", "x".repeat(40))),
            Err(malformed(4, "line too long"))
        );
        assert_eq!(
            check(format!("{head}{}", "a=x\r\n".repeat(6))),
            Err(SdpError::TooManyLines(8))
        );
        assert_eq!(
            check(format!("{head}{}", "m=audio 0 RTP/AVP 0\r\n".repeat(3))),
            Err(SdpError::TooManyMedia(2))
        );
        assert_eq!(
            check(format!("{head}{}", " ".repeat(200))),
            Err(SdpError::TooLong(200))
        );
    }

    #[test]
    fn writes_crlf_lines_that_read_back() {
        let s = parse(SIPP).unwrap();
        let text = String::from_utf8(s.to_bytes()).unwrap();
        assert_eq!(text, SIPP);
        let mut s = s;
        s.media[0].attributes.push(Attribute::flag("recvonly"));
        s.media[0].connection = Some("2001:db8::1".parse().unwrap());
        let text = String::from_utf8(s.to_bytes()).unwrap();
        assert!(text.ends_with("c=IN IP6 2001:db8::1\r\na=rtpmap:0 PCMU/8000\r\na=recvonly\r\n"));
        assert_eq!(parse(&text).unwrap(), s);
    }

    #[test]
    fn tolerates_lf_and_extra_spaces() {
        let s = parse("v=0\no=-  1 1 IN IP4 h \nc=IN  IP4 1.2.3.4\nm=audio 5  RTP/AVP 0 8 \n\n")
            .unwrap();
        assert_eq!(s.origin.address, "h");
        assert_eq!(s.media[0].formats, ["0", "8"]);
        assert!(String::from_utf8(s.to_bytes())
            .unwrap()
            .contains("m=audio 5 RTP/AVP 0 8\r\n"));
    }

    #[test]
    fn direction_attributes_with_a_value_are_not_directions() {
        let s = parse(
            "v=0\r\no=- 1 1 IN IP4 h\r\nc=IN IP4 1.2.3.4\r\nm=audio 5 RTP/AVP 0\r\na=recvonly:x\r\n",
        )
        .unwrap();
        assert_eq!(s.direction_of(&s.media[0]), Direction::SendRecv);
    }

    #[test]
    fn directions() {
        use Direction::*;
        for d in [SendRecv, SendOnly, RecvOnly, Inactive] {
            assert_eq!(Direction::from_flags(d.sends(), d.receives()), d);
            assert_eq!(d.reversed().reversed(), d);
            assert_eq!(Direction::from_name(d.name()), Some(d));
        }
        assert_eq!(SendOnly.reversed(), RecvOnly);
        assert_eq!(Inactive.reversed(), Inactive);
        assert_eq!(SendRecv.reversed(), SendRecv);
    }

    fn token() -> impl Strategy<Value = String> {
        "[!-~]{1,12}"
    }

    fn attribute() -> impl Strategy<Value = Attribute> {
        ("[a-z][a-z0-9-]{0,10}", proptest::option::of("[ -~]{0,30}"))
            .prop_map(|(name, value)| Attribute { name, value })
    }

    fn address() -> impl Strategy<Value = IpAddr> {
        any::<IpAddr>()
    }

    fn media() -> impl Strategy<Value = Media> {
        (
            "[a-z]{1,8}",
            any::<u16>(),
            token(),
            proptest::collection::vec(token(), 1..6),
            address(),
            proptest::collection::vec(attribute(), 0..6),
        )
            .prop_map(
                |(kind, port, proto, formats, connection, attributes)| Media {
                    kind,
                    port,
                    proto,
                    formats,
                    connection: Some(connection),
                    attributes,
                },
            )
    }

    proptest! {
        #[test]
        fn what_is_written_reads_back_the_same(
            origin in (token(), "[0-9]{1,20}", "[0-9]{1,20}", prop_oneof!["IP4", "IP6"], token()),
            name in "[ -~]{0,20}",
            connection in proptest::option::of(address()),
            attributes in proptest::collection::vec(attribute(), 0..4),
            media in proptest::collection::vec(media(), 0..4),
        ) {
            let (username, session_id, version, address_type, address) = origin;
            let session = Session {
                origin: Origin { username, session_id, version, address_type, address },
                name,
                connection,
                attributes,
                media,
            };
            let bytes = session.to_bytes();
            prop_assert_eq!(Session::parse(&bytes, &Limits::default()), Ok(session));
        }

        #[test]
        fn reading_anything_never_panics(text in "(v=0\r\n)?([a-z]=[ -~]{0,30}\r?\n){0,12}") {
            if let Ok(session) = parse(&text) {
                // Whatever was read is written so that it reads back the same.
                prop_assert_eq!(Session::parse(&session.to_bytes(), &Limits::default()), Ok(session));
            }
        }

        #[test]
        fn reading_any_bytes_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Session::parse(&data, &Limits::default());
        }
    }
}
