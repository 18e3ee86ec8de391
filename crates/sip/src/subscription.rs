//! The notifier side of SIP-specific event notification (RFC 6665), sans-I/O.
//!
//! [`Notifier::subscribe`] takes a SUBSCRIBE (initial or inside its dialog) and decides:
//! a new subscription, a refresh, an unsubscription (`Expires: 0`), or a refusal (423 with
//! Min-Expires, 481 for an unknown dialog, 500 for an old CSeq, 503 at the server's limit,
//! 403 for a subscriber who already has as many as one subscriber may have).
//! [`Notifier::notify`] builds the NOTIFY of a subscription with the document the caller
//! gives; [`Notifier::expire`] says which subscriptions ran out. The caller owns the
//! documents, the transactions and the clock (Unix seconds passed in).
//!
//! [`unsolicited_notify`] builds a NOTIFY outside any subscription, for devices that take
//! a package's state without subscribing to it (message-waiting lamps, RFC 3842 §1).

use crate::entropy::Entropy;
use crate::events::Package;
use crate::message::{split_first_value, tag_of};
use crate::msg::headers::{Header, Headers};
use crate::msg::prelude::*;
use crate::msg::{Method, Request, Version};
use crate::peer::Peer;
use crate::proxy::strip_angle;
use std::collections::{BTreeSet, HashMap};

/// Bounds of the notifier.
#[derive(Clone, Copy, Debug)]
pub struct NotifierConfig {
    pub min_expires: u32,
    pub default_expires: u32,
    pub max_expires: u32,
    /// Most subscriptions at once; further SUBSCRIBEs get 503.
    pub max_subscriptions: usize,
    /// Most subscriptions one subscriber (an authenticated user, whatever their source or
    /// device) may have at once; their further SUBSCRIBEs get 403, so that one user cannot
    /// take the whole server's share.
    pub max_per_subscriber: usize,
}

impl Default for NotifierConfig {
    fn default() -> Self {
        NotifierConfig {
            min_expires: 60,
            default_expires: 3600,
            max_expires: 3600,
            max_subscriptions: 10_000,
            max_per_subscriber: 200,
        }
    }
}

/// Counters of the notifier's refusals.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NotifierStats {
    /// New subscriptions refused because the server had as many as it takes (503).
    pub refused_server_limit: u64,
    /// New subscriptions refused because their subscriber had as many as one may (403).
    pub refused_subscriber_limit: u64,
    /// Subscriptions kept across a restart and not taken back because a limit was reached.
    pub not_restored: u64,
}

/// Identifies a subscription for its whole life.
pub type SubId = u64;

/// One subscription (a dialog of its own, RFC 6665 §4.2). Serializable, so the caller can
/// keep it across a restart.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Subscription {
    pub id: SubId,
    pub package: Package,
    /// What is watched (a person of the policy).
    pub resource: String,
    /// Who watches (for the log).
    pub subscriber: String,
    /// Where NOTIFYs go: the flow the SUBSCRIBE came over.
    pub peer: Peer,
    /// Unix second after which the subscription is over.
    pub expires_at: u64,
    /// The last document sent, to notify only changes.
    pub last_body: Option<String>,
    /// The SUBSCRIBE's `Event` value with its parameters (`presence;id=7`), echoed in every
    /// NOTIFY (§8.2.1).
    event: String,
    call_id: String,
    local_tag: String,
    remote_tag: String,
    local_uri: String,
    remote_uri: String,
    remote_target: String,
    route_set: Vec<String>,
    local_cseq: u32,
    remote_cseq: u32,
    version: u32,
}

impl Subscription {
    /// A key naming the subscription's dialog, the same across restarts (store rows).
    pub fn key(&self) -> String {
        format!("{}\n{}\n{}", self.call_id, self.local_tag, self.remote_tag)
    }
}

/// What [`Notifier::restore`] took back, and what it left out.
#[derive(Debug, Default)]
pub struct Restored {
    pub ids: Vec<SubId>,
    /// Over the server's or their subscriber's limit: filed only for as long as it takes to
    /// send each its final NOTIFY (`terminated;reason=rejected`), then to be removed.
    pub ended: Vec<SubId>,
    /// Expired.
    pub left_out: Vec<Subscription>,
}

/// What a SUBSCRIBE does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subscribed {
    /// A new subscription: answer 200 with `Expires: expires` and `to_tag` in To, then send
    /// a NOTIFY at once (§4.2.1.2).
    Created {
        id: SubId,
        expires: u32,
        to_tag: String,
    },
    /// A refresh: answer 200 with `Expires: expires`; a NOTIFY follows (§4.2.1.2).
    Refreshed { id: SubId, expires: u32 },
    /// `Expires: 0`: answer 200, send the final NOTIFY (terminated), then forget it.
    Ended { id: SubId },
}

/// A SUBSCRIBE refused: the response code and headers it carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    pub code: u16,
    pub headers: Vec<Header>,
    pub why: &'static str,
}

impl Refused {
    fn new(code: u16, why: &'static str) -> Self {
        Refused {
            code,
            headers: Vec::new(),
            why,
        }
    }
}

/// The state a NOTIFY announces (§4.1.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubState {
    Active,
    /// The subscription ends: `timeout` (it expired), `noresource`, or the subscriber's own
    /// unsubscription (no reason).
    Terminated(Option<&'static str>),
}

