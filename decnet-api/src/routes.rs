//! The handlers. Each is documented with `#[utoipa::path]`; its tag says who may call it:
//! `public` (anyone), `pending` (any logged-in user, even one who must still change the
//! password), `viewer` (viewer or admin), `admin`. The route-enumeration test relies on that.
use std::{net::IpAddr, net::SocketAddr, sync::Arc, sync::atomic::Ordering, time::Duration};

use axum::{
    extract::{ConnectInfo, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response, Sse, sse::KeepAlive},
};
use decnet_core::{
    model::Role,
    repo::{
        AttackerCursor, AttackerFilter, AttackerSort, Bucket, CredentialFilter, EventFilter,
        FlowFilter, MAX_PAGE, SessionFilter, TopColumn, username_key,
    },
    time_fmt::{now_ns, parse_ts},
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    AppState, Json, Path, Query, RuntimeConfig,
    auth::{self, Admin, MAX_PASSWORD, MAX_USERNAME, Pending, Viewer},
    encode::PageJson,
    error::{ApiError, ApiResult},
    metrics::{esc, metric_name},
    views::{
        AttackerView, CredentialReuseView, CredentialView, DeckyView, EventView, FingerprintView,
        FlowView, PivotView, ScanView, SessionView, TouchView, TraversalView, ts,
    },
};

type St = State<Arc<AppState>>;

#[derive(OpenApi)]
#[openapi(
    info(title = "decnet", description = "decnet's REST API: deckies, events, flows, sessions, attackers, credentials, scans, stats, workers; users and runtime settings (admin)."),
    modifiers(&Bearer),
    tags(
        (name = "public", description = "No authentication"),
        (name = "pending", description = "Any logged-in user, including one who must change the password"),
        (name = "viewer", description = "Viewer or admin"),
        (name = "admin", description = "Admin only"),
    )
)]
pub struct ApiDoc;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let c = doc.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// An error response's body.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, safe to show (internal failures say only `internal error`).
    error: String,
    /// Ties the response to the server's log line.
    id: String,
}

/// Declares the errors every operation can answer, with [`ErrorBody`]: 401 (with
/// `WWW-Authenticate`) and 403 where a token is needed, 400/413/415/422 where a JSON body is
/// read, 400/422 where parameters are, 429 where a limiter applies, 500 everywhere.
struct Errors;

impl Modify for Errors {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{
            ContentBuilder, Ref, RefOr, ResponseBuilder,
            header::HeaderBuilder,
            schema::{ObjectBuilder, Type},
        };
        let c = doc.components.get_or_insert_with(Default::default);
        c.schemas.insert(
            "ErrorBody".into(),
            <ErrorBody as utoipa::PartialSchema>::schema(),
        );
        let err = |code: &str, desc: &str| {
            let mut r = ResponseBuilder::new().description(desc).content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            );
            if code == "401" {
                r = r.header(
                    "WWW-Authenticate",
                    HeaderBuilder::new()
                        .schema(ObjectBuilder::new().schema_type(Type::String))
                        .description(Some("`Bearer realm=\"decnet\"`"))
                        .build(),
                );
            }
            if code == "429" {
                r = r.header(
                    "Retry-After",
                    HeaderBuilder::new()
                        .schema(ObjectBuilder::new().schema_type(Type::Integer))
                        .description(Some("Seconds to wait"))
                        .build(),
                );
            }
            r.build()
        };
        for (path, item) in doc.paths.paths.iter_mut() {
            for op in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                let tag = op
                    .tags
                    .as_ref()
                    .and_then(|t| t.first())
                    .cloned()
                    .unwrap_or_default();
                let mut codes: Vec<(&str, &str)> = Vec::new();
                if tag != "public" {
                    codes.push(("401", "No token, or an invalid, expired or revoked one"));
                }
                if tag == "viewer" || tag == "admin" {
                    codes.push((
                        "403",
                        "The role does not allow it, or the password must be changed first",
                    ));
                }
                if op.request_body.is_some() {
                    codes.push(("400", "Malformed JSON or an invalid value"));
                    codes.push(("413", "Body too large"));
                    codes.push(("415", "Content-Type is not application/json"));
                    codes.push(("422", "The JSON does not match the schema"));
                }
                if op.parameters.as_ref().is_some_and(|p| !p.is_empty()) {
                    codes.push(("400", "An invalid parameter"));
                    codes.push(("422", "A parameter outside its schema (type, range, enum)"));
                }
                if matches!(
                    path.as_str(),
                    "/api/v1/auth/login" | "/api/v1/auth/password" | "/api/v1/stream"
                ) {
                    codes.push(("429", "Too many failed attempts or connections"));
                }
                codes.push(("500", "Internal error (the id is in the server's log)"));
                let r = &mut op.responses.responses;
                for (code, desc) in codes {
                    r.entry(code.into())
                        .or_insert_with(|| RefOr::T(err(code, desc)));
                }
                // Error statuses declared by the handlers without a body get the error body.
                for (code, resp) in r.iter_mut() {
                    if let RefOr::T(x) = resp
                        && (code.starts_with('4') || code.starts_with('5'))
                        && x.content.is_empty()
                    {
                        let desc = if x.description.is_empty() {
                            "Error".to_owned()
                        } else {
                            x.description.clone()
                        };
                        *resp = RefOr::T(err(code, &desc));
                    }
                }
            }
        }
    }
}

/// Declares the error responses of every operation of `doc` (see [`Errors`]).
pub fn declare_errors(doc: &mut utoipa::openapi::OpenApi) {
    Errors.modify(doc);
}

pub fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(login))
        .routes(routes!(health))
        .routes(routes!(me))
        .routes(routes!(change_password))
        .routes(routes!(list_events))
        .routes(routes!(list_attackers))
        .routes(routes!(attacker_detail))
        .routes(routes!(list_sessions))
        .routes(routes!(list_credentials))
        .routes(routes!(list_flows))
        .routes(routes!(list_scans))
        .routes(routes!(list_traversals))
        .routes(routes!(list_pivots))
        .routes(routes!(list_credential_reuse))
        .routes(routes!(list_deckies))
        .routes(routes!(decky_action, decky_actions))
        .routes(routes!(stats))
        .routes(routes!(workers))
        .routes(routes!(stream))
        .routes(routes!(list_users, create_user))
        .routes(routes!(set_role))
        .routes(routes!(reset_password))
        .routes(routes!(delete_user))
        .routes(routes!(get_config, put_config))
        .routes(routes!(metrics))
        .merge(crate::probes::router())
}

/// `GET /api/v1/openapi.json` (viewer).
pub async fn openapi_json(_v: Viewer, State(s): St) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        s.openapi.get().cloned().unwrap_or_else(|| "{}".into()),
    )
        .into_response()
}

fn bad(s: &AppState, msg: impl Into<String>) -> ApiError {
    s.bad_requests.fetch_add(1, Ordering::Relaxed);
    ApiError::bad_request(msg)
}

/// A parameter outside its schema's range or enum: 422.
fn unprocessable(s: &AppState, msg: impl Into<String>) -> ApiError {
    s.bad_requests.fetch_add(1, Ordering::Relaxed);
    ApiError::unprocessable(msg)
}

// --- auth -------------------------------------------------------------------------------------

#[derive(Deserialize, ToSchema)]
pub struct LoginBody {
    username: String,
    password: String,
}

#[derive(Serialize, ToSchema)]
pub struct TokenResponse {
    token: String,
    /// Unix seconds.
    expires_at: i64,
    username: String,
    role: String,
    must_change_password: bool,
}

/// Log in: username and password → a bearer token (JWT). Rate limited per client address and
/// per username (429 with Retry-After).
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "public", request_body = LoginBody,
    responses((status = 200, body = TokenResponse), (status = 401), (status = 429)))]
