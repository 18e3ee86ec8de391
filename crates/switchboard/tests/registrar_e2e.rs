//! The registrar (RFC 3261 §10) against SIPp and raw messages over loopback: digest
//! challenge and response, refresh, de-registration, `Contact: *`, queries, wrong passwords
//! and throttling, 423, expiry, OPTIONS, TCP, the AoR's domain forms.
//!
//! Contact ports in these tests are only names in bindings: nothing listens there and the
//! registrar never sends to them.

mod common;

use common::*;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(3);

fn register(d: &Daemon, user: &str, password: &str, port: u16, expires: u32) -> SippRun {
    Sipp::new(d, "register.xml")
        .row(row(user, password, port, expires))
        .ok()
}

/// The scenario checks that the query's 200 lists exactly one binding, on `port`.
fn expect_only(d: &Daemon, user: &str, password: &str, port: u16) {
    Sipp::new(d, "query_one.xml")
        .row(row(user, password, port, 0))
        .ok();
}

/// The scenario checks that the query's 200 lists no binding.
fn expect_none(d: &Daemon, user: &str, password: &str) {
    Sipp::new(d, "query_none.xml")
        .row(row(user, password, 0, 0))
        .ok();
}

#[test]
fn every_listener_is_logged_before_ready() {
    let d = Daemon::start(Options::default());
    let log = d.log();
    let ready = log.find("switchboard ready").unwrap();
    for transport in ["udp", "tcp"] {
        let line = log
            .lines()
            .find(|l| {
                l.contains("listening")
                    && (l.contains(&format!("transport={transport} "))
                        || l.contains(&format!("transport=\"{transport}\" ")))
                    && l.contains(&format!("addr=127.0.0.1:{}", d.port))
            })
            .unwrap_or_else(|| panic!("no `listening` line for {transport}:\n{log}"));
        assert!(
            log.find(line).unwrap() < ready,
            "{transport} listener logged after ready:\n{log}"
        );
    }
}

#[test]
fn register_md5_challenge_then_200() {
    let d = Daemon::start(Options::default());
    // The scenario checks the 401's challenge (Digest, realm, qop="auth", MD5, nonce) and
    // that the 200 lists a binding with ;expires=.
    let r = register(&d, "alice", "alice-secret", 7001, 600);
    assert_eq!(r.statuses(), vec![401, 200], "{}", r.report());
    let c = r.contacts_in_last_200();
    assert_eq!(c.len(), 1, "{c:?}");
    assert!(c[0].starts_with("<sip:alice@127.0.0.1:7001>"), "{c:?}");
    assert_eq!(expires_of(&c[0]), Some(600), "{c:?}");
    // A query (REGISTER without Contact) lists it too, and nothing else.
    expect_only(&d, "alice", "alice-secret", 7001);
    // Bob's address is a different one.
    expect_none(&d, "bob", "bob-secret");
}

#[test]
fn refresh_keeps_one_binding() {
    let d = Daemon::start(Options::default());
    // Register, then refresh within the same Call-ID with a longer expiry: the scenario
    // checks the refresh's 200 lists exactly one binding, ours, with the new expiry.
    Sipp::new(&d, "refresh.xml")
        .row(row("alice", "alice-secret", 7002, 600).extra(1200))
        .ok();
    expect_only(&d, "alice", "alice-secret", 7002);
    // A new registration (new Call-ID) of the same contact replaces it as well.
    let r = register(&d, "alice", "alice-secret", 7002, 900);
    let c = r.contacts_in_last_200();
    assert_eq!(c.len(), 1, "{c:?}");
    assert_eq!(expires_of(&c[0]), Some(900), "{c:?}");
    expect_only(&d, "alice", "alice-secret", 7002);
}

