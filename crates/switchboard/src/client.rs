//! The operator commands' client of the running daemon's API (`switchboard presence …`,
//! `reload`, `trunks`).

use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Where the API is and who is asking.
pub struct Client {
    pub addr: SocketAddr,
    pub token: String,
}

/// What the API answered: its status, Content-Type and body.
struct Exchanged {
    status: u16,
    content_type: String,
    body: Vec<u8>,
}

/// Most bytes of an answer read (a greeting's WAV is at most about 1 MB).
const MAX_ANSWER: u64 = 64 * 1024 * 1024;

impl Client {
    /// One request with `body` (its content type and bytes, if any); the answer as it came.
    fn exchange(
        &self,
        method: &str,
        path: &str,
        body: Option<(&str, &[u8])>,
    ) -> Result<Exchanged, String> {
        let mut s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5))
            .map_err(|e| format!("cannot reach the API at {}: {e}", self.addr))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| e.to_string())?;
        let (content_type, bytes) = body.unwrap_or(("application/json", b""));
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: {content_type}\r\n\
             User-Agent: {}{}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.addr,
            self.token,
            crate::api::CLI_USER_AGENT,
            env!("CARGO_PKG_VERSION"),
            bytes.len()
        );
        // A body the API refuses early (too large) may be cut short by its answer: the
        // answer, if one came, says why.
        let sent = s
            .write_all(head.as_bytes())
            .and_then(|_| s.write_all(bytes))
            .map_err(|e| e.to_string());
        let mut out = Vec::new();
        let read = (&mut s)
            .take(MAX_ANSWER)
            .read_to_end(&mut out)
            .map_err(|e| e.to_string());
        let Some(end) = out.windows(4).position(|w| w == b"\r\n\r\n") else {
            return Err(match (sent, read) {
                (Err(e), _) | (_, Err(e)) => e,
                _ => "no answer".into(),
            });
        };
        let head = String::from_utf8_lossy(&out[..end]).into_owned();
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let content_type = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case("content-type")
                    .then(|| v.trim().to_string())
            })
            .unwrap_or_default();
        out.drain(..end + 4);
        Ok(Exchanged {
            status,
            content_type,
            body: out,
        })
    }

    /// The JSON of an answer, or the API's error as text.
    fn json(answer: Exchanged) -> Result<Value, String> {
        let json: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
        if (200..300).contains(&answer.status) {
            Ok(json)
        } else {
            Err(api_error(answer.status, &json))
        }
    }

    /// One request; returns the JSON answer, or the API's error as text.
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let bytes = (!body.is_empty()).then_some(("application/json", body.as_bytes()));
        Self::json(self.exchange(method, path, bytes)?)
    }

    /// Sends `bytes` as `content_type` (a recording's WAV file); the JSON answer, or the
    /// API's error as text.
    pub fn send_bytes(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        bytes: &[u8],
    ) -> Result<Value, String> {
        Self::json(self.exchange(method, path, Some((content_type, bytes)))?)
    }

    /// `GET path` of a file (audio): its bytes, or the API's error as text.
    pub fn fetch(&self, path: &str) -> Result<Vec<u8>, String> {
        let answer = self.exchange("GET", path, None)?;
        if (200..300).contains(&answer.status) && !answer.content_type.contains("json") {
            Ok(answer.body)
        } else {
            Err(api_error(
                answer.status,
                &serde_json::from_slice(&answer.body).unwrap_or(Value::Null),
            ))
        }
    }
}

/// An error answer of the API as the commands print it: `404: no message "x" (message)`.
fn api_error(status: u16, json: &Value) -> String {
    let field = json["field"]
        .as_str()
        .map(|f| format!(" ({f})"))
        .unwrap_or_default();
    format!(
        "{status}: {}{field}",
        json["error"].as_str().unwrap_or("no answer")
    )
}