async fn login(
    State(s): St,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Json(b): Json<LoginBody>,
) -> ApiResult<Json2<TokenResponse>> {
    let rt = s.runtime();
    let limits = s.login_limits();
    let client = auth::client_ip(peer.ip(), &headers, &s.trusted_proxies);
    let user_key = username_key(&decnet_core::repo::limits::text(&b.username, MAX_USERNAME));
    if let Err(wait) = s.limiter.check(client, &user_key, limits) {
        tracing::warn!(client = %client, "login refused: too many failed attempts");
        return Err(too_many(
            "too many failed login attempts: try again later",
            wait,
        ));
    }
    if b.username.is_empty() || b.username.len() > MAX_USERNAME || b.password.len() > MAX_PASSWORD {
        s.limiter.failed(client, &user_key, limits);
        return Err(ApiError::unauthorized("invalid username or password"));
    }
    let user = s.repo.user(&b.username).await?;
    let hash = user
        .as_ref()
        .map(|u| u.password_hash.clone())
        .unwrap_or_else(|| s.dummy_hash.clone());
    let ok = {
        let _slot = s.hash_slots.acquire().await.map_err(ApiError::internal)?;
        let pw = b.password;
        tokio::task::spawn_blocking(move || auth::verify_password(&pw, &hash))
            .await
            .map_err(ApiError::internal)?
    };
    let Some(user) = user.filter(|_| ok) else {
        let locked = s.limiter.failed(client, &user_key, limits);
        tracing::info!(client = %client, locked_secs = ?locked, "failed login");
        return Err(ApiError::unauthorized("invalid username or password"));
    };
    s.limiter.succeeded(client, &user_key);
    let (token, exp) = s.keys.issue(
        &user.username,
        user.role,
        user.must_change_password,
        user.token_generation,
        Duration::from_secs(rt.token_lifetime_secs),
    )?;
    tracing::info!(user = %user.username, client = %client, "login");
    Ok(Json2(TokenResponse {
        token,
        expires_at: exp,
        username: user.username,
        role: user.role.as_str().into(),
        must_change_password: user.must_change_password,
    }))
}

fn too_many(msg: &str, wait: u64) -> ApiError {
    let mut e = ApiError::new(StatusCode::TOO_MANY_REQUESTS, msg);
    e.retry_after = Some(wait);
    e
}

/// axum's JSON response.
pub struct Json2<T>(pub T);

impl<T: Serialize> IntoResponse for Json2<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// Who the token belongs to.
#[utoipa::path(get, path = "/api/v1/auth/me", tag = "pending", security(("bearer" = [])),
    responses((status = 200, body = MeResponse)))]
async fn me(Pending(c): Pending) -> Json2<MeResponse> {
    Json2(MeResponse {
        username: c.sub,
        role: c.role,
        must_change_password: c.mcp,
        expires_at: c.exp,
    })
}

#[derive(Serialize, ToSchema)]
pub struct MeResponse {
    username: String,
    role: String,
    must_change_password: bool,
    /// Unix seconds.
    expires_at: i64,
}

#[derive(Deserialize, ToSchema)]
pub struct PasswordBody {
    current_password: String,
    new_password: String,
}

/// Change one's own password (required after the first login); returns a fresh token and
/// invalidates older ones.
#[utoipa::path(post, path = "/api/v1/auth/password", tag = "pending", security(("bearer" = [])),
    request_body = PasswordBody, responses((status = 200, body = TokenResponse), (status = 400), (status = 401)))]
async fn change_password(
    State(s): St,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Pending(c): Pending,
    Json(b): Json<PasswordBody>,
) -> ApiResult<Json2<TokenResponse>> {
    let user = s
        .repo
        .user(&c.sub)
        .await?
        .ok_or_else(|| ApiError::unauthorized("no such user"))?;
    // The current-password check is a password oracle for whoever holds a token: limited like
    // logins (failed checks per address and user, with backoff).
    let limits = s.login_limits();
    let client = auth::client_ip(peer.ip(), &headers, &s.trusted_proxies);
    let user_key = username_key(&user.username);
    if let Err(wait) = s.pw_limiter.check(client, &user_key, limits) {
        return Err(too_many(
            "too many wrong current passwords: try again later",
            wait,
        ));
    }
    if b.current_password.len() > MAX_PASSWORD {
        s.pw_limiter.failed(client, &user_key, limits);
        return Err(ApiError::unauthorized("the current password is wrong"));
    }
    let (cur, hash) = (b.current_password.clone(), user.password_hash.clone());
    let ok = {
        let _slot = s.hash_slots.acquire().await.map_err(ApiError::internal)?;
        tokio::task::spawn_blocking(move || auth::verify_password(&cur, &hash))
            .await
            .map_err(ApiError::internal)?
    };
    if !ok {
        s.pw_limiter.failed(client, &user_key, limits);
        return Err(ApiError::unauthorized("the current password is wrong"));
    }
    s.pw_limiter.succeeded(client, &user_key);
    if b.new_password == b.current_password {
        return Err(bad(&s, "the new password must differ from the current one"));
    }
    auth::password_policy(&c.sub, &b.new_password).map_err(|e| bad(&s, e))?;
    let np = b.new_password;
    let new_hash = tokio::task::spawn_blocking(move || auth::hash_password(&np))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    s.repo.set_password(&c.sub, &new_hash, false).await?;
    s.forget_user(&c.sub);
    let user = s
        .repo
        .user(&c.sub)
        .await?
        .ok_or_else(|| ApiError::unauthorized("no such user"))?;
    let rt = s.runtime();
    let (token, exp) = s.keys.issue(
        &user.username,
        user.role,
        false,
        user.token_generation,
        Duration::from_secs(rt.token_lifetime_secs),
    )?;
    tracing::info!(user = %user.username, "password changed");
    Ok(Json2(TokenResponse {
        token,
        expires_at: exp,
        username: user.username,
        role: user.role.as_str().into(),
        must_change_password: false,
    }))
}

/// A worker lease is stale when its last heartbeat is older than this (the workers' lease
/// lifetime: a live holder heartbeats every third of it).
pub const STALE_SECS: f64 = 15.0;

/// A worker lease: who runs, and how fresh its heartbeat is.
#[derive(Serialize, ToSchema)]
pub struct LeaseView {
    kind: String,
    host: String,
    holder: String,
    pid: u32,
    acquired_at: String,
    heartbeat_at: String,
    heartbeat_age_secs: f64,
    /// Heartbeat within the last 15 s.
    alive: bool,
}

fn lease_views(leases: &[decnet_core::model::Lease]) -> Vec<LeaseView> {
    let now = now_ns();
    leases
        .iter()
        .map(|l| {
            let age = (now - l.heartbeat_at_ns) as f64 / 1e9;
            LeaseView {
                kind: l.kind.clone(),
                host: l.host.clone(),
                holder: l.holder.clone(),
                pid: l.pid,
                acquired_at: ts(l.acquired_at_ns),
                heartbeat_at: ts(l.heartbeat_at_ns),
                heartbeat_age_secs: age,
                alive: age < STALE_SECS,
            }
        })
        .collect()
}

#[derive(Serialize, ToSchema)]
pub struct HealthResponse {
    /// `ok`; `degraded` when a worker's heartbeat is stale (its process died or hangs);
    /// `no_workers` when no worker holds a lease (nothing feeds the data);
    /// `database_unreachable`.
    status: String,
    database: String,
    uptime_secs: u64,
    /// Every worker lease with its heartbeat age.
    workers: Vec<LeaseView>,
    /// `kind@host` of the workers whose heartbeat is stale.
    stale: Vec<String>,
}

/// Health: the database is reachable and every worker of the pipeline heartbeats (from the
/// worker leases). 200 only when `ok`; 503 otherwise, with the same body saying what is wrong.
#[utoipa::path(get, path = "/api/v1/health", tag = "public",
    responses((status = 200, body = HealthResponse), (status = 503, body = HealthResponse)))]
