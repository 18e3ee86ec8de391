//! The validated policy: people, teams, destinations, profiles, schedules, trunks.
//!
//! Built by [`crate::load`] from TOML; every reference in it is known to resolve.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;

/// A digest algorithm a user may authenticate with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DigestAlgorithm {
    Md5,
    Sha256,
}

impl DigestAlgorithm {
    /// The name the policy and the config write it as.
    pub fn as_str(self) -> &'static str {
        match self {
            DigestAlgorithm::Md5 => "md5",
            DigestAlgorithm::Sha256 => "sha-256",
        }
    }
}

/// How a user's SIP secret is given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Secret {
    Password(String),
    /// Hex HA1 = H(username:realm:password), per algorithm.
    Ha1 {
        md5: Option<String>,
        sha256: Option<String>,
    },
}

/// A user's SIP credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SipCredentials {
    pub username: String,
    pub secret: Secret,
    /// In order of preference.
    pub algorithms: Vec<DigestAlgorithm>,
}

/// Where a call can be sent.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    User(String),
    Team(String),
    /// A voicemail box, IVR menu, queue or announcement of the external media server.
    Destination(DestinationKind, String),
    /// A number dialled out through a trunk.
    External(String),
    /// `voicemail` alone: the daemon's own mailbox of the person or team whose setting it
    /// is (their `no_answer`, `busy`, `out_of_hours`, forwarding's `no_answer`, a profile's
    /// `send_to`). `voicemail:ID` is a [`Target::Destination`]: the media server's
    /// destination `ID`, or when there is none, the mailbox of user or team `ID`.
    Voicemail,
    Hangup,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::User(u) => write!(f, "user:{u}"),
            Target::Team(t) => write!(f, "team:{t}"),
            Target::Destination(k, d) => write!(f, "{}:{d}", k.as_str()),
            Target::External(n) => write!(f, "number:{n}"),
            Target::Voicemail => f.write_str("voicemail"),
            Target::Hangup => f.write_str("hangup"),
        }
    }
}

/// Kinds of destination served by the external media server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DestinationKind {
    Voicemail,
    Menu,
    Queue,
    Announcement,
}

impl DestinationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DestinationKind::Voicemail => "voicemail",
            DestinationKind::Menu => "menu",
            DestinationKind::Queue => "queue",
            DestinationKind::Announcement => "announcement",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "voicemail" => DestinationKind::Voicemail,
            "menu" | "ivr" => DestinationKind::Menu,
            "queue" => DestinationKind::Queue,
            "announcement" | "message" => DestinationKind::Announcement,
            _ => return None,
        })
    }
}

/// A named SIP URI of the external media server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destination {
    pub id: String,
    pub kind: DestinationKind,
    /// Where the media server serves it (empty for a message the daemon plays itself).
    pub uri: String,
    /// An `announcement` without `uri`: the message (a prompt's name) the daemon plays to
    /// the caller itself, then the call ends with `code` (or goes on to `next`).
    pub message: Option<String>,
    /// The final response after the daemon's own message, or when the daemon's own menu
    /// ends without a choice and has no `default` (default 480).
    pub code: u16,
    /// A `menu` without `uri`: the IVR menu the daemon serves itself.
    pub menu: Option<MenuSpec>,
    /// The daemon's own message answers the call (200 OK, then a BYE of ours when it is
    /// over) instead of playing in early media (183, then `code`).
    pub answer: bool,
    /// Where the call goes after the daemon's own message, instead of ending with `code`.
    /// After an answered message only what needs no unanswered caller: another message or
    /// menu of the daemon's own, or `hangup` (checked when the policy is loaded).
    pub next: Option<Target>,
}

impl Destination {
    /// Whether the daemon serves it itself (no media server's `uri`).
    pub fn is_local(&self) -> bool {
        self.uri.is_empty()
    }
}

