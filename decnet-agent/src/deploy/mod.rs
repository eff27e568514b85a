//! # deploy — `decnet deploy`, `decnet teardown`, `decnet status`: the fleet and its supervisor.
//! Placeholder: filled in by the fleet issue.

/// `decnet deploy`.
#[derive(Debug, Clone, clap::Args)]
pub struct DeployArgs {}
/// `decnet teardown`.
#[derive(Debug, Clone, clap::Args)]
pub struct TeardownArgs {}
/// `decnet status`.
#[derive(Debug, Clone, clap::Args)]
pub struct StatusArgs {}

pub async fn deploy(_args: DeployArgs) -> anyhow::Result<()> {
    anyhow::bail!("decnet deploy is not built yet")
}
pub async fn teardown(_args: TeardownArgs) -> anyhow::Result<()> {
    anyhow::bail!("decnet teardown is not built yet")
}
pub async fn status(_args: StatusArgs) -> anyhow::Result<()> {
    anyhow::bail!("decnet status is not built yet")
}
