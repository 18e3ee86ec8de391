//! The media engine over real loopback sockets: opening, pacing, receiving keys, refusing
//! strangers, timeouts, stopping, closing, and the limits on ports and sessions.
//!
//! Every test has a port range of its own, below the kernel's ephemeral ports (where the
//! test sockets bound to port 0 land). Every wait is bounded. Timing is checked only
//! loosely: counts, order and bytes are exact, intervals are not (a loaded machine).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchboard_media::dtmf::{digit_packets, Digit};
use switchboard_media::g711::Law;
use switchboard_media::rtp;
use switchboard_media::session::{Clip, Command, Event, Open, SessionId};
use switchboard_net::media::{MediaConfig, MediaEngine};
use tokio::net::UdpSocket;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::timeout;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const WAIT: Duration = Duration::from_secs(5);

fn engine(first_port: u16, last_port: u16, max_sessions: usize) -> (MediaEngine, Events) {
    let (engine, events) = MediaEngine::start(MediaConfig {
        bind: LOCALHOST,
        first_port,
        last_port,
        max_sessions,
        rtcp_interval: Duration::from_millis(300),
        learning: Duration::from_secs(5),
        cname: "test@switchboard".into(),
        realtime_priority: None,
        seed: Some([7; 32]),
    })
    .unwrap();
    (engine, Events(events))
}

struct Events(UnboundedReceiver<Event>);

impl Events {
    async fn next(&mut self) -> Event {
        timeout(WAIT, self.0.recv())
            .await
            .expect("an event in time")
            .expect("the engine running")
    }

    /// Asserts that no event comes within `wait`.
    async fn none_within(&mut self, wait: Duration) {
        if let Ok(event) = timeout(wait, self.0.recv()).await {
            panic!("unexpected event {event:?}");
        }
    }
}

fn open(id: u64, remote: Option<SocketAddr>) -> Open {
    Open {
        id: SessionId(id),
        remote,
        signalling: LOCALHOST,
        law: Law::ALaw,
        payload_type: 8,
        telephone_event: Some(101),
        ptime_ms: 20,
        send: true,
        rtp_timeout: Duration::from_secs(30),
    }
}

async fn opened(engine: &MediaEngine, events: &mut Events, open: Open) -> u16 {
    let id = open.id;
    assert!(engine.command(Command::Open(open)));
    match events.next().await {
        Event::Opened { id: got, port } if got == id => port,
        other => panic!("expected Opened, got {other:?}"),
    }
}

/// A clip whose every octet says where it is (and is never A-law silence).
fn clip(len: usize) -> Clip {
    (0..len)
        .map(|i| (i % 200) as u8 + 1)
        .collect::<Vec<_>>()
        .into()
}

async fn socket(ip: IpAddr) -> UdpSocket {
    UdpSocket::bind(SocketAddr::new(ip, 0)).await.unwrap()
}

/// The next datagram on `socket`, in time.
async fn datagram(socket: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    let mut buf = vec![0; 2048];
    let (len, from) = timeout(WAIT, socket.recv_from(&mut buf))
        .await
        .expect("a datagram in time")
        .unwrap();
    buf.truncate(len);
    (buf, from)
}

/// The next RTP datagram on `socket` (RTCP skipped).
async fn rtp_packet(socket: &UdpSocket) -> (Vec<u8>, Instant) {
    loop {
        let (data, _) = datagram(socket).await;
        if !switchboard_media::rtcp::is_rtcp(&data) {
            return (data, Instant::now());
        }
    }
}

