//! Parse + serialize of typical messages: `cargo bench -p switchboard-sip --bench parse`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use switchboard_sip::parse::{frame, parse, Limits};

const INVITE_HEAD: &str = "INVITE sip:bob@switchboard.local SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds;rport\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@switchboard.local>\r\n\
From: Alice <sip:alice@switchboard.local>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.switchboard.local\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@192.0.2.10:5060;transport=udp>\r\n\
Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO, REFER\r\n\
Supported: replaces, timer\r\n\
User-Agent: Softphone/1.0\r\n\
Content-Type: application/sdp\r\n\
Content-Length: ";

const SDP: &str = "v=0\r\no=alice 2890844526 2890844526 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n\
m=audio 49170 RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\n";

const REGISTER: &str = "REGISTER sip:switchboard.local SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKnashds7;rport\r\n\
Max-Forwards: 70\r\n\
To: Alice <sip:alice@switchboard.local>\r\n\
From: Alice <sip:alice@switchboard.local>;tag=456248\r\n\
Call-ID: 843817637684230@998sdasdh09\r\n\
CSeq: 1826 REGISTER\r\n\
Contact: <sip:alice@192.0.2.10:5060>;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>\";reg-id=1\r\n\
Expires: 3600\r\n\
Authorization: Digest username=\"alice\", realm=\"switchboard.local\", nonce=\"5f3a.1b2c.0123456789abcdef01234567\", uri=\"sip:switchboard.local\", response=\"6629fae49393a05397450978507c4ef1\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"0a4f113b\"\r\n\
User-Agent: Softphone/1.0\r\n\
Content-Length: 0\r\n\r\n";

#[allow(non_snake_case)]
fn bench(c: &mut Criterion) {
    let limits = Limits::default();
    let invite = format!("{INVITE_HEAD}{}\r\n\r\n{SDP}", SDP.len());
    let INVITE = invite.as_str();
    let mut g = c.benchmark_group("message");
    for (name, text) in [("invite", INVITE), ("register", REGISTER)] {
        let bytes = text.as_bytes();
        assert!(parse(bytes, &limits).is_ok(), "{name} must parse");
        g.throughput(Throughput::Elements(1));
        g.bench_function(format!("parse/{name}"), |b| {
            b.iter(|| parse(black_box(bytes), &limits).unwrap())
        });
        let msg = parse(bytes, &limits).unwrap();
        g.bench_function(format!("serialize/{name}"), |b| {
            b.iter(|| black_box(&msg).to_bytes())
        });
        g.bench_function(format!("parse+serialize/{name}"), |b| {
            b.iter(|| parse(black_box(bytes), &limits).unwrap().to_bytes())
        });
        g.bench_function(format!("frame/{name}"), |b| {
            b.iter(|| frame(black_box(bytes), &limits))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
