//! Transaction state machines driven by a virtual clock: nothing here sleeps.

use super::*;
use crate::message::response;
use crate::msg::SipMessage;
use crate::parse::{parse, Limits};
use std::net::SocketAddr;

fn udp() -> Peer {
    Peer::udp(SocketAddr::from(([127, 0, 0, 1], 5070)))
}

fn tcp() -> Peer {
    Peer::tcp(SocketAddr::from(([127, 0, 0, 1], 5070)), 7)
}

fn request(method: &str, branch: &str) -> Request {
    let text = format!(
        "{method} sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch={branch}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@a>;tag=f1\r\nTo: <sip:bob@b>\r\nCall-ID: c1\r\n\
         CSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
    );
    match parse(text.as_bytes(), &Limits::default()).unwrap() {
        SipMessage::Request(r) => r,
        _ => unreachable!(),
    }
}

fn resp(req: &Request, code: u16) -> Response {
    response(req, code, Some("t1"), "test")
}

fn transmits(l: &mut TransactionLayer) -> Vec<(Peer, String)> {
    let mut v = Vec::new();
    while let Some(a) = l.poll_action() {
        if let Action::Transmit { to, bytes } = a {
            v.push((to, String::from_utf8_lossy(&bytes).to_string()));
        }
    }
    v
}

fn actions(l: &mut TransactionLayer) -> Vec<Action> {
    std::iter::from_fn(|| l.poll_action()).collect()
}

/// Advances the virtual clock to `t`, firing timers on the way, and returns the
/// instants at which something was transmitted.
fn run_until(
    l: &mut TransactionLayer,
    t0: Instant,
    until: Duration,
) -> (Vec<Duration>, Vec<Action>) {
    let mut sent = Vec::new();
    let mut other = Vec::new();
    while let Some(next) = l.poll_timeout() {
        if next > t0 + until {
            break;
        }
        l.handle_timeout(next);
        for a in actions(l) {
            match a {
                Action::Transmit { .. } => sent.push(next - t0),
                a => other.push(a),
            }
        }
    }
    (sent, other)
}

fn ms(v: &[u64]) -> Vec<Duration> {
    v.iter().map(|&x| Duration::from_millis(x)).collect()
}

#[test]
fn client_invite_udp_retransmits_on_timer_a_until_b() {
    let mut l = TransactionLayer::new(TimerConfig::default());
    let t0 = Instant::now();
    let id = l
        .send_request(request("INVITE", "z9hG4bKa"), udp(), t0)
        .unwrap();
    assert_eq!(transmits(&mut l).len(), 1);
    let (sent, other) = run_until(&mut l, t0, Duration::from_secs(40));
    assert_eq!(sent, ms(&[500, 1500, 3500, 7500, 15500, 31500]));
    assert_eq!(
        other,
        vec![
            Action::Timeout {
                tx: id,
                timer: Timer::B
            },
            Action::Terminated(id)
        ]
    );
    assert!(l.is_empty());
}

#[test]
fn client_non_invite_e_is_capped_at_t2_and_f_times_out() {
    let mut l = TransactionLayer::new(TimerConfig::default());
    let t0 = Instant::now();
    let id = l
        .send_request(request("OPTIONS", "z9hG4bKb"), udp(), t0)
        .unwrap();
    transmits(&mut l);
    let (sent, other) = run_until(&mut l, t0, Duration::from_secs(40));
    // 0.5, 1, 2, 4 s doubling, then every T2 = 4 s until F at 32 s.
    assert_eq!(
        sent,
        ms(&[500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500])
    );
    assert!(other.contains(&Action::Timeout {
        tx: id,
        timer: Timer::F
    }));
    assert!(l.is_empty());
}

#[test]
fn client_non_invite_after_provisional_retransmits_every_t2() {
    let mut l = TransactionLayer::new(TimerConfig::default());
    let t0 = Instant::now();
    let req = request("REGISTER", "z9hG4bKc");
    let id = l.send_request(req.clone(), udp(), t0).unwrap();
    transmits(&mut l);
    let out = l.handle_response(resp(&req, 100), udp(), t0 + Duration::from_millis(100));
    assert!(matches!(out, ClientOutcome::Provisional(i, _) if i == id));
    let (sent, _) = run_until(&mut l, t0, Duration::from_secs(9));
    // E was armed at 0.5 s; once it fires in Proceeding the interval is T2.
    assert_eq!(sent, ms(&[500, 4500, 8500]));
}

