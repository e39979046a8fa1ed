//! `bulkhead lab`: the seed's two experiments, runnable.

#[derive(Debug, clap::Args)]
pub(crate) struct LabArgs {}

pub(crate) fn run(_args: LabArgs) -> anyhow::Result<()> {
    anyhow::bail!("bulkhead lab is being written")
}
