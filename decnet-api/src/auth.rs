//! Authentication and authorisation: argon2id password hashes, HS256 JWTs with a configurable
//! lifetime, the roles `admin` and `viewer`, the first-login password change, and the login rate
//! limit (per client address and per username).
//!
//! Every API route takes one of the extractors [`Viewer`], [`Admin`] or [`Pending`]: no token →
//! 401; a token whose user must still change the password → 403 except on the routes that change
//! it ([`Pending`]); a viewer on an admin route → 403.
use std::{
    collections::{HashMap, VecDeque},
    net::IpAddr,
    path::Path,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use argon2::{
    Argon2,
    password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng},
};
use axum::{
    extract::FromRequestParts,
    http::{header, request::Parts},
};
use decnet_core::{Repository, model::Role, time_fmt::now_ns};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::{Rng as _, distributions::Alphanumeric};
use serde::{Deserialize, Serialize};

use crate::{AppState, error::ApiError};

/// The JWT secret's environment variable; at least [`MIN_SECRET`] bytes.
pub const JWT_SECRET_VAR: &str = "DECNET_JWT_SECRET";
/// The first admin's password (first start only).
pub const ADMIN_PASSWORD_VAR: &str = "DECNET_ADMIN_PASSWORD";
pub const MIN_SECRET: usize = 32;
/// Longest username and password accepted (bytes).
pub const MAX_USERNAME: usize = 64;
pub const MAX_PASSWORD: usize = 1024;
/// The longest token lifetime (seconds); a token claiming longer is refused.
pub const MAX_LIFETIME: i64 = 7 * 86_400;
/// How far in the future a token's `iat` may be (seconds) and still be accepted.
pub const CLOCK_SKEW: i64 = 60;

/// What a token says.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub role: String,
    /// Must change the password before anything else.
    pub mcp: bool,
    /// Issued at, Unix seconds.
    pub iat: i64,
    pub exp: i64,
    /// The user's token generation when it was issued (see `decnet_core::repo::users`).
    pub tgen: i64,
}

impl Claims {
    pub fn role(&self) -> Role {
        if self.role == "admin" {
            Role::Admin
        } else {
            Role::Viewer
        }
    }
}

pub struct Keys {
    enc: EncodingKey,
    dec: DecodingKey,
}

impl Keys {
    pub fn new(secret: &[u8]) -> Keys {
        Keys {
            enc: EncodingKey::from_secret(secret),
            dec: DecodingKey::from_secret(secret),
        }
    }

    pub fn issue(
        &self,
        user: &str,
        role: Role,
        mcp: bool,
        generation: i64,
        lifetime: Duration,
    ) -> Result<(String, i64), ApiError> {
        let iat = now_ns() / 1_000_000_000;
        let exp = iat + i64::try_from(lifetime.as_secs()).unwrap_or(3600).max(1);
        let claims = Claims {
            sub: user.to_owned(),
            role: role.as_str().to_owned(),
            mcp,
            iat,
            exp,
            tgen: generation,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.enc)
            .map_err(ApiError::internal)?;
        Ok((token, exp))
    }

    /// The claims of a token we signed that is valid now: not expired, not issued in the
    /// future (beyond [`CLOCK_SKEW`]) and not living longer than [`MAX_LIFETIME`].
    pub fn verify(&self, token: &str) -> Option<Claims> {
        let mut v = Validation::new(Algorithm::HS256);
        v.leeway = 0;
        v.set_required_spec_claims(&["exp", "sub", "iat"]);
        let c = jsonwebtoken::decode::<Claims>(token, &self.dec, &v)
            .ok()?
            .claims;
        let now = now_ns() / 1_000_000_000;
        let sane = c.iat <= now + CLOCK_SKEW
            && c.exp > c.iat
            && c.exp - c.iat <= MAX_LIFETIME
            && c.exp <= now + MAX_LIFETIME;
        sane.then_some(c)
    }
}

