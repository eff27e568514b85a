//! End to end: the real `decnet collect` binary on loopback with a temporary SQLite repository.
//! 100,000 messages over 4 TCP connections as fast as they go, SIGTERM, exactly 100,000 rows;
//! the same messages again, still 100,000 rows (all counted as duplicates). Also: a `--duration`
//! run over UDP, and a second collector refused by the lease.
use std::{
    io::Write as _,
    net::{SocketAddr, TcpStream, UdpSocket},
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use decnet_core::repo::Repository;
use serde_json::Value;

const N: usize = 100_000;
const CONNECTIONS: usize = 4;

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("decnet-e2e-collect-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
    fn db_url(&self) -> String {
        format!("sqlite://{}", self.0.join("decnet.db").display())
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Collector {
    child: Option<Child>,
    ready: Vec<(String, SocketAddr)>,
    summary: PathBuf,
    log: PathBuf,
}

impl Collector {
    /// Starts `decnet collect` with `args` on `dir`'s database and waits for its ready file.
    fn start(dir: &TempDir, tag: &str, args: &[&str]) -> Collector {
        let ready = dir.0.join(format!("{tag}.ready"));
        let summary = dir.0.join(format!("{tag}.json"));
        let log = dir.0.join(format!("{tag}.log"));
        let _ = std::fs::remove_file(&ready);
        let child = Command::new(env!("CARGO_BIN_EXE_decnet"))
            .arg("collect")
            .args(args)
            .args(["--db-url", &dir.db_url()])
            .arg("--ready-file")
            .arg(&ready)
            .arg("--summary-json")
            .arg(&summary)
            .env_remove("DECNET_DB_TYPE")
            .env_remove("DECNET_DB_URL")
            .env_remove("DECNET_COLLECTOR_UDP")
            .env_remove("DECNET_COLLECTOR_TCP")
            .env_remove("DECNET_COLLECTOR_TLS")
            .env_remove("DECNET_COLLECTOR_ALLOW")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("decnet starts");
        let mut c = Collector {
            child: Some(child),
            ready: Vec::new(),
            summary,
            log,
        };
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(text) = std::fs::read_to_string(&ready) {
                c.ready = text
                    .lines()
                    .map(|l| {
                        let (kind, addr) = l.split_once(' ').expect("KIND ADDR");
                        (kind.to_owned(), addr.parse().expect("ADDR:PORT"))
                    })
                    .collect();
                return c;
            }
            if let Some(st) = c.child.as_mut().and_then(|ch| ch.try_wait().ok().flatten()) {
                panic!(
                    "decnet collect exited ({st}) before it was ready:\n{}",
                    c.logs()
                );
            }
            assert!(Instant::now() < until, "not ready in 60 s:\n{}", c.logs());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn addr(&self, kind: &str) -> SocketAddr {
        self.ready
            .iter()
            .find(|(k, _)| k == kind)
            .map(|(_, a)| *a)
            .unwrap_or_else(|| panic!("no {kind} listener in {:?}", self.ready))
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (120 s at most) for the process to exit.
    fn wait(&mut self) -> ExitStatus {
        let child = self.child.as_mut().expect("running");
        let until = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(st) = child.try_wait().expect("wait") {
                self.child = None;
                return st;
            }
            if Instant::now() > until {
                let _ = child.kill();
                panic!("decnet collect did not exit:\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM, a clean exit, and the summary.
    fn stop(&mut self) -> Value {
        let pid = self.child.as_ref().expect("running").id();
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) }, 0);
        let st = self.wait();
        assert!(st.success(), "exit {st} after SIGTERM:\n{}", self.logs());
        self.summary()
    }

    fn summary(&self) -> Value {
        let text = std::fs::read_to_string(&self.summary).expect("summary written");
        serde_json::from_str(&text).expect("summary is JSON")
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Realistic decoy lines (≈200 bytes, unique by sequence number).
fn line(i: usize) -> String {
    format!(
        r#"<134>1 2026-05-02T06:{:02}:{:02}.{:06}Z decky-{:02} ssh - auth_attempt [relay@55555 principal="root" secret_printable="pw{}" secret_kind="password" src_ip="203.0.{}.{}" src_port="{}" seq="{i}"]"#,
        (i / 60_000) % 60,
        (i / 1000) % 60,
        i % 1_000_000,
        i % 10,
        i % 1000,
        (i / 250) % 250,
        i % 250,
        1024 + i % 60_000,
    )
}

/// Sends every line once over `CONNECTIONS` TCP connections in parallel (two octet-counted,
/// two LF-framed); returns when every connection has sent everything and closed.
fn blast(addr: SocketAddr) {
    for t in blast_in_background(addr, false) {
        t.join().expect("sender");
    }
}

/// [`blast`]'s senders, running; with `cut_off`, a connection the collector closes early is
/// not an error.
fn blast_in_background(addr: SocketAddr, cut_off: bool) -> Vec<std::thread::JoinHandle<()>> {
    (0..CONNECTIONS)
        .map(|c| {
            std::thread::spawn(move || {
                let mut payload = Vec::with_capacity(N / CONNECTIONS * 230);
                for i in (c..N).step_by(CONNECTIONS) {
                    let l = line(i);
                    if c % 2 == 0 {
                        payload.extend_from_slice(format!("{} {l}", l.len()).as_bytes());
                    } else {
                        payload.extend_from_slice(l.as_bytes());
                        payload.push(b'\n');
                    }
                }
                let mut s = TcpStream::connect(addr).expect("connect");
                if let Err(e) = s.write_all(&payload) {
                    assert!(cut_off, "send: {e}");
                    return;
                }
                if let Err(e) = s.shutdown(std::net::Shutdown::Write) {
                    assert!(cut_off, "shutdown: {e}");
                    return;
                }
                // Wait for the collector to close its side: every byte was read.
                let mut sink = [0u8; 64];
                let _ = s.set_read_timeout(Some(Duration::from_secs(120)));
                let _ = std::io::Read::read(&mut s, &mut sink);
            })
        })
        .collect()
}

fn count_rows(url: &str) -> (u64, usize) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let repo = Repository::connect(url).await.expect("repo");
        let events = repo.count_events().await.expect("count");
        let creds = repo.credentials(None).await.expect("credentials").len();
        repo.close().await;
        (events, creds)
    })
}

fn n(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("{key} in {v}"))
}

#[test]
fn hundred_thousand_over_tcp_then_the_same_again_is_idempotent() {
    let dir = TempDir::new("tcp");
    let args = ["--daemon", "--tcp", "127.0.0.1:0", "--stats-interval", "1"];

    let mut c = Collector::start(&dir, "first", &args);
    let t0 = Instant::now();
    blast(c.addr("tcp"));
    let sent = t0.elapsed();
    let s = c.stop();
    let total = t0.elapsed();
    eprintln!(
        "collector e2e: {N} messages over {CONNECTIONS} TCP connections sent in {:.2} s, in \
         SQLite after {:.2} s (SIGTERM, drain, commit, exit): {:.0} messages/s",
        sent.as_secs_f64(),
        total.as_secs_f64(),
        N as f64 / total.as_secs_f64()
    );
    assert_eq!(n(&s, "received"), N as u64, "{s}");
    assert_eq!(n(&s, "parsed"), N as u64, "{s}");
    assert_eq!(n(&s, "stored"), N as u64, "{s}");
    assert_eq!(n(&s, "duplicates"), 0, "{s}");
    assert_eq!(n(&s["connections"], "accepted"), CONNECTIONS as u64, "{s}");
    let (events, creds) = count_rows(&dir.db_url());
    assert_eq!(events, N as u64);
    // Distinct (ip, principal, secret) triples among the lines.
    let distinct: std::collections::HashSet<(usize, usize)> =
        (0..N).map(|i| (i % 62_500, i % 1000)).collect();
    assert_eq!(creds, distinct.len());

    // Everything again, into the same database: no new rows.
    let mut c = Collector::start(&dir, "second", &args);
    blast(c.addr("tcp"));
    let s = c.stop();
    assert_eq!(n(&s, "received"), N as u64, "{s}");
    assert_eq!(n(&s, "stored"), 0, "{s}");
    assert_eq!(n(&s, "duplicates"), N as u64, "{s}");
    assert_eq!(count_rows(&dir.db_url()).0, N as u64);
}

/// SIGTERM while the senders are still sending: every message the collector read is in the
/// repository, none twice.
#[test]
fn sigterm_mid_stream_loses_nothing_that_was_read() {
    let dir = TempDir::new("cut");
    let mut c = Collector::start(&dir, "cut", &["--daemon", "--tcp", "127.0.0.1:0"]);
    let senders = blast_in_background(c.addr("tcp"), true);
    std::thread::sleep(Duration::from_millis(400));
    let s = c.stop();
    for t in senders {
        t.join().expect("sender");
    }
    let received = n(&s, "received");
    assert!(received > 0, "{s}");
    assert_eq!(n(&s, "parsed"), received, "{s}");
    assert_eq!(n(&s, "stored"), received, "{s}");
    assert_eq!(count_rows(&dir.db_url()).0, received);
}

#[test]
fn duration_run_over_udp_and_the_lease() {
    let dir = TempDir::new("udp");
    let mut c = Collector::start(
        &dir,
        "udp",
        &[
            "--duration",
            "3",
            "--udp",
            "127.0.0.1:0",
            "--tcp",
            "127.0.0.1:0",
        ],
    );
    assert_eq!(c.ready.len(), 2);
    assert_ne!(c.addr("udp").port(), 0);

    // A second collector on the same repository and host is refused, naming the holder.
    let out = Command::new(env!("CARGO_BIN_EXE_decnet"))
        .args(["collect", "--duration", "1", "--tcp", "127.0.0.1:0"])
        .args(["--db-url", &dir.db_url()])
        .output()
        .expect("second decnet");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("another collector is already running"),
        "{err}"
    );

    let sock = UdpSocket::bind("127.0.0.1:0").expect("udp client");
    for i in 0..100 {
        sock.send_to(line(i).as_bytes(), c.addr("udp"))
            .expect("send");
    }
    sock.send_to(b"not syslog", c.addr("udp")).expect("send");
    let st = c.wait();
    assert!(st.success(), "{st}:\n{}", c.logs());
    let s = c.summary();
    assert_eq!(n(&s, "received"), 101, "{s}");
    assert_eq!(n(&s, "stored"), 100, "{s}");
    assert_eq!(n(&s["rejected"], "bad_pri"), 1, "{s}");
    assert_eq!(count_rows(&dir.db_url()).0, 100);
}
