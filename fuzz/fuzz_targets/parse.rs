//! The parse path: datagram parsing, stream framing, the 400 builder, request checks, and
//! the proxy's and the event packages' readings of what was parsed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_sip::message::{check_request, Capabilities};
use switchboard_sip::msg::{Method, SipMessage};
use switchboard_sip::parse::{frame, parse, Framing, Limits};
use switchboard_sip::{events, proxy};

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    match parse(data, &limits) {
        Ok(SipMessage::Request(req)) => {
            let caps = Capabilities {
                methods: &[Method::Register, Method::Options],
                extensions: &[],
                proxy: false,
            };
            if let Err(r) = check_request(&req, &caps) {
                let _ = r.response(&req, "fuzz").to_bytes();
            }
            let _ = req.to_bytes();
            // What a proxy reads and writes of a request.
            let _ = proxy::is_loop(&req, |sb| sb == "127.0.0.1:5060");
            let mut routed = req.clone();
            let _ = proxy::pop_own_routes(&mut routed, |u| proxy::uri_target(u).is_some());
            let _ = proxy::uri_target(&proxy::next_hop_uri(&routed));
            let via = proxy::via_value(
                switchboard_sip::transport::Transport::Udp,
                "127.0.0.1:5060".parse().unwrap(),
                &proxy::branch(proxy::loop_key(&req), 1),
            );
            let _ =
                proxy::forward(&routed, None, &via, &["<sip:127.0.0.1:5060;lr>".into()]).to_bytes();
            let _ = events::parse_pidf(&req.body);
            let _ = events::parse_message_summary(&req.body);
        }
        Ok(SipMessage::Response(mut resp)) => {
            let _ = resp.to_bytes();
            let _ = proxy::strip_top_via(&mut resp);
            let _ = proxy::response_destination(&resp);
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
