//! The registrar (RFC 3261 §10.3) and its location table, sans-I/O.
//!
//! [`Registrar::register`] turns one authenticated REGISTER into an answer and the list of
//! binding changes it makes; the caller makes the changes durable before sending the answer
//! (or calls [`Registrar::rollback`] if that fails). Time is wall-clock Unix seconds passed
//! in by the caller, because binding expiry must survive a restart.
//!
//! Bindings are identified by `+sip.instance` (with `reg-id` when present, RFC 5626 §6) when
//! the phone sends one, so a phone re-registering from a new address replaces its binding;
//! otherwise by the contact URI (RFC 3261 §10.3 step 7).

use crate::message::split_values;
use crate::msg::headers::Header;
use crate::msg::Request;
use crate::peer::{ConnId, Peer};
use crate::transport::Transport;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;

/// Expiry rules of the registrar, in seconds.
#[derive(Clone, Copy, Debug)]
pub struct RegistrarConfig {
    pub min_expires: u32,
    pub default_expires: u32,
    pub max_expires: u32,
    pub max_contacts_per_aor: usize,
}

/// The node holding a binding's flow, among several sharing their state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowOwner {
    /// Its name (`[store] node`).
    pub node: String,
    /// The URI the other nodes reach it at, to send requests for the binding through it
    /// when only its flow reaches the phone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hop: Option<String>,
    /// The node was found gone (its liveness lapsed): nothing is sent through it until it
    /// is back. Not stored.
    #[serde(skip)]
    pub gone: bool,
}

/// One registered contact of an address of record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Binding {
    /// The address of record, as the caller names it (Switchboard uses the user's id).
    pub aor: String,
    /// The contact URI, as the phone sent it (without `<>` and header parameters).
    pub contact: String,
    /// q-value in thousandths (0..=1000).
    pub q: u16,
    /// Unix time (s) at which the binding lapses.
    pub expires_at: u64,
    pub call_id: String,
    pub cseq: u32,
    /// `+sip.instance` (RFC 5626 / 5627), unquoted.
    pub instance: Option<String>,
    pub reg_id: Option<u32>,
    /// Where the REGISTER came from: requests for this contact go there (NAT traversal).
    pub transport: Transport,
    pub source: SocketAddr,
    /// The connection the REGISTER came over, for a stream transport: the binding's flow
    /// (RFC 5626), the only way to reach a phone whose port is an ephemeral one. Not
    /// stored: connection ids are this process's, and a flow ends with the process (or
    /// with the connection, [`Registrar::flow_closed`]); `None` then.
    #[serde(skip)]
    pub conn: Option<ConnId>,
    /// The address of ours the REGISTER came to: requests for this contact leave from it
    /// (a NAT in front of the phone lets in only what comes from where it sent to).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<SocketAddr>,
    pub user_agent: Option<String>,
    /// Unix time (s) of the first registration of this binding.
    pub registered_at: u64,
    /// With several nodes sharing their state: the node that took the REGISTER, which
    /// holds the binding's flow (its connection, the address a NAT lets in). Boxed: most
    /// daemons run alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Box<FlowOwner>>,
    /// Taken by another node (see [`Binding::owner`]): this process has no flow to it. Not
    /// stored.
    #[serde(skip)]
    pub remote: bool,
}

impl Binding {
    /// Whether the binding is live at `now` (whole Unix seconds, rounded down). A binding
    /// lives through the second of `expires_at`, so it never gets less than the expiry it
    /// was granted, whatever fraction of a second `now` was cut from.
    pub fn live_at(&self, now: u64) -> bool {
        self.expires_at >= now
    }

    /// What identifies this binding within its AoR.
    pub fn key(&self) -> String {
        match (&self.instance, self.reg_id) {
            (Some(i), Some(r)) => format!("instance:{i};reg-id={r}"),
            (Some(i), None) => format!("instance:{i}"),
            (None, _) => {
                let mut key = String::with_capacity(self.contact.len() + 12);
                key.push_str("contact:");
                push_normalized_contact(&mut key, &self.contact);
                key
            }
        }
    }

    /// Whether `key` is this binding's [`Binding::key`], without making it for a binding
    /// identified by its contact.
    pub fn has_key(&self, key: &str) -> bool {
        match (&self.instance, key.strip_prefix("contact:")) {
            (None, Some(normalized)) => is_normalized_contact(&self.contact, normalized),
            (None, None) => false,
            (Some(_), _) => self.key() == key,
        }
    }

    /// The address to send requests for this binding to (the REGISTER's source), over
    /// its flow where it has one.
    pub fn peer(&self) -> Peer {
        Peer {
            transport: self.transport,
            addr: self.source,
            conn: self.conn,
            local: self.local,
        }
    }

    /// Whether requests for this binding must go over its flow: a stream transport, an
    /// outbound flow (RFC 5626 `reg-id`), or a phone whose contact is not where its
    /// REGISTER came from (behind NAT).
    pub fn needs_flow(&self) -> bool {
        self.transport.is_stream()
            || self.reg_id.is_some()
            || crate::proxy::uri_target(&self.contact)
                .is_none_or(|(_, addr)| addr.ip() != self.source.ip())
    }

    /// Whether requests for this binding can only go over its flow, and that flow is gone:
    /// a stream transport whose connection closed (or belonged to an earlier run). Such a
    /// binding is unreachable until the phone registers again; dialling its source would
    /// reach an ephemeral port nobody listens on.
    pub fn flow_gone(&self) -> bool {
        self.transport.is_stream() && self.conn.is_none()
    }

    fn contact_header_value(&self, now: u64) -> String {
        let mut v = format!(
            "<{}>;expires={}",
            self.contact,
            self.expires_at.saturating_sub(now)
        );
        if self.q != 1000 {
            v.push_str(&format!(";q={}", format_q(self.q)));
        }
        if let Some(i) = &self.instance {
            v.push_str(&format!(";+sip.instance=\"{i}\""));
        }
        v
    }
}

