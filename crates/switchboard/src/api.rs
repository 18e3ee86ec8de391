//! The API: HTTP + JSON on its own (loopback by default) address: presence, the policy's
//! reload, the trunks.
//!
//! Requests are authenticated with bearer tokens (a person's own `api_token` from the policy,
//! or the config's admin token), turned into [`Command`]s, and handed to the core, which
//! answers once any change is durable. The core's answers are typed ([`Answer`],
//! [`PresenceError`]): their JSON and HTTP statuses are made here. Errors are JSON:
//! `{"error": "...", "field": "..."}`.
//! The time-in-status report is the one answer finished here: the core says who it covers
//! and where they stand once the store has every earlier change, and the status log is then
//! read from the store off the core's loop.

use crate::board::{self, BoardSnapshot, Hub};
use crate::config::ApiLimits;
use crate::core::mailboxes::{Counts, MessageRow};
use crate::core::records::{LiveCall, RecordOutcome};
use crate::core::TrunkStatus;
use crate::directory::Directory;
use crate::metrics;
use crate::policy_source::Changes;
use crate::presence_service::{
    report, Answer, Command, ErrorKind, PresenceError, PresenceView, ProfileEnd, ProfileView,
    Reply, ReportSubject, Request, Seconds, TimeInStatus,
};
use crate::profiles::incoming_text;
use crate::voicemail::{
    Action as VoicemailAction, Answer as VoicemailAnswer, Recording, MIN_RECORDING_MS,
};
use arc_swap::ArcSwap;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use switchboard_media::wav::{self, WavError};
use switchboard_policy::{IncomingHandling, MailboxOwner, ProfileDraft};
use switchboard_presence::model::{Interface, StatusInterval, UnixTime, MAX_END_AHEAD};
use switchboard_sip::log_limit;
use switchboard_sip::registrar::Binding;
use switchboard_store::tables::{status_log_range, STATUS_LOG};
use switchboard_store::Store;
use tokio::sync::{mpsc, oneshot};

/// A command on its way to the core, with where its answer goes.
pub type Envelope = (Request, oneshot::Sender<Reply>);

/// A policy reload asked for (`allow_shrink`: the operator confirms a reload that removes
/// most users), on its way to the daemon's loop, with where its outcome goes.
pub type ReloadEnvelope = (bool, oneshot::Sender<ReloadAnswer>);

/// What the API asks the daemon's loop for (`/metrics`, `/healthz`, `/readyz`, the trunks,
/// the registrations); the loop answers at once, from the core or what it counts itself.
#[derive(Debug)]
pub enum LoopAsk {
    /// Everything counted, as it stands.
    Metrics(oneshot::Sender<metrics::Snapshot>),
    /// Whether the daemon takes new requests.
    Health(oneshot::Sender<Health>),
    /// Every trunk's registration and source names.
    Trunks(oneshot::Sender<Vec<TrunkStatus>>),
    /// The registered devices of one user, or of everyone.
    Registrations {
        user: Option<String>,
        reply: oneshot::Sender<Vec<Binding>>,
    },
    /// Everyone's row on the presence board, for a board that opens.
    Board(oneshot::Sender<BoardSnapshot>),
    /// The calls in progress.
    Calls(oneshot::Sender<Vec<LiveCall>>),
}

/// How the daemon's loop stands (`/readyz`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Health {
    /// SIGTERM or SIGINT came: new requests get 503 while what is under way finishes.
    pub draining: bool,
}

/// The loop's side of the API's asks, and who may read `/metrics`.
#[derive(Clone, Debug)]
pub struct Operations {
    pub ask: mpsc::Sender<LoopAsk>,
    /// `/metrics` needs the admin token (`[api] metrics_need_token`).
    pub metrics_need_token: bool,
    /// A person with no registered device is shown offline (`[presence]
    /// offline_without_devices`).
    pub offline_without_devices: bool,
    /// A person's missed calls include team calls (`[records] team_calls_missed`).
    pub team_calls_missed: bool,
    /// The presence board's event streams and tickets.
    pub board: Hub,
}

/// How long `/healthz` and `/readyz` wait for the daemon's loop to answer before they say
/// it is stuck.
const LOOP_ANSWER: Duration = Duration::from_secs(2);

/// How a reload asked for through the API ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReloadAnswer {
    /// The policy was replaced; what changed.
    Applied(Changes),
    /// Refused: it would remove most users (or all); why. `allow_shrink` confirms it.
    Shrink(String),
    /// Refused: it fails validation; every error.
    Invalid(String),
    /// Refused: the files did not stop changing.
    StillChanging(String),
}

/// A refused request as the API answers it: an HTTP status, the offending field and why.
/// The presence service's refusals ([`PresenceError`]) become one; the API's own (a token,
/// a body, a route) are made here.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ApiError {
    #[serde(skip)]
    pub status: u16,
    pub error: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(status: u16, field: Option<&str>, error: impl Into<String>) -> Self {
        ApiError {
            status,
            error: error.into(),
            field: field.map(str::to_string),
        }
    }
}

/// The HTTP status of each kind of refusal.
fn http_status(kind: ErrorKind) -> u16 {
    match kind {
        ErrorKind::Invalid => 400,
        ErrorKind::Forbidden => 403,
        ErrorKind::NotFound => 404,
        ErrorKind::Conflict => 409,
        ErrorKind::Unavailable => 503,
    }
}

impl From<PresenceError> for ApiError {
    fn from(e: PresenceError) -> Self {
        ApiError {
            status: http_status(e.kind),
            error: e.message,
            field: e.field,
        }
    }
}

/// The User-Agent prefix of `switchboard presence …`; its changes are logged as made
/// through the CLI.
pub const CLI_USER_AGENT: &str = "switchboard-cli/";

#[derive(Clone)]
struct ApiState {
    directory: Arc<ArcSwap<Box<dyn Directory>>>,
    admin_token: Option<Arc<str>>,
    core: mpsc::Sender<Envelope>,
    reload: mpsc::Sender<ReloadEnvelope>,
    store: Arc<dyn Store>,
    ops: Operations,
}

/// The OpenAPI document of this API.
pub const OPENAPI: &str = include_str!("../../../docs/openapi.json");

/// The API's routes.
pub fn router(
    directory: Arc<ArcSwap<Box<dyn Directory>>>,
    admin_token: Option<String>,
    core: mpsc::Sender<Envelope>,
    reload: mpsc::Sender<ReloadEnvelope>,
    store: Arc<dyn Store>,
    ops: Operations,
) -> Router {
    let state = ApiState {
        directory,
        admin_token: admin_token.map(Arc::from),
        core,
        reload,
        store,
        ops,
    };
    let router = Router::new();
    let router = mailbox_routes(router, "/v1/users/{user}");
    let router = mailbox_routes(router, "/v1/teams/{team}");
    router
        .route("/v1/presence", get(list))
        .route("/v1/presence/{user}", get(one))
        .route("/v1/presence/{user}/status", put(set_status))
        .route("/v1/presence/{user}/message", put(set_message))
        .route("/v1/presence/{user}/profile", put(set_profile))
        .route(
            "/v1/presence/{user}/profiles",
            get(list_profiles).post(create_profile),
        )
        .route(
            "/v1/presence/{user}/profiles/{profile}",
            get(one_profile)
                .patch(update_profile)
                .delete(remove_profile),
        )
        .route("/v1/presence/events", get(board_events))
        .route("/v1/presence/events/ticket", post(board_ticket))
        .route("/v1/teams", get(list_teams))
        .route("/v1/profiles", get(policy_profiles))
        .route("/v1/reports/time-in-status", get(time_in_status))
        .route("/v1/policy/reload", post(reload_policy))
        .route("/v1/trunks", get(list_trunks))
        .route("/v1/registrations", get(list_registrations))
        .route("/v1/calls", get(list_calls))
        .route("/v1/records", get(list_records))
        .route("/v1/records/missed", get(missed_calls))
        .route("/metrics", get(scrape))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/board", get(board_page))
        .route("/board/", get(board_page))
        .route("/board/{file}", get(board_file))
        .route(
            "/v1/openapi.json",
            get(|| async { ([("content-type", "application/json")], OPENAPI) }),
        )
        .fallback(|| async {
            error(ApiError::new(
                404,
                None,
                "no such endpoint (see /v1/openapi.json)",
            ))
        })
        .method_not_allowed_fallback(|| async {
            error(ApiError::new(
                405,
                None,
                "this endpoint does not take that method (see /v1/openapi.json)",
            ))
        })
        .with_state(state)
}

/// The most a request body may hold (axum's default limit, which the handlers' `Bytes`
/// apply too).
const MAX_BODY: usize = 2 * 1024 * 1024;

/// What a connection over [`ApiLimits::max_connections`] is told before it is closed.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n\
Content-Length: 33\r\nRetry-After: 1\r\nConnection: close\r\n\r\n{\"error\": \"too many connections\"}";

/// Serves the API's `app` on `listener` until the process ends, within `limits`: at most
/// `max_connections` connections at once (the next ones are answered 503 and closed
/// without being read), a request's headers read within `header_timeout` (else the
/// connection is closed) and its body within `body_timeout` (else 408 and closed). A
/// client that trickles its request or never finishes it holds its connection no longer.
pub async fn serve(listener: tokio::net::TcpListener, app: Router, limits: ApiLimits) {
    let app = app.layer(axum::middleware::from_fn_with_state(
        limits.body_timeout,
        body_in_time,
    ));
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    loop {
        let (stream, from) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                if log_limit::allow("API accept failed") {
                    tracing::warn!(error = %e, "API accept failed");
                }
                // Out of file descriptors, most likely: let some close.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            if log_limit::allow("API connection refused") {
                tracing::warn!(%from, open = limits.max_connections, "API connection refused: limit reached");
            }
            let _ = stream.try_write(BUSY);
            continue;
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(limits.header_timeout);
            let io = hyper_util::rt::TokioIo::new(stream);
            if let Err(e) = http.serve_connection(io, service).await {
                tracing::debug!(%from, error = %e, "API connection ended");
            }
            drop(slot);
        });
    }
}

