//! `cargo xtask setup`: installs, idempotently, what the build and the tests need.
//! The facts behind each step are in ../shared/reference/toolchain.md (verified on Debian 12).

use std::path::Path;
use std::process::Command;

use anyhow::{Context as _, Result, bail};

use crate::{cmd, mariadb};

/// Debian packages the build and the tests need, with why. Later work (database back-ends,
/// protocol peers for the tests) adds its packages here and nowhere else.
pub const APT_PACKAGES: &[(&str, &str)] = &[
    (
        "rustc-web",
        "Debian's rustc 1.96 (LLVM 22), which compiles the eBPF crate",
    ),
    (
        "cargo-web",
        "Debian's cargo, driven by aya-build for the eBPF crate",
    ),
    (
        "libstd-rust-web-dev-bpf",
        "the prebuilt `core` for bpfel-unknown-none",
    ),
    ("llvm-22-dev", "LLVM 22, which bpf-linker links against"),
    ("iproute2", "`ip`: the tests' namespaces, veths and bridges"),
    ("sqlite3", "the sqlite3 CLI, to inspect decnet.db"),
    (
        "mariadb-server",
        "MariaDB, the server the repository tests and `bench repo` run against",
    ),
    (
        "mariadb-client",
        "`mariadb`/`mariadb-admin`: setup creates the test account, test drops old test databases",
    ),
    (
        "rsyslog",
        "`rsyslogd`: the collector tests forward through it, `bench collector` compares against it",
    ),
    (
        "rsyslog-mysql",
        "rsyslog's `ommysql`: the baseline for the collector's MariaDB path (issue 16)",
    ),
    (
        "bsdutils",
        "util-linux `logger`: a real RFC 5424 client (TCP octet-counting and UDP) for the collector tests",
    ),
    (
        "openssh-client",
        "`ssh`: a real client against the decoy ssh service in the fleet tests",
    ),
    ("sshpass", "feeds `ssh` a password in the fleet tests"),
    (
        "curl",
        "a real http/https/ftp client against the decoy services in the fleet tests",
    ),
    ("redis-tools", "`redis-cli` against the decoy redis service"),
    ("nmap", "`nmap -sV`: the fleet realism smoke test"),
    (
        "nftables",
        "`nft`: `decnet deploy` fences the host off the decoy bridge with a table of its own",
    ),
    (
        "hydra",
        "the ssh brute force in the correlator/profiler end-to-end test",
    ),
    (
        "chromium",
        "headless Chromium for the dashboard browser tests",
    ),
    (
        "chromium-driver",
        "`chromedriver`: WebDriver for the browser tests",
    ),
    ("wrk", "HTTP load generator for `bench api`"),
    (
        "tshark",
        "computes JA3/JA3S and the SSH KEXINIT fields independently in the fingerprint tests",
    ),
    (
        "p0f",
        "p0f and its database /etc/p0f/p0f.fp: TCP SYN/SYN-ACK signatures and OS labels (sensor, prober)",
    ),
    (
        "openssh-server",
        "a real `sshd` on attacker hosts (namespaces) for the prober's HASSH-server tests",
    ),
    (
        "ssh-audit",
        "an independent SSH auditor against the deckies (realism checks)",
    ),
];

pub const BPF_LINKER_VERSION: &str = "0.13.0";
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";
pub const BPF_CORE_DIR: &str = "/usr/lib/rustlib/bpfel-unknown-none/lib";

