//! Message-waiting lamps (RFC 3842, the `message-summary` package): whose mailbox a
//! subscriber may watch, the document its subscription shows, and the NOTIFYs sent outside
//! any subscription to phones that light their lamp without subscribing.
//!
//! A person watches their own mailbox, named in the SUBSCRIBE's Request-URI (or To, when
//! the Request-URI names no user) by their id, extension, SIP user name or mailbox number;
//! a team member watches their team's by its mailbox number or extension. Anyone else gets
//! 403, a mailbox nobody has 404, a mailbox that is turned off 404. The subscription's
//! resource is the mailbox's key (`user:ID`, `team:ID`), and its NOTIFYs carry the counts
//! of [`super::super::mailboxes::Mailboxes`], sent at once and whenever the core hands
//! [`Watchers::mailboxes_changed`] the mailboxes whose counts changed (the core takes that
//! set once per input, so that whatever else follows a mailbox's change sees it too).
//!
//! **Unsolicited NOTIFYs.** A mailbox with `unsolicited_mwi` in the policy has its counts
//! sent to its owner's registered devices (a team's: its members') when they change and
//! when a device registers anew (its first registration, or one with a new Call-ID: a
//! phone that restarted and forgot its lamp). A device gets one NOTIFY with the sum of
//! every such mailbox it shows, as a phone has one lamp; a device that holds a
//! `message-summary` subscription of its person's is told through that subscription and
//! gets none. There are no retries: a device that answers 4xx, 5xx or 6xx, or not at all,
//! is sent nothing more until the next change; a change while a device's NOTIFY waits for
//! its answer is sent once it is answered 2xx. At most [`MAX_UNSOLICITED_PER_CHANGE`]
//! devices are sent NOTIFYs for one input and [`MAX_UNSOLICITED_IN_FLIGHT`] wait at once;
//! the others are skipped (counted).

use super::Watchers;
use crate::core::context::Ctx;
use crate::core::mailboxes::Mailboxes;
use crate::core::targets::{binding_peer, distinct_targets};
use crate::core::wire::Owner;
use std::collections::{BTreeSet, HashMap};
use switchboard_policy::{MailboxOwner, Policy};
use switchboard_sip::events::{self, MessageSummary, Package};
use switchboard_sip::registrar::Binding;
use switchboard_sip::subscription::{unsolicited_notify, SubState, UnsolicitedNotify};

/// Most devices sent an unsolicited NOTIFY for one input (a message left, heard or
/// deleted; a registration).
pub(crate) const MAX_UNSOLICITED_PER_CHANGE: usize = 64;

/// Most unsolicited NOTIFYs waiting for their answer at once.
pub(crate) const MAX_UNSOLICITED_IN_FLIGHT: usize = 1024;

/// Why someone may not watch a mailbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// No such mailbox, or it is turned off: 404 (a subscription ends `noresource`).
    Gone(&'static str),
    /// Someone else's: 403 (a subscription ends `rejected`).
    NotYours(&'static str),
}

impl Refusal {
    /// The response code of a SUBSCRIBE refused so.
    pub(crate) fn code(self) -> u16 {
        match self {
            Refusal::Gone(_) => 404,
            Refusal::NotYours(_) => 403,
        }
    }

    /// Why, for the Warning and the log.
    pub(crate) fn why(self) -> &'static str {
        match self {
            Refusal::Gone(w) | Refusal::NotYours(w) => w,
        }
    }

    /// The reason of the final NOTIFY of a subscription ended so (RFC 6665 §4.1.3).
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Refusal::Gone(_) => "noresource",
            Refusal::NotYours(_) => "rejected",
        }
    }
}

/// The mailbox `named` (a Request-URI's user part) names, if `subscriber` may watch it: a
/// mailbox number first, then a person (id, extension, SIP user name), then a team's
/// extension.
pub(crate) fn mailbox_named(
    policy: &Policy,
    person: Option<String>,
    named: &str,
    subscriber: &str,
) -> Result<MailboxOwner, Refusal> {
    let owner = match policy.mailbox_by_number(named) {
        Some(o) => o.clone(),
        None => match person {
            Some(p) => MailboxOwner::User(p),
            None => match policy.extension(named) {
                Some(switchboard_policy::ExtensionOwner::Team(t)) => MailboxOwner::Team(t.clone()),
                _ => return Err(Refusal::Gone("no such mailbox here")),
            },
        },
    };
    may_watch(policy, &owner, subscriber)?;
    Ok(owner)
}

