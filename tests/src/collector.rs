//! Runs the real `decnet collect` binary on loopback and reads back what it stored: the SQLite
//! `events` and `credentials` tables and the `--summary-json` file. Also: small syslog clients
//! (UDP datagrams, TCP with octet counting or LF framing), a private `rsyslogd`, and the
//! prerequisite checks for `logger` and `rsyslogd`.
//!
//! Nothing here needs root or a namespace: every socket is on 127.0.0.1, every listener of the
//! collector on an ephemeral port read back from its `--ready-file`.

use std::{
    collections::BTreeMap,
    fs::File,
    io::Write as _,
    net::{Shutdown, SocketAddr, TcpStream, UdpSocket},
    os::unix::process::ExitStatusExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow, bail, ensure};
use serde::Deserialize;

use crate::sensor::decnet_bin;

/// How long a collector (or rsyslogd) may take to list its listeners.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// What a test says when a tool it needs is missing.
const INSTALL_HINT: &str = "run the suite with `cargo xtask test`, which installs it (its setup \
                            step installs the apt packages rsyslog and bsdutils)";

/// Finds `name` on PATH or in the usual system directories (rsyslogd lives in /usr/sbin, which
/// is not on every user's PATH). Fails, naming the Debian package, if it is not there.
pub fn require_program(name: &str, package: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path).chain(
        ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
            .iter()
            .map(PathBuf::from),
    );
    for dir in dirs {
        let p = dir.join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!(
        "`{name}` (Debian package {package}) was not found on PATH nor in /usr/sbin, /usr/bin, \
         /sbin, /bin: {INSTALL_HINT}, or install it by hand: `apt-get install {package}`"
    )
}

/// util-linux `logger`.
pub fn logger_bin() -> Result<PathBuf> {
    require_program("logger", "bsdutils")
}

/// `rsyslogd`.
pub fn rsyslogd_bin() -> Result<PathBuf> {
    require_program("rsyslogd", "rsyslog")
}

/// The decnet binary, checked to have the `collect` subcommand.
pub fn collect_bin() -> Result<PathBuf> {
    let bin = decnet_bin()?;
    let out = Command::new(&bin)
        .args(["collect", "--help"])
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {} collect --help", bin.display()))?;
    ensure!(
        out.status.success(),
        "{} has no working `collect` subcommand (`decnet collect --help` exited {}: {}): rebuild \
         it with `cargo xtask build`, or run the suite with `cargo xtask test`",
        bin.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(bin)
}

/// This machine's host name, as gethostname(2) returns it.
pub fn hostname() -> Result<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    ensure!(rc == 0, "gethostname: {}", std::io::Error::last_os_error());
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    Ok(String::from_utf8_lossy(&buf[..end]).into_owned())
}

// ---------------------------------------------------------------------------------------------
// Summary and DB rows

/// The `--summary-json` file written on exit.
#[derive(Clone, Debug, Deserialize)]
pub struct Summary {
    pub received: u64,
    pub parsed: u64,
    /// Rejected messages by reason (`bad_pri`, `truncated`, …); reasons with no rejections may
    /// be absent or zero.
    pub rejected: BTreeMap<String, u64>,
    pub dropped_udp: u64,
    pub stored: u64,
    pub duplicates: u64,
    pub batches: u64,
    pub queue_depth_max: u64,
    #[serde(default)]
    pub connections: serde_json::Value,
    #[serde(default)]
    pub unwrapped: u64,
    /// Parsed lines per tolerated RFC 5424 deviation (long_fraction, lowercase_t_z, …).
    #[serde(default)]
    pub deviations: BTreeMap<String, u64>,
    /// Beyond the documented contract (present in the implementation): UDP datagrams the kernel
    /// dropped on a full receive buffer, as the collector observed them.
    #[serde(default)]
    pub udp_kernel_drops: Option<u64>,
    #[serde(default)]
    pub queue_depth: Option<u64>,
    #[serde(default)]
    pub db_errors: Option<u64>,
}

impl Summary {
    /// Rejections for `reason` (0 if absent).
    pub fn rejected(&self, reason: &str) -> u64 {
        self.rejected.get(reason).copied().unwrap_or(0)
    }
    /// Every rejection, whatever the reason.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }
    /// The non-zero rejection counters.
    pub fn rejected_nonzero(&self) -> BTreeMap<String, u64> {
        self.rejected
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| (k.clone(), *n))
            .collect()
    }
}

