//! The mailbox by phone: a person dials `[features] voicemail` (`*97`) — or the
//! `[voicemail] access_number` from any phone — and hears, keeps and deletes their messages
//! and records their greeting and name (see docs/voicemail.md, "The mailbox by phone").
//!
//! [`MailboxMenu`] is the state machine of one such call, and nothing else: it takes what
//! happened ([`MailboxMenu::begin`], [`MailboxMenu::played`], [`MailboxMenu::digit`],
//! [`MailboxMenu::timeout`], [`MailboxMenu::recorded`], [`MailboxMenu::read`],
//! [`MailboxMenu::stored`]) and says what to do ([`Do`]): play these prompts or this audio,
//! record, read a row, store these writes, hang up. The mailboxes' rows, the policy and
//! the PIN guard are lent to it for each step ([`Env`]); it never blocks and never reads
//! the store itself (a message's audio is asked for as [`Do::Read`]). `calls` carries the
//! steps out on the call's media session.
//!
//! ```text
//! begin ─ own mailbox ──────────────────────────────┐
//!       ─ a number given → PIN ─┐                   │
//!       ─ access number → number → PIN ─ right ─────┤
//!                                 └ wrong: "please try again" (3 a call, then goodbye)
//! menu: "you have N new messages and M saved messages", 1 listen, 0 options, # goodbye
//! listen: new (oldest first), then saved: "message" N "received" … "from" … , the audio;
//!         1 replay, 7 delete, 9 save, # next, * menu; heard once played to its end
//! options: 1 greeting, 2 name (tone, record, # ends, played back, 1 keep, 2 again),
//!          3 delete the greeting, * menu
//! ```
//!
//! A change (a message heard, deleted or saved, a recording kept or removed) is made in
//! [`Mailboxes`] at once and handed out as writes with what undoes it; what the caller
//! hears of it ("message deleted") waits for [`MailboxMenu::stored`]: it is said only once
//! the change is durable.
//!
//! PINs cannot be guessed: at most [`MAX_PIN_TRIES`] a call, and [`PinGuard`] counts
//! failures per mailbox and per source ([`Source`]: a person of ours, a trunk's caller by
//! number — a carrier's callers share its address, and one of them must not lock out the
//! others —, else the address); after [`LOCK_AFTER`] of either, every PIN for that mailbox
//! or from that source is refused for [`LOCK_FOR`], right or wrong, without the caller
//! being told why. A trunk's callers together are locked out after [`TRUNK_LOCK_AFTER`]
//! (a caller who changes number each call is still counted). A mailbox without a PIN is reached only by its owner
//! (and, for a team, its members) from their own devices.

use super::mailboxes::Mailboxes;
use crate::voicemail::{Recording as Kind, Undo};
use chrono::{Datelike, Timelike};
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};
use switchboard_media::say::{phrase, ClockTime, DayOfYear, Language, PromptName};
use switchboard_media::wav;
use switchboard_policy::{MailboxOwner, Policy};
use switchboard_store::tables::{voicemail_key, VOICEMAIL_AUDIO, VOICEMAIL_RECORDINGS};
use switchboard_store::{Table, Write};

/// How long a menu waits for a key once its prompt has been played.
pub const KEY_WAIT: Duration = Duration::from_secs(10);
/// Menus played in a row without a key before the call ends ("goodbye").
pub const MAX_UNANSWERED: u8 = 3;
/// Wrong PINs a call may give; the next is goodbye.
pub const MAX_PIN_TRIES: u8 = 3;
/// Failures (per mailbox, per source) after which PINs are refused…
pub const LOCK_AFTER: u32 = 5;
/// …and failures of all the callers of one trunk together: callers whose numbers change
/// from one call to the next are counted there too (not undone by anyone's right PIN).
pub const TRUNK_LOCK_AFTER: u32 = 20;
/// …for this long.
pub const LOCK_FOR: Duration = Duration::from_secs(300);
/// Failures are forgotten this long after the last one.
pub const FORGET_AFTER: Duration = Duration::from_secs(900);
/// Most mailboxes and addresses the guard remembers.
pub const MAX_GUARDED: usize = 10_000;
/// Longest mailbox number and PIN keyed in (more is a wrong entry).
pub const MAX_NUMBER_DIGITS: usize = 16;
pub const MAX_PIN_DIGITS: usize = switchboard_policy::MAX_PIN_DIGITS;
/// A greeting or a name shorter than this is recorded again.
pub const MIN_RECORDING: Duration = Duration::from_millis(500);

