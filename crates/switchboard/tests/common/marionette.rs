//! A small Marionette client: Debian's headless `firefox-esr` driven through its built-in
//! remote protocol (no geckodriver, which Debian does not package; no browser download).
//!
//! Marionette is a TCP port the browser opens on loopback (`marionette.port` in the
//! profile's `user.js`, with `--marionette`). Every message is its length in ASCII decimal,
//! a colon, and that many bytes of JSON. The server first greets with
//! `{"applicationType":"gecko","marionetteProtocol":3}`; a command is
//! `[0, id, "WebDriver:Navigate", {"url": …}]` and its answer `[1, id, error, result]`,
//! with `error` null or `{"error", "message", "stacktrace"}`. The commands are the W3C
//! WebDriver ones under their Marionette names, so [`Firefox`] offers what the board's
//! test needs (the [`Browser`] trait) as the WebDriver client does for Chromium.
//!
//! [`Firefox`] owns the browser (in a process group of its own, with its content
//! processes), its profile and home in the test's directory; every read has a timeout and
//! every answer a deadline; on drop it ends the session, then kills that process group by
//! its id.

use crate::browser::{Browser, ELEMENT};
use crate::common::{free_port, wait_until, Proc};
use serde_json::{json, Value};
use std::cell::RefCell;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Debian's Firefox (package firefox-esr).
const FIREFOX: &str = "/usr/bin/firefox-esr";

/// The largest message taken from the browser (a screenshot is the biggest): 64 MiB.
const MAX_MESSAGE: usize = 64 << 20;

/// How long one command may take to be answered.
const ANSWER_WITHIN: Duration = Duration::from_secs(60);

/// Preferences besides the port: no first-run pages, default-browser question, updates or
/// reports, and none of the browser's own network traffic (the machine has no network but
/// loopback). Marionette adds its own recommended ones for automation.
const PREFS: &[(&str, &str)] = &[
    ("browser.shell.checkDefaultBrowser", "false"),
    ("browser.startup.page", "0"),
    ("browser.startup.homepage", "\"about:blank\""),
    ("browser.aboutwelcome.enabled", "false"),
    ("datareporting.policy.dataSubmissionEnabled", "false"),
    ("toolkit.telemetry.reportingpolicy.firstRun", "false"),
    ("app.update.disabledForTesting", "true"),
    ("network.captive-portal-service.enabled", "false"),
    ("network.connectivity-service.enabled", "false"),
    ("extensions.update.enabled", "false"),
    ("browser.safebrowsing.update.enabled", "false"),
];

/// Fails with the install message when the browser is missing.
pub fn require_firefox() {
    assert!(
        Path::new(FIREFOX).is_file(),
        "`{FIREFOX}` is not installed: run ./scripts/install-test-deps (Debian package firefox-esr)"
    );
}

/// The connection to Marionette: the socket, the next command's id, and bytes read past
/// the last message.
struct Connection {
    stream: TcpStream,
    next_id: u32,
    pending: Vec<u8>,
}

