//! Trunks' sources given by host name (`sources = ["sbc.carrier.example"]`): their
//! addresses, looked up and kept fresh, so that a request from one of them is the trunk's
//! exactly as one from a listed network.
//!
//! Carriers publish their session border controllers by name, and the addresses behind a
//! name change. Every distinct name among the policy's trunks' sources (at most
//! [`MAX_SOURCE_NAMES`]) has an entry here:
//!
//! - **Looked up** at start and when a reload brings it (its A and AAAA records, as the
//!   listeners' families allow, through the core's locator: [`Locating::resolve_addresses`],
//!   so the lookup leaves the core as an `Output::Lookup` and never waits on its turn). A
//!   name a reload drops is forgotten, its lookup under way with it.
//! - **Refreshed** shortly before its answer's TTL runs out ([`refresh_at`]: a tenth of the
//!   TTL early, at most [`REFRESH_LEAD_MAX`], never sooner than [`MIN_INTERVAL`] after the
//!   last answer), asking anew rather than from the cache. The addresses held stay the
//!   trunk's until the new answer replaces them.
//! - **A failed lookup** (no answer from the servers, a server failure) changes nothing
//!   at once: the last addresses stay the trunk's until [`KEEP_STALE`] past their TTL, and
//!   one warning says so; the lookup is tried again after [`RETRY_FIRST`], doubling up to
//!   [`RETRY_MAX`]. When no answer has come by then, the addresses are dropped (one more
//!   warning). A name that has no address (NXDOMAIN, or no A or AAAA record) is an answer:
//!   its addresses go at once.
//!
//! Until a name's first answer, requests from its addresses are from an unknown source
//! (challenged like anyone's). Answers are bounded by the locator's own limits (at most
//! [`switchboard_sip::locate::MAX_TARGETS`] addresses a name).
//!
//! A sub-machine of the core: its own table, no reference back; the core hands it the
//! policy and the locator, and reads [`TrunkSources::trunk_for`] (through
//! `Ctx::trunk_for_source`) wherever a request's source may make it a trunk's.

use super::locating::{Located, Locating, Waiter};
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::{Duration, Instant};
use switchboard_policy::{Policy, Trunk, MAX_SOURCE_NAMES};
use switchboard_sip::locate::{LocateError, ResolutionId, Resolved};

/// The most a refresh goes before the answer's TTL runs out.
pub(crate) const REFRESH_LEAD_MAX: Duration = Duration::from_secs(10);
/// Never asked again sooner than this after an answer, however short its TTL (bounds the
/// lookups to one per name per second).
pub(crate) const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// After a failed lookup (or a name without address): the first wait before asking again,
/// doubled after every failure in a row up to [`RETRY_MAX`].
pub(crate) const RETRY_FIRST: Duration = Duration::from_secs(2);
pub(crate) const RETRY_MAX: Duration = Duration::from_secs(60);
/// How long past their TTL the last addresses of a name whose lookups fail stay the trunk's.
pub(crate) const KEEP_STALE: Duration = Duration::from_secs(5 * 60);

/// When a name answered at `now`, with an answer good until `valid_until`, is asked
/// again: a tenth of its TTL before it runs out (at most [`REFRESH_LEAD_MAX`] before),
/// never sooner than [`MIN_INTERVAL`] from now.
pub(crate) fn refresh_at(now: Instant, valid_until: Instant) -> Instant {
    let ttl = valid_until.saturating_duration_since(now);
    let lead = (ttl / 10).min(REFRESH_LEAD_MAX);
    (valid_until - lead).max(now + MIN_INTERVAL)
}

/// `RETRY_FIRST` doubled for every failure in a row after the first, at most `RETRY_MAX`.
fn retry_after(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    RETRY_FIRST.saturating_mul(1 << doublings).min(RETRY_MAX)
}

/// One source name as `GET /v1/trunks` and `switchboard trunks` show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceNameStatus {
    pub name: String,
    /// The addresses requests from which are the trunk's now (none before the first
    /// answer, and once the last ones were dropped).
    pub addresses: Vec<IpAddr>,
    /// Why the last lookup gave no address (kept until one does).
    pub error: Option<String>,
}

/// One name and what is known of it.
struct Entry {
    name: String,
    /// The trunks that list it (for the log).
    trunks: Vec<String>,
    /// Its addresses now (canonical: no IPv4-mapped IPv6).
    addrs: Vec<IpAddr>,
    /// When the answer behind `addrs` ran or runs out (None: no answer yet).
    valid_until: Option<Instant>,
    /// When it is asked next (None while a lookup is under way).
    next: Option<Instant>,
    resolving: Option<ResolutionId>,
    /// Why the last lookup gave no address.
    error: Option<String>,
    /// Failed lookups in a row.
    failures: u32,
}