/// Where a caller is let in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Access {
    /// Their own mailbox (or a team's they are a member of), from their own device: no
    /// PIN.
    Trusted(MailboxOwner),
    /// The mailbox of this number (dialled after the feature code): its PIN is asked.
    Number(String),
    /// The access number: the mailbox number is asked, then its PIN.
    Ask,
}

/// Something to say: a prompt by name, or audio (a message, a recording) as 8 kHz
/// linear samples.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Say {
    Prompt(PromptName),
    Audio(Vec<i16>),
}

/// What the session is to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Do {
    /// Stop what plays, then play these (a [`MailboxMenu::played`] when they are over).
    Play(Vec<Say>),
    /// Stop what plays (a key barged in; nothing follows until the next step).
    Stop,
    /// Record what the caller says, at most `max` ([`MailboxMenu::recorded`] after).
    Record { max: Duration },
    /// End the recording in progress.
    StopRecording,
    /// Read this row ([`MailboxMenu::read`] with its bytes).
    Read { table: Table, key: String },
    /// Make these writes durable; `before` undoes the change made in [`Mailboxes`] if the
    /// store refuses them. With `wait`, [`MailboxMenu::stored`] must follow with the
    /// outcome (the caller hears of the change only then).
    Persist {
        writes: Vec<Write>,
        before: Box<Undo>,
        wait: bool,
    },
    /// Hang up (goodbye has been said).
    HangUp,
}

/// What a step is lent: the mailboxes, the policy, the PIN guard, the language and the
/// time.
pub struct Env<'a> {
    pub mailboxes: &'a mut Mailboxes,
    pub policy: &'a Policy,
    pub pins: &'a mut PinGuard,
    pub language: &'static dyn Language,
    pub now: Instant,
    /// Unix seconds (for "received today at…").
    pub unix: u64,
}

/// What comes after a change is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Change {
    Deleted,
    Saved,
    Kept(Kind),
    GreetingRemoved,
}

/// Where a call is.
#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    /// The session is opening.
    Idle,
    /// Keying in the mailbox number.
    Number,
    /// Keying in the PIN.
    Pin,
    /// The main menu.
    Menu,
    /// A message: its announcement (`audio_playing` false) or its audio.
    Message { audio_playing: bool },
    /// After a message: 1 replay, 7 delete, 9 save, # next, * menu.
    AfterMessage,
    /// A change waits for the store.
    Storing(Change),
    /// Saying a change is done; then the next message or the options.
    Done(Change),
    /// "There are no more messages"; then the menu.
    NoMore,
    /// The mailbox options.
    Options,
    /// "Record after the tone", the tone; then recording.
    RecordPrompt(Kind),
    /// Recording (`stopping`: `#` pressed, the recording awaited).
    Recording { kind: Kind, stopping: bool },
    /// The recording played back: 1 keep, 2 again, * back.
    Review(Kind),
    /// Saying goodbye; then hanging up.
    Goodbye,
    /// Hung up.
    Over,
}

/// Who calls the mailbox menu, as the PIN guard counts failures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A person of ours, from one of their devices (authenticated).
    User(String),
    /// A caller through a trunk, by the number the carrier gave (none: the trunk's).
    TrunkCaller { trunk: String, number: String },
    /// Anyone else, by address.
    Address(IpAddr),
}

impl Source {
    /// What a failure from this source counts against (besides the mailbox).
    fn guarded(&self) -> Vec<Guarded> {
        let mut keys = vec![Guarded::new(format!("source {self}"), LOCK_AFTER)];
        if let Source::TrunkCaller { trunk, .. } = self {
            keys.push(Guarded {
                key: format!("trunk {trunk}"),
                limit: TRUNK_LOCK_AFTER,
                undone_by_success: false,
            });
        }
        keys
    }
}

/// One count of the [`PinGuard`]: its key, the failures that lock it, and whether a right
/// PIN starts it again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Guarded {
    pub key: String,
    pub limit: u32,
    pub undone_by_success: bool,
}

impl Guarded {
    /// A count of `limit` that a right PIN starts again.
    pub fn new(key: String, limit: u32) -> Guarded {
        Guarded {
            key,
            limit,
            undone_by_success: true,
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::User(u) => write!(f, "user {u}"),
            Source::TrunkCaller { trunk, number } => write!(f, "trunk {trunk} caller {number}"),
            Source::Address(ip) => write!(f, "address {ip}"),
        }
    }
}

