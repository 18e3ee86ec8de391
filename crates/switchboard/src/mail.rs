//! Missed-call and voicemail mail: a notice per person for each call they missed, and a
//! mail with the audio attached for each voicemail message, through the SMTP relay of
//! `[mail]`.
//!
//! The core never waits for mail. When it writes the record of a call nobody answered
//! ([`RecordOutcome::is_missed`]: missed, busy, voicemail, or the caller hung up while it
//! rang) and `[mail]` is configured, it puts a copy in the
//! [`MAIL_OUTBOX`] table in the same commit. This task reads the outbox in bounded pages,
//! decides who gets a mail from the people's `missed_call_email` settings in the policy
//! running now ([`recipients`]), sends one plain-text mail to each, and deletes the row once
//! every mail of it is delivered or given up. A daemon killed (even with SIGKILL) before a
//! notice is sent sends it after its restart; a person can get a mail twice if the daemon
//! stops between two recipients of one call, never none.
//!
//! While the relay fails (refuses, times out, answers 4xx, or its TLS certificate is not
//! trusted) nothing is sent and the task waits `retry_first_secs`, doubling each time up to
//! `retry_max_secs`; a notice older than `give_up_hours`, or a mail the relay refuses for
//! good (5xx), is given up with a log line. More than `queue` notices waiting: the newest
//! beyond it are dropped, counted, and said in a log line at most once a minute. The outbox
//! is looked at every second, also while the task waits to retry: what `/metrics` says of
//! it ([`MailStats`]) is at most a second old.
//!
//! Voicemail the same way, from its own outbox ([`VOICEMAIL_OUTBOX`], bounded by `queue`
//! too): when a message is left in a mailbox with mail addresses, the core writes a
//! [`MailNotice`] in the same commit as the message; this task sends each address one mail
//! (who called, whom, when on the owner's clock, how long, why) with the message's WAV
//! attached, read from [`VOICEMAIL_AUDIO`] when it is sent, and deletes the notice when
//! every mail of it is delivered or given up. A message deleted before its mail went is not
//! mailed: its deletion removes the notice, and a notice whose audio is gone is dropped. The
//! relay's back-off is one for both kinds.
//!
//! The connection to the relay ([`MailTls`]): plain SMTP, STARTTLS (required: a relay
//! that does not offer it gets nothing) or TLS from the first byte, through rustls (the
//! ring provider). The relay's certificate must chain to one of the system's CA
//! certificates (read once at start from Debian's ca-certificates, `/etc/ssl/certs`, by
//! rustls-native-certs) or of `ca_file`, and carry the relay's name.

use crate::config::{MailConfig, MailTls};
use crate::core::mailboxes::{MailNotice, MessageRow};
use crate::core::records::{CallRecord, RecordOutcome};
use crate::directory::Directory;
use crate::metrics::{MailCounts, MailMetrics};
use arc_swap::ArcSwap;
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_policy::{MailboxOwner, MissedCallEmail, Policy};
use switchboard_store::tables::{MAIL_OUTBOX, VOICEMAIL_AUDIO, VOICEMAIL_OUTBOX};
use switchboard_store::{Store, Table, Write};

/// How often the outbox is looked at.
const POLL: Duration = Duration::from_secs(1);
/// Longest time one SMTP exchange may take.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest caller, number or team name put in a mail (they come from the network).
const MAX_TEXT: usize = 120;
/// Least time between two log lines about dropped notices.
const DROP_LOG_EVERY: Duration = Duration::from_secs(60);

/// Most certificates taken from a `ca_file`.
const MAX_CA_CERTS: usize = 100;

/// Checks the PEM text of a `[mail] ca_file`: at least one certificate, at most
/// [`MAX_CA_CERTS`], each usable as a trust anchor. Answers how many it holds.
pub fn check_ca(pem: &[u8]) -> Result<usize, String> {
    let mut n = 0;
    for cert in CertificateDer::pem_slice_iter(pem) {
        let der = cert.map_err(|e| format!("not a PEM certificate file ({e})"))?;
        n += 1;
        if n > MAX_CA_CERTS {
            return Err(format!("more than {MAX_CA_CERTS} certificates"));
        }
        TlsParameters::builder("relay.invalid".into())
            .certificate_store(CertificateStore::None)
            .add_root_certificate(Certificate::from_der(der.to_vec()).map_err(|e| e.to_string())?)
            .build()
            .map_err(|e| format!("certificate {n} is not usable as a CA: {e}"))?;
    }
    if n == 0 {
        return Err("no certificate in it (a PEM file with -----BEGIN CERTIFICATE-----)".into());
    }
    Ok(n)
}

