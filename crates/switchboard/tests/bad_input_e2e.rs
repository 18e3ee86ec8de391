//! Malformed and unsupported requests get the RFC 3261 answer, garbage is dropped, and the
//! daemon keeps serving.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(3);
/// How long to listen for the answer that must not come.
const SILENCE: Duration = Duration::from_millis(500);

fn answer(d: &Daemon, bytes: &[u8]) -> Option<String> {
    udp_exchange(d.addr(), bytes, WAIT)
}

#[test]
fn malformed_messages_get_400_and_daemon_still_serves() {
    let mut d = Daemon::start(Options::with("[limits]\nmax_message_size = 8000\n"));
    let good = request("OPTIONS", "");
    assert_eq!(status_of(&answer(&d, good.as_bytes()).unwrap()), 200);

    let cases: Vec<(&str, String, u16, &str)> = vec![
        (
            "missing Call-ID",
            request("OPTIONS", "").replace("Call-ID: raw-", "X-Old: raw-"),
            400,
            "missing Call-ID",
        ),
        (
            "CSeq method mismatch",
            request("OPTIONS", "").replace("1 OPTIONS", "1 REGISTER"),
            400,
            "does not match",
        ),
        (
            "absurd Content-Length",
            request("OPTIONS", "").replace("Content-Length: 0", "Content-Length: 99999999999"),
            400,
            "Content-Length",
        ),
        (
            "Content-Length past the body",
            request("OPTIONS", "").replace("Content-Length: 0", "Content-Length: 10"),
            400,
            "larger than",
        ),
        (
            "line without colon",
            request("OPTIONS", "this is not a header\r\n"),
            400,
            "without a colon",
        ),
        (
            "Max-Forwards 0",
            request("REGISTER", "Max-Forwards: 0\r\n").replace("Max-Forwards: 70\r\n", ""),
            483,
            "",
        ),
        (
            "a method not served out of a dialog",
            request("REFER", "Refer-To: <sip:bob@switchboard.local>\r\n"),
            501,
            "",
        ),
        (
            "a method of dialogs only, out of a dialog",
            request("BYE", ""),
            481,
            "",
        ),
        ("unknown method", request("FROB", ""), 501, ""),
        (
            "unsupported Require",
            request("OPTIONS", "Require: 100rel, foo\r\n"),
            420,
            "",
        ),
    ];
    for (what, text, code, warning) in cases {
        let r = answer(&d, text.as_bytes()).unwrap_or_else(|| panic!("{what}: no answer"));
        assert_eq!(status_of(&r), code, "{what}:\n{r}");
        if !warning.is_empty() {
            assert!(
                r.contains("Warning: 399 switchboard") && r.contains(warning),
                "{what}:\n{r}"
            );
        }
        if code == 405 || code == 501 {
            assert!(r.contains("\r\nAllow: "), "{what}:\n{r}");
        }
        if code == 420 {
            assert!(
                r.contains("\r\nUnsupported: 100rel, foo\r\n"),
                "{what}:\n{r}"
            );
        }
    }

    // Non-UTF-8 bytes in a header value: refused as a whole, not half-read.
    let mut bytes = request("OPTIONS", "User-Agent: x\r\n").into_bytes();
    let at = bytes
        .windows(13)
        .position(|w| w == b"User-Agent: x")
        .unwrap()
        + 12;
    bytes[at] = 0xff;
    let r = answer(&d, &bytes).unwrap();
    assert_eq!(status_of(&r), 400, "{r}");
    assert!(r.contains("UTF-8"), "{r}");

    // Garbage and truncated messages: no answer can be built, nothing comes back.
    for junk in [
        &b"\x00\x01\x02 garbage"[..],
        b"INVITE",
        b"SIP/2.0 200 OK\r\n\r\n",
        &[0xffu8; 900][..],
    ] {
        assert_eq!(udp_exchange(d.addr(), junk, SILENCE), None);
    }
    // A message over the size limit.
    let big = request("OPTIONS", &format!("X-Pad: {}\r\n", "a".repeat(10_000)));
    assert_eq!(udp_exchange(d.addr(), big.as_bytes(), SILENCE), None);

    // Still serving, over UDP and TCP, and still the same process.
    assert!(d.running(), "the daemon died:\n{}", d.log());
    let again = request("OPTIONS", "");
    assert_eq!(status_of(&answer(&d, again.as_bytes()).unwrap()), 200);
    Sipp::new(&d, "options.xml").ok();
    Sipp::new(&d, "options.xml").tcp().ok();
    Sipp::new(&d, "register.xml")
        .row(row("alice", "alice-secret", 7201, 600))
        .ok();
}

