//! A store that several nodes share: Redis (7 or later), with a change feed.
//!
//! Each table is a hash (key → row) and a sorted set of its keys (all scored 0, so ranges of
//! keys are read in byte order with `ZRANGEBYLEX`, as the embedded store reads them). A
//! commit is one `MULTI`/`EXEC`: every write of it, and, for each write to a table nodes keep
//! in memory ([`tables::CACHED`]), an entry in the change feed, a Redis stream. The feed is
//! how every node learns what the others changed ([`RedisStore::follow`]); a stream, unlike
//! pub/sub, keeps what was said while a node was away, so a node that reconnects reads on
//! from where it stopped.
//!
//! Durable means what Redis promises: with `appendonly yes` and `appendfsync always`, Redis
//! answers `EXEC` only once the commit is in its append-only file and fsynced; with
//! [`RedisConfig::replicas`], a commit is durable once that many replicas have it (`WAIT`).
//! [`RedisStore::open`] refuses a server that does neither, unless told not to check.
//!
//! Every key carries a hash tag, so a commit's keys are in one slot of a Redis Cluster: the
//! prefix's (`{sb}:…`) in a site of one shard, the shard's in a site of several ([`Shard`]:
//! a row's shard follows from its key, a commit is one `MULTI`/`EXEC` per shard it touches,
//! each shard has its own feed). Tables each node keeps for itself ([`Scope::NodeLocal`])
//! are under the node's name.

use std::collections::HashMap;
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::Duration;

use redis::{Connection, Value};

use crate::tables::{self, Scope, Table};
use crate::{io_err, Rows, Store, StoreError, Write};

/// How to reach the shared store, and what this node is called in it.
#[derive(Clone, Debug)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port/db` (or `rediss://` with TLS off: not built in).
    pub url: String,
    /// This node's name: its own tables are kept under it, and it is what other nodes are
    /// told a change came from. Unique among the nodes sharing the store; the same across
    /// restarts of one node.
    pub node: String,
    /// What every key begins with (in braces: the hash tag), so several sites can share
    /// one server.
    pub prefix: String,
    /// Refuse a server that would answer a commit before it is fsynced, unless replicas
    /// are waited for.
    pub require_fsync: bool,
    /// Replicas that must have a commit before it counts as durable (`WAIT`); 0: none.
    pub replicas: u32,
    /// How long a commit waits for those replicas.
    pub replica_timeout: Duration,
    /// How long a connection attempt or an answer may take.
    pub timeout: Duration,
    /// About how many changes each shard's feed keeps (`XADD MAXLEN ~`): a node away for
    /// longer than those last reads the shard of every cached table again.
    pub feed_len: u64,
    /// How often this node renews its liveness; it lapses after three times that, and
    /// the other nodes then remove the call status it published (so a node that died
    /// leaves nobody "busy").
    pub heartbeat: Duration,
    /// How many shards the site's rows are spread over (see [`Shard`]): 1 keeps every key
    /// in one slot (one master of a Redis Cluster holds the site); more let a cluster
    /// spread the site over its masters. Fixed for the life of a site: a node laid out
    /// otherwise than the site is refused at open.
    pub shards: u32,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: "redis://127.0.0.1:6379/".into(),
            node: "switchboard".into(),
            prefix: "sb".into(),
            require_fsync: true,
            replicas: 0,
            replica_timeout: Duration::from_secs(1),
            timeout: Duration::from_secs(5),
            feed_len: 100_000,
            heartbeat: Duration::from_secs(5),
            shards: 1,
        }
    }
}

/// What the change feed tells a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FeedEvent {
    /// Rows other nodes wrote (or deleted), in the order they were committed.
    Changes(Vec<Write>),
    /// A shard's feed no longer holds every change since the last one read (the node was
    /// away for longer than it keeps): the shard's rows of every cached table as they
    /// stand, to be held instead of the rows of that shard the node held.
    Resync {
        shard: Shard,
        tables: Vec<(Table, Rows)>,
    },
}

/// How many slots a Redis Cluster hashes keys into.
const SLOTS: u32 = 16384;

/// Most shards a site may be laid out in ([`RedisConfig::shards`]).
pub const MAX_SHARDS: u32 = 64;

/// CRC16 (XMODEM: polynomial 0x1021, no reflection, zero start), the hash Redis Cluster
/// places keys by.
fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in bytes {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The Redis Cluster slot of `key`: of its hash tag (what is between the first `{` and the
/// next `}`) when that is not empty, else of the whole key.
fn slot(key: &str) -> u32 {
    let hashed = key
        .split_once('{')
        .and_then(|(_, rest)| rest.split_once('}'))
        .map(|(tag, _)| tag)
        .filter(|tag| !tag.is_empty())
        .unwrap_or(key);
    u32::from(crc16(hashed.as_bytes())) % SLOTS
}

/// One part of a site's rows when the site is laid out in several shards
/// ([`RedisConfig::shards`]): each shard has keys of its own, in a slot of its own, so a
/// Redis Cluster spreads the shards over its masters. A row's shard follows from the part
/// of its key before the first newline (the person, mailbox, node or start time the key
/// begins with), so the rows one commit must make together (a person's bindings, a
/// voicemail message, its audio and its mail notice) are in one shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// A site laid out in one shard: every row.
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    /// The shard of the row `key`, of `count`.
    pub fn of(key: &str, count: u32) -> Shard {
        let index = if count <= 1 {
            0
        } else {
            let segment = key.split('\n').next().unwrap_or(key);
            u32::from(crc16(segment.as_bytes())) % count
        };
        Shard {
            index,
            count: count.max(1),
        }
    }

    /// Whether the row `key` is in this shard.
    pub fn holds(&self, key: &str) -> bool {
        Shard::of(key, self.count) == *self
    }
}

/// The names of the keys a node uses. Every key begins with a hash tag: the prefix
/// (`{sb}:…`) in a site of one shard; in a site of several, a tag per shard, chosen so the
/// shards' slots are evenly spaced (a cluster whose masters hold equal ranges of slots
/// holds equal numbers of shards). What is not a table's row (liveness, the node list, the
/// layout) is under the prefix's own tag. A node's own tables are under its name.
#[derive(Clone, Debug)]
struct Keys {
    prefix: String,
    node: String,
    /// Each shard's hash tag, braces included.
    tags: Vec<String>,
}

impl Keys {
    fn new(prefix: &str, node: &str, shards: u32) -> Keys {
        let tags = if shards <= 1 {
            vec![format!("{{{prefix}}}")]
        } else {
            (0..shards)
                .map(|i| {
                    (0u32..)
                        .map(|n| format!("{prefix}:{i}:{n}"))
                        .find(|tag| slot(tag) * shards / SLOTS == i)
                        .map(|tag| format!("{{{tag}}}"))
                        .expect("every range of slots has a tag")
                })
                .collect()
        };
        Keys {
            prefix: prefix.to_string(),
            node: node.to_string(),
            tags,
        }
    }

    fn count(&self) -> u32 {
        self.tags.len() as u32
    }

    /// The shard (its index) holding the row `key`.
    fn shard_of(&self, key: &str) -> usize {
        Shard::of(key, self.count()).index as usize
    }

    fn table(&self, kind: &str, table: Table, shard: usize) -> String {
        let tag = &self.tags[shard];
        match table.scope() {
            Scope::Shared => format!("{tag}:{kind}:{}", table.name()),
            Scope::NodeLocal => format!("{tag}:n:{}:{kind}:{}", self.node, table.name()),
        }
    }

    /// The hash holding a shard's rows of a table.
    fn rows(&self, table: Table, shard: usize) -> String {
        self.table("t", table, shard)
    }

    /// The sorted set of a shard's keys of a table.
    fn index(&self, table: Table, shard: usize) -> String {
        self.table("k", table, shard)
    }

    /// Adds the commands that make `w` to `pipe`: the row put or deleted, its key added to
    /// or taken from the table's index (both in the row's shard).
    fn queue(&self, pipe: &mut redis::Pipeline, w: &Write) {
        let shard = self.shard_of(&w.key);
        let (rows, index) = (self.rows(w.table, shard), self.index(w.table, shard));
        match &w.value {
            Some(v) => {
                pipe.hset(&rows, &w.key, v.as_slice()).ignore();
                pipe.zadd(&index, &w.key, 0).ignore();
            }
            None => {
                pipe.hdel(&rows, &w.key).ignore();
                pipe.zrem(&index, &w.key).ignore();
            }
        }
    }

    /// A shard's change feed (a stream).
    fn feed(&self, shard: usize) -> String {
        format!("{}:feed", self.tags[shard])
    }

    /// `node`'s liveness (expiring).
    fn alive(&self, node: &str) -> String {
        format!("{{{}}}:node:{node}", self.prefix)
    }

    /// Every node that ever said it was alive.
    fn nodes(&self) -> String {
        format!("{{{}}}:nodes", self.prefix)
    }

    /// How many shards the site is laid out in.
    fn layout(&self) -> String {
        format!("{{{}}}:shards", self.prefix)
    }

    /// Keys a site written before its layout was recorded has (in one shard, then).
    fn unrecorded(&self) -> [String; 2] {
        let tag = format!("{{{}}}", self.prefix);
        [
            format!("{tag}:feed"),
            format!("{tag}:t:{}", tables::SECRETS.name()),
        ]
    }

    /// `writes` in groups of one shard each, in the order of the shards, each in the order
    /// given.
    fn by_shard<'w>(&self, writes: &'w [Write]) -> Vec<(usize, Vec<&'w Write>)> {
        let mut groups: Vec<(usize, Vec<&Write>)> = Vec::new();
        for w in writes {
            let shard = self.shard_of(&w.key);
            match groups.iter_mut().find(|(s, _)| *s == shard) {
                Some((_, g)) => g.push(w),
                None => groups.push((shard, vec![w])),
            }
        }
        groups.sort_by_key(|(s, _)| *s);
        groups
    }
}

