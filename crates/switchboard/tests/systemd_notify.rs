//! The daemon speaks systemd's notify protocol (Type=notify): READY=1 once it serves,
//! STOPPING=1 on SIGTERM, then a clean exit. systemd is not PID 1 on the test machines, so
//! the test plays systemd's part: it owns NOTIFY_SOCKET and sends the signal.

use std::io::Read;
use std::net::UdpSocket;
use std::os::unix::net::UnixDatagram;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn recv_until(sock: &UnixDatagram, want: &str, limit: Duration) -> Vec<String> {
    let deadline = Instant::now() + limit;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        if let Ok(n) = sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).to_string();
            let done = msg.lines().any(|l| l == want);
            seen.push(msg);
            if done {
                return seen;
            }
        }
    }
    panic!("no {want} within {limit:?}; got {seen:?}");
}

#[test]
fn ready_then_stopping_then_clean_exit() {
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    let port = free_udp_port();
    let config = dir.path().join("switchboard.toml");
    std::fs::write(
        &config,
        format!(
            "[sip]\nlisten = [\"udp:127.0.0.1:{port}\"]\nrealm = \"switchboard.local\"\n[api]\nlisten = \"\"\n\
             [store]\nstate_dir = \"{}\"\n",
            dir.path().join("state").display()
        ),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["run", "--config"])
        .arg(&config)
        .env("NOTIFY_SOCKET", &sock_path)
        .env_remove("STATE_DIRECTORY")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut guard = Guard(child);
    recv_until(&sock, "READY=1", Duration::from_secs(30));
    let pid = guard.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    recv_until(&sock, "STOPPING=1", Duration::from_secs(10));
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = guard.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "daemon did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    guard
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(status.success(), "exit status {status:?}; log:\n{stderr}");
    assert!(stderr.contains("switchboard stopped"), "{stderr}");
}

#[test]
fn unit_file_declares_notify_and_hardening() {
    let unit = include_str!("../../../systemd/switchboard.service");
    for line in [
        "Type=notify",
        "DynamicUser=yes",
        "StateDirectory=switchboard",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ExecReload=/bin/kill -HUP $MAINPID",
        // The media thread's real-time priority ([media] realtime_priority = 10).
        "LimitRTPRIO=10",
        "RestrictRealtime=no",
        "SystemCallFilter=sched_setscheduler",
    ] {
        assert!(unit.lines().any(|l| l.trim() == line), "missing {line}");
    }
    // systemd-analyze, where present, checks the unit's syntax.
    if let Ok(out) = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../systemd/switchboard.service"
        ))
        .output()
    {
        let text = String::from_utf8_lossy(&out.stderr);
        // Only syntax problems count: the binary path does not exist on a build machine.
        for l in text.lines() {
            assert!(
                !l.contains("Unknown key")
                    && !l.contains("Failed to parse")
                    && !l.contains("Invalid"),
                "systemd-analyze: {l}"
            );
        }
    }
}
