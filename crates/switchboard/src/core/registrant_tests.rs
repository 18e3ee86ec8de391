//! Trunk registration driven through the whole core with a virtual clock (see
//! test_harness): the REGISTER at start, challenges, refreshes, 423, back-offs, reloads,
//! a shutdown, and the carrier's calls to the registered contact.

use super::{refresh_delay, RegState};
use crate::core::Input;
use crate::core::TrunkStatus;
use crate::test_harness::*;

/// The carrier's registrar (and where the trunk's calls come from).
const REG: &str = "127.0.0.4:5080";

const TRUNK: &str = r#"
[users.bob]
extension = "1002"
[users.bob.sip]
password = "pw"

[trunks.reg]
uri = "sip:127.0.0.4:5080"
outbound = ["+44*"]
dids = { "+441632960000" = "user:bob" }
[trunks.reg.account]
username = "pbx"
password = "secret"
register = true
expires = 600
"#;

/// The same policy without the trunk's registration (its account stays; the carrier is
/// known by its address instead).
fn not_registering() -> String {
    TRUNK
        .replace("register = true\nexpires = 600\n", "")
        .replace("uri = ", "sources = [\"127.0.0.4/32\"]\nuri = ")
}

/// bob registers at BOB, answering the daemon's challenge.
fn register_bob(t: &mut T) {
    t.register_authenticated("bob", BOB);
}

fn status(t: &T) -> TrunkStatus {
    t.core
        .trunks()
        .into_iter()
        .find(|s| s.trunk == "reg")
        .expect("the trunk is listed")
}

/// The carrier's answer to `req` with `extra` header lines.
fn reply(req: &str, code: u16, extra: &[&str]) -> String {
    let resp = switchboard_sip::message::response(&request_of(req), code, Some("reg-tag"), "uas");
    let lines: String = extra.iter().map(|h| format!("{h}\r\n")).collect();
    resp.to_string()
        .replacen("\r\n\r\n", &format!("\r\n{lines}\r\n"), 1)
}

/// What the core sent the registrar since the last look: every REGISTER, retransmissions
/// of one counted once.
fn registers(t: &mut T) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for m in to(&t.take(), REG) {
        assert!(m.starts_with("REGISTER "), "{m}");
        if !out.iter().any(|o| header(o, "Via") == header(&m, "Via")) {
            out.push(m);
        }
    }
    out
}

/// The one REGISTER sent since the last look.
fn one_register(t: &mut T) -> String {
    let r = registers(t);
    assert_eq!(r.len(), 1, "{r:?}");
    r.into_iter().next().unwrap()
}

/// A started core whose trunk sent its first REGISTER (returned).
fn started(auth: bool) -> (T, String) {
    let mut t = T::with_policy(auth, TRUNK);
    assert!(t.take().is_empty(), "nothing goes before the first timeout");
    let now = t.now();
    assert!(t.core.poll_timeout(now).is_some_and(|w| w <= now.mono));
    t.tick();
    let r = one_register(&mut t);
    (t, r)
}

/// A core whose trunk is registered (for `granted` seconds, in the 200's Contact);
/// returns the 200's REGISTER.
fn registered(auth: bool, granted: u32) -> (T, String) {
    let (mut t, r) = started(auth);
    t.input(
        REG,
        &reply(
            &r,
            200,
            &[&format!(
                "Contact: <sip:reg@127.0.0.1:5060>;expires={granted}"
            )],
        ),
    );
    assert_eq!(status(&t).state, RegState::Registered);
    (t, r)
}

const CHALLENGE: &str =
    "WWW-Authenticate: Digest realm=\"carrier.example\", nonce=\"n1\", qop=\"auth\", algorithm=MD5";

