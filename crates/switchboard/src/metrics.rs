//! Metrics: what the daemon counts, as a snapshot, and its rendering for Prometheus.
//!
//! Nothing here is shared between threads while it is counted. The core and its
//! sub-machines keep plain integers and [`Histogram`]s and hand a [`CoreMetrics`] copy when
//! asked ([`crate::core::Core::metrics`]); the shell's loop keeps its own
//! ([`ShellMetrics`]: store commits, how long arrivals waited, policy reloads) and reads the
//! socket tasks' atomic counters ([`NetMetrics`]). When `GET /metrics` asks, the loop puts
//! the three together into a [`Snapshot`] and the API renders it in the OpenMetrics text
//! format ([`render`]) off the loop.
//!
//! Labels are bounded sets fixed here (methods, response classes, outcomes, statuses):
//! never a user name or an address.

use crate::core::records::RecordOutcome;
use crate::core::watchers::UnsolicitedStats;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use std::time::Duration;
use switchboard_presence::model::Availability;
use switchboard_sip::events::Package;
use switchboard_sip::msg::Method;

/// The methods counted by name (the server's own); any other is counted as `other`.
pub use crate::core::METHODS;

/// The label of each of [`METHODS`], then `other`.
const METHOD_LABELS: [&str; METHODS.len() + 1] = [
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "REGISTER",
    "OPTIONS",
    "UPDATE",
    "INFO",
    "PRACK",
    "REFER",
    "NOTIFY",
    "SUBSCRIBE",
    "PUBLISH",
    "MESSAGE",
    "other",
];

/// The index of a method in a per-method table of `METHODS.len() + 1` counters.
pub fn method_index(method: &Method) -> usize {
    METHODS
        .iter()
        .position(|m| m == method)
        .unwrap_or(METHODS.len())
}

/// Response classes, `1xx` to `6xx`.
const CLASS_LABELS: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "6xx"];

/// The index of a status code's class in a table of six (None: not a status code).
pub fn class_index(code: u16) -> Option<usize> {
    match code {
        100..=699 => Some(usize::from(code / 100 - 1)),
        _ => None,
    }
}

/// How a call that was set up ended, for `switchboard_calls_ended_total{outcome}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A branch answered (2xx).
    Answered,
    /// Nobody answered: rang out, or nobody could be reached (408, 480, a 487 the caller
    /// did not ask for).
    NoAnswer,
    /// Busy everywhere (486, 600).
    Busy,
    /// Refused: another 4xx or 6xx (403, 404, 603…).
    Rejected,
    /// The caller hung up first (CANCEL).
    Cancelled,
    /// Anything else: 3xx not followed, 5xx, no final response at all.
    Failed,
}

impl Outcome {
    pub const ALL: [Outcome; 6] = [
        Outcome::Answered,
        Outcome::NoAnswer,
        Outcome::Busy,
        Outcome::Rejected,
        Outcome::Cancelled,
        Outcome::Failed,
    ];

    /// The outcome of a call given the final response the caller got (None: none went
    /// out) and whether the caller cancelled it.
    pub fn of(final_code: Option<u16>, cancelled: bool) -> Outcome {
        if cancelled {
            return Outcome::Cancelled;
        }
        match final_code {
            Some(200..=299) => Outcome::Answered,
            Some(408 | 480 | 487) => Outcome::NoAnswer,
            Some(486 | 600) => Outcome::Busy,
            Some(400..=499 | 600..=699) => Outcome::Rejected,
            _ => Outcome::Failed,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Answered => "answered",
            Outcome::NoAnswer => "no_answer",
            Outcome::Busy => "busy",
            Outcome::Rejected => "rejected",
            Outcome::Cancelled => "cancelled",
            Outcome::Failed => "failed",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Calls ended, per [`Outcome`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcomes(pub [u64; 6]);

impl Outcomes {
    pub fn count(&mut self, outcome: Outcome) {
        self.0[outcome.index()] += 1;
    }

    pub fn get(&self, outcome: Outcome) -> u64 {
        self.0[outcome.index()]
    }
}

/// Upper bounds (seconds) of the call setup time: from the INVITE to the answer.
pub const SETUP_BUCKETS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0];
/// Upper bounds (seconds) of a store commit.
pub const COMMIT_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];
/// Upper bounds (seconds) of how long an arrival waited for the core's loop.
pub const LAG_BUCKETS: &[f64] = &[
    0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// A histogram of durations with fixed buckets: plain counts, for one owner.
#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Observations per bucket (not cumulative); the last one is past every bound.
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
            count: 0,
        }
    }

