//! The media engine: the sockets, pacing and receiving of the daemon's media sessions.
//!
//! The daemon's core decides what a call hears and hands the engine
//! [`switchboard_media::session::Command`]s; the engine binds each session's port pair,
//! sends its packets on time with a [`Player`], reads what comes back with an
//! [`rtp::Receiver`] (RTP-bleed safe latching) and hands [`Event`]s back on a tokio channel.
//! Two sessions may be bridged: each packet one accepts is re-packetised at once by a
//! [`Relay`] as a packet of the other's stream and sent to the other's far end, from the
//! receive task that read it (no queue, no timer). The contract (which command is answered
//! by which event) is the doc comment of `switchboard_media::session`.
//!
//! # Thread model
//!
//! One thread of its own (`sb-media`) runs a current-thread tokio runtime; every session
//! lives on it. The daemon's main runtime (signalling) and the media thread share nothing
//! but two channels: a burst of SIP never delays a packet, and a flood at a media port never
//! delays SIP. On the media thread:
//!
//! - one loop task owns the timer heap: each session has at most one live entry, the
//!   earliest of its next packet ([`Player::poll_timeout`]), its next RTCP sender report and
//!   its RTP timeout. When the heap's first entry is due the loop services every session
//!   whose entry is due — one packet each at most (the player never bursts) — so the timer
//!   wakes the thread about once a millisecond however many sessions there are, not once
//!   per packet, and never with one tokio interval per session.
//! - each session has two receive tasks (RTP, RTCP) that read their socket and judge each
//!   datagram at once; a task yields after [`DATAGRAMS_PER_TURN`] datagrams so that a flood
//!   at one port takes its turn with the others (bounded work per wake-up).
//! - sends never wait: a datagram the kernel has no room for is dropped and counted, the
//!   player's schedule goes on.
//!
//! On a loaded machine the scheduler may wake the thread late; [`MediaConfig::realtime_priority`]
//! puts it under `SCHED_FIFO` so that it runs as soon as its timer fires.
//!
//! The figures behind this choice (1,000 streams on a 2-core machine) are in
//! `docs/architecture.md` ("The media engine") and come from `bench/media-streams.sh`.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use switchboard_media::dtmf;
use switchboard_media::player::{Player, PlayerConfig};
use switchboard_media::recorder::{Ended, Recorder, RecorderConfig};
use switchboard_media::relay::{self, Relay};
use switchboard_media::rtcp;
use switchboard_media::rtp;
use switchboard_media::session::{Command, Counters, Event, Open, SessionId};
use switchboard_sip::entropy::Entropy;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;

/// Datagrams a receive task reads before it lets the other tasks run.
pub const DATAGRAMS_PER_TURN: usize = 32;

/// The largest datagram read: RTP of G.711 at 20 ms is 172 octets; anything longer than
/// this is cut short by the kernel, and then refused as malformed or for its payload type.
const MAX_DATAGRAM: usize = 1500;

/// The name of the media thread (as `ps -L` and `/proc/<pid>/task/*/comm` show it).
pub const THREAD_NAME: &str = "sb-media";

