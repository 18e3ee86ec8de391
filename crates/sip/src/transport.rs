//! Transports as the protocol sees them, with no sockets: which transport a hop uses and
//! every fact that follows from it, the listeners' addresses, and the events the socket
//! layer (the `switchboard-net` crate) hands to the core.

use crate::msg::SipMessage;
use crate::parse::ParseError;
use crate::peer::Peer;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
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

/// The host and port a listener names itself by in Via, Record-Route and Contact
/// (`advertise` in the config) when its own address is not what peers reach: a public
/// address in front of a NAT, a name, or one address of a listener bound to every
/// interface. `203.0.113.5:5060`, `sip.example.com`, `[2001:db8::5]:5060`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Advertise {
    /// An IPv4 address, an IPv6 address in brackets (written as Rust writes it:
    /// compressed, lower-case) or a host name (lower-case).
    pub host: String,
    /// None: the listener's own port.
    pub port: Option<u16>,
}

impl Advertise {
    /// The IP address the host is, when it is one.
    pub fn ip(&self) -> Option<IpAddr> {
        let h = self.host.trim_start_matches('[').trim_end_matches(']');
        h.parse().ok()
    }
}

impl FromStr for Advertise {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (host, port) = if let Some(v6) = s.strip_prefix('[') {
            let (ip, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("{s:?}: an IPv6 address is closed by ]"))?;
            let ip = ip
                .parse::<Ipv6Addr>()
                .map_err(|_| format!("{s:?}: {ip:?} is not an IPv6 address"))?;
            if ip.is_unspecified() {
                return Err(format!("{s:?}: :: names no address peers can reach"));
            }
            (format!("[{ip}]"), after)
        } else {
            let (host, after) = match s.find(':') {
                Some(i) => (&s[..i], &s[i..]),
                None => (s, ""),
            };
            if after[1.min(after.len())..].contains(':') {
                return Err(if s.parse::<Ipv6Addr>().is_ok() || s.contains("::") {
                    format!("{s:?}: an IPv6 address goes in brackets ([2001:db8::5]:5060)")
                } else {
                    format!("{s:?} is not of the form HOST or HOST:PORT")
                });
            }
            if let Ok(ip) = host.parse::<std::net::Ipv4Addr>() {
                if ip.is_unspecified() {
                    return Err(format!("{s:?}: 0.0.0.0 names no address peers can reach"));
                }
            } else if !is_host_name(host) {
                return Err(format!(
                    "{s:?}: {host:?} is neither an IP address nor a host name"
                ));
            }
            (host.to_ascii_lowercase(), after)
        };
        let port = match port {
            "" => None,
            p => match p.strip_prefix(':').and_then(|p| p.parse::<u16>().ok()) {
                Some(p) if p > 0 => Some(p),
                _ => return Err(format!("{s:?}: {p:?} is not a port (:1 to :65535)")),
            },
        };
        Ok(Advertise { host, port })
    }
}

impl fmt::Display for Advertise {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(p) => write!(f, "{}:{p}", self.host),
            None => f.write_str(&self.host),
        }
    }
}

/// A host name as a SIP URI may carry one (RFC 3261 §25.1 `hostname`): dot-separated
/// labels of letters, digits and hyphens, no label starting or ending with a hyphen, the
/// last one not all digits.
fn is_host_name(h: &str) -> bool {
    let labels: Vec<&str> = h.split('.').collect();
    h.len() <= 253
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
        && labels
            .last()
            .is_some_and(|l| !l.bytes().all(|b| b.is_ascii_digit()))
}

/// A listener as the core sees it: its transport, the address it is bound to, and the
/// name it gives itself in what it sends when that is not its address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listener {
    pub transport: Transport,
    /// The bound address, its port resolved (when port 0 was asked); `0.0.0.0` or `::`
    /// when bound to every interface.
    pub addr: SocketAddr,
    pub advertise: Option<Advertise>,
}

impl Listener {
    /// Bound to every interface of its address family (`0.0.0.0`, `::`).
    pub fn is_wildcard(&self) -> bool {
        self.addr.ip().is_unspecified()
    }

    /// The host and port it advertises (the port: the advertised one, else its own).
    pub fn advertised(&self) -> Option<(&str, u16)> {
        self.advertise
            .as_ref()
            .map(|a| (a.host.as_str(), a.port.unwrap_or(self.addr.port())))
    }

    /// Whether a message to or from `ip` can use it: the same address family (an IPv6
    /// listener is bound with `IPV6_V6ONLY`).
    pub fn serves(&self, transport: Transport, ip: IpAddr) -> bool {
        self.transport == transport && self.addr.is_ipv4() == ip.is_ipv4()
    }

    /// Where it listens, without its name.
    pub fn listen_addr(&self) -> ListenAddr {
        ListenAddr {
            transport: self.transport,
            addr: self.addr,
        }
    }
}