/// Keys a caller can press in a menu, in the order a menu lists them.
pub const MENU_KEYS: [char; 12] = ['1', '2', '3', '4', '5', '6', '7', '8', '9', '0', '*', '#'];

/// Most seconds a menu waits for a key after its prompt.
pub const MAX_MENU_TIMEOUT: u32 = 60;

/// Most times a menu's prompt is played again.
pub const MAX_MENU_RETRIES: u32 = 9;

/// The daemon's own IVR menu (a `menu` destination without `uri`): its prompt is played to
/// the caller in early media, and the key they press (RFC 4733) sends the call on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MenuSpec {
    /// The message (a prompt's name) that says the options.
    pub prompt: String,
    /// Key → where the call goes, in [`MENU_KEYS`] order.
    pub options: Vec<(char, Target)>,
    /// Seconds to wait for a key once the prompt has been played (1 to
    /// [`MAX_MENU_TIMEOUT`]; default 5).
    pub timeout_secs: u32,
    /// How often the prompt is played again after a timeout or a key with no option
    /// (0 to [`MAX_MENU_RETRIES`]; default 2).
    pub retries: u32,
    /// The message played on a key with no option (None: none, the prompt again).
    pub invalid: Option<String>,
    /// Where the call goes when the retries are used up ([`Target::Hangup`]: it ends with
    /// the destination's `code`).
    pub default: Target,
}

/// What happens to a call for someone already in a call (with call waiting off) or busy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BusyAction {
    /// Engaged tone: 486 Busy Here.
    Engaged,
    /// Send the call on (voicemail, a message, a user, team, menu or number).
    Redirect(Target),
}

/// Whose mailbox: a person's or a team's (the daemon keeps one for each, without
/// configuration).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MailboxOwner {
    User(String),
    Team(String),
}

impl MailboxOwner {
    /// The mailbox's key in the store and the API: `user:ID` or `team:ID` (a person and a
    /// team may share an id).
    pub fn key(&self) -> String {
        self.to_string()
    }

    /// The owner a [`MailboxOwner::key`] names.
    pub fn from_key(key: &str) -> Option<MailboxOwner> {
        match key.split_once(':')? {
            ("user", id) if !id.is_empty() => Some(MailboxOwner::User(id.to_string())),
            ("team", id) if !id.is_empty() => Some(MailboxOwner::Team(id.to_string())),
            _ => None,
        }
    }

    /// The user's or team's id.
    pub fn id(&self) -> &str {
        match self {
            MailboxOwner::User(id) | MailboxOwner::Team(id) => id,
        }
    }
}

impl fmt::Display for MailboxOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MailboxOwner::User(u) => write!(f, "user:{u}"),
            MailboxOwner::Team(t) => write!(f, "team:{t}"),
        }
    }
}

/// Most digits of a mailbox PIN (and fewest: [`MIN_PIN_DIGITS`]).
pub const MAX_PIN_DIGITS: usize = 12;
/// Fewest digits of a mailbox PIN.
pub const MIN_PIN_DIGITS: usize = 4;
/// Most messages a mailbox may be allowed to hold.
pub const MAX_MAILBOX_MESSAGES: u32 = 1000;
/// Longest message a mailbox may be allowed to take, in seconds.
pub const MAX_MESSAGE_SECS: u32 = 600;
/// Most addresses a mailbox's messages are mailed to.
pub const MAX_MAILBOX_EMAILS: usize = 8;

