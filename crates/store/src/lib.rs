//! Durable state: one small store trait, an embedded default on local disk, group commit.
//!
//! Everything that must survive a crash and a restart (registrations, presence, profile
//! activations and their end times, memory-hunt positions, time-in-status counters) is kept
//! as key → bytes rows in named tables. A write is durable when [`Store::commit`] returns:
//! callers acknowledge (a 200 OK to REGISTER, a 200 to an API call) only after that.
//!
//! [`GroupCommitter`] puts every write submitted while a commit is under way into the next
//! single commit, so one fsync serves many requests and durability does not cap throughput.
//!
//! Every table is declared once, in [`tables`], with its key layout, what its rows hold and
//! whether a cluster would share it; the order the daemon reads them back in is there too.
//! This crate depends on no other crate of Switchboard's.

pub mod redis_store;
pub mod tables;

pub use redis_store::{FeedEvent, FeedPosition, RedisConfig, RedisStore, Shard};

pub use tables::{Scope, Table};

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;

/// A failure of the durable store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the state store at {path}")]
    Open {
        path: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("state store failure: {0}")]
    Io(Box<dyn std::error::Error + Send + Sync>),
    #[error("the state store's writer has stopped")]
    Stopped,
}

fn io_err(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Io(Box::new(e))
}

/// A table's rows, key and value, in key order.
pub type Rows = Vec<(String, Vec<u8>)>;

/// One row written (`value: Some`) or deleted (`value: None`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Write {
    pub table: Table,
    pub key: String,
    pub value: Option<Vec<u8>>,
}

impl Write {
    pub fn put(table: Table, key: impl Into<String>, value: Vec<u8>) -> Self {
        Write {
            table,
            key: key.into(),
            value: Some(value),
        }
    }

    pub fn delete(table: Table, key: impl Into<String>) -> Self {
        Write {
            table,
            key: key.into(),
            value: None,
        }
    }
}

/// Durable key → bytes tables.
pub trait Store: Send + Sync + 'static {
    /// Applies all writes atomically; they are durable when this returns Ok.
    fn commit(&self, writes: &[Write]) -> Result<(), StoreError>;
    /// Every row of a table, in key order.
    fn scan(&self, table: Table) -> Result<Vec<(String, Vec<u8>)>, StoreError>;
    /// The row `key` of `table`: the one there, or `value` stored (durably) when there was
    /// none. Nodes sharing a store that each try to make the same row at once all end up
    /// with the one that was made first.
    fn put_if_absent(
        &self,
        table: Table,
        key: &str,
        value: Vec<u8>,
    ) -> Result<Vec<u8>, StoreError> {
        let mut end = key.to_string();
        end.push('\0');
        if let Some((_, v)) = self.scan_range(table, key, &end)?.into_iter().next() {
            return Ok(v);
        }
        self.commit(&[Write::put(table, key, value.clone())])?;
        Ok(value)
    }
    /// The rows of a table with `start <= key < end`, in key order.
    fn scan_range(
        &self,
        table: Table,
        start: &str,
        end: &str,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let mut rows = self.scan(table)?;
        rows.retain(|(k, _)| k.as_str() >= start && k.as_str() < end);
        Ok(rows)
    }
    /// At most `limit` rows of a table with `start <= key < end`, in key order (a page
    /// of a table too large to read whole).
    fn scan_range_limited(
        &self,
        table: Table,
        start: &str,
        end: &str,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let mut rows = self.scan_range(table, start, end)?;
        rows.truncate(limit);
        Ok(rows)
    }
}

/// The embedded default store: a redb database file, fsynced on every commit.
pub struct RedbStore {
    db: redb::Database,
}

impl RedbStore {
    /// Opens (or creates) `dir/state.redb`, creating `dir` if needed.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let open_err = |e: Box<dyn std::error::Error + Send + Sync>| StoreError::Open {
            path: dir.display().to_string(),
            source: e,
        };
        std::fs::create_dir_all(dir).map_err(|e| open_err(Box::new(e)))?;
        let db =
            redb::Database::create(dir.join("state.redb")).map_err(|e| open_err(Box::new(e)))?;
        Ok(RedbStore { db })
    }
}

fn table(t: Table) -> redb::TableDefinition<'static, &'static str, &'static [u8]> {
    redb::TableDefinition::new(t.name())
}

impl Store for RedbStore {
    fn commit(&self, writes: &[Write]) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(io_err)?;
        {
            for w in writes {
                let mut t = tx.open_table(table(w.table)).map_err(io_err)?;
                match &w.value {
                    Some(v) => {
                        t.insert(w.key.as_str(), v.as_slice()).map_err(io_err)?;
                    }
                    None => {
                        t.remove(w.key.as_str()).map_err(io_err)?;
                    }
                }
            }
        }
        tx.commit().map_err(io_err)
    }

    fn scan(&self, name: Table) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.read_rows(name, None, usize::MAX)
    }

    fn scan_range(
        &self,
        name: Table,
        start: &str,
        end: &str,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        if start >= end {
            return Ok(Vec::new());
        }
        self.read_rows(name, Some((start, end)), usize::MAX)
    }

    fn scan_range_limited(
        &self,
        name: Table,
        start: &str,
        end: &str,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        if start >= end {
            return Ok(Vec::new());
        }
        self.read_rows(name, Some((start, end)), limit)
    }
}

