//! Message branches driven through the whole core (see test_harness): the engine's part
//! played by the test, which reads the commands and hands in the events.

use super::*;
use crate::core::{CoreConfig, Input, RoutingConfig};
use crate::test_harness::*;
use switchboard_media::session::Counters;

/// Dave has no phone; his calls go to alice, with a message to the caller meanwhile.
const POLICY: &str = r#"
[users.alice]
extension = "1001"
[users.dave]
extension = "1004"
no_answer = "hangup"
[users.dave.forwarding]
targets = ["user:alice"]
message = "fwd"
"#;

/// A caller's SDP offer: PCMA then PCMU, telephone-event at 101, RTP at 127.0.0.1:7000.
const OFFER: &str =
    "v=0\r\no=caller 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio 7000 RTP/AVP 8 0 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\n";

fn library() -> Arc<Library> {
    let mut lib = Library::default();
    lib.insert_samples("messages/fwd", &[0, 1000, -1000, 0]);
    Arc::new(lib)
}

fn media_config(max_sessions: usize) -> MediaConfig {
    MediaConfig {
        enabled: true,
        address: None,
        max_sessions,
        rtp_timeout: Duration::from_secs(30),
        library: library(),
    }
}

fn t_with(media: MediaConfig) -> T {
    let mut t = T::with_media(media, POLICY);
    t.register("alice", ALICE);
    t
}

