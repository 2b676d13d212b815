//! `promolens settings` and `promolens reattribute`: a project's attribution settings on the data
//! directory (the operator's door, as `/v1/projects/{p}/settings` is the keys' door), and the
//! stored launches decoded again with the current ones.

use std::time::Duration;

use anyhow::Context;
use chrono::NaiveDate;
use promolens::attribution_settings::{AttributionSettings, SettingsStore};
use promolens_ingest::reattribute::{ReattributeOptions, reattribute};

use super::DataArgs;

#[derive(clap::Args)]
pub struct SettingsArgs {
    #[command(flatten)]
    data: DataArgs,
    #[arg(long)]
    project: String,
    #[command(subcommand)]
    action: SettingsAction,
}

#[derive(clap::Subcommand)]
pub enum SettingsAction {
    /// The current settings (JSON), or an earlier version.
    Show {
        #[arg(long)]
        version: Option<u32>,
    },
    /// Every version, oldest first.
    History,
    /// Makes the settings of a JSON file (or `-` for standard input) the next version; refused
    /// when the project is no longer at `--version` (the one the file was edited from).
    Set {
        file: String,
        #[arg(long)]
        version: u32,
    },
}

pub async fn run(args: SettingsArgs) -> anyhow::Result<()> {
    let storage = args.data.open()?;
    let store = SettingsStore::new(storage, Default::default());
    let project = &args.project;
    let shown = match args.action {
        SettingsAction::Show { version: None } => {
            serde_json::to_value(&*store.current(project).await?)?
        }
        SettingsAction::Show {
            version: Some(version),
        } => serde_json::to_value(store.version(project, version).await?)?,
        SettingsAction::History => serde_json::to_value(store.history(project).await?)?,
        SettingsAction::Set { file, version } => {
            let text = if file == "-" {
                std::io::read_to_string(std::io::stdin())?
            } else {
                std::fs::read_to_string(&file).with_context(|| format!("reading {file}"))?
            };
            let settings: AttributionSettings =
                serde_json::from_str(&text).with_context(|| format!("the settings {file}"))?;
            let saved = store.update(project, version, settings, None).await?;
            eprintln!(
                "settings version {} of {project}: new launches are decoded with it; \
                 `promolens reattribute --project {project} --from <day>` decodes stored ones again",
                saved.version
            );
            serde_json::to_value(saved)?
        }
    };
    println!("{}", serde_json::to_string_pretty(&shown)?);
    Ok(())
}

#[derive(clap::Args)]
pub struct ReattributeArgs {
    #[command(flatten)]
    data: DataArgs,
    #[arg(long)]
    project: String,
    /// The first day (YYYY-MM-DD, the project's days) decoded again; every later stored day
    /// follows.
    #[arg(long)]
    from: NaiveDate,
    /// Seconds replaced files stay readable for queries that listed them (the next run, or
    /// `promolens compact`, deletes them after that).
    #[arg(long, default_value_t = 60)]
    grace_seconds: u64,
}

pub async fn reattribute_run(args: ReattributeArgs) -> anyhow::Result<()> {
    let storage = args.data.open()?;
    let store = SettingsStore::new(storage.clone(), Default::default());
    let attributor = store.attributor(&args.project).await?;
    let options = ReattributeOptions {
        project: args.project,
        from: args.from,
        grace: Duration::from_secs(args.grace_seconds),
    };
    let started = std::time::Instant::now();
    let summary = reattribute(&storage, attributor, &options).await?;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "decoded {} launches of {} days again with settings version {} ({} days were already at it) in {seconds:.1} s ({:.0} events/s); finished {} earlier replacements",
        summary.events,
        summary.days,
        summary.settings_version,
        summary.days_up_to_date,
        summary.events as f64 / seconds.max(1e-9),
        summary.finished
    );
    Ok(())
}
