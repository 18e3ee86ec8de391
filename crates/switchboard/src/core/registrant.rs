//! Trunk registration: the daemon as a registering client of its carriers (RFC 3261 §10.2).
//!
//! A trunk whose account says `register = true` (`[trunks.ID.account]`) keeps a binding at
//! its carrier's registrar: `sip:USERNAME@DOMAIN` (the domain is the registrar's host) →
//! `<sip:CONTACT_USER@our address>`, the address of the listener the REGISTER leaves from,
//! so that the carrier sends the trunk's calls there. Per trunk and per run: one Call-ID
//! and From tag, a CSeq number one higher for every REGISTER. A 401 or 407 is answered
//! with the account's credentials as a call's INVITE is ([`super::carrier_auth`]: once,
//! again only for a stale nonce). A 200 says how long the registrar keeps the binding (the
//! `expires` of our Contact in it, else its Expires header), and the next REGISTER goes
//! at about half of that ([`refresh_delay`]). 423 asks again with the registrar's
//! Min-Expires. A refusal (403, 404, a challenge to the credentials, any other final
//! answer that is no server's trouble) backs off long ([`LONG_BACKOFF`]); a server's
//! trouble (5xx, 408, 480, no answer, a transport error) tries the registrar's next
//! address (RFC 3263: the registrar's URI is located like a call's, its targets tried in
//! turn, the failed one reported to the locator), then backs off
//! ([`SHORT_BACKOFF`]); a Retry-After is honoured.
//!
//! Nothing is stored: at start every registering trunk registers at once (a new Call-ID;
//! the Contact is the same, so the carrier replaces its old binding). A reload starts the
//! trunks that now register, unregisters (Expires: 0) those that no longer do, and sends
//! a changed trunk's REGISTER again (after unregistering its old binding when the
//! registrar, the address of record or the contact changed); draining for a shutdown
//! unregisters every binding.
//!
//! The calls the carrier sends to a registered contact are the trunk's
//! ([`Registrant::trunk_for_contact`]): only from the address the binding was made with,
//! and only while it lasts — a contact user alone is a name anyone can write.
//!
//! A sub-machine of the core: its own tables, a [`Ctx`] for what it shares; its timer
//! is [`Registrant::poll_timeout`], its REGISTERs' transactions are
//! [`Owner::Registration`]s.

use super::carrier_auth::Challenged;
use super::context::Ctx;
use super::locating::{target_of, Located, Waiter};
use super::wire::{Now, Owner};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};
use switchboard_policy::{Policy, TrunkAccount, TrunkRegistration};
use switchboard_sip::locate::{LocateError, ResolutionId, Resolved};
use switchboard_sip::message::{self, cseq_number, header_number, retry_after, split_values};
use switchboard_sip::msg::headers::{Header, Headers};
use switchboard_sip::msg::{Method, Request, Response, Version};
use switchboard_sip::peer::Peer;
use switchboard_sip::registrar::contact_address;
use switchboard_sip::transaction::TxId;

/// After a refusal (403, 404, credentials refused…): the first wait, doubled after every
/// refusal in a row up to [`LONG_BACKOFF_MAX`].
pub(crate) const LONG_BACKOFF: Duration = Duration::from_secs(30 * 60);
pub(crate) const LONG_BACKOFF_MAX: Duration = Duration::from_secs(4 * 3600);
/// After a server's trouble (5xx, 408, no answer, a transport error) at every address:
/// the first wait, doubled after every failure in a row up to [`SHORT_BACKOFF_MAX`].
pub(crate) const SHORT_BACKOFF: Duration = Duration::from_secs(30);
pub(crate) const SHORT_BACKOFF_MAX: Duration = Duration::from_secs(10 * 60);
/// The longest Retry-After honoured.
const RETRY_AFTER_MAX: u64 = 3600;
/// A refresh goes this long before the binding lapses when half its time would be too
/// early for a short one (see [`refresh_delay`]).
const REFRESH_MARGIN: u64 = 30;
/// Never sooner than this after a 200, however short the time the registrar granted.
const REFRESH_FLOOR: u64 = 10;
/// The longest Min-Expires a 423 may ask for.
const MIN_EXPIRES_MAX: u32 = 86_400;
/// 423s answered in a row for one attempt (a registrar that raises its minimum each time).
const MAX_TOO_BRIEF: u8 = 3;