/// A person's or team's voicemail (`[users.ID.voicemail]`, `[teams.ID.voicemail]`): every
/// person and team has a mailbox unless it is turned off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VoicemailSettings {
    /// Whether the mailbox takes messages (default true). A call sent to a mailbox that is
    /// off ends as unanswered (480).
    pub enabled: bool,
    /// The mailbox number, dialled (with the PIN) to reach the mailbox from any phone;
    /// default the extension (none for a team without one).
    pub number: Option<String>,
    /// The PIN asked for when the mailbox is reached from a phone that is not the owner's
    /// own registered device ([`MIN_PIN_DIGITS`]–[`MAX_PIN_DIGITS`] digits). None: only the
    /// owner's own devices reach it.
    pub pin: Option<String>,
    /// Where each new message is mailed, with its audio attached (default the person's
    /// `email`; empty: no mail).
    pub email: Vec<String>,
    /// Most messages the mailbox holds (None: the daemon's `[voicemail] max_messages`);
    /// when full the caller hears so and the call ends.
    pub max_messages: Option<u32>,
    /// Longest message, in seconds (None: the daemon's `[voicemail] max_message_secs`).
    pub max_message_secs: Option<u32>,
    /// Send the mailbox's counts to the owner's registered devices (a team's: its
    /// members') in NOTIFYs outside any subscription (RFC 3842's "unsolicited" NOTIFY),
    /// for phones that light their message-waiting lamp without subscribing (default
    /// false). A device that subscribes to `message-summary` is told through its
    /// subscription instead.
    pub unsolicited_mwi: bool,
}

impl Default for VoicemailSettings {
    fn default() -> Self {
        VoicemailSettings {
            enabled: true,
            number: None,
            pin: None,
            email: Vec::new(),
            max_messages: None,
            max_message_secs: None,
            unsolicited_mwi: false,
        }
    }
}

/// Ring strategies (named as in docs/policy.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RingStrategy {
    /// All at once.
    RingAll,
    /// In list order, each for its ring time.
    Hunt,
    /// Hunt that starts with whoever answered the previous call.
    MemoryHunt,
    /// Hunt that starts with the one after whoever answered the previous call.
    RoundRobin,
    /// 1, then 1+2, then 1+2+3…
    Cumulative,
    /// Hunt that skips anyone on a call.
    FirstAvailable,
    /// Hunt in a random order (seeded by the call, so plans are reproducible).
    Random,
    /// Longest since last answered call first.
    LeastRecent,
}

impl RingStrategy {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "ring_all" => RingStrategy::RingAll,
            "hunt" => RingStrategy::Hunt,
            "memory_hunt" => RingStrategy::MemoryHunt,
            "round_robin" => RingStrategy::RoundRobin,
            "cumulative" => RingStrategy::Cumulative,
            "first_available" => RingStrategy::FirstAvailable,
            "random" => RingStrategy::Random,
            "least_recent" => RingStrategy::LeastRecent,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RingStrategy::RingAll => "ring_all",
            RingStrategy::Hunt => "hunt",
            RingStrategy::MemoryHunt => "memory_hunt",
            RingStrategy::RoundRobin => "round_robin",
            RingStrategy::Cumulative => "cumulative",
            RingStrategy::FirstAvailable => "first_available",
            RingStrategy::Random => "random",
            RingStrategy::LeastRecent => "least_recent",
        }
    }

    pub const NAMES: [&'static str; 8] = [
        "ring_all",
        "hunt",
        "memory_hunt",
        "round_robin",
        "cumulative",
        "first_available",
        "random",
        "least_recent",
    ];
}

/// Which caller ID a forward target sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForwardCallerId {
    /// The original caller's.
    Remote,
    /// The forwarding user's own.
    Local,
}

/// A user's call forwarding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Forwarding {
    pub enabled: bool,
    pub targets: Vec<Target>,
    pub strategy: RingStrategy,
    /// Ring the user's own devices alone for this many seconds first (0: forward at once).
    pub ring_own_first: u32,
    /// Keep the user's own devices ringing while the forward targets ring.
    pub keep_ringing_own: bool,
    pub direct_calls_only: bool,
    pub caller_id: ForwardCallerId,
    /// Ring time per forward target (seconds).
    pub ring_time: u32,
    pub no_answer: Target,
    /// A named message played before forwarding (needs media).
    pub message: Option<String>,
    /// A forward target that answers hears who the call is from and is connected only
    /// after pressing 1; anything else, or nothing, counts as no answer from it.
    pub require_confirmation: bool,
}