/// What the mail task counts, shared with the daemon's loop, which reads it for
/// `/metrics` (the task is the only writer; nothing on a SIP message's path touches it).
#[derive(Debug, Default)]
pub struct MailStats {
    missed: Counters,
    voicemail: Counters,
}

/// The counts of one kind of notice.
#[derive(Debug, Default)]
struct Counters {
    sent: AtomicU64,
    failed: AtomicU64,
    given_up: AtomicU64,
    dropped: AtomicU64,
    outbox: AtomicU64,
}

impl Counters {
    fn read(&self) -> MailCounts {
        MailCounts {
            sent: self.sent.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            given_up: self.given_up.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            outbox: self.outbox.load(Ordering::Relaxed),
        }
    }
}

impl MailStats {
    fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The counts as they stand.
    pub fn read(&self) -> MailMetrics {
        MailMetrics {
            missed: self.missed.read(),
            voicemail: self.voicemail.read(),
        }
    }
}

/// One mail to send for a missed call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recipient {
    pub user: String,
    pub email: String,
    /// The call was dialled to them (else it was a team call that rang them).
    pub direct: bool,
}

/// Who is mailed about `record`: the person dialled, when their setting is `all` or
/// `direct`; for a team call, each person it rang whose setting is `all` or `teams`. Only
/// unanswered calls ([`RecordOutcome::is_missed`]) are mailed; the caller never is.
pub fn recipients(record: &CallRecord, policy: &Policy) -> Vec<Recipient> {
    if !record.outcome.is_missed() || record.answered.is_some() {
        return Vec::new();
    }
    let mut out: Vec<Recipient> = Vec::new();
    let mut add = |user: &str, direct: bool| {
        if record.caller_user.as_deref() == Some(user) || out.iter().any(|r| r.user == user) {
            return;
        }
        let Some(u) = policy.user(user) else { return };
        let wants = match u.missed_call_email {
            MissedCallEmail::Disabled => false,
            MissedCallEmail::All => true,
            MissedCallEmail::Direct => direct,
            MissedCallEmail::Teams => !direct,
        };
        if let (true, Some(email)) = (wants, &u.email) {
            out.push(Recipient {
                user: user.to_string(),
                email: email.clone(),
                direct,
            });
        }
    };
    if let Some(u) = &record.dialled_user {
        add(u, true);
    } else if record.team.is_some() {
        for u in &record.rang_users {
            add(u, false);
        }
    }
    out
}

/// `s` made safe for a mail: control characters (CR and LF among them) become spaces, runs
/// of spaces one, at most [`MAX_TEXT`] characters.
pub fn clean(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars().take(MAX_TEXT) {
        let c = if c.is_control() { ' ' } else { c };
        if !(c == ' ' && (out.is_empty() || out.ends_with(' '))) {
            out.push(c);
        }
    }
    out.trim_end().to_string()
}

/// What the outcome means, for the mail's reader.
fn outcome_words(o: RecordOutcome) -> &'static str {
    match o {
        RecordOutcome::Missed => "nobody answered",
        RecordOutcome::Busy => "you were busy",
        RecordOutcome::Voicemail => "it went to voicemail",
        RecordOutcome::Cancelled => "the caller hung up while it rang",
        RecordOutcome::Answered => "answered",
        RecordOutcome::Rejected => "rejected",
    }
}

