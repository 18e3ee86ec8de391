//! Real softphones register to the daemon, headless, over loopback (see
//! /work/shared/INTEROP.md for what they need): baresip with MD5 (the default challenge),
//! linphone with SHA-256 where the config enables it (SIPp 3.6 has no SHA-256 digest, so
//! linphone is the SHA-256 proof).

mod common;

use common::*;
use std::process::Command;
use std::time::Duration;

const REGISTER_WITHIN: Duration = Duration::from_secs(20);

/// baresip, headless, registered as `user` (password `user-secret`) and answering calls by
/// itself; returns it and its SIP port once its registration got 200.
fn baresip(d: &Daemon, user: &str) -> (Proc, u16) {
    require("baresip");
    let dir = tempfile::tempdir_in(d.dir.path()).unwrap().keep();
    // baresip listens on sip_listen's port for UDP and TCP, and on the next one for TLS.
    let sip_port = free_ports(2);
    std::fs::write(
        dir.join("config"),
        format!(
            "poll_method epoll\nsip_listen 127.0.0.1:{sip_port}\nnet_interface 127.0.0.1\n\
             audio_source ausine,440\naudio_player aubridge,nullspk\nausrc_srate 48000\nausrc_channels 2\n\
             module_path /usr/lib/baresip/modules\nmodule g711.so\nmodule ausine.so\nmodule aubridge.so\n\
             module_app account.so\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("accounts"),
        format!(
            "<sip:{user}@{REALM}>;auth_pass={user}-secret;outbound=\"sip:127.0.0.1:{}\";regint=600;answermode=auto\n",
            d.port
        ),
    )
    .unwrap();
    let mut cmd = Command::new("baresip");
    // -t: baresip quits by itself after 60 s should the guard somehow not kill it.
    cmd.arg("-f").arg(&dir).args(["-t", "60"]);
    let mut phone = Proc::spawn("baresip", &mut cmd, dir.join("baresip.log"), false);
    phone.wait_for_log("200 OK", REGISTER_WITHIN);
    (phone, sip_port)
}

#[test]
fn baresip_registers() {
    let d = Daemon::start(Options::default());
    let (phone, sip_port) = baresip(&d, "alice");
    // baresip reports its registration as `alice@switchboard.local: {0/UDP/v4} 200 OK …`.
    assert!(
        phone.log_contains(&format!("alice@{REALM}: {{0/UDP/v4}} 200 OK")),
        "{}",
        phone.log()
    );
    // The daemon's side: alice has exactly one binding, baresip's (its Contact user is
    // not the AoR user, its port is sip_port).
    Sipp::new(&d, "query_one.xml")
        .row(row("alice", "alice-secret", sip_port, 0))
        .ok();
}

/// linphonec, headless, registering as `identity` (`{REALM}` in it and in `auth` stands for
/// the realm) with the `[auth_info_0]` lines `auth`, answering calls by itself (`-a`) and
/// logging its SIP messages (`-d 6`); returns it and its SIP port.
fn linphone(d: &Daemon, identity: &str, auth: &str) -> (Proc, u16) {
    let home = tempfile::tempdir_in(d.dir.path()).unwrap().keep();
    // linphonec opens no SIP socket unless this exists.
    std::fs::create_dir_all(home.join(".local/share/linphone")).unwrap();
    let sip_port = free_port();
    // RTP and RTCP.
    let rtp = free_ports(2);
    let rc = home.join("linphonerc");
    let identity = identity.replace("{REALM}", REALM);
    let auth = auth.replace("{REALM}", REALM);
    std::fs::write(
        &rc,
        format!(
            "[sip]\nsip_port={sip_port}\nsip_tcp_port=0\nsip_tls_port=0\nbind_address=127.0.0.1\ndefault_proxy=0\n\
             register_only_when_network_is_up=0\n[net]\nauto_net_state_mon=0\n[rtp]\naudio_rtp_port={rtp}-{rtp}\n\
             [video]\nenabled=0\ncapture=0\ndisplay=0\n\
             [proxy_0]\nreg_proxy=<sip:127.0.0.1:{};transport=udp>\nreg_identity={identity}\n\
             reg_expires=600\nreg_sendregister=1\npublish=0\n\
             [auth_info_0]\n{auth}",
            d.port
        ),
    )
    .unwrap();
    let mut cmd = Command::new("linphonec");
    cmd.args(["--pipe", "-c"])
        .arg(&rc)
        .args(["-a", "-d", "6"])
        .env("HOME", &home);
    // linphonec ignores SIGTERM; the guard SIGKILLs it. Its stdin stays open (piped) while
    // it runs: at end of input it would quit.
    let phone = Proc::spawn("linphonec", &mut cmd, home.join("linphone.log"), true);
    (phone, sip_port)
}

#[test]
fn linphone_registers_with_sha256_where_enabled() {
    require("linphonec");
    let d = Daemon::start(Options {
        policy: format!("{POLICY}{SHAUSER}"),
        extra: SHA256_OFFERED.into(),
        ..Options::default()
    });
    let (mut phone, sip_port) = linphone(
        &d,
        "\"SHA user\" <sip:shauser@{REALM}>",
        "username=shauser\npasswd=sha-secret\nrealm={REALM}\ndomain={REALM}\nalgorithm=SHA-256\n",
    );
    phone.wait_for_log("to [LinphoneRegistrationOk]", REGISTER_WITHIN);
    let log = phone.log();
    assert!(
        !log.contains("to [LinphoneRegistrationFailed]"),
        "linphone failed a registration first:\n{log}"
    );
    // The config offers SHA-256 first, then MD5 (the same to everyone); shauser may only
    // use SHA-256, and linphone answered with it.
    let challenges: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("WWW-Authenticate:"))
        .collect();
    assert!(!challenges.is_empty(), "{log}");
    assert!(
        challenges[0].contains("algorithm=SHA-256"),
        "{challenges:?}"
    );
    let answers: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("Authorization:"))
        .collect();
    assert!(
        answers.iter().any(|a| a.contains("algorithm=SHA-256")),
        "{answers:?}\n{log}"
    );
    // The daemon's side.
    let dl = d.log();
    assert!(dl.contains("binding stored aor=shauser"), "{dl}");
    assert!(dl.contains(&format!("source=127.0.0.1:{sip_port}")), "{dl}");
}