fn format_q(q: u16) -> String {
    let s = format!("{}.{:03}", q / 1000, q % 1000);
    let s = s.trim_end_matches('0');
    s.trim_end_matches('.').to_string()
}

/// URI comparison for binding identity, simplified from RFC 3261 §19.1.4: scheme and host
/// are case-insensitive, the user part is not.
fn normalize_contact(uri: &str) -> String {
    let mut out = String::with_capacity(uri.len() + 4);
    push_normalized_contact(&mut out, uri);
    out
}

/// The parts [`normalize_contact`] is made of: scheme, user part (with its `@`), host part.
fn contact_parts(uri: &str) -> (&str, &str, &str) {
    let (scheme, rest) = uri.split_once(':').unwrap_or(("sip", uri));
    match rest.rfind('@') {
        Some(i) => (scheme, &rest[..=i], &rest[i + 1..]),
        None => (scheme, "", rest),
    }
}

/// Appends [`normalize_contact`] of `uri`, without a string per part.
fn push_normalized_contact(out: &mut String, uri: &str) {
    let (scheme, user, hostpart) = contact_parts(uri);
    let start = out.len();
    out.push_str(scheme);
    out[start..].make_ascii_lowercase();
    out.push(':');
    out.push_str(user);
    let start = out.len();
    out.push_str(hostpart);
    out[start..].make_ascii_lowercase();
}

/// Whether `normalized` is [`normalize_contact`] of `uri`, without making it.
fn is_normalized_contact(uri: &str, normalized: &str) -> bool {
    let (scheme, user, hostpart) = contact_parts(uri);
    let n = normalized.as_bytes();
    if n.len() != scheme.len() + 1 + user.len() + hostpart.len() {
        return false;
    }
    let (n_scheme, rest) = n.split_at(scheme.len());
    let (colon, rest) = rest.split_at(1);
    let (n_user, n_host) = rest.split_at(user.len());
    let lower_is = |raw: &str, want: &[u8]| {
        raw.bytes()
            .zip(want)
            .all(|(a, &b)| a.to_ascii_lowercase() == b)
    };
    lower_is(scheme, n_scheme)
        && colon == b":"
        && user.as_bytes() == n_user
        && lower_is(hostpart, n_host)
}

/// A change to the location table, to be made durable.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    Upsert(Binding),
    Remove { aor: String, key: String },
}

/// The registrar's answer to a REGISTER.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub code: u16,
    /// Header lines of the answer (Contact list, Min-Expires, Warning…).
    pub headers: Vec<Header>,
    /// Changes the answer acknowledges: durable before a 2xx goes out.
    pub changes: Vec<Change>,
    /// The AoR's bindings before the request, for [`Registrar::rollback`].
    pub previous: Vec<Binding>,
}

impl Outcome {
    fn refuse(code: u16, why: &str) -> Self {
        Outcome {
            code,
            headers: vec![crate::message::warning(why)],
            changes: Vec::new(),
            previous: Vec::new(),
        }
    }
}

/// A contact of a REGISTER, as read from the request.
struct RequestedContact {
    uri: String,
    expires: Option<u32>,
    q: u16,
    instance: Option<String>,
    reg_id: Option<u32>,
}

/// The registrar with its location table.
pub struct Registrar {
    config: RegistrarConfig,
    table: HashMap<String, Vec<Binding>>,
    /// (expires_at, aor, key) of every binding, to evict on time.
    by_expiry: BTreeSet<(u64, String, String)>,
    /// Contact address (see [`contact_address`]) → (aor, key), to route in-dialog
    /// requests addressed to a registered contact over its flow.
    by_contact: HashMap<String, (String, String)>,
    /// The AoRs with bindings registered over each connection (how many of their bindings),
    /// so that a connection closing costs a look at those alone: anyone can open and close
    /// connections.
    by_flow: HashMap<ConnId, HashMap<String, usize>>,
    /// This node, when several share their state (see [`Registrar::set_node`]).
    node: Option<Box<FlowOwner>>,
}

/// The part of a contact URI that names where it is: scheme, user, host and port, with the
/// host lower-cased and the parameters left out.
pub fn contact_address(uri: &str) -> String {
    let uri = uri.trim().trim_start_matches('<');
    let uri = uri.split(['>', '?']).next().unwrap_or(uri);
    let host_start = uri.rfind('@').map(|i| i + 1).unwrap_or(0);
    let end = uri[host_start..]
        .find(';')
        .map(|i| host_start + i)
        .unwrap_or(uri.len());
    normalize_contact(&uri[..end])
}

/// A key under which contact URIs that RFC 3261 §19.1.4 counts as equal are equal: scheme
/// and host in any letter case, the user part as written but with escaped unreserved
/// characters unescaped, the port as given (a default port is not the same as none), the
/// `user`, `ttl`, `method`, `maddr` and `transport` parameters and the URI headers with
/// names and values in any letter case and in any order. Other parameters are left out
/// (§19.1.4 ignores those only one of the URIs has).
pub fn contact_compare_key(uri: &str) -> String {
    let uri = crate::proxy::strip_angle(uri);
    let (main, headers) = match uri.split_once('?') {
        Some((m, h)) => (m, Some(h)),
        None => (uri, None),
    };
    let (scheme, rest) = main.split_once(':').unwrap_or(("sip", main));
    let (user, hostpart) = match rest.rfind('@') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => ("", rest),
    };
    let mut parts = hostpart.split(';');
    let host = parts.next().unwrap_or("");
    let mut params: Vec<String> = parts
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_ascii_lowercase)
        .filter(|p| {
            let name = p.split('=').next().unwrap_or("");
            matches!(name, "user" | "ttl" | "method" | "maddr" | "transport")
        })
        .collect();
    params.sort();
    let mut hdrs: Vec<String> = headers
        .map(|h| {
            h.split('&')
                .filter(|x| !x.is_empty())
                .map(|x| unescape_unreserved(x).to_ascii_lowercase())
                .collect()
        })
        .unwrap_or_default();
    hdrs.sort();
    format!(
        "{}:{}@{};{}?{}",
        scheme.trim().to_ascii_lowercase(),
        unescape_unreserved(user),
        host.to_ascii_lowercase(),
        params.join(";"),
        hdrs.join("&")
    )
}

