//! STUN keep-alives on UDP (RFC 5626 §4.4.2, §8.4): a phone keeping its NAT binding open
//! sends STUN Binding requests (RFC 5389) to the port it sends SIP to; the answer tells it
//! the address it is seen from (XOR-MAPPED-ADDRESS), so it also learns when that changes.
//! Nothing else of STUN is served: other requests and anything malformed are dropped.

use std::net::{IpAddr, SocketAddr};

/// The fixed value in every STUN message since RFC 5389, which sets it apart from SIP.
const MAGIC_COOKIE: u32 = 0x2112_A442;
const HEADER: usize = 20;
const BINDING_REQUEST: u16 = 0x0001;
const BINDING_SUCCESS: u16 = 0x0101;
const XOR_MAPPED_ADDRESS: u16 = 0x0020;
const FINGERPRINT: u16 = 0x8028;
/// What a FINGERPRINT's CRC-32 is XORed with (RFC 5389 §15.5).
const FINGERPRINT_XOR: u32 = 0x5354_554E;

/// Whether a datagram is a STUN message rather than SIP: the first two bits are zero (a SIP
/// message starts with a letter) and the magic cookie is in its place.
pub fn is_stun(data: &[u8]) -> bool {
    data.len() >= HEADER && data[0] & 0xC0 == 0 && data[4..8] == MAGIC_COOKIE.to_be_bytes()
}

/// The answer to a STUN Binding request received from `from`: a Binding success response
/// with the same transaction id and `from` as XOR-MAPPED-ADDRESS (and a FINGERPRINT when
/// the request had one). `None` for anything that is not a well-formed Binding request.
pub fn binding_response(request: &[u8], from: SocketAddr) -> Option<Vec<u8>> {
    if !is_stun(request) {
        return None;
    }
    let kind = u16::from_be_bytes([request[0], request[1]]);
    let length = usize::from(u16::from_be_bytes([request[2], request[3]]));
    if kind != BINDING_REQUEST || length % 4 != 0 || HEADER + length != request.len() {
        return None;
    }
    let fingerprinted = attributes(&request[HEADER..])?
        .iter()
        .any(|&(t, _)| t == FINGERPRINT);
    let transaction = &request[4..HEADER]; // the cookie and the 96-bit id

    let mut out = Vec::with_capacity(HEADER + 24 + 8);
    out.extend_from_slice(&BINDING_SUCCESS.to_be_bytes());
    out.extend_from_slice(&[0, 0]); // length, set below
    out.extend_from_slice(transaction);
    // XOR-MAPPED-ADDRESS (RFC 5389 §15.2): port XOR the cookie's top half, address XOR the
    // cookie (IPv4) or the cookie and transaction id (IPv6).
    let x_port = from.port() ^ (MAGIC_COOKIE >> 16) as u16;
    match from.ip() {
        IpAddr::V4(ip) => {
            out.extend_from_slice(&XOR_MAPPED_ADDRESS.to_be_bytes());
            out.extend_from_slice(&8u16.to_be_bytes());
            out.extend_from_slice(&[0, 0x01]);
            out.extend_from_slice(&x_port.to_be_bytes());
            let x = u32::from(ip) ^ MAGIC_COOKIE;
            out.extend_from_slice(&x.to_be_bytes());
        }
        IpAddr::V6(ip) => {
            out.extend_from_slice(&XOR_MAPPED_ADDRESS.to_be_bytes());
            out.extend_from_slice(&20u16.to_be_bytes());
            out.extend_from_slice(&[0, 0x02]);
            out.extend_from_slice(&x_port.to_be_bytes());
            for (b, k) in ip.octets().iter().zip(transaction) {
                out.push(b ^ k);
            }
        }
    }
    if fingerprinted {
        // The length counts the FINGERPRINT, which covers everything before it.
        let length = out.len() - HEADER + 8;
        set_length(&mut out, length);
        let crc = crc32fast::hash(&out) ^ FINGERPRINT_XOR;
        out.extend_from_slice(&FINGERPRINT.to_be_bytes());
        out.extend_from_slice(&4u16.to_be_bytes());
        out.extend_from_slice(&crc.to_be_bytes());
    } else {
        let length = out.len() - HEADER;
        set_length(&mut out, length);
    }
    Some(out)
}

fn set_length(msg: &mut [u8], length: usize) {
    msg[2..4].copy_from_slice(&(length as u16).to_be_bytes());
}

