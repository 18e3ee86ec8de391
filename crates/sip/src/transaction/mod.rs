//! RFC 3261 §17 transactions, with the RFC 6026 Accepted states, as one sans-I/O layer.
//!
//! Events go in — [`TransactionLayer::handle_request`], [`TransactionLayer::handle_response`],
//! [`TransactionLayer::respond`], [`TransactionLayer::send_request`],
//! [`TransactionLayer::handle_timeout`], [`TransactionLayer::handle_transport_error`] —
//! always with the current time passed in. What to do comes out of
//! [`TransactionLayer::poll_action`] (send these bytes there; a transaction timed out; a
//! transaction ended) and [`TransactionLayer::poll_timeout`] says when to call
//! [`TransactionLayer::handle_timeout`] next. The layer never reads a clock and never does
//! I/O, so tests drive it with a virtual clock.
//!
//! # What the layer does and what its user (the TU) does
//!
//! - Every received request goes to `handle_request` first. Retransmissions are absorbed
//!   and, when the transaction has answered, answered again from it; a new request comes
//!   back as [`ServerOutcome::New`] and must be answered with `respond`. An ACK for a
//!   non-2xx final response is absorbed; an ACK for a 2xx is not part of any transaction
//!   (RFC 6026) and comes back as [`ServerOutcome::Ack`].
//! - The TU retransmits its own 2xx to INVITE (§13.3.1.4) through `respond`, which passes
//!   them while the transaction is Accepted (Timer L).
//! - Every received response goes to `handle_response`. The ACK for a non-2xx final
//!   response to INVITE is built and sent by the layer (§17.1.1.3); the ACK for a 2xx is
//!   the TU's. Each 2xx, first or retransmitted, reaches the TU while the client
//!   transaction is Accepted (Timer M), so a forked INVITE's several 2xx all get ACKed.
//! - Over reliable transports (TCP) nothing is retransmitted and the wait states that only
//!   absorb retransmissions (timers D, I, J, K) last zero time.
//!
//! A server INVITE transaction does not send `100 Trying` by itself (§17.2.1): the TU
//! should send it at once unless it answers within 200 ms.
//!
//! Memory is bounded by the transactions alive: a terminated transaction is forgotten at
//! once (after [`Action::Terminated`]). A server transaction waits for its TU's answer
//! without a timer; every `New` must be answered.

mod client;
mod matching;
mod server;
mod slots;
/// The remote end of a peer, as failures are reported for it: its transport, address and
/// connection, whichever local address messages to it leave from.
fn remote(peer: Peer) -> Peer {
    Peer {
        local: None,
        ..peer
    }
}

#[cfg(test)]
mod tests;

use crate::msg::Request;
use crate::peer::Peer;
use crate::GrowingMap;
use bytes::Bytes;
use matching::{ClientKey, ServerKey};
use slots::Slots;
use smallvec::SmallVec;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The branch prefix of RFC 3261 transaction identifiers (§8.1.1.7).
pub const MAGIC_COOKIE: &str = "z9hG4bK";

/// The timer bases of §17 (Table 4 of RFC 3261).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerConfig {
    /// RTT estimate (default 500 ms). Values under 1 ms count as 1 ms.
    pub t1: Duration,
    /// Longest retransmit interval for non-INVITE requests and INVITE responses (default
    /// 4 s). Values under T1 count as T1.
    pub t2: Duration,
    /// Longest time a message stays in the network (default 5 s): timers I and K.
    pub t4: Duration,
    /// Timer C (§16.6 step 11): how long a client INVITE transaction waits for a final
    /// response, from the INVITE and again from each 101–199, before telling its user
    /// (who should CANCEL); 64·T1 later it gives up. Longer than 3 minutes per RFC 3261.
    pub c: Duration,
}

impl Default for TimerConfig {
    fn default() -> Self {
        TimerConfig {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            c: Duration::from_secs(181),
        }
    }
}

impl TimerConfig {
    /// 64·T1: timers B, F, H, J, L, M.
    pub fn t64(&self) -> Duration {
        self.t1.saturating_mul(64)
    }