/// Whether `subscriber` may watch `owner`'s mailbox now: their own, or their team's, and
/// turned on.
pub(crate) fn may_watch(
    policy: &Policy,
    owner: &MailboxOwner,
    subscriber: &str,
) -> Result<(), Refusal> {
    let Some(settings) = policy.mailbox(owner) else {
        return Err(Refusal::Gone("no such mailbox here"));
    };
    let theirs = match owner {
        MailboxOwner::User(u) => u == subscriber,
        MailboxOwner::Team(t) => policy
            .team(t)
            .is_some_and(|t| t.members.iter().any(|m| m == subscriber)),
    };
    if !theirs {
        return Err(Refusal::NotYours("not your mailbox"));
    }
    if !settings.enabled {
        return Err(Refusal::Gone("this mailbox is turned off"));
    }
    Ok(())
}

/// The URI naming a mailbox (`Message-Account`): its number — what a phone dials to reach
/// it — else its owner's id, at our realm.
pub(crate) fn account_uri(policy: &Policy, owner: &MailboxOwner, realm: &str) -> String {
    let user = policy
        .mailbox(owner)
        .and_then(|m| m.number.as_deref())
        .unwrap_or(owner.id());
    format!("sip:{user}@{realm}")
}

/// What `owner`'s mailbox's lamp shows now.
pub(crate) fn summary(
    policy: &Policy,
    mailboxes: &Mailboxes,
    owner: &MailboxOwner,
    realm: &str,
) -> MessageSummary {
    let counts = mailboxes.counts(&owner.key());
    MessageSummary {
        account: Some(account_uri(policy, owner, realm)),
        new: counts.new,
        old: counts.old,
        ..MessageSummary::default()
    }
}

/// The mailboxes whose counts `user`'s devices are sent without subscribing: their own and
/// their teams' that have `unsolicited_mwi` and are turned on (theirs first).
pub(crate) fn unsolicited_mailboxes(policy: &Policy, user: &str) -> Vec<MailboxOwner> {
    let mut list = Vec::new();
    if policy
        .user(user)
        .is_some_and(|u| u.voicemail.enabled && u.voicemail.unsolicited_mwi)
    {
        list.push(MailboxOwner::User(user.to_string()));
    }
    list.extend(
        policy
            .teams()
            .filter(|t| t.voicemail.enabled && t.voicemail.unsolicited_mwi)
            .filter(|t| t.members.iter().any(|m| m == user))
            .map(|t| MailboxOwner::Team(t.id.clone())),
    );
    list
}

/// The people whose devices are told of `owner`'s mailbox without subscribing (none
/// unless the mailbox has `unsolicited_mwi` and is turned on).
fn unsolicited_people(policy: &Policy, owner: &MailboxOwner) -> Vec<String> {
    if !policy
        .mailbox(owner)
        .is_some_and(|m| m.enabled && m.unsolicited_mwi)
    {
        return Vec::new();
    }
    match owner {
        MailboxOwner::User(u) => vec![u.clone()],
        MailboxOwner::Team(t) => policy
            .team(t)
            .map(|t| t.members.clone())
            .unwrap_or_default(),
    }
}

/// A registered device: its person and its binding's key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Device {
    user: String,
    binding: String,
}

/// Counters of the NOTIFYs sent without a subscription.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UnsolicitedStats {
    /// Sent (retransmissions aside).
    pub sent: u64,
    /// Answered with a failure (3xx–6xx), or not answered at all.
    pub failed: u64,
    /// Not sent: over [`MAX_UNSOLICITED_PER_CHANGE`] or [`MAX_UNSOLICITED_IN_FLIGHT`].
    pub skipped: u64,
}

/// The unsolicited NOTIFYs waiting for their answer.
#[derive(Debug, Default)]
pub(crate) struct Unsolicited {
    /// Each NOTIFY's id (its transaction's owner, [`Owner::Mwi`]) → the device.
    in_flight: HashMap<u64, Device>,
    /// Each device with a NOTIFY waiting → that NOTIFY's id, and whether the counts it
    /// shows changed since it was sent.
    by_device: HashMap<Device, (u64, bool)>,
    next: u64,
    pub stats: UnsolicitedStats,
}

