use super::*;

fn locator(seed: u8) -> Locator {
    Locator::new(LocatorConfig::default(), Entropy::from_seed([seed; 32]))
}

fn q(name: &str, record_type: RecordType) -> Query {
    Query::new(name, record_type)
}

fn srv(priority: u16, weight: u16, port: u16, target: &str) -> Record {
    Record::Srv(Srv {
        priority,
        weight,
        port,
        target: target.into(),
    })
}

fn naptr(order: u16, preference: u16, flags: &str, services: &str, replacement: &str) -> Record {
    Record::Naptr(Naptr {
        order,
        preference,
        flags: flags.into(),
        services: services.into(),
        regexp: String::new(),
        replacement: replacement.into(),
    })
}

fn records(records: Vec<Record>, ttl_secs: u64) -> Answer {
    Answer::Records {
        records,
        ttl: Duration::from_secs(ttl_secs),
    }
}

fn ips(list: &[&str], ttl_secs: u64) -> Answer {
    records(
        list.iter()
            .map(|ip| Record::Ip(ip.parse().unwrap()))
            .collect(),
        ttl_secs,
    )
}

fn target(transport: Transport, addr: &str) -> Target {
    Target {
        transport,
        addr: addr.parse().unwrap(),
    }
}

fn udp(addr: &str) -> Target {
    target(Transport::Udp, addr)
}

fn tcp(addr: &str) -> Target {
    target(Transport::Tcp, addr)
}

/// A fake DNS: answers every question from its table, "no records" for the rest.
#[derive(Default)]
struct Zone(HashMap<Query, Answer>);

impl Zone {
    fn with(mut self, name: &str, record_type: RecordType, answer: Answer) -> Zone {
        self.0.insert(q(name, record_type), answer);
        self
    }

    fn answer(&self, query: &Query) -> Answer {
        self.0
            .get(query)
            .cloned()
            .unwrap_or(Answer::NoRecords { ttl: None })
    }
}

/// Resolves `uri` against `zone`, answering the questions in the order they are handed
/// out; the outcome and the questions asked.
fn run(
    loc: &mut Locator,
    zone: &Zone,
    uri: &str,
    now: Instant,
) -> (Result<Resolved, LocateError>, Vec<Query>) {
    let id = match loc.resolve_uri(uri, now) {
        Resolution::Done(outcome) => {
            assert_eq!(loc.poll_query(), None, "done at once, yet a question");
            return (outcome, Vec::new());
        }
        Resolution::Pending(id) => id,
    };
    let mut asked = Vec::new();
    for _ in 0..100 {
        while let Some(query) = loc.poll_query() {
            asked.push(query.clone());
            let answer = zone.answer(&query);
            loc.handle_answer(query, answer, now);
        }
        if let Some((got, outcome)) = loc.poll_resolved() {
            assert_eq!(got, id);
            return (outcome, asked);
        }
    }
    panic!("never resolved; asked {asked:?}");
}

fn targets(outcome: Result<Resolved, LocateError>) -> Vec<Target> {
    outcome.unwrap().targets
}

/// carrier.test as a carrier publishes it: NAPTR for UDP and TCP, SRV with two servers,
/// each with an IPv4 address.
fn carrier() -> Zone {
    Zone::default()
        .with(
            "carrier.test",
            RecordType::Naptr,
            records(
                vec![
                    naptr(10, 20, "S", "SIP+D2T", "_sip._tcp.carrier.test."),
                    naptr(10, 10, "s", "SIP+D2U", "_sip._udp.carrier.test."),
                ],
                300,
            ),
        )
        .with(
            "_sip._udp.carrier.test",
            RecordType::Srv,
            records(
                vec![
                    srv(20, 0, 5062, "b.carrier.test."),
                    srv(10, 0, 5060, "a.carrier.test."),
                ],
                300,
            ),
        )
        .with(
            "_sip._tcp.carrier.test",
            RecordType::Srv,
            records(vec![srv(10, 0, 5060, "a.carrier.test.")], 300),
        )
        .with("a.carrier.test", RecordType::A, ips(&["192.0.2.1"], 300))
        .with("b.carrier.test", RecordType::A, ips(&["192.0.2.2"], 300))
}

#[test]
fn destinations_read_from_uris() {
    let d =
        Destination::from_uri("<sip:alice;x=1@Carrier.TEST.:5070;transport=TCP;lr?h=v>").unwrap();
    assert_eq!(
        d,
        Destination {
            secure: false,
            host: Host::Name("carrier.test".into()),
            port: Some(5070),
            transport: Some(Transport::Tcp),
        }
    );
    let d = Destination::from_uri("sips:[2001:db8::1]").unwrap();
    assert!(d.secure);
    assert_eq!(d.host, Host::Ip("2001:db8::1".parse().unwrap()));
    assert_eq!((d.port, d.transport), (None, None));
    let d = Destination::from_uri("SIP:bob:secret@192.0.2.7:5099").unwrap();
    assert_eq!(d.host, Host::Ip("192.0.2.7".parse().unwrap()));
    assert_eq!(d.port, Some(5099));
    // maddr names the host to reach; port and transport stay the URI's.
    let d = Destination::from_uri("sip:carrier.test:5080;maddr=192.0.2.9;transport=udp").unwrap();
    assert_eq!(d.host, Host::Ip("192.0.2.9".parse().unwrap()));
    assert_eq!((d.port, d.transport), (Some(5080), Some(Transport::Udp)));
    let d = Destination::from_uri("sip:x@carrier.test;maddr=Proxy.Carrier.Test").unwrap();
    assert_eq!(d.host, Host::Name("proxy.carrier.test".into()));

    for bad in [
        "carrier.test",
        "tel:+15551234",
        "sip:",
        "sip:alice@",
        "sip:carrier.test:0",
        "sip:carrier.test:99999",
        "sip:carrier.test:50x",
        "sip:[2001:db8::1",
        "sip:car rier.test",
        "sip:carrier..test",
        "sip:carrier.test;maddr=",
    ] {
        let e = Destination::from_uri(bad).unwrap_err();
        assert!(matches!(e, LocateError::BadUri { .. }), "{bad}: {e:?}");
    }
    for (uri, says) in [
        ("sip:carrier.test;transport=tls", "transport \"tls\""),
        ("sip:carrier.test;transport=SCTP", "transport \"sctp\""),
        ("sip:carrier.test;transport=ws", "transport \"ws\""),
    ] {
        let e = Destination::from_uri(uri).unwrap_err();
        assert_eq!(e, LocateError::Unsupported(says.into()));
        assert!(e.to_string().contains("UDP and TCP"), "{e}");
    }
    let long = format!("sip:{}.test", "a".repeat(64));
    assert!(Destination::from_uri(&long).is_err());
    assert_eq!(
        normalize_name("A-b_c.Example."),
        Some("a-b_c.example".into())
    );
    assert_eq!(normalize_name("."), None);
}

