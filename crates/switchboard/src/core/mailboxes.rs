//! Voicemail mailboxes: the messages each person's and team's mailbox holds.
//!
//! Every user and team has a mailbox (`user:ID`, `team:ID`: see
//! [`switchboard_policy::MailboxOwner::key`]) unless their policy turns it off. A message is a row
//! ([`MessageRow`]: who called, whom, when, how long, why the call came there, heard or
//! not) in the store's [`VOICEMAIL`] table and its audio (a WAV file) in
//! [`VOICEMAIL_AUDIO`], written in one commit: a message is whole or absent, whatever
//! happens to the daemon. This sub-machine keeps the rows of every mailbox in memory
//! (bounded by each mailbox's `max_messages`), for the counts a message-waiting lamp
//! shows and the lists the API and the phone menu read; audio is only ever read from the
//! store, by key.
//!
//! Changes come back as store writes for the caller to persist, and the mailboxes whose
//! counts changed are remembered until [`Mailboxes::take_changed`] (message-waiting
//! notifications follow them).
//!
//! A message left in a mailbox with mail addresses (while `[mail]` is configured) is also a
//! [`MailNotice`] in [`VOICEMAIL_OUTBOX`], in the same commit: the mail task
//! (`crate::mail`) sends it, with the audio attached, and never holds up the core.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use switchboard_store::tables::{voicemail_key, VOICEMAIL, VOICEMAIL_AUDIO, VOICEMAIL_OUTBOX};
use switchboard_store::Write;

/// One message of a mailbox: the row of [`VOICEMAIL`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRow {
    /// Unique within the mailbox; begins with [`MessageRow::received`] (20 digits), so
    /// ids sort oldest first.
    pub id: String,
    /// The mailbox ([`switchboard_policy::MailboxOwner::key`]).
    pub mailbox: String,
    /// When the message was left (Unix seconds).
    pub received: u64,
    /// How long it is, in milliseconds.
    pub duration_ms: u64,
    /// The caller's number or user part, as the call showed it ("" when it showed none).
    pub caller: String,
    /// The caller's display name, if any.
    #[serde(default)]
    pub caller_name: Option<String>,
    /// What the caller dialled (the Request-URI's user: an extension, a DID).
    pub called: String,
    /// Whom the call was for at first (the person or team dialled, before any forwarding
    /// or hunting), as `user:ID` or `team:ID`; None when the call was for the mailbox itself.
    #[serde(default)]
    pub original: Option<String>,
    /// Why the call came to the mailbox (`switchboard_policy::VoicemailReason::as_str`).
    pub reason: String,
    /// The profile that sent it there (reason `profile`).
    #[serde(default)]
    pub profile: Option<String>,
    /// The call's Call-ID (to find its call record).
    pub call_id: String,
    /// Whether the owner has heard it (by phone or marked so through the API).
    #[serde(default)]
    pub heard: bool,
}

/// A message to mail: the row of [`VOICEMAIL_OUTBOX`], under the message's key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailNotice {
    /// The mailbox's addresses when the message was left (each gets one mail).
    pub to: Vec<String>,
    /// The message as it was left (the mail tells of it even if it is marked heard
    /// meanwhile; its audio is read when the mail is sent).
    pub message: MessageRow,
}

/// What a message-waiting lamp shows: new (not heard) and old (heard) messages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub new: u32,
    pub old: u32,
}

/// Why a change to a mailbox was not made.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MailboxError {
    /// No message of that id in that mailbox.
    #[error("no message {id} in mailbox {mailbox}")]
    NoMessage { mailbox: String, id: String },
    /// The mailbox holds as many messages as it may.
    #[error("mailbox {mailbox} is full ({max} messages)")]
    Full { mailbox: String, max: u32 },
}

/// Every mailbox's messages (see the module's documentation).
#[derive(Debug, Default)]
pub struct Mailboxes {
    /// Mailbox key → its messages by id (oldest first).
    boxes: BTreeMap<String, BTreeMap<String, MessageRow>>,
    /// Mailboxes whose counts changed since [`Mailboxes::take_changed`].
    changed: BTreeSet<String>,
    /// Makes ids unique among messages left in the same second.
    sequence: u64,
    /// Messages put in the mail outbox since the start.
    mail_notices: u64,
}