/// A registered device of a user the policy can single out ("ring only my mobile").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    pub name: String,
    /// Matches a binding whose contact user or User-Agent contains this text.
    pub contact_match: String,
}

/// Which of a person's missed calls are mailed to them (`missed_call_email`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MissedCallEmail {
    /// No mail (the default).
    #[default]
    Disabled,
    /// Calls dialled to them and team calls that rang them.
    All,
    /// Only calls dialled to them (their extension, id or DID).
    Direct,
    /// Only team calls that rang them.
    Teams,
}

impl MissedCallEmail {
    /// The setting's word in the policy.
    pub fn as_str(self) -> &'static str {
        match self {
            MissedCallEmail::Disabled => "disabled",
            MissedCallEmail::All => "all",
            MissedCallEmail::Direct => "direct",
            MissedCallEmail::Teams => "teams",
        }
    }

    /// The setting named `s`, if any.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Disabled, Self::All, Self::Direct, Self::Teams]
            .into_iter()
            .find(|m| m.as_str() == s)
    }
}

/// A person.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub extension: String,
    pub display_name: String,
    /// None: the user cannot register or authenticate (reachable only by forwarding).
    pub sip: Option<SipCredentials>,
    pub devices: Vec<Device>,
    /// Seconds the user's devices ring before the no-answer destination.
    pub ring_time: u32,
    pub no_answer: Target,
    pub busy: BusyAction,
    pub call_waiting: bool,
    /// Bearer token of the presence API for this user.
    pub api_token: Option<String>,
    /// Outbound caller ID (number) by default.
    pub caller_id: Option<String>,
    /// Outbound caller ID per profile id.
    pub profile_caller_ids: BTreeMap<String, String>,
    /// Where calls go out of hours, and when Busy/Do Not Disturb.
    pub out_of_hours: Target,
    pub schedule: Option<String>,
    pub forwarding: Option<Forwarding>,
    /// Where mail to the person goes (missed-call notices).
    pub email: Option<String>,
    /// Which missed calls are mailed to [`User::email`].
    pub missed_call_email: MissedCallEmail,
    /// Their mailbox.
    pub voicemail: VoicemailSettings,
}

/// A ring group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Team {
    pub id: String,
    pub name: String,
    pub extension: Option<String>,
    pub members: Vec<String>,
    pub strategy: RingStrategy,
    /// Seconds each member rings (hunting strategies).
    pub member_ring_time: u32,
    /// Seconds the whole team rings before the no-answer destination.
    pub ring_time: u32,
    /// Skip members who are Busy / Do Not Disturb / not taking calls.
    pub skip_unavailable: bool,
    /// Skip members already in a call.
    pub skip_in_call: bool,
    pub no_answer: Target,
    pub out_of_hours: Option<Target>,
    pub schedule: Option<String>,
    /// The team's mailbox.
    pub voicemail: VoicemailSettings,
}

/// How a profile handles incoming calls.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IncomingHandling {
    RingAsNormal,
    /// Ring only the named devices.
    RingDevices(Vec<String>),
    /// Send calls to a destination.
    SendTo(Target),
    /// Follow the user's out-of-hours routing.
    OutOfHours,
    /// Refuse with a status code and reason phrase (e.g. 480 "In a meeting").
    Reject {
        code: u16,
        reason: String,
    },
}

/// A presence status as the policy names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Availability {
    Available,
    Away,
    Busy,
    DoNotDisturb,
    Custom,
    Unavailable,
    OnBreak,
    AfterCallWork,
}

