//! The locator (`switchboard_sip::locate`) fed by real DNS lookups (`switchboard_net::dns`)
//! from a dnsmasq started on a loopback port with the records each test needs (Debian's
//! `dnsmasq-base`, installed by `scripts/install-test-deps`).
//!
//! Every dnsmasq is owned by a guard that kills it, also when the test fails; every wait
//! is bounded; only loopback addresses are used.

use std::net::UdpSocket;
use std::time::{Duration, Instant};
use switchboard_net::dns::{Dns, DnsConfig, Resolver};
use switchboard_net::Transport;
use switchboard_sip::entropy::Entropy;
use switchboard_sip::locate::{
    Answer, LocateError, Locator, LocatorConfig, Query, RecordType, Resolution, Resolved, Target,
};

#[path = "../../switchboard/tests/common/dns.rs"]
mod dnsmasq;
use dnsmasq::Dnsmasq;

/// A resolver's settings for asking `server` alone.
fn config(server: &Dnsmasq) -> DnsConfig {
    DnsConfig {
        servers: vec![server.addr()],
        timeout: Duration::from_millis(1000),
        attempts: 1,
    }
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// A locator for IPv4 targets (dnsmasq serves A records here) with a fixed seed.
fn locator(seed: u8) -> Locator {
    let config = LocatorConfig {
        ipv6: false,
        ..LocatorConfig::default()
    };
    Locator::new(config, Entropy::from_seed([seed; 32]))
}

/// Resolves `uri` as the daemon will: the locator's questions looked up by the DNS task,
/// its answers handed back, until the resolution ends. The outcome and the questions.
async fn resolve(
    loc: &mut Locator,
    dns: &mut (Dns, tokio::sync::mpsc::UnboundedReceiver<(Query, Answer)>),
    uri: &str,
    now: Instant,
) -> (Result<Resolved, LocateError>, Vec<Query>) {
    let id = match loc.resolve_uri(uri, now) {
        Resolution::Done(outcome) => return (outcome, Vec::new()),
        Resolution::Pending(id) => id,
    };
    let mut asked = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        while let Some(q) = loc.poll_query() {
            asked.push(q.clone());
            dns.0.ask(q);
        }
        if let Some((got, outcome)) = loc.poll_resolved() {
            assert_eq!(got, id);
            return (outcome, asked);
        }
        let (q, a) = tokio::time::timeout_at(deadline, dns.1.recv())
            .await
            .expect("answers within 10 s")
            .expect("the DNS task runs");
        loc.handle_answer(q, a, now);
    }
}

fn udp(addr: &str) -> Target {
    Target {
        transport: Transport::Udp,
        addr: addr.parse().unwrap(),
    }
}

fn tcp(addr: &str) -> Target {
    Target {
        transport: Transport::Tcp,
        addr: addr.parse().unwrap(),
    }
}

/// carrier.test: NAPTR for UDP (preferred) and TCP, SRV with priorities and weights, A.
fn carrier() -> Vec<String> {
    args(&[
        "--naptr-record=carrier.test,10,20,S,SIP+D2T,,_sip._tcp.carrier.test",
        "--naptr-record=carrier.test,10,10,S,SIP+D2U,,_sip._udp.carrier.test",
        "--naptr-record=carrier.test,5,10,S,SIPS+D2T,,_sips._tcp.carrier.test",
        "--srv-host=_sip._udp.carrier.test,a.carrier.test,5060,10,60",
        "--srv-host=_sip._udp.carrier.test,b.carrier.test,5062,10,30",
        "--srv-host=_sip._udp.carrier.test,c.carrier.test,5064,10,10",
        "--srv-host=_sip._udp.carrier.test,d.carrier.test,5066,20,100",
        "--srv-host=_sip._tcp.carrier.test,a.carrier.test,5070,10,0",
        "--srv-host=_sips._tcp.carrier.test,a.carrier.test,5071,10,0",
        "--host-record=a.carrier.test,127.0.0.2",
        "--host-record=b.carrier.test,127.0.0.3",
        "--host-record=c.carrier.test,127.0.0.4",
        "--host-record=d.carrier.test,127.0.0.5",
        "--host-record=carrier.test,127.0.0.9",
    ])
}

#[tokio::test]
async fn naptr_then_srv_then_addresses() {
    let server = Dnsmasq::start(&carrier());
    let mut dns = Dns::start(&config(&server)).unwrap();
    let mut loc = locator(1);
    let now = Instant::now();
    let (outcome, asked) = resolve(&mut loc, &mut dns, "sip:carrier.test", now).await;
    let r = outcome.unwrap();
    // UDP (NAPTR preference 10) before TCP; SIPS+D2T skipped (no TLS yet); priority 10
    // before 20; the TCP SRV's own port.
    assert_eq!(r.targets.len(), 5, "{:?}", r.targets);
    let mut first_three: Vec<Target> = r.targets[..3].to_vec();
    first_three.sort_by_key(|t| t.addr);
    assert_eq!(
        first_three,
        [
            udp("127.0.0.2:5060"),
            udp("127.0.0.3:5062"),
            udp("127.0.0.4:5064")
        ]
    );
    assert_eq!(
        r.targets[3..],
        [udp("127.0.0.5:5066"), tcp("127.0.0.2:5070")]
    );
    assert!(!asked.iter().any(|q| q.name.starts_with("_sips")));
    // The records' TTL (dnsmasq's --local-ttl) bounds the list.
    assert_eq!(r.valid_until, Some(now + Duration::from_secs(60)));
    // Within it, the cache answers: no question.
    let (outcome, asked) = resolve(&mut loc, &mut dns, "sip:carrier.test", now).await;
    assert!(outcome.is_ok() && asked.is_empty(), "{asked:?}");
}

