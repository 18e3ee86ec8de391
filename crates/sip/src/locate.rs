//! Locating SIP servers (RFC 3263): the transport, address and port a request for a SIP URI
//! goes to, worked out from DNS answers without doing any lookup.
//!
//! A [`Locator`] is handed a [`Destination`] (what a URI names, [`Destination::from_uri`])
//! and says which DNS questions it needs answered ([`Locator::poll_query`]: a name and a
//! record type). The shell looks each up and hands the [`Answer`] back
//! ([`Locator::handle_answer`]); once every answer a resolution needs is in, it ends
//! ([`Locator::poll_resolved`]) with the targets in the order to try them ([`Resolved`]), or
//! a [`LocateError`] that says why there are none. A resolution that needs no lookup (an IP
//! address, answers still in the cache) ends at once, in [`Locator::resolve`]'s return.
//!
//! The steps (RFC 3263 §4.1, §4.2):
//! - a numeric IP address (the URI's host, or its `maddr`) needs no lookup: the URI's port,
//!   or the transport's default; the URI's transport, or UDP;
//! - a host name with a port: its A and AAAA records, at that port;
//! - a host name with a `transport` parameter: the SRV records of `_sip._<transport>.<host>`,
//!   and with none, the host's A and AAAA records at the default port;
//! - a host name alone: its NAPTR records, of those offering a transport Switchboard speaks
//!   (`SIP+D2U`, `SIP+D2T`), by order then preference, the SRV records each points to; with
//!   no usable NAPTR record, the SRV records of `_sip._udp.<host>` and `_sip._tcp.<host>`
//!   (asked together with the NAPTR question, since most domains have no NAPTR record); with
//!   no SRV record, the host's A and AAAA records at the default port, over UDP (or the
//!   transport of the first usable NAPTR record).
//!
//! Each set of SRV records is ordered as RFC 2782 says: by priority, lowest first, and
//! within a priority by a weighted random draw, from the locator's own seeded generator
//! ([`Entropy`]), so that a run replays exactly. Every SRV target's addresses follow it, IPv6
//! and IPv4 alternating (RFC 8305 §4), each with the SRV record's port. The list goes on
//! with the next NAPTR record's (or the next transport's) targets, so a request can fail
//! over to another transport too. A target appears once.
//!
//! Answers are cached for their TTL (negative answers too, RFC 2308), with the time passed
//! in, never read. Failed lookups are not cached. A target that failed (a transport error,
//! no answer, a 503) is reported with [`Locator::report_failure`]: for a while (30 s, or
//! the response's Retry-After) it goes to the end of every list made.
//!
//! `sips:` URIs and transports other than UDP and TCP (TLS, SCTP, WebSocket) are refused
//! for now ([`LocateError::Unsupported`]).

use crate::entropy::Entropy;
use crate::peer::Peer;
use crate::transport::Transport;
use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most usable NAPTR records of one name followed (each costs an SRV question).
pub const MAX_NAPTR: usize = 8;
/// Most SRV records of one set used (the lowest priorities), and most distinct SRV target
/// hosts looked up for one resolution: a name's answers cannot make the locator ask
/// hundreds of questions.
pub const MAX_SRV: usize = 16;
/// Most targets in one list.
pub const MAX_TARGETS: usize = 32;

/// The host a request goes to: a numeric address, or a name to look up.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Host {
    Ip(IpAddr),
    /// Lower-case, without a trailing dot.
    Name(String),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            Host::Ip(ip) => write!(f, "{ip}"),
            Host::Name(n) => f.write_str(n),
        }
    }
}

/// What a SIP URI says about where requests for it go (RFC 3263 §4: the TARGET, its port
/// and transport).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Destination {
    /// A `sips:` URI (TLS all the way).
    pub secure: bool,
    /// The `maddr` parameter when there is one, else the URI's host.
    pub host: Host,
    pub port: Option<u16>,
    /// The `transport` parameter.
    pub transport: Option<Transport>,
}

