//! What the kernel says about each datagram (Linux control messages), and sending from a
//! chosen address.
//!
//! - On a UDP socket bound to every interface (`0.0.0.0`, `::`): each datagram read with the
//!   address it was sent to, each sent from a chosen source address (`IP_PKTINFO`,
//!   `IPV6_RECVPKTINFO` / `IPV6_PKTINFO`). Without it such a socket cannot tell which of the
//!   machine's addresses a request came to, and the system would choose the source address
//!   of the reply by its routes alone: on a machine with several addresses, not always the
//!   one the peer sent to, which a NAT or firewall in front of the peer drops.
//! - On every UDP socket: when each datagram reached the machine (`SO_TIMESTAMPNS`). The
//!   time a datagram waits in its socket's buffer is part of how far behind the daemon is:
//!   on a busy single thread the queue builds there, not in the daemon's own channel, so
//!   load shedding (see `TransportConfig::shed_after`) measures from this stamp.
//!
//! The only code of Switchboard that calls the C library directly: `recvmsg`/`sendmsg`
//! with control messages, which neither the standard library nor tokio offer.

use std::io;
use std::mem;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Room for the control messages of one datagram — an `in6_pktinfo` (the larger of the
/// two) and a `timespec` — in words so that it is aligned as a `cmsghdr` must be.
type Control = [u64; 16];

/// A datagram read by [`recv`].
#[derive(Clone, Copy, Debug)]
pub struct Received {
    pub len: usize,
    pub from: SocketAddr,
    /// The address it was sent to (with [`enable`]; None if the kernel did not say).
    pub to: Option<IpAddr>,
    /// When it reached the machine (with [`enable_timestamps`]; None if the kernel did not
    /// say).
    pub arrived: Option<SystemTime>,
    /// How many datagrams the socket has dropped so far because its buffer was full (with
    /// [`enable_timestamps`]; None if the kernel did not say, which it does only once it
    /// has dropped one).
    pub dropped: Option<u32>,
}

/// Asks the kernel to stamp every datagram `sock` receives with when it arrived, and with
/// how many it has dropped so far for want of room (`SO_RXQ_OVFL`).
pub fn enable_timestamps(sock: &impl AsRawFd) -> io::Result<()> {
    set_int(sock, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS)?;
    set_int(sock, libc::SOL_SOCKET, libc::SO_RXQ_OVFL)
}

fn set_int(sock: &impl AsRawFd, level: libc::c_int, name: libc::c_int) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: a valid descriptor, and a pointer to an int that outlives the call with its
    // size, as setsockopt(2) reads it.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (&on as *const libc::c_int).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Asks the kernel to tell, with every datagram, the address it was sent to.
pub fn enable(sock: &impl AsRawFd, ipv6: bool) -> io::Result<()> {
    let (level, name) = if ipv6 {
        (libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO)
    } else {
        (libc::IPPROTO_IP, libc::IP_PKTINFO)
    };
    set_int(sock, level, name)
}

/// Reads one datagram without waiting (`WouldBlock` when there is none), with what the
/// kernel says of it.
pub fn recv(sock: &impl AsRawFd, buf: &mut [u8]) -> io::Result<Received> {
    let fd: RawFd = sock.as_raw_fd();
    let mut control: Control = [0; 16];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: recvmsg(2) writes at most msg_namelen bytes of the source address into the
    // storage, at most iov_len bytes into `buf` and at most msg_controllen bytes into
    // `control`, all of which live until the call returns; the control messages are read
    // with the CMSG_* macros, within what the kernel reported filled.
    unsafe {
        let (n, from) = socket2::SockAddr::try_init(|storage, len| {
            let mut msg: libc::msghdr = mem::zeroed();
            msg.msg_name = storage.cast();
            msg.msg_namelen = *len;
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = mem::size_of::<Control>() as _;
            let n = libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT);
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            *len = msg.msg_namelen;
            Ok((n as usize, msg))
        })?;
        let (n, msg) = n;
        let from = from
            .as_socket()
            .ok_or_else(|| io::Error::other("a datagram from a non-IP address"))?;
        let (to, arrived, dropped) = said_of(&msg);
        Ok(Received {
            len: n,
            from,
            to,
            arrived,
            dropped,
        })
    }
}

