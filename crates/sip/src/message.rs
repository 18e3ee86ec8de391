//! Checks every request must pass (RFC 3261 §8.2, §16.3) and building responses.

use crate::msg::headers::{Header, Headers};
use crate::msg::prelude::*;
use crate::msg::{Method, Request, Response, StatusCode, Version};
use crate::peer::Peer;
use crate::transport::Transport;
use std::net::{IpAddr, SocketAddr};

/// A request refused before it reaches its handler, and how to answer it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub code: u16,
    /// What was wrong, for a Warning header and the log.
    pub reason: String,
    /// Extra header lines the answer carries (`Allow`, `Unsupported`).
    pub headers: Vec<Header>,
}

impl Refusal {
    fn new(code: u16, reason: impl Into<String>) -> Self {
        Refusal {
            code,
            reason: reason.into(),
            headers: Vec::new(),
        }
    }

    /// The response to `req` that carries this refusal.
    pub fn response(&self, req: &Request, server: &str) -> Response {
        let mut resp = response(req, self.code, None, server);
        if self.code == 400 {
            resp.headers.push(warning(&self.reason));
        }
        resp.headers.extend(self.headers.clone());
        resp
    }
}

/// The longest free text a header built here carries (a Warning's, a Reason's), in
/// characters.
pub const MAX_HEADER_TEXT: usize = 200;

/// Free text, often from a request, made fit for a quoted string in a header value (RFC
/// 3261 §25.1 `quoted-string`): control characters (CR, LF, NUL, ESC, C1…) become `?`,
/// quotes and backslashes `'`, and it is cut to [`MAX_HEADER_TEXT`] characters (`…` marks
/// the cut). Nothing a request carries is echoed raw into a header this server builds.
pub fn header_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_HEADER_TEXT * 4));
    for (i, c) in text.chars().enumerate() {
        if i == MAX_HEADER_TEXT {
            out.push('…');
            break;
        }
        out.push(match c {
            '"' | '\\' => '\'',
            c if c.is_control() => '?',
            c => c,
        });
    }
    out
}

/// A `Warning: 399` header carrying a free-text explanation (made fit by [`header_text`]).
pub fn warning(text: &str) -> Header {
    Header::Warning(format!("399 switchboard \"{}\"", header_text(text)).into())
}

/// What the request handler supports; used by [`check_request`].
pub struct Capabilities<'a> {
    /// Methods answered or forwarded; others get `405` with `Allow`.
    pub methods: &'a [Method],
    /// Option tags accepted in `Require`; others get `420` with `Unsupported`.
    pub extensions: &'a [&'a str],
    /// Checked as a proxy forwarding the request (§16.3): `Require` is the endpoints'
    /// business and left alone; `Proxy-Require` is checked against `extensions` instead.
    pub proxy: bool,
}

