//! Every table of the durable store, declared once: its name, the layout of its keys, what
//! its rows hold, whether a cluster of nodes would share it, and the order the daemon reads
//! the tables back in at start ([`RESTORE_ORDER`]).
//!
//! Rows are the JSON of types from the crates above this one (which this crate does not
//! know); each table says which. Keys made of several parts join them with `\n`, which no
//! part contains, so the rows of one person (or AoR) sort together and can be read by range.
//!
//! Only this module makes [`Table`]s: code elsewhere names a table by its constant here.

use std::fmt;

/// Whether a table would be shared by the nodes of a cluster, or is each node's own.
///
/// Switchboard runs as one node today; this says which state a cluster would have to
/// replicate (or keep in a shared store) and which stays with the node that wrote it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Meaningful only at the node that wrote it.
    NodeLocal,
    /// The same for every node: any node may need to read it.
    Shared,
}

/// A table of the durable store: a name and a [`Scope`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Table {
    name: &'static str,
    scope: Scope,
}

impl Table {
    pub(crate) const fn new(name: &'static str, scope: Scope) -> Self {
        Table { name, scope }
    }

    /// The table's name in the store.
    pub const fn name(self) -> &'static str {
        self.name
    }

    pub const fn scope(self) -> Scope {
        self.scope
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

/// The secrets this node keeps across restarts. One row today: key [`RECORD_ROUTE_SECRET`],
/// whose value is the 32 raw bytes (not JSON) keying the tokens this proxy puts in its
/// Record-Route, so that calls set up before a restart can still be hung up after it; made
/// and stored at first start.
///
/// Shared: an in-dialog request may reach any node (a cluster behind one address, or a node
/// taking over another's address), and that node must accept the tokens another node put in
/// the dialog's route set; with a secret per node those requests would be turned away.
pub const SECRETS: Table = Table::new("secrets", Scope::Shared);

/// The key, in [`SECRETS`], of the secret keying the Record-Route tokens.
pub const RECORD_ROUTE_SECRET: &str = "record-route";

/// The key, in [`SECRETS`], of the secret digest nonces are made and checked with (32 raw
/// bytes): a nonce one node issued is good at another, and across a restart.
pub const NONCE_SECRET: &str = "nonce";

/// The registrar's bindings. Key: [`binding_key`], `AoR \n binding identity` (the identity
/// is `sip::registrar::Binding::key`: the instance id and reg-id, or the contact); row: JSON
/// of a `sip::registrar::Binding`.
///
/// Shared: whichever node routes a call must find where the callee is registered.
pub const BINDINGS: Table = Table::new("bindings", Scope::Shared);

/// The key of the binding `binding` (its identity within the AoR) of `aor` in [`BINDINGS`].
pub fn binding_key(aor: &str, binding: &str) -> String {
    format!("{aor}\n{binding}")
}

/// Group memory: who answered a group's last call, and when each member last answered.
/// Key: the group (a team id, or `forward:<user id>` for a user's forwarding); row: JSON of a
/// `policy::GroupMemory`. Written when a call is answered; memory hunt, round robin and
/// least recent read it.
///
/// Shared: a group's next call may be routed by any node.
pub const MEMORY: Table = Table::new("memory", Scope::Shared);

/// People's own profiles and their changes to the policy's. Key: [`profile_key`],
/// `user \n profile id`; row: JSON of a `switchboard::profiles::Entry` (a changed or own
/// profile, as a `policy::ProfileDraft`, or the removal of a policy profile from the
/// person's set).
///
/// Shared: a person's profiles are the same whichever node they or their callers reach.
pub const PROFILES: Table = Table::new("profiles", Scope::Shared);

/// The key of `user`'s entry for profile `id` in [`PROFILES`].
pub fn profile_key(user: &str, id: &str) -> String {
    format!("{user}\n{id}")
}

/// People's current presence, a row from when a person is first seen. Key: the user id;
/// row: JSON of a `presence::model::PersonPresence` (status, custom text, messages, active
/// profile and end times).
///
/// Shared: routing and every watcher, at any node, read a person's presence.
pub const PRESENCE: Table = Table::new("presence", Scope::Shared);

/// Closed status intervals, for time-in-status reports. Key: [`status_log_key`],
/// `user \n start (Unix seconds, 20 digits) \n status`; row: JSON of a
/// `presence::model::StatusInterval`. Never read whole: a report reads each person's rows by
/// range ([`status_log_range`]).
///
/// Shared: a report covers a person's time wherever their changes were made.
pub const STATUS_LOG: Table = Table::new("status_log", Scope::Shared);

/// The key, in [`STATUS_LOG`], of `user`'s interval in `status` that began at `start`.
pub fn status_log_key(user: &str, start: i64, status: &str) -> String {
    format!("{user}\n{start:020}\n{status}")
}

/// The range of [`STATUS_LOG`] keys holding `user`'s intervals that began before `to`.
pub fn status_log_range(user: &str, to: i64) -> (String, String) {
    (format!("{user}\n"), format!("{user}\n{:020}", to.max(0)))
}

/// Who is in a call, or has one ringing, through each node: written only with a store
/// several nodes share. Key: [`call_status_key`], `node \n user`; row: the JSON of a
/// `presence::model::CallStatus` (`"ringing"` or `"busy"`; no row: free through that node).
///
/// Shared, but not durable: it says what calls in progress at a node are doing, which
/// ends with the node. Written without waiting for the disk, and kept only while its
/// node is alive (a node that stops renewing its liveness has its rows removed by the
/// others); a node clears its own rows when it starts.
pub const CALL_STATUS: Table = Table::new("call_status", Scope::Shared);

/// The key, in [`CALL_STATUS`], of `user`'s call status through `node`.
pub fn call_status_key(node: &str, user: &str) -> String {
    format!("{node}\n{user}")
}

/// Failed and successful authentications as a user, told to the other nodes sharing the
/// state so that each counts a user's failures wherever they were made (a guesser gains
/// nothing by spreading guesses over the nodes). Key: the user's SIP name; the feed
/// entry's row: `failed` (a counted failure) or `proved` (the count starts over).
///
/// Holds no rows: only its feed entries are written (with a shared store), and each node
/// applies them to its own counts, as it counts its own failures (not durable either: a
/// restart forgets counts, as it does alone).
pub const AUTH_ATTEMPTS: Table = Table::new("auth_attempts", Scope::Shared);

/// Nodes found gone, and back: when a node stops renewing its liveness, another node tells
/// every node (itself included), so that phones only the gone node's connections reached
/// are known unreachable at once, not tried through it; a node that renews its liveness
/// after it lapsed says it is back. Key: the node's name; the feed entry's row: `gone` or
/// `back`. Holds no rows (feed entries only).
pub const NODES: Table = Table::new("nodes", Scope::Shared);

/// Subscriptions to the dialog and presence event packages, kept across a restart. Key:
/// `Call-ID \n local tag \n remote tag` of the subscription's dialog (made by
/// `sip::subscription::Notifier::key`, from the subscription itself); row: JSON of a
/// `sip::subscription::Subscription`.
///
/// Node-local: a subscription is a dialog with one subscriber over its flow to one node, and
/// its NOTIFYs go from that node.
pub const SUBSCRIPTIONS: Table = Table::new("subscriptions", Scope::NodeLocal);

/// Call records: one row per call, written when the call ends (an unanswered call at its
/// final response, an answered one at its BYE). Key: [`call_record_key`], `start (Unix
/// seconds, 20 digits) \n Call-ID`, so rows sort by the time the call began and a time range
/// is a key range ([`call_record_range`]); row: JSON of a `switchboard::core::records::
/// CallRecord`. Never read whole: queries read ranges; rows older than the retention
/// (`[records] keep_days`) are deleted in bounded batches.
///
/// Shared: a person's calls are theirs whichever node routed them.
pub const CALL_RECORDS: Table = Table::new("call_records", Scope::Shared);

/// Longest Call-ID kept in a [`CALL_RECORDS`] key (a longer one is cut: keys stay short).
pub const CALL_RECORD_KEY_CALL_ID: usize = 128;

/// The key, in [`CALL_RECORDS`], of the call `call_id` that began at `start`.
pub fn call_record_key(start: u64, call_id: &str) -> String {
    let mut end = call_id.len().min(CALL_RECORD_KEY_CALL_ID);
    while !call_id.is_char_boundary(end) {
        end -= 1;
    }
    format!("{start:020}\n{}", &call_id[..end])
}

/// The range of [`CALL_RECORDS`] keys of calls that began in `from..to` (Unix seconds).
pub fn call_record_range(from: u64, to: u64) -> (String, String) {
    (format!("{from:020}\n"), format!("{to:020}\n"))
}

/// Missed calls waiting to be mailed: one row per unanswered call whose record the core wrote
/// while `[mail]` is configured, in the same commit as the record. Key: the call's
/// [`call_record_key`]; row: JSON of the `switchboard::core::records::CallRecord`. The mail
/// task reads it in bounded pages, sends what the callees' settings ask for, and deletes
/// each row when its mail is delivered or given up: a daemon killed in between sends it
/// after its restart.
///
/// Node-local: the node that wrote the record sends its mail.
pub const MAIL_OUTBOX: Table = Table::new("mail_outbox", Scope::NodeLocal);

/// Voicemail messages: one row per message a mailbox holds. Key: [`voicemail_key`],
/// `mailbox \n message id` (the mailbox is `user:ID` or `team:ID`; the id begins with the
/// time it was left, 20 digits, so a mailbox's messages sort oldest first and are read by
/// range, [`voicemail_range`]); row: JSON of a `switchboard::voicemail::MessageRow` (who
/// called, whom, when, how long, why the call came there, heard or not). Written in the
/// same commit as the message's audio ([`VOICEMAIL_AUDIO`]): a message is whole or absent.
///
/// Shared: a person's mailbox is theirs whichever node took the message.
pub const VOICEMAIL: Table = Table::new("voicemail", Scope::Shared);

/// The audio of each voicemail message. Key: the message's [`voicemail_key`]; value: the
/// WAV file (8000 Hz mono 16-bit PCM, raw bytes, not JSON). Never read whole: a message's
/// audio is read by its key when it is played, fetched or mailed.
///
/// Shared: as [`VOICEMAIL`].
pub const VOICEMAIL_AUDIO: Table = Table::new("voicemail_audio", Scope::Shared);

/// What each mailbox's owner recorded: key [`voicemail_key`] with id `greeting` (what a
/// caller hears before leaving a message) or `name` (their name, said in announcements);
/// value: the WAV file (8000 Hz mono 16-bit PCM, raw bytes).
///
/// Shared: as [`VOICEMAIL`].
pub const VOICEMAIL_RECORDINGS: Table = Table::new("voicemail_recordings", Scope::Shared);

/// Voicemail messages waiting to be mailed: one row per message left in a mailbox that has
/// mail addresses while `[mail]` is configured, written in the same commit as the message.
/// Key: the message's [`voicemail_key`]; row: JSON of a `switchboard::core::mailboxes::
/// MailNotice` (the addresses and a copy of the message's row). The mail task reads it in
/// bounded pages, sends each address a mail with the message's audio (read from
/// [`VOICEMAIL_AUDIO`] then) attached, and deletes the row when every mail of it is
/// delivered or given up; deleting the message deletes its notice too. Its own table, not
/// [`MAIL_OUTBOX`]: its rows are another type, and a flood of missed calls cannot crowd out
/// the messages (each outbox has its own bound).
///
/// Node-local: the node that took the message sends its mail.
pub const VOICEMAIL_OUTBOX: Table = Table::new("voicemail_outbox", Scope::NodeLocal);

/// The key, in [`VOICEMAIL`], [`VOICEMAIL_AUDIO`], [`VOICEMAIL_RECORDINGS`] and
/// [`VOICEMAIL_OUTBOX`], of `id` in `mailbox`.
pub fn voicemail_key(mailbox: &str, id: &str) -> String {
    format!("{mailbox}\n{id}")
}

/// The range of [`voicemail_key`]s of every row of `mailbox`.
pub fn voicemail_range(mailbox: &str) -> (String, String) {
    (format!("{mailbox}\n"), format!("{mailbox}\u{b}"))
}

/// Every table, in the order declared above.
pub const ALL: &[Table] = &[
    SECRETS,
    BINDINGS,
    MEMORY,
    PROFILES,
    PRESENCE,
    STATUS_LOG,
    CALL_STATUS,
    AUTH_ATTEMPTS,
    NODES,
    SUBSCRIPTIONS,
    CALL_RECORDS,
    MAIL_OUTBOX,
    VOICEMAIL,
    VOICEMAIL_AUDIO,
    VOICEMAIL_RECORDINGS,
    VOICEMAIL_OUTBOX,
];

/// The shared tables every node keeps in memory (read back whole at start): with a store
/// that several nodes share, each change to one of these is told to the other nodes (the
/// store's change feed), which apply it to what they hold. The other shared tables are read
/// from the store when needed, so nothing of them is held that could go stale.
pub const CACHED: &[Table] = &[BINDINGS, MEMORY, PROFILES, PRESENCE, VOICEMAIL, CALL_STATUS];

/// The tables whose changes are only told to the other nodes (feed entries), never kept
/// as rows.
pub const TOLD_ONLY: &[Table] = &[AUTH_ATTEMPTS, NODES];

/// The order in which the daemon reads the tables back at start, and restores what they
/// hold.
///
/// - [`SECRETS`] first: the core is built with the Record-Route secret (read, or made and
///   stored on first start), before anything is restored into it.
/// - [`BINDINGS`] and [`MEMORY`]: registrations and group memory; restoring them needs
///   nothing else read back.
/// - [`PROFILES`] before [`PRESENCE`]: restoring presence checks each person's active
///   profile against their set, which includes their own profiles; read the other way round,
///   anyone in a profile of their own would be put back in their default profile.
/// - [`CALL_STATUS`] after [`PRESENCE`]: other nodes' calls, which a watcher's lamp shows
///   beside the person's presence (with a shared store only).
/// - [`SUBSCRIPTIONS`] after those: each restored subscription is sent a NOTIFY at once with
///   what it shows now, which must be the presence just restored.
/// - [`STATUS_LOG`] and [`CALL_RECORDS`] last, and only nominally: they grow with time and
///   are never loaded; reports and queries read ranges of them from the store when asked.
///   [`MAIL_OUTBOX`] and [`VOICEMAIL_OUTBOX`] likewise: the mail task reads them itself.
///   [`AUTH_ATTEMPTS`] and [`NODES`] hold no rows at all (feed entries only).
///   [`AUTH_ATTEMPTS`] and [`NODES`] hold no rows at all (feed entries only).
/// - [`VOICEMAIL`] before [`SUBSCRIPTIONS`]: a restored message-summary subscription is
///   told its mailbox's counts, which must be the messages read back;
///   [`VOICEMAIL_AUDIO`] and [`VOICEMAIL_RECORDINGS`] are never loaded whole (read by key
///   when played, fetched or mailed).
pub const RESTORE_ORDER: &[Table] = &[
    SECRETS,
    BINDINGS,
    MEMORY,
    PROFILES,
    PRESENCE,
    CALL_STATUS,
    VOICEMAIL,
    SUBSCRIPTIONS,
    STATUS_LOG,
    CALL_RECORDS,
    MAIL_OUTBOX,
    VOICEMAIL_OUTBOX,
    VOICEMAIL_AUDIO,
    VOICEMAIL_RECORDINGS,
    AUTH_ATTEMPTS,
    NODES,
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn all_lists_every_declared_table() {
        let source = include_str!("tables.rs");
        let declarations = source.split("#[cfg(test)]").next().unwrap();
        let declared = declarations
            .lines()
            .filter(|l| l.starts_with("pub const ") && l.contains(": Table = "))
            .count();
        assert_eq!(ALL.len(), declared);
    }

    #[test]
    fn names_are_unique() {
        let names: HashSet<&str> = ALL.iter().map(|t| t.name()).collect();
        assert_eq!(names.len(), ALL.len());
    }

    #[test]
    fn restore_order_lists_every_table_exactly_once() {
        for t in ALL {
            let n = RESTORE_ORDER.iter().filter(|r| *r == t).count();
            assert_eq!(n, 1, "{t} is in the restore order {n} times");
        }
        assert_eq!(RESTORE_ORDER.len(), ALL.len());
    }

    #[test]
    fn restore_order_puts_dependencies_first() {
        let at = |t: Table| RESTORE_ORDER.iter().position(|r| *r == t).unwrap();
        assert_eq!(at(SECRETS), 0);
        assert!(at(PROFILES) < at(PRESENCE));
        for t in [BINDINGS, MEMORY, PROFILES, PRESENCE, CALL_STATUS, VOICEMAIL] {
            assert!(at(t) < at(SUBSCRIPTIONS), "{t}");
        }
    }

    #[test]
    fn cached_tables_are_shared_and_restored_at_start() {
        for t in CACHED {
            assert_eq!(t.scope(), Scope::Shared, "{t}");
            assert!(RESTORE_ORDER.contains(t), "{t}");
        }
    }

    #[test]
    fn call_record_keys_sort_by_start_and_fall_in_their_range() {
        let a = call_record_key(99, "zz");
        let b = call_record_key(100, "aa");
        assert!(a < b);
        let (from, to) = call_record_range(100, 101);
        assert!(b >= from && b < to);
        assert!(a < from);
        assert!(call_record_key(101, "") >= to);
        let long = "é".repeat(100);
        assert!(call_record_key(1, &long).len() <= 21 + CALL_RECORD_KEY_CALL_ID);
    }

    #[test]
    fn voicemail_keys_of_a_mailbox_fall_in_its_range_only() {
        let (from, to) = voicemail_range("user:al");
        let k = voicemail_key("user:al", "00000000001700000000-1");
        assert!(k >= from && k < to);
        for other in ["user:a", "user:al2", "user:alice", "team:al"] {
            let k = voicemail_key(other, "00000000001700000000-1");
            assert!(k < from || k >= to, "{other}");
        }
    }

    #[test]
    fn keys() {
        assert_eq!(
            binding_key("alice", "contact:sip:a@h"),
            "alice\ncontact:sip:a@h"
        );
        assert_eq!(profile_key("alice", "lunch"), "alice\nlunch");
        assert_eq!(
            status_log_key("alice", 1_700_000_000, "busy"),
            "alice\n00000000001700000000\nbusy"
        );
        let (start, end) = status_log_range("alice", 1_700_000_000);
        assert!(start.as_str() <= status_log_key("alice", 0, "busy").as_str());
        assert!(status_log_key("alice", 1_699_999_999, "busy") < end);
        assert!(status_log_key("alice", 1_700_000_000, "busy") >= end);
        assert_eq!(
            status_log_range("alice", -5).1,
            "alice\n00000000000000000000"
        );
    }

    #[test]
    fn scopes() {
        for t in [SUBSCRIPTIONS, MAIL_OUTBOX, VOICEMAIL_OUTBOX] {
            assert_eq!(t.scope(), Scope::NodeLocal, "{t}");
        }
        for t in [BINDINGS, PRESENCE, STATUS_LOG, PROFILES, MEMORY] {
            assert_eq!(t.scope(), Scope::Shared, "{t}");
        }
    }
}
