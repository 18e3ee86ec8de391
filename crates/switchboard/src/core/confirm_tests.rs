//! The confirmation asked of a forward target (its prompt and how keys are judged), and
//! a daemon without a media engine, which cannot ask: the target is not rung. The
//! back-to-back leg itself is tested in `core::calls::confirm_b2b`.

use super::*;
use crate::test_harness::*;
use switchboard_media::say;

fn clip(ms: usize) -> Clip {
    vec![0xFFu8; ms * 8].into()
}

fn run() -> ConfirmRun {
    ConfirmRun::new(vec![clip(3000)], CONFIRM_WAIT, CONFIRM_REPEATS)
}

#[test]
fn the_target_hears_who_calls_digit_by_digit_and_which_key_accepts() {
    let en = say::language("en").expect("English");
    let said = prompt(en, Some("1001"));
    let mut one = Vec::new();
    en.say_digits("1", &mut one).unwrap();
    let mut number = Vec::new();
    en.say_digits("1001", &mut number).unwrap();
    let mut expected = vec![phrase::YOU_HAVE_A_CALL, phrase::FROM];
    expected.extend(number);
    expected.push(phrase::PRESS);
    expected.extend(one.clone());
    expected.push(phrase::TO_ACCEPT_THE_CALL);
    assert_eq!(said, expected);
    // A caller that cannot be said digit by digit is left out, with its "from".
    for caller in [None, Some("anonymous"), Some("")] {
        let said = prompt(en, caller);
        assert!(!said.contains(&phrase::FROM), "{caller:?}: {said:?}");
        assert_eq!(said[0], phrase::YOU_HAVE_A_CALL);
        assert_eq!(said.last(), Some(&phrase::TO_ACCEPT_THE_CALL));
    }
}

#[test]
fn one_accepts_during_the_question_or_after_it() {
    let t0 = Instant::now();
    let mut r = run();
    assert_eq!(r.digit('1', t0), Verdict::Nothing, "not begun");
    assert_eq!(r.begin(t0).len(), 1);
    assert_eq!(
        r.digit('1', t0 + Duration::from_millis(500)),
        Verdict::Accepted
    );
    let mut r = run();
    r.begin(t0);
    r.played(t0 + Duration::from_secs(3));
    assert_eq!(
        r.deadline(),
        Some(t0 + Duration::from_secs(3) + CONFIRM_WAIT)
    );
    assert_eq!(r.digit('1', t0 + Duration::from_secs(4)), Verdict::Accepted);
}

#[test]
fn any_other_key_declines_at_once() {
    let t0 = Instant::now();
    for key in ['2', '0', '*', '#'] {
        let mut r = run();
        r.begin(t0);
        assert_eq!(
            r.digit(key, t0 + Duration::from_millis(200)),
            Verdict::Declined(format!("key {key}"))
        );
    }
}

#[test]
fn silence_hears_the_question_once_more_then_declines() {
    let t0 = Instant::now();
    let mut r = run();
    r.begin(t0);
    let mut now = t0 + Duration::from_secs(3);
    r.played(now);
    assert_eq!(r.timeout(now + Duration::from_secs(1)), Verdict::Nothing);
    now += CONFIRM_WAIT;
    assert_eq!(
        r.timeout(now),
        Verdict::Play {
            stop: false,
            clips: vec![clip(3000)]
        }
    );
    now += Duration::from_secs(3);
    r.played(now);
    now += CONFIRM_WAIT;
    assert_eq!(r.timeout(now), Verdict::Declined("no key".into()));
}

/// carol forwards to bob after ringing alone for 5 s; `CONFIRM` is replaced by the
/// setting under test.
const POLICY: &str = r#"
[users.alice]
extension = "1001"
[users.bob]
extension = "1002"
[users.carol]
extension = "1003"
no_answer = "hangup"
[users.carol.forwarding]
targets = ["user:bob"]
ring_own_first = 5
ring_time = 20
CONFIRM
"#;

/// alice calls carol; 6 s later (forwarding has begun), what went to carol and to bob.
fn forwarded(confirm: &str) -> (T, Vec<String>, Vec<String>) {
    let mut t = T::with_policy(false, &POLICY.replace("CONFIRM", confirm));
    t.register("bob", BOB);
    t.register("carol", CAROL);
    t.input(ALICE, &invite("alice", ALICE, "1003", "f1", ""));
    let mut out = t.take();
    t.advance(6);
    out.extend(t.take());
    // The INVITEs as sent, not their retransmissions.
    let mut carol = to(&out, CAROL);
    carol.dedup();
    let mut bob = to(&out, BOB);
    bob.dedup();
    (t, carol, bob)
}

#[test]
fn without_a_media_engine_a_target_that_must_confirm_is_not_rung_and_the_own_phone_rings_on() {
    // Without confirmation, bob rings when forwarding begins.
    let (_, carol, bob) = forwarded("");
    assert_eq!(carol.len(), 1, "{carol:?}");
    assert_eq!(bob.len(), 1, "{bob:?}");
    assert!(first_line(&bob[0]).starts_with("INVITE "), "{bob:?}");

    // With it, but no media engine to ask him with (the tests' configuration) nor an SDP
    // offer to agree a codec on, bob is never rung; carol's phone rings on and can still
    // answer.
    let (mut t, carol, bob) = forwarded("require_confirmation = true");
    assert!(bob.is_empty(), "bob must not ring unconfirmed: {bob:?}");
    assert_eq!(carol.len(), 1, "{carol:?}");
    assert!(first_line(&carol[0]).starts_with("INVITE "));
    t.input(CAROL, &answer(&carol[0], 200, "carol1", CAROL));
    let out = t.take();
    let ok = to(&out, ALICE);
    assert_eq!(first_line(ok.last().unwrap()), "SIP/2.0 200 OK", "{out:?}");
    assert!(to(&out, BOB).is_empty());
}

#[test]
fn check_has_nothing_to_say_of_confirmation() {
    for confirm in ["require_confirmation = true", ""] {
        let policy = switchboard_policy::Policy::from_sources(&[switchboard_policy::Source {
            name: "p.toml".into(),
            text: POLICY.replace("CONFIRM", confirm),
        }])
        .unwrap();
        assert!(policy.warnings().is_empty(), "{:?}", policy.warnings());
    }
}