/// The JWT secret: `DECNET_JWT_SECRET` (≥ 32 bytes), else the one stored in `file`, else a new
/// random one written there with mode 0600.
pub fn load_or_create_secret(env: Option<&str>, file: &Path) -> anyhow::Result<Vec<u8>> {
    if let Some(s) = env {
        if s.len() < MIN_SECRET {
            bail!(
                "{JWT_SECRET_VAR} is {} bytes: it must be at least {MIN_SECRET} (e.g. `openssl rand -hex 32`), \
                 or unset it to have decnet generate one in {}",
                s.len(),
                file.display()
            );
        }
        return Ok(s.as_bytes().to_vec());
    }
    match std::fs::read(file) {
        Ok(b) => {
            let b: Vec<u8> = b.trim_ascii().to_vec();
            if b.len() < MIN_SECRET {
                bail!(
                    "the JWT secret in {} is shorter than {MIN_SECRET} bytes: remove the file to have a new one generated",
                    file.display()
                );
            }
            check_private(file)?;
            Ok(b)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            use std::io::Write as _;
            use std::os::unix::fs::OpenOptionsExt as _;
            let secret: String = rand::rngs::OsRng
                .sample_iter(&Alphanumeric)
                .take(64)
                .map(char::from)
                .collect();
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(file)
                .with_context(|| format!("cannot create the JWT secret file {}", file.display()))?;
            f.write_all(secret.as_bytes())
                .and_then(|()| f.sync_all())
                .with_context(|| format!("cannot write {}", file.display()))?;
            tracing::info!(file = %file.display(), "generated a JWT secret (mode 0600)");
            Ok(secret.into_bytes())
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", file.display())),
    }
}

fn check_private(file: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(file)?.permissions().mode();
    if mode & 0o077 != 0 {
        bail!(
            "the JWT secret file {} is readable by others (mode {:o}): chmod 600 it",
            file.display(),
            mode & 0o777
        );
    }
    Ok(())
}

/// Why a password is refused, or `Ok`.
pub fn password_policy(username: &str, password: &str) -> Result<(), String> {
    if password.len() > MAX_PASSWORD {
        return Err(format!("the password is longer than {MAX_PASSWORD} bytes"));
    }
    if password.chars().count() < 12 {
        return Err("the password must be at least 12 characters".into());
    }
    let classes = [
        password.chars().any(|c| c.is_lowercase()),
        password.chars().any(|c| c.is_uppercase()),
        password.chars().any(|c| c.is_ascii_digit()),
        password.chars().any(|c| !c.is_alphanumeric()),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if classes < 3 && password.chars().count() < 20 {
        return Err(
            "the password must mix at least three of: lower case, upper case, digits, symbols \
             (or be at least 20 characters)"
                .into(),
        );
    }
    let lower = password.to_lowercase();
    if !username.is_empty() && lower.contains(&username.to_lowercase()) {
        return Err("the password must not contain the username".into());
    }
    const COMMON: [&str; 8] = [
        "password", "changeme", "123456", "qwerty", "letmein", "admin", "decnet", "welcome",
    ];
    if COMMON.iter().any(|c| lower.contains(c)) {
        return Err("the password contains a common word (password, admin, 123456, …)".into());
    }
    Ok(())
}

/// A random password that passes [`password_policy`].
pub fn generate_password() -> String {
    loop {
        let p: String = rand::rngs::OsRng
            .sample_iter(&Alphanumeric)
            .take(20)
            .map(char::from)
            .collect();
        let p = format!("{p}-{}", rand::rngs::OsRng.gen_range(10..100));
        if password_policy("", &p).is_ok() {
            return p;
        }
    }
}

pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("cannot hash the password: {e}"))
}

pub fn verify_password(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(h) => Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok(),
        Err(_) => false,
    }
}

/// A hash to verify against when the user does not exist, so that both cases cost the same.
pub fn dummy_hash() -> String {
    hash_password("not-a-real-password-Xy1!").unwrap_or_default()
}