/// The subject and plain-text body of `to`'s mail about `record`: who called, when (on the
/// callee's clock: their schedule's time zone, else UTC), what was dialled, and the outcome.
pub fn compose(record: &CallRecord, to: &Recipient, policy: &Policy) -> (String, String) {
    let caller = match record.caller_user.as_deref().and_then(|u| policy.user(u)) {
        Some(u) => format!("{} ({})", clean(&u.display_name), clean(&u.extension)),
        None => clean(&record.caller),
    };
    let tz: chrono_tz::Tz = policy
        .user(&to.user)
        .and_then(|u| u.schedule.as_deref())
        .and_then(|s| policy.schedule(s))
        .and_then(|s| s.timezone.parse().ok())
        .unwrap_or(chrono_tz::UTC);
    let when = chrono::DateTime::from_timestamp(record.started as i64, 0)
        .map(|t| {
            t.with_timezone(&tz)
                .format("%Y-%m-%d %H:%M:%S %Z")
                .to_string()
        })
        .unwrap_or_default();
    let dialled = match (&record.team, to.direct) {
        (Some(t), false) => {
            let name = policy.team(t).map(|t| t.name.as_str()).unwrap_or(t);
            format!("{} (team {})", clean(&record.dialled), clean(name))
        }
        _ => clean(&record.dialled),
    };
    let subject = format!("Missed call from {caller}");
    let body = format!(
        "You missed a call.\n\nFrom:    {caller}\nDialled: {dialled}\nWhen:    {when}\nOutcome: {} ({})\n",
        record.outcome.as_str(),
        outcome_words(record.outcome),
    );
    (subject, body)
}

/// How long a message is, as a mail says it: `0:42`, `12:05`.
pub fn minutes(ms: u64) -> String {
    let secs = ms.div_ceil(1000);
    format!("{}:{:02}", secs / 60, secs % 60)
}

/// Why the call came to the mailbox, for the mail's reader.
fn reason_words(m: &MessageRow) -> String {
    match m.reason.as_str() {
        "no_answer" => "nobody answered".into(),
        "busy" => "busy".into(),
        "out_of_hours" => "out of hours".into(),
        "unavailable" => "not available".into(),
        "profile" => match &m.profile {
            Some(p) => format!("profile {}", clean(p)),
            None => "a profile".into(),
        },
        "direct" => "the mailbox was called".into(),
        other => clean(other),
    }
}

/// Whose a mailbox (`user:ID`, `team:ID`) is, as a mail names them: the person's name, or
/// the team's.
fn owner_name(key: &str, policy: &Policy) -> String {
    match MailboxOwner::from_key(key) {
        Some(MailboxOwner::User(u)) => match policy.user(&u) {
            Some(user) => clean(&user.display_name),
            None => clean(&u),
        },
        Some(MailboxOwner::Team(t)) => match policy.team(&t) {
            Some(team) => format!("team {}", clean(&team.name)),
            None => format!("team {}", clean(&t)),
        },
        None => clean(key),
    }
}

/// The time zone of a mailbox's owner: their (or the team's) schedule's, else UTC.
fn owner_zone(key: &str, policy: &Policy) -> chrono_tz::Tz {
    let schedule = match MailboxOwner::from_key(key) {
        Some(MailboxOwner::User(u)) => policy.user(&u).and_then(|u| u.schedule.clone()),
        Some(MailboxOwner::Team(t)) => policy.team(&t).and_then(|t| t.schedule.clone()),
        None => None,
    };
    schedule
        .as_deref()
        .and_then(|s| policy.schedule(s))
        .and_then(|s| s.timezone.parse().ok())
        .unwrap_or(chrono_tz::UTC)
}

/// The subject, plain-text body and attachment's file name of the mail about `notice`'s
/// message: who called, whom it was for, when (on the owner's clock: their or the team's
/// schedule's time zone, else UTC), how long, and why it went to the mailbox.
pub fn compose_voicemail(notice: &MailNotice, policy: &Policy) -> (String, String, String) {
    let m = &notice.message;
    let number = clean(&m.caller);
    let name = m
        .caller_name
        .as_deref()
        .map(clean)
        .filter(|n| !n.is_empty())
        .or_else(|| policy.user(&m.caller).map(|u| clean(&u.display_name)));
    let caller = match (name, number.is_empty()) {
        (Some(n), false) if n != number => format!("{n} ({number})"),
        (Some(n), _) => n,
        (None, false) => number,
        (None, true) => "an unknown caller".into(),
    };
    let tz = owner_zone(&m.mailbox, policy);
    let at = chrono::DateTime::from_timestamp(m.received as i64, 0)
        .map(|t| t.with_timezone(&tz))
        .unwrap_or_else(|| chrono::DateTime::UNIX_EPOCH.with_timezone(&tz));
    let when = at.format("%Y-%m-%d %H:%M:%S %Z").to_string();
    let file = format!("voicemail-{}.wav", at.format("%Y%m%d-%H%M%S"));
    let length = minutes(m.duration_ms);
    let whom = owner_name(&m.mailbox, policy);
    let mut body = format!(
        "A new voicemail message for {whom}.\n\nFrom:    {caller}\nDialled: {}\n",
        clean(&m.called)
    );
    if let Some(first) = m.original.as_deref().filter(|o| *o != m.mailbox) {
        body.push_str(&format!(
            "For:     {} at first\n",
            owner_name(first, policy)
        ));
    }
    body.push_str(&format!(
        "When:    {when}\nLength:  {length}\nWhy:     {}\n\nThe message is attached ({file}).\n",
        reason_words(m)
    ));
    let subject = format!("Voicemail from {caller} ({length})");
    (subject, body, file)
}

