//! Call records end to end: the real daemon, SIPp callers and SIPp callees over loopback,
//! one call for each routing outcome (answered; a hunt answered by its second member; no
//! answer, then voicemail; busy; the caller hanging up), each record checked against what
//! the caller and the callees saw; the calls in progress while one rings; the records
//! still there after `kill -9`; a person's missed calls; the CLI's CSV. Each case calls
//! people of its own: a device a finished SIPp leaves registered would ring again.

mod common;

use common::*;
use serde_json::Value;
use std::time::Duration;

/// How long a callee waits for its calls to end at most.
const CALLEE_LIMIT: Duration = Duration::from_secs(40);

/// bob's own API token.
const BOB_TOKEN: &str = "bob-token-0123456789";

/// The test policy; `vm` is the port of the SIPp server standing in for voicemail.
fn policy(vm: u16) -> String {
    format!(
        r#"
[users.alice]
extension = "1001"
[users.alice.sip]
password = "alice-secret"
algorithms = ["md5"]

[users.bob]
extension = "1002"
api_token = "{BOB_TOKEN}"
ring_time = 3
no_answer = "voicemail:vm"
[users.bob.sip]
password = "bob-secret"
algorithms = ["md5"]

[users.carol]
extension = "1003"
ring_time = 3
no_answer = "hangup"
[users.carol.sip]
password = "carol-secret"
algorithms = ["md5"]

[users.dave]
extension = "1004"
ring_time = 3
no_answer = "hangup"
[users.dave.sip]
password = "dave-secret"
algorithms = ["md5"]

[users.erin]
extension = "1005"
ring_time = 20
no_answer = "hangup"
[users.erin.sip]
password = "erin-secret"
algorithms = ["md5"]

[users.hank]
extension = "1006"
[users.hank.sip]
password = "hank-secret"
algorithms = ["md5"]

[users.ivy]
extension = "1007"
[users.ivy.sip]
password = "ivy-secret"
algorithms = ["md5"]

[users.judy]
extension = "1008"
[users.judy.sip]
password = "judy-secret"
algorithms = ["md5"]

[teams.hunt]
extension = "2001"
members = ["hank", "ivy"]
strategy = "hunt"
member_ring_time = 2
ring_time = 4
no_answer = "hangup"

[destinations.vm]
kind = "voicemail"
uri = "sip:vm@127.0.0.1:{vm}"
"#
    )
}

/// A registered device of `user` running `scenario` for `calls` calls.
fn device(d: &Daemon, user: &str, scenario: &str, calls: usize) -> Uas {
    let uas = Uas::start(scenario, calls, &[]);
    uas.register(d, user, &format!("{user}-secret"));
    uas
}

/// Alice calls `dialled` with `scenario`; `extra` as the scenario reads it.
fn alice_calls(d: &Daemon, scenario: &str, dialled: &str, extra: &str) -> SippRun {
    let r = Sipp::new(d, scenario)
        .row(call_row("alice", "alice-secret", dialled, extra))
        .auth_uri(&format!("{dialled}@{REALM}"))
        .run();
    assert!(r.success, "{}\ndaemon log:\n{}", r.report(), d.log());
    r
}

fn finished(d: &Daemon, uas: Uas) -> SippRun {
    let r = uas.finish(CALLEE_LIMIT);
    assert!(r.success, "{}\ndaemon log:\n{}", r.report(), d.log());
    r
}

/// The Call-ID of the first message a SIPp run received.
fn call_id(r: &SippRun) -> String {
    r.received()
        .iter()
        .find_map(|m| {
            m.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case("call-id")
                    .then(|| v.trim().to_string())
            })
        })
        .unwrap_or_else(|| panic!("no Call-ID in {}", r.report()))
}

