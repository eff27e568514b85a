//! Embed mode and the worker leases, with the real binary (DECNET_BIN, set by `cargo xtask
//! test`): an embedded worker and a standalone copy of it can never run at once — whichever
//! starts second refuses, naming the first.
mod support;

use std::{
    path::PathBuf,
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use decnet_core::repo::{LeaseHolder, Repository};
use support::common::{Backend, TestDb};

fn bin() -> PathBuf {
    PathBuf::from(std::env::var("DECNET_BIN").unwrap_or_else(|_| {
        panic!(
            "DECNET_BIN is not set: these tests run the real `decnet` binary. Run them with \
             `cargo xtask test`, or `cargo build --release -p decnet-agent` and set \
             DECNET_BIN=$PWD/target/release/decnet"
        )
    }))
}

fn web(db: &TestDb, dir: &std::path::Path, env: &[(&str, &str)]) -> Command {
    let mut c = Command::new(bin());
    c.current_dir(dir)
        .args([
            "web",
            "--duration",
            "20",
            "--listen",
            "127.0.0.1:0",
            "--db-url",
            &db.url,
        ])
        .arg("--ready-file")
        .arg(dir.join("ready"))
        .env("DECNET_ADMIN_PASSWORD", "Embed-Test-Passw0rd!")
        .env_remove("DECNET_JWT_SECRET")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

fn finish(mut c: Command, within: Duration) -> Output {
    let mut child = c.spawn().expect("cannot run decnet");
    let deadline = Instant::now() + within;
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "did not exit within {within:?}; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("decnet-embed-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A standalone worker holds the lease (this test process plays it): `decnet web` with that
/// worker embedded refuses to start, naming the holder, and serves nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_worker_refuses_when_a_standalone_one_runs() {
    let db = TestDb::new(Backend::Sqlite, "web_embed").await;
    let repo: Repository = db.open().await;
    let dir = tmpdir("refuse");
    for (kind, env) in [
        (
            "sniffer@br-embed",
            vec![
                ("DECNET_EMBED_SNIFFER", "1"),
                ("DECNET_SNIFFER_BRIDGE", "br-embed"),
            ],
        ),
        ("profiler", vec![("DECNET_EMBED_PROFILER", "1")]),
    ] {
        let holder = LeaseHolder::this_process(kind);
        let lease = repo
            .hold_lease(holder.clone(), Duration::from_secs(15))
            .await
            .unwrap();
        let _ = std::fs::remove_file(dir.join("ready"));
        let out = finish(web(&db, &dir, &env), Duration::from_secs(30));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{kind}: web started anyway:\n{err}");
        assert!(
            err.contains(&format!("another {kind} is already running"))
                && err.contains(&holder.holder)
                && err.contains(&format!("pid {}", std::process::id())),
            "{kind}: the refusal must name the running instance:\n{err}"
        );
        assert!(!dir.join("ready").exists(), "{kind}: web must not serve");
        lease.release().await.unwrap();
    }
    repo.close().await;
    db.cleanup().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// The reverse: `decnet web` runs the profiler embedded (it holds the lease); a standalone
/// `decnet profiler` refuses, naming the web process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_worker_refuses_while_embedded_one_runs() {
    let db = TestDb::new(Backend::Sqlite, "web_embed2").await;
    drop(db.open().await); // migrate first
    let dir = tmpdir("embedded");
    let mut web = web(&db, &dir, &[("DECNET_EMBED_PROFILER", "1")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let web_pid = web.id();
    // Wait until the embedded profiler holds its lease.
    let repo = Repository::open(&db.config()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let leases = repo.leases().await.unwrap();
        if leases
            .iter()
            .any(|l| l.kind == "profiler" && l.pid == web_pid)
        {
            break;
        }
        if let Some(st) = web.try_wait().unwrap() {
            panic!("decnet web exited early ({st}) instead of running the embedded profiler");
        }
        assert!(
            Instant::now() < deadline,
            "the embedded profiler never took its lease: {leases:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut p = Command::new(bin());
    p.current_dir(&dir)
        .args(["profiler", "--daemon", "--db-url", &db.url])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = finish(p, Duration::from_secs(30));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a second profiler started:\n{err}");
    assert!(
        err.contains("another profiler is already running")
            && err.contains(&format!("pid {web_pid}")),
        "the refusal must name the web process:\n{err}"
    );
    // SAFETY: kill(2) of our own child.
    unsafe { libc_kill(web_pid) };
    let st = web.wait().unwrap();
    assert!(
        st.success(),
        "decnet web with the embedded profiler must stop cleanly on SIGTERM: {st}"
    );
    let leases = repo.leases().await.unwrap();
    assert!(
        !leases.iter().any(|l| l.kind == "profiler"),
        "the lease is released on stop: {leases:?}"
    );
    repo.close().await;
    db.cleanup().await;
    let _ = std::fs::remove_dir_all(dir);
}

unsafe fn libc_kill(pid: u32) {
    unsafe extern "C" {
        fn kill(pid: i32, sig: i32) -> i32;
    }
    // SIGTERM = 15 on Linux.
    unsafe { kill(pid as i32, 15) };
}
