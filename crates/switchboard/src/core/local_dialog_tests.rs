//! Announcements the call is for, driven through the whole core: answered ones (200 OK,
//! the daemon the UAS of the dialog: ACK, BYE both ways, INFO, OPTIONS, re-INVITE, RTP
//! timeout) and refused offers (488 with a Warning, 503). The engine's part is played by
//! the test.

use super::*;
use crate::core::Input;
use crate::test_harness::*;
use switchboard_media::session::Counters;

/// Erin has no phone: her calls go to the `closed` announcement, answered, then hung up;
/// frank's to `early` (early media, then 480); gina's to `first`, answered, then `closed`
/// in the same call.
const POLICY: &str = r#"
[users.gina]
extension = "1007"
no_answer = "announcement:first"
[destinations.first]
kind = "announcement"
message = "fwd"
answer = true
next = "announcement:closed"
[users.erin]
extension = "1005"
no_answer = "announcement:closed"
[users.frank]
extension = "1006"
no_answer = "announcement:early"
[destinations.closed]
kind = "announcement"
message = "fwd"
answer = true
[destinations.early]
kind = "announcement"
message = "fwd"
"#;

const OFFER: &str = PCMU_OFFER;

fn t_with(max_sessions: usize) -> T {
    let mut lib = Library::default();
    lib.insert_samples("messages/fwd", &[0, 1000, -1000, 0]);
    let media = MediaConfig {
        enabled: true,
        address: None,
        max_sessions,
        rtp_timeout: Duration::from_secs(30),
        library: Arc::new(lib),
    };
    T::with_media(media, POLICY)
}

