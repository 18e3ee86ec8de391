//! Harness of the end-to-end tests: the real daemon binary, real SIP peers, loopback only.
//!
//! Every process a test starts is owned by a guard that kills it on drop (also when the
//! test panics); every wait is bounded; each test has its own ports and directory.
#![allow(dead_code)]

use std::io::Write as _;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Users of the test policy. SIPp 3.6 only answers MD5 challenges, so SIPp's users are
/// MD5-only; `shauser` is SHA-256 only, for linphone.
pub const POLICY: &str = r#"
[users.alice]
extension = "1001"
[users.alice.sip]
password = "alice-secret"
algorithms = ["md5"]

[users.bob]
extension = "1002"
[users.bob.sip]
password = "bob-secret"
algorithms = ["md5"]

[users.shauser]
extension = "1003"
[users.shauser.sip]
password = "sha-secret"
algorithms = ["sha-256"]
"#;

/// Extra users `u0`… with password `pw`, for tests that register many addresses.
pub fn many_users(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "[users.u{i}]\nextension = \"{}\"\n[users.u{i}.sip]\npassword = \"pw\"\nalgorithms = [\"md5\"]\n",
                5000 + i
            )
        })
        .collect()
}

/// Ports handed out in this process, so parallel tests never share one.
static TAKEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());

/// A port free for both UDP and TCP on 127.0.0.1 (and ::1 when `v6`).
pub fn free_port() -> u16 {
    for _ in 0..200 {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind UDP");
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        let mut taken = TAKEN.lock().unwrap();
        if taken.contains(&port) {
            continue;
        }
        taken.push(port);
        return port;
    }
    panic!("no free port found");
}

/// Fails with a clear message when a peer program is missing.
pub fn require(program: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "{program} is not installed: run ./scripts/install-test-deps (Debian packages sip-tester, baresip-core, linphone-cli, sipsak)"
    );
}

/// The admin token of the presence API in tests.
pub const ADMIN_TOKEN: &str = "admin-token-0123456789";

/// Settings of a daemon under test.
#[derive(Clone)]
pub struct Options {
    pub policy: String,
    /// Extra TOML appended to the config (whole sections).
    pub extra: String,
    pub ipv6: bool,
    pub auth: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            policy: POLICY.to_string(),
            extra: String::new(),
            ipv6: false,
            auth: true,
        }
    }
}

/// The daemon, killed on drop.
pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub port: u16,
    /// The presence API's port.
    pub api_port: u16,
    pub opts: Options,
    child: Option<Child>,
    log: PathBuf,
    starts: u32,
}

impl Daemon {
    pub fn start(opts: Options) -> Daemon {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let mut d = Daemon {
            dir,
            port,
            api_port: free_port(),
            opts,
            child: None,
            log: PathBuf::new(),
            starts: 0,
        };
        d.write_files();
        d.spawn();
        d
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("switchboard.toml")
    }

    fn write_files(&self) {
        let mut listen = vec![
            format!("\"udp:127.0.0.1:{}\"", self.port),
            format!("\"tcp:127.0.0.1:{}\"", self.port),
        ];
        if self.opts.ipv6 {
            listen.push(format!("\"udp:[::1]:{}\"", self.port));
            listen.push(format!("\"tcp:[::1]:{}\"", self.port));
        }
        let config = format!(
            "[sip]\nlisten = [{}]\nrealm = \"switchboard.local\"\ndomains = [\"switchboard.local\", \"127.0.0.1\"]\n\
             [api]\nlisten = \"127.0.0.1:{}\"\nadmin_token = \"{ADMIN_TOKEN}\"\n\
             [store]\nstate_dir = \"{}\"\n[policy]\npath = \"{}\"\n{}",
            listen.join(", "),
            self.api_port,
            self.dir.path().join("state").display(),
            self.dir.path().join("policy.toml").display(),
            if self.opts.extra.contains("[auth]") {
                self.opts.extra.clone()
            } else {
                format!("{}\n[auth]\nrequired = {}\n", self.opts.extra, self.opts.auth)
            }
        );
        std::fs::write(self.config_path(), config).unwrap();
        std::fs::write(self.dir.path().join("policy.toml"), &self.opts.policy).unwrap();
    }