#[test]
fn several_contacts_per_address() {
    let d = Daemon::start(Options::default());
    register(&d, "alice", "alice-secret", 7003, 600);
    let r = register(&d, "alice", "alice-secret", 7004, 600);
    // The 200 lists every current binding (§10.3 step 8).
    let c = r.contacts_in_last_200();
    assert_eq!(c.len(), 2, "{c:?}");
    assert!(c.iter().any(|c| c.contains("@127.0.0.1:7003>")), "{c:?}");
    assert!(c.iter().any(|c| c.contains("@127.0.0.1:7004>")), "{c:?}");
    assert_eq!(query(&d, "alice", "alice-secret").len(), 2);
    // query_one.xml notices the second binding.
    Sipp::new(&d, "query_one.xml")
        .row(row("alice", "alice-secret", 7003, 0))
        .fails();
}

#[test]
fn deregister_removes_binding() {
    let d = Daemon::start(Options::default());
    register(&d, "alice", "alice-secret", 7005, 600);
    register(&d, "alice", "alice-secret", 7006, 600);
    Sipp::new(&d, "deregister.xml")
        .row(row("alice", "alice-secret", 7005, 0))
        .ok();
    expect_only(&d, "alice", "alice-secret", 7006);
    Sipp::new(&d, "deregister.xml")
        .row(row("alice", "alice-secret", 7006, 0))
        .ok();
    expect_none(&d, "alice", "alice-secret");
}

#[test]
fn contact_star_removes_all() {
    let d = Daemon::start(Options::default());
    register(&d, "alice", "alice-secret", 7007, 600);
    register(&d, "alice", "alice-secret", 7008, 600);
    register(&d, "bob", "bob-secret", 7009, 600);
    // The scenario checks its 200 lists no Contact.
    Sipp::new(&d, "unregister_all.xml")
        .row(row("alice", "alice-secret", 0, 0))
        .ok();
    expect_none(&d, "alice", "alice-secret");
    // Only alice's bindings went.
    expect_only(&d, "bob", "bob-secret", 7009);
}

#[test]
fn contact_star_with_nonzero_expiry_is_400() {
    // RFC 3261 §10.3 step 6: `*` is only valid with Expires: 0 (and alone). Without
    // authentication the registrar's own checks are reachable with raw messages.
    let d = Daemon::start(Options {
        auth: false,
        ..Options::default()
    });
    let text = request("REGISTER", "Contact: *\r\nExpires: 3600\r\n");
    let r = udp_exchange(d.addr(), text.as_bytes(), WAIT).expect("an answer");
    assert_eq!(status_of(&r), 400, "{r}");
    let text = request(
        "REGISTER",
        "Contact: *\r\nContact: <sip:alice@127.0.0.1:7010>\r\nExpires: 0\r\n",
    );
    let r = udp_exchange(d.addr(), text.as_bytes(), WAIT).expect("an answer");
    assert_eq!(status_of(&r), 400, "{r}");
}

/// A REGISTER without credentials from 127.0.0.1: 401 while the source may try, 403 while
/// it is blocked.
fn probe(d: &Daemon) -> u16 {
    udp_exchange(d.addr(), register_request("alice").as_bytes(), WAIT)
        .map(|r| status_of(&r))
        .unwrap_or(0)
}

#[test]
fn wrong_password_403_then_blocked() {
    const BLOCK: Duration = Duration::from_secs(3);
    let d = Daemon::start(Options::with(&format!(
        "[auth]\nrequired = true\nmax_failures = 3\nfailure_window_secs = 60\nblock_secs = {}\n",
        BLOCK.as_secs()
    )));
    let bad = row("alice", "wrong", 7011, 600);
    // Each wrong answer to the challenge: 403 (the scenario fails on anything else).
    for _ in 0..2 {
        Sipp::new(&d, "register_forbidden.xml")
            .row(bad.clone())
            .ok();
    }
    assert_eq!(probe(&d), 401, "blocked before max_failures:\n{}", d.log());
    Sipp::new(&d, "register_forbidden.xml")
        .row(bad.clone())
        .ok();
    let blocked_at = Instant::now();
    // Blocked: 403 at once without a challenge, even with the right password.
    Sipp::new(&d, "register_blocked.xml")
        .row(row("alice", "alice-secret", 7011, 600))
        .ok();
    assert_eq!(probe(&d), 403);
    expect_blocked_then_free(&d, blocked_at, BLOCK);
    // Free again: the right password registers.
    register(&d, "alice", "alice-secret", 7011, 600);
    expect_only(&d, "alice", "alice-secret", 7011);
}

