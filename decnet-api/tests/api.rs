//! The REST API against a seeded database: filters and pagination (SQLite and MariaDB), every
//! route's authentication and role from the OpenAPI document, the first-login password change,
//! body limits and closed CORS, the live feed's resume and slow-client
//! drop, metrics.
mod support;

use std::{collections::BTreeSet, time::Duration};

use decnet_api::WebConfig;
use decnet_core::{model::NewEvent, time_fmt::format_ts};
use futures::StreamExt as _;
use serde_json::{Value, json};
use support::{Server, attacker, common::Backend, test_config};

use crate::support::common;

fn ids(v: &Value) -> Vec<i64> {
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect()
}

async fn filters_and_pagination(b: Backend) {
    let s = Server::start(b, "web_filters", test_config()).await;
    let v = Some(s.viewer.as_str());

    // Every event exactly once, newest first, across pages of 7.
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/events?limit=7&cursor={c}"),
            None => "/api/v1/events?limit=7".into(),
        };
        let (st, page) = s.get(&path, v).await;
        assert_eq!(st, 200, "{page}");
        all.extend(ids(&page));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let expected: usize = (1..=12).map(|a| 10 + a).sum();
    assert_eq!(all.len(), expected);
    assert!(all.windows(2).all(|w| w[0] > w[1]), "strictly newest first");

    // Filters, alone and combined.
    let (_, p) = s
        .get(
            &format!("/api/v1/events?attacker={}&limit=500", attacker(5)),
            v,
        )
        .await;
    assert_eq!(p["items"].as_array().unwrap().len(), 15);
    assert!(
        p["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["attacker_ip"] == attacker(5).to_string())
    );
    let (_, p) = s
        .get(
            &format!(
                "/api/v1/events?attacker={}&service=ssh&type=auth_attempt&decky=decky-0&limit=500",
                attacker(5)
            ),
            v,
        )
        .await;
    // attacker 5: j in 0..15, ssh/auth_attempt when j even, decky-0 when j % 3 == 0 → j ∈ {0, 6, 12}.
    assert_eq!(p["items"].as_array().unwrap().len(), 3, "{p}");
    let (_, p) = s.get("/api/v1/events?q=needle-7-3&limit=500", v).await;
    assert_eq!(p["items"].as_array().unwrap().len(), 1);
    assert_eq!(p["items"][0]["fields"]["marker"], "needle-7-3");
    // LIKE wildcards in the needle are literal.
    let (_, p) = s.get("/api/v1/events?q=needle%25&limit=500", v).await;
    assert_eq!(p["items"].as_array().unwrap().len(), 0);
    // Time range: [t0+1s, t0+11s) holds events k = 1..=10.
    let since = format_ts(s.t0 + support::SEC);
    let until = format_ts(s.t0 + 11 * support::SEC);
    let (st, p) = s
        .get(
            &format!("/api/v1/events?since={since}&until={until}&limit=500"),
            v,
        )
        .await;
    assert_eq!(st, 200, "{p}");
    assert_eq!(p["items"].as_array().unwrap().len(), 10);

    // Attackers: both orders, paginated, each attacker once.
    for sort in ["last_seen", "events"] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("/api/v1/attackers?sort={sort}&limit=5&cursor={c}"),
                None => format!("/api/v1/attackers?sort={sort}&limit=5"),
            };
            let (st, page) = s.get(&path, v).await;
            assert_eq!(st, 200, "{page}");
            for a in page["items"].as_array().unwrap() {
                seen.push((
                    a["ip"].as_str().unwrap().to_owned(),
                    a["event_count"].as_u64().unwrap(),
                ));
            }
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
        }
        assert_eq!(seen.len(), 12, "{sort}");
        assert_eq!(seen.iter().map(|x| &x.0).collect::<BTreeSet<_>>().len(), 12);
        // Attacker 12 has the most events and the latest activity.
        assert_eq!(seen[0].0, attacker(12).to_string(), "{sort}");
        if sort == "events" {
            assert!(seen.windows(2).all(|w| w[0].1 >= w[1].1));
        }
    }
    let (_, p) = s.get("/api/v1/attackers?ip=203.0.113.1&limit=50", v).await;
    // 203.0.113.1, .10, .11, .12
    assert_eq!(p["items"].as_array().unwrap().len(), 4, "{p}");
    let (_, p) = s.get("/api/v1/attackers?min_events=20&limit=50", v).await;
    assert_eq!(p["items"].as_array().unwrap().len(), 3);

    // Attacker page.
    let (st, d) = s
        .get(&format!("/api/v1/attackers/{}", attacker(1)), v)
        .await;
    assert_eq!(st, 200);
    assert_eq!(d["profile"]["score"], 73);
    assert_eq!(d["profile"]["techniques"], json!(["T1110"]));
    assert_eq!(d["profile"]["factors"][0]["weight"], 40);
    assert_eq!(d["traversal"].as_array().unwrap().len(), 3);
    assert_eq!(d["traversal"][2]["decky"], "decky-2");
    assert_eq!(d["sessions"].as_array().unwrap().len(), 1);
    assert_eq!(d["commands"].as_array().unwrap().len(), 2);
    assert_eq!(d["credentials"][0]["principal"], "root1");
    assert_eq!(d["events"].as_array().unwrap().len(), 11);
    let (st, _) = s.get("/api/v1/attackers/198.51.100.77", v).await;
    assert_eq!(st, 404);

    // Sessions, credentials, flows, scans, deckies, stats, workers.
    let (_, p) = s
        .get(&format!("/api/v1/sessions?attacker={}", attacker(12)), v)
        .await;
    assert_eq!(
        p["items"][0]["commands"][0],
        support::XSS_SCRIPT,
        "stored and returned exactly"
    );
    let (_, p) = s.get("/api/v1/sessions?limit=5", v).await;
    assert_eq!(p["items"].as_array().unwrap().len(), 5);
    assert!(p["next_cursor"].is_string());
    let (_, p) = s.get("/api/v1/credentials?principal=root1", v).await;
    // root1, root10, root11
    assert_eq!(p["items"].as_array().unwrap().len(), 3, "{p}");
    let (_, p) = s
        .get(
            &format!("/api/v1/flows?src_ip={}&limit=500", attacker(2)),
            v,
        )
        .await;
    assert_eq!(p["items"].as_array().unwrap().len(), 15);
    let (_, p) = s.get("/api/v1/flows?dst_port=1003", v).await;
    assert_eq!(p["items"].as_array().unwrap().len(), 1);
    // Scans are the correlator's (tests/security.rs seeds and pages them); attacker 3's 15
    // ports of raw flows are not recomputed into one here.
    let (_, p) = s.get("/api/v1/scans", v).await;
    assert_eq!(p["items"].as_array().unwrap().len(), 0, "{p}");
    let (_, p) = s.get("/api/v1/deckies", v).await;
    let d0 = p["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "decky-0")
        .unwrap()
        .clone();
    assert_eq!(d0["services"].as_array().unwrap().len(), 2);
    assert!(d0["events_24h"].as_u64().unwrap() > 0);
    let (st, p) = s.get("/api/v1/stats?window=24h", v).await;
    assert_eq!(st, 200, "{p}");
    assert_eq!(p["counts"]["events"], expected as u64);
    assert_eq!(p["counts"]["attackers"], 12);
    assert_eq!(p["top_attackers"][0]["ip"], attacker(12).to_string());
    let hist_total: u64 = p["histogram"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["count"].as_u64().unwrap())
        .sum();
    assert_eq!(hist_total, expected as u64);
    assert_eq!(p["top_services"].as_array().unwrap().len(), 2);
    let (_, w) = s.get("/api/v1/workers", v).await;
    assert!(
        w["counters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "received" && c["value"] == 42)
    );

    // Bad input: 400 with an error id, counted; a parameter outside its schema's range: 422.
    for (bad, status) in [
        ("/api/v1/events?limit=0", 422),
        ("/api/v1/events?limit=501", 422),
        ("/api/v1/flows?dst_port=70000", 422),
        ("/api/v1/attackers?min_events=-1", 422),
        ("/api/v1/events?limit=99999999999", 422),
    ] {
        let (st, e) = s.get(bad, v).await;
        assert_eq!(st, status, "{bad}: {e}");
        let field = bad.split(['?', '=']).nth(1).unwrap();
        assert!(
            e["error"].as_str().unwrap().contains(field),
            "{bad}: the message names {field}: {e}"
        );
    }
    for bad in [
        "/api/v1/events?attacker=not-an-ip",
        "/api/v1/events?cursor=abc",
        "/api/v1/events?since=yesterday",
        "/api/v1/attackers?sort=name",
        "/api/v1/attackers?cursor=e.1.2",
        "/api/v1/attackers/not-an-ip",
        "/api/v1/stats?window=1y",
    ] {
        let (st, e) = s.get(bad, v).await;
        assert_eq!(st, 400, "{bad}: {e}");
        assert_eq!(e["id"].as_str().map(str::len), Some(16), "{bad}: {e}");
    }
    let long = "x".repeat(200);
    let (st, _) = s.get(&format!("/api/v1/events?q={long}"), v).await;
    assert_eq!(st, 400);
    s.stop().await;
}

mod filters_and_pagination {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::filters_and_pagination(super::common::Backend::Sqlite).await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mysql() {
        super::filters_and_pagination(super::common::Backend::MySql).await
    }
}

/// Every route in the OpenAPI document: anonymous → 401 (except the public ones), viewer on an
/// admin route → 403, viewer on a viewer route → allowed; a user who must change the password
/// gets 403 everywhere but the `pending` routes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_enforces_authentication_and_roles() {
    let s = Server::start(Backend::Sqlite, "web_routes", test_config()).await;
    let hash = decnet_api::auth::hash_password("Pend1ng-Test-Passw0rd!").unwrap();
    s.repo
        .create_user("pat", &hash, decnet_core::model::Role::Admin, true)
        .await
        .unwrap();
    let pending = s.login("pat", "Pend1ng-Test-Passw0rd!").await;

    let (st, _) = s.get("/api/v1/openapi.json", None).await;
    assert_eq!(st, 401);
    let (st, doc) = s.get("/api/v1/openapi.json", Some(&s.viewer)).await;
    assert_eq!(st, 200);
    let mut routes = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let tag = op["tags"][0].as_str().unwrap_or("").to_owned();
            routes.push((method.to_uppercase(), path.clone(), tag));
        }
    }
    assert!(routes.len() >= 20, "{routes:?}");
    let public: BTreeSet<(String, String)> = routes
        .iter()
        .filter(|r| r.2 == "public")
        .map(|r| (r.0.clone(), r.1.clone()))
        .collect();
    assert_eq!(
        public,
        BTreeSet::from([
            ("POST".to_owned(), "/api/v1/auth/login".to_owned()),
            ("GET".to_owned(), "/api/v1/health".to_owned())
        ]),
        "the only routes without authentication"
    );
    for (method, path, tag) in &routes {
        assert!(
            ["public", "pending", "viewer", "admin"].contains(&tag.as_str()),
            "{method} {path}: tag {tag}"
        );
        let concrete = path
            .replace("{ip}", &attacker(1).to_string())
            .replace("{username}", "nobody-user")
            .replace("{name}", "decky-0");
        let body = (method != "GET").then(|| json!({}));
        let (st, e) = s.send(method, &concrete, None, body.clone()).await;
        if tag == "public" {
            assert_ne!(st, 401, "{method} {path}");
            continue;
        }
        assert_eq!(st, 401, "anonymous {method} {path}: {e}");
        let (st, _) = s
            .send(method, &concrete, Some("garbage.token.here"), body.clone())
            .await;
        assert_eq!(st, 401, "bad token {method} {path}");
        if path == "/api/v1/stream" {
            continue; // a never-ending body: checked in the live-feed test
        }
        let (st, e) = s
            .send(method, &concrete, Some(&s.viewer), body.clone())
            .await;
        match tag.as_str() {
            "admin" => assert_eq!(st, 403, "viewer on admin {method} {path}: {e}"),
            _ => assert!(
                st != 401 && st != 403,
                "viewer on {method} {path}: {st} {e}"
            ),
        }
        let (st, e) = s
            .send(method, &concrete, Some(&pending), body.clone())
            .await;
        match tag.as_str() {
            "pending" => assert!(
                st != 401 && st != 403,
                "pending on {method} {path}: {st} {e}"
            ),
            _ => assert_eq!(st, 403, "must-change user on {method} {path}: {e}"),
        }
        let (st, e) = s.send(method, &concrete, Some(&s.admin), body).await;
        assert!(st != 401 && st != 403, "admin on {method} {path}: {st} {e}");
    }
    // Anything else is 404 JSON with an id, not a stack trace.
    let (st, e) = s.get("/api/v1/nope", Some(&s.admin)).await;
    assert_eq!(st, 404);
    assert!(e["id"].is_string());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_admin_must_change_its_password() {
    let db = common::TestDb::new(Backend::Sqlite, "web_first").await;
    let repo = db.open().await;
    // Weak or missing values.
    for weak in ["short", "password12345", "adminadminadmin1"] {
        let e = decnet_api::auth::bootstrap_admin(&repo, "admin", Some(weak))
            .await
            .unwrap_err();
        assert!(
            e.to_string().contains("DECNET_ADMIN_PASSWORD is too weak"),
            "{e}"
        );
    }
    let otp = decnet_api::auth::bootstrap_admin(&repo, "admin", None)
        .await
        .unwrap()
        .unwrap();
    assert!(
        decnet_api::auth::bootstrap_admin(&repo, "admin", None)
            .await
            .unwrap()
            .is_none(),
        "once"
    );
    let s = Server::start_on(repo, test_config()).await;
    let r: Value = s
        .http
        .post(format!("{}/api/v1/auth/login", s.url))
        .json(&json!({"username": "admin", "password": otp}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["must_change_password"], true);
    let t = r["token"].as_str().unwrap().to_owned();
    let (st, _) = s.get("/api/v1/events", Some(&t)).await;
    assert_eq!(st, 403);
    let (st, me) = s.get("/api/v1/auth/me", Some(&t)).await;
    assert_eq!(
        (st, me["must_change_password"].as_bool()),
        (200, Some(true))
    );
    let (st, e) = s
        .send(
            "POST",
            "/api/v1/auth/password",
            Some(&t),
            Some(json!({"current_password": otp, "new_password": "weakweak"})),
        )
        .await;
    assert_eq!(st, 400, "{e}");
    let (st, _) = s
        .send(
            "POST",
            "/api/v1/auth/password",
            Some(&t),
            Some(json!({"current_password": "wrong", "new_password": "N3w-Str0ng-Passphrase"})),
        )
        .await;
    assert_eq!(st, 401);
    let (st, r) = s
        .send(
            "POST",
            "/api/v1/auth/password",
            Some(&t),
            Some(json!({"current_password": otp, "new_password": "N3w-Str0ng-Passphrase"})),
        )
        .await;
    assert_eq!(st, 200, "{r}");
    let t2 = r["token"].as_str().unwrap();
    assert_eq!(s.get("/api/v1/events", Some(t2)).await.0, 200);
    assert_eq!(
        s.get("/api/v1/auth/me", Some(&t)).await.0,
        401,
        "older tokens revoked"
    );
    assert!(s.login("admin", "N3w-Str0ng-Passphrase").await.len() > 20);

    // Admin operations: create a user (one-time password), change its role, reset it.
    let (st, u) = s
        .send(
            "POST",
            "/api/v1/users",
            Some(t2),
            Some(json!({"username": "bob", "role": "viewer"})),
        )
        .await;
    assert_eq!(st, 201, "{u}");
    let bob_pw = u["one_time_password"].as_str().unwrap().to_owned();
    let bob = s.login("bob", &bob_pw).await;
    let (st, _) = s
        .send(
            "POST",
            "/api/v1/users",
            Some(t2),
            Some(json!({"username": "bob", "role": "viewer"})),
        )
        .await;
    assert_eq!(st, 409);
    let (st, _) = s
        .send(
            "POST",
            "/api/v1/users",
            Some(t2),
            Some(json!({"username": "<img>", "role": "viewer"})),
        )
        .await;
    assert_eq!(st, 400);
    let (st, _) = s
        .send(
            "PUT",
            "/api/v1/users/bob/role",
            Some(t2),
            Some(json!({"role": "admin"})),
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(
        s.get("/api/v1/auth/me", Some(&bob)).await.0,
        401,
        "role change revokes tokens"
    );
    let (st, _) = s
        .send(
            "PUT",
            "/api/v1/users/admin/role",
            Some(t2),
            Some(json!({"role": "viewer"})),
        )
        .await;
    assert_eq!(st, 200, "bob is an admin too now");
    let (st, _) = s
        .send(
            "PUT",
            "/api/v1/users/bob/role",
            Some(t2),
            Some(json!({"role": "viewer"})),
        )
        .await;
    assert_eq!(st, 401, "admin's own token was revoked by its demotion");
    s.stop().await;
    db.cleanup().await;
}

// The login limiter's tests are in tests/security.rs.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_bounded_cors_is_closed_and_headers_are_strict() {
    let s = Server::start(Backend::Sqlite, "web_limits", test_config()).await;
    let big = json!({"username": "x".repeat(100_000), "password": "y"});
    let r = s
        .http
        .post(format!("{}/api/v1/auth/login", s.url))
        .json(&big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let e: Value = r.json().await.unwrap();
    assert!(e["id"].is_string());
    let r = s
        .http
        .post(format!("{}/api/v1/auth/login", s.url))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert!(!e["error"].as_str().unwrap().contains("panicked"));
    // CORS preflight from another origin gets no allow headers.
    let r = s
        .http
        .request(reqwest::Method::OPTIONS, format!("{}/api/v1/events", s.url))
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
    let r = s
        .http
        .get(format!("{}/api/v1/events", s.url))
        .header("origin", "https://evil.example")
        .bearer_auth(&s.viewer)
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"));
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    // The dashboard is served from the binary.
    let r = s.http.get(format!("{}/", s.url)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("/app.js"));
    let js = s
        .http
        .get(format!("{}/app.js", s.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !js.contains(".innerHTML"),
        "the dashboard never renders HTML from strings"
    );
    s.stop().await;
}

/// Reads SSE messages `(type, id, data)` from a streaming response.
struct Sse {
    body: std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buf: String,
}

impl Sse {
    async fn open(s: &Server, last: Option<i64>) -> Sse {
        let mut rq = s
            .http
            .get(format!("{}/api/v1/stream", s.url))
            .bearer_auth(&s.viewer);
        if let Some(id) = last {
            rq = rq.header("Last-Event-ID", id.to_string());
        }
        let r = reqwest::Client::new()
            .execute(rq.build().unwrap())
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        Sse {
            body: Box::pin(r.bytes_stream()),
            buf: String::new(),
        }
    }

    async fn next(&mut self) -> (String, Option<i64>, Value) {
        loop {
            if let Some(i) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..i + 2).collect();
                let (mut kind, mut id, mut data) = ("message".to_owned(), None, String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        kind = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("id:") {
                        id = v.trim().parse().ok();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if data.is_empty() {
                    continue; // keep-alive comment
                }
                return (kind, id, serde_json::from_str(&data).unwrap_or(Value::Null));
            }
            let chunk = tokio::time::timeout(Duration::from_secs(15), self.body.next())
                .await
                .expect("no live-feed message within 15 s")
                .expect("stream ended")
                .unwrap();
            self.buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// The next `event` message's id.
    async fn next_event(&mut self) -> i64 {
        loop {
            let (k, id, _) = self.next().await;
            if k == "event" {
                return id.expect("events carry an id");
            }
        }
    }
}

fn new_event(n: i64, fields: String) -> NewEvent {
    NewEvent {
        ts_ns: decnet_core::time_fmt::now_ns() + n,
        decky: "decky-1".into(),
        service: "ssh".into(),
        event_type: "live".into(),
        attacker_ip: Some(attacker(4)),
        attacker_port: None,
        fields,
        raw: format!("live {n} {}", rand_tag()).into_bytes(),
        dedup_key: None,
    }
}

fn rand_tag() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_feed_resumes_from_last_event_id_without_gaps_or_duplicates() {
    let s = Server::start(Backend::Sqlite, "web_sse", test_config()).await;
    let (_, p) = s.get("/api/v1/events?limit=500", Some(&s.viewer)).await;
    let stored = ids(&p);
    let total = stored.len();
    // Resume from the 10th newest: get exactly the 9 newer ones, in order.
    let from = stored[9];
    let mut sse = Sse::open(&s, Some(from)).await;
    assert_eq!(sse.next().await.0, "hello");
    let mut got = Vec::new();
    for _ in 0..9 {
        got.push(sse.next_event().await);
    }
    let mut want: Vec<i64> = stored[..9].to_vec();
    want.reverse();
    assert_eq!(got, want);
    // Live: new events arrive (with an attacker update).
    s.repo
        .insert_events(&[new_event(1, "{}".into()), new_event(2, "{}".into())])
        .await
        .unwrap();
    let a = sse.next_event().await;
    let b = sse.next_event().await;
    assert!(a > stored[0] && b > a);
    let mut saw_attacker = false;
    // Disconnect; events stored meanwhile are replayed on reconnect, nothing twice.
    drop(sse);
    s.repo
        .insert_events(&[
            new_event(3, "{}".into()),
            new_event(4, "{}".into()),
            new_event(5, "{}".into()),
        ])
        .await
        .unwrap();
    let mut sse = Sse::open(&s, Some(b)).await;
    let mut again = Vec::new();
    while again.len() < 3 {
        let (k, id, d) = sse.next().await;
        match k.as_str() {
            "event" => again.push(id.unwrap()),
            "attacker" => saw_attacker |= d["ip"] == attacker(4).to_string(),
            _ => {}
        }
    }
    assert!(
        again.windows(2).all(|w| w[1] > w[0]) && again[0] > b,
        "{again:?}"
    );
    assert_eq!(s.repo.count_events().await.unwrap() as usize, total + 5);
    // After the replay, the poller's broadcast of the same events is skipped.
    s.repo
        .insert_events(&[new_event(6, "{}".into())])
        .await
        .unwrap();
    let next = sse.next_event().await;
    assert!(next > again[2], "no duplicate of a replayed event");
    let _ = saw_attacker;
    // A bad Last-Event-ID is a 400.
    let r = s
        .http
        .get(format!("{}/api/v1/stream", s.url))
        .bearer_auth(&s.viewer)
        .header("Last-Event-ID", "x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    drop(sse);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_live_feed_client_is_dropped() {
    let cfg = WebConfig {
        stream_buffer: 16,
        ..test_config()
    };
    let s = Server::start(Backend::Sqlite, "web_slow", cfg).await;
    // Open a stream and never read it.
    let mut rq = s
        .http
        .get(format!("{}/api/v1/stream", s.url))
        .bearer_auth(&s.viewer)
        .build()
        .unwrap();
    *rq.timeout_mut() = None;
    let resp = reqwest::Client::new().execute(rq).await.unwrap();
    assert_eq!(resp.status(), 200);
    // ≈ 40 MB of events: far more than the socket buffers hold.
    let blob = "z".repeat(60_000);
    for round in 0..8 {
        let batch: Vec<NewEvent> = (0..80)
            .map(|i| new_event(round * 1000 + i, json!({"blob": blob}).to_string()))
            .collect();
        s.repo.insert_events(&batch).await.unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let r = s
            .http
            .get(format!("{}/metrics", s.url))
            .bearer_auth(&s.viewer)
            .send()
            .await
            .unwrap();
        let text = r.text().await.unwrap();
        if text.contains("decnet_web_stream_dropped_clients_total 1")
            && text.contains("decnet_web_stream_clients 0")
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the slow client was not dropped:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(resp);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_requests_and_worker_counters() {
    let cfg = WebConfig {
        metrics_token: Some("prometheus-scrape-token-1".into()),
        ..test_config()
    };
    let s = Server::start(Backend::Sqlite, "web_metrics", cfg).await;
    s.get("/api/v1/events", Some(&s.viewer)).await;
    s.get("/api/v1/events?limit=0", Some(&s.viewer)).await;
    assert_eq!(s.get("/metrics", None).await.0, 401);
    let r = s
        .http
        .get(format!("{}/metrics", s.url))
        .bearer_auth("prometheus-scrape-token-1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    for want in [
        "decnet_web_requests_total{method=\"GET\",route=\"/api/v1/events\",status=\"200\"} 1",
        "decnet_web_requests_total{method=\"GET\",route=\"/api/v1/events\",status=\"422\"} 1",
        "decnet_web_request_seconds_bucket{route=\"/api/v1/events\",le=\"+Inf\"} 2",
        "decnet_worker_counter{worker=\"collector\",host=\"h1\",name=\"received\"} 42",
        "decnet_worker_counter{worker=\"collector\",host=\"h1\",name=\"rejected_bad_pri\"} 3",
        "decnet_web_bad_requests_total 1",
    ] {
        assert!(text.contains(want), "missing {want}:\n{text}");
    }
    // Admin writes: runtime config validation and decky actions.
    let (st, c) = s.get("/api/v1/config", Some(&s.admin)).await;
    assert_eq!(st, 200);
    let mut c2 = c.clone();
    c2["stream_poll_ms"] = json!(5);
    assert_eq!(
        s.send("PUT", "/api/v1/config", Some(&s.admin), Some(c2))
            .await
            .0,
        422
    );
    let mut c3 = c.clone();
    c3["login_max_attempts"] = json!(20);
    assert_eq!(
        s.send("PUT", "/api/v1/config", Some(&s.admin), Some(c3))
            .await
            .0,
        200
    );
    assert_eq!(
        s.get("/api/v1/config", Some(&s.admin)).await.1["login_max_attempts"],
        20
    );
    let (st, _) = s
        .send(
            "POST",
            "/api/v1/deckies/decky-1/actions",
            Some(&s.admin),
            Some(json!({"action": "mutate"})),
        )
        .await;
    assert_eq!(st, 202);
    let queued = s.repo.mutation_requests("decky-1", 10).await.unwrap();
    assert_eq!(
        (queued[0].action.as_str(), queued[0].status.as_str()),
        ("mutate", "pending")
    );
    let (st, body) = s
        .send(
            "GET",
            "/api/v1/deckies/decky-1/actions",
            Some(&s.admin),
            None,
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(body["items"][0]["status"], "pending");
    assert_eq!(body["items"][0]["id"], queued[0].id);
    let (st, _) = s
        .send(
            "POST",
            "/api/v1/deckies/decky-1/actions",
            Some(&s.admin),
            Some(json!({"action": "set_mutate_interval"})),
        )
        .await;
    assert_eq!(st, 400, "an interval is required");
    let (st, _) = s
        .send(
            "POST",
            "/api/v1/deckies/nope/actions",
            Some(&s.admin),
            Some(json!({"action": "mutate"})),
        )
        .await;
    assert_eq!(st, 404);
    s.stop().await;
}
