//! Reading policy TOML into a validated [`Policy`]: every error found, each with its file,
//! line, column and key.

use crate::diagnostics::{key_at, Diagnostic, Diagnostics, Severity, SourceRef};
use crate::model::*;
use crate::profile::{build_profile, number_problem, ProfileDraft};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;
use std::path::Path;
use toml::Spanned;

/// One policy file.
#[derive(Clone, Debug)]
pub struct Source {
    /// The path shown in errors.
    pub name: String,
    pub text: String,
}

type Map<T> = BTreeMap<Spanned<String>, T>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDoc {
    #[serde(default)]
    users: Map<RawUser>,
    #[serde(default)]
    teams: Map<RawTeam>,
    #[serde(default)]
    destinations: Map<RawDestination>,
    #[serde(default)]
    profiles: Map<RawProfile>,
    #[serde(default)]
    schedules: Map<RawSchedule>,
    #[serde(default)]
    trunks: Map<RawTrunk>,
    #[serde(default)]
    statuses: Map<RawStatus>,
}

type S = Spanned<String>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    extension: S,
    display_name: Option<String>,
    sip: Option<RawSip>,
    #[serde(default)]
    devices: Vec<RawDevice>,
    ring_time: Option<Spanned<i64>>,
    no_answer: Option<S>,
    busy: Option<S>,
    call_waiting: Option<bool>,
    caller_id: Option<String>,
    /// Bearer token for the presence API (this user's own presence only).
    api_token: Option<S>,
    #[serde(default)]
    profile_caller_ids: Map<String>,
    out_of_hours: Option<S>,
    schedule: Option<S>,
    forwarding: Option<RawForwarding>,
    email: Option<S>,
    missed_call_email: Option<S>,
    voicemail: Option<RawVoicemail>,
}

/// `[users.ID.voicemail]`, `[teams.ID.voicemail]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVoicemail {
    enabled: Option<bool>,
    number: Option<S>,
    pin: Option<S>,
    email: Option<Spanned<Vec<S>>>,
    max_messages: Option<Spanned<i64>>,
    max_message_secs: Option<Spanned<i64>>,
    unsolicited_mwi: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSip {
    username: Option<S>,
    password: Option<S>,
    ha1_md5: Option<S>,
    ha1_sha256: Option<S>,
    algorithms: Option<Spanned<Vec<S>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDevice {
    name: S,
    contact_match: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawForwarding {
    enabled: Option<bool>,
    targets: Spanned<Vec<S>>,
    strategy: Option<S>,
    ring_own_first: Option<Spanned<i64>>,
    keep_ringing_own: Option<bool>,
    direct_calls_only: Option<bool>,
    caller_id: Option<S>,
    ring_time: Option<Spanned<i64>>,
    no_answer: Option<S>,
    message: Option<S>,
    require_confirmation: Option<Spanned<bool>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTeam {
    name: Option<String>,
    extension: Option<S>,
    members: Spanned<Vec<S>>,
    strategy: Option<S>,
    member_ring_time: Option<Spanned<i64>>,
    ring_time: Option<Spanned<i64>>,
    skip_unavailable: Option<bool>,
    skip_in_call: Option<bool>,
    no_answer: Option<S>,
    out_of_hours: Option<S>,
    schedule: Option<S>,
    voicemail: Option<RawVoicemail>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDestination {
    kind: S,
    uri: Option<S>,
    /// An announcement the daemon plays itself (instead of `uri`).
    message: Option<S>,
    /// The final response after that message (or after a menu with no choice).
    code: Option<Spanned<i64>>,
    /// A menu the daemon serves itself (instead of `uri`): the message saying its options.
    prompt: Option<S>,
    /// Key → target.
    options: Option<Spanned<Map<S>>>,
    timeout_secs: Option<Spanned<i64>>,
    retries: Option<Spanned<i64>>,
    invalid: Option<S>,
    default: Option<S>,
    /// That message answers the call (200) instead of playing as early media (183).
    answer: Option<Spanned<bool>>,
    /// Where the call goes after that message (instead of ending with `code`).
    next: Option<S>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    number: Option<Spanned<i64>>,
    name: Option<String>,
    shows_call_status: Option<bool>,
    availability: Option<S>,
    message: Option<String>,
    caller_id: Option<String>,
    incoming: Option<S>,
    devices: Option<Vec<S>>,
    reject_code: Option<Spanned<i64>>,
    reject_reason: Option<String>,
    standard_length: Option<S>,
    /// Whether a refused caller first hears who refuses and until when (default true).
    announce: Option<Spanned<bool>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSchedule {
    timezone: S,
    hours: Spanned<Vec<S>>,
    #[serde(default)]
    holidays: Vec<S>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrunk {
    #[serde(default)]
    sources: Vec<S>,
    sip: Option<RawSip>,
    account: Option<Spanned<RawAccount>>,
    uri: Option<S>,
    #[serde(default)]
    dids: Map<S>,
    /// DIDs with office hours of their own.
    #[serde(default)]
    numbers: Vec<RawNumber>,
    #[serde(default)]
    outbound: Vec<S>,
    /// The carrier's country calling code, its national and international prefixes, and
    /// how it wants numbers written.
    country_code: Option<S>,
    national_prefix: Option<S>,
    international_prefix: Option<S>,
    number_format: Option<S>,
    caller_id: Option<S>,
}

/// `[trunks.ID.account]`: our account at the carrier (outbound).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccount {
    username: Option<S>,
    password: Option<S>,
    auth_username: Option<S>,
    realm: Option<S>,
    /// Register with the carrier.
    register: Option<Spanned<bool>>,
    /// Where (default: the trunk's uri's host).
    registrar: Option<S>,
    /// For how long, in seconds.
    expires: Option<Spanned<i64>>,
    /// The user part of the Contact registered (default: the trunk's id).
    contact_user: Option<S>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNumber {
    number: S,
    to: S,
    schedule: Option<S>,
    out_of_hours: Option<S>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStatus {
    direct: Option<S>,
    skip_in_teams: Option<bool>,
}

/// What the daemon's configuration adds to the policy's own checks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Context {
    /// The digest algorithms the daemon's challenges offer (None: any may be). Credentials
    /// whose `algorithms` share none of them are an error: they could never authenticate.
    pub offered_algorithms: Option<Vec<DigestAlgorithm>>,
    /// The prompts the daemon can play, by name (`category/name`); None: messages are not
    /// checked. A message the policy names (a forwarding's `message`) must be one of them,
    /// as `name` itself, `messages/<name>` or `phrases/<name>`.
    pub prompts: Option<std::collections::BTreeSet<String>>,
}

impl Context {
    /// Whether message `name` has a prompt (see [`Context::prompts`]).
    pub fn has_message(&self, name: &str) -> bool {
        self.prompts.as_ref().is_none_or(|p| {
            p.contains(name)
                || p.contains(&format!("messages/{name}"))
                || p.contains(&format!("phrases/{name}"))
        })
    }
}

/// Upper bound of any ring time, in seconds.
pub const MAX_RING_TIME: i64 = 600;

impl Policy {
    /// Loads a policy file, or every `*.toml` file of a directory (in name order).
    pub fn load_path(path: &Path) -> Result<Policy, Diagnostics> {
        Policy::load_path_in(path, &Context::default())
    }

    /// [`Policy::load_path`], also checked against what the daemon's configuration says.
    pub fn load_path_in(path: &Path, context: &Context) -> Result<Policy, Diagnostics> {
        let sources = read_sources(path)?;
        Policy::from_sources_in(&sources, context)
    }

    /// Builds and validates a policy from one or more TOML texts.
    pub fn from_sources(sources: &[Source]) -> Result<Policy, Diagnostics> {
        Policy::from_sources_in(sources, &Context::default())
    }

    /// [`Policy::from_sources`], also checked against what the daemon's configuration says.
    pub fn from_sources_in(sources: &[Source], context: &Context) -> Result<Policy, Diagnostics> {
        let mut errors = Vec::new();
        let mut docs = Vec::new();
        for s in sources {
            match toml::from_str::<RawDoc>(&s.text) {
                Ok(d) => docs.push((s, d)),
                Err(e) => {
                    let offset = e.span().map(|r| r.start).unwrap_or(0);
                    let src = SourceRef {
                        name: &s.name,
                        text: &s.text,
                    };
                    errors.push(src.at(
                        offset..offset,
                        key_at(&s.text, offset),
                        e.message().trim().to_string(),
                    ));
                }
            }
        }
        let mut b = Builder {
            errors,
            policy: Policy::default(),
            refs: Vec::new(),
            seen_ext: HashMap::new(),
            seen_contact_users: HashMap::new(),
            source_names: HashSet::new(),
            offered: context.offered_algorithms.clone(),
            context: context.clone(),
        };
        for (s, d) in docs {
            b.doc(s, d);
        }
        b.defaults();
        b.check_refs(sources);
        b.check_loops();
        // Warnings in reading order: file by file, line by line.
        let file_index = |name: &str| sources.iter().position(|s| s.name == name);
        b.policy
            .warnings
            .sort_by_key(|d| (file_index(&d.file), d.line, d.column));
        if b.errors.is_empty() {
            Ok(b.policy)
        } else {
            Err(Diagnostics(b.errors))
        }
    }
}

/// A reference to check once everything is read. Its position is kept as a byte offset
/// and turned into a line and column only if it is reported.
struct Ref {
    file: String,
    offset: usize,
    key: String,
    what: RefKind,
}

enum RefKind {
    Target(Target),
    Schedule(String),
    Profile(String),
    Member(String),
    /// A DID, as written and in the inside form: it must not be an extension too.
    Did(String, String),
    /// A registering trunk's contact user: no user is known by that name.
    ContactUser(String),
    /// The `next` of an answered announcement: only what needs no unanswered caller.
    AnsweredNext(Target),
}

struct Builder {
    errors: Vec<Diagnostic>,
    policy: Policy,
    refs: Vec<Ref>,
    seen_ext: HashMap<String, String>,
    /// Contact users of registering trunks → the trunk.
    seen_contact_users: HashMap<String, String>,
    /// Host names among the trunks' sources so far (at most [`MAX_SOURCE_NAMES`]).
    source_names: HashSet<String>,
    offered: Option<Vec<DigestAlgorithm>>,
    context: Context,
}

fn secs(v: &Option<Spanned<i64>>, default: u32) -> Result<u32, (Range<usize>, String)> {
    match v {
        None => Ok(default),
        Some(s) => {
            let n = *s.get_ref();
            if (0..=MAX_RING_TIME).contains(&n) {
                Ok(n as u32)
            } else {
                Err((
                    s.span(),
                    format!("{n} seconds is out of range: use 0 to {MAX_RING_TIME}"),
                ))
            }
        }
    }
}

/// Reads `45m`, `1h30m`, `2d`, `90s` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Option<u32> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if let Ok(n) = s.parse::<u32>() {
        return Some(n);
    }
    let mut total: u64 = 0;
    let mut num = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
        } else {
            let n: u64 = num.parse().ok()?;
            num.clear();
            total += n * match c {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                'd' => 86400,
                'w' => 7 * 86400,
                _ => return None,
            };
        }
    }
    if !num.is_empty() || total == 0 || total > 366 * 86400 {
        return None;
    }
    Some(total as u32)
}

/// Why `t` cannot follow an answered message of the daemon's own, if it cannot: ringing
/// people, a number or a media server after the call is answered needs the two calls
/// bridged, which the daemon does not do; so does a menu of its own (played before the
/// answer, its keys ring people). Another message of its own, or hanging up, need nothing
/// of the sort. (An unknown target is reported as such elsewhere.)
fn answered_next_problem(policy: &Policy, t: &Target) -> Option<String> {
    let refused = match t {
        Target::Hangup => return None,
        Target::Destination(DestinationKind::Announcement, id) => match policy.destinations.get(id)
        {
            None => return None,
            Some(d) if d.is_local() => return None,
            Some(_) => format!("announcement:{id} is on a media server (it has a uri)"),
        },
        Target::Destination(DestinationKind::Menu, id) => {
            match policy.destinations.get(id) {
                None => return None,
                Some(d) if d.is_local() => {
                    format!("menu:{id} (the daemon's menus play before the answer: their keys ring people)")
                }
                Some(_) => format!("menu:{id} is on a media server (it has a uri)"),
            }
        }
        other => other.to_string(),
    };
    Some(format!(
        "after an answered message the call can only go to another message of the daemon's \
         own, or hangup: {refused} would need the answered call bridged to it"
    ))
}

/// Reads a target string: `user:ID`, `team:ID`, `voicemail` (the mailbox of whoever's
/// setting it is), `voicemail:ID`, `menu:ID`, `queue:ID`, `announcement:ID`,
/// `number:+44…`, `hangup`.
pub fn parse_target(s: &str) -> Result<Target, String> {
    let s = s.trim();
    if s == "hangup" {
        return Ok(Target::Hangup);
    }
    if s == "voicemail" {
        return Ok(Target::Voicemail);
    }
    let Some((kind, id)) = s.split_once(':') else {
        return Err(format!(
            "{s:?} is not a destination: use user:ID, team:ID, voicemail, voicemail:ID, menu:ID, \
             queue:ID, announcement:ID, number:NUMBER or hangup"
        ));
    };
    let id = id.trim();
    if id.is_empty() {
        return Err(format!("{s:?} names no {kind}"));
    }
    match kind {
        "user" => Ok(Target::User(id.into())),
        "team" => Ok(Target::Team(id.into())),
        "number" => {
            let ok = id.strip_prefix('+').unwrap_or(id);
            if ok.is_empty() || !ok.bytes().all(|b| b.is_ascii_digit() || b == b'*' || b == b'#') {
                return Err(format!("{id:?} is not a phone number (digits, optionally a leading +)"));
            }
            Ok(Target::External(id.into()))
        }
        k => match DestinationKind::parse(k) {
            Some(d) => Ok(Target::Destination(d, id.into())),
            None => Err(format!(
                "unknown destination kind {k:?}: use user, team, voicemail, menu, queue, announcement or number"
            )),
        },
    }
}

fn parse_hours(s: &str) -> Option<(Vec<usize>, u16, u16)> {
    // "mon-fri 09:00-17:00" or "sat 10:00-12:00"
    const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    let (days, times) = s.trim().split_once(' ')?;
    let day = |d: &str| {
        DAYS.iter()
            .position(|x| *x == d.trim().to_ascii_lowercase())
    };
    let days: Vec<usize> = match days.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (day(a)?, day(b)?);
            if a > b {
                return None;
            }
            (a..=b).collect()
        }
        None => vec![day(days)?],
    };
    let (from, to) = times.trim().split_once('-')?;
    let hm = |t: &str| -> Option<u16> {
        let (h, m) = t.trim().split_once(':')?;
        let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
        (h <= 24 && m < 60 && h * 60 + m <= 24 * 60).then_some(h * 60 + m)
    };
    let (from, to) = (hm(from)?, hm(to)?);
    (from < to).then_some((days, from, to))
}

