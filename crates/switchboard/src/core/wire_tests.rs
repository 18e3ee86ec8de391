//! How the core names itself: listeners bound to every interface, advertised names, and a
//! call crossing from one listener to another (driven through the whole core, see
//! test_harness).

use crate::test_harness::*;
use std::net::SocketAddr;
use switchboard_sip::transport::{FixedInterfaces, Listener};

fn listener(text: &str, advertise: Option<&str>) -> Listener {
    Listener {
        advertise: advertise.map(|a| a.parse().unwrap()),
        ..text.parse().unwrap()
    }
}

fn net(listeners: Vec<Listener>, own: &[&str]) -> Net {
    Net {
        listeners,
        interfaces: Some(FixedInterfaces(
            own.iter().map(|a| a.parse().unwrap()).collect(),
        )),
    }
}

/// Every value of header `name` in `msg`, in order (one per line; no comma splitting).
fn headers(msg: &str, name: &str) -> Vec<String> {
    msg.lines()
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().to_string())
        .collect()
}

/// The one message sent to `at` (with where it left from).
fn one_to(
    out: &[(SocketAddr, Option<SocketAddr>, String)],
    at: &str,
    method: &str,
) -> (Option<SocketAddr>, String) {
    let m: Vec<_> = out
        .iter()
        .filter(|(to, _, text)| *to == addr(at) && text.starts_with(method))
        .map(|(_, from, text)| (*from, text.clone()))
        .collect();
    assert_eq!(m.len(), 1, "{out:?}");
    m[0].clone()
}

fn register_at(t: &mut T, user: &str, from: &str, at: &str) {
    let text = format!(
        "REGISTER sip:switchboard.local SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bK-reg-{user};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:{user}@switchboard.local>;tag=r\r\nTo: <sip:{user}@switchboard.local>\r\n\
         Call-ID: reg-{user}\r\nCSeq: 1 REGISTER\r\nContact: <sip:{user}@{from}>\r\nExpires: 3600\r\n\
         Content-Length: 0\r\n\r\n"
    );
    t.input_at(from, at, &text);
    let (from_ours, ok) = one_to(&t.take_from(), from, "SIP/2.0 200");
    assert_eq!(from_ours, Some(addr(at)), "answered from where it came to");
    let _ = ok;
}

/// An in-dialog request from a UA with the given Route set (top first).
fn in_dialog_routed(
    method: &str,
    ruri: &str,
    resp: &str,
    routes: &[String],
    from_at: &str,
    cseq: u32,
) -> String {
    let from = header(resp, "From").unwrap();
    let to = header(resp, "To").unwrap();
    let call = header(resp, "Call-ID").unwrap();
    format!(
        "{method} sip:{ruri} SIP/2.0\r\nVia: SIP/2.0/UDP {from_at};branch=z9hG4bK-{method}-{cseq};rport\r\n\
         Route: {}\r\nMax-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {call}\r\nCSeq: {cseq} {method}\r\n\
         Content-Length: 0\r\n\r\n",
        routes.join(", ")
    )
}

