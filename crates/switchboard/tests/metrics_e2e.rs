//! `/metrics`, `/healthz` and `/readyz` end to end: the real daemon, SIPp phones over
//! loopback, and the counters the daemon shows checked against what SIPp sent and
//! received (read from SIPp's own message traces), scraped during a call and after.

mod common;

use common::*;
use std::collections::HashMap;
use std::time::Duration;

/// How long a callee waits for its calls to end at most.
const CALLEE_LIMIT: Duration = Duration::from_secs(40);
/// How often a bounded wait scrapes again.
const POLL: Duration = Duration::from_millis(100);

/// alice calls; bob answers; carol is busy; dave never registers. Nobody has voicemail, so
/// the callers hear what the callees said (or 480 for dave).
const POLICY: &str = r#"
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

[users.carol]
extension = "1003"
[users.carol.sip]
password = "carol-secret"
algorithms = ["md5"]

[users.dave]
extension = "1004"
[users.dave.sip]
password = "dave-secret"
algorithms = ["md5"]
"#;

/// One HTTP/1.1 GET on the API: (status, content type, body).
fn get(d: &Daemon, path: &str, token: Option<&str>) -> (u16, String, String) {
    let r = http(d, "GET", path, token, "");
    let content_type = r.header("content-type").unwrap_or_default().to_string();
    (r.status, content_type, r.body)
}

/// The samples of a scrape: `name{labels}` → value.
struct Scrape(HashMap<String, f64>);

impl Scrape {
    fn of(text: &str) -> Scrape {
        let mut m = HashMap::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            if let Some((k, v)) = line.rsplit_once(' ') {
                if let Ok(v) = v.parse() {
                    m.insert(k.to_string(), v);
                }
            }
        }
        Scrape(m)
    }

    /// A sample's value; 0 when absent (fails on a metric that does not exist at all).
    fn get(&self, key: &str) -> u64 {
        let name = key.split('{').next().unwrap();
        assert!(
            self.0.keys().any(|k| k.split('{').next() == Some(name)),
            "no metric {name} in the scrape"
        );
        self.0.get(key).copied().unwrap_or(0.0) as u64
    }
}

fn scrape(d: &Daemon) -> Scrape {
    let (status, content_type, body) = get(d, "/metrics", Some(ADMIN_TOKEN));
    assert_eq!(status, 200, "{body}");
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    assert!(body.ends_with("# EOF\n"), "{body}");
    Scrape::of(&body)
}

/// What one SIPp run sent and received, from its message trace: requests by method and
/// responses by class, each way.
#[derive(Default, Debug)]
struct Traffic {
    sent_requests: HashMap<String, u64>,
    sent_classes: [u64; 6],
    received_requests: HashMap<String, u64>,
    received_classes: [u64; 6],
}

impl Traffic {
    fn add(&mut self, run: &SippRun) {
        for block in run
            .messages
            .split("----------------------------------------------- ")
        {
            let sent = block.contains("message sent");
            if !sent && !block.contains("message received") {
                continue;
            }
            // The message starts after the line that says how long it is.
            let Some((_, msg)) = block.split_once("bytes") else {
                continue;
            };
            let msg = msg.split_once('\n').map_or("", |(_, m)| m).trim_start();
            let first = msg.lines().next().unwrap_or("");
            if let Some(code) = first.strip_prefix("SIP/2.0 ") {
                let class: usize = code[..1].parse().unwrap();
                let classes = if sent {
                    &mut self.sent_classes
                } else {
                    &mut self.received_classes
                };
                classes[class - 1] += 1;
            } else if let Some(method) = first.split_whitespace().next() {
                let table = if sent {
                    &mut self.sent_requests
                } else {
                    &mut self.received_requests
                };
                *table.entry(method.to_string()).or_default() += 1;
            }
        }
    }

    fn sent(&self, method: &str) -> u64 {
        self.sent_requests.get(method).copied().unwrap_or(0)
    }
}

/// The difference of a counter between two scrapes.
fn delta(before: &Scrape, after: &Scrape, key: &str) -> u64 {
    after.get(key) - before.get(key)
}