/// What the control messages of a datagram read with `msg` say: the address it was sent
/// to, when it arrived, and the socket's drop count.
///
/// # Safety
///
/// `msg` must be as recvmsg(2) or recvmmsg(2) left it: its control buffer still alive,
/// `msg_controllen` what the kernel filled.
unsafe fn said_of(msg: &libc::msghdr) -> (Option<IpAddr>, Option<SystemTime>, Option<u32>) {
    let (mut to, mut arrived, mut dropped) = (None, None, None);
    // SAFETY: the control messages are read with the CMSG_* macros, within what the kernel
    // reported filled (the caller's promise), each by an unaligned read of its own type.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(msg);
        while !cmsg.is_null() {
            let data = libc::CMSG_DATA(cmsg);
            match ((*cmsg).cmsg_level, (*cmsg).cmsg_type) {
                (libc::IPPROTO_IP, libc::IP_PKTINFO) => {
                    let info: libc::in_pktinfo = std::ptr::read_unaligned(data.cast());
                    to = Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                        info.ipi_addr.s_addr,
                    ))));
                }
                (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO) => {
                    let info: libc::in6_pktinfo = std::ptr::read_unaligned(data.cast());
                    to = Some(IpAddr::V6(Ipv6Addr::from(info.ipi6_addr.s6_addr)));
                }
                (libc::SOL_SOCKET, libc::SO_RXQ_OVFL) => {
                    dropped = Some(std::ptr::read_unaligned(data.cast::<u32>()));
                }
                (libc::SOL_SOCKET, libc::SCM_TIMESTAMPNS) => {
                    let ts: libc::timespec = std::ptr::read_unaligned(data.cast());
                    arrived = u64::try_from(ts.tv_sec)
                        .ok()
                        .zip(u32::try_from(ts.tv_nsec).ok())
                        .map(|(s, ns)| UNIX_EPOCH + Duration::new(s, ns));
                }
                _ => {}
            }
            cmsg = libc::CMSG_NXTHDR(msg, cmsg);
        }
    }
    (to, arrived, dropped)
}

/// Room to read up to [`Batch::SIZE`] datagrams of a socket with one system call
/// (`recvmmsg`), each with what the kernel says of it. Under load a socket's queue holds
/// many: read together, each costs a system call's entry and exit once per batch instead of
/// once per datagram.
pub struct Batch {
    /// `SIZE` buffers of `room` bytes each, end to end.
    bufs: Vec<u8>,
    room: usize,
    names: Vec<libc::sockaddr_storage>,
    controls: Vec<Control>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    /// What the last [`recv_batch`] read: each datagram's slot (its buffer's index), length,
    /// source, and what the kernel said.
    read: Vec<(usize, Received)>,
    /// Headers the kernel filled in the last call (to be made ready again).
    used: usize,
}

// SAFETY: the raw pointers in `iovs` and `hdrs` point only into the heap buffers of the
// batch's own vectors, which are never resized (so never moved); nothing is shared between
// threads through them.
unsafe impl Send for Batch {}

impl Batch {
    /// Datagrams read by one call at most.
    pub const SIZE: usize = 32;

    /// Room for [`Batch::SIZE`] datagrams of up to `room` bytes each.
    pub fn new(room: usize) -> Batch {
        let room = room.max(1);
        let mut b = Batch {
            bufs: vec![0; room * Self::SIZE],
            room,
            // SAFETY: an all-zero sockaddr_storage is a valid (unspecified) address.
            names: vec![unsafe { mem::zeroed() }; Self::SIZE],
            controls: vec![[0; 16]; Self::SIZE],
            iovs: Vec::with_capacity(Self::SIZE),
            hdrs: Vec::with_capacity(Self::SIZE),
            read: Vec::with_capacity(Self::SIZE),
            used: 0,
        };
        // The headers, once: each points at its own buffer, name and control room, in
        // vectors that keep their heap storage for the batch's life.
        for buf in b.bufs.chunks_exact_mut(room) {
            b.iovs.push(libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            });
        }
        for ((iov, name), control) in b
            .iovs
            .iter_mut()
            .zip(b.names.iter_mut())
            .zip(b.controls.iter_mut())
        {
            // SAFETY: an all-zero msghdr is valid; its pointers are set just below.
            let mut msg: libc::msghdr = unsafe { mem::zeroed() };
            msg.msg_name = (name as *mut libc::sockaddr_storage).cast();
            msg.msg_iov = iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast();
            b.hdrs.push(libc::mmsghdr {
                msg_hdr: msg,
                msg_len: 0,
            });
        }
        b.used = Self::SIZE; // all to be made ready
        b
    }

    /// How many datagrams the last [`recv_batch`] read.
    pub fn len(&self) -> usize {
        self.read.len()
    }

    pub fn is_empty(&self) -> bool {
        self.read.is_empty()
    }

    /// The `i`th datagram of the last [`recv_batch`]: what the kernel said of it, and its
    /// bytes.
    pub fn get(&self, i: usize) -> (Received, &[u8]) {
        let (slot, r) = self.read[i];
        let start = slot * self.room;
        (r, &self.bufs[start..start + r.len.min(self.room)])
    }
}

