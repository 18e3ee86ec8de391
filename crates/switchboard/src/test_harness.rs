//! A core driven with a virtual clock for unit tests of routing and watchers: messages in
//! as bytes, what the core sends out read back as text.
#![allow(dead_code)]

use crate::core::RoutingConfig;
use crate::core::WatchersConfig;
use crate::core::{Core, CoreConfig, Input, Now, Output};
use crate::directory::{PolicyDirectory, Snapshot};
use crate::presence_service::{Answer, ErrorKind};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_policy::{Policy, Source};
use switchboard_sip::msg::headers::Header;
use switchboard_sip::msg::{Request, SipMessage};
use switchboard_sip::parse::{parse, Limits};
use switchboard_sip::peer::Peer;
use switchboard_sip::registrar::RegistrarConfig;
use switchboard_sip::transaction::TimerConfig;
use switchboard_sip::transport::{FixedInterfaces, Inbound, Listener};

pub(crate) const POLICY: &str = r#"
[users.alice]
extension = "1001"
display_name = "Alice A"
[users.alice.sip]
password = "pw"
algorithms = ["md5"]

[users.bob]
extension = "1002"
ring_time = 20
no_answer = "voicemail:bob-vm"
busy = "voicemail:bob-vm"
[users.bob.sip]
password = "pw"

[users.carol]
extension = "1003"
no_answer = "hangup"
call_waiting = false
[users.carol.sip]
password = "pw"

[teams.support]
extension = "2000"
members = ["bob", "carol"]
strategy = "memory_hunt"
member_ring_time = 10
ring_time = 20
no_answer = "hangup"

[destinations.bob-vm]
kind = "voicemail"
uri = "sip:vm-bob@127.0.0.1:5090"

[trunks.carrier]
sources = ["127.0.0.2/32"]
uri = "sip:carrier@127.0.0.2:5080"
outbound = ["+44*"]
country_code = "44"
number_format = "national"
caller_id = "+441632960000"
dids = { "+441632960000" = "team:support" }

[trunks.authed]
sources = ["127.0.0.3/32"]
uri = "sip:127.0.0.3:5080"
outbound = ["+3314*"]
[trunks.authed.account]
username = "acct"
password = "trunk-pw"
auth_username = "acct-auth"
realm = "carrier.example"
"#;

pub(crate) const ALICE: &str = "127.0.0.1:5071";
pub(crate) const BOB: &str = "127.0.0.1:5072";
pub(crate) const BOB2: &str = "127.0.0.1:5073";
pub(crate) const CAROL: &str = "127.0.0.1:5074";
pub(crate) const VM: &str = "127.0.0.1:5090";
pub(crate) const CARRIER: &str = "127.0.0.2:5080";
/// A carrier that challenges: the trunk `authed` has an account there.
pub(crate) const AUTHED: &str = "127.0.0.3:5080";
pub(crate) const US: &str = "127.0.0.1:5060";

/// The directory of a policy text.
pub(crate) fn snapshot(policy: &str) -> Snapshot {
    let policy = Policy::from_sources(&[Source {
        name: "p.toml".into(),
        text: policy.into(),
    }])
    .unwrap();
    Arc::new(Box::new(PolicyDirectory::new(policy)))
}

/// The core's settings in tests: short and fixed, the seed too.
pub(crate) fn config(auth: bool) -> CoreConfig {
    CoreConfig {
        realm: "switchboard.local".into(),
        domains: vec!["switchboard.local".into()],
        server: "test".into(),
        timers: TimerConfig::default(),
        registrar: RegistrarConfig {
            min_expires: 60,
            default_expires: 3600,
            max_expires: 7200,
            max_contacts_per_aor: 10,
        },
        auth_required: auth,
        auth_algorithms: switchboard_sip::auth::DEFAULT_ALGORITHMS.to_vec(),
        nonce_lifetime: Duration::from_secs(300),
        max_failures: 3,
        failure_window: Duration::from_secs(60),
        block: Duration::from_secs(60),
        trusted: Vec::new(),
        routing: RoutingConfig {
            route_secret: [9; 32],
            ..RoutingConfig::default()
        },
        watchers: WatchersConfig::default(),
        seed: [5; 32],
        mail: false,
        node: None,
        node_hop: None,
        nonce_secret: None,
    }
}

/// The listeners of a test's core unless it says otherwise.
pub(crate) fn default_listeners() -> Vec<Listener> {
    vec![
        "udp:127.0.0.1:5060".parse().unwrap(),
        "tcp:127.0.0.1:5060".parse().unwrap(),
    ]
}

