//! Voicemail deposit: a call that reaches a mailbox of the daemon's own leaves a message.
//!
//! A plan's `Action::Voicemail` step starts an [`executor::BranchTarget::Mailbox`]
//! branch. `calls` looks the mailbox up in the policy ([`switchboard_policy::Policy::mailbox`])
//! and, when it takes messages and has room, starts a local media endpoint for it
//! ([`super::media::Endpoint::Mailbox`]) that answers the call as an answered announcement
//! does (200 OK; the daemon the UAS of the dialog, see [`super::calls`]). Then, in the
//! session ([`MailboxRun`], held by [`super::media`]):
//!
//! ```text
//! start    Output::Media(Open) and two Output::Read: the owner's greeting and recorded
//!          name (VOICEMAIL_RECORDINGS, voicemail_key(mailbox, "greeting" | "name"))
//! Opened   → 200 OK (calls); the greeting waits for both reads (Input::Read)
//! reads    → Play: the greeting (their recording, else their name or "extension" and its
//!          digits, "is not available" / "is on another call", "please leave a message
//!          after the tone"), then the beep
//! Played   → Record { max, silence }
//! # (RFC 4733 or INFO) → StopRecording
//! Recorded → the message kept (Happened::Recorded: calls makes the row and persists it),
//!          then "goodbye" → Played → the plan's next (a hang-up: our BYE)
//! BYE      → Close → Recorded (the engine hands it before Closed) → the message kept
//! ```
//!
//! The core never reads the store itself: a recording is asked for as
//! [`Output::Read`](super::Output::Read) and comes back as
//! [`Input::Read`](super::Input::Read); the session may open meanwhile (the caller hears
//! nothing odd: the 200 goes at once, the greeting as soon as both answers are in). A read
//! that fails, or bytes that are not an 8 kHz mono 16-bit WAV of at most
//! [`MAX_RECORDING_SECS`], count as no recording.
//!
//! A message is kept by [`keep`] as one commit of its row ([`MessageRow`]) and its audio
//! (a WAV): whole or absent, whatever happens to the daemon; a message shorter than
//! [`VoicemailConfig::min_message`] is not kept. A mailbox that is full when the call
//! reaches it is not answered: the caller hears "the mailbox is full" in early media and
//! the plan goes on as when nobody answers (see `calls::start_mailbox`).

use super::context::Ctx;
use super::mailboxes::{MailboxError, MessageRow};
use super::media::Library;
use std::time::Duration;
use switchboard_media::g711::Law;
use switchboard_media::recorder::{Recording, Silence};
use switchboard_media::say::{self, phrase};
use switchboard_media::session::Clip;
use switchboard_media::wav;

#[cfg(doc)]
use crate::executor;

/// The longest greeting or recorded name read back, in seconds (a longer one counts as
/// none): as long as the longest message a mailbox may be allowed to take.
pub const MAX_RECORDING_SECS: u32 = switchboard_policy::MAX_MESSAGE_SECS;

/// The daemon's voicemail settings (`[voicemail]`); a mailbox's own settings
/// ([`switchboard_policy::VoicemailSettings`]) take precedence where it has them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VoicemailConfig {
    /// The longest message (`max_message_secs`, default 180 s).
    pub max_message: Duration,
    /// Most messages a mailbox holds (`max_messages`, default 100).
    pub max_messages: u32,
    /// A message shorter than this is not kept (`min_message_ms`, default 1 s).
    pub min_message: Duration,
    /// Quiet this long ends a message (`silence_secs`, default 10 s); None: quiet never
    /// does (`silence_secs = 0`).
    pub silence: Option<Duration>,
    /// The loudest a packet may be (its RMS in 16-bit linear units) and still count as
    /// quiet (`silence_level`, default 100: above line noise, below soft speech).
    pub silence_level: u16,
    /// The feature code of the mailbox by phone (`[features] voicemail`, default `*97`):
    /// alone, the caller's own mailbox; followed by a mailbox number, that one.
    pub feature_code: String,
    /// A number anyone may dial for the mailbox by phone, asked for the mailbox number and
    /// its PIN (`[voicemail] access_number`; none by default).
    pub access_number: Option<String>,
}

impl Default for VoicemailConfig {
    fn default() -> Self {
        VoicemailConfig {
            max_message: Duration::from_secs(180),
            max_messages: 100,
            min_message: Duration::from_secs(1),
            silence: Some(Duration::from_secs(10)),
            silence_level: 100,
            feature_code: "*97".into(),
            access_number: None,
        }
    }
}

