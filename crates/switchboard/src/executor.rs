//! Runs one call's [`RoutePlan`]: which branches ring when, when they stop, and where the
//! call goes when a step ends — sans-I/O.
//!
//! The executor knows nothing of SIP messages. Events come in (a branch answered, a branch
//! failed with a final response code, the caller cancelled, time passed) and commands come
//! out ([`Command`]: start a branch, cancel a branch, relay a branch's final response or end
//! the call with a response of our own, remember who answered). The core turns commands into
//! requests and responses through the transaction layer and feeds the outcomes back.
//!
//! A ring step is a timeline: each leg rings from its `start` to its `stop` second. When
//! nothing rings and legs are still to come (the member of a hunt was busy), the timeline
//! moves forward to the next leg at once, so the caller never waits on dead air. A step ends
//! when its duration is over (no answer), or earlier when every leg is over (busy if a leg
//! was busy, otherwise unavailable); the plan says where each outcome leads. When the plan
//! ends in a final response, the best response of every branch of the call competes with
//! the plan's code (RFC 3261 §16.7 step 6), so a busy callee is not lost behind a timeout.

use std::collections::VecDeque;
use std::time::{Duration, Instant};
use switchboard_policy::{
    Action, CallerIdRule, LegTarget, MailboxOwner, Menu, Message, Next, RoutePlan, VoicemailReason,
};
use switchboard_sip::proxy::best_response;

/// Identifies a branch within one call.
pub type BranchId = usize;

/// What a branch rings.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum BranchTarget {
    /// A registered device of a person (the device id of the view: its binding).
    Device { user: String, device: String },
    /// An external number, through a trunk (None: no trunk carries it).
    External {
        number: String,
        trunk: Option<String>,
    },
    /// A destination on a media server (voicemail, menu, queue, announcement); a voicemail
    /// box reached from a person's or team's setting says whose and why (`diverted`).
    Destination {
        id: String,
        uri: String,
        diverted: Option<(MailboxOwner, VoicemailReason)>,
    },
    /// A contact a branch's redirect (3xx) named, in a domain the operator listed.
    Redirect { uri: String },
    /// A named message the daemon plays to the caller itself (early media): a local media
    /// endpoint. It answers the caller with its own To tag, never with a final response:
    /// it ends when its message has been played (or could not be), reported with
    /// [`Execution::media_ended`], and takes no part in the step's outcome or the call's
    /// final response.
    Message { message: Message },
    /// The daemon's own IVR menu (early media), a local media endpoint like a message: it
    /// ends with the caller's choice ([`Execution::menu_chosen`]: the call goes on to that
    /// key's option) or without one ([`Execution::media_ended`]: the menu's default).
    Menu { menu: Menu },
    /// An announcement the daemon serves itself, which the call is for (an `announcement`
    /// destination without `uri`): like a [`BranchTarget::Message`], but a caller it cannot
    /// serve is refused with the branch's response, and with `answer` it answers the call
    /// ([`Execution::local_answered`]).
    Announcement {
        id: String,
        message: Message,
        answer: bool,
    },
    /// The daemon's own mailbox of a person or team: it answers the call
    /// ([`Execution::local_answered`]), plays the greeting and takes a message; a caller it
    /// cannot serve (no codec in common…) is refused as by an announcement, and a mailbox
    /// that cannot take a message (full, no media) ends like a message that could not be
    /// played ([`Execution::media_ended`]: the step's `on_no_answer`).
    Mailbox {
        mailbox: MailboxOwner,
        reason: VoicemailReason,
    },
    /// The mailbox by phone ([`Action::MailboxPhone`]): it answers the call
    /// ([`Execution::local_answered`]) and ends when the caller is done
    /// ([`Execution::media_ended`]: the call is hung up).
    MailboxPhone {
        mailbox: Option<MailboxOwner>,
        number: Option<String>,
    },
}

/// Most redirects followed one after another from a branch the plan started (a redirect
/// to a target that redirects again is depth 2).
pub const MAX_REDIRECT_DEPTH: u8 = 2;
/// Most contacts of one redirect that are rung.
pub const MAX_REDIRECT_TARGETS: usize = 5;

/// A branch to start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BranchStart {
    pub branch: BranchId,
    pub target: BranchTarget,
    pub caller_id: CallerIdRule,
    pub team_call: bool,
    /// Its target must confirm the call before the caller is connected (a forward target
    /// of a person with `require_confirmation`): the core calls it as a back-to-back leg
    /// of its own and reports [`Execution::branch_answered`] only once it has pressed 1,
    /// [`Execution::branch_failed`] otherwise.
    pub confirm: bool,
}

/// Why a branch is cancelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CancelCause {
    /// Another branch answered (RFC 3326 Reason "Call completed elsewhere").
    CompletedElsewhere,
    /// Its ring time is over.
    NoAnswer,
    /// The caller hung up.
    CallerCancelled,
}

/// What the executor asks of the core, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Start(BranchStart),
    Cancel {
        branch: BranchId,
        cause: CancelCause,
    },
    /// Relay this branch's final response to the caller (the call is over).
    Relay {
        branch: BranchId,
    },
    /// Answer the caller with this final response of our own (the call is over).
    Respond {
        code: u16,
        reason: Option<String>,
    },
    /// Record that `user` answered a call to `group` (memory hunt, round robin…).
    Remember {
        group: String,
        user: String,
    },
    /// A call the daemon answered itself (an answered announcement) is over: hang up (a
    /// BYE of ours to the caller). `branch` is the one that answered last.
    HangUp {
        branch: BranchId,
    },
}

/// Bounds of the executor.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// How long a step without a ring time of its own (an external number, a media
    /// server destination) may ring before it counts as not answered.
    pub max_ring: Duration,
    /// Most branches one call may start.
    pub max_branches: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_ring: Duration::from_secs(180),
            max_branches: 256,
        }
    }
}

/// How a step or leg ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    NoAnswer,
    Busy,
    Unavailable,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LegState {
    Waiting,
    Ringing,
    Over(Outcome),
}

struct LegRun {
    start: Duration,
    /// None: rings until the step ends.
    stop: Option<Duration>,
    targets: Vec<(BranchTarget, CallerIdRule, bool)>,
    /// Who answering this leg counts as (memory).
    user: Option<String>,
    state: LegState,
    branches: Vec<BranchId>,
    /// A message played to the caller ([`BranchTarget::Message`]): it is not rung, and
    /// whether it is over says nothing of the step's outcome (unless the step is nothing
    /// but messages).
    media: bool,
    /// Its branches must be confirmed by their target ([`BranchStart::confirm`]).
    confirm: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BranchState {
    Live,
    /// A CANCEL was asked for; its final response (487) is not a candidate.
    Cancelled,
    Ended(u16),
}

struct BranchRun {
    /// (step index, leg index)
    leg: (usize, usize),
    state: BranchState,
    target: BranchTarget,
    caller_id: CallerIdRule,
    team_call: bool,
    /// Redirects followed to reach it (0: a target of the plan).
    depth: u8,
}

/// Where the call is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Steps are running.
    Routing,
    /// A branch answered.
    Answered { branch: BranchId },
    /// The caller got a final response (or cancelled).
    Ended,
}

/// One call's plan in progress. See the [module documentation](self).
pub struct Execution {
    plan: RoutePlan,
    limits: Limits,
    phase: Phase,
    step: Option<usize>,
    step_start: Instant,
    /// Time the current step's timeline moved forward over dead air.
    skip: Duration,
    /// A message of a ring step is playing: (since when, the timeline's second then, its
    /// leg). The timeline stands still meanwhile — the legs still to start wait for the
    /// message (a forwarding's message is heard before the targets ring), those ringing
    /// ring on — and goes on from that second when the message is over.
    held: Option<(Instant, Duration, usize)>,
    /// End of the current step on its timeline (None: none of its own; see `max_ring`).
    step_end: Duration,
    legs: Vec<LegRun>,
    branches: Vec<BranchRun>,
    /// Final codes of branches that were not cancelled by us, with the branch.
    candidates: Vec<(u16, BranchId)>,
    commands: VecDeque<Command>,
    /// What happened, step by step, for the call's log line.
    history: Vec<String>,
    steps_entered: usize,
    /// The last step entered (for the call's record: why it ended where it did).
    last_step: Option<usize>,
    /// The call was answered by an announcement of the daemon's own
    /// ([`Execution::local_answered`]): what follows it is played in the same call.
    local_answer: bool,
}

/// A leg that plays `message` to the caller from `start` until it has been played.
fn message_leg(start: Duration, message: Message) -> LegRun {
    local_leg(start, BranchTarget::Message { message })
}

