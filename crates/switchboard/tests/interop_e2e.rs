//! The interop matrix: every common SIP client against the daemon's **default** config (no
//! `[auth]` override: one MD5 challenge; only the policy, ports and, for the TCP rows, the
//! idle timeout differ), headless on loopback. Each client registers over UDP and TCP,
//! places and takes calls (answer and BYE from either side, caller CANCEL, a team's ring
//! all, hold and resume, blind transfer), watches a colleague's presence, and keeps getting
//! calls over a TCP flow idle past the daemon's idle timeout; a TCP binding whose
//! connection is gone fails at once.
//!
//! Every check records a cell of a client × operation table; the test renders the table
//! and compares it with `docs/interop.md` (`SWITCHBOARD_UPDATE_INTEROP=1` rewrites the file
//! instead), then fails on any cell that says `fails:`. A cell is `pass`, `fails: why` or
//! `n/a: why` (the client cannot do it, explained).
//!
//! The checks run in groups, each with its own daemon, in parallel threads.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------
// The matrix

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Client {
    Baresip,
    Linphone,
    Twinkle,
    Sipp,
    Sipsak,
}

const CLIENTS: [Client; 5] = [
    Client::Baresip,
    Client::Linphone,
    Client::Twinkle,
    Client::Sipp,
    Client::Sipsak,
];

impl Client {
    fn name(self) -> &'static str {
        match self {
            Client::Baresip => "baresip",
            Client::Linphone => "linphonec",
            Client::Twinkle => "twinkle-console",
            Client::Sipp => "SIPp",
            Client::Sipsak => "sipsak",
        }
    }

    /// The Debian package it comes from.
    fn package(self) -> &'static str {
        match self {
            Client::Baresip => "baresip-core",
            Client::Linphone => "linphone-cli",
            Client::Twinkle => "twinkle-console",
            Client::Sipp => "sip-tester",
            Client::Sipsak => "sipsak",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Op {
    RegisterUdp,
    RegisterTcp,
    CallerHangsUp,
    CalleeHangsUp,
    CallerCancel,
    RingAll,
    HoldResume,
    BlindTransfer,
    Presence,
    TcpIdle,
    StaleFlow,
}

const OPS: [Op; 11] = [
    Op::RegisterUdp,
    Op::RegisterTcp,
    Op::CallerHangsUp,
    Op::CalleeHangsUp,
    Op::CallerCancel,
    Op::RingAll,
    Op::HoldResume,
    Op::BlindTransfer,
    Op::Presence,
    Op::TcpIdle,
    Op::StaleFlow,
];

impl Op {
    fn title(self) -> &'static str {
        match self {
            Op::RegisterUdp => "register (UDP)",
            Op::RegisterTcp => "register (TCP)",
            Op::CallerHangsUp => "call answered, caller hangs up",
            Op::CalleeHangsUp => "call answered, callee hangs up",
            Op::CallerCancel => "caller cancels while it rings",
            Op::RingAll => "team ring-all",
            Op::HoldResume => "hold and resume",
            Op::BlindTransfer => "blind transfer",
            Op::Presence => "colleague's presence shown",
            Op::TcpIdle => "TCP: called after the idle timeout",
            Op::StaleFlow => "TCP: gone phone fails fast",
        }
    }

    /// What a cell of this row means, for the document.
    fn meaning(self) -> &'static str {
        match self {
            Op::RegisterUdp | Op::RegisterTcp => {
                "the client's REGISTER is challenged (MD5), answered and stored"
            }
            Op::CallerHangsUp => {
                "as caller and as callee (each with a phone or SIPp on the other side): \
                 the call is answered, the caller's BYE reaches the callee"
            }
            Op::CalleeHangsUp => {
                "as caller and as callee: the call is answered, the callee's BYE reaches \
                 the caller"
            }
            Op::CallerCancel => {
                "the client calls a ringing SIPp callee and hangs up first: the callee \
                 gets the CANCEL, the call ends with 487"
            }
            Op::RingAll => {
                "baresip, linphonec and twinkle-console are members of a ring-all team; \
                 SIPp calls the team: all three ring, linphonec answers, the other two \
                 are cancelled"
            }
            Op::HoldResume => {
                "the client holds and resumes an answered call (re-INVITE a=sendonly, \
                 then a=sendrecv, relayed through the proxy); the other side sees both"
            }
            Op::BlindTransfer => {
                "the client transfers an answered call (REFER in the dialog, relayed) or \
                 is transferred: the transferee's new INVITE reaches the SIPp target"
            }
            Op::Presence => {
                "the client watches a colleague whose status is set through the API: \
                 it shows what docs/phones.md says for Busy, Away, Available, Unavailable"
            }
            Op::TcpIdle => {
                "registered over TCP, silent past the daemon's tcp_idle_timeout_secs \
                 (2 s here): a call still reaches it over its connection and is answered"
            }
            Op::StaleFlow => {
                "registered over TCP, then killed (its connection closes): a call to it \
                 gets its final answer within a second of the authenticated INVITE"
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Cell {
    Pass,
    Fails(String),
    Na(String),
}

impl Cell {
    fn render(&self) -> String {
        match self {
            Cell::Pass => "pass".into(),
            Cell::Fails(why) => format!("fails: {why}"),
            Cell::Na(why) => format!("n/a: {why}"),
        }
    }
}

#[derive(Default)]
struct Matrix {
    cells: Mutex<BTreeMap<(Op, Client), Cell>>,
    /// Everything a failed check had to say (logs), printed when the test fails.
    details: Mutex<Vec<String>>,
}

/// A check's outcome: Err with a short reason (for the table) and the long story.
type Check = Result<(), (String, String)>;

fn fail<T>(short: impl Into<String>, long: impl Into<String>) -> Result<T, (String, String)> {
    Err((short.into(), long.into()))
}

impl Matrix {
    fn set(&self, op: Op, client: Client, cell: Cell) {
        let mut cells = self.cells.lock().unwrap_or_else(|e| e.into_inner());
        let merged = match (cells.remove(&(op, client)), cell) {
            (None, c) => c,
            (Some(Cell::Fails(a)), Cell::Fails(b)) if a == b => Cell::Fails(a),
            (Some(Cell::Fails(a)), Cell::Fails(b)) => Cell::Fails(format!("{a}; {b}")),
            (Some(Cell::Fails(a)), _) | (Some(_), Cell::Fails(a)) => Cell::Fails(a),
            (Some(Cell::Na(a)), _) | (Some(_), Cell::Na(a)) => Cell::Na(a),
            (Some(Cell::Pass), Cell::Pass) => Cell::Pass,
        };
        cells.insert((op, client), merged);
    }

    fn na(&self, op: Op, client: Client, why: &str) {
        self.set(op, client, Cell::Na(why.into()));
    }

    /// Records the outcome of `f` for every client in `clients` (a panic inside counts as
    /// a failure, with its message).
    fn check(&self, op: Op, clients: &[Client], f: impl FnOnce() -> Check) {
        let outcome = catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panicked".into());
            let first = msg.lines().next().unwrap_or_default().to_string();
            Err((first, msg))
        });
        let names: Vec<&str> = clients.iter().map(|c| c.name()).collect();
        match outcome {
            Ok(()) => clients.iter().for_each(|&c| self.set(op, c, Cell::Pass)),
            Err((short, long)) => {
                let short: String = short.replace('|', "/").chars().take(100).collect();
                self.details
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(format!(
                        "=== {} / {}: {short}\n{long}",
                        op.title(),
                        names.join(", ")
                    ));
                clients
                    .iter()
                    .for_each(|&c| self.set(op, c, Cell::Fails(short.clone())));
            }
        }
    }

    fn render(&self) -> String {
        let cells = self.cells.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::from("| operation |");
        for c in CLIENTS {
            out.push_str(&format!(" {} |", c.name()));
        }
        out.push_str("\n| --- |");
        for _ in CLIENTS {
            out.push_str(" --- |");
        }
        out.push('\n');
        for op in OPS {
            out.push_str(&format!("| {} |", op.title()));
            for c in CLIENTS {
                let cell = cells
                    .get(&(op, c))
                    .cloned()
                    .unwrap_or_else(|| Cell::Fails("not run".into()));
                out.push_str(&format!(" {} |", cell.render()));
            }
            out.push('\n');
        }
        out
    }

    fn failures(&self) -> Vec<String> {
        let cells = self.cells.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::new();
        for op in OPS {
            for c in CLIENTS {
                match cells.get(&(op, c)) {
                    Some(Cell::Pass) | Some(Cell::Na(_)) => {}
                    Some(Cell::Fails(why)) => {
                        out.push(format!("{} / {}: {why}", op.title(), c.name()))
                    }
                    None => out.push(format!("{} / {}: not run", op.title(), c.name())),
                }
            }
        }
        out
    }
}

// ---------------------------------------------------------------------------------------
// The daemon

/// The people of the test policy: one per client (no `algorithms`: whatever the default
/// challenge offers), a SIPp callee for transfers and cancels, and a ring-all team.
const PEOPLE: &str = r#"
[users.alice]
extension = "1001"
display_name = "Alice"
[users.alice.sip]
password = "alice-secret"

[users.bob]
extension = "1002"
display_name = "Bob"
[users.bob.sip]
password = "bob-secret"

[users.carol]
extension = "1003"
display_name = "Carol"
[users.carol.sip]
password = "carol-secret"

[users.dave]
extension = "1004"
display_name = "Dave"
[users.dave.sip]
password = "dave-secret"

[users.erin]
extension = "1005"
display_name = "Erin"
[users.erin.sip]
password = "erin-secret"

[users.frank]
extension = "1006"
display_name = "Frank"
[users.frank.sip]
password = "frank-secret"

[teams.phones]
name = "Phones"
extension = "2000"
members = ["alice", "bob", "carol"]
strategy = "ring_all"
"#;

/// A daemon with the default config: the harness writes listen addresses, the API, the
/// state directory and the policy path, and `[auth] required = true` as the embedded
/// config has it; `extra` is empty except for the TCP group's idle timeout.
fn daemon(extra: &str) -> Daemon {
    Daemon::start(Options {
        policy: PEOPLE.into(),
        extra: extra.into(),
        ..Options::default()
    })
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Tp {
    Udp,
    Tcp,
}

impl Tp {
    fn name(self) -> &'static str {
        match self {
            Tp::Udp => "udp",
            Tp::Tcp => "tcp",
        }
    }
}

fn secret(user: &str) -> String {
    format!("{user}-secret")
}

fn ext(user: &str) -> &'static str {
    match user {
        "alice" => "1001",
        "bob" => "1002",
        "carol" => "1003",
        "dave" => "1004",
        "erin" => "1005",
        "frank" => "1006",
        other => panic!("no extension for {other}"),
    }
}