    /// Timer D over unreliable transports: 64·T1, at least 32 s (§17.1.1.2).
    pub fn timer_d(&self) -> Duration {
        self.t64().max(Duration::from_secs(32))
    }

    /// The values the layer runs with: T1 ≥ 1 ms, T2 ≥ T1, so that no retransmission
    /// timer can fire in a loop at one instant.
    fn normalised(mut self) -> Self {
        self.t1 = self.t1.max(Duration::from_millis(1));
        self.t2 = self.t2.max(self.t1);
        self
    }
}

/// Identifies a transaction for its whole life: its slot in the layer's table and that
/// slot's generation, so an id is not handed out again until its slot has been reused
/// 2^32 times.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TxId(pub u64);

impl fmt::Display for TxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tx{}", self.0)
    }
}

/// The timers of RFC 3261 §17 (Table 4), §16.6 (C) and RFC 6026 (L, M).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Timer {
    /// Client INVITE retransmission (unreliable): T1, doubling.
    A,
    /// Client INVITE gives up without a response: 64·T1.
    B,
    /// Client INVITE without a final response (proxy, §16.6): [`TimerConfig::c`] from the
    /// INVITE and from each 101–199.
    C,
    /// Client INVITE absorbs final-response retransmissions: ≥ 32 s, 0 reliable.
    D,
    /// Client non-INVITE retransmission (unreliable): T1 doubling up to T2.
    E,
    /// Client non-INVITE gives up: 64·T1.
    F,
    /// Server INVITE final-response retransmission (unreliable): T1 doubling up to T2.
    G,
    /// Server INVITE gives up waiting for the ACK: 64·T1.
    H,
    /// Server INVITE absorbs ACK retransmissions: T4, 0 reliable.
    I,
    /// Server non-INVITE absorbs request retransmissions: 64·T1, 0 reliable.
    J,
    /// Client non-INVITE absorbs response retransmissions: T4, 0 reliable.
    K,
    /// Server INVITE Accepted: passes the TU's 2xx retransmissions: 64·T1.
    L,
    /// Client INVITE Accepted: passes further 2xx to the TU: 64·T1.
    M,
}

/// The four kinds of transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    ClientInvite,
    ClientNonInvite,
    ServerInvite,
    ServerNonInvite,
}

/// Transaction states (§17.1, §17.2, RFC 6026 §7.1–7.2). Terminated transactions are
/// forgotten, so [`TransactionLayer::state`] never reports that state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Calling,
    Trying,
    Proceeding,
    Completed,
    Confirmed,
    Accepted,
    Terminated,
}

/// What the layer asks of its user, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Send these bytes to this peer (for a stream peer: over `to.conn` if it is still
    /// open, §18.2.2).
    Transmit { to: Peer, bytes: Bytes },
    /// Timer B or F (no final response), H (no ACK): the transaction gave up and ends
    /// (B and F mean a 408 to the TU, §8.1.3.1). Timer C: no final response long after
    /// ringing; the user should CANCEL (the transaction ends by itself 64·T1 later).
    Timeout { tx: TxId, timer: Timer },
    /// The transport reported it could not deliver for this transaction
    /// ([`TransactionLayer::handle_transport_error`]); it ends (§17.1.4, §17.2.4).
    TransportError(TxId),
    /// The transaction ended and was forgotten.
    Terminated(TxId),
}

