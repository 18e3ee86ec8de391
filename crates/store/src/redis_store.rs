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
//! Every key carries the hash tag of the prefix (`{sb}:…`), so a commit's keys are in one
//! slot of a Redis Cluster. Tables each node keeps for itself ([`Scope::NodeLocal`]) are
//! under the node's name.

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
    /// About how many changes the feed keeps (`XADD MAXLEN ~`): a node away for longer
    /// than those last reads every cached table again.
    pub feed_len: u64,
    /// How often this node renews its liveness; it lapses after three times that, and
    /// the other nodes then remove the call status it published (so a node that died
    /// leaves nobody "busy").
    pub heartbeat: Duration,
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
        }
    }
}

/// What the change feed tells a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FeedEvent {
    /// Rows other nodes wrote (or deleted), in the order they were committed.
    Changes(Vec<Write>),
    /// The feed no longer holds every change since the last one read (the node was away
    /// for longer than it keeps): every cached table as it stands, to be held instead of
    /// what the node held.
    Resync(Vec<(Table, Rows)>),
}

/// The names of the keys a node uses: every one begins with the prefix in braces (one hash
/// tag, so one slot of a Redis Cluster); a node's own tables are under its name.
#[derive(Clone, Debug)]
struct Keys {
    prefix: String,
    node: String,
}

impl Keys {
    fn table(&self, kind: &str, table: Table) -> String {
        match table.scope() {
            Scope::Shared => format!("{{{}}}:{kind}:{}", self.prefix, table.name()),
            Scope::NodeLocal => {
                format!(
                    "{{{}}}:n:{}:{kind}:{}",
                    self.prefix,
                    self.node,
                    table.name()
                )
            }
        }
    }

    /// The hash holding a table's rows.
    fn rows(&self, table: Table) -> String {
        self.table("t", table)
    }

    /// The sorted set of a table's keys.
    fn index(&self, table: Table) -> String {
        self.table("k", table)
    }

