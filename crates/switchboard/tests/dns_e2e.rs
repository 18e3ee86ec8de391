//! Trunks known by host name end to end: the real daemon asking a dnsmasq on a loopback
//! port (`[dns] servers`), whose SRV records for the carrier name, in priority order, a
//! closed port, a silent server (a UDP socket that reads and never answers) and a SIPp
//! server that answers. An outbound call goes to them in that order, failing over
//! (`[routing] failover_after_ms`), and is answered by the last.
//!
//! Every process is owned by a guard that kills it, also when the test fails; every wait
//! is bounded; only loopback addresses are used.

mod common;

use common::dns::{Dnsmasq, NAMED_CARRIER_POLICY};
use common::*;
use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A UDP server that reads and never answers; stopped when dropped.
struct Silent {
    port: u16,
    got: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Silent {
    fn start() -> Silent {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let port = socket.local_addr().unwrap().port();
        let got = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (g, s) = (got.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 65536];
            while !s.load(Ordering::Relaxed) {
                if let Ok((n, _)) = socket.recv_from(&mut buf) {
                    let text = String::from_utf8_lossy(&buf[..n]).to_string();
                    g.lock().unwrap().push(text);
                }
            }
        });
        Silent {
            port,
            got,
            stop,
            thread: Some(thread),
        }
    }

    fn invites(&self) -> usize {
        let got = self.got.lock().unwrap();
        got.iter().filter(|m| m.starts_with("INVITE ")).count()
    }
}

impl Drop for Silent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A UDP port nobody listens on (bound, then closed).
fn closed_port() -> u16 {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap().port()
}

#[test]
fn a_trunk_by_host_name_fails_over_in_srv_priority_order_to_the_server_that_answers() {
    require("sipp");
    let closed = closed_port();
    let silent = Silent::start();
    let uas_port = free_port();
    let uas = Uas::start_on("127.0.0.1", uas_port, "uas_answer.xml", 1, &[]);
    let dns = Dnsmasq::start(&[
        format!("--srv-host=_sip._udp.carrier.test,closed.carrier.test,{closed},10,0"),
        format!(
            "--srv-host=_sip._udp.carrier.test,silent.carrier.test,{},20,0",
            silent.port
        ),
        format!("--srv-host=_sip._udp.carrier.test,uas.carrier.test,{uas_port},30,0"),
        "--host-record=closed.carrier.test,127.0.0.1".into(),
        "--host-record=silent.carrier.test,127.0.0.1".into(),
        "--host-record=uas.carrier.test,127.0.0.1".into(),
    ]);
    let d = Daemon::start(Options {
        policy: NAMED_CARRIER_POLICY.into(),
        extra: format!(
            "{}[routing]\nfailover_after_ms = 1000\n",
            dns.daemon_config()
        ),
        ..Options::default()
    });
    let started = Instant::now();
    let r = Sipp::new(&d, "call_answered.xml")
        .row(call_row("alice", "alice-secret", "+447700900123", "100"))
        .auth_uri(&format!("+447700900123@{REALM}"))
        .limit(Duration::from_secs(30))
        .run();
    assert!(r.success, "{}\ndaemon log:\n{}", r.report(), d.log());
    let took = started.elapsed();
    // Two failovers of at most 1 s each, the DNS and the call's own exchanges.
    assert!(took < Duration::from_secs(8), "the call took {took:?}");
    let uas = uas.finish(Duration::from_secs(20));
    assert!(uas.success, "{}", uas.report());
    let invite = &uas.requests("INVITE")[0];
    assert!(
        invite.starts_with("INVITE sip:+447700900123@carrier.test SIP/2.0"),
        "{invite}"
    );
    // Priority order: the closed port (10), then the silent server (20), then the SIPp
    // server (30).
    assert!(silent.invites() >= 1, "the silent server was never tried");
    let log = d.log();
    let failovers: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("branch failing over to the next target"))
        .collect();
    assert_eq!(failovers.len(), 2, "{log}");
    assert!(
        failovers[0].contains(&format!("127.0.0.1:{}", silent.port)),
        "{}",
        failovers[0]
    );
    assert!(
        failovers[1].contains(&format!("127.0.0.1:{uas_port}")),
        "{}",
        failovers[1]
    );
}

#[test]
fn a_trunk_whose_name_does_not_exist_fails_the_call_at_once() {
    let dns = Dnsmasq::start(&[]);
    let d = Daemon::start(Options {
        policy: NAMED_CARRIER_POLICY.into(),
        extra: dns.daemon_config(),
        ..Options::default()
    });
    let r = Sipp::new(&d, "call_expect_final.xml")
        .row(call_row("alice", "alice-secret", "+447700900123", "480"))
        .auth_uri(&format!("+447700900123@{REALM}"))
        .limit(Duration::from_secs(20))
        .run();
    assert!(r.success, "{}\ndaemon log:\n{}", r.report(), d.log());
    assert!(
        d.log_contains("carrier.test has no SIP server"),
        "{}",
        d.log()
    );
}
