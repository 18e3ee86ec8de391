//! Mailboxes taking messages, driven through the whole core: the call answered (200 OK),
//! the owner's recordings read, the greeting and the beep, the recording, the message kept
//! in one commit; `#`, the caller's BYE, a message too short, a full mailbox, an offer
//! that cannot be answered. The engine's and the store's parts are played by the test.

use super::*;
use crate::core::mailboxes::MessageRow;
use crate::core::media::MediaConfig;
use crate::core::records::{CallRecord, RecordOutcome};
use crate::core::{CoreConfig, Input, RoutingConfig};
use crate::test_harness::*;
use std::sync::Arc;
use switchboard_media::recorder::Ended;
use switchboard_media::session::{Command, Counters, Event, SessionId};
use switchboard_store::tables::{CALL_RECORDS, VOICEMAIL, VOICEMAIL_AUDIO, VOICEMAIL_RECORDINGS};

/// Bob has no phone and carol's mailbox holds one message at most: their calls go to
/// their mailboxes. Erin's (a phone that is busy) go to hers as busy; dave's mailbox is
/// off, so his calls end 480.
const POLICY: &str = r#"
[users.bob]
extension = "1002"
display_name = "Bob B"
no_answer = "voicemail"
[users.carol]
extension = "1003"
no_answer = "voicemail"
[users.carol.voicemail]
max_messages = 1
[users.erin]
extension = "1005"
busy = "voicemail"
[users.alice]
extension = "1001"
display_name = "Alice A"
"#;

const OFFER: &str = PCMU_OFFER;

/// The prompts a mailbox says, each a distinct little sound (its own first sample).
const PROMPTS: &[&str] = &[
    "phrases/extension",
    "digits/0",
    "digits/1",
    "digits/2",
    "digits/3",
    "phrases/is_not_available",
    "phrases/is_on_another_call",
    "phrases/please_leave_a_message_after_the_tone",
    "phrases/beep",
    "phrases/goodbye",
    "phrases/the_mailbox_is_full",
    "phrases/the_person_you_are_calling",
];

fn library() -> Library {
    let mut lib = Library::default();
    for (i, name) in PROMPTS.iter().enumerate() {
        lib.insert_samples(name, &[(i as i16 + 1) * 1000, 0, -1000]);
    }
    lib
}

fn clips(names: &[&str]) -> Vec<Clip> {
    let lib = library();
    names
        .iter()
        .map(|n| lib.clip(n, Law::MuLaw).unwrap())
        .collect()
}

fn t_with(voicemail: VoicemailConfig) -> T {
    let media = MediaConfig {
        enabled: true,
        address: None,
        max_sessions: 10,
        rtp_timeout: Duration::from_secs(30),
        library: Arc::new(library()),
    };
    let config = CoreConfig {
        routing: RoutingConfig {
            media,
            voicemail,
            ..config(false).routing
        },
        ..config(false)
    };
    let net = Net {
        listeners: default_listeners(),
        interfaces: None,
    };
    T::with_config(config, net, POLICY)
}

fn t() -> T {
    t_with(VoicemailConfig::default())
}