/// What `switchboard reload` prints of a reload's answer: one line per kind of change.
pub fn format_reload(v: &Value) -> String {
    let mut lines = vec!["policy reloaded".to_string()];
    for kind in ["users", "trunks"] {
        for what in ["added", "removed", "changed"] {
            let names: Vec<&str> = v[kind][what]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            if !names.is_empty() {
                lines.push(format!("  {kind} {what}: {}", names.join(", ")));
            }
        }
    }
    if lines.len() == 1 {
        lines.push("  no user or trunk changed".into());
    }
    lines.join("\n")
}

/// What `switchboard trunks` prints: one line per trunk with its registration, then one
/// indented line per host name among its sources with its addresses now (or why none).
pub fn format_trunks(v: &Value) -> String {
    let trunks = v["trunks"].as_array().cloned().unwrap_or_default();
    if trunks.is_empty() {
        return "no trunks".into();
    }
    let mut lines = vec![format!("{:<16} {:<12} registration", "trunk", "state")];
    for t in &trunks {
        let at = |k: &str| t[k].as_i64().map(time);
        let state = t["state"].as_str().unwrap_or("");
        let mut details = Vec::new();
        if let (Some(aor), Some(registrar)) = (t["aor"].as_str(), t["registrar"].as_str()) {
            details.push(format!("{aor} at {registrar}"));
        }
        match state {
            "registered" => {
                details.extend(at("expires_at").map(|u| format!("until {u}")));
                details.extend(at("next_attempt_at").map(|n| format!("refresh {n}")));
            }
            "failed" => {
                details.extend(t["last_error"].as_str().map(|e| format!("failed: {e}")));
                details.extend(at("next_attempt_at").map(|n| format!("next attempt {n}")));
            }
            _ => {}
        }
        lines.push(format!(
            "{:<16} {:<12} {}",
            t["trunk"].as_str().unwrap_or(""),
            state,
            details.join(", ")
        ));
        for n in t["source_names"].as_array().into_iter().flatten() {
            let addresses: Vec<&str> = n["addresses"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let mut what = if addresses.is_empty() {
                "no address".to_string()
            } else {
                addresses.join(", ")
            };
            match n["error"].as_str() {
                Some(e) => what.push_str(&format!(" ({e})")),
                None if addresses.is_empty() => what.push_str(" yet"),
                None => {}
            }
            lines.push(format!(
                "  source {}: {what}",
                n["name"].as_str().unwrap_or("")
            ));
        }
    }
    lines.join("\n")
}

/// A Unix time as the CLI shows it: in the machine's time zone, as times are given.
fn time(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|t| {
            t.with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M %:z")
                .to_string()
        })
        .unwrap_or_else(|| t.to_string())
}

/// A query string's value, percent-encoded (RFC 3986 unreserved characters kept).
pub fn query_value(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `GET /v1/registrations` as `switchboard registrations` prints it: one line per device.
pub fn format_registrations(v: &Value) -> String {
    let list = v["registrations"].as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        return "no registered devices".into();
    }
    let text = |r: &Value, k: &str| r[k].as_str().unwrap_or("").to_string();
    let mut lines = vec![format!(
        "{:<12} {:<22} {:<4} {:<24} contact",
        "user", "from", "via", "until"
    )];
    for r in &list {
        let until = r["expires_at"].as_i64().map(time).unwrap_or_default();
        lines.push(format!(
            "{:<12} {:<22} {:<4} {:<24} {}",
            text(r, "user"),
            text(r, "source"),
            text(r, "transport"),
            until,
            text(r, "contact"),
        ));
        if let Some(ua) = r["user_agent"].as_str() {
            lines.push(format!("{:<12} {ua}", ""));
        }
    }
    lines.join("\n")
}

