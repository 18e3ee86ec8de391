//! The daemon's configuration file (`config/switchboard.toml`, embedded as the default).
//!
//! Every error names the file, line, column and key, like a compiler does; all of a file's
//! semantic errors are reported at once.

use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use switchboard_net::dns::DnsConfig;
use switchboard_policy::diagnostics::{key_at, line_col};
use switchboard_sip::auth::Algorithm;
use switchboard_sip::transport::{Advertise, ListenAddr, Listener};
use switchboard_store::RedisConfig;
use toml::Spanned;

/// The configuration compiled into the binary, used when no `--config` is given.
pub const EMBEDDED: &str = include_str!("../../../config/switchboard.toml");
/// The name shown for the embedded configuration in messages.
pub const EMBEDDED_NAME: &str = "<embedded config/switchboard.toml>";

/// One problem in a configuration file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "error: {}\n  --> {}:{}:{} (key {})",
            self.message, self.file, self.line, self.column, self.key
        )
    }
}

/// All problems found in a configuration file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    sip: RawSip,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    timers: RawTimers,
    #[serde(default)]
    registrar: RawRegistrar,
    #[serde(default)]
    auth: RawAuth,
    #[serde(default)]
    store: RawStore,
    #[serde(default)]
    policy: RawPolicy,
    #[serde(default)]
    api: RawApi,
    #[serde(default)]
    routing: RawRouting,
    #[serde(default)]
    subscriptions: RawSubscriptions,
    #[serde(default)]
    features: RawFeatures,
    #[serde(default)]
    dns: RawDns,
    #[serde(default)]
    presence: RawPresence,
    #[serde(default)]
    log: RawLog,
    #[serde(default)]
    records: RawRecords,
    #[serde(default)]
    media: RawMedia,
    #[serde(default)]
    voicemail: RawVoicemail,
    /// Absent: no mail is sent.
    mail: Option<RawMail>,
}

/// `[mail]`: missed-call mail through an SMTP relay (see `crate::mail`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMail {
    relay: Spanned<String>,
    /// Absent: 25 with `tls = "none"`, 587 with `"starttls"`, 465 with `"tls"`.
    port: Option<Spanned<u64>>,
    /// `none` (plain SMTP), `starttls` (required: no mail goes unencrypted) or `tls`
    /// (implicit TLS from the first byte).
    #[serde(default = "default_mail_tls")]
    tls: Spanned<String>,
    /// A PEM file of CA certificates trusted for the relay besides the system's.
    ca_file: Option<Spanned<String>>,
    /// Credentials may go over a connection without TLS (`tls = "none"`).
    #[serde(default)]
    allow_plain_auth: bool,
    username: Option<Spanned<String>>,
    password: Option<String>,
    from: Spanned<String>,
    #[serde(default = "default_mail_queue")]
    queue: Spanned<u64>,
    #[serde(default = "default_retry_first")]
    retry_first_secs: Spanned<u64>,
    #[serde(default = "default_retry_max")]
    retry_max_secs: Spanned<u64>,
    #[serde(default = "default_give_up")]
    give_up_hours: Spanned<u64>,
}

fn default_mail_tls() -> Spanned<String> {
    Spanned::new(0..0, "none".into())
}
fn default_mail_queue() -> Spanned<u64> {
    Spanned::new(0..0, 1000)
}
fn default_retry_first() -> Spanned<u64> {
    Spanned::new(0..0, 30)
}
fn default_retry_max() -> Spanned<u64> {
    Spanned::new(0..0, 1800)
}
fn default_give_up() -> Spanned<u64> {
    Spanned::new(0..0, 24)
}

/// How the connection to the SMTP relay is secured (`[mail] tls`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MailTls {
    /// Plain SMTP: for a relay on loopback or a trusted link.
    None,
    /// Plain SMTP upgraded with STARTTLS before anything else is said; a relay that does
    /// not offer it gets no mail (never a fall-back to plain text).
    StartTls,
    /// TLS from the first byte (SMTPS, "implicit TLS", RFC 8314).
    Tls,
}

impl MailTls {
    /// The port used when `[mail] port` is not given: 25, 587 (submission) or 465
    /// (submissions).
    pub fn default_port(self) -> u16 {
        match self {
            MailTls::None => 25,
            MailTls::StartTls => 587,
            MailTls::Tls => 465,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MailTls::None => "none",
            MailTls::StartTls => "starttls",
            MailTls::Tls => "tls",
        }
    }
}

/// `[mail] ca_file` as read when the configuration was loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MailCa {
    pub path: PathBuf,
    /// The file's PEM text (at least one certificate, each usable as a trust anchor).
    pub pem: Vec<u8>,
}

/// The largest `[mail] ca_file` read (a bundle of a hundred certificates is well under it).
const MAX_CA_FILE: u64 = 1 << 20;

/// The bytes of the file at `path`, refused when it holds more than `max`.
fn read_bounded(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(max + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(std::io::Error::other(format!("larger than {max} bytes")));
    }
    Ok(bytes)
}

/// `[mail]` as checked: where and how missed-call mail is sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MailConfig {
    /// The SMTP relay's host name or address (also the name its certificate must carry).
    pub relay: String,
    pub port: u16,
    pub tls: MailTls,
    /// CA certificates trusted for the relay besides the system's (Debian's
    /// ca-certificates, `/etc/ssl/certs`).
    pub ca: Option<MailCa>,
    /// Credentials for the relay (AUTH PLAIN/LOGIN), both or neither; only over TLS unless
    /// `allow_plain_auth`.
    pub credentials: Option<(String, String)>,
    /// The From address of every mail.
    pub from: String,
    /// Most notices waiting to be sent; beyond it new ones are dropped (and counted).
    pub queue: usize,
    /// The first retry's wait; each next one doubles, up to `retry_max`.
    pub retry_first: std::time::Duration,
    pub retry_max: std::time::Duration,
    /// A notice not delivered this long after its call is given up (with a log line).
    pub give_up: std::time::Duration,
}

/// `[records]`: call records (see `core::records`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawRecords {
    keep_days: Spanned<u64>,
    team_calls_missed: bool,
}

