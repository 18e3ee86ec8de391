//! A mail relay for the tests: Debian's python3-aiosmtpd on loopback, each mail it takes
//! written into a Maildir, and Python's email parser to read one back as a mail client
//! would (its headers, plain-text body and attachment).

use super::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The Python that has aiosmtpd (Debian's: a python3 earlier in PATH may lack it).
pub const PYTHON: &str = "/usr/bin/python3";

/// The SMTP sink: aiosmtpd's Mailbox handler on `port`, one file per message under
/// `dir/maildir/new`; returned once it accepts connections.
pub fn smtp_sink(dir: &Path, port: u16) -> Proc {
    require(PYTHON);
    let mut cmd = Command::new(PYTHON);
    cmd.args(["-m", "aiosmtpd", "-n", "-l"])
        .arg(format!("127.0.0.1:{port}"))
        .args(["-c", "aiosmtpd.handlers.Mailbox"])
        .arg(dir.join("maildir"));
    let p = Proc::spawn("aiosmtpd", &mut cmd, dir.join("aiosmtpd.log"), false);
    let up = wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    assert!(up.is_some(), "aiosmtpd did not listen:\n{}", p.log());
    p
}

/// The files of the mails the sink in `dir` holds.
pub fn mail_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir.join("maildir").join("new"))
        .map(|entries| entries.filter_map(|e| Some(e.ok()?.path())).collect())
        .unwrap_or_default()
}

/// Every mail the sink in `dir` holds, as text.
pub fn mails(dir: &Path) -> Vec<String> {
    mail_files(dir)
        .into_iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .collect()
}

/// Reads one mail with Python's email parser: its To, Subject, plain-text body, and its
/// attachment's content type and file name, the attachment's bytes written to `out`.
const READ_MAIL: &str = r#"
import email, sys
from email import policy
m = email.message_from_binary_file(open(sys.argv[1], "rb"), policy=policy.default)
print("To:", m["To"])
print("Subject:", m["Subject"])
body = m.get_body(preferencelist=("plain",))
files = list(m.iter_attachments())
for a in files:
    print("Attachment:", a.get_content_type(), a.get_filename())
    open(sys.argv[2], "wb").write(a.get_payload(decode=True))
print("Body:")
print(body.get_content())
"#;

/// The mail in file `path` as Python's email parser reads it (see `READ_MAIL`), and its
/// attachment's bytes; `dir` holds the script and the attachment.
pub fn read_mail(path: &Path, dir: &Path) -> (String, Vec<u8>) {
    let script = dir.join("read_mail.py");
    std::fs::write(&script, READ_MAIL).unwrap();
    let attachment = dir.join("attachment.bin");
    let _ = std::fs::remove_file(&attachment);
    let out = Command::new(PYTHON)
        .arg(&script)
        .arg(path)
        .arg(&attachment)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        std::fs::read(&attachment).unwrap_or_default(),
    )
}
