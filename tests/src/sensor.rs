//! Runs the real `decnet sniffer` inside a lab's switch namespace and reads back what it wrote:
//! the SQLite `flows` table and the `--summary-json` file.
//!
//! The binary comes from `DECNET_BIN`, else `<workspace>/target/release/decnet`, else
//! `<workspace>/target/debug/decnet`; if there is none, [`decnet_bin`] says how to build it.

use std::{
    collections::BTreeMap,
    fs::File,
    net::IpAddr,
    path::{Path, PathBuf},
    process::{Child, ExitStatus, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow, bail, ensure};
use serde::Deserialize;
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use crate::netns::Lab;

/// The workspace root (this crate lives in `<workspace>/tests`).
pub fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The `decnet` binary to test.
pub fn decnet_bin() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("DECNET_BIN") {
        let p = PathBuf::from(p);
        ensure!(
            p.is_file(),
            "DECNET_BIN={} does not exist: build it first: cargo xtask build",
            p.display()
        );
        return Ok(p);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_dir().join("target"));
    for profile in ["release", "debug"] {
        let p = target.join(profile).join("decnet");
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!(
        "no decnet binary (looked at $DECNET_BIN, {0}/release/decnet, {0}/debug/decnet): \
         build it first: cargo xtask build (or run the suite with cargo xtask test)",
        target.display()
    )
}

/// Where the sensor hooks the bridge ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Tc,
    Xdp,
    /// Benchmark floor: an empty TC program on the same hook.
    TcEmpty,
    /// Benchmark floor: an empty XDP program on the same hook.
    XdpEmpty,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Tc => "tc",
            Mode::Xdp => "xdp",
            Mode::TcEmpty => "tc-empty",
            Mode::XdpEmpty => "xdp-empty",
        }
    }
}

/// How long the sniffer runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Run {
    /// `--daemon`: until SIGTERM/SIGINT.
    Daemon,
    /// `--duration SECS`.
    Duration(u64),
}

#[derive(Clone, Debug)]
pub struct SnifferOptions {
    pub mode: Mode,
    pub run: Run,
    pub sweep_interval: Option<u64>,
    pub idle_timeout: Option<u64>,
    /// Anything else to pass after the options above.
    pub extra_args: Vec<String>,
}

impl SnifferOptions {
    pub fn new(mode: Mode) -> Self {
        Self {
            mode,
            run: Run::Daemon,
            sweep_interval: None,
            idle_timeout: None,
            extra_args: Vec::new(),
        }
    }
}

/// The `--summary-json` file.
#[derive(Clone, Debug, Deserialize)]
pub struct Summary {
    pub bridge: String,
    pub mode: String,
    pub ports: Vec<String>,
    pub counters: BTreeMap<String, u64>,
    pub events: u64,
    pub flows_written: u64,
}

impl Summary {
    /// A counter by its name in `decnet_common::COUNTER_NAMES`; panics if the summary lacks it.
    pub fn counter(&self, name: &str) -> u64 {
        *self
            .counters
            .get(name)
            .unwrap_or_else(|| panic!("summary has no counter {name:?}: {:?}", self.counters))
    }
    /// Sum of every drop reason (`decnet_common::DROP_REASONS`).
    pub fn drops(&self) -> u64 {
        decnet_common::DROP_REASONS
            .map(|i| self.counter(decnet_common::COUNTER_NAMES[i as usize]))
            .sum()
    }
    /// The counters are exactly `decnet_common::COUNTER_NAMES`.
    pub fn check_counter_names(&self) -> Result<()> {
        let want: Vec<&str> = decnet_common::COUNTER_NAMES.to_vec();
        let mut have: Vec<&str> = self.counters.keys().map(String::as_str).collect();
        let mut want_sorted = want.clone();
        want_sorted.sort();
        have.sort();
        ensure!(
            have == want_sorted,
            "summary counters {have:?} are not {want:?}"
        );
        Ok(())
    }
}

/// One row of the `flows` table: one direction of a flow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowRow {
    pub id: i64,
    pub bridge: String,
    pub port: String,
    pub src_ip: IpAddr,
    pub dst_ip: IpAddr,
    pub src_port: u16,
    pub dst_port: u16,
    pub proto: u8,
    pub vlan: u16,
    pub packets: u64,
    pub bytes: u64,
    pub tcp_flags: u8,
    pub first_seen: String,
    pub last_seen: String,
    pub ended: bool,
}

impl FlowRow {
    pub fn key(&self) -> crate::oracle::FlowKey {
        crate::oracle::FlowKey::new(
            self.src_ip,
            self.src_port,
            self.dst_ip,
            self.dst_port,
            self.proto,
        )
    }
}