/// The attributes of a message body (type, value), or None when they overrun it.
fn attributes(mut body: &[u8]) -> Option<Vec<(u16, &[u8])>> {
    let mut out = Vec::new();
    while !body.is_empty() {
        if body.len() < 4 {
            return None;
        }
        let kind = u16::from_be_bytes([body[0], body[1]]);
        let len = usize::from(u16::from_be_bytes([body[2], body[3]]));
        let padded = len.div_ceil(4) * 4;
        if body.len() < 4 + padded {
            return None;
        }
        out.push((kind, &body[4..4 + len]));
        body = &body[4 + padded..];
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The transaction id of RFC 5769's samples.
    const ID: [u8; 12] = [
        0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
    ];

    fn request(attrs: &[u8]) -> Vec<u8> {
        let mut r = vec![0x00, 0x01];
        r.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        r.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        r.extend_from_slice(&ID);
        r.extend_from_slice(attrs);
        r
    }

    #[test]
    fn xor_mapped_address_as_rfc_5769_samples_have_it() {
        // RFC 5769 §2.2 and §2.3: 192.0.2.1:32853 and [2001:db8:1234:5678:11:2233:4455:6677]:32853.
        let v4 = binding_response(&request(&[]), "192.0.2.1:32853".parse().unwrap()).unwrap();
        assert_eq!(&v4[..4], &[0x01, 0x01, 0x00, 0x0c]);
        assert_eq!(&v4[8..20], &ID);
        assert_eq!(
            &v4[20..],
            &[0x00, 0x20, 0x00, 0x08, 0x00, 0x01, 0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43]
        );
        let from: SocketAddr = "[2001:db8:1234:5678:11:2233:4455:6677]:32853"
            .parse()
            .unwrap();
        let v6 = binding_response(&request(&[]), from).unwrap();
        assert_eq!(
            &v6[20..],
            &[
                0x00, 0x20, 0x00, 0x14, 0x00, 0x02, 0xa1, 0x47, 0x01, 0x13, 0xa9, 0xfa, 0xa5, 0xd3,
                0xf1, 0x79, 0xbc, 0x25, 0xf4, 0xb5, 0xbe, 0xd2, 0xb9, 0xd9
            ]
        );
    }

    #[test]
    fn a_fingerprinted_request_gets_a_fingerprinted_answer() {
        // A request with SOFTWARE ("sb", padded) and a FINGERPRINT (its value is not
        // checked: a keep-alive's answer is harmless).
        let attrs = [
            0x80, 0x22, 0x00, 0x02, b's', b'b', 0, 0, 0x80, 0x28, 0x00, 0x04, 1, 2, 3, 4,
        ];
        let from: SocketAddr = "127.0.0.1:5070".parse().unwrap();
        let r = binding_response(&request(&attrs), from).unwrap();
        assert_eq!(r.len(), 20 + 12 + 8);
        assert_eq!(u16::from_be_bytes([r[2], r[3]]), 20);
        let (body, fp) = r.split_at(r.len() - 8);
        assert_eq!(&fp[..4], &[0x80, 0x28, 0x00, 0x04]);
        let crc = u32::from_be_bytes([fp[4], fp[5], fp[6], fp[7]]);
        assert_eq!(crc, crc32fast::hash(body) ^ FINGERPRINT_XOR);
        // CRC-32 as RFC 5389 §15.5 means it (ISO HDLC, the check value of "123456789").
        assert_eq!(crc32fast::hash(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn anything_else_gets_nothing() {
        let from: SocketAddr = "127.0.0.1:5070".parse().unwrap();
        let ok = request(&[]);
        assert!(binding_response(&ok, from).is_some());
        // Not STUN at all: SIP, CRLF, short.
        assert!(!is_stun(b"OPTIONS sip:a SIP/2.0\r\n\r\nxxxxxxxx"));
        assert!(binding_response(b"\r\n\r\n", from).is_none());
        assert!(binding_response(&ok[..19], from).is_none());
        // A Binding indication, a response, an Allocate request: not answered.
        for kind in [[0x00, 0x11], [0x01, 0x01], [0x00, 0x03]] {
            let mut m = ok.clone();
            m[..2].copy_from_slice(&kind);
            assert!(binding_response(&m, from).is_none(), "{kind:?}");
        }
        // A wrong cookie, a length that disagrees, a length not a multiple of 4, an
        // attribute that overruns the message.
        let mut m = ok.clone();
        m[4] ^= 1;
        assert!(binding_response(&m, from).is_none());
        let mut m = request(&[0, 1, 0, 4, 9, 9, 9, 9]);
        m[3] = 12;
        assert!(binding_response(&m, from).is_none());
        let mut m = request(&[0, 1, 0, 2, 9, 9]);
        m[3] = 6;
        assert!(binding_response(&m, from).is_none());
        assert!(binding_response(&request(&[0, 1, 0, 8, 9, 9, 9, 9]), from).is_none());
    }
}