impl Capabilities<'_> {
    /// The value of an `Allow` header listing the supported methods.
    pub fn allow(&self) -> String {
        self.methods
            .iter()
            .map(|m| m.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// RFC 3261 §8.1.1: the header fields every request carries.
const MANDATORY: [&str; 6] = ["Via", "From", "To", "Call-ID", "CSeq", "Max-Forwards"];

/// Checks a parsed request: mandatory headers readable, CSeq agreeing with the method,
/// Max-Forwards (§16.3 step 2: 483 at zero, except OPTIONS which the server answers itself),
/// supported method (§8.2.1: 405 with Allow) and `Require` (§8.2.2.3: 420 with Unsupported).
///
/// ACK is never refused with a response (§17: there is no response to an ACK); callers drop
/// an ACK that fails these checks.
pub fn check_request(req: &Request, caps: &Capabilities<'_>) -> Result<(), Refusal> {
    for name in MANDATORY {
        let present = req.headers.iter().any(|h| header_name(h) == Some(name));
        if !present {
            return Err(Refusal::new(400, format!("missing {name} header")));
        }
    }
    let vias = req
        .via_header()
        .map_err(|_| Refusal::new(400, "missing Via header"))?;
    // A proxy passes on what it need not understand (§16.3 checks only what routing
    // needs): the endpoints judge From and To. What this server answers itself is read
    // whole.
    if !caps.proxy {
        vias.typed()
            .map_err(|_| Refusal::new(400, "malformed Via header"))?;
        req.from_header()
            .and_then(|f| f.typed())
            .map_err(|_| Refusal::new(400, "malformed From header"))?;
        req.to_header()
            .and_then(|t| t.typed())
            .map_err(|_| Refusal::new(400, "malformed To header"))?;
    } else if split_first_value(vias.value())
        .0
        .split_whitespace()
        .nth(1)
        .is_none()
    {
        return Err(Refusal::new(400, "malformed Via header"));
    }
    if req
        .call_id_header()
        .map(|c| c.value().trim().is_empty())
        .unwrap_or(true)
    {
        return Err(Refusal::new(400, "empty Call-ID header"));
    }
    let cseq = req
        .cseq_header()
        .and_then(|c| c.typed())
        .map_err(|_| Refusal::new(400, "malformed CSeq header"))?;
    if cseq.seq >= 1 << 31 {
        return Err(Refusal::new(400, "CSeq number is not below 2**31"));
    }
    if cseq.method != req.method {
        return Err(Refusal::new(
            400,
            format!(
                "CSeq method {} does not match the request method {}",
                cseq.method, req.method
            ),
        ));
    }
    let max_forwards = req
        .max_forwards_header()
        .ok()
        .and_then(|m| m.value().trim().parse::<u8>().ok())
        .ok_or_else(|| Refusal::new(400, "malformed Max-Forwards header"))?;
    if max_forwards == 0 && req.method != Method::Options {
        return Err(Refusal::new(483, "Max-Forwards reached zero"));
    }
    if !caps.methods.contains(&req.method) {
        let mut r = Refusal::new(405, format!("method {} not allowed", req.method));
        r.headers.push(Header::Allow(caps.allow().into()));
        return Err(r);
    }
    let unsupported: Vec<&str> = req
        .headers
        .iter()
        .filter_map(|h| match h {
            Header::Require(r) if !caps.proxy => Some(r.value()),
            Header::ProxyRequire(r) if caps.proxy => Some(r.value()),
            _ => None,
        })
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|tag| {
            !tag.is_empty() && !caps.extensions.iter().any(|e| e.eq_ignore_ascii_case(tag))
        })
        .collect();
    if !unsupported.is_empty() && req.method != Method::Cancel {
        let list = unsupported.join(", ");
        let mut r = Refusal::new(420, format!("unsupported extension {list}"));
        r.headers.push(Header::Unsupported(list.into()));
        return Err(r);
    }
    Ok(())
}

/// The canonical name of a header, for those [`check_request`] looks at.
fn header_name(h: &Header) -> Option<&'static str> {
    Some(match h {
        Header::Via(_) => "Via",
        Header::From(_) => "From",
        Header::To(_) => "To",
        Header::CallId(_) => "Call-ID",
        Header::CSeq(_) => "CSeq",
        Header::MaxForwards(_) => "Max-Forwards",
        _ => return None,
    })
}

/// A response to `req` (RFC 3261 §8.2.6.2): Via, From, Call-ID and CSeq copied, To copied
/// with `to_tag` added when the request's To has no tag yet.
pub fn response(req: &Request, code: u16, to_tag: Option<&str>, server: &str) -> Response {
    let mut headers = Headers::default();
    for h in req.headers.iter() {
        match h {
            Header::Via(_) | Header::From(_) | Header::CallId(_) | Header::CSeq(_) => {
                headers.push(h.clone())
            }
            Header::To(to) => {
                let mut value = to.value().to_string();
                if let Some(tag) = to_tag {
                    if code > 100 && !has_tag(&value) {
                        value.push_str(";tag=");
                        value.push_str(tag);
                    }
                }
                headers.push(Header::To(value.into()));
            }
            _ => {}
        }
    }
    headers.push(Header::Server(server.to_string().into()));
    // Mandatory on stream transports (§18.3, §20.14); a caller adding a body updates it.
    // Header order carries no meaning, so later headers may follow it.
    headers.push(Header::ContentLength(0u32.into()));
    Response {
        status_code: StatusCode::from(code),
        version: Version::V2,
        headers,
        body: Vec::new(),
        wire_reason: None,
    }
}

