//! A forwarding's message end to end: bob forwards his calls to a number, with the message
//! "your call is being forwarded". A SIPp caller (`call_early_media_answered.xml`, its SDP's
//! audio port a UDP socket of this test) calls him: it gets 183 with our SDP, the test
//! receives exactly that prompt's G.711, and only once it has been played does the forward
//! target (a SIPp callee as the carrier's far end) get the INVITE; it answers, and the
//! caller gets its 200.

mod common;

use common::media::{check_heard, media_daemon, prompts, receive_rtp};
use common::*;
use std::net::UdpSocket;
use std::time::Duration;
use switchboard_media::g711::Law;

const MESSAGE: &str = "your_call_is_being_forwarded";

fn policy(carrier: u16) -> String {
    format!(
        r#"
[users.alice]
extension = "1001"
[users.bob]
extension = "1002"
[users.bob.forwarding]
targets = ["number:+441632960099"]
message = "{MESSAGE}"
keep_ringing_own = false

[trunks.carrier]
sources = ["127.0.0.2/32"]
uri = "sip:carrier@127.0.0.2:{carrier}"
outbound = ["+44*"]
"#
    )
}

#[test]
fn the_forwarding_message_is_heard_before_the_target_rings() {
    let carrier = free_port();
    let d = media_daemon(&policy(carrier), false);
    let far_end = Uas::start_on("127.0.0.2", carrier, "uas_answer.xml", 1, &[]);

    // What the caller must hear: the prompt, in µ-law (the offer's codec).
    let prompts = prompts();
    let prompt = prompts
        .get(&format!("phrases/{MESSAGE}"))
        .expect("the prompt");
    let expected = Law::MuLaw.encode(prompt.samples());
    let seconds = prompt.samples().len() as f64 / 8000.0;

    let audio = UdpSocket::bind(("127.0.0.1", 0)).unwrap();
    let port = audio.local_addr().unwrap().port();
    let reader = std::thread::spawn(move || {
        receive_rtp(&audio, Duration::from_secs(2), Duration::from_secs(40))
    });
    let caller = Sipp::new(&d, "call_early_media_answered.xml")
        .row(call_row("alice", "", "1002", &port.to_string()))
        .run();
    let packets = reader.join().unwrap();
    let far = far_end.finish(Duration::from_secs(10));
    assert!(caller.success, "{}\n{}", caller.report(), d.log());
    assert!(far.success, "{}\n{}", far.report(), d.log());

    // The message, exactly, on our early media.
    check_heard(&packets, 0, &expected, Law::MuLaw.silence())
        .unwrap_or_else(|e| panic!("{e}\n{}", d.log()));
    assert_eq!(caller.finals(), vec![200], "{}", caller.report());

    // The target got the INVITE only after the message: at least its length after the
    // caller's 183 (both times as the SIPps logged them).
    let early = timed_received(&caller)
        .into_iter()
        .find(|(_, m)| m.starts_with("SIP/2.0 183"))
        .map(|(t, _)| t)
        .expect("a 183");
    let invite = timed_received(&far)
        .into_iter()
        .find(|(_, m)| m.starts_with("INVITE "))
        .map(|(t, _)| t)
        .expect("an INVITE at the target");
    assert!(
        invite - early >= seconds - 0.1,
        "the target rang {:.3} s after the 183, before the {seconds:.3} s message was over\n{}",
        invite - early,
        d.log()
    );
    // The caller's number reached the target as the forwarding said (remote).
    let at_target = far.requests("INVITE").remove(0);
    assert!(
        at_target.starts_with("INVITE sip:+441632960099@"),
        "{at_target}"
    );
}
