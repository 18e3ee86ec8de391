//! Presence over SIP through the whole core with a virtual clock: subscriptions to dialog
//! and presence state, NOTIFY on every change, PUBLISH, feature codes.

use crate::presence_service::{Command, ErrorKind, Request};
use crate::test_harness::*;
use std::net::SocketAddr;
use switchboard_presence::model::{Availability, Interface};

const WATCHER: &str = "127.0.0.1:5081";

fn subscribe(
    event: &str,
    target: &str,
    call: &str,
    cseq: u32,
    to_tag: Option<&str>,
    expires: u32,
) -> String {
    let to = match to_tag {
        Some(t) => format!("<sip:{target}@switchboard.local>;tag={t}"),
        None => format!("<sip:{target}@switchboard.local>"),
    };
    format!(
        "SUBSCRIBE sip:{target}@switchboard.local SIP/2.0\r\nVia: SIP/2.0/UDP {WATCHER};branch=z9hG4bK-{call}-{cseq};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@switchboard.local>;tag=w-{call}\r\nTo: {to}\r\nCall-ID: {call}\r\n\
         CSeq: {cseq} SUBSCRIBE\r\nContact: <sip:alice@{WATCHER}>\r\nEvent: {event}\r\nExpires: {expires}\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// Sends the subscription; returns the 200 and the first NOTIFY (answered 200).
fn subscribed(t: &mut T, event: &str, target: &str, call: &str) -> (String, String) {
    t.input(WATCHER, &subscribe(event, target, call, 1, None, 600));
    let out = t.take();
    let msgs = to(&out, WATCHER);
    assert!(msgs[0].starts_with("SIP/2.0 200"), "{msgs:?}");
    let notify = msgs
        .iter()
        .find(|m| m.starts_with("NOTIFY "))
        .expect("a NOTIFY at once")
        .clone();
    t.input(WATCHER, &answer(&notify, 200, "", WATCHER));
    (msgs[0].clone(), notify)
}

fn notifies(out: &[(SocketAddr, String)]) -> Vec<String> {
    to(out, WATCHER)
        .into_iter()
        .filter(|m| m.starts_with("NOTIFY "))
        .collect()
}

fn ack_all(t: &mut T, notifies: &[String]) {
    for n in notifies {
        t.input(WATCHER, &answer(n, 200, "", WATCHER));
    }
}

fn command(t: &mut T, command: Command) {
    command_id(t, 1, command);
}

fn command_id(t: &mut T, id: u64, command: Command) {
    t.feed(crate::core::Input::Command {
        id,
        req: Request {
            who: "admin".into(),
            admin: true,
            via: Interface::Api,
            command,
        },
    });
    t.pump();
}

#[test]
fn blf_follows_a_colleagues_calls_across_devices() {
    let mut t = T::new(false);
    t.register("bob", BOB);
    t.register("bob", BOB2);
    let (ok, first) = subscribed(&mut t, "dialog", "bob", "s1");
    assert!(ok.contains("Expires: 600"), "{ok}");
    assert!(header(&first, "Subscription-State")
        .unwrap()
        .starts_with("active;expires="));
    assert_eq!(
        header(&first, "Content-Type"),
        Some("application/dialog-info+xml")
    );
    assert!(
        first.contains("entity=\"sip:bob@switchboard.local\""),
        "{first}"
    );
    assert!(!first.contains("<dialog "), "idle: {first}");

    t.input(ALICE, &invite("alice", ALICE, "1002", "call-1", ""));
    let out = t.take();
    let n = notifies(&out);
    assert_eq!(n.len(), 1, "one NOTIFY for both devices ringing: {n:?}");
    assert!(n[0].contains("<state>early</state>"), "{}", n[0]);
    ack_all(&mut t, &n);
    let b1 = to(&out, BOB)[0].clone();
    let b2 = to(&out, BOB2)[0].clone();
    t.input(BOB, &answer(&b1, 180, "d1", BOB));
    t.input(BOB2, &answer(&b2, 180, "d2", BOB2));
    assert!(
        notifies(&t.take()).is_empty(),
        "still early: nothing new to say"
    );
    t.input(BOB, &answer(&b1, 200, "d1", BOB));
    let out = t.take();
    let n = notifies(&out);
    assert_eq!(n.len(), 1, "{n:?}");
    assert!(n[0].contains("<state>confirmed</state>"), "{}", n[0]);
    assert!(n[0].contains("version=\"2\""), "{}", n[0]);
    ack_all(&mut t, &n);
    // The other device's branch is cancelled: bob is still busy (no "idle" in between).
    let cancel = to(&out, BOB2)
        .into_iter()
        .find(|m| m.starts_with("CANCEL"))
        .unwrap();
    t.input(BOB2, &answer(&cancel, 200, "d2", BOB2));
    t.input(BOB2, &answer(&b2, 487, "d2", BOB2));
    assert!(notifies(&t.take()).is_empty());
    // BYE: idle again.
    let relayed = to(&out, ALICE)
        .into_iter()
        .find(|m| m.starts_with("SIP/2.0 200"))
        .unwrap();
    t.input(
        ALICE,
        &in_dialog("BYE", "bob@127.0.0.1:5072", &relayed, ALICE, 2),
    );
    let n = notifies(&t.take());
    assert_eq!(n.len(), 1);
    assert!(!n[0].contains("<dialog "), "{}", n[0]);
}

#[test]
fn presence_notifies_status_message_and_profile_and_hides_call_status() {
    let mut t = T::new(false);
    t.register("bob", BOB);
    let (_, first) = subscribed(&mut t, "presence", "bob", "p1");
    assert_eq!(header(&first, "Content-Type"), Some("application/pidf+xml"));
    assert!(first.contains("<basic>open</basic>"), "{first}");
    command(
        &mut t,
        Command::SetStatus {
            user: "bob".into(),
            status: "dnd".into(),
            text: Some("Writing the report".into()),
            until: None,
        },
    );
    let n = notifies(&t.take());
    assert_eq!(n.len(), 1);
    assert!(n[0].contains("<rpid:busy/>"), "{}", n[0]);
    assert!(
        n[0].contains("<note>Do not disturb - Writing the report</note>"),
        "{}",
        n[0]
    );
    ack_all(&mut t, &n);
    // A profile that does not show call status: a call changes nothing colleagues see.
    command(
        &mut t,
        Command::SetProfile {
            user: "bob".into(),
            profile: "meeting".into(),
            until: None,
            message: None,
        },
    );
    let n = notifies(&t.take());
    assert_eq!(n.len(), 1);
    assert!(n[0].contains("Meeting"), "{}", n[0]);
    ack_all(&mut t, &n);
    t.input(ALICE, &invite("alice", ALICE, "bob", "c9", ""));
    let out = t.take();
    assert!(
        notifies(&out).is_empty(),
        "hidden call status: {:?}",
        notifies(&out)
    );
}

#[test]
fn unsubscribe_expiry_and_a_gone_subscriber_end_subscriptions() {
    let mut t = T::new(false);
    let (ok, _) = subscribed(&mut t, "dialog", "bob", "u1");
    let tag = header(&ok, "To")
        .unwrap()
        .rsplit("tag=")
        .next()
        .unwrap()
        .to_string();
    t.input(WATCHER, &subscribe("dialog", "bob", "u1", 2, Some(&tag), 0));
    let out = t.take();
    let msgs = to(&out, WATCHER);
    assert!(msgs[0].starts_with("SIP/2.0 200"), "{msgs:?}");
    let n = notifies(&out);
    assert_eq!(header(&n[0], "Subscription-State"), Some("terminated"));
    ack_all(&mut t, &n);
    // A refresh of a subscription that is gone: 481.
    t.input(
        WATCHER,
        &subscribe("dialog", "bob", "u1", 3, Some(&tag), 600),
    );
    assert!(to(&t.take(), WATCHER)[0].starts_with("SIP/2.0 481"));

    // Expiry: a minute's subscription ends with reason=timeout.
    t.input(WATCHER, &subscribe("dialog", "bob", "u2", 1, None, 60));
    let n = notifies(&t.take());
    ack_all(&mut t, &n);
    t.advance(62);
    let n = notifies(&t.take());
    // (It may have been retransmitted while the clock ran.)
    assert!(!n.is_empty());
    assert!(
        n.iter()
            .all(|m| header(m, "Subscription-State") == Some("terminated;reason=timeout")),
        "{n:?}"
    );
    ack_all(&mut t, &n);

    // A subscriber answering 481: no more NOTIFYs.
    t.input(WATCHER, &subscribe("presence", "bob", "u3", 1, None, 600));
    let n = notifies(&t.take());
    t.input(WATCHER, &answer(&n[0], 481, "", WATCHER));
    assert_eq!(t.core.watchers.notifier.len(), 0);
}

#[test]
fn subscriptions_are_refused_as_rfc_6665_says() {
    let mut t = T::new(false);
    t.input(WATCHER, &subscribe("conference", "bob", "r1", 1, None, 600));
    let r = &to(&t.take(), WATCHER)[0];
    assert!(r.starts_with("SIP/2.0 489"), "{r}");
    assert!(
        r.contains("Allow-Events: dialog, presence, message-summary"),
        "{r}"
    );
    t.input(WATCHER, &subscribe("dialog", "bob", "r2", 1, None, 5));
    let r = &to(&t.take(), WATCHER)[0];
    assert!(
        r.starts_with("SIP/2.0 423") && r.contains("Min-Expires: 60"),
        "{r}"
    );
    t.input(WATCHER, &subscribe("dialog", "nobody", "r3", 1, None, 600));
    assert!(to(&t.take(), WATCHER)[0].starts_with("SIP/2.0 404"));
}

#[test]
fn subscriptions_need_credentials() {
    let mut t = T::new(true);
    t.input(WATCHER, &subscribe("dialog", "bob", "a1", 1, None, 600));
    let r = &to(&t.take(), WATCHER)[0];
    assert!(
        r.starts_with("SIP/2.0 401") && r.contains("WWW-Authenticate: Digest"),
        "{r}"
    );
}

#[test]
fn feature_codes_change_the_callers_own_presence_once_stored() {
    let mut t = T::new(false);
    let (_, _) = subscribed(&mut t, "presence", "bob", "f1");
    t.input(BOB, &invite("bob", BOB, "*78", "fc1", ""));
    let out = t.take();
    let answer_to_bob = to(&out, BOB)
        .into_iter()
        .find(|m| m.starts_with("SIP/2.0 480"))
        .unwrap();
    assert!(
        answer_to_bob.starts_with("SIP/2.0 480 Do Not Disturb On\r\n"),
        "{answer_to_bob}"
    );
    assert_eq!(
        t.core.presence().model().get("bob").unwrap().availability,
        Availability::DoNotDisturb
    );
    assert!(
        t.persisted.iter().any(|w| w.key == "bob"),
        "stored before the answer"
    );
    let n = notifies(&out);
    assert!(n.iter().any(|m| m.contains("<rpid:busy/>")), "{n:?}");
    ack_all(&mut t, &n);
    t.input(BOB, &invite("bob", BOB, "*79", "fc2", ""));
    t.take();
    assert_eq!(
        t.core.presence().model().get("bob").unwrap().availability,
        Availability::Available
    );
    // *3 + a profile number: 2 is Lunch.
    t.input(BOB, &invite("bob", BOB, "*32", "fc3", ""));
    let out = t.take();
    assert!(to(&out, BOB)
        .iter()
        .any(|m| m.starts_with("SIP/2.0 480") && m.starts_with("SIP/2.0 480 Profile 2 Active")));
    assert_eq!(
        t.core.presence().model().get("bob").unwrap().profile.id,
        "lunch"
    );
    // No such profile: 404 with the reason.
    t.input(BOB, &invite("bob", BOB, "*3999", "fc4", ""));
    let out = t.take();
    assert!(
        to(&out, BOB).iter().any(|m| m.starts_with("SIP/2.0 404")),
        "{out:?}"
    );
}

#[test]
fn a_phone_publishes_its_own_presence() {
    let mut t = T::new(false);
    let body = "<?xml version=\"1.0\"?>\n<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" xmlns:rpid=\"urn:ietf:params:xml:ns:pidf:rpid\" xmlns:dm=\"urn:ietf:params:xml:ns:pidf:data-model\" entity=\"sip:alice@switchboard.local\">\
        <tuple id=\"t\"><status><basic>open</basic></status></tuple><dm:person id=\"p\"><rpid:activities><rpid:away/></rpid:activities><dm:note>Back soon</dm:note></dm:person></presence>";
    let publish = |cseq: u32, extra: &str, body: &str| {
        format!(
            "PUBLISH sip:alice@switchboard.local SIP/2.0\r\nVia: SIP/2.0/UDP {ALICE};branch=z9hG4bK-pub{cseq};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:alice@switchboard.local>;tag=pb\r\nTo: <sip:alice@switchboard.local>\r\n\
             Call-ID: pub-1\r\nCSeq: {cseq} PUBLISH\r\nEvent: presence\r\nExpires: 600\r\n{extra}\
             Content-Type: application/pidf+xml\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    t.input(ALICE, &publish(1, "", body));
    let out = t.take();
    let r = &to(&out, ALICE)[0];
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
    let etag = header(r, "SIP-ETag").expect("an entity tag").to_string();
    let p = t.core.presence().model().get("alice").unwrap().clone();
    assert_eq!(p.availability, Availability::Away);
    assert_eq!(p.message(), Some("Back soon"));
    // A refresh with the tag and no body; an unknown tag is 412.
    t.input(ALICE, &publish(2, &format!("SIP-If-Match: {etag}\r\n"), ""));
    assert!(to(&t.take(), ALICE)[0].starts_with("SIP/2.0 200"));
    t.input(ALICE, &publish(3, "SIP-If-Match: nope\r\n", ""));
    assert!(to(&t.take(), ALICE)[0].starts_with("SIP/2.0 412"));
    // Someone else's presence is not yours to publish.
    t.input(
        ALICE,
        &publish(4, "", body).replace("PUBLISH sip:alice@", "PUBLISH sip:bob@"),
    );
    assert!(to(&t.take(), ALICE)[0].starts_with("SIP/2.0 403"));
    // Not PIDF: 400; not even said to be PIDF: 415; no document at first: 400.
    t.input(ALICE, &publish(5, "", "<nonsense/>"));
    assert!(to(&t.take(), ALICE)[0].starts_with("SIP/2.0 400"));
    t.input(
        ALICE,
        &publish(6, "", body).replace("application/pidf+xml", "text/plain"),
    );
    let r = &to(&t.take(), ALICE)[0];
    assert!(
        r.starts_with("SIP/2.0 415") && r.contains("Accept: application/pidf+xml"),
        "{r}"
    );
    t.input(ALICE, &publish(7, "", ""));
    assert!(to(&t.take(), ALICE)[0].starts_with("SIP/2.0 400"));
    // Removing the publication takes its status back.
    t.input(
        ALICE,
        &publish(8, &format!("SIP-If-Match: {etag}\r\n"), "").replace("Expires: 600", "Expires: 0"),
    );
    assert!(to(&t.take(), ALICE)[0].starts_with("SIP/2.0 200"));
    assert_eq!(
        t.core.presence().model().get("alice").unwrap().availability,
        Availability::Available
    );
}

#[test]
fn a_publication_that_expires_gives_its_status_back_unless_changed_since() {
    let mut t = T::new(false);
    let body = "<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" xmlns:rpid=\"urn:ietf:params:xml:ns:pidf:rpid\"><tuple id=\"t\"><status><basic>open</basic></status></tuple><rpid:activities><rpid:busy/></rpid:activities></presence>";
    let publish = |user: &str, cseq: u32| {
        format!(
            "PUBLISH sip:{user}@switchboard.local SIP/2.0\r\nVia: SIP/2.0/UDP {ALICE};branch=z9hG4bK-pe{user}{cseq};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:{user}@switchboard.local>;tag=pb\r\nTo: <sip:{user}@switchboard.local>\r\n\
             Call-ID: pub-{user}\r\nCSeq: {cseq} PUBLISH\r\nEvent: presence\r\nExpires: 60\r\n\
             Content-Type: application/pidf+xml\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    t.input(ALICE, &publish("alice", 1));
    t.input(ALICE, &publish("bob", 1));
    t.take();
    let status = |t: &T, who: &str| t.core.presence().model().get(who).unwrap().availability;
    assert_eq!(status(&t, "alice"), Availability::Busy);
    // bob's status is changed through the API meanwhile: that change stands.
    command(
        &mut t,
        Command::SetStatus {
            user: "bob".into(),
            status: "away".into(),
            text: None,
            until: None,
        },
    );
    t.advance(62);
    assert_eq!(status(&t, "alice"), Availability::Available, "withdrawn");
    assert_eq!(status(&t, "bob"), Availability::Away, "changed since: kept");
}

fn dnd(user: &str, text: &str) -> Command {
    Command::SetStatus {
        user: user.into(),
        status: "dnd".into(),
        text: Some(text.into()),
        until: None,
    }
}

#[test]
fn watchers_hear_of_a_change_once_it_is_stored_and_never_if_it_is_not() {
    let mut t = T::new(false);
    subscribed(&mut t, "presence", "bob", "d1");
    t.hold_writes = true;
    command(&mut t, dnd("bob", "first"));
    assert!(
        notifies(&t.take()).is_empty(),
        "not before the store has it"
    );
    t.release(true);
    let n = notifies(&t.take());
    assert_eq!(n.len(), 1);
    assert!(
        n[0].contains("<note>Do not disturb - first</note>"),
        "{}",
        n[0]
    );
    ack_all(&mut t, &n);
    // A change the store refuses is undone and never told.
    command(&mut t, dnd("bob", "second"));
    t.release(false);
    assert!(notifies(&t.take()).is_empty());
    assert_eq!(
        t.core.presence().model().get("bob").unwrap().message(),
        Some("first")
    );
}

#[test]
fn changes_of_one_person_are_stored_one_after_another() {
    let mut t = T::new(false);
    t.hold_writes = true;
    command_id(&mut t, 1, dnd("bob", "one"));
    command_id(&mut t, 2, dnd("bob", "two"));
    // The second waits for the first: one write on its way.
    assert_eq!(t.held_len(), 1);
    t.release(false);
    // The first could not be stored (unavailable) and was undone; the second goes ahead on the undone state.
    assert_eq!(t.replies[0], (1, Err(ErrorKind::Unavailable)));
    assert_eq!(t.held_len(), 1);
    t.release(true);
    assert_eq!(t.replies[1].0, 2);
    assert!(t.replies[1].1.is_ok());
    assert_eq!(
        t.core.presence().model().get("bob").unwrap().message(),
        Some("two")
    );
    // Another person is never held up by bob's writes.
    command_id(&mut t, 3, dnd("bob", "three"));
    command_id(&mut t, 4, dnd("carol", "other"));
    assert_eq!(t.held_len(), 2);
}

#[test]
fn a_feature_code_is_answered_only_once_its_change_is_stored() {
    let mut t = T::new(false);
    t.hold_writes = true;
    t.input(BOB, &invite("bob", BOB, "*78", "fh1", ""));
    let out = t.take();
    assert!(
        !to(&out, BOB).iter().any(|m| m.starts_with("SIP/2.0 480")),
        "no answer before the store has it: {out:?}"
    );
    t.release(true);
    let out = t.take();
    assert!(to(&out, BOB)
        .iter()
        .any(|m| m.starts_with("SIP/2.0 480 Do Not Disturb On")));
    // When the store fails: 500, and the change is undone.
    t.input(BOB, &invite("bob", BOB, "*79", "fh2", ""));
    t.release(false);
    let out = t.take();
    assert!(
        to(&out, BOB).iter().any(|m| m.starts_with("SIP/2.0 500")),
        "{out:?}"
    );
    assert_eq!(
        t.core.presence().model().get("bob").unwrap().availability,
        Availability::DoNotDisturb
    );
}

/// The PIDF colleagues get for a person in `status` (with a Custom text, a message, the
/// active profile's name when not the default, and whether a call shows).
fn pidf_for(
    status: Availability,
    custom: Option<&str>,
    message: Option<&str>,
    profile: Option<&str>,
    in_call: bool,
) -> String {
    use switchboard_presence::model::{ActiveProfile, CallStatus, PersonPresence};
    let p = PersonPresence {
        availability: status,
        custom_text: custom.map(str::to_string),
        temporary_message: message.map(str::to_string),
        profile: ActiveProfile {
            id: "available".into(),
            since: 0,
            until: None,
            shows_call_status: true,
            profile_message: None,
        },
        status_since: 0,
        status_end: None,
    };
    let shown = if in_call {
        CallStatus::Busy
    } else {
        CallStatus::Free
    };
    let doc = super::presence_doc(Some(&p), shown, profile.map(str::to_string));
    switchboard_sip::events::pidf("sip:bob@switchboard.local", &doc)
}

/// The RPID activity elements of a PIDF document, in order.
fn activities(doc: &str) -> Vec<String> {
    doc.split("<rpid:")
        .skip(1)
        .map(|e| e.split(['>', ' ']).next().unwrap_or("").to_string())
        .filter(|e| e != "activities")
        .collect()
}

fn note(doc: &str) -> Option<&str> {
    let start = doc.find("<note>")? + "<note>".len();
    Some(&doc[start..start + doc[start..].find("</note>")?])
}

#[test]
fn one_activity_per_status_in_the_pidf() {
    use Availability::*;
    // (status, basic, activity, note) as docs/phones.md lists them.
    let table: [(Availability, &str, Option<&str>, Option<&str>); 8] = [
        (Available, "open", None, None),
        (Away, "open", Some("away/"), None),
        (Busy, "open", Some("busy/"), None),
        (DoNotDisturb, "open", Some("busy/"), Some("Do not disturb")),
        (Custom, "open", None, Some("Working from home")),
        (Unavailable, "closed", None, None),
        (OnBreak, "open", Some("away/"), Some("On break")),
        (
            AfterCallWork,
            "open",
            Some("busy/"),
            Some("After-call work"),
        ),
    ];
    for (status, basic, activity, want_note) in table {
        let doc = pidf_for(status, Some("Working from home"), None, None, false);
        assert!(
            doc.contains(&format!("<basic>{basic}</basic>")),
            "{status:?}: {doc}"
        );
        assert_eq!(
            activities(&doc),
            activity.map(str::to_string).into_iter().collect::<Vec<_>>(),
            "{status:?}: {doc}"
        );
        assert_eq!(note(&doc), want_note, "{status:?}: {doc}");
        assert!(!doc.contains("rpid:other"), "{status:?}: {doc}");
        // What a phone reading it back sees: that one activity.
        let read = switchboard_sip::events::parse_pidf(doc.as_bytes()).unwrap();
        assert_eq!(read.activities.len(), activity.iter().count(), "{doc}");
    }
}

#[test]
fn a_call_shows_as_on_the_phone_unless_the_status_says_busy() {
    use Availability::*;
    for (status, activity) in [
        (Available, "on-the-phone/"),
        (Custom, "on-the-phone/"),
        (Away, "on-the-phone/"),
        (OnBreak, "on-the-phone/"),
        (Busy, "busy/"),
        (DoNotDisturb, "busy/"),
        (AfterCallWork, "busy/"),
    ] {
        let doc = pidf_for(status, None, None, None, true);
        assert_eq!(activities(&doc), [activity], "{status:?}: {doc}");
    }
    let doc = pidf_for(Unavailable, None, None, None, true);
    assert!(activities(&doc).is_empty(), "{doc}");
    assert!(doc.contains("<basic>closed</basic>"), "{doc}");
}

#[test]
fn the_note_carries_the_status_name_the_profile_and_the_message() {
    let doc = pidf_for(
        Availability::DoNotDisturb,
        None,
        Some("Back at 2 <pm>"),
        Some("Meeting"),
        false,
    );
    assert_eq!(activities(&doc), ["busy/"], "{doc}");
    assert_eq!(
        note(&doc),
        Some("Do not disturb - Meeting - Back at 2 &lt;pm&gt;"),
        "{doc}"
    );
    let doc = pidf_for(Availability::Available, None, None, Some("Lunch"), false);
    assert!(activities(&doc).is_empty(), "{doc}");
    assert_eq!(note(&doc), Some("Lunch"), "{doc}");
    let doc = pidf_for(
        Availability::Custom,
        Some("At the dentist"),
        None,
        None,
        false,
    );
    assert_eq!(note(&doc), Some("At the dentist"), "{doc}");
}

/// bob's device at `at` registers for `expires` seconds (0: removes its registration);
/// what the core sent meanwhile.
fn register_bob(t: &mut T, at: &str, cseq: u32, expires: u32) -> Vec<(SocketAddr, String)> {
    let text = format!(
        "REGISTER sip:switchboard.local SIP/2.0\r\nVia: SIP/2.0/UDP {at};branch=z9hG4bK-reg-bob-{cseq}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:bob@switchboard.local>;tag=r\r\nTo: <sip:bob@switchboard.local>\r\n\
         Call-ID: reg-bob-{at}\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:bob@{at}>\r\nExpires: {expires}\r\n\
         Content-Length: 0\r\n\r\n"
    );
    t.input(at, &text);
    let out = t.take();
    assert!(to(&out, at)[0].starts_with("SIP/2.0 200"), "{out:?}");
    out
}

/// A core whose presence watchers see people without a registered device offline.
fn offline_shown() -> T {
    let mut config = crate::test_harness::config(false);
    config.watchers.offline_without_devices = true;
    T::with_config(
        config,
        crate::test_harness::Net {
            listeners: crate::test_harness::default_listeners(),
            interfaces: None,
        },
        crate::test_harness::POLICY,
    )
}

#[test]
fn a_person_without_a_registered_device_is_closed_to_presence_watchers() {
    let mut t = offline_shown();
    // bob has a SIP account and no device yet: offline, whatever his status says.
    let (_, first) = subscribed(&mut t, "presence", "bob", "o1");
    assert!(first.contains("<basic>closed</basic>"), "{first}");
    assert_eq!(note(&first), Some("Offline"), "{first}");
    assert!(activities(&first).is_empty(), "{first}");
    // Do Not Disturb while offline: still closed, no activity; the note says both.
    command(
        &mut t,
        Command::SetStatus {
            user: "bob".into(),
            status: "dnd".into(),
            text: None,
            until: None,
        },
    );
    let n = notifies(&t.take());
    assert_eq!(n.len(), 1, "{n:?}");
    assert!(n[0].contains("<basic>closed</basic>"), "{}", n[0]);
    assert!(activities(&n[0]).is_empty(), "{}", n[0]);
    assert_eq!(note(&n[0]), Some("Offline - Do not disturb"), "{}", n[0]);
    ack_all(&mut t, &n);
    // His phone registers: open, and the status shows.
    let n = notifies(&register_bob(&mut t, BOB, 1, 3600));
    assert_eq!(n.len(), 1, "{n:?}");
    assert!(n[0].contains("<basic>open</basic>"), "{}", n[0]);
    assert_eq!(activities(&n[0]), ["busy/"], "{}", n[0]);
    ack_all(&mut t, &n);
    // A second device changes nothing watchers see.
    let out = register_bob(&mut t, BOB2, 1, 120);
    assert!(notifies(&out).is_empty(), "{out:?}");
    // Both gone (one unregisters, the other lapses): closed again.
    let out = register_bob(&mut t, BOB, 2, 0);
    assert!(notifies(&out).is_empty(), "BOB2 is still there: {out:?}");
    t.advance(121);
    let n = notifies(&t.take());
    assert_eq!(n.len(), 1, "{n:?}");
    assert!(n[0].contains("<basic>closed</basic>"), "{}", n[0]);
}

#[test]
fn a_reload_that_takes_away_or_gives_a_sip_account_tells_the_watchers() {
    let mut t = offline_shown();
    let (_, first) = subscribed(&mut t, "presence", "bob", "o3");
    assert!(first.contains("<basic>closed</basic>"), "{first}");
    // bob's SIP account goes (he is reached by forwarding only): no longer offline.
    let without = crate::test_harness::POLICY.replace("[users.bob.sip]\npassword = \"pw\"\n", "");
    assert_ne!(without, crate::test_harness::POLICY);
    t.feed(crate::core::Input::PolicyChanged(
        crate::test_harness::snapshot(&without),
    ));
    t.pump();
    let n = notifies(&t.take());
    assert_eq!(n.len(), 1, "{n:?}");
    assert!(n[0].contains("<basic>open</basic>"), "{}", n[0]);
    ack_all(&mut t, &n);
    // The same policy again: nothing they see changed, nothing is sent.
    t.feed(crate::core::Input::PolicyChanged(
        crate::test_harness::snapshot(&without),
    ));
    t.pump();
    assert!(notifies(&t.take()).is_empty());
    // The account is back, still without a device: offline again.
    t.feed(crate::core::Input::PolicyChanged(
        crate::test_harness::snapshot(crate::test_harness::POLICY),
    ));
    t.pump();
    let n = notifies(&t.take());
    assert_eq!(n.len(), 1, "{n:?}");
    assert!(n[0].contains("<basic>closed</basic>"), "{}", n[0]);
}

#[test]
fn without_offline_without_devices_the_status_alone_says_open_or_closed() {
    let mut t = T::new(false);
    let (_, first) = subscribed(&mut t, "presence", "bob", "o2");
    assert!(first.contains("<basic>open</basic>"), "{first}");
    assert_eq!(note(&first), None, "{first}");
}
