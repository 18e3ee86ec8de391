//! The core's side of the wire, shared by every sub-machine: the transaction layer, who
//! owns each transaction, the queue of outputs, the seeded random generator, and the names
//! and addresses of this server. Requests and responses leave the core only through here.

use crate::presence_service::Reply;
use bytes::Bytes;
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;
use switchboard_sip::entropy::Entropy;
use switchboard_sip::message;
use switchboard_sip::msg::headers::Header;
use switchboard_sip::msg::{Request, Response, Uri};
use switchboard_sip::peer::Peer;
use switchboard_sip::proxy;
use switchboard_sip::proxy::HostPort;
use switchboard_sip::transaction::{Action, State, TransactionLayer, TxError, TxId};
use switchboard_sip::transport::{FixedInterfaces, Interfaces, Listener, Transport};
use switchboard_sip::GrowingMap;
use switchboard_store::Write;

/// The current time, both ways the core needs it.
#[derive(Clone, Copy, Debug)]
pub struct Now {
    /// Monotonic time, for protocol timers.
    pub mono: Instant,
    /// Wall-clock Unix seconds, for binding expiry (which must survive restarts).
    pub unix: u64,
}

/// What the core asks the shell to do.
#[derive(Debug)]
pub enum Output {
    Send {
        to: Peer,
        bytes: Bytes,
    },
    /// Make these writes durable, then hand in [`super::Input::Persisted`] with `token`.
    Persist {
        token: u64,
        writes: Vec<Write>,
    },
    /// The answer to presence command `id` ([`super::Input::Command`]); boxed, as it is
    /// far larger than the other outputs.
    Reply {
        id: u64,
        reply: Box<Reply>,
    },
    /// Keep the stream connection `peer.conn` open until `until` however idle it is: it
    /// carries a registration (a flow, RFC 5626), the only way to reach its phone.
    Hold {
        peer: Peer,
        until: Instant,
    },
    /// Look this DNS question up and hand in its answer as [`super::Input::DnsAnswer`]
    /// (exactly once, also when the lookup fails). Lookups come after the other outputs
    /// of the same event.
    Lookup(switchboard_sip::locate::Query),
    /// Hand this command to the media engine (`switchboard_media::session`); its events
    /// come back as [`super::Input::Media`].
    Media(switchboard_media::session::Command),
    /// Read the row `key` of `table` (off the core's thread: the core never blocks on the
    /// store) and hand in what it holds as [`super::Input::Read`] with `token` — exactly
    /// once, None when there is no such row or it could not be read. The shell bounds what
    /// it hands back ([`MAX_READ`]: a larger row counts as unreadable).
    Read {
        token: u64,
        table: switchboard_store::Table,
        key: String,
    },
    /// Tell the other nodes sharing the state these rows of
    /// [`switchboard_store::tables::CALL_STATUS`] (who is in a call through this node),
    /// without waiting for the disk; nothing comes back. Only with
    /// [`super::CoreConfig::node`] set.
    Share(Vec<Write>),
}

/// The largest row an [`Output::Read`] hands back, in bytes: a WAV of ten minutes (the
/// longest recording a mailbox keeps) with room to spare.
pub const MAX_READ: usize = 16 << 20;

/// Who a transaction belongs to: one lookup when its response, timeout or end comes, then
/// one `match` (see `Core::route_response` and `Core::route_tx_event`). Filed when the
/// transaction is made, forgotten when it ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Owner {
    /// A call's INVITE server transaction (the call's key).
    Call(u64),
    /// A branch of a call: a client INVITE.
    Branch {
        call: u64,
        branch: crate::executor::BranchId,
    },
    /// A request of ours to the target of a confirmed forward (our INVITE, our BYE): its
    /// state is in the call's branch (`core::calls::confirm_b2b`).
    Confirm {
        call: u64,
        branch: crate::executor::BranchId,
    },
    /// A request relayed inside a dialog (its state is in `relays`).
    Relay,
    /// A NOTIFY to a watcher of this subscription.
    Notify(switchboard_sip::subscription::SubId),
    /// A message-waiting NOTIFY outside any subscription, to a registered device (its
    /// state, by this id, is in `watchers`).
    Mwi(u64),
    /// A probe or BYE of an answered call (its state is in `dialogs`).
    Dialog,
    /// A trunk's REGISTER (its registration, by key, is in `registrant`).
    Registration(u64),
}

