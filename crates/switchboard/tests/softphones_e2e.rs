//! Real softphones register to the daemon: baresip (MD5) and linphone (SHA-256 only),
//! headless, over loopback (see ../shared/INTEROP.md for what they need).

mod common;

use common::*;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Kills a peer process on drop, also when the test panics.
struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn baresip_registers() {
    require("baresip");
    let mut d = Daemon::start(Options::default());
    let dir = tempfile::tempdir().unwrap();
    let sip_port = free_port();
    let cons_port = free_port();
    std::fs::write(
        dir.path().join("config"),
        format!(
            "poll_method epoll\nsip_listen 127.0.0.1:{sip_port}\nnet_interface 127.0.0.1\n\
             audio_source ausine,440\naudio_player aubridge,nullspk\nausrc_srate 48000\nausrc_channels 2\n\
             module_path /usr/lib/baresip/modules\nmodule g711.so\nmodule ausine.so\nmodule aubridge.so\n\
             module_app account.so\nmodule_app cons.so\ncons_listen 127.0.0.1:{cons_port}\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("accounts"),
        format!(
            "<sip:alice@switchboard.local>;auth_pass=alice-secret;outbound=\"sip:127.0.0.1:{}\";regint=600;answermode=auto\n",
            d.port
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("baresip.log")).unwrap();
    let _phone = Peer(
        Command::new("baresip")
            .arg("-f")
            .arg(dir.path())
            .args(["-t", "60"])
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start baresip"),
    );
    d.wait_for_log("binding stored aor=alice", Duration::from_secs(20));
    let baresip_log = std::fs::read_to_string(dir.path().join("baresip.log")).unwrap();
    // baresip's Contact user is not the AoR user: the binding is its own Contact.
    assert!(
        d.log().contains(&format!(
            "@127.0.0.1:{sip_port} source=127.0.0.1:{sip_port}"
        )),
        "{}\n{baresip_log}",
        d.log()
    );
}

#[test]
fn linphone_registers_with_sha256() {
    require("linphonec");
    let mut d = Daemon::start(Options::default());
    let home = tempfile::tempdir().unwrap();
    // linphonec opens no SIP socket unless this exists.
    std::fs::create_dir_all(home.path().join(".local/share/linphone")).unwrap();
    let sip_port = free_port();
    let rtp = free_port();
    let rc = home.path().join("linphonerc");
    std::fs::write(
        &rc,
        format!(
            "[sip]\nsip_port={sip_port}\nsip_tcp_port=0\nsip_tls_port=0\nbind_address=127.0.0.1\ndefault_proxy=0\n\
             register_only_when_network_is_up=0\n[net]\nauto_net_state_mon=0\n[rtp]\naudio_rtp_port={rtp}-{rtp}\n\
             [proxy_0]\nreg_proxy=<sip:127.0.0.1:{};transport=udp>\nreg_identity=\"SHA user\" <sip:shauser@switchboard.local>\n\
             reg_expires=600\nreg_sendregister=1\npublish=0\n\
             [auth_info_0]\nusername=shauser\npasswd=sha-secret\nrealm=switchboard.local\ndomain=switchboard.local\nalgorithm=SHA-256\n",
            d.port
        ),
    )
    .unwrap();
    let log = std::fs::File::create(home.path().join("linphone.log")).unwrap();
    let _phone = Peer(
        Command::new("linphonec")
            .args(["--pipe", "-c"])
            .arg(&rc)
            .arg("-a")
            .env("HOME", home.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start linphonec"),
    );
    // shauser may only use SHA-256: a binding means linphone answered a SHA-256 challenge.
    d.wait_for_log("binding stored aor=shauser", Duration::from_secs(20));
    assert!(
        d.log().contains(&format!("source=127.0.0.1:{sip_port}")),
        "{}",
        d.log()
    );
    assert!(!d.log().contains("authentication failed"), "{}", d.log());
}
