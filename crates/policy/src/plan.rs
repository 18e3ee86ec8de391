//! The planner: `plan(&Policy, &Call, &View, now) -> RoutePlan`, a pure function.
//!
//! A plan is a bounded list of steps. A `Ring` step is a timeline: each leg rings from its
//! `start` to its `stop` second, so one step expresses every strategy — all at once, one
//! after another, cumulative, and "own devices first, then the forward targets too". Each
//! step says where the call goes when nobody answers, when everyone is busy, and when
//! nobody can be reached; every path ends in a final outcome.

use crate::model::*;
use crate::view::{Call, Caller, GroupMemory, PersonView, ViewSource};
use chrono::{DateTime, Datelike, Timelike, Utc};
use std::fmt;

/// Most steps a plan holds; a chain longer than this ends in a rejection (a menu plans
/// every one of its options, so a plan with menus holds more than a chain of ring steps).
pub const MAX_STEPS: usize = 32;
/// Most legs in one ring step.
pub const MAX_LEGS: usize = 64;

/// Where a step's outcome leads.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Next {
    /// Go on with the step at this index.
    Step(usize),
    /// End the call with this final response (486 busy, 480 unavailable, 408…).
    Final(u16),
}

/// What a leg rings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LegTarget {
    /// Registered devices of a person (their binding ids).
    Person { user: String, devices: Vec<String> },
    /// An external number, out through a trunk.
    External {
        number: String,
        trunk: Option<String>,
    },
}

/// Which caller ID the rung party sees.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallerIdRule {
    /// The original caller's.
    Caller,
    /// A given number and display name (forwarding shown as the user's own, outbound).
    Number {
        number: String,
        display: Option<String>,
    },
}

/// One branch of a ring step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leg {
    pub target: LegTarget,
    /// Seconds after the step starts that this leg begins ringing.
    pub start: u32,
    /// Seconds after the step starts that this leg stops ringing (cancelled).
    pub stop: u32,
    pub caller_id: CallerIdRule,
    /// Part of a team call: the member's own no-answer handling never applies.
    pub team_call: bool,
    /// Why this leg rings, in plain words.
    pub why: String,
    /// A forward target of a person who asks for confirmation
    /// (`[users.ID.forwarding] require_confirmation`): the daemon calls the target itself,
    /// and the caller is connected only once the target has pressed 1 (the person's own
    /// devices never need it).
    pub confirm: bool,
}

/// What a step does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Ring legs along a timeline; the step ends after `duration` seconds, or when every
    /// leg has failed. `strategy` is informative (the windows already encode it).
    Ring {
        legs: Vec<Leg>,
        duration: u32,
        strategy: RingStrategy,
        /// The group whose memory records who answered (team id or `forward:<user>`).
        memory_group: Option<String>,
        /// Named messages played to the caller at a given second (e.g. before forwarding),
        /// as early media; legs due to start meanwhile wait for the message to end.
        /// Skipped (with a log line) when they cannot be played: no media, no SDP offer in
        /// the INVITE, no codec in common.
        announcements: Vec<(u32, String)>,
    },
    /// Play a message to the caller (early media), then go on to `on_no_answer` (also
    /// when it cannot be played: then it is skipped with a log line).
    Message { message: Message },
    /// The daemon's own IVR menu (early media): the prompt plays, the caller presses a key
    /// (RFC 4733), and the call goes on to that key's option. When the retries are used up
    /// without a choice — or the menu cannot be played (no media, no SDP offer, no codec in
    /// common) — it goes on to `on_no_answer`, the menu's default.
    Menu { menu: Menu },
    /// An announcement the daemon serves itself (an `announcement` destination without
    /// `uri`): the call is for it. Played as early media (183), or answering the call (200
    /// OK, `answer`), then on to `on_no_answer` (after an answered one, only another
    /// message of the daemon's own; anything else hangs up with a BYE). Unlike a
    /// [`Action::Message`], a caller whose offer cannot be answered is refused: 488 (no
    /// codec in common), 400 (unreadable SDP), 503 (as many sessions as allowed).
    Announcement {
        id: String,
        message: Message,
        answer: bool,
    },
    /// The daemon's own mailbox of a person or team: their greeting plays (answering the
    /// call), then what the caller says is recorded as a message. When it cannot take a
    /// message (full, no media, no codec in common) the call goes on to `on_no_answer`.
    Voicemail {
        mailbox: MailboxOwner,
        reason: VoicemailReason,
    },
    /// The mailbox by phone: the daemon answers and the caller hears and manages a
    /// mailbox's messages and recordings. Planned by the daemon itself for its feature
    /// code (`[features] voicemail`) and its access number (`[voicemail] access_number`),
    /// never by the policy. `mailbox`: the caller's own (or their team's), reached without
    /// a PIN; else `number`: the mailbox number dialled after the feature code, its PIN
    /// asked; neither: the number and the PIN are asked.
    MailboxPhone {
        mailbox: Option<MailboxOwner>,
        number: Option<String>,
    },
    /// Hand the call to a destination of the media server.
    Destination {
        id: String,
        kind: DestinationKind,
        uri: String,
        /// A voicemail box reached from a person's or team's setting: whose, and why — so
        /// that the media server knows whose mailbox the call is for (RFC 5806
        /// `Diversion`, RFC 7044 `History-Info`).
        diverted: Option<(MailboxOwner, VoicemailReason)>,
    },
    /// Refuse the call.
    Reject { code: u16, reason: String },
}

/// Why a call reached a mailbox: kept with the message.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum VoicemailReason {
    /// Nobody answered.
    NoAnswer,
    /// The person was in another call, or everyone was.
    Busy,
    /// Outside office hours, or a status that follows out-of-hours routing.
    OutOfHours,
    /// Nobody could be rung (unavailable, no registered device).
    Unavailable,
    /// The person's active profile (its id) sends calls there.
    Profile(String),
    /// The call was for the mailbox itself (a DID, a menu's key, `voicemail:ID`).
    Direct,
}

impl VoicemailReason {
    /// The reason's word (API, call records): `no_answer`, `busy`, `out_of_hours`,
    /// `unavailable`, `profile`, `direct`.
    pub fn as_str(&self) -> &'static str {
        match self {
            VoicemailReason::NoAnswer => "no_answer",
            VoicemailReason::Busy => "busy",
            VoicemailReason::OutOfHours => "out_of_hours",
            VoicemailReason::Unavailable => "unavailable",
            VoicemailReason::Profile(_) => "profile",
            VoicemailReason::Direct => "direct",
        }
    }
}

