//! containment-operator: declarative Azure and Microsoft security containment.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    version,
    about = "Declarative Azure and Microsoft security containment for Kubernetes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print every CRD as YAML (the source of crds/).
    Crds,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crds => print!("{}", containment_operator::crds_yaml()?),
    }
    Ok(())
}
