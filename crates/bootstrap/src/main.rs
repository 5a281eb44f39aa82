//! `otp-service`: serve, migrate, or run the embedded development mode.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

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
    /// Serve the API on PostgreSQL (applies migrations first; while the
    /// database cannot be reached, serves not ready and keeps trying).
    Serve {
        /// Do not apply migrations at start (run `otp-service migrate` separately).
        #[arg(long)]
        no_migrate: bool,
    },
    /// Apply pending database migrations and exit.
    Migrate,
    /// Development mode: in-memory store, built-in token issuer. Never for production.
    Dev {
        /// Listen on a configured address that is not loopback (e.g.
        /// `OTP__HTTP__ADDR=0.0.0.0:8080`); refused without this flag.
        #[arg(long)]
        allow_non_loopback: bool,
        /// Also enroll the printed token's user at once: QR code, secret, code prompt.
        #[arg(long)]
        enroll: bool,
    },
    /// Development helper: enroll an authenticator app over a running
    /// service's REST API (QR code in the terminal, secret, code prompt).
    Enroll {
        /// The service's REST base URL (https://, or http:// to loopback only).
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// The user's bearer token (`otp-service dev` prints `export TOKEN=…`).
        #[arg(long, env = "TOKEN", hide_env_values = true)]
        token: secrecy::SecretString,
    },
    /// Print the effective configuration (secrets redacted) and exit.
    Config,
    /// Bulk-import TOTP secrets exported by another system, one JSON object
    /// (or otpauth URL) per line, each as a READY factor. Idempotent and
    /// resumable: run it again to go on; exits non-zero if a line was refused.
    Import {
        /// The JSON Lines file (`docs/operations.md`, "Bulk import").
        #[arg(long)]
        file: PathBuf,
        /// Start at this line (1-based); earlier lines are passed over.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
        from_line: u64,
        /// Lines imported at once.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=64))]
        concurrency: u64,
    },
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
    /// Re-seal every stored secret under the active (first) key of
    /// `crypto.keys`, in batches, while the service runs. Resumable: run it
    /// again after an interruption. Afterwards older keys can be removed.
    Rotate {
        /// Secrets per batch (one short transaction each).
        #[arg(long, default_value_t = 500)]
        batch_size: usize,
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
    if matches!(cli.command, Command::Dev { .. } | Command::Enroll { .. })
        && std::env::var_os("OTP__LOG__FORMAT").is_none()
    {
        log.format = "text".into();
    }
    // An enrolment prompt shares the terminal with the log: warnings only, unless asked.
    // The bulk import reports on the terminal too; its events are in the
    // database, its audit lines come with `OTP__LOG__FILTER=info`.
    if matches!(
        cli.command,
        Command::Dev { enroll: true, .. } | Command::Enroll { .. } | Command::Import { .. }
    ) && std::env::var_os("OTP__LOG__FILTER").is_none()
        && std::env::var_os("RUST_LOG").is_none()
    {
        log.filter = "warn".into();
    }
    // Commands that only print an answer export no telemetry.
    let telemetry = if matches!(
        cli.command,
        Command::Config
            | Command::Enroll { .. }
            | Command::Keys {
                command: KeysCommand::Generate { .. }
            }
    ) {
        telemetry::init_from(&log, &telemetry::OtelConfig::disabled())
    } else {
        telemetry::init(&log)
    };
    let code = match run(cli.command, settings).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "otp-service stopped");
            eprintln!("otp-service: {error}");
            ExitCode::FAILURE
        }
    };
    // The last spans and metrics, within a bound.
    telemetry.shutdown().await;
    code
}

async fn run(command: Command, settings: Settings) -> Result<(), Box<dyn std::error::Error>> {
    match command {
        Command::Serve { no_migrate } => {
            let ports = Ports::production(&settings)?;
            // A database that cannot be reached at start is no reason to
            // exit: serve (not ready: `/readyz` 503 until the schema is
            // current) and apply the migrations once it can be reached.
            let unreachable = !no_migrate && migrate_or_unreachable(&settings).await?;
            let app = Application::start(&settings, ports)?;
            tracing::info!(
                http_port = app.port(),
                grpc_port = app.grpc_port(),
                internal_http_port = app.internal_port(),
                internal_grpc_port = app.internal_grpc_port(),
                "serving"
            );
            let serving = app.run_until_stopped();
            if unreachable {
                tokio::pin!(serving);
                tokio::select! {
                    stopped = &mut serving => stopped?,
                    migrated = migrate_when_reachable(&settings) => {
                        migrated?;
                        serving.await?;
                    }
                }
            } else {
                serving.await?;
            }
        }
        Command::Migrate => migrate(&settings).await?,
        Command::Dev {
            allow_non_loopback,
            enroll,
        } => {
            let service = dev::start_with(&settings, allow_non_loopback)?;
            print_out(&dev::banner(
                service.app.port(),
                service.app.grpc_port(),
                &service.token,
                &service.admin_token,
            ));
            if enroll {
                let (base, token) = (
                    format!("http://127.0.0.1:{}", service.app.port()),
                    service.token.clone(),
                );
                let running = tokio::spawn(service.app.run_until_stopped());
                if let Err(error) = enroll_here(&base, &token).await {
                    eprintln!("otp-service: enrolment: {error}");
                }
                print_out("The development service keeps running; Ctrl-C stops it.");
                running.await??;
            } else {
                service.app.run_until_stopped().await?;
            }
        }
        Command::Enroll { url, token } => enroll_here(&url, &token).await?,
        Command::Config => print_out(&format!("{settings:#?}")),
        Command::Keys {
            command: KeysCommand::Generate { id },
        } => {
            let id = id.unwrap_or_else(|| {
                use application::Clock;
                format!(
                    "k{}",
                    adapters_clock::SystemClock.now().format("%Y%m%d%H%M%S")
                )
            });
            print_out(adapters_crypto::generate_key_line(&id)?.expose_secret());
        }
        Command::Keys {
            command: KeysCommand::Rotate { batch_size },
        } => rotate_keys(&settings, batch_size).await?,
        Command::Import {
            file,
            from_line,
            concurrency,
        } => {
            let options = bootstrap::import::ImportOptions {
                from_line,
                concurrency: usize::try_from(concurrency).unwrap_or(4),
            };
            let summary = bootstrap::import::import_file(&settings, &file, options).await?;
            print_out(&summary.to_string());
            if summary.refused > 0 {
                return Err(bootstrap::import::ImportError::Refused(summary.refused).into());
            }
        }
    }
    Ok(())
}