impl Connection {
    /// Reads one whole message (deadline `until`) and parses its JSON.
    fn read_message(&mut self, until: Instant) -> Result<Value, String> {
        let mut buf = [0u8; 65536];
        loop {
            // The length: decimal digits up to the colon (10 digits is more than enough).
            if let Some(colon) = self.pending.iter().position(|&b| b == b':') {
                let digits = std::str::from_utf8(&self.pending[..colon])
                    .ok()
                    .filter(|d| !d.is_empty() && d.len() <= 10)
                    .ok_or_else(|| format!("a bad length: {:?}", &self.pending[..colon]))?;
                let n: usize = digits.parse().map_err(|e| format!("{e}: {digits}"))?;
                if n > MAX_MESSAGE {
                    return Err(format!("a message of {n} bytes"));
                }
                if self.pending.len() > colon + n {
                    let body = self.pending[colon + 1..colon + 1 + n].to_vec();
                    self.pending.drain(..colon + 1 + n);
                    return serde_json::from_slice(&body).map_err(|e| e.to_string());
                }
            } else if self.pending.len() > 10 {
                return Err(format!(
                    "no length: {}",
                    String::from_utf8_lossy(&self.pending)
                ));
            }
            if Instant::now() >= until {
                return Err("no answer in time".into());
            }
            match self.stream.read(&mut buf) {
                Ok(0) => return Err("the browser closed the connection".into()),
                Ok(n) => self.pending.extend_from_slice(&buf[..n]),
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    /// Sends the command `name` with `params` and waits for its answer: the result, or
    /// the error the browser gave.
    fn call(&mut self, name: &str, params: Value) -> Result<Value, String> {
        self.next_id += 1;
        let id = self.next_id;
        let body = json!([0, id, name, params]).to_string();
        self.stream
            .write_all(format!("{}:{body}", body.len()).as_bytes())
            .map_err(|e| e.to_string())?;
        let until = Instant::now() + ANSWER_WITHIN;
        loop {
            let m = self.read_message(until)?;
            // An answer to something else (none is expected): skipped.
            if m[0] != json!(1) || m[1] != json!(id) {
                continue;
            }
            return match &m[2] {
                Value::Null => Ok(m[3].clone()),
                e => Err(format!("{}: {}", e["error"], e["message"])),
            };
        }
    }
}

/// A headless Firefox session through Marionette.
pub struct Firefox {
    browser: Option<Proc>,
    conn: Option<RefCell<Connection>>,
    session: bool,
}

impl Firefox {
    /// Starts Firefox with a new profile (and home) in `dir`, connects to its Marionette
    /// port and opens a session with a 1000×760 window, as Chromium's.
    pub fn start(dir: &Path) -> Firefox {
        require_firefox();
        let profile = dir.join("firefox-profile");
        let home = dir.join("firefox-home");
        std::fs::create_dir_all(&profile).unwrap();
        std::fs::create_dir_all(&home).unwrap();
        let port = free_port();
        let mut prefs = format!("user_pref(\"marionette.port\", {port});\n");
        for (name, value) in PREFS {
            prefs.push_str(&format!("user_pref(\"{name}\", {value});\n"));
        }
        std::fs::write(profile.join("user.js"), prefs).unwrap();
        let mut cmd = Command::new(FIREFOX);
        cmd.args(["--marionette", "--headless", "--no-remote", "--profile"])
            .arg(&profile)
            .env("HOME", &home)
            .env("MOZ_CRASHREPORTER_DISABLE", "1")
            // Its own process group: its content processes are killed with it.
            .process_group(0);
        let browser = Proc::spawn("firefox", &mut cmd, dir.join("firefox.out"), false);
        let mut f = Firefox {
            browser: Some(browser),
            conn: None,
            session: false,
        };
        let stream = wait_until(Duration::from_secs(30), Duration::from_millis(100), || {
            if let Some(status) = f.browser.as_mut().and_then(Proc::exited) {
                panic!(
                    "firefox exited ({status}) before opening its port:\n{}",
                    f.log()
                );
            }
            TcpStream::connect(("127.0.0.1", port)).ok()
        })
        .unwrap_or_else(|| panic!("firefox opened no Marionette port {port}:\n{}", f.log()));
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
            .set_write_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut conn = Connection {
            stream,
            next_id: 0,
            pending: Vec::new(),
        };
        let hello = conn
            .read_message(Instant::now() + Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("no Marionette greeting: {e}\n{}", f.log()));
        assert_eq!(
            (&hello["applicationType"], &hello["marionetteProtocol"]),
            (&json!("gecko"), &json!(3)),
            "{hello}"
        );
        f.conn = Some(RefCell::new(conn));
        // Marionette takes the capabilities themselves as the parameters (geckodriver
        // unwraps WebDriver's `capabilities.alwaysMatch` before passing them on).
        let caps = json!({ "timeouts": { "script": 10000, "pageLoad": 20000, "implicit": 0 } });
        let v = f
            .call("WebDriver:NewSession", caps)
            .unwrap_or_else(|e| panic!("no browser session: {e}\n{}", f.log()));
        assert!(v["sessionId"].is_string(), "{v}");
        f.session = true;
        f.resize(1000, 760);
        f
    }

    /// What Firefox printed.
    fn log(&self) -> String {
        self.browser.as_ref().map(Proc::log).unwrap_or_default()
    }

    /// One command: its result, or the error the browser gave.
    fn call(&self, name: &str, params: Value) -> Result<Value, String> {
        let conn = self.conn.as_ref().ok_or("not connected")?;
        conn.borrow_mut().call(name, params)
    }

    /// One command that must succeed: its result's `value`.
    fn value(&self, name: &str, params: Value) -> Value {
        let v = self
            .call(name, params)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        v.get("value").cloned().unwrap_or(Value::Null)
    }
}

impl Browser for Firefox {
    fn name(&self) -> &'static str {
        "firefox"
    }

    fn goto(&self, url: &str) {
        self.value("WebDriver:Navigate", json!({ "url": url }));
    }

    fn find(&self, css: &str) -> Option<String> {
        self.call(
            "WebDriver:FindElement",
            json!({ "using": "css selector", "value": css }),
        )
        .ok()
        .and_then(|v| v["value"][ELEMENT].as_str().map(str::to_string))
    }

    fn click_element(&self, id: &str) {
        self.value("WebDriver:ElementClick", json!({ "id": id }));
    }

    fn type_into_element(&self, id: &str, text: &str) {
        self.value(
            "WebDriver:ElementSendKeys",
            json!({ "id": id, "text": text }),
        );
    }

    fn script(&self, body: &str) -> Value {
        self.value(
            "WebDriver:ExecuteScript",
            json!({ "script": body, "args": [] }),
        )
    }

    fn resize(&self, width: u32, height: u32) {
        self.call(
            "WebDriver:SetWindowRect",
            json!({ "width": width, "height": height }),
        )
        .unwrap_or_else(|e| panic!("WebDriver:SetWindowRect: {e}"));
    }

    fn screenshot_base64(&self) -> String {
        // The window as shown (not the whole document), like WebDriver's screenshot.
        let v = self.value("WebDriver:TakeScreenshot", json!({ "full": false }));
        v.as_str().expect("base64 text").to_string()
    }
}

impl Drop for Firefox {
    fn drop(&mut self) {
        if self.session {
            if let Some(conn) = &self.conn {
                let mut conn = conn.borrow_mut();
                let _ = conn.stream.set_read_timeout(Some(Duration::from_secs(2)));
                let _ = conn.call("WebDriver:DeleteSession", json!({}));
            }
        }
        if let Some(mut b) = self.browser.take() {
            // The group Firefox leads (its id is Firefox's), with its content processes.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", b.pid())])
                .status();
            b.kill();
        }
    }
}