/// A row this node wrote whose feed entry it has not read back yet.
#[derive(Clone, Copy, Debug)]
struct Own {
    /// The commit (this node's count) of its newest write.
    seq: u64,
    /// Whether another node's write to it was applied since: the node's own write, newer
    /// in the feed, must then be applied again.
    overtaken: bool,
}

/// Where each shard's keys are, and the prefix's own (liveness, the node list, the layout).
struct Servers {
    shards: Vec<Server>,
    base: Server,
}

impl Servers {
    fn new(client: &redis::Client, timeout: Duration, keys: &Keys) -> Servers {
        let known = Arc::new(Known::new(client));
        let server = |probe| Server::new(client.clone(), timeout, probe, known.clone());
        Servers {
            shards: (0..keys.tags.len()).map(|i| server(keys.feed(i))).collect(),
            base: server(keys.layout()),
        }
    }

    /// Runs `pipes` (each a transaction of the shard it names) over their shards'
    /// connections in `cons`, sending every one before reading any answer: a server takes
    /// those sent to it in one turn of its loop (with `appendfsync always`, one fsync for
    /// them all), and the masters of a cluster work at once. With `wait`, each is followed
    /// by `WAIT` for that many replicas. Each pipe's result, in order; a failed one's
    /// connection is dropped (and its server told of a redirection).
    fn transact(
        &self,
        cons: &mut [Option<Connection>],
        pipes: &[(usize, redis::Pipeline)],
        wait: Option<(u32, Duration)>,
    ) -> Vec<redis::RedisResult<()>> {
        let waiting = wait.map(|(replicas, timeout)| {
            redis::cmd("WAIT")
                .arg(replicas)
                .arg(timeout.as_millis() as u64)
                .get_packed_command()
        });
        let sent: Vec<redis::RedisResult<()>> = pipes
            .iter()
            .map(|(shard, pipe)| {
                let slot = &mut cons[*shard];
                let con = match slot {
                    Some(c) => c,
                    None => slot.insert(self.shards[*shard].connect()?),
                };
                let mut bytes = pipe.get_packed_pipeline();
                bytes.extend_from_slice(waiting.as_deref().unwrap_or_default());
                con.send_packed_command(&bytes)
                    .inspect_err(|_| *slot = None)
            })
            .collect();
        pipes
            .iter()
            .zip(sent)
            .map(|((shard, pipe), sent)| {
                sent?;
                let Some(con) = cons[*shard].as_mut() else {
                    unreachable!("a pipe sent has its connection");
                };
                let r = read_transaction(con, pipe.len(), wait.map(|w| w.0));
                if let Err(e) = &r {
                    cons[*shard] = None;
                    if let Some((addr, _)) = e.redirect_node() {
                        let server = &self.shards[*shard];
                        server.redirect(&server.client(), addr)?;
                    }
                }
                r
            })
            .collect()
    }

    /// Connections, one slot per shard and one for the prefix's own keys (the last).
    fn slots(&self) -> Vec<Option<Connection>> {
        (0..=self.shards.len()).map(|_| None).collect()
    }

    /// Runs `op` over the connection to shard `at` (or, at `shards.len()`, to the prefix's
    /// own keys) kept in `cons`, as [`with_connection`] does.
    fn run<T>(
        &self,
        cons: &mut [Option<Connection>],
        at: usize,
        op: impl FnMut(&mut Connection) -> redis::RedisResult<T>,
    ) -> redis::RedisResult<T> {
        let server = self.shards.get(at).unwrap_or(&self.base);
        with_connection(&mut cons[at], server, op)
    }
}

struct Writer {
    cons: Vec<Option<Connection>>,
    seq: u64,
}

/// Where a node's reading of the feeds begins: one entry per shard.
#[derive(Clone, Debug)]
pub struct FeedPosition(Vec<String>);

/// Redis as the durable store of one node or of several sharing it.
pub struct RedisStore {
    servers: Arc<Servers>,
    config: RedisConfig,
    keys: Keys,
    /// The node's name and when this process opened the store: the feed entries this very
    /// process wrote (a restarted node's earlier entries count as another's).
    origin: String,
    writer: Mutex<Writer>,
    reader: Mutex<Vec<Option<Connection>>>,
    /// The rows this process wrote and has not read back from the feed yet, while a
    /// follower runs (without one, nothing is kept).
    own: Mutex<HashMap<(Table, String), Own>>,
    following: std::sync::atomic::AtomicBool,
    /// To the thread that writes what need not wait for the disk ([`RedisStore::publish`])
    /// and keeps this node known as alive.
    publisher: Mutex<mpsc::Sender<Vec<Write>>>,
}