impl Mailboxes {
    /// Loads the rows read back from [`VOICEMAIL`] at start; returns how many messages.
    /// An unreadable row is skipped with a log line (its audio stays where it is).
    pub fn restore(&mut self, rows: Vec<(String, Vec<u8>)>) -> usize {
        let mut n = 0;
        for (key, value) in rows {
            match serde_json::from_slice::<MessageRow>(&value) {
                Ok(row) if voicemail_key(&row.mailbox, &row.id) == key => {
                    self.boxes
                        .entry(row.mailbox.clone())
                        .or_default()
                        .insert(row.id.clone(), row);
                    n += 1;
                }
                Ok(_) => tracing::warn!(key, "voicemail row under another key; skipped"),
                Err(e) => tracing::warn!(key, error = %e, "unreadable voicemail row; skipped"),
            }
        }
        n
    }

    /// Holds a message's row as another node stored it (None: the message was deleted),
    /// and marks its mailbox changed for its lamps.
    pub fn apply_shared(&mut self, key: &str, row: Option<&[u8]>) {
        match row {
            Some(row) => {
                if self.restore(vec![(key.to_string(), row.to_vec())]) == 1 {
                    if let Some((mailbox, _)) = key.split_once('\n') {
                        self.changed.insert(mailbox.to_string());
                    }
                }
            }
            None => {
                let Some((mailbox, id)) = key.split_once('\n') else {
                    return;
                };
                let Some(messages) = self.boxes.get_mut(mailbox) else {
                    return;
                };
                if messages.remove(id).is_some() {
                    if messages.is_empty() {
                        self.boxes.remove(mailbox);
                    }
                    self.changed.insert(mailbox.to_string());
                }
            }
        }
    }

    /// The key of every message held.
    pub fn keys(&self) -> Vec<String> {
        self.boxes
            .iter()
            .flat_map(|(mailbox, m)| m.keys().map(move |id| voicemail_key(mailbox, id)))
            .collect()
    }

    /// The messages of `mailbox`, oldest first.
    pub fn messages(&self, mailbox: &str) -> impl Iterator<Item = &MessageRow> {
        self.boxes.get(mailbox).into_iter().flat_map(|m| m.values())
    }

    /// One message of `mailbox`.
    pub fn message(&self, mailbox: &str, id: &str) -> Option<&MessageRow> {
        self.boxes.get(mailbox)?.get(id)
    }

    /// How many messages `mailbox` holds, heard and not.
    pub fn counts(&self, mailbox: &str) -> Counts {
        let mut c = Counts::default();
        for m in self.messages(mailbox) {
            if m.heard {
                c.old += 1;
            } else {
                c.new += 1;
            }
        }
        c
    }

    /// Every mailbox holding a message.
    pub fn mailboxes(&self) -> impl Iterator<Item = &str> {
        self.boxes.keys().map(String::as_str)
    }

    /// Whether `mailbox` may take another message (it holds fewer than `max`).
    pub fn has_room(&self, mailbox: &str, max: u32) -> bool {
        self.boxes
            .get(mailbox)
            .is_none_or(|m| m.len() < max as usize)
    }

    /// A fresh id for a message left at `received` (Unix seconds).
    pub fn new_id(&mut self, received: u64) -> String {
        self.sequence += 1;
        format!("{received:020}-{}", self.sequence)
    }

    /// Adds `row` (its id from [`Mailboxes::new_id`]) with its audio (`wav`: the WAV file)
    /// to a mailbox that holds fewer than `max` messages; returns the writes that keep it,
    /// to persist in one commit. `mail_to`: where the message is to be mailed (empty: it
    /// is not; the caller passes the mailbox's addresses only when `[mail]` is set): a
    /// [`MailNotice`] for the mail task, in the same commit.
    pub fn deposit(
        &mut self,
        row: MessageRow,
        wav: Vec<u8>,
        max: u32,
        mail_to: &[String],
    ) -> Result<Vec<Write>, MailboxError> {
        if !self.has_room(&row.mailbox, max) {
            return Err(MailboxError::Full {
                mailbox: row.mailbox,
                max,
            });
        }
        let key = voicemail_key(&row.mailbox, &row.id);
        let json = serde_json::to_vec(&row).expect("a message row serialises");
        let mut writes = Vec::with_capacity(3);
        if !mail_to.is_empty() {
            let notice = MailNotice {
                to: mail_to.to_vec(),
                message: row.clone(),
            };
            let notice = serde_json::to_vec(&notice).expect("a mail notice serialises");
            writes.push(Write::put(VOICEMAIL_OUTBOX, key.clone(), notice));
            self.mail_notices += 1;
        }
        self.changed.insert(row.mailbox.clone());
        self.boxes
            .entry(row.mailbox.clone())
            .or_default()
            .insert(row.id.clone(), row);
        writes.push(Write::put(VOICEMAIL_AUDIO, key.clone(), wav));
        writes.push(Write::put(VOICEMAIL, key, json));
        Ok(writes)
    }