/// Gives a response its own reason phrase (e.g. `480 Do Not Disturb On`): what phones show
/// on their display. Characters a status line cannot carry are dropped; at most 80 are kept;
/// an empty phrase leaves the standard one.
pub fn set_reason_phrase(resp: &mut Response, phrase: &str) {
    let clean: String = phrase
        .chars()
        .filter(|c| !c.is_control())
        .take(80)
        .collect();
    let clean = clean.trim();
    if !clean.is_empty() {
        resp.status_code = StatusCode::Other(resp.status_code.code(), clean.to_string());
    }
}

/// A response received with a phrase of its own keeps it when relayed (the parser keeps it
/// aside; the serializer writes the standard one otherwise).
pub fn keep_reason_phrase(resp: &mut Response) {
    if let Some(phrase) = resp.wire_reason.take() {
        set_reason_phrase(resp, &phrase);
    }
}

/// Whether a From/To header value carries a `tag` parameter (outside its URI).
pub fn has_tag(value: &str) -> bool {
    tag_of(value).is_some()
}

/// The number of a message's CSeq.
pub fn cseq_number(headers: &Headers) -> Option<u32> {
    headers.iter().find_map(|h| match h {
        Header::CSeq(c) => c.value().split_whitespace().next()?.parse().ok(),
        _ => None,
    })
}

/// Sets the number of a message's CSeq, its method kept (a proxy that put requests of its
/// own into a dialog renumbers what passes through it).
pub fn set_cseq_number(headers: &mut Headers, number: u32) {
    for h in headers.iter_mut() {
        if let Header::CSeq(c) = h {
            let method = c
                .value()
                .split_whitespace()
                .nth(1)
                .unwrap_or("")
                .to_string();
            *h = Header::CSeq(format!("{number} {method}").into());
            return;
        }
    }
}

/// The `tag` parameter of a From/To header value.
pub fn tag_of(value: &str) -> Option<&str> {
    let params = match value.rfind('>') {
        Some(end) => &value[end + 1..],
        None => value,
    };
    params.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim().eq_ignore_ascii_case("tag").then(|| v.trim())
    })
}

/// RFC 3261 §18.2.1 and RFC 3581 §4: records in the top Via where the request really came
/// from (`received` when the source address differs from sent-by; `rport` filled in when the
/// client asked for it). Returns false when the request has no readable Via.
pub fn stamp_via(req: &mut Request, source: SocketAddr) -> bool {
    let Some(Header::Via(via)) = req.headers.iter_mut().find(|h| matches!(h, Header::Via(_)))
    else {
        return false;
    };
    let value = via.value().to_string();
    let (first, rest) = split_first_value(&value);
    let Some(stamped) = stamp_one(first, source) else {
        return false;
    };
    via.replace(match rest {
        Some(rest) => format!("{stamped},{rest}"),
        None => stamped,
    });
    true
}

fn stamp_one(via: &str, source: SocketAddr) -> Option<String> {
    let via = via.trim();
    let (head, params) = match via.find(';') {
        Some(i) => (&via[..i], &via[i..]),
        None => (via, ""),
    };
    let sent_by = head.split_whitespace().nth(1)?;
    let host = sent_by_host(sent_by);
    let mut out = String::with_capacity(via.len() + 40);
    out.push_str(head);
    let mut saw_rport = false;
    for p in params.split(';').filter(|p| !p.is_empty()) {
        let name = p.split('=').next().unwrap_or("").trim();
        if name.eq_ignore_ascii_case("received") {
            continue; // replaced below
        }
        if name.eq_ignore_ascii_case("rport") {
            saw_rport = true;
            out.push_str(";rport=");
            out.push_str(itoa::Buffer::new().format(source.port()));
            continue;
        }
        out.push(';');
        out.push_str(p);
    }
    let host_ip: Option<IpAddr> = host.parse().ok();
    if saw_rport || host_ip != Some(source.ip()) {
        out.push_str(";received=");
        crate::proxy::push_ip(&mut out, source.ip());
    }
    Some(out)
}

