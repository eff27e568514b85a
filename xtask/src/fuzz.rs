//! `cargo xtask fuzz`: runs the cargo-fuzz targets (fuzz/: the RFC 5424 parser, the fingerprint
//! parsers) one after the other, each for a bounded time, on the stable toolchain; and setup's
//! "cargo-fuzz" step, which installs cargo-fuzz.
//!
//! cargo-fuzz with `--sanitizer none` passes rustc only stable `-C` flags (the sanitizer-coverage
//! pass and its LLVM options, `--cfg fuzzing`), so no nightly toolchain and no RUSTC_BOOTSTRAP
//! are needed. libFuzzer itself is compiled from source by the libfuzzer-sys crate (needs a C++
//! compiler: g++ is on the machine).

use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use anyhow::{Context as _, Result, bail};

use crate::{cmd, setup};

/// The cargo-fuzz release `setup` installs (`cargo install --locked`).
pub const CARGO_FUZZ_VERSION: &str = "0.13.2";
/// The fuzz targets (fuzz/fuzz_targets/<name>.rs), run in this order, each for `--seconds`.
pub const TARGETS: [&str; 2] = ["rfc5424_parse", "fingerprint"];
/// `cargo xtask fuzz` without `--seconds` (per target).
pub const DEFAULT_SECONDS: u64 = 30;
/// The fuzz stage of `cargo xtask test` (per target).
pub const TEST_SECONDS: u64 = 20;

/// `--help` of `cargo xtask fuzz`.
pub const LONG_HELP: &str = "\
Run the fuzz targets with cargo-fuzz and libFuzzer, one after the other, each for a bounded time \
(--seconds, per target), on the stable toolchain:
  rfc5424_parse  the RFC 5424 parser (decnet_core::rfc5424::parse)
  fingerprint    decnet-fingerprint: every parser (TLS hellos, SSH banner/KEXINIT, SYN headers, \
HTTP heads, p0f.fp text) and fingerprints_of

  1. installs cargo-fuzz if it is missing: `cargo install --locked cargo-fuzz@0.13.2` (≈1 min, \
into ~/.cargo/bin; no root needed)
  2. `cargo fuzz build --sanitizer none TARGET` (the crate in fuzz/, its own workspace; ≈2 min the \
first time)
  3. `cargo fuzz run --sanitizer none TARGET fuzz/corpus/TARGET fuzz/seeds/TARGET -- \
-max_total_time=SECONDS -timeout=10 -print_final_stats=1`

rfc5424_parse parses every input and, when one is accepted, checks the message's invariants \
(every borrowed &str inside the input, facility < 24, severity < 8, field lengths and alphabets) \
and that rendering it back and parsing again gives the same message. fingerprint checks that no \
input panics, results are deterministic, every fingerprint is printable and bounded, partial ones \
are counted, and a hello parsed complete is never partial. New inputs go to fuzz/corpus/TARGET \
(git-ignored; seeded from fuzz/seeds/TARGET, which is committed). Prints runs, exec/s and new \
corpus units at the end of each; libFuzzer's full output is kept in \
fuzz/artifacts/TARGET/last-run.log. A crash or a failed invariant fails the command and leaves \
the input in fuzz/artifacts/TARGET/ (reproduce with `cargo fuzz run --sanitizer none TARGET FILE`).

`cargo xtask test` runs this for 20 s per target as its last stage; `cargo xtask setup` installs \
cargo-fuzz.";

/// setup's `--help`, with the cargo-fuzz step after setup's own.
pub fn setup_long_help() -> String {
    format!(
        "{}\n\n\
         Then one more step (`setup` and `test` only):\n  \
         7. cargo-fuzz {CARGO_FUZZ_VERSION} in ~/.cargo/bin, for the fuzz stage of `cargo xtask \
         test` and `cargo xtask fuzz` (≈1 min):\n       \
         cargo install --locked cargo-fuzz@{CARGO_FUZZ_VERSION}",
        setup::long_help()
    )
}

/// setup's "cargo-fuzz" step: reports it missing ([`setup::Mode::Check`]) or installs it.
pub fn setup_step(mode: setup::Mode, missing: &mut Vec<String>) -> Result<()> {
    const STEP: &str = "cargo-fuzz";
    ensure_cargo_fuzz(mode, missing)
        .inspect_err(|_| setup::say(STEP, "FAILED"))
        .with_context(|| format!("step `{STEP}` of `cargo xtask setup` failed"))
}