/// All subscriptions of the server.
pub struct Notifier {
    config: NotifierConfig,
    subs: HashMap<SubId, Subscription>,
    /// How many subscriptions each subscriber has.
    by_subscriber: HashMap<String, usize>,
    stats: NotifierStats,
    by_dialog: HashMap<(String, String, String), SubId>,
    by_resource: HashMap<String, BTreeSet<SubId>>,
    by_expiry: BTreeSet<(u64, SubId)>,
    next_id: SubId,
    entropy: Entropy,
}

fn header_value<'a>(
    req: &'a Request,
    pick: impl Fn(&'a Header) -> Option<&'a str>,
) -> Option<&'a str> {
    req.headers.iter().find_map(pick)
}

/// The name-addr of a From/To value without its `tag` parameter.
fn without_tag(value: &str) -> String {
    let value = value.trim();
    let (addr, params) = match value.rfind('>') {
        Some(i) => (&value[..=i], &value[i + 1..]),
        None => match value.find(';') {
            Some(i) => (&value[..i], &value[i..]),
            None => (value, ""),
        },
    };
    let kept: String = params
        .split(';')
        .filter(|p| {
            !p.trim().is_empty()
                && !p
                    .split('=')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .eq_ignore_ascii_case("tag")
        })
        .map(|p| format!(";{}", p.trim()))
        .collect();
    format!("{addr}{kept}")
}

impl Notifier {
    /// `entropy` gives the subscriptions' dialog tags.
    pub fn new(config: NotifierConfig, entropy: Entropy) -> Self {
        Notifier {
            config,
            entropy,
            subs: HashMap::new(),
            by_subscriber: HashMap::new(),
            stats: NotifierStats::default(),
            by_dialog: HashMap::new(),
            by_resource: HashMap::new(),
            by_expiry: BTreeSet::new(),
            next_id: 1,
        }
    }

    pub fn len(&self) -> usize {
        self.subs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.subs.is_empty()
    }

    pub fn get(&self, id: SubId) -> Option<&Subscription> {
        self.subs.get(&id)
    }

