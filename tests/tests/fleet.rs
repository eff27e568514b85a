//! `decnet deploy` end to end: real deckies in namespaces on a real bridge, real clients in an
//! attacker namespace, the real workers under the supervisor. Needs root (CI is root).
//!
//! Each test has its own bridge, subnet and decky names, so they run side by side.
use std::{
    collections::BTreeSet,
    io::{Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use decnet_e2e::{
    collector::EventRow,
    fleet::{Deployment, addr, host_links, processes_with},
    netns::{list_namespaces, run_in},
};

const T: Duration = Duration::from_secs(30);

fn has_cred(
    ev: &[EventRow],
    decky: &str,
    service: &str,
    principal: &str,
    secret: Option<&str>,
) -> bool {
    ev.iter().any(|e| {
        e.decky == decky
            && e.service == service
            && e.event_type == "auth_attempt"
            && e.field("principal") == Some(principal)
            && secret.is_none_or(|s| e.field("secret_printable") == Some(s))
    })
}

/// The TTL of the SYN-ACK `dst:port` answers a connect from namespace `ns` with (a raw TCP socket
/// sees every TCP segment the namespace receives).
fn synack_ttl(ns: &str, dst: Ipv4Addr, port: u16) -> Result<u8> {
    run_in(ns, || -> Result<u8> {
        let raw = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::RAW,
            Some(socket2::Protocol::TCP),
        )?;
        raw.set_read_timeout(Some(Duration::from_millis(200)))?;
        let _conn =
            TcpStream::connect_timeout(&SocketAddr::from((dst, port)), Duration::from_secs(3))?;
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut buf = [0u8; 2048];
        while Instant::now() < deadline {
            let n = match (&raw).read(&mut buf) {
                Ok(n) => n,
                Err(_) => continue,
            };
            let p = &buf[..n];
            if n < 40 {
                continue;
            }
            let ihl = usize::from(p[0] & 0x0f) * 4;
            if n < ihl + 20 {
                continue;
            }
            let src = Ipv4Addr::new(p[12], p[13], p[14], p[15]);
            let sport = u16::from_be_bytes([p[ihl], p[ihl + 1]]);
            let flags = p[ihl + 13];
            if src == dst && sport == port && flags & 0x12 == 0x12 {
                return Ok(p[8]);
            }
        }
        bail!("no SYN-ACK from {dst}:{port} seen")
    })?
}

/// A telnet login from namespace `ns`: waits for the prompts, answers them.
fn telnet_login(ns: &str, dst: Ipv4Addr, user: &str, pass: &str) -> Result<String> {
    run_in(ns, || -> Result<String> {
        let mut s =
            TcpStream::connect_timeout(&SocketAddr::from((dst, 23)), Duration::from_secs(3))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut seen = Vec::new();
        let mut read_until = |s: &mut TcpStream, want: &str| -> Result<()> {
            let deadline = Instant::now() + Duration::from_secs(5);
            let mut buf = [0u8; 512];
            while Instant::now() < deadline {
                let text: Vec<u8> = seen.iter().copied().filter(|b: &u8| *b < 0x80).collect();
                if String::from_utf8_lossy(&text).to_lowercase().contains(want) {
                    seen.clear();
                    return Ok(());
                }
                let n = s.read(&mut buf)?;
                if n == 0 {
                    bail!("telnet closed before {want:?}");
                }
                seen.extend_from_slice(&buf[..n]);
            }
            bail!("no {want:?} prompt")
        };
        read_until(&mut s, "login:")?;
        s.write_all(format!("{user}\r\n").as_bytes())?;
        read_until(&mut s, "password:")?;
        s.write_all(format!("{pass}\r\n").as_bytes())?;
        let mut rest = [0u8; 256];
        let n = s.read(&mut rest).unwrap_or(0);
        Ok(String::from_utf8_lossy(&rest[..n]).into_owned())
    })?
}

#[test]
fn every_service_captures_real_clients_and_personas_show_in_the_ttl() -> Result<()> {
    let net = 231;
    let mut d = Deployment::start(
        "f1",
        net,
        r#"
[[decky]]
name = "f1-web"
ip = "10.231.0.10"
os = "linux"
services = ["ssh", "http", "https", "ftp"]

[[decky]]
name = "f1-win"
ip = "10.231.0.11"
os = "windows_server"
services = ["http", "ftp", "smtp"]

[[decky]]
name = "f1-db"
ip = "10.231.0.12"
archetype = "database"
services = ["ssh", "redis", "mysql", "telnet"]
"#,
        "collector",
    )?;
    let att = d.add_attacker(200)?;
    let (web, win, db) = (addr(net, 10), addr(net, 11), addr(net, 12));
    let attacker_ip = addr(net, 200).to_string();
    let s = Duration::from_secs(20);

    // OS personality, as a passive fingerprinter sees the SYN-ACK.
    assert_eq!(synack_ttl(&att, web, 80)?, 64, "linux decky");
    assert_eq!(synack_ttl(&att, win, 80)?, 128, "windows decky");

    let ssh_opts = [
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "PreferredAuthentications=password",
        "-o",
        "PubkeyAuthentication=no",
        "-o",
        "NumberOfPasswordPrompts=1",
        "-o",
        "ConnectTimeout=5",
        "-o",
        "LogLevel=ERROR",
    ];
    let mut args: Vec<&str> = vec!["-p", "Tr0ub4dor&3", "ssh"];
    args.extend(ssh_opts);
    let target = format!("root@{web}");
    args.extend([target.as_str(), "true"]);
    let out = d.exec_in(&att, "sshpass", "sshpass", &args, None, s)?;
    assert!(!out.status.success(), "a wrong password must not log in");
    // The accepted login opens the fake shell; the command is recorded.
    let mut args: Vec<&str> = vec!["-p", "admin123", "ssh"];
    args.extend(ssh_opts);
    let target = format!("admin@{db}");
    args.extend([target.as_str(), "uname -a"]);
    let out = d.exec_in(&att, "sshpass", "sshpass", &args, None, s)?;
    assert!(
        out.status.success(),
        "accepted ssh login failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Linux"),
        "{out:?}"
    );

    let url = format!("http://{web}/");
    let out = d.exec_in(
        &att,
        "curl",
        "curl",
        &["-s", "-m", "5", "-A", "Mozilla/5.0 (e2e)", "-D", "-", &url],
        None,
        s,
    )?;
    let head = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("\nserver: "), "persona Server header: {head}");
    let url = format!("https://{web}/admin");
    let out = d.exec_in(
        &att,
        "curl",
        "curl",
        &[
            "-sk",
            "-m",
            "5",
            "-u",
            "bob:hunter2",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &url,
        ],
        None,
        s,
    )?;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "401");
    let url = format!("http://{win}/");
    let out = d.exec_in(
        &att,
        "curl",
        "curl",
        &["-s", "-m", "5", "-D", "-", "-o", "/dev/null", &url],
        None,
        s,
    )?;
    let head = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(
        head.contains("server: microsoft-iis"),
        "windows persona: {head}"
    );

    let url = format!("ftp://{win}/");
    d.exec_in(
        &att,
        "curl",
        "curl",
        &["-s", "-m", "10", "--user", "ftpuser:ftpp4ss", &url],
        None,
        s,
    )?;
    let url = format!("smtp://{win}");
    d.exec_in(
        &att,
        "curl",
        "curl",
        &[
            "-s",
            "-m",
            "10",
            &url,
            "--mail-from",
            "a@example.org",
            "--mail-rcpt",
            "b@example.org",
            "--user",
            "smtpuser:smtpp4ss",
            "-T",
            "-",
        ],
        Some(b"Subject: hi\r\n\r\nhello\r\n"),
        s,
    )?;
    let host = db.to_string();
    let out = d.exec_in(
        &att,
        "redis-cli",
        "redis-tools",
        &["-h", &host, "--no-auth-warning", "-a", "r3dispass", "PING"],
        None,
        s,
    )?;
    // Like an unprotected Redis, it answers (and the AUTH attempt is logged).
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("PONG"),
        "{out:?}"
    );
    let out = d.exec_in(
        &att,
        "mariadb",
        "mariadb-client",
        &[
            "--connect-timeout=5",
            "-h",
            &host,
            "-u",
            "dbuser",
            "-pdbp4ss",
            "-e",
            "select 1",
        ],
        None,
        s,
    )?;
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Access denied"),
        "mysql must deny: {out:?}"
    );
    telnet_login(&att, db, "tuser", "tp4ss")?;

    let ev = d.wait_events("every credential", T, |ev| {
        has_cred(ev, "f1-web", "ssh", "root", Some("Tr0ub4dor&3"))
            && has_cred(ev, "f1-db", "ssh", "admin", Some("admin123"))
            && has_cred(ev, "f1-web", "https", "bob", Some("hunter2"))
            && has_cred(ev, "f1-win", "ftp", "ftpuser", Some("ftpp4ss"))
            && has_cred(ev, "f1-win", "smtp", "smtpuser", Some("smtpp4ss"))
            && has_cred(ev, "f1-db", "redis", "default", Some("r3dispass"))
            && has_cred(ev, "f1-db", "mysql", "dbuser", None)
            && has_cred(ev, "f1-db", "telnet", "tuser", Some("tp4ss"))
            && ev.iter().any(|e| {
                e.decky == "f1-db"
                    && e.service == "ssh"
                    && e.event_type == "command"
                    && e.field("cmd") == Some("uname -a")
            })
            && ev.iter().any(|e| {
                e.decky == "f1-web"
                    && e.service == "http"
                    && e.event_type == "request"
                    && e.field("user_agent") == Some("Mozilla/5.0 (e2e)")
            })
    })?;
    // Every event of the attacker names the attacker's address.
    for e in ev.iter().filter(|e| e.event_type == "auth_attempt") {
        assert_eq!(
            e.attacker_ip.as_deref(),
            Some(attacker_ip.as_str()),
            "{e:?}"
        );
    }
    // The credentials table has them too (the collector maps auth_attempt lines).
    let creds = d.credentials()?;
    for (decky, service, principal) in [
        ("f1-web", "ssh", "root"),
        ("f1-win", "ftp", "ftpuser"),
        ("f1-db", "telnet", "tuser"),
        ("f1-db", "mysql", "dbuser"),
    ] {
        assert!(
            creds.iter().any(|c| c.decky == decky
                && c.service == service
                && c.principal == principal.as_bytes()
                && c.attacker_ip == attacker_ip),
            "no credential {decky}/{service}/{principal} in {creds:?}"
        );
    }

    // Realism: nmap -sV names the services as the persona claims.
    let out = d.exec_in(
        &att,
        "nmap",
        "nmap",
        &[
            "-sV",
            "-Pn",
            "-n",
            "--version-intensity",
            "5",
            "-p",
            "21,22,80,443",
            "-oX",
            "-",
            &web.to_string(),
        ],
        None,
        Duration::from_secs(240),
    )?;
    let xml = String::from_utf8_lossy(&out.stdout).into_owned();
    let service_of = |port: u16| -> Option<(String, String)> {
        let at = xml.find(&format!("portid=\"{port}\""))?;
        let rest = &xml[at..];
        let end = rest.find("</port>")?;
        let chunk = &rest[..end];
        if !chunk.contains("state=\"open\"") {
            return None;
        }
        let name = chunk
            .split("<service name=\"")
            .nth(1)?
            .split('"')
            .next()?
            .to_owned();
        let tunnel = chunk
            .split("tunnel=\"")
            .nth(1)
            .and_then(|t| t.split('"').next())
            .unwrap_or("")
            .to_owned();
        Some((name, tunnel))
    };
    assert_eq!(service_of(21).map(|s| s.0).as_deref(), Some("ftp"), "{xml}");
    assert_eq!(service_of(22).map(|s| s.0).as_deref(), Some("ssh"), "{xml}");
    assert_eq!(
        service_of(80).map(|s| s.0).as_deref(),
        Some("http"),
        "{xml}"
    );
    let https = service_of(443);
    assert!(
        matches!(
            https.as_ref().map(|(n, t)| (n.as_str(), t.as_str())),
            Some(("https", _)) | Some(("http", "ssl")) | Some(("ssl/http", _))
        ),
        "443: {https:?}\n{xml}"
    );
    assert!(
        xml.contains("OpenSSH"),
        "nmap should see the persona's OpenSSH banner: {xml}"
    );

    let status = d.stop(Duration::from_secs(30))?;
    assert!(status.success(), "deploy exit: {status}\n{}", d.logs());
    Ok(())
}