#[test]
fn registers_at_start_answers_the_challenge_and_refreshes_at_half_the_time() {
    let (mut t, r) = started(false);
    assert_eq!(first_line(&r), "REGISTER sip:127.0.0.4:5080 SIP/2.0");
    assert!(
        header(&r, "From")
            .unwrap()
            .starts_with("<sip:pbx@127.0.0.4>;tag="),
        "{r}"
    );
    assert_eq!(header(&r, "To"), Some("<sip:pbx@127.0.0.4>"));
    assert_eq!(header(&r, "Contact"), Some("<sip:reg@127.0.0.1:5060>"));
    assert_eq!(header(&r, "Expires"), Some("600"));
    assert_eq!(header(&r, "CSeq"), Some("1 REGISTER"));
    assert!(header(&r, "Authorization").is_none());
    let s = status(&t);
    assert_eq!(s.state, RegState::Registering);
    assert_eq!(s.aor.as_deref(), Some("sip:pbx@127.0.0.4"));

    // Challenged: the same REGISTER, one number higher, with the account's answer.
    t.input(REG, &reply(&r, 401, &[CHALLENGE]));
    let r2 = one_register(&mut t);
    assert_eq!(header(&r2, "CSeq"), Some("2 REGISTER"));
    assert_eq!(header(&r2, "Call-ID"), header(&r, "Call-ID"));
    assert_eq!(header(&r2, "From"), header(&r, "From"));
    assert_ne!(header(&r2, "Via"), header(&r, "Via"));
    answered_digest(&r2, "Authorization", "pbx", "secret");

    // The registrar grants 300 s (its Contact says so; its Expires header is ignored).
    let t0 = t.now().unix;
    t.input(
        REG,
        &reply(
            &r2,
            200,
            &[
                "Contact: <sip:other@192.0.2.9>;expires=3600, <sip:reg@127.0.0.1:5060>;expires=300",
                "Expires: 600",
            ],
        ),
    );
    let s = status(&t);
    assert_eq!(s.state, RegState::Registered);
    assert_eq!(s.expires_at, Some(t0 + 300));
    assert_eq!(s.next_attempt_at, Some(t0 + 150));
    assert_eq!(s.last_error, None);
    assert_eq!(s.contact.as_deref(), Some("<sip:reg@127.0.0.1:5060>"));

    // Nothing until half the time; then the refresh, same Call-ID, next number.
    t.advance(149);
    assert!(registers(&mut t).is_empty());
    t.advance(1);
    let r3 = one_register(&mut t);
    assert_eq!(header(&r3, "CSeq"), Some("3 REGISTER"));
    assert_eq!(header(&r3, "Call-ID"), header(&r, "Call-ID"));
    assert!(header(&r3, "Authorization").is_none());
    // A refresh answered with an Expires header only.
    t.input(REG, &reply(&r3, 200, &["Expires: 100"]));
    let s = status(&t);
    assert_eq!(s.expires_at, Some(t.now().unix + 100));
    // A short binding is refreshed 30 s before it lapses.
    assert_eq!(s.next_attempt_at, Some(t.now().unix + 70));

    // The run replays byte for byte.
    assert_eq!(t.replay(), t.outputs);
}

#[test]
fn refresh_times() {
    let secs = |g| refresh_delay(g).as_secs();
    assert_eq!(secs(3600), 1800);
    assert_eq!(secs(120), 60);
    assert_eq!(secs(100), 70);
    assert_eq!(secs(60), 30);
    assert_eq!(secs(30), 15);
    assert_eq!(secs(4), 10, "never below the floor");
}

#[test]
fn a_stale_nonce_is_answered_again_a_second_challenge_is_a_refusal() {
    let (mut t, r) = started(false);
    t.input(REG, &reply(&r, 401, &[CHALLENGE]));
    let r2 = one_register(&mut t);
    t.input(
        REG,
        &reply(
            &r2,
            401,
            &["WWW-Authenticate: Digest realm=\"carrier.example\", nonce=\"n2\", stale=true, algorithm=MD5"],
        ),
    );
    let r3 = one_register(&mut t);
    assert_eq!(header(&r3, "CSeq"), Some("3 REGISTER"));
    assert!(answered_digest(&r3, "Authorization", "pbx", "secret")["nonce"] == "n2");
    // Challenged again, not stale: the credentials are wrong. A long back-off.
    t.input(REG, &reply(&r3, 401, &[CHALLENGE]));
    assert!(registers(&mut t).is_empty());
    let s = status(&t);
    assert_eq!(s.state, RegState::Failed);
    assert!(
        s.last_error
            .as_deref()
            .unwrap()
            .contains("refused the account's credentials"),
        "{s:?}"
    );
    assert_eq!(s.next_attempt_at, Some(t.now().unix + 1800));
}

