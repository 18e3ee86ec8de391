//! What a phone sets about its own person: its presence by PUBLISH (RFC 3903), and feature
//! codes dialled from it (`*78` Do Not Disturb on, `*79` off, `*3` + a profile number).
//!
//! Either becomes a [`SipChange`] handed back to the core, which makes the change, stores it
//! (one person's changes one after another) and only then answers — like the API's changes.
//! A publication ends when it expires or is removed; the status it set then gives way to the
//! one it replaced. A sub-machine of the core: it owns the publications and the feature
//! codes, and is handed a [`Ctx`].

use super::calls::Admitted;
use super::context::Ctx;
use super::watchers::WatchersConfig;
use crate::presence_service::{self, Command};
use std::collections::{BTreeSet, HashMap};
use switchboard_policy::Caller;
use switchboard_presence::model::{Availability, Interface};
use switchboard_sip::events::{self, Package, PresenceDoc};
use switchboard_sip::message;
use switchboard_sip::msg::headers::Header;
use switchboard_sip::msg::{Request, Response};
use switchboard_sip::peer::Peer;
use switchboard_sip::proxy;
use switchboard_sip::transaction::TxId;

/// Feature codes dialled from a phone (configurable in `[features]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeatureCodes {
    pub dnd_on: String,
    pub dnd_off: String,
    /// Followed by a profile number: activates that profile.
    pub profile_prefix: String,
}

impl Default for FeatureCodes {
    fn default() -> Self {
        FeatureCodes {
            dnd_on: "*78".into(),
            dnd_off: "*79".into(),
            profile_prefix: "*3".into(),
        }
    }
}

/// What a feature code asks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Feature {
    DndOn,
    DndOff,
    Profile(String),
}

impl FeatureCodes {
    fn parse(&self, dialled: &str) -> Option<Feature> {
        if dialled == self.dnd_on {
            return Some(Feature::DndOn);
        }
        if dialled == self.dnd_off {
            return Some(Feature::DndOff);
        }
        let n = dialled.strip_prefix(self.profile_prefix.as_str())?;
        (!n.is_empty() && n.len() <= 4 && n.bytes().all(|b| b.is_ascii_digit()))
            .then(|| Feature::Profile(n.to_string()))
    }
}

/// A published state (RFC 3903 §4): its entity tag names it for refreshes.
pub(crate) struct Publication {
    pub person: String,
    pub expires_at: u64,
    /// The status it set, and the one it replaced (back when it ends).
    pub set: Availability,
    pub previous: Availability,
}

/// The publications and feature codes (see the module's documentation).
pub(crate) struct OwnPresence {
    features: FeatureCodes,
    /// SIP-ETag → publication.
    publications: HashMap<String, Publication>,
    /// (expiry, SIP-ETag) of every publication, earliest first.
    publication_ends: BTreeSet<(u64, String)>,
    /// The longest expiry a publication gets.
    max_publish_expires: u32,
}

/// Largest number of publications kept (each phone has one).
const MAX_PUBLICATIONS: usize = 10_000;
/// Publication expiry bounds (RFC 3903 §4.1).
const PUBLISH_MIN: u32 = 60;
const PUBLISH_DEFAULT: u32 = 3600;

/// A presence change a phone asked over SIP (PUBLISH, a feature code): made by the core,
/// stored, then answered `ok`.
pub(crate) struct SipChange {
    pub tx: TxId,
    pub req: Request,
    pub user: String,
    pub command: Command,
    pub ok: Response,
}

impl OwnPresence {
    pub fn new(config: &WatchersConfig) -> Self {
        OwnPresence {
            features: config.features.clone(),
            publications: HashMap::new(),
            publication_ends: BTreeSet::new(),
            max_publish_expires: config.subscriptions.max_expires,
        }
    }

    /// Files a publication under its entity tag (replacing one with the same tag).
    fn publish(&mut self, etag: String, p: Publication) {
        self.unpublish(&etag);
        self.publication_ends.insert((p.expires_at, etag.clone()));
        self.publications.insert(etag, p);
    }

    fn unpublish(&mut self, etag: &str) -> Option<Publication> {
        let p = self.publications.remove(etag)?;
        self.publication_ends
            .remove(&(p.expires_at, etag.to_string()));
        Some(p)
    }

    /// When the next publication ends (Unix seconds).
    pub fn next_expiry(&self) -> Option<u64> {
        self.publication_ends.first().map(|(t, _)| *t + 1)
    }

    /// Publications that ran out: the status each set gives way.
    pub(crate) fn timeout(&mut self, cx: &mut Ctx<'_>) {
        let expired: Vec<String> = self
            .publication_ends
            .iter()
            .take_while(|(t, _)| *t < cx.now.unix)
            .map(|(_, tag)| tag.clone())
            .collect();
        for tag in expired {
            if let Some(p) = self.unpublish(&tag) {
                tracing::info!(user = %p.person, "published presence expired");
                withdraw(cx, p);
            }
        }
    }