/// Waits until the daemon's log has a line holding every one of `parts`.
fn daemon_logged(d: &Daemon, parts: &[&str], limit: Duration) -> bool {
    wait_until(limit, Duration::from_millis(50), || {
        d.log()
            .lines()
            .any(|l| parts.iter().all(|p| l.contains(p)))
            .then_some(())
    })
    .is_some()
}

// ---------------------------------------------------------------------------------------
// Phones

const REGISTER_WITHIN: Duration = Duration::from_secs(15);
const EVENT_WITHIN: Duration = Duration::from_secs(10);

/// A softphone running headless (baresip, linphonec or twinkle-console), registered as
/// `user`; killed on drop.
struct Phone {
    client: Client,
    user: String,
    proc: Proc,
    /// Its SIP port (UDP or TCP listener).
    port: u16,
    /// baresip's UDP console port.
    cons: u16,
    tp: Tp,
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            for n in chars.by_ref() {
                if n.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

impl Phone {
    /// baresip with the cons (UDP console), presence and menu modules: `auto` answers
    /// calls at once (`answermode=auto`), else they ring; it watches the presence of
    /// `watch`.
    fn baresip(d: &Daemon, user: &str, tp: Tp, auto: bool, watch: &[&str]) -> Phone {
        require("baresip");
        let dir = tempfile::tempdir_in(d.dir.path()).unwrap().keep();
        // sip_listen's port for UDP and TCP, the next one for TLS.
        let port = free_ports(2);
        let cons = free_port();
        std::fs::write(
            dir.join("config"),
            format!(
                "poll_method epoll\nsip_listen 127.0.0.1:{port}\nnet_interface 127.0.0.1\n\
                 audio_source ausine,440\naudio_player aubridge,nullspk\nausrc_srate 48000\n\
                 ausrc_channels 2\nmodule_path /usr/lib/baresip/modules\nmodule g711.so\n\
                 module ausine.so\nmodule aubridge.so\nmodule cons.so\ncons_listen 127.0.0.1:{cons}\n\
                 module_app account.so\nmodule_app contact.so\nmodule_app presence.so\n\
                 module_app menu.so\n"
            ),
        )
        .unwrap();
        let transport = match tp {
            Tp::Udp => "",
            Tp::Tcp => ";transport=tcp",
        };
        std::fs::write(
            dir.join("accounts"),
            format!(
                "<sip:{user}@{REALM}>;auth_pass={};outbound=\"sip:127.0.0.1:{}{transport}\";\
                 regint=600;answermode={}\n",
                secret(user),
                d.port,
                if auto { "auto" } else { "manual" }
            ),
        )
        .unwrap();
        let contacts: String = watch
            .iter()
            .map(|w| format!("<sip:{w}@{REALM}>;presence=p2p\n"))
            .collect();
        std::fs::write(dir.join("contacts"), contacts).unwrap();
        let mut cmd = Command::new("baresip");
        // -t: it quits by itself after 120 s should the guard somehow not kill it; -s: it
        // logs the SIP messages (its console shows no hold state: the SDP does).
        cmd.arg("-f").arg(&dir).args(["-t", "120", "-s"]);
        let proc = Proc::spawn("baresip", &mut cmd, dir.join("baresip.log"), false);
        Phone {
            client: Client::Baresip,
            user: user.into(),
            proc,
            port,
            cons,
            tp,
        }
    }

    /// linphonec (`-a`: answers calls at once when `auto`), commands on its stdin; over
    /// TCP it has only a TCP listener, over UDP only a UDP one.
    fn linphone(d: &Daemon, user: &str, tp: Tp, auto: bool) -> Phone {
        require("linphonec");
        let home = tempfile::tempdir_in(d.dir.path()).unwrap().keep();
        // linphonec opens no SIP socket unless this exists.
        std::fs::create_dir_all(home.join(".local/share/linphone")).unwrap();
        let port = free_port();
        let rtp = free_ports(2);
        let (udp, tcp) = match tp {
            Tp::Udp => (port, 0),
            Tp::Tcp => (0, port),
        };
        let t = tp.name();
        let rc = home.join("linphonerc");
        std::fs::write(
            &rc,
            format!(
                "[sip]\nsip_port={udp}\nsip_tcp_port={tcp}\nsip_tls_port=0\nbind_address=127.0.0.1\n\
                 default_proxy=0\nregister_only_when_network_is_up=0\n[net]\nauto_net_state_mon=0\n\
                 [rtp]\naudio_rtp_port={rtp}-{rtp}\n[video]\nenabled=0\ncapture=0\ndisplay=0\n\
                 [proxy_0]\nreg_proxy=<sip:127.0.0.1:{dp};transport={t}>\n\
                 reg_route=<sip:127.0.0.1:{dp};transport={t};lr>\n\
                 reg_identity=\"{user}\" <sip:{user}@{REALM}>\nreg_expires=600\nreg_sendregister=1\n\
                 publish=0\n[auth_info_0]\nusername={user}\npasswd={pw}\nrealm={REALM}\ndomain={REALM}\n",
                dp = d.port,
                pw = secret(user),
            ),
        )
        .unwrap();
        let mut cmd = Command::new("linphonec");
        cmd.arg("--pipe").arg("-c").arg(&rc).env("HOME", &home);
        if auto {
            cmd.arg("-a");
        }
        // It ignores SIGTERM (the guard SIGKILLs it); at the end of its input it would quit,
        // so its stdin stays open (piped).
        let proc = Proc::spawn("linphonec", &mut cmd, home.join("linphone.log"), true);
        Phone {
            client: Client::Linphone,
            user: user.into(),
            proc,
            port,
            cons: 0,
            tp,
        }
    }

    /// twinkle-console with a profile in its own $HOME, commands on its stdin; `auto`
    /// turns auto answer on once registered. Not a GUI: no X display needed.
    fn twinkle(d: &Daemon, user: &str, tp: Tp) -> Phone {
        require("twinkle-console");
        let home = tempfile::tempdir_in(d.dir.path()).unwrap().keep();
        let conf = home.join(".twinkle");
        std::fs::create_dir_all(&conf).unwrap();
        let port = free_port();
        let rtp = free_ports(4);
        // No sound card: the devices are never opened for signalling.
        std::fs::write(
            conf.join("twinkle.sys"),
            format!(
                "sip_port={port}\nrtp_port={rtp}\ndev_ringtone=alsa:null\ndev_speaker=alsa:null\n\
                 dev_mic=alsa:null\nvalidate_audio_dev=no\nlog_show_sip=yes\nplay_ringtone=no\n\
                 play_ringback=no\n"
            ),
        )
        .unwrap();
        std::fs::write(
            conf.join(format!("{user}.cfg")),
            format!(
                "user_name={user}\nuser_domain={REALM}\nuser_display={user}\nauth_realm={REALM}\n\
                 auth_name={user}\nauth_pass={}\noutbound_proxy=127.0.0.1:{dp}\n\
                 all_requests_to_proxy=yes\nregistrar=127.0.0.1:{dp}\nregistration_time=600\n\
                 register_at_startup=yes\nsip_transport={}\nask_user_to_refer=no\n\
                 codecs=g711u,g711a\n",
                secret(user),
                tp.name(),
                dp = d.port,
            ),
        )
        .unwrap();
        let mut cmd = Command::new("twinkle-console");
        cmd.arg(format!("{user}.cfg")).env("HOME", &home);
        let proc = Proc::spawn("twinkle-console", &mut cmd, home.join("console.log"), true);
        Phone {
            client: Client::Twinkle,
            user: user.into(),
            proc,
            port,
            cons: 0,
            tp,
        }
    }

    /// Waits for its registration (200) to `d`.
    fn registered(&mut self, d: &Daemon) -> Check {
        let ok = match self.client {
            Client::Baresip => wait_until(REGISTER_WITHIN, Duration::from_millis(50), || {
                let log = strip_ansi(&self.proc.log());
                (log.contains("{0/UDP/v4} 200 OK") || log.contains("{0/TCP/v4} 200 OK"))
                    .then_some(())
            })
            .is_some(),
            // Its Contact says its transport (over TCP with the connection's port).
            Client::Linphone => daemon_logged(
                d,
                &[
                    &format!("binding stored aor={} ", self.user),
                    &format!("transport={}", self.tp.name()),
                ],
                REGISTER_WITHIN,
            ),
            Client::Twinkle => wait_until(REGISTER_WITHIN, Duration::from_millis(50), || {
                self.proc
                    .log_contains("registration succeeded")
                    .then_some(())
            })
            .is_some(),
            _ => unreachable!(),
        };
        if !ok {
            return fail(
                format!("no registration within {REGISTER_WITHIN:?}"),
                format!(
                    "(SIP port {})\n{}\n--- daemon:\n{}",
                    self.port,
                    self.log(),
                    d.log()
                ),
            );
        }
        // The daemon stored it.
        if !daemon_logged(
            d,
            &[&format!("binding stored aor={} ", self.user)],
            Duration::from_secs(2),
        ) {
            return fail("registered but not stored", d.log());
        }
        Ok(())
    }

    fn log(&self) -> String {
        strip_ansi(&self.proc.log())
    }

    fn mark(&self) -> usize {
        self.proc.log_len()
    }

    fn since(&self, mark: usize) -> String {
        strip_ansi(&self.proc.log_since(mark))
    }

    /// Waits until the output after `mark` holds `pattern` (or one of its `|`-separated
    /// alternatives).
    fn wait(&self, mark: usize, pattern: &str, what: &str) -> Check {
        let got = wait_until(EVENT_WITHIN, Duration::from_millis(30), || {
            let out = self.since(mark);
            pattern.split('|').any(|p| out.contains(p)).then_some(())
        });
        match got {
            Some(()) => Ok(()),
            None => fail(
                format!("{} {what}: no {pattern:?}", self.client.name()),
                format!("--- {} log:\n{}", self.client.name(), self.since(mark)),
            ),
        }
    }

    /// A console command.
    fn command(&mut self, baresip: &str, linphone: &str, twinkle: &str) {
        match self.client {
            Client::Baresip => {
                let s = UdpSocket::bind("127.0.0.1:0").unwrap();
                s.send_to(format!("{baresip}\n").as_bytes(), ("127.0.0.1", self.cons))
                    .unwrap();
            }
            Client::Linphone => assert!(self.proc.send_line(linphone), "linphonec has gone"),
            Client::Twinkle => assert!(self.proc.send_line(twinkle), "twinkle has gone"),
            _ => unreachable!(),
        }
    }

    fn dial(&mut self, target: &str) {
        let uri = format!("sip:{target}@{REALM}");
        self.command(
            &format!("/dial {uri}"),
            &format!("call {uri}"),
            &format!("call {uri}"),
        );
    }

    fn hang_up(&mut self) {
        self.command("/hangup", "terminate", "bye");
    }

    fn hold(&mut self) {
        self.command("/hold", "pause", "hold");
    }

    fn resume(&mut self) {
        self.command("/resume", "resume", "retrieve");
    }

    fn transfer(&mut self, target: &str) {
        let uri = format!("sip:{target}@{REALM}");
        self.command(
            &format!("/transfer {uri}"),
            &format!("transfer {uri}"),
            &format!("transfer {uri}"),
        );
    }

    /// What its console prints, to recognise each step.
    fn says(&self) -> &'static Says {
        match self.client {
            Client::Baresip => &BARESIP_SAYS,
            Client::Linphone => &LINPHONE_SAYS,
            Client::Twinkle => &TWINKLE_SAYS,
            _ => unreachable!(),
        }
    }
}

/// What a phone's console prints at each step (alternatives split by `|`).
struct Says {
    /// A call (either direction) answered.
    established: &'static str,
    /// The other side ended an answered call.
    ended_by_far_end: &'static str,
    /// An incoming call rings (not answered by itself).
    ringing: &'static str,
    /// Its outgoing call rings at the far end (180).
    far_end_ringing: &'static str,
    /// Its own hold, and its own resume, went through (the answer to its re-INVITE came).
    holding: (&'static str, &'static str),
    /// The far end held it, and resumed.
    held: (&'static str, &'static str),
}

const BARESIP_SAYS: Says = Says {
    established: "Call established:",
    ended_by_far_end: "session closed:",
    ringing: "Incoming call from:",
    far_end_ringing: "180 Ringing",
    // The answers' SDP.
    holding: ("a=recvonly", "a=sendrecv"),
    held: ("a=sendonly", "a=sendrecv"),
};

const LINPHONE_SAYS: Says = Says {
    established: " connected.",
    ended_by_far_end: " ended (",
    ringing: "Receiving new incoming call",
    far_end_ringing: " ringing.",
    holding: ("is now paused.", "Media streams established"),
    // Its media streams start again when it is resumed.
    held: ("has been paused by", "Media streams established"),
};

const TWINKLE_SAYS: Says = Says {
    // "call established." when it answers, "far end answered call." when it called.
    established: " call established.|far end answered call.",
    ended_by_far_end: "far end ended call.",
    ringing: "incoming call",
    far_end_ringing: "received 180",
    holding: ("re-INVITE successful", "re-INVITE successful"),
    held: ("hold", "retrieve"),
};

/// A SIPp caller (dave) calls `target` with a caller `scenario`; `extra` is the row's
/// fifth field (hold or ring time in ms, or the expected final code).
fn sipp_calls<'a>(d: &'a Daemon, scenario: &str, target: &str, extra: &str) -> Sipp<'a> {
    Sipp::new(d, scenario)
        .row(call_row("dave", "dave-secret", target, extra))
        .auth_uri(&format!("{target}@{REALM}"))
        .limit(Duration::from_secs(30))
}