impl Availability {
    pub const ALL: [Availability; 8] = [
        Availability::Available,
        Availability::Away,
        Availability::Busy,
        Availability::DoNotDisturb,
        Availability::Custom,
        Availability::Unavailable,
        Availability::OnBreak,
        Availability::AfterCallWork,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Availability::Available => "available",
            Availability::Away => "away",
            Availability::Busy => "busy",
            Availability::DoNotDisturb => "dnd",
            Availability::Custom => "custom",
            Availability::Unavailable => "unavailable",
            Availability::OnBreak => "on_break",
            Availability::AfterCallWork => "after_call_work",
        }
    }

    /// Every name a status is known by: its own ([`Availability::as_str`]) and the common
    /// synonyms. The presence crate reads the same names (a test of the daemon holds the
    /// two lists together).
    pub const NAMES: [(&'static str, Availability); 14] = [
        ("available", Availability::Available),
        ("active", Availability::Available),
        ("away", Availability::Away),
        ("busy", Availability::Busy),
        ("dnd", Availability::DoNotDisturb),
        ("do_not_disturb", Availability::DoNotDisturb),
        ("custom", Availability::Custom),
        ("unavailable", Availability::Unavailable),
        ("offline", Availability::Unavailable),
        ("on_break", Availability::OnBreak),
        ("break", Availability::OnBreak),
        ("after_call_work", Availability::AfterCallWork),
        ("acw", Availability::AfterCallWork),
        ("wrap_up", Availability::AfterCallWork),
    ];

    /// Reads a status name, as the presence API does: case, surrounding spaces, and `-` or
    /// spaces for `_` do not matter (`Do Not Disturb`, `after-call-work`, `acw`).
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim().to_ascii_lowercase().replace(['-', ' '], "_");
        Availability::NAMES
            .iter()
            .find(|(n, _)| *n == s)
            .map(|(_, a)| *a)
    }
}

/// A profile (Available, Lunch, Meeting…).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Profile {
    pub id: String,
    pub number: u32,
    pub name: String,
    /// "Available" profiles show the call status to colleagues; others hide it.
    pub shows_call_status: bool,
    /// The availability the profile sets.
    pub availability: Availability,
    pub message: Option<String>,
    /// Outbound caller ID while active (overrides the user's default).
    pub caller_id: Option<String>,
    pub incoming: IncomingHandling,
    /// Standard length in seconds.
    pub standard_length: Option<u32>,
}

/// The routing effect of a presence status on a direct call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusEffect {
    /// Ring as usual.
    Ring,
    /// Follow the user's out-of-hours routing.
    OutOfHours,
    /// Treat as unavailable (the no-answer destination, without ringing).
    Unavailable,
}

/// What each status does to calls.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusRule {
    pub direct: StatusEffect,
    /// Whether team calls skip a member in this status.
    pub skip_in_teams: bool,
}

/// Office hours in a time zone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    pub id: String,
    pub timezone: String,
    /// Per weekday (0 = Monday) the open intervals in minutes since midnight.
    pub hours: [Vec<(u16, u16)>; 7],
    /// Closed dates, `YYYY-MM-DD`.
    pub holidays: Vec<String>,
}

/// An IP network (address and prefix length).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Network {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Network {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let bits = u32::from(self.prefix.min(32));
                let mask = if bits == 0 {
                    0
                } else {
                    u32::MAX << (32 - bits)
                };
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let bits = u32::from(self.prefix.min(128));
                let mask = if bits == 0 {
                    0
                } else {
                    u128::MAX << (128 - bits)
                };
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// A public number's routing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Did {
    pub target: Target,
    /// Office hours of this number; outside them calls go to `out_of_hours`.
    pub schedule: Option<String>,
    pub out_of_hours: Option<Target>,
}

/// Our account at a carrier (`[trunks.ID.account]`), the outbound direction: what this
/// server answers the carrier's digest challenges with when a call leaves through the
/// trunk. The inbound direction — how the carrier proves itself to us — is
/// [`Trunk::credentials`].
#[derive(Clone, PartialEq, Eq)]
pub struct TrunkAccount {
    /// The account's user name at the carrier.
    pub username: String,
    pub password: String,
    /// The digest user name, where the carrier's differs from `username`.
    pub auth_username: Option<String>,
    /// Only challenges for this realm are answered; None: any realm the carrier names.
    pub realm: Option<String>,
    /// The account registers with the carrier (`register = true`): where, for how long,
    /// and the Contact it registers.
    pub registration: Option<TrunkRegistration>,
}