/// One row of `events`.
#[derive(Clone, Debug, PartialEq)]
pub struct EventRow {
    pub id: i64,
    pub ts: String,
    pub decky: String,
    pub service: String,
    pub event_type: String,
    pub attacker_ip: Option<String>,
    pub attacker_port: Option<i64>,
    pub fields: serde_json::Value,
    pub raw: Vec<u8>,
    pub dedup_key: i64,
}

impl EventRow {
    /// A string field of `fields` (`None` if absent or not a string).
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).and_then(|v| v.as_str())
    }
    pub fn raw_str(&self) -> String {
        String::from_utf8_lossy(&self.raw).into_owned()
    }
}

/// One row of `credentials`.
#[derive(Clone, Debug, PartialEq)]
pub struct CredentialRow {
    pub attacker_ip: String,
    pub decky: String,
    pub service: String,
    pub principal: Vec<u8>,
    pub secret_kind: String,
    pub secret_printable: String,
    pub attempts: i64,
}

pub fn open_ro(db: &Path) -> Result<rusqlite::Connection> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .with_context(|| format!("opening {}", db.display()))?;
    conn.busy_timeout(Duration::from_secs(10))?;
    Ok(conn)
}

/// Every row of `events`, by id.
pub fn read_events(db: &Path) -> Result<Vec<EventRow>> {
    let conn = open_ro(db)?;
    let mut stmt = conn.prepare(
        "SELECT id, ts, decky, service, event_type, attacker_ip, attacker_port, fields, raw, \
         dedup_key FROM events ORDER BY id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, String>(4)?,
            r.get::<_, Option<String>>(5)?,
            r.get::<_, Option<i64>>(6)?,
            r.get::<_, Option<String>>(7)?,
            r.get::<_, Vec<u8>>(8)?,
            r.get::<_, i64>(9)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, ts, decky, service, event_type, attacker_ip, attacker_port, fields, raw, key) =
            row?;
        // Integer nanoseconds, shown in the canonical text; NULL fields are derived from the
        // line (what the repository does when it reads the row).
        let ts = decnet_core::time_fmt::format_ts(ts);
        let fields = fields.unwrap_or_else(|| decnet_core::event::line_fields(&raw));
        let fields: serde_json::Value = serde_json::from_str(&fields)
            .with_context(|| format!("events row {id}: fields {fields:?} is not JSON"))?;
        ensure!(
            fields.is_object(),
            "events row {id}: fields {fields} is not a JSON object"
        );
        out.push(EventRow {
            id,
            ts,
            decky,
            service,
            event_type,
            attacker_ip,
            attacker_port,
            fields,
            raw,
            dedup_key: key,
        });
    }
    Ok(out)
}

/// How many rows `events` has now (the collector may be writing).
pub fn count_events(db: &Path) -> Result<u64> {
    let conn = open_ro(db)?;
    let n: i64 = conn.query_row("SELECT count(*) FROM events", [], |r| r.get(0))?;
    Ok(n as u64)
}

/// Every row of `credentials`, by id.
pub fn read_credentials(db: &Path) -> Result<Vec<CredentialRow>> {
    let conn = open_ro(db)?;
    let mut stmt = conn.prepare(
        "SELECT attacker_ip, decky, service, principal, secret_kind, secret_printable, attempts \
         FROM credentials ORDER BY id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(CredentialRow {
            attacker_ip: r.get(0)?,
            decky: r.get(1)?,
            service: r.get(2)?,
            principal: r.get(3)?,
            secret_kind: r.get(4)?,
            secret_printable: r.get(5)?,
            attempts: r.get(6)?,
        })
    })?;
    rows.collect::<rusqlite::Result<Vec<_>>>()
        .context("reading credentials")
}

// ---------------------------------------------------------------------------------------------
// The collector process

/// Resource usage of a reaped child (wait4).
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    /// User + system CPU seconds.
    pub cpu_s: f64,
    /// Peak resident set size, bytes.
    pub max_rss: u64,
}

/// What a stopped collector left.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub status: ExitStatus,
    pub summary: Summary,
    /// The summary file as written.
    pub summary_json: String,
    pub usage: Usage,
    pub logs: String,
}