impl Destination {
    /// Reads what RFC 3263 needs of a `sip:` or `sips:` URI (angle brackets allowed around
    /// it): the host (or `maddr`), the port and the `transport` parameter. A transport
    /// Switchboard does not speak is an error, not a fallback to another one.
    pub fn from_uri(uri: &str) -> Result<Destination, LocateError> {
        let bad = |why: &str| LocateError::BadUri {
            uri: uri.chars().take(200).collect(),
            why: why.to_string(),
        };
        let text = crate::proxy::strip_angle(uri);
        let (scheme, rest) = text.split_once(':').ok_or_else(|| bad("no scheme"))?;
        let secure = if scheme.eq_ignore_ascii_case("sip") {
            false
        } else if scheme.eq_ignore_ascii_case("sips") {
            true
        } else {
            return Err(bad("not a sip: or sips: URI"));
        };
        // Headers (`?…`) say nothing about where the request goes; the user part (which
        // may hold ';' and ':') ends at the last '@' before them.
        let rest = rest.split_once('?').map_or(rest, |(r, _)| r);
        let rest = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
        let (host_port, params) = rest.split_once(';').unwrap_or((rest, ""));
        let (host, port) = split_host_port(host_port).ok_or_else(|| bad("no host"))?;
        let port = match port {
            None => None,
            Some(p) => match p.parse::<u16>() {
                Ok(p) if p > 0 => Some(p),
                _ => return Err(bad("the port is not a number from 1 to 65535")),
            },
        };
        let mut transport = None;
        let mut maddr = None;
        for param in params.split(';') {
            let (name, value) = param.split_once('=').unwrap_or((param, ""));
            let (name, value) = (name.trim(), value.trim());
            if name.eq_ignore_ascii_case("transport") {
                transport = Some(Transport::from_param(value).ok_or_else(|| {
                    LocateError::Unsupported(format!("transport {:?}", value.to_ascii_lowercase()))
                })?);
            } else if name.eq_ignore_ascii_case("maddr") {
                maddr = Some(value);
            }
        }
        let host = match maddr {
            Some(m) => parse_host(m).ok_or_else(|| bad("the maddr parameter is not a host"))?,
            None => parse_host(host).ok_or_else(|| bad("the host is not an address or a name"))?,
        };
        Ok(Destination {
            secure,
            host,
            port,
            transport,
        })
    }
}

/// `host[:port]`, the host of an IPv6 address without its brackets.
fn split_host_port(s: &str) -> Option<(&str, Option<&str>)> {
    let s = s.trim();
    if let Some(v6) = s.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        return Some((host, port));
    }
    let (host, port) = match s.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (s, None),
    };
    (!host.is_empty()).then_some((host, port))
}

/// A host as it may appear in a URI or a `maddr` parameter: an IP address (IPv6 in brackets
/// or not) or a host name.
fn parse_host(s: &str) -> Option<Host> {
    let bare = s.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Some(Host::Ip(ip));
    }
    normalize_name(s).map(Host::Name)
}

/// A host name in the form the locator keys it by: lower-case, no trailing dot. `None` for
/// a name DNS could not hold (labels of letters, digits, '-' and '_', 1 to 63 characters
/// each, 253 in all).
pub fn normalize_name(name: &str) -> Option<String> {
    let name = name.strip_suffix('.').unwrap_or(name);
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    ok.then(|| name.to_ascii_lowercase())
}

/// Where to send a request: a transport and an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    pub transport: Transport,
    pub addr: SocketAddr,
}

impl Target {
    /// The peer to hand the transport layer (no connection named: a stream transport
    /// reuses one open to the address, or opens one).
    pub fn peer(self) -> Peer {
        Peer {
            transport: self.transport,
            addr: self.addr,
            conn: None,
            local: None,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.transport, self.addr)
    }
}

/// The DNS record types RFC 3263 uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecordType {
    Naptr,
    Srv,
    A,
    Aaaa,
}

impl fmt::Display for RecordType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RecordType::Naptr => "NAPTR",
            RecordType::Srv => "SRV",
            RecordType::A => "A",
            RecordType::Aaaa => "AAAA",
        })
    }
}

/// One DNS question: the records of one type at one name (lower-case, no trailing dot;
/// the name is meant as fully qualified).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Query {
    pub name: String,
    pub record_type: RecordType,
}

impl Query {
    pub fn new(name: impl Into<String>, record_type: RecordType) -> Query {
        Query {
            name: name.into(),
            record_type,
        }
    }

    /// The SRV question for SIP over `transport` at `domain`.
    fn srv(transport: Transport, domain: &str) -> Query {
        Query::new(
            format!("_sip.{}.{domain}", transport.srv_label()),
            RecordType::Srv,
        )
    }
}

impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.record_type, self.name)
    }
}