#[test]
fn an_advertised_name_is_in_via_record_route_and_contact_and_is_ours() {
    let mut t = T::with_net(
        false,
        net(
            vec![listener("udp:0.0.0.0:5060", Some("pbx.example.com"))],
            &["127.0.0.1", "192.0.2.7"],
        ),
    );
    register_at(&mut t, "bob", BOB, "127.0.0.1:5060");
    t.input_at(
        ALICE,
        "192.0.2.7:5060",
        &invite("alice", ALICE, "1002", "adv1", ""),
    );
    let out = t.take_from();
    let (from, branch) = one_to(&out, BOB, "INVITE");
    assert_eq!(from, Some(addr("127.0.0.1:5060")), "bob's flow");
    let via = header(&branch, "Via").unwrap();
    assert!(
        via.starts_with("SIP/2.0/UDP pbx.example.com:5060;branch="),
        "{branch}"
    );
    let rr = headers(&branch, "Record-Route");
    assert_eq!(rr.len(), 1, "one name on both sides: {branch}");
    assert!(
        rr[0].starts_with("<sip:pbx.example.com:5060;lr;sbt="),
        "{branch}"
    );
    let (from, trying) = one_to(&out, ALICE, "SIP/2.0 100");
    assert_eq!(from, Some(addr("192.0.2.7:5060")), "{trying}");

    let ok = answer(&branch, 200, "bob1", BOB);
    t.input_at(BOB, "127.0.0.1:5060", &ok);
    let relayed = one_to(&t.take_from(), ALICE, "SIP/2.0 200").1;
    // The caller's BYE along the advertised Route: ours, consumed, on to bob.
    let bye = in_dialog_routed("BYE", "bob@127.0.0.1:5072", &relayed, &rr, ALICE, 2);
    t.input_at(ALICE, "192.0.2.7:5060", &bye);
    let (from, bye) = one_to(&t.take_from(), BOB, "BYE");
    assert_eq!(from, Some(addr("127.0.0.1:5060")));
    assert!(!bye.contains("Route:"), "{bye}");
    assert!(
        header(&bye, "Via")
            .unwrap()
            .starts_with("SIP/2.0/UDP pbx.example.com:5060;"),
        "{bye}"
    );

    // A subscription's 200 and NOTIFY name the advertised host too.
    let sub = format!(
        "SUBSCRIBE sip:bob@pbx.example.com SIP/2.0\r\nVia: SIP/2.0/UDP {CAROL};branch=z9hG4bK-w1;rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:carol@switchboard.local>;tag=w1\r\nTo: <sip:bob@switchboard.local>\r\n\
         Call-ID: watch-bob\r\nCSeq: 1 SUBSCRIBE\r\nContact: <sip:carol@{CAROL}>\r\nEvent: dialog\r\n\
         Expires: 3600\r\nContent-Length: 0\r\n\r\n"
    );
    t.input_at(CAROL, "127.0.0.1:5060", &sub);
    let out = t.take_from();
    let (_, ok) = one_to(&out, CAROL, "SIP/2.0 200");
    assert_eq!(
        header(&ok, "Contact"),
        Some("<sip:pbx.example.com:5060>"),
        "{ok}"
    );
    let (from, notify) = one_to(&out, CAROL, "NOTIFY");
    assert_eq!(
        from,
        Some(addr("127.0.0.1:5060")),
        "from where it subscribed"
    );
    assert_eq!(
        header(&notify, "Contact"),
        Some("<sip:pbx.example.com:5060>")
    );
    assert!(
        header(&notify, "Via")
            .unwrap()
            .starts_with("SIP/2.0/UDP pbx.example.com:5060;"),
        "{notify}"
    );
    assert!(
        !out.iter().any(|(_, _, m)| m.contains("0.0.0.0")),
        "{out:?}"
    );

    // What names us: the name (at its port, or none), every address of this machine at
    // the listener's port; not other addresses, ports or names.
    let w = &t.core.wire;
    for ours in [
        "sip:pbx.example.com:5060;lr",
        "sip:PBX.example.com;lr",
        "sip:127.0.0.1:5060;lr",
        "sip:192.0.2.7;lr",
        "sip:switchboard.local;lr",
    ] {
        assert!(w.uri_is_ours(ours), "{ours}");
    }
    for not_ours in [
        "sip:pbx.example.com:5070;lr",
        "sip:other.example.com;lr",
        "sip:192.0.2.8:5060;lr",
        "sip:127.0.0.1:5061;lr",
        "sip:0.0.0.0:5060;lr",
        "sip:[::1]:5060;lr",
    ] {
        assert!(!w.uri_is_ours(not_ours), "{not_ours}");
    }
    assert!(w.is_local_host("pbx.example.com") && w.is_local_host("192.0.2.7"));
    assert!(!w.is_local_host("192.0.2.8") && !w.is_local_host("0.0.0.0"));
}

#[test]
fn bound_to_every_interface_headers_name_the_real_address() {
    let mut t = T::with_net(
        false,
        net(
            vec![listener("udp:0.0.0.0:5060", None)],
            &["127.0.0.1", "192.0.2.7"],
        ),
    );
    register_at(&mut t, "bob", BOB, "127.0.0.1:5060");
    // The call came to 192.0.2.7 and leaves toward bob from 127.0.0.1: each side is
    // named by the address it knows us by, the outbound one on top.
    t.input_at(
        ALICE,
        "192.0.2.7:5060",
        &invite("alice", ALICE, "1002", "any1", ""),
    );
    let out = t.take_from();
    assert!(
        !out.iter().any(|(_, _, m)| m.contains("0.0.0.0")),
        "{out:?}"
    );
    let (_, branch) = one_to(&out, BOB, "INVITE");
    assert!(
        header(&branch, "Via")
            .unwrap()
            .starts_with("SIP/2.0/UDP 127.0.0.1:5060;"),
        "{branch}"
    );
    let rr = headers(&branch, "Record-Route");
    assert_eq!(rr.len(), 2, "{branch}");
    assert!(rr[0].starts_with("<sip:127.0.0.1:5060;lr;sbt="), "{branch}");
    assert!(rr[1].starts_with("<sip:192.0.2.7:5060;lr;sbt="), "{branch}");

    // A next hop with no flow of ours (a trunk): the address the routes choose toward
    // it, and that address is what it leaves from.
    t.input_at(
        ALICE,
        "192.0.2.7:5060",
        &invite("alice", ALICE, "+441632960001", "any2", ""),
    );
    let out = t.take_from();
    let (from, branch) = one_to(&out, CARRIER, "INVITE");
    assert_eq!(from, Some(addr("127.0.0.1:5060")));
    assert!(
        header(&branch, "Via")
            .unwrap()
            .starts_with("SIP/2.0/UDP 127.0.0.1:5060;"),
        "{branch}"
    );
    assert!(
        !out.iter().any(|(_, _, m)| m.contains("0.0.0.0")),
        "{out:?}"
    );
}

