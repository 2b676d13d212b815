//! `promolens backfill`: NDJSON files (plain or .gz) of launch events into the data directory,
//! through the same pipeline as live ingest (its dedupe, partitions and files), with a progress
//! bar on a terminal.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use promolens::attribution_settings::SettingsStore;
use promolens_ingest::backfill::{BackfillSummary, Progress};
use promolens_ingest::{IngestConfig, Ingestor, ProjectZones};

use super::{DEFAULT_TZ, DataArgs, existing_project};

#[derive(clap::Args)]
pub struct BackfillArgs {
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
}

pub async fn run(args: BackfillArgs) -> anyhow::Result<std::process::ExitCode> {
    let storage = args.data.open()?;
    let zones = ProjectZones::new(DEFAULT_TZ);
    existing_project(&storage, &zones, &args.project).await?;
    // A file is mostly in time order: a few days' ids are enough to dedupe it, and
    // smaller buffers keep a 10 GB backfill within a few hundred MiB.
    let mut config = IngestConfig::new(DEFAULT_TZ);
    config.zones = zones;
    config.dedupe_max_ids = 1_000_000;
    // Recent flushes' users are the ones a time-ordered file brings back.
    config.first_seen_max_users = 500_000;
    config.flush_rows = args.buffer_rows.max(1);
    // A file in no time order brings every day a small piece at each flush: they wait
    // on local disk until the day can be written as one sorted file.
    config.spill = true;
    // Launches are decoded with the project's current attribution settings.
    let settings = SettingsStore::new(storage.clone(), config.attributors.clone());
    settings.current(&args.project).await?;
    let ingestor = Arc::new(Ingestor::start(storage, config).await?);
    let progress = ProgressReport::new();
    let worker = ingestor.clone();
    let started = Instant::now();
    let (project, files) = (args.project, args.files);
    let summary = tokio::task::spawn_blocking(move || {
        promolens_ingest::backfill::backfill(&worker, &project, &files, &progress)
    })
    .await
    .context("backfill thread")??;
    ingestor.shutdown().await?;
    print_summary(&summary, started.elapsed());
    if args.strict && summary.rejected > 0 {
        return Ok(std::process::ExitCode::FAILURE);
    }
    Ok(std::process::ExitCode::SUCCESS)
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
