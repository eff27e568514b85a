//! # web — `decnet web`: the REST API and dashboard (decnet-api) plus embedded workers.
//! Placeholder: filled in by the web issue.

/// `decnet web`.
#[derive(Debug, Clone, clap::Args)]
pub struct WebArgs {
    /// Run until SIGTERM/SIGINT.
    #[arg(long)]
    pub daemon: bool,
}

pub async fn run(_args: WebArgs) -> anyhow::Result<()> {
    anyhow::bail!("decnet web is not built yet")
}
