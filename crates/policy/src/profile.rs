//! The rules of a profile, in one place: the TOML loader applies them to `[profiles.ID]`
//! sections and the daemon to profiles people create or change through the presence API.
//!
//! A [`ProfileDraft`] is a profile as someone wrote it, every setting optional; with a
//! `base` (the profile it changes) a missing setting keeps the base's. [`build_profile`]
//! checks a draft field by field and returns the profile or every problem, each naming its
//! field. [`number_problem`] checks a number against the other profiles of a set.

use crate::load::{default_profiles, parse_duration, parse_target};
use crate::model::{Availability, IncomingHandling, Profile};
use serde::{Deserialize, Serialize};

/// Highest profile number.
pub const MAX_PROFILE_NUMBER: u32 = 999;
/// First number free for profiles of one's own (1–10 are the ten defaults').
pub const FIRST_OWN_PROFILE_NUMBER: u32 = 11;
/// Longest profile id.
pub const MAX_PROFILE_ID: usize = 64;
/// Longest profile name.
pub const MAX_PROFILE_NAME: usize = 64;
/// Longest profile message (the same bound as any status message).
pub const MAX_PROFILE_MESSAGE: usize = 200;
/// Longest reason phrase of a rejecting profile.
pub const MAX_REJECT_REASON: usize = 64;

/// A profile's settings as given, each optional (TOML section or API body).
///
/// Text settings given as an empty string (and `standard_length` given as `""`, `"0"` or
/// `"none"`) clear the base's value.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileDraft {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shows_call_status: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller_id: Option<String>,
    /// `ring`, `ring_devices`, `out_of_hours`, `reject` or `send_to:DESTINATION`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incoming: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reject_code: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reject_reason: Option<String>,
    /// `45m`, `1h30m`, `2d`, or seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standard_length: Option<String>,
}

impl ProfileDraft {
    /// This draft with every setting `later` gives replacing this one's.
    pub fn merged(&self, later: &ProfileDraft) -> ProfileDraft {
        fn pick<T: Clone>(a: &Option<T>, b: &Option<T>) -> Option<T> {
            b.clone().or_else(|| a.clone())
        }
        ProfileDraft {
            number: pick(&self.number, &later.number),
            name: pick(&self.name, &later.name),
            shows_call_status: pick(&self.shows_call_status, &later.shows_call_status),
            availability: pick(&self.availability, &later.availability),
            message: pick(&self.message, &later.message),
            caller_id: pick(&self.caller_id, &later.caller_id),
            incoming: pick(&self.incoming, &later.incoming),
            devices: pick(&self.devices, &later.devices),
            reject_code: pick(&self.reject_code, &later.reject_code),
            reject_reason: pick(&self.reject_reason, &later.reject_reason),
            standard_length: pick(&self.standard_length, &later.standard_length),
        }
    }
}

/// One thing wrong with a profile: the setting to blame and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProfileProblem {
    /// `id`, `number`, `name`, `availability`, `message`, `caller_id`, `incoming`,
    /// `devices`, `reject_code`, `reject_reason` or `standard_length`.
    pub field: &'static str,
    pub message: String,
}

fn problem(field: &'static str, message: impl Into<String>) -> ProfileProblem {
    ProfileProblem {
        field,
        message: message.into(),
    }
}

/// Why `id` cannot name a profile, if it cannot.
pub fn id_problem(id: &str) -> Option<String> {
    if id.is_empty() || id.len() > MAX_PROFILE_ID {
        return Some(format!("a profile id is 1 to {MAX_PROFILE_ID} characters"));
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Some(format!(
            "profile id {id:?} may hold only letters, digits, _ and -"
        ));
    }
    None
}

/// A profile id made from a name: `Focus time` → `focus_time`.
pub fn id_from_name(name: &str) -> String {
    let mut id = String::new();
    for c in name.trim().chars() {
        if c.is_ascii_alphanumeric() {
            id.push(c.to_ascii_lowercase());
        } else if !id.ends_with('_') && !id.is_empty() {
            id.push('_');
        }
    }
    let id = id.trim_end_matches('_');
    id.chars().take(MAX_PROFILE_ID).collect()
}

/// Text shown to people or put into a SIP reason phrase: no control characters.
fn text_problem(what: &str, s: &str, max: usize) -> Option<String> {
    if s.chars().any(char::is_control) {
        return Some(format!("{what} may not hold control characters"));
    }
    if s.chars().count() > max {
        return Some(format!("{what} is at most {max} characters"));
    }
    None
}

