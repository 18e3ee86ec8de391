//! Call records read back and kept in bounds: the queries of `GET /v1/records` and
//! `GET /v1/records/missed` (pages of the store's `CALL_RECORDS` table, read off the core's
//! loop), their CSV, and the retention (`[records] keep_days`: older records deleted a
//! bounded batch at a time). The core writes the records ([`crate::core::records`]).

use crate::core::records::{CallRecord, RecordOutcome};
use std::sync::Arc;
use std::time::Duration;
use switchboard_store::tables::{call_record_range, CALL_RECORDS};
use switchboard_store::{Store, StoreError, Write};

/// Most records one page answers.
pub const MAX_PAGE: usize = 1000;
/// Records one page answers when the query does not say.
pub const DEFAULT_PAGE: usize = 100;
/// Most rows one query reads from the store looking for matches (a page may then be
/// short, with a `next` cursor to go on from).
pub const MAX_SCANNED: usize = 20_000;
/// Rows read from the store at a time.
const CHUNK: usize = 500;

/// Who is asking about a person's calls, and which.
#[derive(Clone, Debug, Default)]
pub struct RecordQuery {
    /// Unix seconds: calls that began at or after it.
    pub from: u64,
    /// Unix seconds: calls that began before it.
    pub to: u64,
    /// Calls this person took part in (called, was dialled, rang, answered).
    pub user: Option<String>,
    /// Calls for this team.
    pub team: Option<String>,
    pub outcome: Option<RecordOutcome>,
    /// Only `user`'s missed calls (see [`missed_by`]); `teams`: team calls too.
    pub missed: Option<bool>,
    /// Go on after this record (the `next` of the previous page, a [`cursor`]).
    pub after: Option<String>,
    pub limit: usize,
}

/// A page of records, and where the next one starts (None: no more).
#[derive(Debug, Default)]
pub struct Page {
    pub records: Vec<CallRecord>,
    /// The [`cursor`] of the last record read.
    pub next: Option<String>,
}

/// A record's key as a page's `next` gives it: `START:CALL-ID` (one line, as the store's
/// key is two).
pub fn cursor(key: &str) -> String {
    key.replacen('\n', ":", 1)
}

/// The store key of a [`cursor`].
fn key_of(cursor: &str) -> String {
    cursor.replacen(':', "\n", 1)
}

/// Whether `user` took part in the call.
pub fn involves(r: &CallRecord, user: &str) -> bool {
    let is = |o: &Option<String>| o.as_deref() == Some(user);
    is(&r.caller_user)
        || is(&r.dialled_user)
        || is(&r.answered_user)
        || r.rang_users.iter().any(|u| u == user)
}

/// Whether the call is one `user` missed: it was not taken (missed, busy, voicemail, the
/// caller gave up), and it was to them (they were dialled, or rang outside a team call) —
/// or, with `teams`, a team call that rang them.
pub fn missed_by(r: &CallRecord, user: &str, teams: bool) -> bool {
    if !r.outcome.is_missed() || r.caller_user.as_deref() == Some(user) {
        return false;
    }
    let rang = r.rang_users.iter().any(|u| u == user);
    let direct = r.dialled_user.as_deref() == Some(user) || (rang && r.team.is_none());
    direct || (teams && rang && r.team.is_some())
}

fn matches(r: &CallRecord, q: &RecordQuery) -> bool {
    if let Some(u) = &q.user {
        let ok = match q.missed {
            Some(teams) => missed_by(r, u, teams),
            None => involves(r, u),
        };
        if !ok {
            return false;
        }
    }
    if q.team.is_some() && r.team != q.team {
        return false;
    }
    q.outcome.is_none_or(|o| r.outcome == o)
}

/// One page of the records `q` asks for, oldest first.
pub fn query(store: &dyn Store, q: &RecordQuery) -> Result<Page, StoreError> {
    let (start, end) = call_record_range(q.from, q.to);
    let limit = q.limit.clamp(1, MAX_PAGE);
    let after = q.after.as_deref().map(key_of);
    let mut from = match after {
        // Just after the cursor's key.
        Some(after) if after.as_str() >= start.as_str() => format!("{after}\0"),
        _ => start,
    };
    let mut page = Page::default();
    let mut scanned = 0;
    while scanned < MAX_SCANNED {
        let rows = store.scan_range_limited(CALL_RECORDS, &from, &end, CHUNK)?;
        let full = rows.len() == CHUNK;
        for (key, value) in rows {
            scanned += 1;
            from = format!("{key}\0");
            let Ok(r) = serde_json::from_slice::<CallRecord>(&value) else {
                continue;
            };
            if matches(&r, q) {
                page.records.push(r);
                if page.records.len() == limit {
                    page.next = Some(cursor(&key));
                    return Ok(page);
                }
            }
        }
        if !full {
            return Ok(page);
        }
    }
    // Read as much as one query may: the caller goes on from here.
    page.next = from.strip_suffix('\0').map(cursor);
    Ok(page)
}

