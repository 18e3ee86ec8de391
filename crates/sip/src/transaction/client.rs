//! Client transactions (RFC 3261 §17.1, RFC 6026 §7.2).

use super::matching::{response_key, top_branch, ClientKey};
use super::{ClientOutcome, Key, Kind, State, Timer, TransactionLayer, Tx, TxError, TxId};
use crate::message::split_first_value;
use crate::msg::headers::{Header, Headers};
use crate::msg::prelude::*;
use crate::msg::{Method, Request, Response, Version};
use crate::peer::Peer;
use bytes::Bytes;
use std::sync::Arc;
use std::time::Instant;

impl TransactionLayer {
    /// Starts a client transaction for `req` and sends it to `to`. The request must carry
    /// its own top Via with a fresh branch (§8.1.1.7); it is serialised once and
    /// retransmitted as is (timer A or E over unreliable transports) until a response
    /// arrives or timer B or F gives up with [`super::Action::Timeout`].
    ///
    /// An ACK is refused: the ACK for a non-2xx is sent by the layer, the ACK for a 2xx is
    /// no transaction and is sent by the TU directly.
    pub fn send_request(&mut self, req: Request, to: Peer, now: Instant) -> Result<TxId, TxError> {
        if req.method == Method::Ack {
            return Err(TxError::AckIsNotATransaction);
        }
        let key = ClientKey {
            branch: top_branch(&req).ok_or(TxError::NoVia)?,
            method: req.method,
        };
        if self.client_keys.contains_key(&key) {
            return Err(TxError::DuplicateBranch);
        }
        let is_invite = req.method == Method::Invite;
        let bytes = Bytes::from(crate::wire::request_bytes(&req));
        let kind = if is_invite {
            Kind::ClientInvite
        } else {
            Kind::ClientNonInvite
        };
        let id = self
            .insert(Tx {
                request: Some(Box::new(req)),
                bytes: bytes.clone(),
                ..Tx::new(kind, Key::Client(Arc::new(key)), to, self.config.t1)
            })
            .ok_or(TxError::Full)?;
        self.transmit(to, bytes);
        let (t1, t64) = (self.config.t1, self.config.t64());
        let (retransmit, give_up) = if is_invite {
            (Timer::A, Timer::B)
        } else {
            (Timer::E, Timer::F)
        };
        if !to.transport.is_reliable() {
            self.arm_in(id, retransmit, now, t1);
        }
        self.arm_in(id, give_up, now, t64);
        if is_invite {
            // §16.6 step 11: timer C runs from the moment the INVITE goes out.
            let c = self.config.c;
            self.arm_in(id, Timer::C, now, c);
        }
        Ok(id)
    }

