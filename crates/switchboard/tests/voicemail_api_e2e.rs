//! Mailboxes through the API and the CLI, and voicemail by mail, end to end: the real
//! daemon, its store seeded before it starts (messages, their audio and mail notices
//! written into the state directory's redb file while the daemon is down: no call leaves
//! a message yet in this slice), and for mail a loopback SMTP server the test starts
//! (Debian's python3-aiosmtpd, writing each message into a Maildir).
//!
//! - The API: a person lists their mailbox (counts and messages, newest first), fetches a
//!   message's audio (the very WAV seeded), marks it heard, deletes one (gone, and still
//!   gone after `kill -9` and a restart); another person's token is refused, a mailbox
//!   that is off or unknown is not found; a member uses their team's mailbox. Greeting and
//!   name: a good WAV is kept and read back; a 44.1 kHz stereo file made with sox is
//!   refused with the sox line that converts it, which the test runs and whose output is
//!   then taken; too long, too big, not WAV at all and another media type are refused
//!   with their own statuses.
//! - The CLI (`switchboard voicemail …`) against the same daemon: list, fetch (equal to
//!   the seeded audio), heard, delete, greeting upload (good and bad), a team's list.
//! - Mail: a message with two addresses is mailed to both once the relay, down at first,
//!   is up (retry), with the audio attached (decoded by Python's email parser: the same
//!   bytes), who called, whom, when and how long; a notice whose message was deleted is
//!   dropped; `/metrics` counts them.

mod common;

use common::mail::{mail_files, read_mail, smtp_sink};
use common::*;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;
use switchboard::core::mailboxes::{MailNotice, MessageRow};
use switchboard_store::tables::{voicemail_key, VOICEMAIL, VOICEMAIL_AUDIO, VOICEMAIL_OUTBOX};
use switchboard_store::{RedbStore, Store, Write};

const ALICE_TOKEN: &str = "alice-token-0123456789";
const BOB_TOKEN: &str = "bob-token-0123456789ab";

/// Debian's sox, which makes a recording in another format (and converts it back).
const SOX: &str = "/usr/bin/sox";

fn policy() -> String {
    format!(
        "[users.alice]\nextension = \"1001\"\ndisplay_name = \"Alice Archer\"\napi_token = \"{ALICE_TOKEN}\"\n\
         schedule = \"office\"\n\
         [users.alice.voicemail]\nemail = [\"alice@example.com\", \"alice@home.example\"]\n\n\
         [users.bob]\nextension = \"1002\"\napi_token = \"{BOB_TOKEN}\"\n\n\
         [users.carol]\nextension = \"1003\"\n[users.carol.voicemail]\nenabled = false\n\n\
         [teams.sales]\nname = \"Sales\"\nextension = \"2000\"\nmembers = [\"alice\"]\n\n\
         [schedules.office]\ntimezone = \"Europe/Stockholm\"\nhours = [\"mon-fri 08:00-17:00\"]\n"
    )
}

/// `secs` seconds of a tone, as the daemon keeps audio (8000 Hz mono 16-bit PCM).
fn tone(secs: f64, pitch: f64) -> Vec<u8> {
    let n = (secs * 8000.0) as usize;
    let samples: Vec<i16> = (0..n)
        .map(|i| ((i as f64 * pitch * std::f64::consts::TAU / 8000.0).sin() * 8000.0) as i16)
        .collect();
    switchboard_media::wav::encode(&samples)
}

/// A message left for `mailbox` at `received` (Unix seconds).
fn message(mailbox: &str, received: u64, seq: u32, caller: &str) -> MessageRow {
    MessageRow {
        id: format!("{received:020}-{seq}"),
        mailbox: mailbox.into(),
        received,
        duration_ms: 2000,
        caller: caller.into(),
        caller_name: Some("Pat Doe".into()),
        called: "1001".into(),
        original: None,
        reason: "no_answer".into(),
        profile: None,
        call_id: format!("call-{seq}"),
        heard: false,
    }
}