#[test]
fn a_numeric_address_needs_no_lookup() {
    let mut loc = locator(1);
    let now = Instant::now();
    for (uri, want) in [
        ("sip:192.0.2.1", udp("192.0.2.1:5060")),
        ("sip:alice@192.0.2.1:5080", udp("192.0.2.1:5080")),
        (
            "<sip:[2001:db8::1]:5070;transport=tcp>",
            tcp("[2001:db8::1]:5070"),
        ),
        ("sip:carrier.test;maddr=192.0.2.9", udp("192.0.2.9:5060")),
    ] {
        let (outcome, asked) = run(&mut loc, &Zone::default(), uri, now);
        assert!(asked.is_empty());
        assert_eq!(
            outcome,
            Ok(Resolved {
                targets: vec![want],
                valid_until: None
            }),
            "{uri}"
        );
    }
}

#[test]
fn sips_is_refused_until_tls() {
    let mut loc = locator(1);
    for uri in ["sips:carrier.test", "sips:192.0.2.1:5061"] {
        let (outcome, asked) = run(&mut loc, &carrier(), uri, Instant::now());
        assert!(asked.is_empty());
        assert!(
            matches!(outcome, Err(LocateError::Unsupported(ref s)) if s.contains("TLS")),
            "{outcome:?}"
        );
    }
}

#[test]
fn a_port_means_addresses_only() {
    let zone = carrier()
        .with("carrier.test", RecordType::A, ips(&["192.0.2.10"], 60))
        .with("carrier.test", RecordType::Aaaa, ips(&["2001:db8::10"], 60));
    let mut loc = locator(1);
    let now = Instant::now();
    let (outcome, asked) = run(&mut loc, &zone, "sip:carrier.test:5070", now);
    let mut asked_sorted = asked.clone();
    asked_sorted.sort();
    assert_eq!(
        asked_sorted,
        [
            q("carrier.test", RecordType::A),
            q("carrier.test", RecordType::Aaaa)
        ]
    );
    let r = outcome.unwrap();
    assert_eq!(
        r.targets,
        [udp("[2001:db8::10]:5070"), udp("192.0.2.10:5070")]
    );
    assert_eq!(r.valid_until, Some(now + Duration::from_secs(60)));
    let (outcome, asked) = run(&mut loc, &zone, "sip:carrier.test:5070;transport=tcp", now);
    assert!(asked.is_empty(), "cached: {asked:?}");
    assert_eq!(
        targets(outcome),
        [tcp("[2001:db8::10]:5070"), tcp("192.0.2.10:5070")]
    );
}

#[test]
fn a_transport_parameter_means_srv_for_that_transport() {
    let mut loc = locator(1);
    let now = Instant::now();
    let (outcome, asked) = run(&mut loc, &carrier(), "sip:carrier.test;transport=tcp", now);
    assert_eq!(
        asked,
        [
            q("_sip._tcp.carrier.test", RecordType::Srv),
            q("a.carrier.test", RecordType::Aaaa),
            q("a.carrier.test", RecordType::A),
        ]
    );
    assert_eq!(targets(outcome), [tcp("192.0.2.1:5060")]);

    // No SRV record for the transport: the host's addresses at the default port.
    let zone = Zone::default().with("pbx.test", RecordType::A, ips(&["192.0.2.5"], 60));
    let (outcome, asked) = run(&mut loc, &zone, "sip:pbx.test;transport=tcp", now);
    assert_eq!(asked[0], q("_sip._tcp.pbx.test", RecordType::Srv));
    assert_eq!(targets(outcome), [tcp("192.0.2.5:5060")]);
}

#[test]
fn naptr_then_srv_then_addresses() {
    let mut loc = locator(1);
    let now = Instant::now();
    let (outcome, asked) = run(&mut loc, &carrier(), "sip:carrier.test", now);
    // NAPTR and the fallback SRV questions go out together, then the SRV targets' addresses.
    assert_eq!(
        asked[..3],
        [
            q("carrier.test", RecordType::Naptr),
            q("_sip._udp.carrier.test", RecordType::Srv),
            q("_sip._tcp.carrier.test", RecordType::Srv),
        ]
    );
    assert_eq!(asked.len(), 7, "{asked:?}"); // + A and AAAA of a. and b.
                                             // UDP first (preference 10), its priorities in order, then TCP.
    assert_eq!(
        targets(outcome),
        [
            udp("192.0.2.1:5060"),
            udp("192.0.2.2:5062"),
            tcp("192.0.2.1:5060")
        ]
    );
}

