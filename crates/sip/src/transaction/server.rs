//! Server transactions (RFC 3261 §17.2, RFC 6026 §7.1).

use super::matching::{server_key, ServerKey};
use super::{Key, Kind, ServerOutcome, State, Timer, TransactionLayer, Tx, TxError, TxId};
use crate::message::response_target;
use crate::msg::{Method, Request, Response};
use crate::peer::Peer;
use bytes::Bytes;
use std::sync::Arc;
use std::time::Instant;

impl TransactionLayer {
    /// Handles a received request: matches it to a server transaction (§17.2.3) or makes
    /// a new one. `from` is where it came from; responses go where §18.2.2 says (the
    /// connection it came on, or the source address at the Via's port unless `rport`).
    ///
    /// - a retransmission is [`ServerOutcome::Absorbed`]; the last response, if any, is
    ///   sent again (not in Accepted, RFC 6026);
    /// - an ACK for a non-2xx final response is absorbed and confirms the INVITE server
    ///   transaction; any other ACK goes to the TU as [`ServerOutcome::Ack`];
    /// - a CANCEL is a new transaction, reported with the INVITE it cancels;
    /// - a request without a usable top Via or CSeq is [`ServerOutcome::Invalid`].
    pub fn handle_request(&mut self, req: Request, from: Peer, now: Instant) -> ServerOutcome {
        let key = match server_key(&req) {
            Ok(key) => key,
            Err(reason) => return ServerOutcome::Invalid(reason),
        };
        if req.method == Method::Ack {
            return self.handle_ack(&key, req, now);
        }
        if let Some(&id) = self.server_keys.get(&key) {
            self.resend_last_response(id);
            return ServerOutcome::Absorbed;
        }
        let is_invite = req.method == Method::Invite;
        let is_cancel = req.method == Method::Cancel;
        let invite_key = is_cancel.then(|| key.with_method(Method::Invite));
        let kind = if is_invite {
            Kind::ServerInvite
        } else {
            Kind::ServerNonInvite
        };
        let peer = response_target(&req, from);
        let inserted = self.insert(Tx::new(
            kind,
            Key::Server(Arc::new(key)),
            peer,
            self.config.t1,
        ));
        let Some(id) = inserted else {
            return ServerOutcome::Invalid("no room for another transaction");
        };
        match invite_key {
            // §9.2: the INVITE with the same branch, sent-by and CSeq number.
            Some(k) => ServerOutcome::Cancel {
                cancel_tx: id,
                invite_tx: self.server_keys.get(&k).copied(),
                request: req,
            },
            None => ServerOutcome::New(id, req),
        }
    }

    /// A retransmitted request: §17.2.1 (Proceeding, Completed), §17.2.2 (Proceeding,
    /// Completed; silent in Trying), RFC 6026 §7.1 (silent in Accepted), silent in
    /// Confirmed.
    fn resend_last_response(&mut self, id: TxId) {
        let Some(tx) = self.txs.get(id.0) else {
            return;
        };
        if matches!(tx.state, State::Proceeding | State::Completed) && !tx.bytes.is_empty() {
            let (peer, bytes) = (tx.peer, tx.bytes.clone());
            self.transmit(peer, bytes);
        }
    }

    fn handle_ack(&mut self, key: &ServerKey, req: Request, now: Instant) -> ServerOutcome {
        let Some((id, state, peer)) = self
            .server_keys
            .get(key)
            .and_then(|id| self.txs.get(id.0).map(|t| (*id, t.state, t.peer)))
        else {
            // The ACK for a 2xx: a transaction of its own kind, the TU's (RFC 6026 §6).
            return ServerOutcome::Ack(req);
        };
        match state {
            State::Completed => {
                // §17.2.1: the ACK for the non-2xx final response.
                self.disarm(id, &[Timer::G, Timer::H]);
                self.set_state(id, State::Confirmed);
                let wait = Self::absorb_wait(peer, self.config.t4);
                self.wait_or_end(id, Timer::I, wait, now);
                ServerOutcome::Absorbed
            }
            // RFC 6026 §7.1: an ACK (for the 2xx) that reused the INVITE's branch.
            State::Accepted => ServerOutcome::Ack(req),
            // Confirmed: a retransmitted ACK. Proceeding: nothing to acknowledge yet.
            _ => ServerOutcome::Absorbed,
        }
    }