/// A trunk's registration with its carrier (`register = true` in `[trunks.ID.account]`):
/// REGISTER `registrar` for `sip:USERNAME@domain`, binding `sip:contact_user@…` (our
/// address) for `expires` seconds. Calls the carrier sends to that contact are the trunk's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrunkRegistration {
    /// The registrar's SIP URI, without a user part (`sip:host[:port][;transport=…]`):
    /// the REGISTER's Request-URI and where it is sent.
    pub registrar: String,
    /// The registrar's host (no port): the domain of the address of record.
    pub domain: String,
    /// The expiry asked for, in seconds.
    pub expires: u32,
    /// The user part of the Contact registered: unique across trunks, no user's name.
    pub contact_user: String,
}

/// Bounds of `expires` (seconds) of a trunk's registration.
pub const REGISTRATION_EXPIRES: std::ops::RangeInclusive<i64> = 60..=86_400;

impl TrunkAccount {
    /// The user name digest answers carry.
    pub fn digest_username(&self) -> &str {
        self.auth_username.as_deref().unwrap_or(&self.username)
    }

    /// Whether a challenge for `realm` is answered with this account.
    pub fn answers_realm(&self, realm: &str) -> bool {
        self.realm.as_deref().is_none_or(|r| r == realm)
    }
}

/// The password stays out of debug output (logs, `switchboard explain`).
impl std::fmt::Debug for TrunkAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrunkAccount")
            .field("username", &self.username)
            .field("password", &"…")
            .field("auth_username", &self.auth_username)
            .field("realm", &self.realm)
            .field("registration", &self.registration)
            .finish()
    }
}

/// Most distinct host names among all trunks' `sources`: each is looked up at start, after
/// every reload and whenever its answer runs out, so their number bounds the lookups.
pub const MAX_SOURCE_NAMES: usize = 64;

/// A carrier connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trunk {
    pub id: String,
    /// The networks (or single addresses) of `sources`: requests from them are the trunk's.
    pub sources: Vec<Network>,
    /// The host names of `sources` (lower-case, no trailing dot), in the policy's order:
    /// requests from the addresses they resolve to (A and AAAA) are the trunk's too. The
    /// policy only names them; the daemon looks them up and keeps them fresh.
    pub source_names: Vec<String>,
    /// Inbound: the digest credentials the carrier authenticates to us with
    /// (`[trunks.ID.sip]`), when it is not known by its source address.
    pub credentials: Option<SipCredentials>,
    /// Outbound: our account at the carrier (`[trunks.ID.account]`), answering its
    /// challenges to calls sent to `uri`.
    pub account: Option<TrunkAccount>,
    /// SIP URI outbound calls are sent to.
    pub uri: Option<String>,
    /// DID → where its calls go.
    pub dids: BTreeMap<String, Did>,
    /// Outbound number patterns (`+44*`, `0*`, exact numbers).
    pub outbound: Vec<String>,
    /// How its carrier writes numbers (DIDs and callers arriving, numbers leaving).
    pub numbers: crate::NumberPlan,
    /// The caller ID of calls leaving through it from someone without one of their own
    /// (E.164).
    pub caller_id: Option<String>,
}

impl Trunk {
    /// Whether a dialled number may leave through this trunk: a pattern matches it as
    /// dialled or in the inside form (`01632…` and `+441632…` alike).
    pub fn routes(&self, number: &str) -> bool {
        let inside = self.numbers.to_e164(number);
        self.outbound.iter().any(|p| {
            let matches = |n: &str| match p.strip_suffix('*') {
                Some(prefix) => n.starts_with(prefix),
                None => n == p,
            };
            matches(number) || matches(&inside)
        })
    }
}