/// A core as a test starts it: nobody's presence stored yet.
fn make_core(config: CoreConfig, directory: Snapshot, now: Now, net: &Net) -> Core {
    let mut core = Core::new(config, directory, net.listeners.clone(), now);
    if let Some(i) = &net.interfaces {
        core.set_interfaces(Box::new(i.clone()));
    }
    assert_eq!(core.presence().model().people().count(), 0);
    core.restore_presence(Vec::new(), now);
    core
}

/// The listeners of a test's core, and what the machine's network says (None: the
/// core's default, loopback and the listeners' addresses).
#[derive(Clone)]
pub(crate) struct Net {
    pub listeners: Vec<Listener>,
    pub interfaces: Option<FixedInterfaces>,
}

pub(crate) struct T {
    pub core: Core,
    net: Net,
    /// Where each message sent (as in `sent`) leaves from: `Peer::local`.
    pub sent_from: Vec<Option<SocketAddr>>,
    t0: Instant,
    secs: u64,
    /// Everything sent, oldest first: (to, text).
    pub sent: Vec<(SocketAddr, String)>,
    pub persisted: Vec<switchboard_store::Write>,
    halves: u64,
    /// Hold store writes until [`T::release`] (default: each is stored at once).
    pub hold_writes: bool,
    held: Vec<(u64, Vec<switchboard_store::Write>)>,
    /// Connections the core asked to hold open, and until when.
    pub holds: Vec<(switchboard_sip::peer::Peer, Instant)>,
    auth: bool,
    /// When the core was made.
    start: Now,
    /// Every input handed to the core, with its time, in order (for replays).
    inputs: Vec<(Input, Now)>,
    /// Every output of the core, as `Debug` prints it, in order.
    pub outputs: Vec<String>,
    /// The API answers received: (id, the answer or the kind of refusal).
    pub replies: Vec<(u64, Result<Answer, ErrorKind>)>,
    /// The policy the core started with.
    policy: String,
    /// DNS questions the core asked and the test has not answered yet, oldest first.
    pub lookups: Vec<switchboard_sip::locate::Query>,
    /// Commands to the media engine, oldest first (the test answers them as it likes).
    pub media: Vec<switchboard_media::session::Command>,
    /// Rows the core asked to read (token, table, key), oldest first, not answered yet
    /// (the test answers them with `Input::Read`).
    pub reads: Vec<(u64, switchboard_store::Table, String)>,
    /// What the core told the other nodes sharing the state ([`Output::Share`]), in order.
    pub shared: Vec<switchboard_store::Write>,
    /// The settings the core started with.
    config: CoreConfig,
}

pub(crate) fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

impl T {
    pub(crate) fn new(auth: bool) -> T {
        T::with_policy(auth, POLICY)
    }

    /// A core started with `policy` instead of [`POLICY`].
    pub(crate) fn with_policy(auth: bool, policy: &str) -> T {
        let net = Net {
            listeners: default_listeners(),
            interfaces: None,
        };
        T::with_net_and_policy(auth, net, policy)
    }

    /// A core with these listeners and network.
    pub(crate) fn with_net(auth: bool, net: Net) -> T {
        T::with_net_and_policy(auth, net, POLICY)
    }

    fn with_net_and_policy(auth: bool, net: Net, policy: &str) -> T {
        T::with_config(config(auth), net, policy)
    }

    /// A core with these settings, listeners and policy.
    /// A core with authentication off, the default listeners, and `media` for its local
    /// media sessions.
    pub(crate) fn with_media(media: crate::core::media::MediaConfig, policy: &str) -> T {
        let config = CoreConfig {
            routing: crate::core::RoutingConfig {
                media,
                ..config(false).routing
            },
            ..config(false)
        };
        let net = Net {
            listeners: default_listeners(),
            interfaces: None,
        };
        T::with_config(config, net, policy)
    }

    pub(crate) fn with_config(config: CoreConfig, net: Net, policy: &str) -> T {
        let auth = config.auth_required;
        let directory = snapshot(policy);
        let t0 = Instant::now();
        let now = Now {
            mono: t0,
            unix: 1_800_000_000,
        };
        let core = make_core(config.clone(), directory, now, &net);
        let mut t = T {
            core,
            net,
            sent_from: Vec::new(),
            t0,
            secs: 0,
            sent: Vec::new(),
            persisted: Vec::new(),
            halves: 0,
            hold_writes: false,
            held: Vec::new(),
            holds: Vec::new(),
            replies: Vec::new(),
            auth,
            start: now,
            inputs: Vec::new(),
            outputs: Vec::new(),
            policy: policy.to_string(),
            lookups: Vec::new(),
            media: Vec::new(),
            reads: Vec::new(),
            shared: Vec::new(),
            config,
        };
        // What the start stores (everyone's first state) is stored before a test begins.
        t.pump();
        t
    }

