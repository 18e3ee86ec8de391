//! Where a message came from or goes to.

use crate::transport::Transport;
use std::fmt;
use std::net::SocketAddr;

/// Identifies one accepted or opened stream connection.
pub type ConnId = u64;

/// A remote SIP endpoint as the transport layer sees it, and the local address of the
/// flow to it.
///
/// For stream transports `conn` names the connection a request arrived on, so that the
/// response goes back over the same connection (RFC 3261 §18.2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Peer {
    pub transport: Transport,
    pub addr: SocketAddr,
    pub conn: Option<ConnId>,
    /// This side's address of the flow: where a message from the peer arrived (the
    /// address it was sent to, also on a listener bound to every interface), and where a
    /// message to it leaves from — a reply leaves from the address its request came to,
    /// which a NAT or firewall in front of the peer expects. None: the transport chooses
    /// (a listener of the peer's address family). Its port names the listener; an
    /// unspecified address (`0.0.0.0:5060`) names a listener bound to every interface and
    /// lets the system choose the source address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<SocketAddr>,
}

impl Peer {
    pub fn udp(addr: SocketAddr) -> Self {
        Peer {
            transport: Transport::Udp,
            addr,
            conn: None,
            local: None,
        }
    }

    pub fn tcp(addr: SocketAddr, conn: ConnId) -> Self {
        Peer {
            transport: Transport::Tcp,
            addr,
            conn: Some(conn),
            local: None,
        }
    }

    /// The same peer, reached from `local` (see [`Peer::local`]).
    pub fn with_local(self, local: SocketAddr) -> Self {
        Peer {
            local: Some(local),
            ..self
        }
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.transport, self.addr)
    }
}
