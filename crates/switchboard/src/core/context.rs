//! What a sub-machine of the core is handed for one event: the time, the wire, the
//! settings, the policy's directory, the registrar, presence, the digest gate, our answers
//! to carriers' challenges, the ledger, the locator, the addresses of the trunks'
//! source names, media sessions and mailboxes — borrowed from the core's own fields, apart from the sub-machine's own
//! state, so that no sub-machine holds (or needs) a reference back to the core.

use super::auth_gate::{AuthGate, Gate};
use super::carrier_auth::CarrierAuth;
use super::config::CoreConfig;
use super::ledger::{Ledger, Pending};
use super::locating::Locating;
use super::mailboxes::Mailboxes;
use super::media::Media;
use super::trunk_sources::TrunkSources;
use super::wire::{Now, Output, Wire};
use crate::directory::Directory;
use crate::presence_service::PresenceService;
use switchboard_sip::auth::Role;
use switchboard_sip::message;
use switchboard_sip::msg::prelude::*;
use switchboard_sip::msg::Request;
use switchboard_sip::peer::Peer;
use switchboard_sip::registrar::Registrar;
use switchboard_sip::transaction::TxId;
use switchboard_store::Write;

pub(crate) struct Ctx<'a> {
    pub now: Now,
    pub wire: &'a mut Wire,
    pub config: &'a CoreConfig,
    /// The policy's directory as last handed in.
    pub directory: &'a dyn Directory,
    pub registrar: &'a mut Registrar,
    pub presence: &'a mut PresenceService,
    pub gate: &'a mut AuthGate,
    /// Our answers to carriers' challenges (trunks' accounts).
    pub carrier: &'a mut CarrierAuth,
    pub ledger: &'a mut Ledger,
    /// Host names to targets (RFC 3263), and who waits for them.
    pub locating: &'a mut Locating,
    /// The addresses of trunks' source names, as last looked up.
    pub sources: &'a TrunkSources,
    /// Local media endpoints: the messages played to callers.
    pub media: &'a mut Media,
    /// Voicemail mailboxes and their messages.
    pub mailboxes: &'a mut Mailboxes,
}

/// Builds a [`Ctx`] from a core's fields (a macro, so that the borrows stay disjoint from
/// the sub-machine being called).
macro_rules! ctx {
    ($core:expr, $now:expr) => {
        $crate::core::context::Ctx {
            now: $now,
            wire: &mut $core.wire,
            config: &$core.config,
            directory: $core.directory.as_ref().as_ref(),
            registrar: &mut $core.registrar,
            presence: &mut $core.presence,
            gate: &mut $core.gate,
            carrier: &mut $core.carrier,
            ledger: &mut $core.ledger,
            locating: &mut $core.locating,
            sources: &$core.sources,
            media: &mut $core.media,
            mailboxes: &mut $core.mailboxes,
        }
    };
}
pub(crate) use ctx;

impl<'a> Ctx<'a> {
    /// The trunk a request from `ip` belongs to by its source: a network of its
    /// `sources`, or an address one of its source names has now.
    pub fn trunk_for_source(&self, ip: std::net::IpAddr) -> Option<&'a switchboard_policy::Trunk> {
        self.sources.trunk_for(self.directory.policy(), ip)
    }

    /// Makes `writes` durable, then answers as `pending` says (see the ledger).
    pub fn persist(&mut self, pending: Pending, writes: Vec<Write>) {
        let token = self.ledger.file(pending);
        self.wire.out.push_back(Output::Persist { token, writes });
    }

    /// Makes `writes` durable with no answer waiting for them.
    pub fn persist_unacknowledged(&mut self, writes: Vec<Write>) {
        if !writes.is_empty() {
            let token = self.ledger.token();
            self.wire.out.push_back(Output::Persist { token, writes });
        }
    }

    /// Digest authentication of a request (RFC 7616) as a UAS (`401`) or a proxy (`407`),
    /// through the one gate: the user name it proves, or None when it has been answered
    /// (statelessly: nothing is kept for a request that has not proved its sender) —
    /// challenged (the same challenge whoever it claims to be), refused 403 (a failure
    /// counted against its source, or a blocked source), or 400 when unreadable.
    pub fn digest(&mut self, tx: TxId, req: &Request, peer: Peer, role: Role) -> Option<String> {
        match self
            .gate
            .check(req, peer, role, self.directory, self.sources, self.now.mono)
        {
            Gate::Passed(username) => Some(username),
            Gate::Answer { code, headers } => {
                self.wire.reply_stateless(tx, req, code, headers);
                None
            }
        }
    }

    /// The user a request to this server as a UAS (SUBSCRIBE, PUBLISH) comes from: the
    /// user its digest proves (`401`), or without authentication its From user; None when
    /// it has been answered (a challenge, 403, 400).
    pub fn authenticate_user(&mut self, tx: TxId, req: &Request, peer: Peer) -> Option<String> {
        let from_user = req
            .from_header()
            .ok()
            .and_then(|f| f.typed().ok())
            .and_then(|f| f.uri.user().map(str::to_string))
            .unwrap_or_default();
        let (user, why) = if self.config.auth_required {
            let username = self.digest(tx, req, peer, Role::Server)?;
            (self.directory.user_of_username(&username), "not a user")
        } else {
            (self.directory.user_for(&from_user), "unknown user")
        };
        if user.is_none() {
            let warning = vec![message::warning(why)];
            self.wire.reply_stateless(tx, req, 403, warning);
        }
        user
    }

    /// The person a Request-URI names on this server, or None (answered 404).
    pub fn resource_of(&mut self, tx: TxId, req: &Request) -> Option<String> {
        let host = req.uri.host_with_port.host.to_string();
        let person = match req.uri.user() {
            Some(u) if self.wire.is_local_host(&host) => self.directory.user_for(u),
            _ => None,
        };
        if person.is_none() {
            let warning = vec![message::warning("no such person here")];
            self.wire.reply_to(tx, req, 404, warning, self.now);
        }
        person
    }
}
