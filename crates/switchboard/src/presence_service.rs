//! People's presence inside the daemon: the presence model, fed by each person's profiles
//! (the policy's, with their own changes), answering the API's commands, with every
//! acknowledged change made durable first.
//!
//! Sans-I/O like the core that owns it: commands and the time come in, answers and the
//! rows to store go out.

use crate::profiles::{Effective, Entry, Origin, Overlay};
use std::collections::{BTreeMap, BTreeSet};
use switchboard_policy::profile::{id_from_name, id_problem, next_free_number};
use switchboard_policy::{
    build_profile, number_problem, Availability as PolicyAvailability, IncomingHandling,
    MailboxOwner, PersonView, Policy, Profile, ProfileDraft,
};
use switchboard_presence::model::{
    time_in_status, Actor, Availability, CallStatus, Changed, Interface, PersonPresence, Presence,
    PresenceError as ModelError, ProfileSpec, StatusInterval, UnixTime,
};
use switchboard_store::tables::{status_log_key, PRESENCE, STATUS_LOG};
use switchboard_store::Write;

/// Whose time in status a report is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReportSubject {
    User(String),
    Team(String),
}

/// What a caller of the presence interfaces asks.
#[derive(Clone, Debug)]
pub enum Command {
    List,
    Get {
        user: String,
    },
    SetStatus {
        user: String,
        status: String,
        text: Option<String>,
        /// End time (Unix seconds): the status before returns then. None: no end.
        until: Option<UnixTime>,
    },
    /// Sets (Some) or clears (None or blank) the temporary message of the current
    /// activation; the status, its end time and the profile stay.
    SetMessage {
        user: String,
        message: Option<String>,
    },
    SetProfile {
        user: String,
        /// A profile id or number.
        profile: String,
        /// When it ends; None: after the profile's standard length (if it has one).
        until: Option<ProfileEnd>,
        message: Option<String>,
    },
    /// A person's profiles (None: the policy's, everyone's base set).
    Profiles {
        user: Option<String>,
    },
    /// One profile of a person's set, by id or number.
    Profile {
        user: String,
        profile: String,
    },
    CreateProfile {
        user: String,
        /// None: made from the name.
        id: Option<String>,
        draft: ProfileDraft,
    },
    /// Changes (and renames) a profile of a person's set; settings not given stay.
    UpdateProfile {
        user: String,
        profile: String,
        draft: ProfileDraft,
    },
    RemoveProfile {
        user: String,
        profile: String,
    },
    /// Who a time-in-status report covers and their current status, answered once every
    /// earlier change is in the store (which the caller then reads).
    Report {
        subject: ReportSubject,
    },
    /// Something asked of a person's or team's mailbox; the core's mailboxes answer it
    /// (`crate::voicemail::handle`), not the presence service.
    Voicemail {
        mailbox: MailboxOwner,
        action: crate::voicemail::Action,
    },
}

/// When an activated profile ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProfileEnd {
    /// At this time (Unix seconds).
    At(UnixTime),
    /// Not by itself, not even after the profile's standard length: when another profile
    /// is activated.
    Never,
}

/// A command with who sends it.
#[derive(Clone, Debug)]
pub struct Request {
    pub who: String,
    pub admin: bool,
    pub via: Interface,
    pub command: Command,
}

/// Why a command was refused, as each interface tells it in its own terms (the API an HTTP
/// status, SIP a response code).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The command asks for something that cannot be: an unknown status, profile settings
    /// that do not hold, an end time in the past.
    Invalid,
    /// The caller may not do this (another person's presence or profiles, a caller ID not
    /// theirs).
    Forbidden,
    /// No such person, team or profile.
    NotFound,
    /// It clashes with what is there: a profile id or number taken, the default profile.
    Conflict,
    /// The change could not be stored (it was undone); it may work if tried again.
    Unavailable,
}

/// A refused command: what kind of refusal, the offending field and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PresenceError {
    pub kind: ErrorKind,
    pub field: Option<String>,
    pub message: String,
}

impl PresenceError {
    pub fn new(kind: ErrorKind, field: Option<&str>, message: impl Into<String>) -> Self {
        PresenceError {
            kind,
            field: field.map(str::to_string),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for PresenceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.field {
            Some(field) => write!(f, "{field}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for PresenceError {}

/// A person as colleagues see them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PresenceView {
    pub user: String,
    pub availability: Availability,
    /// What colleagues read: a Custom status's text, else the temporary message, else the
    /// profile's.
    pub message: Option<String>,
    /// The text of a Custom status.
    pub custom_text: Option<String>,
    /// When the status lapses by itself (None: it does not).
    pub status_until: Option<UnixTime>,
    /// Since when the status has been this one.
    pub status_since: UnixTime,
    pub profile: ActiveProfileView,
    /// Hidden unless the active profile shows it.
    pub call_status: CallStatus,
    /// How many devices the person has registered now (the registrar's to fill in; 0 as
    /// the presence service builds the view).
    pub devices: u32,
    /// Whether the person has a SIP account to register devices with.
    pub registers: bool,
}

/// A person's active profile as colleagues see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActiveProfileView {
    pub id: String,
    /// Its name and number in the person's set (None when it is no longer in it).
    pub name: Option<String>,
    pub number: Option<u32>,
    pub since: UnixTime,
    /// When the default profile returns by itself (None: not by itself).
    pub until: Option<UnixTime>,
}

/// A profile of the policy's set or of a person's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProfileView {
    /// The profile as it is in the set (the policy's, with the person's changes).
    pub profile: Profile,
    pub origin: Origin,
    /// Whether it is the policy's default profile (the one that returns).
    pub default: bool,
    /// In a person's list of profiles: whether it is their active one. None elsewhere.
    pub active: Option<bool>,
}

/// The answer to a command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Everyone in the policy ([`Command::List`]).
    People(Vec<PresenceView>),
    /// One person: [`Command::Get`], and the person after a change of status, message or
    /// profile.
    Person(PresenceView),
    /// The policy's profiles (`user` None) or a person's set ([`Command::Profiles`]).
    Profiles {
        user: Option<String>,
        profiles: Vec<ProfileView>,
    },
    /// One profile: [`Command::Profile`], and a profile as created or changed.
    Profile(ProfileView),
    /// A removed profile, and its person after (back in their default profile when it was
    /// the active one).
    Removed {
        removed: ProfileView,
        presence: PresenceView,
    },
    /// Who a time-in-status report covers and where they stand ([`Command::Report`]).
    Report(ReportSnapshot),
    /// What a mailbox answered ([`Command::Voicemail`]).
    Voicemail(crate::voicemail::Answer),
}

/// The answer to a command, or why it was refused.
pub type Reply = Result<Answer, PresenceError>;

/// What puts things back as they were when a change could not be stored.
#[derive(Clone, Debug, Default)]
pub struct Undo {
    people: Vec<(String, PersonPresence)>,
    profiles: Vec<(String, String, Option<Entry>)>,
    /// People's own default profiles as they were.
    defaults: Vec<(String, Option<ProfileSpec>)>,
    /// People first seen by this change whose default state it was to store.
    unsaved: Vec<String>,
}

/// A change made in memory, to store before it is acknowledged.
#[derive(Debug)]
pub struct Pending {
    pub answer: Answer,
    pub writes: Vec<Write>,
    /// The state before, to put back if storing fails.
    pub before: Undo,
}

pub fn availability(a: PolicyAvailability) -> Availability {
    match a {
        PolicyAvailability::Available => Availability::Available,
        PolicyAvailability::Away => Availability::Away,
        PolicyAvailability::Busy => Availability::Busy,
        PolicyAvailability::DoNotDisturb => Availability::DoNotDisturb,
        PolicyAvailability::Custom => Availability::Custom,
        PolicyAvailability::Unavailable => Availability::Unavailable,
        PolicyAvailability::OnBreak => Availability::OnBreak,
        PolicyAvailability::AfterCallWork => Availability::AfterCallWork,
    }
}

/// The policy's name for a presence availability (the planner's view).
pub fn policy_availability(a: Availability) -> PolicyAvailability {
    match a {
        Availability::Available => PolicyAvailability::Available,
        Availability::Away => PolicyAvailability::Away,
        Availability::Busy => PolicyAvailability::Busy,
        Availability::DoNotDisturb => PolicyAvailability::DoNotDisturb,
        Availability::Custom => PolicyAvailability::Custom,
        Availability::Unavailable => PolicyAvailability::Unavailable,
        Availability::OnBreak => PolicyAvailability::OnBreak,
        Availability::AfterCallWork => PolicyAvailability::AfterCallWork,
    }
}

fn spec(p: &Profile) -> ProfileSpec {
    ProfileSpec {
        id: p.id.clone(),
        availability: availability(p.availability),
        shows_call_status: p.shows_call_status,
        message: p.message.clone(),
        standard_length: p.standard_length.map(i64::from),
    }
}

fn system() -> Actor {
    Actor {
        who: "switchboard".into(),
        via: Interface::System,
    }
}

/// Who a report covers and where they stand, as the core answers [`Command::Report`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportSnapshot {
    pub user: Option<String>,
    pub team: Option<String>,
    /// Each person's current status and since when.
    pub people: Vec<(String, Availability, UnixTime)>,
    /// When the snapshot was taken.
    pub as_of: UnixTime,
}

/// Seconds spent in each status (every status, 0 for those not held).
pub type Seconds = BTreeMap<Availability, i64>;