impl fmt::Display for VoicemailReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VoicemailReason::NoAnswer => f.write_str("no answer"),
            VoicemailReason::Busy => f.write_str("busy"),
            VoicemailReason::OutOfHours => f.write_str("out of hours"),
            VoicemailReason::Unavailable => f.write_str("unavailable"),
            VoicemailReason::Profile(p) => write!(f, "profile {p}"),
            VoicemailReason::Direct => f.write_str("dialled"),
        }
    }
}

/// A menu step: what the caller hears and where each key leads.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Menu {
    /// The destination's id (`[destinations.ID]`).
    pub id: String,
    /// The message that says the options.
    pub prompt: String,
    /// The message played on a key with no option (None: the prompt again only).
    pub invalid: Option<String>,
    /// Seconds the menu waits for a key once its prompt has been played.
    pub timeout_secs: u32,
    /// How often the prompt is played again after a timeout or a key with no option.
    pub retries: u32,
    /// Each key and where it leads.
    pub options: Vec<MenuOption>,
}

/// One key of a menu.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MenuOption {
    /// `0`–`9`, `*` or `#`.
    pub key: char,
    /// The target as the policy writes it (`team:sales`), for explain and the history.
    pub target: String,
    /// Where the call goes when the key is pressed.
    pub next: Next,
}

impl Menu {
    /// Where key `key` leads, if the menu has it.
    pub fn option(&self, key: char) -> Option<&MenuOption> {
        self.options.iter().find(|o| o.key == key)
    }
}

/// What a message says.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Message {
    /// A prompt by name: the operator's recording, or a generated phrase.
    Named(String),
    /// A person's active profile refuses calls: who, what the profile says, until when.
    Profile(ProfileMessage),
}

/// "Extension 1002 is in a meeting until fourteen thirty": the profile announcement.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ProfileMessage {
    /// The person called (a recorded name prompt `name_<user>` is said when there is one).
    pub user: String,
    /// Their extension, said digit by digit otherwise.
    pub extension: String,
    /// The active profile's id (which phrase it says).
    pub profile: String,
    /// When the profile ends, on the callee's clock; None: no end time.
    pub until: Option<LocalTime>,
}

/// A moment on the callee's clock (in their time zone), as an announcement says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LocalTime {
    pub hour: u8,
    pub minute: u8,
    /// Days after the call's day (0: today, 1: tomorrow…).
    pub days_ahead: u32,
    /// 1 = Monday … 7 = Sunday (ISO 8601).
    pub weekday: u8,
    /// Day of the month, 1–31.
    pub day: u8,
    /// 1–12.
    pub month: u8,
}

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Message::Named(name) => write!(f, "{name}"),
            Message::Profile(p) => {
                write!(
                    f,
                    "the announcement of {}'s profile {}",
                    p.extension, p.profile
                )?;
                if let Some(t) = p.until {
                    write!(f, " until ")?;
                    match t.days_ahead {
                        0 => {}
                        1 => write!(f, "tomorrow ")?,
                        _ => write!(f, "{:02}-{:02} ", t.month, t.day)?,
                    }
                    write!(f, "{:02}:{:02}", t.hour, t.minute)?;
                }
                Ok(())
            }
        }
    }
}

/// One step of a plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub action: Action,
    pub on_no_answer: Next,
    pub on_busy: Next,
    pub on_unavailable: Next,
    /// Why the call reached this step.
    pub why: String,
}

/// The plan for one call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoutePlan {
    /// Where the call begins: a step, or straight to a final response.
    pub start: Next,
    pub steps: Vec<Step>,
    /// Decisions that did not become steps: who was skipped and why.
    pub notes: Vec<String>,
}

/// What kind of call a target is planned for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Context {
    Direct,
    Team,
}

struct Planner<'a> {
    policy: &'a Policy,
    call: &'a Call,
    view: &'a dyn ViewSource,
    now: DateTime<Utc>,
    steps: Vec<Step>,
    notes: Vec<String>,
    /// Targets already planned on this path, to stop loops validation did not catch.
    visiting: Vec<Target>,
    /// The daemon's own menus planned so far and their steps: a key that leads back to a
    /// menu goes to its step again (the plan stays finite; the executor bounds the steps
    /// a call enters).
    menus: Vec<(String, usize)>,
    /// Whose setting is being planned and why (`voicemail` alone is their mailbox).
    mailbox_for: Option<(MailboxOwner, VoicemailReason)>,
}

/// Plans a call. Pure: reads only its arguments.
pub fn plan(policy: &Policy, call: &Call, view: &dyn ViewSource, now: DateTime<Utc>) -> RoutePlan {
    let mut p = Planner {
        policy,
        call,
        view,
        now,
        steps: Vec::new(),
        notes: Vec::new(),
        visiting: Vec::new(),
        menus: Vec::new(),
        mailbox_for: None,
    };
    let start = p.entry();
    RoutePlan {
        start,
        steps: p.steps,
        notes: p.notes,
    }
}

/// The usual reason phrase of a final response code.
pub fn reason_phrase(code: u16) -> &'static str {
    match code {
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        480 => "Temporarily Unavailable",
        482 => "Loop Detected",
        486 => "Busy Here",
        500 => "Server Internal Error",
        503 => "Service Unavailable",
        603 => "Decline",
        _ => "Call Rejected",
    }
}

