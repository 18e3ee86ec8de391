//! The core's side of the wire, shared by every sub-machine: the transaction layer, who
//! owns each transaction, the queue of outputs, the seeded random generator, and the names
//! and addresses of this server. Requests and responses leave the core only through here.

use crate::presence_service::Reply;
use bytes::Bytes;
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;
use switchboard_sip::entropy::Entropy;
use switchboard_sip::message;
use switchboard_sip::msg::headers::Header;
use switchboard_sip::msg::{Request, Response, Uri};
use switchboard_sip::peer::Peer;
use switchboard_sip::proxy;
use switchboard_sip::transaction::{Action, State, TransactionLayer, TxError, TxId};
use switchboard_sip::transport::{ListenAddr, Transport};
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
}

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
    /// A request relayed inside a dialog (its state is in `relays`).
    Relay,
    /// A NOTIFY to a watcher of this subscription.
    Notify(switchboard_sip::subscription::SubId),
    /// A probe or BYE of an answered call (its state is in `dialogs`).
    Dialog,
    /// A trunk's REGISTER (its registration, by key, is in `registrant`).
    Registration(u64),
}

/// What names this server: its domains (lower-case) and the addresses it listens on.
#[derive(Clone, Debug)]
pub(crate) struct LocalNames {
    pub domains: Vec<String>,
    pub addrs: Vec<SocketAddr>,
}

impl LocalNames {
    /// Whether a host (a domain, or an IP literal, bracketed or not) names this server.
    pub(crate) fn is_local_host(&self, host: &str) -> bool {
        let h = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        if self.domains.contains(&h) {
            return true;
        }
        match h.parse::<std::net::IpAddr>() {
            Ok(ip) => self
                .addrs
                .iter()
                .any(|a| a.ip() == ip || (a.ip().is_unspecified() && a.is_ipv4() == ip.is_ipv4())),
            Err(_) => false,
        }
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
    /// Our domains and the addresses the listeners are bound to.
    pub local: LocalNames,
    /// The listeners, with their transports (Via and Record-Route of what we send).
    pub listeners: Vec<ListenAddr>,
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
        if let Err(e) = self.transactions.respond(tx, resp, now.mono) {
            tracing::debug!(error = ?e, "response for a finished transaction dropped");
        }
        self.flush();
    }

    /// Answers a request without keeping its transaction: what the core answers before the
    /// sender has proved who it is (challenges, refusals, OPTIONS) keeps no state and is
    /// never retransmitted, so it can neither fill the tables nor amplify a forged source.
    pub fn respond_stateless(&mut self, tx: TxId, resp: Response) {
        if let Err(e) = self.transactions.respond_stateless(tx, &resp) {
            tracing::debug!(error = ?e, "stateless response for a finished transaction dropped");
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
            self.send_stateless_response(&resp);
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

    /// A response sent statelessly to where its top Via says.
    pub fn send_stateless_response(&mut self, resp: &Response) {
        if let Some((transport, addr)) = proxy::response_destination(resp) {
            let to = Peer {
                transport,
                addr,
                conn: None,
            };
            self.send(to, switchboard_sip::wire::response_bytes(resp));
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

    /// Whether a Route/Request-URI names this proxy: one of our listening addresses, or one
    /// of our domains (any port we listen on, or none).
    pub fn uri_is_ours(&self, uri: &str) -> bool {
        if let Some((_, addr)) = proxy::uri_target(uri) {
            return self.listeners.iter().any(|l| {
                l.addr.port() == addr.port()
                    && (l.addr.ip() == addr.ip()
                        || (l.addr.ip().is_unspecified() && l.addr.is_ipv4() == addr.is_ipv4()))
            });
        }
        let Ok(parsed) = Uri::try_from(proxy::strip_angle(uri)) else {
            return false;
        };
        if parsed.user().is_some() {
            return false;
        }
        let host = parsed.host_with_port.host.to_string().to_ascii_lowercase();
        let port = parsed.host_with_port.port.as_ref().map(|p| p.value());
        self.local.domains.contains(&host)
            && port.is_none_or(|p| self.listeners.iter().any(|l| l.addr.port() == p))
    }

    /// Whether a Via sent-by (`host[:port]`) is one of our listening addresses.
    pub fn sent_by_is_ours(&self, sent_by: &str) -> bool {
        self.uri_is_ours(&format!("sip:{sent_by}"))
    }

    /// Our listening address to send from over `transport` to `to`.
    pub fn local_for(&self, transport: Transport, to: IpAddr) -> Option<SocketAddr> {
        let same = |l: &&ListenAddr| l.transport == transport && l.addr.is_ipv4() == to.is_ipv4();
        self.listeners
            .iter()
            .filter(same)
            .find(|l| l.addr.ip().is_loopback() == to.is_loopback())
            .or_else(|| self.listeners.iter().find(same))
            .map(|l| l.addr)
    }

    /// Our Contact for the dialogs this server is an endpoint of (subscriptions).
    pub fn own_contact(local: ListenAddr) -> String {
        proxy::own_uri(local.transport, local.addr, "").replace(";lr", "")
    }
}

/// Whether a request belongs in a dialog (a To tag) rather than starting one.
pub(crate) fn in_dialog(req: &Request) -> bool {
    use switchboard_sip::msg::prelude::*;
    req.to_header().is_ok_and(|t| message::has_tag(t.value()))
}
