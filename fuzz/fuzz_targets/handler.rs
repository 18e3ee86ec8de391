//! The whole message handler: bytes as they come off a socket, through parsing, the
//! transaction layer, authentication and the registrar, with store outcomes and timers.
#![no_main]

use arc_swap::ArcSwap;
use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use switchboard::core::{Core, CoreConfig, Now, Output};
use switchboard::directory::{Directory, PolicyDirectory};
use switchboard::policy_source::EMBEDDED_POLICY;
use switchboard::routing::RoutingConfig;
use switchboard::watchers::WatchersConfig;
use switchboard_policy::{Policy, Source};
use switchboard_sip::parse::{parse, Limits};
use switchboard_sip::peer::Peer;
use switchboard_sip::registrar::RegistrarConfig;
use switchboard_sip::transaction::TimerConfig;
use switchboard_sip::transport::Inbound;

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
    let directory = Arc::new(ArcSwap::from_pointee(
        Box::new(PolicyDirectory::new(policy())) as Box<dyn Directory>,
    ));
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
        routing: RoutingConfig {
            route_secret: [7; 32],
            ..RoutingConfig::default()
        },
        watchers: WatchersConfig::default(),
    };
    let local = vec!["udp:127.0.0.1:5060".parse().unwrap()];
    let mut core = Core::new(config, directory, local, now(0));
    let peer = Peer::udp("127.0.0.1:5070".parse().unwrap());
    // The input may hold several messages separated by a NUL byte.
    for (i, chunk) in data.split(|&b| b == 0).take(16).enumerate() {
        let inbound = match parse(chunk, &Limits::default()) {
            Ok(msg) => Inbound::Message {
                msg,
                peer,
                local: "127.0.0.1:5060".parse().unwrap(),
            },
            Err(error) => Inbound::Invalid { error, peer },
        };
        core.handle_inbound(inbound, now(i as u64));
        while let Some(out) = core.poll_output() {
            if let Output::Persist { token, .. } = out {
                core.handle_persisted(token, token % 3 != 0, now(i as u64));
            }
        }
    }
    core.handle_timeout(now(10_000));
    while core.poll_output().is_some() {}
});
