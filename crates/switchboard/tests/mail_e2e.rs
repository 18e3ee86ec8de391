//! Missed-call mail end to end: the real daemon with `[mail]` pointing at a loopback SMTP
//! server the test starts (Debian's python3-aiosmtpd, writing each message into a Maildir),
//! SIPp callers and callees. The relay is down when the first missed call comes in: its
//! mail arrives once the relay is up (retry). Then one call per setting: "all" and "direct"
//! get a mail for a missed direct call, "disabled" and "teams" none; a missed team call
//! mails its "teams" member and not its "direct" one. A notice waiting for a relay that is
//! down survives `kill -9` and is sent by the restarted daemon.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The Python that has aiosmtpd (Debian's: a python3 earlier in PATH may lack it).
const PYTHON: &str = "/usr/bin/python3";

fn policy() -> String {
    let person = |id: &str, ext: &str, setting: &str| {
        format!(
            "[users.{id}]\nextension = \"{ext}\"\nring_time = 2\nno_answer = \"hangup\"\n\
             email = \"{id}@example.com\"\nmissed_call_email = \"{setting}\"\n\
             [users.{id}.sip]\npassword = \"{id}-secret\"\nalgorithms = [\"md5\"]\n\n"
        )
    };
    let mut p = String::from(
        "[users.alice]\nextension = \"1001\"\n[users.alice.sip]\npassword = \"alice-secret\"\nalgorithms = [\"md5\"]\n\n",
    );
    p += &person("bob", "1002", "all");
    p += &person("carol", "1003", "direct");
    p += &person("dave", "1004", "disabled");
    p += &person("erin", "1005", "teams");
    p += &person("frank", "1006", "direct");
    p += "[teams.sales]\nname = \"Sales\"\nextension = \"2000\"\nmembers = [\"erin\", \"frank\"]\n\
          strategy = \"ring_all\"\nring_time = 2\nno_answer = \"hangup\"\n";
    p
}

/// The SMTP sink: aiosmtpd's Mailbox handler, one file per message under `dir/new`.
fn smtp_sink(dir: &Path, port: u16) -> Proc {
    require(PYTHON);
    let maildir = dir.join("maildir");
    let mut cmd = Command::new(PYTHON);
    cmd.args(["-m", "aiosmtpd", "-n", "-l"])
        .arg(format!("127.0.0.1:{port}"))
        .args(["-c", "aiosmtpd.handlers.Mailbox"])
        .arg(&maildir);
    let p = Proc::spawn("aiosmtpd", &mut cmd, dir.join("aiosmtpd.log"), false);
    // Up once it accepts connections.
    let up = wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    assert!(up.is_some(), "aiosmtpd did not listen:\n{}", p.log());
    p
}

/// Every message the sink holds, as text.
fn mails(dir: &Path) -> Vec<String> {
    let new: PathBuf = dir.join("maildir").join("new");
    let Ok(entries) = std::fs::read_dir(new) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .collect()
}

/// The messages to `who@example.com`.
fn mails_to(dir: &Path, who: &str) -> Vec<String> {
    let to = format!("To: {who}@example.com");
    mails(dir)
        .into_iter()
        .filter(|m| m.lines().any(|l| l.trim() == to))
        .collect()
}

/// Waits (bounded) for a mail to `who`.
fn wait_mail(d: &Daemon, dir: &Path, who: &str) -> String {
    let m = wait_until(Duration::from_secs(20), Duration::from_millis(100), || {
        mails_to(dir, who).into_iter().next()
    });
    m.unwrap_or_else(|| panic!("no mail to {who}; mails: {:?}\n{}", mails(dir), d.log()))
}

/// Alice calls `dialled`, which rings out unanswered (480 or 408 when it gives up).
fn missed_call(d: &Daemon, dialled: &str) {
    let r = Sipp::new(d, "call_expect_final.xml")
        .row(call_row("alice", "alice-secret", dialled, ""))
        .auth_uri(&format!("{dialled}@{REALM}"))
        .run();
    assert!(r.success, "{}\ndaemon log:\n{}", r.report(), d.log());
    let code = r.finals().last().copied().unwrap_or(0);
    assert!((400..700).contains(&code), "{}", r.report());
}

