//! The live presence board in real browsers: Debian's headless Chromium, driven through
//! chromedriver (WebDriver), and Debian's headless Firefox, driven through its built-in
//! Marionette port, each open `/board` on the real daemon signed in as alice and see bob
//! turn red when he dials *78 from a SIPp phone, bob's call-status lamp go yellow, red and
//! green through a call, and alice change her own profile by clicking; screenshots of the
//! board are written for people to look at. One scenario, written against the `Browser`
//! trait, runs in both. Also the event stream's tickets.

#[path = "common/browser.rs"]
mod browser;
mod common;
#[path = "common/marionette.rs"]
mod marionette;
#[path = "common/webdriver.rs"]
mod webdriver;

use browser::Browser;
use common::*;
use serde_json::{json, Value};
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const ALICE_TOKEN: &str = "alice-token-0123456789";
const BOB_TOKEN: &str = "bob-token-0123456789ab";

/// The test policy with API tokens for alice and bob, and a team of both.
fn policy() -> String {
    let teams = "\n[teams.support]\nextension = \"2000\"\nmembers = [\"alice\", \"bob\"]\n";
    format!("{POLICY}{teams}")
        .replace(
            "[users.alice]\nextension = \"1001\"\n",
            &format!("[users.alice]\nextension = \"1001\"\napi_token = \"{ALICE_TOKEN}\"\n"),
        )
        .replace(
            "[users.bob]\nextension = \"1002\"\n",
            &format!("[users.bob]\nextension = \"1002\"\napi_token = \"{BOB_TOKEN}\"\n"),
        )
}

/// A script that gives bob's row's `data-<what>` (or null while there is no row).
fn bobs(what: &str) -> String {
    format!(
        "const r = document.querySelector('li[data-user=\"bob\"]'); return r ? r.dataset.{what} : null;"
    )
}