#[test]
fn killed_workers_and_deckies_come_back_within_three_seconds() -> Result<()> {
    let net = 232;
    let mut d = Deployment::start(
        "f2",
        net,
        r#"
[[decky]]
name = "f2-a"
ip = "10.232.0.10"
services = ["ssh", "http"]
"#,
        "collector,sniffer,correlate,profiler,retention",
    )?;
    let att = d.add_attacker(200)?;
    let a = addr(net, 10);
    let url = format!("http://{a}/before-kill");
    d.exec_in(&att, "curl", "curl", &["-s", "-m", "5", &url], None, T)?;
    d.wait_events("the first request", T, |ev| {
        ev.iter().any(|e| e.field("path") == Some("/before-kill"))
    })?;
    let leases = [
        ("collector", "collector".to_owned()),
        ("sniffer", format!("sniffer@{}", d.bridge)),
        ("correlator", "correlator".to_owned()),
        ("profiler", "profiler".to_owned()),
        ("retention", "retention".to_owned()),
        ("decky:f2-a", String::new()),
    ];
    for (round, (unit, lease)) in leases.iter().enumerate() {
        let (old, restarts) = d.unit(unit)?;
        let old = old.with_context(|| format!("{unit} has no pid"))?;
        if !lease.is_empty() {
            // Its lease is held by it before the kill.
            let t = Instant::now();
            while d.lease_pid(lease)? != Some(old) {
                if t.elapsed() > T {
                    bail!(
                        "{unit} (pid {old}) never held lease {lease}: {:?}",
                        d.lease_pid(lease)?
                    );
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        // SAFETY: kill(2) on a pid of the deployment we started.
        unsafe { libc::kill(old as i32, libc::SIGKILL) };
        let killed = Instant::now();
        let new = loop {
            let (pid, r) = d.unit(unit)?;
            if let Some(pid) = pid
                && pid != old
                && r == restarts + 1
                && std::path::Path::new(&format!("/proc/{pid}")).exists()
            {
                break pid;
            }
            if killed.elapsed() > Duration::from_secs(3) {
                bail!("{unit} not restarted within 3 s of kill -9\n{}", d.logs());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if !lease.is_empty() {
            while d.lease_pid(lease)? != Some(new) {
                if killed.elapsed() > Duration::from_secs(10) {
                    bail!(
                        "the restarted {unit} (pid {new}) did not take lease {lease} over\n{}",
                        d.logs()
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        // Work continues: a new request after each restart arrives exactly once.
        let path = format!("/after-{round}");
        let url = format!("http://{a}{path}");
        let deadline = Instant::now() + T;
        loop {
            let out = d.exec_in(
                &att,
                "curl",
                "curl",
                &[
                    "-s",
                    "-m",
                    "5",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    &url,
                ],
                None,
                T,
            )?;
            // Any HTTP status means the decky answered (000: no connection yet).
            if String::from_utf8_lossy(&out.stdout) != "000" || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        d.wait_events(&format!("the request after restarting {unit}"), T, |ev| {
            ev.iter().any(|e| e.field("path") == Some(path.as_str()))
        })?;
    }
    // Let the last events settle, then: no event stored twice.
    std::thread::sleep(Duration::from_secs(2));
    let ev = d.events()?;
    let mut seen = BTreeSet::new();
    for e in ev.iter().filter(|e| e.event_type == "request") {
        assert!(
            seen.insert(e.raw.clone()),
            "duplicated event: {}",
            e.raw_str()
        );
    }
    for path in ["/before-kill", "/after-0", "/after-4"] {
        assert_eq!(
            ev.iter()
                .filter(|e| e.event_type == "request" && e.field("path") == Some(path))
                .count(),
            1,
            "{path}"
        );
    }
    let status = d.decnet(&["status", "--json"])?;
    let j: serde_json::Value = serde_json::from_slice(&status.stdout)
        .with_context(|| String::from_utf8_lossy(&status.stderr).into_owned())?;
    let dep = &j["deployments"][0];
    for w in dep["workers"].as_array().into_iter().flatten() {
        assert_eq!(w["restarts"], 1, "{w}");
        assert_eq!(w["up"], true, "{w}");
    }
    assert_eq!(dep["deckies"][0]["up"], true, "{dep}");
    assert!(
        j["counters"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["counter"] == "restarts.collector" && c["value"] == 1),
        "restart counters in the repository: {j}"
    );
    Ok(())
}

#[test]
fn teardown_removes_exactly_what_deploy_created_and_redeploy_works() -> Result<()> {
    let net = 233;
    let fleet = r#"
[[decky]]
name = "f3-a"
ip = "10.233.0.10"
services = ["http"]
[[decky]]
name = "f3-b"
ip = "10.233.0.11"
os = "windows"
services = ["ftp"]
"#;
    let mut d = Deployment::start("f3", net, fleet, "collector")?;
    // What this deployment created on the host: its bridge and one veth per decky.
    let rec = d.record()?.context("no deployment record")?;
    let mut mine: BTreeSet<String> = rec["veths"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    assert_eq!(mine.len(), 2, "{rec}");
    assert_eq!(rec["bridge_created"], true, "{rec}");
    mine.insert(d.bridge.clone());
    let ours =
        |links: &BTreeSet<String>| -> Vec<String> { links.intersection(&mine).cloned().collect() };
    let created: BTreeSet<String> = host_links()?.into_iter().collect();
    assert_eq!(
        ours(&created).len(),
        3,
        "bridge + 2 veths: {:?}",
        ours(&created)
    );
    assert!(list_namespaces().contains(&"decnet-f3-a".to_owned()));
    let run_dir = d.run_dir.display().to_string();
    let children = processes_with(&run_dir);
    assert!(
        children.len() >= 3,
        "deploy, collector and 2 deckies: {children:?}"
    );

    // teardown stops the running deployment and removes everything it created.
    let out = d.decnet(&["teardown"])?;
    assert!(out.status.success(), "{out:?}");
    let status = d.wait_exit(Duration::from_secs(40))?;
    assert!(status.success(), "{status}");
    let check_clean = |what: &str| -> Result<()> {
        let now: BTreeSet<String> = host_links()?.into_iter().collect();
        assert!(
            ours(&now).is_empty(),
            "{what}: links left: {:?}",
            ours(&now)
        );
        let ns = list_namespaces();
        assert!(
            !ns.iter().any(|n| n.starts_with("decnet-f3-")),
            "{what}: namespaces left: {ns:?}"
        );
        let procs = processes_with(&run_dir);
        assert!(procs.is_empty(), "{what}: processes left: {procs:?}");
        assert!(
            d.record()?.is_none(),
            "{what}: the deployment record is left"
        );
        Ok(())
    };
    check_clean("after teardown")?;
    let again = d.decnet(&["teardown"])?;
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stdout).contains("nothing to tear down"));

    // Deploy again; then crash it (kill -9): its children die with it, and the next deploy
    // cleans up what the crash left and comes up.
    d.launch("collector")?;
    d.crash()?;
    let t = Instant::now();
    while !processes_with(&run_dir).is_empty() && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        d.record()?.is_some(),
        "a crash leaves its record for the next deploy"
    );
    d.launch("collector")?;
    let att = d.add_attacker(200)?;
    let out = d.exec_in(
        &att,
        "curl",
        "curl",
        &[
            "-s",
            "-m",
            "5",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "http://10.233.0.10/",
        ],
        None,
        T,
    )?;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
    let status = d.stop(Duration::from_secs(30))?;
    assert!(status.success(), "{status}\n{}", d.logs());
    // The attacker's veth is on the bridge we created: it goes with it; remove ours first.
    drop(d);
    let now: BTreeSet<String> = host_links()?.into_iter().collect();
    assert!(ours(&now).is_empty(), "links left: {:?}", ours(&now));
    assert!(
        !list_namespaces()
            .iter()
            .any(|n| n.starts_with("decnet-f3-"))
    );
    Ok(())
}

/// Issue 6 end to end: hydra brute-forces a decky's ssh with a 20-word list; the correlator and
/// profiler (run once each, as a script would) make one attacker of it, classed brute_force,
/// with 20 credentials and T1110.
#[test]
fn hydra_against_ssh_is_one_brute_forcing_attacker_with_t1110() -> Result<()> {
    let net = 234;
    let mut d = Deployment::start(
        "f4",
        net,
        r#"
[[decky]]
name = "f4-ssh"
ip = "10.234.0.10"
services = ["ssh"]
"#,
        "collector",
    )?;
    let att = d.add_attacker(200)?;
    let attacker = addr(net, 200).to_string();
    let words: Vec<String> = (0..20).map(|i| format!("w0rd{i:02}!")).collect();
    let list = d.dir.join("words.txt");
    std::fs::write(&list, words.join("\n") + "\n")?;
    let list_s = list.display().to_string();
    let out = d.exec_in(
        &att,
        "hydra",
        "hydra",
        &[
            "-I",
            "-l",
            "root",
            "-P",
            &list_s,
            "-t",
            "4",
            "-w",
            "10",
            "ssh://10.234.0.10",
        ],
        None,
        Duration::from_secs(180),
    )?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("0 valid password"),
        "hydra: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    d.wait_events("20 ssh password attempts", T, |ev| {
        words
            .iter()
            .all(|w| has_cred(ev, "f4-ssh", "ssh", "root", Some(w)))
    })?;
    for worker in ["correlate", "profiler"] {
        let out = d.decnet(&[worker])?;
        assert!(
            out.status.success(),
            "decnet {worker}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let conn =
        rusqlite::Connection::open_with_flags(&d.db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let attackers: Vec<String> = conn
        .prepare("SELECT ip FROM attackers ORDER BY ip")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    assert_eq!(attackers, std::slice::from_ref(&attacker));
    let creds: i64 = conn.query_row(
        "SELECT count(*) FROM credentials WHERE attacker_ip = ? AND decky = 'f4-ssh' AND service = 'ssh'",
        [&attacker],
        |r| r.get(0),
    )?;
    assert_eq!(creds, 20);
    let (behaviour, techniques, factors): (String, String, String) = conn.query_row(
        "SELECT behaviour, techniques, factors FROM attacker_profiles WHERE attacker_ip = ?",
        [&attacker],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    assert_eq!(behaviour, "brute_force", "factors: {factors}");
    let techniques: Vec<String> = serde_json::from_str(&techniques)?;
    assert!(techniques.iter().any(|t| t == "T1110"), "{techniques:?}");
    Ok(())
}