/// Creates the first admin when there are no users: with `DECNET_ADMIN_PASSWORD` if set (weak
/// values are refused), else a generated one-time password, returned so the caller prints it
/// once. Either way it must be changed at first login. `Ok(None)` when users exist.
pub async fn bootstrap_admin(
    repo: &Repository,
    username: &str,
    password: Option<&str>,
) -> anyhow::Result<Option<String>> {
    if repo.user_count().await? > 0 {
        return Ok(None);
    }
    let (password, generated) = match password {
        Some(p) => {
            if let Err(why) = password_policy(username, p) {
                bail!(
                    "{ADMIN_PASSWORD_VAR} is too weak: {why}. Choose a stronger one, or unset it to have \
                     a one-time password generated and printed once"
                );
            }
            (p.to_owned(), false)
        }
        None => (generate_password(), true),
    };
    let hash = tokio::task::spawn_blocking(move || hash_password(&password).map(|h| (h, password)))
        .await
        .context("password hashing panicked")??;
    if !repo
        .create_user(username, &hash.0, Role::Admin, true)
        .await?
    {
        return Ok(None);
    }
    tracing::warn!(
        user = username,
        "created the first admin user; its password must be changed at first login"
    );
    Ok(generated.then_some(hash.1))
}

/// The login (and password-check) limiter. Only failed attempts count:
///
/// - per (client address, username): after `max` failures within `window` of each other, that
///   pair is refused for `window`, doubled for every further failure (capped at
///   [`LoginLimiter::MAX_BACKOFF`]); a success clears the pair. Nobody can lock a user out from
///   an address that is not theirs.
/// - globally: at most `global_max` failures within `window` across every pair (a distributed
///   guessing run); beyond that every attempt is refused until the window slides.
///
/// Memory is bounded: at most [`LoginLimiter::MAX_KEYS`] pairs (idle ones are pruned first;
/// beyond that new pairs are refused, which fails closed).
#[derive(Default)]
pub struct LoginLimiter {
    pairs: Mutex<HashMap<(IpAddr, String), Failures>>,
    global: Mutex<VecDeque<Instant>>,
}

struct Failures {
    count: u32,
    last: Instant,
    locked_until: Option<Instant>,
}

/// The limits a [`LoginLimiter`] applies.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max: u32,
    pub window: Duration,
    pub global_max: u32,
}

impl LoginLimiter {
    pub const MAX_KEYS: usize = 100_000;
    pub const MAX_BACKOFF: Duration = Duration::from_secs(86_400);

    /// `Err(seconds to wait)` if `(ip, user)` is locked or the global bound is reached. Counts
    /// nothing: report the outcome with [`LoginLimiter::failed`] or
    /// [`LoginLimiter::succeeded`].
    pub fn check(&self, ip: IpAddr, user: &str, l: Limits) -> Result<(), u64> {
        let now = Instant::now();
        {
            let m = self.pairs.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(f) = m.get(&(ip, user.to_owned()))
                && let Some(until) = f.locked_until
                && until > now
            {
                return Err(until.duration_since(now).as_secs() + 1);
            }
        }
        let mut g = self.global.lock().unwrap_or_else(|p| p.into_inner());
        while g
            .front()
            .is_some_and(|t| now.duration_since(*t) >= l.window)
        {
            g.pop_front();
        }
        if g.len() >= l.global_max as usize {
            let wait = g
                .front()
                .map(|t| l.window.saturating_sub(now.duration_since(*t)).as_secs() + 1)
                .unwrap_or(1);
            return Err(wait);
        }
        Ok(())
    }

