//! Load shedding before the parser: while the core is behind, a datagram that would start
//! new work is answered `503` from its raw header lines, and the ACK of such an answer is
//! dropped unread — so a flood costs a scan of each datagram's header lines, not the
//! parser's and the core's work twice per refused call.
//!
//! [`triage`] only decides what is certain from the raw bytes; everything else passes on to
//! the parser and [`crate::Transports::admit`] as before (a response, a request in a
//! dialog, a CANCEL, an OPTIONS to the server itself, anything folded, repeated, missing or
//! with anything but printable ASCII among its header lines). The answer copies the
//! request's Via, From, To (with a tag of ours), Call-ID and CSeq values under their full
//! names, so it is at most about twice the request (compact `v:` lines written as `Via: `)
//! plus a few lines, and goes to the address the request came from.

/// The tag of every To this shedding adds; an ACK whose To has it acknowledges one of our
/// 503s.
pub const TAG_PREFIX: &str = "shed";

/// What to do with a datagram while the core is behind.
#[derive(Debug, PartialEq, Eq)]
pub enum Triage {
    /// Parse it and let the core's admission decide, as always.
    Pass,
    /// The ACK of one of our 503s: nothing to do.
    Drop,
    /// A new request: send this 503 to where it came from.
    Refuse(Vec<u8>),
}

/// What `data` is, for a shedding server: `tag` goes into the 503's To (it must start with
/// [`TAG_PREFIX`]), `server` into its Server header, `retry_after` into Retry-After.
pub fn triage(data: &[u8], tag: &str, server: &str, retry_after: &str) -> Triage {
    debug_assert!(tag.starts_with(TAG_PREFIX));
    let Some(head_end) = memchr::memmem::find(data, b"\r\n\r\n") else {
        return Triage::Pass;
    };
    let mut lines = data[..head_end].split(|&b| b == b'\n');
    let Some(request_line) = lines.next() else {
        return Triage::Pass;
    };
    let request_line = strip_cr(request_line);
    let mut parts = request_line.split(|&b| b == b' ');
    let (Some(method), Some(uri), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Triage::Pass;
    };
    if version != b"SIP/2.0" || method.is_empty() || !method.iter().all(u8::is_ascii_uppercase) {
        return Triage::Pass; // a response, or something the parser is to refuse
    }
    let mut via: Vec<&[u8]> = Vec::new();
    let (mut from, mut to, mut call_id, mut cseq) = (None, None, None, None);
    let mut has_route = false;
    for raw in lines {
        let line = strip_cr(raw);
        // A folded line, an empty one, a control character or anything beyond printable
        // ASCII (which the answer would echo): the parser's to judge.
        if line.first().is_none_or(|b| *b == b' ' || *b == b'\t')
            || !line
                .iter()
                .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
        {
            return Triage::Pass;
        }
        let Some(colon) = memchr::memchr(b':', line) else {
            return Triage::Pass;
        };
        let name = line[..colon].trim_ascii();
        let value = line[colon + 1..].trim_ascii();
        let slot = match name.to_ascii_lowercase().as_slice() {
            b"via" | b"v" => {
                via.push(value);
                continue;
            }
            b"route" => {
                has_route = true;
                continue;
            }
            b"from" | b"f" => &mut from,
            b"to" | b"t" => &mut to,
            b"call-id" | b"i" => &mut call_id,
            b"cseq" => &mut cseq,
            _ => continue,
        };
        if slot.replace(value).is_some() {
            return Triage::Pass; // twice: the parser's to refuse
        }
    }
    let (Some(from), Some(to), Some(call_id), Some(cseq)) = (from, to, call_id, cseq) else {
        return Triage::Pass;
    };
    if via.is_empty()
        || via
            .iter()
            .chain([&from, &to, &call_id, &cseq])
            .any(|v| v.is_empty())
    {
        return Triage::Pass;
    }
    // The CSeq must name the request's method.
    let mut c = cseq.split(|&b| b == b' ').filter(|p| !p.is_empty());
    match (c.next(), c.next(), c.next()) {
        (Some(n), Some(m), None) if n.iter().all(u8::is_ascii_digit) && m == method => {}
        _ => return Triage::Pass,
    }
    let tagged = to_tag(to);
    match method {
        // The ACK of one of our 503s (its To carries our tag, and it is no ACK of a 2xx
        // along a Route of ours).
        b"ACK" => {
            if !has_route && tagged.is_some_and(|t| t.starts_with(TAG_PREFIX.as_bytes())) {
                Triage::Drop
            } else {
                Triage::Pass
            }
        }
        // A CANCEL ends work; an OPTIONS to the server itself is answered by the core at
        // about the cost of a 503 (monitors and keep-alives see whether it is up).
        b"CANCEL" => Triage::Pass,
        b"OPTIONS" if !uri.contains(&b'@') => Triage::Pass,
        // A request in a dialog (or that claims to be) is the core's.
        _ if tagged.is_some() => Triage::Pass,
        _ => Triage::Refuse(answer(
            &via,
            from,
            to,
            call_id,
            cseq,
            tag,
            server,
            retry_after,
        )),
    }
}

