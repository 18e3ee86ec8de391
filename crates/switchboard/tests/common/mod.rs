//! Harness of the end-to-end tests: the real daemon binary, real SIP peers, loopback only.
//!
//! - Every process a test starts is owned by a guard ([`Proc`], [`Daemon`]) that kills it
//!   by PID with SIGKILL on drop, also when the test panics.
//! - Every wait is bounded and waits for an event (a log line, a response, an exit) rather
//!   than for a fixed time.
//! - Each test has its own ports ([`free_port`]) and its own temporary directory.
//! - A missing peer program (sipp, baresip, linphonec, kamailio) fails the test and says to run
//!   `scripts/install-test-deps`; it is never skipped.
//!
//! Set `SWITCHBOARD_E2E_KEEP=1` to keep the directory of a failed test (config, policy,
//! daemon log, SIPp traces); its path is printed.
#![allow(dead_code)]

pub mod baresip;
pub mod carrier;
pub mod dns;
pub mod mail;
pub mod media;
pub mod redis;
pub mod voicemail;

use std::collections::HashSet;
use std::io::{Read as _, Write as _};
use std::net::{Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The realm and domain every test daemon serves.
pub const REALM: &str = "switchboard.local";

/// The test policy: the one place its text lives. SIPp 3.6 only answers MD5 challenges, so
/// SIPp's users are MD5-only (as the default config offers MD5 alone, so is everyone's
/// answer unless a test enables SHA-256).
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
"#;

/// A user who may answer only SHA-256, for linphone: append to [`POLICY`] together with
/// [`SHA256_OFFERED`] (with the default config, which offers MD5 alone, such a user could
/// never authenticate and the daemon refuses the policy).
pub const SHAUSER: &str = r#"
[users.shauser]
extension = "1003"
[users.shauser.sip]
password = "sha-secret"
algorithms = ["sha-256"]
"#;

/// Config sections that make challenges offer SHA-256 first, then MD5.
pub const SHA256_OFFERED: &str = "[auth]\nrequired = true\nalgorithms = [\"sha-256\", \"md5\"]\n";

/// A user with the default `algorithms` of the policy (any the challenge offers).
pub const DAVE: &str = r#"
[users.dave]
extension = "1005"
[users.dave.sip]
password = "dave-secret"
"#;

/// A user offered both algorithms, SHA-256 preferred; append to [`POLICY`] where needed.
pub const CAROL: &str = r#"
[users.carol]
extension = "1004"
display_name = "Carol"
[users.carol.sip]
password = "carol-secret"
algorithms = ["sha-256", "md5"]
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

// ---------------------------------------------------------------------------------------
// Ports

/// Ports handed out in this process, so parallel tests never share one.
static TAKEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
static SEQ: AtomicU64 = AtomicU64::new(0);

/// The kernel's ephemeral port range: ports it hands to `bind(0)` and outgoing connections.
fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|p| p.parse::<u16>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((32768, 60999))
}

fn is_free(port: u16) -> bool {
    let v4 = UdpSocket::bind(("127.0.0.1", port)).is_ok()
        && TcpListener::bind(("127.0.0.1", port)).is_ok();
    // Where ::1 exists, keep the port free there too (the IPv6 test listens on both).
    let v6 = UdpSocket::bind((Ipv6Addr::LOCALHOST, 0)).is_err()
        || (UdpSocket::bind((Ipv6Addr::LOCALHOST, port)).is_ok()
            && TcpListener::bind((Ipv6Addr::LOCALHOST, port)).is_ok());
    v4 && v6
}

/// `count` consecutive ports free for UDP and TCP on 127.0.0.1 (and ::1), reserved for
/// this process. They lie below the kernel's ephemeral range, so no outgoing connection
/// or `bind(0)` of another test (or of SIPp, baresip, linphone) can take them between
/// now and the moment the test's process binds them; the start point depends on the PID,
/// so test processes running side by side probe different ports.
pub fn free_ports(count: u16) -> u16 {
    let (eph_low, _) = ephemeral_range();
    let low: u16 = 20000;
    let high = eph_low.saturating_sub(count + 1);
    assert!(
        high > low + 1000,
        "ephemeral port range starts too low ({eph_low})"
    );
    let span = u64::from(high - low);
    let seed = u64::from(std::process::id()).wrapping_mul(7919)
        + SEQ.fetch_add(1, Ordering::Relaxed) * 101;
    let mut taken = TAKEN.lock().unwrap_or_else(|e| e.into_inner());
    let taken = taken.get_or_insert_with(HashSet::new);
    for i in 0..span {
        let base = low + ((seed + i * 13) % span) as u16;
        let ports: Vec<u16> = (base..base + count).collect();
        if ports.iter().any(|p| taken.contains(p)) {
            continue;
        }
        if ports.iter().all(|&p| is_free(p)) {
            taken.extend(ports);
            return base;
        }
    }
    panic!("no {count} free consecutive ports in {low}..{high}");
}

/// A port free for both UDP and TCP on 127.0.0.1, reserved for this process.
pub fn free_port() -> u16 {
    free_ports(1)
}

// ---------------------------------------------------------------------------------------
// Processes

/// Fails with a clear message when a peer program is missing.
pub fn require(program: &str) {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "`{program}` is not installed: run ./scripts/install-test-deps \
         (Debian packages sip-tester, baresip-core, linphone-cli, sipsak, twinkle-console, \
         kamailio)"
    );
}

/// Polls `f` every `every` until it returns `Some`, for at most `limit`.
pub fn wait_until<T>(
    limit: Duration,
    every: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(every);
    }
}

/// An external process whose stdout and stderr go to one log file; killed (SIGKILL, by
/// PID) and reaped on drop.
pub struct Proc {
    pub name: String,
    child: Option<Child>,
    pub log_path: PathBuf,
}