    /// Counts one duration.
    pub fn observe(&mut self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = self
            .bounds
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(self.bounds.len());
        self.counts[i] += 1;
        self.sum += secs;
        self.count += 1;
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// `(upper bound, observations in that bucket)`, the last bound `+Inf`.
    fn buckets(&self) -> Vec<(f64, u64)> {
        self.bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(self.counts.iter().copied())
            .collect()
    }
}

/// What the core counts, as of when it was asked.
#[derive(Clone, Debug)]
pub struct CoreMetrics {
    /// Requests received, by [`method_index`] (retransmissions included).
    pub requests: [u64; METHODS.len() + 1],
    /// Responses received, by [`class_index`].
    pub responses_received: [u64; 6],
    /// Responses sent (ours and relayed), by class; retransmissions not included.
    pub responses_sent: [u64; 6],
    /// Messages refused before any handling (400 and the like).
    pub rejected: u64,
    /// Messages dropped without an answer.
    pub dropped: u64,
    /// Transactions in the transaction layer now.
    pub transactions: usize,
    /// Addresses of record with at least one registered contact, and the contacts.
    pub aors: usize,
    pub contacts: usize,
    /// Digest challenges sent (401, 407).
    pub auth_challenges: u64,
    /// Wrong credentials.
    pub auth_failures: u64,
    /// Requests refused because their source or user was blocked.
    pub auth_blocked: u64,
    /// Sources and users blocked now.
    pub blocked_sources: usize,
    pub blocked_users: usize,
    /// Calls being set up now (until every branch has settled), and answered calls in
    /// progress.
    pub calls_in_setup: usize,
    pub calls_answered_active: usize,
    /// Calls planned (set up), INVITEs refused before planning, calls ended by outcome.
    pub calls_started: u64,
    pub calls_refused: u64,
    pub calls_ended: Outcomes,
    /// From the INVITE to the answer, of answered calls.
    pub call_setup: Histogram,
    /// People per availability ([`Availability::ALL`] order).
    pub presence: [usize; Availability::ALL.len()],
    /// Subscriptions in force.
    pub subscriptions: usize,
    /// NOTIFYs sent in subscriptions, by event package (`Package::ALL` order).
    pub notifies_sent: [u64; Package::ALL.len()],
    /// Message-waiting NOTIFYs sent outside any subscription (`unsolicited_mwi`).
    pub unsolicited_notifies: UnsolicitedStats,
    /// Writes to the store that failed.
    pub store_failures: u64,
    /// Media sessions open now (messages playing to callers), and messages played to
    /// their end and skipped (no offer, no codec in common, the session limit…).
    pub media_sessions: usize,
    pub messages_played: u64,
    pub messages_skipped: u64,
    /// Media sessions asked of the engine since the start.
    pub media_sessions_opened: u64,
    /// Call records written (complete ones: one per call), by outcome
    /// ([`RecordOutcome::ALL`] order).
    pub records_written: [u64; RecordOutcome::ALL.len()],
    /// Missed calls put in the mail outbox (with `[mail]` configured).
    pub mail_notices: u64,
    /// Voicemail messages put in the voicemail outbox (a mailbox with addresses, with
    /// `[mail]` configured).
    pub voicemail_mail_notices: u64,
    /// Voicemail messages left in the daemon's own mailboxes, by what became of them.
    pub voicemail: crate::core::VoicemailStats,
}

/// What the shell's loop counts itself.
#[derive(Clone, Debug)]
pub struct ShellMetrics {
    /// From handing writes to the store to hearing they are durable.
    pub store_commit: Histogram,
    /// How long arrivals waited between their socket and the core.
    pub loop_lag: Histogram,
    pub reloads_ok: u64,
    pub reloads_failed: u64,
    /// With a store shared with other nodes: their changes applied here, and the times
    /// every shared table was read again (the feed no longer held what this node missed).
    pub shared_changes: u64,
    pub shared_resyncs: u64,
}

impl Default for ShellMetrics {
    fn default() -> Self {
        ShellMetrics {
            store_commit: Histogram::new(COMMIT_BUCKETS),
            loop_lag: Histogram::new(LAG_BUCKETS),
            reloads_ok: 0,
            reloads_failed: 0,
            shared_changes: 0,
            shared_resyncs: 0,
        }
    }
}

/// The socket tasks' counters, read as they stand.
#[derive(Clone, Copy, Debug, Default)]
pub struct NetMetrics {
    /// Requests answered 503 because the core was behind.
    pub shed: u64,
    /// Messages the sockets could not read and dropped…
    pub dropped: u64,
    /// …or answered (400, 501) before they reached the core.
    pub rejected: u64,
    pub tcp_connections: u64,
}

/// The mail task's counters ([`crate::mail::MailStats`]), read as they stand; all 0
/// without `[mail]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MailMetrics {
    /// Missed-call notices' mails.
    pub missed: MailCounts,
    /// Voicemail messages' mails.
    pub voicemail: MailCounts,
}

