//! `promolens compact`: merges the small Parquet files of each partition (safe while serving),
//! optionally rebuilding `user_first_seen` first.

use std::time::Duration;

use super::DataArgs;

#[derive(clap::Args)]
pub struct CompactArgs {
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
}

pub async fn run(args: CompactArgs) -> anyhow::Result<()> {
    let storage = args.data.open()?;
    if args.rebuild_first_seen {
        let projects = match &args.project {
            Some(p) => vec![p.clone()],
            None => promolens_ingest::first_seen::projects(&storage).await?,
        };
        for p in projects {
            let users = promolens_ingest::first_seen::rebuild(&storage, &p).await?;
            println!("rebuilt user_first_seen of project {p}: {users} users");
        }
    }
    let options = promolens_ingest::compact::CompactOptions {
        min_files: args.min_files,
        grace: Duration::from_secs(args.grace_seconds),
        project: args.project,
    };
    let summary = promolens_ingest::compact::compact(&storage, &options).await?;
    println!(
        "merged {} files ({} events in {} partitions, {} users first seen); finished {} earlier compactions",
        summary.files_merged, summary.events, summary.partitions, summary.users, summary.finished
    );
    Ok(())
}