/// The host part of a Via sent-by (`host`, `host:port`, `[v6]`, `[v6]:port`).
fn sent_by_host(sent_by: &str) -> &str {
    if let Some(rest) = sent_by.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    sent_by.split(':').next().unwrap_or(sent_by)
}

/// Splits a header value holding several comma-separated entries into the first and the
/// The leading number of the first header `pick` takes (`3600;reason=x` → 3600; at most
/// ten digits, so it never overflows).
pub fn header_number(headers: &Headers, pick: impl Fn(&Header) -> Option<&str>) -> Option<u64> {
    let v = headers.iter().find_map(pick)?.trim();
    let end = v.bytes().take(10).take_while(u8::is_ascii_digit).count();
    v[..end].parse().ok()
}

/// The seconds of a response's Retry-After (RFC 3261 §20.33), if it says.
pub fn retry_after(headers: &Headers) -> Option<u64> {
    header_number(headers, |h| match h {
        Header::RetryAfter(v) => Some(v.value()),
        _ => None,
    })
}

/// rest, respecting quoted strings and `<…>`.
pub fn split_first_value(value: &str) -> (&str, Option<&str>) {
    // Most values hold no quoted string and no <…> before their first comma, which then
    // ends the first entry.
    match memchr::memchr3(b',', b'"', b'<', value.as_bytes()) {
        None => return (value, None),
        Some(i) if value.as_bytes()[i] == b',' => return (&value[..i], Some(&value[i + 1..])),
        Some(_) => {}
    }
    let mut in_quotes = false;
    let mut in_angle = false;
    let mut escaped = false;
    for (i, c) in value.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            '<' if !in_quotes => in_angle = true,
            '>' if !in_quotes => in_angle = false,
            ',' if !in_quotes && !in_angle => return (&value[..i], Some(&value[i + 1..])),
            _ => {}
        }
    }
    (value, None)
}

/// Splits a comma-separated header value into its entries (see [`split_first_value`]).
pub fn split_values(value: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = Some(value);
    while let Some(v) = rest {
        let (first, r) = split_first_value(v);
        if !first.trim().is_empty() {
            out.push(first.trim());
        }
        rest = r;
    }
    out
}

