//! baresip, the softphone from Debian, headless: a console on a UDP port for commands, a
//! sine tone for a microphone, no speaker.

use super::{free_port, free_ports, require, wait_until, Daemon, Proc, REALM};
use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::time::Duration;

/// baresip, headless, registered as `user` through `outbound` (the daemon's address it
/// sends to) and answering calls by itself; commands go to its UDP console.
pub struct Baresip {
    pub proc: Proc,
    cons: u16,
}

impl Baresip {
    /// Its password is `<user>-secret`; it has registered when this returns.
    pub fn start(d: &Daemon, user: &str, outbound: SocketAddr) -> Baresip {
        Baresip::start_with(d, user, outbound, &[], "")
    }

    /// As [`Baresip::start`], with more application modules (`mwi.so`) and account
    /// parameters (`;mwi=yes`, `;answermode=manual`).
    pub fn start_with(
        d: &Daemon,
        user: &str,
        outbound: SocketAddr,
        modules: &[&str],
        params: &str,
    ) -> Baresip {
        Baresip::start_full(d, user, outbound, modules, params, 440, None, false)
    }

    /// As [`Baresip::start`], its microphone a sine of `hz`, and what it hears in each
    /// call written to `record` (the sndfile module: `*-dec.wav`, 16-bit PCM).
    pub fn start_recording(
        d: &Daemon,
        user: &str,
        outbound: SocketAddr,
        hz: u32,
        record: &std::path::Path,
    ) -> Baresip {
        Baresip::start_full(d, user, outbound, &[], "", hz, Some(record), false)
    }

    /// As [`Baresip::start`], registered (and reached) over a TCP connection of its own.
    pub fn start_tcp(d: &Daemon, user: &str, outbound: SocketAddr) -> Baresip {
        Baresip::start_full(d, user, outbound, &[], "", 440, None, true)
    }

    #[allow(clippy::too_many_arguments)]
    fn start_full(
        d: &Daemon,
        user: &str,
        outbound: SocketAddr,
        modules: &[&str],
        params: &str,
        hz: u32,
        record: Option<&std::path::Path>,
        tcp: bool,
    ) -> Baresip {
        require("baresip");
        let mut modules: String = modules
            .iter()
            .map(|m| format!("module_app {m}\n"))
            .collect();
        if let Some(dir) = record {
            modules.push_str(&format!("module sndfile.so\nsnd_path {}\n", dir.display()));
        }
        // It answers by itself unless the parameters say otherwise (`;answermode=manual`:
        // it rings until told to answer).
        let answer = if params.contains("answermode=") {
            ""
        } else {
            ";answermode=auto"
        };
        let dir = tempfile::tempdir_in(d.dir.path()).unwrap().keep();
        // sip_listen's port for UDP and TCP, the next one for TLS.
        let port = free_ports(2);
        let cons = free_port();
        std::fs::write(
            dir.join("config"),
            format!(
                "poll_method epoll\nsip_listen 127.0.0.1:{port}\nnet_interface 127.0.0.1\n\
                 audio_source ausine,{hz}\naudio_player aubridge,nullspk\nausrc_srate 48000\n\
                 ausrc_channels 2\nmodule_path /usr/lib/baresip/modules\nmodule g711.so\n\
                 module ausine.so\nmodule aubridge.so\nmodule cons.so\ncons_listen 127.0.0.1:{cons}\n\
                 module_app account.so\nmodule_app menu.so\n{modules}"
            ),
        )
        .unwrap();
        let account = format!(
            "<sip:{user}@{REALM}>;auth_pass={user}-secret;outbound=\"sip:{outbound}{tp}\";\
             regint=600{answer}{params}",
            tp = if tcp { ";transport=tcp" } else { "" }
        );
        // baresip 1.0's mwi module subscribes again, from a timer that runs once just after
        // it starts, for each subscription it already has, appending to the list it walks:
        // when the registration's 200 is read before that timer runs, it subscribes
        // forever. Its account is then made once the console answers (the timer has run).
        let mwi = modules.contains("mwi.so");
        let accounts = if mwi {
            String::new()
        } else {
            format!("{account}\n")
        };
        std::fs::write(dir.join("accounts"), accounts).unwrap();
        let mut cmd = Command::new("baresip");
        // -t: it quits by itself after 120 s should the guard somehow not kill it; -s: it
        // logs the SIP messages.
        cmd.arg("-f").arg(&dir).args(["-t", "120", "-s"]);
        let mut proc = Proc::spawn("baresip", &mut cmd, dir.join("baresip.log"), false);
        if mwi {
            proc.wait_for_log("baresip is ready", Duration::from_secs(20));
            let phone = Baresip { proc, cons };
            phone.command(&format!("/uanew {account}"));
            let mut proc = phone.proc;
            proc.wait_for_log("200 OK", Duration::from_secs(20));
            return Baresip { proc, cons };
        }
        proc.wait_for_log("200 OK", Duration::from_secs(20));
        Baresip { proc, cons }
    }

    /// Sends a console command (`/dial sip:…`, `/hangup`).
    pub fn command(&self, line: &str) {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.send_to(format!("{line}\n").as_bytes(), ("127.0.0.1", self.cons))
            .unwrap();
    }

    /// Presses `key` (a digit, `*` or `#`): during a call it is sent as DTMF (RFC 4733).
    pub fn key(&self, key: char) {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.send_to(key.to_string().as_bytes(), ("127.0.0.1", self.cons))
            .unwrap();
    }

    /// Its output after `mark`, colours left out.
    pub fn since(&self, mark: usize) -> String {
        let raw = self.proc.log_since(mark);
        let mut out = String::with_capacity(raw.len());
        let mut chars = raw.chars().peekable();
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

    /// Waits until its output after `mark` holds `pattern`.
    pub fn wait(&self, mark: usize, pattern: &str, what: &str) {
        let seen = wait_until(Duration::from_secs(10), Duration::from_millis(30), || {
            self.since(mark).contains(pattern).then_some(())
        });
        assert!(
            seen.is_some(),
            "baresip {what}: no {pattern:?} in\n{}",
            self.since(mark)
        );
    }
}
