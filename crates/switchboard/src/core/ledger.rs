//! Stored, then answered: every answer that waits for its writes to be durable is filed
//! here under the token of its `Output::Persist`, until the store's outcome comes back
//! (`Input::Persisted`). An acknowledgement (a REGISTER's 200, a SUBSCRIBE's 200, a
//! presence change's or a mailbox change's answer) never leaves before its writes are on disk; a write the store
//! refuses is undone and answered with an error.

use crate::presence_service;
use std::collections::HashMap;
use switchboard_sip::msg::Response;
use switchboard_sip::registrar::Binding;
use switchboard_sip::subscription::SubId;
use switchboard_sip::transaction::TxId;

/// An answer waiting for its writes to be durable.
pub(crate) enum Pending {
    /// A REGISTER's 200; on failure the AoR's bindings go back to `previous`.
    Register {
        tx: TxId,
        response: Response,
        aor: String,
        previous: Vec<Binding>,
    },
    /// The answer to a presence change asked over SIP (PUBLISH, a feature code): `ok` once
    /// stored, `failed` (and the change undone) if it could not be.
    Sip {
        tx: TxId,
        ok: Response,
        failed: Response,
        before: presence_service::Undo,
        person: String,
    },
    /// A SUBSCRIBE's 200 (then its NOTIFY), once the subscription is stored.
    Subscribe {
        tx: TxId,
        id: SubId,
        ok: Box<Response>,
    },
    /// A presence change's answer to the API.
    Presence {
        id: u64,
        answer: presence_service::Answer,
        before: presence_service::Undo,
        person: Option<String>,
    },
    /// A mailbox's answer to the API (a change, or a read that waits for every earlier
    /// write); a change that could not be stored is undone. `mailbox`: the mailbox whose
    /// changes wait for this one (None for a read).
    Voicemail {
        id: u64,
        answer: crate::voicemail::Answer,
        before: crate::voicemail::Undo,
        mailbox: Option<String>,
    },
    /// A voicemail message left by a caller (no answer waits for it); if it could not be
    /// stored it is taken out of its mailbox again (its lamp follows), never left counted
    /// without its audio.
    Deposit { mailbox: String, id: String },
    /// A change made by the mailbox by phone (session `session`): undone if it could not
    /// be stored; with `wait`, its menu hears the outcome (and only then says it is done).
    Phone {
        session: switchboard_media::session::SessionId,
        before: crate::voicemail::Undo,
        wait: bool,
    },
}

/// The answers owed, by the token of their writes.
pub(crate) struct Ledger {
    pending: HashMap<u64, Pending>,
    next_token: u64,
}

impl Ledger {
    pub(crate) fn new() -> Self {
        Ledger {
            pending: HashMap::new(),
            next_token: 1,
        }
    }

    /// A token for writes whose outcome no answer waits for (expiries, restored state).
    pub(crate) fn token(&mut self) -> u64 {
        let t = self.next_token;
        self.next_token += 1;
        t
    }

    /// Files an answer; returns the token its writes go out with.
    pub(crate) fn file(&mut self, pending: Pending) -> u64 {
        let token = self.token();
        self.pending.insert(token, pending);
        token
    }

    /// The answer waiting on `token`, if any (once: it is taken out).
    pub(crate) fn settle(&mut self, token: u64) -> Option<Pending> {
        self.pending.remove(&token)
    }

    /// How many answers wait for the store.
    pub(crate) fn len(&self) -> usize {
        self.pending.len()
    }
}
