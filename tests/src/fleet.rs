//! Runs the real `decnet deploy` with a fleet file of the test's own, adds attacker namespaces on
//! its bridge, and reads back the deployment record, the events, credentials and leases.
//!
//! Every name a deployment creates is derived from the test's tag (bridge `dnt<tag>`, deckies
//! `<tag>-…`, attacker namespace `dnt<tag>-att<n>`), so fleet tests run side by side. `Drop`
//! stops the deployment (SIGTERM, then `decnet teardown`) and deletes the attacker namespaces.
use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Output, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow, bail, ensure};

use crate::{
    collector::{CredentialRow, EventRow, read_credentials, read_events, require_program},
    netns::ip,
    sensor::decnet_bin,
};

/// A running `decnet deploy`.
pub struct Deployment {
    pub tag: String,
    pub dir: PathBuf,
    pub bridge: String,
    pub run_dir: PathBuf,
    pub state_dir: PathBuf,
    pub db: PathBuf,
    pub fleet_file: PathBuf,
    /// The /24 the fleet uses: `10.<net>.0.0/24`; host `.1`.
    pub net: u8,
    child: Option<Child>,
    log: PathBuf,
    attackers: Vec<(String, String)>,
}

/// `10.<net>.0.<host>`.
pub fn addr(net: u8, host: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, net, 0, host)
}

