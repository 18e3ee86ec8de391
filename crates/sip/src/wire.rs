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
use crate::msg::{Request, Response};

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

/// The bytes of a request, as its `to_bytes` gives them (with a `Content-Length`).
pub fn request_bytes(req: &Request) -> Vec<u8> {
    let mut out = Vec::with_capacity(size_hint(&req.headers, req.body.len()));
    // Written straight into the buffer, without a string per part.
    let _ = std::io::Write::write_fmt(
        &mut out,
        format_args!("{} {} {}\r\n", req.method, req.uri, req.version),
    );
    write_headers(&mut out, &req.headers, req.body.len());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&req.body);
    out
}

/// The bytes of a response, as its `to_bytes` gives them (with a `Content-Length`).
pub fn response_bytes(resp: &Response) -> Vec<u8> {
    let mut out = Vec::with_capacity(size_hint(&resp.headers, resp.body.len()));
    let _ = std::io::Write::write_fmt(&mut out, format_args!("{}", resp.version));
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