fn ensure_cargo_fuzz(mode: setup::Mode, missing: &mut Vec<String>) -> Result<()> {
    const STEP: &str = "cargo-fuzz";
    let bin = cmd::cargo_home()?.join("bin").join("cargo-fuzz");
    let found = match installed_version(&bin) {
        Some(v) if v.contains(CARGO_FUZZ_VERSION) => {
            setup::say(
                STEP,
                format!("{CARGO_FUZZ_VERSION} already installed ({})", bin.display()),
            );
            return Ok(());
        }
        Some(v) => format!("found `{}`, need {CARGO_FUZZ_VERSION}", v.trim()),
        None => format!("not installed at {}", bin.display()),
    };
    if mode == setup::Mode::Check {
        setup::say(STEP, format!("MISSING ({found})"));
        missing.push(format!("cargo-fuzz {CARGO_FUZZ_VERSION} ({found})"));
        return Ok(());
    }
    setup::say(
        STEP,
        format!("installing {CARGO_FUZZ_VERSION} with cargo install ({found}; ≈1 min)"),
    );
    let mut install = cmd::cargo();
    // Outside the workspace, so its .cargo/config.toml does not apply to the install.
    install.current_dir(std::env::temp_dir()).args([
        "install",
        "--locked",
        &format!("cargo-fuzz@{CARGO_FUZZ_VERSION}"),
    ]);
    cmd::run_logged(&mut install, true)?;
    match installed_version(&bin) {
        Some(v) if v.contains(CARGO_FUZZ_VERSION) => {
            setup::say(STEP, "ok");
            Ok(())
        }
        other => bail!(
            "cargo install succeeded but `{} --version` printed {:?}, not {CARGO_FUZZ_VERSION}; \
             is CARGO_HOME pointing somewhere else than where cargo installs?",
            bin.display(),
            other.unwrap_or_default().trim()
        ),
    }
}

/// `cargo-fuzz --version` ("cargo-fuzz 0.13.2"), or `None` if it does not run.
fn installed_version(bin: &Path) -> Option<String> {
    cmd::output_if_ok(Command::new(bin).arg("--version"))
}

/// The `fuzz` stage of `cargo xtask test`: this xtask binary, `fuzz --seconds 20`.
pub fn test_stage() -> Result<Command> {
    let exe = std::env::current_exe().context("cannot find the running xtask binary")?;
    let mut command = Command::new(exe);
    command.args(["fuzz", "--seconds", &TEST_SECONDS.to_string()]);
    Ok(command)
}