impl RedbStore {
    /// The rows of a table (a table never written to has none), all of them or those
    /// whose key is in `start..end`; at most `limit`.
    fn read_rows(
        &self,
        name: Table,
        range: Option<(&str, &str)>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        use redb::{ReadableDatabase as _, ReadableTable as _};
        let tx = self.db.begin_read().map_err(io_err)?;
        let t = match tx.open_table(table(name)) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(io_err(e)),
        };
        let rows = match range {
            None => t.iter(),
            Some((start, end)) => t.range::<&str>(start..end),
        }
        .map_err(io_err)?;
        let mut out = Vec::new();
        for row in rows.take(limit) {
            let (k, v) = row.map_err(io_err)?;
            out.push((k.value().to_string(), v.value().to_vec()));
        }
        Ok(out)
    }
}

/// A store that keeps nothing across restarts; for tests and benchmarks of the rest.
#[derive(Default)]
pub struct MemoryStore {
    tables: std::sync::Mutex<std::collections::BTreeMap<(&'static str, String), Vec<u8>>>,
}

impl Store for MemoryStore {
    fn commit(&self, writes: &[Write]) -> Result<(), StoreError> {
        let mut t = self.tables.lock().map_err(|_| StoreError::Stopped)?;
        for w in writes {
            match &w.value {
                Some(v) => {
                    t.insert((w.table.name(), w.key.clone()), v.clone());
                }
                None => {
                    t.remove(&(w.table.name(), w.key.clone()));
                }
            }
        }
        Ok(())
    }

    fn scan(&self, table: Table) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let t = self.tables.lock().map_err(|_| StoreError::Stopped)?;
        Ok(t.iter()
            .filter(|((name, _), _)| *name == table.name())
            .map(|((_, k), v)| (k.clone(), v.clone()))
            .collect())
    }
}

/// Called with the outcome of a submitted batch once it is durable (or failed).
pub type Done = Box<dyn FnOnce(Result<(), Arc<StoreError>>) + Send>;

/// Counters of a [`GroupCommitter`].
#[derive(Debug, Default)]
pub struct CommitStats {
    /// Store commits made.
    pub commits: AtomicU64,
    /// Batches submitted and committed.
    pub batches: AtomicU64,
    /// Commits that failed.
    pub failures: AtomicU64,
}

/// Funnels batches of writes from many callers into as few durable commits as possible.
///
/// A dedicated thread takes every batch waiting in its queue, commits them together, then
/// calls each batch's completion in submission order. Batches are applied in submission
/// order, so a later write to a key wins.
pub struct GroupCommitter {
    tx: mpsc::Sender<(Vec<Write>, Done)>,
    stats: Arc<CommitStats>,
    thread: Option<thread::JoinHandle<()>>,
}

/// Most batches folded into one commit.
const MAX_GROUP: usize = 4096;

impl GroupCommitter {
    pub fn new(store: Arc<dyn Store>) -> Self {
        let (tx, rx) = mpsc::channel::<(Vec<Write>, Done)>();
        let stats = Arc::new(CommitStats::default());
        let s = stats.clone();
        let thread = thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer(store, rx, s))
            .expect("spawn the store writer thread");
        GroupCommitter {
            tx,
            stats,
            thread: Some(thread),
        }
    }

    /// Queues a batch; `done` is called from the writer thread once it is durable.
    pub fn submit(&self, writes: Vec<Write>, done: Done) {
        if let Err(mpsc::SendError((_, done))) = self.tx.send((writes, done)) {
            done(Err(Arc::new(StoreError::Stopped)));
        }
    }

    pub fn stats(&self) -> &CommitStats {
        &self.stats
    }
}