/// What names this server: its domains (lower-case), its listeners with the names they
/// advertise, and what the system says of its own addresses (which a listener bound to
/// every interface needs).
pub(crate) struct LocalNames {
    pub domains: Vec<String>,
    pub listeners: Vec<Listener>,
    /// The `host:port` each listener advertises (by index), ready for headers.
    advertised: Vec<Option<Arc<str>>>,
    pub interfaces: Box<dyn Interfaces>,
}

impl LocalNames {
    /// Our names; `interfaces` None: loopback (`127.0.0.1`, `::1`) and the listeners' own
    /// addresses are this machine's, and nothing else is (tests, replays).
    pub(crate) fn new(
        domains: Vec<String>,
        listeners: Vec<Listener>,
        interfaces: Option<Box<dyn Interfaces>>,
    ) -> Self {
        let advertised = listeners
            .iter()
            .map(|l| l.advertised().map(|(h, p)| Arc::from(format!("{h}:{p}"))))
            .collect();
        let interfaces = interfaces.unwrap_or_else(|| {
            let mut own: Vec<IpAddr> =
                vec![[127, 0, 0, 1].into(), std::net::Ipv6Addr::LOCALHOST.into()];
            own.extend(
                listeners
                    .iter()
                    .map(|l| l.addr.ip())
                    .filter(|ip| !ip.is_unspecified()),
            );
            Box::new(FixedInterfaces(own))
        });
        LocalNames {
            domains,
            listeners,
            advertised,
            interfaces,
        }
    }

    /// Whether a host (a domain, an advertised name, or an IP literal, bracketed or not)
    /// names this server.
    pub(crate) fn is_local_host(&self, host: &str) -> bool {
        let h = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        if self.domains.contains(&h) {
            return true;
        }
        match h.parse::<IpAddr>() {
            // 0.0.0.0 and :: name no one.
            Ok(ip) if ip.is_unspecified() => false,
            Ok(ip) => {
                self.listeners.iter().any(|l| {
                    l.addr.ip() == ip || l.advertise.as_ref().and_then(|a| a.ip()) == Some(ip)
                }) || (self
                    .listeners
                    .iter()
                    .any(|l| l.is_wildcard() && l.addr.is_ipv4() == ip.is_ipv4())
                    && self.interfaces.is_own(ip))
            }
            Err(_) => self
                .listeners
                .iter()
                .any(|l| l.advertise.as_ref().is_some_and(|a| a.host == h)),
        }
    }

    /// Whether `addr` (an IP address and port) is one of ours: a listener's address, the
    /// address it advertises, or — for a listener bound to every interface — any address
    /// of this machine at its port.
    pub(crate) fn is_our_addr(&self, addr: SocketAddr) -> bool {
        if addr.ip().is_unspecified() {
            return false; // 0.0.0.0 and :: name no one
        }
        let mut wildcard = false;
        for l in &self.listeners {
            if l.advertised().is_some_and(|(_, p)| {
                p == addr.port() && l.advertise.as_ref().and_then(|a| a.ip()) == Some(addr.ip())
            }) {
                return true;
            }
            if l.addr.port() == addr.port() {
                if l.addr.ip() == addr.ip() {
                    return true;
                }
                wildcard |= l.is_wildcard() && l.addr.is_ipv4() == addr.is_ipv4();
            }
        }
        wildcard && self.interfaces.is_own(addr.ip())
    }

    /// The listener a message to `addr` over `transport` came to: the one bound to that
    /// address, else one bound to every interface at its port.
    fn listener_at(&self, transport: Transport, addr: SocketAddr) -> Option<usize> {
        let l = &self.listeners;
        l.iter()
            .position(|l| l.transport == transport && l.addr == addr)
            .or_else(|| {
                l.iter().position(|l| {
                    l.transport == transport
                        && l.is_wildcard()
                        && l.addr.port() == addr.port()
                        && l.addr.is_ipv4() == addr.is_ipv4()
                })
            })
    }

