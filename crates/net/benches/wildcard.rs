//! What a listener bound to every interface costs: `cargo bench -p switchboard-net --bench
//! wildcard`.
//!
//! - a datagram read with the address it was sent to (`recvmsg` with `IP_PKTINFO`) against
//!   a plain `recvfrom`, and one sent from a chosen address (`sendmsg` with `IP_PKTINFO`)
//!   against a plain `sendto` — each measured with the loopback send or read that goes with
//!   it;
//! - the questions the core asks of the system for such a listener (the source address
//!   toward a destination, whether an address is the machine's), asked of the kernel and
//!   answered from the table that keeps them.

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use std::net::{IpAddr, UdpSocket};
use switchboard_net::interfaces::{ask_is_own, ask_source_toward, Interfaces, SystemInterfaces};

const DATAGRAM: &[u8] = &[b'x'; 600];

fn datagrams(c: &mut Criterion) {
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    let wildcard = UdpSocket::bind("0.0.0.0:0").unwrap();
    switchboard_net::pktinfo::enable(&wildcard, false).unwrap();
    let plain = UdpSocket::bind("127.0.0.1:0").unwrap();
    let to_wildcard = (
        IpAddr::from([127, 0, 0, 1]),
        wildcard.local_addr().unwrap().port(),
    );
    let to_plain = plain.local_addr().unwrap();
    let mut buf = vec![0u8; 2048];
    let mut g = c.benchmark_group("datagram");
    g.bench_function("recvfrom (+ the peer's sendto)", |b| {
        b.iter(|| {
            peer.send_to(DATAGRAM, to_plain).unwrap();
            black_box(plain.recv_from(&mut buf).unwrap());
        })
    });
    g.bench_function("recvmsg IP_PKTINFO (+ the peer's sendto)", |b| {
        b.iter(|| {
            peer.send_to(DATAGRAM, to_wildcard).unwrap();
            black_box(switchboard_net::pktinfo::recv(&wildcard, &mut buf).unwrap());
        })
    });
    let back = peer.local_addr().unwrap();
    g.bench_function("sendto (+ the peer's recvfrom)", |b| {
        b.iter(|| {
            plain.send_to(DATAGRAM, back).unwrap();
            black_box(peer.recv_from(&mut buf).unwrap());
        })
    });
    let from: IpAddr = [127, 0, 0, 1].into();
    g.bench_function("sendmsg IP_PKTINFO (+ the peer's recvfrom)", |b| {
        b.iter(|| {
            switchboard_net::pktinfo::send(&wildcard, DATAGRAM, back, from).unwrap();
            black_box(peer.recv_from(&mut buf).unwrap());
        })
    });
    g.finish();
}

fn interfaces(c: &mut Criterion) {
    let lo: IpAddr = [127, 0, 0, 1].into();
    let far: IpAddr = [192, 0, 2, 99].into();
    let mut g = c.benchmark_group("interfaces");
    g.bench_function("source toward, asked of the kernel", |b| {
        b.iter(|| black_box(ask_source_toward(black_box(far))))
    });
    g.bench_function("is own, asked of the kernel", |b| {
        b.iter(|| black_box(ask_is_own(black_box(lo))))
    });
    let kept = SystemInterfaces::new();
    kept.source_toward(far);
    g.bench_function("source toward, kept", |b| {
        b.iter(|| black_box(kept.source_toward(black_box(far))))
    });
    g.finish();
}

criterion_group!(benches, datagrams, interfaces);
criterion_main!(benches);
