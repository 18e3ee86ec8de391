//! A real DNS server for the tests: dnsmasq (Debian's `dnsmasq-base`, installed by
//! `scripts/install-test-deps`) serving only the records a test gives it, on a loopback port,
//! killed when dropped. Names under `test.` are answered from those records alone (NXDOMAIN
//! otherwise). Shared by the daemon's end-to-end tests and the net crate's DNS tests
//! (`crates/net/tests/dns.rs` includes this file), so it needs nothing from either (and
//! not every test that includes it uses all of it).
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The daemon's policy for the DNS tests: alice, who calls out, and a trunk known by the
/// name `carrier.test` (its records are each test's), which carries +44 numbers.
pub const NAMED_CARRIER_POLICY: &str = r#"
[users.alice]
extension = "1001"
caller_id = "+441632960001"
[users.alice.sip]
password = "alice-secret"
algorithms = ["md5"]

[trunks.carrier]
sources = ["127.0.0.2/32"]
uri = "sip:carrier.test"
outbound = ["+44*"]
"#;

/// A dnsmasq serving only the records given, on 127.0.0.1:`port`; killed when dropped.
pub struct Dnsmasq {
    child: Child,
    pub port: u16,
}

impl Dnsmasq {
    /// Serves `records` (dnsmasq options such as `--srv-host=…`, `--host-record=…`) with
    /// answers of a 60 s TTL.
    pub fn start(records: &[String]) -> Dnsmasq {
        Dnsmasq::start_with_ttl(records, 60)
    }

    /// [`Dnsmasq::start`] with answers of `ttl` seconds.
    pub fn start_with_ttl(records: &[String], ttl: u32) -> Dnsmasq {
        for _ in 0..5 {
            let port = free_port();
            if let Some(child) = spawn(port, records, ttl) {
                return Dnsmasq { child, port };
            }
        }
        panic!("dnsmasq did not start");
    }

    /// Serves other records on the same port (as a zone whose records change): the old
    /// server stops, a new one starts.
    pub fn restart(&mut self, records: &[String], ttl: u32) {
        self.stop();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Some(child) = spawn(self.port, records, ttl) {
                self.child = child;
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("dnsmasq did not start again on port {}", self.port);
    }

    /// The daemon's `[dns]` section asking this server alone (short timeouts: a lost
    /// question fails fast).
    pub fn daemon_config(&self) -> String {
        format!(
            "[dns]\nservers = [\"127.0.0.1:{}\"]\ntimeout_ms = 500\nattempts = 1\n",
            self.port
        )
    }

    /// Where it answers.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The dnsmasq binary: on the PATH, or where Debian installs it.
fn dnsmasq_binary() -> PathBuf {
    let on_path = std::env::var_os("PATH").into_iter().flat_map(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("dnsmasq"))
            .collect::<Vec<_>>()
    });
    on_path
        .chain([PathBuf::from("/usr/sbin/dnsmasq")])
        .find(|p| p.is_file())
        .expect("dnsmasq is missing: run scripts/install-test-deps (Debian package dnsmasq-base)")
}

/// A loopback port free for both UDP and TCP, as far as can be told (dnsmasq takes both).
fn free_port() -> u16 {
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port");
}

/// A dnsmasq on `port`, once it holds it; None when it exited (the port taken meanwhile)
/// or never took it.
fn spawn(port: u16, records: &[String], ttl: u32) -> Option<Child> {
    let mut cmd = Command::new(dnsmasq_binary());
    cmd.args([
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        "--no-poll",
        "--bind-interfaces",
        "--listen-address=127.0.0.1",
        "--pid-file=",
        "--log-facility=-",
        "--local=/test/",
    ])
    .arg(format!("--port={port}"))
    .arg(format!("--local-ttl={ttl}"))
    .args(records)
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    // As root, dnsmasq would switch to its own user; stay who we are instead.
    if is_root() {
        cmd.arg("--user=root");
    }
    let mut child = cmd.spawn().expect("dnsmasq starts");
    // Ready when it holds the port (a bind of ours fails), or gone when it exited.
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                use std::io::Read;
                let _ = e.read_to_string(&mut err);
            }
            eprintln!("dnsmasq exited ({status}): {err}");
            return None;
        }
        if UdpSocket::bind(("127.0.0.1", port)).is_err() {
            return Some(child);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}