fn registered(d: &Daemon, uas: &Uas, user: &str, seen: &mut Traffic) {
    let r = Sipp::new(d, "register.xml")
        .row(row(user, &format!("{user}-secret"), uas.port, 600))
        .ok();
    seen.add(&r);
}

fn call(d: &Daemon, scenario: &str, dialled: &str, extra: &str, seen: &mut Traffic) -> SippRun {
    let r = Sipp::new(d, scenario)
        .row(call_row("alice", "alice-secret", dialled, extra))
        .auth_uri(&format!("{dialled}@{REALM}"))
        .ok();
    seen.add(&r);
    r
}

#[test]
fn metrics_count_what_sipp_did() {
    let d = Daemon::start(Options {
        policy: POLICY.to_string(),
        api: "metrics_need_token = true\n".to_string(),
        ..Options::default()
    });
    // Alive and ready; /metrics asks for the admin token here (metrics_need_token).
    let (status, _, body) = get(&d, "/healthz", None);
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = get(&d, "/readyz", None);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"ready\""), "{body}");
    let (status, _, body) = get(&d, "/metrics", None);
    assert_eq!(status, 401, "{body}");
    let before = scrape(&d);
    assert_eq!(before.get("switchboard_registrations"), 0);

    // Everything SIPp sent and received, callers and callees alike.
    let mut seen = Traffic::default();
    const ANSWERED: usize = 3;
    const BUSY: usize = 2;
    let bob = Uas::start("uas_answer.xml", ANSWERED + 1, &[]);
    registered(&d, &bob, "bob", &mut seen);
    let carol = Uas::start("uas_busy.xml", BUSY, &[]);
    registered(&d, &carol, "carol", &mut seen);

    let after_registering = scrape(&d);
    assert_eq!(after_registering.get("switchboard_registrations"), 2);
    assert_eq!(after_registering.get("switchboard_registered_contacts"), 2);

    for _ in 0..ANSWERED {
        let r = call(&d, "call_answered.xml", "1002", "", &mut seen);
        assert_eq!(r.finals(), vec![200]);
    }
    for _ in 0..BUSY {
        let r = call(&d, "call_expect_final.xml", "1003", "486", &mut seen);
        assert_eq!(r.finals(), vec![486]);
    }
    let r = call(&d, "call_expect_final.xml", "1004", "480", &mut seen);
    assert_eq!(r.finals(), vec![480]);

    // During a call: one answered call in progress (alice holds it for 4 s).
    let holding = Sipp::new(&d, "call_answered.xml")
        .row(call_row("alice", "alice-secret", "1002", "4000"))
        .auth_uri(&format!("1002@{REALM}"))
        .spawn();
    let during = wait_until(Duration::from_secs(10), POLL, || {
        let s = scrape(&d);
        (s.get("switchboard_calls_answered_active") == 1).then_some(s)
    })
    .expect("the held call shows as answered and in progress");
    assert_eq!(
        delta(&before, &during, "switchboard_calls_started_total"),
        ANSWERED as u64 + BUSY as u64 + 2
    );
    let held = holding.finish(CALLEE_LIMIT);
    assert!(held.success, "{}\n{}", held.report(), d.log());
    seen.add(&held);
    let answered = ANSWERED as u64 + 1;

    seen.add(&bob.finish(CALLEE_LIMIT));
    seen.add(&carol.finish(CALLEE_LIMIT));

    // Every call settled (its last branch too) before the counts are compared.
    let calls = answered + BUSY as u64 + 1;
    let after = wait_until(Duration::from_secs(10), POLL, || {
        let s = scrape(&d);
        let ended: u64 = [
            "answered",
            "busy",
            "no_answer",
            "rejected",
            "cancelled",
            "failed",
        ]
        .iter()
        .map(|o| s.get(&format!("switchboard_calls_ended_total{{outcome=\"{o}\"}}")))
        .sum();
        (ended == calls && s.get("switchboard_calls_answered_active") == 0).then_some(s)
    })
    .unwrap_or_else(|| {
        panic!(
            "the calls never settled:\n{}",
            get(&d, "/metrics", Some(ADMIN_TOKEN)).2
        )
    });

    // Calls by outcome, and the setup time of each answered one.
    let outcome = |o: &str| {
        delta(
            &before,
            &after,
            &format!("switchboard_calls_ended_total{{outcome=\"{o}\"}}"),
        )
    };
    assert_eq!(outcome("answered"), answered);
    assert_eq!(outcome("busy"), BUSY as u64);
    assert_eq!(outcome("no_answer"), 1, "dave: nobody registered, 480");
    assert_eq!(
        outcome("failed") + outcome("rejected") + outcome("cancelled"),
        0
    );
    assert_eq!(
        delta(&before, &after, "switchboard_calls_started_total"),
        calls
    );
    // One call record per call, its outcome what the caller saw (dave's: missed).
    let records = |o: &str| {
        delta(
            &before,
            &after,
            &format!("switchboard_call_records_total{{outcome=\"{o}\"}}"),
        )
    };
    assert_eq!(records("answered"), answered);
    assert_eq!(records("busy"), BUSY as u64);
    assert_eq!(records("missed"), 1);
    assert_eq!(
        records("voicemail") + records("rejected") + records("cancelled"),
        0
    );
    // No [mail]: nothing queued, sent or waiting, and the series are there all the same.
    assert_eq!(after.get("switchboard_mail_notices_queued_total"), 0);
    assert_eq!(after.get("switchboard_mails_total{result=\"sent\"}"), 0);
    assert_eq!(after.get("switchboard_mail_outbox_notices"), 0);
    // No message was played to a caller: no media session.
    assert_eq!(after.get("switchboard_media_sessions_opened_total"), 0);
    assert_eq!(
        delta(&before, &after, "switchboard_call_setup_seconds_count"),
        answered
    );
    assert_eq!(
        after.get("switchboard_call_setup_seconds_bucket{le=\"+Inf\"}"),
        answered
    );
    assert_eq!(after.get("switchboard_calls_in_setup"), 0);

    // Requests the daemon received are the ones SIPp sent, method by method (INVITEs
    // with and without credentials, ACKs, BYEs, REGISTERs).
    for method in ["INVITE", "ACK", "BYE", "REGISTER", "CANCEL", "OPTIONS"] {
        let key = format!("switchboard_sip_requests_received_total{{method=\"{method}\"}}");
        assert_eq!(
            delta(&before, &after, &key),
            seen.sent(method),
            "{method}: the daemon counted otherwise than SIPp sent ({seen:?})"
        );
    }
    assert_eq!(
        seen.sent("INVITE"),
        2 * calls,
        "each call was challenged once"
    );
    assert_eq!(seen.sent("REGISTER"), 4);
    // Responses: what SIPp received the daemon sent, and what SIPp sent it received.
    for (i, class) in ["1xx", "2xx", "3xx", "4xx", "5xx", "6xx"]
        .iter()
        .enumerate()
    {
        let sent = format!("switchboard_sip_responses_sent_total{{class=\"{class}\"}}");
        assert_eq!(
            delta(&before, &after, &sent),
            seen.received_classes[i],
            "{class} sent ({seen:?})"
        );
        let received = format!("switchboard_sip_responses_received_total{{class=\"{class}\"}}");
        assert_eq!(
            delta(&before, &after, &received),
            seen.sent_classes[i],
            "{class} received ({seen:?})"
        );
    }
    // One challenge per REGISTER pair and per call.
    assert_eq!(
        delta(&before, &after, "switchboard_auth_challenges_total"),
        2 + calls
    );
    assert_eq!(delta(&before, &after, "switchboard_auth_failures_total"), 0);
    assert_eq!(after.get("switchboard_registrations"), 2);
    // The registrations were stored: each commit was timed.
    assert!(after.get("switchboard_store_commit_seconds_count") >= 2);
    // Every message that reached the core waited some time, counted once.
    let messages: u64 =
        seen.sent_requests.values().sum::<u64>() + seen.sent_classes.iter().sum::<u64>();
    assert_eq!(
        delta(&before, &after, "switchboard_core_lag_seconds_count"),
        messages
    );
    assert_eq!(
        after.get("switchboard_presence_people{status=\"available\"}"),
        4
    );

    // Still alive and ready after all that.
    assert_eq!(get(&d, "/healthz", None).0, 200);
    assert_eq!(get(&d, "/readyz", None).0, 200);
}