    /// Adds the commands that make `w` to `pipe`: the row put or deleted, its key added to
    /// or taken from the table's index.
    fn queue(&self, pipe: &mut redis::Pipeline, w: &Write) {
        let (rows, index) = (self.rows(w.table), self.index(w.table));
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

    /// The change feed (a stream).
    fn feed(&self) -> String {
        format!("{{{}}}:feed", self.prefix)
    }

    /// `node`'s liveness (expiring).
    fn alive(&self, node: &str) -> String {
        format!("{{{}}}:node:{node}", self.prefix)
    }

    /// Every node that ever said it was alive.
    fn nodes(&self) -> String {
        format!("{{{}}}:nodes", self.prefix)
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

struct Writer {
    con: Option<Connection>,
    seq: u64,
}

/// Redis as the durable store of one node or of several sharing it.
pub struct RedisStore {
    server: Arc<Server>,
    config: RedisConfig,
    keys: Keys,
    /// The node's name and when this process opened the store: the feed entries this very
    /// process wrote (a restarted node's earlier entries count as another's).
    origin: String,
    writer: Mutex<Writer>,
    reader: Mutex<Option<Connection>>,
    /// The rows this process wrote and has not read back from the feed yet, while a
    /// follower runs (without one, nothing is kept).
    own: Mutex<HashMap<(Table, String), Own>>,
    following: std::sync::atomic::AtomicBool,
    /// To the thread that writes what need not wait for the disk ([`RedisStore::publish`])
    /// and keeps this node known as alive.
    publisher: Mutex<mpsc::Sender<Vec<Write>>>,
}

impl RedisStore {
    /// Connects, and checks that a commit is durable once Redis answers it.
    pub fn open(config: RedisConfig) -> Result<Self, StoreError> {
        let open_err = |e: Box<dyn std::error::Error + Send + Sync>| StoreError::Open {
            path: redacted(&config.url),
            source: e,
        };
        for name in [&config.node, &config.prefix] {
            check_name(name).map_err(|e| open_err(e.into()))?;
        }
        let keys = Keys {
            prefix: config.prefix.clone(),
            node: config.node.clone(),
        };
        let client = redis::Client::open(config.url.as_str()).map_err(|e| open_err(e.into()))?;
        let server = Arc::new(Server::new(client, config.timeout, &keys));
        let mut con = server.connect().map_err(|e| open_err(e.into()))?;
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
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let origin = format!("{}/{started}", config.node);
        let (publish, queue) = mpsc::channel();
        let publisher = Publisher {
            server: server.clone(),
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
            server,
            origin,
            config,
            keys,
            publisher: Mutex::new(publish),
            writer: Mutex::new(Writer {
                con: Some(con),
                seq: 0,
            }),
            reader: Mutex::new(None),
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

    /// The feed's newest entry now ("0-0" while it has none): reading on from here, after
    /// reading the tables, misses no change.
    pub fn feed_position(&self) -> Result<String, StoreError> {
        let mut reader = self.reader.lock().map_err(|_| StoreError::Stopped)?;
        with_connection(&mut reader, &self.server, |con| {
            newest_entry(con, &self.keys.feed())
        })
        .map_err(io_err)
    }

    /// Reads the feed from `from` (a [`RedisStore::feed_position`]) on a thread of its own,
    /// handing `sink` what other nodes changed, until `sink` returns false. Survives Redis
    /// going away: it reconnects (at most every two seconds) and reads on from the last
    /// entry it read, or reads every cached table again when the feed no longer holds that
    /// entry's successors.
    pub fn follow(
        self: &Arc<Self>,
        from: String,
        mut sink: impl FnMut(FeedEvent) -> bool + Send + 'static,
    ) -> thread::JoinHandle<()> {
        self.following
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let store = self.clone();
        thread::Builder::new()
            .name("store-feed".into())
            .spawn(move || {
                let mut last = from;
                let mut con: Option<Connection> = None;
                let mut failing = false;
                loop {
                    let c = match con.as_mut() {
                        Some(c) => c,
                        None => match store.reconnect_feed(&mut last, &mut sink) {
                            Ok(Some(c)) => {
                                if failing {
                                    tracing::info!("the store's change feed is read again");
                                    failing = false;
                                }
                                con.insert(c)
                            }
                            Ok(None) => return,
                            Err(e) => {
                                if !failing {
                                    tracing::warn!(error = %e, "cannot read the store's change feed; retrying every 2 s");
                                    failing = true;
                                }
                                thread::sleep(Duration::from_secs(2));
                                continue;
                            }
                        },
                    };
                    match store.read_feed(c, &mut last) {
                        Ok(changes) if changes.is_empty() => {
                            // Nothing new within the wait: is anyone still listening?
                            if !sink(FeedEvent::Changes(Vec::new())) {
                                return;
                            }
                        }
                        Ok(changes) => {
                            if !sink(FeedEvent::Changes(changes)) {
                                return;
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "the store's change feed broke off; reconnecting");
                            failing = true;
                            con = None;
                        }
                    }
                }
            })
            .expect("spawning the store's feed thread")
    }

    /// A new connection for the feed; when entries after `last` were trimmed meanwhile,
    /// every cached table is read and handed on, and `last` moves to the feed's newest
    /// entry. None when the sink stopped listening.
    fn reconnect_feed(
        &self,
        last: &mut String,
        sink: &mut impl FnMut(FeedEvent) -> bool,
    ) -> Result<Option<Connection>, StoreError> {
        let mut con = self.server.connect().map_err(io_err)?;
        // XREAD blocks for a second at most; the socket waits longer than that.
        con.set_read_timeout(Some(self.config.timeout + Duration::from_secs(1)))
            .map_err(io_err)?;
        if trimmed_after(&mut con, &self.keys.feed(), last).map_err(io_err)? {
            let at = newest_entry(&mut con, &self.keys.feed()).map_err(io_err)?;
            let mut tables = Vec::with_capacity(tables::CACHED.len());
            for &t in tables::CACHED {
                tables.push((t, self.rows(&mut con, t, None, usize::MAX).map_err(io_err)?));
            }
            tracing::warn!(
                from = %last,
                "the store's change feed no longer holds every change since this node last read it; every shared table is read again"
            );
            *last = at;
            if !sink(FeedEvent::Resync(tables)) {
                return Ok(None);
            }
        }
        Ok(Some(con))
    }

    /// The next entries of the feed after `last` (waiting a second at most), moving `last`
    /// on; only those to apply here (see [`Own`]).
    fn read_feed(&self, con: &mut Connection, last: &mut String) -> redis::RedisResult<Vec<Write>> {
        let reply: Option<redis::streams::StreamReadReply> = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(1000)
            .arg("BLOCK")
            .arg(1000)
            .arg("STREAMS")
            .arg(self.keys.feed())
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

    /// A table's rows, or those with keys in `start..end`, at most `limit`.
    fn rows(
        &self,
        con: &mut Connection,
        table: Table,
        range: Option<(&str, &str)>,
        limit: usize,
    ) -> redis::RedisResult<Vec<(String, Vec<u8>)>> {
        let (min, max) = match range {
            None => ("-".to_string(), "+".to_string()),
            Some((start, end)) => (format!("[{start}"), format!("({end}")),
        };
        let mut cmd = redis::cmd("ZRANGEBYLEX");
        cmd.arg(self.keys.index(table)).arg(min).arg(max);
        if limit != usize::MAX {
            cmd.arg("LIMIT").arg(0).arg(limit);
        }
        let keys: Vec<String> = cmd.query(con)?;
        let mut out = Vec::with_capacity(keys.len());
        let rows_key = self.keys.rows(table);
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

    fn read_rows(
        &self,
        table: Table,
        range: Option<(&str, &str)>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        if range.is_some_and(|(s, e)| s >= e) || limit == 0 {
            return Ok(Vec::new());
        }
        let mut reader = self.reader.lock().map_err(|_| StoreError::Stopped)?;
        with_connection(&mut reader, &self.server, |con| {
            self.rows(con, table, range, limit)
        })
        .map_err(io_err)
    }
}

impl Store for RedisStore {
    fn commit(&self, writes: &[Write]) -> Result<(), StoreError> {
        if writes.is_empty() {
            return Ok(());
        }
        let mut writer = self.writer.lock().map_err(|_| StoreError::Stopped)?;
        writer.seq += 1;
        let seq = writer.seq;
        let feed = self.keys.feed();
        let following = self.following.load(std::sync::atomic::Ordering::SeqCst);
        let mut pipe = redis::pipe();
        pipe.atomic();
        let mut fed = Vec::new();
        for w in writes {
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
        let r = with_connection(&mut writer.con, &self.server, |con| {
            pipe.query::<()>(con)?;
            if self.config.replicas > 0 {
                wait_replicas(con, self.config.replicas, self.config.replica_timeout)?;
            }
            Ok(())
        });
        if r.is_err() && !fed.is_empty() {
            // The caller takes its change back; should Redis have made it all the same (its
            // answer lost), the entries that come back are applied, so that this node
            // holds what the store does. (At most one entry per row is kept.)
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
        let (rows, index) = (self.keys.rows(table), self.keys.index(table));
        let mut pipe = redis::pipe();
        pipe.atomic()
            .hset_nx(&rows, key, value.as_slice())
            .ignore()
            .zadd(&index, key, 0)
            .ignore()
            .hget(&rows, key);
        let (stored,): (Vec<u8>,) = with_connection(&mut writer.con, &self.server, |con| {
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
    server: Arc<Server>,
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
        let mut con: Option<Connection> = None;
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
                let r = with_connection(&mut con, &self.server, |c| self.beat(c, first));
                match r {
                    Ok(()) => first = false,
                    Err(e) => {
                        tracing::debug!(error = %e, "cannot renew this node's liveness in the shared store")
                    }
                }
            }
            if !self.unsent.is_empty() {
                let writes = std::mem::take(&mut self.unsent);
                let r = with_connection(&mut con, &self.server, |c| self.write(c, &writes));
                match r {
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
                        // whole (each failure counts), up to a bound.
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

    /// Rows and their feed entries (said to come from `origin`), in one transaction.
    fn write_as(
        &self,
        con: &mut Connection,
        writes: &[Write],
        origin: &str,
    ) -> redis::RedisResult<()> {
        let feed = self.keys.feed();
        let mut pipe = redis::pipe();
        pipe.atomic();
        for w in writes {
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
        pipe.query(con)
    }

    /// This node's own rows, and their feed entries.
    fn write(&self, con: &mut Connection, writes: &[Write]) -> redis::RedisResult<()> {
        self.write_as(con, writes, &self.origin)
    }

    /// Renews this node's liveness. At the first beat, rows an earlier run of this node
    /// left are removed; later, when the liveness had lapsed (Redis away, this node
    /// stalled), the other nodes may have removed this node's rows: they are written
    /// again. Then the rows of nodes no longer alive are removed.
    fn beat(&self, con: &mut Connection, first: bool) -> redis::RedisResult<()> {
        let node = &self.config.node;
        let before: Option<String> = redis::cmd("SET")
            .arg(self.keys.alive(node))
            .arg(&self.origin)
            .arg("PX")
            .arg(3 * self.config.heartbeat.as_millis() as u64)
            .arg("GET")
            .query(con)?;
        let _: () = redis::cmd("SADD")
            .arg(self.keys.nodes())
            .arg(node)
            .query(con)?;
        if first {
            self.remove_rows_of(con, node)?;
        } else if before.is_none() {
            // Taken for gone meanwhile: back, and what it said of its calls again.
            let mut again: Vec<Write> = self
                .mine
                .iter()
                .map(|(k, v)| Write::put(tables::CALL_STATUS, k.clone(), v.clone()))
                .collect();
            again.push(Write::put(tables::NODES, node.clone(), b"back".to_vec()));
            self.write_as(con, &again, "")?;
        }
        let nodes: Vec<String> = redis::cmd("SMEMBERS").arg(self.keys.nodes()).query(con)?;
        for other in nodes.iter().filter(|n| *n != node) {
            let alive: bool = redis::cmd("EXISTS")
                .arg(self.keys.alive(other))
                .query(con)?;
            if !alive {
                self.remove_rows_of(con, other)?;
                let gone = Write::put(tables::NODES, other.clone(), b"gone".to_vec());
                self.write_as(con, &[gone], "")?;
                let _: () = redis::cmd("SREM")
                    .arg(self.keys.nodes())
                    .arg(other)
                    .query(con)?;
            }
        }
        Ok(())
    }

    /// Removes every call status row of `node`, told to every node through the feed,
    /// this one included (the entries come from no node's run).
    fn remove_rows_of(&self, con: &mut Connection, node: &str) -> redis::RedisResult<()> {
        let index = self.keys.index(tables::CALL_STATUS);
        let keys: Vec<String> = redis::cmd("ZRANGEBYLEX")
            .arg(&index)
            .arg(format!("[{node}\n"))
            .arg(format!("({node}\u{b}"))
            .query(con)?;
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
        self.write_as(con, &gone, "")
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
/// In a Redis Cluster, the master that holds the site's slot (every key of a site has the
/// same hash tag): each new connection asks about a key of the site, and a redirection
/// (`MOVED`, `ASK`) has it connect there instead, and stay there.
struct Server {
    client: Mutex<redis::Client>,
    timeout: Duration,
    /// A key of the site's.
    probe: String,
}

/// Most redirections followed for one connection.
const MAX_REDIRECTIONS: usize = 3;

impl Server {
    fn new(client: redis::Client, timeout: Duration, keys: &Keys) -> Self {
        Server {
            client: Mutex::new(client),
            timeout,
            probe: keys.feed(),
        }
    }

    fn client(&self) -> redis::Client {
        self.client
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A connection to the server holding the site's keys.
    fn connect(&self) -> redis::RedisResult<Connection> {
        for _ in 0..=MAX_REDIRECTIONS {
            let client = self.client();
            let mut con = client.get_connection_with_timeout(self.timeout)?;
            con.set_read_timeout(Some(self.timeout))?;
            con.set_write_timeout(Some(self.timeout))?;
            match redis::cmd("EXISTS")
                .arg(&self.probe)
                .query::<bool>(&mut con)
            {
                Ok(_) => return Ok(con),
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
        Err(e)
            if kept
                && (e.is_connection_dropped()
                    || e.is_io_error()
                    || e.redirect_node().is_some()) =>
        {
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