/// Where a browser's screenshots go: kept after the test (Cargo's directory for tests'
/// files), one folder per browser.
fn shots(browser: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("board_e2e")
        .join(browser);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Held by a browser scenario while it runs: one browser at a time, so that the two do
/// not share the machine's few cores while timing bob's change to within a second.
static ONE_BROWSER: Mutex<()> = Mutex::new(());

#[test]
fn the_board_in_chromium_follows_feature_codes_calls_and_clicks() {
    webdriver::require_chromium();
    the_board_follows_feature_codes_calls_and_clicks(webdriver::Chromium::start);
}

#[test]
fn the_board_in_firefox_follows_feature_codes_calls_and_clicks() {
    marionette::require_firefox();
    the_board_follows_feature_codes_calls_and_clicks(marionette::Firefox::start);
}

/// The scenario, in the browser `start` opens with its profile in the daemon's directory.
fn the_board_follows_feature_codes_calls_and_clicks<B: Browser>(start: fn(&Path) -> B) {
    let _one = ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let mut d = Daemon::start(Options {
        policy: policy(),
        ..Options::default()
    });
    // bob's phone (SIPp): rings 1.5 s, then answers.
    let bob = Uas::start("uas_ring_then_answer.xml", 1, &["-d", "1500"]);
    bob.register(&d, "bob", "bob-secret");

    let browser = start(d.dir.path());
    let shots = shots(browser.name());
    browser.goto(&format!("http://127.0.0.1:{}/board", d.api_port));
    browser.type_into("#token", ALICE_TOKEN);
    browser.click("#signin-button");
    let live = "return document.getElementById('live').dataset.state;";
    browser
        .wait_for(Duration::from_secs(10), live, &json!("on"))
        .unwrap_or_else(|| panic!("the board did not go live:\n{}", d.log()));
    assert_eq!(
        browser.script("return document.getElementById('who').textContent;"),
        json!("signed in as alice")
    );
    // bob has a phone registered and is available: green, lamp free.
    browser
        .wait_for(Duration::from_secs(5), &bobs("colour"), &json!("green"))
        .unwrap_or_else(|| panic!("bob is not green: {}", browser.script(&bobs("colour"))));
    assert_eq!(browser.script(&bobs("call")), json!("free"));
    // His name (the user id: the policy gives no display name) and extension.
    assert_eq!(
        browser.script("return document.querySelector('li[data-user=\"bob\"] .name').textContent;"),
        json!("bob 1002")
    );
    // alice has none: grey, offline.
    let alices = "return document.querySelector('li[data-user=\"alice\"]').dataset.colour;";
    assert_eq!(browser.script(alices), json!("grey"));

    // bob dials *78 on his phone: red on alice's board within a second, no reload.
    let feature = |code: &str, answer: &str| {
        let r = Sipp::new(&d, "call_expect_final.xml")
            .row(call_row("bob", "bob-secret", code, "480"))
            .auth_uri(&format!("{code}@{REALM}"))
            .run();
        assert!(r.success, "{}\n{}", r.report(), d.log());
        assert!(r.messages.contains(answer), "{}", r.messages);
    };
    feature("*78", "SIP/2.0 480 Do Not Disturb On");
    let took = browser
        .wait_for(Duration::from_secs(1), &bobs("colour"), &json!("red"))
        .unwrap_or_else(|| {
            panic!(
                "bob did not turn red within 1 s: {}",
                browser.script(&bobs("colour"))
            )
        });
    println!(
        "{}: bob turned red on the board {took:?} after SIPp's *78 ended",
        browser.name()
    );
    assert_eq!(browser.script(&bobs("availability")), json!("dnd"));
    assert!(
        browser.find("li[data-user=\"alice\"]").is_some(),
        "the page was not reloaded: alice's row is still there"
    );
    feature("*79", "SIP/2.0 480 Do Not Disturb Off");
    browser
        .wait_for(Duration::from_secs(1), &bobs("colour"), &json!("green"))
        .expect("bob green again after *79");

    // alice calls bob: his lamp goes yellow (ringing), red (answered), green (ended).
    let started = Instant::now();
    let call = Sipp::new(&d, "call_answered.xml")
        .row(call_row("alice", "alice-secret", "1002", "1500"))
        .auth_uri(&format!("1002@{REALM}"))
        .spawn();
    let mut seen = Vec::new();
    for lamp in ["ringing", "busy", "free"] {
        let t = browser
            .wait_for(Duration::from_secs(10), &bobs("call"), &json!(lamp))
            .unwrap_or_else(|| {
                panic!(
                    "bob's lamp never showed {lamp} (after {seen:?}): {}\n{}",
                    browser.script(&bobs("call")),
                    d.log()
                )
            });
        let (emoji, colour) = match lamp {
            "ringing" => ("🟡", "rgb(224, 168, 0)"),
            "busy" => ("🔴", "rgb(214, 69, 69)"),
            _ => ("🟢", "rgb(31, 157, 85)"),
        };
        let shown = browser.script(
            "const l = document.querySelector('li[data-user=\"bob\"] .lamp'); \
             return [l.dataset.emoji, getComputedStyle(l).backgroundColor];",
        );
        assert_eq!(shown, json!([emoji, colour]), "{lamp}");
        if lamp == "busy" {
            // A screenshot mid-call, for people to look at.
            let path = browser.screenshot(&shots.join("board-in-a-call.png"));
            println!("screenshot: {}", path.display());
        }
        seen.push((lamp, t, started.elapsed()));
    }
    println!("{}: bob's lamp: {seen:?}", browser.name());
    let r = call.finish(Duration::from_secs(30));
    assert!(r.success, "{}\n{}", r.report(), d.log());
    let r = bob.finish(Duration::from_secs(30));
    assert!(r.success, "{}", r.report());

    // alice sets Lunch for 45 minutes by clicking.
    browser.click("#profile option[value=\"lunch\"]");
    browser.click("#profile-for option[value=\"45m\"]");
    browser.type_into("#message", "Back soon");
    browser.click("#set-profile");
    let now = chrono::Utc::now().timestamp();
    let mine = "const r = document.querySelector('li[data-user=\"alice\"]'); return r ? r.dataset.profile : null;";
    browser
        .wait_for(Duration::from_secs(5), mine, &json!("lunch"))
        .unwrap_or_else(|| {
            panic!(
                "alice's row does not show lunch: {}",
                browser.script("return document.getElementById('mine-result').textContent;")
            )
        });
    let r = http(&d, "GET", "/v1/presence/alice", Some(ALICE_TOKEN), "");
    assert_eq!(r.status, 200, "{}", r.body);
    let alice: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(alice["profile"]["id"], json!("lunch"), "{alice}");
    let until = alice["profile"]["until"].as_i64().expect("an end time");
    assert!(
        (until - (now + 45 * 60)).abs() <= 60,
        "ends in 45 minutes: {until} vs {now}"
    );
    let until_text = browser
        .script("return document.querySelector('li[data-user=\"alice\"] .until').textContent;");
    assert!(
        until_text.as_str().unwrap_or("").starts_with("until "),
        "{until_text}"
    );
    // The message box set nothing by itself (it has its own button).
    browser.click("#set-message");
    wait_until(Duration::from_secs(5), Duration::from_millis(25), || {
        let r = http(&d, "GET", "/v1/presence/alice", Some(ALICE_TOKEN), "");
        r.body.contains("Back soon").then_some(())
    })
    .expect("alice's message set from the page");

    let path = browser.screenshot(&shots.join("board.png"));
    println!("screenshot: {}", path.display());

    // The operator signs in with the admin token and reads time in status per team (with
    // the average) and per person.
    browser.click("#signout");
    browser.type_into("#token", ADMIN_TOKEN);
    browser.click("#signin-button");
    browser
        .wait_for(Duration::from_secs(10), live, &json!("on"))
        .expect("live again as the operator");
    assert_eq!(
        browser.script("return document.getElementById('mine').hidden;"),
        json!(true),
        "the operator has no presence of their own"
    );
    browser.click("#show-report");
    let tables = "return [...document.querySelectorAll('#reports table')].map(t => \
                  [t.querySelector('caption').textContent, \
                   [...t.querySelectorAll('tr > th:first-child')].slice(1).map(h => h.textContent)]);";
    let want = json!([
        ["Team support", ["alice", "bob", "average"]],
        ["Per person", ["alice", "bob"]]
    ]);
    browser
        .wait_for(Duration::from_secs(10), tables, &want)
        .unwrap_or_else(|| {
            panic!(
                "no report tables: {} {}",
                browser.script(tables),
                browser.script("return document.getElementById('report-result').textContent;")
            )
        });
    let path = browser.screenshot(&shots.join("board-operator.png"));
    println!("screenshot (the operator's reports): {}", path.display());

    // A phone's width: 390 px in Chromium; Firefox's window is never narrower than 500
    // px, still a phone's layout (the style sheet's is up to 40rem, 640 px).
    browser.resize(390, 844);
    let phone = "return [window.innerWidth, matchMedia('(max-width: 40rem)').matches];";
    let shown = browser.script(phone);
    assert_eq!(shown[1], json!(true), "not a phone's layout: {shown}");
    let path = browser.screenshot(&shots.join("board-phone.png"));
    println!(
        "screenshot (a phone's width, {} px): {}",
        shown[0],
        path.display()
    );
    d.wait_for_log("via=FeatureCode", Duration::from_secs(5));
}

/// Opens an event stream with a new ticket of `token`: the connection and the start of
/// what it answered (its head and the first event, or a refusal).
fn open_stream(d: &Daemon, token: &str) -> (TcpStream, String) {
    let r = http(d, "POST", "/v1/presence/events/ticket", Some(token), "");
    assert_eq!(r.status, 200, "{}", r.body);
    let t: Value = serde_json::from_str(&r.body).unwrap();
    let mut s = TcpStream::connect(("127.0.0.1", d.api_port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET /v1/presence/events?ticket={} HTTP/1.1\r\nHost: localhost\r\n\r\n",
        t["ticket"].as_str().unwrap()
    )
    .unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(10);
    // Done at the end of the first event (200) or of the JSON refusal.
    let done = |seen: &str| match seen.split_once("\r\n\r\n") {
        Some((head, rest)) if head.starts_with("HTTP/1.1 200") => rest
            .split_once("event: snapshot")
            .is_some_and(|(_, e)| e.contains("\n\n")),
        Some((_, rest)) => rest.trim_end().ends_with('}'),
        None => false,
    };
    while !done(&seen) {
        assert!(Instant::now() < deadline, "no answer: {seen}");
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
            Err(e) => panic!("{e}: {seen}"),
        }
    }
    (s, seen)
}

#[test]
fn event_streams_need_a_single_use_ticket_and_start_with_everyone() {
    // At most half the API's connections are streams: 2 here.
    let d = Daemon::start(Options {
        policy: policy(),
        api: "max_connections = 4\n".into(),
        ..Options::default()
    });
    // The page and its files, with headers that keep it to itself.
    let r = http(&d, "GET", "/board", None, "");
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    let csp = r.header("content-security-policy").unwrap_or_default();
    assert!(csp.starts_with("default-src 'self'"), "{}", r.head);
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
    assert!(r.body.contains("/board/board.js"));
    let r = http(&d, "GET", "/board/board.js", None, "");
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("text/javascript"));
    assert_eq!(http(&d, "GET", "/board/nothing.js", None, "").status, 404);

    // No ticket, a made-up one, no token for a ticket: refused.
    assert_eq!(http(&d, "GET", "/v1/presence/events", None, "").status, 401);
    assert_eq!(
        http(&d, "GET", "/v1/presence/events?ticket=00ff", None, "").status,
        401
    );
    assert_eq!(
        http(&d, "POST", "/v1/presence/events/ticket", None, "").status,
        401
    );
    assert_eq!(
        http(&d, "POST", "/v1/presence/events/ticket", Some("nope"), "").status,
        401
    );
    let r = http(
        &d,
        "POST",
        "/v1/presence/events/ticket",
        Some(BOB_TOKEN),
        "",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let t: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!((&t["user"], &t["admin"]), (&json!("bob"), &json!(false)));
    let ticket = t["ticket"].as_str().unwrap().to_string();

    // The stream: everyone first, then bob's change as it happens.
    let mut s = TcpStream::connect(("127.0.0.1", d.api_port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET /v1/presence/events?ticket={ticket} HTTP/1.1\r\nHost: localhost\r\n\r\n"
    )
    .unwrap();
    let read_until = |s: &mut TcpStream, seen: &mut String, what: &str| {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut buf = [0u8; 4096];
        while !seen.contains(what) {
            assert!(Instant::now() < deadline, "no {what:?} in:\n{seen}");
            match s.read(&mut buf) {
                Ok(0) => panic!("the stream ended:\n{seen}"),
                Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
                Err(e) => panic!("{e}:\n{seen}"),
            }
        }
    };
    let mut seen = String::new();
    read_until(&mut s, &mut seen, "event: snapshot");
    read_until(&mut s, &mut seen, "\n\n");
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
    assert!(
        seen.to_ascii_lowercase()
            .contains("content-type: text/event-stream"),
        "{seen}"
    );
    assert!(seen.contains("\"user\":\"alice\"") && seen.contains("\"user\":\"bob\""));
    assert!(seen.contains("\"extension\":\"1002\""), "{seen}");
    let r = http(
        &d,
        "PUT",
        "/v1/presence/bob/status",
        Some(BOB_TOKEN),
        r#"{"status":"away"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    read_until(&mut s, &mut seen, "event: person");
    read_until(&mut s, &mut seen, "\"availability\":\"away\"");

    // The ticket is used up.
    assert_eq!(
        http(
            &d,
            "GET",
            &format!("/v1/presence/events?ticket={ticket}"),
            None,
            ""
        )
        .status,
        401
    );
    // A second stream, then the cap: the third is refused.
    let (_second, head) = open_stream(&d, ALICE_TOKEN);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let (_, head) = open_stream(&d, ALICE_TOKEN);
    assert!(head.starts_with("HTTP/1.1 503"), "{head}");
    assert!(head.contains("too many open boards"), "{head}");

    // Teams, for the admin's reports.
    let r = http(&d, "GET", "/v1/teams", Some(ADMIN_TOKEN), "");
    assert_eq!(r.status, 200, "{}", r.body);
    let teams: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(teams["teams"][0]["members"], json!(["alice", "bob"]));
}