/// `GET /v1/calls` as `switchboard calls` prints it: one line per call, then what rings.
pub fn format_calls(v: &Value) -> String {
    let list = v["calls"].as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        return "no calls in progress".into();
    }
    let text = |r: &Value, k: &str| r[k].as_str().unwrap_or("").to_string();
    let mut lines = vec![format!(
        "{:<24} {:<20} {:<12} {:<9} {:<5} call-id",
        "since", "caller", "dialled", "phase", "step"
    )];
    for c in &list {
        let since = c["started"].as_i64().map(time).unwrap_or_default();
        let step = c["step"]
            .as_u64()
            .map(|s| s.to_string())
            .unwrap_or_else(|| "-".into());
        lines.push(format!(
            "{:<24} {:<20} {:<12} {:<9} {:<5} {}",
            since,
            text(c, "caller"),
            text(c, "dialled"),
            text(c, "phase"),
            step,
            text(c, "call_id"),
        ));
        if let Some(why) = c["step_why"].as_str() {
            lines.push(format!("{:<24} step: {why}", ""));
        }
        for r in c["ringing"].as_array().into_iter().flatten() {
            lines.push(format!("{:<24} ringing: {}", "", r.as_str().unwrap_or("")));
        }
        if let Some(who) = c["answered_by"].as_str() {
            lines.push(format!("{:<24} answered by: {who}", ""));
        }
    }
    lines.join("\n")
}

/// `GET /v1/records` as `switchboard records` prints it: one line per call (when, caller,
/// dialled, outcome, who answered), then why; the cursor of the next page, if any.
pub fn format_records(v: &Value) -> String {
    let list = v["records"].as_array().cloned().unwrap_or_default();
    let mut lines = Vec::new();
    if list.is_empty() {
        lines.push("no call records".to_string());
    } else {
        lines.push(format!(
            "{:<24} {:<20} {:<12} {:<10} answered by",
            "started", "caller", "dialled", "outcome"
        ));
    }
    let text = |r: &Value, k: &str| r[k].as_str().unwrap_or("").to_string();
    for r in &list {
        let started = r["started"].as_i64().map(time).unwrap_or_default();
        let secs = match (r["answered"].as_i64(), r["ended"].as_i64()) {
            (Some(a), Some(e)) => format!(" ({}s)", e - a),
            (Some(_), None) => " (not ended)".into(),
            _ => String::new(),
        };
        lines.push(format!(
            "{:<24} {:<20} {:<12} {:<10} {}{secs}",
            started,
            text(r, "caller"),
            text(r, "dialled"),
            text(r, "outcome"),
            text(r, "answered_by"),
        ));
        lines.push(format!("{:<24} why: {}", "", text(r, "why")));
    }
    if let Some(next) = v["next"].as_str() {
        lines.push(format!("more: --after '{next}'"));
    }
    lines.join("\n")
}

/// `GET /v1/records` as `switchboard records --csv` prints it.
pub fn format_records_csv(v: &Value) -> String {
    let records: Vec<crate::core::records::CallRecord> =
        serde_json::from_value(v["records"].clone()).unwrap_or_default();
    crate::records::csv(&records).trim_end().to_string()
}

/// The path of a mailbox in the API: `/v1/users/ID/voicemail` (or a team's).
pub fn mailbox_path(id: &str, team: bool) -> String {
    let kind = if team { "teams" } else { "users" };
    format!("/v1/{kind}/{}/voicemail", escape(id))
}

/// A message's length as the CLI shows it: `0:42`.
fn minutes(ms: i64) -> String {
    let secs = (ms.max(0) + 999) / 1000;
    format!("{}:{:02}", secs / 60, secs % 60)
}

/// One line per message, as `voicemail list` prints it: its id, when it came, who called,
/// its length, new or heard, and why it came to the mailbox.
pub fn format_message(m: &Value) -> String {
    let text = |k: &str| m[k].as_str().unwrap_or("").to_string();
    let caller = match (m["caller_name"].as_str(), text("caller")) {
        (Some(n), number) if !number.is_empty() && n != number => format!("{n} ({number})"),
        (Some(n), _) => n.to_string(),
        (None, number) if number.is_empty() => "unknown".into(),
        (None, number) => number,
    };
    let reason = match (text("reason").as_str(), m["profile"].as_str()) {
        ("profile", Some(p)) => format!("profile {p}"),
        (r, _) => r.replace('_', " "),
    };
    format!(
        "{:<24} {:<24} {:<24} {:>6}  {:<5}  {reason}",
        text("id"),
        m["received"].as_i64().map(time).unwrap_or_default(),
        caller,
        minutes(m["duration_ms"].as_i64().unwrap_or(0)),
        if m["heard"] == true { "heard" } else { "new" },
    )
}

