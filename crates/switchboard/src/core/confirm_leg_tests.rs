//! The target leg's dialog: our INVITE with one codec, the 2xx read (dialog fixed, answer
//! checked), its ACK and our BYE, and which requests are the target's in the dialog.

use super::*;
use crate::test_harness::*;

const CALLER_BOTH: &str = "v=0\r\no=- 1 1 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\n\
m=audio 4000 RTP/AVP 8 0 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n";

const CALLER_NO_EVENTS: &str =
    "v=0\r\no=- 1 1 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\n\
m=audio 4000 RTP/AVP 0\r\n";

fn parsed(sdp: &str) -> Session {
    Session::parse(sdp.as_bytes(), &sdp::Limits::default()).unwrap()
}

fn setup(law: Law, telephone_event: bool) -> LegSetup {
    LegSetup {
        call_id: "leg-1@switchboard".into(),
        from_tag: "ours".into(),
        from: "\"Alice\" <sip:1001@switchboard.local>".into(),
        target: "sip:bob@10.0.0.7:5062".into(),
        to: "<sip:bob@switchboard.local>".into(),
        contact: "sip:10.0.0.1:5060".into(),
        media: addr("10.0.0.1:30000"),
        session_id: 77,
        law,
        telephone_event,
    }
}

/// The target's answer to `invite` (with a Via, as sent), `code`, with an SDP of its own
/// in `law`, a Contact and a Record-Route.
fn target_answer(invite: &Request, code: u16, sdp: &str) -> Response {
    let mut text = invite.to_string();
    text = text.replacen(
        "\r\n",
        "\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-leg\r\n\
         Record-Route: <sip:proxy-a.example;lr>, <sip:proxy-b.example;lr>\r\n",
        1,
    );
    let mut resp = request_of_resp(&answer(&text, code, "theirs", "bob@10.0.0.8:5064"));
    resp.headers
        .retain(|h| !matches!(h, Header::ContentLength(_)));
    resp.headers
        .push(Header::ContentType("application/sdp".into()));
    resp.headers
        .push(Header::ContentLength((sdp.len() as u32).into()));
    resp.body = sdp.as_bytes().to_vec();
    resp
}

#[test]
fn the_law_is_the_callers_first_that_we_take_with_events_only_when_it_has_them() {
    assert_eq!(
        agreed_codec(&parsed(CALLER_BOTH)).unwrap(),
        (Law::ALaw, true)
    );
    assert_eq!(
        agreed_codec(&parsed(CALLER_NO_EVENTS)).unwrap(),
        (Law::MuLaw, false)
    );
    let video = "v=0\r\no=- 1 1 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\n\
                 m=audio 4000 RTP/AVP 18\r\n";
    assert_eq!(
        agreed_codec(&parsed(video)),
        Err(NegotiationError::NoCommonCodec)
    );
}

#[test]
fn our_invite_is_our_own_with_one_codec_in_its_offer() {
    let leg = TargetLeg::new(setup(Law::ALaw, true));
    let invite = leg.invite().unwrap();
    let text = invite.to_string();
    assert!(
        text.starts_with("INVITE sip:bob@10.0.0.7:5062 SIP/2.0\r\n"),
        "{text}"
    );
    assert_eq!(header(&text, "Call-ID"), Some("leg-1@switchboard"));
    assert_eq!(
        header(&text, "From"),
        Some("\"Alice\" <sip:1001@switchboard.local>;tag=ours")
    );
    assert_eq!(header(&text, "To"), Some("<sip:bob@switchboard.local>"));
    assert_eq!(header(&text, "CSeq"), Some("1 INVITE"));
    assert_eq!(header(&text, "Max-Forwards"), Some("70"));
    assert_eq!(header(&text, "Contact"), Some("<sip:10.0.0.1:5060>"));
    assert_eq!(header(&text, "Via"), None, "put on when it is sent");
    let offer = Session::parse(&invite.body, &sdp::Limits::default()).unwrap();
    assert_eq!(offer.media.len(), 1);
    assert_eq!(offer.media[0].port, 30000);
    assert_eq!(offer.media[0].formats, vec!["8", "101"]);
    assert_eq!(
        offer.connection_of(&offer.media[0]),
        Some(addr("10.0.0.1:1").ip())
    );

    // A caller without telephone-events: the target is offered none either.
    let leg = TargetLeg::new(setup(Law::MuLaw, false));
    let offer = Session::parse(&leg.invite().unwrap().body, &sdp::Limits::default()).unwrap();
    assert_eq!(offer.media[0].formats, vec!["0"]);
    assert!(
        offer.media[0].rtpmap("101").is_none() && offer.media[0].fmtp("101").is_none(),
        "{offer:?}"
    );
}

