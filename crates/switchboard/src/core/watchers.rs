//! Watchers: colleagues' call status for BLF lamps (the dialog event package, RFC 4235),
//! their presence with its status message (RFC 3856, PIDF, `<note>`), and message-waiting
//! lamps (RFC 3842, `message-summary`: a person's or their team's mailbox, see
//! [`message_waiting`]), as phones subscribe to them. (What a phone sets about its own
//! person is in [`super::own_presence`].)
//!
//! Subscriptions follow RFC 6665 ([`switchboard_sip::subscription::Notifier`]): a NOTIFY at
//! once, another on every change of what the subscriber sees, a final one when the
//! subscription ends or expires. Changes are collected by the presence model (and by the
//! mailboxes) and notified once the event that caused them is handled. A subscription is
//! stored before its 200 (it survives a restart, and its subscriber is told what it shows
//! then).
//!
//! A sub-machine of the core: it owns the subscriptions and is handed a [`Ctx`].

use super::context::Ctx;
use super::ledger::Pending;
use super::wire::{in_dialog, Local, Owner};
use std::collections::HashMap;
use switchboard_presence::model::{Availability, CallStatus};
use switchboard_sip::entropy::Entropy;
use switchboard_sip::events::{self, DialogState, Package, PresenceDoc};
use switchboard_sip::message;
use switchboard_sip::msg::headers::Header;
use switchboard_sip::msg::{Request, Response};
use switchboard_sip::peer::Peer;
use switchboard_sip::subscription::{
    Notifier, NotifierConfig, SubId, SubState, Subscribed, Subscription,
};
use switchboard_sip::transaction::TxId;
use switchboard_store::tables::SUBSCRIPTIONS;
use switchboard_store::Write;

/// Settings of presence over SIP (subscriptions, and the feature codes of
/// [`super::own_presence`]).
#[derive(Clone, Debug, Default)]
pub struct WatchersConfig {
    pub subscriptions: NotifierConfig,
    pub features: super::own_presence::FeatureCodes,
    /// A person with a SIP account and no registered device is offline to presence
    /// watchers (basic `closed`), as the board shows them (`[presence]
    /// offline_without_devices`).
    pub offline_without_devices: bool,
}

#[path = "message_waiting.rs"]
pub(crate) mod message_waiting;

pub use message_waiting::UnsolicitedStats;

/// Presence over SIP (see the module's documentation).
pub(crate) struct Watchers {
    /// Subscriptions to people's dialog and presence state, and to mailboxes.
    pub notifier: Notifier,
    /// Subscriptions not stored yet: not answered, so not notified either.
    unconfirmed: std::collections::HashSet<SubId>,
    /// Message-waiting NOTIFYs sent outside any subscription, waiting for their answer.
    unsolicited: message_waiting::Unsolicited,
    /// NOTIFYs sent in subscriptions, by package ([`Package::index`]); retransmissions
    /// not counted.
    notifies: [u64; Package::ALL.len()],
}

/// What a subscription shows.
enum Current {
    Dialog(DialogState),
    /// The whole PIDF document.
    Presence(String),
    /// The whole message-summary document.
    Summary(String),
}

impl Watchers {
    pub fn new(config: &WatchersConfig, entropy: Entropy) -> Self {
        Watchers {
            notifier: Notifier::new(config.subscriptions, entropy),
            unconfirmed: std::collections::HashSet::new(),
            unsolicited: message_waiting::Unsolicited::default(),
            notifies: [0; Package::ALL.len()],
        }
    }

    /// When the next subscription ends (Unix seconds).
    pub fn next_expiry(&self) -> Option<u64> {
        self.notifier.next_expiry()
    }

    /// NOTIFYs sent in subscriptions, by package ([`Package::index`]).
    pub fn notifies_sent(&self) -> [u64; Package::ALL.len()] {
        self.notifies
    }

