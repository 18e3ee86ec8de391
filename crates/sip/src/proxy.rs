//! Building blocks of a stateful proxy (RFC 3261 §16), sans-I/O.
//!
//! Pure functions over parsed messages: the checks of a received request that only a proxy
//! makes (loops, §16.3 step 4), the Route set it consumes (§16.4), the copy it forwards
//! (§16.6: Request-URI, Max-Forwards, Record-Route, Via), the response it relays (§16.7 step 3:
//! its own Via removed) and the choice of the best final response among its branches (§16.7
//! step 6). The daemon decides where requests go and keeps the state; nothing here does I/O
//! or reads a clock.

use crate::message::{split_first_value, split_values};
use crate::msg::headers::Header;
use crate::msg::prelude::*;
use crate::msg::{Request, Response, Uri};
use crate::transaction::MAGIC_COOKIE;
use crate::transport::Transport;
use std::net::{IpAddr, SocketAddr};

/// What follows the magic cookie in the branches this proxy makes: the loop-detection key
/// (§16.6 step 8) comes right after it.
const BRANCH_TAG: &str = "-sb";

/// The value Max-Forwards gets when a request has none readable (§16.6 step 3).
pub const DEFAULT_MAX_FORWARDS: u32 = 70;

/// A digest of the fields that decide where a request goes (§16.6 step 8): Request-URI,
/// From tag, To tag, Call-ID, CSeq number, Route, Proxy-Require and Proxy-Authorization.
/// A request that comes back with the same key through this proxy is a loop; one whose
/// Request-URI changed on the way (a spiral) is not.
pub fn loop_key(req: &Request) -> u64 {
    let mut h = Fnv::new();
    // The URI as text, as it is written out.
    h.write(crate::wire::uri_text(&req.uri).as_bytes());
    for header in req.headers.iter() {
        let (name, value): (&[u8], &str) = match header {
            Header::From(v) => (b"f", crate::message::tag_of(v.value()).unwrap_or("")),
            Header::To(v) => (b"t", crate::message::tag_of(v.value()).unwrap_or("")),
            Header::CallId(v) => (b"i", v.value()),
            Header::CSeq(v) => (b"c", v.value().split_whitespace().next().unwrap_or("")),
            Header::Route(v) => (b"r", v.value()),
            Header::ProxyRequire(v) => (b"q", v.value()),
            Header::ProxyAuthorization(v) => (b"a", v.value()),
            _ => continue,
        };
        h.write(name);
        h.write(value.trim().as_bytes());
        h.write(b"\n");
    }
    h.finish()
}

/// A branch for a request this proxy forwards: the magic cookie, this proxy's tag, the
/// request's [`loop_key`] and `unique` (distinct for every branch of the same request).
pub fn branch(key: u64, unique: u64) -> String {
    let mut out = String::with_capacity(MAGIC_COOKIE.len() + BRANCH_TAG.len() + 34);
    out.push_str(MAGIC_COOKIE);
    out.push_str(BRANCH_TAG);
    push_hex(&mut out, key, 16);
    out.push('.');
    push_hex(&mut out, unique, 1);
    out
}

/// `v` in lower-case hex, zero-padded to at least `width` digits.
fn push_hex(out: &mut String, v: u64, width: usize) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let digits = (64 - v.leading_zeros() as usize)
        .div_ceil(4)
        .max(width.min(16));
    for i in (0..digits).rev() {
        out.push(DIGITS[((v >> (i * 4)) & 0xf) as usize] as char);
    }
}

/// The loop key inside a branch this proxy made, if it is one.
fn key_of_branch(branch: &str) -> Option<u64> {
    let rest = branch
        .strip_prefix(MAGIC_COOKIE)?
        .strip_prefix(BRANCH_TAG)?;
    u64::from_str_radix(rest.get(..16)?, 16).ok()
}

/// Every Via value of a message, top first.
pub fn via_values<M: HeadersExt>(m: &M) -> Vec<String> {
    m.headers()
        .iter()
        .filter_map(|h| match h {
            Header::Via(v) => Some(v.value()),
            _ => None,
        })
        .flat_map(split_values)
        .map(str::to_string)
        .collect()
}

/// The sent-by (`host[:port]`) and branch of one Via value.
fn via_parts(via: &str) -> Option<(&str, Option<&str>)> {
    let mut parts = via.split(';');
    let head = parts.next()?;
    let sent_by = head.split_whitespace().last()?;
    let branch = parts.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim().eq_ignore_ascii_case("branch").then(|| v.trim())
    });
    Some((sent_by, branch))
}