/// Why a mail was not sent.
enum Failure {
    /// Worth trying again later (the relay is down, timed out, or said 4xx).
    Transient(String),
    /// Never going to work (a 5xx, an address lettre refuses).
    Permanent(String),
}

/// The relay and the From address, as built from `[mail]`.
struct Sender {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Sender {
    fn new(config: &MailConfig) -> Result<Self, String> {
        let from: Mailbox = config
            .from
            .parse()
            .map_err(|e| format!("[mail] from {:?} is not usable: {e}", config.from))?;
        let mut builder =
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(config.relay.clone())
                .port(config.port)
                .timeout(Some(SMTP_TIMEOUT));
        if config.tls != MailTls::None {
            // The system's CA certificates (CertificateStore::Default with
            // rustls-native-certs), and those of ca_file.
            let mut params = TlsParameters::builder(config.relay.clone());
            if let Some(ca) = &config.ca {
                let cert = Certificate::from_pem(&ca.pem)
                    .map_err(|e| format!("[mail] ca_file {}: {e}", ca.path.display()))?;
                params = params.add_root_certificate(cert);
            }
            let params = params
                .build()
                .map_err(|e| format!("[mail] TLS settings not usable: {e}"))?;
            builder = builder.tls(match config.tls {
                MailTls::StartTls => Tls::Required(params),
                _ => Tls::Wrapper(params),
            });
        }
        if let Some((user, password)) = &config.credentials {
            builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
        }
        Ok(Sender {
            transport: builder.build(),
            from,
        })
    }

    /// Sends a plain-text mail to `to`, with `attachment` (a file name and a WAV file) if
    /// given.
    async fn send(
        &self,
        to: &str,
        subject: String,
        body: String,
        attachment: Option<(String, Vec<u8>)>,
    ) -> Result<(), Failure> {
        let to_box: Mailbox = to
            .parse()
            .map_err(|e| Failure::Permanent(format!("bad address: {e}")))?;
        let builder = Message::builder()
            .from(self.from.clone())
            .to(to_box)
            .subject(subject);
        let message = match attachment {
            None => builder.header(ContentType::TEXT_PLAIN).body(body),
            Some((file, wav)) => {
                let wav_type = ContentType::parse("audio/wav").expect("a content type");
                builder.multipart(
                    MultiPart::mixed()
                        .singlepart(SinglePart::plain(body))
                        .singlepart(Attachment::new(file).body(wav, wav_type)),
                )
            }
        }
        .map_err(|e| Failure::Permanent(e.to_string()))?;
        match self.transport.send(message).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_permanent() => Err(Failure::Permanent(e.to_string())),
            Err(e) => Err(Failure::Transient(explain(&e.to_string()))),
        }
    }
}

/// A failure's text, with what to do about the one an operator meets when setting TLS up:
/// a certificate rustls does not trust.
fn explain(error: &str) -> String {
    if error.contains("invalid peer certificate") {
        format!(
            "{error} (the relay's TLS certificate is not trusted: its CA is neither among the \
             system's nor in [mail] ca_file, or it does not name the relay)"
        )
    } else {
        error.to_string()
    }
}