    /// Messages put in the mail outbox since the start.
    pub fn mail_notices(&self) -> u64 {
        self.mail_notices
    }

    /// Marks a message heard (or new again); returns the write that keeps it (none when
    /// nothing changed).
    pub fn set_heard(
        &mut self,
        mailbox: &str,
        id: &str,
        heard: bool,
    ) -> Result<Vec<Write>, MailboxError> {
        let row = self
            .boxes
            .get_mut(mailbox)
            .and_then(|m| m.get_mut(id))
            .ok_or_else(|| no_message(mailbox, id))?;
        if row.heard == heard {
            return Ok(Vec::new());
        }
        row.heard = heard;
        let json = serde_json::to_vec(&*row).expect("a message row serialises");
        self.changed.insert(mailbox.to_string());
        Ok(vec![Write::put(
            VOICEMAIL,
            voicemail_key(mailbox, id),
            json,
        )])
    }

    /// Deletes a message, its audio and its mail notice if it has not gone yet (a message
    /// dealt with is not mailed); returns the writes that do it.
    pub fn delete(&mut self, mailbox: &str, id: &str) -> Result<Vec<Write>, MailboxError> {
        let messages = self
            .boxes
            .get_mut(mailbox)
            .ok_or_else(|| no_message(mailbox, id))?;
        messages.remove(id).ok_or_else(|| no_message(mailbox, id))?;
        if messages.is_empty() {
            self.boxes.remove(mailbox);
        }
        self.changed.insert(mailbox.to_string());
        let key = voicemail_key(mailbox, id);
        Ok(vec![
            Write::delete(VOICEMAIL, key.clone()),
            Write::delete(VOICEMAIL_AUDIO, key.clone()),
            Write::delete(VOICEMAIL_OUTBOX, key),
        ])
    }

    /// Puts back a message whose deletion could not be stored (its rows are still in the
    /// store); its mailbox's counts change back.
    pub fn put_back(&mut self, row: MessageRow) {
        self.changed.insert(row.mailbox.clone());
        self.boxes
            .entry(row.mailbox.clone())
            .or_default()
            .insert(row.id.clone(), row);
    }

    /// The mailboxes whose counts changed since the last call.
    pub fn take_changed(&mut self) -> BTreeSet<String> {
        std::mem::take(&mut self.changed)
    }
}