/// A time-in-status report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimeInStatus {
    /// The person it covers, or the team (one of the two).
    pub user: Option<String>,
    pub team: Option<String>,
    /// The range, `[from, to)`.
    pub from: UnixTime,
    pub to: UnixTime,
    /// When the snapshot it counts up to was taken.
    pub as_of: UnixTime,
    /// Everyone covered, added up.
    pub total: Seconds,
    /// For a team: the total per member.
    pub average: Option<Seconds>,
    pub people: Vec<PersonTime>,
}

/// One person's time in status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PersonTime {
    pub user: String,
    pub current: Availability,
    pub seconds: Seconds,
}

/// The time-in-status report over `[from, to)` (`to` no later than the snapshot): each
/// person's seconds per status from their stored intervals (`log`) and their open one, the
/// total, and for a team the average per member.
pub fn report(
    snapshot: &ReportSnapshot,
    log: &[StatusInterval],
    from: UnixTime,
    to: UnixTime,
) -> TimeInStatus {
    let to = to.min(snapshot.as_of);
    let seconds = |m: &BTreeMap<Availability, i64>| -> Seconds {
        Availability::ALL
            .iter()
            .map(|a| (*a, m.get(a).copied().unwrap_or(0)))
            .collect()
    };
    let mut total: BTreeMap<Availability, i64> = BTreeMap::new();
    let mut people = Vec::new();
    for (user, current, since) in &snapshot.people {
        // Rows stored after the snapshot belong to later intervals than the open one.
        let closed: Vec<StatusInterval> = log
            .iter()
            .filter(|i| i.person == *user && i.from < *since)
            .cloned()
            .collect();
        let open = [(user.clone(), *current, *since)];
        let mine = time_in_status(&closed, &open, &[user.as_str()], from, to);
        for (a, s) in &mine {
            *total.entry(*a).or_insert(0) += s;
        }
        people.push(PersonTime {
            user: user.clone(),
            current: *current,
            seconds: seconds(&mine),
        });
    }
    let average = snapshot.team.as_ref().map(|_| {
        let n = snapshot.people.len().max(1) as i64;
        let avg: BTreeMap<Availability, i64> = total.iter().map(|(a, s)| (*a, s / n)).collect();
        seconds(&avg)
    });
    TimeInStatus {
        user: snapshot.user.clone(),
        team: snapshot.team.clone(),
        from,
        to,
        as_of: snapshot.as_of,
        total: seconds(&total),
        average,
        people,
    }
}

pub struct PresenceService {
    model: Presence,
    profiles: Overlay,
    /// People of the policy seen for the first time whose default state is not in the
    /// store yet: their rows go with the next write.
    unsaved: BTreeSet<String>,
}

impl PresenceService {
    pub fn new(policy: &Policy) -> Self {
        PresenceService {
            model: Presence::new(spec(policy.default_profile())),
            profiles: Overlay::default(),
            unsaved: BTreeSet::new(),
        }
    }

    /// Adds the policy's people not known yet, in their default profile, and owes the
    /// store their rows (so their time in it counts across a restart).
    fn ensure_people(&mut self, policy: &Policy, now: UnixTime) {
        for u in policy.users() {
            if let Some(c) = self.model.ensure_person(&u.id, now) {
                self.unsaved.insert(c.person);
            }
        }
    }

    /// The rows owed to the store for people first seen (taken: the caller stores them),
    /// and who they are.
    fn take_unsaved(&mut self) -> (Vec<Write>, Vec<String>) {
        let people: Vec<String> = std::mem::take(&mut self.unsaved).into_iter().collect();
        let writes = people
            .iter()
            .filter_map(|u| self.model.get(u).map(|p| presence_row(u, p)))
            .collect();
        (writes, people)
    }

    /// The policy was replaced: its default profile is the one that returns, people new
    /// in it begin in their default profile (the rows returned store that), and everyone
    /// is marked changed for their watchers (a profile's name may have changed).
    pub fn policy_changed(&mut self, policy: &Policy, now: UnixTime) -> Vec<Write> {
        self.model
            .set_default_profile(spec(policy.default_profile()));
        let with_changes: Vec<String> = self.profiles.people().cloned().collect();
        for u in with_changes {
            self.refresh_default(&u, policy);
        }
        self.ensure_people(policy, now);
        let everyone: Vec<String> = self.model.people().map(|(u, _)| u.clone()).collect();
        for u in everyone {
            self.model.mark_changed(&u);
        }
        self.take_unsaved().0
    }

    pub fn model(&self) -> &Presence {
        &self.model
    }

    /// The model, for the call legs routing reports (call status is not stored).
    pub fn model_mut(&mut self) -> &mut Presence {
        &mut self.model
    }

    pub fn overlay(&self) -> &Overlay {
        &self.profiles
    }

    /// Loads people's own profiles from the store (before [`PresenceService::restore`]).
    pub fn restore_profiles(&mut self, rows: Vec<(String, Vec<u8>)>) -> usize {
        self.profiles.restore(rows)
    }

    /// Loads stored presence, adds the policy's people not seen yet, puts back in their
    /// default profile anyone whose active profile is gone from their set, and ends
    /// profiles and statuses whose end time passed while the daemon was down. Returns the
    /// rows to store.
    pub fn restore(
        &mut self,
        stored: Vec<(String, Vec<u8>)>,
        policy: &Policy,
        now: UnixTime,
    ) -> Vec<Write> {
        for (user, value) in stored {
            match serde_json::from_slice::<PersonPresence>(&value) {
                Ok(p) => self.model.restore(user, p),
                Err(e) => {
                    tracing::warn!(user, error = %e, "unreadable presence in the store; skipped")
                }
            }
        }
        let with_changes: Vec<String> = self.profiles.people().cloned().collect();
        for u in with_changes {
            self.refresh_default(&u, policy);
        }
        self.ensure_people(policy, now);
        let mut writes = self.expire(now);
        let gone: Vec<String> = self
            .model
            .people()
            .filter(|(u, p)| self.profiles.profile(policy, u, &p.profile.id).is_none())
            .map(|(u, _)| u.clone())
            .collect();
        for u in gone {
            if let Ok(c) = self.model.return_to_default(&u, system(), now) {
                log_change(&c);
                writes.extend(rows(&c));
            }
        }
        writes
    }

    /// Holds a person's presence as another node stored it (a row of the shared store), and
    /// marks them changed for their watchers. A removed row is left as held: presence is
    /// kept for everyone in the policy.
    pub fn apply_shared(&mut self, user: &str, row: Option<&[u8]>) {
        let Some(row) = row else { return };
        match serde_json::from_slice::<PersonPresence>(row) {
            Ok(p) => {
                self.model.restore(user.to_string(), p);
                self.model.mark_changed(user);
            }
            Err(e) => {
                tracing::warn!(user, error = %e, "unreadable presence from another node; skipped")
            }
        }
    }

    /// Holds a person's own profile as another node stored it (None: removed); `key` is
    /// the row's key (person and profile).
    pub fn apply_shared_profile(&mut self, key: &str, row: Option<&[u8]>, policy: &Policy) {
        let Some((user, id)) = key.split_once('\n') else {
            tracing::warn!(
                key,
                "profile row from another node with an unreadable key; skipped"
            );
            return;
        };
        match row {
            None => {
                self.profiles.set(user, id, None);
            }
            Some(row) => {
                if self.profiles.restore(vec![(key.to_string(), row.to_vec())]) == 0 {
                    return;
                }
            }
        }
        self.refresh_default(user, policy);
        self.model.mark_changed(user);
    }

    /// When the next profile or status ends.
    pub fn next_end(&self) -> Option<UnixTime> {
        self.model.next_end()
    }

    /// Ends the profiles and statuses due by `now`. Rows to store (with those still owed
    /// for people first seen).
    pub fn expire(&mut self, now: UnixTime) -> Vec<Write> {
        let (mut writes, _) = self.take_unsaved();
        for c in self.model.expire(now) {
            log_change(&c);
            writes.extend(rows(&c));
        }
        writes
    }

    /// Keeps the model's idea of a person's default profile in step with their set.
    fn refresh_default(&mut self, user: &str, policy: &Policy) {
        let d = policy.default_profile();
        let own = self
            .profiles
            .profile(policy, user, &d.id)
            .filter(|e| e.origin != Origin::Policy)
            .map(|e| spec(&e.profile));
        self.model.set_personal_default(user, own);
    }

    /// Answers a read, or makes a change in memory and returns it to be stored. People
    /// new in the policy begin in their default profile here; the rows that store it go
    /// with this answer (a read then waits for them too).
    pub fn handle(
        &mut self,
        req: &Request,
        policy: &Policy,
        now: UnixTime,
    ) -> Result<Result<Answer, Pending>, PresenceError> {
        // A reload may have changed the default profile or added people.
        self.model
            .set_default_profile(spec(policy.default_profile()));
        self.ensure_people(policy, now);
        let (fresh, people) = self.take_unsaved();
        let result = self.answer(req, policy, now);
        if fresh.is_empty() {
            return result;
        }
        match result {
            Err(e) => {
                self.unsaved.extend(people);
                Err(e)
            }
            Ok(Ok(answer)) => Ok(Err(Pending {
                answer,
                writes: fresh,
                before: Undo {
                    unsaved: people,
                    ..Undo::default()
                },
            })),
            Ok(Err(mut p)) => {
                p.writes.splice(0..0, fresh);
                p.before.unsaved.extend(people);
                Ok(Err(p))
            }
        }
    }