/// When the next REGISTER of a registered trunk goes, `granted` seconds after the 200:
/// at half the time (RFC 3261 leaves it to the client; half leaves room for a failure and
/// a retry), or for a short binding [`REFRESH_MARGIN`] before it lapses — never sooner
/// than [`REFRESH_FLOOR`].
pub(crate) fn refresh_delay(granted: u32) -> Duration {
    let g = u64::from(granted);
    let secs = if g >= 4 * REFRESH_MARGIN {
        g / 2
    } else {
        g.saturating_sub(REFRESH_MARGIN).max(g / 2)
    };
    Duration::from_secs(secs.max(REFRESH_FLOOR))
}

/// `base` doubled for every failure in a row after the first, at most `max`.
fn backoff(base: Duration, max: Duration, failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    base.saturating_mul(1 << doublings).min(max)
}

/// A time both ways the core keeps it: a monotonic instant for the timer, Unix seconds for
/// the API and the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Wake {
    mono: Instant,
    unix: u64,
}

impl Wake {
    fn after(now: Now, d: Duration) -> Wake {
        Wake {
            mono: now.mono + d,
            unix: now.unix + d.as_secs(),
        }
    }
}

/// Where a trunk's registration stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegState {
    /// The trunk does not register.
    Off,
    /// No answer yet: the first REGISTER, or one after a restart or a change.
    Registering,
    /// The registrar keeps the binding (until `expires_at`).
    Registered,
    /// The last attempt failed; the next one is at `next_attempt_at`.
    Failed,
}

impl RegState {
    pub fn name(self) -> &'static str {
        match self {
            RegState::Off => "off",
            RegState::Registering => "registering",
            RegState::Registered => "registered",
            RegState::Failed => "failed",
        }
    }
}

/// A trunk's registration as the API and `switchboard trunks` show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrunkStatus {
    pub trunk: String,
    pub state: RegState,
    /// The registrar's URI (None when the trunk does not register).
    pub registrar: Option<String>,
    /// The address of record registered (`sip:USERNAME@DOMAIN`).
    pub aor: Option<String>,
    /// The contact last registered.
    pub contact: Option<String>,
    /// Until when (Unix seconds) the registrar keeps the binding, as it said.
    pub expires_at: Option<u64>,
    /// Why the last attempt failed (kept until one succeeds).
    pub last_error: Option<String>,
    /// When (Unix seconds) the next REGISTER goes: a refresh or a retry.
    pub next_attempt_at: Option<u64>,
    /// The host names among the trunk's `sources`, each with its addresses now (filled
    /// by the core from its table of source names).
    pub source_names: Vec<super::SourceNameStatus>,
}

/// The REGISTER waiting for its answer.
struct InFlight {
    tx: TxId,
    /// Where it went.
    to: Peer,
    /// The request as last sent, to send again with credentials when challenged.
    challenged: Box<Challenged>,
    /// The expiry it asked for (0: it unregisters).
    expires: u32,
    /// 423s answered for this attempt.
    too_brief: u8,
}

/// One trunk's registration (or the unregistration of a binding that is no longer
/// wanted: `leaving`).
struct Entry {
    trunk: String,
    account: TrunkAccount,
    reg: TrunkRegistration,
    call_id: String,
    from_tag: String,
    /// The CSeq number of the last REGISTER sent.
    cseq: u32,
    /// The expiry to ask for (the configured one, or a registrar's Min-Expires).
    asking: u32,
    state: RegState,
    in_flight: Option<InFlight>,
    /// When the next REGISTER goes (a refresh or a retry).
    next: Option<Wake>,
    /// The binding the registrar keeps: until when (Unix seconds), and where it was made.
    bound: Option<(u64, Peer)>,
    /// The contact last sent.
    contact: Option<String>,
    last_error: Option<String>,
    /// Failures in a row.
    failures: u32,
    /// The registrar's addresses (RFC 3263 order) and the one tried now.
    hops: Vec<Peer>,
    hop: usize,
    /// The resolution of the registrar's URI it waits for.
    resolving: Option<ResolutionId>,
    /// The binding is being removed; the entry ends with the answer.
    leaving: bool,
}

