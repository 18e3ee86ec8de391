//! Requests inside the dialogs this proxy record-routed (ACK for a 2xx, BYE, re-INVITE,
//! UPDATE, INFO, PRACK, REFER, NOTIFY, MESSAGE…): the Route naming this proxy is consumed
//! (it must carry the dialog's token), and the request goes to the next Route or, at the
//! end of the set, to its Request-URI — over the registered flow when that is a
//! registered contact (phones behind NAT). ACK goes statelessly; other requests through a
//! server and a client transaction whose responses are relayed back. A sub-machine of the
//! core: it owns the relays under way and tells [`Dialogs`] what passes through.
//!
//! A next hop with a host name (a carrier's Contact or Record-Route, such as
//! `sip:+441632960001@sbc.carrier.example;transport=udp`) is located as RFC 3263 says,
//! through the core's [`super::locating`], as a call's branches are: an answer still in
//! the cache gives its targets at once; otherwise the request is *held* — its server
//! transaction absorbing the sender's retransmissions, a re-INVITE answered 100 — until
//! the answers come back (`Core::located`), then sent to the first target. A transport
//! error or a 503 sends it to the next target on a new client transaction, and the locator
//! hears of each target's failure or success. An ACK for a 2xx has no transaction: it goes
//! to the first target. Held requests are bounded ([`MAX_HELD`]; beyond it, 503 with
//! Retry-After); a CANCEL of a held re-INVITE, or the end of its dialog, answers it and
//! forgets it; a name that leads nowhere is answered as [`unlocatable`] says.

use super::carrier_auth::{self, Challenged};
use super::context::Ctx;
use super::dialogs::Dialogs;
use super::locating::{Located, Waiter};
use super::targets::binding_peer;
use super::wire::{Local, Owner};
use std::collections::VecDeque;
use std::time::Duration;
use switchboard_sip::locate::{LocateError, ResolutionId, Resolved, Target};
use switchboard_sip::message;
use switchboard_sip::msg::headers::Header;
use switchboard_sip::msg::prelude::*;
use switchboard_sip::msg::{Method, Request, Response};
use switchboard_sip::peer::Peer;
use switchboard_sip::proxy;
use switchboard_sip::transaction::TxId;
use switchboard_sip::GrowingMap;

/// Most in-dialog requests held at once while their next hop is looked up. Each waits
/// for one lookup at most (the shell answers every question, failed or not, within its
/// timeout), and a name is asked once however many requests wait for it, so the cap is
/// reached only when the name servers are slow just as many dialogs' next hops have left
/// the cache. Beyond it a request is refused 503 with Retry-After rather than held (each
/// held request is its text and a few fields: a few kilobytes).
pub(crate) const MAX_HELD: usize = 10_000;

/// The Retry-After (seconds) of a request refused for a passing trouble: no room to hold
/// it, a failed lookup of its next hop.
const RETRY_AFTER: &str = "5";

/// A request on its way to its next hop: what sending it (again) takes.
struct Outgoing {
    /// Its server transaction; None for an ACK (no transaction, RFC 6026).
    tx: Option<TxId>,
    /// The request as received, our Routes consumed.
    request: Request,
    call_id: String,
    /// The request's loop key, for the Via branch of each copy sent.
    loop_key: u64,
    /// The last Route entry of ours consumed: the one the next hop faces, where the
    /// request leaves from (after a double Record-Route, the one the call left by toward
    /// it).
    facing: Option<String>,
    /// The Record-Route params to put this proxy in the dialog with (`;sbt=…`): a call
    /// another node sent through this one to a phone whose flow this node holds; None
    /// for a request inside a dialog.
    record_route: Option<String>,
}

/// A request held while its next hop's host name is looked up.
struct Held {
    out: Outgoing,
    /// The URI located, for the log and the Warning.
    uri: String,
    resolution: ResolutionId,
}

