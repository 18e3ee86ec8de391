//! Call records and calls in progress.
//!
//! Every call gets one record ([`CallRecord`]) in the store's
//! [`CALL_RECORDS`](switchboard_store::tables::CALL_RECORDS) table: who called, what they
//! dialled, the team, when it began, was answered and ended, the plan's steps as they
//! happened, who rang, who answered, the outcome ([`RecordOutcome`]) and why.
//!
//! When it is written:
//!
//! - an unanswered call, when the caller gets its final response (or cancels): the record
//!   is whole at once (branches still being cancelled do not hold it back);
//! - an answered call, twice under the same key: once at its first 2xx (the record has no
//!   end yet, so a daemon killed in the middle of the call still leaves a record of it), and
//!   again, complete, when the call ends — its BYE passed through, an end was found gone,
//!   or `max_call_secs` ran out ([`super::dialogs`]).
//!
//! Records are written without holding anything back (no SIP answer waits for them); the
//! store's group commit makes each durable within one commit. The per-call log line
//! ("call ended") is written with the complete record. The sub-machine [`Records`] keeps
//! answered calls until they end; [`Calls`](super::calls::Calls) hands it each call whose
//! outcome is settled.

use super::context::Ctx;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use switchboard_policy::{Action, DestinationKind, ExtensionOwner, Policy, RoutePlan, Target};
use switchboard_store::tables::{call_record_key, CALL_RECORDS, MAIL_OUTBOX};
use switchboard_store::Write;

/// How a call ended, from what the caller got.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordOutcome {
    /// A person (or a number outside) answered.
    Answered,
    /// Rang, nobody answered, and the call went nowhere else that answered.
    Missed,
    /// The callee was busy (486, 600, 603).
    Busy,
    /// A voicemail box took the call: one of the daemon's own mailboxes (the record's
    /// `mailbox` says whose), or a voicemail destination of the media server.
    Voicemail,
    /// The plan refused the call (a reject step), or nobody could be rung at all.
    Rejected,
    /// The caller hung up before an answer.
    Cancelled,
}

impl RecordOutcome {
    /// Every outcome, in the order of the documentation.
    pub const ALL: [RecordOutcome; 6] = [
        RecordOutcome::Answered,
        RecordOutcome::Missed,
        RecordOutcome::Busy,
        RecordOutcome::Voicemail,
        RecordOutcome::Rejected,
        RecordOutcome::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RecordOutcome::Answered => "answered",
            RecordOutcome::Missed => "missed",
            RecordOutcome::Busy => "busy",
            RecordOutcome::Voicemail => "voicemail",
            RecordOutcome::Rejected => "rejected",
            RecordOutcome::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.as_str() == s)
    }

    /// Whether a person the call was for did not take it (missed, busy, voicemail, or the
    /// caller gave up while it rang).
    pub fn is_missed(self) -> bool {
        matches!(
            self,
            RecordOutcome::Missed
                | RecordOutcome::Busy
                | RecordOutcome::Voicemail
                | RecordOutcome::Cancelled
        )
    }
}

/// One call, as stored in `CALL_RECORDS` and answered by `GET /v1/records`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallRecord {
    pub call_id: String,
    /// Who called: a person's id, `NUMBER via trunk ID`, or the caller's address.
    pub caller: String,
    /// The person who called, when it was one of ours.
    pub caller_user: Option<String>,
    /// The trunk the call came in through.
    pub trunk: Option<String>,
    /// What was dialled (the Request-URI's user part).
    pub dialled: String,
    /// The person the dialled extension, id or DID belongs to.
    pub dialled_user: Option<String>,
    /// The team the call was for (dialled, or rung as a team step).
    pub team: Option<String>,
    /// Unix seconds: the INVITE came in.
    pub started: u64,
    /// Unix seconds: the first 2xx.
    pub answered: Option<u64>,
    /// Unix seconds: the caller's final failure response, or the end of the answered call
    /// (None: answered and not ended yet, or the daemon stopped before its end was seen).
    pub ended: Option<u64>,
    /// The plan's steps as they happened, in plain words.
    pub steps: Vec<String>,
    /// Who rang: each branch that rang (or answered), as `person at contact`, `NUMBER via
    /// trunk ID` or a destination.
    pub rang: Vec<String>,
    /// The people among them.
    pub rang_users: Vec<String>,
    /// The branch that answered (as in `rang`).
    pub answered_by: Option<String>,
    /// The person who answered.
    pub answered_user: Option<String>,
    pub outcome: RecordOutcome,
    /// The final response the caller got (a 2xx for an answered call).
    pub code: Option<u16>,
    /// Why it went where it went: the reason of the step that settled it.
    pub why: String,
    /// How an answered call ended (`bye`, `lost`, `max_call_secs`…), once it has.
    pub end_reason: Option<String>,
    /// The daemon's own mailbox that took the call (`user:ID`, `team:ID`), when one did.
    #[serde(default)]
    pub mailbox: Option<String>,
}

