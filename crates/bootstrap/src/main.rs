//! `otp-service`: serve, migrate, or run the embedded development mode.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use secrecy::ExposeSecret;

use bootstrap::{Application, Ports, Settings, dev, telemetry};

/// Enroll, verify, list and remove authenticator-app (TOTP) factors over
/// ZITADEL's Auth API wire.
#[derive(Debug, Parser)]
#[command(name = "otp-service", version)]
struct Cli {
    /// A TOML configuration file (layered over the defaults, under `OTP__*` variables).
    #[arg(long, global = true, env = "OTP_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the API on PostgreSQL (applies migrations first).
    Serve {
        /// Do not apply migrations at start (run `otp-service migrate` separately).
        #[arg(long)]
        no_migrate: bool,
    },
    /// Apply pending database migrations and exit.
    Migrate,
    /// Development mode: in-memory store, built-in token issuer. Never for production.
    Dev,
    /// Print the effective configuration (secrets redacted) and exit.
    Config,
    /// Manage the keys that seal secrets at rest.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Print a new `id:base64-32-bytes` key line for `crypto.keys`.
    Generate {
        /// The key id (default: `k` and the current UTC time, e.g. `k20261128213000`).
        #[arg(long)]
        id: Option<String>,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load(cli.config.as_deref(), std::env::vars()) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("otp-service: {error}");
            return ExitCode::from(2);
        }
    };
    let mut log = settings.log.clone();
    if matches!(cli.command, Command::Dev) && std::env::var_os("OTP__LOG__FORMAT").is_none() {
        log.format = "text".into();
    }
    let telemetry = telemetry::init(&log);
    let outcome = run(cli.command, settings).await;
    if let Err(error) = &outcome {
        tracing::error!(%error, "otp-service stopped");
    }
    telemetry.shutdown().await;
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("otp-service: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, settings: Settings) -> Result<(), Box<dyn std::error::Error>> {
    match command {
        Command::Serve { no_migrate } => {
            let ports = Ports::production(&settings)?;
            if !no_migrate {
                migrate(&settings).await?;
            }
            let app = Application::start(&settings, ports)?;
            tracing::info!(
                http_port = app.port(),
                grpc_port = app.grpc_port(),
                "serving"
            );
            app.run_until_stopped().await?;
        }
        Command::Migrate => migrate(&settings).await?,
        Command::Dev => {
            let service = dev::start(&settings)?;
            print_out(&dev::banner(
                service.app.port(),
                service.app.grpc_port(),
                &service.token,
            ));
            service.app.run_until_stopped().await?;
        }
        Command::Config => print_out(&format!("{settings:#?}")),
        Command::Keys {
            command: KeysCommand::Generate { id },
        } => {
            let id = id.unwrap_or_else(|| {
                use application::Clock;
                format!(
                    "k{}",
                    adapters_memory::SystemClock.now().format("%Y%m%d%H%M%S")
                )
            });
            print_out(adapters_crypto::generate_key_line(&id).expose_secret());
        }
    }
    Ok(())
}

async fn migrate(settings: &Settings) -> Result<(), Box<dyn std::error::Error>> {
    let applied = adapters_postgres::run_migrations(&settings.database.url).await?;
    tracing::info!(applied, database = %adapters_postgres::describe_database(&settings.database.url), "migrations applied");
    Ok(())
}

#[allow(clippy::print_stdout, reason = "the command's output is its answer")]
fn print_out(text: &str) {
    println!("{text}");
}