impl VoicemailConfig {
    /// What ends a recording by quiet, if anything does.
    pub fn silence(&self) -> Option<Silence> {
        self.silence.map(|after| Silence {
            level: self.silence_level,
            after,
        })
    }
}

/// Messages left, by what became of them (`switchboard_voicemail_messages_total`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VoicemailStats {
    /// Kept: in the mailbox, durable in one commit.
    pub kept: u64,
    /// Shorter than `min_message_ms`: not kept.
    pub too_short: u64,
    /// The mailbox was full: the caller was told so (when the call reached it), or the
    /// message could not be kept (it filled up during the recording).
    pub full: u64,
}

/// What a message left in a call will say — its row but for its id, time and length —
/// and where it goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Deposit {
    /// The mailbox ([`switchboard_policy::MailboxOwner::key`]).
    pub mailbox: String,
    pub caller: String,
    pub caller_name: Option<String>,
    pub called: String,
    pub original: Option<String>,
    /// `VoicemailReason::as_str`.
    pub reason: String,
    pub profile: Option<String>,
    pub call_id: String,
    /// Most messages the mailbox holds.
    pub max_messages: u32,
    /// Where the message is to be mailed (empty: it is not).
    pub mail_to: Vec<String>,
    /// A shorter message is not kept.
    pub min_message: Duration,
}

/// What the default greeting says of the mailbox's owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Owner {
    /// The name of an operator's prompt of their name (`name_<user id>`, as the profile
    /// announcement uses); None for a team.
    pub name_prompt: Option<String>,
    /// Their extension, said digit by digit when they recorded no name.
    pub extension: Option<String>,
    /// The call came because they were busy: "is on another call", else "is not
    /// available".
    pub busy: bool,
}

/// Which recording of the owner a read is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Greeting,
    Name,
}

impl Kind {
    /// Its id in [`switchboard_store::tables::VOICEMAIL_RECORDINGS`].
    pub(crate) fn id(self) -> &'static str {
        match self {
            Kind::Greeting => "greeting",
            Kind::Name => "name",
        }
    }
}

/// Where a mailbox session is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Before and during the greeting (and the beep).
    Greeting,
    /// Recording.
    Recording,
    /// `#` asked the recording to stop; its `Recorded` is awaited.
    Stopping,
    /// The message is over: "goodbye" plays.
    Goodbye,
    /// Goodbye said: the call is being hung up.
    Over,
}

/// A mailbox's session (see the module's documentation): what it waits for, what it plays,
/// where it is.
#[derive(Clone, Debug)]
pub(crate) struct MailboxRun {
    pub deposit: Box<Deposit>,
    owner: Owner,
    /// The owner's recordings, once read: `Some(None)` when there is none.
    greeting: Option<Option<Vec<i16>>>,
    name: Option<Option<Vec<i16>>>,
    /// The greeting's Play went; the caller skipped it with `#`.
    started: bool,
    skipped: bool,
    pub phase: Phase,
    /// The longest message, and what ends it by quiet.
    pub max: Duration,
    pub silence: Option<Silence>,
}

impl MailboxRun {
    pub(crate) fn new(
        deposit: Deposit,
        owner: Owner,
        max: Duration,
        silence: Option<Silence>,
    ) -> MailboxRun {
        MailboxRun {
            deposit: Box::new(deposit),
            owner,
            greeting: None,
            name: None,
            started: false,
            skipped: false,
            phase: Phase::Greeting,
            max,
            silence,
        }
    }

    /// A read came back: `value`, the row's bytes (None: no row, or the read failed).
    pub(crate) fn read(&mut self, kind: Kind, value: Option<Vec<u8>>) {
        let samples = value.and_then(|bytes| {
            let max = MAX_RECORDING_SECS as usize * wav::SAMPLE_RATE as usize;
            match wav::decode(&bytes, max) {
                Ok(s) if !s.is_empty() => Some(s),
                Ok(_) => None,
                Err(e) => {
                    tracing::warn!(mailbox = %self.deposit.mailbox, recording = kind.id(), error = %e, "unreadable recording; the default is said instead");
                    None
                }
            }
        });
        match kind {
            Kind::Greeting => self.greeting = Some(samples),
            Kind::Name => self.name = Some(samples),
        }
    }