async fn health(State(s): St) -> Response {
    let mut h = HealthResponse {
        status: "ok".into(),
        database: s.repo.dialect().name().into(),
        uptime_secs: s.started.elapsed().as_secs(),
        workers: Vec::new(),
        stale: Vec::new(),
    };
    let leases = match s.repo.ping().await {
        Ok(()) => s.repo.leases().await,
        Err(e) => Err(e),
    };
    match leases {
        Ok(l) => {
            h.workers = lease_views(&l);
            h.stale = h
                .workers
                .iter()
                .filter(|w| !w.alive)
                .map(|w| format!("{}@{}", w.kind, w.host))
                .collect();
            if !h.stale.is_empty() {
                h.status = "degraded".into();
            } else if h.workers.is_empty() {
                h.status = "no_workers".into();
            }
        }
        Err(e) => {
            tracing::warn!("health: database unreachable: {e}");
            h.status = "database_unreachable".into();
        }
    }
    let code = if h.status == "ok" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json2(h)).into_response()
}

// --- listings ---------------------------------------------------------------------------------

/// A page of a listing.
#[derive(Serialize, ToSchema)]
pub struct Page<T> {
    pub(crate) items: Vec<T>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub(crate) next_cursor: Option<String>,
}

fn limit_of(s: &AppState, l: Option<u32>) -> ApiResult<u32> {
    match l {
        None => Ok(50),
        Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
        Some(n) => Err(unprocessable(
            s,
            format!("limit: {n} is outside 1..={MAX_PAGE}"),
        )),
    }
}

fn id_cursor(s: &AppState, c: &Option<String>) -> ApiResult<Option<i64>> {
    match c.as_deref() {
        None | Some("") => Ok(None),
        Some(v) => v
            .parse::<i64>()
            .map(Some)
            .map_err(|_| bad(s, "cursor: not a cursor from a previous page")),
    }
}

/// A time: RFC 3339 (`2026-05-02T06:00:25Z`) or Unix seconds.
fn time_of(s: &AppState, name: &str, v: &Option<String>) -> ApiResult<Option<i64>> {
    let Some(v) = v.as_deref().filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if let Ok(secs) = v.parse::<i64>() {
        return secs
            .checked_mul(1_000_000_000)
            .map(Some)
            .ok_or_else(|| bad(s, format!("{name}: out of range")));
    }
    if let Ok(ns) = parse_ts(v) {
        return Ok(Some(ns));
    }
    time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339)
        .ok()
        .and_then(|t| i64::try_from(t.unix_timestamp_nanos()).ok())
        .map(Some)
        .ok_or_else(|| bad(s, format!("{name}: expected RFC 3339 time or Unix seconds")))
}

fn ip_of(s: &AppState, name: &str, v: &Option<String>) -> ApiResult<Option<IpAddr>> {
    match v.as_deref().filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| bad(s, format!("{name}: not an IP address"))),
    }
}

fn name_of(s: &AppState, name: &str, v: Option<String>) -> ApiResult<Option<String>> {
    match v.filter(|v| !v.is_empty()) {
        Some(v) if v.len() > decnet_core::repo::limits::NAME => Err(bad(
            s,
            format!(
                "{name}: longer than {} bytes",
                decnet_core::repo::limits::NAME
            ),
        )),
        v => Ok(v),
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventQuery {
    /// From this time (RFC 3339 or Unix seconds), inclusive.
    since: Option<String>,
    /// Until this time, exclusive.
    until: Option<String>,
    decky: Option<String>,
    service: Option<String>,
    /// Event type (the MSGID).
    #[serde(rename = "type")]
    #[param(rename = "type")]
    event_type: Option<String>,
    /// Attacker IP.
    attacker: Option<String>,
    /// Substring of the event's fields (at most 128 bytes).
    q: Option<String>,
    /// 1..=500, default 50.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    /// From a previous page's `next_cursor`.
    cursor: Option<String>,
    /// Include each event's raw line (default false).
    raw: Option<bool>,
}

/// Events, newest first, filtered and paginated (keyset cursor).
#[utoipa::path(get, path = "/api/v1/events", tag = "viewer", security(("bearer" = [])),
    params(EventQuery), responses((status = 200, body = Page<EventView>), (status = 400)))]
async fn list_events(
    State(s): St,
    _v: Viewer,
    uri: axum::http::Uri,
    Query(q): Query<EventQuery>,
) -> ApiResult<Response> {
    // First pages are what every open dashboard asks for: cached until new events arrive (or
    // --list-cache-ms passes).
    let version = s.hub.last_event_id.load(Ordering::Relaxed);
    let key = q
        .cursor
        .is_none()
        .then(|| format!("e|{}", uri.query().unwrap_or("")));
    if let Some(hit) = s.list_cache.get(key.as_deref(), version) {
        return Ok(hit);
    }
    let with_raw = q.raw.unwrap_or(false);
    if q.q
        .as_deref()
        .is_some_and(|t| t.len() > decnet_core::repo::MAX_NEEDLE)
    {
        return Err(bad(&s, "q: longer than 128 bytes"));
    }
    let f = EventFilter {
        since_ns: time_of(&s, "since", &q.since)?,
        until_ns: time_of(&s, "until", &q.until)?,
        decky: name_of(&s, "decky", q.decky)?,
        service: name_of(&s, "service", q.service)?,
        event_type: name_of(&s, "type", q.event_type)?,
        attacker: ip_of(&s, "attacker", &q.attacker)?,
        text: q.q,
        before_id: id_cursor(&s, &q.cursor)?,
        limit: limit_of(&s, q.limit)?,
    };
    // Rows are written into the body as the repository reads them (see `encode`); a full
    // page's last id is the cursor that continues the listing.
    let (page, last) = s
        .repo
        .each_event(&f, with_raw, (PageJson::new(), None), |(page, last), e| {
            page.event(e);
            *last = Some(e.id);
        })
        .await?;
    let next = last
        .filter(|_| page.items() == f.limit as usize)
        .map(|id| id.to_string());
    Ok(s.list_cache
        .put_body(key, version, page.finish(next.as_deref())?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AttackerQuery {
    /// `last_seen` (default) or `events`.
    #[param(value_type = Option<String>, pattern = "^(last_seen|events)?$")]
    sort: Option<String>,
    /// Addresses starting with this.
    ip: Option<String>,
    #[param(minimum = 0, maximum = 9_223_372_036_854_775_807_i64)]
    min_events: Option<u64>,
    /// 1..=500, default 50.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    cursor: Option<String>,
}

fn attacker_cursor(
    s: &AppState,
    sort: AttackerSort,
    c: &Option<String>,
) -> ApiResult<Option<AttackerCursor>> {
    let Some(c) = c.as_deref().filter(|c| !c.is_empty()) else {
        return Ok(None);
    };
    let err = || bad(s, "cursor: not a cursor from a previous page");
    let (a, id) = c.rsplit_once('.').ok_or_else(err)?;
    let id: i64 = id.parse().map_err(|_| err())?;
    let (tag, key) = a.split_once('.').ok_or_else(err)?;
    let key: i64 = key.parse().map_err(|_| err())?;
    match (tag, sort) {
        ("l", AttackerSort::LastSeen) => Ok(Some(AttackerCursor::LastSeen {
            last_seen_ns: key,
            id,
        })),
        ("e", AttackerSort::Events) => Ok(Some(AttackerCursor::Events { events: key, id })),
        _ => Err(err()),
    }
}

/// Attackers, most recently active (or most events) first, paginated.
#[utoipa::path(get, path = "/api/v1/attackers", tag = "viewer", security(("bearer" = [])),
    params(AttackerQuery), responses((status = 200, body = Page<AttackerView>), (status = 400)))]
async fn list_attackers(
    State(s): St,
    _v: Viewer,
    uri: axum::http::Uri,
    Query(q): Query<AttackerQuery>,
) -> ApiResult<Response> {
    let key = q
        .cursor
        .is_none()
        .then(|| format!("a|{}", uri.query().unwrap_or("")));
    if let Some(hit) = s.list_cache.get(key.as_deref(), 0) {
        return Ok(hit);
    }
    let sort = match q.sort.as_deref() {
        None | Some("") | Some("last_seen") => AttackerSort::LastSeen,
        Some("events") => AttackerSort::Events,
        Some(_) => return Err(bad(&s, "sort: last_seen or events")),
    };
    // Stored counts are signed 64-bit: a bound beyond them is outside the schema, not "none".
    if q.min_events.is_some_and(|n| i64::try_from(n).is_err()) {
        return Err(unprocessable(&s, "min_events: 0..=9223372036854775807"));
    }
    if q.ip.as_deref().is_some_and(|p| p.len() > 45) {
        return Err(bad(&s, "ip: longer than an address"));
    }
    let f = AttackerFilter {
        sort,
        ip_prefix: q.ip,
        min_events: q.min_events,
        after: attacker_cursor(&s, sort, &q.cursor)?,
        limit: limit_of(&s, q.limit)?,
    };
    // Rows are written into the body as the repository reads them (see `encode`); a full
    // page's last row gives the cursor that continues the listing.
    let full = f.limit as usize;
    let (page, last) = s
        .repo
        .each_attacker(&f, (PageJson::new(), None), move |(page, last), a| {
            page.attacker(a);
            if page.items() == full {
                *last = Some(a.cursor(sort));
            }
        })
        .await?;
    let next = match last {
        Some(c) => Some(match c? {
            AttackerCursor::LastSeen { last_seen_ns, id } => format!("l.{last_seen_ns}.{id}"),
            AttackerCursor::Events { events, id } => format!("e.{events}.{id}"),
        }),
        _ => None,
    };
    Ok(s.list_cache.put_body(key, 0, page.finish(next.as_deref())?))
}

/// One attacker: counters, profile (behaviour, score and its factors, tools, ATT&CK
/// techniques), traversal path across deckies, sessions and their commands, credentials,
/// fingerprints and recent events.
#[utoipa::path(get, path = "/api/v1/attackers/{ip}", tag = "viewer", security(("bearer" = [])),
    params(("ip" = String, Path, description = "The attacker's IP address")),
    responses((status = 200, body = serde_json::Value), (status = 400), (status = 404)))]