fn invite_sdp(to: &str, call: &str, body: &str) -> String {
    format!(
        "INVITE sip:{to}@switchboard.local SIP/2.0\r\nVia: SIP/2.0/UDP {CALLER};branch=z9hG4bK-{call};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:caller@example.com>;tag=from-{call}\r\nTo: <sip:{to}@switchboard.local>\r\n\
         Call-ID: {call}\r\nCSeq: 1 INVITE\r\nContact: <sip:caller@{CALLER}>\r\nContent-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Calls erin (the answered announcement): the session opens; returns it and our 200.
fn answered(t: &mut T, call: &str) -> (SessionId, String) {
    t.input(CALLER, &invite_sdp("1005", call, OFFER));
    t.take();
    let id = session(t);
    t.media.clear();
    t.feed(Input::Media(Event::Opened { id, port: 30000 }));
    t.pump();
    let out = t.take();
    let ok = to(&out, CALLER)
        .into_iter()
        .find(|m| first_line(m).starts_with("SIP/2.0 200"))
        .unwrap_or_else(|| panic!("no 200 to the caller: {out:?}"));
    (id, ok)
}

fn ack(t: &mut T, ok: &str) {
    t.input(CALLER, &from_caller("ACK", ok, 1, "", ""));
}

#[test]
fn an_answered_announcement_answers_200_with_our_sdp_and_hangs_up_with_a_bye_when_played() {
    let mut t = t_with(10);
    let (id, ok) = answered(&mut t, "a1");
    assert!(header(&ok, "To").unwrap().contains(";tag="), "{ok}");
    assert_eq!(header(&ok, "Content-Type"), Some("application/sdp"));
    assert!(ok.contains("m=audio 30000 RTP/AVP 0"), "{ok}");
    // Our URI, in angle brackets once.
    assert_eq!(header(&ok, "Contact"), Some("<sip:127.0.0.1:5060>"), "{ok}");
    assert!(header(&ok, "Allow").unwrap().contains("BYE"), "{ok}");
    assert!(
        matches!(t.media.as_slice(), [Command::Play { id: p, .. }] if *p == id),
        "{:?}",
        t.media
    );
    // The call counts as answered, by the announcement.
    assert_eq!(t.core.answered_calls(), 1);
    ack(&mut t, &ok);
    // Acknowledged: our 200 is not sent again.
    t.advance(2);
    assert!(to(&t.take(), CALLER).is_empty());

    t.media.clear();
    t.feed(Input::Media(Event::Played { id }));
    t.pump();
    assert!(
        t.media
            .iter()
            .any(|c| matches!(c, Command::Close { id: c } if *c == id)),
        "{:?}",
        t.media
    );
    let out = t.take();
    let bye = to(&out, CALLER)
        .into_iter()
        .find(|m| m.starts_with("BYE "))
        .unwrap_or_else(|| panic!("no BYE: {out:?}"));
    assert!(
        bye.starts_with("BYE sip:caller@127.0.0.1:5099 SIP/2.0"),
        "{bye}"
    );
    assert_eq!(header(&bye, "Call-ID"), Some("a1"));
    // From and To swapped: our tag in From, the caller's in To.
    assert_eq!(header(&bye, "From"), header(&ok, "To"));
    assert_eq!(header(&bye, "To"), header(&ok, "From"));
    assert_eq!(header(&bye, "CSeq"), Some("1 BYE"));
    // The caller's 200 to it ends it.
    let resp = answer(&bye, 200, "from-a1", "sip:caller@127.0.0.1:5099");
    t.input(CALLER, &resp);
    t.feed(Input::Media(Event::Closed {
        id,
        counters: Counters::default(),
    }));
    t.pump();
    assert_eq!(t.core.answered_calls(), 0);
    assert!(t.core.calls().is_empty());
    assert_eq!(t.core.media().0, 0);
    assert_eq!(t.core.routing_counters().answered, 1);
}

#[test]
fn our_200_is_sent_again_until_the_ack_and_without_one_the_call_is_hung_up() {
    let mut t = t_with(10);
    let (_, ok) = answered(&mut t, "a2");
    t.advance(1);
    let again = to(&t.take(), CALLER);
    assert!(
        again
            .iter()
            .any(|m| first_line(m).starts_with("SIP/2.0 200")),
        "{again:?}"
    );
    t.advance(40);
    let out = to(&t.take(), CALLER);
    assert!(out.iter().any(|m| m.starts_with("BYE ")), "{out:?}");
    // No 2xx is sent for ever.
    t.advance(10);
    let late = to(&t.take(), CALLER);
    assert!(
        !late
            .iter()
            .any(|m| first_line(m).starts_with("SIP/2.0 200")),
        "{late:?}"
    );
    let _ = ok;
}

#[test]
fn the_callers_bye_is_answered_200_and_closes_the_session() {
    let mut t = t_with(10);
    let (id, ok) = answered(&mut t, "a3");
    ack(&mut t, &ok);
    t.media.clear();
    t.input(CALLER, &from_caller("BYE", &ok, 2, "", ""));
    let out = to(&t.take(), CALLER);
    assert_eq!(out.len(), 1, "{out:?}");
    assert!(first_line(&out[0]).starts_with("SIP/2.0 200"), "{out:?}");
    assert!(
        t.media
            .iter()
            .any(|c| matches!(c, Command::Close { id: c } if *c == id)),
        "{:?}",
        t.media
    );
    assert_eq!(t.core.answered_calls(), 0);
    // A request in the dialog now gets 481.
    t.input(CALLER, &from_caller("OPTIONS", &ok, 3, "", ""));
    let out = to(&t.take(), CALLER);
    assert!(first_line(&out[0]).starts_with("SIP/2.0 481"), "{out:?}");
}

#[test]
fn silence_from_an_answered_caller_hangs_up() {
    let mut t = t_with(10);
    let (id, ok) = answered(&mut t, "a4");
    ack(&mut t, &ok);
    t.feed(Input::Media(Event::Timeout { id }));
    t.pump();
    let out = to(&t.take(), CALLER);
    assert!(out.iter().any(|m| m.starts_with("BYE ")), "{out:?}");
}

#[test]
fn info_dtmf_options_reinvite_and_others_in_the_dialog() {
    let mut t = t_with(10);
    let (_, ok) = answered(&mut t, "a5");
    ack(&mut t, &ok);
    let info = from_caller(
        "INFO",
        &ok,
        2,
        "Content-Type: application/dtmf-relay\r\n",
        "Signal=5\r\nDuration=160\r\n",
    );
    t.input(CALLER, &info);
    let out = to(&t.take(), CALLER);
    assert!(first_line(&out[0]).starts_with("SIP/2.0 200"), "{out:?}");
    // The key reached the session, as Event::Digit through Media::event.
    assert_eq!(t.core.media().1.digits, 1);
    t.input(CALLER, &from_caller("OPTIONS", &ok, 3, "", ""));
    let out = to(&t.take(), CALLER);
    assert!(first_line(&out[0]).starts_with("SIP/2.0 200"), "{out:?}");
    let reinvite = from_caller(
        "INVITE",
        &ok,
        4,
        &format!("Contact: <sip:caller@{CALLER}>\r\nContent-Type: application/sdp\r\n"),
        OFFER,
    );
    t.input(CALLER, &reinvite);
    let out = to(&t.take(), CALLER);
    let ok2 = out
        .iter()
        .find(|m| first_line(m).starts_with("SIP/2.0 200"))
        .unwrap_or_else(|| panic!("{out:?}"));
    assert!(ok2.contains("m=audio 30000"), "{ok2}");
    let reinvite = from_caller(
        "INVITE",
        &ok,
        5,
        "Content-Type: application/sdp\r\n",
        G722_OFFER,
    );
    t.input(CALLER, &reinvite);
    let out = to(&t.take(), CALLER);
    assert!(
        out.iter().any(|m| first_line(m).starts_with("SIP/2.0 488")),
        "{out:?}"
    );
    t.input(CALLER, &from_caller("UPDATE", &ok, 6, "", ""));
    let out = to(&t.take(), CALLER);
    assert!(first_line(&out[0]).starts_with("SIP/2.0 405"), "{out:?}");
    assert!(header(&out[0], "Allow").is_some(), "{out:?}");
}

#[test]
fn a_reinvite_moves_the_stream_holds_it_and_keeps_its_codec() {
    let mut t = t_with(10);
    let (id, ok) = answered(&mut t, "a9");
    ack(&mut t, &ok);
    let sdp_headers =
        format!("Contact: <sip:caller@{CALLER}>\r\nContent-Type: application/sdp\r\n");
    // The caller's audio moved to another port: the engine sends there from now on.
    t.media.clear();
    let moved = OFFER.replace("m=audio 7000", "m=audio 7100");
    t.input(CALLER, &from_caller("INVITE", &ok, 2, &sdp_headers, &moved));
    let out = to(&t.take(), CALLER);
    assert!(first_line(&out[0]).starts_with("SIP/2.0 200"), "{out:?}");
    assert_eq!(
        t.media,
        vec![Command::Update {
            id,
            remote: Some("127.0.0.1:7100".parse().unwrap()),
            send: true,
            rtp_timeout: Duration::from_secs(30),
        }]
    );
    // Hold (the caller only sends): we answer recvonly and stop sending.
    t.media.clear();
    let held = format!("{moved}a=sendonly\r\n");
    t.input(CALLER, &from_caller("INVITE", &ok, 3, &sdp_headers, &held));
    let out = to(&t.take(), CALLER);
    assert!(out[0].contains("a=recvonly"), "{out:?}");
    assert_eq!(
        t.media,
        vec![Command::Update {
            id,
            remote: Some("127.0.0.1:7100".parse().unwrap()),
            send: false,
            // On hold: silent for longer.
            rtp_timeout: crate::core::our_stream::HELD_RTP_TIMEOUT,
        }]
    );
    // An offer without the codec agreed at the answer (PCMU): 488, nothing changes.
    t.media.clear();
    let pcma = moved
        .replace("RTP/AVP 0 101", "RTP/AVP 8 101")
        .replace("rtpmap:0 PCMU", "rtpmap:8 PCMA");
    t.input(CALLER, &from_caller("INVITE", &ok, 4, &sdp_headers, &pcma));
    let out = to(&t.take(), CALLER);
    assert!(first_line(&out[0]).starts_with("SIP/2.0 488"), "{out:?}");
    assert!(t.media.is_empty(), "{:?}", t.media);
}

#[test]
fn an_offer_without_a_codec_in_common_is_refused_488_with_a_warning() {
    for dialled in ["1005", "1006"] {
        let mut t = t_with(10);
        t.input(CALLER, &invite_sdp(dialled, "r1", G722_OFFER));
        let out = to(&t.take(), CALLER);
        let refusal = out
            .iter()
            .find(|m| first_line(m).starts_with("SIP/2.0 4"))
            .unwrap_or_else(|| panic!("{out:?}"));
        assert!(first_line(refusal).starts_with("SIP/2.0 488"), "{refusal}");
        // The warn-agent is our host and port (RFC 3261 §20.43), no URI around it.
        assert_eq!(
            header(refusal, "Warning"),
            Some("305 127.0.0.1:5060 \"Incompatible media format\""),
            "{refusal}"
        );
        assert!(t.media.is_empty(), "{:?}", t.media);
    }
}

#[test]
fn beyond_the_session_limit_an_announcement_call_gets_503_with_retry_after() {
    let mut t = t_with(0);
    t.input(CALLER, &invite_sdp("1005", "r2", OFFER));
    let out = to(&t.take(), CALLER);
    let refusal = out
        .iter()
        .find(|m| first_line(m).starts_with("SIP/2.0 5"))
        .unwrap_or_else(|| panic!("{out:?}"));
    assert!(first_line(refusal).starts_with("SIP/2.0 503"), "{refusal}");
    assert!(header(refusal, "Retry-After").is_some(), "{refusal}");
}

#[test]
fn shutdown_hangs_up_every_answered_announcement() {
    let mut t = t_with(10);
    let (_, ok) = answered(&mut t, "a6");
    ack(&mut t, &ok);
    t.feed(Input::Drain);
    t.pump();
    let out = to(&t.take(), CALLER);
    assert!(out.iter().any(|m| m.starts_with("BYE ")), "{out:?}");
}

/// Calls frank (the early-media announcement): returns the session and our 183.
fn early(t: &mut T, call: &str) -> (SessionId, String) {
    t.input(CALLER, &invite_sdp("1006", call, OFFER));
    t.take();
    let id = session(t);
    t.media.clear();
    t.feed(Input::Media(Event::Opened { id, port: 30002 }));
    t.pump();
    let out = t.take();
    let progress = to(&out, CALLER)
        .into_iter()
        .find(|m| first_line(m).starts_with("SIP/2.0 183"))
        .unwrap_or_else(|| panic!("no 183 to the caller: {out:?}"));
    (id, progress)
}

#[test]
fn in_the_early_dialog_of_a_183_info_and_options_are_answered_and_bye_ends_the_call_487() {
    let mut t = t_with(10);
    let (id, progress) = early(&mut t, "e1");
    let info = from_caller(
        "INFO",
        &progress,
        2,
        "Content-Type: application/dtmf\r\n",
        "7",
    );
    t.input(CALLER, &info);
    let out = to(&t.take(), CALLER);
    assert!(first_line(&out[0]).starts_with("SIP/2.0 200"), "{out:?}");
    assert_eq!(t.core.media().1.digits, 1);
    t.input(CALLER, &from_caller("OPTIONS", &progress, 3, "", ""));
    let out = to(&t.take(), CALLER);
    assert!(first_line(&out[0]).starts_with("SIP/2.0 200"), "{out:?}");
    let info = from_caller("INFO", &progress, 4, "Content-Type: text/plain\r\n", "hi");
    t.input(CALLER, &info);
    let out = to(&t.take(), CALLER);
    assert!(first_line(&out[0]).starts_with("SIP/2.0 415"), "{out:?}");
    t.media.clear();
    t.input(CALLER, &from_caller("BYE", &progress, 5, "", ""));
    let out = to(&t.take(), CALLER);
    let lines: Vec<&str> = out.iter().map(|m| first_line(m)).collect();
    assert!(
        lines.iter().any(|l| l.starts_with("SIP/2.0 200")),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("SIP/2.0 487")),
        "{lines:?}"
    );
    assert!(
        t.media
            .iter()
            .any(|c| matches!(c, Command::Close { id: c } if *c == id)),
        "{:?}",
        t.media
    );
}

#[test]
fn a_request_for_a_dialog_of_ours_that_does_not_exist_gets_481() {
    let mut t = t_with(10);
    let (_, ok) = answered(&mut t, "x1");
    let forged = ok.replace("Call-ID: x1", "Call-ID: nope");
    t.input(CALLER, &from_caller("BYE", &forged, 2, "", ""));
    let out = to(&t.take(), CALLER);
    assert!(first_line(&out[0]).starts_with("SIP/2.0 481"), "{out:?}");
}

#[test]
fn the_next_announcement_plays_in_the_same_session_then_the_daemon_hangs_up() {
    let mut t = t_with(10);
    t.input(CALLER, &invite_sdp("1007", "n1", OFFER));
    t.take();
    let id = session(&t);
    t.media.clear();
    t.feed(Input::Media(Event::Opened { id, port: 30000 }));
    t.pump();
    let ok = to(&t.take(), CALLER)
        .into_iter()
        .find(|m| first_line(m).starts_with("SIP/2.0 200"))
        .unwrap();
    ack(&mut t, &ok);
    t.media.clear();
    t.feed(Input::Media(Event::Played { id }));
    t.pump();
    // Not closed: the next message plays in it; no BYE yet.
    assert!(
        matches!(t.media.as_slice(), [Command::Play { id: p, .. }] if *p == id),
        "{:?}",
        t.media
    );
    assert!(to(&t.take(), CALLER).is_empty());
    t.media.clear();
    t.feed(Input::Media(Event::Played { id }));
    t.pump();
    assert!(
        t.media
            .iter()
            .any(|c| matches!(c, Command::Close { id: c } if *c == id)),
        "{:?}",
        t.media
    );
    let out = to(&t.take(), CALLER);
    assert!(out.iter().any(|m| m.starts_with("BYE ")), "{out:?}");
}

#[test]
fn an_engine_that_cannot_open_the_session_of_an_announcement_the_call_is_for_means_503() {
    let mut t = t_with(10);
    t.input(CALLER, &invite_sdp("1005", "f1", OFFER));
    t.take();
    let id = session(&t);
    t.feed(Input::Media(Event::Failed {
        id,
        why: "no free port pair".into(),
    }));
    t.pump();
    let out = to(&t.take(), CALLER);
    let refusal = out
        .iter()
        .find(|m| first_line(m).starts_with("SIP/2.0 5"))
        .unwrap_or_else(|| panic!("{out:?}"));
    assert!(first_line(refusal).starts_with("SIP/2.0 503"), "{refusal}");
    assert!(header(refusal, "Retry-After").is_some(), "{refusal}");
}