impl Watchers {
    /// Tells the watchers of every mailbox in `changed` (keys, `user:ID` / `team:ID`) its
    /// new counts, and the devices that show it without subscribing.
    pub(crate) fn mailboxes_changed(&mut self, cx: &mut Ctx<'_>, changed: &BTreeSet<String>) {
        let policy = cx.directory.policy();
        let mut people = BTreeSet::new();
        for key in changed {
            for id in self.notifier.watching(key) {
                let watches_counts = self
                    .notifier
                    .get(id)
                    .is_some_and(|s| s.package == Package::MessageSummary);
                if watches_counts && !self.unconfirmed.contains(&id) {
                    self.notify_if_changed(cx, id);
                }
            }
            if let Some(owner) = MailboxOwner::from_key(key) {
                people.extend(unsolicited_people(policy, &owner));
            }
        }
        let mut devices = Vec::new();
        for user in people {
            let bindings = cx.registrar.lookup(&user, cx.now.unix);
            devices.extend(
                distinct_targets(bindings)
                    .into_iter()
                    .map(|b| (user.clone(), b.clone())),
            );
        }
        self.send_unsolicited(cx, devices);
    }

    /// `user`'s devices in `bindings` registered anew (a first registration, or a phone
    /// that restarted): each is sent the counts it shows, unless it subscribes.
    pub(crate) fn registered_anew(&mut self, cx: &mut Ctx<'_>, user: &str, bindings: Vec<Binding>) {
        let devices = bindings
            .into_iter()
            .map(|b| (user.to_string(), b))
            .collect();
        self.send_unsolicited(cx, devices);
    }

    /// Sends each device its unsolicited NOTIFY (see the module's documentation), at most
    /// [`MAX_UNSOLICITED_PER_CHANGE`] of them.
    fn send_unsolicited(&mut self, cx: &mut Ctx<'_>, devices: Vec<(String, Binding)>) {
        let mut sent = 0;
        for (user, binding) in devices {
            let device = Device {
                user,
                binding: binding.key(),
            };
            if self.subscribes(cx.directory.policy(), &device.user, &binding) {
                continue;
            }
            if let Some((_, again)) = self.unsolicited.by_device.get_mut(&device) {
                *again = true;
                continue;
            }
            if sent >= MAX_UNSOLICITED_PER_CHANGE
                || self.unsolicited.in_flight.len() >= MAX_UNSOLICITED_IN_FLIGHT
            {
                self.unsolicited.stats.skipped += 1;
                if switchboard_sip::log_limit::allow("unsolicited NOTIFY skipped") {
                    tracing::warn!(
                        user = %device.user,
                        contact = %binding.contact,
                        "message-waiting NOTIFY not sent: too many at once"
                    );
                }
                continue;
            }
            if self.send_unsolicited_to(cx, device, &binding) {
                sent += 1;
            }
        }
    }

    /// Whether `user`'s device `binding` holds a `message-summary` subscription of
    /// theirs (to their mailbox or a team's): it came from the binding's address.
    fn subscribes(&self, policy: &Policy, user: &str, binding: &Binding) -> bool {
        let own = std::iter::once(MailboxOwner::User(user.to_string()).key());
        let teams = policy
            .teams()
            .filter(|t| t.members.iter().any(|m| m == user))
            .map(|t| MailboxOwner::Team(t.id.clone()).key());
        own.chain(teams).any(|key| {
            self.notifier.watching(&key).into_iter().any(|id| {
                self.notifier.get(id).is_some_and(|s| {
                    s.package == Package::MessageSummary
                        && s.subscriber == user
                        && s.peer.transport == binding.transport
                        && s.peer.addr == binding.source
                })
            })
        })
    }