#[test]
fn malformed_message_over_tcp_gets_400_and_the_connection_still_serves_others() {
    let d = Daemon::start(Options::default());
    let bad = request("OPTIONS", "")
        .replace("SIP/2.0/UDP", "SIP/2.0/TCP")
        .replace("1 OPTIONS", "1 REGISTER");
    let r = tcp_exchange(d.addr(), bad.as_bytes(), WAIT).expect("an answer over TCP");
    assert_eq!(status_of(&r), 400, "{r}");
    // Two good requests pipelined on one connection: two answers, in order.
    let one = request("OPTIONS", "").replace("SIP/2.0/UDP", "SIP/2.0/TCP");
    let two = request("OPTIONS", "")
        .replace("SIP/2.0/UDP", "SIP/2.0/TCP")
        .replace("CSeq: 1 OPTIONS", "CSeq: 2 OPTIONS");
    let mut c = SipConn::connect(d.addr(), WAIT).unwrap();
    c.send(format!("{one}{two}").as_bytes()).unwrap();
    let a = c.recv(WAIT).expect("first answer");
    let b = c.recv(WAIT).expect("second answer");
    assert_eq!((status_of(&a), status_of(&b)), (200, 200), "{a}\n{b}");
    assert_eq!(header_values(&a, "CSeq"), vec!["1 OPTIONS"], "{a}");
    assert_eq!(header_values(&b, "CSeq"), vec!["2 OPTIONS"], "{b}");
}

#[test]
fn tcp_stream_without_content_length_gets_400_then_close() {
    let d = Daemon::start(Options::default());
    let mut s = TcpStream::connect(d.addr()).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let text = request("OPTIONS", "").replace("Content-Length: 0\r\n", "");
    s.write_all(text.as_bytes()).unwrap();
    let mut got = String::new();
    let _ = s.read_to_string(&mut got);
    assert_eq!(status_of(&got), 400, "{got}");
    // The daemon still takes new connections.
    let mut s = TcpStream::connect(d.addr()).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(
        request("OPTIONS", "")
            .replace("SIP/2.0/UDP", "SIP/2.0/TCP")
            .as_bytes(),
    )
    .unwrap();
    let mut buf = [0u8; 2048];
    let n = s.read(&mut buf).unwrap();
    assert_eq!(status_of(&String::from_utf8_lossy(&buf[..n])), 200);
}

#[test]
fn tcp_connection_limit_is_enforced() {
    let d = Daemon::start(Options::with("[limits]\nmax_tcp_connections = 2\n"));
    let _a = TcpStream::connect(d.addr()).unwrap();
    let _b = TcpStream::connect(d.addr()).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let mut c = TcpStream::connect(d.addr()).unwrap();
    c.set_read_timeout(Some(WAIT)).unwrap();
    let _ = c.write_all(request("OPTIONS", "").as_bytes());
    let mut buf = [0u8; 64];
    // Refused: closed without an answer.
    assert!(matches!(c.read(&mut buf), Ok(0) | Err(_)));
    assert!(
        d.log().contains("TCP connection refused: limit reached"),
        "{}",
        d.log()
    );
}

/// A TCP connection from loopback address `ip` (all of 127.0.0.0/8 is loopback).
fn connect_from(ip: &str, to: std::net::SocketAddr) -> TcpStream {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    rt.block_on(async {
        let s = tokio::net::TcpSocket::new_v4().unwrap();
        s.bind(format!("{ip}:0").parse().unwrap()).unwrap();
        let stream = s.connect(to).await.unwrap().into_std().unwrap();
        stream.set_nonblocking(false).unwrap();
        stream
    })
}

/// An OPTIONS over `c` from `ip`: its answer's code, 0 when the connection was closed
/// (or nothing came).
fn options_over(c: &mut TcpStream, ip: &str) -> u16 {
    c.set_read_timeout(Some(WAIT)).unwrap();
    let text =
        request("OPTIONS", "").replace("SIP/2.0/UDP 127.0.0.1:9", &format!("SIP/2.0/TCP {ip}:9"));
    if c.write_all(text.as_bytes()).is_err() {
        return 0;
    }
    let mut buf = [0u8; 2048];
    match c.read(&mut buf) {
        Ok(n) if n > 0 => status_of(&String::from_utf8_lossy(&buf[..n])),
        _ => 0,
    }
}