/// What the mail task counts of one kind of notice.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MailCounts {
    /// Mails the relay accepted (one per recipient).
    pub sent: u64,
    /// Attempts that failed and are tried again (the relay down, 4xx, TLS refused…).
    pub failed: u64,
    /// Mails given up: refused for good (5xx, an address the relay will not take) or not
    /// delivered within `give_up_hours`.
    pub given_up: u64,
    /// Notices dropped unsent: beyond `queue`, unreadable, or (voicemail) of a message
    /// deleted before its mail went.
    pub dropped: u64,
    /// Notices in the outbox as of the task's last look (at most `queue`).
    pub outbox: u64,
}

/// Everything `/metrics` shows, put together by the loop.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub core: CoreMetrics,
    pub shell: ShellMetrics,
    pub net: NetMetrics,
    pub mail: MailMetrics,
}

/// Renders a snapshot in the OpenMetrics text format (what Prometheus scrapes).
pub fn render(snapshot: Snapshot) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Render(snapshot)));
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}

/// The content type of [`render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug)]
struct Render(Snapshot);

/// A counter (`_total` is added to its name).
fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let c = ConstCounter::new(v);
    c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, v: usize) -> std::fmt::Result {
    let g = ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX));
    g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)
}

/// A counter with one label, a value per label value.
fn counters<'a>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &'static str,
    values: impl IntoIterator<Item = (&'a str, u64)>,
) -> std::fmt::Result {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (value, n) in values {
        let labels = [(label, value)];
        let family = m.encode_family(&labels)?;
        ConstCounter::new(n).encode(family)?;
    }
    Ok(())
}

/// A histogram in seconds (`_seconds` is added to its name).
fn histogram(e: &mut DescriptorEncoder, name: &str, help: &str, h: &Histogram) -> std::fmt::Result {
    let mut m = e.encode_descriptor(name, help, Some(&Unit::Seconds), MetricType::Histogram)?;
    m.encode_histogram::<NoLabelSet>(h.sum, h.count, &h.buckets(), None)
}