/// One call to the mailbox menu (see the module's documentation).
#[derive(Debug)]
pub struct MailboxMenu {
    access: Access,
    /// Who calls (the PIN guard counts by it).
    source: Source,
    state: State,
    /// The mailbox, once the caller is in.
    mailbox: Option<MailboxOwner>,
    /// Its owner's clock.
    tz: chrono_tz::Tz,
    /// What is being keyed in, and whether it grew too long.
    entry: String,
    overflow: bool,
    /// The mailbox number keyed in (or dialled).
    number: Option<String>,
    /// Wrong PINs so far.
    wrong: u8,
    /// Menus played in a row without a key.
    unanswered: u8,
    /// The wait for a key ends then.
    deadline: Option<Instant>,
    /// The messages being listened to (ids), and which one.
    list: Vec<String>,
    index: usize,
    /// The current message's audio once read (`Some(empty)`: none could be read).
    audio: Option<Vec<i16>>,
    /// The audio read that is being waited for (its key).
    reading: Option<String>,
    /// The current message's announcement has been played (its audio plays as soon as
    /// it is read).
    announced: bool,
    /// The recording under review.
    recorded: Vec<i16>,
}

impl MailboxMenu {
    pub fn new(access: Access, source: Source) -> Self {
        MailboxMenu {
            access,
            source,
            state: State::Idle,
            mailbox: None,
            tz: chrono_tz::UTC,
            entry: String::new(),
            overflow: false,
            number: None,
            wrong: 0,
            unanswered: 0,
            deadline: None,
            list: Vec::new(),
            index: 0,
            audio: None,
            reading: None,
            announced: false,
            recorded: Vec::new(),
        }
    }

    /// The mailbox the caller is in, once they are.
    pub fn mailbox(&self) -> Option<&MailboxOwner> {
        self.mailbox.as_ref()
    }

    /// When [`MailboxMenu::timeout`] is due: the end of the wait for a key.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Whether the call is over (hung up).
    pub fn is_over(&self) -> bool {
        self.state == State::Over
    }

    /// The session is open and the call answered.
    pub fn begin(&mut self, env: &mut Env<'_>) -> Vec<Do> {
        if self.state != State::Idle {
            return Vec::new();
        }
        match self.access.clone() {
            Access::Trusted(owner) => self.enter(env, owner),
            Access::Number(n) => {
                self.number = Some(n);
                self.ask_pin(Vec::new())
            }
            Access::Ask => self.ask_number(Vec::new()),
        }
    }

    fn ask_number(&mut self, mut say: Vec<Say>) -> Vec<Do> {
        self.state = State::Number;
        self.entry.clear();
        self.overflow = false;
        say.push(Say::Prompt(phrase::PLEASE_ENTER_YOUR_MAILBOX_NUMBER));
        self.play(say)
    }

    fn ask_pin(&mut self, mut say: Vec<Say>) -> Vec<Do> {
        self.state = State::Pin;
        self.entry.clear();
        self.overflow = false;
        say.push(Say::Prompt(phrase::PLEASE_ENTER_YOUR_PIN));
        self.play(say)
    }

    /// Plays `say`; a menu's wait for a key begins once it is over.
    fn play(&mut self, say: Vec<Say>) -> Vec<Do> {
        self.deadline = None;
        vec![Do::Play(say)]
    }

    fn goodbye(&mut self) -> Vec<Do> {
        self.state = State::Goodbye;
        self.play(vec![Say::Prompt(phrase::GOODBYE)])
    }

    /// In: the menu, after the counts.
    fn enter(&mut self, env: &mut Env<'_>, owner: MailboxOwner) -> Vec<Do> {
        if env.policy.mailbox(&owner).is_none_or(|v| !v.enabled) {
            tracing::info!(mailbox = %owner, "mailbox by phone: turned off or gone");
            self.state = State::Goodbye;
            return self.play(vec![
                Say::Prompt(phrase::SORRY),
                Say::Prompt(phrase::GOODBYE),
            ]);
        }
        let schedule = match &owner {
            MailboxOwner::User(u) => env.policy.user(u).and_then(|u| u.schedule.clone()),
            MailboxOwner::Team(t) => env.policy.team(t).and_then(|t| t.schedule.clone()),
        };
        self.tz = schedule
            .as_deref()
            .and_then(|s| env.policy.schedule(s))
            .and_then(|s| s.timezone.parse().ok())
            .unwrap_or(chrono_tz::UTC);
        tracing::info!(mailbox = %owner, "mailbox by phone: in");
        self.mailbox = Some(owner);
        let say = self.counts(env);
        self.menu(say)
    }

