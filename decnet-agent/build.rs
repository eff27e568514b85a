//! Compiles `decnet-ebpf` for `bpfel-unknown-none` with Debian's rustc (see
//! ../shared/reference/toolchain.md) and leaves the object in OUT_DIR for `include_bytes_aligned!`.
use anyhow::{Context as _, anyhow};
use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    let meta = cargo_metadata_root()?;
    let root_dir = format!("{meta}/decnet-ebpf");
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
         libstd-rust-web-dev-bpf, llvm-22-dev and bpf-linker",
    )
}

fn cargo_metadata_root() -> anyhow::Result<String> {
    let dir = std::env::var("CARGO_MANIFEST_DIR")?;
    let parent = std::path::Path::new(&dir)
        .parent()
        .ok_or_else(|| anyhow!("no workspace root"))?;
    Ok(parent.display().to_string())
}
