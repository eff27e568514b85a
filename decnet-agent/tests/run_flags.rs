//! The flags every worker shares behave the same on every worker: one table over all of them,
//! run as real `decnet` processes.
//!
//! - `--help` of each lists `--daemon`, `--duration`, `--ready-file`, `--summary-json` (and the
//!   repository flags where the worker has a repository);
//! - `--daemon --duration` is refused, and so is a bad `--duration`;
//! - once (neither): the correlator, profiler, retention, prober and mutator do the pending work and exit 0 with their ready
//!   file and summary written; every other worker refuses with the same message and exit code;
//! - `--duration` ends a run by itself, cleanly (exit 0, summary written);
//! - SIGTERM, SIGINT and SIGHUP each stop a `--daemon` run within a few seconds, cleanly.
use std::{
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

fn decnet() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_decnet"));
    c.env_remove("DECNET_DB_URL")
        .env_remove("DECNET_DB_TYPE")
        .env_remove("DECNET_PARENT_PID")
        .stdin(Stdio::null());
    c
}

struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let p = std::env::temp_dir().join(format!("decnet-flags-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("temp dir");
        Dir(p)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
    fn db(&self) -> String {
        format!("sqlite://{}", self.path("decnet.db").display())
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One worker of the table.
struct W {
    name: &'static str,
    /// Has `--db-type`/`--db-url`.
    repo: bool,
    /// Does pending work in one-shot mode.
    once: bool,
    /// Runs here, without root or a bridge, given these arguments (with `{dir}` replaced).
    runnable: Option<&'static [&'static str]>,
}

const WORKERS: &[W] = &[
    W {
        name: "sniffer",
        repo: true,
        once: false,
        runnable: None,
    },
    W {
        name: "collector",
        repo: true,
        once: false,
        runnable: Some(&["--tcp", "127.0.0.1:0", "--udp", "127.0.0.1:0"]),
    },
    W {
        name: "correlator",
        repo: true,
        once: true,
        runnable: Some(&["--interval", "0.2"]),
    },
    W {
        name: "profiler",
        repo: true,
        once: true,
        runnable: Some(&["--interval", "0.2"]),
    },
    W {
        name: "retention",
        repo: true,
        once: true,
        runnable: Some(&["--interval", "0.2"]),
    },
    W {
        name: "prober",
        repo: true,
        once: true,
        runnable: Some(&[
            "--fleet",
            "{dir}/fleet.toml",
            "--vantage-netns",
            "none",
            "--interval",
            "0.2",
            "--connect-timeout",
            "0.2",
        ]),
    },
    W {
        name: "web",
        repo: true,
        once: false,
        runnable: Some(&["--listen", "127.0.0.1:0", "--jwt-secret-file", "{dir}/jwt"]),
    },
    W {
        name: "decky",
        repo: false,
        once: false,
        runnable: Some(&[
            "--name",
            "flags-01",
            "--spec-json",
            "{dir}/spec.json",
            "--bind",
            "127.0.0.1",
            "--collector",
            "127.0.0.1:9",
            "--state-dir",
            "{dir}/state",
        ]),
    },
    W {
        name: "mutator",
        repo: true,
        once: true,
        runnable: Some(&["--watch", "--fleet", "{dir}/fleet.toml"]),
    },
    W {
        name: "deploy",
        repo: true,
        once: false,
        runnable: None,
    },
];

fn args_for(w: &W, dir: &Dir) -> Vec<String> {
    let d = dir.0.display().to_string();
    let mut v: Vec<String> = w
        .runnable
        .unwrap_or(&[])
        .iter()
        .map(|a| a.replace("{dir}", &d))
        .collect();
    if w.repo {
        v.extend(["--db-url".into(), dir.db()]);
    }
    if w.name == "prober" {
        // One decky on loopback where nothing listens: every probe is refused at once.
        std::fs::write(
            dir.path("fleet.toml"),
            "[lan]\nbridge = \"flags0\"\nsubnet = \"127.0.0.0/8\"\nhost_ip = \"127.0.0.1\"\n\n\
             [[decky]]\nname = \"flags-01\"\nip = \"127.0.0.77\"\nos = \"linux\"\nservices = [\"ssh\"]\n",
        )
        .expect("fleet");
    }
    if w.name == "mutator" {
        // No deployment is recorded in this repository: the mutator waits for one (daemon) or
        // has nothing to do (once).
        std::fs::write(
            dir.path("fleet.toml"),
            "[lan]\nbridge = \"muflags0\"\nsubnet = \"10.78.0.0/24\"\nhost_ip = \"10.78.0.1\"\n\n\
             [[decky]]\nname = \"flags-01\"\nip = \"10.78.0.10\"\narchetype = \"web-server\"\n",
        )
        .expect("fleet");
    }
    if w.name == "decky" {
        let spec = serde_json::json!({
            "name": "flags-01", "ip": "10.77.0.10", "hostname": "flags", "os": "linux",
            "archetype": "web-server", "services": [{"kind": "http", "port": 0}],
        });
        std::fs::write(dir.path("spec.json"), spec.to_string()).expect("spec");
    }
    v
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn every_worker_has_the_shared_flags_in_its_help() {
    for w in WORKERS {
        let o = decnet().args([w.name, "--help"]).output().expect("help");
        assert!(o.status.success(), "{} --help", w.name);
        let help = text(&o);
        for flag in ["--daemon", "--duration", "--ready-file", "--summary-json"] {
            assert!(help.contains(flag), "decnet {} --help lacks {flag}", w.name);
        }
        for flag in ["--db-type", "--db-url"] {
            assert_eq!(
                help.contains(flag),
                w.repo,
                "decnet {} --help and {flag}",
                w.name
            );
        }
    }
}

#[test]
fn conflicting_or_bad_run_modes_are_refused_the_same_way() {
    for w in WORKERS {
        let o = decnet()
            .args([w.name, "--daemon", "--duration", "1"])
            .output()
            .expect("run");
        assert_eq!(o.status.code(), Some(2), "{}: {}", w.name, text(&o));
        assert!(
            text(&o).contains("cannot be used with"),
            "{}: {}",
            w.name,
            text(&o)
        );
        for bad in ["0", "-1", "soon"] {
            let o = decnet()
                .args([w.name, &format!("--duration={bad}")])
                .output()
                .expect("run");
            assert_eq!(o.status.code(), Some(2), "{} --duration {bad}", w.name);
            assert!(
                text(&o).contains("is not a positive number of seconds"),
                "{} --duration {bad}: {}",
                w.name,
                text(&o)
            );
        }
    }
}

#[test]
fn once_does_the_pending_work_or_is_refused_with_one_message() {
    for w in WORKERS.iter().filter(|w| w.runnable.is_some()) {
        let dir = Dir::new(&format!("once-{}", w.name));
        let (ready, summary) = (dir.path("ready"), dir.path("summary.json"));
        let o = decnet()
            .arg(w.name)
            .args(args_for(w, &dir))
            .arg("--ready-file")
            .arg(&ready)
            .arg("--summary-json")
            .arg(&summary)
            .output()
            .expect("run");
        if w.once {
            assert!(o.status.success(), "{} once: {}", w.name, text(&o));
            assert_eq!(
                std::fs::read_to_string(&ready).expect("ready file"),
                format!("{}\n", w.name)
            );
            let s: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&summary).expect("summary")).unwrap();
            assert_eq!(s["passes"], 1, "{}: {s}", w.name);
        } else {
            assert_eq!(o.status.code(), Some(1), "{} once: {}", w.name, text(&o));
            let want = format!(
                "decnet {} runs until it is stopped: say how long, with --daemon",
                w.name
            );
            assert!(text(&o).contains(&want), "{}: {}", w.name, text(&o));
            assert!(!ready.exists() && !summary.exists(), "{}", w.name);
        }
    }
    // The two that need root and a bridge refuse in the same words, before anything else.
    for (name, args) in [
        ("sniffer", ["--bridge", "decnet-none"]),
        ("deploy", ["--fleet", "/nonexistent/fleet.toml"]),
    ] {
        let o = decnet().arg(name).args(args).output().expect("run");
        assert_eq!(o.status.code(), Some(1), "{name}: {}", text(&o));
        let want = format!("decnet {name} runs until it is stopped: say how long, with --daemon");
        assert!(text(&o).contains(&want), "{name}: {}", text(&o));
    }
}

/// Waits for `path` (a ready file), failing after `limit`.
fn wait_for(path: &Path, child: &mut std::process::Child, limit: Duration, what: &str) {
    let t = Instant::now();
    while !path.exists() {
        if let Ok(Some(st)) = child.try_wait() {
            panic!("{what} exited ({st}) before it was ready");
        }
        assert!(t.elapsed() < limit, "{what}: no ready file after {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn duration_ends_every_runnable_worker_cleanly() {
    for w in WORKERS.iter().filter(|w| w.runnable.is_some()) {
        let dir = Dir::new(&format!("dur-{}", w.name));
        let (ready, summary) = (dir.path("ready"), dir.path("summary.json"));
        let t = Instant::now();
        let o = decnet()
            .arg(w.name)
            .args(args_for(w, &dir))
            .args(["--duration", "1.5", "--ready-file"])
            .arg(&ready)
            .arg("--summary-json")
            .arg(&summary)
            .output()
            .expect("run");
        let took = t.elapsed();
        assert!(o.status.success(), "{} --duration: {}", w.name, text(&o));
        assert!(
            took >= Duration::from_millis(1500) && took < Duration::from_secs(10),
            "{} --duration 1.5 took {took:?}",
            w.name
        );
        assert!(ready.exists(), "{}: no ready file", w.name);
        assert!(summary.exists(), "{}: no summary", w.name);
    }
}

#[test]
fn each_stop_signal_ends_every_runnable_daemon_cleanly() {
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        for w in WORKERS.iter().filter(|w| w.runnable.is_some()) {
            let dir = Dir::new(&format!("sig{sig}-{}", w.name));
            let (ready, summary) = (dir.path("ready"), dir.path("summary.json"));
            let mut child = decnet()
                .arg(w.name)
                .args(args_for(w, &dir))
                .args(["--daemon", "--ready-file"])
                .arg(&ready)
                .arg("--summary-json")
                .arg(&summary)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn");
            wait_for(&ready, &mut child, Duration::from_secs(30), w.name);
            let pid = i32::try_from(child.id()).expect("pid");
            // SAFETY: kill(2) on our own child.
            assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
            let t = Instant::now();
            let status = loop {
                if let Some(st) = child.try_wait().expect("wait") {
                    break st;
                }
                if t.elapsed() > Duration::from_secs(5) {
                    let _ = child.kill();
                    panic!("{} ignored signal {sig} for 5 s", w.name);
                }
                std::thread::sleep(Duration::from_millis(20));
            };
            assert!(status.success(), "{} after signal {sig}: {status}", w.name);
            assert!(
                summary.exists(),
                "{} after signal {sig}: no summary",
                w.name
            );
        }
    }
}
