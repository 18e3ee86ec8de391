//! What the planner knows of the world at the moment of a call: plain data the daemon fills
//! from presence, registrations, call state and memory. The planner defines these types so
//! that it depends on nothing else.

use crate::model::{Availability, Profile};
use std::collections::HashMap;

/// The call to plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    pub from: Caller,
    /// What was dialled: an extension, a user id, a DID, or an external number.
    pub to: String,
    /// Seeds the `random` strategy, so a plan can be reproduced.
    pub call_id: String,
}

/// Who is calling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// A user of the policy (registered phone).
    User(String),
    /// A carrier trunk (the call is to one of its DIDs).
    Trunk { trunk: String, number: String },
    /// Anyone else.
    External(String),
}

/// A registered device of a person.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceView {
    /// Opaque id the executor uses (the binding's contact).
    pub id: String,
    /// Text matched by the policy's device `contact_match` (contact user, User-Agent…).
    pub label: String,
}

/// A person as the planner sees them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PersonView {
    pub availability: Option<Availability>,
    pub custom_text: Option<String>,
    /// The active profile's id (None: the default profile).
    pub profile: Option<String>,
    /// The person's own version of their active profile (one they created or changed
    /// through the presence API); when given, the planner uses it instead of the policy's
    /// profile of that id.
    pub own_profile: Option<Profile>,
    /// When the active profile ends (Unix seconds); None: no end time.
    pub profile_until: Option<i64>,
    pub devices: Vec<DeviceView>,
    pub in_call: bool,
}

/// What a group (team, or a user's forwarding) remembers of past calls.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GroupMemory {
    /// Who answered the previous call.
    pub last_answerer: Option<String>,
    /// When each member last answered (Unix seconds).
    pub last_answered: HashMap<String, i64>,
}

/// Everything the planner may look at.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct View {
    pub people: HashMap<String, PersonView>,
    /// Keyed by team id, or `forward:<user id>` for a user's forwarding group.
    pub memory: HashMap<String, GroupMemory>,
}

/// Where the planner reads the world from: plain [`View`] data (tests, `switchboard
/// explain`), or the daemon's live state (presence, registrations, memory) without copying
/// it. Implementations only read; the planner stays a pure function of what they return.
pub trait ViewSource {
    /// A person's view; unknown people are Available with no devices.
    fn person(&self, id: &str) -> PersonView;
    /// What a group remembers of past calls (empty when nothing).
    fn memory(&self, group: &str) -> GroupMemory;
}

impl ViewSource for View {
    fn person(&self, id: &str) -> PersonView {
        View::person(self, id)
    }

    fn memory(&self, group: &str) -> GroupMemory {
        self.memory.get(group).cloned().unwrap_or_default()
    }
}

impl View {
    /// A person's view; people not in the view are Available with no devices.
    pub fn person(&self, id: &str) -> PersonView {
        self.people.get(id).cloned().unwrap_or_default()
    }

    /// Builder: a person with `n` registered devices named `<id>-dev<i>`.
    pub fn with_person(mut self, id: &str, devices: usize) -> Self {
        let p = self.people.entry(id.to_string()).or_default();
        p.devices = (0..devices)
            .map(|i| DeviceView {
                id: format!("sip:{id}-dev{i}@127.0.0.1"),
                label: format!("{id}-dev{i}"),
            })
            .collect();
        self
    }

    /// Builder: sets a person's availability.
    pub fn with_status(mut self, id: &str, a: Availability) -> Self {
        self.people.entry(id.to_string()).or_default().availability = Some(a);
        self
    }

    /// Builder: marks a person as in a call.
    pub fn with_in_call(mut self, id: &str) -> Self {
        self.people.entry(id.to_string()).or_default().in_call = true;
        self
    }

    /// Builder: sets a person's active profile.
    pub fn with_profile(mut self, id: &str, profile: &str) -> Self {
        self.people.entry(id.to_string()).or_default().profile = Some(profile.to_string());
        self
    }

    /// Builder: sets a person's active profile to one of their own.
    pub fn with_own_profile(mut self, id: &str, profile: Profile) -> Self {
        let p = self.people.entry(id.to_string()).or_default();
        p.profile = Some(profile.id.clone());
        p.own_profile = Some(profile);
        self
    }

    /// Builder: who answered the previous call to a group.
    pub fn with_last_answerer(mut self, group: &str, who: &str, at: i64) -> Self {
        let m = self.memory.entry(group.to_string()).or_default();
        m.last_answerer = Some(who.to_string());
        m.last_answered.insert(who.to_string(), at);
        self
    }
}