#[test]
fn interval_too_brief_asks_again_with_min_expires() {
    let (mut t, r) = started(false);
    t.input(REG, &reply(&r, 423, &["Min-Expires: 1200"]));
    let r2 = one_register(&mut t);
    assert_eq!(header(&r2, "Expires"), Some("1200"));
    assert_eq!(header(&r2, "CSeq"), Some("2 REGISTER"));
    // A 423 that asks for nothing longer is a failure.
    t.input(REG, &reply(&r2, 423, &["Min-Expires: 1200"]));
    assert!(registers(&mut t).is_empty());
    assert_eq!(status(&t).state, RegState::Failed);
    assert!(status(&t).last_error.unwrap().starts_with("423 "));
}

#[test]
fn forbidden_backs_off_long_and_longer() {
    let (mut t, r) = started(false);
    t.input(REG, &reply(&r, 403, &[]));
    let s = status(&t);
    assert_eq!(s.state, RegState::Failed);
    assert_eq!(s.last_error.as_deref(), Some("403 Forbidden"));
    let t0 = t.now().unix;
    assert_eq!(s.next_attempt_at, Some(t0 + 1800));
    t.advance(1799);
    assert!(registers(&mut t).is_empty());
    t.advance(1);
    let r2 = one_register(&mut t);
    assert_eq!(header(&r2, "CSeq"), Some("2 REGISTER"));
    // Again: twice as long.
    t.input(REG, &reply(&r2, 404, &[]));
    assert_eq!(status(&t).next_attempt_at, Some(t.now().unix + 3600));
    // Success resets the back-off and the error.
    t.advance(3600);
    let r3 = one_register(&mut t);
    t.input(REG, &reply(&r3, 200, &[]));
    let s = status(&t);
    assert_eq!(s.state, RegState::Registered);
    assert_eq!(s.last_error, None);
    // No Contact or Expires in the 200: the expiry asked for.
    assert_eq!(s.expires_at, Some(t.now().unix + 600));
}

#[test]
fn server_trouble_backs_off_short_and_honours_retry_after() {
    let (mut t, r) = started(false);
    t.input(REG, &reply(&r, 503, &["Retry-After: 120"]));
    assert_eq!(status(&t).next_attempt_at, Some(t.now().unix + 120));
    t.advance(119);
    assert!(registers(&mut t).is_empty());
    t.advance(1);
    let r2 = one_register(&mut t);
    // The second failure in a row without Retry-After: 30 s doubled.
    t.input(REG, &reply(&r2, 500, &[]));
    let s = status(&t);
    assert_eq!(s.last_error.as_deref(), Some("500 Server Internal Error"));
    assert_eq!(s.next_attempt_at, Some(t.now().unix + 60));
    // No answer at all: Timer F, then 120 s.
    t.advance(60);
    let _ = one_register(&mut t);
    t.advance(32);
    let s = status(&t);
    assert_eq!(
        s.last_error.as_deref(),
        Some("no answer from the registrar"),
        "{s:?}"
    );
    let at = s.next_attempt_at.unwrap();
    assert!(at > t.now().unix && at <= t.now().unix + 120, "{s:?}");
}

