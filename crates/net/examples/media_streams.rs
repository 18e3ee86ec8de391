//! A benchmark of the media engine: N sessions each play a G.711 clip to a socket of their
//! own; a receiver on another thread reads every socket and measures, from the kernel's
//! receive timestamps (`SO_TIMESTAMPNS`, so the receiver's own scheduling does not count),
//! the interval between each stream's packets and the packets lost. The engine thread's CPU
//! time comes from `/proc/self/task/<tid>/stat`. Prints a Markdown table, one row per count.
//!
//! ```text
//! cargo run --release -p switchboard-net --example media_streams -- \
//!     --sessions 100,500,1000 --seconds 10
//! ```
//!
//! Sessions are opened spread over one packet time (calls start at any moment, so their
//! packet schedules are spread too); `--aligned` opens them all at once instead, every
//! stream due in the same millisecond (the worst case for the timer).
//!
//! `--ports FIRST-LAST` sets the engine's port range (20000-29999 by default; a range in
//! the kernel's ephemeral ports keeps clear of test suites that pick ports below it).
//!
//! `--bridged` measures relaying instead of playing: the N sessions are bridged in pairs
//! (N/2 calls whose media the daemon anchors), and a sender thread plays each session's far
//! end, sending a packet every 20 ms from the receiver's socket to the session's port
//! (spread over the packet time); the engine relays each to the pair's other far end, where
//! the receiver measures it as before. Each session thus receives 50 packets a second and
//! sends 50: the engine's work per sent packet is a receive, a re-packetising and a send.
//!
//! A benchmark, not a test: it measures, it asserts nothing.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use switchboard_media::g711::Law;
use switchboard_media::session::{Command, Event, Open, SessionId};
use switchboard_media::{rtcp, rtp};
use switchboard_net::media::{MediaConfig, MediaEngine, THREAD_NAME};
use switchboard_net::pktinfo;
use tokio::io::Interest;
use tokio::net::UdpSocket;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const PTIME: Duration = Duration::from_millis(20);

struct Args {
    sessions: Vec<usize>,
    seconds: u64,
    aligned: bool,
    busy: usize,
    realtime: Option<u8>,
    bridged: bool,
    /// The engine's port range.
    ports: (u16, u16),
}

fn args() -> Args {
    let mut args = Args {
        sessions: vec![100, 500, 1000],
        seconds: 10,
        aligned: false,
        busy: 0,
        realtime: None,
        bridged: false,
        ports: (20_000, 29_999),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--sessions" => {
                args.sessions = it
                    .next()
                    .expect("--sessions N,N,…")
                    .split(',')
                    .map(|n| n.trim().parse().expect("a number of sessions"))
                    .collect();
            }
            "--seconds" => {
                args.seconds = it.next().and_then(|s| s.parse().ok()).expect("--seconds N")
            }
            "--aligned" => args.aligned = true,
            "--bridged" => args.bridged = true,
            "--ports" => {
                let range = it.next().expect("--ports FIRST-LAST");
                let (first, last) = range.split_once('-').expect("--ports FIRST-LAST");
                args.ports = (
                    first.parse().expect("a first port"),
                    last.parse().expect("a last port"),
                );
            }
            "--busy" => args.busy = it.next().and_then(|s| s.parse().ok()).expect("--busy N"),
            "--realtime" => {
                args.realtime = Some(it.next().and_then(|s| s.parse().ok()).expect("--realtime 1-99"))
            }
            other => panic!("unknown argument {other} (--sessions 100,500 --seconds 10 --aligned --bridged --ports 20000-29999 --busy N --realtime P)"),
        }
    }
    args
}

/// What the receiver measured of one count.
#[derive(Default)]
struct Measured {
    received: u64,
    /// Packets whose sequence number was not the previous one's plus one.
    out_of_order: u64,
    /// Intervals between a stream's successive packets, in microseconds.
    intervals: Vec<u32>,
    /// Datagrams the receiving sockets dropped for want of buffer (SO_RXQ_OVFL).
    socket_drops: u64,
    cpu_ticks: u64,
}

#[derive(Default)]
struct Stream {
    last: Option<(SystemTime, u16)>,
    received: u64,
    out_of_order: u64,
    socket_drops: u32,
}