/// Parses an RFC 3339 timestamp of the DB.
pub fn parse_time(s: &str) -> Result<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).with_context(|| format!("{s:?} is not RFC 3339"))
}

/// Reads every row of the `flows` table of the SQLite DB at `db`.
pub fn read_flows(db: &Path) -> Result<Vec<FlowRow>> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .with_context(|| format!("opening {}", db.display()))?;
    let mut stmt = conn.prepare(
        "SELECT id, bridge, port, src_ip, dst_ip, src_port, dst_port, proto, vlan, packets, bytes, tcp_flags, \
         first_seen, last_seen, ended FROM flows ORDER BY id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, String>(4)?,
            [
                r.get::<_, i64>(5)?,
                r.get::<_, i64>(6)?,
                r.get::<_, i64>(7)?,
                r.get::<_, i64>(8)?,
            ],
            [
                r.get::<_, i64>(9)?,
                r.get::<_, i64>(10)?,
                r.get::<_, i64>(11)?,
            ],
            r.get::<_, String>(12)?,
            r.get::<_, String>(13)?,
            r.get::<_, i64>(14)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (
            id,
            bridge,
            port,
            src,
            dst,
            [sp, dp, proto, vlan],
            [packets, bytes, flags],
            first,
            last,
            ended,
        ) = row?;
        let ip = |s: &str| {
            s.parse::<IpAddr>()
                .with_context(|| format!("row {id}: {s:?} is not an IP address"))
        };
        let int = |v: i64, what: &str, max: i64| -> Result<i64> {
            ensure!(
                (0..=max).contains(&v),
                "row {id}: {what} = {v} out of range"
            );
            Ok(v)
        };
        out.push(FlowRow {
            id,
            bridge,
            port,
            src_ip: ip(&src)?,
            dst_ip: ip(&dst)?,
            src_port: int(sp, "src_port", 65535)? as u16,
            dst_port: int(dp, "dst_port", 65535)? as u16,
            proto: int(proto, "proto", 255)? as u8,
            vlan: int(vlan, "vlan", 4095)? as u16,
            packets: int(packets, "packets", i64::MAX)? as u64,
            bytes: int(bytes, "bytes", i64::MAX)? as u64,
            tcp_flags: int(flags, "tcp_flags", 255)? as u8,
            first_seen: first,
            last_seen: last,
            ended: int(ended, "ended", 1)? == 1,
        });
    }
    Ok(out)
}

/// What a stopped sniffer left.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub status: ExitStatus,
    pub summary: Summary,
    pub flows: Vec<FlowRow>,
    pub stderr: String,
}

static SNIFFER_COUNTER: AtomicU32 = AtomicU32::new(0);

/// A `decnet sniffer` process in a lab's switch namespace. Killed on drop if still running; its
/// work directory (DB, ready file, summary, logs) is removed on drop unless the thread panics.
pub struct Sniffer {
    child: Option<Child>,
    pub dir: PathBuf,
    pub db: PathBuf,
    pub ready_file: PathBuf,
    pub summary_file: PathBuf,
    stdout_file: PathBuf,
    stderr_file: PathBuf,
    pub command_line: String,
}