/// The writes that keep `m` with its audio `wav` (as the core's deposit makes them).
fn kept(m: &MessageRow, wav: &[u8]) -> Vec<Write> {
    let key = voicemail_key(&m.mailbox, &m.id);
    vec![
        Write::put(VOICEMAIL_AUDIO, key.clone(), wav.to_vec()),
        Write::put(VOICEMAIL, key, serde_json::to_vec(m).unwrap()),
    ]
}

/// Stops the daemon (`kill -9`), writes `writes` into its store, and starts it again.
fn seed(d: &mut Daemon, writes: &[Write]) {
    d.kill9();
    {
        let store = RedbStore::open(&d.state_dir()).expect("the daemon's store opens");
        store.commit(writes).expect("the seed is stored");
    }
    d.restart();
}

/// A request without a body.
fn get(d: &Daemon, method: &str, path: &str, token: Option<&str>) -> HttpBytes {
    http_exchange(d, method, path, token, None, b"")
}

/// A JSON request.
fn send_json(d: &Daemon, method: &str, path: &str, token: &str, body: &str) -> HttpBytes {
    http_exchange(
        d,
        method,
        path,
        Some(token),
        Some("application/json"),
        body.as_bytes(),
    )
}

/// A recording uploaded as `content_type`.
fn upload(d: &Daemon, path: &str, content_type: Option<&str>, wav: &[u8]) -> HttpBytes {
    http_exchange(d, "PUT", path, Some(ALICE_TOKEN), content_type, wav)
}