    /// "You have N new messages and M saved messages".
    fn counts(&self, env: &Env<'_>) -> Vec<Say> {
        let Some(owner) = &self.mailbox else {
            return Vec::new();
        };
        let c = env.mailboxes.counts(&owner.key());
        let mut names: Vec<PromptName> = vec![phrase::YOU_HAVE];
        let count = |names: &mut Vec<PromptName>, n: u32, one: PromptName, many: PromptName| {
            if n == 0 {
                names.push(phrase::NO);
            } else {
                env.language.say_number(n, names);
            }
            names.push(if n == 1 { one } else { many });
        };
        count(&mut names, c.new, phrase::NEW_MESSAGE, phrase::NEW_MESSAGES);
        names.push("digits/and");
        count(
            &mut names,
            c.old,
            phrase::SAVED_MESSAGE,
            phrase::SAVED_MESSAGES,
        );
        names.into_iter().map(Say::Prompt).collect()
    }

    fn press(say: &mut Vec<Say>, what: PromptName, key: PromptName) {
        say.extend([
            Say::Prompt(what),
            Say::Prompt(phrase::PRESS),
            Say::Prompt(key),
        ]);
    }

    /// The main menu (after `say`).
    fn menu(&mut self, mut say: Vec<Say>) -> Vec<Do> {
        self.state = State::Menu;
        Self::press(&mut say, phrase::TO_LISTEN_TO_YOUR_MESSAGES, "digits/1");
        Self::press(&mut say, phrase::FOR_MAILBOX_OPTIONS, "digits/0");
        Self::press(&mut say, phrase::TO_FINISH, "digits/hash");
        self.play(say)
    }

    fn options(&mut self, mut say: Vec<Say>) -> Vec<Do> {
        self.state = State::Options;
        Self::press(&mut say, phrase::TO_RECORD_YOUR_GREETING, "digits/1");
        Self::press(&mut say, phrase::TO_RECORD_YOUR_NAME, "digits/2");
        Self::press(&mut say, phrase::TO_DELETE_YOUR_GREETING, "digits/3");
        Self::press(&mut say, phrase::TO_GO_BACK, "digits/star");
        self.play(say)
    }

    fn after_message(&mut self, mut say: Vec<Say>) -> Vec<Do> {
        self.state = State::AfterMessage;
        Self::press(&mut say, phrase::TO_REPLAY_THIS_MESSAGE, "digits/1");
        Self::press(&mut say, phrase::TO_DELETE_THIS_MESSAGE, "digits/7");
        Self::press(&mut say, phrase::TO_SAVE_THIS_MESSAGE, "digits/9");
        Self::press(&mut say, phrase::FOR_THE_NEXT_MESSAGE, "digits/hash");
        self.play(say)
    }

    fn review(&mut self, kind: Kind) -> Vec<Do> {
        self.state = State::Review(kind);
        let mut say = vec![
            Say::Prompt(phrase::YOU_RECORDED),
            Say::Audio(self.recorded.clone()),
        ];
        Self::press(&mut say, phrase::TO_KEEP_IT, "digits/1");
        Self::press(&mut say, phrase::TO_RECORD_AGAIN, "digits/2");
        Self::press(&mut say, phrase::TO_GO_BACK, "digits/star");
        self.play(say)
    }

    fn record_prompt(&mut self, kind: Kind) -> Vec<Do> {
        self.state = State::RecordPrompt(kind);
        self.play(vec![
            Say::Prompt(phrase::RECORD_AFTER_THE_TONE),
            Say::Prompt(phrase::BEEP),
        ])
    }

    /// The mailbox's key (the caller is in).
    fn key(&self) -> String {
        self.mailbox.as_ref().map(|m| m.key()).unwrap_or_default()
    }

    /// Listening: the messages, new ones first, each group oldest first.
    fn listen(&mut self, env: &mut Env<'_>) -> Vec<Do> {
        let key = self.key();
        let (new, saved): (Vec<_>, Vec<_>) = env.mailboxes.messages(&key).partition(|m| !m.heard);
        self.list = new.iter().chain(&saved).map(|m| m.id.clone()).collect();
        self.index = 0;
        self.open_message(env, Vec::new())
    }