    /// What became of the message-waiting NOTIFYs sent without a subscription.
    pub fn unsolicited_stats(&self) -> UnsolicitedStats {
        self.unsolicited.stats
    }
}

impl Watchers {
    /// A SUBSCRIBE: a new subscription to a colleague's dialog or presence state or to a
    /// mailbox, or a refresh or end of one.
    pub(crate) fn subscribe(
        &mut self,
        cx: &mut Ctx<'_>,
        tx: TxId,
        req: Request,
        peer: Peer,
        local: Local,
    ) {
        let now = cx.now;
        let Some(package) = Package::of_request(&req) else {
            // RFC 6665 §4.2.1.1: 489 with the packages we serve.
            let allow = vec![Header::Other(
                "Allow-Events".into(),
                "dialog, presence, message-summary".into(),
            )];
            return cx.wire.reply_stateless(tx, &req, 489, allow);
        };
        let (resource, subscriber) = match self.notifier.find(&req) {
            Some(id) => {
                let s = self.notifier.get(id).expect("found");
                (s.resource.clone(), s.subscriber.clone())
            }
            None if in_dialog(&req) => {
                let why = vec![message::warning("no such subscription")];
                return cx.wire.reply_stateless(tx, &req, 481, why);
            }
            None => {
                let Some(subscriber) = cx.authenticate_user(tx, &req, peer) else {
                    return;
                };
                let resource = if package == Package::MessageSummary {
                    match mailbox_of(cx, &req, &subscriber) {
                        Ok(owner) => owner.key(),
                        Err(refusal) => {
                            if switchboard_sip::log_limit::allow("subscription refused") {
                                tracing::info!(
                                    subscriber,
                                    code = refusal.code(),
                                    why = refusal.why(),
                                    "message-waiting subscription refused"
                                );
                            }
                            let warning = vec![message::warning(refusal.why())];
                            return cx.wire.reply_to(tx, &req, refusal.code(), warning, now);
                        }
                    }
                } else {
                    let Some(resource) = cx.resource_of(tx, &req) else {
                        return;
                    };
                    resource
                };
                (resource, subscriber)
            }
        };
        let outcome =
            self.notifier
                .subscribe(&req, &resource, package, &subscriber, peer, now.unix);
        let contact = local.contact();
        match outcome {
            Err(refused) => {
                if switchboard_sip::log_limit::allow("subscription refused") {
                    tracing::info!(
                        subscriber,
                        resource,
                        code = refused.code,
                        why = refused.why,
                        "subscription refused"
                    );
                }
                let mut headers = refused.headers;
                headers.push(message::warning(refused.why));
                cx.wire.reply_to(tx, &req, refused.code, headers, now);
            }
            Ok(Subscribed::Created {
                id,
                expires,
                to_tag,
            }) => {
                tracing::debug!(
                    subscriber,
                    resource,
                    expires,
                    "subscription made; storing it"
                );
                let mut resp = message::response(&req, 200, Some(&to_tag), &cx.wire.server);
                resp.headers
                    .push(Header::Expires(expires.to_string().into()));
                resp.headers.push(Header::Contact(contact.into()));
                if expires == 0 {
                    // A fetch: one NOTIFY and done; nothing to keep.
                    cx.wire.respond(tx, resp, now);
                    self.send_notify(cx, id, SubState::Terminated(Some("timeout")));
                    self.notifier.remove(id);
                } else {
                    self.keep_subscription(cx, tx, id, resp);
                }
            }
            Ok(Subscribed::Refreshed { id, .. }) => {
                let mut resp = message::response(&req, 200, None, &cx.wire.server);
                let left = self
                    .notifier
                    .get(id)
                    .map(|s| s.expires_at.saturating_sub(now.unix))
                    .unwrap_or(0);
                resp.headers.push(Header::Expires(left.to_string().into()));
                resp.headers.push(Header::Contact(contact.into()));
                self.keep_subscription(cx, tx, id, resp);
            }
            Ok(Subscribed::Ended { id }) => {
                tracing::info!(subscriber, resource, "subscription ended by its subscriber");
                let mut resp = message::response(&req, 200, None, &cx.wire.server);
                resp.headers.push(Header::Expires("0".into()));
                cx.wire.respond(tx, resp, now);
                self.send_notify(cx, id, SubState::Terminated(None));
                self.drop_subscription(cx, id);
            }
        }
    }

