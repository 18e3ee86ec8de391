//! The policy is reloaded when its files change (also when an editor saves by rename),
//! once they have stopped changing, on SIGHUP and on `switchboard reload`; a policy that
//! fails validation, or that would remove most users (or all) without the operator's
//! `--allow-shrink`, is refused, logged with why, counted, and the running policy stays. A
//! reload that applies logs the users and trunks it added, removed and changed.

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

/// A user to add, with a password SIPp can answer.
const ZED: &str = "\n[users.zed]\nextension = \"1099\"\n[users.zed.sip]\npassword = \"zed-secret\"\nalgorithms = [\"md5\"]\n";

/// `switchboard reload --config … [args]`: (success, stdout, stderr).
fn reload_command(d: &Daemon, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("reload")
        .arg("--config")
        .arg(d.config_path())
        .args(args)
        .env_remove("SWITCHBOARD_TOKEN")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Whether the API knows `user` (the directory the API reads is the one the core reads).
fn known(d: &Daemon, user: &str) -> bool {
    let (code, body) = admin_api(d, "GET", &format!("/v1/presence/{user}"), "");
    assert!(code == 200 || code == 404, "{code} {body}");
    code == 200
}

#[test]
fn an_empty_policy_file_is_refused_and_everyone_still_registers() {
    let mut d = Daemon::start(Options::default());
    std::fs::write(d.policy_path(), "").unwrap();
    d.wait_for_log("policy reload refused", Duration::from_secs(10));
    let log = d.log();
    assert!(
        log.contains("the new policy has no users: it would remove all 2 (alice, bob)"),
        "{log}"
    );
    assert!(log.contains("failed_reloads=1"), "{log}");
    assert!(log.contains("switchboard reload --allow-shrink"), "{log}");
    assert!(!log.contains("policy reloaded"), "{log}");
    let r = register(&d, "alice", "alice-secret", 7105);
    assert!(r.success, "{}\n{}", r.errors, d.log());
    assert!(known(&d, "bob"));
}

#[test]
fn removing_most_users_is_refused_until_the_operator_confirms() {
    let mut d = Daemon::start(Options {
        policy: format!("{POLICY}{}", many_users(6)),
        ..Options::default()
    });
    save_by_rename(&d, POLICY);
    d.wait_for_log("policy reload refused", Duration::from_secs(10));
    let log = d.log();
    assert!(
        log.contains("it would remove 6 of the 8 users (u0, u1, u2, u3, u4, u5)"),
        "{log}"
    );
    let r = register(&d, "u0", "pw", 7106);
    assert!(r.success, "{}\n{}", r.errors, d.log());

    // Asked again without the confirmation: refused again, and the command says why.
    let (ok, _, err) = reload_command(&d, &[]);
    assert!(!ok);
    assert!(
        err.contains("409: it would remove 6 of the 8 users"),
        "{err}"
    );
    assert!(err.contains("(allow_shrink)"), "{err}");
    assert!(known(&d, "u5"));

    let (ok, out, err) = reload_command(&d, &["--allow-shrink"]);
    assert!(ok, "{out}{err}\n{}", d.log());
    assert!(
        out.contains("users removed: u0, u1, u2, u3, u4, u5"),
        "{out}"
    );
    let log = d.log();
    assert!(log.contains("failed_reloads=2"), "{log}");
    assert!(
        log.contains(
            "policy reloaded users_added=[] users_removed=[u0, u1, u2, u3, u4, u5] \
             users_changed=[] teams_added=[] teams_removed=[] teams_changed=[] trunks_added=[] trunks_removed=[] trunks_changed=[] \
             (shrink confirmed)"
        ),
        "{log}"
    );
    assert!(!known(&d, "u0"));
    assert!(!register(&d, "u0", "pw", 7107).success);
    assert!(register(&d, "alice", "alice-secret", 7108).success);
}

#[test]
fn a_file_written_in_two_halves_is_never_applied_half_way() {
    // The files must be quiet for 1.5 s; the writer pauses 1.2 s between the halves, longer
    // than the watcher's poll (1 s), so a watcher that read at once would see the first
    // half.
    let d = Daemon::start(Options::with("[policy.reload]\nquiet_ms = 1500\n"));
    let full = format!("{POLICY}{ZED}");
    let (first, second) = full.split_at(full.find("[users.bob]").unwrap());
    let bob_stays = |d: &Daemon, during: &str| {
        assert!(known(d, "bob"), "bob vanished {during}:\n{}", d.log());
    };
    {
        use std::io::Write as _;
        let mut f = std::fs::File::create(d.policy_path()).unwrap();
        f.write_all(first.as_bytes()).unwrap();
        f.sync_all().unwrap();
        let pause = std::time::Instant::now();
        while pause.elapsed() < Duration::from_millis(1200) {
            bob_stays(&d, "after the first half");
            std::thread::sleep(Duration::from_millis(50));
        }
        f.write_all(second.as_bytes()).unwrap();
    }
    let applied = wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
        bob_stays(&d, "after the second half");
        d.log_contains("policy reloaded").then_some(())
    });
    assert!(applied.is_some(), "never applied:\n{}", d.log());
    let log = d.log();
    assert!(
        log.contains("policy reloaded users_added=[zed] users_removed=[] users_changed=[]"),
        "{log}"
    );
    assert_eq!(log.matches("policy reloaded").count(), 1, "{log}");
    assert!(!log.contains("policy reload refused"), "{log}");
    assert!(known(&d, "zed") && known(&d, "bob"));
}

#[test]
fn a_normal_edit_is_applied_and_what_changed_is_logged() {
    let mut d = Daemon::start(Options::default());
    // bob gets another extension, zed arrives.
    save_by_rename(
        &d,
        &format!("{}{ZED}", POLICY.replace("\"1002\"", "\"1012\"")),
    );
    d.wait_for_log("policy reloaded", Duration::from_secs(10));
    let log = d.log();
    assert!(
        log.contains(
            "policy reloaded users_added=[zed] users_removed=[] users_changed=[bob] \
             teams_added=[] teams_removed=[] teams_changed=[] trunks_added=[] trunks_removed=[] trunks_changed=[]"
        ),
        "{log}"
    );
    let r = register(&d, "zed", "zed-secret", 7109);
    assert!(r.success, "{}\n{}", r.errors, d.log());
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

#[test]
fn a_policy_with_warnings_is_applied_and_its_warnings_logged() {
    let mut d = Daemon::start(Options::default());
    // nobody has no phone to ring with: valid, and said (as `check` says it).
    let team = "\n[teams.night]\nmembers = [\"alice\", \"nobody\"]\n\
                [users.nobody]\nextension = \"1098\"\n";
    save_by_rename(&d, &format!("{POLICY}{team}"));
    d.wait_for_log("policy reloaded", Duration::from_secs(10));
    let log = d.log();
    assert!(
        log.contains("policy warning: nobody can never ring in a team call")
            && log.contains("key=teams.night.members[1]"),
        "{log}"
    );
    assert!(known(&d, "nobody"));
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["check", "--config"])
        .arg(d.config_path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("warning: nobody can never ring")
            && err.contains("(key teams.night.members[1])"),
        "{err}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("valid (1 warning)"));
}
