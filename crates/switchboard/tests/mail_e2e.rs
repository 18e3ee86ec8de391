//! Missed-call mail end to end: the real daemon with `[mail]` pointing at a loopback SMTP
//! server the test starts (Debian's python3-aiosmtpd, writing each message into a Maildir),
//! SIPp callers and callees. The relay is down when the first missed call comes in: its
//! mail arrives once the relay is up (retry). Then one call per setting: "all" and "direct"
//! get a mail for a missed direct call, "disabled" and "teams" none; a missed team call
//! mails its "teams" member and not its "direct" one. A notice waiting for a relay that is
//! down survives `kill -9` and is sent by the restarted daemon.
//!
//! Over TLS: a relay the test starts with aiosmtpd's STARTTLS (or implicit TLS) and AUTH,
//! with a certificate made by the test (Debian's openssl: a CA of its own and the relay's
//! certificate for 127.0.0.1): a missed call's mail arrives encrypted and authenticated
//! when the daemon trusts that CA (`ca_file`); a relay whose certificate it does not trust
//! gets nothing, the log says why, and the notice waits in the outbox until the daemon is
//! told to trust it. `/metrics` counts the mails sent, failed and waiting, and the records;
//! a full outbox (`queue = 1`) drops the newest notice and counts it.

mod common;

use common::mail::{mails, smtp_sink, PYTHON};
use common::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Debian's openssl, which makes the test's certificates.
const OPENSSL: &str = "/usr/bin/openssl";

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

// ---------------------------------------------------------------------------------------
// Over TLS