async fn attacker_detail(
    State(s): St,
    _v: Viewer,
    Path(ip): Path<String>,
) -> ApiResult<Json2<Value>> {
    let ip: IpAddr = ip.parse().map_err(|_| bad(&s, "not an IP address"))?;
    let a = s
        .repo
        .attacker_row(ip)
        .await?
        .ok_or_else(|| ApiError::not_found("no such attacker"))?;
    let profile = s.repo.profile(ip).await?;
    let touches = s.repo.touches(ip).await?;
    let sessions = s
        .repo
        .list_sessions(&SessionFilter {
            attacker: Some(ip),
            limit: 200,
            ..Default::default()
        })
        .await?;
    let creds = s
        .repo
        .list_credentials(&CredentialFilter {
            attacker: Some(ip),
            limit: 200,
            ..Default::default()
        })
        .await?;
    let fps = s.repo.fingerprints(ip, MAX_PAGE).await?;
    let events = s
        .repo
        .list_events(&EventFilter {
            attacker: Some(ip),
            limit: 100,
            ..Default::default()
        })
        .await?;
    let commands: Vec<Value> = sessions
        .iter()
        .flat_map(|r| {
            r.session.commands.iter().map(move |c| {
                json!({"decky": r.session.decky, "service": r.session.service,
                       "session_started": ts(r.session.started_ns), "command": c})
            })
        })
        .take(1000)
        .collect();
    let profile = profile.map(|p| {
        json!({
            "behaviour": p.behaviour, "score": p.score, "factors": p.factors, "tools": p.tools,
            "techniques": p.techniques, "evidence_until": ts(p.evidence_until_ns),
            "computed_at": ts(p.computed_at_ns),
        })
    });
    Ok(Json2(json!({
        "attacker": AttackerView::from(&a),
        "profile": profile,
        "traversal": touches.iter().map(TouchView::from).collect::<Vec<_>>(),
        "sessions": sessions.iter().map(SessionView::from).collect::<Vec<_>>(),
        "commands": commands,
        "credentials": creds.iter().map(CredentialView::from).collect::<Vec<_>>(),
        "fingerprints": fps.iter().map(FingerprintView::from).collect::<Vec<_>>(),
        "events": events.iter().map(EventView::from).collect::<Vec<_>>(),
    })))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SessionQuery {
    attacker: Option<String>,
    decky: Option<String>,
    service: Option<String>,
    /// 1..=500, default 50.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    cursor: Option<String>,
}

/// Sessions (attacker × decky × service), newest first.
#[utoipa::path(get, path = "/api/v1/sessions", tag = "viewer", security(("bearer" = [])),
    params(SessionQuery), responses((status = 200, body = Page<SessionView>), (status = 400)))]
