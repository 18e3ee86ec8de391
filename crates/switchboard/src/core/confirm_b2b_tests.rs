//! Confirmed forwarding's back-to-back leg driven through the whole core, with a scripted
//! caller, target and media engine: our INVITE to the target with one codec, its 180 to
//! the caller, its 200 acknowledged and asked; `1` connects (the caller answered 200 from
//! our second session, the sessions bridged, the others cancelled), BYE either way ends
//! both; another key is our BYE and the hunt's next target; the caller's CANCEL.

use crate::core::media::{Library, MediaConfig};
use crate::core::Input;
use crate::test_harness::*;
use std::sync::Arc;
use std::time::Duration;
use switchboard_media::session::{Command, Event, SessionId};
use switchboard_presence::model::CallStatus;

/// carol forwards, after 5 s alone, to bob then dave (a hunt), who must confirm.
const POLICY: &str = r#"
[users.alice]
extension = "1001"
[users.bob]
extension = "1002"
[users.carol]
extension = "1003"
no_answer = "hangup"
[users.carol.forwarding]
targets = ["user:bob", "user:dave"]
strategy = "hunt"
ring_own_first = 5
ring_time = 20
require_confirmation = true
[users.dave]
extension = "1004"
"#;

const DAVE: &str = "127.0.0.1:5076";

const OFFER: &str = "v=0\r\no=alice 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio 7000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n";

const BOB_SDP: &str = "v=0\r\no=bob 5 5 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio 8000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n";

/// The engine's settings in these tests: ten sessions, prompts of nothing.
fn media() -> MediaConfig {
    MediaConfig {
        enabled: true,
        address: None,
        max_sessions: 10,
        rtp_timeout: Duration::from_secs(30),
        library: Arc::new(Library::default()),
    }
}

fn t() -> T {
    let media = media();
    let mut t = T::with_media(media, POLICY);
    t.register("bob", BOB);
    t.register("carol", CAROL);
    t.register("dave", DAVE);
    t.take();
    t
}

fn invite_sdp(call: &str) -> String {
    format!(
        "INVITE sip:1003@switchboard.local SIP/2.0\r\nVia: SIP/2.0/UDP {ALICE};branch=z9hG4bK-{call};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@switchboard.local>;tag=from-{call}\r\nTo: <sip:1003@switchboard.local>\r\n\
         Call-ID: {call}\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@{ALICE}>\r\nContent-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{OFFER}",
        OFFER.len()
    )
}

/// The sessions opened since the last look.
fn opened(t: &mut T) -> Vec<(SessionId, Option<std::net::SocketAddr>)> {
    let ids = t
        .media
        .iter()
        .filter_map(|c| match c {
            Command::Open(o) => Some((o.id, o.remote)),
            _ => None,
        })
        .collect();
    ids
}

/// The target's response to our INVITE `invite`, with its SDP when 2xx.
fn target_says(invite: &str, code: u16, tag: &str, at: &str) -> String {
    let mut resp = answer(invite, code, tag, &format!("bob@{at}"));
    if code == 200 {
        resp = resp.replace("Content-Length: 0\r\n", "");
        resp = resp.replacen(
            "\r\n\r\n",
            &format!(
                "\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{BOB_SDP}",
                BOB_SDP.len()
            ),
            1,
        );
    }
    resp
}

/// alice calls carol; after 6 s bob's leg is opened and our INVITE sent to him: the
/// INVITE, bob's session, carol's INVITE.
fn to_bob(t: &mut T) -> (String, SessionId, String) {
    t.input(ALICE, &invite_sdp("c1"));
    let carol = to(&t.take(), CAROL)
        .into_iter()
        .find(|m| first_line(m).starts_with("INVITE"))
        .expect("carol rings");
    // carol's phone rings (a CANCEL can go to it).
    t.input(CAROL, &answer(&carol, 180, "carol1", CAROL));
    t.take();
    t.advance(6);
    let sessions = opened(t);
    assert_eq!(sessions.len(), 1, "{:?}", t.media);
    let (id, remote) = sessions[0];
    assert_eq!(remote, None, "nothing is sent before the target answers");
    assert!(
        to(&t.take(), BOB).is_empty(),
        "no INVITE before the port is known"
    );
    t.media.clear();
    t.feed(Input::Media(Event::Opened { id, port: 30000 }));
    t.pump();
    let invite = to(&t.take(), BOB)
        .into_iter()
        .find(|m| first_line(m).starts_with("INVITE"))
        .expect("our INVITE to bob");
    (invite, id, carol)
}

