//! The daemon's log: lines that never carry a raw control character, and a limit on lines
//! a flood would repeat ([`switchboard_sip::log_limit`]).
//!
//! Log lines quote what requests carry (methods, URIs, user names, Call-IDs, reasons). The
//! subscriber's field formatter ([`ControlFree`]) escapes every control character in them
//! (`\n`, `\r`, `\t`, `\u{1b}`…) once, for every line, so a newline in a Call-ID cannot
//! start a line of its own and an ESC cannot drive the operator's terminal.

use std::fmt;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::{DefaultFields, Writer};
use tracing_subscriber::fmt::FormatFields;

/// A name from a request as it may appear in a log line of a fixed format (the security
/// lines fail2ban reads): printable, no spaces or quotes, at most 64 characters.
pub(crate) fn printable(name: &str) -> String {
    name.chars()
        .take(64)
        .map(|c| {
            if c.is_control() || c.is_whitespace() || c == '"' || c == '=' {
                '?'
            } else {
                c
            }
        })
        .collect()
}

/// Writes `text` with every control character escaped as Rust writes it (`\n`, `\u{1b}`).
pub fn write_escaped(out: &mut impl fmt::Write, text: &str) -> fmt::Result {
    let mut rest = text;
    while let Some(at) = rest.find(char::is_control) {
        out.write_str(&rest[..at])?;
        let c = rest[at..].chars().next().unwrap_or_default();
        write!(out, "{}", c.escape_default())?;
        rest = &rest[at + c.len_utf8()..];
    }
    out.write_str(rest)
}

/// The fields of a log line (its message included) as the default formatter writes them,
/// with control characters escaped.
#[derive(Debug, Default)]
pub struct ControlFree {
    inner: DefaultFields,
}

impl<'writer> FormatFields<'writer> for ControlFree {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        let mut line = String::new();
        self.inner.format_fields(Writer::new(&mut line), fields)?;
        write_escaped(&mut writer, &line)
    }
}

/// Logs to stderr (the journal, under systemd), at `RUST_LOG`'s level (`info` by default),
/// as text lines or JSON objects (`[log] format`).
pub fn init(format: crate::config::LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false);
    match format {
        crate::config::LogFormat::Text => builder.fmt_fields(ControlFree::default()).init(),
        // JSON escapes control characters in strings itself.
        crate::config::LogFormat::Json => builder.json().flatten_event(false).init(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn control_characters_are_escaped_in_every_field_and_the_message() {
        let buf = Buf::default();
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .fmt_fields(ControlFree::default())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let call_id = "abc\n2026-01-01T00:00:00Z  WARN fake line";
            let why = "x\u{1b}[2J\u{0}\r\u{9b}";
            tracing::info!(%call_id, why, "refused {}", "é\t");
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.matches('\n').count(), 1, "{text:?}");
        assert!(text.ends_with('\n'));
        assert!(
            !text[..text.len() - 1].chars().any(char::is_control),
            "{text:?}"
        );
        assert!(text.contains("refused é\\t"), "{text}");
        assert!(text.contains("call_id=abc\\n2026"), "{text}");
        // (a &str field is written as Debug writes it, escaped already)
        assert!(text.contains(r#"why="x\u{1b}[2J\0\r\u{9b}""#), "{text}");
    }

    #[test]
    fn printable_names() {
        assert_eq!(printable("al ice=\"x\"\n"), "al?ice??x??");
        assert_eq!(printable(&"a".repeat(100)).len(), 64);
    }
}