/// Starts the mail task (see the module's documentation); it counts into `stats`.
pub fn spawn(
    store: Arc<dyn Store>,
    directory: Arc<ArcSwap<Box<dyn Directory>>>,
    config: MailConfig,
    stats: Arc<MailStats>,
) {
    let sender = match Sender::new(&config) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "no missed-call or voicemail mail is sent");
            return;
        }
    };
    tracing::info!(
        relay = %config.relay,
        port = config.port,
        tls = %config.tls.as_str(),
        ca_file = %config.ca.as_ref().map(|c| c.path.display().to_string()).unwrap_or_default(),
        auth = config.credentials.is_some(),
        "missed-call mail on"
    );
    if config.tls == MailTls::None && !is_loopback(&config.relay) {
        tracing::warn!(relay = %config.relay, "missed-call mail goes to the relay unencrypted ([mail] tls = \"none\")");
    }
    tokio::spawn(run(store, directory, config, sender, stats));
}

/// Whether `relay` names this machine (where plain SMTP does not leave it).
fn is_loopback(relay: &str) -> bool {
    relay.eq_ignore_ascii_case("localhost")
        || relay
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// What the task keeps of one outbox between its rounds.
struct Outbox {
    table: Table,
    /// `missed-call` or `voicemail`, for the log.
    what: &'static str,
    /// Mails of a row already delivered, by the row's key (a row is deleted once all of
    /// its are).
    delivered: HashMap<String, HashSet<String>>,
    dropped: u64,
    dropped_logged: u64,
    last_drop_log: Option<Instant>,
}

impl Outbox {
    fn new(table: Table, what: &'static str) -> Self {
        Outbox {
            table,
            what,
            delivered: HashMap::new(),
            dropped: 0,
            dropped_logged: 0,
            last_drop_log: None,
        }
    }

    /// Reads a page of the outbox: at most `queue` notices, oldest first; those beyond
    /// (looked for up to as many again) are dropped, their deletes added to `deletes`.
    /// None when the outbox could not be read.
    async fn page(
        &mut self,
        store: &Arc<dyn Store>,
        queue: usize,
        counters: &Counters,
        deletes: &mut Vec<Write>,
    ) -> Option<Vec<(String, Vec<u8>)>> {
        let limit = queue + queue.min(10_000);
        let page = {
            let store = store.clone();
            let table = self.table;
            tokio::task::spawn_blocking(move || store.scan_range_limited(table, "", "~", limit))
                .await
        };
        let mut rows = match page {
            Ok(Ok(rows)) => rows,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, outbox = self.what, "the mail outbox could not be read");
                return None;
            }
            Err(_) => return None,
        };
        if rows.len() > queue {
            for (key, _) in rows.drain(queue..) {
                self.delivered.remove(&key);
                deletes.push(Write::delete(self.table, key));
                self.dropped += 1;
                MailStats::add(&counters.dropped);
            }
        }
        counters.outbox.store(rows.len() as u64, Ordering::Relaxed);
        if self.dropped > self.dropped_logged
            && self
                .last_drop_log
                .is_none_or(|t| t.elapsed() >= DROP_LOG_EVERY)
        {
            tracing::warn!(
                dropped_total = self.dropped,
                queue,
                "{} mail queue full: notices dropped",
                self.what
            );
            self.dropped_logged = self.dropped;
            self.last_drop_log = Some(Instant::now());
        }
        Some(rows)
    }
}

/// How one notice's mails went this round.
enum Sent {
    /// Every mail of it is delivered or given up: its row goes.
    Done,
    /// The relay failed: the round stops, the notice waits.
    RelayFailed,
}