#[test]
fn a_registrar_named_by_host_name_is_located_and_its_next_target_tried_on_503() {
    let policy = TRUNK.replace(
        "expires = 600",
        "expires = 600\nregistrar = \"sip:registrar.carrier.test\"",
    );
    let mut t = T::with_policy(false, &policy);
    t.tick();
    // Nothing is sent before the registrar's name is located.
    assert!(t.take().is_empty());
    assert!(!t.lookups.is_empty());
    t.answer_dns(carrier_dns);
    // SRV priority 10 first.
    let first = to(&t.take(), CARRIER_A);
    assert_eq!(first.len(), 1, "{first:?}");
    t.input(CARRIER_A, &reply(&first[0], 503, &["Retry-After: 120"]));
    // The next target at once (the next turn of the timer).
    t.tick();
    let second = to(&t.take(), CARRIER_B);
    assert_eq!(second.len(), 1, "{second:?}");
    assert!(
        second[0].starts_with("REGISTER sip:registrar.carrier.test"),
        "{}",
        second[0]
    );
    t.input(CARRIER_B, &reply(&second[0], 200, &["Expires: 600"]));
    assert_eq!(status(&t).state, RegState::Registered);
}

#[test]
fn a_registrar_whose_name_does_not_exist_fails_and_is_retried() {
    let policy = TRUNK.replace(
        "expires = 600",
        "expires = 600\nregistrar = \"sip:gone.test\"",
    );
    let mut t = T::with_policy(false, &policy);
    t.tick();
    t.answer_dns(carrier_dns);
    assert!(t.take().is_empty());
    let s = status(&t);
    assert_eq!(s.state, RegState::Failed);
    assert!(
        s.last_error
            .as_deref()
            .unwrap()
            .contains("has no SIP server"),
        "{s:?}"
    );
    assert_eq!(s.next_attempt_at, Some(t.now().unix + 30));
}

#[test]
fn a_reload_that_removes_the_registration_unregisters() {
    let (mut t, r) = registered(false, 600);
    t.take();
    t.feed(Input::PolicyChanged(snapshot(&not_registering())));
    t.pump();
    let un = one_register(&mut t);
    assert_eq!(header(&un, "Expires"), Some("0"));
    assert_eq!(header(&un, "Contact"), header(&r, "Contact"));
    assert_eq!(header(&un, "Call-ID"), header(&r, "Call-ID"));
    assert_eq!(header(&un, "CSeq"), Some("2 REGISTER"));
    assert_eq!(status(&t).state, RegState::Off);
    assert_eq!(t.core.unregistering(), 1);
    // Challenged like any REGISTER.
    t.input(
        REG,
        &reply(&un, 407, &[&CHALLENGE.replace("WWW-", "Proxy-")]),
    );
    let un2 = one_register(&mut t);
    assert_eq!(header(&un2, "Expires"), Some("0"));
    answered_digest(&un2, "Proxy-Authorization", "pbx", "secret");
    t.input(REG, &reply(&un2, 200, &[]));
    assert_eq!(t.core.unregistering(), 0);
    // Nothing more goes to the registrar.
    t.advance(700);
    assert!(registers(&mut t).is_empty());

    // The trunk registers again when the policy says so again: a new Call-ID.
    t.feed(Input::PolicyChanged(snapshot(TRUNK)));
    t.pump();
    let again = one_register(&mut t);
    assert_eq!(header(&again, "Expires"), Some("600"));
    assert_ne!(header(&again, "Call-ID"), header(&r, "Call-ID"));
    assert_eq!(status(&t).state, RegState::Registering);

    // A trunk removed altogether is unregistered too, and no longer listed.
    t.input(REG, &reply(&again, 200, &[]));
    let without = TRUNK.split("[trunks.reg]").next().unwrap().to_string();
    t.feed(Input::PolicyChanged(snapshot(&without)));
    t.pump();
    let un = one_register(&mut t);
    assert_eq!(header(&un, "Expires"), Some("0"));
    assert!(t.core.trunks().iter().all(|s| s.trunk != "reg"));
}

