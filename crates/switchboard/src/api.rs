//! The presence API: HTTP + JSON on its own (loopback by default) address.
//!
//! Requests are authenticated with bearer tokens (a person's own `api_token` from the policy,
//! or the config's admin token), turned into [`Command`]s, and handed to the core, which
//! answers once any change is durable. Errors are JSON: `{"error": "...", "field": "..."}`.

use crate::directory::Directory;
use crate::presence_service::{ApiError, Command, Reply, Request};
use arc_swap::ArcSwap;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::Deserialize;
use std::sync::Arc;
use switchboard_presence::model::Interface;
use tokio::sync::{mpsc, oneshot};

/// A command on its way to the core, with where its answer goes.
pub type Envelope = (Request, oneshot::Sender<Reply>);

#[derive(Clone)]
struct ApiState {
    directory: Arc<ArcSwap<Box<dyn Directory>>>,
    admin_token: Option<Arc<str>>,
    core: mpsc::Sender<Envelope>,
}

/// The OpenAPI document of this API.
pub const OPENAPI: &str = include_str!("../../../docs/openapi.json");

/// The API's routes.
pub fn router(
    directory: Arc<ArcSwap<Box<dyn Directory>>>,
    admin_token: Option<String>,
    core: mpsc::Sender<Envelope>,
) -> Router {
    let state = ApiState {
        directory,
        admin_token: admin_token.map(Arc::from),
        core,
    };
    Router::new()
        .route("/v1/presence", get(list))
        .route("/v1/presence/{user}", get(one))
        .route("/v1/presence/{user}/status", put(set_status))
        .route("/v1/presence/{user}/profile", put(set_profile))
        .route(
            "/v1/openapi.json",
            get(|| async { ([("content-type", "application/json")], OPENAPI) }),
        )
        .with_state(state)
}

fn error(e: ApiError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(e)).into_response()
}

/// Who the bearer token belongs to: (user, admin).
fn caller(state: &ApiState, headers: &HeaderMap) -> Result<(String, bool), ApiError> {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(|| ApiError::new(401, Some("authorization"), "a bearer token is needed"))?;
    if let Some(admin) = &state.admin_token {
        if constant_time_eq(token.as_bytes(), admin.as_bytes()) {
            return Ok(("admin".into(), true));
        }
    }
    match state.directory.load().user_for_token(token) {
        Some(u) => Ok((u, false)),
        None => Err(ApiError::new(401, Some("authorization"), "unknown token")),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn run(state: &ApiState, headers: &HeaderMap, command: Command) -> Response {
    let (who, admin) = match caller(state, headers) {
        Ok(c) => c,
        Err(e) => return error(e),
    };
    let (tx, rx) = oneshot::channel();
    let req = Request {
        who,
        admin,
        via: Interface::Api,
        command,
    };
    if state.core.send((req, tx)).await.is_err() {
        return error(ApiError::new(503, None, "the daemon is stopping"));
    }
    match rx.await {
        Ok(Ok(v)) => Json(v).into_response(),
        Ok(Err(e)) => error(e),
        Err(_) => error(ApiError::new(503, None, "the daemon is stopping")),
    }
}

async fn list(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    run(&state, &headers, Command::List).await
}

async fn one(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(user): Path<String>,
) -> Response {
    run(&state, &headers, Command::Get { user }).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusBody {
    status: String,
    text: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileBody {
    profile: String,
    /// RFC 3339 end time.
    until: Option<String>,
    /// Or a length: `45m`, `1h30m`.
    #[serde(rename = "for")]
    for_: Option<String>,
    message: Option<String>,
}

fn body<T: for<'de> Deserialize<'de>>(bytes: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        let text = e.to_string();
        // serde names the field in its message: "unknown field `x`", "missing field `x`".
        let field = text.split('`').nth(1).map(str::to_string);
        ApiError {
            status: 400,
            error: format!("invalid JSON body: {text}"),
            field,
        }
    })
}

async fn set_status(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(user): Path<String>,
    bytes: Bytes,
) -> Response {
    let b: StatusBody = match body(&bytes) {
        Ok(b) => b,
        Err(e) => return error(e),
    };
    run(
        &state,
        &headers,
        Command::SetStatus {
            user,
            status: b.status,
            text: b.text,
        },
    )
    .await
}

async fn set_profile(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(user): Path<String>,
    bytes: Bytes,
) -> Response {
    let b: ProfileBody = match body(&bytes) {
        Ok(b) => b,
        Err(e) => return error(e),
    };
    let until = match (&b.until, &b.for_) {
        (Some(_), Some(_)) => {
            return error(ApiError::new(
                400,
                Some("for"),
                "give either until or for, not both",
            ));
        }
        (Some(t), None) => match chrono::DateTime::parse_from_rfc3339(t) {
            Ok(t) => Some(t.timestamp()),
            Err(_) => {
                return error(ApiError::new(
                    400,
                    Some("until"),
                    format!("{t:?} is not an RFC 3339 time"),
                ));
            }
        },
        (None, Some(d)) => match switchboard_policy::parse_duration(d) {
            Some(secs) => Some(chrono::Utc::now().timestamp() + i64::from(secs)),
            None => {
                return error(ApiError::new(
                    400,
                    Some("for"),
                    format!("{d:?} is not a duration (45m, 1h30m)"),
                ));
            }
        },
        (None, None) => None,
    };
    run(
        &state,
        &headers,
        Command::SetProfile {
            user,
            profile: b.profile,
            until,
            message: b.message,
        },
    )
    .await
}
