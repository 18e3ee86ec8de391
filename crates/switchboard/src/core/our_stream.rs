//! Our end of an RTP stream in a dialog of the daemon's own (a call it answered, either
//! leg of a confirmed forward): how it answers when the far end describes its stream
//! again in a re-INVITE (RFC 3264 §8: hold, resume, a new address, a session refresh).
//!
//! The stream keeps the codec agreed when it began (the other leg of a bridge, or the
//! prompts, are in that law): a re-offer is answered with it alone, and one without it
//! is refused 488, the stream going on as before. A re-INVITE without an offer gets a
//! fresh offer of ours, both ways (so that a side that held can take the call back in its
//! answer, RFC 6337 §5.3), whose answer comes in the ACK ([`OurStream::acked`]); a
//! re-offer while that answer is awaited is refused 491. What the far end now says goes
//! to the media engine as a [`Command::Update`] ([`update`]): where it receives, whether
//! we send, and how long it may send nothing — [`HELD_RTP_TIMEOUT`] while the stream is
//! on hold either way (a phone that holds may stop sending too), else the engine's RTP
//! timeout.

use super::media::{sdp_offer, Refusal};
use super::wire::Output;
use std::collections::VecDeque;
use std::time::Duration;
use switchboard_media::g711::Law;
use switchboard_media::offer_answer::{self, Local, Stream};
use switchboard_media::sdp::{self, Session};
use switchboard_media::session::{Command, SessionId};
use switchboard_sip::msg::Request;

/// How long the far end of a stream on hold (any direction but both ways, or no address
/// to send to) may send nothing before its call is hung up: a call on hold may be silent
/// that long, where a talking one may only for the RTP timeout.
pub(crate) const HELD_RTP_TIMEOUT: Duration = Duration::from_secs(60 * 60);

/// The engine's [`Command::Update`] for session `id` once its far end described `stream`
/// (`rtp_timeout`: the engine's timeout for a far end that sends).
pub(crate) fn update(id: SessionId, stream: &Stream, rtp_timeout: Duration) -> Output {
    let both_ways = stream.direction.receives() && stream.direction.sends();
    let held = !both_ways || stream.remote.is_none();
    Output::Media(Command::Update {
        id,
        remote: stream.remote,
        send: stream.direction.sends(),
        rtp_timeout: if held {
            rtp_timeout.max(HELD_RTP_TIMEOUT)
        } else {
            rtp_timeout
        },
    })
}

/// Our end of a stream: see the module's documentation.
#[derive(Clone, Debug)]
pub(crate) struct OurStream {
    /// What our descriptions are made from (address, port, `o=` session id and version).
    pub(super) local: Local,
    /// The codec agreed when the stream began: the only one answered after.
    pub(super) law: Law,
    /// Our description as last sent.
    pub(super) sdp: Vec<u8>,
    /// Our last description was an offer (in a 2xx to a re-INVITE without one): the ACK
    /// brings its answer.
    offered: bool,
    /// Whether our descriptions may have telephone-event (not on a leg whose other side
    /// cannot take keys as events).
    events: bool,
}

impl OurStream {
    /// A stream in `law`, described by `local`, whose last description of ours is `sdp`.
    pub(crate) fn new(local: Local, law: Law, sdp: Vec<u8>) -> OurStream {
        OurStream {
            local,
            law,
            sdp,
            offered: false,
            events: true,
        }
    }

    /// The same, with telephone-event in our descriptions only when `events`.
    pub(crate) fn with_events(mut self, events: bool) -> OurStream {
        self.events = events;
        self
    }

    /// The far end's re-INVITE `req` for session `id`: our SDP for its 2xx, the engine
    /// told what changed (on `out`). Without an offer in it: a fresh offer of ours, both
    /// ways. Err with the refusal (488 without the agreed codec, 400 unreadable, 415 not
    /// SDP, 491 while the answer to our own offer is awaited), the stream unchanged.
    pub(crate) fn reoffered(
        &mut self,
        out: &mut VecDeque<Output>,
        id: SessionId,
        req: &Request,
        rtp_timeout: Duration,
    ) -> Result<Vec<u8>, Refusal> {
        if self.offered {
            return Err(Refusal {
                why: "our offer awaits its answer (in the ACK)".into(),
                code: Some(491),
            });
        }
        let mut local = self.local.clone();
        local.version = local.version.saturating_add(1);
        local.laws = vec![self.law];
        if req.body.is_empty() {
            let mut offer = offer_answer::offer(&local);
            if !self.events {
                strip_telephone_event(&mut offer, local.telephone_event);
            }
            self.local.version = local.version;
            self.sdp = offer.to_bytes();
            self.offered = true;
            return Ok(self.sdp.clone());
        }
        let offer = sdp_offer(req)?;
        match offer_answer::answer(&offer, &local) {
            Ok((mut answer, stream)) => {
                if !self.events {
                    strip_telephone_event(&mut answer, local.telephone_event);
                }
                self.local.version = local.version;
                self.sdp = answer.to_bytes();
                self.offered = false;
                out.push_back(update(id, &stream, rtp_timeout));
                Ok(self.sdp.clone())
            }
            Err(e) => Err(Refusal {
                why: format!("the offer: {e}"),
                code: Some(488),
            }),
        }
    }

    /// The ACK of our 2xx to a re-INVITE: when that 2xx made an offer (the re-INVITE had
    /// none), the ACK's SDP answers it and the engine is told (on `out`). An ACK without an
    /// answer, or with one that agrees on nothing, leaves the stream as it was (logged).
    pub(crate) fn acked(
        &mut self,
        out: &mut VecDeque<Output>,
        id: SessionId,
        ack: &Request,
        rtp_timeout: Duration,
    ) {
        if !std::mem::take(&mut self.offered) {
            return;
        }
        let limits = sdp::Limits::default();
        let stream = Session::parse(&self.sdp, &limits)
            .map_err(|e| e.to_string())
            .and_then(|offer| {
                let answer = Session::parse(&ack.body, &limits).map_err(|e| e.to_string())?;
                offer_answer::answered(&offer, &answer, &self.local).map_err(|e| e.to_string())
            });
        match stream {
            Ok(stream) => out.push_back(update(id, &stream, rtp_timeout)),
            Err(why) => {
                tracing::info!(session = id.0, %why, "the ACK did not answer our offer: the stream is left as it was")
            }
        }
    }
}

/// `sdp` without telephone-event (its format `pt`, rtpmap and fmtp).
pub(crate) fn strip_telephone_event(sdp: &mut Session, pt: u8) {
    let te = pt.to_string();
    for m in sdp.media.iter_mut() {
        m.formats.retain(|f| *f != te);
        m.attributes.retain(|a| {
            let of_format = matches!(a.name.as_str(), "rtpmap" | "fmtp");
            let first = a.value.as_deref().and_then(|v| v.split_whitespace().next());
            !(of_format && first == Some(te.as_str()))
        });
    }
}

#[cfg(test)]
#[path = "our_stream_tests.rs"]
mod tests;
