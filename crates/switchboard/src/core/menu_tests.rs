//! Menu branches driven through the whole core (see test_harness): the engine's part played
//! by the test, which reads the commands and hands in the events.

use crate::core::media::{Library, MediaConfig};
use crate::core::{CoreConfig, Input, RoutingConfig};
use crate::test_harness::*;
use std::sync::Arc;
use std::time::Duration;
use switchboard_media::g711::Law;
use switchboard_media::session::{Command, Counters, Event, SessionId};

/// Reception has no phone: its calls go to the menu, whose key 1 rings alice and key 2
/// bob; no choice after one replay rings carol.
const POLICY: &str = r#"
[users.alice]
extension = "1001"
[users.bob]
extension = "1002"
[users.carol]
extension = "1003"
[users.reception]
extension = "1000"
no_answer = "menu:main"
[destinations.main]
kind = "menu"
prompt = "main"
options = { "1" = "user:alice", "2" = "user:bob", "0" = "menu:main" }
timeout_secs = 3
retries = 1
invalid = "invalid"
default = "user:carol"
"#;

/// A caller's SDP offer: PCMU, telephone-event at 101.
const OFFER: &str =
    "v=0\r\no=caller 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio 7000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\n";

fn library() -> Arc<Library> {
    let mut lib = Library::default();
    // Two seconds of prompt, one of the invalid-key message.
    lib.insert_samples("messages/main", &[100; 16000]);
    lib.insert_samples("messages/invalid", &[200; 8000]);
    Arc::new(lib)
}

fn t() -> T {
    let config = CoreConfig {
        routing: RoutingConfig {
            media: MediaConfig {
                enabled: true,
                address: None,
                max_sessions: 10,
                rtp_timeout: Duration::from_secs(30),
                library: library(),
            },
            ..config(false).routing
        },
        ..config(false)
    };
    let net = Net {
        listeners: default_listeners(),
        interfaces: None,
    };
    let mut t = T::with_config(config, net, POLICY);
    t.register("alice", ALICE);
    t.register("bob", BOB);
    t.register("carol", CAROL);
    t
}

