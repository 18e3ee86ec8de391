//! Call routing end to end: the real daemon with a test policy, SIPp callers and SIPp
//! callees (answering, ringing until cancelled, busy, a voicemail server, a carrier) over
//! loopback. Every callee is a SIPp server registered to the daemon (tests/sipp/README.md).

mod common;

use common::*;
use std::time::Duration;

/// How long a callee waits for its calls to end at most.
const CALLEE_LIMIT: Duration = Duration::from_secs(40);

/// The test policy; `vm`, `team_vm` and `carrier` are the ports of the SIPp servers standing
/// in for the voicemail server, the team's voicemail and the carrier; `closed` is a TCP port
/// nobody listens on (ivan's voicemail).
fn policy(vm: u16, team_vm: u16, carrier: u16, closed: u16) -> String {
    format!(
        r#"
[users.alice]
extension = "1001"
display_name = "Alice Andersson"
caller_id = "+441632960001"
profile_caller_ids = {{ left_for_the_day = "+447700900001" }}
[users.alice.sip]
password = "alice-secret"
algorithms = ["md5"]

[users.bob]
extension = "1002"
ring_time = 3
no_answer = "voicemail:vm"
busy = "voicemail:vm"
out_of_hours = "voicemail:vm"
[users.bob.sip]
password = "bob-secret"
algorithms = ["md5"]

[users.carol]
extension = "1003"
ring_time = 3
no_answer = "voicemail:vm"
[users.carol.sip]
password = "carol-secret"
algorithms = ["md5"]

[users.dave]
extension = "1004"
ring_time = 3
no_answer = "voicemail:vm"
[users.dave.sip]
password = "dave-secret"
algorithms = ["md5"]

[users.erin]
extension = "1005"
ring_time = 3
no_answer = "voicemail:vm"
[users.erin.sip]
password = "erin-secret"
algorithms = ["md5"]

[users.ivan]
extension = "1009"
ring_time = 3
no_answer = "voicemail:closed"
[users.ivan.sip]
password = "ivan-secret"
algorithms = ["md5"]

[users.frank]
extension = "1006"
no_answer = "hangup"
[users.frank.sip]
password = "frank-secret"
algorithms = ["md5"]
[users.frank.forwarding]
enabled = true
targets = ["user:erin"]
ring_own_first = 2
keep_ringing_own = true
ring_time = 4
no_answer = "hangup"

[teams.hunt]
extension = "2001"
members = ["carol", "dave"]
strategy = "hunt"
member_ring_time = 2
ring_time = 4
no_answer = "voicemail:team-vm"

[teams.memory]
extension = "2002"
members = ["carol", "dave", "erin"]
strategy = "memory_hunt"
member_ring_time = 2
ring_time = 6
no_answer = "hangup"

[teams.rr]
extension = "2003"
members = ["carol", "dave", "erin"]
strategy = "round_robin"
member_ring_time = 2
ring_time = 6
no_answer = "hangup"

[teams.cumulative]
extension = "2004"
members = ["carol", "dave"]
strategy = "cumulative"
member_ring_time = 2
ring_time = 6
no_answer = "hangup"

[teams.all]
extension = "2005"
members = ["carol", "dave"]
strategy = "ring_all"
ring_time = 3
skip_unavailable = true
no_answer = "voicemail:team-vm"

[destinations.vm]
kind = "voicemail"
uri = "sip:vm@127.0.0.1:{vm}"

[destinations.team-vm]
kind = "voicemail"
uri = "sip:team-vm@127.0.0.1:{team_vm}"

[destinations.closed]
kind = "voicemail"
uri = "sip:vm@127.0.0.1:{closed};transport=tcp"

[trunks.carrier]
sources = ["127.0.0.2/32"]
uri = "sip:carrier@127.0.0.2:{carrier}"
outbound = ["+44*"]
dids = {{ "+441632960000" = "user:bob", "+441632960002" = "team:memory" }}

[trunks.pbx]
dids = {{ "+441632960003" = "user:bob" }}
[trunks.pbx.sip]
username = "pbx-trunk"
password = "pbx-secret"
algorithms = ["md5"]
"#
    )
}

/// A daemon with the test policy and the ports of its media servers and carrier.
struct Setup {
    d: Daemon,
    vm: u16,
    team_vm: u16,
    carrier: u16,
}

fn setup() -> Setup {
    let (vm, team_vm, carrier) = (free_port(), free_port(), free_port());
    let d = Daemon::start(Options {
        policy: policy(vm, team_vm, carrier, free_port()),
        ..Options::default()
    });
    Setup {
        d,
        vm,
        team_vm,
        carrier,
    }
}