/// A SIPp callee registered as `user` running `scenario` for `calls` calls. A user's SIPp
/// callees of one daemon all listen on one port: each registration replaces the last
/// instead of adding a contact nobody answers at (which every later call would fork to).
fn sipp_callee(d: &Daemon, user: &str, scenario: &str, calls: usize, args: &[&str]) -> Uas {
    static PORTS: Mutex<BTreeMap<(u16, String), u16>> = Mutex::new(BTreeMap::new());
    let port = *PORTS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry((d.port, user.to_string()))
        .or_insert_with(free_port);
    let uas = Uas::start_on("127.0.0.1", port, scenario, calls, args);
    uas.register(d, user, &secret(user));
    uas
}

fn sipp_ok(run: &SippRun, what: &str, d: &Daemon) -> Check {
    if run.success {
        Ok(())
    } else {
        fail(
            format!("SIPp {what}: {}", run.status),
            format!("{}\n--- daemon:\n{}", run.report(), d.log()),
        )
    }
}

// ---------------------------------------------------------------------------------------
// Groups

/// Each client registers over UDP and over TCP.
fn group_register(m: &Matrix) {
    let d = daemon("");
    for tp in [Tp::Udp, Tp::Tcp] {
        let op = match tp {
            Tp::Udp => Op::RegisterUdp,
            Tp::Tcp => Op::RegisterTcp,
        };
        m.check(op, &[Client::Baresip], || {
            let mut p = Phone::baresip(&d, "alice", tp, true, &[]);
            p.registered(&d)?;
            let want = format!("{{0/{}/v4}} 200 OK", tp.name().to_uppercase());
            if !p.log().contains(&want) {
                return fail(format!("no {want:?}"), p.log());
            }
            Ok(())
        });
        m.check(op, &[Client::Linphone], || {
            let mut p = Phone::linphone(&d, "bob", tp, true);
            p.registered(&d)
        });
        m.check(op, &[Client::Twinkle], || {
            let mut p = Phone::twinkle(&d, "carol", tp);
            p.registered(&d)?;
            let via = format!("Via: SIP/2.0/{} ", tp.name().to_uppercase());
            let tlog = std::fs::read_to_string(
                p.proc
                    .log_path
                    .parent()
                    .unwrap()
                    .join(".twinkle/twinkle.log"),
            )
            .unwrap_or_default();
            if !tlog.contains(&via) {
                return fail(format!("no {via:?} in its SIP log"), tlog);
            }
            Ok(())
        });
        m.check(op, &[Client::Sipp], || {
            let port = free_port();
            let mut s = Sipp::new(&d, "register.xml").row(row("dave", "dave-secret", port, 600));
            if tp == Tp::Tcp {
                s = s.tcp();
            }
            let run = s.run();
            sipp_ok(&run, "register.xml", &d)
        });
        m.check(op, &[Client::Sipsak], || sipsak_register(&d, "erin", tp));
    }
}