    /// Stores a subscription (new or refreshed) before its 200; the NOTIFY follows the 200.
    fn keep_subscription(&mut self, cx: &mut Ctx<'_>, tx: TxId, id: SubId, ok: Response) {
        let (Some(key), Some(sub)) = (self.notifier.key(id), self.notifier.get(id)) else {
            return;
        };
        let row = serde_json::to_vec(sub).unwrap_or_default();
        self.unconfirmed.insert(id);
        let pending = Pending::Subscribe {
            tx,
            id,
            ok: Box::new(ok),
        };
        cx.persist(pending, vec![Write::put(SUBSCRIPTIONS, key, row)]);
    }

    /// The outcome of storing a subscription: answered and notified, or refused and gone.
    pub(crate) fn subscription_stored(
        &mut self,
        cx: &mut Ctx<'_>,
        tx: TxId,
        id: SubId,
        ok: Response,
        stored: bool,
    ) {
        let now = cx.now;
        self.unconfirmed.remove(&id);
        if stored {
            if let Some(sub) = self.notifier.get(id) {
                tracing::info!(
                    subscriber = %sub.subscriber,
                    resource = %sub.resource,
                    package = sub.package.as_str(),
                    expires = sub.expires_at.saturating_sub(now.unix),
                    "subscription stored and answered"
                );
            }
            cx.wire.respond(tx, ok, now);
            self.send_notify(cx, id, SubState::Active);
        } else {
            let mut failed = ok;
            failed.status_code = 500.into();
            failed
                .headers
                .retain(|h| !matches!(h, Header::Contact(_) | Header::Expires(_)));
            failed
                .headers
                .push(message::warning("the subscription could not be stored"));
            failed.headers.push(Header::RetryAfter("5".into()));
            cx.wire.respond(tx, failed, now);
            self.drop_subscription(cx, id);
        }
    }

    /// Forgets a subscription, also in the store.
    fn drop_subscription(&mut self, cx: &mut Ctx<'_>, id: SubId) {
        if let Some(key) = self.notifier.key(id) {
            cx.persist_unacknowledged(vec![Write::delete(SUBSCRIPTIONS, key)]);
        }
        self.notifier.remove(id);
    }

    /// Takes back the subscriptions kept across a restart, and tells each what it shows now
    /// (lamps may have changed meanwhile).
    pub(crate) fn restore(&mut self, cx: &mut Ctx<'_>, rows: Vec<(String, Vec<u8>)>) -> usize {
        let now = cx.now;
        let mut subs = Vec::new();
        let mut stale = Vec::new();
        for (key, value) in rows {
            match serde_json::from_slice::<Subscription>(&value) {
                Ok(s) if s.expires_at >= now.unix => subs.push(s),
                Ok(_) => stale.push(Write::delete(SUBSCRIPTIONS, key)),
                Err(e) => {
                    tracing::warn!(key, error = %e, "unreadable subscription in the store; dropped");
                    stale.push(Write::delete(SUBSCRIPTIONS, key));
                }
            }
        }
        let restored = self.notifier.restore(subs, now.unix);
        if !restored.ended.is_empty() {
            // Over the server's limit or their subscriber's (a limit lowered since, or a
            // store filled before there was one): refused as a SUBSCRIBE would be now, and
            // each subscriber told so (a final NOTIFY), not left waiting for NOTIFYs.
            tracing::warn!(
                refused = restored.ended.len(),
                "subscriptions over a limit not taken back after the restart; ended and deleted"
            );
        }
        for id in &restored.ended {
            self.send_notify(cx, *id, SubState::Terminated(Some("rejected")));
            self.drop_subscription(cx, *id);
        }
        stale.extend(
            restored
                .left_out
                .iter()
                .map(|s| Write::delete(SUBSCRIPTIONS, s.key())),
        );
        cx.persist_unacknowledged(stale);
        let mut taken = 0;
        for id in &restored.ids {
            // A message-waiting subscription the policy no longer allows (a mailbox turned
            // off, a member who left the team) ends, as it would after a reload.
            if let Some(refusal) = self.mailbox_refusal(cx, *id) {
                self.end_refused(cx, *id, refusal);
                continue;
            }
            self.send_notify(cx, *id, SubState::Active);
            taken += 1;
        }
        taken
    }

