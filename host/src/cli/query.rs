//! `promolens acquisition`, `promolens analyze` and `promolens sql`: the analyses of the HTTP
//! API, on the data directory, as a table, CSV or JSON.

use chrono::{DateTime, NaiveDate, Utc};
use promolens::acquisition::{AcquisitionQuery, parse_dimensions, parse_tz, window};
use promolens::analysis::AnalysisSpec;
use promolens::output::{self, Format};
use promolens_ingest::ProjectZones;
use std::io::Write;

use super::{DEFAULT_TZ, DataArgs, registry};

#[derive(clap::Args)]
pub struct AcquisitionArgs {
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
}

/// The project's current attribution settings.
pub async fn project_settings(
    storage: &promolens_ingest::Storage,
    project: &str,
) -> anyhow::Result<std::sync::Arc<promolens::attribution_settings::SettingsVersion>> {
    let store = promolens::attribution_settings::SettingsStore::new(
        storage.clone(),
        std::sync::Arc::default(),
    );
    Ok(store.current(project).await?)
}

/// The project's time zone, as registered (the default zone for a project not registered).
async fn project_tz(
    storage: &promolens_ingest::Storage,
    project: &str,
) -> anyhow::Result<chrono_tz::Tz> {
    Ok(registry(storage, &ProjectZones::new(DEFAULT_TZ))
        .await?
        .project(project)
        .map_or(DEFAULT_TZ, |p| p.zone()))
}

pub async fn acquisition(args: AcquisitionArgs) -> anyhow::Result<()> {
    let storage = args.data.open()?;
    let tz = match args.tz {
        Some(name) => parse_tz(&name)?,
        None => project_tz(&storage, &args.project).await?,
    };
    let ctx = promolens::tables::session(&storage).await?;
    let now = args.now.unwrap_or_else(Utc::now);
    let settings = project_settings(&storage, &args.project).await?;
    let query = AcquisitionQuery::acquisition(
        &args.project,
        parse_dimensions(&args.by)?,
        window(args.days, args.from, args.to, now, tz)?,
        &settings,
    );
    let batches = query.run(&ctx).await?;
    if args.format == Format::Table {
        println!(
            "project {}, {} to {} ({})",
            query.project,
            query.window.from,
            query.window.to,
            query.window.tz.name()
        );
    }
    output::write(&batches, args.format, &mut std::io::stdout().lock())?;
    Ok(())
}

#[derive(clap::Args)]
pub struct AnalyzeArgs {
    #[command(flatten)]
    data: DataArgs,
    #[arg(long)]
    project: String,
    /// The spec: a JSON file, or `-` for standard input. Without it, the flags below make one.
    #[arg(long)]
    spec: Option<String>,
    #[command(flatten)]
    common: CommonSpec,
    /// What "now" is, RFC 3339 (default: the clock).
    #[arg(long)]
    now: Option<DateTime<Utc>>,
    /// Table and CSV show the rows; JSON the whole answer, each row's drill-down included.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

/// The common cases of a spec as flags (the whole spec needs `--spec`).
#[derive(clap::Args)]
#[group(conflicts_with = "spec")]
struct CommonSpec {
    /// Metrics, comma-separated (default: new_users,users,launches), e.g.
    /// `new_users,purchase_rate,retained_d7`.
    #[arg(long)]
    metrics: Option<String>,
    /// Dimensions in order, comma-separated (default: utm_source; an empty value gives one row
    /// of totals).
    #[arg(long)]
    dimensions: Option<String>,
    /// A named range: today, yesterday, this_week, last_week, this_month, last_month,
    /// past_7_days, past_30_days, past_90_days.
    #[arg(long, conflicts_with_all = ["past_days", "from"])]
    preset: Option<String>,
    /// The past N complete days.
    #[arg(long, conflicts_with = "from")]
    past_days: Option<u32>,
    /// First day, YYYY-MM-DD (with --to).
    #[arg(long, requires = "to")]
    from: Option<NaiveDate>,
    /// Last day, included.
    #[arg(long, requires = "from")]
    to: Option<NaiveDate>,
    /// Each metric beside its value in the previous period, and the change.
    #[arg(long)]
    compare: bool,
    /// Attribution model of conversions: first_touch, last_touch, last_non_direct, linear,
    /// position_based.
    #[arg(long)]
    model: Option<String>,
}

impl CommonSpec {
    /// The spec these flags give (checked as a JSON spec is).
    fn spec(&self) -> anyhow::Result<AnalysisSpec> {
        let list = |text: &str| -> Vec<String> {
            text.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        };
        let mut spec = serde_json::Map::new();
        if let Some(metrics) = &self.metrics {
            spec.insert("metrics".into(), list(metrics).into());
        }
        if let Some(dimensions) = &self.dimensions {
            spec.insert("dimensions".into(), list(dimensions).into());
        }
        let mut range = serde_json::Map::new();
        if let Some(preset) = &self.preset {
            range.insert("preset".into(), preset.clone().into());
        }
        if let Some(days) = self.past_days {
            range.insert("past_days".into(), days.into());
        }
        if let (Some(from), Some(to)) = (self.from, self.to) {
            range.insert("from".into(), from.to_string().into());
            range.insert("to".into(), to.to_string().into());
        }
        spec.insert("range".into(), range.into());
        if self.compare {
            spec.insert("compare".into(), true.into());
        }
        if let Some(model) = &self.model {
            spec.insert("attribution".into(), serde_json::json!({ "model": model }));
        }
        serde_json::from_value(spec.into()).map_err(|e| anyhow::anyhow!("the flags: {e}"))
    }
}

pub async fn analyze(args: AnalyzeArgs) -> anyhow::Result<()> {
    let spec = match &args.spec {
        Some(source) => read_spec(source)?,
        None => args.common.spec()?,
    };
    let storage = args.data.open()?;
    run_spec(&storage, &args.project, &spec, args.now, args.format, None).await
}

/// A progress line on a terminal's standard error while a long analysis runs (from its second
/// second: what it covers and how long it has taken), erased when it ends. Nothing when
/// standard error is not a terminal (scripts, CI logs).
struct Progress(Option<tokio::task::JoinHandle<()>>);

impl Progress {
    fn start(query: &promolens::acquisition::AcquisitionQuery) -> Progress {
        use std::io::IsTerminal;
        if !std::io::stderr().is_terminal() {
            return Progress(None);
        }
        let what = format!(
            "analysing {} from {} to {}",
            query.project, query.window.from, query.window.to
        );
        let started = std::time::Instant::now();
        Progress(Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
            tick.tick().await;
            loop {
                tick.tick().await;
                eprint!("\r{what} … {} s", started.elapsed().as_secs());
            }
        })))
    }

    fn stop(self) {
        if let Some(task) = self.0 {
            task.abort();
            // Erase the line (carriage return, clear to the end of the line).
            eprint!("\r\x1b[K");
        }
    }
}