/// A NAPTR record (RFC 3403 §4.1); texts as received (case is compared without regard).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Naptr {
    pub order: u16,
    pub preference: u16,
    pub flags: String,
    pub services: String,
    pub regexp: String,
    /// The name to look up next (for flag "S": an SRV name).
    pub replacement: String,
}

/// An SRV record (RFC 2782). A target of "." (or empty) says the service is not offered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Srv {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    pub target: String,
}

/// One record of an answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    Naptr(Naptr),
    Srv(Srv),
    /// An A or AAAA record.
    Ip(IpAddr),
}

/// What a DNS lookup gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The records of the question's type (records of other types are ignored), which may be
    /// kept for `ttl` (the lowest TTL among them).
    Records { records: Vec<Record>, ttl: Duration },
    /// The name does not exist, or has no record of that type: kept for `ttl` (the negative
    /// TTL of the zone's SOA record, RFC 2308; `None` when the answer carried none).
    NoRecords { ttl: Option<Duration> },
    /// The lookup failed (no answer in time, a server failure, a refusal): nothing is
    /// known, and nothing is cached.
    Failed(String),
}

/// Why a URI has no targets.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LocateError {
    #[error("cannot route to {uri:?}: {why}")]
    BadUri { uri: String, why: String },
    #[error("{0} is not supported yet (Switchboard speaks SIP over UDP and TCP)")]
    Unsupported(String),
    #[error("{0} has no SIP server in DNS: no NAPTR or SRV record for SIP, and no address")]
    NoSuchName(String),
    #[error("{0} offers no SIP service (its SRV records point to \".\")")]
    NotOffered(String),
    #[error("the DNS lookup of {query} failed: {why}")]
    Failed { query: Query, why: String },
}

/// The targets of a URI, in the order to try them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// Never empty. Targets that failed lately come last.
    pub targets: Vec<Target>,
    /// When the first DNS answer behind the list expires: a list kept (a trunk's addresses)
    /// is to be resolved anew then. `None` for a numeric address, which never changes.
    pub valid_until: Option<Instant>,
}

/// The outcome of [`Locator::resolve`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// Known at once: no lookup was needed.
    Done(Result<Resolved, LocateError>),
    /// Lookups are needed; the outcome comes from [`Locator::poll_resolved`] with this id.
    Pending(ResolutionId),
}

/// Names a resolution under way.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResolutionId(pub u64);

/// How the locator works.
#[derive(Clone, Debug)]
pub struct LocatorConfig {
    /// Which address families targets may have (A records are asked only with `ipv4`, AAAA
    /// only with `ipv6`): those the daemon has sockets for. At least one.
    pub ipv4: bool,
    pub ipv6: bool,
    /// How long a failed target stays at the end of the lists without a Retry-After.
    pub block_for: Duration,
    /// The longest a Retry-After can keep a target there.
    pub max_block: Duration,
    /// How long a negative answer without a TTL of its own is kept.
    pub negative_ttl: Duration,
    /// The longest any answer is kept, whatever its TTL.
    pub max_ttl: Duration,
    /// Most answers cached (beyond it, new answers are used but not kept), and most
    /// targets remembered as failed.
    pub max_entries: usize,
}

impl Default for LocatorConfig {
    fn default() -> Self {
        LocatorConfig {
            ipv4: true,
            ipv6: true,
            block_for: Duration::from_secs(30),
            max_block: Duration::from_secs(3600),
            negative_ttl: Duration::from_secs(30),
            max_ttl: Duration::from_secs(86_400),
            max_entries: 10_000,
        }
    }
}

/// An answer kept in the cache.
#[derive(Debug)]
struct Cached {
    answer: Arc<Answer>,
    expires: Instant,
}

/// An answer a resolution has seen: it keeps it until it ends, whatever its TTL.
#[derive(Clone, Debug)]
struct Seen {
    answer: Arc<Answer>,
    /// `None` for a failed lookup.
    expires: Option<Instant>,
}

/// A resolution waiting for answers.
#[derive(Debug)]
struct Pending {
    dest: Destination,
    /// Asks every question anew ([`Locator::refresh`]): the cache is not read.
    fresh: bool,
    seen: HashMap<Query, Seen>,
    /// The questions its last evaluation was missing.
    needs: Vec<Query>,
}