/// `GET …/voicemail` as `switchboard voicemail list` prints it: the counts, then one line
/// per message, newest first.
pub fn format_voicemail(v: &Value) -> String {
    let mut lines = vec![format!(
        "{}: {} new, {} heard",
        v["mailbox"].as_str().unwrap_or(""),
        v["counts"]["new"].as_u64().unwrap_or(0),
        v["counts"]["old"].as_u64().unwrap_or(0)
    )];
    let messages = v["messages"].as_array().cloned().unwrap_or_default();
    if messages.is_empty() {
        lines.push("no messages".into());
    } else {
        lines.push(format!(
            "{:<24} {:<24} {:<24} {:>6}  {:<5}  why",
            "id", "received", "from", "length", ""
        ));
        lines.extend(messages.iter().map(format_message));
    }
    lines.join("\n")
}

/// One line per person, as `presence list` prints it.
pub fn format_person(p: &Value) -> String {
    let until = p["profile"]["until"]
        .as_i64()
        .map(|t| format!(" until {}", time(t)))
        .unwrap_or_default();
    let status_until = p["status_until"]
        .as_i64()
        .map(|t| format!(" until {}", time(t)))
        .unwrap_or_default();
    let message = p["message"]
        .as_str()
        .map(|m| format!(" \"{m}\""))
        .unwrap_or_default();
    format!(
        "{:<12} {:<16} {:<7} {:<20} call: {}{message}",
        p["user"].as_str().unwrap_or(""),
        format!("{}{status_until}", p["availability"].as_str().unwrap_or("")),
        p["colour"].as_str().unwrap_or(""),
        format!("{}{until}", p["profile"]["name"].as_str().unwrap_or("")),
        p["call_status"].as_str().unwrap_or(""),
    )
}

/// An end time given on the command line (`--until`): `HH:MM` is the next such time of the
/// machine's time zone (today, or tomorrow when it has passed), `YYYY-MM-DD` that day's
/// local midnight; both become RFC 3339. Anything else (RFC 3339, Unix seconds) goes to the
/// API as it is.
pub fn cli_time(s: &str) -> String {
    cli_time_at(s, &chrono::Local::now(), true)
}

/// A time of a report's range (`--from`, `--to`): as [`cli_time`], but `HH:MM` is today's.
pub fn cli_report_time(s: &str) -> String {
    cli_time_at(s, &chrono::Local::now(), false)
}