/// §16.3 step 4: whether the request already passed through this proxy in the same state
/// (a Via of ours whose branch carries the request's current [`loop_key`]). `is_local`
/// says whether a Via sent-by (`host[:port]`) is one of this proxy's addresses.
pub fn is_loop(req: &Request, is_local: impl Fn(&str) -> bool) -> bool {
    let key = loop_key(req);
    via_values(req).iter().any(|v| {
        via_parts(v).is_some_and(|(sent_by, branch)| {
            branch.and_then(key_of_branch) == Some(key) && is_local(sent_by)
        })
    })
}

/// How this proxy names itself at one of its addresses in Via, Record-Route and Contact:
/// by the address itself, or by the host and port it advertises there (`host:port`, an
/// IPv6 host in brackets).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostPort<'a> {
    Addr(SocketAddr),
    Named(&'a str),
}

impl HostPort<'_> {
    /// Appends it as a URI or a Via writes it.
    pub fn push_to(self, out: &mut String) {
        match self {
            HostPort::Addr(a) => push_host_port(out, a),
            HostPort::Named(n) => out.push_str(n),
        }
    }
}

/// A Via value for a request this proxy sends from `local` over `transport` (with `rport`,
/// RFC 3581, so that the answer comes back to the port it left from).
pub fn via_value(transport: Transport, local: SocketAddr, branch: &str) -> String {
    via_value_at(transport, HostPort::Addr(local), branch)
}

/// [`via_value`] naming this proxy as `local` says (an address, or an advertised name).
pub fn via_value_at(transport: Transport, local: HostPort<'_>, branch: &str) -> String {
    let mut out = String::with_capacity(64 + branch.len());
    out.push_str("SIP/2.0/");
    out.push_str(transport.via_token());
    out.push(' ');
    local.push_to(&mut out);
    out.push_str(";branch=");
    out.push_str(branch);
    out.push_str(";rport");
    out
}

/// `ip:port`, with brackets around an IPv6 address.
pub fn host_port(addr: SocketAddr) -> String {
    let mut out = String::with_capacity(24);
    push_host_port(&mut out, addr);
    out
}

/// Appends an IP address as `Display` writes it, IPv4 without the formatting machinery.
pub fn push_ip(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(ip) => {
            let mut b = itoa::Buffer::new();
            for (i, o) in ip.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                out.push_str(b.format(o));
            }
        }
        IpAddr::V6(ip) => {
            use std::fmt::Write;
            let _ = write!(out, "{ip}");
        }
    }
}

/// Appends `ip:port` (IPv6 in brackets). Written digit by digit: this runs several times
/// for every message a proxy forwards, where the formatting machinery shows.
pub fn push_host_port(out: &mut String, addr: SocketAddr) {
    if addr.is_ipv6() {
        out.push('[');
    }
    push_ip(out, addr.ip());
    if addr.is_ipv6() {
        out.push(']');
    }
    let mut b = itoa::Buffer::new();
    out.push(':');
    out.push_str(b.format(addr.port()));
}

/// A URI naming this proxy at `local` for a Record-Route or Route header, with `lr`
/// (loose routing, §16.6 step 4) and the given extra parameters (`;name=value…`).
pub fn own_uri(transport: Transport, local: SocketAddr, params: &str) -> String {
    own_uri_at(transport, HostPort::Addr(local), params)
}

/// [`own_uri`] naming this proxy as `local` says (an address, or an advertised name).
pub fn own_uri_at(transport: Transport, local: HostPort<'_>, params: &str) -> String {
    let t = transport.uri_suffix();
    let mut out = String::with_capacity(40 + params.len());
    out.push_str("<sip:");
    local.push_to(&mut out);
    out.push_str(t);
    out.push_str(";lr");
    out.push_str(params);
    out.push('>');
    out
}

/// The copy of `req` a proxy forwards (§16.6 steps 2–8): Request-URI set to `uri` (when
/// given), Max-Forwards one less (70 when it had none), `record_route` values put on top of
/// the Record-Route set (a dialog-creating request), and `via` on top of the Via set.
/// The caller has checked that Max-Forwards is above zero and consumed its own Route
/// entries ([`pop_own_routes`]).
pub fn forward(req: &Request, uri: Option<Uri>, via: &str, record_route: &[String]) -> Request {
    forward_owned(req.clone(), uri, via, record_route)
}

