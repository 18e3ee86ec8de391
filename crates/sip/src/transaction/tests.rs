//! Transaction state machines driven by a virtual clock: nothing here sleeps.

use super::*;
use crate::message::response;
use crate::msg::headers::Header;
use crate::msg::{Response, SipMessage};
use crate::parse::{parse, Limits};
use std::net::SocketAddr;

fn udp() -> Peer {
    Peer::udp(SocketAddr::from(([127, 0, 0, 1], 5070)))
}

fn tcp() -> Peer {
    Peer::tcp(SocketAddr::from(([127, 0, 0, 1], 5070)), 7)
}

fn parse_request(text: &str) -> Request {
    match parse(text.as_bytes(), &Limits::default()) {
        Ok(SipMessage::Request(r)) => r,
        other => panic!("{other:?}"),
    }
}

/// A request with this top Via value and CSeq number.
fn request_via(method: &str, via: &str, cseq: u32) -> Request {
    parse_request(&format!(
        "{method} sip:bob@127.0.0.1 SIP/2.0\r\nVia: {via}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@a>;tag=f1\r\nTo: <sip:bob@b>\r\nCall-ID: c1\r\n\
         CSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n"
    ))
}

fn request(method: &str, branch: &str) -> Request {
    request_via(
        method,
        &format!("SIP/2.0/UDP 127.0.0.1:5070;branch={branch}"),
        1,
    )
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

/// Advances the virtual clock from `t0` to `t0 + until`, firing timers on the way, and
/// returns when (after `t0`) something was transmitted, and the other actions.
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

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn new_server_tx(l: &mut TransactionLayer, req: &Request, from: Peer, now: Instant) -> TxId {
    match l.handle_request(req.clone(), from, now) {
        ServerOutcome::New(id, _) => id,
        other => panic!("{other:?}"),
    }
}

// ---- client INVITE -------------------------------------------------------------------

#[test]
fn client_invite_udp_retransmits_on_timer_a_until_b() {
    let mut l = TransactionLayer::new(TimerConfig::default());
    let t0 = Instant::now();
    let id = l
        .send_request(request("INVITE", "z9hG4bKa"), udp(), t0)
        .unwrap();
    assert_eq!(transmits(&mut l).len(), 1);
    assert_eq!(l.state(id), Some(State::Calling));
    let (sent, other) = run_until(&mut l, t0, secs(40));
    // Intervals 0.5, 1, 2, 4, 8, 16 s; B at 64·T1 = 32 s.
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
    assert_eq!(l.poll_timeout(), None);
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
    let (to, ack) = &sent[0];
    assert_eq!(*to, udp());
    assert!(
        ack.starts_with("ACK sip:bob@127.0.0.1 SIP/2.0\r\n"),
        "{ack}"
    );
    assert!(ack.contains("branch=z9hG4bKg"), "{ack}");
    assert!(ack.contains("To: <sip:bob@b>;tag=t1"), "{ack}");
    assert!(ack.contains("From: <sip:alice@a>;tag=f1"), "{ack}");
    assert!(ack.contains("CSeq: 1 ACK"), "{ack}");
    assert_eq!(l.state(id), Some(State::Completed));
    // A retransmitted 486 is absorbed and ACKed again, identically.
    assert_eq!(l.handle_response(busy, udp(), t0), ClientOutcome::Absorbed);
    let again = transmits(&mut l);
    assert_eq!(again.len(), 1);
    assert_eq!(&again[0].1, ack);
    // No more retransmissions of the INVITE; timer D (32 s) frees it.
    let (sent, other) = run_until(&mut l, t0, secs(31));
    assert!(sent.is_empty() && other.is_empty());
    let (_, other) = run_until(&mut l, t0, secs(32));
    assert_eq!(other, vec![Action::Terminated(id)]);
}

#[test]
fn client_invite_ack_carries_the_route_set_and_only_the_top_via() {
    let mut l = TransactionLayer::new(TimerConfig::default());
    let t0 = Instant::now();
    let req = parse_request(
        "INVITE sip:bob@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKtop, SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKlow\r\n\
         Route: <sip:proxy.example;lr>\r\nMax-Forwards: 70\r\nFrom: <sip:alice@a>;tag=f1\r\n\
         To: <sip:bob@b>\r\nCall-ID: c9\r\nCSeq: 7 INVITE\r\nContact: <sip:alice@1.2.3.4>\r\n\
         Content-Length: 0\r\n\r\n",
    );
    l.send_request(req.clone(), udp(), t0).unwrap();
    transmits(&mut l);
    l.handle_response(resp(&req, 404), udp(), t0);
    let ack = transmits(&mut l).remove(0).1;
    assert!(ack.contains("Route: <sip:proxy.example;lr>"), "{ack}");
    assert!(ack.contains("branch=z9hG4bKtop"), "{ack}");
    assert!(!ack.contains("z9hG4bKlow"), "{ack}");
    assert!(!ack.contains("Contact"), "{ack}");
    assert!(ack.contains("CSeq: 7 ACK"), "{ack}");
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
    // RFC 6026 §7.2: retransmitted 2xx (and another fork's 2xx) reach the TU.
    assert!(matches!(
        l.handle_response(ok, udp(), t0 + secs(1)),
        ClientOutcome::Final(i, _) if i == id
    ));
    let other_fork = response(&req, 200, Some("t2"), "test");
    assert!(matches!(
        l.handle_response(other_fork, udp(), t0 + secs(2)),
        ClientOutcome::Final(..)
    ));
    // Anything else is absorbed.
    assert_eq!(
        l.handle_response(resp(&req, 183), udp(), t0 + secs(2)),
        ClientOutcome::Absorbed
    );
    assert_eq!(
        l.handle_response(resp(&req, 500), udp(), t0 + secs(2)),
        ClientOutcome::Absorbed
    );
    assert!(transmits(&mut l).is_empty());
    // Timer M = 64·T1 after the first 2xx.
    let (_, other) = run_until(&mut l, t0, Duration::from_millis(31_999));
    assert!(other.is_empty());
    let (_, other) = run_until(&mut l, t0, secs(32));
    assert_eq!(other, vec![Action::Terminated(id)]);
    assert!(matches!(
        l.handle_response(resp(&req, 200), udp(), t0 + secs(33)),
        ClientOutcome::Stray(_)
    ));
}

#[test]
fn client_invite_provisional_stops_a_and_b() {
    let mut l = TransactionLayer::new(TimerConfig::default());
    let t0 = Instant::now();
    let req = request("INVITE", "z9hG4bKpr");
    let id = l.send_request(req.clone(), udp(), t0).unwrap();
    transmits(&mut l);
    let (sent, _) = run_until(&mut l, t0, secs(2));
    assert_eq!(sent, ms(&[500, 1500]));
    l.handle_response(resp(&req, 100), udp(), t0 + secs(2));
    assert_eq!(l.state(id), Some(State::Proceeding));
    // Neither A nor B: only timer C is left (181 s from the INVITE).
    assert_eq!(l.poll_timeout(), Some(t0 + secs(181)));
    let (sent, other) = run_until(&mut l, t0, secs(100));
    assert!(sent.is_empty() && other.is_empty());
    // The final response still arrives and completes it.
    assert!(matches!(
        l.handle_response(resp(&req, 487), udp(), t0 + secs(100)),
        ClientOutcome::Final(..)
    ));
}

#[test]
fn timer_c_runs_from_the_invite_and_restarts_on_101_to_199_only() {
    let mut l = TransactionLayer::new(TimerConfig::default());
    let t0 = Instant::now();
    let req = request("INVITE", "z9hG4bKcc");
    let id = l.send_request(req.clone(), udp(), t0).unwrap();
    transmits(&mut l);
    l.handle_response(resp(&req, 100), udp(), t0 + secs(1));
    assert_eq!(l.poll_timeout(), Some(t0 + secs(181)), "100 keeps C");
    l.handle_response(resp(&req, 180), udp(), t0 + secs(10));
    assert_eq!(l.poll_timeout(), Some(t0 + secs(191)), "180 restarts C");
    let (sent, other) = run_until(&mut l, t0, secs(191));
    assert!(sent.is_empty(), "no retransmission after a provisional");
    assert_eq!(
        other,
        vec![Action::Timeout {
            tx: id,
            timer: Timer::C
        }]
    );
    // The TU would CANCEL now. A 100 does not save it; B comes 64·T1 after C.
    l.handle_response(resp(&req, 100), udp(), t0 + secs(192));
    assert_eq!(l.poll_timeout(), Some(t0 + secs(191 + 32)));
    let (_, other) = run_until(&mut l, t0, secs(300));
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
}

#[test]
fn ringing_after_timer_c_restarts_it() {
    let mut l = TransactionLayer::new(TimerConfig::default());
    let t0 = Instant::now();
    let req = request("INVITE", "z9hG4bKc2");
    let id = l.send_request(req.clone(), udp(), t0).unwrap();
    l.handle_response(resp(&req, 180), udp(), t0);
    run_until(&mut l, t0, secs(181));
    l.handle_response(resp(&req, 183), udp(), t0 + secs(200));
    assert_eq!(l.poll_timeout(), Some(t0 + secs(381)));
    assert_eq!(l.state(id), Some(State::Proceeding));
}

#[test]
fn client_invite_over_tcp_completes_at_once_on_non_2xx() {
    let mut l = TransactionLayer::new(TimerConfig::default());
    let t0 = Instant::now();
    let req = request("INVITE", "z9hG4bKtc");
    let id = l.send_request(req.clone(), tcp(), t0).unwrap();
    transmits(&mut l);
    assert!(matches!(
        l.handle_response(resp(&req, 603), tcp(), t0),
        ClientOutcome::Final(..)
    ));
    let a = actions(&mut l);
    assert!(
        matches!(&a[0], Action::Transmit { to, bytes } if *to == tcp() && bytes.starts_with(b"ACK "))
    );
    assert_eq!(a[1], Action::Terminated(id));
    assert!(l.is_empty());
}

// ---- client non-INVITE ---------------------------------------------------------------

#[test]
fn client_non_invite_e_is_capped_at_t2_and_f_times_out() {
    let mut l = TransactionLayer::new(TimerConfig::default());
    let t0 = Instant::now();
    let id = l
        .send_request(request("OPTIONS", "z9hG4bKb"), udp(), t0)
        .unwrap();
    assert_eq!(l.state(id), Some(State::Trying));
    transmits(&mut l);
    let (sent, other) = run_until(&mut l, t0, secs(40));
    // 0.5, 1, 2, 4 s doubling, then every T2 = 4 s until F at 32 s.
    assert_eq!(
        sent,
        ms(&[500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500])
    );
    assert_eq!(
        other,
        vec![
            Action::Timeout {
                tx: id,
                timer: Timer::F
            },
            Action::Terminated(id)
        ]
    );
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
    assert_eq!(l.state(id), Some(State::Proceeding));
    let (sent, _) = run_until(&mut l, t0, secs(9));
    // E was armed at 0.5 s; once it fires in Proceeding the interval is T2.
    assert_eq!(sent, ms(&[500, 4500, 8500]));
}

#[test]
fn client_non_invite_final_then_k_absorbs_retransmissions() {
    let mut l = TransactionLayer::new(TimerConfig::default());
    let t0 = Instant::now();
    let req = request("REGISTER", "z9hG4bKk1");
    let id = l.send_request(req.clone(), udp(), t0).unwrap();
    transmits(&mut l);
    let ok = resp(&req, 200);
    assert!(matches!(
        l.handle_response(ok.clone(), udp(), t0 + secs(1)),
        ClientOutcome::Final(..)
    ));
    assert_eq!(l.state(id), Some(State::Completed));
    assert_eq!(
        l.handle_response(ok.clone(), udp(), t0 + secs(2)),
        ClientOutcome::Absorbed
    );
    // Timer K = T4 = 5 s; no retransmission of the request meanwhile.
    let (sent, other) = run_until(&mut l, t0, secs(10));
    assert!(sent.is_empty());
    assert_eq!(other, vec![Action::Terminated(id)]);
    assert_eq!(l.poll_timeout(), None);
}

#[test]
fn nothing_is_retransmitted_over_tcp() {
    let mut l = TransactionLayer::new(TimerConfig::default());
    let t0 = Instant::now();
    let inv = l
        .send_request(request("INVITE", "z9hG4bKd"), tcp(), t0)
        .unwrap();
    let opt = l
        .send_request(request("OPTIONS", "z9hG4bKe"), tcp(), t0)
        .unwrap();
    transmits(&mut l);
    let (sent, other) = run_until(&mut l, t0, secs(40));
    assert!(sent.is_empty());
    assert_eq!(
        other,
        vec![
            Action::Timeout {
                tx: inv,
                timer: Timer::B
            },
            Action::Terminated(inv),
            Action::Timeout {
                tx: opt,
                timer: Timer::F
            },
            Action::Terminated(opt),
        ]
    );
    assert!(l.is_empty());
}

#[test]
fn client_non_invite_over_tcp_ends_on_final() {
    let mut l = TransactionLayer::new(TimerConfig::default());
    let t0 = Instant::now();
    let req = request("OPTIONS", "z9hG4bKt2");
    let id = l.send_request(req.clone(), tcp(), t0).unwrap();
    transmits(&mut l);
    l.handle_response(resp(&req, 200), tcp(), t0);
    assert_eq!(actions(&mut l), vec![Action::Terminated(id)]);
}

#[test]
fn cancel_is_its_own_client_transaction() {
    let mut l = TransactionLayer::new(TimerConfig::default());
    let t0 = Instant::now();
    let inv = request("INVITE", "z9hG4bKq");
    let inv_id = l.send_request(inv.clone(), udp(), t0).unwrap();
    l.handle_response(resp(&inv, 180), udp(), t0);
    let cancel = l.cancel_for(inv_id).unwrap();
    let text = cancel.to_string();
    assert!(
        text.starts_with("CANCEL sip:bob@127.0.0.1 SIP/2.0\r\n"),
        "{text}"
    );
    assert!(text.contains("branch=z9hG4bKq"), "{text}");
    assert!(text.contains("CSeq: 1 CANCEL"), "{text}");
    assert!(text.contains("To: <sip:bob@b>\r\n"), "{text}");
    let cancel_id = l.send_request(cancel.clone(), udp(), t0).unwrap();
    assert_ne!(cancel_id, inv_id);
    assert!(matches!(
        l.handle_response(resp(&cancel, 200), udp(), t0),
        ClientOutcome::Final(i, _) if i == cancel_id
    ));
    assert_eq!(l.state(inv_id), Some(State::Proceeding));
    assert!(matches!(
        l.handle_response(resp(&inv, 487), udp(), t0),
        ClientOutcome::Final(i, _) if i == inv_id
    ));
    assert_eq!(l.cancel_for(cancel_id), None);
}

#[test]
fn stray_responses_are_reported() {
    let mut l = TransactionLayer::new(TimerConfig::default());
    let t0 = Instant::now();
    let req = request("INVITE", "z9hG4bKi");
    assert!(matches!(
        l.handle_response(resp(&req, 200), udp(), t0),
        ClientOutcome::Stray(_)
    ));
    // Same branch, other method: not ours either (§17.1.3).
    l.send_request(req.clone(), udp(), t0).unwrap();
    let bye = request("BYE", "z9hG4bKi");
    assert!(matches!(
        l.handle_response(resp(&bye, 200), udp(), t0),
        ClientOutcome::Stray(_)
    ));
}

#[test]
fn unmatchable_responses_are_stray() {
    let mut l = TransactionLayer::new(TimerConfig::default());
    let t0 = Instant::now();
    let req = request("OPTIONS", "z9hG4bKu");
    let id = l.send_request(req.clone(), udp(), t0).unwrap();
    let mut no_via = resp(&req, 200);
    no_via.headers.retain(|h| !matches!(h, Header::Via(_)));
    let mut no_cseq = resp(&req, 200);
    no_cseq.headers.retain(|h| !matches!(h, Header::CSeq(_)));
    let mut odd_cseq = resp(&req, 200);
    odd_cseq.headers.retain(|h| !matches!(h, Header::CSeq(_)));
    odd_cseq.headers.push(Header::CSeq("1 FROB".into()));
    for r in [no_via, no_cseq, odd_cseq, resp(&req, 99), resp(&req, 700)] {
        assert!(matches!(
            l.handle_response(r, udp(), t0),
            ClientOutcome::Stray(_)
        ));
    }
    assert_eq!(l.state(id), Some(State::Trying));
}

#[test]
fn send_request_refuses_what_is_no_transaction() {
    let mut l = TransactionLayer::new(TimerConfig::default());
    let t0 = Instant::now();
    assert_eq!(
        l.send_request(request("ACK", "z9hG4bKs1"), udp(), t0),
        Err(TxError::AckIsNotATransaction)
    );
    let mut no_via = request("OPTIONS", "z9hG4bKs2");
    no_via.headers.retain(|h| !matches!(h, Header::Via(_)));
    assert_eq!(l.send_request(no_via, udp(), t0), Err(TxError::NoVia));
    let no_branch = request_via("OPTIONS", "SIP/2.0/UDP 127.0.0.1", 1);
    assert_eq!(l.send_request(no_branch, udp(), t0), Err(TxError::NoVia));
    l.send_request(request("OPTIONS", "z9hG4bKs3"), udp(), t0)
        .unwrap();
    assert_eq!(
        l.send_request(request("OPTIONS", "z9hG4bKs3"), udp(), t0),
        Err(TxError::DuplicateBranch)
    );
    assert!(l
        .send_request(request("INVITE", "z9hG4bKs3"), udp(), t0)
        .is_ok());
    assert_eq!(l.len(), 2);
}

// ---- server INVITE -------------------------------------------------------------------

#[test]
fn server_invite_486_retransmitted_on_g_until_ack() {
    let mut l = TransactionLayer::new(TimerConfig::default());
    let t0 = Instant::now();
    let req = request("INVITE", "z9hG4bKj");
    let id = new_server_tx(&mut l, &req, udp(), t0);
    assert_eq!(l.kind(id), Some(Kind::ServerInvite));
    assert_eq!(l.state(id), Some(State::Proceeding));
    l.respond(id, resp(&req, 486), t0).unwrap();
    assert_eq!(transmits(&mut l).len(), 1);
    assert_eq!(l.state(id), Some(State::Completed));
    let (sent, _) = run_until(&mut l, t0, Duration::from_millis(3600));
    assert_eq!(sent, ms(&[500, 1500, 3500]));
    // A retransmitted INVITE gets the 486 again.
    assert_eq!(
        l.handle_request(req.clone(), udp(), t0 + secs(4)),
        ServerOutcome::Absorbed
    );
    assert!(transmits(&mut l)[0].1.starts_with("SIP/2.0 486"));
    let ack = request("ACK", "z9hG4bKj");
    assert_eq!(
        l.handle_request(ack.clone(), udp(), t0 + secs(4)),
        ServerOutcome::Absorbed
    );
    assert_eq!(l.state(id), Some(State::Confirmed));
    // Retransmitted ACKs and INVITEs are absorbed silently; timer I (T4) ends it.
    assert_eq!(
        l.handle_request(ack, udp(), t0 + secs(5)),
        ServerOutcome::Absorbed
    );
    assert_eq!(
        l.handle_request(req, udp(), t0 + secs(5)),
        ServerOutcome::Absorbed
    );
    assert!(transmits(&mut l).is_empty());
    let (sent, other) = run_until(&mut l, t0, Duration::from_millis(8999));
    assert!(sent.is_empty() && other.is_empty());
    let (_, other) = run_until(&mut l, t0, secs(9));
    assert_eq!(other, vec![Action::Terminated(id)]);
    assert!(l.is_empty());
}

#[test]
fn server_invite_g_is_capped_and_h_times_out_without_ack() {
    let mut l = TransactionLayer::new(TimerConfig::default());
    let t0 = Instant::now();
    let req = request("INVITE", "z9hG4bKk");
    let id = new_server_tx(&mut l, &req, udp(), t0);
    l.respond(id, resp(&req, 603), t0).unwrap();
    transmits(&mut l);
    let (sent, other) = run_until(&mut l, t0, secs(40));
    assert_eq!(
        sent,
        ms(&[500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500])
    );
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
fn server_invite_over_tcp_has_no_g_and_ends_on_ack() {
    let mut l = TransactionLayer::new(TimerConfig::default());
    let t0 = Instant::now();
    let req = request("INVITE", "z9hG4bKtg");
    let id = new_server_tx(&mut l, &req, tcp(), t0);
    l.respond(id, resp(&req, 486), t0).unwrap();
    assert_eq!(transmits(&mut l)[0].0, tcp());
    // Only H is armed.
    assert_eq!(l.poll_timeout(), Some(t0 + secs(32)));
    assert_eq!(
        l.handle_request(request("ACK", "z9hG4bKtg"), tcp(), t0 + secs(1)),
        ServerOutcome::Absorbed
    );
    assert_eq!(actions(&mut l), vec![Action::Terminated(id)]);
}

#[test]
fn server_invite_retransmission_resends_provisional_and_accepted_absorbs() {
    let mut l = TransactionLayer::new(TimerConfig::default());
    let t0 = Instant::now();
    let req = request("INVITE", "z9hG4bKl");
    let id = new_server_tx(&mut l, &req, udp(), t0);
    // Before any response a retransmission is absorbed silently.
    assert_eq!(
        l.handle_request(req.clone(), udp(), t0),
        ServerOutcome::Absorbed
    );
    assert!(transmits(&mut l).is_empty());
    l.respond(id, resp(&req, 100), t0).unwrap();
    l.respond(id, resp(&req, 180), t0).unwrap();
    assert_eq!(transmits(&mut l).len(), 2);
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
    assert_eq!(
        l.handle_request(req.clone(), udp(), t0),
        ServerOutcome::Absorbed
    );
    assert!(
        transmits(&mut l).is_empty(),
        "RFC 6026: retransmitted INVITE absorbed in Accepted"
    );
    // The TU's own 2xx retransmissions pass through.
    l.respond(id, resp(&req, 200), t0 + secs(1)).unwrap();
    assert_eq!(transmits(&mut l).len(), 1);
    // A non-2xx or a provisional after a 2xx is refused.
    assert_eq!(
        l.respond(id, resp(&req, 486), t0),
        Err(TxError::AlreadyFinal)
    );
    assert_eq!(
        l.respond(id, resp(&req, 180), t0),
        Err(TxError::AlreadyFinal)
    );
    // Timer L = 64·T1.
    let (_, other) = run_until(&mut l, t0, Duration::from_millis(31_999));
    assert!(other.is_empty());
    let (_, other) = run_until(&mut l, t0, secs(32));
    assert_eq!(other, vec![Action::Terminated(id)]);
    assert_eq!(
        l.respond(id, resp(&req, 200), t0 + secs(33)),
        Err(TxError::Unknown)
    );
}

#[test]
fn server_invite_accepted_over_tcp_still_waits_timer_l() {
    let mut l = TransactionLayer::new(TimerConfig::default());
    let t0 = Instant::now();
    let req = request("INVITE", "z9hG4bKtl");
    let id = new_server_tx(&mut l, &req, tcp(), t0);
    l.respond(id, resp(&req, 200), t0).unwrap();
    assert_eq!(l.state(id), Some(State::Accepted));
    assert_eq!(l.poll_timeout(), Some(t0 + secs(32)));
}

#[test]
fn acks_outside_completed() {
    let mut l = TransactionLayer::new(TimerConfig::default());
    let t0 = Instant::now();
    // No transaction: the ACK for a 2xx, the TU's.
    assert!(matches!(
        l.handle_request(request("ACK", "z9hG4bKp"), udp(), t0),
        ServerOutcome::Ack(_)
    ));
    // An ACK before any final response acknowledges nothing.
    let req = request("INVITE", "z9hG4bKp2");
    let id = new_server_tx(&mut l, &req, udp(), t0);
    assert_eq!(
        l.handle_request(request("ACK", "z9hG4bKp2"), udp(), t0),
        ServerOutcome::Absorbed
    );
    assert_eq!(l.state(id), Some(State::Proceeding));
    // In Accepted (an ACK reusing the INVITE's branch): to the TU (RFC 6026 §7.1).
    l.respond(id, resp(&req, 200), t0).unwrap();
    assert!(matches!(
        l.handle_request(request("ACK", "z9hG4bKp2"), udp(), t0),
        ServerOutcome::Ack(_)
    ));
    assert_eq!(l.state(id), Some(State::Accepted));
}

// ---- server non-INVITE ---------------------------------------------------------------

#[test]
fn server_non_invite_absorbs_then_answers_from_the_transaction() {
    let mut l = TransactionLayer::new(TimerConfig::default());
    let t0 = Instant::now();
    let req = request("REGISTER", "z9hG4bKm");
    let id = new_server_tx(&mut l, &req, udp(), t0);
    assert_eq!(l.state(id), Some(State::Trying));
    // Retransmitted while the answer waits (say, for the store): absorbed silently.
    assert_eq!(
        l.handle_request(req.clone(), udp(), t0 + secs(1)),
        ServerOutcome::Absorbed
    );
    assert!(transmits(&mut l).is_empty());
    l.respond(id, resp(&req, 200), t0 + secs(1)).unwrap();
    assert_eq!(transmits(&mut l).len(), 1);
    assert_eq!(l.state(id), Some(State::Completed));
    assert_eq!(
        l.handle_request(req.clone(), udp(), t0 + secs(2)),
        ServerOutcome::Absorbed
    );
    let again = transmits(&mut l);
    assert_eq!(again.len(), 1);
    assert!(again[0].1.starts_with("SIP/2.0 200"));
    assert_eq!(
        l.respond(id, resp(&req, 500), t0 + secs(2)),
        Err(TxError::AlreadyFinal)
    );
    // Timer J (64·T1 from the final response) frees it.
    let (_, other) = run_until(&mut l, t0, secs(32));
    assert!(other.is_empty());
    let (_, other) = run_until(&mut l, t0, secs(33));
    assert_eq!(other, vec![Action::Terminated(id)]);
    assert!(l.is_empty());
    // Afterwards the same request is new again.
    assert!(matches!(
        l.handle_request(req, udp(), t0 + secs(34)),
        ServerOutcome::New(..)
    ));
}

#[test]
fn server_non_invite_provisional_is_resent_in_proceeding() {
    let mut l = TransactionLayer::new(TimerConfig::default());
    let t0 = Instant::now();
    let req = request("OPTIONS", "z9hG4bKpp");
    let id = new_server_tx(&mut l, &req, udp(), t0);
    l.respond(id, resp(&req, 100), t0).unwrap();
    assert_eq!(l.state(id), Some(State::Proceeding));
    transmits(&mut l);
    l.handle_request(req.clone(), udp(), t0);
    assert!(transmits(&mut l)[0].1.starts_with("SIP/2.0 100"));
    // No timer runs while the TU has not answered.
    assert_eq!(l.poll_timeout(), None);
}

#[test]
fn server_non_invite_over_tcp_ends_at_once() {
    let mut l = TransactionLayer::new(TimerConfig::default());
    let t0 = Instant::now();
    let req = request("OPTIONS", "z9hG4bKn");
    let id = new_server_tx(&mut l, &req, tcp(), t0);
    l.respond(id, resp(&req, 200), t0).unwrap();
    let a = actions(&mut l);
    assert!(matches!(a[0], Action::Transmit { to, .. } if to == tcp()));
    assert_eq!(a[1], Action::Terminated(id));
    assert!(l.is_empty());
}

#[test]
fn respond_refuses_bad_commands() {
    let mut l = TransactionLayer::new(TimerConfig::default());
    let t0 = Instant::now();
    let req = request("OPTIONS", "z9hG4bKrf");
    let id = new_server_tx(&mut l, &req, udp(), t0);
    assert_eq!(
        l.respond(id, resp(&req, 99), t0),
        Err(TxError::BadStatus(99))
    );
    assert_eq!(
        l.respond(id, resp(&req, 700), t0),
        Err(TxError::BadStatus(700))
    );
    assert_eq!(
        l.respond(TxId(999), resp(&req, 200), t0),
        Err(TxError::Unknown)
    );
    let client = l
        .send_request(request("OPTIONS", "z9hG4bKrc"), udp(), t0)
        .unwrap();
    assert_eq!(
        l.respond(client, resp(&req, 200), t0),
        Err(TxError::NotServer)
    );
    assert_eq!(l.state(id), Some(State::Trying));
}

// ---- matching ------------------------------------------------------------------------

#[test]
fn cancel_is_matched_to_its_invite() {
    let mut l = TransactionLayer::new(TimerConfig::default());
    let t0 = Instant::now();
    let inv = request("INVITE", "z9hG4bKo");
    let inv_id = new_server_tx(&mut l, &inv, udp(), t0);
    let cancel = request("CANCEL", "z9hG4bKo");
    let cancel_id = match l.handle_request(cancel.clone(), udp(), t0) {
        ServerOutcome::Cancel {
            invite_tx,
            cancel_tx,
            request,
        } => {
            assert_eq!(invite_tx, Some(inv_id));
            assert_ne!(cancel_tx, inv_id);
            assert_eq!(request, cancel);
            cancel_tx
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(l.kind(cancel_id), Some(Kind::ServerNonInvite));
    // A retransmitted CANCEL is absorbed; answered, it is answered again.
    assert_eq!(
        l.handle_request(cancel.clone(), udp(), t0),
        ServerOutcome::Absorbed
    );
    l.respond(cancel_id, resp(&cancel, 200), t0).unwrap();
    l.respond(inv_id, resp(&inv, 487), t0).unwrap();
    transmits(&mut l);
    l.handle_request(cancel, udp(), t0);
    assert!(transmits(&mut l)[0].1.contains("CSeq: 1 CANCEL"));
    // A CANCEL for an unknown INVITE, or from another sent-by, matches nothing.
    match l.handle_request(request("CANCEL", "z9hG4bKzzz"), udp(), t0) {
        ServerOutcome::Cancel { invite_tx, .. } => assert_eq!(invite_tx, None),
        other => panic!("{other:?}"),
    }
    let elsewhere = request_via("CANCEL", "SIP/2.0/UDP 10.9.9.9:5060;branch=z9hG4bKo", 1);
    match l.handle_request(elsewhere, udp(), t0) {
        ServerOutcome::Cancel { invite_tx, .. } => assert_eq!(invite_tx, None),
        other => panic!("{other:?}"),
    }
}

#[test]
fn matching_uses_sent_by_and_cseq_not_only_the_branch() {
    let mut l = TransactionLayer::new(TimerConfig::default());
    let t0 = Instant::now();
    let a = request_via(
        "OPTIONS",
        "SIP/2.0/UDP host.example:5060;branch=z9hG4bK1",
        1,
    );
    new_server_tx(&mut l, &a, udp(), t0);
    // Same sent-by written differently: the same transaction.
    let same = request_via(
        "OPTIONS",
        "SIP / 2.0 / UDP  HOST.example:5060 ;branch=z9hG4bK1;received=1.2.3.4",
        1,
    );
    assert_eq!(l.handle_request(same, udp(), t0), ServerOutcome::Absorbed);
    // Another sent-by, another method, or a reused branch with a new CSeq: new ones.
    let other_host = request_via("OPTIONS", "SIP/2.0/UDP other:5060;branch=z9hG4bK1", 1);
    let other_method = request_via("INFO", "SIP/2.0/UDP host.example:5060;branch=z9hG4bK1", 1);
    let next_cseq = request_via(
        "OPTIONS",
        "SIP/2.0/UDP host.example:5060;branch=z9hG4bK1",
        2,
    );
    for r in [other_host, other_method, next_cseq] {
        assert!(matches!(
            l.handle_request(r, udp(), t0),
            ServerOutcome::New(..)
        ));
    }
    assert_eq!(l.len(), 4);
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
    // No branch at all, and its ACK and CANCEL.
    let inv = request_via("INVITE", "SIP/2.0/UDP 10.0.0.1", 5);
    let id = new_server_tx(&mut l, &inv, udp(), t0);
    match l.handle_request(request_via("CANCEL", "SIP/2.0/UDP 10.0.0.1", 5), udp(), t0) {
        ServerOutcome::Cancel { invite_tx, .. } => assert_eq!(invite_tx, Some(id)),
        other => panic!("{other:?}"),
    }
    l.respond(id, resp(&inv, 404), t0).unwrap();
    assert_eq!(
        l.handle_request(request_via("ACK", "SIP/2.0/UDP 10.0.0.1", 5), udp(), t0),
        ServerOutcome::Absorbed
    );
    assert_eq!(l.state(id), Some(State::Confirmed));
}

#[test]
fn requests_without_via_or_cseq_are_invalid() {
    let mut l = TransactionLayer::new(TimerConfig::default());
    let t0 = Instant::now();
    let mut no_via = request("OPTIONS", "z9hG4bKv");
    no_via.headers.retain(|h| !matches!(h, Header::Via(_)));
    let mut no_cseq = request("OPTIONS", "z9hG4bKv");
    no_cseq.headers.retain(|h| !matches!(h, Header::CSeq(_)));
    let mut bad_cseq = no_cseq.clone();
    bad_cseq.headers.push(Header::CSeq("many OPTIONS".into()));
    let mut empty_via = no_via.clone();
    empty_via.headers.push(Header::Via(" ".to_string().into()));
    let mut no_sent_by = no_via.clone();
    no_sent_by.headers.push(Header::Via(
        "SIP/2.0/UDP;branch=z9hG4bKv".to_string().into(),
    ));
    for r in [no_via, no_cseq, bad_cseq, empty_via, no_sent_by] {
        assert!(matches!(
            l.handle_request(r, udp(), t0),
            ServerOutcome::Invalid(_)
        ));
    }
    assert!(l.is_empty());
    assert!(actions(&mut l).is_empty());
}

#[test]
fn responses_follow_via_rport_and_sent_by() {
    let mut l = TransactionLayer::new(TimerConfig::default());
    let t0 = Instant::now();
    let req = request("OPTIONS", "z9hG4bKr");
    let from = Peer::udp(SocketAddr::from(([127, 0, 0, 1], 40000)));
    let id = new_server_tx(&mut l, &req, from, t0);
    l.respond(id, resp(&req, 200), t0).unwrap();
    // No rport: the sent-by port.
    assert_eq!(transmits(&mut l)[0].0.addr.port(), 5070);
    let rport = request_via(
        "OPTIONS",
        "SIP/2.0/UDP 127.0.0.1:5070;rport;branch=z9hG4bKr2",
        1,
    );
    let id = new_server_tx(&mut l, &rport, from, t0);
    l.respond(id, resp(&rport, 200), t0).unwrap();
    assert_eq!(transmits(&mut l)[0].0, from);
}

// ---- timers, errors, bookkeeping -----------------------------------------------------

#[test]
fn custom_t1_t2_t4_are_honoured() {
    let cfg = TimerConfig {
        t1: Duration::from_millis(100),
        t2: Duration::from_millis(300),
        t4: Duration::from_millis(1000),
        c: secs(60),
    };
    let mut l = TransactionLayer::new(cfg);
    let t0 = Instant::now();
    // E: 100, 200, then T2 = 300 ms until F at 6.4 s.
    let opt = request("OPTIONS", "z9hG4bKf");
    l.send_request(opt.clone(), udp(), t0).unwrap();
    transmits(&mut l);
    let (sent, other) = run_until(&mut l, t0, secs(10));
    assert_eq!(&sent[..4], &ms(&[100, 300, 600, 900])[..]);
    assert_eq!(*sent.last().unwrap(), Duration::from_millis(6300));
    assert!(matches!(
        other[0],
        Action::Timeout {
            timer: Timer::F,
            ..
        }
    ));
    // A: 100, 200, 400, ... until B at 6.4 s; C after 60 s would come later.
    let t0 = t0 + secs(10);
    l.send_request(request("INVITE", "z9hG4bKf2"), udp(), t0)
        .unwrap();
    transmits(&mut l);
    let (sent, other) = run_until(&mut l, t0, secs(7));
    assert_eq!(sent, ms(&[100, 300, 700, 1500, 3100, 6300]));
    assert!(matches!(
        other[0],
        Action::Timeout {
            timer: Timer::B,
            ..
        }
    ));
    // G: 100, 200, 300, 300 ...; H at 6.4 s.
    let t0 = t0 + secs(10);
    let inv = request("INVITE", "z9hG4bKf3");
    let id = new_server_tx(&mut l, &inv, udp(), t0);
    l.respond(id, resp(&inv, 480), t0).unwrap();
    transmits(&mut l);
    let (sent, _) = run_until(&mut l, t0, Duration::from_millis(1000));
    assert_eq!(sent, ms(&[100, 300, 600, 900]));
    // I = T4 = 1 s after the ACK.
    l.handle_request(request("ACK", "z9hG4bKf3"), udp(), t0 + secs(1));
    assert_eq!(l.poll_timeout(), Some(t0 + secs(2)));
    let (_, other) = run_until(&mut l, t0, secs(2));
    assert_eq!(other, vec![Action::Terminated(id)]);
    // K = T4 after a non-INVITE final; J = 64·T1 on the server side.
    let t0 = t0 + secs(10);
    let id = l.send_request(opt.clone(), udp(), t0).unwrap();
    l.handle_response(resp(&opt, 200), udp(), t0);
    let sid = new_server_tx(&mut l, &request("OPTIONS", "z9hG4bKf4"), udp(), t0);
    l.respond(sid, resp(&opt, 200), t0).unwrap();
    actions(&mut l);
    let (_, other) = run_until(&mut l, t0, secs(10));
    assert_eq!(other, vec![Action::Terminated(id), Action::Terminated(sid)]);
    assert!(l.is_empty());
}

#[test]
fn client_invite_timer_d_is_at_least_32_s() {
    let cfg = TimerConfig {
        t1: Duration::from_millis(100),
        ..TimerConfig::default()
    };
    assert_eq!(cfg.timer_d(), secs(32));
    let slow = TimerConfig {
        t1: secs(1),
        ..TimerConfig::default()
    };
    assert_eq!(slow.timer_d(), secs(64));
    let mut l = TransactionLayer::new(cfg);
    let t0 = Instant::now();
    let req = request("INVITE", "z9hG4bKdd");
    l.send_request(req.clone(), udp(), t0).unwrap();
    l.handle_response(resp(&req, 500), udp(), t0);
    assert_eq!(l.poll_timeout(), Some(t0 + secs(32)));
}

#[test]
fn zero_timers_cannot_spin() {
    let cfg = TimerConfig {
        t1: Duration::ZERO,
        t2: Duration::ZERO,
        t4: Duration::ZERO,
        c: Duration::ZERO,
    };
    let mut l = TransactionLayer::new(cfg);
    assert_eq!(l.config().t1, Duration::from_millis(1));
    assert_eq!(l.config().t2, Duration::from_millis(1));
    let t0 = Instant::now();
    l.send_request(request("INVITE", "z9hG4bKz1"), udp(), t0)
        .unwrap();
    l.send_request(request("OPTIONS", "z9hG4bKz2"), udp(), t0)
        .unwrap();
    let req = request("INVITE", "z9hG4bKz3");
    let id = new_server_tx(&mut l, &req, udp(), t0);
    l.respond(id, resp(&req, 500), t0).unwrap();
    l.handle_timeout(t0 + secs(1));
    assert!(l.is_empty());
}

#[test]
fn huge_timers_do_not_overflow() {
    let cfg = TimerConfig {
        t1: Duration::MAX,
        t2: Duration::MAX,
        t4: Duration::MAX,
        c: Duration::MAX,
    };
    let mut l = TransactionLayer::new(cfg);
    let t0 = Instant::now();
    let req = request("INVITE", "z9hG4bKh1");
    l.send_request(req.clone(), udp(), t0).unwrap();
    l.handle_response(resp(&req, 500), udp(), t0);
    let s = request("INVITE", "z9hG4bKh2");
    let id = new_server_tx(&mut l, &s, udp(), t0);
    l.respond(id, resp(&s, 500), t0).unwrap();
    assert!(l.poll_timeout().is_some_and(|t| t > t0 + secs(3600)));
    l.handle_timeout(t0 + secs(3600));
    assert_eq!(l.len(), 2);
}

#[test]
fn a_late_timeout_call_catches_up_on_the_schedule() {
    let mut l = TransactionLayer::new(TimerConfig::default());
    let t0 = Instant::now();
    let id = l
        .send_request(request("INVITE", "z9hG4bKlate"), udp(), t0)
        .unwrap();
    transmits(&mut l);
    l.handle_timeout(t0 + secs(3600));
    let a = actions(&mut l);
    assert_eq!(
        a.iter()
            .filter(|a| matches!(a, Action::Transmit { .. }))
            .count(),
        6
    );
    assert_eq!(
        &a[6..],
        &[
            Action::Timeout {
                tx: id,
                timer: Timer::B
            },
            Action::Terminated(id)
        ]
    );
}

#[test]
fn transport_errors_end_transactions() {
    let mut l = TransactionLayer::new(TimerConfig::default());
    let t0 = Instant::now();
    let c = l
        .send_request(request("INVITE", "z9hG4bKte"), udp(), t0)
        .unwrap();
    transmits(&mut l);
    assert!(l.handle_transport_error(c, t0));
    assert_eq!(
        actions(&mut l),
        vec![Action::TransportError(c), Action::Terminated(c)]
    );
    assert!(!l.handle_transport_error(c, t0));
    assert_eq!(l.poll_timeout(), None);
    // Per peer: both transactions towards the closed connection end, the other stays.
    let s = new_server_tx(&mut l, &request("OPTIONS", "z9hG4bKt1"), tcp(), t0);
    let c2 = l
        .send_request(request("OPTIONS", "z9hG4bKt2"), tcp(), t0)
        .unwrap();
    let other = l
        .send_request(request("OPTIONS", "z9hG4bKt3"), udp(), t0)
        .unwrap();
    actions(&mut l);
    assert_eq!(l.handle_peer_unreachable(tcp(), t0), 2);
    assert_eq!(
        actions(&mut l),
        vec![
            Action::TransportError(s),
            Action::Terminated(s),
            Action::TransportError(c2),
            Action::Terminated(c2)
        ]
    );
    assert_eq!(l.len(), 1);
    assert_eq!(l.state(other), Some(State::Trying));
    // The connection's index is left with nothing (and a UDP peer was never in it).
    assert!(l.by_stream_peer.is_empty());
    assert_eq!(l.handle_peer_unreachable(tcp(), t0), 0);
    // The branch is free again once its transaction ended.
    assert!(l
        .send_request(request("OPTIONS", "z9hG4bKt2"), tcp(), t0)
        .is_ok());
    assert_eq!(l.by_stream_peer[&tcp()].len(), 1);
}

#[test]
fn ids_are_unique_and_state_is_gone_after_termination() {
    let mut l = TransactionLayer::new(TimerConfig::default());
    let t0 = Instant::now();
    let req = request("OPTIONS", "z9hG4bKid");
    let a = new_server_tx(&mut l, &req, tcp(), t0);
    l.respond(a, resp(&req, 200), t0).unwrap();
    let b = new_server_tx(&mut l, &req, tcp(), t0);
    assert_ne!(a, b);
    assert_eq!(l.state(a), None);
    assert_eq!(l.kind(a), None);
    assert_eq!(l.len(), 1);
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    const METHODS: [&str; 6] = ["INVITE", "ACK", "CANCEL", "OPTIONS", "REGISTER", "BYE"];

    /// Top Via values, some usable, some not.
    fn via(v: u8, b: u8) -> Option<String> {
        match v % 8 {
            0..=3 => Some(format!("SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK{b}")),
            4 => Some(format!("SIP/2.0/UDP 127.0.0.1:5070;branch=old{b}")),
            5 => Some("SIP/2.0/UDP 127.0.0.1:5070".into()),
            6 => Some(format!("garbage;branch=z9hG4bK{b}")),
            _ => None,
        }
    }

    /// A request or response skeleton with the given Via and CSeq, straight into the
    /// model (no parser in the way, so odd values reach the layer).
    fn build_request(m: &str, via_v: Option<String>, cseq: Option<String>) -> Request {
        let mut r = request(m, "z9hG4bK0");
        r.headers
            .retain(|h| !matches!(h, Header::Via(_) | Header::CSeq(_)));
        if let Some(v) = via_v {
            r.headers.push(Header::Via(v.into()));
        }
        if let Some(c) = cseq {
            r.headers.push(Header::CSeq(c.into()));
        }
        r
    }

    #[derive(Clone, Debug)]
    enum Ev {
        /// Received request: method, Via kind, branch, CSeq kind.
        Req(u8, u8, u8, u8),
        /// Received response: branch, CSeq method, status code, Via kind.
        Resp(u8, u8, u16, u8),
        /// TU answers the i-th transaction it was given.
        Respond(u8, u16),
        /// TU sends a request: method, branch, reliable.
        Send(u8, u8, bool),
        /// TU cancels the i-th client transaction.
        Cancel(u8),
        TransportError(u8),
        Unreachable(bool),
        Advance(u32),
        Garbage(Vec<u8>),
    }

    fn ev() -> impl Strategy<Value = Ev> {
        prop_oneof![
            4 => (0u8..6, 0u8..8, 0u8..4, 0u8..4).prop_map(|(m, v, b, c)| Ev::Req(m, v, b, c)),
            3 => (0u8..4, 0u8..6, 0u16..1000, 0u8..8).prop_map(|(b, m, c, v)| Ev::Resp(b, m, c, v)),
            3 => (0u8..12, 0u16..800).prop_map(|(t, c)| Ev::Respond(t, c)),
            2 => (0u8..6, 0u8..4, any::<bool>()).prop_map(|(m, b, r)| Ev::Send(m, b, r)),
            1 => (0u8..12).prop_map(Ev::Cancel),
            1 => (0u8..24).prop_map(Ev::TransportError),
            1 => any::<bool>().prop_map(Ev::Unreachable),
            3 => (0u32..70_000).prop_map(Ev::Advance),
            1 => proptest::collection::vec(any::<u8>(), 0..200).prop_map(Ev::Garbage),
        ]
    }

    fn config() -> impl Strategy<Value = TimerConfig> {
        (0u64..1000, 0u64..5000, 0u64..6000, 0u64..200_000).prop_map(|(t1, t2, t4, c)| {
            TimerConfig {
                t1: Duration::from_millis(t1),
                t2: Duration::from_millis(t2),
                t4: Duration::from_millis(t4),
                c: Duration::from_millis(c),
            }
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn never_panics_and_always_drains(
            events in proptest::collection::vec(ev(), 0..80),
            reliable in any::<bool>(),
            cfg in prop_oneof![Just(TimerConfig::default()), config()],
        ) {
            let mut l = TransactionLayer::new(cfg);
            let t0 = Instant::now();
            let mut now = t0;
            let peer = if reliable { tcp() } else { udp() };
            let mut server_ids = Vec::new();
            let mut client_ids = Vec::new();
            let mut sent_requests: Vec<Request> = Vec::new();
            for e in events {
                match e {
                    Ev::Req(m, v, b, c) => {
                        let method = METHODS[m as usize];
                        let cseq = match c {
                            0 | 1 => Some(format!("1 {method}")),
                            2 => Some("x y".to_string()),
                            _ => None,
                        };
                        let r = build_request(method, via(v, b), cseq);
                        match l.handle_request(r, peer, now) {
                            ServerOutcome::New(id, _) => server_ids.push(id),
                            ServerOutcome::Cancel { cancel_tx, invite_tx, .. } => {
                                server_ids.push(cancel_tx);
                                prop_assert_ne!(Some(cancel_tx), invite_tx);
                            }
                            _ => {}
                        }
                    }
                    Ev::Resp(b, m, code, v) => {
                        let method = METHODS[m as usize];
                        let base = build_request(
                            method,
                            via(v, b).map(|x| x.replace("z9hG4bK", "z9hG4bKc")),
                            Some(format!("1 {method}")),
                        );
                        let _ = l.handle_response(resp(&base, code), peer, now);
                        if let Some(r) = sent_requests.get(b as usize) {
                            let _ = l.handle_response(resp(r, code), peer, now);
                        }
                    }
                    Ev::Respond(i, code) => {
                        if let Some(id) = server_ids.get(i as usize) {
                            let _ = l.respond(*id, resp(&request("INVITE", "z9hG4bK0"), code), now);
                        }
                    }
                    Ev::Send(m, b, r) => {
                        let to = if r { tcp() } else { udp() };
                        let req = request(METHODS[m as usize], &format!("z9hG4bKc{b}"));
                        if let Ok(id) = l.send_request(req.clone(), to, now) {
                            client_ids.push(id);
                            sent_requests.push(req);
                        }
                    }
                    Ev::Cancel(i) => {
                        if let Some(c) = client_ids.get(i as usize).and_then(|id| l.cancel_for(*id)) {
                            if let Ok(id) = l.send_request(c, peer, now) {
                                client_ids.push(id);
                            }
                        }
                    }
                    Ev::TransportError(i) => {
                        let ids: Vec<TxId> = server_ids.iter().chain(&client_ids).copied().collect();
                        if let Some(id) = ids.get(i as usize) {
                            l.handle_transport_error(*id, now);
                        }
                    }
                    Ev::Unreachable(tcp_peer) => {
                        l.handle_peer_unreachable(if tcp_peer { tcp() } else { udp() }, now);
                    }
                    Ev::Advance(ms) => {
                        now += Duration::from_millis(u64::from(ms));
                        l.handle_timeout(now);
                        if let Some(t) = l.poll_timeout() {
                            prop_assert!(t > now, "a due timer was left behind");
                        }
                    }
                    Ev::Garbage(bytes) => {
                        match SipMessage::try_from(bytes.as_slice()) {
                            Ok(SipMessage::Request(r)) => match l.handle_request(r, peer, now) {
                                ServerOutcome::New(id, _) => server_ids.push(id),
                                ServerOutcome::Cancel { cancel_tx, .. } => server_ids.push(cancel_tx),
                                _ => {}
                            },
                            Ok(SipMessage::Response(r)) => { let _ = l.handle_response(r, peer, now); }
                            Err(_) => {}
                        }
                    }
                }
                while let Some(a) = l.poll_action() {
                    if let Action::Transmit { bytes, .. } = a {
                        prop_assert!(!bytes.is_empty());
                    }
                }
            }
            // Server transactions never answered stay until their user answers them;
            // answer them all, then let every timer run out.
            for id in server_ids {
                let _ = l.respond(id, resp(&request("INVITE", "z9hG4bK0"), 500), now);
            }
            for _ in 0..10_000 {
                match l.poll_timeout() {
                    Some(t) => { now = now.max(t); l.handle_timeout(now); }
                    None => break,
                }
                while l.poll_action().is_some() {}
            }
            prop_assert_eq!(l.len(), 0);
            prop_assert_eq!(l.poll_timeout(), None);
            prop_assert!(l.server_keys.is_empty() && l.client_keys.is_empty());
        }
    }
}

// ---- queued timers -------------------------------------------------------------------

#[test]
fn queued_timers_fire_in_order_and_a_disarmed_one_never_fires() {
    let mut l = TransactionLayer::new(TimerConfig::default());
    let t0 = Instant::now();
    // Three OPTIONS answered one second apart: timer J (32 s) for each, queued in order.
    let ids: Vec<TxId> = (0..3u64)
        .map(|i| {
            let req = request("OPTIONS", &format!("z9hG4bKq{i}"));
            let id = new_server_tx(&mut l, &req, udp(), t0 + secs(i));
            l.respond(id, resp(&req, 200), t0 + secs(i)).unwrap();
            id
        })
        .collect();
    actions(&mut l);
    assert_eq!(l.poll_timeout(), Some(t0 + secs(32)));
    // The second one ends early: its queue entry stays but is skipped when due.
    assert!(l.handle_transport_error(ids[1], t0 + secs(5)));
    actions(&mut l);
    let (_, other) = run_until(&mut l, t0, secs(40));
    assert_eq!(
        other,
        vec![Action::Terminated(ids[0]), Action::Terminated(ids[2])]
    );
    assert_eq!(l.poll_timeout(), None);
    assert!(l.is_empty());
}

#[test]
fn a_clock_that_goes_back_still_fires_every_queued_timer_in_order() {
    let mut l = TransactionLayer::new(TimerConfig::default());
    let t0 = Instant::now() + secs(60);
    let late = request("OPTIONS", "z9hG4bKlate");
    let id_late = new_server_tx(&mut l, &late, udp(), t0 + secs(10));
    l.respond(id_late, resp(&late, 200), t0 + secs(10)).unwrap();
    // Armed for an earlier instant than the queue's last: kept in order all the same.
    let early = request("OPTIONS", "z9hG4bKearly");
    let id_early = new_server_tx(&mut l, &early, udp(), t0);
    l.respond(id_early, resp(&early, 200), t0).unwrap();
    actions(&mut l);
    assert_eq!(l.poll_timeout(), Some(t0 + secs(32)));
    l.handle_timeout(t0 + secs(32));
    assert_eq!(actions(&mut l), vec![Action::Terminated(id_early)]);
    l.handle_timeout(t0 + secs(42));
    assert_eq!(actions(&mut l), vec![Action::Terminated(id_late)]);
    assert_eq!(l.poll_timeout(), None);
}