impl Proc {
    /// Starts `cmd` with stdin closed (or piped when `keep_stdin`), output into `log_path`.
    pub fn spawn(name: &str, cmd: &mut Command, log_path: PathBuf, keep_stdin: bool) -> Proc {
        let log = std::fs::File::create(&log_path).expect("create log file");
        let child = cmd
            .stdin(if keep_stdin {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        Proc {
            name: name.to_string(),
            child: Some(child),
            log_path,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log_path).unwrap_or_default()).into_owned()
    }

    pub fn log_contains(&self, pattern: &str) -> bool {
        self.log().contains(pattern)
    }

    /// The exit status, if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Waits until the log contains `pattern`; fails if the process exits first or the
    /// time is up.
    pub fn wait_for_log(&mut self, pattern: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            if self.log_contains(pattern) {
                return;
            }
            if let Some(status) = self.exited() {
                // The line may have been written just before the exit.
                if self.log_contains(pattern) {
                    return;
                }
                panic!(
                    "{} exited ({status}) before logging {pattern:?}:\n{}",
                    self.name,
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{}: no {pattern:?} in its log within {limit:?}:\n{}",
                self.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the exit, at most `limit`; kills the process when the time is up.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let got = wait_until(limit, Duration::from_millis(10), || self.exited());
        if got.is_none() {
            self.kill();
        }
        got
    }

    /// Writes `line` and a newline to the process's stdin (spawned with `keep_stdin`): a
    /// command for a console phone (linphonec, twinkle-console). False once it has gone.
    pub fn send_line(&mut self, line: &str) -> bool {
        let Some(stdin) = self.child.as_mut().and_then(|c| c.stdin.as_mut()) else {
            return false;
        };
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|()| stdin.flush())
            .is_ok()
    }

    /// The length of the log so far: pass it to [`Proc::log_since`] to look only at what
    /// came after.
    pub fn log_len(&self) -> usize {
        std::fs::metadata(&self.log_path).map_or(0, |m| m.len() as usize)
    }

    /// The log from byte `from` on.
    pub fn log_since(&self, from: usize) -> String {
        let log = std::fs::read(&self.log_path).unwrap_or_default();
        String::from_utf8_lossy(log.get(from..).unwrap_or_default()).into_owned()
    }

    /// SIGKILL by PID, then reap. Idempotent.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---------------------------------------------------------------------------------------
// The daemon

/// The admin token of the presence API in tests.
pub const ADMIN_TOKEN: &str = "admin-token-0123456789";

/// Settings of a daemon under test.
#[derive(Clone)]
pub struct Options {
    pub policy: String,
    /// Extra TOML appended to the config (whole sections).
    pub extra: String,
    /// Extra keys of the config's `[api]` section (which sets `listen` and `admin_token`).
    pub api: String,
    /// Extra keys of the config's `[store]` section (which sets `state_dir`).
    pub store: String,
    /// Also listen on [::1] (UDP and TCP), same port.
    pub ipv6: bool,
    pub auth: bool,
    /// The `sip.listen` entries as TOML values, `{port}` standing for the SIP port
    /// (`"\"udp:0.0.0.0:{port}\""`, `"{ addr = …, advertise = … }"`); empty: UDP and TCP on
    /// 127.0.0.1 (and [::1] with `ipv6`).
    pub listen: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            policy: POLICY.to_string(),
            extra: String::new(),
            api: String::new(),
            store: String::new(),
            ipv6: false,
            auth: true,
            listen: Vec::new(),
        }
    }
}

impl Options {
    /// The defaults with `extra` config sections appended.
    pub fn with(extra: &str) -> Options {
        Options {
            extra: extra.to_string(),
            ..Options::default()
        }
    }
}

/// The daemon, killed on drop. Its config, policy, state and logs live in `dir`.
pub struct Daemon {
    pub dir: tempfile::TempDir,
    /// The SIP port (UDP and TCP).
    pub port: u16,
    /// The presence API's port.
    pub api_port: u16,
    pub opts: Options,
    proc: Option<Proc>,
    starts: u32,
}

impl Daemon {
    /// Writes config and policy into a new temporary directory, starts
    /// `switchboard run --config …` and waits (bounded) for `switchboard ready`.
    pub fn start(opts: Options) -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix("switchboard-e2e-")
            .tempdir()
            .expect("tempdir");
        let mut d = Daemon {
            dir,
            port: free_port(),
            api_port: free_port(),
            opts,
            proc: None,
            starts: 0,
        };
        d.write_files();
        d.spawn();
        d
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("switchboard.toml")
    }