/// A leg of a local media endpoint ([`BranchTarget::Message`], [`BranchTarget::Menu`] or
/// [`BranchTarget::Announcement`]) from `start` until it is over.
fn local_leg(start: Duration, target: BranchTarget) -> LegRun {
    LegRun {
        start,
        stop: None,
        targets: vec![(target, CallerIdRule::Caller, false)],
        user: None,
        state: LegState::Waiting,
        branches: Vec::new(),
        media: true,
        confirm: false,
    }
}

/// Busy answers (RFC 3261 §21.4.24, §21.6.1, §21.6.2).
fn is_busy(code: u16) -> bool {
    matches!(code, 486 | 600 | 603)
}

impl Execution {
    /// Starts running `plan` at `now`; the first commands are ready at once.
    pub fn new(plan: RoutePlan, limits: Limits, now: Instant) -> Self {
        let start = plan.start.clone();
        let mut e = Execution {
            plan,
            limits,
            phase: Phase::Routing,
            step: None,
            step_start: now,
            skip: Duration::ZERO,
            held: None,
            step_end: Duration::ZERO,
            legs: Vec::new(),
            branches: Vec::new(),
            candidates: Vec::new(),
            commands: VecDeque::new(),
            history: Vec::new(),
            steps_entered: 0,
            last_step: None,
            local_answer: false,
        };
        e.enter(start, now);
        e
    }

    pub fn phase(&self) -> &Phase {
        &self.phase
    }

    /// The plan being run.
    pub fn plan(&self) -> &RoutePlan {
        &self.plan
    }

    /// What happened so far, step by step, in plain words.
    pub fn history(&self) -> &[String] {
        &self.history
    }

    /// The step running now (None once the call is answered or over).
    pub fn step(&self) -> Option<usize> {
        self.step
    }

    /// The last step entered, running or not.
    pub fn last_step(&self) -> Option<usize> {
        self.last_step
    }

    /// The step branch `branch` was started for.
    pub fn branch_step(&self, branch: BranchId) -> Option<usize> {
        self.branches.get(branch).map(|b| b.leg.0)
    }

    /// The next command, oldest first.
    pub fn poll_command(&mut self) -> Option<Command> {
        self.commands.pop_front()
    }

    /// Whether any branch still waits for its final response.
    pub fn has_live_branches(&self) -> bool {
        self.branches
            .iter()
            .any(|b| !matches!(b.state, BranchState::Ended(_)))
    }

    /// The user a branch rings (for a device branch) or None.
    pub fn branch_user(&self, branch: BranchId) -> Option<&str> {
        let (s, l) = self.branches.get(branch)?.leg;
        if Some(s) != self.step && !self.legs.is_empty() {
            // Legs of earlier steps are gone; the core keeps its own record.
            return None;
        }
        self.legs.get(l)?.user.as_deref()
    }