async fn run(
    store: Arc<dyn Store>,
    directory: Arc<ArcSwap<Box<dyn Directory>>>,
    config: MailConfig,
    sender: Sender,
    stats: Arc<MailStats>,
) {
    // Consecutive failures of the relay, and when to try it again.
    let mut failures: u32 = 0;
    let mut wait_until: Option<Instant> = None;
    let mut missed = Outbox::new(MAIL_OUTBOX, "missed-call");
    let mut voicemail = Outbox::new(VOICEMAIL_OUTBOX, "voicemail");
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let mut deletes: Vec<Write> = Vec::new();
        let missed_rows = missed
            .page(&store, config.queue, &stats.missed, &mut deletes)
            .await;
        let voicemail_rows = voicemail
            .page(&store, config.queue, &stats.voicemail, &mut deletes)
            .await;
        // Waiting to try the relay again: only the queues' bounds are kept meanwhile.
        if wait_until.is_some_and(|t| Instant::now() < t) {
            commit_deletes(&store, deletes).await;
            continue;
        }
        let now = chrono::Utc::now().timestamp().max(0) as u64;
        let directory = directory.load_full();
        let policy = directory.policy();
        let mut relay_failed = false;
        if let Some(rows) = missed_rows {
            let mut finished = 0usize;
            for (key, row) in &rows {
                let sent = send_missed(
                    key,
                    row,
                    &mut missed,
                    &sender,
                    policy,
                    &config,
                    &stats.missed,
                    now,
                )
                .await;
                match sent {
                    Sent::Done => {
                        missed.delivered.remove(key);
                        deletes.push(Write::delete(MAIL_OUTBOX, key.clone()));
                        finished += 1;
                    }
                    Sent::RelayFailed => {
                        relay_failed = true;
                        break;
                    }
                }
            }
            let left = rows.len().saturating_sub(finished) as u64;
            stats.missed.outbox.store(left, Ordering::Relaxed);
        }
        if let (Some(rows), false) = (voicemail_rows, relay_failed) {
            let mut finished = 0usize;
            for (key, row) in &rows {
                let sent = send_voicemail(
                    key,
                    row,
                    &mut voicemail,
                    &store,
                    &sender,
                    policy,
                    &config,
                    &stats.voicemail,
                    now,
                )
                .await;
                match sent {
                    Some(Sent::Done) => {
                        voicemail.delivered.remove(key);
                        deletes.push(Write::delete(VOICEMAIL_OUTBOX, key.clone()));
                        finished += 1;
                    }
                    Some(Sent::RelayFailed) => {
                        relay_failed = true;
                        break;
                    }
                    // The audio could not be read: the notice waits for the next round.
                    None => {}
                }
            }
            let left = rows.len().saturating_sub(finished) as u64;
            stats.voicemail.outbox.store(left, Ordering::Relaxed);
        }
        if relay_failed {
            let wait = backoff(&config, failures);
            failures = failures.saturating_add(1);
            wait_until = Some(Instant::now() + wait);
        } else {
            failures = 0;
            wait_until = None;
        }
        commit_deletes(&store, deletes).await;
    }
}

/// Sends the mails of one missed-call notice (`key`, `row` of [`MAIL_OUTBOX`]) that are
/// not delivered yet.
#[allow(clippy::too_many_arguments)]
async fn send_missed(
    key: &str,
    row: &[u8],
    outbox: &mut Outbox,
    sender: &Sender,
    policy: &Policy,
    config: &MailConfig,
    counters: &Counters,
    now: u64,
) -> Sent {
    let Ok(record) = serde_json::from_slice::<CallRecord>(row) else {
        tracing::warn!(key = %key.replace('\n', " "), "unreadable mail notice deleted");
        MailStats::add(&counters.dropped);
        return Sent::Done;
    };
    let done = outbox.delivered.entry(key.to_string()).or_default();
    for to in recipients(&record, policy) {
        if done.contains(&to.user) {
            continue;
        }
        let (subject, body) = compose(&record, &to, policy);
        match sender.send(&to.email, subject, body, None).await {
            Ok(()) => {
                tracing::info!(call_id = %record.call_id, user = %to.user, "missed-call mail sent");
                MailStats::add(&counters.sent);
                done.insert(to.user.clone());
            }
            Err(Failure::Permanent(e)) => {
                tracing::warn!(call_id = %record.call_id, user = %to.user, error = %e, "missed-call mail refused by the relay: given up");
                MailStats::add(&counters.given_up);
                done.insert(to.user.clone());
            }
            Err(Failure::Transient(e)) => {
                let age = now.saturating_sub(record.ended.unwrap_or(record.started));
                MailStats::add(&counters.failed);
                if age >= config.give_up.as_secs() {
                    tracing::warn!(call_id = %record.call_id, user = %to.user, error = %e, "missed-call mail not delivered in time: given up");
                    MailStats::add(&counters.given_up);
                    done.insert(to.user.clone());
                } else {
                    tracing::warn!(call_id = %record.call_id, user = %to.user, error = %e, "missed-call mail not sent: will retry");
                    return Sent::RelayFailed;
                }
            }
        }
    }
    Sent::Done
}

