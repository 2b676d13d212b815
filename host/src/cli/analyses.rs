//! `promolens analyses`: the project's saved analyses on the data directory (the operator's
//! door, as `/v1/projects/{p}/analyses` is the keys' door).

use chrono::{DateTime, Utc};
use promolens::output::Format;
use promolens::saved_analyses::{Change, SavedAnalyses};

use super::DataArgs;
use super::query::{read_spec, run_spec};

#[derive(clap::Args)]
pub struct AnalysesArgs {
    #[command(flatten)]
    data: DataArgs,
    #[arg(long)]
    project: String,
    #[command(subcommand)]
    action: AnalysesAction,
}

#[derive(clap::Subcommand)]
pub enum AnalysesAction {
    /// The saved analyses, the most recently changed first.
    List,
    /// One analysis (JSON), or one of its earlier versions.
    Show {
        id: String,
        #[arg(long)]
        version: Option<u64>,
    },
    /// Saves an analysis spec (JSON file, or `-` for standard input) under a name.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        spec: String,
    },
    /// A new version: a new spec, a new name, or both; refused when the analysis is no longer
    /// at `--version`.
    Update {
        id: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        spec: Option<String>,
        #[arg(long)]
        version: Option<u64>,
    },
    Rename {
        id: String,
        name: String,
    },
    /// Deletes an analysis (its versions stay readable with `show --version`).
    Delete {
        id: String,
    },
    /// Runs a saved analysis, its range evaluated against today (or `--now`).
    Run {
        id: String,
        #[arg(long)]
        now: Option<DateTime<Utc>>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

pub async fn run(args: AnalysesArgs) -> anyhow::Result<()> {
    let storage = args.data.open()?;
    let saved = SavedAnalyses::new(storage.clone());
    let project = &args.project;
    match args.action {
        AnalysesAction::List => print_json(&saved.list(project).await?),
        AnalysesAction::Show { id, version } => {
            print_json(&saved.get(project, &id, version).await?)
        }
        AnalysesAction::Create { name, spec } => {
            let spec = read_spec(&spec)?;
            print_json(&saved.create(project, None, &name, spec, None).await?)
        }
        AnalysesAction::Update {
            id,
            name,
            spec,
            version,
        } => {
            let spec = spec.as_deref().map(read_spec).transpose()?;
            let change = Change {
                name,
                spec,
                version,
            };
            print_json(&saved.update(project, &id, change, None).await?)
        }
        AnalysesAction::Rename { id, name } => {
            let change = Change {
                name: Some(name),
                ..Change::default()
            };
            print_json(&saved.update(project, &id, change, None).await?)
        }
        AnalysesAction::Delete { id } => print_json(&saved.delete(project, &id).await?),
        AnalysesAction::Run { id, now, format } => {
            let analysis = saved.get(project, &id, None).await?;
            let reference = analysis.reference();
            run_spec(
                &storage,
                project,
                &analysis.spec,
                now,
                format,
                Some(reference),
            )
            .await
        }
    }
}
