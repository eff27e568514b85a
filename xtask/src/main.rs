//! `cargo xtask`: decnet's developer tasks. See `cargo xtask --help`.

mod cmd;
mod fuzz;
mod mariadb;
mod setup;

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};

const ABOUT: &str = "decnet's developer tasks: install the toolchain, build, test, run the example fleet, benchmark";

const LONG_ABOUT: &str = "\
decnet's developer tasks: install the toolchain, build, test, run the example fleet, benchmark.

On a fresh Debian 12 machine, as root:
  cargo xtask run     build decnet and deploy the example decoy fleet with every worker (SQLite default)
  cargo xtask test    install everything the build and the tests need, then run all tests

Every command that builds first checks the toolchain (`cargo xtask setup --check`). If something \
is missing it runs `cargo xtask setup` itself when it runs as root, and otherwise stops and tells \
you to run `sudo cargo xtask setup`. `setup` installs only Debian packages (apt), bpf-linker and \
cargo-fuzz (cargo install into ~/.cargo/bin), starts the MariaDB server if it is not running and creates the \
test account `decnet`; see `cargo xtask setup --help` for the list.";

#[derive(Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask", about = ABOUT, long_about = LONG_ABOUT)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what the build and the tests need (apt packages, bpf-linker, MariaDB test
    /// account, cargo-fuzz); idempotent.
    #[command(long_about = fuzz::setup_long_help())]
    Setup {
        /// Only report what is missing; install nothing (exit code 1 if anything is missing).
        #[arg(long)]
        check: bool,
    },
    /// Build the decnet binary (and, through its build script, the eBPF sensor).
    #[command(long_about = "\
Build the decnet binary: `cargo build --release -p decnet-agent`, whose build script compiles the \
eBPF crate (decnet-ebpf) with Debian's rustc and bpf-linker. Prints the binary's path \
(target/release/decnet, or target/debug/decnet with --debug).

First checks the toolchain like `cargo xtask setup --check`. If something is missing: as root it \
runs `cargo xtask setup` (installs apt packages and bpf-linker); otherwise it stops and tells you \
to run `sudo cargo xtask setup`.")]
    Build {
        /// Build the debug profile (target/debug/decnet) instead of release.
        #[arg(long)]
        debug: bool,
    },
    /// Install what is missing, build, then run all tests, clippy, rustfmt and the fuzzer (needs root).
    #[command(long_about = "\
Install what is missing, build, then run every test and lint. Needs root: the end-to-end tests \
create network namespaces and load BPF programs. This is the command CI runs (.ci/run).

