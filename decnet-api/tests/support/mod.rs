//! A `decnet web` app on loopback over a seeded database (SQLite file or a fresh MariaDB
//! database, see decnet-core's test `common`), with an admin and a viewer logged in.
#![allow(dead_code)]

#[path = "../../../decnet-core/tests/common/mod.rs"]
pub mod common;

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::Duration,
};

use common::{Backend, TestDb};
use decnet_api::{Web, WebConfig, auth};
use decnet_core::{
    Repository,
    model::*,
    repo::{CounterMode, IntelBatch, SessionReplace, Write},
    time_fmt::now_ns,
};
use serde_json::{Value, json};

pub const SEC: i64 = 1_000_000_000;
pub const ADMIN: (&str, &str) = ("alice", "Adm1n-Test-Passw0rd!");
pub const VIEWER: (&str, &str) = ("victor", "V1ewer-Test-Passw0rd!");
pub const XSS_IMG: &str = "<img src=x onerror=\"window.__xss=1\">";
pub const XSS_SCRIPT: &str = "<script>window.__xss=2</script>";

pub fn attacker(n: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0xcb00_7100 + n)) // 203.0.113.n
}

pub struct Server {
    pub url: String,
    pub addr: SocketAddr,
    pub repo: Repository,
    pub db: Option<TestDb>,
    pub admin: String,
    pub viewer: String,
    pub http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    pub t0: i64,
}

/// The seeded facts: 3 deckies, 12 attackers, 300 events (attacker i has 10+i events), sessions,
/// credentials, flows, a profile and a traversal for attacker 1, and the XSS payloads.
pub async fn seed(repo: &Repository) -> i64 {
    let t0 = now_ns() - 3600 * SEC;
    let deckies: Vec<Decky> = (0..3)
        .map(|i| Decky {
            name: format!("decky-{i}"),
            ip: IpAddr::V4(Ipv4Addr::new(10, 9, 0, 10 + i)),
            hostname: format!("host{i}"),
            os_family: "linux".into(),
            archetype: "web".into(),
            persona: "{}".into(),
            status: "running".into(),
            services: vec![
                DeckyService {
                    service: "ssh".into(),
                    port: 22,
                    settings: "{}".into(),
                },
                DeckyService {
                    service: "http".into(),
                    port: 80,
                    settings: "{}".into(),
                },
            ],
        })
        .collect();
    let mut events = Vec::new();
    let mut first_event = Vec::new(); // index of each attacker's first event
    let mut attackers = Vec::new();
    let mut k = 0i64;
    for a in 1..=12u32 {
        let n = 10 + a as i64;
        first_event.push(events.len());
        for j in 0..n {
            k += 1;
            let ts = t0 + k * SEC;
            let service = if j % 2 == 0 { "ssh" } else { "http" };
            let fields = if a == 12 {
                json!({"username": XSS_IMG, "command": XSS_SCRIPT, "path": format!("/{XSS_IMG}")})
            } else {
                json!({"username": format!("user{j}"), "marker": format!("needle-{a}-{j}")})
            };
            events.push(NewEvent {
                ts_ns: ts,
                decky: format!("decky-{}", j % 3),
                service: service.into(),
                event_type: if j % 2 == 0 {
                    "auth_attempt".into()
                } else {
                    "request".into()
                },
                attacker_ip: Some(attacker(a)),
                attacker_port: Some(40000 + j as u16),
                fields: fields.to_string(),
                raw: format!("<134>1 raw line {a} {j}").into_bytes(),
                dedup_key: None,
            });
        }
        attackers.push(AttackerUpdate {
            ip: attacker(a),
            first_seen_ns: t0 + (k - n + 1) * SEC,
            last_seen_ns: t0 + k * SEC,
            event_count: n as u64,
            session_count: 1,
            credential_count: 1,
            flow_count: 2,
        });
    }
    let sessions: Vec<Session> = (1..=12u32)
        .map(|a| Session {
            attacker_ip: attacker(a),
            decky: "decky-0".into(),
            service: "ssh".into(),
            started_ns: t0 + i64::from(a) * 10 * SEC,
            ended_ns: t0 + i64::from(a) * 10 * SEC + 5 * SEC,
            event_count: 3,
            bytes: 100,
            commands: if a == 12 {
                vec![XSS_SCRIPT.into(), XSS_IMG.into()]
            } else {
                vec!["uname -a".into(), format!("cat /etc/passwd #{a}")]
            },
            closed: true,
        })
        .collect();
    let creds: Vec<CredentialAttempt> = (1..=12u32)
        .map(|a| CredentialAttempt {
            attacker_ip: attacker(a),
            decky: "decky-1".into(),
            service: "ssh".into(),
            principal: if a == 12 {
                XSS_IMG.as_bytes().to_vec()
            } else {
                format!("root{a}").into_bytes()
            },
            secret_kind: "password".into(),
            secret: if a == 12 {
                XSS_SCRIPT.as_bytes().to_vec()
            } else {
                b"123456".to_vec()
            },
            attempts: 2,
            first_seen_ns: t0,
            last_seen_ns: t0 + SEC,
        })
        .collect();
    let flows: Vec<FlowRecord> = (1..=12u32)
        .flat_map(|a| {
            (0..15u16).map(move |p| FlowRecord {
                bridge: "decnet0".into(),
                port: "veth0".into(),
                src_ip: attacker(a),
                dst_ip: IpAddr::V4(Ipv4Addr::new(10, 9, 0, 10)),
                src_port: 50000 + p,
                dst_port: if a == 3 { 1000 + p } else { 22 },
                proto: 6,
                vlan: 0,
                packets: 3,
                bytes: 180,
                tcp_flags: 2,
                first_seen_ns: t0 + i64::from(p) * SEC,
                last_seen_ns: t0 + i64::from(p) * SEC + 1,
                ended: true,
            })
        })
        .collect();
    let touches: Vec<Touch> = (0..3)
        .map(|i| Touch {
            attacker_ip: attacker(1),
            decky: format!("decky-{i}"),
            service: "ssh".into(),
            first_seen_ns: t0 + i64::from(i) * 60 * SEC,
            last_seen_ns: t0 + i64::from(i) * 60 * SEC + SEC,
        })
        .collect();
    let profile = AttackerProfile {
        attacker_ip: attacker(1),
        behaviour: "brute_force".into(),
        score: 73,
        factors: vec![ScoreFactor {
            factor: "credential attempts".into(),
            weight: 40,
        }],
        tools: vec!["hydra".into()],
        techniques: vec!["T1110".into()],
        evidence_until_ns: t0 + 100 * SEC,
        computed_at_ns: t0 + 101 * SEC,
    };
    // Written the way the workers write them: credentials with the events that carry them (the
    // collector), sessions as the correlator's recomputation of each key.
    let creds: Vec<(usize, CredentialAttempt)> = first_event.into_iter().zip(creds).collect();
    let intel = IntelBatch {
        sessions: sessions
            .into_iter()
            .map(|s| SessionReplace {
                attacker_ip: s.attacker_ip,
                decky: s.decky.clone(),
                service: s.service.clone(),
                from_ns: s.started_ns,
                sessions: vec![s],
            })
            .collect(),
        ..IntelBatch::default()
    };
    repo.write(&[
        Write::Deckies(&deckies),
        Write::EventsWithCredentials {
            events: &events,
            credentials: &creds,
        },
        Write::Attackers(&attackers),
        Write::Intel(&intel),
        Write::Flows(&flows),
        Write::Touches(&touches),
        Write::Profiles(std::slice::from_ref(&profile)),
        Write::Counters {
            worker: "collector",
            host: "h1",
            values: &[("received", 42), ("rejected.bad_pri", 3)],
            mode: CounterMode::Set,
        },
    ])
    .await
    .expect("seed");
    t0
}