    fn answer(
        &mut self,
        req: &Request,
        policy: &Policy,
        now: UnixTime,
    ) -> Result<Result<Answer, Pending>, PresenceError> {
        let known = |user: &str| -> Result<(), PresenceError> {
            match policy.user(user) {
                Some(_) => Ok(()),
                None => Err(PresenceError::new(
                    ErrorKind::NotFound,
                    Some("user"),
                    format!("no user {user:?}"),
                )),
            }
        };
        let own = |user: &str, refusal: &str| -> Result<(), PresenceError> {
            known(user)?;
            if !req.admin && req.who != user {
                return Err(PresenceError::new(
                    ErrorKind::Forbidden,
                    Some("user"),
                    refusal,
                ));
            }
            Ok(())
        };
        no_control_characters(&req.command)?;
        const OWN_PRESENCE: &str = "a person may change only their own presence";
        const SEE_PROFILES: &str = "a person may see only their own profiles";
        const OWN_PROFILES: &str = "a person may change only their own profiles";
        let actor = Actor {
            who: req.who.clone(),
            via: req.via,
        };
        match &req.command {
            // A stored row of someone no longer in the policy is not shown.
            Command::List => {
                let people = self
                    .model
                    .people()
                    .filter(|(u, _)| policy.user(u).is_some())
                    .map(|(u, p)| self.view_of(u, p, policy))
                    .collect();
                Ok(Ok(Answer::People(people)))
            }
            Command::Get { user } => {
                known(user)?;
                match self.view(user, policy) {
                    Some(v) => Ok(Ok(Answer::Person(v))),
                    None => Err(PresenceError::new(
                        ErrorKind::NotFound,
                        Some("user"),
                        format!("no user {user:?}"),
                    )),
                }
            }
            Command::SetStatus {
                user,
                status,
                text,
                until,
            } => {
                own(user, OWN_PRESENCE)?;
                let a = Availability::parse(status).ok_or_else(|| {
                    PresenceError::new(ErrorKind::Invalid, Some("status"), format!("unknown status {status:?}: use available, away, busy, dnd, custom, unavailable, on_break or after_call_work"))
                })?;
                let before = self.before(user)?;
                let c = self
                    .model
                    .set_status(user, a, text.clone(), *until, actor, now)
                    .map_err(|e| model_error(e, "text"))?;
                Ok(Err(self.pending(c, before, policy)))
            }
            Command::SetMessage { user, message } => {
                own(user, OWN_PRESENCE)?;
                let before = self.before(user)?;
                let c = self
                    .model
                    .set_message(user, message.clone(), actor, now)
                    .map_err(|e| model_error(e, "message"))?;
                Ok(Err(self.pending(c, before, policy)))
            }
            Command::SetProfile {
                user,
                profile,
                until,
                message,
            } => {
                own(user, OWN_PRESENCE)?;
                let p = self.profiles.find(policy, user, profile).ok_or_else(|| {
                    PresenceError::new(
                        ErrorKind::Invalid,
                        Some("profile"),
                        format!("no profile {profile:?}"),
                    )
                })?;
                let before = self.before(user)?;
                let mut spec = spec(&p.profile);
                let until = match until {
                    Some(ProfileEnd::At(t)) => Some(*t),
                    Some(ProfileEnd::Never) => {
                        spec.standard_length = None;
                        None
                    }
                    None => None,
                };
                let c = self
                    .model
                    .activate_profile(user, &spec, until, message.clone(), actor, now)
                    .map_err(|e| model_error(e, "message"))?;
                Ok(Err(self.pending(c, before, policy)))
            }
            Command::Profiles { user: None } => {
                let d = &policy.default_profile().id;
                let profiles = policy
                    .profiles()
                    .into_iter()
                    .map(|p| ProfileView {
                        profile: p.clone(),
                        origin: Origin::Policy,
                        default: p.id == *d,
                        active: None,
                    })
                    .collect();
                Ok(Ok(Answer::Profiles {
                    user: None,
                    profiles,
                }))
            }
            Command::Profiles { user: Some(user) } => {
                own(user, SEE_PROFILES)?;
                let d = &policy.default_profile().id;
                let active = self.model.get(user).map(|p| p.profile.id.clone());
                let profiles = self
                    .profiles
                    .profiles(policy, user)
                    .into_iter()
                    .map(|e| ProfileView {
                        default: e.profile.id == *d,
                        active: Some(active.as_deref() == Some(e.profile.id.as_str())),
                        profile: e.profile,
                        origin: e.origin,
                    })
                    .collect();
                Ok(Ok(Answer::Profiles {
                    user: Some(user.clone()),
                    profiles,
                }))
            }
            Command::Profile { user, profile } => {
                own(user, SEE_PROFILES)?;
                let e = self.find_profile(policy, user, profile)?;
                Ok(Ok(Answer::Profile(self.profile_view(&e, policy))))
            }
            Command::CreateProfile { user, id, draft } => {
                own(user, OWN_PROFILES)?;
                self.create_profile(user, id.as_deref(), draft, &actor, req.admin, policy)
                    .map(Err)
            }
            Command::UpdateProfile {
                user,
                profile,
                draft,
            } => {
                own(user, OWN_PROFILES)?;
                self.update_profile(user, profile, draft, &actor, req.admin, policy)
                    .map(Err)
            }
            Command::RemoveProfile { user, profile } => {
                own(user, OWN_PROFILES)?;
                self.remove_profile(user, profile, actor, policy, now)
                    .map(Err)
            }
            Command::Report { subject } => {
                let (people, user, team) = match subject {
                    ReportSubject::User(u) => {
                        known(u)?;
                        if !req.admin && req.who != *u {
                            return Err(PresenceError::new(
                                ErrorKind::Forbidden,
                                Some("user"),
                                "a person may see only their own report; others' and teams' need the admin token",
                            ));
                        }
                        (vec![u.clone()], Some(u.clone()), None)
                    }
                    ReportSubject::Team(t) => {
                        let team = policy.team(t).ok_or_else(|| {
                            PresenceError::new(
                                ErrorKind::NotFound,
                                Some("team"),
                                format!("no team {t:?}"),
                            )
                        })?;
                        if !req.admin {
                            return Err(PresenceError::new(
                                ErrorKind::Forbidden,
                                Some("team"),
                                "team reports need the admin token",
                            ));
                        }
                        (team.members.clone(), None, Some(t.clone()))
                    }
                };
                let snapshot = ReportSnapshot {
                    user,
                    team,
                    people: people
                        .iter()
                        .filter(|u| policy.user(u).is_some())
                        .filter_map(|u| {
                            self.model
                                .get(u)
                                .map(|p| (u.clone(), p.availability, p.status_since))
                        })
                        .collect(),
                    as_of: now,
                };
                // Answered after the store has taken every earlier change (an empty write
                // waits for them), so the log read next holds every closed interval.
                Ok(Err(Pending {
                    answer: Answer::Report(snapshot),
                    writes: Vec::new(),
                    before: Undo::default(),
                }))
            }
            Command::Voicemail { .. } => Err(PresenceError::new(
                ErrorKind::Invalid,
                None,
                "a mailbox's command is answered by the mailboxes, not the presence service",
            )),
        }
    }

    fn find_profile(
        &self,
        policy: &Policy,
        user: &str,
        key: &str,
    ) -> Result<Effective, PresenceError> {
        self.profiles.find(policy, user, key).ok_or_else(|| {
            PresenceError::new(
                ErrorKind::NotFound,
                Some("profile"),
                format!("{user} has no profile {key:?}"),
            )
        })
    }

    /// Checks a built profile against the rest of the person's set and the policy. A
    /// caller ID the person (not the admin) sets now must be one of the numbers the
    /// operator gave them: their own caller ID, their per-profile ones, or the policy
    /// profile's.
    fn check_in_set(
        &self,
        p: &Profile,
        user: &str,
        caller_id_set_by_person: bool,
        policy: &Policy,
    ) -> Result<(), PresenceError> {
        if let (Some(c), true) = (&p.caller_id, caller_id_set_by_person) {
            let u = policy.user(user);
            let mut theirs = u
                .and_then(|u| u.caller_id.as_ref())
                .into_iter()
                .chain(u.into_iter().flat_map(|u| u.profile_caller_ids.values()))
                .chain(policy.profile(&p.id).and_then(|b| b.caller_id.as_ref()));
            if !theirs.any(|n| n == c) {
                return Err(PresenceError::new(
                    ErrorKind::Forbidden,
                    Some("caller_id"),
                    format!("{c} is not one of {user}'s numbers; the admin token may set any"),
                ));
            }
        }
        if let IncomingHandling::SendTo(t) = &p.incoming {
            if let Some(m) = policy.target_problem(t) {
                return Err(PresenceError::new(ErrorKind::Invalid, Some("incoming"), m));
            }
        }
        let set = self.profiles.profiles(policy, user);
        if let Some(m) = number_problem(p, set.iter().map(|e| &e.profile)) {
            return Err(PresenceError::new(ErrorKind::Invalid, Some("number"), m));
        }
        Ok(())
    }