impl Drop for GroupCommitter {
    fn drop(&mut self) {
        // Closing the channel lets the writer finish what is queued and stop.
        let (dead, _) = mpsc::channel();
        drop(std::mem::replace(&mut self.tx, dead));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn writer(store: Arc<dyn Store>, rx: mpsc::Receiver<(Vec<Write>, Done)>, stats: Arc<CommitStats>) {
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(b) => group.push(b),
                Err(_) => break,
            }
        }
        let writes: Vec<Write> = group.iter().flat_map(|(w, _)| w.iter().cloned()).collect();
        let result = if writes.is_empty() {
            Ok(())
        } else {
            store.commit(&writes)
        };
        stats.commits.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(()) => {
                stats
                    .batches
                    .fetch_add(group.len() as u64, Ordering::Relaxed);
                for (_, done) in group {
                    done(Ok(()));
                }
            }
            Err(e) => {
                stats.failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, batches = group.len(), "state store commit failed");
                let e = Arc::new(e);
                for (_, done) in group {
                    done(Err(e.clone()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::{BINDINGS, PRESENCE};
    use std::sync::mpsc::channel;

    const T: Table = Table::new("t", Scope::NodeLocal);
    const U: Table = Table::new("u", Scope::NodeLocal);
    const LOG: Table = Table::new("log", Scope::Shared);
    const NOTHING: Table = Table::new("nothing", Scope::NodeLocal);

    #[test]
    fn redb_roundtrip_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = RedbStore::open(dir.path()).unwrap();
            assert!(s.scan(BINDINGS).unwrap().is_empty());
            s.commit(&[
                Write::put(BINDINGS, "a", b"1".to_vec()),
                Write::put(BINDINGS, "b", b"2".to_vec()),
                Write::put(PRESENCE, "a", b"x".to_vec()),
            ])
            .unwrap();
            s.commit(&[Write::delete(BINDINGS, "a")]).unwrap();
        }
        let s = RedbStore::open(dir.path()).unwrap();
        assert_eq!(s.scan(BINDINGS).unwrap(), vec![("b".into(), b"2".to_vec())]);
        assert_eq!(s.scan(PRESENCE).unwrap().len(), 1);
    }

    #[test]
    fn range_scans_read_only_their_keys() {
        let dir = tempfile::tempdir().unwrap();
        let redb = RedbStore::open(dir.path()).unwrap();
        let memory = MemoryStore::default();
        let rows = [
            Write::put(LOG, "alice\n001", vec![1]),
            Write::put(LOG, "alice\n002", vec![2]),
            Write::put(LOG, "alice\n003", vec![3]),
            Write::put(LOG, "alice2\n001", vec![4]),
            Write::put(LOG, "bob\n001", vec![5]),
        ];
        for s in [&redb as &dyn Store, &memory] {
            assert!(s.scan_range(LOG, "a", "z").unwrap().is_empty());
            s.commit(&rows).unwrap();
            let got: Vec<Vec<u8>> = s
                .scan_range(LOG, "alice\n", "alice\n003")
                .unwrap()
                .into_iter()
                .map(|(_, v)| v)
                .collect();
            assert_eq!(got, [vec![1], vec![2]]);
            assert!(s.scan_range(LOG, "b", "a").unwrap().is_empty());
            assert_eq!(s.scan_range(NOTHING, "a", "z").unwrap(), vec![]);
            let page = s.scan_range_limited(LOG, "alice\n", "z", 2).unwrap();
            let keys: Vec<&str> = page.iter().map(|(k, _)| k.as_str()).collect();
            assert_eq!(keys, ["alice\n001", "alice\n002"]);
        }
    }

    #[test]
    fn group_commit_acknowledges_every_batch_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(RedbStore::open(dir.path()).unwrap());
        let g = GroupCommitter::new(store.clone());
        let (tx, rx) = channel();
        for i in 0..500 {
            let tx = tx.clone();
            g.submit(
                vec![Write::put(T, "k", i.to_string().into_bytes())],
                Box::new(move |r| tx.send((i, r.is_ok())).unwrap()),
            );
        }
        let got: Vec<(i32, bool)> = (0..500).map(|_| rx.recv().unwrap()).collect();
        assert!(got.iter().all(|(_, ok)| *ok));
        assert_eq!(
            got.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
            (0..500).collect::<Vec<_>>()
        );
        assert_eq!(store.scan(T).unwrap(), vec![("k".into(), b"499".to_vec())]);
        assert!(g.stats().commits.load(Ordering::Relaxed) <= 500);
        assert_eq!(g.stats().batches.load(Ordering::Relaxed), 500);
    }

    struct Broken;
    impl Store for Broken {
        fn commit(&self, _: &[Write]) -> Result<(), StoreError> {
            Err(StoreError::Io("disk full".into()))
        }
        fn scan(&self, _: Table) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
            Ok(vec![])
        }
    }

    #[test]
    fn failures_reach_every_waiter() {
        let g = GroupCommitter::new(Arc::new(Broken));
        let (tx, rx) = channel();
        g.submit(
            vec![Write::put(T, "k", vec![])],
            Box::new(move |r| tx.send(r.is_err()).unwrap()),
        );
        assert!(rx.recv().unwrap());
        assert_eq!(g.stats().failures.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn memory_store() {
        let s = MemoryStore::default();
        s.commit(&[
            Write::put(T, "b", vec![2]),
            Write::put(T, "a", vec![1]),
            Write::put(U, "a", vec![9]),
        ])
        .unwrap();
        assert_eq!(
            s.scan(T).unwrap(),
            vec![("a".into(), vec![1]), ("b".into(), vec![2])]
        );
    }
}