impl RedisStore {
    /// Connects, checks that a commit is durable once Redis answers it, and that the site
    /// is laid out in as many shards as this node says.
    pub fn open(config: RedisConfig) -> Result<Self, StoreError> {
        let open_err = |e: Box<dyn std::error::Error + Send + Sync>| StoreError::Open {
            path: redacted(&config.url),
            source: e,
        };
        for name in [&config.node, &config.prefix] {
            check_name(name).map_err(|e| open_err(e.into()))?;
        }
        if !(1..=MAX_SHARDS).contains(&config.shards) {
            return Err(open_err(
                format!("shards must be 1 to {MAX_SHARDS}, not {}", config.shards).into(),
            ));
        }
        let keys = Keys::new(&config.prefix, &config.node, config.shards);
        let client = redis::Client::open(config.url.as_str()).map_err(|e| open_err(e.into()))?;
        let servers = Arc::new(Servers::new(&client, config.timeout, &keys));
        let mut con = servers.base.connect().map_err(|e| open_err(e.into()))?;
        if config.require_fsync && config.replicas == 0 {
            match durability(&mut con) {
                Ok(None) => {}
                Ok(Some(why)) => return Err(open_err(why.into())),
                Err(e) => tracing::warn!(
                    error = %e,
                    "cannot read the Redis server's persistence settings (CONFIG refused?); \
                     a commit counts as durable once Redis answers it"
                ),
            }
        }
        match check_layout(&mut con, &keys) {
            Ok(None) => {}
            Ok(Some(why)) => return Err(open_err(why.into())),
            Err(e) => return Err(open_err(e.into())),
        }
        drop(con);
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let origin = format!("{}/{started}", config.node);
        let (publish, queue) = mpsc::channel();
        let publisher = Publisher {
            servers: servers.clone(),
            cons: servers.slots(),
            config: config.clone(),
            keys: keys.clone(),
            origin: origin.clone(),
            mine: HashMap::new(),
            unsent: Vec::new(),
        };
        thread::Builder::new()
            .name("store-publish".into())
            .spawn(move || publisher.run(queue))
            .map_err(|e| open_err(e.into()))?;
        Ok(RedisStore {
            writer: Mutex::new(Writer {
                cons: servers.slots(),
                seq: 0,
            }),
            reader: Mutex::new(servers.slots()),
            servers,
            origin,
            config,
            keys,
            publisher: Mutex::new(publish),
            own: Mutex::new(HashMap::new()),
            following: false.into(),
        })
    }

    pub fn config(&self) -> &RedisConfig {
        &self.config
    }

    /// Writes rows of [`tables::CALL_STATUS`] (keys under this node's name), and tells of
    /// [`tables::TOLD_ONLY`] changes, without waiting for them: through the feed to the
    /// other nodes. They say what calls in progress are doing, which a restart ends anyway,
    /// or count what is counted in memory only. Written by a thread of their
    /// own, as many as are waiting in one go; while Redis cannot be reached, the newest
    /// row of each key is kept and written once it can.
    pub fn publish(&self, writes: Vec<Write>) {
        if let Ok(p) = self.publisher.lock() {
            let _ = p.send(writes);
        }
    }

    /// Each shard's feed's newest entry now ("0-0" while it has none): reading on from
    /// there, after reading the tables, misses no change.
    pub fn feed_position(&self) -> Result<FeedPosition, StoreError> {
        let mut reader = self.reader.lock().map_err(|_| StoreError::Stopped)?;
        let mut at = Vec::with_capacity(self.keys.tags.len());
        for shard in 0..self.keys.tags.len() {
            let feed = self.keys.feed(shard);
            at.push(
                self.servers
                    .run(&mut reader, shard, |con| newest_entry(con, &feed))
                    .map_err(io_err)?,
            );
        }
        Ok(FeedPosition(at))
    }

    /// Reads the feeds from `from` (a [`RedisStore::feed_position`]), a thread per shard,
    /// handing `sink` what other nodes changed, until `sink` returns false. Survives Redis
    /// going away: each thread reconnects (at most every two seconds) and reads on from the
    /// last entry it read, or reads its shard of every cached table again when the feed no
    /// longer holds that entry's successors. A row's changes come in the store's order (a
    /// row is in one shard); changes to rows of different shards may come in another.
    pub fn follow(
        self: &Arc<Self>,
        from: FeedPosition,
        sink: impl FnMut(FeedEvent) -> bool + Send + 'static,
    ) -> Vec<thread::JoinHandle<()>> {
        self.following
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let sink = Arc::new(Mutex::new(sink));
        let tell = move |e: FeedEvent| (*sink.lock().unwrap_or_else(|p| p.into_inner()))(e);
        from.0
            .into_iter()
            .enumerate()
            .map(|(shard, last)| {
                let store = self.clone();
                let tell = tell.clone();
                thread::Builder::new()
                    .name(format!("store-feed-{shard}"))
                    .spawn(move || store.follow_shard(shard, last, tell))
                    .expect("spawning the store's feed thread")
            })
            .collect()
    }