impl Collector for Render {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let Snapshot {
            core,
            shell,
            net,
            mail,
        } = &self.0;
        let e = &mut e;
        counters(
            e,
            "switchboard_sip_requests_received",
            "SIP requests received, by method (retransmissions included)",
            "method",
            METHOD_LABELS.iter().copied().zip(core.requests),
        )?;
        counters(
            e,
            "switchboard_sip_responses_received",
            "SIP responses received, by class",
            "class",
            CLASS_LABELS.iter().copied().zip(core.responses_received),
        )?;
        counters(
            e,
            "switchboard_sip_responses_sent",
            "SIP responses sent (the daemon's own and relayed ones), by class; retransmissions not included",
            "class",
            CLASS_LABELS.iter().copied().zip(core.responses_sent),
        )?;
        counter(
            e,
            "switchboard_sip_messages_rejected",
            "SIP messages refused before handling (malformed, unsupported extension)",
            core.rejected + net.rejected,
        )?;
        counter(
            e,
            "switchboard_sip_messages_dropped",
            "SIP messages dropped without an answer (unreadable, stray)",
            core.dropped + net.dropped,
        )?;
        gauge(
            e,
            "switchboard_sip_transactions",
            "SIP transactions in progress",
            core.transactions,
        )?;
        counter(
            e,
            "switchboard_sip_shed_requests",
            "New requests answered 503 because the core was behind",
            net.shed,
        )?;
        gauge(
            e,
            "switchboard_tcp_connections",
            "Open TCP connections",
            net.tcp_connections as usize,
        )?;
        gauge(
            e,
            "switchboard_registrations",
            "Addresses of record with at least one registered contact",
            core.aors,
        )?;
        gauge(
            e,
            "switchboard_registered_contacts",
            "Registered contacts (devices)",
            core.contacts,
        )?;
        counter(
            e,
            "switchboard_auth_challenges",
            "Digest challenges sent (401, 407)",
            core.auth_challenges,
        )?;
        counter(
            e,
            "switchboard_auth_failures",
            "Requests with wrong credentials",
            core.auth_failures,
        )?;
        counter(
            e,
            "switchboard_auth_blocked_requests",
            "Requests refused because their source or user was blocked",
            core.auth_blocked,
        )?;
        gauge(
            e,
            "switchboard_auth_blocked_sources",
            "Source addresses blocked now after failed attempts",
            core.blocked_sources,
        )?;
        gauge(
            e,
            "switchboard_auth_blocked_users",
            "User names blocked now after failed attempts",
            core.blocked_users,
        )?;
        gauge(
            e,
            "switchboard_calls_in_setup",
            "Calls being set up now (from the INVITE until every branch has settled)",
            core.calls_in_setup,
        )?;
        gauge(
            e,
            "switchboard_calls_answered_active",
            "Answered calls in progress",
            core.calls_answered_active,
        )?;
        counter(
            e,
            "switchboard_calls_started",
            "Calls set up: initial INVITEs that were admitted and planned",
            core.calls_started,
        )?;
        counter(
            e,
            "switchboard_calls_refused",
            "Initial INVITEs refused before a call was set up (403, 404, 482, 503 at the call limit…)",
            core.calls_refused,
        )?;
        counters(
            e,
            "switchboard_calls_ended",
            "Calls that were set up and are settled, by outcome",
            "outcome",
            Outcome::ALL
                .iter()
                .map(|o| (o.as_str(), core.calls_ended.get(*o))),
        )?;
        histogram(
            e,
            "switchboard_call_setup",
            "From an answered call's INVITE to its first 2xx",
            &core.call_setup,
        )?;
        let mut m = e.encode_descriptor(
            "switchboard_presence_people",
            "People per presence status",
            None,
            MetricType::Gauge,
        )?;
        for (a, n) in Availability::ALL.iter().zip(core.presence) {
            let labels = [("status", a.as_str())];
            ConstGauge::new(n as i64).encode(m.encode_family(&labels)?)?;
        }
        gauge(
            e,
            "switchboard_subscriptions",
            "Subscriptions (SUBSCRIBE: dialog, presence, message-summary) in force",
            core.subscriptions,
        )?;
        counters(
            e,
            "switchboard_sip_notifies_sent",
            "NOTIFYs sent in subscriptions, by event package; retransmissions not included",
            "package",
            Package::ALL
                .iter()
                .map(|p| p.as_str())
                .zip(core.notifies_sent),
        )?;
        let u = core.unsolicited_notifies;
        counters(
            e,
            "switchboard_mwi_unsolicited_notifies",
            "Message-waiting NOTIFYs sent outside any subscription (unsolicited_mwi), by result (sent; failed: refused or unanswered, not sent again until the counts change; skipped: too many at once)",
            "result",
            [
                ("sent", u.sent),
                ("failed", u.failed),
                ("skipped", u.skipped),
            ],
        )?;
        gauge(
            e,
            "switchboard_media_sessions",
            "Media sessions open (messages playing to callers)",
            core.media_sessions,
        )?;
        counters(
            e,
            "switchboard_messages",
            "Messages to callers, by result (skipped: no SDP offer, no codec in common, no prompt, the session limit, the engine refused)",
            "result",
            [
                ("played", core.messages_played),
                ("skipped", core.messages_skipped),
            ],
        )?;
        counter(
            e,
            "switchboard_media_sessions_opened",
            "Media sessions asked of the media engine (a message to play to a caller)",
            core.media_sessions_opened,
        )?;
        counters(
            e,
            "switchboard_call_records",
            "Call records written (one per call, when its outcome is settled or, answered, when it ends), by outcome",
            "outcome",
            RecordOutcome::ALL
                .iter()
                .map(|o| o.as_str())
                .zip(core.records_written),
        )?;
        counter(
            e,
            "switchboard_mail_notices_queued",
            "Missed calls put in the mail outbox",
            core.mail_notices,
        )?;
        counters(
            e,
            "switchboard_voicemail_messages",
            "Voicemail messages callers left in the daemon's own mailboxes, by result (kept: stored with its audio; too_short: under [voicemail] min_message_ms, not kept; full: the mailbox held its most messages, the caller was told so or the message was not kept)",
            "result",
            [
                ("kept", core.voicemail.kept),
                ("too_short", core.voicemail.too_short),
                ("full", core.voicemail.full),
            ],
        )?;
        counters(
            e,
            "switchboard_mails",
            "Missed-call mails, by result (sent: the relay took it; failed: an attempt that failed, tried again later; given_up: refused for good or too old)",
            "result",
            [
                ("sent", mail.missed.sent),
                ("failed", mail.missed.failed),
                ("given_up", mail.missed.given_up),
            ],
        )?;
        counter(
            e,
            "switchboard_mail_notices_dropped",
            "Missed-call notices dropped unsent (the outbox over its queue, or unreadable)",
            mail.missed.dropped,
        )?;
        gauge(
            e,
            "switchboard_mail_outbox_notices",
            "Missed-call notices waiting in the outbox (as of the mail task's last look, at most a second ago)",
            mail.missed.outbox as usize,
        )?;
        counter(
            e,
            "switchboard_voicemail_mail_notices_queued",
            "Voicemail messages put in the voicemail outbox (a mailbox with mail addresses)",
            core.voicemail_mail_notices,
        )?;
        counters(
            e,
            "switchboard_voicemail_mails",
            "Voicemail mails (the message attached), by result (sent: the relay took it; failed: an attempt that failed, tried again later; given_up: refused for good or too old)",
            "result",
            [
                ("sent", mail.voicemail.sent),
                ("failed", mail.voicemail.failed),
                ("given_up", mail.voicemail.given_up),
            ],
        )?;
        counter(
            e,
            "switchboard_voicemail_mail_notices_dropped",
            "Voicemail notices dropped unsent (the outbox over its queue, unreadable, or the message deleted first)",
            mail.voicemail.dropped,
        )?;
        gauge(
            e,
            "switchboard_voicemail_mail_outbox_notices",
            "Voicemail notices waiting in the voicemail outbox (as of the mail task's last look, at most a second ago)",
            mail.voicemail.outbox as usize,
        )?;
        histogram(
            e,
            "switchboard_store_commit",
            "From handing writes to the store to their being durable",
            &shell.store_commit,
        )?;
        counter(
            e,
            "switchboard_store_failures",
            "Writes the store refused",
            core.store_failures,
        )?;
        histogram(
            e,
            "switchboard_core_lag",
            "How long SIP messages waited between their socket and the core",
            &shell.loop_lag,
        )?;
        counters(
            e,
            "switchboard_policy_reloads",
            "Policy reloads, by result (failed: the running policy stayed)",
            "result",
            [("ok", shell.reloads_ok), ("failed", shell.reloads_failed)],
        )?;
        counter(
            e,
            "switchboard_shared_changes",
            "Changes other nodes sharing the store made, applied here",
            shell.shared_changes,
        )?;
        counter(
            e,
            "switchboard_shared_resyncs",
            "Times every shared table was read again (the change feed no longer held what this node missed)",
            shell.shared_resyncs,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn core() -> CoreMetrics {
        CoreMetrics {
            requests: [0; 15],
            responses_received: [0; 6],
            responses_sent: [0; 6],
            rejected: 0,
            dropped: 0,
            transactions: 0,
            aors: 0,
            contacts: 0,
            auth_challenges: 0,
            auth_failures: 0,
            auth_blocked: 0,
            blocked_sources: 0,
            blocked_users: 0,
            calls_in_setup: 0,
            calls_answered_active: 0,
            calls_started: 0,
            calls_refused: 0,
            calls_ended: Outcomes::default(),
            call_setup: Histogram::new(SETUP_BUCKETS),
            presence: [0; 8],
            subscriptions: 0,
            notifies_sent: [0; 3],
            unsolicited_notifies: UnsolicitedStats::default(),
            store_failures: 0,
            media_sessions: 0,
            messages_played: 0,
            messages_skipped: 0,
            media_sessions_opened: 0,
            records_written: [0; 6],
            mail_notices: 0,
            voicemail_mail_notices: 0,
            voicemail: Default::default(),
        }
    }

    #[test]
    fn histogram_buckets_each_observation_once() {
        let mut h = Histogram::new(SETUP_BUCKETS);
        h.observe(Duration::from_millis(50)); // on the first bound: in it
        h.observe(Duration::from_millis(700));
        h.observe(Duration::from_secs(600)); // past every bound
        assert_eq!(h.count(), 3);
        assert!((h.sum() - 600.75).abs() < 1e-9);
        let b = h.buckets();
        assert_eq!(b[0], (0.05, 1));
        assert_eq!(b[4], (1.0, 1));
        assert_eq!(b.last(), Some(&(f64::INFINITY, 1)));
        assert_eq!(b.iter().map(|(_, n)| n).sum::<u64>(), 3);
    }

    #[test]
    fn outcomes_follow_the_final_response() {
        assert_eq!(Outcome::of(Some(200), false), Outcome::Answered);
        assert_eq!(Outcome::of(Some(486), false), Outcome::Busy);
        assert_eq!(Outcome::of(Some(600), false), Outcome::Busy);
        assert_eq!(Outcome::of(Some(480), false), Outcome::NoAnswer);
        assert_eq!(Outcome::of(Some(487), false), Outcome::NoAnswer);
        assert_eq!(Outcome::of(Some(487), true), Outcome::Cancelled);
        assert_eq!(Outcome::of(Some(404), false), Outcome::Rejected);
        assert_eq!(Outcome::of(Some(603), false), Outcome::Rejected);
        assert_eq!(Outcome::of(Some(503), false), Outcome::Failed);
        assert_eq!(Outcome::of(None, false), Outcome::Failed);
    }

    #[test]
    fn methods_and_classes_are_bounded() {
        assert_eq!(method_index(&Method::Invite), 0);
        assert_eq!(METHOD_LABELS[method_index(&Method::Message)], "MESSAGE");
        assert_eq!(class_index(100), Some(0));
        assert_eq!(class_index(699), Some(5));
        assert_eq!(class_index(99), None);
        assert_eq!(class_index(700), None);
        // Each label is its method's name.
        for (m, label) in METHODS.iter().zip(METHOD_LABELS) {
            assert_eq!(m.to_string(), label);
        }
    }

    #[test]
    fn renders_openmetrics_with_units_and_bounded_labels() {
        let mut c = core();
        c.requests[method_index(&Method::Invite)] = 3;
        c.responses_sent[1] = 2;
        c.calls_ended.count(Outcome::Busy);
        c.call_setup.observe(Duration::from_millis(300));
        c.presence[0] = 5;
        let shell = ShellMetrics {
            reloads_failed: 1,
            ..ShellMetrics::default()
        };
        c.records_written[1] = 4;
        c.media_sessions_opened = 2;
        c.voicemail.kept = 5;
        c.notifies_sent[Package::MessageSummary.index()] = 6;
        c.unsolicited_notifies.failed = 1;
        let mail = MailMetrics {
            missed: MailCounts {
                sent: 3,
                outbox: 1,
                ..MailCounts::default()
            },
            voicemail: MailCounts {
                sent: 2,
                dropped: 1,
                ..MailCounts::default()
            },
        };
        c.voicemail_mail_notices = 4;
        let text = render(Snapshot {
            core: c,
            shell,
            net: NetMetrics::default(),
            mail,
        });
        for line in [
            "switchboard_sip_requests_received_total{method=\"INVITE\"} 3",
            "switchboard_sip_requests_received_total{method=\"other\"} 0",
            "switchboard_sip_responses_sent_total{class=\"2xx\"} 2",
            "switchboard_calls_ended_total{outcome=\"busy\"} 1",
            "switchboard_call_setup_seconds_count 1",
            "switchboard_call_setup_seconds_bucket{le=\"0.5\"} 1",
            "switchboard_call_setup_seconds_bucket{le=\"0.25\"} 0",
            "switchboard_presence_people{status=\"available\"} 5",
            "switchboard_policy_reloads_total{result=\"failed\"} 1",
            "switchboard_call_records_total{outcome=\"missed\"} 4",
            "switchboard_call_records_total{outcome=\"answered\"} 0",
            "switchboard_media_sessions_opened_total 2",
            "switchboard_mails_total{result=\"sent\"} 3",
            "switchboard_mails_total{result=\"given_up\"} 0",
            "switchboard_mail_notices_dropped_total 0",
            "switchboard_mail_outbox_notices 1",
            "switchboard_sip_notifies_sent_total{package=\"message-summary\"} 6",
            "switchboard_sip_notifies_sent_total{package=\"dialog\"} 0",
            "switchboard_mwi_unsolicited_notifies_total{result=\"failed\"} 1",
            "switchboard_mwi_unsolicited_notifies_total{result=\"sent\"} 0",
            "switchboard_mail_notices_queued_total 0",
            "switchboard_voicemail_mail_notices_queued_total 4",
            "switchboard_voicemail_mails_total{result=\"sent\"} 2",
            "switchboard_voicemail_mails_total{result=\"failed\"} 0",
            "switchboard_voicemail_mail_notices_dropped_total 1",
            "switchboard_voicemail_mail_outbox_notices 0",
            "switchboard_voicemail_messages_total{result=\"kept\"} 5",
            "switchboard_voicemail_messages_total{result=\"too_short\"} 0",
            "# HELP switchboard_voicemail_messages Voicemail messages callers left in the daemon's own mailboxes, by result (kept: stored with its audio; too_short: under [voicemail] min_message_ms, not kept; full: the mailbox held its most messages, the caller was told so or the message was not kept)",
            "# TYPE switchboard_store_commit_seconds histogram",
            "# EOF",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
    }
}