    /// Why the policy no longer lets message-summary subscription `id` go on (None: it
    /// does, or it is of another package).
    fn mailbox_refusal(&self, cx: &Ctx<'_>, id: SubId) -> Option<message_waiting::Refusal> {
        let s = self.notifier.get(id)?;
        if s.package != Package::MessageSummary {
            return None;
        }
        let policy = cx.directory.policy();
        match switchboard_policy::MailboxOwner::from_key(&s.resource) {
            Some(owner) => message_waiting::may_watch(policy, &owner, &s.subscriber).err(),
            None => Some(message_waiting::Refusal::Gone("no such mailbox here")),
        }
    }

    /// What subscription `id` shows now: the call state (dialog), the presence document, or
    /// the mailbox's message summary.
    fn current(&self, cx: &Ctx<'_>, id: SubId) -> Option<Current> {
        let s = self.notifier.get(id)?;
        if s.package == Package::MessageSummary {
            let owner = switchboard_policy::MailboxOwner::from_key(&s.resource)?;
            let policy = cx.directory.policy();
            let doc = message_waiting::summary(policy, cx.mailboxes, &owner, &cx.config.realm);
            return Some(Current::Summary(events::message_summary(&doc)));
        }
        let model = cx.presence.model();
        let shown = model.call_status_for_colleagues(&s.resource);
        Some(match s.package {
            Package::Dialog => Current::Dialog(dialog_state(shown)),
            Package::MessageSummary => return None, // above
            Package::Presence => {
                let entity = format!("sip:{}@{}", s.resource, cx.config.realm);
                let policy = cx.directory.policy();
                let profile_name = model.get(&s.resource).and_then(|p| {
                    (p.profile.id != policy.default_profile().id).then(|| {
                        cx.presence
                            .active_profile_name(&s.resource, policy)
                            .unwrap_or_else(|| p.profile.id.clone())
                    })
                });
                let offline = cx.config.watchers.offline_without_devices
                    && policy.user(&s.resource).is_some_and(|u| u.sip.is_some())
                    && cx.registrar.lookup(&s.resource, cx.now.unix).is_empty();
                let mut doc = presence_doc(model.get(&s.resource), shown, profile_name);
                if offline {
                    doc = offline_doc(doc);
                }
                Current::Presence(events::pidf(&entity, &doc))
            }
        })
    }

