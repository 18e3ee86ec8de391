//! The parse path: datagram parsing, stream framing, the 400 builder, request checks.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_sip::message::{check_request, Capabilities};
use switchboard_sip::msg::{Method, SipMessage};
use switchboard_sip::parse::{frame, parse, Framing, Limits};

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    match parse(data, &limits) {
        Ok(SipMessage::Request(req)) => {
            let caps = Capabilities {
                methods: &[Method::Register, Method::Options],
                extensions: &[],
            };
            if let Err(r) = check_request(&req, &caps) {
                let _ = r.response(&req, "fuzz").to_bytes();
            }
            let _ = req.to_bytes();
        }
        Ok(SipMessage::Response(resp)) => {
            let _ = resp.to_bytes();
        }
        Err(e) => {
            let _ = e.response("fuzz", "OPTIONS");
        }
    }
    let mut rest = data;
    for _ in 0..64 {
        match frame(rest, &limits) {
            Framing::Message { len } | Framing::KeepAlive { len, .. } => {
                assert!(len > 0 && len <= rest.len());
                let _ = parse(&rest[..len], &limits);
                rest = &rest[len..];
            }
            Framing::Incomplete | Framing::Invalid(_) => break,
        }
    }
});
