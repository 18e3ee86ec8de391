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

    /// Reads a status name; accepts the common synonyms (`active`, `do_not_disturb`, …).
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim().to_ascii_lowercase().replace(['-', ' '], "_");
        Some(match s.as_str() {
            "available" | "active" => Availability::Available,
            "away" => Availability::Away,
            "busy" => Availability::Busy,
            "dnd" | "do_not_disturb" => Availability::DoNotDisturb,
            "custom" => Availability::Custom,
            "unavailable" | "offline" => Availability::Unavailable,
            "on_break" | "break" => Availability::OnBreak,
            "after_call_work" | "acw" | "wrap_up" => Availability::AfterCallWork,
            _ => return None,
        })
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
}

impl PersonPresence {
    /// The message colleagues see: the temporary one, else the profile's, else a Custom
    /// status's text.
    pub fn message(&self) -> Option<&str> {
        self.temporary_message
            .as_deref()
            .or(self.profile.profile_message.as_deref())
            .or(self.custom_text.as_deref())
    }
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
    #[error("a custom status needs a text")]
    CustomNeedsText,
    #[error("status message longer than {0} characters")]
    MessageTooLong(usize),
}

/// Longest status message or custom text accepted.
pub const MAX_MESSAGE: usize = 200;

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

/// The presence of everyone, and their calls.
pub struct Presence {
    default_profile: ProfileSpec,
    people: BTreeMap<String, PersonPresence>,
    /// (end time, person) of every profile with an end time, earliest first.
    ends: BTreeSet<(UnixTime, String)>,
    /// person → (call id, leg id) → state.
    legs: HashMap<String, HashMap<(String, String), LegState>>,
    /// People whose presence or call status changed since [`Presence::take_changed`].
    changed: BTreeSet<String>,
}

impl Presence {
    /// `default_profile` is the profile that returns when another one ends (Available).
    pub fn new(default_profile: ProfileSpec) -> Self {
        Presence {
            default_profile,
            people: BTreeMap::new(),
            ends: BTreeSet::new(),
            legs: HashMap::new(),
            changed: BTreeSet::new(),
        }
    }

    fn default_state(&self, now: UnixTime) -> PersonPresence {
        PersonPresence {
            availability: self.default_profile.availability,
            custom_text: None,
            temporary_message: None,
            profile: ActiveProfile {
                id: self.default_profile.id.clone(),
                since: now,
                until: None,
                shows_call_status: self.default_profile.shows_call_status,
                profile_message: self.default_profile.message.clone(),
            },
            status_since: now,
        }
    }

    /// Adds a person (from the policy) in the default profile if not known yet.
    pub fn ensure_person(&mut self, person: &str, now: UnixTime) {
        if !self.people.contains_key(person) {
            let s = self.default_state(now);
            self.put(person.to_string(), s);
        }
    }

    /// Loads a person's stored presence (after a restart).
    pub fn restore(&mut self, person: String, presence: PersonPresence) {
        self.put(person, presence);
    }