/// sipsak's usrloc mode: one REGISTER with a Contact, answered after the challenge.
/// (Its request URI is the daemon's address, without a port: sipsak cuts the last digit
/// of a five-digit port given in `-s`, so the port goes in `-r`.)
fn sipsak_register(d: &Daemon, user: &str, tp: Tp) -> Check {
    require("sipsak");
    let contact_port = free_port();
    let mut cmd = Command::new("sipsak");
    cmd.args(["-U", "-i", "-vv", "-x", "600"])
        .args(["-C", &format!("sip:{user}@127.0.0.1:{contact_port}")])
        .args(["-s", &format!("sip:{user}@127.0.0.1")])
        .args(["-r", &d.port.to_string()])
        .args(["-u", user, "-a", &secret(user)])
        .arg(format!("--transport={}", tp.name()));
    let log = d.dir.path().join(format!("sipsak-{}.log", tp.name()));
    let mut p = Proc::spawn("sipsak", &mut cmd, log, false);
    let status = p.wait_exit(Duration::from_secs(15));
    if !status.is_some_and(|s| s.success()) {
        return fail(format!("sipsak exited {status:?}"), p.log());
    }
    if !daemon_logged(
        d,
        &[
            &format!("binding stored aor={user} "),
            &format!("contact=sip:{user}@127.0.0.1:{contact_port}"),
        ],
        Duration::from_secs(2),
    ) {
        return fail("not stored", d.log());
    }
    Ok(())
}