#[test]
fn nothing_is_retransmitted_over_tcp() {
    let mut l = TransactionLayer::new(TimerConfig::default());
    let t0 = Instant::now();
    let inv = l
        .send_request(request("INVITE", "z9hG4bKd"), tcp(), t0)
        .unwrap();
    l.send_request(request("OPTIONS", "z9hG4bKe"), tcp(), t0)
        .unwrap();
    transmits(&mut l);
    let (sent, other) = run_until(&mut l, t0, Duration::from_secs(40));
    assert!(sent.is_empty());
    assert!(other.contains(&Action::Timeout {
        tx: inv,
        timer: Timer::B
    }));
    assert!(l.is_empty());
}

#[test]
fn custom_t1_t2_are_honoured() {
    let cfg = TimerConfig {
        t1: Duration::from_millis(100),
        t2: Duration::from_millis(300),
        t4: Duration::from_millis(1000),
        c: Duration::from_secs(181),
    };
    let mut l = TransactionLayer::new(cfg);
    let t0 = Instant::now();
    l.send_request(request("OPTIONS", "z9hG4bKf"), udp(), t0)
        .unwrap();
    transmits(&mut l);
    let (sent, other) = run_until(&mut l, t0, Duration::from_secs(10));
    assert_eq!(&sent[..4], &ms(&[100, 300, 600, 900])[..]);
    assert_eq!(*sent.last().unwrap(), Duration::from_millis(6300));
    assert!(matches!(
        other[0],
        Action::Timeout {
            timer: Timer::F,
            ..
        }
    ));
}

#[test]
fn client_invite_non_2xx_is_acked_and_reacked() {
    let mut l = TransactionLayer::new(TimerConfig::default());
    let t0 = Instant::now();
    let req = request("INVITE", "z9hG4bKg");
    let id = l.send_request(req.clone(), udp(), t0).unwrap();
    transmits(&mut l);
    let busy = resp(&req, 486);
    assert!(matches!(
        l.handle_response(busy.clone(), udp(), t0),
        ClientOutcome::Final(i, _) if i == id
    ));
    let sent = transmits(&mut l);
    assert_eq!(sent.len(), 1);
    let ack = &sent[0].1;
    assert!(
        ack.starts_with("ACK sip:bob@127.0.0.1 SIP/2.0\r\n"),
        "{ack}"
    );
    assert!(ack.contains("branch=z9hG4bKg"), "{ack}");
    assert!(ack.contains("To: <sip:bob@b>;tag=t1"), "{ack}");
    assert!(ack.contains("CSeq: 1 ACK"), "{ack}");
    // A retransmitted 486 is absorbed and ACKed again.
    assert_eq!(l.handle_response(busy, udp(), t0), ClientOutcome::Absorbed);
    assert_eq!(transmits(&mut l).len(), 1);
    // Timer D (32 s) frees it.
    let (_, other) = run_until(&mut l, t0, Duration::from_secs(33));
    assert_eq!(other, vec![Action::Terminated(id)]);
}

#[test]
fn client_invite_2xx_goes_to_tu_also_when_retransmitted() {
    let mut l = TransactionLayer::new(TimerConfig::default());
    let t0 = Instant::now();
    let req = request("INVITE", "z9hG4bKh");
    let id = l.send_request(req.clone(), udp(), t0).unwrap();
    transmits(&mut l);
    assert!(matches!(
        l.handle_response(resp(&req, 180), udp(), t0),
        ClientOutcome::Provisional(..)
    ));
    let ok = resp(&req, 200);
    assert!(matches!(
        l.handle_response(ok.clone(), udp(), t0),
        ClientOutcome::Final(..)
    ));
    assert_eq!(l.state(id), Some(State::Accepted));
    assert!(
        transmits(&mut l).is_empty(),
        "no ACK for 2xx from the transaction"
    );
    assert!(matches!(
        l.handle_response(ok, udp(), t0),
        ClientOutcome::Final(..)
    ));
    let (_, other) = run_until(&mut l, t0, Duration::from_secs(33));
    assert_eq!(other, vec![Action::Terminated(id)]);
}

