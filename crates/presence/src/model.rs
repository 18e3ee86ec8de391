//! People's presence: availability, the active profile with its end time, status messages,
//! call status aggregated across devices and branches, and time in status.
//!
//! Sans-I/O: every operation takes the current wall-clock time (Unix seconds) and returns
//! the changes to make durable; nothing here reads a clock or touches a disk.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

/// Unix time in seconds.
pub type UnixTime = i64;

/// A person's availability status (the reference documents' statuses).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Availability {
    /// Available / Active: ready for calls.
    Available,
    /// Away: prefers not to answer, still rings.
    Away,
    /// Busy: no call notifications; direct calls follow out-of-hours routing.
    Busy,
    /// Do not disturb: as Busy.
    DoNotDisturb,
    /// Custom: a text of the person's own; keeps ringing.
    Custom,
    /// Unavailable: logged off.
    Unavailable,
    /// On break (contact centre): a scheduled break.
    OnBreak,
    /// After-call work (contact centre): wrap-up after a call.
    AfterCallWork,
}

impl Availability {
    pub const ALL: [Availability; 8] = [
        Availability::Available,
        Availability::Away,
        Availability::Busy,
        Availability::DoNotDisturb,
        Availability::Custom,
        Availability::Unavailable,
        Availability::OnBreak,
        Availability::AfterCallWork,
    ];

    /// The colour class shown to colleagues: green for Available; yellow for Away and
    /// Custom; red for Busy and Do Not Disturb, and for the statuses in which no calls are
    /// offered (Unavailable, On break, After-call work).
    pub fn colour(self) -> Colour {
        match self {
            Availability::Available => Colour::Green,
            Availability::Away | Availability::Custom => Colour::Yellow,
            Availability::Busy
            | Availability::DoNotDisturb
            | Availability::Unavailable
            | Availability::OnBreak
            | Availability::AfterCallWork => Colour::Red,
        }
    }

    /// The name used in the API, the CLI and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Availability::Available => "available",
            Availability::Away => "away",
            Availability::Busy => "busy",
            Availability::DoNotDisturb => "dnd",
            Availability::Custom => "custom",
            Availability::Unavailable => "unavailable",
            Availability::OnBreak => "on_break",
            Availability::AfterCallWork => "after_call_work",
        }
    }

    /// Every name a status is known by: its own ([`Availability::as_str`]) and the common
    /// synonyms. The policy crate reads the same names (a test of the daemon holds the two
    /// lists together).
    pub const NAMES: [(&'static str, Availability); 14] = [
        ("available", Availability::Available),
        ("active", Availability::Available),
        ("away", Availability::Away),
        ("busy", Availability::Busy),
        ("dnd", Availability::DoNotDisturb),
        ("do_not_disturb", Availability::DoNotDisturb),
        ("custom", Availability::Custom),
        ("unavailable", Availability::Unavailable),
        ("offline", Availability::Unavailable),
        ("on_break", Availability::OnBreak),
        ("break", Availability::OnBreak),
        ("after_call_work", Availability::AfterCallWork),
        ("acw", Availability::AfterCallWork),
        ("wrap_up", Availability::AfterCallWork),
    ];

    /// Reads a status name: case, surrounding spaces, and `-` or spaces for `_` do not
    /// matter (`Do Not Disturb`, `after-call-work`, `acw`).
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim().to_ascii_lowercase().replace(['-', ' '], "_");
        Availability::NAMES
            .iter()
            .find(|(n, _)| *n == s)
            .map(|(_, a)| *a)
    }
}

impl fmt::Display for Availability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Colour class of a status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Colour {
    Green,
    Yellow,
    Red,
}

/// What colleagues see of a person's calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallStatus {
    /// Not in a call.
    Free,
    /// A call to or from the person is ringing.
    Ringing,
    /// In a call.
    Busy,
    /// The active profile does not show call status.
    Hidden,
}

/// What the presence model needs to know of a profile defined in the policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProfileSpec {
    pub id: String,
    /// Availability the profile sets.
    pub availability: Availability,
    /// "Available" profiles show the call status to colleagues; others hide it.
    pub shows_call_status: bool,
    /// The profile's own status message.
    pub message: Option<String>,
    /// Length used when an activation gives no end time (seconds).
    pub standard_length: Option<i64>,
}

/// A profile in force for a person.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveProfile {
    pub id: String,
    pub since: UnixTime,
    /// After this the default profile returns by itself.
    pub until: Option<UnixTime>,
    /// Whether colleagues see the call status while it is active.
    pub shows_call_status: bool,
    /// The profile's own message.
    pub profile_message: Option<String>,
}

/// A status set with an end time, and what returns when that time comes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusEnd {
    /// When the status lapses.
    pub at: UnixTime,
    /// The status before it: the last one set without an end time (or the profile's).
    pub back_to: Availability,
    /// That status's Custom text.
    pub back_text: Option<String>,
    /// The temporary message shown before it.
    pub back_message: Option<String>,
}

/// A person's presence as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonPresence {
    pub availability: Availability,
    /// The text of a Custom status.
    pub custom_text: Option<String>,
    /// A temporary message for the current activation; reset when the profile changes.
    pub temporary_message: Option<String>,
    pub profile: ActiveProfile,
    /// When the current availability began.
    pub status_since: UnixTime,
    /// When the current status lapses by itself, if it was set with an end time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_end: Option<StatusEnd>,
}

impl PersonPresence {
    /// The end times in force: the profile's and the status's.
    fn end_times(&self) -> impl Iterator<Item = UnixTime> {
        self.profile
            .until
            .into_iter()
            .chain(self.status_end.as_ref().map(|e| e.at))
    }
}