/// An answered call from `caller` to `callee`; `by_caller` says who hangs up; the other
/// side must see the BYE.
fn phone_call(caller: &mut Phone, callee: &mut Phone, by_caller: bool) -> Check {
    let (mc, me) = (caller.mark(), callee.mark());
    caller.dial(ext(&callee.user));
    callee.wait(me, callee.says().established, "answering")?;
    caller.wait(mc, caller.says().established, "calling")?;
    let (mc, me) = (caller.mark(), callee.mark());
    if by_caller {
        caller.hang_up();
        callee.wait(
            me,
            callee.says().ended_by_far_end,
            "getting the caller's BYE",
        )?;
    } else {
        callee.hang_up();
        caller.wait(
            mc,
            caller.says().ended_by_far_end,
            "getting the callee's BYE",
        )?;
    }
    Ok(())
}

/// baresip (alice) and linphonec (bob) call each other; both hold, transfer and cancel.
fn group_pair(m: &Matrix) {
    let d = daemon("");
    let mut b = Phone::baresip(&d, "alice", Tp::Udp, true, &[]);
    let mut l = Phone::linphone(&d, "bob", Tp::Udp, true);
    let both = [Client::Baresip, Client::Linphone];
    if let Err((short, long)) = b.registered(&d).and_then(|()| l.registered(&d)) {
        for op in [
            Op::CallerHangsUp,
            Op::CalleeHangsUp,
            Op::HoldResume,
            Op::BlindTransfer,
            Op::CallerCancel,
        ] {
            m.check(op, &both, || fail(short.clone(), long.clone()));
        }
        return;
    }
    m.check(Op::CallerHangsUp, &both, || {
        phone_call(&mut b, &mut l, true)
    });
    reset(&mut [&mut b, &mut l]);
    m.check(Op::CallerHangsUp, &both, || {
        phone_call(&mut l, &mut b, true)
    });
    reset(&mut [&mut b, &mut l]);
    m.check(Op::CalleeHangsUp, &both, || {
        phone_call(&mut b, &mut l, false)
    });
    reset(&mut [&mut b, &mut l]);
    m.check(Op::CalleeHangsUp, &both, || {
        phone_call(&mut l, &mut b, false)
    });
    reset(&mut [&mut b, &mut l]);

    // Hold and resume: baresip holds linphone, then linphone holds baresip.
    m.check(Op::HoldResume, &both, || hold_resume(&mut b, &mut l));
    reset(&mut [&mut b, &mut l]);
    m.check(Op::HoldResume, &both, || hold_resume(&mut l, &mut b));
    reset(&mut [&mut b, &mut l]);

    // Blind transfer: baresip transfers linphone to frank (SIPp), and back.
    m.check(
        Op::BlindTransfer,
        &[Client::Baresip, Client::Linphone, Client::Sipp],
        || blind_transfer(&d, &mut b, &mut l),
    );
    reset(&mut [&mut b, &mut l]);
    m.check(
        Op::BlindTransfer,
        &[Client::Baresip, Client::Linphone, Client::Sipp],
        || blind_transfer(&d, &mut l, &mut b),
    );
    reset(&mut [&mut b, &mut l]);

    // Caller CANCEL: each calls frank's ringing SIPp and hangs up first.
    for p in [&mut b, &mut l] {
        let client = p.client;
        m.check(Op::CallerCancel, &[client], || caller_cancels(&d, p));
        reset(&mut [p]);
    }
}