/// bob answers 200: the ACK, and the engine told where bob is and what to play.
fn bob_answers(t: &mut T, invite: &str, id: SessionId) -> String {
    t.input(BOB, &target_says(invite, 200, "bob1", BOB));
    let out = t.take();
    let ack = to(&out, BOB)
        .into_iter()
        .find(|m| first_line(m).starts_with("ACK"))
        .unwrap_or_else(|| panic!("no ACK to bob: {out:?}"));
    assert!(
        t.media.iter().any(|c| matches!(c,
            Command::Update { id: u, remote: Some(r), send: true, .. } if *u == id && r.port() == 8000)),
        "{:?}",
        t.media
    );
    assert!(
        t.media
            .iter()
            .any(|c| matches!(c, Command::Play { id: p, .. } if *p == id)),
        "the question: {:?}",
        t.media
    );
    ack
}

#[test]
fn our_invite_carries_our_sdp_with_the_callers_codec_and_its_180_rings_the_caller() {
    let mut t = t();
    let (invite, _, _) = to_bob(&mut t);
    assert_ne!(header(&invite, "Call-ID"), Some("c1"), "a Call-ID of ours");
    assert_eq!(header(&invite, "Max-Forwards"), Some("70"));
    assert!(
        header(&invite, "From").unwrap().contains("sip:1001@"),
        "{invite}"
    );
    assert!(
        !header(&invite, "From").unwrap().contains("from-c1"),
        "a From tag of ours: {invite}"
    );
    assert!(
        invite.contains("m=audio 30000 RTP/AVP 0 101\r\n"),
        "{invite}"
    );
    assert!(!invite.contains("PCMA"), "one codec: {invite}");
    assert_eq!(header(&invite, "Contact"), Some("<sip:127.0.0.1:5060>"));

    t.input(BOB, &target_says(&invite, 180, "bob1", BOB));
    let out = t.take();
    let ringing = to(&out, ALICE);
    assert!(
        ringing
            .iter()
            .any(|m| first_line(m) == "SIP/2.0 180 Ringing"),
        "{out:?}"
    );
}

#[test]
fn one_connects_the_caller_bridged_and_byes_end_both_legs() {
    let mut t = t();
    let (invite, bob_id, carol) = to_bob(&mut t);
    t.media.clear();
    let ack = bob_answers(&mut t, &invite, bob_id);
    assert!(
        first_line(&ack).starts_with("ACK sip:bob@127.0.0.1:5072"),
        "{ack}"
    );
    assert_eq!(header(&ack, "CSeq"), Some("1 ACK"));
    // The caller is not answered yet.
    assert!(to(&t.take(), ALICE)
        .iter()
        .all(|m| !first_line(m).starts_with("SIP/2.0 200")));

    t.media.clear();
    t.feed(Input::Media(Event::Digit {
        id: bob_id,
        digit: '1',
    }));
    t.pump();
    let sessions = opened(&mut t);
    assert_eq!(sessions.len(), 1, "the caller's session: {:?}", t.media);
    let alice_id = sessions[0].0;
    t.media.clear();
    t.feed(Input::Media(Event::Opened {
        id: alice_id,
        port: 30002,
    }));
    t.pump();
    let out = t.take();
    let ok = to(&out, ALICE)
        .into_iter()
        .find(|m| first_line(m).starts_with("SIP/2.0 200"))
        .unwrap_or_else(|| panic!("no 200 to alice: {out:?}"));
    assert!(ok.contains("m=audio 30002 RTP/AVP 0"), "{ok}");
    assert!(
        t.media.contains(&Command::Bridge {
            a: alice_id,
            b: bob_id
        }),
        "{:?}",
        t.media
    );
    // carol's phone stops ringing.
    assert!(got(&out, CAROL, "CANCEL"), "{out:?}");
    let _ = carol;
    assert_eq!(t.core.answered_calls(), 1);
    t.input(ALICE, &from_caller_at(ALICE, "ACK", &ok, 1));
    let bob_status = |t: &T| t.core.presence().model().call_state("bob");
    assert_eq!(bob_status(&t), CallStatus::Busy);

    // bob hangs up: 200 to him, our BYE to alice, both sessions closed.
    t.media.clear();
    let bob_bye = target_in_dialog("BYE", &invite, &ack, 1);
    t.input(BOB, &bob_bye);
    let out = t.take();
    assert!(got(&out, BOB, "SIP/2.0 200 OK"), "{out:?}");
    assert!(got(&out, ALICE, "BYE"), "{out:?}");
    for id in [alice_id, bob_id] {
        assert!(
            t.media.contains(&Command::Close { id }),
            "{id:?}: {:?}",
            t.media
        );
    }
    assert_eq!(bob_status(&t), CallStatus::Free);
}