#[test]
fn ringing_forever_hits_timer_c_then_ends() {
    let mut l = TransactionLayer::new(TimerConfig::default());
    let t0 = Instant::now();
    let req = request("INVITE", "z9hG4bKcc");
    let id = l.send_request(req.clone(), udp(), t0).unwrap();
    transmits(&mut l);
    l.handle_response(resp(&req, 180), udp(), t0 + Duration::from_secs(1));
    let (sent, other) = run_until(&mut l, t0, Duration::from_secs(300));
    assert!(sent.is_empty(), "no retransmission after a provisional");
    assert_eq!(
        other,
        vec![
            Action::Timeout {
                tx: id,
                timer: Timer::C
            },
            Action::Timeout {
                tx: id,
                timer: Timer::B
            },
            Action::Terminated(id)
        ]
    );
}

#[test]
fn stray_responses_are_reported() {
    let mut l = TransactionLayer::new(TimerConfig::default());
    let req = request("INVITE", "z9hG4bKi");
    assert!(matches!(
        l.handle_response(resp(&req, 200), udp(), Instant::now()),
        ClientOutcome::Stray(_)
    ));
}

#[test]
fn server_invite_486_retransmitted_on_g_until_ack() {
    let mut l = TransactionLayer::new(TimerConfig::default());
    let t0 = Instant::now();
    let req = request("INVITE", "z9hG4bKj");
    let ServerOutcome::New(id, _) = l.handle_request(req.clone(), udp(), t0) else {
        panic!()
    };
    l.respond(id, resp(&req, 486), t0).unwrap();
    assert_eq!(transmits(&mut l).len(), 1);
    let (sent, _) = run_until(&mut l, t0, Duration::from_millis(3600));
    assert_eq!(sent, ms(&[500, 1500, 3500]));
    let ack = request("ACK", "z9hG4bKj");
    assert_eq!(
        l.handle_request(ack.clone(), udp(), t0 + Duration::from_secs(4)),
        ServerOutcome::Absorbed
    );
    assert_eq!(l.state(id), Some(State::Confirmed));
    // A retransmitted ACK is absorbed too; timer I (T4) ends it, no more 486.
    assert_eq!(
        l.handle_request(ack, udp(), t0 + Duration::from_secs(4)),
        ServerOutcome::Absorbed
    );
    let (sent, other) = run_until(&mut l, t0, Duration::from_secs(20));
    assert!(sent.is_empty());
    assert_eq!(other, vec![Action::Terminated(id)]);
}

#[test]
fn server_invite_g_is_capped_and_h_times_out_without_ack() {
    let mut l = TransactionLayer::new(TimerConfig::default());
    let t0 = Instant::now();
    let req = request("INVITE", "z9hG4bKk");
    let ServerOutcome::New(id, _) = l.handle_request(req.clone(), udp(), t0) else {
        panic!()
    };
    l.respond(id, resp(&req, 603), t0).unwrap();
    transmits(&mut l);
    let (sent, other) = run_until(&mut l, t0, Duration::from_secs(40));
    assert_eq!(&sent[..6], &ms(&[500, 1500, 3500, 7500, 11500, 15500])[..]);
    assert!(sent.iter().all(|s| *s < Duration::from_secs(32)));
    assert_eq!(
        other,
        vec![
            Action::Timeout {
                tx: id,
                timer: Timer::H
            },
            Action::Terminated(id)
        ]
    );
}

#[test]
fn server_invite_retransmission_resends_provisional_and_accepted_absorbs() {
    let mut l = TransactionLayer::new(TimerConfig::default());
    let t0 = Instant::now();
    let req = request("INVITE", "z9hG4bKl");
    let ServerOutcome::New(id, _) = l.handle_request(req.clone(), udp(), t0) else {
        panic!()
    };
    l.respond(id, resp(&req, 180), t0).unwrap();
    transmits(&mut l);
    assert_eq!(
        l.handle_request(req.clone(), udp(), t0),
        ServerOutcome::Absorbed
    );
    let again = transmits(&mut l);
    assert_eq!(again.len(), 1);
    assert!(again[0].1.starts_with("SIP/2.0 180"));
    l.respond(id, resp(&req, 200), t0).unwrap();
    transmits(&mut l);
    assert_eq!(l.state(id), Some(State::Accepted));
    assert_eq!(l.handle_request(req, udp(), t0), ServerOutcome::Absorbed);
    assert!(
        transmits(&mut l).is_empty(),
        "RFC 6026: retransmitted INVITE absorbed in Accepted"
    );
    // The TU's own 2xx retransmissions pass through.
    l.respond(id, resp(&request("INVITE", "z9hG4bKl"), 200), t0)
        .unwrap();
    assert_eq!(transmits(&mut l).len(), 1);
    // A non-2xx after a 2xx is refused.
    assert_eq!(
        l.respond(id, resp(&request("INVITE", "z9hG4bKl"), 486), t0),
        Err(TxError::AlreadyFinal)
    );
    let (_, other) = run_until(&mut l, t0, Duration::from_secs(33));
    assert_eq!(other, vec![Action::Terminated(id)]);
}