#[test]
fn a_failed_reload_is_counted() {
    let mut d = Daemon::start(Options {
        policy: POLICY.to_string(),
        ..Options::default()
    });
    let (status, _, before) = get(&d, "/metrics", None);
    assert_eq!(status, 200, "open without metrics_need_token: {before}");
    std::fs::write(d.policy_path(), "[users.x\n").unwrap();
    let _ = std::process::Command::new("kill")
        .args(["-HUP", &d.pid().to_string()])
        .status();
    d.wait_for_log("policy reload refused", Duration::from_secs(10));
    let s = wait_until(Duration::from_secs(5), POLL, || {
        let s = Scrape::of(&get(&d, "/metrics", None).2);
        (s.get("switchboard_policy_reloads_total{result=\"failed\"}") >= 1).then_some(s)
    })
    .expect("the failed reload is counted");
    assert_eq!(s.get("switchboard_policy_reloads_total{result=\"ok\"}"), 0);
    std::fs::write(d.policy_path(), POLICY).unwrap();
    let _ = std::process::Command::new("kill")
        .args(["-HUP", &d.pid().to_string()])
        .status();
    wait_until(Duration::from_secs(10), POLL, || {
        let s = Scrape::of(&get(&d, "/metrics", None).2);
        (s.get("switchboard_policy_reloads_total{result=\"ok\"}") >= 1).then_some(())
    })
    .expect("the good reload is counted");
}