#[test]
fn one_address_fills_its_share_of_tcp_while_another_connects_and_registers() {
    let d = Daemon::start(Options::with(
        "[limits]\nmax_tcp_connections_per_source = 3\n",
    ));
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut c = connect_from("127.0.0.5", d.addr());
        assert_eq!(options_over(&mut c, "127.0.0.5"), 200);
        held.push(c);
    }
    // 127.0.0.5 is at its limit: a further connection is closed unanswered, at once (not
    // after the idle timeout).
    for _ in 0..3 {
        let mut c = connect_from("127.0.0.5", d.addr());
        assert_eq!(options_over(&mut c, "127.0.0.5"), 0, "refused");
    }
    // Another address still connects and registers over TCP, digest and all.
    let port = free_port();
    Sipp::new(&d, "register.xml")
        .row(row("alice", "alice-secret", port, 600))
        .tcp()
        .local_ip("127.0.0.6")
        .ok();
    // 127.0.0.5's connections still work.
    assert_eq!(options_over(&mut held[0], "127.0.0.5"), 200);
    // One refusal line for the address, however many refusals.
    let log = d.log();
    assert_eq!(
        log.matches("TCP connections refused: this address has as many as one may")
            .count(),
        1,
        "{log}"
    );
    assert!(log.contains("from=127.0.0.5"), "{log}");
}

#[test]
fn ipv6_options() {
    if std::net::UdpSocket::bind("[::1]:0").is_err() {
        eprintln!("ipv6_options skipped: ::1 is not configured on this machine's loopback");
        return;
    }
    let d = Daemon::start(Options {
        ipv6: true,
        ..Options::default()
    });
    for listen in [
        format!("udp:[::1]:{}", d.port),
        format!("tcp:[::1]:{}", d.port),
    ] {
        assert!(
            d.log().contains(&listen),
            "{listen} not in the ready line:\n{}",
            d.log()
        );
    }
    let to = d.addr6();
    let text = request("OPTIONS", "").replace("127.0.0.1:9", "[::1]:9");
    let r = udp_exchange(to, text.as_bytes(), WAIT).expect("an answer over IPv6");
    assert_eq!(status_of(&r), 200, "{r}");
    // The IPv6 request-URI form parses too.
    let text = request("OPTIONS", "")
        .replace("127.0.0.1:9", "[::1]:9")
        .replace(
            "OPTIONS sip:switchboard.local",
            &format!("OPTIONS sip:[::1]:{}", d.port),
        );
    let r = udp_exchange(to, text.as_bytes(), WAIT).expect("an answer over IPv6");
    assert_eq!(status_of(&r), 200, "{r}");
    // SIPp over IPv6, UDP and TCP.
    Sipp::new(&d, "options.xml").ipv6().ok();
    Sipp::new(&d, "options.xml").ipv6().tcp().ok();
    let tcp = request("OPTIONS", "").replace("SIP/2.0/UDP 127.0.0.1:9", "SIP/2.0/TCP [::1]:9");
    let r = tcp_exchange(to, tcp.as_bytes(), WAIT).expect("an answer over TCP/IPv6");
    assert_eq!(status_of(&r), 200, "{r}");
}

#[test]
fn retransmitted_register_is_answered_from_the_transaction() {
    let d = Daemon::start(Options::default());
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = [0u8; 4096];
    let mut exchange = |text: &str| {
        sock.send_to(text.as_bytes(), d.addr()).unwrap();
        let (n, _) = sock.recv_from(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).to_string()
    };
    // Unauthenticated, it is answered statelessly: a copy of the request is a new request,
    // challenged again with a fresh nonce (nothing was kept of the first).
    let text = request("REGISTER", "Contact: <sip:alice@127.0.0.1:9>\r\n");
    let first = exchange(&text);
    let second = exchange(&text);
    assert_eq!(status_of(&first), 401, "{first}");
    assert_eq!(status_of(&second), 401, "{second}");
    let nonce = |r: &str| challenge_param(&header_values(r, "WWW-Authenticate")[0], "nonce");
    assert_ne!(nonce(&first), nonce(&second));
    // Answered, it makes a transaction: its copy gets the same 200, To tag included.
    let nonce = nonce(&second).unwrap();
    let auth = register_authorization("alice", "alice-secret", &nonce);
    let text = request(
        "REGISTER",
        &format!("Contact: <sip:alice@127.0.0.1:9>\r\n{auth}"),
    );
    let first = exchange(&text);
    let second = exchange(&text);
    assert_eq!(status_of(&first), 200, "{first}");
    assert_eq!(first, second);
}