/// `%XX` escapes of unreserved characters (RFC 3261 §25.1) replaced by the characters:
/// §19.1.4 counts them as equal. Other escapes stay, with upper-case hex digits.
fn unescape_unreserved(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let hex = after
            .get(..2)
            .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
        match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
            Some(v) => {
                let c = char::from(v);
                if c.is_ascii_alphanumeric() || "-_.!~*'()".contains(c) {
                    out.push(c);
                } else {
                    out.push('%');
                    out.push_str(&after[..2].to_ascii_uppercase());
                }
                rest = &after[2..];
            }
            None => {
                out.push('%');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

impl Registrar {
    pub fn new(config: RegistrarConfig) -> Self {
        Registrar {
            config,
            table: HashMap::new(),
            by_expiry: BTreeSet::new(),
            by_contact: HashMap::new(),
            by_flow: HashMap::new(),
            node: None,
        }
    }

    /// Names this node among several sharing their state (`hop`: the URI the others reach
    /// it at): the bindings it takes say so, and bindings read back that another node
    /// took are [`Binding::remote`].
    pub fn set_node(&mut self, name: String, hop: Option<String>) {
        self.node = Some(Box::new(FlowOwner {
            node: name,
            hop,
            gone: false,
        }));
    }

    /// Node `name` is gone (`gone`), or back: the bindings it took that only its flow
    /// reaches cannot be reached through it while it is gone (their phones register again
    /// elsewhere, or it comes back). Returns how many bindings that concerns.
    pub fn node_gone(&mut self, name: &str, gone: bool) -> usize {
        let mut n = 0;
        for b in self.table.values_mut().flatten() {
            let needs_flow = b.needs_flow();
            if let Some(owner) = b.owner.as_mut().filter(|o| b.remote && o.node == name) {
                owner.gone = gone;
                n += usize::from(needs_flow);
            }
        }
        n
    }

    /// Whether `b` was taken by another node.
    fn taken_elsewhere(&self, b: &Binding) -> bool {
        match (&self.node, &b.owner) {
            (Some(me), Some(o)) => me.node != o.node,
            _ => false,
        }
    }

    pub fn config(&self) -> &RegistrarConfig {
        &self.config
    }

    /// Loads bindings restored from durable storage; those lapsed by `now` are skipped.
    pub fn restore(&mut self, bindings: impl IntoIterator<Item = Binding>, now: u64) -> usize {
        let mut n = 0;
        for mut b in bindings {
            if b.live_at(now) {
                b.remote = self.taken_elsewhere(&b);
                self.insert(b);
                n += 1;
            }
        }
        n
    }

    /// Applies a binding another node stored (or removed, None) under `aor` and its
    /// identity `id`. The flow and the address of ours a REGISTER came to belong to the
    /// process that took it: kept when this registrar holds the same binding from the same
    /// source (a write of this node's own, read back), dropped otherwise — requests for a
    /// binding taken elsewhere leave from an address of this node's own choosing. A binding
    /// already lapsed at `now`, or one whose AoR or identity are not those of its key, is
    /// not taken.
    pub fn apply_shared(&mut self, aor: &str, id: &str, binding: Option<Binding>, now: u64) {
        let Some(mut b) = binding else {
            self.remove(aor, id);
            return;
        };
        if b.aor != aor || !b.has_key(id) || !b.live_at(now) {
            self.remove(aor, id);
            return;
        }
        let held = self
            .table
            .get(aor)
            .and_then(|bs| bs.iter().find(|h| h.has_key(id)));
        b.remote = self.taken_elsewhere(&b);
        match held {
            Some(h) if h.source == b.source && h.transport == b.transport && !b.remote => {
                b.conn = h.conn;
                b.local = h.local;
            }
            _ => {
                b.conn = None;
                b.local = None;
            }
        }
        self.insert(b);
    }

    /// The live bindings of an AoR, highest q first.
    pub fn lookup(&self, aor: &str, now: u64) -> Vec<&Binding> {
        let mut v: Vec<&Binding> = self
            .table
            .get(aor)
            .map(|bs| bs.iter().filter(|b| b.live_at(now)).collect())
            .unwrap_or_default();
        v.sort_by_key(|b| std::cmp::Reverse(b.q));
        v
    }

    /// The live binding whose contact is at `uri` (parameters aside), if any.
    pub fn find_contact(&self, uri: &str, now: u64) -> Option<&Binding> {
        let (aor, key) = self.by_contact.get(&contact_address(uri))?;
        self.table
            .get(aor)?
            .iter()
            .find(|b| b.has_key(key) && b.live_at(now))
    }

    /// The connection `conn` closed: the bindings registered over it lose their flow
    /// ([`Binding::flow_gone`]). Returns how many did. Only the AoRs registered over that
    /// connection are looked at.
    pub fn flow_closed(&mut self, conn: ConnId) -> usize {
        let Some(aors) = self.by_flow.remove(&conn) else {
            return 0;
        };
        let mut n = 0;
        for aor in aors.keys() {
            for b in self.table.get_mut(aor).into_iter().flatten() {
                if b.conn == Some(conn) {
                    b.conn = None;
                    n += 1;
                }
            }
        }
        n
    }

    /// Until when (Unix seconds) the connection `conn` carries a live binding of `aor`.
    pub fn flow_expiry(&self, aor: &str, conn: ConnId) -> Option<u64> {
        self.table
            .get(aor)?
            .iter()
            .filter(|b| b.conn == Some(conn))
            .map(|b| b.expires_at)
            .max()
    }

    /// Number of bindings in the table.
    pub fn len(&self) -> usize {
        self.by_expiry.len()
    }

    /// Every binding live at `now` (Unix seconds), in no particular order.
    pub fn live(&self, now: u64) -> impl Iterator<Item = &Binding> {
        self.table
            .values()
            .flatten()
            .filter(move |b| b.live_at(now))
    }

    /// Number of addresses of record with at least one binding.
    pub fn aors(&self) -> usize {
        self.table.values().filter(|b| !b.is_empty()).count()
    }

    pub fn is_empty(&self) -> bool {
        self.by_expiry.is_empty()
    }

    /// When the next binding lapses (the second after its last live one).
    pub fn next_expiry(&self) -> Option<u64> {
        self.by_expiry.first().map(|(t, _, _)| *t + 1)
    }

    /// Removes bindings lapsed by `now` and returns the removals, to be made durable.
    pub fn expire(&mut self, now: u64) -> Vec<Change> {
        let mut out = Vec::new();
        while let Some((t, aor, key)) = self.by_expiry.first().cloned() {
            // Live through its expiry second: `now` is whole seconds, cut down.
            if t >= now {
                break;
            }
            self.remove(&aor, &key);
            out.push(Change::Remove { aor, key });
        }
        out
    }

    fn insert(&mut self, b: Binding) {
        let key = b.key();
        self.remove(&b.aor, &key);
        self.by_expiry
            .insert((b.expires_at, b.aor.clone(), key.clone()));
        self.by_contact
            .insert(contact_address(&b.contact), (b.aor.clone(), key));
        if let Some(conn) = b.conn {
            *self
                .by_flow
                .entry(conn)
                .or_default()
                .entry(b.aor.clone())
                .or_default() += 1;
        }
        self.table.entry(b.aor.clone()).or_default().push(b);
    }

    fn remove(&mut self, aor: &str, key: &str) {
        if let Some(bs) = self.table.get_mut(aor) {
            if let Some(i) = bs.iter().position(|b| b.key() == key) {
                let b = bs.remove(i);
                if let Some(conn) = b.conn {
                    if let Some(aors) = self.by_flow.get_mut(&conn) {
                        if let Some(n) = aors.get_mut(aor) {
                            *n -= 1;
                            if *n == 0 {
                                aors.remove(aor);
                            }
                        }
                        if aors.is_empty() {
                            self.by_flow.remove(&conn);
                        }
                    }
                }
                self.by_expiry
                    .remove(&(b.expires_at, aor.to_string(), key.to_string()));
                let address = contact_address(&b.contact);
                if self
                    .by_contact
                    .get(&address)
                    .is_some_and(|(a, k)| a == aor && k == key)
                {
                    self.by_contact.remove(&address);
                }
            }
            if bs.is_empty() {
                self.table.remove(aor);
            }
        }
    }

    /// Puts an AoR back as it was before a request whose changes could not be stored.
    pub fn rollback(&mut self, aor: &str, previous: Vec<Binding>) {
        let keys: Vec<String> = self
            .table
            .get(aor)
            .map(|bs| bs.iter().map(Binding::key).collect())
            .unwrap_or_default();
        for k in keys {
            self.remove(aor, &k);
        }
        for b in previous {
            self.insert(b);
        }
    }

    /// Handles an authenticated REGISTER for `aor` received from `source` (RFC 3261 §10.3
    /// steps 5–8). The changes are already applied to the table; a 2xx must not be sent
    /// before they are durable.
    pub fn register(&mut self, aor: &str, req: &Request, source: Peer, now: u64) -> Outcome {
        let call_id = match req.headers.iter().find_map(|h| match h {
            Header::CallId(c) => Some(c.value().trim().to_string()),
            _ => None,
        }) {
            Some(c) => c,
            None => return Outcome::refuse(400, "missing Call-ID"),
        };
        let cseq = req
            .headers
            .iter()
            .find_map(|h| match h {
                Header::CSeq(c) => c.value().split_whitespace().next()?.parse::<u32>().ok(),
                _ => None,
            })
            .unwrap_or(0);
        let header_expires = match req.headers.iter().find_map(|h| match h {
            Header::Expires(e) => Some(e.value().trim().to_string()),
            _ => None,
        }) {
            None => None,
            Some(v) => match parse_delta(&v) {
                Some(n) => Some(n),
                None => return Outcome::refuse(400, "malformed Expires header"),
            },
        };
        let user_agent = req.headers.iter().find_map(|h| match h {
            Header::UserAgent(u) => Some(u.value().chars().take(128).collect()),
            _ => None,
        });

        let contact_values: Vec<String> = req
            .headers
            .iter()
            .filter_map(|h| match h {
                Header::Contact(c) => Some(c.value().to_string()),
                _ => None,
            })
            .collect();
        let mut entries = Vec::new();
        for v in &contact_values {
            entries.extend(split_values(v).into_iter().map(str::to_string));
        }
        let previous: Vec<Binding> = self.table.get(aor).cloned().unwrap_or_default();

        // Step 6: "*" removes all bindings; only alone and with Expires: 0.
        if entries.iter().any(|e| e.trim() == "*") {
            if entries.len() != 1 || header_expires != Some(0) {
                return Outcome::refuse(400, "Contact: * needs Expires: 0 and no other contact");
            }
            // Step 6 also applies the Call-ID/CSeq rule to each binding.
            if previous
                .iter()
                .any(|b| b.call_id == call_id && cseq <= b.cseq)
            {
                return Outcome::refuse(400, "CSeq is not higher than the binding's");
            }
            let mut changes = Vec::new();
            for b in &previous {
                changes.push(Change::Remove {
                    aor: aor.to_string(),
                    key: b.key(),
                });
            }
            self.rollback(aor, Vec::new());
            return self.answer(aor, changes, previous, now);
        }

        let mut requested = Vec::new();
        for e in &entries {
            match parse_contact(e) {
                Some(c) => requested.push(c),
                None => return Outcome::refuse(400, "malformed Contact header"),
            }
        }

        // Expiry per contact; 423 before any change (step 7 is all or nothing).
        let mut resolved = Vec::new();
        for c in requested {
            let asked = c
                .expires
                .or(header_expires)
                .unwrap_or(self.config.default_expires);
            if asked != 0 && asked < self.config.min_expires {
                let mut o = Outcome::refuse(423, "expiry too brief");
                o.headers = vec![Header::MinExpires(
                    self.config.min_expires.to_string().into(),
                )];
                return o;
            }
            resolved.push((c, asked.min(self.config.max_expires)));
        }

        let mut changes = Vec::new();
        let mut working: Vec<Binding> = previous.clone();
        for (c, expires) in resolved {
            let candidate = Binding {
                aor: aor.to_string(),
                contact: c.uri,
                q: c.q,
                expires_at: now + u64::from(expires),
                call_id: call_id.clone(),
                cseq,
                instance: c.instance,
                reg_id: c.reg_id,
                transport: source.transport,
                source: source.addr,
                conn: source.conn.filter(|_| source.transport.is_stream()),
                local: source.local,
                user_agent: user_agent.clone(),
                registered_at: now,
                owner: self.node.clone(),
                remote: false,
            };
            let key = candidate.key();
            let existing = working.iter().position(|b| b.key() == key);
            if let Some(i) = existing {
                let old = &working[i];
                if old.call_id == call_id && cseq <= old.cseq {
                    return Outcome::refuse(400, "CSeq is not higher than the binding's");
                }
            }
            if expires == 0 {
                if let Some(i) = existing {
                    working.remove(i);
                    changes.push(Change::Remove {
                        aor: aor.to_string(),
                        key,
                    });
                }
                continue;
            }
            let mut b = candidate;
            if let Some(i) = existing {
                b.registered_at = working[i].registered_at;
                working.remove(i);
            }
            working.push(b.clone());
            changes.push(Change::Upsert(b));
        }
        let live = working.iter().filter(|b| b.live_at(now)).count();
        if live > self.config.max_contacts_per_aor {
            let mut o = Outcome::refuse(503, "too many registered contacts");
            o.headers.clear();
            o.headers.push(crate::message::warning(&format!(
                "at most {} contacts per address of record",
                self.config.max_contacts_per_aor
            )));
            return o;
        }
        for ch in &changes {
            match ch {
                Change::Upsert(b) => self.insert(b.clone()),
                Change::Remove { aor, key } => self.remove(aor, key),
            }
        }
        self.answer(aor, changes, previous, now)
    }

    fn answer(&self, aor: &str, changes: Vec<Change>, previous: Vec<Binding>, now: u64) -> Outcome {
        let headers = self
            .lookup(aor, now)
            .into_iter()
            .map(|b| Header::Contact(b.contact_header_value(now).into()))
            .collect();
        Outcome {
            code: 200,
            headers,
            changes,
            previous,
        }
    }
}

fn parse_delta(v: &str) -> Option<u32> {
    let v = v.trim();
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // RFC 3261 §20.19: values past 2**32-1 count as 2**32-1.
    Some(
        v.parse::<u64>()
            .map(|n| n.min(u64::from(u32::MAX)) as u32)
            .unwrap_or(u32::MAX),
    )
}

/// Reads one Contact entry: `"name" <uri>;params` or `uri;params`.
fn parse_contact(entry: &str) -> Option<RequestedContact> {
    let entry = entry.trim();
    let (uri, params) = if let Some(start) = entry.find('<') {
        let end = start + entry[start..].find('>')?;
        (&entry[start + 1..end], &entry[end + 1..])
    } else {
        // Without angle brackets, parameters belong to the header, not the URI (§20.10).
        match entry.find(';') {
            Some(i) => (&entry[..i], &entry[i..]),
            None => (entry, ""),
        }
    };
    let uri = uri.trim();
    let lower = uri.to_ascii_lowercase();
    if !(lower.starts_with("sip:") || lower.starts_with("sips:")) || uri.len() > 512 {
        return None;
    }
    crate::msg::parse_uri(uri).ok()?;
    let mut c = RequestedContact {
        uri: uri.to_string(),
        expires: None,
        q: 1000,
        instance: None,
        reg_id: None,
    };
    for p in params.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, value) = match p.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim())),
            None => (p, None),
        };
        match name.to_ascii_lowercase().as_str() {
            "expires" => c.expires = Some(parse_delta(value?)?),
            "q" => c.q = parse_q(value?)?,
            "+sip.instance" => {
                let v = value?.trim_matches('"');
                if v.is_empty() || v.len() > 256 {
                    return None;
                }
                c.instance = Some(v.to_string());
            }
            "reg-id" => c.reg_id = Some(value?.parse().ok()?),
            _ => {}
        }
    }
    Some(c)
}