/// How the engine runs: where it binds, which ports, how many sessions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaConfig {
    /// The local address every session's sockets are bound to (`0.0.0.0` for every
    /// interface). What the SDP advertises is the core's business, not the engine's.
    pub bind: IpAddr,
    /// The first port of the range; the first pair starts at the first even port from it.
    pub first_port: u16,
    /// The last port of the range (included): a pair's odd port must not pass it.
    pub last_port: u16,
    /// Sessions open at once, at most: an open beyond gets [`Event::Failed`].
    pub max_sessions: usize,
    /// How often a session that sends reports on it over RTCP (a sender report).
    pub rtcp_interval: Duration,
    /// How long after the open another source may be latched onto (symmetric RTP; see
    /// [`rtp::ReceiveConfig::learning`]).
    pub learning: Duration,
    /// The CNAME of our RTCP reports.
    pub cname: String,
    /// Run the media thread under the real-time policy `SCHED_FIFO` at this priority (1 to
    /// 99), so that other busy threads of the machine (the daemon's signalling at full load
    /// among them) never delay a packet: a thread of that policy runs as soon as it wakes.
    /// It needs `CAP_SYS_NICE` (or `LimitRTPRIO=` under systemd); without it the engine
    /// logs a warning and runs at the normal policy. The engine is one thread and does
    /// bounded work per wake-up, so it cannot take more than one core, and the kernel's
    /// real-time throttling (`sched_rt_runtime_us`) leaves the rest to others. `None`:
    /// the normal policy.
    pub realtime_priority: Option<u8>,
    /// The seed of the streams' SSRCs, first sequence numbers and timestamps; `None`: from
    /// the operating system (a test or a replay brings its own).
    pub seed: Option<[u8; 32]>,
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            bind: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            first_port: 20_000,
            last_port: 29_999,
            max_sessions: 1_000,
            rtcp_interval: Duration::from_secs(5),
            learning: Duration::from_secs(5),
            cname: "switchboard".to_owned(),
            realtime_priority: None,
            seed: None,
        }
    }
}

impl MediaConfig {
    /// The even RTP ports of the range whose odd RTCP port is in it too.
    fn pairs(&self) -> impl Iterator<Item = u16> + Clone {
        let first = self.first_port.saturating_add(self.first_port % 2);
        let last = self.last_port;
        (first..last).step_by(2)
    }
}

