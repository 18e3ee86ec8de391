//! Local media endpoints: the messages the daemon plays to callers itself, as branches of
//! their calls (see [`crate::executor::BranchTarget::Message`]).
//!
//! A message branch is early media: the caller's INVITE carries an SDP offer, the branch
//! answers it (`switchboard_media::offer_answer::answer`) once the media engine has opened
//! a session and said its port, in a 183 Session Progress with a To tag of its own; the
//! message plays; when the engine says it has been played, the session is closed and the
//! plan goes on (the step's next: the reject's final response, the next step ringing…).
//! A message that cannot be played — no engine, no prompt of that name, no offer in the
//! INVITE (a late offer: early media cannot be offered without one), no codec in common,
//! as many sessions as allowed already — is skipped with a log line, and the plan goes on
//! as if it had been played.
//!
//! A menu branch ([`crate::executor::BranchTarget::Menu`]) opens its session the same
//! way; then [`super::menu`] runs it: the prompt plays, keys ([`Event::Digit`]) are judged,
//! the prompt plays again after no key or a key with no option, and the session ends with
//! the caller's choice ([`Happened::Chosen`]) or without one ([`Happened::Ended`]: the
//! menu's default). A menu that cannot be played is skipped as a message is: the call goes
//! to its default. The wait for a key is this sub-machine's only timer
//! ([`Media::poll_timeout`]).
//!
//! A mailbox branch ([`crate::executor::BranchTarget::Mailbox`]) opens its session the
//! same way and answers the call; then [`super::voicemail::MailboxRun`] runs it: the
//! owner's recordings are read ([`Output::Read`](super::Output::Read), answered by
//! [`Media::read`]), the greeting and the beep play, what the caller says is recorded
//! ([`Command::Record`]; `#` stops it), and the recording goes back to `calls` to be kept
//! ([`Happened::Recorded`]), whether the caller is still there or has hung up.
//!
//! This sub-machine owns the sessions' table and speaks the contract of
//! [`switchboard_media::session`]: [`Command`]s leave the core as
//! [`Output::Media`](super::Output::Media), [`Event`]s come back as
//! [`Input::Media`](super::Input::Media). What a session means to its call (the 183, the
//! plan going on) is `calls`'s business: an event is handed back to it as a [`Happened`]
//! with the call and branch it belongs to.

use super::menu::{MenuRun, Turn};
use super::our_stream::OurStream;
use super::voicemail::{Deposit, Kind, MailboxRun, Phase};
use super::wire::Output;
use crate::executor::BranchId;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_media::g711::Law;
use switchboard_media::offer_answer::{self, Local, Stream};
use switchboard_media::prompts::Prompts;
use switchboard_media::recorder::Recording;
use switchboard_media::say::{self, ClockTime, DayOfYear, Language, PromptName};
use switchboard_media::sdp::{self, Session};
use switchboard_media::session::{Clip, Command, Event, Open, SessionId};
use switchboard_policy::{Menu, Message};
use switchboard_sip::msg::headers::Header;
use switchboard_sip::msg::Request;
use switchboard_store::tables::{voicemail_key, VOICEMAIL_RECORDINGS};

/// The prompts a call may hear, each encoded once in both G.711 laws, and the language
/// that puts phrases together from them.
#[derive(Clone)]
pub struct Library {
    clips: HashMap<String, [Clip; 2]>,
    language: &'static dyn Language,
}

impl Default for Library {
    fn default() -> Self {
        Library {
            clips: HashMap::new(),
            language: &say::ENGLISH,
        }
    }
}

impl std::fmt::Debug for Library {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Library({} prompts)", self.clips.len())
    }
}

impl Library {
    /// Every prompt of `prompts`, encoded in µ-law and A-law; phrases are put together
    /// as `language` says them.
    pub fn from_prompts(prompts: &Prompts, language: &'static dyn Language) -> Library {
        let mut lib = Library {
            clips: HashMap::new(),
            language,
        };
        for (name, prompt) in prompts.iter() {
            lib.insert_samples(name, prompt.samples());
        }
        lib
    }

    /// Adds (or replaces) prompt `name` from 16-bit linear samples at 8 kHz.
    pub fn insert_samples(&mut self, name: &str, samples: &[i16]) {
        let mu: Clip = Law::MuLaw.encode(samples).into();
        let a: Clip = Law::ALaw.encode(samples).into();
        self.clips.insert(name.to_string(), [mu, a]);
    }

    /// How many prompts it holds.
    pub fn len(&self) -> usize {
        self.clips.len()
    }

    pub fn is_empty(&self) -> bool {
        self.clips.is_empty()
    }

    /// The prompt a message's `name` stands for: the prompt of that name (`category/name`),
    /// else `messages/<name>` (an operator's recording), else `phrases/<name>`.
    pub fn resolve(&self, name: &str) -> Option<&str> {
        if let Some((k, _)) = self.clips.get_key_value(name) {
            return Some(k);
        }
        ["messages", "phrases"].iter().find_map(|category| {
            self.clips
                .get_key_value(&format!("{category}/{name}"))
                .map(|(k, _)| k.as_str())
        })
    }