impl Planner<'_> {
    fn note(&mut self, s: impl Into<String>) {
        self.notes.push(s.into());
    }

    fn push(&mut self, step: Step) -> Next {
        if self.steps.len() >= MAX_STEPS {
            self.note("the plan reached its step limit; the call ends here");
            return Next::Final(480);
        }
        self.steps.push(step);
        Next::Step(self.steps.len() - 1)
    }

    /// Reserves a step slot to fill once its successors are known.
    fn reserve(&mut self) -> Option<usize> {
        if self.steps.len() >= MAX_STEPS {
            self.note("the plan reached its step limit; the call ends here");
            return None;
        }
        self.steps.push(Step {
            action: Action::Reject {
                code: 500,
                reason: "unfinished".into(),
            },
            on_no_answer: Next::Final(500),
            on_busy: Next::Final(500),
            on_unavailable: Next::Final(500),
            why: String::new(),
        });
        Some(self.steps.len() - 1)
    }

    fn entry(&mut self) -> Next {
        let to = self.call.to.trim().to_string();
        match &self.call.from {
            Caller::Trunk { trunk, .. } => {
                let trunk = trunk.clone();
                match self.policy.did(&to) {
                    Some((t, did)) if t.id == trunk => {
                        let did = did.clone();
                        if let (false, Some(ooh)) =
                            (self.is_open(did.schedule.as_deref()), &did.out_of_hours)
                        {
                            self.note(format!("DID {to}: outside office hours"));
                            return self.target(
                                ooh,
                                Context::Direct,
                                format!("DID {to} is out of hours"),
                            );
                        }
                        self.note(format!(
                            "DID {to} of trunk {trunk} routes to {}",
                            did.target
                        ));
                        self.target(&did.target, Context::Direct, format!("DID {to}"))
                    }
                    _ => {
                        self.note(format!("{to} is not a DID of trunk {trunk}"));
                        Next::Final(404)
                    }
                }
            }
            Caller::User(u) => {
                let u = u.clone();
                match self.resolve_internal(&to) {
                    Some(target) => {
                        self.target(&target, Context::Direct, format!("{u} dialled {to}"))
                    }
                    None => self.outbound(&u, &to),
                }
            }
            Caller::External(_) => match self.resolve_internal(&to) {
                Some(target) => self.target(&target, Context::Direct, format!("dialled {to}")),
                None => {
                    self.note(format!("{to} is no extension, user or DID here"));
                    Next::Final(404)
                }
            },
        }
    }

    fn resolve_internal(&self, to: &str) -> Option<Target> {
        match self.policy.extension(to) {
            Some(ExtensionOwner::User(u)) => return Some(Target::User(u.clone())),
            Some(ExtensionOwner::Team(t)) => return Some(Target::Team(t.clone())),
            None => {}
        }
        if self.policy.user(to).is_some() {
            return Some(Target::User(to.to_string()));
        }
        if let Some(u) = self.policy.sip_user(to) {
            return Some(Target::User(u.to_string()));
        }
        if self.policy.team(to).is_some() {
            return Some(Target::Team(to.to_string()));
        }
        self.policy.did(to).map(|(_, d)| d.target.clone())
    }

    /// A user dialling an external number: out through a trunk with their caller ID (the
    /// trunk's when they have none).
    fn outbound(&mut self, user: &str, number: &str) -> Next {
        let Some(trunk) = self.policy.trunks().find(|t| t.routes(number)) else {
            self.note(format!("no trunk carries {number}"));
            return Next::Final(404);
        };
        let (id, number) = (trunk.id.clone(), trunk.numbers.to_e164(number));
        let caller_id = self.outbound_caller_id(user, trunk);
        let why = format!("{user} calls {number} out through trunk {id}");
        self.external(&number, Some(id), caller_id, why)
    }

    /// The trunk an external number leaves through, and the number in the inside form.
    fn trunk_for(&self, number: &str) -> (Option<String>, String) {
        match self.policy.trunks().find(|t| t.routes(number)) {
            Some(t) => (Some(t.id.clone()), t.numbers.to_e164(number)),
            None => (None, number.to_string()),
        }
    }

    /// A person's active profile: their own version of it, else the policy's.
    /// Unix time `t` on `user`'s clock: in the time zone of their schedule, else UTC.
    fn local_time(&self, user: &User, t: i64) -> Option<LocalTime> {
        let tz: chrono_tz::Tz = user
            .schedule
            .as_deref()
            .and_then(|s| self.policy.schedule(s))
            .and_then(|s| s.timezone.parse().ok())
            .unwrap_or(chrono_tz::UTC);
        let end = DateTime::from_timestamp(t, 0)?.with_timezone(&tz);
        let today = self.now.with_timezone(&tz).date_naive();
        let days_ahead = (end.date_naive() - today).num_days();
        Some(LocalTime {
            hour: end.hour() as u8,
            minute: end.minute() as u8,
            days_ahead: u32::try_from(days_ahead).ok()?,
            weekday: end.weekday().number_from_monday() as u8,
            day: end.day() as u8,
            month: end.month() as u8,
        })
    }

    fn active_profile(&self, pv: &PersonView) -> Option<Profile> {
        pv.own_profile.clone().or_else(|| {
            pv.profile
                .as_ref()
                .and_then(|p| self.policy.profile(p))
                .cloned()
        })
    }

    /// The caller ID a user presents on outbound calls: the active profile's, else the
    /// user's default. The active profile's is the one the person set on their own version
    /// of it ([`PersonView::own_profile`]: its caller ID is there only when they set one,
    /// and they may set only numbers the operator gave them), else the operator's for this
    /// user and profile (`profile_caller_ids`), else the policy profile's.
    ///
    /// [`PersonView::own_profile`]: crate::PersonView::own_profile
    fn outbound_caller_id(&self, user: &str, trunk: &crate::Trunk) -> CallerIdRule {
        let Some(u) = self.policy.user(user) else {
            return CallerIdRule::Caller;
        };
        let pv = self.view.person(user);
        let from_profile = pv.profile.as_ref().and_then(|p| {
            pv.own_profile
                .as_ref()
                .and_then(|own| own.caller_id.clone())
                .or_else(|| u.profile_caller_ids.get(p).cloned())
                .or_else(|| self.policy.profile(p).and_then(|b| b.caller_id.clone()))
        });
        let own = from_profile.or_else(|| u.caller_id.clone());
        match own.or_else(|| trunk.caller_id.clone()) {
            Some(number) => CallerIdRule::Number {
                number,
                display: Some(u.display_name.clone()),
            },
            None => CallerIdRule::Caller,
        }
    }

    /// Plans a target; returns where to go to reach it.
    fn target(&mut self, target: &Target, ctx: Context, why: String) -> Next {
        if let Target::Destination(DestinationKind::Menu, id) = target {
            if let Some((_, slot)) = self.menus.iter().find(|(m, _)| m == id) {
                // Back to a menu already in the plan (a key that says "main menu").
                return Next::Step(*slot);
            }
        }
        if self.visiting.contains(target) || self.visiting.len() > 8 {
            self.note(format!(
                "{target} would be reached again ({why}): the call stops here"
            ));
            return Next::Final(482);
        }
        self.visiting.push(target.clone());
        let next = match target {
            Target::User(u) => self.user(u, ctx, why),
            Target::Team(t) => self.team(t, why),
            Target::Voicemail => match self.mailbox_for.clone() {
                Some((owner, reason)) => self.mailbox(owner, reason, why),
                None => {
                    self.note(format!("{why}: voicemail of nobody in particular"));
                    Next::Final(480)
                }
            },
            Target::Destination(kind, id) => self.destination(*kind, id, why),
            Target::External(n) => {
                let (trunk, n) = self.trunk_for(n);
                self.external(&n, trunk, CallerIdRule::Caller, why)
            }
            Target::Hangup => {
                self.note(format!("{why}: hang up"));
                Next::Final(480)
            }
        };
        self.visiting.pop();
        next
    }

    /// A step that rings one external number through a trunk.
    fn external(
        &mut self,
        number: &str,
        trunk: Option<String>,
        caller_id: CallerIdRule,
        why: String,
    ) -> Next {
        let leg = Leg {
            target: LegTarget::External {
                number: number.to_string(),
                trunk,
            },
            start: 0,
            stop: 0,
            caller_id,
            team_call: false,
            why: why.clone(),
            confirm: false,
        };
        self.push(Step {
            action: Action::Ring {
                legs: vec![leg],
                duration: 0,
                strategy: RingStrategy::RingAll,
                memory_group: None,
                announcements: Vec::new(),
            },
            on_no_answer: Next::Final(408),
            on_busy: Next::Final(486),
            on_unavailable: Next::Final(480),
            why,
        })
    }

    /// Plans `target` as `owner`'s setting, reached for `reason`: `voicemail` alone there
    /// is `owner`'s mailbox.
    fn target_of(
        &mut self,
        target: &Target,
        owner: MailboxOwner,
        reason: VoicemailReason,
        why: String,
    ) -> Next {
        let outer = self.mailbox_for.replace((owner, reason));
        let next = self.target(target, Context::Direct, why);
        self.mailbox_for = outer;
        next
    }

    /// A step that takes a message in `owner`'s mailbox.
    fn mailbox(&mut self, owner: MailboxOwner, reason: VoicemailReason, why: String) -> Next {
        if let Some(problem) = self.policy.mailbox_problem(&owner) {
            self.note(format!("{why}: {problem}"));
            return Next::Final(480);
        }
        self.push(Step {
            action: Action::Voicemail {
                mailbox: owner,
                reason,
            },
            on_no_answer: Next::Final(480),
            on_busy: Next::Final(486),
            on_unavailable: Next::Final(480),
            why,
        })
    }

    fn destination(&mut self, kind: DestinationKind, id: &str, why: String) -> Next {
        if kind == DestinationKind::Voicemail && self.policy.destination(id).is_none() {
            // voicemail:ID without a media server's destination ID: the mailbox of user or
            // team ID (the policy's check made sure it is one of them).
            let owner = if self.policy.user(id).is_some() {
                MailboxOwner::User(id.to_string())
            } else {
                MailboxOwner::Team(id.to_string())
            };
            let reason = self
                .mailbox_for
                .as_ref()
                .map_or(VoicemailReason::Direct, |(_, r)| r.clone());
            return self.mailbox(owner, reason, why);
        }
        let Some(d) = self.policy.destination(id) else {
            self.note(format!("unknown destination {id}"));
            return Next::Final(480);
        };
        if let Some(name) = d.message.clone() {
            // The daemon's own announcement: played, then the call ends or goes on.
            let (answer, next, code) = (d.answer, d.next.clone(), d.code);
            let id = d.id.clone();
            let at = self.push(Step {
                action: Action::Announcement {
                    id,
                    message: Message::Named(name),
                    answer,
                },
                on_no_answer: Next::Final(code),
                on_busy: Next::Final(code),
                on_unavailable: Next::Final(code),
                why: why.clone(),
            });
            if let (Some(next), Next::Step(i)) = (next, &at) {
                let i = *i;
                let after = self.target(&next, Context::Direct, format!("after {why}"));
                if let Some(step) = self.steps.get_mut(i) {
                    step.on_no_answer = after;
                }
            }
            return at;
        }
        if let Some(spec) = d.menu.clone() {
            return self.menu(&d.id.clone(), &spec, d.code, why);
        }
        let (uri, id) = (d.uri.clone(), d.id.clone());
        let diverted = match kind {
            DestinationKind::Voicemail => self.mailbox_for.clone(),
            _ => None,
        };
        self.push(Step {
            action: Action::Destination {
                id,
                kind,
                uri,
                diverted,
            },
            on_no_answer: Next::Final(480),
            on_busy: Next::Final(486),
            on_unavailable: Next::Final(480),
            why,
        })
    }

    /// The daemon's own menu `id`: a step whose options are planned as any target is.
    fn menu(&mut self, id: &str, spec: &MenuSpec, code: u16, why: String) -> Next {
        let Some(slot) = self.reserve() else {
            return Next::Final(480);
        };
        self.menus.push((id.to_string(), slot));
        // A key is the caller's choice, not a loop: what the options reach is planned
        // afresh ("0: reception" from reception's own no-answer menu rings reception
        // again). This ends: a menu reached again is its step again, the path between
        // two menus is bounded as any, and so is the plan.
        let path = std::mem::take(&mut self.visiting);
        // A key is the caller's own choice: a mailbox it leads to was dialled.
        let outer = self.mailbox_for.take();
        let mut options = Vec::new();
        for (key, target) in &spec.options {
            let next = self.target(target, Context::Direct, format!("menu {id}: key {key}"));
            options.push(MenuOption {
                key: *key,
                target: target.to_string(),
                next,
            });
        }
        self.visiting = path;
        let default = match &spec.default {
            Target::Hangup => Next::Final(code),
            t => self.target(t, Context::Direct, format!("menu {id}: no choice")),
        };
        self.mailbox_for = outer;
        self.steps[slot] = Step {
            action: Action::Menu {
                menu: Menu {
                    id: id.to_string(),
                    prompt: spec.prompt.clone(),
                    invalid: spec.invalid.clone(),
                    timeout_secs: spec.timeout_secs,
                    retries: spec.retries,
                    options,
                },
            },
            on_no_answer: default.clone(),
            on_busy: default.clone(),
            on_unavailable: default,
            why,
        };
        Next::Step(slot)
    }

    fn is_open(&self, schedule: Option<&str>) -> bool {
        match schedule.and_then(|s| self.policy.schedule(s)) {
            Some(s) => schedule_open(s, self.now),
            None => true,
        }
    }

    fn user(&mut self, id: &str, ctx: Context, why: String) -> Next {
        let Some(user) = self.policy.user(id).cloned() else {
            self.note(format!("unknown user {id}"));
            return Next::Final(404);
        };
        let person = self.view.person(id);
        if !self.is_open(user.schedule.as_deref()) {
            self.note(format!(
                "{id}: outside office hours ({})",
                user.schedule.as_deref().unwrap_or("")
            ));
            return self.target_of(
                &user.out_of_hours,
                MailboxOwner::User(id.to_string()),
                VoicemailReason::OutOfHours,
                format!("{id} is out of hours"),
            );
        }
        let profile = self.active_profile(&person);
        let mut only_devices: Option<Vec<String>> = None;
        if let Some(p) = &profile {
            match &p.incoming {
                IncomingHandling::RingAsNormal => {}
                IncomingHandling::RingDevices(names) => only_devices = Some(names.clone()),
                IncomingHandling::SendTo(t) => {
                    self.note(format!("{id}'s profile {} sends calls to {t}", p.name));
                    return self.target_of(
                        t,
                        MailboxOwner::User(id.to_string()),
                        VoicemailReason::Profile(p.id.clone()),
                        format!("{id}'s profile {}", p.name),
                    );
                }
                IncomingHandling::OutOfHours => {
                    self.note(format!(
                        "{id}'s profile {} follows out-of-hours routing",
                        p.name
                    ));
                    return self.target_of(
                        &user.out_of_hours,
                        MailboxOwner::User(id.to_string()),
                        VoicemailReason::Profile(p.id.clone()),
                        format!("{id}'s profile {}", p.name),
                    );
                }
                IncomingHandling::Reject { code, reason } => {
                    self.note(format!("{id}'s profile {} rejects calls", p.name));
                    let refusal = self.push(Step {
                        action: Action::Reject {
                            code: *code,
                            reason: reason.clone(),
                        },
                        on_no_answer: Next::Final(*code),
                        on_busy: Next::Final(*code),
                        on_unavailable: Next::Final(*code),
                        why: format!("{id}'s profile {}", p.name),
                    });
                    if !self.policy.announces(&p.id) || !matches!(refusal, Next::Step(_)) {
                        return refusal;
                    }
                    let until = person.profile_until.and_then(|t| self.local_time(&user, t));
                    let message = Message::Profile(ProfileMessage {
                        user: id.to_string(),
                        extension: user.extension.clone(),
                        profile: p.id.clone(),
                        until,
                    });
                    return self.push(Step {
                        action: Action::Message { message },
                        on_no_answer: refusal.clone(),
                        on_busy: refusal.clone(),
                        on_unavailable: refusal,
                        why: format!("{id}'s profile {} says so to the caller", p.name),
                    });
                }
            }
        }
        let availability = person
            .availability
            .or(profile.as_ref().map(|p| p.availability))
            .unwrap_or(Availability::Available);
        match self.policy.status_rule(availability).direct {
            StatusEffect::Ring => {
                if availability == Availability::Custom {
                    self.note(format!(
                        "{id} has a custom status ({}) and still rings",
                        person.custom_text.as_deref().unwrap_or("")
                    ));
                } else if availability == Availability::Away {
                    self.note(format!("{id} is away and still rings"));
                }
            }
            StatusEffect::OutOfHours => {
                self.note(format!(
                    "{id} is {}: out-of-hours routing",
                    availability.as_str()
                ));
                return self.target_of(
                    &user.out_of_hours,
                    MailboxOwner::User(id.to_string()),
                    VoicemailReason::OutOfHours,
                    format!("{id} is {}", availability.as_str()),
                );
            }
            StatusEffect::Unavailable => {
                self.note(format!("{id} is {}: unavailable", availability.as_str()));
                return self.unreachable(id, &user.no_answer, ctx, format!("{id} is unavailable"));
            }
        }
        if person.in_call && !user.call_waiting {
            self.note(format!(
                "{id} is in a call and call waiting is off: busy handling"
            ));
            return self.busy(&user);
        }
        let devices = select_devices(&user, &person, only_devices.as_deref());
        let forwarding = user
            .forwarding
            .clone()
            .filter(|f| f.enabled && !(f.direct_calls_only && ctx == Context::Team));
        if ctx == Context::Team
            && user
                .forwarding
                .as_ref()
                .is_some_and(|f| f.enabled && f.direct_calls_only)
        {
            self.note(format!(
                "{id}'s forwarding is for direct calls only: not applied to this team call"
            ));
        }
        if devices.is_empty() && forwarding.is_none() {
            self.note(format!("{id} has no registered devices: unavailable"));
            return self.unreachable(
                id,
                &user.no_answer,
                ctx,
                format!("{id} has no registered devices"),
            );
        }
        let Some(slot) = self.reserve() else {
            return Next::Final(480);
        };
        let mut legs = Vec::new();
        let mut duration = user.ring_time;
        let mut strategy = RingStrategy::RingAll;
        let mut memory_group = None;
        let mut no_answer = user.no_answer.clone();
        let mut announcements = Vec::new();
        match &forwarding {
            None => {
                if !devices.is_empty() {
                    legs.push(own_leg(id, &devices, 0, user.ring_time, "rings"));
                }
            }
            Some(f) => {
                let first = f.ring_own_first;
                let group = format!("forward:{id}");
                let targets = self.forward_legs(id, &user, f, &group);
                let fwd_len = window_len(f.strategy, targets.len(), f.ring_time);
                duration = first + fwd_len;
                let own_stop = if f.keep_ringing_own { duration } else { first };
                if !devices.is_empty() && own_stop > 0 {
                    legs.push(own_leg(
                        id,
                        &devices,
                        0,
                        own_stop,
                        if f.keep_ringing_own {
                            "rings own devices, and keeps ringing them while forwarding"
                        } else {
                            "rings own devices first"
                        },
                    ));
                }
                let windows = windows(f.strategy, targets.len(), f.ring_time, fwd_len);
                for (mut leg, (s, e)) in targets.into_iter().zip(windows) {
                    leg.start = first + s;
                    leg.stop = first + e;
                    legs.push(leg);
                }
                strategy = f.strategy;
                memory_group = Some(group);
                no_answer = f.no_answer.clone();
                if let Some(m) = &f.message {
                    announcements.push((first, m.clone()));
                }
            }
        }
        legs.truncate(MAX_LEGS);
        let on_no_answer = if ctx == Context::Team {
            Next::Final(408)
        } else {
            self.target_of(
                &no_answer,
                MailboxOwner::User(id.to_string()),
                VoicemailReason::NoAnswer,
                format!("{id} did not answer"),
            )
        };
        let on_busy = if ctx == Context::Team {
            Next::Final(486)
        } else {
            self.busy(&user)
        };
        let on_unavailable = on_no_answer.clone();
        self.steps[slot] = Step {
            action: Action::Ring {
                legs,
                duration,
                strategy,
                memory_group,
                announcements,
            },
            on_no_answer,
            on_busy,
            on_unavailable,
            why,
        };
        Next::Step(slot)
    }

    /// The legs of a user's forward targets, ordered by the forwarding strategy.
    fn forward_legs(&mut self, id: &str, user: &User, f: &Forwarding, group: &str) -> Vec<Leg> {
        let caller_id = match f.caller_id {
            ForwardCallerId::Remote => CallerIdRule::Caller,
            ForwardCallerId::Local => CallerIdRule::Number {
                number: user
                    .caller_id
                    .clone()
                    .unwrap_or_else(|| user.extension.clone()),
                display: Some(user.display_name.clone()),
            },
        };
        let names: Vec<String> = f.targets.iter().map(|t| t.to_string()).collect();
        let memory = self.view.memory(group);
        let order = order(&names, f.strategy, &memory, &self.call.call_id, &|_| false);
        let mut legs = Vec::new();
        for name in order {
            let Some(t) = f.targets.iter().find(|t| t.to_string() == name) else {
                continue;
            };
            match t {
                Target::External(n) => legs.push(Leg {
                    target: {
                        let (trunk, number) = self.trunk_for(n);
                        LegTarget::External { number, trunk }
                    },
                    start: 0,
                    stop: 0,
                    caller_id: caller_id.clone(),
                    team_call: false,
                    why: format!("{id} forwards to {n}"),
                    confirm: f.require_confirmation,
                }),
                Target::User(u) => {
                    let pv = self.view.person(u);
                    let profile = self.active_profile(&pv);
                    let profile = profile.as_ref();
                    let availability = pv
                        .availability
                        .or(profile.map(|p| p.availability))
                        .unwrap_or(Availability::Available);
                    // A forward target rings alongside only when a direct call would ring them.
                    if self.policy.status_rule(availability).direct != StatusEffect::Ring {
                        self.note(format!("forward target {u} is {}: skipped", availability.as_str()));
                        continue;
                    }
                    if profile.is_some_and(|p| !matches!(p.incoming, IncomingHandling::RingAsNormal | IncomingHandling::RingDevices(_))) {
                        self.note(format!("forward target {u}'s profile does not take calls: skipped"));
                        continue;
                    }
                    let call_waiting = self.policy.user(u).is_none_or(|x| x.call_waiting);
                    if pv.in_call && !call_waiting {
                        self.note(format!("forward target {u} is in a call: skipped"));
                        continue;
                    }
                    let devices: Vec<String> = pv.devices.iter().map(|d| d.id.clone()).collect();
                    if devices.is_empty() {
                        self.note(format!("forward target {u} has no registered devices: skipped"));
                        continue;
                    }
                    legs.push(Leg {
                        target: LegTarget::Person {
                            user: u.clone(),
                            devices,
                        },
                        start: 0,
                        stop: 0,
                        caller_id: caller_id.clone(),
                        team_call: false,
                        why: format!("{id} forwards to {u}"),
                        confirm: f.require_confirmation,
                    });
                }
                other => self.note(format!("forward target {other} cannot ring alongside; reach it as the no-answer destination")),
            }
        }
        legs
    }

    fn busy(&mut self, user: &User) -> Next {
        match &user.busy {
            BusyAction::Engaged => Next::Final(486),
            BusyAction::Redirect(t) => {
                let t = t.clone();
                self.target_of(
                    &t,
                    MailboxOwner::User(user.id.clone()),
                    VoicemailReason::Busy,
                    format!("{} is busy", user.id),
                )
            }
        }
    }

    /// Where a user's call goes when it cannot ring them (unavailable, no devices): their
    /// no-answer destination, except on a team call, which a member's own destinations
    /// never take.
    fn unreachable(&mut self, user: &str, no_answer: &Target, ctx: Context, why: String) -> Next {
        if ctx == Context::Team {
            return Next::Final(480);
        }
        let owner = MailboxOwner::User(user.to_string());
        self.target_of(no_answer, owner, VoicemailReason::Unavailable, why)
    }

    fn team(&mut self, id: &str, why: String) -> Next {
        let Some(team) = self.policy.team(id).cloned() else {
            self.note(format!("unknown team {id}"));
            return Next::Final(404);
        };
        if !self.is_open(team.schedule.as_deref()) {
            if let Some(t) = &team.out_of_hours {
                self.note(format!("team {id}: outside office hours"));
                return self.target_of(
                    t,
                    MailboxOwner::Team(id.to_string()),
                    VoicemailReason::OutOfHours,
                    format!("team {id} is out of hours"),
                );
            }
        }
        // Who can take the call.
        let mut eligible = Vec::new();
        let mut in_call = Vec::new();
        for m in &team.members {
            let Some(user) = self.policy.user(m) else {
                continue;
            };
            let pv = self.view.person(m);
            let profile = self.active_profile(&pv);
            let profile = profile.as_ref();
            let availability = pv
                .availability
                .or(profile.map(|p| p.availability))
                .unwrap_or(Availability::Available);
            if team.skip_unavailable && self.policy.status_rule(availability).skip_in_teams {
                self.note(format!(
                    "team {id}: {m} skipped ({})",
                    availability.as_str()
                ));
                continue;
            }
            let only = match profile.map(|p| &p.incoming) {
                Some(IncomingHandling::RingDevices(d)) => Some(d.clone()),
                Some(IncomingHandling::RingAsNormal) | None => None,
                Some(_) if team.skip_unavailable => {
                    self.note(format!(
                        "team {id}: {m} skipped (profile {})",
                        profile.map(|p| p.name.as_str()).unwrap_or("")
                    ));
                    continue;
                }
                Some(_) => None,
            };
            if pv.in_call
                && (team.skip_in_call
                    || team.strategy == RingStrategy::FirstAvailable
                    || !user.call_waiting)
            {
                self.note(format!("team {id}: {m} skipped (in a call)"));
                in_call.push(m.clone());
                continue;
            }
            let devices = select_devices(user, &pv, only.as_deref());
            if devices.is_empty() {
                self.note(format!("team {id}: {m} skipped (no registered devices)"));
                continue;
            }
            eligible.push((m.clone(), devices));
        }
        let no_answer = team.no_answer.clone();
        if eligible.is_empty() {
            self.note(format!("team {id}: nobody can take the call"));
            let code_if_busy = !in_call.is_empty();
            let reason = if in_call.is_empty() {
                VoicemailReason::Unavailable
            } else {
                VoicemailReason::Busy
            };
            let next = self.target_of(
                &no_answer,
                MailboxOwner::Team(id.to_string()),
                reason,
                format!("team {id}: nobody available"),
            );
            return match (next, code_if_busy) {
                (Next::Final(480), true) => Next::Final(486),
                (n, _) => n,
            };
        }
        let Some(slot) = self.reserve() else {
            return Next::Final(480);
        };
        let names: Vec<String> = eligible.iter().map(|(m, _)| m.clone()).collect();
        let memory = self.view.memory(id);
        let ordered = order(&names, team.strategy, &memory, &self.call.call_id, &|m| {
            self.view.person(m).in_call
        });
        let member_time = team.member_ring_time.max(1);
        let windows = team_windows(
            team.strategy,
            ordered.len(),
            member_time,
            team.ring_time.max(1),
        );
        let mut legs = Vec::new();
        for (idx, s, e) in windows {
            let m = &ordered[idx];
            // The same member again straight away (a team of one): ring on, not anew.
            if let Some(last) = legs.last_mut().filter(|l: &&mut Leg| {
                l.stop == s && matches!(&l.target, LegTarget::Person { user, .. } if user == m)
            }) {
                last.stop = e;
                continue;
            }
            let devices = eligible
                .iter()
                .find(|(x, _)| x == m)
                .map(|(_, d)| d.clone())
                .unwrap_or_default();
            legs.push(Leg {
                target: LegTarget::Person {
                    user: m.clone(),
                    devices,
                },
                start: s,
                stop: e,
                caller_id: CallerIdRule::Caller,
                team_call: true,
                why: format!("member of team {id}"),
                confirm: false,
            });
            // A member's forwarding applies to team calls unless it is for direct calls only.
            if let Some(f) = self.policy.user(m).and_then(|u| u.forwarding.clone()) {
                if f.enabled && !f.direct_calls_only {
                    let user = self.policy.user(m).cloned();
                    if let Some(user) = user {
                        for mut leg in self.forward_legs(m, &user, &f, &format!("forward:{m}")) {
                            leg.start = s + f.ring_own_first.min(e.saturating_sub(s));
                            leg.stop = e;
                            leg.team_call = true;
                            legs.push(leg);
                        }
                    }
                } else if f.enabled {
                    self.note(format!(
                        "{m}'s forwarding is for direct calls only: not applied to this team call"
                    ));
                }
            }
        }
        legs.truncate(MAX_LEGS);
        let duration = legs.iter().map(|l| l.stop).max().unwrap_or(0);
        let on_no_answer = self.target_of(
            &no_answer,
            MailboxOwner::Team(id.to_string()),
            VoicemailReason::NoAnswer,
            format!("team {id} did not answer"),
        );
        self.steps[slot] = Step {
            action: Action::Ring {
                legs,
                duration,
                strategy: team.strategy,
                memory_group: Some(id.to_string()),
                announcements: Vec::new(),
            },
            on_no_answer: on_no_answer.clone(),
            on_busy: on_no_answer.clone(),
            on_unavailable: on_no_answer,
            why,
        };
        Next::Step(slot)
    }
}