impl PersonPresence {
    /// The message colleagues see: while the status is Custom, its text (the person wrote
    /// it for this status); else the temporary message, else the profile's.
    pub fn message(&self) -> Option<&str> {
        let custom = match self.availability {
            Availability::Custom => self.custom_text.as_deref(),
            _ => None,
        };
        custom
            .or(self.temporary_message.as_deref())
            .or(self.profile.profile_message.as_deref())
    }
}

/// A message or text as given: blank means none.
fn given(text: Option<String>) -> Option<String> {
    text.filter(|t| !t.trim().is_empty())
}

/// Who made a change and through which interface (logged with every change).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub who: String,
    pub via: Interface,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Interface {
    Api,
    Cli,
    Sip,
    FeatureCode,
    /// The daemon itself (a profile reaching its end time).
    System,
}

/// A refused presence operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PresenceError {
    #[error("unknown person {0:?}")]
    UnknownPerson(String),
    #[error("the end time is not in the future")]
    EndTimeInPast,
    #[error("the end time is more than 10 years ahead")]
    EndTimeTooFar,
    #[error("a custom status needs a text")]
    CustomNeedsText,
    #[error("status message longer than {0} characters")]
    MessageTooLong(usize),
}

/// Longest status message or custom text accepted.
pub const MAX_MESSAGE: usize = 200;

/// How far ahead an end time may be (10 years, in seconds).
pub const MAX_END_AHEAD: UnixTime = 3653 * 86_400;

/// Checks an end time given for a change made at `now`.
fn check_end(until: Option<UnixTime>, now: UnixTime) -> Result<(), PresenceError> {
    match until {
        Some(t) if t <= now => Err(PresenceError::EndTimeInPast),
        Some(t) if t > now.saturating_add(MAX_END_AHEAD) => Err(PresenceError::EndTimeTooFar),
        _ => Ok(()),
    }
}

/// A change to persist and announce (NOTIFY, logs).
#[derive(Clone, Debug, PartialEq)]
pub struct Changed {
    pub person: String,
    pub presence: PersonPresence,
    pub actor: Actor,
    /// The interval of the previous status, closed by this change, for time-in-status.
    pub closed: Option<StatusInterval>,
}

/// A period a person spent in one availability.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusInterval {
    pub person: String,
    pub availability: Availability,
    pub from: UnixTime,
    pub to: UnixTime,
}

/// One leg of a call as seen for a person: a device ringing or in the call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LegState {
    Ringing,
    Answered,
}

/// A person's call legs, with how many are answered (kept in step, so the call status is
/// read in constant time).
///
/// This table and [`Presence`]'s `by_call` grow with the calls in progress (a team or a
/// busy person can have thousands), so they grow incrementally (`griddle`) rather than
/// doubling all at once and stalling the core thread.
///
/// Legs are filed by call id, then leg id: a lookup by `&str` then needs no key made.
#[derive(Default)]
struct PersonLegs {
    calls: griddle::HashMap<String, Vec<(String, LegState)>>,
    answered: usize,
}

/// The presence of everyone, and their calls.
pub struct Presence {
    default_profile: ProfileSpec,
    /// People whose default profile is their own version of it.
    personal_defaults: HashMap<String, ProfileSpec>,
    people: BTreeMap<String, PersonPresence>,
    /// (end time, person) of every profile and status with an end time, earliest first.
    ends: BTreeSet<(UnixTime, String)>,
    /// person → call id → (leg id, state).
    legs: HashMap<String, PersonLegs>,
    /// call id → (person, leg id) of its legs, so a call ends without a scan of everyone.
    by_call: griddle::HashMap<String, Vec<(String, String)>>,
    /// People whose presence or call status changed since [`Presence::take_changed`].
    changed: BTreeSet<String>,
    /// Calls through other nodes sharing the state: person → node → ringing or busy (a
    /// node through which the person is free has no entry).
    remote_calls: HashMap<String, BTreeMap<String, CallStatus>>,
}

impl Presence {
    /// `default_profile` is the profile that returns when another one ends (Available).
    pub fn new(default_profile: ProfileSpec) -> Self {
        Presence {
            default_profile,
            personal_defaults: HashMap::new(),
            people: BTreeMap::new(),
            ends: BTreeSet::new(),
            legs: HashMap::new(),
            by_call: griddle::HashMap::new(),
            changed: BTreeSet::new(),
            remote_calls: HashMap::new(),
        }
    }

    /// Replaces the default profile (the policy changed); people keep their state.
    pub fn set_default_profile(&mut self, spec: ProfileSpec) {
        self.default_profile = spec;
    }

    /// Gives a person their own version of the default profile (None: the common one).
    pub fn set_personal_default(&mut self, person: &str, spec: Option<ProfileSpec>) {
        match spec {
            Some(s) => self.personal_defaults.insert(person.to_string(), s),
            None => self.personal_defaults.remove(person),
        };
    }

    /// A person's own version of the default profile, if they have one.
    pub fn personal_default(&self, person: &str) -> Option<&ProfileSpec> {
        self.personal_defaults.get(person)
    }

    /// The default profile of a person.
    pub fn default_profile(&self, person: &str) -> &ProfileSpec {
        self.personal_defaults
            .get(person)
            .unwrap_or(&self.default_profile)
    }

    fn default_state(&self, person: &str, now: UnixTime) -> PersonPresence {
        let d = self.default_profile(person);
        PersonPresence {
            availability: d.availability,
            custom_text: None,
            temporary_message: None,
            profile: ActiveProfile {
                id: d.id.clone(),
                since: now,
                until: None,
                shows_call_status: d.shows_call_status,
                profile_message: d.message.clone(),
            },
            status_since: now,
            status_end: None,
        }
    }

