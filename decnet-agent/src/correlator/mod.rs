//! # correlator — events and flows → sessions, attackers, traversal, credential reuse, scans
//! (`decnet correlate`). Placeholder: filled in by the correlator issue.

/// `decnet correlate`.
#[derive(Debug, Clone, clap::Args)]
pub struct CorrelateArgs {
    /// Run until SIGTERM/SIGINT instead of processing what is pending and exiting.
    #[arg(long)]
    pub daemon: bool,
}

pub async fn run(_args: CorrelateArgs) -> anyhow::Result<()> {
    anyhow::bail!("decnet correlate is not built yet")
}