/// The CSV columns, in order.
pub const CSV_COLUMNS: &[&str] = &[
    "call_id",
    "started",
    "answered",
    "ended",
    "caller",
    "caller_user",
    "trunk",
    "dialled",
    "dialled_user",
    "team",
    "outcome",
    "code",
    "rang",
    "answered_by",
    "answered_user",
    "why",
    "steps",
    "end_reason",
    "mailbox",
];

/// A CSV field (RFC 4180): quoted when it holds a comma, quote or line break. A field
/// that a spreadsheet would read as a formula gets a leading `'`.
fn field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

fn time(t: Option<u64>) -> String {
    t.and_then(|t| chrono::DateTime::from_timestamp(t as i64, 0))
        .map(|t| t.to_rfc3339())
        .unwrap_or_default()
}

/// Records as CSV: a header line, then one line per record (times in RFC 3339, UTC; lists
/// joined with `; `).
pub fn csv(records: &[CallRecord]) -> String {
    let mut out = CSV_COLUMNS.join(",");
    out.push_str("\r\n");
    for r in records {
        let opt = |s: &Option<String>| s.clone().unwrap_or_default();
        let row = [
            r.call_id.clone(),
            time(Some(r.started)),
            time(r.answered),
            time(r.ended),
            r.caller.clone(),
            opt(&r.caller_user),
            opt(&r.trunk),
            r.dialled.clone(),
            opt(&r.dialled_user),
            opt(&r.team),
            r.outcome.as_str().to_string(),
            r.code.map(|c| c.to_string()).unwrap_or_default(),
            r.rang.join("; "),
            opt(&r.answered_by),
            opt(&r.answered_user),
            r.why.clone(),
            r.steps.join("; "),
            opt(&r.end_reason),
            opt(&r.mailbox),
        ];
        let line: Vec<String> = row.iter().map(|f| field(f)).collect();
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    }
    out
}

/// Rows deleted by one commit of the retention.
pub const PRUNE_BATCH: usize = 1000;
/// Most batches one round of the retention deletes (the rest wait for the next round).
pub const PRUNE_BATCHES: usize = 50;
/// How often the retention runs (and once at start).
pub const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// Deletes records of calls that began more than `keep_days` days before `now` (Unix
/// seconds), at most [`PRUNE_BATCHES`] batches of [`PRUNE_BATCH`]; returns how many.
pub fn prune(store: &dyn Store, now: u64, keep_days: u64) -> Result<usize, StoreError> {
    let cutoff = now.saturating_sub(keep_days.saturating_mul(86_400));
    let (start, _) = call_record_range(0, 0);
    let (end, _) = call_record_range(cutoff, cutoff);
    let mut deleted = 0;
    for _ in 0..PRUNE_BATCHES {
        let rows = store.scan_range_limited(CALL_RECORDS, &start, &end, PRUNE_BATCH)?;
        if rows.is_empty() {
            break;
        }
        let writes: Vec<Write> = rows
            .into_iter()
            .map(|(k, _)| Write::delete(CALL_RECORDS, k))
            .collect();
        store.commit(&writes)?;
        deleted += writes.len();
        if writes.len() < PRUNE_BATCH {
            break;
        }
    }
    Ok(deleted)
}