async fn list_sessions(
    State(s): St,
    _v: Viewer,
    Query(q): Query<SessionQuery>,
) -> ApiResult<Json2<Page<SessionView>>> {
    let f = SessionFilter {
        attacker: ip_of(&s, "attacker", &q.attacker)?,
        decky: name_of(&s, "decky", q.decky)?,
        service: name_of(&s, "service", q.service)?,
        before_id: id_cursor(&s, &q.cursor)?,
        limit: limit_of(&s, q.limit)?,
    };
    let rows = s.repo.list_sessions(&f).await?;
    let next = (rows.len() == f.limit as usize)
        .then(|| rows.last().map(|r| r.id.to_string()))
        .flatten();
    Ok(Json2(Page {
        items: rows.iter().map(SessionView::from).collect(),
        next_cursor: next,
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CredentialQuery {
    attacker: Option<String>,
    service: Option<String>,
    /// Substring of the login name.
    principal: Option<String>,
    /// 1..=500, default 50.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    cursor: Option<String>,
}

/// Captured credentials, newest first.
#[utoipa::path(get, path = "/api/v1/credentials", tag = "viewer", security(("bearer" = [])),
    params(CredentialQuery), responses((status = 200, body = Page<CredentialView>), (status = 400)))]
async fn list_credentials(
    State(s): St,
    _v: Viewer,
    Query(q): Query<CredentialQuery>,
) -> ApiResult<Json2<Page<CredentialView>>> {
    if q.principal.as_deref().is_some_and(|p| p.len() > 128) {
        return Err(bad(&s, "principal: longer than 128 bytes"));
    }
    let f = CredentialFilter {
        attacker: ip_of(&s, "attacker", &q.attacker)?,
        service: name_of(&s, "service", q.service)?,
        principal: q.principal,
        before_id: id_cursor(&s, &q.cursor)?,
        limit: limit_of(&s, q.limit)?,
    };
    let rows = s.repo.list_credentials(&f).await?;
    let next = (rows.len() == f.limit as usize)
        .then(|| rows.last().map(|r| r.id.to_string()))
        .flatten();
    Ok(Json2(Page {
        items: rows.iter().map(CredentialView::from).collect(),
        next_cursor: next,
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FlowQuery {
    src_ip: Option<String>,
    dst_ip: Option<String>,
    #[param(minimum = 0, maximum = 65535)]
    dst_port: Option<u16>,
    /// IP protocol number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6).
    #[param(minimum = 0, maximum = 255)]
    proto: Option<u8>,
    since: Option<String>,
    /// 1..=500, default 50.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    cursor: Option<String>,
}

/// Flows the sensor exported, newest first.
#[utoipa::path(get, path = "/api/v1/flows", tag = "viewer", security(("bearer" = [])),
    params(FlowQuery), responses((status = 200, body = Page<FlowView>), (status = 400)))]
async fn list_flows(
    State(s): St,
    _v: Viewer,
    Query(q): Query<FlowQuery>,
) -> ApiResult<Json2<Page<FlowView>>> {
    let f = FlowFilter {
        src_ip: ip_of(&s, "src_ip", &q.src_ip)?,
        dst_ip: ip_of(&s, "dst_ip", &q.dst_ip)?,
        dst_port: q.dst_port,
        proto: q.proto,
        since_ns: time_of(&s, "since", &q.since)?,
        before_id: id_cursor(&s, &q.cursor)?,
        limit: limit_of(&s, q.limit)?,
    };
    let rows = s.repo.list_flows(&f).await?;
    let next = (rows.len() == f.limit as usize)
        .then(|| rows.last().map(|r| r.id.to_string()))
        .flatten();
    Ok(Json2(Page {
        items: rows.iter().map(FlowView::from).collect(),
        next_cursor: next,
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ScanQuery {
    /// Only this attacker's scans.
    attacker: Option<String>,
    /// `tcp_syn`, `tcp_connect`, `udp` or `ping_sweep`.
    #[param(pattern = "^(tcp_syn|tcp_connect|udp|ping_sweep)?$")]
    kind: Option<String>,
    /// Episodes that started at or after this time (RFC 3339 or Unix seconds).
    since: Option<String>,
    /// 1..=500, default 50.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    cursor: Option<String>,
}

fn cursor_err(s: &AppState) -> ApiError {
    bad(s, "cursor: not a cursor from a previous page")
}

/// `<ns>.<rest>` of a listing cursor.
fn split_cursor<'a>(s: &AppState, c: &'a Option<String>) -> ApiResult<Option<(i64, &'a str)>> {
    let Some(c) = c.as_deref().filter(|c| !c.is_empty()) else {
        return Ok(None);
    };
    let (t, rest) = c.split_once('.').ok_or_else(|| cursor_err(s))?;
    Ok(Some((t.parse().map_err(|_| cursor_err(s))?, rest)))
}

fn unhex(h: &str) -> Option<Vec<u8>> {
    if !h.len().is_multiple_of(2) || h.len() > 512 {
        return None;
    }
    (0..h.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(h.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Port scans and host sweeps the correlator detected (episodes per attacker and kind), newest
/// first. Decnet's own addresses and non-routable sources are never attackers, so they never
/// appear here.
#[utoipa::path(get, path = "/api/v1/scans", tag = "viewer", security(("bearer" = [])),
    params(ScanQuery), responses((status = 200, body = Page<ScanView>), (status = 400)))]
async fn list_scans(
    State(s): St,
    _v: Viewer,
    Query(q): Query<ScanQuery>,
) -> ApiResult<Json2<Page<ScanView>>> {
    let kind = match q.kind.as_deref().filter(|k| !k.is_empty()) {
        None => None,
        Some(k @ ("tcp_syn" | "tcp_connect" | "udp" | "ping_sweep")) => Some(k),
        Some(_) => {
            return Err(unprocessable(
                &s,
                "kind: tcp_syn, tcp_connect, udp or ping_sweep",
            ));
        }
    };
    let after = match split_cursor(&s, &q.cursor)? {
        None => None,
        Some((t, id)) => Some((t, id.parse::<i64>().map_err(|_| cursor_err(&s))?)),
    };
    let limit = limit_of(&s, q.limit)?;
    let rows = s
        .repo
        .list_scans(
            ip_of(&s, "attacker", &q.attacker)?,
            kind,
            time_of(&s, "since", &q.since)?,
            after,
            limit,
        )
        .await?;
    let next = (rows.len() == limit as usize)
        .then(|| rows.last().map(|(id, r)| format!("{}.{id}", r.started_ns)))
        .flatten();
    Ok(Json2(Page {
        items: rows.iter().map(|(_, r)| ScanView::from(r)).collect(),
        next_cursor: next,
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TraversalQuery {
    /// Only this attacker's traversal.
    attacker: Option<String>,
    /// 1..=500, default 50.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    cursor: Option<String>,
}

/// Attackers that moved across two or more deckies, with their hops in time order (the
/// correlator's `traversals`), most recently active first.
#[utoipa::path(get, path = "/api/v1/traversals", tag = "viewer", security(("bearer" = [])),
    params(TraversalQuery), responses((status = 200, body = Page<TraversalView>), (status = 400)))]
async fn list_traversals(
    State(s): St,
    _v: Viewer,
    Query(q): Query<TraversalQuery>,
) -> ApiResult<Json2<Page<TraversalView>>> {
    let after = match split_cursor(&s, &q.cursor)? {
        None => None,
        Some((t, ip)) => Some((t, ip.parse().map_err(|_| cursor_err(&s))?)),
    };
    let limit = limit_of(&s, q.limit)?;
    let rows = s
        .repo
        .list_traversals(ip_of(&s, "attacker", &q.attacker)?, after, limit)
        .await?;
    let next = (rows.len() == limit as usize)
        .then(|| {
            rows.last()
                .map(|r| format!("{}.{}", r.last_seen_ns, r.attacker_ip))
        })
        .flatten();
    Ok(Json2(Page {
        items: rows.iter().map(TraversalView::from).collect(),
        next_cursor: next,
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PivotQuery {
    /// Only pivots from or to this decky.
    decky: Option<String>,
    /// 1..=500, default 50.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    cursor: Option<String>,
}

/// Deckies that opened connections to other deckies (the correlator's `pivots`), most recent
/// first.
#[utoipa::path(get, path = "/api/v1/pivots", tag = "viewer", security(("bearer" = [])),
    params(PivotQuery), responses((status = 200, body = Page<PivotView>), (status = 400)))]
async fn list_pivots(
    State(s): St,
    _v: Viewer,
    Query(q): Query<PivotQuery>,
) -> ApiResult<Json2<Page<PivotView>>> {
    let after = match split_cursor(&s, &q.cursor)? {
        None => None,
        Some((t, rest)) => {
            let mut it = rest.splitn(4, '.');
            let mut next = || it.next().ok_or_else(|| cursor_err(&s));
            let port: u16 = next()?.parse().map_err(|_| cursor_err(&s))?;
            let proto: u8 = next()?.parse().map_err(|_| cursor_err(&s))?;
            let text = |h: &str| {
                unhex(h)
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(|| cursor_err(&s))
            };
            let src = text(next()?)?;
            let dst = text(next()?)?;
            Some((t, src, dst, port, proto))
        }
    };
    let limit = limit_of(&s, q.limit)?;
    let decky = name_of(&s, "decky", q.decky)?;
    let rows = s.repo.list_pivots(decky.as_deref(), after, limit).await?;
    let next = (rows.len() == limit as usize)
        .then(|| {
            rows.last().map(|p| {
                format!(
                    "{}.{}.{}.{}.{}",
                    p.last_seen_ns,
                    p.dst_port,
                    p.proto,
                    crate::views::hex(p.src_decky.as_bytes()),
                    crate::views::hex(p.dst_decky.as_bytes())
                )
            })
        })
        .flatten();
    Ok(Json2(Page {
        items: rows.iter().map(PivotView::from).collect(),
        next_cursor: next,
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReuseQuery {
    /// 1..=500, default 50.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    cursor: Option<String>,
}

/// Secrets tried against two or more (decky, service) targets (the correlator's
/// `credential_reuse`), most recent first.
#[utoipa::path(get, path = "/api/v1/credential-reuse", tag = "viewer", security(("bearer" = [])),
    params(ReuseQuery), responses((status = 200, body = Page<CredentialReuseView>), (status = 400)))]
async fn list_credential_reuse(
    State(s): St,
    _v: Viewer,
    Query(q): Query<ReuseQuery>,
) -> ApiResult<Json2<Page<CredentialReuseView>>> {
    let after = match split_cursor(&s, &q.cursor)? {
        None => None,
        Some((t, h)) => {
            let h: [u8; 32] = unhex(h)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| cursor_err(&s))?;
            Some((t, h))
        }
    };
    let limit = limit_of(&s, q.limit)?;
    let rows = s.repo.list_credential_reuse(after, limit).await?;
    let next = (rows.len() == limit as usize)
        .then(|| {
            rows.last()
                .map(|r| format!("{}.{}", r.last_seen_ns, crate::views::hex(&r.secret_hash)))
        })
        .flatten();
    Ok(Json2(Page {
        items: rows.iter().map(CredentialReuseView::from).collect(),
        next_cursor: next,
    }))
}

/// The decoy fleet: each decky with its services, status and activity in the last 24 h.
#[utoipa::path(get, path = "/api/v1/deckies", tag = "viewer", security(("bearer" = [])),
    responses((status = 200, body = DeckiesResponse)))]
async fn list_deckies(State(s): St, _v: Viewer) -> ApiResult<Json2<DeckiesResponse>> {
    let deckies = s.repo.deckies().await?;
    let activity = s
        .repo
        .decky_activity(now_ns() - 86_400 * 1_000_000_000)
        .await?;
    let mut out: Vec<DeckyView> = deckies.iter().map(DeckyView::new).collect();
    for a in activity {
        let v = match out.iter_mut().find(|d| d.name == a.decky) {
            Some(v) => v,
            None => {
                out.push(DeckyView {
                    name: a.decky.clone(),
                    ip: String::new(),
                    hostname: String::new(),
                    os_family: String::new(),
                    archetype: String::new(),
                    status: "unrecorded".into(),
                    services: Vec::new(),
                    events_24h: 0,
                    attackers_24h: 0,
                    last_event: None,
                });
                out.last_mut()
                    .ok_or_else(|| ApiError::internal("empty list"))?
            }
        };
        v.events_24h = a.events;
        v.attackers_24h = a.attackers;
        v.last_event = a.last_event_ns.map(ts);
    }
    Ok(Json2(DeckiesResponse { items: out }))
}

#[derive(Serialize, ToSchema)]
pub struct DeckiesResponse {
    items: Vec<DeckyView>,
}

#[derive(Deserialize, ToSchema)]
pub struct DeckyActionBody {
    /// `mutate` (rotate the services now), `rotate_services` (the same), `restart` (a new
    /// process for the decky) or `set_mutate_interval` (with `interval`). `decnet mutate`
    /// carries it out; the request is `pending`, then `applied` or `failed` with the reason
    /// (`GET` on the same path).
    action: String,
    /// For `set_mutate_interval`: `30m`, `12h`, `7d`, … or `off`.
    #[serde(default)]
    interval: Option<String>,
}

/// The actions `decnet mutate` carries out.
const DECKY_ACTIONS: [&str; 4] = [
    "mutate",
    "rotate_services",
    "restart",
    "set_mutate_interval",
];

/// Queue an action on a decky (admin); `decnet mutate` carries it out.
#[utoipa::path(post, path = "/api/v1/deckies/{name}/actions", tag = "admin", security(("bearer" = [])),
    params(("name" = String, Path, description = "Decky name")), request_body = DeckyActionBody,
    responses((status = 202), (status = 400), (status = 404)))]
async fn decky_action(
    State(s): St,
    Admin(c): Admin,
    Path(name): Path<String>,
    Json(b): Json<DeckyActionBody>,
) -> ApiResult<(StatusCode, Json2<Value>)> {
    if !DECKY_ACTIONS.contains(&b.action.as_str()) {
        return Err(bad(
            &s,
            format!("action: one of {}", DECKY_ACTIONS.join(", ")),
        ));
    }
    let args = match (b.action.as_str(), b.interval.as_deref()) {
        ("set_mutate_interval", None) => {
            return Err(bad(
                &s,
                "interval: required for set_mutate_interval (e.g. 30m, 12h, 7d, off)",
            ));
        }
        ("set_mutate_interval", Some(i)) if i.len() > 16 => {
            return Err(bad(&s, "interval: e.g. 30m, 12h, 7d, off"));
        }
        (_, Some(i)) => json!({ "interval": i }),
        (_, None) => json!({}),
    };
    if !s.repo.deckies().await?.iter().any(|d| d.name == name) {
        return Err(ApiError::not_found("no such decky"));
    }
    let id = s
        .repo
        .request_mutation(&name, &b.action, &args.to_string(), &c.sub)
        .await?;
    tracing::info!(decky = %name, user = %c.sub, request = id, "decky {} requested", b.action);
    Ok((
        StatusCode::ACCEPTED,
        Json2(json!({"id": id, "decky": name, "action": b.action, "status": "pending"})),
    ))
}

/// The actions queued on a decky, newest first, with their state: `pending`, `claimed`,
/// `applied` or `failed` (with the reason).
#[utoipa::path(get, path = "/api/v1/deckies/{name}/actions", tag = "viewer", security(("bearer" = [])),
    params(("name" = String, Path, description = "Decky name")), responses((status = 200)))]
async fn decky_actions(
    State(s): St,
    _v: Viewer,
    Path(name): Path<String>,
) -> ApiResult<Json2<Value>> {
    let items: Vec<Value> = s
        .repo
        .mutation_requests(&name, 100)
        .await?
        .into_iter()
        .map(|r| {
            json!({
                "id": r.id, "action": r.action,
                "args": serde_json::from_str::<Value>(&r.args).unwrap_or(Value::Null),
                "requested_by": r.requested_by, "requested_at": ts(r.requested_ns),
                "status": r.status, "reason": r.reason, "updated_at": ts(r.updated_ns),
            })
        })
        .collect();
    let mutations: Vec<Value> = s
        .repo
        .mutations(&name)
        .await?
        .into_iter()
        .rev()
        .take(100)
        .map(|m| {
            json!({
                "ts": ts(m.ts_ns), "cause": m.kind, "status": m.status,
                "detail": serde_json::from_str::<Value>(&m.detail).unwrap_or(Value::Null),
            })
        })
        .collect();
    Ok(Json2(json!({ "items": items, "mutations": mutations })))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatsQuery {
    /// `1h` (minute buckets), `24h` (default, hour buckets) or `7d` (day buckets).
    #[param(pattern = "^(1h|24h|7d)$")]
    window: Option<String>,
}

/// Counts, top attackers/services/deckies and the event histogram (cached for 5 s).
#[utoipa::path(get, path = "/api/v1/stats", tag = "viewer", security(("bearer" = [])),
    params(StatsQuery), responses((status = 200, body = serde_json::Value), (status = 400)))]
async fn stats(State(s): St, _v: Viewer, Query(q): Query<StatsQuery>) -> ApiResult<Json2<Value>> {
    let (window, secs, bucket) = match q.window.as_deref().unwrap_or("24h") {
        "1h" => ("1h", 3600, Bucket::Minute),
        "24h" => ("24h", 86_400, Bucket::Hour),
        "7d" => ("7d", 7 * 86_400, Bucket::Day),
        _ => return Err(bad(&s, "window: 1h, 24h or 7d")),
    };
    let mut cache = s.stats_cache.lock().await;
    if let Some((at, v)) = cache.get(window)
        && at.elapsed() < Duration::from_secs(5)
    {
        let mut v = v.clone();
        v["live"] = live(&s);
        return Ok(Json2(v));
    }
    let since = now_ns() - secs * 1_000_000_000;
    let counts = s.repo.counts().await?;
    let top = s
        .repo
        .list_attackers(&AttackerFilter {
            sort: AttackerSort::Events,
            limit: 10,
            ..Default::default()
        })
        .await?;
    let services = s
        .repo
        .top_event_values(TopColumn::Service, since, 10)
        .await?;
    let deckies = s.repo.top_event_values(TopColumn::Decky, since, 10).await?;
    let types = s
        .repo
        .top_event_values(TopColumn::EventType, since, 10)
        .await?;
    let hist = s.repo.event_histogram(since, bucket).await?;
    let sessions = s
        .repo
        .list_sessions(&SessionFilter {
            limit: 10,
            ..Default::default()
        })
        .await?;
    let mut v = json!({
        "window": window,
        "counts": counts,
        "top_attackers": top.iter().map(AttackerView::from).collect::<Vec<_>>(),
        "top_services": services,
        "top_deckies": deckies,
        "top_event_types": types,
        "histogram": hist,
        "recent_sessions": sessions.iter().map(SessionView::from).collect::<Vec<_>>(),
    });
    cache.insert(window.to_owned(), (std::time::Instant::now(), v.clone()));
    v["live"] = live(&s);
    Ok(Json2(v))
}

fn live(s: &AppState) -> Value {
    json!({
        "stream_clients": s.hub.clients.load(Ordering::Relaxed),
        "last_event_id": s.hub.last_event_id.load(Ordering::Relaxed),
    })
}

#[derive(Serialize, ToSchema)]
pub struct CounterView {
    worker: String,
    host: String,
    name: String,
    value: i64,
}

#[derive(Serialize, ToSchema)]
pub struct WorkersResponse {
    leases: Vec<LeaseView>,
    counters: Vec<CounterView>,
}

/// Worker leases (who runs, heartbeat age) and the workers' counters.
#[utoipa::path(get, path = "/api/v1/workers", tag = "viewer", security(("bearer" = [])),
    responses((status = 200, body = WorkersResponse)))]
async fn workers(State(s): St, _v: Viewer) -> ApiResult<Json2<WorkersResponse>> {
    let leases = lease_views(&s.repo.leases().await?);
    let counters = s
        .repo
        .counters()
        .await?
        .into_iter()
        .map(|(worker, host, name, value)| CounterView {
            worker,
            host,
            name,
            value,
        })
        .collect();
    Ok(Json2(WorkersResponse { leases, counters }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// Resume after this event id (same as the Last-Event-ID header, which wins).
    #[param(minimum = 0)]
    last_event_id: Option<i64>,
}

/// The live feed (Server-Sent Events): `event`, `session` and `attacker` messages; resumable
/// with `Last-Event-ID`. A client that falls behind is sent `dropped` and disconnected.
#[utoipa::path(get, path = "/api/v1/stream", tag = "viewer", security(("bearer" = [])),
    params(StreamQuery), responses((status = 200, content_type = "text/event-stream"), (status = 503)))]
async fn stream(
    State(s): St,
    Viewer(c): Viewer,
    headers: HeaderMap,
    Query(q): Query<StreamQuery>,
) -> ApiResult<Response> {
    let resume = match headers.get("last-event-id") {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|v| v.trim().parse::<i64>().ok())
                .ok_or_else(|| bad(&s, "Last-Event-ID: not an event id"))?,
        ),
        None => match q.last_event_id {
            Some(n) if n < 0 => {
                return Err(unprocessable(&s, "last_event_id: must be 0 or more"));
            }
            v => v,
        },
    };
    let rt = s.runtime();
    if s.hub.clients.load(Ordering::Relaxed) >= rt.max_stream_clients {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many live-feed clients",
        ));
    }
    // One user may not hold every slot: at most max_stream_clients_per_user each.
    let slot = StreamSlot::take(&s.stream_users, &c.sub, rt.max_stream_clients_per_user)
        .ok_or_else(|| {
            too_many(
                "too many live-feed connections for this user: close one first",
                15,
            )
        })?;
    let st = futures::StreamExt::map(s.hub.subscribe(s.repo.clone(), resume), move |m| {
        let _held = &slot;
        m
    });
    Ok(Sse::new(st)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

/// One user's live-feed connection, counted while it lives.
struct StreamSlot {
    users: Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>,
    user: String,
}

impl StreamSlot {
    fn take(
        users: &Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>,
        user: &str,
        max: usize,
    ) -> Option<StreamSlot> {
        let key = username_key(user);
        let mut m = users.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(key.clone()).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(StreamSlot {
            users: users.clone(),
            user: key,
        })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut m = self.users.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&self.user) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.user);
            }
        }
    }
}