#[test]
fn naptr_order_comes_before_preference_and_unusable_records_are_skipped() {
    let zone = carrier().with(
        "carrier.test",
        RecordType::Naptr,
        records(
            vec![
                naptr(20, 1, "S", "SIP+D2U", "_sip._udp.carrier.test"),
                naptr(10, 90, "S", "SIP+D2T", "_sip._tcp.carrier.test"),
                naptr(5, 1, "S", "SIPS+D2T", "_sips._tcp.carrier.test"), // TLS
                naptr(5, 1, "S", "SIP+D2S", "_sip._sctp.carrier.test"),  // SCTP
                naptr(5, 1, "S", "SIP+D2W", "_sip._ws.carrier.test"),    // WebSocket
                naptr(5, 1, "U", "E2U+sip", "!^.*$!sip:x@y!"),           // ENUM
                naptr(5, 1, "A", "SIP+D2U", "a.carrier.test"),           // not "S"
                naptr(5, 1, "S", "SIP+D2U", "bad name!"),
            ],
            300,
        ),
    );
    let mut loc = locator(1);
    let (outcome, asked) = run(&mut loc, &zone, "sip:carrier.test", Instant::now());
    assert!(!asked
        .iter()
        .any(|q| q.name.contains("sips") || q.name.contains("sctp")));
    assert_eq!(
        targets(outcome),
        [
            tcp("192.0.2.1:5060"),
            udp("192.0.2.1:5060"),
            udp("192.0.2.2:5062")
        ]
    );

    // A record with a regular expression is not for SRV.
    let mut with_regexp = Naptr {
        order: 1,
        preference: 1,
        flags: "S".into(),
        services: "SIP+D2T".into(),
        regexp: "!^.*$!_sip._tcp.carrier.test!".into(),
        replacement: ".".into(),
    };
    let zone = carrier().with(
        "carrier.test",
        RecordType::Naptr,
        records(vec![Record::Naptr(with_regexp.clone())], 300),
    );
    let (outcome, _) = run(&mut locator(1), &zone, "sip:carrier.test", Instant::now());
    // Unusable NAPTR: the fallback SRV questions, UDP first.
    assert_eq!(targets(outcome)[0], udp("192.0.2.1:5060"));
    with_regexp.regexp.clear();
    with_regexp.replacement = "_sip._tcp.carrier.test".into();
    let zone = carrier().with(
        "carrier.test",
        RecordType::Naptr,
        records(vec![Record::Naptr(with_regexp)], 300),
    );
    let (outcome, _) = run(&mut locator(1), &zone, "sip:carrier.test", Instant::now());
    assert_eq!(targets(outcome), [tcp("192.0.2.1:5060")]);
}

#[test]
fn without_naptr_srv_for_each_transport_then_addresses() {
    let base = carrier();
    let mut zone = Zone(base.0.clone());
    zone.0.remove(&q("carrier.test", RecordType::Naptr));
    let (outcome, _) = run(&mut locator(1), &zone, "sip:carrier.test", Instant::now());
    assert_eq!(
        targets(outcome),
        [
            udp("192.0.2.1:5060"),
            udp("192.0.2.2:5062"),
            tcp("192.0.2.1:5060")
        ]
    );
    // Only TCP has SRV records: only TCP targets.
    zone.0.remove(&q("_sip._udp.carrier.test", RecordType::Srv));
    let (outcome, _) = run(&mut locator(1), &zone, "sip:carrier.test", Instant::now());
    assert_eq!(targets(outcome), [tcp("192.0.2.1:5060")]);
    // Neither: the host's own addresses, UDP, port 5060.
    let zone = Zone::default().with("pbx.test", RecordType::A, ips(&["192.0.2.5"], 60));
    let (outcome, asked) = run(&mut locator(1), &zone, "sip:pbx.test", Instant::now());
    assert_eq!(targets(outcome), [udp("192.0.2.5:5060")]);
    assert_eq!(asked.len(), 5, "{asked:?}");
}

#[test]
fn naptr_pointing_at_empty_srv_falls_back_to_its_transport() {
    let zone = Zone::default()
        .with(
            "pbx.test",
            RecordType::Naptr,
            records(
                vec![naptr(1, 1, "S", "SIP+D2T", "_sip._tcp.elsewhere.test")],
                60,
            ),
        )
        .with("pbx.test", RecordType::A, ips(&["192.0.2.5"], 60));
    let (outcome, _) = run(&mut locator(1), &zone, "sip:pbx.test", Instant::now());
    assert_eq!(targets(outcome), [tcp("192.0.2.5:5060")]);
}

#[test]
fn srv_priority_comes_first_whatever_the_weights() {
    let zone = Zone::default()
        .with(
            "_sip._udp.p.test",
            RecordType::Srv,
            records(
                vec![
                    srv(30, 1000, 5060, "c.p.test"),
                    srv(10, 1, 5060, "a.p.test"),
                    srv(20, 65535, 5060, "b.p.test"),
                ],
                60,
            ),
        )
        .with("a.p.test", RecordType::A, ips(&["192.0.2.1"], 60))
        .with("b.p.test", RecordType::A, ips(&["192.0.2.2"], 60))
        .with("c.p.test", RecordType::A, ips(&["192.0.2.3"], 60));
    for seed in 0..20 {
        let (outcome, _) = run(&mut locator(seed), &zone, "sip:p.test", Instant::now());
        assert_eq!(
            targets(outcome),
            [
                udp("192.0.2.1:5060"),
                udp("192.0.2.2:5060"),
                udp("192.0.2.3:5060")
            ]
        );
    }
}

/// A zone with one priority of SRV records of these weights, a.w.test, b.w.test… each
/// with the address 192.0.2.1, .2…
fn weighted(weights: &[u16]) -> Zone {
    let mut zone = Zone::default();
    let mut set = Vec::new();
    for (i, w) in weights.iter().enumerate() {
        let host = format!("{}.w.test", (b'a' + i as u8) as char);
        set.push(srv(10, *w, 5060, &host));
        zone = zone.with(
            &host,
            RecordType::A,
            ips(&[&format!("192.0.2.{}", i + 1)], 3600),
        );
    }
    zone.with("_sip._udp.w.test", RecordType::Srv, records(set, 3600))
}

