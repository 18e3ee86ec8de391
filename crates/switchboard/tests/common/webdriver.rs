//! A small WebDriver client: W3C WebDriver commands as JSON over HTTP/1.1 on loopback to
//! Debian's `chromedriver`, which drives Debian's headless `chromium` (no browser download).
//!
//! Only what the board's test needs (the [`Browser`] trait): open a page, find and click
//! elements, type, run a script, take a screenshot. Every request has a read timeout;
//! [`Chromium`] owns chromedriver (in a process group of its own, with the browser it
//! starts) and on drop ends the session, then kills that process group by its id.

use crate::browser::{Browser, ELEMENT};
use crate::common::{free_port, wait_until, Proc};
use serde_json::{json, Value};
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// The flags a headless Chromium needs on these machines: no sandbox (root), no GPU, and
/// none of its own network traffic (the machine has no network but loopback).
const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1000,760",
];

/// Fails with the install message when the browser or its driver is missing.
pub fn require_chromium() {
    for program in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
        assert!(
            Path::new(program).is_file(),
            "`{program}` is not installed: run ./scripts/install-test-deps \
             (Debian packages chromium chromium-driver)"
        );
    }
}

/// A headless Chromium session through chromedriver.
pub struct Chromium {
    driver: Option<Proc>,
    port: u16,
    session: String,
}

impl Chromium {
    /// Starts chromedriver on a free loopback port and a browser session whose profile
    /// lives in `dir` (a new, empty one).
    pub fn start(dir: &Path) -> Chromium {
        require_chromium();
        let port = free_port();
        let mut cmd = Command::new("/usr/bin/chromedriver");
        cmd.arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .arg(format!(
                "--log-path={}",
                dir.join("chromedriver.log").display()
            ))
            // Its own process group: the browser it starts is killed with it.
            .process_group(0);
        let driver = Proc::spawn(
            "chromedriver",
            &mut cmd,
            dir.join("chromedriver.out"),
            false,
        );
        let mut b = Chromium {
            driver: Some(driver),
            port,
            session: String::new(),
        };
        wait_until(Duration::from_secs(15), Duration::from_millis(50), || {
            b.call("GET", "/status", None)
                .ok()
                .filter(|v| v["ready"] == json!(true))
        })
        .unwrap_or_else(|| panic!("chromedriver did not become ready:\n{}", b.driver_log()));
        let profile = dir.join("chromium-profile");
        std::fs::create_dir_all(&profile).unwrap();
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|s| s.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        let caps = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": { "binary": "/usr/bin/chromium", "args": args },
                    "timeouts": { "script": 10000, "pageLoad": 20000, "implicit": 0 },
                }
            }
        });
        let v = b
            .call("POST", "/session", Some(caps))
            .unwrap_or_else(|e| panic!("no browser session: {e}\n{}", b.driver_log()));
        b.session = v["sessionId"].as_str().expect("a session id").to_string();
        b
    }

    fn driver_log(&self) -> String {
        self.driver.as_ref().map(Proc::log).unwrap_or_default()
    }

    /// One command: its `value`, or the error WebDriver gave.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.port,
            body.len()
        )
        .map_err(|e| e.to_string())?;
        let (head, payload) = read_response(&mut s)?;
        let v: Value =
            serde_json::from_str(&payload).map_err(|e| format!("{e}: {head}\n{payload}"))?;
        let value = v.get("value").cloned().unwrap_or(Value::Null);
        match value.get("error") {
            Some(err) => Err(format!("{err}: {}", value["message"])),
            None => Ok(value),
        }
    }

    fn session_call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let full = format!("/session/{}{path}", self.session);
        self.call(method, &full, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }
}

impl Browser for Chromium {
    fn name(&self) -> &'static str {
        "chromium"
    }

    fn goto(&self, url: &str) {
        self.session_call("POST", "/url", Some(json!({ "url": url })));
    }

    fn find(&self, css: &str) -> Option<String> {
        let full = format!("/session/{}/element", self.session);
        self.call(
            "POST",
            &full,
            Some(json!({ "using": "css selector", "value": css })),
        )
        .ok()
        .and_then(|v| v[ELEMENT].as_str().map(str::to_string))
    }

    fn click_element(&self, id: &str) {
        self.session_call("POST", &format!("/element/{id}/click"), Some(json!({})));
    }

    fn type_into_element(&self, id: &str, text: &str) {
        self.session_call(
            "POST",
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        );
    }

    fn script(&self, body: &str) -> Value {
        self.session_call(
            "POST",
            "/execute/sync",
            Some(json!({ "script": body, "args": [] })),
        )
    }

    fn resize(&self, width: u32, height: u32) {
        self.session_call(
            "POST",
            "/window/rect",
            Some(json!({ "width": width, "height": height })),
        );
    }

    fn screenshot_base64(&self) -> String {
        let v = self.session_call("GET", "/screenshot", None);
        v.as_str().expect("base64 text").to_string()
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let path = format!("/session/{}", self.session);
            let _ = self.call("DELETE", &path, None);
        }
        if let Some(mut d) = self.driver.take() {
            // The group chromedriver leads (its id is chromedriver's), with any browser
            // process the session's end left behind.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", d.pid())])
                .status();
            d.kill();
        }
    }
}

/// Reads one HTTP/1.1 response (chromedriver keeps the connection open): its head and
/// its body, by Content-Length or chunks.
fn read_response(s: &mut TcpStream) -> Result<(String, String), String> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 16384];
    let mut read_more = |raw: &mut Vec<u8>| -> Result<(), String> {
        match s.read(&mut buf) {
            Ok(0) => Err("the connection closed early".into()),
            Ok(n) => {
                raw.extend_from_slice(&buf[..n]);
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        }
    };
    let end = loop {
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        read_more(&mut raw)?;
    };
    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
    let mut body = raw[end + 4..].to_vec();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    if let Some(n) = length {
        while body.len() < n {
            read_more(&mut body)?;
        }
        body.truncate(n);
    } else if head.contains("transfer-encoding: chunked") {
        // Chunks until the last (size 0).
        let mut out = Vec::new();
        let mut at = 0;
        loop {
            let Some(line_end) = body[at..].windows(2).position(|w| w == b"\r\n") else {
                read_more(&mut body)?;
                continue;
            };
            let size = String::from_utf8_lossy(&body[at..at + line_end]).to_string();
            let n = usize::from_str_radix(size.trim(), 16).map_err(|e| e.to_string())?;
            if n == 0 {
                break;
            }
            let start = at + line_end + 2;
            while body.len() < start + n + 2 {
                read_more(&mut body)?;
            }
            out.extend_from_slice(&body[start..start + n]);
            at = start + n + 2;
        }
        body = out;
    }
    Ok((head, String::from_utf8_lossy(&body).into_owned()))
}
