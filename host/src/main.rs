//! The `promolens` command line.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use clap::{Parser, Subcommand};
use promolens::access::Registry;
use promolens::acquisition::{AcquisitionQuery, parse_dimensions, parse_tz, window};
use promolens::output::{self, Format};
use promolens_ingest::backfill::{BackfillSummary, Progress};
use promolens_ingest::{IngestConfig, Ingestor, ProjectZones, Storage};

/// Code management settings (WeChat, credentials, the plugin).
#[derive(clap::Args)]
struct CodesArgs {
    /// WeChat API base URL. With --demo and no URL, a local WeChat stand-in is started and
    /// project `demo` is authorized against it.
    #[arg(long, env = "PROMOLENS_WECHAT_URL")]
    wechat_url: Option<String>,
    /// 64 hexadecimal digits: the key that encrypts stored WeChat credentials.
    #[arg(long, env = "PROMOLENS_SECRET_KEY", hide_env_values = true)]
    secret_key: Option<String>,
    /// Folder of compiled plugin components (default ~/.cache/promolens/components).
    #[arg(long, env = "PROMOLENS_COMPONENT_CACHE")]
    component_cache: Option<PathBuf>,
}

impl CodesArgs {
    async fn open(
        self,
        storage: &Storage,
        demo: bool,
    ) -> anyhow::Result<promolens::codes::CodesState> {
        use promolens::codes::{self, credentials, standin};
        let configured_key = match &self.secret_key {
            Some(hex) => Some(credentials::parse_key(hex)?),
            None => None,
        };
        let mut secret_key = configured_key;
        let mut standin_url = None;
        let wechat_url = match self.wechat_url {
            Some(url) => url,
            None if demo => {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                let url = format!("http://{}", listener.local_addr()?);
                tokio::spawn(standin::serve(listener, standin::StandinConfig::default()));
                tracing::info!(%url, "demo: WeChat stand-in started");
                standin_url = Some(url.clone());
                url
            }
            None => codes::wechat::DEFAULT_BASE_URL.to_string(),
        };
        if secret_key.is_none() && demo {
            // A key for this run only: demo credentials are registered again at each start.
            let (a, b) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
            let mut key = [0u8; 32];
            key[..16].copy_from_slice(a.as_bytes());
            key[16..].copy_from_slice(b.as_bytes());
            secret_key = Some(key);
        }
        let cache_dir = self.component_cache.or_else(|| {
            std::env::var_os("HOME")
                .map(|home| PathBuf::from(home).join(".cache/promolens/components"))
        });
        let config = codes::CodesConfig {
            wechat_url,
            secret_key,
            cache_dir,
            cache_key: configured_key,
            limits: Default::default(),
        };
        let state = codes::open(storage, &config)?;
        if standin_url.is_some() {
            let (app_id, secret) = standin::StandinConfig::default().apps[0].clone();
            codes::authorize_project(&state, "demo", app_id, secret)
                .await
                .map_err(|e| anyhow::anyhow!("authorizing the demo project: {e}"))?;
        }
        Ok(state)
    }
}

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

#[derive(clap::Args, Clone)]
struct DataArgs {
    /// Data directory: a local path, or a file://, memory:// or s3://bucket/prefix URL
    /// (s3 uses the AWS_* environment variables; AWS_ENDPOINT_URL for an S3-compatible server).
    #[arg(long, env = "PROMOLENS_DATA", default_value = "./promolens-data")]
    data: String,
}