/// The daemon with a mail relay on a port where nothing listens yet (retries after
/// `retry_first` s, doubling to `retry_max`), after a missed call to bob whose mail failed
/// once: the daemon, the relay's port, and the directory its sink will write to.
fn missed_while_the_relay_is_down(
    retry_first: u64,
    retry_max: u64,
) -> (Daemon, u16, tempfile::TempDir) {
    let smtp_port = free_port();
    let sink_dir = tempfile::Builder::new()
        .prefix("switchboard-mail-")
        .tempdir()
        .unwrap();
    let mut d = Daemon::start(Options {
        policy: policy(),
        extra: format!(
            "[mail]\nrelay = \"127.0.0.1\"\nport = {smtp_port}\nfrom = \"switchboard@example.com\"\n\
             retry_first_secs = {retry_first}\nretry_max_secs = {retry_max}\n"
        ),
        ..Options::default()
    });
    missed_call(&d, "1002");
    d.wait_for_log(
        "missed-call mail not sent: will retry",
        Duration::from_secs(10),
    );
    (d, smtp_port, sink_dir)
}

#[test]
fn missed_calls_are_mailed_as_each_person_asked_and_retried_until_the_relay_is_up() {
    // The relay is down: bob's mail waits and is retried.
    let (d, smtp_port, sink_dir) = missed_while_the_relay_is_down(1, 2);
    let sink = smtp_sink(sink_dir.path(), smtp_port);
    let bob = wait_mail(&d, sink_dir.path(), "bob");
    assert!(
        bob.contains("Subject: Missed call from alice (1001)"),
        "{bob}"
    );
    assert!(bob.contains("From: switchboard@example.com"), "{bob}");
    assert!(bob.contains("Dialled: 1002"), "{bob}");
    assert!(bob.contains("Outcome: missed"), "{bob}");

    // "direct" gets its direct call; "disabled" and "teams" get none for theirs.
    missed_call(&d, "1003");
    wait_mail(&d, sink_dir.path(), "carol");
    missed_call(&d, "1004");
    missed_call(&d, "1005");

    // A team call rings erin ("teams") and frank ("direct"); only erin is mailed.
    let erin = Uas::start("uas_ring_cancelled.xml", 1, &[]);
    erin.register(&d, "erin", "erin-secret");
    let frank = Uas::start("uas_ring_cancelled.xml", 1, &[]);
    frank.register(&d, "frank", "frank-secret");
    missed_call(&d, "2000");
    let limit = Duration::from_secs(40);
    assert!(erin.finish(limit).success, "{}", d.log());
    assert!(frank.finish(limit).success, "{}", d.log());
    let team = wait_mail(&d, sink_dir.path(), "erin");
    assert!(team.contains("Dialled: 2000 (team Sales)"), "{team}");

    // Every notice is out of the outbox once the team's mail is: nothing more comes.
    std::thread::sleep(Duration::from_secs(2));
    for (who, n) in [
        ("bob", 1),
        ("carol", 1),
        ("dave", 0),
        ("erin", 1),
        ("frank", 0),
    ] {
        assert_eq!(
            mails_to(sink_dir.path(), who).len(),
            n,
            "{who}: {:?}",
            mails(sink_dir.path())
        );
    }
    assert_eq!(mails(sink_dir.path()).len(), 3);
    drop(sink);
}

#[test]
fn a_notice_queued_while_the_relay_is_down_survives_kill_9() {
    // A first retry an hour away: this daemon will not try again before it is killed.
    let (mut d, smtp_port, sink_dir) = missed_while_the_relay_is_down(3600, 3600);
    let sink = smtp_sink(sink_dir.path(), smtp_port);
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        mails(sink_dir.path()).is_empty(),
        "{:?}",
        mails(sink_dir.path())
    );

    // kill -9 and start again: the notice is still in the store's outbox and goes out.
    d.restart();
    let bob = wait_mail(&d, sink_dir.path(), "bob");
    assert!(bob.contains("Dialled: 1002"), "{bob}");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(mails(sink_dir.path()).len(), 1);
    drop(sink);
}