/// How often each target (by index) comes first in `runs` resolutions of one locator (the
/// answers come from its cache after the first).
fn first_counts(zone: &Zone, n: usize, runs: usize, seed: u8) -> Vec<usize> {
    let mut loc = locator(seed);
    let now = Instant::now();
    let mut counts = vec![0; n];
    for _ in 0..runs {
        let (outcome, _) = run(&mut loc, zone, "sip:w.test", now);
        let t = targets(outcome);
        assert_eq!(t.len(), n, "every target, once");
        let IpAddr::V4(ip) = t[0].addr.ip() else {
            panic!()
        };
        counts[usize::from(ip.octets()[3]) - 1] += 1;
    }
    counts
}

#[test]
fn srv_weights_share_the_first_place() {
    let runs = 10_000;
    let counts = first_counts(&weighted(&[60, 30, 10]), 3, runs, 7);
    for (count, weight) in counts.iter().zip([60.0, 30.0, 10.0]) {
        let share = *count as f64 / runs as f64 * 100.0;
        // RFC 2782: a draw from 0 to 100 inclusive, so each share is weight/101.
        let expected = weight * 100.0 / 101.0;
        assert!((share - expected).abs() < 1.5, "{counts:?}");
    }
    // The second place too: with 60 first, 30 comes next three times as often as 10.
    let mut loc = locator(9);
    let zone = weighted(&[60, 30, 10]);
    let (mut b_second, mut c_second) = (0, 0);
    for _ in 0..runs {
        let t = targets(run(&mut loc, &zone, "sip:w.test", Instant::now()).0);
        if t[0] == udp("192.0.2.1:5060") {
            match t[1] {
                x if x == udp("192.0.2.2:5060") => b_second += 1,
                _ => c_second += 1,
            }
        }
    }
    let ratio = b_second as f64 / c_second as f64;
    assert!((2.5..3.6).contains(&ratio), "{b_second} / {c_second}");
}

#[test]
fn zero_weights() {
    // All zero: the order of the answer.
    let counts = first_counts(&weighted(&[0, 0, 0]), 3, 500, 3);
    assert_eq!(counts, [500, 0, 0]);
    let mut loc = locator(3);
    for _ in 0..100 {
        let t = targets(
            run(
                &mut loc,
                &weighted(&[0, 0, 0]),
                "sip:w.test",
                Instant::now(),
            )
            .0,
        );
        assert_eq!(
            t,
            [
                udp("192.0.2.1:5060"),
                udp("192.0.2.2:5060"),
                udp("192.0.2.3:5060")
            ]
        );
    }
    // Beside weight 10, weight 0 comes first only on a draw of 0: 1 in 11.
    let runs = 11_000;
    let counts = first_counts(&weighted(&[10, 0]), 2, runs, 5);
    assert!((700..1300).contains(&counts[1]), "{counts:?}");
    // Two of weight 0 beside one of 10: only the first of them can win the draw of 0.
    let counts = first_counts(&weighted(&[0, 0, 10]), 3, runs, 5);
    assert!((700..1300).contains(&counts[0]), "{counts:?}");
    assert_eq!(counts[1], 0, "{counts:?}");
}

#[test]
fn one_seed_one_order() {
    let zone = weighted(&[10, 20, 30, 40]);
    let orders = |seed: u8| -> Vec<Vec<Target>> {
        let mut loc = locator(seed);
        (0..50)
            .map(|_| targets(run(&mut loc, &zone, "sip:w.test", Instant::now()).0))
            .collect()
    };
    assert_eq!(orders(1), orders(1));
    assert_ne!(orders(1), orders(2));
}

#[test]
fn duplicates_count_once() {
    let zone = Zone::default()
        .with(
            "_sip._udp.d.test",
            RecordType::Srv,
            records(
                vec![
                    srv(10, 5, 5060, "a.d.test."),
                    srv(10, 5, 5060, "A.D.TEST"), // the same record
                    srv(20, 5, 5060, "b.d.test"), // another name, the same address
                    srv(30, 5, 5070, "a.d.test"), // the same host, another port…
                    srv(1, 5, 5070, "a.d.test"),  // …again, at a lower priority: kept there
                ],
                60,
            ),
        )
        .with(
            "a.d.test",
            RecordType::A,
            ips(&["192.0.2.1", "192.0.2.1"], 60),
        )
        .with("b.d.test", RecordType::A, ips(&["192.0.2.1"], 60));
    let (outcome, asked) = run(&mut locator(1), &zone, "sip:d.test", Instant::now());
    assert_eq!(
        targets(outcome),
        [udp("192.0.2.1:5070"), udp("192.0.2.1:5060")]
    );
    // a.d.test was looked up once.
    let a = asked
        .iter()
        .filter(|q| **q == self::q("a.d.test", RecordType::A))
        .count();
    assert_eq!(a, 1);
}