/// [`forward`] of a request nothing else keeps (the ACK of a 2xx, sent on statelessly):
/// changed in place instead of copied.
pub fn forward_owned(
    mut out: Request,
    uri: Option<Uri>,
    via: &str,
    record_route: &[String],
) -> Request {
    if let Some(uri) = uri {
        out.uri = uri;
    }
    let mut saw_max_forwards = false;
    for h in out.headers.iter_mut() {
        if let Header::MaxForwards(m) = h {
            let n = m
                .value()
                .trim()
                .parse::<u32>()
                .unwrap_or(DEFAULT_MAX_FORWARDS);
            *h = Header::MaxForwards(n.saturating_sub(1).to_string().into());
            saw_max_forwards = true;
            break;
        }
    }
    if !saw_max_forwards {
        out.headers.push(Header::MaxForwards(
            (DEFAULT_MAX_FORWARDS - 1).to_string().into(),
        ));
    }
    // Record-Route on top of its set; a new set goes right after the Vias (headers of one
    // name stay together, §7.3.1).
    let list = &mut out.headers.0;
    let at = list
        .iter()
        .position(|h| matches!(h, Header::RecordRoute(_)))
        .or_else(|| {
            list.iter()
                .rposition(|h| matches!(h, Header::Via(_)))
                .map(|i| i + 1)
        })
        .unwrap_or(0);
    list.reserve(1 + record_route.len());
    list.splice(
        at..at,
        record_route
            .iter()
            .map(|r| Header::RecordRoute(r.clone().into())),
    );
    list.insert(0, Header::Via(via.to_string().into()));
    out
}

/// The URIs of a message's Route set, top first (without the `<>`).
pub fn route_set<M: HeadersExt>(m: &M) -> Vec<String> {
    m.headers()
        .iter()
        .filter_map(|h| match h {
            Header::Route(r) => Some(r.value()),
            _ => None,
        })
        .flat_map(split_values)
        .map(|v| strip_angle(v).to_string())
        .collect()
}

/// The URI of a name-addr (`"x" <sip:…>;p` → `sip:…`) or a bare addr-spec.
pub fn strip_angle(v: &str) -> &str {
    let v = crate::parse::trim(v);
    match (
        memchr::memchr(b'<', v.as_bytes()),
        memchr::memrchr(b'>', v.as_bytes()),
    ) {
        // '<' and '>' are ASCII: character boundaries.
        (Some(a), Some(b)) if a < b => &v[a + 1..b],
        _ => v,
    }
}

/// Replaces the Route set of a message with `routes` (URIs, top first).
fn set_route_set(req: &mut Request, routes: &[String]) {
    req.headers.retain(|h| !matches!(h, Header::Route(_)));
    if !routes.is_empty() {
        let value = routes
            .iter()
            .map(|r| format!("<{r}>"))
            .collect::<Vec<_>>()
            .join(", ");
        // Route goes after the Via set: order among different names carries no meaning.
        req.headers.push(Header::Route(value.into()));
    }
}

/// §16.4: consumes the Route entries naming this proxy. When the Request-URI names this
/// proxy and a Route set follows (a strict router before us put our Record-Route there),
/// the last Route becomes the Request-URI. Then every top Route entry for which `is_ours`
/// holds is removed (two, after a double Record-Route). Returns the removed entries, top
/// first.
pub fn pop_own_routes(req: &mut Request, is_ours: impl Fn(&str) -> bool) -> Vec<String> {
    let mut routes = route_set(req);
    let mut popped = Vec::new();
    if !routes.is_empty() {
        let request_uri = crate::wire::uri_text(&req.uri);
        if is_ours(&request_uri) {
            if let Some(last) = routes.pop() {
                if let Ok(uri) = crate::parse::uri_as_written(&last) {
                    popped.push(request_uri);
                    req.uri = uri;
                }
            }
        }
    }
    while routes.first().is_some_and(|r| is_ours(r)) {
        popped.push(routes.remove(0));
    }
    if !popped.is_empty() {
        set_route_set(req, &routes);
    }
    popped
}

/// Where a request goes next (§16.6 step 6–7 and RFC 3263 without DNS): its top Route,
/// else its Request-URI.
pub fn next_hop_uri(req: &Request) -> String {
    route_set(req)
        .into_iter()
        .next()
        .unwrap_or_else(|| crate::wire::uri_text(&req.uri))
}

/// A URI parameter (`;name=value` or `;name`), case-insensitive name; `Some("")` for a
/// parameter without a value.
pub fn uri_param<'a>(uri: &'a str, name: &str) -> Option<&'a str> {
    param_of(strip_angle(uri), name)
}