/// An INVITE from a caller outside (no user of ours) to `to`, with `body` as SDP.
fn invite_sdp(to: &str, call: &str, body: &str) -> String {
    let from = "127.0.0.1:5099";
    format!(
        "INVITE sip:{to}@switchboard.local SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bK-{call};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:caller@example.com>;tag=from-{call}\r\nTo: <sip:{to}@switchboard.local>\r\n\
         Call-ID: {call}\r\nCSeq: 1 INVITE\r\nContact: <sip:caller@{from}>\r\nContent-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Dave's phone.
const DAVE: &str = "127.0.0.1:5075";

fn opened(t: &mut T) -> SessionId {
    let open = t
        .media
        .iter()
        .find_map(|c| match c {
            Command::Open(o) => Some(o.clone()),
            _ => None,
        })
        .expect("a session opened");
    open.id
}

#[test]
fn a_message_is_answered_183_with_our_sdp_then_played_then_closed_and_then_the_targets_ring() {
    let mut t = t_with(media_config(10));
    t.input(CALLER, &invite_sdp("1004", "m1", OFFER));
    let out = t.take();
    // The forward target waits for the message.
    assert!(to(&out, ALICE).is_empty(), "{out:?}");
    let [Command::Open(open)] = t.media.as_slice() else {
        panic!("{:?}", t.media)
    };
    assert_eq!(open.remote, Some(addr("127.0.0.1:7000")));
    assert_eq!(open.signalling, addr(CALLER).ip());
    assert_eq!(open.law, Law::ALaw, "the caller's first choice");
    assert_eq!((open.payload_type, open.telephone_event), (8, Some(101)));
    assert_eq!(open.ptime_ms, 20);
    assert!(open.send);
    let id = open.id;
    // Nothing answers the caller before the port is known.
    assert!(to(&out, CALLER)
        .iter()
        .all(|m| !first_line(m).starts_with("SIP/2.0 183")));

    t.media.clear();
    t.feed(Input::Media(Event::Opened { id, port: 30000 }));
    t.pump();
    let out = t.take();
    let progress = &to(&out, CALLER)[0];
    assert_eq!(first_line(progress), "SIP/2.0 183 Session Progress");
    let to_header = header(progress, "To").unwrap();
    assert!(to_header.contains(";tag="), "{progress}");
    assert_eq!(header(progress, "Content-Type"), Some("application/sdp"));
    assert!(header(progress, "Contact")
        .unwrap()
        .contains("127.0.0.1:5060"));
    let body = progress.split("\r\n\r\n").nth(1).unwrap();
    assert!(body.contains("m=audio 30000 RTP/AVP 8 101"), "{body}");
    assert!(body.contains("c=IN IP4 127.0.0.1"), "{body}");
    assert_eq!(
        header(progress, "Content-Length").unwrap(),
        body.len().to_string()
    );
    let lib = library();
    assert_eq!(
        t.media,
        vec![Command::Play {
            id,
            clips: vec![lib.clip("fwd", Law::ALaw).unwrap()]
        }]
    );

    // Played: the session is closed, and alice rings now.
    t.media.clear();
    t.feed(Input::Media(Event::Played { id }));
    t.pump();
    assert_eq!(t.media, vec![Command::Close { id }]);
    let out = t.take();
    assert!(first_line(&to(&out, ALICE)[0]).starts_with("INVITE sip:alice@"));
    t.media.clear();
    t.feed(Input::Media(Event::Closed {
        id,
        counters: Counters::default(),
    }));
    t.pump();
    assert_eq!(t.core.media().0, 0);
    assert_eq!(t.core.media().1.played, 1);
}

#[test]
fn a_call_answered_or_cancelled_while_the_message_plays_closes_its_session() {
    // Dave's own phone rings for 5 s before the message and on during it; he answers.
    let config = CoreConfig {
        routing: RoutingConfig {
            media: media_config(10),
            ..config(false).routing
        },
        ..config(false)
    };
    let net = Net {
        listeners: default_listeners(),
        interfaces: None,
    };
    let own_first = POLICY.replace("message = \"fwd\"", "message = \"fwd\"\nring_own_first = 5");
    let mut t = T::with_config(config, net, &own_first);
    t.register("dave", DAVE);
    t.input(CALLER, &invite_sdp("1004", "m2", OFFER));
    let out = t.take();
    let branch = to(&out, DAVE)[0].clone();
    assert!(t.media.is_empty());
    t.advance(5);
    let id = opened(&mut t);
    t.feed(Input::Media(Event::Opened { id, port: 30000 }));
    t.pump();
    t.take();
    t.media.clear();
    t.input(DAVE, &answer(&branch, 200, "d1", DAVE));
    let out = t.take();
    assert_eq!(first_line(&to(&out, CALLER)[0]), "SIP/2.0 200 OK");
    assert_eq!(t.media, vec![Command::Close { id }]);

    let mut t = t_with(media_config(10));
    // Cancelled by the caller.
    t.media.clear();
    let inv = invite_sdp("1004", "m3", OFFER);
    t.input(CALLER, &inv);
    t.take();
    let id = opened(&mut t);
    t.feed(Input::Media(Event::Opened { id, port: 30002 }));
    t.pump();
    t.media.clear();
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
    // A late event of the closing session changes nothing.
    t.media.clear();
    t.feed(Input::Media(Event::Played { id }));
    t.pump();
    assert!(t.media.is_empty());
}

#[test]
fn without_an_offer_an_engine_a_prompt_or_a_free_session_the_message_is_skipped() {
    // A late offer: no SDP in the INVITE.
    let mut t = t_with(media_config(10));
    let late = invite_sdp("1004", "m4", "").replace("Content-Type: application/sdp\r\n", "");
    t.input(CALLER, &late);
    let out = t.take();
    assert!(t.media.is_empty());
    assert!(!to(&out, ALICE).is_empty(), "the call goes on: {out:?}");
    assert_eq!(t.core.media().1.skipped, 1);

    // No codec in common.
    let g722 = OFFER.replace("RTP/AVP 8 0 101", "RTP/AVP 9 101").replace(
        "a=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n",
        "a=rtpmap:9 G722/8000\r\n",
    );
    t.input(CALLER, &invite_sdp("1004", "m5", &g722));
    t.take();
    assert!(t.media.is_empty());
    assert_eq!(t.core.media().1.skipped, 2);

    // The session limit.
    let mut t = t_with(media_config(1));
    t.input(CALLER, &invite_sdp("1004", "m6", OFFER));
    t.input(CALLER, &invite_sdp("1004", "m7", OFFER));
    t.take();
    assert_eq!(t.media.len(), 1, "{:?}", t.media);
    assert_eq!(t.core.media().1.skipped, 1);

    // No engine (the default): skipped, as before the daemon had media.
    let mut t = t_with(MediaConfig::default());
    t.input(CALLER, &invite_sdp("1004", "m8", OFFER));
    let out = t.take();
    assert!(t.media.is_empty());
    assert!(!to(&out, ALICE).is_empty());

    // No prompt of that name.
    let mut t = t_with(MediaConfig {
        library: Arc::default(),
        ..media_config(10)
    });
    t.input(CALLER, &invite_sdp("1004", "m9", OFFER));
    t.take();
    assert!(t.media.is_empty());
}

#[test]
fn a_session_the_engine_cannot_open_is_skipped_and_draining_closes_the_rest() {
    let mut t = t_with(media_config(10));
    t.input(CALLER, &invite_sdp("1004", "m10", OFFER));
    t.take();
    let id = opened(&mut t);
    t.media.clear();
    t.feed(Input::Media(Event::Failed {
        id,
        why: "no free port pair".into(),
    }));
    t.pump();
    let out = t.take();
    assert!(to(&out, CALLER)
        .iter()
        .all(|m| !first_line(m).starts_with("SIP/2.0 183")));
    assert_eq!(t.core.media(), (0, t.core.media().1));
    assert_eq!(t.core.media().1.skipped, 1);

    t.input(CALLER, &invite_sdp("1004", "m11", OFFER));
    let id = opened(&mut t);
    t.feed(Input::Media(Event::Opened { id, port: 30004 }));
    t.pump();
    t.media.clear();
    t.feed(Input::Drain);
    t.pump();
    assert_eq!(t.media, vec![Command::Close { id }]);
}

/// Bob refuses calls in meetings (480); carol's meetings refuse in silence.
const MEETING: &str = r#"
[users.bob]
extension = "1002"
[users.carol]
extension = "1003"
[profiles.meeting]
incoming = "reject"
reject_reason = "In a meeting"
[profiles.training]
incoming = "reject"
announce = false
"#;

/// A library with every prompt an announcement may need, each a short clip of its own.
fn full_library() -> Arc<Library> {
    let mut lib = Library::default();
    let en = switchboard_media::say::language("en").unwrap();
    let names = en
        .vocabulary()
        .iter()
        .chain(switchboard_media::say::phrase::ALL)
        .chain(&["time/at", "time/tomorrow"]);
    for (i, name) in names.enumerate() {
        let v = i as i16 * 100;
        lib.insert_samples(name, &[v, -v, v / 2]);
    }
    Arc::new(lib)
}

fn set_profile(t: &mut T, user: &str, profile: &str, until: u64) {
    use crate::presence_service::{Command as P, ProfileEnd, Request};
    t.feed(Input::Command {
        id: 1,
        req: Request {
            who: "admin".into(),
            admin: true,
            via: switchboard_presence::model::Interface::Api,
            command: P::SetProfile {
                user: user.into(),
                profile: profile.into(),
                until: Some(ProfileEnd::At(until as i64)),
                message: None,
            },
        },
    });
    t.pump();
}

#[test]
fn a_profile_that_refuses_calls_says_who_what_and_until_when_then_refuses() {
    let config = CoreConfig {
        routing: RoutingConfig {
            media: MediaConfig {
                library: full_library(),
                ..media_config(10)
            },
            ..config(false).routing
        },
        ..config(false)
    };
    let net = Net {
        listeners: default_listeners(),
        interfaces: None,
    };
    let mut t = T::with_config(config, net, MEETING);
    // The tests' clock starts at 2027-01-15 08:00 UTC: a meeting until 14:30.
    let half_past_two = 1_800_000_000 + 6 * 3600 + 1800;
    set_profile(&mut t, "bob", "meeting", half_past_two);
    t.take();
    t.media.clear();

    t.input(CALLER, &invite_sdp("1002", "p1", OFFER));
    let [Command::Open(open)] = t.media.as_slice() else {
        panic!("{:?}", t.media)
    };
    let id = open.id;
    let out = t.take();
    assert!(to(&out, CALLER)
        .iter()
        .all(|m| !first_line(m).starts_with("SIP/2.0 4")));
    t.media.clear();
    t.feed(Input::Media(Event::Opened { id, port: 30010 }));
    t.pump();
    let out = t.take();
    assert_eq!(
        first_line(&to(&out, CALLER)[0]),
        "SIP/2.0 183 Session Progress"
    );
    let lib = full_library();
    let said = [
        "phrases/extension",
        "digits/1",
        "digits/0",
        "digits/0",
        "digits/2",
        "phrases/is_in_a_meeting",
        "phrases/until",
        "digits/14",
        "digits/30",
    ];
    let clips: Vec<Clip> = said
        .iter()
        .map(|n| lib.clip(n, Law::ALaw).unwrap())
        .collect();
    // It waits for the name bob may have recorded (none here).
    assert!(t.media.is_empty(), "{:?}", t.media);
    let [(token, table, key)] = std::mem::take(&mut t.reads).try_into().unwrap();
    assert_eq!(
        (table, key.as_str()),
        (
            switchboard_store::tables::VOICEMAIL_RECORDINGS,
            "user:bob\nname"
        )
    );
    t.feed(Input::Read { token, value: None });
    t.pump();
    assert_eq!(t.media, vec![Command::Play { id, clips }]);

    // Played: the refusal, as the profile says.
    t.media.clear();
    t.feed(Input::Media(Event::Played { id }));
    t.pump();
    let out = t.take();
    assert_eq!(first_line(&to(&out, CALLER)[0]), "SIP/2.0 480 In a meeting");
    assert_eq!(t.media, vec![Command::Close { id }]);

    // With a name bob recorded: it is said instead of "extension 1002" (the read answered
    // before the session opens, this time).
    t.media.clear();
    t.input(CALLER, &invite_sdp("1002", "p3", OFFER));
    let [Command::Open(open)] = t.media.as_slice() else {
        panic!("{:?}", t.media)
    };
    let id = open.id;
    t.take();
    t.media.clear();
    let name: Vec<i16> = (0..4000).map(|i| (i % 50) as i16 * 100).collect();
    let [(token, _, _)] = std::mem::take(&mut t.reads).try_into().unwrap();
    t.feed(Input::Read {
        token,
        value: Some(switchboard_media::wav::encode(&name)),
    });
    t.pump();
    assert!(t.media.is_empty(), "nothing plays before the session opens");
    t.feed(Input::Media(Event::Opened { id, port: 30012 }));
    t.pump();
    t.take();
    let mut clips: Vec<Clip> = vec![Law::ALaw.encode(&name).into()];
    clips.extend(said[5..].iter().map(|n| lib.clip(n, Law::ALaw).unwrap()));
    assert_eq!(t.media, vec![Command::Play { id, clips }]);
    t.media.clear();
    t.feed(Input::Media(Event::Played { id }));
    t.pump();
    t.take();
    t.media.clear();

    // A profile with `announce = false` refuses at once.
    set_profile(&mut t, "carol", "training", half_past_two);
    t.take();
    t.media.clear();
    t.input(CALLER, &invite_sdp("1003", "p2", OFFER));
    let out = t.take();
    assert!(t.media.is_empty());
    assert!(to(&out, CALLER)
        .iter()
        .any(|m| first_line(m).starts_with("SIP/2.0 480")));
}

#[test]
fn an_announcement_names_a_recorded_name_and_the_day_when_not_today() {
    let mut lib = (*full_library()).clone();
    lib.insert_samples("messages/name_bob", &[1, 2, 3]);
    let message = switchboard_policy::Message::Profile(switchboard_policy::ProfileMessage {
        user: "bob".into(),
        extension: "1002".into(),
        profile: "holiday".into(),
        until: Some(switchboard_policy::LocalTime {
            hour: 9,
            minute: 0,
            days_ahead: 3,
            weekday: 1,
            day: 18,
            month: 1,
        }),
    });
    assert_eq!(
        lib.phrase(&message).unwrap(),
        [
            "messages/name_bob",
            "phrases/is_on_holiday",
            "phrases/until",
            "time/monday",
            "time/the",
            "digits/18th",
            "time/of",
            "time/january",
            "time/at",
            "digits/9",
            "digits/hundred",
        ]
    );
    // Tomorrow, and a profile of the operator's own: "is not available".
    let message = switchboard_policy::Message::Profile(switchboard_policy::ProfileMessage {
        user: "carol".into(),
        extension: "1003".into(),
        profile: "board".into(),
        until: Some(switchboard_policy::LocalTime {
            hour: 9,
            minute: 5,
            days_ahead: 1,
            weekday: 6,
            day: 16,
            month: 1,
        }),
    });
    assert_eq!(
        lib.phrase(&message).unwrap()[5..],
        [
            "phrases/is_not_available",
            "phrases/until",
            "time/tomorrow",
            "time/at",
            "digits/9",
            "digits/oh",
            "digits/5",
        ]
    );
    // A prompt missing: named in the error.
    let empty = Library::default();
    assert_eq!(empty.phrase(&message), Err("phrases/extension".into()));
}