/// q-value (RFC 3261 §20.10: 0 to 1 with up to three decimals) in thousandths.
fn parse_q(v: &str) -> Option<u16> {
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let int: u16 = match int {
        "0" => 0,
        "1" => 1,
        _ => return None,
    };
    let frac_val: u16 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<3}").parse().ok()?
    };
    let q = int * 1000 + frac_val;
    (q <= 1000).then_some(q)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::SipMessage;
    use crate::parse::{parse, Limits};

    fn cfg() -> RegistrarConfig {
        RegistrarConfig {
            min_expires: 60,
            default_expires: 3600,
            max_expires: 7200,
            max_contacts_per_aor: 3,
        }
    }

    fn register(call_id: &str, cseq: u32, extra: &str) -> Request {
        let text = format!(
            "REGISTER sip:switchboard.local SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK{cseq}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:alice@switchboard.local>;tag=1\r\nTo: <sip:alice@switchboard.local>\r\n\
             Call-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\n{extra}Content-Length: 0\r\n\r\n"
        );
        match parse(text.as_bytes(), &Limits::default()).unwrap() {
            SipMessage::Request(r) => r,
            _ => unreachable!(),
        }
    }

    #[test]
    fn a_binding_knows_its_key_without_making_it() {
        let binding = |contact: &str, instance: Option<&str>, reg_id: Option<u32>| Binding {
            aor: "alice".into(),
            contact: contact.into(),
            q: 1000,
            expires_at: 0,
            call_id: "c".into(),
            cseq: 1,
            instance: instance.map(str::to_string),
            reg_id,
            transport: Transport::Udp,
            source: SocketAddr::from(([127, 0, 0, 1], 5070)),
            conn: None,
            local: None,
            user_agent: None,
            registered_at: 0,
            owner: None,
            remote: false,
        };
        let contacts = [
            "sip:alice@10.0.0.1:5070",
            "SIP:Alice@Example.COM;transport=udp",
            "sips:b@h@X.org",
            "tel:+1555",
            "noscheme",
            "sip:\u{e9}l\u{e8}ve@H\u{f4}te",
            "",
        ];
        for a in contacts {
            // The key as it was made before: each part a string of its own.
            let (scheme, rest) = a.split_once(':').unwrap_or(("sip", a));
            let (user, host) = match rest.rfind('@') {
                Some(i) => (&rest[..=i], &rest[i + 1..]),
                None => ("", rest),
            };
            let old = format!(
                "{}:{}{}",
                scheme.to_ascii_lowercase(),
                user,
                host.to_ascii_lowercase()
            );
            assert_eq!(normalize_contact(a), old);
            let b = binding(a, None, None);
            assert_eq!(b.key(), format!("contact:{old}"));
            for other in contacts {
                let key = binding(other, None, None).key();
                assert_eq!(b.has_key(&key), b.key() == key, "{a} / {other}");
            }
            assert!(!b.has_key("instance:x"));
        }
        let b = binding("sip:a@h", Some("urn:x"), Some(1));
        assert!(b.has_key("instance:urn:x;reg-id=1"));
        assert!(!b.has_key("contact:sip:a@h"));
    }

    fn src(port: u16) -> Peer {
        Peer::udp(SocketAddr::from(([127, 0, 0, 1], port)))
    }

    fn contacts(o: &Outcome) -> Vec<String> {
        o.headers
            .iter()
            .filter_map(|h| match h {
                Header::Contact(c) => Some(c.value().to_string()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn add_refresh_remove() {
        let mut r = Registrar::new(cfg());
        let o = r.register(
            "alice",
            &register("c1", 1, "Contact: <sip:alice@127.0.0.1:5070>\r\n"),
            src(5070),
            1000,
        );
        assert_eq!(o.code, 200);
        assert_eq!(
            contacts(&o),
            vec!["<sip:alice@127.0.0.1:5070>;expires=3600"]
        );
        assert_eq!(o.changes.len(), 1);
        let o = r.register(
            "alice",
            &register(
                "c1",
                2,
                "Contact: <sip:alice@127.0.0.1:5070>;expires=120\r\n",
            ),
            src(5070),
            1010,
        );
        assert_eq!(contacts(&o), vec!["<sip:alice@127.0.0.1:5070>;expires=120"]);
        assert_eq!(r.len(), 1);
        let o = r.register(
            "alice",
            &register(
                "c1",
                3,
                "Contact: <sip:alice@127.0.0.1:5070>\r\nExpires: 0\r\n",
            ),
            src(5070),
            1020,
        );
        assert_eq!(o.code, 200);
        assert!(contacts(&o).is_empty());
        assert!(r.is_empty());
        assert_eq!(o.previous.len(), 1);
    }

    #[test]
    fn a_binding_from_another_node_is_held_without_this_nodes_flow_unless_it_is_this_nodes_own() {
        let mut r = Registrar::new(cfg());
        let tcp = Peer::tcp(SocketAddr::from(([127, 0, 0, 1], 40000)), 7)
            .with_local(SocketAddr::from(([127, 0, 0, 1], 5060)));
        let req = register(
            "c1",
            1,
            "Via: SIP/2.0/TCP 127.0.0.1:40000;branch=z9hG4bKx\r\nContact: <sip:alice@127.0.0.1:40000;transport=tcp>\r\n",
        );
        assert_eq!(r.register("alice", &req, tcp, 1000).code, 200);
        let mine = r.lookup("alice", 1000)[0].clone();
        let id = mine.key();
        // Read back from the store (no flow, no local address): this node's flow stays.
        let stored = Binding {
            conn: None,
            local: None,
            cseq: 2,
            ..mine.clone()
        };
        r.apply_shared("alice", &id, Some(stored.clone()), 1000);
        let held = r.lookup("alice", 1000)[0].clone();
        assert_eq!(
            (held.conn, held.local, held.cseq),
            (mine.conn, mine.local, 2)
        );
        // The phone moved and registered with another node: this node has no flow to it.
        let elsewhere = Binding {
            source: SocketAddr::from(([127, 0, 0, 1], 40001)),
            local: Some(SocketAddr::from(([127, 0, 0, 2], 5060))),
            ..stored.clone()
        };
        r.apply_shared("alice", &id, Some(elsewhere), 1000);
        let held = r.lookup("alice", 1000)[0].clone();
        assert_eq!((held.conn, held.local), (None, None));
        assert!(held.flow_gone());
        assert_eq!(r.flow_closed(7), 0, "no binding left on the old flow");
        // Lapsed, or not under its own key: not taken (and what was held there goes).
        r.apply_shared("alice", "contact:sip:other@h", Some(stored.clone()), 1000);
        assert_eq!(r.len(), 1);
        r.apply_shared(
            "alice",
            &id,
            Some(Binding {
                expires_at: 999,
                ..stored.clone()
            }),
            1000,
        );
        assert!(r.is_empty());
        r.apply_shared("alice", &id, Some(stored), 1000);
        assert_eq!(r.len(), 1);
        r.apply_shared("alice", &id, None, 1000);
        assert!(r.is_empty());
        assert_eq!(r.next_expiry(), None);
    }

    #[test]
    fn contact_uris_compare_as_rfc3261_says() {
        let same = [
            (
                "sip:alice@Host.Example:5070;transport=UDP",
                "SIP:alice@host.example:5070;transport=udp",
            ),
            ("sip:%61lice@h:5070", "sip:alice@h:5070"),
            ("sip:a%3bb@h", "sip:a%3Bb@h"),
            (
                "<sip:alice@h;transport=tcp;ob>",
                "sip:alice@h;ob;transport=tcp",
            ),
            // A parameter only one side has (other than the five that must match) is ignored.
            ("sip:alice@h;ob", "sip:alice@h"),
            ("sip:alice@h;user=phone;lr", "sip:alice@h;lr;User=Phone"),
            (
                "sip:alice@h?Subject=x&Priority=urgent",
                "sip:alice@h?priority=urgent&subject=x",
            ),
        ];
        for (a, b) in same {
            assert_eq!(contact_compare_key(a), contact_compare_key(b), "{a} / {b}");
        }
        let different = [
            ("sip:alice@h", "sip:Alice@h"),
            ("sip:alice@h", "sip:alice@h:5060"),
            ("sip:alice@h:5070", "sip:alice@h:5071"),
            ("sip:alice@h;transport=tcp", "sip:alice@h"),
            ("sip:alice@h;transport=tcp", "sip:alice@h;transport=udp"),
            ("sip:alice@h;maddr=10.0.0.1", "sip:alice@h"),
            ("sip:alice@h", "sips:alice@h"),
            ("sip:a%3bb@h", "sip:a;b@h"),
            ("sip:alice@h?subject=x", "sip:alice@h"),
        ];
        for (a, b) in different {
            assert_ne!(contact_compare_key(a), contact_compare_key(b), "{a} / {b}");
        }
    }

    #[test]
    fn bindings_are_found_by_contact_address() {
        let mut r = Registrar::new(cfg());
        r.register(
            "alice",
            &register("c1", 1, "Contact: <sip:alice-x@Host.Example:5070;ob>\r\n"),
            src(5070),
            1000,
        );
        let b = r.find_contact("sip:alice-x@host.example:5070;transport=udp", 1000);
        assert_eq!(b.map(|b| b.aor.as_str()), Some("alice"));
        assert!(r
            .find_contact("sip:alice-x@host.example:5071", 1000)
            .is_none());
        assert!(r
            .find_contact("sip:Alice-x@host.example:5070", 1000)
            .is_none());
        assert_eq!(
            contact_address("<sip:u@H:1;lr>"),
            contact_address("sip:u@h:1")
        );
        r.register(
            "alice",
            &register(
                "c1",
                2,
                "Contact: <sip:alice-x@host.example:5070;ob>\r\nExpires: 0\r\n",
            ),
            src(5070),
            1001,
        );
        assert!(r
            .find_contact("sip:alice-x@host.example:5070", 1001)
            .is_none());
    }

    #[test]
    fn query_without_contact_lists_bindings() {
        let mut r = Registrar::new(cfg());
        r.register(
            "alice",
            &register(
                "c1",
                1,
                "Contact: <sip:a@1.2.3.4>;q=0.5, <sip:b@1.2.3.4>\r\n",
            ),
            src(1),
            0,
        );
        let o = r.register("alice", &register("c9", 1, ""), src(1), 10);
        assert_eq!(o.code, 200);
        assert!(o.changes.is_empty());
        assert_eq!(
            contacts(&o),
            vec![
                "<sip:b@1.2.3.4>;expires=3590",
                "<sip:a@1.2.3.4>;expires=3590;q=0.5"
            ]
        );
    }

    #[test]
    fn star_removes_all_and_needs_expires_zero() {
        let mut r = Registrar::new(cfg());
        r.register(
            "alice",
            &register("c1", 1, "Contact: <sip:a@h1>, <sip:b@h2>\r\n"),
            src(1),
            0,
        );
        assert_eq!(
            r.register("alice", &register("c2", 1, "Contact: *\r\n"), src(1), 1)
                .code,
            400
        );
        let o = r.register(
            "alice",
            &register("c2", 1, "Contact: *\r\nExpires: 0\r\n"),
            src(1),
            1,
        );
        assert_eq!(o.code, 200);
        assert_eq!(o.changes.len(), 2);
        assert!(r.is_empty());
    }

    #[test]
    fn too_brief_gets_423_with_min_expires_and_changes_nothing() {
        let mut r = Registrar::new(cfg());
        let o = r.register(
            "alice",
            &register("c1", 1, "Contact: <sip:a@h1>;expires=30\r\n"),
            src(1),
            0,
        );
        assert_eq!(o.code, 423);
        assert_eq!(o.headers, vec![Header::MinExpires("60".into())]);
        assert!(r.is_empty());
    }

    #[test]
    fn long_expiry_is_cut_to_max() {
        let mut r = Registrar::new(cfg());
        let o = r.register(
            "alice",
            &register("c1", 1, "Contact: <sip:a@h1>\r\nExpires: 99999999999\r\n"),
            src(1),
            0,
        );
        assert_eq!(contacts(&o), vec!["<sip:a@h1>;expires=7200"]);
    }

    #[test]
    fn out_of_order_cseq_is_refused() {
        let mut r = Registrar::new(cfg());
        r.register(
            "alice",
            &register("c1", 5, "Contact: <sip:a@h1>\r\n"),
            src(1),
            0,
        );
        assert_eq!(
            r.register(
                "alice",
                &register("c1", 5, "Contact: <sip:a@h1>\r\n"),
                src(1),
                1
            )
            .code,
            400
        );
        assert_eq!(
            r.register(
                "alice",
                &register("c1", 4, "Contact: <sip:a@h1>\r\n"),
                src(1),
                1
            )
            .code,
            400
        );
        // Another Call-ID may use any CSeq.
        assert_eq!(
            r.register(
                "alice",
                &register("c2", 1, "Contact: <sip:a@h1>\r\n"),
                src(1),
                1
            )
            .code,
            200
        );
    }

    #[test]
    fn instance_replaces_binding_from_new_port() {
        let mut r = Registrar::new(cfg());
        let inst = ";+sip.instance=\"<urn:uuid:0001>\";reg-id=1";
        r.register(
            "alice",
            &register(
                "c1",
                1,
                &format!("Contact: <sip:alice@127.0.0.1:5070>{inst}\r\n"),
            ),
            src(5070),
            0,
        );
        let o = r.register(
            "alice",
            &register(
                "c2",
                1,
                &format!("Contact: <sip:alice@127.0.0.1:5080>{inst}\r\n"),
            ),
            src(5080),
            5,
        );
        assert_eq!(o.code, 200);
        assert_eq!(r.len(), 1);
        let b = &r.lookup("alice", 5)[0];
        assert_eq!(b.contact, "sip:alice@127.0.0.1:5080");
        assert_eq!(b.source.port(), 5080);
        assert_eq!(b.registered_at, 0);
        assert!(contacts(&o)[0].contains("+sip.instance=\"<urn:uuid:0001>\""));
    }

    #[test]
    fn contact_limit() {
        let mut r = Registrar::new(cfg());
        let o = r.register(
            "alice",
            &register(
                "c1",
                1,
                "Contact: <sip:a@h1>, <sip:a@h2>, <sip:a@h3>, <sip:a@h4>\r\n",
            ),
            src(1),
            0,
        );
        assert_eq!(o.code, 503);
        assert!(r.is_empty());
    }

    #[test]
    fn expiry_evicts_on_time_and_restore_skips_lapsed() {
        let mut r = Registrar::new(cfg());
        r.register(
            "alice",
            &register(
                "c1",
                1,
                "Contact: <sip:a@h1>;expires=60, <sip:a@h2>;expires=120\r\n",
            ),
            src(1),
            0,
        );
        assert_eq!(r.next_expiry(), Some(61));
        assert!(r.expire(60).is_empty(), "live through its expiry second");
        let gone = r.expire(61);
        assert_eq!(gone.len(), 1);
        assert_eq!(r.lookup("alice", 60).len(), 1);
        let all: Vec<Binding> = r.lookup("alice", 60).into_iter().cloned().collect();
        let mut r2 = Registrar::new(cfg());
        assert_eq!(r2.restore(all.clone(), 60), 1);
        assert_eq!(r2.restore(all, 200), 0);
    }

    #[test]
    fn rollback_restores_previous() {
        let mut r = Registrar::new(cfg());
        r.register(
            "alice",
            &register("c1", 1, "Contact: <sip:a@h1>\r\n"),
            src(1),
            0,
        );
        let o = r.register(
            "alice",
            &register("c1", 2, "Contact: <sip:a@h2>\r\n"),
            src(1),
            0,
        );
        assert_eq!(r.len(), 2);
        r.rollback("alice", o.previous);
        assert_eq!(r.len(), 1);
        assert_eq!(r.lookup("alice", 0)[0].contact, "sip:a@h1");
    }

    #[test]
    fn bad_contacts_and_q() {
        let mut r = Registrar::new(cfg());
        for bad in [
            "Contact: <mailto:a@b>\r\n",
            "Contact: <sip:a@h>;q=2\r\n",
            "Contact: <sip:a@h>;expires=x\r\n",
            "Contact: <sip:a@h\r\n",
        ] {
            assert_eq!(
                r.register("alice", &register("c1", 1, bad), src(1), 0).code,
                400,
                "{bad}"
            );
        }
        assert_eq!(parse_q("0.25"), Some(250));
        assert_eq!(parse_q("1"), Some(1000));
        assert_eq!(parse_q("1.5"), None);
        assert_eq!(format_q(250), "0.25");
    }

    #[test]
    fn a_closed_flow_takes_its_bindings_flow_and_nothing_else() {
        let mut r = Registrar::new(cfg());
        let over = |conn| Peer::tcp("127.0.0.1:40000".parse().unwrap(), conn);
        let contact = |c: &str| format!("Contact: <sip:{c}@127.0.0.1:40000;transport=tcp>\r\n");
        r.register("alice", &register("a", 1, &contact("a")), over(7), 0);
        r.register("bob", &register("b", 1, &contact("b")), over(7), 0);
        r.register("carol", &register("c", 1, &contact("c")), over(8), 0);
        let conn_of = |r: &Registrar, aor: &str| r.lookup(aor, 0)[0].conn;
        assert_eq!(conn_of(&r, "alice"), Some(7));
        assert!(!r.lookup("alice", 0)[0].flow_gone());
        assert_eq!(r.flow_closed(99), 0);
        assert_eq!(r.flow_closed(7), 2);
        assert!(r.lookup("alice", 0)[0].flow_gone());
        assert!(r.lookup("bob", 0)[0].flow_gone());
        assert_eq!(conn_of(&r, "carol"), Some(8));
        assert_eq!(r.flow_closed(7), 0, "once");
        // A binding that lapses leaves no trace of its connection.
        r.expire(u64::MAX - 1);
        assert!(r.by_flow.is_empty());
        // A datagram source names no connection.
        r.register(
            "dave",
            &register("d", 1, "Contact: <sip:d@h>\r\n"),
            src(1),
            0,
        );
        assert_eq!(conn_of(&r, "dave"), None);
        assert!(!r.lookup("dave", 0)[0].flow_gone());
    }
}