/// [`uri_param`] of a URI already out of its `<>`.
fn param_of<'a>(uri: &'a str, name: &str) -> Option<&'a str> {
    use crate::parse::trim;
    let bytes = uri.as_bytes();
    let params = &uri[..memchr::memchr(b'?', bytes).unwrap_or(uri.len())];
    // Parameters follow the host part: skip the user part, which may hold ';'.
    let host_start = memchr::memrchr(b'@', params.as_bytes()).map_or(0, |i| i + 1);
    params[host_start..].split(';').skip(1).find_map(|p| {
        let (k, v) = match memchr::memchr(b'=', p.as_bytes()) {
            Some(eq) => (&p[..eq], &p[eq + 1..]),
            None => (p, ""),
        };
        trim(k).eq_ignore_ascii_case(name).then(|| trim(v))
    })
}

/// The transport and socket address a SIP URI names directly: an IP-literal host (port
/// 5060 when absent, `transport=tcp` honoured). `None` for a host name (needs DNS, RFC 3263)
/// or an unreadable URI.
pub fn uri_target(uri: &str) -> Option<(Transport, SocketAddr)> {
    let uri = strip_angle(uri);
    let transport = match param_of(uri, "transport") {
        Some(t) => Transport::from_param(t)?,
        None => Transport::Udp,
    };
    // Nearly every URI a proxy routes by (Record-Route, Contact) names an IP address: read
    // that directly; anything else goes to the full URI parser.
    if let Some(addr) = ip_host_port(uri, transport.default_port()) {
        return Some((transport, addr));
    }
    let parsed = Uri::try_from(uri).ok()?;
    let ip = match &parsed.host_with_port.host {
        crate::msg::Host::IpAddr(ip) => *ip,
        crate::msg::Host::Domain(d) => {
            let d = d.to_string();
            let d = d.trim_start_matches('[').trim_end_matches(']');
            d.parse::<IpAddr>().ok()?
        }
    };
    let port = parsed
        .host_with_port
        .port
        .as_ref()
        .map(|p| p.value())
        .unwrap_or(transport.default_port());
    Some((transport, SocketAddr::new(ip, port)))
}

/// The `IP[:port]` host of a plain `sip:` URI (`sip:[user@]IP[:port][;params]`), port
/// `default_port` when absent; `None` when the URI is anything else (a host name, another
/// scheme, headers).
fn ip_host_port(uri: &str, default_port: u16) -> Option<SocketAddr> {
    let scheme = uri.get(..4)?;
    if !scheme.eq_ignore_ascii_case("sip:") {
        return None;
    }
    let rest = &uri[4..];
    let end = memchr::memchr2(b';', b'?', rest.as_bytes()).unwrap_or(rest.len());
    let host_port = &rest[..end];
    let host_port = host_port.rsplit_once('@').map_or(host_port, |(_, h)| h);
    let (ip, port) = match host_port.strip_prefix('[') {
        Some(v6) => {
            let (host, after) = v6.split_once(']')?;
            (IpAddr::V6(host.parse().ok()?), after)
        }
        None => match host_port.split_once(':') {
            Some((host, _)) => (IpAddr::V4(host.parse().ok()?), &host_port[host.len()..]),
            None => (IpAddr::V4(host_port.parse().ok()?), ""),
        },
    };
    let port = match port {
        "" => default_port,
        p => p.strip_prefix(':')?.parse::<u16>().ok()?,
    };
    Some(SocketAddr::new(ip, port))
}

/// §16.7 step 3: removes this proxy's Via (the topmost) from a response to relay. False when
/// the response has no Via left after it (it was meant for this proxy alone).
pub fn strip_top_via(resp: &mut Response) -> bool {
    let Some(pos) = resp
        .headers
        .iter()
        .position(|h| matches!(h, Header::Via(_)))
    else {
        return false;
    };
    let list = &mut resp.headers.0;
    let Header::Via(v) = &list[pos] else {
        return false;
    };
    match split_first_value(v.value()).1 {
        Some(rest) if !rest.trim().is_empty() => {
            list[pos] = Header::Via(rest.trim().to_string().into());
        }
        _ => {
            list.remove(pos);
        }
    }
    list.iter().any(|h| matches!(h, Header::Via(_)))
}

