//! The async shell around [`Core`]: sockets, the durable store, the clock, signals.

use crate::api::{self, Envelope, Health, LoopAsk, Operations, ReloadAnswer, ReloadEnvelope};
use crate::config::Config;
use crate::core::RoutingConfig;
use crate::core::{Core, CoreConfig, Input, Now, Output};
use crate::core::{FeatureCodes, WatchersConfig};
use crate::directory::{Directory, PolicyDirectory, Snapshot};
use crate::metrics::{self, NetMetrics, ShellMetrics};
use crate::policy_source::{self, Changes, Fingerprint, Settled};
use crate::presence_service::Reply;
use anyhow::Context as _;
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use switchboard_media::session::Event as MediaEvent;
use switchboard_net::dns::Dns;
use switchboard_net::interfaces::SystemInterfaces;
use switchboard_net::media::{MediaConfig as EngineConfig, MediaEngine};
use switchboard_net::{Arrival, TransportConfig, Transports};
use switchboard_sip::entropy::Entropy;
use switchboard_sip::locate::{Answer, Query};
use switchboard_sip::parse::Limits;
use switchboard_sip::registrar::RegistrarConfig;
use switchboard_sip::subscription::NotifierConfig;
use switchboard_sip::transaction::TimerConfig;
use switchboard_sip::transport::{ListenAddr, Listener, Transport};
use switchboard_store::tables::{
    AUTH_ATTEMPTS, BINDINGS, CALL_RECORDS, CALL_STATUS, MAIL_OUTBOX, MEMORY, NODES, NONCE_SECRET,
    PRESENCE, PROFILES, RECORD_ROUTE_SECRET, RESTORE_ORDER, SECRETS, STATUS_LOG, SUBSCRIPTIONS,
    VOICEMAIL, VOICEMAIL_AUDIO, VOICEMAIL_OUTBOX, VOICEMAIL_RECORDINGS,
};
use switchboard_store::{
    FeedEvent, FeedPosition, GroupCommitter, RedbStore, RedisStore, Store, Table, Write,
};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tokio::sync::oneshot;

/// The Server header of every response.
pub const SERVER: &str = concat!("Switchboard/", env!("CARGO_PKG_VERSION"));

/// Inbound messages queued between the sockets and the core before readers wait.
const INBOUND_QUEUE: usize = 65_536;
/// Most events the core takes in one go before flushing its output.
const BATCH: usize = 256;
/// How often the policy files are checked for changes (once changed, they are read when
/// they have stopped changing: `[policy.reload] quiet_ms`).
const POLICY_POLL: Duration = Duration::from_secs(1);
/// How long a draining daemon waits for answers still owed to the store, and for its
/// carriers to answer the trunks' unregistrations.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);

fn now() -> Now {
    Now {
        mono: Instant::now(),
        unix: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    }
}

/// The daemon's voice: its prompts, loaded once and encoded to both G.711 laws, and the
/// media engine on a thread of its own (`switchboard_net::media`), whose events come on
/// the returned channel. With `[media] enabled = false`: no engine, and the core skips
/// every message.
fn start_media(
    c: &Config,
) -> anyhow::Result<(
    Option<MediaEngine>,
    mpsc::UnboundedReceiver<MediaEvent>,
    crate::core::MediaConfig,
)> {
    let (_none, no_events) = mpsc::unbounded_channel();
    let m = &c.media;
    if !m.enabled {
        tracing::info!("media off ([media] enabled = false): messages are skipped");
        return Ok((None, no_events, crate::core::MediaConfig::default()));
    }
    let prompts = crate::voice::load_prompts(&m.language, m.prompts.as_deref())
        .map_err(|e| anyhow::anyhow!("loading the prompts: {e}"))?;
    let library = crate::voice::library(&prompts, &m.language);
    let (engine, events) = MediaEngine::start(EngineConfig {
        bind: m.bind,
        first_port: m.first_port,
        last_port: m.last_port,
        max_sessions: m.max_sessions,
        realtime_priority: m.realtime_priority,
        ..EngineConfig::default()
    })
    .context("starting the media engine")?;
    tracing::info!(
        prompts = library.len(),
        language = %m.language,
        ports = %format!("{}-{}", m.first_port, m.last_port),
        "media ready"
    );
    let core = crate::core::MediaConfig {
        enabled: true,
        address: m.advertise,
        max_sessions: m.max_sessions,
        rtp_timeout: m.rtp_timeout,
        library: Arc::new(library),
    };
    Ok((Some(engine), events, core))
}