/// A carrier played by the test on a UDP socket: it answers the trunk's REGISTER with 200
/// and leaves its unregistration unanswered, so a stopping daemon drains for a while
/// (waiting for the carrier, at most its drain limit) and `/readyz` can be seen saying so.
#[test]
fn readyz_is_503_while_draining_and_healthz_stays_200() {
    let carrier = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    carrier
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let at = carrier.local_addr().unwrap();
    let policy = format!(
        r#"{POLICY}
[trunks.carrier]
uri = "sip:{at}"
outbound = ["+33*"]
[trunks.carrier.account]
username = "pbx-7"
password = "trunk-secret"
realm = "carrier.example"
register = true
expires = 600
"#
    );
    let mut d = Daemon::start(Options {
        policy,
        ..Options::default()
    });
    // The daemon registers as it starts: 200, the headers of a response copied over.
    let mut buf = [0u8; 4096];
    let (n, from) = carrier.recv_from(&mut buf).expect("the trunk's REGISTER");
    let register = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(register.starts_with("REGISTER "), "{register}");
    let copied: Vec<&str> = register
        .lines()
        .filter(|l| {
            let name = l.split(':').next().unwrap_or("").to_ascii_lowercase();
            ["via", "from", "call-id", "cseq"].contains(&name.as_str())
        })
        .collect();
    let to = register
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("to:"))
        .unwrap();
    let ok = format!(
        "SIP/2.0 200 OK\r\n{}\r\n{to};tag=carrier\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n",
        copied.join("\r\n")
    );
    carrier.send_to(ok.as_bytes(), from).unwrap();
    d.wait_for_log("trunk registered", Duration::from_secs(10));
    assert_eq!(get(&d, "/readyz", None).0, 200);

    // SIGTERM: the daemon unregisters the trunk and waits for the carrier, which is silent.
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &d.pid().to_string()])
        .status();
    // (A retransmission of the first REGISTER, had there been one, is passed over; each
    // read waits 10 s at most, all of them 15 s.)
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        assert!(std::time::Instant::now() < deadline, "no unregistration");
        let (n, _) = carrier.recv_from(&mut buf).expect("the unregistration");
        if String::from_utf8_lossy(&buf[..n]).contains("Expires: 0") {
            break;
        }
    }
    let (status, _, body) = get(&d, "/readyz", None);
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("draining"), "{body}");
    let (status, _, body) = get(&d, "/healthz", None);
    assert_eq!(
        status, 200,
        "the loop still answers while it drains: {body}"
    );
    d.wait_for_log("switchboard stopped", Duration::from_secs(10));
}