/// The receiver: binds `n` sockets, sends their addresses back (each with a handle to send
/// from it: the far end's packets in `--bridged`), reads them until `stop`.
fn receiver(
    n: usize,
    addresses: std::sync::mpsc::Sender<Vec<(SocketAddr, std::net::UdpSocket)>>,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> Measured {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let intervals = Rc::new(RefCell::new(Vec::with_capacity(n * 600)));
        let mut sockets = Vec::new();
        for _ in 0..n {
            let socket = std::net::UdpSocket::bind((LOCALHOST, 0)).unwrap();
            socket.set_nonblocking(true).unwrap();
            pktinfo::enable_timestamps(&socket).unwrap();
            sockets.push(Rc::new(UdpSocket::from_std(socket).unwrap()));
        }
        let handles = sockets
            .iter()
            .map(|s| {
                let fd = std::os::fd::AsFd::as_fd(&**s).try_clone_to_owned().unwrap();
                (s.local_addr().unwrap(), std::net::UdpSocket::from(fd))
            })
            .collect();
        addresses.send(handles).unwrap();
        let streams: Vec<Rc<RefCell<Stream>>> = (0..n).map(|_| Rc::default()).collect();
        let mut tasks = Vec::new();
        for (socket, stream) in sockets.iter().zip(&streams) {
            let (socket, stream, intervals) = (socket.clone(), stream.clone(), intervals.clone());
            tasks.push(tokio::task::spawn_local(async move {
                let mut buf = [0u8; 2048];
                loop {
                    let Ok(got) = socket
                        .async_io(Interest::READABLE, || pktinfo::recv(&*socket, &mut buf))
                        .await
                    else {
                        continue;
                    };
                    // Sender reports go to the next port: another stream's socket here.
                    if rtcp::is_rtcp(&buf[..got.len]) {
                        continue;
                    }
                    let Some(packet) = rtp::parse(&buf[..got.len]) else {
                        continue;
                    };
                    let at = got.arrived.unwrap_or_else(SystemTime::now);
                    let mut stream = stream.borrow_mut();
                    stream.received += 1;
                    stream.socket_drops = got.dropped.unwrap_or(stream.socket_drops);
                    if let Some((last, sequence)) = stream.last {
                        if packet.sequence != sequence.wrapping_add(1) {
                            stream.out_of_order += 1;
                        }
                        let gap = at.duration_since(last).unwrap_or_default();
                        intervals
                            .borrow_mut()
                            .push(u32::try_from(gap.as_micros()).unwrap_or(u32::MAX));
                    }
                    stream.last = Some((at, packet.sequence));
                }
            }));
        }
        let _ = stop.await;
        for task in tasks {
            task.abort();
        }
        let mut measured = Measured {
            intervals: std::mem::take(&mut *intervals.borrow_mut()),
            cpu_ticks: thread_ticks("/proc/thread-self/stat").unwrap_or(0),
            ..Measured::default()
        };
        for stream in &streams {
            let stream = stream.borrow();
            measured.received += stream.received;
            measured.out_of_order += stream.out_of_order;
            measured.socket_drops += u64::from(stream.socket_drops);
        }
        measured
    })
}

