//! The target's side of a confirmed forward (see [`super::confirm`]): the dialog in which
//! the daemon is the UAC, as a sans-I/O value that makes the requests of that dialog and
//! reads the responses to them. Sending them, and what the call does with the outcome,
//! are the core's.
//!
//! The leg offers the target only the codec the caller's offer and we agree on (PCMU or
//! PCMA, with telephone-event when the caller has it: [`agreed_codec`]), so the caller's
//! and the target's media sessions share one law. Its INVITE ([`TargetLeg::invite`]) has
//! a Call-ID, From tag, CSeq and Contact of ours and Max-Forwards 70; its Via is put on
//! where it is known where the request leaves from. A 2xx ([`TargetLeg::answered`]) fixes
//! the dialog (RFC 3261 §12.1.2: the To tag, the Contact as remote target, the
//! Record-Route set reversed as route set) and is acknowledged by [`TargetLeg::ack`]
//! (§13.2.2.4: the INVITE's CSeq number); [`TargetLeg::bye`] ends it, and
//! [`TargetLeg::owns`] tells the target's in-dialog requests from others.
//!
//! The core's use of it is in `core::calls::confirm_b2b`.

use super::our_stream::{strip_telephone_event, OurStream};
use std::net::{IpAddr, SocketAddr};
use switchboard_media::g711::Law;
use switchboard_media::offer_answer::{self, NegotiationError, Stream};
use switchboard_media::sdp::{self, Session};
use switchboard_sip::message::{cseq_number, split_first_value, split_values, tag_of};
use switchboard_sip::msg::headers::{Header, Headers};
use switchboard_sip::msg::prelude::*;
use switchboard_sip::msg::{Method, Request, Response, Version};
use switchboard_sip::proxy;

/// The payload type our offers give telephone-event.
const TELEPHONE_EVENT: u8 = 101;

/// The codec both legs use: the law the caller's offer and we agree on, and whether the
/// caller has telephone-events (the target is offered them only then). Err when the
/// caller's offer cannot be answered at all (the call's 488).
pub(crate) fn agreed_codec(caller_offer: &Session) -> Result<(Law, bool), NegotiationError> {
    let local = offer_answer::Local {
        address: IpAddr::from([0, 0, 0, 0]),
        port: 9,
        session_id: 0,
        version: 1,
        laws: vec![Law::MuLaw, Law::ALaw],
        telephone_event: TELEPHONE_EVENT,
    };
    let (_, stream) = offer_answer::answer(caller_offer, &local)?;
    Ok((stream.law, stream.telephone_event.is_some()))
}

/// How the leg's INVITE names the two ends and where our media is.
#[derive(Clone, Debug)]
pub(crate) struct LegSetup {
    /// A Call-ID of ours (not the caller's).
    pub call_id: String,
    /// Our From tag.
    pub from_tag: String,
    /// Our From header value without its tag: the caller ID the leg's rule gives.
    pub from: String,
    /// The target: the Request-URI (a device's binding, a number at the trunk).
    pub target: String,
    /// The To header value (the person or number rung).
    pub to: String,
    /// Our Contact URI.
    pub contact: String,
    /// Where our target-side media session receives.
    pub media: SocketAddr,
    /// The `o=` session id of our SDP.
    pub session_id: u64,
    /// The law agreed with the caller, and whether to offer telephone-event.
    pub law: Law,
    pub telephone_event: bool,
}

/// The dialog of a target leg, from our INVITE to our BYE (see the module's
/// documentation).
#[derive(Clone, Debug)]
pub(crate) struct TargetLeg {
    call_id: String,
    from_tag: String,
    /// Our From value, with our tag.
    from: String,
    /// The To value: as sent, then with the target's tag (from its 2xx).
    to: String,
    /// The Request-URI of our next request: the target, then the 2xx's Contact.
    remote: String,
    /// The route set (§12.1.2), top first.
    routes: Vec<String>,
    /// The CSeq number of our last request.
    cseq: u32,
    /// The INVITE's CSeq number (its ACK and CANCEL carry it).
    invite_cseq: u32,
    contact: String,
    /// Our SDP offer and the description it was made from.
    offer: Session,
    local: offer_answer::Local,
    law: Law,
    telephone_event: bool,
}