/// Where a relayed request to a next hop with a host name can go (RFC 3263).
struct Targets {
    /// The target it went to last: the locator hears how it answered.
    current: Target,
    /// The targets not tried yet, in order.
    next: VecDeque<Target>,
    /// The entry of ours the next hop faces (see [`Outgoing::facing`]).
    facing: Option<String>,
    /// The request as sent (our Via on top), to send to the next target with a new Via.
    sent: Request,
    /// The current target sent a response.
    heard: bool,
}

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
    /// Its next hop's targets, when that is a host name (None: an address, a registered
    /// contact).
    located: Option<Box<Targets>>,
}

pub(crate) struct Relays {
    /// Keys the Record-Route tokens (as the calls that set the dialogs up).
    route_secret: [u8; 32],
    /// By client transaction; boxed (hundreds of bytes each), so the table stays small.
    relays: GrowingMap<TxId, Box<Relay>>,
    /// The client transaction of each server transaction (where a CANCEL goes).
    client_of: GrowingMap<TxId, TxId>,
    /// Requests waiting for their next hop's targets, by key (their [`Waiter::Relay`]).
    held: GrowingMap<u64, Box<Held>>,
    /// The held request of each server transaction (where a CANCEL goes).
    held_of: GrowingMap<TxId, u64>,
    /// The held requests of each dialog, by Call-ID (answered when it ends).
    held_calls: GrowingMap<String, Vec<u64>>,
    next_held: u64,
    /// Most requests held at once ([`MAX_HELD`]).
    pub max_held: usize,
    /// In-dialog requests relayed.
    pub relayed: u64,
    /// In-dialog requests refused (no Route of ours, a wrong token, no next hop, no room
    /// to hold one).
    pub refused: u64,
}

/// The Call-ID of a request, as written.
pub(crate) fn call_id_of(req: &Request) -> String {
    req.call_id_header()
        .map(|c| c.value().trim().to_string())
        .unwrap_or_default()
}

/// Where the next hop of an in-dialog request is.
enum Hop {
    /// An address, or a registered contact's flow.
    Peer(Peer),
    /// A URI with a host name, to locate (RFC 3263).
    Locate,
    /// A registered contact whose flow is gone.
    Gone,
}

/// The answer to a request whose next hop's name leads to no target, and why (RFC 3263
/// gives no code; RFC 3261 §16.9 counts an unreachable next hop as a 503, which a proxy
/// turns into an answer of its own):
/// - the lookup failed (no answer in time, a server failure): 503 with Retry-After — the
///   trouble is ours and passing (§21.5.4), and RFC 5057 counts 503 as a failure of the
///   request only: the dialog goes on, and the sender may try again;
/// - the name has no SIP server (no record, its SRV records point to "."), or the URI
///   cannot be located at all (a transport not spoken, unreadable): 404 — what this proxy
///   answered every host name before it located them; the dialog's remote target is
///   known not to lead anywhere, and a UA takes 404 as the end of the dialog (RFC 5057),
///   as it is.
///
/// A call's branch fails 503 in both cases, but that 503 competes with the plan's own
/// answer and the other branches'; here it would be the sender's answer, and a 503 for a
/// name that does not exist would have it try again in vain.
pub(crate) fn unlocatable(e: &LocateError) -> (u16, Vec<Header>) {
    let warning = message::warning(&e.to_string());
    match e {
        LocateError::Failed { .. } => (503, vec![warning, Header::RetryAfter(RETRY_AFTER.into())]),
        LocateError::NoSuchName(_)
        | LocateError::NotOffered(_)
        | LocateError::BadUri { .. }
        | LocateError::Unsupported(_) => (404, vec![warning]),
    }
}

/// Where a request to `dest` leaves from: the address of its flow, else the entry of
/// ours it faces (`facing`, when of its transport and family), else what the wire
/// chooses. None when no listener can reach it.
fn leave_toward(cx: &Ctx<'_>, facing: Option<&str>, dest: &mut Peer) -> Option<Local> {
    if dest.local.is_none() {
        if let Some(l) = facing.and_then(|r| cx.wire.local_named(r)) {
            if l.transport == dest.transport && l.addr.is_ipv4() == dest.addr.is_ipv4() {
                dest.local = Some(l.addr);
            }
        }
    }
    cx.wire.leave_from(dest)
}

