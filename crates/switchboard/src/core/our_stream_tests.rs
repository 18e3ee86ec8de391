//! Our end of a stream re-described by its far end: moved, held (sendonly, inactive, the
//! old `c=0.0.0.0`), resumed, refused without the agreed codec, a re-INVITE without an
//! offer answered in the ACK, and our `o=` version.

use super::*;
use crate::test_harness::*;
use switchboard_sip::msg::headers::Header;

const TIMEOUT: Duration = Duration::from_secs(30);
const ID: SessionId = SessionId(9);

/// Our end as first answered: PCMU on 10.0.0.1:30000, `o=` version 1.
fn ours() -> OurStream {
    let local = Local {
        address: "10.0.0.1".parse().unwrap(),
        port: 30_000,
        session_id: 77,
        version: 1,
        laws: vec![Law::MuLaw, Law::ALaw],
        telephone_event: 101,
    };
    let sdp = offer_answer::offer(&local).to_bytes();
    OurStream::new(local, Law::MuLaw, sdp)
}

/// A re-INVITE (or ACK) with `sdp` as its body (none when empty).
fn with_body(method: &str, sdp: &str) -> Request {
    let content_type = if sdp.is_empty() {
        String::new()
    } else {
        "Content-Type: application/sdp\r\n".to_string()
    };
    request_of(&format!(
        "{method} sip:switchboard@10.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-r\r\n\
         Max-Forwards: 70\r\nFrom: <sip:a@example.com>;tag=a\r\nTo: <sip:b@example.com>;tag=b\r\n\
         Call-ID: re-1\r\nCSeq: 2 {method}\r\n{content_type}Content-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    ))
}

/// The far end's description: PCMU (and PCMA when `both`) at `c=` `ip` port `port`,
/// with `extra` attribute lines.
fn theirs(ip: &str, port: u16, both: bool, extra: &str) -> String {
    let formats = if both { "0 8 101" } else { "0 101" };
    format!(
        "v=0\r\no=them 5 2 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP {formats}\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\n{extra}"
    )
}

fn updates(out: &VecDeque<Output>) -> Vec<Command> {
    out.iter()
        .filter_map(|o| match o {
            Output::Media(c) => Some(c.clone()),
            _ => None,
        })
        .collect()
}

fn update_of(remote: Option<&str>, send: bool, rtp_timeout: Duration) -> Command {
    Command::Update {
        id: ID,
        remote: remote.map(|r| r.parse().unwrap()),
        send,
        rtp_timeout,
    }
}

fn text(sdp: &[u8]) -> String {
    String::from_utf8(sdp.to_vec()).unwrap()
}

#[test]
fn a_reoffer_is_answered_in_the_agreed_codec_alone_with_the_version_raised() {
    let mut s = ours();
    let mut out = VecDeque::new();
    let sdp = s
        .reoffered(
            &mut out,
            ID,
            &with_body("INVITE", &theirs("10.0.0.6", 4100, true, "")),
            TIMEOUT,
        )
        .unwrap();
    let sdp = text(&sdp);
    assert!(sdp.contains("o=switchboard 77 2 IN IP4 10.0.0.1"), "{sdp}");
    assert!(sdp.contains("m=audio 30000 RTP/AVP 0 101"), "{sdp}");
    assert!(!sdp.contains("PCMA"), "{sdp}");
    // Moved: the engine sends there from now on, with the talking timeout.
    assert_eq!(
        updates(&out),
        [update_of(Some("10.0.0.6:4100"), true, TIMEOUT)]
    );
    // Again: one version higher again.
    let sdp = s
        .reoffered(
            &mut VecDeque::new(),
            ID,
            &with_body("INVITE", &theirs("10.0.0.6", 4100, false, "")),
            TIMEOUT,
        )
        .unwrap();
    assert!(
        text(&sdp).contains("o=switchboard 77 3 IN IP4"),
        "{}",
        text(&sdp)
    );
}

#[test]
fn hold_and_resume_reach_the_engine_with_the_timeout_of_each() {
    let mut s = ours();
    let held = |extra: &str, ip: &str| with_body("INVITE", &theirs(ip, 4000, false, extra));
    let cases = [
        // On hold, playing music or not: we send nothing, and it may be silent too.
        (
            held("a=sendonly\r\n", "10.0.0.5"),
            "a=recvonly",
            update_of(Some("10.0.0.5:4000"), false, HELD_RTP_TIMEOUT),
        ),
        // It only listens (it is held, as it says): we send, it may be silent.
        (
            held("a=recvonly\r\n", "10.0.0.5"),
            "a=sendonly",
            update_of(Some("10.0.0.5:4000"), true, HELD_RTP_TIMEOUT),
        ),
        // Neither way: it may be silent for the hold's time.
        (
            held("a=inactive\r\n", "10.0.0.5"),
            "a=inactive",
            update_of(Some("10.0.0.5:4000"), false, HELD_RTP_TIMEOUT),
        ),
        // The old way (RFC 2543): no address to send to.
        (
            held("", "0.0.0.0"),
            "m=audio 30000",
            update_of(None, false, HELD_RTP_TIMEOUT),
        ),
        // Resumed.
        (
            held("", "10.0.0.5"),
            "m=audio 30000",
            update_of(Some("10.0.0.5:4000"), true, TIMEOUT),
        ),
    ];
    for (req, said, update) in cases {
        let mut out = VecDeque::new();
        let sdp = text(&s.reoffered(&mut out, ID, &req, TIMEOUT).unwrap());
        assert!(sdp.contains(said), "{sdp}");
        assert_eq!(updates(&out), [update]);
    }
}

#[test]
fn a_reoffer_without_the_agreed_codec_is_refused_and_changes_nothing() {
    let mut s = ours();
    let before = s.sdp.clone();
    let pcma = theirs("10.0.0.6", 4100, true, "").replace("RTP/AVP 0 8 101", "RTP/AVP 8 101");
    let mut out = VecDeque::new();
    let refusal = s
        .reoffered(&mut out, ID, &with_body("INVITE", &pcma), TIMEOUT)
        .unwrap_err();
    assert_eq!(refusal.code, Some(488));
    assert!(out.is_empty());
    assert_eq!(s.sdp, before);
    // Unreadable: 400; not SDP: 415.
    let garbage = with_body("INVITE", "v=0\r\nnonsense");
    assert_eq!(
        s.reoffered(&mut out, ID, &garbage, TIMEOUT)
            .unwrap_err()
            .code,
        Some(400)
    );
    let mut xml = with_body("INVITE", &theirs("10.0.0.6", 4100, true, ""));
    for h in xml.headers.iter_mut() {
        if let Header::ContentType(c) = h {
            *c = "application/xml".into();
        }
    }
    assert_eq!(
        s.reoffered(&mut out, ID, &xml, TIMEOUT).unwrap_err().code,
        Some(415)
    );
    assert!(out.is_empty());
}

#[test]
fn a_reinvite_without_an_offer_gets_a_fresh_offer_both_ways_and_the_ack_answers_it() {
    let mut s = ours();
    let mut out = VecDeque::new();
    // Held first (we answered recvonly)…
    let hold = with_body("INVITE", &theirs("10.0.0.5", 4000, false, "a=sendonly\r\n"));
    s.reoffered(&mut out, ID, &hold, TIMEOUT).unwrap();
    out.clear();
    // …then a re-INVITE without an offer: ours is fresh, both ways, in the agreed codec
    // alone, one version higher — so that the far end can take the call back.
    let sdp = text(
        &s.reoffered(&mut out, ID, &with_body("INVITE", ""), TIMEOUT)
            .unwrap(),
    );
    assert!(sdp.contains("o=switchboard 77 3 IN IP4"), "{sdp}");
    assert!(
        sdp.contains("a=sendrecv") && sdp.contains("m=audio 30000 RTP/AVP 0 101"),
        "{sdp}"
    );
    assert!(out.is_empty());
    // A re-offer while its answer is awaited: 491, nothing changes.
    let err = s
        .reoffered(
            &mut out,
            ID,
            &with_body("INVITE", &theirs("10.0.0.6", 4100, false, "")),
            TIMEOUT,
        )
        .unwrap_err();
    assert_eq!(err.code, Some(491));
    // The ACK's answer: resumed at a new address.
    let answer = theirs("10.0.0.8", 4200, false, "");
    s.acked(&mut out, ID, &with_body("ACK", &answer), TIMEOUT);
    assert_eq!(
        updates(&out),
        [update_of(Some("10.0.0.8:4200"), true, TIMEOUT)]
    );
    // Only that ACK answers: a later one is nothing.
    out.clear();
    s.acked(&mut out, ID, &with_body("ACK", &answer), TIMEOUT);
    assert!(out.is_empty());
    // An ACK that answers nothing usable leaves the stream as it was.
    s.reoffered(&mut out, ID, &with_body("INVITE", ""), TIMEOUT)
        .unwrap();
    s.acked(&mut out, ID, &with_body("ACK", ""), TIMEOUT);
    assert!(out.is_empty());
}

#[test]
fn a_stream_without_events_never_describes_them() {
    let mut s = ours().with_events(false);
    let mut out = VecDeque::new();
    let offer = with_body("INVITE", &theirs("10.0.0.5", 4000, false, ""));
    let answer = text(&s.reoffered(&mut out, ID, &offer, TIMEOUT).unwrap());
    assert!(
        !answer.contains("telephone-event") && answer.contains("RTP/AVP 0\r\n"),
        "{answer}"
    );
    s.acked(&mut out, ID, &with_body("ACK", ""), TIMEOUT);
    let fresh = text(
        &s.reoffered(&mut out, ID, &with_body("INVITE", ""), TIMEOUT)
            .unwrap(),
    );
    assert!(!fresh.contains("telephone-event"), "{fresh}");
}