/// `switchboard voicemail --api … --token alice's …ARGS`: (success, stdout, stderr).
fn cli(d: &Daemon, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("voicemail")
        .args(["--api", &format!("127.0.0.1:{}", d.api_port)])
        .args(["--token", ALICE_TOKEN])
        .args(args)
        .env_remove("SWITCHBOARD_TOKEN")
        .output()
        .expect("the CLI runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const ALICE: &str = "/v1/users/alice/voicemail";

#[test]
fn a_mailbox_through_the_api_survives_a_restart_and_takes_only_good_recordings() {
    let mut d = Daemon::start(Options {
        policy: policy(),
        ..Options::default()
    });
    let older = message("user:alice", 1_800_000_000, 1, "+15550100");
    let newer = message("user:alice", 1_800_000_600, 2, "1002");
    let team = message("team:sales", 1_800_000_100, 3, "+15550199");
    let (older_wav, newer_wav) = (tone(2.0, 440.0), tone(1.5, 660.0));
    let mut writes = kept(&older, &older_wav);
    writes.extend(kept(&newer, &newer_wav));
    writes.extend(kept(&team, &tone(1.0, 330.0)));
    seed(&mut d, &writes);
    assert!(
        d.log_contains("voicemail restored messages=3"),
        "{}",
        d.log()
    );

    // The list: counts, newest first, every field.
    let r = get(&d, "GET", ALICE, Some(ALICE_TOKEN));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let list = r.json();
    assert_eq!(list["mailbox"], "user:alice");
    assert_eq!(list["counts"], serde_json::json!({ "new": 2, "old": 0 }));
    let ids: Vec<&str> = list["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [newer.id.as_str(), older.id.as_str()]);
    let first = &list["messages"][0];
    assert_eq!(first["received"], 1_800_000_600);
    assert_eq!(first["received_at"], "2027-01-15T08:10:00Z");
    assert_eq!(first["duration_ms"], 2000);
    assert_eq!(first["caller"], "1002");
    assert_eq!(first["caller_name"], "Pat Doe");
    assert_eq!(first["reason"], "no_answer");
    assert_eq!(first["heard"], false);

    // Who may: not bob, not without a token; the admin may; off or unknown: not found.
    assert_eq!(get(&d, "GET", ALICE, Some(BOB_TOKEN)).status, 403);
    assert_eq!(get(&d, "GET", ALICE, None).status, 401);
    assert_eq!(get(&d, "GET", ALICE, Some(ADMIN_TOKEN)).status, 200);
    let off = get(&d, "GET", "/v1/users/carol/voicemail", Some(ADMIN_TOKEN));
    assert_eq!(off.status, 404);
    assert!(
        off.json()["error"].as_str().unwrap().contains("turned off"),
        "{}",
        off.json()
    );
    assert_eq!(
        get(&d, "GET", "/v1/users/zed/voicemail", Some(ADMIN_TOKEN)).status,
        404
    );
    // A member uses the team's mailbox; others may not.
    let sales = get(&d, "GET", "/v1/teams/sales/voicemail", Some(ALICE_TOKEN));
    assert_eq!(sales.status, 200);
    assert_eq!(sales.json()["messages"][0]["id"], team.id.as_str());
    assert_eq!(
        get(&d, "GET", "/v1/teams/sales/voicemail", Some(BOB_TOKEN)).status,
        403
    );

    // One message, and its audio: the very WAV seeded.
    let one = get(
        &d,
        "GET",
        &format!("{ALICE}/{}", older.id),
        Some(ALICE_TOKEN),
    );
    assert_eq!(
        (one.status, &one.json()["id"]),
        (200, &older.id.clone().into())
    );
    let audio = get(
        &d,
        "GET",
        &format!("{ALICE}/{}/audio", older.id),
        Some(ALICE_TOKEN),
    );
    assert_eq!(audio.status, 200);
    assert_eq!(audio.header("content-type"), Some("audio/wav"));
    assert_eq!(audio.body, older_wav);
    assert_eq!(
        get(
            &d,
            "GET",
            &format!("{ALICE}/nosuch/audio"),
            Some(ALICE_TOKEN)
        )
        .status,
        404
    );

    // Heard: the list says so.
    let path = format!("{ALICE}/{}", older.id);
    let r = send_json(&d, "PUT", &path, ALICE_TOKEN, r#"{"heard": true}"#);
    assert_eq!((r.status, &r.json()["heard"]), (200, &true.into()));
    let bad = send_json(&d, "PUT", &path, ALICE_TOKEN, r#"{"heard": "yes"}"#);
    assert_eq!((bad.status, &bad.json()["field"]), (400, &"heard".into()));
    let list = get(&d, "GET", ALICE, Some(ALICE_TOKEN)).json();
    assert_eq!(list["counts"], serde_json::json!({ "new": 1, "old": 1 }));
    assert_eq!(list["messages"][1]["heard"], true);

    // Delete: gone, its audio too.
    let path = format!("{ALICE}/{}", newer.id);
    let r = get(&d, "DELETE", &path, Some(ALICE_TOKEN));
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["deleted"]["id"], newer.id.as_str());
    assert_eq!(
        r.json()["counts"],
        serde_json::json!({ "new": 0, "old": 1 })
    );
    assert_eq!(get(&d, "GET", &path, Some(ALICE_TOKEN)).status, 404);
    assert_eq!(get(&d, "DELETE", &path, Some(ALICE_TOKEN)).status, 404);
    assert_eq!(
        get(&d, "GET", &format!("{path}/audio"), Some(ALICE_TOKEN)).status,
        404
    );

    assert!(
        d.log_contains(&format!(
            "voicemail message deleted mailbox=user:alice id={} by=alice via=Api",
            newer.id
        )),
        "{}",
        d.log()
    );

    // kill -9 and a restart: still gone, still heard.
    d.restart();
    let list = get(&d, "GET", ALICE, Some(ALICE_TOKEN)).json();
    assert_eq!(list["counts"], serde_json::json!({ "new": 0, "old": 1 }));
    assert_eq!(list["messages"].as_array().unwrap().len(), 1);
    assert_eq!(list["messages"][0]["id"], older.id.as_str());
    assert_eq!(list["messages"][0]["heard"], true);
    let audio = get(
        &d,
        "GET",
        &format!("{ALICE}/{}/audio", older.id),
        Some(ALICE_TOKEN),
    );
    assert_eq!(audio.body, older_wav);

    // Greeting: a good one is kept and read back, the same bytes.
    let greeting = format!("{ALICE}/greeting");
    assert_eq!(get(&d, "GET", &greeting, Some(ALICE_TOKEN)).status, 404);
    let good = tone(3.0, 500.0);
    let r = upload(&d, &greeting, Some("audio/wav"), &good);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        r.json(),
        serde_json::json!({ "mailbox": "user:alice", "recording": "greeting", "recorded": true, "duration_ms": 3000 })
    );
    let back = get(&d, "GET", &greeting, Some(ALICE_TOKEN));
    assert_eq!(back.status, 200);
    assert_eq!(back.header("content-type"), Some("audio/wav"));
    assert_eq!(back.body, good);
    assert_eq!(
        upload(&d, &greeting, Some("audio/wav"), &good).status,
        200,
        "again"
    );
    assert_eq!(
        http_exchange(
            &d,
            "PUT",
            &greeting,
            Some(BOB_TOKEN),
            Some("audio/wav"),
            &good
        )
        .status,
        403
    );

    // A 44.1 kHz stereo file: 422, saying what it is and the sox line; that line's output
    // is taken.
    require(SOX);
    let dir = tempfile::tempdir().unwrap();
    let stereo = dir.path().join("stereo.wav");
    let made = Command::new(SOX)
        .args(["-n", "-r", "44100", "-c", "2", "-b", "16"])
        .arg(&stereo)
        .args(["synth", "1", "sine", "440"])
        .status()
        .unwrap();
    assert!(made.success());
    let r = upload(
        &d,
        &greeting,
        Some("audio/wav"),
        &std::fs::read(&stereo).unwrap(),
    );
    assert_eq!(r.status, 422);
    let why = r.json()["error"].as_str().unwrap().to_string();
    assert_eq!(r.json()["field"], "body");
    assert!(why.contains("44100 Hz, 2 channels, 16-bit PCM"), "{why}");
    let line = why.split("convert it with: ").nth(1).expect("a sox line");
    let converted = dir.path().join("greeting.wav");
    let args: Vec<String> = line
        .split_whitespace()
        .skip(1)
        .map(|a| match a {
            "INPUT" => stereo.display().to_string(),
            "greeting.wav" => converted.display().to_string(),
            a => a.to_string(),
        })
        .collect();
    assert!(Command::new(SOX).args(&args).status().unwrap().success());
    let r = upload(&d, &greeting, None, &std::fs::read(&converted).unwrap());
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["duration_ms"], 1000);

    // Too long, too big, not WAV, sent as something else.
    let r = upload(&d, &greeting, Some("audio/wav"), &tone(60.2, 400.0));
    assert_eq!(r.status, 422);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("longer than 60 s"),
        "{}",
        r.json()
    );
    let name = format!("{ALICE}/name");
    assert_eq!(upload(&d, &name, None, &tone(6.0, 400.0)).status, 413);
    let mut padded = tone(4.0, 400.0);
    padded.resize(90_000, 0);
    let r = upload(&d, &name, None, &padded);
    assert_eq!((r.status, &r.json()["field"]), (413, &"body".into()));
    // A body that says it is over 2 MB is refused before a byte of it is read.
    let mut s = TcpStream::connect(("127.0.0.1", d.api_port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "PUT {greeting} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {ALICE_TOKEN}\r\n\
         Content-Type: audio/wav\r\nContent-Length: {}\r\n\r\n",
        3 * 1024 * 1024
    )
    .unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
    let r = upload(
        &d,
        &greeting,
        Some("audio/wav"),
        b"ID3\x04\0\0 not a wav file",
    );
    assert_eq!(r.status, 415);
    assert!(
        r.json()["error"].as_str().unwrap().contains("sox INPUT"),
        "{}",
        r.json()
    );
    let r = upload(&d, &greeting, Some("text/plain"), &good);
    assert_eq!(
        (r.status, &r.json()["field"]),
        (415, &"content-type".into())
    );
    // The greeting kept is still the converted one (its samples: sox's header may differ).
    let back = get(&d, "GET", &greeting, Some(ALICE_TOKEN));
    let samples = |wav: &[u8]| switchboard_media::wav::decode(wav, 8000 * 60).unwrap();
    assert_eq!(
        samples(&back.body),
        samples(&std::fs::read(&converted).unwrap())
    );

    // A name, then removed; the greeting removed.
    assert_eq!(upload(&d, &name, None, &tone(2.0, 400.0)).status, 200);
    let r = get(&d, "DELETE", &name, Some(ALICE_TOKEN));
    assert_eq!((r.status, &r.json()["recorded"]), (200, &false.into()));
    assert_eq!(get(&d, "GET", &name, Some(ALICE_TOKEN)).status, 404);
    assert_eq!(get(&d, "DELETE", &greeting, Some(ALICE_TOKEN)).status, 200);
    assert_eq!(get(&d, "GET", &greeting, Some(ALICE_TOKEN)).status, 404);
    assert!(
        d.log_contains(
            "voicemail recording removed mailbox=user:alice recording=greeting by=alice via=Api"
        ),
        "{}",
        d.log()
    );
}

#[test]
fn the_cli_lists_fetches_marks_deletes_and_uploads() {
    let mut d = Daemon::start(Options {
        policy: policy(),
        ..Options::default()
    });
    let m = message("user:alice", 1_800_000_000, 1, "+15550100");
    let other = message("user:alice", 1_800_000_060, 2, "1002");
    let team = message("team:sales", 1_800_000_100, 3, "+15550199");
    let wav = tone(2.0, 440.0);
    let mut writes = kept(&m, &wav);
    writes.extend(kept(&other, &tone(1.0, 300.0)));
    writes.extend(kept(&team, &tone(1.0, 330.0)));
    seed(&mut d, &writes);

    let (ok, out, err) = cli(&d, &["list", "alice"]);
    assert!(ok, "{err}");
    assert!(out.starts_with("user:alice: 2 new, 0 heard\n"), "{out}");
    assert!(
        out.contains(&m.id) && out.contains("Pat Doe (+15550100)"),
        "{out}"
    );

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("message.wav");
    let (ok, out, err) = cli(&d, &["fetch", "alice", &m.id, "-o", file.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(out.contains("saved to"), "{out}");
    assert_eq!(std::fs::read(&file).unwrap(), wav);

    let (ok, out, err) = cli(&d, &["heard", "alice", &m.id]);
    assert!(ok && out.contains(" heard "), "{out}{err}");
    let (ok, out, _) = cli(&d, &["heard", "alice", &m.id, "--new"]);
    assert!(ok && out.contains(" new "), "{out}");
    let (ok, out, err) = cli(&d, &["delete", "alice", &other.id]);
    assert!(ok, "{err}");
    assert_eq!(
        out.trim(),
        format!("deleted {}; 1 new, 0 heard left", other.id)
    );
    let (ok, _, err) = cli(&d, &["delete", "alice", &other.id]);
    assert!(!ok && err.starts_with("error: 404: no message"), "{err}");

    // Greetings: a good file is kept; another format is refused with the sox line.
    let good = dir.path().join("good.wav");
    std::fs::write(&good, tone(3.0, 500.0)).unwrap();
    let (ok, out, err) = cli(&d, &["greeting", "alice", good.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "greeting kept (3.0 s)");
    let saved = dir.path().join("saved.wav");
    let (ok, _, err) = cli(&d, &["greeting", "alice", "-o", saved.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert_eq!(std::fs::read(&saved).unwrap(), tone(3.0, 500.0));
    let bad = dir.path().join("bad.wav");
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 16000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&bad, spec).unwrap();
    for _ in 0..3200 {
        w.write_sample(0i16).unwrap();
    }
    w.finalize().unwrap();
    let (ok, _, err) = cli(&d, &["name", "alice", bad.to_str().unwrap()]);
    assert!(!ok, "{err}");
    assert!(
        err.contains("error: 422: the WAV file is 16000 Hz, 2 channels")
            && err.contains("sox INPUT -r 8000 -c 1 -b 16 -e signed-integer name.wav")
            && err.ends_with("(body)\n"),
        "{err}"
    );
    let (ok, out, err) = cli(&d, &["greeting", "alice", "--remove"]);
    assert!(ok && out.trim() == "greeting removed", "{out}{err}");

    // A team's mailbox, for a member.
    let (ok, out, err) = cli(&d, &["--team", "list", "sales"]);
    assert!(ok, "{err}");
    assert!(
        out.starts_with("team:sales: 1 new, 0 heard\n") && out.contains(&team.id),
        "{out}"
    );
    // Someone else's: refused, with why.
    let (ok, _, err) = cli(&d, &["list", "bob"]);
    assert!(!ok && err.starts_with("error: 403: "), "{err}");
}

// ---------------------------------------------------------------------------------------
// Mail

#[test]
fn a_message_is_mailed_to_each_address_with_its_audio_once_the_relay_is_up() {
    let smtp_port = free_port();
    let sink_dir = tempfile::Builder::new()
        .prefix("switchboard-vm-mail-")
        .tempdir()
        .unwrap();
    let mut d = Daemon::start(Options {
        policy: policy(),
        extra: format!(
            "[mail]\nrelay = \"127.0.0.1\"\nport = {smtp_port}\nfrom = \"switchboard@example.com\"\n\
             retry_first_secs = 1\nretry_max_secs = 2\n"
        ),
        ..Options::default()
    });
    // Left a minute ago (a notice older than give_up_hours would be given up).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 60;
    let mut m = message("user:alice", now, 1, "+15550100");
    m.duration_ms = 4200;
    let wav = tone(4.2, 440.0);
    let to = vec![
        "alice@example.com".to_string(),
        "alice@home.example".to_string(),
    ];
    let notice = |m: &MessageRow| MailNotice {
        to: to.clone(),
        message: m.clone(),
    };
    let mut writes = kept(&m, &wav);
    writes.push(Write::put(
        VOICEMAIL_OUTBOX,
        voicemail_key(&m.mailbox, &m.id),
        serde_json::to_vec(&notice(&m)).unwrap(),
    ));
    // A notice whose message was deleted meanwhile (no audio): dropped.
    let gone = message("user:alice", now, 2, "1002");
    writes.push(Write::put(
        VOICEMAIL_OUTBOX,
        voicemail_key(&gone.mailbox, &gone.id),
        serde_json::to_vec(&notice(&gone)).unwrap(),
    ));
    seed(&mut d, &writes);

    // The relay is down: tried, and tried again.
    d.wait_for_log(
        "voicemail mail not sent: will retry",
        Duration::from_secs(10),
    );
    let sink = smtp_sink(sink_dir.path(), smtp_port);
    let files = wait_until(Duration::from_secs(20), Duration::from_millis(100), || {
        let f = mail_files(sink_dir.path());
        (f.len() >= 2).then_some(f)
    })
    .unwrap_or_else(|| panic!("no mails:\n{}", d.log()));
    let mut seen = Vec::new();
    for f in &files {
        let (text, attachment) = read_mail(f, sink_dir.path());
        let to = text.lines().next().unwrap().to_string();
        seen.push(to);
        assert!(
            text.contains("Subject: Voicemail from Pat Doe (+15550100) (0:05)"),
            "{text}"
        );
        assert!(text.contains("Attachment: audio/wav voicemail-"), "{text}");
        assert!(
            text.contains("A new voicemail message for Alice Archer."),
            "{text}"
        );
        assert!(text.contains("Length:  0:05"), "{text}");
        // On alice's clock (Stockholm).
        assert!(text.contains(" CET") || text.contains(" CEST"), "{text}");
        assert_eq!(attachment, wav, "the attachment is the message's audio");
    }
    seen.sort();
    assert_eq!(seen, ["To: alice@example.com", "To: alice@home.example"]);

    // Both notices are done: nothing more comes; the counters say so.
    let done = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        (metric(&d, "switchboard_voicemail_mail_outbox_notices") == 0
            && metric(&d, "switchboard_voicemail_mail_notices_dropped_total") == 1)
            .then_some(())
    });
    assert!(
        done.is_some(),
        "{}",
        http(&d, "GET", "/metrics", None, "").body
    );
    assert_eq!(
        metric(&d, "switchboard_voicemail_mails_total{result=\"sent\"}"),
        2
    );
    assert!(metric(&d, "switchboard_voicemail_mails_total{result=\"failed\"}") >= 1);
    assert!(
        d.log_contains("voicemail mail dropped: the message was deleted before it was sent"),
        "{}",
        d.log()
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(mail_files(sink_dir.path()).len(), 2);
    // The notices are out of the store: a restart sends nothing again.
    d.restart();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(mail_files(sink_dir.path()).len(), 2);
    drop(sink);
}