/// [`cli_time`] in the time zone of `now`; `ahead`: an `HH:MM` already past is tomorrow's.
pub fn cli_time_at<Tz: chrono::TimeZone>(s: &str, now: &chrono::DateTime<Tz>, ahead: bool) -> String
where
    Tz::Offset: std::fmt::Display,
{
    use chrono::{Days, NaiveDateTime, NaiveTime};
    let tz = now.timezone();
    // A local time skipped by a clock change reads as the hour after it.
    let local = |t: NaiveDateTime| {
        tz.from_local_datetime(&t).earliest().or_else(|| {
            tz.from_local_datetime(&(t + chrono::Duration::hours(1)))
                .earliest()
        })
    };
    let s = s.trim();
    if let Ok(t) = NaiveTime::parse_from_str(s, "%H:%M") {
        let today = now.date_naive().and_time(t);
        let at = match local(today) {
            Some(at) if ahead && at <= *now => today.checked_add_days(Days::new(1)).and_then(local),
            at => at,
        };
        if let Some(at) = at {
            return at.to_rfc3339();
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        if let Some(at) = local(d.and_time(NaiveTime::MIN)) {
            return at.to_rfc3339();
        }
    }
    s.to_string()
}

/// The body of a status change; `until` as in [`cli_time`], `for_` a length.
pub fn status_body(
    status: &str,
    message: Option<&str>,
    until: Option<&str>,
    for_: Option<&str>,
) -> Value {
    let mut b = json!({ "status": status });
    if let Some(m) = message {
        b["text"] = json!(m);
    }
    if let Some(u) = until {
        b["until"] = json!(cli_time(u));
    }
    if let Some(f) = for_ {
        b["for"] = json!(f);
    }
    b
}

/// The body of a profile activation; `until` as in [`cli_time`].
pub fn profile_body(
    profile: &str,
    until: Option<&str>,
    for_: Option<&str>,
    message: Option<&str>,
) -> Result<Value, String> {
    let mut b = json!({ "profile": profile });
    if let Some(u) = until {
        b["until"] = json!(cli_time(u));
    }
    if let Some(f) = for_ {
        b["for"] = json!(f);
    }
    if let Some(m) = message {
        b["message"] = json!(m);
    }
    Ok(b)
}

/// Percent-encodes a path segment (a user or profile id) or a query-string value (RFC 3986
/// unreserved characters stay).
pub fn escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A length in seconds as `1h 30m`.
fn length(secs: i64) -> String {
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    match (h, m, s) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (h, 0, 0) => format!("{h}h"),
        (h, m, _) => format!("{h}h {m}m"),
    }
}