    /// The message at `index` (after `say`): its announcement, and its audio asked for;
    /// past the last, "there are no more messages".
    fn open_message(&mut self, env: &mut Env<'_>, mut say: Vec<Say>) -> Vec<Do> {
        let key = self.key();
        while let Some(id) = self.list.get(self.index) {
            let Some(row) = env.mailboxes.message(&key, id) else {
                // Deleted meanwhile (through the API): the next one.
                self.index += 1;
                continue;
            };
            say.push(Say::Prompt(phrase::MESSAGE));
            let mut names: Vec<PromptName> = Vec::new();
            env.language.say_number(self.index as u32 + 1, &mut names);
            names.push(phrase::RECEIVED);
            self.when(env, row.received, &mut names);
            names.push(phrase::FROM);
            if row.caller.is_empty() || env.language.say_digits(&row.caller, &mut names).is_err() {
                names.push(phrase::AN_UNKNOWN_CALLER);
            }
            say.extend(names.into_iter().map(Say::Prompt));
            let audio = voicemail_key(&key, id);
            self.state = State::Message {
                audio_playing: false,
            };
            self.audio = None;
            self.announced = false;
            self.reading = Some(audio.clone());
            let mut out = self.play(say);
            out.push(Do::Read {
                table: VOICEMAIL_AUDIO,
                key: audio,
            });
            return out;
        }
        self.state = State::NoMore;
        say.push(Say::Prompt(phrase::NO_MORE_MESSAGES));
        self.play(say)
    }

    /// When a message came, on the owner's clock: "today", "yesterday" or the date, then
    /// "at" and the time.
    fn when(&self, env: &Env<'_>, received: u64, out: &mut Vec<PromptName>) {
        let at = |t: u64| {
            chrono::DateTime::from_timestamp(i64::try_from(t).unwrap_or(0), 0)
                .map(|d| d.with_timezone(&self.tz))
        };
        let (Some(then), Some(now)) = (at(received), at(env.unix)) else {
            return;
        };
        match (now.date_naive() - then.date_naive()).num_days() {
            0 => out.push("time/today"),
            1 => out.push(phrase::YESTERDAY),
            _ => {
                let day = DayOfYear::new(
                    then.weekday().number_from_monday() as u8,
                    then.day() as u8,
                    then.month() as u8,
                );
                if let Ok(day) = day {
                    env.language.say_date(day, out);
                }
            }
        }
        if let Ok(time) = ClockTime::new(then.hour() as u8, then.minute() as u8) {
            out.push("time/at");
            env.language
                .say_time(time, env.language.default_hour_cycle(), out);
        }
    }

    /// The current message's id, if it is still there.
    fn current(&self) -> Option<&str> {
        self.list.get(self.index).map(String::as_str)
    }

    /// What was playing has been played.
    pub fn played(&mut self, env: &mut Env<'_>) -> Vec<Do> {
        match self.state.clone() {
            State::Number
            | State::Pin
            | State::Menu
            | State::AfterMessage
            | State::Options
            | State::Review(_) => {
                self.deadline = Some(env.now + KEY_WAIT);
                Vec::new()
            }
            State::Message {
                audio_playing: false,
            } => {
                self.announced = true;
                self.message_audio()
            }
            State::Message {
                audio_playing: true,
            } => {
                // Played to its end: heard.
                let mut out = self.mark_heard(env, false).unwrap_or_default();
                out.extend(self.after_message(Vec::new()));
                out
            }
            State::Done(Change::Deleted) | State::Done(Change::Saved) => {
                self.index += 1;
                self.open_message(env, Vec::new())
            }
            State::Done(_) => self.options(Vec::new()),
            State::NoMore => self.menu(Vec::new()),
            State::RecordPrompt(kind) => {
                self.state = State::Recording {
                    kind,
                    stopping: false,
                };
                vec![Do::Record {
                    max: Duration::from_secs(kind.max_secs().into()),
                }]
            }
            State::Goodbye => {
                self.state = State::Over;
                vec![Do::HangUp]
            }
            State::Idle | State::Storing(_) | State::Recording { .. } | State::Over => Vec::new(),
        }
    }

    /// Marks the current message heard: the writes (None: nothing to do). `wait`: the
    /// caller hears "message saved" once stored.
    fn mark_heard(&mut self, env: &mut Env<'_>, wait: bool) -> Option<Vec<Do>> {
        let key = self.key();
        let id = self.current()?.to_string();
        let was = env.mailboxes.message(&key, &id)?.heard;
        let writes = env.mailboxes.set_heard(&key, &id, true).ok()?;
        if writes.is_empty() {
            return None;
        }
        let before = Box::new(Undo::Heard {
            mailbox: key,
            id,
            was,
        });
        Some(vec![Do::Persist {
            writes,
            before,
            wait,
        }])
    }

