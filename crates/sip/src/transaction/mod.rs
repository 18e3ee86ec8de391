//! RFC 3261 §17 transactions, with the RFC 6026 Accepted states, as one sans-I/O layer.
//!
//! Events go in — [`TransactionLayer::handle_request`], [`TransactionLayer::handle_response`],
//! [`TransactionLayer::respond`], [`TransactionLayer::send_request`],
//! [`TransactionLayer::handle_timeout`] — always with the current time passed in. What to do
//! comes out of [`TransactionLayer::poll_action`] (send these bytes there; a transaction
//! timed out; a transaction ended) and [`TransactionLayer::poll_timeout`] says when to call
//! again. The layer never reads a clock and never does I/O, so tests drive it with a
//! virtual clock.
//!
//! Over reliable transports (TCP) nothing is retransmitted and the wait states that only
//! absorb retransmissions (timers D, I, J, K) last zero time.

use crate::message::{response_target, split_first_value};
use crate::msg::headers::{Header, Headers};
use crate::msg::prelude::*;
use crate::msg::{Method, Request, Response, Version};
use crate::peer::Peer;
use bytes::Bytes;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

/// The branch prefix of RFC 3261 transaction identifiers (§8.1.1.7).
pub const MAGIC_COOKIE: &str = "z9hG4bK";

/// The timer bases of §17 (Table 4 of RFC 3261).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerConfig {
    /// RTT estimate.
    pub t1: Duration,
    /// Longest retransmit interval for non-INVITE requests and INVITE responses.
    pub t2: Duration,
    /// Longest time a message stays in the network.
    pub t4: Duration,
    /// Timer C (§16.6 step 11): how long a client INVITE transaction waits for a final
    /// response after the last provisional one before telling its user (who should
    /// CANCEL); 64·T1 later it gives up. Longer than 3 minutes per RFC 3261.
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
        self.t1 * 64
    }
}

/// Identifies a transaction for its whole life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TxId(pub u64);

impl fmt::Display for TxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tx{}", self.0)
    }
}

/// The timers of §17 and RFC 6026.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Timer {
    A,
    B,
    C,
    D,
    E,
    F,
    G,
    H,
    I,
    J,
    K,
    L,
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

/// Transaction states (§17.1, §17.2, RFC 6026 §7.1–7.2).
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

/// What the layer asks of its user.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Send these bytes to this peer.
    Transmit { to: Peer, bytes: Bytes },
    /// Timer B or F (no final response), H (no ACK): the transaction gave up and ends.
    /// Timer C: no final response long after ringing; the user should CANCEL (the
    /// transaction ends by itself 64·T1 later).
    Timeout { tx: TxId, timer: Timer },
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
    /// handed to the transaction user.
    Ack(Request),
    /// A CANCEL (its own new transaction, answered by the transaction user) and the
    /// INVITE server transaction it matches, if any (§9.2).
    Cancel {
        cancel_tx: TxId,
        invite_tx: Option<TxId>,
        request: Request,
    },
    /// The request has no usable top Via or CSeq: no transaction can be made.
    Invalid(&'static str),
}

/// What became of a received response.
#[derive(Clone, Debug, PartialEq)]
pub enum ClientOutcome {
    /// A 1xx for a client transaction.
    Provisional(TxId, Response),
    /// A final response for a client transaction (also a retransmitted 2xx to INVITE,
    /// which the transaction user must see again to re-send its ACK).
    Final(TxId, Response),
    /// A retransmission absorbed by the layer.
    Absorbed,
    /// No client transaction matches (RFC 3261 §17.1.3): a proxy forwards a stray 2xx
    /// statelessly, anything else drops it.
    Stray(Response),
}

/// Why a transaction refused a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxError {
    #[error("no such transaction")]
    Unknown,
    #[error("the transaction is not a server transaction")]
    NotServer,
    #[error("the transaction already sent its final response")]
    AlreadyFinal,
    #[error("the request has no usable top Via")]
    NoVia,
}