/// An INVITE of the caller (`"Carl" <sip:4400@example.com>`) to `to`, with `body` as SDP.
fn invite_sdp(to: &str, call: &str, body: &str) -> String {
    format!(
        "INVITE sip:{to}@switchboard.local SIP/2.0\r\nVia: SIP/2.0/UDP {CALLER};branch=z9hG4bK-{call};rport\r\n\
         Max-Forwards: 70\r\nFrom: \"Carl\" <sip:4400@example.com>;tag=from-{call}\r\nTo: <sip:{to}@switchboard.local>\r\n\
         Call-ID: {call}\r\nCSeq: 1 INVITE\r\nContact: <sip:caller@{CALLER}>\r\nContent-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Answers every read the core asked for with `value_of(key)`.
fn answer_reads(t: &mut T, value_of: impl Fn(&str) -> Option<Vec<u8>>) {
    for (token, table, key) in std::mem::take(&mut t.reads) {
        assert_eq!(table, VOICEMAIL_RECORDINGS);
        let value = value_of(&key);
        t.feed(Input::Read { token, value });
        t.pump();
    }
}

/// Calls `to`: the session opens, the caller gets 200 (ACKed), the owner has recorded
/// nothing; returns the session, our 200 and what the engine was told to play.
fn reach_mailbox(t: &mut T, to: &str, call: &str) -> (SessionId, String, Vec<Clip>) {
    t.input(CALLER, &invite_sdp(to, call, OFFER));
    t.take();
    let id = session(t);
    t.media.clear();
    t.feed(Input::Media(Event::Opened { id, port: 30000 }));
    t.pump();
    let out = t.take();
    let ok = to_caller(&out, "SIP/2.0 200");
    t.input(CALLER, &from_caller("ACK", &ok, 1, "", ""));
    assert!(t.media.is_empty(), "the greeting waits for the reads");
    answer_reads(t, |_| None);
    let [Command::Play { id: p, clips }] = t.media.as_slice() else {
        panic!("{:?}", t.media)
    };
    assert_eq!(*p, id);
    let clips = clips.clone();
    t.media.clear();
    (id, ok, clips)
}

/// The first message to the caller whose first line starts with `line`.
fn to_caller(out: &[(std::net::SocketAddr, String)], line: &str) -> String {
    to(out, CALLER)
        .into_iter()
        .find(|m| first_line(m).starts_with(line))
        .unwrap_or_else(|| panic!("no {line} to the caller: {out:?}"))
}

/// The greeting has played: the recording starts (its command checked).
fn greeting_played(t: &mut T, id: SessionId) -> (Duration, Option<Silence>) {
    t.feed(Input::Media(Event::Played { id }));
    t.pump();
    let [Command::Record {
        id: r,
        max,
        silence,
    }] = t.media.as_slice()
    else {
        panic!("{:?}", t.media)
    };
    assert_eq!(*r, id);
    let got = (*max, *silence);
    t.media.clear();
    got
}

/// `secs` of a recognisable sound.
fn speech(secs: f64) -> Vec<i16> {
    (0..(secs * 8000.0) as usize)
        .map(|i| ((i % 80) as i16 - 40) * 300)
        .collect()
}

fn recorded(t: &mut T, id: SessionId, samples: Vec<i16>, ended: Ended) {
    let recording = Recording { samples, ended };
    t.feed(Input::Media(Event::Recorded { id, recording }));
    t.pump();
}

/// The message rows and audio written so far.
fn kept(t: &T) -> Vec<(MessageRow, Vec<i16>)> {
    let rows: Vec<&switchboard_store::Write> = t
        .persisted
        .iter()
        .filter(|w| w.table == VOICEMAIL)
        .collect();
    rows.iter()
        .map(|w| {
            let row: MessageRow = serde_json::from_slice(w.value.as_ref().unwrap()).unwrap();
            let audio = t
                .persisted
                .iter()
                .find(|a| a.table == VOICEMAIL_AUDIO && a.key == w.key)
                .expect("the audio beside the row");
            let samples = wav::decode(audio.value.as_ref().unwrap(), usize::MAX).unwrap();
            (row, samples)
        })
        .collect()
}

/// The last record written of call `call_id`.
fn record(t: &T, call_id: &str) -> CallRecord {
    t.persisted
        .iter()
        .rev()
        .filter(|w| w.table == CALL_RECORDS)
        .filter_map(|w| serde_json::from_slice::<CallRecord>(w.value.as_ref()?).ok())
        .find(|r| r.call_id == call_id)
        .unwrap_or_else(|| panic!("no record of {call_id}"))
}

fn closed(t: &mut T, id: SessionId) {
    t.feed(Input::Media(Event::Closed {
        id,
        counters: Counters::default(),
    }));
    t.pump();
}

#[test]
fn a_call_nobody_answers_is_greeted_recorded_and_its_message_kept_when_the_caller_hangs_up() {
    let mut t = t();
    t.input(CALLER, &invite_sdp("1002", "v1", OFFER));
    let out = t.take();
    // Nothing rings: bob has no phone. The session is asked for, and both recordings.
    assert!(to(&out, CALLER)
        .iter()
        .all(|m| first_line(m).starts_with("SIP/2.0 100")));
    let id = session(&t);
    let keys: Vec<&str> = t.reads.iter().map(|(_, _, k)| k.as_str()).collect();
    assert_eq!(keys, ["user:bob\ngreeting", "user:bob\nname"]);
    // The session opens before the store answers: the caller is answered at once…
    t.media.clear();
    t.feed(Input::Media(Event::Opened { id, port: 30000 }));
    t.pump();
    let ok = to_caller(&t.take(), "SIP/2.0 200");
    assert!(ok.contains("m=audio 30000 RTP/AVP 0"), "{ok}");
    assert!(header(&ok, "Allow").unwrap().contains("BYE"), "{ok}");
    // Where the caller's requests in the dialog go: one URI, in angle brackets once.
    assert_eq!(header(&ok, "Contact"), Some("<sip:127.0.0.1:5060>"), "{ok}");
    t.input(CALLER, &from_caller("ACK", &ok, 1, "", ""));
    // …and hears the greeting once both reads are in (nothing recorded: the default).
    assert!(t.media.is_empty(), "{:?}", t.media);
    let token = t.reads[0].0;
    t.feed(Input::Read { token, value: None });
    t.pump();
    assert!(t.media.is_empty(), "one read still out: {:?}", t.media);
    answer_reads(&mut t, |_| None);
    let expected = clips(&[
        "phrases/extension",
        "digits/1",
        "digits/0",
        "digits/0",
        "digits/2",
        "phrases/is_not_available",
        "phrases/please_leave_a_message_after_the_tone",
        "phrases/beep",
    ]);
    assert_eq!(
        t.media,
        vec![Command::Play {
            id,
            clips: expected
        }]
    );
    t.media.clear();
    // The beep over: the recording, as long as the daemon allows, ended by 10 s of quiet.
    let (max, silence) = greeting_played(&mut t, id);
    assert_eq!(max, Duration::from_secs(180));
    assert_eq!(
        silence,
        Some(Silence {
            level: 100,
            after: Duration::from_secs(10)
        })
    );
    assert!(kept(&t).is_empty());

    // The caller hangs up: 200, the session closes; the engine hands the recording first.
    t.input(CALLER, &from_caller("BYE", &ok, 2, "", ""));
    let out = to(&t.take(), CALLER);
    assert!(first_line(&out[0]).starts_with("SIP/2.0 200"), "{out:?}");
    assert_eq!(t.media, vec![Command::Close { id }]);
    t.media.clear();
    let writes_before = t.persisted.len();
    let samples = speech(2.5);
    recorded(&mut t, id, samples.clone(), Ended::Closed);
    // One commit of the row and its audio.
    let outputs: Vec<&String> = t
        .outputs
        .iter()
        .filter(|o| o.starts_with("Persist") && o.contains("\"voicemail\""))
        .collect();
    assert_eq!(outputs.len(), 1, "{outputs:?}");
    assert_eq!(t.persisted.len(), writes_before + 2);
    let messages = kept(&t);
    let [(row, audio)] = messages.as_slice() else {
        panic!("{messages:?}")
    };
    assert_eq!(audio, &samples);
    assert_eq!(row.mailbox, "user:bob");
    assert_eq!(row.duration_ms, 2500);
    assert_eq!(row.caller, "4400");
    assert_eq!(row.caller_name.as_deref(), Some("Carl"));
    assert_eq!(row.called, "1002");
    assert_eq!(row.original.as_deref(), Some("user:bob"));
    assert_eq!(row.reason, "unavailable");
    assert_eq!(row.profile, None);
    assert_eq!(row.call_id, "v1");
    assert!(!row.heard);
    assert_eq!(row.received, t.now().unix);
    // The mailbox counts it; no goodbye to a caller who is gone.
    assert_eq!(t.core.mailboxes.counts("user:bob").new, 1);
    assert!(t.media.is_empty(), "{:?}", t.media);
    closed(&mut t, id);
    assert_eq!(t.core.media().0, 0);
    assert!(t.core.calls().is_empty());
    assert_eq!(t.core.metrics().voicemail.kept, 1);

    // The call was answered, by the mailbox: outcome voicemail, whose mailbox it was.
    let r = record(&t, "v1");
    assert_eq!(r.outcome, RecordOutcome::Voicemail);
    assert_eq!(r.mailbox.as_deref(), Some("user:bob"));
    assert_eq!(r.answered_by.as_deref(), Some("mailbox user:bob"));
    assert_eq!(r.end_reason.as_deref(), Some("bye"));
    assert!(
        r.steps
            .iter()
            .any(|s| s.contains("answered by the mailbox of user:bob")),
        "{:?}",
        r.steps
    );
}

#[test]
fn hash_ends_the_message_then_goodbye_and_the_daemon_hangs_up() {
    for how in ["rfc4733", "info"] {
        let mut t = t();
        let (id, ok, _) = reach_mailbox(&mut t, "1002", &format!("h-{how}"));
        greeting_played(&mut t, id);
        // A key other than # changes nothing.
        t.feed(Input::Media(Event::Digit { id, digit: '5' }));
        t.pump();
        assert!(t.media.is_empty(), "{:?}", t.media);
        match how {
            "rfc4733" => {
                t.feed(Input::Media(Event::Digit { id, digit: '#' }));
                t.pump();
            }
            _ => {
                let info = from_caller(
                    "INFO",
                    &ok,
                    2,
                    "Content-Type: application/dtmf-relay\r\n",
                    "Signal=#\r\nDuration=160\r\n",
                );
                t.input(CALLER, &info);
                let out = to(&t.take(), CALLER);
                assert!(first_line(&out[0]).starts_with("SIP/2.0 200"), "{out:?}");
            }
        }
        assert_eq!(t.media, vec![Command::StopRecording { id }], "{how}");
        t.media.clear();
        recorded(&mut t, id, speech(3.0), Ended::Stopped);
        assert_eq!(kept(&t).len(), 1, "{how}");
        assert_eq!(kept(&t)[0].0.duration_ms, 3000);
        // "Goodbye", then our BYE.
        assert_eq!(
            t.media,
            vec![Command::Play {
                id,
                clips: clips(&["phrases/goodbye"])
            }]
        );
        assert!(to(&t.take(), CALLER).is_empty());
        t.media.clear();
        t.feed(Input::Media(Event::Played { id }));
        t.pump();
        assert_eq!(t.media, vec![Command::Close { id }]);
        let bye = to_caller(&t.take(), "BYE ");
        assert_eq!(header(&bye, "From"), header(&ok, "To"));
        closed(&mut t, id);
        let r = record(&t, &format!("h-{how}"));
        assert_eq!(r.outcome, RecordOutcome::Voicemail);
        assert_eq!(r.end_reason.as_deref(), Some("hung up"));
    }
}

#[test]
fn hash_during_the_greeting_skips_to_the_beep_once() {
    let mut t = t();
    let (id, _, _) = reach_mailbox(&mut t, "1002", "skip");
    t.feed(Input::Media(Event::Digit { id, digit: '#' }));
    t.pump();
    assert_eq!(
        t.media,
        vec![
            Command::Stop { id },
            Command::Play {
                id,
                clips: clips(&["phrases/beep"])
            }
        ]
    );
    t.media.clear();
    // Again while the beep plays: nothing more.
    t.feed(Input::Media(Event::Digit { id, digit: '#' }));
    t.pump();
    assert!(t.media.is_empty(), "{:?}", t.media);
    // The beep's end starts the recording, which # then ends as usual.
    greeting_played(&mut t, id);
    t.feed(Input::Media(Event::Digit { id, digit: '#' }));
    t.pump();
    assert_eq!(t.media, vec![Command::StopRecording { id }]);
}

#[test]
fn quiet_or_the_longest_message_end_it_as_hash_does_and_a_short_one_is_not_kept() {
    let mut t = t_with(VoicemailConfig {
        max_message: Duration::from_secs(60),
        silence: None,
        min_message: Duration::from_millis(1500),
        ..VoicemailConfig::default()
    });
    let (id, _, _) = reach_mailbox(&mut t, "1002", "q1");
    let (max, silence) = greeting_played(&mut t, id);
    assert_eq!((max, silence), (Duration::from_secs(60), None));
    recorded(&mut t, id, speech(1.0), Ended::Silence);
    // Shorter than 1.5 s: nothing kept, but the caller still hears goodbye.
    assert!(kept(&t).is_empty());
    assert_eq!(t.core.metrics().voicemail.too_short, 1);
    assert!(matches!(t.media.as_slice(), [Command::Play { .. }]));
    t.media.clear();
    t.feed(Input::Media(Event::Played { id }));
    t.pump();
    to_caller(&t.take(), "BYE ");

    let (id, _, _) = reach_mailbox(&mut t, "1002", "q2");
    greeting_played(&mut t, id);
    recorded(&mut t, id, speech(60.0), Ended::MaxLength);
    assert_eq!(kept(&t).len(), 1);
    assert_eq!(kept(&t)[0].0.duration_ms, 60_000);
}

#[test]
fn the_owners_greeting_or_name_is_played_when_they_recorded_one() {
    let greeting: Vec<i16> = vec![7000, -7000, 7000];
    let name: Vec<i16> = vec![5000, 5000, -5000];
    let law = Law::MuLaw;
    // The call, the owner's greeting and name recorded (or not), what the caller hears.
    type Case<'a> = (&'a str, Option<&'a [i16]>, Option<&'a [i16]>, Vec<Clip>);
    let cases: [Case; 3] = [
        (
            "g",
            Some(&greeting),
            Some(&name),
            vec![
                law.encode(&greeting).into(),
                clips(&["phrases/beep"])[0].clone(),
            ],
        ),
        ("n", None, Some(&name), {
            let mut c: Vec<Clip> = vec![law.encode(&name).into()];
            c.extend(clips(&[
                "phrases/is_not_available",
                "phrases/please_leave_a_message_after_the_tone",
                "phrases/beep",
            ]));
            c
        }),
        // Bytes that are no WAV: as if nothing were recorded.
        ("x", None, None, {
            clips(&[
                "phrases/extension",
                "digits/1",
                "digits/0",
                "digits/0",
                "digits/2",
                "phrases/is_not_available",
                "phrases/please_leave_a_message_after_the_tone",
                "phrases/beep",
            ])
        }),
    ];
    for (call, g, n, expected) in cases {
        let mut t = t();
        t.input(CALLER, &invite_sdp("1002", call, OFFER));
        t.take();
        let id = session(&t);
        t.media.clear();
        // The store answers first this time: the greeting goes with the answer.
        answer_reads(&mut t, |key| {
            let recording = if key.ends_with("greeting") { g } else { n };
            match recording {
                Some(samples) => Some(wav::encode(samples)),
                None if call == "x" => Some(b"RIFF junk".to_vec()),
                None => None,
            }
        });
        assert!(t.media.is_empty());
        t.feed(Input::Media(Event::Opened { id, port: 30000 }));
        t.pump();
        to_caller(&t.take(), "SIP/2.0 200");
        assert_eq!(
            t.media,
            vec![Command::Play {
                id,
                clips: expected
            }],
            "{call}"
        );
    }
}

#[test]
fn a_busy_callee_s_mailbox_says_on_another_call() {
    let mut t = t();
    t.register("erin", BOB);
    t.input(CALLER, &invite_sdp("1005", "b1", OFFER));
    let out = t.take();
    let branch = to(&out, BOB)
        .into_iter()
        .find(|m| m.starts_with("INVITE "))
        .unwrap();
    t.input(BOB, &answer(&branch, 486, "e1", BOB));
    t.take();
    let id = session(&t);
    t.media.clear();
    t.feed(Input::Media(Event::Opened { id, port: 30000 }));
    t.pump();
    to_caller(&t.take(), "SIP/2.0 200");
    answer_reads(&mut t, |_| None);
    let [Command::Play { clips: heard, .. }] = t.media.as_slice() else {
        panic!("{:?}", t.media)
    };
    let busy = clips(&["phrases/is_on_another_call"]).remove(0);
    assert!(heard.contains(&busy), "{heard:?}");
    t.media.clear();
    greeting_played(&mut t, id);
    recorded(&mut t, id, speech(2.0), Ended::Closed);
    assert_eq!(kept(&t)[0].0.reason, "busy");
}

#[test]
fn a_full_mailbox_says_so_in_early_media_and_the_call_ends_unanswered() {
    let mut t = t();
    // Carol's mailbox holds one message already, its most.
    let row = MessageRow {
        id: "00000000000000000010-1".into(),
        mailbox: "user:carol".into(),
        received: 10,
        duration_ms: 3000,
        caller: "1001".into(),
        caller_name: None,
        called: "1003".into(),
        original: None,
        reason: "no_answer".into(),
        profile: None,
        call_id: "old".into(),
        heard: false,
    };
    let key = switchboard_store::tables::voicemail_key(&row.mailbox, &row.id);
    assert_eq!(
        t.core
            .restore_voicemail(vec![(key, serde_json::to_vec(&row).unwrap())]),
        1
    );
    t.input(CALLER, &invite_sdp("1003", "f1", OFFER));
    t.take();
    assert!(t.reads.is_empty(), "nothing to greet with");
    let id = session(&t);
    t.media.clear();
    t.feed(Input::Media(Event::Opened { id, port: 30000 }));
    t.pump();
    let out = t.take();
    to_caller(&out, "SIP/2.0 183");
    assert!(to(&out, CALLER)
        .iter()
        .all(|m| !first_line(m).starts_with("SIP/2.0 200")));
    assert_eq!(
        t.media,
        vec![Command::Play {
            id,
            clips: clips(&["phrases/the_mailbox_is_full"])
        }]
    );
    t.media.clear();
    t.feed(Input::Media(Event::Played { id }));
    t.pump();
    assert_eq!(t.media, vec![Command::Close { id }]);
    // Unanswered: the step's no-answer, the plan's 480.
    to_caller(&t.take(), "SIP/2.0 480");
    closed(&mut t, id);
    assert_eq!(t.core.metrics().voicemail.full, 1);
    let r = record(&t, "f1");
    assert_eq!(r.outcome, RecordOutcome::Missed);
    assert_eq!(r.mailbox, None);
    assert!(
        r.steps
            .iter()
            .any(|s| s.contains("mailbox user:carol full")),
        "{:?}",
        r.steps
    );
    assert!(kept(&t).is_empty());
}

#[test]
fn an_offer_it_cannot_answer_is_refused_as_an_announcement_s_and_a_late_offer_goes_on() {
    let mut t = t();
    t.input(CALLER, &invite_sdp("1002", "r1", G722_OFFER));
    let refusal = to_caller(&t.take(), "SIP/2.0 488");
    assert_eq!(
        header(&refusal, "Warning"),
        Some("305 127.0.0.1:5060 \"Incompatible media format\""),
        "{refusal}"
    );
    assert!(t.media.is_empty() && t.reads.is_empty());

    // No offer at all (a late offer): the mailbox cannot answer it; the plan goes on.
    let late = invite_sdp("1002", "r2", "").replace("Content-Type: application/sdp\r\n", "");
    t.input(CALLER, &late);
    to_caller(&t.take(), "SIP/2.0 480");
    assert!(t.media.is_empty());

    // An unreadable offer: 400.
    t.input(CALLER, &invite_sdp("1002", "r3", "v=0\r\nm=what\r\n"));
    to_caller(&t.take(), "SIP/2.0 400");
}

#[test]
fn a_caller_gone_during_the_greeting_leaves_nothing_and_a_stop_keeps_what_was_said() {
    let mut t = t();
    let (id, ok, _) = reach_mailbox(&mut t, "1002", "g1");
    t.input(CALLER, &from_caller("BYE", &ok, 2, "", ""));
    t.take();
    assert_eq!(t.media, vec![Command::Close { id }]);
    t.media.clear();
    // The greeting's Played, late: no recording starts in a closing session.
    t.feed(Input::Media(Event::Played { id }));
    t.pump();
    assert!(t.media.is_empty());
    closed(&mut t, id);
    assert!(kept(&t).is_empty());

    // The daemon stops during a recording: the caller gets our BYE, the message is kept.
    let (id, _, _) = reach_mailbox(&mut t, "1002", "g2");
    greeting_played(&mut t, id);
    t.feed(Input::Drain);
    t.pump();
    to_caller(&t.take(), "BYE ");
    assert!(t
        .media
        .iter()
        .any(|c| matches!(c, Command::Close { id: c } if *c == id)));
    recorded(&mut t, id, speech(1.5), Ended::Closed);
    assert_eq!(kept(&t).len(), 1);
    closed(&mut t, id);
    assert_eq!(t.core.media().0, 0);
}

/// A message the store refuses is not left counted without its audio: it leaves the
/// mailbox again (and its lamp with it).
#[test]
fn a_message_the_store_refuses_leaves_the_mailbox_again() {
    let mut t = t();
    let (id, _, _) = reach_mailbox(&mut t, "1002", "refused");
    greeting_played(&mut t, id);
    t.hold_writes = true;
    recorded(&mut t, id, speech(3.0), Ended::Stopped);
    let counts = t.core.mailbox_counts("user:bob");
    assert_eq!((counts.new, counts.old), (1, 0));
    // The deposit is the held write with the message's row.
    while t.held_len() > 0 {
        t.release(false);
    }
    let counts = t.core.mailbox_counts("user:bob");
    assert_eq!((counts.new, counts.old), (0, 0));
    assert!(kept(&t).is_empty());
}