#[derive(Clone, Debug)]
pub struct CollectorOptions {
    /// How many UDP listeners on 127.0.0.1:0.
    pub udp: usize,
    /// How many TCP listeners on 127.0.0.1:0.
    pub tcp: usize,
    pub max_message: Option<usize>,
    pub queue: Option<usize>,
    pub batch: Option<usize>,
    pub flush_ms: Option<u64>,
    /// Anything else, after the options above.
    pub extra_args: Vec<String>,
}

impl Default for CollectorOptions {
    fn default() -> Self {
        Self {
            udp: 1,
            tcp: 1,
            max_message: None,
            queue: None,
            batch: None,
            flush_ms: None,
            extra_args: Vec::new(),
        }
    }
}

static COLLECTOR_COUNTER: AtomicU32 = AtomicU32::new(0);

/// A `decnet collect --daemon` process with its own temp directory (DB, ready file, summary,
/// logs). Killed on drop if still running; the directory is removed on drop unless the thread
/// panics (then it is kept and named on stderr).
pub struct Collector {
    child: Option<Child>,
    pid: u32,
    pub dir: PathBuf,
    pub db: PathBuf,
    pub ready_file: PathBuf,
    pub summary_file: PathBuf,
    stdout_file: PathBuf,
    stderr_file: PathBuf,
    pub command_line: String,
    /// Bound listeners, from the ready file.
    pub udp: Vec<SocketAddr>,
    pub tcp: Vec<SocketAddr>,
    /// The ready file's lines.
    pub ready_lines: Vec<String>,
}

