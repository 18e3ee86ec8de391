//! People's own profiles.
//!
//! The policy's profiles (the ten defaults and the operator's) are everyone's base set. Each
//! person may change them, remove them and create profiles of their own through the presence
//! API, as the reference's users manage "the profiles of their account". Those changes are an
//! overlay kept by the daemon in the store's `profiles` table, one row per person and profile,
//! never written into the policy files: the operator's TOML stays the company's set and the
//! overlay is the person's. A person's set is the policy's profiles with their changes, less
//! the ones they removed, plus their own.
//!
//! A change is kept as a [`ProfileDraft`] over the policy's profile of that id, so what the
//! person did not change follows the policy when it is reloaded; a profile of one's own is a
//! whole draft. Drafts are checked by the policy crate's own rules
//! ([`switchboard_policy::profile`]) when they are made and whenever they are read.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use switchboard_policy::{build_profile, IncomingHandling, Policy, Profile, ProfileDraft};
use switchboard_store::tables::{profile_key, PROFILES};
use switchboard_store::Write;

/// One person's change to one profile.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Entry {
    /// Settings over the policy's profile of this id, or a whole profile of one's own.
    Changed(Box<ProfileDraft>),
    /// The policy's profile of this id is not in the person's set.
    Removed,
}

/// Where a profile of a person's set comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// The policy's, as it is.
    Policy,
    /// The policy's, with the person's changes.
    Changed,
    /// The person's own.
    Own,
}

/// A profile of a person's set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Effective {
    pub profile: Profile,
    pub origin: Origin,
}

/// Everyone's changes.
#[derive(Clone, Debug, Default)]
pub struct Overlay {
    people: BTreeMap<String, BTreeMap<String, Entry>>,
}

impl Overlay {
    /// Loads the rows of the `profiles` table; returns how many were read.
    pub fn restore(&mut self, rows: Vec<(String, Vec<u8>)>) -> usize {
        let mut n = 0;
        for (key, value) in rows {
            let Some((user, id)) = key.split_once('\n') else {
                tracing::warn!(key, "profile row with an unreadable key; skipped");
                continue;
            };
            match serde_json::from_slice::<Entry>(&value) {
                Ok(e) => {
                    self.set(user, id, Some(e));
                    n += 1;
                }
                Err(e) => {
                    tracing::warn!(user, profile = id, error = %e, "unreadable profile row; skipped")
                }
            }
        }
        n
    }

    /// The key of every row held (person and profile, as stored).
    pub fn keys(&self) -> Vec<String> {
        self.people
            .iter()
            .flat_map(|(user, m)| m.keys().map(move |id| profile_key(user, id)))
            .collect()
    }

    /// The people who have changes.
    pub fn people(&self) -> impl Iterator<Item = &String> {
        self.people.keys()
    }

    pub fn entry(&self, user: &str, id: &str) -> Option<&Entry> {
        self.people.get(user)?.get(id)
    }

    /// Sets (Some) or drops (None) a person's entry for a profile; returns the previous one.
    pub fn set(&mut self, user: &str, id: &str, entry: Option<Entry>) -> Option<Entry> {
        match entry {
            Some(e) => self
                .people
                .entry(user.to_string())
                .or_default()
                .insert(id.to_string(), e),
            None => {
                let m = self.people.get_mut(user)?;
                let prev = m.remove(id);
                if m.is_empty() {
                    self.people.remove(user);
                }
                prev
            }
        }
    }

    /// The row that stores a person's entry (a delete for None).
    pub fn write(user: &str, id: &str, entry: Option<&Entry>) -> Write {
        match entry {
            Some(e) => Write::put(
                PROFILES,
                profile_key(user, id),
                serde_json::to_vec(e).unwrap_or_default(),
            ),
            None => Write::delete(PROFILES, profile_key(user, id)),
        }
    }

