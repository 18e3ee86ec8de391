//! Switchboard's own voice, sans-I/O: RTP packets, G.711, telephone-events (RFC 4733), SDP
//! offer/answer (RFC 3264), prompts and the phrases built from them, and a player that paces
//! packets. No sockets and no clock of its own: the daemon hands in the time and received
//! datagrams and takes out the datagrams to send, as the SIP core does.

pub mod dtmf;
pub mod g711;
pub mod offer_answer;
pub mod player;
pub mod rtcp;
pub mod rtp;
pub mod sdp;
