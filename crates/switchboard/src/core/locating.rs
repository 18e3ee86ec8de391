//! Where the core's SIP URIs with host names become targets (RFC 3263): the core's
//! [`Locator`] and who waits for each of its resolutions.
//!
//! A sub-machine that needs the targets of a URI (a branch to a trunk, a destination or a
//! redirect target; a trunk's registrar; the next hop of a request inside a dialog,
//! relayed or the proxy's own) calls [`Locating::resolve`] (the addresses of a trunk's
//! source name: [`Locating::resolve_addresses`]): a numeric address, or
//! an answer kept in the locator's cache, gives the targets at once; otherwise the
//! resolution is filed with the sub-machine's [`Waiter`] and its DNS questions leave the
//! core as [`super::Output::Lookup`]. The shell looks them up and hands the answers back in
//! as [`super::Input::DnsAnswer`]; the core then gives each finished resolution to its
//! waiter (`Core::located`). Nothing waits on a lookup on the core's turn.

use std::collections::HashMap;
use std::time::Instant;
use switchboard_sip::locate::{
    Destination, Host, LocateError, Locator, Resolution, ResolutionId, Resolved, Target,
};
use switchboard_sip::peer::Peer;
use switchboard_sip::transport::Transport;

/// Who waits for a resolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Waiter {
    /// A call's branch waits to be sent.
    Branch {
        call: u64,
        branch: crate::executor::BranchId,
    },
    /// A trunk's registration (by key) waits for its registrar's addresses.
    Registration(u64),
    /// A host name among trunks' sources (by key) waits for its addresses.
    SourceName(u64),
    /// A request inside a dialog (by key, in `relays`) is held until its next hop's
    /// targets are known.
    Relay(u64),
    /// A probe or BYE of the proxy's own to an end of an answered call (by key, in
    /// `dialogs`) waits for its next hop's targets.
    Dialog(u64),
}

/// What [`Locating::resolve`] gave.
pub(crate) enum Located {
    /// The targets, known at once.
    Done(Result<Resolved, LocateError>),
    /// Lookups are under way; the outcome goes to the waiter.
    Pending(ResolutionId),
}

/// The core's locator and its waiters.
pub(crate) struct Locating {
    pub locator: Locator,
    waiters: HashMap<ResolutionId, Waiter>,
    /// When expired answers and blocks are next dropped.
    next_expiry: Option<Instant>,
}

/// How often expired answers and blocks are dropped (a sweep of the tables; until then an
/// expired answer is simply not used).
const EXPIRY_SWEEP: std::time::Duration = std::time::Duration::from_secs(10);

impl Locating {
    pub(crate) fn new(locator: Locator) -> Self {
        Locating {
            locator,
            waiters: HashMap::new(),
            next_expiry: None,
        }
    }

    /// Drops expired answers and blocks, at most every [`EXPIRY_SWEEP`].
    pub(crate) fn expire(&mut self, now: Instant) {
        if self.next_expiry.is_some_and(|t| t > now) {
            return;
        }
        self.locator.expire(now);
        self.next_expiry = Some(now + EXPIRY_SWEEP);
    }

    /// Starts locating `uri` for `waiter`.
    pub(crate) fn resolve(&mut self, uri: &str, waiter: Waiter, now: Instant) -> Located {
        match self.locator.resolve_uri(uri, now) {
            Resolution::Done(outcome) => Located::Done(outcome),
            Resolution::Pending(id) => {
                self.waiters.insert(id, waiter);
                Located::Pending(id)
            }
        }
    }

    /// Starts looking up the addresses of host `name` (A and AAAA, as the listeners'
    /// families allow), which is no SIP server's: a trunk's source. `fresh`: answers in
    /// the cache are not used (a refresh of addresses kept, shortly before they run out).
    /// The outcome's targets carry the addresses; their port and transport mean nothing.
    pub(crate) fn resolve_addresses(
        &mut self,
        name: &str,
        fresh: bool,
        waiter: Waiter,
        now: Instant,
    ) -> Located {
        // A port and a transport make it A and AAAA only (RFC 3263 §4.2), no NAPTR or SRV.
        let dest = Destination {
            secure: false,
            host: Host::Name(name.to_string()),
            port: Some(Transport::Udp.default_port()),
            transport: Some(Transport::Udp),
        };
        let resolution = if fresh {
            self.locator.refresh(&dest, now)
        } else {
            self.locator.resolve(&dest, now)
        };
        match resolution {
            Resolution::Done(outcome) => Located::Done(outcome),
            Resolution::Pending(id) => {
                self.waiters.insert(id, waiter);
                Located::Pending(id)
            }
        }
    }

    /// Nobody waits for resolution `id` any more (a cancelled branch, a forgotten call or
    /// registration): its outcome is dropped.
    pub(crate) fn cancel(&mut self, id: ResolutionId) {
        self.waiters.remove(&id);
        self.locator.cancel(id);
    }

    /// The next finished resolution whose waiter still waits.
    pub(crate) fn poll_resolved(
        &mut self,
    ) -> Option<(Waiter, ResolutionId, Result<Resolved, LocateError>)> {
        while let Some((id, outcome)) = self.locator.poll_resolved() {
            if let Some(w) = self.waiters.remove(&id) {
                return Some((w, id, outcome));
            }
        }
        None
    }

    /// Resolutions waited for.
    #[cfg(test)]
    pub(crate) fn waiting(&self) -> usize {
        self.waiters.len()
    }
}

/// The target a peer was sent to (for [`Locator::report_failure`] and
/// [`Locator::report_success`]).
pub(crate) fn target_of(peer: Peer) -> Target {
    Target {
        transport: peer.transport,
        addr: peer.addr,
    }
}
