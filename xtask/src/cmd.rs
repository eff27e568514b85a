//! Running child processes: the workspace paths they need, how to show them, and how to report a
//! failure so the user sees which command failed and the end of its output.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;

use anyhow::{Context as _, Result, anyhow, bail};

/// How many lines of a failed command's output to show.
const TAIL_LINES: usize = 40;

/// The workspace root (the parent of `xtask/`).
pub fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

/// The cargo that runs us (`cargo run` sets `CARGO`), so child builds use the same toolchain.
pub fn cargo() -> Command {
    let program = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut cmd = Command::new(program);
    cmd.current_dir(workspace_root());
    if let Ok(path) = child_path() {
        cmd.env("PATH", path);
    }
    // What `cargo run` set for xtask itself is not for the builds it starts: build scripts that
    // watch these (ring's rerun-if-env-changed=CARGO_PKG_NAME, CARGO_MANIFEST_DIR …) would rerun
    // and rebuild everything above them after every plain `cargo build`, and back again.
    for (key, _) in std::env::vars_os() {
        if is_cargo_package_var(&key) {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// An environment variable `cargo run` sets for the package it runs.
fn is_cargo_package_var(key: &OsStr) -> bool {
    let key = key.to_string_lossy();
    key.starts_with("CARGO_PKG_")
        || key.starts_with("CARGO_MANIFEST_")
        || key.starts_with("CARGO_CRATE_")
        || key.starts_with("CARGO_BIN_")
        || key == "CARGO_PRIMARY_PACKAGE"
}

/// `$CARGO_HOME`, or `~/.cargo`.
pub fn cargo_home() -> Result<PathBuf> {
    if let Some(home) = std::env::var_os("CARGO_HOME").filter(|h| !h.is_empty()) {
        return Ok(PathBuf::from(home));
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .ok_or_else(|| {
            anyhow!("neither CARGO_HOME nor HOME is set: set HOME (or CARGO_HOME) and re-run")
        })?;
    Ok(PathBuf::from(home).join(".cargo"))
}

/// `PATH` with `$CARGO_HOME/bin` in front: the eBPF build runs `bpf-linker` and `rustup` from
/// there, even when the user's shell (or sudo's `secure_path`) does not have it.
pub fn child_path() -> Result<OsString> {
    let bin = cargo_home()?.join("bin");
    let current = std::env::var_os("PATH").unwrap_or_default();
    if std::env::split_paths(&current).any(|p| p == bin) {
        return Ok(current);
    }
    let paths = std::iter::once(bin).chain(std::env::split_paths(&current));
    std::env::join_paths(paths)
        .context("PATH contains an entry with a ':' in it; fix PATH and re-run")
}

/// A PATH on which no `bpf-linker` can be found: every directory of the child PATH that holds
/// one is replaced by `shadow`, a directory of links to everything else in it. Proves that a
/// crate builds without the eBPF toolchain.
pub fn path_without_bpf_linker(shadow: &Path) -> Result<OsString> {
    shadow_bpf_linker(&child_path()?, shadow)
}

fn shadow_bpf_linker(full: &OsStr, shadow: &Path) -> Result<OsString> {
    let mut out = Vec::new();
    for dir in std::env::split_paths(full) {
        if !dir.join("bpf-linker").exists() {
            out.push(dir);
            continue;
        }
        let _ = std::fs::remove_dir_all(shadow);
        std::fs::create_dir_all(shadow)
            .with_context(|| format!("cannot create {}", shadow.display()))?;
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))?
        {
            let entry = entry?;
            let name = entry.file_name();
            if name == "bpf-linker" || name.to_string_lossy().starts_with("bpf-linker") {
                continue;
            }
            std::os::unix::fs::symlink(entry.path(), shadow.join(&name))
                .with_context(|| format!("cannot link {}", entry.path().display()))?;
        }
        out.push(shadow.to_path_buf());
    }
    std::env::join_paths(out).context("PATH contains an entry with a ':' in it")
}

/// The cargo target directory, as `cargo metadata` reports it (honours `CARGO_TARGET_DIR`).
pub fn target_dir() -> Result<PathBuf> {
    let mut cmd = cargo();
    cmd.args(["metadata", "--format-version", "1", "--no-deps"]);
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("could not run `{}`", show(&cmd)))?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}): fix the Cargo.toml error it printed above",
            show(&cmd),
            out.status
        );
    }
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("`{}` printed something that is not JSON", show(&cmd)))?;
    let dir = meta
        .get("target_directory")
        .and_then(|d| d.as_str())
        .ok_or_else(|| anyhow!("`{}` reported no target_directory", show(&cmd)))?;
    Ok(PathBuf::from(dir))
}

/// `path` relative to the workspace root when it is inside it, for friendlier messages.
pub fn pretty(path: &Path) -> String {
    let root = workspace_root();
    path.strip_prefix(&root)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| path.display().to_string())
}

/// A shell-like rendering of a command, with the environment overrides it was given.
pub fn show(cmd: &Command) -> String {
    let mut parts: Vec<String> = cmd
        .get_envs()
        .filter(|(k, _)| *k != "PATH")
        .filter_map(|(k, v)| v.map(|v| format!("{}={}", k.to_string_lossy(), quote(v))))
        .collect();
    let program = Path::new(cmd.get_program());
    // Show `cargo`, not the toolchain's full path to it.
    let program = match program.file_name() {
        Some(name) if name == "cargo" => name,
        _ => program.as_os_str(),
    };
    parts.push(quote(program));
    parts.extend(cmd.get_args().map(quote));
    parts.join(" ")
}

