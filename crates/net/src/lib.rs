//! Switchboard's sockets: UDP and TCP listeners (RFC 3261 §18), IPv4 and IPv6.
//!
//! The only crate of the daemon with sockets. Listeners read bytes, frame them (streams, by
//! Content-Length), check and parse them with [`switchboard_sip::parse`] on the I/O task,
//! and hand each result to the core through a channel as an [`Inbound`]. What the protocol
//! knows of a transport is [`Transport`]'s (in the sip crate); this crate only moves bytes.
//! Datagrams are sent from the caller's thread without waiting; only a full kernel buffer
//! makes them queue, in order, for the socket's sender task.
//! Responses to a request that came over TCP go back over the same connection. A UDP
//! socket bound to every interface reads each datagram with the address it was sent to,
//! and sends each from the address the core chose (`Peer::local`): a reply leaves from
//! the address its request came to. Limits are
//! explicit: message size and header count ([`Limits`]), number of TCP connections (in all,
//! and accepted from one source address), idle timeout (never for a connection the core holds open: a registered flow). Nothing
//! received can panic a task: parse errors become [`Inbound::Invalid`]. What cannot be
//! sent comes back as [`Inbound::Unreachable`], a closed connection as [`Inbound::Closed`],
//! so the core ends what waited on them at once.

use bytes::{Bytes, BytesMut};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchboard_sip::log_limit;
use switchboard_sip::message;
use switchboard_sip::msg::headers::Header;
use switchboard_sip::msg::{Method, SipMessage};
use switchboard_sip::parse::{frame, parse, Framing, Limits, ParseError};
use switchboard_sip::peer::{ConnId, Peer};
pub use switchboard_sip::transport::{Inbound, ListenAddr, Transport, Unreachable};
use tokio::io::Interest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;

pub mod dns;
pub mod interfaces;
pub mod media;
#[cfg(target_os = "linux")]
pub mod pktinfo;
pub mod shed;
pub mod stun;

/// The `Retry-After` of a request shed because the core was behind (seconds).
const SHED_RETRY_AFTER: &str = "5";
/// Late messages in a row after which the core counts as behind (see
/// [`TransportConfig::shed_after`]): the few that arrived during a pause of the process are
/// not overload, a queue of thousands is.
pub const SHED_RUN: usize = 64;

/// A message as it came off a socket, with the moment it was read: the time it then waits
/// for the core is how far behind the core is (see [`TransportConfig::shed_after`]).
#[derive(Debug)]
pub struct Arrival {
    pub inbound: Inbound,
    pub at: Instant,
    /// Its socket dropped datagrams for want of room since the one before it: the queue
    /// was full.
    pub overflowed: bool,
}

impl Arrival {
    /// `inbound`, arriving now.
    pub fn now(inbound: Inbound) -> Self {
        Arrival {
            inbound,
            at: Instant::now(),
            overflowed: false,
        }
    }
}

/// How long shedding goes on after a socket last overflowed (see
/// [`TransportConfig::shed_after`]).
pub const SHED_AFTER_OVERFLOW: Duration = Duration::from_millis(500);

/// Settings of the transport layer.
#[derive(Clone, Copy, Debug)]
pub struct TransportConfig {
    pub limits: Limits,
    pub max_tcp_connections: usize,
    /// Most connections accepted from one source IP address at once: one address cannot
    /// take every connection slot. Further connections from it are closed as soon as they
    /// are accepted, while other addresses still connect. Connections this side opens do
    /// not count.
    pub max_tcp_connections_per_source: usize,
    pub tcp_idle_timeout: Duration,
    /// Load shedding: once [`SHED_RUN`] messages in a row have waited this long between
    /// reaching the machine (the kernel's receive timestamp for UDP) and being taken by the
    /// core, or a UDP socket's buffer overflowed (the kernel dropped datagrams: its queue
    /// was full before any message waited that long), the core is behind. Then a request
    /// that would start new work (outside any dialog; not ACK or CANCEL) and waited a
    /// quarter as long, or came just after an overflow, is answered `503` with
    /// `Retry-After`, statelessly, without reaching the core — what waited is shed, what
    /// did not is served, so the queue stays short and the core still does all it can —
    /// until messages wait less than half as long again and no socket has overflowed for
    /// [`SHED_AFTER_OVERFLOW`]. In-dialog requests and responses always go through, so
    /// calls under way keep working. Zero: never shed.
    pub shed_after: Duration,
}

/// Counters kept by the transport layer.
#[derive(Debug, Default)]
pub struct TransportStats {
    pub received: AtomicU64,
    /// Messages that could not be read and got no response.
    pub dropped: AtomicU64,
    /// Messages answered with 400/501 before parsing succeeded.
    pub rejected: AtomicU64,
    pub tcp_open: AtomicUsize,
    /// STUN keep-alives answered (UDP).
    pub keepalives: AtomicU64,
    /// Connections refused at accept because `max_tcp_connections` were open.
    pub tcp_refused: AtomicU64,
    /// Connections refused at accept because their source address had
    /// `max_tcp_connections_per_source` open.
    pub tcp_refused_per_source: AtomicU64,
    /// New requests answered 503 because the core was behind (`shed_after`).
    pub shed: AtomicU64,
    pub send_errors: AtomicU64,
}

/// The open TCP connections: by id, and by remote address for reuse (RFC 3261 §18.1.1:
/// a request to an address we already have a connection with goes over it).
#[derive(Default)]
struct Conns {
    by_id: HashMap<ConnId, Conn>,
    by_addr: HashMap<SocketAddr, ConnId>,
    /// The connections accepted from each source IP address, and whether a refusal of
    /// that address was logged since it was last under its limit (one line per episode,
    /// not per connection: a flood would otherwise flood the log too).
    by_source: HashMap<IpAddr, Source>,
}

#[derive(Default)]
struct Source {
    open: usize,
    refusal_logged: bool,
}

/// One open (or opening) connection.
struct Conn {
    addr: SocketAddr,
    /// Accepted (counted against its source address), not opened by this side.
    accepted: bool,
    tx: mpsc::Sender<Bytes>,
    /// Until when the idle timeout must not close it, in milliseconds from
    /// [`Inner::epoch`] (0: not held): the core holds registered flows open.
    hold: Arc<AtomicU64>,
}

impl Conns {
    /// Files a connection (`accepted`: from a listener, counted against its source
    /// address); returns its hold, for the connection's task.
    fn insert(
        &mut self,
        id: ConnId,
        addr: SocketAddr,
        accepted: bool,
        tx: mpsc::Sender<Bytes>,
    ) -> Arc<AtomicU64> {
        let hold = Arc::new(AtomicU64::new(0));
        self.by_id.insert(
            id,
            Conn {
                addr,
                accepted,
                tx,
                hold: hold.clone(),
            },
        );
        self.by_addr.insert(addr, id);
        if accepted {
            self.by_source.entry(addr.ip()).or_default().open += 1;
        }
        hold
    }

    fn remove(&mut self, id: ConnId) {
        if let Some(Conn { addr, accepted, .. }) = self.by_id.remove(&id) {
            if self.by_addr.get(&addr) == Some(&id) {
                self.by_addr.remove(&addr);
            }
            if accepted {
                if let Some(source) = self.by_source.get_mut(&addr.ip()) {
                    source.open -= 1;
                    source.refusal_logged = false;
                    if source.open == 0 {
                        self.by_source.remove(&addr.ip());
                    }
                }
            }
        }
    }

    /// Whether a connection from `ip` would exceed its address's `limit`; the first
    /// refusal since the address was last under it says so (to be logged).
    fn over_source_limit(&mut self, ip: IpAddr, limit: usize) -> Option<bool> {
        let source = self.by_source.get_mut(&ip)?;
        if source.open < limit {
            return None;
        }
        let first = !source.refusal_logged;
        source.refusal_logged = true;
        Some(first)
    }

    /// The connection `peer` names, else any open one to its address.
    fn sender(&self, peer: Peer) -> Option<mpsc::Sender<Bytes>> {
        peer.conn
            .and_then(|id| self.by_id.get(&id))
            .or_else(|| {
                self.by_addr
                    .get(&peer.addr)
                    .and_then(|id| self.by_id.get(id))
            })
            .map(|c| c.tx.clone())
    }
}

