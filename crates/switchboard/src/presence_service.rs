//! People's presence inside the daemon: the presence model, fed by the policy's profiles,
//! answering the API's commands, with every acknowledged change made durable first.
//!
//! Sans-I/O like the core that owns it: commands and the time come in, answers and the
//! rows to store go out.

use serde::Serialize;
use serde_json::{json, Value};
use switchboard_policy::{Availability as PolicyAvailability, Policy, Profile};
use switchboard_presence::model::{
    Actor, Availability, Changed, Interface, PersonPresence, Presence, PresenceError, ProfileSpec,
    UnixTime,
};
use switchboard_presence::store::Write;

/// People's current presence, keyed by user id.
pub const PRESENCE: &str = "presence";
/// Closed status intervals, for time-in-status reports.
pub const STATUS_LOG: &str = "status_log";

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
    },
    SetProfile {
        user: String,
        /// A profile id or number.
        profile: String,
        /// End time (Unix seconds); None: the profile's standard length.
        until: Option<UnixTime>,
        message: Option<String>,
    },
}

/// A command with who sends it.
#[derive(Clone, Debug)]
pub struct Request {
    pub who: String,
    pub admin: bool,
    pub via: Interface,
    pub command: Command,
}

/// A refused command: an HTTP status, the offending field and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ApiError {
    #[serde(skip)]
    pub status: u16,
    pub error: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(status: u16, field: Option<&str>, error: impl Into<String>) -> Self {
        ApiError {
            status,
            error: error.into(),
            field: field.map(str::to_string),
        }
    }
}

/// The answer to a command.
pub type Reply = Result<Value, ApiError>;

/// A change made in memory, to store before it is acknowledged.
pub struct Pending {
    pub answer: Value,
    pub writes: Vec<Write>,
    /// The person's state before, to put back if storing fails.
    pub before: (String, PersonPresence),
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

fn spec(p: &Profile) -> ProfileSpec {
    ProfileSpec {
        id: p.id.clone(),
        availability: availability(p.availability),
        shows_call_status: p.shows_call_status,
        message: p.message.clone(),
        standard_length: p.standard_length.map(i64::from),
    }
}

pub struct PresenceService {
    model: Presence,
}

impl PresenceService {
    pub fn new(policy: &Policy) -> Self {
        PresenceService {
            model: Presence::new(spec(policy.default_profile())),
        }
    }

    pub fn model(&self) -> &Presence {
        &self.model
    }

    /// Loads stored presence, adds the policy's people not seen yet, and ends profiles
    /// whose end time passed while the daemon was down. Returns the rows to store.
    pub fn restore(
        &mut self,
        rows: Vec<(String, Vec<u8>)>,
        policy: &Policy,
        now: UnixTime,
    ) -> Vec<Write> {
        for (user, value) in rows {
            match serde_json::from_slice::<PersonPresence>(&value) {
                Ok(p) => self.model.restore(user, p),
                Err(e) => {
                    tracing::warn!(user, error = %e, "unreadable presence in the store; skipped")
                }
            }
        }
        for u in policy.users() {
            self.model.ensure_person(&u.id, now);
        }
        self.expire(now)
    }

    /// When the next profile ends.
    pub fn next_end(&self) -> Option<UnixTime> {
        self.model.next_end()
    }

    /// Ends the profiles due by `now`; the default profile returns. Rows to store.
    pub fn expire(&mut self, now: UnixTime) -> Vec<Write> {
        let mut writes = Vec::new();
        for c in self.model.expire(now) {
            log_change(&c);
            writes.extend(rows(&c));
        }
        writes
    }

