//! Attacks on the digest gate, tried as an attacker would on loopback: a forged source
//! address (a socket bound to another 127.x.y.z address, which is what a spoofed datagram
//! looks like to the daemon), guesses spread over many addresses, a good login mixed in to
//! reset a count, and unauthenticated INVITEs that are never acknowledged.

mod common;

use common::*;
use std::net::UdpSocket;
use std::time::{Duration, Instant};
use switchboard_sip::auth::Algorithm;

const WAIT: Duration = Duration::from_secs(3);

/// Three failures block (a source, or a user), for a minute.
const STRICT: &str =
    "[auth]\nrequired = true\nmax_failures = 3\nfailure_window_secs = 60\nblock_secs = 60\n";

/// A SIP client on its own loopback address.
struct Client {
    sock: UdpSocket,
    ip: String,
    cseq: u32,
}

impl Client {
    fn on(ip: &str) -> Client {
        let sock = UdpSocket::bind((ip, 0)).unwrap_or_else(|e| panic!("bind {ip}: {e}"));
        Client {
            sock,
            ip: ip.to_string(),
            cseq: 0,
        }
    }

    fn send(&self, d: &Daemon, text: &str) {
        self.sock.send_to(text.as_bytes(), d.addr()).unwrap();
    }

    /// The next datagram within `limit`.
    fn recv(&self, limit: Duration) -> Option<String> {
        self.sock.set_read_timeout(Some(limit)).unwrap();
        let mut buf = vec![0u8; 65536];
        let (n, _) = self.sock.recv_from(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    fn exchange(&self, d: &Daemon, text: &str) -> String {
        self.send(d, text);
        self.recv(WAIT)
            .unwrap_or_else(|| panic!("no answer from the daemon:\n{}", d.log()))
    }

    /// A REGISTER of `user` from this address, with `auth` (an Authorization value).
    fn register_text(&mut self, user: &str, auth: Option<&str>) -> String {
        self.cseq += 1;
        let port = self.sock.local_addr().unwrap().port();
        format!(
            "REGISTER sip:{REALM} SIP/2.0\r\nVia: SIP/2.0/UDP {ip}:{port};rport;branch=z9hG4bK-{ip}-{n}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:{user}@{REALM}>;tag=t{n}\r\nTo: <sip:{user}@{REALM}>\r\n\
             Call-ID: reg-{user}-{ip}\r\nCSeq: {n} REGISTER\r\nContact: <sip:{user}@{ip}:{port}>\r\n\
             Expires: 600\r\n{auth}Content-Length: 0\r\n\r\n",
            ip = self.ip,
            n = self.cseq,
            auth = auth
                .map(|a| format!("Authorization: {a}\r\n"))
                .unwrap_or_default(),
        )
    }

    /// A nonce of the daemon's, fetched from this address.
    fn nonce(&mut self, d: &Daemon) -> String {
        let text = self.register_text("alice", None);
        let r = self.exchange(d, &text);
        assert_eq!(status_of(&r), 401, "{r}");
        let challenge = header_values(&r, "WWW-Authenticate").remove(0);
        challenge_param(&challenge, "nonce").unwrap()
    }

    /// A REGISTER of `user` with `password` over `nonce`: the status of its answer.
    fn answer(&mut self, d: &Daemon, user: &str, password: &str, nonce: &str) -> (u16, String) {
        let auth = authorization(user, password, nonce);
        let text = self.register_text(user, Some(&auth));
        let r = self.exchange(d, &text);
        (status_of(&r), r)
    }

    /// A whole registration: challenge, then the answer; the final status.
    fn register(&mut self, d: &Daemon, user: &str, password: &str) -> (u16, String) {
        let nonce = self.nonce(d);
        self.answer(d, user, password, &nonce)
    }
}

/// An Authorization value answering `nonce` for a REGISTER to the realm, as phones write
/// it (MD5, qop=auth).
fn authorization(user: &str, password: &str, nonce: &str) -> String {
    let uri = format!("sip:{REALM}");
    let ha1 = Algorithm::Md5.hash(&format!("{user}:{REALM}:{password}"));
    let ha2 = Algorithm::Md5.hash(&format!("REGISTER:{uri}"));
    let response = Algorithm::Md5.hash(&format!("{ha1}:{nonce}:00000001:c0ffee:auth:{ha2}"));
    format!(
        "Digest username=\"{user}\", realm=\"{REALM}\", nonce=\"{nonce}\", uri=\"{uri}\", \
         response=\"{response}\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"c0ffee\""
    )
}

#[test]
fn a_forged_source_cannot_get_an_address_or_a_trunk_blocked() {
    let policy = format!(
        "{POLICY}\n[trunks.carrier]\nsources = [\"127.0.3.30/32\"]\n\
         dids = {{ \"+441632960000\" = \"user:bob\" }}\n"
    );
    let d = Daemon::start(Options {
        policy,
        extra: format!("{STRICT}trusted_networks = [\"127.0.3.40\"]\n"),
        ..Options::default()
    });
    // The attacker fetches a nonce from its own address, then sends wrong answers over it
    // "from" the victim's address, more than enough to block it.
    let mut attacker = Client::on("127.0.3.20");
    let nonce = attacker.nonce(&d);
    let mut victim = Client::on("127.0.3.31");
    for i in 0..6 {
        let (code, r) = victim.answer(&d, "alice", &format!("guess{i}"), &nonce);
        assert_eq!(code, 401, "a nonce from elsewhere is challenged again: {r}");
    }
    // The victim is not blocked: alice registers from there.
    let (code, r) = victim.register(&d, "alice", "alice-secret");
    assert_eq!(code, 200, "{r}\n{}", d.log());
    // A trunk's address and a trusted network fail as often as they like (with nonces of
    // their own) and are never blocked.
    for ip in ["127.0.3.30", "127.0.3.40"] {
        let mut c = Client::on(ip);
        for i in 0..6 {
            let nonce = c.nonce(&d);
            let (code, r) = c.answer(&d, "bob", &format!("guess{i}"), &nonce);
            assert_eq!(code, 403, "{ip}: {r}");
            assert!(r.contains("authentication failed"), "{ip}: {r}");
        }
        let (code, r) = c.register(&d, "bob", "bob-secret");
        assert_eq!(code, 200, "{ip} was blocked: {r}");
    }
    let log = d.log();
    assert!(!log.contains("auth-block"), "{log}");
    assert!(
        log.contains("auth-fail source=127.0.3.30 user=bob method=REGISTER"),
        "{log}"
    );
}

#[test]
fn guesses_over_many_addresses_block_the_user_but_not_its_phone() {
    let d = Daemon::start(Options::with(STRICT));
    let mut phone = Client::on("127.0.4.2");
    assert_eq!(phone.register(&d, "alice", "alice-secret").0, 200);
    // One guess from each of three addresses: none of them reaches the source limit, but
    // alice's count does.
    for i in 1..=3 {
        let mut guesser = Client::on(&format!("127.0.4.{}", 10 + i));
        let (code, r) = guesser.register(&d, "alice", &format!("guess{i}"));
        assert_eq!(code, 403, "{r}");
    }
    // Now even the right password from a new address is refused — the same answer a
    // wrong one gets, so a guesser cannot tell it was right.
    let mut lucky = Client::on("127.0.4.20");
    let (code, right) = lucky.register(&d, "alice", "alice-secret");
    assert_eq!(code, 403, "{right}");
    assert!(right.contains("too many failed attempts"), "{right}");
    let (_, wrong) = lucky.register(&d, "alice", "guess4");
    assert!(wrong.contains("too many failed attempts"), "{wrong}");
    // Alice's phone, which registered before, keeps registering; the address is not
    // blocked for other users.
    assert_eq!(phone.register(&d, "alice", "alice-secret").0, 200);
    assert_eq!(lucky.register(&d, "bob", "bob-secret").0, 200);
    let log = d.log();
    assert!(
        log.contains("auth-block user=alice source=127.0.4.13 seconds=60"),
        "{log}"
    );
}

#[test]
fn a_good_login_for_another_user_resets_no_count() {
    let d = Daemon::start(Options::with(STRICT));
    let mut c = Client::on("127.0.5.2");
    for i in 0..2 {
        assert_eq!(c.register(&d, "alice", &format!("guess{i}")).0, 403);
    }
    // A login of the attacker's own (bob's) from the same address in between.
    assert_eq!(c.register(&d, "bob", "bob-secret").0, 200);
    assert_eq!(c.register(&d, "alice", "guess2").0, 403);
    // The third failure blocked the address: not even a challenge any more.
    let text = c.register_text("alice", None);
    let r = c.exchange(&d, &text);
    assert_eq!(status_of(&r), 403, "{r}");
    assert!(r.contains("too many failed attempts"), "{r}");
    assert!(d.log().contains("auth-block source=127.0.5.2 seconds=60"));
}

#[test]
fn an_unauthenticated_invite_draws_one_challenge_and_no_retransmission() {
    let d = Daemon::start(Options::default());
    let c = Client::on("127.0.6.2");
    let port = c.sock.local_addr().unwrap().port();
    let invite = format!(
        "INVITE sip:bob@{REALM} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.6.2:{port};rport;branch=z9hG4bK-flood\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@{REALM}>;tag=f1\r\nTo: <sip:bob@{REALM}>\r\n\
         Call-ID: flood-1\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@127.0.6.2:{port}>\r\n\
         Content-Length: 0\r\n\r\n"
    );
    let options = invite
        .replace("INVITE sip:bob", "OPTIONS sip:bob")
        .replace("1 INVITE", "1 OPTIONS")
        .replace("z9hG4bK-flood", "z9hG4bK-probe")
        .replace("flood-1", "probe-1");
    c.send(&d, &invite);
    c.send(&d, &options);
    // The INVITE is never acknowledged. A stateful answer would be retransmitted at 0.5,
    // 1.5 and 3.5 s (Timer G); a stateless one comes once.
    let start = Instant::now();
    let mut got = Vec::new();
    while start.elapsed() < Duration::from_secs(5) {
        if let Some(m) = c.recv(Duration::from_millis(200)) {
            got.push(
                m.lines().next().unwrap_or("").to_string()
                    + " "
                    + &header_values(&m, "CSeq").join(""),
            );
        }
    }
    let challenges = got.iter().filter(|l| l.starts_with("SIP/2.0 407")).count();
    let options_ok = got.iter().filter(|l| l.contains("OPTIONS")).count();
    assert_eq!(challenges, 1, "{got:?}");
    assert_eq!(options_ok, 1, "{got:?}");
    assert_eq!(got.len(), 2, "{got:?}");
    // The INVITE's retransmission is a new request: one more challenge, a fresh nonce.
    c.send(&d, &invite);
    let again = c.recv(WAIT).expect("a second challenge");
    assert!(again.starts_with("SIP/2.0 407"), "{again}");
}

#[test]
fn a_flood_of_new_requests_is_shed_while_dialogs_go_on() {
    // With the default configuration: shedding is on out of the box.
    let d = Daemon::start(Options::default());
    let to = d.addr();
    // The flood: OPTIONS to a user (new requests the core would route; one to the server
    // itself is answered, never shed) from one address, as fast as a socket sends.
    let flooder = Client::on("127.0.7.2");
    let port = flooder.sock.local_addr().unwrap().port();
    let flood = std::thread::spawn({
        let sock = flooder.sock.try_clone().unwrap();
        move || {
            for i in 0..60_000u32 {
                let text = format!(
                    "OPTIONS sip:flood@{REALM} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.7.2:{port};rport;branch=z9hG4bK-f{i}\r\n\
                     Max-Forwards: 70\r\nFrom: <sip:x@{REALM}>;tag=f\r\nTo: <sip:flood@{REALM}>\r\n\
                     Call-ID: flood-{i}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
                );
                let _ = sock.send_to(text.as_bytes(), to);
            }
        }
    });
    // Meanwhile, requests inside a dialog (a BYE with a To tag) keep reaching the core: it
    // answers them itself (481: no such dialog here), never 503.
    let inside = Client::on("127.0.7.3");
    let iport = inside.sock.local_addr().unwrap().port();
    for i in 0..40 {
        let bye = format!(
            "BYE sip:bob@{REALM} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.7.3:{iport};rport;branch=z9hG4bK-b{i}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:alice@{REALM}>;tag=a\r\nTo: <sip:bob@{REALM}>;tag=b\r\n\
             Call-ID: dialog-{i}\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
        );
        inside.send(&d, &bye);
        std::thread::sleep(Duration::from_millis(5));
    }
    flood.join().unwrap();
    let (mut ok, mut shed, mut retry_after) = (0, 0, 0);
    while let Some(m) = flooder.recv(Duration::from_millis(500)) {
        match status_of(&m) {
            503 => {
                shed += 1;
                retry_after += usize::from(header_values(&m, "Retry-After") == ["5"]);
            }
            _ => ok += 1,
        }
    }
    let mut byes = Vec::new();
    while let Some(m) = inside.recv(Duration::from_millis(300)) {
        byes.push(status_of(&m));
    }
    assert!(shed > 0, "nothing shed ({ok} answered)\n{}", d.log());
    assert_eq!(retry_after, shed, "every 503 says when to come back");
    assert!(
        byes.contains(&481),
        "no in-dialog request got through: {byes:?}"
    );
    assert!(
        !byes.contains(&503),
        "an in-dialog request was shed: {byes:?}"
    );
    // Once the flood is over the core catches up at once and serves new requests again.
    let start = Instant::now();
    let text = request("OPTIONS", "");
    let answered = wait_until(Duration::from_secs(2), Duration::from_millis(50), || {
        udp_exchange(d.addr(), text.as_bytes(), Duration::from_millis(200))
            .filter(|r| status_of(r) == 200)
    });
    assert!(
        answered.is_some(),
        "not serving 2 s after the flood\n{}",
        d.log()
    );
    eprintln!(
        "flood: {ok} answered, {shed} shed with 503; in-dialog answers {:?}; serving again after {:?}",
        byes.iter().fold(std::collections::BTreeMap::new(), |mut m, c| {
            *m.entry(*c).or_insert(0) += 1;
            m
        }),
        start.elapsed()
    );
    // Whether the core has caught up is told by the traffic that follows: probes, until
    // the transport says so.
    let caught_up = wait_until(Duration::from_secs(5), Duration::from_millis(50), || {
        udp_exchange(d.addr(), text.as_bytes(), Duration::from_millis(200));
        d.log_contains("the core caught up").then_some(())
    });
    assert!(caught_up.is_some(), "{}", d.log());
    assert!(d.log_contains("the core is behind"));
}