/// utime + stime of a `/proc/…/stat` file, in clock ticks.
fn thread_ticks(path: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(path).ok()?;
    // The fields after the command's closing parenthesis: state is field 3, utime 14.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// The `/proc` stat file of the media thread.
fn engine_stat() -> Option<String> {
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let path = task.ok()?.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if comm.trim() == THREAD_NAME {
            return Some(path.join("stat").to_string_lossy().into_owned());
        }
    }
    None
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf reads a system setting; no memory is passed.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

struct Row {
    sessions: usize,
    expected: u64,
    measured: Measured,
    sent: u64,
    engine_cpu: f64,
    receiver_cpu: f64,
    wall: f64,
    failed: usize,
}

async fn next(events: &mut tokio::sync::mpsc::UnboundedReceiver<Event>, wait: Duration) -> Event {
    tokio::time::timeout(wait, events.recv())
        .await
        .expect("the engine answers in time")
        .expect("the engine running")
}

/// The far ends of `--bridged`: sends `packets` packets from each socket to its session's
/// port, one every 20 ms, the sockets spread over the packet time in 20 groups of a
/// millisecond; returns the sends the kernel refused. With `realtime`, the thread runs under
/// `SCHED_FIFO` at that priority as the engine does, so that its own wake-ups are as
/// punctual as the engine's (else what the receiver measures is mostly this thread's lateness).
fn far_ends(
    peers: Vec<(std::net::UdpSocket, SocketAddr)>,
    packets: u64,
    realtime: Option<u8>,
) -> u64 {
    const GROUPS: usize = 20;
    if let Some(priority) = realtime {
        let param = libc::sched_param {
            sched_priority: libc::c_int::from(priority.clamp(1, 99)),
        };
        // SAFETY: a pointer to a sched_param that lives through the call; pid 0 is the
        // calling thread.
        if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) } != 0 {
            eprintln!("the far ends' thread runs at the normal policy (SCHED_FIFO refused)");
        }
    }
    let payload = [0x55u8; 160];
    let start = Instant::now() + Duration::from_millis(5);
    let mut refused = 0;
    for t in 0..packets {
        for group in 0..GROUPS {
            let due = start + PTIME * t as u32 + Duration::from_millis(group as u64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            for (i, (socket, to)) in peers.iter().enumerate().skip(group).step_by(GROUPS) {
                let data = rtp::build(0, t == 0, t as u16, (t * 160) as u32, i as u32, &payload);
                if socket.send_to(&data, to).is_err() {
                    refused += 1;
                }
            }
        }
    }
    refused
}