    /// Every subscription, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Subscription> {
        self.subs.values()
    }

    /// How many subscriptions `subscriber` has.
    pub fn count_of(&self, subscriber: &str) -> usize {
        self.by_subscriber.get(subscriber).copied().unwrap_or(0)
    }

    /// The refusals counted so far.
    pub fn stats(&self) -> NotifierStats {
        self.stats
    }

    /// Files a subscription in every index.
    fn file(&mut self, s: Subscription) {
        let id = s.id;
        self.by_dialog.insert(
            (s.call_id.clone(), s.local_tag.clone(), s.remote_tag.clone()),
            id,
        );
        self.by_resource
            .entry(s.resource.clone())
            .or_default()
            .insert(id);
        self.by_expiry.insert((s.expires_at, id));
        *self.by_subscriber.entry(s.subscriber.clone()).or_default() += 1;
        self.subs.insert(id, s);
    }

    /// The subscriptions watching `resource`.
    pub fn watching(&self, resource: &str) -> Vec<SubId> {
        self.by_resource
            .get(resource)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }

    /// The subscription whose dialog an in-dialog request belongs to (Call-ID, our tag in
    /// To, theirs in From).
    pub fn find(&self, req: &Request) -> Option<SubId> {
        let call_id = req.call_id_header().ok()?.value().trim().to_string();
        let local = tag_of(req.to_header().ok()?.value())?.to_string();
        let remote = tag_of(req.from_header().ok()?.value())?.to_string();
        self.by_dialog.get(&(call_id, local, remote)).copied()
    }

    /// When the next subscription runs out (Unix seconds).
    pub fn next_expiry(&self) -> Option<u64> {
        self.by_expiry.first().map(|(t, _)| *t + 1)
    }

    /// Subscriptions whose time is over at `now`: send each its final NOTIFY
    /// (`terminated;reason=timeout`) and [`Notifier::remove`] it.
    pub fn expire(&self, now: u64) -> Vec<SubId> {
        self.by_expiry
            .iter()
            .take_while(|(t, _)| *t < now)
            .map(|(_, id)| *id)
            .collect()
    }

    /// Takes back subscriptions kept across a restart (those still alive at `now`), within
    /// the same limits as new ones: the server's, and each subscriber's (a store filled by
    /// one user before a restart, or a limit lowered since, gives no more than a SUBSCRIBE
    /// would get now). Each taken back should get a NOTIFY at once, since what it shows may
    /// have changed meanwhile. Their CSeq and document version jump ahead, so that none is
    /// ever used twice (NOTIFYs sent after the subscription was last kept are not known).
    /// Expired ones are handed back, for the caller to forget them too. Those over a limit
    /// (counted) are filed after the others, under `ended`: the subscriber is owed a
    /// NOTIFY saying its subscription ended, after which the caller removes them.
    pub fn restore(&mut self, subs: impl IntoIterator<Item = Subscription>, now: u64) -> Restored {
        let mut restored = Restored::default();
        let mut over = Vec::new();
        for s in subs {
            if s.expires_at < now {
                restored.left_out.push(s);
            } else if self.subs.len() >= self.config.max_subscriptions
                || self.count_of(&s.subscriber) >= self.config.max_per_subscriber
            {
                self.stats.not_restored += 1;
                over.push(s);
            } else {
                restored.ids.push(self.file_restored(s));
            }
        }
        restored.ended = over.into_iter().map(|s| self.file_restored(s)).collect();
        restored
    }

    /// Files a subscription kept across a restart under a new id.
    fn file_restored(&mut self, mut s: Subscription) -> SubId {
        let id = self.next_id;
        self.next_id += 1;
        s.id = id;
        s.local_cseq = s.local_cseq.saturating_add(1000);
        s.version = s.version.saturating_add(1000);
        s.last_body = None;
        self.file(s);
        id
    }

    /// A key naming a subscription's dialog for as long as it lives (store rows).
    pub fn key(&self, id: SubId) -> Option<String> {
        Some(self.subs.get(&id)?.key())
    }

    /// Forgets a subscription (it ended, or its subscriber is gone: a NOTIFY got 481, 408,
    /// or no answer).
    pub fn remove(&mut self, id: SubId) -> Option<Subscription> {
        let s = self.subs.remove(&id)?;
        if let Some(n) = self.by_subscriber.get_mut(&s.subscriber) {
            *n -= 1;
            if *n == 0 {
                self.by_subscriber.remove(&s.subscriber);
            }
        }
        self.by_dialog
            .remove(&(s.call_id.clone(), s.local_tag.clone(), s.remote_tag.clone()));
        if let Some(set) = self.by_resource.get_mut(&s.resource) {
            set.remove(&id);
            if set.is_empty() {
                self.by_resource.remove(&s.resource);
            }
        }
        self.by_expiry.remove(&(s.expires_at, id));
        Some(s)
    }

    fn set_expiry(&mut self, id: SubId, at: u64) {
        if let Some(s) = self.subs.get_mut(&id) {
            self.by_expiry.remove(&(s.expires_at, id));
            s.expires_at = at;
            self.by_expiry.insert((at, id));
        }
    }

    /// The expiry a SUBSCRIBE asks for, or the refusal of a too brief one (§4.2.1.1).
    fn requested_expires(&self, req: &Request) -> Result<u32, Refused> {
        let asked = header_value(req, |h| match h {
            Header::Expires(e) => Some(e.value()),
            _ => None,
        })
        .map(|v| v.trim().parse::<u64>());
        let asked = match asked {
            None => self.config.default_expires,
            Some(Ok(v)) => v.min(u64::from(u32::MAX)) as u32,
            Some(Err(_)) => return Err(Refused::new(400, "unreadable Expires")),
        };
        if asked != 0 && asked < self.config.min_expires {
            let mut r = Refused::new(423, "subscription too brief");
            r.headers.push(Header::MinExpires(
                self.config.min_expires.to_string().into(),
            ));
            return Err(r);
        }
        Ok(asked.min(self.config.max_expires))
    }

    /// Handles a SUBSCRIBE for `resource` and `package`, received from `peer`, by
    /// `subscriber` (already authenticated). An initial SUBSCRIBE (no To tag) creates a
    /// subscription; one inside a subscription's dialog refreshes or ends it.
    pub fn subscribe(
        &mut self,
        req: &Request,
        resource: &str,
        package: Package,
        subscriber: &str,
        peer: Peer,
        now: u64,
    ) -> Result<Subscribed, Refused> {
        let event = header_value(req, |h| match h {
            Header::Event(e) => Some(e.value()),
            _ => None,
        })
        .unwrap_or(package.as_str())
        .trim()
        .to_string();
        // §4.2.1: a subscriber that cannot read what this package sends gets 406.
        let accepts: Vec<String> = req
            .headers
            .iter()
            .filter_map(|h| match h {
                Header::Accept(a) => Some(a.value().to_string()),
                _ => None,
            })
            .flat_map(|v| {
                v.split(',')
                    .map(|t| {
                        t.split(';')
                            .next()
                            .unwrap_or("")
                            .trim()
                            .to_ascii_lowercase()
                    })
                    .collect::<Vec<_>>()
            })
            .filter(|t| !t.is_empty())
            .collect();
        let wanted = package.content_type();
        let (kind, _) = wanted.split_once('/').unwrap_or((wanted, ""));
        if !accepts.is_empty()
            && !accepts
                .iter()
                .any(|t| t == wanted || t == "*/*" || *t == format!("{kind}/*"))
        {
            let mut r = Refused::new(
                406,
                "the subscriber does not accept this package's documents",
            );
            r.headers.push(Header::Accept(wanted.into()));
            return Err(r);
        }
        let expires = self.requested_expires(req)?;
        let cseq = req
            .cseq_header()
            .ok()
            .and_then(|c| c.value().split_whitespace().next()?.parse::<u32>().ok())
            .ok_or_else(|| Refused::new(400, "unreadable CSeq"))?;
        let in_dialog = req.to_header().is_ok_and(|t| tag_of(t.value()).is_some());
        if in_dialog {
            let Some(id) = self.find(req) else {
                return Err(Refused::new(481, "no such subscription"));
            };
            let s = self.subs.get_mut(&id).expect("indexed");
            if s.package != package {
                // §4.2.1.2: a refresh is for the subscription's own package.
                let mut r = Refused::new(489, "not the package of this subscription");
                r.headers.push(Header::Other(
                    "Allow-Events".into(),
                    s.package.as_str().into(),
                ));
                return Err(r);
            }
            if cseq <= s.remote_cseq {
                return Err(Refused::new(500, "CSeq lower than the dialog's"));
            }
            s.remote_cseq = cseq;
            s.peer = peer;
            if let Some(c) = contact_uri(req) {
                s.remote_target = c;
            }
            if expires == 0 {
                return Ok(Subscribed::Ended { id });
            }
            self.set_expiry(id, now + u64::from(expires));
            return Ok(Subscribed::Refreshed { id, expires });
        }
        // An initial SUBSCRIBE with Expires 0 is a fetch (§4.2.1.1): created with expires 0,
        // it gets one NOTIFY (terminated) and ends.
        if self.subs.len() >= self.config.max_subscriptions {
            self.stats.refused_server_limit += 1;
            let mut r = Refused::new(503, "subscription limit reached");
            r.headers.push(Header::RetryAfter("60".into()));
            return Err(r);
        }
        // One subscriber over their own share gets 403, not 503: the server is not
        // overloaded, this subscriber is refused, and asking again will not help until some
        // of their subscriptions end (RFC 3261 §21.4.4: "the request SHOULD NOT be
        // repeated"; RFC 6665 §4.2.1.2 lets a notifier refuse by policy). A 503 would invite
        // the phone to retry after Retry-After forever, or to fail over to another server
        // (RFC 3263) as if this one were down for everyone; with 403 phones leave the extra
        // lamps dark and try again at their next resubscription or reboot. The Warning says
        // why. A fetch (Expires: 0) keeps nothing, so it is not refused.
        if expires != 0 && self.count_of(subscriber) >= self.config.max_per_subscriber {
            self.stats.refused_subscriber_limit += 1;
            return Err(Refused::new(
                403,
                "too many subscriptions for this subscriber",
            ));
        }
        let call_id = req
            .call_id_header()
            .map(|c| c.value().trim().to_string())
            .map_err(|_| Refused::new(400, "no Call-ID"))?;
        let from = req
            .from_header()
            .map(|f| f.value().to_string())
            .map_err(|_| Refused::new(400, "no From"))?;
        let remote_tag = tag_of(&from)
            .ok_or_else(|| Refused::new(400, "From without a tag"))?
            .to_string();
        let to = req
            .to_header()
            .map(|t| t.value().to_string())
            .map_err(|_| Refused::new(400, "no To"))?;
        let remote_target =
            contact_uri(req).ok_or_else(|| Refused::new(400, "SUBSCRIBE without a Contact"))?;
        let route_set: Vec<String> = req
            .headers
            .iter()
            .filter_map(|h| match h {
                Header::RecordRoute(r) => Some(r.value().to_string()),
                _ => None,
            })
            .flat_map(|v| {
                crate::message::split_values(&v)
                    .into_iter()
                    .map(|x| strip_angle(x).to_string())
                    .collect::<Vec<_>>()
            })
            .collect();
        let id = self.next_id;
        self.next_id += 1;
        let local_tag = self.entropy.token();
        let s = Subscription {
            id,
            package,
            resource: resource.to_string(),
            subscriber: subscriber.to_string(),
            peer,
            expires_at: now + u64::from(expires),
            last_body: None,
            event,
            call_id,
            local_tag: local_tag.clone(),
            remote_tag,
            local_uri: without_tag(&to),
            remote_uri: without_tag(&from),
            remote_target,
            route_set,
            local_cseq: 0,
            remote_cseq: cseq,
            version: 0,
        };
        self.file(s);
        Ok(Subscribed::Created {
            id,
            expires,
            to_tag: local_tag,
        })
    }

    /// The NOTIFY of subscription `id` (§4.2.2): `via` on top, `contact` as ours, the
    /// Subscription-State for `state` (with the time left at `now`), and the document
    /// `body(version)` builds — `version` counts the subscription's NOTIFYs from 0 (the
    /// dialog-info `version`). The body is remembered as the last one sent. Returns the
    /// request and where to send it.
    pub fn notify(
        &mut self,
        id: SubId,
        via: &str,
        contact: &str,
        state: SubState,
        now: u64,
        body: impl FnOnce(u32) -> String,
    ) -> Option<(Request, Peer)> {
        let s = self.subs.get_mut(&id)?;
        s.local_cseq += 1;
        let version = s.version;
        s.version += 1;
        let text = body(version);
        let uri = crate::parse::uri_as_written(&s.remote_target).ok()?;
        let mut headers = Headers::default();
        headers.push(Header::Via(via.to_string().into()));
        headers.push(Header::MaxForwards("70".into()));
        if !s.route_set.is_empty() {
            // The route set of a subscription is the SUBSCRIBE's Record-Route in order
            // (§12.1.1 for the UAS side).
            let routes: Vec<String> = s.route_set.iter().map(|r| format!("<{r}>")).collect();
            headers.push(Header::Route(routes.join(", ").into()));
        }
        headers.push(Header::From(
            format!("{};tag={}", s.local_uri, s.local_tag).into(),
        ));
        headers.push(Header::To(
            format!("{};tag={}", s.remote_uri, s.remote_tag).into(),
        ));
        headers.push(Header::CallId(s.call_id.clone().into()));
        headers.push(Header::CSeq(format!("{} NOTIFY", s.local_cseq).into()));
        headers.push(Header::Contact(contact.to_string().into()));
        headers.push(Header::Event(s.event.clone().into()));
        let sub_state = match state {
            SubState::Active => format!("active;expires={}", s.expires_at.saturating_sub(now)),
            SubState::Terminated(Some(reason)) => format!("terminated;reason={reason}"),
            SubState::Terminated(None) => "terminated".to_string(),
        };
        headers.push(Header::SubscriptionState(sub_state.into()));
        headers.push(Header::ContentType(s.package.content_type().into()));
        headers.push(Header::ContentLength((text.len() as u32).into()));
        s.last_body = Some(text.clone());
        let peer = s.peer;
        Some((
            Request {
                method: Method::Notify,
                uri,
                version: Version::V2,
                headers,
                body: text.into_bytes(),
            },
            peer,
        ))
    }
}