    /// Listener `i` used at address `addr` of this machine (its own address, unless it is
    /// bound to every interface), toward or from `peer`.
    fn local(&self, i: usize, addr: SocketAddr, peer: IpAddr) -> Option<Local> {
        let l = &self.listeners[i];
        let advertised = self.advertised[i].clone();
        let addr = if !l.is_wildcard() {
            l.addr
        } else if !addr.ip().is_unspecified() || advertised.is_some() {
            SocketAddr::new(addr.ip(), l.addr.port())
        } else {
            // Never 0.0.0.0 in a header: the address the system sends from toward the peer.
            SocketAddr::new(self.interfaces.source_toward(peer)?, l.addr.port())
        };
        Some(Local {
            transport: l.transport,
            addr,
            advertised,
        })
    }
}

/// One of this server's addresses as a message uses it: the address on this machine it
/// came to or leaves from, and how Via, Record-Route and Contact name it there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Local {
    pub transport: Transport,
    /// The address on this machine: a listener's own; for a listener bound to every
    /// interface, the one the message came to or leaves from — unspecified (the system
    /// chooses) only when an advertised name stands for it in headers.
    pub addr: SocketAddr,
    /// The `host:port` its listener advertises; None: headers name `addr`.
    pub advertised: Option<Arc<str>>,
}

impl Local {
    /// How headers name it.
    pub fn host_port(&self) -> HostPort<'_> {
        match &self.advertised {
            Some(name) => HostPort::Named(name),
            None => HostPort::Addr(self.addr),
        }
    }

    /// A Via of ours here, with `branch`.
    pub fn via(&self, branch: &str) -> String {
        proxy::via_value_at(self.transport, self.host_port(), branch)
    }

    /// A Record-Route (or Route) URI naming us here, with `params`.
    pub fn route_uri(&self, params: &str) -> String {
        proxy::own_uri_at(self.transport, self.host_port(), params)
    }

    /// Our Contact for the dialogs this server is an endpoint of (subscriptions).
    pub fn contact(&self) -> String {
        self.route_uri("").replace(";lr", "")
    }
}

/// The core's side of the wire (see the module's documentation).
pub(crate) struct Wire {
    pub transactions: TransactionLayer,
    /// Whose each live transaction is: filed when it is made, forgotten when it ends.
    pub owners: GrowingMap<TxId, Owner>,
    pub out: VecDeque<Output>,
    /// Transaction events other than transmissions, handled once the event that caused
    /// them is done (so that no handler runs inside another).
    pub events: VecDeque<Action>,
    /// Every random number the core makes.
    pub entropy: Entropy,
    /// The Server header of our responses.
    pub server: String,
    /// Our domains, listeners and the names they advertise.
    pub local: LocalNames,
    /// Responses sent, ours and relayed, by class (`1xx` first); retransmissions by the
    /// transaction layer are not counted.
    pub sent: [u64; 6],
}

impl Wire {
    /// A fresh tag (To tags of our responses, ETags).
    pub fn tag(&mut self) -> String {
        self.entropy.token()
    }

    /// A fresh Via branch, carrying `loop_key` (§16.6 step 8) when there is one.
    pub fn branch(&mut self, loop_key: Option<u64>) -> String {
        let key = loop_key.unwrap_or_else(|| self.entropy.u64());
        proxy::branch(key, self.entropy.u64())
    }

    /// Sends a response through its server transaction.
    pub fn respond(&mut self, tx: TxId, resp: Response, now: Now) {
        let code = resp.status_code.code();
        match self.transactions.respond(tx, resp, now.mono) {
            Ok(_) => self.count_sent(code),
            Err(e) => tracing::debug!(error = ?e, "response for a finished transaction dropped"),
        }
        self.flush();
    }

    /// Answers a request without keeping its transaction: what the core answers before the
    /// sender has proved who it is (challenges, refusals, OPTIONS) keeps no state and is
    /// never retransmitted, so it can neither fill the tables nor amplify a forged source.
    pub fn respond_stateless(&mut self, tx: TxId, resp: Response) {
        match self.transactions.respond_stateless(tx, &resp) {
            Ok(_) => self.count_sent(resp.status_code.code()),
            Err(e) => {
                tracing::debug!(error = ?e, "stateless response for a finished transaction dropped")
            }
        }
        self.flush();
    }

    /// A response of ours (a fresh To tag) to `req` with `extra` headers, stateless (see
    /// [`Wire::respond_stateless`]).
    pub fn reply_stateless(&mut self, tx: TxId, req: &Request, code: u16, extra: Vec<Header>) {
        let tag = self.tag();
        let mut resp = message::response(req, code, Some(&tag), &self.server);
        resp.headers.extend(extra);
        self.respond_stateless(tx, resp);
    }

