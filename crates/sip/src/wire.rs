//! Messages to bytes without the formatting machinery: one buffer, headers copied in.
//!
//! The parsed message model keeps every header's value as text; writing a message is then
//! only copying names and values. (The model's own `Display` builds a string per header and
//! joins them; this does the same in one allocation, and the bytes are identical.)

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

fn write_headers(out: &mut Vec<u8>, headers: &crate::msg::Headers) {
    for h in headers.iter() {
        let (name, value) = header_parts(h);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

fn size_hint(headers: &crate::msg::Headers, body: usize) -> usize {
    64 + body
        + headers
            .iter()
            .map(|h| {
                let (n, v) = header_parts(h);
                n.len() + v.len() + 4
            })
            .sum::<usize>()
}

/// The bytes of a request, as its `to_bytes` gives them.
pub fn request_bytes(req: &Request) -> Vec<u8> {
    let mut out = Vec::with_capacity(size_hint(&req.headers, req.body.len()));
    // Written straight into the buffer, without a string per part.
    let _ = std::io::Write::write_fmt(
        &mut out,
        format_args!("{} {} {}\r\n", req.method, req.uri, req.version),
    );
    write_headers(&mut out, &req.headers);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&req.body);
    out
}

/// The bytes of a response, as its `to_bytes` gives them.
pub fn response_bytes(resp: &Response) -> Vec<u8> {
    let mut out = Vec::with_capacity(size_hint(&resp.headers, resp.body.len()));
    let _ = std::io::Write::write_fmt(&mut out, format_args!("{}", resp.version));
    out.push(b' ');
    let code = resp.status_code.code();
    out.extend_from_slice(itoa::Buffer::new().format(code).as_bytes());
    out.push(b' ');
    out.extend_from_slice(resp.status_code.text().as_bytes());
    out.extend_from_slice(b"\r\n");
    write_headers(&mut out, &resp.headers);
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
}