/// `cargo xtask fuzz --seconds N`: every target of [`TARGETS`], N seconds each.
pub fn run(seconds: u64) -> Result<ExitCode> {
    if seconds == 0 {
        bail!("--seconds must be at least 1");
    }
    ensure_cargo_fuzz(setup::Mode::Install, &mut Vec::new())?;
    for target in TARGETS {
        run_target(target, seconds)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Builds and runs one fuzz target for `seconds`.
fn run_target(target: &str, seconds: u64) -> Result<()> {
    let root = cmd::workspace_root();
    let mut build = cmd::cargo();
    build.args(["fuzz", "build", "--sanitizer", "none", target]);
    println!("[fuzz] {}", cmd::show(&build));
    cmd::run_inherit(&mut build).context("building the fuzz target failed")?;

    let corpus = root.join("fuzz/corpus").join(target);
    let seeds = root.join("fuzz/seeds").join(target);
    let artifacts = root.join("fuzz/artifacts").join(target);
    for dir in [&corpus, &artifacts] {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut fuzz = cmd::cargo();
    fuzz.args(["fuzz", "run", "--sanitizer", "none", target])
        .arg(&corpus)
        .arg(&seeds)
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .args(["-timeout=10", "-print_final_stats=1"])
        .stdin(Stdio::null());
    println!("[fuzz] {}", cmd::show(&fuzz));
    println!("[fuzz] fuzzing {target} for {seconds} s ...");
    let started = Instant::now();
    let out = fuzz
        .output()
        .with_context(|| format!("could not start `{}`", cmd::show(&fuzz)))?;
    let elapsed = started.elapsed().as_secs();
    let mut log = out.stdout;
    log.extend_from_slice(&out.stderr);
    let log = String::from_utf8_lossy(&log);
    let log_path = artifacts.join("last-run.log");
    if let Err(e) = std::fs::write(&log_path, log.as_bytes()) {
        println!("[fuzz] warning: cannot write {}: {e}", log_path.display());
    }
    let stats = Stats::parse(&log);

    if !out.status.success() {
        let tail: Vec<&str> = log
            .lines()
            .filter(|l| !l.starts_with('"') && !l.contains(" NEW ") && !l.contains(" REDUCE "))
            .collect();
        let tail = &tail[tail.len().saturating_sub(60)..];
        for line in tail {
            println!("[fuzz]   | {line}");
        }
        bail!(
            "the fuzz target {target} failed ({}) after {elapsed} s: a crash or a failed \
             invariant; the input is in {} (full output: {})",
            out.status,
            cmd::pretty(&artifacts),
            cmd::pretty(&log_path)
        );
    }
    match stats {
        Some(s) if s.runs > 0 => {
            println!(
                "[fuzz] {target}: no crash in {} runs over {} s ({} exec/s), {} new corpus units \
                 (corpus {}), peak RSS {} MB; log {}",
                s.runs,
                s.seconds,
                s.exec_per_sec,
                s.new_units,
                cmd::pretty(&corpus),
                s.peak_rss_mb,
                cmd::pretty(&log_path)
            );
            Ok(())
        }
        _ => bail!(
            "`{}` exited 0 but reported no executed inputs; see {}",
            cmd::show(&fuzz),
            cmd::pretty(&log_path)
        ),
    }
}

/// libFuzzer's closing figures (`Done N runs in S second(s)` and `-print_final_stats=1`).
#[derive(Debug, Default, PartialEq, Eq)]
struct Stats {
    runs: u64,
    seconds: u64,
    exec_per_sec: u64,
    new_units: u64,
    peak_rss_mb: u64,
}

impl Stats {
    fn parse(log: &str) -> Option<Stats> {
        let mut s = Stats::default();
        let mut seen = false;
        for line in log.lines() {
            if let Some(rest) = line.strip_prefix("Done ") {
                // "Done 2991312 runs in 31 second(s)"
                let words: Vec<&str> = rest.split_whitespace().collect();
                if let [runs, "runs", "in", secs, ..] = words.as_slice() {
                    s.seconds = secs.parse().unwrap_or(0);
                    s.runs = s.runs.max(runs.parse().unwrap_or(0));
                    seen = true;
                }
                continue;
            }
            let Some((key, value)) = line.strip_prefix("stat::").and_then(|l| l.split_once(':'))
            else {
                continue;
            };
            let value: u64 = value.trim().parse().unwrap_or(0);
            match key {
                "number_of_executed_units" => s.runs = s.runs.max(value),
                "average_exec_per_sec" => s.exec_per_sec = value,
                "new_units_added" => s.new_units = value,
                "peak_rss_mb" => s.peak_rss_mb = value,
                _ => continue,
            }
            seen = true;
        }
        seen.then_some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_libfuzzer_final_stats() {
        let log = "#2991312\tDONE   cov: 512 ft: 2000 corp: 900/40Kb exec/s: 96493 rss: 28Mb\n\
                   \"m2473\" # Uses: 3256\n\
                   Done 2991312 runs in 31 second(s)\n\
                   stat::number_of_executed_units: 2991312\n\
                   stat::average_exec_per_sec:     96493\n\
                   stat::new_units_added:          3733\n\
                   stat::slowest_unit_time_sec:    0\n\
                   stat::peak_rss_mb:              28\n";
        assert_eq!(
            Stats::parse(log),
            Some(Stats {
                runs: 2_991_312,
                seconds: 31,
                exec_per_sec: 96_493,
                new_units: 3733,
                peak_rss_mb: 28,
            })
        );
        assert_eq!(Stats::parse("INFO: Seed: 1\n"), None);
    }

    #[test]
    fn setup_help_adds_the_step() {
        let help = setup_long_help();
        assert!(help.contains(&format!("cargo-fuzz@{CARGO_FUZZ_VERSION}")));
        assert!(LONG_HELP.contains(&format!("cargo-fuzz@{CARGO_FUZZ_VERSION}")));
        assert!(help.starts_with(&setup::long_help()));
    }
}