/// `--help` text for `setup`, generated from the lists above so it cannot drift.
pub fn long_help() -> String {
    let mut s = String::from(
        "Installs, idempotently, everything `cargo xtask build` and `cargo xtask test` need, one \
         step at a time, printing one line per step. Each step checks first and installs only what \
         is missing, so a second run changes nothing. Installing needs root.\n\n\
         Steps:\n  \
         1. root: installing needs root (use sudo)\n  \
         2. apt packages (apt-get update, then apt-get install --no-install-recommends, only if some \
         are missing):\n",
    );
    for (name, why) in APT_PACKAGES {
        s.push_str(&format!("       {name:<25} {why}\n"));
    }
    s.push_str(&format!(
        "  3. bpf-linker {BPF_LINKER_VERSION} in ~/.cargo/bin, built against LLVM 22 (≈1.5–2 min):\n       \
         LLVM_PREFIX={LLVM_PREFIX} cargo install --locked bpf-linker@{BPF_LINKER_VERSION} \
         --no-default-features --features llvm-22\n  \
         4. the prebuilt bpf core in {BPF_CORE_DIR} (from libstd-rust-web-dev-bpf)\n  \
         5. mariadb server: a MariaDB server accepting connections on {host}:{port}; if none \
         answers, `service mariadb start`, else `mariadbd --user=mysql` started directly (no \
         init system), waiting up to 60 s for it to accept connections\n  \
         6. mariadb account: the test account the repository tests use \
         ({url}); if it cannot create a decnet_t_* database, as the database root \
         (`mariadb -u root`, unix_socket authentication):\n       {sql}\n     \
         It may create and drop only databases named decnet_*; the tests create decnet_t_*.\n\n\
         Steps 5 and 6 belong to `setup`, `test` and `bench repo`; `build`, `run`, `bench \
         sensor` and `bench collector` check only steps 1–4.\n\n\
         With --check nothing is installed and root is not needed: it reports what is missing \
         (for 5–6: whether the server answers and the account works) and exits with 1 if \
         anything is.",
        host = mariadb::HOST,
        port = mariadb::PORT,
        url = mariadb::TEST_URL,
        sql = mariadb::account_sql(),
    ));
    s
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Report what is missing.
    Check,
    /// Install what is missing.
    Install,
}

pub fn say(step: &str, msg: impl std::fmt::Display) {
    println!("[setup] {step}: {msg}");
}

/// What a task needs besides the toolchain.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Database {
    /// A running MariaDB server with the test account (`setup`, `test`, `bench repo`).
    Needed,
    /// Only the toolchain (`build`, `run`, `bench sensor`).
    NotNeeded,
}

/// Runs every step. In [`Mode::Check`] returns what is missing (empty: all there); in
/// [`Mode::Install`] installs what is missing and returns an empty list, or fails naming the step.
pub fn run(mode: Mode, database: Database) -> Result<Vec<String>> {
    let mut missing = Vec::new();
    let root = cmd::is_root()?;
    match (mode, root) {
        (_, true) => say("root", "ok"),
        (Mode::Check, false) => say("root", "not root (fine for --check; installing needs root)"),
        (Mode::Install, false) => {
            say("root", "FAILED");
            bail!(
                "step `root` failed: `cargo xtask setup` installs Debian packages, so it must run as \
                 root. Re-run it as root, e.g. `sudo -E env \"PATH=$PATH\" cargo xtask setup`, or \
                 see what is missing without root: `cargo xtask setup --check`"
            );
        }
    }
    step("apt packages", || apt_packages(mode, &mut missing))?;
    step("bpf-linker", || bpf_linker(mode, &mut missing))?;
    step("bpf core", || bpf_core(mode, &mut missing))?;
    if database == Database::Needed {
        step("mariadb server", || mariadb::server(mode, &mut missing))?;
        step("mariadb account", || mariadb::account(mode, &mut missing))?;
    }
    Ok(missing)
}

/// Runs one step; on failure prints the step's FAILED line and names the step in the error.
fn step(name: &str, f: impl FnOnce() -> Result<()>) -> Result<()> {
    f().inspect_err(|_| say(name, "FAILED"))
        .with_context(|| format!("step `{name}` of `cargo xtask setup` failed"))
}

fn apt_packages(mode: Mode, missing: &mut Vec<String>) -> Result<()> {
    const STEP: &str = "apt packages";
    let names: Vec<&str> = APT_PACKAGES.iter().map(|(name, _)| *name).collect();
    let absent = absent_packages(&names)?;
    if absent.is_empty() {
        say(STEP, format!("{} already installed", names.join(" ")));
        return Ok(());
    }
    if mode == Mode::Check {
        say(STEP, format!("MISSING {}", absent.join(" ")));
        missing.push(format!("apt packages: {}", absent.join(" ")));
        return Ok(());
    }
    say(
        STEP,
        format!(
            "installing {} (apt-get update + install, ≈1 min)",
            absent.join(" ")
        ),
    );
    let mut update = Command::new("apt-get");
    update.args(["update", "-q"]);
    cmd::run_logged(&mut update, false)?;
    let mut install = Command::new("apt-get");
    install
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&absent);
    cmd::run_logged(&mut install, false)?;
    let still = absent_packages(&names)?;
    if !still.is_empty() {
        bail!(
            "apt-get install exited 0 but these are still not installed: {}; check \
             `dpkg-query -W -f='${{Status}}' {}` and `apt-cache policy {}`",
            still.join(" "),
            still[0],
            still[0]
        );
    }
    say(STEP, "ok");
    Ok(())
}

