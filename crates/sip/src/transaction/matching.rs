//! Transaction keys (RFC 3261 §17.1.3, §17.2.3) and the few header readings they need.
//!
//! Everything here reads untrusted input: no function panics, and a message that lacks what
//! matching needs yields `None` or a reason, never a guess.

use super::MAGIC_COOKIE;
use crate::message::{split_first_value, tag_of};
use crate::msg::prelude::*;
use crate::msg::{Method, Request, Response};

/// The key of a server transaction (§17.2.3).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) enum ServerKey {
    /// RFC 3261 requests: the top Via's branch and sent-by, the CSeq number and the method
    /// (ACK counted as INVITE). The CSeq number is stricter than §17.2.3 asks; a conformant
    /// retransmission, ACK or CANCEL carries the same number, and a peer that reuses a
    /// branch for its next request gets a new transaction instead of a stale answer.
    Branch {
        branch: String,
        sent_by: String,
        cseq: u32,
        method: Method,
    },
    /// RFC 2543 peers without the magic cookie (§17.2.3 fallback), simplified: the whole
    /// top Via stands for its sent-by and branch, the To tag is left out.
    Legacy {
        request_uri: String,
        call_id: String,
        cseq: u32,
        from_tag: String,
        top_via: String,
        method: Method,
    },
}

impl ServerKey {
    /// The same key for another method: a CANCEL's key turned into its INVITE's (§9.2).
    pub(super) fn with_method(&self, m: Method) -> ServerKey {
        let mut k = self.clone();
        match &mut k {
            ServerKey::Branch { method, .. } | ServerKey::Legacy { method, .. } => *method = m,
        }
        k
    }
}

/// The key of a client transaction (§17.1.3): our branch and the method (the CSeq method
/// of a response).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct ClientKey {
    pub(super) branch: String,
    pub(super) method: Method,
}

/// ACK belongs to the INVITE transaction it acknowledges.
fn matching_method(m: Method) -> Method {
    match m {
        Method::Ack => Method::Invite,
        other => other,
    }
}

/// The first value of the topmost Via header.
fn top_via<M: HeadersExt>(m: &M) -> Option<&str> {
    let via = m.via_header().ok()?;
    let first = split_first_value(via.value()).0.trim();
    (!first.is_empty()).then_some(first)
}

/// The branch parameter of a Via value.
fn branch_of(via: &str) -> Option<&str> {
    via.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        let v = v.trim();
        (k.trim().eq_ignore_ascii_case("branch") && !v.is_empty()).then_some(v)
    })
}

/// The sent-by of a Via value (`SIP / 2.0 / UDP host : port` allowed), lower-cased and
/// without white space.
pub(super) fn sent_by_of(via: &str) -> Option<String> {
    let head = via.split(';').next()?;
    let mut rest = head;
    for _ in 0..2 {
        let slash = rest.find('/')?;
        rest = &rest[slash + 1..];
    }
    let rest = rest.trim_start();
    let end = rest.find(char::is_whitespace)?;
    let sent_by: String = rest[end..]
        .chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    (!sent_by.is_empty()).then_some(sent_by)
}

/// The top Via's branch parameter.
pub(super) fn top_branch<M: HeadersExt>(m: &M) -> Option<String> {
    branch_of(top_via(m)?).map(str::to_string)
}

/// The CSeq number and method token.
fn cseq_parts<M: HeadersExt>(m: &M) -> Option<(Option<u32>, Option<&str>)> {
    let c = m.cseq_header().ok()?;
    let mut words = c.value().split_whitespace();
    let number = words.next().and_then(|n| n.parse().ok());
    Some((number, words.next()))
}

/// The key a response is matched with (§17.1.3): top Via branch and CSeq method.
pub(super) fn response_key(resp: &Response) -> Option<ClientKey> {
    let branch = top_branch(resp)?;
    let method = cseq_parts(resp)?.1?.parse().ok()?;
    Some(ClientKey { branch, method })
}

/// The key a received request is matched with (§17.2.3), or why there is none.
pub(super) fn server_key(req: &Request) -> Result<ServerKey, &'static str> {
    let via = top_via(req).ok_or("no Via")?;
    let (cseq, _) = cseq_parts(req).ok_or("no CSeq")?;
    let cseq = cseq.ok_or("unreadable CSeq number")?;
    let method = matching_method(req.method);
    match branch_of(via) {
        Some(b) if b.starts_with(MAGIC_COOKIE) => Ok(ServerKey::Branch {
            branch: b.to_string(),
            sent_by: sent_by_of(via).ok_or("top Via without sent-by")?,
            cseq,
            method,
        }),
        _ => Ok(ServerKey::Legacy {
            request_uri: req.uri.to_string(),
            call_id: req
                .call_id_header()
                .map(|c| c.value().trim().to_string())
                .unwrap_or_default(),
            cseq,
            from_tag: req
                .from_header()
                .ok()
                .and_then(|f| tag_of(f.value()))
                .unwrap_or_default()
                .to_string(),
            top_via: via.to_string(),
            method,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sent_by_tolerates_white_space_and_case() {
        assert_eq!(
            sent_by_of("SIP/2.0/UDP Host.Example:5060;branch=z9hG4bK1").as_deref(),
            Some("host.example:5060")
        );
        assert_eq!(
            sent_by_of("SIP / 2.0 / TCP  [::1] : 5070 ;rport").as_deref(),
            Some("[::1]:5070")
        );
        assert_eq!(sent_by_of("SIP/2.0/UDP"), None);
        assert_eq!(sent_by_of("SIP/2.0/UDP   ;branch=x"), None);
        assert_eq!(sent_by_of("garbage"), None);
        assert_eq!(sent_by_of(""), None);
    }

    #[test]
    fn branch_is_read_from_parameters_only() {
        assert_eq!(
            branch_of("SIP/2.0/UDP h;rport;Branch= z9hG4bKx "),
            Some("z9hG4bKx")
        );
        assert_eq!(branch_of("SIP/2.0/UDP h;branch="), None);
        assert_eq!(branch_of("SIP/2.0/UDP h;branchy=1"), None);
    }
}