/// Most messages queued for one TCP connection before it counts as stuck and is closed.
const TCP_SEND_QUEUE: usize = 1024;
/// The queue of a UDP socket's sender task (where to, from which address, what), and how
/// many datagrams wait in it: while any do, later ones queue behind them, so that their
/// order is kept.
struct SendQueue {
    tx: mpsc::Sender<Datagram>,
    waiting: Arc<AtomicUsize>,
}

/// A datagram to send: to, from (the source address on a socket bound to every
/// interface; None: the system chooses), what.
type Datagram = (SocketAddr, Option<IpAddr>, Bytes);

/// A UDP listener: its socket, where it is bound, its sender task's queue.
struct Udp {
    addr: SocketAddr,
    sock: Arc<UdpSocket>,
    queue: SendQueue,
    /// Bound to every interface, with the address each datagram was sent to read along
    /// with it (and sent from a chosen address): Linux only.
    pktinfo: bool,
}

/// Most datagrams waiting for a UDP socket's sender task before new ones are dropped.
const UDP_SEND_QUEUE: usize = 65_536;

/// Receive and send buffer asked of the kernel for UDP sockets.
const UDP_BUFFER: usize = 4 * 1024 * 1024;

/// The sockets of the daemon and the way to send through them.
#[derive(Clone)]
pub struct Transports {
    inner: Arc<Inner>,
}

struct Inner {
    config: TransportConfig,
    /// The origin of connection holds.
    epoch: Instant,
    /// Each UDP socket with the queue of its sender task.
    udp: Vec<Udp>,
    tcp: Vec<SocketAddr>,
    /// Every listener as bound (ports resolved), in the order they were asked for.
    listeners: Vec<ListenAddr>,
    conns: Mutex<Conns>,
    next_conn: AtomicU64,
    /// Where messages received over connections this side opened go.
    sink: mpsc::Sender<Arrival>,
    stats: TransportStats,
    server: String,
    /// Whether new requests are being shed (see `TransportConfig::shed_after`).
    shedding: AtomicBool,
    /// The shed count when shedding last began, for the line that says it ended.
    shed_at_start: AtomicU64,
    /// Messages in a row that waited `shed_after` or longer for the core.
    late_run: AtomicUsize,
    /// When a UDP socket last overflowed (milliseconds since `epoch`, plus one; 0: never).
    overflowed_at: AtomicU64,
}

impl Transports {
    /// Binds every listener and starts its tasks; inbound messages go to `sink`.
    /// `server` is the Server header value of responses the transport writes itself.
    pub async fn bind(
        listen: &[ListenAddr],
        config: TransportConfig,
        sink: mpsc::Sender<Arrival>,
        server: String,
    ) -> std::io::Result<Self> {
        let mut udp_sockets = Vec::new();
        let mut tcp_listeners = Vec::new();
        let mut listeners = Vec::new();
        for l in listen {
            let bound = match l.transport {
                Transport::Udp => {
                    let sock = bind_udp(l.addr)?;
                    let local = sock.local_addr()?;
                    let pktinfo = local.ip().is_unspecified() && want_pktinfo(&sock, local)?;
                    udp_sockets.push((local, Arc::new(sock), pktinfo));
                    local
                }
                Transport::Tcp => {
                    let listener = bind_tcp(l.addr)?;
                    let local = listener.local_addr()?;
                    tcp_listeners.push(listener);
                    local
                }
            };
            listeners.push(ListenAddr {
                transport: l.transport,
                addr: bound,
            });
        }
        let tcp = tcp_listeners
            .iter()
            .map(|l| l.local_addr())
            .collect::<std::io::Result<Vec<_>>>()?;
        let mut senders = Vec::new();
        let udp = udp_sockets
            .into_iter()
            .map(|(addr, sock, pktinfo)| {
                let (tx, rx) = mpsc::channel(UDP_SEND_QUEUE);
                let waiting = Arc::new(AtomicUsize::new(0));
                senders.push((sock.clone(), rx, waiting.clone()));
                Udp {
                    addr,
                    sock,
                    queue: SendQueue { tx, waiting },
                    pktinfo,
                }
            })
            .collect();
        let inner = Arc::new(Inner {
            config,
            epoch: Instant::now(),
            udp,
            tcp,
            listeners,
            conns: Mutex::new(Conns::default()),
            next_conn: AtomicU64::new(1),
            sink: sink.clone(),
            stats: TransportStats::default(),
            server,
            shedding: AtomicBool::new(false),
            shed_at_start: AtomicU64::new(0),
            late_run: AtomicUsize::new(0),
            overflowed_at: AtomicU64::new(0),
        });
        let this = Transports { inner };
        for (i, u) in this.inner.udp.iter().enumerate() {
            tracing::info!(transport = "udp", addr = %u.addr, "listening");
            tokio::spawn(udp_loop(this.clone(), i, sink.clone()));
        }
        for (sock, rx, waiting) in senders {
            tokio::spawn(udp_sender(this.clone(), sock, rx, waiting));
        }
        for listener in tcp_listeners {
            let local = listener.local_addr()?;
            tracing::info!(transport = "tcp", addr = %local, "listening");
            tokio::spawn(tcp_accept_loop(this.clone(), listener, local, sink.clone()));
        }
        Ok(this)
    }

    /// Local addresses of the listeners (ports resolved), in the order they were asked for.
    pub fn local_addrs(&self) -> Vec<ListenAddr> {
        self.inner.listeners.clone()
    }

    pub fn stats(&self) -> &TransportStats {
        &self.inner.stats
    }

    /// Sends bytes to a peer: over its connection for a stream, from the UDP socket of the
    /// peer's address family otherwise. Never blocks. A peer that names a connection
    /// (`peer.conn`) is reached over it, or over another one open to the same address, and
    /// never over a new one (a registered flow, RFC 5626 §5.3: the phone's port is an
    /// ephemeral one); a peer that names none gets a connection opened when there is none.
    /// What cannot be sent is counted and comes back to the core as
    /// [`Inbound::Unreachable`] (a lost UDP datagram does not: retransmissions cover it).
    pub fn send(&self, peer: Peer, bytes: Bytes) {
        match peer.transport {
            Transport::Udp => {
                let Some((udp, from)) = self.udp_socket_for(peer) else {
                    if log_limit::allow("no UDP socket for this address family") {
                        tracing::warn!(to = %peer, "no UDP socket for this address family");
                    }
                    self.unreachable(peer, Unreachable::SendFailed);
                    return;
                };
                let queue = &udp.queue;
                // Sent at once unless the kernel's buffer is full, or earlier datagrams
                // already wait for it: then the socket's sender task sends it when it can.
                if queue.waiting.load(Ordering::Acquire) == 0 {
                    match try_send(&udp.sock, &bytes, peer.addr, from) {
                        Ok(_) => return,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(e) => {
                            self.inner.stats.send_errors.fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(to = %peer, error = %e, "UDP send failed");
                            return;
                        }
                    }
                }
                queue.waiting.fetch_add(1, Ordering::AcqRel);
                if queue.tx.try_send((peer.addr, from, bytes)).is_err() {
                    queue.waiting.fetch_sub(1, Ordering::AcqRel);
                    self.inner.stats.send_errors.fetch_add(1, Ordering::Relaxed);
                    if log_limit::allow("UDP send queue full") {
                        tracing::warn!(to = %peer, "UDP send queue full; message dropped");
                    }
                }
            }
            Transport::Tcp => {
                let conn = self.inner.conns.lock().ok().and_then(|m| m.sender(peer));
                match conn {
                    Some(tx) => {
                        if tx.try_send(bytes).is_err() {
                            if log_limit::allow("TCP connection gone or stuck") {
                                tracing::warn!(to = %peer, "TCP connection gone or stuck; message dropped");
                            }
                            self.unreachable(peer, Unreachable::SendFailed);
                        }
                    }
                    None if peer.conn.is_some() => {
                        tracing::debug!(to = %peer, "connection closed; message dropped");
                        self.unreachable(peer, Unreachable::FlowGone);
                    }
                    None => self.connect_and_send(peer, bytes),
                }
            }
        }
    }

