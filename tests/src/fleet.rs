//! Runs the real `decnet deploy` with a fleet file of the test's own, adds attacker namespaces on
//! its bridge, and reads back the deployment record, the events, credentials and leases.
//!
//! Every name a deployment creates is derived from the test's tag (bridge `dnt<tag>`, deckies
//! `<tag>-…`, attacker namespace `dnt<tag>-att<n>`), so fleet tests run side by side. `Drop`
//! stops the deployment (SIGTERM, then `decnet teardown`) and deletes the attacker namespaces.
use std::{
    ffi::OsString,
    net::Ipv4Addr,
    os::unix::process::CommandExt as _,
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
        let mut d = Deployment::new(tag, net, deckies)?;
        d.launch(workers)?;
        Ok(d)
    }

    /// Writes the fleet file (like [`Deployment::start`]) but starts nothing: launch it with
    /// [`Deployment::launch`], [`Deployment::launch_grouped`] or [`Deployment::launch_command`].
    pub fn new(tag: &str, net: u8, deckies: &str) -> Result<Deployment> {
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
        Ok(Deployment {
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
        })
    }

    /// The ready file `decnet deploy` is told to write.
    pub fn ready_file(&self) -> PathBuf {
        self.dir.join("deploy.ready")
    }

    /// `decnet deploy`'s arguments after `deploy --daemon`: this deployment's fleet file,
    /// `workers`, run dir, state dir, database and ready file.
    pub fn deploy_args(&self, workers: &str) -> Vec<OsString> {
        vec![
            "--fleet".into(),
            self.fleet_file.clone().into(),
            "--workers".into(),
            workers.into(),
            "--run-dir".into(),
            self.run_dir.clone().into(),
            "--state-dir".into(),
            self.state_dir.clone().into(),
            "--db-url".into(),
            format!("sqlite://{}", self.db.display()).into(),
            "--ready-file".into(),
            self.ready_file().into(),
        ]
    }

    fn deploy_command(&self, workers: &str) -> Result<Command> {
        let mut cmd = Command::new(decnet_bin()?);
        cmd.arg("deploy")
            .arg("--daemon")
            .args(self.deploy_args(workers));
        Ok(cmd)
    }

    /// Starts `decnet deploy` again (after a stop or a crash) and waits until ready.
    pub fn launch(&mut self, workers: &str) -> Result<Duration> {
        let cmd = self.deploy_command(workers)?;
        self.launch_command(cmd, Duration::from_secs(60))
    }

    /// Like [`Deployment::launch`], with `decnet deploy` leading a process group of its own (as
    /// from a terminal or a service manager): [`Deployment::signal_group`] reaches it.
    pub fn launch_grouped(&mut self, workers: &str) -> Result<Duration> {
        let mut cmd = self.deploy_command(workers)?;
        cmd.process_group(0);
        self.launch_command(cmd, Duration::from_secs(60))
    }

    /// Spawns `cmd` (which must end up as a `decnet deploy` writing [`Deployment::ready_file`],
    /// e.g. through `cargo xtask run`) with its output in the log, and waits up to `timeout`
    /// until it is ready.
    pub fn launch_command(&mut self, mut cmd: Command, timeout: Duration) -> Result<Duration> {
        ensure!(self.child.is_none(), "a decnet deploy of {} runs", self.tag);
        let ready = self.ready_file();
        let _ = std::fs::remove_file(&ready);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let t0 = Instant::now();
        let child = cmd
            .env_remove("DECNET_DB_TYPE")
            .env_remove("DECNET_DB_URL")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {cmd:?}"))?;
        self.child = Some(child);
        let deadline = t0 + timeout;
        while !ready.exists() {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                bail!(
                    "decnet deploy exited ({status}) before it was ready:\n{}",
                    self.logs()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "decnet deploy not ready after {timeout:?}:\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(t0.elapsed())
    }

    /// Sends `sig` to the process group `decnet deploy` leads (see
    /// [`Deployment::launch_grouped`]).
    pub fn signal_group(&self, sig: i32) -> Result<()> {
        let pid = self.pid().ok_or_else(|| anyhow!("not running"))?;
        // SAFETY: kill(2) on the process group of our child.
        if unsafe { libc::kill(-(pid as i32), sig) } != 0 {
            return Err(std::io::Error::last_os_error()).context("kill(-pgid)");
        }
        Ok(())
    }

    /// What the running deployment created, per its record: links, namespaces, processes.
    pub fn created(&self) -> Result<Created> {
        let rec = self
            .record()?
            .ok_or_else(|| anyhow!("no deployment record"))?;
        let strs = |v: &serde_json::Value| -> Vec<String> {
            v.as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        };
        let mut links = strs(&rec["veths"]);
        if rec["bridge_created"] == true {
            links.push(self.bridge.clone());
        }
        let mut units = Vec::new();
        for (name, p) in rec["processes"].as_object().into_iter().flatten() {
            if let Some(pid) = p["pid"].as_u64() {
                units.push((name.clone(), pid as u32));
            }
        }
        Ok(Created {
            supervisor: rec["supervisor_pid"].as_u64().unwrap_or(0) as u32,
            links,
            namespaces: strs(&rec["namespaces"]),
            units,
        })
    }

    /// What is left of `created`: links, namespaces, the record, live processes of the
    /// deployment (a command line naming its run dir, or `DECNET_PARENT_PID` = its supervisor).
    pub fn leftovers(&self, created: &Created) -> Result<Vec<String>> {
        let mut left = Vec::new();
        let links = host_links()?;
        for l in &created.links {
            if links.contains(l) {
                left.push(format!("link {l}"));
            }
        }
        let ns = crate::netns::list_namespaces();
        for n in &created.namespaces {
            if ns.contains(n) {
                left.push(format!("namespace {n}"));
            }
        }
        if self.record()?.is_some() {
            left.push(format!(
                "record {}/{}.json",
                self.run_dir.display(),
                self.bridge
            ));
        }
        let run_dir = self.run_dir.display().to_string();
        for p in live_processes() {
            let env_parent = p.env_parent == Some(created.supervisor) && created.supervisor != 0;
            if p.cmdline.contains(&run_dir) || env_parent {
                left.push(format!("process {} {}", p.pid, p.cmdline));
            }
        }
        for (name, pid) in &created.units {
            if is_alive(*pid)
                && !left
                    .iter()
                    .any(|l| l.starts_with(&format!("process {pid} ")))
            {
                left.push(format!("unit {name} pid {pid}"));
            }
        }
        Ok(left)
    }

    /// Polls until nothing of `created` is left, up to `timeout`; returns how long it took.
    pub fn wait_clean(&self, created: &Created, timeout: Duration) -> Result<Duration> {
        let t0 = Instant::now();
        loop {
            let left = self.leftovers(created)?;
            if left.is_empty() {
                return Ok(t0.elapsed());
            }
            if t0.elapsed() > timeout {
                bail!(
                    "after {timeout:?} these are left of the deployment on {}:\n  {}\ndeploy log:\n{}",
                    self.bridge,
                    left.join("\n  "),
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
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

    /// SIGTERM to `decnet deploy` (to its process group if it leads one); waits for it (up to
    /// `timeout`).
    pub fn stop(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let Some(mut child) = self.child.take() else {
            bail!("not running");
        };
        let pid = child.id() as i32;
        // A child leading its own group (launch_grouped, or `cargo xtask run`) gets it as a
        // group, so that a `cargo build` it is still waiting for stops too.
        // SAFETY: getpgid(2) and kill(2) on our child.
        unsafe {
            let target = if libc::getpgid(pid) == pid { -pid } else { pid };
            libc::kill(target, libc::SIGTERM);
        }
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

/// What a deployment created (read from its record while it runs).
#[derive(Debug, Clone, Default)]
pub struct Created {
    /// `decnet deploy`'s pid.
    pub supervisor: u32,
    /// Host links it created: veths, and the bridge if it created it.
    pub links: Vec<String>,
    pub namespaces: Vec<String>,
    /// (unit, pid) of every supervised process.
    pub units: Vec<(String, u32)>,
}

/// A running (not zombie) process.
#[derive(Debug, Clone)]
pub struct Proc {
    pub pid: u32,
    /// Arguments joined by spaces.
    pub cmdline: String,
    /// Its `DECNET_PARENT_PID`, if set.
    pub env_parent: Option<u32>,
}

/// Whether `pid` exists and is not a zombie.
pub fn is_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X'),
        Err(_) => false,
    }
}

/// Every running process, with its command line and `DECNET_PARENT_PID`.
pub fn live_processes() -> Vec<Proc> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == std::process::id() || !is_alive(pid) {
            continue;
        }
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmd)
            .trim_end_matches('\0')
            .replace('\0', " ");
        let env_parent = std::fs::read(format!("/proc/{pid}/environ"))
            .ok()
            .and_then(|env| {
                env.split(|&b| b == 0)
                    .find_map(|kv| kv.strip_prefix(b"DECNET_PARENT_PID="))
                    .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok())
            });
        out.push(Proc {
            pid,
            cmdline,
            env_parent,
        });
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