    pub fn policy_path(&self) -> PathBuf {
        self.dir.path().join("policy.toml")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// The listen entries of the config.
    pub fn listen(&self) -> Vec<String> {
        let mut listen = vec![
            format!("udp:127.0.0.1:{}", self.port),
            format!("tcp:127.0.0.1:{}", self.port),
        ];
        if self.opts.ipv6 {
            listen.push(format!("udp:[::1]:{}", self.port));
            listen.push(format!("tcp:[::1]:{}", self.port));
        }
        listen
    }

    fn write_files(&self) {
        let listen: Vec<String> = if self.opts.listen.is_empty() {
            self.listen().iter().map(|l| format!("\"{l}\"")).collect()
        } else {
            let port = self.port.to_string();
            self.opts
                .listen
                .iter()
                .map(|l| l.replace("{port}", &port))
                .collect()
        };
        let auth = if self.opts.extra.contains("[auth]") {
            String::new()
        } else {
            format!("[auth]\nrequired = {}\n", self.opts.auth)
        };
        let config = format!(
            "[sip]\nlisten = [{}]\nrealm = \"{REALM}\"\ndomains = [\"{REALM}\", \"127.0.0.1\"]\n\
             [api]\nlisten = \"127.0.0.1:{}\"\nadmin_token = \"{ADMIN_TOKEN}\"\n{}\
             [store]\nstate_dir = \"{}\"\n{}[policy]\npath = \"{}\"\n{auth}{}\n",
            listen.join(", "),
            self.api_port,
            self.opts.api,
            self.state_dir().display(),
            self.opts.store,
            self.policy_path().display(),
            self.opts.extra,
        );
        std::fs::write(self.config_path(), config).unwrap();
        std::fs::write(self.policy_path(), &self.opts.policy).unwrap();
    }

    fn spawn(&mut self) {
        self.starts += 1;
        let log = self.dir.path().join(format!("daemon-{}.log", self.starts));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
        cmd.arg("run")
            .arg("--config")
            .arg(self.config_path())
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .env_remove("STATE_DIRECTORY")
            .env_remove("NOTIFY_SOCKET");
        self.proc = Some(Proc::spawn("switchboard", &mut cmd, log, false));
        self.wait_for_log("switchboard ready", Duration::from_secs(30));
    }

    fn proc(&self) -> &Proc {
        self.proc.as_ref().expect("the daemon is not running")
    }

    /// The log (stderr) of the current run.
    pub fn log(&self) -> String {
        self.proc.as_ref().map(Proc::log).unwrap_or_default()
    }

    pub fn log_contains(&self, pattern: &str) -> bool {
        self.log().contains(pattern)
    }

    /// Waits until the current run's log contains `pattern`.
    pub fn wait_for_log(&mut self, pattern: &str, limit: Duration) {
        self.proc
            .as_mut()
            .expect("the daemon is not running")
            .wait_for_log(pattern, limit);
    }

    /// The SIP address over IPv4 (UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The SIP address over IPv6 (with `Options::ipv6`).
    pub fn addr6(&self) -> SocketAddr {
        SocketAddr::from((Ipv6Addr::LOCALHOST, self.port))
    }

    pub fn pid(&self) -> u32 {
        self.proc().pid()
    }

    /// Whether the daemon process is still alive.
    pub fn running(&mut self) -> bool {
        self.proc.as_mut().is_some_and(|p| p.exited().is_none())
    }

    /// `kill -9`: no chance to flush anything.
    pub fn kill9(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }

    /// `kill -9`, then start again on the same port, config and state directory.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// `kill -9`, then start again on the same port and state directory with `extra` as
    /// the config's extra sections.
    pub fn restart_with(&mut self, extra: &str) {
        self.kill9();
        self.opts.extra = extra.to_string();
        self.write_files();
        self.spawn();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let log = self.log();
        self.kill9();
        if std::thread::panicking() {
            eprintln!("--- switchboard log ---\n{log}");
            if std::env::var_os("SWITCHBOARD_E2E_KEEP").is_some() {
                self.dir.disable_cleanup(true);
                eprintln!("test directory kept: {}", self.dir.path().display());
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// SIPp

/// The directory of the SIPp scenarios.
pub fn scenarios() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/sipp")
}

/// One line of a SIPp injection file: `user;password;port;expires;extra`
/// (see tests/sipp/README.md for what each scenario reads).
#[derive(Clone, Debug)]
pub struct Row {
    pub user: String,
    pub password: String,
    pub port: u16,
    pub expires: u32,
    /// Replaces `expires` as the fourth field (the dialled target of call scenarios).
    pub dialled: Option<String>,
    pub extra: String,
}

/// A row for `user` with `password`, contact port `port`, expiry `expires`.
pub fn row(user: &str, password: &str, port: u16, expires: u32) -> Row {
    Row {
        user: user.into(),
        password: password.into(),
        port,
        expires,
        dialled: None,
        extra: String::new(),
    }
}

/// A caller's row: `user;password;0;dialled;extra` (see tests/sipp/README.md, Calls).
pub fn call_row(user: &str, password: &str, dialled: &str, extra: &str) -> Row {
    Row {
        dialled: Some(dialled.into()),
        extra: extra.into(),
        ..row(user, password, 0, 0)
    }
}

impl Row {
    /// The scenario-specific fifth field.
    pub fn extra(mut self, v: impl ToString) -> Row {
        self.extra = v.to_string();
        self
    }

    fn line(&self) -> String {
        let fourth = self
            .dialled
            .clone()
            .unwrap_or_else(|| self.expires.to_string());
        format!(
            "{};{};{};{};{}",
            self.user, self.password, self.port, fourth, self.extra
        )
    }
}

/// A SIPp client run against a daemon: one call per injection row (or `calls`), bounded
/// in time by SIPp's own timers and by a hard limit after which it is killed.
pub struct Sipp<'a> {
    daemon: &'a Daemon,
    scenario: String,
    rows: Vec<Row>,
    calls: Option<usize>,
    rate: Option<u32>,
    tcp: bool,
    ipv6: bool,
    domain: String,
    auth_uri: Option<String>,
    local_ip: Option<String>,
    /// Where to send (default: the daemon's IPv4 address).
    target: Option<SocketAddr>,
    args: Vec<String>,
    limit: Duration,
}

/// The outcome of one SIPp run, with everything needed to explain a failure.
pub struct SippRun {
    pub scenario: String,
    pub success: bool,
    pub status: String,
    /// SIPp's screen output (stdout and stderr).
    pub output: String,
    /// Every message sent and received (`-trace_msg`).
    pub messages: String,
    /// Unexpected messages, failed checks, timeouts (`-trace_err`).
    pub errors: String,
    /// The scenarios' `<log>` lines (`-trace_logs`).
    pub logs: String,
}

impl<'a> Sipp<'a> {
    pub fn new(daemon: &'a Daemon, scenario: &str) -> Sipp<'a> {
        Sipp {
            daemon,
            scenario: scenario.to_string(),
            rows: Vec::new(),
            calls: None,
            rate: None,
            tcp: false,
            ipv6: false,
            domain: REALM.to_string(),
            auth_uri: None,
            local_ip: None,
            target: None,
            args: Vec::new(),
            limit: Duration::from_secs(60),
        }
    }

    /// The digest `uri` (SIPp prefixes `sip:`): for calls, `DIALLED@domain`, since SIPp
    /// never takes it from the Request-URI (default: the domain, as REGISTER needs).
    pub fn auth_uri(mut self, uri: &str) -> Self {
        self.auth_uri = Some(uri.to_string());
        self
    }

    /// Send from this loopback address (e.g. 127.0.0.2, a trunk's source) instead of
    /// 127.0.0.1.
    pub fn local_ip(mut self, ip: &str) -> Self {
        self.local_ip = Some(ip.to_string());
        self
    }

    /// Send to `addr` instead of the daemon (a carrier's proxy in front of it).
    pub fn target(mut self, addr: SocketAddr) -> Self {
        self.target = Some(addr);
        self
    }

    /// The hard limit of the run (default 60 s).
    pub fn limit(mut self, limit: Duration) -> Self {
        self.limit = limit;
        self
    }

    pub fn row(mut self, r: Row) -> Self {
        self.rows.push(r);
        self
    }

    pub fn rows(mut self, rows: impl IntoIterator<Item = Row>) -> Self {
        self.rows.extend(rows);
        self
    }

    /// Number of calls (default: one per row, at least one).
    pub fn calls(mut self, n: usize) -> Self {
        self.calls = Some(n);
        self
    }

    /// Calls per second (SIPp's `-r`).
    pub fn rate(mut self, per_second: u32) -> Self {
        self.rate = Some(per_second);
        self
    }

    /// TCP, one connection (SIPp's `-t t1`).
    pub fn tcp(mut self) -> Self {
        self.tcp = true;
        self
    }

    /// From [::1] to the daemon's [::1] listener.
    pub fn ipv6(mut self) -> Self {
        self.ipv6 = true;
        self
    }

    /// The Request-URI host and From/To domain (default `switchboard.local`).
    pub fn domain(mut self, domain: &str) -> Self {
        self.domain = domain.to_string();
        self
    }

    pub fn arg(mut self, a: &str) -> Self {
        self.args.push(a.to_string());
        self
    }

    /// Starts the scenario in the background (a watcher that waits for NOTIFYs while the
    /// test acts); [`Uas::finish`] collects the run.
    pub fn spawn(self) -> Uas {
        require("sipp");
        let work = tempfile::Builder::new()
            .prefix(&format!("sipp-{}-", self.scenario.trim_end_matches(".xml")))
            .tempdir_in(self.daemon.dir.path())
            .unwrap()
            // Kept with the daemon's directory, for SWITCHBOARD_E2E_KEEP.
            .keep();
        let calls = self.calls.unwrap_or(self.rows.len().max(1));
        let local_port = free_port().to_string();
        let (local_ip, target) = if self.ipv6 {
            ("::1".to_string(), format!("[::1]:{}", self.daemon.port))
        } else {
            (
                self.local_ip
                    .clone()
                    .unwrap_or_else(|| "127.0.0.1".to_string()),
                self.target.map_or_else(
                    || format!("127.0.0.1:{}", self.daemon.port),
                    |t| t.to_string(),
                ),
            )
        };
        let sf = scenarios().join(&self.scenario);
        assert!(sf.is_file(), "no scenario {}", sf.display());
        let mut cmd = Command::new("sipp");
        cmd.arg(&target)
            .arg("-sf")
            .arg(&sf)
            .args(["-i", &local_ip, "-p", &local_port])
            .args(["-m", &calls.to_string()])
            .args(["-key", "domain", &self.domain])
            // The digest is computed over the Request-URI, not over SIPp's target address.
            .args([
                "-auth_uri",
                self.auth_uri.as_deref().unwrap_or(&self.domain),
            ])
            // Every wait of a scenario is bounded, and so is the whole run.
            .args([
                "-recv_timeout",
                "10000",
                "-timeout",
                "40s",
                "-timeout_error",
            ])
            .args(["-trace_msg", "-trace_err", "-trace_logs", "-nostdin"])
            .args(["-buff_size", "4194304"])
            .current_dir(&work);
        if !self.rows.is_empty() {
            let inf = work.join("rows.csv");
            let mut f = std::fs::File::create(&inf).unwrap();
            writeln!(f, "SEQUENTIAL").unwrap();
            for r in &self.rows {
                writeln!(f, "{}", r.line()).unwrap();
            }
            cmd.arg("-inf").arg(&inf);
            cmd.args(["-au", "[field0]", "-ap", "[field1]"]);
        }
        if let Some(r) = self.rate {
            cmd.args(["-r", &r.to_string()]);
        }
        if self.tcp {
            cmd.args(["-t", "t1"]);
        }
        cmd.args(&self.args);
        let p = Proc::spawn("sipp", &mut cmd, work.join("screen.log"), false);
        Uas {
            scenario: self.scenario.clone(),
            ip: local_ip,
            port: local_port.parse().unwrap_or(0),
            work,
            proc: Some(p),
        }
    }

    /// Runs the scenario to its end (at most the run's limit).
    pub fn run(self) -> SippRun {
        let limit = self.limit;
        self.spawn().finish(limit)
    }

    /// Runs and fails the test, with everything SIPp saw and the daemon's log, unless the
    /// scenario passed.
    pub fn ok(self) -> SippRun {
        let d = self.daemon;
        let r = self.run();
        assert!(r.success, "{}\ndaemon log:\n{}", r.report(), d.log());
        r
    }

    /// Runs and fails the test unless the scenario failed (a check that must not pass).
    pub fn fails(self) -> SippRun {
        let d = self.daemon;
        let r = self.run();
        assert!(
            !r.success,
            "{} passed, it should have failed\n{}\ndaemon log:\n{}",
            r.scenario,
            r.report(),
            d.log()
        );
        r
    }
}

impl SippRun {
    /// Everything SIPp reported, for an assertion message.
    pub fn report(&self) -> String {
        format!(
            "SIPp scenario {} failed ({})\n--- scenario log:\n{}\n--- errors:\n{}\n--- messages:\n{}\n--- screen (tail):\n{}",
            self.scenario,
            self.status,
            self.logs,
            self.errors,
            self.messages,
            tail(&self.output, 40)
        )
    }

    /// The received messages, in order.
    pub fn received(&self) -> Vec<String> {
        self.messages
            .split("-----------------------------------------------")
            .filter(|b| b.contains("message received"))
            .filter_map(|b| {
                b.split_once("bytes :")
                    .map(|(_, m)| m.trim_start().to_string())
            })
            .collect()
    }

    /// The status codes of the received responses, in order.
    pub fn statuses(&self) -> Vec<u16> {
        self.received()
            .iter()
            .filter(|m| m.starts_with("SIP/2.0 "))
            .map(|m| status_of(m))
            .collect()
    }

    /// The values a scenario logged as `name=value` (`final=486` …), in order.
    pub fn logged(&self, name: &str) -> Vec<String> {
        let prefix = format!("{name}=");
        self.logs
            .lines()
            .filter_map(|l| {
                l.find(&prefix)
                    .map(|i| l[i + prefix.len()..].trim().to_string())
            })
            .collect()
    }

    /// The final response codes the caller got (`final=` log lines).
    pub fn finals(&self) -> Vec<u16> {
        self.logged("final")
            .iter()
            .filter_map(|v| v.split_whitespace().next()?.parse().ok())
            .collect()
    }

    /// The received requests with this method, in order.
    pub fn requests(&self, method: &str) -> Vec<String> {
        let start = format!("{method} ");
        self.received()
            .into_iter()
            .filter(|m| m.starts_with(&start))
            .collect()
    }

    /// The Contact values of the last 200 received.
    pub fn contacts_in_last_200(&self) -> Vec<String> {
        self.received()
            .iter()
            .rev()
            .find(|m| m.starts_with("SIP/2.0 200"))
            .map(|m| header_values(m, "Contact"))
            .unwrap_or_default()
    }
}

/// A SIPp running in the background on its own port: a server (a callee, a voicemail
/// server, a carrier) for up to `calls` calls, or a client started by [`Sipp::spawn`];
/// killed on drop. [`Uas::finish`] waits for it.
pub struct Uas {
    pub scenario: String,
    pub ip: String,
    pub port: u16,
    work: PathBuf,
    proc: Option<Proc>,
}

impl Uas {
    /// Starts `scenario` on 127.0.0.1 and a free port; `args` are extra SIPp arguments
    /// (`-d 2000`…).
    pub fn start(scenario: &str, calls: usize, args: &[&str]) -> Uas {
        Uas::start_on("127.0.0.1", free_port(), scenario, calls, args)
    }

    /// Starts `scenario` on `ip:port`.
    pub fn start_on(ip: &str, port: u16, scenario: &str, calls: usize, args: &[&str]) -> Uas {
        require("sipp");
        let work = tempfile::Builder::new()
            .prefix(&format!("uas-{}-", scenario.trim_end_matches(".xml")))
            .tempdir()
            .unwrap()
            .keep();
        let sf = scenarios().join(scenario);
        assert!(sf.is_file(), "no scenario {}", sf.display());
        let mut cmd = Command::new("sipp");
        cmd.arg("-sf")
            .arg(&sf)
            .args(["-i", ip, "-p", &port.to_string()])
            .args(["-m", &calls.to_string()])
            .args(["-timeout", "60s", "-timeout_error"])
            .args(["-trace_msg", "-trace_err", "-trace_logs", "-nostdin"])
            .args(["-buff_size", "4194304"])
            .args(args)
            .current_dir(&work);
        let proc = Proc::spawn("sipp-uas", &mut cmd, work.join("screen.log"), false);
        let uas = Uas {
            scenario: scenario.to_string(),
            ip: ip.to_string(),
            port,
            work,
            proc: Some(proc),
        };
        // Listening once its socket is bound: wait (bounded) for the port to be taken.
        wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
            UdpSocket::bind((uas.ip.as_str(), port))
                .is_err()
                .then_some(())
        })
        .expect("the SIPp server did not bind its port");
        uas
    }

    /// The contact of this server as `user` registers it.
    pub fn contact(&self, user: &str) -> String {
        format!("sip:{user}@{}:{}", self.ip, self.port)
    }

    /// Registers this server as a device of `user` (Contact on this server's port).
    pub fn register(&self, d: &Daemon, user: &str, password: &str) {
        Sipp::new(d, "register.xml")
            .row(row(user, password, self.port, 600))
            .ok();
    }

    /// The scenario's `<log>` lines written so far (the run goes on).
    pub fn logs_so_far(&self) -> String {
        self.read_all("_logs.log")
    }

    fn read_all(&self, suffix: &str) -> String {
        let mut s = String::new();
        for e in std::fs::read_dir(&self.work).unwrap().flatten() {
            if e.file_name().to_string_lossy().ends_with(suffix) {
                s.push_str(&String::from_utf8_lossy(
                    &std::fs::read(e.path()).unwrap_or_default(),
                ));
            }
        }
        s
    }

    /// Waits (at most `limit`) for the server to end after its calls, or kills it then.
    pub fn finish(mut self, limit: Duration) -> SippRun {
        let mut p = self.proc.take().expect("running");
        let status = p.wait_exit(limit);
        if status.is_none() {
            p.kill();
        }
        SippRun {
            scenario: self.scenario.clone(),
            success: status.is_some_and(|s| s.success()),
            status: match status {
                Some(s) => s.to_string(),
                None => format!("killed after {limit:?}"),
            },
            output: p.log(),
            messages: self.read_all("_messages.log"),
            errors: self.read_all("_errors.log"),
            logs: self.read_all("_logs.log"),
        }
    }

    /// Stops the server now (it was not expected to get all its calls) and returns what it
    /// saw: SIGTERM, so that SIPp writes out its traces, then at most 5 s.
    pub fn stop(self) -> SippRun {
        if let Some(p) = &self.proc {
            let _ = Command::new("kill")
                .args(["-TERM", &p.pid().to_string()])
                .status();
        }
        self.finish(Duration::from_secs(5))
    }
}

impl Drop for Uas {
    /// Stops the server and removes its work directory (its traces), which a failing
    /// test keeps with `SWITCHBOARD_E2E_KEEP` set, as the daemon's.
    fn drop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
        if std::thread::panicking() && std::env::var_os("SWITCHBOARD_E2E_KEEP").is_some() {
            eprintln!("SIPp server directory kept: {}", self.work.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.work);
        }
    }
}

fn tail(s: &str, lines: usize) -> String {
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

/// The current bindings of `user` (REGISTER without Contact), as listed in the 200.
pub fn query(d: &Daemon, user: &str, password: &str) -> Vec<String> {
    Sipp::new(d, "query.xml")
        .row(row(user, password, 0, 0))
        .ok()
        .contacts_in_last_200()
}

/// The `expires` parameter of a Contact value.
pub fn expires_of(contact: &str) -> Option<u32> {
    contact
        .split(';')
        .find_map(|p| p.trim().strip_prefix("expires="))
        .and_then(|v| v.trim().parse().ok())
}

// ---------------------------------------------------------------------------------------
// Raw messages

/// Sends raw bytes over UDP from an ephemeral port and returns the first datagram that
/// comes back (or None after `limit`).
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
        Ok((n, _)) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
        Err(_) => None,
    }
}