/// Waits (bounded) for the block to lift; it must not lift much before `block`.
fn expect_blocked_then_free(d: &Daemon, blocked_at: Instant, block: Duration) {
    let lifted = wait_until(
        block + Duration::from_secs(5),
        Duration::from_millis(250),
        || match probe(d) {
            401 => Some(blocked_at.elapsed()),
            403 => None,
            other => panic!("probe answered {other} while waiting for the block to lift"),
        },
    )
    .unwrap_or_else(|| {
        panic!(
            "still blocked {:?} after the block began\n{}",
            block + Duration::from_secs(5),
            d.log()
        )
    });
    assert!(
        lifted + Duration::from_millis(500) >= block,
        "the block lifted after {lifted:?}, block_secs is {block:?}"
    );
}

#[test]
fn unknown_user_gets_the_same_challenge_and_403() {
    let d = Daemon::start(Options::default());
    let known = udp_exchange(d.addr(), register_request("alice").as_bytes(), WAIT).unwrap();
    let ghost = udp_exchange(d.addr(), register_request("ghost").as_bytes(), WAIT).unwrap();
    assert_eq!(status_of(&known), 401, "{known}");
    assert_eq!(status_of(&ghost), 401, "{ghost}");
    let shape = |resp: &str| -> Vec<Vec<(String, String)>> {
        header_values(resp, "WWW-Authenticate")
            .iter()
            .map(|c| {
                challenge_params(c)
                    .into_iter()
                    .map(|(k, v)| {
                        let v = if matches!(k.as_str(), "nonce" | "opaque") {
                            format!("<{} chars>", v.len())
                        } else {
                            v
                        };
                        (k, v)
                    })
                    .collect()
            })
            .collect()
    };
    // Same headers, same parameters in the same order, same lengths of nonce: nothing
    // tells an unknown user from a known one.
    assert_eq!(shape(&known), shape(&ghost), "\n{known}\n{ghost}");
    let nonce = |r: &str| challenge_param(&header_values(r, "WWW-Authenticate")[0], "nonce");
    assert_ne!(nonce(&known), nonce(&ghost), "nonces must be fresh");
    // And the answer to the challenge is a 403, as for a wrong password.
    Sipp::new(&d, "register_forbidden.xml")
        .row(row("ghost", "whatever", 7012, 600))
        .ok();
}

/// The `algorithm` of each challenge of the 401 a REGISTER for `user` gets, checking each
/// is a well-formed digest challenge of our realm.
fn challenge_algorithms(d: &Daemon, user: &str) -> Vec<String> {
    let r = udp_exchange(d.addr(), register_request(user).as_bytes(), WAIT).unwrap();
    assert_eq!(status_of(&r), 401, "{r}");
    let challenges = header_values(&r, "WWW-Authenticate");
    for c in &challenges {
        assert!(c.trim_start().starts_with("Digest "), "{user}: {c}");
        assert_eq!(
            challenge_param(c, "realm").as_deref(),
            Some(REALM),
            "{user}: {c}"
        );
        assert_eq!(
            challenge_param(c, "qop").as_deref(),
            Some("auth"),
            "{user}: {c}"
        );
        assert!(
            challenge_param(c, "nonce").is_some_and(|n| !n.is_empty()),
            "{user}: {c}"
        );
    }
    challenges
        .iter()
        .map(|c| challenge_param(c, "algorithm").unwrap_or_default())
        .collect()
}

#[test]
fn by_default_everyone_gets_one_md5_challenge() {
    let d = Daemon::start(Options {
        policy: format!("{POLICY}{CAROL}{DAVE}"),
        ..Options::default()
    });
    // Whatever the user may answer with (MD5 only, SHA-256 preferred, the policy's
    // default), and for a name that does not exist: one challenge, MD5.
    for user in ["alice", "carol", "dave", "ghost"] {
        assert_eq!(challenge_algorithms(&d, user), ["MD5"], "{user}");
    }
}