    /// Counts a message that could not be sent and tells the core, without waiting: this
    /// runs on the core's own thread, so a full channel drops the report (the transaction's
    /// timers still end it).
    fn unreachable(&self, peer: Peer, why: Unreachable) {
        self.inner.stats.send_errors.fetch_add(1, Ordering::Relaxed);
        if self
            .inner
            .sink
            .try_send(Arrival::now(Inbound::Unreachable { peer, why }))
            .is_err()
        {
            tracing::debug!(to = %peer, %why, "unreachable peer not reported: queue full");
        }
    }

    /// Keeps the connection `peer.conn` open at least until `until`, however idle it is
    /// (a registered flow, whose phone may send nothing until it refreshes). Holds only
    /// grow; a connection that closes takes its hold with it.
    pub fn hold(&self, peer: Peer, until: Instant) {
        let Some(id) = peer.conn else { return };
        let ms = until
            .saturating_duration_since(self.inner.epoch)
            .as_millis() as u64;
        if let Some(c) = self
            .inner
            .conns
            .lock()
            .ok()
            .and_then(|m| m.by_id.get(&id).map(|c| c.hold.clone()))
        {
            c.fetch_max(ms, Ordering::Relaxed);
        }
    }

    /// Opens a connection to `addr` (RFC 3261 §18.2.2 last resort, §18.1.1 for requests)
    /// and sends `bytes` once it is up. The connection is read like an accepted one, so the
    /// answers come back to the core, and it is reused for later messages to `addr`;
    /// messages sent while it is being opened wait in its queue.
    fn connect_and_send(&self, peer: Peer, bytes: Bytes) {
        let addr = peer.addr;
        let open = self.inner.stats.tcp_open.load(Ordering::Relaxed);
        if open >= self.inner.config.max_tcp_connections {
            if log_limit::allow("no TCP connection opened") {
                tracing::warn!(to = %addr, open, "no TCP connection opened: limit reached");
            }
            self.unreachable(peer, Unreachable::ConnectFailed);
            return;
        }
        let id = self.inner.next_conn.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(TCP_SEND_QUEUE);
        let _ = tx.try_send(bytes);
        let hold = match self.inner.conns.lock() {
            Ok(mut m) => m.insert(id, addr, false, tx),
            Err(_) => Arc::new(AtomicU64::new(0)),
        };
        self.inner.stats.tcp_open.fetch_add(1, Ordering::Relaxed);
        let this = self.clone();
        // From the address the core chose (the one its Via names), when it chose one.
        let source = peer
            .local
            .map(|l| l.ip())
            .filter(|ip| !ip.is_unspecified() && ip.is_ipv4() == addr.is_ipv4());
        tokio::spawn(async move {
            let connect =
                tokio::time::timeout(Duration::from_secs(5), connect_from(source, addr)).await;
            match connect {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    // Messages from this connection count as received on our listener of
                    // the same family (the address our Via and Record-Route name), at
                    // the address the connection has on this side.
                    let listener = this
                        .inner
                        .tcp
                        .iter()
                        .find(|l| l.is_ipv4() == addr.is_ipv4())
                        .copied();
                    let local = match (listener, stream.local_addr()) {
                        (Some(l), Ok(s)) if l.ip().is_unspecified() => {
                            SocketAddr::new(s.ip(), l.port())
                        }
                        (Some(l), _) => l,
                        (None, Ok(s)) => s,
                        (None, Err(_)) => addr,
                    };
                    let sink = this.inner.sink.clone();
                    tcp_connection(this, stream, addr, local, id, rx, hold, sink).await;
                }
                failed => {
                    if let Ok(mut m) = this.inner.conns.lock() {
                        m.remove(id);
                    }
                    this.inner.stats.tcp_open.fetch_sub(1, Ordering::Relaxed);
                    let error = match failed {
                        Ok(Err(e)) => e.to_string(),
                        _ => "timed out".to_string(),
                    };
                    tracing::debug!(to = %addr, error, "TCP connect failed");
                    // Everything queued for it is lost: the core ends what waits on it.
                    this.inner.stats.send_errors.fetch_add(1, Ordering::Relaxed);
                    let _ = this
                        .inner
                        .sink
                        .send(Arrival::now(Inbound::Unreachable {
                            peer,
                            why: Unreachable::ConnectFailed,
                        }))
                        .await;
                }
            }
        });
    }

    /// The UDP socket a datagram to `peer` leaves from, and the source address to give it
    /// (on a socket bound to every interface). The socket of `peer.local` when there is
    /// one: bound to that address, or bound to every interface at its port (then the
    /// datagram leaves from that address: a reply from the address its request came to).
    /// Otherwise, or when no socket has that address (a flow from an earlier run), one
    /// of the peer's family, loopback for loopback, and the system chooses the source.
    fn udp_socket_for(&self, peer: Peer) -> Option<(&Udp, Option<IpAddr>)> {
        let udp = &self.inner.udp;
        let addr = peer.addr;
        let family = |u: &&Udp| u.addr.is_ipv4() == addr.is_ipv4();
        if let Some(local) = peer.local.filter(|l| l.is_ipv4() == addr.is_ipv4()) {
            if let Some(u) = udp.iter().find(|u| u.addr == local) {
                return Some((u, None));
            }
            if let Some(u) = udp
                .iter()
                .filter(family)
                .find(|u| u.addr.ip().is_unspecified() && u.addr.port() == local.port())
            {
                let from = (u.pktinfo && !local.ip().is_unspecified()).then_some(local.ip());
                return Some((u, from));
            }
        }
        udp.iter()
            .filter(family)
            .find(|u| u.addr.ip().is_loopback() == addr.ip().is_loopback())
            .or_else(|| udp.iter().find(family))
            .map(|u| (u, None))
    }

    /// Hands a message read at `at` (after its socket `overflowed`) to the core. False when
    /// the core has stopped.
    async fn deliver(
        &self,
        inbound: Inbound,
        at: Instant,
        overflowed: bool,
        sink: &mpsc::Sender<Arrival>,
    ) -> bool {
        let arrival = Arrival {
            inbound,
            at,
            overflowed,
        };
        sink.send(arrival).await.is_ok()
    }

    /// What the core takes of a message it is about to handle at `now`: the message,
    /// unless the core is behind and the message would start new work — then it is
    /// answered `503` with `Retry-After` here and None comes back (see
    /// [`TransportConfig::shed_after`]). Called by the core's one loop, in arrival order.
    pub fn admit(&self, arrival: Arrival, now: Instant) -> Option<Inbound> {
        let after = self.inner.config.shed_after;
        if after.is_zero() {
            return Some(arrival.inbound);
        }
        let waited = now.saturating_duration_since(arrival.at);
        let late = &self.inner.late_run;
        let run = if waited >= after {
            late.fetch_add(1, Ordering::Relaxed) + 1
        } else {
            late.swap(0, Ordering::Relaxed);
            0
        };
        let since_epoch =
            |t: Instant| t.saturating_duration_since(self.inner.epoch).as_millis() as u64;
        if arrival.overflowed {
            self.inner
                .overflowed_at
                .store(since_epoch(arrival.at) + 1, Ordering::Relaxed);
        }
        let last = self.inner.overflowed_at.load(Ordering::Relaxed);
        let overflowing =
            last > 0 && since_epoch(now) < last + SHED_AFTER_OVERFLOW.as_millis() as u64;
        let shedding = self.inner.shedding.load(Ordering::Relaxed);
        let behind = if shedding {
            waited >= after / 2 || overflowing
        } else {
            run >= SHED_RUN || arrival.overflowed
        };
        if behind != shedding {
            self.shedding_changed(behind, waited, arrival.overflowed);
        }
        // While behind, what is shed is what waited: a new request that waited a quarter
        // of `shed_after` or more (CoDel's way: the queue is kept short, and the rest of
        // the work the core can do is still done), or that came just after its socket
        // overflowed.
        let late = waited >= after / 4 || arrival.overflowed;
        if behind && late && self.shed(&arrival.inbound) {
            return None;
        }
        Some(arrival.inbound)
    }

    /// While shedding, a datagram that waited (or came just after an overflow) and would
    /// start new work is answered 503 from its raw lines, and the ACK of such an answer is
    /// dropped, before any parsing ([`shed::triage`]); whether it was. Everything else is
    /// left to the parser and [`Transports::admit`].
    fn shed_unparsed(&self, data: &[u8], peer: Peer, at: Instant, overflowed: bool) -> bool {
        let after = self.inner.config.shed_after;
        if after.is_zero() || !self.inner.shedding.load(Ordering::Relaxed) {
            return false;
        }
        let waited = Instant::now().saturating_duration_since(at);
        if waited < after / 4 && !overflowed {
            return false;
        }
        let n = self.inner.stats.shed.load(Ordering::Relaxed);
        let tag = format!("{}{n:x}", shed::TAG_PREFIX);
        match shed::triage(data, &tag, &self.inner.server, SHED_RETRY_AFTER) {
            shed::Triage::Pass => false,
            shed::Triage::Drop => true,
            shed::Triage::Refuse(answer) => {
                self.inner.stats.shed.fetch_add(1, Ordering::Relaxed);
                self.send(peer, Bytes::from(answer));
                true
            }
        }
    }

    /// Answers `item` 503 if it is a request that would start new work; whether it did.
    fn shed(&self, item: &Inbound) -> bool {
        let Inbound::Message {
            msg: SipMessage::Request(req),
            peer,
            ..
        } = item
        else {
            return false;
        };
        let in_dialog = req
            .headers
            .iter()
            .any(|h| matches!(h, Header::To(t) if message::has_tag(t.value())));
        // An OPTIONS to the server itself (no user part) is answered by the core at about
        // the cost of a 503, and is how monitors and keep-alives see whether it is up.
        let to_server = req.method == Method::Options && req.uri.auth.is_none();
        if in_dialog || to_server || matches!(req.method, Method::Ack | Method::Cancel) {
            return false;
        }
        let n = self.inner.stats.shed.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{}{n:x}", shed::TAG_PREFIX);
        let mut resp = message::response(req, 503, Some(&tag), &self.inner.server);
        resp.headers
            .push(Header::RetryAfter(SHED_RETRY_AFTER.into()));
        self.send(
            *peer,
            Bytes::from(switchboard_sip::wire::response_bytes(&resp)),
        );
        true
    }

    /// One line when shedding begins and one when it ends (with how many were shed), not
    /// one per request.
    fn shedding_changed(&self, behind: bool, waited: Duration, overflowed: bool) {
        if self.inner.shedding.swap(behind, Ordering::Relaxed) == behind {
            return; // another socket said so first
        }
        let shed = self.inner.stats.shed.load(Ordering::Relaxed);
        if behind {
            self.inner.shed_at_start.store(shed, Ordering::Relaxed);
            tracing::warn!(
                waited_ms = waited.as_millis() as u64,
                overflowed,
                "the core is behind: new requests are answered 503 until it catches up"
            );
        } else {
            let since = shed - self.inner.shed_at_start.load(Ordering::Relaxed);
            tracing::warn!(
                shed = since,
                "the core caught up: new requests are served again"
            );
        }
    }

    /// Answers a message that failed the checks, when it can be answered.
    fn answer_invalid(&self, error: &ParseError, peer: Peer) -> bool {
        match error.response(&self.inner.server, "") {
            Some(bytes) => {
                self.send(peer, Bytes::from(bytes));
                true
            }
            None => false,
        }
    }
}