/// Control characters a request carries (ESC, NUL, DEL, C1) never reach a header this
/// server writes nor its log raw.
#[test]
fn control_characters_are_never_echoed_raw() {
    let mut d = Daemon::start(Options::default());
    let raw_controls =
        |s: &str| -> Vec<char> { s.chars().filter(|c| c.is_control() && *c != '\n').collect() };
    // A bad header whose value is quoted in the 400's Warning.
    let evil = "1\u{1b}[2J\u{0}X\u{9b}31m\u{7f}";
    let text =
        request("OPTIONS", "").replace("Content-Length: 0", &format!("Content-Length: {evil}"));
    let r = answer(&d, text.as_bytes()).expect("an answer to the bad request");
    assert_eq!(status_of(&r), 400, "{r:?}");
    let warning = r
        .split("\r\n")
        .find(|l| l.starts_with("Warning: 399 switchboard"))
        .unwrap_or_else(|| panic!("no Warning in {r:?}"));
    assert!(warning.contains("bad Content-Length"), "{warning:?}");
    assert!(raw_controls(warning).is_empty(), "{warning:?}");
    assert!(raw_controls(&r.replace("\r\n", "")).is_empty(), "{r:?}");
    // Control characters anywhere in the header section: refused by the scanner (400,
    // nothing echoed), before any part of the daemon reads the header.
    let text = request("OPTIONS", &format!("Require: x{evil}\r\n"));
    let r = answer(&d, text.as_bytes()).expect("an answer to the Require");
    assert_eq!(status_of(&r), 400, "{r:?}");
    assert!(r.contains("control character"), "{r:?}");
    assert!(raw_controls(&r.replace("\r\n", "")).is_empty(), "{r:?}");
    // In a header the response would copy (Call-ID): no answer at all rather than an echo.
    let text = request("OPTIONS", "").replace("Call-ID: ", &format!("Call-ID: {evil}"));
    let none = udp_exchange(d.addr(), text.as_bytes(), Duration::from_millis(500));
    assert_eq!(none, None);
    d.wait_for_log("bad request answered", WAIT);
    let log = d.log();
    assert!(raw_controls(&log).is_empty(), "{log:?}");
}

/// A flood of refused requests writes a bounded number of log lines, then one line per
/// interval with how many were left out: nothing is lost from the count.
#[test]
fn a_flood_of_refusals_is_logged_a_few_times_with_a_count_of_the_rest() {
    const FLOOD: usize = 2000;
    let d = Daemon::start(Options::default());
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = [0u8; 4096];
    let start = std::time::Instant::now();
    for _ in 0..FLOOD {
        let text = request("OPTIONS", "Require: foo\r\n");
        sock.send_to(text.as_bytes(), d.addr()).unwrap();
        let (n, _) = sock.recv_from(&mut buf).expect("every request is answered");
        assert_eq!(status_of(&String::from_utf8_lossy(&buf[..n])), 420);
    }
    let took = start.elapsed();
    let count = |log: &str| -> (usize, u64) {
        let written = log
            .lines()
            .filter(|l| l.contains("request refused") && !l.contains("log lines suppressed"))
            .count();
        let suppressed = log
            .lines()
            .filter(|l| {
                l.contains("log lines suppressed") && l.contains("kind=\"request refused\"")
            })
            .filter_map(|l| l.split("suppressed=").nth(1))
            .filter_map(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .sum();
        (written, suppressed)
    };
    let log = wait_until(Duration::from_secs(15), Duration::from_millis(200), || {
        let log = d.log();
        let (w, s) = count(&log);
        (w as u64 + s >= FLOOD as u64).then_some(log)
    })
    .unwrap_or_else(|| panic!("no count of suppressed lines:\n{}", d.log()));
    let (written, suppressed) = count(&log);
    eprintln!("{FLOOD} refusals in {took:?}: {written} lines written, {suppressed} suppressed");
    // 20 lines per 5 s interval the flood lasted, at most.
    let windows = took.as_secs() as usize / 5 + 1;
    assert!(
        written <= 20 * windows,
        "{written} lines in {took:?} ({suppressed} suppressed)"
    );
    assert_eq!(written as u64 + suppressed, FLOOD as u64);
}
