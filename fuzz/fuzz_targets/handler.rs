//! The whole message handler: bytes as they come off a socket, through parsing, the
//! transaction layer, authentication and the registrar, with store outcomes and timers.
//! With bit 4 of the first byte set, the daemon's own media too: a policy with a menu
//! (extension 1005) and an answered announcement (1006), a media engine that opens every
//! session and plays every message at once, and a chunk `#K` pressing key K in the
//! newest session.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use switchboard::core::{
    Core, CoreConfig, Input, Library, MediaConfig, Now, Output, RoutingConfig, WatchersConfig,
};
use switchboard::directory::{Directory, PolicyDirectory};
use switchboard::policy_source::EMBEDDED_POLICY;
use switchboard_policy::{Policy, Source};
use switchboard_sip::parse::{parse, Limits};
use switchboard_sip::peer::Peer;
use switchboard_sip::registrar::RegistrarConfig;
use switchboard_sip::transaction::TimerConfig;
use switchboard_media::session::{Command, Counters, Event, SessionId};
use switchboard_sip::transport::{Inbound, Unreachable};

/// The example policy and, for media, a menu and an answered announcement of the daemon's
/// own.
const MEDIA_POLICY: &str = r##"
[users.ivr]
extension = "1005"
no_answer = "menu:main"
[users.erin]
extension = "1006"
no_answer = "announcement:closed"
[destinations.main]
kind = "menu"
prompt = "m"
options = { "1" = "user:alice", "2" = "announcement:closed", "#" = "menu:main" }
timeout_secs = 1
retries = 1
[destinations.closed]
kind = "announcement"
message = "m"
answer = true
next = "hangup"
"##;

fn media_policy() -> Policy {
    static P: OnceLock<Policy> = OnceLock::new();
    P.get_or_init(|| {
        Policy::from_sources(&[
            Source {
                name: "policy.toml".into(),
                text: EMBEDDED_POLICY.into(),
            },
            Source {
                name: "media.toml".into(),
                text: MEDIA_POLICY.into(),
            },
        ])
        .expect("the media policy loads")
    })
    .clone()
}

fn media_config() -> MediaConfig {
    let mut library = Library::default();
    library.insert_samples("messages/m", &[0, 1000, -1000, 0]);
    MediaConfig {
        enabled: true,
        address: None,
        max_sessions: 4,
        rtp_timeout: Duration::from_secs(5),
        library: Arc::new(library),
    }
}

fn policy() -> Policy {
    static P: OnceLock<Policy> = OnceLock::new();
    P.get_or_init(|| {
        Policy::from_sources(&[Source {
            name: "policy.toml".into(),
            text: EMBEDDED_POLICY.into(),
        }])
        .expect("the example policy loads")
    })
    .clone()
}