// --- admin ------------------------------------------------------------------------------------

/// Every user (admin).
#[utoipa::path(get, path = "/api/v1/users", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = UsersResponse)))]
async fn list_users(State(s): St, _a: Admin) -> ApiResult<Json2<UsersResponse>> {
    let users = s.repo.users().await?;
    Ok(Json2(UsersResponse {
        items: users
            .into_iter()
            .map(|u| UserView {
                id: u.id,
                username: u.username,
                role: u.role.as_str().into(),
                must_change_password: u.must_change_password,
            })
            .collect(),
    }))
}

#[derive(Serialize, ToSchema)]
pub struct UserView {
    id: i64,
    username: String,
    role: String,
    must_change_password: bool,
}

#[derive(Serialize, ToSchema)]
pub struct UsersResponse {
    items: Vec<UserView>,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedUser {
    username: String,
    role: String,
    must_change_password: bool,
    /// The generated password, shown this once (null when one was given).
    one_time_password: Option<String>,
}

#[derive(Deserialize, ToSchema)]
pub struct CreateUserBody {
    username: String,
    /// `admin` or `viewer`.
    role: String,
    /// Optional; generated (and returned once) when absent. Must be changed at first login
    /// either way.
    password: Option<String>,
}

fn role_of(s: &AppState, r: &str) -> ApiResult<Role> {
    match r {
        "admin" => Ok(Role::Admin),
        "viewer" => Ok(Role::Viewer),
        _ => Err(bad(s, "role: admin or viewer")),
    }
}

fn valid_username(u: &str) -> bool {
    !u.is_empty()
        && u.len() <= MAX_USERNAME
        && u.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
}

/// Create a user (admin).
#[utoipa::path(post, path = "/api/v1/users", tag = "admin", security(("bearer" = [])),
    request_body = CreateUserBody, responses((status = 201, body = CreatedUser), (status = 400), (status = 409)))]