impl Deployment {
    /// Writes a fleet file (`[lan]` for bridge `dnt<tag>`, 10.<net>.0.0/24, then `deckies`
    /// verbatim), starts `decnet deploy` with `workers`, and waits until it reports ready.
    pub fn start(tag: &str, net: u8, deckies: &str, workers: &str) -> Result<Deployment> {
        crate::prereq()?;
        let dir = std::env::temp_dir().join(format!("decnet-fleet-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let bridge = format!("dnt{tag}");
        let fleet_file = dir.join("fleet.toml");
        std::fs::write(
            &fleet_file,
            format!(
                "[lan]\nbridge = \"{bridge}\"\nsubnet = \"10.{net}.0.0/24\"\nhost_ip = \"10.{net}.0.1\"\n\n{deckies}"
            ),
        )?;
        let mut d = Deployment {
            tag: tag.to_owned(),
            run_dir: dir.join("run"),
            state_dir: dir.join("state"),
            db: dir.join("decnet.db"),
            log: dir.join("deploy.log"),
            dir,
            bridge,
            fleet_file,
            net,
            child: None,
            attackers: Vec::new(),
        };
        d.launch(workers)?;
        Ok(d)
    }

    /// Starts `decnet deploy` again (after a stop or a crash) and waits until ready.
    pub fn launch(&mut self, workers: &str) -> Result<Duration> {
        let ready = self.dir.join("deploy.ready");
        let _ = std::fs::remove_file(&ready);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let t0 = Instant::now();
        let child = Command::new(decnet_bin()?)
            .arg("deploy")
            .arg("--daemon")
            .arg("--fleet")
            .arg(&self.fleet_file)
            .arg("--workers")
            .arg(workers)
            .arg("--run-dir")
            .arg(&self.run_dir)
            .arg("--state-dir")
            .arg(&self.state_dir)
            .arg("--db-url")
            .arg(format!("sqlite://{}", self.db.display()))
            .arg("--ready-file")
            .arg(&ready)
            .env_remove("DECNET_DB_TYPE")
            .env_remove("DECNET_DB_URL")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting decnet deploy")?;
        self.child = Some(child);
        let deadline = t0 + Duration::from_secs(60);
        while !ready.exists() {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!(
                    "decnet deploy exited ({status}) before it was ready:\n{}",
                    self.logs()
                );
            }
            if Instant::now() > deadline {
                bail!("decnet deploy not ready after 60 s:\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(t0.elapsed())
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// The deployment record (`<run-dir>/<bridge>.json`), if any.
    pub fn record(&self) -> Result<Option<serde_json::Value>> {
        let path = self.run_dir.join(format!("{}.json", self.bridge));
        match std::fs::read(&path) {
            Ok(b) => Ok(Some(serde_json::from_slice(&b)?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// (pid, restarts) of a supervised unit (`collector`, `decky:<name>`…) per the record.
    pub fn unit(&self, name: &str) -> Result<(Option<u32>, u64)> {
        let rec = self
            .record()?
            .ok_or_else(|| anyhow!("no deployment record"))?;
        let p = &rec["processes"][name];
        ensure!(!p.is_null(), "no unit {name} in the record: {rec}");
        Ok((
            p["pid"].as_u64().map(|v| v as u32),
            p["restarts"].as_u64().unwrap_or(0),
        ))
    }

    /// Adds an attacker namespace on the bridge with address 10.<net>.0.<host>; returns its name.
    pub fn add_attacker(&mut self, host: u8) -> Result<String> {
        let ns = format!("dnt{}-att{}", self.tag, self.attackers.len());
        let veth = format!("dnt{}a{}", self.tag, self.attackers.len());
        let _ = ip(&["netns", "del", &ns]);
        let _ = ip(&["link", "del", &veth]);
        ip(&["netns", "add", &ns])?;
        self.attackers.push((ns.clone(), veth.clone()));
        ip(&[
            "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
        ])?;
        ip(&["link", "set", &veth, "master", &self.bridge, "up"])?;
        let a = format!("{}/24", addr(self.net, host));
        ip(&["-n", &ns, "addr", "add", &a, "dev", "eth0"])?;
        ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Runs `program args…` inside namespace `ns` (via `ip netns exec`), with a timeout.
    pub fn exec_in(
        &self,
        ns: &str,
        program: &str,
        package: &str,
        args: &[&str],
        stdin: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<Output> {
        let prog = require_program(program, package)?;
        let ipb = crate::netns::ip_binary().ok_or_else(|| anyhow!("no ip binary"))?;
        let mut child = Command::new(ipb)
            .args(["netns", "exec", ns])
            .arg(&prog)
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("running {program} in {ns}"))?;
        if let (Some(data), Some(mut w)) = (stdin, child.stdin.take()) {
            use std::io::Write as _;
            w.write_all(data)?;
        }
        let deadline = Instant::now() + timeout;
        loop {
            if child.try_wait()?.is_some() {
                return Ok(child.wait_with_output()?);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let out = child.wait_with_output()?;
                bail!(
                    "{program} {args:?} did not finish in {timeout:?}: stdout {} stderr {}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn events(&self) -> Result<Vec<EventRow>> {
        if !self.db.exists() {
            return Ok(Vec::new());
        }
        read_events(&self.db)
    }

    pub fn credentials(&self) -> Result<Vec<CredentialRow>> {
        if !self.db.exists() {
            return Ok(Vec::new());
        }
        read_credentials(&self.db)
    }

    /// Polls until `pred` holds for the events (returns them) or `timeout` passes.
    pub fn wait_events(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&[EventRow]) -> bool,
    ) -> Result<Vec<EventRow>> {
        let deadline = Instant::now() + timeout;
        loop {
            let ev = self.events().unwrap_or_default();
            if pred(&ev) {
                return Ok(ev);
            }
            if Instant::now() > deadline {
                let shown: Vec<String> = ev
                    .iter()
                    .rev()
                    .take(40)
                    .map(|e| {
                        format!(
                            "{} {} {} {:?} {}",
                            e.decky, e.service, e.event_type, e.attacker_ip, e.fields
                        )
                    })
                    .collect();
                bail!(
                    "waited {timeout:?} for {what}; last events:\n  {}\ndeploy log:\n{}",
                    shown.join("\n  "),
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The holder pid of lease `kind` in the repository.
    pub fn lease_pid(&self, kind: &str) -> Result<Option<u32>> {
        if !self.db.exists() {
            return Ok(None);
        }
        let conn = rusqlite::Connection::open_with_flags(
            &self.db,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )?;
        conn.busy_timeout(Duration::from_secs(10))?;
        let pid: Option<i64> = conn
            .query_row(
                "SELECT pid FROM worker_leases WHERE kind = ?",
                [kind],
                |r| r.get(0),
            )
            .ok();
        Ok(pid.map(|p| p as u32))
    }

    /// `decnet <args…>` with this deployment's database (and run dir for teardown, status and
    /// deploy); returns its output.
    pub fn decnet(&self, args: &[&str]) -> Result<Output> {
        let mut cmd = Command::new(decnet_bin()?);
        cmd.args(args);
        if matches!(args.first(), Some(&("teardown" | "status" | "deploy"))) {
            cmd.arg("--run-dir").arg(&self.run_dir);
        }
        cmd.env("DECNET_DB_URL", format!("sqlite://{}", self.db.display()))
            .env_remove("DECNET_DB_TYPE")
            .stdin(Stdio::null())
            .output()
            .context("running decnet")
    }

    /// SIGTERM to `decnet deploy`; waits for it (up to `timeout`).
    pub fn stop(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let Some(mut child) = self.child.take() else {
            bail!("not running");
        };
        // SAFETY: kill(2) on our child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = child.try_wait()? {
                return Ok(s);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "decnet deploy did not stop within {timeout:?}:\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL to `decnet deploy` (a crash).
    pub fn crash(&mut self) -> Result<()> {
        let mut child = self.child.take().ok_or_else(|| anyhow!("not running"))?;
        child.kill()?;
        child.wait()?;
        Ok(())
    }

    /// Waits for the child `decnet deploy` to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let mut child = self.child.take().ok_or_else(|| anyhow!("not running"))?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = child.try_wait()? {
                return Ok(s);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "decnet deploy did not exit within {timeout:?}:\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.stop(Duration::from_secs(20));
        }
        let _ = self.decnet(&["teardown"]);
        for (ns, veth) in &self.attackers {
            let _ = ip(&["link", "del", veth]);
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

/// Every `/proc` process whose command line contains `needle`.
pub fn processes_with(needle: &str) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) {
            let cmd: Vec<u8> = cmd.iter().map(|&b| if b == 0 { b' ' } else { b }).collect();
            if String::from_utf8_lossy(&cmd).contains(needle) {
                out.push(pid);
            }
        }
    }
    out
}

/// Names of the links in the host namespace.
pub fn host_links() -> Result<Vec<String>> {
    Ok(ip(&["-o", "link", "show"])?
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_owned())
        .collect())
}

/// Whether a path exists (for namespace mounts under /run/netns).
pub fn exists(p: impl AsRef<Path>) -> bool {
    p.as_ref().exists()
}
