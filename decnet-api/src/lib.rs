//! decnet's REST API, authentication, live feed (SSE), Prometheus metrics and dashboard — the
//! library behind `decnet web`. It reads everything through `decnet_core::Repository` and is
//! never on the packet path.
//!
//! - [`auth`]: argon2id hashes, JWTs, roles (admin, viewer), first-login password change, login
//!   rate limit, the first admin.
//! - [`routes`]: the handlers under `/api/v1` (each documented for the OpenAPI document served
//!   at `/api/v1/openapi.json`) and `/metrics`.
//! - [`stream`]: the live feed (`/api/v1/stream`), resumable with `Last-Event-ID`.
//! - [`metrics`]: request counters and latency histograms.
//! - [`views`]: the JSON shapes.
//! - The dashboard: plain HTML/CSS/JS in `src/assets/`, compiled into the binary, served at `/`.
//!
//! Hardening: CORS is closed (no CORS headers: browsers refuse cross-origin reads); request
//! bodies are size-limited; every response carries a strict Content-Security-Policy (no inline
//! script) and `X-Content-Type-Options: nosniff`; errors are JSON with an id, never a trace.
#![forbid(unsafe_code)]

pub mod auth;
pub mod encode;
pub mod error;
pub mod metrics;
pub mod probes;
pub mod routes;
pub mod stream;
pub mod views;

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{Arc, OnceLock, RwLock},
    time::{Duration, Instant},
};

use axum::{
    Router,
    extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Request},
    http::{HeaderValue, StatusCode, header, request::Parts},
    middleware,
    response::{IntoResponse, Response},
    routing::get,
};
use decnet_core::{Repository, model::Role, repo::username_key};
use serde::de::DeserializeOwned;
use tokio::sync::Semaphore;

use crate::{
    auth::{Claims, Keys, Limits, LoginLimiter},
    error::ApiError,
    metrics::Metrics,
    stream::Hub,
};

/// Settings of the API server.
#[derive(Debug, Clone)]
pub struct WebConfig {
    /// How long a token is valid.
    pub token_lifetime: Duration,
    /// Failed logins per (client address, username) within `login_window` before that pair is
    /// locked out (for `login_window`, doubled by every further failure).
    pub login_max_attempts: u32,
    pub login_window: Duration,
    /// Failed logins within `login_window` across all addresses and users before every login
    /// is refused until the window slides.
    pub login_global_max: u32,
    /// Proxies whose `X-Forwarded-For` is believed (the client address of a login).
    pub trusted_proxies: Vec<IpAddr>,
    /// How often the live feed looks for new rows.
    pub stream_poll: Duration,
    /// Messages a live-feed client may fall behind before it is dropped.
    pub stream_buffer: usize,
    pub max_stream_clients: usize,
    /// Live-feed connections one user may hold.
    pub max_stream_clients_per_user: usize,
    /// Largest request body, bytes.
    pub max_body: usize,
    /// A static bearer token that may also read `/metrics` (for Prometheus).
    pub metrics_token: Option<String>,
    /// How long the first page of a listing (events, attackers) is served from memory; events
    /// pages are also dropped as soon as new events arrive. Zero disables.
    pub list_cache: Duration,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            token_lifetime: Duration::from_secs(3600),
            login_max_attempts: 10,
            login_window: Duration::from_secs(300),
            login_global_max: 1000,
            trusted_proxies: Vec::new(),
            stream_poll: Duration::from_millis(500),
            stream_buffer: 1024,
            max_stream_clients: 256,
            max_stream_clients_per_user: 8,
            max_body: 16 * 1024,
            metrics_token: None,
            list_cache: Duration::from_millis(1000),
        }
    }
}

/// Settings an admin may change at runtime (`PUT /api/v1/config`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct RuntimeConfig {
    #[schema(minimum = 60, maximum = 604800)]
    pub token_lifetime_secs: u64,
    /// Failed logins per (address, username) before a lock-out.
    #[schema(minimum = 1, maximum = 10000)]
    pub login_max_attempts: u32,
    #[schema(minimum = 1, maximum = 86400)]
    pub login_window_secs: u64,
    /// Failed logins across everyone in the window before all logins wait.
    #[serde(default = "default_global_max")]
    #[schema(minimum = 1, maximum = 1000000)]
    pub login_global_max: u32,
    #[schema(minimum = 50, maximum = 60000)]
    pub stream_poll_ms: u64,
    #[schema(minimum = 1, maximum = 10000)]
    pub max_stream_clients: usize,
    /// Live-feed connections one user may hold.
    #[serde(default = "default_per_user")]
    #[schema(minimum = 1, maximum = 10000)]
    pub max_stream_clients_per_user: usize,
}

fn default_global_max() -> u32 {
    WebConfig::default().login_global_max
}

fn default_per_user() -> usize {
    WebConfig::default().max_stream_clients_per_user
}

/// How long a user's token generation is remembered before it is read again (another `decnet
/// web` process's revocations take effect within this; this process's at once).
pub const USER_CACHE: Duration = Duration::from_secs(1);

/// What a token is checked against: (token generation, role, must change password).
type Current = Option<(i64, Role, bool)>;

