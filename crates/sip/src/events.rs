//! Bodies of the SIP event packages Switchboard serves: `dialog` (RFC 4235, what BLF lamps
//! show) and `presence` (RFC 3856 with PIDF, RFC 3863, and RPID activities, RFC 4480); and
//! the reading of a PIDF document a phone PUBLISHes (RFC 3903).
//!
//! Plain data in, text out (and back): nothing here knows where the state comes from.

use quick_xml::events::Event;
use quick_xml::Reader;

/// The MIME type of a dialog-info document.
pub const DIALOG_INFO: &str = "application/dialog-info+xml";
/// The MIME type of a PIDF document.
pub const PIDF: &str = "application/pidf+xml";

/// The event packages this server is a notifier for.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum Package {
    /// RFC 4235.
    Dialog,
    /// RFC 3856.
    Presence,
}

impl Package {
    /// The package of an `Event` header value (its first token, parameters aside).
    pub fn from_event(value: &str) -> Option<Package> {
        let name = value.split(';').next().unwrap_or("").trim();
        if name.eq_ignore_ascii_case("dialog") {
            Some(Package::Dialog)
        } else if name.eq_ignore_ascii_case("presence") {
            Some(Package::Presence)
        } else {
            None
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

    pub fn as_str(self) -> &'static str {
        match self {
            Package::Dialog => "dialog",
            Package::Presence => "presence",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Package::Dialog => DIALOG_INFO,
            Package::Presence => PIDF,
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
        assert_eq!(Package::from_event("message-summary"), None);
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
