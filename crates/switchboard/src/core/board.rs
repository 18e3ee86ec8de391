//! The live presence board's feed: who changed since the daemon's loop last asked.
//!
//! The board (`/board`, fed by `GET /v1/presence/events`) shows what `GET /v1/presence`
//! shows, live. The core does not know of pages or connections: it only notes the people
//! whose row may have changed — everyone whose presence or call status changed (the same
//! list the watchers are told, and at the same moment: a change on its way to the store is
//! noted once it is stored), and everyone whose registered devices changed (a binding
//! stored or lapsed: offline or not). After each turn the loop takes the list
//! ([`super::Core::board_changes`]) and publishes those people's rows to every open board.
//! While no board is open the feed is off and notes nothing: no cost on the core's path.
//! When on, the cost is one name per changed person per event.

use std::collections::HashMap;

/// The people whose board row may have changed since the loop last took them.
#[derive(Debug, Default)]
pub struct BoardFeed {
    /// A board is open: note changes.
    on: bool,
    /// Who changed, in the order noted (duplicates removed when taken).
    changed: Vec<String>,
}

/// How many names the feed holds before it removes duplicates (the loop takes them after
/// every turn, so this bounds a single turn's burst, e.g. a policy reload).
const COMPACT_AT: usize = 4096;

impl BoardFeed {
    /// Turns the feed on (a board is open) or off (none is: what was noted is dropped).
    pub fn set_on(&mut self, on: bool) {
        self.on = on;
        if !on {
            self.changed.clear();
        }
    }

    /// Whether the feed notes changes.
    pub fn is_on(&self) -> bool {
        self.on
    }

    /// People whose presence or call status changed; those whose change is still on its
    /// way to the store (`held`) are left out: they come again once it is stored.
    pub(crate) fn note_people(&mut self, people: &[String], held: &HashMap<String, usize>) {
        if !self.on {
            return;
        }
        for p in people {
            if !held.contains_key(p) {
                self.changed.push(p.clone());
            }
        }
        self.compact();
    }

    /// A person whose registered devices changed.
    pub(crate) fn note_person(&mut self, person: &str) {
        if self.on {
            self.changed.push(person.to_string());
            self.compact();
        }
    }

    fn compact(&mut self) {
        if self.changed.len() > COMPACT_AT {
            self.changed.sort();
            self.changed.dedup();
        }
    }

    /// Who changed since the last call, each once, sorted.
    pub fn take(&mut self) -> Vec<String> {
        let mut out = std::mem::take(&mut self.changed);
        out.sort();
        out.dedup();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_notes_nothing_and_held_people_wait() {
        let mut f = BoardFeed::default();
        let mut held = HashMap::new();
        f.note_people(&["bob".into()], &held);
        f.note_person("alice");
        assert!(f.take().is_empty(), "off: nothing noted");
        f.set_on(true);
        held.insert("carol".to_string(), 1);
        f.note_people(&["bob".into(), "carol".into(), "bob".into()], &held);
        f.note_person("alice");
        assert_eq!(
            f.take(),
            ["alice", "bob"],
            "once each; carol's change is not stored yet"
        );
        assert!(f.take().is_empty());
        f.note_person("dave");
        f.set_on(false);
        assert!(f.take().is_empty(), "turned off: dropped");
    }

    /// The core notes registrations, ringing calls and presence changes, the latter only
    /// once stored; nothing while the board is off.
    #[test]
    fn the_core_notes_devices_calls_and_stored_changes() {
        use crate::core::Input;
        use crate::presence_service::{Command, Request};
        use crate::test_harness::{invite, T};
        use switchboard_presence::model::{Availability, CallStatus, Interface};
        let mut t = T::new(false);
        let changes = |t: &mut T| {
            let unix = t.now().unix;
            t.core.board_changes(unix)
        };
        /// What a change of `user` says, which there must be.
        fn changed<'a, P>(c: &'a [(String, Option<P>)], user: &str) -> &'a P {
            c.iter()
                .find(|(u, _)| u == user)
                .and_then(|(_, p)| p.as_ref())
                .unwrap_or_else(|| panic!("no change of {user}"))
        }
        t.register("carol", "127.0.0.1:5073");
        assert!(changes(&mut t).is_empty(), "off: nothing noted");

        t.core.board_on(true);
        t.register("bob", "127.0.0.1:5072");
        let c = changes(&mut t);
        assert_eq!(c.len(), 1, "{c:?}");
        let bob = c[0].1.as_ref().unwrap();
        assert_eq!((bob.user.as_str(), bob.devices), ("bob", 1));

        t.input(
            "127.0.0.1:5071",
            &invite("alice", "127.0.0.1:5071", "1002", "b1", ""),
        );
        t.take();
        let c = changes(&mut t);
        let bob = changed(&c, "bob");
        assert_eq!(bob.call_status, CallStatus::Ringing, "{c:?}");

        // A change on its way to the store comes once it is stored.
        t.hold_writes = true;
        t.feed(Input::Command {
            id: 7,
            req: Request {
                who: "admin".into(),
                admin: true,
                via: Interface::Api,
                command: Command::SetStatus {
                    user: "carol".into(),
                    status: "dnd".into(),
                    text: None,
                    until: None,
                },
            },
        });
        t.pump();
        assert!(changes(&mut t).iter().all(|(u, _)| u != "carol"));
        t.release(true);
        t.hold_writes = false;
        let c = changes(&mut t);
        let carol = changed(&c, "carol");
        assert_eq!(carol.availability, Availability::DoNotDisturb);
        assert_eq!(t.core.board_people(t.now().unix).len(), 3);

        // A status that lapses by itself, and bindings that lapse (offline).
        let until = t.now().unix as i64 + 5;
        t.feed(Input::Command {
            id: 8,
            req: Request {
                who: "admin".into(),
                admin: true,
                via: Interface::Api,
                command: Command::SetStatus {
                    user: "carol".into(),
                    status: "away".into(),
                    text: None,
                    until: Some(until),
                },
            },
        });
        t.pump();
        changes(&mut t);
        t.advance(6);
        let c = changes(&mut t);
        let carol = changed(&c, "carol");
        assert_eq!(
            carol.availability,
            Availability::DoNotDisturb,
            "back: {c:?}"
        );
        t.advance(3600);
        let c = changes(&mut t);
        let bob = changed(&c, "bob");
        assert_eq!(bob.devices, 0, "{c:?}");

        t.core.board_on(false);
        t.take();
        t.register("alice", "127.0.0.1:5071");
        assert!(changes(&mut t).is_empty());
    }

    #[test]
    fn a_burst_stays_bounded() {
        let mut f = BoardFeed::default();
        f.set_on(true);
        for _ in 0..10 {
            for i in 0..1000 {
                f.note_person(&format!("u{i}"));
            }
        }
        assert!(f.changed.len() <= COMPACT_AT + 1000);
        assert_eq!(f.take().len(), 1000);
    }
}
