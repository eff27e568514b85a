//! The security findings of issue 18, each against a real `decnet web` app on loopback: token
//! revocation that survives a restart (a demoted admin), deleted users, far-future tokens, the
//! login limiter (failures only, per address and user with backoff, a global bound, trusted
//! proxies), the current-password check's limit, case-insensitive usernames (and the migration
//! of existing rows), the live feed's per-user bound, `WWW-Authenticate`, 422 on out-of-range
//! parameters; and the correlator tables the API serves (scans, traversals, pivots, credential
//! reuse).
mod support;

use std::time::Duration;

use decnet_api::WebConfig;
use decnet_core::{model::Role, time_fmt::now_ns};
use serde_json::{Value, json};
use support::{ADMIN, Server, VIEWER, common::Backend, test_config};

use crate::support::common;

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-test";

async fn add_user(s: &Server, name: &str, pass: &str, role: Role) {
    let h = decnet_api::auth::hash_password(pass).unwrap();
    assert!(s.repo.create_user(name, &h, role, false).await.unwrap());
}

/// (status, WWW-Authenticate, body) of an authenticated GET.
async fn get_full(s: &Server, path: &str, token: Option<&str>) -> (u16, Option<String>, Value) {
    let mut rq = s.http.get(format!("{}{path}", s.url));
    if let Some(t) = token {
        rq = rq.bearer_auth(t);
    }
    let r = rq.send().await.unwrap();
    let www = r
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    (
        r.status().as_u16(),
        www,
        r.json().await.unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_survives_a_restart_and_a_no_op_role_change_revokes_nothing() {
    let cfg = test_config();
    let s = Server::start(Backend::Sqlite, "sec_restart", cfg.clone()).await;
    add_user(&s, "bob", "B0b-Admin-Passw0rd!", Role::Admin).await;
    let bob = s.login("bob", "B0b-Admin-Passw0rd!").await;
    assert_eq!(s.get("/api/v1/users", Some(&bob)).await.0, 200);

    // A no-op role change (alice is already an admin) keeps alice's token.
    let (st, r) = s
        .send(
            "PUT",
            "/api/v1/users/alice/role",
            Some(&s.admin),
            Some(json!({"role": "admin"})),
        )
        .await;
    assert_eq!((st, r["changed"].as_bool()), (200, Some(false)), "{r}");
    assert_eq!(s.get("/api/v1/users", Some(&s.admin)).await.0, 200);

    // Demote bob: his token is refused at once...
    let (st, r) = s
        .send(
            "PUT",
            "/api/v1/users/BOB/role",
            Some(&s.admin),
            Some(json!({"role": "viewer"})),
        )
        .await;
    assert_eq!((st, r["changed"].as_bool()), (200, Some(true)), "{r}");
    let (st, www, e) = get_full(&s, "/api/v1/users", Some(&bob)).await;
    assert_eq!(st, 401, "{e}");
    assert_eq!(www.as_deref(), Some("Bearer realm=\"decnet\""));
    // ...and after `decnet web` restarts (nothing of the old process's memory is left).
    let s = s.restart(cfg).await;
    let (st, _, e) = get_full(&s, "/api/v1/users", Some(&bob)).await;
    assert_eq!(st, 401, "a demoted admin's old token after a restart: {e}");
    assert_eq!(s.get("/api/v1/auth/me", Some(&bob)).await.0, 401);
    let bob2 = s.login("bob", "B0b-Admin-Passw0rd!").await;
    assert_eq!(
        s.get("/api/v1/users", Some(&bob2)).await.0,
        403,
        "a viewer now"
    );
    assert_eq!(s.get("/api/v1/events", Some(&bob2)).await.0, 200);

    // A password reset revokes too, across a restart.
    let (st, _) = s
        .send("POST", "/api/v1/users/bob/password", Some(&s.admin), None)
        .await;
    assert_eq!(st, 200);
    let s = s.restart(test_config()).await;
    assert_eq!(s.get("/api/v1/events", Some(&bob2)).await.0, 401);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_of_deleted_users_and_far_future_tokens_are_refused() {
    let s = Server::start(Backend::Sqlite, "sec_deleted", test_config()).await;
    add_user(&s, "carol", "C4rol-Viewer-Passw0rd!", Role::Viewer).await;
    let carol = s.login("carol", "C4rol-Viewer-Passw0rd!").await;
    assert_eq!(s.get("/api/v1/events", Some(&carol)).await.0, 200);
    let (st, r) = s
        .send("DELETE", "/api/v1/users/carol", Some(&s.admin), None)
        .await;
    assert_eq!((st, r["deleted"].as_bool()), (200, Some(true)), "{r}");
    let (st, www, e) = get_full(&s, "/api/v1/events", Some(&carol)).await;
    assert_eq!(st, 401, "{e}");
    assert!(www.is_some());
    // Created again under the same name: the old token stays refused.
    add_user(&s, "carol", "C4rol-Viewer-Passw0rd!", Role::Viewer).await;
    assert_eq!(s.get("/api/v1/events", Some(&carol)).await.0, 401);
    // The last admin cannot be deleted (alice is the only one).
    let (st, _) = s
        .send("DELETE", "/api/v1/users/alice", Some(&s.admin), None)
        .await;
    assert_eq!(st, 409);

    // Tokens signed with the right secret but claiming a far-future life: refused. The same
    // forgery with a sane lifetime is accepted, so it is the times that are refused.
    let generation = s
        .repo
        .user("victor")
        .await
        .unwrap()
        .unwrap()
        .token_generation;
    let now = now_ns() / 1_000_000_000;
    let forge = |iat: i64, exp: i64| {
        let c = decnet_api::auth::Claims {
            sub: "victor".into(),
            role: "viewer".into(),
            mcp: false,
            iat,
            exp,
            tgen: generation,
        };
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &c,
            &jsonwebtoken::EncodingKey::from_secret(SECRET),
        )
        .unwrap()
    };
    assert_eq!(
        s.get("/api/v1/events", Some(&forge(now, now + 600)))
            .await
            .0,
        200
    );
    for (iat, exp, what) in [
        (now, now + 50 * 365 * 86_400, "exp in 50 years"),
        (now + 30 * 86_400, now + 31 * 86_400, "iat next month"),
        (now, i64::MAX / 2, "exp at the end of time"),
    ] {
        let (st, www, e) = get_full(&s, "/api/v1/events", Some(&forge(iat, exp))).await;
        assert_eq!(st, 401, "{what}: {e}");
        assert!(www.is_some(), "{what}");
    }
    // A token of another generation (a revoked one) is refused.
    let c = decnet_api::auth::Claims {
        sub: "victor".into(),
        role: "viewer".into(),
        mcp: false,
        iat: now,
        exp: now + 600,
        tgen: generation - 1,
    };
    let old = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &c,
        &jsonwebtoken::EncodingKey::from_secret(SECRET),
    )
    .unwrap();
    assert_eq!(s.get("/api/v1/events", Some(&old)).await.0, 401);
    s.stop().await;
}

/// A login from `from` (a loopback address), optionally with an X-Forwarded-For header:
/// (status, Retry-After).
async fn attempt(
    url: &str,
    from: &str,
    xff: Option<&str>,
    user: &str,
    pass: &str,
) -> (u16, Option<u64>) {
    let c = reqwest::Client::builder()
        .local_address(from.parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap();
    let mut rq = c
        .post(format!("{url}/api/v1/auth/login"))
        .json(&json!({"username": user, "password": pass}));
    if let Some(x) = xff {
        rq = rq.header("x-forwarded-for", x);
    }
    let r = rq.send().await.unwrap();
    (
        r.status().as_u16(),
        r.headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().parse().unwrap()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_limiter_counts_failures_per_address_and_user_with_a_global_bound() {
    let cfg = WebConfig {
        login_max_attempts: 3,
        login_window: Duration::from_secs(60),
        login_global_max: 12,
        trusted_proxies: vec!["127.0.0.9".parse().unwrap()],
        ..test_config()
    };
    let s = Server::start(Backend::Sqlite, "sec_limit", cfg).await;
    let url = s.url.clone();
    // Successful logins are not counted.
    for _ in 0..10 {
        assert_eq!(
            attempt(&url, "127.0.0.1", None, ADMIN.0, ADMIN.1).await.0,
            200
        );
    }
    // Three failures for alice from 127.0.0.2 lock that pair, even with the right password...
    for _ in 0..3 {
        assert_eq!(
            attempt(&url, "127.0.0.2", None, "alice", "wrong").await.0,
            401
        );
    }
    let (st, retry) = attempt(&url, "127.0.0.2", None, ADMIN.0, ADMIN.1).await;
    assert_eq!(st, 429);
    assert!(retry.unwrap() >= 59, "locked for the window: {retry:?}");
    // ...case-insensitively...
    assert_eq!(
        attempt(&url, "127.0.0.2", None, "ALICE", ADMIN.1).await.0,
        429
    );
    // ...but nobody can lock alice out from an address that is not hers, nor another user
    // from that address.
    assert_eq!(
        attempt(&url, "127.0.0.3", None, ADMIN.0, ADMIN.1).await.0,
        200
    );
    assert_eq!(
        attempt(&url, "127.0.0.2", None, VIEWER.0, VIEWER.1).await.0,
        200
    );

    // Behind a trusted proxy the client is the right-most X-Forwarded-For hop.
    for _ in 0..3 {
        let (st, _) = attempt(
            &url,
            "127.0.0.9",
            Some("6.6.6.6, 198.51.100.5"),
            "victor",
            "no",
        )
        .await;
        assert_eq!(st, 401);
    }
    assert_eq!(
        attempt(&url, "127.0.0.9", Some("198.51.100.5"), VIEWER.0, VIEWER.1)
            .await
            .0,
        429,
        "198.51.100.5 is locked for victor"
    );
    assert_eq!(
        attempt(&url, "127.0.0.9", Some("198.51.100.6"), VIEWER.0, VIEWER.1)
            .await
            .0,
        200,
        "another client behind the same proxy is not"
    );
    // An untrusted peer's X-Forwarded-For is ignored (it would otherwise dodge its lock).
    for _ in 0..3 {
        let (st, _) = attempt(&url, "127.0.0.4", Some("198.51.100.99"), "victor", "no").await;
        assert_eq!(st, 401);
    }
    assert_eq!(
        attempt(&url, "127.0.0.4", Some("198.51.100.77"), VIEWER.0, VIEWER.1)
            .await
            .0,
        429
    );

    // Global bound: 9 failures so far; three more from yet other pairs reach 12, and then
    // every login waits — even a fresh pair with the right password.
    for u in ["u1", "u2", "u3"] {
        assert_eq!(attempt(&url, "127.0.0.5", None, u, "no").await.0, 401);
    }
    let (st, retry) = attempt(&url, "127.0.0.6", None, ADMIN.0, ADMIN.1).await;
    assert_eq!(st, 429, "global bound");
    assert!(retry.is_some());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_current_password_check_is_rate_limited() {
    let cfg = WebConfig {
        login_max_attempts: 3,
        login_window: Duration::from_secs(60),
        ..test_config()
    };
    let s = Server::start(Backend::Sqlite, "sec_pwlimit", cfg).await;
    let change = |cur: &'static str| {
        s.send(
            "POST",
            "/api/v1/auth/password",
            Some(&s.viewer),
            Some(json!({"current_password": cur, "new_password": "An0ther-Str0ng-Passphrase"})),
        )
    };
    for _ in 0..3 {
        assert_eq!(change("guess").await.0, 401);
    }
    let (st, e) = change(VIEWER.1).await;
    assert_eq!(st, 429, "even the right password waits: {e}");
    assert_eq!(s.get("/api/v1/events", Some(&s.viewer)).await.0, 200);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usernames_are_case_insensitive() {
    let s = Server::start(Backend::Sqlite, "sec_case", test_config()).await;
    for name in ["ALICE", "Alice", "alice"] {
        let (st, e) = s
            .send(
                "POST",
                "/api/v1/users",
                Some(&s.admin),
                Some(json!({"username": name, "role": "admin"})),
            )
            .await;
        assert_eq!(st, 409, "{name}: {e}");
    }
    // Logging in in another case is the same account (with its stored spelling).
    let r: Value = s
        .http
        .post(format!("{}/api/v1/auth/login", s.url))
        .json(&json!({"username": "VICTOR", "password": VIEWER.1}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["username"], "victor");
    s.stop().await;
}

/// Rows an older decnet left (`admin` and `ADMIN` both existing) are migrated: the older keeps
/// its name, the newer is renamed visibly, and both still exist.
async fn case_migration(b: Backend) {
    let db = common::TestDb::new(b, "sec_casemig").await;
    let dialect = match b {
        Backend::Sqlite => decnet_core::repo::Dialect::Sqlite,
        Backend::MySql => decnet_core::repo::Dialect::MySql,
    };
    {
        sqlx::any::install_default_drivers();
        let url = match b {
            Backend::Sqlite => format!("{}?mode=rwc", db.url),
            Backend::MySql => db.url.clone(),
        };
        let pool = sqlx::AnyPool::connect(&url).await.unwrap();
        decnet_core::repo::migrate::run_until(dialect, &pool, 9)
            .await
            .unwrap();
        for (id, name, role) in [
            (1i64, "admin", "admin"),
            (2, "ADMIN", "viewer"),
            (3, "Admin", "viewer"),
        ] {
            sqlx::query(
                "INSERT INTO users (id, username, password_hash, role, must_change_password, \
                 created_at, updated_at) VALUES (?, ?, 'x', ?, 0, '2026-01-01T00:00:00Z', \
                 '2026-01-01T00:00:00Z')",
            )
            .bind(id)
            .bind(name)
            .bind(role)
            .execute(&pool)
            .await
            .unwrap();
        }
        pool.close().await;
    }
    let repo = db.open().await;
    let names: Vec<String> = repo
        .users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.username)
        .collect();
    assert_eq!(names, ["admin", "ADMIN~2", "Admin~3"]);
    assert_eq!(repo.user("ADMIN").await.unwrap().unwrap().role, Role::Admin);
    assert_eq!(
        repo.user("admin~2").await.unwrap().unwrap().role,
        Role::Viewer
    );
    assert!(
        !repo
            .create_user("AdMiN", "x", Role::Viewer, false)
            .await
            .unwrap()
    );
    repo.close().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usernames_differing_in_case_are_migrated_sqlite() {
    case_migration(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usernames_differing_in_case_are_migrated_mysql() {
    case_migration(Backend::MySql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_user_cannot_hold_every_live_feed_slot() {
    let cfg = WebConfig {
        max_stream_clients: 10,
        max_stream_clients_per_user: 2,
        ..test_config()
    };
    let s = Server::start(Backend::Sqlite, "sec_stream", cfg).await;
    let open = |t: String| {
        let rq = s
            .http
            .get(format!("{}/api/v1/stream", s.url))
            .bearer_auth(t)
            .send();
        async move { rq.await.unwrap() }
    };
    let a = open(s.viewer.clone()).await;
    let b = open(s.viewer.clone()).await;
    assert_eq!((a.status().as_u16(), b.status().as_u16()), (200, 200));
    let c = open(s.viewer.clone()).await;
    assert_eq!(c.status().as_u16(), 429, "third connection of one user");
    assert!(c.headers().get("retry-after").is_some());
    let d = open(s.admin.clone()).await;
    assert_eq!(d.status().as_u16(), 200, "another user still gets a slot");
    // Closing one frees the user's slot.
    drop(a);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let e = open(s.viewer.clone()).await;
        if e.status().as_u16() == 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the slot was not freed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop((b, d));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthorized_names_the_scheme_and_out_of_range_parameters_are_422() {
    let s = Server::start(Backend::Sqlite, "sec_422", test_config()).await;
    for (path, token) in [
        ("/api/v1/events", None),
        ("/api/v1/events", Some("not.a.token")),
        ("/api/v1/users", None),
    ] {
        let (st, www, _) = get_full(&s, path, token).await;
        assert_eq!(
            (st, www.as_deref()),
            (401, Some("Bearer realm=\"decnet\"")),
            "{path}"
        );
    }
    let v = Some(s.viewer.as_str());
    for path in [
        "/api/v1/events?limit=4294967296",
        "/api/v1/sessions?limit=0",
        "/api/v1/credentials?limit=501",
        "/api/v1/flows?proto=256",
        "/api/v1/stream?last_event_id=-1",
        // Found by schemathesis: accepted as "no bound" before.
        "/api/v1/attackers?min_events=9223372036854775808",
    ] {
        let (st, _, e) = get_full(&s, path, v).await;
        assert_eq!(st, 422, "{path}: {e}");
        assert!(
            e["error"].as_str().is_some_and(|m| !m.is_empty()),
            "{path}: {e}"
        );
    }
    let (_, cfg) = s.get("/api/v1/config", Some(&s.admin)).await;
    for (k, val) in [
        ("token_lifetime_secs", json!(1)),
        ("max_stream_clients_per_user", json!(0)),
        ("login_global_max", json!(0)),
    ] {
        let mut c = cfg.clone();
        c[k] = val;
        let (st, e) = s
            .send("PUT", "/api/v1/config", Some(&s.admin), Some(c))
            .await;
        assert_eq!(st, 422, "{k}: {e}");
        assert!(e["error"].as_str().unwrap().contains(k), "{k}: {e}");
    }
    s.stop().await;
}

/// What the correlator computed is what `/scans`, `/traversals`, `/pivots` and
/// `/credential-reuse` serve: detected episodes only, newest first, paged by cursor without
/// gaps or repeats, filtered.
async fn correlator_tables_are_served(b: Backend) {
    use decnet_core::{
        model::{CredentialReuse, Hop, Pivot, Scan, Traversal},
        repo::{IntelBatch, ScanReplace, Write},
    };
    use support::{SEC, attacker};
    let s = Server::start(b, "sec_intel", test_config()).await;
    let t0 = s.t0;
    let scan = |a: u32, kind: &str, k: i64, detected: bool| Scan {
        attacker_ip: attacker(a),
        kind: kind.into(),
        started_ns: t0 + k * 60 * SEC,
        ended_ns: t0 + k * 60 * SEC + 30 * SEC,
        probes: 100 + k as u64,
        port_count: 50,
        ports: vec![22, 80, 443],
        host_count: 2,
        hosts: vec!["decky-0".into(), "decky-1".into()],
        rate_per_min: 200,
        detected,
    };
    let mut scans = Vec::new();
    for (a, kind) in [(3, "tcp_syn"), (3, "udp"), (4, "tcp_syn")] {
        scans.push(ScanReplace {
            attacker_ip: attacker(a),
            kind: kind.into(),
            from_ns: t0,
            scans: (0..3)
                .map(|k| scan(a, kind, k * 3 + i64::from(a), k != 1))
                .collect(),
        });
    }
    let traversals: Vec<Traversal> = (1..=5u32)
        .map(|a| Traversal {
            attacker_ip: attacker(a),
            hops: vec![
                Hop {
                    decky: "decky-0".into(),
                    first_seen_ns: t0,
                },
                Hop {
                    decky: "decky-1".into(),
                    first_seen_ns: t0 + SEC,
                },
            ],
            first_seen_ns: t0,
            last_seen_ns: t0 + i64::from(a % 3) * SEC, // ties on last_seen
        })
        .collect();
    let pivots: Vec<Pivot> = (0..5u16)
        .map(|i| Pivot {
            src_decky: "decky-0".into(),
            dst_decky: format!("decky-{}", 1 + i % 2),
            dst_port: 22 + i,
            proto: 6,
            first_seen_ns: t0,
            last_seen_ns: t0 + i64::from(i % 2) * SEC,
        })
        .collect();
    let reuse: Vec<CredentialReuse> = (0..5u8)
        .map(|i| CredentialReuse {
            secret_hash: [i; 32],
            secret_kind: "password".into(),
            secret_printable: format!("hunter{i}"),
            target_count: 2,
            targets: vec!["decky-0/ssh".into(), "decky-1/ssh".into()],
            attacker_count: 1,
            attackers: vec![attacker(1).to_string()],
            credential_rows: 2,
            first_seen_ns: t0,
            last_seen_ns: t0 + i64::from(i % 2) * SEC,
        })
        .collect();
    s.repo
        .write(&[Write::Intel(&IntelBatch {
            scans,
            traversals,
            pivots,
            reuse,
            ..IntelBatch::default()
        })])
        .await
        .unwrap();
    let v = Some(s.viewer.as_str());

    /// Every page of `path` with `limit=2`: the items' `key`s in order.
    async fn walk(s: &Server, path: &str, key: &dyn Fn(&Value) -> String) -> Vec<String> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..20 {
            let sep = if path.contains('?') { '&' } else { '?' };
            let url = match &cursor {
                None => format!("{path}{sep}limit=2"),
                Some(c) => format!("{path}{sep}limit=2&cursor={c}"),
            };
            let (st, page) = s.get(&url, Some(&s.viewer)).await;
            assert_eq!(st, 200, "{url}: {page}");
            out.extend(page["items"].as_array().unwrap().iter().map(key));
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return out,
            }
        }
        panic!("{path}: more than 20 pages");
    }
    let scans = walk(&s, "/api/v1/scans", &|i| {
        format!(
            "{} {} {}",
            i["attacker_ip"].as_str().unwrap(),
            i["kind"],
            i["started"]
        )
    })
    .await;
    assert_eq!(scans.len(), 6, "detected episodes only: {scans:?}");
    let mut sorted = scans.clone();
    sorted.sort_by(|a, b| b.rsplit(' ').next().cmp(&a.rsplit(' ').next()));
    assert_eq!(scans, sorted, "newest first");
    let (_, p) = s
        .get("/api/v1/scans?attacker=203.0.113.3&kind=udp", v)
        .await;
    let items = p["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{p}");
    assert!(
        items
            .iter()
            .all(|i| i["kind"] == "udp" && i["attacker_ip"] == "203.0.113.3")
    );
    assert_eq!(items[0]["ports"], json!([22, 80, 443]));
    assert_eq!(s.get("/api/v1/scans?kind=xmas", v).await.0, 422);
    assert_eq!(s.get("/api/v1/scans?cursor=zzz", v).await.0, 400);

    let tr = walk(&s, "/api/v1/traversals", &|i| {
        i["attacker_ip"].as_str().unwrap().to_owned()
    })
    .await;
    let mut uniq = tr.clone();
    uniq.sort();
    uniq.dedup();
    assert_eq!((tr.len(), uniq.len()), (5, 5), "{tr:?}");
    let (_, p) = s.get("/api/v1/traversals?attacker=203.0.113.2", v).await;
    assert_eq!(p["items"][0]["hops"][1]["decky"], "decky-1", "{p}");

    let pv = walk(&s, "/api/v1/pivots", &|i| {
        format!(
            "{}>{}:{}",
            i["src_decky"].as_str().unwrap(),
            i["dst_decky"].as_str().unwrap(),
            i["dst_port"]
        )
    })
    .await;
    let mut uniq = pv.clone();
    uniq.sort();
    uniq.dedup();
    assert_eq!((pv.len(), uniq.len()), (5, 5), "{pv:?}");
    let (_, p) = s.get("/api/v1/pivots?decky=decky-2", v).await;
    assert_eq!(p["items"].as_array().unwrap().len(), 2, "{p}");

    let ru = walk(&s, "/api/v1/credential-reuse", &|i| {
        i["secret"].as_str().unwrap().to_owned()
    })
    .await;
    let mut uniq = ru.clone();
    uniq.sort();
    uniq.dedup();
    assert_eq!((ru.len(), uniq.len()), (5, 5), "{ru:?}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn correlator_tables_are_served_sqlite() {
    correlator_tables_are_served(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn correlator_tables_are_served_mysql() {
    correlator_tables_are_served(Backend::MySql).await;
}

/// `/api/v1/health` comes from the workers' heartbeats: no worker → 503 `no_workers`; a live
/// lease → 200 `ok`; a lease whose heartbeat stopped (its process died) → 503 `degraded`
/// naming it, and `/api/v1/workers` says it is not alive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_comes_from_worker_heartbeats() {
    use decnet_core::repo::LeaseHolder;
    let s = Server::start(Backend::Sqlite, "sec_health", test_config()).await;
    let (st, h) = s.get("/api/v1/health", None).await;
    assert_eq!((st, h["status"].as_str()), (503, Some("no_workers")), "{h}");
    // A lease taken once and never heartbeaten again: alive now, stale after 15 s.
    let who = LeaseHolder {
        kind: "correlator".into(),
        host: "h1".into(),
        holder: "h1:4242:1".into(),
        pid: 4242,
    };
    s.repo
        .acquire_lease(&who, Duration::from_secs(15))
        .await
        .unwrap();
    let (st, h) = s.get("/api/v1/health", None).await;
    assert_eq!((st, h["status"].as_str()), (200, Some("ok")), "{h}");
    assert_eq!(h["workers"][0]["kind"], "correlator");
    tokio::time::sleep(Duration::from_secs(16)).await;
    let (st, h) = s.get("/api/v1/health", None).await;
    assert_eq!((st, h["status"].as_str()), (503, Some("degraded")), "{h}");
    assert_eq!(h["stale"], json!(["correlator@h1"]));
    let (_, w) = s.get("/api/v1/workers", Some(&s.viewer)).await;
    assert_eq!(w["leases"][0]["alive"], false, "{w}");
    s.stop().await;
}

/// The OpenAPI document declares every error a route can answer (with the error body) and
/// types every JSON response.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_declares_errors_and_types_responses() {
    let s = Server::start(Backend::Sqlite, "sec_openapi", test_config()).await;
    let (st, doc) = s.get("/api/v1/openapi.json", Some(&s.viewer)).await;
    assert_eq!(st, 200);
    let mut untyped = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let r = &op["responses"];
            let tag = op["tags"][0].as_str().unwrap();
            if tag != "public" {
                assert!(
                    r["401"]["headers"]["WWW-Authenticate"].is_object(),
                    "{method} {path}"
                );
            }
            if tag == "viewer" || tag == "admin" {
                assert!(r["403"].is_object(), "{method} {path}");
            }
            if op["requestBody"].is_object() {
                for code in ["400", "413", "415", "422"] {
                    assert!(r[code].is_object(), "{method} {path} {code}");
                }
            }
            if op["parameters"].as_array().is_some_and(|p| !p.is_empty()) {
                assert!(r["422"].is_object(), "{method} {path}");
            }
            for (code, resp) in r.as_object().unwrap() {
                // Health's 503 is its own body (what is unhealthy); every other error is the
                // error body.
                let own = path == "/api/v1/health" && code == "503";
                if (code.starts_with('4') || code.starts_with('5')) && !own {
                    assert_eq!(
                        resp["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/ErrorBody",
                        "{method} {path} {code}"
                    );
                }
                if code.starts_with('2') && resp["content"]["application/json"].is_object() {
                    continue;
                }
                if code.starts_with('2') && resp["content"].as_object().is_none_or(|c| c.is_empty())
                {
                    untyped.push(format!("{method} {path} {code}"));
                }
            }
        }
    }
    // The attacker page and stats are assembled JSON (typed as objects) and the decky action
    // is another helper's; everything else names its schema.
    untyped.retain(|u| !u.contains("/deckies/{name}/actions"));
    assert!(
        untyped.is_empty(),
        "responses without a schema: {untyped:?}"
    );
    let limit = doc["paths"]["/api/v1/events"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "limit")
        .unwrap()
        .clone();
    assert_eq!(
        (&limit["schema"]["minimum"], &limit["schema"]["maximum"]),
        (&json!(1), &json!(500)),
        "{limit}"
    );
    let rt = &doc["components"]["schemas"]["RuntimeConfig"]["properties"]["token_lifetime_secs"];
    assert_eq!(rt["maximum"], 604800, "{rt}");
    s.stop().await;
}
