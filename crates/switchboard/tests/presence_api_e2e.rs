//! The presence API of the real daemon: every endpoint, its refusals, durability across
//! kill -9, profile and status end times lapsing by themselves, people's own profiles, the
//! time-in-status report, and the CLI.

mod common;

use common::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

const ALICE_TOKEN: &str = "alice-token-0123456789";
const BOB_TOKEN: &str = "bob-token-0123456789ab";

/// The test policy with API tokens for alice and bob, a team of both, and dave (no token,
/// no team).
fn policy() -> String {
    let teams = "\n[teams.support]\nextension = \"2000\"\nmembers = [\"alice\", \"bob\"]\n";
    format!("{POLICY}{DAVE}{teams}")
        .replace(
            "[users.alice]\nextension = \"1001\"\n",
            &format!("[users.alice]\nextension = \"1001\"\napi_token = \"{ALICE_TOKEN}\"\n"),
        )
        .replace(
            "[users.bob]\nextension = \"1002\"\n",
            &format!("[users.bob]\nextension = \"1002\"\napi_token = \"{BOB_TOKEN}\"\n"),
        )
}

/// The daemon with people shown as their status says: nobody registers a phone in most of
/// these tests, and would be shown offline otherwise.
fn start() -> Daemon {
    Daemon::start(Options {
        policy: policy(),
        extra: "[presence]\noffline_without_devices = false\n".into(),
        ..Options::default()
    })
}

/// One HTTP/1.1 exchange: (status, JSON body).
fn http(
    d: &Daemon,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, Value) {
    let r = common::http(d, method, path, token, body.unwrap_or(""));
    let json = serde_json::from_str(&r.body).unwrap_or(Value::Null);
    (r.status, json)
}

#[test]
fn list_and_get() {
    let d = start();
    let (code, v) = http(&d, "GET", "/v1/presence", Some(ALICE_TOKEN), None);
    assert_eq!(code, 200, "{v}");
    let people = v["people"].as_array().unwrap();
    assert_eq!(people.len(), 3);
    assert!(people
        .iter()
        .all(|p| p["availability"] == "available" && p["colour"] == "green"));
    let (code, v) = http(&d, "GET", "/v1/presence/bob", Some(ALICE_TOKEN), None);
    assert_eq!(
        (code, v["profile"]["id"].as_str()),
        (200, Some("available"))
    );
    assert_eq!(v["call_status"], "free");
    let (code, v) = http(&d, "GET", "/v1/presence/nobody", Some(ALICE_TOKEN), None);
    assert_eq!((code, v["field"].as_str()), (404, Some("user")));
    let (code, _) = http(&d, "GET", "/v1/openapi.json", None, None);
    assert_eq!(code, 200);
}