/// baresip as a real softphone that answers by itself: a SIPp caller's call is routed to
/// it, answered, and hung up through the proxy.
#[test]
fn baresip_answers_a_routed_call() {
    let mut d = Daemon::start(Options::default());
    let (phone, sip_port) = baresip(&d, "bob");
    let call = Sipp::new(&d, "call_answered.xml")
        .row(call_row("alice", "alice-secret", "1002", "1000"))
        .auth_uri(&format!("1002@{REALM}"))
        .run();
    assert!(
        call.success,
        "{}\ndaemon log:\n{}\nbaresip log:\n{}",
        call.report(),
        d.log(),
        phone.log()
    );
    assert_eq!(call.finals(), vec![200]);
    // The 200 came from baresip (its Contact), through the proxy.
    let contact = call.logged("answered contact").join(" ");
    assert!(contact.contains(&format!(":{sip_port}")), "{contact}");
    d.wait_for_log("call ended", Duration::from_secs(5));
    assert!(d.log_contains("answered_by=bob at"), "{}", d.log());
}

/// Config sections that probe answered calls every 2 s.
const PROBES: &str = "[routing]\ndialog_probe_secs = 2\n";

/// bob's status in a call, as the admin API shows it.
fn bob_status(d: &Daemon) -> String {
    let (code, body) = admin_api(d, "GET", "/v1/presence/bob", "");
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["call_status"].as_str().unwrap_or("").to_string()
}

/// alice (SIPp) calls bob, whose `phone` answers by itself; the daemon probes both ends
/// every 2 s with in-dialog OPTIONS whose CSeq is the caller's last (the INVITE's). The
/// phone answers them as one that still has the call, so the call stays up; once the
/// phone is killed mid-call the probes go unanswered and the call ends: bob free again,
/// alice hung up by the daemon's BYE.
fn probed_call_until_the_phone_is_gone(d: &Daemon, mut phone: Proc) {
    let caller = probed_call(d);
    wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        (bob_status(d) == "busy").then_some(())
    })
    .unwrap_or_else(|| panic!("bob never busy\n{}\n{}", d.log(), phone.log()));
    // Three rounds of probes: the phone still has the call.
    std::thread::sleep(Duration::from_secs(7));
    assert_eq!(bob_status(d), "busy", "{}\n{}", d.log(), phone.log());
    assert!(!d.log_contains("answered call lost"), "{}", d.log());
    phone.kill();
    wait_until(
        Duration::from_secs(2 + 32 + 8),
        Duration::from_millis(200),
        || (bob_status(d) == "free").then_some(()),
    )
    .unwrap_or_else(|| panic!("bob still busy\n{}", d.log()));
    let r = caller.finish(Duration::from_secs(30));
    assert!(r.success, "{}\ndaemon log:\n{}", r.report(), d.log());
    assert!(r.logged("probe cseq").len() >= 3, "{}", r.report());
    assert_eq!(r.logged("bye reason").len(), 1, "{}", r.report());
    assert!(
        d.log_contains("answered call lost") && d.log_contains("side=\"callee\""),
        "{}",
        d.log()
    );
}

#[test]
fn baresip_keeps_a_probed_call_until_it_is_gone() {
    let d = Daemon::start(Options::with(PROBES));
    let (phone, _) = baresip(&d, "bob");
    probed_call_until_the_phone_is_gone(&d, phone);
}

#[test]
fn linphone_keeps_a_probed_call_until_it_is_gone() {
    require("linphonec");
    let d = Daemon::start(Options::with(PROBES));
    // bob, MD5 (the default challenge).
    let (mut phone, _) = linphone(
        &d,
        "\"Bob\" <sip:bob@{REALM}>",
        "username=bob\npasswd=bob-secret\nrealm={REALM}\ndomain={REALM}\n",
    );
    phone.wait_for_log("to [LinphoneRegistrationOk]", REGISTER_WITHIN);
    probed_call_until_the_phone_is_gone(&d, phone);
}