/// Reads a request's body within the time allowed before handing the request on; a body
/// that does not arrive in time is answered 408 and its connection closed, one that says
/// (Content-Length) or turns out to be larger than [`MAX_BODY`] 413 (unread, or read no
/// further than the limit).
async fn body_in_time(
    State(limit): State<Duration>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let (parts, body) = req.into_parts();
    let declared = parts
        .headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let too_big = || {
        ApiError::new(
            413,
            None,
            format!("the body could not be read or exceeds {MAX_BODY} bytes"),
        )
    };
    let refusal = if declared.is_some_and(|n| n > MAX_BODY as u64) {
        too_big()
    } else {
        match tokio::time::timeout(limit, axum::body::to_bytes(body, MAX_BODY)).await {
            Ok(Ok(bytes)) => {
                let req = axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes));
                return next.run(req).await;
            }
            Ok(Err(_)) => too_big(),
            Err(_) => ApiError::new(
                408,
                None,
                format!("the body did not arrive within {} s", limit.as_secs()),
            ),
        }
    };
    let mut r = error(refusal);
    r.headers_mut().insert(
        axum::http::header::CONNECTION,
        axum::http::HeaderValue::from_static("close"),
    );
    r
}

fn error(e: ApiError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(e)).into_response()
}

fn answer(state: &ApiState, r: Result<Answer, ApiError>) -> Response {
    match r {
        Ok(a) => match answer_json(a, state.ops.offline_without_devices) {
            Some(v) => Json(v).into_response(),
            None => error(ApiError::new(
                500,
                None,
                "a report is answered by its own endpoint",
            )),
        },
        Err(e) => error(e),
    }
}

/// An answer as the API shows it (the shapes docs/openapi.json describes); None for a
/// report's snapshot, which [`time_in_status`] finishes. `offline_shown`: a person with a
/// SIP account and no registered device is shown offline.
fn answer_json(a: Answer, offline_shown: bool) -> Option<Value> {
    let person_json = |p: &PresenceView| person_json(p, offline_shown);
    let profiles = |list: &[ProfileView]| list.iter().map(profile_json).collect::<Vec<_>>();
    Some(match a {
        Answer::People(people) => {
            json!({ "people": people.iter().map(person_json).collect::<Vec<_>>() })
        }
        Answer::Person(p) => person_json(&p),
        Answer::Profiles {
            user: None,
            profiles: list,
        } => json!({ "profiles": profiles(&list) }),
        Answer::Profiles {
            user: Some(user),
            profiles: list,
        } => json!({ "user": user, "profiles": profiles(&list) }),
        Answer::Profile(p) => profile_json(&p),
        Answer::Removed { removed, presence } => json!({
            "removed": profile_json(&removed),
            "presence": person_json(&presence),
        }),
        Answer::Report(_) => return None,
        Answer::Voicemail(v) => return voicemail_json(v),
    })
}

/// A person as colleagues see them: offline (grey) when they could register a phone and
/// have none registered, and `offline_shown` says so.
pub(crate) fn person_json(p: &PresenceView, offline_shown: bool) -> Value {
    let offline = offline_shown && p.registers && p.devices == 0;
    json!({
        "user": p.user,
        "availability": p.availability.as_str(),
        "colour": if offline { json!("grey") } else { json!(p.availability.colour()) },
        "devices": p.devices,
        "offline": offline,
        "message": p.message,
        "custom_text": p.custom_text,
        "status_until": p.status_until,
        "profile": {
            "id": p.profile.id,
            "name": p.profile.name,
            "number": p.profile.number,
            "since": p.profile.since,
            "until": p.profile.until,
        },
        "call_status": p.call_status,
        "status_since": p.status_since,
    })
}

/// A profile; `active` only in a person's list of profiles.
fn profile_json(v: &ProfileView) -> Value {
    let p = &v.profile;
    let mut j = json!({
        "id": p.id,
        "number": p.number,
        "name": p.name,
        "availability": p.availability.as_str(),
        "shows_call_status": p.shows_call_status,
        "message": p.message,
        "caller_id": p.caller_id,
        "incoming": incoming_text(&p.incoming),
        "standard_length": p.standard_length,
        "origin": v.origin,
        "default": v.default,
    });
    match &p.incoming {
        IncomingHandling::RingDevices(d) => j["devices"] = json!(d),
        IncomingHandling::Reject { code, reason } => {
            j["reject_code"] = json!(code);
            j["reject_reason"] = json!(reason);
        }
        _ => {}
    }
    if let Some(active) = v.active {
        j["active"] = json!(active);
    }
    j
}

/// A time-in-status report: seconds per status by status name.
fn report_json(r: &TimeInStatus) -> Value {
    let seconds = |m: &Seconds| -> Value {
        m.iter()
            .map(|(a, s)| (a.as_str().to_string(), json!(s)))
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    let people: Vec<Value> = r
        .people
        .iter()
        .map(|p| {
            json!({
                "user": p.user,
                "current": p.current.as_str(),
                "seconds": seconds(&p.seconds),
            })
        })
        .collect();
    let mut v = json!({
        "from": r.from,
        "to": r.to,
        "as_of": r.as_of,
        "total": seconds(&r.total),
        "people": people,
    });
    if let Some(u) = &r.user {
        v["user"] = json!(u);
    }
    if let Some(t) = &r.team {
        v["team"] = json!(t);
    }
    if let Some(avg) = &r.average {
        v["average"] = seconds(avg);
    }
    v
}

/// Who is asking: user, admin or not, and through which interface.
struct Caller {
    who: String,
    admin: bool,
    via: Interface,
}

/// Who the bearer token belongs to.
fn caller(state: &ApiState, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(|| ApiError::new(401, Some("authorization"), "a bearer token is needed"))?;
    let via = match headers.get("user-agent").and_then(|v| v.to_str().ok()) {
        Some(ua) if ua.starts_with(CLI_USER_AGENT) => Interface::Cli,
        _ => Interface::Api,
    };
    if let Some(admin) = &state.admin_token {
        if constant_time_eq(token.as_bytes(), admin.as_bytes()) {
            return Ok(Caller {
                who: "admin".into(),
                admin: true,
                via,
            });
        }
    }
    match state.directory.load().user_for_token(token) {
        Some(who) => Ok(Caller {
            who,
            admin: false,
            via,
        }),
        None => Err(ApiError::new(401, Some("authorization"), "unknown token")),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Hands a command to the core and waits for its answer.
async fn send(state: &ApiState, c: Caller, command: Command) -> Result<Answer, ApiError> {
    let (tx, rx) = oneshot::channel();
    let req = Request {
        who: c.who,
        admin: c.admin,
        via: c.via,
        command,
    };
    let stopping = || ApiError::new(503, None, "the daemon is stopping");
    state.core.send((req, tx)).await.map_err(|_| stopping())?;
    Ok(rx.await.map_err(|_| stopping())??)
}

/// Authenticates, reads the input (refusals are answered before anything is done), asks.
async fn run(
    state: &ApiState,
    headers: &HeaderMap,
    command: impl FnOnce() -> Result<Command, ApiError>,
) -> Response {
    let c = match caller(state, headers) {
        Ok(c) => c,
        Err(e) => return error(e),
    };
    match command() {
        Ok(command) => answer(state, send(state, c, command).await),
        Err(e) => error(e),
    }
}

async fn list(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    run(&state, &headers, || Ok(Command::List)).await
}

async fn one(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(user): Path<String>,
) -> Response {
    run(&state, &headers, || Ok(Command::Get { user })).await
}

/// Reads a JSON body; an error names the field at fault when serde can tell.
fn body<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let text = e.inner().to_string();
        // At the top level serde names the field in its message: "unknown field `x`",
        // "missing field `x`".
        let field = if path.is_empty() || path == "." {
            text.split('`').nth(1).map(str::to_string)
        } else {
            Some(path)
        };
        ApiError {
            status: 400,
            error: format!("invalid JSON body: {text}"),
            field,
        }
    })
}

/// A time given as RFC 3339 text or Unix seconds.
#[derive(Deserialize)]
#[serde(untagged)]
enum Time {
    Seconds(i64),
    Text(String),
}

/// Reads RFC 3339 (a `+` of the offset may arrive as a space from a query string) or Unix
/// seconds.
pub fn parse_time(s: &str) -> Option<UnixTime> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().ok();
    }
    chrono::DateTime::parse_from_rfc3339(&s.replace(' ', "+"))
        .ok()
        .map(|t| t.timestamp())
}

/// An end time as a body gives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    /// Neither `until` nor `for`.
    NotGiven,
    At(UnixTime),
    /// `"for": "none"`: no end time at all.
    Never,
}

/// The end time of `until` (a time) or `for` (a length from now, or `none`), if either is
/// given; no later than [`MAX_END_AHEAD`] from now.
fn end_time(until: Option<Time>, for_: Option<String>, now: UnixTime) -> Result<End, ApiError> {
    let too_far =
        |field: &str| ApiError::new(400, Some(field), "the end time is more than 10 years ahead");
    match (until, for_) {
        (Some(_), Some(_)) => Err(ApiError::new(
            400,
            Some("for"),
            "give either until or for, not both",
        )),
        (Some(t), None) => {
            let t = match t {
                Time::Seconds(t) => t,
                Time::Text(t) => parse_time(&t).ok_or_else(|| {
                    ApiError::new(
                        400,
                        Some("until"),
                        format!("{t:?} is not an RFC 3339 time or Unix seconds"),
                    )
                })?,
            };
            if t > now.saturating_add(MAX_END_AHEAD) {
                return Err(too_far("until"));
            }
            Ok(End::At(t))
        }
        (None, Some(d)) if d.trim().eq_ignore_ascii_case("none") => Ok(End::Never),
        (None, Some(d)) => match switchboard_policy::parse_duration(&d) {
            Some(0) => Err(ApiError::new(
                400,
                Some("for"),
                "a length is more than 0 (45m, 1h30m), or none for no end time",
            )),
            Some(secs) if i64::from(secs) > MAX_END_AHEAD => Err(too_far("for")),
            Some(secs) => Ok(End::At(now + i64::from(secs))),
            None => Err(ApiError::new(
                400,
                Some("for"),
                format!("{d:?} is not a duration (45m, 1h30m) or none"),
            )),
        },
        (None, None) => Ok(End::NotGiven),
    }
}