#[test]
fn a_changed_account_registers_again_a_new_registrar_after_unregistering() {
    let (mut t, r) = registered(false, 600);
    t.take();
    // A new password: the same binding, asked for again at once.
    t.feed(Input::PolicyChanged(snapshot(
        &TRUNK.replace("\"secret\"", "\"new-secret\""),
    )));
    t.pump();
    let again = one_register(&mut t);
    assert_eq!(header(&again, "Expires"), Some("600"));
    assert_eq!(header(&again, "Call-ID"), header(&r, "Call-ID"));
    t.input(REG, &reply(&again, 401, &[CHALLENGE]));
    answered_digest(&one_register(&mut t), "Authorization", "pbx", "new-secret");

    // Another registrar: the old binding removed there, a new one made at the new one.
    let moved = TRUNK.replace(
        "expires = 600",
        "expires = 600\nregistrar = \"sip:127.0.0.5:5080\"",
    );
    t.feed(Input::PolicyChanged(snapshot(&moved)));
    t.pump();
    let out = t.take();
    let old = to(&out, REG);
    assert_eq!(old.len(), 1, "{out:?}");
    assert_eq!(header(&old[0], "Expires"), Some("0"));
    let new = to(&out, "127.0.0.5:5080");
    assert_eq!(new.len(), 1, "{out:?}");
    assert_eq!(first_line(&new[0]), "REGISTER sip:127.0.0.5:5080 SIP/2.0");
    assert_eq!(header(&new[0], "To"), Some("<sip:pbx@127.0.0.5>"));
    assert_ne!(header(&new[0], "Call-ID"), header(&r, "Call-ID"));
}

#[test]
fn draining_unregisters() {
    let (mut t, _) = registered(false, 600);
    t.take();
    t.feed(Input::Drain);
    t.pump();
    let un = one_register(&mut t);
    assert_eq!(header(&un, "Expires"), Some("0"));
    assert_eq!(t.core.unregistering(), 1);
    t.input(REG, &reply(&un, 200, &[]));
    assert_eq!(t.core.unregistering(), 0);
    // Nothing registers again while draining.
    t.advance(700);
    assert!(registers(&mut t).is_empty());
    // The run replays byte for byte, the drain included.
    assert_eq!(t.replay(), t.outputs);
}

/// A call from the carrier to the registered contact, the DID in To.
fn carrier_invite(call: &str, from_at: &str) -> String {
    invite("+15550001111", from_at, "reg", call, "")
        .replace(
            "To: <sip:reg@switchboard.local>",
            "To: <sip:+441632960000@127.0.0.4>",
        )
        .replace(
            "INVITE sip:reg@switchboard.local",
            "INVITE sip:reg@127.0.0.1:5060",
        )
}

#[test]
fn calls_to_the_registered_contact_from_the_registrar_are_the_trunks() {
    let (mut t, _) = registered(true, 600);
    register_bob(&mut t);
    t.take();
    // From the registrar: no challenge, the DID in To routes to bob.
    t.input(REG, &carrier_invite("in1", REG));
    let out = t.take();
    assert_eq!(first_line(&to(&out, REG)[0]), "SIP/2.0 100 Trying");
    let branch = &to(&out, BOB)[0];
    assert_eq!(first_line(branch), "INVITE sip:bob@127.0.0.1:5072 SIP/2.0");

    // From anywhere else, the contact user is only a name: the digest gate asks.
    let stranger = "127.0.0.9:5080";
    t.input(stranger, &carrier_invite("in2", stranger));
    let out = t.take();
    assert_eq!(
        first_line(&to(&out, stranger)[0]),
        "SIP/2.0 407 Proxy Authentication Required"
    );
    assert!(to(&out, BOB).is_empty());
}

#[test]
fn no_binding_no_trunk_call() {
    // Registering, not registered yet: the registrar's address vouches for nothing.
    let (mut t, _) = started(true);
    t.input(REG, &carrier_invite("in1", REG));
    let out = t.take();
    assert!(
        first_line(&to(&out, REG)[0]).starts_with("SIP/2.0 407"),
        "{out:?}"
    );
}