/// A running media engine: give it commands; its events come on the channel
/// [`MediaEngine::start`] returned. Dropping it (and every sender taken with
/// [`MediaEngine::commands`]) ends the engine: every session's sockets closed, its thread
/// gone shortly after; [`MediaEngine::shutdown`] also waits for the thread.
#[derive(Debug)]
pub struct MediaEngine {
    commands: mpsc::UnboundedSender<Command>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MediaEngine {
    /// Starts the engine on a thread of its own. Its events come on the returned channel,
    /// which is unbounded so that the engine never waits for the core: what it carries is
    /// bounded by the sessions open (a few events each) and by the key presses the sessions'
    /// latched sources send. Fails when the range holds no port pair or the thread cannot
    /// be made.
    pub fn start(config: MediaConfig) -> io::Result<(MediaEngine, mpsc::UnboundedReceiver<Event>)> {
        if config.pairs().next().is_none() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "the media port range {}-{} holds no even/odd port pair",
                    config.first_port, config.last_port
                ),
            ));
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (event_tx, events) = mpsc::unbounded_channel();
        let priority = config.realtime_priority;
        let thread = std::thread::Builder::new()
            .name(THREAD_NAME.to_owned())
            .spawn(move || {
                if let Some(priority) = priority {
                    match set_realtime(priority) {
                        Ok(()) => tracing::info!(
                            "media: the media thread runs under SCHED_FIFO at priority {priority}"
                        ),
                        Err(e) => tracing::warn!(
                            "media: real-time priority {priority} refused ({e}); the media \
                             thread runs at the normal policy (allow it with CAP_SYS_NICE or \
                             an RLIMIT_RTPRIO of at least {priority}, systemd's LimitRTPRIO=)"
                        ),
                    }
                }
                let local = tokio::task::LocalSet::new();
                local.block_on(&runtime, run(config, command_rx, event_tx));
            })?;
        Ok((
            MediaEngine {
                commands,
                thread: Some(thread),
            },
            events,
        ))
    }

    /// Hands the engine a command; never waits. False when the engine has ended.
    pub fn command(&self, command: Command) -> bool {
        self.commands.send(command).is_ok()
    }

    /// A sender of commands that can be kept apart from the engine (the daemon's loop).
    pub fn commands(&self) -> mpsc::UnboundedSender<Command> {
        self.commands.clone()
    }

    /// Ends the engine (every session's sockets closed, no more events) and waits for its
    /// thread. Other senders from [`MediaEngine::commands`] keep it running until dropped.
    pub fn shutdown(mut self) {
        let thread = self.thread.take();
        drop(self);
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

/// One open session, as the engine keeps it.
struct Session {
    open: Open,
    rtp: Rc<UdpSocket>,
    rtcp: Rc<UdpSocket>,
    port: u16,
    player: Player,
    /// Audio octets a packet carries.
    samples: u64,
    /// Octets queued since the last stop, and octets played of them.
    pushed: u64,
    played: u64,
    /// Where each play not yet answered ends, in octets pushed.
    plays: VecDeque<u64>,
    receiver: rtp::Receiver,
    keys: dtmf::Receiver,
    /// The recording in progress ([`Command::Record`]).
    recorder: Option<Recorder>,
    /// The bridge the session is in ([`Command::Bridge`]).
    bridge: Option<Bridge>,
    /// Since when silence counts while nothing has been received: the open, or the last
    /// [`Command::Update`] (which learns the source again).
    counting_from: Instant,
    /// An [`Event::Timeout`] was given and nothing has been received since.
    timed_out: bool,
    next_report: Instant,
    /// Where RTCP goes: the address RTCP came from (from the source's IP), else the RTP
    /// destination's next port.
    rtcp_from: Option<SocketAddr>,
    /// The instant of this session's live entry in the timer heap.
    scheduled: Option<Instant>,
    sent: u64,
    /// RTCP datagrams received from the source's IP and read.
    rtcp_received: u64,
    /// Received RTCP datagrams refused (malformed, or from elsewhere).
    rtcp_dropped: u64,
    /// Datagrams the kernel had no room for, or could not send.
    send_failures: u64,
    tasks: Vec<JoinHandle<()>>,
}

/// A session's side of a bridge: the other session, and the relay that turns the packets
/// the other's far end sends into packets of this session's stream.
struct Bridge {
    peer: SessionId,
    relay: Relay,
}

impl Session {
    /// Stops playing at once: what is queued dropped, no [`Event::Played`] for it.
    fn stop(&mut self) {
        self.player.clear();
        self.plays.clear();
        self.played = self.pushed;
    }

    /// What the relay needs of this session's stream.
    fn stream(&self) -> relay::Stream {
        relay::Stream {
            law: self.open.law,
            payload_type: self.open.payload_type,
            telephone_event: self.open.telephone_event,
        }
    }

    /// Where RTP goes: the latched source, else the SDP's address; nowhere when the
    /// session does not send.
    fn destination(&self) -> Option<SocketAddr> {
        if self.open.send {
            self.receiver.remote()
        } else {
            None
        }
    }

    /// When an RTP timeout would be due, unless one was given already.
    fn timeout_at(&self) -> Option<Instant> {
        if self.timed_out {
            return None;
        }
        let since = self.receiver.last_accepted().unwrap_or(self.counting_from);
        Some(since + self.open.rtp_timeout)
    }

    /// The session's next deadline.
    fn next_deadline(&self) -> Instant {
        let mut next = self.next_report;
        for at in [self.player.poll_timeout(), self.timeout_at()]
            .into_iter()
            .flatten()
        {
            next = next.min(at);
        }
        next
    }

    fn counters(&self) -> Counters {
        let received = self.receiver.counters();
        Counters {
            packets_sent: self.sent,
            packets_received: received.accepted,
            packets_dropped: received.dropped() + self.rtcp_dropped,
        }
    }
}

/// Everything the media thread's tasks share.
struct Engine {
    config: MediaConfig,
    sessions: HashMap<SessionId, Session>,
    /// RTP ports of open sessions (each with the next port for RTCP).
    in_use: HashSet<u16>,
    /// Where the search for a free pair starts: after the last pair taken, so that a
    /// freed pair is not reused at once (late packets of the old call).
    cursor: u16,
    timers: BinaryHeap<Reverse<(Instant, SessionId)>>,
    entropy: Entropy,
    events: mpsc::UnboundedSender<Event>,
    /// Wakes the loop when a receive task put an entry before the heap's first.
    wake: Rc<Notify>,
}

type Shared = Rc<RefCell<Engine>>;

impl Engine {
    fn emit(&self, event: Event) {
        // The core has gone (shutting down): nobody to tell.
        let _ = self.events.send(event);
    }

    /// Puts a session's entry in the heap at `at`, unless it has an earlier one; true when
    /// it is the heap's first (the loop must wake to it).
    fn schedule(&mut self, id: SessionId, at: Instant) -> bool {
        let Some(session) = self.sessions.get_mut(&id) else {
            return false;
        };
        if session.scheduled.is_some_and(|s| s <= at) {
            return false;
        }
        session.scheduled = Some(at);
        let first = self.timers.peek().is_none_or(|Reverse((t, _))| at < *t);
        self.timers.push(Reverse((at, id)));
        first
    }

    fn next_timer(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((t, _))| *t)
    }

    /// Services every session whose entry is due at `now`.
    fn fire(&mut self, now: Instant) {
        while let Some(&Reverse((at, id))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(session) = self.sessions.get_mut(&id) else {
                continue; // closed
            };
            if session.scheduled != Some(at) {
                continue; // replaced by an earlier entry
            }
            session.scheduled = None;
            self.service(id, now);
        }
    }

    /// Sends what a session owes at `now` (a packet, a report, a timeout), then puts its
    /// next deadline in the heap.
    fn service(&mut self, id: SessionId, now: Instant) {
        let Some(session) = self.sessions.get_mut(&id) else {
            return;
        };
        let mut events = Vec::new();
        if let Some(packet) = session.player.poll_transmit(now) {
            session.played = (session.played + session.samples).min(session.pushed);
            while session
                .plays
                .front()
                .is_some_and(|&end| end <= session.played)
            {
                session.plays.pop_front();
                events.push(Event::Played { id });
            }
            if let Some(to) = session.destination() {
                match session.rtp.try_send_to(&packet, to) {
                    Ok(_) => session.sent += 1,
                    Err(_) => session.send_failures += 1,
                }
            }
        }
        if now >= session.next_report {
            session.next_report = now + self.config.rtcp_interval;
            let sender = session.player.sender();
            let to = session
                .rtcp_from
                .or_else(|| session.destination().map(rtcp_next_port));
            if let (Some(to), true, true) = (to, sender.packets_sent() > 0, session.open.send) {
                let since_epoch = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default();
                let report = rtcp::SenderReport {
                    ssrc: sender.ssrc(),
                    ntp: rtcp::ntp_timestamp(since_epoch),
                    rtp_timestamp: session.player.rtp_timestamp_at(now),
                    packets: sender.packets_sent(),
                    octets: sender.octets_sent(),
                };
                if session
                    .rtcp
                    .try_send_to(&report.build(&self.config.cname), to)
                    .is_err()
                {
                    session.send_failures += 1;
                }
            }
        }
        if session.timeout_at().is_some_and(|at| now >= at) {
            session.timed_out = true;
            events.push(Event::Timeout { id });
        }
        let next = session.next_deadline();
        for event in events {
            self.emit(event);
        }
        self.schedule(id, next);
    }

    fn command(&mut self, shared: &Shared, command: Command, now: Instant) {
        match command {
            Command::Open(open) => self.open(shared, open, now),
            Command::Play { id, clips } => {
                let Some(session) = self.sessions.get_mut(&id) else {
                    return;
                };
                if let Some(bridge) = &session.bridge {
                    tracing::warn!(
                        id = id.0,
                        peer = bridge.peer.0,
                        "media: a play for a bridged session refused (answered as played)"
                    );
                    self.emit(Event::Played { id });
                    return;
                }
                for clip in clips {
                    session.pushed += clip.len() as u64;
                    session.player.push(clip);
                }
                if session.pushed <= session.played {
                    // Nothing to play (no clip, or only empty ones): played at once.
                    self.emit(Event::Played { id });
                    return;
                }
                session.plays.push_back(session.pushed);
                if let Some(at) = session.player.poll_timeout() {
                    self.schedule(id, at);
                }
            }
            Command::Stop { id } => {
                if let Some(session) = self.sessions.get_mut(&id) {
                    session.stop();
                }
            }
            Command::Update {
                id,
                remote,
                send,
                rtp_timeout,
            } => {
                let learning = self.config.learning;
                if let Some(session) = self.sessions.get_mut(&id) {
                    session.open.remote = remote;
                    session.open.send = send;
                    session.open.rtp_timeout = rtp_timeout;
                    let config = receive_config(&session.open, learning);
                    session.receiver.renegotiated(config, now);
                    // Nothing received since the update yet: silence counts from it.
                    session.counting_from = now;
                    session.timed_out = false;
                    let next = session.next_deadline();
                    self.schedule(id, next);
                }
            }
            Command::Record { id, max, silence } => {
                if let Some(session) = self.sessions.get_mut(&id) {
                    session.recorder = Some(Recorder::new(
                        RecorderConfig {
                            law: session.open.law,
                            max,
                            silence,
                        },
                        now,
                    ));
                }
            }
            Command::StopRecording { id } => self.end_recording(id, Ended::Stopped),
            Command::Bridge { a, b } => self.bridge(a, b),
            Command::Unbridge { id } => self.unbridge(id),
            Command::Close { id } => {
                // A recording in progress is whole as it is: handed over first.
                self.end_recording(id, Ended::Closed);
                self.unbridge(id);
                let Some(session) = self.sessions.remove(&id) else {
                    return;
                };
                self.in_use.remove(&session.port);
                let received = session.receiver.counters();
                tracing::debug!(
                    id = id.0,
                    port = session.port,
                    sent = session.sent,
                    send_failures = session.send_failures,
                    accepted = received.accepted,
                    malformed = received.malformed,
                    wrong_source = received.wrong_source,
                    wrong_ssrc = received.wrong_ssrc,
                    wrong_payload_type = received.wrong_payload_type,
                    duplicate = received.duplicate,
                    out_of_sequence = received.out_of_sequence,
                    rtcp_received = session.rtcp_received,
                    rtcp_dropped = session.rtcp_dropped,
                    "media session closed"
                );
                for task in &session.tasks {
                    task.abort();
                }
                let events = self.events.clone();
                // Closed once the receive tasks are gone, and with them their hold on the
                // sockets: the ports can be bound again when the core hears of it.
                tokio::task::spawn_local(async move {
                    let counters = session.counters();
                    let Session {
                        tasks, rtp, rtcp, ..
                    } = session;
                    for task in tasks {
                        let _ = task.await;
                    }
                    drop((rtp, rtcp));
                    let _ = events.send(Event::Closed { id, counters });
                });
            }
        }
    }

    fn open(&mut self, shared: &Shared, open: Open, now: Instant) {
        let id = open.id;
        if self.sessions.contains_key(&id) {
            tracing::warn!(
                id = id.0,
                "media: an open for a session already open, ignored"
            );
            return;
        }
        if self.sessions.len() >= self.config.max_sessions {
            let why = format!(
                "too many media sessions ({} open)",
                self.config.max_sessions
            );
            self.emit(Event::Failed { id, why });
            return;
        }
        let Some((port, rtp_socket, rtcp_socket)) = self.bind_pair() else {
            let why = format!(
                "no free media port pair in {}-{}",
                self.config.first_port, self.config.last_port
            );
            self.emit(Event::Failed { id, why });
            return;
        };
        let (rtp_socket, rtcp_socket) = match (
            UdpSocket::from_std(rtp_socket),
            UdpSocket::from_std(rtcp_socket),
        ) {
            (Ok(a), Ok(b)) => (Rc::new(a), Rc::new(b)),
            (Err(e), _) | (_, Err(e)) => {
                let why = format!("media port {port}: {e}");
                self.emit(Event::Failed { id, why });
                return;
            }
        };
        let player = Player::new(
            PlayerConfig {
                law: open.law,
                payload_type: open.payload_type,
                ptime_ms: open.ptime_ms,
                ssrc: self.entropy.u64() as u32,
                first_sequence: self.entropy.u64() as u16,
                first_timestamp: self.entropy.u64() as u32,
            },
            now,
        );
        let receiver = rtp::Receiver::new(receive_config(&open, self.config.learning), now);
        let tasks = vec![
            tokio::task::spawn_local(receive_rtp(shared.clone(), id, rtp_socket.clone())),
            tokio::task::spawn_local(receive_rtcp(shared.clone(), id, rtcp_socket.clone())),
        ];
        let samples = u64::from(open.ptime_ms.max(1)) * 8;
        let session = Session {
            open,
            rtp: rtp_socket,
            rtcp: rtcp_socket,
            port,
            player,
            samples,
            pushed: 0,
            played: 0,
            plays: VecDeque::new(),
            receiver,
            keys: dtmf::Receiver::new(),
            recorder: None,
            bridge: None,
            counting_from: now,
            timed_out: false,
            next_report: now + self.config.rtcp_interval,
            rtcp_from: None,
            scheduled: None,
            sent: 0,
            rtcp_received: 0,
            rtcp_dropped: 0,
            send_failures: 0,
            tasks,
        };
        let next = session.next_deadline();
        self.sessions.insert(id, session);
        self.in_use.insert(port);
        self.schedule(id, next);
        self.emit(Event::Opened { id, port });
    }

    /// Bridges sessions `a` and `b` (see [`Command::Bridge`]): each leaves the bridge it was
    /// in and stops playing; then each relays the other's packets.
    fn bridge(&mut self, a: SessionId, b: SessionId) {
        if a == b || !self.sessions.contains_key(&a) || !self.sessions.contains_key(&b) {
            tracing::warn!(
                a = a.0,
                b = b.0,
                "media: a bridge of a session with itself or with one not open, ignored"
            );
            return;
        }
        self.unbridge(a);
        self.unbridge(b);
        let (Some(stream_a), Some(stream_b)) = (
            self.sessions.get(&a).map(Session::stream),
            self.sessions.get(&b).map(Session::stream),
        ) else {
            return;
        };
        for (id, peer, relay) in [
            (a, b, Relay::new(stream_b, stream_a)),
            (b, a, Relay::new(stream_a, stream_b)),
        ] {
            if let Some(session) = self.sessions.get_mut(&id) {
                session.stop();
                session.bridge = Some(Bridge { peer, relay });
            }
        }
        tracing::debug!(a = a.0, b = b.0, "media sessions bridged");
    }

    /// Ends the bridge session `id` is in, on both sides; nothing when it is in none.
    fn unbridge(&mut self, id: SessionId) {
        let Some(bridge) = self
            .sessions
            .get_mut(&id)
            .and_then(|session| session.bridge.take())
        else {
            return;
        };
        if let Some(peer) = self.sessions.get_mut(&bridge.peer) {
            if peer.bridge.as_ref().is_some_and(|b| b.peer == id) {
                peer.bridge = None;
            }
        }
        tracing::debug!(a = id.0, b = bridge.peer.0, "media sessions unbridged");
    }

    /// Sends a packet accepted from the far end of `into`'s peer on to `into`'s far end, as
    /// a packet of `into`'s stream; nothing when `into` does not send (hold, no address) or
    /// the packet is not one to relay.
    fn relay(&mut self, into: SessionId, packet: &rtp::Packet<'_>, now: Instant) {
        let Some(session) = self.sessions.get_mut(&into) else {
            return;
        };
        let Some(to) = session.destination() else {
            return;
        };
        let Session {
            bridge: Some(bridge),
            player,
            rtp,
            sent,
            send_failures,
            ..
        } = session
        else {
            return;
        };
        let Some(datagram) = bridge.relay.relay(packet, player, now) else {
            return;
        };
        match rtp.try_send_to(&datagram, to) {
            Ok(_) => *sent += 1,
            Err(_) => *send_failures += 1,
        }
    }

    /// Ends session `id`'s recording, if it has one, for `ended`: [`Event::Recorded`].
    fn end_recording(&mut self, id: SessionId, ended: Ended) {
        let Some(recorder) = self
            .sessions
            .get_mut(&id)
            .and_then(|session| session.recorder.take())
        else {
            return;
        };
        let recording = recorder.finish(ended);
        self.emit(Event::Recorded { id, recording });
    }

    /// Binds the first free pair from the cursor on, going round the range once: an even
    /// port for RTP and the next for RTCP. Pairs another program holds are skipped.
    fn bind_pair(&mut self) -> Option<(u16, std::net::UdpSocket, std::net::UdpSocket)> {
        let pairs = self.config.pairs();
        let start = pairs.clone().position(|p| p >= self.cursor).unwrap_or(0);
        let count = pairs.clone().count();
        for port in pairs
            .clone()
            .skip(start)
            .chain(pairs.take(start))
            .take(count)
        {
            if self.in_use.contains(&port) {
                continue;
            }
            let Ok(rtp) = bind(self.config.bind, port) else {
                continue;
            };
            let Ok(rtcp) = bind(self.config.bind, port + 1) else {
                continue;
            };
            self.cursor = port.saturating_add(2);
            return Some((port, rtp, rtcp));
        }
        None
    }
}