async fn closed(
    engine: &MediaEngine,
    events: &mut Events,
    id: u64,
) -> switchboard_media::session::Counters {
    assert!(engine.command(Command::Close { id: SessionId(id) }));
    loop {
        match events.next().await {
            Event::Closed { id: got, counters } if got == SessionId(id) => return counters,
            Event::Timeout { .. } | Event::Played { .. } => {}
            other => panic!("expected Closed, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn plays_a_clip_paced_in_order_and_closes() {
    let (engine, mut events) = engine(23_000, 23_019, 10);
    let peer = socket(LOCALHOST).await;
    let port = opened(
        &engine,
        &mut events,
        open(1, Some(peer.local_addr().unwrap())),
    )
    .await;
    assert_eq!(port % 2, 0, "an even RTP port");
    assert!((23_000..=23_018).contains(&port), "{port} in the range");

    const PACKETS: usize = 25;
    let audio = clip(160 * PACKETS);
    assert!(engine.command(Command::Play {
        id: SessionId(1),
        clips: vec![
            audio.slice_clone(0, 1000),
            audio.slice_clone(1000, 160 * PACKETS)
        ],
    }));
    let mut arrivals = Vec::new();
    let mut sequence = None;
    for n in 0..PACKETS {
        let (data, at) = rtp_packet(&peer).await;
        let packet = rtp::parse(&data).expect("an RTP packet");
        assert_eq!(packet.payload_type, 8);
        assert_eq!(
            packet.payload,
            &audio[n * 160..(n + 1) * 160],
            "packet {n}'s audio"
        );
        // The marker on the first (and on any packet after a stall of the machine: not checked).
        assert!(packet.marker || n > 0, "the marker on the first");
        if let Some(previous) = sequence {
            assert_eq!(
                packet.sequence,
                u16::wrapping_add(previous, 1),
                "in sequence"
            );
        }
        sequence = Some(packet.sequence);
        arrivals.push(at);
    }
    assert_eq!(events.next().await, Event::Played { id: SessionId(1) });
    // 24 intervals of 20 ms: loosely, not bursts and not stalls.
    let span = arrivals[PACKETS - 1] - arrivals[0];
    assert!(
        span >= Duration::from_millis(300) && span <= Duration::from_secs(3),
        "{span:?} for 24 packet times"
    );
    // Nothing after the clip (RTCP aside).
    let extra = timeout(Duration::from_millis(200), rtp_packet(&peer)).await;
    assert!(extra.is_err(), "no packet after the clip");

    let counters = closed(&engine, &mut events, 1).await;
    assert_eq!(counters.packets_sent, PACKETS as u64);
    // The ports are free again.
    std::net::UdpSocket::bind((LOCALHOST, port)).expect("the RTP port free after Closed");
    std::net::UdpSocket::bind((LOCALHOST, port + 1)).expect("the RTCP port free after Closed");
    engine.shutdown();
}

/// Part of a clip, as a clip of its own.
trait SliceClone {
    fn slice_clone(&self, start: usize, end: usize) -> Clip;
}

impl SliceClone for Clip {
    fn slice_clone(&self, start: usize, end: usize) -> Clip {
        Arc::from(&self[start..end])
    }
}

#[tokio::test]
async fn sends_rtcp_sender_reports_to_the_next_port() {
    let (engine, mut events) = engine(23_020, 23_039, 10);
    // A peer with an even port and its RTCP port beside it.
    let (peer, peer_rtcp) = loop {
        let peer = socket(LOCALHOST).await;
        let port = peer.local_addr().unwrap().port();
        if port.is_multiple_of(2) {
            if let Ok(rtcp) = UdpSocket::bind((LOCALHOST, port + 1)).await {
                break (peer, rtcp);
            }
        }
    };
    opened(
        &engine,
        &mut events,
        open(2, Some(peer.local_addr().unwrap())),
    )
    .await;
    engine.command(Command::Play {
        id: SessionId(2),
        clips: vec![clip(160 * 40)],
    });
    let (report, _) = datagram(&peer_rtcp).await;
    let read = switchboard_media::rtcp::parse(&report).expect("an RTCP compound packet");
    let sender = read.sender.expect("a sender report");
    assert!(sender.packets > 0);
    closed(&engine, &mut events, 2).await;
}

/// Sends the packets of `digit` to `to` from `from`, numbered from `sequence`, with event
/// timestamp `timestamp`.
async fn send_digit(
    from: &UdpSocket,
    to: SocketAddr,
    digit: char,
    sequence: &mut u16,
    timestamp: u32,
) {
    for packet in digit_packets(Digit::from_char(digit).unwrap(), 800, 160) {
        let data = rtp::build(
            101,
            packet.marker,
            *sequence,
            timestamp,
            0x5EED,
            &packet.payload,
        );
        from.send_to(&data, to).await.unwrap();
        *sequence = sequence.wrapping_add(1);
    }
}

#[tokio::test]
async fn one_digit_per_key_press() {
    let (engine, mut events) = engine(23_040, 23_059, 10);
    let peer = socket(LOCALHOST).await;
    let port = opened(
        &engine,
        &mut events,
        open(3, Some(peer.local_addr().unwrap())),
    )
    .await;
    let to = SocketAddr::new(LOCALHOST, port);
    let mut sequence = 100;
    send_digit(&peer, to, '5', &mut sequence, 8_000).await;
    send_digit(&peer, to, '#', &mut sequence, 16_000).await;
    // The same press of '#' sent again under new sequence numbers: still one key.
    send_digit(&peer, to, '#', &mut sequence, 16_000).await;
    send_digit(&peer, to, '5', &mut sequence, 24_000).await;
    let mut digits = Vec::new();
    for _ in 0..3 {
        match events.next().await {
            Event::Digit { id, digit } => {
                assert_eq!(id, SessionId(3));
                digits.push(digit);
            }
            other => panic!("expected a digit, got {other:?}"),
        }
    }
    assert_eq!(digits, ['5', '#', '5']);
    events.none_within(Duration::from_millis(300)).await;
    let counters = closed(&engine, &mut events, 3).await;
    let per_press = digit_packets(Digit::from_char('5').unwrap(), 800, 160).len() as u64;
    assert_eq!(
        counters.packets_received,
        4 * per_press,
        "every packet of every press accepted"
    );
    engine.shutdown();
}

#[tokio::test]
async fn strangers_and_garbage_are_dropped_and_counted() {
    let (engine, mut events) = engine(23_060, 23_079, 10);
    let peer = socket(LOCALHOST).await;
    let stranger = socket(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))).await;
    let port = opened(
        &engine,
        &mut events,
        open(4, Some(peer.local_addr().unwrap())),
    )
    .await;
    let to = SocketAddr::new(LOCALHOST, port);
    // A stranger's RTP (another address, inside the learning window) and its key presses.
    for n in 0..10u16 {
        let data = rtp::build(8, false, n, u32::from(n) * 160, 0xBAD, &[0xD5; 160]);
        stranger.send_to(&data, to).await.unwrap();
    }
    let mut sequence = 0;
    send_digit(&stranger, to, '1', &mut sequence, 0).await;
    // Garbage from the peer itself.
    for junk in [&b""[..], b"\x00", b"hello, world", &[0xFF; 40]] {
        peer.send_to(junk, to).await.unwrap();
    }
    // Then we still play to the peer, not to the stranger.
    engine.command(Command::Play {
        id: SessionId(4),
        clips: vec![clip(160 * 3)],
    });
    for _ in 0..3 {
        rtp_packet(&peer).await;
    }
    assert_eq!(events.next().await, Event::Played { id: SessionId(4) });
    let mut buf = [0; 64];
    assert!(
        timeout(Duration::from_millis(200), stranger.recv_from(&mut buf))
            .await
            .is_err(),
        "nothing sent to the stranger"
    );
    let counters = closed(&engine, &mut events, 4).await;
    assert_eq!(counters.packets_received, 0);
    let press = digit_packets(Digit::from_char('1').unwrap(), 800, 160).len() as u64;
    assert_eq!(counters.packets_dropped, 10 + press + 4, "{counters:?}");
    engine.shutdown();
}

#[tokio::test]
async fn latches_onto_the_signalling_address_and_plays_there() {
    let (engine, mut events) = engine(23_080, 23_099, 10);
    // The SDP named a port nothing listens on (a NAT): the peer's packets come from another.
    let peer = socket(LOCALHOST).await;
    let nowhere = SocketAddr::new(LOCALHOST, 9);
    let port = opened(&engine, &mut events, open(5, Some(nowhere))).await;
    let to = SocketAddr::new(LOCALHOST, port);
    for n in 0..3u16 {
        let data = rtp::build(8, n == 0, 500 + n, u32::from(n) * 160, 0xCAFE, &[0xD5; 160]);
        peer.send_to(&data, to).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    engine.command(Command::Play {
        id: SessionId(5),
        clips: vec![clip(160 * 2)],
    });
    rtp_packet(&peer).await;
    rtp_packet(&peer).await;
    assert_eq!(events.next().await, Event::Played { id: SessionId(5) });
    let counters = closed(&engine, &mut events, 5).await;
    assert_eq!(
        (counters.packets_received, counters.packets_dropped),
        (3, 0)
    );
    engine.shutdown();
}

#[tokio::test]
async fn timeout_when_nothing_arrives_and_again_after_sound() {
    let (engine, mut events) = engine(23_100, 23_119, 10);
    let peer = socket(LOCALHOST).await;
    let started = Instant::now();
    let port = opened(
        &engine,
        &mut events,
        Open {
            rtp_timeout: Duration::from_millis(300),
            ..open(6, Some(peer.local_addr().unwrap()))
        },
    )
    .await;
    assert_eq!(events.next().await, Event::Timeout { id: SessionId(6) });
    assert!(started.elapsed() >= Duration::from_millis(300));
    // Once only while the silence lasts.
    events.none_within(Duration::from_millis(500)).await;
    // Sound, then silence again: another timeout.
    let data = rtp::build(8, true, 1, 0, 0xCAFE, &[0xD5; 160]);
    peer.send_to(&data, (LOCALHOST, port)).await.unwrap();
    assert_eq!(events.next().await, Event::Timeout { id: SessionId(6) });
    closed(&engine, &mut events, 6).await;
    engine.shutdown();
}

#[tokio::test]
async fn an_update_counts_silence_from_itself_with_its_own_timeout() {
    let (engine, mut events) = engine(23_120, 23_139, 10);
    let peer = socket(LOCALHOST).await;
    let quick = Duration::from_millis(300);
    let port = opened(
        &engine,
        &mut events,
        Open {
            rtp_timeout: quick,
            ..open(7, Some(peer.local_addr().unwrap()))
        },
    )
    .await;
    // The far end talks for longer than the timeout…
    let mut seq = 1u16;
    let until = Instant::now() + Duration::from_millis(600);
    while Instant::now() < until {
        speak(&peer, SocketAddr::new(LOCALHOST, port), &mut seq).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // …then re-describes its stream: the silence counts from the update, not the open.
    let update = |rtp_timeout| Command::Update {
        id: SessionId(7),
        remote: Some(peer.local_addr().unwrap()),
        send: true,
        rtp_timeout,
    };
    let updated = Instant::now();
    assert!(engine.command(update(quick)));
    assert_eq!(events.next().await, Event::Timeout { id: SessionId(7) });
    assert!(updated.elapsed() >= quick);
    // On hold with a longer timeout: nothing for longer than the open's.
    speak(&peer, SocketAddr::new(LOCALHOST, port), &mut seq).await;
    assert!(engine.command(update(Duration::from_secs(2))));
    events.none_within(Duration::from_millis(900)).await;
    // Resumed with the quick one again: a timeout once that silence has passed.
    assert!(engine.command(update(quick)));
    assert_eq!(events.next().await, Event::Timeout { id: SessionId(7) });
    closed(&engine, &mut events, 7).await;
    engine.shutdown();
}

#[tokio::test]
async fn stop_drops_the_queue() {
    let (engine, mut events) = engine(23_120, 23_139, 10);
    let peer = socket(LOCALHOST).await;
    opened(
        &engine,
        &mut events,
        open(7, Some(peer.local_addr().unwrap())),
    )
    .await;
    engine.command(Command::Play {
        id: SessionId(7),
        clips: vec![clip(160 * 200)],
    });
    engine.command(Command::Play {
        id: SessionId(7),
        clips: vec![clip(160 * 200)],
    });
    for _ in 0..3 {
        rtp_packet(&peer).await;
    }
    engine.command(Command::Stop { id: SessionId(7) });
    // A packet may have been on its way; then nothing.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut buf = [0; 2048];
    while peer.try_recv_from(&mut buf).is_ok() {}
    assert!(
        timeout(Duration::from_millis(300), rtp_packet(&peer))
            .await
            .is_err(),
        "no packet after Stop"
    );
    events.none_within(Duration::from_millis(100)).await;
    // Playing again afterwards works, and is answered.
    engine.command(Command::Play {
        id: SessionId(7),
        clips: vec![clip(160)],
    });
    rtp_packet(&peer).await;
    assert_eq!(events.next().await, Event::Played { id: SessionId(7) });
    // An empty play is answered at once.
    engine.command(Command::Play {
        id: SessionId(7),
        clips: vec![],
    });
    assert_eq!(events.next().await, Event::Played { id: SessionId(7) });
    let counters = closed(&engine, &mut events, 7).await;
    assert!(counters.packets_sent < 20, "{counters:?}");
    engine.shutdown();
}

#[tokio::test]
async fn port_range_exhausted() {
    // Two pairs: 23140/1 and 23142/3.
    let (engine, mut events) = engine(23_140, 23_143, 10);
    let a = opened(&engine, &mut events, open(10, None)).await;
    let b = opened(&engine, &mut events, open(11, None)).await;
    assert_ne!(a, b);
    engine.command(Command::Open(open(12, None)));
    match events.next().await {
        Event::Failed { id, why } => {
            assert_eq!(id, SessionId(12));
            assert!(why.contains("port"), "{why}");
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    // A pair freed is a pair to take.
    closed(&engine, &mut events, 10).await;
    assert_eq!(opened(&engine, &mut events, open(13, None)).await, a);
    engine.shutdown();
}

#[tokio::test]
async fn pairs_held_by_others_are_skipped() {
    let _held = std::net::UdpSocket::bind((LOCALHOST, 23_161)).unwrap();
    let (engine, mut events) = engine(23_160, 23_163, 10);
    assert_eq!(opened(&engine, &mut events, open(14, None)).await, 23_162);
    engine.command(Command::Open(open(15, None)));
    assert!(matches!(events.next().await, Event::Failed { .. }));
    engine.shutdown();
}

#[tokio::test]
async fn max_sessions_reached() {
    let (engine, mut events) = engine(23_180, 23_199, 1);
    opened(&engine, &mut events, open(20, None)).await;
    engine.command(Command::Open(open(21, None)));
    match events.next().await {
        Event::Failed { id, why } => {
            assert_eq!(id, SessionId(21));
            assert!(why.contains("sessions"), "{why}");
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    // Commands for unknown sessions are ignored.
    engine.command(Command::Play {
        id: SessionId(21),
        clips: vec![clip(160)],
    });
    engine.command(Command::Close { id: SessionId(21) });
    events.none_within(Duration::from_millis(100)).await;
    closed(&engine, &mut events, 20).await;
    opened(&engine, &mut events, open(22, None)).await;
    engine.shutdown();
}

#[tokio::test]
async fn a_flood_at_one_port_leaves_the_other_sessions_alone() {
    let (engine, mut events) = engine(23_200, 23_219, 10);
    let peer = socket(LOCALHOST).await;
    opened(
        &engine,
        &mut events,
        open(30, Some(peer.local_addr().unwrap())),
    )
    .await;
    let flooded = opened(&engine, &mut events, open(31, None)).await;
    const PACKETS: usize = 30;
    let audio = clip(160 * PACKETS);
    engine.command(Command::Play {
        id: SessionId(30),
        clips: vec![audio.clone()],
    });
    // A stranger sprays the other session's port from a thread of its own while ours plays.
    let flood = std::thread::spawn(move || {
        let stranger = std::net::UdpSocket::bind((Ipv4Addr::new(127, 0, 0, 3), 0)).unwrap();
        let junk = rtp::build(8, false, 1, 1, 1, &[0xD5; 160]);
        let mut sent = 0u64;
        let until = Instant::now() + Duration::from_millis(400);
        while Instant::now() < until {
            if stranger.send_to(&junk, (LOCALHOST, flooded)).is_ok() {
                sent += 1;
            }
        }
        sent
    });
    for n in 0..PACKETS {
        let (data, _) = rtp_packet(&peer).await;
        let packet = rtp::parse(&data).unwrap();
        assert_eq!(packet.payload, &audio[n * 160..(n + 1) * 160], "packet {n}");
    }
    assert_eq!(events.next().await, Event::Played { id: SessionId(30) });
    let sent = flood.join().unwrap();
    let counters = closed(&engine, &mut events, 31).await;
    assert!(counters.packets_dropped > 0 && counters.packets_dropped <= sent);
    assert_eq!(counters.packets_received, 0);
    closed(&engine, &mut events, 30).await;
    engine.shutdown();
}

/// Sends `packets` 20 ms A-law packets of the constant `sample` from `from` to `to`, with
/// timestamps from `timestamp` on (back to back, not paced: the recording goes by
/// timestamps).
async fn send_audio(
    from: &UdpSocket,
    to: SocketAddr,
    sample: i16,
    packets: usize,
    sequence: &mut u16,
    timestamp: &mut u32,
) {
    let payload = vec![Law::ALaw.encode_sample(sample); 160];
    for _ in 0..packets {
        let data = rtp::build(8, false, *sequence, *timestamp, 0x5EED, &payload);
        from.send_to(&data, to).await.unwrap();
        *sequence = sequence.wrapping_add(1);
        *timestamp = timestamp.wrapping_add(160);
        // A moment between packets: the engine reads them in order as they come.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// The next recording of session `id` (digits before it are collected in `digits`).
async fn recorded(
    events: &mut Events,
    id: u64,
    digits: &mut Vec<char>,
) -> switchboard_media::recorder::Recording {
    loop {
        match events.next().await {
            Event::Recorded { id: got, recording } if got == SessionId(id) => return recording,
            Event::Digit { digit, .. } => digits.push(digit),
            Event::Timeout { .. } | Event::Played { .. } => {}
            other => panic!("expected Recorded, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn records_what_is_said_until_quiet_with_keys_heard_meanwhile() {
    use switchboard_media::recorder::{Ended, Silence};
    let (engine, mut events) = engine(23_220, 23_239, 10);
    let peer = socket(LOCALHOST).await;
    let port = opened(
        &engine,
        &mut events,
        open(20, Some(peer.local_addr().unwrap())),
    )
    .await;
    let to = SocketAddr::new(LOCALHOST, port);
    assert!(engine.command(Command::Record {
        id: SessionId(20),
        max: Duration::from_secs(60),
        silence: Some(Silence {
            level: 200,
            after: Duration::from_millis(500),
        }),
    }));
    let (mut sequence, mut timestamp) = (1u16, 80_000u32);
    // Half a second of "speech", a key press between, then quiet.
    send_audio(&peer, to, 3000, 25, &mut sequence, &mut timestamp).await;
    send_digit(&peer, to, '7', &mut sequence, timestamp).await;
    send_audio(&peer, to, 20, 30, &mut sequence, &mut timestamp).await;
    let mut digits = Vec::new();
    let recording = recorded(&mut events, 20, &mut digits).await;
    assert_eq!(digits, ['7']);
    assert_eq!(recording.ended, Ended::Silence);
    // The speech, and 300 ms of the quiet after it.
    assert_eq!(recording.samples.len(), 25 * 160 + 2400);
    let spoken = Law::ALaw.decode_sample(Law::ALaw.encode_sample(3000));
    assert!(recording.samples[..4000].iter().all(|&s| s == spoken));
    // No second recording: sound after the end is not recorded.
    send_audio(&peer, to, 3000, 5, &mut sequence, &mut timestamp).await;
    let counters = closed(&engine, &mut events, 20).await;
    assert_eq!(counters.packets_received, 25 + 30 + 5 + 7);
    engine.shutdown();
}

#[tokio::test]
async fn a_recording_is_handed_over_whole_when_stopped_or_closed() {
    use switchboard_media::recorder::Ended;
    let (engine, mut events) = engine(23_240, 23_259, 10);
    let peer = socket(LOCALHOST).await;
    let port = opened(
        &engine,
        &mut events,
        open(21, Some(peer.local_addr().unwrap())),
    )
    .await;
    let to = SocketAddr::new(LOCALHOST, port);
    let record = Command::Record {
        id: SessionId(21),
        max: Duration::from_secs(60),
        silence: None,
    };
    let (mut sequence, mut timestamp) = (1u16, 0u32);
    // Stopped (a key, the core's decision): what came so far.
    assert!(engine.command(record.clone()));
    send_audio(&peer, to, 1000, 10, &mut sequence, &mut timestamp).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(engine.command(Command::StopRecording { id: SessionId(21) }));
    let recording = recorded(&mut events, 21, &mut Vec::new()).await;
    assert_eq!(
        (recording.ended, recording.samples.len()),
        (Ended::Stopped, 1600)
    );
    // Closed (the caller hung up): the recording comes before the session's end.
    assert!(engine.command(record));
    send_audio(&peer, to, 1000, 20, &mut sequence, &mut timestamp).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(engine.command(Command::Close { id: SessionId(21) }));
    let recording = recorded(&mut events, 21, &mut Vec::new()).await;
    assert_eq!(
        (recording.ended, recording.samples.len()),
        (Ended::Closed, 3200)
    );
    match events.next().await {
        Event::Closed { id, .. } => assert_eq!(id, SessionId(21)),
        other => panic!("expected Closed, got {other:?}"),
    }
    engine.shutdown();
}

#[tokio::test]
async fn the_longest_recording_ends_by_itself() {
    use switchboard_media::recorder::Ended;
    let (engine, mut events) = engine(23_260, 23_279, 10);
    let peer = socket(LOCALHOST).await;
    let port = opened(
        &engine,
        &mut events,
        open(22, Some(peer.local_addr().unwrap())),
    )
    .await;
    let to = SocketAddr::new(LOCALHOST, port);
    assert!(engine.command(Command::Record {
        id: SessionId(22),
        max: Duration::from_millis(200),
        silence: None,
    }));
    let (mut sequence, mut timestamp) = (1u16, 0u32);
    send_audio(&peer, to, 1000, 15, &mut sequence, &mut timestamp).await;
    let recording = recorded(&mut events, 22, &mut Vec::new()).await;
    assert_eq!(
        (recording.ended, recording.samples.len()),
        (Ended::MaxLength, 1600)
    );
    let _ = closed(&engine, &mut events, 22).await;
    engine.shutdown();
}

#[tokio::test]
async fn an_update_moves_the_stream_and_holds_it() {
    let (engine, mut events) = engine(23_280, 23_299, 10);
    let first = socket(LOCALHOST).await;
    let second = socket(LOCALHOST).await;
    let _ = opened(
        &engine,
        &mut events,
        open(23, Some(first.local_addr().unwrap())),
    )
    .await;
    assert!(engine.command(Command::Play {
        id: SessionId(23),
        clips: vec![clip(160 * 500)],
    }));
    rtp_packet(&first).await;
    // The far end moved (a re-INVITE): the packets go to its new address.
    assert!(engine.command(Command::Update {
        id: SessionId(23),
        remote: Some(second.local_addr().unwrap()),
        send: true,
        rtp_timeout: Duration::from_secs(30),
    }));
    let (data, _) = rtp_packet(&second).await;
    assert!(rtp::parse(&data).is_some());
    // Held (we only receive): nothing is sent, anywhere.
    assert!(engine.command(Command::Update {
        id: SessionId(23),
        remote: Some(second.local_addr().unwrap()),
        send: false,
        rtp_timeout: Duration::from_secs(30),
    }));
    // What was on its way is read first.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut buf = [0u8; 2048];
    while second.try_recv(&mut buf).is_ok() {}
    let after = timeout(Duration::from_millis(300), rtp_packet(&second)).await;
    assert!(after.is_err(), "no packet while held");
    let _ = closed(&engine, &mut events, 23).await;
    engine.shutdown();
}

/// A session of `law` (payload type 8 or 0) with telephone-events under `event_type`.
fn open_with(id: u64, remote: SocketAddr, law: Law, event_type: u8) -> Open {
    Open {
        law,
        payload_type: law.payload_type(),
        telephone_event: Some(event_type),
        ..open(id, Some(remote))
    }
}

/// Plays a clip of two packets on session `id` and reads them at `peer`: the stream's SSRC
/// and the sequence number and timestamp of its last packet.
async fn played_two(
    engine: &MediaEngine,
    events: &mut Events,
    id: u64,
    peer: &UdpSocket,
) -> (u32, u16, u32) {
    assert!(engine.command(Command::Play {
        id: SessionId(id),
        clips: vec![clip(320)],
    }));
    rtp_packet(peer).await;
    let (data, _) = rtp_packet(peer).await;
    assert_eq!(events.next().await, Event::Played { id: SessionId(id) });
    let p = rtp::parse(&data).unwrap();
    (p.ssrc, p.sequence, p.timestamp)
}

/// Audio whose every code differs from its neighbour's: 160 codes from `start`.
fn speech(start: u8) -> Vec<u8> {
    (0..160u8).map(|i| start.wrapping_add(i)).collect()
}

/// Sends from `from` to `to` an A-law packet numbered `seq` (then moved on), its audio
/// [`speech`] from `seq`.
async fn speak(from: &UdpSocket, to: SocketAddr, seq: &mut u16) {
    let data = rtp::build(
        8,
        false,
        *seq,
        u32::from(*seq) * 160,
        0xCA11,
        &speech(*seq as u8),
    );
    from.send_to(&data, to).await.unwrap();
    *seq = seq.wrapping_add(1);
}

/// Waits until the engine has carried out every command given before: commands and
/// datagrams come by different ways, and a packet sent after a command may otherwise be
/// read before it. A play of nothing on session `id` is answered at once, in command order.
async fn settled(engine: &MediaEngine, events: &mut Events, id: u64) {
    assert!(engine.command(Command::Play {
        id: SessionId(id),
        clips: vec![],
    }));
    assert_eq!(events.next().await, Event::Played { id: SessionId(id) });
}

/// Whether no RTP packet reaches `socket` within 300 ms (what was on its way read first).
async fn quiet(socket: &UdpSocket) -> bool {
    timeout(Duration::from_millis(300), rtp_packet(socket))
        .await
        .is_err()
}

#[tokio::test]
async fn bridged_sessions_relay_each_way_as_their_own_streams() {
    let (engine, mut events) = engine(23_400, 23_419, 10);
    let caller = socket(LOCALHOST).await;
    let target = socket(LOCALHOST).await;
    // The caller's leg speaks A-law, the target's µ-law, with other event types.
    let caller_port = opened(
        &engine,
        &mut events,
        open_with(40, caller.local_addr().unwrap(), Law::ALaw, 101),
    )
    .await;
    let target_port = opened(
        &engine,
        &mut events,
        open_with(41, target.local_addr().unwrap(), Law::MuLaw, 96),
    )
    .await;
    // Each leg heard something of ours first (a prompt): its stream is under way.
    let (caller_ssrc, caller_seq, _) = played_two(&engine, &mut events, 40, &caller).await;
    let (target_ssrc, target_seq, target_ts) = played_two(&engine, &mut events, 41, &target).await;
    assert!(engine.command(Command::Bridge {
        a: SessionId(40),
        b: SessionId(41),
    }));
    settled(&engine, &mut events, 40).await;

    // The caller speaks: the target hears it as the target leg's stream, in µ-law.
    let to_caller_leg = SocketAddr::new(LOCALHOST, caller_port);
    for n in 0..5u16 {
        // The SSRC of `send_digit`'s packets: one stream.
        let data = rtp::build(
            8,
            n == 0,
            7_000 + n,
            90_000 + 160 * u32::from(n),
            0x5EED,
            &speech(n as u8),
        );
        caller.send_to(&data, to_caller_leg).await.unwrap();
    }
    for n in 0..5u16 {
        let (data, _) = rtp_packet(&target).await;
        let p = rtp::parse(&data).unwrap();
        assert_eq!(
            (p.ssrc, p.payload_type),
            (target_ssrc, 0),
            "the target leg's stream"
        );
        assert_eq!(
            p.sequence,
            target_seq.wrapping_add(1 + n),
            "its numbering continues"
        );
        assert!(
            rtp::timestamp_after(p.timestamp, target_ts),
            "its timestamps go on from the prompt's"
        );
        assert_eq!(p.marker, n == 0, "a new talkspurt at the bridge");
        assert_eq!(
            p.payload,
            &Law::MuLaw.encode(&Law::ALaw.decode(&speech(n as u8)))[..],
            "packet {n}: the caller's audio, sample for sample through G.711's linear values"
        );
    }

    // The target answers: the caller hears it as the caller leg's stream, in A-law.
    let to_target_leg = SocketAddr::new(LOCALHOST, target_port);
    for n in 0..3u16 {
        let data = rtp::build(
            0,
            false,
            300 + n,
            160 * u32::from(n),
            0x7A67,
            &speech(100 + n as u8),
        );
        target.send_to(&data, to_target_leg).await.unwrap();
    }
    for n in 0..3u16 {
        let (data, _) = rtp_packet(&caller).await;
        let p = rtp::parse(&data).unwrap();
        assert_eq!(
            (p.ssrc, p.payload_type),
            (caller_ssrc, 8),
            "the caller leg's stream"
        );
        assert_eq!(p.sequence, caller_seq.wrapping_add(1 + n));
        assert_eq!(
            p.payload,
            &Law::ALaw.encode(&Law::MuLaw.decode(&speech(100 + n as u8)))[..]
        );
    }

    // The caller presses 5: relayed as the target leg's event, and reported on the caller's.
    let mut sequence = 7_005;
    send_digit(&caller, to_caller_leg, '5', &mut sequence, 91_000).await;
    let presses = digit_packets(Digit::from_char('5').unwrap(), 800, 160);
    for (k, press) in presses.iter().enumerate() {
        let (data, _) = rtp_packet(&target).await;
        let p = rtp::parse(&data).unwrap();
        assert_eq!(
            (p.ssrc, p.payload_type),
            (target_ssrc, 96),
            "event packet {k}"
        );
        assert_eq!(p.payload, &press.payload[..]);
        assert_eq!(p.marker, press.marker);
        assert_eq!(p.sequence, target_seq.wrapping_add(6 + k as u16));
    }
    assert_eq!(
        events.next().await,
        Event::Digit {
            id: SessionId(40),
            digit: '5'
        }
    );

    // While bridged a leg plays nothing of its own: answered at once, nothing sent.
    assert!(engine.command(Command::Play {
        id: SessionId(41),
        clips: vec![clip(1600)],
    }));
    assert_eq!(events.next().await, Event::Played { id: SessionId(41) });
    assert!(quiet(&target).await, "no prompt into a bridge");

    // Relayed packets count as the leg's own.
    let counters = closed(&engine, &mut events, 41).await;
    assert_eq!(counters.packets_sent, 2 + 5 + presses.len() as u64);
    let counters = closed(&engine, &mut events, 40).await;
    assert_eq!(counters.packets_sent, 2 + 3);
    engine.shutdown();
}

#[tokio::test]
async fn unbridge_hold_and_close_stop_the_relay() {
    let (engine, mut events) = engine(23_420, 23_439, 10);
    let caller = socket(LOCALHOST).await;
    let target = socket(LOCALHOST).await;
    let caller_port = opened(
        &engine,
        &mut events,
        open_with(42, caller.local_addr().unwrap(), Law::ALaw, 101),
    )
    .await;
    let target_port = opened(
        &engine,
        &mut events,
        open_with(43, target.local_addr().unwrap(), Law::ALaw, 101),
    )
    .await;
    let to_caller_leg = SocketAddr::new(LOCALHOST, caller_port);
    let to_target_leg = SocketAddr::new(LOCALHOST, target_port);
    let mut caller_seq = 1u16;
    let bridge = Command::Bridge {
        a: SessionId(42),
        b: SessionId(43),
    };

    // Bridged, the same law: the audio as it came.
    assert!(engine.command(bridge.clone()));
    settled(&engine, &mut events, 42).await;
    speak(&caller, to_caller_leg, &mut caller_seq).await;
    let (data, _) = rtp_packet(&target).await;
    assert_eq!(rtp::parse(&data).unwrap().payload, &speech(1)[..]);

    // Unbridged: nothing more is relayed, and the leg may play again.
    assert!(engine.command(Command::Unbridge { id: SessionId(43) }));
    settled(&engine, &mut events, 42).await;
    speak(&caller, to_caller_leg, &mut caller_seq).await;
    assert!(quiet(&target).await, "no relay after the unbridge");
    let _ = played_two(&engine, &mut events, 43, &target).await;

    // The target's far end on hold: it gets nothing, while what it sends still goes to the
    // caller.
    assert!(engine.command(bridge.clone()));
    assert!(engine.command(Command::Update {
        id: SessionId(43),
        remote: Some(target.local_addr().unwrap()),
        send: false,
        rtp_timeout: Duration::from_secs(30),
    }));
    settled(&engine, &mut events, 42).await;
    speak(&caller, to_caller_leg, &mut caller_seq).await;
    assert!(quiet(&target).await, "nothing relayed to a held leg");
    let mut target_seq = 500u16;
    speak(&target, to_target_leg, &mut target_seq).await;
    let (data, _) = rtp_packet(&caller).await;
    assert_eq!(rtp::parse(&data).unwrap().payload, &speech(244)[..]);
    // Resumed: relayed again.
    assert!(engine.command(Command::Update {
        id: SessionId(43),
        remote: Some(target.local_addr().unwrap()),
        send: true,
        rtp_timeout: Duration::from_secs(30),
    }));
    settled(&engine, &mut events, 42).await;
    speak(&caller, to_caller_leg, &mut caller_seq).await;
    let (data, _) = rtp_packet(&target).await;
    assert_eq!(rtp::parse(&data).unwrap().payload, &speech(4)[..]);

    // The target's leg closes: the caller's stays open, unbridged, and may play.
    let _ = closed(&engine, &mut events, 43).await;
    speak(&caller, to_caller_leg, &mut caller_seq).await;
    assert!(quiet(&target).await);
    let _ = played_two(&engine, &mut events, 42, &caller).await;
    // A bridge with a closed session, or with itself, is ignored.
    assert!(engine.command(bridge));
    assert!(engine.command(Command::Bridge {
        a: SessionId(42),
        b: SessionId(42),
    }));
    let _ = played_two(&engine, &mut events, 42, &caller).await;
    let _ = closed(&engine, &mut events, 42).await;
    engine.shutdown();
}

#[tokio::test]
async fn each_bridged_session_keeps_its_own_timeout() {
    let (engine, mut events) = engine(23_440, 23_459, 10);
    let caller = socket(LOCALHOST).await;
    let target = socket(LOCALHOST).await;
    let quick = |id, peer: &UdpSocket| Open {
        rtp_timeout: Duration::from_millis(400),
        ..open(id, Some(peer.local_addr().unwrap()))
    };
    let caller_port = opened(&engine, &mut events, quick(44, &caller)).await;
    opened(&engine, &mut events, quick(45, &target)).await;
    assert!(engine.command(Command::Bridge {
        a: SessionId(44),
        b: SessionId(45),
    }));
    settled(&engine, &mut events, 44).await;
    // The caller speaks throughout; the target says nothing. The target's leg sends the
    // caller's audio, yet its own far end is silent: its timeout, and only its.
    let to_caller_leg = SocketAddr::new(LOCALHOST, caller_port);
    let mut seq = 1u16;
    let until = Instant::now() + Duration::from_millis(1000);
    let mut timeouts = Vec::new();
    while Instant::now() < until {
        speak(&caller, to_caller_leg, &mut seq).await;
        rtp_packet(&target).await;
        if let Ok(Some(event)) = timeout(Duration::from_millis(20), events.0.recv()).await {
            timeouts.push(event);
        }
    }
    assert_eq!(timeouts, [Event::Timeout { id: SessionId(45) }]);
    let _ = closed(&engine, &mut events, 45).await;
    let _ = closed(&engine, &mut events, 44).await;
    engine.shutdown();
}