    fn follow_shard(&self, shard: usize, mut last: String, sink: impl Fn(FeedEvent) -> bool) {
        let mut con: Option<Connection> = None;
        let mut failing = false;
        loop {
            let c = match con.as_mut() {
                Some(c) => c,
                None => match self.reconnect_feed(shard, &mut last, &sink) {
                    Ok(Some(c)) => {
                        if failing {
                            tracing::info!(shard, "the store's change feed is read again");
                            failing = false;
                        }
                        con.insert(c)
                    }
                    Ok(None) => return,
                    Err(e) => {
                        if !failing {
                            tracing::warn!(shard, error = %e, "cannot read the store's change feed; retrying every 2 s");
                            failing = true;
                        }
                        thread::sleep(Duration::from_secs(2));
                        continue;
                    }
                },
            };
            match self.read_feed(c, shard, &mut last) {
                // Nothing new within the wait, or something: is anyone still listening?
                Ok(changes) => {
                    if !sink(FeedEvent::Changes(changes)) {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(shard, error = %e, "the store's change feed broke off; reconnecting");
                    failing = true;
                    con = None;
                }
            }
        }
    }

    /// A new connection for a shard's feed; when entries after `last` were trimmed
    /// meanwhile, the shard's rows of every cached table are read and handed on, and
    /// `last` moves to the feed's newest entry. None when the sink stopped listening.
    fn reconnect_feed(
        &self,
        shard: usize,
        last: &mut String,
        sink: &impl Fn(FeedEvent) -> bool,
    ) -> Result<Option<Connection>, StoreError> {
        let mut con = self.servers.shards[shard].connect().map_err(io_err)?;
        // XREAD blocks for a second at most; the socket waits longer than that.
        con.set_read_timeout(Some(self.config.timeout + Duration::from_secs(1)))
            .map_err(io_err)?;
        let feed = self.keys.feed(shard);
        if trimmed_after(&mut con, &feed, last).map_err(io_err)? {
            let at = newest_entry(&mut con, &feed).map_err(io_err)?;
            let mut tables = Vec::with_capacity(tables::CACHED.len());
            for &t in tables::CACHED {
                let rows = self.rows(&mut con, t, shard, None, usize::MAX);
                tables.push((t, rows.map_err(io_err)?));
            }
            tracing::warn!(
                shard,
                from = %last,
                "the store's change feed no longer holds every change since this node last read it; the shard of every shared table is read again"
            );
            *last = at;
            let shard = Shard {
                index: shard as u32,
                count: self.keys.count(),
            };
            if !sink(FeedEvent::Resync { shard, tables }) {
                return Ok(None);
            }
        }
        Ok(Some(con))
    }

    /// The next entries of a shard's feed after `last` (waiting a second at most), moving
    /// `last` on; only those to apply here (see [`Own`]).
    fn read_feed(
        &self,
        con: &mut Connection,
        shard: usize,
        last: &mut String,
    ) -> redis::RedisResult<Vec<Write>> {
        let reply: Option<redis::streams::StreamReadReply> = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(1000)
            .arg("BLOCK")
            .arg(1000)
            .arg("STREAMS")
            .arg(self.keys.feed(shard))
            .arg(last.as_str())
            .query(con)?;
        let mut out = Vec::new();
        let Some(reply) = reply else {
            return Ok(out);
        };
        let mut own = self.own.lock().unwrap_or_else(|p| p.into_inner());
        for entry in reply.keys.into_iter().flat_map(|k| k.ids) {
            last.clone_from(&entry.id);
            let Some(change) = FeedEntry::read(&entry.map) else {
                tracing::warn!(id = %entry.id, "unreadable entry in the store's change feed; skipped");
                continue;
            };
            let row = (change.write.table, change.write.key.clone());
            if change.origin == self.origin {
                // Ours: applied already, unless another node's write came in between.
                match own.get(&row) {
                    Some(o) if o.seq == change.seq => {
                        let overtaken = o.overtaken;
                        own.remove(&row);
                        if overtaken {
                            out.push(change.write);
                        }
                    }
                    // An older write of ours: a newer one is held (and will follow).
                    _ => {}
                }
            } else {
                if let Some(o) = own.get_mut(&row) {
                    o.overtaken = true;
                }
                out.push(change.write);
            }
        }
        Ok(out)
    }

    /// A shard's rows of a table, or those with keys in `start..end`, at most `limit`.
    fn rows(
        &self,
        con: &mut Connection,
        table: Table,
        shard: usize,
        range: Option<(&str, &str)>,
        limit: usize,
    ) -> redis::RedisResult<Vec<(String, Vec<u8>)>> {
        let (min, max) = match range {
            None => ("-".to_string(), "+".to_string()),
            Some((start, end)) => (format!("[{start}"), format!("({end}")),
        };
        let mut cmd = redis::cmd("ZRANGEBYLEX");
        cmd.arg(self.keys.index(table, shard)).arg(min).arg(max);
        if limit != usize::MAX {
            cmd.arg("LIMIT").arg(0).arg(limit);
        }
        let keys: Vec<String> = cmd.query(con)?;
        let mut out = Vec::with_capacity(keys.len());
        let rows_key = self.keys.rows(table, shard);
        for chunk in keys.chunks(512) {
            let values: Vec<Option<Vec<u8>>> =
                redis::cmd("HMGET").arg(&rows_key).arg(chunk).query(con)?;
            // A key whose row went between the two reads was deleted meanwhile.
            out.extend(
                chunk
                    .iter()
                    .zip(values)
                    .filter_map(|(k, v)| Some((k.clone(), v?))),
            );
        }
        Ok(out)
    }

    /// A table's rows, or those with keys in `start..end`, at most `limit`, in key order:
    /// from the one shard that can hold them when every key of the range begins with the
    /// same segment (`user \n …`), else from every shard.
    fn read_rows(
        &self,
        table: Table,
        range: Option<(&str, &str)>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        if range.is_some_and(|(s, e)| s >= e) || limit == 0 {
            return Ok(Vec::new());
        }
        let shards: Vec<usize> = match range.and_then(|(s, e)| one_segment(s, e)) {
            Some(segment) => vec![self.keys.shard_of(segment)],
            None => (0..self.keys.tags.len()).collect(),
        };
        let mut reader = self.reader.lock().map_err(|_| StoreError::Stopped)?;
        let mut out = Vec::new();
        for &shard in &shards {
            let rows = self.servers.run(&mut reader, shard, |con| {
                self.rows(con, table, shard, range, limit)
            });
            out.extend(rows.map_err(io_err)?);
        }
        if shards.len() > 1 {
            out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            out.truncate(limit);
        }
        Ok(out)
    }
}

/// The segment every key in `start..end` begins with (`segment \n …`), if the range is
/// within one.
fn one_segment<'a>(start: &'a str, end: &str) -> Option<&'a str> {
    let (segment, _) = start.split_once('\n')?;
    // Keys from `segment \n` up to `segment \x0b` (the byte after the newline) all begin
    // with `segment \n`.
    let bound = format!("{segment}\u{b}");
    (end <= bound.as_str()).then_some(segment)
}

/// Whether the site is laid out in as many shards as `keys` are, recording the count when
/// the site has none yet. Some(why) when it is not.
fn check_layout(con: &mut Connection, keys: &Keys) -> redis::RedisResult<Option<String>> {
    let count = keys.count();
    let mut stored: Option<u32> = redis::cmd("GET").arg(keys.layout()).query(con)?;
    if stored.is_none() {
        // A site written before its layout was recorded was in one shard.
        let old: u32 = redis::cmd("EXISTS").arg(&keys.unrecorded()).query(con)?;
        let count = if old > 0 { 1 } else { count };
        let _: () = redis::cmd("SET")
            .arg(keys.layout())
            .arg(count)
            .arg("NX")
            .query(con)?;
        stored = redis::cmd("GET").arg(keys.layout()).query(con)?;
    }
    Ok(match stored {
        Some(n) if n == count => None,
        Some(n) => Some(format!(
            "the site (prefix {:?}) is laid out in {n} shard(s) and this node in {count} \
             ([store] redis_shards): every node of a site must say the same, and a site's \
             count cannot change once it is made (docs/several-nodes.md, Redis Cluster)",
            keys.prefix
        )),
        None => Some("the site's layout could not be recorded".into()),
    })
}

impl Store for RedisStore {
    /// One `MULTI`/`EXEC` per shard the writes touch (in a site of one shard, one): the
    /// rows of one shard are made together or not at all. A failure stops at that shard;
    /// the shards made before it keep their rows, and their feed entries tell every node,
    /// this one included.
    fn commit(&self, writes: &[Write]) -> Result<(), StoreError> {
        if writes.is_empty() {
            return Ok(());
        }
        let mut writer = self.writer.lock().map_err(|_| StoreError::Stopped)?;
        writer.seq += 1;
        let seq = writer.seq;
        let following = self.following.load(std::sync::atomic::Ordering::SeqCst);
        let mut fed = Vec::new();
        let mut pipes = Vec::new();
        for (shard, group) in self.keys.by_shard(writes) {
            let feed = self.keys.feed(shard);
            let mut pipe = redis::pipe();
            pipe.atomic();
            for w in group {
                self.keys.queue(&mut pipe, w);
                if tables::CACHED.contains(&w.table) {
                    pipe.add_command(FeedEntry::command(
                        &feed,
                        self.config.feed_len,
                        &self.origin,
                        seq,
                        w,
                    ))
                    .ignore();
                    if following {
                        fed.push((w.table, w.key.clone()));
                    }
                }
            }
            pipes.push((shard, pipe));
        }
        // Noted before the commit: the follower may read its entries before it returns.
        if !fed.is_empty() {
            let mut own = self.own.lock().map_err(|_| StoreError::Stopped)?;
            for row in &fed {
                own.insert(
                    row.clone(),
                    Own {
                        seq,
                        overtaken: false,
                    },
                );
            }
        }
        let wait = (self.config.replicas > 0)
            .then_some((self.config.replicas, self.config.replica_timeout));
        let mut r = Ok(());
        let kept: Vec<bool> = pipes
            .iter()
            .map(|(s, _)| writer.cons[*s].is_some())
            .collect();
        let together = self.servers.transact(&mut writer.cons, &pipes, wait);
        for (((shard, pipe), first), kept) in pipes.iter().zip(together).zip(kept) {
            // A connection kept from before lost (a server restarted) or a slot moved: once
            // more, anew.
            r = match first {
                Err(e) if kept && worth_retrying(&e) => {
                    self.servers.run(&mut writer.cons, *shard, |con| {
                        pipe.query::<()>(con)?;
                        if let Some((replicas, timeout)) = wait {
                            wait_replicas(con, replicas, timeout)?;
                        }
                        Ok(())
                    })
                }
                first => first,
            };
            if r.is_err() {
                break;
            }
        }
        if r.is_err() && !fed.is_empty() {
            // The caller takes its change back; what Redis made all the same (its answer
            // lost, or the shards made before the failure) is applied when its entries
            // come back, so that this node holds what the store does. (At most one entry
            // per row is kept.)
            let mut own = self.own.lock().map_err(|_| StoreError::Stopped)?;
            for row in &fed {
                if let Some(o) = own.get_mut(row).filter(|o| o.seq == seq) {
                    o.overtaken = true;
                }
            }
        }
        r.map_err(io_err)
    }