/// What an unsolicited NOTIFY says and where it goes (see [`unsolicited_notify`]).
#[derive(Clone, Debug)]
pub struct UnsolicitedNotify<'a> {
    /// The Request-URI: the device's registered contact.
    pub target: &'a str,
    /// Our Via, with a fresh branch.
    pub via: &'a str,
    /// The URI of what the NOTIFY is about (the mailbox), in From.
    pub from: &'a str,
    /// A fresh From tag.
    pub from_tag: &'a str,
    /// The device's own address of record, in To: phones match it to the account (line)
    /// the NOTIFY is for.
    pub to: &'a str,
    /// A fresh Call-ID.
    pub call_id: &'a str,
    /// Our Contact.
    pub contact: &'a str,
    pub package: Package,
    /// The document ([`Package::content_type`]).
    pub body: String,
}

/// A NOTIFY outside any dialog (CSeq 1, no To tag) with `Subscription-State: active`, for a
/// device that takes the package's state without subscribing: RFC 3842 §1 leaves room for
/// such "unsolicited" message-waiting NOTIFYs, which phones that never subscribe expect.
/// None when the target is not a URI.
pub fn unsolicited_notify(n: UnsolicitedNotify<'_>) -> Option<Request> {
    let uri = crate::parse::uri_as_written(n.target).ok()?;
    let mut headers = Headers::default();
    headers.push(Header::Via(n.via.to_string().into()));
    headers.push(Header::MaxForwards("70".into()));
    headers.push(Header::From(
        format!("<{}>;tag={}", n.from, n.from_tag).into(),
    ));
    headers.push(Header::To(format!("<{}>", n.to).into()));
    headers.push(Header::CallId(n.call_id.to_string().into()));
    headers.push(Header::CSeq("1 NOTIFY".into()));
    headers.push(Header::Contact(n.contact.to_string().into()));
    headers.push(Header::Event(n.package.as_str().into()));
    headers.push(Header::SubscriptionState("active".into()));
    headers.push(Header::ContentType(n.package.content_type().into()));
    headers.push(Header::ContentLength((n.body.len() as u32).into()));
    Some(Request {
        method: Method::Notify,
        uri,
        version: Version::V2,
        headers,
        body: n.body.into_bytes(),
    })
}

