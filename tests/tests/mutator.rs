//! `decnet mutate` end to end (issue 13): the real `decnet deploy` with its real mutator, real
//! deckies in namespaces, a real `ssh` client (through sshpass) in an attacker namespace, the
//! real sensor. Needs root (CI is root). Names carry the tag `mu…` (bridge `dntmu…`, deckies
//! `mu…-x`, attacker namespaces `dntmu…-attN`).
//!
//! The figures of the issue's closing note are printed by these tests (`--nocapture`): time from
//! a save to the new decky answering (1 and 20 deckies), time to apply a one-service change,
//! dropped connections of untouched deckies during a 50-decky reshuffle.
use std::{
    io::{Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, TcpStream},
    path::Path,
    process::{Child, ChildStdin, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use decnet_e2e::{
    fleet::{Deployment, addr, host_links},
    netns::{list_namespaces, run_in},
    sensor::decnet_bin,
};

const T: Duration = Duration::from_secs(30);

/// Writes the fleet file the way an editor does: a new file renamed over the old one.
fn save(d: &Deployment, deckies: &str) -> Result<Instant> {
    let text = format!(
        "[lan]\nbridge = \"{}\"\nsubnet = \"10.{}.0.0/24\"\nhost_ip = \"10.{}.0.1\"\n\n{deckies}",
        d.bridge, d.net, d.net
    );
    let tmp = d.dir.join(".fleet.toml.swp");
    std::fs::write(&tmp, text)?;
    let t = Instant::now();
    std::fs::rename(&tmp, &d.fleet_file)?;
    Ok(t)
}

/// Whether `ip:port` accepts a TCP connection from namespace `ns`.
fn answers(ns: &str, ip: Ipv4Addr, port: u16) -> bool {
    run_in(ns, move || {
        TcpStream::connect_timeout(&SocketAddr::from((ip, port)), Duration::from_millis(300))
            .is_ok()
    })
    .unwrap_or(false)
}

/// Polls until every `ports` of `ip` answer from `ns`; the time since `t0`.
fn wait_answers(
    ns: &str,
    ip: Ipv4Addr,
    ports: &[u16],
    t0: Instant,
    timeout: Duration,
) -> Result<Duration> {
    loop {
        if ports.iter().all(|&p| answers(ns, ip, p)) {
            return Ok(t0.elapsed());
        }
        if t0.elapsed() > timeout {
            bail!("{ip} {ports:?} do not all answer after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn db(d: &Deployment) -> Result<rusqlite::Connection> {
    let c = rusqlite::Connection::open(&d.db)?;
    c.busy_timeout(Duration::from_secs(10))?;
    Ok(c)
}

fn count(d: &Deployment, sql: &str) -> Result<i64> {
    Ok(db(d)?.query_row(sql, [], |r| r.get(0))?)
}

/// Polls `sql` (one integer) until it is at least `want`.
fn wait_count(d: &Deployment, sql: &str, want: i64, timeout: Duration) -> Result<i64> {
    let t0 = Instant::now();
    loop {
        let n = count(d, sql).unwrap_or(0);
        if n >= want {
            return Ok(n);
        }
        if t0.elapsed() > timeout {
            bail!("{sql}: {n} < {want} after {timeout:?}\n{}", d.logs());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An interactive ssh session (sshpass + ssh -tt) kept open in an attacker namespace.
struct Session {
    child: Child,
    stdin: ChildStdin,
    out: Arc<Mutex<Vec<u8>>>,
}

impl Session {
    fn open(ns: &str, user: &str, password: &str, host: Ipv4Addr) -> Result<Session> {
        let sshpass = decnet_e2e::collector::require_program("sshpass", "sshpass")?;
        decnet_e2e::collector::require_program("ssh", "openssh-client")?;
        let ip = decnet_e2e::netns::ip_binary().context("no ip binary")?;
        let mut child = Command::new(ip)
            .args(["netns", "exec", ns])
            .arg(sshpass)
            .args(["-p", password, "ssh", "-tt"])
            .args([
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "PreferredAuthentications=password",
                "-o",
                "PubkeyAuthentication=no",
                "-o",
                "ConnectTimeout=5",
                "-o",
                "LogLevel=ERROR",
            ])
            .arg(format!("{user}@{host}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdin = child.stdin.take().context("stdin")?;
        let mut stdout = child.stdout.take().context("stdout")?;
        let out = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&out);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Ok(Session { child, stdin, out })
    }

    /// Runs `echo WORD` and waits for `WORD` alone at the start of an output line.
    fn echo(&mut self, word: &str, timeout: Duration) -> Result<()> {
        self.stdin.write_all(format!("echo {word}\n").as_bytes())?;
        self.stdin.flush()?;
        let t0 = Instant::now();
        loop {
            let text = String::from_utf8_lossy(&self.out.lock().unwrap()).into_owned();
            if text.contains(&format!("\n{word}\r")) || text.contains(&format!("\n{word}\n")) {
                return Ok(());
            }
            if let Some(s) = self.child.try_wait()? {
                bail!("the ssh session ended ({s}): {text}");
            }
            if t0.elapsed() > timeout {
                bail!("no {word} from the ssh session after {timeout:?}: {text:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn exists(p: impl AsRef<Path>) -> bool {
    p.as_ref().exists()
}

fn decky(name: &str, ip: Ipv4Addr, rest: &str) -> String {
    format!("[[decky]]\nname = \"{name}\"\nip = \"{ip}\"\n{rest}\n")
}

#[test]
fn a_saved_edit_adds_removes_and_changes_deckies_and_an_open_ssh_session_survives() -> Result<()> {
    let net = 241;
    let (a, b, dd, c) = (addr(net, 10), addr(net, 11), addr(net, 13), addr(net, 12));
    let base = format!(
        "{}{}{}",
        decky("mu1-a", a, "services = [\"ssh\", \"http\"]"),
        decky("mu1-b", b, "services = [\"http\"]"),
        decky("mu1-d", dd, "services = [\"ssh\"]"),
    );
    let mut d = Deployment::start("mu1", net, &base, "collector,sniffer,mutator")?;
    let att = d.add_attacker(200)?;
    wait_answers(&att, a, &[22, 80], Instant::now(), T)?;

    let mut ssh = Session::open(&att, "admin", "admin123", a)?;
    ssh.echo("MUONE", T)
        .context("the interactive session to A")?;
    let (pid_a, _) = d.unit("decky:mu1-a")?;
    let pid_a = pid_a.context("A runs")?;
    let gens = count(&d, "SELECT COUNT(*) FROM fleet_generations")?;

    // Add C, remove B, add redis to D.
    let edited = format!(
        "{}{}{}",
        decky("mu1-a", a, "services = [\"ssh\", \"http\"]"),
        decky("mu1-c", c, "services = [\"ssh\", \"http\", \"ftp\"]"),
        decky("mu1-d", dd, "services = [\"ssh\", \"redis\"]"),
    );
    let saved = save(&d, &edited)?;
    let c_up = wait_answers(&att, c, &[22, 80, 21], saved, T)?;
    println!(
        "figure: save -> 1 new decky answering on all its ports: {:.3} s",
        c_up.as_secs_f64()
    );
    ensure!(
        c_up < Duration::from_secs(3),
        "C answered after {c_up:?} (> 3 s)"
    );
    let d_up = wait_answers(&att, dd, &[6379], saved, T)?;
    println!(
        "figure: save -> one-service change (D +redis) answering: {:.3} s",
        d_up.as_secs_f64()
    );
    wait_count(
        &d,
        "SELECT COUNT(*) FROM fleet_generations WHERE cause = 'file' AND status = 'applied'",
        1,
        T,
    )?;

    // B is gone: namespace, veth, process, record.
    let rec = d.record()?.context("record")?;
    ensure!(
        !list_namespaces().contains(&"decnet-mu1-b".to_owned()),
        "B's namespace is left"
    );
    ensure!(!exists("/run/netns/decnet-mu1-b"));
    ensure!(
        rec["processes"]["decky:mu1-b"].is_null(),
        "B's unit is left: {rec}"
    );
    ensure!(
        !rec["deckies"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["name"] == "mu1-b"),
        "B in the record"
    );
    let links = host_links()?;
    let b_veth = format!("dn{:08x}", fnv1a(&format!("{}/mu1-b", d.bridge)));
    ensure!(!links.contains(&b_veth), "B's veth {b_veth} is left");
    ensure!(!answers(&att, b, 80), "B still answers");

    // A: the same process, the same session.
    ssh.echo("MUTWO", T).context("A's session after the edit")?;
    ensure!(d.unit("decky:mu1-a")?.0 == Some(pid_a), "A's pid changed");

    // One mutation record per touched decky, none for A.
    let conn = db(&d)?;
    let touched: Vec<(String, String)> = conn
        .prepare("SELECT decky, status FROM mutations WHERE kind = 'file' ORDER BY decky")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    ensure!(
        touched
            == [
                ("mu1-b".into(), "applied".into()),
                ("mu1-c".into(), "applied".into()),
                ("mu1-d".into(), "applied".into())
            ],
        "{touched:?}"
    );
    let logs = d.logs();
    ensure!(
        logs.contains("decky mu1-c added (file)"),
        "no decky_mutated line:\n{logs}"
    );

    // The sensor writes flows for C.
    let c_ip = c.to_string();
    let t0 = Instant::now();
    loop {
        let _ = answers(&att, c, 80);
        let n: i64 = conn.query_row(
            "SELECT COUNT(*) FROM flows WHERE dst_ip = ?1 OR src_ip = ?1",
            [&c_ip],
            |r| r.get(0),
        )?;
        if n > 0 {
            break;
        }
        ensure!(t0.elapsed() < T, "no flows for C:\n{}", d.logs());
        std::thread::sleep(Duration::from_millis(200));
    }

    // An invalid edit (duplicate IP) changes nothing and says why; fixing it applies it.
    let gens_before = count(&d, "SELECT COUNT(*) FROM fleet_generations")?;
    ensure!(gens_before == gens + 1, "{gens_before} generations");
    let bad = format!("{edited}{}", decky("mu1-e", c, "services = [\"http\"]"));
    save(&d, &bad)?;
    wait_count(
        &d,
        "SELECT COUNT(*) FROM mutations WHERE decky = '(fleet)' AND status = 'invalid'",
        1,
        T,
    )?;
    let why: String = conn.query_row(
        "SELECT detail FROM mutations WHERE decky = '(fleet)'",
        [],
        |r| r.get(0),
    )?;
    ensure!(why.contains("is already used by decky"), "{why}");
    ensure!(
        d.logs()
            .contains("fleet file change refused, nothing changed"),
        "not in the log"
    );
    ensure!(count(&d, "SELECT COUNT(*) FROM fleet_generations")? == gens_before);
    ensure!(!list_namespaces().contains(&"decnet-mu1-e".to_owned()));
    let e = addr(net, 14);
    let fixed = format!("{edited}{}", decky("mu1-e", e, "services = [\"http\"]"));
    let saved = save(&d, &fixed)?;
    wait_answers(&att, e, &[80], saved, T)?;
    ssh.echo("MUTHREE", T)?;
    ensure!(d.unit("decky:mu1-a")?.0 == Some(pid_a), "A's pid changed");
    drop(ssh);

    // Teardown leaves nothing, C and E included.
    let created = d.created()?;
    ensure!(created.namespaces.contains(&"decnet-mu1-c".to_owned()));
    d.stop(T)?;
    let out = d.decnet(&["teardown"])?;
    ensure!(out.status.success(), "{out:?}");
    d.wait_clean(&created, T)?;
    Ok(())
}

/// FNV-1a (32 bits), as deploy names veths.
fn fnv1a(s: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in s.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

fn mutate(d: &Deployment, args: &[&str]) -> Result<Command> {
    let mut cmd = Command::new(decnet_bin()?);
    cmd.arg("mutate")
        .args(args)
        .arg("--fleet")
        .arg(&d.fleet_file)
        .env("DECNET_DB_URL", format!("sqlite://{}", d.db.display()))
        .env_remove("DECNET_DB_TYPE")
        .env_remove("DECNET_PARENT_PID")
        .stdin(Stdio::null());
    Ok(cmd)
}

fn services_of(d: &Deployment, decky: &str) -> Result<Vec<(String, u16)>> {
    let rec = d.record()?.context("record")?;
    let x = rec["deckies"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|x| x["name"] == decky)
        .with_context(|| format!("{decky} not in the record"))?;
    let mut v: Vec<(String, u16)> = x["services"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            (
                s[0].as_str().unwrap_or("").to_owned(),
                s[1].as_u64().unwrap_or(0) as u16,
            )
        })
        .collect();
    v.sort();
    Ok(v)
}

#[test]
fn queued_requests_wait_for_the_mutator_and_a_kill_mid_apply_converges_once() -> Result<()> {
    let net = 242;
    let x = addr(net, 10);
    let fleet = decky("mu2-x", x, "archetype = \"web-server\"");
    // No mutator among the workers: it is "stopped".
    let mut d = Deployment::start("mu2", net, &fleet, "collector")?;
    let att = d.add_attacker(200)?;
    let before = services_of(&d, "mu2-x")?;

    // "mutate now", queued as the API queues it, with no mutator running.
    let conn = db(&d)?;
    let queue = |conn: &rusqlite::Connection| -> Result<i64> {
        conn.execute(
            "INSERT INTO mutation_requests (decky, action, args, requested_by, requested_at, \
             status, claimed_by, reason, updated_at) VALUES ('mu2-x', 'mutate', '{}', 'admin', \
             '2026-12-07T00:00:00.000000000Z', 'pending', '', '', '2026-12-07T00:00:00.000000000Z')",
            [],
        )?;
        Ok(conn.last_insert_rowid())
    };
    let r1 = queue(&conn)?;
    std::thread::sleep(Duration::from_millis(500));
    let st: String = conn.query_row(
        "SELECT status FROM mutation_requests WHERE id = ?1",
        [r1],
        |r| r.get(0),
    )?;
    ensure!(st == "pending", "{st}");

    // The mutator starts (once: what is pending) and applies it once.
    let out = mutate(&d, &[])?.output()?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (st, reason): (String, String) = conn.query_row(
        "SELECT status, reason FROM mutation_requests WHERE id = ?1",
        [r1],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    ensure!(st == "applied", "{st}: {reason}\n{}", d.logs());
    let after1 = services_of(&d, "mu2-x")?;
    ensure!(after1 != before, "the services did not rotate: {before:?}");
    for (_, port) in &after1 {
        ensure!(
            answers(&att, x, *port),
            "port {port} of the rotated decky does not answer"
        );
    }
    ensure!(
        count(
            &d,
            "SELECT COUNT(*) FROM mutations WHERE decky = 'mu2-x' AND kind = 'operator'"
        )? == 1
    );

    // A second request; the mutator is killed (-9) as soon as its generation is written, in
    // the middle of the apply; a restarted mutator converges with one record.
    let r2 = queue(&conn)?;
    let mut m = mutate(&d, &["--daemon"])?
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let gen_sql = format!("SELECT COUNT(*) FROM fleet_generations WHERE request_id = {r2}");
    wait_count(&d, &gen_sql, 1, T)?;
    m.kill()?;
    m.wait()?;
    let (st, claimed): (String, String) = conn.query_row(
        "SELECT status, claimed_by FROM mutation_requests WHERE id = ?1",
        [r2],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    ensure!(st == "claimed" && !claimed.is_empty(), "{st} {claimed}");
    let out = mutate(&d, &[])?.output()?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let st: String = conn.query_row(
        "SELECT status FROM mutation_requests WHERE id = ?1",
        [r2],
        |r| r.get(0),
    )?;
    ensure!(st == "applied", "{st}\n{}", d.logs());
    ensure!(count(&d, &gen_sql)? == 1, "one generation for the request");
    let g2: i64 = conn.query_row(
        "SELECT id FROM fleet_generations WHERE request_id = ?1 AND status = 'applied'",
        [r2],
        |r| r.get(0),
    )?;
    ensure!(
        count(
            &d,
            &format!(
                "SELECT COUNT(*) FROM mutations WHERE decky = 'mu2-x' AND detail LIKE '%\"generation\":{g2},%'"
            )
        )? == 1,
        "one mutation record for generation {g2}"
    );
    ensure!(count(&d, "SELECT COUNT(*) FROM mutations WHERE decky = 'mu2-x'")? == 2);
    let after2 = services_of(&d, "mu2-x")?;
    let want: String = conn.query_row(
        "SELECT fleet FROM fleet_generations WHERE id = ?1",
        [g2],
        |r| r.get(0),
    )?;
    let want: serde_json::Value = serde_json::from_str(&want)?;
    let mut want: Vec<(String, u16)> = want["deckies"][0]["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["kind"].as_str().unwrap().to_owned(),
                s["port"].as_u64().unwrap() as u16,
            )
        })
        .collect();
    want.sort();
    ensure!(after2 == want, "runs {after2:?}, requested {want:?}");

    // Two mutators: the second refuses, naming the first.
    let ready = d.dir.join("mutator.ready").display().to_string();
    let mut first = mutate(&d, &["--daemon", "--ready-file", &ready])?
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let t0 = Instant::now();
    while !exists(d.dir.join("mutator.ready")) {
        ensure!(t0.elapsed() < T, "the first mutator is not ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = mutate(&d, &["--daemon"])?.output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(!out.status.success(), "a second mutator ran");
    ensure!(
        err.contains(&first.id().to_string()),
        "does not name the first: {err}"
    );
    let _ = first.kill();
    let _ = first.wait();
    let created = d.created()?;
    d.stop(T)?;
    d.wait_clean(&created, T)?;
    Ok(())
}

/// The pool a decky of the web-server archetype rotates within, as the issue's realism rule
/// has it: what a Linux web server runs.
const WEB_POOL: [&str; 4] = ["ssh", "http", "https", "ftp"];

#[test]
fn a_schedule_of_seconds_rotates_services_within_the_pool() -> Result<()> {
    let net = 243;
    let x = addr(net, 10);
    let fleet = format!(
        "{}{}",
        decky(
            "mu3-x",
            x,
            "archetype = \"web-server\"\nmutate_interval = \"2s\""
        ),
        decky("mu3-y", addr(net, 11), "archetype = \"database\""),
    );
    let mut d = Deployment::start("mu3", net, &fleet, "collector,mutator")?;
    let (pid_y, _) = d.unit("decky:mu3-y")?;
    wait_count(
        &d,
        "SELECT COUNT(*) FROM mutations WHERE decky = 'mu3-x' AND kind = 'schedule' AND status = 'applied'",
        3,
        Duration::from_secs(40),
    )?;
    let conn = db(&d)?;
    let details: Vec<String> = conn
        .prepare("SELECT detail FROM mutations WHERE decky = 'mu3-x' ORDER BY ts")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut sets = Vec::new();
    for dt in &details {
        let v: serde_json::Value = serde_json::from_str(dt)?;
        let kinds: Vec<String> = v["after"]["services"]
            .as_array()
            .context("after.services")?
            .iter()
            .map(|s| s["kind"].as_str().unwrap_or("").to_owned())
            .collect();
        ensure!(!kinds.is_empty());
        for k in &kinds {
            ensure!(
                WEB_POOL.contains(&k.as_str()),
                "{k} is outside the web-server pool: {dt}"
            );
        }
        let mut uniq = kinds.clone();
        uniq.sort();
        uniq.dedup();
        ensure!(uniq.len() == kinds.len(), "a service twice: {dt}");
        ensure!(
            v["before"]["services"] != v["after"]["services"],
            "not a rotation: {dt}"
        );
        sets.push(uniq);
    }
    ensure!(sets.len() >= 3);
    // The decky without a schedule is untouched.
    ensure!(d.unit("decky:mu3-y")?.0 == pid_y, "y was restarted");
    ensure!(count(&d, "SELECT COUNT(*) FROM mutations WHERE decky = 'mu3-y'")? == 0);
    let created = d.created()?;
    d.stop(T)?;
    d.wait_clean(&created, T)?;
    Ok(())
}

/// Keeps a redis connection to an untouched decky busy (PING every 200 ms) until told to stop;
/// the number of PINGs that went unanswered (0: the connection never dropped).
fn pinger(
    ns: &str,
    ip: Ipv4Addr,
    stop: Arc<Mutex<bool>>,
) -> Result<std::thread::JoinHandle<Result<u64>>> {
    let (tx, rx) = std::sync::mpsc::channel();
    let ns = ns.to_owned();
    let h = std::thread::spawn(move || -> Result<u64> {
        decnet_e2e::netns::enter(&ns)?;
        let mut s = TcpStream::connect_timeout(&SocketAddr::from((ip, 6379)), T)?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut dropped = 0;
        let mut first = true;
        loop {
            let ok = s.write_all(b"PING\r\n").is_ok() && {
                let mut buf = [0u8; 7];
                s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
            };
            if first {
                let _ = tx.send(ok);
                first = false;
            }
            if !ok {
                dropped += 1;
                break;
            }
            if *stop.lock().unwrap() {
                return Ok(dropped);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(dropped)
    });
    ensure!(
        rx.recv_timeout(T).unwrap_or(false),
        "no first PONG from {ip}"
    );
    Ok(h)
}

#[test]
fn figures_twenty_deckies_added_at_once_and_a_fifty_decky_reshuffle_drops_nothing() -> Result<()> {
    let net = 244;
    let untouched: String = (1..=10)
        .map(|i| {
            decky(
                &format!("mu4-u{i:02}"),
                addr(net, 10 + i),
                "archetype = \"database\"",
            )
        })
        .collect();
    let old: String = (1..=25)
        .map(|i| {
            decky(
                &format!("mu4-o{i:02}"),
                addr(net, 30 + i),
                "services = [\"http\"]",
            )
        })
        .collect();
    let mut d = Deployment::start(
        "mu4",
        net,
        &format!("{untouched}{old}"),
        "collector,mutator",
    )?;
    let att = d.add_attacker(250)?;
    let pids: Vec<Option<u32>> = (1..=10)
        .map(|i| d.unit(&format!("decky:mu4-u{i:02}")).map(|u| u.0))
        .collect::<Result<_>>()?;
    let stop = Arc::new(Mutex::new(false));
    let pingers: Vec<_> = (1..=10)
        .map(|i| pinger(&att, addr(net, 10 + i), Arc::clone(&stop)))
        .collect::<Result<_>>()?;

    // 20 deckies added in one save.
    let new20: String = (1..=20)
        .map(|i| {
            decky(
                &format!("mu4-n{i:02}"),
                addr(net, 60 + i),
                "services = [\"http\"]",
            )
        })
        .collect();
    let saved = save(&d, &format!("{untouched}{old}{new20}"))?;
    let mut last = Duration::ZERO;
    for i in 1..=20 {
        last = last.max(wait_answers(
            &att,
            addr(net, 60 + i),
            &[80],
            saved,
            Duration::from_secs(60),
        )?);
    }
    println!(
        "figure: save -> 20 new deckies all answering: {:.3} s",
        last.as_secs_f64()
    );

    // 50 deckies reshuffled in one save: 25 removed, 25 added.
    let new25: String = (1..=25)
        .map(|i| {
            decky(
                &format!("mu4-p{i:02}"),
                addr(net, 100 + i),
                "services = [\"http\"]",
            )
        })
        .collect();
    let saved = save(&d, &format!("{untouched}{new20}{new25}"))?;
    let mut last = Duration::ZERO;
    for i in 1..=25 {
        last = last.max(wait_answers(
            &att,
            addr(net, 100 + i),
            &[80],
            saved,
            Duration::from_secs(90),
        )?);
    }
    wait_count(
        &d,
        "SELECT COUNT(*) FROM fleet_generations WHERE cause = 'file' AND status = 'applied'",
        2,
        T,
    )?;
    for i in 1..=25 {
        ensure!(
            !answers(&att, addr(net, 30 + i), 80),
            "o{i:02} still answers"
        );
    }
    println!(
        "figure: save -> 50-decky reshuffle (25 removed, 25 added) applied: {:.3} s",
        last.as_secs_f64()
    );
    std::thread::sleep(Duration::from_secs(1));
    *stop.lock().unwrap() = true;
    let mut dropped = 0;
    for p in pingers {
        dropped += p
            .join()
            .map_err(|_| anyhow::anyhow!("a pinger panicked"))??;
    }
    println!(
        "figure: untouched deckies' connections dropped during the reshuffle: {dropped} of 10"
    );
    ensure!(
        dropped == 0,
        "{dropped} connections to untouched deckies dropped"
    );
    for (i, pid) in pids.iter().enumerate() {
        ensure!(
            d.unit(&format!("decky:mu4-u{:02}", i + 1))?.0 == *pid,
            "u{:02} restarted",
            i + 1
        );
    }
    let created = d.created()?;
    d.stop(Duration::from_secs(60))?;
    d.wait_clean(&created, Duration::from_secs(60))?;
    Ok(())
}
