//! Messages to bytes without the formatting machinery: one buffer, headers copied in.
//!
//! The parsed message model keeps every header's value as text; writing a message is then
//! only copying names and values. (The model's own `Display` builds a string per header and
//! joins them; this does the same in one allocation, and the bytes are identical.)
//!
//! One addition: a message without a `Content-Length` gets one (the body's length) after
//! its headers. It is mandatory on stream transports (RFC 3261 §18.3) and allowed on UDP, and
//! a request that came over UDP without one (an ACK, say) may be forwarded over TCP, where
//! the peer could not frame it.

use crate::msg::headers::Header;
use crate::msg::{Method, Request, Response, Uri, Version};
use std::net::IpAddr;

/// A header's name as written on the wire, and its value.
pub fn header_parts(h: &Header) -> (&str, &str) {
    match h {
        Header::Accept(h) => ("Accept", h.value()),
        Header::AcceptEncoding(h) => ("Accept-Encoding", h.value()),
        Header::AcceptLanguage(h) => ("Accept-Language", h.value()),
        Header::AlertInfo(h) => ("Alert-Info", h.value()),
        Header::Allow(h) => ("Allow", h.value()),
        Header::AuthenticationInfo(h) => ("Authentication-Info", h.value()),
        Header::Authorization(h) => ("Authorization", h.value()),
        Header::CSeq(h) => ("CSeq", h.value()),
        Header::CallId(h) => ("Call-ID", h.value()),
        Header::CallInfo(h) => ("Call-Info", h.value()),
        Header::Contact(h) => ("Contact", h.value()),
        Header::ContentDisposition(h) => ("Content-Disposition", h.value()),
        Header::ContentEncoding(h) => ("Content-Encoding", h.value()),
        Header::ContentLanguage(h) => ("Content-Language", h.value()),
        Header::ContentLength(h) => ("Content-Length", h.value()),
        Header::ContentType(h) => ("Content-Type", h.value()),
        Header::Date(h) => ("Date", h.value()),
        Header::ErrorInfo(h) => ("Error-Info", h.value()),
        Header::Event(h) => ("Event", h.value()),
        Header::Expires(h) => ("Expires", h.value()),
        Header::From(h) => ("From", h.value()),
        Header::InReplyTo(h) => ("In-Reply-To", h.value()),
        Header::MaxForwards(h) => ("Max-Forwards", h.value()),
        Header::MimeVersion(h) => ("Mime-Version", h.value()),
        Header::MinExpires(h) => ("Min-Expires", h.value()),
        Header::Organization(h) => ("Organization", h.value()),
        Header::Priority(h) => ("Priority", h.value()),
        Header::ProxyAuthenticate(h) => ("Proxy-Authenticate", h.value()),
        Header::ProxyAuthorization(h) => ("Proxy-Authorization", h.value()),
        Header::ProxyRequire(h) => ("Proxy-Require", h.value()),
        Header::RecordRoute(h) => ("Record-Route", h.value()),
        Header::ReplyTo(h) => ("Reply-To", h.value()),
        Header::Require(h) => ("Require", h.value()),
        Header::RetryAfter(h) => ("Retry-After", h.value()),
        Header::Route(h) => ("Route", h.value()),
        Header::ServiceRoute(h) => ("Service-Route", h.value()),
        Header::Server(h) => ("Server", h.value()),
        Header::Subject(h) => ("Subject", h.value()),
        Header::SubscriptionState(h) => ("Subscription-State", h.value()),
        Header::Supported(h) => ("Supported", h.value()),
        Header::Timestamp(h) => ("Timestamp", h.value()),
        Header::To(h) => ("To", h.value()),
        Header::Unsupported(h) => ("Unsupported", h.value()),
        Header::UserAgent(h) => ("User-Agent", h.value()),
        Header::Via(h) => ("Via", h.value()),
        Header::Warning(h) => ("Warning", h.value()),
        Header::WwwAuthenticate(h) => ("WWW-Authenticate", h.value()),
        Header::Reason(h) => ("Reason", h.value()),
        Header::ReferTo(h) => ("Refer-To", h.value()),
        Header::ReferredBy(h) => ("Referred-By", h.value()),
        Header::SessionExpires(h) => ("Session-Expires", h.value()),
        Header::MinSE(h) => ("Min-SE", h.value()),
        Header::PAssertedIdentity(h) => ("P-Asserted-Identity", h.value()),
        Header::PPreferredIdentity(h) => ("P-Preferred-Identity", h.value()),
        Header::Replaces(h) => ("Replaces", h.value()),
        Header::RSeq(h) => ("RSeq", h.value()),
        Header::RAck(h) => ("RAck", h.value()),
        Header::Privacy(h) => ("Privacy", h.value()),
        Header::Path(h) => ("Path", h.value()),
        Header::Identity(h) => ("Identity", h.value()),
        Header::UserToUser(h) => ("User-to-User", h.value()),
        Header::SessionId(h) => ("Session-ID", h.value()),
        Header::HistoryInfo(h) => ("History-Info", h.value()),
        Header::Diversion(h) => ("Diversion", h.value()),
        Header::Other(name, value) => (name.as_str(), value.as_str()),
    }
}