    /// A phone publishes its own presence (RFC 3903): its PIDF sets the person's status and
    /// message, stored before the 200 (with a SIP-ETag for refreshes).
    pub(crate) fn publish_request(
        &mut self,
        cx: &mut Ctx<'_>,
        tx: TxId,
        req: Request,
        peer: Peer,
    ) -> Option<SipChange> {
        let now = cx.now;
        if Package::of_request(&req) != Some(Package::Presence) {
            let allow = vec![Header::Other("Allow-Events".into(), "presence".into())];
            cx.wire.reply_stateless(tx, &req, 489, allow);
            return None;
        }
        let user = cx.authenticate_user(tx, &req, peer)?;
        let person = cx.resource_of(tx, &req)?;
        if person != user {
            {
                cx.wire.reply_to(
                    tx,
                    &req,
                    403,
                    vec![message::warning("only your own presence")],
                    now,
                );
                return None;
            }
        }
        let header = |name: &str| {
            req.headers.iter().find_map(|h| match h {
                Header::Other(n, v) if n.eq_ignore_ascii_case(name) => Some(v.trim().to_string()),
                _ => None,
            })
        };
        let expires = req
            .headers
            .iter()
            .find_map(|h| match h {
                Header::Expires(e) => e.value().trim().parse::<u32>().ok(),
                _ => None,
            })
            .unwrap_or(PUBLISH_DEFAULT);
        if expires != 0 && expires < PUBLISH_MIN {
            {
                cx.wire.reply_to(
                    tx,
                    &req,
                    423,
                    vec![Header::MinExpires(PUBLISH_MIN.to_string().into())],
                    now,
                );
                return None;
            }
        }
        let expires = expires.min(self.max_publish_expires);
        let if_match = header("SIP-If-Match");
        if let Some(tag) = &if_match {
            if self
                .publications
                .get(tag)
                .is_none_or(|p| p.person != person)
            {
                // §6 step 4: an unknown entity tag is 412.
                {
                    cx.wire.reply_to(tx, &req, 412, Vec::new(), now);
                    return None;
                }
            }
        }
        // §6 steps 2-3: an initial publication carries a document, a PIDF one.
        let has_body = !req.body.is_empty();
        if if_match.is_none() && !has_body {
            {
                cx.wire.reply_to(
                    tx,
                    &req,
                    400,
                    vec![message::warning("an initial PUBLISH carries a document")],
                    now,
                );
                return None;
            }
        }
        let content_type = req.headers.iter().find_map(|h| match h {
            Header::ContentType(c) => Some(c.value().to_ascii_lowercase()),
            _ => None,
        });
        if has_body
            && !content_type
                .as_deref()
                .is_some_and(|c| c.trim().starts_with(events::PIDF))
        {
            {
                cx.wire.reply_to(
                    tx,
                    &req,
                    415,
                    vec![Header::Accept(events::PIDF.into())],
                    now,
                );
                return None;
            }
        }
        let etag = match if_match.clone() {
            Some(e) => e,
            None => cx.wire.tag(),
        };
        if expires == 0 {
            // §6 step 6: the publication is removed, and with it the state it set.
            let gone = self.unpublish(&etag);
            let mut resp = message::response(&req, 200, None, &cx.wire.server);
            resp.headers.push(Header::Expires("0".into()));
            cx.wire.respond(tx, resp, now);
            if let Some(p) = gone {
                withdraw(cx, p);
            }
            return None;
        }
        if if_match.is_none() && self.publications.len() >= MAX_PUBLICATIONS {
            {
                cx.wire
                    .reply_to(tx, &req, 503, vec![Header::RetryAfter("60".into())], now);
                return None;
            }
        }
        let mut ok = message::response(&req, 200, None, &cx.wire.server);
        ok.headers
            .push(Header::Other("SIP-ETag".into(), etag.clone()));
        ok.headers.push(Header::Expires(expires.to_string().into()));
        let expires_at = now.unix + u64::from(expires);
        if !has_body {
            // A refresh (§4.3): the state stays as published.
            if let Some(mut p) = self.unpublish(&etag) {
                p.expires_at = expires_at;
                self.publish(etag, p);
            }
            {
                cx.wire.respond(tx, ok, now);
                return None;
            }
        }
        let doc = match events::parse_pidf(&req.body) {
            Ok(d) => d,
            Err(e) => {
                cx.wire
                    .reply_to(tx, &req, 400, vec![message::warning(&e.to_string())], now);
                return None;
            }
        };
        let (status, text) = published_status(&doc);
        // What the publication replaces returns when it ends (a modification keeps what the
        // first one replaced).
        let previous = match self.publications.get(&etag) {
            Some(p) => p.previous,
            None => cx
                .presence
                .model()
                .get(&person)
                .map(|p| p.availability)
                .unwrap_or(Availability::Available),
        };
        self.publish(
            etag,
            Publication {
                person: person.clone(),
                expires_at,
                set: status,
                previous,
            },
        );
        let command = Command::SetStatus {
            user: person.clone(),
            status: status.as_str().to_string(),
            text,
            until: None,
        };
        Some(SipChange {
            tx,
            req,
            user: person,
            command,
            ok,
        })
    }