/// Sends the mails of one voicemail notice (`key`, `row` of [`VOICEMAIL_OUTBOX`]) that are
/// not delivered yet, each with the message's audio; None when the audio could not be
/// read (the notice waits).
#[allow(clippy::too_many_arguments)]
async fn send_voicemail(
    key: &str,
    row: &[u8],
    outbox: &mut Outbox,
    store: &Arc<dyn Store>,
    sender: &Sender,
    policy: &Policy,
    config: &MailConfig,
    counters: &Counters,
    now: u64,
) -> Option<Sent> {
    let Ok(notice) = serde_json::from_slice::<MailNotice>(row) else {
        tracing::warn!(key = %key.replace('\n', " "), "unreadable voicemail mail notice deleted");
        MailStats::add(&counters.dropped);
        return Some(Sent::Done);
    };
    let m = &notice.message;
    let audio = {
        let store = store.clone();
        let key = key.to_string();
        tokio::task::spawn_blocking(move || {
            crate::voicemail::read_row(store.as_ref(), VOICEMAIL_AUDIO, &key)
        })
        .await
    };
    let wav = match audio {
        Ok(Ok(Some(wav))) => wav,
        Ok(Ok(None)) => {
            tracing::info!(mailbox = %m.mailbox, id = %m.id, "voicemail mail dropped: the message was deleted before it was sent");
            MailStats::add(&counters.dropped);
            return Some(Sent::Done);
        }
        Ok(Err(e)) => {
            tracing::warn!(mailbox = %m.mailbox, id = %m.id, error = %e, "voicemail mail waits: the message's audio could not be read");
            return None;
        }
        Err(_) => return None,
    };
    let (subject, body, file) = compose_voicemail(&notice, policy);
    let done = outbox.delivered.entry(key.to_string()).or_default();
    for to in &notice.to {
        if done.contains(to) {
            continue;
        }
        let attachment = Some((file.clone(), wav.clone()));
        match sender
            .send(to, subject.clone(), body.clone(), attachment)
            .await
        {
            Ok(()) => {
                tracing::info!(mailbox = %m.mailbox, id = %m.id, %to, "voicemail mail sent");
                MailStats::add(&counters.sent);
                done.insert(to.clone());
            }
            Err(Failure::Permanent(e)) => {
                tracing::warn!(mailbox = %m.mailbox, id = %m.id, %to, error = %e, "voicemail mail refused by the relay: given up");
                MailStats::add(&counters.given_up);
                done.insert(to.clone());
            }
            Err(Failure::Transient(e)) => {
                MailStats::add(&counters.failed);
                if now.saturating_sub(m.received) >= config.give_up.as_secs() {
                    tracing::warn!(mailbox = %m.mailbox, id = %m.id, %to, error = %e, "voicemail mail not delivered in time: given up");
                    MailStats::add(&counters.given_up);
                    done.insert(to.clone());
                } else {
                    tracing::warn!(mailbox = %m.mailbox, id = %m.id, %to, error = %e, "voicemail mail not sent: will retry");
                    return Some(Sent::RelayFailed);
                }
            }
        }
    }
    Some(Sent::Done)
}

/// Removes notices that are done (sent, given up or dropped) from the outbox.
async fn commit_deletes(store: &Arc<dyn Store>, deletes: Vec<Write>) {
    if deletes.is_empty() {
        return;
    }
    let store = store.clone();
    let done = tokio::task::spawn_blocking(move || store.commit(&deletes)).await;
    if !matches!(done, Ok(Ok(()))) {
        tracing::warn!("sent mail notices could not be removed from the outbox");
    }
}

/// The wait after `failures` earlier consecutive failures: `retry_first`, doubled each
/// time, at most `retry_max`.
fn backoff(config: &MailConfig, failures: u32) -> Duration {
    config
        .retry_first
        .saturating_mul(1u32 << failures.min(20))
        .min(config.retry_max)
}

#[cfg(test)]
#[path = "mail_tests.rs"]
mod tests;
