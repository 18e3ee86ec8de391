//! SDP bodies as they come in INVITEs and answers: read within limits, written back to what
//! reads the same, answered (an answer with as many streams as the offer, that reads back),
//! and read as the answer to our own offer. Never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_media::g711::Law;
use switchboard_media::offer_answer::{answer, answered, offer, Local};
use switchboard_media::sdp::{Limits, Session};

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let Ok(session) = Session::parse(data, &limits) else {
        return;
    };
    assert_eq!(
        Session::parse(&session.to_bytes(), &limits),
        Ok(session.clone())
    );
    let local = Local {
        address: "192.0.2.1".parse().unwrap(),
        port: 40000,
        session_id: 1,
        version: 1,
        laws: vec![Law::MuLaw, Law::ALaw],
        telephone_event: 101,
    };
    if let Ok((ours, stream)) = answer(&session, &local) {
        assert_eq!(ours.media.len(), session.media.len());
        assert_eq!(Session::parse(&ours.to_bytes(), &limits), Ok(ours));
        assert!(stream.index < session.media.len());
    }
    let _ = answered(&offer(&local), &session, &local);
});