    /// The caller pressed `key`.
    pub fn digit(&mut self, env: &mut Env<'_>, key: char) -> Vec<Do> {
        self.unanswered = 0;
        match self.state.clone() {
            State::Number | State::Pin => self.key_in(env, key),
            // "No more messages" leads to the menu: its keys count already.
            State::Menu | State::NoMore => match key {
                '1' => self.listen(env),
                '0' => self.options(Vec::new()),
                '#' => self.goodbye(),
                '*' => {
                    let say = self.counts(env);
                    self.menu(say)
                }
                _ => self.menu(vec![Say::Prompt(phrase::INVALID_OPTION)]),
            },
            State::Message { .. } | State::AfterMessage => match key {
                '1' => match self.audio.clone() {
                    Some(samples) if !samples.is_empty() => {
                        self.state = State::Message {
                            audio_playing: true,
                        };
                        self.play(vec![Say::Audio(samples)])
                    }
                    _ => self.open_message(env, Vec::new()),
                },
                '7' => self.delete(env),
                '9' => match self.mark_heard(env, true) {
                    Some(out) => {
                        self.state = State::Storing(Change::Saved);
                        self.deadline = None;
                        // Nothing plays while the store is asked.
                        let mut out = out;
                        out.insert(0, Do::Stop);
                        out
                    }
                    None => {
                        self.state = State::Done(Change::Saved);
                        self.play(vec![Say::Prompt(phrase::MESSAGE_SAVED)])
                    }
                },
                '#' => {
                    self.index += 1;
                    self.open_message(env, Vec::new())
                }
                '*' => {
                    let say = self.counts(env);
                    self.menu(say)
                }
                _ if self.state == State::AfterMessage => {
                    self.after_message(vec![Say::Prompt(phrase::INVALID_OPTION)])
                }
                _ => Vec::new(),
            },
            State::Options => match key {
                '1' => self.record_prompt(Kind::Greeting),
                '2' => self.record_prompt(Kind::Name),
                '3' => {
                    let key = voicemail_key(&self.key(), Kind::Greeting.id());
                    self.state = State::Storing(Change::GreetingRemoved);
                    vec![
                        Do::Stop,
                        Do::Persist {
                            writes: vec![Write::delete(VOICEMAIL_RECORDINGS, key)],
                            before: Box::default(),
                            wait: true,
                        },
                    ]
                }
                '*' => {
                    let say = self.counts(env);
                    self.menu(say)
                }
                '#' => self.goodbye(),
                _ => self.options(vec![Say::Prompt(phrase::INVALID_OPTION)]),
            },
            State::Recording {
                kind,
                stopping: false,
            } if key == '#' => {
                self.state = State::Recording {
                    kind,
                    stopping: true,
                };
                vec![Do::StopRecording]
            }
            State::Review(kind) => match key {
                '1' => {
                    let key = voicemail_key(&self.key(), kind.id());
                    let wav = wav::encode(&self.recorded);
                    self.recorded = Vec::new();
                    self.state = State::Storing(Change::Kept(kind));
                    vec![
                        Do::Stop,
                        Do::Persist {
                            writes: vec![Write::put(VOICEMAIL_RECORDINGS, key, wav)],
                            before: Box::default(),
                            wait: true,
                        },
                    ]
                }
                '2' => self.record_prompt(kind),
                '*' => {
                    self.recorded = Vec::new();
                    self.options(Vec::new())
                }
                _ => {
                    self.state = State::Review(kind);
                    let mut out = self.review(kind);
                    if let Some(Do::Play(say)) = out.first_mut() {
                        say.insert(0, Say::Prompt(phrase::INVALID_OPTION));
                    }
                    out
                }
            },
            // Keys while a prompt leads to recording, while the store is asked, while
            // goodbye is said: nothing.
            _ => Vec::new(),
        }
    }

    /// Deletes the current message: said once stored.
    fn delete(&mut self, env: &mut Env<'_>) -> Vec<Do> {
        let key = self.key();
        let Some(id) = self.current().map(str::to_string) else {
            return Vec::new();
        };
        let Some(row) = env.mailboxes.message(&key, &id).cloned() else {
            // Gone already (through the API): as good as deleted.
            self.state = State::Done(Change::Deleted);
            return self.play(vec![Say::Prompt(phrase::MESSAGE_DELETED)]);
        };
        match env.mailboxes.delete(&key, &id) {
            Ok(writes) => {
                self.state = State::Storing(Change::Deleted);
                self.deadline = None;
                vec![
                    Do::Stop,
                    Do::Persist {
                        writes,
                        before: Box::new(Undo::Deleted(row)),
                        wait: true,
                    },
                ]
            }
            Err(_) => {
                self.state = State::Done(Change::Deleted);
                self.play(vec![Say::Prompt(phrase::MESSAGE_DELETED)])
            }
        }
    }