async fn create_user(
    State(s): St,
    Admin(c): Admin,
    Json(b): Json<CreateUserBody>,
) -> ApiResult<(StatusCode, Json2<CreatedUser>)> {
    if !valid_username(&b.username) {
        return Err(bad(&s, "username: 1..=64 of A-Z a-z 0-9 . _ - @"));
    }
    let role = role_of(&s, &b.role)?;
    let (password, generated) = match b.password {
        Some(p) => {
            auth::password_policy(&b.username, &p).map_err(|e| bad(&s, e))?;
            (p, false)
        }
        None => (auth::generate_password(), true),
    };
    let pw = password.clone();
    let hash = tokio::task::spawn_blocking(move || auth::hash_password(&pw))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    if !s.repo.create_user(&b.username, &hash, role, true).await? {
        return Err(ApiError::new(StatusCode::CONFLICT, "the username is taken"));
    }
    tracing::info!(user = %b.username, role = role.as_str(), by = %c.sub, "user created");
    Ok((
        StatusCode::CREATED,
        Json2(CreatedUser {
            username: b.username,
            role: role.as_str().into(),
            must_change_password: true,
            one_time_password: generated.then_some(password),
        }),
    ))
}

#[derive(Deserialize, ToSchema)]
pub struct RoleBody {
    role: RoleName,
}

/// A role.
#[derive(Deserialize, Serialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub enum RoleName {
    Admin,
    Viewer,
}

#[derive(Serialize, ToSchema)]
pub struct RoleResponse {
    username: String,
    role: String,
    /// False when the user already had the role (nothing changed, no token revoked).
    changed: bool,
}

#[derive(Serialize, ToSchema)]
pub struct DeletedResponse {
    username: String,
    deleted: bool,
}

/// Delete a user (admin); its tokens are refused from then on. The last admin cannot be
/// deleted.
#[utoipa::path(delete, path = "/api/v1/users/{username}", tag = "admin", security(("bearer" = [])),
    params(("username" = String, Path)),
    responses((status = 200, body = DeletedResponse), (status = 404), (status = 409)))]
async fn delete_user(
    State(s): St,
    Admin(c): Admin,
    Path(username): Path<String>,
) -> ApiResult<Json2<DeletedResponse>> {
    let users = s.repo.users().await?;
    let key = username_key(&username);
    let Some(u) = users.iter().find(|u| username_key(&u.username) == key) else {
        return Err(ApiError::not_found("no such user"));
    };
    if u.role == Role::Admin && users.iter().filter(|u| u.role == Role::Admin).count() == 1 {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "cannot delete the last admin",
        ));
    }
    let deleted = s.repo.delete_user(&u.username).await?;
    s.forget_user(&u.username);
    tracing::info!(user = %u.username, by = %c.sub, "user deleted");
    Ok(Json2(DeletedResponse {
        username: u.username.clone(),
        deleted,
    }))
}

