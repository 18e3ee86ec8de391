//! Who fails to authenticate too often is blocked for a while: each source address and each
//! user name is counted on its own, so neither rotating over addresses nor mixing in a good
//! login for another user gets a guesser further.
//!
//! - A source with `max_failures` failed answers within `window` is blocked: its requests
//!   get 403 without being checked.
//! - A user with `max_failures` failed answers within `window` (from any addresses) is
//!   blocked too, but only for addresses it has not authenticated from lately: the
//!   phones that registered as it before keep working while a guesser elsewhere is held off.
//! - Each block lasts twice as long as the one before it (from `block` up to
//!   [`MAX_BLOCK_FACTOR`] times it), as long as failures keep coming; a key forgotten
//!   after a quiet while starts over.
//! - A success for one user clears that user's count only: it clears no other user's and
//!   no address's.
//!
//! Who is never counted (trunks, trusted networks) is the caller's business. The tables are
//! bounded ([`MAX_TRACKED`] keys each): past that, a new key is not counted until old ones
//! are forgotten.

use std::borrow::Borrow;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// A block lasts at most this many times the first one.
pub const MAX_BLOCK_FACTOR: u32 = 16;
/// Most sources, and most users, tracked at once.
pub const MAX_TRACKED: usize = 100_000;
/// Most addresses remembered per user as ones it authenticated from.
const GOOD_SOURCES: usize = 8;
/// How long an address a user authenticated from stays one it may use while the user is
/// blocked.
const GOOD_FOR: Duration = Duration::from_secs(24 * 3600);

/// Settings of the throttle.
#[derive(Clone, Copy, Debug)]
pub struct ThrottleConfig {
    pub max_failures: u32,
    pub window: Duration,
    /// The first block's length.
    pub block: Duration,
}

/// What a failure did to one key (a source or a user).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Count {
    /// Counted: this many failures in the current window.
    Counted(u32),
    /// This failure blocked the key for this long.
    Blocked(Duration),
}

/// What [`Throttle::record_failure`] decided, for the source and for the user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Failure {
    pub source: Count,
    /// None when the user is not counted (an unknown name).
    pub user: Option<Count>,
}

/// A block that ran out (see [`Throttle::expire`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unblocked {
    Source(IpAddr),
    User(String),
}

#[derive(Clone, Copy, Debug)]
struct Record {
    failures: u32,
    window_start: Instant,
    blocked_until: Option<Instant>,
    /// Blocks so far (each twice as long as the one before).
    blocks: u32,
    last_failure: Instant,
}

/// Failure counts and blocks for one kind of key.
struct Table<K> {
    map: HashMap<K, Record>,
    /// When each block ends, earliest first.
    ends: BTreeSet<(Instant, K)>,
}

impl<K: Hash + Eq + Ord + Clone> Table<K> {
    fn new() -> Self {
        Table {
            map: HashMap::new(),
            ends: BTreeSet::new(),
        }
    }

    fn blocked<Q: Hash + Eq + ?Sized>(&self, key: &Q, now: Instant) -> bool
    where
        K: Borrow<Q>,
    {
        self.map
            .get(key)
            .and_then(|r| r.blocked_until)
            .is_some_and(|until| now < until)
    }

    fn fail(&mut self, key: &K, now: Instant, config: &ThrottleConfig) -> Option<Count> {
        if self.map.len() >= MAX_TRACKED && !self.map.contains_key(key) {
            self.expire(now, config);
            if self.map.len() >= MAX_TRACKED {
                return None;
            }
        }
        let r = self.map.entry(key.clone()).or_insert(Record {
            failures: 0,
            window_start: now,
            blocked_until: None,
            blocks: 0,
            last_failure: now,
        });
        r.last_failure = now;
        if now.saturating_duration_since(r.window_start) > config.window {
            r.failures = 0;
            r.window_start = now;
        }
        r.failures += 1;
        if r.failures < config.max_failures.max(1) {
            return Some(Count::Counted(r.failures));
        }
        let factor = 1u32 << r.blocks.min(MAX_BLOCK_FACTOR.trailing_zeros());
        let length = config.block * factor;
        r.blocks += 1;
        if let Some(until) = r.blocked_until.replace(now + length) {
            self.ends.remove(&(until, key.clone()));
        }
        self.ends.insert((now + length, key.clone()));
        r.failures = 0;
        r.window_start = now;
        Some(Count::Blocked(length))
    }

    fn clear<Q: Hash + Eq + ?Sized>(&mut self, key: &Q)
    where
        K: Borrow<Q>,
    {
        if let Some(r) = self.map.get_mut(key) {
            r.failures = 0;
        }
    }