/// What became of a received request.
#[derive(Clone, Debug, PartialEq)]
pub enum ServerOutcome {
    /// A new server transaction: the transaction user must answer it.
    New(TxId, Request),
    /// A retransmission or an ACK for a non-2xx response, handled by the layer (any
    /// response to re-send is already queued as an action).
    Absorbed,
    /// An ACK that belongs to no server transaction: the ACK for a 2xx (RFC 6026 §6),
    /// handed to the transaction user (also when it reused the INVITE's branch and arrived
    /// while that transaction was Accepted).
    Ack(Request),
    /// A CANCEL (its own new transaction, answered by the transaction user) and the
    /// INVITE server transaction it matches, if one is alive (§9.2: same branch, sent-by
    /// and CSeq number). A retransmitted CANCEL is [`ServerOutcome::Absorbed`].
    Cancel {
        cancel_tx: TxId,
        invite_tx: Option<TxId>,
        request: Request,
    },
    /// The request has no usable top Via or CSeq: no transaction can be made and no
    /// response could be matched by its sender; drop it and count it.
    Invalid(&'static str),
}

/// What became of a received response.
#[derive(Clone, Debug, PartialEq)]
pub enum ClientOutcome {
    /// A 1xx for a client transaction.
    Provisional(TxId, crate::msg::Response),
    /// A final response for a client transaction (also a retransmitted 2xx to INVITE,
    /// which the transaction user must see again to re-send its ACK).
    Final(TxId, crate::msg::Response),
    /// A retransmission absorbed by the layer (a retransmitted non-2xx to INVITE is ACKed
    /// again by the layer).
    Absorbed,
    /// No client transaction matches (§17.1.3), or the response has no top Via branch,
    /// no CSeq method or a status outside 100–699: a proxy forwards a stray 2xx
    /// statelessly (§16.7), anything else is dropped.
    Stray(crate::msg::Response),
}

/// Why a transaction refused a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxError {
    #[error("no such transaction (it may have ended)")]
    Unknown,
    #[error("the transaction is not a server transaction")]
    NotServer,
    #[error("the transaction already sent its final response")]
    AlreadyFinal,
    #[error("the request has no top Via with a branch parameter")]
    NoVia,
    #[error("status code {0} is not in 100-699")]
    BadStatus(u16),
    #[error("an ACK is no transaction: send the ACK for a 2xx directly")]
    AckIsNotATransaction,
    #[error("a client transaction with this branch and method is alive; use a fresh branch")]
    DuplicateBranch,
    #[error("no room for another transaction")]
    Full,
}

/// Where a transaction is filed: one allocation, shared with the key table.
#[derive(Clone, Debug)]
enum Key {
    Server(Arc<ServerKey>),
    Client(Arc<ClientKey>),
}

struct Tx {
    kind: Kind,
    state: State,
    key: Key,
    /// Server: where responses go. Client: where the request went.
    peer: Peer,
    /// Client: the request, to build the ACK for a non-2xx response and the CANCEL.
    /// Boxed: gone once the transaction is final, while the transaction lives on for tens
    /// of seconds.
    request: Option<Box<Request>>,
    /// Client: the request's bytes. Server: the last response's bytes (empty before one).
    bytes: Bytes,
    /// Client INVITE: the ACK sent for a non-2xx final response, sent again for each
    /// retransmission of that response.
    ack: Option<Bytes>,
    /// Current retransmission interval of timer A, E or G.
    interval: Duration,
    /// The armed timers (a few at most), mirrored in [`TransactionLayer::timers`] or
    /// [`TransactionLayer::queues`]; an entry there that is not here is stale.
    armed: SmallVec<[(Timer, Instant); 3]>,
}

impl Tx {
    /// A transaction of `kind` in its first state (§17.1.1, §17.1.2, §17.2.1, §17.2.2),
    /// with no request or bytes kept and no timer armed yet.
    fn new(kind: Kind, key: Key, peer: Peer, interval: Duration) -> Tx {
        Tx {
            kind,
            state: match kind {
                Kind::ClientInvite => State::Calling,
                Kind::ServerInvite => State::Proceeding,
                Kind::ClientNonInvite | Kind::ServerNonInvite => State::Trying,
            },
            key,
            peer,
            request: None,
            bytes: Bytes::new(),
            ack: None,
            interval,
            armed: SmallVec::new(),
        }
    }
}