#[tokio::test]
async fn a_transport_parameter_and_a_port() {
    let server = Dnsmasq::start(&carrier());
    let mut dns = Dns::start(&config(&server)).unwrap();
    let mut loc = locator(1);
    let now = Instant::now();
    let (outcome, asked) = resolve(&mut loc, &mut dns, "sip:carrier.test;transport=tcp", now).await;
    assert_eq!(outcome.unwrap().targets, [tcp("127.0.0.2:5070")]);
    assert_eq!(
        asked[0],
        Query::new("_sip._tcp.carrier.test", RecordType::Srv)
    );
    // A port: the host's own address, no NAPTR or SRV.
    let (outcome, asked) = resolve(&mut loc, &mut dns, "sip:carrier.test:5080", now).await;
    assert_eq!(outcome.unwrap().targets, [udp("127.0.0.9:5080")]);
    assert_eq!(asked, [Query::new("carrier.test", RecordType::A)]);
}

#[tokio::test]
async fn srv_priority_and_weight_order() {
    let server = Dnsmasq::start(&carrier());
    let mut dns = Dns::start(&config(&server)).unwrap();
    let mut loc = locator(7);
    let t0 = Instant::now();
    let runs = 600;
    let mut first = [0usize; 3];
    for i in 0..runs {
        // Past the TTL each time: every run is looked up anew from dnsmasq.
        let now = t0 + Duration::from_secs(61 * i as u64);
        let (outcome, asked) =
            resolve(&mut loc, &mut dns, "sip:carrier.test;transport=udp", now).await;
        assert!(!asked.is_empty());
        let t = outcome.unwrap().targets;
        assert_eq!(t.len(), 4);
        // Priority 20 always after the three of priority 10.
        assert_eq!(t[3], udp("127.0.0.5:5066"));
        match t[0] {
            x if x == udp("127.0.0.2:5060") => first[0] += 1,
            x if x == udp("127.0.0.3:5062") => first[1] += 1,
            x if x == udp("127.0.0.4:5064") => first[2] += 1,
            x => panic!("{x} first"),
        }
    }
    // Weights 60, 30, 10: each first in about that share of the runs (±6 points, beyond
    // four standard deviations at 600 runs).
    for (count, weight) in first.iter().zip([60.0, 30.0, 10.0]) {
        let share = *count as f64 * 100.0 / runs as f64;
        assert!((share - weight).abs() < 6.0, "{first:?}");
    }
}

#[tokio::test]
async fn failover_to_the_second_target_when_the_first_does_not_answer() {
    // Two servers of one domain on loopback ports: the preferred one never answers.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let live = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (silent_port, live_port) = (
        silent.local_addr().unwrap().port(),
        live.local_addr().unwrap().port(),
    );
    let server = Dnsmasq::start(&[
        format!("--srv-host=_sip._udp.failover.test,one.failover.test,{silent_port},10,0"),
        format!("--srv-host=_sip._udp.failover.test,two.failover.test,{live_port},20,0"),
        "--host-record=one.failover.test,127.0.0.1".into(),
        "--host-record=two.failover.test,127.0.0.1".into(),
    ]);
    live.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let responder = std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        if let Ok((n, from)) = live.recv_from(&mut buf) {
            live.send_to(&buf[..n], from).unwrap();
        }
    });
    let mut dns = Dns::start(&config(&server)).unwrap();
    let mut loc = locator(1);
    let t0 = Instant::now();
    let (outcome, _) = resolve(&mut loc, &mut dns, "sip:failover.test", t0).await;
    let targets = outcome.unwrap().targets;
    assert_eq!(targets.len(), 2);
    assert_eq!(targets[0].addr.port(), silent_port);

    // What the core will do: each target in turn, the next one on no answer within the
    // per-target time; the one that failed is reported.
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut answered_by = None;
    for t in &targets {
        client.send_to(b"OPTIONS", t.addr).unwrap();
        let mut buf = [0u8; 64];
        match client.recv_from(&mut buf) {
            Ok((_, from)) => {
                loc.report_success(*t);
                answered_by = Some(from);
                break;
            }
            Err(_) => loc.report_failure(*t, None, t0),
        }
    }
    assert_eq!(answered_by.map(|a| a.port()), Some(live_port));
    responder.join().unwrap();
    drop(silent);
    // The next list puts the silent server last while it is blocked (30 s), then not.
    let (outcome, _) = resolve(&mut loc, &mut dns, "sip:failover.test", t0).await;
    assert_eq!(outcome.unwrap().targets[0].addr.port(), live_port);
    let later = t0 + Duration::from_secs(30);
    let (outcome, _) = resolve(&mut loc, &mut dns, "sip:failover.test", later).await;
    assert_eq!(outcome.unwrap().targets[0].addr.port(), silent_port);
}

