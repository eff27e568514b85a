//! `cargo xtask run`: decnet's main job on a demo decoy network, until Ctrl-C.
//!
//! Builds a demo decoy bridge (in its own network namespace) with two decky namespaces and one
//! "outside" namespace, all on private test addresses; serves a TCP service on each decky; starts
//! `decnet sniffer --daemon` on the bridge with the default SQLite file (`decnet.db` in the
//! working directory); has the outside host poke the deckies now and then (TCP connections to
//! open and closed ports, UDP probes, pings); and prints live flow counts from the database every
//! two seconds. Ctrl-C stops the sniffer (which flushes every flow), prints its summary and
//! removes every namespace and link it created. (Issue 5 turns this into `decnet deploy`.)
use std::{
    net::SocketAddr,
    path::PathBuf,
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use decnet_e2e::{
    netns::{Lab, LabOptions},
    sensor::decnet_bin,
    traffic::{TcpServer, UdpSink, icmp_echo, tcp_exchange, udp_send},
};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn main() -> Result<()> {
    if std::env::args().skip(1).any(|a| a == "-h" || a == "--help") {
        println!(
            "demo: a demo decoy bridge (2 deckies + 1 outside host in network namespaces), \
             decnet sniffer on it writing to ./decnet.db (or $DECNET_DB_URL), live flow counts \
             until Ctrl-C, then teardown. Needs root."
        );
        return Ok(());
    }
    decnet_e2e::prereq()?;
    // SAFETY: installing an async-signal-safe handler that only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let db_url = std::env::var("DECNET_DB_URL").unwrap_or_else(|_| "sqlite://decnet.db".into());
    let db_path = sqlite_path(&db_url)?;

    let lab = Lab::new(
        &["decky1", "decky2", "outside"],
        LabOptions {
            fixed_tcp_headers: false,
        },
    )?;
    let (d1, d2, out) = (
        lab.host("decky1").clone(),
        lab.host("decky2").clone(),
        lab.host("outside").clone(),
    );
    println!(
        "demo decoy network: bridge {} in namespace {}",
        lab.bridge(),
        lab.switch_ns()
    );
    for h in [&d1, &d2, &out] {
        println!(
            "  {:<8} {:<15} {}  (namespace {}, bridge port {})",
            h.name, h.ipv4, h.ipv6, h.ns, h.port
        );
    }

    // Services on the deckies.
    let servers = [
        TcpServer::start(&d1.ns, d1.v4(22))?,
        TcpServer::start(&d1.ns, d1.v4(80))?,
        TcpServer::start(&d2.ns, d2.v4(445))?,
    ];
    let sinks = [UdpSink::start(&d2.ns, d2.v4(161))?];

    // The sniffer, in the bridge's namespace, with the default database.
    let bin = decnet_bin()?;
    let cwd = std::env::current_dir()?;
    let mut child = lab
        .switch_command(&bin)
        .args([
            "sniffer",
            "--daemon",
            "--bridge",
            lab.bridge(),
            "--stats-interval",
            "10",
        ])
        .env("DECNET_DB_URL", &db_url)
        .current_dir(&cwd)
        .stdin(Stdio::null())
        .spawn()
        .context("starting decnet sniffer")?;
    println!(
        "decnet sniffer (pid {}) writing flows to {db_url}; Ctrl-C to stop\n",
        child.id()
    );

    // The outside host pokes the deckies in the background.
    let poking = Arc::new(AtomicBool::new(true));
    let poke = {
        let (d1, d2, out, poking) = (d1.clone(), d2.clone(), out.clone(), poking.clone());
        std::thread::spawn(move || {
            let mut round = 0u64;
            while poking.load(Ordering::Relaxed) {
                let (d1, d2) = (d1.clone(), d2.clone());
                let r = round;
                let _ = out.run(move || {
                    let _ = tcp_exchange(None, d1.v4(22), 40, 200);
                    let _ = tcp_exchange(None, d1.v4(80), 300, 800);
                    let _ = tcp_exchange(None, d2.v4(445), 100, 100);
                    let _ = tcp_exchange(None, d2.v4(23 + (r % 5) as u16), 8, 0); // closed: RST
                    let _ = udp_send(
                        SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0),
                        &[(d2.v4(161), 3, 40)],
                    );
                    let _ = icmp_echo(d1.ipv4, r as u16, 1, 32);
                });
                round += 1;
                for _ in 0..10 {
                    if !poking.load(Ordering::Relaxed) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        })
    };

    let started = Instant::now();
    let mut last_print = Instant::now() - Duration::from_secs(10);
    while !STOP.load(Ordering::SeqCst) {
        if let Some(status) = child.try_wait()? {
            poking.store(false, Ordering::Relaxed);
            let _ = poke.join();
            bail!("decnet sniffer exited early ({status}); see its log above");
        }
        if last_print.elapsed() >= Duration::from_secs(2) {
            last_print = Instant::now();
            match counts(&db_path) {
                Ok(c) => println!(
                    "[{:>4.0}s] flows in {}: {} (tcp {}, udp {}, icmp {}, other {}) · {} packets · {} bytes",
                    started.elapsed().as_secs_f64(),
                    db_path.display(),
                    c.rows,
                    c.tcp,
                    c.udp,
                    c.icmp,
                    c.other,
                    c.packets,
                    c.bytes
                ),
                Err(e) => println!(
                    "[{:>4.0}s] (database not readable yet: {e})",
                    started.elapsed().as_secs_f64()
                ),
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    println!("\nstopping: the sniffer flushes every flow, then the demo network is removed");
    poking.store(false, Ordering::Relaxed);
    let _ = poke.join();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait()?;
    for s in servers {
        let _ = s.stop();
    }
    drop(sinks);
    if let Ok(c) = counts(&db_path) {
        println!(
            "final: {} flows ({} packets) in {}",
            c.rows,
            c.packets,
            db_path.display()
        );
    }
    drop(lab);
    println!("demo network removed");
    if !status.success() {
        bail!("decnet sniffer exited with {status}");
    }
    Ok(())
}

fn sqlite_path(url: &str) -> Result<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .with_context(|| {
            format!(
                "the demo reads counts from SQLite; DECNET_DB_URL={url:?} is not an sqlite:// URL"
            )
        })?;
    let path = rest.split('?').next().unwrap_or(rest);
    Ok(PathBuf::from(path))
}

struct Counts {
    rows: u64,
    tcp: u64,
    udp: u64,
    icmp: u64,
    other: u64,
    packets: u64,
    bytes: u64,
}

fn counts(db: &std::path::Path) -> Result<Counts> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    conn.busy_timeout(Duration::from_secs(2))?;
    let row = conn.query_row(
        "SELECT count(*), \
                coalesce(sum(proto = 6), 0), coalesce(sum(proto = 17), 0), \
                coalesce(sum(proto IN (1, 58)), 0), coalesce(sum(proto NOT IN (1, 6, 17, 58)), 0), \
                coalesce(sum(packets), 0), coalesce(sum(bytes), 0) FROM flows",
        [],
        |r| {
            Ok(Counts {
                rows: r.get::<_, i64>(0)? as u64,
                tcp: r.get::<_, i64>(1)? as u64,
                udp: r.get::<_, i64>(2)? as u64,
                icmp: r.get::<_, i64>(3)? as u64,
                other: r.get::<_, i64>(4)? as u64,
                packets: r.get::<_, i64>(5)? as u64,
                bytes: r.get::<_, i64>(6)? as u64,
            })
        },
    )?;
    Ok(row)
}