/// `keys rotate`: re-seals under the active key, bound to each factor's
/// parameters and creation time, and prints the counts.
async fn rotate_keys(
    settings: &Settings,
    batch_size: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let cipher = Arc::new(bootstrap::app::keyring(settings)?);
    let store = Arc::new(adapters_postgres::PgFactorStore::connect(
        &settings.database.pg_settings(),
    )?);
    let active = application::SecretCipher::active_key_id(cipher.as_ref()).to_owned();
    print_out(&format!(
        "re-sealing under key {active:?}, {batch_size} per batch"
    ));
    let rotation = application::KeyRotation::new(store, cipher);
    let report = rotation
        .run(
            batch_size,
            None,
            &mut |report: &application::RotationReport| {
                print_out(&format!(
                    "batch {}: scanned {}, to re-seal {}, re-sealed {}, changed meanwhile {}, failed {}",
                    report.batches,
                    report.scanned,
                    report.examined,
                    report.resealed,
                    report.changed_meanwhile,
                    report.failed
                ));
            },
        )
        .await
        .inspect_err(application::ApplicationError::report)?;
    print_out(&format!(
        "done: scanned {}, to re-seal {}, re-sealed {}, changed meanwhile {}, failed {}",
        report.scanned, report.examined, report.resealed, report.changed_meanwhile, report.failed
    ));
    if report.complete() {
        print_out(
            "every secret is sealed under the active key and bound to its factor; \
             older keys can be removed and crypto.accept_unbound unset",
        );
        Ok(())
    } else {
        Err(format!(
            "{} secret(s) changed meanwhile and {} could not be opened (see the log); \
             run `otp-service keys rotate` again, and keep the old keys until it reports none",
            report.changed_meanwhile, report.failed
        )
        .into())
    }
}

/// One enrolment on this terminal: stdin for codes, stdout for the QR code.
async fn enroll_here(
    base: &str,
    token: &secrecy::SecretString,
) -> Result<(), bootstrap::enroll::EnrollError> {
    use std::io::IsTerminal as _;
    let mut stdout = std::io::stdout();
    let ansi = stdout.is_terminal() && std::env::var_os("NO_COLOR").is_none();
    bootstrap::enroll::enroll(
        base,
        token,
        &mut bootstrap::enroll::stdin_lines(),
        &mut stdout,
        ansi,
    )
    .await
}

/// Applies the migrations; `true` (after a warning) when the database
/// cannot be reached, any other failure is the error.
async fn migrate_or_unreachable(settings: &Settings) -> Result<bool, Box<dyn std::error::Error>> {
    match adapters_postgres::run_migrations(&settings.database.url).await {
        Ok(applied) => {
            tracing::info!(applied, database = %adapters_postgres::describe_database(&settings.database.url), "migrations applied");
            Ok(false)
        }
        Err(adapters_postgres::PgError::Connect(cause)) => {
            tracing::warn!(%cause, "database unreachable at start: serving, not ready, until the migrations can be applied");
            Ok(true)
        }
        Err(error) => Err(error.into()),
    }
}

/// Retries the migrations (every 0.25 s, doubling up to 5 s) until the
/// database can be reached and they are applied; a failure other than an
/// unreachable database is the error (the process then stops, as it does
/// when it happens at start).
async fn migrate_when_reachable(settings: &Settings) -> Result<(), Box<dyn std::error::Error>> {
    let mut pause = std::time::Duration::from_millis(250);
    loop {
        tokio::time::sleep(pause).await;
        if !migrate_or_unreachable(settings).await? {
            return Ok(());
        }
        pause = (pause * 2).min(std::time::Duration::from_secs(5));
    }
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