impl TargetLeg {
    /// The leg before its INVITE is sent.
    pub(crate) fn new(setup: LegSetup) -> TargetLeg {
        let local = offer_answer::Local {
            address: setup.media.ip(),
            port: setup.media.port(),
            session_id: setup.session_id,
            version: 1,
            laws: vec![setup.law],
            telephone_event: TELEPHONE_EVENT,
        };
        let offer = our_offer(&local, setup.telephone_event);
        TargetLeg {
            from: format!("{};tag={}", setup.from, setup.from_tag),
            call_id: setup.call_id,
            from_tag: setup.from_tag,
            to: setup.to,
            remote: setup.target,
            routes: Vec::new(),
            cseq: 1,
            invite_cseq: 1,
            contact: setup.contact,
            offer,
            local,
            law: setup.law,
            telephone_event: setup.telephone_event,
        }
    }

    /// Our INVITE goes to another target (a failover) that is reached from another address
    /// of ours: our Contact and the address in our offer become that one's.
    pub(crate) fn moved(&mut self, contact: String, media: IpAddr) {
        self.contact = contact;
        self.local.address = media;
        self.offer = our_offer(&self.local, self.telephone_event);
    }

    /// Our end of the stream with the target, as our offer made it (what answers the
    /// target's re-offers).
    pub(crate) fn our_stream(&self) -> OurStream {
        let stream = OurStream::new(self.local.clone(), self.law, self.offer.to_bytes());
        stream.with_events(self.telephone_event)
    }

    /// Our Contact URI in the leg.
    pub(crate) fn contact(&self) -> &str {
        &self.contact
    }

    /// Our Call-ID of the leg.
    pub(crate) fn call_id(&self) -> &str {
        &self.call_id
    }

    /// A request of ours in the leg, without its Via (put on where it is known where it
    /// leaves from). None when the Request-URI is unreadable.
    fn request(&self, method: Method, cseq: u32) -> Option<Request> {
        let uri = switchboard_sip::parse::uri_as_written(&self.remote).ok()?;
        let mut headers = Headers::default();
        headers.push(Header::MaxForwards("70".into()));
        if !self.routes.is_empty() {
            let routes: Vec<String> = self.routes.iter().map(|r| format!("<{r}>")).collect();
            headers.push(Header::Route(routes.join(", ").into()));
        }
        headers.push(Header::From(self.from.clone().into()));
        headers.push(Header::To(self.to.clone().into()));
        headers.push(Header::CallId(self.call_id.clone().into()));
        headers.push(Header::CSeq(format!("{cseq} {method}").into()));
        Some(Request {
            method,
            uri,
            version: Version::V2,
            headers,
            body: Vec::new(),
        })
    }

    /// Our INVITE to the target, with our Contact and SDP offer (one codec, see
    /// [`agreed_codec`]).
    pub(crate) fn invite(&self) -> Option<Request> {
        let mut req = self.request(Method::Invite, self.invite_cseq)?;
        let sdp = self.offer.to_bytes();
        req.headers
            .push(Header::Contact(format!("<{}>", self.contact).into()));
        req.headers.push(Header::Allow(
            "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO".into(),
        ));
        req.headers
            .push(Header::ContentType("application/sdp".into()));
        req.headers
            .push(Header::ContentLength((sdp.len() as u32).into()));
        req.body = sdp;
        Some(req)
    }