/// The whole validated policy.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    pub(crate) users: BTreeMap<String, User>,
    pub(crate) teams: BTreeMap<String, Team>,
    pub(crate) destinations: BTreeMap<String, Destination>,
    pub(crate) profiles: BTreeMap<String, Profile>,
    pub(crate) schedules: BTreeMap<String, Schedule>,
    pub(crate) trunks: BTreeMap<String, Trunk>,
    pub(crate) statuses: BTreeMap<Availability, StatusRule>,
    pub(crate) by_extension: HashMap<String, ExtensionOwner>,
    pub(crate) by_username: HashMap<String, String>,
    /// Mailbox numbers and whose mailbox each is.
    pub(crate) by_mailbox_number: HashMap<String, MailboxOwner>,
    /// Profiles whose refused callers hear no announcement (`announce = false`).
    pub(crate) silent_profiles: std::collections::BTreeSet<String>,
    /// What `check` warns of: valid, and perhaps not what was meant.
    pub(crate) warnings: Vec<crate::Diagnostic>,
}

/// Who an extension belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExtensionOwner {
    User(String),
    Team(String),
}

impl Policy {
    /// The warnings about this policy (valid, and perhaps not what was meant), in the
    /// order of the files.
    pub fn warnings(&self) -> &[crate::Diagnostic] {
        &self.warnings
    }

    pub fn user(&self, id: &str) -> Option<&User> {
        self.users.get(id)
    }

    pub fn users(&self) -> impl Iterator<Item = &User> {
        self.users.values()
    }

    pub fn team(&self, id: &str) -> Option<&Team> {
        self.teams.get(id)
    }

    pub fn teams(&self) -> impl Iterator<Item = &Team> {
        self.teams.values()
    }

    pub fn destination(&self, id: &str) -> Option<&Destination> {
        self.destinations.get(id)
    }

    pub fn profile(&self, id: &str) -> Option<&Profile> {
        self.profiles.get(id)
    }

    /// Whether a caller refused by profile `id` (`incoming = "reject"`) first hears who is
    /// refusing and until when (`announce`, default on).
    pub fn announces(&self, id: &str) -> bool {
        !self.silent_profiles.contains(id)
    }

    /// A profile by its number (as dialled with a feature code).
    pub fn profile_by_number(&self, number: u32) -> Option<&Profile> {
        self.profiles.values().find(|p| p.number == number)
    }

    /// Profiles in number order.
    pub fn profiles(&self) -> Vec<&Profile> {
        let mut v: Vec<&Profile> = self.profiles.values().collect();
        v.sort_by_key(|p| p.number);
        v
    }

    /// The profile that returns when another ends (number 1, Available).
    pub fn default_profile(&self) -> &Profile {
        self.profile_by_number(1)
            .or_else(|| self.profiles.values().next())
            .expect("the policy always has the default profiles")
    }

    pub fn schedule(&self, id: &str) -> Option<&Schedule> {
        self.schedules.get(id)
    }

    pub fn trunk(&self, id: &str) -> Option<&Trunk> {
        self.trunks.get(id)
    }

    pub fn trunks(&self) -> impl Iterator<Item = &Trunk> {
        self.trunks.values()
    }

    /// The trunk whose source networks contain `ip` (the first, in id order). Host names
    /// among the sources are not looked up here: the daemon matches the addresses they
    /// resolve to.
    pub fn trunk_for_source(&self, ip: IpAddr) -> Option<&Trunk> {
        self.trunks
            .values()
            .find(|t| t.sources.iter().any(|n| n.contains(ip)))
    }

    /// The trunk and routing of a DID.
    pub fn did(&self, number: &str) -> Option<(&Trunk, &Did)> {
        self.trunks.values().find_map(|t| {
            t.dids
                .get(&t.numbers.to_e164(number))
                .map(|target| (t, target))
        })
    }