/// The key of a transaction (§17.1.3, §17.2.3).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    /// RFC 3261 branch, sent-by (server side), method (ACK counted as INVITE).
    Branch {
        branch: String,
        sent_by: String,
        method: MethodKey,
    },
    /// RFC 2543 peers without the magic cookie (§17.2.3 fallback), simplified.
    Legacy {
        request_uri: String,
        call_id: String,
        cseq: u32,
        from_tag: String,
        top_via: String,
        method: MethodKey,
    },
}

/// A method as far as matching cares: ACK matches its INVITE.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct MethodKey(String);

impl MethodKey {
    fn of(m: &Method) -> Self {
        match m {
            Method::Ack => MethodKey("INVITE".into()),
            other => MethodKey(other.to_string()),
        }
    }
}

struct Tx {
    kind: Kind,
    state: State,
    key: Key,
    /// Server: where responses go. Client: where the request went.
    peer: Peer,
    /// Client: the request, to retransmit and to build the ACK for a non-2xx response.
    request: Option<Request>,
    /// Client: the request's bytes. Server: the last response's bytes.
    bytes: Bytes,
    /// Client INVITE: the ACK sent for a non-2xx final response.
    ack: Option<Bytes>,
    /// Current retransmission interval of timer A, E or G.
    interval: Duration,
    armed: Vec<(Timer, Instant)>,
}

/// All transactions of an element.
pub struct TransactionLayer {
    config: TimerConfig,
    txs: HashMap<TxId, Tx>,
    server_keys: HashMap<Key, TxId>,
    client_keys: HashMap<(String, String), TxId>,
    timers: BTreeSet<(Instant, TxId, Timer)>,
    actions: VecDeque<Action>,
    next_id: u64,
}