Stages, in order:
  1. setup     `cargo xtask setup`: installs missing apt packages, bpf-linker and cargo-fuzz, starts the
               MariaDB server if it is not running, creates the test account (see its --help)
  2. build     `cargo build --release -p decnet-agent`
  3. tests     drops the decnet_t_* databases earlier runs left on the MariaDB server (best
               effort), then `cargo test --workspace --exclude decnet-ebpf --release [ARGS]` with
               DECNET_BIN=<absolute path of target/release/decnet> (the end-to-end tests use it)
               and DECNET_TEST_MYSQL_URL=mysql://decnet:decnet@127.0.0.1:3306 (the repository
               tests create a fresh decnet_t_<name> database per test under that server, and
               drop it). Another `cargo test` running against the same server at the same time
               loses its databases to that cleanup.
  4. clippy    `cargo clippy --release --workspace --exclude decnet-ebpf --all-targets -- -D warnings`,
               then `cargo clippy --release -p decnet-decoys` with no bpf-linker on PATH and a target
               directory of its own (only decnet-sniffer's build script needs the eBPF toolchain)
  5. rustfmt   `cargo fmt --all -- --check`
  6. fuzz      `cargo xtask fuzz --seconds 20`: the fuzz targets (RFC 5424 parser, fingerprint
               parsers; cargo-fuzz, libFuzzer) for 20 s each; setup installs cargo-fuzz (see
               `cargo xtask fuzz --help`)

Lint and fuzz run last, and run even when tests fail, so one run reports everything; a summary follows. \
If setup or build fails, the rest is skipped. The exit code is non-zero if any stage fails. \
decnet-ebpf is excluded because it only builds for bpfel-unknown-none (the build script compiles \
it); clippy uses --release to reuse the release build's eBPF object.

ARGS after `--` go to `cargo test`, e.g. `cargo xtask test -- sensor` (a test-name filter) or \
`cargo xtask test -- -p decnet-e2e sensor -- --nocapture`.")]
    Test {
        /// Skip clippy and rustfmt (quicker local iterations; CI runs them).
        #[arg(long)]
        no_lint: bool,
        /// Arguments for `cargo test`, after `--`.
        #[arg(last = true, value_name = "ARGS")]
        args: Vec<String>,
    },
    /// Build, then `decnet deploy` the example fleet until Ctrl-C (needs root).
    #[command(long_about = "\
Build (like `cargo xtask build`, installing missing tools when root), then run decnet's main job in \
the current directory: `decnet deploy --fleet deploy/fleet.example.toml [ARGS]` — the decoy bridge \
decnet0 (10.77.0.0/24) with five deckies in their own network namespaces serving ssh, http, https, \
ftp, telnet, mysql and redis, plus the collector, sniffer, correlator, profiler and the dashboard \
(http://127.0.0.1:8080/), all supervised, recording into the embedded SQLite default \
(sqlite://decnet.db in the current directory unless DECNET_DB_URL says otherwise). Poke the deckies \
from this host (e.g. `ssh root@10.77.0.10`, `curl http://10.77.0.10/`), watch with `decnet status`. \
Ctrl-C stops everything and removes the namespaces, links and bridge. Needs root. `--fleet FILE` \
after `--` deploys FILE instead of the example fleet. With DECNET_BIN set (an absolute path, as \
the end-to-end tests do) that binary is run and nothing is built: a build would replace the binary \
under processes that run it.")]
    Run {
        /// More arguments for `decnet deploy`, after `--` (see `decnet deploy --help`).
        #[arg(last = true, value_name = "ARGS")]
        args: Vec<String>,
    },
    /// Run a benchmark (`bench sensor`, `bench repo`, `bench collector`, `bench intel`,
    /// `bench lag`, `bench api`, `bench fleet`, `bench soak`).
    #[command(long_about = "\
Check the toolchain (installing what is missing when root, like `cargo xtask build`), then run a \
benchmark.

  sensor   builds decnet, then `cargo run --release -p decnet-e2e --bin bench-sensor -- [ARGS]` \
with DECNET_BIN set to the release binary: what the flow sensor costs on a flooded decoy bridge \
against no sensor and against empty TC/XDP programs, then a flood of new flows (needs root)
  repo     makes sure the MariaDB server runs and the test account exists (setup steps 5–6), \
then `cargo run --release -p decnet-core --bin bench-repo -- [ARGS]` with \
DECNET_TEST_MYSQL_URL=mysql://decnet:decnet@127.0.0.1:3306: event and flow rows inserted per \
second, batched vs one row per transaction, on SQLite (a temp file) and MariaDB (a scratch \
decnet_t_bench_<pid> database, dropped at the end)
  collector  builds decnet, then `cargo run --release -p decnet-e2e --bin bench-collector -- [ARGS]` with DECNET_BIN set to the release binary: decoy lines over TCP (octet counting) from concurrent clients into `decnet collect` (SQLite) and into a private rsyslogd (flat file), interleaved; messages/s of both and their ratio (setup installs rsyslog)
  soak     builds decnet, then `cargo run --release -p decnet-e2e --bin bench-soak -- [ARGS]` with DECNET_BIN set to the release binary: a simulated week of a noisy sensor at accelerated time into two SQLite files, one with `decnet retention` after every step and one without; the file sizes per simulated day (the retained one must level off)

ARGS after `--` go to the benchmark, e.g. `cargo xtask bench repo -- --help`.")]
    Bench {
        /// What to benchmark.
        what: Bench,
        /// Arguments for the benchmark, after `--`.
        #[arg(last = true, value_name = "ARGS")]
        args: Vec<String>,
    },
    /// Fuzz the RFC 5424 parser and the fingerprint parsers, each for a bounded time (cargo-fuzz,
    /// stable toolchain).
    #[command(long_about = fuzz::LONG_HELP)]
    Fuzz {
        /// How long to fuzz each target, in seconds.
        #[arg(long, default_value_t = fuzz::DEFAULT_SECONDS)]
        seconds: u64,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Bench {
    /// The eBPF flow sensor (decnet-e2e's bench-sensor).
    Sensor,
    /// Repository insert throughput on SQLite and MariaDB (decnet-core's bench-repo).
    Repo,
    /// `decnet collect` into SQLite against rsyslogd into a flat file (decnet-e2e's
    /// bench-collector).
    Collector,
    /// Time to deploy N deckies until every service answers, and RSS of all decnet processes
    /// (decnet-e2e's bench-fleet).
    Fleet,
    /// Correlator + profiler throughput over a synthetic history, and one incremental pass
    /// (decnet-e2e's bench-intel).
    Intel,
    /// wrk against the REST API over a seeded database (decnet-e2e's bench-api).
    Api,
    /// The intel lag under a sustained stream: `decnet collect` fed at a fixed rate for a
    /// minute with correlator and profiler running (decnet-e2e's bench-lag).
    Lag,
    /// A simulated week of a noisy sensor with and without `decnet retention`: the database
    /// size per simulated day (decnet-e2e's bench-soak).
    Soak,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Setup { check } => setup_cmd(check),
        Cmd::Build { debug } => build_cmd(debug).map(|_| ExitCode::SUCCESS),
        Cmd::Test { no_lint, args } => test_cmd(no_lint, &args),
        Cmd::Run { args } => run_cmd(&args),
        Cmd::Bench { what, args } => bench_cmd(what, &args),
        Cmd::Fuzz { seconds } => fuzz::run(seconds),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("[xtask] error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn setup_cmd(check: bool) -> Result<ExitCode> {
    if !check {
        setup::run(setup::Mode::Install, setup::Database::Needed)?;
        fuzz::setup_step(setup::Mode::Install, &mut Vec::new())?;
        println!("[setup] done: everything is installed");
        return Ok(ExitCode::SUCCESS);
    }
    let mut missing = setup::run(setup::Mode::Check, setup::Database::Needed)?;
    fuzz::setup_step(setup::Mode::Check, &mut missing)?;
    if missing.is_empty() {
        println!("[setup] everything is installed");
        return Ok(ExitCode::SUCCESS);
    }
    println!("[setup] missing: {}", missing.join("; "));
    println!("[setup] install with `cargo xtask setup` (as root)");
    Ok(ExitCode::FAILURE)
}

/// Checks the toolchain (and the database when `database` says so); installs what is missing
/// when root, or explains what to run.
fn ensure_toolchain(task: &str, database: setup::Database) -> Result<()> {
    let missing = setup::run(setup::Mode::Check, database)?;
    if missing.is_empty() {
        return Ok(());
    }
    if cmd::is_root()? {
        println!("[{task}] toolchain incomplete: running `cargo xtask setup` to install it");
        setup::run(setup::Mode::Install, database)?;
        return Ok(());
    }
    bail!(
        "the build needs what is missing: {}. Install it as root with \
         `sudo -E env \"PATH=$PATH\" cargo xtask setup`, then re-run `cargo xtask {task}`",
        missing.join("; ")
    )
}

/// `cargo build -p decnet-agent`; returns the path of the decnet binary.
fn build_decnet(debug: bool) -> Result<PathBuf> {
    let mut build = cmd::cargo();
    build.args(["build", "-p", "decnet-agent"]);
    if !debug {
        build.arg("--release");
    }
    println!("[build] {}", cmd::show(&build));
    cmd::run_inherit(&mut build).context(
        "building decnet failed; if the error is about the eBPF crate, bpf-linker or \
         bpfel-unknown-none, check the toolchain with `cargo xtask setup --check`",
    )?;
    let bin = cmd::target_dir()?
        .join(if debug { "debug" } else { "release" })
        .join("decnet");
    if !bin.is_file() {
        bail!(
            "cargo build succeeded but {} does not exist; is decnet-agent's [[bin]] still named `decnet`?",
            bin.display()
        );
    }
    Ok(bin)
}

fn build_cmd(debug: bool) -> Result<()> {
    ensure_toolchain("build", setup::Database::NotNeeded)?;
    let bin = build_decnet(debug)?;
    println!("[build] built {}", cmd::pretty(&bin));
    Ok(())
}

fn test_cmd(no_lint: bool, args: &[String]) -> Result<ExitCode> {
    if !cmd::is_root()? {
        bail!(
            "`cargo xtask test` must run as root: the end-to-end tests create network namespaces \
             and load BPF programs, and setup may install packages. Re-run it as root, e.g. \
             `sudo -E env \"PATH=$PATH\" cargo xtask test`"
        );
    }
    let started = Instant::now();
    setup::run(setup::Mode::Install, setup::Database::Needed)?;
    fuzz::setup_step(setup::Mode::Install, &mut Vec::new())?;
    let bin = build_decnet(false)?;
    println!("[test] DECNET_BIN={}", bin.display());
    match mariadb::drop_test_databases() {
        Ok(dropped) if dropped.is_empty() => {
            println!("[test] no leftover decnet_t_* databases on the MariaDB server");
        }
        Ok(dropped) => println!(
            "[test] dropped {} leftover decnet_t_* database(s) of earlier runs: {}",
            dropped.len(),
            dropped.join(" ")
        ),
        Err(e) => println!("[test] warning: could not drop leftover decnet_t_* databases: {e:#}"),
    }

    let mut stages: Vec<(&str, Command)> = Vec::new();
    let mut test = cmd::cargo();
    test.env("DECNET_BIN", &bin)
        .env(mariadb::TEST_URL_VAR, mariadb::TEST_URL)
        .args([
            "test",
            "--workspace",
            "--exclude",
            "decnet-ebpf",
            "--release",
        ])
        .args(args);
    stages.push(("tests", test));
    if !no_lint {
        let mut clippy = cmd::cargo();
        clippy.args([
            "clippy",
            "--release",
            "--workspace",
            "--exclude",
            "decnet-ebpf",
        ]);
        clippy.args(["--all-targets", "--", "-D", "warnings"]);
        stages.push(("clippy", clippy));
        // Only the sniffer needs the eBPF toolchain: the decoys lint with no bpf-linker on
        // PATH, in a target directory of their own (nothing cached from the full build).
        let target = cmd::target_dir()?;
        let mut decoys = cmd::cargo();
        decoys
            .env(
                "PATH",
                cmd::path_without_bpf_linker(&target.join("no-bpf-linker-bin"))?,
            )
            .args(["clippy", "--release", "-p", "decnet-decoys", "--target-dir"])
            .arg(target.join("no-ebpf"))
            .args(["--all-targets", "--", "-D", "warnings"]);
        stages.push(("clippy-no-bpf", decoys));
        let mut fmt = cmd::cargo();
        fmt.args(["fmt", "--all", "--", "--check"]);
        stages.push(("rustfmt", fmt));
    }
    stages.push(("fuzz", fuzz::test_stage()?));

    let mut results = Vec::new();
    for (name, mut command) in stages {
        println!("[test] {name}: {}", cmd::show(&command));
        let t = Instant::now();
        let outcome = cmd::run_inherit(&mut command);
        if let Err(e) = &outcome {
            eprintln!("[test] {name}: FAILED: {e:#}");
        }
        results.push((name, outcome.is_ok(), t.elapsed().as_secs()));
    }

    println!("[test] summary ({} s in all):", started.elapsed().as_secs());
    for (name, ok, secs) in &results {
        println!(
            "[test]   {name:<8} {:<6} {secs} s",
            if *ok { "ok" } else { "FAILED" }
        );
    }
    if no_lint {
        println!("[test]   clippy and rustfmt skipped (--no-lint)");
    }
    let failed: Vec<&str> = results.iter().filter(|r| !r.1).map(|r| r.0).collect();
    if failed.is_empty() {
        println!("[test] all passed");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("[test] failed: {} (output above)", failed.join(", "));
        Ok(ExitCode::FAILURE)
    }
}

fn run_cmd(args: &[String]) -> Result<ExitCode> {
    ensure_toolchain("run", setup::Database::NotNeeded)?;
    let bin = match std::env::var_os("DECNET_BIN").filter(|b| !b.is_empty()) {
        Some(b) => {
            let b = PathBuf::from(b);
            if !b.is_absolute() || !b.is_file() {
                bail!(
                    "DECNET_BIN={} is not an absolute path to a file: unset it to build decnet",
                    b.display()
                );
            }
            println!("[run] DECNET_BIN={}: running it, not building", b.display());
            b
        }
        None => build_decnet(false)?,
    };
    let own_fleet = has_own_fleet(args);
    let fleet = cmd::workspace_root().join("deploy/fleet.example.toml");
    let cwd = std::env::current_dir().context("no current directory")?;
    let db = std::env::var("DECNET_DB_URL")
        .unwrap_or_else(|_| format!("sqlite://{}", cwd.join("decnet.db").display()));
    println!(
        "[run] deploying {} — data goes to {db}; `{} status` shows the fleet; Ctrl-C stops and \
         removes it",
        if own_fleet {
            "the fleet given after --".into()
        } else {
            fleet.display().to_string()
        },
        bin.display()
    );
    println!(
        "[run] try: curl http://10.77.0.10/   ssh root@10.77.0.10   redis-cli -h 10.77.0.12   \
         then: sqlite3 decnet.db 'select decky, service, event_type, attacker_ip from events'"
    );
    println!(
        "[run] dashboard: http://{}/ — log in as admin: on its first start `decnet web` prints a \
         one-time password below (change it at first login)",
        web_listen(args)
    );
    let mut deploy = Command::new(&bin);
    deploy.args(deploy_args(&fleet, args));
    println!("[run] {}", cmd::show(&deploy));
    Err(exec_error(&mut deploy))
}

/// Where the dashboard of `cargo xtask run -- ARGS` serves: `--web-listen`, else
/// `DECNET_WEB_LISTEN`, else deploy's default.
fn web_listen(args: &[String]) -> String {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if let Some(v) = a.strip_prefix("--web-listen=") {
            return v.to_owned();
        }
        if a == "--web-listen"
            && let Some(v) = it.next()
        {
            return v.clone();
        }
    }
    std::env::var("DECNET_WEB_LISTEN").unwrap_or_else(|_| "127.0.0.1:8080".into())
}

/// `cargo xtask run -- --fleet F` deploys F instead of the example (clap refuses --fleet twice).
fn has_own_fleet(args: &[String]) -> bool {
    args.iter()
        .any(|a| a == "--fleet" || a.starts_with("--fleet="))
}

/// `decnet deploy`'s arguments for `cargo xtask run -- ARGS`.
fn deploy_args(example: &Path, args: &[String]) -> Vec<std::ffi::OsString> {
    let mut v: Vec<std::ffi::OsString> = vec!["deploy".into(), "--daemon".into()];
    if !has_own_fleet(args) {
        v.push("--fleet".into());
        v.push(example.into());
    }
    v.extend(args.iter().map(Into::into));
    v
}

fn bench_cmd(what: Bench, args: &[String]) -> Result<ExitCode> {
    let mut bench = cmd::cargo();
    match what {
        Bench::Sensor => {
            ensure_toolchain("bench", setup::Database::NotNeeded)?;
            let bin = build_decnet(false)?;
            bench.env("DECNET_BIN", &bin).args([
                "run",
                "--release",
                "-p",
                "decnet-e2e",
                "--bin",
                "bench-sensor",
                "--",
            ]);
        }
        Bench::Repo => {
            ensure_toolchain("bench", setup::Database::Needed)?;
            bench.env(mariadb::TEST_URL_VAR, mariadb::TEST_URL).args([
                "run",
                "--release",
                "-p",
                "decnet-core",
                "--bin",
                "bench-repo",
                "--",
            ]);
        }
        Bench::Soak => {
            ensure_toolchain("bench", setup::Database::NotNeeded)?;
            let bin = build_decnet(false)?;
            bench.env("DECNET_BIN", &bin).args([
                "run",
                "--release",
                "-p",
                "decnet-e2e",
                "--bin",
                "bench-soak",
                "--",
            ]);
        }
        Bench::Collector => {
            // Checks the apt packages too, rsyslog among them (installed when root).
            ensure_toolchain("bench", setup::Database::NotNeeded)?;
            let bin = build_decnet(false)?;
            bench.env("DECNET_BIN", &bin).args([
                "run",
                "--release",
                "-p",
                "decnet-e2e",
                "--bin",
                "bench-collector",
                "--",
            ]);
        }
        Bench::Fleet | Bench::Intel | Bench::Api | Bench::Lag => {
            ensure_toolchain("bench", setup::Database::Needed)?;
            let bin = build_decnet(false)?;
            let name = match what {
                Bench::Fleet => "bench-fleet",
                Bench::Intel => "bench-intel",
                Bench::Lag => "bench-lag",
                _ => "bench-api",
            };
            bench
                .env("DECNET_BIN", &bin)
                .env(mariadb::TEST_URL_VAR, mariadb::TEST_URL)
                .args(["run", "--release", "-p", "decnet-e2e", "--bin", name, "--"]);
        }
    }
    bench.args(args);
    println!("[bench] {}", cmd::show(&bench));
    Err(exec_error(&mut bench))
}

/// Replaces this process with `command` (so Ctrl-C and the exit code are its own); returns only
/// the error if that failed.
fn exec_error(command: &mut Command) -> anyhow::Error {
    let shown = cmd::show(command);
    let err = command.exec();
    anyhow::Error::new(err).context(format!("could not start `{shown}`"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn test_args_after_double_dash_reach_cargo_test_verbatim() {
        let cli = Cli::try_parse_from(["xtask", "test", "--", "sensor", "--", "--nocapture"])
            .expect("parses");
        let Cmd::Test { no_lint, args } = cli.command else {
            panic!("not test")
        };
        assert!(!no_lint);
        assert_eq!(args, ["sensor", "--", "--nocapture"]);
    }

    #[test]
    fn run_deploys_the_example_fleet_unless_given_one() {
        let example = Path::new("/ws/deploy/fleet.example.toml");
        let strs = |v: Vec<std::ffi::OsString>| -> Vec<String> {
            v.into_iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect()
        };
        assert_eq!(
            strs(deploy_args(example, &["--workers".into(), "none".into()])),
            [
                "deploy",
                "--daemon",
                "--fleet",
                "/ws/deploy/fleet.example.toml",
                "--workers",
                "none"
            ]
        );
        for own in [
            vec!["--fleet".to_owned(), "/tmp/f.toml".to_owned()],
            vec!["--fleet=/tmp/f.toml".to_owned()],
        ] {
            let mut want = vec!["deploy".to_owned(), "--daemon".to_owned()];
            want.extend(own.iter().cloned());
            assert_eq!(strs(deploy_args(example, &own)), want);
        }
    }

    #[test]
    fn bench_takes_what_and_args() {
        let cli = Cli::try_parse_from(["xtask", "bench", "sensor", "--", "--seconds", "5"])
            .expect("parses");
        let Cmd::Bench {
            what: Bench::Sensor,
            args,
        } = cli.command
        else {
            panic!("not bench")
        };
        assert_eq!(args, ["--seconds", "5"]);
        let cli =
            Cli::try_parse_from(["xtask", "bench", "repo", "--", "--sqlite-only"]).expect("parses");
        assert!(matches!(
            cli.command,
            Cmd::Bench {
                what: Bench::Repo,
                ..
            }
        ));
        assert!(matches!(
            Cli::try_parse_from(["xtask", "bench", "collector"])
                .expect("parses")
                .command,
            Cmd::Bench {
                what: Bench::Collector,
                ..
            }
        ));
        assert!(Cli::try_parse_from(["xtask", "bench", "nope"]).is_err());
    }
}
