//! containment-operator: declarative Azure and Microsoft security containment.

use clap::{Parser, Subcommand};
use containment_operator::{overview, permissions, run};

#[derive(Parser)]
#[command(
    version,
    args_override_self = true,
    about = "Declarative Azure and Microsoft security containment for Kubernetes",
    long_about = "Declarative Azure and Microsoft security containment for Kubernetes.\n\nCustom resources (kubectl get containment -A) say which control must be in force on which Azure target; the controller applies it, re-applies it when it drifts and restores the recorded prior state on delete."
)]
struct Cli {
    /// Log format.
    #[arg(long, global = true, env = "LOG_FORMAT", value_parser = ["json", "text"], default_value = "json")]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controllers (in cluster, or with KUBECONFIG).
    Run(Box<run::RunArgs>),
    /// Every containment in one table that fits the terminal (kubectl plugin: link this binary
    /// as `kubectl-containment` on PATH, then `kubectl containment get -A`).
    Get {
        /// List every namespace.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
        /// The namespace to list (default: the kubeconfig context's).
        #[arg(short, long, conflicts_with = "all_namespaces")]
        namespace: Option<String>,
        /// Truncate TARGET, then NAME, to fit this many columns (0: never truncate).
        #[arg(long, env = "COLUMNS", default_value_t = 120)]
        width: usize,
    },
    /// Print every CRD as YAML (the source of crds/).
    Crds,
    /// Print the API reference as Markdown, generated from the CRD schemas (docs/api.md).
    ApiReference,
    /// Print the Azure custom role (actions) and the Graph / Defender for Endpoint application
    /// permissions the enabled kinds need, as JSON.
    Permissions {
        /// Kinds to include, comma-separated (default: all). `Kind:Variant` narrows a kind to
        /// what some of its specs need: WafIpBlock:AppGateway, WafIpBlock:FrontDoor,
        /// StorageKeyRotation:AccountKeysOnly, StorageSasRevocation:DelegationKeysOnly,
        /// StorageDefenderProtection:ActivityMonitoringOnly, AppServiceRestart:SiteOnly.
        #[arg(long, value_delimiter = ',')]
        kinds: Vec<String>,
        /// AssignableScopes of the role.
        #[arg(
            long,
            default_value = "/subscriptions/00000000-0000-0000-0000-000000000000"
        )]
        scope: Vec<String>,
    },
}

fn init_logs(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        b.json().flatten_event(true).with_current_span(false).init();
    } else {
        b.init();
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Crds => print!("{}", containment_operator::crds_yaml()?),
        Command::ApiReference => print!("{}", containment_operator::api_reference()),
        Command::Permissions { kinds, scope } => {
            let grants = permissions::grants(&kinds).map_err(anyhow::Error::msg)?;
            println!(
                "{}",
                serde_json::to_string_pretty(&permissions::document(&grants, &scope))?
            );
        }
        Command::Get {
            all_namespaces,
            namespace,
            width,
        } => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let table = rt.block_on(async {
                let client = kube::Client::try_default().await?;
                let ns = match (all_namespaces, namespace) {
                    (true, _) => None,
                    (false, Some(ns)) => Some(ns),
                    (false, None) => Some(client.default_namespace().to_string()),
                };
                let rows = overview::list(client, ns.as_deref()).await?;
                anyhow::Ok(overview::render(&rows, all_namespaces, width))
            })?;
            print!("{table}");
        }
        Command::Run(args) => {
            init_logs(&cli.log_format);
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            if let Err(e) = rt.block_on(run::run(*args)) {
                tracing::error!(error = format!("{e:#}"), "exiting");
                std::process::exit(1);
            }
        }
    }
    Ok(())
}