    /// Records a failed attempt; returns the lock-out now in force (seconds), if any.
    pub fn failed(&self, ip: IpAddr, user: &str, l: Limits) -> Option<u64> {
        let now = Instant::now();
        {
            let mut g = self.global.lock().unwrap_or_else(|p| p.into_inner());
            while g
                .front()
                .is_some_and(|t| now.duration_since(*t) >= l.window)
            {
                g.pop_front();
            }
            if g.len() < l.global_max as usize {
                g.push_back(now);
            }
        }
        let mut m = self.pairs.lock().unwrap_or_else(|p| p.into_inner());
        let key = (ip, user.to_owned());
        if !m.contains_key(&key) && m.len() >= Self::MAX_KEYS {
            m.retain(|_, f| {
                f.locked_until.is_some_and(|u| u > now) || now.duration_since(f.last) < l.window
            });
            if m.len() >= Self::MAX_KEYS {
                return Some(l.window.as_secs().max(1));
            }
        }
        let f = m.entry(key).or_insert(Failures {
            count: 0,
            last: now,
            locked_until: None,
        });
        if now.duration_since(f.last) >= l.window && f.locked_until.is_none_or(|u| u <= now) {
            f.count = 0;
        }
        f.count = f.count.saturating_add(1);
        f.last = now;
        if f.count >= l.max {
            let doublings = (f.count - l.max).min(20);
            let lock = l
                .window
                .saturating_mul(1u32 << doublings)
                .min(Self::MAX_BACKOFF);
            f.locked_until = Some(now + lock);
            return Some(lock.as_secs().max(1));
        }
        None
    }

    /// A success: forgets the pair's failures.
    pub fn succeeded(&self, ip: IpAddr, user: &str) {
        self.pairs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(ip, user.to_owned()));
    }
}

/// The client's address: the peer's, or — when the peer is one of `trusted` proxies — the
/// right-most address in `X-Forwarded-For` that is not a trusted proxy (the left part of the
/// header is whatever the client wrote, so it is never believed).
pub fn client_ip(peer: IpAddr, headers: &axum::http::HeaderMap, trusted: &[IpAddr]) -> IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    let mut hops: Vec<IpAddr> = Vec::new();
    for v in headers.get_all("x-forwarded-for") {
        let Ok(v) = v.to_str() else {
            return peer;
        };
        for part in v.split(',') {
            match part.trim().parse::<IpAddr>() {
                Ok(ip) => hops.push(ip),
                // A hop we cannot read: stop believing the header at that point.
                Err(_) => hops.clear(),
            }
        }
    }
    hops.into_iter()
        .rev()
        .find(|ip| !trusted.contains(ip))
        .unwrap_or(peer)
}

/// Any authenticated user, including one who must still change the password.
#[derive(Debug, Clone)]
pub struct Pending(pub Claims);

/// An authenticated user (viewer or admin) whose password is not pending change.
#[derive(Debug, Clone)]
pub struct Viewer(pub Claims);

/// An authenticated admin.
#[derive(Debug, Clone)]
pub struct Admin(pub Claims);

fn bearer(parts: &Parts) -> Option<&str> {
    let v = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

impl FromRequestParts<Arc<AppState>> for Pending {
    type Rejection = ApiError;
    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        let token = bearer(parts).ok_or_else(|| {
            ApiError::unauthorized("authentication required: Authorization: Bearer <token>")
        })?;
        let claims = state
            .keys
            .verify(token)
            .ok_or_else(|| ApiError::unauthorized("invalid or expired token"))?;
        state.check_current(&claims).await?;
        Ok(Pending(claims))
    }
}

impl FromRequestParts<Arc<AppState>> for Viewer {
    type Rejection = ApiError;
    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        let Pending(c) = Pending::from_request_parts(parts, state).await?;
        if c.mcp {
            return Err(ApiError::forbidden(
                "password change required: POST /api/v1/auth/password first",
            ));
        }
        Ok(Viewer(c))
    }
}