impl Entry {
    fn aor(&self) -> String {
        format!("sip:{}@{}", self.account.username, self.reg.domain)
    }

    /// The binding lasts at `unix`.
    fn bound_at(&self, unix: u64) -> Option<Peer> {
        self.bound
            .filter(|(until, _)| *until > unix)
            .map(|(_, p)| p)
    }
}

/// The trunks' registrations (see the module's documentation).
pub struct Registrant {
    entries: BTreeMap<u64, Entry>,
    /// Trunk id → its entry (leaving entries are in none of these).
    by_trunk: BTreeMap<String, u64>,
    /// Contact user → its entry.
    by_contact: BTreeMap<String, u64>,
    next_key: u64,
    /// Draining for a shutdown: nothing new starts.
    stopped: bool,
}

impl Default for Registrant {
    fn default() -> Self {
        Registrant::new()
    }
}

impl Registrant {
    pub fn new() -> Self {
        Registrant {
            entries: BTreeMap::new(),
            by_trunk: BTreeMap::new(),
            by_contact: BTreeMap::new(),
            next_key: 1,
            stopped: false,
        }
    }

    /// When [`Registrant::timeout`] must run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.entries
            .values()
            .filter_map(|e| e.next.map(|w| w.mono))
            .min()
    }

    /// Unregistrations waiting for their answer (a shutdown waits for them, bounded).
    pub fn leaving(&self) -> usize {
        self.entries
            .values()
            .filter(|e| e.leaving && e.in_flight.is_some())
            .count()
    }

    /// The trunk whose registration a request to `contact_user` from `source` belongs
    /// to: a registering trunk with that contact user, whose binding lasts and was made
    /// with the registrar at `source`. A contact user is only a name — anyone can send to
    /// it — so the address the registration went to is what vouches for the request.
    pub fn trunk_for_contact(&self, contact_user: &str, source: IpAddr, now: Now) -> Option<&str> {
        let e = self.entries.get(self.by_contact.get(contact_user)?)?;
        let bound = e.bound_at(now.unix)?;
        (bound.addr.ip() == source).then_some(e.trunk.as_str())
    }

    /// Every trunk of `policy` with its registration.
    pub fn status(&self, policy: &Policy) -> Vec<TrunkStatus> {
        policy
            .trunks()
            .map(|t| {
                let e = self.by_trunk.get(&t.id).and_then(|k| self.entries.get(k));
                match e {
                    None => TrunkStatus {
                        trunk: t.id.clone(),
                        state: RegState::Off,
                        registrar: None,
                        aor: None,
                        contact: None,
                        expires_at: None,
                        last_error: None,
                        next_attempt_at: None,
                        source_names: Vec::new(),
                    },
                    Some(e) => TrunkStatus {
                        trunk: t.id.clone(),
                        state: e.state,
                        registrar: Some(e.reg.registrar.clone()),
                        aor: Some(e.aor()),
                        contact: e.contact.clone(),
                        expires_at: e.bound.map(|(until, _)| until),
                        last_error: e.last_error.clone(),
                        next_attempt_at: e.next.map(|w| w.unix),
                        source_names: Vec::new(),
                    },
                }
            })
            .collect()
    }

    /// Takes in the policy (at start, and after every reload): trunks that now register
    /// are due at once (their REGISTER goes with the next [`Registrant::timeout`]);
    /// those that no longer do are unregistered now; a changed one registers again —
    /// after its old binding is removed when the registrar, the address of record or the
    /// contact changed.
    pub(crate) fn sync(&mut self, cx: &mut Ctx<'_>) {
        if self.stopped {
            return;
        }
        let policy = cx.directory.policy();
        let wanted: BTreeMap<&str, (&TrunkAccount, &TrunkRegistration)> = policy
            .trunks()
            .filter_map(|t| {
                let a = t.account.as_ref()?;
                Some((t.id.as_str(), (a, a.registration.as_ref()?)))
            })
            .collect();
        let current: Vec<(String, u64)> =
            self.by_trunk.iter().map(|(t, k)| (t.clone(), *k)).collect();
        for (trunk, key) in current {
            let Some(e) = self.entries.get_mut(&key) else {
                continue;
            };
            match wanted.get(trunk.as_str()) {
                None => {
                    tracing::info!(trunk, "trunk no longer registers: unregistering");
                    self.unregister(cx, key);
                }
                Some((a, r)) if **a == e.account && **r == e.reg => {}
                Some((a, r)) => {
                    let same_binding = a.username == e.account.username
                        && r.registrar == e.reg.registrar
                        && r.domain == e.reg.domain
                        && r.contact_user == e.reg.contact_user;
                    if same_binding {
                        // The same binding, asked for anew (new credentials or expiry).
                        tracing::info!(trunk, "trunk's account changed: registering again");
                        e.account = (*a).clone();
                        e.reg = (*r).clone();
                        e.asking = r.expires;
                        e.failures = 0;
                        e.next = Some(Wake::after(cx.now, Duration::ZERO));
                        e.hops.clear();
                        if let Some(f) = e.in_flight.take() {
                            cx.wire.owners.remove(&f.tx);
                        }
                    } else {
                        tracing::info!(
                            trunk,
                            "trunk's registration changed: unregistering the old binding"
                        );
                        self.unregister(cx, key);
                        self.add(cx, &trunk, a, r);
                    }
                }
            }
        }
        for (trunk, (a, r)) in wanted {
            if !self.by_trunk.contains_key(trunk) {
                self.add(cx, trunk, a, r);
            }
        }
    }

    /// A new registration, due at once.
    fn add(&mut self, cx: &mut Ctx<'_>, trunk: &str, a: &TrunkAccount, r: &TrunkRegistration) {
        let key = self.next_key;
        self.next_key += 1;
        let entry = Entry {
            trunk: trunk.to_string(),
            account: a.clone(),
            reg: r.clone(),
            call_id: cx.wire.entropy.token(),
            from_tag: cx.wire.entropy.token(),
            cseq: 0,
            asking: r.expires,
            state: RegState::Registering,
            in_flight: None,
            next: Some(Wake::after(cx.now, Duration::ZERO)),
            bound: None,
            contact: None,
            last_error: None,
            failures: 0,
            hops: Vec::new(),
            hop: 0,
            resolving: None,
            leaving: false,
        };
        self.by_trunk.insert(trunk.to_string(), key);
        self.by_contact.insert(r.contact_user.clone(), key);
        self.entries.insert(key, entry);
    }

    /// Removes a trunk's binding: a REGISTER with Expires: 0 to where it was made (or to
    /// where the REGISTER in flight went); the entry ends with its answer. A trunk with no
    /// binding and nothing in flight is simply forgotten.
    fn unregister(&mut self, cx: &mut Ctx<'_>, key: u64) {
        let Some(e) = self.entries.get_mut(&key) else {
            return;
        };
        self.by_trunk.remove(&e.trunk);
        self.by_contact.remove(&e.reg.contact_user);
        e.leaving = true;
        e.next = None;
        let in_flight = e.in_flight.take();
        if let Some(f) = &in_flight {
            cx.wire.owners.remove(&f.tx);
        }
        let to = e.bound_at(cx.now.unix).or_else(|| in_flight.map(|f| f.to));
        match to {
            Some(to) => self.send(cx, key, to, 0),
            None => {
                self.entries.remove(&key);
            }
        }
    }

    /// Draining for a shutdown: every binding is removed, nothing new starts. How many
    /// unregistrations went out.
    pub(crate) fn unregister_all(&mut self, cx: &mut Ctx<'_>) -> usize {
        self.stopped = true;
        let keys: Vec<u64> = self.by_trunk.values().copied().collect();
        for key in keys {
            self.unregister(cx, key);
        }
        self.leaving()
    }

    /// Sends the REGISTERs that are due.
    pub(crate) fn timeout(&mut self, cx: &mut Ctx<'_>) {
        if self.stopped {
            return;
        }
        let due: Vec<u64> = self
            .entries
            .iter()
            .filter(|(_, e)| e.next.is_some_and(|w| w.mono <= cx.now.mono))
            .map(|(k, _)| *k)
            .collect();
        for key in due {
            self.attempt(cx, key);
        }
    }

    /// A REGISTER for a trunk's binding, to the registrar's address tried now (looked up
    /// anew when there is none: at the first attempt and after every round of them).
    fn attempt(&mut self, cx: &mut Ctx<'_>, key: u64) {
        let Some(e) = self.entries.get_mut(&key) else {
            return;
        };
        e.next = None;
        if let Some(f) = e.in_flight.take() {
            // Still no answer (a retransmitting REGISTER): it is given up.
            cx.wire.owners.remove(&f.tx);
        }
        if let Some(id) = e.resolving.take() {
            cx.locating.cancel(id);
        }
        if e.hop >= e.hops.len() {
            e.hop = 0;
            e.hops.clear();
            let registrar = e.reg.registrar.clone();
            match cx
                .locating
                .resolve(&registrar, Waiter::Registration(key), cx.now.mono)
            {
                Located::Done(outcome) => return self.located_now(cx, key, outcome),
                Located::Pending(id) => {
                    e.resolving = Some(id);
                    return;
                }
            }
        }
        self.send_attempt(cx, key);
    }

    /// The resolution of a trunk's registrar's URI it waited for: the REGISTER goes to
    /// its first target, or the attempt fails.
    pub(crate) fn located(
        &mut self,
        cx: &mut Ctx<'_>,
        key: u64,
        id: ResolutionId,
        outcome: Result<Resolved, LocateError>,
    ) {
        let Some(e) = self.entries.get_mut(&key) else {
            return;
        };
        if e.resolving != Some(id) {
            return;
        }
        e.resolving = None;
        self.located_now(cx, key, outcome);
    }

    fn located_now(&mut self, cx: &mut Ctx<'_>, key: u64, outcome: Result<Resolved, LocateError>) {
        let Some(e) = self.entries.get_mut(&key) else {
            return;
        };
        match outcome {
            Ok(r) => {
                e.hops = r.targets.into_iter().map(|t| t.peer()).collect();
                e.hop = 0;
                self.send_attempt(cx, key);
            }
            Err(err) => {
                let why = format!("registrar {}: {err}", e.reg.registrar);
                // A URI that can never be sent to is a refusal; a name not found (or a
                // lookup that failed) is the network's trouble, retried sooner.
                let trouble = match err {
                    LocateError::BadUri { .. } | LocateError::Unsupported(_) => Trouble::Refused,
                    _ => Trouble::Server,
                };
                self.failure(cx, key, trouble, &why, None);
            }
        }
    }

    /// The REGISTER of an attempt to the registrar's address tried now.
    fn send_attempt(&mut self, cx: &mut Ctx<'_>, key: u64) {
        let Some(e) = self.entries.get_mut(&key) else {
            return;
        };
        let Some(&to) = e.hops.get(e.hop) else {
            return self.failure(cx, key, Trouble::Server, "no address", None);
        };
        let expires = e.asking;
        if e.state != RegState::Registered && e.failures == 0 {
            tracing::info!(
                trunk = %e.trunk,
                registrar = %e.reg.registrar,
                aor = %e.aor(),
                to = %to,
                "trunk registering"
            );
        }
        self.send(cx, key, to, expires);
    }

    /// Sends a trunk's REGISTER (a new CSeq number) asking for `expires` seconds (0:
    /// removing the binding) to `to`.
    fn send(&mut self, cx: &mut Ctx<'_>, key: u64, mut to: Peer, expires: u32) {
        let Some(e) = self.entries.get_mut(&key) else {
            return;
        };
        let Some(local) = cx.wire.leave_from(&mut to) else {
            let why = format!("no {} listener to send the REGISTER from", to.transport);
            return self.failure(cx, key, Trouble::Refused, &why, None);
        };
        let Ok(uri) = switchboard_sip::parse::uri_as_written(&e.reg.registrar) else {
            let why = format!("registrar {} is no usable URI", e.reg.registrar);
            return self.failure(cx, key, Trouble::Refused, &why, None);
        };
        // Named as the listener toward the registrar is (its advertised name, if any).
        let mut contact = format!("<sip:{}@", e.reg.contact_user);
        local.host_port().push_to(&mut contact);
        contact.push_str(to.transport.uri_suffix());
        contact.push('>');
        e.cseq = e.cseq.wrapping_add(1).max(1);
        let aor = format!("<{}>", e.aor());
        let mut headers = Headers::default();
        headers.push(Header::Via(local.via(&cx.wire.branch(None)).into()));
        headers.push(Header::MaxForwards("70".into()));
        headers.push(Header::From(format!("{aor};tag={}", e.from_tag).into()));
        headers.push(Header::To(aor.into()));
        headers.push(Header::CallId(e.call_id.clone().into()));
        headers.push(Header::CSeq(format!("{} REGISTER", e.cseq).into()));
        headers.push(Header::Contact(contact.clone().into()));
        headers.push(Header::Expires(expires.to_string().into()));
        headers.push(Header::UserAgent(cx.wire.server.clone().into()));
        headers.push(Header::ContentLength(0u32.into()));
        let req = Request {
            method: Method::Register,
            uri,
            version: Version::V2,
            headers,
            body: Vec::new(),
        };
        e.contact = Some(contact);
        let challenged = Challenged::new(e.trunk.clone(), req.clone());
        match cx
            .wire
            .send_request(req, to, Owner::Registration(key), cx.now)
        {
            Ok(tx) => {
                e.in_flight = Some(InFlight {
                    tx,
                    to,
                    challenged,
                    expires,
                    too_brief: 0,
                })
            }
            Err(err) => {
                let why = format!("REGISTER not sent: {err}");
                self.failure(cx, key, Trouble::Server, &why, None);
            }
        }
    }

    /// The answer to a trunk's REGISTER.
    pub(crate) fn response(&mut self, cx: &mut Ctx<'_>, key: u64, tx: TxId, resp: Response) {
        let code = resp.status_code.code();
        if code < 200 {
            return;
        }
        let Some(e) = self.entries.get_mut(&key) else {
            return;
        };
        let Some(f) = e.in_flight.take_if(|f| f.tx == tx) else {
            return; // the answer to a REGISTER given up
        };
        // The registrar's address answered: put last for a while when it is in trouble.
        if code == 503 {
            let after = retry_after(&resp.headers).map(Duration::from_secs);
            let now = cx.now.mono;
            cx.locating
                .locator
                .report_failure(target_of(f.to), after, now);
        } else {
            cx.locating.locator.report_success(target_of(f.to));
        }
        match code {
            200..=299 if f.expires == 0 => {
                tracing::info!(trunk = %e.trunk, registrar = %e.reg.registrar, "trunk unregistered");
                self.entries.remove(&key);
            }
            200..=299 => {
                let contact = e.contact.clone().unwrap_or_default();
                let granted = granted(&resp, &contact).unwrap_or(f.expires);
                if granted == 0 {
                    let why = "the registrar kept no binding (expires 0)";
                    return self.failure(cx, key, Trouble::Refused, why, None);
                }
                let until = cx.now.unix + u64::from(granted);
                let was = e.state;
                e.state = RegState::Registered;
                e.bound = Some((until, f.to));
                e.failures = 0;
                e.last_error = None;
                // The next round starts from the address that answered.
                let delay = refresh_delay(granted);
                e.next = Some(Wake::after(cx.now, delay));
                if was != RegState::Registered {
                    tracing::info!(
                        trunk = %e.trunk,
                        registrar = %e.reg.registrar,
                        contact = %contact,
                        expires = granted,
                        until = %unix_time(until),
                        refresh_in = delay.as_secs(),
                        "trunk registered"
                    );
                } else {
                    tracing::debug!(trunk = %e.trunk, expires = granted, until = %unix_time(until), "trunk registration refreshed");
                }
            }
            401 | 407 => self.challenged(cx, key, f, &resp),
            423 => {
                let min = header_number(&resp.headers, |h| match h {
                    Header::MinExpires(v) => Some(v.value()),
                    _ => None,
                });
                match min {
                    Some(m)
                        if m > u64::from(f.expires)
                            && m <= u64::from(MIN_EXPIRES_MAX)
                            && f.too_brief < MAX_TOO_BRIEF
                            && f.expires > 0 =>
                    {
                        tracing::info!(trunk = %e.trunk, asked = f.expires, min_expires = m, "registrar wants a longer expiry: asking again");
                        e.asking = m as u32;
                        let too_brief = f.too_brief + 1;
                        let (to, asking) = (f.to, e.asking);
                        self.send(cx, key, to, asking);
                        if let Some(f) = self
                            .entries
                            .get_mut(&key)
                            .and_then(|e| e.in_flight.as_mut())
                        {
                            f.too_brief = too_brief;
                        }
                    }
                    _ => {
                        let why = reason_of(&resp, "with no Min-Expires it could take");
                        self.failure(cx, key, Trouble::Refused, &why, retry_after(&resp.headers));
                    }
                }
            }
            408 | 480 | 500..=599 => {
                let why = reason_of(&resp, "");
                self.failure(cx, key, Trouble::Server, &why, retry_after(&resp.headers));
            }
            _ => {
                let why = reason_of(&resp, "");
                self.failure(cx, key, Trouble::Refused, &why, retry_after(&resp.headers));
            }
        }
    }

    /// A 401 or 407 to a REGISTER: sent again with the account's answer (once, again for a
    /// stale nonce); otherwise the registration failed (the credentials were refused).
    fn challenged(&mut self, cx: &mut Ctx<'_>, key: u64, mut f: InFlight, resp: &Response) {
        let Some(e) = self.entries.get_mut(&key) else {
            return;
        };
        let Some(local) = cx.wire.leave_from(&mut f.to) else {
            let why = format!("no {} listener to send the REGISTER from", f.to.transport);
            return self.failure(cx, key, Trouble::Refused, &why, None);
        };
        let via = local.via(&cx.wire.branch(None));
        match cx.carrier.answer(
            &mut cx.wire.entropy,
            &e.account,
            &mut f.challenged,
            resp,
            via,
        ) {
            Ok(req) => {
                e.cseq = cseq_number(&req.headers).unwrap_or(e.cseq);
                match cx
                    .wire
                    .send_request(req, f.to, Owner::Registration(key), cx.now)
                {
                    Ok(tx) => {
                        f.tx = tx;
                        e.in_flight = Some(f);
                    }
                    Err(err) => {
                        let why = format!("REGISTER not sent: {err}");
                        self.failure(cx, key, Trouble::Server, &why, None);
                    }
                }
            }
            Err(why) => {
                let code = resp.status_code.code();
                let why = format!("{code}: {why}");
                self.failure(cx, key, Trouble::Refused, &why, None);
            }
        }
    }

    /// A REGISTER's transaction ended without an answer: no answer in time (408) or a
    /// transport error (503).
    pub(crate) fn failed(&mut self, cx: &mut Ctx<'_>, key: u64, tx: TxId, code: u16) {
        let Some(e) = self.entries.get_mut(&key) else {
            return;
        };
        if e.in_flight.as_ref().is_none_or(|f| f.tx != tx) {
            return;
        }
        if let Some(f) = e.in_flight.take() {
            let now = cx.now.mono;
            cx.locating
                .locator
                .report_failure(target_of(f.to), None, now);
        }
        let why = if code == 408 {
            "no answer from the registrar"
        } else {
            "the registrar cannot be reached"
        };
        self.failure(cx, key, Trouble::Server, why, None);
    }

    /// An attempt failed: an unregistration ends; a server's trouble moves on to the
    /// registrar's next address at once, if it has another; otherwise the trunk backs
    /// off — long after a refusal, short after a server's trouble, as long as a
    /// Retry-After says when one is given — and the log says so.
    fn failure(
        &mut self,
        cx: &mut Ctx<'_>,
        key: u64,
        trouble: Trouble,
        why: &str,
        retry_after: Option<u64>,
    ) {
        let Some(e) = self.entries.get_mut(&key) else {
            return;
        };
        if let Some(f) = e.in_flight.take() {
            cx.wire.owners.remove(&f.tx);
        }
        if e.leaving {
            tracing::info!(trunk = %e.trunk, registrar = %e.reg.registrar, why, "trunk unregistration failed");
            self.entries.remove(&key);
            return;
        }
        if trouble == Trouble::Server && e.hop + 1 < e.hops.len() {
            e.hop += 1;
            tracing::info!(trunk = %e.trunk, why, next = %e.hops[e.hop], "trunk registration: trying the registrar's next address");
            e.next = Some(Wake::after(cx.now, Duration::ZERO));
            return;
        }
        // A new round of addresses next time, looked up anew.
        e.hop = e.hops.len();
        e.failures = e.failures.saturating_add(1);
        let mut delay = match trouble {
            Trouble::Refused => backoff(LONG_BACKOFF, LONG_BACKOFF_MAX, e.failures),
            Trouble::Server => backoff(SHORT_BACKOFF, SHORT_BACKOFF_MAX, e.failures),
        };
        if let Some(r) = retry_after {
            let r = Duration::from_secs(r.clamp(1, RETRY_AFTER_MAX));
            delay = match trouble {
                Trouble::Refused => delay.max(r),
                Trouble::Server => r,
            };
        }
        let next = Wake::after(cx.now, delay);
        e.state = RegState::Failed;
        e.last_error = Some(why.to_string());
        e.next = Some(next);
        tracing::warn!(
            trunk = %e.trunk,
            registrar = %e.reg.registrar,
            why,
            failures = e.failures,
            retry_in = delay.as_secs(),
            until = %unix_time(next.unix),
            "trunk registration failed; backing off"
        );
    }

    /// A REGISTER's transaction is over: nothing to do (its answer, or its failure, came
    /// first).
    pub(crate) fn ended(&mut self, _tx: TxId) {}
}