/// RFC 3263 server location with a cache of DNS answers and a list of failed targets: see
/// the module's documentation.
///
/// Drive it by calling [`Locator::resolve`], then handing out every [`Locator::poll_query`]
/// and answering each (exactly once, also when the lookup failed or timed out) with
/// [`Locator::handle_answer`], then taking the outcomes from [`Locator::poll_resolved`].
/// The same question is asked once however many resolutions wait for it.
#[derive(Debug)]
pub struct Locator {
    config: LocatorConfig,
    rng: Entropy,
    cache: HashMap<Query, Cached>,
    blocked: HashMap<Target, Instant>,
    pending: HashMap<ResolutionId, Pending>,
    /// Questions handed out and not answered yet.
    in_flight: HashSet<Query>,
    /// Who waits for each question.
    waiting: HashMap<Query, Vec<ResolutionId>>,
    queries: VecDeque<Query>,
    resolved: VecDeque<(ResolutionId, Result<Resolved, LocateError>)>,
    next_id: u64,
}

impl Locator {
    pub fn new(mut config: LocatorConfig, rng: Entropy) -> Locator {
        if !config.ipv4 && !config.ipv6 {
            (config.ipv4, config.ipv6) = (true, true);
        }
        Locator {
            config,
            rng,
            cache: HashMap::new(),
            blocked: HashMap::new(),
            pending: HashMap::new(),
            in_flight: HashSet::new(),
            waiting: HashMap::new(),
            queries: VecDeque::new(),
            resolved: VecDeque::new(),
            next_id: 0,
        }
    }

    pub fn config(&self) -> &LocatorConfig {
        &self.config
    }

    /// Starts working out the targets of `dest`.
    pub fn resolve(&mut self, dest: &Destination, now: Instant) -> Resolution {
        self.start(dest, false, now)
    }

    /// [`Locator::resolve`] without the cache: every question is asked anew (one already
    /// in flight is waited for), and the answers replace those cached. For a list kept
    /// and refreshed shortly before its answers run out, when the cache would only give
    /// them back. Always [`Resolution::Pending`] for a host name.
    pub fn refresh(&mut self, dest: &Destination, now: Instant) -> Resolution {
        self.start(dest, true, now)
    }

    fn start(&mut self, dest: &Destination, fresh: bool, now: Instant) -> Resolution {
        let id = ResolutionId(self.next_id);
        self.next_id += 1;
        let mut pending = Pending {
            dest: dest.clone(),
            fresh,
            seen: HashMap::new(),
            needs: Vec::new(),
        };
        match self.evaluate(id, &mut pending, now) {
            Some(outcome) => Resolution::Done(outcome),
            None => {
                self.pending.insert(id, pending);
                Resolution::Pending(id)
            }
        }
    }

    /// [`Locator::resolve`] for a URI as written.
    pub fn resolve_uri(&mut self, uri: &str, now: Instant) -> Resolution {
        match Destination::from_uri(uri) {
            Ok(dest) => self.resolve(&dest, now),
            Err(e) => Resolution::Done(Err(e)),
        }
    }

    /// The next DNS question to look up.
    pub fn poll_query(&mut self) -> Option<Query> {
        self.queries.pop_front()
    }

    /// The answer to a question handed out by [`Locator::poll_query`].
    pub fn handle_answer(&mut self, query: Query, answer: Answer, now: Instant) {
        self.in_flight.remove(&query);
        let expires = match &answer {
            Answer::Records { ttl, .. } => Some(now + (*ttl).min(self.config.max_ttl)),
            Answer::NoRecords { ttl } => Some(
                now + ttl
                    .unwrap_or(self.config.negative_ttl)
                    .min(self.config.max_ttl),
            ),
            Answer::Failed(_) => None,
        };
        let answer = Arc::new(answer);
        if let Some(expires) = expires.filter(|e| *e > now) {
            if self.cache.len() >= self.config.max_entries && !self.cache.contains_key(&query) {
                self.cache.retain(|_, c| c.expires > now);
            }
            if self.cache.len() < self.config.max_entries || self.cache.contains_key(&query) {
                self.cache.insert(
                    query.clone(),
                    Cached {
                        answer: answer.clone(),
                        expires,
                    },
                );
            }
        }
        let Some(ids) = self.waiting.remove(&query) else {
            return;
        };
        for id in ids {
            let Some(mut pending) = self.pending.remove(&id) else {
                continue; // ended or cancelled
            };
            pending.seen.insert(
                query.clone(),
                Seen {
                    answer: answer.clone(),
                    expires,
                },
            );
            if !pending.needs.contains(&query) {
                self.pending.insert(id, pending); // asked speculatively, not needed now
                continue;
            }
            match self.evaluate(id, &mut pending, now) {
                Some(outcome) => self.resolved.push_back((id, outcome)),
                None => {
                    self.pending.insert(id, pending);
                }
            }
        }
    }