fn bind_udp(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let domain = if addr.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    // Best effort: the kernel caps these at net.core.[rw]mem_max.
    let _ = s.set_recv_buffer_size(UDP_BUFFER);
    let _ = s.set_send_buffer_size(UDP_BUFFER);
    // Best effort: without stamps, datagrams count from when they are read.
    #[cfg(target_os = "linux")]
    if let Err(e) = pktinfo::enable_timestamps(&s) {
        tracing::debug!(error = %e, "no kernel receive timestamps");
    }
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    UdpSocket::from_std(s.into())
}

fn bind_tcp(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let domain = if addr.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let s = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_reuse_address(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    TcpListener::from_std(s.into())
}

/// Asks a socket bound to every interface to read each datagram with the address it was
/// sent to; whether it will. Elsewhere than on Linux it cannot: then the core names such a
/// listener by the address its routes choose toward each peer, and replies leave from
/// whichever address the system chooses.
fn want_pktinfo(sock: &UdpSocket, local: SocketAddr) -> std::io::Result<bool> {
    #[cfg(target_os = "linux")]
    {
        pktinfo::enable(sock, local.is_ipv6())?;
        Ok(true)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = sock;
        tracing::warn!(addr = %local, "bound to every interface without the address each datagram was sent to (Linux only): replies may leave from another address of this machine");
        Ok(false)
    }
}

/// What the socket of a UDP listener has waiting, read a batch at a time (on Linux with
/// `recvmmsg`: under load, one system call for up to [`pktinfo::Batch::SIZE`] datagrams).
struct Inbox {
    #[cfg(target_os = "linux")]
    batch: pktinfo::Batch,
    #[cfg(not(target_os = "linux"))]
    buf: Vec<u8>,
    #[cfg(not(target_os = "linux"))]
    got: (usize, SocketAddr),
}

impl Inbox {
    /// Room for datagrams of up to `room` bytes.
    fn new(room: usize) -> Inbox {
        Inbox {
            #[cfg(target_os = "linux")]
            batch: pktinfo::Batch::new(room),
            #[cfg(not(target_os = "linux"))]
            buf: vec![0; room],
            #[cfg(not(target_os = "linux"))]
            got: (0, SocketAddr::from(([0, 0, 0, 0], 0))),
        }
    }

    /// Reads what is waiting on `udp`'s socket without waiting (`WouldBlock` when nothing
    /// is); how many datagrams.
    fn read(&mut self, udp: &Udp) -> std::io::Result<usize> {
        #[cfg(target_os = "linux")]
        {
            let batch = &mut self.batch;
            udp.sock.try_io(Interest::READABLE, || {
                pktinfo::recv_batch(&*udp.sock, batch)
            })
        }
        #[cfg(not(target_os = "linux"))]
        {
            self.got = udp.sock.try_recv_from(&mut self.buf)?;
            Ok(1)
        }
    }

    /// The `i`th datagram of the last read: its bytes, its source, the address of ours it
    /// was sent to (for a socket bound to every interface, the one the datagram names; else
    /// the socket's), when it reached the machine (the kernel's stamp; else now), and how
    /// many datagrams the socket had dropped by then for want of room.
    fn get(&self, udp: &Udp, i: usize) -> (&[u8], SocketAddr, SocketAddr, Instant, u32) {
        #[cfg(target_os = "linux")]
        {
            let (r, data) = self.batch.get(i);
            let local = match r.to {
                Some(ip) if udp.pktinfo => SocketAddr::new(ip, udp.addr.port()),
                _ => udp.addr,
            };
            (
                data,
                r.from,
                local,
                arrived_at(r.arrived),
                r.dropped.unwrap_or(0),
            )
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = i;
            let (n, from) = self.got;
            (&self.buf[..n], from, udp.addr, Instant::now(), 0)
        }
    }
}

/// The moment (on the monotonic clock) of a kernel receive stamp; now without one, or when
/// the wall clock was stepped back since.
fn arrived_at(stamp: Option<std::time::SystemTime>) -> Instant {
    let read = Instant::now();
    stamp
        .and_then(|t| std::time::SystemTime::now().duration_since(t).ok())
        .and_then(|age| read.checked_sub(age))
        .unwrap_or(read)
}

/// Sends one datagram without waiting, from source address `from` when given (a socket
/// bound to every interface).
fn try_send(
    sock: &UdpSocket,
    bytes: &[u8],
    to: SocketAddr,
    from: Option<IpAddr>,
) -> std::io::Result<usize> {
    #[cfg(target_os = "linux")]
    if let Some(from) = from {
        return sock.try_io(Interest::WRITABLE, || pktinfo::send(sock, bytes, to, from));
    }
    let _ = from;
    sock.try_send_to(bytes, to)
}

/// Opens a TCP connection to `to`, from address `source` when given.
async fn connect_from(source: Option<IpAddr>, to: SocketAddr) -> std::io::Result<TcpStream> {
    let Some(source) = source else {
        return TcpStream::connect(to).await;
    };
    let s = if to.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    s.bind(SocketAddr::new(source, 0))?;
    s.connect(to).await
}

async fn udp_loop(t: Transports, index: usize, sink: mpsc::Sender<Arrival>) {
    let udp = &t.inner.udp[index];
    let limits = t.inner.config.limits;
    // One byte more than the limit, to tell an over-long datagram from one that fits.
    let mut inbox = Inbox::new(limits.max_message_size.max(1) + 1);
    // The socket's drop count as of the last message handed on: a larger one means its
    // buffer overflowed since (see `TransportConfig::shed_after`).
    let mut drops_told = 0u32;
    loop {
        let n = match inbox.read(udp) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                // Empty until the next datagram comes.
                if let Err(e) = udp.sock.readable().await {
                    tracing::warn!(error = %e, "UDP socket failed");
                    return;
                }
                continue;
            }
            Err(e) => {
                // ICMP errors surface here on some systems; keep serving.
                tracing::debug!(error = %e, "UDP receive error");
                continue;
            }
        };
        for i in 0..n {
            let (data, from, local, at, dropped) = inbox.get(udp, i);
            // CRLF keep-alives (RFC 5626 §3.5.1) are not messages.
            if data.iter().all(|&b| b == b'\r' || b == b'\n' || b == 0) {
                continue;
            }
            // The flow: from `from`, to `local`; what goes back to it leaves from `local`.
            let peer = Peer::udp(from).with_local(local);
            // Nor are STUN keep-alives (RFC 5626 §4.4.2): a Binding request is answered
            // with the address it came from; other STUN is dropped.
            if stun::is_stun(data) {
                match stun::binding_response(data, from) {
                    Some(answer) => {
                        t.inner.stats.keepalives.fetch_add(1, Ordering::Relaxed);
                        t.send(peer, Bytes::from(answer));
                    }
                    None => {
                        t.inner.stats.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
                continue;
            }
            t.inner.stats.received.fetch_add(1, Ordering::Relaxed);
            let overflowed = dropped != drops_told;
            drops_told = dropped;
            // While the core is behind, what would start new work is refused before the
            // parser's work, and the ACKs of those refusals are dropped unread.
            if t.shed_unparsed(data, peer, at, overflowed) {
                continue;
            }
            let item = match parse(data, &limits) {
                Ok(msg) => Inbound::Message { msg, peer, local },
                Err(error) => Inbound::Invalid { error, peer },
            };
            if !t.deliver(item, at, overflowed, &sink).await {
                return; // the core has stopped
            }
        }
    }
}

/// Sends the datagrams that found a UDP socket's kernel buffer full, in order, as it empties:
/// waited out rather than dropped.
async fn udp_sender(
    t: Transports,
    sock: Arc<UdpSocket>,
    mut queue: mpsc::Receiver<Datagram>,
    waiting: Arc<AtomicUsize>,
) {
    while let Some((to, from, bytes)) = queue.recv().await {
        let sent = loop {
            match try_send(&sock, &bytes, to, from) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if let Err(e) = sock.writable().await {
                        break Err(e);
                    }
                }
                other => break other.map(|_| ()),
            }
        };
        waiting.fetch_sub(1, Ordering::AcqRel);
        if let Err(e) = sent {
            t.inner.stats.send_errors.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(to = %to, error = %e, "UDP send failed");
        }
    }
}