/// The packages of `names` that dpkg does not report as installed.
fn absent_packages(names: &[&str]) -> Result<Vec<String>> {
    let mut absent = Vec::new();
    for name in names {
        let mut query = Command::new("dpkg-query");
        query.args(["-W", "-f=${Status}", name]);
        let out = query.output().context(
            "could not run dpkg-query: this setup needs a Debian-based system (Debian 12 is the \
             one it is written for)",
        )?;
        // "install ok installed" (or "hold ok installed"); an unknown package exits non-zero.
        let status = String::from_utf8_lossy(&out.stdout);
        let installed =
            out.status.success() && status.split_whitespace().nth(2) == Some("installed");
        if !installed {
            absent.push((*name).to_string());
        }
    }
    Ok(absent)
}

fn bpf_linker(mode: Mode, missing: &mut Vec<String>) -> Result<()> {
    const STEP: &str = "bpf-linker";
    let bin = cmd::cargo_home()?.join("bin").join("bpf-linker");
    let version = cmd::output_if_ok(Command::new(&bin).arg("--version"));
    let found = match &version {
        Some(v) if v.contains(BPF_LINKER_VERSION) => {
            say(
                STEP,
                format!("{BPF_LINKER_VERSION} already installed ({})", bin.display()),
            );
            return Ok(());
        }
        Some(v) => format!("found `{}`, need {BPF_LINKER_VERSION}", v.trim()),
        None => format!("not installed at {}", bin.display()),
    };
    if mode == Mode::Check {
        say(STEP, format!("MISSING ({found})"));
        missing.push(format!("bpf-linker {BPF_LINKER_VERSION} ({found})"));
        return Ok(());
    }
    say(
        STEP,
        format!("installing {BPF_LINKER_VERSION} with cargo install ({found}; ≈1.5–2 min)"),
    );
    let mut install = cmd::cargo();
    // Outside the workspace, so its .cargo/config.toml does not apply to the install.
    install
        .current_dir(std::env::temp_dir())
        .env("LLVM_PREFIX", LLVM_PREFIX)
        .args([
            "install",
            "--locked",
            &format!("bpf-linker@{BPF_LINKER_VERSION}"),
        ])
        .args(["--no-default-features", "--features", "llvm-22"]);
    cmd::run_logged(&mut install, true)?;
    match cmd::output_if_ok(Command::new(&bin).arg("--version")) {
        Some(v) if v.contains(BPF_LINKER_VERSION) => {
            say(STEP, "ok");
            Ok(())
        }
        other => bail!(
            "cargo install succeeded but `{} --version` printed {:?}, not {BPF_LINKER_VERSION}; is \
             CARGO_HOME pointing somewhere else than where cargo installs?",
            bin.display(),
            other.unwrap_or_default().trim()
        ),
    }
}

fn bpf_core(mode: Mode, missing: &mut Vec<String>) -> Result<()> {
    const STEP: &str = "bpf core";
    if has_core(Path::new(BPF_CORE_DIR)) {
        say(STEP, format!("found in {BPF_CORE_DIR}"));
        return Ok(());
    }
    if mode == Mode::Check {
        say(
            STEP,
            format!("MISSING (no libcore-*.rlib in {BPF_CORE_DIR})"),
        );
        missing.push(format!(
            "the prebuilt bpf core in {BPF_CORE_DIR} (libstd-rust-web-dev-bpf)"
        ));
        return Ok(());
    }
    bail!(
        "no libcore-*.rlib in {BPF_CORE_DIR}, although libstd-rust-web-dev-bpf is installed; \
         reinstall it: `apt-get install --reinstall libstd-rust-web-dev-bpf`"
    )
}

fn has_core(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        let name = e.file_name();
        let name = name.to_string_lossy();
        name.starts_with("libcore-") && name.ends_with(".rlib")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dpkg_reports_unknown_packages_as_absent() {
        let absent = absent_packages(&["dpkg", "decnet-no-such-package"]).expect("dpkg-query runs");
        assert_eq!(absent, ["decnet-no-such-package"]);
    }

    #[test]
    fn help_lists_every_package() {
        let help = long_help();
        assert!(APT_PACKAGES.iter().all(|(name, _)| help.contains(name)));
    }
}