    /// When [`Execution::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.phase != Phase::Routing || self.step.is_none() {
            return None;
        }
        if let Some((since, _, _)) = self.held {
            // A message that never ends is stopped after the longest a step may take.
            return Some(since + self.limits.max_ring);
        }
        let mut next = self.step_end;
        for leg in &self.legs {
            match leg.state {
                LegState::Waiting => next = next.min(leg.start),
                LegState::Ringing => {
                    if let Some(stop) = leg.stop {
                        next = next.min(stop)
                    }
                }
                LegState::Over(_) => {}
            }
        }
        Some(self.step_start + next.saturating_sub(self.skip))
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.phase != Phase::Routing {
            return;
        }
        if let Some((since, _, leg)) = self.held {
            if now < since + self.limits.max_ring {
                return;
            }
            tracing::warn!("a message did not end within the longest ring time; stopped");
            for b in self.legs[leg].branches.clone() {
                if self.branches[b].state == BranchState::Live {
                    self.branches[b].state = BranchState::Cancelled;
                    self.commands.push_back(Command::Cancel {
                        branch: b,
                        cause: CancelCause::NoAnswer,
                    });
                }
            }
            self.legs[leg].state = LegState::Over(Outcome::NoAnswer);
            self.release(now);
        }
        self.advance(now);
    }

    /// A branch answered (a 2xx). The first answer wins: every other branch is
    /// cancelled; later answers are the core's to relay (§16.7 step 9).
    pub fn branch_answered(&mut self, branch: BranchId, _now: Instant) {
        let Some(b) = self.branches.get_mut(branch) else {
            return;
        };
        b.state = BranchState::Ended(200);
        if self.phase != Phase::Routing {
            return;
        }
        self.phase = Phase::Answered { branch };
        let (step, leg) = self.branches[branch].leg;
        let who = if Some(step) == self.step {
            self.legs.get(leg).and_then(|l| l.user.clone())
        } else {
            None
        };
        self.history.push(match &who {
            Some(u) => format!("step {}: answered by {u}", step + 1),
            None => format!("step {}: answered", step + 1),
        });
        if let (Some(user), Some(group)) = (who, self.memory_group(step)) {
            self.commands.push_back(Command::Remember { group, user });
        }
        self.cancel_all(CancelCause::CompletedElsewhere);
    }

    /// A branch ended without answering: its final response code (408 for a timeout, 503
    /// for a transport failure, the response's code otherwise).
    pub fn branch_failed(&mut self, branch: BranchId, code: u16, now: Instant) {
        let Some(b) = self.branches.get_mut(branch) else {
            return;
        };
        let was_cancelled = b.state == BranchState::Cancelled;
        if matches!(b.state, BranchState::Ended(_)) {
            return;
        }
        b.state = BranchState::Ended(code);
        if !was_cancelled {
            self.candidates.push((code, branch));
        }
        if self.phase != Phase::Routing {
            return;
        }
        let (step, leg) = self.branches[branch].leg;
        if Some(step) == self.step {
            self.settle_leg(leg);
            self.advance(now);
        }
    }

    /// A message branch ([`BranchTarget::Message`]) is over: `how` it went, in plain words
    /// for the call's history ("played", "skipped: no SDP offer…"). It is no candidate for
    /// the final response; a step of nothing but messages goes on as when nobody answers
    /// (`on_no_answer`), and in a ring step the legs ring on.
    pub fn media_ended(&mut self, branch: BranchId, how: &str, now: Instant) {
        if self.local_answer && self.phase == (Phase::Answered { branch }) {
            return self.after_local(branch, how);
        }
        let Some(b) = self.branches.get_mut(branch) else {
            return;
        };
        if matches!(b.state, BranchState::Ended(_)) {
            return;
        }
        let was_live = b.state == BranchState::Live;
        b.state = BranchState::Ended(0);
        let (step, leg) = b.leg;
        if was_live {
            match &b.target {
                BranchTarget::Message { message } => self
                    .history
                    .push(format!("step {}: message {message} {how}", step + 1)),
                BranchTarget::Menu { menu } => self.history.push(format!(
                    "step {}: menu {}: {how} → default",
                    step + 1,
                    menu.id
                )),
                BranchTarget::Announcement { id, .. } => self
                    .history
                    .push(format!("step {}: announcement {id} {how}", step + 1)),
                BranchTarget::Mailbox { mailbox, .. } => self
                    .history
                    .push(format!("step {}: mailbox {mailbox} {how}", step + 1)),
                BranchTarget::MailboxPhone { .. } => self
                    .history
                    .push(format!("step {}: mailbox by phone {how}", step + 1)),
                _ => {}
            }
        }
        if self.phase != Phase::Routing || Some(step) != self.step {
            return;
        }
        if let Some(l) = self.legs.get_mut(leg) {
            if l.state == LegState::Ringing {
                l.state = LegState::Over(Outcome::NoAnswer);
            }
        }
        if self.held.is_some_and(|(_, _, l)| l == leg) {
            self.release(now);
        }
        self.advance(now);
    }

    /// The caller pressed `key` in menu branch `branch` ([`BranchTarget::Menu`]) and the
    /// menu has an option for it: the menu is over and the call goes on to that option (a
    /// key with no option is the menu's own business: it never comes here). Nothing
    /// happens for a branch that is not a live menu of the step running.
    pub fn menu_chosen(&mut self, branch: BranchId, key: char, now: Instant) {
        let Some(b) = self.branches.get_mut(branch) else {
            return;
        };
        if b.state != BranchState::Live {
            return;
        }
        let BranchTarget::Menu { menu } = &b.target else {
            return;
        };
        let Some(option) = menu.option(key).cloned() else {
            return;
        };
        let id = menu.id.clone();
        b.state = BranchState::Ended(0);
        let step = b.leg.0;
        if self.phase != Phase::Routing || Some(step) != self.step {
            return;
        }
        self.history.push(format!(
            "step {}: menu {id}: key {key} → {}",
            step + 1,
            option.target
        ));
        self.cancel_all(CancelCause::NoAnswer);
        self.enter(option.next, now);
    }

    /// An announcement branch ([`BranchTarget::Announcement`] with `answer`) answered the
    /// caller itself (200 OK): the call is answered, by it. What the plan says comes after
    /// it is played in the same call when it is over ([`Execution::media_ended`]): another
    /// announcement of the daemon's own; anything else hangs up ([`Command::HangUp`]).
    pub fn local_answered(&mut self, branch: BranchId, _now: Instant) {
        let Some(b) = self.branches.get_mut(branch) else {
            return;
        };
        if self.phase != Phase::Routing || b.state != BranchState::Live {
            return;
        }
        b.state = BranchState::Ended(200);
        let step = b.leg.0;
        let who = match &b.target {
            BranchTarget::Announcement { id, .. } => format!("announcement {id}"),
            BranchTarget::Mailbox { mailbox, .. } => format!("the mailbox of {mailbox}"),
            BranchTarget::MailboxPhone { .. } => "the mailbox by phone".to_string(),
            _ => "a message".to_string(),
        };
        self.phase = Phase::Answered { branch };
        self.local_answer = true;
        self.history
            .push(format!("step {}: answered by {who}", step + 1));
        self.cancel_all(CancelCause::CompletedElsewhere);
    }

    /// An announcement branch could not serve the caller (its offer: `code`, with the
    /// branch's own response, which the call ends with as it is).
    pub fn local_refused(&mut self, branch: BranchId, code: u16, _now: Instant) {
        let Some(b) = self.branches.get_mut(branch) else {
            return;
        };
        if self.phase != Phase::Routing || b.state != BranchState::Live {
            return;
        }
        b.state = BranchState::Ended(code);
        let step = b.leg.0;
        self.history
            .push(format!("step {}: the caller refused ({code})", step + 1));
        self.phase = Phase::Ended;
        self.step = None;
        self.cancel_all(CancelCause::NoAnswer);
        self.legs.clear();
        self.commands.push_back(Command::Relay { branch });
    }

    /// The announcement that answered the call is over (`how`): the plan's next step if it
    /// is another announcement (it goes on in the same call, answering nothing again),
    /// else the call is hung up.
    fn after_local(&mut self, branch: BranchId, how: &str) {
        let step = self.branches.get(branch).map_or(0, |b| b.leg.0);
        let what = match self.branches.get(branch).map(|b| &b.target) {
            Some(BranchTarget::Announcement { id, .. }) => format!("announcement {id}"),
            Some(BranchTarget::Mailbox { mailbox, .. }) => format!("mailbox {mailbox}"),
            Some(BranchTarget::MailboxPhone { .. }) => "mailbox by phone".to_string(),
            _ => "announcement".to_string(),
        };
        self.history
            .push(format!("step {}: {what} {how}", step + 1));
        let next = self
            .plan
            .steps
            .get(step)
            .map_or(Next::Final(480), |s| s.on_no_answer.clone());
        self.steps_entered += 1;
        let looping = self.steps_entered > 4 * switchboard_policy::plan::MAX_STEPS;
        if let (Next::Step(i), false) = (&next, looping) {
            let i = *i;
            if let Some(Action::Announcement { id, message, .. }) =
                self.plan.steps.get(i).map(|s| s.action.clone())
            {
                self.step = Some(i);
                self.last_step = Some(i);
                self.legs.clear();
                self.history
                    .push(format!("step {}: to announcement {id}", i + 1));
                let target = BranchTarget::Announcement {
                    id,
                    message,
                    answer: true,
                };
                self.legs.push(local_leg(Duration::ZERO, target.clone()));
                self.legs[0].targets.clear();
                self.legs[0].state = LegState::Ringing;
                if self.start_branch((i, 0), target, CallerIdRule::Caller, false, 0) {
                    let new = self.branches.len() - 1;
                    self.branches[new].state = BranchState::Ended(200);
                    self.phase = Phase::Answered { branch: new };
                    return;
                }
            }
        }
        self.history.push("hung up".into());
        // Over: nothing more follows.
        self.local_answer = false;
        self.commands.push_back(Command::HangUp { branch });
    }

    /// A branch that could not even be started (no trunk, no address): as a failure.
    pub fn branch_unstartable(&mut self, branch: BranchId, code: u16, now: Instant) {
        self.branch_failed(branch, code, now);
    }

    /// The caller cancelled: every branch is cancelled and the call ends (the core answers
    /// the INVITE 487).
    pub fn caller_cancelled(&mut self, _now: Instant) {
        if self.phase == Phase::Routing {
            self.history.push("the caller hung up".into());
            self.phase = Phase::Ended;
            self.cancel_all(CancelCause::CallerCancelled);
        }
    }

    fn memory_group(&self, step: usize) -> Option<String> {
        match &self.plan.steps.get(step)?.action {
            Action::Ring { memory_group, .. } => memory_group.clone(),
            _ => None,
        }
    }

    fn cancel_all(&mut self, cause: CancelCause) {
        for (i, b) in self.branches.iter_mut().enumerate() {
            if b.state == BranchState::Live {
                b.state = BranchState::Cancelled;
                self.commands
                    .push_back(Command::Cancel { branch: i, cause });
            }
        }
    }

    fn elapsed(&self, now: Instant) -> Duration {
        match self.held {
            Some((_, at, _)) => at,
            None => now.saturating_duration_since(self.step_start) + self.skip,
        }
    }

    /// The message holding the timeline is over: the timeline goes on from where it
    /// stood.
    fn release(&mut self, now: Instant) {
        if let Some((_, at, _)) = self.held.take() {
            let behind = at.saturating_sub(self.skip);
            self.step_start = now.checked_sub(behind).unwrap_or(now);
        }
    }

    /// Goes to `next`: a step, or the end of the call.
    fn enter(&mut self, next: Next, now: Instant) {
        {
            self.steps_entered += 1;
            let index = match next {
                Next::Final(code) => return self.finish(code),
                Next::Step(i) if self.steps_entered > 4 * switchboard_policy::plan::MAX_STEPS => {
                    self.history
                        .push(format!("step {}: the plan goes round in circles", i + 1));
                    return self.finish(482);
                }
                Next::Step(i) => i,
            };
            let Some(step) = self.plan.steps.get(index).cloned() else {
                self.history
                    .push(format!("step {}: not in the plan", index + 1));
                return self.finish(500);
            };
            self.step = Some(index);
            self.last_step = Some(index);
            self.step_start = now;
            self.skip = Duration::ZERO;
            self.held = None;
            self.legs.clear();
            match step.action {
                Action::Ring {
                    legs,
                    duration,
                    announcements,
                    ..
                } => {
                    // Messages first: one due with a leg plays before that leg rings.
                    for (at, name) in announcements {
                        let at = Duration::from_secs(at.into());
                        self.legs.push(message_leg(at, Message::Named(name)));
                    }
                    let unbounded = duration == 0;
                    self.step_end = if unbounded {
                        self.limits.max_ring
                    } else {
                        Duration::from_secs(duration.into())
                    };
                    for leg in legs {
                        let (user, targets) = match &leg.target {
                            LegTarget::Person { user, devices } => (
                                Some(user.clone()),
                                devices
                                    .iter()
                                    .map(|d| {
                                        (
                                            BranchTarget::Device {
                                                user: user.clone(),
                                                device: d.clone(),
                                            },
                                            leg.caller_id.clone(),
                                            leg.team_call,
                                        )
                                    })
                                    .collect(),
                            ),
                            LegTarget::External { number, trunk } => (
                                None,
                                vec![(
                                    BranchTarget::External {
                                        number: number.clone(),
                                        trunk: trunk.clone(),
                                    },
                                    leg.caller_id.clone(),
                                    leg.team_call,
                                )],
                            ),
                        };
                        let open_ended = leg.stop <= leg.start;
                        self.legs.push(LegRun {
                            start: Duration::from_secs(leg.start.into()),
                            stop: (!open_ended).then(|| Duration::from_secs(leg.stop.into())),
                            targets,
                            user,
                            state: LegState::Waiting,
                            branches: Vec::new(),
                            media: false,
                            confirm: leg.confirm,
                        });
                    }
                }
                Action::Destination {
                    id,
                    kind,
                    uri,
                    diverted,
                } => {
                    self.step_end = self.limits.max_ring;
                    self.history
                        .push(format!("step {}: to {} {id}", index + 1, kind.as_str()));
                    self.legs.push(LegRun {
                        start: Duration::ZERO,
                        stop: None,
                        targets: vec![(
                            BranchTarget::Destination { id, uri, diverted },
                            CallerIdRule::Caller,
                            false,
                        )],
                        user: None,
                        state: LegState::Waiting,
                        branches: Vec::new(),
                        media: false,
                        confirm: false,
                    });
                }
                Action::Message { message } => {
                    self.step_end = self.limits.max_ring;
                    self.legs.push(message_leg(Duration::ZERO, message));
                }
                Action::Menu { menu } => {
                    // Bounded as any step without a ring time of its own.
                    self.step_end = self.limits.max_ring;
                    self.legs
                        .push(local_leg(Duration::ZERO, BranchTarget::Menu { menu }));
                }
                Action::Announcement {
                    id,
                    message,
                    answer,
                } => {
                    self.step_end = self.limits.max_ring;
                    self.history
                        .push(format!("step {}: to announcement {id}", index + 1));
                    let target = BranchTarget::Announcement {
                        id,
                        message,
                        answer,
                    };
                    self.legs.push(local_leg(Duration::ZERO, target));
                }
                Action::Voicemail { mailbox, reason } => {
                    self.step_end = self.limits.max_ring;
                    self.history
                        .push(format!("step {}: to the mailbox of {mailbox}", index + 1));
                    let target = BranchTarget::Mailbox { mailbox, reason };
                    self.legs.push(local_leg(Duration::ZERO, target));
                }
                Action::MailboxPhone { mailbox, number } => {
                    self.step_end = self.limits.max_ring;
                    self.history
                        .push(format!("step {}: to the mailbox by phone", index + 1));
                    let target = BranchTarget::MailboxPhone { mailbox, number };
                    self.legs.push(local_leg(Duration::ZERO, target));
                }
                Action::Reject { code, reason } => {
                    self.history
                        .push(format!("step {}: rejected {code} {reason}", index + 1));
                    self.phase = Phase::Ended;
                    self.step = None;
                    self.commands.push_back(Command::Respond {
                        code,
                        reason: Some(reason),
                    });
                    return;
                }
            }
            self.advance(now);
        }
    }

    /// Ends the call with the best of the branches' responses and the plan's `code`.
    fn finish(&mut self, code: u16) {
        self.phase = Phase::Ended;
        self.step = None;
        self.legs.clear();
        let mut codes: Vec<u16> = self.candidates.iter().map(|(c, _)| *c).collect();
        codes.push(code);
        let best = best_response(&codes).unwrap_or(codes.len() - 1);
        match self.candidates.get(best) {
            Some(&(c, branch)) => {
                self.history
                    .push(format!("ends with a branch's {c} (plan: {code})"));
                self.commands.push_back(Command::Relay { branch });
            }
            None => {
                self.history.push(format!("ends with {code}"));
                self.commands
                    .push_back(Command::Respond { code, reason: None });
            }
        }
    }

    /// A leg whose branches have all ended is over: busy if any was busy, else
    /// unavailable.
    fn settle_leg(&mut self, leg: usize) {
        let Some(l) = self.legs.get(leg) else {
            return;
        };
        if l.state != LegState::Ringing {
            return;
        }
        let mut busy = false;
        for &b in &l.branches {
            match self.branches[b].state {
                BranchState::Ended(c) => busy |= is_busy(c),
                _ => return,
            }
        }
        self.legs[leg].state = LegState::Over(if busy {
            Outcome::Busy
        } else {
            Outcome::Unavailable
        });
    }

    fn start_leg(&mut self, leg: usize) {
        let step = self.step.unwrap_or(0);
        let targets = std::mem::take(&mut self.legs[leg].targets);
        self.legs[leg].state = LegState::Ringing;
        for (target, caller_id, team_call) in targets {
            if !self.start_branch((step, leg), target, caller_id, team_call, 0) {
                break;
            }
        }
        if self.legs[leg].branches.is_empty() {
            self.legs[leg].state = LegState::Over(if self.legs[leg].media {
                Outcome::NoAnswer
            } else {
                Outcome::Unavailable
            });
        }
    }

    /// Starts a branch of leg `at`; false when the call has all the branches it may.
    fn start_branch(
        &mut self,
        at: (usize, usize),
        target: BranchTarget,
        caller_id: CallerIdRule,
        team_call: bool,
        depth: u8,
    ) -> bool {
        if self.branches.len() >= self.limits.max_branches {
            tracing::warn!(
                limit = self.limits.max_branches,
                "branch limit of the call reached: a target is left out"
            );
            return false;
        }
        let branch = self.branches.len();
        self.branches.push(BranchRun {
            leg: at,
            state: BranchState::Live,
            target: target.clone(),
            caller_id: caller_id.clone(),
            team_call,
            depth,
        });
        self.legs[at.1].branches.push(branch);
        let confirm = self.legs[at.1].confirm;
        self.commands.push_back(Command::Start(BranchStart {
            branch,
            target,
            caller_id,
            team_call,
            confirm,
        }));
        true
    }

    /// A branch was redirected (3xx, RFC 3261 §16.7 step 4) to `targets`, in the order to
    /// try them, each one the core allows: those not rung yet in this call ring in its leg
    /// (at most [`MAX_REDIRECT_TARGETS`], and not beyond [`MAX_REDIRECT_DEPTH`] redirects),
    /// like the branch did; the redirect itself is no candidate for the final response.
    /// With none of them left, the redirect counts as a failure (`code`). Returns how many
    /// were started.
    pub fn branch_redirected(
        &mut self,
        branch: BranchId,
        code: u16,
        targets: Vec<BranchTarget>,
        now: Instant,
    ) -> usize {
        let Some(b) = self.branches.get(branch) else {
            return 0;
        };
        let usable = b.state == BranchState::Live
            && b.depth < MAX_REDIRECT_DEPTH
            && self.phase == Phase::Routing
            && Some(b.leg.0) == self.step
            && self
                .legs
                .get(b.leg.1)
                .is_some_and(|l| l.state == LegState::Ringing);
        let fresh: Vec<BranchTarget> = if usable {
            let mut seen: std::collections::HashSet<BranchTarget> =
                self.branches.iter().map(|b| b.target.clone()).collect();
            targets
                .into_iter()
                .filter(|t| seen.insert(t.clone()))
                .take(MAX_REDIRECT_TARGETS)
                .collect()
        } else {
            Vec::new()
        };
        if fresh.is_empty() {
            self.branch_failed(branch, code, now);
            return 0;
        }
        let (at, caller_id, team_call, depth) =
            (b.leg, b.caller_id.clone(), b.team_call, b.depth + 1);
        self.branches[branch].state = BranchState::Ended(code);
        let mut started = 0;
        for target in fresh {
            if !self.start_branch(at, target, caller_id.clone(), team_call, depth) {
                break;
            }
            started += 1;
        }
        self.history.push(format!(
            "step {}: redirected ({code}) to {started} target(s)",
            at.0 + 1
        ));
        self.settle_leg(at.1);
        self.advance(now);
        started
    }

    /// Moves the current step's timeline to `now`: starts and stops legs, ends the step.
    fn advance(&mut self, now: Instant) {
        // Each round either returns or changes a leg's or the step's state, so this ends;
        // the bound is a guard against a mistake, not a limit that is ever reached.
        for _ in 0..4 * (self.legs.len() + 4) * (switchboard_policy::plan::MAX_STEPS + 1) {
            if self.phase != Phase::Routing {
                return;
            }
            let Some(step) = self.step else {
                return;
            };
            let t = self.elapsed(now);
            let mut changed = false;
            for i in 0..self.legs.len() {
                let leg = &self.legs[i];
                match leg.state {
                    // While a message holds the timeline, only messages start.
                    LegState::Waiting if leg.start <= t && (self.held.is_none() || leg.media) => {
                        if leg.stop.is_some_and(|s| s <= t) {
                            // Its window passed while the timeline jumped: never rings.
                            self.legs[i].state = LegState::Over(Outcome::NoAnswer);
                        } else {
                            self.start_leg(i);
                            let holds = self.legs[i].media
                                && self.legs[i].state == LegState::Ringing
                                && self.held.is_none()
                                && self.legs.iter().any(|l| !l.media);
                            if holds {
                                self.held = Some((now, t, i));
                            }
                        }
                        changed = true;
                    }
                    LegState::Ringing if leg.stop.is_some_and(|s| s <= t) => {
                        for b in leg.branches.clone() {
                            if self.branches[b].state == BranchState::Live {
                                self.branches[b].state = BranchState::Cancelled;
                                self.commands.push_back(Command::Cancel {
                                    branch: b,
                                    cause: CancelCause::NoAnswer,
                                });
                            }
                        }
                        self.legs[i].state = LegState::Over(Outcome::NoAnswer);
                        changed = true;
                    }
                    _ => {}
                }
            }
            if changed {
                continue;
            }
            // A step of nothing but messages is over when they are; otherwise the
            // messages take no part in its outcome (and stop when it ends).
            let only_media = self.legs.iter().all(|l| l.media);
            let counted = |l: &&LegRun| only_media || !l.media;
            let outcome = if t >= self.step_end {
                self.cancel_all(CancelCause::NoAnswer);
                Some(Outcome::NoAnswer)
            } else if self
                .legs
                .iter()
                .filter(counted)
                .all(|l| matches!(l.state, LegState::Over(_)))
            {
                self.cancel_all(CancelCause::NoAnswer);
                let of = |o| {
                    self.legs
                        .iter()
                        .filter(counted)
                        .any(|l| l.state == LegState::Over(o))
                };
                Some(if of(Outcome::NoAnswer) {
                    Outcome::NoAnswer
                } else if of(Outcome::Busy) {
                    Outcome::Busy
                } else {
                    Outcome::Unavailable
                })
            } else {
                None
            };
            if let Some(o) = outcome {
                let s = &self.plan.steps[step];
                let (word, next) = match o {
                    Outcome::NoAnswer if matches!(s.action, Action::Menu { .. }) => {
                        ("no choice", s.on_no_answer.clone())
                    }
                    Outcome::NoAnswer if only_media => ("message over", s.on_no_answer.clone()),
                    Outcome::NoAnswer => ("no answer", s.on_no_answer.clone()),
                    Outcome::Busy => ("busy", s.on_busy.clone()),
                    Outcome::Unavailable => ("unavailable", s.on_unavailable.clone()),
                };
                self.history
                    .push(format!("step {}: {word} after {} s", step + 1, t.as_secs()));
                self.enter(next, now);
                return;
            }
            // Dead air: nothing rings, but legs are still to come.
            let ringing = self.legs.iter().any(|l| l.state == LegState::Ringing);
            if !ringing {
                if let Some(next_start) = self
                    .legs
                    .iter()
                    .filter(|l| l.state == LegState::Waiting)
                    .map(|l| l.start)
                    .min()
                {
                    if next_start > t {
                        self.skip += next_start - t;
                        continue;
                    }
                }
            }
            return;
        }
        tracing::error!("call timeline did not settle; ending the call");
        self.cancel_all(CancelCause::NoAnswer);
        self.finish(500);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_policy::{Leg, RingStrategy, Step};

    fn person(user: &str, devices: &[&str], start: u32, stop: u32) -> Leg {
        Leg {
            target: LegTarget::Person {
                user: user.into(),
                devices: devices.iter().map(|d| d.to_string()).collect(),
            },
            start,
            stop,
            caller_id: CallerIdRule::Caller,
            team_call: false,
            why: String::new(),
            confirm: false,
        }
    }

    fn ring(legs: Vec<Leg>, duration: u32, next: [Next; 3]) -> Step {
        let [on_no_answer, on_busy, on_unavailable] = next;
        Step {
            action: Action::Ring {
                legs,
                duration,
                strategy: RingStrategy::Hunt,
                memory_group: Some("support".into()),
                announcements: Vec::new(),
            },
            on_no_answer,
            on_busy,
            on_unavailable,
            why: String::new(),
        }
    }

    fn voicemail() -> Step {
        Step {
            action: Action::Destination {
                id: "vm".into(),
                kind: switchboard_policy::DestinationKind::Voicemail,
                uri: "sip:vm@127.0.0.1:5090".into(),
                diverted: None,
            },
            on_no_answer: Next::Final(480),
            on_busy: Next::Final(486),
            on_unavailable: Next::Final(480),
            why: String::new(),
        }
    }

    fn plan(steps: Vec<Step>) -> RoutePlan {
        RoutePlan {
            start: Next::Step(0),
            steps,
            notes: Vec::new(),
        }
    }

    fn drain(e: &mut Execution) -> Vec<Command> {
        std::iter::from_fn(|| e.poll_command()).collect()
    }

    fn started(cmds: &[Command]) -> Vec<(BranchId, String)> {
        cmds.iter()
            .filter_map(|c| match c {
                Command::Start(s) => Some((
                    s.branch,
                    match &s.target {
                        BranchTarget::Device { device, .. } => device.clone(),
                        BranchTarget::External { number, .. } => number.clone(),
                        BranchTarget::Destination { uri, .. } => uri.clone(),
                        BranchTarget::Redirect { uri } => uri.clone(),
                        BranchTarget::Message { message } => format!("message {message}"),
                        BranchTarget::Menu { menu } => format!("menu {}", menu.id),
                        BranchTarget::Announcement { id, .. } => format!("announcement {id}"),
                        BranchTarget::Mailbox { mailbox, .. } => format!("mailbox {mailbox}"),
                        BranchTarget::MailboxPhone { .. } => "mailbox by phone".to_string(),
                    },
                )),
                _ => None,
            })
            .collect()
    }

    fn cancelled(cmds: &[Command]) -> Vec<(BranchId, CancelCause)> {
        cmds.iter()
            .filter_map(|c| match c {
                Command::Cancel { branch, cause } => Some((*branch, *cause)),
                _ => None,
            })
            .collect()
    }

    fn secs(t0: Instant, s: u64) -> Instant {
        t0 + Duration::from_secs(s)
    }

    const TO_VM: [Next; 3] = [Next::Step(1), Next::Step(1), Next::Step(1)];

    #[test]
    fn ring_all_first_answer_cancels_the_rest_as_completed_elsewhere() {
        let t0 = Instant::now();
        let p = plan(vec![ring(
            vec![
                person("a", &["a1", "a2"], 0, 20),
                person("b", &["b1"], 0, 20),
            ],
            20,
            [Next::Final(408), Next::Final(486), Next::Final(480)],
        )]);
        let mut e = Execution::new(p, Limits::default(), t0);
        let c = drain(&mut e);
        assert_eq!(started(&c).len(), 3);
        e.branch_answered(2, secs(t0, 3));
        let c = drain(&mut e);
        assert_eq!(
            c[0],
            Command::Remember {
                group: "support".into(),
                user: "b".into()
            }
        );
        assert_eq!(
            cancelled(&c),
            vec![
                (0, CancelCause::CompletedElsewhere),
                (1, CancelCause::CompletedElsewhere)
            ]
        );
        assert_eq!(e.phase(), &Phase::Answered { branch: 2 });
        assert_eq!(e.poll_timeout(), None);
    }

    #[test]
    fn a_leg_that_needs_confirmation_marks_its_branches_and_their_redirects() {
        let t0 = Instant::now();
        let mut forward = person("b", &["b1"], 0, 20);
        forward.confirm = true;
        let p = plan(vec![ring(
            vec![person("a", &["a1"], 0, 20), forward],
            20,
            [Next::Final(408), Next::Final(486), Next::Final(480)],
        )]);
        let mut e = Execution::new(p, Limits::default(), t0);
        let confirm = |c: &[Command]| -> Vec<(BranchId, bool)> {
            c.iter()
                .filter_map(|c| match c {
                    Command::Start(s) => Some((s.branch, s.confirm)),
                    _ => None,
                })
                .collect()
        };
        assert_eq!(confirm(&drain(&mut e)), vec![(0, false), (1, true)]);
        // A redirect of the confirmed branch rings in its leg: confirmed too.
        e.branch_redirected(1, 302, vec![device("c", "c1")], secs(t0, 1));
        assert_eq!(confirm(&drain(&mut e)), vec![(2, true)]);
        // A confirmed branch that fails (not confirmed) leaves the others ringing.
        e.branch_failed(2, 480, secs(t0, 2));
        assert_eq!(e.phase(), &Phase::Routing);
        assert!(cancelled(&drain(&mut e)).is_empty());
    }

    fn device(user: &str, device: &str) -> BranchTarget {
        BranchTarget::Device {
            user: user.into(),
            device: device.into(),
        }
    }

    #[test]
    fn a_redirect_rings_its_new_targets_in_the_leg_once_each_and_not_too_deep() {
        let t0 = Instant::now();
        let p = plan(vec![ring(
            vec![person("a", &["a1"], 0, 20)],
            20,
            [Next::Final(408), Next::Final(486), Next::Final(480)],
        )]);
        let mut e = Execution::new(p, Limits::default(), t0);
        drain(&mut e);
        // a1 redirects to b1 and to itself (already rung: left out).
        let n = e.branch_redirected(
            0,
            302,
            vec![device("b", "b1"), device("a", "a1")],
            secs(t0, 1),
        );
        assert_eq!(n, 1);
        assert_eq!(started(&drain(&mut e)), vec![(1, "b1".to_string())]);
        // b1 redirects to c1: depth 2, still followed; c1 redirecting again is too deep.
        assert_eq!(
            e.branch_redirected(1, 302, vec![device("c", "c1")], secs(t0, 2)),
            1
        );
        assert_eq!(started(&drain(&mut e)), vec![(2, "c1".to_string())]);
        assert_eq!(
            e.branch_redirected(2, 302, vec![device("d", "d1")], secs(t0, 3)),
            0
        );
        // That last one counts as a failure: with nothing left ringing, the call ends with
        // the best response — the 302s followed are no candidates, the last one is.
        let c = drain(&mut e);
        assert_eq!(c, vec![Command::Relay { branch: 2 }], "{:?}", e.history());
        assert_eq!(e.phase(), &Phase::Ended);
    }

    #[test]
    fn a_redirect_with_nothing_to_follow_is_a_failure_and_its_fan_out_is_bounded() {
        let t0 = Instant::now();
        let p = plan(vec![ring(
            vec![person("a", &["a1"], 0, 20)],
            20,
            [Next::Final(408), Next::Final(486), Next::Final(480)],
        )]);
        let mut e = Execution::new(p.clone(), Limits::default(), t0);
        drain(&mut e);
        assert_eq!(e.branch_redirected(0, 302, Vec::new(), secs(t0, 1)), 0);
        assert_eq!(drain(&mut e), vec![Command::Relay { branch: 0 }]);
        let mut e = Execution::new(p, Limits::default(), t0);
        drain(&mut e);
        let many: Vec<BranchTarget> = (0..9).map(|i| device("b", &format!("b{i}"))).collect();
        assert_eq!(
            e.branch_redirected(0, 300, many, secs(t0, 1)),
            MAX_REDIRECT_TARGETS
        );
        assert_eq!(started(&drain(&mut e)).len(), MAX_REDIRECT_TARGETS);
        // An answer among them answers the call.
        e.branch_answered(3, secs(t0, 2));
        assert_eq!(e.phase(), &Phase::Answered { branch: 3 });
    }

    #[test]
    fn hunt_rings_one_after_another_and_times_out_to_voicemail() {
        let t0 = Instant::now();
        let p = plan(vec![
            ring(
                vec![person("a", &["a1"], 0, 15), person("b", &["b1"], 15, 30)],
                30,
                TO_VM,
            ),
            voicemail(),
        ]);
        let mut e = Execution::new(p, Limits::default(), t0);
        assert_eq!(started(&drain(&mut e)), vec![(0, "a1".to_string())]);
        assert_eq!(e.poll_timeout(), Some(secs(t0, 15)));
        e.handle_timeout(secs(t0, 15));
        let c = drain(&mut e);
        assert_eq!(cancelled(&c), vec![(0, CancelCause::NoAnswer)]);
        assert_eq!(started(&c), vec![(1, "b1".to_string())]);
        e.branch_failed(0, 487, secs(t0, 15));
        assert!(drain(&mut e).is_empty());
        e.handle_timeout(secs(t0, 30));
        let c = drain(&mut e);
        assert_eq!(cancelled(&c), vec![(1, CancelCause::NoAnswer)]);
        assert_eq!(started(&c), vec![(2, "sip:vm@127.0.0.1:5090".to_string())]);
        e.branch_answered(2, secs(t0, 31));
        assert_eq!(e.phase(), &Phase::Answered { branch: 2 });
        assert_eq!(
            e.history(),
            &[
                "step 1: no answer after 30 s",
                "step 2: to voicemail vm",
                "step 2: answered"
            ]
        );
    }

    #[test]
    fn a_busy_member_of_a_hunt_moves_it_on_at_once() {
        let t0 = Instant::now();
        let p = plan(vec![ring(
            vec![person("a", &["a1"], 0, 15), person("b", &["b1"], 15, 30)],
            30,
            [Next::Final(408), Next::Final(486), Next::Final(480)],
        )]);
        let mut e = Execution::new(p, Limits::default(), t0);
        drain(&mut e);
        e.branch_failed(0, 486, secs(t0, 2));
        let c = drain(&mut e);
        assert_eq!(started(&c), vec![(1, "b1".to_string())], "no dead air");
        // b's window is shifted with the timeline: it rings its full 15 s.
        assert_eq!(e.poll_timeout(), Some(secs(t0, 17)));
        e.handle_timeout(secs(t0, 17));
        let c = drain(&mut e);
        assert_eq!(cancelled(&c), vec![(1, CancelCause::NoAnswer)]);
        // Plan exhausted: the busy answer wins over the timeout.
        assert_eq!(c.last(), Some(&Command::Relay { branch: 0 }));
    }

    #[test]
    fn everyone_busy_takes_the_busy_path() {
        let t0 = Instant::now();
        let p = plan(vec![
            ring(
                vec![person("a", &["a1", "a2"], 0, 20)],
                20,
                [Next::Final(408), Next::Step(1), Next::Final(480)],
            ),
            voicemail(),
        ]);
        let mut e = Execution::new(p, Limits::default(), t0);
        drain(&mut e);
        e.branch_failed(0, 486, secs(t0, 1));
        assert!(started(&drain(&mut e)).is_empty(), "a2 still rings");
        e.branch_failed(1, 480, secs(t0, 1));
        let c = drain(&mut e);
        assert_eq!(started(&c), vec![(2, "sip:vm@127.0.0.1:5090".to_string())]);
    }

    #[test]
    fn nobody_reachable_takes_the_unavailable_path() {
        let t0 = Instant::now();
        let p = plan(vec![ring(
            vec![person("a", &["a1"], 0, 20), person("b", &[], 0, 20)],
            20,
            [Next::Final(408), Next::Final(486), Next::Final(404)],
        )]);
        let mut e = Execution::new(p, Limits::default(), t0);
        drain(&mut e);
        e.branch_failed(0, 503, secs(t0, 0));
        let c = drain(&mut e);
        // 503 and the plan's 404: 404 is the better answer (§16.7).
        assert_eq!(
            c,
            vec![Command::Respond {
                code: 404,
                reason: None
            }]
        );
    }

    #[test]
    fn caller_cancel_stops_every_branch() {
        let t0 = Instant::now();
        let p = plan(vec![ring(
            vec![person("a", &["a1"], 0, 15), person("b", &["b1"], 5, 30)],
            30,
            TO_VM,
        )]);
        let mut e = Execution::new(p, Limits::default(), t0);
        drain(&mut e);
        e.handle_timeout(secs(t0, 5));
        drain(&mut e);
        e.caller_cancelled(secs(t0, 6));
        let c = drain(&mut e);
        assert_eq!(
            cancelled(&c),
            vec![
                (0, CancelCause::CallerCancelled),
                (1, CancelCause::CallerCancelled)
            ]
        );
        assert_eq!(e.phase(), &Phase::Ended);
        assert_eq!(e.poll_timeout(), None);
        // Their 487s change nothing.
        e.branch_failed(0, 487, secs(t0, 6));
        e.branch_failed(1, 487, secs(t0, 6));
        assert!(drain(&mut e).is_empty());
        assert!(!e.has_live_branches());
    }

    fn message(name: &str, next: Next) -> Step {
        Step {
            action: Action::Message {
                message: Message::Named(name.into()),
            },
            on_no_answer: next.clone(),
            on_busy: next.clone(),
            on_unavailable: next,
            why: String::new(),
        }
    }

    fn reject(code: u16) -> Step {
        Step {
            action: Action::Reject {
                code,
                reason: "In a meeting".into(),
            },
            on_no_answer: Next::Final(code),
            on_busy: Next::Final(code),
            on_unavailable: Next::Final(code),
            why: String::new(),
        }
    }

    #[test]
    fn a_message_step_plays_then_the_plan_goes_on_whether_played_or_skipped() {
        let t0 = Instant::now();
        let p = plan(vec![message("meeting", Next::Step(1)), reject(480)]);
        let mut e = Execution::new(p.clone(), Limits::default(), t0);
        assert_eq!(started(&drain(&mut e)), vec![(0, "message meeting".into())]);
        // Bounded like any step without a ring time of its own.
        assert_eq!(e.poll_timeout(), Some(secs(t0, 180)));
        e.handle_timeout(secs(t0, 5));
        assert!(drain(&mut e).is_empty(), "it plays until it is over");
        e.media_ended(0, "played", secs(t0, 6));
        assert_eq!(
            drain(&mut e),
            vec![Command::Respond {
                code: 480,
                reason: Some("In a meeting".into())
            }]
        );
        assert_eq!(e.history()[0], "step 1: message meeting played");
        assert!(!e.has_live_branches());

        // Skipped at once: the same path, the history says why.
        let mut e = Execution::new(p.clone(), Limits::default(), t0);
        drain(&mut e);
        e.media_ended(0, "skipped: no SDP offer", t0);
        assert!(matches!(
            drain(&mut e)[..],
            [Command::Respond { code: 480, .. }]
        ));
        assert_eq!(
            e.history()[0],
            "step 1: message meeting skipped: no SDP offer"
        );

        // Never over: the step's bound ends it, the message is stopped.
        let mut e = Execution::new(p, Limits::default(), t0);
        drain(&mut e);
        e.handle_timeout(secs(t0, 180));
        let c = drain(&mut e);
        assert_eq!(cancelled(&c), vec![(0, CancelCause::NoAnswer)]);
        assert!(matches!(c.last(), Some(Command::Respond { code: 480, .. })));
        // The message's final report changes nothing now.
        e.media_ended(0, "stopped", secs(t0, 180));
        assert!(drain(&mut e).is_empty());
    }

    #[test]
    fn a_ring_steps_message_plays_before_its_legs_ring_and_takes_no_part_in_the_outcome() {
        let t0 = Instant::now();
        // Own devices ring alone for 5 s, then the message, then the forward target.
        let mut step = ring(
            vec![person("a", &["a1"], 0, 25), person("f", &["f1"], 5, 25)],
            25,
            TO_VM,
        );
        if let Action::Ring { announcements, .. } = &mut step.action {
            announcements.push((5, "fwd".into()));
        }
        let mut e = Execution::new(plan(vec![step.clone(), voicemail()]), Limits::default(), t0);
        assert_eq!(started(&drain(&mut e)), vec![(0, "a1".into())]);
        assert_eq!(e.poll_timeout(), Some(secs(t0, 5)));
        e.handle_timeout(secs(t0, 5));
        // The message starts; f waits for it (the timeline stands still), a rings on.
        assert_eq!(started(&drain(&mut e)), vec![(1, "message fwd".into())]);
        assert_eq!(e.poll_timeout(), Some(secs(t0, 5 + 180)), "only the bound");
        e.handle_timeout(secs(t0, 9));
        assert!(drain(&mut e).is_empty());
        // Played after 4 s: f rings now, and the step ends 20 s later (at 29 s).
        e.media_ended(1, "played", secs(t0, 9));
        assert_eq!(started(&drain(&mut e)), vec![(2, "f1".into())]);
        assert_eq!(e.poll_timeout(), Some(secs(t0, 29)));
        // Both busy: the step is busy (the message counts for nothing).
        e.branch_failed(0, 486, secs(t0, 10));
        e.branch_failed(2, 486, secs(t0, 10));
        let c = drain(&mut e);
        assert_eq!(started(&c), vec![(3, "sip:vm@127.0.0.1:5090".into())]);
        assert!(
            e.history()
                .iter()
                .any(|h| h == "step 1: message fwd played"),
            "{:?}",
            e.history()
        );

        // a busy while the message plays: f never rang, the step waits for the message;
        // a message skipped at once holds nothing.
        let mut e = Execution::new(plan(vec![step, voicemail()]), Limits::default(), t0);
        drain(&mut e);
        e.handle_timeout(secs(t0, 5));
        drain(&mut e);
        e.branch_failed(0, 486, secs(t0, 6));
        assert!(drain(&mut e).is_empty(), "f is still to ring");
        e.media_ended(1, "skipped: no SDP offer", secs(t0, 6));
        assert_eq!(started(&drain(&mut e)), vec![(2, "f1".into())]);
        e.branch_failed(2, 486, secs(t0, 7));
        let c = drain(&mut e);
        assert_eq!(started(&c), vec![(3, "sip:vm@127.0.0.1:5090".into())]);
        assert!(
            e.history().iter().any(|h| h == "step 1: busy after 6 s"),
            "{:?}",
            e.history()
        );
    }

    #[test]
    fn a_message_that_never_ends_is_stopped_and_the_legs_ring() {
        let t0 = Instant::now();
        let mut step = ring(vec![person("f", &["f1"], 0, 20)], 20, TO_VM);
        if let Action::Ring { announcements, .. } = &mut step.action {
            announcements.push((0, "fwd".into()));
        }
        let mut e = Execution::new(plan(vec![step, voicemail()]), Limits::default(), t0);
        assert_eq!(started(&drain(&mut e)), vec![(0, "message fwd".into())]);
        e.handle_timeout(secs(t0, 180));
        let c = drain(&mut e);
        assert_eq!(cancelled(&c), vec![(0, CancelCause::NoAnswer)]);
        assert_eq!(started(&c), vec![(1, "f1".into())]);
    }

    #[test]
    fn reject_and_final_start() {
        let t0 = Instant::now();
        let p = plan(vec![Step {
            action: Action::Reject {
                code: 480,
                reason: "In a meeting".into(),
            },
            on_no_answer: Next::Final(480),
            on_busy: Next::Final(480),
            on_unavailable: Next::Final(480),
            why: String::new(),
        }]);
        let mut e = Execution::new(p, Limits::default(), t0);
        assert_eq!(
            drain(&mut e),
            vec![Command::Respond {
                code: 480,
                reason: Some("In a meeting".into())
            }]
        );
        let mut e = Execution::new(
            RoutePlan {
                start: Next::Final(404),
                steps: Vec::new(),
                notes: Vec::new(),
            },
            Limits::default(),
            t0,
        );
        assert_eq!(
            drain(&mut e),
            vec![Command::Respond {
                code: 404,
                reason: None
            }]
        );
    }

    #[test]
    fn cumulative_and_ring_own_first_keep_earlier_legs_ringing() {
        let t0 = Instant::now();
        // Own devices 0..30, forward target from 10 s on.
        let p = plan(vec![ring(
            vec![person("a", &["a1"], 0, 30), person("f", &["f1"], 10, 30)],
            30,
            TO_VM,
        )]);
        let mut e = Execution::new(p, Limits::default(), t0);
        assert_eq!(started(&drain(&mut e)).len(), 1);
        e.handle_timeout(secs(t0, 10));
        let c = drain(&mut e);
        assert_eq!(started(&c), vec![(1, "f1".to_string())]);
        assert!(cancelled(&c).is_empty(), "own devices keep ringing");
        e.branch_answered(1, secs(t0, 12));
        assert_eq!(
            cancelled(&drain(&mut e)),
            vec![(0, CancelCause::CompletedElsewhere)]
        );
    }

    #[test]
    fn unbounded_steps_are_bounded_by_max_ring() {
        let t0 = Instant::now();
        let p = plan(vec![voicemail()]);
        let limits = Limits {
            max_ring: Duration::from_secs(60),
            ..Limits::default()
        };
        let mut e = Execution::new(p, limits, t0);
        drain(&mut e);
        assert_eq!(e.poll_timeout(), Some(secs(t0, 60)));
        e.handle_timeout(secs(t0, 60));
        let c = drain(&mut e);
        assert_eq!(cancelled(&c), vec![(0, CancelCause::NoAnswer)]);
        assert_eq!(
            c.last(),
            Some(&Command::Respond {
                code: 480,
                reason: None
            })
        );
    }

    #[test]
    fn a_plan_that_loops_ends() {
        let t0 = Instant::now();
        let mut p = plan(vec![Step {
            action: Action::Message {
                message: Message::Named("m".into()),
            },
            on_no_answer: Next::Step(0),
            on_busy: Next::Step(0),
            on_unavailable: Next::Step(0),
            why: String::new(),
        }]);
        p.start = Next::Step(0);
        let mut e = Execution::new(p, Limits::default(), t0);
        // Every message skipped at once: the plan would go round for ever.
        let mut last = None;
        for _ in 0..1000 {
            match e.poll_command() {
                Some(Command::Start(s)) => e.media_ended(s.branch, "skipped", t0),
                Some(c) => last = Some(c),
                None => break,
            }
        }
        assert_eq!(
            last,
            Some(Command::Respond {
                code: 482,
                reason: None
            })
        );
    }

    #[test]
    fn branch_limit_is_kept() {
        let t0 = Instant::now();
        let devices: Vec<String> = (0..10).map(|i| format!("d{i}")).collect();
        let refs: Vec<&str> = devices.iter().map(String::as_str).collect();
        let p = plan(vec![ring(vec![person("a", &refs, 0, 20)], 20, TO_VM)]);
        let limits = Limits {
            max_branches: 4,
            ..Limits::default()
        };
        let mut e = Execution::new(p, limits, t0);
        assert_eq!(started(&drain(&mut e)).len(), 4);
    }

    /// Menu `main`: key 1 → step 1, key 2 → step 2; no choice → `default`.
    fn menu(default: Next) -> Step {
        let option = |key, target: &str, next| switchboard_policy::MenuOption {
            key,
            target: target.into(),
            next,
        };
        Step {
            action: Action::Menu {
                menu: Menu {
                    id: "main".into(),
                    prompt: "main_menu".into(),
                    invalid: Some("invalid_option".into()),
                    timeout_secs: 5,
                    retries: 2,
                    options: vec![
                        option('1', "user:bob", Next::Step(1)),
                        option('2', "team:sales", Next::Step(2)),
                        option('0', "menu:main", Next::Step(0)),
                    ],
                },
            },
            on_no_answer: default.clone(),
            on_busy: default.clone(),
            on_unavailable: default,
            why: String::new(),
        }
    }

    fn announcement(id: &str, answer: bool, next: Next) -> Step {
        Step {
            action: Action::Announcement {
                id: id.into(),
                message: Message::Named(id.into()),
                answer,
            },
            on_no_answer: next.clone(),
            on_busy: next.clone(),
            on_unavailable: next,
            why: String::new(),
        }
    }

    fn menu_plan() -> RoutePlan {
        plan(vec![
            menu(Next::Final(480)),
            ring(vec![person("bob", &["bob1"], 0, 20)], 20, TO_VM),
            ring(vec![person("carol", &["carol1"], 0, 20)], 20, TO_VM),
        ])
    }

    #[test]
    fn a_key_of_the_menu_goes_on_to_its_option() {
        let t0 = Instant::now();
        let mut e = Execution::new(menu_plan(), Limits::default(), t0);
        assert_eq!(started(&drain(&mut e)), vec![(0, "menu main".into())]);
        // The menu is bounded as any step without a ring time of its own.
        assert_eq!(e.poll_timeout(), Some(secs(t0, 180)));
        e.menu_chosen(0, '2', secs(t0, 4));
        // carol's step rings with the caller's INVITE: nobody answered the caller yet.
        assert_eq!(started(&drain(&mut e)), vec![(1, "carol1".into())]);
        assert_eq!(e.step(), Some(2));
        assert_eq!(e.phase(), &Phase::Routing);
        assert!(
            e.history()
                .contains(&"step 1: menu main: key 2 → team:sales".to_string()),
            "{:?}",
            e.history()
        );
        // The menu branch is over: a second key, or its session's end, changes nothing.
        e.menu_chosen(0, '1', secs(t0, 5));
        e.media_ended(0, "closed", secs(t0, 5));
        assert!(drain(&mut e).is_empty());
        assert_eq!(e.step(), Some(2));
        e.branch_answered(1, secs(t0, 8));
        assert_eq!(e.phase(), &Phase::Answered { branch: 1 });
    }

    #[test]
    fn a_menu_without_a_choice_goes_to_its_default() {
        let t0 = Instant::now();
        let mut p = menu_plan();
        p.steps[0] = menu(Next::Step(1));
        let mut e = Execution::new(p, Limits::default(), t0);
        drain(&mut e);
        // The retries are used up (the menu's own count): its default, bob.
        e.media_ended(0, "no key after 3 prompts", secs(t0, 25));
        assert_eq!(started(&drain(&mut e)), vec![(1, "bob1".into())]);
        let h = e.history();
        assert!(
            h.contains(&"step 1: menu main: no key after 3 prompts → default".to_string()),
            "{h:?}"
        );
        assert!(
            h.contains(&"step 1: no choice after 25 s".to_string()),
            "{h:?}"
        );

        // Without a default: the call ends with the menu's code.
        let mut e = Execution::new(menu_plan(), Limits::default(), t0);
        drain(&mut e);
        e.media_ended(0, "skipped: no SDP offer", secs(t0, 0));
        assert_eq!(
            drain(&mut e),
            vec![Command::Respond {
                code: 480,
                reason: None
            }]
        );
    }

    #[test]
    fn a_key_with_no_option_changes_nothing_here_and_a_menu_that_never_ends_is_stopped() {
        let t0 = Instant::now();
        let mut e = Execution::new(menu_plan(), Limits::default(), t0);
        drain(&mut e);
        // The menu plays "invalid" and its prompt again itself; the plan waits.
        e.menu_chosen(0, '7', secs(t0, 3));
        assert!(drain(&mut e).is_empty());
        assert_eq!(e.step(), Some(0));
        // A menu whose session never reports is stopped at the step's bound: default.
        e.handle_timeout(secs(t0, 180));
        assert_eq!(
            drain(&mut e),
            vec![
                Command::Cancel {
                    branch: 0,
                    cause: CancelCause::NoAnswer
                },
                Command::Respond {
                    code: 480,
                    reason: None
                }
            ]
        );
    }

    #[test]
    fn a_menu_that_leads_back_to_itself_is_bounded_by_the_steps_entered() {
        let t0 = Instant::now();
        let mut e = Execution::new(menu_plan(), Limits::default(), t0);
        let mut last = None;
        for _ in 0..1000 {
            match e.poll_command() {
                // The caller presses 0 ("main menu") for ever.
                Some(Command::Start(s)) => e.menu_chosen(s.branch, '0', t0),
                Some(c) => last = Some(c),
                None => break,
            }
        }
        assert_eq!(
            last,
            Some(Command::Respond {
                code: 482,
                reason: None
            })
        );
    }

    #[test]
    fn a_caller_who_hangs_up_in_a_menu_cancels_it() {
        let t0 = Instant::now();
        let mut e = Execution::new(menu_plan(), Limits::default(), t0);
        drain(&mut e);
        e.caller_cancelled(secs(t0, 2));
        assert_eq!(
            cancelled(&drain(&mut e)),
            vec![(0, CancelCause::CallerCancelled)]
        );
        e.menu_chosen(0, '1', secs(t0, 3));
        assert!(drain(&mut e).is_empty());
        assert_eq!(e.phase(), &Phase::Ended);
    }

    #[test]
    fn an_answered_announcement_answers_then_plays_the_next_one_in_the_same_call_then_hangs_up() {
        let t0 = Instant::now();
        let p = plan(vec![
            announcement("closed", true, Next::Step(1)),
            announcement("bye", true, Next::Final(480)),
        ]);
        let mut e = Execution::new(p, Limits::default(), t0);
        assert_eq!(
            started(&drain(&mut e)),
            vec![(0, "announcement closed".into())]
        );
        e.local_answered(0, secs(t0, 1));
        assert_eq!(e.phase(), &Phase::Answered { branch: 0 });
        // Answered: no ring-time bound; no final response.
        assert_eq!(e.poll_timeout(), None);
        assert!(drain(&mut e).is_empty());
        e.media_ended(0, "played", secs(t0, 5));
        // The next announcement, answering nothing again.
        assert_eq!(
            started(&drain(&mut e)),
            vec![(1, "announcement bye".into())]
        );
        assert_eq!(e.phase(), &Phase::Answered { branch: 1 });
        e.media_ended(1, "played", secs(t0, 8));
        assert_eq!(drain(&mut e), vec![Command::HangUp { branch: 1 }]);
        assert!(
            e.history()
                .iter()
                .any(|h| h == "step 1: answered by announcement closed"),
            "{:?}",
            e.history()
        );
        assert_eq!(e.history().last().map(String::as_str), Some("hung up"));
        // Nothing more after the hang-up.
        e.media_ended(1, "played", secs(t0, 9));
        assert!(drain(&mut e).is_empty());
    }

    #[test]
    fn an_announcement_that_refuses_the_caller_ends_the_call_with_its_own_response() {
        let t0 = Instant::now();
        let p = plan(vec![announcement("closed", false, Next::Final(480))]);
        let mut e = Execution::new(p, Limits::default(), t0);
        drain(&mut e);
        e.local_refused(0, 488, t0);
        // Relayed as the branch's (ours), not competing with the plan's 480.
        assert_eq!(drain(&mut e), vec![Command::Relay { branch: 0 }]);
        assert_eq!(e.phase(), &Phase::Ended);
    }
}