    /// Profile `id` as it is in `user`'s set.
    pub fn profile(&self, policy: &Policy, user: &str, id: &str) -> Option<Effective> {
        let base = policy.profile(id);
        match (self.entry(user, id), base) {
            (None, Some(b)) => Some(Effective {
                profile: b.clone(),
                origin: Origin::Policy,
            }),
            (None, None) | (Some(Entry::Removed), _) => None,
            (Some(Entry::Changed(d)), base) => match build_profile(id, d, base) {
                Ok(p) => Some(Effective {
                    profile: p,
                    origin: if base.is_some() {
                        Origin::Changed
                    } else {
                        Origin::Own
                    },
                }),
                // Valid when made; the policy under it changed since. The policy's stands.
                Err(problems) => {
                    tracing::warn!(user, profile = id, problem = %problems[0].message, "a person's profile no longer fits the policy; ignored");
                    base.map(|b| Effective {
                        profile: b.clone(),
                        origin: Origin::Policy,
                    })
                }
            },
        }
    }

    /// A person's whole set in number order (on a shared number, theirs first).
    pub fn profiles(&self, policy: &Policy, user: &str) -> Vec<Effective> {
        let mut out: Vec<Effective> = policy
            .profiles()
            .into_iter()
            .filter_map(|p| self.profile(policy, user, &p.id))
            .collect();
        if let Some(own) = self.people.get(user) {
            for id in own.keys().filter(|id| policy.profile(id).is_none()) {
                out.extend(self.profile(policy, user, id));
            }
        }
        out.sort_by_key(|e| (e.profile.number, e.origin == Origin::Policy));
        out
    }

    /// A profile of a person's set by id, else by number.
    pub fn find(&self, policy: &Policy, user: &str, key: &str) -> Option<Effective> {
        self.profile(policy, user, key).or_else(|| {
            let n: u32 = key.parse().ok()?;
            self.profiles(policy, user)
                .into_iter()
                .find(|e| e.profile.number == n)
        })
    }
}

/// The `incoming` setting as written in a policy file or an API body.
pub fn incoming_text(i: &IncomingHandling) -> String {
    match i {
        IncomingHandling::RingAsNormal => "ring".into(),
        IncomingHandling::RingDevices(_) => "ring_devices".into(),
        IncomingHandling::OutOfHours => "out_of_hours".into(),
        IncomingHandling::Reject { .. } => "reject".into(),
        IncomingHandling::SendTo(t) => format!("send_to:{t}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_policy::Source;

    fn policy() -> Policy {
        Policy::from_sources(&[Source {
            name: "p.toml".into(),
            text: "[users.alice]\nextension = \"1\"\n[users.bob]\nextension = \"2\"\n".into(),
        }])
        .unwrap()
    }

    fn draft(name: &str, number: i64) -> Entry {
        Entry::Changed(Box::new(ProfileDraft {
            name: Some(name.into()),
            number: Some(number),
            ..Default::default()
        }))
    }

    #[test]
    fn a_persons_set_is_the_policys_with_their_changes() {
        let p = policy();
        let mut o = Overlay::default();
        o.set("alice", "lunch", Some(draft("Fika", 2)));
        o.set("alice", "training", Some(Entry::Removed));
        o.set("alice", "focus", Some(draft("Focus", 11)));
        let alice = o.profiles(&p, "alice");
        let names: Vec<(&str, u32, Origin)> = alice
            .iter()
            .map(|e| (e.profile.name.as_str(), e.profile.number, e.origin))
            .collect();
        assert_eq!(alice.len(), 10);
        assert_eq!(names[1], ("Fika", 2, Origin::Changed));
        assert_eq!(names[9], ("Focus", 11, Origin::Own));
        assert!(alice.iter().all(|e| e.profile.id != "training"));
        // Bob's set is untouched.
        assert_eq!(o.profiles(&p, "bob").len(), 10);
        assert_eq!(o.profile(&p, "bob", "lunch").unwrap().profile.name, "Lunch");
        assert_eq!(o.find(&p, "alice", "11").unwrap().profile.id, "focus");
        assert!(o.find(&p, "bob", "11").is_none());
    }

    #[test]
    fn rows_round_trip() {
        let mut o = Overlay::default();
        let e = draft("Focus", 11);
        let w = Overlay::write("alice", "focus", Some(&e));
        let mut back = Overlay::default();
        assert_eq!(
            back.restore(vec![(w.key.clone(), w.value.clone().unwrap())]),
            1
        );
        assert_eq!(back.entry("alice", "focus"), Some(&e));
        assert_eq!(o.set("alice", "focus", Some(e.clone())), None);
        assert_eq!(o.set("alice", "focus", None), Some(e));
        assert_eq!(o.people().count(), 0);
        assert_eq!(Overlay::write("a", "b", None).value, None);
    }
}
