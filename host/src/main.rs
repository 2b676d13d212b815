//! The `promolens` command line: parses it and hands each subcommand to its file in `cli/`.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

mod cli;

use cli::DataArgs;

#[derive(Parser)]
#[command(
    name = "promolens",
    version,
    about = "Promotion codes and acquisition analytics for WeChat mini-programs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Print the effective configuration (file, variables, flags, defaults) as TOML, the secret
    /// masked.
    Show {
        #[arg(long, env = "PROMOLENS_CONFIG")]
        config: Option<PathBuf>,
        #[command(flatten)]
        settings: promolens::config::Settings,
    },
}

#[derive(Subcommand)]
enum Command {
    /// Projects: create, list, show, set (each has its time zone and its own keys).
    Projects {
        #[command(flatten)]
        data: DataArgs,
        #[command(subcommand)]
        action: cli::access::ProjectsAction,
    },
    /// API keys and invitations of a project: create, list, revoke, invite.
    Keys {
        #[command(flatten)]
        data: DataArgs,
        #[command(subcommand)]
        action: cli::access::KeysAction,
    },
    /// Promotion codes: authorize, create, list, show, rename, delete, download, batch, preview.
    Codes {
        #[command(flatten)]
        data: DataArgs,
        #[arg(long)]
        project: String,
        #[command(flatten)]
        codes: cli::codes::CodesArgs,
        #[command(subcommand)]
        action: cli::codes::CodesAction,
    },
    /// A local stand-in for WeChat's code API (for trying promolens and for tests).
    Standin(cli::standin::StandinArgs),
    /// Run the HTTP API: ingest, acquisition and SQL on one port.
    Serve {
        /// A TOML file of these settings (flags and PROMOLENS_* variables override it).
        #[arg(long, env = "PROMOLENS_CONFIG")]
        config: Option<PathBuf>,
        /// Create project `demo` with the sample events of data/ and print an admin and an
        /// ingest key.
        #[arg(long)]
        demo: bool,
        #[command(flatten)]
        settings: promolens::config::Settings,
    },
    /// The configuration `serve` would run with.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Merge the small Parquet files of each partition (safe while serving).
    Compact(cli::compact::CompactArgs),
    /// Load NDJSON files (plain or .gz) of events.
    Backfill(cli::backfill::BackfillArgs),
    /// Acquisition by UTM dimension: new users (first touch), users, launches.
    Acquisition(cli::query::AcquisitionArgs),
    /// Run an analysis spec (JSON, as `POST /v1/projects/{p}/analyses:run` takes it): metrics
    /// by dimensions, filtered, over a range or preset.
    Analyze(cli::query::AnalyzeArgs),
    /// Saved analyses: list, show, create, update, rename, delete, run.
    Analyses(cli::analyses::AnalysesArgs),
    /// A project's attribution settings (aliases, normalisation, channel rules, lookback
    /// window): show, history, set.
    Settings(cli::settings::SettingsArgs),
    /// Decode stored launches again, from a day on, with the project's current settings
    /// (resumable; safe while `serve` compacts: a day another rewriter holds waits for it).
    Reattribute(cli::settings::ReattributeArgs),
    /// Run a read-only SQL query over the tables (launch_events, events, …).
    Sql(cli::query::SqlArgs),
    /// Generate realistic launch (and core) events as NDJSON (.gz compresses).
    Gen(cli::generate::GenArgs),
    /// Print the OpenAPI 3.1 document of the HTTP API (what `GET /openapi.json` answers).
    Openapi,
}

/// glibc's malloc serves blocks over 128 KiB (raising that bar as they are freed, up to 32 MiB)
/// with `mmap` and hands a heap's free top back to the system above twice that bar. Ingest
/// allocates megabyte buffers per parse chunk and per flush, so each new one was faulted in page
/// by page again: fixed bars keep freed memory in the heap for the next chunk. Measured on the
/// 1 GB backfill: 2–5% less CPU, peak RSS still well under 300 MiB (BENCHMARKS.md, session 5).
/// Since each arena then keeps its own freed memory, arenas are capped at two per core (glibc's
/// default is eight): the parser, encoder and Tokio threads otherwise each hold a heap of their
/// own. Measured in session 8: peak RSS 284–307 → 272–275 MiB on the 1 GB file, 267–273 →
/// 212–240 MiB on the shuffled one, which takes ~3% longer (one arena per core: ~8%).
fn keep_freed_memory_for_reuse() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let arenas = libc::c_int::try_from(2 * cores).unwrap_or(libc::c_int::MAX);
        // SAFETY: mallopt only sets allocator parameters; called before any other thread exists.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 64 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
            libc::mallopt(libc::M_ARENA_MAX, arenas);
        }
    }
}

fn main() -> std::process::ExitCode {
    keep_freed_memory_for_reuse();
    init_logging();
    // Before any HTTPS client is built: reqwest brings no TLS crypto provider of its own.
    promolens::codes::wechat::use_ring_for_tls();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("PROMOLENS_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn run(command: Command) -> anyhow::Result<std::process::ExitCode> {
    match command {
        Command::Projects { data, action } => cli::access::projects(&data.open()?, action).await?,
        Command::Keys { data, action } => cli::access::keys(&data.open()?, action).await?,
        Command::Codes {
            data,
            project,
            codes,
            action,
        } => {
            let storage = data.open()?;
            let zones = promolens_ingest::ProjectZones::new(cli::DEFAULT_TZ);
            cli::existing_project(&storage, &zones, &project).await?;
            let state = codes.open(&storage, false).await?;
            cli::codes::run(state, &project, action).await?;
        }
        Command::Standin(args) => cli::standin::run(args).await?,
        Command::Config {
            action: ConfigAction::Show { config, settings },
        } => print!("{}", settings.resolve(config.as_deref())?.show()),
        Command::Serve {
            config,
            demo,
            settings,
        } => cli::serve::run(config.as_deref(), demo, settings).await?,
        Command::Backfill(args) => return cli::backfill::run(args).await,
        Command::Compact(args) => cli::compact::run(args).await?,
        Command::Acquisition(args) => cli::query::acquisition(args).await?,
        Command::Analyze(args) => cli::query::analyze(args).await?,
        Command::Analyses(args) => cli::analyses::run(args).await?,
        Command::Settings(args) => cli::settings::run(args).await?,
        Command::Reattribute(args) => cli::settings::reattribute_run(args).await?,
        Command::Sql(args) => cli::query::sql(args).await?,
        Command::Gen(args) => cli::generate::run(args).await?,
        Command::Openapi => println!("{}", promolens::api::document().to_pretty_json()?),
    }
    Ok(std::process::ExitCode::SUCCESS)
}