    /// Forgets keys whose block has ended and which have been quiet for longer than the
    /// longest block (so that a guesser who keeps coming back gets ever longer blocks);
    /// returns the keys whose block ended since the last call.
    fn expire(&mut self, now: Instant, config: &ThrottleConfig) -> Vec<K> {
        let mut ended = Vec::new();
        while let Some((at, key)) = self.ends.first().cloned() {
            if at > now {
                break;
            }
            self.ends.remove(&(at, key.clone()));
            if let Some(r) = self.map.get_mut(&key) {
                r.blocked_until = None;
            }
            ended.push(key);
        }
        let quiet = config.window.max(config.block * MAX_BLOCK_FACTOR);
        self.map.retain(|_, r| {
            r.blocked_until.is_some() || now.saturating_duration_since(r.last_failure) <= quiet
        });
        ended
    }

    fn next_end(&self) -> Option<Instant> {
        self.ends.first().map(|(at, _)| *at)
    }
}

/// Failure counts and blocks per source and per user (see the module's documentation).
pub struct Throttle {
    config: ThrottleConfig,
    sources: Table<IpAddr>,
    users: Table<String>,
    /// Per user, the addresses it authenticated from lately (newest last).
    good: HashMap<String, VecDeque<(IpAddr, Instant)>>,
}

impl Throttle {
    pub fn new(config: ThrottleConfig) -> Self {
        Throttle {
            config,
            sources: Table::new(),
            users: Table::new(),
            good: HashMap::new(),
        }
    }

    /// Whether requests from `ip` are refused at `now`.
    pub fn source_blocked(&self, ip: IpAddr, now: Instant) -> bool {
        self.sources.blocked(&ip.to_canonical(), now)
    }

    /// Whether `user`'s credentials are refused from `ip` at `now`: the user is blocked,
    /// and `ip` is not an address it authenticated from lately.
    pub fn user_blocked(&self, user: &str, ip: IpAddr, now: Instant) -> bool {
        let ip = ip.to_canonical();
        self.users.blocked(user, now)
            && !self.good.get(user).is_some_and(|g| {
                g.iter()
                    .any(|(a, at)| *a == ip && now.saturating_duration_since(*at) <= GOOD_FOR)
            })
    }

    /// Records a failed authentication from `ip`, claiming to be `user` (None: a name that
    /// is not counted, such as an unknown one).
    pub fn record_failure(&mut self, ip: IpAddr, user: Option<&str>, now: Instant) -> Failure {
        let source = self
            .sources
            .fail(&ip.to_canonical(), now, &self.config)
            .unwrap_or(Count::Counted(0));
        let user = user.and_then(|u| self.users.fail(&u.to_string(), now, &self.config));
        Failure { source, user }
    }

    /// Records a failed authentication as `user` counted elsewhere (another node sharing
    /// the state): the user's count grows, no address's.
    pub fn record_user_failure(&mut self, user: &str, now: Instant) -> Option<Count> {
        self.users.fail(&user.to_string(), now, &self.config)
    }

    /// Whether failures as `user` are being counted (or it is blocked).
    pub fn user_counted(&self, user: &str) -> bool {
        self.users.map.contains_key(user)
    }

    /// `user` proved itself elsewhere (another node): its failure count starts over.
    pub fn clear_user(&mut self, user: &str) {
        self.users.clear(user);
    }

    /// Records that `ip` proved to be `user`: the user's failure count starts over (no
    /// one else's), and `ip` may go on authenticating as it while it is blocked.
    pub fn record_success(&mut self, ip: IpAddr, user: &str, now: Instant) {
        let ip = ip.to_canonical();
        self.users.clear(user);
        let good = self.good.entry(user.to_string()).or_default();
        good.retain(|(a, _)| *a != ip);
        if good.len() >= GOOD_SOURCES {
            good.pop_front();
        }
        good.push_back((ip, now));
    }

    /// Forgets what no longer matters; returns the blocks that ended.
    pub fn expire(&mut self, now: Instant) -> Vec<Unblocked> {
        let mut ended: Vec<Unblocked> = self
            .sources
            .expire(now, &self.config)
            .into_iter()
            .map(Unblocked::Source)
            .collect();
        ended.extend(
            self.users
                .expire(now, &self.config)
                .into_iter()
                .map(Unblocked::User),
        );
        self.good.retain(|_, g| {
            g.retain(|(_, at)| now.saturating_duration_since(*at) <= GOOD_FOR);
            !g.is_empty()
        });
        ended
    }