/// alice's call connected to bob (he pressed 1; alice ACKed our 200).
struct Connected {
    /// Our INVITE to bob, and our ACK of his 200.
    invite: String,
    ack: String,
    /// Our 200 to alice.
    ok: String,
    bob: SessionId,
    alice: SessionId,
}

fn connected(t: &mut T) -> Connected {
    let (invite, bob, _) = to_bob(t);
    let ack = bob_answers(t, &invite, bob);
    t.feed(Input::Media(Event::Digit {
        id: bob,
        digit: '1',
    }));
    t.pump();
    let alice = opened(t).last().unwrap().0;
    t.feed(Input::Media(Event::Opened {
        id: alice,
        port: 30002,
    }));
    t.pump();
    let ok = to(&t.take(), ALICE)
        .into_iter()
        .find(|m| first_line(m).starts_with("SIP/2.0 200"))
        .unwrap();
    t.input(ALICE, &from_caller_at(ALICE, "ACK", &ok, 1));
    t.take();
    t.media.clear();
    Connected {
        invite,
        ack,
        ok,
        bob,
        alice,
    }
}

#[test]
fn the_callers_bye_is_our_bye_to_the_target() {
    let mut t = t();
    let Connected {
        invite,
        ok,
        bob: bob_id,
        alice: alice_id,
        ..
    } = connected(&mut t);
    t.input(ALICE, &from_caller_at(ALICE, "BYE", &ok, 2));
    let out = t.take();
    assert!(got(&out, ALICE, "SIP/2.0 200 OK"));
    let bye = to(&out, BOB)
        .into_iter()
        .find(|m| first_line(m).starts_with("BYE"))
        .unwrap_or_else(|| panic!("no BYE to bob: {out:?}"));
    assert_eq!(header(&bye, "Call-ID"), header(&invite, "Call-ID"));
    assert_eq!(header(&bye, "CSeq"), Some("2 BYE"));
    for id in [alice_id, bob_id] {
        assert!(t.media.contains(&Command::Close { id }), "{:?}", t.media);
    }
    // The call is kept until our BYE is answered, then forgotten.
    assert_eq!(t.core.calls.len(), 1);
    t.input(BOB, &answer(&bye, 200, "bob1", BOB));
    assert_eq!(t.core.calls.len(), 0);
}

#[test]
fn another_key_is_our_bye_and_the_hunts_next_target_rings() {
    let mut t = t();
    let (invite, bob_id, _) = to_bob(&mut t);
    bob_answers(&mut t, &invite, bob_id);
    t.media.clear();
    t.feed(Input::Media(Event::Digit {
        id: bob_id,
        digit: '2',
    }));
    t.pump();
    let out = t.take();
    let bye = to(&out, BOB)
        .into_iter()
        .find(|m| first_line(m).starts_with("BYE"))
        .unwrap_or_else(|| panic!("no BYE to bob: {out:?}"));
    assert_eq!(header(&bye, "Call-ID"), header(&invite, "Call-ID"));
    assert!(t.media.contains(&Command::Close { id: bob_id }));
    // dave's leg, when the hunt's timeline reaches it (bob's 20 s: the executor's hunt
    // moves on at its window, whatever ended the leg before it): a session of its own,
    // then our INVITE.
    t.media.clear();
    t.advance(20);
    let out = t.take();
    let sessions = opened(&mut t);
    assert_eq!(sessions.len(), 1, "{:?} {out:?}", t.media);
    t.feed(Input::Media(Event::Opened {
        id: sessions[0].0,
        port: 30004,
    }));
    t.pump();
    let out = t.take();
    assert!(got(&out, DAVE, "INVITE"), "{out:?}");
    // alice was never answered.
    assert!(to(&out, ALICE)
        .iter()
        .all(|m| !first_line(m).starts_with("SIP/2.0 200")));
}

#[test]
fn silence_is_no_answer_after_the_question_twice() {
    let mut t = t();
    let (invite, bob_id, _) = to_bob(&mut t);
    bob_answers(&mut t, &invite, bob_id);
    t.feed(Input::Media(Event::Played { id: bob_id }));
    t.pump();
    t.media.clear();
    t.advance(6);
    // Said again.
    assert!(
        t.media
            .iter()
            .any(|c| matches!(c, Command::Play { id, .. } if *id == bob_id)),
        "{:?}",
        t.media
    );
    t.feed(Input::Media(Event::Played { id: bob_id }));
    t.pump();
    t.take();
    t.advance(6);
    let out = t.take();
    assert!(got(&out, BOB, "BYE"), "{out:?}");
}

