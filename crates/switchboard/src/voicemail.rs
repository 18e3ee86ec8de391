//! Mailboxes through the API and the CLI: what may be asked of a mailbox ([`Action`]), who
//! may ask it ([`access`]), and how the core's [`Mailboxes`] answer it ([`handle`]).
//!
//! Sans-I/O like the core that calls it: a command comes in, an answer and the rows to
//! store go out. A change (a message marked heard or new, a message deleted, a recording
//! put or removed) is answered once its writes are durable, and undone ([`undo`]) if the
//! store refuses them, so that the counts the core keeps (and message-waiting lamps show)
//! and the store agree. Audio is never held by the core: a message's or a recording's is
//! read from the store by key, off the core's loop, after an empty write has made sure the
//! store holds every change made before ([`Answer::Stored`]).
//!
//! Who may do what: the admin token, everything; a person, their own mailbox and the
//! mailboxes of the teams they are a member of (a team has no owner in the policy: its
//! members share its mailbox, its messages and its greeting). A mailbox that is turned off
//! (`voicemail.enabled = false`) or whose owner is not in the policy is not found.

use crate::core::mailboxes::{Counts, MailboxError, Mailboxes, MessageRow};
use crate::presence_service::{ErrorKind, PresenceError};
use switchboard_media::wav::SAMPLE_RATE;
use switchboard_policy::{MailboxOwner, Policy};
use switchboard_presence::model::Interface;
use switchboard_store::tables::{voicemail_key, VOICEMAIL_AUDIO, VOICEMAIL_RECORDINGS};
use switchboard_store::{Store, StoreError, Table, Write};

/// What a mailbox's owner records: the greeting callers hear, or their name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Recording {
    /// What a caller hears before leaving a message.
    Greeting,
    /// The owner saying their name (in the default greeting and announcements).
    Name,
}

/// Bytes a recording's WAV file may hold beyond its samples: the header and a few chunks
/// of metadata (which are not kept: the recording is stored as its samples alone).
const WAV_SLACK: usize = 4096;

/// The shortest recording taken, in milliseconds.
pub const MIN_RECORDING_MS: u64 = 100;

impl Recording {
    pub const ALL: [Recording; 2] = [Recording::Greeting, Recording::Name];

    /// Its id in the store ([`VOICEMAIL_RECORDINGS`]) and in the API's paths.
    pub fn id(self) -> &'static str {
        match self {
            Recording::Greeting => "greeting",
            Recording::Name => "name",
        }
    }

    /// The recording of id `id`.
    pub fn parse(id: &str) -> Option<Recording> {
        Recording::ALL.into_iter().find(|r| r.id() == id)
    }

    /// Its longest length, in seconds: a greeting a minute, a name 5 s.
    pub fn max_secs(self) -> u32 {
        match self {
            Recording::Greeting => 60,
            Recording::Name => 5,
        }
    }

    /// Its most samples (8000 Hz).
    pub fn max_samples(self) -> usize {
        self.max_secs() as usize * SAMPLE_RATE as usize
    }

    /// The largest WAV file taken for it: its longest length of 16-bit samples, the header
    /// and some metadata. A request body is refused beyond this before it is decoded.
    pub fn max_bytes(self) -> usize {
        self.max_samples() * 2 + WAV_SLACK
    }
}

/// What is asked of a mailbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Its counts and messages.
    List,
    /// One message.
    Message { id: String },
    /// Marks a message heard, or new again.
    SetHeard { id: String, heard: bool },
    /// Deletes a message (its row, its audio, its mail if not sent yet).
    Delete { id: String },
    /// Where a message's audio is; answered once the store holds every earlier change.
    Audio { id: String },
    /// Keeps a recording: `wav` is a WAV file already checked (8000 Hz mono 16-bit PCM,
    /// within the recording's length), `duration_ms` its length.
    PutRecording {
        recording: Recording,
        wav: Vec<u8>,
        duration_ms: u64,
    },
    /// Where a recording is; answered once the store holds every earlier change.
    Recording { recording: Recording },
    /// Removes a recording (whether there is one or not).
    DeleteRecording { recording: Recording },
}