/// A phone number: digits, optionally after a `+`.
fn is_number(s: &str) -> bool {
    let d = s.strip_prefix('+').unwrap_or(s);
    !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit())
}

/// `Some(text)` unless the text is empty (an explicit clear).
fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|t| !t.trim().is_empty())
}

/// Checks a draft and builds the profile it describes over `base` (the profile it changes,
/// if any). Every problem is returned, each naming its field.
pub fn build_profile(
    id: &str,
    draft: &ProfileDraft,
    base: Option<&Profile>,
) -> Result<Profile, Vec<ProfileProblem>> {
    let mut problems = Vec::new();
    if let Some(m) = id_problem(id) {
        problems.push(problem("id", m));
    }
    let number = match (draft.number, base) {
        (Some(n), _) if (1..=i64::from(MAX_PROFILE_NUMBER)).contains(&n) => n as u32,
        (Some(_), _) => {
            problems.push(problem(
                "number",
                format!("a profile number is 1 to {MAX_PROFILE_NUMBER}"),
            ));
            0
        }
        (None, Some(b)) => b.number,
        (None, None) => {
            problems.push(problem(
                "number",
                format!("a new profile needs a number ({FIRST_OWN_PROFILE_NUMBER} or above)"),
            ));
            0
        }
    };
    let availability = match &draft.availability {
        Some(a) => Availability::parse(a).unwrap_or_else(|| {
            problems.push(problem(
                "availability",
                format!(
                    "unknown status {a:?}: use {}",
                    Availability::ALL.map(Availability::as_str).join(", ")
                ),
            ));
            Availability::Available
        }),
        None => base
            .map(|b| b.availability)
            .unwrap_or(Availability::Available),
    };
    let devices: Option<Vec<String>> = draft.devices.as_ref().map(|d| {
        d.iter()
            .map(|x| x.trim().to_string())
            .filter(|x| !x.is_empty())
            .collect()
    });
    let reject_reason = draft.reject_reason.clone().or_else(|| match base {
        Some(Profile {
            incoming: IncomingHandling::Reject { reason, .. },
            ..
        }) => Some(reason.clone()),
        _ => None,
    });
    let incoming = match &draft.incoming {
        None => match (base, &devices) {
            // New devices for a profile that rings only some.
            (
                Some(Profile {
                    incoming: IncomingHandling::RingDevices(_),
                    ..
                }),
                Some(d),
            ) => IncomingHandling::RingDevices(d.clone()),
            (Some(b), _) => b.incoming.clone(),
            (None, _) => IncomingHandling::RingAsNormal,
        },
        Some(v) => match v.trim() {
            "ring" => IncomingHandling::RingAsNormal,
            "ring_devices" => {
                IncomingHandling::RingDevices(devices.clone().unwrap_or_else(|| match base {
                    Some(Profile {
                        incoming: IncomingHandling::RingDevices(d),
                        ..
                    }) => d.clone(),
                    _ => Vec::new(),
                }))
            }
            "out_of_hours" => IncomingHandling::OutOfHours,
            "reject" => IncomingHandling::Reject {
                code: 0,
                reason: String::new(),
            },
            other => match other.strip_prefix("send_to:") {
                Some(t) => match parse_target(t) {
                    Ok(t) => IncomingHandling::SendTo(t),
                    Err(m) => {
                        problems.push(problem("incoming", m));
                        IncomingHandling::RingAsNormal
                    }
                },
                None => {
                    problems.push(problem(
                        "incoming",
                        format!("unknown handling {other:?}: use ring, ring_devices, out_of_hours, reject or send_to:DESTINATION"),
                    ));
                    IncomingHandling::RingAsNormal
                }
            },
        },
    };
    // A rejecting profile's code and reason: the draft's, else the base's, else 480.
    let incoming = match incoming {
        IncomingHandling::Reject { .. } => {
            let base_code = match base {
                Some(Profile {
                    incoming: IncomingHandling::Reject { code, .. },
                    ..
                }) => Some(i64::from(*code)),
                _ => None,
            };
            let code = draft.reject_code.or(base_code).unwrap_or(480);
            if !(400..=699).contains(&code) {
                problems.push(problem("reject_code", "a rejection code is 400 to 699"));
            }
            let reason =
                non_empty(reject_reason).unwrap_or_else(|| "Temporarily Unavailable".into());
            if let Some(m) = text_problem("a reason phrase", &reason, MAX_REJECT_REASON) {
                problems.push(problem("reject_reason", m));
            }
            IncomingHandling::Reject {
                code: code.clamp(0, 999) as u16,
                reason,
            }
        }
        other => other,
    };
    if matches!(incoming, IncomingHandling::RingDevices(ref d) if d.is_empty()) {
        problems.push(problem(
            "devices",
            "ring_devices needs a list of device names",
        ));
    }
    let standard_length = match draft.standard_length.as_deref().map(str::trim) {
        None => base.and_then(|b| b.standard_length),
        Some("" | "none" | "0") => None,
        Some(s) => match parse_duration(s) {
            Some(d) => Some(d),
            None => {
                problems.push(problem(
                    "standard_length",
                    format!("{s:?} is not a duration (e.g. 45m, 1h30m, 2d)"),
                ));
                None
            }
        },
    };
    let name = draft
        .name
        .clone()
        .or(base.map(|b| b.name.clone()))
        .unwrap_or_else(|| id.to_string())
        .trim()
        .to_string();
    if name.is_empty() {
        problems.push(problem("name", "a profile needs a name"));
    } else if let Some(m) = text_problem("a profile name", &name, MAX_PROFILE_NAME) {
        problems.push(problem("name", m));
    }
    let message = match &draft.message {
        Some(m) => non_empty(Some(m.clone())),
        None => base.and_then(|b| b.message.clone()),
    };
    if let Some(m) = message
        .as_deref()
        .and_then(|m| text_problem("a status message", m, MAX_PROFILE_MESSAGE))
    {
        problems.push(problem("message", m));
    }
    let caller_id = match &draft.caller_id {
        Some(c) => non_empty(Some(c.trim().to_string())),
        None => base.and_then(|b| b.caller_id.clone()),
    };
    if let Some(c) = caller_id.as_deref().filter(|c| !is_number(c)) {
        problems.push(problem(
            "caller_id",
            format!("{c:?} is not a phone number (digits, optionally a leading +)"),
        ));
    }
    // As the reference has it: an Available profile shows the call status, others hide it.
    let shows_call_status = draft
        .shows_call_status
        .or(base.map(|b| b.shows_call_status))
        .unwrap_or(availability == Availability::Available);
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Profile {
        id: id.to_string(),
        number,
        name,
        shows_call_status,
        availability,
        message,
        caller_id,
        incoming,
        standard_length,
    })
}