#[test]
fn the_callers_cancel_cancels_a_ringing_target_and_hangs_up_an_answered_one() {
    // Ringing: CANCEL.
    let mut t = t();
    let (invite, _, carol) = to_bob(&mut t);
    t.input(BOB, &target_says(&invite, 180, "bob1", BOB));
    t.take();
    t.input(ALICE, &cancel_of(&invite_sdp("c1")));
    let out = t.take();
    assert!(got(&out, BOB, "CANCEL"), "{out:?}");
    assert!(got(&out, ALICE, "SIP/2.0 487"));
    // carol's phone is done (487): only bob's INVITE is still open, and the call waits
    // for its end. bob answered all the same (the 200 crossed our CANCEL): ACK, then our
    // BYE.
    t.input(CAROL, &answer(&carol, 487, "carol1", CAROL));
    t.take();
    t.input(BOB, &target_says(&invite, 200, "bob1", BOB));
    let out = t.take();
    let sent: Vec<String> = to(&out, BOB)
        .iter()
        .map(|m| first_line(m).to_string())
        .collect();
    assert!(sent.iter().any(|l| l.starts_with("ACK")), "{out:?}");
    assert!(sent.iter().any(|l| l.starts_with("BYE")), "{out:?}");

    // Asked already: BYE.
    let mut t = self::t();
    let (invite, bob_id, _) = to_bob(&mut t);
    bob_answers(&mut t, &invite, bob_id);
    t.media.clear();
    t.input(ALICE, &cancel_of(&invite_sdp("c1")));
    let out = t.take();
    assert!(got(&out, BOB, "BYE"), "{out:?}");
    assert!(t.media.contains(&Command::Close { id: bob_id }));
}