    /// Adds a person (from the policy) in the default profile if not known yet. Returns
    /// that new state as a change, to be stored: from then on their time in it counts,
    /// also across a restart.
    pub fn ensure_person(&mut self, person: &str, now: UnixTime) -> Option<Changed> {
        if self.people.contains_key(person) {
            return None;
        }
        let s = self.default_state(person, now);
        self.put(person.to_string(), s.clone());
        Some(Changed {
            person: person.to_string(),
            presence: s,
            actor: Actor {
                who: "switchboard".into(),
                via: Interface::System,
            },
            closed: None,
        })
    }

    /// Records that what colleagues see of a person changed outside this model (their
    /// active profile's name, say), so that their watchers are told.
    pub fn mark_changed(&mut self, person: &str) {
        if !self.changed.contains(person) {
            self.changed.insert(person.to_string());
        }
    }

    /// Loads a person's stored presence (after a restart).
    pub fn restore(&mut self, person: String, presence: PersonPresence) {
        self.put(person, presence);
    }

    /// Stores a person's presence, keeping the end-time index in step.
    fn put(&mut self, person: String, presence: PersonPresence) {
        if let Some(prev) = self.people.get(&person) {
            for t in prev.end_times() {
                self.ends.remove(&(t, person.clone()));
            }
        }
        for t in presence.end_times() {
            self.ends.insert((t, person.clone()));
        }
        self.changed.insert(person.clone());
        self.people.insert(person, presence);
    }

    pub fn get(&self, person: &str) -> Option<&PersonPresence> {
        self.people.get(person)
    }

    pub fn people(&self) -> impl Iterator<Item = (&String, &PersonPresence)> {
        self.people.iter()
    }

    fn check_message(m: &Option<String>) -> Result<(), PresenceError> {
        match m {
            Some(t) if t.chars().count() > MAX_MESSAGE => {
                Err(PresenceError::MessageTooLong(MAX_MESSAGE))
            }
            _ => Ok(()),
        }
    }

    fn apply(
        &mut self,
        person: &str,
        next: PersonPresence,
        actor: Actor,
        now: UnixTime,
    ) -> Result<Changed, PresenceError> {
        let prev = self
            .people
            .get(person)
            .ok_or_else(|| PresenceError::UnknownPerson(person.into()))?;
        let mut next = next;
        let closed = if prev.availability != next.availability {
            next.status_since = now;
            Some(StatusInterval {
                person: person.to_string(),
                availability: prev.availability,
                from: prev.status_since,
                to: now,
            })
        } else {
            next.status_since = prev.status_since;
            None
        };
        self.put(person.to_string(), next.clone());
        Ok(Changed {
            person: person.to_string(),
            presence: next,
            actor,
            closed,
        })
    }

    /// Sets a person's availability (and Custom text / temporary message), keeping the
    /// active profile. With `until` the status lapses by itself then: the status before it
    /// returns (the last one set without an end time, or the profile's), with its text and
    /// message. A profile activated or ending meanwhile ends it too.
    pub fn set_status(
        &mut self,
        person: &str,
        availability: Availability,
        text: Option<String>,
        until: Option<UnixTime>,
        actor: Actor,
        now: UnixTime,
    ) -> Result<Changed, PresenceError> {
        Self::check_message(&text)?;
        let prev = self
            .people
            .get(person)
            .ok_or_else(|| PresenceError::UnknownPerson(person.into()))?
            .clone();
        check_end(until, now)?;
        let mut next = prev.clone();
        next.status_end = until.map(|at| match &prev.status_end {
            // A timed status over a timed status: what was under the first returns.
            Some(e) => StatusEnd { at, ..e.clone() },
            None => StatusEnd {
                at,
                back_to: prev.availability,
                back_text: prev.custom_text.clone(),
                back_message: prev.temporary_message.clone(),
            },
        });
        next.availability = availability;
        if availability == Availability::Custom {
            let Some(t) = given(text) else {
                return Err(PresenceError::CustomNeedsText);
            };
            // The Custom text is what colleagues see now; an older message would come
            // back with a later status it was not written for.
            next.custom_text = Some(t);
            next.temporary_message = None;
        } else {
            next.custom_text = None;
            // A text sets the temporary message; a blank one clears it.
            if let Some(t) = text {
                next.temporary_message = given(Some(t));
            }
        }
        self.apply(person, next, actor, now)
    }

    /// Activates a profile until `until` (or for its standard length; or with no end).
    /// A temporary message applies to this activation only.
    pub fn activate_profile(
        &mut self,
        person: &str,
        spec: &ProfileSpec,
        until: Option<UnixTime>,
        message: Option<String>,
        actor: Actor,
        now: UnixTime,
    ) -> Result<Changed, PresenceError> {
        Self::check_message(&message)?;
        if !self.people.contains_key(person) {
            return Err(PresenceError::UnknownPerson(person.into()));
        }
        check_end(until, now)?;
        let until = until.or_else(|| spec.standard_length.filter(|l| *l > 0).map(|l| now + l));
        let next = PersonPresence {
            availability: spec.availability,
            custom_text: None,
            temporary_message: given(message),
            profile: ActiveProfile {
                id: spec.id.clone(),
                since: now,
                until,
                shows_call_status: spec.shows_call_status,
                profile_message: spec.message.clone(),
            },
            status_since: now,
            status_end: None,
        };
        self.apply(person, next, actor, now)
    }