    /// Sends subscription `id` its NOTIFY with the current document.
    fn send_notify(&mut self, cx: &mut Ctx<'_>, id: SubId, state: SubState) {
        let now = cx.now;
        let Some(current) = self.current(cx, id) else {
            return;
        };
        let Some(sub) = self.notifier.get(id) else {
            return;
        };
        let entity = format!("sip:{}@{}", sub.resource, cx.config.realm);
        // From the address of ours the subscription came to (its flow).
        let mut flow = sub.peer;
        let Some(local) = cx.wire.leave_from(&mut flow) else {
            return;
        };
        let via = local.via(&cx.wire.branch(None));
        let contact = local.contact();
        let notify =
            self.notifier.notify(
                id,
                &via,
                &contact,
                state,
                now.unix,
                |version| match current {
                    Current::Presence(doc) | Current::Summary(doc) => doc,
                    Current::Dialog(d) => events::dialog_info(&entity, version, d),
                },
            );
        let Some((req, peer)) = notify else {
            return;
        };
        let package = self.notifier.get(id).map(|s| s.package);
        let peer = Peer {
            local: flow.local,
            ..peer
        };
        match cx.wire.send_request(req, peer, Owner::Notify(id), now) {
            Ok(_) => {
                if let Some(p) = package {
                    self.notifies[p.index()] += 1;
                }
            }
            Err(e) => tracing::debug!(error = %e, "NOTIFY not sent"),
        }
    }

    /// Sends subscription `id` a NOTIFY when what it shows differs from its last one.
    fn notify_if_changed(&mut self, cx: &mut Ctx<'_>, id: SubId) {
        let (Some(current), Some(sub)) = (self.current(cx, id), self.notifier.get(id)) else {
            return;
        };
        let last = sub.last_body.as_deref().unwrap_or("");
        let same = match &current {
            Current::Dialog(d) => dialog_body_state(last) == *d,
            Current::Presence(doc) | Current::Summary(doc) => last == doc,
        };
        if !same {
            self.send_notify(cx, id, SubState::Active);
        }
    }

    /// Notifies the watchers of everyone whose presence or call status changed — when what
    /// they see changed (a hidden call status does not move a BLF lamp).
    /// `changed`: who changed; `held`: people whose change is still on its way to the
    /// store (their watchers are told once it is stored, and never if storing fails and
    /// it is undone).
    pub(crate) fn notify_changes(
        &mut self,
        cx: &mut Ctx<'_>,
        mut changed: Vec<String>,
        held: &HashMap<String, usize>,
    ) {
        if self.notifier.is_empty() {
            return;
        }
        changed.sort();
        changed.dedup();
        for person in changed {
            if held.contains_key(&person) {
                continue;
            }
            for id in self.notifier.watching(&person) {
                if self.unconfirmed.contains(&id) {
                    continue;
                }
                self.notify_if_changed(cx, id);
            }
        }
    }

    /// A final response (or none) to one of our NOTIFYs: a subscriber that is gone ends
    /// its subscription (RFC 6665 §4.2.2: 481, or a failure of the transaction).
    pub(crate) fn notify_answered(&mut self, cx: &mut Ctx<'_>, id: SubId, code: Option<u16>) {
        let gone = match code {
            None => true,
            Some(c) => c == 481 || c == 408 || (c >= 300 && c != 401 && c != 407),
        };
        if gone {
            if let Some(s) = self.notifier.get(id) {
                tracing::info!(subscriber = %s.subscriber, resource = %s.resource, code, "subscription ended: the subscriber is gone");
            }
            self.drop_subscription(cx, id);
        }
    }

    /// Subscriptions that ran out get their final NOTIFY.
    pub(crate) fn timeout(&mut self, cx: &mut Ctx<'_>) {
        let now = cx.now;
        for id in self.notifier.expire(now.unix) {
            self.send_notify(cx, id, SubState::Terminated(Some("timeout")));
            self.drop_subscription(cx, id);
        }
    }
}

/// The mailbox a new message-summary SUBSCRIBE asks for, if `subscriber` may watch it: its
/// Request-URI's user part (To's when the Request-URI has none) at one of our hosts.
fn mailbox_of(
    cx: &Ctx<'_>,
    req: &Request,
    subscriber: &str,
) -> Result<switchboard_policy::MailboxOwner, message_waiting::Refusal> {
    use switchboard_sip::msg::prelude::*;
    let gone = message_waiting::Refusal::Gone("no such mailbox here");
    let host = req.uri.host_with_port.host.to_string();
    if !cx.wire.is_local_host(&host) {
        return Err(gone);
    }
    let to_user = || {
        req.to_header()
            .ok()
            .and_then(|t| t.typed().ok())
            .and_then(|t| t.uri.user().map(str::to_string))
    };
    let named = match req.uri.user() {
        Some(u) => u.to_string(),
        None => to_user().ok_or(gone)?,
    };
    let person = cx.directory.user_for(&named);
    message_waiting::mailbox_named(cx.directory.policy(), person, &named, subscriber)
}