fn core_config(
    c: &Config,
    route_secret: [u8; 32],
    nonce_secret: Option<[u8; 32]>,
    media: crate::core::MediaConfig,
) -> CoreConfig {
    CoreConfig {
        seed: Entropy::os_seed(),
        mail: c.mail.is_some(),
        node: c.redis.as_ref().map(|r| r.node.clone()),
        node_hop: c.redis.as_ref().and_then(|_| node_hop(c)),
        nonce_secret,
        realm: c.realm.clone(),
        domains: c.domains.clone(),
        server: SERVER.to_string(),
        timers: TimerConfig {
            t1: Duration::from_millis(c.t1_ms),
            t2: Duration::from_millis(c.t2_ms),
            t4: Duration::from_millis(c.t4_ms),
            ..TimerConfig::default()
        },
        registrar: RegistrarConfig {
            min_expires: c.min_expires,
            default_expires: c.default_expires,
            max_expires: c.max_expires,
            max_contacts_per_aor: c.max_contacts_per_aor,
        },
        auth_required: c.auth_required,
        auth_algorithms: c.auth_algorithms.clone(),
        nonce_lifetime: Duration::from_secs(c.nonce_lifetime_secs),
        max_failures: c.max_failures,
        failure_window: Duration::from_secs(c.failure_window_secs),
        block: Duration::from_secs(c.block_secs),
        trusted: c.trusted_networks.clone(),
        routing: RoutingConfig {
            max_calls: c.max_calls,
            max_ring: Duration::from_secs(c.max_ring_secs),
            max_call_secs: c.max_call_secs,
            dialog_probe_secs: c.dialog_probe_secs,
            route_secret,
            follow_redirects: c.follow_redirects,
            redirect_domains: c.redirect_domains.clone(),
            failover_after: Duration::from_millis(c.failover_after_ms),
            media,
            voicemail: c.voicemail.clone(),
        },
        watchers: WatchersConfig {
            subscriptions: NotifierConfig {
                min_expires: c.subscription_min_expires,
                default_expires: c.subscription_default_expires,
                max_expires: c.subscription_max_expires,
                max_subscriptions: c.max_subscriptions,
                max_per_subscriber: c.max_subscriptions_per_user,
            },
            features: FeatureCodes {
                dnd_on: c.feature_dnd_on.clone(),
                dnd_off: c.feature_dnd_off.clone(),
                profile_prefix: c.feature_profile_prefix.clone(),
            },
            offline_without_devices: c.offline_without_devices,
        },
    }
}

/// The URI other nodes sharing the store reach this one at: `[store] node_address`, else
/// the first UDP listener's address (unless it listens on every interface).
fn node_hop(c: &Config) -> Option<String> {
    let addr = c.node_address.or_else(|| {
        c.listen
            .iter()
            .map(Listener::listen_addr)
            .find(|l| l.transport == Transport::Udp && !l.addr.ip().is_unspecified())
            .map(|l| l.addr)
    });
    match addr {
        Some(a) => Some(format!("sip:{}", switchboard_sip::proxy::host_port(a))),
        None => {
            tracing::warn!("no [store] node_address and no UDP listener on a given address: phones only this node's connection reaches cannot be called through the other nodes");
            None
        }
    }
}

/// A store shared with other nodes, and where its change feed stood before the tables
/// were read.
struct Shared {
    redis: Arc<RedisStore>,
    from: FeedPosition,
}