    fn scan(&self, table: Table) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.read_rows(table, None, usize::MAX)
    }

    fn put_if_absent(
        &self,
        table: Table,
        key: &str,
        value: Vec<u8>,
    ) -> Result<Vec<u8>, StoreError> {
        let mut writer = self.writer.lock().map_err(|_| StoreError::Stopped)?;
        let shard = self.keys.shard_of(key);
        let (rows, index) = (self.keys.rows(table, shard), self.keys.index(table, shard));
        let mut pipe = redis::pipe();
        pipe.atomic()
            .hset_nx(&rows, key, value.as_slice())
            .ignore()
            .zadd(&index, key, 0)
            .ignore()
            .hget(&rows, key);
        let (stored,): (Vec<u8>,) = self
            .servers
            .run(&mut writer.cons, shard, |con| {
                let stored = pipe.query(con)?;
                if self.config.replicas > 0 {
                    wait_replicas(con, self.config.replicas, self.config.replica_timeout)?;
                }
                Ok(stored)
            })
            .map_err(io_err)?;
        Ok(stored)
    }

    fn scan_range(
        &self,
        table: Table,
        start: &str,
        end: &str,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.read_rows(table, Some((start, end)), usize::MAX)
    }

    fn scan_range_limited(
        &self,
        table: Table,
        start: &str,
        end: &str,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.read_rows(table, Some((start, end)), limit)
    }
}

/// The most changes of [`tables::TOLD_ONLY`] kept while Redis cannot be reached (the newest).
const MAX_UNSENT_TOLD: usize = 10_000;

/// The thread behind [`RedisStore::publish`]: writes call status rows, renews this node's
/// liveness (`{prefix}:node:NAME`, expiring, and the set `{prefix}:nodes` of every node
/// that ever said it), and removes the call status rows of nodes whose liveness lapsed.
struct Publisher {
    servers: Arc<Servers>,
    /// Its connections (see [`Servers::slots`]).
    cons: Vec<Option<Connection>>,
    config: RedisConfig,
    keys: Keys,
    origin: String,
    /// This node's rows as last published (what to write again when the other nodes
    /// took it for dead and removed them).
    mine: HashMap<String, Vec<u8>>,
    /// Writes that could not be made yet (Redis away), oldest first.
    unsent: Vec<Write>,
}

impl Publisher {
    fn run(mut self, queue: mpsc::Receiver<Vec<Write>>) {
        let mut beat_at = std::time::Instant::now();
        let mut first = true;
        loop {
            let wait = beat_at.saturating_duration_since(std::time::Instant::now());
            match queue.recv_timeout(wait) {
                Ok(writes) => {
                    self.unsent.extend(writes);
                    while let Ok(more) = queue.try_recv() {
                        self.unsent.extend(more);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
            if std::time::Instant::now() >= beat_at {
                beat_at = std::time::Instant::now() + self.config.heartbeat;
                match self.beat(first) {
                    Ok(()) => first = false,
                    Err(e) => {
                        tracing::debug!(error = %e, "cannot renew this node's liveness in the shared store")
                    }
                }
            }
            if !self.unsent.is_empty() {
                let writes = std::mem::take(&mut self.unsent);
                match self.write_as(&writes, &self.origin.clone()) {
                    Ok(()) => {
                        for w in writes
                            .into_iter()
                            .filter(|w| w.table == tables::CALL_STATUS)
                        {
                            match w.value {
                                Some(v) => self.mine.insert(w.key, v),
                                None => self.mine.remove(&w.key),
                            };
                        }
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "cannot write to the shared store; kept for later");
                        // The newest row of each key is enough; what is only told is kept
                        // whole (each failure counts), up to a bound. (Those of shards
                        // written already are written again: to the same effect.)
                        let mut newest: HashMap<(Table, String), Write> = HashMap::new();
                        let mut told = Vec::new();
                        for w in writes {
                            if tables::TOLD_ONLY.contains(&w.table) {
                                told.push(w);
                            } else {
                                newest.insert((w.table, w.key.clone()), w);
                            }
                        }
                        let keep = told.len().saturating_sub(MAX_UNSENT_TOLD);
                        self.unsent = newest.into_values().chain(told.drain(keep..)).collect();
                    }
                }
            }
        }
    }

    /// Rows and their feed entries (said to come from `origin`), in one transaction per
    /// shard.
    fn write_as(&mut self, writes: &[Write], origin: &str) -> redis::RedisResult<()> {
        for (shard, group) in self.keys.by_shard(writes) {
            let feed = self.keys.feed(shard);
            let mut pipe = redis::pipe();
            pipe.atomic();
            for w in group {
                if !tables::TOLD_ONLY.contains(&w.table) {
                    self.keys.queue(&mut pipe, w);
                }
                pipe.add_command(FeedEntry::command(
                    &feed,
                    self.config.feed_len,
                    origin,
                    0,
                    w,
                ))
                .ignore();
            }
            self.servers
                .run(&mut self.cons, shard, |con| pipe.query::<()>(con))?;
        }
        Ok(())
    }

    /// Runs `op` over the connection to the prefix's own keys.
    fn base<T>(
        &mut self,
        op: impl FnMut(&mut Connection) -> redis::RedisResult<T>,
    ) -> redis::RedisResult<T> {
        let at = self.servers.shards.len();
        self.servers.run(&mut self.cons, at, op)
    }

    /// Renews this node's liveness. At the first beat, rows an earlier run of this node
    /// left are removed; later, when the liveness had lapsed (Redis away, this node
    /// stalled), the other nodes may have removed this node's rows: they are written
    /// again. Then the rows of nodes no longer alive are removed.
    fn beat(&mut self, first: bool) -> redis::RedisResult<()> {
        let node = self.config.node.clone();
        let (alive, nodes) = (self.keys.alive(&node), self.keys.nodes());
        let lapse = 3 * self.config.heartbeat.as_millis() as u64;
        let origin = self.origin.clone();
        let before: Option<String> = self.base(|con| {
            let before = redis::cmd("SET")
                .arg(&alive)
                .arg(&origin)
                .arg("PX")
                .arg(lapse)
                .arg("GET")
                .query(con)?;
            redis::cmd("SADD").arg(&nodes).arg(&node).query::<()>(con)?;
            Ok(before)
        })?;
        if first {
            self.remove_rows_of(&node)?;
        } else if before.is_none() {
            // Taken for gone meanwhile: back, and what it said of its calls again.
            let mut again: Vec<Write> = self
                .mine
                .iter()
                .map(|(k, v)| Write::put(tables::CALL_STATUS, k.clone(), v.clone()))
                .collect();
            again.push(Write::put(tables::NODES, node.clone(), b"back".to_vec()));
            self.write_as(&again, "")?;
        }
        let others: Vec<String> = self.base(|con| redis::cmd("SMEMBERS").arg(&nodes).query(con))?;
        for other in others.iter().filter(|n| **n != node) {
            let key = self.keys.alive(other);
            let alive: bool = self.base(|con| redis::cmd("EXISTS").arg(&key).query(con))?;
            if !alive {
                self.remove_rows_of(other)?;
                let gone = Write::put(tables::NODES, other.clone(), b"gone".to_vec());
                self.write_as(&[gone], "")?;
                self.base(|con| redis::cmd("SREM").arg(&nodes).arg(other).query::<()>(con))?;
            }
        }
        Ok(())
    }

    /// Removes every call status row of `node` (its keys begin with the node's name: one
    /// shard), told to every node through the feed, this one included (the entries come
    /// from no node's run).
    fn remove_rows_of(&mut self, node: &str) -> redis::RedisResult<()> {
        let shard = self.keys.shard_of(node);
        let index = self.keys.index(tables::CALL_STATUS, shard);
        let keys: Vec<String> = self.servers.run(&mut self.cons, shard, |con| {
            redis::cmd("ZRANGEBYLEX")
                .arg(&index)
                .arg(format!("[{node}\n"))
                .arg(format!("({node}\u{b}"))
                .query(con)
        })?;
        if keys.is_empty() {
            return Ok(());
        }
        let gone: Vec<Write> = keys
            .into_iter()
            .map(|k| Write::delete(tables::CALL_STATUS, k))
            .collect();
        tracing::info!(
            node,
            rows = gone.len(),
            "removing the call status rows of a node that is gone (or of this node's earlier run)"
        );
        self.write_as(&gone, "")
    }
}

/// One change as the feed carries it: who wrote it (process and commit), and the write.
struct FeedEntry {
    origin: String,
    seq: u64,
    write: Write,
}

impl FeedEntry {
    fn command(feed: &str, len: u64, origin: &str, seq: u64, w: &Write) -> redis::Cmd {
        let mut c = redis::cmd("XADD");
        c.arg(feed)
            .arg("MAXLEN")
            .arg("~")
            .arg(len)
            .arg("*")
            .arg("o")
            .arg(origin)
            .arg("s")
            .arg(seq)
            .arg("t")
            .arg(w.table.name())
            .arg("k")
            .arg(&w.key);
        if let Some(v) = &w.value {
            c.arg("v").arg(v.as_slice());
        }
        c
    }

    fn read(map: &HashMap<String, Value>) -> Option<FeedEntry> {
        let text = |f: &str| -> Option<String> { redis::from_redis_value_ref(map.get(f)?).ok() };
        let name = text("t")?;
        let table = *tables::ALL.iter().find(|t| t.name() == name)?;
        let value = match map.get("v") {
            None => None,
            Some(v) => Some(redis::from_redis_value_ref::<Vec<u8>>(v).ok()?),
        };
        Some(FeedEntry {
            origin: text("o")?,
            seq: text("s")?.parse().ok()?,
            write: Write {
                table,
                key: text("k")?,
                value,
            },
        })
    }
}

/// `url` without the password it may carry (`redis://user:secret@host/` →
/// `redis://user:***@host/`), to be written in logs and errors.
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            let hidden = if userinfo.contains(':') {
                format!("{user}:***")
            } else {
                "***".into()
            };
            format!("{scheme}://{hidden}@{host}{path}")
        }
        None => url.to_string(),
    }
}