    /// A person's profile `id` changed: when it is their active one, what colleagues see
    /// of them (its name) may have changed, so their watchers are to be told.
    fn profile_changed(&mut self, user: &str, id: &str) {
        if self.model.get(user).is_some_and(|p| p.profile.id == id) {
            self.model.mark_changed(user);
        }
    }

    /// The person's own name for their active profile (their set's: the policy's, or as
    /// they renamed it, or one of their own); None for someone unknown.
    pub fn active_profile_name(&self, user: &str, policy: &Policy) -> Option<String> {
        let p = self.model.get(user)?;
        self.profiles
            .profile(policy, user, &p.profile.id)
            .map(|e| e.profile.name)
    }

    /// Stores a person's entry for a profile (in memory now; the row goes with the answer).
    fn put_entry(
        &mut self,
        user: &str,
        id: &str,
        entry: Option<Entry>,
        undo: &mut Undo,
        writes: &mut Vec<Write>,
        policy: &Policy,
    ) {
        writes.push(Overlay::write(user, id, entry.as_ref()));
        let prev = self.profiles.set(user, id, entry);
        undo.profiles.push((user.to_string(), id.to_string(), prev));
        self.profile_changed(user, id);
        if id == policy.default_profile().id {
            let d = self.model.personal_default(user).cloned();
            undo.defaults.push((user.to_string(), d));
            self.refresh_default(user, policy);
        }
    }

    fn create_profile(
        &mut self,
        user: &str,
        id: Option<&str>,
        draft: &ProfileDraft,
        actor: &Actor,
        admin: bool,
        policy: &Policy,
    ) -> Result<Pending, PresenceError> {
        let id = match id {
            Some(i) => i.trim().to_string(),
            None => {
                let name = draft.name.as_deref().unwrap_or("");
                let id = id_from_name(name);
                if id.is_empty() {
                    return Err(PresenceError::new(
                        ErrorKind::Invalid,
                        Some("name"),
                        "a new profile needs a name (its id is made from it) or an id",
                    ));
                }
                id
            }
        };
        if let Some(m) = id_problem(&id) {
            return Err(PresenceError::new(ErrorKind::Invalid, Some("id"), m));
        }
        if self.profiles.profile(policy, user, &id).is_some() {
            return Err(PresenceError::new(
                ErrorKind::Conflict,
                Some("id"),
                format!("{user} already has a profile {id:?}; change it instead"),
            ));
        }
        // A policy profile the person removed comes back with these settings over it.
        let base = policy.profile(&id);
        let mut draft = draft.clone();
        if draft.number.is_none() && base.is_none() {
            let taken = self
                .profiles
                .profiles(policy, user)
                .into_iter()
                .map(|e| e.profile.number);
            let n = next_free_number(taken).ok_or_else(|| {
                PresenceError::new(
                    ErrorKind::Conflict,
                    Some("number"),
                    "no profile number is free",
                )
            })?;
            draft.number = Some(i64::from(n));
        }
        let p = build(&id, &draft, base)?;
        self.check_in_set(&p, user, !admin && draft.caller_id.is_some(), policy)?;
        self.store_profile(user, &id, draft, &p, "profile created", actor, policy)
    }

    fn update_profile(
        &mut self,
        user: &str,
        key: &str,
        patch: &ProfileDraft,
        actor: &Actor,
        admin: bool,
        policy: &Policy,
    ) -> Result<Pending, PresenceError> {
        let cur = self.find_profile(policy, user, key)?;
        let id = cur.profile.id.clone();
        if id == policy.default_profile().id
            && patch
                .number
                .is_some_and(|n| n != i64::from(cur.profile.number))
        {
            return Err(PresenceError::new(
                ErrorKind::Invalid,
                Some("number"),
                format!(
                    "the default profile keeps its number {}",
                    cur.profile.number
                ),
            ));
        }
        let before = match self.profiles.entry(user, &id) {
            Some(Entry::Changed(d)) => (**d).clone(),
            _ => ProfileDraft::default(),
        };
        let draft = before.merged(patch);
        let p = build(&id, &draft, policy.profile(&id))?;
        self.check_in_set(&p, user, !admin && patch.caller_id.is_some(), policy)?;
        self.store_profile(user, &id, draft, &p, "profile changed", actor, policy)
    }

    /// Puts a person's version of a profile in their set, logs it, and answers with it.
    #[allow(clippy::too_many_arguments)]
    fn store_profile(
        &mut self,
        user: &str,
        id: &str,
        draft: ProfileDraft,
        p: &Profile,
        what: &'static str,
        actor: &Actor,
        policy: &Policy,
    ) -> Result<Pending, PresenceError> {
        let mut undo = Undo::default();
        let mut writes = Vec::new();
        self.put_entry(
            user,
            id,
            Some(Entry::Changed(Box::new(draft))),
            &mut undo,
            &mut writes,
            policy,
        );
        log_profile(what, user, p, actor);
        let e = self.find_profile(policy, user, id)?;
        Ok(Pending {
            answer: Answer::Profile(self.profile_view(&e, policy)),
            writes,
            before: undo,
        })
    }

    fn remove_profile(
        &mut self,
        user: &str,
        key: &str,
        actor: Actor,
        policy: &Policy,
        now: UnixTime,
    ) -> Result<Pending, PresenceError> {
        let cur = self.find_profile(policy, user, key)?;
        // Before anything changes: the person as they are.
        let before = self.before(user)?;
        let id = cur.profile.id.clone();
        if id == policy.default_profile().id {
            return Err(PresenceError::new(
                ErrorKind::Conflict,
                Some("profile"),
                "the default profile cannot be removed",
            ));
        }
        let removed = self.profile_view(&cur, policy);
        let mut undo = Undo::default();
        let mut writes = Vec::new();
        // The policy's profile is hidden from this person; their own is simply gone.
        let entry = policy.profile(&id).map(|_| Entry::Removed);
        self.put_entry(user, &id, entry, &mut undo, &mut writes, policy);
        log_profile("profile removed", user, &cur.profile, &actor);
        let presence = if before.1.profile.id == id {
            let c = self
                .model
                .return_to_default(user, actor, now)
                .map_err(|e| model_error(e, "user"))?;
            log_change(&c);
            writes.extend(rows(&c));
            undo.people.push(before);
            c.presence
        } else {
            before.1
        };
        Ok(Pending {
            answer: Answer::Removed {
                removed,
                presence: self.view_of(user, &presence, policy),
            },
            writes,
            before: undo,
        })
    }

    fn profile_view(&self, e: &Effective, policy: &Policy) -> ProfileView {
        ProfileView {
            profile: e.profile.clone(),
            origin: e.origin,
            default: e.profile.id == policy.default_profile().id,
            active: None,
        }
    }

    fn before(&self, user: &str) -> Result<(String, PersonPresence), PresenceError> {
        self.model
            .get(user)
            .cloned()
            .map(|p| (user.to_string(), p))
            .ok_or_else(|| {
                PresenceError::new(
                    ErrorKind::NotFound,
                    Some("user"),
                    format!("no user {user:?}"),
                )
            })
    }

    fn pending(&self, c: Changed, before: (String, PersonPresence), policy: &Policy) -> Pending {
        log_change(&c);
        Pending {
            answer: Answer::Person(self.view_of(&c.person, &c.presence, policy)),
            writes: rows(&c),
            before: Undo {
                people: vec![before],
                ..Undo::default()
            },
        }
    }

    /// Puts things back as they were (a change could not be stored), and logs that.
    pub fn rollback(&mut self, undo: Undo) {
        for (user, id, entry) in undo.profiles.into_iter().rev() {
            tracing::warn!(user = %user, profile = %id, "profile change rolled back: it could not be stored");
            self.profiles.set(&user, &id, entry);
            self.profile_changed(&user, &id);
        }
        for (user, spec) in undo.defaults.into_iter().rev() {
            self.model.set_personal_default(&user, spec);
        }
        for (user, p) in undo.people.into_iter().rev() {
            tracing::warn!(
                user = %user,
                availability = %p.availability,
                profile = %p.profile.id,
                status_message = p.message(),
                "presence change rolled back: it could not be stored; this is the state again"
            );
            self.model.restore(user, p);
        }
        // Their default state is still theirs; its row is still owed.
        self.unsaved.extend(undo.unsaved);
    }

    /// A person as colleagues see them (None: nobody of that name).
    pub fn view(&self, user: &str, policy: &Policy) -> Option<PresenceView> {
        self.model.get(user).map(|p| self.view_of(user, p, policy))
    }

    /// A person in presence `p`, as colleagues see them.
    fn view_of(&self, user: &str, p: &PersonPresence, policy: &Policy) -> PresenceView {
        let profile = self.profiles.profile(policy, user, &p.profile.id);
        PresenceView {
            user: user.to_string(),
            availability: p.availability,
            message: p.message().map(str::to_string),
            custom_text: p.custom_text.clone(),
            status_until: p.status_end.as_ref().map(|e| e.at),
            status_since: p.status_since,
            profile: ActiveProfileView {
                id: p.profile.id.clone(),
                name: profile.as_ref().map(|x| x.profile.name.clone()),
                number: profile.as_ref().map(|x| x.profile.number),
                since: p.profile.since,
                until: p.profile.until,
            },
            call_status: self.model.call_status_for_colleagues(user),
            devices: 0,
            registers: policy.user(user).is_some_and(|u| u.sip.is_some()),
        }
    }

