//! Where requests for a person or a URI go: which of a person's bindings are distinct
//! targets, and over which flow or to which address each is reached. Shared by calls (the
//! branches), relays (the next hop of an in-dialog request) and dialogs (our own requests
//! to an end of a call). A URI with a host name is located by [`super::locating`].

use super::wire::Now;
use switchboard_sip::peer::Peer;
use switchboard_sip::proxy;
use switchboard_sip::registrar::{Binding, Registrar};
use switchboard_sip::transport::Transport;

/// One binding per place a request would reach (RFC 3261 §16.5: a target is forked to
/// once): bindings whose contact URIs are equal as §19.1.4 compares them and that are
/// reached over the same flow (transport and address, see [`binding_peer`]) are one
/// target, the newest binding of them kept — as when a phone restarts with a new
/// `+sip.instance` from the same address, and its old binding lingers until it expires.
/// The order (q-value, highest first) is kept.
pub(crate) fn distinct_targets(bindings: Vec<&Binding>) -> Vec<&Binding> {
    if bindings.len() < 2 {
        return bindings; // nothing to compare (most people have one device)
    }
    type Place = (Transport, std::net::SocketAddr);
    let mut kept: Vec<(String, Place, &Binding)> = Vec::with_capacity(bindings.len());
    for b in bindings {
        let key = switchboard_sip::registrar::contact_compare_key(&b.contact);
        // Where requests go; a binding whose flow is gone, where its flow was.
        let place = binding_peer(b).map_or((b.transport, b.source), |p| (p.transport, p.addr));
        match kept.iter_mut().find(|(k, p, _)| *k == key && *p == place) {
            Some(e) => {
                if newer(b, e.2) {
                    e.2 = b;
                }
            }
            None => kept.push((key, place, b)),
        }
    }
    kept.into_iter().map(|(_, _, b)| b).collect()
}

/// Whether binding `a` is newer than `b`: registered later (or, registered at the same
/// second, lasting longer).
pub(crate) fn newer(a: &Binding, b: &Binding) -> bool {
    (a.registered_at, a.expires_at) > (b.registered_at, b.expires_at)
}

/// Where requests for a binding go: over its flow (the address the REGISTER came from, and
/// for a stream its connection) when the phone is behind NAT, asked for it (RFC 5626
/// `reg-id`) or uses a stream transport; otherwise to its contact address. `None` when the
/// binding can only be reached over its flow and that flow is gone.
///
/// A binding another node took ([`Binding::remote`]) that needs its flow is not reached
/// from here: requests for it go through that node ([`binding_hop`]).
pub(crate) fn binding_peer(b: &Binding) -> Option<Peer> {
    if b.flow_gone() || (b.remote && b.needs_flow()) {
        return None;
    }
    let flow = b.peer();
    if b.transport.is_stream() || b.reg_id.is_some() {
        return Some(flow);
    }
    Some(match proxy::uri_target(&b.contact) {
        Some((transport, addr)) if addr.ip() == b.source.ip() => Peer {
            transport,
            addr,
            conn: None,
            local: b.local,
        },
        _ => flow,
    })
}

/// Where a request for a binding another node took goes when only that node's flow
/// reaches the phone: to that node (its hop,
/// [`switchboard_sip::registrar::FlowOwner::hop`]), with a Route naming it. None when
/// the binding is reached directly, or its node gave no address.
pub(crate) fn binding_hop(b: &Binding) -> Option<(Peer, &str)> {
    if !(b.remote && b.needs_flow()) {
        return None;
    }
    let owner = b.owner.as_ref().filter(|o| !o.gone)?;
    let hop = owner.hop.as_deref()?;
    let (transport, addr) = proxy::uri_target(hop)?;
    let peer = Peer {
        transport,
        addr,
        conn: None,
        local: None,
    };
    Some((peer, hop))
}

/// Where a URI is reached: over the flow of the registered contact it names, else at the
/// address it names.
pub(crate) fn peer_for_uri(registrar: &Registrar, uri: &str, now: Now) -> Option<Peer> {
    if let Some(b) = registrar.find_contact(uri, now.unix) {
        return binding_peer(b);
    }
    proxy::uri_target(uri).map(|(transport, addr)| Peer {
        transport,
        addr,
        conn: None,
        local: None,
    })
}