/// Reads, without waiting, up to [`Batch::SIZE`] datagrams that are waiting on `sock` into
/// `batch` (`WouldBlock` when there is none); how many. A datagram from a non-IP address
/// (none on an IP socket) is skipped.
pub fn recv_batch(sock: &impl AsRawFd, batch: &mut Batch) -> io::Result<usize> {
    let fd: RawFd = sock.as_raw_fd();
    let Batch {
        names,
        hdrs,
        read,
        used,
        ..
    } = batch;
    read.clear();
    // What the kernel changed in the headers it filled last time: the lengths it wrote
    // back, and the flags.
    for h in &mut hdrs[..*used] {
        h.msg_hdr.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as _;
        h.msg_hdr.msg_controllen = mem::size_of::<Control>() as _;
        h.msg_hdr.msg_flags = 0;
        h.msg_len = 0;
    }
    *used = 0;
    // SAFETY: recvmmsg(2) writes, for each of at most `hdrs.len()` headers, at most
    // msg_namelen bytes into its `names` entry, at most iov_len bytes into its buffer and at
    // most msg_controllen bytes into its `controls` entry, all of which live (and are not
    // moved: the vectors are not resized) until it returns.
    let n = unsafe {
        libc::recvmmsg(
            fd,
            hdrs.as_mut_ptr(),
            hdrs.len() as _,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    *used = n as usize;
    for (slot, (h, name)) in hdrs.iter().zip(names.iter()).take(n as usize).enumerate() {
        // SAFETY: the kernel filled msg_namelen bytes of the name, a sockaddr_storage (so
        // also viewed as one in socket2's storage); the header's control buffer is as the
        // kernel left it.
        let (from, (to, arrived, dropped)) = unsafe {
            (
                {
                    let mut storage = socket2::SockAddrStorage::zeroed();
                    *storage.view_as::<libc::sockaddr_storage>() = *name;
                    socket2::SockAddr::new(storage, h.msg_hdr.msg_namelen).as_socket()
                },
                said_of(&h.msg_hdr),
            )
        };
        if let Some(from) = from {
            let len = h.msg_len as usize;
            read.push((
                slot,
                Received {
                    len,
                    from,
                    to,
                    arrived,
                    dropped,
                },
            ));
        }
    }
    Ok(read.len())
}

/// Sends one datagram to `to` from source address `from` without waiting (`WouldBlock`
/// when the socket's buffer is full).
pub fn send(sock: &impl AsRawFd, buf: &[u8], to: SocketAddr, from: IpAddr) -> io::Result<usize> {
    let fd: RawFd = sock.as_raw_fd();
    let name = socket2::SockAddr::from(to);
    let mut control: Control = [0; 16];
    let mut iov = libc::iovec {
        iov_base: buf.as_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: sendmsg(2) only reads: the destination (`name`), `buf` and the one control
    // message written here into `control` with the CMSG_* macros, inside its length (the
    // room one pktinfo takes, which `Control` has); all live until the call returns.
    unsafe {
        let mut msg: libc::msghdr = mem::zeroed();
        msg.msg_name = name.as_ptr() as *mut libc::c_void;
        msg.msg_namelen = name.len();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        let (level, kind, size) = match from {
            IpAddr::V4(_) => (
                libc::IPPROTO_IP,
                libc::IP_PKTINFO,
                mem::size_of::<libc::in_pktinfo>(),
            ),
            IpAddr::V6(_) => (
                libc::IPPROTO_IPV6,
                libc::IPV6_PKTINFO,
                mem::size_of::<libc::in6_pktinfo>(),
            ),
        };
        msg.msg_controllen = libc::CMSG_SPACE(size as libc::c_uint) as _;
        debug_assert!(msg.msg_controllen as usize <= mem::size_of::<Control>());
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = level;
        (*cmsg).cmsg_type = kind;
        (*cmsg).cmsg_len = libc::CMSG_LEN(size as libc::c_uint) as _;
        let data = libc::CMSG_DATA(cmsg);
        match from {
            IpAddr::V4(ip) => {
                // ipi_spec_dst: the source address; interface 0: chosen by the routes.
                let info = libc::in_pktinfo {
                    ipi_ifindex: 0,
                    ipi_spec_dst: libc::in_addr {
                        s_addr: u32::from(ip).to_be(),
                    },
                    ipi_addr: libc::in_addr { s_addr: 0 },
                };
                std::ptr::write_unaligned(data.cast(), info);
            }
            IpAddr::V6(ip) => {
                let info = libc::in6_pktinfo {
                    ipi6_addr: libc::in6_addr {
                        s6_addr: ip.octets(),
                    },
                    ipi6_ifindex: 0,
                };
                std::ptr::write_unaligned(data.cast(), info);
            }
        }
        let n = libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL);
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// Reads a batch from `sock`, waiting (bounded) for the first datagram.
    fn batch_of(sock: &std::net::UdpSocket, batch: &mut Batch) -> usize {
        let start = Instant::now();
        loop {
            match recv_batch(sock, batch) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    assert!(start.elapsed() < Duration::from_secs(5), "nothing came");
                    std::thread::sleep(Duration::from_millis(5));
                }
                other => return other.unwrap(),
            }
        }
    }

    #[test]
    fn a_batch_reads_what_waits_each_datagram_with_its_source_address_and_stamp() {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        enable_timestamps(&sock).unwrap();
        enable(&sock, false).unwrap();
        let to = sock.local_addr().unwrap();
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = std::net::UdpSocket::bind("127.0.0.2:0").unwrap();
        // More than a batch holds, from two sources; one longer than a buffer's room.
        let sent: Vec<(SocketAddr, Vec<u8>)> = (0..Batch::SIZE + 5)
            .map(|i| {
                let (from, bytes) = if i % 2 == 0 {
                    (&a, format!("datagram {i}").into_bytes())
                } else {
                    (&b, vec![b'x'; if i == 7 { 300 } else { i }])
                };
                from.send_to(&bytes, to).unwrap();
                (from.local_addr().unwrap(), bytes)
            })
            .collect();
        let mut batch = Batch::new(100);
        let mut got = Vec::new();
        while got.len() < sent.len() {
            let n = batch_of(&sock, &mut batch);
            assert!((1..=Batch::SIZE).contains(&n), "{n}");
            assert_eq!(batch.len(), n);
            for i in 0..n {
                let (r, data) = batch.get(i);
                assert_eq!(r.len, data.len());
                assert_eq!(r.to, Some(to.ip()), "the address it was sent to");
                assert!(r.arrived.is_some(), "stamped");
                got.push((r.from, data.to_vec()));
            }
        }
        assert_eq!(got.len(), sent.len());
        for (i, ((from, bytes), (got_from, got_bytes))) in sent.iter().zip(&got).enumerate() {
            assert_eq!(from, got_from, "datagram {i}'s source");
            // The one too long for its buffer is cut at the room (as recvmsg cuts it).
            let room = bytes.len().min(100);
            assert_eq!(&bytes[..room], &got_bytes[..], "datagram {i}");
        }
        // Nothing left: WouldBlock, and an empty batch.
        let e = recv_batch(&sock, &mut batch).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        assert!(batch.is_empty());
    }

    #[test]
    fn a_datagram_is_stamped_when_it_arrived_not_when_it_was_read() {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        enable_timestamps(&sock).unwrap();
        let c = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        // The kernel turns receive stamping on shortly after the first socket asks for it
        // (until then a datagram is stamped when read): a few tries, each bounded.
        let mut ages = Vec::new();
        for _ in 0..5 {
            c.send_to(b"hello", sock.local_addr().unwrap()).unwrap();
            let sent = SystemTime::now();
            std::thread::sleep(Duration::from_millis(200));
            let mut buf = [0u8; 64];
            let start = Instant::now();
            let r = loop {
                match recv(&sock, &mut buf) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        assert!(start.elapsed() < Duration::from_secs(5), "nothing came");
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    other => break other.unwrap(),
                }
            };
            assert_eq!(&buf[..r.len], b"hello");
            assert_eq!(r.from, c.local_addr().unwrap());
            assert_eq!(r.to, None, "no pktinfo asked for");
            let arrived = r.arrived.expect("a stamp");
            let age = SystemTime::now()
                .duration_since(arrived)
                .unwrap_or_default();
            let early = sent.duration_since(arrived).unwrap_or_default();
            assert!(early < Duration::from_millis(50), "{early:?}");
            ages.push(age);
            if age >= Duration::from_millis(190) {
                return; // stamped on arrival, 200 ms before it was read
            }
        }
        panic!("never stamped on arrival: ages {ages:?}");
    }
}