    /// The prompts `message` is said with, in order, or the first one missing.
    pub fn phrase(&self, message: &Message) -> Result<Vec<String>, String> {
        match message {
            Message::Named(name) => match self.resolve(name) {
                Some(n) => Ok(vec![n.to_string()]),
                None => Err(name.to_string()),
            },
            Message::Profile(p) => {
                let (mut who, rest) = self.profile_phrase(p)?;
                who.extend(rest);
                Ok(who)
            }
        }
    }

    /// A profile announcement's prompts in two parts: who (the operator's `name_<user>`
    /// prompt, else "extension" and its digits) and the rest (what they are doing, until
    /// when) — so that a name the person recorded can stand for the first part.
    pub fn profile_phrase(
        &self,
        p: &switchboard_policy::ProfileMessage,
    ) -> Result<(Vec<String>, Vec<String>), String> {
        let mut who: Vec<String> = Vec::new();
        let mut names: Vec<String> = Vec::new();
        let mut said: Vec<PromptName> = Vec::new();
        let push = |lib: &Library, name: &str, names: &mut Vec<String>| match lib.resolve(name) {
            Some(n) => {
                names.push(n.to_string());
                Ok(())
            }
            None => Err(name.to_string()),
        };
        {
            // Who: their name prompt, else "extension" and its digits.
            {
                if let Some(n) = self.resolve(&format!("name_{}", p.user)) {
                    who.push(n.to_string());
                } else {
                    said.push(say::phrase::EXTENSION);
                    if self.language.say_digits(&p.extension, &mut said).is_err() {
                        said.clear();
                        said.push(say::phrase::THE_PERSON_YOU_ARE_CALLING);
                    }
                }
                for n in said.drain(..) {
                    push(self, n, &mut who)?;
                }
                // What: the operator's recording for the profile, else its phrase.
                match self.resolve(&format!("profile_{}", p.profile)) {
                    Some(n) => names.push(n.to_string()),
                    None => push(self, say::phrase::of_profile(&p.profile), &mut names)?,
                }
                // Until when, on the callee's clock.
                if let Some(t) = p.until {
                    said.push(say::phrase::UNTIL);
                    match t.days_ahead {
                        0 => {}
                        1 => said.extend([say::phrase::TOMORROW, say::phrase::AT]),
                        _ => {
                            if let Ok(day) = DayOfYear::new(t.weekday, t.day, t.month) {
                                self.language.say_date(day, &mut said);
                                said.push(say::phrase::AT);
                            }
                        }
                    }
                    match ClockTime::new(t.hour, t.minute) {
                        Ok(time) => {
                            let cycle = self.language.default_hour_cycle();
                            self.language.say_time(time, cycle, &mut said);
                        }
                        Err(_) => said.clear(),
                    }
                    for n in said.drain(..) {
                        push(self, n, &mut names)?;
                    }
                }
            }
        }
        Ok((who, names))
    }

    /// The language phrases are put together in.
    pub fn language(&self) -> &'static dyn Language {
        self.language
    }

    /// Prompt `name`'s audio in `law`.
    pub fn clip(&self, name: &str, law: Law) -> Option<Clip> {
        let [mu, a] = self.clips.get(self.resolve(name)?)?;
        Some(match law {
            Law::MuLaw => mu.clone(),
            Law::ALaw => a.clone(),
        })
    }
}

/// Settings of local media.
#[derive(Clone, Debug)]
pub struct MediaConfig {
    /// Whether a media engine carries out [`Output::Media`]; without one every message is
    /// skipped (with a log line), as before the daemon had a voice.
    pub enabled: bool,
    /// The address our SDP answers give for our RTP; None: the address of the listener
    /// the INVITE came to.
    pub address: Option<IpAddr>,
    /// Most sessions open at once; a message beyond is skipped.
    pub max_sessions: usize,
    /// Handed to the engine with each session (see [`Open::rtp_timeout`]).
    pub rtp_timeout: Duration,
    /// The prompts, in both laws.
    pub library: Arc<Library>,
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            enabled: false,
            address: None,
            max_sessions: 1000,
            rtp_timeout: Duration::from_secs(30),
            library: Arc::default(),
        }
    }
}

/// Why a message was not played: for the log and the call's history, and the response
/// that refuses the call when the call is for the message (an announcement destination):
/// `488` when the offer has no codec in common, `400` when it cannot be read, `503` when
/// as many sessions are open as allowed. None: the message is skipped whatever it is for
/// (no engine, no prompt, no offer), and the plan goes on.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub why: String,
    pub code: Option<u16>,
}

impl Refusal {
    pub(crate) fn skip(why: impl Into<String>) -> Refusal {
        Refusal {
            why: why.into(),
            code: None,
        }
    }
}

/// Where a session is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// [`Command::Open`] went; waiting for [`Event::Opened`].
    Opening,
    /// Opened and answered; playing.
    Playing,
    /// [`Command::Close`] went; waiting for [`Event::Closed`] (its ports are still held).
    Closing,
}

