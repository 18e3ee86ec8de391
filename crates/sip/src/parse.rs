//! Reading SIP messages off the network: framing, limits, strict checks, parsing.
//!
//! The message model and its parser come from `rsipstack` ([`crate::msg`]). That parser is
//! lenient in ways a server must not be: a header line that is not UTF-8 silently ends the
//! header section, a line without a colon is skipped, an unreadable Content-Length counts as
//! zero and a body shorter than its Content-Length is cut without complaint. So every message
//! is first checked here by [`scan`], which enforces the limits and RFC 3261 §7/§18 framing
//! and keeps the raw values of the headers needed to answer `400 Bad Request` when the
//! message cannot be parsed. The parser call itself is wrapped in `catch_unwind`, so no input
//! takes the process down.

use crate::msg::{self, SipMessage};
use std::borrow::Cow;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Size limits applied to every message before it is parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest message (start line, headers and body) in bytes.
    pub max_message_size: usize,
    /// Most header lines (after unfolding) in one message.
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_size: 65_535,
            max_headers: 128,
        }
    }
}

/// Why a message was refused, with what is needed to answer it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// What was wrong, in words fit for a `Warning` header and a log line.
    pub reason: String,
    /// The raw headers a response needs, when they could be read.
    essentials: Option<Box<Essentials>>,
    /// The message is a request (a bad response is never answered).
    is_request: bool,
    /// The request's method is not one this implementation knows (answered 501, §21.5.2).
    unknown_method: bool,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for ParseError {}

impl ParseError {
    fn new(reason: impl Into<String>) -> Self {
        ParseError {
            reason: reason.into(),
            essentials: None,
            is_request: false,
            unknown_method: false,
        }
    }

    /// The request's method is not one this implementation knows.
    pub fn is_unknown_method(&self) -> bool {
        self.unknown_method
    }

    /// The response to the refused message, when it was a request whose Via, From, To,
    /// Call-ID and CSeq could be read (RFC 3261 §8.2.6): `400 Bad Request` with a Warning
    /// saying what was wrong, or `501 Not Implemented` with `Allow` for a method this
    /// implementation does not know (§21.5.2). Otherwise `None` (those headers missing, or
    /// holding a control character, which is never echoed): the message is dropped and
    /// counted.
    pub fn response(&self, server: &str, allow: &str) -> Option<Vec<u8>> {
        if !self.is_request {
            return None;
        }
        let e = self.essentials.as_ref()?;
        let (from, to, call_id, cseq) = (
            e.from.as_ref()?,
            e.to.as_ref()?,
            e.call_id.as_ref()?,
            e.cseq.as_ref()?,
        );
        if e.via.is_empty() {
            return None;
        }
        // What a response copies is copied as it came, or not at all: nothing a request
        // carries is echoed raw (a control character in these drops the request).
        let controlled = |v: &str| v.chars().any(|c| c.is_control() && c != '\t');
        if e.via.iter().any(|v| controlled(v))
            || [from, to, call_id, cseq].into_iter().any(|v| controlled(v))
        {
            return None;
        }
        let mut out = String::with_capacity(512);
        if self.unknown_method {
            out.push_str("SIP/2.0 501 Not Implemented\r\n");
        } else {
            out.push_str("SIP/2.0 400 Bad Request\r\n");
        }
        for via in &e.via {
            out.push_str("Via: ");
            out.push_str(via);
            out.push_str("\r\n");
        }
        out.push_str("From: ");
        out.push_str(from);
        out.push_str("\r\nTo: ");
        out.push_str(to);
        out.push_str("\r\nCall-ID: ");
        out.push_str(call_id);
        out.push_str("\r\nCSeq: ");
        out.push_str(cseq);
        out.push_str("\r\nServer: ");
        out.push_str(server);
        if self.unknown_method {
            out.push_str("\r\nAllow: ");
            out.push_str(allow);
        }
        out.push_str("\r\nWarning: 399 switchboard \"");
        out.push_str(&crate::message::header_text(&self.reason));
        out.push_str("\"\r\nContent-Length: 0\r\n\r\n");
        Some(out.into_bytes())
    }
}

/// The raw values of the headers every response copies from its request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Essentials {
    via: Vec<String>,
    from: Option<String>,
    to: Option<String>,
    call_id: Option<String>,
    cseq: Option<String>,
}

/// The outcome of looking for one message at the start of a stream buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Framing {
    /// More bytes are needed.
    Incomplete,
    /// `len` bytes of CRLF keep-alive (RFC 5626 §3.5.1) to discard; `pong` when the
    /// peer sent the double-CRLF ping and expects a single CRLF back.
    KeepAlive { len: usize, pong: bool },
    /// A whole message of `len` bytes is at the start of the buffer.
    Message { len: usize },
    /// The stream cannot be read further: answer if possible, then close it.
    Invalid(ParseError),
}