/// The 503, from the request's own lines.
#[allow(clippy::too_many_arguments)]
fn answer(
    via: &[&[u8]],
    from: &[u8],
    to: &[u8],
    call_id: &[u8],
    cseq: &[u8],
    tag: &str,
    server: &str,
    retry_after: &str,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + via.iter().map(|v| v.len() + 7).sum::<usize>());
    out.extend_from_slice(b"SIP/2.0 503 Service Unavailable\r\n");
    for v in via {
        out.extend_from_slice(b"Via: ");
        out.extend_from_slice(v);
        out.extend_from_slice(b"\r\n");
    }
    for (name, value) in [(&b"From: "[..], from), (b"To: ", to)] {
        out.extend_from_slice(name);
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    out.truncate(out.len() - 2);
    out.extend_from_slice(b";tag=");
    out.extend_from_slice(tag.as_bytes());
    out.extend_from_slice(b"\r\nCall-ID: ");
    out.extend_from_slice(call_id);
    out.extend_from_slice(b"\r\nCSeq: ");
    out.extend_from_slice(cseq);
    out.extend_from_slice(b"\r\nServer: ");
    out.extend_from_slice(server.as_bytes());
    out.extend_from_slice(b"\r\nRetry-After: ");
    out.extend_from_slice(retry_after.as_bytes());
    out.extend_from_slice(b"\r\nContent-Length: 0\r\n\r\n");
    out
}