/// All transactions of an element. See the [module documentation](self).
pub struct TransactionLayer {
    config: TimerConfig,
    /// Transactions live tens of seconds, so the table is large and grows: it grows by
    /// chunks of boxed entries, never moved ([`slots`]). The key tables share each key
    /// with its transaction.
    txs: Slots<Tx>,
    server_keys: GrowingMap<Arc<ServerKey>, TxId>,
    client_keys: GrowingMap<Arc<ClientKey>, TxId>,
    timers: BTreeSet<(Instant, TxId, Timer)>,
    /// The timers that only absorb retransmissions ([`QUEUED`]): armed once, for the same
    /// time, and nearly always left to run out, they are most of the timers alive (tens of
    /// seconds of them). Each has a queue in the order armed (so also the order due),
    /// which costs no search to add to or take from; one disarmed early stays in its queue
    /// until due and is skipped then.
    queues: [VecDeque<(Instant, TxId)>; QUEUED.len()],
    /// The transactions of each stream peer (connection), so that a connection that fails
    /// ends its transactions without a search of the whole table: a peer can close
    /// connections as often as it likes.
    by_stream_peer: HashMap<Peer, SmallVec<[TxId; 2]>>,
    actions: VecDeque<Action>,
}

/// The timers kept in queues rather than the ordered set: those that only absorb
/// retransmissions, each always armed for the same time.
const QUEUED: [Timer; 6] = [Timer::D, Timer::I, Timer::J, Timer::K, Timer::L, Timer::M];

/// How far in the future a timer too large for `Instant` is put.
const FAR: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// `now + d`, saturating at a distant instant instead of panicking.
fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(FAR))
        .unwrap_or(now)
}

impl TransactionLayer {
    pub fn new(config: TimerConfig) -> Self {
        TransactionLayer {
            config: config.normalised(),
            txs: Slots::default(),
            server_keys: GrowingMap::new(),
            client_keys: GrowingMap::new(),
            timers: BTreeSet::new(),
            queues: Default::default(),
            by_stream_peer: HashMap::new(),
            actions: VecDeque::new(),
        }
    }

    /// The timer values in use (T1 at least 1 ms, T2 at least T1).
    pub fn config(&self) -> &TimerConfig {
        &self.config
    }

    /// Live transactions.
    pub fn len(&self) -> usize {
        self.txs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.txs.is_empty()
    }

    /// The state of a live transaction.
    pub fn state(&self, tx: TxId) -> Option<State> {
        self.txs.get(tx.0).map(|t| t.state)
    }

    /// Where a live transaction sends (client) or answers (server).
    pub fn peer(&self, tx: TxId) -> Option<Peer> {
        self.txs.get(tx.0).map(|t| t.peer)
    }

    /// The kind of a live transaction.
    pub fn kind(&self, tx: TxId) -> Option<Kind> {
        self.txs.get(tx.0).map(|t| t.kind)
    }