#[test]
fn ipv6_and_ipv4_alternate_and_families_can_be_left_out() {
    let zone = Zone::default()
        .with(
            "_sip._udp.m.test",
            RecordType::Srv,
            records(vec![srv(10, 0, 5060, "a.m.test")], 60),
        )
        .with(
            "a.m.test",
            RecordType::A,
            ips(&["192.0.2.1", "192.0.2.2", "192.0.2.3"], 60),
        )
        .with(
            "a.m.test",
            RecordType::Aaaa,
            ips(&["2001:db8::1", "2001:db8::2"], 60),
        );
    let (outcome, _) = run(&mut locator(1), &zone, "sip:m.test", Instant::now());
    assert_eq!(
        targets(outcome),
        [
            udp("[2001:db8::1]:5060"),
            udp("192.0.2.1:5060"),
            udp("[2001:db8::2]:5060"),
            udp("192.0.2.2:5060"),
            udp("192.0.2.3:5060"),
        ]
    );
    // A daemon with IPv4 sockets only never asks AAAA (and an answer's stray address of
    // the other family is ignored).
    let config = LocatorConfig {
        ipv6: false,
        ..LocatorConfig::default()
    };
    let mut loc = Locator::new(config, Entropy::from_seed([1; 32]));
    let zone = zone.with(
        "a.m.test",
        RecordType::A,
        ips(&["192.0.2.1", "2001:db8::9"], 60),
    );
    let (outcome, asked) = run(&mut loc, &zone, "sip:m.test", Instant::now());
    assert!(!asked.iter().any(|q| q.record_type == RecordType::Aaaa));
    assert_eq!(targets(outcome), [udp("192.0.2.1:5060")]);
    // Neither family: taken as both.
    let config = LocatorConfig {
        ipv4: false,
        ipv6: false,
        ..LocatorConfig::default()
    };
    let loc = Locator::new(config, Entropy::from_seed([1; 32]));
    assert!(loc.config().ipv4 && loc.config().ipv6);
}

#[test]
fn srv_target_dot_means_not_offered() {
    let zone = Zone::default()
        .with(
            "_sip._udp.no.test",
            RecordType::Srv,
            records(vec![srv(0, 0, 0, ".")], 60),
        )
        .with("no.test", RecordType::A, ips(&["192.0.2.1"], 60));
    let (outcome, asked) = run(&mut locator(1), &zone, "sip:no.test", Instant::now());
    assert_eq!(outcome, Err(LocateError::NotOffered("no.test".into())));
    assert!(
        !asked.contains(&q("no.test", RecordType::A)),
        "no address fallback"
    );
    assert!(outcome.unwrap_err().to_string().contains("offers no SIP"));
}

#[test]
fn a_name_without_records_is_a_clear_error() {
    let (outcome, asked) = run(
        &mut locator(1),
        &Zone::default(),
        "sip:nowhere.test",
        Instant::now(),
    );
    let e = outcome.unwrap_err();
    assert_eq!(e, LocateError::NoSuchName("nowhere.test".into()));
    assert_eq!(
        e.to_string(),
        "nowhere.test has no SIP server in DNS: no NAPTR or SRV record for SIP, and no address"
    );
    assert_eq!(asked.len(), 5); // NAPTR, 2 SRV, A, AAAA
                                // An SRV target without addresses gives no target.
    let zone = Zone::default().with(
        "_sip._udp.x.test",
        RecordType::Srv,
        records(vec![srv(1, 1, 5060, "gone.x.test")], 60),
    );
    let (outcome, _) = run(&mut locator(1), &zone, "sip:x.test", Instant::now());
    assert_eq!(outcome, Err(LocateError::NoSuchName("x.test".into())));
}

#[test]
fn failed_lookups() {
    let now = Instant::now();
    // Every lookup fails: the first failure is the error.
    let mut dead = Zone::default();
    for (name, t) in [
        ("dead.test", RecordType::Naptr),
        ("_sip._udp.dead.test", RecordType::Srv),
        ("_sip._tcp.dead.test", RecordType::Srv),
    ] {
        dead = dead.with(name, t, Answer::Failed("request timed out".into()));
    }
    let mut loc = locator(1);
    let (outcome, asked) = run(&mut loc, &dead, "sip:dead.test", now);
    let e = outcome.unwrap_err();
    assert_eq!(
        e,
        LocateError::Failed {
            query: q("dead.test", RecordType::Naptr),
            why: "request timed out".into()
        }
    );
    assert_eq!(
        e.to_string(),
        "the DNS lookup of NAPTR dead.test failed: request timed out"
    );
    // A failed SRV lookup is not taken as "no SRV": no guess at the host's addresses.
    assert!(!asked.contains(&q("dead.test", RecordType::A)));
    // Failures are not cached: asked again.
    let (_, again) = run(&mut loc, &dead, "sip:dead.test", now);
    assert_eq!(again.len(), 3);

    // A server that fails NAPTR questions but answers SRV: the SRV answers are used.
    let zone = carrier().with(
        "carrier.test",
        RecordType::Naptr,
        Answer::Failed("refused".into()),
    );
    let (outcome, _) = run(&mut locator(1), &zone, "sip:carrier.test", now);
    assert_eq!(targets(outcome).len(), 3);
    // AAAA fails, A answers: the IPv4 targets.
    let zone = Zone::default()
        .with("h.test", RecordType::A, ips(&["192.0.2.1"], 60))
        .with(
            "h.test",
            RecordType::Aaaa,
            Answer::Failed("servfail".into()),
        );
    let (outcome, _) = run(&mut locator(1), &zone, "sip:h.test:5060", now);
    assert_eq!(targets(outcome), [udp("192.0.2.1:5060")]);
    // Both fail.
    let zone = zone.with("h.test", RecordType::A, Answer::Failed("servfail".into()));
    let (outcome, _) = run(&mut locator(1), &zone, "sip:h.test:5060", now);
    assert!(matches!(outcome, Err(LocateError::Failed { .. })));
}