    /// A response of ours (a fresh To tag) to `req`, with `extra` headers.
    pub fn reply_to(&mut self, tx: TxId, req: &Request, code: u16, extra: Vec<Header>, now: Now) {
        let tag = self.tag();
        let mut resp = message::response(req, code, Some(&tag), &self.server);
        resp.headers.extend(extra);
        self.respond(tx, resp, now);
    }

    /// A 2xx relayed through server transaction `tx`, or statelessly by its Via when the
    /// caller already has a final response (§16.7 step 9: every 2xx goes on).
    pub fn relay_2xx(&mut self, tx: TxId, resp: Response, now: Now) {
        let open = matches!(
            self.transactions.state(tx),
            Some(State::Trying | State::Proceeding | State::Accepted)
        );
        if open {
            self.respond(tx, resp, now);
        } else {
            // From where the INVITE came to, while its transaction remembers it.
            let local = self.transactions.peer(tx).and_then(|p| p.local);
            self.send_stateless_response(&resp, local);
        }
    }

    /// Sends a request through a new client transaction owned by `owner`.
    pub fn send_request(
        &mut self,
        req: Request,
        to: Peer,
        owner: Owner,
        now: Now,
    ) -> Result<TxId, TxError> {
        let sent = self.transactions.send_request(req, to, now.mono);
        self.flush();
        if let Ok(tx) = sent {
            self.owners.insert(tx, owner);
        }
        sent
    }

    /// Sends bytes outside any transaction (an ACK for a 2xx, a stateless response).
    pub fn send(&mut self, to: Peer, bytes: Vec<u8>) {
        self.out.push_back(Output::Send {
            to,
            bytes: Bytes::from(bytes),
        });
    }

    /// A response sent statelessly to where its top Via says, from `local` when known
    /// (else the transport chooses).
    pub fn send_stateless_response(&mut self, resp: &Response, local: Option<SocketAddr>) {
        if let Some((transport, addr)) = proxy::response_destination(resp) {
            let to = Peer {
                transport,
                addr,
                conn: None,
                local,
            };
            self.send(to, switchboard_sip::wire::response_bytes(resp));
            self.count_sent(resp.status_code.code());
        }
    }

    /// Counts a response sent, by its class.
    fn count_sent(&mut self, code: u16) {
        if let Some(i) = crate::metrics::class_index(code) {
            self.sent[i] += 1;
        }
    }

    /// Moves what the transaction layer produced along: transmissions out, other events
    /// onto the queue of events (see `Core::handle_tx_events`).
    pub fn flush(&mut self) {
        while let Some(action) = self.transactions.poll_action() {
            match action {
                Action::Transmit { to, bytes } => self.out.push_back(Output::Send { to, bytes }),
                other => {
                    tracing::trace!(action = ?other, "transaction event");
                    self.events.push_back(other);
                }
            }
        }
    }

    /// Whether a host (a domain, or an IP literal) names this server.
    pub fn is_local_host(&self, host: &str) -> bool {
        self.local.is_local_host(host)
    }

    /// Whether a Route/Request-URI names this proxy: one of our listening addresses (any
    /// address of this machine for a listener bound to every interface), an address or
    /// name a listener advertises (at its port, or none), or one of our domains (any port
    /// we listen on, or none).
    pub fn uri_is_ours(&self, uri: &str) -> bool {
        if let Some((_, addr)) = proxy::uri_target(uri) {
            return self.local.is_our_addr(addr);
        }
        let Ok(parsed) = Uri::try_from(proxy::strip_angle(uri)) else {
            return false;
        };
        if parsed.user().is_some() {
            return false;
        }
        let host = parsed.host_with_port.host.to_string().to_ascii_lowercase();
        let port = parsed.host_with_port.port.as_ref().map(|p| p.value());
        let listeners = &self.local.listeners;
        let advertised = listeners
            .iter()
            .filter_map(|l| l.advertised())
            .any(|(h, p)| h == host && port.is_none_or(|q| q == p));
        advertised
            || (self.local.domains.contains(&host)
                && port.is_none_or(|p| {
                    listeners
                        .iter()
                        .any(|l| l.addr.port() == p || l.advertised().is_some_and(|a| a.1 == p))
                }))
    }