/// `holder` calls `held`, holds and resumes; `held` shows `on_hold` then `on_resume`
/// after each; the daemon relayed a=sendonly and a=sendrecv re-INVITEs.
fn hold_resume(holder: &mut Phone, held: &mut Phone) -> Check {
    let (on_hold, on_resume) = held.says().held;
    let (mh, md) = (holder.mark(), held.mark());
    holder.dial(ext(&held.user));
    held.wait(md, held.says().established, "answering")?;
    holder.wait(mh, holder.says().established, "calling")?;
    let (held_done, resumed_done) = holder.says().holding;
    let (mh, md) = (holder.mark(), held.mark());
    holder.hold();
    held.wait(md, on_hold, "being held")?;
    holder.wait(mh, held_done, "holding")?;
    let (mh, md) = (holder.mark(), held.mark());
    holder.resume();
    held.wait(md, on_resume, "being resumed")?;
    holder.wait(mh, resumed_done, "resuming")?;
    let md = held.mark();
    holder.hang_up();
    held.wait(md, held.says().ended_by_far_end, "getting the BYE")?;
    Ok(())
}

/// `transferor` calls `transferee` and transfers it to frank (a SIPp callee): frank gets
/// the transferee's INVITE and answers; the transferee hangs up.
fn blind_transfer(d: &Daemon, transferor: &mut Phone, transferee: &mut Phone) -> Check {
    let frank = sipp_callee(d, "frank", "uas_answer.xml", 1, &[]);
    let (mr, me) = (transferor.mark(), transferee.mark());
    transferor.dial(ext(&transferee.user));
    transferee.wait(me, transferee.says().established, "answering")?;
    transferor.wait(mr, transferor.says().established, "calling")?;
    let me = transferee.mark();
    transferor.transfer("frank");
    // The transferee's new call to frank is answered.
    transferee.wait(
        me,
        transferee.says().established,
        "calling the transfer target",
    )?;
    transferee.hang_up();
    let run = frank.finish(Duration::from_secs(15));
    sipp_ok(&run, "transfer target", d)?;
    // The new call is the transferee's, authenticated and routed by the daemon (which
    // asserts the caller's identity).
    let invite = run
        .requests("INVITE")
        .into_iter()
        .next()
        .unwrap_or_default();
    let asserted = header_values(&invite, "P-Asserted-Identity").join(" ");
    if !asserted.contains(&format!("sip:{}@", ext(&transferee.user))) {
        return fail(
            format!("the target's call is not {}'s", transferee.user),
            format!("{invite}\n--- transferee:\n{}", transferee.since(me)),
        );
    }
    Ok(())
}

/// `caller` calls frank's ringing SIPp and hangs up before an answer.
fn caller_cancels(d: &Daemon, caller: &mut Phone) -> Check {
    let frank = sipp_callee(d, "frank", "uas_ring_cancelled.xml", 1, &[]);
    let mc = caller.mark();
    caller.dial("1006");
    caller.wait(mc, caller.says().far_end_ringing, "calling a ringing phone")?;
    caller.hang_up();
    let run = frank.finish(Duration::from_secs(15));
    // Its scenario passed: the CANCEL came, the 487 was acknowledged.
    sipp_ok(&run, "ringing callee", d)
}

/// Ends whatever call a failed check left behind, so the next check starts idle.
fn reset(phones: &mut [&mut Phone]) {
    for p in phones.iter_mut() {
        p.hang_up();
    }
    std::thread::sleep(Duration::from_millis(300));
}

/// twinkle-console (carol) with SIPp on the other side: calls both ways, hangs up from
/// either side, holds, cancels; SIPp's caller CANCEL to a ringing twinkle.
fn group_twinkle(m: &Matrix) {
    let d = daemon("");
    let mut t = Phone::twinkle(&d, "carol", Tp::Udp);
    let pair = [Client::Twinkle, Client::Sipp];
    if let Err((short, long)) = t.registered(&d) {
        for op in [
            Op::CallerHangsUp,
            Op::CalleeHangsUp,
            Op::HoldResume,
            Op::CallerCancel,
        ] {
            m.check(op, &pair, || fail(short.clone(), long.clone()));
        }
        return;
    }
    t.command("", "", "auto_answer -a on");
    // SIPp calls twinkle and hangs up.
    m.check(Op::CallerHangsUp, &pair, || {
        let mt = t.mark();
        let run = sipp_calls(&d, "call_answered.xml", "1003", "1000").run();
        sipp_ok(&run, "caller", &d)?;
        t.wait(mt, t.says().ended_by_far_end, "getting the caller's BYE")
    });
    reset(&mut [&mut t]);
    // twinkle calls SIPp and hangs up.
    m.check(Op::CallerHangsUp, &pair, || {
        let dave = sipp_callee(&d, "dave", "uas_answer.xml", 1, &[]);
        let mt = t.mark();
        t.dial("1004");
        t.wait(mt, t.says().established, "calling")?;
        t.hang_up();
        sipp_ok(&dave.finish(Duration::from_secs(15)), "callee", &d)
    });
    reset(&mut [&mut t]);
    // SIPp calls twinkle, twinkle hangs up.
    m.check(Op::CalleeHangsUp, &pair, || {
        let mt = t.mark();
        let caller = sipp_calls(&d, "call_callee_hangs_up.xml", "1003", "").spawn();
        t.wait(mt, t.says().established, "answering")?;
        t.hang_up();
        sipp_ok(&caller.finish(Duration::from_secs(20)), "caller", &d)
    });
    reset(&mut [&mut t]);
    // twinkle calls SIPp, SIPp hangs up.
    m.check(Op::CalleeHangsUp, &pair, || {
        let dave = sipp_callee(
            &d,
            "dave",
            "uas_answer_callee_hangs_up.xml",
            1,
            &["-d", "500"],
        );
        let mt = t.mark();
        t.dial("1004");
        t.wait(mt, t.says().established, "calling")?;
        t.wait(mt, t.says().ended_by_far_end, "getting the callee's BYE")?;
        sipp_ok(&dave.finish(Duration::from_secs(15)), "callee", &d)
    });
    reset(&mut [&mut t]);
    // twinkle holds and resumes SIPp: SIPp gets a=sendonly, then a=sendrecv.
    m.check(Op::HoldResume, &pair, || {
        let dave = sipp_callee(&d, "dave", "uas_answer.xml", 1, &[]);
        let mt = t.mark();
        t.dial("1004");
        t.wait(mt, t.says().established, "calling")?;
        let mt = t.mark();
        t.hold();
        t.wait(mt, "re-INVITE successful", "holding")?;
        let mt = t.mark();
        t.resume();
        t.wait(mt, "re-INVITE successful", "resuming")?;
        t.hang_up();
        let run = dave.finish(Duration::from_secs(15));
        sipp_ok(&run, "held callee", &d)?;
        let invites = run.requests("INVITE");
        let sdp: Vec<&str> = invites
            .iter()
            .skip(1)
            .map(|i| {
                if i.contains("a=sendonly") || i.contains("a=inactive") {
                    "hold"
                } else {
                    "resume"
                }
            })
            .collect();
        if sdp != ["hold", "resume"] {
            return fail(
                format!("re-INVITEs seen by SIPp: {sdp:?}"),
                invites.join("\n"),
            );
        }
        Ok(())
    });
    reset(&mut [&mut t]);
    // twinkle cancels its call to a ringing SIPp.
    m.check(Op::CallerCancel, &[Client::Twinkle], || {
        caller_cancels(&d, &mut t)
    });
    reset(&mut [&mut t]);
    // SIPp cancels its call to a ringing twinkle.
    t.command("", "", "auto_answer -a off");
    m.check(Op::CallerCancel, &[Client::Sipp, Client::Twinkle], || {
        let mt = t.mark();
        let run = sipp_calls(&d, "call_cancel.xml", "1003", "1000").run();
        sipp_ok(&run, "caller", &d)?;
        t.wait(mt, "far end cancelled call", "getting the CANCEL")
    });
}