/// The URI of a request's first Contact.
fn contact_uri(req: &Request) -> Option<String> {
    let v = header_value(req, |h| match h {
        Header::Contact(c) => Some(c.value()),
        _ => None,
    })?;
    let first = split_first_value(v).0;
    let uri = strip_angle(first);
    let uri = uri.split(['>']).next().unwrap_or(uri).trim();
    (!uri.is_empty() && uri != "*").then(|| uri.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::SipMessage;
    use crate::parse::{parse, Limits};

    fn subscribe(extra: &str, to_tag: Option<&str>, cseq: u32) -> Request {
        let to = match to_tag {
            Some(t) => format!("<sip:bob@example.com>;tag={t}"),
            None => "<sip:bob@example.com>".into(),
        };
        let text = format!(
            "SUBSCRIBE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK-s{cseq}\r\n\
             Max-Forwards: 70\r\nFrom: \"Alice\" <sip:alice@example.com>;tag=a1\r\nTo: {to}\r\n\
             Call-ID: sub-1\r\nCSeq: {cseq} SUBSCRIBE\r\nContact: <sip:alice@10.0.0.1:5070>\r\n\
             Event: dialog\r\n{extra}Content-Length: 0\r\n\r\n"
        );
        match parse(text.as_bytes(), &Limits::default()).unwrap() {
            SipMessage::Request(r) => r,
            _ => unreachable!(),
        }
    }

    fn peer() -> Peer {
        Peer::udp("10.0.0.1:5070".parse().unwrap())
    }

    #[test]
    fn subscribe_notify_refresh_unsubscribe() {
        let mut n = Notifier::new(NotifierConfig::default(), Entropy::from_seed([0; 32]));
        let r = n
            .subscribe(
                &subscribe("Expires: 600\r\n", None, 1),
                "bob",
                Package::Dialog,
                "alice",
                peer(),
                1000,
            )
            .unwrap();
        let Subscribed::Created {
            id,
            expires,
            to_tag,
        } = r
        else {
            panic!("{r:?}")
        };
        assert_eq!(expires, 600);
        assert_eq!(n.watching("bob"), vec![id]);
        let (req, to) = n
            .notify(
                id,
                "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-n1",
                "<sip:127.0.0.1:5060>",
                SubState::Active,
                1000,
                |v| format!("doc {v}"),
            )
            .unwrap();
        assert_eq!(to, peer());
        let text = req.to_string();
        assert!(
            text.starts_with("NOTIFY sip:alice@10.0.0.1:5070 SIP/2.0\r\n"),
            "{text}"
        );
        assert!(
            text.contains(&format!("From: <sip:bob@example.com>;tag={to_tag}")),
            "{text}"
        );
        assert!(
            text.contains("To: \"Alice\" <sip:alice@example.com>;tag=a1"),
            "{text}"
        );
        assert!(text.contains("CSeq: 1 NOTIFY"));
        assert!(
            text.contains("Subscription-State: active;expires=600"),
            "{text}"
        );
        assert!(text.contains("Event: dialog"));
        assert!(text.ends_with("doc 0"), "{text}");
        // Refresh in the dialog.
        let refresh = subscribe("Expires: 300\r\n", Some(&to_tag), 2);
        assert_eq!(n.find(&refresh), Some(id));
        assert_eq!(
            n.subscribe(&refresh, "bob", Package::Dialog, "alice", peer(), 1100),
            Ok(Subscribed::Refreshed { id, expires: 300 })
        );
        assert_eq!(n.next_expiry(), Some(1401));
        // An old CSeq is refused; an unknown dialog is 481.
        assert_eq!(
            n.subscribe(&refresh, "bob", Package::Dialog, "alice", peer(), 1100)
                .unwrap_err()
                .code,
            500
        );
        let stranger = subscribe("", Some("nope"), 9);
        assert_eq!(
            n.subscribe(&stranger, "bob", Package::Dialog, "alice", peer(), 1100)
                .unwrap_err()
                .code,
            481
        );
        let (req, _) = n
            .notify(
                id,
                "SIP/2.0/UDP x;branch=z9hG4bK-n2",
                "<sip:x>",
                SubState::Active,
                1100,
                |v| format!("doc {v}"),
            )
            .unwrap();
        assert!(req.to_string().ends_with("doc 1"));
        // Unsubscribe.
        let bye = subscribe("Expires: 0\r\n", Some(&to_tag), 3);
        assert_eq!(
            n.subscribe(&bye, "bob", Package::Dialog, "alice", peer(), 1200),
            Ok(Subscribed::Ended { id })
        );
        let (req, _) = n
            .notify(
                id,
                "SIP/2.0/UDP x;branch=z9hG4bK-n3",
                "<sip:x>",
                SubState::Terminated(None),
                1200,
                |_| String::new(),
            )
            .unwrap();
        assert!(req
            .to_string()
            .contains("Subscription-State: terminated\r\n"));
        n.remove(id);
        assert!(n.is_empty() && n.watching("bob").is_empty());
    }

    #[test]
    fn expiry_bounds_and_limits() {
        let mut n = Notifier::new(
            NotifierConfig {
                max_subscriptions: 1,
                ..NotifierConfig::default()
            },
            Entropy::from_seed([0; 32]),
        );
        let brief = n
            .subscribe(
                &subscribe("Expires: 10\r\n", None, 1),
                "bob",
                Package::Dialog,
                "a",
                peer(),
                0,
            )
            .unwrap_err();
        assert_eq!(brief.code, 423);
        assert_eq!(brief.headers, vec![Header::MinExpires("60".into())]);
        let long = n
            .subscribe(
                &subscribe("Expires: 99999\r\n", None, 1),
                "bob",
                Package::Presence,
                "a",
                peer(),
                0,
            )
            .unwrap();
        let Subscribed::Created { id, expires, .. } = long else {
            panic!()
        };
        assert_eq!(expires, 3600);
        assert_eq!(
            n.subscribe(
                &subscribe("", None, 1),
                "bob",
                Package::Dialog,
                "a",
                peer(),
                0
            )
            .unwrap_err()
            .code,
            503
        );
        assert!(n.expire(3600).is_empty());
        assert_eq!(n.expire(3601), vec![id]);
    }

    #[test]
    fn event_ids_packages_accept_and_restore() {
        let mut n = Notifier::new(NotifierConfig::default(), Entropy::from_seed([0; 32]));
        let req = subscribe("Expires: 600\r\n", None, 1);
        let text = req
            .to_string()
            .replace("Event: dialog", "Event: dialog;id=7");
        let req =
            match crate::parse::parse(text.as_bytes(), &crate::parse::Limits::default()).unwrap() {
                SipMessage::Request(r) => r,
                _ => unreachable!(),
            };
        let Ok(Subscribed::Created { id, to_tag, .. }) =
            n.subscribe(&req, "bob", Package::Dialog, "alice", peer(), 0)
        else {
            panic!()
        };
        let (notify, _) = n
            .notify(
                id,
                "SIP/2.0/UDP x;branch=z9hG4bK-1",
                "<sip:x>",
                SubState::Active,
                0,
                |_| String::new(),
            )
            .unwrap();
        assert!(notify.to_string().contains("Event: dialog;id=7\r\n"));
        // A refresh for another package is refused 489.
        let wrong = subscribe("", Some(&to_tag), 2);
        assert_eq!(
            n.subscribe(&wrong, "bob", Package::Presence, "alice", peer(), 0)
                .unwrap_err()
                .code,
            489
        );
        // A subscriber that only takes plain text: 406.
        let picky = subscribe("Accept: text/plain\r\n", None, 1);
        let r = n
            .subscribe(&picky, "bob", Package::Dialog, "alice", peer(), 0)
            .unwrap_err();
        assert_eq!(r.code, 406);
        let fine = subscribe("Accept: application/*\r\n", None, 1)
            .to_string()
            .replace("sub-1", "sub-2");
        let fine =
            match crate::parse::parse(fine.as_bytes(), &crate::parse::Limits::default()).unwrap() {
                SipMessage::Request(r) => r,
                _ => unreachable!(),
            };
        assert!(n
            .subscribe(&fine, "bob", Package::Dialog, "alice", peer(), 0)
            .is_ok());
        // Kept and taken back: found by its dialog, CSeq ahead.
        let kept: Vec<Subscription> = vec![n.get(id).unwrap().clone()];
        let json = serde_json::to_string(&kept[0]).unwrap();
        let back: Subscription = serde_json::from_str(&json).unwrap();
        let mut m = Notifier::new(NotifierConfig::default(), Entropy::from_seed([0; 32]));
        let ids = m.restore(vec![back], 100).ids;
        assert_eq!(ids.len(), 1);
        let refresh = subscribe("", Some(&to_tag), 3);
        assert_eq!(m.find(&refresh), Some(ids[0]));
        let (notify, _) = m
            .notify(
                ids[0],
                "SIP/2.0/UDP x;branch=z9hG4bK-2",
                "<sip:x>",
                SubState::Active,
                100,
                |v| format!("v{v}"),
            )
            .unwrap();
        assert!(notify.to_string().contains("CSeq: 1002 NOTIFY"), "{notify}");
        assert!(notify.to_string().ends_with("v1001"));
        let late = m.restore(vec![n.get(id).unwrap().clone()], 10_000);
        assert!(late.ids.is_empty(), "expired");
        assert_eq!(late.left_out.len(), 1);
        assert_eq!(m.stats().not_restored, 0, "an expired one is not refused");
    }

    /// An initial SUBSCRIBE of its own dialog (Call-ID `call`).
    fn initial(call: &str, expires: u32) -> Request {
        let text = subscribe(&format!("Expires: {expires}\r\n"), None, 1)
            .to_string()
            .replace("sub-1", call);
        match parse(text.as_bytes(), &Limits::default()).unwrap() {
            SipMessage::Request(r) => r,
            _ => unreachable!(),
        }
    }

    #[test]
    fn one_subscriber_is_held_to_their_share_while_others_subscribe() {
        let config = NotifierConfig {
            max_per_subscriber: 2,
            ..NotifierConfig::default()
        };
        let mut n = Notifier::new(config, Entropy::from_seed([0; 32]));
        let mut made = Vec::new();
        for i in 0..2 {
            let r = n.subscribe(
                &initial(&format!("a{i}"), 600),
                "bob",
                Package::Dialog,
                "alice",
                peer(),
                0,
            );
            let Ok(Subscribed::Created { id, .. }) = r else {
                panic!("{r:?}")
            };
            made.push(id);
        }
        // alice's third is refused 403, whatever she watches and from wherever she sends it.
        let other_peer = Peer::udp("10.0.0.9:5060".parse().unwrap());
        for (i, (resource, from)) in [("bob", peer()), ("carol", other_peer)]
            .into_iter()
            .enumerate()
        {
            let refused = n
                .subscribe(
                    &initial(&format!("a-over{i}"), 600),
                    resource,
                    Package::Presence,
                    "alice",
                    from,
                    0,
                )
                .unwrap_err();
            assert_eq!(refused.code, 403, "{refused:?}");
            assert!(refused.why.contains("too many"), "{refused:?}");
        }
        assert_eq!(n.stats().refused_subscriber_limit, 2);
        assert_eq!(n.len(), 2);
        // Someone else still subscribes, from alice's own address too.
        assert!(matches!(
            n.subscribe(
                &initial("c0", 600),
                "bob",
                Package::Dialog,
                "carol",
                peer(),
                0
            ),
            Ok(Subscribed::Created { .. })
        ));
        // A fetch keeps nothing: not refused (and forgotten at once, as the core does).
        let fetch = n.subscribe(
            &initial("a-fetch", 0),
            "bob",
            Package::Dialog,
            "alice",
            peer(),
            0,
        );
        let Ok(Subscribed::Created { id, expires: 0, .. }) = fetch else {
            panic!("{fetch:?}")
        };
        n.remove(id);
        // A refresh of one she has is no new subscription.
        let Some(first) = n.get(made[0]).cloned() else {
            panic!()
        };
        let refresh = subscribe("Expires: 600\r\n", Some(&first.local_tag), 2)
            .to_string()
            .replace("sub-1", "a0");
        let refresh = match parse(refresh.as_bytes(), &Limits::default()).unwrap() {
            SipMessage::Request(r) => r,
            _ => unreachable!(),
        };
        assert!(matches!(
            n.subscribe(&refresh, "bob", Package::Dialog, "alice", peer(), 10),
            Ok(Subscribed::Refreshed { .. })
        ));
        // Once one of hers ends, she may subscribe again.
        n.remove(made[1]);
        assert_eq!(n.count_of("alice"), 1);
        assert!(n
            .subscribe(
                &initial("a-again", 600),
                "bob",
                Package::Dialog,
                "alice",
                peer(),
                0
            )
            .is_ok());
        assert_eq!(n.stats().refused_subscriber_limit, 2);
        assert_eq!(n.stats().refused_server_limit, 0);
    }

    #[test]
    fn a_restart_takes_back_no_more_than_each_subscribers_share() {
        // Before the restart alice had five (a higher limit then), carol one.
        let mut before = Notifier::new(NotifierConfig::default(), Entropy::from_seed([0; 32]));
        let mut kept = Vec::new();
        for (i, who) in ["alice", "alice", "carol", "alice", "alice", "alice"]
            .into_iter()
            .enumerate()
        {
            let Ok(Subscribed::Created { id, .. }) = before.subscribe(
                &initial(&format!("k{i}"), 600),
                "bob",
                Package::Dialog,
                who,
                peer(),
                0,
            ) else {
                panic!()
            };
            kept.push(before.get(id).unwrap().clone());
        }
        let config = NotifierConfig {
            max_per_subscriber: 2,
            ..NotifierConfig::default()
        };
        let mut after = Notifier::new(config, Entropy::from_seed([1; 32]));
        let restored = after.restore(kept, 100);
        assert_eq!(restored.ids.len(), 3, "two of alice's and carol's");
        assert!(restored.left_out.is_empty());
        // The rest are filed only to be told they ended.
        assert_eq!(restored.ended.len(), 3);
        for id in &restored.ended {
            let s = after.get(*id).unwrap();
            assert_eq!(s.subscriber, "alice");
            assert!(!restored.ids.contains(id));
            let (notify, _) = after
                .notify(
                    *id,
                    "v",
                    "c",
                    SubState::Terminated(Some("rejected")),
                    100,
                    |_| String::new(),
                )
                .unwrap();
            let text = String::from_utf8(crate::wire::request_bytes(&notify)).unwrap();
            assert!(text.contains("Subscription-State: terminated;reason=rejected\r\n"));
            after.remove(*id);
        }
        assert_eq!(after.count_of("alice"), 2);
        assert_eq!(after.count_of("carol"), 1);
        assert_eq!(after.stats().not_restored, 3);
        // alice is at her limit after the restart too.
        assert_eq!(
            after
                .subscribe(
                    &initial("k-new", 600),
                    "bob",
                    Package::Dialog,
                    "alice",
                    peer(),
                    100
                )
                .unwrap_err()
                .code,
            403
        );
    }

    #[test]
    fn message_summary_subscriptions_need_its_document_type() {
        let mut n = Notifier::new(NotifierConfig::default(), Entropy::from_seed([0; 32]));
        let text = subscribe("Accept: application/simple-message-summary\r\n", None, 1)
            .to_string()
            .replace("Event: dialog", "Event: message-summary");
        let req = match parse(text.as_bytes(), &Limits::default()).unwrap() {
            SipMessage::Request(r) => r,
            _ => unreachable!(),
        };
        let Ok(Subscribed::Created { id, .. }) =
            n.subscribe(&req, "user:bob", Package::MessageSummary, "bob", peer(), 0)
        else {
            panic!()
        };
        assert_eq!(n.iter().map(|s| s.id).collect::<Vec<_>>(), vec![id]);
        let (notify, _) = n
            .notify(
                id,
                "SIP/2.0/UDP x;branch=z9hG4bK-m",
                "<sip:x>",
                SubState::Active,
                0,
                |_| "Messages-Waiting: no\r\nVoice-Message: 0/0 (0/0)\r\n".into(),
            )
            .unwrap();
        let text = String::from_utf8(crate::wire::request_bytes(&notify)).unwrap();
        assert!(text.contains("Event: message-summary\r\n"), "{text}");
        assert!(
            text.contains("Content-Type: application/simple-message-summary\r\n"),
            "{text}"
        );
        // One that takes only the dialog package's documents: 406, saying what it would get.
        let picky = text_request(
            &subscribe("Accept: application/dialog-info+xml\r\n", None, 1)
                .to_string()
                .replace("sub-1", "sub-9"),
        );
        let r = n
            .subscribe(
                &picky,
                "user:bob",
                Package::MessageSummary,
                "bob",
                peer(),
                0,
            )
            .unwrap_err();
        assert_eq!(r.code, 406);
        assert_eq!(
            r.headers,
            vec![Header::Accept("application/simple-message-summary".into())]
        );
    }

    fn text_request(text: &str) -> Request {
        match parse(text.as_bytes(), &Limits::default()).unwrap() {
            SipMessage::Request(r) => r,
            _ => unreachable!(),
        }
    }

    #[test]
    fn an_unsolicited_notify_is_outside_any_dialog() {
        let req = unsolicited_notify(UnsolicitedNotify {
            target: "sip:bob@10.0.0.7:5062;transport=tcp",
            via: "SIP/2.0/TCP 10.0.0.1:5060;branch=z9hG4bK-u1",
            from: "sip:1002@example.com",
            from_tag: "f1",
            to: "sip:bob@example.com",
            call_id: "mwi-1@example.com",
            contact: "<sip:10.0.0.1:5060;transport=tcp>",
            package: Package::MessageSummary,
            body: "Messages-Waiting: yes\r\nVoice-Message: 1/0 (0/0)\r\n".into(),
        })
        .unwrap();
        let text = String::from_utf8(crate::wire::request_bytes(&req)).unwrap();
        assert!(
            text.starts_with("NOTIFY sip:bob@10.0.0.7:5062;transport=tcp SIP/2.0\r\n"),
            "{text}"
        );
        for line in [
            "From: <sip:1002@example.com>;tag=f1\r\n",
            "To: <sip:bob@example.com>\r\n",
            "CSeq: 1 NOTIFY\r\n",
            "Event: message-summary\r\n",
            "Subscription-State: active\r\n",
            "Content-Type: application/simple-message-summary\r\n",
            "Content-Length: 49\r\n",
        ] {
            assert!(text.contains(line), "{line:?} in {text}");
        }
        assert!(text.ends_with("\r\n\r\nMessages-Waiting: yes\r\nVoice-Message: 1/0 (0/0)\r\n"));
        // Parsed back as the daemon would read it: no To tag, so not in a dialog.
        let back = text_request(&text);
        assert!(tag_of(back.to_header().unwrap().value()).is_none());
        assert!(unsolicited_notify(UnsolicitedNotify {
            target: "",
            ..UnsolicitedNotify {
                target: "sip:a@b",
                via: "v",
                from: "sip:a@b",
                from_tag: "t",
                to: "sip:a@b",
                call_id: "c",
                contact: "<sip:b>",
                package: Package::MessageSummary,
                body: String::new(),
            }
        })
        .is_none());
    }

    #[test]
    fn tags_are_taken_off_name_addrs() {
        assert_eq!(
            without_tag("\"A\" <sip:a@b>;tag=1;x=y"),
            "\"A\" <sip:a@b>;x=y"
        );
        assert_eq!(without_tag("sip:a@b;tag=1"), "sip:a@b");
    }
}
