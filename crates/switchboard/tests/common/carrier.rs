//! A carrier network for the trunk tests: Kamailio as the carrier (a config of
//! `tests/kamailio/`), the telephone network behind it (SIPp at [`PSTN_IP`]: its callers and
//! its far end) and the daemon, whose policy has alice and bob and the carrier's trunk. The
//! steps every carrier test takes (a call from the network that bob answers, alice dialling
//! out) are here once.

use super::*;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// The account a carrier that challenges (`tests/kamailio/carrier.cfg`) knows: its realm,
/// the digest user name it gave the account (not the account's user name), the password.
pub const ACCOUNT_REALM: &str = "carrier.example";
pub const ACCOUNT_AUTH_USER: &str = "acct-7";
pub const ACCOUNT_PASSWORD: &str = "trunk-secret";

/// Kamailio as a carrier that challenges (`tests/kamailio/carrier.cfg`: 407 to INVITEs,
/// authenticated ones record-routed and relayed) on `addr`, relaying to
/// `sip:127.0.0.1:<pstn>`, with `flags` (`WITH_SHA256`, `WITH_DIALOG_AUTH`); its work
/// directory and log in `dir`.
pub fn challenging_carrier(dir: &Path, addr: SocketAddr, pstn: u16, flags: &[&str]) -> Kamailio {
    let mut defines = vec![
        format!("PSTN=\"sip:127.0.0.1:{pstn}\""),
        format!("REALM=\"{ACCOUNT_REALM}\""),
        format!("PASSWORD=\"{ACCOUNT_PASSWORD}\""),
        format!("AUTH_USER=\"{ACCOUNT_AUTH_USER}\""),
    ];
    defines.extend(flags.iter().map(|f| f.to_string()));
    Kamailio::start("carrier.cfg", dir, addr, &defines)
}

/// How long a SIPp server waits for its calls to end at most.
pub const LIMIT: Duration = Duration::from_secs(40);
/// The network behind the carrier: its callers and its far ends.
pub const PSTN_IP: &str = "127.0.0.3";
/// The network's caller.
pub const CALLER: &str = "+447700900123";

/// The carrier, the daemon, and the port of the network's far end.
pub struct CarrierNet {
    pub carrier: Kamailio,
    pub carrier_addr: SocketAddr,
    pub pstn_port: u16,
    pub d: Daemon,
    pub _dir: tempfile::TempDir,
}

impl CarrierNet {
    /// `r`, which must have passed; otherwise fails with the daemon's and the carrier's logs.
    pub fn ok(&self, r: SippRun) -> SippRun {
        passed_via(r, &self.d, &self.carrier)
    }

    /// The network's caller dials `number` (as the carrier is given it) with `scenario`.
    pub fn network_calls(&self, number: &str, scenario: &str, extra: &str) -> SippRun {
        Sipp::new(&self.d, scenario)
            .row(call_row(CALLER, "", number, extra))
            .local_ip(PSTN_IP)
            .target(self.carrier_addr)
            .domain(&self.carrier_addr.ip().to_string())
            .run()
    }

    /// The network's caller dials `number`, which rings bob; bob answers, the caller hangs
    /// up. bob's run (his INVITE says who called).
    pub fn caller_hangs_up(&self, number: &str) -> SippRun {
        let bob = bobs_phone(&self.d, "uas_answer.xml", &[]);
        let r = self.ok(self.network_calls(number, "trunk_call_answered.xml", "300"));
        assert_eq!(r.finals(), vec![200]);
        let bob = self.ok(bob.finish(LIMIT));
        let invite = &bob.requests("INVITE")[0];
        assert!(invite.contains(CALLER), "the caller: {invite}");
        bob
    }

    /// The network's caller dials `number`, which rings bob; bob answers and hangs up: his
    /// BYE reaches the caller through the carrier.
    pub fn bob_hangs_up(&self, number: &str) {
        let bob = bobs_phone(&self.d, "uas_answer_callee_hangs_up.xml", &["-d", "300"]);
        let r = self.ok(self.network_calls(number, "trunk_call_callee_hangs_up.xml", ""));
        assert_eq!(r.requests("BYE").len(), 1, "{}", r.report());
        self.ok(bob.finish(LIMIT));
    }

    /// alice dials `dialled` out through the trunk; the network's far end answers; alice
    /// hangs up. The far end's run.
    pub fn alice_calls_out(&self, dialled: &str) -> SippRun {
        let pstn = Uas::start_on(PSTN_IP, self.pstn_port, "uas_answer.xml", 1, &[]);
        let r = Sipp::new(&self.d, "call_answered.xml")
            .row(call_row("alice", "alice-secret", dialled, "300"))
            .auth_uri(&format!("{dialled}@{REALM}"))
            .run();
        self.ok(r);
        let far = self.ok(pstn.finish(LIMIT));
        assert_eq!(far.requests("BYE").len(), 1, "{}", far.report());
        far
    }
}

/// bob's phone (a SIPp server running `scenario` for one call), registered.
fn bobs_phone(d: &Daemon, scenario: &str, args: &[&str]) -> Uas {
    registered_phone(d, "bob", "bob-secret", scenario, args)
}