    /// Puts a person back in their default profile at once (the profile they had active
    /// was removed).
    pub fn return_to_default(
        &mut self,
        person: &str,
        actor: Actor,
        now: UnixTime,
    ) -> Result<Changed, PresenceError> {
        if !self.people.contains_key(person) {
            return Err(PresenceError::UnknownPerson(person.into()));
        }
        let next = self.default_state(person, now);
        self.apply(person, next, actor, now)
    }

    /// Sets or clears (None, or a blank text) the temporary message of the current
    /// activation; the status, its end time and the profile stay.
    pub fn set_message(
        &mut self,
        person: &str,
        message: Option<String>,
        actor: Actor,
        now: UnixTime,
    ) -> Result<Changed, PresenceError> {
        Self::check_message(&message)?;
        let mut next = self
            .people
            .get(person)
            .ok_or_else(|| PresenceError::UnknownPerson(person.into()))?
            .clone();
        next.temporary_message = given(message);
        self.apply(person, next, actor, now)
    }

    /// The earliest profile or status end time still ahead.
    pub fn next_end(&self) -> Option<UnixTime> {
        self.ends.first().map(|(t, _)| *t)
    }

    /// Ends every profile and status whose end time has come (also one that passed while
    /// the daemon was down), in time order: at a profile's end the default profile
    /// returns, at a status's end the status before it. Returns the changes.
    pub fn expire(&mut self, now: UnixTime) -> Vec<Changed> {
        let mut out = Vec::new();
        while let Some((at, person)) = self.ends.first().cloned() {
            if at > now {
                break;
            }
            self.ends.remove(&(at, person.clone()));
            let Some(prev) = self.people.get(&person).cloned() else {
                continue;
            };
            let next = if prev.profile.until.is_some_and(|t| t <= at) {
                self.default_state(&person, at)
            } else if let Some(end) = prev.status_end.as_ref().filter(|e| e.at <= at) {
                PersonPresence {
                    availability: end.back_to,
                    custom_text: end.back_text.clone(),
                    temporary_message: end.back_message.clone(),
                    status_end: None,
                    ..prev
                }
            } else {
                continue;
            };
            let actor = Actor {
                who: "switchboard".into(),
                via: Interface::System,
            };
            // The change took effect at the end time, even if noticed later.
            if let Ok(c) = self.apply(&person, next, actor, at) {
                out.push(c);
            }
        }
        out
    }

    /// People whose presence or call status changed since the last call (to notify their
    /// watchers), in order.
    pub fn take_changed(&mut self) -> Vec<String> {
        std::mem::take(&mut self.changed).into_iter().collect()
    }

    /// Records a call leg's state for a person (a device ringing or answered).
    pub fn leg(&mut self, person: &str, call_id: &str, leg_id: &str, state: LegState) {
        self.mark_changed(person);
        if !self.legs.contains_key(person) {
            self.legs.insert(person.to_string(), PersonLegs::default());
        }
        let Some(p) = self.legs.get_mut(person) else {
            return;
        };
        if !p.calls.contains_key(call_id) {
            p.calls.insert(call_id.to_string(), Vec::new());
        }
        let Some(legs) = p.calls.get_mut(call_id) else {
            return;
        };
        match legs.iter_mut().find(|(l, _)| l == leg_id) {
            Some((_, old)) => {
                if *old == LegState::Answered {
                    p.answered -= 1;
                }
                *old = state;
            }
            None => {
                legs.push((leg_id.to_string(), state));
                match self.by_call.get_mut(call_id) {
                    Some(v) => v.push((person.to_string(), leg_id.to_string())),
                    None => {
                        self.by_call.insert(
                            call_id.to_string(),
                            vec![(person.to_string(), leg_id.to_string())],
                        );
                    }
                }
            }
        }
        if state == LegState::Answered {
            p.answered += 1;
        }
    }

    /// Removes one leg; true when it was there.
    fn remove_leg(&mut self, person: &str, call_id: &str, leg_id: &str) -> bool {
        let Some(p) = self.legs.get_mut(person) else {
            return false;
        };
        let Some(legs) = p.calls.get_mut(call_id) else {
            return false;
        };
        let Some(i) = legs.iter().position(|(l, _)| l == leg_id) else {
            return false;
        };
        let (_, state) = legs.swap_remove(i);
        if legs.is_empty() {
            p.calls.remove(call_id);
        }
        if state == LegState::Answered {
            p.answered -= 1;
        }
        if p.calls.is_empty() {
            self.legs.remove(person);
        }
        self.mark_changed(person);
        true
    }

    /// A leg ended (cancelled, rejected, hung up).
    pub fn leg_ended(&mut self, person: &str, call_id: &str, leg_id: &str) {
        if self.remove_leg(person, call_id, leg_id) {
            if let Some(v) = self.by_call.get_mut(call_id) {
                v.retain(|(p, l)| !(p == person && l == leg_id));
                if v.is_empty() {
                    self.by_call.remove(call_id);
                }
            }
        }
    }

    /// Every leg of a call ended (the call is over).
    pub fn call_ended(&mut self, call_id: &str) {
        for (person, leg) in self.by_call.remove(call_id).unwrap_or_default() {
            self.remove_leg(&person, call_id, &leg);
        }
    }

    /// The person's call status across all devices and branches, this node's calls and
    /// other nodes' alike: busy if any leg is answered, ringing if any rings, free
    /// otherwise.
    pub fn call_state(&self, person: &str) -> CallStatus {
        let here = self.local_call_state(person);
        if here == CallStatus::Busy {
            return here;
        }
        let elsewhere = self
            .remote_calls
            .get(person)
            .into_iter()
            .flat_map(|m| m.values());
        elsewhere.fold(here, |a, &b| match (a, b) {
            (CallStatus::Busy, _) | (_, CallStatus::Busy) => CallStatus::Busy,
            (CallStatus::Ringing, _) | (_, CallStatus::Ringing) => CallStatus::Ringing,
            _ => a,
        })
    }

