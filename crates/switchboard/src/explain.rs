//! `switchboard explain`: the plan a call would get, in plain words.

use chrono::{DateTime, NaiveDateTime, Utc};
use switchboard_policy::{plan, Availability, Call, Caller, Policy, View};

/// The situation to explain a call in.
#[derive(Clone, Debug, Default)]
pub struct Scenario {
    pub from: String,
    pub to: String,
    pub at: Option<String>,
    /// `user=status`
    pub presence: Vec<String>,
    /// `user=profile`
    pub profiles: Vec<String>,
    pub in_call: Vec<String>,
    /// Users with no registered device.
    pub offline: Vec<String>,
    /// `team=user`: who answered the previous call to a group.
    pub last_answerer: Vec<String>,
}

fn pair<'a>(s: &'a str, what: &str) -> Result<(&'a str, &'a str), String> {
    s.split_once('=')
        .map(|(a, b)| (a.trim(), b.trim()))
        .filter(|(a, b)| !a.is_empty() && !b.is_empty())
        .ok_or_else(|| format!("{s:?}: expected {what}"))
}

/// Reads `--at`: RFC 3339, or `YYYY-MM-DDTHH:MM` in UTC.
pub fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M")
        .map(|t| t.and_utc())
        .map_err(|_| format!("{s:?} is not a time (2026-11-23T14:00 in UTC, or RFC 3339)"))
}

/// Builds the call and view, plans, and renders the plan.
pub fn explain(policy: &Policy, s: &Scenario, now: DateTime<Utc>) -> Result<String, String> {
    let at = match &s.at {
        Some(t) => parse_time(t)?,
        None => now,
    };
    let mut view = View::default();
    for u in policy.users() {
        // One device each, as if registered, unless named offline; someone without a SIP
        // account never has one.
        let devices = usize::from(u.sip.is_some() && !s.offline.contains(&u.id));
        view = view.with_person(&u.id, devices);
    }
    for p in &s.presence {
        let (user, status) = pair(p, "user=status")?;
        let a = Availability::parse(status).ok_or_else(|| format!("unknown status {status:?}"))?;
        view = view.with_status(user, a);
    }
    for p in &s.profiles {
        let (user, profile) = pair(p, "user=profile")?;
        if policy.profile(profile).is_none() {
            return Err(format!("unknown profile {profile:?}"));
        }
        view = view.with_profile(user, profile);
    }
    for u in &s.in_call {
        view = view.with_in_call(u);
    }
    for p in &s.last_answerer {
        let (group, user) = pair(p, "team=user")?;
        view = view.with_last_answerer(group, user, at.timestamp());
    }
    let from = match s.from.split_once(':') {
        Some(("trunk", t)) => Caller::Trunk {
            trunk: t.to_string(),
            number: String::new(),
        },
        _ => match policy
            .user(&s.from)
            .or_else(|| policy.user_by_extension(&s.from))
        {
            Some(u) => Caller::User(u.id.clone()),
            None => Caller::External(s.from.clone()),
        },
    };
    let call = Call {
        from,
        to: s.to.clone(),
        call_id: format!("explain-{}-{}", s.from, s.to),
    };
    let p = plan(policy, &call, &view, at);
    Ok(format!(
        "call from {} to {} at {}\n{p}",
        s.from,
        s.to,
        at.format("%Y-%m-%d %H:%M UTC")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy_source::{EMBEDDED_POLICY, EMBEDDED_POLICY_NAME};
    use switchboard_policy::Source;

    fn policy() -> Policy {
        Policy::from_sources(&[Source {
            name: EMBEDDED_POLICY_NAME.into(),
            text: EMBEDDED_POLICY.into(),
        }])
        .unwrap()
    }

    #[test]
    fn explains_a_team_call_with_a_dnd_member() {
        let s = Scenario {
            from: "+15550100".into(),
            to: "2000".into(),
            at: Some("2026-11-23T10:00".into()),
            presence: vec!["alice=dnd".into()],
            ..Scenario::default()
        };
        let text = explain(&policy(), &s, Utc::now()).unwrap();
        assert!(text.contains("alice skipped (dnd)"), "{text}");
        assert!(text.contains("ring (memory_hunt)"), "{text}");
    }

    #[test]
    fn someone_without_a_sip_account_has_no_device_to_ring() {
        let policy = Policy::from_sources(&[Source {
            name: "p.toml".into(),
            text: "[users.alice]\nextension = \"1001\"\n[users.alice.sip]\npassword = \"alice-secret-1234\"\n\
                   [users.ivr]\nextension = \"1005\"\nno_answer = \"hangup\"\n"
                .into(),
        }])
        .unwrap();
        let s = Scenario {
            from: "alice".into(),
            to: "1005".into(),
            ..Scenario::default()
        };
        let text = explain(&policy, &s, Utc::now()).unwrap();
        assert!(!text.contains("ivr (1 device(s))"), "{text}");
        assert!(text.contains("ivr has no registered devices"), "{text}");
        // alice, who has an account, is taken to have one.
        let s = Scenario {
            from: "ivr".into(),
            to: "1001".into(),
            ..Scenario::default()
        };
        let text = explain(&policy, &s, Utc::now()).unwrap();
        assert!(text.contains("alice (1 device(s))"), "{text}");
    }

    #[test]
    fn bad_inputs_are_named() {
        let s = Scenario {
            presence: vec!["alice=sleepy".into()],
            ..Scenario::default()
        };
        assert_eq!(
            explain(&policy(), &s, Utc::now()).unwrap_err(),
            "unknown status \"sleepy\""
        );
        assert!(parse_time("tomorrow").is_err());
    }
}