#[test]
fn set_own_status_and_profile() {
    let d = start();
    let (code, v) = http(
        &d,
        "PUT",
        "/v1/presence/alice/status",
        Some(ALICE_TOKEN),
        Some(r#"{"status":"dnd"}"#),
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(
        (v["availability"].as_str(), v["colour"].as_str()),
        (Some("dnd"), Some("red"))
    );
    let (code, v) = http(
        &d,
        "PUT",
        "/v1/presence/alice/profile",
        Some(ALICE_TOKEN),
        Some(r#"{"profile":"meeting","for":"45m","message":"Chat me if urgent"}"#),
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["profile"]["name"], "Meeting");
    assert_eq!(v["message"], "Chat me if urgent");
    assert_eq!(v["call_status"], "hidden");
    let until = v["profile"]["until"].as_i64().unwrap();
    let since = v["profile"]["since"].as_i64().unwrap();
    assert!((2690..=2710).contains(&(until - since)), "{v}");
    // By number, with the profile's standard length (Lunch: 1 h).
    let (code, v) = http(
        &d,
        "PUT",
        "/v1/presence/alice/profile",
        Some(ALICE_TOKEN),
        Some(r#"{"profile":"2"}"#),
    );
    assert_eq!((code, v["profile"]["id"].as_str()), (200, Some("lunch")));
    assert_eq!(
        v["message"], "At lunch",
        "the temporary message is reset by a profile change"
    );
    assert!(
        d.log()
            .contains("presence changed user=alice by=alice via=Api"),
        "{}",
        d.log()
    );
}

#[test]
fn refusals() {
    let d = start();
    let put =
        |path: &str, token: Option<&str>, body: &str| http(&d, "PUT", path, token, Some(body));
    // No token, a wrong token.
    assert_eq!(
        put("/v1/presence/alice/status", None, r#"{"status":"away"}"#).0,
        401
    );
    assert_eq!(
        put(
            "/v1/presence/alice/status",
            Some("nope-nope-nope-nope"),
            r#"{"status":"away"}"#
        )
        .0,
        401
    );
    // Someone else's presence.
    let (code, v) = put(
        "/v1/presence/alice/status",
        Some(BOB_TOKEN),
        r#"{"status":"away"}"#,
    );
    assert_eq!((code, v["field"].as_str()), (403, Some("user")), "{v}");
    // Invalid input, each naming its field.
    let cases = [
        (
            "/v1/presence/alice/status",
            r#"{"status":"sleepy"}"#,
            "status",
        ),
        (
            "/v1/presence/alice/status",
            r#"{"status":"custom"}"#,
            "text",
        ),
        ("/v1/presence/alice/status", r#"{"stat":"away"}"#, "stat"),
        (
            "/v1/presence/alice/profile",
            r#"{"profile":"meeting","until":"2001-01-01T00:00:00Z"}"#,
            "until",
        ),
        (
            "/v1/presence/alice/profile",
            r#"{"profile":"meeting","until":"tomorrow"}"#,
            "until",
        ),
        (
            "/v1/presence/alice/profile",
            r#"{"profile":"meeting","for":"ages"}"#,
            "for",
        ),
        (
            "/v1/presence/alice/profile",
            r#"{"profile":"napping"}"#,
            "profile",
        ),
    ];
    for (path, body, field) in cases {
        let (code, v) = put(path, Some(ALICE_TOKEN), body);
        assert_eq!(
            (code, v["field"].as_str()),
            (400, Some(field)),
            "{body}: {v}"
        );
        assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{v}");
    }
    // The admin token may change anyone's presence.
    let (code, v) = put(
        "/v1/presence/bob/status",
        Some(ADMIN_TOKEN),
        r#"{"status":"away"}"#,
    );
    assert_eq!((code, v["availability"].as_str()), (200, Some("away")));
    let (code, _) = put(
        "/v1/presence/ghost/status",
        Some(ADMIN_TOKEN),
        r#"{"status":"away"}"#,
    );
    assert_eq!(code, 404);
}

#[test]
fn profile_with_end_time_survives_kill_9_and_lapses_by_itself() {
    let mut d = start();
    let until = chrono::Utc::now() + chrono::Duration::seconds(4);
    let body = format!(
        r#"{{"profile":"meeting","until":"{}"}}"#,
        until.to_rfc3339()
    );
    let (code, v) = http(
        &d,
        "PUT",
        "/v1/presence/alice/profile",
        Some(ALICE_TOKEN),
        Some(&body),
    );
    assert_eq!(code, 200, "{v}");
    let (code, _) = http(
        &d,
        "PUT",
        "/v1/presence/bob/profile",
        Some(BOB_TOKEN),
        Some(r#"{"profile":"holiday","for":"2h"}"#),
    );
    assert_eq!(code, 200);
    d.restart(); // kill -9, start again on the same state
    let (_, v) = http(&d, "GET", "/v1/presence/alice", Some(ALICE_TOKEN), None);
    assert_eq!(v["profile"]["id"], "meeting", "{v}");
    let (_, v) = http(&d, "GET", "/v1/presence/bob", Some(BOB_TOKEN), None);
    assert_eq!(v["profile"]["id"], "holiday", "{v}");
    // At the end time the default profile returns by itself.
    d.wait_for_log(
        "presence changed user=alice by=switchboard via=System",
        Duration::from_secs(15),
    );
    let (_, v) = http(&d, "GET", "/v1/presence/alice", Some(ALICE_TOKEN), None);
    assert_eq!(
        (v["profile"]["id"].as_str(), v["availability"].as_str()),
        (Some("available"), Some("available")),
        "{v}"
    );
    // Also when the daemon was down at that moment.
    let until = chrono::Utc::now() + chrono::Duration::seconds(2);
    let body = format!(r#"{{"profile":"lunch","until":"{}"}}"#, until.to_rfc3339());
    assert_eq!(
        http(
            &d,
            "PUT",
            "/v1/presence/alice/profile",
            Some(ALICE_TOKEN),
            Some(&body)
        )
        .0,
        200
    );
    d.kill9();
    std::thread::sleep(Duration::from_millis(2500));
    d.restart();
    let (_, v) = http(&d, "GET", "/v1/presence/alice", Some(ALICE_TOKEN), None);
    assert_eq!(v["profile"]["id"], "available", "{v}");
    let (_, v) = http(&d, "GET", "/v1/presence/bob", Some(BOB_TOKEN), None);
    assert_eq!(v["profile"]["id"], "holiday", "{v}");
}

#[test]
fn cli_talks_to_the_running_daemon() {
    let d = start();
    let cli = |args: &[&str], token: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .arg("presence")
            .arg("--config")
            .arg(d.config_path())
            .args(["--token", token])
            .args(args)
            .output()
            .unwrap()
    };
    let out = cli(
        &[
            "profile",
            "alice",
            "meeting",
            "--for",
            "45m",
            "--message",
            "Back at three",
        ],
        ALICE_TOKEN,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli(&["set", "bob", "dnd"], BOB_TOKEN);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli(&["list"], ALICE_TOKEN);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines().any(|l| l.starts_with("alice")
            && l.contains("Meeting until")
            && l.contains("\"Back at three\"")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("bob") && l.contains("dnd") && l.contains("red")),
        "{text}"
    );
    // Refusals come back as clear errors and a failing exit status.
    let out = cli(&["set", "alice", "away"], BOB_TOKEN);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("403") && err.contains("only their own presence"),
        "{err}"
    );
}

fn get(d: &Daemon, path: &str, token: &str) -> (u16, Value) {
    http(d, "GET", path, Some(token), None)
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Waits (bounded) until `f` holds for the answer of `GET path`.
fn wait_for(d: &Daemon, path: &str, token: &str, f: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    let got = wait_until(Duration::from_secs(15), Duration::from_millis(100), || {
        last = get(d, path, token).1;
        f(&last).then(|| last.clone())
    });
    got.unwrap_or_else(|| panic!("{path} never got there; last: {last}"))
}

#[test]
fn status_with_an_end_time_lapses_back() {
    let d = start();
    let put = |body: &str| {
        http(
            &d,
            "PUT",
            "/v1/presence/alice/status",
            Some(ALICE_TOKEN),
            Some(body),
        )
    };
    let (code, v) = put(r#"{"status":"away"}"#);
    assert_eq!(code, 200, "{v}");
    let until = now() + 2;
    let (code, v) = put(&format!(
        r#"{{"status":"dnd","text":"Focus","until":{until}}}"#
    ));
    assert_eq!(code, 200, "{v}");
    assert_eq!(
        (v["availability"].as_str(), v["status_until"].as_i64()),
        (Some("dnd"), Some(until))
    );
    assert_eq!(v["message"], "Focus");
    // At the end time the status before returns by itself, without the message.
    let v = wait_for(&d, "/v1/presence/alice", ALICE_TOKEN, |v| {
        v["availability"] == "away"
    });
    assert_eq!(
        (v["status_until"].clone(), v["message"].clone()),
        (Value::Null, Value::Null)
    );
    assert!(
        d.log_contains("presence changed user=alice by=switchboard via=System availability=away")
    );
    // "for" works for statuses as for profiles; bad end times name their field.
    let (code, v) = put(r#"{"status":"busy","for":"45m"}"#);
    assert_eq!(code, 200, "{v}");
    let left = v["status_until"].as_i64().unwrap() - now();
    assert!((2690..=2710).contains(&left), "{v}");
    for (body, field) in [
        (
            r#"{"status":"dnd","until":"2001-01-01T00:00:00Z"}"#,
            "until",
        ),
        (r#"{"status":"dnd","until":"at two"}"#, "until"),
        (r#"{"status":"dnd","until":true}"#, "until"),
        (r#"{"status":"dnd","for":"a while"}"#, "for"),
        (
            r#"{"status":"dnd","for":"1h","until":"2099-01-01T00:00:00Z"}"#,
            "for",
        ),
        (r#"{"status":5}"#, "status"),
    ] {
        let (code, v) = put(body);
        assert_eq!(
            (code, v["field"].as_str()),
            (400, Some(field)),
            "{body}: {v}"
        );
    }
}

#[test]
fn profiles_are_listed_with_numbers_created_renamed_changed_and_removed() {
    let d = start();
    // Everyone's base set: the ten defaults, numbered 1-10.
    let (code, v) = get(&d, "/v1/profiles", BOB_TOKEN);
    assert_eq!(code, 200, "{v}");
    let numbers: Vec<i64> = v["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["number"].as_i64().unwrap())
        .collect();
    assert_eq!(numbers, (1..=10).collect::<Vec<_>>());
    assert_eq!(v["profiles"][0]["default"], true);
    // Create: the number is the lowest free from 11.
    let post = |body: &str| {
        http(
            &d,
            "POST",
            "/v1/presence/alice/profiles",
            Some(ALICE_TOKEN),
            Some(body),
        )
    };
    let (code, v) = post(
        r#"{"name":"Focus time","availability":"dnd","message":"Heads down","incoming":"send_to:user:bob","standard_length":"2h"}"#,
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(
        (v["id"].as_str(), v["number"].as_i64(), v["origin"].as_str()),
        (Some("focus_time"), Some(11), Some("own"))
    );
    assert_eq!(v["shows_call_status"], false, "not Available: hidden");
    assert_eq!(
        (v["incoming"].as_str(), v["standard_length"].as_i64()),
        (Some("send_to:user:bob"), Some(7200))
    );
    let (code, v) = post(
        r#"{"id":"gym","name":"Gym","number":42,"availability":"away","standard_length":3600}"#,
    );
    assert_eq!((code, v["number"].as_i64()), (200, Some(42)), "{v}");
    // Rename (hers only) and change a setting; the rest stays.
    let patch = |path: &str, body: &str| http(&d, "PATCH", path, Some(ALICE_TOKEN), Some(body));
    let (code, v) = patch("/v1/presence/alice/profiles/lunch", r#"{"name":"Fika"}"#);
    assert_eq!(code, 200, "{v}");
    assert_eq!(
        (
            v["name"].as_str(),
            v["number"].as_i64(),
            v["origin"].as_str()
        ),
        (Some("Fika"), Some(2), Some("changed"))
    );
    assert_eq!(v["message"], "At lunch");
    let (code, v) = patch(
        "/v1/presence/alice/profiles/42",
        r#"{"incoming":"reject","reject_code":486,"reject_reason":"At the gym","number":43}"#,
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(
        (
            v["id"].as_str(),
            v["number"].as_i64(),
            v["reject_code"].as_i64()
        ),
        (Some("gym"), Some(43), Some(486))
    );
    let (_, v) = get(&d, "/v1/presence/alice/profiles/gym", ALICE_TOKEN);
    assert_eq!(v["reject_reason"], "At the gym");
    // Bob's set is the policy's.
    let (_, v) = get(&d, "/v1/presence/bob/profiles/lunch", BOB_TOKEN);
    assert_eq!(v["name"], "Lunch");
    // Her list: numbered, hers marked.
    let (_, v) = get(&d, "/v1/presence/alice/profiles", ALICE_TOKEN);
    let list: Vec<(i64, &str, &str)> = v["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["number"].as_i64().unwrap(),
                p["name"].as_str().unwrap(),
                p["origin"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(list.len(), 12);
    assert_eq!(list[1], (2, "Fika", "changed"));
    assert_eq!(
        &list[10..],
        &[(11, "Focus time", "own"), (43, "Gym", "own")]
    );
    // Activate her own profile by number; colleagues see its name.
    let (code, v) = http(
        &d,
        "PUT",
        "/v1/presence/alice/profile",
        Some(ALICE_TOKEN),
        Some(r#"{"profile":"11"}"#),
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(
        (v["profile"]["name"].as_str(), v["availability"].as_str()),
        (Some("Focus time"), Some("dnd"))
    );
    assert_eq!(v["message"], "Heads down");
    let until = v["profile"]["until"].as_i64().unwrap() - v["profile"]["since"].as_i64().unwrap();
    assert_eq!(until, 7200, "its standard length");
    let (_, v) = get(&d, "/v1/presence", BOB_TOKEN);
    assert!(
        v["people"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["user"] == "alice" && p["profile"]["name"] == "Focus time"),
        "{v}"
    );
    // Removing the profile she has active returns her to the default profile.
    let (code, v) = http(
        &d,
        "DELETE",
        "/v1/presence/alice/profiles/focus_time",
        Some(ALICE_TOKEN),
        None,
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["removed"]["id"], "focus_time");
    assert_eq!(
        (
            v["presence"]["profile"]["id"].as_str(),
            v["presence"]["availability"].as_str()
        ),
        (Some("available"), Some("available"))
    );
    // A policy profile removed from her set is gone for her only.
    let (code, _) = http(
        &d,
        "DELETE",
        "/v1/presence/alice/profiles/training",
        Some(ALICE_TOKEN),
        None,
    );
    assert_eq!(code, 200);
    let (code, v) = http(
        &d,
        "PUT",
        "/v1/presence/alice/profile",
        Some(ALICE_TOKEN),
        Some(r#"{"profile":"training"}"#),
    );
    assert_eq!((code, v["field"].as_str()), (400, Some("profile")), "{v}");
    let (code, _) = http(
        &d,
        "PUT",
        "/v1/presence/bob/profile",
        Some(BOB_TOKEN),
        Some(r#"{"profile":"training"}"#),
    );
    assert_eq!(code, 200);
    // The admin may manage anyone's profiles.
    let (code, v) = http(
        &d,
        "POST",
        "/v1/presence/bob/profiles",
        Some(ADMIN_TOKEN),
        Some(r#"{"name":"Night shift"}"#),
    );
    assert_eq!((code, v["number"].as_i64()), (200, Some(11)), "{v}");
    let log = d.log();
    for line in [
        "profile created user=alice profile=focus_time number=11 name=Focus time by=alice via=Api",
        "profile changed user=alice profile=lunch number=2 name=Fika by=alice via=Api",
        "profile removed user=alice profile=focus_time",
        "presence changed user=alice by=alice via=Api availability=available",
        "profile created user=bob profile=night_shift number=11 name=Night shift by=admin via=Api",
    ] {
        assert!(log.contains(line), "no {line:?} in:\n{log}");
    }
}

#[test]
fn profile_refusals() {
    let d = start();
    let req = |method: &str, path: &str, token: Option<&str>, body: Option<&str>| {
        http(&d, method, path, token, body)
    };
    let mine = "/v1/presence/alice/profiles";
    // Tokens: none, wrong, someone else's.
    assert_eq!(req("GET", mine, None, None).0, 401);
    assert_eq!(
        req(
            "POST",
            mine,
            Some("nope-nope-nope-nope"),
            Some(r#"{"name":"X"}"#)
        )
        .0,
        401
    );
    for (method, path, body) in [
        ("GET", mine.to_string(), None),
        ("POST", mine.to_string(), Some(r#"{"name":"X"}"#)),
        ("GET", format!("{mine}/lunch"), None),
        ("PATCH", format!("{mine}/lunch"), Some(r#"{"name":"X"}"#)),
        ("DELETE", format!("{mine}/lunch"), None),
    ] {
        let (code, v) = req(method, &path, Some(BOB_TOKEN), body);
        assert_eq!(
            (code, v["field"].as_str()),
            (403, Some("user")),
            "{method} {path}: {v}"
        );
        assert!(
            v["error"]
                .as_str()
                .unwrap()
                .contains("only their own profiles"),
            "{v}"
        );
    }
    let (code, _) = req(
        "POST",
        mine,
        Some(ALICE_TOKEN),
        Some(r#"{"name":"Focus","number":20}"#),
    );
    assert_eq!(code, 200);
    // Invalid input, each naming its field.
    for (body, status, field) in [
        (
            r#"{"name":"A","availability":"asleep"}"#,
            400,
            "availability",
        ),
        (r#"{"name":"A","number":20}"#, 400, "number"),
        (r#"{"name":"A","number":3}"#, 400, "number"),
        (r#"{"name":"A","number":1000}"#, 400, "number"),
        (r#"{"name":"A","number":"twelve"}"#, 400, "number"),
        (
            r#"{"name":"A","incoming":"send_to:team:nowhere"}"#,
            400,
            "incoming",
        ),
        (r#"{"name":"A","incoming":"ignore"}"#, 400, "incoming"),
        (r#"{"name":"A","incoming":"ring_devices"}"#, 400, "devices"),
        (
            r#"{"name":"A","incoming":"reject","reject_code":200}"#,
            400,
            "reject_code",
        ),
        (
            r#"{"name":"A","incoming":"reject","reject_reason":"a\r\nb"}"#,
            400,
            "reject_reason",
        ),
        (
            r#"{"name":"A","standard_length":"a while"}"#,
            400,
            "standard_length",
        ),
        (r#"{"name":"A","caller_id":"mine"}"#, 400, "caller_id"),
        (r#"{"name":"A","caller_id":"+15550100"}"#, 403, "caller_id"),
        (r#"{"name":"A","colour":"red"}"#, 400, "colour"),
        (r#"{"name":"A","devices":[1]}"#, 400, "devices[0]"),
        (r#"{"id":"a b","name":"A"}"#, 400, "id"),
        (r#"{"name":"!!"}"#, 400, "name"),
        (r#"{"name":"Focus"}"#, 409, "id"),
        (r#"{"id":"lunch"}"#, 409, "id"),
    ] {
        let (code, v) = req("POST", mine, Some(ALICE_TOKEN), Some(body));
        assert_eq!(
            (code, v["field"].as_str()),
            (status, Some(field)),
            "{body}: {v}"
        );
        assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{v}");
    }
    for (path, body, status, field) in [
        ("lunch", r#"{"id":"fika"}"#, 400, "id"),
        ("lunch", r#"{"number":20}"#, 400, "number"),
        ("lunch", r#"{"name":""}"#, 400, "name"),
        ("available", r#"{"number":50}"#, 400, "number"),
        ("napping", r#"{"name":"Nap"}"#, 404, "profile"),
    ] {
        let (code, v) = req(
            "PATCH",
            &format!("{mine}/{path}"),
            Some(ALICE_TOKEN),
            Some(body),
        );
        assert_eq!(
            (code, v["field"].as_str()),
            (status, Some(field)),
            "{path} {body}: {v}"
        );
    }
    // The default profile stays; an unknown one is not found; nor is an unknown person.
    let (code, v) = req(
        "DELETE",
        &format!("{mine}/available"),
        Some(ALICE_TOKEN),
        None,
    );
    assert_eq!((code, v["field"].as_str()), (409, Some("profile")), "{v}");
    let (code, v) = req("DELETE", &format!("{mine}/1"), Some(ADMIN_TOKEN), None);
    assert_eq!((code, v["field"].as_str()), (409, Some("profile")), "{v}");
    let (code, v) = req(
        "DELETE",
        &format!("{mine}/napping"),
        Some(ALICE_TOKEN),
        None,
    );
    assert_eq!((code, v["field"].as_str()), (404, Some("profile")), "{v}");
    let (code, v) = req(
        "GET",
        "/v1/presence/ghost/profiles",
        Some(ADMIN_TOKEN),
        None,
    );
    assert_eq!((code, v["field"].as_str()), (404, Some("user")), "{v}");
    // Unknown endpoints and methods are refused in JSON too.
    let (code, v) = req("PUT", "/v1/profiles", Some(ALICE_TOKEN), Some("{}"));
    assert_eq!(code, 405, "{v}");
    assert!(v["error"].is_string(), "{v}");
    let (code, v) = req("GET", "/v1/nothing", Some(ALICE_TOKEN), None);
    assert_eq!(code, 404, "{v}");
    assert!(v["error"].is_string(), "{v}");
    // Nothing refused was stored.
    let (_, v) = req("GET", mine, Some(ALICE_TOKEN), None);
    assert_eq!(v["profiles"].as_array().unwrap().len(), 11, "{v}");
}

#[test]
fn time_in_status_per_person_and_team() {
    let d = start();
    let t0 = now();
    let set = |user: &str, token: &str, status: &str| {
        let (code, v) = http(
            &d,
            "PUT",
            &format!("/v1/presence/{user}/status"),
            Some(token),
            Some(&format!(r#"{{"status":"{status}"}}"#)),
        );
        assert_eq!(code, 200, "{v}");
    };
    set("alice", ALICE_TOKEN, "dnd");
    set("bob", BOB_TOKEN, "away");
    std::thread::sleep(Duration::from_millis(2100));
    set("alice", ALICE_TOKEN, "available");
    let t1 = now();
    // Her own report: every second of the range is in one status.
    let (code, v) = get(
        &d,
        &format!("/v1/reports/time-in-status?user=alice&from={t0}&to={t1}"),
        ALICE_TOKEN,
    );
    assert_eq!(code, 200, "{v}");
    let total: i64 = v["total"]
        .as_object()
        .unwrap()
        .values()
        .map(|s| s.as_i64().unwrap())
        .sum();
    assert_eq!(total, t1 - t0, "{v}");
    assert!(v["total"]["dnd"].as_i64().unwrap() >= 2, "{v}");
    assert_eq!(v["people"][0]["current"], "available");
    // A team, with the admin token: per member, total and average; RFC 3339 accepted.
    let from = chrono::DateTime::from_timestamp(t0, 0)
        .unwrap()
        .to_rfc3339();
    let path = format!(
        "/v1/reports/time-in-status?team=support&from={}",
        from.replace('+', "%2B")
    );
    let (code, v) = get(&d, &path, ADMIN_TOKEN);
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["team"], "support");
    assert_eq!(v["people"].as_array().unwrap().len(), 2);
    assert!(v["total"]["away"].as_i64().unwrap() >= 2, "{v}");
    assert!(v["average"]["away"].as_i64().unwrap() >= 1, "{v}");
    // Refusals: wrong token, someone else's report, a team without the admin token, bad
    // ranges, unknown names.
    let q = "/v1/reports/time-in-status?user=alice&from=1";
    assert_eq!(http(&d, "GET", q, None, None).0, 401);
    assert_eq!(get(&d, q, "nope-nope-nope-nope").0, 401);
    for (path, token, status, field) in [
        ("user=alice&from=1", BOB_TOKEN, 403, "user"),
        ("team=support&from=1", ALICE_TOKEN, 403, "team"),
        ("user=alice", ALICE_TOKEN, 400, "from"),
        ("user=alice&from=yesterday", ALICE_TOKEN, 400, "from"),
        ("user=alice&from=100&to=50", ALICE_TOKEN, 400, "to"),
        ("user=alice&from=100&to=soon", ALICE_TOKEN, 400, "to"),
        ("from=100", ALICE_TOKEN, 400, "user"),
        ("user=alice&team=support&from=1", ADMIN_TOKEN, 400, "team"),
        ("user=alice&from=1&step=60", ALICE_TOKEN, 400, "step"),
        ("team=sales&from=1", ADMIN_TOKEN, 404, "team"),
        ("user=ghost&from=1", ADMIN_TOKEN, 404, "user"),
    ] {
        let (code, v) = get(&d, &format!("/v1/reports/time-in-status?{path}"), token);
        assert_eq!(
            (code, v["field"].as_str()),
            (status, Some(field)),
            "{path}: {v}"
        );
    }
}

#[test]
fn own_profiles_and_a_status_end_time_survive_kill_9() {
    let mut d = start();
    let t0 = now();
    let send = |d: &Daemon, method: &str, path: &str, token: &str, body: Option<&str>| {
        let (code, v) = http(d, method, path, Some(token), body);
        assert_eq!(code, 200, "{method} {path}: {v}");
        v
    };
    send(
        &d,
        "POST",
        "/v1/presence/alice/profiles",
        ALICE_TOKEN,
        Some(r#"{"name":"Focus","availability":"dnd"}"#),
    );
    send(
        &d,
        "PATCH",
        "/v1/presence/alice/profiles/lunch",
        ALICE_TOKEN,
        Some(r#"{"name":"Fika","standard_length":"30m"}"#),
    );
    send(
        &d,
        "DELETE",
        "/v1/presence/alice/profiles/training",
        ALICE_TOKEN,
        None,
    );
    send(
        &d,
        "PUT",
        "/v1/presence/alice/profile",
        ALICE_TOKEN,
        Some(r#"{"profile":"focus","for":"2h"}"#),
    );
    let until = now() + 4;
    send(
        &d,
        "PUT",
        "/v1/presence/bob/status",
        BOB_TOKEN,
        Some(&format!(r#"{{"status":"dnd","until":{until}}}"#)),
    );
    d.restart(); // kill -9 right after the answers, then start on the same state
    let (_, v) = get(&d, "/v1/presence/alice/profiles", ALICE_TOKEN);
    let names: Vec<&str> = v["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"Focus") && names.contains(&"Fika") && !names.contains(&"Training"),
        "{v}"
    );
    let (_, v) = get(&d, "/v1/presence/alice/profiles/lunch", ALICE_TOKEN);
    assert_eq!(v["standard_length"], 1800);
    let (_, v) = get(&d, "/v1/presence/alice", ALICE_TOKEN);
    assert_eq!(
        (v["profile"]["name"].as_str(), v["availability"].as_str()),
        (Some("Focus"), Some("dnd")),
        "{v}"
    );
    let (_, v) = get(&d, "/v1/presence/bob", BOB_TOKEN);
    assert_eq!(
        (v["availability"].as_str(), v["status_until"].as_i64()),
        (Some("dnd"), Some(until)),
        "{v}"
    );
    // Bob's status lapses at its end time by itself, after the restart.
    d.wait_for_log(
        "presence changed user=bob by=switchboard via=System availability=available",
        Duration::from_secs(15),
    );
    let (_, v) = get(&d, "/v1/presence/bob", BOB_TOKEN);
    assert_eq!(
        (v["availability"].as_str(), v["status_until"].clone()),
        (Some("available"), Value::Null),
        "{v}"
    );
    // And the closed intervals stayed in the store for the report.
    let (code, v) = get(
        &d,
        &format!("/v1/reports/time-in-status?user=bob&from={t0}"),
        ADMIN_TOKEN,
    );
    assert_eq!(code, 200, "{v}");
    assert!(v["total"]["dnd"].as_i64().unwrap() >= 3, "{v}");
    // A status end that passed while the daemon was down takes effect at start.
    let until = now() + 2;
    send(
        &d,
        "PUT",
        "/v1/presence/bob/status",
        BOB_TOKEN,
        Some(&format!(r#"{{"status":"away","until":{until}}}"#)),
    );
    d.kill9();
    std::thread::sleep(Duration::from_millis(2500));
    d.restart();
    let (_, v) = get(&d, "/v1/presence/bob", BOB_TOKEN);
    assert_eq!(v["availability"], "available", "{v}");
}

#[test]
fn cli_sets_timed_statuses_manages_profiles_and_reports() {
    let d = start();
    let t0 = now();
    // The token after the action, as the issue writes it; the machine's clock in India.
    let cli = |args: &[&str], token: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .arg("presence")
            .arg("--config")
            .arg(d.config_path())
            .args(args)
            .args(["--token", token])
            .env("TZ", "Asia/Kolkata")
            .env_remove("SWITCHBOARD_TOKEN")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let ok = |args: &[&str], token: &str| {
        let (success, out, err) = cli(args, token);
        assert!(success, "{args:?}: {err}");
        out
    };
    // A status with an end time, as the issue writes it: HH:MM of the machine's time zone
    // (after midnight there, tomorrow's).
    let india = chrono::FixedOffset::east_opt(5 * 3600 + 1800).unwrap();
    let soon = chrono::Utc::now().with_timezone(&india) + chrono::Duration::minutes(10);
    let until = soon.format("%H:%M").to_string();
    let until_unix = soon.timestamp() - soon.timestamp() % 60;
    let out = ok(
        &[
            "set",
            "alice",
            "dnd",
            "--until",
            &until,
            "--message",
            "Back soon",
        ],
        ALICE_TOKEN,
    );
    assert!(
        out.contains("dnd until") && out.contains("\"Back soon\""),
        "{out}"
    );
    let (_, v) = get(&d, "/v1/presence/alice", ALICE_TOKEN);
    assert_eq!(v["status_until"].as_i64(), Some(until_unix), "{until}: {v}");
    let out = ok(&["set", "bob", "away", "--for", "30m"], BOB_TOKEN);
    assert!(out.contains("away until"), "{out}");
    // Profiles: list (numbers first), create, rename, change, remove.
    let out = ok(&["profiles", "list"], ALICE_TOKEN);
    assert!(
        out.lines()
            .nth(1)
            .unwrap()
            .trim_start()
            .starts_with("1  Available"),
        "{out}"
    );
    assert_eq!(
        out.lines().count(),
        11,
        "a header and the ten defaults:\n{out}"
    );
    let out = ok(
        &[
            "profiles",
            "create",
            "alice",
            "Focus time",
            "--availability",
            "dnd",
            "--incoming",
            "reject",
            "--reject-code",
            "486",
            "--standard-length",
            "2h",
        ],
        ALICE_TOKEN,
    );
    assert!(
        out.trim_start().starts_with("11  Focus time") && out.contains("reject 486"),
        "{out}"
    );
    let out = ok(
        &["profiles", "rename", "alice", "11", "Deep work"],
        ALICE_TOKEN,
    );
    assert!(
        out.contains("Deep work") && out.contains("focus_time"),
        "{out}"
    );
    let out = ok(
        &[
            "profiles",
            "update",
            "alice",
            "lunch",
            "--message",
            "Fika",
            "--standard-length",
            "none",
        ],
        ALICE_TOKEN,
    );
    assert!(out.contains("Lunch") && out.contains(" - "), "{out}");
    ok(&["profile", "alice", "focus_time"], ALICE_TOKEN);
    let out = ok(&["profiles", "list", "alice"], ALICE_TOKEN);
    assert!(
        out.lines()
            .any(|l| l.contains("Deep work") && l.ends_with("active, own")),
        "{out}"
    );
    let out = ok(&["profiles", "remove", "alice", "focus_time"], ALICE_TOKEN);
    assert!(
        out.contains("removed:") && out.contains("Available"),
        "{out}"
    );
    // Refused: someone else's profiles; the default profile.
    let (success, _, err) = cli(&["profiles", "remove", "alice", "lunch"], BOB_TOKEN);
    assert!(
        !success && err.contains("403") && err.contains("(user)"),
        "{err}"
    );
    let (success, _, err) = cli(&["profiles", "remove", "alice", "available"], ALICE_TOKEN);
    assert!(!success && err.contains("409"), "{err}");
    // Reports.
    std::thread::sleep(Duration::from_millis(1100));
    let from = t0.to_string();
    let out = ok(&["report", "--user", "alice", "--from", &from], ALICE_TOKEN);
    assert!(
        out.starts_with("alice: ") && out.contains("time in status"),
        "{out}"
    );
    let out = ok(
        &["report", "--team", "support", "--from", &from],
        ADMIN_TOKEN,
    );
    assert!(
        out.starts_with("team support: ")
            && out.contains("bob (now away)")
            && out.contains("average per member"),
        "{out}"
    );
    let (success, _, err) = cli(
        &["report", "--team", "support", "--from", &from],
        ALICE_TOKEN,
    );
    assert!(!success && err.contains("403"), "{err}");
    let (success, _, err) = cli(
        &["report", "--user", "alice", "--from", "someday"],
        ALICE_TOKEN,
    );
    assert!(!success && err.contains("(from)"), "{err}");
    // The CLI's changes are logged as made through the CLI.
    let log = d.log();
    assert!(
        log.contains("presence changed user=alice by=alice via=Cli"),
        "{log}"
    );
    assert!(log.contains("profile created user=alice profile=focus_time number=11 name=Focus time by=alice via=Cli"), "{log}");
}

#[test]
fn the_temporary_message_changes_on_its_own_through_the_api_and_the_cli() {
    let d = start();
    let put = |path: &str, token: &str, body: &str| http(&d, "PUT", path, Some(token), Some(body));
    let (code, v) = put(
        "/v1/presence/alice/status",
        ALICE_TOKEN,
        r#"{"status":"dnd","for":"1h"}"#,
    );
    assert_eq!(code, 200, "{v}");
    let until = v["status_until"].as_i64().unwrap();
    let (code, v) = put(
        "/v1/presence/alice/message",
        ALICE_TOKEN,
        r#"{"message":"Back at three"}"#,
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(
        (
            v["message"].as_str(),
            v["availability"].as_str(),
            v["status_until"].as_i64()
        ),
        (Some("Back at three"), Some("dnd"), Some(until)),
        "the timed status keeps its end: {v}"
    );
    let (code, v) = put(
        "/v1/presence/alice/message",
        ALICE_TOKEN,
        r#"{"message":null}"#,
    );
    assert_eq!((code, v["message"].clone()), (200, Value::Null), "{v}");
    assert_eq!(v["status_until"].as_i64(), Some(until));
    for (token, body, status, field) in [
        (BOB_TOKEN, r#"{"message":"hi"}"#, 403, "user"),
        (ALICE_TOKEN, r#"{}"#, 400, "message"),
        (ALICE_TOKEN, r#"{"message":5}"#, 400, "message"),
        (ALICE_TOKEN, r#"{"message":"x","text":"y"}"#, 400, "text"),
    ] {
        let (code, v) = put("/v1/presence/alice/message", token, body);
        assert_eq!(
            (code, v["field"].as_str()),
            (status, Some(field)),
            "{body}: {v}"
        );
    }
    let long = format!(r#"{{"message":"{}"}}"#, "x".repeat(201));
    let (code, v) = put("/v1/presence/alice/message", ALICE_TOKEN, &long);
    assert_eq!((code, v["field"].as_str()), (400, Some("message")), "{v}");
    // The CLI: set, then clear.
    let cli = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .arg("presence")
            .arg("--config")
            .arg(d.config_path())
            .args(["--token", ALICE_TOKEN])
            .args(args)
            .output()
            .unwrap()
    };
    let out = cli(&["message", "alice", "In the lab"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("\"In the lab\"") && text.contains("dnd until"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli(&["message", "alice", "--clear"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, v) = http(&d, "GET", "/v1/presence/alice", Some(ALICE_TOKEN), None);
    assert_eq!(
        (v["message"].clone(), v["status_until"].as_i64()),
        (Value::Null, Some(until)),
        "{v}"
    );
    assert!(
        !cli(&["message", "alice"]).status.success(),
        "a message or --clear"
    );
    assert!(d.log_contains("presence changed user=alice by=alice via=Cli"));
}

#[test]
fn end_times_are_bounded_and_a_profile_may_have_none() {
    let d = start();
    let put = |path: &str, body: &str| http(&d, "PUT", path, Some(ALICE_TOKEN), Some(body));
    let far = now() + 11 * 366 * 86_400;
    for (path, body, field) in [
        (
            "/v1/presence/alice/profile",
            r#"{"profile":"meeting","for":"0"}"#.to_string(),
            "for",
        ),
        (
            "/v1/presence/alice/status",
            r#"{"status":"dnd","for":"0"}"#.to_string(),
            "for",
        ),
        (
            "/v1/presence/alice/status",
            format!(r#"{{"status":"dnd","until":{far}}}"#),
            "until",
        ),
        (
            "/v1/presence/alice/profile",
            format!(r#"{{"profile":"meeting","until":{far}}}"#),
            "until",
        ),
        (
            "/v1/presence/alice/profile",
            r#"{"profile":"meeting","for":"400000000"}"#.to_string(),
            "for",
        ),
    ] {
        let (code, v) = put(path, &body);
        assert_eq!(
            (code, v["field"].as_str()),
            (400, Some(field)),
            "{body}: {v}"
        );
    }
    // Lunch has a standard length (1 h); "for": "none" activates it with no end at all.
    let (code, v) = put("/v1/presence/alice/profile", r#"{"profile":"lunch"}"#);
    assert_eq!(code, 200, "{v}");
    assert!(v["profile"]["until"].is_i64(), "{v}");
    let (code, v) = put(
        "/v1/presence/alice/profile",
        r#"{"profile":"lunch","for":"none"}"#,
    );
    assert_eq!(
        (
            code,
            v["profile"]["id"].as_str(),
            v["profile"]["until"].clone()
        ),
        (200, Some("lunch"), Value::Null),
        "{v}"
    );
}

#[test]
fn time_in_status_counts_across_kill_9_also_for_people_who_never_changed() {
    let mut d = start();
    let (_, v) = get(&d, "/v1/presence/bob", ADMIN_TOKEN);
    let bob_since = v["status_since"].as_i64().unwrap();
    // Alice's lunch ends while the daemon is down.
    let until = now() + 2;
    let (code, v) = http(
        &d,
        "PUT",
        "/v1/presence/alice/profile",
        Some(ALICE_TOKEN),
        Some(&format!(r#"{{"profile":"lunch","until":{until}}}"#)),
    );
    assert_eq!(code, 200, "{v}");
    let lunch_since = v["profile"]["since"].as_i64().unwrap();
    d.kill9();
    wait_until(Duration::from_secs(5), Duration::from_millis(50), || {
        (now() > until).then_some(())
    });
    std::thread::sleep(Duration::from_millis(300));
    d.restart();
    let t = now();
    assert!(t > until);
    // Bob never changed anything: his time in Available runs on from the first start.
    let (_, v) = get(&d, "/v1/presence/bob", BOB_TOKEN);
    assert_eq!(v["status_since"].as_i64(), Some(bob_since), "{v}");
    let (code, r) = get(
        &d,
        &format!("/v1/reports/time-in-status?user=bob&from={bob_since}&to={t}"),
        BOB_TOKEN,
    );
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["total"]["available"].as_i64(), Some(t - bob_since), "{r}");
    // Alice's lunch ended at its end time, not at the restart.
    let (_, v) = get(&d, "/v1/presence/alice", ALICE_TOKEN);
    assert_eq!(
        (
            v["profile"]["id"].as_str(),
            v["status_since"].as_i64(),
            v["profile"]["since"].as_i64()
        ),
        (Some("available"), Some(until), Some(until)),
        "{v}"
    );
    let (code, r) = get(
        &d,
        &format!("/v1/reports/time-in-status?user=alice&from={lunch_since}&to={t}"),
        ALICE_TOKEN,
    );
    assert_eq!(code, 200, "{r}");
    assert_eq!(
        (
            r["total"]["away"].as_i64(),
            r["total"]["available"].as_i64()
        ),
        (Some(until - lunch_since), Some(t - until)),
        "{r}"
    );
}

#[test]
fn a_custom_text_is_shown_over_the_profiles_and_an_older_message() {
    let d = start();
    let put = |path: &str, body: &str| http(&d, "PUT", path, Some(ALICE_TOKEN), Some(body));
    let (code, v) = put("/v1/presence/alice/profile", r#"{"profile":"lunch"}"#);
    assert_eq!(
        (code, v["message"].as_str()),
        (200, Some("At lunch")),
        "{v}"
    );
    let (code, v) = put(
        "/v1/presence/alice/status",
        r#"{"status":"custom","text":"Out to lunch at the pub"}"#,
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(
        (v["message"].as_str(), v["custom_text"].as_str()),
        (
            Some("Out to lunch at the pub"),
            Some("Out to lunch at the pub")
        ),
        "{v}"
    );
    put(
        "/v1/presence/alice/status",
        r#"{"status":"dnd","text":"Focus"}"#,
    );
    put(
        "/v1/presence/alice/status",
        r#"{"status":"custom","text":"Gone fishing"}"#,
    );
    let (_, v) = http(&d, "GET", "/v1/presence/alice", Some(BOB_TOKEN), None);
    assert_eq!(v["message"], "Gone fishing", "{v}");
    assert!(
        d.log_contains("status_message=\"Gone fishing\" custom_text=\"Gone fishing\""),
        "{}",
        d.log()
    );
}

/// NUL, ESC and other control characters are refused in every text a client sets, with the
/// API's validation error naming the field; nothing is changed.
#[test]
fn control_characters_in_texts_are_refused() {
    let d = start();
    let cases = [
        (
            "PUT",
            "/v1/presence/alice/status",
            r#"{"status":"custom","text":"Out\u0000"}"#,
            "text",
        ),
        (
            "PUT",
            "/v1/presence/alice/status",
            r#"{"status":"custom","text":"\u001b[2JHacked"}"#,
            "text",
        ),
        (
            "PUT",
            "/v1/presence/alice/message",
            r#"{"message":"Back\nsoon"}"#,
            "message",
        ),
        (
            "PUT",
            "/v1/presence/alice/profile",
            r#"{"profile":"meeting","message":"x\u009b"}"#,
            "message",
        ),
        (
            "POST",
            "/v1/presence/alice/profiles",
            r#"{"name":"Focus\u001b"}"#,
            "name",
        ),
    ];
    for (method, path, body, field) in cases {
        let (code, v) = http(&d, method, path, Some(ALICE_TOKEN), Some(body));
        assert_eq!(
            (code, v["field"].as_str()),
            (400, Some(field)),
            "{body}: {v}"
        );
        assert!(
            v["error"].as_str().unwrap().contains("control characters"),
            "{v}"
        );
    }
    let (code, v) = get(&d, "/v1/presence/alice", ALICE_TOKEN);
    assert_eq!(code, 200);
    assert_eq!(v["availability"].as_str(), Some("available"), "{v}");
    // A text without them is taken.
    let (code, v) = http(
        &d,
        "PUT",
        "/v1/presence/alice/status",
        Some(ALICE_TOKEN),
        Some(r#"{"status":"custom","text":"Out – back at 3 ☕"}"#),
    );
    assert_eq!(code, 200, "{v}");
}

/// Whether the server closed `s` within `limit`, while `feed` is written to it now and then
/// (a client trickling its request): the time it took.
fn closed_within(
    s: &mut TcpStream,
    limit: Duration,
    mut feed: impl FnMut() -> Vec<u8>,
) -> Option<Duration> {
    let start = std::time::Instant::now();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 4096];
    while start.elapsed() < limit {
        if s.write_all(&feed()).is_err() {
            return Some(start.elapsed());
        }
        match s.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return Some(start.elapsed()),
        }
    }
    None
}

/// Clients that trickle their headers, send none, or never finish their body are cut off
/// after `api.header_timeout_secs` / `api.body_timeout_secs`; connections over
/// `api.max_connections` are answered 503 and closed, and a normal client is served.
#[test]
fn slow_clients_are_cut_off_and_connections_are_capped() {
    let d = Daemon::start(Options {
        policy: policy(),
        api: "max_connections = 4\nheader_timeout_secs = 1\nbody_timeout_secs = 1\n".into(),
        ..Options::default()
    });
    let api = ("127.0.0.1", d.api_port);
    let limit = Duration::from_secs(6);

    // Headers trickled, a line every 200 ms: closed after about a second.
    let mut s = TcpStream::connect(api).unwrap();
    s.write_all(b"GET /v1/presence HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let mut n = 0;
    let took = closed_within(&mut s, limit, || {
        n += 1;
        format!("X-Slow-{n}: y\r\n").into_bytes()
    })
    .expect("a client trickling its headers is cut off");
    assert!(took < Duration::from_secs(4), "{took:?}");

    // A body that never ends: 408, then closed.
    let mut s = TcpStream::connect(api).unwrap();
    write!(
        s,
        "PUT /v1/presence/alice/status HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ALICE_TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"status\""
    )
    .unwrap();
    s.set_read_timeout(Some(limit)).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 408"), "{out:?}");

    // Four silent connections take every slot: a fifth is told 503 and closed at once…
    let silent: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(api).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(100));
    let mut fifth = TcpStream::connect(api).unwrap();
    fifth
        .set_read_timeout(Some(Duration::from_millis(700)))
        .unwrap();
    let mut out = String::new();
    let _ = fifth.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 503"), "{out:?}");
    // …the silent ones are closed after the header timeout…
    for mut s in silent {
        assert!(
            closed_within(&mut s, limit, Vec::new).is_some(),
            "a silent connection is cut off"
        );
    }
    // …and a normal client is served.
    let (code, v) = get(&d, "/v1/presence/alice", ALICE_TOKEN);
    assert_eq!(code, 200, "{v}");
}

#[test]
fn registrations_are_listed_for_the_admin_and_each_person_their_own() {
    // As by default: someone with no phone registered is shown offline.
    let d = Daemon::start(Options {
        policy: policy(),
        ..Options::default()
    });
    // Nobody has a phone yet: offline (grey), whatever the status says.
    let (_, alice) = http(&d, "GET", "/v1/presence/alice", Some(ALICE_TOKEN), None);
    assert_eq!(
        (&alice["offline"], &alice["colour"], &alice["devices"]),
        (&json!(true), &json!("grey"), &json!(0)),
        "{alice}"
    );
    let register = |user: &str, password: &str, port: u16, scenario: &str| {
        let expires = if scenario == "register.xml" { 600 } else { 0 };
        Sipp::new(&d, scenario)
            .row(row(user, password, port, expires))
            .ok();
    };
    register("alice", "alice-secret", 7201, "register.xml");
    register("alice", "alice-secret", 7202, "register.xml");
    register("bob", "bob-secret", 7203, "register.xml");

    let (code, v) = http(&d, "GET", "/v1/registrations", Some(ADMIN_TOKEN), None);
    assert_eq!(code, 200, "{v}");
    let list = v["registrations"].as_array().unwrap();
    let seen: Vec<(&str, bool)> = list
        .iter()
        .map(|r| {
            (
                r["user"].as_str().unwrap(),
                r["contact"].as_str().unwrap().contains(":720"),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [("alice", true), ("alice", true), ("bob", true)],
        "{v}"
    );
    let bob = &list[2];
    assert!(bob["contact"].as_str().unwrap().contains(":7203"), "{v}");
    assert_eq!(bob["transport"], "UDP", "{v}");
    assert!(
        bob["source"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{v}"
    );
    let (expires, since) = (
        bob["expires_at"].as_i64().unwrap(),
        bob["registered_at"].as_i64().unwrap(),
    );
    assert!((590..=610).contains(&(expires - since)), "{v}");

    // One person's, for the admin; a person sees only their own.
    let (_, v) = http(
        &d,
        "GET",
        "/v1/registrations?user=bob",
        Some(ADMIN_TOKEN),
        None,
    );
    assert_eq!(v["registrations"].as_array().unwrap().len(), 1, "{v}");
    let (code, v) = http(&d, "GET", "/v1/registrations", Some(ALICE_TOKEN), None);
    assert_eq!(code, 200, "{v}");
    let users: Vec<&str> = v["registrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["user"].as_str().unwrap())
        .collect();
    assert_eq!(users, ["alice", "alice"]);
    let (code, v) = http(
        &d,
        "GET",
        "/v1/registrations?user=bob",
        Some(ALICE_TOKEN),
        None,
    );
    assert_eq!(code, 403, "{v}");
    let (code, _) = http(&d, "GET", "/v1/registrations", None, None);
    assert_eq!(code, 401);
    let (code, _) = http(
        &d,
        "GET",
        "/v1/registrations?who=bob",
        Some(ADMIN_TOKEN),
        None,
    );
    assert_eq!(code, 400);

    // The CLI, with the config's admin token; bob unregisters and is gone.
    register("bob", "bob-secret", 7203, "deregister.xml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["registrations", "--config"])
        .arg(d.config_path())
        .env_remove("SWITCHBOARD_TOKEN")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let devices: Vec<&str> = text.lines().filter(|l| l.contains(":720")).collect();
    assert_eq!(devices.len(), 2, "{text}");
    assert!(devices.iter().all(|l| l.starts_with("alice ")), "{text}");
}