    /// The greeting, if it may start now (both reads are in and it has not started): its
    /// clips in `law`, the beep last. Once.
    pub(crate) fn greeting_clips(&mut self, lib: &Library, law: Law) -> Option<Vec<Clip>> {
        if self.started || self.phase != Phase::Greeting {
            return None;
        }
        let (Some(greeting), Some(name)) = (&self.greeting, &self.name) else {
            return None;
        };
        self.started = true;
        let mut clips: Vec<Clip> = Vec::new();
        match greeting {
            Some(samples) => clips.push(law.encode(samples).into()),
            None => {
                // Who: their recorded name, an operator's prompt of it, else "extension"
                // and its digits, else "the person you are calling".
                let mut said: Vec<say::PromptName> = Vec::new();
                let named = self
                    .owner
                    .name_prompt
                    .as_deref()
                    .and_then(|n| lib.clip(n, law));
                match (name, named) {
                    (Some(samples), _) => clips.push(law.encode(samples).into()),
                    (None, Some(clip)) => clips.push(clip),
                    (None, None) => {
                        let digits = self.owner.extension.as_deref().map(|ext| {
                            let mut d = vec![phrase::EXTENSION];
                            lib.language().say_digits(ext, &mut d).map(|_| d)
                        });
                        match digits {
                            Some(Ok(d)) => said.extend(d),
                            _ => said.push(phrase::THE_PERSON_YOU_ARE_CALLING),
                        }
                    }
                }
                said.push(if self.owner.busy {
                    phrase::IS_ON_ANOTHER_CALL
                } else {
                    phrase::IS_NOT_AVAILABLE
                });
                said.push(phrase::PLEASE_LEAVE_A_MESSAGE_AFTER_THE_TONE);
                // A prompt the operator's set lacks is left out, not the whole greeting.
                clips.extend(said.into_iter().filter_map(|n| lib.clip(n, law)));
            }
        }
        clips.extend(lib.clip(phrase::BEEP, law));
        Some(clips)
    }
}

impl MailboxRun {
    /// The caller pressed `#` during the greeting: the beep's clip (in `law`) to play at
    /// once instead of the rest, whose end begins the recording. Once, and only while the
    /// greeting plays.
    pub(crate) fn skip_greeting(&mut self, lib: &Library, law: Law) -> Option<Vec<Clip>> {
        if !self.started || self.skipped || self.phase != Phase::Greeting {
            return None;
        }
        self.skipped = true;
        Some(lib.clip(phrase::BEEP, law).into_iter().collect())
    }
}

/// What became of a message left: what [`keep`] did with a recording.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Left {
    /// In the mailbox, as message `id`.
    Kept { id: String },
    /// Shorter than the minimum: not kept.
    TooShort,
    /// The mailbox filled up meanwhile: not kept.
    Full,
}

/// Keeps `recording` in its mailbox as `deposit` says: its row and its audio (a WAV) in
/// one commit, left unacknowledged (nothing waits for it; group commit makes it durable).
/// Counted in `stats`.
pub(crate) fn keep(
    cx: &mut Ctx<'_>,
    deposit: &Deposit,
    recording: &Recording,
    stats: &mut VoicemailStats,
) -> Left {
    let duration = recording.duration();
    if duration < deposit.min_message {
        stats.too_short += 1;
        tracing::info!(call_id = %deposit.call_id, mailbox = %deposit.mailbox, ms = duration.as_millis() as u64, ended = ?recording.ended, "voicemail message too short; not kept");
        return Left::TooShort;
    }
    let received = cx.now.unix;
    let row = MessageRow {
        id: cx.mailboxes.new_id(received),
        mailbox: deposit.mailbox.clone(),
        received,
        duration_ms: duration.as_millis() as u64,
        caller: deposit.caller.clone(),
        caller_name: deposit.caller_name.clone(),
        called: deposit.called.clone(),
        original: deposit.original.clone(),
        reason: deposit.reason.clone(),
        profile: deposit.profile.clone(),
        call_id: deposit.call_id.clone(),
        heard: false,
    };
    let id = row.id.clone();
    let audio = wav::encode(&recording.samples);
    match cx
        .mailboxes
        .deposit(row, audio, deposit.max_messages, &deposit.mail_to)
    {
        Ok(writes) => {
            let pending = super::ledger::Pending::Deposit {
                mailbox: deposit.mailbox.clone(),
                id: id.clone(),
            };
            cx.persist(pending, writes);
            stats.kept += 1;
            tracing::info!(call_id = %deposit.call_id, mailbox = %deposit.mailbox, id, ms = duration.as_millis() as u64, ended = ?recording.ended, "voicemail message kept");
            Left::Kept { id }
        }
        Err(e @ MailboxError::Full { .. }) | Err(e @ MailboxError::NoMessage { .. }) => {
            stats.full += 1;
            tracing::warn!(call_id = %deposit.call_id, error = %e, "voicemail message not kept");
            Left::Full
        }
    }
}

#[cfg(test)]
#[path = "voicemail_tests.rs"]
mod tests;