#[test]
fn server_non_invite_absorbs_then_answers_from_the_transaction() {
    let mut l = TransactionLayer::new(TimerConfig::default());
    let t0 = Instant::now();
    let req = request("REGISTER", "z9hG4bKm");
    let ServerOutcome::New(id, _) = l.handle_request(req.clone(), udp(), t0) else {
        panic!()
    };
    // Retransmitted while the answer waits (say, for the store): absorbed silently.
    assert_eq!(
        l.handle_request(req.clone(), udp(), t0),
        ServerOutcome::Absorbed
    );
    assert!(transmits(&mut l).is_empty());
    l.respond(id, resp(&req, 200), t0).unwrap();
    assert_eq!(transmits(&mut l).len(), 1);
    assert_eq!(
        l.handle_request(req.clone(), udp(), t0 + Duration::from_secs(1)),
        ServerOutcome::Absorbed
    );
    let again = transmits(&mut l);
    assert_eq!(again.len(), 1);
    assert!(again[0].1.starts_with("SIP/2.0 200"));
    // Timer J (64·T1) frees it.
    let (_, other) = run_until(&mut l, t0, Duration::from_secs(33));
    assert_eq!(other, vec![Action::Terminated(id)]);
    assert!(l.is_empty());
}

#[test]
fn server_non_invite_over_tcp_ends_at_once() {
    let mut l = TransactionLayer::new(TimerConfig::default());
    let t0 = Instant::now();
    let req = request("OPTIONS", "z9hG4bKn");
    let ServerOutcome::New(id, _) = l.handle_request(req.clone(), tcp(), t0) else {
        panic!()
    };
    l.respond(id, resp(&req, 200), t0).unwrap();
    let a = actions(&mut l);
    assert!(matches!(a[0], Action::Transmit { to, .. } if to == tcp()));
    assert_eq!(a[1], Action::Terminated(id));
    assert!(l.is_empty());
}

#[test]
fn cancel_is_matched_to_its_invite() {
    let mut l = TransactionLayer::new(TimerConfig::default());
    let t0 = Instant::now();
    let inv = request("INVITE", "z9hG4bKo");
    let ServerOutcome::New(inv_id, _) = l.handle_request(inv, udp(), t0) else {
        panic!()
    };
    match l.handle_request(request("CANCEL", "z9hG4bKo"), udp(), t0) {
        ServerOutcome::Cancel {
            invite_tx,
            cancel_tx,
            ..
        } => {
            assert_eq!(invite_tx, Some(inv_id));
            assert_ne!(cancel_tx, inv_id);
        }
        other => panic!("{other:?}"),
    }
    match l.handle_request(request("CANCEL", "z9hG4bKzzz"), udp(), t0) {
        ServerOutcome::Cancel { invite_tx, .. } => assert_eq!(invite_tx, None),
        other => panic!("{other:?}"),
    }
}

#[test]
fn ack_without_transaction_goes_to_the_tu() {
    let mut l = TransactionLayer::new(TimerConfig::default());
    assert!(matches!(
        l.handle_request(request("ACK", "z9hG4bKp"), udp(), Instant::now()),
        ServerOutcome::Ack(_)
    ));
}

#[test]
fn legacy_branchless_requests_still_match() {
    let mut l = TransactionLayer::new(TimerConfig::default());
    let t0 = Instant::now();
    let req = request("OPTIONS", "1234");
    assert!(matches!(
        l.handle_request(req.clone(), udp(), t0),
        ServerOutcome::New(..)
    ));
    assert_eq!(l.handle_request(req, udp(), t0), ServerOutcome::Absorbed);
}