/// Finds the first message in a stream buffer (RFC 3261 §18.3: framed by Content-Length,
/// which is mandatory on stream transports).
pub fn frame(buf: &[u8], limits: &Limits) -> Framing {
    let lead = buf
        .iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count();
    if lead > 0 {
        let pong = buf[..lead].windows(4).any(|w| w == b"\r\n\r\n");
        return Framing::KeepAlive { len: lead, pong };
    }
    let Some(head_end) = find_header_end(buf) else {
        if buf.len() > limits.max_message_size {
            return Framing::Invalid(ParseError::new(format!(
                "header section exceeds {} bytes",
                limits.max_message_size
            )));
        }
        return Framing::Incomplete;
    };
    let scanned = match scan_header_section(&buf[..head_end], limits) {
        Ok(s) => s,
        Err(e) => return Framing::Invalid(e),
    };
    let Some(content_length) = scanned.content_length else {
        let mut e = scanned.error("Content-Length is required on stream transports");
        e.is_request = scanned.is_request;
        return Framing::Invalid(e);
    };
    let total = head_end + 4 + content_length;
    if total > limits.max_message_size {
        return Framing::Invalid(scanned.error(format!(
            "message of {total} bytes exceeds the limit of {}",
            limits.max_message_size
        )));
    }
    if buf.len() < total {
        Framing::Incomplete
    } else {
        Framing::Message { len: total }
    }
}

/// Checks and parses one whole message: a UDP datagram or a message framed by [`frame`].
///
/// For datagrams a body longer than Content-Length is cut to it, and without Content-Length
/// the body is the rest of the datagram (RFC 3261 §18.3); a body shorter than
/// Content-Length is an error, as is any header line that is not UTF-8, has no
/// name or colon, or breaks a limit.
pub fn parse(bytes: &[u8], limits: &Limits) -> Result<SipMessage, ParseError> {
    if bytes.len() > limits.max_message_size {
        return Err(ParseError::new(format!(
            "message of {} bytes exceeds the limit of {}",
            bytes.len(),
            limits.max_message_size
        )));
    }
    let head_end = find_header_end(bytes)
        .ok_or_else(|| ParseError::new("no empty line ends the header section"))?;
    let scanned = scan_header_section(&bytes[..head_end], limits)?;
    let body_len = bytes.len() - (head_end + 4);
    let end = match scanned.content_length {
        Some(cl) if cl > body_len => {
            return Err(scanned.error(format!(
                "Content-Length {cl} is larger than the {body_len}-byte body"
            )))
        }
        Some(cl) => head_end + 4 + cl,
        None => bytes.len(),
    };
    let msg = &bytes[..end];
    // The scan has read every header line already: the message is made from what it read,
    // unless its start line has a bare CR or LF (the parser would split there) or does not
    // parse (the parser then says why, below).
    if memchr::memchr2(b'\r', b'\n', scanned.start.as_bytes()).is_none() {
        let start = catch_unwind(AssertUnwindSafe(|| start_line(scanned.start)));
        if let Ok(Some(start)) = start {
            return Ok(build(start, scanned.headers, &msg[head_end + 4..]));
        }
    }
    let parsed = catch_unwind(AssertUnwindSafe(|| {
        by_parser(msg, head_end, scanned.content_length.is_some())
    }));
    match parsed {
        Ok(Ok(m)) => Ok(m),
        Ok(Err(e)) => {
            let mut err = scanned.error(parser_reason(&e));
            err.unknown_method = scanned.is_request && scanned.method_unknown;
            if err.unknown_method {
                err.reason = "method not implemented".into();
            }
            Err(err)
        }
        Err(_) => Err(scanned.error("unparseable message")),
    }
}

/// A checked message (cut to its Content-Length) read by the parser itself, with the
/// start line's text kept as it came and a datagram's body without Content-Length kept
/// whole: what [`parse`] makes of the scan directly whenever it can.
fn by_parser(
    msg: &[u8],
    head_end: usize,
    has_content_length: bool,
) -> Result<SipMessage, msg::Error> {
    let mut m = msg::parser::parse_message(msg)?;
    keep_start_line_text(&mut m, msg);
    if !has_content_length && msg.len() > head_end + 4 {
        // A datagram without Content-Length: its body runs to its end (§18.3). (The parser
        // would take none.)
        let body = msg[head_end + 4..].to_vec();
        match &mut m {
            SipMessage::Request(r) => r.body = body,
            SipMessage::Response(r) => r.body = body,
        }
    }
    Ok(m)
}

/// A start line read as the parser reads it, with what it would write differently put
/// back as it came (see [`keep_start_line_text`]).
enum StartLine {
    Request(msg::Method, msg::Uri, msg::Version),
    Response(msg::StatusCode, Option<String>, msg::Version),
}

/// Reads a start line (without CR or LF) as the parser does; None where the parser would
/// fail.
fn start_line(line: &str) -> Option<StartLine> {
    let mut parts = line.splitn(3, [' ', '\t']);
    let (first, second) = (parts.next()?, parts.next()?);
    if line.starts_with("SIP/") {
        let reason = trim(parts.next().unwrap_or(""));
        let version = first.parse::<msg::Version>().ok()?;
        let code: u16 = second.parse().ok()?;
        let status = msg::StatusCode::try_from((code, reason)).ok()?;
        // A phrase other than the standard one, even only in letter case, is kept aside.
        let wire_reason = (!reason.is_empty()
            && !matches!(status, msg::StatusCode::Other(..))
            && reason != status.text())
        .then(|| reason.to_string());
        Some(StartLine::Response(status, wire_reason, version))
    } else {
        let version = trim(parts.next()?);
        let method = first.parse::<msg::Method>().ok()?;
        let mut uri = msg::uri::parse_uri(trim(second)).ok()?;
        let version = version.parse::<msg::Version>().ok()?;
        if let Some(text) = line.split(' ').nth(1) {
            if text.contains(';') {
                keep_uri_params(&mut uri, text);
            }
        }
        Some(StartLine::Request(method, uri, version))
    }
}