/// The files of a policy path: the file itself, or a directory's `*.toml` files in name
/// order.
pub fn source_files(path: &Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path)? {
        let p = entry?.path();
        if p.extension().is_some_and(|x| x == "toml") {
            files.push(p);
        }
    }
    files.sort();
    Ok(files)
}

/// Reads every file of a policy path once (an unreadable one is an error naming it).
pub fn read_sources(path: &Path) -> Result<Vec<Source>, Diagnostics> {
    let io = |p: &Path, e: std::io::Error| {
        Diagnostics(vec![Diagnostic {
            severity: Severity::Error,
            file: p.display().to_string(),
            line: 0,
            column: 0,
            key: "-".into(),
            message: format!("cannot read the policy: {e}"),
        }])
    };
    source_files(path)
        .map_err(|e| io(path, e))?
        .into_iter()
        .map(|f| match std::fs::read_to_string(&f) {
            Ok(text) => Ok(Source {
                name: f.display().to_string(),
                text,
            }),
            Err(e) => Err(io(&f, e)),
        })
        .collect()
}

/// A network as written in a policy or config: `192.0.2.0/24`, `2001:db8::/32`, or one
/// address.
pub fn parse_network(s: &str) -> Option<Network> {
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p.parse::<u8>().ok()?)),
        None => (s, None),
    };
    let addr: std::net::IpAddr = addr.trim().parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = prefix.unwrap_or(max);
    (prefix <= max).then_some(Network { addr, prefix })
}

/// A host name as a trunk's `sources` may list it (a carrier's SBC, `sbc.carrier.example`),
/// in the form it is looked up by: lower-case, without a trailing dot. None for what DNS
/// could not hold (labels of letters, digits, `-` and `_`, 1 to 63 characters each, 253 in
/// all) and for what reads as a mistyped address (a last label of digits only, as in
/// `192.0.2.300`).
pub fn parse_host_name(s: &str) -> Option<String> {
    let name = s.strip_suffix('.').unwrap_or(s);
    let labels_ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    let last = name.rsplit('.').next().unwrap_or("");
    let numeric = last.bytes().all(|b| b.is_ascii_digit());
    (labels_ok && !numeric).then(|| name.to_ascii_lowercase())
}

/// The registrar URI of a SIP URI: its scheme, host and port, and its `transport`
/// parameter (`sip:carrier@192.0.2.1:5080;transport=tcp` → `sip:192.0.2.1:5080;transport=tcp`);
/// Err when it is no SIP URI or has no host.
fn registrar_uri(uri: &str) -> Result<String, ()> {
    let (scheme, rest) = uri.split_once(':').ok_or(())?;
    if !scheme.eq_ignore_ascii_case("sip") && !scheme.eq_ignore_ascii_case("sips") {
        return Err(());
    }
    let end = rest.find(['?', '>']).unwrap_or(rest.len());
    let rest = &rest[..end];
    let (main, params) = rest.split_once(';').unwrap_or((rest, ""));
    let host_port = main.rsplit_once('@').map_or(main, |(_, h)| h);
    let host = uri_host(&format!("{scheme}:{host_port}")).ok_or(())?;
    if host.is_empty()
        || host_port
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(());
    }
    let mut out = format!("{scheme}:{host_port}");
    for p in params.split(';') {
        let (name, value) = p.split_once('=').unwrap_or((p, ""));
        if name.trim().eq_ignore_ascii_case("transport") {
            let v = value.trim();
            if !["udp", "tcp"].iter().any(|t| v.eq_ignore_ascii_case(t)) {
                return Err(());
            }
            out.push_str(";transport=");
            out.push_str(v);
        }
    }
    Ok(out)
}

/// The host of a `sip:host[:port]…` URI without the port (an IPv6 host keeps its
/// brackets).
fn uri_host(uri: &str) -> Option<String> {
    let (_, rest) = uri.split_once(':')?;
    let rest = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let end = rest.find([';', '?', '>']).unwrap_or(rest.len());
    let host_port = &rest[..end];
    let host = if host_port.starts_with('[') {
        &host_port[..=host_port.find(']')?]
    } else {
        host_port.split(':').next().unwrap_or("")
    };
    (!host.is_empty()).then(|| host.to_string())
}

/// Whether a name can be the user part of a contact as written, unescaped, in every URI:
/// letters, digits, `-`, `_`, `.`, `~`, `+`, at most 64 of them.
fn is_contact_user(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.~+".contains(&b))
}

impl Builder {
    fn err(
        &mut self,
        src: &Source,
        span: Range<usize>,
        key: impl Into<String>,
        msg: impl Into<String>,
    ) {
        let r = SourceRef {
            name: &src.name,
            text: &src.text,
        };
        self.errors.push(r.at(span, key, msg));
    }

    /// A policy that is valid and may not do what was meant: kept with it, said by `check`
    /// and in the log, never refused.
    fn warn(&mut self, src: &Source, span: Range<usize>, key: impl Into<String>, msg: String) {
        let r = SourceRef {
            name: &src.name,
            text: &src.text,
        };
        let mut d = r.at(span, key, msg);
        d.severity = Severity::Warning;
        self.policy.warnings.push(d);
    }

    fn reference(&mut self, src: &Source, span: Range<usize>, key: String, what: RefKind) {
        self.refs.push(Ref {
            file: src.name.clone(),
            offset: span.start,
            key,
            what,
        });
    }

    fn target(&mut self, src: &Source, v: &S, key: String) -> Option<Target> {
        match parse_target(v.get_ref()) {
            Ok(t) => {
                self.reference(src, v.span(), key, RefKind::Target(t.clone()));
                Some(t)
            }
            Err(m) => {
                self.err(src, v.span(), key, m);
                None
            }
        }
    }

    /// A target where no person or team is being routed (a DID, a menu's key, a message's
    /// `next`): `voicemail` alone cannot say whose mailbox.
    fn ownerless_target(&mut self, src: &Source, v: &S, key: String) -> Option<Target> {
        let t = self.target(src, v, key.clone())?;
        if t == Target::Voicemail {
            self.err(
                src,
                v.span(),
                key,
                "\"voicemail\" alone is the mailbox of the person or team whose setting it is; \
                 here nobody's: name the mailbox, voicemail:ID (a user or team)",
            );
            return None;
        }
        Some(t)
    }