/// `req` with `via` as its top Via.
fn with_top_via(mut req: Request, via: String) -> Request {
    if let Some(top) = req.headers.iter_mut().find(|h| matches!(h, Header::Via(_))) {
        *top = Header::Via(via.into());
    }
    req
}

impl Relays {
    pub(crate) fn new(route_secret: [u8; 32]) -> Self {
        Relays {
            route_secret,
            relays: GrowingMap::new(),
            client_of: GrowingMap::new(),
            held: GrowingMap::new(),
            held_of: GrowingMap::new(),
            held_calls: GrowingMap::new(),
            next_held: 0,
            max_held: MAX_HELD,
            relayed: 0,
            refused: 0,
        }
    }

    /// The client transaction a server transaction's request was relayed on, if any.
    pub(crate) fn client_of(&self, server: TxId) -> Option<TxId> {
        self.client_of.get(&server).copied()
    }

    /// Whether a server transaction's request is held, its next hop being looked up.
    pub(crate) fn is_held(&self, server: TxId) -> bool {
        self.held_of.contains_key(&server)
    }

    /// Requests held while their next hop is looked up.
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.held.len()
    }

    /// Refuses a request statelessly (nothing vouches for the sender of a request that is
    /// not in one of our dialogs; a request over the cap is not kept either). An ACK is
    /// never answered.
    fn refuse(
        &mut self,
        cx: &mut Ctx<'_>,
        tx: Option<TxId>,
        req: &Request,
        code: u16,
        why: &str,
        extra: Vec<Header>,
    ) {
        let Some(tx) = tx else {
            // An ACK: never answered. One with no Route of ours acknowledges a stateless
            // answer of ours (a challenge), and is simply absorbed.
            tracing::debug!(call_id = %call_id_of(req), why, "ACK absorbed");
            return;
        };
        self.refused += 1;
        if switchboard_sip::log_limit::allow("in-dialog request refused") {
            tracing::info!(method = %req.method, call_id = %call_id_of(req), code, why, "in-dialog request refused");
        }
        let mut headers = vec![message::warning(why)];
        headers.extend(extra);
        cx.wire.reply_stateless(tx, req, code, headers);
    }

    /// Answers a request of one of our dialogs that cannot go on (through its
    /// transaction: the dialog's token vouched for it). An ACK is dropped.
    fn answer(&mut self, cx: &mut Ctx<'_>, out: &Outgoing, code: u16, headers: Vec<Header>) {
        self.refused += 1;
        match out.tx {
            Some(tx) => cx.wire.reply_to(tx, &out.request, code, headers, cx.now),
            None => tracing::debug!(call_id = %out.call_id, code, "ACK not relayed"),
        }
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
        let call_id = call_id_of(&req);
        let loop_key = proxy::loop_key(&req);
        let mut popped = proxy::pop_own_routes(&mut req, |u| cx.wire.uri_is_ours(u));
        if popped.is_empty() {
            return self.refuse(cx, tx, &req, 481, "no dialog of this server", Vec::new());
        }
        let token = proxy::route_token(&self.route_secret, &call_id);
        if !popped
            .iter()
            .any(|r| proxy::uri_param(r, "sbt") == Some(token.as_str()))
        {
            return self.refuse(cx, tx, &req, 403, "not a dialog of this server", Vec::new());
        }
        let next = proxy::next_hop_uri(&req);
        let direct = |uri: &str| match proxy::uri_target(uri) {
            Some((transport, addr)) => Hop::Peer(Peer {
                transport,
                addr,
                conn: None,
                local: None,
            }),
            None => Hop::Locate,
        };
        let hop = if proxy::route_set(&req).is_empty() {
            match cx.registrar.find_contact(&next, now.unix) {
                Some(b) => binding_peer(b).map_or(Hop::Gone, Hop::Peer),
                None => direct(&next),
            }
        } else {
            direct(&next)
        };
        let out = Outgoing {
            tx,
            request: req,
            call_id,
            loop_key,
            facing: popped.pop(),
            record_route: None,
        };
        match hop {
            Hop::Peer(mut dest) => {
                let Some(local) = leave_toward(cx, out.facing.as_deref(), &mut dest) else {
                    let why = "no listener for the next hop's transport";
                    return self.refuse(cx, tx, &out.request, 503, why, Vec::new());
                };
                self.send(cx, dialogs, out, dest, local, None)
            }
            Hop::Gone => {
                let why = "the next hop cannot be reached";
                self.refuse(cx, tx, &out.request, 404, why, Vec::new())
            }
            Hop::Locate => self.locate(cx, dialogs, out, next),
        }
    }

    /// Whether `req`, a request outside any dialog, is a call another node sharing this
    /// one's state sends through it to a phone whose flow this node holds: its first Route
    /// names this proxy and carries the call's token (keyed by the secret the nodes
    /// share; nothing else makes it).
    pub(crate) fn is_node_hop(&self, cx: &Ctx<'_>, req: &Request) -> bool {
        let Some(first) = proxy::route_set(req).into_iter().next() else {
            return false;
        };
        let token = proxy::route_token(&self.route_secret, &call_id_of(req));
        cx.wire.uri_is_ours(&first) && proxy::uri_param(&first, "sbt") == Some(token.as_str())
    }

    /// A call another node sends through this one ([`Relays::is_node_hop`]): on to the
    /// registered phone its Request-URI names, over the flow this node holds, with this
    /// proxy in its dialog (Record-Route), so that the requests inside it pass here too.
    /// Only to a phone registered here: anything else is refused.
    pub(crate) fn route_node_hop(
        &mut self,
        cx: &mut Ctx<'_>,
        dialogs: &mut Dialogs,
        tx: TxId,
        mut req: Request,
    ) {
        let now = cx.now;
        let call_id = call_id_of(&req);
        let loop_key = proxy::loop_key(&req);
        let mut popped = proxy::pop_own_routes(&mut req, |u| cx.wire.uri_is_ours(u));
        let target = proxy::next_hop_uri(&req);
        let binding = cx
            .registrar
            .find_contact(&target, now.unix)
            .filter(|b| !b.remote && proxy::route_set(&req).is_empty());
        let Some(dest) = binding.and_then(binding_peer) else {
            let why = "no phone registered at this node there";
            return self.refuse(cx, Some(tx), &req, 404, why, Vec::new());
        };
        let token = proxy::route_token(&self.route_secret, &call_id);
        let out = Outgoing {
            tx: Some(tx),
            request: req,
            call_id,
            loop_key,
            facing: popped.pop(),
            record_route: Some(format!(";sbt={token}")),
        };
        let mut dest = dest;
        let Some(local) = leave_toward(cx, None, &mut dest) else {
            let why = "no listener for the phone's transport";
            return self.refuse(cx, Some(tx), &out.request, 503, why, Vec::new());
        };
        self.send(cx, dialogs, out, dest, local, None)
    }

    /// A request whose next hop `uri` has a host name: sent at once when its targets are
    /// known (an answer in the cache), else held until they are ([`Relays::located`]).
    fn locate(&mut self, cx: &mut Ctx<'_>, dialogs: &mut Dialogs, out: Outgoing, uri: String) {
        let key = self.next_held;
        let resolution = match cx.locating.resolve(&uri, Waiter::Relay(key), cx.now.mono) {
            Located::Done(outcome) => return self.send_to_targets(cx, dialogs, out, &uri, outcome),
            Located::Pending(id) => id,
        };
        if self.held.len() >= self.max_held {
            // Its questions are asked all the same (once, however many wait for them):
            // the answers are kept, for when the sender tries again.
            cx.locating.cancel(resolution);
            let retry = vec![Header::RetryAfter(RETRY_AFTER.into())];
            let why = "too many requests waiting for DNS";
            return self.refuse(cx, out.tx, &out.request, 503, why, retry);
        }
        self.next_held += 1;
        tracing::debug!(call_id = %out.call_id, method = %out.request.method, uri, "in-dialog request waits for its next hop's targets (DNS)");
        if let Some(tx) = out.tx {
            if out.request.method == Method::Invite {
                // §17.2.1: the lookup may well take longer than 200 ms; the sender stops
                // retransmitting.
                let trying = message::response(&out.request, 100, None, &cx.wire.server);
                cx.wire.respond(tx, trying, cx.now);
            }
            self.held_of.insert(tx, key);
        }
        self.held_calls
            .entry(out.call_id.clone())
            .or_default()
            .push(key);
        let held = Held {
            out,
            uri,
            resolution,
        };
        self.held.insert(key, Box::new(held));
    }

    /// Forgets held request `key`, and returns it.
    fn unhold(&mut self, key: u64) -> Option<Box<Held>> {
        let held = self.held.remove(&key)?;
        if let Some(tx) = held.out.tx {
            self.held_of.remove(&tx);
        }
        let call_id = &held.out.call_id;
        if let Some(keys) = self.held_calls.get_mut(call_id) {
            keys.retain(|k| *k != key);
            if keys.is_empty() {
                self.held_calls.remove(call_id);
            }
        }
        Some(held)
    }

    /// The resolution held request `key` waited for: it goes to the first target, or is
    /// answered as [`unlocatable`] says.
    pub(crate) fn located(
        &mut self,
        cx: &mut Ctx<'_>,
        dialogs: &mut Dialogs,
        key: u64,
        outcome: Result<Resolved, LocateError>,
    ) {
        if let Some(held) = self.unhold(key) {
            let Held { out, uri, .. } = *held;
            self.send_to_targets(cx, dialogs, out, &uri, outcome);
        }
    }

    /// Sends a request to the first of its next hop's targets that a listener reaches,
    /// the others kept to fail over to; or answers it when there is none.
    fn send_to_targets(
        &mut self,
        cx: &mut Ctx<'_>,
        dialogs: &mut Dialogs,
        out: Outgoing,
        uri: &str,
        outcome: Result<Resolved, LocateError>,
    ) {
        let mut targets: VecDeque<Target> = match outcome {
            Ok(resolved) => resolved.targets.into(),
            Err(e) => {
                if switchboard_sip::log_limit::allow("in-dialog next hop not located") {
                    tracing::warn!(call_id = %out.call_id, method = %out.request.method, uri, error = %e, "in-dialog request's next hop cannot be located");
                }
                let (code, headers) = unlocatable(&e);
                return self.answer(cx, &out, code, headers);
            }
        };
        while let Some(target) = targets.pop_front() {
            let mut dest = target.peer();
            if let Some(local) = leave_toward(cx, out.facing.as_deref(), &mut dest) {
                let facing = out.facing.clone();
                return self.send(
                    cx,
                    dialogs,
                    out,
                    dest,
                    local,
                    Some((target, targets, facing)),
                );
            }
        }
        let why = format!("no target of {uri} could be sent to");
        self.answer(cx, &out, 503, vec![message::warning(&why)]);
    }

    /// Sends a request to `dest`, leaving from `local`: an ACK statelessly, anything else
    /// on a client transaction whose responses come back to [`Relays::response`].
    /// `located`: the target `dest` is, the targets left and the entry of ours it faces,
    /// when the next hop was a host name.
    fn send(
        &mut self,
        cx: &mut Ctx<'_>,
        dialogs: &mut Dialogs,
        o: Outgoing,
        dest: Peer,
        local: Local,
        located: Option<(Target, VecDeque<Target>, Option<String>)>,
    ) {
        let now = cx.now;
        let via = local.via(&cx.wire.branch(Some(o.loop_key)));
        let is_bye = o.request.method == Method::Bye;
        // A request with a server transaction is kept, to answer it; one without (the ACK
        // of a 2xx) is forwarded as it is.
        // A call through this node to a phone of its own: this proxy in its dialog, the
        // entry the phone faces on top, the one the other node reached it at below it
        // when they differ (as a call's own branches are record-routed).
        let mut rr = Vec::new();
        if let Some(params) = &o.record_route {
            let toward = local.route_uri(params);
            let facing = o.facing.as_ref().map(|f| format!("<{f}>"));
            rr.push(toward.clone());
            if let Some(f) = facing.filter(|f| *f != toward) {
                rr.push(f);
            }
        }
        let (mut out, kept) = match o.tx {
            Some(server) => (
                proxy::forward(&o.request, None, &via, &rr),
                Some((server, o.request)),
            ),
            None => (proxy::forward_owned(o.request, None, &via, &rr), None),
        };
        // To the carrier of a call through a trunk with an account: renumbered.
        let carrier = dialogs.toward_carrier(&o.call_id, &mut out);
        if is_bye {
            dialogs.end(cx, &o.call_id, "bye");
        } else {
            dialogs.request_seen(&o.call_id, &out);
        }
        self.relayed += 1;
        let Some((server, request)) = kept else {
            return cx
                .wire
                .send(dest, switchboard_sip::wire::request_bytes(&out));
        };
        let carrier = carrier.map(|trunk| Challenged::new(trunk, out.clone()));
        let located = located.map(|(current, next, facing)| {
            Box::new(Targets {
                current,
                next,
                facing,
                sent: out.clone(),
                heard: false,
            })
        });
        match cx.wire.send_request(out, dest, Owner::Relay, now) {
            Ok(client) => {
                let relay = Relay {
                    server_tx: server,
                    request,
                    answered: false,
                    carrier,
                    loop_key: o.loop_key,
                    located,
                };
                self.relays.insert(client, Box::new(relay));
                self.client_of.insert(server, client);
            }
            Err(e) => {
                tracing::warn!(error = %e, "in-dialog request not relayed");
                cx.wire.reply_to(server, &request, 500, Vec::new(), now);
            }
        }
    }

    /// A relayed request to a located next hop failed at its target (`why`, for the log):
    /// it goes to the next target on a new client transaction, which takes the relay
    /// over (as a call's branch fails over, RFC 3263 §4.3). False when no target is left
    /// that could be sent to, or the sender has its final response already.
    fn fail_over(&mut self, cx: &mut Ctx<'_>, client: TxId, why: &str) -> bool {
        let Some(mut relay) = self.relays.remove(&client) else {
            return false;
        };
        let mut sent = None;
        if !relay.answered {
            while let Some(l) = relay.located.as_mut() {
                let Some(target) = l.next.pop_front() else {
                    break;
                };
                let mut dest = target.peer();
                let Some(local) = leave_toward(cx, l.facing.as_deref(), &mut dest) else {
                    continue;
                };
                let via = local.via(&cx.wire.branch(Some(relay.loop_key)));
                // After a challenge answered, the request as last sent: its credentials
                // and number.
                let base = match &relay.carrier {
                    Some(c) => c.sent.clone(),
                    None => l.sent.clone(),
                };
                let req = with_top_via(base, via);
                let method = req.method;
                match cx
                    .wire
                    .send_request(req.clone(), dest, Owner::Relay, cx.now)
                {
                    Ok(new) => {
                        tracing::info!(%method, call_id = %call_id_of(&relay.request), from = %l.current, to = %target, why, "in-dialog request failing over to the next target");
                        l.current = target;
                        l.heard = false;
                        if let Some(c) = relay.carrier.as_mut() {
                            c.sent = req.clone();
                        }
                        l.sent = req;
                        sent = Some(new);
                    }
                    Err(e) => tracing::warn!(error = %e, "in-dialog request not relayed"),
                }
                break;
            }
        }
        match sent {
            Some(new) => {
                // The failed transaction is over (a final response, a transport error):
                // whatever is left of it is no longer the relay's.
                cx.wire.owners.remove(&client);
                self.client_of.insert(relay.server_tx, new);
                self.relays.insert(new, relay);
                true
            }
            None => {
                self.relays.insert(client, relay);
                false
            }
        }
    }

    /// A response to a relayed request: back to its sender (§16.7). A 503 from a target
    /// of a located next hop sends the request to the next target instead, if any.
    pub(crate) fn response(
        &mut self,
        cx: &mut Ctx<'_>,
        dialogs: &mut Dialogs,
        client: TxId,
        mut resp: Response,
    ) {
        let code = resp.status_code.code();
        let Some(relay) = self.relays.get_mut(&client) else {
            return;
        };
        let target = relay.located.as_mut().map(|l| {
            l.heard = true;
            l.current
        });
        if let Some(target) = target {
            if code == 503 {
                // RFC 3263 §4.3: the next target; the failed one last for a while (its
                // Retry-After's while, when it says).
                let after = message::retry_after(&resp.headers).map(Duration::from_secs);
                cx.locating
                    .locator
                    .report_failure(target, after, cx.now.mono);
                if self.fail_over(cx, client, "503") {
                    return;
                }
            } else {
                cx.locating.locator.report_success(target);
            }
        }
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

    /// A CANCEL for a held re-INVITE (its next hop still being looked up): 200 to it, 487
    /// to the re-INVITE, and nothing is sent when the answers come.
    pub(crate) fn cancel_held(
        &mut self,
        cx: &mut Ctx<'_>,
        cancel_tx: TxId,
        server: TxId,
        req: &Request,
    ) {
        let ok = message::response(req, 200, Some(&cx.wire.tag()), &cx.wire.server);
        cx.wire.respond(cancel_tx, ok, cx.now);
        let Some(key) = self.held_of.get(&server).copied() else {
            return;
        };
        if let Some(held) = self.unhold(key) {
            cx.locating.cancel(held.resolution);
            cx.wire
                .reply_to(server, &held.out.request, 487, Vec::new(), cx.now);
        }
    }

    /// A dialog ended (a BYE passed through, or the proxy ended the call): its requests
    /// still held are answered 481 (an ACK is dropped), and nothing is sent for them when
    /// the answers come.
    pub(crate) fn dialog_ended(&mut self, cx: &mut Ctx<'_>, call_id: &str) {
        let Some(keys) = self.held_calls.remove(call_id) else {
            return;
        };
        for key in keys {
            let Some(held) = self.unhold(key) else {
                continue;
            };
            cx.locating.cancel(held.resolution);
            let why = "the dialog ended while its next hop was looked up";
            self.answer(cx, &held.out, 481, vec![message::warning(why)]);
        }
    }

    /// A relayed request's next hop never answered (`code` 408: a timeout) or could not
    /// be reached (503: a transport error). A transport error at a target of a located
    /// next hop sends it to the next target; a timeout does not (it comes after 64·T1,
    /// when the sender's own transaction has ended too), but the target is told to the
    /// locator as failed when it never answered at all. Otherwise the sender gets 408.
    pub(crate) fn failed(&mut self, cx: &mut Ctx<'_>, client: TxId, code: u16) {
        let Some(relay) = self.relays.get(&client) else {
            return;
        };
        if let Some((target, heard)) = relay.located.as_ref().map(|l| (l.current, l.heard)) {
            if code == 503 || !heard {
                cx.locating
                    .locator
                    .report_failure(target, None, cx.now.mono);
            }
            if code == 503 && self.fail_over(cx, client, "unreachable") {
                return;
            }
        }
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

#[cfg(test)]
#[path = "relays_tests.rs"]
mod tests;
