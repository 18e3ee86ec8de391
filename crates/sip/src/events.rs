//! Bodies of the SIP event packages Switchboard serves: `dialog` (RFC 4235, what BLF lamps
//! show), `presence` (RFC 3856 with PIDF, RFC 3863, and RPID activities, RFC 4480) and
//! `message-summary` (RFC 3842, what message-waiting lamps show); the reading of a PIDF
//! document a phone PUBLISHes (RFC 3903), and of a message summary.
//!
//! Plain data in, text out (and back): nothing here knows where the state comes from.

use quick_xml::events::Event;
use quick_xml::Reader;

/// The MIME type of a dialog-info document.
pub const DIALOG_INFO: &str = "application/dialog-info+xml";
/// The MIME type of a PIDF document.
pub const PIDF: &str = "application/pidf+xml";
/// The MIME type of a message-summary document (RFC 3842 §5.1).
pub const SIMPLE_MESSAGE_SUMMARY: &str = "application/simple-message-summary";

/// The event packages this server is a notifier for.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum Package {
    /// RFC 4235.
    Dialog,
    /// RFC 3856.
    Presence,
    /// RFC 3842: a mailbox's message counts, for message-waiting lamps.
    MessageSummary,
}

impl Package {
    /// Every package, in the order of [`Package::index`].
    pub const ALL: [Package; 3] = [Package::Dialog, Package::Presence, Package::MessageSummary];

    /// The package of an `Event` header value (its first token, parameters aside).
    pub fn from_event(value: &str) -> Option<Package> {
        let name = value.split(';').next().unwrap_or("").trim();
        Package::ALL
            .into_iter()
            .find(|p| name.eq_ignore_ascii_case(p.as_str()))
    }

    /// Its place in [`Package::ALL`] (for per-package counters).
    pub fn index(self) -> usize {
        match self {
            Package::Dialog => 0,
            Package::Presence => 1,
            Package::MessageSummary => 2,
        }
    }

    /// The package a request's (first) `Event` header names (None: no such header, or
    /// another package).
    pub fn of_request(req: &crate::msg::Request) -> Option<Package> {
        req.headers
            .iter()
            .find_map(|h| match h {
                crate::msg::headers::Header::Event(e) => Some(e.value()),
                _ => None,
            })
            .and_then(Package::from_event)
    }

    /// The package's name, as `Event` headers write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Package::Dialog => "dialog",
            Package::Presence => "presence",
            Package::MessageSummary => "message-summary",
        }
    }

    /// The MIME type of its documents (what a subscriber must `Accept`).
    pub fn content_type(self) -> &'static str {
        match self {
            Package::Dialog => DIALOG_INFO,
            Package::Presence => PIDF,
            Package::MessageSummary => SIMPLE_MESSAGE_SUMMARY,
        }
    }
}

/// What a dialog-info document says of a person's calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DialogState {
    /// No call (or none shown).
    Idle,
    /// A call is ringing (RFC 4235 `early`).
    Early,
    /// In a call (`confirmed`).
    Confirmed,
}

/// Escapes text for XML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\t' && c != '\n' && c != '\r' => {}
            c => out.push(c),
        }
    }
    out
}

/// A full dialog-info document (RFC 4235 §4) for `entity` (the AoR's URI). One dialog
/// element stands for the person's calls across all devices: `early` while one rings (as
/// the recipient, which is what makes BLF lamps blink), `confirmed` while one is answered,
/// none when idle.
pub fn dialog_info(entity: &str, version: u32, state: DialogState) -> String {
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <dialog-info xmlns=\"urn:ietf:params:xml:ns:dialog-info\" version=\"{version}\" state=\"full\" entity=\"{}\">\n",
        escape(entity)
    );
    let s = match state {
        DialogState::Idle => None,
        DialogState::Early => Some("early"),
        DialogState::Confirmed => Some("confirmed"),
    };
    if let Some(s) = s {
        let direction = if state == DialogState::Early {
            " direction=\"recipient\""
        } else {
            ""
        };
        out.push_str(&format!(
            "  <dialog id=\"switchboard-calls\"{direction}>\n    <state>{s}</state>\n  </dialog>\n"
        ));
    }
    out.push_str("</dialog-info>\n");
    out
}

/// What a presence document tells of a person.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PresenceDoc {
    /// Reachable for communication (PIDF `basic` open) or not (closed).
    pub open: bool,
    /// RPID activities (`away`, `busy`, `meeting`, `on-the-phone`, …; RFC 4480 §3.2). An
    /// activity that is not an RPID element is given as `other:TEXT`.
    pub activities: Vec<String>,
    /// The status message (`<note>`).
    pub note: Option<String>,
}