struct MediaSession {
    call: u64,
    branch: BranchId,
    state: State,
    offer: Session,
    /// Our end of the stream: the law agreed on (for the clips of a message played next in
    /// the same session), our SDP answer as last sent (again for a re-INVITE without an
    /// offer), what answers a re-offer.
    ours: OurStream,
    clips: Vec<Clip>,
    /// The session answered its call (200 OK): silence ends it (see [`Happened::Silent`]).
    answered: bool,
    /// A menu's session: the menu it runs (a message's: None).
    menu: Option<MenuRun>,
    /// A mailbox's session: the message it takes (see [`super::voicemail`]).
    mailbox: Option<Box<MailboxRun>>,
    /// A profile announcement waiting for the person's recorded name (read from the
    /// store): what follows the name when there is one. It plays once the read is in.
    name_rest: Option<Vec<Clip>>,
    /// The mailbox by phone's session (see [`super::mailbox_menu`]): its events go to
    /// `calls`, which runs the menu; a `Played` before this instant is of a play stopped
    /// since (a Stop and a Played can cross).
    phone: Option<Option<Instant>>,
}

/// What a local media endpoint does for the caller.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Endpoint<'a> {
    /// Plays a message, then ends.
    Message(&'a Message),
    /// Serves a menu: ends with the caller's choice, or without one.
    Menu(&'a Menu),
    /// Takes a message for a mailbox: greets, records, hands the recording back.
    Mailbox(&'a MailboxRun),
    /// The mailbox by phone: plays and records what `calls` asks (its menu is
    /// [`super::mailbox_menu::MailboxMenu`]), and hands back what happens.
    Phone,
}

/// What happened in a session of the mailbox by phone (handed to its menu).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PhoneEvent {
    /// What was playing has been played.
    Played,
    /// A key.
    Digit(char),
    /// A recording ended.
    Recorded(Vec<i16>),
    /// A row asked for came back.
    Read { key: String, value: Option<Vec<u8>> },
}

/// What a read of the store is for.
#[derive(Clone, Debug)]
enum ReadFor {
    /// A mailbox owner's recording, for the greeting.
    Mailbox(Kind),
    /// The mailbox by phone (a message's audio): its key.
    Phone(String),
    /// The name a person recorded, said first in their profile's announcement.
    Name,
}

/// The longest recorded name said in an announcement (a longer row is not one).
const MAX_NAME: Duration = Duration::from_secs(10);

/// What an engine's event means to a session's call (see [`Media::event`]).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Happened {
    /// The session is open: answer the caller with this SDP (183), then
    /// [`Media::play`].
    Opened { id: SessionId, sdp: Vec<u8> },
    /// The message is over (played, or could not be), or the menu without a choice: the
    /// plan goes on.
    Ended { how: String },
    /// The caller chose the option of `key` in a menu (its session is being closed): the
    /// plan goes on to that option.
    Chosen { key: char },
    /// The engine could not open the session (no free port pair…): as [`Happened::Ended`]
    /// for a message played before something else; a call that is for its announcement
    /// is refused 503.
    Unavailable { how: String },
    /// Nothing came from the caller of an answered session for the RTP timeout: the call
    /// is hung up (a caller in early media need not send anything, so only an answered
    /// session hears of it).
    Silent { id: SessionId },
    /// A mailbox's recording ended (its length, `#`, quiet, or the caller hung up and the
    /// session closed): the message to keep, whether or not the call is still there.
    /// Unless `closing`, "goodbye" now plays, and [`Happened::Ended`] follows it.
    Recorded {
        deposit: Box<Deposit>,
        recording: Recording,
        closing: bool,
    },
    /// Something for the mailbox by phone of session `id`.
    Phone { id: SessionId, event: PhoneEvent },
}

/// Counters of local media.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MediaStats {
    /// Sessions opened (asked of the engine).
    pub sessions: u64,
    /// Messages played to their end.
    pub played: u64,
    /// Messages skipped (no offer, no codec in common, no prompt, the session limit, the
    /// engine refused).
    pub skipped: u64,
    /// Keys the callers of open sessions pressed (RFC 4733 events, SIP INFO).
    pub digits: u64,
}

/// The sessions of local media endpoints (see the module's documentation).
pub struct Media {
    config: MediaConfig,
    sessions: BTreeMap<SessionId, MediaSession>,
    next_id: u64,
    /// Sessions that run a menu (none: no timer to look for, whatever the sessions).
    menus: usize,
    /// Reads of mailbox owners' recordings under way: token → session, and which.
    reads: BTreeMap<u64, (SessionId, ReadFor)>,
    next_read: u64,
    pub(crate) stats: MediaStats,
}

impl Media {
    pub fn new(config: MediaConfig) -> Self {
        Media {
            config,
            sessions: BTreeMap::new(),
            next_id: 1,
            menus: 0,
            reads: BTreeMap::new(),
            next_read: 1,
            stats: MediaStats::default(),
        }
    }

    /// Sessions open or opening (closing ones included: their ports are held).
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    pub fn stats(&self) -> MediaStats {
        self.stats
    }

