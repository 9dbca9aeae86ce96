//! The `convrelay` binary.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use ingest_api::keys::{self, KeyRef, Revocation, Scope};
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
    /// Maintain the report rollups.
    #[command(subcommand)]
    Reports(ReportsCommand),
}

#[derive(Debug, Subcommand)]
enum ReportsCommand {
    /// Rebuild a workspace's report rollups from its stored credit shares (after a bulk load,
    /// or to repair them); reports keep answering meanwhile, from the old rollups until it
    /// commits.
    Rebuild {
        /// The workspace's name.
        #[arg(long)]
        workspace: String,
    },
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
    /// List keys, one a line: public part (`cr_<prefix>`), workspace, scopes, created, last
    /// used, revoked.
    List {
        /// Only this workspace's keys.
        #[arg(long)]
        workspace: Option<String>,
    },
    /// Revoke a key; running servers refuse it within seconds.
    Revoke {
        /// The key: its public part as `keys list` shows it (`cr_<prefix>`), the bare prefix,
        /// or the whole key (a leaked key pasted as it is).
        key: String,
    },
}

fn database_url() -> anyhow::Result<String> {
    std::env::var("DATABASE_URL")
        .context("DATABASE_URL is not set (`make run` starts a local PostgreSQL and sets it)")
}

fn time_or_dash(at: Option<time::OffsetDateTime>) -> String {
    at.map_or_else(|| "-".into(), events::format_timestamp)
}

/// Errors are one line on stderr (`error: …` with its causes after colons), never a backtrace,
/// and the exit status says what kind: 2 for a wrong command line (as clap does), 1 otherwise.
#[actix_web::main]
async fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return command_line_error(&e),
    };
    telemetry::init();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", causes(&e));
            ExitCode::FAILURE
        }
    }
}

/// Help and version as clap prints them; a wrong command line as one line.
fn command_line_error(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        // Prints to stdout (help, version) or stderr (help for a missing subcommand).
        let _ = e.print();
        return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
    }
    let rendered = e.render().to_string();
    let message = rendered
        .split("\n\n")
        .map(str::trim)
        .filter(|part| {
            !part.is_empty()
                && !part.starts_with("Usage:")
                && !part.starts_with("For more information")
        })
        .collect::<Vec<_>>()
        .join("; ");
    let message = message.strip_prefix("error: ").unwrap_or(&message);
    eprintln!("error: {} (see --help)", one_line(message));
    ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2))
}

/// An error and its causes, joined by colons, each said once (some errors repeat their source
/// in their own message).
fn causes(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = one_line(&cause.to_string());
        if text.is_empty() || out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// `text` on one line: its line breaks and the indentation after them become single spaces.
fn one_line(text: &str) -> String {
    text.split('\n')
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

async fn run(cli: Cli) -> anyhow::Result<()> {
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
        Command::Reports(ReportsCommand::Rebuild { workspace }) => {
            let pool = db::pool(&database_url()?, 1, std::time::Duration::from_secs(10))?;
            let mut client = pool.get().await.context("cannot connect to the database")?;
            db::migrate_all(&mut client).await?;
            let Some(id) = keys::workspace_id(&client, &workspace).await? else {
                anyhow::bail!("no workspace is named {workspace:?}");
            };
            let started = std::time::Instant::now();
            let tx = client.transaction().await?;
            // A rebuild reads every conversion of the workspace: no statement timeout.
            tx.batch_execute("SET LOCAL statement_timeout = 0").await?;
            reports::refresh(&tx, id)
                .await
                .context("cannot rebuild the rollups")?;
            tx.commit().await?;
            eprintln!(
                "rebuilt the report rollups of {workspace} in {:.1} s",
                started.elapsed().as_secs_f64()
            );
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
                    let listing = keys::list_keys(&client, workspace.as_deref()).await?;
                    if let Some(name) = workspace.as_deref() {
                        if listing.is_empty() && !keys::workspace_exists(&client, name).await? {
                            anyhow::bail!("no workspace is named {name:?}");
                        }
                    }
                    if std::io::stdout().is_terminal() {
                        println!("prefix\tworkspace\tscopes\tcreated\tlast_used\trevoked");
                    }
                    for k in listing {
                        println!(
                            "{}\t{}\t{}\t{}\t{}\t{}",
                            keys::public_part(&k.prefix),
                            k.workspace,
                            k.scopes.join(","),
                            events::format_timestamp(k.created_at),
                            time_or_dash(k.last_used_at),
                            time_or_dash(k.revoked_at),
                        );
                    }
                }
                KeysCommand::Revoke { key } => {
                    // The message never repeats what was given: it may be a whole key.
                    let key: KeyRef = key.parse().map_err(|e: String| anyhow::anyhow!(e))?;
                    let public = keys::public_part(&key.prefix);
                    match keys::revoke_key(&client, &key).await? {
                        Revocation::Revoked => eprintln!("revoked {public}"),
                        Revocation::AlreadyRevoked(at) => eprintln!(
                            "{public} was already revoked at {}",
                            events::format_timestamp(at)
                        ),
                        Revocation::NotFound => anyhow::bail!("no key is {public}"),
                        Revocation::SecretMismatch => anyhow::bail!(
                            "the key given is not {public}: its secret differs, so nothing was \
                             revoked (give {public} alone to revoke that key anyway)"
                        ),
                    }
                }
            }
        }
    }
    Ok(())
}