/// The message the parser would make of a start line and the scan's header lines.
fn build(start: StartLine, lines: Vec<(&str, Cow<'_, str>)>, body: &[u8]) -> SipMessage {
    let mut headers = msg::Headers(Vec::with_capacity(lines.len()));
    for (name, value) in lines {
        headers.push(header(name, value.into_owned()));
    }
    let body = body.to_vec();
    match start {
        StartLine::Request(method, uri, version) => SipMessage::Request(msg::Request {
            method,
            uri,
            version,
            headers,
            body,
        }),
        StartLine::Response(status_code, wire_reason, version) => {
            SipMessage::Response(msg::Response {
                status_code,
                wire_reason,
                version,
                headers,
                body,
            })
        }
    }
}

/// A header as the parser makes it from its name and value: the usual names as they are
/// usually written are picked at once; any other goes through the parser's own list.
fn header(name: &str, value: String) -> msg::Header {
    use msg::Header as H;
    match name {
        "Via" => H::Via(value.into()),
        "From" => H::From(value.into()),
        "To" => H::To(value.into()),
        "Call-ID" => H::CallId(value.into()),
        "CSeq" => H::CSeq(value.into()),
        "Contact" => H::Contact(value.into()),
        "Max-Forwards" => H::MaxForwards(value.into()),
        "Content-Length" => H::ContentLength(value.into()),
        "Content-Type" => H::ContentType(value.into()),
        "Record-Route" => H::RecordRoute(value.into()),
        "Route" => H::Route(value.into()),
        "User-Agent" => H::UserAgent(value.into()),
        "Server" => H::Server(value.into()),
        "Allow" => H::Allow(value.into()),
        "Supported" => H::Supported(value.into()),
        "Expires" => H::Expires(value.into()),
        _ => msg::headers::make_header(name, value),
    }
}

/// What the parser would write differently from what was received on the start line is
/// put back as it came, so that a proxy forwards it unchanged: a Request-URI's parameters
/// (the parser writes `;transport=udp` as `;transport=UDP`) and a reason phrase that is the
/// standard one in other letter case (`200 Ok`, kept aside for relaying like any other).
fn keep_start_line_text(m: &mut SipMessage, bytes: &[u8]) {
    let end = memchr::memchr2(b'\r', b'\n', bytes).unwrap_or(bytes.len());
    let Ok(line) = std::str::from_utf8(&bytes[..end]) else {
        return;
    };
    match m {
        SipMessage::Request(r) => {
            if let Some(uri) = line.split(' ').nth(1) {
                if uri.contains(';') {
                    keep_uri_params(&mut r.uri, uri);
                }
            }
        }
        SipMessage::Response(r) => {
            let reason = line.splitn(3, [' ', '\t']).nth(2).unwrap_or("").trim();
            if r.wire_reason.is_none()
                && !reason.is_empty()
                && !matches!(r.status_code, msg::StatusCode::Other(..))
                && reason != r.status_code.text()
            {
                r.wire_reason = Some(reason.to_string());
            }
        }
    }
}

/// Gives `uri` (parsed from `text`) the parameters of `text` exactly as written, names and
/// values in their own letter case, so that writing it gives them back unchanged. The
/// parameters are split as the parser splits them; if they do not line up, nothing changes.
fn keep_uri_params(uri: &mut msg::Uri, text: &str) {
    use msg::uri::{OtherParam, OtherParamValue, Param};
    let text = text
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim();
    let main = text.split('?').next().unwrap_or(text);
    let Some((_, params)) = main.split_once(';') else {
        return;
    };
    let kept: Vec<Param> = params
        .split(';')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((name, value)) => {
                Param::Other(OtherParam::new(name), Some(OtherParamValue::new(value)))
            }
            None => Param::Other(OtherParam::new(p), None),
        })
        .collect();
    if kept.len() == uri.params.len() {
        uri.params = kept;
    }
}

/// A URI as the message model holds it, whose parameters are written back exactly as in
/// `text` (see [`keep_uri_params`]): for a Request-URI a proxy takes from a header or a
/// registered contact and forwards.
pub fn uri_as_written(text: &str) -> Result<msg::Uri, msg::Error> {
    let mut uri = msg::Uri::try_from(text)?;
    keep_uri_params(&mut uri, text);
    Ok(uri)
}

fn parser_reason(e: &msg::Error) -> String {
    let text = e.to_string();
    let text = text.trim();
    let mut out: String = text.chars().take(120).collect();
    if out.is_empty() {
        out.push_str("unparseable message");
    }
    out
}

fn find_header_end(buf: &[u8]) -> Option<usize> {
    memchr::memmem::find(buf, b"\r\n\r\n")
}

/// The lines of a header section, split at each CRLF (as `str::split("\r\n")` does); a bare
/// CR or LF stays inside its line.
fn crlf_lines(text: &str) -> impl Iterator<Item = &str> {
    let bytes = text.as_bytes();
    let mut start = Some(0usize);
    std::iter::from_fn(move || {
        let s = start?;
        let mut from = s;
        loop {
            match memchr::memchr(b'\n', &bytes[from..]) {
                Some(i) if from + i > s && bytes[from + i - 1] == b'\r' => {
                    start = Some(from + i + 1);
                    return Some(&text[s..from + i - 1]);
                }
                Some(i) => from += i + 1,
                None => {
                    start = None;
                    return Some(&text[s..]);
                }
            }
        }
    })
}

