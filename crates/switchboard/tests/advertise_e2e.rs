//! The daemon bound to every interface (`0.0.0.0`), with and without an advertised name,
//! and with two listeners a call crosses: what a peer sees in Via, Record-Route and
//! Contact, where replies come from, and in-dialog requests routed back from either
//! side. Raw UDP peers on loopback (127.0.0.0/8 is all this machine's on Linux, so
//! 127.0.0.2 and 127.0.0.3 stand for a second address), and baresip.

mod common;

use common::baresip::Baresip;
use common::*;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(5);

/// A raw SIP user agent on a UDP socket of its own (127.0.0.1, an ephemeral port): sends
/// text, receives messages with the address they came from, answers requests.
struct Ua {
    sock: UdpSocket,
    /// Every message received, for the checks that span them all.
    seen: Vec<String>,
    /// Messages received and not yet expected (a NOTIFY before the 200 to its
    /// SUBSCRIBE, a 100 Trying, a retransmission).
    pending: Vec<(String, SocketAddr)>,
}

impl Ua {
    fn new() -> Ua {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        Ua {
            sock,
            seen: Vec::new(),
            pending: Vec::new(),
        }
    }

    fn at(&self) -> SocketAddr {
        self.sock.local_addr().unwrap()
    }

    fn send(&self, to: SocketAddr, text: &str) {
        self.sock.send_to(text.as_bytes(), to).unwrap();
    }

    /// The first message (received before or within [`WAIT`]) that starts with `start`
    /// and holds `with`, with where it came from; panics when none comes.
    fn expect_with(&mut self, start: &str, with: &str) -> (String, SocketAddr) {
        let fits = |t: &str| t.starts_with(start) && t.contains(with);
        if let Some(i) = self.pending.iter().position(|(t, _)| fits(t)) {
            return self.pending.remove(i);
        }
        let deadline = Instant::now() + WAIT;
        let mut buf = vec![0u8; 65536];
        loop {
            let left = deadline
                .checked_duration_since(Instant::now())
                .unwrap_or_else(|| {
                    panic!(
                        "no {start:?} with {with:?} within {WAIT:?}; got {:#?}",
                        self.seen
                    )
                });
            self.sock
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            if let Ok((n, from)) = self.sock.recv_from(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                self.seen.push(text.clone());
                if fits(&text) {
                    return (text, from);
                }
                self.pending.push((text, from));
            }
        }
    }

    /// [`Ua::expect_with`] anything after `start`.
    fn expect(&mut self, start: &str) -> (String, SocketAddr) {
        self.expect_with(start, "")
    }
}

fn one(msg: &str, name: &str) -> String {
    header_values(msg, name)
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no {name} in {msg}"))
}

/// The URI inside a header value's `<>`.
fn uri_of(v: &str) -> String {
    v.split('<')
        .nth(1)
        .and_then(|r| r.split('>').next())
        .unwrap_or(v)
        .to_string()
}

/// A response of a UA to `req`: its Vias, Record-Routes, From, Call-ID and CSeq copied,
/// its To with `tag`, a Contact at `me`.
fn respond(req: &str, status: &str, tag: &str, me: SocketAddr) -> String {
    let mut out = format!("SIP/2.0 {status}\r\n");
    for v in header_values(req, "Via") {
        out += &format!("Via: {v}\r\n");
    }
    for r in header_values(req, "Record-Route") {
        out += &format!("Record-Route: {r}\r\n");
    }
    let to = one(req, "To");
    let to = if to.contains("tag=") {
        to
    } else {
        format!("{to};tag={tag}")
    };
    out += &format!(
        "From: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {}\r\nContact: <sip:ua@{me}>\r\n\
         Content-Length: 0\r\n\r\n",
        one(req, "From"),
        one(req, "Call-ID"),
        one(req, "CSeq"),
    );
    out
}