    /// A key while a number or the PIN is keyed in: digits gather, `#` ends, `*` starts
    /// again.
    fn key_in(&mut self, env: &mut Env<'_>, key: char) -> Vec<Do> {
        let max = if self.state == State::Pin {
            MAX_PIN_DIGITS
        } else {
            MAX_NUMBER_DIGITS
        };
        match key {
            '0'..='9' => {
                if self.entry.len() < max {
                    self.entry.push(key);
                } else {
                    self.overflow = true;
                }
                // The prompt stops at the first key (and the wait for the next begins).
                let first = self.entry.len() == 1 && !self.overflow;
                self.deadline = Some(env.now + KEY_WAIT);
                if first {
                    vec![Do::Stop]
                } else {
                    Vec::new()
                }
            }
            '#' => self.entered(env),
            '*' => {
                if self.state == State::Pin {
                    self.ask_pin(Vec::new())
                } else {
                    self.ask_number(Vec::new())
                }
            }
            _ => Vec::new(),
        }
    }

    /// A number or a PIN keyed in.
    fn entered(&mut self, env: &mut Env<'_>) -> Vec<Do> {
        let entry = std::mem::take(&mut self.entry);
        let overflow = std::mem::replace(&mut self.overflow, false);
        if self.state == State::Number {
            if entry.is_empty() {
                return self.ask_number(Vec::new());
            }
            // Taken as it is, known or not: the PIN is asked either way (whether a number
            // is a mailbox's is not told).
            self.number = Some(if overflow { String::new() } else { entry });
            return self.ask_pin(Vec::new());
        }
        let number = self.number.clone().unwrap_or_default();
        let owner = env.policy.mailbox_by_number(&number).cloned();
        let mut keys = self.source.guarded();
        if let Some(o) = &owner {
            keys.push(Guarded::new(format!("mailbox {}", o.key()), LOCK_AFTER));
        }
        let locked = env.pins.locked(&keys, env.now);
        let pin = owner
            .as_ref()
            .and_then(|o| env.policy.mailbox(o))
            .filter(|v| v.enabled)
            .and_then(|v| v.pin.clone());
        let right =
            !overflow && !locked && pin.is_some_and(|p| same(p.as_bytes(), entry.as_bytes()));
        if let (true, Some(owner)) = (right, owner) {
            env.pins.passed(&keys);
            return self.enter(env, owner);
        }
        env.pins.failed(&keys, env.now);
        self.wrong += 1;
        tracing::info!(number, source = %self.source, tries = self.wrong, locked, "mailbox by phone: PIN refused");
        if self.wrong >= MAX_PIN_TRIES {
            return self.goodbye();
        }
        let again = vec![Say::Prompt(phrase::PLEASE_TRY_AGAIN)];
        match self.access {
            Access::Ask => self.ask_number(again),
            _ => self.ask_pin(again),
        }
    }

    /// The wait for a key is over: the menu again, or goodbye after
    /// [`MAX_UNANSWERED`]. A number or PIN keyed in without `#` counts as ended.
    pub fn timeout(&mut self, env: &mut Env<'_>) -> Vec<Do> {
        if self.deadline.is_none_or(|d| d > env.now) {
            return Vec::new();
        }
        self.deadline = None;
        if matches!(self.state, State::Number | State::Pin) && !self.entry.is_empty() {
            return self.entered(env);
        }
        self.unanswered += 1;
        if self.unanswered >= MAX_UNANSWERED {
            return self.goodbye();
        }
        match self.state.clone() {
            State::Number => self.ask_number(Vec::new()),
            State::Pin => self.ask_pin(Vec::new()),
            State::Menu => self.menu(Vec::new()),
            State::AfterMessage => self.after_message(Vec::new()),
            State::Options => self.options(Vec::new()),
            State::Review(kind) => self.review(kind),
            _ => Vec::new(),
        }
    }

    /// A recording ended (`#`, its longest, or the session closing).
    pub fn recorded(&mut self, samples: Vec<i16>) -> Vec<Do> {
        let State::Recording { kind, .. } = self.state else {
            return Vec::new();
        };
        if samples.len() < MIN_RECORDING.as_millis() as usize * 8 {
            return self.record_prompt(kind);
        }
        self.recorded = samples;
        self.review(kind)
    }