#[test]
fn answers_are_cached_for_their_ttl() {
    let zone = Zone::default()
        .with(
            "_sip._udp.t.test",
            RecordType::Srv,
            records(vec![srv(1, 1, 5060, "a.t.test")], 300),
        )
        .with("a.t.test", RecordType::A, ips(&["192.0.2.1"], 60));
    let mut loc = locator(1);
    let t0 = Instant::now();
    let (outcome, asked) = run(&mut loc, &zone, "sip:t.test", t0);
    // NAPTR, SRV udp+tcp, AAAA: negative (30 s by default); A: 60 s; SRV: 300 s.
    assert_eq!(asked.len(), 5);
    let r = outcome.unwrap();
    assert_eq!(r.valid_until, Some(t0 + Duration::from_secs(30)));
    assert_eq!(loc.cached(), 5);
    // Within every TTL: no question.
    let (outcome, asked) = run(&mut loc, &zone, "sip:t.test", t0 + Duration::from_secs(29));
    assert!(asked.is_empty());
    assert_eq!(outcome.unwrap().targets, r.targets);
    // Past the negative answers' 30 s: those asked again.
    let (_, asked) = run(&mut loc, &zone, "sip:t.test", t0 + Duration::from_secs(30));
    let mut asked_sorted = asked.clone();
    asked_sorted.sort();
    assert_eq!(
        asked_sorted,
        [
            q("_sip._tcp.t.test", RecordType::Srv),
            q("a.t.test", RecordType::Aaaa),
            q("t.test", RecordType::Naptr),
        ]
    );
    // The A record changed; past its 60 s, the new address.
    let zone = zone.with("a.t.test", RecordType::A, ips(&["192.0.2.99"], 60));
    let (outcome, _) = run(&mut loc, &zone, "sip:t.test", t0 + Duration::from_secs(59));
    assert_eq!(targets(outcome), [udp("192.0.2.1:5060")]);
    let (outcome, asked) = run(&mut loc, &zone, "sip:t.test", t0 + Duration::from_secs(60));
    assert!(asked.contains(&q("a.t.test", RecordType::A)));
    assert!(!asked.contains(&q("_sip._udp.t.test", RecordType::Srv)));
    assert_eq!(targets(outcome), [udp("192.0.2.99:5060")]);
    // expire() drops what is out of date.
    loc.expire(t0 + Duration::from_secs(400));
    assert_eq!(loc.cached(), 0);
}

#[test]
fn a_refresh_asks_anew_and_replaces_the_cached_answers() {
    let zone = Zone::default().with("sbc.t.test", RecordType::A, ips(&["192.0.2.1"], 60));
    let dest = Destination::from_uri("sip:sbc.t.test:5060").unwrap();
    let mut loc = locator(1);
    let t0 = Instant::now();
    let (outcome, asked) = run(&mut loc, &zone, "sip:sbc.t.test:5060", t0);
    assert_eq!(asked.len(), 2, "A and AAAA: {asked:?}");
    assert_eq!(targets(outcome), [udp("192.0.2.1:5060")]);
    // Shortly before the A record runs out, the cache would give it back: a refresh asks.
    let zone = zone.with("sbc.t.test", RecordType::A, ips(&["192.0.2.2"], 60));
    let t1 = t0 + Duration::from_secs(55);
    let Resolution::Pending(id) = loc.refresh(&dest, t1) else {
        panic!("a refresh of a name is never done at once");
    };
    let mut asked = Vec::new();
    while let Some(query) = loc.poll_query() {
        asked.push(query.clone());
        let answer = zone.answer(&query);
        loc.handle_answer(query, answer, t1);
    }
    asked.sort();
    assert_eq!(
        asked,
        [
            q("sbc.t.test", RecordType::A),
            q("sbc.t.test", RecordType::Aaaa)
        ]
    );
    let (got, outcome) = loc.poll_resolved().unwrap();
    assert_eq!(got, id);
    let r = outcome.unwrap();
    assert_eq!(r.targets, [udp("192.0.2.2:5060")]);
    assert_eq!(r.valid_until, Some(t1 + Duration::from_secs(30)));
    // The new answers are the ones cached.
    let (outcome, asked) = run(&mut loc, &zone, "sip:sbc.t.test:5060", t1);
    assert!(asked.is_empty());
    assert_eq!(targets(outcome), [udp("192.0.2.2:5060")]);
    // A numeric address needs no lookup, refreshed or not.
    let ip = Destination::from_uri("sip:192.0.2.9:5060").unwrap();
    assert!(matches!(loc.refresh(&ip, t1), Resolution::Done(Ok(_))));
}

#[test]
fn negative_ttls_and_ttl_caps() {
    let config = LocatorConfig {
        max_ttl: Duration::from_secs(100),
        ..LocatorConfig::default()
    };
    let mut loc = Locator::new(config, Entropy::from_seed([1; 32]));
    let t0 = Instant::now();
    let mut zone = Zone::default().with("h.test", RecordType::A, ips(&["192.0.2.1"], 100_000));
    zone.0.insert(
        q("h.test", RecordType::Aaaa),
        Answer::NoRecords {
            ttl: Some(Duration::from_secs(5)),
        },
    );
    let (outcome, _) = run(&mut loc, &zone, "sip:h.test:5060", t0);
    assert_eq!(
        outcome.unwrap().valid_until,
        Some(t0 + Duration::from_secs(5))
    );
    let (_, asked) = run(
        &mut loc,
        &zone,
        "sip:h.test:5060",
        t0 + Duration::from_secs(5),
    );
    assert_eq!(asked, [q("h.test", RecordType::Aaaa)]);
    // The A record's TTL is cut to max_ttl.
    let (_, asked) = run(
        &mut loc,
        &zone,
        "sip:h.test:5060",
        t0 + Duration::from_secs(100),
    );
    assert!(asked.contains(&q("h.test", RecordType::A)));
}

#[test]
fn ttl_zero_is_used_once_and_not_kept() {
    let zone = Zone::default()
        .with("h.test", RecordType::A, ips(&["192.0.2.1"], 0))
        .with("h.test", RecordType::Aaaa, ips(&["2001:db8::1"], 0));
    let mut loc = locator(1);
    let now = Instant::now();
    for _ in 0..2 {
        let (outcome, asked) = run(&mut loc, &zone, "sip:h.test:5060", now);
        assert_eq!(asked.len(), 2);
        let r = outcome.unwrap();
        assert_eq!(r.targets.len(), 2);
        assert_eq!(r.valid_until, Some(now));
    }
    assert_eq!(loc.cached(), 0);
}

