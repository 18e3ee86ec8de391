//! Requests inside the dialogs this proxy record-routed (ACK for a 2xx, BYE, re-INVITE,
//! UPDATE, INFO, PRACK, REFER, NOTIFY, MESSAGE…): the Route naming this proxy is consumed
//! (it must carry the dialog's token), and the request goes to the next Route or, at the
//! end of the set, to its Request-URI — over the registered flow when that is a
//! registered contact (phones behind NAT). ACK goes statelessly; other requests through a
//! server and a client transaction whose responses are relayed back. A sub-machine of the
//! core: it owns the relays under way and tells [`Dialogs`] what passes through.

use super::carrier_auth::{self, Challenged};
use super::context::Ctx;
use super::dialogs::Dialogs;
use super::targets::peer_for_uri;
use super::wire::Owner;
use switchboard_sip::message;
use switchboard_sip::msg::headers::Header;
use switchboard_sip::msg::prelude::*;
use switchboard_sip::msg::{Method, Request, Response};
use switchboard_sip::peer::Peer;
use switchboard_sip::proxy;
use switchboard_sip::transaction::TxId;
use switchboard_sip::GrowingMap;

/// An in-dialog request relayed through a server and a client transaction.
struct Relay {
    server_tx: TxId,
    /// The request as received, to answer it if the next hop never does.
    request: Request,
    answered: bool,
    /// A request of the caller to the carrier of a call answered through a trunk with an
    /// account: as sent (renumbered), to send again if the carrier challenges it.
    carrier: Option<Box<Challenged>>,
    /// The request's loop key, for the Via branch of a request sent again.
    loop_key: u64,
}

pub(crate) struct Relays {
    /// Keys the Record-Route tokens (as the calls that set the dialogs up).
    route_secret: [u8; 32],
    /// By client transaction; boxed (hundreds of bytes each), so the table stays small.
    relays: GrowingMap<TxId, Box<Relay>>,
    /// The client transaction of each server transaction (where a CANCEL goes).
    client_of: GrowingMap<TxId, TxId>,
    /// In-dialog requests relayed.
    pub relayed: u64,
    /// In-dialog requests refused (no Route of ours, a wrong token, no next hop).
    pub refused: u64,
}

/// The Call-ID of a request, as written.
pub(crate) fn call_id_of(req: &Request) -> String {
    req.call_id_header()
        .map(|c| c.value().trim().to_string())
        .unwrap_or_default()
}

impl Relays {
    pub(crate) fn new(route_secret: [u8; 32]) -> Self {
        Relays {
            route_secret,
            relays: GrowingMap::new(),
            client_of: GrowingMap::new(),
            relayed: 0,
            refused: 0,
        }
    }

    /// The client transaction a server transaction's request was relayed on, if any.
    pub(crate) fn client_of(&self, server: TxId) -> Option<TxId> {
        self.client_of.get(&server).copied()
    }