    /// The next resolution that ended.
    pub fn poll_resolved(&mut self) -> Option<(ResolutionId, Result<Resolved, LocateError>)> {
        self.resolved.pop_front()
    }

    /// Forgets a resolution nobody waits for any more (its questions are still answered).
    pub fn cancel(&mut self, id: ResolutionId) {
        self.pending.remove(&id);
    }

    /// Resolutions waiting for answers.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// A request to `target` failed (a transport error, no response in time, a 503): lists
    /// made until `retry_after` (a 503's Retry-After, at most `max_block`) or else
    /// `block_for` from now put it last. A later failure never shortens the time.
    pub fn report_failure(&mut self, target: Target, retry_after: Option<Duration>, now: Instant) {
        let until = now
            + retry_after
                .map(|r| r.min(self.config.max_block))
                .unwrap_or(self.config.block_for);
        if self.blocked.len() >= self.config.max_entries && !self.blocked.contains_key(&target) {
            self.blocked.retain(|_, u| *u > now);
            if self.blocked.len() >= self.config.max_entries {
                return;
            }
        }
        let e = self.blocked.entry(target).or_insert(until);
        *e = (*e).max(until);
    }

    /// A request to `target` got a response: it is no longer put last.
    pub fn report_success(&mut self, target: Target) {
        self.blocked.remove(&target);
    }

    /// Until when `target` is put last, if it is.
    pub fn blocked_until(&self, target: Target, now: Instant) -> Option<Instant> {
        self.blocked.get(&target).copied().filter(|u| *u > now)
    }

    /// Drops expired answers and blocks (otherwise dropped only when the tables are full).
    pub fn expire(&mut self, now: Instant) {
        self.cache.retain(|_, c| c.expires > now);
        self.blocked.retain(|_, u| *u > now);
    }

    /// Answers cached (expired ones included until [`Locator::expire`]).
    pub fn cached(&self) -> usize {
        self.cache.len()
    }

    /// Evaluates a resolution with the answers it has: its outcome, or `None` when it still
    /// needs answers (its questions are then handed out and it is registered as waiting).
    fn evaluate(
        &mut self,
        id: ResolutionId,
        pending: &mut Pending,
        now: Instant,
    ) -> Option<Result<Resolved, LocateError>> {
        let mut eval = Eval {
            seen: &mut pending.seen,
            cache: (!pending.fresh).then_some(&self.cache),
            now,
            needs: Vec::new(),
            used: Vec::new(),
            failures: Vec::new(),
            not_offered: false,
            config: &self.config,
        };
        let step = eval.run(&pending.dest);
        let Eval {
            needs,
            used,
            failures,
            not_offered,
            ..
        } = eval;
        let groups = match step {
            Step::Need => {
                debug_assert!(!needs.is_empty());
                self.wait_for(id, &needs);
                pending.needs = needs;
                return None;
            }
            Step::Error(e) => return Some(Err(e)),
            Step::Ready(groups) => groups,
        };
        let targets = self.order(groups, now);
        if targets.is_empty() {
            let name = pending.dest.host.to_string();
            return Some(Err(match failures.into_iter().next() {
                Some((query, why)) => LocateError::Failed { query, why },
                None if not_offered => LocateError::NotOffered(name),
                None => LocateError::NoSuchName(name),
            }));
        }
        let valid_until = used
            .iter()
            .filter_map(|q| pending.seen.get(q).and_then(|s| s.expires))
            .min();
        let valid_until = match pending.dest.host {
            Host::Ip(_) => None,
            Host::Name(_) => Some(valid_until.unwrap_or(now)),
        };
        Some(Ok(Resolved {
            targets,
            valid_until,
        }))
    }