/// What the scan found, borrowed from the message: copied only when an error needs it
/// (every message is scanned; few are refused).
struct Scanned<'a> {
    is_request: bool,
    method_unknown: bool,
    content_length: Option<usize>,
    /// The start line.
    start: &'a str,
    /// The header lines read, continuation lines unfolded: name and value, trimmed.
    headers: Vec<(&'a str, Cow<'a, str>)>,
}

impl Scanned<'_> {
    fn error(&self, reason: impl Into<String>) -> ParseError {
        let mut e = Essentials::default();
        for (name, value) in &self.headers {
            let long = expand_compact(name);
            let keep = |slot: &mut Option<String>| {
                slot.get_or_insert_with(|| value.to_string());
            };
            if long.eq_ignore_ascii_case("Via") {
                e.via.push(value.to_string());
            } else if long.eq_ignore_ascii_case("From") {
                keep(&mut e.from);
            } else if long.eq_ignore_ascii_case("To") {
                keep(&mut e.to);
            } else if long.eq_ignore_ascii_case("Call-ID") {
                keep(&mut e.call_id);
            } else if long.eq_ignore_ascii_case("CSeq") {
                keep(&mut e.cseq);
            }
        }
        ParseError {
            reason: reason.into(),
            essentials: Some(Box::new(e)),
            is_request: self.is_request,
            unknown_method: false,
        }
    }
}

/// The long names of the compact header forms (RFC 3261 §7.3.3 and later RFCs).
pub fn expand_compact(name: &str) -> &str {
    if name.len() != 1 {
        return name;
    }
    match name.as_bytes()[0].to_ascii_lowercase() {
        b'v' => "Via",
        b'f' => "From",
        b't' => "To",
        b'i' => "Call-ID",
        b'm' => "Contact",
        b'l' => "Content-Length",
        b'c' => "Content-Type",
        b'e' => "Content-Encoding",
        b's' => "Subject",
        b'k' => "Supported",
        b'o' => "Event",
        b'u' => "Allow-Events",
        b'r' => "Refer-To",
        b'b' => "Referred-By",
        b'x' => "Session-Expires",
        b'a' => "Accept-Contact",
        b'j' => "Reject-Contact",
        b'd' => "Request-Disposition",
        b'y' => "Identity",
        _ => name,
    }
}

/// The bytes of a token (RFC 3261 §25.1), by value.
const TOKEN: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            );
        b += 1;
    }
    t
};

fn is_token_char(b: u8) -> bool {
    TOKEN[b as usize]
}

/// `s.trim()`: ASCII white space is stripped byte by byte, and only ends that are not
/// ASCII (rare in a header) go through the Unicode-aware `trim`.
pub(crate) fn trim(s: &str) -> &str {
    // The ASCII characters `char::is_whitespace` counts.
    let space = |b: u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c);
    let b = s.as_bytes();
    let (mut start, mut end) = (0, b.len());
    while start < end && space(b[start]) {
        start += 1;
    }
    while end > start && space(b[end - 1]) {
        end -= 1;
    }
    if start < end && (!b[start].is_ascii() || !b[end - 1].is_ascii()) {
        return s.trim();
    }
    // Only ASCII was cut, so both ends are character boundaries.
    &s[start..end]
}

/// Reads the header section strictly: UTF-8 throughout, every line `name: value` (or a
/// continuation), the header count within its limit, one well-formed Content-Length.
fn scan_header_section<'a>(head: &'a [u8], limits: &Limits) -> Result<Scanned<'a>, ParseError> {
    let mut scanned = Scanned {
        is_request: false,
        method_unknown: false,
        content_length: None,
        start: "",
        headers: Vec::new(),
    };
    let text = match std::str::from_utf8(head) {
        Ok(t) => t,
        Err(e) => {
            // Keep what precedes the bad byte, so a 400 can still be built.
            let valid = std::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or("");
            let _ = scan_lines(valid, limits, &mut scanned);
            return Err(scanned.error("header section is not valid UTF-8"));
        }
    };
    scan_lines(text, limits, &mut scanned)?;
    if has_control(head) {
        return Err(scanned.error("control character in the header section"));
    }
    Ok(scanned)
}

/// Whether `bytes` hold a control character other than HTAB, CR and LF (RFC 3261 §25.1:
/// none may appear in a header section; bare CR and LF are refused line by line). Every
/// byte is looked at, without an early exit, so that the loop is vectorised: this runs on
/// every message.
fn has_control(bytes: &[u8]) -> bool {
    bytes.iter().fold(false, |found, &b| {
        found | ((b < 0x20 && b != b'\t' && b != b'\r' && b != b'\n') || b == 0x7f)
    })
}

