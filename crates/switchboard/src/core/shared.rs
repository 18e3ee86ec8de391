//! What other nodes sharing the store changed ([`Input::Shared`](super::Input::Shared)):
//! applied to what this node holds, as the restore steps load it at start, and told to the
//! watchers and the board as a change made here would be.
//!
//! Nothing here is stored again: the rows came from the store. A row another node wrote
//! replaces the one held here (the feed is in the store's order, so the last write wins
//! everywhere alike); a resync replaces every row of a table's shard and drops those of
//! the shard no longer in it.

use std::collections::BTreeSet;

use switchboard_presence::model::CallStatus;
use switchboard_sip::registrar::Binding;
use switchboard_store::tables::{
    binding_key, call_status_key, AUTH_ATTEMPTS, BINDINGS, CALL_STATUS, MEMORY, NODES, PRESENCE,
    PROFILES, VOICEMAIL,
};
use switchboard_store::{FeedEvent, Rows, Shard, Table, Write};

use super::{Core, Now, Output};

/// The rows of [`AUTH_ATTEMPTS`]: a failure counted, a user that proved itself.
const FAILED: &[u8] = b"failed";
const PROVED: &[u8] = b"proved";

impl Core {
    pub(super) fn shared(&mut self, event: FeedEvent, now: Now) {
        match event {
            FeedEvent::Changes(changes) => {
                for w in changes {
                    self.apply_shared(w, now);
                }
            }
            FeedEvent::Resync { shard, tables } => {
                for (table, rows) in tables {
                    self.replace_shared(table, shard, rows, now);
                }
            }
        }
    }

    pub(super) fn apply_shared(&mut self, w: Write, now: Now) {
        let Write { table, key, value } = w;
        match table {
            BINDINGS => {
                let Some((aor, id)) = key.split_once('\n') else {
                    tracing::warn!(
                        key,
                        "a binding from another node has an unreadable key; skipped"
                    );
                    return;
                };
                let binding = match value.map(|v| serde_json::from_slice::<Binding>(&v)) {
                    None => None,
                    Some(Ok(b)) => Some(b),
                    Some(Err(e)) => {
                        tracing::warn!(key, error = %e, "unreadable binding from another node; skipped");
                        return;
                    }
                };
                let had = !self.registrar.lookup(aor, now.unix).is_empty();
                self.registrar.apply_shared(aor, id, binding, now.unix);
                self.board.note_person(aor);
                let has = !self.registrar.lookup(aor, now.unix).is_empty();
                if self.config.watchers.offline_without_devices && had != has {
                    self.renotify.push(aor.to_string());
                }
            }
            PRESENCE => self.presence.apply_shared(&key, value.as_deref()),
            PROFILES => {
                let policy = self.directory.policy();
                self.presence
                    .apply_shared_profile(&key, value.as_deref(), policy);
            }
            MEMORY => self.calls.apply_shared_memory(key, value.as_deref()),
            VOICEMAIL => self.mailboxes.apply_shared(&key, value.as_deref()),
            CALL_STATUS => {
                let Some((node, person)) = key.split_once('\n') else {
                    tracing::warn!(
                        key,
                        "call status from another node with an unreadable key; skipped"
                    );
                    return;
                };
                // This node's own word on its calls (an earlier run's rows) is not taken.
                if Some(node) == self.config.node.as_deref() {
                    return;
                }
                let status = match value.map(|v| serde_json::from_slice::<CallStatus>(&v)) {
                    None => CallStatus::Free,
                    Some(Ok(s)) => s,
                    Some(Err(e)) => {
                        tracing::warn!(key, error = %e, "unreadable call status from another node; skipped");
                        return;
                    }
                };
                self.presence
                    .model_mut()
                    .set_remote_call(node, person, status);
            }
            NODES => {
                let gone = value.as_deref() != Some(b"back".as_slice());
                let phones = self.registrar.node_gone(&key, gone);
                if gone {
                    tracing::info!(node = key, phones, "a node sharing the state is gone; phones only it reached are unreachable until they register again or it is back");
                } else {
                    tracing::info!(node = key, phones, "a node sharing the state is back");
                }
            }
            AUTH_ATTEMPTS => {
                let failed = value.as_deref() == Some(FAILED);
                self.gate.shared_attempt(&key, failed, now.mono);
            }
            other => {
                tracing::debug!(table = %other, "a change to a table not held in memory; ignored")
            }
        }
    }

    /// Holds `rows` as the whole of `shard` of `table`: rows of that shard held here and not
    /// among them are dropped.
    fn replace_shared(&mut self, table: Table, shard: Shard, rows: Rows, now: Now) {
        let keep: BTreeSet<&str> = rows.iter().map(|(k, _)| k.as_str()).collect();
        let gone: Vec<String> = self
            .held_keys(table, now)
            .into_iter()
            .filter(|k| shard.holds(k) && !keep.contains(k.as_str()))
            .collect();
        let count = rows.len();
        for key in gone {
            self.apply_shared(Write::delete(table, key), now);
        }
        for (key, value) in rows {
            self.apply_shared(Write::put(table, key, value), now);
        }
        tracing::info!(table = %table, shard = shard.index, rows = count, "read again from the shared store");
    }

    /// The keys of the rows of `table` this node holds.
    fn held_keys(&self, table: Table, now: Now) -> Vec<String> {
        match table {
            BINDINGS => self
                .registrar
                .live(now.unix)
                .map(|b| binding_key(&b.aor, &b.key()))
                .collect(),
            PRESENCE => self
                .presence
                .model()
                .people()
                .map(|(u, _)| u.clone())
                .collect(),
            PROFILES => self.presence.overlay().keys(),
            MEMORY => self.calls.memory_groups(),
            VOICEMAIL => self.mailboxes.keys(),
            CALL_STATUS => self
                .presence
                .model()
                .remote_calls()
                .map(|(node, person)| call_status_key(node, person))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Tells the other nodes sharing the state of the calls through this node of those
    /// among `changed` whose call status here is not what was last told, and of the
    /// authentications as users they must count too.
    pub(super) fn share_calls(&mut self, changed: &[String]) {
        let Some(node) = self.config.node.as_deref() else {
            return;
        };
        let mut writes = Vec::new();
        for person in changed {
            let now = self.presence.model().local_call_state(person);
            let told = self
                .published_calls
                .get(person)
                .copied()
                .unwrap_or(CallStatus::Free);
            if now == told {
                continue;
            }
            let key = call_status_key(node, person);
            match now {
                CallStatus::Ringing | CallStatus::Busy => {
                    self.published_calls.insert(person.clone(), now);
                    let row = serde_json::to_vec(&now).expect("a call status serializes");
                    writes.push(Write::put(CALL_STATUS, key, row));
                }
                CallStatus::Free | CallStatus::Hidden => {
                    self.published_calls.remove(person);
                    writes.push(Write::delete(CALL_STATUS, key));
                }
            }
        }
        for (user, failed) in std::mem::take(&mut self.gate.to_share) {
            let row = if failed { FAILED } else { PROVED };
            writes.push(Write::put(AUTH_ATTEMPTS, user, row.to_vec()));
        }
        if !writes.is_empty() {
            self.wire.out.push_back(Output::Share(writes));
        }
    }
}