/// The embedded store, or Redis shared with other nodes; then the change feed's position
/// is taken, before the tables are read, so no change made meanwhile by another node is
/// missed (one read twice is applied twice, to the same effect).
fn open_store(config: &Config) -> anyhow::Result<(Arc<dyn Store>, Option<Shared>)> {
    let Some(redis) = &config.redis else {
        let store = RedbStore::open(&config.state_dir).with_context(|| {
            format!("opening the state store in {}", config.state_dir.display())
        })?;
        return Ok((Arc::new(store), None));
    };
    let r = Arc::new(
        RedisStore::open(redis.clone())
            .with_context(|| format!("opening the shared store as node {}", redis.node))?,
    );
    let from = r
        .feed_position()
        .context("reading the shared store's change feed")?;
    tracing::info!(node = %redis.node, prefix = %redis.prefix, shards = redis.shards, "state kept in Redis, shared with the other nodes");
    Ok((r.clone(), Some(Shared { redis: r, from })))
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let policy = policy_source::load(&config).map_err(|e| anyhow::anyhow!("{e}"))?;
    policy_source::log_warnings(&policy);
    let directory: Arc<ArcSwap<Box<dyn Directory>>> = Arc::new(ArcSwap::from_pointee(Box::new(
        PolicyDirectory::new(policy),
    )
        as Box<dyn Directory>));
    let reload_failures = Arc::new(AtomicU64::new(0));

    let (store, shared) = open_store(&config)?;
    // Every table is read before the sockets open (a store that cannot be read stops the
    // start), and restored into the core once it is built, both in the order and for the
    // reasons of `tables::RESTORE_ORDER`.
    let (mut route_secret, mut nonce_secret) = (None, None);
    let mut read = Vec::with_capacity(RESTORE_ORDER.len());
    for &table in RESTORE_ORDER {
        let what = match table {
            SECRETS => {
                route_secret = Some(read_secret(
                    store.as_ref(),
                    RECORD_ROUTE_SECRET,
                    "routing secret",
                )?);
                nonce_secret = Some(read_secret(store.as_ref(), NONCE_SECRET, "nonce secret")?);
                continue;
            }
            // Never loaded whole: reports read it by range.
            STATUS_LOG | CALL_RECORDS => continue,
            // Read by the mail task itself.
            MAIL_OUTBOX | VOICEMAIL_OUTBOX => continue,
            // Read by key when played, fetched or mailed.
            VOICEMAIL_AUDIO | VOICEMAIL_RECORDINGS => continue,
            // No rows: feed entries only.
            AUTH_ATTEMPTS | NODES => continue,
            VOICEMAIL => "voicemail messages",
            BINDINGS => "registrations",
            MEMORY => "group memory",
            PROFILES => "people's profiles",
            PRESENCE => "presence",
            CALL_STATUS => "other nodes' calls",
            SUBSCRIPTIONS => "subscriptions",
            other => anyhow::bail!("the {other} table has no restore step"),
        };
        let rows = store
            .scan(table)
            .with_context(|| format!("reading {what} back from the store"))?;
        read.push((table, rows));
    }
    let route_secret = route_secret.expect("RESTORE_ORDER lists SECRETS");
    let committer = GroupCommitter::new(store.clone());
    crate::records::spawn_retention(store.clone(), config.records_keep_days);
    // What the mail task counts (all 0 without [mail]), read for /metrics.
    let mail_stats = Arc::new(crate::mail::MailStats::default());
    if let Some(mail) = &config.mail {
        crate::mail::spawn(
            store.clone(),
            directory.clone(),
            mail.clone(),
            mail_stats.clone(),
        );
    }

    let (in_tx, mut in_rx) = mpsc::channel::<Arrival>(INBOUND_QUEUE);
    let listen: Vec<ListenAddr> = config.listen.iter().map(Listener::listen_addr).collect();
    let transports = Transports::bind(
        &listen,
        TransportConfig {
            limits: Limits {
                max_message_size: config.max_message_size,
                max_headers: config.max_headers,
            },
            max_tcp_connections: config.max_tcp_connections,
            max_tcp_connections_per_source: config.max_tcp_connections_per_source,
            tcp_idle_timeout: Duration::from_secs(config.tcp_idle_timeout_secs),
            shed_after: Duration::from_millis(config.shed_after_ms),
        },
        in_tx,
        SERVER.to_string(),
    )
    .await
    .context("binding the listening sockets")?;
    // As bound (ports resolved), in the config's order, each with the name it advertises.
    let listeners: Vec<Listener> = transports
        .local_addrs()
        .into_iter()
        .zip(&config.listen)
        .map(|(bound, l)| Listener {
            transport: bound.transport,
            addr: bound.addr,
            advertise: l.advertise.clone(),
        })
        .collect();

    let (media, mut media_rx, media_config) = start_media(&config)?;
    let t = now();
    let mut core = Core::new(
        core_config(&config, route_secret, nonce_secret, media_config),
        directory.load_full(),
        listeners,
        t,
    );
    core.set_interfaces(Box::new(SystemInterfaces::new()));
    for (table, rows) in read {
        match table {
            BINDINGS => {
                let bindings = core.restore_bindings(rows, t);
                match &config.redis {
                    None => {
                        tracing::info!(bindings, state_dir = %config.state_dir.display(), "registrations restored")
                    }
                    Some(r) => {
                        tracing::info!(bindings, node = %r.node, "registrations restored from Redis")
                    }
                }
            }
            MEMORY => {
                let groups = core.restore_memory(rows);
                tracing::info!(groups, "group memory restored");
            }
            PROFILES => {
                let profiles = core.restore_profiles(rows);
                tracing::info!(profiles, "people's own profiles restored");
            }
            CALL_STATUS => {
                let people = core.restore_call_status(rows, t);
                if people > 0 {
                    tracing::info!(people, "other nodes' calls restored");
                }
            }
            PRESENCE => {
                let people = rows.len();
                core.restore_presence(rows, t);
                tracing::info!(people, "presence restored");
            }
            VOICEMAIL => {
                let messages = core.restore_voicemail(rows);
                tracing::info!(messages, "voicemail restored");
            }
            SUBSCRIPTIONS => {
                let subscriptions = core.restore_subscriptions(rows, t);
                tracing::info!(subscriptions, "subscriptions restored");
            }
            other => unreachable!("the {other} table was read but has no restore step"),
        }
    }

    // What other nodes change in the shared store comes in here.
    let (feed_tx, mut feed_rx) = mpsc::unbounded_channel::<FeedEvent>();
    // …and what this node tells them of its calls goes out through this.
    let publisher = shared.as_ref().map(|s| s.redis.clone());
    if let Some(Shared { redis, from }) = shared {
        redis.follow(from, move |event| match event {
            // Nothing new within a second: is the loop still there?
            FeedEvent::Changes(c) if c.is_empty() => !feed_tx.is_closed(),
            event => feed_tx.send(event).is_ok(),
        });
    }

    // The API hands its commands to this loop.
    let (api_tx, mut api_rx) = mpsc::channel::<Envelope>(1024);
    // …and its policy reloads to this loop, which runs them as it runs SIGHUP's.
    let (reload_tx, mut reload_rx) = mpsc::channel::<ReloadEnvelope>(16);
    // …and asks for the metrics, how the loop stands (/metrics, /healthz, /readyz), the
    // trunks and the registrations, which the loop answers at once.
    let (ask_tx, mut ask_rx) = mpsc::channel::<LoopAsk>(64);
    // The presence board's streams (at most half the API's connections) and what feeds them.
    let (board_hub, mut board) = crate::board::Hub::new(
        config.api_limits.max_connections / 2,
        config.offline_without_devices,
    );
    if let Some(addr) = config.api_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the API to {addr}"))?;
        tracing::info!(addr = %listener.local_addr()?, "API listening");
        let app = api::router(
            directory.clone(),
            config.admin_token.clone(),
            api_tx.clone(),
            reload_tx.clone(),
            store.clone(),
            Operations {
                ask: ask_tx.clone(),
                metrics_need_token: config.metrics_need_token,
                offline_without_devices: config.offline_without_devices,
                team_calls_missed: config.team_calls_missed,
                board: board_hub,
            },
        );
        tokio::spawn(api::serve(listener, app, config.api_limits));
    }
    drop(api_tx);
    drop(reload_tx);
    drop(ask_tx);
    // What the loop counts itself (the core and the sockets count the rest).
    let mut shell = ShellMetrics::default();
    let mut replies: HashMap<u64, oneshot::Sender<Reply>> = HashMap::new();
    let mut next_reply = 0u64;

    // DNS lookups for the core (RFC 3263). Without name servers (no resolv.conf on this
    // machine, none configured) the daemon still starts: every lookup fails at once, with
    // a log line saying why, and URIs with addresses work as ever.
    let (unanswered_tx, unanswered_rx) = mpsc::unbounded_channel::<(Query, Answer)>();
    let (dns, mut dns_rx) = match Dns::start(&config.dns) {
        Ok((dns, answers)) => (Some(dns), answers),
        Err(e) => {
            tracing::warn!(error = %e, "no DNS: SIP URIs with host names cannot be located until [dns] servers names a name server");
            (None, unanswered_rx)
        }
    };
    // A commit's outcome, with how long it took.
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(u64, bool, Duration)>();
    // A row the core asked for (Output::Read), read off the loop.
    let (read_tx, mut read_rx) = mpsc::unbounded_channel::<(u64, Option<Vec<u8>>)>();
    // A finished reload comes back here: a policy that replaced the running one goes to the
    // core, and the watcher learns what the files it settled on looked like.
    let (reloaded_tx, mut reloaded_rx) = mpsc::unbounded_channel::<Reloaded>();
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sighup = signal(SignalKind::hangup())?;

    tracing::info!(
        listen = ?config.listen.iter().map(|l| l.to_string()).collect::<Vec<_>>(),
        realm = %config.realm,
        "switchboard ready"
    );
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    // Lines a flood repeats are written a few times per interval (log_limit::allow); once
    // an interval is over, a line says how many of each kind were left out.
    tokio::spawn(async {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tick.tick().await;
            switchboard_sip::log_limit::flush();
        }
    });

    let mut drain_deadline: Option<Instant> = None;
    // Editors save by rename, so the policy files are watched by polling their metadata.
    let mut watch = tokio::time::interval(POLICY_POLL);
    watch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen = policy_source::fingerprint(&config);
    // A reload the watcher started is still waiting for the files to settle or running.
    let mut watching = false;
    // One timer for the core, moved when its deadline changes (not made anew per event).
    let timer = tokio::time::sleep(Duration::from_secs(3600));
    tokio::pin!(timer);
    let mut armed_for: Option<Instant> = None;
    loop {
        let t = now();
        let wake = core
            .poll_timeout(t)
            .unwrap_or(t.mono + Duration::from_secs(3600))
            .min(drain_deadline.unwrap_or(t.mono + Duration::from_secs(3600)));
        if armed_for != Some(wake) {
            timer.as_mut().reset(wake.into());
            armed_for = Some(wake);
        }
        tokio::select! {
            biased;
            Some((query, answer)) = dns_rx.recv() => {
                core.handle(Input::DnsAnswer { query, answer }, now());
                while let Ok((query, answer)) = dns_rx.try_recv() {
                    core.handle(Input::DnsAnswer { query, answer }, now());
                }
            }
            Some(event) = media_rx.recv() => {
                core.handle(Input::Media(event), now());
                while let Ok(event) = media_rx.try_recv() {
                    core.handle(Input::Media(event), now());
                }
            }
            Some(event) = feed_rx.recv() => {
                let mut take = |event: FeedEvent| {
                    match &event {
                        FeedEvent::Changes(c) => shell.shared_changes += c.len() as u64,
                        FeedEvent::Resync { .. } => shell.shared_resyncs += 1,
                    }
                    core.handle(Input::Shared(event), now());
                };
                take(event);
                while let Ok(event) = feed_rx.try_recv() {
                    take(event);
                }
            }
            Some((token, value)) = read_rx.recv() => {
                core.handle(Input::Read { token, value }, now());
                while let Ok((token, value)) = read_rx.try_recv() {
                    core.handle(Input::Read { token, value }, now());
                }
            }
            Some((token, ok, took)) = done_rx.recv() => {
                shell.store_commit.observe(took);
                core.handle(Input::Persisted { token, ok }, now());
                while let Ok((token, ok, took)) = done_rx.try_recv() {
                    shell.store_commit.observe(took);
                    core.handle(Input::Persisted { token, ok }, now());
                }
            }
            Some(arrival) = in_rx.recv() => {
                let t = now();
                // A message that waited too long may be shed here, before any work.
                let mut take = |arrival: Arrival| {
                    shell.loop_lag.observe(t.mono.saturating_duration_since(arrival.at));
                    if let Some(inbound) = transports.admit(arrival, t.mono) {
                        core.handle(Input::Inbound(inbound), t);
                    }
                };
                take(arrival);
                for _ in 0..BATCH {
                    match in_rx.try_recv() {
                        Ok(arrival) => take(arrival),
                        Err(_) => break,
                    }
                }
            }
            _ = &mut timer => {
                armed_for = None;
                core.handle(Input::Timeout, now());
            }
            Some((req, reply)) = api_rx.recv() => {
                next_reply += 1;
                replies.insert(next_reply, reply);
                core.handle(Input::Command { id: next_reply, req }, now());
            }
            Some(ask) = ask_rx.recv() => match ask {
                LoopAsk::Metrics(reply) => {
                    let _ = reply.send(metrics::Snapshot {
                        core: core.metrics(),
                        shell: shell.clone(),
                        net: net_metrics(&transports),
                        mail: mail_stats.read(),
                    });
                }
                LoopAsk::Health(reply) => {
                    let _ = reply.send(Health { draining: drain_deadline.is_some() });
                }
                LoopAsk::Trunks(reply) => {
                    let _ = reply.send(core.trunks());
                }
                LoopAsk::Registrations { user, reply } => {
                    let _ = reply.send(core.registrations(user.as_deref(), now().unix));
                }
                LoopAsk::Board(reply) => {
                    let _ = reply.send(board.snapshot(&core, now().unix));
                }
                LoopAsk::Calls(reply) => {
                    let _ = reply.send(core.calls_in_progress());
                }
            },
            _ = sigterm.recv() => start_drain(&mut core, &mut drain_deadline),
            _ = sigint.recv() => start_drain(&mut core, &mut drain_deadline),
            _ = sighup.recv() => {
                tracing::info!("SIGHUP: reloading the policy");
                spawn_reload(&config, &directory, &reload_failures, &reloaded_tx, Trigger::Signal);
            }
            Some((allow_shrink, reply)) = reload_rx.recv() => {
                let trigger = Trigger::Api { allow_shrink, reply };
                spawn_reload(&config, &directory, &reload_failures, &reloaded_tx, trigger);
            }
            Some(done) = reloaded_rx.recv() => {
                if done.applied {
                    shell.reloads_ok += 1;
                } else {
                    shell.reloads_failed += 1;
                }
                if done.watcher {
                    watching = false;
                    if let Some(f) = done.fingerprint {
                        seen = Some(f);
                    }
                }
                if let Some(directory) = done.snapshot {
                    core.handle(Input::PolicyChanged(directory), now())
                }
                // Answered once the core has the new policy: what the API says is applied
                // is in force for the next request.
                if let Some((reply, answer)) = done.reply {
                    let _ = reply.send(answer);
                }
            }
            _ = watch.tick(), if !watching => {
                let now_seen = policy_source::fingerprint(&config);
                if now_seen != seen {
                    seen = now_seen;
                    watching = true;
                    tracing::info!(
                        quiet_ms = config.reload.quiet.as_millis() as u64,
                        "policy files changed; they are read once they stop changing"
                    );
                    spawn_reload(&config, &directory, &reload_failures, &reloaded_tx, Trigger::Watcher);
                }
            }
        }
        while let Some(out) = core.poll_output() {
            match out {
                Output::Send { to, bytes } => transports.send(to, bytes),
                Output::Hold { peer, until } => transports.hold(peer, until),
                Output::Media(command) => {
                    // Never asked for while media is off (`MediaConfig::enabled`).
                    if let Some(engine) = &media {
                        engine.command(command);
                    }
                }
                Output::Lookup(query) => match &dns {
                    Some(dns) => dns.ask(query),
                    None => {
                        let why = "no DNS servers: /etc/resolv.conf could not be read and [dns] servers names none".to_string();
                        let _ = unanswered_tx.send((query, Answer::Failed(why)));
                    }
                },
                Output::Reply { id, reply } => {
                    if let Some(tx) = replies.remove(&id) {
                        let _ = tx.send(*reply);
                    }
                }
                Output::Read { token, table, key } => {
                    let (store, done) = (store.clone(), read_tx.clone());
                    tokio::task::spawn_blocking(move || {
                        let _ = done.send((token, read_row(store.as_ref(), table, &key)));
                    });
                }
                Output::Share(writes) => {
                    if let Some(p) = &publisher {
                        p.publish(writes);
                    }
                }
                Output::Persist { token, writes } => {
                    let done = done_tx.clone();
                    let at = Instant::now();
                    committer.submit(
                        writes,
                        Box::new(move |r| {
                            let _ = done.send((token, r.is_ok(), at.elapsed()));
                        }),
                    );
                }
            }
        }
        // The presence board hears of who changed in this turn.
        board.turn(&mut core, now().unix);
        if let Some(deadline) = drain_deadline {
            // Media sessions closing may still hand in a recording to keep (a message
            // being left when the daemon stops): they are waited for too.
            let done = core.pending() == 0 && core.unregistering() == 0 && core.media().0 == 0;
            if done || Instant::now() >= deadline {
                if core.pending() > 0 {
                    tracing::warn!(
                        pending = core.pending(),
                        "stopping with answers still owed to the store"
                    );
                }
                if core.unregistering() > 0 {
                    tracing::warn!(
                        trunks = core.unregistering(),
                        "stopping before every carrier answered the trunk's unregistration"
                    );
                }
                break;
            }
        }
    }
    if let Some(engine) = media {
        engine.shutdown(); // every media session's sockets closed
    }
    drop(committer); // finishes queued commits
                     // Give the last responses a moment to leave the socket buffers.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let s = core.stats();
    let subs = core.subscription_stats();
    let net = transports.stats();
    tracing::info!(
        requests = s.requests,
        rejected = s.rejected,
        dropped = s.dropped + net.dropped.load(Ordering::Relaxed),
        auth_failures = core.gate_stats().failures,
        subscriptions_refused_server_limit = subs.refused_server_limit,
        subscriptions_refused_user_limit = subs.refused_subscriber_limit,
        tcp_refused = net.tcp_refused.load(Ordering::Relaxed),
        tcp_refused_per_source = net.tcp_refused_per_source.load(Ordering::Relaxed),
        shed = net.shed.load(Ordering::Relaxed),
        "switchboard stopped"
    );
    Ok(())
}