    /// A row asked for came back (None: none, or it could not be read).
    pub fn read(&mut self, key: &str, value: Option<Vec<u8>>) -> Vec<Do> {
        if self.reading.as_deref() != Some(key) {
            return Vec::new();
        }
        self.reading = None;
        let max = switchboard_policy::MAX_MESSAGE_SECS as usize * wav::SAMPLE_RATE as usize;
        let samples = value
            .and_then(|bytes| match wav::decode(&bytes, max) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(key, error = %e, "message audio unreadable; skipped");
                    None
                }
            })
            .unwrap_or_default();
        self.audio = Some(samples);
        if self.announced
            && self.state
                == (State::Message {
                    audio_playing: false,
                })
        {
            return self.message_audio();
        }
        Vec::new()
    }

    /// The announcement is over: the message's audio plays (if it is read: else once it
    /// is), or, when it could not be read, what may be done with it is said.
    fn message_audio(&mut self) -> Vec<Do> {
        match self.audio.clone() {
            Some(samples) if !samples.is_empty() => {
                self.state = State::Message {
                    audio_playing: true,
                };
                self.play(vec![Say::Audio(samples)])
            }
            Some(_) => self.after_message(Vec::new()),
            None => Vec::new(),
        }
    }

    /// The outcome of a change's writes ([`Do::Persist`] with `wait`).
    pub fn stored(&mut self, ok: bool) -> Vec<Do> {
        let State::Storing(change) = self.state else {
            return Vec::new();
        };
        if !ok {
            // Undone by whoever carried the writes out; the caller hears it failed.
            let sorry = vec![Say::Prompt(phrase::SORRY)];
            return match change {
                Change::Deleted | Change::Saved => self.after_message(sorry),
                Change::Kept(_) | Change::GreetingRemoved => self.options(sorry),
            };
        }
        self.state = State::Done(change);
        let said = match change {
            Change::Deleted => phrase::MESSAGE_DELETED,
            Change::Saved => phrase::MESSAGE_SAVED,
            Change::Kept(Kind::Greeting) => phrase::YOUR_GREETING_IS_SAVED,
            Change::Kept(Kind::Name) => phrase::YOUR_NAME_IS_SAVED,
            Change::GreetingRemoved => phrase::YOUR_GREETING_IS_DELETED,
        };
        self.play(vec![Say::Prompt(said)])
    }
}

/// Whether two PINs are the same, in time that does not depend on where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// Failed PINs by mailbox and by source address (see the module's documentation).
#[derive(Debug, Default)]
pub struct PinGuard {
    strikes: HashMap<String, Strikes>,
}

#[derive(Clone, Copy, Debug)]
struct Strikes {
    failures: u32,
    last: Instant,
    locked_until: Option<Instant>,
}

impl PinGuard {
    /// Whether any of `keys` is locked out at `now`.
    pub fn locked(&self, keys: &[Guarded], now: Instant) -> bool {
        keys.iter().any(|k| {
            self.strikes
                .get(&k.key)
                .and_then(|s| s.locked_until)
                .is_some_and(|until| until > now)
        })
    }

    /// A PIN refused: counted against each of `keys`; the one at its limit locks it.
    pub fn failed(&mut self, keys: &[Guarded], now: Instant) {
        self.strikes
            .retain(|_, s| now.saturating_duration_since(s.last) < FORGET_AFTER);
        for Guarded { key: k, limit, .. } in keys {
            if !self.strikes.contains_key(k) && self.strikes.len() >= MAX_GUARDED {
                // Full: the longest quiet one goes (a locked one outlives it by far).
                if let Some(oldest) = self
                    .strikes
                    .iter()
                    .filter(|(_, s)| s.locked_until.is_none_or(|u| u <= now))
                    .min_by_key(|(_, s)| s.last)
                    .map(|(k, _)| k.clone())
                {
                    self.strikes.remove(&oldest);
                }
            }
            let s = self.strikes.entry(k.clone()).or_insert(Strikes {
                failures: 0,
                last: now,
                locked_until: None,
            });
            s.failures += 1;
            s.last = now;
            if s.failures >= *limit {
                if s.locked_until.is_none_or(|u| u <= now) {
                    tracing::warn!(who = %k, failures = s.failures, "mailbox PINs refused for a while: too many wrong ones");
                }
                s.locked_until = Some(now + LOCK_FOR);
            }
        }
    }

    /// A PIN accepted: the counts of `keys` that a right PIN undoes start again.
    pub fn passed(&mut self, keys: &[Guarded]) {
        for k in keys.iter().filter(|k| k.undone_by_success) {
            self.strikes.remove(&k.key);
        }
    }

    /// How many it remembers.
    pub fn len(&self) -> usize {
        self.strikes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.strikes.is_empty()
    }
}

#[cfg(test)]
#[path = "mailbox_menu_tests.rs"]
mod tests;