    /// The targets of the groups, in order: each group's entries as RFC 2782 orders them,
    /// each entry's addresses; duplicates dropped, at most [`MAX_TARGETS`], then those
    /// that failed lately moved to the end.
    fn order(&mut self, groups: Vec<Group>, now: Instant) -> Vec<Target> {
        let mut targets: Vec<Target> = Vec::new();
        for group in groups {
            for entry in rfc2782_order(group.entries, &mut self.rng) {
                for ip in entry.addrs {
                    let t = Target {
                        transport: group.transport,
                        addr: SocketAddr::new(ip, entry.port),
                    };
                    if !targets.contains(&t) && targets.len() < MAX_TARGETS {
                        targets.push(t);
                    }
                }
            }
        }
        let (mut ok, blocked): (Vec<Target>, Vec<Target>) = targets
            .into_iter()
            .partition(|t| self.blocked_until(*t, now).is_none());
        ok.extend(blocked);
        ok
    }
}

impl Locator {
    /// Registers the questions a resolution waits for; hands out those not asked yet.
    fn wait_for(&mut self, id: ResolutionId, needs: &[Query]) {
        for q in needs {
            if self.in_flight.insert(q.clone()) {
                self.queries.push_back(q.clone());
            }
            let waiters = self.waiting.entry(q.clone()).or_default();
            if !waiters.contains(&id) {
                waiters.push(id);
            }
        }
    }
}

/// Where a resolution stands.
enum Step {
    /// Answers are missing (listed in `Eval::needs`).
    Need,
    Error(LocateError),
    /// Every answer is in: the groups of targets, in order.
    Ready(Vec<Group>),
}

/// Targets over one transport, from one set of SRV records (or one host's addresses).
#[derive(Debug)]
struct Group {
    transport: Transport,
    entries: Vec<Entry>,
}

/// An SRV record with its target's addresses (or a host's addresses at one port).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    priority: u16,
    weight: u16,
    port: u16,
    addrs: Vec<IpAddr>,
}

/// One evaluation of a resolution against the answers it has seen and the cache.
struct Eval<'a> {
    seen: &'a mut HashMap<Query, Seen>,
    /// None: the cache is not read (a refresh).
    cache: Option<&'a HashMap<Query, Cached>>,
    now: Instant,
    config: &'a LocatorConfig,
    /// Questions whose answers are missing.
    needs: Vec<Query>,
    /// Questions whose answers were used.
    used: Vec<Query>,
    /// Lookups that failed, in the order met.
    failures: Vec<(Query, String)>,
    /// An SRV set said the service is not offered.
    not_offered: bool,
}