/// Writes the header lines, and a `Content-Length` of `body` when there is none.
fn write_headers(out: &mut Vec<u8>, headers: &crate::msg::Headers, body: usize) {
    let mut has_length = false;
    for h in headers.iter() {
        has_length |= matches!(h, Header::ContentLength(_));
        let (name, value) = header_parts(h);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !has_length {
        out.extend_from_slice(b"Content-Length: ");
        out.extend_from_slice(itoa::Buffer::new().format(body).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

fn size_hint(headers: &crate::msg::Headers, body: usize) -> usize {
    84 + body
        + headers
            .iter()
            .map(|h| {
                let (n, v) = header_parts(h);
                n.len() + v.len() + 4
            })
            .sum::<usize>()
}

/// A method's name, as its `Display` writes it.
pub fn method_name(method: &Method) -> &'static str {
    match method {
        Method::Ack => "ACK",
        Method::Bye => "BYE",
        Method::Cancel => "CANCEL",
        Method::Info => "INFO",
        Method::Invite => "INVITE",
        Method::Message => "MESSAGE",
        Method::Notify => "NOTIFY",
        Method::Options => "OPTIONS",
        Method::PRack => "PRACK",
        Method::Publish => "PUBLISH",
        Method::Refer => "REFER",
        Method::Register => "REGISTER",
        Method::Subscribe => "SUBSCRIBE",
        Method::Update => "UPDATE",
    }
}

/// Characters a URI's user part is written with as they are (others are percent-encoded).
const USER_AS_IS: &[u8] = b"-_.!~*'()&=+$,;?/";

/// Appends a URI as its `Display` writes it, part by part, without the formatting
/// machinery for the usual parts (scheme, a user without characters to encode, a domain
/// or IPv4 host, a port, `lr` and parameters kept as written). This runs for every
/// request a proxy forwards.
pub fn push_uri(out: &mut Vec<u8>, uri: &Uri) {
    use crate::msg::uri::{Host, Param, Scheme};
    use std::io::Write;
    match &uri.scheme {
        Some(Scheme::Sip) => out.extend_from_slice(b"sip:"),
        Some(Scheme::Sips) => out.extend_from_slice(b"sips:"),
        Some(other) => {
            let _ = write!(out, "{other}:");
        }
        None => {}
    }
    if let Some(auth) = &uri.auth {
        if auth.password.is_none()
            && auth
                .user
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || USER_AS_IS.contains(&b))
        {
            out.extend_from_slice(auth.user.as_bytes());
            out.push(b'@');
        } else {
            let _ = write!(out, "{auth}@");
        }
    }
    let hp = &uri.host_with_port;
    match &hp.host {
        Host::Domain(d) => out.extend_from_slice(d.0.as_bytes()),
        Host::IpAddr(IpAddr::V4(ip)) => {
            let mut b = itoa::Buffer::new();
            for (i, o) in ip.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                out.extend_from_slice(b.format(o).as_bytes());
            }
        }
        Host::IpAddr(ip) => {
            let _ = write!(out, "[{ip}]");
        }
    }
    if let Some(port) = &hp.port {
        out.push(b':');
        out.extend_from_slice(itoa::Buffer::new().format(port.0).as_bytes());
    }
    for param in &uri.params {
        match param {
            Param::Lr => out.extend_from_slice(b";lr"),
            Param::Other(name, value) => {
                out.push(b';');
                out.extend_from_slice(name.0.as_bytes());
                if let Some(v) = value {
                    out.push(b'=');
                    out.extend_from_slice(v.0.as_bytes());
                }
            }
            other => {
                let _ = write!(out, "{other}");
            }
        }
    }
    if !uri.headers.is_empty() {
        out.push(b'?');
        for (i, (k, v)) in uri.headers.iter().enumerate() {
            if i > 0 {
                out.push(b'&');
            }
            out.extend_from_slice(k.as_bytes());
            out.push(b'=');
            out.extend_from_slice(v.as_bytes());
        }
    }
}

/// A URI as its `Display` writes it (see [`push_uri`]).
pub fn uri_text(uri: &Uri) -> String {
    let mut out = Vec::with_capacity(64);
    push_uri(&mut out, uri);
    // Only text was written.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// The bytes of a request, as its `to_bytes` gives them (with a `Content-Length`).
pub fn request_bytes(req: &Request) -> Vec<u8> {
    let mut out = Vec::with_capacity(size_hint(&req.headers, req.body.len()));
    // Written straight into the buffer, without a string per part.
    out.extend_from_slice(method_name(&req.method).as_bytes());
    out.push(b' ');
    push_uri(&mut out, &req.uri);
    out.push(b' ');
    push_version(&mut out, &req.version);
    out.extend_from_slice(b"\r\n");
    write_headers(&mut out, &req.headers, req.body.len());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&req.body);
    out
}

fn push_version(out: &mut Vec<u8>, version: &Version) {
    match version {
        Version::V2 => out.extend_from_slice(b"SIP/2.0"),
        other => {
            let _ = std::io::Write::write_fmt(out, format_args!("{other}"));
        }
    }
}

/// The bytes of a response, as its `to_bytes` gives them (with a `Content-Length`).
pub fn response_bytes(resp: &Response) -> Vec<u8> {
    let mut out = Vec::with_capacity(size_hint(&resp.headers, resp.body.len()));
    push_version(&mut out, &resp.version);
    out.push(b' ');
    let code = resp.status_code.code();
    out.extend_from_slice(itoa::Buffer::new().format(code).as_bytes());
    out.push(b' ');
    out.extend_from_slice(resp.status_code.text().as_bytes());
    out.extend_from_slice(b"\r\n");
    write_headers(&mut out, &resp.headers, resp.body.len());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&resp.body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::SipMessage;
    use crate::parse::{parse, Limits};

    #[test]
    fn the_same_bytes_as_the_model_writes() {
        let texts = [
            "INVITE sip:bob@[::1]:5070;transport=tcp SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nMax-Forwards: 70\r\n\
             From: \"A\" <sip:a@b>;tag=1\r\nTo: <sip:bob@b>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nX-Custom: y\r\n\
             Record-Route: <sip:p;lr>\r\nP-Asserted-Identity: <sip:1@b>\r\nContent-Type: application/sdp\r\nContent-Length: 4\r\n\r\nv=0\n",
            "SIP/2.0 486 Busy Here\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\n\
             Call-ID: x\r\nCSeq: 1 INVITE\r\nWarning: 399 h \"x\"\r\nContent-Length: 0\r\n\r\n",
        ];
        for t in texts {
            match parse(t.as_bytes(), &Limits::default()).unwrap() {
                SipMessage::Request(r) => assert_eq!(request_bytes(&r), r.to_bytes()),
                SipMessage::Response(r) => assert_eq!(response_bytes(&r), r.to_bytes()),
            }
        }
    }

    #[test]
    fn uris_are_written_as_their_display_writes_them() {
        use crate::msg::uri::{Auth, Param};
        for text in [
            "sip:bob@10.0.0.2:5070;transport=udp;lr;foo=Bar",
            "sip:10.0.0.2;lr",
            "sips:alice@example.com",
            "sip:bob@[::1]:5070;transport=tcp?Subject=Hi&Priority=urgent",
            "tel:+15551234567",
            "sip:a%20b@h;user=phone",
            "sip:b@h;maddr=10.0.0.1;ttl=5;method=INVITE",
        ] {
            for uri in [
                crate::msg::Uri::try_from(text).unwrap(),
                crate::parse::uri_as_written(text).unwrap(),
            ] {
                assert_eq!(uri_text(&uri), uri.to_string(), "{text}");
            }
        }
        let mut uri = crate::msg::Uri::try_from("sip:h").unwrap();
        uri.auth = Some(Auth {
            user: "a b".into(),
            password: Some("p:w".into()),
        });
        uri.params.push(Param::Rport(Some(5)));
        uri.scheme = None;
        assert_eq!(uri_text(&uri), uri.to_string());
    }

    fn bytes_of(text: &str) -> String {
        let bytes = match parse(text.as_bytes(), &Limits::default()).unwrap() {
            SipMessage::Request(r) => request_bytes(&r),
            SipMessage::Response(r) => response_bytes(&r),
        };
        String::from_utf8(bytes).unwrap()
    }

    fn content_lengths(text: &str) -> Vec<&str> {
        let head = &text[..text.find("\r\n\r\n").unwrap()];
        head.lines()
            .filter_map(|l| l.strip_prefix("Content-Length: "))
            .collect()
    }

    #[test]
    fn a_message_without_content_length_gets_one() {
        // An ACK as it came over UDP, without Content-Length, forwarded (over TCP, say).
        let ack = "ACK sip:bob@10.0.0.2:5060;transport=tcp SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
                   Max-Forwards: 70\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:bob@b>;tag=2\r\nCall-ID: x\r\n\
                   CSeq: 1 ACK\r\n\r\n";
        let req = match parse(ack.as_bytes(), &Limits::default()).unwrap() {
            SipMessage::Request(r) => r,
            _ => unreachable!(),
        };
        let forwarded = crate::proxy::forward(&req, None, "SIP/2.0/TCP p;branch=z9hG4bK2", &[]);
        let out = String::from_utf8(request_bytes(&forwarded)).unwrap();
        assert_eq!(content_lengths(&out), ["0"], "{out}");
        assert!(out.ends_with("Content-Length: 0\r\n\r\n"), "{out}");
        // With a body (a datagram's runs to its end): its length. A response too.
        let info = "INFO sip:bob@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nMax-Forwards: 70\r\n\
                    From: <sip:a@b>;tag=1\r\nTo: <sip:bob@b>;tag=2\r\nCall-ID: x\r\nCSeq: 2 INFO\r\n\
                    Content-Type: text/plain\r\n\r\nhello";
        let out = bytes_of(info);
        assert_eq!(content_lengths(&out), ["5"], "{out}");
        assert!(out.ends_with("\r\n\r\nhello"), "{out}");
        let ok =
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\n\
                  To: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 BYE\r\n\r\n";
        assert_eq!(content_lengths(&bytes_of(ok)), ["0"]);
        // One already there is kept as it is, and not doubled.
        let with =
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\n\
                    To: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 BYE\r\nContent-Length:  0\r\n\r\n";
        assert_eq!(content_lengths(&bytes_of(with)).len(), 1);
    }
}