/// `GET path` as the admin: the JSON answer.
fn get(d: &Daemon, path: &str) -> Value {
    let (code, body) = admin_api(d, "GET", path, "");
    assert_eq!(code, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// The complete record of call `id` (it has its end), waited for a few seconds.
fn record(d: &Daemon, id: &str) -> Value {
    let found = wait_until(Duration::from_secs(5), Duration::from_millis(100), || {
        get(d, "/v1/records?limit=1000")["records"]
            .as_array()?
            .iter()
            .find(|r| r["call_id"] == id && r["ended"].is_u64())
            .cloned()
    });
    found.unwrap_or_else(|| panic!("no complete record of {id}:\n{}", d.log()))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn each_routing_outcome_is_recorded_as_the_phones_saw_it_and_survives_kill_9() {
    let vm_port = free_port();
    let mut d = Daemon::start(Options {
        policy: policy(vm_port),
        ..Options::default()
    });
    let mut ids = Vec::new();

    // Answered: dave takes alice's call; she hangs up (BYE).
    let dave = device(&d, "dave", "uas_answer.xml", 1);
    let caller = alice_calls(&d, "call_answered.xml", "1004", "100");
    let dave = finished(&d, dave);
    let id = call_id(&caller);
    let r = record(&d, &id);
    assert_eq!(caller.finals(), vec![200]);
    assert_eq!(r["outcome"], "answered");
    assert_eq!(r["code"], 200);
    assert_eq!(r["caller_user"], "alice");
    assert_eq!(r["dialled"], "1004");
    assert_eq!(r["dialled_user"], "dave");
    assert_eq!(r["answered_user"], "dave");
    assert_eq!(r["end_reason"], "bye");
    assert_eq!(strings(&r["rang_users"]), ["dave"]);
    assert_eq!(dave.requests("INVITE").len(), 1);
    let (started, answered, ended) = (
        r["started"].as_u64().unwrap(),
        r["answered"].as_u64().unwrap(),
        r["ended"].as_u64().unwrap(),
    );
    assert!(started <= answered && answered <= ended, "{r}");
    assert!(d.log_contains("call ended"), "{}", d.log());
    ids.push((id, "answered"));

    // A hunt answered by its second member: hank rings and is cancelled, ivy answers.
    let hank = device(&d, "hank", "uas_ring_cancelled.xml", 1);
    let ivy = device(&d, "ivy", "uas_answer.xml", 1);
    let caller = alice_calls(&d, "call_answered.xml", "2001", "100");
    let hank = finished(&d, hank);
    let ivy = finished(&d, ivy);
    let id = call_id(&caller);
    let r = record(&d, &id);
    assert_eq!(caller.finals(), vec![200]);
    assert_eq!(hank.requests("CANCEL").len(), 1);
    assert_eq!(ivy.requests("INVITE").len(), 1);
    assert_eq!(r["outcome"], "answered");
    assert_eq!(r["team"], "hunt");
    assert_eq!(strings(&r["rang_users"]), ["hank", "ivy"]);
    assert_eq!(r["answered_user"], "ivy");
    ids.push((id, "answered"));

    // No answer, then voicemail: bob rings for his ring time, the voicemail server answers.
    let bob = device(&d, "bob", "uas_ring_cancelled.xml", 1);
    let vm = Uas::start_on("127.0.0.1", vm_port, "uas_answer.xml", 1, &[]);
    let caller = alice_calls(&d, "call_answered.xml", "1002", "100");
    let bob = finished(&d, bob);
    let vm = finished(&d, vm);
    let id = call_id(&caller);
    let r = record(&d, &id);
    assert_eq!(caller.finals(), vec![200]);
    assert_eq!(bob.requests("CANCEL").len(), 1);
    assert_eq!(vm.requests("INVITE").len(), 1);
    assert_eq!(r["outcome"], "voicemail");
    assert_eq!(strings(&r["rang_users"]), ["bob"]);
    assert!(r["answered_by"].as_str().unwrap().contains("vm"), "{r}");
    let voicemail = id.clone();
    ids.push((id, "voicemail"));

    // Busy: carol's phone answers 486, which reaches alice.
    let carol = device(&d, "carol", "uas_busy.xml", 1);
    let caller = alice_calls(&d, "call_expect_final.xml", "1003", "486");
    finished(&d, carol);
    let id = call_id(&caller);
    let r = record(&d, &id);
    assert_eq!(caller.finals(), vec![486]);
    assert_eq!(
        (r["outcome"].as_str(), r["code"].as_u64()),
        (Some("busy"), Some(486))
    );
    assert!(r["answered"].is_null());
    ids.push((id, "busy"));

    // The caller hangs up while erin rings, while the call is listed as ringing.
    let erin = device(&d, "erin", "uas_ring_cancelled.xml", 1);
    let caller = std::thread::scope(|s| {
        let call = s.spawn(|| {
            Sipp::new(&d, "call_cancel.xml")
                .row(call_row("alice", "alice-secret", "1005", "1500"))
                .auth_uri(&format!("1005@{REALM}"))
                .run()
        });
        let ringing = wait_until(Duration::from_secs(5), Duration::from_millis(50), || {
            let calls = get(&d, "/v1/calls");
            let c = calls["calls"].as_array()?.first()?.clone();
            (!c["ringing"].as_array()?.is_empty()).then_some(c)
        });
        let c = ringing.unwrap_or_else(|| panic!("no ringing call listed:\n{}", d.log()));
        assert_eq!(c["phase"], "ringing");
        assert_eq!(c["dialled"], "1005");
        assert_eq!(c["step"], 1);
        assert!(
            c["ringing"][0].as_str().unwrap().starts_with("erin at "),
            "{c}"
        );
        call.join().unwrap()
    });
    assert!(caller.success, "{}\n{}", caller.report(), d.log());
    let erin = finished(&d, erin);
    assert_eq!(erin.requests("CANCEL").len(), 1);
    let id = call_id(&caller);
    let r = record(&d, &id);
    assert_eq!(caller.finals(), vec![487]);
    assert_eq!(r["outcome"], "cancelled");
    assert_eq!(strings(&r["rang_users"]), ["erin"]);
    let cancelled = id.clone();
    ids.push((id, "cancelled"));
    let calls = get(&d, "/v1/calls");
    assert_eq!(calls["calls"], Value::Array(Vec::new()), "{calls}");

    // Missed calls: bob's went to voicemail, erin's caller gave up, carol was busy; hank
    // rang for the team, but ivy took that call.
    let missed = |query: &str| -> Vec<String> {
        get(&d, &format!("/v1/records/missed?{query}"))["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["call_id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(missed("user=bob"), [voicemail]);
    assert_eq!(missed("user=erin"), [cancelled]);
    assert_eq!(missed("user=carol").len(), 1);
    assert!(missed("user=hank&teams=true").is_empty());
    assert!(
        missed("user=alice&teams=true").is_empty(),
        "callers miss nothing"
    );
    // bob's own token sees his call only.
    let mine = http(&d, "GET", "/v1/records", Some(BOB_TOKEN), "");
    assert_eq!(mine.status, 200, "{}", mine.body);
    let mine: Value = serde_json::from_str(&mine.body).unwrap();
    assert_eq!(mine["records"].as_array().unwrap().len(), 1, "{mine}");
    assert_eq!(mine["records"][0]["outcome"], "voicemail");

    // kill -9: every record is still there, once each, as it was.
    let before = get(&d, "/v1/records?limit=1000");
    d.restart();
    let after = get(&d, "/v1/records?limit=1000");
    assert_eq!(before["records"], after["records"]);
    let listed: Vec<(String, String)> = after["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["call_id"].as_str().unwrap().to_string(),
                r["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = ids
        .iter()
        .map(|(id, o)| (id.clone(), o.to_string()))
        .collect();
    assert_eq!(listed, expected);

    // By outcome, and as CSV through the CLI.
    let busy = get(&d, "/v1/records?outcome=busy");
    assert_eq!(busy["records"].as_array().unwrap().len(), 1);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["records", "--csv", "--outcome", "answered", "--config"])
        .arg(d.config_path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[0].starts_with("call_id,started,answered,ended,caller"),
        "{text}"
    );
    assert!(lines[2].contains(",hunt,answered,200,"), "{text}");

    // A call answered when the daemon is killed: its record, stored at the answer, is
    // there after the restart, without an end.
    let judy = device(&d, "judy", "uas_answer.xml", 1);
    let id = std::thread::scope(|s| {
        let call = s.spawn(|| {
            Sipp::new(&d, "call_answered.xml")
                .row(call_row("alice", "alice-secret", "1008", "3000"))
                .auth_uri(&format!("1008@{REALM}"))
                .limit(Duration::from_secs(6))
                .run()
        });
        let answered = wait_until(Duration::from_secs(5), Duration::from_millis(50), || {
            let calls = get(&d, "/v1/calls");
            let c = calls["calls"].as_array()?.first()?.clone();
            (c["phase"] == "answered").then_some(c)
        });
        let c = answered.unwrap_or_else(|| panic!("no answered call listed:\n{}", d.log()));
        assert!(
            c["answered_by"].as_str().unwrap().starts_with("judy at "),
            "{c}"
        );
        let id = c["call_id"].as_str().unwrap().to_string();
        // kill -9 now (the SIPp run borrows the daemon: by its PID); its BYE finds nobody.
        let killed = std::process::Command::new("kill")
            .args(["-9", &d.pid().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let _ = call.join();
        id
    });
    d.restart();
    judy.stop();
    let all = get(&d, "/v1/records?limit=1000");
    let r = all["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["call_id"] == id.as_str())
        .unwrap_or_else(|| panic!("no record of the call cut by kill -9: {all}"));
    assert_eq!(r["outcome"], "answered", "{r}");
    assert_eq!(r["answered_user"], "judy", "{r}");
    assert!(r["ended"].is_null(), "{r}");
}

#[test]
fn the_call_ended_line_is_json_with_json_logs_and_queries_are_checked() {
    let d = Daemon::start(Options {
        policy: policy(free_port()),
        extra: "[log]\nformat = \"json\"\n".into(),
        ..Options::default()
    });
    let carol = device(&d, "carol", "uas_busy.xml", 1);
    let caller = alice_calls(&d, "call_expect_final.xml", "1003", "486");
    finished(&d, carol);
    let id = call_id(&caller);
    let line = wait_until(Duration::from_secs(5), Duration::from_millis(100), || {
        d.log()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|l| l["fields"]["message"] == "call ended")
    })
    .unwrap_or_else(|| panic!("no call ended line:\n{}", d.log()));
    let f = &line["fields"];
    assert_eq!(f["call_id"], id.as_str(), "{line}");
    assert_eq!(f["outcome"], "busy", "{line}");
    assert_eq!(f["code"], 486, "{line}");
    assert_eq!(f["caller"], "alice", "{line}");
    assert_eq!(f["dialled"], "1003", "{line}");

    for (path, field) in [
        ("/v1/records?outcome=lost", "outcome"),
        ("/v1/records?from=yesterday", "from"),
        ("/v1/records?limit=0", "limit"),
        ("/v1/records?colour=red", "colour"),
        ("/v1/records/missed", "user"),
    ] {
        let (code, body) = admin_api(&d, "GET", path, "");
        assert_eq!(code, 400, "{path}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["field"], field, "{path}: {body}");
    }
    let r = http(&d, "GET", "/v1/calls", None, "");
    assert_eq!(r.status, 401, "{}", r.body);
    let r = http(&d, "GET", "/v1/calls", Some(BOB_TOKEN), "");
    assert_eq!(r.status, 403, "{}", r.body);
    let r = http(&d, "GET", "/v1/records?user=dave", Some(BOB_TOKEN), "");
    assert_eq!(r.status, 403, "{}", r.body);
    let r = http(&d, "GET", "/v1/records/missed", Some(BOB_TOKEN), "");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("\"records\":[]"), "{}", r.body);
    let r = http(&d, "GET", "/v1/records", Some("nobody's token"), "");
    assert_eq!(r.status, 401, "{}", r.body);
}