/// Why `profile` cannot have its number among `others` (the rest of its set), if it
/// cannot: 1–10 belong to the ten default profiles, and no two profiles share a number.
pub fn number_problem<'a>(
    profile: &Profile,
    others: impl IntoIterator<Item = &'a Profile>,
) -> Option<String> {
    if let Some(d) = default_profiles()
        .into_iter()
        .find(|d| d.number == profile.number && d.id != profile.id)
    {
        return Some(format!(
            "profile number {} belongs to the default profile {:?}; use {FIRST_OWN_PROFILE_NUMBER} or above",
            profile.number, d.name
        ));
    }
    others
        .into_iter()
        .find(|q| q.number == profile.number && q.id != profile.id)
        .map(|q| {
            format!(
                "profile number {} is already used by profile {:?}",
                profile.number, q.id
            )
        })
}

/// The lowest number from [`FIRST_OWN_PROFILE_NUMBER`] up that none of `taken` uses.
pub fn next_free_number(taken: impl IntoIterator<Item = u32>) -> Option<u32> {
    let taken: std::collections::BTreeSet<u32> = taken.into_iter().collect();
    (FIRST_OWN_PROFILE_NUMBER..=MAX_PROFILE_NUMBER).find(|n| !taken.contains(n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Target;

    fn lunch() -> Profile {
        default_profiles()
            .into_iter()
            .find(|p| p.id == "lunch")
            .unwrap()
    }

    fn fields(r: Result<Profile, Vec<ProfileProblem>>) -> Vec<&'static str> {
        r.unwrap_err().iter().map(|p| p.field).collect()
    }

    #[test]
    fn a_profiles_status_is_read_by_any_of_its_names() {
        for (name, a) in [
            ("acw", Availability::AfterCallWork),
            ("Do Not Disturb", Availability::DoNotDisturb),
            ("after-call-work", Availability::AfterCallWork),
            ("Offline", Availability::Unavailable),
        ] {
            let d = ProfileDraft {
                availability: Some(name.into()),
                ..Default::default()
            };
            let p = build_profile("lunch", &d, Some(&lunch())).unwrap();
            assert_eq!(p.availability, a, "{name}");
        }
        // And in a policy file.
        let policy = crate::Policy::from_sources(&[crate::Source {
            name: "p.toml".into(),
            text: "[profiles.wrap]\nnumber = 11\nname = \"Wrap\"\navailability = \"acw\"\n\
                   [profiles.focus]\nnumber = 12\nname = \"Focus\"\navailability = \"Do Not Disturb\"\n"
                .into(),
        }])
        .unwrap();
        assert_eq!(
            policy.profile("wrap").unwrap().availability,
            Availability::AfterCallWork
        );
        assert_eq!(
            policy.profile("focus").unwrap().availability,
            Availability::DoNotDisturb
        );
    }

    #[test]
    fn a_change_keeps_what_it_does_not_name() {
        let d = ProfileDraft {
            name: Some("Fika".into()),
            ..Default::default()
        };
        let p = build_profile("lunch", &d, Some(&lunch())).unwrap();
        assert_eq!((p.name.as_str(), p.number), ("Fika", 2));
        assert_eq!(p.message.as_deref(), Some("At lunch"));
        assert_eq!(p.standard_length, Some(3600));
        // Empty text clears; "none" clears the standard length.
        let d = ProfileDraft {
            message: Some(String::new()),
            standard_length: Some("none".into()),
            ..Default::default()
        };
        let p = build_profile("lunch", &d, Some(&lunch())).unwrap();
        assert_eq!((p.message, p.standard_length), (None, None));
    }

    #[test]
    fn a_new_profile_gets_the_references_defaults() {
        let d = ProfileDraft {
            number: Some(12),
            name: Some("Focus".into()),
            availability: Some("dnd".into()),
            incoming: Some("send_to:team:support".into()),
            standard_length: Some("2h".into()),
            ..Default::default()
        };
        let p = build_profile("focus", &d, None).unwrap();
        assert!(
            !p.shows_call_status,
            "a profile that is not Available hides call status"
        );
        assert_eq!(
            p.incoming,
            IncomingHandling::SendTo(Target::Team("support".into()))
        );
        assert_eq!(p.standard_length, Some(7200));
        let d = ProfileDraft {
            number: Some(13),
            incoming: Some("reject".into()),
            ..Default::default()
        };
        let p = build_profile("x", &d, None).unwrap();
        assert!(p.shows_call_status);
        assert_eq!(
            p.incoming,
            IncomingHandling::Reject {
                code: 480,
                reason: "Temporarily Unavailable".into()
            }
        );
    }

    #[test]
    fn every_problem_names_its_field() {
        let d = ProfileDraft {
            number: Some(0),
            name: Some("  ".into()),
            availability: Some("asleep".into()),
            message: Some("x".repeat(MAX_PROFILE_MESSAGE + 1)),
            caller_id: Some("mine".into()),
            incoming: Some("reject".into()),
            reject_code: Some(200),
            reject_reason: Some("Gone\r\nX-Injected: 1".into()),
            standard_length: Some("a while".into()),
            ..Default::default()
        };
        assert_eq!(
            fields(build_profile("bad id", &d, None)),
            [
                "id",
                "number",
                "availability",
                "reject_code",
                "reject_reason",
                "standard_length",
                "name",
                "message",
                "caller_id"
            ]
        );
        let d = ProfileDraft {
            incoming: Some("ring_devices".into()),
            ..Default::default()
        };
        assert_eq!(
            fields(build_profile("lunch", &d, Some(&lunch()))),
            ["devices"]
        );
        let d = ProfileDraft {
            incoming: Some("send_to:fax:1".into()),
            ..Default::default()
        };
        assert_eq!(
            fields(build_profile("lunch", &d, Some(&lunch()))),
            ["incoming"]
        );
        assert_eq!(
            fields(build_profile("x", &ProfileDraft::default(), None)),
            ["number"]
        );
    }

    #[test]
    fn numbers_one_to_ten_are_the_defaults_and_numbers_are_unique() {
        let mut p = lunch();
        assert_eq!(number_problem(&p, &[]), None);
        p.id = "mine".into();
        assert!(number_problem(&p, &[])
            .unwrap()
            .contains("default profile \"Lunch\""));
        p.number = 12;
        let mut other = lunch();
        other.id = "focus".into();
        other.number = 12;
        assert!(number_problem(&p, [&other])
            .unwrap()
            .contains("already used by profile \"focus\""));
        assert_eq!(next_free_number([11, 12, 14]), Some(13));
        assert_eq!(next_free_number([1, 2]), Some(11));
    }

    #[test]
    fn ids_from_names() {
        assert_eq!(id_from_name("Focus time"), "focus_time");
        assert_eq!(id_from_name("  Out -- of office! "), "out_of_office");
        assert_eq!(id_problem("focus_time"), None);
        assert!(id_problem("").is_some());
        assert!(id_problem("a/b").is_some());
    }
}