/// The RFC 4235 state shown for a call status (hidden shows as idle).
fn dialog_state(shown: CallStatus) -> DialogState {
    match shown {
        CallStatus::Ringing => DialogState::Early,
        CallStatus::Busy => DialogState::Confirmed,
        CallStatus::Free | CallStatus::Hidden => DialogState::Idle,
    }
}

/// The state a dialog-info document we sent shows.
fn dialog_body_state(body: &str) -> DialogState {
    if body.contains("<state>early</state>") {
        DialogState::Early
    } else if body.contains("<state>confirmed</state>") {
        DialogState::Confirmed
    } else {
        DialogState::Idle
    }
}

/// A person's presence as a PIDF document (the table in docs/phones.md): reachable (basic
/// `open`) unless Unavailable, and at most one RPID activity — phones show the first they
/// recognise, so a second one would only mislead them: `away` for Away and On break,
/// `busy` for Busy, Do Not Disturb and After-call work, `on-the-phone` while a call shows
/// and the status has no activity of its own (or is Away or On break), none otherwise. What
/// the activity does not say goes in the `<note>`, in this order: the status's name where
/// the activity is a coarser one (Do not disturb, On break, After-call work), the active
/// profile's name (the person's own name for it) when it is not the default one, and the
/// status message (a Custom status's text).
fn presence_doc(
    p: Option<&switchboard_presence::model::PersonPresence>,
    shown: CallStatus,
    profile_name: Option<String>,
) -> PresenceDoc {
    let Some(p) = p else {
        return PresenceDoc {
            open: false,
            activities: Vec::new(),
            note: None,
        };
    };
    let in_call = shown == CallStatus::Busy;
    let (activity, label) = match p.availability {
        Availability::Available | Availability::Custom => (in_call.then_some("on-the-phone"), None),
        Availability::Away => (Some(if in_call { "on-the-phone" } else { "away" }), None),
        Availability::OnBreak => (
            Some(if in_call { "on-the-phone" } else { "away" }),
            Some("On break"),
        ),
        Availability::Busy => (Some("busy"), None),
        Availability::DoNotDisturb => (Some("busy"), Some("Do not disturb")),
        Availability::AfterCallWork => (Some("busy"), Some("After-call work")),
        Availability::Unavailable => (None, None),
    };
    let parts: Vec<&str> = label
        .into_iter()
        .chain(profile_name.as_deref())
        .chain(p.message())
        .filter(|s| !s.trim().is_empty())
        .collect();
    PresenceDoc {
        open: p.availability != Availability::Unavailable,
        activities: activity.into_iter().map(str::to_string).collect(),
        note: (!parts.is_empty()).then(|| parts.join(" - ")),
    }
}

/// The document of a person who is offline (a SIP account, no registered device, and
/// `offline_without_devices`): basic `closed` and no activity, whatever the status, so
/// phones show them offline as the board shows them grey; the note starts with "Offline"
/// and keeps what it said (the status's name, the profile, the message), as the board's
/// `Offline · …`.
fn offline_doc(doc: PresenceDoc) -> PresenceDoc {
    let note = match doc.note {
        Some(n) => format!("Offline - {n}"),
        None => "Offline".to_string(),
    };
    PresenceDoc {
        open: false,
        activities: Vec::new(),
        note: Some(note),
    }
}

#[cfg(test)]
#[path = "watchers_tests.rs"]
mod tests;