    /// A 2xx to our INVITE: the dialog is fixed from it (its To tag, its Contact as the
    /// remote target, its Record-Route set reversed as the route set) and its SDP answer
    /// read: the stream to point our session at. Err(488) when the answer has no stream
    /// in the agreed codec (or none at all, or an unreadable one): the leg is to be ended.
    pub(crate) fn answered(&mut self, resp: &Response) -> Result<Stream, u16> {
        if let Ok(to) = resp.to_header() {
            if tag_of(to.value()).is_some() {
                self.to = to.value().to_string();
            }
        }
        if let Some(contact) = first_uri(&resp.headers, |h| match h {
            Header::Contact(c) => Some(c.value()),
            _ => None,
        }) {
            self.remote = contact;
        }
        let mut routes = record_routes(&resp.headers);
        routes.reverse();
        self.routes = routes;
        let answer =
            sdp::Session::parse(&resp.body, &sdp::Limits::default()).map_err(|_| 488u16)?;
        offer_answer::answered(&self.offer, &answer, &self.local).map_err(|_| 488)
    }

    /// The ACK of a 2xx to our INVITE (§13.2.2.4): a request of the dialog with the
    /// INVITE's CSeq number.
    pub(crate) fn ack(&self) -> Option<Request> {
        let mut req = self.request(Method::Ack, self.invite_cseq)?;
        req.headers.push(Header::ContentLength(0u32.into()));
        Some(req)
    }

    /// Our BYE in the dialog (the next CSeq number).
    pub(crate) fn bye(&mut self) -> Option<Request> {
        self.cseq = self.cseq.saturating_add(1);
        let mut req = self.request(Method::Bye, self.cseq)?;
        req.headers.push(Header::ContentLength(0u32.into()));
        Some(req)
    }

    /// Whether `req` is a request of the target in this dialog: our Call-ID, our tag as
    /// its To tag.
    pub(crate) fn owns(&self, req: &Request) -> bool {
        let call_id = req
            .call_id_header()
            .map(|c| c.value().trim() == self.call_id);
        let tag = req
            .to_header()
            .ok()
            .and_then(|t| tag_of(t.value()).map(|t| t == self.from_tag));
        call_id.unwrap_or(false) && tag.unwrap_or(false)
    }

    /// A request of ours went again as `cseq` (with a carrier's credentials): our next
    /// request has a higher number; when it is the INVITE (`invite`), its responses, ACK and
    /// CANCEL carry that one.
    pub(crate) fn renumbered(&mut self, cseq: u32, invite: bool) {
        if invite {
            self.invite_cseq = cseq;
        }
        self.cseq = self.cseq.max(cseq);
    }

    /// Whether `resp` answers our INVITE (its CSeq).
    pub(crate) fn answers_invite(&self, resp: &Response) -> bool {
        cseq_number(&resp.headers) == Some(self.invite_cseq)
    }
}

/// Our offer from `local`: its one codec, and telephone-event only with `telephone_event`
/// (a caller that cannot take keys as events: neither is the target offered them).
fn our_offer(local: &offer_answer::Local, telephone_event: bool) -> Session {
    let mut offer = offer_answer::offer(local);
    if !telephone_event {
        strip_telephone_event(&mut offer, local.telephone_event);
    }
    offer
}

/// The URI of the first value of the first header `pick` takes.
fn first_uri(headers: &Headers, pick: impl Fn(&Header) -> Option<&str>) -> Option<String> {
    let v = headers.iter().find_map(pick)?;
    let uri = proxy::strip_angle(split_first_value(v).0);
    let uri = uri
        .split(';')
        .next()
        .filter(|_| !v.contains('<'))
        .unwrap_or(uri);
    (!uri.is_empty() && uri != "*").then(|| uri.to_string())
}

/// The URIs of a message's Record-Route set, top first.
fn record_routes(headers: &Headers) -> Vec<String> {
    headers
        .iter()
        .filter_map(|h| match h {
            Header::RecordRoute(r) => Some(r.value()),
            _ => None,
        })
        .flat_map(split_values)
        .map(|v| proxy::strip_angle(v).to_string())
        .collect()
}

#[cfg(test)]
#[path = "confirm_leg_tests.rs"]
mod tests;