/// The socket tasks' counters as they stand.
fn net_metrics(transports: &Transports) -> NetMetrics {
    let s = transports.stats();
    NetMetrics {
        shed: s.shed.load(Ordering::Relaxed),
        dropped: s.dropped.load(Ordering::Relaxed),
        rejected: s.rejected.load(Ordering::Relaxed),
        tcp_connections: s.tcp_open.load(Ordering::Relaxed) as u64,
    }
}

/// Row `key` of `table` for [`Output::Read`], at most [`crate::core::MAX_READ`] bytes:
/// None when there is none, it is larger, or the store fails (logged).
fn read_row(store: &dyn Store, table: Table, key: &str) -> Option<Vec<u8>> {
    // The one key: every key from `key` up to, not including, `key` followed by NUL.
    let end = format!("{key}\0");
    match store.scan_range_limited(table, key, &end, 1) {
        Ok(rows) => {
            let (k, v) = rows.into_iter().next()?;
            if k != key {
                return None;
            }
            if v.len() > crate::core::MAX_READ {
                tracing::warn!(%table, key, bytes = v.len(), "stored row too large to read; taken as none");
                return None;
            }
            Some(v)
        }
        Err(e) => {
            tracing::warn!(%table, key, error = %e, "stored row could not be read; taken as none");
            None
        }
    }
}