    /// A person as the planner sees them: status, active profile (their own version of it
    /// when they changed or made it) and call state. Devices are the registrar's to add.
    pub fn person_view(&self, user: &str, policy: &Policy) -> PersonView {
        let Some(p) = self.model.get(user) else {
            return PersonView::default();
        };
        // Most people use the policy's profiles as they are: nothing to build then.
        let entry = self.profiles.entry(user, &p.profile.id);
        // The planner puts a caller ID they set themselves before the operator's for them
        // (profile_caller_ids): what they did not set is left to the policy.
        let set_caller_id = matches!(entry, Some(Entry::Changed(d)) if d.caller_id.is_some());
        let own = entry
            .and_then(|_| self.profiles.profile(policy, user, &p.profile.id))
            .filter(|e| e.origin != Origin::Policy)
            .map(|e| Profile {
                caller_id: e.profile.caller_id.filter(|_| set_caller_id),
                ..e.profile
            });
        PersonView {
            availability: Some(policy_availability(p.availability)),
            custom_text: p.custom_text.clone(),
            profile: Some(p.profile.id.clone()),
            own_profile: own,
            profile_until: p.profile.until,
            devices: Vec::new(),
            in_call: self.model.in_call(user),
        }
    }
}

/// Refuses a command any of whose texts (a user, a status, a message, a profile's name…)
/// holds a control character (NUL, ESC, a newline, C1…): they would reach phones' screens,
/// presence documents and logs.
fn no_control_characters(c: &Command) -> Result<(), PresenceError> {
    let mut texts: Vec<(&str, Option<&str>)> = Vec::new();
    fn draft_texts<'a>(texts: &mut Vec<(&'static str, Option<&'a str>)>, d: &'a ProfileDraft) {
        texts.extend([
            ("name", d.name.as_deref()),
            ("availability", d.availability.as_deref()),
            ("message", d.message.as_deref()),
            ("caller_id", d.caller_id.as_deref()),
            ("incoming", d.incoming.as_deref()),
            ("reject_reason", d.reject_reason.as_deref()),
            ("standard_length", d.standard_length.as_deref()),
        ]);
        for device in d.devices.iter().flatten() {
            texts.push(("devices", Some(device)));
        }
    }
    match c {
        Command::List
        | Command::Profiles { user: None }
        | Command::Report { .. }
        | Command::Voicemail { .. } => {}
        Command::Get { user } | Command::Profiles { user: Some(user) } => {
            texts.push(("user", Some(user)))
        }
        Command::SetStatus {
            user, status, text, ..
        } => texts.extend([
            ("user", Some(user.as_str())),
            ("status", Some(status.as_str())),
            ("text", text.as_deref()),
        ]),
        Command::SetMessage { user, message } => texts.extend([
            ("user", Some(user.as_str())),
            ("message", message.as_deref()),
        ]),
        Command::SetProfile {
            user,
            profile,
            message,
            ..
        } => texts.extend([
            ("user", Some(user.as_str())),
            ("profile", Some(profile.as_str())),
            ("message", message.as_deref()),
        ]),
        Command::Profile { user, profile } | Command::RemoveProfile { user, profile } => texts
            .extend([
                ("user", Some(user.as_str())),
                ("profile", Some(profile.as_str())),
            ]),
        Command::CreateProfile { user, id, draft } => {
            texts.extend([("user", Some(user.as_str())), ("id", id.as_deref())]);
            draft_texts(&mut texts, draft);
        }
        Command::UpdateProfile {
            user,
            profile,
            draft,
        } => {
            texts.extend([
                ("user", Some(user.as_str())),
                ("profile", Some(profile.as_str())),
            ]);
            draft_texts(&mut texts, draft);
        }
    }
    match texts
        .into_iter()
        .find(|(_, t)| t.is_some_and(|t| t.contains(char::is_control)))
    {
        Some((field, _)) => Err(PresenceError::new(
            ErrorKind::Invalid,
            Some(field),
            "control characters (NUL, ESC, newlines, tabs…) are not allowed",
        )),
        None => Ok(()),
    }
}

/// Builds a profile from API input; the first problem is the answer.
fn build(id: &str, draft: &ProfileDraft, base: Option<&Profile>) -> Result<Profile, PresenceError> {
    build_profile(id, draft, base).map_err(|problems| {
        let p = &problems[0];
        PresenceError::new(ErrorKind::Invalid, Some(p.field), p.message.clone())
    })
}

fn model_error(e: ModelError, field: &str) -> PresenceError {
    let field = match e {
        ModelError::UnknownPerson(_) => "user",
        ModelError::CustomNeedsText => "text",
        ModelError::EndTimeInPast | ModelError::EndTimeTooFar => "until",
        _ => field,
    };
    let kind = if matches!(e, ModelError::UnknownPerson(_)) {
        ErrorKind::NotFound
    } else {
        ErrorKind::Invalid
    };
    PresenceError::new(kind, Some(field), e.to_string())
}

/// The row of a person's presence.
fn presence_row(user: &str, p: &PersonPresence) -> Write {
    Write::put(
        PRESENCE,
        user.to_string(),
        serde_json::to_vec(p).unwrap_or_default(),
    )
}

fn rows(c: &Changed) -> Vec<Write> {
    let mut w = vec![presence_row(&c.person, &c.presence)];
    if let Some(i) = &c.closed {
        w.push(Write::put(
            STATUS_LOG,
            status_log_key(&i.person, i.from, i.availability.as_str()),
            serde_json::to_vec(i).unwrap_or_default(),
        ));
    }
    w
}