fn register(ua: &mut Ua, user: &str, ruri_host: &str, to: SocketAddr) {
    let me = ua.at();
    ua.send(
        to,
        &format!(
            "REGISTER sip:{ruri_host} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-reg-{user};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:{user}@{REALM}>;tag=r-{user}\r\nTo: <sip:{user}@{REALM}>\r\n\
             Call-ID: reg-{user}-{}\r\nCSeq: 1 REGISTER\r\nContact: <sip:{user}@{me}>\r\nExpires: 600\r\n\
             Content-Length: 0\r\n\r\n",
            me.port()
        ),
    );
    let (ok, from) = ua.expect("SIP/2.0 ");
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    assert_eq!(from, to, "the answer comes from where the REGISTER went");
}

fn invite(ua: &Ua, to: SocketAddr, call: &str) {
    let me = ua.at();
    let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\n";
    ua.send(
        to,
        &format!(
            "INVITE sip:1002@{REALM} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-{call};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:alice@{REALM}>;tag=a-{call}\r\nTo: <sip:1002@{REALM}>\r\n\
             Call-ID: {call}\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@{me}>\r\n\
             Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        ),
    );
}

/// A request inside the dialog of `call`, along `routes` (top first).
#[allow(clippy::too_many_arguments)]
fn in_dialog(
    ua: &Ua,
    to: SocketAddr,
    method: &str,
    ruri: &str,
    from: &str,
    to_hdr: &str,
    call: &str,
    cseq: u32,
    routes: &[String],
) {
    let me = ua.at();
    ua.send(
        to,
        &format!(
            "{method} {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-{method}-{call}-{cseq};rport\r\n\
             Route: {}\r\nMax-Forwards: 70\r\nFrom: {from}\r\nTo: {to_hdr}\r\nCall-ID: {call}\r\n\
             CSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n",
            routes.join(", ")
        ),
    );
}

/// A daemon without authentication, listening as `listen` says.
fn daemon(listen: &[&str]) -> Daemon {
    Daemon::start(Options {
        auth: false,
        listen: listen.iter().map(|l| l.to_string()).collect(),
        ..Options::default()
    })
}

fn addr(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap(), port)
}