mod cli;

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
        codes: CodesArgs,
        #[command(subcommand)]
        action: cli::codes::CodesAction,
    },
    /// A local stand-in for WeChat's code API (for trying promolens and for tests).
    Standin {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        /// A+C codes per AppID before errcode 45029.
        #[arg(long, default_value_t = 100_000)]
        quota: u32,
        /// Access token lifetime, seconds.
        #[arg(long, default_value_t = 7200)]
        token_seconds: u64,
    },
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
    Compact {
        #[command(flatten)]
        data: DataArgs,
        /// Only this project.
        #[arg(long)]
        project: Option<String>,
        /// Merge partitions with at least this many files.
        #[arg(long, default_value_t = 2)]
        min_files: usize,
        /// Seconds replaced files stay readable for queries that listed them.
        #[arg(long, default_value_t = 60)]
        grace_seconds: u64,
        /// First rebuild `user_first_seen` from `launch_events` (for data written before
        /// promolens kept it, or to repair it).
        #[arg(long)]
        rebuild_first_seen: bool,
    },
    /// Load NDJSON files (plain or .gz) of launch events.
    Backfill {
        #[command(flatten)]
        data: DataArgs,
        #[arg(long)]
        project: String,
        /// Exit with status 1 when any line is rejected.
        #[arg(long)]
        strict: bool,
        /// Events held in memory between writes. A day's share of a write that is small (a file
        /// not in time order) waits in a spill on local disk (the temp folder), so that each
        /// day becomes one sorted file whatever this is; larger means fewer writes and more
        /// memory.
        #[arg(long, default_value_t = 64_000)]
        buffer_rows: usize,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Acquisition by UTM dimension: new users (first touch), users, launches.
    Acquisition {
        #[command(flatten)]
        data: DataArgs,
        #[arg(long)]
        project: String,
        /// Dimensions, comma-separated: utm_source, utm_medium, utm_campaign, utm_content,
        /// utm_term, code_id, code_kind, scene, launch_type, path.
        #[arg(long, default_value = "utm_source")]
        by: String,
        /// The N complete days before today (default 7).
        #[arg(long, conflicts_with_all = ["from", "to"])]
        days: Option<u32>,
        /// First day, YYYY-MM-DD (with --to).
        #[arg(long, requires = "to")]
        from: Option<NaiveDate>,
        /// Last day, included.
        #[arg(long, requires = "from")]
        to: Option<NaiveDate>,
        /// What "now" is, RFC 3339 (default: the clock).
        #[arg(long)]
        now: Option<DateTime<Utc>>,
        /// Time zone of the days (default: the project's).
        #[arg(long)]
        tz: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Run a read-only SQL query over the tables (launch_events).
    Sql {
        #[command(flatten)]
        data: DataArgs,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        query: String,
    },
    /// Generate realistic launch events as NDJSON (.gz compresses).
    Gen {
        #[arg(long)]
        events: u64,
        #[arg(long)]
        users: u64,
        #[arg(long, default_value_t = 30)]
        days: u32,
        #[arg(long)]
        out: PathBuf,
        /// Last day of the period (default: yesterday in --tz).
        #[arg(long)]
        end: Option<NaiveDate>,
        /// Put this project name in every event.
        #[arg(long)]
        project: Option<String>,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        #[arg(long, default_value = "Asia/Shanghai")]
        tz: String,
        /// `time`: in time order; `shuffled`: no order, `ts` in mixed forms (as a file
        /// gathered from many senders).
        #[arg(long, value_enum, default_value = "time")]
        order: promolens::generator::Order,
    },
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

fn open(data: &DataArgs) -> anyhow::Result<Storage> {
    Ok(Storage::open(&data.data)?)
}

/// The projects and keys of a data directory, each project's zone set in `zones`.
async fn registry(storage: &Storage, zones: &ProjectZones) -> anyhow::Result<Arc<Registry>> {
    Ok(Arc::new(
        Registry::open(storage.clone(), zones.clone()).await?,
    ))
}

/// Zone of projects without a record (only partitions of projects that are known are written).
const DEFAULT_TZ: Tz = chrono_tz::Asia::Shanghai;

async fn run(command: Command) -> anyhow::Result<std::process::ExitCode> {
    match command {
        Command::Projects { data, action } => {
            cli::access::projects(&open(&data)?, action).await?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Keys { data, action } => {
            cli::access::keys(&open(&data)?, action).await?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Codes {
            data,
            project,
            codes,
            action,
        } => {
            promolens_schemas::event::validate_project_name(&project)
                .map_err(|m| anyhow::anyhow!("--project: {m}"))?;
            let storage = open(&data)?;
            registry(&storage, &ProjectZones::new(DEFAULT_TZ))
                .await?
                .project(&project)
                .with_context(|| {
                    format!("create it first: promolens projects create {project} --tz <zone>")
                })?;
            let state = codes.open(&storage, false).await?;
            cli::codes::run(state, &project, action).await?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Standin {
            listen,
            quota,
            token_seconds,
        } => {
            use promolens::codes::standin::{StandinConfig, serve};
            let listener = tokio::net::TcpListener::bind(listen).await?;
            let config = StandinConfig {
                quota,
                token_ttl: Duration::from_secs(token_seconds),
                ..StandinConfig::default()
            };
            let (app_id, secret) = config.apps[0].clone();
            println!(
                "WeChat stand-in listening on http://{} (AppID {app_id}, AppSecret {secret})",
                listener.local_addr()?
            );
            serve(listener, config).await?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Config {
            action: ConfigAction::Show { config, settings },
        } => {
            print!("{}", settings.resolve(config.as_deref())?.show());
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Serve {
            config,
            demo,
            settings,
        } => {
            cli::serve::run(config.as_deref(), demo, settings).await?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Backfill {
            data,
            project,
            strict,
            buffer_rows,
            files,
        } => {
            let storage = open(&data)?;
            let zones = ProjectZones::new(DEFAULT_TZ);
            registry(&storage, &zones)
                .await?
                .project(&project)
                .with_context(|| {
                    format!("create it first: promolens projects create {project} --tz <zone>")
                })?;
            // A file is mostly in time order: a few days' ids are enough to dedupe it, and
            // smaller buffers keep a 10 GB backfill within a few hundred MiB.
            let mut config = IngestConfig::new(DEFAULT_TZ);
            config.zones = zones;
            config.dedupe_max_ids = 1_000_000;
            // Recent flushes' users are the ones a time-ordered file brings back.
            config.first_seen_max_users = 500_000;
            config.flush_rows = buffer_rows.max(1);
            // A file in no time order brings every day a small piece at each flush: they wait
            // on local disk until the day can be written as one sorted file.
            config.spill = true;
            let ingestor = Arc::new(Ingestor::start(storage, config).await?);
            let progress = ProgressReport::new();
            let worker = ingestor.clone();
            let started = Instant::now();
            let summary = tokio::task::spawn_blocking(move || {
                promolens_ingest::backfill::backfill(&worker, &project, &files, &progress)
            })
            .await
            .context("backfill thread")??;
            ingestor.shutdown().await?;
            print_summary(&summary, started.elapsed());
            if strict && summary.rejected > 0 {
                return Ok(std::process::ExitCode::FAILURE);
            }
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Compact {
            data,
            project,
            min_files,
            grace_seconds,
            rebuild_first_seen,
        } => {
            let storage = open(&data)?;
            if rebuild_first_seen {
                let projects = match &project {
                    Some(p) => vec![p.clone()],
                    None => promolens_ingest::first_seen::projects(&storage).await?,
                };
                for p in projects {
                    let users = promolens_ingest::first_seen::rebuild(&storage, &p).await?;
                    println!("rebuilt user_first_seen of project {p}: {users} users");
                }
            }
            let options = promolens_ingest::compact::CompactOptions {
                min_files,
                grace: Duration::from_secs(grace_seconds),
                project,
            };
            let summary = promolens_ingest::compact::compact(&storage, &options).await?;
            println!(
                "merged {} files ({} events in {} partitions, {} users first seen); finished {} earlier compactions",
                summary.files_merged,
                summary.events,
                summary.partitions,
                summary.users,
                summary.finished
            );
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Acquisition {
            data,
            project,
            by,
            days,
            from,
            to,
            now,
            tz,
            format,
        } => {
            let storage = open(&data)?;
            let tz = match tz {
                Some(name) => parse_tz(&name)?,
                None => registry(&storage, &ProjectZones::new(DEFAULT_TZ))
                    .await?
                    .project(&project)
                    .map_or(DEFAULT_TZ, |p| p.zone()),
            };
            let ctx = promolens::tables::session(&storage).await?;
            let query = AcquisitionQuery {
                project,
                by: parse_dimensions(&by)?,
                window: window(days, from, to, now.unwrap_or_else(Utc::now), tz)?,
            };
            let batches = query.run(&ctx).await?;
            if format == Format::Table {
                println!(
                    "project {}, {} to {} ({})",
                    query.project,
                    query.window.from,
                    query.window.to,
                    query.window.tz.name()
                );
            }
            output::write(&batches, format, &mut std::io::stdout().lock())?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Sql {
            data,
            format,
            query,
        } => {
            let storage = open(&data)?;
            let ctx = promolens::tables::session(&storage).await?;
            let batches = promolens::sql::query(&ctx, &query).await?;
            output::write(&batches, format, &mut std::io::stdout().lock())?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Gen {
            events,
            users,
            days,
            out,
            end,
            project,
            seed,
            tz,
            order,
        } => {
            let tz = parse_tz(&tz)?;
            let end = end.unwrap_or_else(|| {
                Utc::now().with_timezone(&tz).date_naive() - chrono::Days::new(1)
            });
            if let Some(p) = &project {
                promolens_schemas::event::validate_project_name(p).map_err(anyhow::Error::msg)?;
            }
            let options = promolens::generator::GenOptions {
                events,
                users,
                days,
                end,
                tz,
                project,
                seed,
                order,
            };
            let summary =
                tokio::task::spawn_blocking(move || promolens::generator::generate(&options, &out))
                    .await
                    .context("generator thread")??;
            eprintln!(
                "wrote {} lines ({} retries, {} malformed)",
                summary.lines, summary.retries, summary.malformed
            );
            Ok(std::process::ExitCode::SUCCESS)
        }
    }
}

fn print_summary(summary: &BackfillSummary, elapsed: Duration) {
    let rate = summary.read as f64 / elapsed.as_secs_f64().max(1e-9);
    println!(
        "read {} · accepted {} · duplicates {} · rejected {} · {:.1} s ({:.0} events/s)",
        summary.read,
        summary.accepted,
        summary.duplicates,
        summary.rejected,
        elapsed.as_secs_f64(),
        rate
    );
    if let Some(q) = &summary.quarantine {
        println!("rejected lines and their reasons: {q}");
    }
}

/// A progress bar on a terminal, a log line every few seconds otherwise.
struct ProgressReport {
    bar: Option<indicatif::ProgressBar>,
    last_log: Mutex<Instant>,
}

impl ProgressReport {
    fn new() -> ProgressReport {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} {prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar
        });
        ProgressReport {
            bar,
            last_log: Mutex::new(Instant::now()),
        }
    }
}

impl Progress for ProgressReport {
    fn file(&self, path: &Path, size: u64) {
        match &self.bar {
            Some(bar) => {
                bar.set_length(size);
                bar.set_position(0);
                bar.set_prefix(path.display().to_string());
            }
            None => tracing::info!(file = %path.display(), bytes = size, "backfilling"),
        }
    }

    fn advance(&self, bytes: u64, summary: &BackfillSummary) {
        match &self.bar {
            Some(bar) => {
                bar.set_position(bytes);
                bar.set_message(format!(
                    "accepted {} dup {} rejected {}",
                    summary.accepted, summary.duplicates, summary.rejected
                ));
            }
            None => {
                let Ok(mut last) = self.last_log.lock() else {
                    return;
                };
                if last.elapsed() >= Duration::from_secs(5) {
                    *last = Instant::now();
                    tracing::info!(
                        bytes,
                        accepted = summary.accepted,
                        duplicates = summary.duplicates,
                        rejected = summary.rejected,
                        "progress"
                    );
                }
            }
        }
    }
}
