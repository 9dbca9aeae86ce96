//! The `convrelay` binary.

use std::io::IsTerminal;

use anyhow::Context;
use clap::{Parser, Subcommand};
use ingest_api::keys::{self, Scope};
use ingest_api::{db, telemetry, Application, Settings};

/// Convrelay: takes lead and sale conversions once, finds the ad click behind each, and relays
/// them to the ad platforms.
#[derive(Debug, Parser)]
#[command(name = "convrelay", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Apply pending migrations, then serve the HTTP API and run the pipeline workers
    /// (attribution and forwarding) until SIGTERM.
    Serve {
        /// Serve the API only; run the workers elsewhere with `convrelay worker`.
        #[arg(long)]
        no_workers: bool,
    },
    /// Apply pending migrations, then run the pipeline workers alone until SIGTERM.
    Worker,
    /// Apply pending migrations and exit.
    Migrate,
    /// Manage API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create a key (and its workspace if new); prints the key alone on one line.
    Create {
        /// The workspace's name.
        #[arg(long)]
        workspace: String,
        /// A scope: ingest, read or admin (repeat for several).
        #[arg(long = "scope", required = true)]
        scopes: Vec<Scope>,
    },
    /// List keys, one a line: prefix, workspace, scopes, created, last used, revoked.
    List {
        /// Only this workspace's keys.
        #[arg(long)]
        workspace: Option<String>,
    },
    /// Revoke a key by its prefix; running servers refuse it within seconds.
    Revoke {
        /// The key's prefix (the part after `cr_`).
        prefix: String,
    },
}

fn database_url() -> anyhow::Result<String> {
    std::env::var("DATABASE_URL")
        .context("DATABASE_URL is not set (`make run` starts a local PostgreSQL and sets it)")
}

fn time_or_dash(at: Option<time::OffsetDateTime>) -> String {
    at.map_or_else(|| "-".into(), events::format_timestamp)
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    telemetry::init();
    match cli.command {
        Command::Serve { no_workers } => {
            let settings = Settings::from_env()?;
            let app = Application::build_with(settings, !no_workers)
                .await
                .context("cannot start the service")?;
            tracing::info!(addr = %app.addr(), "serving");
            app.run_until_stopped().await?;
        }
        Command::Worker => {
            let settings = Settings::from_env()?;
            ingest_api::app::run_workers(settings)
                .await
                .context("cannot run the workers")?;
        }
        Command::Migrate => {
            let mut client = db::connect(&database_url()?).await?;
            db::migrate_all(&mut client).await?;
            tracing::info!("migrations applied");
        }
        Command::Keys(command) => {
            let pool = db::pool(&database_url()?, 1, std::time::Duration::from_secs(10))?;
            let mut client = pool.get().await.context("cannot connect to the database")?;
            db::migrate_all(&mut client).await?;
            match command {
                KeysCommand::Create { workspace, scopes } => {
                    let key = keys::create_key(&client, &workspace, &scopes).await?;
                    println!("{key}");
                }
                KeysCommand::List { workspace } => {
                    if std::io::stdout().is_terminal() {
                        println!("prefix\tworkspace\tscopes\tcreated\tlast_used\trevoked");
                    }
                    for k in keys::list_keys(&client, workspace.as_deref()).await? {
                        println!(
                            "{}\t{}\t{}\t{}\t{}\t{}",
                            k.prefix,
                            k.workspace,
                            k.scopes.join(","),
                            events::format_timestamp(k.created_at),
                            time_or_dash(k.last_used_at),
                            time_or_dash(k.revoked_at),
                        );
                    }
                }
                KeysCommand::Revoke { prefix } => {
                    if !keys::revoke_key(&client, &prefix).await? {
                        anyhow::bail!("no key has the prefix {prefix:?}");
                    }
                    eprintln!("revoked {prefix}");
                }
            }
        }
    }
    Ok(())
}