/// A spec from a JSON file, or standard input for `-`.
pub fn read_spec(source: &str) -> anyhow::Result<AnalysisSpec> {
    let text = if source == "-" {
        std::io::read_to_string(std::io::stdin())?
    } else {
        std::fs::read_to_string(source)
            .map_err(|e| anyhow::anyhow!("reading the spec {source}: {e}"))?
    };
    serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("the spec {source}: {e}"))
}

/// Runs `spec` (of the saved analysis `saved`, if it is one) at `now` and prints the answer.
pub async fn run_spec(
    storage: &promolens_ingest::Storage,
    project: &str,
    spec: &AnalysisSpec,
    now: Option<DateTime<Utc>>,
    format: Format,
    saved: Option<promolens::saved_analyses::SavedRef>,
) -> anyhow::Result<()> {
    let tz = project_tz(storage, project).await?;
    let ctx = promolens::tables::session(storage).await?;
    let settings = project_settings(storage, project).await?;
    let query = spec.query(project, now.unwrap_or_else(Utc::now), tz, &settings)?;
    let progress = Progress::start(&query);
    let batches = spec.run(&query, &ctx).await;
    progress.stop();
    let batches = batches?;
    let mut answer = spec.answer(query, &batches, &ctx).await?;
    answer.saved_analysis = saved;
    let mut out = std::io::stdout().lock();
    if format == Format::Json {
        serde_json::to_writer_pretty(&mut out, &answer)?;
        writeln!(out)?;
        return Ok(());
    }
    if format == Format::Table {
        if let Some(saved) = &answer.saved_analysis {
            write!(out, "{} (version {}): ", saved.name, saved.version)?;
        }
        let window = &answer.window;
        write!(
            out,
            "project {}, {} to {} ({})",
            answer.project,
            window.from,
            window.to,
            window.tz.name()
        )?;
        if let Some(previous) = &answer.previous_window {
            write!(out, ", compared with {} to {}", previous.from, previous.to)?;
        }
        let used = &answer.settings;
        write!(out, ", settings version {}", used.version)?;
        if used.decoded_with.iter().any(|&v| v != used.version) {
            let versions: Vec<String> = used.decoded_with.iter().map(u32::to_string).collect();
            write!(
                out,
                " (launches decoded with version {}: `promolens reattribute` decodes them again)",
                versions.join(", ")
            )?;
        }
        writeln!(out)?;
    }
    output::write(&spec.project(&batches)?, format, &mut out)?;
    Ok(())
}

#[derive(clap::Args)]
pub struct SqlArgs {
    #[command(flatten)]
    data: DataArgs,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    query: String,
}

pub async fn sql(args: SqlArgs) -> anyhow::Result<()> {
    let storage = args.data.open()?;
    let ctx = promolens::tables::session(&storage).await?;
    let batches = promolens::sql::query(&ctx, &args.query).await?;
    output::write(&batches, args.format, &mut std::io::stdout().lock())?;
    Ok(())
}