    /// Why a destination does not resolve in this policy (an unknown user, team or
    /// destination, or a destination of the wrong kind), if it does not.
    pub fn target_problem(&self, t: &Target) -> Option<String> {
        match t {
            Target::User(u) => (!self.users.contains_key(u)).then(|| format!("unknown user {u:?}")),
            Target::Team(t) => (!self.teams.contains_key(t)).then(|| format!("unknown team {t:?}")),
            Target::Destination(DestinationKind::Voicemail, d)
                if !self.destinations.contains_key(d) =>
            {
                let owners = [
                    self.users
                        .contains_key(d)
                        .then(|| MailboxOwner::User(d.clone())),
                    self.teams
                        .contains_key(d)
                        .then(|| MailboxOwner::Team(d.clone())),
                ];
                match owners {
                    [Some(_), Some(_)] => Some(format!(
                        "voicemail:{d} could be user {d}'s mailbox or team {d}'s: name a \
                         [destinations] entry for one of them"
                    )),
                    [Some(o), None] | [None, Some(o)] => self.mailbox_problem(&o),
                    [None, None] => Some(format!(
                        "unknown destination {d:?} (nor a user or team whose mailbox it could be)"
                    )),
                }
            }
            Target::Destination(kind, d) => match self.destinations.get(d) {
                None => Some(format!("unknown destination {d:?}")),
                Some(dest) if dest.kind != *kind => Some(format!(
                    "destination {d:?} is a {}, not a {}",
                    dest.kind.as_str(),
                    kind.as_str()
                )),
                Some(_) => None,
            },
            Target::External(_) | Target::Voicemail | Target::Hangup => None,
        }
    }

    /// The settings of `owner`'s mailbox, if they exist.
    pub fn mailbox(&self, owner: &MailboxOwner) -> Option<&VoicemailSettings> {
        match owner {
            MailboxOwner::User(u) => self.users.get(u).map(|u| &u.voicemail),
            MailboxOwner::Team(t) => self.teams.get(t).map(|t| &t.voicemail),
        }
    }

    /// Why calls cannot be sent to `owner`'s mailbox, if they cannot.
    pub fn mailbox_problem(&self, owner: &MailboxOwner) -> Option<String> {
        match self.mailbox(owner) {
            None => Some(format!("unknown {}", owner.to_string().replace(':', " "))),
            Some(v) if !v.enabled => Some(format!(
                "{}'s voicemail is turned off (voicemail.enabled = false)",
                owner.id()
            )),
            Some(_) => None,
        }
    }

    /// Whose mailbox has number `number`.
    pub fn mailbox_by_number(&self, number: &str) -> Option<&MailboxOwner> {
        self.by_mailbox_number.get(number)
    }

    pub fn status_rule(&self, a: Availability) -> &StatusRule {
        static RING: StatusRule = StatusRule {
            direct: StatusEffect::Ring,
            skip_in_teams: false,
        };
        self.statuses.get(&a).unwrap_or(&RING)
    }

    /// Whoever owns an extension.
    pub fn extension(&self, ext: &str) -> Option<&ExtensionOwner> {
        self.by_extension.get(ext)
    }

    pub fn user_by_extension(&self, ext: &str) -> Option<&User> {
        match self.by_extension.get(ext)? {
            ExtensionOwner::User(u) => self.users.get(u),
            ExtensionOwner::Team(_) => None,
        }
    }

    /// The id of the user with this SIP user name.
    pub fn sip_user(&self, username: &str) -> Option<&str> {
        self.by_username.get(username).map(String::as_str)
    }

    /// The credentials of the user with this SIP user name.
    pub fn sip_credentials(&self, username: &str) -> Option<&SipCredentials> {
        let id = self.by_username.get(username)?;
        self.users.get(id)?.sip.as_ref()
    }
}
