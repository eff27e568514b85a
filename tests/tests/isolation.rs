//! The sensor host is not part of the decoy network (issue 19): the deckies log to the
//! collector over a Unix socket in the deployment's run directory, nothing of the collector
//! listens on the bridge, a process that is no decky is refused on that socket, and a decky
//! cannot log as another one; the deployment's nftables table drops (and counts) everything the
//! decoy LAN sends the host (nmap sees every port filtered), and goes with the deployment — also
//! after a kill -9, through teardown — each deployment with its own.
//!
//! Needs root. Own bridge (`dntiso`), subnet 10.251.0.0/24 and decky names, so it runs beside
//! the other fleet tests. Traffic stays inside the test's own namespaces and the host's side of
//! its bridge.
use std::{
    io::{Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    os::unix::net::UnixStream,
    process::Command,
    time::Duration,
};

use anyhow::{Result, ensure};
use decnet_e2e::{
    collector::open_ro,
    fleet::{Deployment, addr},
    frames,
    netns::{ip, run_in},
};

const NET: u8 = 251;
const FORGED_IP: &str = "198.51.100.77";

fn fleet() -> String {
    format!(
        r#"
[[decky]]
name = "iso-a"
ip = "10.{NET}.0.10"
services = ["ssh", "http"]

[[decky]]
name = "iso-b"
ip = "10.{NET}.0.11"
services = ["http"]
"#
    )
}

/// One forged decoy line claiming `decky`'s ssh saw `FORGED_IP` try a made-up credential.
fn forged(decky: &str, n: u32) -> String {
    format!(
        r#"<134>1 2026-12-02T06:00:00.000001Z {decky} ssh - auth_attempt [relay@55555 principal="forged-user" secret_printable="forged-pw" secret_kind="password" src_ip="{FORGED_IP}" src_port="4{n:04}"]"#
    )
}

fn octet(line: &str) -> Vec<u8> {
    format!("{} {line}", line.len()).into_bytes()
}

/// The collector's counter `name` as it recorded it at exit.
fn counter(d: &Deployment, name: &str) -> Result<i64> {
    let conn = open_ro(&d.db)?;
    Ok(conn
        .query_row(
            "SELECT value FROM worker_counters WHERE worker = 'collector' AND name = ?",
            [name],
            |r| r.get(0),
        )
        .unwrap_or(-1))
}

/// Whether `nft` lists table `inet <table>`.
fn table_exists(table: &str) -> Result<bool> {
    let nft = decnet_e2e::collector::require_program("nft", "nftables")?;
    let out = Command::new(nft)
        .args(["list", "table", "inet", table])
        .output()?;
    Ok(out.status.success())
}

/// Packets the fence of table `inet <table>` dropped so far (nft's own counter).
fn fence_drops(table: &str) -> Result<u64> {
    let nft = decnet_e2e::collector::require_program("nft", "nftables")?;
    let out = Command::new(nft)
        .args(["-j", "list", "counter", "inet", table, "dropped"])
        .output()?;
    ensure!(out.status.success(), "nft list counter: {out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    v["nftables"]
        .as_array()
        .and_then(|a| a.iter().find_map(|i| i["counter"]["packets"].as_u64()))
        .ok_or_else(|| anyhow::anyhow!("no counter in {v}"))
}

/// Whether a Unix-socket peer was closed by the collector (EOF or reset) within 5 s.
fn closed(s: &mut UnixStream) -> bool {
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut b = [0u8; 16];
    matches!(s.read(&mut b), Ok(0) | Err(_))
}

#[test]
fn forged_events_from_the_decoy_lan_or_the_host_are_never_stored() -> Result<()> {
    let mut d = Deployment::start("iso", NET, &fleet(), "collector,sniffer")?;
    ensure!(table_exists("decnet_dntiso")?, "no fence table for dntiso");
    let host = addr(NET, 1);
    let att = d.add_attacker(66)?;
    // A host service listening on every interface (like an unrelated daemon would).
    let daemon = TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0))?;
    let daemon_port = daemon.local_addr()?.port();
    ensure!(
        TcpStream::connect((Ipv4Addr::LOCALHOST, daemon_port)).is_ok(),
        "the host's own daemon answers on loopback"
    );
    let sock = d
        .run_dir
        .join(format!("{}.d", d.bridge))
        .join("collector.sock");
    ensure!(sock.exists(), "no collector socket at {}", sock.display());

    // From the decoy LAN: the collector's old TCP and UDP port on the host's bridge address
    // (and the deckies' gateway) has no listener any more.
    let lan = run_in(&att, move || -> Result<(bool, usize)> {
        let to = SocketAddr::from((host, 5514));
        let tcp = TcpStream::connect_timeout(&to, Duration::from_secs(1))
            .and_then(|mut s| s.write_all(&octet(&forged("iso-a", 1))));
        let udp = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
        let sent = (0..5)
            .filter(|i| udp.send_to(forged("iso-a", 10 + i).as_bytes(), to).is_ok())
            .count();
        Ok((tcp.is_err(), sent))
    })??;
    ensure!(
        lan.0,
        "a TCP connection to {host}:5514 from the decoy LAN was accepted"
    );
    // The same datagrams with decky iso-b's address as their source (spoofed, raw frames to the
    // host's MAC on the bridge): dropped like any other.
    let mac_text = std::fs::read_to_string(format!("/sys/class/net/{}/address", d.bridge))?;
    let mut bridge_mac = [0u8; 6];
    for (b, hex) in bridge_mac.iter_mut().zip(mac_text.trim().split(':')) {
        *b = u8::from_str_radix(hex, 16)?;
    }
    let spoofed: Vec<Vec<u8>> = (0..5)
        .map(|i| {
            let ip = frames::Ipv4::new(addr(NET, 11), host, 17).build(&frames::udp(
                40100 + i,
                5514,
                forged("iso-b", 20 + u32::from(i)).as_bytes(),
            ));
            frames::ethernet(bridge_mac, [0x02, 0, 0, 0, 0, 0x66], &[], 0x0800, &ip)
        })
        .collect();
    let before = fence_drops("decnet_dntiso")?;
    run_in(&att, move || frames::send_frames("eth0", &spoofed))??;
    let mut after = before;
    for _ in 0..50 {
        after = fence_drops("decnet_dntiso")?;
        if after >= before + 5 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    ensure!(
        after >= before + 5,
        "the 5 spoofed datagrams were not dropped by the fence ({before} → {after})"
    );

    // Every address of the host, through it as the LAN's gateway: none answers.
    ip(&[
        "-n",
        &att,
        "route",
        "add",
        "default",
        "via",
        &host.to_string(),
    ])?;
    let mut host_addrs = vec![host];
    for line in ip(&["-4", "-o", "addr", "show", "scope", "global"])?.lines() {
        if let Some(a) = line
            .split_whitespace()
            .skip_while(|w| *w != "inet")
            .nth(1)
            .and_then(|cidr| cidr.split('/').next())
            .and_then(|a| a.parse::<Ipv4Addr>().ok())
            && !host_addrs.contains(&a)
        {
            host_addrs.push(a);
        }
    }
    for a in host_addrs {
        let reached = run_in(&att, move || {
            TcpStream::connect_timeout(&SocketAddr::from((a, daemon_port)), Duration::from_secs(1))
                .is_ok()
        })?;
        ensure!(
            !reached,
            "the host's daemon on {a}:{daemon_port} is reachable from the decoy LAN"
        );
    }

    // nmap from the decoy LAN: every port of the host filtered (no answer at all: not even a
    // reset that would say a host is there).
    let ports = format!("1-200,2024,5514,{daemon_port}");
    let target = host.to_string();
    let out = d.exec_in(
        &att,
        "nmap",
        "nmap",
        &[
            "-Pn",
            "-n",
            "-sS",
            "-T4",
            "--max-retries",
            "1",
            "-p",
            &ports,
            &target,
        ],
        None,
        Duration::from_secs(120),
    )?;
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    ensure!(
        report.contains("filtered")
            && !report.contains(" open ")
            && !report.contains(" closed ")
            && !report.contains("closed tcp ports"),
        "nmap sees more than filtered ports on {host}:\n{report}"
    );

    // From the host, a process that is no decky: refused on the socket.
    let mut s = UnixStream::connect(&sock)?;
    let _ = s.write_all(&octet(&forged("iso-a", 2)));
    ensure!(
        closed(&mut s),
        "a host process was not refused on the collector socket"
    );

    // From a process inside decky iso-b's network namespace: it may log as iso-b only.
    let own = format!(
        r#"<134>1 2026-12-02T06:00:01.000001Z iso-b http - request [relay@55555 src_ip="10.{NET}.0.66" src_port="40000" method="GET" path="/isolation-probe"]"#
    );
    let sock_s = sock.to_string_lossy().into_owned();
    let out = d.exec_in(
        "decnet-iso-b",
        env!("CARGO_BIN_EXE_unix-send"),
        "decnet-e2e (this crate)",
        &[&sock_s, &forged("iso-a", 3), &own],
        None,
        Duration::from_secs(20),
    )?;
    ensure!(
        out.status.success(),
        "unix-send in iso-b's namespace: {out:?}"
    );
    d.wait_events("iso-b's own line", Duration::from_secs(20), |ev| {
        ev.iter()
            .any(|e| e.decky == "iso-b" && e.fields.to_string().contains("/isolation-probe"))
    })?;

    // A real attacker's request to decky iso-a still becomes an event.
    let a_ip = addr(NET, 10);
    run_in(&att, move || -> Result<()> {
        let mut s =
            TcpStream::connect_timeout(&SocketAddr::from((a_ip, 80)), Duration::from_secs(5))?;
        s.write_all(b"GET /real-attack HTTP/1.0\r\nHost: x\r\n\r\n")?;
        let mut sink = Vec::new();
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = s.read_to_end(&mut sink);
        Ok(())
    })??;
    d.wait_events("the attacker's request", Duration::from_secs(20), |ev| {
        ev.iter()
            .any(|e| e.decky == "iso-a" && e.fields.to_string().contains("/real-attack"))
    })?;

    d.stop(Duration::from_secs(20))?;
    let events = d.events()?;
    let forged_rows: Vec<_> = events
        .iter()
        .filter(|e| {
            e.attacker_ip.as_deref() == Some(FORGED_IP) || e.fields.to_string().contains("forged")
        })
        .collect();
    ensure!(
        forged_rows.is_empty(),
        "forged events stored: {forged_rows:?}"
    );
    ensure!(
        d.credentials()?
            .iter()
            .all(|c| !format!("{c:?}").contains("forged")),
        "a forged credential was stored"
    );
    let dropped: i64 = open_ro(&d.db)?
        .query_row(
            "SELECT value FROM worker_counters WHERE worker = 'supervisor' AND name = 'fence.dropped'",
            [],
            |r| r.get(0),
        )
        .unwrap_or(-1);
    // 203 ports by nmap, the TCP connects (with retransmissions) and 5 datagrams at least.
    ensure!(dropped >= 200, "fence.dropped = {dropped}");
    ensure!(
        !table_exists("decnet_dntiso")?,
        "the fence outlived its deployment"
    );
    // The probes are attacker activity in the repository (flows, then a detected scan of the
    // host); the host itself, whose status checks the deckies answered, is no attacker.
    let out = d.decnet(&["correlator"])?;
    ensure!(out.status.success(), "decnet correlator: {out:?}");
    let db = open_ro(&d.db)?;
    let scans: i64 = db.query_row(
        "SELECT COUNT(*) FROM scans WHERE attacker_ip = ? AND detected = 1",
        [addr(NET, 66).to_string()],
        |r| r.get(0),
    )?;
    ensure!(
        scans >= 1,
        "no detected scan by the attacker that probed the host"
    );
    let host_rows: i64 = db.query_row(
        "SELECT COUNT(*) FROM attackers WHERE ip = ?",
        [host.to_string()],
        |r| r.get(0),
    )?;
    ensure!(host_rows == 0, "the sensor host became an attacker");
    let refused = counter(&d, "connections_refused_peer")?;
    let impersonated = counter(&d, "connections_impersonated")?;
    ensure!(refused >= 1, "refused_peer = {refused}\n{}", d.logs());
    ensure!(
        impersonated == 1,
        "impersonated = {impersonated}\n{}",
        d.logs()
    );
    Ok(())
}

/// Two deployments have a fence each; a killed deploy's fence is removed by teardown, leaving
/// the other's alone.
#[test]
fn each_deployment_has_its_own_fence_and_teardown_removes_a_killed_ones() -> Result<()> {
    let one = |name: &str, net: u8| {
        format!("\n[[decky]]\nname = \"{name}\"\nip = \"10.{net}.0.10\"\nservices = [\"http\"]\n")
    };
    let mut a = Deployment::start("isf1", 252, &one("isf1-a", 252), "none")?;
    let mut b = Deployment::start("isf2", 253, &one("isf2-a", 253), "none")?;
    ensure!(table_exists("decnet_dntisf1")? && table_exists("decnet_dntisf2")?);
    let rec = b.record()?.unwrap_or_default();
    ensure!(
        rec["fence"] == "decnet_dntisf2",
        "the record names its fence: {rec}"
    );
    b.crash()?;
    ensure!(
        table_exists("decnet_dntisf2")?,
        "a killed deploy leaves its fence (for teardown)"
    );
    let out = b.decnet(&["teardown"])?;
    ensure!(out.status.success(), "teardown: {out:?}");
    ensure!(
        !table_exists("decnet_dntisf2")?,
        "teardown left the killed deployment's fence"
    );
    ensure!(
        table_exists("decnet_dntisf1")?,
        "teardown of one deployment removed another's fence"
    );
    a.stop(Duration::from_secs(20))?;
    ensure!(
        !table_exists("decnet_dntisf1")?,
        "the fence outlived its deployment"
    );
    Ok(())
}