    /// The person's call status from the calls through this node only (what it tells
    /// the other nodes sharing the state).
    pub fn local_call_state(&self, person: &str) -> CallStatus {
        match self.legs.get(person) {
            Some(p) if p.answered > 0 => CallStatus::Busy,
            Some(p) if !p.calls.is_empty() => CallStatus::Ringing,
            _ => CallStatus::Free,
        }
    }

    /// Another node's word on the person's calls through it (free, ringing, busy).
    pub fn set_remote_call(&mut self, node: &str, person: &str, status: CallStatus) {
        let before = self.call_state(person);
        match status {
            CallStatus::Ringing | CallStatus::Busy => {
                self.remote_calls
                    .entry(person.to_string())
                    .or_default()
                    .insert(node.to_string(), status);
            }
            CallStatus::Free | CallStatus::Hidden => {
                if let Some(m) = self.remote_calls.get_mut(person) {
                    m.remove(node);
                    if m.is_empty() {
                        self.remote_calls.remove(person);
                    }
                }
            }
        }
        if self.call_state(person) != before {
            self.mark_changed(person);
        }
    }

    /// (node, person) of every call status held from other nodes.
    pub fn remote_calls(&self) -> impl Iterator<Item = (&str, &str)> {
        self.remote_calls
            .iter()
            .flat_map(|(p, m)| m.keys().map(move |n| (n.as_str(), p.as_str())))
    }

    /// Whether the person is in a call (for call waiting, team skipping, first available).
    pub fn in_call(&self, person: &str) -> bool {
        self.call_state(person) == CallStatus::Busy
    }

    /// The call status as colleagues see it: hidden unless the active profile shows it.
    pub fn call_status_for_colleagues(&self, person: &str) -> CallStatus {
        match self.people.get(person) {
            Some(p) if p.profile.shows_call_status => self.call_state(person),
            Some(_) => CallStatus::Hidden,
            None => CallStatus::Hidden,
        }
    }
}