impl Collector {
    /// Starts the collector and waits (up to [`READY_TIMEOUT`]) for its ready file.
    pub fn start(opts: &CollectorOptions) -> Result<Collector> {
        let bin = collect_bin()?;
        let n = COLLECTOR_COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("decnet-collect-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let db = dir.join("events.db");
        let ready_file = dir.join("ready");
        let summary_file = dir.join("summary.json");
        let (stdout_file, stderr_file) = (dir.join("stdout.log"), dir.join("stderr.log"));

        let mut args: Vec<String> = vec!["collect".into(), "--daemon".into()];
        for _ in 0..opts.udp {
            args.extend(["--udp".into(), "127.0.0.1:0".into()]);
        }
        for _ in 0..opts.tcp {
            args.extend(["--tcp".into(), "127.0.0.1:0".into()]);
        }
        args.extend(["--db-type".into(), "sqlite".into()]);
        args.extend(["--db-url".into(), format!("sqlite://{}", db.display())]);
        args.extend(["--ready-file".into(), ready_file.display().to_string()]);
        args.extend(["--summary-json".into(), summary_file.display().to_string()]);
        let opt = |args: &mut Vec<String>, name: &str, v: Option<String>| {
            if let Some(v) = v {
                args.extend([name.to_string(), v]);
            }
        };
        opt(
            &mut args,
            "--max-message",
            opts.max_message.map(|v| v.to_string()),
        );
        opt(&mut args, "--queue", opts.queue.map(|v| v.to_string()));
        opt(&mut args, "--batch", opts.batch.map(|v| v.to_string()));
        opt(
            &mut args,
            "--flush-ms",
            opts.flush_ms.map(|v| v.to_string()),
        );
        args.extend(opts.extra_args.iter().cloned());

        let command_line = format!("{} {}", bin.display(), args.join(" "));
        let child = Command::new(&bin)
            .args(&args)
            .current_dir(&dir)
            .env_remove("DECNET_DB_URL")
            .env_remove("DECNET_DB_TYPE")
            .env_remove("DECNET_COLLECTOR_UDP")
            .env_remove("DECNET_COLLECTOR_TCP")
            .env_remove("DECNET_COLLECTOR_ALLOW")
            .stdin(Stdio::null())
            .stdout(File::create(&stdout_file)?)
            .stderr(File::create(&stderr_file)?)
            .spawn()
            .with_context(|| format!("spawning {command_line}"))?;
        let mut c = Collector {
            pid: child.id(),
            child: Some(child),
            dir,
            db,
            ready_file,
            summary_file,
            stdout_file,
            stderr_file,
            command_line,
            udp: Vec::new(),
            tcp: Vec::new(),
            ready_lines: Vec::new(),
        };
        c.wait_ready(opts.udp, opts.tcp, READY_TIMEOUT)?;
        Ok(c)
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The first UDP listener.
    pub fn udp_addr(&self) -> SocketAddr {
        self.udp[0]
    }

    /// The first TCP listener.
    pub fn tcp_addr(&self) -> SocketAddr {
        self.tcp[0]
    }

    /// What the collector wrote to stderr (and stdout) so far.
    pub fn logs(&self) -> String {
        let err = std::fs::read_to_string(&self.stderr_file).unwrap_or_default();
        let out = std::fs::read_to_string(&self.stdout_file).unwrap_or_default();
        if out.trim().is_empty() {
            err
        } else {
            format!("{err}\n--- stdout ---\n{out}")
        }
    }

    /// `Some(status)` once the process has exited (reaps it; see [`Collector::stop`] for usage).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    pub fn is_running(&mut self) -> bool {
        self.child.is_some() && self.exited().is_none()
    }

    /// Fails with the logs unless the process still runs.
    pub fn ensure_running(&mut self) -> Result<()> {
        if let Some(st) = self.exited() {
            bail!(
                "the collector exited ({st}) while it should be running\ncommand: {}\nlogs:\n{}",
                self.command_line,
                self.logs()
            );
        }
        ensure!(self.child.is_some(), "the collector was already stopped");
        Ok(())
    }

    fn wait_ready(&mut self, udp: usize, tcp: usize, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            // The file may be seen half-written: accept it only once it parses and is complete.
            if let Ok(text) = std::fs::read_to_string(&self.ready_file)
                && let Ok((u, t, lines)) = parse_ready(&text)
                && u.len() >= udp
                && t.len() >= tcp
            {
                self.udp = u;
                self.tcp = t;
                self.ready_lines = lines;
                return Ok(());
            }
            if let Some(st) = self.exited() {
                bail!(
                    "the collector exited ({st}) before it was ready\ncommand: {}\nlogs:\n{}",
                    self.command_line,
                    self.logs()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "the collector did not list {udp} udp and {tcp} tcp listener(s) in its ready \
                     file within {timeout:?} (it holds {:?})\ncommand: {}\nlogs:\n{}",
                    std::fs::read_to_string(&self.ready_file).ok(),
                    self.command_line,
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Rows in `events` now.
    pub fn count_events(&self) -> Result<u64> {
        count_events(&self.db)
    }

    /// Events now (the collector may still be writing).
    pub fn events(&self) -> Result<Vec<EventRow>> {
        read_events(&self.db)
    }

    /// Waits until some stored event satisfies `pred`; fails (with the logs) on timeout or exit.
    pub fn wait_event(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&EventRow) -> bool,
    ) -> Result<EventRow> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(events) = self.events()
                && let Some(e) = events.into_iter().find(|e| pred(e))
            {
                return Ok(e);
            }
            self.ensure_running()?;
            if Instant::now() > deadline {
                bail!(
                    "no stored event is {what} after {timeout:?}; events now: {:#?}\nlogs:\n{}",
                    self.events().unwrap_or_default(),
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Waits until some stored event's raw line contains `marker`.
    pub fn wait_marker(&mut self, marker: &str, timeout: Duration) -> Result<EventRow> {
        let m = marker.as_bytes().to_vec();
        self.wait_event(&format!("marked {marker:?}"), timeout, move |e| {
            e.raw.windows(m.len()).any(|w| w == m.as_slice())
        })
    }

    /// Waits until `events` holds at least `n` rows.
    pub fn wait_count(&mut self, n: u64, timeout: Duration) -> Result<u64> {
        let deadline = Instant::now() + timeout;
        loop {
            let have = self.count_events().unwrap_or(0);
            if have >= n {
                return Ok(have);
            }
            self.ensure_running()?;
            if Instant::now() > deadline {
                bail!(
                    "events has {have} rows after {timeout:?}, expected at least {n}\nlogs:\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Sends `signal` to the collector.
    pub fn signal(&self, signal: libc::c_int) -> Result<()> {
        ensure!(self.child.is_some(), "collector already reaped");
        // SAFETY: signalling our own, not yet reaped, child.
        if unsafe { libc::kill(self.pid as libc::pid_t, signal) } != 0 {
            return Err(std::io::Error::last_os_error()).context("kill");
        }
        Ok(())
    }

    /// SIGTERM, then waits (60 s at most) for a clean exit; returns the summary and the usage.
    pub fn stop(&mut self) -> Result<Outcome> {
        self.stop_within(Duration::from_secs(60))
    }

    /// [`Collector::stop`] with a chosen timeout.
    pub fn stop_within(&mut self, timeout: Duration) -> Result<Outcome> {
        self.ensure_running()?;
        self.signal(libc::SIGTERM)?;
        let (status, usage) = reap(self.pid, timeout).inspect_err(|_| {
            // SAFETY: our child; killed so Drop does not wait on it forever.
            unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGKILL) };
        })?;
        // Reaped by wait4: the Child must not be waited on again.
        self.child = None;
        let logs = self.logs();
        ensure!(
            status.success(),
            "the collector exited with {status} after SIGTERM\ncommand: {}\nlogs:\n{logs}",
            self.command_line
        );
        let text = std::fs::read_to_string(&self.summary_file).with_context(|| {
            format!(
                "reading the summary {}\nlogs:\n{logs}",
                self.summary_file.display()
            )
        })?;
        let summary: Summary = serde_json::from_str(&text)
            .with_context(|| format!("parsing the summary JSON: {text}\nlogs:\n{logs}"))?;
        Ok(Outcome {
            status,
            summary,
            summary_json: text,
            usage,
            logs,
        })
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("collector files kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Parses a ready file: `udp ADDR:PORT` / `tcp ADDR:PORT` (other kinds, e.g. `tls`, are kept in
/// the lines only).
pub fn parse_ready(text: &str) -> Result<(Vec<SocketAddr>, Vec<SocketAddr>, Vec<String>)> {
    let (mut udp, mut tcp, mut lines) = (Vec::new(), Vec::new(), Vec::new());
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (kind, addr) = line
            .split_once(char::is_whitespace)
            .ok_or_else(|| anyhow!("ready line {line:?} is not `KIND ADDR:PORT`"))?;
        let addr: SocketAddr = addr
            .trim()
            .parse()
            .with_context(|| format!("ready line {line:?}: bad address"))?;
        ensure!(addr.port() != 0, "ready line {line:?} lists port 0");
        match kind {
            "udp" => udp.push(addr),
            "tcp" => tcp.push(addr),
            _ => {}
        }
        lines.push(line.to_string());
    }
    Ok((udp, tcp, lines))
}

/// waitpid with rusage, polling until `timeout`.
pub fn reap(pid: u32, timeout: Duration) -> Result<(ExitStatus, Usage)> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: an all-zero rusage is a valid value to be overwritten.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: valid pointers to our locals.
        let r = unsafe { libc::wait4(pid as libc::pid_t, &mut status, libc::WNOHANG, &mut ru) };
        if r == pid as libc::pid_t {
            let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
            return Ok((
                ExitStatus::from_raw(status),
                Usage {
                    cpu_s: secs(ru.ru_utime) + secs(ru.ru_stime),
                    max_rss: ru.ru_maxrss as u64 * 1024,
                },
            ));
        }
        if r < 0 {
            return Err(std::io::Error::last_os_error()).context(format!("wait4({pid})"));
        }
        if Instant::now() > deadline {
            bail!("process {pid} did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

// ---------------------------------------------------------------------------------------------
// Clients

/// TCP framing (RFC 6587).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// `LEN SP MSG`.
    OctetCounting,
    /// `MSG LF` (non-transparent framing).
    Lf,
}

/// Appends one framed message to `out`.
pub fn frame_into(out: &mut Vec<u8>, msg: &[u8], framing: Framing) {
    match framing {
        Framing::OctetCounting => {
            out.extend_from_slice(msg.len().to_string().as_bytes());
            out.push(b' ');
            out.extend_from_slice(msg);
        }
        Framing::Lf => {
            out.extend_from_slice(msg);
            out.push(b'\n');
        }
    }
}

/// Frames every message into one buffer.
pub fn frame_all<M: AsRef<[u8]>>(msgs: &[M], framing: Framing) -> Vec<u8> {
    let mut out = Vec::new();
    for m in msgs {
        frame_into(&mut out, m.as_ref(), framing);
    }
    out
}

/// Connects to `addr`, writes `bytes`, half-closes, and waits (up to 10 s) for the server to
/// close or go quiet, so the server has read everything before this returns.
pub fn send_tcp_bytes(addr: SocketAddr, bytes: &[u8]) -> Result<()> {
    let mut s = TcpStream::connect(addr).with_context(|| format!("connecting to tcp {addr}"))?;
    s.set_nodelay(true)?;
    s.write_all(bytes)
        .with_context(|| format!("writing {} bytes to tcp {addr}", bytes.len()))?;
    s.shutdown(Shutdown::Write)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut buf = [0u8; 4096];
    loop {
        match std::io::Read::read(&mut s, &mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            // Quiet or reset: the server holds the connection open until idle; fine.
            Err(_) => break,
        }
    }
    Ok(())
}

/// Sends `msgs` over one TCP connection with `framing`.
pub fn send_tcp<M: AsRef<[u8]>>(addr: SocketAddr, msgs: &[M], framing: Framing) -> Result<()> {
    send_tcp_bytes(addr, &frame_all(msgs, framing))
}

/// Sends each of `msgs` as one UDP datagram from one ephemeral socket.
pub fn send_udp<M: AsRef<[u8]>>(addr: SocketAddr, msgs: &[M]) -> Result<()> {
    let s = UdpSocket::bind("127.0.0.1:0")?;
    for m in msgs {
        s.send_to(m.as_ref(), addr)
            .with_context(|| format!("sending {} bytes to udp {addr}", m.as_ref().len()))?;
    }
    Ok(())
}

/// A free port on 127.0.0.1 for `kind` (`tcp` or `udp`), for programs that cannot take port 0
/// (rsyslogd). Racy by nature; the caller then waits for the port with [`wait_listening`].
pub fn free_port(kind: &str) -> Result<u16> {
    Ok(match kind {
        "tcp" => std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port(),
        "udp" => UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port(),
        _ => bail!("free_port: kind {kind:?} is not tcp or udp"),
    })
}

/// One IPv4 socket of /proc/net/{tcp,udp}.
#[derive(Clone, Debug)]
pub struct ProcSocket {
    pub local_port: u16,
    /// `st`: 0A is TCP LISTEN, 07 an unconnected UDP socket.
    pub state: u8,
    pub rx_queue: u64,
    pub inode: u64,
    /// UDP only: datagrams the kernel dropped for this socket (buffer full, …).
    pub drops: u64,
}

/// IPv4 sockets of `/proc/net/{kind}` bound to 127.0.0.1 (or any address) on `port`.
pub fn proc_sockets(kind: &str, port: u16) -> Result<Vec<ProcSocket>> {
    let path = format!("/proc/net/{kind}");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 10 {
            continue;
        }
        let Some((ip, p)) = f[1].split_once(':') else {
            continue;
        };
        let p = u16::from_str_radix(p, 16).unwrap_or(0);
        if p != port || !(ip == "0100007F" || ip == "00000000") {
            continue;
        }
        let rx_queue = f[4]
            .split_once(':')
            .map(|(_, rx)| u64::from_str_radix(rx, 16).unwrap_or(0))
            .unwrap_or(0);
        out.push(ProcSocket {
            local_port: p,
            state: u8::from_str_radix(f[3], 16).unwrap_or(0),
            rx_queue,
            inode: f[9].parse().unwrap_or(0),
            drops: if kind == "udp" {
                f.last().and_then(|d| d.parse().ok()).unwrap_or(0)
            } else {
                0
            },
        });
    }
    Ok(out)
}

/// Waits until something listens on 127.0.0.1:`port` (`tcp`: a LISTEN socket; `udp`: a bound
/// socket), read from /proc/net so no connection is made.
pub fn wait_listening(kind: &str, port: u16, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let socks = proc_sockets(kind, port)?;
        if socks.iter().any(|s| kind == "udp" || s.state == 0x0A) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("nothing listens on {kind} 127.0.0.1:{port} after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `Udp:` counters of /proc/net/snmp (machine-wide): `(InDatagrams, InErrors, RcvbufErrors)`.
pub fn udp_snmp() -> Result<(u64, u64, u64)> {
    let text = std::fs::read_to_string("/proc/net/snmp").context("reading /proc/net/snmp")?;
    let mut lines = text.lines().filter(|l| l.starts_with("Udp:"));
    let names: Vec<&str> = lines
        .next()
        .context("no Udp: header")?
        .split_whitespace()
        .collect();
    let values: Vec<&str> = lines
        .next()
        .context("no Udp: values")?
        .split_whitespace()
        .collect();
    let get = |name: &str| -> Result<u64> {
        let i = names
            .iter()
            .position(|n| *n == name)
            .with_context(|| format!("/proc/net/snmp has no Udp {name}"))?;
        Ok(values.get(i).and_then(|v| v.parse().ok()).unwrap_or(0))
    };
    Ok((get("InDatagrams")?, get("InErrors")?, get("RcvbufErrors")?))
}

/// Runs util-linux `logger` with `args` and the message; fails with its stderr.
pub fn run_logger(args: &[String]) -> Result<()> {
    let bin = logger_bin()?;
    let out = Command::new(&bin)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", bin.display()))?;
    ensure!(
        out.status.success(),
        "`logger {}` exited {}: {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// A private rsyslogd

static RSYSLOG_COUNTER: AtomicU32 = AtomicU32::new(0);

/// A private `rsyslogd -n -f <conf> -i <pidfile>` with its own work directory. Its config is
/// the caller's; `{dir}` in it is replaced by the work directory. SIGTERM on stop, SIGKILL on
/// drop if still running; the directory is removed on drop unless the thread panics.
pub struct Rsyslogd {
    child: Option<Child>,
    pid: u32,
    pub dir: PathBuf,
    pub conf: PathBuf,
    log_file: PathBuf,
}

impl Rsyslogd {
    /// Starts rsyslogd with `config` and waits until every `(kind, port)` of `listens` is bound.
    pub fn start(config: &str, listens: &[(&str, u16)]) -> Result<Rsyslogd> {
        let bin = rsyslogd_bin()?;
        let n = RSYSLOG_COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("decnet-rsyslog-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let conf = dir.join("rsyslog.conf");
        let pidfile = dir.join("rsyslogd.pid");
        let log_file = dir.join("rsyslogd.log");
        let dir_s = dir.display().to_string();
        let text = format!(
            "global(workDirectory=\"{dir_s}\")\n{}",
            config.replace("{dir}", &dir_s)
        );
        std::fs::write(&conf, &text)?;
        let check = Command::new(&bin)
            .args(["-N1", "-f"])
            .arg(&conf)
            .output()
            .context("running rsyslogd -N1")?;
        ensure!(
            check.status.success(),
            "rsyslogd rejects its config ({}):\n{text}\n{}{}",
            check.status,
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
        let log = File::create(&log_file)?;
        let child = Command::new(&bin)
            .args(["-n", "-f"])
            .arg(&conf)
            .arg("-i")
            .arg(&pidfile)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawning {}", bin.display()))?;
        let mut r = Rsyslogd {
            pid: child.id(),
            child: Some(child),
            dir,
            conf,
            log_file,
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        for (kind, port) in listens {
            loop {
                if wait_listening(kind, *port, Duration::from_millis(50)).is_ok() {
                    break;
                }
                if let Some(c) = r.child.as_mut()
                    && let Ok(Some(st)) = c.try_wait()
                {
                    r.child = None;
                    bail!(
                        "rsyslogd exited ({st}) before listening on {kind} {port}\nconfig:\n{text}\nlog:\n{}",
                        r.logs()
                    );
                }
                if Instant::now() > deadline {
                    bail!(
                        "rsyslogd does not listen on {kind} 127.0.0.1:{port}\nlog:\n{}",
                        r.logs()
                    );
                }
            }
        }
        Ok(r)
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_file).unwrap_or_default()
    }

    /// SIGTERM; waits (30 s at most) for the exit; returns its usage.
    pub fn stop(&mut self) -> Result<Usage> {
        ensure!(self.child.is_some(), "rsyslogd already stopped");
        // SAFETY: signalling our own, not yet reaped, child.
        unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGTERM) };
        let (status, usage) = reap(self.pid, Duration::from_secs(30)).inspect_err(|_| {
            // SAFETY: as above.
            unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGKILL) };
        })?;
        self.child = None;
        ensure!(
            status.success() || status.signal() == Some(libc::SIGTERM),
            "rsyslogd exited with {status}\nlog:\n{}",
            self.logs()
        );
        Ok(usage)
    }
}

impl Drop for Rsyslogd {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("rsyslogd files kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