    /// The feature code a call dials, if it is one, and the user dialling it (only users
    /// have them).
    pub(crate) fn feature_code(&self, call: &Admitted) -> Option<(String, Feature)> {
        match &call.caller {
            Caller::User(u) => Some((u.clone(), self.features.parse(&call.dialled)?)),
            _ => None,
        }
    }

    /// The presence change feature code `feature` asks of `user`: answered, once stored,
    /// with 480 and the outcome in plain words.
    pub(crate) fn feature_change(
        &self,
        cx: &mut Ctx<'_>,
        call: Admitted,
        (user, feature): (String, Feature),
    ) -> SipChange {
        let user = user.as_str();
        let command = match &feature {
            Feature::DndOn => Command::SetStatus {
                user: user.to_string(),
                status: Availability::DoNotDisturb.as_str().into(),
                text: None,
                until: None,
            },
            Feature::DndOff => Command::SetStatus {
                user: user.to_string(),
                status: profile_availability(cx, user).as_str().into(),
                text: None,
                until: None,
            },
            Feature::Profile(n) => Command::SetProfile {
                user: user.to_string(),
                profile: n.clone(),
                until: None,
                message: None,
            },
        };
        let what = match &feature {
            Feature::DndOn => "Do Not Disturb On".to_string(),
            Feature::DndOff => "Do Not Disturb Off".to_string(),
            Feature::Profile(n) => format!("Profile {n} Active"),
        };
        // There is no media to say so: the call ends at once with 480 and the outcome in
        // plain words where phones show it (the reason phrase), and in Reason and Warning.
        let tag = cx.wire.tag();
        let mut done = message::response(&call.req, 480, Some(&tag), &cx.wire.server);
        message::set_reason_phrase(&mut done, &what);
        done.headers.push(proxy::reason(480, &what));
        done.headers.push(message::warning(&what));
        tracing::info!(user, code = %call.dialled, what, "feature code");
        SipChange {
            tx: call.tx,
            req: call.req,
            user: user.to_string(),
            command,
            ok: done,
        }
    }
}

/// A publication that ended (removed or expired): the status it set gives way to the one
/// it replaced, unless something else changed the status since (the later change wins).
fn withdraw(cx: &mut Ctx<'_>, p: Publication) {
    let current = cx.presence.model().get(&p.person).map(|x| x.availability);
    if current != Some(p.set) || p.set == p.previous {
        return;
    }
    let request = presence_service::Request {
        who: p.person.clone(),
        admin: false,
        via: Interface::Sip,
        command: Command::SetStatus {
            user: p.person.clone(),
            status: p.previous.as_str().to_string(),
            text: None,
            until: None,
        },
    };
    let policy = cx.directory.policy();
    match cx.presence.handle(&request, policy, cx.now.unix as i64) {
        Ok(Err(pending)) => cx.persist_unacknowledged(pending.writes),
        Ok(Ok(_)) => {}
        Err(e) => {
            tracing::info!(user = %p.person, error = %e.message, "published status not withdrawn")
        }
    }
}

/// The availability the person's active profile gives (what Do Not Disturb off returns
/// to); Available when that is Do Not Disturb itself.
fn profile_availability(cx: &Ctx<'_>, user: &str) -> Availability {
    let policy = cx.directory.policy();
    let a = cx
        .presence
        .model()
        .get(user)
        .and_then(|p| cx.presence.overlay().profile(policy, user, &p.profile.id))
        .map(|e| presence_service::availability(e.profile.availability))
        .unwrap_or(Availability::Available);
    if a == Availability::DoNotDisturb {
        Availability::Available
    } else {
        a
    }
}

/// The status a published PIDF asks for, and its note (as a Custom text or a message).
fn published_status(doc: &PresenceDoc) -> (Availability, Option<String>) {
    // A note written over several lines (phones allow it) becomes one line: the text is
    // a status message, and control characters are refused in those.
    let note = doc.note.as_deref().map(|n| {
        n.split(|c: char| c.is_control() || c.is_whitespace())
            .filter(|w| !w.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    });
    if !doc.open {
        return (Availability::Unavailable, note);
    }
    let has = |a: &str| doc.activities.iter().any(|x| x == a);
    let status = if has("busy") {
        Availability::Busy
    } else if has("away") || has("meal") || has("vacation") || has("holiday") {
        Availability::Away
    } else {
        Availability::Available
    };
    (status, note)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_published_note_over_several_lines_is_one_line() {
        let doc = PresenceDoc {
            open: true,
            activities: vec!["busy".into()],
            note: Some("In a meeting\r\n  until\tthree\u{1b}".into()),
        };
        assert_eq!(
            published_status(&doc),
            (Availability::Busy, Some("In a meeting until three".into()))
        );
    }
}