/// Opens a TCP connection, sends raw bytes and reads one whole SIP message back (headers
/// and Content-Length body). None when nothing (or only part of a message) arrived within
/// `limit` or the connection was closed first.
pub fn tcp_exchange(to: SocketAddr, bytes: &[u8], limit: Duration) -> Option<String> {
    let mut c = SipConn::connect(to, limit)?;
    c.send(bytes).ok()?;
    c.recv(limit)
}

/// A TCP connection that frames SIP messages by Content-Length, keeping whatever arrived
/// beyond the message it returns for the next call.
pub struct SipConn {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl SipConn {
    pub fn connect(to: SocketAddr, limit: Duration) -> Option<SipConn> {
        let stream = TcpStream::connect_timeout(&to, limit).ok()?;
        Some(SipConn {
            stream,
            buf: Vec::new(),
        })
    }

    pub fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// The next whole message, or None when the time is up or the peer closed first.
    pub fn recv(&mut self, limit: Duration) -> Option<String> {
        let deadline = Instant::now() + limit;
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                let len: usize = header_values(&head, "Content-Length")
                    .first()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let total = end + 4 + len;
                if self.buf.len() >= total {
                    let msg: Vec<u8> = self.buf.drain(..total).collect();
                    return Some(String::from_utf8_lossy(&msg).into_owned());
                }
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .ok()?;
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

/// A request text with the usual headers, for raw-socket tests.
pub fn request(method: &str, extra: &str) -> String {
    format!(
        "{method} sip:{REALM} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;rport;branch=z9hG4bK{}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@{REALM}>;tag=t1\r\nTo: <sip:alice@{REALM}>\r\n\
         Call-ID: raw-{}\r\nCSeq: 1 {method}\r\n{extra}Content-Length: 0\r\n\r\n",
        rand_token(),
        rand_token()
    )
}

/// `who` watches bob's `event` state and expects `more` NOTIFYs after the first.
pub fn watch(d: &Daemon, who: &str, event: &str, more: usize) -> Uas {
    let w = Sipp::new(d, "subscribe.xml")
        .row(call_row(
            who,
            &format!("{who}-secret"),
            "bob",
            &more.to_string(),
        ))
        .auth_uri(&format!("bob@{REALM}"))
        .arg("-key")
        .arg("event")
        .arg(event)
        .spawn();
    // Subscribed once the phone has the 200 and the first NOTIFY (a change that came in
    // between could find the scenario between its steps).
    wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
        w.logs_so_far().contains("notified").then_some(())
    })
    .unwrap_or_else(|| panic!("{who} did not subscribe:\n{}", d.log()));
    w
}

/// The bodies of the NOTIFYs a watcher's run received, in order.
pub fn notify_bodies(r: &SippRun) -> Vec<String> {
    r.requests("NOTIFY")
        .into_iter()
        .map(|m| {
            m.split_once("\r\n\r\n")
                .map(|(_, b)| b.to_string())
                .unwrap_or_default()
        })
        .collect()
}

/// The Authorization header (MD5, qop=auth, nc 1, cnonce `c1`) of `user` with `password`
/// answering `nonce` for a REGISTER to the realm.
pub fn register_authorization(user: &str, password: &str, nonce: &str) -> String {
    let uri = format!("sip:{REALM}");
    let md5 = |s: String| switchboard_sip::auth::Algorithm::Md5.hash(&s);
    let ha1 = md5(format!("{user}:{REALM}:{password}"));
    let ha2 = md5(format!("REGISTER:{uri}"));
    let response = md5(format!("{ha1}:{nonce}:00000001:c1:auth:{ha2}"));
    format!(
        "Authorization: Digest username=\"{user}\", realm=\"{REALM}\", nonce=\"{nonce}\", \
         uri=\"{uri}\", response=\"{response}\", algorithm=MD5, qop=auth, nc=00000001, \
         cnonce=\"c1\"\r\n"
    )
}

/// A REGISTER of `user` without credentials (answered with a challenge, or refused).
pub fn register_request(user: &str) -> String {
    request(
        "REGISTER",
        &format!("Contact: <sip:{user}@127.0.0.1:9>\r\n"),
    )
    .replace("sip:alice@", &format!("sip:{user}@"))
}

fn rand_token() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}x{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The status line's code of a response text (0 when it is not a response).
pub fn status_of(resp: &str) -> u16 {
    if !resp.starts_with("SIP/2.0 ") {
        return 0;
    }
    resp.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// The values of every header line named `name` (case-insensitive; no compact forms, no
/// comma splitting), in order.
pub fn header_values(msg: &str, name: &str) -> Vec<String> {
    msg.lines()
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_once(':'))
        .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().to_string())
        .collect()
}