#[test]
fn a_question_is_asked_once_for_every_resolution_waiting() {
    let zone = carrier();
    let mut loc = locator(1);
    let now = Instant::now();
    let Resolution::Pending(a) = loc.resolve_uri("sip:carrier.test", now) else {
        panic!()
    };
    let Resolution::Pending(b) = loc.resolve_uri("sip:alice@carrier.test", now) else {
        panic!()
    };
    let Resolution::Pending(c) = loc.resolve_uri("sip:carrier.test;transport=tcp", now) else {
        panic!()
    };
    assert_eq!(loc.pending(), 3);
    let mut asked = Vec::new();
    while let Some(query) = loc.poll_query() {
        asked.push(query.clone());
        loc.handle_answer(query.clone(), zone.answer(&query), now);
    }
    let mut unique = asked.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), asked.len(), "{asked:?}");
    let mut done: Vec<ResolutionId> = std::iter::from_fn(|| loc.poll_resolved())
        .map(|(id, outcome)| {
            assert!(outcome.is_ok());
            id
        })
        .collect();
    done.sort();
    assert_eq!(done, [a, b, c]);
    assert_eq!(loc.pending(), 0);
}

#[test]
fn a_cancelled_resolution_never_ends() {
    let zone = carrier();
    let mut loc = locator(1);
    let now = Instant::now();
    let Resolution::Pending(id) = loc.resolve_uri("sip:carrier.test", now) else {
        panic!()
    };
    loc.cancel(id);
    while let Some(query) = loc.poll_query() {
        loc.handle_answer(query.clone(), zone.answer(&query), now);
    }
    assert_eq!(loc.poll_resolved(), None);
    // Its answers were cached all the same: a new resolution asks only what it never
    // got to.
    let (outcome, asked) = run(&mut loc, &zone, "sip:carrier.test", now);
    assert!(outcome.is_ok());
    assert!(
        asked
            .iter()
            .all(|q| matches!(q.record_type, RecordType::A | RecordType::Aaaa)),
        "{asked:?}"
    );
}

#[test]
fn failed_targets_go_last_for_a_while() {
    let zone = carrier();
    let mut loc = locator(1);
    let t0 = Instant::now();
    let first = targets(run(&mut loc, &zone, "sip:carrier.test", t0).0);
    let (a, b, c) = (first[0], first[1], first[2]);
    loc.report_failure(a, None, t0);
    assert_eq!(loc.blocked_until(a, t0), Some(t0 + Duration::from_secs(30)));
    let at = |s: u64| t0 + Duration::from_secs(s);
    assert_eq!(
        targets(run(&mut loc, &zone, "sip:carrier.test", at(1)).0),
        [b, c, a]
    );
    // 30 s later it is back in its place.
    assert_eq!(
        targets(run(&mut loc, &zone, "sip:carrier.test", at(30)).0),
        [a, b, c]
    );
    // A Retry-After keeps it there longer; a later shorter block does not shorten it.
    loc.report_failure(b, Some(Duration::from_secs(120)), at(30));
    loc.report_failure(b, None, at(31));
    assert_eq!(
        targets(run(&mut loc, &zone, "sip:carrier.test", at(100)).0),
        [a, c, b]
    );
    assert_eq!(
        targets(run(&mut loc, &zone, "sip:carrier.test", at(150)).0),
        [a, b, c]
    );
    // Several blocked: they keep their order among themselves, after the others.
    loc.report_failure(a, None, at(150));
    loc.report_failure(b, None, at(150));
    assert_eq!(
        targets(run(&mut loc, &zone, "sip:carrier.test", at(151)).0),
        [c, a, b]
    );
    // A response from it unblocks it at once.
    loc.report_success(a);
    assert_eq!(
        targets(run(&mut loc, &zone, "sip:carrier.test", at(152)).0),
        [a, c, b]
    );
    // All blocked: the list is still whole.
    loc.report_failure(a, None, at(152));
    loc.report_failure(c, None, at(152));
    assert_eq!(
        targets(run(&mut loc, &zone, "sip:carrier.test", at(153)).0),
        [a, b, c]
    );
    // A Retry-After is bounded by max_block (an hour).
    loc.report_failure(c, Some(Duration::from_secs(1_000_000)), at(200));
    assert_eq!(loc.blocked_until(c, at(200)), Some(at(3800)));
    loc.expire(at(3800));
    assert_eq!(loc.blocked_until(c, at(3000)), None);
    // A numeric address is blocked like any target.
    let ip = udp("192.0.2.50:5060");
    loc.report_failure(ip, None, at(4000));
    assert_eq!(
        targets(run(&mut loc, &zone, "sip:192.0.2.50", at(4001)).0),
        [ip]
    );
}