fuzz_target!(|data: &[u8]| {
    let t0 = Instant::now();
    let now = |s: u64| Now {
        mono: t0 + Duration::from_secs(s),
        unix: 1_800_000_000 + s,
    };
    let media = data.first().is_some_and(|b| b & 0x10 == 0x10);
    let policy = if media { media_policy() } else { policy() };
    let directory: Arc<Box<dyn Directory>> = Arc::new(Box::new(PolicyDirectory::new(policy)));
    let config = CoreConfig {
        realm: "switchboard.local".into(),
        domains: vec!["switchboard.local".into()],
        server: "fuzz".into(),
        timers: TimerConfig::default(),
        registrar: RegistrarConfig {
            min_expires: 60,
            default_expires: 3600,
            max_expires: 7200,
            max_contacts_per_aor: 10,
        },
        auth_required: data.first().is_some_and(|b| b & 1 == 1),
        auth_algorithms: switchboard_sip::auth::DEFAULT_ALGORITHMS.to_vec(),
        nonce_lifetime: Duration::from_secs(300),
        max_failures: 3,
        failure_window: Duration::from_secs(60),
        block: Duration::from_secs(60),
        trusted: Vec::new(),
        routing: RoutingConfig {
            route_secret: [7; 32],
            media: if media {
                media_config()
            } else {
                MediaConfig::default()
            },
            ..RoutingConfig::default()
        },
        watchers: WatchersConfig::default(),
        seed: [3; 32],
        // Missed calls also become mail notices: that path too.
        mail: data.first().is_some_and(|b| b & 2 == 2),
        node: data.first().is_some_and(|b| b & 4 == 4).then(|| "fuzz".to_string()),
        node_hop: None,
        nonce_secret: None,
    };
    let local = vec![
        "udp:127.0.0.1:5060".parse().unwrap(),
        "tcp:127.0.0.1:5060".parse().unwrap(),
    ];
    let mut core = Core::new(config, directory, local, now(0));
    let udp = Peer::udp("127.0.0.1:5070".parse().unwrap());
    let tcp = Peer::tcp("127.0.0.1:40000".parse().unwrap(), 1);
    // The newest media session, for `#K` chunks.
    let mut session: Option<SessionId> = None;
    // The input may hold several messages separated by a NUL byte; a chunk that starts
    // with '!' comes over a TCP connection, and one that is only "!" closes it.
    for (i, chunk) in data.split(|&b| b == 0).take(16).enumerate() {
        let t = now(i as u64);
        if let (Some(key), Some(id)) = (chunk.strip_prefix(b"#"), session) {
            let digit = key.first().map_or('1', |&k| char::from(k));
            core.handle(Input::Media(Event::Digit { id, digit }), t);
            drain(&mut core, t, &mut session, &mut |_, _, _| {});
            continue;
        }
        let (peer, chunk) = match chunk.strip_prefix(b"!") {
            Some(rest) => (tcp, rest),
            None => (udp, chunk),
        };
        let inbound = if chunk.is_empty() && peer == tcp {
            Inbound::Closed { peer }
        } else {
            match parse(chunk, &Limits::default()) {
                Ok(msg) => Inbound::Message {
                    msg,
                    peer,
                    local: "127.0.0.1:5060".parse().unwrap(),
                },
                Err(error) => Inbound::Invalid { error, peer },
            }
        };
        core.handle(Input::Inbound(inbound), t);
        drain(&mut core, t, &mut session, &mut |core, t, out| {
            // Whatever was sent to the TCP peer finds it gone now and then.
            if let Output::Send { to, .. } = out {
                if to.transport == tcp.transport && i % 3 == 0 {
                    core.handle(
                        Input::Inbound(Inbound::Unreachable {
                            peer: to,
                            why: Unreachable::FlowGone,
                        }),
                        t,
                    );
                }
            }
        });
    }
    core.handle(Input::Timeout, now(10_000));
    while core.poll_output().is_some() {}
});

/// Carries out the core's outputs: store writes succeed, except every third; the media
/// engine opens every session (on port 30000), plays every message at once and closes
/// what it is told to (`session`: the newest opened).
fn drain(
    core: &mut Core,
    t: Now,
    session: &mut Option<SessionId>,
    on_send: &mut dyn FnMut(&mut Core, Now, Output),
) {
    while let Some(out) = core.poll_output() {
        match out {
            Output::Media(command) => {
                let event = match command {
                    Command::Open(open) => {
                        *session = Some(open.id);
                        Event::Opened {
                            id: open.id,
                            port: 30000,
                        }
                    }
                    Command::Play { id, .. } => Event::Played { id },
                    Command::Close { id } => Event::Closed {
                        id,
                        counters: Counters::default(),
                    },
                    Command::Record { id, .. } | Command::StopRecording { id } => {
                        Event::Timeout { id }
                    }
                    Command::Stop { .. }
                    | Command::Update { .. }
                    | Command::Bridge { .. }
                    | Command::Unbridge { .. } => continue,
                };
                core.handle(Input::Media(event), t);
            }
            // Nothing recorded: every mailbox says its default greeting.
            Output::Read { token, .. } => core.handle(Input::Read { token, value: None }, t),
            Output::Persist { token, .. } => {
                core.handle(
                    Input::Persisted {
                        token,
                        ok: token % 3 != 0,
                    },
                    t,
                );
            }
            other => on_send(core, t, other),
        }
    }
}