/// A digest challenge's parameter (`realm`, `nonce`, `algorithm`, …), unquoted.
pub fn challenge_param(challenge: &str, name: &str) -> Option<String> {
    challenge_params(challenge)
        .into_iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// The parameters of a `Digest` challenge, in order, values unquoted (commas inside
/// quotes are part of the value).
pub fn challenge_params(challenge: &str) -> Vec<(String, String)> {
    let Some(rest) = challenge.trim().strip_prefix("Digest") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let (mut key, mut val) = (String::new(), String::new());
    let (mut in_key, mut quoted) = (true, false);
    for ch in rest.chars() {
        match ch {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                if !key.trim().is_empty() {
                    out.push((key.trim().to_string(), val.trim().to_string()));
                }
                key.clear();
                val.clear();
                in_key = true;
            }
            '=' if in_key && !quoted => in_key = false,
            c if in_key => key.push(c),
            c => val.push(c),
        }
    }
    if !key.trim().is_empty() {
        out.push((key.trim().to_string(), val.trim().to_string()));
    }
    out
}

/// What the API answered to one exchange.
pub struct HttpReply {
    pub status: u16,
    /// The header section, as it came.
    pub head: String,
    pub body: String,
}

impl HttpReply {
    /// The value of header `name` (case-insensitive), if it came.
    pub fn header(&self, name: &str) -> Option<&str> {
        header_of(&self.head, name)
    }
}

