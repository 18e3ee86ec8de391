//! A limit on log lines a flood would repeat (a refused call, a refused connection, a bad
//! request answered…): each kind of line is written at most [`BURST`] times per
//! [`INTERVAL`]; the rest are counted, and once the interval is over one line says how many
//! of that kind were left out:
//!
//! ```text
//! WARN switchboard::log_limit: log lines suppressed kind="call refused" suppressed=99412 seconds=5
//! ```
//!
//! [`LogLimit`] is the limiter (pure: the time is handed in). The process has one, shared by
//! the sockets and the core: [`allow`] asks it before writing a line, and the daemon calls
//! [`flush`] every second, which writes the "suppressed" lines of the intervals that ended.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Lines of one kind written per interval.
pub const BURST: u32 = 20;
/// The interval over which [`BURST`] lines of a kind are written.
pub const INTERVAL: Duration = Duration::from_secs(5);

/// The target of the "suppressed" lines.
pub const TARGET: &str = "switchboard::log_limit";

#[derive(Debug)]
struct Window {
    kind: &'static str,
    start: Instant,
    written: u32,
    suppressed: u64,
}

/// What [`LogLimit::allow`] says of a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Write,
    /// Write it, after a line saying how many of its kind were left out.
    WriteAfter(u64),
    /// Leave it out (it is counted).
    Suppress,
}

/// Counts the lines of each kind written in the current interval.
#[derive(Debug)]
pub struct LogLimit {
    burst: u32,
    interval: Duration,
    /// Few kinds (a dozen): a list.
    windows: Vec<Window>,
}

impl LogLimit {
    pub const fn new(burst: u32, interval: Duration) -> Self {
        LogLimit {
            burst,
            interval,
            windows: Vec::new(),
        }
    }

    /// Whether a line of `kind` may be written at `now` (if not, it is counted). A kind
    /// whose interval ended starts a new one, and the count of what it left out comes with
    /// the first line of the new one (or from [`LogLimit::ended`], whichever is first).
    pub fn allow(&mut self, kind: &'static str, now: Instant) -> Verdict {
        let Some(w) = self.windows.iter_mut().find(|w| w.kind == kind) else {
            self.windows.push(Window {
                kind,
                start: now,
                written: 1,
                suppressed: 0,
            });
            return Verdict::Write;
        };
        if now.saturating_duration_since(w.start) >= self.interval {
            let suppressed = std::mem::take(&mut w.suppressed);
            w.start = now;
            w.written = 1;
            return match suppressed {
                0 => Verdict::Write,
                n => Verdict::WriteAfter(n),
            };
        }
        if w.written < self.burst {
            w.written += 1;
            Verdict::Write
        } else {
            w.suppressed += 1;
            Verdict::Suppress
        }
    }

    /// The kinds whose interval has ended with lines suppressed, and how many; their
    /// counts start again from zero (a kind's next lines are written again).
    pub fn ended(&mut self, now: Instant) -> Vec<(&'static str, u64)> {
        let interval = self.interval;
        let mut out = Vec::new();
        self.windows.retain_mut(|w| {
            if now.saturating_duration_since(w.start) < interval {
                return true;
            }
            if w.suppressed > 0 {
                out.push((w.kind, w.suppressed));
            }
            false
        });
        out
    }
}

static LIMIT: Mutex<LogLimit> = Mutex::new(LogLimit::new(BURST, INTERVAL));

/// Whether a line of `kind` may be written now (the process's limiter).
pub fn allow(kind: &'static str) -> bool {
    let verdict = match LIMIT.lock() {
        Ok(mut l) => l.allow(kind, Instant::now()),
        Err(_) => Verdict::Write,
    };
    match verdict {
        Verdict::Write => true,
        Verdict::WriteAfter(n) => {
            suppressed_line(kind, n);
            true
        }
        Verdict::Suppress => false,
    }
}

fn suppressed_line(kind: &str, suppressed: u64) {
    tracing::warn!(
        target: TARGET,
        kind,
        suppressed,
        seconds = INTERVAL.as_secs(),
        "log lines suppressed"
    );
}

/// Writes one line per kind whose interval has ended with lines suppressed, with their
/// count. The daemon calls it every second.
pub fn flush() {
    let ended = match LIMIT.lock() {
        Ok(mut l) => l.ended(Instant::now()),
        Err(_) => return,
    };
    for (kind, suppressed) in ended {
        suppressed_line(kind, suppressed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_per_interval_then_a_count() {
        let t0 = Instant::now();
        let mut l = LogLimit::new(3, Duration::from_secs(5));
        let written = (0..1000)
            .filter(|i| l.allow("refused", t0 + Duration::from_millis(*i)) == Verdict::Write)
            .count();
        assert_eq!(written, 3);
        // Another kind has its own count.
        assert_eq!(l.allow("bad request", t0), Verdict::Write);
        assert_eq!(l.ended(t0 + Duration::from_secs(4)), vec![]);
        // After the interval: the count of what was left out, once…
        let at = t0 + Duration::from_secs(5);
        assert_eq!(l.ended(at), vec![("refused", 997)]);
        assert_eq!(l.ended(at), vec![]);
        // …and lines are written again.
        assert_eq!(l.allow("refused", at), Verdict::Write);
    }

    #[test]
    fn the_count_comes_with_the_next_line_when_it_comes_first() {
        let t0 = Instant::now();
        let mut l = LogLimit::new(1, Duration::from_secs(5));
        assert_eq!(l.allow("k", t0), Verdict::Write);
        assert_eq!(l.allow("k", t0), Verdict::Suppress);
        assert_eq!(l.allow("k", t0), Verdict::Suppress);
        let at = t0 + Duration::from_secs(6);
        assert_eq!(l.allow("k", at), Verdict::WriteAfter(2));
        assert_eq!(l.ended(at), vec![]);
        assert_eq!(l.allow("k", at), Verdict::Suppress);
    }
}