/// A request of alice in the dialog of our 200 `ok`.
fn from_caller_at(at: &str, method: &str, ok: &str, cseq: u32) -> String {
    let to = header(ok, "To").unwrap();
    let from = header(ok, "From").unwrap();
    let call = header(ok, "Call-ID").unwrap();
    format!(
        "{method} sip:127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {at};branch=z9hG4bK-{method}-{cseq};rport\r\n\
         Max-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {call}\r\nCSeq: {cseq} {method}\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// A request of the target in our dialog with it (From: its end, with its tag from our
/// ACK's To; To: ours).
fn target_in_dialog(method: &str, invite: &str, ack: &str, cseq: u32) -> String {
    let ours = header(invite, "From").unwrap();
    let theirs = header(ack, "To").unwrap();
    let call = header(invite, "Call-ID").unwrap();
    format!(
        "{method} sip:127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {BOB};branch=z9hG4bK-t{method}-{cseq};rport\r\n\
         Max-Forwards: 70\r\nFrom: {theirs}\r\nTo: {ours}\r\nCall-ID: {call}\r\nCSeq: {cseq} {method}\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// The CANCEL of an INVITE as its sender makes it.
fn cancel_of(invite: &str) -> String {
    let via = header(invite, "Via").unwrap();
    let from = header(invite, "From").unwrap();
    let to = header(invite, "To").unwrap();
    let call = header(invite, "Call-ID").unwrap();
    format!(
        "CANCEL sip:1003@switchboard.local SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\n\
         Call-ID: {call}\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n"
    )
}

/// `request` (with no body) carrying `sdp`.
fn with_sdp(request: &str, sdp: &str) -> String {
    request.replace(
        "Content-Length: 0\r\n\r\n",
        &format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        ),
    )
}

/// The one message to `at` that starts with `start`.
fn the(out: &[(std::net::SocketAddr, String)], at: &str, start: &str) -> String {
    let found: Vec<String> = to(out, at)
        .into_iter()
        .filter(|m| first_line(m).starts_with(start))
        .collect();
    assert_eq!(found.len(), 1, "{start} to {at}: {out:?}");
    found[0].clone()
}

#[test]
fn a_reinvite_of_either_side_is_answered_by_its_own_leg_and_the_other_is_untouched() {
    let mut t = t();
    let Connected {
        invite,
        ack,
        ok,
        bob: bob_id,
        alice: alice_id,
    } = connected(&mut t);
    let timeout = Duration::from_secs(30);
    // alice holds (she sends music, we send nothing): her leg only, a=recvonly.
    t.media.clear();
    let held = format!("{OFFER}a=sendonly\r\n");
    t.input(
        ALICE,
        &with_sdp(&from_caller_at(ALICE, "INVITE", &ok, 2), &held),
    );
    let ok2 = the(&t.take(), ALICE, "SIP/2.0 200");
    assert!(
        ok2.contains("a=recvonly") && ok2.contains("m=audio 30002 RTP/AVP 0"),
        "{ok2}"
    );
    assert!(header(&ok2, "Contact").is_some(), "{ok2}");
    let update = |id, port, send, rtp_timeout| Command::Update {
        id,
        remote: Some(std::net::SocketAddr::from(([127, 0, 0, 1], port))),
        send,
        rtp_timeout,
    };
    let held = crate::core::our_stream::HELD_RTP_TIMEOUT;
    assert_eq!(t.media, [update(alice_id, 7000, false, held)]);
    // Resumed, and her ACK ends our 200's retransmissions.
    t.media.clear();
    t.input(
        ALICE,
        &with_sdp(&from_caller_at(ALICE, "INVITE", &ok, 3), OFFER),
    );
    the(&t.take(), ALICE, "SIP/2.0 200");
    assert_eq!(t.media, [update(alice_id, 7000, true, timeout)]);
    t.input(ALICE, &from_caller_at(ALICE, "ACK", &ok, 3));
    t.advance(2);
    assert!(
        to(&t.take(), ALICE).is_empty(),
        "no 200 again after its ACK"
    );

    // bob holds with a=inactive: his leg says inactive and may be silent for the hold's
    // time; our 200 goes again until his ACK.
    t.media.clear();
    let inactive = format!("{BOB_SDP}a=inactive\r\n");
    t.input(
        BOB,
        &with_sdp(&target_in_dialog("INVITE", &invite, &ack, 2), &inactive),
    );
    let ok3 = the(&t.take(), BOB, "SIP/2.0 200");
    assert!(
        ok3.contains("a=inactive") && ok3.contains("m=audio 30000 RTP/AVP 0"),
        "{ok3}"
    );
    assert_eq!(
        header(&ok3, "Contact"),
        Some("<sip:127.0.0.1:5060>"),
        "{ok3}"
    );
    assert_eq!(
        t.media,
        [update(
            bob_id,
            8000,
            false,
            crate::core::our_stream::HELD_RTP_TIMEOUT
        )]
    );
    t.advance(1);
    the(&t.take(), BOB, "SIP/2.0 200");
    t.input(BOB, &target_in_dialog("ACK", &invite, &ack, 2));
    t.advance(4);
    assert!(to(&t.take(), BOB).is_empty(), "no 200 again after its ACK");
    // An offer without the agreed codec: 488, nothing changes.
    t.media.clear();
    let pcma = BOB_SDP
        .replace("RTP/AVP 0 101", "RTP/AVP 8 101")
        .replace("rtpmap:0 PCMU", "rtpmap:8 PCMA");
    t.input(
        BOB,
        &with_sdp(&target_in_dialog("INVITE", &invite, &ack, 3), &pcma),
    );
    the(&t.take(), BOB, "SIP/2.0 488");
    assert!(t.media.is_empty(), "{:?}", t.media);
    // Neither leg was hung up.
    t.advance(2);
    let out = t.take();
    assert!(
        !got(&out, ALICE, "BYE") && !got(&out, BOB, "BYE"),
        "{out:?}"
    );
}

#[test]
fn a_target_that_never_acks_our_200_to_its_reinvite_is_hung_up_with_the_caller() {
    let mut t = t();
    let Connected { invite, ack, .. } = connected(&mut t);
    t.input(
        BOB,
        &with_sdp(&target_in_dialog("INVITE", &invite, &ack, 2), BOB_SDP),
    );
    the(&t.take(), BOB, "SIP/2.0 200");
    // 64·T1 = 32 s without its ACK (noticed at the next time it was due, at T2 steps).
    t.advance(40);
    let out = t.take();
    assert!(got(&out, ALICE, "BYE"), "{out:?}");
    assert!(got(&out, BOB, "BYE"), "{out:?}");
}

#[test]
fn no_rtp_on_either_side_or_shutdown_hangs_up_both() {
    for how in ["bob silent", "alice silent", "shutdown"] {
        let mut t = t();
        let Connected {
            bob: bob_id,
            alice: alice_id,
            ..
        } = connected(&mut t);
        match how {
            "bob silent" => t.feed(Input::Media(Event::Timeout { id: bob_id })),
            "alice silent" => t.feed(Input::Media(Event::Timeout { id: alice_id })),
            _ => t.feed(Input::Drain),
        }
        t.pump();
        let out = t.take();
        assert!(got(&out, ALICE, "BYE"), "{how}: {out:?}");
        assert!(got(&out, BOB, "BYE"), "{how}: {out:?}");
        for id in [alice_id, bob_id] {
            assert!(
                t.media.contains(&Command::Close { id }),
                "{how}: {:?}",
                t.media
            );
        }
    }
}

// ---- legs through trunks: located by name, failed over, challenged by the carrier ------

/// The harness's policy (trunks `carrier`, +44 numbers, and `authed`, +3314 numbers with
/// an account), the `carrier` trunk at `carrier_uri`, and erin forwarding to `number` at
/// once (her own phone not ringing), to be confirmed.
fn trunk_policy(carrier_uri: &str, number: &str) -> String {
    let policy = crate::test_harness::POLICY.replace(
        "uri = \"sip:carrier@127.0.0.2:5080\"",
        &format!("uri = \"{carrier_uri}\""),
    );
    format!(
        "{policy}\n[users.erin]\nextension = \"1005\"\nno_answer = \"hangup\"\n\
         [users.erin.forwarding]\ntargets = [\"number:{number}\"]\nrequire_confirmation = true\n\
         keep_ringing_own = false\n"
    )
}

fn t_trunks(carrier_uri: &str, number: &str) -> T {
    let media = media();
    let mut t = T::with_media(media, &trunk_policy(carrier_uri, number));
    // erin's phone is on: her calls are forwarded at once (a person with none is
    // unavailable).
    t.register("erin", "127.0.0.1:5077");
    t.take();
    t
}

/// alice calls erin (1005), with an SDP offer.
fn call_erin(t: &mut T) {
    let text = invite_sdp("e1").replace("1003@", "1005@");
    t.input(ALICE, &text);
}

/// The session opened for the leg, once opened on port 30000: what was sent then.
fn leg_opens(t: &mut T) -> Vec<(std::net::SocketAddr, String)> {
    let sessions = opened(t);
    assert_eq!(sessions.len(), 1, "{:?}", t.media);
    t.media.clear();
    t.feed(Input::Media(Event::Opened {
        id: sessions[0].0,
        port: 30000,
    }));
    t.pump();
    t.take()
}

#[test]
fn a_leg_through_a_trunk_by_host_name_is_located_and_fails_over_on_503() {
    let mut t = t_trunks("sip:carrier.test", "+447700900123");
    call_erin(&mut t);
    t.take();
    assert!(
        opened(&mut t).is_empty(),
        "nothing opened before the name is located"
    );
    assert!(!t.lookups.is_empty(), "the trunk's name is looked up");
    t.answer_dns(carrier_dns);
    let out = leg_opens(&mut t);
    // SRV priority 10 first; the Request-URI keeps the host name.
    let first = the(&out, CARRIER_A, "INVITE");
    assert_eq!(
        first_line(&first),
        "INVITE sip:07700900123@carrier.test SIP/2.0"
    );
    assert!(first.contains("m=audio 30000 RTP/AVP 0"), "{first}");
    // 503: the next target at once, the same INVITE on a new transaction.
    t.input(CARRIER_A, &answer(&first, 503, "a", "x@127.0.0.8"));
    let out = t.take();
    assert!(!got(&out, ALICE, "SIP/2.0 503"), "{out:?}");
    let second = the(&out, CARRIER_B, "INVITE");
    assert_ne!(header(&second, "Via"), header(&first, "Via"));
    assert_eq!(header(&second, "Call-ID"), header(&first, "Call-ID"));
    // It rings, answers and is asked.
    t.input(CARRIER_B, &target_says(&second, 180, "pstn", CARRIER_B));
    assert!(got(&t.take(), ALICE, "SIP/2.0 180"));
    t.media.clear();
    t.input(CARRIER_B, &target_says(&second, 200, "pstn", CARRIER_B));
    let out = t.take();
    assert!(got(&out, CARRIER_B, "ACK"), "{out:?}");
    assert!(
        t.media.iter().any(|c| matches!(c, Command::Play { .. })),
        "{:?}",
        t.media
    );
}

#[test]
fn a_leg_whose_trunk_cannot_be_located_fails() {
    use switchboard_sip::locate::Answer;
    let mut t = t_trunks("sip:carrier.test", "+447700900123");
    call_erin(&mut t);
    t.take();
    t.answer_dns(|_| Answer::Failed("no DNS servers".into()));
    let out = t.take();
    assert!(opened(&mut t).is_empty(), "{:?}", t.media);
    // erin's forward was the only step: the call ends as a proxied branch's would (a
    // 503 of ours is not passed on), and nothing of it is kept.
    assert!(got(&out, ALICE, "SIP/2.0 480"), "{out:?}");
    assert_eq!(t.core.calls.len(), 0);
}

#[test]
fn the_carriers_challenge_to_a_leg_is_answered_with_the_trunks_account() {
    let mut t = t_trunks("sip:carrier@127.0.0.2:5080", "+33140000000");
    call_erin(&mut t);
    t.take();
    let out = leg_opens(&mut t);
    let inv = the(&out, AUTHED, "INVITE");
    assert_eq!(
        first_line(&inv),
        "INVITE sip:+33140000000@127.0.0.3:5080 SIP/2.0"
    );
    let challenges =
        ["Digest realm=\"carrier.example\", nonce=\"n1\", algorithm=MD5, qop=\"auth\""];
    t.input(AUTHED, &challenge(&inv, 407, &challenges));
    let out = t.take();
    assert!(
        !got(&out, ALICE, "SIP/2.0 407"),
        "alice never sees it: {out:?}"
    );
    let again = the(&out, AUTHED, "INVITE");
    assert_eq!(header(&again, "CSeq"), Some("2 INVITE"));
    assert_eq!(header(&again, "Call-ID"), header(&inv, "Call-ID"));
    assert_ne!(header(&again, "Via"), header(&inv, "Via"));
    let d = answered_digest(&again, "Proxy-Authorization", "acct-auth", "trunk-pw");
    assert_eq!(d["nonce"], "n1");
    assert_eq!(t.core.routing_counters().carrier_answers, 1);
    // Answered: our ACK carries the INVITE's new number.
    t.input(AUTHED, &target_says(&again, 200, "pstn", AUTHED));
    let ack = the(&t.take(), AUTHED, "ACK");
    assert_eq!(header(&ack, "CSeq"), Some("2 ACK"));
}

#[test]
fn a_second_challenge_to_a_leg_fails_it_403() {
    let mut t = t_trunks("sip:carrier@127.0.0.2:5080", "+33140000000");
    call_erin(&mut t);
    t.take();
    let inv = the(&leg_opens(&mut t), AUTHED, "INVITE");
    let challenges =
        ["Digest realm=\"carrier.example\", nonce=\"n1\", algorithm=MD5, qop=\"auth\""];
    t.input(AUTHED, &challenge(&inv, 407, &challenges));
    let again = the(&t.take(), AUTHED, "INVITE");
    t.input(AUTHED, &challenge(&again, 407, &challenges));
    let out = t.take();
    assert!(
        to(&out, AUTHED).iter().all(|m| !m.starts_with("INVITE")),
        "{out:?}"
    );
    assert!(got(&out, ALICE, "SIP/2.0 403"), "{out:?}");
    assert_eq!(t.core.routing_counters().carrier_refusals, 1);
}

#[test]
fn the_carriers_challenge_to_our_bye_is_answered_and_then_the_call_forgotten() {
    let mut t = t_trunks("sip:carrier@127.0.0.2:5080", "+33140000000");
    call_erin(&mut t);
    t.take();
    let sessions = opened(&mut t);
    let target = sessions[0].0;
    let inv = the(&leg_opens(&mut t), AUTHED, "INVITE");
    let challenges =
        ["Digest realm=\"carrier.example\", nonce=\"n1\", algorithm=MD5, qop=\"auth\""];
    t.input(AUTHED, &challenge(&inv, 407, &challenges));
    let again = the(&t.take(), AUTHED, "INVITE");
    t.input(AUTHED, &target_says(&again, 200, "pstn", AUTHED));
    t.take();
    // The target presses 1; alice is answered and ACKs.
    t.feed(Input::Media(Event::Digit {
        id: target,
        digit: '1',
    }));
    t.pump();
    let caller = opened(&mut t).last().unwrap().0;
    t.feed(Input::Media(Event::Opened {
        id: caller,
        port: 30002,
    }));
    t.pump();
    let ok = the(&t.take(), ALICE, "SIP/2.0 200");
    t.input(ALICE, &from_caller_at(ALICE, "ACK", &ok, 1));
    // alice hangs up: our BYE (numbered on from the INVITE's 2), challenged, goes again
    // with the account's answer and the next number.
    t.input(ALICE, &from_caller_at(ALICE, "BYE", &ok, 2));
    let bye = the(&t.take(), AUTHED, "BYE");
    assert_eq!(header(&bye, "CSeq"), Some("3 BYE"));
    t.input(
        AUTHED,
        &challenge(
            &bye,
            407,
            &["Digest realm=\"carrier.example\", nonce=\"n2\", algorithm=MD5, qop=\"auth\""],
        ),
    );
    let out = t.take();
    let again = the(&out, AUTHED, "BYE");
    assert_eq!(header(&again, "CSeq"), Some("4 BYE"));
    assert_ne!(header(&again, "Via"), header(&bye, "Via"));
    let d = answered_digest(&again, "Proxy-Authorization", "acct-auth", "trunk-pw");
    assert_eq!(d["nonce"], "n2");
    assert_eq!(t.core.calls.len(), 1, "kept until the BYE is answered");
    t.input(AUTHED, &answer(&again, 200, "pstn", AUTHED));
    assert_eq!(t.core.calls.len(), 0);
}

#[test]
fn a_bye_that_gets_no_answer_lets_the_call_go_after_its_timeout() {
    let mut t = t();
    let Connected { ok, .. } = connected(&mut t);
    t.input(ALICE, &from_caller_at(ALICE, "BYE", &ok, 2));
    t.take();
    assert_eq!(t.core.calls.len(), 1);
    // Timer F: 64·T1.
    t.advance(33);
    assert_eq!(t.core.calls.len(), 0);
}

#[test]
fn a_target_that_rang_then_refused_gets_no_cancel() {
    let mut t = t();
    let (invite, bob_id, _) = to_bob(&mut t);
    t.input(BOB, &target_says(&invite, 180, "bob1", BOB));
    t.take();
    t.input(BOB, &target_says(&invite, 486, "bob1", BOB));
    let out = t.take();
    // Its final response ended the INVITE: the ACK (the transaction's), never a CANCEL.
    assert!(got(&out, BOB, "ACK"), "{out:?}");
    assert!(!got(&out, BOB, "CANCEL"), "{out:?}");
    assert!(
        t.media.contains(&Command::Close { id: bob_id }),
        "{:?}",
        t.media
    );
}

#[test]
fn a_challenge_nobody_answers_reaches_the_caller_as_480_not_as_a_challenge() {
    // The `carrier` trunk has no account.
    let mut t = t_trunks("sip:carrier@127.0.0.2:5080", "+447700900123");
    call_erin(&mut t);
    t.take();
    let inv = the(&leg_opens(&mut t), "127.0.0.2:5080", "INVITE");
    let challenges = ["Digest realm=\"carrier.example\", nonce=\"n1\", algorithm=MD5"];
    t.input("127.0.0.2:5080", &challenge(&inv, 407, &challenges));
    let out = t.take();
    let last = to(&out, ALICE).pop().unwrap_or_default();
    assert!(first_line(&last).starts_with("SIP/2.0 480"), "{out:?}");
    assert!(header(&last, "Proxy-Authenticate").is_none(), "{last}");
}

#[test]
fn a_caller_who_cancels_while_the_target_is_located_leaves_nothing() {
    let mut t = t_trunks("sip:carrier.test", "+447700900123");
    call_erin(&mut t);
    let invite = to(&t.take(), ALICE);
    let _ = invite;
    let text = invite_sdp("e1").replace("1003@", "1005@");
    t.input(ALICE, &cancel_of(&text));
    let out = t.take();
    assert!(got(&out, ALICE, "SIP/2.0 487"), "{out:?}");
    t.answer_dns(carrier_dns);
    assert!(opened(&mut t).is_empty(), "{:?}", t.media);
    assert!(to(&t.take(), CARRIER_A).is_empty());
    assert_eq!(t.core.calls.len(), 0);
}

#[test]
fn a_reinvite_of_the_target_after_our_bye_is_481() {
    let mut t = t();
    let Connected {
        invite, ack, ok, ..
    } = connected(&mut t);
    t.input(ALICE, &from_caller_at(ALICE, "BYE", &ok, 2));
    assert!(got(&t.take(), BOB, "BYE"));
    t.input(
        BOB,
        &with_sdp(&target_in_dialog("INVITE", &invite, &ack, 2), BOB_SDP),
    );
    the(&t.take(), BOB, "SIP/2.0 481");
}

#[test]
fn a_target_that_never_acks_our_200_while_asked_is_hung_up_and_the_plan_goes_on() {
    // bob may ring for a minute: his leg ends for the missing ACK (64·T1), not its time.
    let media = media();
    let mut t = T::with_media(media, &POLICY.replace("ring_time = 20", "ring_time = 60"));
    t.register("bob", BOB);
    t.register("carol", CAROL);
    t.register("dave", DAVE);
    t.take();
    let (invite, bob_id, _) = to_bob(&mut t);
    let ack = bob_answers(&mut t, &invite, bob_id);
    // bob re-INVITEs while the question plays, and never ACKs our 200.
    t.input(
        BOB,
        &with_sdp(&target_in_dialog("INVITE", &invite, &ack, 2), BOB_SDP),
    );
    the(&t.take(), BOB, "SIP/2.0 200");
    t.media.clear();
    t.advance(40);
    let out = t.take();
    assert!(got(&out, BOB, "BYE"), "{out:?}");
    assert!(
        t.media.contains(&Command::Close { id: bob_id }),
        "{:?}",
        t.media
    );
    assert!(
        !got(&out, ALICE, "BYE"),
        "alice was never answered: {out:?}"
    );
}