/// The Record-Route secret: read from the store, or made and stored on first start.
/// The secret stored under `key` in [`SECRETS`] (made and stored when there is none: at
/// first start; with a shared store, the one the first node made).
fn read_secret(store: &dyn Store, key: &str, what: &str) -> anyhow::Result<[u8; 32]> {
    let made: [u8; 32] = rand::random();
    let stored = store
        .put_if_absent(SECRETS, key, made.to_vec())
        .with_context(|| format!("reading the {what} from the store"))?;
    match <[u8; 32]>::try_from(stored.as_slice()) {
        Ok(secret) => Ok(secret),
        Err(_) => {
            tracing::warn!(key, "unreadable {what} in the store; a new one is made");
            store
                .commit(&[Write::put(SECRETS, key, made.to_vec())])
                .with_context(|| format!("storing the {what}"))?;
            Ok(made)
        }
    }
}

fn start_drain(core: &mut Core, deadline: &mut Option<Instant>) {
    if deadline.is_none() {
        tracing::info!("shutting down: draining");
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        core.handle(Input::Drain, now());
        *deadline = Some(Instant::now() + DRAIN_LIMIT);
    }
}

/// Why a reload runs.
enum Trigger {
    /// The policy files changed.
    Watcher,
    /// SIGHUP.
    Signal,
    /// `POST /v1/policy/reload` (`switchboard reload`), which may confirm a shrink.
    Api {
        allow_shrink: bool,
        reply: oneshot::Sender<ReloadAnswer>,
    },
}