impl TransactionLayer {
    pub fn new(config: TimerConfig) -> Self {
        TransactionLayer {
            config,
            txs: HashMap::new(),
            server_keys: HashMap::new(),
            client_keys: HashMap::new(),
            timers: BTreeSet::new(),
            actions: VecDeque::new(),
            next_id: 1,
        }
    }

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
        self.txs.get(&tx).map(|t| t.state)
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The earliest armed timer.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.first().map(|(t, _, _)| *t)
    }

    fn new_id(&mut self) -> TxId {
        let id = TxId(self.next_id);
        self.next_id += 1;
        id
    }

    fn arm(&mut self, id: TxId, timer: Timer, at: Instant) {
        if let Some(tx) = self.txs.get_mut(&id) {
            if let Some(pos) = tx.armed.iter().position(|(t, _)| *t == timer) {
                let (_, old) = tx.armed.remove(pos);
                self.timers.remove(&(old, id, timer));
            }
            tx.armed.push((timer, at));
            self.timers.insert((at, id, timer));
        }
    }

    fn disarm(&mut self, id: TxId, timer: Timer) {
        if let Some(tx) = self.txs.get_mut(&id) {
            if let Some(pos) = tx.armed.iter().position(|(t, _)| *t == timer) {
                let (_, at) = tx.armed.remove(pos);
                self.timers.remove(&(at, id, timer));
            }
        }
    }

    /// Arms a wait timer, or ends the transaction at once when the wait is zero
    /// (reliable transports).
    fn wait_or_end(&mut self, id: TxId, timer: Timer, wait: Duration, now: Instant) {
        if wait.is_zero() {
            self.terminate(id);
        } else {
            self.arm(id, timer, now + wait);
        }
    }

    fn terminate(&mut self, id: TxId) {
        if let Some(tx) = self.txs.remove(&id) {
            for (timer, at) in tx.armed {
                self.timers.remove(&(at, id, timer));
            }
            match tx.kind {
                Kind::ServerInvite | Kind::ServerNonInvite => {
                    if self.server_keys.get(&tx.key) == Some(&id) {
                        self.server_keys.remove(&tx.key);
                    }
                }
                Kind::ClientInvite | Kind::ClientNonInvite => {
                    self.client_keys.retain(|_, v| *v != id);
                }
            }
            self.actions.push_back(Action::Terminated(id));
        }
    }

    fn transmit(&mut self, to: Peer, bytes: Bytes) {
        self.actions.push_back(Action::Transmit { to, bytes });
    }

    // ---- server side ----------------------------------------------------------------

    /// Handles a received request (§17.2.3 matching).
    pub fn handle_request(&mut self, req: Request, from: Peer, now: Instant) -> ServerOutcome {
        let Some(key) = server_key(&req) else {
            return ServerOutcome::Invalid("no usable top Via or CSeq");
        };
        if req.method == Method::Ack {
            let Some(&id) = self.server_keys.get(&key) else {
                return ServerOutcome::Ack(req);
            };
            let state = self.txs.get(&id).map(|t| t.state);
            return match state {
                Some(State::Completed) => {
                    // §17.2.1: the ACK for a non-2xx final response.
                    self.disarm(id, Timer::G);
                    self.disarm(id, Timer::H);
                    if let Some(tx) = self.txs.get_mut(&id) {
                        tx.state = State::Confirmed;
                    }
                    let wait = self.wait(from, self.config.t4);
                    self.wait_or_end(id, Timer::I, wait, now);
                    ServerOutcome::Absorbed
                }
                Some(State::Confirmed) => ServerOutcome::Absorbed,
                // An ACK for a 2xx that reused the INVITE's branch: the TU's business.
                _ => ServerOutcome::Ack(req),
            };
        }
        if let Some(&id) = self.server_keys.get(&key) {
            // A retransmission: answer from the transaction (§17.2.1, §17.2.2).
            if let Some(tx) = self.txs.get(&id) {
                let resend = match (tx.kind, tx.state) {
                    (Kind::ServerInvite, State::Proceeding | State::Completed) => true,
                    (Kind::ServerNonInvite, State::Proceeding | State::Completed) => true,
                    // RFC 6026 §7.1: retransmitted INVITEs are absorbed in Accepted.
                    _ => false,
                };
                if resend && !tx.bytes.is_empty() {
                    let (peer, bytes) = (tx.peer, tx.bytes.clone());
                    self.transmit(peer, bytes);
                }
            }
            return ServerOutcome::Absorbed;
        }
        let id = self.new_id();
        let is_invite = req.method == Method::Invite;
        let tx = Tx {
            kind: if is_invite {
                Kind::ServerInvite
            } else {
                Kind::ServerNonInvite
            },
            state: if is_invite {
                State::Proceeding
            } else {
                State::Trying
            },
            key: key.clone(),
            peer: response_target(&req, from),
            request: None,
            bytes: Bytes::new(),
            ack: None,
            interval: self.config.t1,
            armed: Vec::new(),
        };
        self.txs.insert(id, tx);
        self.server_keys.insert(key.clone(), id);
        if req.method == Method::Cancel {
            // §9.2: the INVITE with the same branch and sent-by.
            let invite_key = match &key {
                Key::Branch {
                    branch, sent_by, ..
                } => Key::Branch {
                    branch: branch.clone(),
                    sent_by: sent_by.clone(),
                    method: MethodKey("INVITE".into()),
                },
                Key::Legacy {
                    request_uri,
                    call_id,
                    cseq,
                    from_tag,
                    top_via,
                    ..
                } => Key::Legacy {
                    request_uri: request_uri.clone(),
                    call_id: call_id.clone(),
                    cseq: *cseq,
                    from_tag: from_tag.clone(),
                    top_via: top_via.clone(),
                    method: MethodKey("INVITE".into()),
                },
            };
            let invite_tx = self.server_keys.get(&invite_key).copied();
            return ServerOutcome::Cancel {
                cancel_tx: id,
                invite_tx,
                request: req,
            };
        }
        ServerOutcome::New(id, req)
    }

    /// The wait of a timer that only absorbs retransmissions: zero over reliable transports.
    fn wait(&self, peer: Peer, unreliable: Duration) -> Duration {
        if peer.transport.is_reliable() {
            Duration::ZERO
        } else {
            unreliable
        }
    }

    /// Sends a response through a server transaction.
    pub fn respond(&mut self, id: TxId, resp: Response, now: Instant) -> Result<(), TxError> {
        let code = u16::from(resp.status_code.clone());
        let tx = self.txs.get_mut(&id).ok_or(TxError::Unknown)?;
        match (tx.kind, tx.state) {
            (Kind::ServerInvite, State::Proceeding)
            | (Kind::ServerNonInvite, State::Trying | State::Proceeding) => {}
            (Kind::ServerInvite, State::Accepted) if (200..300).contains(&code) => {
                // RFC 6026 §7.1: further 2xx (the TU's retransmissions) pass through.
                let peer = tx.peer;
                self.transmit(peer, Bytes::from(resp.to_bytes()));
                return Ok(());
            }
            (Kind::ServerInvite | Kind::ServerNonInvite, _) => return Err(TxError::AlreadyFinal),
            _ => return Err(TxError::NotServer),
        }
        let bytes = Bytes::from(resp.to_bytes());
        tx.bytes = bytes.clone();
        let peer = tx.peer;
        let kind = tx.kind;
        self.transmit(peer, bytes);
        let reliable = peer.transport.is_reliable();
        let t64 = self.config.t64();
        let set_state = |layer: &mut Self, s: State| {
            if let Some(tx) = layer.txs.get_mut(&id) {
                tx.state = s;
            }
        };
        match (kind, code) {
            (_, 100..=199) => {
                if kind == Kind::ServerNonInvite {
                    set_state(self, State::Proceeding);
                }
            }
            (Kind::ServerInvite, 200..=299) => {
                set_state(self, State::Accepted);
                self.arm(id, Timer::L, now + t64);
            }
            (Kind::ServerInvite, _) => {
                set_state(self, State::Completed);
                if !reliable {
                    let t1 = self.config.t1;
                    if let Some(tx) = self.txs.get_mut(&id) {
                        tx.interval = t1;
                    }
                    self.arm(id, Timer::G, now + t1);
                }
                self.arm(id, Timer::H, now + t64);
            }
            (_, _) => {
                set_state(self, State::Completed);
                let wait = if reliable { Duration::ZERO } else { t64 };
                self.wait_or_end(id, Timer::J, wait, now);
            }
        }
        Ok(())
    }

    // ---- client side ----------------------------------------------------------------

    /// Starts a client transaction for `req` (which must carry its own top Via with a
    /// fresh branch) and sends it to `to`.
    pub fn send_request(&mut self, req: Request, to: Peer, now: Instant) -> Result<TxId, TxError> {
        let branch = top_branch(&req).ok_or(TxError::NoVia)?;
        let id = self.new_id();
        let is_invite = req.method == Method::Invite;
        let bytes = Bytes::from(req.to_bytes());
        let method = req.method.to_string();
        self.txs.insert(
            id,
            Tx {
                kind: if is_invite {
                    Kind::ClientInvite
                } else {
                    Kind::ClientNonInvite
                },
                state: if is_invite {
                    State::Calling
                } else {
                    State::Trying
                },
                key: Key::Branch {
                    branch: branch.clone(),
                    sent_by: String::new(),
                    method: MethodKey(method.clone()),
                },
                peer: to,
                request: Some(req),
                bytes: bytes.clone(),
                ack: None,
                interval: self.config.t1,
                armed: Vec::new(),
            },
        );
        self.client_keys.insert((branch, method), id);
        self.transmit(to, bytes);
        let t64 = self.config.t64();
        if !to.transport.is_reliable() {
            let first = if is_invite { Timer::A } else { Timer::E };
            self.arm(id, first, now + self.config.t1);
        }
        self.arm(id, if is_invite { Timer::B } else { Timer::F }, now + t64);
        Ok(id)
    }

    /// Handles a received response (§17.1.3 matching: top Via branch and CSeq method).
    pub fn handle_response(&mut self, resp: Response, _from: Peer, now: Instant) -> ClientOutcome {
        let (Some(branch), Some(method)) = (top_branch(&resp), cseq_method(&resp)) else {
            return ClientOutcome::Stray(resp);
        };
        let Some(&id) = self.client_keys.get(&(branch, method)) else {
            return ClientOutcome::Stray(resp);
        };
        let code = u16::from(resp.status_code.clone());
        let Some(tx) = self.txs.get(&id) else {
            return ClientOutcome::Stray(resp);
        };
        let (kind, state, peer) = (tx.kind, tx.state, tx.peer);
        let reliable = peer.transport.is_reliable();
        match (kind, state) {
            (Kind::ClientInvite, State::Calling | State::Proceeding) => match code {
                100..=199 => {
                    self.disarm(id, Timer::A);
                    self.disarm(id, Timer::B);
                    self.set_state(id, State::Proceeding);
                    self.arm(id, Timer::C, now + self.config.c);
                    ClientOutcome::Provisional(id, resp)
                }
                200..=299 => {
                    self.disarm(id, Timer::A);
                    self.disarm(id, Timer::B);
                    self.disarm(id, Timer::C);
                    self.set_state(id, State::Accepted);
                    self.arm(id, Timer::M, now + self.config.t64());
                    ClientOutcome::Final(id, resp)
                }
                _ => {
                    self.disarm(id, Timer::A);
                    self.disarm(id, Timer::B);
                    self.disarm(id, Timer::C);
                    let ack = self
                        .txs
                        .get(&id)
                        .and_then(|t| t.request.as_ref())
                        .map(|r| Bytes::from(ack_for(r, &resp).to_bytes()));
                    if let Some(ack) = ack {
                        self.transmit(peer, ack.clone());
                        if let Some(tx) = self.txs.get_mut(&id) {
                            tx.ack = Some(ack);
                        }
                    }
                    self.set_state(id, State::Completed);
                    let wait = if reliable {
                        Duration::ZERO
                    } else {
                        Duration::from_secs(32).max(self.config.t64())
                    };
                    self.wait_or_end(id, Timer::D, wait, now);
                    ClientOutcome::Final(id, resp)
                }
            },
            (Kind::ClientInvite, State::Completed) => {
                // §17.1.1.2: a retransmitted final response is ACKed again.
                if let Some(ack) = self.txs.get(&id).and_then(|t| t.ack.clone()) {
                    self.transmit(peer, ack);
                }
                ClientOutcome::Absorbed
            }
            (Kind::ClientInvite, State::Accepted) => {
                if (200..300).contains(&code) {
                    ClientOutcome::Final(id, resp)
                } else {
                    ClientOutcome::Absorbed
                }
            }
            (Kind::ClientNonInvite, State::Trying | State::Proceeding) => match code {
                100..=199 => {
                    if state == State::Trying {
                        self.set_state(id, State::Proceeding);
                    }
                    ClientOutcome::Provisional(id, resp)
                }
                _ => {
                    self.disarm(id, Timer::E);
                    self.disarm(id, Timer::F);
                    self.set_state(id, State::Completed);
                    let wait = self.wait(peer, self.config.t4);
                    self.wait_or_end(id, Timer::K, wait, now);
                    ClientOutcome::Final(id, resp)
                }
            },
            _ => ClientOutcome::Absorbed,
        }
    }

    fn set_state(&mut self, id: TxId, s: State) {
        if let Some(tx) = self.txs.get_mut(&id) {
            tx.state = s;
        }
    }

    /// The CANCEL for a client INVITE transaction (§9.1): same Request-URI, Call-ID, From,
    /// To, CSeq number and top Via; to be sent with [`TransactionLayer::send_request`].
    pub fn cancel_for(&self, id: TxId) -> Option<Request> {
        let tx = self.txs.get(&id)?;
        if tx.kind != Kind::ClientInvite {
            return None;
        }
        let req = tx.request.as_ref()?;
        Some(sibling_request(req, Method::Cancel, None))
    }

    // ---- timers -----------------------------------------------------------------------

    /// Fires every timer due at or before `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(at, id, timer)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.remove(&(at, id, timer));
            if let Some(tx) = self.txs.get_mut(&id) {
                tx.armed.retain(|(t, _)| *t != timer);
            } else {
                continue;
            }
            self.fire(id, timer, at);
        }
    }

    fn fire(&mut self, id: TxId, timer: Timer, at: Instant) {
        let Some(tx) = self.txs.get(&id) else {
            return;
        };
        let (state, peer, bytes, interval) = (tx.state, tx.peer, tx.bytes.clone(), tx.interval);
        let t2 = self.config.t2;
        match timer {
            Timer::A if state == State::Calling => {
                self.transmit(peer, bytes);
                let next = interval * 2;
                self.set_interval(id, next);
                self.arm(id, Timer::A, at + next);
            }
            Timer::E if matches!(state, State::Trying | State::Proceeding) => {
                self.transmit(peer, bytes);
                let next = if state == State::Proceeding {
                    t2
                } else {
                    (interval * 2).min(t2)
                };
                self.set_interval(id, next);
                self.arm(id, Timer::E, at + next);
            }
            Timer::G if state == State::Completed => {
                self.transmit(peer, bytes);
                let next = (interval * 2).min(t2);
                self.set_interval(id, next);
                self.arm(id, Timer::G, at + next);
            }
            Timer::C if state == State::Proceeding => {
                self.actions.push_back(Action::Timeout { tx: id, timer });
                let t64 = self.config.t64();
                self.arm(id, Timer::B, at + t64);
            }
            Timer::B | Timer::F | Timer::H => {
                self.actions.push_back(Action::Timeout { tx: id, timer });
                self.terminate(id);
            }
            Timer::D | Timer::I | Timer::J | Timer::K | Timer::L | Timer::M => self.terminate(id),
            _ => {}
        }
    }

    fn set_interval(&mut self, id: TxId, d: Duration) {
        if let Some(tx) = self.txs.get_mut(&id) {
            tx.interval = d;
        }
    }
}