impl Eval<'_> {
    /// The answer to `q` if the resolution has it (seen before, or fresh in the cache);
    /// else `q` is noted as needed.
    fn get(&mut self, q: Query) -> Option<Arc<Answer>> {
        let answer = match self.seen.get(&q) {
            Some(s) => s.answer.clone(),
            None => match self
                .cache
                .and_then(|cache| cache.get(&q))
                .filter(|c| c.expires > self.now)
            {
                Some(c) => {
                    self.seen.insert(
                        q.clone(),
                        Seen {
                            answer: c.answer.clone(),
                            expires: Some(c.expires),
                        },
                    );
                    c.answer.clone()
                }
                None => {
                    if !self.needs.contains(&q) {
                        self.needs.push(q);
                    }
                    return None;
                }
            },
        };
        if let Answer::Failed(why) = &*answer {
            if !self.failures.iter().any(|(f, _)| *f == q) {
                self.failures.push((q.clone(), why.clone()));
            }
        }
        if !self.used.contains(&q) {
            self.used.push(q);
        }
        Some(answer)
    }

    fn run(&mut self, dest: &Destination) -> Step {
        if dest.secure {
            return Step::Error(LocateError::Unsupported("sips: (SIP over TLS)".into()));
        }
        let name = match &dest.host {
            Host::Ip(ip) => {
                let transport = dest.transport.unwrap_or(Transport::Udp);
                let port = dest.port.unwrap_or(transport.default_port());
                return Step::Ready(vec![Group {
                    transport,
                    entries: vec![entry(port, vec![*ip])],
                }]);
            }
            Host::Name(n) => n.clone(),
        };
        if let Some(port) = dest.port {
            // §4.2: a port but no numeric address: A/AAAA only.
            let transport = dest.transport.unwrap_or(Transport::Udp);
            return match self.addresses(&name) {
                None => Step::Need,
                Some(addrs) => Step::Ready(vec![Group {
                    transport,
                    entries: vec![entry(port, addrs)],
                }]),
            };
        }
        if let Some(transport) = dest.transport {
            return self.srv_then_addresses(&name, &[(transport, Query::srv(transport, &name))]);
        }
        // NAPTR, with the SRV questions of the fallback asked at the same time.
        let naptr = self.get(Query::new(name.clone(), RecordType::Naptr));
        let fallback: Vec<(Transport, Query)> = Transport::ALL
            .into_iter()
            .map(|t| (t, Query::srv(t, &name)))
            .collect();
        let Some(naptr) = naptr else {
            for (_, q) in &fallback {
                self.get(q.clone());
            }
            return Step::Need;
        };
        let usable = usable_naptr(&naptr);
        if usable.is_empty() {
            self.srv_then_addresses(&name, &fallback)
        } else {
            self.srv_then_addresses(&name, &usable)
        }
    }

    /// The targets of SRV sets (one per transport, in order); when none of the sets has
    /// a record and none failed, the name's addresses at the default port of the first
    /// transport (§4.2).
    fn srv_then_addresses(&mut self, name: &str, sets: &[(Transport, Query)]) -> Step {
        let mut answers = Vec::new();
        for (t, q) in sets {
            if let Some(a) = self.get(q.clone()) {
                answers.push((*t, a));
            }
        }
        if answers.len() < sets.len() {
            return Step::Need;
        }
        let mut found_any = false;
        let mut failed_any = false;
        let mut srv_sets: Vec<(Transport, Vec<Srv>)> = Vec::new();
        for (t, a) in &answers {
            match &**a {
                Answer::Records { records, .. } => {
                    let set = usable_srv(records);
                    let offered = set.iter().any(|s| s.target != ".");
                    found_any |= !set.is_empty();
                    self.not_offered |= !set.is_empty() && !offered;
                    srv_sets.push((*t, set.into_iter().filter(|s| s.target != ".").collect()));
                }
                Answer::NoRecords { .. } => {}
                Answer::Failed(_) => failed_any = true,
            }
        }
        if !found_any {
            if failed_any {
                return Step::Ready(Vec::new()); // the failure is the error
            }
            let transport = sets[0].0;
            return match self.addresses(name) {
                None => Step::Need,
                Some(addrs) => Step::Ready(vec![Group {
                    transport,
                    entries: vec![entry(transport.default_port(), addrs)],
                }]),
            };
        }
        // The SRV targets' addresses, each host looked up once, at most MAX_SRV hosts.
        let mut hosts: Vec<String> = Vec::new();
        for (_, set) in &srv_sets {
            for s in set {
                if !hosts.contains(&s.target) && hosts.len() < MAX_SRV {
                    hosts.push(s.target.clone());
                }
            }
        }
        let mut addrs: HashMap<String, Vec<IpAddr>> = HashMap::new();
        let mut missing = false;
        for h in &hosts {
            match h.parse::<IpAddr>() {
                Ok(ip) => {
                    addrs.insert(h.clone(), vec![ip]);
                }
                Err(_) => match self.addresses(h) {
                    Some(a) => {
                        addrs.insert(h.clone(), a);
                    }
                    None => missing = true,
                },
            }
        }
        if missing {
            return Step::Need;
        }
        let groups = srv_sets
            .into_iter()
            .map(|(transport, set)| Group {
                transport,
                entries: set
                    .into_iter()
                    .filter_map(|s| {
                        let a = addrs.get(&s.target)?;
                        Some(Entry {
                            priority: s.priority,
                            weight: s.weight,
                            port: s.port,
                            addrs: a.clone(),
                        })
                    })
                    .collect(),
            })
            .collect();
        Step::Ready(groups)
    }

    /// A host's addresses (A and AAAA, as the families allow), IPv6 and IPv4 alternating;
    /// `None` while an answer is missing. A failed lookup counts as no address (and is
    /// remembered for the error, should nothing be found).
    fn addresses(&mut self, host: &str) -> Option<Vec<IpAddr>> {
        let v6 = if self.config.ipv6 {
            Some(self.get(Query::new(host, RecordType::Aaaa)))
        } else {
            None
        };
        let v4 = if self.config.ipv4 {
            Some(self.get(Query::new(host, RecordType::A)))
        } else {
            None
        };
        let ips = |a: Option<Option<Arc<Answer>>>, want_v6: bool| -> Option<Vec<IpAddr>> {
            match a {
                None => Some(Vec::new()),
                Some(None) => None,
                Some(Some(a)) => Some(match &*a {
                    Answer::Records { records, .. } => {
                        let mut out = Vec::new();
                        for r in records {
                            if let Record::Ip(ip) = r {
                                if ip.is_ipv6() == want_v6 && !out.contains(ip) {
                                    out.push(*ip);
                                }
                            }
                        }
                        out
                    }
                    _ => Vec::new(),
                }),
            }
        };
        let (v6, v4) = (ips(v6, true), ips(v4, false));
        let (v6, v4) = (v6?, v4?);
        let mut out = Vec::with_capacity(v6.len() + v4.len());
        let (mut a, mut b) = (v6.into_iter(), v4.into_iter());
        loop {
            match (a.next(), b.next()) {
                (None, None) => break,
                (x, y) => out.extend(x.into_iter().chain(y)),
            }
        }
        Some(out)
    }
}