/// Everything the handlers share.
pub struct AppState {
    pub repo: Repository,
    pub keys: Keys,
    /// Failed logins.
    pub limiter: LoginLimiter,
    /// Failed current-password checks of `POST /auth/password`.
    pub pw_limiter: LoginLimiter,
    pub trusted_proxies: Vec<IpAddr>,
    pub runtime: RwLock<RuntimeConfig>,
    /// Users' current token generations, by username key, read at most [`USER_CACHE`] ago.
    pub users: std::sync::Mutex<HashMap<String, (Instant, Current)>>,
    /// Live-feed connections per user.
    pub stream_users: Arc<std::sync::Mutex<HashMap<String, usize>>>,
    pub hub: Arc<Hub>,
    pub metrics: Metrics,
    /// argon2 runs at most this many at once (each takes ≈19 MiB and tens of ms).
    pub hash_slots: Semaphore,
    pub dummy_hash: String,
    pub stats_cache: tokio::sync::Mutex<HashMap<String, (Instant, serde_json::Value)>>,
    pub list_cache: ListCache,
    pub metrics_token: Option<String>,
    pub openapi: OnceLock<String>,
    pub started: Instant,
    pub bad_requests: std::sync::atomic::AtomicU64,
}

impl AppState {
    pub fn runtime(&self) -> RuntimeConfig {
        self.runtime
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn login_limits(&self) -> Limits {
        let rt = self.runtime();
        Limits {
            max: rt.login_max_attempts,
            window: Duration::from_secs(rt.login_window_secs),
            global_max: rt.login_global_max,
        }
    }

    /// `Ok` if the token's user still exists and its token generation, role and
    /// password-change flag are the ones the token was issued with (a password change or reset,
    /// a role change and deletion all revoke, persistently).
    pub async fn check_current(&self, c: &Claims) -> Result<(), ApiError> {
        let key = username_key(&c.sub);
        let cached = self
            .users
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .filter(|(at, _)| at.elapsed() < USER_CACHE)
            .map(|(_, v)| *v);
        let cur = match cached {
            Some(v) => v,
            None => {
                let v = self
                    .repo
                    .user(&c.sub)
                    .await?
                    .map(|u| (u.token_generation, u.role, u.must_change_password));
                let mut m = self.users.lock().unwrap_or_else(|p| p.into_inner());
                if m.len() >= 10_000 {
                    m.clear();
                }
                m.insert(key, (Instant::now(), v));
                v
            }
        };
        match cur {
            None => Err(ApiError::unauthorized("the token's user no longer exists")),
            Some((g, role, mcp)) if g != c.tgen || role != c.role() || mcp != c.mcp => {
                Err(ApiError::unauthorized("token revoked: log in again"))
            }
            Some(_) => Ok(()),
        }
    }

    /// Forgets what [`AppState::check_current`] remembers of `user` (after changing it).
    pub fn forget_user(&self, user: &str) {
        self.users
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&username_key(user));
    }
}

/// Serialised first pages of listings, by query, for a short time (`ttl`, and for events only
/// while no newer event exists: the `version`). When an entry goes stale, one request
/// recomputes it while the others are still served the previous body (no stampede of
/// identical queries). Bounded: at most [`ListCache::MAX`] entries (cleared when full).
pub struct ListCache {
    ttl: Duration,
    map: std::sync::Mutex<HashMap<String, CacheEntry>>,
}

struct CacheEntry {
    at: Instant,
    version: i64,
    body: axum::body::Bytes,
    refreshing: bool,
}

impl ListCache {
    pub const MAX: usize = 512;

    pub fn new(ttl: Duration) -> Self {
        ListCache {
            ttl,
            map: Default::default(),
        }
    }

    fn response(body: axum::body::Bytes) -> Response {
        ([(header::CONTENT_TYPE, "application/json")], body).into_response()
    }

    /// A cached body for `key` at data `version`, or `None`: the caller computes it and
    /// [`ListCache::put`]s it.
    pub fn get(&self, key: Option<&str>, version: i64) -> Option<Response> {
        let key = key.filter(|_| !self.ttl.is_zero())?;
        let mut m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let e = m.get_mut(key)?;
        let fresh = e.version == version && e.at.elapsed() < self.ttl;
        if fresh || (e.refreshing && e.at.elapsed() < self.ttl * 4) {
            return Some(Self::response(e.body.clone()));
        }
        e.refreshing = true;
        None
    }

    /// Serialises `v` (remembering it under `key` at `version`, if any) into a JSON response.
    pub fn put<T: serde::Serialize>(&self, key: Option<String>, version: i64, v: &T) -> Response {
        match serde_json::to_vec(v) {
            Ok(b) => self.put_body(key, version, b),
            Err(e) => ApiError::internal(e).into_response(),
        }
    }