fn invite(call: &str, body: &str) -> String {
    format!(
        "INVITE sip:1000@switchboard.local SIP/2.0\r\nVia: SIP/2.0/UDP {CALLER};branch=z9hG4bK-{call};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:caller@example.com>;tag=from-{call}\r\nTo: <sip:1000@switchboard.local>\r\n\
         Call-ID: {call}\r\nCSeq: 1 INVITE\r\nContact: <sip:caller@{CALLER}>\r\nContent-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// The caller calls the menu: its session opens and the prompt plays in early media; the
/// session and our 183.
fn in_the_menu(t: &mut T, call: &str) -> (SessionId, String) {
    t.input(CALLER, &invite(call, OFFER));
    let out = t.take();
    for at in [ALICE, BOB, CAROL] {
        assert!(to(&out, at).is_empty(), "nobody rings yet: {out:?}");
    }
    let id = t
        .media
        .iter()
        .find_map(|c| match c {
            Command::Open(o) => Some(o.id),
            _ => None,
        })
        .expect("a session opened");
    t.media.clear();
    t.feed(Input::Media(Event::Opened { id, port: 30000 }));
    t.pump();
    let out = t.take();
    let progress = to(&out, CALLER)[0].clone();
    assert_eq!(first_line(&progress), "SIP/2.0 183 Session Progress");
    assert_eq!(
        t.media,
        vec![Command::Play {
            id,
            clips: vec![library().clip("main", Law::MuLaw).unwrap()]
        }]
    );
    t.media.clear();
    (id, progress)
}

#[test]
fn a_key_sent_as_sip_info_in_the_early_dialog_chooses_as_rfc_4733_does() {
    let mut t = t();
    let (id, progress) = in_the_menu(&mut t, "k6");
    let info = from_caller(
        "INFO",
        &progress,
        2,
        "Content-Type: application/dtmf-relay\r\n",
        "Signal=2\r\nDuration=160\r\n",
    );
    t.input(CALLER, &info);
    t.pump();
    let out = t.take();
    assert!(
        first_line(&to(&out, CALLER)[0]).starts_with("SIP/2.0 200"),
        "{out:?}"
    );
    // Key 2: the session closes and bob's phone rings with the caller's INVITE.
    assert_eq!(t.media, vec![Command::Close { id }]);
    let ring = to(&out, BOB);
    assert!(
        first_line(&ring[0]).starts_with("INVITE sip:bob@"),
        "{out:?}"
    );
}

#[test]
fn a_key_during_the_prompt_stops_it_and_its_option_rings_the_user() {
    let mut t = t();
    let (id, _) = in_the_menu(&mut t, "k1");
    t.feed(Input::Media(Event::Digit { id, digit: '2' }));
    t.pump();
    // The session closes (the prompt with it) and bob's phone rings with the caller's
    // INVITE: the caller is not answered by the menu.
    assert_eq!(t.media, vec![Command::Close { id }]);
    let out = t.take();
    let ring = to(&out, BOB);
    assert!(
        first_line(&ring[0]).starts_with("INVITE sip:bob@"),
        "{out:?}"
    );
    assert!(to(&out, CALLER)
        .iter()
        .all(|m| !first_line(m).starts_with("SIP/2.0 2")));
    // Bob answers the caller himself.
    t.input(BOB, &answer(&ring[0], 200, "b1", BOB));
    let out = t.take();
    assert_eq!(first_line(&to(&out, CALLER)[0]), "SIP/2.0 200 OK");
    t.media.clear();
    t.feed(Input::Media(Event::Closed {
        id,
        counters: Counters::default(),
    }));
    t.pump();
    assert_eq!(t.core.media().0, 0);
}

#[test]
fn a_key_with_no_option_stops_the_prompt_says_so_and_the_next_key_counts() {
    let mut t = t();
    let (id, _) = in_the_menu(&mut t, "k2");
    let lib = library();
    t.feed(Input::Media(Event::Digit { id, digit: '7' }));
    t.pump();
    assert_eq!(
        t.media,
        vec![
            Command::Stop { id },
            Command::Play {
                id,
                clips: vec![
                    lib.clip("invalid", Law::MuLaw).unwrap(),
                    lib.clip("main", Law::MuLaw).unwrap()
                ]
            }
        ]
    );
    assert!(t.take().is_empty(), "nobody rings");
    t.media.clear();
    // The stopped prompt's Played, crossing the Stop, starts no wait.
    t.feed(Input::Media(Event::Played { id }));
    t.pump();
    t.advance(3);
    assert!(t.media.is_empty(), "{:?}", t.media);
    t.feed(Input::Media(Event::Digit { id, digit: '1' }));
    t.pump();
    assert_eq!(t.media, vec![Command::Close { id }]);
    let out = t.take();
    assert!(first_line(&to(&out, ALICE)[0]).starts_with("INVITE sip:alice@"));
}

#[test]
fn no_key_plays_the_prompt_again_then_the_default_rings() {
    let mut t = t();
    let (id, _) = in_the_menu(&mut t, "k3");
    t.advance(2);
    t.feed(Input::Media(Event::Played { id }));
    t.pump();
    // 3 s without a key: the prompt again (no Stop: nothing plays).
    t.advance(2);
    assert!(t.media.is_empty());
    t.advance(1);
    assert_eq!(
        t.media,
        vec![Command::Play {
            id,
            clips: vec![library().clip("main", Law::MuLaw).unwrap()]
        }]
    );
    t.media.clear();
    t.advance(2);
    t.feed(Input::Media(Event::Played { id }));
    t.pump();
    t.advance(3);
    // The retry is used up: the menu's default, carol, rings.
    assert_eq!(t.media, vec![Command::Close { id }]);
    let out = t.take();
    assert!(first_line(&to(&out, CAROL)[0]).starts_with("INVITE sip:carol@"));
}

#[test]
fn without_an_offer_the_menu_is_skipped_to_its_default_and_cancel_closes_it() {
    let mut t = t();
    let late = invite("k4", "").replace("Content-Type: application/sdp\r\n", "");
    t.input(CALLER, &late);
    assert!(t.media.is_empty());
    let out = t.take();
    assert!(first_line(&to(&out, CAROL)[0]).starts_with("INVITE sip:carol@"));

    let mut t = self::t();
    let inv = invite("k5", OFFER);
    let (id, _) = in_the_menu(&mut t, "k5");
    let cancel = inv
        .replacen("INVITE sip:", "CANCEL sip:", 1)
        .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL")
        .replace("Content-Type: application/sdp\r\n", "");
    let cancel = format!(
        "{}Content-Length: 0\r\n\r\n",
        cancel.split("Content-Length").next().unwrap()
    );
    t.input(CALLER, &cancel);
    let out = t.take();
    let caller = to(&out, CALLER);
    let lines: Vec<&str> = caller.iter().map(|m| first_line(m)).collect();
    assert!(
        lines.contains(&"SIP/2.0 487 Request Terminated"),
        "{lines:?}"
    );
    assert_eq!(t.media, vec![Command::Close { id }]);
    // A key after the end changes nothing.
    t.media.clear();
    t.feed(Input::Media(Event::Digit { id, digit: '1' }));
    t.pump();
    assert!(t.media.is_empty());
    assert!(to(&t.take(), ALICE).is_empty());
}