pub fn test_config() -> WebConfig {
    WebConfig {
        stream_poll: Duration::from_millis(100),
        login_max_attempts: 1000,
        ..WebConfig::default()
    }
}

impl Server {
    pub async fn start(backend: Backend, tag: &str, cfg: WebConfig) -> Server {
        let db = TestDb::new(backend, tag).await;
        let repo = db.open().await;
        let t0 = seed(&repo).await;
        let mut s = Self::start_on(repo, cfg).await;
        s.db = Some(db);
        s.t0 = t0;
        s
    }

    /// Serves `repo` (users `alice` admin and `victor` viewer are created and logged in).
    pub async fn start_on(repo: Repository, cfg: WebConfig) -> Server {
        for (u, p, r) in [
            (ADMIN.0, ADMIN.1, Role::Admin),
            (VIEWER.0, VIEWER.1, Role::Viewer),
        ] {
            let h = auth::hash_password(p).unwrap();
            repo.create_user(u, &h, r, false).await.unwrap();
        }
        let web = Web::new(repo.clone(), b"0123456789abcdef0123456789abcdef-test", cfg)
            .await
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(web.serve(listener, async move {
            let _ = rx.await;
        }));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let url = format!("http://{addr}");
        let mut s = Server {
            url,
            addr,
            repo,
            db: None,
            admin: String::new(),
            viewer: String::new(),
            http,
            stop: Some(stop),
            task: Some(task),
            t0: 0,
        };
        s.admin = s.login(ADMIN.0, ADMIN.1).await;
        s.viewer = s.login(VIEWER.0, VIEWER.1).await;
        s
    }

    pub async fn login(&self, user: &str, pass: &str) -> String {
        let r = self
            .http
            .post(format!("{}/api/v1/auth/login", self.url))
            .json(&json!({"username": user, "password": pass}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "login {user}");
        let v: Value = r.json().await.unwrap();
        v["token"].as_str().unwrap().to_owned()
    }

    /// GET `path` with `token` (None: anonymous); (status, JSON body or Null).
    pub async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut rq = self.http.get(format!("{}{path}", self.url));
        if let Some(t) = token {
            rq = rq.bearer_auth(t);
        }
        let r = rq.send().await.unwrap();
        let st = r.status().as_u16();
        (st, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut rq = self.http.request(m, format!("{}{path}", self.url));
        if let Some(t) = token {
            rq = rq.bearer_auth(t);
        }
        if let Some(b) = body {
            rq = rq.json(&b);
        }
        let r = rq.send().await.unwrap();
        let st = r.status().as_u16();
        (st, r.json().await.unwrap_or(Value::Null))
    }

    /// Stops this `decnet web` app and starts a new one on a freshly opened repository over
    /// the same database (nothing of the old process's memory survives); logs in again.
    pub async fn restart(mut self, cfg: WebConfig) -> Server {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
        self.repo.close().await;
        let db = self
            .db
            .take()
            .expect("restart needs a Server::start database");
        let repo = db.open().await;
        let mut s = Self::start_on(repo, cfg).await;
        s.db = Some(db);
        s.t0 = self.t0;
        s
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
        self.repo.close().await;
        if let Some(db) = self.db.take() {
            db.cleanup().await;
        }
    }
}