/// The top Via's branch parameter.
fn top_branch<M: HeadersExt>(m: &M) -> Option<String> {
    let via = m.via_header().ok()?;
    let first = split_first_value(via.value()).0;
    first.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("branch")
            .then(|| v.trim().to_string())
    })
}

fn cseq_method<M: HeadersExt>(m: &M) -> Option<String> {
    let c = m.cseq_header().ok()?;
    let method = c.value().split_whitespace().nth(1)?;
    Some(method.to_ascii_uppercase())
}

fn server_key(req: &Request) -> Option<Key> {
    let via = req.via_header().ok()?;
    let first = split_first_value(via.value()).0.trim();
    let sent_by = first
        .split(';')
        .next()?
        .split_whitespace()
        .nth(1)?
        .to_ascii_lowercase();
    let method = MethodKey::of(&req.method);
    match top_branch(req) {
        Some(b) if b.starts_with(MAGIC_COOKIE) => Some(Key::Branch {
            branch: b,
            sent_by,
            method,
        }),
        _ => {
            let cseq = req
                .cseq_header()
                .ok()?
                .value()
                .split_whitespace()
                .next()?
                .parse()
                .ok()?;
            let from_tag = req
                .from_header()
                .ok()
                .and_then(|f| crate::message::tag_of(f.value()).map(str::to_string))
                .unwrap_or_default();
            Some(Key::Legacy {
                request_uri: req.uri.to_string(),
                call_id: req.call_id_header().ok()?.value().to_string(),
                cseq,
                from_tag,
                top_via: first.to_string(),
                method,
            })
        }
    }
}