/// The ring-all team (alice on baresip, bob on linphonec, carol on twinkle-console): SIPp
/// calls it; linphonec answers, the others are cancelled. Then baresip, linphonec and SIPp
/// watch dave's presence as it changes through the API.
fn group_team_presence(m: &Matrix) {
    let d = daemon("");
    let mut b = Phone::baresip(&d, "alice", Tp::Udp, false, &["dave"]);
    let mut l = Phone::linphone(&d, "bob", Tp::Udp, true);
    let mut t = Phone::twinkle(&d, "carol", Tp::Udp);
    let all = [
        Client::Baresip,
        Client::Linphone,
        Client::Twinkle,
        Client::Sipp,
    ];
    let up = b
        .registered(&d)
        .and_then(|()| l.registered(&d))
        .and_then(|()| t.registered(&d));
    if let Err((short, long)) = up {
        m.check(Op::RingAll, &all, || fail(short.clone(), long.clone()));
        m.check(Op::Presence, &[Client::Baresip, Client::Linphone], || {
            fail(short.clone(), long.clone())
        });
        return;
    }
    m.check(Op::RingAll, &all, || {
        let (mb, ml, mt) = (b.mark(), l.mark(), t.mark());
        let run = sipp_calls(&d, "call_answered.xml", "2000", "1000").run();
        sipp_ok(&run, "caller", &d)?;
        l.wait(ml, l.says().established, "answering the team call")?;
        b.wait(mb, b.says().ringing, "ringing for the team")?;
        b.wait(mb, "session closed", "cancelled")?;
        t.wait(mt, t.says().ringing, "ringing for the team")?;
        t.wait(mt, "far end cancelled call", "cancelled")?;
        l.wait(ml, l.says().ended_by_far_end, "getting the caller's BYE")?;
        if !daemon_logged(
            &d,
            &["call ended", "dialled=2000", "answered_by=bob"],
            EVENT_WITHIN,
        ) {
            return fail("not answered by bob", d.log());
        }
        Ok(())
    });
    // twinkle transfers its call with linphonec to frank (SIPp).
    reset(&mut [&mut b, &mut l, &mut t]);
    m.check(Op::BlindTransfer, &[Client::Twinkle], || {
        blind_transfer(&d, &mut t, &mut l)
    });
    drop(t);
    reset(&mut [&mut b, &mut l]);

    // Presence: linphonec adds dave as a friend (it subscribes); baresip watches him
    // from its contacts; SIPp (erin) subscribes and reads the PIDF. Dave's phone (SIPp)
    // is registered: without a device he would be offline whatever his status.
    let dave_phone = Sipp::new(&d, "register.xml")
        .row(row("dave", &secret("dave"), free_port(), 3600))
        .run();
    if !dave_phone.success {
        let report = dave_phone.report();
        m.check(Op::Presence, &[Client::Baresip, Client::Linphone], || {
            fail("dave's phone did not register", report.clone())
        });
        return;
    }
    l.command("", "friend add \"Dave\" sip:dave@switchboard.local", "");
    let watcher = Sipp::new(&d, "subscribe.xml")
        .row(call_row("erin", "erin-secret", "dave", "4"))
        .auth_uri(&format!("dave@{REALM}"))
        .arg("-key")
        .arg("event")
        .arg("presence")
        .spawn();
    // (status, what linphonec prints, what baresip prints, the PIDF's activity) as
    // docs/phones.md says.
    let steps = [
        ("busy", "is Busy", "Busy", "<rpid:busy/>"),
        ("away", "is Away", "Offline", "<rpid:away/>"),
        ("available", "is Online", "Online", "<basic>open</basic>"),
        (
            "unavailable",
            "is Offline",
            "Offline",
            "<basic>closed</basic>",
        ),
    ];
    let subscribed = daemon_logged(
        &d,
        &["subscription stored", "subscriber=bob "],
        EVENT_WITHIN,
    ) && daemon_logged(
        &d,
        &["subscription stored", "subscriber=alice "],
        EVENT_WITHIN,
    ) && wait_until(EVENT_WITHIN, Duration::from_millis(30), || {
        watcher.logs_so_far().contains("notified").then_some(())
    })
    .is_some();
    let mut linphone_seen = Ok(());
    let mut baresip_seen = Ok(());
    for (status, in_linphone, in_baresip, _) in steps {
        let (mb, ml) = (b.mark(), l.mark());
        let (code, body) = admin_api(
            &d,
            "PUT",
            "/v1/presence/dave/status",
            &format!(r#"{{"status":"{status}"}}"#),
        );
        assert_eq!(code, 200, "{body}");
        if linphone_seen.is_ok() {
            linphone_seen = l.wait(
                ml,
                &format!("Friend \"Dave\" <sip:dave@{REALM}> {in_linphone}"),
                status,
            );
        }
        if baresip_seen.is_ok() {
            baresip_seen = b.wait(mb, &format!("to {in_baresip}"), status);
        }
    }
    let why_not = if subscribed {
        String::new()
    } else {
        format!("did not subscribe:\n{}", d.log())
    };
    m.check(Op::Presence, &[Client::Linphone], || {
        linphone_seen.map_err(|(s, l)| (s, format!("{l}\n{why_not}")))
    });
    m.check(Op::Presence, &[Client::Baresip], || {
        baresip_seen.map_err(|(s, l)| (s, format!("{l}\n{why_not}")))
    });
    m.check(Op::Presence, &[Client::Sipp], || {
        let run = watcher.finish(Duration::from_secs(20));
        sipp_ok(&run, "watcher", &d)?;
        let bodies: Vec<String> = run
            .requests("NOTIFY")
            .into_iter()
            .map(|n| {
                n.split_once("\r\n\r\n")
                    .map(|(_, b)| b.to_string())
                    .unwrap_or_default()
            })
            .collect();
        for (status, _, _, activity) in steps {
            if !bodies.iter().any(|b| b.contains(activity)) {
                return fail(
                    format!("no {activity} for {status}"),
                    bodies.join("\n---\n"),
                );
            }
        }
        Ok(())
    });
}

/// Phones registered over TCP with a 2 s idle timeout: silent past it, each still gets
/// its call over its connection; killed, a call to it fails at once.
fn group_tcp(m: &Matrix) {
    let d = daemon("[limits]\ntcp_idle_timeout_secs = 2\n");
    let mut phones = [
        Phone::baresip(&d, "alice", Tp::Tcp, true, &[]),
        Phone::linphone(&d, "bob", Tp::Tcp, true),
        Phone::twinkle(&d, "carol", Tp::Tcp),
    ];
    let mut ready = Vec::new();
    for p in phones.iter_mut() {
        let r = p.registered(&d);
        if p.client == Client::Twinkle {
            p.command("", "", "auto_answer -a on");
        }
        ready.push(r);
    }
    // Silent past the idle timeout (a fixed wait is what is being tested).
    std::thread::sleep(Duration::from_millis(3500));
    for (p, r) in phones.iter_mut().zip(&ready) {
        let client = p.client;
        m.check(Op::TcpIdle, &[client], || {
            r.clone()?;
            let mp = p.mark();
            let run = sipp_calls(&d, "call_answered.xml", ext(&p.user), "300").run();
            sipp_ok(&run, "caller", &d)?;
            p.wait(mp, p.says().ended_by_far_end, "getting the BYE")
        });
    }
    for (p, r) in phones.iter_mut().zip(&ready) {
        let client = p.client;
        m.check(Op::StaleFlow, &[client], || {
            r.clone()?;
            let closed = d.log().matches("registered flow closed").count();
            p.proc.kill();
            let seen = wait_until(EVENT_WITHIN, Duration::from_millis(20), || {
                (d.log().matches("registered flow closed").count() > closed).then_some(())
            });
            if seen.is_none() {
                return fail("the daemon did not see its connection close", d.log());
            }
            let run = sipp_calls(&d, "call_expect_final.xml", ext(&p.user), "").run();
            sipp_ok(&run, "caller", &d)?;
            let times = timed_received(&run);
            let challenge = times.iter().find(|(_, m)| status_of(m) == 407);
            let last = times
                .iter()
                .rev()
                .find(|(_, m)| status_of(m) >= 400 && status_of(m) != 407);
            match (challenge, last) {
                (Some((t0, _)), Some((t1, _))) if t1 - t0 < 1.0 => Ok(()),
                (Some((t0, _)), Some((t1, fin))) => fail(
                    format!("final {} after {:.1} s", status_of(fin), t1 - t0),
                    run.report(),
                ),
                _ => fail("no final answer", run.report()),
            }
        });
    }
}

// ---------------------------------------------------------------------------------------

#[test]
fn interop_matrix() {
    let started = Instant::now();
    let m = Matrix::default();
    std::thread::scope(|s| {
        s.spawn(|| group_register(&m));
        s.spawn(|| group_pair(&m));
        s.spawn(|| group_twinkle(&m));
        s.spawn(|| group_team_presence(&m));
        s.spawn(|| group_tcp(&m));
    });
    for c in [Client::Sipsak] {
        for op in [
            Op::CallerHangsUp,
            Op::CalleeHangsUp,
            Op::CallerCancel,
            Op::RingAll,
            Op::HoldResume,
            Op::BlindTransfer,
            Op::Presence,
            Op::TcpIdle,
            Op::StaleFlow,
        ] {
            m.na(
                op,
                c,
                "no phone: it sends one request at a time (its INVITE mode calls only itself)",
            );
        }
    }

    m.na(
        Op::Presence,
        Client::Twinkle,
        "twinkle-console has no buddy list; it only publishes its own presence (`presence -b`)",
    );
    for op in [Op::TcpIdle, Op::StaleFlow] {
        m.na(
            op,
            Client::Sipp,
            "SIPp is the caller of these checks; its scenarios keep no registered TCP flow open",
        );
    }
    let doc = render_doc(&m);
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/interop.md");
    let details = m.details.lock().unwrap().join("\n\n");
    if std::env::var_os("SWITCHBOARD_UPDATE_INTEROP").is_some() {
        std::fs::write(&path, &doc).unwrap();
    } else {
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == doc,
            "docs/interop.md differs from what this run saw (SWITCHBOARD_UPDATE_INTEROP=1 \
             rewrites it):\n{}\n{details}",
            m.render()
        );
    }
    let failures = m.failures();
    assert!(
        failures.is_empty(),
        "interop failures:\n{}\n\n{details}",
        failures.join("\n")
    );
    eprintln!("interop matrix in {:?}", started.elapsed());
}