fn own_leg(id: &str, devices: &[String], start: u32, stop: u32, what: &str) -> Leg {
    Leg {
        target: LegTarget::Person {
            user: id.to_string(),
            devices: devices.to_vec(),
        },
        start,
        stop,
        caller_id: CallerIdRule::Caller,
        team_call: false,
        why: format!("{id} {what}"),
        confirm: false,
    }
}

/// The registered devices to ring: all, or those the profile names.
fn select_devices(user: &User, pv: &PersonView, only: Option<&[String]>) -> Vec<String> {
    pv.devices
        .iter()
        .filter(|d| match only {
            None => true,
            Some(names) => names.iter().any(|n| {
                user.devices
                    .iter()
                    .find(|dev| dev.name == *n)
                    .is_some_and(|dev| {
                        d.label.contains(&dev.contact_match) || d.id.contains(&dev.contact_match)
                    })
            }),
        })
        .map(|d| d.id.clone())
        .collect()
}

/// Orders a group's members for a strategy.
pub fn order(
    members: &[String],
    strategy: RingStrategy,
    memory: &GroupMemory,
    call_id: &str,
    in_call: &dyn Fn(&str) -> bool,
) -> Vec<String> {
    let rotate_to = |start: usize| -> Vec<String> {
        let n = members.len();
        (0..n).map(|i| members[(start + i) % n].clone()).collect()
    };
    let last = memory
        .last_answerer
        .as_ref()
        .and_then(|l| members.iter().position(|m| m == l));
    match strategy {
        RingStrategy::RingAll | RingStrategy::Hunt | RingStrategy::Cumulative => members.to_vec(),
        RingStrategy::MemoryHunt => rotate_to(last.unwrap_or(0)),
        RingStrategy::RoundRobin => rotate_to(last.map(|i| i + 1).unwrap_or(0)),
        RingStrategy::FirstAvailable => members.iter().filter(|m| !in_call(m)).cloned().collect(),
        RingStrategy::Random => {
            let mut v = members.to_vec();
            let mut seed = fnv1a(call_id.as_bytes());
            for i in (1..v.len()).rev() {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let j = (seed >> 33) as usize % (i + 1);
                v.swap(i, j);
            }
            v
        }
        RingStrategy::LeastRecent => {
            let mut v: Vec<(usize, String)> = members.iter().cloned().enumerate().collect();
            v.sort_by_key(|(i, m)| (memory.last_answered.get(m).copied().unwrap_or(i64::MIN), *i));
            v.into_iter().map(|(_, m)| m).collect()
        }
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
    })
}

