//! What the system says of its own addresses ([`Interfaces`]), for listeners bound to
//! every interface: asked of the kernel (a UDP socket connected toward a destination
//! learns the source address the routes choose, without sending anything; an address
//! the machine can bind to is its own) and kept a while, so that a busy destination costs
//! a table lookup, not system calls.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::Mutex;
use std::time::{Duration, Instant};
pub use switchboard_sip::transport::Interfaces;

/// How long an answer is kept: addresses and routes change rarely (an interface up or
/// down, a DHCP lease), and a change is seen within this time.
const KEEP: Duration = Duration::from_secs(30);
/// Most answers kept; when full, the table starts again (a flood of new addresses costs
/// system calls, never memory).
const MAX_KEPT: usize = 4096;

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Question {
    SourceToward(IpAddr),
    IsOwn(IpAddr),
}

#[derive(Clone, Copy)]
enum Answer {
    Source(Option<IpAddr>),
    Own(bool),
}

/// [`Interfaces`] answered by the system, each answer kept for a while.
#[derive(Default)]
pub struct SystemInterfaces {
    kept: Mutex<HashMap<Question, (Answer, Instant)>>,
}

impl SystemInterfaces {
    pub fn new() -> Self {
        SystemInterfaces::default()
    }

    fn answer(&self, q: Question) -> Answer {
        let now = Instant::now();
        if let Ok(kept) = self.kept.lock() {
            if let Some((a, at)) = kept.get(&q) {
                if now.duration_since(*at) < KEEP {
                    return *a;
                }
            }
        }
        let a = match q {
            Question::SourceToward(to) => Answer::Source(ask_source_toward(to)),
            Question::IsOwn(ip) => Answer::Own(ask_is_own(ip)),
        };
        if let Ok(mut kept) = self.kept.lock() {
            if kept.len() >= MAX_KEPT {
                kept.clear();
            }
            kept.insert(q, (a, now));
        }
        a
    }
}

impl Interfaces for SystemInterfaces {
    fn source_toward(&self, to: IpAddr) -> Option<IpAddr> {
        match self.answer(Question::SourceToward(to)) {
            Answer::Source(s) => s,
            Answer::Own(_) => None,
        }
    }

    fn is_own(&self, ip: IpAddr) -> bool {
        matches!(self.answer(Question::IsOwn(ip)), Answer::Own(true))
    }
}

fn unspecified(of: IpAddr) -> IpAddr {
    match of {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    }
}

/// The source address the kernel's routes choose toward `to`: connecting a UDP socket
/// sends nothing, it only looks the route up.
pub fn ask_source_toward(to: IpAddr) -> Option<IpAddr> {
    if to.is_unspecified() {
        return None;
    }
    let s = UdpSocket::bind(SocketAddr::new(unspecified(to), 0)).ok()?;
    s.connect(SocketAddr::new(to, 9)).ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then_some(ip)
}

/// Whether `ip` is an address of this machine: one a socket can be bound to (unspecified
/// and multicast addresses, which can be bound to without being anyone's, are not).
pub fn ask_is_own(ip: IpAddr) -> bool {
    !ip.is_unspecified() && !ip.is_multicast() && UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_own_and_chosen_toward_loopback() {
        let i = SystemInterfaces::new();
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(i.is_own(lo));
        // All of 127.0.0.0/8 is this machine's on Linux.
        assert!(i.is_own("127.0.0.2".parse().unwrap()));
        assert!(!i.is_own("0.0.0.0".parse().unwrap()));
        assert!(!i.is_own("224.0.0.1".parse().unwrap()));
        // A documentation address no machine has.
        assert!(!i.is_own("192.0.2.254".parse().unwrap()));
        assert_eq!(i.source_toward(lo), Some(lo));
        assert_eq!(i.source_toward("0.0.0.0".parse().unwrap()), None);
        // Asked again: the kept answer.
        assert_eq!(i.source_toward(lo), Some(lo));
        assert_eq!(i.kept.lock().unwrap().len(), 7);
    }
}