/// Runs the retention now and every [`PRUNE_EVERY`], off the core's loop (the records it
/// deletes are never written again, so its commits race nothing the loop writes).
pub fn spawn_retention(store: Arc<dyn Store>, keep_days: u64) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(PRUNE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let store = store.clone();
            let now = chrono::Utc::now().timestamp().max(0) as u64;
            let done =
                tokio::task::spawn_blocking(move || prune(store.as_ref(), now, keep_days)).await;
            match done {
                Ok(Ok(0)) => {}
                Ok(Ok(n)) => tracing::info!(deleted = n, keep_days, "old call records deleted"),
                Ok(Err(e)) => tracing::warn!(error = %e, "old call records could not be deleted"),
                Err(_) => tracing::warn!("the call records' retention stopped"),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_store::tables::call_record_key;
    use switchboard_store::MemoryStore;

    fn record(started: u64, id: &str, outcome: RecordOutcome) -> CallRecord {
        CallRecord {
            call_id: id.into(),
            caller: "alice".into(),
            caller_user: Some("alice".into()),
            trunk: None,
            dialled: "1002".into(),
            dialled_user: Some("bob".into()),
            team: None,
            started,
            answered: None,
            ended: Some(started + 10),
            steps: vec!["step 1: ring bob".into()],
            rang: vec!["bob at sip:bob@127.0.0.1".into()],
            rang_users: vec!["bob".into()],
            answered_by: None,
            answered_user: None,
            outcome,
            code: Some(480),
            why: "alice dialled 1002".into(),
            end_reason: None,
            mailbox: None,
        }
    }

    fn put(store: &MemoryStore, r: &CallRecord) {
        let key = call_record_key(r.started, &r.call_id);
        let w = Write::put(CALL_RECORDS, key, serde_json::to_vec(r).unwrap());
        store.commit(&[w]).unwrap();
    }

    #[test]
    fn queries_filter_by_time_person_outcome_and_page() {
        let store = MemoryStore::default();
        for i in 0..10 {
            let outcome = if i % 2 == 0 {
                RecordOutcome::Missed
            } else {
                RecordOutcome::Answered
            };
            put(&store, &record(1000 + i, &format!("c{i}"), outcome));
        }
        let mut q = RecordQuery {
            from: 1002,
            to: 1008,
            user: Some("bob".into()),
            outcome: Some(RecordOutcome::Missed),
            limit: 2,
            ..RecordQuery::default()
        };
        let p = query(&store, &q).unwrap();
        let ids: Vec<&str> = p.records.iter().map(|r| r.call_id.as_str()).collect();
        assert_eq!(ids, ["c2", "c4"]);
        q.after = p.next;
        let p = query(&store, &q).unwrap();
        let ids: Vec<&str> = p.records.iter().map(|r| r.call_id.as_str()).collect();
        assert_eq!(ids, ["c6"]);
        assert_eq!(p.next, None);
        q.user = Some("carol".into());
        q.after = None;
        assert!(query(&store, &q).unwrap().records.is_empty());
    }

    #[test]
    fn missed_calls_are_direct_unless_team_calls_are_asked_for() {
        let mut direct = record(1, "d", RecordOutcome::Missed);
        assert!(missed_by(&direct, "bob", false));
        assert!(
            !missed_by(&direct, "alice", true),
            "the caller missed nothing"
        );
        direct.outcome = RecordOutcome::Answered;
        assert!(!missed_by(&direct, "bob", true));
        let mut team = record(2, "t", RecordOutcome::Cancelled);
        team.dialled_user = None;
        team.team = Some("sales".into());
        assert!(!missed_by(&team, "bob", false));
        assert!(missed_by(&team, "bob", true));
    }

    #[test]
    fn retention_deletes_only_old_records_in_batches() {
        let store = MemoryStore::default();
        let day = 86_400;
        let now = 100 * day;
        for i in 0..(PRUNE_BATCH as u64 + 5) {
            put(
                &store,
                &record(
                    now - 91 * day + i,
                    &format!("old{i}"),
                    RecordOutcome::Missed,
                ),
            );
        }
        put(
            &store,
            &record(now - 89 * day, "young", RecordOutcome::Missed),
        );
        assert_eq!(prune(&store, now, 90).unwrap(), PRUNE_BATCH + 5);
        let left = store.scan(CALL_RECORDS).unwrap();
        assert_eq!(left.len(), 1);
        assert!(left[0].0.ends_with("young"));
        assert_eq!(prune(&store, now, 90).unwrap(), 0);
    }

    #[test]
    fn records_and_calls_keep_their_documented_json() {
        use crate::core::records::LiveCall;
        let doc: serde_json::Value = serde_json::from_str(crate::api::OPENAPI).unwrap();
        let keys = |v: serde_json::Value| {
            let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            k.sort();
            k
        };
        let required = |name: &str| {
            let mut k: Vec<String> = doc["components"]["schemas"][name]["required"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
                .collect();
            k.sort();
            k
        };
        let r = record(1, "c", RecordOutcome::Missed);
        assert_eq!(
            keys(serde_json::to_value(&r).unwrap()),
            required("CallRecord")
        );
        let live = LiveCall::of_record(&r);
        assert_eq!(
            keys(serde_json::to_value(&live).unwrap()),
            required("LiveCall")
        );
    }

    #[test]
    fn csv_quotes_what_needs_it() {
        let mut r = record(0, "a,b", RecordOutcome::Busy);
        r.why = "said \"no\"".into();
        r.caller = "=cmd".into();
        let text = csv(&[r]);
        let mut lines = text.lines();
        assert_eq!(lines.next().unwrap(), CSV_COLUMNS.join(","));
        let row = lines.next().unwrap();
        assert!(
            row.starts_with("\"a,b\",1970-01-01T00:00:00+00:00,"),
            "{row}"
        );
        assert!(row.contains("\"said \"\"no\"\"\""), "{row}");
        assert!(row.contains(",'=cmd,"), "{row}");
        assert!(row.contains(",busy,480,"), "{row}");
    }
}