/// How long a forwarding group rings in all.
fn window_len(strategy: RingStrategy, n: usize, t: u32) -> u32 {
    match strategy {
        RingStrategy::RingAll => t,
        _ => t.saturating_mul(n as u32).max(t),
    }
}

/// Start and stop of each of `n` legs for a strategy, each ringing `t` seconds, in `total`.
fn windows(strategy: RingStrategy, n: usize, t: u32, total: u32) -> Vec<(u32, u32)> {
    (0..n as u32)
        .map(|i| match strategy {
            RingStrategy::RingAll => (0, total),
            RingStrategy::Cumulative => (i * t, total),
            _ => (i * t, (i + 1) * t),
        })
        .collect()
}

/// Windows of a team's members within the team's overall ring time, as (member index,
/// start, stop). Hunting strategies go round the members again while time remains, bounded
/// by [`MAX_LEGS`].
fn team_windows(strategy: RingStrategy, n: usize, t: u32, total: u32) -> Vec<(usize, u32, u32)> {
    if n == 0 {
        return Vec::new();
    }
    match strategy {
        RingStrategy::RingAll => (0..n).map(|i| (i, 0, total)).collect(),
        RingStrategy::Cumulative => (0..n)
            .map(|i| (i, (i as u32 * t).min(total.saturating_sub(1)), total))
            .collect(),
        _ => {
            let mut v = Vec::new();
            let mut start = 0;
            while start < total && v.len() < MAX_LEGS {
                v.push((v.len() % n, start, (start + t).min(total)));
                start += t;
            }
            v
        }
    }
}