    pub(crate) fn now(&self) -> Now {
        Now {
            mono: self.t0 + Duration::from_millis(self.halves * 500),
            unix: 1_800_000_000 + self.secs,
        }
    }

    /// Hands an input to the core at the current time, and records it.
    pub(crate) fn feed(&mut self, input: Input) {
        let now = self.now();
        self.feed_at(input, now);
    }

    fn feed_at(&mut self, input: Input, now: Now) {
        self.inputs.push((input.clone(), now));
        self.core.handle(input, now);
    }

    /// A fresh core, made as this one was, handed every recorded input: its outputs, as
    /// [`T::outputs`] records them.
    pub(crate) fn replay(&self) -> Vec<String> {
        self.replay_seeded(config(self.auth).seed)
    }

    /// [`T::replay`] with another seed.
    pub(crate) fn replay_seeded(&self, seed: [u8; 32]) -> Vec<String> {
        let config = CoreConfig {
            seed,
            ..self.config.clone()
        };
        let mut core = make_core(config, snapshot(&self.policy), self.start, &self.net);
        let mut outputs = Vec::new();
        let mut drain = |core: &mut Core| {
            while let Some(o) = core.poll_output() {
                outputs.push(format!("{o:?}"));
            }
        };
        drain(&mut core);
        for (input, now) in &self.inputs {
            core.handle(input.clone(), *now);
            drain(&mut core);
        }
        outputs
    }

    /// Collects outputs; store writes succeed at once.
    pub(crate) fn pump(&mut self) {
        while let Some(o) = self.core.poll_output() {
            self.outputs.push(format!("{o:?}"));
            match o {
                Output::Send { to, bytes } => {
                    self.sent
                        .push((to.addr, String::from_utf8_lossy(&bytes).to_string()));
                    self.sent_from.push(to.local);
                }
                Output::Persist { token, writes } if self.hold_writes => {
                    self.held.push((token, writes));
                }
                Output::Persist { token, writes } => {
                    self.persisted.extend(writes);
                    self.feed(Input::Persisted { token, ok: true });
                }
                Output::Reply { id, reply } => {
                    self.replies.push((id, (*reply).map_err(|e| e.kind)))
                }
                Output::Hold { peer, until } => self.holds.push((peer, until)),
                Output::Lookup(query) => self.lookups.push(query),
                Output::Media(command) => self.media.push(command),
                Output::Read { token, table, key } => self.reads.push((token, table, key)),
                Output::Share(writes) => self.shared.extend(writes),
            }
        }
    }

    pub(crate) fn held_len(&self) -> usize {
        self.held.len()
    }

    /// Completes the oldest held store write: stored (`ok`) or failed.
    pub(crate) fn release(&mut self, ok: bool) {
        let (token, writes) = self.held.remove(0);
        if ok {
            self.persisted.extend(writes);
        }
        self.feed(Input::Persisted { token, ok });
        self.pump();
    }

    pub(crate) fn input(&mut self, from: &str, text: &str) {
        self.input_from(Peer::udp(addr(from)), text)
    }

    /// A message received from `peer` (a stream connection, say).
    pub(crate) fn input_from(&mut self, peer: Peer, text: &str) {
        let msg = parse(text.as_bytes(), &Limits::default())
            .unwrap_or_else(|e| panic!("test message does not parse: {e:?}\n{text}"));
        self.event(Inbound::Message {
            msg,
            peer,
            local: addr(US),
        });
    }

    /// Anything the socket layer hands the core.
    pub(crate) fn event(&mut self, inbound: Inbound) {
        self.feed(Input::Inbound(inbound));
        self.pump();
    }

    /// Lets `secs` seconds pass, half a second at a time, so that retransmission timers
    /// fire as they would on a real clock.
    /// Answers every DNS question asked (and those the answers lead to) from `dns`, a
    /// scripted name server.
    pub(crate) fn answer_dns(
        &mut self,
        dns: impl Fn(&switchboard_sip::locate::Query) -> switchboard_sip::locate::Answer,
    ) {
        while !self.lookups.is_empty() {
            let query = self.lookups.remove(0);
            let answer = dns(&query);
            self.feed(Input::DnsAnswer { query, answer });
            self.pump();
        }
    }