/// What kind of failure an attempt met.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Trouble {
    /// The registrar (or the account, or the configuration) refused: retrying soon would
    /// be refused again.
    Refused,
    /// The server's trouble (or the network's): another address, or later.
    Server,
}

/// How long the registrar keeps our binding, from its 200: the `expires` of our contact
/// among its Contacts, else its Expires header; None when it says neither.
fn granted(resp: &Response, contact: &str) -> Option<u32> {
    let ours = contact_address(contact);
    for h in resp.headers.iter() {
        let Header::Contact(v) = h else { continue };
        for entry in split_values(v.value()) {
            if contact_address(entry) != ours {
                continue;
            }
            // Parameters of the header value: after `>`, or after the URI when unbracketed.
            let params = match entry.find('>') {
                Some(i) => &entry[i + 1..],
                None => entry.split_once(';').map_or("", |(_, p)| p),
            };
            let expires = params.split(';').find_map(|p| {
                let (name, value) = p.split_once('=')?;
                name.trim()
                    .eq_ignore_ascii_case("expires")
                    .then(|| value.trim().parse::<u32>().ok())?
            });
            if expires.is_some() {
                return expires;
            }
        }
    }
    header_number(&resp.headers, |h| match h {
        Header::Expires(v) => Some(v.value()),
        _ => None,
    })
    .map(|n| n.min(u64::from(u32::MAX)) as u32)
}

/// A response's code and phrase, for the log and the API (`403 Forbidden`), with `more`.
fn reason_of(resp: &Response, more: &str) -> String {
    let status = match &resp.wire_reason {
        Some(r) => format!("{} {r}", resp.status_code.code()),
        None => resp.status_code.to_string(),
    };
    let mut text = message::header_text(&status);
    if !more.is_empty() {
        text.push(' ');
        text.push_str(more);
    }
    text
}

/// Unix seconds as RFC 3339 (UTC), for the log.
pub(crate) fn unix_time(t: u64) -> String {
    chrono::DateTime::from_timestamp(t as i64, 0)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| t.to_string())
}

#[cfg(test)]
#[path = "registrant_tests.rs"]
mod tests;