/// Change a user's role (admin). The last admin cannot be demoted.
#[utoipa::path(put, path = "/api/v1/users/{username}/role", tag = "admin", security(("bearer" = [])),
    params(("username" = String, Path)), request_body = RoleBody,
    responses((status = 200, body = RoleResponse), (status = 400), (status = 404), (status = 409)))]
async fn set_role(
    State(s): St,
    Admin(c): Admin,
    Path(username): Path<String>,
    Json(b): Json<RoleBody>,
) -> ApiResult<Json2<RoleResponse>> {
    let role = match b.role {
        RoleName::Admin => Role::Admin,
        RoleName::Viewer => Role::Viewer,
    };
    let users = s.repo.users().await?;
    let key = username_key(&username);
    let Some(u) = users.iter().find(|u| username_key(&u.username) == key) else {
        return Err(ApiError::not_found("no such user"));
    };
    if u.role == role {
        // Nothing changes, so nobody's tokens are revoked (the caller's included).
        return Ok(Json2(RoleResponse {
            username: u.username.clone(),
            role: role.as_str().into(),
            changed: false,
        }));
    }
    if u.role == Role::Admin && users.iter().filter(|u| u.role == Role::Admin).count() == 1 {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "cannot demote the last admin",
        ));
    }
    let changed = s.repo.set_role(&u.username, role).await?;
    s.forget_user(&u.username);
    tracing::info!(user = %u.username, role = role.as_str(), by = %c.sub, "role changed");
    Ok(Json2(RoleResponse {
        username: u.username.clone(),
        role: role.as_str().into(),
        changed,
    }))
}

/// Reset a user's password to a generated one-time password (admin); returned once.
#[utoipa::path(post, path = "/api/v1/users/{username}/password", tag = "admin", security(("bearer" = [])),
    params(("username" = String, Path)), responses((status = 200, body = CreatedUser), (status = 404)))]
async fn reset_password(
    State(s): St,
    Admin(c): Admin,
    Path(username): Path<String>,
) -> ApiResult<Json2<CreatedUser>> {
    let password = auth::generate_password();
    let pw = password.clone();
    let hash = tokio::task::spawn_blocking(move || auth::hash_password(&pw))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    if !s.repo.set_password(&username, &hash, true).await? {
        return Err(ApiError::not_found("no such user"));
    }
    s.forget_user(&username);
    tracing::info!(user = %username, by = %c.sub, "password reset");
    let role = s
        .repo
        .user(&username)
        .await?
        .map(|u| u.role.as_str().to_owned())
        .unwrap_or_default();
    Ok(Json2(CreatedUser {
        username,
        role,
        must_change_password: true,
        one_time_password: Some(password),
    }))
}

/// Runtime settings (admin).
#[utoipa::path(get, path = "/api/v1/config", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = RuntimeConfig)))]
async fn get_config(State(s): St, _a: Admin) -> Json2<RuntimeConfig> {
    Json2(s.runtime())
}

/// Change runtime settings (admin): token lifetime, login limit, live-feed poll interval and
/// client limit.
#[utoipa::path(put, path = "/api/v1/config", tag = "admin", security(("bearer" = [])),
    request_body = RuntimeConfig, responses((status = 200, body = RuntimeConfig), (status = 400)))]
async fn put_config(
    State(s): St,
    Admin(c): Admin,
    Json(b): Json<RuntimeConfig>,
) -> ApiResult<Json2<RuntimeConfig>> {
    if !(60..=7 * 86_400).contains(&b.token_lifetime_secs) {
        return Err(unprocessable(&s, "token_lifetime_secs: 60..=604800"));
    }
    if !(1..=10_000).contains(&b.login_max_attempts) || !(1..=86_400).contains(&b.login_window_secs)
    {
        return Err(unprocessable(
            &s,
            "login_max_attempts: 1..=10000, login_window_secs: 1..=86400",
        ));
    }
    if !(50..=60_000).contains(&b.stream_poll_ms)
        || !(1..=10_000).contains(&b.max_stream_clients)
        || !(1..=10_000).contains(&b.max_stream_clients_per_user)
    {
        return Err(unprocessable(
            &s,
            "stream_poll_ms: 50..=60000, max_stream_clients and max_stream_clients_per_user: 1..=10000",
        ));
    }
    if !(1..=1_000_000).contains(&b.login_global_max) {
        return Err(unprocessable(&s, "login_global_max: 1..=1000000"));
    }
    s.hub.poll_ms.store(b.stream_poll_ms, Ordering::Relaxed);
    *s.runtime.write().unwrap_or_else(|p| p.into_inner()) = b.clone();
    tracing::info!(by = %c.sub, ?b, "runtime settings changed");
    Ok(Json2(b))
}

/// Prometheus metrics: requests, latency, live feed, and the workers' counters and leases from
/// the repository. Needs a viewer token or the static metrics token (`DECNET_METRICS_TOKEN`).
#[utoipa::path(get, path = "/metrics", tag = "viewer", security(("bearer" = [])),
    responses((status = 200, content_type = "text/plain")))]
async fn metrics(State(s): St, headers: HeaderMap) -> ApiResult<Response> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(sch, _)| sch.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim());
    let Some(token) = token else {
        return Err(ApiError::unauthorized("authentication required"));
    };
    let static_ok = s
        .metrics_token
        .as_deref()
        .is_some_and(|m| constant_time_eq(m.as_bytes(), token.as_bytes()));
    if !static_ok {
        let c = s
            .keys
            .verify(token)
            .ok_or_else(|| ApiError::unauthorized("invalid or expired token"))?;
        s.check_current(&c).await?;
        if c.mcp {
            return Err(ApiError::forbidden("password change required"));
        }
    }
    use std::fmt::Write as _;
    let mut out = String::new();
    s.metrics.render_requests(&mut out);
    let hub = &s.hub;
    let _ = writeln!(
        out,
        "# TYPE decnet_web_stream_clients gauge\ndecnet_web_stream_clients {}",
        hub.clients.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        out,
        "# TYPE decnet_web_stream_dropped_clients_total counter\ndecnet_web_stream_dropped_clients_total {}",
        hub.dropped_clients.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        out,
        "# TYPE decnet_web_stream_messages_total counter\ndecnet_web_stream_messages_total {}",
        hub.sent.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        out,
        "# TYPE decnet_web_stream_poll_errors_total counter\ndecnet_web_stream_poll_errors_total {}",
        hub.poll_errors.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        out,
        "# TYPE decnet_web_bad_requests_total counter\ndecnet_web_bad_requests_total {}",
        s.bad_requests.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        out,
        "# HELP decnet_worker_counter A worker's counter as recorded in the repository.\n# TYPE decnet_worker_counter gauge"
    );
    for (w, h, n, v) in s.repo.counters().await? {
        let _ = writeln!(
            out,
            "decnet_worker_counter{{worker=\"{}\",host=\"{}\",name=\"{}\"}} {v}",
            esc(&w),
            esc(&h),
            esc(&metric_name(&n))
        );
    }
    let now = now_ns();
    let _ = writeln!(
        out,
        "# HELP decnet_worker_heartbeat_age_seconds Seconds since a lease holder's last heartbeat.\n# TYPE decnet_worker_heartbeat_age_seconds gauge"
    );
    for l in s.repo.leases().await? {
        let _ = writeln!(
            out,
            "decnet_worker_heartbeat_age_seconds{{kind=\"{}\",host=\"{}\",pid=\"{}\"}} {}",
            esc(&l.kind),
            esc(&l.host),
            l.pid,
            (now - l.heartbeat_at_ns) as f64 / 1e9
        );
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