    /// Like [`ListCache::put`] with the JSON body already written.
    pub fn put_body(&self, key: Option<String>, version: i64, body: Vec<u8>) -> Response {
        let body = axum::body::Bytes::from(body);
        if let Some(k) = key.filter(|_| !self.ttl.is_zero()) {
            let mut m = self.map.lock().unwrap_or_else(|p| p.into_inner());
            if m.len() >= Self::MAX && !m.contains_key(&k) {
                m.clear();
            }
            m.insert(
                k,
                CacheEntry {
                    at: Instant::now(),
                    version,
                    body: body.clone(),
                    refreshing: false,
                },
            );
        }
        Self::response(body)
    }
}

/// The assembled application: the router (with state), the OpenAPI document, the shared state.
pub struct Web {
    pub router: Router,
    pub openapi: utoipa::openapi::OpenApi,
    pub state: Arc<AppState>,
}

impl Web {
    /// Builds the app on `repo` and starts the live feed's poller.
    pub async fn new(repo: Repository, jwt_secret: &[u8], cfg: WebConfig) -> anyhow::Result<Web> {
        let hub = Hub::new(cfg.stream_buffer, cfg.stream_poll);
        hub.start(repo.clone()).await;
        let dummy_hash = tokio::task::spawn_blocking(auth::dummy_hash).await?;
        let state = Arc::new(AppState {
            repo,
            keys: Keys::new(jwt_secret),
            limiter: LoginLimiter::default(),
            pw_limiter: LoginLimiter::default(),
            trusted_proxies: cfg.trusted_proxies.clone(),
            runtime: RwLock::new(RuntimeConfig {
                token_lifetime_secs: cfg.token_lifetime.as_secs().max(1),
                login_max_attempts: cfg.login_max_attempts.max(1),
                login_window_secs: cfg.login_window.as_secs().max(1),
                login_global_max: cfg.login_global_max.max(1),
                stream_poll_ms: u64::try_from(cfg.stream_poll.as_millis()).unwrap_or(500),
                max_stream_clients: cfg.max_stream_clients,
                max_stream_clients_per_user: cfg.max_stream_clients_per_user.max(1),
            }),
            users: Default::default(),
            stream_users: Default::default(),
            hub,
            metrics: Metrics::default(),
            hash_slots: Semaphore::new(2),
            dummy_hash,
            stats_cache: tokio::sync::Mutex::new(HashMap::new()),
            list_cache: ListCache::new(cfg.list_cache),
            metrics_token: cfg.metrics_token.clone(),
            openapi: OnceLock::new(),
            started: Instant::now(),
            bad_requests: Default::default(),
        });
        let (api, mut openapi) = routes::router().split_for_parts();
        // Error responses are declared over the assembled paths (the routes are merged after
        // the document's own modifiers ran).
        routes::declare_errors(&mut openapi);
        let _ = state
            .openapi
            .set(openapi.to_json().unwrap_or_else(|_| "{}".into()));
        let router = api
            .route("/api/v1/openapi.json", get(routes::openapi_json))
            .route("/", get(assets::index))
            .route("/index.html", get(assets::index))
            .route("/app.js", get(assets::app_js))
            .route("/style.css", get(assets::style_css))
            .route("/favicon.ico", get(assets::favicon))
            .route_layer(middleware::from_fn_with_state(
                state.clone(),
                metrics::track,
            ))
            .fallback(not_found)
            .layer(DefaultBodyLimit::max(cfg.max_body))
            .layer(middleware::map_response(security_headers))
            .with_state(state.clone());
        Ok(Web {
            router,
            openapi,
            state,
        })
    }

    /// Serves on `listener` until `shutdown` resolves; then stops the live feed.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let hub = self.state.hub.clone();
        axum::serve(
            listener,
            self.router
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            shutdown.await;
            // Live-feed streams never end on their own: end them, or graceful shutdown would
            // wait for them forever.
            hub.shutdown();
        })
        .await
    }
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

async fn security_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

/// `axum::Json` whose rejections are [`ApiError`]s (400/413/415 with an id).
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Json(v)),
            Err(e) => Err(ApiError::new(e.status(), e.body_text())),
        }
    }
}

/// `axum::extract::Query` whose rejections are [`ApiError`]s.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Query(v)),
            // A parameter that does not fit its schema (type or range, e.g. `limit=-1`,
            // `dst_port=70000`): 422 with axum's message naming the parameter.
            Err(e) => Err(ApiError::unprocessable(e.body_text())),
        }
    }
}

/// `axum::extract::Path` whose rejections are [`ApiError`]s.
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Path(v)),
            Err(e) => Err(ApiError::bad_request(e.body_text())),
        }
    }
}

mod assets {
    use super::*;

    const INDEX: &str = include_str!("assets/index.html");
    const APP_JS: &str = include_str!("assets/app.js");
    const STYLE: &str = include_str!("assets/style.css");

    fn asset(body: &'static str, ctype: &'static str) -> Response {
        (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, ctype),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            body,
        )
            .into_response()
    }

    pub async fn index() -> Response {
        asset(INDEX, "text/html; charset=utf-8")
    }
    pub async fn app_js() -> Response {
        asset(APP_JS, "text/javascript; charset=utf-8")
    }
    pub async fn style_css() -> Response {
        asset(STYLE, "text/css; charset=utf-8")
    }
    pub async fn favicon() -> StatusCode {
        StatusCode::NO_CONTENT
    }
}
