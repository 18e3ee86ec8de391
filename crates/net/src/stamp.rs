//! When a datagram reached the machine: the kernel's receive timestamp (`SO_TIMESTAMPNS`,
//! Linux). The time a datagram waits in its socket's buffer is part of how far behind the
//! daemon is: on a busy single thread the queue builds there, not in the daemon's own
//! channel, so load shedding (see `TransportConfig::shed_after`) measures from this stamp.
//! Elsewhere, or when the kernel gives none, a datagram counts from when it was read.

use std::io;
use std::net::SocketAddr;
use std::time::Instant;
use tokio::net::UdpSocket;

/// Asks the kernel to stamp every datagram `sock` receives.
pub(crate) fn enable(sock: &socket2::Socket) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let on: libc::c_int = 1;
        // SAFETY: a valid socket descriptor and an option value of the size given.
        let r = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_TIMESTAMPNS,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r != 0 {
            tracing::debug!(
                error = %io::Error::last_os_error(),
                "no kernel receive timestamps: datagrams count from when they are read"
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = sock;
}

/// Receives one datagram into `buf`: its length, where it came from, and when it reached
/// the machine (as an `Instant`).
pub(crate) async fn recv(
    sock: &UdpSocket,
    buf: &mut [u8],
) -> io::Result<(usize, SocketAddr, Instant)> {
    #[cfg(target_os = "linux")]
    loop {
        use tokio::io::Interest;
        match sock.try_io(Interest::READABLE, || recv_stamped(sock, buf)) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => sock.readable().await?,
            other => return other,
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let (n, from) = sock.recv_from(buf).await?;
        Ok((n, from, Instant::now()))
    }
}

/// One `recvmsg` with room for the timestamp's control message.
#[cfg(target_os = "linux")]
fn recv_stamped(sock: &UdpSocket, buf: &mut [u8]) -> io::Result<(usize, SocketAddr, Instant)> {
    use std::os::fd::AsRawFd;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};
    let fd = sock.as_raw_fd();
    // Room for a timespec control message (32 bytes on 64-bit), aligned for cmsghdr.
    let mut control = [0u64; 8];
    let mut stamp = None;
    // SAFETY: `try_init` hands a zeroed address storage and its length; recvmsg writes at
    // most that many bytes of address, at most `buf.len()` bytes of data and at most
    // `control`'s size of control messages, and sets the lengths it used; the CMSG macros
    // walk only what the kernel wrote (`msg_controllen`).
    let (n, from) = unsafe {
        socket2::SockAddr::try_init(|name, name_len| {
            let mut iov = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            };
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_name = name.cast();
            msg.msg_namelen = *name_len;
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = std::mem::size_of_val(&control) as _;
            let n = libc::recvmsg(fd, &mut msg, 0);
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            *name_len = msg.msg_namelen;
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                    let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                    stamp = Some((ts.tv_sec, ts.tv_nsec));
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
            Ok(n as usize)
        })?
    };
    let from = from
        .as_socket()
        .ok_or_else(|| io::Error::other("a datagram from a non-IP address"))?;
    let read = Instant::now();
    let at = stamp
        .and_then(|(s, ns)| {
            let stamped =
                UNIX_EPOCH + Duration::new(u64::try_from(s).ok()?, u32::try_from(ns).ok()?);
            // A clock stepped back makes the age negative: count from the read then.
            let age = SystemTime::now().duration_since(stamped).ok()?;
            read.checked_sub(age)
        })
        .unwrap_or(read);
    Ok((n, from, at))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_datagram_counts_from_when_it_arrived_not_from_when_it_was_read() {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
        enable(&s);
        s.set_nonblocking(true).unwrap();
        s.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        let sock = UdpSocket::from_std(s.into()).unwrap();
        let c = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        // The kernel turns receive stamping on shortly after the first socket asks for it
        // (until then a datagram is stamped when read): a few tries, each bounded.
        let mut ages = Vec::new();
        for _ in 0..5 {
            c.send_to(b"hello", sock.local_addr().unwrap()).unwrap();
            let sent = Instant::now();
            std::thread::sleep(Duration::from_millis(200));
            let mut buf = [0u8; 64];
            let (n, from, at) = recv(&sock, &mut buf).await.unwrap();
            assert_eq!(&buf[..n], b"hello");
            assert_eq!(from, c.local_addr().unwrap());
            let age = Instant::now() - at;
            assert!(at <= sent + Duration::from_millis(50), "{:?}", at - sent);
            ages.push(age);
            if age >= Duration::from_millis(190) || cfg!(not(target_os = "linux")) {
                return; // stamped on arrival, 200 ms before it was read
            }
        }
        panic!("never stamped on arrival: ages {ages:?}");
    }
}