    /// Handles a received response, matched by its top Via branch and CSeq method
    /// (§17.1.3).
    ///
    /// - client INVITE: 1xx → [`ClientOutcome::Provisional`] (Proceeding; 101–199
    ///   restart timer C);
    ///   2xx → [`ClientOutcome::Final`] and Accepted, where every further 2xx is passed on
    ///   too (RFC 6026, timer M); 300–699 → `Final`, the layer sends the ACK (§17.1.1.3)
    ///   and re-sends it for each retransmission of the response, which is absorbed
    ///   (Completed, timer D);
    /// - client non-INVITE: 1xx → `Provisional`, final → `Final` once (Completed, timer K);
    /// - anything unmatched → [`ClientOutcome::Stray`].
    pub fn handle_response(&mut self, resp: Response, _from: Peer, now: Instant) -> ClientOutcome {
        let code = resp.status_code.code();
        let matched = (100..=699)
            .contains(&code)
            .then(|| response_key(&resp))
            .flatten()
            .and_then(|key| self.client_keys.get(&key).copied())
            .and_then(|id| self.txs.get(id.0).map(|t| (id, t.kind, t.state, t.peer)));
        let Some((id, kind, state, peer)) = matched else {
            return ClientOutcome::Stray(resp);
        };
        match (kind, state) {
            (Kind::ClientInvite, State::Calling | State::Proceeding) => match code {
                100..=199 => {
                    // B only guards Calling; once timer C has fired, B is its deadline
                    // and stays until a 101–199 restarts C (§16.7 step 2).
                    let c_armed = self
                        .txs
                        .get(id.0)
                        .is_some_and(|t| t.armed.iter().any(|(t, _)| *t == Timer::C));
                    self.disarm(id, &[Timer::A]);
                    if code > 100 {
                        self.disarm(id, &[Timer::B]);
                        let c = self.config.c;
                        self.arm_in(id, Timer::C, now, c);
                    } else if c_armed {
                        self.disarm(id, &[Timer::B]);
                    }
                    self.set_state(id, State::Proceeding);
                    ClientOutcome::Provisional(id, resp)
                }
                200..=299 => {
                    self.disarm(id, &[Timer::A, Timer::B, Timer::C]);
                    self.set_state(id, State::Accepted);
                    self.release_request(id);
                    let t64 = self.config.t64();
                    self.arm_in(id, Timer::M, now, t64);
                    ClientOutcome::Final(id, resp)
                }
                _ => {
                    self.disarm(id, &[Timer::A, Timer::B, Timer::C]);
                    let ack = self
                        .txs
                        .get(id.0)
                        .and_then(|t| t.request.as_ref())
                        .map(|r| Bytes::from(crate::wire::request_bytes(&ack_for(r, &resp))));
                    if let Some(ack) = ack {
                        self.transmit(peer, ack.clone());
                        if let Some(tx) = self.txs.get_mut(id.0) {
                            tx.ack = Some(ack);
                        }
                    }
                    self.set_state(id, State::Completed);
                    self.release_request(id);
                    let wait = Self::absorb_wait(peer, self.config.timer_d());
                    self.wait_or_end(id, Timer::D, wait, now);
                    ClientOutcome::Final(id, resp)
                }
            },
            (Kind::ClientInvite, State::Completed) => match code {
                // §17.1.1.2: a retransmitted final response is ACKed again.
                300..=699 => {
                    if let Some(ack) = self.txs.get(id.0).and_then(|t| t.ack.clone()) {
                        self.transmit(peer, ack);
                    }
                    ClientOutcome::Absorbed
                }
                // A 2xx after a non-2xx (a misbehaving fork): the TU must ACK or end it.
                200..=299 => ClientOutcome::Final(id, resp),
                _ => ClientOutcome::Absorbed,
            },
            // RFC 6026 §7.2: each 2xx goes to the TU, which ACKs it.
            (Kind::ClientInvite, State::Accepted) if (200..300).contains(&code) => {
                ClientOutcome::Final(id, resp)
            }
            (Kind::ClientNonInvite, State::Trying | State::Proceeding) => match code {
                100..=199 => {
                    self.set_state(id, State::Proceeding);
                    ClientOutcome::Provisional(id, resp)
                }
                _ => {
                    self.disarm(id, &[Timer::E, Timer::F]);
                    self.set_state(id, State::Completed);
                    self.release_request(id);
                    let wait = Self::absorb_wait(peer, self.config.t4);
                    self.wait_or_end(id, Timer::K, wait, now);
                    ClientOutcome::Final(id, resp)
                }
            },
            _ => ClientOutcome::Absorbed,
        }
    }

    /// The CANCEL for a client INVITE transaction (§9.1): same Request-URI, Call-ID,
    /// From, To, CSeq number, top Via and Route set; to be sent with
    /// [`TransactionLayer::send_request`]. §9.1 asks to wait for a provisional response
    /// ([`State::Proceeding`]) before sending it. `None` for other transactions.
    pub fn cancel_for(&self, id: TxId) -> Option<Request> {
        let tx = self.txs.get(id.0)?;
        if tx.kind != Kind::ClientInvite {
            return None;
        }
        Some(sibling_request(tx.request.as_ref()?, Method::Cancel, None))
    }
}

/// The ACK for a non-2xx final response (§17.1.1.3): the To of the response (with its
/// tag), the rest from the request.
fn ack_for(req: &Request, resp: &Response) -> Request {
    sibling_request(req, Method::Ack, resp.to_header().ok().cloned())
}

/// A request of the same transaction identity as `req` (§9.1 CANCEL, §17.1.1.3 ACK): the
/// same Request-URI, top Via, From, Call-ID, Route set, Max-Forwards and CSeq number, with
/// `method`; To from `to` (the response's, for an ACK) or from `req`.
fn sibling_request(req: &Request, method: Method, to: Option<crate::msg::To>) -> Request {
    let mut headers = Headers::default();
    let mut via_done = false;
    for h in req.headers.iter() {
        match h {
            Header::Via(v) if !via_done => {
                via_done = true;
                headers.push(Header::Via(
                    split_first_value(v.value()).0.trim().to_string().into(),
                ));
            }
            Header::To(_) if to.is_none() => headers.push(h.clone()),
            Header::From(_) | Header::CallId(_) | Header::Route(_) | Header::MaxForwards(_) => {
                headers.push(h.clone())
            }
            Header::CSeq(c) => {
                let seq = c.value().split_whitespace().next().unwrap_or("1");
                headers.push(Header::CSeq(format!("{seq} {method}").into()));
            }
            _ => {}
        }
    }
    if let Some(to) = to {
        headers.push(Header::To(to));
    }
    headers.push(Header::ContentLength(0.into()));
    Request {
        method,
        uri: req.uri.clone(),
        version: Version::V2,
        headers,
        body: Vec::new(),
    }
}