    /// When the next block ends (for [`Throttle::expire`] to tell of it).
    pub fn next_unblock(&self) -> Option<Instant> {
        self.sources
            .next_end()
            .into_iter()
            .chain(self.users.next_end())
            .min()
    }

    /// Sources and users being counted or blocked.
    pub fn tracked(&self) -> usize {
        self.sources.map.len() + self.users.map.len()
    }

    /// Blocks in force: `(sources, users)`. A block whose end has come counts until
    /// [`Throttle::expire`] runs (at [`Throttle::next_unblock`]).
    pub fn blocked(&self) -> (usize, usize) {
        (self.sources.ends.len(), self.users.ends.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle() -> Throttle {
        Throttle::new(ThrottleConfig {
            max_failures: 3,
            window: Duration::from_secs(60),
            block: Duration::from_secs(10),
        })
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_source_is_blocked_then_released() {
        let t0 = Instant::now();
        let mut t = throttle();
        let a = ip("127.0.0.9");
        assert_eq!(t.record_failure(a, None, t0).source, Count::Counted(1));
        assert_eq!(t.record_failure(a, None, t0).source, Count::Counted(2));
        let third = t.record_failure(a, None, t0).source;
        assert_eq!(third, Count::Blocked(Duration::from_secs(10)));
        assert_eq!(t.blocked(), (1, 0));
        assert!(t.source_blocked(a, t0 + Duration::from_secs(9)));
        assert!(!t.source_blocked(a, t0 + Duration::from_secs(10)));
        assert!(!t.source_blocked(ip("127.0.0.8"), t0));
        assert_eq!(
            t.expire(t0 + Duration::from_secs(10)),
            vec![Unblocked::Source(a)]
        );
        assert_eq!(t.blocked(), (0, 0));
        t.expire(t0 + Duration::from_secs(1000));
        assert_eq!(t.tracked(), 0);
    }

    #[test]
    fn blocks_grow_while_failures_keep_coming() {
        let t0 = Instant::now();
        let mut t = throttle();
        let a = ip("127.0.0.9");
        let mut now = t0;
        let mut lengths = Vec::new();
        for _ in 0..7 {
            let mut last = None;
            for _ in 0..3 {
                last = Some(t.record_failure(a, None, now).source);
            }
            let Some(Count::Blocked(d)) = last else {
                panic!("{last:?}")
            };
            lengths.push(d.as_secs());
            now += d;
            t.expire(now);
        }
        assert_eq!(lengths, [10, 20, 40, 80, 160, 160, 160]);
        // Quiet for longer than the longest block: it starts over.
        now += Duration::from_secs(161);
        t.expire(now);
        for _ in 0..2 {
            t.record_failure(a, None, now);
        }
        let first = t.record_failure(a, None, now).source;
        assert_eq!(first, Count::Blocked(Duration::from_secs(10)));
    }

    #[test]
    fn a_user_is_counted_across_addresses_and_blocked_only_for_new_ones() {
        let t0 = Instant::now();
        let mut t = throttle();
        let phone = ip("127.0.0.2");
        t.record_success(phone, "alice", t0);
        // Three guesses from three addresses: no address is blocked, alice is.
        let mut last = None;
        for a in ["127.0.1.1", "127.0.1.2", "127.0.1.3"] {
            last = Some(t.record_failure(ip(a), Some("alice"), t0));
            assert!(!t.source_blocked(ip(a), t0));
        }
        assert_eq!(
            last.unwrap().user,
            Some(Count::Blocked(Duration::from_secs(10)))
        );
        assert!(t.user_blocked("alice", ip("127.0.1.4"), t0));
        // Her phone, which authenticated before, is not held off.
        assert!(!t.user_blocked("alice", phone, t0));
        assert!(!t.user_blocked("bob", ip("127.0.1.4"), t0));
    }

    #[test]
    fn a_success_clears_only_its_own_users_count() {
        let t0 = Instant::now();
        let mut t = throttle();
        let a = ip("127.0.0.9");
        t.record_failure(a, Some("alice"), t0);
        t.record_failure(a, Some("alice"), t0);
        // A good login as bob from the same address clears neither alice's count nor the
        // address's.
        t.record_success(a, "bob", t0);
        let f = t.record_failure(a, Some("alice"), t0);
        assert_eq!(f.source, Count::Blocked(Duration::from_secs(10)));
        assert_eq!(f.user, Some(Count::Blocked(Duration::from_secs(10))));
    }
}