impl fmt::Display for Listener {
    /// `udp:0.0.0.0:5060`, or `udp:0.0.0.0:5060 as 203.0.113.5:5060` when it advertises a
    /// name.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.listen_addr())?;
        match self.advertised() {
            Some((h, p)) => write!(f, " as {h}:{p}"),
            None => Ok(()),
        }
    }
}

impl From<ListenAddr> for Listener {
    fn from(l: ListenAddr) -> Self {
        Listener {
            transport: l.transport,
            addr: l.addr,
            advertise: None,
        }
    }
}

impl FromStr for Listener {
    type Err = String;

    /// A listen address without an advertised name (`udp:127.0.0.1:5060`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse::<ListenAddr>().map(Listener::from)
    }
}

/// What the machine's network says of its own addresses, which a listener bound to every
/// interface needs to name itself by its real address: which address the system sends
/// from toward a destination (its routing table), and whether an address is one of its
/// own. The `switchboard-net` crate answers from the system (and caches the answers);
/// tests and replays answer from a list ([`FixedInterfaces`]).
pub trait Interfaces: Send {
    /// The source address the system chooses for a datagram to `to`; None when it has no
    /// route there.
    fn source_toward(&self, to: IpAddr) -> Option<IpAddr>;
    /// Whether `ip` is an address of this machine.
    fn is_own(&self, ip: IpAddr) -> bool;
}

/// [`Interfaces`] of a fixed list of addresses: the source toward a destination is the
/// first address of the list of its family that is loopback when the destination is (and
/// not when it is not), else the first of its family.
#[derive(Clone, Debug, Default)]
pub struct FixedInterfaces(pub Vec<IpAddr>);

impl Interfaces for FixedInterfaces {
    fn source_toward(&self, to: IpAddr) -> Option<IpAddr> {
        let family = |a: &&IpAddr| a.is_ipv4() == to.is_ipv4();
        self.0
            .iter()
            .filter(family)
            .find(|a| a.is_loopback() == to.is_loopback())
            .or_else(|| self.0.iter().find(family))
            .copied()
    }

    fn is_own(&self, ip: IpAddr) -> bool {
        self.0.contains(&ip)
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
    fn advertised_names() {
        let a: Advertise = "203.0.113.5:5060".parse().unwrap();
        assert_eq!((a.host.as_str(), a.port), ("203.0.113.5", Some(5060)));
        assert_eq!(a.ip(), Some("203.0.113.5".parse().unwrap()));
        let a: Advertise = " SIP.Example.COM ".parse().unwrap();
        assert_eq!((a.host.as_str(), a.port), ("sip.example.com", None));
        assert_eq!(a.ip(), None);
        assert_eq!(a.to_string(), "sip.example.com");
        let a: Advertise = "[2001:DB8:0::5]:5070".parse().unwrap();
        assert_eq!((a.host.as_str(), a.port), ("[2001:db8::5]", Some(5070)));
        assert_eq!(a.ip(), Some("2001:db8::5".parse().unwrap()));
        assert_eq!(a.to_string(), "[2001:db8::5]:5070");
        let a: Advertise = "[::1]".parse().unwrap();
        assert_eq!((a.host.as_str(), a.port), ("[::1]", None));
        for bad in [
            "",
            "2001:db8::5",
            "2001:db8::5:5060",
            "[2001:db8::5",
            "[nope]:5060",
            "0.0.0.0:5060",
            "[::]:5060",
            "host:0",
            "host:70000",
            "host:",
            "host:x",
            "-host.example",
            "host..example",
            "ho_st.example",
            "1.2.3",
            "udp:1.2.3.4:5060",
        ] {
            assert!(bad.parse::<Advertise>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn a_listener_advertises_its_own_port_unless_told_otherwise() {
        let mut l: Listener = "udp:0.0.0.0:5062".parse().unwrap();
        assert!(l.is_wildcard());
        assert_eq!(l.advertised(), None);
        l.advertise = Some("pbx.example".parse().unwrap());
        assert_eq!(l.advertised(), Some(("pbx.example", 5062)));
        l.advertise = Some("203.0.113.5:5060".parse().unwrap());
        assert_eq!(l.advertised(), Some(("203.0.113.5", 5060)));
        assert!(l.serves(Transport::Udp, "10.0.0.1".parse().unwrap()));
        assert!(!l.serves(Transport::Udp, "::1".parse().unwrap()));
        assert!(!l.serves(Transport::Tcp, "10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn fixed_interfaces_pick_by_family_and_scope() {
        let i = FixedInterfaces(vec![
            "127.0.0.1".parse().unwrap(),
            "192.0.2.7".parse().unwrap(),
            "::1".parse().unwrap(),
        ]);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(i.source_toward(ip("127.0.0.9")), Some(ip("127.0.0.1")));
        assert_eq!(i.source_toward(ip("198.51.100.1")), Some(ip("192.0.2.7")));
        assert_eq!(i.source_toward(ip("2001:db8::1")), Some(ip("::1")));
        assert!(i.is_own(ip("192.0.2.7")));
        assert!(!i.is_own(ip("192.0.2.8")));
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
