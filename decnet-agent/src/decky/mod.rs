//! # decky — `decnet decky --name N`: serves one decky's decoy services inside its namespace.
//! Placeholder: filled in by the fleet issue.
pub mod services;

/// `decnet decky`.
#[derive(Debug, Clone, clap::Args)]
pub struct DeckyArgs {
    /// The decky's name in the fleet file.
    #[arg(long)]
    pub name: String,
}

pub async fn run(_args: DeckyArgs) -> anyhow::Result<()> {
    anyhow::bail!("decnet decky is not built yet")
}