    pub(crate) fn advance(&mut self, secs: u64) {
        for _ in 0..secs * 2 {
            self.halves += 1;
            self.secs = self.halves / 2;
            let now = Now {
                mono: self.t0 + Duration::from_millis(self.halves * 500),
                unix: 1_800_000_000 + self.secs,
            };
            self.feed_at(Input::Timeout, now);
            self.pump();
        }
    }

    /// A message received over UDP from `from` at our address `at`, as the socket layer
    /// hands it in (the flow's local address set).
    pub(crate) fn input_at(&mut self, from: &str, at: &str, text: &str) {
        let msg = parse(text.as_bytes(), &Limits::default())
            .unwrap_or_else(|e| panic!("test message does not parse: {e:?}\n{text}"));
        self.event(Inbound::Message {
            msg,
            peer: Peer::udp(addr(from)).with_local(addr(at)),
            local: addr(at),
        });
    }

    /// Hands in [`Input::Timeout`] at the current time (what the shell does when
    /// `poll_timeout` says now).
    pub(crate) fn tick(&mut self) {
        self.feed(Input::Timeout);
        self.pump();
    }

    /// Takes what was sent since the last call.
    pub(crate) fn take(&mut self) -> Vec<(SocketAddr, String)> {
        self.sent_from.clear();
        std::mem::take(&mut self.sent)
    }

    /// Takes what was sent since the last call, each with where it leaves from.
    pub(crate) fn take_from(&mut self) -> Vec<(SocketAddr, Option<SocketAddr>, String)> {
        let from = std::mem::take(&mut self.sent_from);
        std::mem::take(&mut self.sent)
            .into_iter()
            .zip(from)
            .map(|((to, text), from)| (to, from, text))
            .collect()
    }

    pub(crate) fn register(&mut self, user: &str, at: &str) {
        self.register_from(user, Peer::udp(addr(at)))
    }

    /// Registers `user`'s device at `at` (UDP) with authentication on: the daemon's
    /// challenge is answered (MD5, the policy's password `pw`) as a phone would.
    pub(crate) fn register_authenticated(&mut self, user: &str, at: &str) {
        let ok = self.register_with_password(user, at, "pw");
        assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    }

    /// Registers `user`'s device at `at` (UDP), answering the challenge with `password`
    /// (MD5); the final answer.
    pub(crate) fn register_with_password(
        &mut self,
        user: &str,
        at: &str,
        password: &str,
    ) -> String {
        use switchboard_sip::auth::{parse_digest, Algorithm};
        let register = |cseq: u32, auth: &str| {
            format!(
                "REGISTER sip:switchboard.local SIP/2.0\r\nVia: SIP/2.0/UDP {at};branch=z9hG4bK-r{cseq}-{user}\r\n\
                 Max-Forwards: 70\r\nFrom: <sip:{user}@switchboard.local>;tag=r\r\nTo: <sip:{user}@switchboard.local>\r\n\
                 Call-ID: r-{user}-{at}\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:{user}@{at}>\r\n{auth}Content-Length: 0\r\n\r\n"
            )
        };
        self.input(at, &register(1, ""));
        let challenge = to(&self.take(), at).remove(0);
        let p = parse_digest(header(&challenge, "WWW-Authenticate").unwrap()).unwrap();
        let (realm, nonce) = (&p["realm"], &p["nonce"]);
        let ha1 = Algorithm::Md5.ha1(user, realm, password);
        let uri = "sip:switchboard.local";
        let response =
            Algorithm::Md5.response(&ha1, nonce, Some(("00000001", "c")), "REGISTER", uri);
        let auth = format!(
            "Authorization: Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", \
             response=\"{response}\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"c\"\r\n"
        );
        self.input(at, &register(2, &auth));
        to(&self.take(), at).remove(0)
    }

    /// Registers `user`'s device at the address of `peer`, over its transport.
    pub(crate) fn register_from(&mut self, user: &str, peer: Peer) {
        let (at, tp) = (peer.addr, peer.transport);
        let text = format!(
            "REGISTER sip:switchboard.local SIP/2.0\r\nVia: SIP/2.0/{tp} {at};branch=z9hG4bK-reg-{user}-{at}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:{user}@switchboard.local>;tag=r\r\nTo: <sip:{user}@switchboard.local>\r\n\
             Call-ID: reg-{user}-{at}\r\nCSeq: 1 REGISTER\r\nContact: <sip:{user}@{at}{}>\r\nExpires: 3600\r\n\
             Content-Length: 0\r\n\r\n",
            tp.uri_suffix()
        );
        self.input_from(peer, &text);
        let out = self.take();
        assert!(out[0].1.starts_with("SIP/2.0 200"), "{out:?}");
    }
}