impl Sniffer {
    /// Starts `decnet sniffer --bridge <lab bridge> …` in the lab's switch namespace.
    pub fn start(lab: &Lab, opts: &SnifferOptions) -> Result<Sniffer> {
        let bin = decnet_bin()?;
        let n = SNIFFER_COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "decnet-e2e-{}-{}-{n}",
            lab.id(),
            opts.mode.as_str()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let db = dir.join("flows.db");
        let ready_file = dir.join("ready");
        let summary_file = dir.join("summary.json");
        let (stdout_file, stderr_file) = (dir.join("stdout.log"), dir.join("stderr.log"));

        let mut args: Vec<String> = vec![
            "sniffer".into(),
            "--bridge".into(),
            lab.bridge().into(),
            "--mode".into(),
            opts.mode.as_str().into(),
        ];
        match opts.run {
            Run::Daemon => args.push("--daemon".into()),
            Run::Duration(s) => args.extend(["--duration".into(), s.to_string()]),
        }
        // A caller may point several sniffers at one database (`--db-url` in extra_args).
        if !opts.extra_args.iter().any(|a| a == "--db-url") {
            args.extend(["--db-url".into(), format!("sqlite://{}", db.display())]);
        }
        args.extend(["--ready-file".into(), ready_file.display().to_string()]);
        args.extend(["--summary-json".into(), summary_file.display().to_string()]);
        if let Some(s) = opts.sweep_interval {
            args.extend(["--sweep-interval".into(), s.to_string()]);
        }
        if let Some(s) = opts.idle_timeout {
            args.extend(["--idle-timeout".into(), s.to_string()]);
        }
        args.extend(opts.extra_args.iter().cloned());

        let mut cmd = lab.switch_command(&bin);
        cmd.args(&args)
            .stdin(Stdio::null())
            .stdout(File::create(&stdout_file)?)
            .stderr(File::create(&stderr_file)?);
        let command_line = format!(
            "ip netns exec {} {} {}",
            lab.switch_ns(),
            bin.display(),
            args.join(" ")
        );
        let child = cmd
            .spawn()
            .with_context(|| format!("spawning {command_line}"))?;
        Ok(Sniffer {
            child: Some(child),
            dir,
            db,
            ready_file,
            summary_file,
            stdout_file,
            stderr_file,
            command_line,
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// What the sniffer wrote to stderr (and stdout) so far.
    pub fn logs(&self) -> String {
        let err = std::fs::read_to_string(&self.stderr_file).unwrap_or_default();
        let out = std::fs::read_to_string(&self.stdout_file).unwrap_or_default();
        if out.trim().is_empty() {
            err
        } else {
            format!("{err}\n--- stdout ---\n{out}")
        }
    }

    /// `Some(status)` if the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    pub fn is_running(&mut self) -> bool {
        self.child.is_some() && self.exited().is_none()
    }

    /// The ports listed in the ready file now (`None` if it does not exist yet).
    pub fn ready_ports(&self) -> Option<Vec<String>> {
        let s = std::fs::read_to_string(&self.ready_file).ok()?;
        Some(
            s.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect(),
        )
    }

    /// Waits until the ready file lists every port in `ports`; fails (with the sniffer's stderr)
    /// on timeout or if the sniffer exits.
    pub fn wait_ready(&mut self, ports: &[String], timeout: Duration) -> Result<Vec<String>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(listed) = self.ready_ports()
                && ports.iter().all(|p| listed.contains(p))
            {
                return Ok(listed);
            }
            if let Some(st) = self.exited() {
                bail!(
                    "the sniffer exited ({st}) before it was ready\ncommand: {}\nlogs:\n{}",
                    self.command_line,
                    self.logs()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "the sniffer did not list {ports:?} in its ready file within {timeout:?} (it lists {:?})\n\
                     command: {}\nlogs:\n{}",
                    self.ready_ports(),
                    self.command_line,
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal` to the sniffer.
    pub fn signal(&self, signal: libc::c_int) -> Result<()> {
        let pid = self
            .pid()
            .ok_or_else(|| anyhow!("sniffer already reaped"))?;
        // SAFETY: signalling our own child.
        if unsafe { libc::kill(pid as libc::pid_t, signal) } != 0 {
            return Err(std::io::Error::last_os_error()).context("kill");
        }
        Ok(())
    }

    /// Waits for the process to exit by itself (e.g. after `--duration`); see [`Sniffer::stop`].
    pub fn wait(&mut self, timeout: Duration) -> Result<Outcome> {
        self.collect(timeout)
    }

    /// SIGTERM, then waits (30 s at most) for the sniffer to exit; it must exit 0 and leave its
    /// summary and DB, which are returned.
    pub fn stop(&mut self) -> Result<Outcome> {
        if let Some(st) = self.exited() {
            bail!(
                "the sniffer had already exited ({st}) before SIGTERM\nlogs:\n{}",
                self.logs()
            );
        }
        self.signal(libc::SIGTERM)?;
        self.collect(Duration::from_secs(30))
    }

    fn collect(&mut self, timeout: Duration) -> Result<Outcome> {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(st) = self.exited() {
                break st;
            }
            if Instant::now() > deadline {
                let _ = self.signal(libc::SIGKILL);
                bail!(
                    "the sniffer did not exit within {timeout:?}; killed\nlogs:\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        self.child = None;
        let stderr = self.logs();
        ensure!(
            status.success(),
            "the sniffer exited with {status}\nlogs:\n{stderr}"
        );
        let text = std::fs::read_to_string(&self.summary_file).with_context(|| {
            format!(
                "reading the summary {}\nlogs:\n{stderr}",
                self.summary_file.display()
            )
        })?;
        let summary: Summary = serde_json::from_str(&text)
            .with_context(|| format!("parsing the summary JSON: {text}"))?;
        let flows =
            read_flows(&self.db).with_context(|| format!("reading the DB\nlogs:\n{stderr}"))?;
        Ok(Outcome {
            status,
            summary,
            flows,
            stderr,
        })
    }
}

impl Drop for Sniffer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGKILL) };
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("sniffer files kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