    /// `[users.ID.voicemail]` or `[teams.ID.voicemail]` (`key` is where it is written,
    /// `at` the owner's id), over `defaults` (the owner's extension and mail address).
    fn voicemail(
        &mut self,
        src: &Source,
        raw: Option<&RawVoicemail>,
        key: &str,
        owner: MailboxOwner,
        at: Range<usize>,
        defaults: VoicemailSettings,
    ) -> VoicemailSettings {
        let mut v = defaults;
        if let Some(raw) = raw {
            v.enabled = raw.enabled.unwrap_or(true);
            v.unsolicited_mwi = raw.unsolicited_mwi.unwrap_or(false);
            if let Some(n) = &raw.number {
                let n_str = n.get_ref().trim();
                if n_str.is_empty()
                    || n_str.len() > 32
                    || !n_str.bytes().all(|b| b.is_ascii_digit())
                {
                    self.err(
                        src,
                        n.span(),
                        format!("{key}.number"),
                        format!("mailbox number {n_str:?} must be digits (at most 32)"),
                    );
                } else {
                    v.number = Some(n_str.to_string());
                }
            }
            if let Some(p) = &raw.pin {
                let pin = p.get_ref().trim();
                let digits = pin.bytes().all(|b| b.is_ascii_digit());
                if !digits || !(MIN_PIN_DIGITS..=MAX_PIN_DIGITS).contains(&pin.len()) {
                    self.err(
                        src,
                        p.span(),
                        format!("{key}.pin"),
                        format!(
                            "a mailbox PIN is {MIN_PIN_DIGITS} to {MAX_PIN_DIGITS} digits, \
                             a phone's keys"
                        ),
                    );
                } else {
                    v.pin = Some(pin.to_string());
                }
            }
            if let Some(list) = &raw.email {
                v.email.clear();
                if list.get_ref().len() > MAX_MAILBOX_EMAILS {
                    self.err(
                        src,
                        list.span(),
                        format!("{key}.email"),
                        format!("at most {MAX_MAILBOX_EMAILS} addresses"),
                    );
                }
                for (i, e) in list.get_ref().iter().take(MAX_MAILBOX_EMAILS).enumerate() {
                    if is_email(e.get_ref()) {
                        v.email.push(e.get_ref().clone());
                    } else {
                        self.err(
                            src,
                            e.span(),
                            format!("{key}.email[{i}]"),
                            format!("{:?} is not a mail address (name@domain)", e.get_ref()),
                        );
                    }
                }
            }
            let bounded = |b: &mut Self, value: &Option<Spanned<i64>>, name: &str, max: u32| {
                let value = value.as_ref()?;
                match u32::try_from(*value.get_ref()) {
                    Ok(n) if (1..=max).contains(&n) => Some(n),
                    _ => {
                        b.err(
                            src,
                            value.span(),
                            format!("{key}.{name}"),
                            format!("{name} must be 1 to {max}"),
                        );
                        None
                    }
                }
            };
            v.max_messages = bounded(
                self,
                &raw.max_messages,
                "max_messages",
                MAX_MAILBOX_MESSAGES,
            );
            v.max_message_secs = bounded(
                self,
                &raw.max_message_secs,
                "max_message_secs",
                MAX_MESSAGE_SECS,
            );
        }
        if let (Some(n), true) = (&v.number, v.enabled) {
            match self.policy.by_mailbox_number.get(n) {
                Some(prev) if *prev != owner => {
                    let span = raw
                        .and_then(|r| r.number.as_ref())
                        .map(|n| n.span())
                        .unwrap_or(at);
                    self.err(
                        src,
                        span,
                        format!("{key}.number"),
                        format!("mailbox number {n} is already {prev}'s"),
                    );
                }
                _ => {
                    self.policy.by_mailbox_number.insert(n.clone(), owner);
                }
            }
        }
        v
    }

    fn extension(&mut self, src: &Source, ext: &S, owner: String, key: String) -> Option<String> {
        let e = ext.get_ref().trim().to_string();
        if e.is_empty() || !e.bytes().all(|b| b.is_ascii_digit()) {
            self.err(
                src,
                ext.span(),
                key,
                format!("extension {e:?} must be digits"),
            );
            return None;
        }
        if let Some(prev) = self.seen_ext.get(&e) {
            let m = format!("extension {e} is already used by {prev}");
            self.err(src, ext.span(), key, m);
            return None;
        }
        self.seen_ext.insert(e.clone(), owner);
        Some(e)
    }

    fn sip(
        &mut self,
        src: &Source,
        raw: &RawSip,
        default_user: &str,
        key: &str,
    ) -> Option<SipCredentials> {
        let username = raw
            .username
            .as_ref()
            .map(|u| u.get_ref().clone())
            .unwrap_or_else(|| default_user.to_string());
        if username.is_empty() || username.contains([':', '@', ' ', '"']) {
            let span = raw.username.as_ref().map(|u| u.span()).unwrap_or(0..0);
            self.err(
                src,
                span,
                format!("{key}.username"),
                format!("{username:?} is not a usable SIP user name"),
            );
        }
        let algorithms = match &raw.algorithms {
            None => vec![DigestAlgorithm::Sha256, DigestAlgorithm::Md5],
            Some(list) => {
                let mut v = Vec::new();
                for (i, a) in list.get_ref().iter().enumerate() {
                    match a.get_ref().to_ascii_lowercase().as_str() {
                        "md5" => v.push(DigestAlgorithm::Md5),
                        "sha-256" | "sha256" => v.push(DigestAlgorithm::Sha256),
                        other => self.err(
                            src,
                            a.span(),
                            format!("{key}.algorithms[{i}]"),
                            format!(
                                "unknown digest algorithm {other:?}: use \"sha-256\" or \"md5\""
                            ),
                        ),
                    }
                }
                if v.is_empty() {
                    self.err(
                        src,
                        list.span(),
                        format!("{key}.algorithms"),
                        "at least one algorithm is needed",
                    );
                } else if let Some(offered) = &self.offered {
                    if !v.iter().any(|a| offered.contains(a)) {
                        let names: Vec<&str> = offered.iter().map(|a| a.as_str()).collect();
                        self.err(
                            src,
                            list.span(),
                            format!("{key}.algorithms"),
                            format!(
                                "none of these is offered: challenges offer only {:?} \
                                 ([auth] algorithms of the daemon's config), so these \
                                 credentials could never authenticate",
                                names
                            ),
                        );
                    }
                }
                v
            }
        };
        let hex = |h: &S, len: usize| {
            h.get_ref().len() == len && h.get_ref().bytes().all(|b| b.is_ascii_hexdigit())
        };
        let secret = match (&raw.password, &raw.ha1_md5, &raw.ha1_sha256) {
            (Some(p), None, None) => {
                if p.get_ref().is_empty() {
                    self.err(
                        src,
                        p.span(),
                        format!("{key}.password"),
                        "the password is empty",
                    );
                }
                Secret::Password(p.get_ref().clone())
            }
            (None, md5, sha) if md5.is_some() || sha.is_some() => {
                if let Some(h) = md5 {
                    if !hex(h, 32) {
                        self.err(
                            src,
                            h.span(),
                            format!("{key}.ha1_md5"),
                            "an MD5 HA1 is 32 hex digits",
                        );
                    }
                }
                if let Some(h) = sha {
                    if !hex(h, 64) {
                        self.err(
                            src,
                            h.span(),
                            format!("{key}.ha1_sha256"),
                            "a SHA-256 HA1 is 64 hex digits",
                        );
                    }
                }
                for a in &algorithms {
                    let (missing, name) = match a {
                        DigestAlgorithm::Md5 => (md5.is_none(), "md5"),
                        DigestAlgorithm::Sha256 => (sha.is_none(), "sha-256"),
                    };
                    if missing {
                        let span = raw.algorithms.as_ref().map(|l| l.span()).unwrap_or(0..0);
                        self.err(
                            src,
                            span,
                            format!("{key}.algorithms"),
                            format!(
                                "algorithm {name} is allowed but no ha1_{} is given",
                                name.replace('-', "")
                            ),
                        );
                    }
                }
                Secret::Ha1 {
                    md5: md5.as_ref().map(|h| h.get_ref().to_ascii_lowercase()),
                    sha256: sha.as_ref().map(|h| h.get_ref().to_ascii_lowercase()),
                }
            }
            (None, None, None) => {
                self.err(
                    src,
                    0..0,
                    key.to_string(),
                    "give a password, or ha1_md5 / ha1_sha256",
                );
                return None;
            }
            _ => {
                let span = raw.password.as_ref().map(|p| p.span()).unwrap_or(0..0);
                self.err(
                    src,
                    span,
                    format!("{key}.password"),
                    "give either a password or HA1 hashes, not both",
                );
                return None;
            }
        };
        Some(SipCredentials {
            username,
            secret,
            algorithms,
        })
    }

    fn strategy(
        &mut self,
        src: &Source,
        v: &Option<S>,
        key: String,
        default: RingStrategy,
    ) -> RingStrategy {
        match v {
            None => default,
            Some(s) => RingStrategy::parse(s.get_ref()).unwrap_or_else(|| {
                self.err(
                    src,
                    s.span(),
                    key,
                    format!(
                        "unknown ring strategy {:?}: use one of {}",
                        s.get_ref(),
                        RingStrategy::NAMES.join(", ")
                    ),
                );
                default
            }),
        }
    }