/// Whether `url` names a Redis server the store can reach (`redis://…`, `unix://…`).
pub fn check_url(url: &str) -> Result<(), String> {
    use redis::IntoConnectionInfo as _;
    url.into_connection_info().map(|_| ()).map_err(|e| {
        format!(
            "{:?} is not a Redis URL (redis://HOST:PORT/DB): {e}",
            redacted(url)
        )
    })
}

/// Whether `name` can be a node's name or the keys' prefix: part of every key, so short,
/// printable, and without the braces of a hash tag or the colons that separate key parts.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} must be 1 to 64 letters, digits, '-', '_' or '.'"
        ))
    }
}

/// The Redis server a node talks to, and how long connecting and each answer may take.
/// In a Redis Cluster, the master that holds one slot (of a shard, or of the prefix's own
/// keys; every key of it has the same hash tag): each new connection asks about a key of
/// that slot, and a redirection (`MOVED`, `ASK`) has it connect there instead, and stay
/// there.
struct Server {
    client: Mutex<redis::Client>,
    timeout: Duration,
    /// A key in the slot.
    probe: String,
    /// Every server of the cluster this node has heard of (shared by a node's servers).
    known: Arc<Known>,
}

/// The servers of a Redis Cluster a node has heard of, `host:port`: the one it was given,
/// and every node of the cluster as the last connection made found them (`CLUSTER
/// NODES`). When the server a slot was at cannot be reached (a master died and its
/// replica took over), they are asked instead, and redirect to the slot's new master.
struct Known(Mutex<Vec<String>>);

impl Known {
    fn new(client: &redis::Client) -> Known {
        Known(Mutex::new(address(client).into_iter().collect()))
    }

    fn list(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Learns the cluster's nodes from `con` (nothing when the server is not in a cluster).
    fn learn(&self, con: &mut Connection) {
        let Ok(nodes) = redis::cmd("CLUSTER").arg("NODES").query::<String>(con) else {
            return;
        };
        let mut known = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for addr in cluster_node_addresses(&nodes) {
            if !known.contains(&addr) {
                known.push(addr);
            }
        }
    }
}

/// `client`'s server as `host:port` (None for a Unix socket).
fn address(client: &redis::Client) -> Option<String> {
    match client.get_connection_info().addr() {
        redis::ConnectionAddr::Tcp(host, port) => Some(format!("{host}:{port}")),
        _ => None,
    }
}

/// The addresses (`host:port`) of the nodes a `CLUSTER NODES` answer lists (each line:
/// id, `ip:port@cport[,hostname]`, flags, …); those without an address are left out.
fn cluster_node_addresses(nodes: &str) -> Vec<String> {
    nodes
        .lines()
        .filter_map(|line| line.split_whitespace().nth(1))
        .filter_map(|field| field.split(['@', ',']).next())
        .filter(|addr| !addr.is_empty() && !addr.starts_with(':') && !addr.ends_with(":0"))
        .map(str::to_string)
        .collect()
}

/// Most redirections followed for one connection.
const MAX_REDIRECTIONS: usize = 3;

impl Server {
    fn new(client: redis::Client, timeout: Duration, probe: String, known: Arc<Known>) -> Self {
        Server {
            client: Mutex::new(client),
            timeout,
            probe,
            known,
        }
    }

