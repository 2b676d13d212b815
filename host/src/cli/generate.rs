//! `promolens gen`: realistic launch (and core) events as NDJSON (`.gz` compresses), for demos,
//! benchmarks and tests.

use std::path::PathBuf;

use anyhow::Context;
use chrono::{NaiveDate, Utc};
use promolens::acquisition::parse_tz;

#[derive(clap::Args)]
pub struct GenArgs {
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
    /// Also write `signup` and `purchase` events (beyond --events, which counts launches):
    /// minutes to days after a user's first launch, more from some channels than others,
    /// purchases with an `amount` in yuan.
    #[arg(long)]
    core_events: bool,
}

pub async fn run(args: GenArgs) -> anyhow::Result<()> {
    let tz = parse_tz(&args.tz)?;
    let end = args
        .end
        .unwrap_or_else(|| Utc::now().with_timezone(&tz).date_naive() - chrono::Days::new(1));
    if let Some(p) = &args.project {
        promolens_schemas::event::validate_project_name(p).map_err(anyhow::Error::msg)?;
    }
    let options = promolens::generator::GenOptions {
        events: args.events,
        users: args.users,
        days: args.days,
        end,
        tz,
        project: args.project,
        seed: args.seed,
        order: args.order,
        core_events: args.core_events,
    };
    let out = args.out;
    let summary =
        tokio::task::spawn_blocking(move || promolens::generator::generate(&options, &out))
            .await
            .context("generator thread")??;
    eprintln!(
        "wrote {} lines ({} retries, {} malformed, {} core events)",
        summary.lines, summary.retries, summary.malformed, summary.core_events
    );
    Ok(())
}