#[test]
fn a_call_across_two_listeners_is_record_routed_twice_and_routed_back_either_way() {
    let mut t = T::with_net(
        false,
        net(
            vec![
                listener("udp:127.0.0.1:5060", None),
                listener("udp:127.0.0.2:5060", None),
            ],
            &["127.0.0.1", "127.0.0.2"],
        ),
    );
    register_at(&mut t, "bob", BOB, "127.0.0.2:5060");
    t.input_at(
        ALICE,
        "127.0.0.1:5060",
        &invite("alice", ALICE, "1002", "two1", ""),
    );
    let out = t.take_from();
    let (from, branch) = one_to(&out, BOB, "INVITE");
    assert_eq!(from, Some(addr("127.0.0.2:5060")));
    assert!(
        header(&branch, "Via")
            .unwrap()
            .starts_with("SIP/2.0/UDP 127.0.0.2:5060;"),
        "{branch}"
    );
    // RFC 5658: the entry the callee faces on top, the caller's below it.
    let rr = headers(&branch, "Record-Route");
    assert_eq!(rr.len(), 2, "{branch}");
    assert!(rr[0].starts_with("<sip:127.0.0.2:5060;lr;sbt="), "{branch}");
    assert!(rr[1].starts_with("<sip:127.0.0.1:5060;lr;sbt="), "{branch}");

    let ok = answer(&branch, 200, "bob1", BOB);
    t.input_at(BOB, "127.0.0.2:5060", &ok);
    let (from, relayed) = one_to(&t.take_from(), ALICE, "SIP/2.0 200");
    assert_eq!(from, Some(addr("127.0.0.1:5060")));
    assert_eq!(headers(&relayed, "Record-Route"), rr);

    // The caller's route set is the Record-Route reversed; both entries are ours and
    // consumed, and the request leaves toward bob from the callee's side.
    let caller_routes: Vec<String> = rr.iter().rev().cloned().collect();
    let ack = in_dialog_routed(
        "ACK",
        "bob@127.0.0.1:5072",
        &relayed,
        &caller_routes,
        ALICE,
        1,
    );
    t.input_at(ALICE, "127.0.0.1:5060", &ack);
    let (from, ack) = one_to(&t.take_from(), BOB, "ACK");
    assert_eq!(from, Some(addr("127.0.0.2:5060")));
    assert!(!ack.contains("Route:"), "{ack}");

    // The callee's BYE (its route set as received) comes back to the caller from the
    // caller's side.
    let bye = format!(
        "BYE sip:alice@{ALICE} SIP/2.0\r\nVia: SIP/2.0/UDP {BOB};branch=z9hG4bK-bye-b;rport\r\n\
         Route: {}\r\nMax-Forwards: 70\r\nFrom: {}\r\nTo: {}\r\nCall-ID: two1\r\nCSeq: 1 BYE\r\n\
         Content-Length: 0\r\n\r\n",
        rr.join(", "),
        header(&relayed, "To").unwrap(),
        header(&relayed, "From").unwrap(),
    );
    t.input_at(BOB, "127.0.0.2:5060", &bye);
    let (from, bye) = one_to(&t.take_from(), ALICE, "BYE");
    assert_eq!(from, Some(addr("127.0.0.1:5060")));
    assert!(!bye.contains("Route:"), "{bye}");
    assert!(
        header(&bye, "Via")
            .unwrap()
            .starts_with("SIP/2.0/UDP 127.0.0.1:5060;"),
        "{bye}"
    );
}