    fn client(&self) -> redis::Client {
        self.client
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A connection to the server holding the slot. When the server it was at cannot be
    /// reached, the other servers of the cluster it knows of are tried, once.
    fn connect(&self) -> redis::RedisResult<Connection> {
        let mut tried_others = false;
        for _ in 0..=MAX_REDIRECTIONS {
            let client = self.client();
            let mut con = match client.get_connection_with_timeout(self.timeout) {
                Ok(con) => con,
                Err(e) if !tried_others && (e.is_io_error() || e.is_connection_refusal()) => {
                    tried_others = true;
                    match self.reachable_other(&client) {
                        Some(addr) => {
                            self.redirect(&client, &addr)?;
                            continue;
                        }
                        None => return Err(e),
                    }
                }
                Err(e) => return Err(e),
            };
            con.set_read_timeout(Some(self.timeout))?;
            con.set_write_timeout(Some(self.timeout))?;
            match redis::cmd("EXISTS")
                .arg(&self.probe)
                .query::<bool>(&mut con)
            {
                Ok(_) => {
                    self.known.learn(&mut con);
                    return Ok(con);
                }
                Err(e) => match e.redirect_node() {
                    Some((addr, _)) => self.redirect(&client, addr)?,
                    None => return Err(e),
                },
            }
        }
        Err(redis::RedisError::from((
            redis::ErrorKind::Client,
            "too many Redis Cluster redirections",
        )))
    }

    /// A server of the cluster other than `failed`'s that can be reached now.
    fn reachable_other(&self, failed: &redis::Client) -> Option<String> {
        let failed = address(failed);
        self.known
            .list()
            .into_iter()
            .filter(|addr| Some(addr) != failed.as_ref())
            .find(|addr| {
                let Some(sock) = std::net::ToSocketAddrs::to_socket_addrs(addr.as_str())
                    .ok()
                    .and_then(|mut a| a.next())
                else {
                    return false;
                };
                std::net::TcpStream::connect_timeout(&sock, self.timeout).is_ok()
            })
    }

    /// From now on, the server at `addr` (`host:port`), with the settings of `from`.
    fn redirect(&self, from: &redis::Client, addr: &str) -> redis::RedisResult<()> {
        let bad = || {
            redis::RedisError::from((
                redis::ErrorKind::Client,
                "unreadable redirection",
                addr.to_string(),
            ))
        };
        let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let info = from
            .get_connection_info()
            .clone()
            .set_addr(redis::ConnectionAddr::Tcp(host, port));
        let client = redis::Client::open(info)?;
        tracing::info!(
            to = addr,
            "the site's keys are at another server of the Redis Cluster; following"
        );
        *self.client.lock().unwrap_or_else(|p| p.into_inner()) = client;
        Ok(())
    }
}

/// Runs `op` over the connection in `slot`, made anew when there is none (the last one
/// failed). A connection kept from before that turns out lost (the server restarted) is
/// replaced and `op` run once more: what a store runs is idempotent (rows put or deleted;
/// a feed entry said twice is applied twice to the same effect). Any failure drops the
/// connection.
fn with_connection<T>(
    slot: &mut Option<Connection>,
    server: &Server,
    mut op: impl FnMut(&mut Connection) -> redis::RedisResult<T>,
) -> redis::RedisResult<T> {
    let kept = slot.is_some();
    let con = match slot {
        Some(c) => c,
        None => slot.insert(server.connect()?),
    };
    match op(con) {
        Ok(v) => Ok(v),
        // (A redirection: the cluster moved the site's slot to another master.)
        Err(e) if kept && worth_retrying(&e) => {
            if let Some((addr, _)) = e.redirect_node() {
                server.redirect(&server.client(), addr)?;
            }
            *slot = None;
            let con = slot.insert(server.connect()?);
            op(con).inspect_err(|_| *slot = None)
        }
        Err(e) => {
            *slot = None;
            Err(e)
        }
    }
}

/// Whether `e` is worth running an operation once more for, over a new connection: the
/// connection was lost, or the cluster moved the slot to another master.
fn worth_retrying(e: &redis::RedisError) -> bool {
    e.is_connection_dropped() || e.is_io_error() || e.redirect_node().is_some()
}

/// Reads the answers to a transaction of `queued` commands sent with
/// [`Servers::transact`] (`MULTI`'s, one per command queued, `EXEC`'s, and `WAIT`'s when
/// it waits for `replicas`): Ok when `EXEC` made it (and enough replicas have it). Every
/// answer is read unless the connection fails.
fn read_transaction(
    con: &mut Connection,
    queued: usize,
    replicas: Option<u32>,
) -> redis::RedisResult<()> {
    let exec_at = queued + 1;
    let mut refused: Option<redis::RedisError> = None;
    let (mut exec, mut waited) = (Value::Nil, Value::Nil);
    for at in 0..exec_at + 1 + usize::from(replicas.is_some()) {
        match con.recv_response()? {
            Value::ServerError(e) => {
                refused.get_or_insert(e.into());
            }
            v if at == exec_at => exec = v,
            v if at > exec_at => waited = v,
            _ => {}
        }
    }
    if let Some(e) = refused {
        return Err(e);
    }
    if !matches!(exec, Value::Array(_)) {
        return Err(redis::RedisError::from((
            redis::ErrorKind::Client,
            "the transaction was not made",
        )));
    }
    if let Some(replicas) = replicas {
        let got: u32 = redis::from_redis_value(waited)?;
        if got < replicas {
            return Err(redis::RedisError::from((
                redis::ErrorKind::Io,
                "too few replicas took the commit",
                format!("{got} of {replicas}"),
            )));
        }
    }
    Ok(())
}

/// Why the server would answer a commit before it is on disk, if it would.
fn durability(con: &mut Connection) -> redis::RedisResult<Option<String>> {
    let get = |con: &mut Connection, name: &str| -> redis::RedisResult<String> {
        let pair: Vec<String> = redis::cmd("CONFIG").arg("GET").arg(name).query(con)?;
        Ok(pair.get(1).cloned().unwrap_or_default())
    };
    let appendonly = get(con, "appendonly")?;
    let appendfsync = get(con, "appendfsync")?;
    if appendonly == "yes" && appendfsync == "always" {
        return Ok(None);
    }
    Ok(Some(format!(
        "the Redis server answers a write before it is on disk (appendonly {appendonly}, \
         appendfsync {appendfsync}): set `appendonly yes` and `appendfsync always` in its \
         configuration, or wait for replicas ([store] redis_replicas), or accept the risk \
         ([store] redis_require_fsync = false)"
    )))
}

fn wait_replicas(con: &mut Connection, replicas: u32, timeout: Duration) -> redis::RedisResult<()> {
    let got: u32 = redis::cmd("WAIT")
        .arg(replicas)
        .arg(timeout.as_millis() as u64)
        .query(con)?;
    if got < replicas {
        return Err(redis::RedisError::from((
            redis::ErrorKind::Io,
            "too few replicas took the commit",
            format!("{got} of {replicas} within {} ms", timeout.as_millis()),
        )));
    }
    Ok(())
}

/// The id of the feed's newest entry, "0-0" when it has none.
fn newest_entry(con: &mut Connection, feed: &str) -> redis::RedisResult<String> {
    let newest: redis::streams::StreamRangeReply = redis::cmd("XREVRANGE")
        .arg(feed)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query(con)?;
    Ok(newest
        .ids
        .into_iter()
        .next()
        .map(|e| e.id)
        .unwrap_or_else(|| "0-0".into()))
}

/// Whether entries after `last` were trimmed from the feed: `last` itself is gone and the
/// oldest entry left is newer (trimming takes the oldest first, so while `last` is there,
/// everything after it is too), or, from the start of a feed, any entry was trimmed. When
/// `last` alone went, this says so too: reading every table again is then merely more
/// than needed.
fn trimmed_after(con: &mut Connection, feed: &str, last: &str) -> redis::RedisResult<bool> {
    let first: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(feed)
        .arg("-")
        .arg("+")
        .arg("COUNT")
        .arg(1)
        .query(con)?;
    let Some(first) = first.ids.into_iter().next() else {
        // Trimming always leaves the newest entry: an empty feed was never written, or was
        // lost with the server's data (then what this node holds is stale too).
        return Ok(last != "0-0");
    };
    if entry_id(&first.id) <= entry_id(last) {
        return Ok(false);
    }
    if last == "0-0" {
        // Read from the start: was anything trimmed at all? (Both counts from one answer:
        // entries added between two questions would look trimmed.)
        let info: HashMap<String, Value> =
            redis::cmd("XINFO").arg("STREAM").arg(feed).query(con)?;
        let count = |field: &str| -> redis::RedisResult<u64> {
            match info.get(field) {
                Some(v) => Ok(redis::from_redis_value_ref(v)?),
                None => Ok(0),
            }
        };
        return Ok(count("entries-added")? > count("length")?);
    }
    Ok(true)
}

/// A stream entry id (`ms-seq`) as a pair that sorts as Redis sorts ids.
fn entry_id(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_not_written_out() {
        assert_eq!(redacted("redis://:pw@h:6379/0"), "redis://:***@h:6379/0");
        assert_eq!(redacted("redis://u:pw@h/"), "redis://u:***@h/");
        assert_eq!(redacted("redis://token@h"), "redis://***@h");
        assert_eq!(redacted("redis://h:6379/"), "redis://h:6379/");
        assert_eq!(redacted("unix:///run/redis.sock"), "unix:///run/redis.sock");
    }

    #[test]
    fn slots_are_those_redis_cluster_computes() {
        // The specification's check value, and keys whose slots `CLUSTER KEYSLOT` gives.
        assert_eq!(crc16(b"123456789"), 0x31c3);
        assert_eq!(slot("foo"), 12182);
        assert_eq!(slot("{user1000}.following"), slot("{user1000}.followers"));
        assert_eq!(slot("{user1000}.following"), 3443);
        // An empty tag is no tag: the whole key is hashed.
        assert_eq!(slot("foo{}{bar}"), u32::from(crc16(b"foo{}{bar}")) % SLOTS);
        assert_eq!(slot("foo{{bar}}zap"), slot("{bar"));
    }

    #[test]
    fn each_shard_has_a_tag_of_its_own_range_of_slots() {
        let one = Keys::new("sb", "a", 1);
        assert_eq!(one.tags, vec!["{sb}"]);
        assert_eq!(one.rows(tables::BINDINGS, 0), "{sb}:t:bindings");
        assert_eq!(one.feed(0), "{sb}:feed");
        for count in [2, 3, 6, 16, MAX_SHARDS] {
            let keys = Keys::new("sb", "a", count);
            assert_eq!(keys.tags.len(), count as usize);
            for (i, tag) in keys.tags.iter().enumerate() {
                let s = slot(tag);
                assert_eq!((s * count / SLOTS) as usize, i, "{tag} {s}");
                // Every key of a shard is in its slot.
                assert_eq!(slot(&keys.rows(tables::SUBSCRIPTIONS, i)), s);
                assert_eq!(slot(&keys.index(tables::PRESENCE, i)), s);
                assert_eq!(slot(&keys.feed(i)), s);
            }
        }
        // The same tags for every node, and the prefix's own keys under its own tag.
        assert_eq!(Keys::new("sb", "b", 6).tags, Keys::new("sb", "a", 6).tags);
        let keys = Keys::new("sb", "a", 6);
        assert_eq!(keys.layout(), "{sb}:shards");
        assert_eq!(keys.alive("b"), "{sb}:node:b");
    }

    #[test]
    fn a_rows_shard_follows_from_its_first_segment() {
        for count in [1, 4, 16] {
            for user in ["alice", "bob", "carol", "user:42", ""] {
                let s = Shard::of(user, count);
                assert!(s.index < count);
                for key in [
                    tables::binding_key(user, "x"),
                    tables::profile_key(user, "meeting"),
                    tables::voicemail_key(user, "0001"),
                    tables::status_log_key(user, 5, "dnd"),
                ] {
                    assert_eq!(Shard::of(&key, count), s);
                    assert!(s.holds(&key));
                }
            }
        }
        assert_eq!(Shard::of("anything", 1), Shard::WHOLE);
        assert!(Shard::WHOLE.holds("anything"));
        // Sixteen shards take rows of many people each.
        let used: std::collections::BTreeSet<u32> = (0..200)
            .map(|i| Shard::of(&format!("user{i}"), 16).index)
            .collect();
        assert_eq!(used.len(), 16);
    }

    #[test]
    fn a_range_within_one_segment_is_read_from_one_shard() {
        assert_eq!(one_segment("alice\n", "alice\u{b}"), Some("alice"));
        let (from, to) = tables::status_log_range("alice", 100);
        assert_eq!(one_segment(&from, &to), Some("alice"));
        let (from, to) = tables::voicemail_range("user:al");
        assert_eq!(one_segment(&from, &to), Some("user:al"));
        // Keys of another segment could be in it.
        assert_eq!(one_segment("alice\n", "alicf"), None);
        assert_eq!(one_segment("", "~"), None);
        assert_eq!(one_segment("alice", "alice\u{b}"), None);
        let (from, to) = tables::call_record_range(1, 2);
        assert_eq!(one_segment(&from, &to), None);
    }

    #[test]
    fn writes_are_grouped_by_shard_in_their_order() {
        let keys = Keys::new("sb", "a", 8);
        let writes: Vec<Write> = (0..40)
            .map(|i| Write::put(tables::PRESENCE, format!("user{}", i % 10), vec![i]))
            .collect();
        let groups = keys.by_shard(&writes);
        assert!(groups.windows(2).all(|g| g[0].0 < g[1].0));
        assert_eq!(groups.iter().map(|(_, g)| g.len()).sum::<usize>(), 40);
        for (shard, group) in &groups {
            assert!(group.iter().all(|w| keys.shard_of(&w.key) == *shard));
            assert!(group.windows(2).all(|p| {
                let at = |w: &Write| writes.iter().position(|x| std::ptr::eq(x, w));
                at(p[0]) < at(p[1])
            }));
        }
    }

    #[test]
    fn the_addresses_of_a_clusters_nodes_are_read_from_cluster_nodes() {
        let nodes = "\
07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004,host-a slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30002@31002 master - 0 1426238316232 2 connected 5461-10922
292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 127.0.0.1:30003@31003 master - 0 1426238318243 3 connected 10923-16383
6ec23923021cf3ffec47632106199cb7f496ce01 :0@0 master,fail,noaddr - 1426238316232 1426238316232 5 disconnected
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca [::1]:30001@31001 myself,master - 0 0 1 connected 0-5460
";
        assert_eq!(
            cluster_node_addresses(nodes),
            vec![
                "127.0.0.1:30004",
                "127.0.0.1:30002",
                "127.0.0.1:30003",
                "[::1]:30001"
            ]
        );
        assert!(cluster_node_addresses("").is_empty());
    }

    #[test]
    fn entry_ids_sort_as_numbers() {
        assert!(entry_id("10-0") > entry_id("9-5"));
        assert!(entry_id("9-10") > entry_id("9-9"));
        assert_eq!(entry_id("0-0"), (0, 0));
    }

    #[test]
    fn a_feed_entry_reads_back_as_written() {
        let w = Write::put(tables::PRESENCE, "alice", b"{\"x\":1}".to_vec());
        let cmd = FeedEntry::command("{sb}:feed", 10, "a/1", 7, &w);
        let args: Vec<Vec<u8>> = cmd
            .args_iter()
            .map(|a| match a {
                redis::Arg::Simple(b) => b.to_vec(),
                _ => Vec::new(),
            })
            .collect();
        // XADD key MAXLEN ~ n * then field/value pairs.
        let fields = &args[6..];
        let map: HashMap<String, Value> = fields
            .chunks(2)
            .map(|p| {
                (
                    String::from_utf8(p[0].clone()).unwrap(),
                    Value::BulkString(p[1].clone()),
                )
            })
            .collect();
        let e = FeedEntry::read(&map).unwrap();
        assert_eq!((e.origin.as_str(), e.seq), ("a/1", 7));
        assert_eq!(e.write, w);
        let d = Write::delete(tables::BINDINGS, "alice\nx");
        let cmd = FeedEntry::command("{sb}:feed", 10, "a/1", 8, &d);
        assert!(!cmd
            .args_iter()
            .any(|a| matches!(a, redis::Arg::Simple(b) if b == b"v")));
    }
}
