//! Our side of a carrier's digest challenges: a request sent to a trunk that has an
//! account (`[trunks.ID.account]`) and is answered 401 or 407 goes again with the
//! account's credentials (`switchboard_sip::auth_client`), one CSeq number higher, with a
//! new Via branch (the challenged transaction is over: the transaction layer ACKed its
//! non-2xx answer). Used by [`super::calls`] for a branch's INVITE and by
//! [`super::relays`] for the requests of the dialog that follow (BYE, re-INVITE…); the
//! numbers this puts between caller and carrier are kept by [`super::dialogs`].
//!
//! The challenge is answered once; it is answered again only when the carrier says the
//! nonce went stale (RFC 7616 §3.3), at most [`MAX_ANSWERS`] times in all. Another
//! challenge after an answer means the carrier refused the credentials: the request then
//! fails, and the caller is told so with a 403 (the carrier's code in its Reason), never
//! with the carrier's challenge, which only the account could answer.

use switchboard_policy::TrunkAccount;
use switchboard_sip::auth_client::{self, ClientCredentials, NonceCounts};
use switchboard_sip::entropy::Entropy;
use switchboard_sip::message;
use switchboard_sip::msg::headers::Header;
use switchboard_sip::msg::{Request, Response};
use switchboard_sip::proxy;

/// The most challenges answered for one request (the first, and stale nonces after it).
pub(crate) const MAX_ANSWERS: u8 = 3;

/// Nonces whose count is kept (a carrier may hand one out again).
const TRACKED_NONCES: usize = 4096;

/// The nonce counts of the answers made, and what they came to.
pub(crate) struct CarrierAuth {
    counts: NonceCounts,
    /// Challenges answered with a trunk's account.
    pub answered: u64,
    /// Requests that failed because the carrier refused the account's credentials, or
    /// challenged in a way the account cannot answer.
    pub refused: u64,
}

/// A request sent to a trunk with an account, kept to be sent again if challenged.
pub(crate) struct Challenged {
    /// The trunk whose account answers.
    pub trunk: String,
    /// The request as last sent.
    pub sent: Request,
    /// Challenges answered so far: how many numbers the carrier is ahead of the sender.
    pub answers: u8,
}

impl Challenged {
    pub(crate) fn new(trunk: String, sent: Request) -> Box<Challenged> {
        Box::new(Challenged {
            trunk,
            sent,
            answers: 0,
        })
    }
}

impl Default for CarrierAuth {
    fn default() -> Self {
        CarrierAuth {
            counts: NonceCounts::new(TRACKED_NONCES),
            answered: 0,
            refused: 0,
        }
    }
}

impl CarrierAuth {
    /// The request to send for `resp`, a 401 or 407 to `c.sent`: `c.sent` with `via` as
    /// its top Via, its CSeq number one higher and the account's answers to the
    /// challenges of the realms it answers; `c` then holds it. Err with why the challenge
    /// is not answered (the request then fails): the carrier refused the credentials
    /// already answered, or offers nothing the account answers.
    pub(crate) fn answer(
        &mut self,
        entropy: &mut Entropy,
        account: &TrunkAccount,
        c: &mut Challenged,
        resp: &Response,
        via: String,
    ) -> Result<Request, &'static str> {
        let all = auth_client::challenges(resp);
        let chosen = auth_client::choose(&all, |realm| account.answers_realm(realm));
        if chosen.is_empty() {
            return Err(if all.is_empty() {
                "no digest challenge it can answer (MD5 or SHA-256)"
            } else {
                "no challenge for the account's realm"
            });
        }
        if c.answers > 0 && !chosen.iter().all(|ch| ch.stale) {
            return Err("the carrier refused the account's credentials");
        }
        if c.answers >= MAX_ANSWERS {
            return Err("challenged again and again");
        }
        let mut req = c.sent.clone();
        if let Some(top) = req.headers.iter_mut().find(|h| matches!(h, Header::Via(_))) {
            *top = Header::Via(via.into());
        }
        let Some(n) = message::cseq_number(&req.headers) else {
            return Err("the request has no CSeq number");
        };
        message::set_cseq_number(&mut req.headers, n.saturating_add(1));
        let credentials = ClientCredentials {
            username: account.digest_username(),
            password: &account.password,
        };
        auth_client::authorize(&mut req, &chosen, credentials, &mut self.counts, entropy);
        c.sent = req.clone();
        c.answers += 1;
        self.answered += 1;
        Ok(req)
    }

    /// Logs (once per request, rate-limited under a flood) that the carrier of `trunk`
    /// was not answered, and counts it.
    pub(crate) fn refused(&mut self, trunk: &str, call_id: &str, code: u16, why: &str) {
        self.refused += 1;
        if switchboard_sip::log_limit::allow("trunk authentication failed") {
            tracing::warn!(trunk, %call_id, code, why, "trunk authentication failed");
        }
    }
}

/// What the sender of a request is told when the carrier's challenge to it was not
/// answered: 403, the carrier's code and why in a Reason, no challenge (the sender could
/// not answer it: it is the account's).
pub(crate) fn refusal(mut resp: Response, why: &str) -> Response {
    let code = resp.status_code.code();
    resp.headers
        .retain(|h| !matches!(h, Header::WwwAuthenticate(_) | Header::ProxyAuthenticate(_)));
    resp.status_code = 403.into();
    message::set_reason_phrase(&mut resp, "Trunk Authentication Failed");
    resp.headers.push(proxy::reason(code, why));
    resp
}
