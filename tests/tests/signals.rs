//! Stopping, end to end (issue 11): `decnet deploy` stopped by SIGHUP or SIGINT to its process
//! group (also through `cargo xtask run`) removes everything; its children stop on their own when
//! it is killed -9 (`PR_SET_PDEATHSIG` from the one spawner thread) and a worker stops when the
//! process named by `DECNET_PARENT_PID` is gone (the runtime's own watch); every worker stops on
//! SIGTERM although nobody reads its stdout and stderr any more; a deployment whose record
//! cannot be saved stops with an error naming the file and leaves nothing behind.
//!
//! Needs root. Each fleet has its own bridge (`dntsg<n>`), subnet (10.24<n>.0.0/24) and decky
//! names, so these run beside the other fleet tests. No traffic leaves loopback or the test's own
//! namespaces.
use std::{
    ffi::OsString,
    io::Read as _,
    net::TcpListener,
    os::unix::process::{CommandExt as _, ExitStatusExt as _},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use decnet_e2e::{
    fleet::{Created, Deployment, is_alive, live_processes},
    netns::ip,
    sensor::decnet_bin,
};

/// Every worker `decnet deploy` runs.
const ALL_WORKERS: &str = "collector,sniffer,correlator,profiler";

fn one_decky(tag: &str, net: u8) -> String {
    format!(
        r#"
[[decky]]
name = "{tag}-a"
ip = "10.{net}.0.10"
services = ["ssh", "http"]
"#
    )
}

/// Waits for `child` to exit, up to `timeout`; kills it after that (and fails).
fn wait_child(child: &mut Child, what: &str, timeout: Duration) -> Result<(ExitStatus, Duration)> {
    let t0 = Instant::now();
    loop {
        if let Some(s) = child.try_wait()? {
            return Ok((s, t0.elapsed()));
        }
        if t0.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{what} did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until `path` exists, while `child` runs, up to `timeout`.
fn wait_file(path: &Path, child: &mut Child, what: &str, timeout: Duration) -> Result<()> {
    let t0 = Instant::now();
    while !path.exists() {
        if let Some(s) = child.try_wait()? {
            bail!("{what} exited ({s}) before writing {}", path.display());
        }
        if t0.elapsed() > timeout {
            bail!("{what} did not write {} within {timeout:?}", path.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Deploy in its own process group, stop it with `sig` sent to the group, and check that within
/// 10 s nothing of it is left.
fn group_signal_removes_everything(d: &mut Deployment, sig: i32, name: &str) -> Result<()> {
    d.launch_grouped(ALL_WORKERS)?;
    let created = d.created()?;
    ensure!(
        created.units.len() == 5 && created.namespaces.len() == 1 && created.links.len() == 2,
        "4 workers and a decky, its namespace, its veth and the bridge: {created:?}"
    );
    d.signal_group(sig)?;
    let t0 = Instant::now();
    let status = d.wait_exit(Duration::from_secs(10))?;
    assert!(
        status.success(),
        "{name}: deploy exit {status}\n{}",
        d.logs()
    );
    let left = Duration::from_secs(10).saturating_sub(t0.elapsed());
    let took = d.wait_clean(&created, left)? + t0.elapsed();
    eprintln!("{name} to the group: everything removed in {took:?}");
    Ok(())
}

#[test]
fn sighup_and_sigint_to_the_process_group_remove_the_whole_deployment() -> Result<()> {
    let (tag, net) = ("sg1", 241);
    let mut d = Deployment::new(tag, net, &one_decky(tag, net))?;
    group_signal_removes_everything(&mut d, libc::SIGHUP, "SIGHUP")?;
    group_signal_removes_everything(&mut d, libc::SIGINT, "SIGINT")?;
    Ok(())
}

/// `cargo xtask run -- --fleet F …` (a private fleet, run dir, state dir and database, so it
/// does not clash with a developer's `cargo xtask run` of the example fleet on decnet0 and
/// /run/decnet): cargo and xtask exec into `decnet deploy`, which a SIGINT to the group (Ctrl-C)
/// stops and removes.
#[test]
fn ctrl_c_to_cargo_xtask_run_removes_the_whole_deployment() -> Result<()> {
    let (tag, net) = ("sg2", 242);
    let mut d = Deployment::new(tag, net, &one_decky(tag, net))?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("workspace root")?
        .to_path_buf();
    // A clean environment: what cargo set for this test binary (CARGO_PKG_*, CARGO_MANIFEST_*,
    // LD_LIBRARY_PATH, its [env]) would change build-script fingerprints and make the nested
    // `cargo build` rebuild decnet from scratch.
    let mut cmd = Command::new(&cargo);
    cmd.env_clear();
    for k in [
        "HOME",
        "USER",
        "LANG",
        "TERM",
        "CARGO_HOME",
        "CARGO_TARGET_DIR",
        "RUSTUP_HOME",
        "RUSTUP_TOOLCHAIN",
        "DECNET_BIN",
    ] {
        if let Some(v) = std::env::var_os(k) {
            cmd.env(k, v);
        }
    }
    // cargo itself must be on PATH for xtask (it runs `cargo build`).
    let mut path = OsString::new();
    if let Some(dir) = Path::new(&cargo)
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
    {
        path.push(dir);
        path.push(":");
    }
    path.push(std::env::var_os("PATH").unwrap_or_default());
    cmd.env("PATH", path);
    cmd.current_dir(&workspace)
        .args(["xtask", "run", "--"])
        .args(d.deploy_args(ALL_WORKERS))
        .process_group(0);
    // The first run may build xtask; decnet itself is built already.
    d.launch_command(cmd, Duration::from_secs(600))?;
    let pid = d.pid().context("running")?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))?;
    let argv: Vec<String> = cmdline
        .split(|&b| b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    ensure!(
        argv.get(1).map(String::as_str) == Some("deploy")
            && argv
                .iter()
                .any(|a| *a == d.fleet_file.display().to_string()),
        "cargo and xtask exec into decnet deploy of our fleet: {argv:?}"
    );
    let created = d.created()?;
    ensure!(created.units.len() == 5, "{created:?}");
    d.signal_group(libc::SIGINT)?;
    let t0 = Instant::now();
    let status = d.wait_exit(Duration::from_secs(10))?;
    assert!(status.success(), "deploy exit {status}\n{}", d.logs());
    let took = d.wait_clean(
        &created,
        Duration::from_secs(10).saturating_sub(t0.elapsed()),
    )? + t0.elapsed();
    eprintln!("Ctrl-C to cargo xtask run: everything removed in {took:?}");
    Ok(())
}

/// kill -9 of `decnet deploy`: every child (4 workers, the decky) stops within 5 s by itself;
/// `decnet teardown` then removes what the killed deploy left.
#[test]
fn children_of_a_killed_deploy_exit_within_five_seconds_and_teardown_cleans_up() -> Result<()> {
    let (tag, net) = ("sg3", 243);
    let mut d = Deployment::new(tag, net, &one_decky(tag, net))?;
    d.launch_grouped(ALL_WORKERS)?;
    let created = d.created()?;
    ensure!(created.units.len() == 5, "{created:?}");
    d.crash()?;
    let t0 = Instant::now();
    loop {
        let alive: Vec<&(String, u32)> =
            created.units.iter().filter(|(_, p)| is_alive(*p)).collect();
        let orphans: Vec<u32> = live_processes()
            .into_iter()
            .filter(|p| p.env_parent == Some(created.supervisor))
            .map(|p| p.pid)
            .collect();
        if alive.is_empty() && orphans.is_empty() {
            break;
        }
        if t0.elapsed() > Duration::from_secs(5) {
            bail!(
                "5 s after kill -9 of decnet deploy these still run: {alive:?}, orphans {orphans:?}\n{}",
                d.logs()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("every child gone {:?} after kill -9", t0.elapsed());
    let log = d.logs();
    assert!(
        log.contains("the supervising process is gone") || log.contains("SIGTERM: stopping"),
        "the children stopped on their own:\n{log}"
    );
    // Each finished its work: the kernel's burst of parent-death signals (one per exiting
    // thread of the killed deploy) is one stop request, not a second one that ends a worker
    // mid-write.
    assert!(
        !log.contains("second stop signal") && !log.contains("did not answer"),
        "a child was cut short:\n{log}"
    );
    // The killed deploy left its network and record; teardown removes them.
    ensure!(d.record()?.is_some(), "a killed deploy leaves its record");
    let out = d.decnet(&["teardown"])?;
    assert!(out.status.success(), "teardown: {out:?}");
    d.wait_clean(&created, Duration::from_secs(5))?;
    Ok(())
}

/// A sqlite URL in a new temporary directory (removed on drop).
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Result<TempDir> {
        let d = std::env::temp_dir().join(format!("decnet-signals-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d)?;
        Ok(TempDir(d))
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

/// Kills the process on drop (a test that fails must not leave it running).
struct KillOnDrop(Option<u32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = self.0.filter(|p| is_alive(*p)) {
            // SAFETY: kill(2) on a process this test started.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    }
}

/// A worker started by an intermediate process (`sh`) named by `DECNET_PARENT_PID` stops within
/// 5 s of that process being killed -9: the runtime's parent watch, without `PR_SET_PDEATHSIG`.
#[test]
fn a_worker_stops_within_five_seconds_when_its_named_parent_is_killed() -> Result<()> {
    decnet_e2e::prereq()?;
    let tmp = TempDir::new("parent")?;
    let ready = tmp.0.join("correlator.ready");
    let pidfile = tmp.0.join("correlator.pid");
    let log = tmp.0.join("correlator.log");
    // `$$` is the shell; `wait` keeps it the correlator's parent.
    let script = r#"DECNET_PARENT_PID=$$ "$0" correlator --daemon --ready-file "$1" 2>"$3" &
echo $! > "$2"
wait"#;
    let mut sh = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(decnet_bin()?)
        .arg(&ready)
        .arg(&pidfile)
        .arg(&log)
        .env("DECNET_DB_URL", tmp.db_url())
        .env_remove("DECNET_DB_TYPE")
        .env_remove("DECNET_PARENT_PID")
        .stdin(Stdio::null())
        .spawn()?;
    let mut guard = KillOnDrop(None);
    let sh_guard = KillOnDrop(Some(sh.id()));
    wait_file(&ready, &mut sh, "the correlator", Duration::from_secs(30))?;
    let worker: u32 = std::fs::read_to_string(&pidfile)?.trim().parse()?;
    guard.0 = Some(worker);
    let me = live_processes()
        .into_iter()
        .find(|p| p.pid == worker)
        .context("the correlator runs")?;
    ensure!(
        me.env_parent == Some(sh.id()),
        "DECNET_PARENT_PID is the shell's pid: {me:?}"
    );
    sh.kill()?;
    sh.wait()?;
    drop(sh_guard);
    let t0 = Instant::now();
    while is_alive(worker) {
        if t0.elapsed() > Duration::from_secs(5) {
            bail!(
                "the correlator (pid {worker}) still runs 5 s after its parent was killed:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("correlator gone {:?} after its parent", t0.elapsed());
    let text = std::fs::read_to_string(&log)?;
    assert!(
        text.contains("the supervising process is gone"),
        "it stopped because its parent was gone:\n{text}"
    );
    Ok(())
}

/// A port on 127.0.0.1 nobody listens on now.
fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Starts `cmd` with piped stdout and stderr, waits for `ready`, closes the read ends, sends
/// SIGTERM and returns how long the worker took to exit (it must exit successfully).
fn stops_with_closed_pipes(name: &str, mut cmd: Command, ready: &Path) -> Result<Duration> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {name}"))?;
    let _guard = KillOnDrop(Some(child.id()));
    if let Err(e) = wait_file(ready, &mut child, name, Duration::from_secs(30)) {
        let mut err = String::new();
        if let Some(mut s) = child.stderr.take() {
            let _ = child.kill();
            let _ = s.read_to_string(&mut err);
        }
        bail!("{e:#}\n{err}");
    }
    // Nobody reads its output any more.
    drop(child.stdout.take());
    drop(child.stderr.take());
    // SAFETY: kill(2) on our child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let (status, took) = wait_child(&mut child, name, Duration::from_secs(5))?;
    ensure!(
        status.success(),
        "{name} exit after SIGTERM with closed stdout/stderr: {status} (signal {:?})",
        status.signal()
    );
    Ok(took)
}

#[test]
fn every_worker_stops_on_sigterm_with_its_stdout_and_stderr_closed() -> Result<()> {
    decnet_e2e::prereq()?;
    let bin = decnet_bin()?;
    let tmp = TempDir::new("pipes")?;
    let base = |worker: &str| -> (Command, PathBuf) {
        let ready = tmp.0.join(format!("{worker}.ready"));
        let mut cmd = Command::new(&bin);
        cmd.arg(worker)
            .arg("--daemon")
            .arg("--ready-file")
            .arg(&ready)
            .env("DECNET_DB_URL", tmp.db_url())
            .env_remove("DECNET_DB_TYPE")
            .env_remove("DECNET_PARENT_PID")
            .current_dir(&tmp.0);
        (cmd, ready)
    };
    let mut took = Vec::new();
    for worker in ["correlator", "profiler"] {
        let (cmd, ready) = base(worker);
        took.push((worker, stops_with_closed_pipes(worker, cmd, &ready)?));
    }
    let (mut cmd, ready) = base("collector");
    cmd.args(["--udp", "127.0.0.1:0", "--tcp", "127.0.0.1:0"]);
    took.push((
        "collector",
        stops_with_closed_pipes("collector", cmd, &ready)?,
    ));

    let (mut cmd, ready) = base("web");
    cmd.arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--jwt-secret-file")
        .arg(tmp.0.join("jwt.secret"));
    took.push(("web", stops_with_closed_pipes("web", cmd, &ready)?));

    // A decky on loopback (its collector address: a loopback port nobody listens on).
    let port = free_port()?;
    let fleet = tmp.0.join("fleet.toml");
    std::fs::write(
        &fleet,
        format!(
            "[lan]\nbridge = \"dntsgpipe\"\nsubnet = \"10.245.0.0/24\"\nhost_ip = \"10.245.0.1\"\n\n\
             [[decky]]\nname = \"sg-pipe\"\nip = \"10.245.0.10\"\nservices = [{{ kind = \"http\", port = {port} }}]\n"
        ),
    )?;
    let (mut cmd, ready) = base("decky");
    cmd.args(["--name", "sg-pipe", "--bind", "127.0.0.1"])
        .arg("--fleet")
        .arg(&fleet)
        .arg("--collector")
        .arg(format!("127.0.0.1:{}", free_port()?))
        .arg("--state-dir")
        .arg(tmp.0.join("decky-state"));
    took.push(("decky", stops_with_closed_pipes("decky", cmd, &ready)?));

    // The sniffer, on a bridge of its own inside a namespace of its own.
    let ns = NetnsGuard::new("dntsg-pipe")?;
    ip(&["-n", &ns.0, "link", "add", "br0", "type", "bridge"])?;
    ip(&["-n", &ns.0, "link", "set", "br0", "up"])?;
    let (sniffer, ready) = base("sniffer");
    let mut cmd = Command::new(decnet_e2e::netns::ip_binary().context("ip")?);
    cmd.args(["netns", "exec", &ns.0])
        .arg(sniffer.get_program())
        .args(sniffer.get_args())
        .args(["--bridge", "br0"])
        .env("DECNET_DB_URL", tmp.db_url())
        .env_remove("DECNET_DB_TYPE")
        .env_remove("DECNET_PARENT_PID");
    took.push(("sniffer", stops_with_closed_pipes("sniffer", cmd, &ready)?));
    drop(ns);

    eprintln!("stopped after SIGTERM with closed pipes: {took:?}");
    Ok(())
}

/// A network namespace of the test's own, deleted on drop.
struct NetnsGuard(String);

impl NetnsGuard {
    fn new(name: &str) -> Result<NetnsGuard> {
        let _ = ip(&["netns", "del", name]);
        ip(&["netns", "add", name])?;
        Ok(NetnsGuard(name.to_owned()))
    }
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.0]);
    }
}

/// A deployment record that cannot be saved (its temporary file's name is taken by a directory)
/// stops `decnet deploy` with an error naming the file, and nothing is left: at start, and
/// half-way (the next save after a worker restart).
#[test]
fn a_deployment_whose_record_cannot_be_saved_stops_with_an_error_and_leaves_nothing() -> Result<()>
{
    let (tag, net) = ("sg4", 244);
    let mut d = Deployment::new(tag, net, &one_decky(tag, net))?;
    let tmp = d.run_dir.join(format!("{}.json.tmp", d.bridge));
    std::fs::create_dir_all(tmp.join("blocker"))?;
    let out = Command::new(decnet_bin()?)
        .arg("deploy")
        .arg("--daemon")
        .args(d.deploy_args("collector"))
        .env_remove("DECNET_DB_URL")
        .env_remove("DECNET_DB_TYPE")
        .stdin(Stdio::null())
        .output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "deploy must fail: {out:?}");
    assert!(
        err.contains(&tmp.display().to_string()),
        "the error names {}: {err}",
        tmp.display()
    );
    let nothing = Created {
        supervisor: 0,
        links: vec![d.bridge.clone()],
        namespaces: vec![format!("decnet-{tag}-a")],
        units: Vec::new(),
    };
    let left = d.leftovers(&nothing)?;
    assert!(left.is_empty(), "left after a failed start: {left:?}");

    // Half-way: up, then the record's temporary name is taken, then a unit restarts (a save).
    std::fs::remove_dir_all(&tmp)?;
    d.launch_grouped("collector")?;
    let created = d.created()?;
    std::fs::create_dir_all(tmp.join("blocker"))?;
    let collector = created
        .units
        .iter()
        .find(|(n, _)| n == "collector")
        .context("collector")?
        .1;
    // SAFETY: kill(2) on a worker of the deployment this test started.
    unsafe { libc::kill(collector as i32, libc::SIGKILL) };
    let status = d.wait_exit(Duration::from_secs(20))?;
    let log = d.logs();
    assert!(!status.success(), "deploy must fail: {status}\n{log}");
    assert!(
        log.contains("cannot save the deployment record")
            && log.contains(&tmp.display().to_string()),
        "the error names {}:\n{log}",
        tmp.display()
    );
    d.wait_clean(&created, Duration::from_secs(5))?;
    std::fs::remove_dir_all(&tmp)?;
    Ok(())
}