/// Where a response to a request received from `source` goes (RFC 3261 §18.2.2, RFC 3581):
/// stream transports answer over the same connection; datagrams go to the source address,
/// at the sent-by port unless the client asked for `rport`.
pub fn response_target(req: &Request, source: Peer) -> Peer {
    if source.transport != Transport::Udp {
        return source;
    }
    let Ok(via) = req.via_header() else {
        return source;
    };
    let first = split_first_value(via.value()).0;
    let has_rport = first
        .split(';')
        .skip(1)
        .any(|p| p.trim().to_ascii_lowercase().starts_with("rport"));
    if has_rport {
        return source;
    }
    let sent_by = first.split(';').next().unwrap_or("");
    let port = sent_by
        .split_whitespace()
        .nth(1)
        .and_then(|sb| {
            let after_host = match sb.strip_prefix('[') {
                Some(r) => r.split_once(']').map(|(_, p)| p).unwrap_or(""),
                None => sb
                    .split_once(':')
                    .map(|(_, p)| p)
                    .map(|p| &sb[sb.len() - p.len() - 1..])
                    .unwrap_or(""),
            };
            after_host
                .strip_prefix(':')
                .and_then(|p| p.parse::<u16>().ok())
        })
        .unwrap_or(5060);
    Peer {
        addr: SocketAddr::new(source.addr.ip(), port),
        ..source
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::SipMessage;
    use crate::parse::{parse, Limits};

    fn req(text: &str) -> Request {
        match parse(text.as_bytes(), &Limits::default()).unwrap() {
            SipMessage::Request(r) => r,
            _ => panic!("not a request"),
        }
    }

    #[test]
    fn header_texts_carry_no_control_characters_and_are_bounded() {
        let w = warning("bad \"x\"\r\nVia: evil\u{1b}[2J\u{0}\u{9b}\\");
        assert_eq!(
            w.to_string(),
            "Warning: 399 switchboard \"bad 'x'??Via: evil?[2J??'\""
        );
        let long = header_text(&"é".repeat(500));
        assert_eq!(long.chars().count(), MAX_HEADER_TEXT + 1);
        assert!(long.ends_with('…'));
    }

    const OPTIONS: &str = "OPTIONS sip:switchboard.local SIP/2.0\r\n\
        Via: SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK-1;rport\r\n\
        Max-Forwards: 70\r\n\
        From: <sip:alice@switchboard.local>;tag=a1\r\n\
        To: <sip:switchboard.local>\r\n\
        Call-ID: o-1\r\n\
        CSeq: 7 OPTIONS\r\n\
        Content-Length: 0\r\n\r\n";

    const CAPS: Capabilities<'static> = Capabilities {
        methods: &[Method::Register, Method::Options],
        extensions: &[],
        proxy: false,
    };

    #[test]
    fn a_proxy_checks_proxy_require_not_require() {
        let caps = Capabilities {
            proxy: true,
            ..CAPS
        };
        let text = OPTIONS.replace("Max-Forwards: 70", "Max-Forwards: 70\r\nRequire: 100rel");
        check_request(&req(&text), &caps).unwrap();
        let text = OPTIONS.replace("Max-Forwards: 70", "Max-Forwards: 70\r\nProxy-Require: foo");
        assert_eq!(check_request(&req(&text), &caps).unwrap_err().code, 420);
        check_request(&req(&text), &CAPS).unwrap();
    }

    #[test]
    fn accepts_a_good_request() {
        check_request(&req(OPTIONS), &CAPS).unwrap();
    }

    #[test]
    fn refusals() {
        let cases: &[(&str, &str, u16)] = &[
            ("Call-ID: o-1\r\n", "", 400),
            ("CSeq: 7 OPTIONS", "CSeq: 7 REGISTER", 400),
            ("Max-Forwards: 70", "Max-Forwards: x", 400),
            (
                "OPTIONS sip:switchboard.local",
                "SUBSCRIBE sip:switchboard.local",
                405,
            ),
            (
                "Max-Forwards: 70",
                "Max-Forwards: 70\r\nRequire: foo, 100rel",
                420,
            ),
        ];
        for (from, to, code) in cases {
            let mut text = OPTIONS.replace(from, to);
            if *code == 405 {
                text = text.replace("CSeq: 7 OPTIONS", "CSeq: 7 SUBSCRIBE");
            }
            let err = check_request(&req(&text), &CAPS).unwrap_err();
            assert_eq!(err.code, *code, "{from} -> {to}: {err:?}");
        }
    }

    #[test]
    fn max_forwards_zero() {
        let r = req(&OPTIONS.replace("Max-Forwards: 70", "Max-Forwards: 0"));
        check_request(&r, &CAPS).unwrap();
        let text = OPTIONS
            .replace("Max-Forwards: 70", "Max-Forwards: 0")
            .replace("OPTIONS sip", "REGISTER sip")
            .replace("7 OPTIONS", "7 REGISTER");
        assert_eq!(check_request(&req(&text), &CAPS).unwrap_err().code, 483);
    }

    #[test]
    fn refusal_headers() {
        let text = OPTIONS.replace("Max-Forwards: 70", "Max-Forwards: 70\r\nRequire: foo");
        let r = req(&text);
        let resp = check_request(&r, &CAPS).unwrap_err().response(&r, "sb");
        let s = resp.to_string();
        assert!(s.starts_with("SIP/2.0 420"), "{s}");
        assert!(s.contains("Unsupported: foo"), "{s}");
    }

    #[test]
    fn response_copies_and_tags() {
        let r = req(OPTIONS);
        let resp = response(&r, 200, Some("xyz"), "sb");
        let s = resp.to_string();
        assert!(s.contains("To: <sip:switchboard.local>;tag=xyz"), "{s}");
        assert!(s.contains("CSeq: 7 OPTIONS"));
        assert!(s.contains("Call-ID: o-1"));
    }

    #[test]
    fn via_is_stamped() {
        let mut r = req(OPTIONS);
        assert!(stamp_via(&mut r, "192.0.2.9:40000".parse().unwrap()));
        let v = r.via_header().unwrap().value().to_string();
        assert_eq!(
            v,
            "SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK-1;rport=40000;received=192.0.2.9"
        );
        let mut r = req(&OPTIONS.replace(";rport", ", SIP/2.0/UDP 10.0.0.2"));
        assert!(stamp_via(&mut r, "10.0.0.1:5070".parse().unwrap()));
        assert_eq!(
            r.via_header().unwrap().value(),
            "SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK-1, SIP/2.0/UDP 10.0.0.2"
        );
    }

    #[test]
    fn response_goes_to_sent_by_port_without_rport() {
        let r = req(&OPTIONS.replace(";rport", ""));
        let p = response_target(&r, Peer::udp("10.0.0.1:40000".parse().unwrap()));
        assert_eq!(p.addr, "10.0.0.1:5070".parse().unwrap());
        let r = req(OPTIONS);
        let p = response_target(&r, Peer::udp("10.0.0.1:40000".parse().unwrap()));
        assert_eq!(p.addr, "10.0.0.1:40000".parse().unwrap());
        let r = req(&OPTIONS.replace(
            "10.0.0.1:5070;branch=z9hG4bK-1;rport",
            "[::1];branch=z9hG4bK-1",
        ));
        let p = response_target(&r, Peer::udp("[::1]:40000".parse().unwrap()));
        assert_eq!(p.addr, "[::1]:5060".parse().unwrap());
    }

    #[test]
    fn reason_phrases() {
        let r = req(OPTIONS);
        let mut resp = response(&r, 480, Some("t"), "sb");
        set_reason_phrase(&mut resp, "Do Not Disturb On\r\n");
        assert!(resp
            .to_string()
            .starts_with("SIP/2.0 480 Do Not Disturb On\r\n"));
        assert_eq!(resp.status_code.code(), 480);
        set_reason_phrase(&mut resp, "  ");
        assert!(resp
            .to_string()
            .starts_with("SIP/2.0 480 Do Not Disturb On"));
        let mut parsed = match parse(
            b"SIP/2.0 480 In a meeting\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
            &Limits::default(),
        )
        .unwrap()
        {
            SipMessage::Response(r) => r,
            _ => panic!(),
        };
        keep_reason_phrase(&mut parsed);
        assert!(parsed
            .to_string()
            .starts_with("SIP/2.0 480 In a meeting\r\n"));
    }

    #[test]
    fn tags() {
        assert_eq!(tag_of("<sip:a@b;tag=no>;tag=yes"), Some("yes"));
        assert_eq!(tag_of("<sip:a@b;tag=no>"), None);
        assert_eq!(tag_of("sip:a@b;tag=t1"), Some("t1"));
    }

    #[test]
    fn splits_values() {
        assert_eq!(
            split_values("\"a, b\" <sip:x@y>;q=1, <sip:z@w,>"),
            vec!["\"a, b\" <sip:x@y>;q=1", "<sip:z@w,>"]
        );
    }

    #[test]
    fn retry_after_reads_the_leading_seconds() {
        let with = |v: &str| {
            let mut h = Headers::default();
            h.push(Header::RetryAfter(v.into()));
            retry_after(&h)
        };
        assert_eq!(with("120"), Some(120));
        assert_eq!(with(" 18000;duration=3600"), Some(18000));
        assert_eq!(with("5 (I'm in a meeting)"), Some(5));
        assert_eq!(with("soon"), None);
        assert_eq!(with(""), None);
        // Ten digits at most: never an overflow.
        assert_eq!(with("123456789012345678901234567890"), Some(1234567890));
        assert_eq!(retry_after(&Headers::default()), None);
    }
}