/// Bound to every interface and advertising a public address: the callee sees that
/// address in Via and Record-Route, a watcher in the Contact and Via of the NOTIFY the
/// daemon sends, and requests naming it (Request-URI, Route) are the daemon's own.
#[test]
fn an_advertised_address_is_what_peers_see() {
    let d = daemon(&[r#"{ addr = "udp:0.0.0.0:{port}", advertise = "203.0.113.5:5060" }"#]);
    let us = d.addr();
    let (mut alice, mut bob) = (Ua::new(), Ua::new());
    // A REGISTER to the advertised address is for us.
    register(&mut bob, "bob", "203.0.113.5:5060", us);

    invite(&alice, us, "adv-1");
    let (inv, from) = bob.expect("INVITE ");
    assert_eq!(from, us);
    let via = one(&inv, "Via");
    assert!(
        via.starts_with("SIP/2.0/UDP 203.0.113.5:5060;branch="),
        "{inv}"
    );
    let rr = header_values(&inv, "Record-Route");
    assert_eq!(rr.len(), 1, "{inv}");
    assert!(rr[0].starts_with("<sip:203.0.113.5:5060;lr;sbt="), "{inv}");

    bob.send(us, &respond(&inv, "200 OK", "b1", bob.at()));
    let (ok, _) = alice.expect("SIP/2.0 200");
    assert_eq!(header_values(&ok, "Record-Route"), rr);
    // alice's ACK and BYE along that Route (sent to the daemon's real address, as a NAT
    // in front of it would deliver them) reach bob with our Route consumed.
    let bob_uri = uri_of(&one(&ok, "Contact"));
    let (from_hdr, to_hdr) = (one(&ok, "From"), one(&ok, "To"));
    in_dialog(
        &alice, us, "ACK", &bob_uri, &from_hdr, &to_hdr, "adv-1", 1, &rr,
    );
    let (ack, _) = bob.expect("ACK ");
    assert!(header_values(&ack, "Route").is_empty(), "{ack}");
    in_dialog(
        &alice, us, "BYE", &bob_uri, &from_hdr, &to_hdr, "adv-1", 2, &rr,
    );
    let (bye, _) = bob.expect("BYE ");
    assert!(
        one(&bye, "Via").starts_with("SIP/2.0/UDP 203.0.113.5:5060;"),
        "{bye}"
    );
    bob.send(us, &respond(&bye, "200 OK", "b1", bob.at()));
    alice.expect("SIP/2.0 200");

    // alice watches bob's line: the 200 and the NOTIFY the daemon sends name the
    // advertised address.
    let mut watcher = Ua::new();
    let me = watcher.at();
    watcher.send(
        us,
        &format!(
            "SUBSCRIBE sip:bob@{REALM} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-sub1;rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:alice@{REALM}>;tag=w1\r\nTo: <sip:bob@{REALM}>\r\n\
             Call-ID: watch-adv\r\nCSeq: 1 SUBSCRIBE\r\nContact: <sip:alice@{me}>\r\nEvent: dialog\r\n\
             Expires: 600\r\nContent-Length: 0\r\n\r\n"
        ),
    );
    let (ok, _) = watcher.expect("SIP/2.0 200");
    assert_eq!(one(&ok, "Contact"), "<sip:203.0.113.5:5060>", "{ok}");
    let (notify, from) = watcher.expect("NOTIFY ");
    assert_eq!(from, us, "from where the SUBSCRIBE went");
    assert_eq!(
        one(&notify, "Contact"),
        "<sip:203.0.113.5:5060>",
        "{notify}"
    );
    assert!(
        one(&notify, "Via").starts_with("SIP/2.0/UDP 203.0.113.5:5060;"),
        "{notify}"
    );
    watcher.send(us, &respond(&notify, "200 OK", "w1", me));

    for m in alice.seen.iter().chain(&bob.seen).chain(&watcher.seen) {
        assert!(!m.contains("0.0.0.0"), "{m}");
    }
}

/// Bound to every interface without an advertised name: headers name the address a
/// message came to or leaves from, never 0.0.0.0; a reply leaves from the address its
/// request was sent to; a call arriving at one address and leaving from another is
/// record-routed twice, and a BYE from either side comes back along both entries.
#[test]
fn bound_to_every_interface_the_real_addresses_show() {
    let d = daemon(&["\"udp:0.0.0.0:{port}\"", "\"tcp:0.0.0.0:{port}\""]);
    let port = d.port;
    let (lo, other) = (addr("127.0.0.1", port), addr("127.0.0.3", port));
    let (mut alice, mut bob) = (Ua::new(), Ua::new());
    register(&mut bob, "bob", "127.0.0.1", lo);

    // alice reaches the daemon at 127.0.0.3; bob's flow is at 127.0.0.1.
    invite(&alice, other, "any-1");
    let (_, from) = alice.expect("SIP/2.0 100");
    assert_eq!(
        from, other,
        "a reply leaves from the address the request came to"
    );
    let (inv, from) = bob.expect("INVITE ");
    assert_eq!(from, lo, "from the address bob registered to");
    assert!(
        one(&inv, "Via").starts_with(&format!("SIP/2.0/UDP {lo};branch=")),
        "{inv}"
    );
    let rr = header_values(&inv, "Record-Route");
    assert_eq!(rr.len(), 2, "{inv}");
    assert!(
        rr[0].starts_with(&format!("<sip:{lo};lr;sbt=")),
        "bob's side on top: {inv}"
    );
    assert!(rr[1].starts_with(&format!("<sip:{other};lr;sbt=")), "{inv}");

    bob.send(lo, &respond(&inv, "200 OK", "b1", bob.at()));
    let (ok, from) = alice.expect("SIP/2.0 200");
    assert_eq!(from, other);
    let alice_routes: Vec<String> = rr.iter().rev().cloned().collect();
    let bob_uri = uri_of(&one(&ok, "Contact"));
    in_dialog(
        &alice,
        other,
        "ACK",
        &bob_uri,
        &one(&ok, "From"),
        &one(&ok, "To"),
        "any-1",
        1,
        &alice_routes,
    );
    let (ack, from) = bob.expect("ACK ");
    assert_eq!(from, lo);
    assert!(
        header_values(&ack, "Route").is_empty(),
        "both entries consumed: {ack}"
    );

    // bob hangs up along his route set (as received): the BYE reaches alice from the
    // address she knows us by.
    let alice_uri = uri_of(&one(&inv, "Contact"));
    in_dialog(
        &bob,
        lo,
        "BYE",
        &alice_uri,
        &one(&ok, "To"),
        &one(&ok, "From"),
        "any-1",
        1,
        &rr,
    );
    let (bye, from) = alice.expect("BYE ");
    assert_eq!(from, other);
    assert!(header_values(&bye, "Route").is_empty(), "{bye}");
    assert!(
        one(&bye, "Via").starts_with(&format!("SIP/2.0/UDP {other};")),
        "{bye}"
    );
    alice.send(other, &respond(&bye, "200 OK", "", alice.at()));
    let (ok, from) = bob.expect("SIP/2.0 200");
    assert_eq!(from, lo);
    assert!(one(&ok, "CSeq").ends_with("BYE"), "{ok}");

    for m in alice.seen.iter().chain(&bob.seen) {
        assert!(!m.contains("0.0.0.0"), "{m}");
    }
}

/// Over TCP too: a phone connected to one address of a listener bound to every interface
/// is called over its connection, named by that address (with the transport), while the
/// caller's side is named by the address it sent to over UDP.
#[test]
fn a_tcp_flow_names_the_address_it_connected_to() {
    let d = daemon(&["\"udp:0.0.0.0:{port}\"", "\"tcp:0.0.0.0:{port}\""]);
    let port = d.port;
    let (lo, other) = (addr("127.0.0.1", port), addr("127.0.0.3", port));
    let mut bob = SipConn::connect(other, WAIT).expect("connect");
    let me = bob.stream.local_addr().unwrap();
    bob.send(
        format!(
            "REGISTER sip:{REALM} SIP/2.0\r\nVia: SIP/2.0/TCP {me};branch=z9hG4bK-treg\r\n\
             Max-Forwards: 70\r\nFrom: <sip:bob@{REALM}>;tag=t1\r\nTo: <sip:bob@{REALM}>\r\n\
             Call-ID: treg\r\nCSeq: 1 REGISTER\r\nContact: <sip:bob@{me};transport=tcp>\r\n\
             Expires: 600\r\nContent-Length: 0\r\n\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
    let ok = bob.recv(WAIT).expect("an answer");
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    let mut alice = Ua::new();
    invite(&alice, lo, "tcp-1");
    alice.expect("SIP/2.0 100");
    let inv = bob.recv(WAIT).expect("the INVITE");
    assert!(inv.starts_with("INVITE "), "{inv}");
    assert!(
        one(&inv, "Via").starts_with(&format!("SIP/2.0/TCP {other};branch=")),
        "{inv}"
    );
    let rr = header_values(&inv, "Record-Route");
    assert_eq!(rr.len(), 2, "{inv}");
    assert!(
        rr[0].starts_with(&format!("<sip:{other};transport=tcp;lr;sbt=")),
        "{inv}"
    );
    assert!(rr[1].starts_with(&format!("<sip:{lo};lr;sbt=")), "{inv}");
    assert!(!inv.contains("0.0.0.0"), "{inv}");
}

/// Two listeners on two addresses: a call arriving at one and leaving from the other
/// gets two Record-Route entries (the callee's side on top), and each side's in-dialog
/// requests come back along both, from the address that side knows.
#[test]
fn two_listeners_record_route_twice_and_route_back_either_way() {
    let d = daemon(&["\"udp:127.0.0.1:{port}\"", "\"udp:127.0.0.2:{port}\""]);
    let (one_side, two_side) = (addr("127.0.0.1", d.port), addr("127.0.0.2", d.port));
    let (mut alice, mut bob) = (Ua::new(), Ua::new());
    register(&mut bob, "bob", "127.0.0.2", two_side);
    for (call, caller_hangs_up) in [("two-1", true), ("two-2", false)] {
        invite(&alice, one_side, call);
        let (inv, from) = bob.expect_with("INVITE ", call);
        assert_eq!(from, two_side);
        assert!(
            one(&inv, "Via").starts_with(&format!("SIP/2.0/UDP {two_side};")),
            "{inv}"
        );
        let rr = header_values(&inv, "Record-Route");
        assert_eq!(rr.len(), 2, "{inv}");
        assert!(
            rr[0].starts_with(&format!("<sip:{two_side};lr;sbt=")),
            "{inv}"
        );
        assert!(
            rr[1].starts_with(&format!("<sip:{one_side};lr;sbt=")),
            "{inv}"
        );
        bob.send(two_side, &respond(&inv, "200 OK", "b1", bob.at()));
        let (ok, from) = alice.expect_with("SIP/2.0 200", call);
        assert_eq!(from, one_side);
        assert_eq!(header_values(&ok, "Record-Route"), rr);
        let alice_routes: Vec<String> = rr.iter().rev().cloned().collect();
        let (bob_uri, alice_uri) = (uri_of(&one(&ok, "Contact")), uri_of(&one(&inv, "Contact")));
        let (a_from, a_to) = (one(&ok, "From"), one(&ok, "To"));
        in_dialog(
            &alice,
            one_side,
            "ACK",
            &bob_uri,
            &a_from,
            &a_to,
            call,
            1,
            &alice_routes,
        );
        let (ack, from) = bob.expect("ACK ");
        assert_eq!(from, two_side);
        assert!(header_values(&ack, "Route").is_empty(), "{ack}");
        if caller_hangs_up {
            in_dialog(
                &alice,
                one_side,
                "BYE",
                &bob_uri,
                &a_from,
                &a_to,
                call,
                2,
                &alice_routes,
            );
            let (bye, from) = bob.expect("BYE ");
            assert_eq!(from, two_side);
            assert!(header_values(&bye, "Route").is_empty(), "{bye}");
            bob.send(two_side, &respond(&bye, "200 OK", "b1", bob.at()));
            let (ok, from) = alice.expect("SIP/2.0 200");
            assert_eq!(from, one_side);
            assert!(one(&ok, "CSeq").ends_with("BYE"), "{ok}");
        } else {
            in_dialog(
                &bob, two_side, "BYE", &alice_uri, &a_to, &a_from, call, 1, &rr,
            );
            let (bye, from) = alice.expect("BYE ");
            assert_eq!(from, one_side);
            assert!(header_values(&bye, "Route").is_empty(), "{bye}");
            alice.send(one_side, &respond(&bye, "200 OK", "", alice.at()));
            let (ok, from) = bob.expect("SIP/2.0 200");
            assert_eq!(from, two_side);
            assert!(one(&ok, "CSeq").ends_with("BYE"), "{ok}");
        }
    }
}

/// baresip registers and calls through the daemon bound to every interface, which
/// advertises 127.0.0.3 (another address of the machine): alice sends to 127.0.0.1, bob
/// to the advertised address; each calls the other and hangs up, and the other side
/// gets the BYE routed by the advertised Record-Route.
#[test]
fn baresip_registers_and_calls_through_every_interface() {
    let d = Daemon::start(Options {
        listen: vec![
            r#"{ addr = "udp:0.0.0.0:{port}", advertise = "127.0.0.3" }"#.into(),
            "\"tcp:0.0.0.0:{port}\"".into(),
        ],
        ..Options::default()
    });
    let alice = Baresip::start(&d, "alice", addr("127.0.0.1", d.port));
    let bob = Baresip::start(&d, "bob", addr("127.0.0.3", d.port));
    for user in ["alice", "bob"] {
        assert!(
            wait_until(WAIT, Duration::from_millis(30), || d
                .log_contains(&format!("binding stored aor={user} "))
                .then_some(()))
            .is_some(),
            "{}",
            d.log()
        );
    }
    for (caller, callee, dialled) in [(&alice, &bob, "1002"), (&bob, &alice, "1001")] {
        let (mc, me) = (caller.proc.log_len(), callee.proc.log_len());
        caller.command(&format!("/dial sip:{dialled}@{REALM}"));
        callee.wait(me, "Call established:", "answering");
        caller.wait(mc, "Call established:", "calling");
        let me = callee.proc.log_len();
        caller.command("/hangup");
        callee.wait(me, "session closed:", "getting the caller's BYE");
    }
    // What the phones were sent named the advertised address, never the wildcard.
    let rr = format!("Record-Route: <sip:127.0.0.3:{};lr;sbt=", d.port);
    for phone in [&alice, &bob] {
        let log = phone.since(0);
        assert!(log.contains(&rr), "{log}");
        assert!(!log.contains("0.0.0.0"), "{log}");
    }
}