/// The value of header `name` (case-insensitive) in an HTTP response's head.
fn header_of<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// What the API answered, its body as bytes (audio, or anything not text).
pub struct HttpBytes {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl HttpBytes {
    /// The body as JSON (the test fails if it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| {
            panic!(
                "not JSON ({}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The value of header `name` (case-insensitive), if it came.
    pub fn header(&self, name: &str) -> Option<&str> {
        header_of(&self.head, name)
    }
}

/// One HTTP/1.1 exchange with the daemon's API with a body of any bytes, of
/// `content_type` (none: no Content-Type header), with `token` as the bearer token.
pub fn http_exchange(
    d: &Daemon,
    method: &str,
    path: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: &[u8],
) -> HttpBytes {
    let mut s = TcpStream::connect(("127.0.0.1", d.api_port)).expect("the API listens");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let ct = content_type
        .map(|c| format!("Content-Type: {c}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\n{auth}{ct}Content-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    // A body refused before it is read may be cut short: the answer says why.
    let _ = s.write_all(head.as_bytes()).and_then(|_| s.write_all(body));
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let end = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(out.len());
    let head = String::from_utf8_lossy(&out[..end]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    HttpBytes {
        status,
        head,
        body: out.get(end + 4..).unwrap_or_default().to_vec(),
    }
}

/// One HTTP/1.1 exchange with the daemon's API, with `token` as the bearer token (none:
/// no Authorization header) and `body` as JSON.
pub fn http(d: &Daemon, method: &str, path: &str, token: Option<&str>, body: &str) -> HttpReply {
    let r = http_exchange(
        d,
        method,
        path,
        token,
        Some("application/json"),
        body.as_bytes(),
    );
    HttpReply {
        status: r.status,
        head: r.head,
        body: String::from_utf8_lossy(&r.body).into_owned(),
    }
}

/// One HTTP/1.1 exchange with the daemon's API as the admin: (status, body).
pub fn admin_api(d: &Daemon, method: &str, path: &str, body: &str) -> (u16, String) {
    let r = http(d, method, path, Some(ADMIN_TOKEN), body);
    (r.status, r.body)
}

/// When each received message of a SIPp run arrived (seconds of the day, as SIPp logs
/// them), with the message.
pub fn timed_received(run: &SippRun) -> Vec<(f64, String)> {
    run.messages
        .split("----------------------------------------------- ")
        .filter(|b| b.contains("message received"))
        .filter_map(|b| {
            let time = b.split_whitespace().nth(1)?;
            let mut hms = time.split(':');
            let (h, m, s) = (hms.next()?, hms.next()?, hms.next()?);
            let t = h.parse::<f64>().ok()? * 3600.0
                + m.parse::<f64>().ok()? * 60.0
                + s.parse::<f64>().ok()?;
            let msg = b.split_once("bytes :")?.1.trim_start().to_string();
            Some((t, msg))
        })
        .collect()
}

/// alice (SIPp, `call_probed.xml`) calls bob and keeps the call until the daemon ends it:
/// it answers the daemon's in-dialog probes and waits for its BYE (the run may take a
/// probe round and Timer F). Running.
pub fn probed_call(d: &Daemon) -> Uas {
    Sipp::new(d, "call_probed.xml")
        .row(call_row("alice", "alice-secret", "1002", ""))
        .auth_uri(&format!("1002@{REALM}"))
        .arg("-timeout")
        .arg("90s")
        .spawn()
}

/// `r`, which must have passed; otherwise fails with everything the peers saw (the
/// daemon's log and the carrier's).
pub fn passed_via(r: SippRun, d: &Daemon, carrier: &Kamailio) -> SippRun {
    assert!(
        r.success,
        "{}\n--- daemon log:\n{}\n--- kamailio log:\n{}",
        r.report(),
        d.log(),
        carrier.log()
    );
    r
}

/// `user`'s phone (a SIPp server running `scenario` for one call), registered.
pub fn registered_phone(
    d: &Daemon,
    user: &str,
    password: &str,
    scenario: &str,
    args: &[&str],
) -> Uas {
    let uas = Uas::start(scenario, 1, args);
    uas.register(d, user, password);
    uas
}

// ---------------------------------------------------------------------------------------
// Kamailio

/// Kamailio with a config of `tests/kamailio/`, killed on drop: SIGTERM to its main
/// process (which ends its children), then SIGKILL to its process group, by id. Its log
/// (stderr) is printed when the test fails.
pub struct Kamailio {
    proc: Option<Proc>,
}

impl Kamailio {
    /// Starts `cfg` listening on UDP `addr` with `defines` (`NAME=VALUE`, as `-A` takes
    /// them), its work directory and log in `dir`, and waits (bounded) until it answers
    /// an OPTIONS.
    pub fn start(cfg: &str, dir: &Path, addr: SocketAddr, defines: &[String]) -> Kamailio {
        use std::os::unix::process::CommandExt as _;
        require("kamailio");
        let work = dir.join(format!("kamailio-{}", addr.port()));
        std::fs::create_dir_all(&work).unwrap();
        let cfg = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/kamailio")
            .join(cfg);
        let mut cmd = Command::new("kamailio");
        cmd.arg("-f")
            .arg(&cfg)
            .args(["-l", &format!("udp:{addr}")])
            .args(["-DD", "-E", "-m", "64", "-w"])
            .arg(&work);
        for d in defines {
            cmd.args(["-A", d]);
        }
        // Its own process group: its children go with it.
        cmd.process_group(0);
        let proc = Proc::spawn("kamailio", &mut cmd, work.join("kamailio.log"), false);
        let k = Kamailio { proc: Some(proc) };
        let up = wait_until(Duration::from_secs(15), Duration::from_millis(100), || {
            udp_exchange(
                addr,
                request("OPTIONS", "").as_bytes(),
                Duration::from_millis(300),
            )
            .filter(|r| r.starts_with("SIP/2.0 200"))
        });
        assert!(up.is_some(), "kamailio did not answer:\n{}", k.log());
        k
    }

    pub fn log(&self) -> String {
        self.proc.as_ref().map(Proc::log).unwrap_or_default()
    }

    /// The lines of its log holding `what` (the config's own log lines), as the config
    /// wrote them.
    pub fn lines(&self, what: &str) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| l.contains(what))
            .map(|l| l.split_once("<script>: ").map_or(l, |(_, s)| s).to_string())
            .collect()
    }

    /// Waits (at most `limit`) until `count` lines hold `what`; they, or a failure with
    /// the log.
    pub fn wait_for_lines(&self, what: &str, count: usize, limit: Duration) -> Vec<String> {
        wait_until(limit, Duration::from_millis(50), || {
            let l = self.lines(what);
            (l.len() >= count).then_some(l)
        })
        .unwrap_or_else(|| {
            panic!(
                "no {count} {what:?} lines within {limit:?}:\n{}",
                self.log()
            )
        })
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        let Some(mut p) = self.proc.take() else {
            return;
        };
        let pid = p.pid().to_string();
        let quiet = |args: &[&str]| {
            let _ = Command::new("kill")
                .args(args)
                .stderr(Stdio::null())
                .status();
        };
        quiet(&["-TERM", &pid]);
        p.wait_exit(Duration::from_secs(5));
        // Whatever of the group is left (children of a main process that did not end them).
        quiet(&["-KILL", "--", &format!("-{pid}")]);
        if std::thread::panicking() {
            eprintln!("--- kamailio log ---\n{}", p.log());
        }
    }
}

/// One metric's value in `/metrics` (0 when its sample is absent): `sample` is the
/// metric's name with its labels, as the exposition writes it.
pub fn metric(d: &Daemon, sample: &str) -> u64 {
    let r = http(d, "GET", "/metrics", None, "");
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
        .lines()
        .find_map(|l| {
            l.strip_prefix(sample)?
                .strip_prefix(' ')?
                .parse::<f64>()
                .ok()
        })
        .unwrap_or(0.0) as u64
}

/// Waits (bounded) until `/metrics` shows `sample` at `value`.
pub fn wait_metric(d: &Daemon, sample: &str, value: u64) {
    let seen = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        (metric(d, sample) == value).then_some(())
    });
    assert!(
        seen.is_some(),
        "{sample} is {} (not {value})\n{}",
        metric(d, sample),
        http(d, "GET", "/metrics", None, "").body
    );
}