/// The ACK for a non-2xx final response (§17.1.1.3).
fn ack_for(req: &Request, resp: &Response) -> Request {
    let to = resp.to_header().ok().cloned();
    sibling_request(req, Method::Ack, to)
}

/// A request of the same transaction identity as `req` (§9.1 CANCEL, §17.1.1.3 ACK): the
/// same Request-URI, top Via, From, Call-ID, Route set and CSeq number, with `method`; To
/// from `to` (the response's, for an ACK) or from `req`.
fn sibling_request(req: &Request, method: Method, to: Option<crate::msg::To>) -> Request {
    let mut headers = Headers::default();
    let mut via_done = false;
    for h in req.headers.iter() {
        match h {
            Header::Via(v) if !via_done => {
                via_done = true;
                headers.push(Header::Via(
                    split_first_value(v.value()).0.trim().to_string().into(),
                ));
            }
            Header::To(_) if to.is_none() => headers.push(h.clone()),
            Header::From(_) | Header::CallId(_) | Header::Route(_) | Header::MaxForwards(_) => {
                headers.push(h.clone())
            }
            Header::CSeq(c) => {
                let seq = c.value().split_whitespace().next().unwrap_or("1");
                headers.push(Header::CSeq(format!("{seq} {method}").into()));
            }
            _ => {}
        }
    }
    if let Some(to) = to {
        headers.push(Header::To(to));
    }
    headers.push(Header::ContentLength(0.into()));
    Request {
        method,
        uri: req.uri.clone(),
        version: Version::V2,
        headers,
        body: Vec::new(),
    }
}

#[cfg(test)]
mod tests;