fn scan_lines<'a>(
    text: &'a str,
    limits: &Limits,
    scanned: &mut Scanned<'a>,
) -> Result<(), ParseError> {
    let mut lines = crlf_lines(text);
    let start = lines.next().unwrap_or("");
    if start.is_empty() {
        return Err(ParseError::new("empty start line"));
    }
    scanned.start = start;
    scanned.is_request = !start.starts_with("SIP/");
    if scanned.is_request {
        let mut parts = start.split(' ');
        let method = parts.next().unwrap_or("");
        let uri = parts.next().unwrap_or("");
        let version = parts.next().unwrap_or("");
        if method.is_empty()
            || !method.bytes().all(is_token_char)
            || uri.is_empty()
            || version != "SIP/2.0"
            || parts.next().is_some()
        {
            // Still collect the headers, to answer with 400.
            collect(lines, limits, scanned)?;
            return Err(scanned.error("malformed Request-Line"));
        }
        scanned.method_unknown = method.parse::<msg::Method>().is_err();
    }
    collect(lines, limits, scanned)
}

fn collect<'a>(
    lines: impl Iterator<Item = &'a str>,
    limits: &Limits,
    scanned: &mut Scanned<'a>,
) -> Result<(), ParseError> {
    // Unfold continuation lines into the header they continue. A bad line is remembered
    // and reading goes on, so the headers a 400 needs are still found after it.
    let mut headers: Vec<(&str, std::borrow::Cow<'a, str>)> = Vec::with_capacity(24);
    let mut first_error: Option<String> = None;
    for line in lines {
        let problem = if matches!(line.as_bytes().first(), Some(b' ' | b'\t')) {
            match headers.last_mut() {
                Some((_, value)) => {
                    let v = value.to_mut();
                    v.push(' ');
                    v.push_str(trim(line));
                    None
                }
                None => Some("continuation line before any header".to_string()),
            }
        } else if memchr::memchr2(b'\r', b'\n', line.as_bytes()).is_some() {
            Some("bare CR or LF in the header section".to_string())
        } else {
            match memchr::memchr(b':', line.as_bytes()) {
                None => Some(format!("header line without a colon: {:.40}", line)),
                Some(colon) => {
                    // ':' is ASCII: both sides are character boundaries.
                    let (name, value) = (&line[..colon], &line[colon + 1..]);
                    let name_end = name
                        .bytes()
                        .rposition(|b| b != b' ' && b != b'\t')
                        .map_or(0, |i| i + 1);
                    let name = &name[..name_end];
                    if name.is_empty() || !name.bytes().all(is_token_char) {
                        Some(format!("bad header name: {:.40}", name))
                    } else if headers.len() >= limits.max_headers {
                        first_error.get_or_insert(format!(
                            "more than {} header lines",
                            limits.max_headers
                        ));
                        break;
                    } else {
                        headers.push((name, std::borrow::Cow::Borrowed(trim(value))));
                        None
                    }
                }
            }
        };
        if let Some(p) = problem {
            first_error.get_or_insert(p);
        }
    }
    let mut content_length_error = None;
    for (name, value) in &headers {
        if expand_compact(name).eq_ignore_ascii_case("Content-Length") {
            let parsed = if !value.is_empty()
                && value.len() <= 9
                && value.bytes().all(|b| b.is_ascii_digit())
            {
                value.parse::<usize>().ok()
            } else {
                None
            };
            match (parsed, scanned.content_length) {
                (Some(n), None) => scanned.content_length = Some(n),
                (Some(n), Some(m)) if n == m => {}
                (Some(_), Some(_)) => {
                    content_length_error = Some("conflicting Content-Length headers".to_string())
                }
                (None, _) => {
                    content_length_error = Some(format!("bad Content-Length: {:.20}", value))
                }
            }
        }
    }
    scanned.headers = headers;
    match first_error.or(content_length_error) {
        Some(reason) => Err(scanned.error(reason)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REGISTER: &str = "REGISTER sip:switchboard.local SIP/2.0\r\n\
        Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1;rport\r\n\
        Max-Forwards: 70\r\n\
        From: <sip:alice@switchboard.local>;tag=a1\r\n\
        To: <sip:alice@switchboard.local>\r\n\
        Call-ID: reg-1@127.0.0.1\r\n\
        CSeq: 1 REGISTER\r\n\
        Contact: <sip:alice@127.0.0.1:5070>\r\n\
        Content-Length: 0\r\n\r\n";

    fn limits() -> Limits {
        Limits::default()
    }

    #[test]
    fn parses_a_register() {
        let m = parse(REGISTER.as_bytes(), &limits()).unwrap();
        assert!(m.is_request());
    }

    #[test]
    fn compact_forms_are_read() {
        let text =
            "OPTIONS sip:x@[::1]:5060 SIP/2.0\r\nv: SIP/2.0/UDP [::1]:5070;branch=z9hG4bK-2\r\n\
            f: <sip:a@b>;tag=1\r\nt: <sip:x@[::1]>\r\ni: c1\r\nCSeq: 1 OPTIONS\r\nl: 0\r\n\r\n";
        let m = parse(text.as_bytes(), &limits()).unwrap();
        let SipMessage::Request(r) = m else { panic!() };
        use crate::msg::HeadersExt;
        assert_eq!(r.call_id_header().unwrap().value(), "c1");
    }

    #[test]
    fn non_utf8_header_is_refused_with_400() {
        let mut bytes = REGISTER.as_bytes().to_vec();
        let pos = bytes.windows(8).position(|w| w == b"Contact:").unwrap();
        bytes.insert(pos + 10, 0xff);
        let err = parse(&bytes, &limits()).unwrap_err();
        assert!(err.reason.contains("UTF-8"), "{}", err.reason);
        let resp = String::from_utf8(err.response("t", "OPTIONS").unwrap()).unwrap();
        assert!(resp.starts_with("SIP/2.0 400 Bad Request\r\n"));
        assert!(resp.contains("Call-ID: reg-1@127.0.0.1\r\n"));
        assert!(resp.contains("Warning: 399 switchboard \"header section is not valid UTF-8\""));
    }

    #[test]
    fn control_characters_are_refused_and_never_echoed() {
        for c in (0u8..0x20).filter(|c| !b"\t\r\n".contains(c)).chain([0x7f]) {
            let c = char::from(c);
            // In a header a response does not copy: 400, with a clean Warning.
            let text = REGISTER.replace("Max-Forwards: 70", &format!("User-Agent: a{c}b"));
            let err = parse(text.as_bytes(), &limits()).unwrap_err();
            assert!(err.reason.contains("control character"), "{}", err.reason);
            let resp = String::from_utf8(err.response("t", "").unwrap()).unwrap();
            assert!(resp.starts_with("SIP/2.0 400 Bad Request\r\n"), "{resp:?}");
            assert!(
                !resp
                    .chars()
                    .any(|x| x.is_control() && x != '\r' && x != '\n'),
                "{resp:?}"
            );
            // In one it copies: no response at all rather than an echo.
            for header in [
                "From: <sip:alice",
                "Call-ID: reg",
                "CSeq: 1 REG",
                "Via: SIP/2.0/UDP",
            ] {
                let (name, rest) = header.split_at(header.len() - 1);
                let text = REGISTER.replace(header, &format!("{name}{c}{rest}"));
                let err = parse(text.as_bytes(), &limits()).unwrap_err();
                assert_eq!(err.response("t", ""), None, "{header} with {c:?}");
            }
        }
        // HTAB is whitespace, not a control character here.
        let text = REGISTER.replace("Max-Forwards: 70", "Max-Forwards:\t70");
        assert!(parse(text.as_bytes(), &limits()).is_ok());
    }

    #[test]
    fn short_body_is_an_error_long_body_is_cut() {
        let text = REGISTER.replace("Content-Length: 0", "Content-Length: 10");
        let err = parse(text.as_bytes(), &limits()).unwrap_err();
        assert!(err.reason.contains("larger than"), "{}", err.reason);
        let text = REGISTER.replace("Content-Length: 0", "Content-Length: 2") + "abcdef";
        let SipMessage::Request(r) = parse(text.as_bytes(), &limits()).unwrap() else {
            panic!()
        };
        assert_eq!(r.body(), b"ab");
    }

    fn request_line_of(text: &str) -> String {
        let SipMessage::Request(r) = parse(text.as_bytes(), &limits()).unwrap() else {
            panic!()
        };
        let bytes = crate::wire::request_bytes(&r);
        let out = String::from_utf8(bytes).unwrap();
        out.lines().next().unwrap().to_string()
    }

    fn status_line_of(line: &str) -> String {
        let text = format!(
            "{line}\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\n\
             To: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        );
        let SipMessage::Response(mut r) = parse(text.as_bytes(), &limits()).unwrap() else {
            panic!()
        };
        // As a proxy relays it.
        crate::message::keep_reason_phrase(&mut r);
        let out = String::from_utf8(crate::wire::response_bytes(&r)).unwrap();
        out.lines().next().unwrap().to_string()
    }

    #[test]
    fn a_relayed_status_line_keeps_its_reason_phrase() {
        for line in [
            "SIP/2.0 200 Ok",
            "SIP/2.0 200 OK",
            "SIP/2.0 180 Ringing Now",
            "SIP/2.0 180 ringing",
            "SIP/2.0 486 Busy here",
            "SIP/2.0 603 Decline",
            "SIP/2.0 299 Odd Thing",
        ] {
            assert_eq!(status_line_of(line), line);
        }
        // No phrase at all: the standard one.
        assert_eq!(status_line_of("SIP/2.0 200"), "SIP/2.0 200 OK");
    }

    #[test]
    fn a_request_uri_keeps_its_parameters_as_written() {
        for uri in [
            "sip:bob@10.0.0.2:5070;transport=udp",
            "sip:bob@10.0.0.2:5070;transport=TcP;lr;foo=Bar",
            "sip:10.0.0.2;lr;foo=Bar;Maddr=10.0.0.3;user=Phone",
            "sip:bob@[::1]:5070;transport=udp?Subject=Hi",
            "sip:bob@h",
        ] {
            let text = format!(
                "OPTIONS {uri} SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nMax-Forwards: 70\r\n\
                 From: <sip:a@b>;tag=1\r\nTo: <sip:bob@b>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n\
                 Content-Length: 0\r\n\r\n"
            );
            assert_eq!(request_line_of(&text), format!("OPTIONS {uri} SIP/2.0"));
            assert_eq!(uri_as_written(uri).unwrap().to_string(), uri);
            assert_eq!(
                uri_as_written(&format!("<{uri}>")).unwrap().to_string(),
                uri
            );
        }
    }

    /// What the parser itself makes of a message that passed the scan.
    fn reference(text: &str) -> SipMessage {
        let bytes = text.as_bytes();
        let head_end = find_header_end(bytes).unwrap();
        let scanned = scan_header_section(&bytes[..head_end], &limits()).unwrap();
        let end = scanned
            .content_length
            .map_or(bytes.len(), |cl| head_end + 4 + cl);
        by_parser(&bytes[..end], head_end, scanned.content_length.is_some()).unwrap()
    }

    #[test]
    fn the_scan_makes_the_message_the_parser_makes() {
        let texts = [
            REGISTER.to_string(),
            // Compact forms, odd letter case, unknown headers, folded lines, a body.
            "INVITE sip:bob@10.0.0.2:5070;transport=udp;lr;Foo=Bar SIP/2.0\r\n\
             v: SIP/2.0/UDP h;branch=z9hG4bK1\r\nVIA: SIP/2.0/UDP g;branch=z9hG4bK0\r\n\
             max-forwards: 70\r\nf: \"A\" <sip:a@b>;tag=1\r\nt: <sip:bob@b>\r\ni: c1\r\n\
             CSeq: 1 INVITE\r\nm: <sip:a@10.0.0.1>\r\nX-Custom:  y \r\n  folded\r\n\
             Subject: hi\r\n\tthere\r\nP-Asserted-Identity: <sip:1@b>\r\nk: timer\r\n\
             Session-Expires: 1800;refresher=uac\r\nc: application/sdp\r\nl: 4\r\n\r\nv=0\n"
                .to_string(),
            "SIP/2.0 200 Ok\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nRecord-Route: <sip:p;lr>\r\n\
             From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n\
             Contact: <sip:c@10.0.0.3>\r\nContent-Length: 0\r\n\r\n"
                .to_string(),
            "SIP/2.0 486 Busy here\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\n\
             To: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n\r\n"
                .to_string(),
            "SIP/2.0 499 Odd Thing\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\n\
             To: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
                .to_string(),
            "SIP/2.0 180\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\n\
             To: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
                .to_string(),
            REGISTER.replace("Content-Length: 0\r\n", "") + "v=0\r\n",
            REGISTER.replace("Content-Length: 0", "Content-Length: 2") + "abcdef",
            REGISTER.replace("REGISTER sip:switchboard.local", "REGISTER sip:[::1]:5070?Subject=x"),
        ];
        for text in texts {
            assert_eq!(
                parse(text.as_bytes(), &limits()).unwrap(),
                reference(&text),
                "{text}"
            );
        }
    }

    #[test]
    fn a_datagram_without_content_length_keeps_its_whole_body() {
        let text = REGISTER.replace("Content-Length: 0\r\n", "") + "v=0\r\n";
        let SipMessage::Request(r) = parse(text.as_bytes(), &limits()).unwrap() else {
            panic!()
        };
        assert_eq!(r.body(), b"v=0\r\n");
        let text = REGISTER.replace("Content-Length: 0\r\n", "");
        let SipMessage::Request(r) = parse(text.as_bytes(), &limits()).unwrap() else {
            panic!()
        };
        assert!(r.body().is_empty());
    }

    #[test]
    fn absurd_content_length_is_refused() {
        let text = REGISTER.replace("Content-Length: 0", "Content-Length: 99999999999999999999");
        let err = parse(text.as_bytes(), &limits()).unwrap_err();
        assert!(err.reason.contains("bad Content-Length"), "{}", err.reason);
        assert!(err.response("t", "OPTIONS").is_some());
    }

    #[test]
    fn header_count_limit() {
        let extra: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
        let text = REGISTER.replace("Content-Length: 0\r\n", &(extra + "Content-Length: 0\r\n"));
        let err = parse(text.as_bytes(), &limits()).unwrap_err();
        assert!(err.reason.contains("header lines"), "{}", err.reason);
    }

    #[test]
    fn size_limit() {
        let l = Limits {
            max_message_size: 100,
            max_headers: 10,
        };
        assert!(parse(REGISTER.as_bytes(), &l).is_err());
    }

    #[test]
    fn line_without_colon_is_refused() {
        let text = REGISTER.replace("Max-Forwards: 70", "Max-Forwards 70");
        let err = parse(text.as_bytes(), &limits()).unwrap_err();
        assert!(err.reason.contains("without a colon"));
    }

    #[test]
    fn garbage_gets_no_response() {
        let err = parse(b"\x00\x01garbage\r\n\r\n", &limits()).unwrap_err();
        assert!(err.response("t", "OPTIONS").is_none());
        let err = parse(b"", &limits()).unwrap_err();
        assert!(err.response("t", "OPTIONS").is_none());
    }

    #[test]
    fn bad_response_is_never_answered() {
        let text =
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\n\
            To: <sip:a@b>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\nContent-Length: 5\r\n\r\n";
        let err = parse(text.as_bytes(), &limits()).unwrap_err();
        assert!(err.response("t", "OPTIONS").is_none());
    }

    #[test]
    fn stream_framing() {
        let l = limits();
        let two = format!("{REGISTER}{REGISTER}");
        assert_eq!(
            frame(two.as_bytes(), &l),
            Framing::Message {
                len: REGISTER.len()
            }
        );
        assert_eq!(frame(&REGISTER.as_bytes()[..50], &l), Framing::Incomplete);
        assert_eq!(
            frame(b"\r\n\r\nREG", &l),
            Framing::KeepAlive { len: 4, pong: true }
        );
        assert_eq!(
            frame(b"\r\n", &l),
            Framing::KeepAlive {
                len: 2,
                pong: false
            }
        );
        let no_cl = REGISTER.replace("Content-Length: 0\r\n", "");
        assert!(matches!(frame(no_cl.as_bytes(), &l), Framing::Invalid(_)));
        let body = REGISTER.replace("Content-Length: 0", "Content-Length: 4");
        assert_eq!(frame(body.as_bytes(), &l), Framing::Incomplete);
        let full = format!("{body}abcd");
        assert_eq!(
            frame(full.as_bytes(), &l),
            Framing::Message { len: full.len() }
        );
    }

    #[test]
    fn endless_header_section_is_refused_on_streams() {
        let l = Limits {
            max_message_size: 64,
            max_headers: 10,
        };
        let junk = vec![b'a'; 100];
        assert!(matches!(frame(&junk, &l), Framing::Invalid(_)));
    }

    proptest::proptest! {
        #[test]
        fn lines_split_at_crlf_only(text in "[ab:\r\n]{0,40}") {
            let ours: Vec<&str> = crlf_lines(&text).collect();
            let split: Vec<&str> = text.split("\r\n").collect();
            proptest::prop_assert_eq!(ours, split);
        }

        #[test]
        fn the_scan_makes_any_message_the_parser_makes(
            names in proptest::collection::vec("[A-Za-z][-A-Za-z]{0,14}|[a-z]", 0..8),
            values in proptest::collection::vec("[ -~]{0,20}", 8),
            uri in "sip:[a-z]{1,4}@[a-z0-9.]{1,8}(:[0-9]{1,4})?(;[A-Za-z]{1,5}(=[A-Za-z0-9]{1,4})?){0,3}",
            status in "SIP/2.0 [1-6][0-9]{2}( [ -~]{0,12})?",
        ) {
            let extra: String = names
                .iter()
                .zip(&values)
                .filter(|(n, _)| !expand_compact(n).eq_ignore_ascii_case("Content-Length"))
                .map(|(n, v)| format!("{n}: {v}\r\n"))
                .collect();
            // REGISTER's header lines but its Content-Length, then the others.
            let usual = &REGISTER[REGISTER.find('\n').unwrap() + 1..REGISTER.find("Content-Length").unwrap()];
            for start in [format!("OPTIONS {uri} SIP/2.0"), status.clone()] {
                let text = format!("{start}\r\n{usual}{extra}Content-Length: 0\r\n\r\n");
                if let Ok(m) = parse(text.as_bytes(), &limits()) {
                    proptest::prop_assert_eq!(m, reference(&text));
                }
            }
        }

        #[test]
        fn trims_as_str_trim(text in "[ \t\r\n\u{b}\u{c}\u{a0}\u{85}\u{2003}ab\u{e9}]{0,12}") {
            proptest::prop_assert_eq!(trim(&text), text.trim());
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            let _ = parse(&bytes, &limits());
            let _ = frame(&bytes, &limits());
        }

        #[test]
        fn never_panics_on_mutated_register(pos in 0usize..400, byte in proptest::prelude::any::<u8>()) {
            let mut bytes = REGISTER.as_bytes().to_vec();
            let p = pos % bytes.len();
            bytes[p] = byte;
            if let Err(e) = parse(&bytes, &limits()) { let _ = e.response("t", "OPTIONS"); }
        }
    }
}

#[cfg(test)]
mod method_tests {
    use super::*;

    #[test]
    fn unknown_method_gets_501_with_allow() {
        let text = "FOO sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\n\
            To: <sip:a@b>\r\nCall-ID: x\r\nCSeq: 1 FOO\r\nContent-Length: 0\r\n\r\n";
        let err = parse(text.as_bytes(), &Limits::default()).unwrap_err();
        assert!(err.is_unknown_method());
        let r = String::from_utf8(err.response("t", "REGISTER, OPTIONS").unwrap()).unwrap();
        assert!(r.starts_with("SIP/2.0 501 Not Implemented\r\n"), "{r}");
        assert!(r.contains("\r\nAllow: REGISTER, OPTIONS\r\n"));
    }
}

#[cfg(test)]
mod recovery_tests {
    use super::*;

    #[test]
    fn a_bad_line_still_gets_a_400_built_from_later_headers() {
        let text = "REGISTER sip:x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
            From: <sip:a@b>;tag=1\r\nthis line has no colon\r\nTo: <sip:a@b>\r\nCall-ID: x\r\n\
            CSeq: 2 REGISTER\r\nContent-Length: 0\r\n\r\n";
        let err = parse(text.as_bytes(), &Limits::default()).unwrap_err();
        let r = String::from_utf8(err.response("t", "").unwrap()).unwrap();
        assert!(r.starts_with("SIP/2.0 400 Bad Request\r\n"), "{r}");
        assert!(r.contains("header line without a colon"), "{r}");
    }
}

#[cfg(test)]
mod ipv6_tests {
    use super::*;

    #[test]
    fn ipv6_request_uri_parses() {
        let text = "OPTIONS sip:[::1]:5070 SIP/2.0\r\nVia: SIP/2.0/UDP [::1]:9;rport;branch=z9hG4bK1\r\n\
            Max-Forwards: 70\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n\
            Content-Length: 0\r\n\r\n";
        let m = parse(text.as_bytes(), &Limits::default());
        assert!(m.is_ok(), "{m:?}");
    }
}