impl Entry {
    /// When its addresses stop being the trunk's unless an answer comes first.
    fn drop_at(&self) -> Option<Instant> {
        if self.addrs.is_empty() {
            return None;
        }
        self.valid_until.map(|v| v + KEEP_STALE)
    }
}

/// The trunks' source names (see the module's documentation).
pub(crate) struct TrunkSources {
    entries: BTreeMap<u64, Entry>,
    by_name: HashMap<String, u64>,
    /// Each address any name has now → those names.
    by_addr: HashMap<IpAddr, Vec<String>>,
    next_key: u64,
}

impl TrunkSources {
    pub(crate) fn new() -> Self {
        TrunkSources {
            entries: BTreeMap::new(),
            by_name: HashMap::new(),
            by_addr: HashMap::new(),
            next_key: 1,
        }
    }

    /// The trunk a request from `ip` belongs to by its source: the first trunk (in id
    /// order, as [`Policy::trunk_for_source`]) with a network that contains it or a
    /// source name that has it among its addresses now.
    pub(crate) fn trunk_for<'p>(&self, policy: &'p Policy, ip: IpAddr) -> Option<&'p Trunk> {
        let ip = ip.to_canonical();
        let Some(names) = self.by_addr.get(&ip) else {
            return policy.trunk_for_source(ip);
        };
        policy.trunks().find(|t| {
            t.sources.iter().any(|n| n.contains(ip))
                || t.source_names.iter().any(|n| names.contains(n))
        })
    }

    /// What is known of `trunk`'s source names, in the policy's order.
    pub(crate) fn status(&self, trunk: &Trunk) -> Vec<SourceNameStatus> {
        trunk
            .source_names
            .iter()
            .map(|name| {
                let e = self.by_name.get(name).and_then(|k| self.entries.get(k));
                SourceNameStatus {
                    name: name.clone(),
                    addresses: e.map(|e| e.addrs.clone()).unwrap_or_default(),
                    error: e.and_then(|e| e.error.clone()),
                }
            })
            .collect()
    }

    /// When [`TrunkSources::timeout`] must run next: a name due to be asked, or addresses
    /// kept past their TTL to drop.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.entries
            .values()
            .flat_map(|e| [e.next, e.drop_at()])
            .flatten()
            .min()
    }

    /// Takes in the policy (at start, and after every reload): names it brings are due at
    /// once (looked up at the next [`TrunkSources::timeout`]); names it no longer lists
    /// are forgotten.
    pub(crate) fn sync(&mut self, policy: &Policy, locating: &mut Locating, now: Instant) {
        let mut wanted: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for t in policy.trunks() {
            for name in &t.source_names {
                if !wanted.contains_key(name.as_str()) && wanted.len() >= MAX_SOURCE_NAMES {
                    if switchboard_sip::log_limit::allow("too many trunk source names") {
                        tracing::warn!(name, trunk = %t.id, max = MAX_SOURCE_NAMES, "trunk source name not looked up: too many names");
                    }
                    continue;
                }
                wanted.entry(name).or_default().push(t.id.clone());
            }
        }
        let gone: Vec<u64> = self
            .entries
            .iter()
            .filter(|(_, e)| !wanted.contains_key(e.name.as_str()))
            .map(|(k, _)| *k)
            .collect();
        for key in &gone {
            if let Some(e) = self.entries.remove(key) {
                if let Some(id) = e.resolving {
                    locating.cancel(id);
                }
                self.by_name.remove(&e.name);
                tracing::info!(name = %e.name, "trunk source name no longer in the policy: forgotten");
            }
        }
        for (name, trunks) in wanted {
            match self.by_name.get(name).and_then(|k| self.entries.get_mut(k)) {
                Some(e) => e.trunks = trunks,
                None => {
                    let key = self.next_key;
                    self.next_key += 1;
                    self.by_name.insert(name.to_string(), key);
                    self.entries.insert(
                        key,
                        Entry {
                            name: name.to_string(),
                            trunks,
                            addrs: Vec::new(),
                            valid_until: None,
                            next: Some(now),
                            resolving: None,
                            error: None,
                            failures: 0,
                        },
                    );
                }
            }
        }
        if !gone.is_empty() {
            self.index();
        }
    }

    /// Drops addresses kept too long past their TTL, and asks the names that are due.
    pub(crate) fn timeout(&mut self, locating: &mut Locating, now: Instant) {
        let mut dropped = false;
        for e in self.entries.values_mut() {
            if e.drop_at().is_some_and(|at| at <= now) {
                tracing::warn!(
                    name = %e.name,
                    trunks = ?e.trunks,
                    addresses = ?e.addrs,
                    why = e.error.as_deref().unwrap_or("no answer"),
                    "trunk source name's last addresses dropped: no answer since they ran out"
                );
                e.addrs.clear();
                dropped = true;
            }
        }
        if dropped {
            self.index();
        }
        let due: Vec<u64> = self
            .entries
            .iter()
            .filter(|(_, e)| e.next.is_some_and(|t| t <= now))
            .map(|(k, _)| *k)
            .collect();
        for key in due {
            let Some(e) = self.entries.get_mut(&key) else {
                continue;
            };
            e.next = None;
            if let Some(id) = e.resolving.take() {
                locating.cancel(id);
            }
            // Once answered, asked anew: the cache would give the answer being refreshed.
            let fresh = e.valid_until.is_some();
            match locating.resolve_addresses(&e.name, fresh, Waiter::SourceName(key), now) {
                Located::Done(outcome) => self.answered(key, outcome, now),
                Located::Pending(id) => e.resolving = Some(id),
            }
        }
    }

    /// The lookup of a name it waited for.
    pub(crate) fn located(
        &mut self,
        key: u64,
        id: ResolutionId,
        outcome: Result<Resolved, LocateError>,
        now: Instant,
    ) {
        let Some(e) = self.entries.get_mut(&key) else {
            return;
        };
        if e.resolving != Some(id) {
            return;
        }
        e.resolving = None;
        self.answered(key, outcome, now);
    }

    fn answered(&mut self, key: u64, outcome: Result<Resolved, LocateError>, now: Instant) {
        let Some(e) = self.entries.get_mut(&key) else {
            return;
        };
        let before = e.addrs.clone();
        match outcome {
            Ok(r) => {
                let mut addrs: Vec<IpAddr> = Vec::new();
                for t in &r.targets {
                    let ip = t.addr.ip().to_canonical();
                    if !addrs.contains(&ip) {
                        addrs.push(ip);
                    }
                }
                let valid_until = r.valid_until.unwrap_or(now);
                let next = refresh_at(now, valid_until);
                if addrs != e.addrs || e.error.is_some() {
                    tracing::info!(
                        name = %e.name,
                        trunks = ?e.trunks,
                        addresses = ?addrs,
                        ttl = valid_until.saturating_duration_since(now).as_secs(),
                        "trunk source name resolved"
                    );
                } else {
                    tracing::debug!(name = %e.name, addresses = ?addrs, "trunk source name refreshed");
                }
                e.addrs = addrs;
                e.valid_until = Some(valid_until);
                e.next = Some(next);
                e.error = None;
                e.failures = 0;
            }
            // The name has no address now: an answer, not a failure.
            Err(err @ (LocateError::NoSuchName(_) | LocateError::NotOffered(_))) => {
                let why = format!("{} has no address", e.name);
                if e.error.as_deref() != Some(why.as_str()) || !e.addrs.is_empty() {
                    tracing::warn!(name = %e.name, trunks = ?e.trunks, dropped = ?e.addrs, %err, "trunk source name has no address");
                }
                e.failures = e.failures.saturating_add(1);
                e.addrs.clear();
                e.valid_until = Some(now);
                e.next = Some(now + retry_after(e.failures));
                e.error = Some(why);
            }
            Err(err) => {
                e.failures = e.failures.saturating_add(1);
                let delay = retry_after(e.failures);
                if e.failures == 1 {
                    match e.drop_at() {
                        Some(until) => tracing::warn!(
                            name = %e.name,
                            trunks = ?e.trunks,
                            why = %err,
                            addresses = ?e.addrs,
                            kept_for = until.saturating_duration_since(now).as_secs(),
                            retry_in = delay.as_secs(),
                            "trunk source name lookup failed; its last addresses are kept meanwhile"
                        ),
                        None => tracing::warn!(
                            name = %e.name,
                            trunks = ?e.trunks,
                            why = %err,
                            retry_in = delay.as_secs(),
                            "trunk source name lookup failed; no address for it yet"
                        ),
                    }
                } else {
                    tracing::debug!(name = %e.name, why = %err, failures = e.failures, "trunk source name lookup failed again");
                }
                e.next = Some(now + delay);
                e.error = Some(err.to_string());
            }
        }
        if before
            != self
                .entries
                .get(&key)
                .map(|e| e.addrs.clone())
                .unwrap_or_default()
        {
            self.index();
        }
    }

    /// Rebuilds the address index from the entries.
    fn index(&mut self) {
        self.by_addr.clear();
        for e in self.entries.values() {
            for ip in &e.addrs {
                self.by_addr.entry(*ip).or_default().push(e.name.clone());
            }
        }
    }

    /// Names with an entry (tests).
    #[cfg(test)]
    pub(crate) fn names(&self) -> Vec<String> {
        self.entries.values().map(|e| e.name.clone()).collect()
    }
}

#[cfg(test)]
#[path = "trunk_sources_tests.rs"]
mod tests;