/// The version of a client's Debian package.
fn version(c: Client) -> String {
    Command::new("dpkg-query")
        .args(["-W", "-f", "${Version}", c.package()])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

fn render_doc(m: &Matrix) -> String {
    let mut doc = String::from(
        "# Interop matrix\n\n\
         Generated by `crates/switchboard/tests/interop_e2e.rs` from what it saw: every \
         client below, headless on loopback, against the daemon with its **default** config \
         (one MD5 challenge; only ports, the policy and, for the TCP rows, \
         `tcp_idle_timeout_secs = 2` differ). The test fails when this file differs from \
         its run; regenerate it with\n\n\
         \x20   SWITCHBOARD_UPDATE_INTEROP=1 cargo test -p switchboard --test interop_e2e\n\n\
         A cell is `pass`, `fails: why` (the test fails), or `n/a: why` (the client cannot \
         do it).\n\n\
         Clients (Debian packages):\n\n",
    );
    for c in CLIENTS {
        doc.push_str(&format!(
            "- {}: `{}` {}\n",
            c.name(),
            c.package(),
            version(c)
        ));
    }
    doc.push_str(
        "\ntwinkle-console is twinkle's command-line phone: it runs headless here (no X \
         display, no sound card), driven on its stdin with a profile in its own $HOME. \
         baresip is driven through its UDP console (`cons`), linphonec on its stdin.\n",
    );
    doc.push_str("\nWhat each row checks:\n\n");
    for op in OPS {
        doc.push_str(&format!("- **{}**: {}.\n", op.title(), op.meaning()));
    }
    doc.push('\n');
    doc.push_str(&m.render());
    doc
}