/// Whether a schedule is open at `now` (its time zone, weekly hours, holidays).
pub fn schedule_open(s: &Schedule, now: DateTime<Utc>) -> bool {
    let Ok(tz) = s.timezone.parse::<chrono_tz::Tz>() else {
        return true;
    };
    let local = now.with_timezone(&tz);
    let date = local.format("%Y-%m-%d").to_string();
    if s.holidays.contains(&date) {
        return false;
    }
    let day = local.weekday().num_days_from_monday() as usize;
    let minute = (local.hour() * 60 + local.minute()) as u16;
    s.hours[day]
        .iter()
        .any(|(a, b)| minute >= *a && minute < *b)
}

impl fmt::Display for Next {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Next::Step(i) => write!(f, "step {}", i + 1),
            Next::Final(c) => write!(f, "end with {c} {}", reason_phrase(*c)),
        }
    }
}

impl fmt::Display for RoutePlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "start: {}", self.start)?;
        for (i, s) in self.steps.iter().enumerate() {
            writeln!(f, "step {}: {}", i + 1, s.why)?;
            match &s.action {
                Action::Ring {
                    legs,
                    duration,
                    strategy,
                    announcements,
                    ..
                } => {
                    writeln!(f, "  ring ({}) for {duration} s:", strategy.as_str())?;
                    for (at, name) in announcements {
                        writeln!(
                            f,
                            "    at {at} s play message {name} to the caller (early media)"
                        )?;
                    }
                    for l in legs {
                        let who = match &l.target {
                            LegTarget::Person { user, devices } => {
                                format!("{user} ({} device(s))", devices.len())
                            }
                            LegTarget::External { number, trunk } => {
                                format!("{number} via {}", trunk.as_deref().unwrap_or("no trunk"))
                            }
                        };
                        let cid = match &l.caller_id {
                            CallerIdRule::Caller => "caller's ID".to_string(),
                            CallerIdRule::Number { number, .. } => format!("caller ID {number}"),
                        };
                        let confirm = if l.confirm {
                            ", connected once they press 1 (confirmation)"
                        } else {
                            ""
                        };
                        writeln!(
                            f,
                            "    {who}: from {} s to {} s, {cid}{confirm} — {}",
                            l.start, l.stop, l.why
                        )?;
                    }
                }
                Action::Message { message } => writeln!(
                    f,
                    "  play message {message} to the caller (early media), then: {}",
                    s.on_no_answer
                )?,
                Action::Menu { menu } => {
                    writeln!(
                        f,
                        "  menu {} (early media): play {}, wait {} s for a key, {} more \
                         time(s) after no key or a key with no option{}",
                        menu.id,
                        menu.prompt,
                        menu.timeout_secs,
                        menu.retries,
                        match &menu.invalid {
                            Some(m) => format!(" (then {m})"),
                            None => String::new(),
                        }
                    )?;
                    for o in &menu.options {
                        writeln!(f, "    key {}: {} — {}", o.key, o.target, o.next)?;
                    }
                    writeln!(f, "    no choice: {}", s.on_no_answer)?;
                }
                Action::Announcement {
                    id,
                    message,
                    answer,
                } => writeln!(
                    f,
                    "  play announcement {id} (message {message}) to the caller ({}), then: {}",
                    if *answer {
                        "answered: 200 OK"
                    } else {
                        "early media"
                    },
                    if *answer && matches!(s.on_no_answer, Next::Final(_)) {
                        "hang up (BYE)".to_string()
                    } else {
                        s.on_no_answer.to_string()
                    }
                )?,
                Action::Voicemail { mailbox, reason } => writeln!(
                    f,
                    "  answer and take a message in the mailbox of {} ({reason})",
                    mailbox.to_string().replace(':', " ")
                )?,
                Action::MailboxPhone { mailbox, number } => match (mailbox, number) {
                    (Some(m), _) => writeln!(
                        f,
                        "  answer: the mailbox of {} by phone",
                        m.to_string().replace(':', " ")
                    )?,
                    (None, Some(n)) => {
                        writeln!(f, "  answer: mailbox {n} by phone, after its PIN")?
                    }
                    (None, None) => {
                        writeln!(f, "  answer: a mailbox by phone, after its number and PIN")?
                    }
                },
                Action::Destination {
                    id,
                    kind,
                    uri,
                    diverted,
                } => {
                    write!(f, "  send to {} {id} ({uri})", kind.as_str())?;
                    match diverted {
                        Some((owner, reason)) => writeln!(
                            f,
                            ", diverted from {} ({reason})",
                            owner.to_string().replace(':', " ")
                        )?,
                        None => writeln!(f)?,
                    }
                }
                Action::Reject { code, reason } => writeln!(f, "  reject with {code} {reason}")?,
            }
            if matches!(s.action, Action::Ring { .. }) {
                writeln!(
                    f,
                    "  no answer: {}; busy: {}; unavailable: {}",
                    s.on_no_answer, s.on_busy, s.on_unavailable
                )?;
            }
        }
        if !self.notes.is_empty() {
            writeln!(f, "why:")?;
            for n in &self.notes {
                writeln!(f, "  - {n}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Caller, PersonView, Source, View};

    fn number(plan: &RoutePlan) -> String {
        match &plan.steps[0].action {
            Action::Ring { legs, .. } => match &legs[0].caller_id {
                CallerIdRule::Number { number, .. } => number.clone(),
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_caller_id_the_person_set_on_their_profile_comes_first() {
        let policy = Policy::from_sources(&[Source {
            name: "p.toml".into(),
            text: "[users.alice]\nextension = \"1001\"\ncaller_id = \"+441632960001\"\n\
                   profile_caller_ids = { lunch = \"+447700900001\" }\n\
                   [profiles.lunch]\ncaller_id = \"+441632960099\"\n\
                   [profiles.meeting]\ncaller_id = \"+441632960098\"\n\
                   [trunks.carrier]\nsources = [\"127.0.0.1\"]\noutbound = [\"+44*\"]\n"
                .into(),
        }])
        .unwrap();
        let call = Call {
            from: Caller::User("alice".into()),
            to: "+442079460000".into(),
            call_id: "c1".into(),
        };
        let with = |profile: &str, own_caller_id: Option<&str>| {
            let mut v = View::default().with_person("alice", 0);
            let own = own_caller_id.map(|c| Profile {
                caller_id: Some(c.into()),
                ..policy.profile(profile).unwrap().clone()
            });
            let devices = v.people["alice"].devices.clone();
            v.people.insert(
                "alice".into(),
                PersonView {
                    profile: Some(profile.into()),
                    own_profile: own,
                    devices,
                    ..Default::default()
                },
            );
            number(&plan(&policy, &call, &v, chrono::Utc::now()))
        };
        // Hers, over the operator's for her and the profile's.
        assert_eq!(with("lunch", Some("+441632960001")), "+441632960001");
        // None set by her: the operator's for her, then the profile's own.
        assert_eq!(with("lunch", None), "+447700900001");
        assert_eq!(with("meeting", None), "+441632960098");
        assert_eq!(with("available", None), "+441632960001");
    }
}