/// Where a response relayed without a transaction goes (§16.7 step 9 for a stray 2xx,
/// §18.2.2): from the top Via that is left, `received`/`rport` first, else its sent-by.
pub fn response_destination(resp: &Response) -> Option<(Transport, SocketAddr)> {
    let via = via_values(resp).into_iter().next()?;
    let head = via.split(';').next()?;
    let mut words = head.split_whitespace();
    let proto = words.next()?;
    let transport = Transport::from_via_protocol(proto).unwrap_or(Transport::Udp);
    let sent_by = words.next()?;
    let param = |name: &str| {
        via.split(';').skip(1).find_map(|p| {
            let (k, v) = p.split_once('=')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    };
    let (host, port) = match sent_by.strip_prefix('[') {
        Some(r) => {
            let (h, rest) = r.split_once(']')?;
            (
                h.to_string(),
                rest.strip_prefix(':').and_then(|p| p.parse().ok()),
            )
        }
        None => match sent_by.split_once(':') {
            Some((h, p)) => (h.to_string(), p.parse().ok()),
            None => (sent_by.to_string(), None),
        },
    };
    let ip: IpAddr = param("received")
        .and_then(|r| r.parse().ok())
        .or_else(|| host.parse().ok())?;
    let port = param("rport")
        .and_then(|p| p.parse().ok())
        .or(port)
        .unwrap_or(transport.default_port());
    Some((transport, SocketAddr::new(ip, port)))
}

/// A `Reason` header (RFC 3326) with a SIP cause.
pub fn reason(cause: u16, text: &str) -> Header {
    let clean = crate::message::header_text(text);
    Header::Reason(format!("SIP;cause={cause};text=\"{clean}\"").into())
}

/// The Reason of a CANCEL sent to the branches that lost to a 2xx: phones do not record
/// the call as missed (RFC 3326 §2, the cause used in practice).
pub fn completed_elsewhere() -> Header {
    reason(200, "Call completed elsewhere")
}

/// How a proxy ranks final responses of the same class when choosing the best (§16.7 step
/// 6 leaves the choice within a class open): specific answers over generic ones, a busy
/// callee before an unreachable one, a timeout or cancellation last.
fn rank_within_class(code: u16) -> u16 {
    match code {
        486 | 600 => 0,
        603 => 1,
        401 | 407 => 2,
        403 => 3,
        404 | 410 | 484 | 604 => 4,
        480 => 5,
        488 | 606 => 6,
        408 => 8,
        487 => 9,
        _ => 7,
    }
}

/// §16.7 step 6: the index of the best of several final responses: a 6xx if there is one,
/// otherwise one of the lowest class (within it, see the ranking above). `None` when
/// `codes` is empty.
pub fn best_response(codes: &[u16]) -> Option<usize> {
    let key = |c: u16| {
        let class = c / 100;
        let class_rank = if class == 6 { 0 } else { class };
        (class_rank, rank_within_class(c))
    };
    (0..codes.len()).min_by_key(|&i| key(codes[i]))
}

/// §16.7 step 6: a 503 from downstream is not relayed as is (it would tell the caller this
/// proxy is overloaded); the proxy answers 500 instead.
pub fn relayable_code(code: u16) -> u16 {
    if code == 503 {
        500
    } else {
        code
    }
}

/// A token for this proxy's Record-Route of a dialog: in-dialog requests that name this
/// proxy in their Route must carry it, so the proxy cannot be used as an open relay by
/// anyone who writes its address into a Route header. Keyed by a secret kept across
/// restarts, so established calls survive one.
pub fn route_token(secret: &[u8; 32], call_id: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(secret);
    h.update(call_id.trim().as_bytes());
    hex::encode(&h.finalize()[..8])
}

/// 64-bit FNV-1a: a stable, fast digest for loop keys (not for secrets).
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::SipMessage;
    use crate::parse::{parse, Limits};

    const INVITE: &str = "INVITE sip:1002@switchboard.local SIP/2.0\r\n\
        Via: SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK-a;rport=5070;received=10.0.0.1\r\n\
        Max-Forwards: 70\r\n\
        From: <sip:alice@switchboard.local>;tag=a1\r\n\
        To: <sip:1002@switchboard.local>\r\n\
        Call-ID: c-1\r\n\
        CSeq: 2 INVITE\r\n\
        Contact: <sip:alice@10.0.0.1:5070>\r\n\
        Content-Length: 0\r\n\r\n";

    proptest::proptest! {
        #[test]
        fn host_port_and_branch_match_the_formatter(
            v4 in proptest::prelude::any::<[u8; 4]>(),
            v6 in proptest::prelude::any::<[u16; 8]>(),
            port in proptest::prelude::any::<u16>(),
            key in proptest::prelude::any::<u64>(),
            unique in proptest::prelude::any::<u64>(),
        ) {
            let a = SocketAddr::from((v4, port));
            proptest::prop_assert_eq!(host_port(a), format!("{}:{port}", a.ip()));
            let a = SocketAddr::from((std::net::Ipv6Addr::from(v6), port));
            proptest::prop_assert_eq!(host_port(a), a.to_string());
            proptest::prop_assert_eq!(
                branch(key, unique),
                format!("{MAGIC_COOKIE}{BRANCH_TAG}{key:016x}.{unique:x}")
            );
            proptest::prop_assert_eq!(branch(key, 0).len(), MAGIC_COOKIE.len() + BRANCH_TAG.len() + 18);
        }
    }

    fn req(text: &str) -> Request {
        match parse(text.as_bytes(), &Limits::default()).unwrap() {
            SipMessage::Request(r) => r,
            _ => panic!(),
        }
    }

    fn resp(text: &str) -> Response {
        match parse(text.as_bytes(), &Limits::default()).unwrap() {
            SipMessage::Response(r) => r,
            _ => panic!(),
        }
    }

    fn local() -> SocketAddr {
        "127.0.0.1:5060".parse().unwrap()
    }

    #[test]
    fn an_advertised_name_stands_where_the_address_would() {
        let named = HostPort::Named("pbx.example.com:5060");
        assert_eq!(
            via_value_at(Transport::Udp, named, "z9hG4bK-1"),
            "SIP/2.0/UDP pbx.example.com:5060;branch=z9hG4bK-1;rport"
        );
        assert_eq!(
            own_uri_at(Transport::Tcp, named, ";sbt=x"),
            "<sip:pbx.example.com:5060;transport=tcp;lr;sbt=x>"
        );
        assert_eq!(
            own_uri_at(Transport::Udp, HostPort::Addr(local()), ""),
            own_uri(Transport::Udp, local(), "")
        );
        let v6 = HostPort::Named("[2001:db8::5]:5070");
        assert!(
            via_value_at(Transport::Udp, v6, "b").starts_with("SIP/2.0/UDP [2001:db8::5]:5070;")
        );
    }

    #[test]
    fn forwarded_copy_has_our_via_on_top_and_one_hop_less() {
        let r = req(INVITE);
        let b = branch(loop_key(&r), 1);
        let rr = own_uri(Transport::Udp, local(), ";sbt=x");
        let out = forward(
            &r,
            Some(Uri::try_from("sip:bob@10.0.0.2:5080").unwrap()),
            &via_value(Transport::Udp, local(), &b),
            std::slice::from_ref(&rr),
        );
        let text = out.to_string();
        assert!(
            text.starts_with("INVITE sip:bob@10.0.0.2:5080 SIP/2.0\r\n"),
            "{text}"
        );
        let vias = via_values(&out);
        assert_eq!(vias.len(), 2);
        assert!(vias[0].starts_with("SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-sb"));
        assert!(text.contains("Max-Forwards: 69"), "{text}");
        let names: Vec<&str> = text
            .lines()
            .skip(1)
            .filter_map(|l| l.split(':').next())
            .collect();
        assert_eq!(&names[..3], &["Via", "Via", "Record-Route"], "{text}");
        assert!(
            text.contains("Record-Route: <sip:127.0.0.1:5060;lr;sbt=x>"),
            "{text}"
        );
    }

    #[test]
    fn a_request_back_in_the_same_state_is_a_loop_and_a_spiral_is_not() {
        let r = req(INVITE);
        let b = branch(loop_key(&r), 7);
        let out = forward(&r, None, &via_value(Transport::Udp, local(), &b), &[]);
        let ours = |sb: &str| sb == "127.0.0.1:5060";
        assert!(is_loop(&out, ours), "same Request-URI: a loop");
        let spiral = forward(
            &r,
            Some(Uri::try_from("sip:bob@10.0.0.2").unwrap()),
            &via_value(Transport::Udp, local(), &b),
            &[],
        );
        assert!(!is_loop(&spiral, ours), "retargeted: a spiral");
        assert!(!is_loop(&out, |_| false), "someone else's Via");
        assert!(!is_loop(&r, ours));
    }

    #[test]
    fn routes_naming_us_are_consumed() {
        let text = INVITE.replace(
            "Max-Forwards: 70\r\n",
            "Max-Forwards: 70\r\nRoute: <sip:127.0.0.1:5060;lr;sbt=t>, <sip:127.0.0.1:5060;transport=tcp;lr>\r\nRoute: <sip:10.9.9.9;lr>\r\n",
        );
        let mut r = req(&text);
        let ours = |u: &str| uri_target(u).is_some_and(|(_, a)| a == local());
        let popped = pop_own_routes(&mut r, ours);
        assert_eq!(popped.len(), 2, "{popped:?}");
        assert_eq!(uri_param(&popped[0], "sbt"), Some("t"));
        assert_eq!(route_set(&r), vec!["sip:10.9.9.9;lr".to_string()]);
        assert_eq!(next_hop_uri(&r), "sip:10.9.9.9;lr");
        // Nothing of ours on top: untouched.
        let mut plain = req(INVITE);
        assert!(pop_own_routes(&mut plain, ours).is_empty());
        assert_eq!(next_hop_uri(&plain), "sip:1002@switchboard.local");
    }

    #[test]
    fn strict_router_request_uri_is_restored_from_the_last_route() {
        let text = INVITE
            .replace(
                "INVITE sip:1002@switchboard.local",
                "INVITE sip:127.0.0.1:5060;lr",
            )
            .replace(
                "Max-Forwards: 70\r\n",
                "Max-Forwards: 70\r\nRoute: <sip:bob@10.0.0.2:5080>\r\n",
            );
        let mut r = req(&text);
        let ours = |u: &str| uri_target(u).is_some_and(|(_, a)| a == local());
        pop_own_routes(&mut r, ours);
        assert_eq!(r.uri.to_string(), "sip:bob@10.0.0.2:5080");
        assert!(route_set(&r).is_empty());
    }

    #[test]
    fn what_is_forwarded_keeps_its_uris_as_written() {
        // Contact and Route as they came; the Request-URI from a registered contact.
        let text = INVITE
            .replace(
                "Contact: <sip:alice@10.0.0.1:5070>",
                "Contact: <sip:alice@10.0.0.1:5070;transport=udp;lr;foo=Bar>",
            )
            .replace(
                "Max-Forwards: 70\r\n",
                "Max-Forwards: 70\r\nRoute: <sip:10.9.9.9;transport=udp;lr;foo=Bar>\r\n",
            );
        let r = req(&text);
        let contact = "sip:bob-0x1@10.0.0.2:5080;transport=udp;lr;foo=Bar";
        let out = forward(
            &r,
            Some(crate::parse::uri_as_written(contact).unwrap()),
            &via_value(Transport::Udp, local(), "z9hG4bK-x"),
            &[],
        );
        let text = String::from_utf8(crate::wire::request_bytes(&out)).unwrap();
        assert!(
            text.starts_with(&format!("INVITE {contact} SIP/2.0\r\n")),
            "{text}"
        );
        assert!(
            text.contains("\r\nContact: <sip:alice@10.0.0.1:5070;transport=udp;lr;foo=Bar>\r\n"),
            "{text}"
        );
        assert!(
            text.contains("\r\nRoute: <sip:10.9.9.9;transport=udp;lr;foo=Bar>\r\n"),
            "{text}"
        );
        // A Request-URI forwarded as it came (in-dialog, loose routing) keeps it too.
        let text = INVITE.replace(
            "INVITE sip:1002@switchboard.local",
            "INVITE sip:alice@10.0.0.1:5070;transport=udp;lr;foo=Bar",
        );
        let out = forward(&req(&text), None, "SIP/2.0/UDP h;branch=z9hG4bK-y", &[]);
        let text = String::from_utf8(crate::wire::request_bytes(&out)).unwrap();
        assert!(
            text.starts_with("INVITE sip:alice@10.0.0.1:5070;transport=udp;lr;foo=Bar SIP/2.0\r\n"),
            "{text}"
        );
        // A strict router's Request-URI restored from the last Route keeps it too.
        let text = INVITE
            .replace(
                "INVITE sip:1002@switchboard.local",
                "INVITE sip:127.0.0.1:5060;lr",
            )
            .replace(
                "Max-Forwards: 70\r\n",
                "Max-Forwards: 70\r\nRoute: <sip:bob@10.0.0.2:5080;transport=udp;foo=Bar>\r\n",
            );
        let mut r = req(&text);
        pop_own_routes(&mut r, |u| uri_target(u).is_some_and(|(_, a)| a == local()));
        assert_eq!(
            r.uri.to_string(),
            "sip:bob@10.0.0.2:5080;transport=udp;foo=Bar"
        );
    }

    #[test]
    fn uri_targets() {
        assert_eq!(
            uri_target("sip:bob@10.0.0.2:5080"),
            Some((Transport::Udp, "10.0.0.2:5080".parse().unwrap()))
        );
        assert_eq!(
            uri_target("<sip:[::1]:5062;transport=TCP;lr>"),
            Some((Transport::Tcp, "[::1]:5062".parse().unwrap()))
        );
        assert_eq!(
            uri_target("sip:127.0.0.1"),
            Some((Transport::Udp, "127.0.0.1:5060".parse().unwrap()))
        );
        assert_eq!(uri_target("sip:carrier.example.net"), None);
        assert_eq!(uri_target("sip:x@10.0.0.1;transport=sctp"), None);
        assert_eq!(uri_target("garbage"), None);
        assert_eq!(uri_param("sip:a;b@h;lr;x=1", "x"), Some("1"));
        assert_eq!(uri_param("sip:a;b@h;lr;x=1", "b"), None);
        assert_eq!(uri_param("<sip:h;LR>", "lr"), Some(""));
    }

    /// The shortcut for IP-literal URIs reads them as the full URI parser does.
    #[test]
    fn ip_host_port_agrees_with_the_uri_parser() {
        let full = |u: &str| {
            let parsed = Uri::try_from(u).ok()?;
            let ip = match &parsed.host_with_port.host {
                crate::msg::Host::IpAddr(ip) => *ip,
                crate::msg::Host::Domain(d) => {
                    let d = d.to_string();
                    d.trim_start_matches('[')
                        .trim_end_matches(']')
                        .parse::<IpAddr>()
                        .ok()?
                }
            };
            let port = parsed
                .host_with_port
                .port
                .as_ref()
                .map_or(5060, |p| p.value());
            Some(SocketAddr::new(ip, port))
        };
        for u in [
            "sip:10.0.0.2",
            "sip:10.0.0.2:5080",
            "SIP:bob@10.0.0.2:5080;transport=tcp",
            "sip:bob:secret@192.168.1.1:6000",
            "sip:127.0.0.1:5070;lr;sbt=00ff",
            "sip:[::1]:5062;lr",
            "sip:alice@[2001:db8::7]",
            "sip:10.0.0.2?subject=x",
            "sip:bob@10.0.0.2:70000",
            "sip:bob@10.0.0.2:",
            "sip:bob@host.example:5060",
            "sip:999.0.0.1",
        ] {
            if let Some(fast) = ip_host_port(u, 5060) {
                assert_eq!(Some(fast), full(u), "{u}");
            }
        }
        assert_eq!(ip_host_port("sip:bob@host.example:5060", 5060), None);
        assert_eq!(ip_host_port("sips:10.0.0.2", 5060), None);
        assert_eq!(ip_host_port("sip:bob@10.0.0.2:70000", 5060), None);
    }

    #[test]
    fn relayed_response_loses_our_via_only() {
        let text = "SIP/2.0 180 Ringing\r\n\
            Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-sb1, SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK-a;rport=4000;received=10.0.0.9\r\n\
            From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
        let mut r = resp(text);
        assert!(strip_top_via(&mut r));
        assert_eq!(
            via_values(&r),
            vec![
                "SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK-a;rport=4000;received=10.0.0.9"
                    .to_string()
            ]
        );
        assert_eq!(
            response_destination(&r),
            Some((Transport::Udp, "10.0.0.9:4000".parse().unwrap()))
        );
        assert!(!strip_top_via(&mut r), "no Via left");
    }

    #[test]
    fn best_response_prefers_6xx_then_the_lowest_class_then_busy() {
        assert_eq!(best_response(&[]), None);
        assert_eq!(best_response(&[486, 600, 302]), Some(1));
        assert_eq!(best_response(&[503, 486, 404]), Some(1));
        assert_eq!(best_response(&[408, 487, 480]), Some(2));
        assert_eq!(
            best_response(&[408, 486]),
            Some(1),
            "busy is not lost behind a timeout"
        );
        assert_eq!(best_response(&[500, 404]), Some(1));
        assert_eq!(relayable_code(503), 500);
    }

    #[test]
    fn route_tokens_depend_on_secret_and_call() {
        let a = route_token(&[1; 32], "c1");
        assert_eq!(a.len(), 16);
        assert_eq!(a, route_token(&[1; 32], " c1 "));
        assert_ne!(a, route_token(&[2; 32], "c1"));
        assert_ne!(a, route_token(&[1; 32], "c2"));
    }

    #[test]
    fn reason_header() {
        assert_eq!(
            completed_elsewhere().to_string(),
            "Reason: SIP;cause=200;text=\"Call completed elsewhere\""
        );
    }
}