/// A registered device of `user` running `scenario` for `calls` calls.
fn device(d: &Daemon, user: &str, scenario: &str, calls: usize, args: &[&str]) -> Uas {
    let uas = Uas::start(scenario, calls, args);
    uas.register(d, user, &format!("{user}-secret"));
    uas
}

/// Alice calls `dialled` with `scenario`; `extra` as the scenario reads it.
fn alice_calls(d: &Daemon, scenario: &str, dialled: &str, extra: &str) -> SippRun {
    Sipp::new(d, scenario)
        .row(call_row("alice", "alice-secret", dialled, extra))
        .auth_uri(&format!("{dialled}@{REALM}"))
        .run()
}

/// Fails the test with everything the peers saw unless the run passed.
fn ok(d: &Daemon, r: SippRun) -> SippRun {
    assert!(r.success, "{}\ndaemon log:\n{}", r.report(), d.log());
    r
}

fn first_invite_time(r: &SippRun) -> f64 {
    timed_received(r)
        .into_iter()
        .find(|(_, m)| m.starts_with("INVITE "))
        .map(|(t, _)| t)
        .unwrap_or_else(|| panic!("no INVITE reached {}:\n{}", r.scenario, r.report()))
}

fn invites(r: &SippRun) -> usize {
    r.requests("INVITE").len()
}

#[test]
fn ring_all_devices_one_answers_the_other_is_cancelled_elsewhere() {
    let mut s = setup();
    let answers = device(&s.d, "bob", "uas_ring_then_answer.xml", 1, &["-d", "500"]);
    let loser = device(&s.d, "bob", "uas_cancelled_elsewhere.xml", 1, &[]);
    let call = ok(&s.d, alice_calls(&s.d, "call_answered.xml", "1002", "200"));
    assert_eq!(call.finals(), vec![200]);
    ok(&s.d, answers.finish(CALLEE_LIMIT));
    let lost = ok(&s.d, loser.finish(CALLEE_LIMIT));
    let cancel = &lost.requests("CANCEL")[0];
    assert!(
        cancel.contains("Reason: SIP;cause=200;text=\"Call completed elsewhere\""),
        "{cancel}"
    );
    s.d.wait_for_log("call ended", Duration::from_secs(5));
    assert!(s.d.log_contains("answered_by=bob at"), "{}", s.d.log());
}

#[test]
fn hunt_rings_members_one_after_another() {
    let s = setup();
    let carol = device(&s.d, "carol", "uas_ring_cancelled.xml", 1, &[]);
    let dave = device(&s.d, "dave", "uas_answer.xml", 1, &[]);
    ok(&s.d, alice_calls(&s.d, "call_answered.xml", "2001", "200"));
    let carol = ok(&s.d, carol.finish(CALLEE_LIMIT));
    let dave = ok(&s.d, dave.finish(CALLEE_LIMIT));
    let gap = first_invite_time(&dave) - first_invite_time(&carol);
    assert!(
        (1.5..3.5).contains(&gap),
        "dave rang {gap:.2} s after carol"
    );
    // A hunt's turn ending is no "completed elsewhere": carol missed the call.
    assert!(!carol.requests("CANCEL")[0].contains("cause=200"));
}