    /// Answers a read, or makes a change in memory and returns it to be stored.
    pub fn handle(
        &mut self,
        req: &Request,
        policy: &Policy,
        now: UnixTime,
    ) -> Result<Result<Value, Pending>, ApiError> {
        let own = |user: &str| -> Result<(), ApiError> {
            if policy.user(user).is_none() {
                return Err(ApiError::new(
                    404,
                    Some("user"),
                    format!("no user {user:?}"),
                ));
            }
            if !req.admin && req.who != user {
                return Err(ApiError::new(
                    403,
                    Some("user"),
                    "a person may change only their own presence",
                ));
            }
            Ok(())
        };
        // People added to the policy since the start (a reload) begin in the default profile.
        for u in policy.users() {
            self.model.ensure_person(&u.id, now);
        }
        let actor = Actor {
            who: req.who.clone(),
            via: req.via,
        };
        match &req.command {
            Command::List => {
                let people: Vec<Value> = self
                    .model
                    .people()
                    .map(|(u, _)| self.view(u, policy))
                    .collect();
                Ok(Ok(json!({ "people": people })))
            }
            Command::Get { user } => {
                if self.model.get(user).is_none() {
                    return Err(ApiError::new(
                        404,
                        Some("user"),
                        format!("no user {user:?}"),
                    ));
                }
                Ok(Ok(self.view(user, policy)))
            }
            Command::SetStatus { user, status, text } => {
                own(user)?;
                let a = Availability::parse(status).ok_or_else(|| {
                    ApiError::new(400, Some("status"), format!("unknown status {status:?}: use available, away, busy, dnd, custom, unavailable, on_break or after_call_work"))
                })?;
                let before = self.before(user)?;
                let c = self
                    .model
                    .set_status(user, a, text.clone(), None, actor, now)
                    .map_err(|e| model_error(e, "text"))?;
                Ok(Err(self.pending(c, before, policy)))
            }
            Command::SetProfile {
                user,
                profile,
                until,
                message,
            } => {
                own(user)?;
                let p = policy
                    .profile(profile)
                    .or_else(|| {
                        profile
                            .parse::<u32>()
                            .ok()
                            .and_then(|n| policy.profile_by_number(n))
                    })
                    .ok_or_else(|| {
                        ApiError::new(400, Some("profile"), format!("no profile {profile:?}"))
                    })?;
                let before = self.before(user)?;
                let c = self
                    .model
                    .activate_profile(user, &spec(p), *until, message.clone(), actor, now)
                    .map_err(|e| {
                        let field = if matches!(e, PresenceError::EndTimeInPast) {
                            "until"
                        } else {
                            "message"
                        };
                        model_error(e, field)
                    })?;
                Ok(Err(self.pending(c, before, policy)))
            }
        }
    }

    fn before(&self, user: &str) -> Result<(String, PersonPresence), ApiError> {
        self.model
            .get(user)
            .cloned()
            .map(|p| (user.to_string(), p))
            .ok_or_else(|| ApiError::new(404, Some("user"), format!("no user {user:?}")))
    }

    fn pending(&self, c: Changed, before: (String, PersonPresence), policy: &Policy) -> Pending {
        log_change(&c);
        Pending {
            answer: self.view(&c.person, policy),
            writes: rows(&c),
            before,
        }
    }

    /// Puts a person back as they were (their change could not be stored).
    pub fn rollback(&mut self, before: (String, PersonPresence)) {
        self.model.restore(before.0, before.1);
    }

    /// A person as colleagues see them.
    pub fn view(&self, user: &str, policy: &Policy) -> Value {
        let Some(p) = self.model.get(user) else {
            return Value::Null;
        };
        let profile = policy.profile(&p.profile.id);
        json!({
            "user": user,
            "availability": p.availability.as_str(),
            "colour": p.availability.colour(),
            "message": p.message(),
            "profile": {
                "id": p.profile.id,
                "name": profile.map(|x| x.name.as_str()),
                "number": profile.map(|x| x.number),
                "since": p.profile.since,
                "until": p.profile.until,
            },
            "call_status": self.model.call_status_for_colleagues(user),
            "status_since": p.status_since,
        })
    }
}

fn model_error(e: PresenceError, field: &str) -> ApiError {
    let field = match e {
        PresenceError::UnknownPerson(_) => "user",
        PresenceError::CustomNeedsText => "text",
        _ => field,
    };
    let status = if matches!(e, PresenceError::UnknownPerson(_)) {
        404
    } else {
        400
    };
    ApiError::new(status, Some(field), e.to_string())
}

fn rows(c: &Changed) -> Vec<Write> {
    let mut w = vec![Write::put(
        PRESENCE,
        c.person.clone(),
        serde_json::to_vec(&c.presence).unwrap_or_default(),
    )];
    if let Some(i) = &c.closed {
        w.push(Write::put(
            STATUS_LOG,
            format!("{}\n{:020}\n{}", i.person, i.from, i.availability.as_str()),
            serde_json::to_vec(i).unwrap_or_default(),
        ));
    }
    w
}

fn log_change(c: &Changed) {
    tracing::info!(
        user = %c.person,
        by = %c.actor.who,
        via = ?c.actor.via,
        availability = c.presence.availability.as_str(),
        profile = %c.presence.profile.id,
        until = ?c.presence.profile.until,
        "presence changed"
    );
}