#[test]
fn tables_are_bounded() {
    let config = LocatorConfig {
        max_entries: 3,
        ..LocatorConfig::default()
    };
    let mut loc = Locator::new(config, Entropy::from_seed([1; 32]));
    let t0 = Instant::now();
    let zone = Zone::default()
        .with("a.test", RecordType::A, ips(&["192.0.2.1"], 10))
        .with("b.test", RecordType::A, ips(&["192.0.2.2"], 100));
    assert!(run(&mut loc, &zone, "sip:a.test:5060", t0).0.is_ok()); // A + AAAA kept
    assert!(run(&mut loc, &zone, "sip:b.test:5060", t0).0.is_ok()); // one more fits
    assert_eq!(loc.cached(), 3);
    // Full: new answers are used but not kept…
    let zone = zone.with("c.test", RecordType::A, ips(&["192.0.2.3"], 100));
    for _ in 0..2 {
        let (outcome, asked) = run(&mut loc, &zone, "sip:c.test:5060", t0);
        assert!(outcome.is_ok());
        assert_eq!(asked.len(), 2);
    }
    assert_eq!(loc.cached(), 3);
    // …unless expired ones make room: by 50 s all three have (b.test's AAAA was kept, its
    // A was not).
    let (_, asked) = run(
        &mut loc,
        &zone,
        "sip:c.test:5060",
        t0 + Duration::from_secs(50),
    );
    assert_eq!(asked.len(), 2);
    assert_eq!(loc.cached(), 2);
    let (_, asked) = run(
        &mut loc,
        &zone,
        "sip:c.test:5060",
        t0 + Duration::from_secs(51),
    );
    assert!(asked.is_empty());
    let mut blocked = 0;
    for i in 0..10u8 {
        let t = udp(&format!("192.0.2.{i}:5060"));
        loc.report_failure(t, None, t0);
        blocked += usize::from(loc.blocked_until(t, t0).is_some());
    }
    assert_eq!(blocked, 3);

    // Huge answers: at most MAX_SRV hosts looked up, at most MAX_TARGETS targets.
    let mut zone = Zone::default();
    let mut set = Vec::new();
    for i in 0..40 {
        let host = format!("h{i}.big.test");
        set.push(srv(i, 1, 5060, &host));
        zone = zone.with(
            &host,
            RecordType::A,
            ips(&[&format!("192.0.2.{i}"), &format!("198.51.100.{i}")], 60),
        );
    }
    let zone = zone.with("_sip._udp.big.test", RecordType::Srv, records(set, 60));
    let (outcome, asked) = run(&mut locator(1), &zone, "sip:big.test", t0);
    let hosts = asked
        .iter()
        .filter(|q| q.record_type == RecordType::A)
        .count();
    assert_eq!(hosts, MAX_SRV);
    assert_eq!(targets(outcome).len(), MAX_TARGETS);
}

#[test]
fn srv_targets_given_as_addresses_need_no_lookup() {
    let zone = Zone::default().with(
        "_sip._udp.lit.test",
        RecordType::Srv,
        records(vec![srv(1, 1, 5070, "192.0.2.8")], 60),
    );
    let (outcome, asked) = run(&mut locator(1), &zone, "sip:lit.test", Instant::now());
    assert_eq!(targets(outcome), [udp("192.0.2.8:5070")]);
    assert!(!asked.iter().any(|q| q.name == "192.0.2.8"));
}

#[test]
fn targets_become_peers() {
    let t = tcp("192.0.2.1:5060");
    assert_eq!(t.to_string(), "TCP:192.0.2.1:5060");
    let p = t.peer();
    assert_eq!((p.transport, p.addr, p.conn), (t.transport, t.addr, None));
    assert_eq!(q("x.test", RecordType::Naptr).to_string(), "NAPTR x.test");
    assert_eq!(Host::Ip("::1".parse().unwrap()).to_string(), "[::1]");
}

proptest::proptest! {
    /// Whatever a request carries, reading it as a destination and resolving it ends (with
    /// an empty DNS) and never panics.
    #[test]
    fn any_uri_is_read_or_refused(uri in "(sips?|SIP|tel)?:?[a-zA-Z0-9@:;=.\\[\\]_?<> -]{0,40}|.{0,60}") {
        let mut loc = locator(1);
        if let Ok(dest) = Destination::from_uri(&uri) {
            if let Host::Name(n) = &dest.host {
                let again = normalize_name(n);
                proptest::prop_assert_eq!(again.as_deref(), Some(n.as_str()));
            }
            let _ = run(&mut loc, &Zone::default(), &uri, Instant::now());
        }
    }

    /// Any set of SRV records gives every distinct target once, lower priorities first.
    #[test]
    fn any_srv_set_gives_a_sound_list(
        set in proptest::collection::vec((0u16..4, 0u16..100, 0u16..3, 0usize..6), 0..16),
        seed: u8,
    ) {
        // Hosts h0..h4 have an address each, h5 none.
        let mut zone = Zone::default();
        for i in 0..5 {
            zone = zone.with(
                &format!("h{i}.p.test"),
                RecordType::A,
                ips(&[&format!("192.0.2.{i}")], 60),
            );
        }
        let records_: Vec<Record> = set
            .iter()
            .map(|(p, w, port, h)| srv(*p, *w, 5060 + port, &format!("h{h}.p.test")))
            .collect();
        let zone = zone.with("_sip._udp.p.test", RecordType::Srv, records(records_, 60));
        let (outcome, _) = run(&mut locator(seed), &zone, "sip:p.test;transport=udp", Instant::now());
        // (address, port) → the lowest priority of the records naming it.
        let mut want: HashMap<SocketAddr, u16> = HashMap::new();
        for (p, _, port, h) in &set {
            if *h < 5 {
                let a: SocketAddr = format!("192.0.2.{h}:{}", 5060 + port).parse().unwrap();
                let e = want.entry(a).or_insert(*p);
                *e = (*e).min(*p);
            }
        }
        match outcome {
            Err(e) => {
                proptest::prop_assert!(want.is_empty(), "{e}");
            }
            Ok(r) => {
                let got: Vec<SocketAddr> = r.targets.iter().map(|t| t.addr).collect();
                let mut unique = got.clone();
                unique.sort();
                unique.dedup();
                proptest::prop_assert_eq!(unique.len(), got.len());
                proptest::prop_assert_eq!(got.len(), want.len());
                let priorities: Vec<u16> = got.iter().map(|a| want[a]).collect();
                proptest::prop_assert!(priorities.windows(2).all(|w| w[0] <= w[1]), "{priorities:?}");
            }
        }
    }
}