/// The RPID activity elements defined by RFC 4480 §3.2.
const RPID_ACTIVITIES: &[&str] = &[
    "appointment",
    "away",
    "breakfast",
    "busy",
    "dinner",
    "holiday",
    "in-transit",
    "looking-for-work",
    "meal",
    "meeting",
    "on-the-phone",
    "performance",
    "permanent-absence",
    "playing",
    "presentation",
    "shopping",
    "sleeping",
    "spectator",
    "steering",
    "travel",
    "tv",
    "vacation",
    "working",
    "worship",
];

/// A PIDF document (RFC 3863) with the RPID data model (RFC 4479/4480) for `entity`.
pub fn pidf(entity: &str, doc: &PresenceDoc) -> String {
    let e = escape(entity);
    let basic = if doc.open { "open" } else { "closed" };
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <presence xmlns=\"urn:ietf:params:xml:ns:pidf\" xmlns:dm=\"urn:ietf:params:xml:ns:pidf:data-model\" \
         xmlns:rpid=\"urn:ietf:params:xml:ns:pidf:rpid\" entity=\"{e}\">\n\
         \x20 <tuple id=\"switchboard\">\n    <status><basic>{basic}</basic></status>\n  </tuple>\n"
    );
    if !doc.activities.is_empty() {
        out.push_str("  <dm:person id=\"person\">\n    <rpid:activities>\n");
        for a in &doc.activities {
            match a.strip_prefix("other:") {
                Some(text) => out.push_str(&format!(
                    "      <rpid:other>{}</rpid:other>\n",
                    escape(text)
                )),
                None if RPID_ACTIVITIES.contains(&a.as_str()) => {
                    out.push_str(&format!("      <rpid:{a}/>\n"))
                }
                None => out.push_str(&format!("      <rpid:other>{}</rpid:other>\n", escape(a))),
            }
        }
        out.push_str("    </rpid:activities>\n  </dm:person>\n");
    }
    if let Some(n) = &doc.note {
        out.push_str(&format!("  <note>{}</note>\n", escape(n)));
    }
    out.push_str("</presence>\n");
    out
}

/// Why a published document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PidfError {
    #[error("the body is not well-formed XML: {0}")]
    Xml(String),
    #[error("the body is not a PIDF presence document")]
    NotPidf,
    #[error("the document is larger than {0} bytes")]
    TooLarge(usize),
}

/// Largest PIDF document read.
pub const MAX_PIDF: usize = 16 * 1024;