pub(crate) fn invite(from_user: &str, from_at: &str, to: &str, call: &str, extra: &str) -> String {
    format!(
        "INVITE sip:{to}@switchboard.local SIP/2.0\r\nVia: SIP/2.0/UDP {from_at};branch=z9hG4bK-{call};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:{from_user}@switchboard.local>;tag=from-{call}\r\nTo: <sip:{to}@switchboard.local>\r\n\
         Call-ID: {call}\r\nCSeq: 1 INVITE\r\nContact: <sip:{from_user}@{from_at}>\r\n{extra}Content-Type: application/sdp\r\n\
         Content-Length: 4\r\n\r\nv=0\n"
    )
}

/// The media session the core asked the engine to open first.
pub(crate) fn session(t: &T) -> switchboard_media::session::SessionId {
    t.media
        .iter()
        .find_map(|c| match c {
            switchboard_media::session::Command::Open(o) => Some(o.id),
            _ => None,
        })
        .expect("a session opened")
}

/// Whether `out` holds a message to `at` whose first line starts with `line`.
pub(crate) fn got(out: &[(SocketAddr, String)], at: &str, line: &str) -> bool {
    to(out, at).iter().any(|m| first_line(m).starts_with(line))
}

pub(crate) fn request_of(text: &str) -> Request {
    match parse(text.as_bytes(), &Limits::default()).unwrap() {
        SipMessage::Request(r) => r,
        _ => panic!("not a request: {text}"),
    }
}

/// The response a UAS sends to a received request: its Vias, From, To (with `tag`),
/// Call-ID, CSeq and Record-Route copied.
pub(crate) fn answer(req_text: &str, code: u16, tag: &str, contact: &str) -> String {
    let req = request_of(req_text);
    let mut resp = switchboard_sip::message::response(&req, code, Some(tag), "uas");
    for h in req.headers.iter() {
        if let Header::RecordRoute(_) = h {
            resp.headers.push(h.clone());
        }
    }
    if code < 300 && code > 100 {
        resp.headers
            .push(Header::Contact(format!("<sip:{contact}>").into()));
    }
    resp.to_string()
}

pub(crate) fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

pub(crate) fn to(out: &[(SocketAddr, String)], at: &str) -> Vec<String> {
    out.iter()
        .filter(|(a, _)| *a == addr(at))
        .map(|(_, s)| s.clone())
        .collect()
}

pub(crate) fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.lines()
        .find(|l| {
            l.split_once(':')
                .is_some_and(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        })
        .map(|l| l.split_once(':').unwrap().1.trim())
}