impl Action {
    /// Whether it changes the mailbox (changes of one mailbox are stored one after
    /// another).
    pub fn changes(&self) -> bool {
        matches!(
            self,
            Action::SetHeard { .. }
                | Action::Delete { .. }
                | Action::PutRecording { .. }
                | Action::DeleteRecording { .. }
        )
    }
}

/// The answer to an [`Action`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The mailbox's counts and messages, newest first.
    List {
        mailbox: String,
        counts: Counts,
        messages: Vec<MessageRow>,
    },
    /// One message (asked for, or as marked).
    Message(MessageRow),
    /// A deleted message, and the mailbox's counts after.
    Deleted { message: MessageRow, counts: Counts },
    /// The row of `table` under `key` to read (a message's audio, or a recording): every
    /// change made before is in the store.
    Stored { table: Table, key: String },
    /// A recording kept (`duration_ms`: its length) or removed (None).
    Recording {
        mailbox: String,
        recording: Recording,
        duration_ms: Option<u64>,
    },
}

/// What puts a mailbox back as it was when a change could not be stored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Undo {
    /// Nothing held in memory changed (a recording).
    #[default]
    Nothing,
    /// A message was marked heard or new: what it was.
    Heard {
        mailbox: String,
        id: String,
        was: bool,
    },
    /// A message was deleted: it comes back.
    Deleted(MessageRow),
}

/// A change made in memory, to store before it is answered (no writes: answered once every
/// earlier write is stored).
#[derive(Debug)]
pub struct Change {
    pub answer: Answer,
    pub writes: Vec<Write>,
    pub before: Undo,
}

fn refused(kind: ErrorKind, field: &str, message: impl Into<String>) -> PresenceError {
    PresenceError::new(kind, Some(field), message)
}

/// Whether `who` (`admin`: the admin token) may use `owner`'s mailbox: it exists and is on
/// (else not found), and it is theirs or their team's (else forbidden).
pub fn access(
    policy: &Policy,
    who: &str,
    admin: bool,
    owner: &MailboxOwner,
) -> Result<(), PresenceError> {
    let field = match owner {
        MailboxOwner::User(_) => "user",
        MailboxOwner::Team(_) => "team",
    };
    let settings = match owner {
        MailboxOwner::User(u) => policy.user(u).map(|u| &u.voicemail),
        MailboxOwner::Team(t) => policy.team(t).map(|t| &t.voicemail),
    };
    match settings {
        None => {
            return Err(refused(
                ErrorKind::NotFound,
                field,
                format!("no {field} {:?}", owner.id()),
            ))
        }
        Some(v) if !v.enabled => {
            return Err(refused(
                ErrorKind::NotFound,
                field,
                format!(
                    "{}'s voicemail is turned off (voicemail.enabled = false)",
                    owner.id()
                ),
            ))
        }
        Some(_) => {}
    }
    if admin {
        return Ok(());
    }
    let theirs = match owner {
        MailboxOwner::User(u) => u == who,
        MailboxOwner::Team(t) => policy
            .team(t)
            .is_some_and(|t| t.members.iter().any(|m| m == who)),
    };
    if theirs {
        Ok(())
    } else {
        Err(refused(
            ErrorKind::Forbidden,
            field,
            "a person may use only their own mailbox and their teams'",
        ))
    }
}

fn not_found(e: MailboxError) -> PresenceError {
    match e {
        MailboxError::NoMessage { id, .. } => {
            refused(ErrorKind::NotFound, "message", format!("no message {id:?}"))
        }
        MailboxError::Full { .. } => refused(ErrorKind::Conflict, "message", e.to_string()),
    }
}

