//! Where a message came from or goes to.

use crate::transport::Transport;
use std::fmt;
use std::net::SocketAddr;

/// Identifies one accepted or opened stream connection.
pub type ConnId = u64;

/// A remote SIP endpoint as the transport layer sees it.
///
/// For stream transports `conn` names the connection a request arrived on, so that the
/// response goes back over the same connection (RFC 3261 §18.2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Peer {
    pub transport: Transport,
    pub addr: SocketAddr,
    pub conn: Option<ConnId>,
}

impl Peer {
    pub fn udp(addr: SocketAddr) -> Self {
        Peer {
            transport: Transport::Udp,
            addr,
            conn: None,
        }
    }

    pub fn tcp(addr: SocketAddr, conn: ConnId) -> Self {
        Peer {
            transport: Transport::Tcp,
            addr,
            conn: Some(conn),
        }
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.transport, self.addr)
    }
}