fn now() -> UnixTime {
    chrono::Utc::now().timestamp()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusBody {
    status: String,
    text: Option<String>,
    /// RFC 3339 end time or Unix seconds: the status before returns then.
    until: Option<Time>,
    /// Or a length: `45m`, `1h30m`.
    #[serde(rename = "for")]
    for_: Option<String>,
}

async fn set_status(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(user): Path<String>,
    bytes: Bytes,
) -> Response {
    run(&state, &headers, || {
        let b: StatusBody = body(&bytes)?;
        Ok(Command::SetStatus {
            user,
            status: b.status,
            text: b.text,
            // A status set without an end time has none.
            until: match end_time(b.until, b.for_, now())? {
                End::At(t) => Some(t),
                End::NotGiven | End::Never => None,
            },
        })
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MessageBody {
    /// A text, or null (or "") to clear the message. Required, so that a body without it
    /// is not taken for a clearing.
    message: Value,
}

async fn set_message(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(user): Path<String>,
    bytes: Bytes,
) -> Response {
    run(&state, &headers, || {
        let b: MessageBody = body(&bytes)?;
        let message = match b.message {
            Value::Null => None,
            Value::String(m) => Some(m),
            _ => {
                return Err(ApiError::new(
                    400,
                    Some("message"),
                    "message is a text, or null to clear it",
                ))
            }
        };
        Ok(Command::SetMessage { user, message })
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileBody {
    profile: String,
    /// RFC 3339 end time or Unix seconds.
    until: Option<Time>,
    /// Or a length: `45m`, `1h30m`; `none`: no end time, not even the profile's standard
    /// length.
    #[serde(rename = "for")]
    for_: Option<String>,
    message: Option<String>,
}

async fn set_profile(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(user): Path<String>,
    bytes: Bytes,
) -> Response {
    run(&state, &headers, || {
        let b: ProfileBody = body(&bytes)?;
        Ok(Command::SetProfile {
            user,
            profile: b.profile,
            until: match end_time(b.until, b.for_, now())? {
                End::At(t) => Some(ProfileEnd::At(t)),
                End::Never => Some(ProfileEnd::Never),
                End::NotGiven => None,
            },
            message: b.message,
        })
    })
    .await
}

/// A profile's settings in an API body (see [`ProfileDraft`]).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileSettings {
    /// On creation only; made from the name when not given.
    id: Option<String>,
    number: Option<i64>,
    name: Option<String>,
    shows_call_status: Option<bool>,
    availability: Option<String>,
    message: Option<String>,
    caller_id: Option<String>,
    incoming: Option<String>,
    devices: Option<Vec<String>>,
    reject_code: Option<i64>,
    reject_reason: Option<String>,
    /// `45m`, `2h`, seconds, or `""` / `"none"` for none.
    standard_length: Option<Length>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Length {
    Seconds(i64),
    Text(String),
}

impl ProfileSettings {
    fn draft(self) -> ProfileDraft {
        ProfileDraft {
            number: self.number,
            name: self.name,
            shows_call_status: self.shows_call_status,
            availability: self.availability,
            message: self.message,
            caller_id: self.caller_id,
            incoming: self.incoming,
            devices: self.devices,
            reject_code: self.reject_code,
            reject_reason: self.reject_reason,
            standard_length: self.standard_length.map(|l| match l {
                Length::Seconds(s) => s.to_string(),
                Length::Text(t) => t,
            }),
        }
    }
}

async fn policy_profiles(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    run(&state, &headers, || Ok(Command::Profiles { user: None })).await
}

async fn list_profiles(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(user): Path<String>,
) -> Response {
    run(&state, &headers, || {
        Ok(Command::Profiles { user: Some(user) })
    })
    .await
}

async fn one_profile(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path((user, profile)): Path<(String, String)>,
) -> Response {
    run(&state, &headers, || Ok(Command::Profile { user, profile })).await
}

async fn create_profile(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(user): Path<String>,
    bytes: Bytes,
) -> Response {
    run(&state, &headers, || {
        let mut b: ProfileSettings = body(&bytes)?;
        let id = b.id.take();
        Ok(Command::CreateProfile {
            user,
            id,
            draft: b.draft(),
        })
    })
    .await
}

async fn update_profile(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path((user, profile)): Path<(String, String)>,
    bytes: Bytes,
) -> Response {
    run(&state, &headers, || {
        let b: ProfileSettings = body(&bytes)?;
        if b.id.is_some() {
            return Err(ApiError::new(
                400,
                Some("id"),
                "a profile's id does not change; rename it with name",
            ));
        }
        Ok(Command::UpdateProfile {
            user,
            profile,
            draft: b.draft(),
        })
    })
    .await
}

async fn remove_profile(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path((user, profile)): Path<(String, String)>,
) -> Response {
    run(&state, &headers, || {
        Ok(Command::RemoveProfile { user, profile })
    })
    .await
}

/// What the report endpoint reads from its query.
struct ReportQuery {
    subject: ReportSubject,
    from: UnixTime,
    to: UnixTime,
}

fn report_query(q: &BTreeMap<String, String>, now: UnixTime) -> Result<ReportQuery, ApiError> {
    if let Some(k) = q
        .keys()
        .find(|k| !["user", "team", "from", "to"].contains(&k.as_str()))
    {
        return Err(ApiError::new(
            400,
            Some(k),
            format!("unknown parameter {k:?}: use user or team, from and to"),
        ));
    }
    let subject = match (q.get("user"), q.get("team")) {
        (Some(u), None) => ReportSubject::User(u.clone()),
        (None, Some(t)) => ReportSubject::Team(t.clone()),
        (Some(_), Some(_)) => {
            return Err(ApiError::new(
                400,
                Some("team"),
                "give user or team, not both",
            ))
        }
        (None, None) => return Err(ApiError::new(400, Some("user"), "give user=ID or team=ID")),
    };
    let time = |field: &str| -> Result<Option<UnixTime>, ApiError> {
        q.get(field)
            .map(|s| {
                parse_time(s).ok_or_else(|| {
                    ApiError::new(
                        400,
                        Some(field),
                        format!("{s:?} is not an RFC 3339 time or Unix seconds"),
                    )
                })
            })
            .transpose()
    };
    let from = time("from")?.ok_or_else(|| {
        ApiError::new(
            400,
            Some("from"),
            "from is needed: the start of the range (RFC 3339 or Unix seconds)",
        )
    })?;
    let to = time("to")?.unwrap_or(now);
    if from >= to {
        return Err(ApiError::new(400, Some("to"), "to must be after from"));
    }
    Ok(ReportQuery { subject, from, to })
}

async fn time_in_status(
    State(state): State<ApiState>,
    headers: HeaderMap,
    query: Result<Query<BTreeMap<String, String>>, QueryRejection>,
) -> Response {
    let c = match caller(&state, &headers) {
        Ok(c) => c,
        Err(e) => return error(e),
    };
    let q = match query {
        Ok(Query(q)) => report_query(&q, now()),
        Err(e) => Err(ApiError::new(400, None, format!("unreadable query: {e}"))),
    };
    let q = match q {
        Ok(q) => q,
        Err(e) => return error(e),
    };
    let snapshot = match send(&state, c, Command::Report { subject: q.subject }).await {
        Ok(Answer::Report(s)) => s,
        Ok(_) => return error(ApiError::new(500, None, "the core's answer was unreadable")),
        Err(e) => return error(e),
    };
    let store = state.store.clone();
    let (from, to) = (q.from, q.to);
    let done = tokio::task::spawn_blocking(move || -> Result<TimeInStatus, ApiError> {
        let mut log = Vec::new();
        for (user, _, _) in &snapshot.people {
            let (start, end) = status_log_range(user, to);
            let rows = store.scan_range(STATUS_LOG, &start, &end).map_err(|e| {
                ApiError::new(503, None, format!("the status log cannot be read: {e}"))
            })?;
            log.extend(
                rows.iter()
                    .filter_map(|(_, v)| serde_json::from_slice::<StatusInterval>(v).ok())
                    .filter(|i| i.to > from),
            );
        }
        Ok(report(&snapshot, &log, from, to))
    })
    .await;
    match done {
        Ok(Ok(r)) => Json(report_json(&r)).into_response(),
        Ok(Err(e)) => error(e),
        Err(_) => error(ApiError::new(500, None, "the report failed")),
    }
}

/// `GET /board`: the live presence board (a page with no secrets: it asks for a token).
async fn board_page() -> Response {
    static_file("text/html; charset=utf-8", board::INDEX_HTML)
}

/// `GET /board/{file}`: the board's script and style sheet.
async fn board_file(Path(file): Path<String>) -> Response {
    match file.as_str() {
        "board.js" => static_file("text/javascript; charset=utf-8", board::APP_JS),
        "board.css" => static_file("text/css; charset=utf-8", board::STYLE_CSS),
        _ => error(ApiError::new(404, None, "no such file of the board")),
    }
}

/// A file embedded in the binary, with headers that keep the page to itself: no framing
/// by other sites, nothing loaded from elsewhere, no referrer.
fn static_file(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            ("content-type", content_type),
            ("cache-control", "no-cache"),
            ("x-content-type-options", "nosniff"),
            ("x-frame-options", "DENY"),
            ("referrer-policy", "no-referrer"),
            (
                "content-security-policy",
                "default-src 'self'; script-src 'self'; style-src 'self'; \
                 connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; \
                 base-uri 'none'; form-action 'none'",
            ),
        ],
        body,
    )
        .into_response()
}

/// `POST /v1/presence/events/ticket`: trades the bearer token for a ticket that opens one
/// event stream (EventSource cannot send the token in a header, and a token in a URL ends
/// up in logs). Single-use, valid for [`board::TICKET_LIFETIME`].
async fn board_ticket(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    let c = match caller(&state, &headers) {
        Ok(c) => c,
        Err(e) => return error(e),
    };
    match state.ops.board.issue(&c.who, c.admin) {
        Some(ticket) => Json(json!({
            "ticket": ticket,
            "user": c.who,
            "admin": c.admin,
            "expires_in": board::TICKET_LIFETIME.as_secs(),
        }))
        .into_response(),
        None => error(ApiError::new(
            503,
            None,
            "too many tickets waiting to be used; try again shortly",
        )),
    }
}

/// Asks the daemon's loop for everyone's row on the board.
async fn board_snapshot(ask: &mpsc::Sender<LoopAsk>) -> Option<BoardSnapshot> {
    let (tx, rx) = oneshot::channel();
    ask.send(LoopAsk::Board(tx)).await.ok()?;
    tokio::time::timeout(LOOP_ANSWER, rx).await.ok()?.ok()
}

fn snapshot_event(s: &BoardSnapshot) -> Event {
    Event::default()
        .event("snapshot")
        .id(s.seq.to_string())
        .data(json!({ "seq": s.seq, "people": s.people }).to_string())
}

/// `GET /v1/presence/events?ticket=…`: the board's server-sent events. First everyone's
/// row (`snapshot`), then each change as it happens (`person`: a row as `GET /v1/presence`
/// shows it; `gone`: no longer in the policy). At most [`Hub::max_streams`] at once;
/// each lasts [`board::STREAM_LIFETIME`] at most (the page then asks for a new ticket).
async fn board_events(
    State(state): State<ApiState>,
    query: Result<Query<BTreeMap<String, String>>, QueryRejection>,
) -> Response {
    let ticket = query.ok().and_then(|Query(q)| q.get("ticket").cloned());
    let Some(ticket) = ticket else {
        return error(ApiError::new(
            401,
            Some("ticket"),
            "a ticket is needed: POST /v1/presence/events/ticket with the bearer token",
        ));
    };
    if state.ops.board.redeem(&ticket).is_none() {
        return error(ApiError::new(
            401,
            Some("ticket"),
            "unknown, used or expired ticket",
        ));
    }
    let Ok(slot) = state.ops.board.streams.clone().try_acquire_owned() else {
        if log_limit::allow("board stream refused") {
            tracing::warn!(
                open = state.ops.board.max_streams(),
                "presence board stream refused: limit reached"
            );
        }
        return error(ApiError::new(503, None, "too many open boards"));
    };
    // Subscribed before the snapshot is read: no change falls between the two.
    let rx = state.ops.board.subscribe();
    let Some(first) = board_snapshot(&state.ops.ask).await else {
        return error(ApiError::new(503, None, "the daemon is stopping"));
    };
    struct Stream {
        rx: tokio::sync::broadcast::Receiver<Arc<board::BoardEvent>>,
        ask: mpsc::Sender<LoopAsk>,
        /// Changes up to this number are in the last snapshot sent.
        after: u64,
        first: Option<Event>,
        end: tokio::time::Instant,
        _slot: tokio::sync::OwnedSemaphorePermit,
    }
    let st = Stream {
        rx,
        ask: state.ops.ask.clone(),
        after: first.seq,
        first: Some(snapshot_event(&first)),
        end: tokio::time::Instant::now() + board::STREAM_LIFETIME,
        _slot: slot,
    };
    let events = futures_util::stream::unfold(st, |mut st| async move {
        use tokio::sync::broadcast::error::RecvError;
        if let Some(e) = st.first.take() {
            return Some((Ok::<_, std::convert::Infallible>(e), st));
        }
        loop {
            match tokio::time::timeout_at(st.end, st.rx.recv()).await {
                Err(_) | Ok(Err(RecvError::Closed)) => return None,
                Ok(Ok(e)) if e.seq <= st.after => continue,
                Ok(Ok(e)) => {
                    let ev = Event::default()
                        .event(e.kind)
                        .id(e.seq.to_string())
                        .data(e.data.as_str());
                    return Some((Ok(ev), st));
                }
                Ok(Err(RecvError::Lagged(_))) => {
                    // Behind by more than the channel holds: everyone again instead.
                    let s = board_snapshot(&st.ask).await?;
                    st.after = s.seq;
                    return Some((Ok(snapshot_event(&s)), st));
                }
            }
        }
    });
    let mut r = Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response();
    r.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-cache"),
    );
    r
}

/// `GET /v1/teams`: the policy's teams and their members (any token).
async fn list_teams(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    if let Err(e) = caller(&state, &headers) {
        return error(e);
    }
    let directory = state.directory.load();
    let mut teams: Vec<Value> = directory
        .policy()
        .teams()
        .map(|t| json!({ "id": t.id, "name": t.name, "members": t.members }))
        .collect();
    teams.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    Json(json!({ "teams": teams })).into_response()
}

/// `GET /metrics`: everything the daemon counts, in the OpenMetrics text format (for
/// Prometheus). Open unless `[api] metrics_need_token` is set, then the admin token's.
async fn scrape(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    if state.ops.metrics_need_token {
        if let Err(e) = admin(&state, &headers, "read the metrics") {
            return error(e);
        }
    }
    let (tx, rx) = oneshot::channel();
    if state.ops.ask.send(LoopAsk::Metrics(tx)).await.is_err() {
        return error(ApiError::new(503, None, "the daemon is stopping"));
    }
    match rx.await {
        // Rendered here, off the daemon's loop.
        Ok(snapshot) => (
            [("content-type", metrics::CONTENT_TYPE)],
            metrics::render(snapshot),
        )
            .into_response(),
        Err(_) => error(ApiError::new(503, None, "the daemon is stopping")),
    }
}

/// Asks the daemon's loop how it stands, waiting [`LOOP_ANSWER`] at most.
async fn ask_health(state: &ApiState) -> Result<Health, &'static str> {
    let (tx, rx) = oneshot::channel();
    let asked = async {
        state
            .ops
            .ask
            .send(LoopAsk::Health(tx))
            .await
            .map_err(|_| "the daemon is stopping")?;
        rx.await.map_err(|_| "the daemon is stopping")
    };
    match tokio::time::timeout(LOOP_ANSWER, asked).await {
        Ok(answer) => answer,
        Err(_) => Err("the daemon's loop did not answer within 2 seconds"),
    }
}

/// `GET /healthz` (no token): 200 while the daemon's loop answers, else 503 with why.
async fn healthz(State(state): State<ApiState>) -> Response {
    match ask_health(&state).await {
        Ok(_) => Json(json!({ "status": "alive" })).into_response(),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "unhealthy", "reason": why })),
        )
            .into_response(),
    }
}

