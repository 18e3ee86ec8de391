//! STUN keep-alives as they come off a UDP socket: never a panic, and an answer only to a
//! Binding request, carrying its transaction id.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_net::stun;

fuzz_target!(|data: &[u8]| {
    for from in ["127.0.0.1:5070", "[::1]:5070"] {
        if let Some(answer) = stun::binding_response(data, from.parse().unwrap()) {
            assert!(stun::is_stun(data) && data[..2] == [0x00, 0x01]);
            assert_eq!(&answer[4..20], &data[4..20]);
            assert_eq!(answer.len() % 4, 0);
        }
    }
});