impl FromRequestParts<Arc<AppState>> for Admin {
    type Rejection = ApiError;
    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        let Viewer(c) = Viewer::from_request_parts(parts, state).await?;
        if c.role() != Role::Admin {
            return Err(ApiError::forbidden("admin role required"));
        }
        Ok(Admin(c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_refuses_weak_passwords() {
        for weak in [
            "short1A!",
            "alllowercaseletters",
            "Password123!x",
            "admin-Admin-1234",
        ] {
            assert!(password_policy("admin", weak).is_err(), "{weak}");
        }
        assert!(password_policy("alice", "alice-Xy7!-longer").is_err());
        assert!(password_policy("admin", "Tr0ub4dor&3-horse").is_ok());
        assert!(password_policy("admin", &generate_password()).is_ok());
    }

    #[test]
    fn tokens_round_trip_and_expire() {
        let k = Keys::new(&[7u8; 32]);
        let (t, _) = k
            .issue("bob", Role::Viewer, false, 0, Duration::from_secs(60))
            .unwrap();
        let c = k.verify(&t).unwrap();
        assert_eq!(
            (c.sub.as_str(), c.role(), c.mcp),
            ("bob", Role::Viewer, false)
        );
        assert!(Keys::new(&[8u8; 32]).verify(&t).is_none(), "other secret");
        let mut tampered = t.clone();
        tampered.push('x');
        assert!(k.verify(&tampered).is_none());
    }

    #[test]
    fn limiter_counts_failures_per_address_and_user_with_backoff() {
        let l = LoginLimiter::default();
        let lim = Limits {
            max: 3,
            window: Duration::from_secs(60),
            global_max: 10,
        };
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        for _ in 0..10 {
            assert!(
                l.check(a, "alice", lim).is_ok(),
                "successes are not counted"
            );
            l.succeeded(a, "alice");
        }
        assert_eq!(l.failed(a, "alice", lim), None);
        assert_eq!(l.failed(a, "alice", lim), None);
        assert_eq!(
            l.failed(a, "alice", lim),
            Some(60),
            "third failure locks the pair"
        );
        assert!(l.check(a, "alice", lim).unwrap_err() >= 59);
        assert!(
            l.check(b, "alice", lim).is_ok(),
            "another address is not locked"
        );
        assert!(l.check(a, "bob", lim).is_ok(), "another user is not locked");
        assert_eq!(l.failed(a, "alice", lim), Some(120), "backoff doubles");
        assert_eq!(l.failed(a, "alice", lim), Some(240));
        // Global bound: 10 failures in the window across all pairs (5 so far).
        for i in 0..5 {
            l.failed(b, &format!("u{i}"), lim);
        }
        assert!(l.check(b, "carol", lim).is_err(), "global bound");
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        use axum::http::HeaderMap;
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "198.51.100.7".parse().unwrap();
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "6.6.6.6, 203.0.113.9".parse().unwrap());
        assert_eq!(client_ip(other, &h, &[proxy]), other, "untrusted peer");
        assert_eq!(
            client_ip(proxy, &h, &[proxy]),
            "203.0.113.9".parse::<IpAddr>().unwrap(),
            "right-most hop, not the client-written left part"
        );
        assert_eq!(client_ip(proxy, &HeaderMap::new(), &[proxy]), proxy);
    }

    #[test]
    fn far_future_tokens_are_refused() {
        let secret = [7u8; 32];
        let k = Keys::new(&secret);
        let now = now_ns() / 1_000_000_000;
        let forge = |iat: i64, exp: i64| {
            let c = Claims {
                sub: "bob".into(),
                role: "admin".into(),
                mcp: false,
                iat,
                exp,
                tgen: 0,
            };
            jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &c,
                &EncodingKey::from_secret(&secret),
            )
            .unwrap()
        };
        assert!(k.verify(&forge(now, now + 60)).is_some());
        assert!(
            k.verify(&forge(now, now + 100 * 365 * 86_400)).is_none(),
            "far-future exp"
        );
        assert!(
            k.verify(&forge(now + 86_400, now + 2 * 86_400)).is_none(),
            "future iat"
        );
        assert!(k.verify(&forge(now - 10, now - 1)).is_none(), "expired");
    }

    #[test]
    fn hashes_verify() {
        let h = hash_password("Tr0ub4dor&3-horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("Tr0ub4dor&3-horse", &h));
        assert!(!verify_password("wrong", &h));
        assert!(!verify_password("x", "not a hash"));
    }
}