fn no_message(mailbox: &str, id: &str) -> MailboxError {
    MailboxError::NoMessage {
        mailbox: mailbox.to_string(),
        id: id.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(boxes: &mut Mailboxes, mailbox: &str, at: u64) -> MessageRow {
        MessageRow {
            id: boxes.new_id(at),
            mailbox: mailbox.into(),
            received: at,
            duration_ms: 4000,
            caller: "1001".into(),
            caller_name: Some("Alice".into()),
            called: "1002".into(),
            original: Some("user:bob".into()),
            reason: "no_answer".into(),
            profile: None,
            call_id: format!("c{at}"),
            heard: false,
        }
    }

    #[test]
    fn a_deposit_is_one_commit_of_row_and_audio_and_counts_as_new() {
        let mut b = Mailboxes::default();
        let r = row(&mut b, "user:bob", 1_700_000_000);
        let id = r.id.clone();
        let writes = b.deposit(r.clone(), vec![1, 2, 3], 10, &[]).unwrap();
        assert_eq!(writes.len(), 2);
        assert_eq!(writes[0].table, VOICEMAIL_AUDIO);
        assert_eq!(writes[0].value.as_deref(), Some(&[1u8, 2, 3][..]));
        assert_eq!(writes[1].table, VOICEMAIL);
        assert_eq!(writes[1].key, voicemail_key("user:bob", &id));
        assert_eq!(b.counts("user:bob"), Counts { new: 1, old: 0 });
        assert_eq!(b.take_changed(), BTreeSet::from(["user:bob".to_string()]));
        assert!(b.take_changed().is_empty());
        // Read back at start: the same message.
        let mut again = Mailboxes::default();
        let rows = vec![(writes[1].key.clone(), writes[1].value.clone().unwrap())];
        assert_eq!(again.restore(rows), 1);
        assert_eq!(again.message("user:bob", &id), Some(&r));
    }

    #[test]
    fn heard_delete_and_a_full_mailbox() {
        let mut b = Mailboxes::default();
        let first = row(&mut b, "team:sales", 10);
        let second = row(&mut b, "team:sales", 10);
        assert_ne!(first.id, second.id);
        assert!(first.id < second.id);
        b.deposit(first.clone(), Vec::new(), 2, &[]).unwrap();
        b.deposit(second.clone(), Vec::new(), 2, &[]).unwrap();
        let third = row(&mut b, "team:sales", 11);
        assert_eq!(
            b.deposit(third, Vec::new(), 2, &[]),
            Err(MailboxError::Full {
                mailbox: "team:sales".into(),
                max: 2
            })
        );
        b.take_changed();
        assert_eq!(b.set_heard("team:sales", &first.id, true).unwrap().len(), 1);
        assert!(b
            .set_heard("team:sales", &first.id, true)
            .unwrap()
            .is_empty());
        assert_eq!(b.counts("team:sales"), Counts { new: 1, old: 1 });
        let ids: Vec<&str> = b.messages("team:sales").map(|m| m.id.as_str()).collect();
        assert_eq!(ids, [first.id.as_str(), second.id.as_str()]);
        let writes = b.delete("team:sales", &first.id).unwrap();
        assert!(writes.iter().all(|w| w.value.is_none()));
        assert!(b.delete("team:sales", &first.id).is_err());
        assert!(b.set_heard("user:x", "1", true).is_err());
        b.delete("team:sales", &second.id).unwrap();
        assert_eq!(b.mailboxes().count(), 0);
        assert_eq!(b.counts("team:sales"), Counts::default());
    }

    #[test]
    fn a_message_to_mail_is_a_notice_in_its_commit_and_goes_with_the_message() {
        let mut b = Mailboxes::default();
        let r = row(&mut b, "user:bob", 10);
        let to = vec![
            "bob@example.com".to_string(),
            "bob@home.example".to_string(),
        ];
        let writes = b.deposit(r.clone(), vec![1], 10, &to).unwrap();
        assert_eq!(writes.len(), 3);
        let notice = writes.iter().find(|w| w.table == VOICEMAIL_OUTBOX).unwrap();
        assert_eq!(notice.key, voicemail_key("user:bob", &r.id));
        let n: MailNotice = serde_json::from_slice(notice.value.as_deref().unwrap()).unwrap();
        assert_eq!(
            n,
            MailNotice {
                to,
                message: r.clone()
            }
        );
        assert_eq!(b.mail_notices(), 1);
        // Deleted before it is mailed: the notice goes too.
        let deletes = b.delete("user:bob", &r.id).unwrap();
        assert!(deletes
            .iter()
            .any(|w| w.table == VOICEMAIL_OUTBOX && w.key == notice.key && w.value.is_none()));
        // A deletion the store refused: the message is back, its counts told again.
        b.take_changed();
        b.put_back(r.clone());
        assert_eq!(b.message("user:bob", &r.id), Some(&r));
        assert_eq!(b.take_changed(), BTreeSet::from(["user:bob".to_string()]));
    }

    #[test]
    fn unreadable_rows_and_rows_under_another_key_are_skipped() {
        let mut b = Mailboxes::default();
        let r = row(&mut b, "user:bob", 5);
        let json = serde_json::to_vec(&r).unwrap();
        let rows = vec![
            ("user:bob\nx".to_string(), b"{".to_vec()),
            ("user:eve\nx".to_string(), json),
        ];
        assert_eq!(b.restore(rows), 0);
        assert_eq!(b.mailboxes().count(), 0);
    }
}