    /// Sends one device the sum of the mailboxes it shows; whether a NOTIFY went.
    fn send_unsolicited_to(&mut self, cx: &mut Ctx<'_>, device: Device, binding: &Binding) -> bool {
        // The node that took the registration tells the phone (it hears of the messages
        // through the shared store as this one does).
        if binding.remote {
            return false;
        }
        let policy = cx.directory.policy();
        let realm = &cx.config.realm;
        let shown = unsolicited_mailboxes(policy, &device.user);
        let Some(first) = shown.first() else {
            return false;
        };
        let mut doc = summary(policy, cx.mailboxes, first, realm);
        for owner in &shown[1..] {
            let more = cx.mailboxes.counts(&owner.key());
            doc.new = doc.new.saturating_add(more.new);
            doc.old = doc.old.saturating_add(more.old);
        }
        let Some(mut peer) = binding_peer(binding) else {
            return false; // its connection is closed: it cannot be reached
        };
        let Some(local) = cx.wire.leave_from(&mut peer) else {
            return false;
        };
        // The phone's own account in To (it matches the line to light by it).
        let account_user = policy
            .user(&device.user)
            .and_then(|u| u.sip.as_ref())
            .map_or(device.user.as_str(), |s| s.username.as_str());
        let to = format!("sip:{account_user}@{realm}");
        let from = doc.account.clone().unwrap_or_else(|| to.clone());
        let via = local.via(&cx.wire.branch(None));
        let from_tag = cx.wire.tag();
        let call_id = format!("{}@{realm}", cx.wire.tag());
        let contact = local.contact();
        let Some(req) = unsolicited_notify(UnsolicitedNotify {
            target: &binding.contact,
            via: &via,
            from: &from,
            from_tag: &from_tag,
            to: &to,
            call_id: &call_id,
            contact: &contact,
            package: Package::MessageSummary,
            body: events::message_summary(&doc),
        }) else {
            return false;
        };
        let id = self.unsolicited.next;
        self.unsolicited.next += 1;
        match cx.wire.send_request(req, peer, Owner::Mwi(id), cx.now) {
            Ok(_) => {
                tracing::debug!(user = %device.user, contact = %binding.contact, new = doc.new, old = doc.old, "message-waiting NOTIFY sent");
                self.unsolicited.stats.sent += 1;
                self.unsolicited.in_flight.insert(id, device.clone());
                self.unsolicited.by_device.insert(device, (id, false));
                true
            }
            Err(e) => {
                tracing::debug!(error = ?e, "message-waiting NOTIFY not sent");
                false
            }
        }
    }

    /// The final answer to unsolicited NOTIFY `id`, or none (`code` None: it timed out or
    /// could not be sent). A failure is not retried; a 2xx is followed by another NOTIFY
    /// when the counts changed meanwhile.
    pub(crate) fn unsolicited_answered(&mut self, cx: &mut Ctx<'_>, id: u64, code: Option<u16>) {
        let Some(device) = self.unsolicited.in_flight.remove(&id) else {
            return;
        };
        let again = self
            .unsolicited
            .by_device
            .remove(&device)
            .is_some_and(|(_, again)| again);
        match code {
            Some(200..=299) => {
                if again {
                    let binding = cx
                        .registrar
                        .lookup(&device.user, cx.now.unix)
                        .into_iter()
                        .find(|b| b.has_key(&device.binding))
                        .cloned();
                    if let Some(b) = binding {
                        self.send_unsolicited(cx, vec![(device.user, b)]);
                    }
                }
            }
            _ => {
                self.unsolicited.stats.failed += 1;
                if switchboard_sip::log_limit::allow("unsolicited NOTIFY failed") {
                    tracing::info!(
                        user = %device.user,
                        code,
                        "message-waiting NOTIFY refused or unanswered; not sent again until the counts change"
                    );
                }
            }
        }
    }

    /// Message-summary subscriptions the policy no longer allows (the mailbox gone or
    /// turned off, its subscriber no longer its owner or a member) end; the others are told
    /// when what they show changed (a new mailbox number). After a reload, and at start.
    pub(crate) fn recheck_mailboxes(&mut self, cx: &mut Ctx<'_>) {
        let policy = cx.directory.policy();
        let mut subs: Vec<(u64, Result<(), Refusal>)> = self
            .notifier
            .iter()
            .filter(|s| s.package == Package::MessageSummary && !self.unconfirmed.contains(&s.id))
            .map(|s| {
                let allowed = match MailboxOwner::from_key(&s.resource) {
                    Some(owner) => may_watch(policy, &owner, &s.subscriber),
                    None => Err(Refusal::Gone("no such mailbox here")),
                };
                (s.id, allowed)
            })
            .collect();
        // In the order they were made, not the table's: the core's outputs are the same
        // for the same inputs.
        subs.sort_by_key(|(id, _)| *id);
        for (id, allowed) in subs {
            match allowed {
                Ok(()) => self.notify_if_changed(cx, id),
                Err(refusal) => self.end_refused(cx, id, refusal),
            }
        }
    }

    /// Ends a message-summary subscription the policy no longer allows.
    pub(super) fn end_refused(&mut self, cx: &mut Ctx<'_>, id: u64, refusal: Refusal) {
        if let Some(s) = self.notifier.get(id) {
            tracing::info!(subscriber = %s.subscriber, mailbox = %s.resource, why = refusal.why(), "message-waiting subscription ended");
        }
        self.send_notify(cx, id, SubState::Terminated(Some(refusal.reason())));
        self.drop_subscription(cx, id);
    }
}

#[cfg(test)]
#[path = "message_waiting_tests.rs"]
mod tests;