    /// The language the prompts are in.
    pub(crate) fn language(&self) -> &'static dyn Language {
        self.config.library.language()
    }

    /// Opens a session for `endpoint` (a message to play, a menu to serve) to the caller
    /// of `invite` (branch `branch` of call `call`), whose INVITE came from `signalling` to
    /// our address `inbound`: [`Command::Open`] goes out, and [`Event::Opened`] will bring
    /// the port to answer with. Or why it is skipped.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn start(
        &mut self,
        out: &mut VecDeque<Output>,
        call: u64,
        branch: BranchId,
        invite: &Request,
        signalling: IpAddr,
        inbound: IpAddr,
        endpoint: Endpoint<'_>,
    ) -> Result<SessionId, Refusal> {
        let skip = |stats: &mut MediaStats, refusal: Refusal| {
            stats.skipped += 1;
            Err(refusal)
        };
        if !self.config.enabled {
            return skip(&mut self.stats, Refusal::skip("no media engine"));
        }
        let lib = &self.config.library;
        let (prompts, invalid) = match endpoint {
            Endpoint::Message(message) => (lib.phrase(message), Vec::new()),
            // Its greeting is put together once the owner's recordings are read.
            Endpoint::Mailbox(_) | Endpoint::Phone => (Ok(Vec::new()), Vec::new()),
            Endpoint::Menu(menu) => (
                lib.phrase(&Message::Named(menu.prompt.clone())),
                // A missing invalid-key message is left out: the prompt alone again.
                menu.invalid
                    .as_ref()
                    .and_then(|m| lib.phrase(&Message::Named(m.clone())).ok())
                    .unwrap_or_default(),
            ),
        };
        let prompts = match prompts {
            Ok(p) => p,
            Err(name) => {
                return skip(
                    &mut self.stats,
                    Refusal::skip(format!("no prompt named {name}")),
                )
            }
        };
        if self.sessions.len() >= self.config.max_sessions {
            let why = format!(
                "{} media sessions open, the most allowed",
                self.sessions.len()
            );
            let refusal = Refusal {
                why,
                code: Some(503),
            };
            return skip(&mut self.stats, refusal);
        }
        let offer = match sdp_offer(invite) {
            Ok(offer) => offer,
            Err(refusal) => return skip(&mut self.stats, refusal),
        };
        let address = self.config.address.unwrap_or(inbound);
        let id = SessionId(self.next_id);
        let local = Local {
            address,
            // The port is the engine's to choose; the answer is made again with it.
            port: 9,
            session_id: id.0,
            version: 1,
            laws: vec![Law::MuLaw, Law::ALaw],
            telephone_event: 101,
        };
        let stream = match offer_answer::answer(&offer, &local) {
            Ok((_, stream)) => stream,
            Err(e) => {
                let refusal = Refusal {
                    why: format!("the caller's offer: {e}"),
                    code: Some(488),
                };
                return skip(&mut self.stats, refusal);
            }
        };
        let lib = &self.config.library;
        let clips_of = |names: &[String]| -> Vec<Clip> {
            names
                .iter()
                .filter_map(|p| lib.clip(p, stream.law))
                .collect()
        };
        let clips = clips_of(&prompts);
        let menu = match endpoint {
            Endpoint::Message(_) | Endpoint::Mailbox(_) | Endpoint::Phone => None,
            Endpoint::Menu(m) => Some(MenuRun::new(
                m.id.clone(),
                m.options.iter().map(|o| o.key).collect(),
                clips.clone(),
                clips_of(&invalid),
                Duration::from_secs(m.timeout_secs.into()),
                m.retries,
            )),
        };
        self.next_id += 1;
        self.stats.sessions += 1;
        out.push_back(Output::Media(Command::Open(open(
            id,
            &stream,
            signalling,
            self.config.rtp_timeout,
        ))));
        // A profile's announcement says the name the person recorded, when there is one:
        // read while the session opens, as a mailbox's recordings are.
        let name_rest = match endpoint {
            Endpoint::Message(Message::Profile(p)) => {
                let rest = lib.profile_phrase(p).map(|(_, rest)| clips_of(&rest)).ok();
                if rest.is_some() {
                    let token = self.next_read;
                    self.next_read += 1;
                    self.reads.insert(token, (id, ReadFor::Name));
                    out.push_back(Output::Read {
                        token,
                        table: VOICEMAIL_RECORDINGS,
                        key: voicemail_key(&format!("user:{}", p.user), "name"),
                    });
                }
                rest
            }
            _ => None,
        };
        let mailbox = match endpoint {
            Endpoint::Mailbox(run) => {
                // The owner's recordings are read while the session opens.
                for kind in [Kind::Greeting, Kind::Name] {
                    let token = self.next_read;
                    self.next_read += 1;
                    self.reads.insert(token, (id, ReadFor::Mailbox(kind)));
                    out.push_back(Output::Read {
                        token,
                        table: VOICEMAIL_RECORDINGS,
                        key: voicemail_key(&run.deposit.mailbox, kind.id()),
                    });
                }
                Some(Box::new(run.clone()))
            }
            _ => None,
        };
        self.menus += usize::from(menu.is_some());
        self.sessions.insert(
            id,
            MediaSession {
                call,
                branch,
                state: State::Opening,
                offer,
                ours: OurStream::new(local, stream.law, Vec::new()),
                clips,
                menu,
                mailbox,
                name_rest,
                phone: matches!(endpoint, Endpoint::Phone).then_some(None),
                answered: false,
            },
        );
        Ok(id)
    }

    /// A session id for a session another part of the core opens and runs itself (the
    /// legs of confirmed forwarding, `core::calls::confirm_b2b`): this table never holds
    /// it, so [`Media::event`] answers None for its events. With the address to put in
    /// SDP (None: the listener's), the RTP timeout, and the library. None when there is no
    /// media engine or the session limit is reached (counted with this table's).
    pub(crate) fn reserve(
        &mut self,
        others: usize,
    ) -> Option<(SessionId, Option<IpAddr>, Duration, Arc<Library>)> {
        if !self.config.enabled || self.sessions.len() + others >= self.config.max_sessions {
            return None;
        }
        let id = SessionId(self.next_id);
        self.next_id += 1;
        self.stats.sessions += 1;
        let c = &self.config;
        Some((id, c.address, c.rtp_timeout, Arc::clone(&c.library)))
    }

    /// The session answered its call (200 OK): from now on silence from the caller ends
    /// it ([`Happened::Silent`]).
    pub(crate) fn answered(&mut self, id: SessionId) {
        if let Some(s) = self.sessions.get_mut(&id) {
            s.answered = true;
        }
    }

    /// Plays `message` next in an answered session (the plan's next announcement, in the
    /// same call), now for branch `branch`; [`Event::Played`] when it is over. Or why it
    /// cannot be.
    pub(crate) fn play_next(
        &mut self,
        out: &mut VecDeque<Output>,
        id: SessionId,
        branch: BranchId,
        message: &Message,
    ) -> Result<(), Refusal> {
        let lib = Arc::clone(&self.config.library);
        let Some(s) = self.sessions.get_mut(&id) else {
            return Err(Refusal::skip("the call's media session is gone"));
        };
        if s.state == State::Closing {
            return Err(Refusal::skip("the call's media session is closing"));
        }
        let prompts = lib
            .phrase(message)
            .map_err(|name| Refusal::skip(format!("no prompt named {name}")))?;
        let clips: Vec<Clip> = prompts
            .iter()
            .filter_map(|p| lib.clip(p, s.ours.law))
            .collect();
        s.branch = branch;
        s.state = State::Playing;
        out.push_back(Output::Media(Command::Play { id, clips }));
        Ok(())
    }

    /// Our SDP for a re-INVITE of an answered session's caller (see
    /// [`OurStream::reoffered`]): the answer to its new offer in the codec agreed, or our
    /// last description when it offers nothing; where the caller now receives, whether we
    /// send, and how long it may be silent (hold, resume) go to the engine. Err when its
    /// offer cannot be answered (the response code, as for the INVITE's).
    pub(crate) fn reanswer(
        &mut self,
        out: &mut VecDeque<Output>,
        id: SessionId,
        reinvite: &Request,
    ) -> Result<Vec<u8>, Refusal> {
        let Some(s) = self.sessions.get_mut(&id) else {
            return Err(Refusal {
                why: "no media session".into(),
                code: Some(481),
            });
        };
        s.ours.reoffered(out, id, reinvite, self.config.rtp_timeout)
    }

    /// The caller's ACK of our 2xx to its re-INVITE (see [`OurStream::acked`]).
    pub(crate) fn reacked(&mut self, out: &mut VecDeque<Output>, id: SessionId, ack: &Request) {
        if let Some(s) = self.sessions.get_mut(&id) {
            s.ours.acked(out, id, ack, self.config.rtp_timeout);
        }
    }

    /// Plays an opened session's message, its menu's prompt, or its mailbox's greeting
    /// (that one once the owner's recordings are read: see [`Media::read`])
    /// ([`Event::Played`] when it is over).
    pub(crate) fn play(&mut self, out: &mut VecDeque<Output>, id: SessionId, now: Instant) {
        if let Some(s) = self.sessions.get_mut(&id) {
            if s.state == State::Opening {
                s.state = State::Playing;
                if s.phone.is_some() {
                    // Its menu says what plays (`calls` begins it).
                    return;
                }
                let clips = match (&mut s.menu, &mut s.mailbox) {
                    (Some(menu), _) => menu.begin(now),
                    // The greeting, once the owner's recordings are read (else on the
                    // last answer, in `read`).
                    (_, Some(run)) => match run.greeting_clips(&self.config.library, s.ours.law) {
                        Some(clips) => clips,
                        None => return,
                    },
                    // The announcement, once the person's recorded name is read (`read`).
                    _ if s.name_rest.is_some() => return,
                    _ => std::mem::take(&mut s.clips),
                };
                out.push_back(Output::Media(Command::Play { id, clips }));
            }
        }
    }

    /// The answer to [`Output::Read`](super::Output::Read) `token` (a mailbox owner's
    /// recording): `value`, the row's bytes (None: none, or the read failed). The greeting
    /// plays once both are in and the caller is answered.
    pub(crate) fn read(
        &mut self,
        out: &mut VecDeque<Output>,
        token: u64,
        value: Option<Vec<u8>>,
    ) -> Option<(u64, BranchId, Happened)> {
        let (id, what) = self.reads.remove(&token)?;
        let lib = Arc::clone(&self.config.library);
        let s = self.sessions.get_mut(&id)?;
        let kind = match what {
            ReadFor::Mailbox(kind) => kind,
            ReadFor::Name => {
                let rest = s.name_rest.take()?;
                let name = value.and_then(|bytes| {
                    let max =
                        MAX_NAME.as_secs() as usize * switchboard_media::wav::SAMPLE_RATE as usize;
                    switchboard_media::wav::decode(&bytes, max).ok()
                });
                if let Some(name) = name.filter(|n| !n.is_empty()) {
                    let mut clips: Vec<Clip> = vec![s.ours.law.encode(&name).into()];
                    clips.extend(rest);
                    s.clips = clips;
                }
                if s.state == State::Playing {
                    let clips = std::mem::take(&mut s.clips);
                    out.push_back(Output::Media(Command::Play { id, clips }));
                }
                return None;
            }
            ReadFor::Phone(key) => {
                let event = PhoneEvent::Read { key, value };
                return (s.state == State::Playing).then_some((
                    s.call,
                    s.branch,
                    Happened::Phone { id, event },
                ));
            }
        };
        let run = s.mailbox.as_mut()?;
        run.read(kind, value);
        if s.state == State::Playing {
            if let Some(clips) = run.greeting_clips(&lib, s.ours.law) {
                out.push_back(Output::Media(Command::Play { id, clips }));
            }
        }
        None
    }

    /// Plays `say` in a session of the mailbox by phone, after stopping what plays
    /// ([`Event::Played`] when it is over); a prompt the set lacks is left out.
    pub(crate) fn phone_say(
        &mut self,
        out: &mut VecDeque<Output>,
        id: SessionId,
        say: Vec<super::mailbox_menu::Say>,
        now: Instant,
    ) {
        let lib = Arc::clone(&self.config.library);
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        if s.state != State::Playing {
            return;
        }
        let law = s.ours.law;
        let clips: Vec<Clip> = say
            .into_iter()
            .filter_map(|x| match x {
                super::mailbox_menu::Say::Prompt(name) => lib.clip(name, law),
                super::mailbox_menu::Say::Audio(samples) => Some(law.encode(&samples).into()),
            })
            .collect();
        let octets: u64 = clips.iter().map(|c| c.len() as u64).sum();
        // A Played sooner than three quarters of this is of the play stopped now.
        s.phone = Some(Some(now + Duration::from_micros(octets * 125 * 3 / 4)));
        out.push_back(Output::Media(Command::Stop { id }));
        out.push_back(Output::Media(Command::Play { id, clips }));
    }

    /// Stops what plays in a session of the mailbox by phone.
    pub(crate) fn phone_stop(&mut self, out: &mut VecDeque<Output>, id: SessionId) {
        if let Some(s) = self.sessions.get_mut(&id) {
            if s.state == State::Playing && s.phone.is_some() {
                s.phone = Some(None);
                out.push_back(Output::Media(Command::Stop { id }));
            }
        }
    }

    /// Asks for row `key` of `table` for a session of the mailbox by phone
    /// ([`PhoneEvent::Read`] when it comes).
    pub(crate) fn phone_read(
        &mut self,
        out: &mut VecDeque<Output>,
        id: SessionId,
        table: switchboard_store::Table,
        key: String,
    ) {
        if !self.sessions.contains_key(&id) {
            return;
        }
        let token = self.next_read;
        self.next_read += 1;
        self.reads.insert(token, (id, ReadFor::Phone(key.clone())));
        out.push_back(Output::Read { token, table, key });
    }

    /// When [`Media::timeout`] must next be called: the first menu's wait for a key to end.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.menus == 0 {
            return None;
        }
        self.sessions
            .values()
            .filter(|s| s.state == State::Playing)
            .filter_map(|s| s.menu.as_ref()?.deadline())
            .min()
    }

    /// Menus whose wait for a key is over: the prompt again, or the menu ends without a
    /// choice (what that means to their calls, as [`Media::event`] says it).
    pub(crate) fn timeout(
        &mut self,
        out: &mut VecDeque<Output>,
        now: Instant,
    ) -> Vec<(u64, BranchId, Happened)> {
        if self.menus == 0 {
            return Vec::new();
        }
        let due: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.state == State::Playing)
            .filter(|(_, s)| {
                let deadline = s.menu.as_ref().and_then(MenuRun::deadline);
                deadline.is_some_and(|at| at <= now)
            })
            .map(|(id, _)| *id)
            .collect();
        let mut happened = Vec::new();
        for id in due {
            let Some(turn) = self
                .sessions
                .get_mut(&id)
                .and_then(|s| s.menu.as_mut())
                .map(|m| m.timeout(now))
            else {
                continue;
            };
            if let Some(h) = self.turn(out, id, turn) {
                happened.push(h);
            }
        }
        happened
    }

    /// Removes a session from the table (the engine is done with it).
    fn forget(&mut self, id: SessionId) -> Option<MediaSession> {
        let s = self.sessions.remove(&id)?;
        self.menus -= usize::from(s.menu.is_some());
        if s.mailbox.is_some() || s.phone.is_some() {
            // Reads still under way are answered into nothing.
            self.reads.retain(|_, (session, _)| *session != id);
        }
        Some(s)
    }

    /// Carries out what a menu decided for its session.
    fn turn(
        &mut self,
        out: &mut VecDeque<Output>,
        id: SessionId,
        turn: Turn,
    ) -> Option<(u64, BranchId, Happened)> {
        let s = self.sessions.get(&id)?;
        let (call, branch) = (s.call, s.branch);
        let menu = s.menu.as_ref().map(|m| m.id.clone()).unwrap_or_default();
        match turn {
            Turn::Nothing => None,
            Turn::Play { stop, clips } => {
                if stop {
                    out.push_back(Output::Media(Command::Stop { id }));
                }
                out.push_back(Output::Media(Command::Play { id, clips }));
                None
            }
            Turn::Chosen(key) => {
                tracing::debug!(session = id.0, menu, %key, "menu option chosen");
                self.close(out, id);
                Some((call, branch, Happened::Chosen { key }))
            }
            Turn::GiveUp(how) => {
                tracing::debug!(session = id.0, menu, how, "menu ended without a choice");
                self.close(out, id);
                Some((call, branch, Happened::Ended { how }))
            }
        }
    }

    /// Closes a session (its call no longer wants it): its message stops.
    pub(crate) fn close(&mut self, out: &mut VecDeque<Output>, id: SessionId) {
        if let Some(s) = self.sessions.get_mut(&id) {
            if s.state != State::Closing {
                s.state = State::Closing;
                out.push_back(Output::Media(Command::Close { id }));
            }
        }
    }

    /// Closes every session (the daemon is stopping): the calls and branches they belonged
    /// to, whose messages are over.
    pub(crate) fn close_all(&mut self, out: &mut VecDeque<Output>) -> Vec<(u64, BranchId)> {
        let mut ended = Vec::new();
        for (id, s) in self.sessions.iter_mut() {
            if s.state != State::Closing {
                s.state = State::Closing;
                out.push_back(Output::Media(Command::Close { id: *id }));
                ended.push((s.call, s.branch));
            }
        }
        ended
    }

    /// An event of the engine: what it means to the session's call and branch, if
    /// anything (commands it leads to go out first: a played message's session is closed).
    pub(crate) fn event(
        &mut self,
        out: &mut VecDeque<Output>,
        event: Event,
        now: Instant,
    ) -> Option<(u64, BranchId, Happened)> {
        match event {
            Event::Opened { id, port } => {
                let s = self.sessions.get_mut(&id)?;
                if s.state != State::Opening {
                    return None;
                }
                s.ours.local.port = port;
                match offer_answer::answer(&s.offer, &s.ours.local) {
                    Ok((answer, _)) => {
                        let sdp = answer.to_bytes();
                        s.ours.sdp = sdp.clone();
                        Some((s.call, s.branch, Happened::Opened { id, sdp }))
                    }
                    Err(e) => {
                        // The same offer was answered before the open: not reached.
                        let how = format!("skipped: the caller's offer: {e}");
                        let (call, branch) = (s.call, s.branch);
                        self.close(out, id);
                        self.stats.skipped += 1;
                        Some((call, branch, Happened::Ended { how }))
                    }
                }
            }
            Event::Failed { id, why } => {
                let s = self.forget(id)?;
                self.stats.skipped += 1;
                if switchboard_sip::log_limit::allow("media session not opened") {
                    tracing::warn!(session = id.0, %why, "media session could not be opened; message skipped");
                }
                let how = format!("skipped: the media engine could not open a session: {why}");
                (s.state != State::Closing).then_some((
                    s.call,
                    s.branch,
                    Happened::Unavailable { how },
                ))
            }
            Event::Played { id } => {
                let s = self.sessions.get_mut(&id)?;
                if s.state != State::Playing {
                    return None;
                }
                if let Some(menu) = &mut s.menu {
                    // The prompt is over: the wait for a key begins.
                    menu.played(now);
                    return None;
                }
                if let Some(not_before) = s.phone {
                    if not_before.is_some_and(|t| now < t) {
                        return None;
                    }
                    let event = PhoneEvent::Played;
                    return Some((s.call, s.branch, Happened::Phone { id, event }));
                }
                if let Some(run) = &mut s.mailbox {
                    return match run.phase {
                        Phase::Greeting => {
                            // The beep is over: what the caller says is recorded.
                            run.phase = Phase::Recording;
                            tracing::info!(session = id.0, mailbox = %run.deposit.mailbox, call_id = %run.deposit.call_id, "mailbox greeting played; recording");
                            out.push_back(Output::Media(Command::Record {
                                id,
                                max: run.max,
                                silence: run.silence,
                            }));
                            None
                        }
                        Phase::Goodbye => {
                            run.phase = Phase::Over;
                            let how = "took a message".to_string();
                            Some((s.call, s.branch, Happened::Ended { how }))
                        }
                        _ => None,
                    };
                }
                let (call, branch) = (s.call, s.branch);
                self.stats.played += 1;
                if !s.answered {
                    self.close(out, id);
                }
                // An answered session stays open: its call may play the next message in
                // it, and closes it when it hangs up.
                let how = "played".to_string();
                Some((call, branch, Happened::Ended { how }))
            }
            Event::Digit { id, digit } => {
                let s = self.sessions.get_mut(&id)?;
                self.stats.digits += 1;
                if s.phone.is_some() {
                    let event = PhoneEvent::Digit(digit);
                    return (s.state == State::Playing).then_some((
                        s.call,
                        s.branch,
                        Happened::Phone { id, event },
                    ));
                }
                if let (Some(run), State::Playing) = (&mut s.mailbox, s.state) {
                    let lib = &self.config.library;
                    if digit == '#' && run.phase == Phase::Recording {
                        // The caller is done: the recording ends (Recorded follows).
                        run.phase = Phase::Stopping;
                        out.push_back(Output::Media(Command::StopRecording { id }));
                    } else if let Some(beep) = (digit == '#')
                        .then(|| run.skip_greeting(lib, s.ours.law))
                        .flatten()
                    {
                        // The caller skips the greeting: the beep at once (its end starts
                        // the recording, as the greeting's would have).
                        out.push_back(Output::Media(Command::Stop { id }));
                        out.push_back(Output::Media(Command::Play { id, clips: beep }));
                    } else {
                        tracing::debug!(session = id.0, %digit, "key pressed at a mailbox; ignored");
                    }
                    return None;
                }
                match (&mut s.menu, s.state) {
                    (Some(menu), State::Playing) => {
                        let turn = menu.digit(digit, now);
                        self.turn(out, id, turn)
                    }
                    _ => {
                        tracing::debug!(session = id.0, %digit, "key pressed during a message; ignored");
                        None
                    }
                }
            }
            Event::Recorded { id, recording } => {
                let s = self.sessions.get_mut(&id)?;
                let closing = s.state == State::Closing;
                let (call, branch) = (s.call, s.branch);
                if s.phone.is_some() {
                    // A greeting or name recorded by phone: kept only if the caller is
                    // still there to say so.
                    let event = PhoneEvent::Recorded(recording.samples);
                    return (!closing).then_some((call, branch, Happened::Phone { id, event }));
                }
                let recording_now = s
                    .mailbox
                    .as_ref()
                    .is_some_and(|r| matches!(r.phase, Phase::Recording | Phase::Stopping));
                let Some(run) = s.mailbox.as_mut().filter(|_| recording_now) else {
                    tracing::debug!(
                        session = id.0,
                        ms = recording.duration().as_millis() as u64,
                        "recording ended unasked for; dropped"
                    );
                    return None;
                };
                let deposit = run.deposit.clone();
                if closing {
                    run.phase = Phase::Over;
                } else {
                    // "Goodbye", then the call is hung up (Played → Ended).
                    run.phase = Phase::Goodbye;
                    let clips = self
                        .config
                        .library
                        .clip(say::phrase::GOODBYE, s.ours.law)
                        .into_iter()
                        .collect();
                    out.push_back(Output::Media(Command::Play { id, clips }));
                }
                Some((
                    call,
                    branch,
                    Happened::Recorded {
                        deposit,
                        recording,
                        closing,
                    },
                ))
            }
            Event::Timeout { id } => {
                let s = self.sessions.get(&id)?;
                if s.answered && s.state != State::Closing {
                    // An answered caller that sends nothing is gone.
                    tracing::info!(session = id.0, "no RTP from an answered caller: hanging up");
                    return Some((s.call, s.branch, Happened::Silent { id }));
                }
                // A caller in early media need not send anything (many phones do not):
                // silence does not end a message; the step's own bound does.
                tracing::debug!(session = id.0, "no RTP from the caller during a message");
                None
            }
            Event::Closed { id, counters } => {
                let s = self.forget(id)?;
                tracing::debug!(
                    session = id.0,
                    call = s.call,
                    sent = counters.packets_sent,
                    received = counters.packets_received,
                    dropped = counters.packets_dropped,
                    "media session closed"
                );
                None
            }
        }
    }
}

