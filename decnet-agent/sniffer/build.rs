//! Compiles `decnet-ebpf` for `bpfel-unknown-none` with Debian's rustc (see
//! ../shared/reference/toolchain.md) and leaves the object in OUT_DIR for `include_bytes_aligned!`.
//!
//! This is the only build script in decnet that needs the eBPF toolchain. Opt-out, in the style
//! of aya's integration tests: with `DECNET_SKIP_EBPF=1` it writes an empty object instead, so
//! `cargo check`/`cargo clippy` need no bpf-linker; a sniffer built that way refuses to start and
//! says why.
use anyhow::{Context as _, anyhow};
use aya_build::{Package, Toolchain};

const SKIP_VAR: &str = "DECNET_SKIP_EBPF";

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed={SKIP_VAR}");
    let skip = std::env::var(SKIP_VAR).is_ok_and(|v| !v.is_empty() && v != "0");
    if skip {
        let out = std::env::var("OUT_DIR").context("OUT_DIR is not set")?;
        let path = std::path::Path::new(&out).join("decnet-ebpf");
        std::fs::write(&path, b"").with_context(|| format!("cannot write {}", path.display()))?;
        println!("cargo:warning={SKIP_VAR} is set: the sniffer is built without its eBPF program");
        return Ok(());
    }
    let root_dir = workspace_root()?.join("decnet-ebpf");
    let root_dir = root_dir.display().to_string();
    aya_build::build_ebpf(
        [Package {
            name: "decnet-ebpf",
            root_dir: &root_dir,
            ..Default::default()
        }],
        Toolchain::Custom("/usr"),
    )
    .context(
        "building the eBPF program failed; run `cargo xtask setup` to install rustc-web, \
         libstd-rust-web-dev-bpf, llvm-22-dev and bpf-linker (or set DECNET_SKIP_EBPF=1 to \
         check/lint without it)",
    )
}

/// decnet-agent/sniffer → the workspace root.
fn workspace_root() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::var("CARGO_MANIFEST_DIR")?;
    std::path::Path::new(&dir)
        .ancestors()
        .nth(2)
        .map(|p| p.to_path_buf())
        .ok_or_else(|| anyhow!("no workspace root above {dir}"))
}