/// What a session's receiver accepts: the negotiated codec and telephone-event payload
/// types, from the stream's far end (latched within `learning` of the open or update).
fn receive_config(open: &Open, learning: Duration) -> rtp::ReceiveConfig {
    let mut payload_types = vec![open.payload_type];
    payload_types.extend(open.telephone_event);
    rtp::ReceiveConfig {
        payload_types,
        remote: open.remote,
        signalling: open.signalling,
        learning,
    }
}

/// Puts the calling thread under `SCHED_FIFO` at `priority`.
#[cfg(target_os = "linux")]
fn set_realtime(priority: u8) -> io::Result<()> {
    let param = libc::sched_param {
        sched_priority: libc::c_int::from(priority.clamp(1, 99)),
    };
    // SAFETY: a pointer to a sched_param that lives through the call; pid 0 is the calling
    // thread.
    let r = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn set_realtime(_priority: u8) -> io::Result<()> {
    Err(io::Error::other(
        "real-time scheduling is set on Linux only",
    ))
}

/// A non-blocking UDP socket bound to `ip`:`port`.
fn bind(ip: IpAddr, port: u16) -> io::Result<std::net::UdpSocket> {
    let socket = std::net::UdpSocket::bind(SocketAddr::new(ip, port))?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// RTCP's default address beside an RTP address: the next port (RFC 3550 §11).
fn rtcp_next_port(rtp: SocketAddr) -> SocketAddr {
    SocketAddr::new(rtp.ip(), rtp.port().wrapping_add(1))
}

/// The engine's loop: commands in, timers fired, until the command channel closes.
async fn run(
    config: MediaConfig,
    mut commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<Event>,
) {
    let entropy = Entropy::from_seed(config.seed.unwrap_or_else(Entropy::os_seed));
    let wake = Rc::new(Notify::new());
    let cursor = config.first_port;
    let shared: Shared = Rc::new(RefCell::new(Engine {
        config,
        sessions: HashMap::new(),
        in_use: HashSet::new(),
        cursor,
        timers: BinaryHeap::new(),
        entropy,
        events,
        wake: wake.clone(),
    }));
    loop {
        let next = shared.borrow().next_timer();
        let sleep = async {
            match next {
                Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            command = commands.recv() => {
                let Some(command) = command else { break };
                let mut engine = shared.borrow_mut();
                engine.command(&shared, command, Instant::now());
            }
            () = sleep => shared.borrow_mut().fire(Instant::now()),
            () = wake.notified() => {}
        }
    }
    // Every session's tasks end with the runtime; their sockets close with them.
    let mut engine = shared.borrow_mut();
    for session in engine.sessions.values() {
        for task in &session.tasks {
            task.abort();
        }
    }
    engine.sessions.clear();
}

/// Reads a session's RTP socket until the session closes.
async fn receive_rtp(shared: Shared, id: SessionId, socket: Rc<UdpSocket>) {
    let wake = shared.borrow().wake.clone();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut turn = 0;
    loop {
        let Ok((len, from)) = socket.recv_from(&mut buf).await else {
            // An error reported on the socket (an ICMP error of an earlier send): the
            // next datagram is read all the same.
            tokio::task::yield_now().await;
            continue;
        };
        match on_rtp(&shared, id, &buf[..len], from) {
            None => return,
            Some(true) => wake.notify_one(),
            Some(false) => {}
        }
        turn += 1;
        if turn == DATAGRAMS_PER_TURN {
            turn = 0;
            tokio::task::yield_now().await;
        }
    }
}

/// Judges an RTP datagram for session `id`: a key press becomes an [`Event::Digit`], sound
/// after a timeout rearms it, and a bridged session's peer relays it. `None` when the
/// session has closed; `Some(true)` when the loop must wake (the timer heap has a new first
/// entry).
fn on_rtp(shared: &Shared, id: SessionId, data: &[u8], from: SocketAddr) -> Option<bool> {
    let now = Instant::now();
    let mut guard = shared.borrow_mut();
    let engine = &mut *guard;
    let session = engine.sessions.get_mut(&id)?;
    let Ok(packet) = session.receiver.receive(data, from, now) else {
        return Some(false); // dropped and counted by the receiver
    };
    let key = if Some(packet.payload_type) == session.open.telephone_event {
        session.keys.receive(packet.timestamp, packet.payload)
    } else {
        None
    };
    let recorded = match &mut session.recorder {
        Some(recorder) if packet.payload_type == session.open.payload_type => {
            recorder.push(now, packet.timestamp, packet.payload)
        }
        _ => None,
    };
    let peer = session.bridge.as_ref().map(|bridge| bridge.peer);
    let mut wake = false;
    if session.timed_out {
        // Sound again: a later silence is a new timeout.
        session.timed_out = false;
        let at = now + session.open.rtp_timeout;
        wake = engine.schedule(id, at);
    }
    if let Some(key) = key {
        engine.emit(Event::Digit {
            id,
            digit: key.to_char(),
        });
    }
    if let Some(ended) = recorded {
        engine.end_recording(id, ended);
    }
    if let Some(peer) = peer {
        engine.relay(peer, &packet, now);
    }
    Some(wake)
}

/// Reads a session's RTCP socket until the session closes: reports from the source's IP
/// are read and counted (and say where ours go), anything else is dropped and counted.
async fn receive_rtcp(shared: Shared, id: SessionId, socket: Rc<UdpSocket>) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut turn = 0;
    loop {
        let Ok((len, from)) = socket.recv_from(&mut buf).await else {
            tokio::task::yield_now().await;
            continue;
        };
        {
            let mut engine = shared.borrow_mut();
            let Some(session) = engine.sessions.get_mut(&id) else {
                return;
            };
            let source_ip = session.receiver.source().map(|s| s.ip());
            if Some(from.ip()) == source_ip && rtcp::parse(&buf[..len]).is_ok() {
                session.rtcp_received += 1;
                session.rtcp_from = Some(from);
            } else {
                session.rtcp_dropped += 1;
            }
        }
        turn += 1;
        if turn == DATAGRAMS_PER_TURN {
            turn = 0;
            tokio::task::yield_now().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_even_then_odd_within_the_range() {
        let config = |first, last| MediaConfig {
            first_port: first,
            last_port: last,
            ..MediaConfig::default()
        };
        assert_eq!(
            config(20_000, 20_005).pairs().collect::<Vec<_>>(),
            [20_000, 20_002, 20_004]
        );
        assert_eq!(
            config(20_001, 20_006).pairs().collect::<Vec<_>>(),
            [20_002, 20_004]
        );
        assert_eq!(config(20_001, 20_002).pairs().count(), 0);
        assert_eq!(config(20_000, 20_000).pairs().count(), 0);
        assert_eq!(config(65_534, 65_535).pairs().collect::<Vec<_>>(), [65_534]);
        assert!(MediaEngine::start(config(20_001, 20_002)).is_err());
    }
}