/// Answers `action` on `owner`'s mailbox for `who` (`via`: the interface, for the log): an
/// answer now, or a [`Change`] to store first; refused when [`access`] refuses.
pub fn handle(
    mailboxes: &mut Mailboxes,
    policy: &Policy,
    who: &str,
    admin: bool,
    via: Interface,
    owner: &MailboxOwner,
    action: Action,
) -> Result<Result<Answer, Change>, PresenceError> {
    access(policy, who, admin, owner)?;
    let mailbox = owner.key();
    let message = |mailboxes: &Mailboxes, id: &str| {
        mailboxes.message(&mailbox, id).cloned().ok_or_else(|| {
            not_found(MailboxError::NoMessage {
                mailbox: mailbox.clone(),
                id: id.to_string(),
            })
        })
    };
    Ok(match action {
        Action::List => {
            let mut messages: Vec<MessageRow> = mailboxes.messages(&mailbox).cloned().collect();
            messages.reverse();
            Ok(Answer::List {
                counts: mailboxes.counts(&mailbox),
                mailbox,
                messages,
            })
        }
        Action::Message { id } => Ok(Answer::Message(message(mailboxes, &id)?)),
        Action::SetHeard { id, heard } => {
            let was = message(mailboxes, &id)?.heard;
            let writes = mailboxes
                .set_heard(&mailbox, &id, heard)
                .map_err(not_found)?;
            let answer = Answer::Message(message(mailboxes, &id)?);
            if writes.is_empty() {
                Ok(answer)
            } else {
                tracing::info!(%mailbox, %id, heard, by = %who, ?via, "voicemail message marked");
                Err(Change {
                    answer,
                    writes,
                    before: Undo::Heard { mailbox, id, was },
                })
            }
        }
        Action::Delete { id } => {
            let row = message(mailboxes, &id)?;
            let writes = mailboxes.delete(&mailbox, &id).map_err(not_found)?;
            tracing::info!(%mailbox, %id, by = %who, ?via, "voicemail message deleted");
            Err(Change {
                answer: Answer::Deleted {
                    message: row.clone(),
                    counts: mailboxes.counts(&mailbox),
                },
                writes,
                before: Undo::Deleted(row),
            })
        }
        Action::Audio { id } => {
            message(mailboxes, &id)?;
            Err(Change {
                answer: Answer::Stored {
                    table: VOICEMAIL_AUDIO,
                    key: voicemail_key(&mailbox, &id),
                },
                writes: Vec::new(),
                before: Undo::Nothing,
            })
        }
        Action::PutRecording {
            recording,
            wav,
            duration_ms,
        } => {
            tracing::info!(%mailbox, recording = %recording.id(), duration_ms, by = %who, ?via, "voicemail recording kept");
            let key = voicemail_key(&mailbox, recording.id());
            Err(Change {
                answer: Answer::Recording {
                    mailbox,
                    recording,
                    duration_ms: Some(duration_ms),
                },
                writes: vec![Write::put(VOICEMAIL_RECORDINGS, key, wav)],
                before: Undo::Nothing,
            })
        }
        Action::Recording { recording } => Err(Change {
            answer: Answer::Stored {
                table: VOICEMAIL_RECORDINGS,
                key: voicemail_key(&mailbox, recording.id()),
            },
            writes: Vec::new(),
            before: Undo::Nothing,
        }),
        Action::DeleteRecording { recording } => {
            tracing::info!(%mailbox, recording = %recording.id(), by = %who, ?via, "voicemail recording removed");
            let key = voicemail_key(&mailbox, recording.id());
            Err(Change {
                answer: Answer::Recording {
                    mailbox,
                    recording,
                    duration_ms: None,
                },
                writes: vec![Write::delete(VOICEMAIL_RECORDINGS, key)],
                before: Undo::Nothing,
            })
        }
    })
}

/// Puts back what a change that could not be stored did in memory.
pub fn undo(mailboxes: &mut Mailboxes, before: Undo) {
    match before {
        Undo::Nothing => {}
        Undo::Heard { mailbox, id, was } => {
            tracing::warn!(%mailbox, %id, "voicemail change rolled back: it could not be stored");
            // The message may have gone meanwhile (a later deletion): nothing to put back.
            let _ = mailboxes.set_heard(&mailbox, &id, was);
        }
        Undo::Deleted(row) => {
            tracing::warn!(mailbox = %row.mailbox, id = %row.id, "voicemail deletion rolled back: it could not be stored");
            mailboxes.put_back(row);
        }
    }
}