/// An in-dialog request from a UA that got `resp_text` (its Record-Route as Route).
pub(crate) fn in_dialog(
    method: &str,
    ruri: &str,
    resp_text: &str,
    from_at: &str,
    cseq: u32,
) -> String {
    let rr = header(resp_text, "Record-Route").unwrap_or("");
    let from = header(resp_text, "From").unwrap();
    let to = header(resp_text, "To").unwrap();
    let call = header(resp_text, "Call-ID").unwrap();
    format!(
        "{method} sip:{ruri} SIP/2.0\r\nVia: SIP/2.0/UDP {from_at};branch=z9hG4bK-{method}-{cseq};rport\r\n\
         Route: {rr}\r\nMax-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {call}\r\nCSeq: {cseq} {method}\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

pub(crate) fn request_of_resp(text: &str) -> switchboard_sip::msg::Response {
    match parse(text.as_bytes(), &Limits::default()).unwrap() {
        SipMessage::Response(r) => r,
        _ => panic!("not a response: {text}"),
    }
}

/// A carrier's challenge (401 or 407) to a request it got: its challenges in
/// `WWW-Authenticate` (401) or `Proxy-Authenticate` (407) headers, in order.
pub(crate) fn challenge(req_text: &str, code: u16, challenges: &[&str]) -> String {
    let name = if code == 407 {
        "Proxy-Authenticate"
    } else {
        "WWW-Authenticate"
    };
    let resp = answer(req_text, code, "carrier-auth", AUTHED);
    let lines: String = challenges
        .iter()
        .map(|c| format!("{name}: {c}\r\n"))
        .collect();
    resp.replacen("\r\n\r\n", &format!("\r\n{lines}\r\n"), 1)
}

/// The digest parameters of a request's `header` (`Authorization`, `Proxy-Authorization`),
/// checked to answer for `username` with `password`: its response is the one the
/// request's method and the digest uri give, and that uri is the Request-URI.
pub(crate) fn answered_digest(
    req_text: &str,
    header_name: &str,
    username: &str,
    password: &str,
) -> std::collections::HashMap<String, String> {
    use switchboard_sip::auth::{parse_digest, Algorithm};
    let value =
        header(req_text, header_name).unwrap_or_else(|| panic!("no {header_name} in\n{req_text}"));
    let p = parse_digest(value).unwrap();
    let alg = match p.get("algorithm").map(String::as_str) {
        Some("SHA-256") => Algorithm::Sha256,
        _ => Algorithm::Md5,
    };
    assert_eq!(p["username"], username, "{value}");
    let ruri = first_line(req_text).split(' ').nth(1).unwrap();
    assert_eq!(p["uri"], ruri, "{value}");
    let method = first_line(req_text).split(' ').next().unwrap();
    let ha1 = alg.ha1(username, &p["realm"], password);
    let qop = p
        .get("qop")
        .map(|_| (p["nc"].as_str(), p["cnonce"].as_str()));
    let expected = alg.response(&ha1, &p["nonce"], qop, method, ruri);
    assert_eq!(p["response"], expected, "{value}");
    p
}

/// A scripted name server for `carrier.test` (and `registrar.carrier.test`): its UDP SRV
/// records name `a.carrier.test` (priority 10) and `b.carrier.test` (priority 20), at
/// `127.0.0.8:5080` and `127.0.0.9:5080`; `gone.test` does not exist; nothing else has
/// records. TTLs 300 s.
pub(crate) fn carrier_dns(q: &switchboard_sip::locate::Query) -> switchboard_sip::locate::Answer {
    use switchboard_sip::locate::{Answer, Record, RecordType, Srv};
    let ttl = Duration::from_secs(300);
    let srv = |priority, target: &str| {
        Record::Srv(Srv {
            priority,
            weight: 0,
            port: 5080,
            target: target.into(),
        })
    };
    match (q.record_type, q.name.as_str()) {
        (RecordType::Srv, "_sip._udp.carrier.test" | "_sip._udp.registrar.carrier.test") => {
            Answer::Records {
                records: vec![srv(20, "b.carrier.test"), srv(10, "a.carrier.test")],
                ttl,
            }
        }
        (RecordType::A, "a.carrier.test") => Answer::Records {
            records: vec![Record::Ip([127, 0, 0, 8].into())],
            ttl,
        },
        (RecordType::A, "b.carrier.test") => Answer::Records {
            records: vec![Record::Ip([127, 0, 0, 9].into())],
            ttl,
        },
        _ => Answer::NoRecords {
            ttl: Some(Duration::from_secs(60)),
        },
    }
}

/// The first target of [`carrier_dns`]'s `carrier.test`.
pub(crate) const CARRIER_A: &str = "127.0.0.8:5080";
/// Its second target.
pub(crate) const CARRIER_B: &str = "127.0.0.9:5080";

/// The caller of the tests of local media (messages, announcements, menus).
pub(crate) const CALLER: &str = "127.0.0.1:5099";

/// A request of [`CALLER`] inside the dialog our response `ok` (a 200, or a 183's early
/// dialog) set up.
pub(crate) fn from_caller(method: &str, ok: &str, cseq: u32, extra: &str, body: &str) -> String {
    let to = header(ok, "To").unwrap();
    let from = header(ok, "From").unwrap();
    let call = header(ok, "Call-ID").unwrap();
    format!(
        "{method} sip:switchboard.local SIP/2.0\r\nVia: SIP/2.0/UDP {CALLER};branch=z9hG4bK-{method}-{cseq};rport\r\n\
         Max-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {call}\r\nCSeq: {cseq} {method}\r\n{extra}\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// A caller's SDP offer: PCMU and telephone-event, RTP at 127.0.0.1:7000.
pub(crate) const PCMU_OFFER: &str =
    "v=0\r\no=caller 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio 7000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n";

/// A caller's SDP offer of G.722 only: nothing the daemon can answer.
pub(crate) const G722_OFFER: &str =
    "v=0\r\no=caller 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio 7000 RTP/AVP 9\r\na=rtpmap:9 G722/8000\r\n";