/// A finished reload, back on the core's loop.
struct Reloaded {
    /// The new version, when the policy was replaced.
    snapshot: Option<Snapshot>,
    /// The fingerprint of the files as they were read (None: they never settled).
    fingerprint: Option<Fingerprint>,
    /// The watcher started it.
    watcher: bool,
    /// The policy was replaced (else the running one stayed).
    applied: bool,
    /// The API's request, and its answer.
    reply: Option<(oneshot::Sender<ReloadAnswer>, ReloadAnswer)>,
}

/// Reloads the policy off the SIP loop (waiting for the files to settle takes a quiet
/// period, and a large policy tens of milliseconds to validate).
fn spawn_reload(
    config: &Config,
    directory: &Arc<ArcSwap<Box<dyn Directory>>>,
    failures: &Arc<AtomicU64>,
    done: &mpsc::UnboundedSender<Reloaded>,
    trigger: Trigger,
) {
    let (config, directory, failures) = (config.clone(), directory.clone(), failures.clone());
    let done = done.clone();
    tokio::task::spawn_blocking(move || {
        let allow_shrink = matches!(
            trigger,
            Trigger::Api {
                allow_shrink: true,
                ..
            }
        );
        let (snapshot, fingerprint, answer) = reload(&config, &directory, &failures, allow_shrink);
        let watcher = matches!(trigger, Trigger::Watcher);
        let applied = matches!(answer, ReloadAnswer::Applied(_));
        let reply = match trigger {
            Trigger::Api { reply, .. } => Some((reply, answer)),
            _ => None,
        };
        let _ = done.send(Reloaded {
            snapshot,
            fingerprint,
            watcher,
            applied,
            reply,
        });
    });
}