#[test]
fn memory_hunt_starts_with_the_last_answerer_also_after_a_restart() {
    let mut s = setup();
    // carol never answers; dave always does.
    let carol = device(&s.d, "carol", "uas_ring_cancelled.xml", 4, &[]);
    let dave = device(&s.d, "dave", "uas_answer.xml", 4, &[]);
    for i in 0..3 {
        let r = alice_calls(&s.d, "call_answered.xml", "2002", "100");
        assert!(r.success, "call {i}: {}\n{}", r.report(), s.d.log());
    }
    // Only the first call rang carol (the plain hunt order); the memory made the next two
    // start with dave — as `switchboard explain` says for the same memory.
    let explain = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("explain")
        .arg("--config")
        .arg(s.d.config_path())
        .args([
            "--from",
            "alice",
            "--to",
            "2002",
            "--last-answerer",
            "memory=dave",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&explain.stdout).to_string();
    let at = |who: &str| text.find(&format!("    {who} (")).unwrap_or(usize::MAX);
    assert!(
        at("dave") < at("erin") && at("erin") < at("carol"),
        "{text}"
    );
    s.d.restart();
    let r = alice_calls(&s.d, "call_answered.xml", "2002", "100");
    assert!(r.success, "after restart: {}\n{}", r.report(), s.d.log());
    let dave = ok(&s.d, dave.finish(CALLEE_LIMIT));
    assert_eq!(invites(&dave), 4);
    let carol = carol.stop();
    assert_eq!(
        invites(&carol),
        1,
        "carol rang only for the first call:\n{}",
        carol.report()
    );
}

#[test]
fn round_robin_moves_on_after_each_answer() {
    let s = setup();
    let carol = device(&s.d, "carol", "uas_answer.xml", 1, &[]);
    let dave = device(&s.d, "dave", "uas_answer.xml", 1, &[]);
    let erin = device(&s.d, "erin", "uas_answer.xml", 1, &[]);
    for i in 0..3 {
        let r = alice_calls(&s.d, "call_answered.xml", "2003", "100");
        assert!(r.success, "call {i}: {}\n{}", r.report(), s.d.log());
    }
    // One call each: carol, then dave, then erin.
    for (name, uas) in [("carol", carol), ("dave", dave), ("erin", erin)] {
        let r = uas.finish(CALLEE_LIMIT);
        assert!(r.success, "{name}: {}", r.report());
        assert_eq!(invites(&r), 1, "{name}");
    }
}

#[test]
fn cumulative_adds_members_and_keeps_the_earlier_ones_ringing() {
    let s = setup();
    let carol = device(&s.d, "carol", "uas_cancelled_elsewhere.xml", 1, &[]);
    let dave = device(&s.d, "dave", "uas_ring_then_answer.xml", 1, &["-d", "500"]);
    ok(&s.d, alice_calls(&s.d, "call_answered.xml", "2004", "100"));
    let dave = ok(&s.d, dave.finish(CALLEE_LIMIT));
    let carol = ok(&s.d, carol.finish(CALLEE_LIMIT));
    let carol_times = timed_received(&carol);
    let cancel_at = carol_times
        .iter()
        .find(|(_, m)| m.starts_with("CANCEL "))
        .map(|(t, _)| *t)
        .unwrap();
    let dave_at = first_invite_time(&dave);
    let gap = dave_at - first_invite_time(&carol);
    assert!((1.5..3.5).contains(&gap), "dave was added {gap:.2} s in");
    assert!(
        cancel_at > dave_at,
        "carol kept ringing until dave answered"
    );
}

#[test]
fn no_answer_goes_to_voicemail_after_the_ring_time() {
    let s = setup();
    let bob = device(&s.d, "bob", "uas_ring_cancelled.xml", 1, &[]);
    let vm = Uas::start_on("127.0.0.1", s.vm, "uas_answer.xml", 1, &[]);
    ok(&s.d, alice_calls(&s.d, "call_answered.xml", "1002", "100"));
    let bob = ok(&s.d, bob.finish(CALLEE_LIMIT));
    let vm = ok(&s.d, vm.finish(CALLEE_LIMIT));
    let gap = first_invite_time(&vm) - first_invite_time(&bob);
    assert!((2.5..4.5).contains(&gap), "voicemail after {gap:.2} s");
    assert!(vm.requests("INVITE")[0].starts_with("INVITE sip:vm@127.0.0.1:"));
}

#[test]
fn a_branch_to_a_refused_tcp_port_fails_at_once() {
    let s = setup();
    // ivan has no device: his call goes straight to his voicemail, a TCP address that
    // refuses connections. The branch ends (503, transport error) when the connect fails,
    // not at Timer B (32 s); the plan then has nothing left and ends with its 480 (a 503
    // is never relayed upstream, §16.7 step 6).
    let r = ok(
        &s.d,
        alice_calls(&s.d, "call_expect_final.xml", "1009", "480"),
    );
    assert_eq!(r.finals(), vec![480]);
    let received = timed_received(&r);
    let at = |code: &str| {
        received
            .iter()
            .find(|(_, m)| m.starts_with(&format!("SIP/2.0 {code}")))
            .map(|(t, _)| *t)
            .unwrap_or_else(|| panic!("no {code}:\n{}", r.report()))
    };
    let gap = at("480") - at("407");
    assert!(gap < 1.0, "the answer came {gap:.2} s after the challenge");
    assert!(
        s.d.log_contains("why=connection could not be opened transactions=1"),
        "{}",
        s.d.log()
    );
}

#[test]
fn busy_goes_to_the_busy_destination_and_engaged_is_486() {
    let s = setup();
    let bob = device(&s.d, "bob", "uas_busy.xml", 1, &[]);
    let vm = Uas::start_on("127.0.0.1", s.vm, "uas_answer.xml", 1, &[]);
    ok(&s.d, alice_calls(&s.d, "call_answered.xml", "1002", "100"));
    ok(&s.d, bob.finish(CALLEE_LIMIT));
    ok(&s.d, vm.finish(CALLEE_LIMIT));
    // frank's busy handling is the default (engaged): his phone's 486 reaches the caller;
    // his forward target ringing out does not hide it.
    let frank = device(&s.d, "frank", "uas_busy.xml", 1, &[]);
    let erin = device(&s.d, "erin", "uas_ring_cancelled.xml", 1, &[]);
    let r = ok(
        &s.d,
        alice_calls(&s.d, "call_expect_final.xml", "1006", "486"),
    );
    assert_eq!(r.finals(), vec![486]);
    ok(&s.d, frank.finish(CALLEE_LIMIT));
    ok(&s.d, erin.finish(CALLEE_LIMIT));
}

#[test]
fn do_not_disturb_follows_out_of_hours_routing() {
    let s = setup();
    let bob = device(&s.d, "bob", "uas_answer.xml", 1, &[]);
    let vm = Uas::start_on("127.0.0.1", s.vm, "uas_answer.xml", 1, &[]);
    let (code, body) = admin_api(
        &s.d,
        "PUT",
        "/v1/presence/bob/status",
        r#"{"status":"dnd"}"#,
    );
    assert_eq!(code, 200, "{body}");
    ok(&s.d, alice_calls(&s.d, "call_answered.xml", "1002", "100"));
    ok(&s.d, vm.finish(CALLEE_LIMIT));
    let bob = bob.stop();
    assert_eq!(invites(&bob), 0, "bob's phone must not ring while DND");
}

#[test]
fn a_team_call_skips_a_dnd_member_and_never_reaches_a_members_voicemail() {
    let s = setup();
    let carol = device(&s.d, "carol", "uas_answer.xml", 1, &[]);
    let dave = device(&s.d, "dave", "uas_ring_cancelled.xml", 1, &[]);
    let vm = Uas::start_on("127.0.0.1", s.vm, "uas_answer.xml", 1, &[]);
    let team_vm = Uas::start_on("127.0.0.1", s.team_vm, "uas_answer.xml", 1, &[]);
    let (code, body) = admin_api(
        &s.d,
        "PUT",
        "/v1/presence/carol/status",
        r#"{"status":"dnd"}"#,
    );
    assert_eq!(code, 200, "{body}");
    // dave rings for the team's 3 s and does not answer: the team's voicemail takes it,
    // not dave's own.
    ok(&s.d, alice_calls(&s.d, "call_answered.xml", "2005", "100"));
    ok(&s.d, dave.finish(CALLEE_LIMIT));
    ok(&s.d, team_vm.finish(CALLEE_LIMIT));
    assert_eq!(invites(&carol.stop()), 0, "carol is DND: skipped");
    assert_eq!(
        invites(&vm.stop()),
        0,
        "a member's voicemail never takes a team call"
    );
}

#[test]
fn forwarding_rings_own_devices_first_then_the_target_too() {
    let s = setup();
    let frank = device(&s.d, "frank", "uas_cancelled_elsewhere.xml", 1, &[]);
    let erin = device(&s.d, "erin", "uas_ring_then_answer.xml", 1, &["-d", "500"]);
    let call = ok(&s.d, alice_calls(&s.d, "call_answered.xml", "1006", "100"));
    let frank = ok(&s.d, frank.finish(CALLEE_LIMIT));
    let erin = ok(&s.d, erin.finish(CALLEE_LIMIT));
    let gap = first_invite_time(&erin) - first_invite_time(&frank);
    assert!(
        (1.5..3.5).contains(&gap),
        "the forward target rang {gap:.2} s in"
    );
    // No dead air: the caller heard ringing from frank's phone from the start.
    let ringing = call
        .received()
        .iter()
        .position(|m| m.starts_with("SIP/2.0 180"));
    let answered = call
        .received()
        .iter()
        .position(|m| m.starts_with("SIP/2.0 200"));
    assert!(ringing < answered, "{}", call.report());
}

#[test]
fn caller_cancel_during_a_hunt_stops_it() {
    let mut s = setup();
    let carol = device(&s.d, "carol", "uas_ring_cancelled.xml", 1, &[]);
    let dave = device(&s.d, "dave", "uas_ring_cancelled.xml", 1, &[]);
    // Cancel at 3 s: carol's turn (0–2 s) is over, dave rings.
    ok(&s.d, alice_calls(&s.d, "call_cancel.xml", "2001", "3000"));
    ok(&s.d, carol.finish(CALLEE_LIMIT));
    ok(&s.d, dave.finish(CALLEE_LIMIT));
    s.d.wait_for_log("the caller hung up", Duration::from_secs(5));
}

#[test]
fn bye_and_re_invite_pass_through_the_proxy() {
    let s = setup();
    let bob = device(&s.d, "bob", "uas_answer.xml", 1, &[]);
    let r = ok(&s.d, alice_calls(&s.d, "call_reinvite.xml", "1002", "200"));
    assert_eq!(r.logged("reinvite"), vec!["200"]);
    let bob = ok(&s.d, bob.finish(CALLEE_LIMIT));
    assert_eq!(invites(&bob), 2, "the INVITE and the re-INVITE");
    // The callee hangs up this time.
    let bob = device(
        &s.d,
        "bob",
        "uas_answer_callee_hangs_up.xml",
        1,
        &["-d", "300"],
    );
    ok(
        &s.d,
        alice_calls(&s.d, "call_callee_hangs_up.xml", "1002", ""),
    );
    ok(&s.d, bob.finish(CALLEE_LIMIT));
}

#[test]
fn a_carrier_call_to_a_did_reaches_its_user() {
    let s = setup();
    let bob = device(&s.d, "bob", "uas_answer.xml", 1, &[]);
    let r = Sipp::new(&s.d, "trunk_call_answered.xml")
        .row(call_row("+447700900123", "", "+441632960000", "100"))
        .local_ip("127.0.0.2")
        .run();
    let r = ok(&s.d, r);
    assert_eq!(r.finals(), vec![200]);
    let bob = ok(&s.d, bob.finish(CALLEE_LIMIT));
    let invite = &bob.requests("INVITE")[0];
    assert!(
        invite.contains("+447700900123"),
        "the caller's number: {invite}"
    );
    // A trunk known by its digest credentials instead of its address.
    let bob = device(&s.d, "bob", "uas_answer.xml", 1, &[]);
    let r = Sipp::new(&s.d, "call_answered.xml")
        .row(call_row("pbx-trunk", "pbx-secret", "+441632960003", "100"))
        .auth_uri(&format!("+441632960003@{REALM}"))
        .run();
    ok(&s.d, r);
    ok(&s.d, bob.finish(CALLEE_LIMIT));
    // A number the carrier does not own is not routed.
    let r = Sipp::new(&s.d, "trunk_call_expect_final.xml")
        .row(call_row("+447700900123", "", "+449999", "404"))
        .local_ip("127.0.0.2")
        .run();
    ok(&s.d, r);
}

#[test]
fn an_outbound_call_leaves_through_the_trunk_with_the_profiles_caller_id() {
    let s = setup();
    let carrier = Uas::start_on("127.0.0.2", s.carrier, "uas_answer.xml", 2, &[]);
    ok(
        &s.d,
        alice_calls(&s.d, "call_answered.xml", "+447700900123", "100"),
    );
    let (code, body) = admin_api(
        &s.d,
        "PUT",
        "/v1/presence/alice/profile",
        r#"{"profile":"left_for_the_day"}"#,
    );
    assert_eq!(code, 200, "{body}");
    ok(
        &s.d,
        alice_calls(&s.d, "call_answered.xml", "+447700900123", "100"),
    );
    let carrier = ok(&s.d, carrier.finish(CALLEE_LIMIT));
    let invites = carrier.requests("INVITE");
    assert!(
        invites[0].starts_with("INVITE sip:+447700900123@127.0.0.2:"),
        "{}",
        invites[0]
    );
    let from = |m: &str| header_values(m, "From").join(" ");
    let pai = |m: &str| header_values(m, "P-Asserted-Identity").join(" ");
    assert!(
        from(&invites[0]).contains("sip:+441632960001@"),
        "{}",
        invites[0]
    );
    assert!(
        from(&invites[0]).contains("\"Alice Andersson\""),
        "{}",
        invites[0]
    );
    assert!(
        pai(&invites[0]).contains("sip:+441632960001@"),
        "{}",
        invites[0]
    );
    assert!(
        from(&invites[1]).contains("sip:+447700900001@"),
        "the profile's caller ID: {}",
        invites[1]
    );
}

#[test]
fn unknown_callers_are_challenged_and_wrong_passwords_refused() {
    let s = setup();
    let r = Sipp::new(&s.d, "call_expect_final.xml")
        .row(call_row("alice", "wrong", "1002", "403"))
        .auth_uri(&format!("1002@{REALM}"))
        .run();
    let r = ok(&s.d, r);
    assert!(r.logs.contains("challenged"), "{}", r.report());
    // A number nobody has: 404 after the challenge.
    let r = ok(
        &s.d,
        alice_calls(&s.d, "call_expect_final.xml", "7777", "404"),
    );
    assert_eq!(r.finals(), vec![404]);
}