/// An end time as a log line shows it: RFC 3339 in UTC (absent when there is none).
fn log_time(t: Option<UnixTime>) -> Option<String> {
    t.and_then(|t| chrono::DateTime::from_timestamp(t, 0))
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

fn log_change(c: &Changed) {
    tracing::info!(
        user = %c.person,
        by = %c.actor.who,
        via = ?c.actor.via,
        availability = %c.presence.availability,
        status_until = log_time(c.presence.status_end.as_ref().map(|e| e.at)),
        profile = %c.presence.profile.id,
        until = log_time(c.presence.profile.until),
        status_message = c.presence.message(),
        custom_text = c.presence.custom_text.as_deref(),
        "presence changed"
    );
}

fn log_profile(what: &'static str, user: &str, p: &Profile, actor: &Actor) {
    tracing::info!(
        user = %user,
        profile = %p.id,
        number = p.number,
        name = %p.name,
        by = %actor.who,
        via = ?actor.via,
        "{what}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_policy::{plan, Action, Call, Caller, Source, View};
    use switchboard_presence::model::MAX_END_AHEAD;
    use switchboard_store::tables::PROFILES;

    const POLICY: &str = "[users.alice]\nextension = \"1001\"\n[users.bob]\nextension = \"1002\"\n\
        [teams.support]\nextension = \"2000\"\nmembers = [\"alice\", \"bob\"]\n";

    fn policy() -> Policy {
        Policy::from_sources(&[Source {
            name: "p.toml".into(),
            text: POLICY.into(),
        }])
        .unwrap()
    }

    fn service(p: &Policy) -> PresenceService {
        let mut s = PresenceService::new(p);
        s.restore(Vec::new(), p, 0);
        s
    }

    fn req(who: &str, command: Command) -> Request {
        Request {
            who: who.into(),
            admin: who == "admin",
            via: Interface::Api,
            command,
        }
    }

    /// Runs a command that changes something; returns the answer (as if stored).
    fn change(s: &mut PresenceService, p: &Policy, who: &str, c: Command, now: i64) -> Answer {
        match s.handle(&req(who, c), p, now) {
            Ok(Err(pending)) => pending.answer,
            Ok(Ok(v)) => panic!("a read: {v:?}"),
            Err(e) => panic!("refused: {e:?}"),
        }
    }

    /// The person an answer shows.
    fn person(a: Answer) -> PresenceView {
        match a {
            Answer::Person(v) => v,
            other => panic!("not a person: {other:?}"),
        }
    }

    /// The profile an answer shows.
    fn profile(a: Answer) -> ProfileView {
        match a {
            Answer::Profile(v) => v,
            other => panic!("not a profile: {other:?}"),
        }
    }

    fn refused(s: &mut PresenceService, p: &Policy, who: &str, c: Command) -> PresenceError {
        match s.handle(&req(who, c), p, 10) {
            Err(e) => e,
            Ok(_) => panic!("accepted"),
        }
    }

    fn create(name: &str, number: Option<i64>) -> Command {
        Command::CreateProfile {
            user: "alice".into(),
            id: None,
            draft: ProfileDraft {
                name: Some(name.into()),
                number,
                availability: Some("dnd".into()),
                incoming: Some("reject".into()),
                reject_code: Some(486),
                ..Default::default()
            },
        }
    }

    #[test]
    fn profiles_are_created_numbered_renamed_and_removed_per_person() {
        let p = policy();
        let mut s = service(&p);
        let v = profile(change(&mut s, &p, "alice", create("Focus time", None), 1));
        assert_eq!(
            (v.profile.id.as_str(), v.profile.number),
            ("focus_time", 11)
        );
        assert_eq!(v.origin, Origin::Own);
        let v = profile(change(&mut s, &p, "alice", create("Deep work", None), 2));
        assert_eq!(v.profile.number, 12, "the lowest free number");
        // The id exists; the number is taken; 1-10 are the defaults'.
        assert_eq!(
            refused(&mut s, &p, "alice", create("Focus time", None)).kind,
            ErrorKind::Conflict
        );
        let e = refused(&mut s, &p, "alice", create("Other", Some(12)));
        assert_eq!(
            (e.kind, e.field.as_deref()),
            (ErrorKind::Invalid, Some("number"))
        );
        let e = refused(&mut s, &p, "alice", create("Other", Some(3)));
        assert!(e.message.contains("default profile \"Meeting\""), "{e:?}");
        // Bob does not see alice's profiles, and may not touch them.
        let v = s
            .handle(
                &req(
                    "bob",
                    Command::Profiles {
                        user: Some("bob".into()),
                    },
                ),
                &p,
                3,
            )
            .unwrap()
            .unwrap();
        let Answer::Profiles { profiles, .. } = v else {
            panic!("{v:?}")
        };
        assert_eq!(profiles.len(), 10);
        let e = refused(
            &mut s,
            &p,
            "bob",
            Command::RemoveProfile {
                user: "alice".into(),
                profile: "focus_time".into(),
            },
        );
        assert_eq!(
            (e.kind, e.field.as_deref()),
            (ErrorKind::Forbidden, Some("user"))
        );
        // Rename alice's Lunch: hers only.
        let v = profile(change(
            &mut s,
            &p,
            "alice",
            Command::UpdateProfile {
                user: "alice".into(),
                profile: "2".into(),
                draft: ProfileDraft {
                    name: Some("Fika".into()),
                    ..Default::default()
                },
            },
            4,
        ));
        assert_eq!(
            (v.profile.name.as_str(), v.origin),
            ("Fika", Origin::Changed)
        );
        assert_eq!(
            v.profile.message.as_deref(),
            Some("At lunch"),
            "what was not changed stays"
        );
        assert_eq!(
            s.overlay()
                .profile(&p, "bob", "lunch")
                .unwrap()
                .profile
                .name,
            "Lunch"
        );
        // The default profile stays.
        let e = refused(
            &mut s,
            &p,
            "alice",
            Command::RemoveProfile {
                user: "alice".into(),
                profile: "available".into(),
            },
        );
        assert_eq!(
            (e.kind, e.field.as_deref()),
            (ErrorKind::Conflict, Some("profile"))
        );
        // Removing a policy profile hides it from her.
        change(
            &mut s,
            &p,
            "alice",
            Command::RemoveProfile {
                user: "alice".into(),
                profile: "training".into(),
            },
            5,
        );
        let e = refused(
            &mut s,
            &p,
            "alice",
            Command::SetProfile {
                user: "alice".into(),
                profile: "training".into(),
                until: None,
                message: None,
            },
        );
        assert_eq!(
            (e.kind, e.field.as_deref()),
            (ErrorKind::Invalid, Some("profile"))
        );
    }

    #[test]
    fn removing_the_active_profile_returns_to_the_default_and_rollback_undoes_all() {
        let p = policy();
        let mut s = service(&p);
        change(&mut s, &p, "alice", create("Focus", None), 1);
        let v = person(change(
            &mut s,
            &p,
            "alice",
            Command::SetProfile {
                user: "alice".into(),
                profile: "11".into(),
                until: None,
                message: None,
            },
            2,
        ));
        assert_eq!(v.profile.name.as_deref(), Some("Focus"));
        assert_eq!(v.availability, Availability::DoNotDisturb);
        let r = s
            .handle(
                &req(
                    "alice",
                    Command::RemoveProfile {
                        user: "alice".into(),
                        profile: "focus".into(),
                    },
                ),
                &p,
                3,
            )
            .unwrap()
            .unwrap_err();
        let Answer::Removed { presence, .. } = &r.answer else {
            panic!("{:?}", r.answer)
        };
        assert_eq!(presence.profile.id, "available");
        let tables: Vec<_> = r.writes.iter().map(|w| w.table).collect();
        assert_eq!(tables, [PROFILES, PRESENCE, STATUS_LOG]);
        // The store refused: all back as it was.
        s.rollback(r.before);
        assert_eq!(s.model().get("alice").unwrap().profile.id, "focus");
        assert!(s.overlay().profile(&p, "alice", "focus").is_some());
    }

    #[test]
    fn invalid_profiles_name_their_field() {
        let p = policy();
        let mut s = service(&p);
        let bad = |draft: ProfileDraft| Command::CreateProfile {
            user: "alice".into(),
            id: Some("x".into()),
            draft,
        };
        let cases = [
            (
                ProfileDraft {
                    availability: Some("asleep".into()),
                    ..Default::default()
                },
                "availability",
            ),
            (
                ProfileDraft {
                    incoming: Some("send_to:team:nowhere".into()),
                    ..Default::default()
                },
                "incoming",
            ),
            (
                ProfileDraft {
                    standard_length: Some("a while".into()),
                    ..Default::default()
                },
                "standard_length",
            ),
            (
                ProfileDraft {
                    number: Some(5000),
                    ..Default::default()
                },
                "number",
            ),
        ];
        for (draft, field) in cases {
            let e = refused(&mut s, &p, "alice", bad(draft));
            assert_eq!(
                (e.kind, e.field.as_deref()),
                (ErrorKind::Invalid, Some(field)),
                "{e:?}"
            );
        }
        let e = refused(
            &mut s,
            &p,
            "alice",
            Command::CreateProfile {
                user: "alice".into(),
                id: Some("a b".into()),
                draft: ProfileDraft::default(),
            },
        );
        assert_eq!(e.field.as_deref(), Some("id"));
    }

    #[test]
    fn a_person_shows_only_their_own_numbers_as_caller_id() {
        let p = Policy::from_sources(&[Source {
            name: "p.toml".into(),
            text: "[users.alice]\nextension = \"1001\"\ncaller_id = \"+441632960001\"\n\
                   profile_caller_ids = { left_for_the_day = \"+447700900001\" }\n"
                .into(),
        }])
        .unwrap();
        let mut s = service(&p);
        let with = |who: &str, number: &str| {
            req(
                who,
                Command::UpdateProfile {
                    user: "alice".into(),
                    profile: "holiday".into(),
                    draft: ProfileDraft {
                        caller_id: Some(number.into()),
                        ..Default::default()
                    },
                },
            )
        };
        for number in ["+441632960001", "+447700900001"] {
            assert!(s.handle(&with("alice", number), &p, 1).is_ok(), "{number}");
        }
        let e = s.handle(&with("alice", "+15550100"), &p, 1).unwrap_err();
        assert_eq!(
            (e.kind, e.field.as_deref()),
            (ErrorKind::Forbidden, Some("caller_id"))
        );
        assert!(s.handle(&with("admin", "+15550100"), &p, 1).is_ok());
        // What the admin set stays when she changes something else.
        let rename = req(
            "alice",
            Command::UpdateProfile {
                user: "alice".into(),
                profile: "holiday".into(),
                draft: ProfileDraft {
                    name: Some("Away for a while".into()),
                    ..Default::default()
                },
            },
        );
        let v = profile(s.handle(&rename, &p, 2).unwrap().unwrap_err().answer);
        assert_eq!(v.profile.caller_id.as_deref(), Some("+15550100"));
    }

    #[test]
    fn outbound_calls_carry_the_caller_id_a_person_set_on_their_profile() {
        let p = Policy::from_sources(&[Source {
            name: "p.toml".into(),
            text: "[users.alice]\nextension = \"1001\"\ncaller_id = \"+441632960001\"\n\
                   profile_caller_ids = { left_for_the_day = \"+447700900001\" }\n\
                   [trunks.carrier]\nsources = [\"127.0.0.1\"]\noutbound = [\"+44*\"]\n"
                .into(),
        }])
        .unwrap();
        let mut s = service(&p);
        let outbound = |s: &PresenceService| {
            let mut view = View::default();
            view.people
                .insert("alice".into(), s.person_view("alice", &p));
            let call = Call {
                from: Caller::User("alice".into()),
                to: "+442079460000".into(),
                call_id: "c1".into(),
            };
            let plan = plan(&p, &call, &view, chrono::Utc::now());
            match &plan.steps[0].action {
                Action::Ring { legs, .. } => match &legs[0].caller_id {
                    switchboard_policy::CallerIdRule::Number { number, .. } => number.clone(),
                    other => panic!("{other:?}"),
                },
                other => panic!("{other:?}"),
            }
        };
        change(
            &mut s,
            &p,
            "alice",
            Command::SetProfile {
                user: "alice".into(),
                profile: "left_for_the_day".into(),
                until: None,
                message: None,
            },
            1,
        );
        assert_eq!(outbound(&s), "+447700900001", "the operator's for her");
        let update = |draft: ProfileDraft| Command::UpdateProfile {
            user: "alice".into(),
            profile: "left_for_the_day".into(),
            draft,
        };
        // A rename alone leaves the caller ID to the operator.
        change(
            &mut s,
            &p,
            "alice",
            update(ProfileDraft {
                name: Some("Gone home".into()),
                ..Default::default()
            }),
            2,
        );
        assert_eq!(outbound(&s), "+447700900001");
        // Her choice (one of her numbers) comes first.
        change(
            &mut s,
            &p,
            "alice",
            update(ProfileDraft {
                caller_id: Some("+441632960001".into()),
                ..Default::default()
            }),
            3,
        );
        assert_eq!(outbound(&s), "+441632960001");
    }

    #[test]
    fn a_changed_default_profile_is_what_returns() {
        let p = policy();
        let mut s = service(&p);
        change(
            &mut s,
            &p,
            "alice",
            Command::UpdateProfile {
                user: "alice".into(),
                profile: "available".into(),
                draft: ProfileDraft {
                    message: Some("In the office".into()),
                    ..Default::default()
                },
            },
            1,
        );
        change(
            &mut s,
            &p,
            "alice",
            Command::SetProfile {
                user: "alice".into(),
                profile: "lunch".into(),
                until: Some(ProfileEnd::At(100)),
                message: None,
            },
            2,
        );
        s.expire(100);
        let a = s.model().get("alice").unwrap();
        assert_eq!(a.profile.id, "available");
        assert_eq!(a.message(), Some("In the office"));
        assert_eq!(s.model().get("bob").unwrap().message(), None);
        let e = refused(
            &mut s,
            &p,
            "alice",
            Command::UpdateProfile {
                user: "alice".into(),
                profile: "available".into(),
                draft: ProfileDraft {
                    number: Some(40),
                    ..Default::default()
                },
            },
        );
        assert_eq!(e.field.as_deref(), Some("number"));
    }

    #[test]
    fn the_planner_routes_by_a_persons_own_profile() {
        let p = policy();
        let mut s = service(&p);
        change(&mut s, &p, "alice", create("Focus", None), 1);
        change(
            &mut s,
            &p,
            "alice",
            Command::SetProfile {
                user: "alice".into(),
                profile: "focus".into(),
                until: None,
                message: None,
            },
            2,
        );
        let mut view = View::default().with_person("alice", 1);
        let devices = view.people["alice"].devices.clone();
        view.people.insert(
            "alice".into(),
            PersonView {
                devices,
                ..s.person_view("alice", &p)
            },
        );
        let call = Call {
            from: Caller::External("+441632960999".into()),
            to: "1001".into(),
            call_id: "c1".into(),
        };
        let plan = plan(&p, &call, &view, chrono::Utc::now());
        // The profile's announcement first, then its refusal.
        let first = match plan.start {
            switchboard_policy::Next::Step(i) => &plan.steps[i],
            other => panic!("{other:?}"),
        };
        assert!(matches!(first.action, Action::Message { .. }), "{plan}");
        let refusal = match first.on_no_answer {
            switchboard_policy::Next::Step(i) => &plan.steps[i].action,
            ref other => panic!("{other:?}"),
        };
        assert!(
            matches!(refusal, Action::Reject { code: 486, .. }),
            "{plan}"
        );
    }

    #[test]
    fn reports_count_closed_and_open_intervals_and_need_the_right_token() {
        let p = policy();
        let mut s = service(&p);
        let mut log = Vec::new();
        for (who, status, at) in [
            ("alice", "away", 100),
            ("alice", "available", 160),
            ("bob", "dnd", 50),
        ] {
            let r = s
                .handle(
                    &req(
                        who,
                        Command::SetStatus {
                            user: who.into(),
                            status: status.into(),
                            text: None,
                            until: None,
                        },
                    ),
                    &p,
                    at,
                )
                .unwrap()
                .unwrap_err();
            for w in r.writes.iter().filter(|w| w.table == STATUS_LOG) {
                log.push(
                    serde_json::from_slice::<StatusInterval>(w.value.as_ref().unwrap()).unwrap(),
                );
            }
        }
        let snap = |who: &str, subject: ReportSubject, s: &mut PresenceService| {
            let r = s
                .handle(&req(who, Command::Report { subject }), &p, 200)
                .unwrap()
                .unwrap_err();
            assert!(r.writes.is_empty());
            match r.answer {
                Answer::Report(snapshot) => snapshot,
                other => panic!("{other:?}"),
            }
        };
        let alice = snap("alice", ReportSubject::User("alice".into()), &mut s);
        let v = report(&alice, &log, 0, 10_000);
        assert_eq!(v.to, 200, "no later than the snapshot");
        assert_eq!(v.total[&Availability::Available], 100 + 40);
        assert_eq!(v.total[&Availability::Away], 60);
        assert_eq!(
            v.total[&Availability::Busy],
            0,
            "every status, also those not held"
        );
        assert_eq!(v.average, None, "for a team only");
        let team = snap("admin", ReportSubject::Team("support".into()), &mut s);
        let v = report(&team, &log, 120, 200);
        assert_eq!(v.total[&Availability::Away], 40);
        assert_eq!(v.total[&Availability::DoNotDisturb], 80);
        assert_eq!(v.average.unwrap()[&Availability::DoNotDisturb], 40);
        assert_eq!(v.people.len(), 2);
        // An interval stored after the snapshot is not counted twice.
        let mut later = log.clone();
        later.push(StatusInterval {
            person: "bob".into(),
            availability: Availability::DoNotDisturb,
            from: 50,
            to: 190,
        });
        assert_eq!(
            report(&team, &later, 120, 200).total[&Availability::DoNotDisturb],
            80
        );
        for (who, subject, field) in [
            ("bob", ReportSubject::User("alice".into()), "user"),
            ("alice", ReportSubject::Team("support".into()), "team"),
        ] {
            let e = refused(&mut s, &p, who, Command::Report { subject });
            assert_eq!(
                (e.kind, e.field.as_deref()),
                (ErrorKind::Forbidden, Some(field))
            );
        }
        let e = refused(
            &mut s,
            &p,
            "admin",
            Command::Report {
                subject: ReportSubject::Team("sales".into()),
            },
        );
        assert_eq!(
            (e.kind, e.field.as_deref()),
            (ErrorKind::NotFound, Some("team"))
        );
    }

    #[test]
    fn a_custom_text_is_what_colleagues_see_over_a_profiles_message() {
        let p = policy();
        let mut s = service(&p);
        let status = |status: &str, text: &str| Command::SetStatus {
            user: "alice".into(),
            status: status.into(),
            text: Some(text.into()),
            until: None,
        };
        change(
            &mut s,
            &p,
            "alice",
            Command::SetProfile {
                user: "alice".into(),
                profile: "lunch".into(),
                until: None,
                message: None,
            },
            1,
        );
        let v = person(change(
            &mut s,
            &p,
            "alice",
            status("custom", "Out to lunch at the pub"),
            2,
        ));
        assert_eq!(
            v.message.as_deref(),
            Some("Out to lunch at the pub"),
            "{v:?}"
        );
        assert_eq!(v.custom_text.as_deref(), Some("Out to lunch at the pub"));
        change(&mut s, &p, "alice", status("dnd", "Focus"), 3);
        let v = person(change(
            &mut s,
            &p,
            "alice",
            status("custom", "Gone fishing"),
            4,
        ));
        assert_eq!(
            (v.message.as_deref(), v.custom_text.as_deref()),
            (Some("Gone fishing"), Some("Gone fishing")),
            "{v:?}"
        );
        let v = s.view("alice", &p).unwrap();
        assert_eq!(v.message.as_deref(), Some("Gone fishing"));
    }

    #[test]
    fn the_default_state_of_people_first_seen_is_stored() {
        let p = policy();
        let mut s = PresenceService::new(&p);
        let writes = s.restore(Vec::new(), &p, 100);
        let stored: Vec<(String, Vec<u8>)> = writes
            .iter()
            .filter(|w| w.table == PRESENCE)
            .map(|w| (w.key.clone(), w.value.clone().unwrap()))
            .collect();
        let who: Vec<&str> = stored.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(who, ["alice", "bob"]);
        // After a restart their time in status runs on from when they were first seen.
        let mut again = PresenceService::new(&p);
        assert!(again.restore(stored, &p, 5000).is_empty());
        assert_eq!(again.model().get("bob").unwrap().status_since, 100);
        // Someone added to the policy later: stored with the next answer, a read too.
        let more = Policy::from_sources(&[Source {
            name: "p.toml".into(),
            text: format!("{POLICY}[users.carol]\nextension = \"1003\"\n"),
        }])
        .unwrap();
        let r = again
            .handle(&req("alice", Command::List), &more, 6000)
            .unwrap()
            .unwrap_err();
        let keys: Vec<&str> = r.writes.iter().map(|w| w.key.as_str()).collect();
        assert_eq!(keys, ["carol"]);
        assert!(
            matches!(&r.answer, Answer::People(people) if people.len() == 3),
            "{:?}",
            r.answer
        );
        // Not stored after all: still owed, with the next write.
        again.rollback(r.before);
        let w = again.expire(6001);
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].key, "carol");
        assert!(matches!(
            again.handle(&req("alice", Command::List), &more, 6002),
            Ok(Ok(_))
        ));
        // The reload hook stores newcomers at once and has everyone's watchers looked at.
        let mut s = service(&p);
        s.model_mut().take_changed();
        let w = s.policy_changed(&more, 7000);
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].key, "carol");
        assert_eq!(s.model_mut().take_changed(), ["alice", "bob", "carol"]);
        assert!(s.policy_changed(&more, 7001).is_empty());
    }

    #[test]
    fn the_temporary_message_is_set_and_cleared_on_its_own() {
        let p = policy();
        let mut s = service(&p);
        let message = |user: &str, m: Option<&str>| Command::SetMessage {
            user: user.into(),
            message: m.map(str::to_string),
        };
        change(
            &mut s,
            &p,
            "alice",
            Command::SetStatus {
                user: "alice".into(),
                status: "dnd".into(),
                text: None,
                until: Some(900),
            },
            100,
        );
        let v = person(change(
            &mut s,
            &p,
            "alice",
            message("alice", Some("Back at 3")),
            200,
        ));
        assert_eq!(
            (v.message.as_deref(), v.status_until),
            (Some("Back at 3"), Some(900)),
            "{v:?}"
        );
        assert_eq!(
            (v.availability, v.status_since),
            (Availability::DoNotDisturb, 100)
        );
        let v = person(change(&mut s, &p, "alice", message("alice", Some("")), 300));
        assert_eq!(v.message, None);
        change(&mut s, &p, "alice", message("alice", Some("x")), 301);
        let v = person(change(&mut s, &p, "alice", message("alice", None), 302));
        assert_eq!((v.message, v.status_until), (None, Some(900)));
        // Same rules as a status: one's own only; not too long.
        let e = refused(&mut s, &p, "bob", message("alice", Some("hi")));
        assert_eq!(
            (e.kind, e.field.as_deref()),
            (ErrorKind::Forbidden, Some("user"))
        );
        let long = "x".repeat(201);
        let e = refused(&mut s, &p, "alice", message("alice", Some(&long)));
        assert_eq!(
            (e.kind, e.field.as_deref()),
            (ErrorKind::Invalid, Some("message"))
        );
        assert!(s
            .handle(&req("admin", message("bob", Some("Out"))), &p, 400)
            .is_ok());
    }

    #[test]
    fn a_change_to_the_active_profile_is_a_change_of_its_person() {
        let p = policy();
        let mut s = service(&p);
        let rename = |profile: &str, name: &str| Command::UpdateProfile {
            user: "alice".into(),
            profile: profile.into(),
            draft: ProfileDraft {
                name: Some(name.into()),
                ..Default::default()
            },
        };
        change(
            &mut s,
            &p,
            "alice",
            Command::SetProfile {
                user: "alice".into(),
                profile: "lunch".into(),
                until: None,
                message: None,
            },
            1,
        );
        assert_eq!(s.active_profile_name("alice", &p).as_deref(), Some("Lunch"));
        s.model_mut().take_changed();
        // Another profile of hers: nothing colleagues see.
        change(&mut s, &p, "alice", rename("training", "Course"), 2);
        assert!(s.model_mut().take_changed().is_empty());
        let r = s
            .handle(&req("alice", rename("lunch", "Fika")), &p, 3)
            .unwrap()
            .unwrap_err();
        assert_eq!(s.model_mut().take_changed(), ["alice"]);
        assert_eq!(s.active_profile_name("alice", &p).as_deref(), Some("Fika"));
        assert_eq!(
            s.active_profile_name("bob", &p).as_deref(),
            Some("Available")
        );
        assert_eq!(s.active_profile_name("nobody", &p), None);
        // Not stored: the old name is back, and that is a change too.
        s.rollback(r.before);
        assert_eq!(s.model_mut().take_changed(), ["alice"]);
        assert_eq!(s.active_profile_name("alice", &p).as_deref(), Some("Lunch"));
        // Her own default profile, active, changed.
        change(
            &mut s,
            &p,
            "alice",
            Command::SetProfile {
                user: "alice".into(),
                profile: "available".into(),
                until: None,
                message: None,
            },
            4,
        );
        s.model_mut().take_changed();
        change(&mut s, &p, "alice", rename("available", "In"), 5);
        assert_eq!(s.model_mut().take_changed(), ["alice"]);
    }

    /// What `f` logs, as the daemon's log shows it.
    fn logged(f: impl FnOnce()) -> String {
        use std::sync::{Arc, Mutex};
        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            // A log line first reached by another test thread, while no subscriber was set
            // anywhere, keeps "nobody listens" cached: ask every log line again.
            tracing::callsite::rebuild_interest_cache();
            f()
        });
        let text = String::from_utf8_lossy(&buf.0.lock().unwrap()).into_owned();
        text
    }

    #[test]
    fn changes_are_logged_with_their_message_and_rollbacks_too() {
        let p = policy();
        let mut s = service(&p);
        let status = |status: &str, text: &str| Command::SetStatus {
            user: "alice".into(),
            status: status.into(),
            text: Some(text.into()),
            until: None,
        };
        let log = logged(|| {
            change(&mut s, &p, "alice", status("custom", "Gone fishing"), 1);
        });
        assert!(
            log.contains("status_message=\"Gone fishing\" custom_text=\"Gone fishing\""),
            "{log}"
        );
        let log = logged(|| {
            change(&mut s, &p, "alice", status("dnd", "Focus"), 2);
        });
        assert!(
            log.contains("availability=dnd") && log.contains("status_message=\"Focus\""),
            "{log}"
        );
        assert!(!log.contains("custom_text"), "{log}");
        let r = s
            .handle(&req("alice", status("away", "Back soon")), &p, 3)
            .unwrap()
            .unwrap_err();
        let log = logged(|| s.rollback(r.before));
        assert!(
            log.contains("presence change rolled back")
                && log.contains("user=alice availability=dnd")
                && log.contains("status_message=\"Focus\""),
            "{log}"
        );
        let r = s
            .handle(&req("alice", create("Focus", None)), &p, 4)
            .unwrap()
            .unwrap_err();
        let log = logged(|| s.rollback(r.before));
        assert!(
            log.contains("profile change rolled back") && log.contains("profile=focus"),
            "{log}"
        );
    }

    #[test]
    fn people_gone_from_the_policy_are_not_shown() {
        let p = policy();
        let mut s = PresenceService::new(&p);
        let mut zed = PresenceService::new(&p);
        let rows: Vec<(String, Vec<u8>)> = zed
            .restore(Vec::new(), &p, 0)
            .into_iter()
            .map(|w| (w.key.replace("bob", "zed"), w.value.unwrap()))
            .collect();
        s.restore(rows, &p, 10);
        assert!(s.model().get("zed").is_some(), "kept in the store");
        let v = s
            .handle(&req("alice", Command::List), &p, 20)
            .unwrap()
            .unwrap();
        let Answer::People(people) = v else {
            panic!("{v:?}")
        };
        let who: Vec<&str> = people.iter().map(|p| p.user.as_str()).collect();
        assert_eq!(who, ["alice", "bob"]);
        let e = refused(&mut s, &p, "admin", Command::Get { user: "zed".into() });
        assert_eq!(
            (e.kind, e.field.as_deref()),
            (ErrorKind::NotFound, Some("user"))
        );
    }

    #[test]
    fn a_profile_with_a_standard_length_can_be_activated_without_an_end() {
        let p = policy();
        let mut s = service(&p);
        let lunch = |until| Command::SetProfile {
            user: "alice".into(),
            profile: "lunch".into(),
            until,
            message: None,
        };
        let v = person(change(&mut s, &p, "alice", lunch(None), 100));
        assert_eq!(v.profile.until, Some(100 + 3600), "its standard length");
        let v = person(change(
            &mut s,
            &p,
            "alice",
            lunch(Some(ProfileEnd::Never)),
            200,
        ));
        assert_eq!(v.profile.until, None, "{v:?}");
        assert_eq!(s.next_end(), None);
        let e = refused(
            &mut s,
            &p,
            "alice",
            lunch(Some(ProfileEnd::At(10 + MAX_END_AHEAD + 1))),
        );
        assert_eq!(
            (e.kind, e.field.as_deref()),
            (ErrorKind::Invalid, Some("until"))
        );
    }

    #[test]
    fn both_crates_read_the_same_status_names() {
        // Each name one reads, the other reads as the same status; also as people write
        // them (any case, spaces or hyphens for underscores).
        let written = |n: &str| {
            [
                n.to_string(),
                n.to_ascii_uppercase(),
                n.replace('_', " "),
                n.replace('_', "-"),
                format!(" {n} "),
            ]
        };
        for (name, a) in Availability::NAMES {
            for w in written(name) {
                assert_eq!(
                    PolicyAvailability::parse(&w),
                    Some(policy_availability(a)),
                    "{w:?}"
                );
                assert_eq!(Availability::parse(&w), Some(a), "{w:?}");
            }
        }
        for (name, a) in PolicyAvailability::NAMES {
            for w in written(name) {
                assert_eq!(Availability::parse(&w), Some(availability(a)), "{w:?}");
                assert_eq!(PolicyAvailability::parse(&w), Some(a), "{w:?}");
            }
        }
        for a in Availability::ALL {
            assert_eq!(policy_availability(a).as_str(), a.as_str());
        }
        assert_eq!(Availability::parse("sleepy"), None);
        assert_eq!(PolicyAvailability::parse("sleepy"), None);
    }

    #[test]
    fn status_end_times_are_shown_and_validated() {
        let p = policy();
        let mut s = service(&p);
        let set = |until| Command::SetStatus {
            user: "alice".into(),
            status: "dnd".into(),
            text: None,
            until,
        };
        let v = person(change(&mut s, &p, "alice", set(Some(500)), 100));
        assert_eq!(v.status_until, Some(500));
        let e = refused(&mut s, &p, "alice", set(Some(5)));
        assert_eq!(
            (e.kind, e.field.as_deref()),
            (ErrorKind::Invalid, Some("until"))
        );
        let w = s.expire(500);
        assert_eq!(w[0].table, PRESENCE);
        let v = s.view("alice", &p).unwrap();
        assert_eq!(v.availability, Availability::Available);
        assert_eq!(v.status_until, None);
    }
}
