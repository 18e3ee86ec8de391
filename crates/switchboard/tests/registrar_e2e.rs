//! The registrar against SIPp over loopback: digest challenge/response, refresh,
//! de-registration, `Contact: *`, wrong passwords and throttling, 423, expiry, restart.

mod common;

use common::*;
use std::time::Duration;

/// The Contact lines of the last 200 OK in a SIPp message log.
fn contacts_in_last_200(messages: &str) -> Vec<String> {
    let Some(start) = messages.rfind("SIP/2.0 200 OK") else {
        return Vec::new();
    };
    messages[start..]
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .filter(|l| l.to_ascii_lowercase().starts_with("contact:"))
        .map(|l| l["contact:".len()..].trim().to_string())
        .collect()
}

fn query(d: &Daemon, user: &str, password: &str) -> Vec<String> {
    let f = inf(d, &format!("q-{user}.csv"), &[&format!("{user};0;0")]);
    let r = sipp_ok(d, "query.xml", &["-inf", &f, "-au", user, "-ap", password]);
    contacts_in_last_200(&r.messages)
}

fn register(
    d: &Daemon,
    user: &str,
    password: &str,
    port: u16,
    expires: u32,
    extra: &[&str],
) -> SippRun {
    let f = inf(
        d,
        &format!("r-{user}-{port}-{expires}.csv"),
        &[&format!("{user};{port};{expires}")],
    );
    let mut args = vec!["-inf", f.as_str(), "-au", user, "-ap", password];
    args.extend_from_slice(extra);
    sipp_ok(d, "register.xml", &args)
}

#[test]
fn register_md5_challenge_then_200() {
    let d = Daemon::start(Options::default());
    register(&d, "alice", "alice-secret", 7001, 600, &[]);
    let c = query(&d, "alice", "alice-secret");
    assert_eq!(c.len(), 1, "{c:?}");
    assert!(
        c[0].starts_with("<sip:alice@127.0.0.1:7001>;expires="),
        "{c:?}"
    );
    assert!(d.log().contains("binding stored aor=alice"));
}

#[test]
fn refresh_keeps_one_binding() {
    let d = Daemon::start(Options::default());
    register(&d, "alice", "alice-secret", 7002, 600, &[]);
    register(&d, "alice", "alice-secret", 7002, 1200, &[]);
    let c = query(&d, "alice", "alice-secret");
    assert_eq!(c.len(), 1, "{c:?}");
    let expires: u32 = c[0].rsplit("expires=").next().unwrap().parse().unwrap();
    assert!(expires > 600 && expires <= 1200, "{c:?}");
}

#[test]
fn several_contacts_per_address() {
    let d = Daemon::start(Options::default());
    register(&d, "alice", "alice-secret", 7003, 600, &[]);
    register(&d, "alice", "alice-secret", 7004, 600, &[]);
    assert_eq!(query(&d, "alice", "alice-secret").len(), 2);
}

#[test]
fn deregister_removes_binding() {
    let d = Daemon::start(Options::default());
    register(&d, "alice", "alice-secret", 7005, 600, &[]);
    register(&d, "alice", "alice-secret", 7006, 600, &[]);
    let f = inf(&d, "dereg.csv", &["alice;7005;0"]);
    sipp_ok(
        &d,
        "deregister.xml",
        &["-inf", &f, "-au", "alice", "-ap", "alice-secret"],
    );
    let c = query(&d, "alice", "alice-secret");
    assert_eq!(c.len(), 1, "{c:?}");
    assert!(c[0].contains(":7006>"), "{c:?}");
}

#[test]
fn contact_star_removes_all() {
    let d = Daemon::start(Options::default());
    register(&d, "alice", "alice-secret", 7007, 600, &[]);
    register(&d, "alice", "alice-secret", 7008, 600, &[]);
    let f = inf(&d, "star.csv", &["alice;0;0"]);
    sipp_ok(
        &d,
        "unregister_all.xml",
        &["-inf", &f, "-au", "alice", "-ap", "alice-secret"],
    );
    assert!(query(&d, "alice", "alice-secret").is_empty());
}

