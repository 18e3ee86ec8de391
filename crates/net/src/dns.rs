//! DNS lookups for the locator (`switchboard_sip::locate`): a question in, its answer out,
//! looked up on the runtime's tasks, never on the core's turn.
//!
//! The core's [`Locator`](switchboard_sip::locate::Locator) decides what to ask and keeps
//! the answers (its cache, by their TTL); this module only asks. [`Dns::start`] starts the
//! task that takes questions ([`Dns::ask`], which never blocks) and looks them up, several
//! at once, and sends each [`Answer`] back on a channel for the shell to hand to the core.
//! Every question gets exactly one answer, [`Answer::Failed`] when the servers did not
//! answer in time (the wait is bounded), answered with an error, or too many questions
//! were waiting.
//!
//! Lookups use `hickory-resolver` with its own cache off (the locator's is the one that
//! counts), the name servers of `/etc/resolv.conf` unless [`DnsConfig::servers`] names
//! others (tests point it at a dnsmasq on a loopback port), and `/etc/hosts` for addresses.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::rr::{Name, RData, RecordType as HickoryType};
use hickory_resolver::TokioResolver;
use switchboard_sip::locate::{Answer, Naptr, Query, Record, RecordType, Srv};
use tokio::sync::{mpsc, Semaphore};

/// Lookups under way at once; further questions wait their turn.
pub const MAX_LOOKUPS: usize = 64;
/// Questions waiting or under way beyond which new ones are answered failed at once.
pub const MAX_WAITING: usize = 4096;

/// Where and how names are looked up (`[dns]` in the daemon's configuration).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsConfig {
    /// The name servers to ask, in order; empty: those of `/etc/resolv.conf`.
    pub servers: Vec<SocketAddr>,
    /// How long to wait for a server's answer before trying again (or the next server).
    pub timeout: Duration,
    /// How many more times a question is tried after a failure.
    pub attempts: usize,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            servers: Vec::new(),
            timeout: Duration::from_secs(2),
            attempts: 2,
        }
    }
}

impl DnsConfig {
    /// The longest one lookup can take: every try at every server timing out, and a margin.
    pub fn lookup_bound(&self) -> Duration {
        let servers = self.servers.len().max(1) as u32;
        self.timeout * (self.attempts as u32 + 1) * servers + Duration::from_millis(500)
    }
}

/// The resolver could not be set up (the system's configuration could not be read).
#[derive(Debug)]
pub struct DnsSetupError(String);

impl std::fmt::Display for DnsSetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DNS resolver: {}", self.0)
    }
}

impl std::error::Error for DnsSetupError {}

/// Looks up one question at a time; see [`Dns`] for the task that runs many.
#[derive(Clone)]
pub struct Resolver {
    inner: TokioResolver,
    bound: Duration,
}

impl Resolver {
    /// A resolver with `config`'s servers (or the system's). Call from within the tokio
    /// runtime that will run the lookups.
    pub fn new(config: &DnsConfig) -> Result<Resolver, DnsSetupError> {
        let mut builder = if config.servers.is_empty() {
            TokioResolver::builder_tokio().map_err(|e| {
                DnsSetupError(format!("cannot read the system's configuration: {e}"))
            })?
        } else {
            let servers = config
                .servers
                .iter()
                .map(|s| {
                    // UDP, and TCP for answers too long for a datagram, at the given port.
                    let mut udp = ConnectionConfig::udp();
                    udp.port = s.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = s.port();
                    NameServerConfig::new(s.ip(), true, vec![udp, tcp])
                })
                .collect();
            TokioResolver::builder_with_config(
                ResolverConfig::from_name_servers(servers),
                TokioRuntimeProvider::default(),
            )
        };
        let opts = builder.options_mut();
        opts.timeout = config.timeout;
        opts.attempts = config.attempts;
        // The locator caches by TTL; a second cache here would only hide changes longer.
        opts.cache_size = 0;
        // As many questions at once over one TCP connection as this module asks at once.
        opts.max_active_requests = opts.max_active_requests.max(MAX_LOOKUPS);
        let inner = builder
            .build()
            .map_err(|e| DnsSetupError(format!("cannot be set up: {e}")))?;
        Ok(Resolver {
            inner,
            bound: config.lookup_bound(),
        })
    }

