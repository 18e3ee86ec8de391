//! Switchboard's own voice, sans-I/O: RTP packets, G.711, telephone-events (RFC 4733), SDP
//! offer/answer (RFC 3264), prompts and the phrases built from them, and a player that paces
//! packets. No sockets and no clock of its own: the daemon hands in the time and received
//! datagrams and takes out the datagrams to send, as the SIP core does.
//!
//! - [`g711`]: µ-law and A-law, sample by sample and buffer by buffer.
//! - [`rtp`]: packets (read and built with `rtp-rs`), sequence and timestamp arithmetic, a
//!   [`rtp::Sender`]'s numbering, and a [`rtp::Receiver`] per stream that accepts one source
//!   (latched only in a short window, only from the signalling's address: RTP-bleed safe),
//!   one SSRC and the negotiated payload types, and counts what it drops by reason.
//! - [`rtcp`]: a sender report with our CNAME; received RTCP read enough to count it.
//! - [`dtmf`]: RFC 4733 telephone-events, the packets of a key press and a receiver that
//!   reports each key once; SIP INFO bodies (`application/dtmf-relay`, `application/dtmf`).
//! - [`sdp`]: audio session descriptions, read within limits and written.
//! - [`offer_answer`]: RFC 3264 for G.711 — our answer to an offer (or why not, with the
//!   488's Warning), our own offer, and what its answer agreed.
//! - [`player`]: buffers of G.711 out as RTP packets paced at the packet time from a start
//!   instant, never in bursts.
//! - [`relay`]: a bridge's relay: packets of one session's far end re-packetised as the
//!   other session's stream (its SSRC, numbering, clock, payload types and law).
//! - [`recorder`]: what the far end says, placed by RTP timestamp, bounded in length,
//!   ended by quiet (a voicemail message, a greeting, a recorded name).
//! - [`prompts`]: a language's recorded prompts (8 kHz 16-bit WAV), loaded with an
//!   operator's own recordings in place of the generated ones.
//! - [`say`]: numbers, digits, times and dates as sequences of prompt names, per language.
//! - [`session`]: the commands the daemon's core gives its media engine and the events it
//!   gets back.

pub mod dtmf;
pub mod g711;
pub mod offer_answer;
pub mod player;
pub mod prompts;
pub mod recorder;
pub mod relay;
pub mod rtcp;
pub mod rtp;
pub mod say;
pub mod sdp;
pub mod session;
pub mod wav;