/// Longest text kept in a record's field (Call-IDs and addresses come from the network).
pub const MAX_FIELD: usize = 256;
/// Most entries kept in each of a record's lists.
pub const MAX_LIST: usize = 64;

/// `s`, at most [`MAX_FIELD`] characters of it.
pub(crate) fn cut(s: &str) -> String {
    s.chars().take(MAX_FIELD).collect()
}

/// What the record of a call is started from when the call comes in (kept on the call).
#[derive(Clone, Debug, Default)]
pub(crate) struct Opening {
    pub started: u64,
    pub answered: Option<u64>,
    pub trunk: Option<String>,
    pub dialled_user: Option<String>,
    pub team: Option<String>,
    /// Its record has been handed on.
    pub recorded: bool,
}

impl Opening {
    /// A call from `trunk` (if any) to `dialled`, at `now`: the dialled person or team is
    /// looked up as the planner does (extension, user id, SIP user name, team id, DID).
    pub(crate) fn new(policy: &Policy, trunk: Option<&str>, dialled: &str, now: u64) -> Self {
        let dialled = dialled.trim();
        let target = match policy.extension(dialled) {
            Some(ExtensionOwner::User(u)) => Some(Target::User(u.clone())),
            Some(ExtensionOwner::Team(t)) => Some(Target::Team(t.clone())),
            None if policy.user(dialled).is_some() => Some(Target::User(dialled.to_string())),
            None => match policy.sip_user(dialled) {
                Some(u) => Some(Target::User(u.to_string())),
                None if policy.team(dialled).is_some() => Some(Target::Team(dialled.into())),
                None => policy.did(dialled).map(|(_, d)| d.target.clone()),
            },
        };
        let (dialled_user, team) = match target {
            Some(Target::User(u)) => (Some(u), None),
            Some(Target::Team(t)) => (None, Some(t)),
            _ => (None, None),
        };
        Opening {
            started: now,
            answered: None,
            trunk: trunk.map(str::to_string),
            dialled_user,
            team,
            recorded: false,
        }
    }
}

/// One branch of a settled call, as the record tells it.
pub(crate) struct BranchSeen<'a> {
    /// `person at contact`, `NUMBER via trunk ID`, a destination.
    pub what: &'a str,
    pub user: Option<&'a str>,
    /// It rang (a provisional response) or answered.
    pub rang: bool,
}

/// A call whose set-up is over, as [`Calls`](super::calls::Calls) hands it over.
pub(crate) struct Settled<'a> {
    pub call_id: &'a str,
    pub caller: &'a str,
    pub caller_user: Option<&'a str>,
    pub dialled: &'a str,
    pub opening: &'a Opening,
    pub plan: &'a RoutePlan,
    pub history: &'a [String],
    pub branches: Vec<BranchSeen<'a>>,
    /// The answering branch, and the plan step it belongs to.
    pub answered: Option<(usize, Option<usize>)>,
    /// The last step the plan entered.
    pub last_step: Option<usize>,
    pub final_code: Option<u16>,
    pub cancelled: bool,
    pub now: u64,
}

fn is_busy(code: u16) -> bool {
    matches!(code, 486 | 600 | 603)
}