    /// A request inside a dialog this proxy record-routed (or an ACK for a 2xx): on along
    /// its Route set. `tx` is None for an ACK (no transaction, RFC 6026).
    pub(crate) fn route(
        &mut self,
        cx: &mut Ctx<'_>,
        dialogs: &mut Dialogs,
        tx: Option<TxId>,
        mut req: Request,
    ) {
        let now = cx.now;
        // Statelessly: nothing vouches for the sender of a request that is not in one of
        // our dialogs.
        let mut refuse = |cx: &mut Ctx<'_>, req: &Request, code: u16, why: &str| {
            let Some(tx) = tx else {
                // An ACK: never answered. One with no Route of ours acknowledges a
                // stateless answer of ours (a challenge), and is simply absorbed.
                tracing::debug!(call_id = %call_id_of(req), why, "ACK absorbed");
                return;
            };
            self.refused += 1;
            if switchboard_sip::log_limit::allow("in-dialog request refused") {
                tracing::info!(method = %req.method, call_id = %call_id_of(req), code, why, "in-dialog request refused");
            }
            cx.wire
                .reply_stateless(tx, req, code, vec![message::warning(why)]);
        };
        let call_id = call_id_of(&req);
        let loop_key = proxy::loop_key(&req);
        let popped = proxy::pop_own_routes(&mut req, |u| cx.wire.uri_is_ours(u));
        if popped.is_empty() {
            return refuse(cx, &req, 481, "no dialog of this server");
        }
        let token = proxy::route_token(&self.route_secret, &call_id);
        if !popped
            .iter()
            .any(|r| proxy::uri_param(r, "sbt") == Some(token.as_str()))
        {
            return refuse(cx, &req, 403, "not a dialog of this server");
        }
        let next = proxy::next_hop_uri(&req);
        let dest = if proxy::route_set(&req).is_empty() {
            peer_for_uri(cx.registrar, &next, now)
        } else {
            proxy::uri_target(&next).map(|(transport, addr)| Peer {
                transport,
                addr,
                conn: None,
                local: None,
            })
        };
        let Some(mut dest) = dest else {
            return refuse(cx, &req, 404, "the next hop cannot be reached");
        };
        // It leaves from where the next hop knows us: the address of its flow, else the
        // entry of ours it faces — the last of ours consumed (after a double
        // Record-Route, the one the call left by toward it).
        if dest.local.is_none() {
            if let Some(l) = popped.last().and_then(|r| cx.wire.local_named(r)) {
                if l.transport == dest.transport && l.addr.is_ipv4() == dest.addr.is_ipv4() {
                    dest.local = Some(l.addr);
                }
            }
        }
        let Some(local_out) = cx.wire.leave_from(&mut dest) else {
            return refuse(cx, &req, 503, "no listener for the next hop's transport");
        };
        let via = local_out.via(&cx.wire.branch(Some(loop_key)));
        let mut out = proxy::forward(&req, None, &via, &[]);
        // To the carrier of a call through a trunk with an account: renumbered.
        let carrier = dialogs.toward_carrier(&call_id, &mut out);
        if req.method == Method::Bye {
            dialogs.end(cx, &call_id);
        } else {
            dialogs.request_seen(&call_id, &out);
        }
        self.relayed += 1;
        let Some(server) = tx else {
            return cx
                .wire
                .send(dest, switchboard_sip::wire::request_bytes(&out));
        };
        let carrier = carrier.map(|trunk| Challenged::new(trunk, out.clone()));
        match cx.wire.send_request(out, dest, Owner::Relay, now) {
            Ok(client) => {
                let relay = Relay {
                    server_tx: server,
                    request: req,
                    answered: false,
                    carrier,
                    loop_key,
                };
                self.relays.insert(client, Box::new(relay));
                self.client_of.insert(server, client);
            }
            Err(e) => {
                tracing::warn!(error = %e, "in-dialog request not relayed");
                cx.wire.reply_to(server, &req, 500, Vec::new(), now);
            }
        }
    }

    /// A response to a relayed request: back to its sender (§16.7).
    pub(crate) fn response(
        &mut self,
        cx: &mut Ctx<'_>,
        dialogs: &mut Dialogs,
        client: TxId,
        mut resp: Response,
    ) {
        let code = resp.status_code.code();
        if code == 100 {
            return;
        }
        let Some(relay) = self.relays.get(&client) else {
            return;
        };
        if matches!(code, 401 | 407) && relay.carrier.is_some() && !relay.answered {
            if self.answer_challenge(cx, dialogs, client, &resp) {
                return;
            }
            // The challenge was the account's to answer: the caller could not.
            resp = carrier_auth::refusal(resp, "the carrier refused the trunk's credentials");
        }
        let Some(relay) = self.relays.get_mut(&client) else {
            return;
        };
        if code >= 200 {
            relay.answered = true;
        }
        let server = relay.server_tx;
        proxy::strip_top_via(&mut resp);
        message::keep_reason_phrase(&mut resp);
        if relay.carrier.is_some() {
            // Back to the caller's numbering: the request's own number.
            if let Some(n) = message::cseq_number(&relay.request.headers) {
                message::set_cseq_number(&mut resp.headers, n);
            }
        }
        if (200..300).contains(&code) {
            // A target refresh's answer may move the answering end (§12.2).
            dialogs.response_seen(&relay.request, &resp, cx.now);
            cx.wire.relay_2xx(server, resp, cx.now);
        } else {
            cx.wire.respond(server, resp, cx.now);
        }
    }

    /// The carrier challenged a request of the caller (401 or 407) in a call answered
    /// through a trunk with an account: it goes again with the account's credentials, one
    /// CSeq number higher, on a new transaction, and the dialog's offset grows by one.
    /// False when the challenge is not answered (logged once).
    fn answer_challenge(
        &mut self,
        cx: &mut Ctx<'_>,
        dialogs: &mut Dialogs,
        client: TxId,
        resp: &Response,
    ) -> bool {
        let directory = cx.directory;
        let code = resp.status_code.code();
        let Some(relay) = self.relays.get_mut(&client) else {
            return false;
        };
        let Some(c) = relay.carrier.as_mut() else {
            return false;
        };
        let call_id = call_id_of(&relay.request);
        let Some(mut peer) = cx.wire.transactions.peer(client) else {
            return false;
        };
        let Some(account) = directory
            .policy()
            .trunk(&c.trunk)
            .and_then(|t| t.account.as_ref())
        else {
            let why = "the trunk has no account any more";
            cx.carrier.refused(&c.trunk, &call_id, code, why);
            return false;
        };
        let Some(local) = cx.wire.leave_from(&mut peer) else {
            return false;
        };
        let branch = cx.wire.branch(Some(relay.loop_key));
        let via = local.via(&branch);
        let req = match cx
            .carrier
            .answer(&mut cx.wire.entropy, account, c, resp, via)
        {
            Ok(req) => req,
            Err(why) => {
                cx.carrier.refused(&c.trunk, &call_id, code, why);
                return false;
            }
        };
        let sent = message::cseq_number(&req.headers).unwrap_or(0);
        match cx.wire.send_request(req, peer, Owner::Relay, cx.now) {
            Ok(new) => {
                tracing::debug!(%call_id, code, "carrier's challenge to an in-dialog request answered");
                // The challenged transaction absorbs the rest of it on its own.
                cx.wire.owners.remove(&client);
                if let Some(relay) = self.relays.remove(&client) {
                    self.client_of.insert(relay.server_tx, new);
                    self.relays.insert(new, relay);
                }
                dialogs.carrier_challenge_answered(&call_id, sent);
                true
            }
            Err(e) => {
                tracing::warn!(%call_id, error = %e, "authenticated in-dialog request not sent");
                false
            }
        }
    }

    /// A CANCEL for a relayed request (a re-INVITE): 200, and passed on.
    pub(crate) fn cancel(
        &mut self,
        cx: &mut Ctx<'_>,
        cancel_tx: TxId,
        client: TxId,
        req: &Request,
    ) {
        let ok = message::response(req, 200, Some(&cx.wire.tag()), &cx.wire.server);
        cx.wire.respond(cancel_tx, ok, cx.now);
        let peer = cx.wire.transactions.peer(client);
        send_cancel(cx, client, peer, None);
    }

    /// A relayed request's next hop never answered (a timeout, a transport error): 408.
    pub(crate) fn failed(&mut self, cx: &mut Ctx<'_>, client: TxId) {
        if let Some(relay) = self.relays.get(&client).filter(|r| !r.answered) {
            let (server, req) = (relay.server_tx, relay.request.clone());
            cx.wire.reply_to(server, &req, 408, Vec::new(), cx.now);
        }
    }

    /// A relayed request's client transaction ended: forgotten.
    pub(crate) fn ended(&mut self, client: TxId) {
        if let Some(relay) = self.relays.remove(&client) {
            self.client_of.remove(&relay.server_tx);
        }
    }
}

/// Sends the CANCEL of client INVITE transaction `tx` (§9.1), with a Reason if given.
pub(crate) fn send_cancel(cx: &mut Ctx<'_>, tx: TxId, peer: Option<Peer>, reason: Option<Header>) {
    let (Some(mut cancel), Some(peer)) = (cx.wire.transactions.cancel_for(tx), peer) else {
        return;
    };
    if let Some(r) = reason {
        cancel.headers.push(r);
    }
    // The CANCEL's answer is absorbed: it has no owner.
    let sent = cx.wire.transactions.send_request(cancel, peer, cx.now.mono);
    cx.wire.flush();
    if let Err(e) = sent {
        tracing::debug!(error = %e, "CANCEL not sent");
    }
}