/// Time spent in each status over `[from, to)`, from closed intervals and the open ones.
pub fn time_in_status(
    intervals: &[StatusInterval],
    current: &[(String, Availability, UnixTime)],
    people: &[&str],
    from: UnixTime,
    to: UnixTime,
) -> BTreeMap<Availability, i64> {
    let mut out = BTreeMap::new();
    let mut add = |a: Availability, s: UnixTime, e: UnixTime| {
        let (s, e) = (s.max(from), e.min(to));
        if e > s {
            *out.entry(a).or_insert(0) += e - s;
        }
    };
    for i in intervals
        .iter()
        .filter(|i| people.contains(&i.person.as_str()))
    {
        add(i.availability, i.from, i.to);
    }
    for (p, a, since) in current {
        if people.contains(&p.as_str()) {
            add(*a, *since, to);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn available() -> ProfileSpec {
        ProfileSpec {
            id: "available".into(),
            availability: Availability::Available,
            shows_call_status: true,
            message: None,
            standard_length: None,
        }
    }

    fn meeting() -> ProfileSpec {
        ProfileSpec {
            id: "meeting".into(),
            availability: Availability::Busy,
            shows_call_status: false,
            message: Some("In a meeting".into()),
            standard_length: Some(3600),
        }
    }

    fn api(who: &str) -> Actor {
        Actor {
            who: who.into(),
            via: Interface::Api,
        }
    }

    fn model() -> Presence {
        let mut p = Presence::new(available());
        p.ensure_person("alice", 0);
        p
    }

    #[test]
    fn colours_follow_the_reference() {
        assert_eq!(Availability::Available.colour(), Colour::Green);
        assert_eq!(Availability::Away.colour(), Colour::Yellow);
        assert_eq!(Availability::Custom.colour(), Colour::Yellow);
        assert_eq!(Availability::Busy.colour(), Colour::Red);
        assert_eq!(Availability::DoNotDisturb.colour(), Colour::Red);
        for a in Availability::ALL {
            assert_eq!(Availability::parse(a.as_str()), Some(a));
        }
        assert_eq!(
            Availability::parse("Do Not Disturb"),
            Some(Availability::DoNotDisturb)
        );
        assert_eq!(Availability::parse("active"), Some(Availability::Available));
    }

    #[test]
    fn a_person_first_seen_is_a_change_to_store() {
        let mut p = Presence::new(available());
        let c = p.ensure_person("alice", 50).expect("new");
        assert_eq!(
            (c.presence.status_since, c.presence.profile.id.as_str()),
            (50, "available")
        );
        assert_eq!((c.actor.via, c.closed), (Interface::System, None));
        assert_eq!(p.ensure_person("alice", 60), None);
        assert_eq!(p.get("alice").unwrap().status_since, 50);
    }

    #[test]
    fn profile_standard_length_and_expiry_returns_default() {
        let mut p = model();
        let c = p
            .activate_profile("alice", &meeting(), None, None, api("alice"), 100)
            .unwrap();
        assert_eq!(c.presence.profile.until, Some(3700));
        assert_eq!(c.presence.availability, Availability::Busy);
        assert_eq!(
            c.closed.as_ref().unwrap().availability,
            Availability::Available
        );
        assert_eq!(p.next_end(), Some(3700));
        assert!(p.expire(3699).is_empty());
        // Noticed late (the daemon was down): takes effect at the end time.
        let back = p.expire(5000);
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].presence.profile.id, "available");
        assert_eq!(back[0].presence.status_since, 3700);
        assert_eq!(back[0].closed.as_ref().unwrap().to, 3700);
        assert_eq!(back[0].actor.via, Interface::System);
        assert_eq!(p.next_end(), None);
    }

    #[test]
    fn explicit_end_time_must_be_in_the_future() {
        let mut p = model();
        assert_eq!(
            p.activate_profile("alice", &meeting(), Some(50), None, api("alice"), 100),
            Err(PresenceError::EndTimeInPast)
        );
        let c = p
            .activate_profile("alice", &meeting(), Some(200), None, api("alice"), 100)
            .unwrap();
        assert_eq!(c.presence.profile.until, Some(200));
        let far = 100 + MAX_END_AHEAD + 1;
        assert_eq!(
            p.activate_profile("alice", &meeting(), Some(far), None, api("alice"), 100),
            Err(PresenceError::EndTimeTooFar)
        );
        assert_eq!(
            p.set_status("alice", Availability::Away, None, Some(far), api("a"), 100),
            Err(PresenceError::EndTimeTooFar)
        );
        assert!(p
            .set_status(
                "alice",
                Availability::Away,
                None,
                Some(far - 1),
                api("a"),
                100
            )
            .is_ok());
        // A profile with a standard length and no end: its spec without the length.
        let endless = ProfileSpec {
            standard_length: None,
            ..meeting()
        };
        let c = p
            .activate_profile("alice", &endless, None, None, api("alice"), 100)
            .unwrap();
        assert_eq!(c.presence.profile.until, None);
    }

    #[test]
    fn temporary_message_resets_when_profile_changes() {
        let mut p = model();
        p.activate_profile(
            "alice",
            &meeting(),
            None,
            Some("Chat me if urgent".into()),
            api("alice"),
            0,
        )
        .unwrap();
        assert_eq!(p.get("alice").unwrap().message(), Some("Chat me if urgent"));
        p.set_message("alice", None, api("alice"), 1).unwrap();
        assert_eq!(p.get("alice").unwrap().message(), Some("In a meeting"));
        p.set_message("alice", Some("back at 3".into()), api("alice"), 2)
            .unwrap();
        p.activate_profile("alice", &available(), None, None, api("alice"), 3)
            .unwrap();
        assert_eq!(p.get("alice").unwrap().message(), None);
    }

    #[test]
    fn custom_status_needs_text_and_shows_it() {
        let mut p = model();
        assert_eq!(
            p.set_status("alice", Availability::Custom, None, None, api("alice"), 0),
            Err(PresenceError::CustomNeedsText)
        );
        p.set_status(
            "alice",
            Availability::Custom,
            Some("Out to lunch".into()),
            None,
            api("alice"),
            0,
        )
        .unwrap();
        assert_eq!(p.get("alice").unwrap().message(), Some("Out to lunch"));
        assert_eq!(
            p.get("alice").unwrap().availability.colour(),
            Colour::Yellow
        );
        let long = "x".repeat(MAX_MESSAGE + 1);
        assert!(p
            .set_status(
                "alice",
                Availability::Custom,
                Some(long),
                None,
                api("alice"),
                0
            )
            .is_err());
        assert!(p
            .set_status("bob", Availability::Away, None, None, api("bob"), 0)
            .is_err());
    }

    #[test]
    fn a_custom_text_wins_over_the_messages_while_the_status_is_custom() {
        let lunch = ProfileSpec {
            id: "lunch".into(),
            availability: Availability::Away,
            shows_call_status: false,
            message: Some("At lunch".into()),
            standard_length: None,
        };
        let mut p = model();
        p.activate_profile("alice", &lunch, None, None, api("alice"), 0)
            .unwrap();
        let c = p
            .set_status(
                "alice",
                Availability::Custom,
                Some("Out to lunch at the pub".into()),
                None,
                api("alice"),
                1,
            )
            .unwrap();
        assert_eq!(c.presence.message(), Some("Out to lunch at the pub"));
        // A temporary message goes when a Custom status is set.
        p.set_status(
            "alice",
            Availability::DoNotDisturb,
            Some("Focus".into()),
            None,
            api("alice"),
            2,
        )
        .unwrap();
        assert_eq!(p.get("alice").unwrap().message(), Some("Focus"));
        let c = p
            .set_status(
                "alice",
                Availability::Custom,
                Some("Gone fishing".into()),
                None,
                api("alice"),
                3,
            )
            .unwrap();
        assert_eq!(c.presence.message(), Some("Gone fishing"));
        assert_eq!(c.presence.temporary_message, None);
        // Back from Custom: the profile's message, not "Focus".
        let c = p
            .set_status("alice", Availability::Away, None, None, api("alice"), 4)
            .unwrap();
        assert_eq!(c.presence.message(), Some("At lunch"));
    }

    #[test]
    fn a_message_changes_alone_and_a_blank_one_clears_it() {
        let mut p = model();
        p.set_status(
            "alice",
            Availability::DoNotDisturb,
            None,
            Some(500),
            api("alice"),
            100,
        )
        .unwrap();
        let c = p
            .set_message("alice", Some("Back at 3".into()), api("alice"), 200)
            .unwrap();
        assert_eq!(c.presence.message(), Some("Back at 3"));
        assert_eq!(c.presence.status_end.as_ref().map(|e| e.at), Some(500));
        assert_eq!(c.presence.status_since, 100);
        assert_eq!(c.closed, None);
        assert_eq!(p.next_end(), Some(500));
        let c = p
            .set_message("alice", Some("  ".into()), api("alice"), 300)
            .unwrap();
        assert_eq!(c.presence.temporary_message, None);
        // A blank text with a status clears the message too.
        p.set_message("alice", Some("x".into()), api("alice"), 301)
            .unwrap();
        let c = p
            .set_status(
                "alice",
                Availability::Away,
                Some(String::new()),
                None,
                api("alice"),
                302,
            )
            .unwrap();
        assert_eq!(c.presence.temporary_message, None);
    }

    #[test]
    fn call_status_aggregates_across_devices_and_branches() {
        let mut p = model();
        assert_eq!(p.call_state("alice"), CallStatus::Free);
        p.leg("alice", "c1", "desk", LegState::Ringing);
        p.leg("alice", "c1", "mobile", LegState::Ringing);
        assert_eq!(p.call_state("alice"), CallStatus::Ringing);
        p.leg("alice", "c1", "desk", LegState::Answered);
        // The cancelled branch must not make her look free.
        p.leg_ended("alice", "c1", "mobile");
        assert_eq!(p.call_state("alice"), CallStatus::Busy);
        assert!(p.in_call("alice"));
        // A second call ringing while in the first: still busy.
        p.leg("alice", "c2", "mobile", LegState::Ringing);
        assert_eq!(p.call_state("alice"), CallStatus::Busy);
        p.call_ended("c1");
        assert_eq!(p.call_state("alice"), CallStatus::Ringing);
        p.call_ended("c2");
        assert_eq!(p.call_state("alice"), CallStatus::Free);
    }

    #[test]
    fn calls_through_other_nodes_count_with_this_nodes_own() {
        let mut p = model();
        p.take_changed();
        p.set_remote_call("b", "alice", CallStatus::Ringing);
        assert_eq!(p.call_state("alice"), CallStatus::Ringing);
        assert_eq!(p.local_call_state("alice"), CallStatus::Free);
        assert_eq!(p.take_changed(), vec!["alice".to_string()]);
        p.set_remote_call("c", "alice", CallStatus::Busy);
        assert!(p.in_call("alice"));
        // What this node says of its own calls is its own legs only.
        p.leg("alice", "c1", "desk", LegState::Ringing);
        assert_eq!(p.local_call_state("alice"), CallStatus::Ringing);
        assert_eq!(p.call_state("alice"), CallStatus::Busy);
        p.take_changed();
        // Nothing seen changes: nobody is told.
        p.set_remote_call("b", "alice", CallStatus::Free);
        assert!(p.take_changed().is_empty());
        p.set_remote_call("c", "alice", CallStatus::Free);
        assert_eq!(p.call_state("alice"), CallStatus::Ringing);
        assert_eq!(p.take_changed(), vec!["alice".to_string()]);
        assert_eq!(p.remote_calls().count(), 0);
        p.set_remote_call("b", "bob", CallStatus::Busy);
        assert_eq!(p.remote_calls().collect::<Vec<_>>(), vec![("b", "bob")]);
    }

    #[test]
    fn a_call_ends_for_everyone_in_it_and_only_for_them() {
        let mut p = model();
        for i in 0..100 {
            p.leg("bob", &format!("c{i}"), "desk", LegState::Answered);
        }
        p.leg("alice", "c7", "caller", LegState::Answered);
        p.leg("alice", "c7", "caller", LegState::Answered); // again: counted once
        p.take_changed();
        p.call_ended("c7");
        assert_eq!(p.call_state("alice"), CallStatus::Free);
        assert_eq!(p.call_state("bob"), CallStatus::Busy);
        assert_eq!(
            p.take_changed(),
            vec!["alice".to_string(), "bob".to_string()]
        );
        for i in 0..100 {
            p.leg_ended("bob", &format!("c{i}"), "desk");
        }
        assert_eq!(p.call_state("bob"), CallStatus::Free);
        p.call_ended("c3"); // already gone: nothing happens
        assert!(p.take_changed().contains(&"bob".to_string()));
        assert!(p.take_changed().is_empty());
    }

    #[test]
    fn call_status_hidden_unless_profile_shows_it() {
        let mut p = model();
        p.leg("alice", "c1", "desk", LegState::Answered);
        assert_eq!(p.call_status_for_colleagues("alice"), CallStatus::Busy);
        p.activate_profile("alice", &meeting(), None, None, api("alice"), 0)
            .unwrap();
        assert_eq!(p.call_status_for_colleagues("alice"), CallStatus::Hidden);
        assert_eq!(p.call_status_for_colleagues("nobody"), CallStatus::Hidden);
    }

    #[test]
    fn a_status_with_an_end_time_lapses_back_by_itself() {
        let mut p = model();
        // Away (no end), then DND until 200 with a message: Away returns at 200.
        p.set_status("alice", Availability::Away, None, None, api("alice"), 10)
            .unwrap();
        let c = p
            .set_status(
                "alice",
                Availability::DoNotDisturb,
                Some("Focus".into()),
                Some(200),
                api("alice"),
                100,
            )
            .unwrap();
        assert_eq!(c.presence.status_end.as_ref().map(|e| e.at), Some(200));
        assert_eq!(p.next_end(), Some(200));
        assert!(p.expire(199).is_empty());
        // Noticed late (the daemon was down): takes effect at the end time.
        let back = p.expire(1000);
        assert_eq!(back.len(), 1);
        let b = &back[0];
        assert_eq!(b.presence.availability, Availability::Away);
        assert_eq!(
            b.presence.message(),
            None,
            "the message went with the status"
        );
        assert_eq!(b.presence.status_since, 200);
        assert_eq!(b.presence.status_end, None);
        assert_eq!(b.presence.profile.id, "available", "the profile stays");
        assert_eq!(
            b.closed.as_ref().map(|i| (i.availability, i.from, i.to)),
            Some((Availability::DoNotDisturb, 100, 200))
        );
        assert_eq!(b.actor.via, Interface::System);
        assert_eq!(p.next_end(), None);
    }

    #[test]
    fn a_timed_status_over_a_timed_status_returns_to_what_was_under_both() {
        let mut p = model();
        p.set_status("alice", Availability::Away, None, Some(300), api("a"), 0)
            .unwrap();
        p.set_status("alice", Availability::Busy, None, Some(100), api("a"), 50)
            .unwrap();
        // One end time in force: the later status's.
        assert_eq!(p.next_end(), Some(100));
        let back = p.expire(400);
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].presence.availability, Availability::Available);
        // A status without an end time clears a pending one.
        p.set_status("alice", Availability::Away, None, Some(900), api("a"), 500)
            .unwrap();
        p.set_status("alice", Availability::Busy, None, None, api("a"), 600)
            .unwrap();
        assert_eq!(p.next_end(), None);
        assert!(p.expire(10_000).is_empty());
        assert_eq!(
            p.set_status("alice", Availability::Away, None, Some(5), api("a"), 600),
            Err(PresenceError::EndTimeInPast)
        );
    }

    #[test]
    fn profile_and_status_end_times_interleave_in_time_order() {
        let mut p = model();
        // Meeting until 3700 (standard length); DND until 1000 on top of it.
        p.activate_profile("alice", &meeting(), None, None, api("a"), 100)
            .unwrap();
        p.set_status(
            "alice",
            Availability::DoNotDisturb,
            None,
            Some(1000),
            api("a"),
            200,
        )
        .unwrap();
        let changes = p.expire(5000);
        let seen: Vec<(UnixTime, Availability, &str)> = changes
            .iter()
            .map(|c| {
                (
                    c.presence.status_since,
                    c.presence.availability,
                    c.presence.profile.id.as_str(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                (1000, Availability::Busy, "meeting"),
                (3700, Availability::Available, "available")
            ]
        );
        // A profile ending first takes a timed status with it; activating one does too.
        p.activate_profile("alice", &meeting(), Some(6000), None, api("a"), 5000)
            .unwrap();
        p.set_status(
            "alice",
            Availability::Away,
            None,
            Some(9000),
            api("a"),
            5100,
        )
        .unwrap();
        let changes = p.expire(9500);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].presence.profile.id, "available");
        assert_eq!(p.next_end(), None);
        p.set_status(
            "alice",
            Availability::Away,
            None,
            Some(20_000),
            api("a"),
            10_000,
        )
        .unwrap();
        p.activate_profile("alice", &meeting(), Some(15_000), None, api("a"), 10_001)
            .unwrap();
        assert_eq!(p.get("alice").unwrap().status_end, None);
        assert_eq!(p.next_end(), Some(15_000));
    }

    #[test]
    fn status_ends_survive_being_stored_and_read_back() {
        let mut p = model();
        let c = p
            .set_status("alice", Availability::Busy, None, Some(500), api("a"), 100)
            .unwrap();
        let row = serde_json::to_vec(&c.presence).unwrap();
        // A row written before status end times existed reads as having none.
        let old = br#"{"availability":"away","custom_text":null,"temporary_message":null,"profile":{"id":"available","since":0,"until":null,"shows_call_status":true,"profile_message":null},"status_since":0}"#;
        let mut q = Presence::new(available());
        q.restore("alice".into(), serde_json::from_slice(&row).unwrap());
        q.restore("bob".into(), serde_json::from_slice(old).unwrap());
        assert_eq!(q.next_end(), Some(500));
        let back = q.expire(600);
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].presence.availability, Availability::Available);
    }

    #[test]
    fn a_removed_profile_returns_its_person_to_their_default() {
        let mut p = model();
        p.activate_profile("alice", &meeting(), None, None, api("a"), 0)
            .unwrap();
        let mut mine = available();
        mine.message = Some("In the office".into());
        p.set_personal_default("alice", Some(mine));
        let c = p.return_to_default("alice", api("a"), 10).unwrap();
        assert_eq!(c.presence.profile.id, "available");
        assert_eq!(c.presence.message(), Some("In the office"));
        assert_eq!(p.next_end(), None);
        p.set_personal_default("alice", None);
        assert_eq!(p.default_profile("alice").message, None);
    }

    #[test]
    fn time_in_status_over_a_range() {
        let mut p = model();
        p.ensure_person("bob", 0);
        let mut closed = Vec::new();
        closed.extend(
            p.set_status("alice", Availability::Away, None, None, api("a"), 100)
                .unwrap()
                .closed,
        );
        closed.extend(
            p.set_status("alice", Availability::Available, None, None, api("a"), 160)
                .unwrap()
                .closed,
        );
        closed.extend(
            p.set_status("bob", Availability::DoNotDisturb, None, None, api("b"), 50)
                .unwrap()
                .closed,
        );
        let current: Vec<(String, Availability, UnixTime)> = p
            .people()
            .map(|(k, v)| (k.clone(), v.availability, v.status_since))
            .collect();
        let alice = time_in_status(&closed, &current, &["alice"], 0, 200);
        assert_eq!(alice[&Availability::Available], 100 + 40);
        assert_eq!(alice[&Availability::Away], 60);
        let team = time_in_status(&closed, &current, &["alice", "bob"], 120, 200);
        assert_eq!(team[&Availability::Away], 40);
        assert_eq!(team[&Availability::DoNotDisturb], 80);
        assert_eq!(team[&Availability::Available], 40);
    }
}