/// `GET /readyz` (no token): 200 when the daemon takes calls — its sockets listen, its
/// store is open and its policy loaded (all done before this API starts) and its loop
/// answers and is not draining; else 503 with why.
async fn readyz(State(state): State<ApiState>) -> Response {
    let why = match ask_health(&state).await {
        Ok(Health { draining: false }) => {
            return Json(json!({
                "status": "ready",
                "listening": true,
                "store": "open",
                "policy": "loaded",
            }))
            .into_response()
        }
        Ok(Health { draining: true }) => "draining: the daemon is shutting down",
        Err(why) => why,
    };
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({ "status": "not ready", "reason": why })),
    )
        .into_response()
}

// ---- mailboxes ---------------------------------------------------------------------------

/// Longest message id taken in a path (ids are 20 digits, a dash and a sequence number).
const MAX_MESSAGE_ID: usize = 64;

/// The sox line that converts a recording to what a greeting or a name must be.
fn sox_line(recording: Recording) -> String {
    format!(
        "sox INPUT -r 8000 -c 1 -b 16 -e signed-integer {}.wav",
        recording.id()
    )
}

/// A mailbox's counts as the API shows them.
fn counts_json(c: &Counts) -> Value {
    json!({ "new": c.new, "old": c.old })
}

/// A voicemail message as the API shows it (the `VoicemailMessage` of docs/openapi.json).
pub(crate) fn message_json(m: &MessageRow) -> Value {
    let received_at = chrono::DateTime::from_timestamp(m.received as i64, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    json!({
        "id": m.id,
        "mailbox": m.mailbox,
        "received": m.received,
        "received_at": received_at,
        "duration_ms": m.duration_ms,
        "caller": m.caller,
        "caller_name": m.caller_name,
        "called": m.called,
        "original": m.original,
        "reason": m.reason,
        "profile": m.profile,
        "call_id": m.call_id,
        "heard": m.heard,
    })
}

/// A mailbox's answer as the API shows it; None for audio, which its endpoint reads.
fn voicemail_json(a: VoicemailAnswer) -> Option<Value> {
    Some(match a {
        VoicemailAnswer::List {
            mailbox,
            counts,
            messages,
        } => json!({
            "mailbox": mailbox,
            "counts": counts_json(&counts),
            "messages": messages.iter().map(message_json).collect::<Vec<_>>(),
        }),
        VoicemailAnswer::Message(m) => message_json(&m),
        VoicemailAnswer::Deleted { message, counts } => json!({
            "deleted": message_json(&message),
            "counts": counts_json(&counts),
        }),
        VoicemailAnswer::Recording {
            mailbox,
            recording,
            duration_ms,
        } => json!({
            "mailbox": mailbox,
            "recording": recording.id(),
            "recorded": duration_ms.is_some(),
            "duration_ms": duration_ms,
        }),
        VoicemailAnswer::Stored { .. } => return None,
    })
}

/// The mailbox a path names (its `user` or `team`).
fn mailbox_of(params: &HashMap<String, String>) -> MailboxOwner {
    match (params.get("user"), params.get("team")) {
        (Some(u), _) => MailboxOwner::User(u.clone()),
        (None, Some(t)) => MailboxOwner::Team(t.clone()),
        // Every mailbox route names one or the other.
        (None, None) => MailboxOwner::User(String::new()),
    }
}

/// The message a path names (its `msg`); one that cannot be an id is not found.
fn message_id(params: &HashMap<String, String>) -> Result<String, ApiError> {
    let id = params.get("msg").cloned().unwrap_or_default();
    if id.is_empty() || id.len() > MAX_MESSAGE_ID || id.chars().any(char::is_control) {
        return Err(ApiError::new(
            404,
            Some("message"),
            format!("no message {id:?}"),
        ));
    }
    Ok(id)
}

/// Asks the core about a mailbox and answers with the JSON of what it says.
async fn mailbox_run(
    state: &ApiState,
    headers: &HeaderMap,
    params: &HashMap<String, String>,
    action: impl FnOnce() -> Result<VoicemailAction, ApiError>,
) -> Response {
    let mailbox = mailbox_of(params);
    run(state, headers, || {
        Ok(Command::Voicemail {
            mailbox,
            action: action()?,
        })
    })
    .await
}

/// `GET …/voicemail`: the mailbox's counts and messages, newest first.
async fn voicemail_list(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(params): Path<HashMap<String, String>>,
) -> Response {
    mailbox_run(&state, &headers, &params, || Ok(VoicemailAction::List)).await
}

/// `GET …/voicemail/{msg}`: one message.
async fn voicemail_message(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(params): Path<HashMap<String, String>>,
) -> Response {
    mailbox_run(&state, &headers, &params, || {
        Ok(VoicemailAction::Message {
            id: message_id(&params)?,
        })
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HeardBody {
    /// true: heard; false: new again.
    heard: bool,
}

/// `PUT …/voicemail/{msg}` `{"heard": true}`: marks a message heard (or new again).
async fn voicemail_mark(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(params): Path<HashMap<String, String>>,
    bytes: Bytes,
) -> Response {
    mailbox_run(&state, &headers, &params, || {
        let id = message_id(&params)?;
        let b: HeardBody = body(&bytes)?;
        Ok(VoicemailAction::SetHeard { id, heard: b.heard })
    })
    .await
}

/// `DELETE …/voicemail/{msg}`: deletes a message (row, audio, a mail not sent yet).
async fn voicemail_delete(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(params): Path<HashMap<String, String>>,
) -> Response {
    mailbox_run(&state, &headers, &params, || {
        Ok(VoicemailAction::Delete {
            id: message_id(&params)?,
        })
    })
    .await
}

/// Asks the core for where some audio is (once every earlier change is stored), reads it
/// from the store off the core's loop, and answers it as `audio/wav` (`file`: the name
/// offered for saving it); `missing`: what a row that is not there is called.
async fn audio(
    state: &ApiState,
    headers: &HeaderMap,
    mailbox: MailboxOwner,
    action: VoicemailAction,
    missing: &str,
    file: &str,
) -> Response {
    let c = match caller(state, headers) {
        Ok(c) => c,
        Err(e) => return error(e),
    };
    let field = if matches!(action, VoicemailAction::Audio { .. }) {
        "message"
    } else {
        "recording"
    };
    let (table, key) = match send(state, c, Command::Voicemail { mailbox, action }).await {
        Ok(Answer::Voicemail(VoicemailAnswer::Stored { table, key })) => (table, key),
        Ok(_) => return error(ApiError::new(500, None, "the core's answer was unreadable")),
        Err(e) => return error(e),
    };
    let store = state.store.clone();
    let read = tokio::task::spawn_blocking(move || {
        crate::voicemail::read_row(store.as_ref(), table, &key)
    })
    .await;
    let wav = match read {
        Ok(Ok(Some(wav))) => wav,
        Ok(Ok(None)) => return error(ApiError::new(404, Some(field), missing.to_string())),
        Ok(Err(e)) => {
            return error(ApiError::new(
                503,
                None,
                format!("the audio cannot be read: {e}"),
            ))
        }
        Err(_) => return error(ApiError::new(500, None, "reading the audio failed")),
    };
    (
        [
            ("content-type", "audio/wav".to_string()),
            (
                "content-disposition",
                format!("attachment; filename=\"{file}\""),
            ),
            ("cache-control", "private, no-store".to_string()),
        ],
        wav,
    )
        .into_response()
}

/// `GET …/voicemail/{msg}/audio`: the message's audio (WAV, 8000 Hz mono 16-bit PCM).
async fn voicemail_audio(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(params): Path<HashMap<String, String>>,
) -> Response {
    let id = match message_id(&params) {
        Ok(id) => id,
        Err(e) => return error(e),
    };
    let missing = format!("message {id:?} was deleted");
    let file = format!("voicemail-{id}.wav");
    let action = VoicemailAction::Audio { id };
    audio(
        &state,
        &headers,
        mailbox_of(&params),
        action,
        &missing,
        &file,
    )
    .await
}

/// The media types a recording's body may be sent as (or none at all).
const WAV_TYPES: &[&str] = &[
    "audio/wav",
    "audio/x-wav",
    "audio/wave",
    "audio/vnd.wave",
    "application/octet-stream",
];

/// Checks a recording's body: sent as a WAV file (415 otherwise), no larger than the
/// recording's WAV can be (413), 8000 Hz mono 16-bit PCM (422, naming what it is and how
/// to convert it), at least [`MIN_RECORDING_MS`] and at most the recording's length (422).
/// Answers the WAV file to keep (its samples alone, re-encoded) and its length in ms.
pub(crate) fn check_recording(
    recording: Recording,
    content_type: Option<&str>,
    declared_length: Option<usize>,
    bytes: &[u8],
) -> Result<(Vec<u8>, u64), ApiError> {
    let sox = sox_line(recording);
    if let Some(ct) = content_type {
        let media = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if !WAV_TYPES.contains(&media.as_str()) {
            return Err(ApiError::new(
                415,
                Some("content-type"),
                format!(
                    "the body was sent as {media:?}: send a WAV file (Content-Type: audio/wav), \
                     8000 Hz mono 16-bit PCM; convert a recording with: {sox}"
                ),
            ));
        }
    }
    let max = recording.max_bytes();
    if declared_length.unwrap_or(0).max(bytes.len()) > max {
        return Err(ApiError::new(
            413,
            Some("body"),
            format!(
                "a {} is at most {} s: a WAV file of at most {max} bytes",
                recording.id(),
                recording.max_secs()
            ),
        ));
    }
    let samples = match wav::decode(bytes, recording.max_samples()) {
        Ok(s) => s,
        Err(WavError::Unreadable(e)) => {
            return Err(ApiError::new(
                415,
                Some("body"),
                format!(
                    "the body is not a PCM WAV file ({e}); send 8000 Hz mono 16-bit PCM WAV, \
                     converted with: {sox}"
                ),
            ))
        }
        Err(WavError::Format(what)) => {
            return Err(ApiError::new(
                422,
                Some("body"),
                format!(
                    "the WAV file is {what}, not 8000 Hz mono 16-bit PCM; convert it with: {sox}"
                ),
            ))
        }
        Err(WavError::TooLong { .. }) => {
            return Err(ApiError::new(
                422,
                Some("body"),
                format!(
                    "the {} is longer than {} s; a shorter one is needed",
                    recording.id(),
                    recording.max_secs()
                ),
            ))
        }
    };
    let duration_ms = samples.len() as u64 * 1000 / u64::from(wav::SAMPLE_RATE);
    if duration_ms < MIN_RECORDING_MS {
        return Err(ApiError::new(
            422,
            Some("body"),
            format!(
                "the {} is {duration_ms} ms long: at least {MIN_RECORDING_MS} ms is needed",
                recording.id()
            ),
        ));
    }
    Ok((wav::encode(&samples), duration_ms))
}

/// `PUT …/voicemail/greeting` and `…/name`: keeps a recording (a WAV body; see
/// [`check_recording`]).
async fn recording_put(
    state: ApiState,
    headers: HeaderMap,
    params: HashMap<String, String>,
    recording: Recording,
    bytes: Bytes,
) -> Response {
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("(unreadable)").to_string());
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    mailbox_run(&state, &headers, &params, || {
        let (wav, duration_ms) =
            check_recording(recording, content_type.as_deref(), declared, &bytes)?;
        Ok(VoicemailAction::PutRecording {
            recording,
            wav,
            duration_ms,
        })
    })
    .await
}

/// `GET …/voicemail/greeting` and `…/name`: the recording (WAV).
async fn recording_get(
    state: ApiState,
    headers: HeaderMap,
    params: HashMap<String, String>,
    recording: Recording,
) -> Response {
    let missing = format!("no {} recorded", recording.id());
    let file = format!("{}.wav", recording.id());
    let action = VoicemailAction::Recording { recording };
    audio(
        &state,
        &headers,
        mailbox_of(&params),
        action,
        &missing,
        &file,
    )
    .await
}

/// `DELETE …/voicemail/greeting` and `…/name`: removes the recording (200 whether there
/// was one or not).
async fn recording_delete(
    state: ApiState,
    headers: HeaderMap,
    params: HashMap<String, String>,
    recording: Recording,
) -> Response {
    mailbox_run(&state, &headers, &params, || {
        Ok(VoicemailAction::DeleteRecording { recording })
    })
    .await
}

/// The routes of one recording (`greeting`, `name`) of a mailbox.
fn recording_routes(recording: Recording) -> axum::routing::MethodRouter<ApiState> {
    get(
        move |State(s): State<ApiState>, h: HeaderMap, Path(p): Path<HashMap<String, String>>| {
            recording_get(s, h, p, recording)
        },
    )
    .put(
        move |State(s): State<ApiState>,
              h: HeaderMap,
              Path(p): Path<HashMap<String, String>>,
              b: Bytes| recording_put(s, h, p, recording, b),
    )
    .delete(
        move |State(s): State<ApiState>, h: HeaderMap, Path(p): Path<HashMap<String, String>>| {
            recording_delete(s, h, p, recording)
        },
    )
}

/// The mailbox routes under `base` (`/v1/users/{user}` or `/v1/teams/{team}`).
fn mailbox_routes(router: Router<ApiState>, base: &str) -> Router<ApiState> {
    router
        .route(&format!("{base}/voicemail"), get(voicemail_list))
        .route(
            &format!("{base}/voicemail/greeting"),
            recording_routes(Recording::Greeting),
        )
        .route(
            &format!("{base}/voicemail/name"),
            recording_routes(Recording::Name),
        )
        .route(
            &format!("{base}/voicemail/{{msg}}"),
            get(voicemail_message)
                .put(voicemail_mark)
                .delete(voicemail_delete),
        )
        .route(
            &format!("{base}/voicemail/{{msg}}/audio"),
            get(voicemail_audio),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An API state whose loop is played by the test through the returned receiver.
    fn ops_state() -> (ApiState, mpsc::Receiver<LoopAsk>) {
        let snapshot = crate::test_harness::snapshot(crate::test_harness::POLICY);
        let (core, _) = mpsc::channel(1);
        let (reload, _) = mpsc::channel(1);
        let (ask, asks) = mpsc::channel(1);
        let state = ApiState {
            directory: Arc::new(ArcSwap::new(snapshot)),
            admin_token: None,
            core,
            reload,
            store: Arc::new(switchboard_store::MemoryStore::default()),
            ops: Operations {
                ask,
                metrics_need_token: false,
                offline_without_devices: true,
                team_calls_missed: false,
                board: Hub::new(2, true).0,
            },
        };
        (state, asks)
    }

    /// The loop answers every health ask with `draining`.
    fn answer_health(mut asks: mpsc::Receiver<LoopAsk>, draining: bool) {
        tokio::spawn(async move {
            while let Some(ask) = asks.recv().await {
                if let LoopAsk::Health(reply) = ask {
                    let _ = reply.send(Health { draining });
                }
            }
        });
    }

    async fn body_of(r: Response) -> (u16, Value) {
        let status = r.status().as_u16();
        let bytes = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn readyz_says_ready_then_draining() {
        let (state, asks) = ops_state();
        answer_health(asks, false);
        let (status, body) = body_of(readyz(State(state.clone())).await).await;
        assert_eq!((status, body["status"].as_str()), (200, Some("ready")));
        assert_eq!(body_of(healthz(State(state)).await).await.0, 200);

        let (state, asks) = ops_state();
        answer_health(asks, true);
        let (status, body) = body_of(readyz(State(state.clone())).await).await;
        assert_eq!(status, 503);
        assert!(
            body["reason"].as_str().unwrap().starts_with("draining"),
            "{body}"
        );
        // Draining is not dead: the loop still answers.
        assert_eq!(body_of(healthz(State(state)).await).await.0, 200);
    }

    #[tokio::test]
    async fn a_loop_that_does_not_answer_is_unhealthy() {
        // The loop holds its asks and never answers.
        let (state, asks) = ops_state();
        let (status, body) = body_of(healthz(State(state.clone())).await).await;
        assert_eq!(status, 503);
        assert!(
            body["reason"].as_str().unwrap().contains("did not answer"),
            "{body}"
        );
        assert_eq!(body_of(readyz(State(state.clone())).await).await.0, 503);
        // A loop that has stopped: its asks go nowhere.
        drop(asks);
        let (status, body) = body_of(healthz(State(state)).await).await;
        assert_eq!(
            (status, body["reason"].as_str()),
            (503, Some("the daemon is stopping"))
        );
    }

    #[test]
    fn openapi_describes_every_route() {
        let doc: Value = serde_json::from_str(OPENAPI).unwrap();
        let routes = [
            ("/v1/presence", &["get"][..]),
            ("/v1/presence/{user}", &["get"]),
            ("/v1/presence/{user}/status", &["put"]),
            ("/v1/presence/{user}/message", &["put"]),
            ("/v1/presence/{user}/profile", &["put"]),
            ("/v1/presence/{user}/profiles", &["get", "post"]),
            (
                "/v1/presence/{user}/profiles/{profile}",
                &["get", "patch", "delete"],
            ),
            ("/v1/presence/events", &["get"]),
            ("/v1/presence/events/ticket", &["post"]),
            ("/v1/teams", &["get"]),
            ("/board", &["get"]),
            ("/board/{file}", &["get"]),
            ("/v1/profiles", &["get"]),
            ("/v1/reports/time-in-status", &["get"]),
            ("/v1/policy/reload", &["post"]),
            ("/v1/trunks", &["get"]),
            ("/v1/registrations", &["get"]),
            ("/v1/calls", &["get"]),
            ("/v1/records", &["get"]),
            ("/v1/records/missed", &["get"]),
            ("/v1/users/{user}/voicemail", &["get"]),
            (
                "/v1/users/{user}/voicemail/{msg}",
                &["get", "put", "delete"],
            ),
            ("/v1/users/{user}/voicemail/{msg}/audio", &["get"]),
            (
                "/v1/users/{user}/voicemail/greeting",
                &["get", "put", "delete"],
            ),
            ("/v1/users/{user}/voicemail/name", &["get", "put", "delete"]),
            ("/v1/teams/{team}/voicemail", &["get"]),
            (
                "/v1/teams/{team}/voicemail/{msg}",
                &["get", "put", "delete"],
            ),
            ("/v1/teams/{team}/voicemail/{msg}/audio", &["get"]),
            (
                "/v1/teams/{team}/voicemail/greeting",
                &["get", "put", "delete"],
            ),
            ("/v1/teams/{team}/voicemail/name", &["get", "put", "delete"]),
            ("/v1/openapi.json", &["get"]),
            ("/metrics", &["get"]),
            ("/healthz", &["get"]),
            ("/readyz", &["get"]),
        ];
        let paths = doc["paths"].as_object().unwrap();
        assert_eq!(
            paths.len(),
            routes.len(),
            "a path the router does not serve"
        );
        for (path, methods) in routes {
            for m in methods {
                assert!(doc["paths"][path][m].is_object(), "{m} {path} undocumented");
            }
        }
    }

    /// The JSON of the service's answers, as docs/openapi.json describes it.
    #[test]
    fn answers_keep_their_documented_json() {
        use crate::presence_service::{ActiveProfileView, ReportSnapshot};
        use crate::profiles::Origin;
        use switchboard_presence::model::{Availability, CallStatus};
        let text = |v: Value| serde_json::to_string(&v).unwrap();
        let alice = PresenceView {
            user: "alice".into(),
            availability: Availability::DoNotDisturb,
            message: Some("Back at 3".into()),
            custom_text: None,
            status_until: Some(900),
            status_since: 100,
            profile: ActiveProfileView {
                id: "available".into(),
                name: Some("Available".into()),
                number: Some(1),
                since: 0,
                until: None,
            },
            call_status: CallStatus::Hidden,
            devices: 1,
            registers: true,
        };
        assert_eq!(
            text(person_json(&alice, true)),
            r#"{"availability":"dnd","call_status":"hidden","colour":"red","custom_text":null,"devices":1,"message":"Back at 3","offline":false,"profile":{"id":"available","name":"Available","number":1,"since":0,"until":null},"status_since":100,"status_until":900,"user":"alice"}"#
        );
        // No device: offline and grey, unless the operator shows people as their status
        // says; someone without a SIP account is never offline for want of one.
        let unplugged = PresenceView {
            devices: 0,
            ..alice.clone()
        };
        let shown = person_json(&unplugged, true);
        assert_eq!(
            (&shown["offline"], &shown["colour"]),
            (&json!(true), &json!("grey"))
        );
        let shown = person_json(&unplugged, false);
        assert_eq!(
            (&shown["offline"], &shown["colour"]),
            (&json!(false), &json!("red"))
        );
        let forwards_only = PresenceView {
            registers: false,
            ..unplugged
        };
        assert_eq!(person_json(&forwards_only, true)["offline"], json!(false));
        let draft = ProfileDraft {
            name: Some("Focus".into()),
            number: Some(11),
            availability: Some("dnd".into()),
            incoming: Some("reject".into()),
            reject_code: Some(486),
            reject_reason: Some("Heads down".into()),
            standard_length: Some("2h".into()),
            ..Default::default()
        };
        let focus = ProfileView {
            profile: switchboard_policy::build_profile("focus", &draft, None).unwrap(),
            origin: Origin::Own,
            default: false,
            active: None,
        };
        let focus_text = r#"{"availability":"dnd","caller_id":null,"default":false,"id":"focus","incoming":"reject","message":null,"name":"Focus","number":11,"origin":"own","reject_code":486,"reject_reason":"Heads down","shows_call_status":false,"standard_length":7200}"#;
        assert_eq!(text(profile_json(&focus)), focus_text);
        let mut listed_focus: Value = serde_json::from_str(focus_text).unwrap();
        listed_focus["active"] = json!(true);
        let listed = answer_json(
            Answer::Profiles {
                user: Some("alice".into()),
                profiles: vec![ProfileView {
                    active: Some(true),
                    ..focus.clone()
                }],
            },
            true,
        );
        assert_eq!(
            listed,
            Some(json!({ "user": "alice", "profiles": [listed_focus] }))
        );
        let removed = answer_json(
            Answer::Removed {
                removed: focus,
                presence: alice,
            },
            true,
        )
        .unwrap();
        assert_eq!(removed["removed"]["id"], "focus");
        assert_eq!(removed["presence"]["user"], "alice");
        assert_eq!(removed.as_object().unwrap().len(), 2);
        let snapshot = |user: Option<&str>, team: Option<&str>| ReportSnapshot {
            user: user.map(str::to_string),
            team: team.map(str::to_string),
            people: vec![
                ("alice".into(), Availability::Away, 150),
                ("bob".into(), Availability::Custom, 100),
            ],
            as_of: 200,
        };
        assert_eq!(
            answer_json(Answer::Report(snapshot(None, None)), true),
            None
        );
        // Every status is counted, also those nobody held.
        let seconds = |away: i64, custom: i64| {
            json!({
                "available": 0, "away": away, "busy": 0, "dnd": 0, "custom": custom,
                "unavailable": 0, "on_break": 0, "after_call_work": 0,
            })
        };
        let people = json!([
            { "user": "alice", "current": "away", "seconds": seconds(50, 0) },
            { "user": "bob", "current": "custom", "seconds": seconds(0, 80) },
        ]);
        assert_eq!(
            report_json(&report(&snapshot(None, Some("support")), &[], 120, 300)),
            json!({
                "team": "support", "from": 120, "to": 200, "as_of": 200,
                "total": seconds(50, 80), "average": seconds(25, 40), "people": people,
            })
        );
        assert_eq!(
            report_json(&report(&snapshot(Some("alice"), None), &[], 120, 300)),
            json!({
                "user": "alice", "from": 120, "to": 200, "as_of": 200,
                "total": seconds(50, 80), "people": people,
            })
        );
    }

    #[test]
    fn a_trunk_keeps_its_documented_json() {
        use crate::core::RegState;
        let t = TrunkStatus {
            trunk: "carrier".into(),
            state: RegState::Registered,
            registrar: Some("sip:192.0.2.1".into()),
            aor: Some("sip:pbx@192.0.2.1".into()),
            contact: Some("<sip:carrier@198.51.100.7:5060>".into()),
            expires_at: Some(1_800_003_600),
            last_error: None,
            next_attempt_at: Some(1_800_001_800),
            source_names: vec![
                crate::core::SourceNameStatus {
                    name: "sbc.carrier.example".into(),
                    addresses: vec!["192.0.2.7".parse().unwrap(), "2001:db8::7".parse().unwrap()],
                    error: None,
                },
                crate::core::SourceNameStatus {
                    name: "gw.carrier.example".into(),
                    addresses: Vec::new(),
                    error: Some("gw.carrier.example has no address".into()),
                },
            ],
        };
        assert_eq!(
            serde_json::to_string(&trunk_json(&t)).unwrap(),
            r#"{"aor":"sip:pbx@192.0.2.1","contact":"sip:carrier@198.51.100.7:5060","expires_at":1800003600,"last_error":null,"next_attempt_at":1800001800,"registrar":"sip:192.0.2.1","source_names":[{"addresses":["192.0.2.7","2001:db8::7"],"error":null,"name":"sbc.carrier.example"},{"addresses":[],"error":"gw.carrier.example has no address","name":"gw.carrier.example"}],"state":"registered","trunk":"carrier"}"#
        );
        let doc: Value = serde_json::from_str(OPENAPI).unwrap();
        let schema = &doc["components"]["schemas"]["Trunk"];
        let documented: Vec<&str> = schema["required"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let answer = trunk_json(&t);
        let mut keys: Vec<&str> = answer
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort();
        let mut documented_sorted = documented.clone();
        documented_sorted.sort();
        assert_eq!(keys, documented_sorted);
        let name = &schema["properties"]["source_names"]["items"];
        let mut name_keys: Vec<&str> = name["required"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        name_keys.sort();
        assert_eq!(name_keys, ["addresses", "error", "name"]);
        for s in ["off", "registering", "registered", "failed"] {
            assert!(schema["properties"]["state"]["enum"]
                .as_array()
                .unwrap()
                .contains(&json!(s)));
        }
    }

    /// The keys a schema of docs/openapi.json requires, sorted.
    fn required(schema: &str) -> Vec<String> {
        let doc: Value = serde_json::from_str(OPENAPI).unwrap();
        let mut keys: Vec<String> = doc["components"]["schemas"][schema]["required"]
            .as_array()
            .unwrap_or_else(|| panic!("{schema} has no required keys"))
            .iter()
            .filter_map(|k| k.as_str().map(str::to_string))
            .collect();
        keys.sort();
        keys
    }

    fn keys(v: &Value) -> Vec<String> {
        let mut keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    }

    /// The JSON of a mailbox's answers, as docs/openapi.json describes it.
    #[test]
    fn mailboxes_keep_their_documented_json() {
        let m = MessageRow {
            id: "00000000001800000000-3".into(),
            mailbox: "user:alice".into(),
            received: 1_800_000_000,
            duration_ms: 4250,
            caller: "+15550100".into(),
            caller_name: Some("Pat".into()),
            called: "1001".into(),
            original: Some("team:sales".into()),
            reason: "no_answer".into(),
            profile: None,
            call_id: "c1".into(),
            heard: false,
        };
        let text = |v: &Value| serde_json::to_string(v).unwrap();
        assert_eq!(
            text(&message_json(&m)),
            r#"{"call_id":"c1","called":"1001","caller":"+15550100","caller_name":"Pat","duration_ms":4250,"heard":false,"id":"00000000001800000000-3","mailbox":"user:alice","original":"team:sales","profile":null,"reason":"no_answer","received":1800000000,"received_at":"2027-01-15T08:00:00Z"}"#
        );
        assert_eq!(keys(&message_json(&m)), required("VoicemailMessage"));
        let counts = Counts { new: 1, old: 2 };
        let list = answer_json(
            Answer::Voicemail(VoicemailAnswer::List {
                mailbox: "user:alice".into(),
                counts,
                messages: vec![m.clone()],
            }),
            true,
        )
        .unwrap();
        assert_eq!(list["counts"], json!({ "new": 1, "old": 2 }));
        assert_eq!(keys(&list["counts"]), required("VoicemailCounts"));
        assert_eq!(list["messages"][0]["id"], json!(m.id));
        assert_eq!(list["mailbox"], json!("user:alice"));
        let deleted = answer_json(
            Answer::Voicemail(VoicemailAnswer::Deleted {
                message: m.clone(),
                counts,
            }),
            true,
        )
        .unwrap();
        assert_eq!(keys(&deleted), ["counts", "deleted"]);
        let kept = answer_json(
            Answer::Voicemail(VoicemailAnswer::Recording {
                mailbox: "team:sales".into(),
                recording: Recording::Greeting,
                duration_ms: Some(3000),
            }),
            true,
        )
        .unwrap();
        assert_eq!(
            kept,
            json!({ "mailbox": "team:sales", "recording": "greeting", "recorded": true, "duration_ms": 3000 })
        );
        assert_eq!(keys(&kept), required("Recording"));
        // Audio is read by its endpoint.
        let stored = VoicemailAnswer::Stored {
            table: switchboard_store::tables::VOICEMAIL_AUDIO,
            key: "user:alice\nx".into(),
        };
        assert_eq!(answer_json(Answer::Voicemail(stored), true), None);
    }

    /// A WAV file of `channels` at `rate` with `frames` frames of 16-bit samples.
    fn wav_of(rate: u32, channels: u16, frames: usize) -> Vec<u8> {
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut out = std::io::Cursor::new(Vec::new());
        let mut w = hound::WavWriter::new(&mut out, spec).unwrap();
        for i in 0..frames * channels as usize {
            w.write_sample((i % 100) as i16).unwrap();
        }
        w.finalize().unwrap();
        out.into_inner()
    }

    #[test]
    fn recordings_are_checked_and_refusals_say_how_to_convert() {
        let status = |r: Result<(Vec<u8>, u64), ApiError>| {
            let e = r.unwrap_err();
            (e.status, e.field.unwrap_or_default(), e.error)
        };
        // A good one: kept as its samples alone.
        let good = wav_of(8000, 1, 8000 * 3);
        let (wav, ms) =
            check_recording(Recording::Greeting, Some("audio/wav"), None, &good).unwrap();
        assert_eq!(ms, 3000);
        assert_eq!(wav::decode(&wav, 8000 * 3).unwrap().len(), 8000 * 3);
        assert!(check_recording(Recording::Name, None, None, &wav_of(8000, 1, 8000)).is_ok());
        assert!(check_recording(
            Recording::Name,
            Some("application/octet-stream"),
            None,
            &wav_of(8000, 1, 8000)
        )
        .is_ok());
        // Another rate and channels: 422, naming them, with the sox line.
        let (code, field, why) = status(check_recording(
            Recording::Greeting,
            Some("audio/x-wav"),
            None,
            &wav_of(44100, 2, 100),
        ));
        assert_eq!((code, field.as_str()), (422, "body"));
        assert!(why.contains("44100 Hz, 2 channels, 16-bit PCM"), "{why}");
        assert!(
            why.contains("sox INPUT -r 8000 -c 1 -b 16 -e signed-integer greeting.wav"),
            "{why}"
        );
        // Not WAV at all, or sent as something else: 415.
        let (code, field, why) = status(check_recording(
            Recording::Greeting,
            None,
            None,
            b"ID3\x04mp3",
        ));
        assert_eq!((code, field.as_str()), (415, "body"));
        assert!(why.contains("sox"), "{why}");
        let (code, field, why) = status(check_recording(
            Recording::Greeting,
            Some("application/x-www-form-urlencoded"),
            None,
            &good,
        ));
        assert_eq!((code, field.as_str()), (415, "content-type"));
        assert!(
            why.contains("\"application/x-www-form-urlencoded\""),
            "{why}"
        );
        // Too long, too short, too big.
        let (code, _, why) = status(check_recording(
            Recording::Name,
            None,
            None,
            &wav_of(8000, 1, 8000 * 5 + 1),
        ));
        assert_eq!(code, 422);
        assert!(why.contains("longer than 5 s"), "{why}");
        let (code, _, _) = status(check_recording(
            Recording::Name,
            None,
            None,
            &wav_of(8000, 1, 400),
        ));
        assert_eq!(code, 422);
        let (code, field, _) = status(check_recording(
            Recording::Name,
            None,
            Some(Recording::Name.max_bytes() + 1),
            &good,
        ));
        assert_eq!((code, field.as_str()), (413, "body"));
        let big = vec![0u8; Recording::Name.max_bytes() + 1];
        assert_eq!(
            status(check_recording(Recording::Name, None, None, &big)).0,
            413
        );
    }

    #[test]
    fn end_times_name_their_field_and_have_bounds() {
        let now = 1_800_000_000;
        let field = |r: Result<End, ApiError>| r.err().and_then(|e| e.field);
        let f = |d: &str| Some(d.to_string());
        assert_eq!(field(end_time(None, f("0"), now)), Some("for".into()));
        assert_eq!(field(end_time(None, f("0m"), now)), Some("for".into()));
        assert_eq!(end_time(None, f("45m"), now), Ok(End::At(now + 2700)));
        assert_eq!(end_time(None, f("none"), now), Ok(End::Never));
        assert_eq!(end_time(None, f(" None "), now), Ok(End::Never));
        assert_eq!(end_time(None, None, now), Ok(End::NotGiven));
        let far = now + MAX_END_AHEAD + 1;
        assert_eq!(
            field(end_time(Some(Time::Seconds(far)), None, now)),
            Some("until".into())
        );
        assert_eq!(
            field(end_time(
                Some(Time::Text("2099-01-01T00:00:00Z".into())),
                None,
                now
            )),
            Some("until".into())
        );
        assert_eq!(
            end_time(Some(Time::Seconds(far - 1)), None, now),
            Ok(End::At(far - 1))
        );
        // Seconds beyond the bound.
        assert_eq!(
            field(end_time(None, f(&(MAX_END_AHEAD + 1).to_string()), now)),
            Some("for".into())
        );
    }

    #[test]
    fn times_and_report_ranges() {
        assert_eq!(parse_time("1800000000"), Some(1_800_000_000));
        assert_eq!(parse_time("2027-01-15T08:00:00Z"), Some(1_800_000_000));
        assert_eq!(
            parse_time("2027-01-15T09:00:00 01:00"),
            parse_time("2027-01-15T08:00:00Z"),
            "a + read as a space from a query"
        );
        assert_eq!(parse_time("yesterday"), None);
        let q = |pairs: &[(&str, &str)]| {
            let m: BTreeMap<String, String> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            report_query(&m, 1000)
        };
        let field = |r: Result<ReportQuery, ApiError>| r.err().and_then(|e| e.field);
        let ok = q(&[("user", "alice"), ("from", "10")]).unwrap();
        assert_eq!((ok.from, ok.to), (10, 1000));
        assert_eq!(field(q(&[("from", "10")])), Some("user".into()));
        assert_eq!(
            field(q(&[("user", "a"), ("team", "t"), ("from", "1")])),
            Some("team".into())
        );
        assert_eq!(field(q(&[("user", "a")])), Some("from".into()));
        assert_eq!(
            field(q(&[("user", "a"), ("from", "soon")])),
            Some("from".into())
        );
        assert_eq!(
            field(q(&[("user", "a"), ("from", "10"), ("to", "5")])),
            Some("to".into())
        );
        assert_eq!(
            field(q(&[("user", "a"), ("from", "10"), ("color", "x")])),
            Some("color".into())
        );
    }
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReloadBody {
    /// Apply a policy that removes most users (or all of them).
    #[serde(default)]
    allow_shrink: bool,
}

/// The caller, who must hold the admin token to `what` (403 otherwise).
fn admin(state: &ApiState, headers: &HeaderMap, what: &str) -> Result<Caller, ApiError> {
    let c = caller(state, headers)?;
    if c.admin {
        Ok(c)
    } else {
        Err(ApiError::new(
            403,
            Some("authorization"),
            format!("only the admin token may {what}"),
        ))
    }
}

/// `POST /v1/policy/reload` (admin): reads the policy files again, as SIGHUP does, and says
/// what changed or why the running policy stays.
async fn reload_policy(
    State(state): State<ApiState>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    let c = match admin(&state, &headers, "reload the policy") {
        Ok(c) => c,
        Err(e) => return error(e),
    };
    let b: ReloadBody = if bytes.iter().all(u8::is_ascii_whitespace) {
        ReloadBody::default()
    } else {
        match body(&bytes) {
            Ok(b) => b,
            Err(e) => return error(e),
        }
    };
    tracing::info!(
        by = %c.who,
        via = ?c.via,
        allow_shrink = b.allow_shrink,
        "policy reload asked for"
    );
    let stopping = || error(ApiError::new(503, None, "the daemon is stopping"));
    let (tx, rx) = oneshot::channel();
    if state.reload.send((b.allow_shrink, tx)).await.is_err() {
        return stopping();
    }
    match rx.await {
        Ok(ReloadAnswer::Applied(c)) => Json(json!({
            "reloaded": true,
            "users": {
                "added": c.users_added,
                "removed": c.users_removed,
                "changed": c.users_changed,
            },
            "teams": {
                "added": c.teams_added,
                "removed": c.teams_removed,
                "changed": c.teams_changed,
            },
            "trunks": {
                "added": c.trunks_added,
                "removed": c.trunks_removed,
                "changed": c.trunks_changed,
            },
        }))
        .into_response(),
        Ok(ReloadAnswer::Shrink(why)) => error(ApiError::new(
            409,
            Some("allow_shrink"),
            format!("{why}; the running policy stays (allow_shrink applies it)"),
        )),
        Ok(ReloadAnswer::Invalid(errors)) => error(ApiError::new(422, None, errors)),
        Ok(ReloadAnswer::StillChanging(why)) => error(ApiError::new(503, None, why)),
        Err(_) => stopping(),
    }
}

/// One trunk's registration as `GET /v1/trunks` answers it.
fn trunk_json(t: &TrunkStatus) -> Value {
    json!({
        "trunk": t.trunk,
        "state": t.state.name(),
        "registrar": t.registrar,
        "aor": t.aor,
        "contact": t.contact.as_deref().map(|c| c.trim_start_matches('<').trim_end_matches('>')),
        "expires_at": t.expires_at,
        "last_error": t.last_error,
        "next_attempt_at": t.next_attempt_at,
        "source_names": t.source_names.iter().map(|n| json!({
            "name": n.name,
            "addresses": n.addresses.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            "error": n.error,
        })).collect::<Vec<_>>(),
    })
}

/// `GET /v1/trunks` (admin): every trunk of the policy with its registration at its
/// carrier (`off` for a trunk that does not register) and the addresses its source names
/// have now.
async fn list_trunks(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    if let Err(e) = admin(&state, &headers, "see the trunks") {
        return error(e);
    }
    match ask_loop(&state, LoopAsk::Trunks).await {
        Ok(list) => Json(json!({ "trunks": list.iter().map(trunk_json).collect::<Vec<_>>() }))
            .into_response(),
        Err(e) => error(e),
    }
}

/// Asks the daemon's loop (`ask` wraps the reply channel) and waits for its answer; 503
/// when the daemon is stopping.
async fn ask_loop<T>(
    state: &ApiState,
    ask: impl FnOnce(oneshot::Sender<T>) -> LoopAsk,
) -> Result<T, ApiError> {
    let stopping = || ApiError::new(503, None, "the daemon is stopping");
    let (tx, rx) = oneshot::channel();
    state.ops.ask.send(ask(tx)).await.map_err(|_| stopping())?;
    rx.await.map_err(|_| stopping())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RegistrationsQuery {
    user: Option<String>,
}

/// One registered device as `GET /v1/registrations` answers it.
fn registration_json(b: &Binding) -> Value {
    json!({
        "user": b.aor,
        "contact": b.contact,
        "transport": b.transport.to_string(),
        "source": b.source.to_string(),
        "user_agent": b.user_agent,
        "instance": b.instance,
        "expires_at": b.expires_at,
        "registered_at": b.registered_at,
        "node": b.owner.as_ref().map(|o| o.node.as_str()),
    })
}

/// `GET /v1/registrations[?user=ID]`: the registered devices (who, from where, over which
/// transport, with which phone, until when). The admin sees everyone's; a person with their
/// own token, their own (`user` may name only them).
async fn list_registrations(
    State(state): State<ApiState>,
    headers: HeaderMap,
    query: Result<Query<RegistrationsQuery>, QueryRejection>,
) -> Response {
    let c = match caller(&state, &headers) {
        Ok(c) => c,
        Err(e) => return error(e),
    };
    let q = match query {
        Ok(Query(q)) => q,
        Err(e) => return error(ApiError::new(400, None, format!("unreadable query: {e}"))),
    };
    let user = if c.admin {
        q.user
    } else {
        match q.user {
            Some(u) if u != c.who => {
                return error(ApiError::new(
                    403,
                    Some("authorization"),
                    "a person's token sees only their own registrations",
                ))
            }
            _ => Some(c.who.clone()),
        }
    };
    match ask_loop(&state, |reply| LoopAsk::Registrations { user, reply }).await {
        Ok(list) => Json(json!({
            "registrations": list.iter().map(registration_json).collect::<Vec<_>>()
        }))
        .into_response(),
        Err(e) => error(e),
    }
}

/// `GET /v1/calls` (admin): the calls in progress — being set up (their plan step, the
/// branches ringing) or answered (who answered) — oldest first.
async fn list_calls(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    if let Err(e) = admin(&state, &headers, "see the calls in progress") {
        return error(e);
    }
    match ask_loop(&state, LoopAsk::Calls).await {
        Ok(list) => Json(json!({ "calls": list })).into_response(),
        Err(e) => error(e),
    }
}

/// The parameters of `GET /v1/records` and `GET /v1/records/missed` (`missed`: the
/// latter's), checked: `from` and `to` as RFC 3339 or Unix seconds (default: the last day),
/// a page size, the cursor; a person's token asks only about their own calls.
fn records_query(
    state: &ApiState,
    c: &Caller,
    q: &BTreeMap<String, String>,
    missed: bool,
) -> Result<(crate::records::RecordQuery, bool), ApiError> {
    let known: &[&str] = if missed {
        &["user", "from", "to", "teams", "after", "limit", "format"]
    } else {
        &[
            "user", "team", "from", "to", "outcome", "after", "limit", "format",
        ]
    };
    if let Some(k) = q.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(ApiError::new(
            400,
            Some(k),
            format!("unknown parameter {k:?}: use {}", known.join(", ")),
        ));
    }
    let time = |field: &str| -> Result<Option<u64>, ApiError> {
        q.get(field)
            .map(|s| {
                parse_time(s).map(|t| t.max(0) as u64).ok_or_else(|| {
                    ApiError::new(
                        400,
                        Some(field),
                        format!("{s:?} is not an RFC 3339 time or Unix seconds"),
                    )
                })
            })
            .transpose()
    };
    let now = now().max(0) as u64;
    // `to` is exclusive: a call that began this second is in.
    let to = time("to")?.unwrap_or(now + 1);
    let from = time("from")?.unwrap_or(to.saturating_sub(86_400));
    if from >= to {
        return Err(ApiError::new(400, Some("to"), "to must be after from"));
    }
    let outcome = match q.get("outcome") {
        None => None,
        Some(o) => Some(RecordOutcome::parse(o).ok_or_else(|| {
            ApiError::new(
                400,
                Some("outcome"),
                format!(
                    "{o:?} is no outcome: use {}",
                    RecordOutcome::ALL.map(|o| o.as_str()).join(", ")
                ),
            )
        })?),
    };
    let limit = match q.get("limit") {
        None => crate::records::DEFAULT_PAGE,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=crate::records::MAX_PAGE).contains(&n) => n,
            _ => {
                return Err(ApiError::new(
                    400,
                    Some("limit"),
                    format!("{l:?}: use 1 to {}", crate::records::MAX_PAGE),
                ))
            }
        },
    };
    let csv = match q.get("format").map(String::as_str) {
        None | Some("json") => false,
        Some("csv") => true,
        Some(f) => {
            return Err(ApiError::new(
                400,
                Some("format"),
                format!("{f:?}: use json or csv"),
            ))
        }
    };
    let user = if c.admin {
        q.get("user").cloned()
    } else {
        match q.get("user") {
            Some(u) if *u != c.who => {
                return Err(ApiError::new(
                    403,
                    Some("authorization"),
                    "a person's token sees only the calls they took part in",
                ))
            }
            _ => Some(c.who.clone()),
        }
    };
    let missed = if missed {
        if user.is_none() {
            return Err(ApiError::new(400, Some("user"), "give user=ID"));
        }
        let teams = match q.get("teams").map(String::as_str) {
            None => state.ops.team_calls_missed,
            Some("true") => true,
            Some("false") => false,
            Some(t) => {
                return Err(ApiError::new(
                    400,
                    Some("teams"),
                    format!("{t:?}: use true or false"),
                ))
            }
        };
        Some(teams)
    } else {
        None
    };
    let query = crate::records::RecordQuery {
        from,
        to,
        user,
        team: q.get("team").cloned(),
        outcome,
        missed,
        after: q.get("after").cloned(),
        limit,
    };
    Ok((query, csv))
}

/// Reads a page of records off the core's loop and answers it as JSON (`records`, `next`)
/// or CSV (the cursor in an `x-next-after` header).
async fn records_page(
    state: &ApiState,
    headers: &HeaderMap,
    query: Result<Query<BTreeMap<String, String>>, QueryRejection>,
    missed: bool,
) -> Response {
    let c = match caller(state, headers) {
        Ok(c) => c,
        Err(e) => return error(e),
    };
    let q = match query {
        Ok(Query(q)) => records_query(state, &c, &q, missed),
        Err(e) => Err(ApiError::new(400, None, format!("unreadable query: {e}"))),
    };
    let (q, csv) = match q {
        Ok(q) => q,
        Err(e) => return error(e),
    };
    let store = state.store.clone();
    let done = tokio::task::spawn_blocking(move || crate::records::query(store.as_ref(), &q)).await;
    let page = match done {
        Ok(Ok(page)) => page,
        Ok(Err(e)) => {
            return error(ApiError::new(
                503,
                None,
                format!("the call records cannot be read: {e}"),
            ))
        }
        Err(_) => return error(ApiError::new(500, None, "reading the call records failed")),
    };
    if csv {
        let mut resp = (
            [("content-type", "text/csv; charset=utf-8")],
            crate::records::csv(&page.records),
        )
            .into_response();
        if let Some(next) = page.next.as_deref().and_then(|n| n.parse().ok()) {
            resp.headers_mut().insert("x-next-after", next);
        }
        return resp;
    }
    Json(json!({ "records": page.records, "next": page.next })).into_response()
}

/// `GET /v1/records`: call records by time range (`from`, `to`), person, team and outcome,
/// oldest first, a page at a time (`limit`, `after`), as JSON or CSV (`format`). The admin
/// sees every call; a person's token, the calls they took part in.
async fn list_records(
    State(state): State<ApiState>,
    headers: HeaderMap,
    query: Result<Query<BTreeMap<String, String>>, QueryRejection>,
) -> Response {
    records_page(&state, &headers, query, false).await
}

/// `GET /v1/records/missed?user=ID`: the calls a person missed — calls to them that they
/// did not take, and with `teams=true` (default: `[records] team_calls_missed`) team calls
/// that rang them and nobody took.
async fn missed_calls(
    State(state): State<ApiState>,
    headers: HeaderMap,
    query: Result<Query<BTreeMap<String, String>>, QueryRejection>,
) -> Response {
    records_page(&state, &headers, query, true).await
}