    fn spawn(&mut self) {
        self.starts += 1;
        self.log = self.dir.path().join(format!("daemon-{}.log", self.starts));
        let log = std::fs::File::create(&self.log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .arg("run")
            .arg("--config")
            .arg(self.config_path())
            .env("RUST_LOG", "info")
            .env_remove("STATE_DIRECTORY")
            .env_remove("NOTIFY_SOCKET")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start switchboard");
        self.child = Some(child);
        self.wait_for_log("switchboard ready", Duration::from_secs(30));
    }

    /// The log of the current run.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the current run's log contains `pattern`.
    pub fn wait_for_log(&mut self, pattern: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            if self.log().contains(pattern) {
                return;
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    panic!(
                        "switchboard exited ({status}) before logging {pattern:?}:\n{}",
                        self.log()
                    );
                }
            }
            assert!(
                Instant::now() < deadline,
                "no {pattern:?} in the log within {limit:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `kill -9`: no chance to flush anything.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// Starts again on the same port and state directory.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!("--- switchboard log ---\n{}", self.log());
        }
    }
}

/// The directory of the SIPp scenarios.
pub fn scenarios() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/sipp")
}

/// The outcome of one SIPp run.
pub struct SippRun {
    pub success: bool,
    pub output: String,
    pub messages: String,
    pub errors: String,
}

/// Runs a SIPp scenario against the daemon, bounded in time; `args` are extra flags.
pub fn sipp(daemon: &Daemon, scenario: &str, args: &[&str]) -> SippRun {
    require("sipp");
    let work = tempfile::tempdir_in(daemon.dir.path()).unwrap();
    let local = free_port().to_string();
    let target = format!("127.0.0.1:{}", daemon.port);
    let sf = scenarios().join(scenario);
    let mut cmd = Command::new("timeout");
    cmd.arg("60")
        .arg("sipp")
        .arg(&target)
        .arg("-sf")
        .arg(&sf)
        .args([
            "-i",
            "127.0.0.1",
            "-p",
            &local,
            "-m",
            "1",
            "-timeout",
            "30s",
            "-timeout_error",
        ])
        .args([
            "-trace_msg",
            "-trace_err",
            "-nostdin",
            "-buff_size",
            "4194304",
        ])
        // SIPp computes the digest over its target address unless told the Request-URI.
        .args(["-auth_uri", "switchboard.local"])
        .args(args)
        .current_dir(work.path())
        .stdin(Stdio::null());
    let out = cmd.output().expect("run sipp");
    let read_all = |suffix: &str| -> String {
        let mut s = String::new();
        for e in std::fs::read_dir(work.path()).unwrap().flatten() {
            if e.file_name().to_string_lossy().ends_with(suffix) {
                s.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
            }
        }
        s
    };
    SippRun {
        success: out.status.success(),
        output: String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr),
        messages: read_all("_messages.log"),
        errors: read_all("_errors.log"),
    }
}

/// Runs SIPp and fails the test, with everything SIPp saw, unless the scenario passed.
pub fn sipp_ok(daemon: &Daemon, scenario: &str, args: &[&str]) -> SippRun {
    let r = sipp(daemon, scenario, args);
    assert!(
        r.success,
        "SIPp scenario {scenario} failed\nerrors:\n{}\nmessages:\n{}\ndaemon log:\n{}",
        r.errors,
        r.messages,
        daemon.log()
    );
    r
}

/// Writes a SIPp injection file and returns its path.
pub fn inf(daemon: &Daemon, name: &str, rows: &[&str]) -> String {
    let p = daemon.dir.path().join(name);
    let mut f = std::fs::File::create(&p).unwrap();
    writeln!(f, "SEQUENTIAL").unwrap();
    for r in rows {
        writeln!(f, "{r}").unwrap();
    }
    p.display().to_string()
}

/// Sends raw bytes over UDP and returns the first response (or None after `limit`).
pub fn udp_exchange(to: SocketAddr, bytes: &[u8], limit: Duration) -> Option<String> {
    let bind = if to.is_ipv4() {
        "127.0.0.1:0"
    } else {
        "[::1]:0"
    };
    let s = UdpSocket::bind(bind).unwrap();
    s.set_read_timeout(Some(limit)).unwrap();
    s.send_to(bytes, to).unwrap();
    let mut buf = vec![0u8; 65536];
    match s.recv_from(&mut buf) {
        Ok((n, _)) => Some(String::from_utf8_lossy(&buf[..n]).to_string()),
        Err(_) => None,
    }
}

/// A request text with the usual headers, for raw-socket tests.
pub fn request(method: &str, extra: &str) -> String {
    format!(
        "{method} sip:switchboard.local SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;rport;branch=z9hG4bK{}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@switchboard.local>;tag=t1\r\nTo: <sip:alice@switchboard.local>\r\n\
         Call-ID: raw-{}\r\nCSeq: 1 {method}\r\n{extra}Content-Length: 0\r\n\r\n",
        rand_token(),
        rand_token()
    )
}

fn rand_token() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}x{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The status line's code of a response text.
pub fn status_of(resp: &str) -> u16 {
    resp.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}