#[tokio::test]
async fn ttl_expiry_brings_the_new_records() {
    let records = |ip: &str| {
        vec![
            format!("--host-record=h.ttl.test,{ip},2"), // a TTL of 2 s
            "--srv-host=_sip._udp.ttl.test,h.ttl.test,5060,1,1".into(),
        ]
    };
    let mut server = Dnsmasq::start(&records("127.0.0.2"));
    let mut dns = Dns::start(&config(&server)).unwrap();
    let mut loc = locator(1);
    let t0 = Instant::now();
    let (outcome, _) = resolve(&mut loc, &mut dns, "sip:ttl.test;transport=udp", t0).await;
    let r = outcome.unwrap();
    assert_eq!(r.targets, [udp("127.0.0.2:5060")]);
    assert_eq!(r.valid_until, Some(t0 + Duration::from_secs(2)));

    // The server restarts with another address for the host.
    server.restart(&records("127.0.0.3"), 60);
    // Within the TTL the cached address stands, and nothing is asked.
    let now = t0 + Duration::from_millis(1999);
    let (outcome, asked) = resolve(&mut loc, &mut dns, "sip:ttl.test;transport=udp", now).await;
    assert_eq!(outcome.unwrap().targets, [udp("127.0.0.2:5060")]);
    assert!(asked.is_empty(), "{asked:?}");
    // Past it, only the expired record is asked again, and the new address comes.
    let now = t0 + Duration::from_secs(2);
    let (outcome, asked) = resolve(&mut loc, &mut dns, "sip:ttl.test;transport=udp", now).await;
    assert_eq!(outcome.unwrap().targets, [udp("127.0.0.3:5060")]);
    assert_eq!(asked, [Query::new("h.ttl.test", RecordType::A)]);
    drop(server);
}

#[tokio::test]
async fn a_name_that_does_not_exist() {
    let server = Dnsmasq::start(&carrier());
    let resolver = Resolver::new(&config(&server)).unwrap();
    let answer = resolver
        .lookup(&Query::new("nowhere.test", RecordType::A))
        .await;
    assert!(matches!(answer, Answer::NoRecords { .. }), "{answer:?}");
    let mut dns = Dns::with_resolver(resolver);
    let mut loc = locator(1);
    let (outcome, asked) = resolve(&mut loc, &mut dns, "sip:nowhere.test", Instant::now()).await;
    let e = outcome.unwrap_err();
    assert_eq!(e, LocateError::NoSuchName("nowhere.test".into()));
    assert!(
        e.to_string().contains("nowhere.test has no SIP server"),
        "{e}"
    );
    assert_eq!(asked.len(), 4); // NAPTR, SRV udp and tcp, A
}

#[tokio::test]
async fn a_server_that_does_not_answer() {
    // A UDP socket that never answers, and nothing on its TCP port.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let config = DnsConfig {
        servers: vec![silent.local_addr().unwrap()],
        timeout: Duration::from_millis(200),
        attempts: 1,
    };
    let started = tokio::time::Instant::now();
    let mut dns = Dns::start(&config).unwrap();
    let mut loc = locator(1);
    let (outcome, asked) = resolve(&mut loc, &mut dns, "sip:carrier.test", Instant::now()).await;
    let elapsed = started.elapsed();
    match outcome {
        Err(LocateError::Failed { query, why }) => {
            assert_eq!(query, Query::new("carrier.test", RecordType::Naptr));
            assert!(!why.is_empty());
        }
        other => panic!("{other:?}"),
    }
    // NAPTR and both SRV asked at once, each given up within its bound; nothing guessed.
    assert_eq!(asked.len(), 3, "{asked:?}");
    assert!(elapsed < config.lookup_bound() * 2, "{elapsed:?}");
    assert_eq!(dns.0.waiting(), 0);
    drop(silent);
}

#[tokio::test]
async fn many_questions_at_once_each_get_one_answer() {
    let server = Dnsmasq::start(&carrier());
    let (dns, mut answers) = Dns::start(&config(&server)).unwrap();
    let names = ["a", "b", "c", "d", "e"];
    let mut asked = Vec::new();
    for i in 0..200 {
        let q = Query::new(
            format!("{}.carrier.test", names[i % names.len()]),
            RecordType::A,
        );
        dns.ask(q.clone());
        asked.push(q);
    }
    let mut got = Vec::new();
    while got.len() < asked.len() {
        let (q, a) = tokio::time::timeout(Duration::from_secs(10), answers.recv())
            .await
            .expect("answers within 10 s")
            .unwrap();
        let known = !q.name.starts_with("e.");
        assert_eq!(matches!(a, Answer::Records { .. }), known, "{q}: {a:?}");
        got.push(q);
    }
    asked.sort();
    got.sort();
    assert_eq!(got, asked);
    assert_eq!(dns.waiting(), 0);
}
