//! The policy is reloaded when its files change (also when an editor saves by rename) and
//! on SIGHUP; a policy that fails validation is refused, logged with its errors, counted,
//! and the running policy stays.

mod common;

use common::*;
use std::process::Command;
use std::time::Duration;

/// Replaces the policy file the way editors do: write a new file, rename it over the old.
fn save_by_rename(d: &Daemon, text: &str) {
    let tmp = d.dir.path().join(".policy.toml.swp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, d.dir.path().join("policy.toml")).unwrap();
}

fn register(d: &Daemon, user: &str, password: &str, port: u16) -> SippRun {
    Sipp::new(d, "register.xml")
        .row(row(user, password, port, 600))
        .run()
}

#[test]
fn bad_policy_is_refused_and_the_running_one_stays_then_a_good_one_applies() {
    let mut d = Daemon::start(Options::default());
    save_by_rename(
        &d,
        &format!("{POLICY}\n[users.zed]\nextension = \"1001\"\n"),
    );
    d.wait_for_log("policy reload refused", Duration::from_secs(10));
    let log = d.log();
    assert!(log.contains("failed_reloads=1"), "{log}");
    assert!(
        log.contains("extension 1001 is already used by user alice"),
        "{log}"
    );
    assert!(
        log.contains("policy.toml:"),
        "the error names the file: {log}"
    );
    // The running policy still serves.
    assert!(register(&d, "alice", "alice-secret", 7101).success);

    save_by_rename(
        &d,
        &format!("{POLICY}\n[users.zed]\nextension = \"1099\"\n[users.zed.sip]\npassword = \"zed-secret\"\nalgorithms = [\"md5\"]\n"),
    );
    d.wait_for_log("policy reloaded", Duration::from_secs(10));
    let r = register(&d, "zed", "zed-secret", 7102);
    assert!(r.success, "{}\n{}", r.errors, d.log());
}

#[test]
fn sighup_reloads() {
    let mut d = Daemon::start(Options::default());
    assert!(!register(&d, "yan", "yan-secret", 7103).success);
    // Same size and mtime granularity could hide a change from polling: SIGHUP is explicit.
    std::fs::write(
        d.dir.path().join("policy.toml"),
        format!("{POLICY}\n[users.yan]\nextension = \"1098\"\n[users.yan.sip]\npassword = \"yan-secret\"\nalgorithms = [\"md5\"]\n"),
    )
    .unwrap();
    assert!(Command::new("kill")
        .args(["-HUP", &d.pid().to_string()])
        .status()
        .unwrap()
        .success());
    d.wait_for_log("SIGHUP: reloading the policy", Duration::from_secs(10));
    d.wait_for_log("policy reloaded", Duration::from_secs(10));
    assert!(
        register(&d, "yan", "yan-secret", 7104).success,
        "{}",
        d.log()
    );
}

#[test]
fn check_reports_every_error_with_file_line_and_key() {
    let d = Daemon::start(Options::default());
    std::fs::write(
        d.dir.path().join("policy.toml"),
        "[users.a]\nextension = \"1\"\nno_answer = \"team:nope\"\n[users.b]\nextension = \"1\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["check", "--config"])
        .arg(d.config_path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("policy.toml:3:13 (key users.a.no_answer)"),
        "{err}"
    );
    assert!(
        err.contains("policy.toml:5:13 (key users.b.extension)"),
        "{err}"
    );
    assert!(err.contains("2 errors"), "{err}");
    // A config error names its file, line and key too.
    std::fs::write(
        d.config_path(),
        "[sip]\nlisten = [\"udp:127.0.0.1:5060\"]\nrealm = \"r\"\n[timers]\nt1_ms = 1\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["check", "--config"])
        .arg(d.config_path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("switchboard.toml:5:9 (key timers.t1_ms)"),
        "{err}"
    );
}
