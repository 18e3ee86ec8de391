//! A real DNS server for the end-to-end tests: dnsmasq serving only the records a test
//! gives it, on a free port of 127.0.0.1, killed when dropped.

use super::{free_port, is_root};
use std::net::UdpSocket;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

/// A dnsmasq serving only the records given on 127.0.0.1:`port`; killed when dropped.
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
        let _ = self.child.kill();
        let _ = self.child.wait();
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
}

/// A dnsmasq on `port`, once it listens; None when it could not bind.
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
    .stderr(Stdio::null());
    // As root, dnsmasq would switch to its own user; stay who we are instead.
    if is_root() {
        cmd.arg("--user=root");
    }
    let mut child = cmd.spawn().expect("dnsmasq starts");
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return None; // exited: the port was taken meanwhile
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

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