#[test]
fn the_2xx_fixes_the_dialog_and_its_ack_and_our_bye_follow_it() {
    let mut leg = TargetLeg::new(setup(Law::ALaw, true));
    let invite = leg.invite().unwrap();
    let bob = "v=0\r\no=- 5 5 IN IP4 10.0.0.8\r\ns=-\r\nc=IN IP4 10.0.0.8\r\nt=0 0\r\n\
               m=audio 5000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n";
    let ok = target_answer(&invite, 200, bob);
    assert!(leg.answers_invite(&ok));
    let stream = leg.answered(&ok).unwrap();
    assert_eq!(stream.law, Law::ALaw);
    assert_eq!(stream.remote, Some(addr("10.0.0.8:5000")));
    assert_eq!(stream.telephone_event, Some(101));

    // §13.2.2.4: the ACK goes to the 2xx's Contact through its Record-Route reversed,
    // with the INVITE's CSeq number and the target's tag.
    let ack = leg.ack().unwrap().to_string();
    assert!(
        ack.starts_with("ACK sip:bob@10.0.0.8:5064 SIP/2.0\r\n"),
        "{ack}"
    );
    assert_eq!(
        header(&ack, "Route"),
        Some("<sip:proxy-b.example;lr>, <sip:proxy-a.example;lr>")
    );
    assert_eq!(header(&ack, "CSeq"), Some("1 ACK"));
    assert_eq!(
        header(&ack, "To"),
        Some("<sip:bob@switchboard.local>;tag=theirs")
    );

    let bye = leg.bye().unwrap().to_string();
    assert!(
        bye.starts_with("BYE sip:bob@10.0.0.8:5064 SIP/2.0\r\n"),
        "{bye}"
    );
    assert_eq!(header(&bye, "CSeq"), Some("2 BYE"));
    assert_eq!(header(&bye, "Call-ID"), Some("leg-1@switchboard"));
    let again = leg.bye().unwrap().to_string();
    assert_eq!(header(&again, "CSeq"), Some("3 BYE"));
}

#[test]
fn an_answer_without_the_agreed_codec_is_refused_488() {
    let mut leg = TargetLeg::new(setup(Law::ALaw, true));
    let invite = leg.invite().unwrap();
    let pcmu = "v=0\r\no=- 5 5 IN IP4 10.0.0.8\r\ns=-\r\nc=IN IP4 10.0.0.8\r\nt=0 0\r\n\
                m=audio 5000 RTP/AVP 0\r\n";
    assert_eq!(leg.answered(&target_answer(&invite, 200, pcmu)), Err(488));
    let refused = "v=0\r\no=- 5 5 IN IP4 10.0.0.8\r\ns=-\r\nc=IN IP4 10.0.0.8\r\nt=0 0\r\n\
                   m=audio 0 RTP/AVP 8\r\n";
    assert_eq!(
        leg.answered(&target_answer(&invite, 200, refused)),
        Err(488)
    );
    assert_eq!(leg.answered(&target_answer(&invite, 200, "junk")), Err(488));
}

#[test]
fn the_targets_requests_in_the_dialog_are_told_from_others() {
    let mut leg = TargetLeg::new(setup(Law::ALaw, true));
    let invite = leg.invite().unwrap();
    let bob = "v=0\r\no=- 5 5 IN IP4 10.0.0.8\r\ns=-\r\nc=IN IP4 10.0.0.8\r\nt=0 0\r\n\
               m=audio 5000 RTP/AVP 8\r\n";
    leg.answered(&target_answer(&invite, 200, bob)).unwrap();
    // The target's BYE: From is its end (its tag), To ours.
    let theirs = "BYE sip:10.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.8:5064;branch=z9hG4bK-b\r\n\
                  From: <sip:bob@switchboard.local>;tag=theirs\r\nTo: \"Alice\" <sip:1001@switchboard.local>;tag=ours\r\n\
                  Call-ID: leg-1@switchboard\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n";
    assert!(leg.owns(&request_of(theirs)));
    let other_call = theirs.replace("leg-1@switchboard", "someone-else");
    assert!(!leg.owns(&request_of(&other_call)));
    let other_tag = theirs.replace("tag=ours", "tag=not-ours");
    assert!(!leg.owns(&request_of(&other_tag)));
}