    /// Looks one question up. Never fails: a failure is [`Answer::Failed`]; bounded in
    /// time by [`DnsConfig::lookup_bound`].
    pub async fn lookup(&self, query: &Query) -> Answer {
        let name = match question_name(&query.name) {
            Ok(n) => n,
            Err(why) => return Answer::Failed(why),
        };
        let kind = match query.record_type {
            RecordType::Naptr => HickoryType::NAPTR,
            RecordType::Srv => HickoryType::SRV,
            RecordType::A => HickoryType::A,
            RecordType::Aaaa => HickoryType::AAAA,
        };
        let looked_up = tokio::time::timeout(self.bound, self.inner.lookup(name, kind)).await;
        let lookup = match looked_up {
            Err(_) => {
                return Answer::Failed(format!("no answer within {} ms", self.bound.as_millis()))
            }
            Ok(Err(NetError::Dns(DnsError::NoRecordsFound(none)))) => {
                return Answer::NoRecords {
                    ttl: none.negative_ttl.map(|s| Duration::from_secs(s.into())),
                }
            }
            Ok(Err(e)) => return Answer::Failed(e.to_string()),
            Ok(Ok(lookup)) => lookup,
        };
        let mut records = Vec::new();
        let mut ttl: Option<u32> = None;
        for r in lookup.answers() {
            let record = match (&r.data, query.record_type) {
                (RData::NAPTR(n), RecordType::Naptr) => Record::Naptr(Naptr {
                    order: n.order,
                    preference: n.preference,
                    flags: String::from_utf8_lossy(&n.flags).into_owned(),
                    services: String::from_utf8_lossy(&n.services).into_owned(),
                    regexp: String::from_utf8_lossy(&n.regexp).into_owned(),
                    replacement: n.replacement.to_ascii(),
                }),
                (RData::SRV(s), RecordType::Srv) => Record::Srv(Srv {
                    priority: s.priority,
                    weight: s.weight,
                    port: s.port,
                    target: s.target.to_ascii(),
                }),
                (RData::A(a), RecordType::A) => Record::Ip(IpAddr::V4(a.0)),
                (RData::AAAA(a), RecordType::Aaaa) => Record::Ip(IpAddr::V6(a.0)),
                _ => continue, // a CNAME on the way, or another type
            };
            records.push(record);
            ttl = Some(ttl.map_or(r.ttl, |t| t.min(r.ttl)));
        }
        match ttl {
            Some(ttl) => Answer::Records {
                records,
                ttl: Duration::from_secs(ttl.into()),
            },
            None => Answer::NoRecords { ttl: None },
        }
    }
}

/// The name to ask: a name with a dot is taken as fully qualified (no search domains
/// appended, whatever `ndots` says); a single label is left to the search list.
fn question_name(name: &str) -> Result<Name, String> {
    let text = if name.contains('.') {
        format!("{name}.")
    } else {
        name.to_string()
    };
    Name::from_ascii(&text).map_err(|e| format!("{name:?} is not a DNS name: {e}"))
}

/// The lookup task's handle: questions go in with [`Dns::ask`]; answers come out of the
/// receiver [`Dns::start`] returned.
#[derive(Clone)]
pub struct Dns {
    questions: mpsc::UnboundedSender<Query>,
    answers: mpsc::UnboundedSender<(Query, Answer)>,
    /// Questions asked and not yet answered.
    waiting: Arc<AtomicUsize>,
}

impl Dns {
    /// Starts the lookup task on the current tokio runtime.
    pub fn start(
        config: &DnsConfig,
    ) -> Result<(Dns, mpsc::UnboundedReceiver<(Query, Answer)>), DnsSetupError> {
        Ok(Dns::with_resolver(Resolver::new(config)?))
    }

    /// Starts the lookup task with a resolver of one's own.
    pub fn with_resolver(resolver: Resolver) -> (Dns, mpsc::UnboundedReceiver<(Query, Answer)>) {
        let (questions, mut rx) = mpsc::unbounded_channel::<Query>();
        let (answers, answers_rx) = mpsc::unbounded_channel();
        let waiting = Arc::new(AtomicUsize::new(0));
        let dns = Dns {
            questions,
            answers: answers.clone(),
            waiting: waiting.clone(),
        };
        tokio::spawn(async move {
            let slots = Arc::new(Semaphore::new(MAX_LOOKUPS));
            while let Some(query) = rx.recv().await {
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    break;
                };
                let reply = Reply {
                    query: Some(query.clone()),
                    answers: answers.clone(),
                    waiting: waiting.clone(),
                };
                let resolver = resolver.clone();
                tokio::spawn(async move {
                    let answer = resolver.lookup(&query).await;
                    reply.send(answer);
                    drop(slot);
                });
            }
        });
        (dns, answers_rx)
    }

    /// Asks a question; its answer comes out of the receiver. Never blocks.
    pub fn ask(&self, query: Query) {
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= MAX_WAITING {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            let why = format!("more than {MAX_WAITING} DNS lookups waiting");
            let _ = self.answers.send((query, Answer::Failed(why)));
            return;
        }
        if let Err(mpsc::error::SendError(query)) = self.questions.send(query) {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            let why = "the DNS lookup task has ended".to_string();
            let _ = self.answers.send((query, Answer::Failed(why)));
        }
    }

    /// Questions asked and not yet answered.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }
}

/// Sends a question's answer once; dropped unsent (a lookup task that panicked or was
/// cancelled), it answers "failed", so that no resolution waits forever.
struct Reply {
    query: Option<Query>,
    answers: mpsc::UnboundedSender<(Query, Answer)>,
    waiting: Arc<AtomicUsize>,
}

impl Reply {
    fn send(mut self, answer: Answer) {
        if let Some(query) = self.query.take() {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            let _ = self.answers.send((query, answer));
        }
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        if let Some(query) = self.query.take() {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            let _ = self
                .answers
                .send((query, Answer::Failed("the lookup was cut short".into())));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_names_are_asked_as_fully_qualified() {
        assert!(question_name("carrier.test").unwrap().is_fqdn());
        assert!(!question_name("pbx").unwrap().is_fqdn());
        assert!(question_name("_sip._udp.carrier.test").unwrap().is_fqdn());
        assert!(question_name(&"a".repeat(70)).is_err());
    }

    #[test]
    fn the_bound_covers_every_try() {
        let c = DnsConfig {
            servers: vec!["127.0.0.1:53".parse().unwrap(), "[::1]:53".parse().unwrap()],
            timeout: Duration::from_millis(100),
            attempts: 1,
        };
        assert_eq!(c.lookup_bound(), Duration::from_millis(900));
        assert_eq!(
            DnsConfig::default().lookup_bound(),
            Duration::from_millis(6500)
        );
    }
}