/// The row of `table` under `key`, if there is one (a blocking read of the store: off the
/// core's loop).
pub fn read_row(store: &dyn Store, table: Table, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
    // No key but `key` itself lies in [key, key + "\0").
    let end = format!("{key}\0");
    let mut rows = store.scan_range_limited(table, key, &end, 1)?;
    Ok(rows.pop().map(|(_, v)| v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::presence_service::Answer as PresenceAnswer;
    use switchboard_store::{MemoryStore, Store};

    const POLICY: &str = r#"
[users.alice]
extension = "1001"
[users.bob]
extension = "1002"
[users.carol]
extension = "1003"
[users.carol.voicemail]
enabled = false
[teams.sales]
name = "Sales"
extension = "2000"
members = ["alice"]
"#;

    fn policy() -> Policy {
        Policy::from_sources(&[switchboard_policy::Source {
            name: "p.toml".into(),
            text: POLICY.into(),
        }])
        .unwrap()
    }

    fn row(b: &mut Mailboxes, mailbox: &str, at: u64) -> MessageRow {
        MessageRow {
            id: b.new_id(at),
            mailbox: mailbox.into(),
            received: at,
            duration_ms: 2500,
            caller: "1002".into(),
            caller_name: None,
            called: "1001".into(),
            original: None,
            reason: "no_answer".into(),
            profile: None,
            call_id: format!("c{at}"),
            heard: false,
        }
    }

    fn user(u: &str) -> MailboxOwner {
        MailboxOwner::User(u.into())
    }

    fn run(
        b: &mut Mailboxes,
        who: &str,
        owner: &MailboxOwner,
        action: Action,
    ) -> Result<Result<Answer, Change>, PresenceError> {
        let admin = who == "admin";
        handle(b, &policy(), who, admin, Interface::Api, owner, action)
    }

    #[test]
    fn who_may_use_which_mailbox() {
        let p = policy();
        let kind = |who: &str, owner: &MailboxOwner| {
            access(&p, who, who == "admin", owner).err().map(|e| e.kind)
        };
        let sales = MailboxOwner::Team("sales".into());
        assert_eq!(kind("alice", &user("alice")), None);
        assert_eq!(kind("alice", &sales), None, "a member, her team's");
        assert_eq!(kind("bob", &sales), Some(ErrorKind::Forbidden));
        assert_eq!(kind("bob", &user("alice")), Some(ErrorKind::Forbidden));
        assert_eq!(kind("admin", &user("bob")), None);
        assert_eq!(kind("admin", &sales), None);
        // Off or unknown: not found, whoever asks.
        assert_eq!(kind("carol", &user("carol")), Some(ErrorKind::NotFound));
        assert_eq!(kind("admin", &user("carol")), Some(ErrorKind::NotFound));
        assert_eq!(kind("admin", &user("zed")), Some(ErrorKind::NotFound));
        let e = access(&p, "admin", true, &MailboxOwner::Team("ops".into())).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("team"));
        let e = access(&p, "carol", false, &user("carol")).unwrap_err();
        assert!(e.message.contains("turned off"), "{}", e.message);
    }

    #[test]
    fn list_newest_first_mark_and_delete_with_their_writes_and_undo() {
        let mut b = Mailboxes::default();
        let old = row(&mut b, "user:alice", 100);
        let new = row(&mut b, "user:alice", 200);
        b.deposit(old.clone(), vec![1], 10, &[]).unwrap();
        b.deposit(new.clone(), vec![2], 10, &[]).unwrap();
        b.take_changed();
        let alice = user("alice");
        let Ok(Ok(Answer::List {
            mailbox,
            counts,
            messages,
        })) = run(&mut b, "alice", &alice, Action::List)
        else {
            panic!("a list");
        };
        assert_eq!(mailbox, "user:alice");
        assert_eq!(counts, Counts { new: 2, old: 0 });
        assert_eq!(messages, vec![new.clone(), old.clone()]);

        // Heard: one write, answered after it; the same again is answered at once.
        let Ok(Err(change)) = run(
            &mut b,
            "alice",
            &alice,
            Action::SetHeard {
                id: old.id.clone(),
                heard: true,
            },
        ) else {
            panic!("a change");
        };
        assert_eq!(change.writes.len(), 1);
        let Answer::Message(m) = &change.answer else {
            panic!("the message");
        };
        assert!(m.heard);
        assert_eq!(b.counts("user:alice"), Counts { new: 1, old: 1 });
        assert!(matches!(
            run(
                &mut b,
                "alice",
                &alice,
                Action::SetHeard {
                    id: old.id.clone(),
                    heard: true
                }
            ),
            Ok(Ok(Answer::Message(_)))
        ));
        // The store refused it: new again.
        undo(&mut b, change.before);
        assert_eq!(b.counts("user:alice"), Counts { new: 2, old: 0 });

        // Delete: its row, audio and notice; undone, it is back.
        let Ok(Err(change)) = run(
            &mut b,
            "admin",
            &alice,
            Action::Delete { id: new.id.clone() },
        ) else {
            panic!("a change");
        };
        assert_eq!(change.writes.len(), 3);
        assert!(change.writes.iter().all(|w| w.value.is_none()));
        assert_eq!(
            change.answer,
            Answer::Deleted {
                message: new.clone(),
                counts: Counts { new: 1, old: 0 }
            }
        );
        assert!(b.message("user:alice", &new.id).is_none());
        undo(&mut b, change.before);
        assert_eq!(b.message("user:alice", &new.id), Some(&new));

        // Unknown messages are not found; others' mailboxes forbidden.
        let e = run(&mut b, "alice", &alice, Action::Delete { id: "x".into() }).unwrap_err();
        assert_eq!(
            (e.kind, e.field.as_deref()),
            (ErrorKind::NotFound, Some("message"))
        );
        let e = run(&mut b, "bob", &alice, Action::List).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Forbidden);
        let e = run(&mut b, "alice", &alice, Action::Audio { id: "x".into() }).unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotFound);
    }

    #[test]
    fn audio_and_recordings_are_read_after_every_earlier_write() {
        let mut b = Mailboxes::default();
        let m = row(&mut b, "team:sales", 100);
        b.deposit(m.clone(), vec![1], 10, &[]).unwrap();
        let sales = MailboxOwner::Team("sales".into());
        let Ok(Err(change)) = run(&mut b, "alice", &sales, Action::Audio { id: m.id.clone() })
        else {
            panic!("a barrier");
        };
        assert!(change.writes.is_empty());
        assert_eq!(
            change.answer,
            Answer::Stored {
                table: VOICEMAIL_AUDIO,
                key: voicemail_key("team:sales", &m.id),
            }
        );
        let put = Action::PutRecording {
            recording: Recording::Greeting,
            wav: vec![7; 10],
            duration_ms: 1000,
        };
        let Ok(Err(change)) = run(&mut b, "alice", &sales, put) else {
            panic!("a change");
        };
        assert_eq!(
            change.writes,
            vec![Write::put(
                VOICEMAIL_RECORDINGS,
                "team:sales\ngreeting",
                vec![7; 10]
            )]
        );
        let Ok(Err(change)) = run(
            &mut b,
            "alice",
            &sales,
            Action::DeleteRecording {
                recording: Recording::Name,
            },
        ) else {
            panic!("a change");
        };
        assert_eq!(
            change.writes,
            vec![Write::delete(VOICEMAIL_RECORDINGS, "team:sales\nname")]
        );
        assert_eq!(change.before, Undo::Nothing);
    }

    /// A command of `who` to the core through the test harness.
    fn command(t: &mut crate::test_harness::T, id: u64, owner: &MailboxOwner, action: Action) {
        use crate::presence_service::{Command, Request};
        t.feed(crate::core::Input::Command {
            id,
            req: Request {
                who: "alice".into(),
                admin: false,
                via: Interface::Api,
                command: Command::Voicemail {
                    mailbox: owner.clone(),
                    action,
                },
            },
        });
        t.pump();
    }

    fn reply(t: &crate::test_harness::T, id: u64) -> Option<&Result<PresenceAnswer, ErrorKind>> {
        t.replies.iter().find(|(i, _)| *i == id).map(|(_, r)| r)
    }

    #[test]
    fn the_core_answers_changes_once_stored_one_after_another_and_undoes_a_refused_one() {
        let mut t = crate::test_harness::T::with_policy(false, POLICY);
        let mut b = Mailboxes::default();
        let first = row(&mut b, "user:alice", 100);
        let second = row(&mut b, "user:alice", 200);
        let rows = [&first, &second]
            .iter()
            .map(|m| {
                (
                    voicemail_key(&m.mailbox, &m.id),
                    serde_json::to_vec(m).unwrap(),
                )
            })
            .collect();
        assert_eq!(t.core.restore_voicemail(rows), 2);
        let alice = user("alice");
        t.hold_writes = true;
        let heard = Action::SetHeard {
            id: first.id.clone(),
            heard: true,
        };
        command(&mut t, 1, &alice, heard);
        // Waits for the store; the next change of the mailbox waits for it.
        assert_eq!(t.held_len(), 1);
        assert!(reply(&t, 1).is_none());
        command(
            &mut t,
            2,
            &alice,
            Action::Delete {
                id: second.id.clone(),
            },
        );
        assert_eq!(t.held_len(), 1);
        // A read is answered at once, from memory.
        command(&mut t, 3, &alice, Action::List);
        let Some(Ok(PresenceAnswer::Voicemail(Answer::List { counts, .. }))) = reply(&t, 3) else {
            panic!("{:?}", t.replies);
        };
        assert_eq!(*counts, Counts { new: 1, old: 1 });
        // The store refuses the first: undone, answered 503; the deletion goes ahead.
        t.release(false);
        assert_eq!(reply(&t, 1), Some(&Err(ErrorKind::Unavailable)));
        assert_eq!(t.held_len(), 1);
        command(
            &mut t,
            4,
            &alice,
            Action::Message {
                id: first.id.clone(),
            },
        );
        assert_eq!(
            reply(&t, 4),
            Some(&Ok(PresenceAnswer::Voicemail(Answer::Message(
                first.clone()
            ))))
        );
        t.release(true);
        let Some(Ok(PresenceAnswer::Voicemail(Answer::Deleted { counts, .. }))) = reply(&t, 2)
        else {
            panic!("{:?}", t.replies);
        };
        assert_eq!(*counts, Counts { new: 1, old: 0 });
        let deleted: Vec<&Write> = t.persisted.iter().rev().take(3).collect();
        assert!(
            deleted
                .iter()
                .all(|w| w.value.is_none() && w.key == voicemail_key("user:alice", &second.id)),
            "{deleted:?}"
        );
        // Audio: answered after an empty write (every earlier one is stored by then).
        command(
            &mut t,
            5,
            &alice,
            Action::Audio {
                id: first.id.clone(),
            },
        );
        assert!(reply(&t, 5).is_none());
        t.release(true);
        assert_eq!(
            reply(&t, 5),
            Some(&Ok(PresenceAnswer::Voicemail(Answer::Stored {
                table: VOICEMAIL_AUDIO,
                key: voicemail_key("user:alice", &first.id),
            })))
        );
        // Someone else's mailbox: refused at once.
        command(&mut t, 6, &user("bob"), Action::List);
        assert_eq!(reply(&t, 6), Some(&Err(ErrorKind::Forbidden)));
    }

    #[test]
    fn a_row_is_read_by_its_key_alone() {
        let store = MemoryStore::default();
        store
            .commit(&[
                Write::put(VOICEMAIL_AUDIO, "user:al\n1", vec![1]),
                Write::put(VOICEMAIL_AUDIO, "user:al\n10", vec![2]),
                Write::put(VOICEMAIL_AUDIO, "user:al\n1\0x", vec![3]),
            ])
            .unwrap();
        assert_eq!(
            read_row(&store, VOICEMAIL_AUDIO, "user:al\n1").unwrap(),
            Some(vec![1])
        );
        assert_eq!(
            read_row(&store, VOICEMAIL_AUDIO, "user:al\n2").unwrap(),
            None
        );
        assert_eq!(read_row(&store, VOICEMAIL_AUDIO, "user:al").unwrap(), None);
    }

    #[test]
    fn recordings_and_their_bounds() {
        assert_eq!(Recording::parse("greeting"), Some(Recording::Greeting));
        assert_eq!(Recording::parse("name"), Some(Recording::Name));
        assert_eq!(Recording::parse("x"), None);
        assert_eq!(Recording::Greeting.max_samples(), 480_000);
        assert_eq!(Recording::Name.max_bytes(), 80_000 + WAV_SLACK);
    }
}
