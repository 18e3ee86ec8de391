//! The daemon's log as JSON (`[log] format = "json"`): one object per line, for log
//! collectors, with what a text line says in its fields; and a format the daemon does not
//! know refused with the file, line and key.

mod common;

use common::*;
use serde_json::Value;
use std::process::Command;

#[test]
fn json_logs_are_one_object_per_line() {
    let d = Daemon::start(Options {
        extra: "[log]\nformat = \"json\"\n".into(),
        ..Options::default()
    });
    // A REGISTER with a wrong password: refused, and its line is an object too.
    let refused = Sipp::new(&d, "register_forbidden.xml")
        .row(row("alice", "wrong-password", 7301, 600))
        .run();
    assert!(refused.success, "{}", refused.report());
    let log = d.log();
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}\n{log}")))
        .collect();
    assert!(lines.len() >= 2, "{log}");
    for l in &lines {
        assert!(l["timestamp"].is_string() && l["level"].is_string(), "{l}");
        assert!(l["fields"]["message"].is_string(), "{l}");
    }
    let ready = lines
        .iter()
        .find(|l| l["fields"]["message"] == "switchboard ready")
        .expect("the ready line");
    assert_eq!(ready["level"], "INFO");
    assert!(ready["fields"]["realm"].is_string(), "{ready}");
    // The security line keeps its fixed text (what fail2ban reads), as the message.
    assert!(
        lines.iter().any(|l| l["target"] == "switchboard::security"
            && l["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("auth-fail source=127.0.0.1 user=alice "))),
        "{log}"
    );
}

#[test]
fn an_unknown_log_format_is_refused_with_where_it_is() {
    let d = Daemon::start(Options::default());
    let path = d.dir.path().join("bad.toml");
    let text = std::fs::read_to_string(d.config_path()).unwrap() + "[log]\nformat = \"xml\"\n";
    std::fs::write(&path, &text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    let line = text.lines().count();
    assert!(
        err.contains("xml") && err.contains(&format!("bad.toml:{line}")),
        "{err}"
    );
}