    /// Answers a new server transaction's request statelessly (RFC 3261 §16.11, §8.2.6):
    /// the response goes out once, to where the transaction would have sent it, and the
    /// transaction is forgotten — nothing is kept for a request nobody has vouched for. A
    /// retransmission of the request is a new request, answered again; the ACK to a
    /// stateless final response to an INVITE matches nothing and is dropped.
    pub fn respond_stateless(&mut self, id: TxId, resp: &Response) -> Result<(), TxError> {
        let tx = self.txs.get(id.0).ok_or(TxError::Unknown)?;
        match tx.kind {
            Kind::ServerInvite | Kind::ServerNonInvite => {}
            Kind::ClientInvite | Kind::ClientNonInvite => return Err(TxError::NotServer),
        }
        let peer = tx.peer;
        self.transmit(peer, Bytes::from(crate::wire::response_bytes(resp)));
        self.terminate(id);
        Ok(())
    }

    /// Sends a response through a server transaction: provisional responses keep it
    /// going; a final one completes it (§17.2.1, §17.2.2) or, for a 2xx to INVITE, moves it
    /// to Accepted (RFC 6026 §7.1), where further 2xx — the TU's retransmissions — pass for
    /// 64·T1. The response goes out as an [`super::Action::Transmit`].
    pub fn respond(&mut self, id: TxId, resp: Response, now: Instant) -> Result<(), TxError> {
        let code = resp.status_code.code();
        if !(100..=699).contains(&code) {
            return Err(TxError::BadStatus(code));
        }
        let tx = self.txs.get_mut(id.0).ok_or(TxError::Unknown)?;
        let (kind, peer) = (tx.kind, tx.peer);
        match (kind, tx.state) {
            (Kind::ServerInvite, State::Proceeding)
            | (Kind::ServerNonInvite, State::Trying | State::Proceeding) => {}
            (Kind::ServerInvite, State::Accepted) if (200..300).contains(&code) => {
                self.transmit(peer, Bytes::from(crate::wire::response_bytes(&resp)));
                return Ok(());
            }
            (Kind::ServerInvite | Kind::ServerNonInvite, _) => return Err(TxError::AlreadyFinal),
            (Kind::ClientInvite | Kind::ClientNonInvite, _) => return Err(TxError::NotServer),
        }
        let bytes = Bytes::from(crate::wire::response_bytes(&resp));
        tx.bytes = bytes.clone();
        self.transmit(peer, bytes);
        let t64 = self.config.t64();
        match (kind, code) {
            (Kind::ServerNonInvite, 100..=199) => self.set_state(id, State::Proceeding),
            (_, 100..=199) => {}
            (Kind::ServerInvite, 200..=299) => {
                self.set_state(id, State::Accepted);
                // The TU re-sends its 2xx itself (RFC 6026): nothing to keep.
                self.release_request(id);
                self.arm_in(id, Timer::L, now, t64);
            }
            (Kind::ServerInvite, _) => {
                self.set_state(id, State::Completed);
                if !peer.transport.is_reliable() {
                    let t1 = self.config.t1;
                    self.set_interval(id, t1);
                    self.arm_in(id, Timer::G, now, t1);
                }
                self.arm_in(id, Timer::H, now, t64);
            }
            _ => {
                self.set_state(id, State::Completed);
                let wait = Self::absorb_wait(peer, t64);
                self.wait_or_end(id, Timer::J, wait, now);
            }
        }
        Ok(())
    }
}