    /// A menu the daemon serves itself (`kind = "menu"` without `uri`): its prompt, options,
    /// timeout, retries, invalid-key message and default, every one checked.
    fn menu(&mut self, src: &Source, key: &str, id: &S, raw: &RawDestination) -> Option<MenuSpec> {
        let Some(prompt) = &raw.prompt else {
            self.err(
                src,
                id.span(),
                format!("{key}.prompt"),
                "a menu the daemon serves itself needs a prompt (the message saying its options), or a uri of a media server",
            );
            return None;
        };
        self.prompt_exists(src, prompt, format!("{key}.prompt"));
        let mut options = Vec::new();
        match &raw.options {
            None => self.err(
                src,
                id.span(),
                format!("{key}.options"),
                "a menu needs options: { \"1\" = \"user:ID\", \"2\" = \"team:ID\", … }",
            ),
            Some(map) if map.get_ref().is_empty() => self.err(
                src,
                map.span(),
                format!("{key}.options"),
                "a menu needs at least one option",
            ),
            Some(map) => {
                for (k, v) in map.get_ref() {
                    let okey = format!("{key}.options.{}", k.get_ref());
                    let digit = match k.get_ref().chars().collect::<Vec<_>>()[..] {
                        [c] if MENU_KEYS.contains(&c) => c,
                        _ => {
                            self.err(
                                src,
                                k.span(),
                                okey,
                                format!(
                                    "{:?} is not a key of a phone: use one of 0-9, * or #",
                                    k.get_ref()
                                ),
                            );
                            continue;
                        }
                    };
                    if let Some(t) = self.ownerless_target(src, v, okey) {
                        options.push((digit, t));
                    }
                }
            }
        }
        options.sort_by_key(|(k, _)| MENU_KEYS.iter().position(|x| x == k));
        let timeout_secs = match &raw.timeout_secs {
            None => 5,
            Some(t) if (1..=i64::from(MAX_MENU_TIMEOUT)).contains(t.get_ref()) => {
                *t.get_ref() as u32
            }
            Some(t) => {
                self.err(
                    src,
                    t.span(),
                    format!("{key}.timeout_secs"),
                    format!(
                        "{} seconds is out of range: use 1 to {MAX_MENU_TIMEOUT}",
                        t.get_ref()
                    ),
                );
                5
            }
        };
        let retries = match &raw.retries {
            None => 2,
            Some(r) if (0..=i64::from(MAX_MENU_RETRIES)).contains(r.get_ref()) => {
                *r.get_ref() as u32
            }
            Some(r) => {
                self.err(
                    src,
                    r.span(),
                    format!("{key}.retries"),
                    format!(
                        "{} is out of range: use 0 to {MAX_MENU_RETRIES}",
                        r.get_ref()
                    ),
                );
                2
            }
        };
        let invalid = match &raw.invalid {
            Some(m) => {
                self.prompt_exists(src, m, format!("{key}.invalid"));
                Some(m.get_ref().trim().to_string())
            }
            // The phrase "that is not a valid option", when the prompts have it.
            None => self
                .context
                .prompts
                .as_ref()
                .is_some_and(|p| p.contains("phrases/invalid_option"))
                .then(|| "invalid_option".to_string()),
        };
        let default = match &raw.default {
            None => Target::Hangup,
            Some(d) => self
                .ownerless_target(src, d, format!("{key}.default"))
                .unwrap_or(Target::Hangup),
        };
        let own = Target::Destination(DestinationKind::Menu, id.get_ref().clone());
        if let (true, Some(d)) = (default == own, &raw.default) {
            self.warn(
                src,
                d.span(),
                format!("{key}.default"),
                "the default leads back to this menu: a caller who presses nothing hears it \
                 again and again until the call's step bound ends it"
                    .into(),
            );
        }
        Some(MenuSpec {
            prompt: prompt.get_ref().trim().to_string(),
            options,
            timeout_secs,
            retries,
            invalid,
            default,
        })
    }

    /// The menu keys of a destination that is no menu of the daemon's own are refused.
    fn not_a_menu(&mut self, src: &Source, key: &str, raw: &RawDestination) {
        let spans = [
            ("prompt", raw.prompt.as_ref().map(|v| v.span())),
            ("options", raw.options.as_ref().map(|v| v.span())),
            ("timeout_secs", raw.timeout_secs.as_ref().map(|v| v.span())),
            ("retries", raw.retries.as_ref().map(|v| v.span())),
            ("invalid", raw.invalid.as_ref().map(|v| v.span())),
            ("default", raw.default.as_ref().map(|v| v.span())),
        ];
        for (name, span) in spans {
            if let Some(span) = span {
                self.err(
                    src,
                    span,
                    format!("{key}.{name}"),
                    format!(
                        "{name} belongs to a menu the daemon serves itself (kind = \"menu\" without uri)"
                    ),
                );
            }
        }
    }

    /// A message the policy names must have a prompt (when the daemon said which it has).
    fn prompt_exists(&mut self, src: &Source, m: &S, key: String) {
        if !self.context.has_message(m.get_ref()) {
            self.err(
                src,
                m.span(),
                key,
                format!(
                    "no prompt is named {:?}: record it as messages/{}.wav in [media] prompts, or name a phrase of prompts/",
                    m.get_ref(),
                    m.get_ref()
                ),
            );
        }
    }