fn quote(s: &OsStr) -> String {
    let s = s.to_string_lossy();
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=@:,+%".contains(c))
    {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Runs `cmd` with the terminal as its stdio (colours, progress bars). Fails if it exits non-zero;
/// its output is already on screen, so the error only names the command.
pub fn run_inherit(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("could not start `{}`", show(cmd)))?;
    if !status.success() {
        bail!("`{}` failed ({status}); its output is above", show(cmd));
    }
    Ok(())
}

/// Runs `cmd` with its stdout and stderr captured; prints them as they come when `echo` is set.
/// On failure the error carries the last [`TAIL_LINES`] lines of output.
pub fn run_logged(cmd: &mut Command, echo: bool) -> Result<()> {
    let shown = show(cmd);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("could not start `{shown}`: is it installed and on PATH?"))?;
    let tail = Arc::new(Mutex::new(VecDeque::with_capacity(TAIL_LINES)));
    let readers = [
        child
            .stdout
            .take()
            .map(|o| Box::new(o) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|e| Box::new(e) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|stream| {
        let tail = Arc::clone(&tail);
        thread::spawn(move || collect_lines(stream, &tail, echo))
    })
    .collect::<Vec<_>>();
    let status = child
        .wait()
        .with_context(|| format!("waiting for `{shown}`"))?;
    for reader in readers {
        // A reader thread only panics if printing panicked; the status below still decides.
        let _ = reader.join();
    }
    if status.success() {
        return Ok(());
    }
    let tail = tail
        .lock()
        .map(|t| t.iter().cloned().collect::<Vec<_>>())
        .unwrap_or_default();
    let mut msg = format!("`{shown}` failed ({status})");
    if tail.is_empty() {
        msg.push_str(" and printed nothing");
    } else {
        msg.push_str(&format!("; last {} lines of its output:\n", tail.len()));
        for line in tail {
            msg.push_str("    | ");
            msg.push_str(&line);
            msg.push('\n');
        }
    }
    Err(anyhow!(msg))
}

fn collect_lines(stream: Box<dyn Read + Send>, tail: &Mutex<VecDeque<String>>, echo: bool) {
    for line in BufReader::new(stream).split(b'\n') {
        let Ok(line) = line else { break };
        let line = String::from_utf8_lossy(&line)
            .trim_end_matches('\r')
            .to_string();
        if echo {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
        }
        if let Ok(mut tail) = tail.lock() {
            if tail.len() == TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(line);
        }
    }
}

/// Runs `cmd` and returns its stdout, or `None` if it could not start or exited non-zero.
pub fn output_if_ok(cmd: &mut Command) -> Option<String> {
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether this process runs as root (effective uid 0), from `/proc/self/status`.
pub fn is_root() -> Result<bool> {
    let status = std::fs::read_to_string("/proc/self/status").context(
        "could not read /proc/self/status to tell whether we run as root (is /proc mounted?)",
    )?;
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .ok_or_else(|| anyhow!("/proc/self/status has no Uid: line"))?;
    Ok(euid == "0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_builds_do_not_inherit_what_cargo_run_set_for_xtask() {
        for k in [
            "CARGO_PKG_NAME",
            "CARGO_MANIFEST_DIR",
            "CARGO_MANIFEST_PATH",
            "CARGO_CRATE_NAME",
        ] {
            assert!(is_cargo_package_var(OsStr::new(k)), "{k}");
        }
        for k in ["CARGO", "CARGO_HOME", "CARGO_TARGET_DIR", "PATH"] {
            assert!(!is_cargo_package_var(OsStr::new(k)), "{k}");
        }
    }

    #[test]
    fn failure_names_the_command_and_shows_the_tail() {
        let mut cmd = Command::new("sh");
        // One stream here: stdout and stderr are read by separate threads, so their relative
        // order in the tail is not deterministic.
        cmd.env("FOO", "a b").args([
            "-c",
            "for i in $(seq 1 50); do echo line$i; done; echo oops; exit 3",
        ]);
        let err = run_logged(&mut cmd, false)
            .expect_err("exit 3 is a failure")
            .to_string();
        assert!(err.starts_with("`FOO='a b' sh -c "), "{err}");
        assert!(err.contains("exit status: 3"), "{err}");
        assert!(
            err.contains("| line50\n") && err.contains("| oops\n"),
            "{err}"
        );
        assert!(!err.contains("| line5\n"), "only the tail: {err}");

        let err = run_logged(
            Command::new("sh").args(["-c", "echo to-stderr >&2; exit 1"]),
            false,
        )
        .expect_err("exit 1 is a failure")
        .to_string();
        assert!(
            err.contains("| to-stderr\n"),
            "stderr is in the tail: {err}"
        );
    }

    #[test]
    fn success_is_ok_and_missing_program_is_explained() {
        assert!(run_logged(Command::new("true").arg("x"), false).is_ok());
        let err =
            run_logged(&mut Command::new("/nonexistent/prog"), false).expect_err("no such program");
        assert!(
            err.to_string()
                .contains("could not start `/nonexistent/prog`"),
            "{err}"
        );
    }

    #[test]
    fn the_shadow_path_has_everything_but_bpf_linker() {
        let root = std::env::temp_dir().join(format!("xtask-shadow-{}", std::process::id()));
        let (bin, other, shadow) = (root.join("bin"), root.join("other"), root.join("shadow"));
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(&other).unwrap();
        for f in ["cargo", "rustc", "bpf-linker"] {
            std::fs::write(bin.join(f), "").unwrap();
        }
        let full = std::env::join_paths([&other, &bin]).unwrap();
        let path = shadow_bpf_linker(&full, &shadow).unwrap();
        let dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
        assert_eq!(dirs, vec![other.clone(), shadow.clone()]);
        assert!(shadow.join("cargo").exists() && shadow.join("rustc").exists());
        assert!(!shadow.join("bpf-linker").exists());
        let _ = std::fs::remove_dir_all(&root);
    }
}