/// One line per profile, as `presence profiles list` prints it ("display profile
/// numbers": the number comes first).
pub fn format_profile(p: &Value) -> String {
    let mut incoming = p["incoming"].as_str().unwrap_or("").to_string();
    if let Some(d) = p["devices"].as_array() {
        let d: Vec<&str> = d.iter().filter_map(Value::as_str).collect();
        incoming = format!("{incoming} ({})", d.join(", "));
    }
    if let Some(c) = p["reject_code"].as_i64() {
        incoming = format!(
            "{incoming} {c} {}",
            p["reject_reason"].as_str().unwrap_or("")
        );
    }
    let flags = [
        (p["default"] == true).then_some("default"),
        (p["active"] == true).then_some("active"),
        p["origin"].as_str().filter(|o| *o != "policy"),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(", ");
    format!(
        "{:>3}  {:<22} {:<20} {:<16} {:<28} {:<8} {flags}",
        p["number"].as_i64().unwrap_or(0),
        p["name"].as_str().unwrap_or(""),
        p["id"].as_str().unwrap_or(""),
        p["availability"].as_str().unwrap_or(""),
        incoming.trim_end(),
        p["standard_length"]
            .as_i64()
            .map(length)
            .unwrap_or_else(|| "-".into()),
    )
}

/// A time-in-status report as `presence report` prints it.
pub fn format_report(r: &Value) -> String {
    let from = r["from"].as_i64().unwrap_or(0);
    let to = r["to"].as_i64().unwrap_or(0);
    let span = (to - from).max(1);
    let who = match (r["user"].as_str(), r["team"].as_str()) {
        (Some(u), _) => u.to_string(),
        (_, Some(t)) => format!("team {t}"),
        _ => String::new(),
    };
    let mut out = format!("{who}: {} to {}\n", time(from), time(to));
    let table = |out: &mut String, title: &str, secs: &Value, of: i64| {
        out.push_str(&format!("  {title}\n"));
        let line = |out: &mut String, what: &str, s: i64| {
            out.push_str(&format!(
                "    {what:<16} {:>10} {:>6.1}%\n",
                length(s),
                100.0 * s as f64 / of as f64
            ));
        };
        let mut seen = 0;
        for (status, s) in secs.as_object().into_iter().flatten() {
            let s = s.as_i64().unwrap_or(0);
            seen += s;
            if s > 0 {
                line(out, status, s);
            }
        }
        // Time of the range before the daemon knew the person's status.
        if of > seen {
            line(out, "(not recorded)", of - seen);
        }
    };
    let people = r["people"].as_array().cloned().unwrap_or_default();
    if r["team"].is_string() {
        for p in &people {
            table(
                &mut out,
                &format!(
                    "{} (now {})",
                    p["user"].as_str().unwrap_or(""),
                    p["current"].as_str().unwrap_or("")
                ),
                &p["seconds"],
                span,
            );
        }
        table(&mut out, "average per member", &r["average"], span);
    } else {
        table(&mut out, "time in status", &r["total"], span);
    }
    out.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_times_are_the_machines_local_time() {
        use chrono::TimeZone;
        let india = chrono::FixedOffset::east_opt(5 * 3600 + 1800).unwrap();
        let now = india.with_ymd_and_hms(2026, 12, 1, 20, 0, 0).unwrap();
        // An end time: the next 14:00 there (tomorrow: today's has passed); 21:00 today.
        assert_eq!(
            cli_time_at("14:00", &now, true),
            "2026-12-02T14:00:00+05:30"
        );
        assert_eq!(
            cli_time_at("21:00", &now, true),
            "2026-12-01T21:00:00+05:30"
        );
        assert_eq!(
            cli_time_at("20:00", &now, true),
            "2026-12-02T20:00:00+05:30"
        );
        // A report's range: today's.
        assert_eq!(
            cli_time_at("14:00", &now, false),
            "2026-12-01T14:00:00+05:30"
        );
        assert_eq!(
            cli_time_at("2026-11-23", &now, false),
            "2026-11-23T00:00:00+05:30"
        );
        assert_eq!(cli_time_at("1800000000", &now, true), "1800000000");
        assert_eq!(
            cli_time_at("2026-12-01T09:00:00Z", &now, true),
            "2026-12-01T09:00:00Z"
        );
        // The clock's own zone.
        let local = cli_time("2026-11-23");
        assert!(local.starts_with("2026-11-23T00:00:00"), "{local}");
    }

    #[test]
    fn trunk_lines() {
        let v = json!({"trunks": [
            {"trunk": "carrier", "state": "failed", "registrar": "sip:192.0.2.1", "aor": "sip:pbx@192.0.2.1",
             "contact": "sip:carrier@198.51.100.7", "expires_at": null, "last_error": "403 Forbidden",
             "next_attempt_at": 1800001800},
            {"trunk": "other", "state": "off", "registrar": null, "aor": null, "contact": null,
             "expires_at": null, "last_error": null, "next_attempt_at": null,
             "source_names": [
                {"name": "sbc.carrier.example", "addresses": ["192.0.2.7", "2001:db8::7"], "error": null},
                {"name": "old.carrier.example", "addresses": ["192.0.2.8"], "error": "the DNS lookup of A old.carrier.example failed: timed out"},
                {"name": "gw.carrier.example", "addresses": [], "error": "gw.carrier.example has no address"},
                {"name": "new.carrier.example", "addresses": [], "error": null}]},
        ]});
        let text = format_trunks(&v);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 7, "{text}");
        assert!(lines[1].starts_with("carrier          failed       sip:pbx@192.0.2.1 at sip:192.0.2.1, failed: 403 Forbidden, next attempt "), "{text}");
        assert_eq!(lines[2].trim_end(), "other            off");
        assert_eq!(
            lines[3],
            "  source sbc.carrier.example: 192.0.2.7, 2001:db8::7"
        );
        assert_eq!(
            lines[4],
            "  source old.carrier.example: 192.0.2.8 (the DNS lookup of A old.carrier.example failed: timed out)"
        );
        assert_eq!(
            lines[5],
            "  source gw.carrier.example: no address (gw.carrier.example has no address)"
        );
        assert_eq!(lines[6], "  source new.carrier.example: no address yet");
        assert_eq!(format_trunks(&json!({"trunks": []})), "no trunks");
    }

    #[test]
    fn escapes_and_lengths() {
        assert_eq!(
            escape("2026-11-23T00:00:00+00:00"),
            "2026-11-23T00%3A00%3A00%2B00%3A00"
        );
        assert_eq!(escape("a b/c"), "a%20b%2Fc");
        assert_eq!(length(5400), "1h 30m");
        assert_eq!(length(7200), "2h");
    }

    #[test]
    fn profile_lines_show_the_number_first() {
        let p = json!({"number": 11, "name": "Focus", "id": "focus", "availability": "dnd",
            "incoming": "reject", "reject_code": 486, "reject_reason": "Busy", "standard_length": 7200,
            "origin": "own", "default": false, "active": true});
        let line = format_profile(&p);
        assert!(line.starts_with(" 11  Focus"), "{line}");
        assert!(
            line.contains("reject 486 Busy")
                && line.contains("2h")
                && line.ends_with("active, own"),
            "{line}"
        );
    }

    #[test]
    fn a_mailbox_prints_its_counts_then_a_line_per_message() {
        let v = json!({"mailbox": "user:bob", "counts": {"new": 1, "old": 1}, "messages": [
            {"id": "00000000001800000000-2", "received": 1_800_000_000, "duration_ms": 42_001,
             "caller": "+15550100", "caller_name": "Pat", "heard": false, "reason": "no_answer",
             "profile": null},
            {"id": "00000000001700000000-1", "received": 1_700_000_000, "duration_ms": 5000,
             "caller": "1001", "caller_name": null, "heard": true, "reason": "profile",
             "profile": "lunch"},
        ]});
        let text = format_voicemail(&v);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "user:bob: 1 new, 1 heard");
        assert!(lines[1].starts_with("id "), "{text}");
        assert!(lines[2].starts_with("00000000001800000000-2 "), "{text}");
        assert!(
            lines[2].contains(" Pat (+15550100) ") && lines[2].contains("  0:43  new    no answer"),
            "{text}"
        );
        assert!(
            lines[3].contains(" 1001 ") && lines[3].ends_with("0:05  heard  profile lunch"),
            "{text}"
        );
        let empty =
            json!({"mailbox": "team:sales", "counts": {"new": 0, "old": 0}, "messages": []});
        assert_eq!(
            format_voicemail(&empty),
            "team:sales: 0 new, 0 heard\nno messages"
        );
        assert_eq!(mailbox_path("a b", false), "/v1/users/a%20b/voicemail");
        assert_eq!(mailbox_path("sales", true), "/v1/teams/sales/voicemail");
    }

    #[test]
    fn calls_and_records_print_a_line_each_with_what_rings_and_why() {
        let calls = json!({"calls": [{
            "call_id": "c1", "caller": "alice", "dialled": "2000", "started": 0,
            "answered": null, "phase": "ringing", "step": 2, "step_why": "team support",
            "ringing": ["carol at sip:carol@192.0.2.9"], "answered_by": null,
        }]});
        let text = format_calls(&calls);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("since"), "{text}");
        assert!(
            lines[1].contains(" alice ") && lines[1].contains(" ringing "),
            "{text}"
        );
        assert!(lines[1].ends_with(" 2     c1"), "{text}");
        assert!(lines[2].ends_with("step: team support"), "{text}");
        assert!(
            lines[3].ends_with("ringing: carol at sip:carol@192.0.2.9"),
            "{text}"
        );
        assert_eq!(format_calls(&json!({"calls": []})), "no calls in progress");

        let records = json!({"records": [{
            "call_id": "c1", "caller": "alice", "dialled": "1002", "started": 0,
            "answered": 10, "ended": 70, "outcome": "answered", "answered_by": "bob at x",
            "why": "alice dialled 1002",
        }], "next": "00000000000000000000:c1"});
        let text = format_records(&records);
        assert!(text.contains(" answered   bob at x (60s)"), "{text}");
        assert!(text.contains("why: alice dialled 1002"), "{text}");
        assert!(
            text.ends_with("more: --after '00000000000000000000:c1'"),
            "{text}"
        );
        assert_eq!(
            format_records(&json!({"records": [], "next": null})),
            "no call records"
        );
    }
}