    /// The next thing to do, oldest first.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`TransactionLayer::handle_timeout`] must be called next: the earliest armed
    /// timer.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let queued = self
            .queues
            .iter()
            .filter_map(|q| q.front().map(|(at, _)| *at));
        self.timers
            .first()
            .map(|(t, _, _)| *t)
            .into_iter()
            .chain(queued)
            .min()
    }

    /// Fires every timer due at or before `now`, in order. Timers re-armed while firing
    /// count from when they were due, not from `now`, so a late call catches up on the
    /// exact schedule.
    pub fn handle_timeout(&mut self, now: Instant) {
        loop {
            // The earliest of the ordered set's first and the queues' fronts.
            let mut next = self.timers.first().map(|&(at, id, t)| ((at, id, t), None));
            for (q, queue) in self.queues.iter().enumerate() {
                if let Some(&(at, id)) = queue.front() {
                    let entry = (at, id, QUEUED[q]);
                    if next.is_none_or(|(best, _)| entry < best) {
                        next = Some((entry, Some(q)));
                    }
                }
            }
            let Some(((at, id, timer), queue)) = next else {
                break;
            };
            if at > now {
                break;
            }
            match queue {
                Some(q) => {
                    self.queues[q].pop_front();
                }
                None => {
                    self.timers.remove(&(at, id, timer));
                }
            }
            // Only if still armed for this instant (a queue keeps disarmed entries).
            let armed = self.txs.get_mut(id.0).and_then(|tx| {
                let pos = tx.armed.iter().position(|&e| e == (timer, at))?;
                tx.armed.swap_remove(pos);
                Some(())
            });
            if armed.is_some() {
                self.fire(id, timer, at);
            }
        }
    }

    /// The transport could not deliver a message of `tx` (ICMP unreachable, connection
    /// refused or closed for good, §17.1.4, §17.2.4): the transaction ends with
    /// [`Action::TransportError`] then [`Action::Terminated`]. Returns false when `tx` is
    /// not alive.
    pub fn handle_transport_error(&mut self, tx: TxId, _now: Instant) -> bool {
        if !self.txs.contains(tx.0) {
            return false;
        }
        tracing::debug!(%tx, "transport error");
        self.actions.push_back(Action::TransportError(tx));
        self.terminate(tx);
        true
    }

    /// [`TransactionLayer::handle_transport_error`] for every transaction that sends to
    /// `peer` (compared with its connection id; whichever local address it leaves from),
    /// for a shell that learns of failures per destination. Returns how many transactions
    /// ended.
    pub fn handle_peer_unreachable(&mut self, peer: Peer, now: Instant) -> usize {
        let peer = remote(peer);
        let ids: Vec<TxId> = if peer.transport.is_stream() {
            self.by_stream_peer
                .get(&peer)
                .map(|ids| ids.to_vec())
                .unwrap_or_default()
        } else {
            // Datagram peers fail only when no socket can reach them at all: rare.
            self.txs
                .iter()
                .filter(|(_, t)| remote(t.peer) == peer)
                .map(|(id, _)| TxId(id))
                .collect()
        };
        for id in &ids {
            self.handle_transport_error(*id, now);
        }
        ids.len()
    }

    // ---- plumbing shared by both sides ----------------------------------------------

    /// Files a new transaction under a fresh id and its key; `None` when the table is full.
    fn insert(&mut self, tx: Tx) -> Option<TxId> {
        let key = tx.key.clone();
        let peer = remote(tx.peer);
        let id = TxId(self.txs.insert(tx)?);
        if peer.transport.is_stream() {
            self.by_stream_peer.entry(peer).or_default().push(id);
        }
        match key {
            Key::Server(k) => self.server_keys.insert(k, id),
            Key::Client(k) => self.client_keys.insert(k, id),
        };
        Some(id)
    }

    fn arm(&mut self, id: TxId, timer: Timer, at: Instant) {
        if let Some(tx) = self.txs.get_mut(id.0) {
            if let Some(pos) = tx.armed.iter().position(|(t, _)| *t == timer) {
                let (_, old) = tx.armed.swap_remove(pos);
                self.timers.remove(&(old, id, timer));
            }
            tx.armed.push((timer, at));
            // Queued when it keeps its queue in order (it does unless the clock went back).
            match QUEUED.iter().position(|&t| t == timer) {
                Some(q) if self.queues[q].back().is_none_or(|&(last, _)| last <= at) => {
                    self.queues[q].push_back((at, id));
                }
                _ => {
                    self.timers.insert((at, id, timer));
                }
            }
        }
    }

    fn arm_in(&mut self, id: TxId, timer: Timer, now: Instant, d: Duration) {
        self.arm(id, timer, later(now, d));
    }

    fn disarm(&mut self, id: TxId, timers: &[Timer]) {
        if let Some(tx) = self.txs.get_mut(id.0) {
            tx.armed.retain(|&mut (t, at)| {
                let keep = !timers.contains(&t);
                if !keep {
                    self.timers.remove(&(at, id, t));
                }
                keep
            });
        }
    }

    fn set_state(&mut self, id: TxId, state: State) {
        if let Some(tx) = self.txs.get_mut(id.0) {
            tracing::trace!(%id, from = ?tx.state, to = ?state, "transaction state");
            tx.state = state;
        }
    }

    /// Forgets what a transaction no longer needs once it has its final response: the
    /// request (kept for its CANCEL and its ACK for a non-2xx, both built by then) and the
    /// bytes to retransmit. Transactions linger for tens of seconds after that (timers D,
    /// J, L, M), so this is most of their memory.
    fn release_request(&mut self, id: TxId) {
        if let Some(tx) = self.txs.get_mut(id.0) {
            tx.request = None;
            tx.bytes = Bytes::new();
        }
    }

    fn set_interval(&mut self, id: TxId, d: Duration) {
        if let Some(tx) = self.txs.get_mut(id.0) {
            tx.interval = d;
        }
    }

    /// The wait of a timer that only absorbs retransmissions: zero over reliable
    /// transports.
    fn absorb_wait(peer: Peer, unreliable: Duration) -> Duration {
        if peer.transport.is_reliable() {
            Duration::ZERO
        } else {
            unreliable
        }
    }

    /// Arms a wait timer, or ends the transaction at once when the wait is zero.
    fn wait_or_end(&mut self, id: TxId, timer: Timer, wait: Duration, now: Instant) {
        if wait.is_zero() {
            self.terminate(id);
        } else {
            self.arm_in(id, timer, now, wait);
        }
    }

    fn terminate(&mut self, id: TxId) {
        let Some(tx) = self.txs.remove(id.0) else {
            return;
        };
        for (timer, at) in tx.armed {
            self.timers.remove(&(at, id, timer));
        }
        if tx.peer.transport.is_stream() {
            let peer = remote(tx.peer);
            if let Some(ids) = self.by_stream_peer.get_mut(&peer) {
                ids.retain(|t| *t != id);
                if ids.is_empty() {
                    self.by_stream_peer.remove(&peer);
                }
            }
        }
        match &tx.key {
            Key::Server(k) => {
                if self.server_keys.get(k) == Some(&id) {
                    self.server_keys.remove(k);
                }
            }
            Key::Client(k) => {
                if self.client_keys.get(k) == Some(&id) {
                    self.client_keys.remove(k);
                }
            }
        }
        tracing::trace!(%id, state = ?tx.state, "transaction terminated");
        self.actions.push_back(Action::Terminated(id));
    }

    fn transmit(&mut self, to: Peer, bytes: Bytes) {
        self.actions.push_back(Action::Transmit { to, bytes });
    }

    fn fire(&mut self, id: TxId, timer: Timer, at: Instant) {
        let Some(tx) = self.txs.get(id.0) else {
            return;
        };
        let (state, peer, interval) = (tx.state, tx.peer, tx.interval);
        let t2 = self.config.t2;
        let retransmit = |layer: &mut Self, next: Duration| {
            if let Some(bytes) = layer.txs.get(id.0).map(|t| t.bytes.clone()) {
                layer.transmit(peer, bytes);
            }
            layer.set_interval(id, next);
            layer.arm_in(id, timer, at, next);
        };
        match timer {
            // §17.1.1.2: A doubles without bound; B ends it.
            Timer::A if state == State::Calling => retransmit(self, interval.saturating_mul(2)),
            // §17.1.2.2: E doubles up to T2; once a provisional arrived it is T2.
            Timer::E if matches!(state, State::Trying | State::Proceeding) => {
                let next = if state == State::Proceeding {
                    t2
                } else {
                    interval.saturating_mul(2).min(t2)
                };
                retransmit(self, next)
            }
            // §17.2.1: G doubles up to T2 until the ACK or H.
            Timer::G if state == State::Completed => {
                retransmit(self, interval.saturating_mul(2).min(t2))
            }
            // §16.8: the TU CANCELs (or acts as on a 408 before any provisional); the
            // transaction waits 64·T1 more for the final response, then gives up on B.
            Timer::C if matches!(state, State::Calling | State::Proceeding) => {
                tracing::debug!(%id, "timer C: no final response");
                self.actions.push_back(Action::Timeout { tx: id, timer });
                let t64 = self.config.t64();
                self.arm_in(id, Timer::B, at, t64);
            }
            Timer::B | Timer::F | Timer::H => {
                tracing::debug!(%id, ?timer, "transaction timed out");
                self.actions.push_back(Action::Timeout { tx: id, timer });
                self.terminate(id);
            }
            Timer::D | Timer::I | Timer::J | Timer::K | Timer::L | Timer::M => self.terminate(id),
            // A retransmission timer that outlived its state (never armed so).
            Timer::A | Timer::C | Timer::E | Timer::G => {}
        }
    }
}