async fn one_count(n: usize, args: &Args) -> Row {
    let (seconds, aligned) = (args.seconds, args.aligned);
    let packets = seconds * 50;
    let (engine, mut events) = MediaEngine::start(MediaConfig {
        bind: LOCALHOST,
        first_port: args.ports.0,
        last_port: args.ports.1,
        max_sessions: n,
        realtime_priority: args.realtime,
        ..MediaConfig::default()
    })
    .unwrap();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
    let receiving = std::thread::Builder::new()
        .name("receiver".into())
        .spawn(move || receiver(n, addr_tx, stop_rx))
        .unwrap();
    let (peers, handles): (Vec<SocketAddr>, Vec<std::net::UdpSocket>) =
        addr_rx.recv().unwrap().into_iter().unzip();

    let clip: Arc<[u8]> = (0..packets * 160)
        .map(|i| (i % 200) as u8 + 1)
        .collect::<Vec<_>>()
        .into();
    let step = if aligned {
        Duration::ZERO
    } else {
        PTIME / n as u32
    };
    let mut failed = 0;
    let mut open = Vec::new();
    let mut ports = Vec::new();
    for (i, peer) in peers.iter().enumerate() {
        let id = SessionId(i as u64);
        engine.command(Command::Open(Open {
            id,
            remote: Some(*peer),
            signalling: LOCALHOST,
            law: Law::MuLaw,
            payload_type: 0,
            telephone_event: Some(101),
            ptime_ms: 20,
            send: true,
            rtp_timeout: Duration::from_secs(3600),
        }));
        match next(&mut events, Duration::from_secs(10)).await {
            Event::Opened { id, port } => {
                open.push(id);
                ports.push(port);
            }
            Event::Failed { why, .. } => {
                eprintln!("open {i}: {why}");
                failed += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
        if !step.is_zero() {
            tokio::time::sleep(step).await;
        }
    }
    let stat = engine_stat().expect("the media thread");
    let ticks0 = thread_ticks(&stat).unwrap_or(0);
    let started = Instant::now();
    if args.bridged {
        assert!(failed == 0, "--bridged needs every session open");
        for pair in open.chunks_exact(2) {
            engine.command(Command::Bridge {
                a: pair[0],
                b: pair[1],
            });
        }
        let peers: Vec<_> = handles
            .into_iter()
            .zip(&ports)
            .take(open.len() / 2 * 2)
            .map(|(socket, &port)| (socket, SocketAddr::new(LOCALHOST, port)))
            .collect();
        let realtime = args.realtime;
        let refused = tokio::task::spawn_blocking(move || far_ends(peers, packets, realtime))
            .await
            .unwrap();
        if refused > 0 {
            eprintln!("the far ends' sockets refused {refused} sends");
        }
    } else {
        for &id in &open {
            engine.command(Command::Play {
                id,
                clips: vec![clip.clone()],
            });
        }
        let mut played = 0;
        let deadline = Duration::from_secs(seconds * 3 + 30);
        while played < open.len() {
            if let Event::Played { .. } = next(&mut events, deadline).await {
                played += 1;
            }
        }
    }
    let wall = started.elapsed().as_secs_f64();
    let ticks1 = thread_ticks(&stat).unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = stop_tx.send(());
    let measured = receiving.join().unwrap();
    let mut sent = 0;
    let mut closed: HashMap<SessionId, ()> = HashMap::new();
    for &id in &open {
        engine.command(Command::Close { id });
    }
    while closed.len() < open.len() {
        if let Event::Closed { id, counters } = next(&mut events, Duration::from_secs(10)).await {
            sent += counters.packets_sent;
            closed.insert(id, ());
        }
    }
    engine.shutdown();
    let hz = clock_ticks_per_second();
    // Bridged, an odd session out has no peer and relays nothing.
    let streams = if args.bridged {
        open.len() / 2 * 2
    } else {
        open.len()
    };
    Row {
        sessions: n,
        expected: packets * streams as u64,
        sent,
        engine_cpu: (ticks1 - ticks0) as f64 / hz,
        receiver_cpu: measured.cpu_ticks as f64 / hz,
        measured,
        wall,
        failed,
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

fn main() {
    let args = args();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    // Busy threads: the rest of a loaded daemon (signalling at full load), spinning.
    let spin = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let busy: Vec<_> = (0..args.busy)
        .map(|_| {
            let spin = spin.clone();
            std::thread::spawn(move || {
                let mut x = 0u64;
                while spin.load(std::sync::atomic::Ordering::Relaxed) {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
            })
        })
        .collect();
    let mut rows = Vec::new();
    for &n in &args.sessions {
        eprintln!("{n} sessions, {} s each…", args.seconds);
        rows.push(runtime.block_on(one_count(n, &args)));
    }
    spin.store(false, std::sync::atomic::Ordering::Relaxed);
    for thread in busy {
        let _ = thread.join();
    }
    println!(
        "Media engine: {} s of G.711 (20 ms packets) {} to loopback sockets, sessions opened {}",
        args.seconds,
        if args.bridged {
            "relayed by bridged pairs of sessions (sessions/2 bridges, each session receiving and sending 50 packets/s)"
        } else {
            "clips played"
        },
        if args.aligned {
            "all at once (aligned schedules)"
        } else {
            "spread over 20 ms"
        }
    );
    println!("CPU: {cpu} ({cores} cores)");
    println!(
        "Media thread policy: {}; busy spinning threads beside it: {}",
        args.realtime
            .map_or("normal (SCHED_OTHER)".to_owned(), |p| format!(
                "SCHED_FIFO {p}"
            )),
        args.busy
    );
    println!();
    println!(
        "| sessions | packets expected | received | lost | out of order | interval p50 (ms) | p99 (ms) | max (ms) | within 20 ± 2 ms | engine CPU (% of a core) | CPU per stream (% of a core) | CPU per packet (µs) | receiver CPU (s) |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for row in rows {
        let mut intervals = row.measured.intervals;
        intervals.sort_unstable();
        let within = intervals
            .iter()
            .filter(|&&us| (18_000..=22_000).contains(&us))
            .count();
        let within = if intervals.is_empty() {
            f64::NAN
        } else {
            within as f64 * 100.0 / intervals.len() as f64
        };
        let cpu_share = row.engine_cpu / row.wall * 100.0;
        println!(
            "| {} | {} | {} | {} | {} | {:.2} | {:.2} | {:.2} | {:.3} % | {:.1} | {:.4} | {:.1} | {:.1} |",
            row.sessions,
            row.expected,
            row.measured.received,
            row.expected.saturating_sub(row.measured.received),
            row.measured.out_of_order,
            percentile(&intervals, 0.50),
            percentile(&intervals, 0.99),
            intervals.last().map_or(f64::NAN, |&us| f64::from(us) / 1000.0),
            within,
            cpu_share,
            cpu_share / row.sessions as f64,
            row.engine_cpu * 1e6 / row.sent.max(1) as f64,
            row.receiver_cpu,
        );
        if row.failed > 0 || row.measured.socket_drops > 0 || row.sent != row.expected {
            println!(
                "\n{} sessions: {} opens failed, {} packets sent of {}, {} dropped by the receiving sockets",
                row.sessions, row.failed, row.sent, row.expected, row.measured.socket_drops
            );
        }
    }
}