#[test]
fn client_cancel_request_is_built_per_9_1() {
    let mut l = TransactionLayer::new(TimerConfig::default());
    let id = l
        .send_request(request("INVITE", "z9hG4bKq"), udp(), Instant::now())
        .unwrap();
    let c = l.cancel_for(id).unwrap().to_string();
    assert!(c.starts_with("CANCEL sip:bob@127.0.0.1 SIP/2.0\r\n"), "{c}");
    assert!(c.contains("branch=z9hG4bKq"));
    assert!(c.contains("CSeq: 1 CANCEL"));
}

#[test]
fn responses_follow_via_rport_and_sent_by() {
    let mut l = TransactionLayer::new(TimerConfig::default());
    let t0 = Instant::now();
    let req = request("OPTIONS", "z9hG4bKr");
    let from = Peer::udp(SocketAddr::from(([127, 0, 0, 1], 40000)));
    let ServerOutcome::New(id, _) = l.handle_request(req.clone(), from, t0) else {
        panic!()
    };
    l.respond(id, resp(&req, 200), t0).unwrap();
    // No rport: the sent-by port.
    assert_eq!(transmits(&mut l)[0].0.addr.port(), 5070);
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Ev {
        Req(u8, u8),
        Resp(u8, u16),
        Respond(u8, u16),
        Send(u8, u8),
        Advance(u16),
        Garbage(Vec<u8>),
    }

    const METHODS: [&str; 5] = ["INVITE", "ACK", "CANCEL", "OPTIONS", "REGISTER"];

    fn ev() -> impl Strategy<Value = Ev> {
        prop_oneof![
            (0u8..5, 0u8..4).prop_map(|(m, b)| Ev::Req(m, b)),
            (0u8..4, 100u16..700).prop_map(|(b, c)| Ev::Resp(b, c)),
            (0u8..8, 100u16..700).prop_map(|(t, c)| Ev::Respond(t, c)),
            (0u8..5, 0u8..4).prop_map(|(m, b)| Ev::Send(m, b)),
            (0u16..40_000).prop_map(Ev::Advance),
            proptest::collection::vec(any::<u8>(), 0..200).prop_map(Ev::Garbage),
        ]
    }

    proptest! {
        #[test]
        fn never_panics_and_always_drains(events in proptest::collection::vec(ev(), 0..60), reliable in any::<bool>()) {
            let mut l = TransactionLayer::new(TimerConfig::default());
            let t0 = Instant::now();
            let mut now = t0;
            let peer = if reliable { tcp() } else { udp() };
            let mut server_ids = Vec::new();
            for e in events {
                match e {
                    Ev::Req(m, b) => {
                        let r = request(METHODS[m as usize], &format!("z9hG4bK{b}"));
                        match l.handle_request(r, peer, now) {
                            ServerOutcome::New(id, _) => server_ids.push(id),
                            ServerOutcome::Cancel { cancel_tx, .. } => server_ids.push(cancel_tx),
                            _ => {}
                        }
                    }
                    Ev::Resp(b, c) => {
                        for m in ["INVITE", "OPTIONS"] {
                            let r = request(m, &format!("z9hG4bKc{b}"));
                            let _ = l.handle_response(resp(&r, c), peer, now);
                        }
                    }
                    Ev::Respond(i, c) => {
                        if let Some(id) = server_ids.get(i as usize) {
                            let _ = l.respond(*id, resp(&request("INVITE", "z9hG4bK0"), c), now);
                        }
                    }
                    Ev::Send(m, b) => {
                        let m = METHODS[m as usize];
                        if m != "ACK" {
                            let _ = l.send_request(request(m, &format!("z9hG4bKc{b}")), peer, now);
                        }
                    }
                    Ev::Advance(ms) => {
                        now += Duration::from_millis(ms as u64);
                        l.handle_timeout(now);
                    }
                    Ev::Garbage(bytes) => {
                        if let Ok(SipMessage::Request(r)) = parse(&bytes, &Limits::default()) {
                            let _ = l.handle_request(r, peer, now);
                        }
                    }
                }
                while l.poll_action().is_some() {}
            }
            // Server transactions never answered stay until their user answers them;
            // answer them all, then let every timer run out.
            for id in server_ids {
                let _ = l.respond(id, resp(&request("INVITE", "z9hG4bK0"), 500), now);
            }
            for _ in 0..100 {
                match l.poll_timeout() {
                    Some(t) => { now = now.max(t); l.handle_timeout(now); }
                    None => break,
                }
                while l.poll_action().is_some() {}
            }
            prop_assert_eq!(l.len(), 0);
        }
    }
}
