//! # profiler — attackers with new evidence → behaviour class, tools, explainable threat score,
//! ATT&CK techniques (`decnet profiler`). Placeholder: filled in by the profiler issue.

/// `decnet profiler`.
#[derive(Debug, Clone, clap::Args)]
pub struct ProfilerArgs {
    /// Run until SIGTERM/SIGINT instead of one pass.
    #[arg(long)]
    pub daemon: bool,
}

pub async fn run(_args: ProfilerArgs) -> anyhow::Result<()> {
    anyhow::bail!("decnet profiler is not built yet")
}