impl Default for RawRecords {
    fn default() -> Self {
        RawRecords {
            keep_days: Spanned::new(0..0, 90),
            team_calls_missed: false,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawLog {
    format: LogFormat,
}

/// How log lines are written (`[log] format`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One line of text per event: time, level, target, fields (what fail2ban reads).
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `fields` (the message
    /// among them), for log collectors.
    Json,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawMedia {
    enabled: bool,
    bind: Spanned<String>,
    advertise: Option<Spanned<String>>,
    first_port: Spanned<u64>,
    last_port: Spanned<u64>,
    max_sessions: Spanned<u64>,
    rtp_timeout_secs: Spanned<u64>,
    prompts: Option<String>,
    language: Spanned<String>,
    realtime_priority: Spanned<u64>,
}

impl Default for RawMedia {
    fn default() -> Self {
        RawMedia {
            enabled: true,
            bind: Spanned::new(0..0, "0.0.0.0".into()),
            advertise: None,
            first_port: Spanned::new(0..0, 20_000),
            last_port: Spanned::new(0..0, 29_999),
            max_sessions: Spanned::new(0..0, 1000),
            rtp_timeout_secs: Spanned::new(0..0, 30),
            prompts: None,
            language: Spanned::new(0..0, "en".into()),
            realtime_priority: Spanned::new(0..0, 10),
        }
    }
}

/// `[voicemail]`: the daemon's own mailboxes (see `core::voicemail`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawVoicemail {
    max_message_secs: Spanned<u64>,
    max_messages: Spanned<u64>,
    min_message_ms: Spanned<u64>,
    silence_secs: Spanned<u64>,
    silence_level: Spanned<u64>,
    /// A number anyone may dial for the mailbox by phone (number and PIN asked).
    access_number: Option<Spanned<String>>,
}

impl Default for RawVoicemail {
    fn default() -> Self {
        let d = crate::core::VoicemailConfig::default();
        RawVoicemail {
            max_message_secs: Spanned::new(0..0, d.max_message.as_secs()),
            max_messages: Spanned::new(0..0, d.max_messages.into()),
            min_message_ms: Spanned::new(0..0, d.min_message.as_millis() as u64),
            silence_secs: Spanned::new(0..0, d.silence.map_or(0, |s| s.as_secs())),
            silence_level: Spanned::new(0..0, d.silence_level.into()),
            access_number: None,
        }
    }
}

/// The daemon's own media (`[media]`): the messages it plays to callers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaSettings {
    /// Off: every message is skipped (with a log line), and no media port is bound.
    pub enabled: bool,
    /// The address the media sockets are bound to.
    pub bind: std::net::IpAddr,
    /// The address SDP answers give for our RTP; None: the address of the SIP listener
    /// the INVITE came to.
    pub advertise: Option<std::net::IpAddr>,
    /// The port range of the media sockets (an even RTP port, RTCP on the next).
    pub first_port: u16,
    pub last_port: u16,
    /// Sessions open at once, at most; a message beyond is skipped.
    pub max_sessions: usize,
    /// Nothing received for this long on a session (handed to the engine).
    pub rtp_timeout: std::time::Duration,
    /// The operator's prompts, laid out as `prompts/` (`<dir>/<language>/<category>/<name>.wav`):
    /// each replaces the embedded prompt of its name or adds one.
    pub prompts: Option<PathBuf>,
    /// The language of the prompts and of the phrases put together from them.
    pub language: String,
    /// The media thread's `SCHED_FIFO` priority (see
    /// `switchboard_net::media::MediaConfig::realtime_priority`); None: the normal policy.
    pub realtime_priority: Option<u8>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawPresence {
    offline_without_devices: bool,
}

impl Default for RawPresence {
    fn default() -> Self {
        RawPresence {
            offline_without_devices: true,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawDns {
    servers: Vec<Spanned<String>>,
    timeout_ms: Spanned<u64>,
    attempts: Spanned<u64>,
}

impl Default for RawDns {
    fn default() -> Self {
        let d = DnsConfig::default();
        RawDns {
            servers: Vec::new(),
            timeout_ms: Spanned::new(0..0, d.timeout.as_millis() as u64),
            attempts: Spanned::new(0..0, d.attempts as u64),
        }
    }
}

/// A name server as `[dns] servers` lists it: an address with a port, or without one (53).
fn parse_dns_server(s: &str) -> Option<std::net::SocketAddr> {
    let s = s.trim();
    let addr = match s.parse::<std::net::SocketAddr>() {
        Ok(a) => a,
        Err(_) => {
            let ip = s.trim_start_matches('[').trim_end_matches(']');
            std::net::SocketAddr::new(ip.parse().ok()?, 53)
        }
    };
    (addr.port() != 0).then_some(addr)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawSubscriptions {
    min_expires: Spanned<u64>,
    default_expires: Spanned<u64>,
    max_expires: Spanned<u64>,
    max: Spanned<u64>,
    max_per_user: Spanned<u64>,
}

impl Default for RawSubscriptions {
    fn default() -> Self {
        RawSubscriptions {
            min_expires: Spanned::new(0..0, 60),
            default_expires: Spanned::new(0..0, 3600),
            max_expires: Spanned::new(0..0, 3600),
            max: Spanned::new(0..0, 10_000),
            max_per_user: Spanned::new(0..0, 200),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawFeatures {
    dnd_on: Spanned<String>,
    dnd_off: Spanned<String>,
    profile_prefix: Spanned<String>,
    /// The mailbox by phone (alone: one's own; followed by a mailbox number: that one).
    voicemail: Spanned<String>,
}

impl Default for RawFeatures {
    fn default() -> Self {
        RawFeatures {
            dnd_on: Spanned::new(0..0, "*78".into()),
            dnd_off: Spanned::new(0..0, "*79".into()),
            profile_prefix: Spanned::new(0..0, "*3".into()),
            voicemail: Spanned::new(0..0, "*97".into()),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawRouting {
    max_calls: Spanned<u64>,
    max_ring_secs: Spanned<u64>,
    max_call_secs: Spanned<u64>,
    dialog_probe_secs: Spanned<u64>,
    follow_redirects: bool,
    redirect_domains: Vec<Spanned<String>>,
    failover_after_ms: Spanned<u64>,
}

impl Default for RawRouting {
    fn default() -> Self {
        RawRouting {
            max_calls: Spanned::new(0..0, 10_000),
            max_ring_secs: Spanned::new(0..0, 180),
            max_call_secs: Spanned::new(0..0, 14_400),
            dialog_probe_secs: Spanned::new(0..0, 90),
            follow_redirects: true,
            redirect_domains: Vec::new(),
            failover_after_ms: Spanned::new(0..0, 3000),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSip {
    listen: Spanned<Vec<Spanned<RawListen>>>,
    realm: Spanned<String>,
    #[serde(default)]
    domains: Vec<String>,
}

/// A `sip.listen` entry: `"udp:0.0.0.0:5060"`, or a table with the name it advertises,
/// `{ addr = "udp:0.0.0.0:5060", advertise = "203.0.113.5:5060" }`.
/// A table's mistakes (no `addr`, a key it does not have) are kept for the validation,
/// which names the entry's key (a deserialization error would be placed by the line).
#[derive(Debug)]
enum RawListen {
    Addr(String),
    Table {
        addr: Option<Spanned<String>>,
        advertise: Option<Spanned<String>>,
        unknown: Vec<String>,
    },
}

impl<'de> Deserialize<'de> for RawListen {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{self, MapAccess, Visitor};
        struct Entry;
        impl<'de> Visitor<'de> for Entry {
            type Value = RawListen;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a listening address (\"udp:ADDR:PORT\") or a table \
                     { addr = \"udp:ADDR:PORT\", advertise = \"HOST[:PORT]\" }",
                )
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawListen, E> {
                Ok(RawListen::Addr(v.to_string()))
            }

            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<RawListen, M::Error> {
                let (mut addr, mut advertise, mut unknown) = (None, None, Vec::new());
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "addr" => addr = Some(map.next_value()?),
                        "advertise" => advertise = Some(map.next_value()?),
                        _ => {
                            map.next_value::<de::IgnoredAny>()?;
                            unknown.push(key);
                        }
                    }
                }
                Ok(RawListen::Table {
                    addr,
                    advertise,
                    unknown,
                })
            }
        }
        d.deserialize_any(Entry)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawLimits {
    max_message_size: Spanned<u64>,
    max_headers: Spanned<u64>,
    max_tcp_connections: Spanned<u64>,
    max_tcp_connections_per_source: Spanned<u64>,
    tcp_idle_timeout_secs: Spanned<u64>,
    shed_after_ms: Spanned<u64>,
}

impl Default for RawLimits {
    fn default() -> Self {
        RawLimits {
            max_message_size: Spanned::new(0..0, 65_535),
            max_headers: Spanned::new(0..0, 128),
            max_tcp_connections: Spanned::new(0..0, 1024),
            max_tcp_connections_per_source: Spanned::new(0..0, 32),
            tcp_idle_timeout_secs: Spanned::new(0..0, 300),
            shed_after_ms: Spanned::new(0..0, 100),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawTimers {
    t1_ms: Spanned<u64>,
    t2_ms: Spanned<u64>,
    t4_ms: Spanned<u64>,
}

impl Default for RawTimers {
    fn default() -> Self {
        RawTimers {
            t1_ms: Spanned::new(0..0, 500),
            t2_ms: Spanned::new(0..0, 4000),
            t4_ms: Spanned::new(0..0, 5000),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawRegistrar {
    min_expires: Spanned<u32>,
    default_expires: Spanned<u32>,
    max_expires: Spanned<u32>,
    max_contacts_per_aor: Spanned<u64>,
}

impl Default for RawRegistrar {
    fn default() -> Self {
        RawRegistrar {
            min_expires: Spanned::new(0..0, 60),
            default_expires: Spanned::new(0..0, 3600),
            max_expires: Spanned::new(0..0, 7200),
            max_contacts_per_aor: Spanned::new(0..0, 10),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawAuth {
    required: bool,
    algorithms: Spanned<Vec<Spanned<String>>>,
    nonce_lifetime_secs: Spanned<u64>,
    max_failures: Spanned<u32>,
    failure_window_secs: u64,
    block_secs: u64,
    trusted_networks: Vec<Spanned<String>>,
}

impl Default for RawAuth {
    fn default() -> Self {
        RawAuth {
            required: true,
            algorithms: Spanned::new(0..0, vec![Spanned::new(0..0, "md5".into())]),
            nonce_lifetime_secs: Spanned::new(0..0, 300),
            max_failures: Spanned::new(0..0, 10),
            failure_window_secs: 60,
            block_secs: 300,
            trusted_networks: Vec::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawStore {
    state_dir: String,
    /// Set: the state is kept in this Redis server, shared with other nodes.
    redis_url: Option<Spanned<String>>,
    node: Option<Spanned<String>>,
    node_address: Option<Spanned<String>>,
    redis_prefix: Spanned<String>,
    redis_require_fsync: bool,
    redis_replicas: Spanned<u64>,
    redis_replica_timeout_ms: Spanned<u64>,
    redis_timeout_ms: Spanned<u64>,
    redis_feed_len: Spanned<u64>,
    redis_heartbeat_ms: Spanned<u64>,
    redis_shards: Spanned<u64>,
}

impl Default for RawStore {
    fn default() -> Self {
        let d = RedisConfig::default();
        RawStore {
            state_dir: "state".into(),
            redis_url: None,
            node: None,
            node_address: None,
            redis_prefix: Spanned::new(0..0, d.prefix),
            redis_require_fsync: d.require_fsync,
            redis_replicas: Spanned::new(0..0, d.replicas.into()),
            redis_replica_timeout_ms: Spanned::new(0..0, d.replica_timeout.as_millis() as u64),
            redis_timeout_ms: Spanned::new(0..0, d.timeout.as_millis() as u64),
            redis_feed_len: Spanned::new(0..0, d.feed_len),
            redis_heartbeat_ms: Spanned::new(0..0, d.heartbeat.as_millis() as u64),
            redis_shards: Spanned::new(0..0, d.shards.into()),
        }
    }
}

/// `v`'s value; an error for `key` (through `err`) when it lies outside `lo..=hi`.
fn in_range(
    err: &mut impl FnMut(std::ops::Range<usize>, &str, String),
    v: &Spanned<u64>,
    key: &str,
    lo: u64,
    hi: u64,
) -> u64 {
    let x = *v.get_ref();
    if x < lo || x > hi {
        err(
            v.span(),
            key,
            format!("{x} is out of range: use {lo} to {hi}"),
        );
    }
    x
}

/// This machine's name (the default node name of a shared store).
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "switchboard".into())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    path: Option<String>,
    #[serde(default)]
    reload: RawReload,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawReload {
    quiet_ms: Spanned<u64>,
    shrink_percent: Spanned<u64>,
    shrink_min_users: Spanned<u64>,
}

impl Default for RawReload {
    fn default() -> Self {
        RawReload {
            quiet_ms: Spanned::new(0..0, 300),
            shrink_percent: Spanned::new(0..0, 50),
            shrink_min_users: Spanned::new(0..0, 3),
        }
    }
}

/// How policy reloads are guarded (`[policy.reload]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReloadRules {
    /// The policy files must stay unchanged this long before they are read.
    pub quiet: std::time::Duration,
    /// A reload that removes more than this share of the users (percent)…
    pub shrink_percent: u32,
    /// …and at least this many of them needs the operator's confirmation.
    pub shrink_min_users: usize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawApi {
    listen: Option<Spanned<String>>,
    admin_token: Option<Spanned<String>>,
    metrics_need_token: Spanned<bool>,
    max_connections: Spanned<u64>,
    header_timeout_secs: Spanned<u64>,
    body_timeout_secs: Spanned<u64>,
}

impl Default for RawApi {
    fn default() -> Self {
        RawApi {
            listen: Some(Spanned::new(0..0, "127.0.0.1:8080".into())),
            admin_token: None,
            metrics_need_token: Spanned::new(0..0, false),
            max_connections: Spanned::new(0..0, 256),
            header_timeout_secs: Spanned::new(0..0, 10),
            body_timeout_secs: Spanned::new(0..0, 10),
        }
    }
}

/// How the presence API guards its connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApiLimits {
    /// Connections open at once; further ones are answered 503 and closed.
    pub max_connections: usize,
    /// A request's headers must have arrived within this time of the connection opening
    /// (or, on a kept-alive connection, of the next request starting); else it is closed.
    pub header_timeout: std::time::Duration,
    /// A request's body must have arrived within this time of its headers; else 408.
    pub body_timeout: std::time::Duration,
}

/// The validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where the configuration came from (a path, or [`EMBEDDED_NAME`]).
    pub source: String,
    /// The listeners as configured (a port may be 0), with the names they advertise.
    pub listen: Vec<Listener>,
    pub realm: String,
    /// Domains this server is responsible for, lower-case.
    pub domains: Vec<String>,
    pub max_message_size: usize,
    pub max_headers: usize,
    pub max_tcp_connections: usize,
    /// Most simultaneous TCP connections accepted from one source IP address.
    pub max_tcp_connections_per_source: usize,
    pub tcp_idle_timeout_secs: u64,
    /// How long a message waits for the core, with a queue behind it, before new requests
    /// are answered 503 (0: never).
    pub shed_after_ms: u64,
    pub t1_ms: u64,
    pub t2_ms: u64,
    pub t4_ms: u64,
    pub min_expires: u32,
    pub default_expires: u32,
    pub max_expires: u32,
    pub max_contacts_per_aor: usize,
    pub auth_required: bool,
    /// What every digest challenge offers, in order (the same for every user name).
    pub auth_algorithms: Vec<Algorithm>,
    pub nonce_lifetime_secs: u64,
    pub max_failures: u32,
    pub failure_window_secs: u64,
    pub block_secs: u64,
    /// Networks whose requests are never counted or blocked for failed authentication.
    pub trusted_networks: Vec<switchboard_policy::Network>,
    pub state_dir: PathBuf,
    /// The Redis server the state is kept in, shared with other nodes ([store] redis_url);
    /// None: the embedded store in `state_dir`.
    pub redis: Option<RedisConfig>,
    /// Where the other nodes sharing the store reach this one over UDP (`[store]
    /// node_address`); None: the first UDP listener's address, unless it listens on every
    /// interface.
    pub node_address: Option<std::net::SocketAddr>,
    /// The policy file or directory; None: the built-in example policy.
    pub policy_path: Option<PathBuf>,
    /// How reloads of the policy are guarded.
    pub reload: ReloadRules,
    /// The presence API's address (None: no API).
    pub api_listen: Option<std::net::SocketAddr>,
    /// The bearer token that may do everything in the API.
    pub admin_token: Option<String>,
    /// `GET /metrics` needs the admin token (else it is open, like `/healthz`).
    pub metrics_need_token: bool,
    /// How log lines are written.
    pub log_format: LogFormat,
    /// Call records older than this many days are deleted (`[records] keep_days`).
    pub records_keep_days: u64,
    /// `[mail]`, when configured.
    pub mail: Option<MailConfig>,
    /// A person's missed calls include team calls that rang them and nobody took
    /// (`[records] team_calls_missed`); else only calls to them.
    pub team_calls_missed: bool,
    /// A person who has a SIP account and no registered device is shown offline to
    /// colleagues (`[presence] offline_without_devices`).
    pub offline_without_devices: bool,
    pub api_limits: ApiLimits,
    /// Most calls being set up at once; further INVITEs get 503.
    pub max_calls: usize,
    /// How long a step without a ring time of its own (an external number, a media server
    /// destination) rings before it counts as not answered.
    pub max_ring_secs: u64,
    /// How long an answered call is remembered without a BYE (call status, dialogs).
    pub max_call_secs: u64,
    /// How often each end of an answered call is asked, by an OPTIONS inside its dialog,
    /// whether it still has the call (0: never).
    pub dialog_probe_secs: u64,
    /// Whether branches' redirects (3xx) are followed (to our users and `redirect_domains`).
    pub follow_redirects: bool,
    /// Domains a redirect may send a call to (lower-case).
    pub redirect_domains: Vec<String>,
    /// How long a branch waits for a provisional response from one of its URI's targets
    /// before it goes on to the next (when there is one).
    pub failover_after_ms: u64,
    /// Subscription expiry bounds (seconds) and the most subscriptions at once.
    pub subscription_min_expires: u32,
    pub subscription_default_expires: u32,
    pub subscription_max_expires: u32,
    pub max_subscriptions: usize,
    /// The most subscriptions one user (the authenticated subscriber) may have at once.
    pub max_subscriptions_per_user: usize,
    /// Feature codes dialled from phones.
    pub feature_dnd_on: String,
    pub feature_dnd_off: String,
    pub feature_profile_prefix: String,
    /// Where host names of SIP URIs are looked up (RFC 3263).
    pub dns: DnsConfig,
    /// The daemon's own media.
    pub media: MediaSettings,
    /// The daemon's own mailboxes (`[voicemail]`).
    pub voicemail: crate::core::VoicemailConfig,
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                file: name.clone(),
                line: 0,
                column: 0,
                key: "-".into(),
                message: format!("cannot read the configuration file: {e}"),
            }])
        })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Config::parse(&text, &name, Some(&base))
    }

    /// The embedded default configuration.
    pub fn embedded() -> Result<Config, ConfigErrors> {
        Config::parse(EMBEDDED, EMBEDDED_NAME, None)
    }

    /// Validates configuration text; relative paths are taken from `base` (None: the
    /// current directory).
    pub fn parse(text: &str, file: &str, base: Option<&Path>) -> Result<Config, ConfigErrors> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let offset = e.span().map(|s| s.start).unwrap_or(0);
            let (line, column) = line_col(text, offset);
            ConfigErrors(vec![ConfigError {
                file: file.into(),
                line,
                column,
                key: key_at(text, offset),
                message: e.message().trim().to_string(),
            }])
        })?;
        let mut errors = Vec::new();
        let mut err = |span: std::ops::Range<usize>, key: &str, message: String| {
            let (line, column) = line_col(text, span.start);
            errors.push(ConfigError {
                file: file.into(),
                line,
                column,
                key: key.into(),
                message,
            });
        };

        let mut listen = Vec::new();
        if raw.sip.listen.get_ref().is_empty() {
            err(
                raw.sip.listen.span(),
                "sip.listen",
                "at least one listening address is needed".into(),
            );
        }
        for (i, l) in raw.sip.listen.get_ref().iter().enumerate() {
            let key = format!("sip.listen[{i}]");
            let (addr, advertise) = match l.get_ref() {
                RawListen::Addr(a) => ((a.as_str(), l.span(), key.clone()), None),
                RawListen::Table {
                    addr,
                    advertise,
                    unknown,
                } => {
                    for u in unknown {
                        err(
                            l.span(),
                            &format!("{key}.{u}"),
                            format!(
                                "unknown key `{u}` (a listen table has `addr` and `advertise`)"
                            ),
                        );
                    }
                    let Some(addr) = addr else {
                        err(
                            l.span(),
                            &key,
                            "a listen table needs `addr` (\"udp:ADDR:PORT\")".into(),
                        );
                        continue;
                    };
                    (
                        (addr.get_ref().as_str(), addr.span(), format!("{key}.addr")),
                        advertise.as_ref(),
                    )
                }
            };
            let (text, span, addr_key) = addr;
            let addr = match text.parse::<ListenAddr>() {
                Ok(a) => {
                    if listen
                        .iter()
                        .any(|l: &Listener| l.transport == a.transport && l.addr == a.addr)
                    {
                        err(span.clone(), &addr_key, format!("{a} is listed twice"));
                    }
                    Some(a)
                }
                Err(m) => {
                    err(span, &addr_key, m);
                    None
                }
            };
            let advertise = match advertise {
                None => None,
                Some(adv) => match adv.get_ref().parse::<Advertise>() {
                    Ok(a) => {
                        let family = addr.map(|l| l.addr.is_ipv4());
                        match (a.ip().map(|ip| ip.is_ipv4()), family) {
                            (Some(v4), Some(listens_v4)) if v4 != listens_v4 => {
                                err(
                                    adv.span(),
                                    &format!("{key}.advertise"),
                                    format!(
                                        "{a} is an IPv{} address, and this listener's is IPv{}: \
                                         peers reach it over its own address family",
                                        if v4 { 4 } else { 6 },
                                        if listens_v4 { 4 } else { 6 }
                                    ),
                                );
                                None
                            }
                            _ => Some(a),
                        }
                    }
                    Err(m) => {
                        err(adv.span(), &format!("{key}.advertise"), m);
                        None
                    }
                },
            };
            if let Some(a) = addr {
                listen.push(Listener {
                    transport: a.transport,
                    addr: a.addr,
                    advertise,
                });
            }
        }
        let realm = raw.sip.realm.get_ref().trim().to_string();
        if realm.is_empty() || realm.contains(['"', '\\']) {
            err(
                raw.sip.realm.span(),
                "sip.realm",
                "the realm must be a non-empty name without quotes".into(),
            );
        }
        let mut dns_servers = Vec::new();
        for (i, v) in raw.dns.servers.iter().enumerate() {
            let key = format!("dns.servers[{i}]");
            match parse_dns_server(v.get_ref()) {
                Some(a) if dns_servers.contains(&a) => {
                    err(v.span(), &key, format!("{a} is listed twice"))
                }
                Some(a) => dns_servers.push(a),
                None => err(
                    v.span(),
                    &key,
                    format!(
                        "{:?} is not a name server address: use \"192.0.2.53\", \"127.0.0.1:5353\" or \"[::1]:53\"",
                        v.get_ref()
                    ),
                ),
            }
        }
        let l = &raw.limits;
        let mut range =
            |v: &Spanned<u64>, key: &str, lo: u64, hi: u64| in_range(&mut err, v, key, lo, hi);
        let max_message_size = range(
            &l.max_message_size,
            "limits.max_message_size",
            1500,
            1 << 20,
        );
        let max_headers = range(&l.max_headers, "limits.max_headers", 16, 1024);
        let max_tcp = range(
            &l.max_tcp_connections,
            "limits.max_tcp_connections",
            1,
            1_000_000,
        );
        let max_tcp_per_source = range(
            &l.max_tcp_connections_per_source,
            "limits.max_tcp_connections_per_source",
            1,
            1_000_000,
        );
        let idle = range(
            &l.tcp_idle_timeout_secs,
            "limits.tcp_idle_timeout_secs",
            1,
            86_400,
        );
        let shed_after = range(&l.shed_after_ms, "limits.shed_after_ms", 0, 60_000);
        let api_limits = ApiLimits {
            max_connections: range(&raw.api.max_connections, "api.max_connections", 1, 100_000)
                as usize,
            header_timeout: std::time::Duration::from_secs(range(
                &raw.api.header_timeout_secs,
                "api.header_timeout_secs",
                1,
                3600,
            )),
            body_timeout: std::time::Duration::from_secs(range(
                &raw.api.body_timeout_secs,
                "api.body_timeout_secs",
                1,
                3600,
            )),
        };
        let t = &raw.timers;
        let t1 = range(&t.t1_ms, "timers.t1_ms", 10, 60_000);
        let t2 = range(&t.t2_ms, "timers.t2_ms", 10, 600_000);
        let t4 = range(&t.t4_ms, "timers.t4_ms", 10, 600_000);
        let nonce_life = range(
            &raw.auth.nonce_lifetime_secs,
            "auth.nonce_lifetime_secs",
            10,
            86_400,
        );
        let max_contacts = range(
            &raw.registrar.max_contacts_per_aor,
            "registrar.max_contacts_per_aor",
            1,
            1000,
        );
        let max_calls = range(&raw.routing.max_calls, "routing.max_calls", 1, 1_000_000);
        let max_ring = range(&raw.routing.max_ring_secs, "routing.max_ring_secs", 5, 3600);
        let failover_after = range(
            &raw.routing.failover_after_ms,
            "routing.failover_after_ms",
            100,
            30_000,
        );
        let max_call = range(
            &raw.routing.max_call_secs,
            "routing.max_call_secs",
            60,
            7 * 86_400,
        );
        let probe = range(
            &raw.routing.dialog_probe_secs,
            "routing.dialog_probe_secs",
            0,
            86_400,
        );
        let rl = &raw.policy.reload;
        let reload = ReloadRules {
            quiet: std::time::Duration::from_millis(range(
                &rl.quiet_ms,
                "policy.reload.quiet_ms",
                10,
                10_000,
            )),
            shrink_percent: range(&rl.shrink_percent, "policy.reload.shrink_percent", 1, 100)
                as u32,
            shrink_min_users: range(
                &rl.shrink_min_users,
                "policy.reload.shrink_min_users",
                1,
                1_000_000,
            ) as usize,
        };
        let sub = &raw.subscriptions;
        let sub_min = range(&sub.min_expires, "subscriptions.min_expires", 1, 86_400);
        let sub_def = range(
            &sub.default_expires,
            "subscriptions.default_expires",
            1,
            86_400,
        );
        let sub_max = range(&sub.max_expires, "subscriptions.max_expires", 1, 86_400);
        let max_subs = range(&sub.max, "subscriptions.max", 1, 1_000_000);
        let max_subs_per_user = range(
            &sub.max_per_user,
            "subscriptions.max_per_user",
            1,
            1_000_000,
        );
        let dns_timeout = range(&raw.dns.timeout_ms, "dns.timeout_ms", 10, 60_000);
        let keep_days = range(&raw.records.keep_days, "records.keep_days", 1, 36_500);
        let dns_attempts = range(&raw.dns.attempts, "dns.attempts", 0, 10);
        let mail_numbers = raw.mail.as_ref().map(|m| {
            (
                m.port
                    .as_ref()
                    .map(|p| range(p, "mail.port", 1, 65_535) as u16),
                range(&m.queue, "mail.queue", 1, 1_000_000) as usize,
                range(&m.retry_first_secs, "mail.retry_first_secs", 1, 86_400),
                range(&m.retry_max_secs, "mail.retry_max_secs", 1, 86_400),
                range(&m.give_up_hours, "mail.give_up_hours", 1, 720),
            )
        });
        let mail = match (&raw.mail, mail_numbers) {
            (Some(m), Some((port, queue, first, max, give_up))) => {
                let relay = m.relay.get_ref().trim().to_string();
                if relay.is_empty() || relay.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    err(
                        m.relay.span(),
                        "mail.relay",
                        "the relay must be a host name or address".into(),
                    );
                }
                let tls = match m.tls.get_ref().as_str() {
                    "none" => MailTls::None,
                    "starttls" => MailTls::StartTls,
                    "tls" => MailTls::Tls,
                    other => {
                        err(
                            m.tls.span(),
                            "mail.tls",
                            format!("{other:?}: use \"none\", \"starttls\" or \"tls\""),
                        );
                        MailTls::None
                    }
                };
                let ca = match &m.ca_file {
                    None => None,
                    Some(f) if tls == MailTls::None => {
                        err(
                            f.span(),
                            "mail.ca_file",
                            "a CA file is only used with tls = \"starttls\" or \"tls\"".into(),
                        );
                        None
                    }
                    Some(f) => {
                        let path = match base {
                            Some(b) if Path::new(f.get_ref()).is_relative() => b.join(f.get_ref()),
                            _ => PathBuf::from(f.get_ref()),
                        };
                        let checked = read_bounded(&path, MAX_CA_FILE)
                            .map_err(|e| format!("cannot read {}: {e}", path.display()))
                            .and_then(|pem| {
                                crate::mail::check_ca(&pem)
                                    .map(|_| pem)
                                    .map_err(|e| format!("{}: {e}", path.display()))
                            });
                        match checked {
                            Ok(pem) => Some(MailCa { path, pem }),
                            Err(e) => {
                                err(f.span(), "mail.ca_file", e);
                                None
                            }
                        }
                    }
                };
                if !switchboard_policy::is_email(m.from.get_ref()) {
                    err(
                        m.from.span(),
                        "mail.from",
                        format!("{:?} is not a mail address", m.from.get_ref()),
                    );
                }
                if first > max {
                    err(
                        m.retry_first_secs.span(),
                        "mail.retry_first_secs",
                        format!("{first} is more than retry_max_secs ({max})"),
                    );
                }
                let credentials = match (&m.username, &m.password) {
                    (Some(u), Some(_)) if tls == MailTls::None && !m.allow_plain_auth => {
                        err(
                            u.span(),
                            "mail.username",
                            "credentials are sent only over TLS: set tls = \"starttls\" or \"tls\" \
                             (or allow_plain_auth = true for a relay on loopback or a trusted link)"
                                .into(),
                        );
                        None
                    }
                    (Some(u), Some(p)) => Some((u.get_ref().clone(), p.clone())),
                    (None, None) => None,
                    _ => {
                        err(
                            m.relay.span(),
                            "mail.username",
                            "give both username and password, or neither".into(),
                        );
                        None
                    }
                };
                Some(MailConfig {
                    relay,
                    port: port.unwrap_or(tls.default_port()),
                    tls,
                    ca,
                    credentials,
                    from: m.from.get_ref().clone(),
                    queue,
                    retry_first: std::time::Duration::from_secs(first),
                    retry_max: std::time::Duration::from_secs(max),
                    give_up: std::time::Duration::from_secs(give_up * 3600),
                })
            }
            _ => None,
        };
        if sub_def < sub_min || sub_def > sub_max {
            err(
                sub.default_expires.span(),
                "subscriptions.default_expires",
                format!("{sub_def} must lie between min_expires ({sub_min}) and max_expires ({sub_max})"),
            );
        }
        let f = &raw.features;
        let mut codes: Vec<(&str, &str)> = Vec::new();
        for (key, v) in [
            ("features.dnd_on", &f.dnd_on),
            ("features.dnd_off", &f.dnd_off),
            ("features.profile_prefix", &f.profile_prefix),
            ("features.voicemail", &f.voicemail),
        ] {
            let code = v.get_ref().as_str();
            let ok = !code.is_empty()
                && code.len() <= 8
                && code.starts_with(['*', '#'])
                && code
                    .chars()
                    .all(|c| c.is_ascii_digit() || c == '*' || c == '#');
            if !ok {
                err(
                    v.span(),
                    key,
                    format!(
                        "{code:?} is not a feature code: * or # followed by digits (e.g. \"*78\")"
                    ),
                );
            } else if let Some((other, _)) = codes.iter().find(|(_, c)| *c == code) {
                err(v.span(), key, format!("{code:?} is also {other}"));
            }
            codes.push((key, code));
        }
        if t2 < t1 {
            err(
                t.t2_ms.span(),
                "timers.t2_ms",
                format!("T2 ({t2} ms) must not be below T1 ({t1} ms)"),
            );
        }
        let r = &raw.registrar;
        let (min, def, max) = (
            *r.min_expires.get_ref(),
            *r.default_expires.get_ref(),
            *r.max_expires.get_ref(),
        );
        if min == 0 {
            err(
                r.min_expires.span(),
                "registrar.min_expires",
                "must be at least 1 second".into(),
            );
        }
        if def < min || def > max {
            err(
                r.default_expires.span(),
                "registrar.default_expires",
                format!("{def} must lie between min_expires ({min}) and max_expires ({max})"),
            );
        }
        if max < min {
            err(
                r.max_expires.span(),
                "registrar.max_expires",
                format!("{max} is below min_expires ({min})"),
            );
        }
        let mut redirect_domains = Vec::new();
        for (i, d) in raw.routing.redirect_domains.iter().enumerate() {
            let name = d.get_ref().trim().to_ascii_lowercase();
            let fits = !name.is_empty()
                && name.len() <= 253
                && name.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']')
                });
            if fits {
                redirect_domains.push(name);
            } else {
                err(
                    d.span(),
                    &format!("routing.redirect_domains[{i}]"),
                    format!("{:?} is not a domain name or address", d.get_ref()),
                );
            }
        }
        let mut trusted_networks = Vec::new();
        for (i, n) in raw.auth.trusted_networks.iter().enumerate() {
            match switchboard_policy::parse_network(n.get_ref()) {
                Some(net) => trusted_networks.push(net),
                None => err(
                    n.span(),
                    &format!("auth.trusted_networks[{i}]"),
                    format!(
                        "{:?} is not an address or a network like \"192.0.2.0/24\"",
                        n.get_ref()
                    ),
                ),
            }
        }
        let mut auth_algorithms = Vec::new();
        if raw.auth.algorithms.get_ref().is_empty() {
            err(
                raw.auth.algorithms.span(),
                "auth.algorithms",
                "at least one algorithm is needed (\"md5\" is the one every client answers)".into(),
            );
        }
        for (i, a) in raw.auth.algorithms.get_ref().iter().enumerate() {
            let key = format!("auth.algorithms[{i}]");
            let alg = match a.get_ref().to_ascii_lowercase().as_str() {
                "md5" => Algorithm::Md5,
                "sha-256" | "sha256" => Algorithm::Sha256,
                other => {
                    err(
                        a.span(),
                        &key,
                        format!("unknown digest algorithm {other:?}: use \"md5\" or \"sha-256\""),
                    );
                    continue;
                }
            };
            if auth_algorithms.contains(&alg) {
                err(a.span(), &key, format!("{} is listed twice", alg.token()));
            }
            auth_algorithms.push(alg);
        }
        if *raw.auth.max_failures.get_ref() == 0 {
            err(
                raw.auth.max_failures.span(),
                "auth.max_failures",
                "must be at least 1".into(),
            );
        }
        let api_listen = match &raw.api.listen {
            Some(l) if l.get_ref().is_empty() => None,
            Some(l) => match l.get_ref().parse::<std::net::SocketAddr>() {
                Ok(a) => Some(a),
                Err(_) => {
                    err(
                        l.span(),
                        "api.listen",
                        format!("{:?} is not an address and port", l.get_ref()),
                    );
                    None
                }
            },
            None => None,
        };
        if let Some(t) = &raw.api.admin_token {
            if t.get_ref().len() < 16 || t.get_ref().contains(char::is_whitespace) {
                err(
                    t.span(),
                    "api.admin_token",
                    "the admin token needs at least 16 characters and no spaces".into(),
                );
            }
        }
        if *raw.api.metrics_need_token.get_ref() && raw.api.admin_token.is_none() {
            err(
                raw.api.metrics_need_token.span(),
                "api.metrics_need_token",
                "needs api.admin_token: it is the token /metrics then asks for".into(),
            );
        }
        let m = &raw.media;
        let ip = |v: &Spanned<String>, key: &str, err: &mut dyn FnMut(_, &str, String)| match v
            .get_ref()
            .trim()
            .parse::<std::net::IpAddr>()
        {
            Ok(a) => Some(a),
            Err(_) => {
                err(
                    v.span(),
                    key,
                    format!("{:?} is not an IP address", v.get_ref()),
                );
                None
            }
        };
        let media_bind = ip(&m.bind, "media.bind", &mut err);
        let media_advertise = match &m.advertise {
            Some(a) => match ip(a, "media.advertise", &mut err) {
                Some(addr) if addr.is_unspecified() => {
                    err(
                        a.span(),
                        "media.advertise",
                        format!("{addr} names no one: give the address peers send RTP to"),
                    );
                    None
                }
                other => other,
            },
            None => None,
        };
        let mut range =
            |v: &Spanned<u64>, key: &str, lo: u64, hi: u64| in_range(&mut err, v, key, lo, hi);
        let first_port = range(&m.first_port, "media.first_port", 1024, 65_534);
        let last_port = range(&m.last_port, "media.last_port", 1025, 65_535);
        let media_sessions = range(&m.max_sessions, "media.max_sessions", 1, 100_000);
        let rtp_timeout = range(&m.rtp_timeout_secs, "media.rtp_timeout_secs", 1, 3600);
        let realtime_priority = range(&m.realtime_priority, "media.realtime_priority", 0, 99);
        let v = &raw.voicemail;
        let max_message_secs = range(
            &v.max_message_secs,
            "voicemail.max_message_secs",
            1,
            switchboard_policy::MAX_MESSAGE_SECS.into(),
        );
        let max_messages = range(
            &v.max_messages,
            "voicemail.max_messages",
            1,
            switchboard_policy::MAX_MAILBOX_MESSAGES.into(),
        );
        let min_message_ms = range(&v.min_message_ms, "voicemail.min_message_ms", 0, 60_000);
        let silence_secs = range(&v.silence_secs, "voicemail.silence_secs", 0, 600);
        let silence_level = range(&v.silence_level, "voicemail.silence_level", 1, 32_767);
        if let Some(n) = &v.access_number {
            let ok = !n.get_ref().is_empty()
                && n.get_ref().len() <= 16
                && n.get_ref().bytes().all(|b| b.is_ascii_digit() || b == b'+');
            if !ok {
                err(
                    n.span(),
                    "voicemail.access_number",
                    format!(
                        "{:?} is not a number: up to 16 digits (a DID or an extension)",
                        n.get_ref()
                    ),
                );
            }
        }
        if last_port <= first_port {
            err(
                m.last_port.span(),
                "media.last_port",
                format!("{last_port} must be above first_port ({first_port}): a session needs an even and an odd port"),
            );
        }
        if max_message_secs > 0 && min_message_ms >= max_message_secs.saturating_mul(1000) {
            // Named where the operator wrote it (min_message_ms may be the default).
            let (span, key) = if v.min_message_ms.span().is_empty() {
                (v.max_message_secs.span(), "voicemail.max_message_secs")
            } else {
                (v.min_message_ms.span(), "voicemail.min_message_ms")
            };
            err(
                span,
                key,
                format!(
                    "{min_message_ms} ms is not shorter than max_message_secs ({max_message_secs} s): no message could be kept"
                ),
            );
        }
        let language = m.language.get_ref().trim().to_string();
        if switchboard_media::say::language(&language).is_none() {
            let known: Vec<&str> = switchboard_media::say::LANGUAGES
                .iter()
                .map(|l| l.code())
                .collect();
            err(
                m.language.span(),
                "media.language",
                format!(
                    "no prompts in language {language:?}: use one of {}",
                    known.join(", ")
                ),
            );
        }
        let st = &raw.store;
        let node_address = st.node_address.as_ref().and_then(|a| {
            match a.get_ref().parse::<std::net::SocketAddr>() {
                Ok(addr) if !addr.ip().is_unspecified() && addr.port() != 0 => Some(addr),
                _ => {
                    err(
                        a.span(),
                        "store.node_address",
                        format!("{:?} is not an address and port other nodes can reach (\"10.0.0.5:5060\")", a.get_ref()),
                    );
                    None
                }
            }
        });
        let redis = st.redis_url.as_ref().map(|url| {
            if let Err(why) = switchboard_store::redis_store::check_url(url.get_ref()) {
                err(url.span(), "store.redis_url", why);
            }
            let node = match &st.node {
                Some(n) => {
                    if let Err(why) = switchboard_store::redis_store::check_name(n.get_ref()) {
                        err(n.span(), "store.node", why);
                    }
                    n.get_ref().clone()
                }
                None => host_name(),
            };
            if let Err(why) = switchboard_store::redis_store::check_name(st.redis_prefix.get_ref())
            {
                err(st.redis_prefix.span(), "store.redis_prefix", why);
            }
            let mut range =
                |v: &Spanned<u64>, key: &str, lo: u64, hi: u64| in_range(&mut err, v, key, lo, hi);
            RedisConfig {
                url: url.get_ref().clone(),
                node,
                prefix: st.redis_prefix.get_ref().clone(),
                require_fsync: st.redis_require_fsync,
                replicas: range(&st.redis_replicas, "store.redis_replicas", 0, 64) as u32,
                replica_timeout: Duration::from_millis(range(
                    &st.redis_replica_timeout_ms,
                    "store.redis_replica_timeout_ms",
                    1,
                    60_000,
                )),
                timeout: Duration::from_millis(range(
                    &st.redis_timeout_ms,
                    "store.redis_timeout_ms",
                    100,
                    60_000,
                )),
                feed_len: range(
                    &st.redis_feed_len,
                    "store.redis_feed_len",
                    1_000,
                    100_000_000,
                ),
                heartbeat: Duration::from_millis(range(
                    &st.redis_heartbeat_ms,
                    "store.redis_heartbeat_ms",
                    100,
                    60_000,
                )),
                shards: range(
                    &st.redis_shards,
                    "store.redis_shards",
                    1,
                    switchboard_store::redis_store::MAX_SHARDS.into(),
                ) as u32,
            }
        });
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        let resolve = |p: &str| -> PathBuf {
            let p = PathBuf::from(p);
            match base {
                Some(b) if p.is_relative() => b.join(p),
                _ => p,
            }
        };
        let state_dir = match std::env::var_os("STATE_DIRECTORY") {
            // systemd's StateDirectory= (possibly several, colon-separated: take the first).
            Some(d) if !d.is_empty() => {
                PathBuf::from(d.to_string_lossy().split(':').next().unwrap_or_default())
            }
            _ => resolve(&raw.store.state_dir),
        };
        let mut domains: Vec<String> = raw
            .sip
            .domains
            .iter()
            .map(|d| d.to_ascii_lowercase())
            .collect();
        if !domains.contains(&realm.to_ascii_lowercase()) {
            domains.push(realm.to_ascii_lowercase());
        }
        Ok(Config {
            source: file.into(),
            listen,
            realm,
            domains,
            max_message_size: max_message_size as usize,
            max_headers: max_headers as usize,
            max_tcp_connections: max_tcp as usize,
            max_tcp_connections_per_source: max_tcp_per_source as usize,
            shed_after_ms: shed_after,
            tcp_idle_timeout_secs: idle,
            t1_ms: t1,
            t2_ms: t2,
            t4_ms: t4,
            min_expires: min,
            default_expires: def,
            max_expires: max,
            max_contacts_per_aor: max_contacts as usize,
            auth_required: raw.auth.required,
            auth_algorithms,
            trusted_networks,
            nonce_lifetime_secs: nonce_life,
            max_failures: *raw.auth.max_failures.get_ref(),
            failure_window_secs: raw.auth.failure_window_secs,
            block_secs: raw.auth.block_secs,
            state_dir,
            redis,
            node_address,
            policy_path: raw.policy.path.as_deref().map(resolve),
            reload,
            api_listen,
            admin_token: raw.api.admin_token.map(|t| t.into_inner()),
            metrics_need_token: *raw.api.metrics_need_token.get_ref(),
            offline_without_devices: raw.presence.offline_without_devices,
            log_format: raw.log.format,
            records_keep_days: keep_days,
            mail,
            team_calls_missed: raw.records.team_calls_missed,
            api_limits,
            max_calls: max_calls as usize,
            max_ring_secs: max_ring,
            max_call_secs: max_call,
            dialog_probe_secs: probe,
            follow_redirects: raw.routing.follow_redirects,
            failover_after_ms: failover_after,
            redirect_domains,
            subscription_min_expires: sub_min as u32,
            subscription_default_expires: sub_def as u32,
            subscription_max_expires: sub_max as u32,
            max_subscriptions: max_subs as usize,
            max_subscriptions_per_user: max_subs_per_user as usize,
            feature_dnd_on: raw.features.dnd_on.into_inner(),
            feature_dnd_off: raw.features.dnd_off.into_inner(),
            feature_profile_prefix: raw.features.profile_prefix.into_inner(),
            dns: DnsConfig {
                servers: dns_servers,
                timeout: std::time::Duration::from_millis(dns_timeout),
                attempts: dns_attempts as usize,
            },
            media: MediaSettings {
                enabled: m.enabled,
                bind: media_bind.unwrap_or([0, 0, 0, 0].into()),
                advertise: media_advertise,
                first_port: first_port as u16,
                last_port: last_port as u16,
                max_sessions: media_sessions as usize,
                rtp_timeout: std::time::Duration::from_secs(rtp_timeout),
                prompts: m.prompts.as_deref().map(resolve),
                language,
                realtime_priority: (realtime_priority > 0).then_some(realtime_priority as u8),
            },
            voicemail: crate::core::VoicemailConfig {
                max_message: std::time::Duration::from_secs(max_message_secs),
                max_messages: max_messages as u32,
                min_message: std::time::Duration::from_millis(min_message_ms),
                silence: (silence_secs > 0).then(|| std::time::Duration::from_secs(silence_secs)),
                silence_level: silence_level as u16,
                feature_code: raw.features.voicemail.into_inner(),
                access_number: raw.voicemail.access_number.map(Spanned::into_inner),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The errors of config `text` (file x.toml).
    fn refused(text: &str) -> ConfigErrors {
        Config::parse(text, "x.toml", None).unwrap_err()
    }

    /// The file, key and line of each error.
    fn places(e: &ConfigErrors) -> Vec<(&str, &str, usize)> {
        e.0.iter()
            .map(|e| (e.file.as_str(), e.key.as_str(), e.line))
            .collect()
    }

    #[test]
    fn embedded_config_is_valid_and_on_loopback() {
        let c = Config::embedded().unwrap();
        assert!(c.listen.iter().all(|l| l.addr.ip().is_loopback()));
        assert!(c.listen.iter().any(|l| l.addr.port() == 5060));
        assert!(c.policy_path.is_none());
        assert!(c.api_listen.unwrap().ip().is_loopback());
    }

    #[test]
    fn challenges_offer_md5_alone_unless_configured() {
        let base = "[sip]\nlisten = [\"udp:127.0.0.1:5060\"]\nrealm = \"r\"\n";
        assert_eq!(
            Config::embedded().unwrap().auth_algorithms,
            [Algorithm::Md5]
        );
        let c = Config::parse(base, "x.toml", None).unwrap();
        assert_eq!(c.auth_algorithms, [Algorithm::Md5]);
        let text = format!("{base}[auth]\nalgorithms = [\"SHA-256\", \"md5\"]\n");
        let c = Config::parse(&text, "x.toml", None).unwrap();
        assert_eq!(c.auth_algorithms, [Algorithm::Sha256, Algorithm::Md5]);
        for (list, key, says) in [
            ("[]", "auth.algorithms", "at least one"),
            (
                "[\"md5\", \"sha-1\"]",
                "auth.algorithms[1]",
                "unknown digest algorithm",
            ),
            ("[\"md5\", \"MD5\"]", "auth.algorithms[1]", "listed twice"),
        ] {
            let text = format!("{base}[auth]\nalgorithms = {list}\n");
            let e = Config::parse(&text, "x.toml", None).unwrap_err();
            assert_eq!((e.0[0].key.as_str(), e.0[0].line), (key, 5), "{e}");
            assert!(e.0[0].message.contains(says), "{e}");
        }
    }

    #[test]
    fn mail_is_off_unless_configured_and_checked_when_it_is() {
        let base = "[sip]\nlisten = [\"udp:127.0.0.1:5060\"]\nrealm = \"r\"\n";
        assert_eq!(Config::parse(base, "x.toml", None).unwrap().mail, None);
        let text = format!("{base}[mail]\nrelay = \"127.0.0.1\"\nfrom = \"sb@example.com\"\n");
        let m = Config::parse(&text, "x.toml", None).unwrap().mail.unwrap();
        assert_eq!((m.relay.as_str(), m.port, m.queue), ("127.0.0.1", 25, 1000));
        assert_eq!(m.retry_first.as_secs(), 30);
        assert_eq!(m.retry_max.as_secs(), 1800);
        assert_eq!(m.give_up.as_secs(), 24 * 3600);
        assert_eq!(m.credentials, None);
        for (extra, key, says) in [
            ("from = \"sb\"", "mail.from", "not a mail address"),
            (
                "from = \"a@b\"\ntls = \"ssl\"",
                "mail.tls",
                "use \"none\", \"starttls\" or \"tls\"",
            ),
            (
                "from = \"a@b\"\nusername = \"u\"\npassword = \"p\"",
                "mail.username",
                "only over TLS",
            ),
            (
                "from = \"a@b\"\nca_file = \"ca.pem\"",
                "mail.ca_file",
                "only used with tls",
            ),
            (
                "from = \"a@b\"\ntls = \"tls\"\nca_file = \"/nonexistent/ca.pem\"",
                "mail.ca_file",
                "cannot read /nonexistent/ca.pem",
            ),
            ("from = \"a@b\"\nport = 0", "mail.port", "out of range"),
            ("from = \"a@b\"\nusername = \"u\"", "mail.username", "both"),
            (
                "from = \"a@b\"\nretry_first_secs = 60\nretry_max_secs = 30",
                "mail.retry_first_secs",
                "more than",
            ),
        ] {
            let text = format!("{base}[mail]\nrelay = \"127.0.0.1\"\n{extra}\n");
            let e = Config::parse(&text, "x.toml", None).unwrap_err();
            assert_eq!(e.0[0].key.as_str(), key, "{e}");
            assert!(e.0[0].message.contains(says), "{e}");
        }
    }

    #[test]
    fn the_store_is_embedded_unless_a_redis_server_is_named_and_checked_when_it_is() {
        let base = "[sip]\nlisten = [\"udp:127.0.0.1:5060\"]\nrealm = \"r\"\n";
        assert!(Config::parse(base, "x.toml", None).unwrap().redis.is_none());
        assert!(Config::embedded().unwrap().redis.is_none());
        let text =
            format!("{base}[store]\nredis_url = \"redis://127.0.0.1:6379/\"\nnode = \"a\"\n");
        let r = Config::parse(&text, "x.toml", None).unwrap().redis.unwrap();
        assert_eq!((r.node.as_str(), r.prefix.as_str()), ("a", "sb"));
        assert!(r.require_fsync);
        assert_eq!((r.replicas, r.feed_len, r.shards), (0, 100_000, 1));
        let text = format!("{base}[store]\nredis_url = \"redis://h/\"\nredis_shards = 16\n");
        assert_eq!(
            Config::parse(&text, "x.toml", None)
                .unwrap()
                .redis
                .unwrap()
                .shards,
            16
        );
        let text = format!("{base}[store]\nredis_url = \"redis://127.0.0.1:6379/\"\nnode_address = \"10.0.0.5:5060\"\n");
        let c = Config::parse(&text, "x.toml", None).unwrap();
        assert_eq!(c.node_address, Some("10.0.0.5:5060".parse().unwrap()));
        // Without a node name, the machine's.
        let text = format!("{base}[store]\nredis_url = \"redis://127.0.0.1:6379/\"\n");
        let r = Config::parse(&text, "x.toml", None).unwrap().redis.unwrap();
        assert!(!r.node.is_empty());
        for (extra, key, says) in [
            (
                "redis_url = \"http://x\"",
                "store.redis_url",
                "not a Redis URL",
            ),
            (
                "redis_url = \"redis://h/\"\nnode = \"a:b\"",
                "store.node",
                "letters, digits",
            ),
            (
                "redis_url = \"redis://h/\"\nredis_prefix = \"{x}\"",
                "store.redis_prefix",
                "letters",
            ),
            (
                "redis_url = \"redis://h/\"\nredis_replicas = 100",
                "store.redis_replicas",
                "out of range",
            ),
            (
                "redis_url = \"redis://h/\"\nnode_address = \"0.0.0.0:5060\"",
                "store.node_address",
                "not an address",
            ),
            (
                "redis_url = \"redis://h/\"\nredis_feed_len = 10",
                "store.redis_feed_len",
                "out of range",
            ),
            (
                "redis_url = \"redis://h/\"\nredis_shards = 65",
                "store.redis_shards",
                "out of range",
            ),
            (
                "redis_url = \"redis://h/\"\nredis_shards = 0",
                "store.redis_shards",
                "out of range",
            ),
        ] {
            let text = format!("{base}[store]\n{extra}\n");
            let e = refused(&text);
            assert_eq!(e.0[0].key.as_str(), key, "{e}");
            assert!(e.0[0].message.contains(says), "{e}");
            assert_eq!(e.0[0].file, "x.toml");
            assert!(e.0[0].line >= 5, "{e}");
        }
    }

    #[test]
    fn mail_tls_sets_the_default_port_and_lets_credentials_through() {
        let base = "[sip]\nlisten = [\"udp:127.0.0.1:5060\"]\nrealm = \"r\"\n[mail]\n\
                    relay = \"smtp.example.com\"\nfrom = \"sb@example.com\"\n";
        for (extra, tls, port) in [
            ("", MailTls::None, 25),
            ("tls = \"none\"\nport = 2525", MailTls::None, 2525),
            ("tls = \"starttls\"", MailTls::StartTls, 587),
            ("tls = \"tls\"", MailTls::Tls, 465),
            ("tls = \"tls\"\nport = 4650", MailTls::Tls, 4650),
        ] {
            let m = Config::parse(&format!("{base}{extra}\n"), "x.toml", None)
                .unwrap()
                .mail
                .unwrap();
            assert_eq!((m.tls, m.port), (tls, port), "{extra}");
        }
        // Credentials: over TLS, or in plain text only when the operator says so.
        for extra in [
            "tls = \"starttls\"\nusername = \"u\"\npassword = \"p\"",
            "allow_plain_auth = true\nusername = \"u\"\npassword = \"p\"",
        ] {
            let m = Config::parse(&format!("{base}{extra}\n"), "x.toml", None)
                .unwrap()
                .mail
                .unwrap();
            assert_eq!(m.credentials, Some(("u".into(), "p".into())), "{extra}");
        }
    }

    #[test]
    fn a_mail_ca_file_is_read_relative_to_the_config_and_named_when_it_is_bad() {
        let dir = tempfile::tempdir().unwrap();
        let good = "-----BEGIN CERTIFICATE-----\n\
            MIIBozCCAUmgAwIBAgIUF+Z0j8CZBAKcMOz+r9lY97yC2P8wCgYIKoZIzj0EAwIw\n\
            HjEcMBoGA1UEAwwTU3dpdGNoYm9hcmQgdGVzdCBDQTAgFw0yNjEyMDcxMDMwNDha\n\
            GA8yMTI2MTExMzEwMzA0OFowHjEcMBoGA1UEAwwTU3dpdGNoYm9hcmQgdGVzdCBD\n\
            QTBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABDBU7qyshJT4GoCQQ77d6FHolroO\n\
            GYJGP4Ad5oOo4pIBrWqa2niFZks2v/u+aj1+oWgKxHa6VdlTrNQ46k8dQ/+jYzBh\n\
            MB0GA1UdDgQWBBS8lcdf/BFQd+yhHHacKPTBnX3ULjAfBgNVHSMEGDAWgBS8lcdf\n\
            /BFQd+yhHHacKPTBnX3ULjAPBgNVHRMBAf8EBTADAQH/MA4GA1UdDwEB/wQEAwIC\n\
            BDAKBggqhkjOPQQDAgNIADBFAiEA3hKzBtTkArkOZf2gizhpQAa55xGzJ5cgdoNe\n\
            yypMQYcCIErFlIegVNzr7utR/UZjB8DDT9t6hDoWcACbwcy52df5\n\
            -----END CERTIFICATE-----\n";
        std::fs::write(dir.path().join("ca.pem"), good).unwrap();
        std::fs::write(dir.path().join("junk.pem"), "hello\n").unwrap();
        let text = |file: &str| {
            format!(
                "[sip]\nlisten = [\"udp:127.0.0.1:5060\"]\nrealm = \"r\"\n[mail]\n\
                 relay = \"smtp.example.com\"\nfrom = \"sb@example.com\"\ntls = \"starttls\"\n\
                 ca_file = \"{file}\"\n"
            )
        };
        let m = Config::parse(&text("ca.pem"), "x.toml", Some(dir.path()))
            .unwrap()
            .mail
            .unwrap();
        let ca = m.ca.unwrap();
        assert_eq!(ca.path, dir.path().join("ca.pem"));
        assert_eq!(ca.pem, good.as_bytes());
        for (file, says) in [
            ("junk.pem", "no certificate"),
            ("missing.pem", "cannot read"),
            ("/dev/zero", "larger than 1048576 bytes"),
        ] {
            let e = Config::parse(&text(file), "x.toml", Some(dir.path())).unwrap_err();
            let e = &e.0[0];
            assert_eq!((e.key.as_str(), e.line), ("mail.ca_file", 8), "{e}");
            assert!(e.message.contains(says) && e.message.contains(file), "{e}");
        }
    }

    #[test]
    fn voicemail_has_defaults_and_checked_bounds() {
        use crate::core::VoicemailConfig;
        use std::time::Duration;
        let base = "[sip]\nlisten = [\"udp:127.0.0.1:5060\"]\nrealm = \"r\"\n";
        let defaults = VoicemailConfig {
            max_message: Duration::from_secs(180),
            max_messages: 100,
            min_message: Duration::from_millis(1000),
            silence: Some(Duration::from_secs(10)),
            silence_level: 100,
            feature_code: "*97".into(),
            access_number: None,
        };
        assert_eq!(
            Config::parse(base, "x.toml", None).unwrap().voicemail,
            defaults
        );
        assert_eq!(Config::embedded().unwrap().voicemail, defaults);
        let text = format!(
            "{base}[features]\nvoicemail = \"*86\"\n[voicemail]\nmax_message_secs = 600\n\
             max_messages = 5\nmin_message_ms = 0\nsilence_secs = 0\nsilence_level = 250\n\
             access_number = \"4999\"\n"
        );
        let c = Config::parse(&text, "x.toml", None).unwrap();
        assert_eq!(
            c.voicemail,
            VoicemailConfig {
                max_message: Duration::from_secs(600),
                max_messages: 5,
                min_message: Duration::ZERO,
                silence: None,
                silence_level: 250,
                feature_code: "*86".into(),
                access_number: Some("4999".into()),
            }
        );
        for (line, key) in [
            ("max_message_secs = 0", "voicemail.max_message_secs"),
            ("max_message_secs = 601", "voicemail.max_message_secs"),
            ("max_messages = 0", "voicemail.max_messages"),
            ("max_messages = 1001", "voicemail.max_messages"),
            ("silence_secs = 601", "voicemail.silence_secs"),
            ("access_number = \"12a\"", "voicemail.access_number"),
            ("access_number = \"\"", "voicemail.access_number"),
            ("silence_level = 0", "voicemail.silence_level"),
            ("min_message_ms = 60001", "voicemail.min_message_ms"),
            (
                "max_message_secs = 2\nmin_message_ms = 2000",
                "voicemail.min_message_ms",
            ),
            ("max_message_secs = 1", "voicemail.max_message_secs"),
        ] {
            let e = refused(&format!("{base}[voicemail]\n{line}\n"));
            assert_eq!(places(&e).last().map(|p| p.1), Some(key), "{line}: {e}");
            assert!(places(&e).iter().all(|p| p.2 >= 5), "{line}: {e}");
        }
        let e = refused(&format!("{base}[voicemail]\nmax_secs = 5\n"));
        assert!(e.to_string().contains("max_secs"), "{e}");
    }

    #[test]
    fn dialog_probes_every_90_s_unless_configured() {
        let base = "[sip]\nlisten = [\"udp:127.0.0.1:5060\"]\nrealm = \"r\"\n";
        assert_eq!(Config::embedded().unwrap().dialog_probe_secs, 90);
        assert_eq!(
            Config::parse(base, "x.toml", None)
                .unwrap()
                .dialog_probe_secs,
            90
        );
        for secs in [0, 15] {
            let text = format!("{base}[routing]\ndialog_probe_secs = {secs}\n");
            let c = Config::parse(&text, "x.toml", None).unwrap();
            assert_eq!(c.dialog_probe_secs, secs);
        }
        let text = format!("{base}[routing]\ndialog_probe_secs = 100000\n");
        let e = Config::parse(&text, "x.toml", None).unwrap_err();
        assert_eq!(e.0[0].key, "routing.dialog_probe_secs", "{e}");
    }

    #[test]
    fn reload_guards_have_defaults_and_bounds() {
        let base = "[sip]\nlisten = [\"udp:127.0.0.1:5060\"]\nrealm = \"r\"\n";
        let expected = ReloadRules {
            quiet: std::time::Duration::from_millis(300),
            shrink_percent: 50,
            shrink_min_users: 3,
        };
        assert_eq!(Config::embedded().unwrap().reload, expected);
        assert_eq!(
            Config::parse(base, "x.toml", None).unwrap().reload,
            expected
        );
        let text = format!(
            "{base}[policy]\npath = \"p.toml\"\n[policy.reload]\nquiet_ms = 1000\n\
             shrink_percent = 100\nshrink_min_users = 1\n"
        );
        let c = Config::parse(&text, "x.toml", None).unwrap();
        assert_eq!(
            c.reload,
            ReloadRules {
                quiet: std::time::Duration::from_millis(1000),
                shrink_percent: 100,
                shrink_min_users: 1,
            }
        );
        for (line, key) in [
            ("quiet_ms = 0", "policy.reload.quiet_ms"),
            ("shrink_percent = 0", "policy.reload.shrink_percent"),
            ("shrink_percent = 101", "policy.reload.shrink_percent"),
            ("shrink_min_users = 0", "policy.reload.shrink_min_users"),
        ] {
            let text = format!("{base}[policy.reload]\n{line}\n");
            let e = Config::parse(&text, "x.toml", None).unwrap_err();
            let e = &e.0[0];
            assert_eq!(
                (e.file.as_str(), e.line, e.key.as_str()),
                ("x.toml", 5, key)
            );
            assert!(e.message.contains("out of range"), "{}", e.message);
        }
    }

    #[test]
    fn per_user_and_per_source_caps_have_defaults_and_bounds() {
        let base = "[sip]\nlisten = [\"udp:127.0.0.1:5060\"]\nrealm = \"r\"\n";
        for c in [
            Config::embedded().unwrap(),
            Config::parse(base, "x.toml", None).unwrap(),
        ] {
            assert_eq!(c.max_subscriptions_per_user, 200);
            assert_eq!(c.max_tcp_connections_per_source, 32);
        }
        let text = format!(
            "{base}[limits]\nmax_tcp_connections_per_source = 4\n[subscriptions]\nmax_per_user = 3\n"
        );
        let c = Config::parse(&text, "x.toml", None).unwrap();
        assert_eq!(
            (
                c.max_tcp_connections_per_source,
                c.max_subscriptions_per_user
            ),
            (4, 3)
        );
        let text = format!(
            "{base}[limits]\nmax_tcp_connections_per_source = 0\n[subscriptions]\nmax_per_user = 0\n"
        );
        let e = refused(&text);
        assert_eq!(
            places(&e),
            [
                ("x.toml", "limits.max_tcp_connections_per_source", 5),
                ("x.toml", "subscriptions.max_per_user", 7)
            ],
            "{e}"
        );
    }

    #[test]
    fn metrics_are_open_unless_the_admin_token_is_asked_for() {
        let base = "[sip]\nlisten = [\"udp:127.0.0.1:5060\"]\nrealm = \"r\"\n";
        assert!(
            !Config::parse(base, "x.toml", None)
                .unwrap()
                .metrics_need_token
        );
        let text = format!("{base}[api]\nmetrics_need_token = true\n");
        let e = refused(&text);
        assert_eq!(places(&e), [("x.toml", "api.metrics_need_token", 5)], "{e}");
        let text =
            format!("{base}[api]\nmetrics_need_token = true\nadmin_token = \"0123456789abcdef\"\n");
        assert!(
            Config::parse(&text, "x.toml", None)
                .unwrap()
                .metrics_need_token
        );
    }

    #[test]
    fn media_has_defaults_and_its_errors_name_their_keys() {
        let base = "[sip]\nlisten = [\"udp:127.0.0.1:5060\"]\nrealm = \"r\"\n";
        let m = Config::parse(base, "x.toml", None).unwrap().media;
        assert!(m.enabled);
        assert_eq!(
            (m.first_port, m.last_port, m.max_sessions),
            (20_000, 29_999, 1000)
        );
        assert_eq!(m.advertise, None);
        assert_eq!(m.language, "en");
        assert_eq!(m.rtp_timeout, std::time::Duration::from_secs(30));
        assert_eq!(m.realtime_priority, Some(10));
        let text = format!(
            "{base}[media]\nbind = \"127.0.0.1\"\nadvertise = \"192.0.2.7\"\nfirst_port = 30000\nlast_port = 30099\nprompts = \"voice\"\nrealtime_priority = 0\n"
        );
        let m = Config::parse(&text, "x.toml", Some(Path::new("/etc/sb")))
            .unwrap()
            .media;
        assert_eq!(m.advertise, Some([192, 0, 2, 7].into()));
        assert_eq!((m.first_port, m.last_port), (30_000, 30_099));
        assert_eq!(m.prompts, Some(PathBuf::from("/etc/sb/voice")));
        assert_eq!(m.realtime_priority, None);
        let text = format!(
            "{base}[media]\nbind = \"here\"\nadvertise = \"0.0.0.0\"\nfirst_port = 30000\nlast_port = 30000\nmax_sessions = 0\nlanguage = \"xx\"\nrealtime_priority = 100\n"
        );
        let e = refused(&text);
        assert_eq!(
            places(&e),
            [
                ("x.toml", "media.bind", 5),
                ("x.toml", "media.advertise", 6),
                ("x.toml", "media.max_sessions", 9),
                ("x.toml", "media.realtime_priority", 11),
                ("x.toml", "media.last_port", 8),
                ("x.toml", "media.language", 10),
            ],
            "{e}"
        );
    }

    #[test]
    fn api_limits_have_defaults_and_bounds() {
        let base = "[sip]\nlisten = [\"udp:127.0.0.1:5060\"]\nrealm = \"r\"\n";
        for c in [
            Config::embedded().unwrap(),
            Config::parse(base, "x.toml", None).unwrap(),
        ] {
            assert_eq!(
                c.api_limits,
                ApiLimits {
                    max_connections: 256,
                    header_timeout: std::time::Duration::from_secs(10),
                    body_timeout: std::time::Duration::from_secs(10),
                }
            );
        }
        let text = format!(
            "{base}[api]\nmax_connections = 4\nheader_timeout_secs = 2\nbody_timeout_secs = 3\n"
        );
        let c = Config::parse(&text, "x.toml", None).unwrap();
        assert_eq!(
            (
                c.api_limits.max_connections,
                c.api_limits.header_timeout.as_secs(),
                c.api_limits.body_timeout.as_secs()
            ),
            (4, 2, 3)
        );
        let text = format!(
            "{base}[api]\nmax_connections = 0\nheader_timeout_secs = 0\nbody_timeout_secs = 99999\n"
        );
        let e = refused(&text);
        assert_eq!(
            places(&e),
            [
                ("x.toml", "api.max_connections", 5),
                ("x.toml", "api.header_timeout_secs", 6),
                ("x.toml", "api.body_timeout_secs", 7)
            ],
            "{e}"
        );
    }

    #[test]
    fn dns_servers_default_to_the_system_and_can_be_named() {
        let base = "[sip]\nlisten = [\"udp:127.0.0.1:5060\"]\nrealm = \"r\"\n";
        for c in [
            Config::embedded().unwrap(),
            Config::parse(base, "x.toml", None).unwrap(),
        ] {
            assert_eq!(c.dns, DnsConfig::default());
            assert!(c.dns.servers.is_empty(), "the system's resolv.conf");
        }
        let text = format!(
            "{base}[dns]\nservers = [\"127.0.0.1:5353\", \"192.0.2.53\", \"[::1]:53\", \"2001:db8::53\"]\n\
             timeout_ms = 500\nattempts = 0\n"
        );
        let c = Config::parse(&text, "x.toml", None).unwrap();
        let servers: Vec<String> = c.dns.servers.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            servers,
            [
                "127.0.0.1:5353",
                "192.0.2.53:53",
                "[::1]:53",
                "[2001:db8::53]:53"
            ]
        );
        assert_eq!(c.dns.timeout, std::time::Duration::from_millis(500));
        assert_eq!(c.dns.attempts, 0);
        let text = format!(
            "{base}[dns]\nservers = [\"127.0.0.1:5353\",\n  \"ns.example.com\",\n  \"127.0.0.1:0\",\n  \
             \"127.0.0.1:5353\"]\ntimeout_ms = 0\nattempts = 11\n"
        );
        let e = refused(&text);
        assert_eq!(
            places(&e),
            [
                ("x.toml", "dns.servers[1]", 6),
                ("x.toml", "dns.servers[2]", 7),
                ("x.toml", "dns.servers[3]", 8),
                ("x.toml", "dns.timeout_ms", 9),
                ("x.toml", "dns.attempts", 10),
            ],
            "{e}"
        );
        assert!(e.0[0].message.contains("not a name server address"), "{e}");
        assert!(e.0[2].message.contains("listed twice"), "{e}");
        let text = format!("{base}[dns]\nserver = [\"127.0.0.1\"]\n");
        let e = Config::parse(&text, "x.toml", None).unwrap_err();
        assert_eq!((e.0[0].key.as_str(), e.0[0].line), ("dns.server", 5), "{e}");
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let text = "[sip]\nlisten = [\"udp:127.0.0.1:5060\"]\nrealm = \"r\"\n[limits]\nmax_mesage_size = 10\n";
        let e = Config::parse(text, "x.toml", None).unwrap_err();
        let e = &e.0[0];
        assert_eq!(
            (e.file.as_str(), e.line, e.key.as_str()),
            ("x.toml", 5, "limits.max_mesage_size")
        );
        assert!(e.message.contains("unknown field"), "{}", e.message);
    }

    #[test]
    fn listen_entries_may_advertise_a_name() {
        let text = "[sip]\nrealm = \"r\"\nlisten = [\n  \"tcp:127.0.0.1:5060\",\n  \
            { addr = \"udp:0.0.0.0:5060\", advertise = \"203.0.113.5\" },\n  \
            { addr = \"udp:[::]:5062\", advertise = \"[2001:db8::5]:5070\" },\n  \
            { addr = \"tcp:0.0.0.0:5061\" },\n]\n";
        let c = Config::parse(text, "x.toml", None).unwrap();
        let shown: Vec<String> = c.listen.iter().map(|l| l.to_string()).collect();
        assert_eq!(
            shown,
            [
                "tcp:127.0.0.1:5060",
                "udp:0.0.0.0:5060 as 203.0.113.5:5060",
                "udp:[::]:5062 as [2001:db8::5]:5070",
                "tcp:0.0.0.0:5061",
            ]
        );
        // Errors name the entry's key and line.
        for (entry, key, says) in [
            (
                "{ addr = \"udp:0.0.0.0:5060\", advertise = \"2001:db8::5\" }",
                "sip.listen[1].advertise",
                "in brackets",
            ),
            (
                "{ addr = \"udp:0.0.0.0:5060\", advertise = \"0.0.0.0\" }",
                "sip.listen[1].advertise",
                "names no address",
            ),
            (
                "{ addr = \"udp:0.0.0.0:5060\", advertise = \"[2001:db8::5]\" }",
                "sip.listen[1].advertise",
                "IPv6 address, and this listener's is IPv4",
            ),
            (
                "{ addr = \"udp:nowhere\", advertise = \"pbx.example\" }",
                "sip.listen[1].addr",
                "is not an address and port",
            ),
            (
                "{ addr = \"udp:127.0.0.1:5060\" }",
                "sip.listen[1].addr",
                "listed twice",
            ),
            (
                "{ advertise = \"pbx.example\" }",
                "sip.listen[1]",
                "needs `addr`",
            ),
            (
                "{ addr = \"udp:0.0.0.0:5060\", advertize = \"x\" }",
                "sip.listen[1].advertize",
                "unknown key `advertize`",
            ),
            ("5060", "sip.listen", "a listening address"),
        ] {
            let text = format!(
                "[sip]\nrealm = \"r\"\nlisten = [\n  \"udp:127.0.0.1:5060\",\n  {entry},\n]\n"
            );
            let e = Config::parse(&text, "x.toml", None).unwrap_err();
            assert_eq!(e.0.len(), 1, "{entry}: {e}");
            assert_eq!((e.0[0].key.as_str(), e.0[0].line), (key, 5), "{entry}: {e}");
            assert!(e.0[0].message.contains(says), "{entry}: {e}");
        }
    }

    #[test]
    fn all_semantic_errors_at_once() {
        let text = "[sip]\nlisten = [\"udp:127.0.0.1:5060\", \"sctp:1.2.3.4:1\"]\nrealm = \"r\"\n\
            [timers]\nt1_ms = 500\nt2_ms = 100\n[registrar]\nmin_expires = 60\ndefault_expires = 30\n";
        let e = Config::parse(text, "x.toml", None).unwrap_err();
        let keys: Vec<&str> = e.0.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            vec!["sip.listen[1]", "timers.t2_ms", "registrar.default_expires"]
        );
        assert_eq!(e.0[0].line, 2);
        assert_eq!(e.0[1].line, 6);
        let shown = e.to_string();
        assert!(
            shown.contains("--> x.toml:6:9 (key timers.t2_ms)"),
            "{shown}"
        );
    }

    #[test]
    fn type_errors_have_positions() {
        let text = "[sip]\nlisten = [\"udp:127.0.0.1:5060\"]\nrealm = \"r\"\n[registrar]\nmin_expires = \"soon\"\n";
        let e = Config::parse(text, "x.toml", None).unwrap_err();
        assert_eq!(e.0[0].line, 5);
        assert_eq!(e.0[0].key, "registrar.min_expires");
    }

    #[test]
    fn relative_paths_follow_the_file() {
        let text = "[sip]\nlisten = [\"udp:127.0.0.1:5060\"]\nrealm = \"r\"\n[store]\nstate_dir = \"st\"\n[policy]\npath = \"p.toml\"\n";
        let c = Config::parse(text, "x.toml", Some(Path::new("/etc/sb"))).unwrap();
        assert_eq!(c.policy_path.unwrap(), PathBuf::from("/etc/sb/p.toml"));
        if std::env::var_os("STATE_DIRECTORY").is_none() {
            assert_eq!(c.state_dir, PathBuf::from("/etc/sb/st"));
        }
    }
}