    /// Stores a person's presence, keeping the end-time index in step.
    fn put(&mut self, person: String, presence: PersonPresence) {
        if let Some(until) = self.people.get(&person).and_then(|p| p.profile.until) {
            self.ends.remove(&(until, person.clone()));
        }
        if let Some(until) = presence.profile.until {
            self.ends.insert((until, person.clone()));
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
    /// active profile.
    pub fn set_status(
        &mut self,
        person: &str,
        availability: Availability,
        text: Option<String>,
        actor: Actor,
        now: UnixTime,
    ) -> Result<Changed, PresenceError> {
        Self::check_message(&text)?;
        let prev = self
            .people
            .get(person)
            .ok_or_else(|| PresenceError::UnknownPerson(person.into()))?
            .clone();
        let mut next = prev;
        next.availability = availability;
        if availability == Availability::Custom {
            let Some(t) = text.filter(|t| !t.trim().is_empty()) else {
                return Err(PresenceError::CustomNeedsText);
            };
            next.custom_text = Some(t);
        } else {
            next.custom_text = None;
            if text.is_some() {
                next.temporary_message = text;
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
        let until = match until {
            Some(t) if t <= now => return Err(PresenceError::EndTimeInPast),
            Some(t) => Some(t),
            None => spec.standard_length.filter(|l| *l > 0).map(|l| now + l),
        };
        let next = PersonPresence {
            availability: spec.availability,
            custom_text: None,
            temporary_message: message,
            profile: ActiveProfile {
                id: spec.id.clone(),
                since: now,
                until,
                shows_call_status: spec.shows_call_status,
                profile_message: spec.message.clone(),
            },
            status_since: now,
        };
        self.apply(person, next, actor, now)
    }

    /// Sets or clears the temporary message of the current activation.
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
        next.temporary_message = message;
        self.apply(person, next, actor, now)
    }

    /// The earliest profile end time still ahead.
    pub fn next_end(&self) -> Option<UnixTime> {
        self.ends.first().map(|(t, _)| *t)
    }

    /// Ends every profile whose end time has come (also one that passed while the daemon
    /// was down): the default profile returns. Returns the changes.
    pub fn expire(&mut self, now: UnixTime) -> Vec<Changed> {
        let due: Vec<(String, UnixTime)> = self
            .ends
            .iter()
            .take_while(|(t, _)| *t <= now)
            .map(|(t, p)| (p.clone(), *t))
            .collect();
        let mut out = Vec::new();
        for (person, at) in due {
            let mut next = self.default_state(at);
            next.profile.since = at;
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
        self.changed.insert(person.to_string());
        self.legs
            .entry(person.to_string())
            .or_default()
            .insert((call_id.to_string(), leg_id.to_string()), state);
    }

    /// A leg ended (cancelled, rejected, hung up).
    pub fn leg_ended(&mut self, person: &str, call_id: &str, leg_id: &str) {
        if let Some(m) = self.legs.get_mut(person) {
            if m.remove(&(call_id.to_string(), leg_id.to_string()))
                .is_some()
            {
                self.changed.insert(person.to_string());
            }
            if m.is_empty() {
                self.legs.remove(person);
            }
        }
    }

    /// Every leg of a call ended (the call is over).
    pub fn call_ended(&mut self, call_id: &str) {
        let changed = &mut self.changed;
        self.legs.retain(|person, m| {
            let before = m.len();
            m.retain(|(c, _), _| c != call_id);
            if m.len() != before {
                changed.insert(person.clone());
            }
            !m.is_empty()
        });
    }

    /// The person's call status across all devices and branches: busy if any leg is
    /// answered, ringing if any rings, free otherwise.
    pub fn call_state(&self, person: &str) -> CallStatus {
        match self.legs.get(person) {
            Some(m) if m.values().any(|s| *s == LegState::Answered) => CallStatus::Busy,
            Some(m) if !m.is_empty() => CallStatus::Ringing,
            _ => CallStatus::Free,
        }
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
            p.set_status("alice", Availability::Custom, None, api("alice"), 0),
            Err(PresenceError::CustomNeedsText)
        );
        p.set_status(
            "alice",
            Availability::Custom,
            Some("Out to lunch".into()),
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
            .set_status("alice", Availability::Custom, Some(long), api("alice"), 0)
            .is_err());
        assert!(p
            .set_status("bob", Availability::Away, None, api("bob"), 0)
            .is_err());
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
    fn time_in_status_over_a_range() {
        let mut p = model();
        p.ensure_person("bob", 0);
        let mut closed = Vec::new();
        closed.extend(
            p.set_status("alice", Availability::Away, None, api("a"), 100)
                .unwrap()
                .closed,
        );
        closed.extend(
            p.set_status("alice", Availability::Available, None, api("a"), 160)
                .unwrap()
                .closed,
        );
        closed.extend(
            p.set_status("bob", Availability::DoNotDisturb, None, api("b"), 50)
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