impl Settled<'_> {
    /// The record of this call (`ended` is the time for an unanswered call, None for an
    /// answered one until its end).
    pub(crate) fn record(&self) -> CallRecord {
        let step = |i: Option<usize>| i.and_then(|i| self.plan.steps.get(i));
        let mut rang = Vec::new();
        let mut rang_users: Vec<String> = Vec::new();
        for b in self.branches.iter().filter(|b| b.rang) {
            let what = cut(b.what);
            if rang.len() < MAX_LIST && !rang.contains(&what) {
                rang.push(what);
            }
            if let Some(u) = b.user {
                if rang_users.len() < MAX_LIST && !rang_users.iter().any(|r| r == u) {
                    rang_users.push(u.to_string());
                }
            }
        }
        let answering = self.answered.and_then(|(b, _)| self.branches.get(b));
        let answered_step = step(self.answered.and_then(|(_, s)| s));
        let mailbox = match answered_step.map(|s| &s.action) {
            Some(Action::Voicemail { mailbox, .. }) => Some(mailbox.key()),
            _ => None,
        };
        let voicemail = mailbox.is_some()
            || matches!(
                answered_step.map(|s| &s.action),
                Some(Action::Destination {
                    kind: DestinationKind::Voicemail,
                    ..
                })
            );
        let outcome = match (answering, self.final_code) {
            (Some(_), _) if voicemail => RecordOutcome::Voicemail,
            (Some(_), _) => RecordOutcome::Answered,
            _ if self.cancelled => RecordOutcome::Cancelled,
            (None, Some(c)) if is_busy(c) => RecordOutcome::Busy,
            _ if matches!(
                step(self.last_step).map(|s| &s.action),
                Some(Action::Reject { .. })
            ) =>
            {
                RecordOutcome::Rejected
            }
            _ if rang.is_empty()
                && self.opening.dialled_user.is_none()
                && self.opening.team.is_none() =>
            {
                RecordOutcome::Rejected
            }
            _ => RecordOutcome::Missed,
        };
        let settling = answered_step.or_else(|| step(self.last_step));
        let why = match (settling, self.history.last()) {
            (Some(s), Some(h)) if !s.why.is_empty() => format!("{}; {h}", s.why),
            (Some(s), None) => s.why.clone(),
            (_, Some(h)) => h.clone(),
            (None, None) => self.plan.notes.last().cloned().unwrap_or_default(),
        };
        // A team rung as a step (a user's forwarding to a team) when none was dialled.
        let team = self.opening.team.clone().or_else(|| {
            self.plan.steps.iter().find_map(|s| match &s.action {
                Action::Ring {
                    memory_group: Some(g),
                    ..
                } if !g.starts_with("forward:") => Some(g.clone()),
                _ => None,
            })
        });
        CallRecord {
            call_id: cut(self.call_id),
            caller: cut(self.caller),
            caller_user: self.caller_user.map(str::to_string),
            trunk: self.opening.trunk.clone(),
            dialled: cut(self.dialled),
            dialled_user: self.opening.dialled_user.clone(),
            team,
            started: self.opening.started,
            answered: self.opening.answered,
            ended: answering.is_none().then_some(self.now),
            steps: self
                .history
                .iter()
                .take(MAX_LIST)
                .map(String::as_str)
                .map(cut)
                .collect(),
            rang,
            rang_users,
            answered_by: answering.map(|b| cut(b.what)),
            answered_user: answering.and_then(|b| b.user.map(str::to_string)),
            outcome,
            code: self.final_code,
            why: cut(&why),
            end_reason: None,
            mailbox,
        }
    }
}

/// Most answered calls waiting for their end (beyond it, a call's record is written whole
/// at its answer, with `end_reason` "untracked").
pub const MAX_OPEN: usize = 100_000;

/// Answered calls until they end (see the module's documentation).
#[derive(Default)]
pub(crate) struct Records {
    /// Answered calls, by Call-ID, until they end. An answered call's record comes in the
    /// event of its 2xx, which is also when [`super::dialogs`] starts tracking it: its end
    /// always comes later.
    open: HashMap<String, CallRecord>,
    /// Records written (complete ones: one per call), by outcome
    /// ([`RecordOutcome::ALL`] order).
    pub written: [u64; RecordOutcome::ALL.len()],
    /// Missed calls put in the mail outbox.
    pub mail_notices: u64,
}

