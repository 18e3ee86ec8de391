//! The presence API of the real daemon: every endpoint, its refusals, durability across
//! kill -9, and a profile's end time lapsing by itself.

mod common;

use common::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

const ALICE_TOKEN: &str = "alice-token-0123456789";
const BOB_TOKEN: &str = "bob-token-0123456789ab";

fn policy() -> String {
    POLICY
        .replace(
            "[users.alice]\nextension = \"1001\"\n",
            &format!("[users.alice]\nextension = \"1001\"\napi_token = \"{ALICE_TOKEN}\"\n"),
        )
        .replace(
            "[users.bob]\nextension = \"1002\"\n",
            &format!("[users.bob]\nextension = \"1002\"\napi_token = \"{BOB_TOKEN}\"\n"),
        )
}

fn start() -> Daemon {
    Daemon::start(Options {
        policy: policy(),
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
    let mut s = TcpStream::connect(("127.0.0.1", d.api_port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let body = body.unwrap_or("");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let json = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .and_then(|b| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    (status, json)
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
