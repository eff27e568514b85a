//! The deployment record: what `decnet deploy` created and which processes it runs, written
//! (atomically) before and after every step, so `decnet teardown` removes exactly that — also
//! after a crash half-way — and `decnet status` can report pids, uptimes and restarts.
//!
//! One file per bridge: `<run-dir>/<bridge>.json` (run-dir default `/run/decnet`, a tmpfs
//! that a reboot clears together with the namespaces it describes).
use std::{
    collections::BTreeMap,
    net::Ipv4Addr,
    path::{Path, PathBuf},
};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

/// The default directory for deployment records and ready files.
pub const DEFAULT_RUN_DIR: &str = "/run/decnet";

/// A supervised process.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcState {
    /// `worker` or `decky`.
    pub kind: String,
    pub pid: Option<u32>,
    /// Wall-clock start of the current run (ns since the epoch).
    pub started_ns: i64,
    pub restarts: u32,
    /// How the previous run ended (e.g. "killed by signal 9").
    pub last_exit: Option<String>,
}

/// One decky as deployed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeckyState {
    pub name: String,
    pub ip: Ipv4Addr,
    pub netns: String,
    pub veth: String,
    pub mac: String,
    pub os: String,
    /// (service, port).
    pub services: Vec<(String, u16)>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployState {
    pub supervisor_pid: u32,
    pub started_ns: i64,
    pub fleet_file: PathBuf,
    pub bridge: String,
    /// We created the bridge (teardown deletes it).
    pub bridge_created: bool,
    /// The host address we added to the bridge (teardown removes it if the bridge stays).
    pub host_addr: Option<(Ipv4Addr, u8)>,
    /// The uplink we enslaved (teardown releases it).
    pub uplink: Option<String>,
    /// The nftables table (family inet) fencing the host off the bridge (teardown deletes it)
    /// — recorded before creation.
    #[serde(default)]
    pub fence: Option<String>,
    /// Namespaces created (teardown deletes them) — recorded before creation.
    pub namespaces: Vec<String>,
    /// Host-side veths created — recorded before creation.
    pub veths: Vec<String>,
    pub deckies: Vec<DeckyState>,
    /// Supervised processes by unit name (`collector`, `decky:web-01`, …).
    pub processes: BTreeMap<String, ProcState>,
    /// Set once every decky and worker has come up.
    pub ready: bool,
}

pub fn state_path(run_dir: &Path, bridge: &str) -> PathBuf {
    run_dir.join(format!("{bridge}.json"))
}

impl DeployState {
    pub fn save(&self, run_dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(run_dir)
            .with_context(|| format!("cannot create {}", run_dir.display()))?;
        let path = state_path(run_dir, &self.bridge);
        let tmp = path.with_extension("json.tmp");
        let body = serde_json::to_vec_pretty(self)
            .with_context(|| format!("cannot encode the deployment for {}", path.display()))?;
        std::fs::write(&tmp, body).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| {
            format!(
                "cannot write {} (renaming {} over it)",
                path.display(),
                tmp.display()
            )
        })
    }

    pub fn load(path: &Path) -> anyhow::Result<Option<DeployState>> {
        match std::fs::read(path) {
            Ok(b) => Ok(Some(serde_json::from_slice(&b).with_context(|| {
                format!(
                    "{} is not a decnet deployment record (remove it by hand if it is stale)",
                    path.display()
                )
            })?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// All deployment records in `run_dir`.
    pub fn load_all(run_dir: &Path) -> anyhow::Result<Vec<(PathBuf, DeployState)>> {
        let mut out = Vec::new();
        let entries = match std::fs::read_dir(run_dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", run_dir.display())),
        };
        for entry in entries {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "json")
                && let Some(s) = DeployState::load(&path)?
            {
                out.push((path, s));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
}

/// Whether `pid` is a live decnet process (a reused pid running something else is not ours).
pub fn is_decnet_process(pid: u32) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // A zombie (exited, not yet reaped) is not running.
    let state = stat.rsplit_once(") ").map(|(_, rest)| rest.chars().next());
    if state == Some(Some('Z')) {
        return false;
    }
    let argv0 = cmdline.split(|&b| b == 0).next().unwrap_or_default();
    Path::new(std::str::from_utf8(argv0).unwrap_or(""))
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with("decnet"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_are_found() {
        let dir = std::env::temp_dir().join(format!("decnet-state-{}", std::process::id()));
        let mut s = DeployState {
            bridge: "dnt0".into(),
            supervisor_pid: 42,
            namespaces: vec!["decnet-a".into()],
            ..Default::default()
        };
        s.processes.insert(
            "collector".into(),
            ProcState {
                kind: "worker".into(),
                pid: Some(7),
                restarts: 2,
                ..Default::default()
            },
        );
        s.save(&dir).unwrap();
        let all = DeployState::load_all(&dir).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].1, s);
        assert_eq!(DeployState::load(&dir.join("none.json")).unwrap(), None);
        std::fs::write(dir.join("bad.json"), "{").unwrap();
        let e = DeployState::load_all(&dir).unwrap_err().to_string();
        assert!(e.contains("bad.json"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn only_live_decnet_processes_count() {
        // This test binary is `decnet_agent-<hash>`.
        assert!(is_decnet_process(std::process::id()));
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        assert!(!is_decnet_process(child.id()), "sleep is not decnet");
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!is_decnet_process(child.id()));
    }
}
