//! What passes between the daemon's core and its media engine.
//!
//! The core decides (which call gets media, what it hears, when it ends); the engine does
//! (binds the session's port pair, paces the packets, reads what comes back). They share no
//! state: the core hands [`Command`]s out as an output, and the engine hands [`Event`]s back
//! as an input, as with the sockets and the store. The engine never blocks the core, and a
//! slow or flooded media port never delays signalling.
//!
//! A session's life: [`Command::Open`] → [`Event::Opened`] (its port, for the SDP answer)
//! or [`Event::Failed`]; then any number of [`Command::Play`] (each answered by
//! [`Event::Played`] once its last packet is sent, unless stopped or closed first), with
//! [`Event::Digit`]s as the far end presses keys and [`Event::Timeout`] when it has sent
//! nothing for the open's `rtp_timeout`; [`Command::Close`] → [`Event::Closed`] with the
//! session's counters. A session may record what the far end says: [`Command::Record`] →
//! [`Event::Recorded`] once the recording ends by itself (its longest, or quiet),
//! on [`Command::StopRecording`], or when the session closes (before [`Event::Closed`]: a
//! caller who hangs up has left a whole message).
//!
//! Two open sessions may be bridged ([`Command::Bridge`]): the two legs of a call whose
//! media the daemon anchors. While they are, every packet one session accepts from its far
//! end (after its receiver's checks of source, SSRC and payload type) is sent at once to the
//! other's far end, re-packetised as the other session's own stream — its SSRC, its
//! sequence numbers and timestamps continuing, its payload types, its law (µ-law ↔ A-law
//! transcoded) — and key presses are relayed as telephone-events as well as reported as
//! [`Event::Digit`] on the session they came in on (see [`crate::relay`]). Nothing is
//! buffered: one packet out per packet in, in the order received. Each session keeps its
//! own [`Event::Timeout`], its recording ([`Command::Record`] records what its far end
//! says) and its RTCP sender reports (the relayed packets count as sent). A session whose
//! far end is on hold ([`Command::Update`] with `send: false`) is sent nothing; what its
//! far end still sends is relayed to the other. A bridge stops what either session was
//! playing (as [`Command::Stop`]: no [`Event::Played`] for it), and while bridged a
//! session plays nothing of its own: a [`Command::Play`] for it is refused (logged, none of
//! it sent) and answered by [`Event::Played`] at once, so that a core waiting for it is not
//! left waiting. The bridge ends with [`Command::Unbridge`] of either session or the close
//! of either (the other stays open, silent); bridging a session again ends its earlier
//! bridge first. Bridging and unbridging are not answered.
//!
//! After [`Event::Closed`] (or
//! [`Event::Failed`]) the id is forgotten on both sides; commands for an unknown id are
//! ignored.

use crate::g711::Law;
use crate::recorder::{Recording, Silence};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// A session's id, chosen by the core (unique for the daemon's life).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u64);

/// Audio to play: G.711 codes in the session's law, sent as they are.
pub type Clip = Arc<[u8]>;

/// A session to open: the stream agreed in the offer/answer, and where it may come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Open {
    pub id: SessionId,
    /// Where the far end receives our RTP (the offer's `c=` and `m=` port); `None` when it
    /// gave no address to send to (`c=0.0.0.0`, hold): nothing is sent until a re-offer.
    pub remote: Option<SocketAddr>,
    /// The signalling's source address: the only one a session latches onto (RTP-bleed
    /// safety: see [`crate::rtp::Receiver`]).
    pub signalling: IpAddr,
    /// The codec and its payload type.
    pub law: Law,
    pub payload_type: u8,
    /// The telephone-event payload type, when both sides have one.
    pub telephone_event: Option<u8>,
    /// The packet time, in ms.
    pub ptime_ms: u32,
    /// Whether we send (the agreed direction allows it).
    pub send: bool,
    /// Nothing received for this long: [`Event::Timeout`] (not before the first packet
    /// was due: counted from the open).
    pub rtp_timeout: Duration,
}

/// From the core to the engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Bind a port pair (even RTP port, RTCP on the next) from the configured range and
    /// start receiving; answered by [`Event::Opened`] or [`Event::Failed`].
    Open(Open),
    /// Queue these clips after what is playing; [`Event::Played`] when the last is sent.
    Play { id: SessionId, clips: Vec<Clip> },
    /// Stop playing at once and drop what is queued (no [`Event::Played`] for it).
    Stop { id: SessionId },
    /// The far end described its stream again (a re-INVITE): where it now receives our RTP
    /// (as [`Open::remote`]) and whether we send (the agreed direction: hold, resume). The
    /// source is learned again, as at the open (see [`crate::rtp::Receiver::renegotiated`]);
    /// the codec stays the one agreed at the open. `rtp_timeout` replaces the open's, and
    /// the silence that ends in [`Event::Timeout`] counts from the update (a far end that
    /// said it sends nothing, on hold, is given longer than one that talks).
    Update {
        id: SessionId,
        remote: Option<SocketAddr>,
        send: bool,
        rtp_timeout: Duration,
    },
    /// Start recording what the far end sends (replacing a recording in progress, which
    /// is dropped): at most `max` long, ended by `silence` when given.
    Record {
        id: SessionId,
        max: Duration,
        silence: Option<Silence>,
    },
    /// End the recording in progress ([`Event::Recorded`]); nothing when there is none.
    StopRecording { id: SessionId },
    /// Relay the audio and key presses of each session's far end to the other's (see the
    /// module's comment), until [`Command::Unbridge`] or the close of either. Both must be
    /// open and differ, else it is ignored (logged).
    Bridge { a: SessionId, b: SessionId },
    /// End the bridge session `id` is in, for both its sessions (they stay open, silent,
    /// and may play again); nothing when it is in none.
    Unbridge { id: SessionId },
    /// End the session: its sockets are closed, its port pair freed.
    Close { id: SessionId },
}

/// What a session counted, given when it closes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub packets_sent: u64,
    pub packets_received: u64,
    /// Received datagrams dropped (malformed, wrong source, SSRC or payload type…).
    pub packets_dropped: u64,
}

/// From the engine to the core.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The session listens on `port` of the media address (for the SDP answer's `m=`).
    Opened { id: SessionId, port: u16 },
    /// The session could not be opened (no free port pair, too many sessions): why.
    Failed { id: SessionId, why: String },
    /// Everything queued has been sent.
    Played { id: SessionId },
    /// A key pressed at the far end (RFC 4733), once per press: `0`–`9`, `*`, `#`, `A`–`D`.
    Digit { id: SessionId, digit: char },
    /// Nothing received for the open's `rtp_timeout`.
    Timeout { id: SessionId },
    /// A recording ended (see [`Command::Record`]): the audio and why it ended.
    Recorded { id: SessionId, recording: Recording },
    /// The session is closed (after [`Command::Close`]).
    Closed { id: SessionId, counters: Counters },
}