#[test]
fn sha256_is_offered_to_everyone_where_enabled() {
    let d = Daemon::start(Options {
        policy: format!("{POLICY}{SHAUSER}{CAROL}"),
        extra: SHA256_OFFERED.into(),
        ..Options::default()
    });
    // RFC 8760: one challenge per algorithm, in the configured order, the same for all.
    for user in ["alice", "shauser", "carol", "ghost"] {
        assert_eq!(challenge_algorithms(&d, user), ["SHA-256", "MD5"], "{user}");
    }
}

#[test]
fn a_user_who_could_never_authenticate_is_refused_by_check() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, format!("{POLICY}{SHAUSER}")).unwrap();
    let check = |extra: &str| {
        let config = dir.path().join("switchboard.toml");
        std::fs::write(
            &config,
            format!(
                "[sip]\nlisten = [\"udp:127.0.0.1:5060\"]\nrealm = \"{REALM}\"\n[policy]\npath = \"{}\"\n{extra}",
                policy.display()
            ),
        )
        .unwrap();
        std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .arg("check")
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap()
    };
    // The default config offers MD5 alone: shauser (SHA-256 only) could never register.
    let out = check("");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("users.shauser.sip.algorithms"), "{err}");
    assert!(
        err.contains(":18:14"),
        "the line and column of the list: {err}"
    );
    // Offering SHA-256 makes the same policy valid.
    let out = check(SHA256_OFFERED);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// sipsak and SIPp, which answer only one MD5 challenge (sipsak refuses any other
/// algorithm, SIPp takes the first challenge and does only MD5), register with the default
/// config, as users whose policy allows SHA-256 too.
#[test]
fn sipsak_and_sipp_register_with_the_default_config() {
    require("sipsak");
    let mut d = Daemon::start(Options {
        policy: format!("{POLICY}{CAROL}{DAVE}"),
        ..Options::default()
    });
    let contact_port = free_port();
    let out = std::process::Command::new("sipsak")
        .args(["-U", "-C"])
        .arg(format!("sip:dave@127.0.0.1:{contact_port}"))
        .arg("-s")
        .arg(format!("sip:dave@127.0.0.1:{}", d.port))
        .args([
            "-u",
            "dave",
            "-a",
            "dave-secret",
            "-x",
            "600",
            "-H",
            "127.0.0.1",
            "-i",
            "-vv",
        ])
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "sipsak failed:\n{said}\n{}", d.log());
    assert!(
        !said.contains("unsupported authentication algorithm"),
        "{said}"
    );
    d.wait_for_log("binding stored aor=dave", WAIT);
    // SIPp's REGISTER with [authentication]: 401, then 200 with the binding.
    let r = register(&d, "carol", "carol-secret", 7032, 600);
    assert_eq!(r.statuses(), vec![401, 200], "{}", r.report());
    expect_only(&d, "carol", "carol-secret", 7032);
}

#[test]
fn too_short_expiry_423_with_min_expires() {
    let d = Daemon::start(Options::with("[registrar]\nmin_expires = 60\n"));
    // The scenario checks the 423 carries Min-Expires: 60.
    Sipp::new(&d, "register_too_brief.xml")
        .row(row("alice", "alice-secret", 7013, 10).extra(60))
        .ok();
    expect_none(&d, "alice", "alice-secret");
    // The minimum itself is fine.
    register(&d, "alice", "alice-secret", 7013, 60);
    expect_only(&d, "alice", "alice-secret", 7013);
}

#[test]
fn long_expiry_is_cut_to_max() {
    let d = Daemon::start(Options::with(
        "[registrar]\nmin_expires = 60\nmax_expires = 3600\n",
    ));
    let r = register(&d, "alice", "alice-secret", 7014, 86400);
    let c = r.contacts_in_last_200();
    assert_eq!(c.len(), 1, "{c:?}");
    assert_eq!(expires_of(&c[0]), Some(3600), "{c:?}");
}

