//! REGISTER (RFC 3261 §10.3): which domain, which address of record, who may change it
//! (through the digest gate), then the registrar's answer — which waits for the bindings to
//! be durable before it is sent. A function of what it is handed: nothing here reaches back
//! into the core.

use super::auth_gate::{AuthGate, Gate};
use super::context::Ctx;
use super::wire::Now;
use std::time::{Duration, Instant};
use switchboard_sip::auth::Role;
use switchboard_sip::message;
use switchboard_sip::msg::headers::Header;
use switchboard_sip::msg::prelude::*;
use switchboard_sip::msg::{Request, Response};
use switchboard_sip::peer::Peer;
use switchboard_sip::registrar::{Binding, Change, Registrar};
use switchboard_store::{tables, Write};

/// What to do with a REGISTER.
pub(crate) enum Registered {
    /// Answer it now.
    Answer(Response),
    /// Answer it now, statelessly: it did not prove its sender (a challenge, a refusal of
    /// the gate, a domain not served here).
    Refuse(Response),
    /// Make these writes durable, then answer `ok` — or, if the store refuses, roll the
    /// AoR back to `previous` and answer [`failed`].
    Store {
        ok: Response,
        writes: Vec<Write>,
        aor: String,
        previous: Vec<Binding>,
    },
}

pub(crate) fn register(cx: &mut Ctx<'_>, req: &Request, peer: Peer) -> Registered {
    let Ctx {
        now,
        wire,
        config,
        directory,
        registrar,
        gate,
        sources,
        ..
    } = cx;
    let (now, directory) = (*now, *directory);
    let local = &wire.local;
    let (entropy, server) = (&mut wire.entropy, wire.server.as_str());
    let auth_required = config.auth_required;
    let mut response = |code: u16, extra: Vec<Header>| {
        let mut resp = message::response(req, code, Some(&entropy.token()), server);
        resp.headers.extend(extra);
        resp
    };
    // Answers before the sender has proved who it is go statelessly.
    let mut reply = |code: u16, extra: Vec<Header>, proved: bool| {
        let resp = response(code, extra);
        if proved {
            Registered::Answer(resp)
        } else {
            Registered::Refuse(resp)
        }
    };
    if gate.blocked(peer.addr.ip(), directory, sources, now.mono) {
        return reply(403, AuthGate::blocked_headers(), false);
    }
    // §10.3 step 1: the registrar is responsible for the Request-URI's domain.
    let host = req.uri.host_with_port.host.to_string();
    if !local.is_local_host(&host) {
        return reply(404, vec![message::warning("domain not served here")], false);
    }
    // The AoR from To (§10.3 step 5).
    let to = req.to_header().ok().and_then(|t| t.typed().ok());
    let to_user = to.as_ref().and_then(|t| t.uri.user().map(str::to_string));
    let to_host = to
        .as_ref()
        .map(|t| t.uri.host_with_port.host.to_string())
        .unwrap_or_default();
    let aor = match (&to_user, local.is_local_host(&to_host)) {
        (Some(u), true) => directory.user_for(u),
        _ => None,
    };
    // §10.3 step 3: authenticate (the same challenge for every user name, known or not).
    if auth_required {
        match gate.check(req, peer, Role::Server, directory, sources, now.mono) {
            Gate::Passed(username) => {
                // §10.3 step 4: may this user change this AoR's bindings?
                let own = directory.user_of_username(&username);
                if own.is_none() || own != aor {
                    if switchboard_sip::log_limit::allow(
                        "REGISTER for another user's address refused",
                    ) {
                        tracing::info!(from = %peer, username, "REGISTER for another user's address refused");
                    }
                    let why = vec![message::warning("not allowed to register this address")];
                    return reply(403, why, true);
                }
            }
            Gate::Answer { code, headers } => return reply(code, headers, false),
        }
    }
    let Some(aor) = aor else {
        return reply(404, vec![message::warning("no such user")], auth_required);
    };
    let outcome = registrar.register(&aor, req, peer, now.unix);
    let resp = response(outcome.code, outcome.headers);
    if outcome.code != 200 || outcome.changes.is_empty() {
        return Registered::Answer(resp);
    }
    for c in &outcome.changes {
        match c {
            Change::Upsert(b) => {
                tracing::info!(aor = %b.aor, contact = %b.contact, source = %b.source, expires_in = b.expires_at.saturating_sub(now.unix), "binding stored")
            }
            Change::Remove { aor, key } => tracing::info!(aor, key, "binding removed"),
        }
    }
    Registered::Store {
        ok: resp,
        writes: outcome.changes.iter().map(change_to_write).collect(),
        aor,
        previous: outcome.previous,
    }
}

/// The answer to a REGISTER whose bindings the store refused: the AoR is rolled back and
/// the 200 turned into a 500 the phone will retry.
pub(crate) fn failed(
    registrar: &mut Registrar,
    aor: &str,
    previous: Vec<Binding>,
    ok: Response,
) -> Response {
    registrar.rollback(aor, previous);
    let mut resp = ok;
    resp.status_code = 500.into();
    resp.headers.retain(|h| !matches!(h, Header::Contact(_)));
    resp.headers
        .push(message::warning("bindings could not be stored"));
    resp.headers.push(Header::RetryAfter("5".into()));
    resp
}

/// Until when the stream connection a REGISTER came over must stay open: it is the flow of
/// the AoR's bindings registered over it (RFC 5626), kept until the last of them lapses.
pub(crate) fn flow_hold(registrar: &Registrar, aor: &str, peer: Peer, now: Now) -> Option<Instant> {
    let conn = peer.conn.filter(|_| peer.transport.is_stream())?;
    let expires_at = registrar.flow_expiry(aor, conn)?;
    Some(now.mono + Duration::from_secs(expires_at.saturating_sub(now.unix) + 1))
}

pub(crate) fn change_to_write(c: &Change) -> Write {
    match c {
        Change::Upsert(b) => Write::put(
            tables::BINDINGS,
            tables::binding_key(&b.aor, &b.key()),
            serde_json::to_vec(b).unwrap_or_default(),
        ),
        Change::Remove { aor, key } => {
            Write::delete(tables::BINDINGS, tables::binding_key(aor, key))
        }
    }
}
