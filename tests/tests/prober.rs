//! `decnet prober` end to end (issue 12, part 1): a real fleet under `decnet deploy` with one
//! deliberately flawed decky per check and one clean decky; the prober, run by the deploy from
//! its vantage namespace on the bridge, must find each flaw with the right check and severity
//! and store only passes for the clean decky. The results are read back with rusqlite, not
//! through decnet's repository. Needs root (namespaces, raw sockets) and Debian's p0f package
//! (`/etc/p0f/p0f.fp`, p0f's own database, is what the TCP/IP stack is compared with).
use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use decnet_e2e::{fleet::Deployment, netns::list_namespaces};

const NET: u8 = 213;

/// (decky, check, subject) → (severity, expected, seen), straight from the SQLite file.
type Results = BTreeMap<(String, String, String), (String, String, String)>;

fn results(d: &Deployment) -> Result<Results> {
    if !d.db.exists() {
        return Ok(Results::new());
    }
    let conn =
        rusqlite::Connection::open_with_flags(&d.db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    let mut st = match conn
        .prepare("SELECT decky, check_name, subject, severity, expected, seen FROM probe_results")
    {
        Ok(st) => st,
        Err(_) => return Ok(Results::new()), // not migrated yet
    };
    let rows = st.query_map([], |r| {
        Ok((
            (r.get(0)?, r.get(1)?, r.get(2)?),
            (r.get(3)?, r.get(4)?, r.get(5)?),
        ))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn show(r: &Results) -> String {
    r.iter()
        .map(|((d, c, s), (sev, exp, seen))| {
            format!("{d} {c} {s}: {sev} (expected {exp}; seen {seen})")
        })
        .collect::<Vec<_>>()
        .join("\n  ")
}

#[test]
fn realism_finds_each_flaw_with_its_check_and_the_clean_decky_has_only_passes() -> Result<()> {
    ensure!(
        std::path::Path::new("/etc/p0f/p0f.fp").exists(),
        "the prober's stack check compares with p0f's database: install Debian's p0f package \
         (`apt-get install p0f`, which `cargo xtask setup` does)"
    );
    let fleet = format!(
        r#"
[[decky]]
name = "prr-clean"
ip = "10.{NET}.0.10"
archetype = "web-server"

[[decky]]
name = "prr-twin-a"
ip = "10.{NET}.0.11"
os = "linux"
services = ["ssh"]

[[decky]]
name = "prr-twin-b"
ip = "10.{NET}.0.12"
os = "linux"
services = ["ssh"]

[[decky]]
name = "prr-win"
ip = "10.{NET}.0.13"
os = "windows"
services = ["http"]

[[decky]]
name = "prr-cowrie"
ip = "10.{NET}.0.14"
os = "linux"
services = [{{ kind = "ssh", banner = "SSH-2.0-OpenSSH_6.0p1 Debian-4+deb7u2" }}]
"#
    );
    let mut d = Deployment::new("prr", NET, &fleet)?;
    // First run: every decky makes its host key. Then twin-b gets twin-a's state (a copied
    // state directory, the classic way a cloned honeypot shares its key).
    d.launch("none")?;
    d.stop(Duration::from_secs(30))?;
    let keys = d.state_dir.join("deckies");
    let key = |n: &str| keys.join(n).join("ssh_host_ed25519_key");
    std::fs::copy(key("prr-twin-a"), key("prr-twin-b")).context("copying twin-a's host key")?;

    // Second run with the prober (and the collector, so that the deckies' events of the probes
    // are stored: the correlator must not make an attacker of the vantage).
    d.launch("collector,prober")?;
    let vantage_ns = "decnet-prober.dntprr";
    ensure!(
        list_namespaces().contains(&vantage_ns.to_owned()),
        "no vantage namespace {vantage_ns}: {:?}",
        list_namespaces()
    );
    let created = d.created()?;
    ensure!(created.namespaces.contains(&vantage_ns.to_owned()));

    // Until the first sweep has stored every decky's fleet-wide checks.
    let deadline = Instant::now() + Duration::from_secs(60);
    let r = loop {
        let r = results(&d)?;
        let fleet_rows = r.keys().filter(|(_, c, _)| c.starts_with("fleet_")).count();
        // clean: key, certificate, page; twins and cowrie: key; win: page.
        if fleet_rows >= 7 && r.keys().any(|(_, c, _)| c == "tcp_stack") {
            break r;
        }
        if Instant::now() > deadline {
            bail!(
                "no complete sweep within 60 s; results:\n  {}\ndeploy log:\n{}",
                show(&r),
                d.logs()
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    let get = |decky: &str, check: &str| -> Result<&(String, String, String)> {
        r.iter()
            .find(|((d, c, _), _)| d == decky && c == check)
            .map(|(_, v)| v)
            .with_context(|| format!("no {check} for {decky}:\n  {}", show(&r)))
    };
    let sev = |decky: &str, check: &str| -> Result<String> { Ok(get(decky, check)?.0.clone()) };

    // Shared host key: both twins, high, each naming the other.
    for (me, other) in [("prr-twin-a", "prr-twin-b"), ("prr-twin-b", "prr-twin-a")] {
        let (s, _, seen) = get(me, "fleet_ssh_host_key")?;
        ensure!(
            s == "high" && seen.contains(other),
            "{me}: {s} {seen}\n  {}",
            show(&r)
        );
    }
    // A Windows persona on Linux's stack: the SYN-ACK's options are Linux's.
    let (s, exp, seen) = get("prr-win", "tcp_stack")?;
    ensure!(
        s == "high",
        "prr-win tcp_stack: {s} (expected {exp}; seen {seen})"
    );
    ensure!(seen.contains("Linux"), "names Linux: {seen}");
    ensure!(
        sev("prr-win", "tcp_ttl")? == "pass",
        "its TTL (128) is the persona's"
    );
    // Cowrie's default banner.
    let (s, _, seen) = get("prr-cowrie", "honeypot_default")?;
    ensure!(
        s == "critical" && seen.contains("Cowrie"),
        "prr-cowrie: {s} {seen}"
    );
    // The flaws are found only where they are.
    ensure!(sev("prr-cowrie", "fleet_ssh_host_key")? == "pass");
    ensure!(sev("prr-twin-a", "honeypot_default")? == "pass");
    ensure!(sev("prr-twin-a", "tcp_stack")? == "pass");

    // The clean decky: every check it has passes, and it has every kind.
    let clean: Vec<_> = r.iter().filter(|((d, _, _), _)| d == "prr-clean").collect();
    let bad: Vec<String> = clean
        .iter()
        .filter(|(_, (s, _, _))| s != "pass")
        .map(|((_, c, s), (sev, e, seen))| format!("{c} {s}: {sev} (expected {e}; seen {seen})"))
        .collect();
    ensure!(
        bad.is_empty(),
        "prr-clean has findings:\n  {}",
        bad.join("\n  ")
    );
    let checks: std::collections::BTreeSet<&str> =
        clean.iter().map(|((_, c, _), _)| c.as_str()).collect();
    for c in [
        "service_answers",
        "banner_matches_persona",
        "honeypot_default",
        "os_consistency",
        "tcp_ttl",
        "tcp_stack",
        "tcp_rst_ttl",
        "mac_vendor",
        "fleet_ssh_host_key",
        "fleet_tls_certificate",
        "fleet_http_page",
    ] {
        ensure!(
            checks.contains(c),
            "prr-clean has no {c} result: {checks:?}"
        );
    }
    // ssh, http, https: four per-service checks each.
    ensure!(
        clean.len() >= 3 * 4 + 3 + 1 + 3,
        "{} results for prr-clean",
        clean.len()
    );

    // The vantage is never an attacker: its probes reached the deckies' logs, and the
    // correlator took them in without making an attacker of it.
    let vantage_ip = format!("10.{NET}.0.254");
    d.wait_events(
        "the probes' connect events",
        Duration::from_secs(20),
        |ev| {
            ev.iter()
                .any(|e| e.attacker_ip.as_deref() == Some(vantage_ip.as_str()))
        },
    )?;
    let out = d.decnet(&["correlator"])?;
    ensure!(
        out.status.success(),
        "decnet correlator: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let conn = rusqlite::Connection::open(&d.db)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    let attackers: i64 = conn.query_row(
        "SELECT COUNT(*) FROM attackers WHERE ip = ?",
        [&vantage_ip],
        |r| r.get(0),
    )?;
    ensure!(
        attackers == 0,
        "the vantage {vantage_ip} became an attacker"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        stdout.contains("events_of_prober"),
        "the correlator counted no prober events: {stdout}"
    );

    // Teardown removes the vantage with the deckies.
    d.stop(Duration::from_secs(30))?;
    d.wait_clean(&created, Duration::from_secs(10))?;
    Ok(())
}