    /// Whether a Via sent-by (`host[:port]`) is one of our listening addresses.
    pub fn sent_by_is_ours(&self, sent_by: &str) -> bool {
        self.uri_is_ours(&format!("sip:{sent_by}"))
    }

    /// Where a message received over `transport` at `addr` (an address of this machine)
    /// from `peer` came to, as headers name it.
    pub fn local_at(&self, transport: Transport, addr: SocketAddr, peer: IpAddr) -> Local {
        self.local
            .listener_at(transport, addr)
            .and_then(|i| self.local.local(i, addr, peer))
            .unwrap_or(Local {
                transport,
                addr,
                advertised: None,
            })
    }

    /// Where a message to `to` leaves from, also written into `to.local` for the socket
    /// layer: the address of its flow when it has one (the address of ours its
    /// registration, subscription or request came to); otherwise a listener of its
    /// transport and address family — with several, the one at the address the system's
    /// routes choose toward it — at that address if the listener is bound to every
    /// interface. None when no listener can reach it.
    pub fn leave_from(&self, to: &mut Peer) -> Option<Local> {
        let names = &self.local;
        let peer_ip = to.addr.ip();
        let flow = to.local.filter(|l| l.is_ipv4() == to.addr.is_ipv4());
        let chosen = flow
            .and_then(|l| names.listener_at(to.transport, l).map(|i| (i, l)))
            .and_then(|(i, l)| names.local(i, l, peer_ip))
            .or_else(|| {
                let serving = || {
                    (0..names.listeners.len())
                        .filter(|&i| names.listeners[i].serves(to.transport, peer_ip))
                };
                let first = serving().next()?;
                let i = if serving().nth(1).is_none() {
                    first
                } else {
                    let at = |pred: &dyn Fn(&Listener) -> bool| {
                        serving().find(|&i| pred(&names.listeners[i]))
                    };
                    names
                        .interfaces
                        .source_toward(peer_ip)
                        .and_then(|s| {
                            at(&|l| l.addr.ip() == s).or_else(|| at(&|l| l.is_wildcard()))
                        })
                        .or_else(|| at(&|l| l.addr.ip().is_loopback() == peer_ip.is_loopback()))
                        .unwrap_or(first)
                };
                let bound = names.listeners[i].addr;
                names.local(i, bound, peer_ip)
            })?;
        to.local = Some(chosen.addr);
        Some(chosen)
    }

    /// The listener a URI of ours names (a Route we consumed: the entry facing the next
    /// hop), as a request leaves from it; None when it names none of our listeners by
    /// address or advertised name (a domain, say).
    pub fn local_named(&self, uri: &str) -> Option<Local> {
        let names = &self.local;
        let transport = match proxy::uri_param(uri, "transport") {
            Some(t) => Transport::from_param(t)?,
            None => Transport::Udp,
        };
        let (host, port, ip) = match proxy::uri_target(uri) {
            Some((_, addr)) => (None, addr.port(), Some(addr)),
            None => {
                let parsed = Uri::try_from(proxy::strip_angle(uri)).ok()?;
                let host = parsed.host_with_port.host.to_string().to_ascii_lowercase();
                let port = parsed
                    .host_with_port
                    .port
                    .as_ref()
                    .map_or(transport.default_port(), |p| p.value());
                (Some(host), port, None)
            }
        };
        let by_name = names.listeners.iter().position(|l| {
            l.transport == transport
                && l.advertised().is_some_and(|(h, p)| {
                    p == port
                        && match (&host, ip) {
                            (Some(host), _) => h == host,
                            (None, Some(ip)) => {
                                l.advertise.as_ref().and_then(|a| a.ip()) == Some(ip.ip())
                            }
                            (None, None) => false,
                        }
                })
        });
        if let Some(i) = by_name {
            let l = &names.listeners[i];
            let at = SocketAddr::new(l.addr.ip(), l.addr.port());
            return names.local(i, at, at.ip());
        }
        let addr = ip?;
        let i = names.listener_at(transport, addr)?;
        names.local(i, addr, addr.ip())
    }
}

/// Whether a request belongs in a dialog (a To tag) rather than starting one.
pub(crate) fn in_dialog(req: &Request) -> bool {
    use switchboard_sip::msg::prelude::*;
    req.to_header().is_ok_and(|t| message::has_tag(t.value()))
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
