//! `azure-sim --listen 127.0.0.1:PORT --world FILE.yaml --ca-out DIR`

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;

/// A faithful local Azure: Entra token endpoint, ARM, Microsoft Graph and Defender for Endpoint,
/// over HTTPS with a CA generated at start. See README, "Azure simulator".
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Address to listen on (port 0 picks a free one; the chosen address is printed).
    #[arg(long, default_value = "127.0.0.1:8443", env = "AZURE_SIM_LISTEN")]
    listen: String,
    /// The world file (YAML): tenants, subscriptions, principals, resources.
    #[arg(long, env = "AZURE_SIM_WORLD")]
    world: PathBuf,
    /// Directory to write the CA certificate to (`DIR/ca.pem`).
    #[arg(long, env = "AZURE_SIM_CA_OUT")]
    ca_out: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let cli = Cli::parse();
    let text = std::fs::read_to_string(&cli.world)
        .with_context(|| format!("read {}", cli.world.display()))?;
    let world = azure_sim::world::World::from_yaml(&text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", cli.world.display()))?;
    let tls = azure_sim::server::Tls::generate()?;
    let ca = tls
        .write_ca(&cli.ca_out)
        .with_context(|| format!("write CA to {}", cli.ca_out.display()))?;
    let listener = tokio::net::TcpListener::bind(&cli.listen)
        .await
        .with_context(|| format!("listen on {}", cli.listen))?;
    let addr = listener.local_addr()?;
    let sim = Arc::new(azure_sim::Sim::new(
        world,
        format!("https://{addr}"),
        Some(cli.world.clone()),
    ));
    println!(
        "azure-sim listening on https://{addr} (CA: {})",
        ca.display()
    );
    tokio::select! {
        r = azure_sim::server::serve(listener, &tls, sim) => r,
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}