/// Reloads run one at a time, so the last one to finish is the last one read.
static ONE_RELOAD: Mutex<()> = Mutex::new(());

/// Loads the policy again, once its files have stopped changing. A policy that fails
/// validation never replaces the running one; nor does one that would remove most users
/// (or all of them), unless `allow_shrink` confirms it. A refusal is logged with why and
/// counted; a replacement is logged with the users and trunks it added, removed and
/// changed. Gives the new version when the policy was replaced (the API reads it at once;
/// the core when it is handed in), and the fingerprint of the files that were read.
fn reload(
    config: &Config,
    directory: &ArcSwap<Box<dyn Directory>>,
    failures: &AtomicU64,
    allow_shrink: bool,
) -> (Option<Snapshot>, Option<Fingerprint>, ReloadAnswer) {
    let _one = ONE_RELOAD.lock().unwrap_or_else(|e| e.into_inner());
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Reloading]);
    let refused = |why: &str| {
        let n = failures.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::error!(
            failed_reloads = n,
            "policy reload refused; the running policy stays:{why}"
        );
    };
    let rules = &config.reload;
    let limit = rules.settle_limit();
    let outcome = match policy_source::read_settled(config, rules.quiet, limit) {
        Settled::StillChanging => {
            let why = format!(
                "the policy files were still changing after {} ms (they are read again when \
                 they change)",
                limit.as_millis()
            );
            refused(&format!(" {why}"));
            (None, None, ReloadAnswer::StillChanging(why))
        }
        Settled::Stable { read, fingerprint } => {
            match read.and_then(|sources| policy_source::load_sources(config, &sources)) {
                Err(e) => {
                    refused(&format!("\n{e}"));
                    (None, fingerprint, ReloadAnswer::Invalid(e.to_string()))
                }
                Ok(policy) => {
                    let running = directory.load();
                    let changes = Changes::between(running.policy(), &policy);
                    let shrink = rules.shrink_refusal(
                        running.policy().users().count(),
                        policy.users().count(),
                        &changes,
                    );
                    match shrink {
                        Some(why) if !allow_shrink => {
                            refused(&format!(
                                " {why}; to apply it anyway: switchboard reload --allow-shrink"
                            ));
                            (None, fingerprint, ReloadAnswer::Shrink(why))
                        }
                        _ => {
                            policy_source::log_warnings(&policy);
                            let snapshot: Snapshot =
                                Arc::new(Box::new(PolicyDirectory::new(policy)));
                            directory.store(snapshot.clone());
                            if shrink.is_some() {
                                tracing::warn!("policy reloaded {changes} (shrink confirmed)");
                            } else {
                                tracing::info!("policy reloaded {changes}");
                            }
                            (Some(snapshot), fingerprint, ReloadAnswer::Applied(changes))
                        }
                    }
                }
            }
        }
    };
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    outcome
}