/// A CA of the test's own and the relay's certificate for 127.0.0.1 (and localhost), signed
/// by it: `ca.pem`, `relay.pem`, `relay.key` in `dir`.
fn certificates(dir: &Path) {
    require(OPENSSL);
    let run = |args: &[&str]| {
        let out = Command::new(OPENSSL)
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=Switchboard mail test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign",
    ]);
    run(&ca);
    let mut csr = vec!["req"];
    csr.extend(ec);
    csr.extend([
        "-keyout",
        "relay.key",
        "-out",
        "relay.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    run(&csr);
    std::fs::write(
        dir.join("relay.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
         keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "relay.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "relay.pem",
        "-days",
        "2",
        "-extfile",
        "relay.ext",
    ]);
}

/// The relay over TLS: aiosmtpd's controller with STARTTLS required (`starttls`) or TLS
/// from the first byte (`tls`), AUTH required (user `switchboard`, password `relay-secret`,
/// only over TLS), each message saved in a Maildir with how it came (`X-Came: tls=…
/// auth=…`).
const TLS_RELAY: &str = r#"
import ssl, sys, time
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import AuthResult, LoginPassword

host, port, cert, key, maildir, mode = sys.argv[1:7]
context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
context.load_cert_chain(cert, key)

def authenticator(server, session, envelope, mechanism, data):
    ok = (isinstance(data, LoginPassword) and data.login == b"switchboard"
          and data.password == b"relay-secret")
    print("AUTH", mechanism, "ok" if ok else "refused", flush=True)
    return AuthResult(success=ok)

class Saved(Mailbox):
    async def handle_DATA(self, server, session, envelope):
        m = self.prepare_message(session, envelope)
        tls = server.transport.get_extra_info("ssl_object") is not None
        m["X-Came"] = f"tls={'yes' if tls else 'no'} auth={session.authenticated}"
        self.handle_message(m)
        return "250 OK"

kwargs = dict(auth_required=True, authenticator=authenticator)
if mode == "starttls":
    kwargs.update(tls_context=context, require_starttls=True, auth_require_tls=True)
    controller = Controller(Saved(maildir), hostname=host, port=int(port),
                            server_kwargs=kwargs)
else:
    # aiosmtpd counts only STARTTLS as TLS for auth_require_tls: here the whole
    # connection is TLS, and X-Came says so.
    kwargs.update(auth_require_tls=False)
    controller = Controller(Saved(maildir), hostname=host, port=int(port),
                            ssl_context=context, server_kwargs=kwargs)
controller.start()
print("relay listening", mode, flush=True)
while True:
    time.sleep(3600)
"#;

/// Starts the TLS relay on `port` (certificates in `dir`, see [`certificates`]).
fn tls_relay(dir: &Path, port: u16, mode: &str) -> Proc {
    require(PYTHON);
    let script = dir.join("relay.py");
    std::fs::write(&script, TLS_RELAY).unwrap();
    let mut cmd = Command::new(PYTHON);
    cmd.arg(&script)
        .arg("127.0.0.1")
        .arg(port.to_string())
        .arg(dir.join("relay.pem"))
        .arg(dir.join("relay.key"))
        .arg(dir.join("maildir"))
        .arg(mode);
    let mut p = Proc::spawn("tls-relay", &mut cmd, dir.join("relay.log"), false);
    p.wait_for_log("relay listening", Duration::from_secs(15));
    p
}

/// `[mail]` for the TLS relay on `port`, trusting `ca` (None: the system's CAs only).
fn tls_mail(port: u16, tls: &str, ca: Option<&Path>) -> String {
    let ca = ca
        .map(|c| format!("ca_file = \"{}\"\n", c.display()))
        .unwrap_or_default();
    format!(
        "[mail]\nrelay = \"127.0.0.1\"\nport = {port}\ntls = \"{tls}\"\n{ca}\
         username = \"switchboard\"\npassword = \"relay-secret\"\n\
         from = \"switchboard@example.com\"\nretry_first_secs = 1\nretry_max_secs = 2\n"
    )
}

/// A daemon mailing the TLS relay `mode` the test starts, trusting its CA: bob's missed
/// call arrives encrypted and authenticated, and `/metrics` counts it.
fn mail_arrives_over(mode: &str) {
    let dir = tempfile::Builder::new()
        .prefix("switchboard-mail-tls-")
        .tempdir()
        .unwrap();
    certificates(dir.path());
    let port = free_port();
    let relay = tls_relay(dir.path(), port, mode);
    let d = Daemon::start(Options {
        policy: policy(),
        extra: tls_mail(port, mode, Some(&dir.path().join("ca.pem"))),
        ..Options::default()
    });
    assert!(
        d.log_contains(&format!(
            "missed-call mail on relay=127.0.0.1 port={port} tls={mode}"
        )),
        "{}",
        d.log()
    );
    missed_call(&d, "1002");
    let bob = wait_mail(&d, dir.path(), "bob");
    assert!(bob.contains("X-Came: tls=yes auth=True"), "{bob}");
    assert!(bob.contains("Dialled: 1002"), "{bob}");
    assert!(relay.log_contains("AUTH PLAIN ok"), "{}", relay.log());
    wait_metric(&d, "switchboard_mails_total{result=\"sent\"}", 1);
    wait_metric(&d, "switchboard_mail_outbox_notices", 0);
    assert_eq!(metric(&d, "switchboard_mails_total{result=\"failed\"}"), 0);
    assert_eq!(metric(&d, "switchboard_mail_notices_queued_total"), 1);
    assert_eq!(
        metric(&d, "switchboard_call_records_total{outcome=\"missed\"}"),
        1
    );
}

#[test]
fn a_missed_call_is_mailed_over_starttls_with_credentials() {
    mail_arrives_over("starttls");
}

#[test]
fn a_missed_call_is_mailed_over_implicit_tls_with_credentials() {
    mail_arrives_over("tls");
}

#[test]
fn a_relay_whose_certificate_is_not_trusted_gets_nothing_and_the_notice_waits() {
    let dir = tempfile::Builder::new()
        .prefix("switchboard-mail-tls-")
        .tempdir()
        .unwrap();
    certificates(dir.path());
    let port = free_port();
    let relay = tls_relay(dir.path(), port, "starttls");
    // The system's CAs only: the relay's own CA is not among them.
    let mut d = Daemon::start(Options {
        policy: policy(),
        extra: tls_mail(port, "starttls", None),
        ..Options::default()
    });
    missed_call(&d, "1002");
    d.wait_for_log(
        "missed-call mail not sent: will retry",
        Duration::from_secs(10),
    );
    let log = d.log();
    let line = log
        .lines()
        .find(|l| l.contains("missed-call mail not sent"))
        .unwrap();
    assert!(
        line.contains("invalid peer certificate: UnknownIssuer")
            && line.contains("the relay's TLS certificate is not trusted"),
        "the log says why: {line}"
    );
    eprintln!("the daemon said: {line}");
    // Tried again (retry_first_secs = 1), never delivered, never authenticated.
    wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        (metric(&d, "switchboard_mails_total{result=\"failed\"}") >= 2).then_some(())
    })
    .expect("the relay is tried again");
    assert!(mails(dir.path()).is_empty(), "{:?}", mails(dir.path()));
    assert!(!relay.log_contains("AUTH"), "{}", relay.log());
    assert_eq!(metric(&d, "switchboard_mails_total{result=\"sent\"}"), 0);
    assert_eq!(
        metric(&d, "switchboard_mails_total{result=\"given_up\"}"),
        0
    );
    wait_metric(&d, "switchboard_mail_outbox_notices", 1);

    // Told to trust the relay's CA (and restarted): the notice that waited goes out.
    d.restart_with(&tls_mail(
        port,
        "starttls",
        Some(&dir.path().join("ca.pem")),
    ));
    let bob = wait_mail(&d, dir.path(), "bob");
    assert!(bob.contains("X-Came: tls=yes auth=True"), "{bob}");
    wait_metric(&d, "switchboard_mails_total{result=\"sent\"}", 1);
    wait_metric(&d, "switchboard_mail_outbox_notices", 0);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(mails(dir.path()).len(), 1);
}

#[test]
fn a_full_outbox_drops_the_newest_notice_and_metrics_count_it() {
    // Nothing listens at the relay's port; a queue of one; the first retry an hour away.
    let d = Daemon::start(Options {
        policy: policy(),
        extra: format!(
            "[mail]\nrelay = \"127.0.0.1\"\nport = {}\nfrom = \"switchboard@example.com\"\n\
             queue = 1\nretry_first_secs = 3600\nretry_max_secs = 3600\n",
            free_port()
        ),
        ..Options::default()
    });
    missed_call(&d, "1002");
    wait_metric(&d, "switchboard_mails_total{result=\"failed\"}", 1);
    missed_call(&d, "1003");
    // Two missed calls queued, the newer one dropped, the older still waiting.
    wait_metric(&d, "switchboard_mail_notices_dropped_total", 1);
    wait_metric(&d, "switchboard_mail_outbox_notices", 1);
    assert_eq!(metric(&d, "switchboard_mail_notices_queued_total"), 2);
    assert_eq!(metric(&d, "switchboard_mails_total{result=\"sent\"}"), 0);
    assert_eq!(
        metric(&d, "switchboard_call_records_total{outcome=\"missed\"}"),
        2
    );
    assert!(d.log_contains("missed-call mail queue full"), "{}", d.log());
}
