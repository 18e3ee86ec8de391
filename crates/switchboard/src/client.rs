//! `switchboard presence …`: a small client of the running daemon's presence API.

use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Where the API is and who is asking.
pub struct Client {
    pub addr: SocketAddr,
    pub token: String,
}

impl Client {
    /// One request; returns the JSON answer, or the API's error as text.
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
        let mut s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5))
            .map_err(|e| format!("cannot reach the presence API at {}: {e}", self.addr))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| e.to_string())?;
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.addr,
            self.token,
            body.len()
        )
        .map_err(|e| e.to_string())?;
        let mut out = String::new();
        s.read_to_string(&mut out).map_err(|e| e.to_string())?;
        let status: u16 = out
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let json: Value = out
            .split_once("\r\n\r\n")
            .and_then(|(_, b)| serde_json::from_str(b).ok())
            .unwrap_or(Value::Null);
        if status == 200 {
            Ok(json)
        } else {
            let field = json["field"]
                .as_str()
                .map(|f| format!(" ({f})"))
                .unwrap_or_default();
            Err(format!(
                "{status}: {}{field}",
                json["error"].as_str().unwrap_or("no answer")
            ))
        }
    }
}

/// One line per person, as `presence list` prints it.
pub fn format_person(p: &Value) -> String {
    let until = p["profile"]["until"]
        .as_i64()
        .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
        .map(|t| format!(" until {}", t.format("%Y-%m-%d %H:%M UTC")))
        .unwrap_or_default();
    let message = p["message"]
        .as_str()
        .map(|m| format!(" \"{m}\""))
        .unwrap_or_default();
    format!(
        "{:<12} {:<16} {:<7} {:<20} call: {}{message}",
        p["user"].as_str().unwrap_or(""),
        p["availability"].as_str().unwrap_or(""),
        p["colour"].as_str().unwrap_or(""),
        format!("{}{until}", p["profile"]["name"].as_str().unwrap_or("")),
        p["call_status"].as_str().unwrap_or(""),
    )
}

/// The body of a status change.
pub fn status_body(status: &str, message: Option<&str>) -> Value {
    match message {
        Some(m) => json!({ "status": status, "text": m }),
        None => json!({ "status": status }),
    }
}

/// The body of a profile activation; `until` is `HH:MM` (today, UTC) or RFC 3339.
pub fn profile_body(
    profile: &str,
    until: Option<&str>,
    for_: Option<&str>,
    message: Option<&str>,
) -> Result<Value, String> {
    let mut b = json!({ "profile": profile });
    if let Some(u) = until {
        let t = match chrono::NaiveTime::parse_from_str(u, "%H:%M") {
            Ok(t) => chrono::Utc::now()
                .date_naive()
                .and_time(t)
                .and_utc()
                .to_rfc3339(),
            Err(_) => u.to_string(),
        };
        b["until"] = json!(t);
    }
    if let Some(f) = for_ {
        b["for"] = json!(f);
    }
    if let Some(m) = message {
        b["message"] = json!(m);
    }
    Ok(b)
}
