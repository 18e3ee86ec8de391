//! Transports as the protocol sees them, with no sockets: which transport a hop uses and
//! every fact that follows from it, the listeners' addresses, and the events the socket
//! layer (the `switchboard-net` crate) hands to the core.

use crate::msg::SipMessage;
use crate::parse::ParseError;
use crate::peer::Peer;
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

/// The transport protocol of a SIP hop (RFC 3261 §18). Every per-transport fact lives in
/// its methods, so that a new transport is one more variant and one more arm in each.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    /// Every transport, in the order listeners are reported.
    pub const ALL: [Transport; 2] = [Transport::Udp, Transport::Tcp];

    /// Reliable transports carry no retransmissions (RFC 3261 §17.1.1.2, §17.1.2.2).
    pub fn is_reliable(self) -> bool {
        match self {
            Transport::Udp => false,
            Transport::Tcp => true,
        }
    }

    /// Stream transports frame messages by Content-Length, which every message must carry
    /// (§18.3), and answer over the connection a request came on (§18.2.2).
    pub fn is_stream(self) -> bool {
        match self {
            Transport::Udp => false,
            Transport::Tcp => true,
        }
    }

    /// The token used in a Via header (`SIP/2.0/UDP`).
    pub fn via_token(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
        }
    }

    /// The value of a URI's `transport` parameter, and the name in a listen address.
    pub fn param(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }

    /// What a SIP URI reached over this transport carries to say so: nothing for UDP, the
    /// default of a `sip:` URI (RFC 3261 §19.1.2), `;transport=tcp` otherwise.
    pub fn uri_suffix(self) -> &'static str {
        match self {
            Transport::Udp => "",
            Transport::Tcp => ";transport=tcp",
        }
    }

    /// The port of a `sip:` URI that names none (RFC 3261 §19.1.2).
    pub fn default_port(self) -> u16 {
        match self {
            Transport::Udp | Transport::Tcp => 5060,
        }
    }

    /// The service field of a NAPTR record that offers SIP over this transport for `sip:`
    /// URIs (RFC 3263 §4.1, the transport determination application of its §8).
    pub fn naptr_service(self) -> &'static str {
        match self {
            Transport::Udp => "SIP+D2U",
            Transport::Tcp => "SIP+D2T",
        }
    }

    /// The protocol label of the SRV name under which a domain offers SIP over this
    /// transport: `_udp` in `_sip._udp.example.com` (RFC 3263 §4.2, RFC 2782).
    pub fn srv_label(self) -> &'static str {
        match self {
            Transport::Udp => "_udp",
            Transport::Tcp => "_tcp",
        }
    }

    /// The transport a URI's `transport` parameter names (case-insensitive); `None` for
    /// one this server does not speak.
    pub fn from_param(value: &str) -> Option<Transport> {
        Transport::ALL
            .into_iter()
            .find(|t| t.param().eq_ignore_ascii_case(value))
    }

    /// The transport of a Via's sent-protocol (`SIP/2.0/TCP`); `None` for one this server
    /// does not speak.
    pub fn from_via_protocol(protocol: &str) -> Option<Transport> {
        let token = protocol.rsplit('/').next()?;
        Transport::ALL
            .into_iter()
            .find(|t| t.via_token().eq_ignore_ascii_case(token))
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.via_token())
    }
}

/// A configured listening address: `udp:127.0.0.1:5060`, `tcp:[::1]:5060`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenAddr {
    pub transport: Transport,
    pub addr: SocketAddr,
}

impl FromStr for ListenAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (proto, addr) = s.split_once(':').ok_or_else(|| {
            format!("{s:?} is not of the form udp:ADDRESS:PORT or tcp:ADDRESS:PORT")
        })?;
        let transport = Transport::from_param(proto)
            .ok_or_else(|| format!("unknown transport {proto:?} (udp or tcp)"))?;
        let addr = addr
            .parse::<SocketAddr>()
            .map_err(|_| format!("{addr:?} is not an address and port (IPv6 as [::1]:5060)"))?;
        Ok(ListenAddr { transport, addr })
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.transport.param(), self.addr)
    }
}

/// What the socket layer hands to the core.
// Nearly every item is a Message: boxing it would cost an allocation per message.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Inbound {
    /// A message that passed the checks of [`crate::parse`]. `local` is the listener's address.
    Message {
        msg: SipMessage,
        peer: Peer,
        local: SocketAddr,
    },
    /// A message that failed them, with the means to answer it.
    Invalid { error: ParseError, peer: Peer },
    /// Messages to `peer` could not be sent and will not be: a connection could not be
    /// opened, the connection `peer.conn` names is gone, or its queue is stuck. What was
    /// sent to it is lost, so transactions waiting on it end at once (RFC 3261 §17.1.4,
    /// §17.2.4) instead of after their timers.
    Unreachable { peer: Peer, why: Unreachable },
    /// The stream connection `peer.conn` closed (either side, or idle). Messages already
    /// received from it stand; flows registered over it are gone (RFC 5626 §5.2).
    Closed { peer: Peer },
}

/// Why a peer could not be reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unreachable {
    /// Opening a connection failed (refused, timed out, no route).
    ConnectFailed,
    /// The connection a message was meant for is closed, and a new one must not be
    /// opened for it (a registered flow, RFC 5626 §5.3).
    FlowGone,
    /// The socket refused the message (a full queue, no socket of the address family).
    SendFailed,
}

impl fmt::Display for Unreachable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Unreachable::ConnectFailed => "connection could not be opened",
            Unreachable::FlowGone => "connection closed",
            Unreachable::SendFailed => "send failed",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses() {
        let l: ListenAddr = "udp:127.0.0.1:5060".parse().unwrap();
        assert_eq!(l.transport, Transport::Udp);
        let l: ListenAddr = "TCP:[::1]:5061".parse().unwrap();
        assert_eq!(l.transport, Transport::Tcp);
        assert_eq!(l.addr, "[::1]:5061".parse().unwrap());
        assert_eq!(l.to_string(), "tcp:[::1]:5061");
        assert!("sctp:127.0.0.1:1".parse::<ListenAddr>().is_err());
        assert!("udp:localhost".parse::<ListenAddr>().is_err());
    }

    #[test]
    fn facts_agree_with_each_other() {
        for t in Transport::ALL {
            assert_eq!(Transport::from_param(t.param()), Some(t));
            assert_eq!(Transport::from_param(&t.param().to_uppercase()), Some(t));
            assert_eq!(
                Transport::from_via_protocol(&format!("SIP/2.0/{}", t.via_token())),
                Some(t)
            );
            assert_eq!(
                Transport::from_via_protocol(&format!("sip/2.0/{}", t.param())),
                Some(t)
            );
            // A stream transport is reliable; a URI says which transport unless it is UDP.
            assert!(!t.is_stream() || t.is_reliable());
            assert_eq!(t.uri_suffix().is_empty(), t == Transport::Udp);
            assert_eq!(t.default_port(), 5060);
            // The NAPTR service and the SRV label name the same transport as the parameter.
            assert_eq!(
                t.naptr_service().strip_prefix("SIP+D2").unwrap(),
                &t.param()[..1].to_uppercase()
            );
            assert_eq!(t.srv_label(), format!("_{}", t.param()));
        }
        assert_eq!(Transport::from_param("sctp"), None);
        assert_eq!(Transport::from_via_protocol("SIP/2.0/TLS"), None);
    }
}