impl Records {
    /// A call whose outcome is settled: an unanswered one is written; an answered one is
    /// written without its end, and kept until it ends.
    pub(crate) fn settled(&mut self, cx: &mut Ctx<'_>, mut record: CallRecord) {
        if record.answered_user.is_none() && record.answered_by.is_none() {
            return self.write(cx, record);
        }
        if self.open.len() >= MAX_OPEN {
            record.ended = Some(cx.now.unix);
            record.end_reason = Some("untracked".into());
            return self.write(cx, record);
        }
        let _ = store(cx, &record);
        self.open.insert(record.call_id.clone(), record);
    }

    /// The answered call `call_id` ended (`why`: `bye`, `lost`, `session expired`,
    /// `max_call_secs`): its record is written complete. A call not kept (over
    /// [`MAX_OPEN`]) has had its record already.
    pub(crate) fn ended(&mut self, cx: &mut Ctx<'_>, call_id: &str, why: &str) {
        if let Some(mut record) = self.open.remove(call_id) {
            record.ended = Some(cx.now.unix);
            record.end_reason = Some(why.to_string());
            self.write(cx, record);
        }
    }

    /// Answered calls not ended yet.
    pub(crate) fn open(&self) -> impl Iterator<Item = &CallRecord> {
        self.open.values()
    }

    fn write(&mut self, cx: &mut Ctx<'_>, record: CallRecord) {
        if let Some(i) = RecordOutcome::ALL.iter().position(|o| *o == record.outcome) {
            self.written[i] += 1;
        }
        log(&record);
        if store(cx, &record) {
            self.mail_notices += 1;
        }
    }
}

/// Writes `record` (answers whether it also became a mail notice).
fn store(cx: &mut Ctx<'_>, record: &CallRecord) -> bool {
    let key = call_record_key(record.started, &record.call_id);
    let row = serde_json::to_vec(record).unwrap_or_default();
    let mut writes = Vec::with_capacity(2);
    // A missed call (settled, nobody answered) is also a notice for the mail task, in the
    // same commit: a record once durable is never without its notice.
    let notice = cx.config.mail && record.answered.is_none() && record.outcome.is_missed();
    if notice {
        writes.push(Write::put(MAIL_OUTBOX, key.clone(), row.clone()));
    }
    writes.push(Write::put(CALL_RECORDS, key, row));
    cx.persist_unacknowledged(writes);
    notice
}

/// The per-call log line, with the record's fields.
fn log(r: &CallRecord) {
    let opt = |s: &Option<String>| s.clone().unwrap_or_default();
    tracing::info!(
        call_id = %r.call_id,
        caller = %r.caller,
        dialled = %r.dialled,
        trunk = %opt(&r.trunk),
        team = %opt(&r.team),
        outcome = r.outcome.as_str(),
        mailbox = %opt(&r.mailbox),
        code = r.code.unwrap_or(0),
        started = r.started,
        answered = r.answered.unwrap_or(0),
        ended = r.ended.unwrap_or(0),
        rang = %r.rang.join(", "),
        answered_by = %opt(&r.answered_by),
        why = %r.why,
        steps = %r.steps.join("; "),
        end_reason = %opt(&r.end_reason),
        "call ended"
    );
}

/// A call in progress, as `GET /v1/calls` answers it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LiveCall {
    pub call_id: String,
    pub caller: String,
    pub dialled: String,
    /// Unix seconds.
    pub started: u64,
    pub answered: Option<u64>,
    /// `ringing` (being set up) or `answered`.
    pub phase: &'static str,
    /// The plan step running (1-based) and why the call reached it.
    pub step: Option<usize>,
    pub step_why: Option<String>,
    /// The branches ringing now (`person at contact`, `NUMBER via trunk ID`…).
    pub ringing: Vec<String>,
    pub answered_by: Option<String>,
}

impl LiveCall {
    /// An answered call whose set-up is over, from its record.
    pub(crate) fn of_record(r: &CallRecord) -> Self {
        LiveCall {
            call_id: r.call_id.clone(),
            caller: r.caller.clone(),
            dialled: r.dialled.clone(),
            started: r.started,
            answered: r.answered,
            phase: "answered",
            step: None,
            step_why: None,
            ringing: Vec::new(),
            answered_by: r.answered_by.clone(),
        }
    }
}

#[cfg(test)]
#[path = "records_tests.rs"]
mod tests;