async fn tcp_accept_loop(
    t: Transports,
    listener: TcpListener,
    local: SocketAddr,
    sink: mpsc::Sender<Arrival>,
) {
    loop {
        let (stream, from) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                if log_limit::allow("TCP accept failed") {
                    tracing::warn!(error = %e, "TCP accept failed");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let open = t.inner.stats.tcp_open.load(Ordering::Relaxed);
        if open >= t.inner.config.max_tcp_connections {
            t.inner.stats.tcp_refused.fetch_add(1, Ordering::Relaxed);
            if log_limit::allow("TCP connection refused") {
                tracing::warn!(from = %from, open, "TCP connection refused: limit reached");
            }
            drop(stream);
            continue;
        }
        let id = t.inner.next_conn.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(TCP_SEND_QUEUE);
        let per_source = t.inner.config.max_tcp_connections_per_source;
        let hold = match t.inner.conns.lock() {
            Ok(mut m) => match m.over_source_limit(from.ip(), per_source) {
                // Checked and filed under one lock: listeners of both families share it.
                Some(first) => {
                    drop(m);
                    t.inner
                        .stats
                        .tcp_refused_per_source
                        .fetch_add(1, Ordering::Relaxed);
                    if first && log_limit::allow("TCP connections refused for a source") {
                        tracing::warn!(
                            from = %from.ip(),
                            limit = per_source,
                            "TCP connections refused: this address has as many as one may; \
                             further refusals of it are counted, not logged, until one closes"
                        );
                    } else {
                        tracing::debug!(from = %from, "TCP connection refused: source limit");
                    }
                    drop(stream);
                    continue;
                }
                None => m.insert(id, from, true, tx),
            },
            Err(_) => Arc::new(AtomicU64::new(0)),
        };
        let _ = stream.set_nodelay(true);
        t.inner.stats.tcp_open.fetch_add(1, Ordering::Relaxed);
        // The address the connection came to (one of the machine's, also on a listener
        // bound to every interface).
        let local = stream.local_addr().unwrap_or(local);
        tokio::spawn(tcp_connection(
            t.clone(),
            stream,
            from,
            local,
            id,
            rx,
            hold,
            sink.clone(),
        ));
    }
}

// The connection's parts, each needed by its task.
#[allow(clippy::too_many_arguments)]
async fn tcp_connection(
    t: Transports,
    stream: TcpStream,
    from: SocketAddr,
    local: SocketAddr,
    id: ConnId,
    mut outbound: mpsc::Receiver<Bytes>,
    hold: Arc<AtomicU64>,
    sink: mpsc::Sender<Arrival>,
) {
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        while let Some(b) = outbound.recv().await {
            if wr.write_all(&b).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    });
    let peer = Peer::tcp(from, id).with_local(local);
    let limits = t.inner.config.limits;
    let idle = t.inner.config.tcp_idle_timeout;
    let mut buf = BytesMut::with_capacity(8192);
    'conn: loop {
        let read = tokio::time::timeout(idle, rd.read_buf(&mut buf)).await;
        match read {
            Err(_) => {
                let held = hold.load(Ordering::Relaxed);
                if held > t.inner.epoch.elapsed().as_millis() as u64 {
                    continue; // a registered flow: idle is what it is allowed to be
                }
                tracing::debug!(peer = %peer, "TCP connection idle; closing");
                break;
            }
            Ok(Err(_)) | Ok(Ok(0)) => break,
            Ok(Ok(_)) => {}
        }
        let at = Instant::now();
        loop {
            match frame(&buf, &limits) {
                Framing::Incomplete => break,
                Framing::KeepAlive { len, pong } => {
                    let _ = buf.split_to(len);
                    if pong {
                        t.send(peer, Bytes::from_static(b"\r\n"));
                    }
                }
                Framing::Message { len } => {
                    let data = buf.split_to(len).freeze();
                    t.inner.stats.received.fetch_add(1, Ordering::Relaxed);
                    let item = match parse(&data, &limits) {
                        Ok(msg) => Inbound::Message { msg, peer, local },
                        Err(error) => Inbound::Invalid { error, peer },
                    };
                    if !t.deliver(item, at, false, &sink).await {
                        break 'conn;
                    }
                }
                Framing::Invalid(error) => {
                    // The stream cannot be resynchronised: answer if possible and close.
                    t.inner.stats.received.fetch_add(1, Ordering::Relaxed);
                    if t.answer_invalid(&error, peer) {
                        t.inner.stats.rejected.fetch_add(1, Ordering::Relaxed);
                    } else {
                        t.inner.stats.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                    if log_limit::allow("unreadable TCP stream") {
                        tracing::info!(peer = %peer, reason = %error, "unreadable TCP stream; closing");
                    }
                    break 'conn;
                }
            }
        }
    }
    if let Ok(mut m) = t.inner.conns.lock() {
        m.remove(id);
    }
    t.inner.stats.tcp_open.fetch_sub(1, Ordering::Relaxed);
    let _ = sink.send(Arrival::now(Inbound::Closed { peer })).await;
    // Let queued responses drain, bounded.
    let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> TransportConfig {
        TransportConfig {
            limits: Limits::default(),
            max_tcp_connections: 2,
            max_tcp_connections_per_source: 2,
            tcp_idle_timeout: Duration::from_secs(5),
            shed_after: Duration::ZERO,
        }
    }

    /// Transports listening on `listen`, and what they hand to the core.
    async fn listening_on(
        listen: &[ListenAddr],
        config: TransportConfig,
    ) -> (Transports, mpsc::Receiver<Arrival>) {
        let (tx, rx) = mpsc::channel(16);
        let t = Transports::bind(listen, config, tx, "t".into())
            .await
            .unwrap();
        (t, rx)
    }

    /// [`listening_on`] one address.
    async fn listening(
        listen: &str,
        config: TransportConfig,
    ) -> (Transports, mpsc::Receiver<Arrival>) {
        listening_on(&[listen.parse().unwrap()], config).await
    }

    /// The next message handed to the core.
    async fn next(rx: &mut mpsc::Receiver<Arrival>) -> Option<Inbound> {
        rx.recv().await.map(|a| a.inbound)
    }

    /// `text` as a message from `from` that waited `waited` for the core.
    fn waited(text: &str, from: SocketAddr, local: SocketAddr, waited: Duration) -> Arrival {
        let msg = parse(text.as_bytes(), &Limits::default()).unwrap();
        let inbound = Inbound::Message {
            msg,
            peer: Peer::udp(from),
            local,
        };
        Arrival {
            inbound,
            at: Instant::now() - waited,
            overflowed: false,
        }
    }

    #[tokio::test]
    async fn a_core_behind_sheds_new_requests_and_serves_dialogs() {
        let config = TransportConfig {
            shed_after: Duration::from_millis(100),
            ..cfg()
        };
        let (t, _rx) = listening("udp:127.0.0.1:0", config).await;
        let local = t.local_addrs()[0].addr;
        let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let from = c.local_addr().unwrap();
        let options = OPTIONS.replace("TCP 127.0.0.1:1", &format!("UDP {from}"));
        let to_server = options.replace("OPTIONS sip:x ", "OPTIONS sip:127.0.0.1 ");
        let options = options.replace("OPTIONS sip:x ", "OPTIONS sip:bob@x ");
        let bye = options
            .replace("OPTIONS", "BYE")
            .replace("To: <sip:x>", "To: <sip:x>;tag=far");
        let ms = Duration::from_millis;
        let admitted = |text: &str, w: Duration| {
            t.admit(waited(text, from, local, w), Instant::now())
                .is_some()
        };

        // Late, but fewer than a run of them: a pause of the process, not overload.
        for _ in 1..SHED_RUN {
            assert!(admitted(&options, ms(150)));
        }
        assert!(admitted(&options, ms(20)), "a prompt one ends the run");
        for _ in 1..SHED_RUN {
            assert!(admitted(&options, ms(150)));
        }
        // A run of late ones: the core is behind, and a new request is answered 503 here.
        assert!(!admitted(&options, ms(150)));
        let mut b = [0u8; 2048];
        let (n, _) = tokio::time::timeout(Duration::from_secs(5), c.recv_from(&mut b))
            .await
            .unwrap()
            .unwrap();
        let answer = String::from_utf8_lossy(&b[..n]);
        assert!(answer.starts_with("SIP/2.0 503 "), "{answer}");
        assert!(answer.contains("\r\nRetry-After: "), "{answer}");
        // Calls under way go on: in-dialog requests are served while shedding, and the
        // server itself still answers OPTIONS (monitors see it up).
        assert!(admitted(&bye, ms(150)));
        assert!(admitted(&to_server, ms(150)));
        // Shedding holds while messages wait half as long, and takes those that waited a
        // quarter as long…
        assert!(!admitted(&options, ms(60)));
        // …and ends when they wait less.
        assert!(admitted(&options, ms(40)));
        assert!(admitted(&options, ms(150)));
        assert_eq!(t.stats().shed.load(Ordering::Relaxed), 2);

        // A socket that overflowed: its queue was full before anything waited that long
        // (a small buffer, a fast flood). Shedding begins at once…
        let overflowed = |w: Duration| {
            let mut a = waited(&options, from, local, w);
            a.overflowed = true;
            t.admit(a, Instant::now()).is_some()
        };
        assert!(!overflowed(ms(5)));
        // …and goes on while it may still be overflowing: what waited is shed, what did
        // not is served (the queue is kept short, the core's work still done)…
        assert!(admitted(&options, ms(5)));
        assert!(!admitted(&options, ms(60)));
        // …until a while after it last did.
        let later = Instant::now() + SHED_AFTER_OVERFLOW;
        let mut a = waited(&options, from, local, ms(0));
        a.at = later - ms(5);
        assert!(t.admit(a, later).is_some());
        assert_eq!(t.stats().shed.load(Ordering::Relaxed), 4);
    }

    #[tokio::test]
    async fn while_shedding_new_requests_are_refused_before_the_parser() {
        let config = TransportConfig {
            shed_after: Duration::from_millis(4),
            ..cfg()
        };
        let (t, mut rx) = listening("udp:127.0.0.1:0", config).await;
        let local = t.local_addrs()[0].addr;
        let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let from = c.local_addr().unwrap();
        let options = OPTIONS
            .replace("TCP 127.0.0.1:1", &format!("UDP {from}"))
            .replace("OPTIONS sip:x ", "OPTIONS sip:bob@x ");
        // Each datagram waits in the socket (this thread holds the runtime) longer than a
        // quarter of shed_after, as under a flood.
        let send_and_wait = |text: String| {
            let c = &c;
            async move {
                c.send_to(text.as_bytes(), local).await.unwrap();
                std::thread::sleep(Duration::from_millis(10));
            }
        };
        // Not shedding: the request goes to the core.
        send_and_wait(options.clone()).await;
        assert!(next(&mut rx).await.is_some());
        // Shedding: refused here, with a 503 of its own lines; nothing reaches the core.
        t.inner.shedding.store(true, Ordering::Relaxed);
        send_and_wait(options.clone()).await;
        let mut b = [0u8; 2048];
        let (n, _) = tokio::time::timeout(Duration::from_secs(5), c.recv_from(&mut b))
            .await
            .unwrap()
            .unwrap();
        let answer = String::from_utf8_lossy(&b[..n]).into_owned();
        assert!(answer.starts_with("SIP/2.0 503 "), "{answer}");
        let tag = answer
            .split("\r\n")
            .find_map(|l| l.strip_prefix("To: <sip:x>;tag="))
            .unwrap()
            .to_string();
        assert!(tag.starts_with(shed::TAG_PREFIX), "{answer}");
        assert_eq!(t.stats().shed.load(Ordering::Relaxed), 1);
        // Its ACK is dropped unread; a request in a dialog still reaches the core.
        let ack = options
            .replace("OPTIONS", "ACK")
            .replace("To: <sip:x>", &format!("To: <sip:x>;tag={tag}"));
        send_and_wait(ack).await;
        let bye = options
            .replace("OPTIONS", "BYE")
            .replace("To: <sip:x>", "To: <sip:x>;tag=far");
        send_and_wait(bye).await;
        let Some(Inbound::Message { msg, .. }) = next(&mut rx).await else {
            panic!()
        };
        let SipMessage::Request(r) = msg else {
            panic!()
        };
        assert_eq!(r.method, Method::Bye, "the ACK never came to the core");
    }

    const OPTIONS: &str = "OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:1;branch=z9hG4bK1\r\n\
        Max-Forwards: 70\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:x>\r\nCall-ID: t1\r\nCSeq: 1 OPTIONS\r\n\
        Content-Length: 0\r\n\r\n";

    #[tokio::test]
    async fn tcp_frames_and_answers_on_the_same_connection() {
        let (t, mut rx) = listening("tcp:127.0.0.1:0", cfg()).await;
        let addr = t.local_addrs()[0].addr;
        let mut c = TcpStream::connect(addr).await.unwrap();
        // Two messages in one write, then a keep-alive ping.
        c.write_all(format!("{OPTIONS}{OPTIONS}\r\n\r\n").as_bytes())
            .await
            .unwrap();
        for _ in 0..2 {
            let Some(Inbound::Message { peer, .. }) = next(&mut rx).await else {
                panic!()
            };
            assert_eq!(peer.transport, Transport::Tcp);
            t.send(peer, Bytes::from_static(b"SIP/2.0 200 OK\r\n\r\n"));
        }
        let mut got = Vec::new();
        let want = b"SIP/2.0 200 OK\r\n\r\nSIP/2.0 200 OK\r\n\r\n\r\n".len();
        while got.len() < want {
            let mut b = [0u8; 256];
            let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut b))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0);
            got.extend_from_slice(&b[..n]);
        }
        // The pong may precede the answers: the core answers after the framing loop ran.
        let text = String::from_utf8(got).unwrap();
        assert_eq!(text.matches("SIP/2.0 200 OK\r\n\r\n").count(), 2);
        assert_eq!(text.len(), want);
    }

    #[tokio::test]
    async fn tcp_without_content_length_gets_400_and_close() {
        let (t, _rx) = listening("tcp:127.0.0.1:0", cfg()).await;
        let mut c = TcpStream::connect(t.local_addrs()[0].addr).await.unwrap();
        c.write_all(OPTIONS.replace("Content-Length: 0\r\n", "").as_bytes())
            .await
            .unwrap();
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut got))
            .await
            .unwrap()
            .unwrap();
        let s = String::from_utf8(got).unwrap();
        assert!(s.starts_with("SIP/2.0 400 Bad Request"), "{s}");
    }

    #[tokio::test]
    async fn a_refused_connect_comes_back_as_unreachable() {
        let (t, mut rx) = listening("tcp:127.0.0.1:0", cfg()).await;
        // A port nobody listens on: bound, then closed.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = closed.local_addr().unwrap();
        drop(closed);
        let peer = Peer {
            transport: Transport::Tcp,
            addr,
            conn: None,
            local: None,
        };
        t.send(peer, Bytes::from_static(b"OPTIONS"));
        let got = tokio::time::timeout(Duration::from_secs(5), next(&mut rx))
            .await
            .unwrap();
        match got {
            Some(Inbound::Unreachable { peer: p, why }) => {
                assert_eq!(p, peer);
                assert_eq!(why, Unreachable::ConnectFailed);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(t.stats().tcp_open.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_closed_flow_is_reported_and_never_redialled() {
        let (t, mut rx) = listening("tcp:127.0.0.1:0", cfg()).await;
        // The phone listens on a port of its own too: a redial of its flow's address
        // would reach this listener, which must stay silent.
        let phone_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut c = TcpStream::connect(t.local_addrs()[0].addr).await.unwrap();
        c.write_all(OPTIONS.as_bytes()).await.unwrap();
        let Some(Inbound::Message { peer, .. }) = next(&mut rx).await else {
            panic!()
        };
        assert!(peer.conn.is_some());
        drop(c);
        match tokio::time::timeout(Duration::from_secs(5), next(&mut rx)).await {
            Ok(Some(Inbound::Closed { peer: p })) => assert_eq!(p, peer),
            other => panic!("{other:?}"),
        }
        t.send(peer, Bytes::from_static(b"INVITE"));
        match tokio::time::timeout(Duration::from_secs(5), next(&mut rx)).await {
            Ok(Some(Inbound::Unreachable { peer: p, why })) => {
                assert_eq!(p, peer);
                assert_eq!(why, Unreachable::FlowGone);
            }
            other => panic!("{other:?}"),
        }
        assert!(
            tokio::time::timeout(Duration::from_millis(300), phone_listener.accept())
                .await
                .is_err(),
            "nothing is dialled"
        );
        assert_eq!(t.stats().tcp_open.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_held_connection_outlives_the_idle_timeout() {
        let config = TransportConfig {
            tcp_idle_timeout: Duration::from_millis(300),
            ..cfg()
        };
        let (t, mut rx) = listening("tcp:127.0.0.1:0", config).await;
        let connect = || TcpStream::connect(t.local_addrs()[0].addr);
        let (mut held, mut idle) = (connect().await.unwrap(), connect().await.unwrap());
        held.write_all(OPTIONS.as_bytes()).await.unwrap();
        let Some(Inbound::Message { peer, .. }) = next(&mut rx).await else {
            panic!()
        };
        t.hold(peer, Instant::now() + Duration::from_millis(1500));
        // The other connection closes after the idle timeout, the held one only after
        // its hold.
        let mut b = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(2), idle.read(&mut b))
            .await
            .expect("the idle connection is closed")
            .unwrap();
        assert_eq!(n, 0);
        let still = tokio::time::timeout(Duration::from_millis(900), held.read(&mut b)).await;
        assert!(still.is_err(), "the held connection stays open: {still:?}");
        let n = tokio::time::timeout(Duration::from_secs(3), held.read(&mut b))
            .await
            .expect("closed once the hold is over")
            .unwrap();
        assert_eq!(n, 0);
    }

    /// A connection from loopback address `ip` (127.0.0.0/8 is all loopback on Linux).
    async fn connect_from(ip: &str, to: SocketAddr) -> TcpStream {
        let s = tokio::net::TcpSocket::new_v4().unwrap();
        s.bind(format!("{ip}:0").parse().unwrap()).unwrap();
        s.connect(to).await.unwrap()
    }

    /// Sends an OPTIONS over `c` and waits for the core to get it: the connection was
    /// accepted and is counted.
    async fn accepted(c: &mut TcpStream, rx: &mut mpsc::Receiver<Arrival>) -> Peer {
        c.write_all(OPTIONS.as_bytes()).await.unwrap();
        match tokio::time::timeout(Duration::from_secs(5), next(rx)).await {
            Ok(Some(Inbound::Message { peer, .. })) => peer,
            other => panic!("{other:?}"),
        }
    }

    /// Whether the daemon closed `c` (end of stream or reset) within a while.
    async fn closed(c: &mut TcpStream) -> bool {
        let mut b = [0u8; 64];
        matches!(
            tokio::time::timeout(Duration::from_secs(2), c.read(&mut b)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }

    #[tokio::test]
    async fn one_address_fills_its_share_of_tcp_while_another_still_connects() {
        let config = TransportConfig {
            max_tcp_connections: 10,
            max_tcp_connections_per_source: 3,
            ..cfg()
        };
        let (t, mut rx) = listening("tcp:127.0.0.1:0", config).await;
        let addr = t.local_addrs()[0].addr;
        let mut held = Vec::new();
        for _ in 0..3 {
            let mut c = connect_from("127.0.0.5", addr).await;
            accepted(&mut c, &mut rx).await;
            held.push(c);
        }
        // 127.0.0.5 is at its limit: each further connection is closed at once, unread.
        for _ in 0..4 {
            let mut c = connect_from("127.0.0.5", addr).await;
            let _ = c.write_all(OPTIONS.as_bytes()).await;
            assert!(closed(&mut c).await, "refused");
        }
        assert_eq!(t.stats().tcp_refused_per_source.load(Ordering::Relaxed), 4);
        assert_eq!(t.stats().tcp_refused.load(Ordering::Relaxed), 0);
        assert!(rx.try_recv().is_err(), "nothing from the refused ones");
        // Another address still connects, and is answered over its connection.
        let mut other = connect_from("127.0.0.6", addr).await;
        let peer = accepted(&mut other, &mut rx).await;
        assert_eq!(peer.addr.ip().to_string(), "127.0.0.6");
        t.send(peer, Bytes::from_static(b"SIP/2.0 200 OK\r\n\r\n"));
        let mut b = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(5), other.read(&mut b))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&b[..n], b"SIP/2.0 200 OK\r\n\r\n");
        // One of 127.0.0.5's connections closes: it may open one again.
        drop(held.pop());
        match tokio::time::timeout(Duration::from_secs(5), next(&mut rx)).await {
            Ok(Some(Inbound::Closed { .. })) => {}
            other => panic!("{other:?}"),
        }
        let mut again = connect_from("127.0.0.5", addr).await;
        accepted(&mut again, &mut rx).await;
        assert_eq!(t.stats().tcp_open.load(Ordering::Relaxed), 4);
        assert_eq!(t.stats().tcp_refused_per_source.load(Ordering::Relaxed), 4);
    }

    #[tokio::test]
    async fn a_stun_keepalive_is_answered_with_the_address_it_came_from() {
        let (t, mut rx) = listening("udp:127.0.0.1:0", cfg()).await;
        let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let me = c.local_addr().unwrap();
        let mut request = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
        request.extend_from_slice(&[7; 12]);
        c.send_to(&request, t.local_addrs()[0].addr).await.unwrap();
        let mut b = [0u8; 64];
        let (n, _) = tokio::time::timeout(Duration::from_secs(5), c.recv_from(&mut b))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&b[..2], &[0x01, 0x01], "a Binding success response");
        assert_eq!(&b[8..20], &[7; 12]);
        let port = u16::from_be_bytes([b[26], b[27]]) ^ 0x2112;
        let ip = u32::from_be_bytes([b[28], b[29], b[30], b[31]]) ^ 0x2112_a442;
        assert_eq!(
            SocketAddr::from((std::net::Ipv4Addr::from(ip), port)),
            me,
            "{:?}",
            &b[..n]
        );
        assert_eq!(t.stats().keepalives.load(Ordering::Relaxed), 1);
        // Nothing reached the core.
        assert!(rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn udp_delivers_and_reports_invalid() {
        let (t, mut rx) = listening("udp:127.0.0.1:0", cfg()).await;
        let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        c.send_to(b"\r\n\r\n", t.local_addrs()[0].addr)
            .await
            .unwrap();
        c.send_to(b"garbage", t.local_addrs()[0].addr)
            .await
            .unwrap();
        c.send_to(OPTIONS.as_bytes(), t.local_addrs()[0].addr)
            .await
            .unwrap();
        assert!(matches!(next(&mut rx).await, Some(Inbound::Invalid { .. })));
        assert!(matches!(next(&mut rx).await, Some(Inbound::Message { .. })));
    }

    /// A UDP port free on every address (bound to 0.0.0.0, then let go).
    fn free_udp_port() -> u16 {
        std::net::UdpSocket::bind("0.0.0.0:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    #[tokio::test]
    async fn a_wildcard_udp_socket_answers_from_the_address_it_was_sent_to() {
        let (t, mut rx) = listening("udp:0.0.0.0:0", cfg()).await;
        let port = t.local_addrs()[0].addr.port();
        let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        // 127.0.0.3 is this machine's too (all of 127/8 is loopback on Linux), but not the
        // address the system would choose to reach 127.0.0.1 from.
        for to in ["127.0.0.3", "127.0.0.1"] {
            let to = SocketAddr::new(to.parse().unwrap(), port);
            c.send_to(OPTIONS.as_bytes(), to).await.unwrap();
            let Some(Inbound::Message { peer, local, .. }) = next(&mut rx).await else {
                panic!()
            };
            assert_eq!(local, to, "the address it was sent to");
            assert_eq!(peer.local, Some(to));
            t.send(peer, Bytes::from_static(b"SIP/2.0 200 OK\r\n\r\n"));
            let mut b = [0u8; 64];
            let (n, from) = tokio::time::timeout(Duration::from_secs(5), c.recv_from(&mut b))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(&b[..n], b"SIP/2.0 200 OK\r\n\r\n");
            assert_eq!(from, to, "the reply leaves from where the request came to");
        }
        // A peer with no flow of its own: the system chooses.
        t.send(Peer::udp(c.local_addr().unwrap()), Bytes::from_static(b"x"));
        let mut b = [0u8; 64];
        let (_, from) = tokio::time::timeout(Duration::from_secs(5), c.recv_from(&mut b))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(from, SocketAddr::from(([127, 0, 0, 1], port)));
    }

    #[tokio::test]
    async fn a_wildcard_ipv6_socket_knows_the_address_too() {
        if std::net::UdpSocket::bind("[::1]:0").is_err() {
            eprintln!("skipped: ::1 is not configured on this machine's loopback");
            return;
        }
        let (t, mut rx) = listening("udp:[::]:0", cfg()).await;
        let to = SocketAddr::new("::1".parse().unwrap(), t.local_addrs()[0].addr.port());
        let c = UdpSocket::bind("[::1]:0").await.unwrap();
        c.send_to(OPTIONS.as_bytes(), to).await.unwrap();
        let Some(Inbound::Message { peer, local, .. }) = next(&mut rx).await else {
            panic!()
        };
        assert_eq!((local, peer.local), (to, Some(to)));
        t.send(peer, Bytes::from_static(b"a"));
        let mut b = [0u8; 64];
        let (_, from) = tokio::time::timeout(Duration::from_secs(5), c.recv_from(&mut b))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(from, to);
    }

    #[tokio::test]
    async fn each_flow_leaves_from_its_own_socket() {
        let port = free_udp_port();
        let listen: Vec<ListenAddr> = vec![
            format!("udp:127.0.0.1:{port}").parse().unwrap(),
            format!("udp:127.0.0.2:{port}").parse().unwrap(),
            "tcp:0.0.0.0:0".parse().unwrap(),
        ];
        let (t, mut rx) = listening_on(&listen, cfg()).await;
        let bound = t.local_addrs();
        assert_eq!(bound[..2], listen[..2], "in the order asked for");
        assert_eq!(bound[2].transport, Transport::Tcp);
        assert!(bound[2].addr.ip().is_unspecified() && bound[2].addr.port() != 0);
        let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let two = SocketAddr::from(([127, 0, 0, 2], port));
        c.send_to(OPTIONS.as_bytes(), two).await.unwrap();
        let Some(Inbound::Message { peer, local, .. }) = next(&mut rx).await else {
            panic!()
        };
        assert_eq!((local, peer.local), (two, Some(two)));
        t.send(peer, Bytes::from_static(b"a"));
        let mut b = [0u8; 64];
        let (_, from) = tokio::time::timeout(Duration::from_secs(5), c.recv_from(&mut b))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(from, two);
        // A TCP connection to the wildcard listener knows the address it came to.
        let to = SocketAddr::from(([127, 0, 0, 4], bound[2].addr.port()));
        let mut s = TcpStream::connect(to).await.unwrap();
        s.write_all(OPTIONS.as_bytes()).await.unwrap();
        let Some(Inbound::Message { peer, local, .. }) = next(&mut rx).await else {
            panic!()
        };
        assert_eq!((local, peer.local), (to, Some(to)));
    }

    #[tokio::test]
    async fn an_opened_connection_leaves_from_the_address_asked_for() {
        let (t, mut rx) = listening("tcp:0.0.0.0:0", cfg()).await;
        let port = t.local_addrs()[0].addr.port();
        let far = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let peer = Peer {
            transport: Transport::Tcp,
            addr: far.local_addr().unwrap(),
            conn: None,
            local: Some(SocketAddr::from(([127, 0, 0, 5], port))),
        };
        t.send(peer, Bytes::from_static(OPTIONS.as_bytes()));
        let (mut s, from) = tokio::time::timeout(Duration::from_secs(5), far.accept())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(from.ip().to_string(), "127.0.0.5");
        // What comes back over it counts as received at our listener's port there.
        s.write_all(OPTIONS.as_bytes()).await.unwrap();
        let Some(Inbound::Message { local, .. }) = next(&mut rx).await else {
            panic!()
        };
        assert_eq!(local, SocketAddr::from(([127, 0, 0, 5], port)));
    }

    #[tokio::test]
    async fn ipv6_udp_and_tcp_listen_on_loopback() {
        if std::net::UdpSocket::bind("[::1]:0").is_err() {
            eprintln!("skipped: ::1 is not configured on this machine's loopback");
            return;
        }
        let listen: Vec<ListenAddr> = vec![
            "udp:[::1]:0".parse().unwrap(),
            "tcp:[::1]:0".parse().unwrap(),
        ];
        let (t, mut rx) = listening_on(&listen, cfg()).await;
        let addrs = t.local_addrs();
        let c = UdpSocket::bind("[::1]:0").await.unwrap();
        let text = OPTIONS.replace("TCP 127.0.0.1:1", "UDP [::1]:1");
        c.send_to(text.as_bytes(), addrs[0].addr).await.unwrap();
        let Some(Inbound::Message { peer, local, .. }) = next(&mut rx).await else {
            panic!()
        };
        assert!(peer.addr.is_ipv6() && local.is_ipv6());
        t.send(peer, Bytes::from_static(b"SIP/2.0 200 OK\r\n\r\n"));
        let mut b = [0u8; 64];
        let (n, _) = tokio::time::timeout(Duration::from_secs(5), c.recv_from(&mut b))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&b[..n], b"SIP/2.0 200 OK\r\n\r\n");
        let mut s = TcpStream::connect(addrs[1].addr).await.unwrap();
        s.write_all(OPTIONS.as_bytes()).await.unwrap();
        assert!(matches!(next(&mut rx).await, Some(Inbound::Message { .. })));
    }
}