    fn doc(&mut self, src: &Source, doc: RawDoc) {
        for (id, raw) in doc.destinations {
            let key = format!("destinations.{}", id.get_ref());
            let kind = DestinationKind::parse(raw.kind.get_ref()).unwrap_or_else(|| {
                self.err(
                    src,
                    raw.kind.span(),
                    format!("{key}.kind"),
                    format!(
                        "unknown destination kind {:?}: use voicemail, menu, queue or announcement",
                        raw.kind.get_ref()
                    ),
                );
                DestinationKind::Voicemail
            });
            let mut uri = String::new();
            let mut message = None;
            let own_menu = kind == DestinationKind::Menu && raw.uri.is_none();
            let menu = if own_menu {
                self.menu(src, &key, &id, &raw)
            } else {
                self.not_a_menu(src, &key, &raw);
                None
            };
            match (&raw.uri, &raw.message) {
                (None, None) if own_menu => {}
                (Some(u), None) => {
                    uri = u.get_ref().trim().to_string();
                    if !(uri.starts_with("sip:") || uri.starts_with("sips:")) {
                        self.err(
                            src,
                            u.span(),
                            format!("{key}.uri"),
                            format!("{uri:?} is not a SIP URI"),
                        );
                    }
                }
                (None, Some(m)) if kind == DestinationKind::Announcement => {
                    if !self.context.has_message(m.get_ref()) {
                        self.err(
                            src,
                            m.span(),
                            format!("{key}.message"),
                            format!(
                                "no prompt is named {:?}: record it as messages/{}.wav in [media] prompts, or name a phrase of prompts/",
                                m.get_ref(),
                                m.get_ref()
                            ),
                        );
                    }
                    message = Some(m.get_ref().trim().to_string());
                }
                (None, Some(m)) => self.err(
                    src,
                    m.span(),
                    format!("{key}.message"),
                    "only an announcement is a message the daemon plays itself; this kind needs a uri",
                ),
                (Some(_), Some(m)) => self.err(
                    src,
                    m.span(),
                    format!("{key}.message"),
                    "a destination has a uri (a media server's) or a message (the daemon's own), not both",
                ),
                (None, None) => self.err(
                    src,
                    id.span(),
                    format!("{key}.uri"),
                    "a destination needs a uri (an announcement may have a message instead, a menu a prompt)",
                ),
            }
            let menu_hangs_up = menu.is_some() && raw.default.is_none();
            let code = match &raw.code {
                None => 480,
                Some(c) if message.is_none() && !menu_hangs_up => {
                    self.err(
                        src,
                        c.span(),
                        format!("{key}.code"),
                        "code is the final response after the daemon's own message (only with message), or of its own menu when it has no default",
                    );
                    480
                }
                Some(c) if (400..700).contains(c.get_ref()) => *c.get_ref() as u16,
                Some(c) => {
                    self.err(
                        src,
                        c.span(),
                        format!("{key}.code"),
                        "a final response code is 400 to 699",
                    );
                    480
                }
            };
            let answer = match &raw.answer {
                Some(a) if message.is_none() => {
                    self.err(
                        src,
                        a.span(),
                        format!("{key}.answer"),
                        "answer is for the daemon's own message: only with message",
                    );
                    false
                }
                Some(a) => *a.get_ref(),
                None => false,
            };
            let next = match &raw.next {
                None => None,
                Some(n) if message.is_none() => {
                    self.err(
                        src,
                        n.span(),
                        format!("{key}.next"),
                        "next is where the call goes after the daemon's own message: only with message",
                    );
                    None
                }
                Some(n) if raw.code.is_some() => {
                    self.err(
                        src,
                        n.span(),
                        format!("{key}.next"),
                        "a message either ends the call with code or goes on to next, not both",
                    );
                    None
                }
                Some(n) => {
                    let t = self.ownerless_target(src, n, format!("{key}.next"));
                    if let (Some(t), true) = (&t, answer) {
                        let what = RefKind::AnsweredNext(t.clone());
                        self.reference(src, n.span(), format!("{key}.next"), what);
                    }
                    t
                }
            };
            if self.policy.destinations.contains_key(id.get_ref()) {
                self.err(
                    src,
                    id.span(),
                    key,
                    format!("destination {} is defined twice", id.get_ref()),
                );
                continue;
            }
            let d = Destination {
                id: id.get_ref().clone(),
                kind,
                uri,
                message,
                code,
                menu,
                answer,
                next,
            };
            self.policy.destinations.insert(d.id.clone(), d);
        }
        for (id, raw) in doc.schedules {
            let key = format!("schedules.{}", id.get_ref());
            if raw.timezone.get_ref().parse::<chrono_tz::Tz>().is_err() {
                self.err(
                    src,
                    raw.timezone.span(),
                    format!("{key}.timezone"),
                    format!(
                        "unknown time zone {:?} (use an IANA name such as Europe/London)",
                        raw.timezone.get_ref()
                    ),
                );
            }
            let mut hours: [Vec<(u16, u16)>; 7] = Default::default();
            for (i, h) in raw.hours.get_ref().iter().enumerate() {
                match parse_hours(h.get_ref()) {
                    Some((days, from, to)) => {
                        for d in days {
                            hours[d].push((from, to));
                        }
                    }
                    None => self.err(
                        src,
                        h.span(),
                        format!("{key}.hours[{i}]"),
                        format!(
                            "{:?} is not of the form \"mon-fri 09:00-17:00\"",
                            h.get_ref()
                        ),
                    ),
                }
            }
            let mut holidays = Vec::new();
            for (i, h) in raw.holidays.iter().enumerate() {
                if chrono::NaiveDate::parse_from_str(h.get_ref(), "%Y-%m-%d").is_err() {
                    self.err(
                        src,
                        h.span(),
                        format!("{key}.holidays[{i}]"),
                        format!("{:?} is not a date (YYYY-MM-DD)", h.get_ref()),
                    );
                } else {
                    holidays.push(h.get_ref().clone());
                }
            }
            if self.policy.schedules.contains_key(id.get_ref()) {
                self.err(
                    src,
                    id.span(),
                    key,
                    format!("schedule {} is defined twice", id.get_ref()),
                );
                continue;
            }
            self.policy.schedules.insert(
                id.get_ref().clone(),
                Schedule {
                    id: id.get_ref().clone(),
                    timezone: raw.timezone.get_ref().clone(),
                    hours,
                    holidays,
                },
            );
        }
        for (id, raw) in doc.profiles {
            self.profile(src, id, raw);
        }
        for (id, raw) in doc.users {
            self.user(src, id, raw);
        }
        for (id, raw) in doc.teams {
            self.team(src, id, raw);
        }
        for (id, raw) in doc.trunks {
            self.trunk(src, id, raw);
        }
        for (name, raw) in doc.statuses {
            let key = format!("statuses.{}", name.get_ref());
            let Some(a) = Availability::parse(name.get_ref()) else {
                self.err(
                    src,
                    name.span(),
                    key,
                    format!(
                        "unknown status {:?}: use {}",
                        name.get_ref(),
                        Availability::ALL
                            .iter()
                            .map(|a| a.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
                continue;
            };
            let mut rule = default_status_rule(a);
            if let Some(d) = &raw.direct {
                rule.direct = match d.get_ref().as_str() {
                    "ring" => StatusEffect::Ring,
                    "out_of_hours" => StatusEffect::OutOfHours,
                    "unavailable" => StatusEffect::Unavailable,
                    other => {
                        self.err(
                            src,
                            d.span(),
                            format!("{key}.direct"),
                            format!(
                                "unknown effect {other:?}: use ring, out_of_hours or unavailable"
                            ),
                        );
                        rule.direct
                    }
                };
            }
            if let Some(s) = raw.skip_in_teams {
                rule.skip_in_teams = s;
            }
            self.policy.statuses.insert(a, rule);
        }
    }

    fn profile(&mut self, src: &Source, id: S, raw: RawProfile) {
        let key = format!("profiles.{}", id.get_ref());
        let base = default_profiles()
            .into_iter()
            .find(|p| p.id == *id.get_ref());
        let text = |v: &Option<S>| v.as_ref().map(|s| s.get_ref().clone());
        let draft = ProfileDraft {
            number: raw.number.as_ref().map(|n| *n.get_ref()),
            name: raw.name.clone(),
            shows_call_status: raw.shows_call_status,
            availability: text(&raw.availability),
            message: raw.message.clone(),
            caller_id: raw.caller_id.clone(),
            incoming: text(&raw.incoming),
            devices: raw
                .devices
                .as_ref()
                .map(|d| d.iter().map(|x| x.get_ref().clone()).collect()),
            reject_code: raw.reject_code.as_ref().map(|c| *c.get_ref()),
            reject_reason: raw.reject_reason.clone(),
            standard_length: text(&raw.standard_length),
        };
        // Where each setting's problem is shown: at its value, else at the profile's id.
        let span_of = |field: &str| {
            let span = match field {
                "number" => raw.number.as_ref().map(|n| n.span()),
                "availability" => raw.availability.as_ref().map(|s| s.span()),
                "incoming" => raw.incoming.as_ref().map(|s| s.span()),
                "reject_code" => raw
                    .reject_code
                    .as_ref()
                    .map(|c| c.span())
                    .or(raw.incoming.as_ref().map(|s| s.span())),
                "standard_length" => raw.standard_length.as_ref().map(|s| s.span()),
                _ => None,
            };
            span.unwrap_or(id.span())
        };
        let p = match build_profile(id.get_ref(), &draft, base.as_ref()) {
            Ok(p) => p,
            Err(problems) => {
                for pr in problems {
                    self.err(
                        src,
                        span_of(pr.field),
                        format!("{key}.{}", pr.field),
                        pr.message,
                    );
                }
                return;
            }
        };
        if let Some(announce) = &raw.announce {
            if !matches!(p.incoming, IncomingHandling::Reject { .. }) {
                self.err(
                    src,
                    announce.span(),
                    format!("{key}.announce"),
                    "announce is for profiles that refuse calls (incoming = \"reject\")",
                );
            } else if !*announce.get_ref() {
                self.policy.silent_profiles.insert(p.id.clone());
            }
        }
        if let (IncomingHandling::SendTo(t), Some(v)) = (&p.incoming, &raw.incoming) {
            self.reference(
                src,
                v.span(),
                format!("{key}.incoming"),
                RefKind::Target(t.clone()),
            );
        }
        if let Some(m) = number_problem(&p, self.policy.profiles.values()) {
            self.err(src, id.span(), format!("{key}.number"), m);
            return;
        }
        self.policy.profiles.insert(p.id.clone(), p);
    }

    fn user(&mut self, src: &Source, id: S, raw: RawUser) {
        let uid = id.get_ref().clone();
        let key = format!("users.{uid}");
        if self.policy.users.contains_key(&uid) {
            self.err(src, id.span(), key, format!("user {uid} is defined twice"));
            return;
        }
        let extension = self
            .extension(
                src,
                &raw.extension,
                format!("user {uid}"),
                format!("{key}.extension"),
            )
            .unwrap_or_default();
        let sip = raw
            .sip
            .as_ref()
            .and_then(|s| self.sip(src, s, &uid, &format!("{key}.sip")));
        if let Some(c) = &sip {
            if let Some(prev) = self.policy.by_username.get(&c.username) {
                let m = format!(
                    "SIP user name {} is already used by user {prev}",
                    c.username
                );
                let span = raw
                    .sip
                    .as_ref()
                    .and_then(|s| s.username.as_ref())
                    .map(|u| u.span())
                    .unwrap_or(id.span());
                self.err(src, span, format!("{key}.sip.username"), m);
            } else {
                self.policy
                    .by_username
                    .insert(c.username.clone(), uid.clone());
            }
        }
        let ring_time = secs(&raw.ring_time, 20).unwrap_or_else(|(s, m)| {
            self.err(src, s, format!("{key}.ring_time"), m);
            20
        });
        let no_answer = raw
            .no_answer
            .as_ref()
            .and_then(|v| self.target(src, v, format!("{key}.no_answer")))
            .unwrap_or(Target::Hangup);
        let busy = match &raw.busy {
            None => BusyAction::Engaged,
            Some(v) if v.get_ref() == "engaged" => BusyAction::Engaged,
            Some(v) => self
                .target(src, v, format!("{key}.busy"))
                .map(BusyAction::Redirect)
                .unwrap_or(BusyAction::Engaged),
        };
        let out_of_hours = raw
            .out_of_hours
            .as_ref()
            .and_then(|v| self.target(src, v, format!("{key}.out_of_hours")))
            .unwrap_or_else(|| no_answer.clone());
        if let Some(s) = &raw.schedule {
            self.reference(
                src,
                s.span(),
                format!("{key}.schedule"),
                RefKind::Schedule(s.get_ref().clone()),
            );
        }
        if let Some(t) = &raw.api_token {
            if t.get_ref().len() < 16 || t.get_ref().contains(char::is_whitespace) {
                self.err(
                    src,
                    t.span(),
                    format!("{key}.api_token"),
                    "an API token needs at least 16 characters and no spaces",
                );
            }
        }
        let mut profile_caller_ids = BTreeMap::new();
        for (p, cid) in raw.profile_caller_ids {
            self.reference(
                src,
                p.span(),
                format!("{key}.profile_caller_ids.{}", p.get_ref()),
                RefKind::Profile(p.get_ref().clone()),
            );
            profile_caller_ids.insert(p.into_inner(), cid);
        }
        let mut devices = Vec::new();
        for (i, d) in raw.devices.into_iter().enumerate() {
            if devices.iter().any(|x: &Device| x.name == *d.name.get_ref()) {
                self.err(
                    src,
                    d.name.span(),
                    format!("{key}.devices[{i}].name"),
                    format!("device {} is listed twice", d.name.get_ref()),
                );
            }
            devices.push(Device {
                contact_match: d.contact_match.unwrap_or_else(|| d.name.get_ref().clone()),
                name: d.name.into_inner(),
            });
        }
        let forwarding = raw.forwarding.map(|f| {
            let fkey = format!("{key}.forwarding");
            let mut targets = Vec::new();
            for (i, t) in f.targets.get_ref().iter().enumerate() {
                if let Some(t) = self.target(src, t, format!("{fkey}.targets[{i}]")) {
                    targets.push(t);
                }
            }
            let enabled = f.enabled.unwrap_or(true);
            if enabled && f.targets.get_ref().is_empty() {
                self.err(
                    src,
                    f.targets.span(),
                    format!("{fkey}.targets"),
                    "forwarding is on but has no targets",
                );
            }
            let require_confirmation = f.require_confirmation.as_ref().is_some_and(|r| *r.get_ref());
            let caller_id = match f.caller_id.as_ref().map(|c| c.get_ref().as_str()) {
                None | Some("remote") => ForwardCallerId::Remote,
                Some("local") => ForwardCallerId::Local,
                Some(other) => {
                    let span = f.caller_id.as_ref().map(|c| c.span()).unwrap_or(0..0);
                    self.err(
                        src,
                        span,
                        format!("{fkey}.caller_id"),
                        format!("{other:?}: use remote (the caller's) or local (your own)"),
                    );
                    ForwardCallerId::Remote
                }
            };
            Forwarding {
                enabled,
                targets,
                strategy: self.strategy(
                    src,
                    &f.strategy,
                    format!("{fkey}.strategy"),
                    RingStrategy::RingAll,
                ),
                ring_own_first: secs(&f.ring_own_first, 0).unwrap_or_else(|(s, m)| {
                    self.err(src, s, format!("{fkey}.ring_own_first"), m);
                    0
                }),
                keep_ringing_own: f.keep_ringing_own.unwrap_or(true),
                direct_calls_only: f.direct_calls_only.unwrap_or(false),
                require_confirmation,
                caller_id,
                ring_time: secs(&f.ring_time, 20).unwrap_or_else(|(s, m)| {
                    self.err(src, s, format!("{fkey}.ring_time"), m);
                    20
                }),
                no_answer: f
                    .no_answer
                    .as_ref()
                    .and_then(|v| self.target(src, v, format!("{fkey}.no_answer")))
                    .unwrap_or_else(|| no_answer.clone()),
                message: f.message.map(|m| {
                    if !self.context.has_message(m.get_ref()) {
                        self.err(
                            src,
                            m.span(),
                            format!("{fkey}.message"),
                            format!(
                                "no prompt is named {:?}: record it as messages/{}.wav in [media] prompts, or name a phrase of prompts/",
                                m.get_ref(),
                                m.get_ref()
                            ),
                        );
                    }
                    m.into_inner()
                }),
            }
        });
        let email = raw.email.and_then(|e| {
            if is_email(e.get_ref()) {
                Some(e.into_inner())
            } else {
                self.err(
                    src,
                    e.span(),
                    format!("{key}.email"),
                    format!(
                        "{:?} is not a mail address (name@domain, no spaces or control characters)",
                        e.get_ref()
                    ),
                );
                None
            }
        });
        let missed_call_email = match &raw.missed_call_email {
            None => MissedCallEmail::Disabled,
            Some(m) => match MissedCallEmail::parse(m.get_ref()) {
                Some(MissedCallEmail::Disabled) => MissedCallEmail::Disabled,
                Some(_) if email.is_none() => {
                    self.err(
                        src,
                        m.span(),
                        format!("{key}.missed_call_email"),
                        format!(
                            "missed_call_email = {:?} needs an email address for {uid}",
                            m.get_ref()
                        ),
                    );
                    MissedCallEmail::Disabled
                }
                Some(setting) => setting,
                None => {
                    self.err(
                        src,
                        m.span(),
                        format!("{key}.missed_call_email"),
                        format!(
                            "{:?} is not one of disabled, all, direct, teams",
                            m.get_ref()
                        ),
                    );
                    MissedCallEmail::Disabled
                }
            },
        };
        let voicemail = self.voicemail(
            src,
            raw.voicemail.as_ref(),
            &format!("{key}.voicemail"),
            MailboxOwner::User(uid.clone()),
            id.span(),
            VoicemailSettings {
                number: (!extension.is_empty()).then(|| extension.clone()),
                email: email.iter().cloned().collect(),
                ..VoicemailSettings::default()
            },
        );
        self.policy.users.insert(
            uid.clone(),
            User {
                id: uid.clone(),
                extension: extension.clone(),
                display_name: raw.display_name.unwrap_or_else(|| uid.clone()),
                sip,
                devices,
                ring_time,
                no_answer,
                busy,
                call_waiting: raw.call_waiting.unwrap_or(true),
                api_token: raw.api_token.map(|t| t.into_inner()),
                caller_id: raw.caller_id,
                profile_caller_ids,
                out_of_hours,
                schedule: raw.schedule.map(|s| s.into_inner()),
                forwarding,
                email,
                missed_call_email,
                voicemail,
            },
        );
        if !extension.is_empty() {
            self.policy
                .by_extension
                .insert(extension, ExtensionOwner::User(uid));
        }
    }

    fn team(&mut self, src: &Source, id: S, raw: RawTeam) {
        let tid = id.get_ref().clone();
        let key = format!("teams.{tid}");
        if self.policy.teams.contains_key(&tid) {
            self.err(src, id.span(), key, format!("team {tid} is defined twice"));
            return;
        }
        let extension = raw.extension.as_ref().and_then(|e| {
            self.extension(src, e, format!("team {tid}"), format!("{key}.extension"))
        });
        let mut members = Vec::new();
        for (i, m) in raw.members.get_ref().iter().enumerate() {
            if members.contains(m.get_ref()) {
                self.err(
                    src,
                    m.span(),
                    format!("{key}.members[{i}]"),
                    format!("{} is listed twice", m.get_ref()),
                );
                continue;
            }
            self.reference(
                src,
                m.span(),
                format!("{key}.members[{i}]"),
                RefKind::Member(m.get_ref().clone()),
            );
            members.push(m.get_ref().clone());
        }
        if members.is_empty() {
            self.err(
                src,
                raw.members.span(),
                format!("{key}.members"),
                "a team needs at least one member",
            );
        }
        let member_ring_time = secs(&raw.member_ring_time, 15).unwrap_or_else(|(s, m)| {
            self.err(src, s, format!("{key}.member_ring_time"), m);
            15
        });
        let ring_time = secs(&raw.ring_time, 60).unwrap_or_else(|(s, m)| {
            self.err(src, s, format!("{key}.ring_time"), m);
            60
        });
        if let Some(s) = &raw.schedule {
            self.reference(
                src,
                s.span(),
                format!("{key}.schedule"),
                RefKind::Schedule(s.get_ref().clone()),
            );
        }
        let strategy = self.strategy(
            src,
            &raw.strategy,
            format!("{key}.strategy"),
            RingStrategy::RingAll,
        );
        if let Some(msg) = short_hunt(strategy, members.len(), member_ring_time, ring_time) {
            let span = raw.ring_time.as_ref().map_or(id.span(), |r| r.span());
            self.warn(src, span, format!("{key}.ring_time"), msg);
        }
        let voicemail = self.voicemail(
            src,
            raw.voicemail.as_ref(),
            &format!("{key}.voicemail"),
            MailboxOwner::Team(tid.clone()),
            id.span(),
            VoicemailSettings {
                number: extension.clone(),
                ..VoicemailSettings::default()
            },
        );
        let team = Team {
            voicemail,
            id: tid.clone(),
            name: raw.name.unwrap_or_else(|| tid.clone()),
            extension: extension.clone(),
            members,
            strategy,
            member_ring_time,
            ring_time,
            skip_unavailable: raw.skip_unavailable.unwrap_or(true),
            skip_in_call: raw.skip_in_call.unwrap_or(true),
            no_answer: raw
                .no_answer
                .as_ref()
                .and_then(|v| self.target(src, v, format!("{key}.no_answer")))
                .unwrap_or(Target::Hangup),
            out_of_hours: raw
                .out_of_hours
                .as_ref()
                .and_then(|v| self.target(src, v, format!("{key}.out_of_hours"))),
            schedule: raw.schedule.map(|s| s.into_inner()),
        };
        self.policy.teams.insert(tid.clone(), team);
        if let Some(e) = extension {
            self.policy
                .by_extension
                .insert(e, ExtensionOwner::Team(tid));
        }
    }

    fn trunk(&mut self, src: &Source, id: S, raw: RawTrunk) {
        let tid = id.get_ref().clone();
        let key = format!("trunks.{tid}");
        let mut sources = Vec::new();
        let mut source_names: Vec<String> = Vec::new();
        for (i, s) in raw.sources.iter().enumerate() {
            let skey = format!("{key}.sources[{i}]");
            if let Some(n) = parse_network(s.get_ref()) {
                sources.push(n);
                continue;
            }
            let Some(name) = parse_host_name(s.get_ref()) else {
                self.err(
                    src,
                    s.span(),
                    skey,
                    format!(
                        "{:?} is not an address, network or host name (e.g. 192.0.2.0/24, sbc.carrier.example)",
                        s.get_ref()
                    ),
                );
                continue;
            };
            if source_names.contains(&name) {
                self.err(src, s.span(), skey, format!("{name} is listed twice"));
                continue;
            }
            // Names are counted once however many trunks list them.
            if !self.source_names.contains(&name) && self.source_names.len() >= MAX_SOURCE_NAMES {
                self.err(
                    src,
                    s.span(),
                    skey,
                    format!(
                        "at most {MAX_SOURCE_NAMES} host names may be trunk sources (each is looked up and kept fresh): list networks instead"
                    ),
                );
                continue;
            }
            self.source_names.insert(name.clone());
            source_names.push(name);
        }
        let credentials = raw
            .sip
            .as_ref()
            .and_then(|s| self.sip(src, s, &tid, &format!("{key}.sip")));
        let account = raw
            .account
            .as_ref()
            .and_then(|a| self.account(src, a, &tid, raw.uri.as_ref(), &format!("{key}.account")));
        let registers = raw
            .account
            .as_ref()
            .and_then(|a| a.get_ref().register.as_ref())
            .is_some_and(|r| *r.get_ref());
        // A registering trunk's calls come to the contact it registered, from where it
        // registered: they are known without sources or credentials.
        if sources.is_empty() && source_names.is_empty() && credentials.is_none() && !registers {
            self.err(
                src,
                id.span(),
                key.clone(),
                "a trunk needs source addresses, SIP credentials or an account that registers",
            );
        }
        if let Some(u) = &raw.uri {
            if !u.get_ref().starts_with("sip:") && !u.get_ref().starts_with("sips:") {
                self.err(
                    src,
                    u.span(),
                    format!("{key}.uri"),
                    format!("{:?} is not a SIP URI", u.get_ref()),
                );
            }
        }
        let numbers = self.number_plan(src, &raw, &key);
        let caller_id = raw.caller_id.as_ref().and_then(|c| {
            let inside = numbers.to_e164(c.get_ref());
            if crate::numbers::digits_of(&inside).is_some() {
                Some(inside)
            } else {
                self.err(
                    src,
                    c.span(),
                    format!("{key}.caller_id"),
                    format!("{:?} is not a telephone number", c.get_ref()),
                );
                None
            }
        });
        let mut dids: BTreeMap<String, Did> = BTreeMap::new();
        let entries = raw
            .dids
            .iter()
            .map(|(n, t)| (n, t, None, None, format!("{key}.dids.\"{}\"", n.get_ref())))
            .chain(raw.numbers.iter().enumerate().map(|(i, n)| {
                (
                    &n.number,
                    &n.to,
                    n.schedule.as_ref(),
                    n.out_of_hours.as_ref(),
                    format!("{key}.numbers[{i}]"),
                )
            }));
        for (number, to, schedule, out_of_hours, dkey) in entries {
            // Compared in the inside form: `01632 960000` and `+441632960000` are one DID.
            let inside = numbers.to_e164(number.get_ref());
            let taken = dids.contains_key(&inside)
                || self
                    .policy
                    .trunks
                    .values()
                    .any(|t| t.dids.contains_key(&inside));
            if taken {
                self.err(
                    src,
                    number.span(),
                    dkey,
                    if inside == *number.get_ref() {
                        format!("DID {inside} is already routed")
                    } else {
                        format!("DID {} ({inside}) is already routed", number.get_ref())
                    },
                );
                continue;
            }
            self.reference(
                src,
                number.span(),
                dkey.clone(),
                RefKind::Did(number.get_ref().clone(), inside.clone()),
            );
            if let Some(s) = schedule {
                self.reference(
                    src,
                    s.span(),
                    format!("{dkey}.schedule"),
                    RefKind::Schedule(s.get_ref().clone()),
                );
            }
            let ooh = out_of_hours
                .and_then(|o| self.ownerless_target(src, o, format!("{dkey}.out_of_hours")));
            if let Some(t) = self.ownerless_target(src, to, dkey) {
                dids.insert(
                    inside,
                    Did {
                        target: t,
                        schedule: schedule.map(|s| s.get_ref().clone()),
                        out_of_hours: ooh,
                    },
                );
            }
        }
        if self.policy.trunks.contains_key(&tid) {
            self.err(src, id.span(), key, format!("trunk {tid} is defined twice"));
            return;
        }
        if raw.outbound.is_empty() {
            let what = if raw.uri.is_some() {
                "its uri is never used"
            } else {
                "it carries calls in only"
            };
            self.warn(
                src,
                id.span(),
                format!("{key}.outbound"),
                format!("no number goes out through trunk {tid}: `outbound` lists none, so {what}"),
            );
        }
        self.policy.trunks.insert(
            tid.clone(),
            Trunk {
                id: tid,
                sources,
                source_names,
                credentials,
                account,
                uri: raw.uri.map(|u| u.into_inner()),
                dids,
                outbound: raw.outbound.into_iter().map(|o| o.into_inner()).collect(),
                numbers,
                caller_id,
            },
        );
    }

    /// `[trunks.ID.account]`: our account at the carrier, for the calls sent to trunk
    /// `tid`'s `uri` and, with `register = true`, its registration.
    fn account(
        &mut self,
        src: &Source,
        raw: &Spanned<RawAccount>,
        tid: &str,
        uri: Option<&S>,
        key: &str,
    ) -> Option<TrunkAccount> {
        let table = raw.span();
        let a = raw.get_ref();
        // Whatever goes into a quoted digest parameter: no quote, backslash or control
        // character.
        let unquotable = |v: &str| v.chars().any(|c| c == '"' || c == '\\' || c.is_control());
        let mut ok = true;
        let required = |b: &mut Self, v: &Option<S>, name: &str| -> Option<String> {
            match v {
                None => {
                    b.err(
                        src,
                        table.clone(),
                        format!("{key}.{name}"),
                        format!("the account needs a {name}"),
                    );
                    None
                }
                Some(s) if s.get_ref().is_empty() => {
                    b.err(
                        src,
                        s.span(),
                        format!("{key}.{name}"),
                        format!("the {name} is empty"),
                    );
                    None
                }
                Some(s) => Some(s.get_ref().clone()),
            }
        };
        let username = required(self, &a.username, "username");
        let password = required(self, &a.password, "password");
        if let Some(u) = &a.username {
            let bad = u.get_ref().chars().any(|c| {
                c.is_whitespace()
                    || c.is_control()
                    || matches!(c, '"' | '\\' | '@' | ':' | '<' | '>' | ';')
            });
            if bad {
                ok = false;
                self.err(
                    src,
                    u.span(),
                    format!("{key}.username"),
                    format!("{:?} is not a usable SIP user name", u.get_ref()),
                );
            }
        }
        for (name, v) in [("auth_username", &a.auth_username), ("realm", &a.realm)] {
            let Some(v) = v else { continue };
            if v.get_ref().is_empty() || unquotable(v.get_ref()) {
                ok = false;
                self.err(
                    src,
                    v.span(),
                    format!("{key}.{name}"),
                    format!(
                        "{:?} cannot be a digest {}: it must not be empty or hold quotes, \\ or control characters",
                        v.get_ref(),
                        name.replace('_', " ")
                    ),
                );
            }
        }
        let registers = a.register.as_ref().is_some_and(|r| *r.get_ref());
        let registration = if registers {
            let r = self.registration(src, a, &table, tid, uri, key);
            ok &= r.is_some();
            r
        } else {
            for (name, span) in [
                ("registrar", a.registrar.as_ref().map(|v| v.span())),
                ("expires", a.expires.as_ref().map(|v| v.span())),
                ("contact_user", a.contact_user.as_ref().map(|v| v.span())),
            ] {
                if let Some(span) = span {
                    ok = false;
                    self.err(
                        src,
                        span,
                        format!("{key}.{name}"),
                        format!("{name} is for an account that registers: add register = true"),
                    );
                }
            }
            None
        };
        // Registering needs no uri (the registrar is given); calls sent out need one.
        if uri.is_none() && !registers {
            ok = false;
            self.err(
                src,
                table,
                key.to_string(),
                "the account answers the carrier's challenges to calls sent to the trunk's uri: give the trunk a uri",
            );
        }
        let (username, password) = (username?, password?);
        ok.then(|| TrunkAccount {
            username,
            password,
            auth_username: a.auth_username.as_ref().map(|v| v.get_ref().clone()),
            realm: a.realm.as_ref().map(|v| v.get_ref().clone()),
            registration,
        })
    }

    /// The registration of an account with `register = true`: the registrar (given, or the
    /// host of the trunk's `uri`), the expiry (bounded), the contact user (given, or the
    /// trunk's id; unique across trunks, checked against users once all are read).
    fn registration(
        &mut self,
        src: &Source,
        a: &RawAccount,
        table: &Range<usize>,
        tid: &str,
        uri: Option<&S>,
        key: &str,
    ) -> Option<TrunkRegistration> {
        let mut ok = true;
        let registrar = match (&a.registrar, uri) {
            (Some(r), _) => match registrar_uri(r.get_ref()) {
                Ok(v) if v == *r.get_ref() => Some(v),
                Ok(_) | Err(_) => {
                    self.err(
                        src,
                        r.span(),
                        format!("{key}.registrar"),
                        format!(
                            "{:?} is not a registrar's SIP URI: sip:host[:port][;transport=udp|tcp], no user part",
                            r.get_ref()
                        ),
                    );
                    None
                }
            },
            (None, Some(u)) => match registrar_uri(u.get_ref()) {
                Ok(v) => Some(v),
                Err(()) => {
                    self.err(
                        src,
                        table.clone(),
                        format!("{key}.registrar"),
                        format!(
                            "the trunk's uri {:?} names no registrar (sip:host[:port][;transport=udp|tcp]): give registrar",
                            u.get_ref()
                        ),
                    );
                    None
                }
            },
            (None, None) => {
                self.err(
                    src,
                    table.clone(),
                    format!("{key}.registrar"),
                    "an account that registers needs a registrar (or the trunk a uri whose host is the registrar)",
                );
                None
            }
        };
        let expires = match &a.expires {
            None => 3600,
            Some(e) if REGISTRATION_EXPIRES.contains(e.get_ref()) => *e.get_ref() as u32,
            Some(e) => {
                ok = false;
                self.err(
                    src,
                    e.span(),
                    format!("{key}.expires"),
                    format!(
                        "{} seconds is out of range: use {} to {}",
                        e.get_ref(),
                        REGISTRATION_EXPIRES.start(),
                        REGISTRATION_EXPIRES.end()
                    ),
                );
                0
            }
        };
        let (contact_user, span) = match &a.contact_user {
            Some(c) => (c.get_ref().clone(), c.span()),
            None => (tid.to_string(), table.clone()),
        };
        if !is_contact_user(&contact_user) {
            ok = false;
            let why = if a.contact_user.is_some() {
                format!("{contact_user:?} is not a usable contact user: letters, digits, - _ . ~ + only")
            } else {
                format!(
                    "the trunk's id {contact_user:?} is not a usable contact user: give contact_user (letters, digits, - _ . ~ + only)"
                )
            };
            self.err(src, span.clone(), format!("{key}.contact_user"), why);
        } else if let Some(other) = self.seen_contact_users.get(&contact_user) {
            ok = false;
            let m = format!("contact user {contact_user} is already used by trunk {other}");
            self.err(src, span.clone(), format!("{key}.contact_user"), m);
        } else {
            self.seen_contact_users
                .insert(contact_user.clone(), tid.to_string());
            self.reference(
                src,
                span,
                format!("{key}.contact_user"),
                RefKind::ContactUser(contact_user.clone()),
            );
        }
        let registrar = registrar?;
        let domain = uri_host(&registrar)?;
        ok.then_some(TrunkRegistration {
            registrar,
            domain,
            expires,
            contact_user,
        })
    }

    /// A trunk's numbering plan: its country code, prefixes and number format, checked.
    fn number_plan(&mut self, src: &Source, raw: &RawTrunk, key: &str) -> crate::NumberPlan {
        let mut plan = crate::NumberPlan::default();
        let digits = |b: &mut Self, v: &Option<S>, name: &str, max: usize| {
            let v = v.as_ref()?;
            let text = v.get_ref();
            if text.len() <= max && text.bytes().all(|c| c.is_ascii_digit()) {
                Some(text.clone())
            } else {
                b.err(
                    src,
                    v.span(),
                    format!("{key}.{name}"),
                    format!("{text:?} is not up to {max} digits"),
                );
                None
            }
        };
        plan.country_code =
            digits(self, &raw.country_code, "country_code", 3).filter(|c| !c.is_empty());
        if let Some(p) = digits(self, &raw.national_prefix, "national_prefix", 4) {
            plan.national_prefix = p;
        }
        if let Some(p) = digits(self, &raw.international_prefix, "international_prefix", 4) {
            plan.international_prefix = p;
        }
        if let Some(f) = &raw.number_format {
            plan.send = match f.get_ref().as_str() {
                "e164" => crate::NumberFormat::E164,
                "national" if plan.country_code.is_some() => crate::NumberFormat::National,
                "national" => {
                    self.err(
                        src,
                        f.span(),
                        format!("{key}.number_format"),
                        "national numbers need the trunk's country_code",
                    );
                    crate::NumberFormat::E164
                }
                "international" => crate::NumberFormat::International,
                other => {
                    self.err(
                        src,
                        f.span(),
                        format!("{key}.number_format"),
                        format!("{other:?}: expected \"e164\", \"national\" or \"international\""),
                    );
                    crate::NumberFormat::E164
                }
            };
        }
        plan
    }

    /// Built-in profiles and status rules the files did not override.
    fn defaults(&mut self) {
        for p in default_profiles() {
            if !self.policy.profiles.contains_key(&p.id)
                && !self.policy.profiles.values().any(|q| q.number == p.number)
            {
                self.policy.profiles.insert(p.id.clone(), p);
            }
        }
        for a in Availability::ALL {
            self.policy
                .statuses
                .entry(a)
                .or_insert_with(|| default_status_rule(a));
        }
    }

    fn check_refs(&mut self, sources: &[Source]) {
        let refs = std::mem::take(&mut self.refs);
        for r in refs {
            let mut severity = Severity::Error;
            let problem = match &r.what {
                RefKind::Member(u) => match self.policy.users.get(u) {
                    None => Some(format!("unknown user {u:?}")),
                    Some(user) => never_rings(user).inspect(|_| severity = Severity::Warning),
                },
                RefKind::Target(t) => self.policy.target_problem(t),
                RefKind::AnsweredNext(t) => answered_next_problem(&self.policy, t),
                RefKind::Schedule(s) => (!self.policy.schedules.contains_key(s))
                    .then(|| format!("unknown schedule {s:?}")),
                RefKind::Profile(p) => (!self.policy.profiles.contains_key(p))
                    .then(|| format!("unknown profile {p:?}")),
                RefKind::Did(written, inside) => [written, inside]
                    .into_iter()
                    .find_map(|n| self.policy.by_extension.get(n.as_str()))
                    .map(|owner| {
                        let owner = match owner {
                            ExtensionOwner::User(u) => format!("user {u}"),
                            ExtensionOwner::Team(t) => format!("team {t}"),
                        };
                        format!(
                            "DID {written} is also the extension of {owner}: a call to it \
                             could not be told from an internal one"
                        )
                    }),
                RefKind::ContactUser(c) => {
                    let p = &self.policy;
                    let owner = p
                        .users
                        .get(c.as_str())
                        .map(|u| u.id.clone())
                        .or_else(|| p.sip_user(c).map(str::to_string))
                        .map(|u| format!("user {u}"))
                        .or_else(|| match p.by_extension.get(c.as_str()) {
                            Some(ExtensionOwner::User(u)) => Some(format!("user {u}")),
                            Some(ExtensionOwner::Team(t)) => Some(format!("team {t}")),
                            None => None,
                        });
                    owner.map(|o| {
                        format!(
                            "contact user {c} also names {o}: calls to it could not be told \
                             from the trunk's"
                        )
                    })
                }
            };
            if let Some(message) = problem {
                let text = sources
                    .iter()
                    .find(|s| s.name == r.file)
                    .map(|s| s.text.as_str())
                    .unwrap_or("");
                let (line, column) = crate::diagnostics::line_col(text, r.offset);
                let diagnostic = Diagnostic {
                    severity,
                    file: r.file,
                    line,
                    column,
                    key: r.key,
                    message,
                };
                match severity {
                    Severity::Error => self.errors.push(diagnostic),
                    Severity::Warning => self.policy.warnings.push(diagnostic),
                }
            }
        }
    }

    /// Loops in the destination graph: a call that would be sent round for ever.
    fn check_loops(&mut self) {
        if !self.errors.is_empty() {
            return; // references must resolve first
        }
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
        enum Node {
            User(String),
            Team(String),
        }
        let node = |t: &Target| match t {
            Target::User(u) => Some(Node::User(u.clone())),
            Target::Team(t) => Some(Node::Team(t.clone())),
            _ => None,
        };
        let mut edges: BTreeMap<Node, Vec<(Node, String)>> = BTreeMap::new();
        for u in self.policy.users.values() {
            let from = Node::User(u.id.clone());
            let mut out = Vec::new();
            let mut add = |t: &Target, via: String| {
                if let Some(n) = node(t) {
                    out.push((n, via));
                }
            };
            add(&u.no_answer, format!("users.{}.no_answer", u.id));
            add(&u.out_of_hours, format!("users.{}.out_of_hours", u.id));
            if let BusyAction::Redirect(t) = &u.busy {
                add(t, format!("users.{}.busy", u.id));
            }
            if let Some(f) = u.forwarding.as_ref().filter(|f| f.enabled) {
                for (i, t) in f.targets.iter().enumerate() {
                    add(t, format!("users.{}.forwarding.targets[{i}]", u.id));
                }
                add(&f.no_answer, format!("users.{}.forwarding.no_answer", u.id));
            }
            edges.insert(from, out);
        }
        for t in self.policy.teams.values() {
            let mut out = Vec::new();
            if let Some(n) = node(&t.no_answer) {
                out.push((n, format!("teams.{}.no_answer", t.id)));
            }
            if let Some(n) = t.out_of_hours.as_ref().and_then(node) {
                out.push((n, format!("teams.{}.out_of_hours", t.id)));
            }
            // On a team call a member's forwarding applies unless it is for direct calls only.
            for m in &t.members {
                if let Some(f) = self.policy.users.get(m).and_then(|u| u.forwarding.as_ref()) {
                    if f.enabled && !f.direct_calls_only {
                        for (i, ft) in f.targets.iter().enumerate() {
                            if let Some(n) = node(ft) {
                                out.push((
                                    n,
                                    format!(
                                        "users.{m}.forwarding.targets[{i}] (member of team {})",
                                        t.id
                                    ),
                                ));
                            }
                        }
                    }
                }
            }
            edges.insert(Node::Team(t.id.clone()), out);
        }
        // Depth-first search for cycles; each cycle reported once.
        let mut reported: HashSet<Vec<Node>> = HashSet::new();
        let mut found = Vec::new();
        for start in edges.keys() {
            let mut stack: Vec<(Node, usize)> = vec![(start.clone(), 0)];
            let mut path: Vec<(Node, String)> = Vec::new();
            let mut on_path: HashSet<Node> = HashSet::from([start.clone()]);
            while let Some((n, i)) = stack.pop() {
                let next = edges.get(&n).and_then(|v| v.get(i)).cloned();
                match next {
                    None => {
                        on_path.remove(&n);
                        path.pop();
                    }
                    Some((m, via)) => {
                        stack.push((n.clone(), i + 1));
                        if m == *start {
                            let mut cycle: Vec<Node> =
                                path.iter().map(|(x, _)| x.clone()).collect();
                            cycle.push(n.clone());
                            let mut key = cycle.clone();
                            key.sort();
                            if reported.insert(key) {
                                let mut steps: Vec<String> =
                                    path.iter().map(|(_, v)| v.clone()).collect();
                                steps.push(via.clone());
                                found.push((via, steps));
                            }
                        } else if !on_path.contains(&m) && path.len() < 64 {
                            on_path.insert(m.clone());
                            path.push((n.clone(), via));
                            stack.push((m, 0));
                        }
                    }
                }
            }
        }
        for (via, steps) in found {
            self.errors.push(Diagnostic {
                severity: Severity::Error,
                file: "-".into(),
                line: 0,
                column: 0,
                key: via,
                message: format!("routing loop: {}", steps.join(" -> ")),
            });
        }
    }
}

/// Why a team whose members hunt for `member_ring_time` s each, in `ring_time` s in all,
/// never rings some of its `members` (or rings them only at the last moment); None when
/// every member gets a turn.
fn short_hunt(
    strategy: RingStrategy,
    members: usize,
    member_ring_time: u32,
    ring_time: u32,
) -> Option<String> {
    let t = member_ring_time.max(1);
    // Members whose turn starts within the team's ring time.
    let reached = ring_time.div_ceil(t) as usize;
    if members <= 1 || reached >= members {
        return None;
    }
    let name = strategy.as_str();
    let need = t.saturating_mul(members as u32);
    let (ring, have) = if reached == 1 {
        ("rings", "has")
    } else {
        ("ring", "have")
    };
    match strategy {
        RingStrategy::RingAll => None,
        RingStrategy::Cumulative => Some(format!(
            "with strategy {name}, a member joins every {t} s: in ring_time {ring_time} s only \
             {reached} of the {members} members {have} joined before the no-answer destination \
             (the others ring for its last second); raise ring_time to {need} or lower \
             member_ring_time"
        )),
        _ => Some(format!(
            "with strategy {name}, each member rings {t} s: in ring_time {ring_time} s only \
             {reached} of the {members} members {ring} before the no-answer destination; raise \
             ring_time to {need} or lower member_ring_time"
        )),
    }
}

/// Why a team member can never ring: no SIP account to register a phone with, and no
/// forwarding that team calls follow. None when they can.
fn never_rings(user: &User) -> Option<String> {
    let forwards = user
        .forwarding
        .as_ref()
        .is_some_and(|f| f.enabled && !f.direct_calls_only && !f.targets.is_empty());
    (user.sip.is_none() && !forwards).then(|| {
        format!(
            "{} can never ring in a team call: no SIP account (users.{}.sip) to register a \
             phone with, and no forwarding that team calls follow",
            user.id, user.id
        )
    })
}

fn default_status_rule(a: Availability) -> StatusRule {
    let (direct, skip) = match a {
        Availability::Available | Availability::Away | Availability::Custom => {
            (StatusEffect::Ring, false)
        }
        Availability::Busy | Availability::DoNotDisturb => (StatusEffect::OutOfHours, true),
        Availability::Unavailable => (StatusEffect::Unavailable, true),
        Availability::OnBreak => (StatusEffect::OutOfHours, true),
        Availability::AfterCallWork => (StatusEffect::Ring, true),
    };
    StatusRule {
        direct,
        skip_in_teams: skip,
    }
}

/// The ten default profiles, numbered as the reference lists them.
/// Whether `s` looks like a mail address: `local@domain`, one `@`, both parts non-empty,
/// the domain dotted or a single label, at most 254 characters, no spaces, control
/// characters or the characters that would end a header (`<>,;"`).
pub fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    s.len() <= 254
        && !local.is_empty()
        && !domain.is_empty()
        && !domain.contains('@')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && s.chars().all(|c| {
            c.is_ascii_graphic()
                && !matches!(
                    c,
                    '<' | '>' | ',' | ';' | '"' | '(' | ')' | '[' | ']' | '\\'
                )
        })
}

pub fn default_profiles() -> Vec<Profile> {
    let p = |number: u32,
             id: &str,
             name: &str,
             availability,
             shows,
             incoming,
             message: Option<&str>,
             length: Option<u32>| Profile {
        id: id.into(),
        number,
        name: name.into(),
        shows_call_status: shows,
        availability,
        message: message.map(str::to_string),
        caller_id: None,
        incoming,
        standard_length: length,
    };
    use Availability::*;
    use IncomingHandling::*;
    vec![
        p(
            1,
            "available",
            "Available",
            Available,
            true,
            RingAsNormal,
            None,
            None,
        ),
        p(
            2,
            "lunch",
            "Lunch",
            Away,
            false,
            RingAsNormal,
            Some("At lunch"),
            Some(3600),
        ),
        p(
            3,
            "meeting",
            "Meeting",
            Busy,
            false,
            OutOfHours,
            Some("In a meeting"),
            Some(3600),
        ),
        p(
            4,
            "left_for_the_day",
            "Left for the day",
            Unavailable,
            false,
            OutOfHours,
            None,
            None,
        ),
        p(
            5,
            "holiday",
            "Holiday",
            Unavailable,
            false,
            OutOfHours,
            Some("On holiday"),
            None,
        ),
        p(
            6,
            "sick_leave",
            "Sick leave",
            Unavailable,
            false,
            OutOfHours,
            None,
            None,
        ),
        p(
            7,
            "out_of_office",
            "Out of office",
            Away,
            false,
            OutOfHours,
            Some("Out of office"),
            None,
        ),
        p(
            8,
            "business_trip",
            "Business trip",
            Away,
            false,
            RingAsNormal,
            Some("On a business trip"),
            None,
        ),
        p(
            9,
            "home_with_sick_child",
            "Home with sick child",
            Away,
            false,
            RingAsNormal,
            None,
            None,
        ),
        p(
            10,
            "training",
            "Training",
            Busy,
            false,
            OutOfHours,
            Some("In training"),
            Some(8 * 3600),
        ),
    ]
}