/// The tag of a To value, if it has one: the `tag` parameter after the address (after the
/// `>` of a name-addr; in an addr-spec, parameters are the header's).
fn to_tag(to: &[u8]) -> Option<&[u8]> {
    let params = match memchr::memrchr(b'>', to) {
        Some(gt) => &to[gt + 1..],
        None => to,
    };
    params.split(|&b| b == b';').skip(1).find_map(|p| {
        let (k, v) = match memchr::memchr(b'=', p) {
            Some(eq) => (&p[..eq], &p[eq + 1..]),
            None => (p, &b""[..]),
        };
        k.trim_ascii()
            .eq_ignore_ascii_case(b"tag")
            .then(|| v.trim_ascii())
    })
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_sip::msg::{SipMessage, StatusCode};
    use switchboard_sip::parse::{parse, Limits};

    const INVITE: &str = "INVITE sip:bob@example.com SIP/2.0\r\n\
        Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-1;rport\r\n\
        v: SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK-0\r\n\
        Max-Forwards: 70\r\n\
        f: \"Alice\" <sip:alice@example.com>;tag=a1\r\n\
        To: <sip:bob@example.com>\r\n\
        Call-ID: c1@192.0.2.1\r\n\
        CSeq: 7 INVITE\r\n\
        Contact: <sip:alice@192.0.2.1>\r\n\
        Content-Type: application/sdp\r\n\
        Content-Length: 4\r\n\r\nv=0\n";

    fn refused(text: &str) -> String {
        match triage(text.as_bytes(), "shed1f", "Switchboard/0.1", "5") {
            Triage::Refuse(b) => String::from_utf8(b).unwrap(),
            other => panic!("{other:?} for {text}"),
        }
    }

    #[test]
    fn a_new_request_is_answered_503_from_its_own_lines() {
        let text = refused(INVITE);
        assert_eq!(
            text,
            "SIP/2.0 503 Service Unavailable\r\n\
             Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-1;rport\r\n\
             Via: SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK-0\r\n\
             From: \"Alice\" <sip:alice@example.com>;tag=a1\r\n\
             To: <sip:bob@example.com>;tag=shed1f\r\n\
             Call-ID: c1@192.0.2.1\r\n\
             CSeq: 7 INVITE\r\n\
             Server: Switchboard/0.1\r\n\
             Retry-After: 5\r\n\
             Content-Length: 0\r\n\r\n"
        );
        // What a phone reads of it: a 503 of its transaction.
        let Ok(SipMessage::Response(r)) = parse(text.as_bytes(), &Limits::default()) else {
            panic!("{text}")
        };
        assert_eq!(r.status_code, StatusCode::ServiceUnavailable);
        // Every method that starts something: REGISTER, SUBSCRIBE, MESSAGE, an OPTIONS to
        // a user, an unknown one.
        for m in ["REGISTER", "SUBSCRIBE", "MESSAGE", "OPTIONS", "FOO"] {
            let t = INVITE.replace("INVITE", m);
            assert!(refused(&t).contains(&format!("CSeq: 7 {m}\r\n")), "{m}");
        }
    }

    #[test]
    fn what_is_not_certain_passes_to_the_parser() {
        let pass = |t: &str| triage(t.as_bytes(), "shed1", "s", "5");
        let cases = [
            // Dialogs, CANCEL, the server itself, responses.
            INVITE.replace("To: <sip:bob@example.com>", "To: <sip:bob@example.com>;tag=x"),
            INVITE.replace("To: <sip:bob@example.com>", "t: sip:bob@example.com ; TAG = x"),
            INVITE.replace("INVITE", "CANCEL"),
            INVITE
                .replace("INVITE", "OPTIONS")
                .replace("sip:bob@example.com SIP", "sip:example.com SIP"),
            "SIP/2.0 200 OK\r\nVia: x\r\nFrom: a\r\nTo: b\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\n"
                .into(),
            // Missing, repeated, empty, folded, controls, a CSeq of another method, no end
            // of the header section, a lower-case method, a bad version.
            INVITE.replace("Call-ID: c1@192.0.2.1\r\n", ""),
            INVITE.replace("Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-1;rport\r\nv: SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK-0\r\n", ""),
            INVITE.replace("CSeq: 7 INVITE\r\n", "CSeq: 7 INVITE\r\nCSeq: 8 INVITE\r\n"),
            INVITE.replace("Call-ID: c1@192.0.2.1", "Call-ID:"),
            INVITE.replace("Max-Forwards: 70\r\n", "Max-Forwards: 70\r\n  folded\r\n"),
            INVITE.replace("c1@192.0.2.1", "c1\u{1b}[2J"),
            INVITE.replace("\"Alice\"", "\"Jos\u{e9}\u{9b}\""),
            INVITE.replace("CSeq: 7 INVITE", "CSeq: 7 BYE"),
            INVITE.replace("CSeq: 7 INVITE", "CSeq: seven INVITE"),
            INVITE.replace("\r\n\r\nv=0\n", "\r\n"),
            INVITE.replace("INVITE sip", "invite sip"),
            INVITE.replace("SIP/2.0\r\nVia", "SIP/3.0\r\nVia"),
            INVITE.replace("INVITE sip:bob@example.com SIP/2.0", "INVITE  sip:bob@example.com SIP/2.0"),
            String::new(),
            "\r\n\r\n".into(),
        ];
        for c in cases {
            assert_eq!(pass(&c), Triage::Pass, "{c:?}");
        }
    }

    #[test]
    fn only_the_ack_of_our_503_is_dropped() {
        let ack = |to: &str, route: &str| {
            INVITE
                .replace("INVITE", "ACK")
                .replace("To: <sip:bob@example.com>", to)
                .replace("Max-Forwards: 70\r\n", route)
        };
        let t = |text: String| triage(text.as_bytes(), "shed2", "s", "5");
        assert_eq!(
            t(ack("To: <sip:bob@example.com>;tag=shed1f", "")),
            Triage::Drop
        );
        // The ACK of another final answer (the core's transaction wants it), of a 2xx
        // along our Route, or with no tag: the core's.
        assert_eq!(
            t(ack("To: <sip:bob@example.com>;tag=9a8b", "")),
            Triage::Pass
        );
        assert_eq!(
            t(ack(
                "To: <sip:bob@example.com>;tag=shed1f",
                "Route: <sip:proxy;lr>\r\n"
            )),
            Triage::Pass
        );
        assert_eq!(t(ack("To: <sip:bob@example.com>", "")), Triage::Pass);
        // A tag-like text inside the address is no tag.
        assert_eq!(
            t(ack("To: <sip:bob@example.com;tag=shed1>", "")),
            Triage::Pass
        );
    }

    #[test]
    fn the_answer_is_no_larger_than_the_request_and_a_few_lines() {
        let many_via: String = (0..50)
            .map(|i| format!("Via: SIP/2.0/UDP 10.0.0.{i}:5060;branch=z9hG4bK-{i}\r\n"))
            .collect();
        let text = INVITE.replacen("Max-Forwards", &format!("{many_via}Max-Forwards"), 1);
        let answer = refused(&text);
        assert!(
            answer.len() <= text.len() + 100,
            "{} > {}",
            answer.len(),
            text.len()
        );
        assert_eq!(answer.matches("\r\nVia: ").count(), 52);
    }
}