/// The engine's [`Open`] for a negotiated stream.
fn open(id: SessionId, stream: &Stream, signalling: IpAddr, rtp_timeout: Duration) -> Open {
    Open {
        id,
        remote: stream.remote,
        signalling,
        law: stream.law,
        payload_type: stream.payload_type,
        telephone_event: stream.telephone_event,
        ptime_ms: stream.ptime,
        send: stream.direction.sends(),
        rtp_timeout,
    }
}

/// The SDP offer of an INVITE, or why there is none to answer: none at all is skipped
/// (a late offer), an unreadable one refused with 400.
pub(super) fn sdp_offer(invite: &Request) -> Result<Session, Refusal> {
    let content_type = invite.headers.iter().find_map(|h| match h {
        Header::ContentType(c) => Some(c.value().to_ascii_lowercase()),
        _ => None,
    });
    let is_sdp = content_type
        .as_deref()
        .is_some_and(|c| c.split(';').next().unwrap_or("").trim() == "application/sdp");
    if invite.body.is_empty() {
        return Err(Refusal::skip(
            "no SDP offer in the INVITE (a late offer): early media needs the caller's offer",
        ));
    }
    if !is_sdp {
        return Err(Refusal {
            why: "the INVITE's body is not SDP".into(),
            code: Some(415),
        });
    }
    sdp::Session::parse(&invite.body, &sdp::Limits::default()).map_err(|e| Refusal {
        why: format!("the caller's SDP offer is unreadable: {e}"),
        code: Some(400),
    })
}

#[cfg(test)]
#[path = "media_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "local_dialog_tests.rs"]
mod local_dialog_tests;