fn entry(port: u16, addrs: Vec<IpAddr>) -> Entry {
    Entry {
        priority: 0,
        weight: 0,
        port,
        addrs,
    }
}

/// The NAPTR records a `sip:` URI can use (§4.1): flag "S" (an SRV name follows), no
/// regular expression, a service of a transport Switchboard speaks; by order, then
/// preference (RFC 3403 §4.1), as (transport, SRV question), at most [`MAX_NAPTR`].
fn usable_naptr(answer: &Answer) -> Vec<(Transport, Query)> {
    let Answer::Records { records, .. } = answer else {
        return Vec::new();
    };
    let mut usable: Vec<(u16, u16, Transport, Query)> = Vec::new();
    for r in records {
        let Record::Naptr(n) = r else { continue };
        if !n.flags.eq_ignore_ascii_case("s") || !n.regexp.is_empty() {
            continue;
        }
        let Some(transport) = Transport::ALL
            .into_iter()
            .find(|t| t.naptr_service().eq_ignore_ascii_case(n.services.trim()))
        else {
            continue; // SIPS+D2T (TLS), SIP+D2S (SCTP), SIP+D2W (WebSocket), other services
        };
        let Some(name) = normalize_name(&n.replacement) else {
            continue;
        };
        let q = Query::new(name, RecordType::Srv);
        if !usable.iter().any(|(_, _, t, u)| *t == transport && *u == q) {
            usable.push((n.order, n.preference, transport, q));
        }
    }
    usable.sort_by_key(|(order, preference, _, _)| (*order, *preference));
    usable
        .into_iter()
        .take(MAX_NAPTR)
        .map(|(_, _, t, q)| (t, q))
        .collect()
}

/// The SRV records of an answer with a readable target (normalized; "." stays "."), the
/// same target and port once (at its lowest priority), the [`MAX_SRV`] of the lowest
/// priorities.
fn usable_srv(records: &[Record]) -> Vec<Srv> {
    let mut srvs: Vec<&Srv> = records
        .iter()
        .filter_map(|r| match r {
            Record::Srv(s) => Some(s),
            _ => None,
        })
        .collect();
    srvs.sort_by_key(|s| s.priority); // stable: the answer's order within a priority
    let mut set: Vec<Srv> = Vec::new();
    for s in srvs {
        let target = match s.target.trim() {
            "" | "." => ".".to_string(),
            t => match normalize_name(t) {
                Some(t) => t,
                None => continue,
            },
        };
        if set.iter().any(|x| x.target == target && x.port == s.port) {
            continue;
        }
        set.push(Srv {
            target,
            ..s.clone()
        });
    }
    set.truncate(MAX_SRV);
    set
}

/// RFC 2782's order: priority ascending; within a priority, repeatedly a weighted random
/// pick among those left (those of weight 0 placed first, so they have a small chance to
/// come first: a draw of 0).
fn rfc2782_order(mut entries: Vec<Entry>, rng: &mut Entropy) -> Vec<Entry> {
    entries.sort_by_key(|e| (e.priority, e.weight != 0)); // stable
    let mut out = Vec::with_capacity(entries.len());
    let mut rest = entries.into_iter().peekable();
    while let Some(first) = rest.next() {
        let mut same = vec![first];
        while let Some(e) = rest.next_if(|e| e.priority == same[0].priority) {
            same.push(e);
        }
        while !same.is_empty() {
            let total: u64 = same.iter().map(|e| u64::from(e.weight)).sum();
            let draw = rng.up_to(total);
            let mut sum = 0u64;
            let pick = same
                .iter()
                .position(|e| {
                    sum += u64::from(e.weight);
                    sum >= draw
                })
                .unwrap_or(0);
            out.push(same.remove(pick));
        }
    }
    out
}

#[cfg(test)]
#[path = "locate_tests.rs"]
mod tests;