#[test]
fn register_over_tcp() {
    let d = Daemon::start(Options::default());
    register(&d, "bob", "bob-secret", 7009, 600, &["-t", "t1"]);
    assert_eq!(query(&d, "bob", "bob-secret").len(), 1);
}

#[test]
fn wrong_password_403_then_blocked() {
    let d = Daemon::start(Options {
        extra:
            "[auth]\nrequired = true\nmax_failures = 3\nfailure_window_secs = 60\nblock_secs = 3\n"
                .into(),
        ..Options::default()
    });
    let f = inf(&d, "bad.csv", &["alice;7010;600"]);
    for _ in 0..3 {
        sipp_ok(
            &d,
            "register_forbidden.xml",
            &["-inf", &f, "-au", "alice", "-ap", "wrong"],
        );
    }
    assert!(
        d.log()
            .contains("source blocked after repeated authentication failures"),
        "{}",
        d.log()
    );
    // Blocked: even the right password gets 403 without a challenge.
    sipp_ok(
        &d,
        "register_blocked.xml",
        &["-inf", &f, "-au", "alice", "-ap", "alice-secret"],
    );
    // Unknown users are treated exactly like wrong passwords (no enumeration).
    let d2 = Daemon::start(Options::default());
    let f2 = inf(&d2, "ghost.csv", &["ghost;7011;600"]);
    sipp_ok(
        &d2,
        "register_forbidden.xml",
        &["-inf", &f2, "-au", "ghost", "-ap", "x"],
    );
    // The block lifts after block_secs.
    std::thread::sleep(Duration::from_millis(3200));
    register(&d, "alice", "alice-secret", 7010, 600, &[]);
}

#[test]
fn too_short_expiry_423_with_min_expires() {
    let d = Daemon::start(Options::default());
    let f = inf(&d, "brief.csv", &["alice;7012;10"]);
    sipp_ok(
        &d,
        "register_too_brief.xml",
        &["-inf", &f, "-au", "alice", "-ap", "alice-secret"],
    );
    assert!(query(&d, "alice", "alice-secret").is_empty());
}

#[test]
fn binding_expires_and_is_gone() {
    let mut d = Daemon::start(Options {
        extra: "[registrar]\nmin_expires = 1\n".into(),
        ..Options::default()
    });
    register(&d, "alice", "alice-secret", 7013, 2, &[]);
    assert_eq!(query(&d, "alice", "alice-secret").len(), 1);
    d.wait_for_log("bindings expired", Duration::from_secs(10));
    assert!(query(&d, "alice", "alice-secret").is_empty());
}

#[test]
fn options_answered_200() {
    let d = Daemon::start(Options::default());
    sipp_ok(&d, "options.xml", &[]);
    sipp_ok(&d, "options.xml", &["-t", "t1"]);
}

#[test]
fn restart_keeps_all_bindings() {
    const N: usize = 50;
    let mut d = Daemon::start(Options {
        policy: format!("{POLICY}{}", many_users(N)),
        ..Options::default()
    });
    let rows: Vec<String> = (0..N).map(|i| format!("u{i};{};600", 8000 + i)).collect();
    let row_refs: Vec<&str> = rows.iter().map(String::as_str).collect();
    let f = inf(&d, "many.csv", &row_refs);
    // -au takes the user name from the injection file's first field.
    let n = N.to_string();
    let r = sipp(
        &d,
        "register.xml",
        &[
            "-inf", &f, "-au", "[field0]", "-ap", "pw", "-m", &n, "-r", "50",
        ],
    );
    assert!(r.success, "{}\n{}", r.errors, d.log());
    assert_eq!(d.log().matches("binding stored").count(), N);
    d.restart(); // kill -9, then start again on the same state
    assert!(
        d.log()
            .contains(&format!("registrations restored bindings={N}")),
        "{}",
        d.log()
    );
    for i in [0, N / 2, N - 1] {
        let c = query(&d, &format!("u{i}"), "pw");
        assert_eq!(c.len(), 1, "u{i}: {c:?}");
        assert!(c[0].contains(&format!(":{}>", 8000 + i)), "{c:?}");
    }
}