#[test]
fn binding_expires_and_is_gone() {
    let d = Daemon::start(Options::with("[registrar]\nmin_expires = 1\n"));
    let registered = Instant::now();
    let r = register(&d, "alice", "alice-secret", 7015, 2);
    assert_eq!(expires_of(&r.contacts_in_last_200()[0]), Some(2));
    expect_only(&d, "alice", "alice-secret", 7015);
    // Gone once its 2 s are up: poll with queries, bounded.
    let gone = wait_until(Duration::from_secs(8), Duration::from_millis(250), || {
        let q = Sipp::new(&d, "query_none.xml")
            .row(row("alice", "alice-secret", 0, 0))
            .run();
        q.success.then(|| registered.elapsed())
    })
    .unwrap_or_else(|| {
        panic!(
            "binding still listed 8 s after a 2 s registration\n{}",
            d.log()
        )
    });
    // `registered` was taken before the REGISTER was sent and `gone` after the query's 200
    // came back, so a binding that lived its full 2 s always measures at least 2 s.
    assert!(
        gone >= Duration::from_secs(2),
        "a binding registered for 2 s was gone after {gone:?} at most"
    );
}

#[test]
fn options_answered_200() {
    let d = Daemon::start(Options::default());
    // The scenario checks the Allow header lists REGISTER.
    Sipp::new(&d, "options.xml").ok();
    // The response mirrors the request as §8.2.6 requires.
    let text = request("OPTIONS", "");
    let r = udp_exchange(d.addr(), text.as_bytes(), WAIT).expect("an answer");
    assert_eq!(status_of(&r), 200, "{r}");
    for h in ["Via", "From", "Call-ID", "CSeq"] {
        let sent = header_values(&text, h);
        let got = header_values(&r, h);
        if h == "Via" {
            // rport filled in, received added (RFC 3581).
            assert!(got[0].starts_with("SIP/2.0/UDP 127.0.0.1:9;rport="), "{r}");
            assert!(got[0].contains(";branch=z9hG4bK"), "{r}");
        } else {
            assert_eq!(sent, got, "{h}:\n{r}");
        }
    }
    let to = header_values(&r, "To");
    assert!(
        to[0].starts_with("<sip:alice@switchboard.local>;tag="),
        "{r}"
    );
}

#[test]
fn tcp_register_and_options() {
    let d = Daemon::start(Options::default());
    Sipp::new(&d, "register.xml")
        .row(row("bob", "bob-secret", 7016, 600))
        .tcp()
        .ok();
    Sipp::new(&d, "query_one.xml")
        .row(row("bob", "bob-secret", 7016, 0))
        .tcp()
        .ok();
    Sipp::new(&d, "options.xml").tcp().ok();
    // A raw OPTIONS over its own connection.
    let text = request("OPTIONS", "").replace("SIP/2.0/UDP", "SIP/2.0/TCP");
    let r = tcp_exchange(d.addr(), text.as_bytes(), WAIT).expect("an answer over TCP");
    assert_eq!(status_of(&r), 200, "{r}");
    // The binding made over TCP is visible over UDP.
    expect_only(&d, "bob", "bob-secret", 7016);
}

#[test]
fn register_for_the_ip_domain_is_the_same_address() {
    let d = Daemon::start(Options::default());
    // sip:alice@127.0.0.1 — the server's own address is one of its domains.
    Sipp::new(&d, "register.xml")
        .row(row("alice", "alice-secret", 7017, 600))
        .domain("127.0.0.1")
        .ok();
    expect_only(&d, "alice", "alice-secret", 7017);
}

#[test]
fn register_for_a_foreign_domain_is_refused() {
    let d = Daemon::start(Options::default());
    let text = register_request("alice").replace("switchboard.local", "example.com");
    let r = udp_exchange(d.addr(), text.as_bytes(), WAIT).expect("an answer");
    assert!(matches!(status_of(&r), 403 | 404), "{r}");
    expect_none(&d, "alice", "alice-secret");
}