/// Reads a published PIDF document: the first tuple's basic status, the RPID activities
/// and the first note. Namespace prefixes are not checked, only local names.
pub fn parse_pidf(body: &[u8]) -> Result<PresenceDoc, PidfError> {
    if body.len() > MAX_PIDF {
        return Err(PidfError::TooLarge(MAX_PIDF));
    }
    let text = std::str::from_utf8(body).map_err(|e| PidfError::Xml(e.to_string()))?;
    let mut reader = Reader::from_str(text);
    let mut stack: Vec<String> = Vec::new();
    let mut doc = PresenceDoc {
        open: true,
        activities: Vec::new(),
        note: None,
    };
    let mut saw_presence = false;
    let mut saw_basic = false;
    // The text of the innermost open element (entity references arrive as events of
    // their own and are resolved into it).
    let mut text_buf = String::new();
    loop {
        let event = reader
            .read_event()
            .map_err(|e| PidfError::Xml(e.to_string()))?;
        match event {
            Event::Start(e) => {
                let name = e.local_name().as_ref().to_string();
                if stack.is_empty() {
                    if name != "presence" {
                        return Err(PidfError::NotPidf);
                    }
                    saw_presence = true;
                }
                if stack.len() > 32 {
                    return Err(PidfError::Xml("nested too deeply".into()));
                }
                stack.push(name);
                text_buf.clear();
            }
            Event::Empty(e) => {
                let name = e.local_name().as_ref().to_string();
                if stack.is_empty() {
                    return Err(PidfError::NotPidf);
                }
                if stack.last().map(String::as_str) == Some("activities")
                    && name != "other"
                    && doc.activities.len() < 16
                {
                    doc.activities.push(name);
                }
            }
            Event::Text(t) if text_buf.len() < 1024 => {
                text_buf.push_str(&t.xml10_content());
            }
            Event::GeneralRef(r) => {
                let name: &str = r.as_ref();
                let c = match name {
                    "lt" => Some('<'),
                    "gt" => Some('>'),
                    "amp" => Some('&'),
                    "quot" => Some('"'),
                    "apos" => Some('\''),
                    n => n
                        .strip_prefix("#x")
                        .and_then(|h| u32::from_str_radix(h, 16).ok())
                        .or_else(|| n.strip_prefix('#').and_then(|d| d.parse().ok()))
                        .and_then(char::from_u32),
                };
                if let Some(c) = c {
                    text_buf.push(c);
                }
            }
            Event::End(_) => {
                let value = text_buf.trim().to_string();
                text_buf.clear();
                match stack.last().map(String::as_str) {
                    Some("basic") if !saw_basic => {
                        saw_basic = true;
                        doc.open = !value.eq_ignore_ascii_case("closed");
                    }
                    Some("note") if doc.note.is_none() && !value.is_empty() => {
                        doc.note = Some(value.chars().take(200).collect());
                    }
                    Some("other")
                        if stack.iter().rev().nth(1).map(String::as_str) == Some("activities")
                            && !value.is_empty()
                            && doc.activities.len() < 16 =>
                    {
                        doc.activities.push(format!("other:{value}"));
                    }
                    _ => {}
                }
                stack.pop();
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !saw_presence {
        return Err(PidfError::NotPidf);
    }
    Ok(doc)
}

/// What a message-summary document (RFC 3842 §5.2) says of one mailbox: its voice messages.
/// Other message classes (fax, pager, text…) are not kept.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MessageSummary {
    /// The mailbox's URI (`Message-Account`), when the document names it.
    pub account: Option<String>,
    /// Voice messages not heard yet (`new`) and heard (`old`).
    pub new: u32,
    pub old: u32,
    /// Of those, the urgent ones: the pair in parentheses, optional in the grammar (0 when
    /// absent).
    pub urgent_new: u32,
    pub urgent_old: u32,
}

impl MessageSummary {
    /// Whether a lamp is lit: `Messages-Waiting: yes` says there are new messages.
    pub fn waiting(&self) -> bool {
        self.new > 0 || self.urgent_new > 0
    }
}

/// A message-summary document (RFC 3842 §5.2): `Messages-Waiting`, the `Message-Account`
/// when there is one, and the `Voice-Message` counts with the urgent pair (`2/1 (0/0)`),
/// each line ended by CRLF. Control characters and white space in the account are left
/// out (a URI has none), so that it stays one line and one URI.
pub fn message_summary(doc: &MessageSummary) -> String {
    let mut out = format!(
        "Messages-Waiting: {}\r\n",
        if doc.waiting() { "yes" } else { "no" }
    );
    if let Some(account) = &doc.account {
        let account: String = account
            .chars()
            .filter(|c| !c.is_control() && !c.is_whitespace())
            .collect();
        if !account.is_empty() {
            out.push_str(&format!("Message-Account: {account}\r\n"));
        }
    }
    out.push_str(&format!(
        "Voice-Message: {}/{} ({}/{})\r\n",
        doc.new, doc.old, doc.urgent_new, doc.urgent_old
    ));
    out
}

/// Why a message-summary document was not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageSummaryError {
    #[error("the document is larger than {0} bytes")]
    TooLarge(usize),
    #[error("the document is not UTF-8")]
    NotUtf8,
    #[error("not a message summary: {0}")]
    Malformed(&'static str),
}

/// Largest message-summary document read.
pub const MAX_MESSAGE_SUMMARY: usize = 4096;

/// Reads a message-summary document (RFC 3842 §5.2): `Messages-Waiting` (required), the
/// `Message-Account` and the `Voice-Message` counts (0/0 when there is no such line).
/// Header names are compared without case, lines may end in CRLF or LF, and white space
/// may surround `:`, `/` and the parentheses; the other message classes are checked
/// against the grammar and not kept. What follows the first empty line is the optional
/// extension headers, not read. Bounded: at most [`MAX_MESSAGE_SUMMARY`] bytes, and a
/// count larger than a `u32` is refused.
pub fn parse_message_summary(body: &[u8]) -> Result<MessageSummary, MessageSummaryError> {
    use MessageSummaryError::Malformed;
    if body.len() > MAX_MESSAGE_SUMMARY {
        return Err(MessageSummaryError::TooLarge(MAX_MESSAGE_SUMMARY));
    }
    let text = std::str::from_utf8(body).map_err(|_| MessageSummaryError::NotUtf8)?;
    let mut doc = MessageSummary::default();
    let mut status: Option<bool> = None;
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() {
            if status.is_some() {
                break; // the extension headers follow
            }
            continue;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or(Malformed("a line without a colon"))?;
        let name = name.trim_end_matches([' ', '\t']);
        if name.is_empty() || name.starts_with([' ', '\t']) {
            return Err(Malformed("a line without a header name"));
        }
        let value = value.trim_matches([' ', '\t']);
        if status.is_none() {
            // The grammar's first line is the status.
            if !name.eq_ignore_ascii_case("Messages-Waiting") {
                return Err(Malformed("the first line is not Messages-Waiting"));
            }
            status = Some(if value.eq_ignore_ascii_case("yes") {
                true
            } else if value.eq_ignore_ascii_case("no") {
                false
            } else {
                return Err(Malformed("Messages-Waiting is neither yes nor no"));
            });
        } else if name.eq_ignore_ascii_case("Message-Account") {
            if value.is_empty() || value.contains(char::is_whitespace) {
                return Err(Malformed("Message-Account is not one URI"));
            }
            doc.account = Some(value.to_string());
        } else {
            let counts = summary_counts(value)?;
            if name.eq_ignore_ascii_case("Voice-Message") {
                (doc.new, doc.old, doc.urgent_new, doc.urgent_old) = counts;
            } else if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                return Err(Malformed("a message class that is not a token"));
            }
        }
    }
    if status.is_none() {
        return Err(Malformed("no Messages-Waiting"));
    }
    Ok(doc)
}

/// `newmsgs SLASH oldmsgs [ LPAREN new-urgentmsgs SLASH old-urgentmsgs RPAREN ]`.
fn summary_counts(value: &str) -> Result<(u32, u32, u32, u32), MessageSummaryError> {
    use MessageSummaryError::Malformed;
    let pair = |s: &str| -> Result<(u32, u32), MessageSummaryError> {
        let (a, b) = s
            .split_once('/')
            .ok_or(Malformed("counts without a slash"))?;
        let number = |n: &str| {
            let n = n.trim_matches([' ', '\t']);
            if n.is_empty() || n.len() > 10 || !n.bytes().all(|b| b.is_ascii_digit()) {
                return Err(Malformed("a count that is not a number"));
            }
            n.parse::<u32>().map_err(|_| Malformed("a count too large"))
        };
        Ok((number(a)?, number(b)?))
    };
    let (plain, urgent) = match value.split_once('(') {
        None => (value, None),
        Some((plain, rest)) => {
            let inner = rest
                .trim_end_matches([' ', '\t'])
                .strip_suffix(')')
                .ok_or(Malformed("urgent counts without a closing parenthesis"))?;
            (plain, Some(inner))
        }
    };
    let (new, old) = pair(plain)?;
    let (urgent_new, urgent_old) = match urgent {
        Some(u) => pair(u)?,
        None => (0, 0),
    };
    Ok((new, old, urgent_new, urgent_old))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packages() {
        assert_eq!(Package::from_event("dialog"), Some(Package::Dialog));
        assert_eq!(
            Package::from_event("Presence;id=1"),
            Some(Package::Presence)
        );
        assert_eq!(
            Package::from_event("message-summary"),
            Some(Package::MessageSummary)
        );
        assert_eq!(
            Package::from_event(" Message-Summary ;id=3"),
            Some(Package::MessageSummary)
        );
        assert_eq!(Package::from_event("message-summary2"), None);
        assert_eq!(Package::from_event("conference"), None);
        assert_eq!(Package::from_event(""), None);
        for (i, p) in Package::ALL.into_iter().enumerate() {
            assert_eq!(p.index(), i);
            assert_eq!(Package::from_event(p.as_str()), Some(p));
        }
        assert_eq!(
            Package::MessageSummary.content_type(),
            "application/simple-message-summary"
        );
        // Kept in stored subscriptions by name: a new package leaves the old rows readable.
        assert_eq!(
            serde_json::to_string(&Package::MessageSummary).unwrap(),
            "\"MessageSummary\""
        );
        assert_eq!(
            serde_json::from_str::<Package>("\"Dialog\"").unwrap(),
            Package::Dialog
        );
    }

    fn summary(account: Option<&str>, new: u32, old: u32) -> MessageSummary {
        MessageSummary {
            account: account.map(str::to_string),
            new,
            old,
            ..MessageSummary::default()
        }
    }

    #[test]
    fn message_summary_documents_follow_rfc_3842() {
        assert_eq!(
            message_summary(&summary(Some("sip:1001@example.com"), 2, 1)),
            "Messages-Waiting: yes\r\nMessage-Account: sip:1001@example.com\r\n\
             Voice-Message: 2/1 (0/0)\r\n"
        );
        // Only new messages light the lamp; heard ones do not.
        assert_eq!(
            message_summary(&summary(None, 0, 3)),
            "Messages-Waiting: no\r\nVoice-Message: 0/3 (0/0)\r\n"
        );
        let urgent = MessageSummary {
            urgent_new: 1,
            ..summary(None, 0, 0)
        };
        assert!(message_summary(&urgent).starts_with("Messages-Waiting: yes\r\n"));
        // Every line ends in CRLF; no bare LF, whatever the account holds.
        let odd = message_summary(&summary(Some("sip:a@b\r\nVoice-Message: 9/9"), 0, 0));
        assert_eq!(odd.matches('\n').count(), odd.matches("\r\n").count());
        assert_eq!(odd.lines().count(), 3, "{odd}");
        assert!(odd.contains("Message-Account: sip:a@bVoice-Message:9/9\r\n"));
        assert_eq!(parse_message_summary(odd.as_bytes()).unwrap().new, 0);
        // An account of nothing printable is left out.
        assert!(!message_summary(&summary(Some("\r\n"), 0, 0)).contains("Account"));
        let max = summary(None, u32::MAX, u32::MAX);
        assert_eq!(
            parse_message_summary(message_summary(&max).as_bytes()),
            Ok(max)
        );
    }

    #[test]
    fn message_summaries_are_read_leniently_within_the_grammar() {
        // As RFC 3842 §6 shows it: other classes and extension headers after an empty line.
        let body = b"Messages-Waiting: yes\r\nMessage-Account: sip:alice@vmail.example.com\r\n\
                     Voice-Message: 4/8 (1/2)\r\nFax-Message: 2/1\r\n\r\n\
                     Message-ID: <1234@vmail.example.com>\r\nSubject: anything : goes\r\n";
        assert_eq!(
            parse_message_summary(body),
            Ok(MessageSummary {
                account: Some("sip:alice@vmail.example.com".into()),
                new: 4,
                old: 8,
                urgent_new: 1,
                urgent_old: 2,
            })
        );
        // Case, LF alone, white space around the separators, no urgent pair, no account.
        let loose = b"messages-waiting:NO\nvoice-message :  0 / 3\t( 0/1 ) \n";
        assert_eq!(
            parse_message_summary(loose),
            Ok(MessageSummary {
                old: 3,
                urgent_old: 1,
                ..MessageSummary::default()
            })
        );
        assert_eq!(
            parse_message_summary(b"Messages-Waiting: no\r\n"),
            Ok(MessageSummary::default())
        );
    }

    #[test]
    fn what_is_not_a_message_summary_is_refused() {
        use MessageSummaryError::*;
        let refused = |b: &[u8]| parse_message_summary(b).unwrap_err();
        for bad in [
            &b""[..],
            b"\r\n\r\n",
            b"Voice-Message: 1/0\r\nMessages-Waiting: yes\r\n",
            b"Messages-Waiting: maybe\r\n",
            b"Messages-Waiting yes\r\n",
            b": yes\r\n",
            b" Messages-Waiting: yes\r\n",
            b"Messages-Waiting: yes\r\nVoice-Message: 1\r\n",
            b"Messages-Waiting: yes\r\nVoice-Message: a/1\r\n",
            b"Messages-Waiting: yes\r\nVoice-Message: -1/1\r\n",
            b"Messages-Waiting: yes\r\nVoice-Message: 4294967296/0\r\n",
            b"Messages-Waiting: yes\r\nVoice-Message: 99999999999/0\r\n",
            b"Messages-Waiting: yes\r\nVoice-Message: 1/1 (0/0\r\n",
            b"Messages-Waiting: yes\r\nVoice-Message: 1/1 ((0/0))\r\n",
            b"Messages-Waiting: yes\r\nVoice-Message: 1/1 (0)\r\n",
            b"Messages-Waiting: yes\r\nMessage-Account: sip:a@b c\r\n",
            b"Messages-Waiting: yes\r\nMessage-Account:\r\n",
            b"Messages-Waiting: yes\r\nFax Message: 1/1\r\n",
        ] {
            assert!(
                matches!(refused(bad), Malformed(_)),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(refused(&[0xff, 0xfe]), NotUtf8);
        let mut big = b"Messages-Waiting: no\r\n".to_vec();
        big.resize(MAX_MESSAGE_SUMMARY + 1, b' ');
        assert_eq!(refused(&big), TooLarge(MAX_MESSAGE_SUMMARY));
    }

    proptest::proptest! {
        #[test]
        fn reading_any_bytes_never_panics(body in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = parse_message_summary(&body);
        }

        #[test]
        fn reading_any_text_of_the_grammars_pieces_never_panics(
            parts in proptest::collection::vec(proptest::sample::select(vec![
                "Messages-Waiting", "Voice-Message", "Message-Account", ":", "/", "(", ")",
                " ", "\t", "\r\n", "\n", "yes", "no", "0", "7", "4294967295", "sip:a@b",
            ]), 0..40)
        ) {
            let _ = parse_message_summary(parts.concat().as_bytes());
        }

        #[test]
        fn what_is_written_reads_back(
            new in proptest::num::u32::ANY,
            old in proptest::num::u32::ANY,
            urgent_new in proptest::num::u32::ANY,
            urgent_old in proptest::num::u32::ANY,
            account in proptest::option::of("sip:[a-z0-9]{1,8}@[a-z.]{1,12}"),
        ) {
            let doc = MessageSummary { account, new, old, urgent_new, urgent_old };
            let text = message_summary(&doc);
            proptest::prop_assert!(text.ends_with("\r\n"));
            proptest::prop_assert_eq!(parse_message_summary(text.as_bytes()), Ok(doc));
        }
    }

    #[test]
    fn dialog_info_documents() {
        let idle = dialog_info("sip:bob@example.com", 0, DialogState::Idle);
        assert!(idle.contains("version=\"0\" state=\"full\" entity=\"sip:bob@example.com\""));
        assert!(!idle.contains("<dialog "));
        let early = dialog_info("sip:bob@example.com", 1, DialogState::Early);
        assert!(early.contains("<state>early</state>"), "{early}");
        let c = dialog_info("sip:b&b@example.com", 2, DialogState::Confirmed);
        assert!(
            c.contains("<state>confirmed</state>") && c.contains("b&amp;b"),
            "{c}"
        );
    }

    #[test]
    fn pidf_round_trip() {
        let doc = PresenceDoc {
            open: true,
            activities: vec!["busy".into(), "other:On break".into()],
            note: Some("Back at 2 <pm>".into()),
        };
        let text = pidf("sip:alice@example.com", &doc);
        assert!(text.contains("<basic>open</basic>"));
        assert!(text.contains("<rpid:busy/>"));
        assert!(text.contains("<note>Back at 2 &lt;pm&gt;</note>"), "{text}");
        assert_eq!(parse_pidf(text.as_bytes()).unwrap(), doc);
    }

    #[test]
    fn reads_what_phones_publish() {
        let body = br#"<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid"
 xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" entity="sip:alice@example.com">
 <tuple id="t1"><status><basic>open</basic></status></tuple>
 <dm:person id="p1"><rpid:activities><rpid:away/></rpid:activities>
 <dm:note>Gone fishing</dm:note></dm:person>
</presence>"#;
        let d = parse_pidf(body).unwrap();
        assert!(d.open);
        assert_eq!(d.activities, vec!["away".to_string()]);
        assert_eq!(d.note.as_deref(), Some("Gone fishing"));
        let closed = parse_pidf(
            b"<presence xmlns='urn:ietf:params:xml:ns:pidf'><tuple id='a'><status><basic>closed</basic></status></tuple></presence>",
        )
        .unwrap();
        assert!(!closed.open);
    }

    #[test]
    fn refuses_what_is_not_pidf() {
        assert_eq!(parse_pidf(b"<foo/>"), Err(PidfError::NotPidf));
        assert_eq!(
            parse_pidf(b"<other><presence/></other>"),
            Err(PidfError::NotPidf)
        );
        assert!(matches!(
            parse_pidf(b"<presence><a></b></presence>"),
            Err(PidfError::Xml(_))
        ));
        assert!(matches!(parse_pidf(&[0xff, 0xfe]), Err(PidfError::Xml(_))));
        assert!(matches!(
            parse_pidf(&vec![b' '; MAX_PIDF + 1]),
            Err(PidfError::TooLarge(_))
        ));
        assert_eq!(parse_pidf(b""), Err(PidfError::NotPidf));
    }
}
