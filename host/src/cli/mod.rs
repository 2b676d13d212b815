//! The subcommands, one file each: its arguments (clap) and what it runs. `main.rs` parses the
//! command line and hands each over; what several share is here.

pub mod access;
pub mod analyses;
pub mod backfill;
pub mod codes;
pub mod compact;
pub mod generate;
pub mod query;
pub mod serve;
pub mod settings;
pub mod standin;

use std::sync::Arc;

use chrono_tz::Tz;
use promolens::access::Registry;
use promolens_ingest::{ProjectZones, Storage};

#[derive(clap::Args, Clone)]
pub struct DataArgs {
    /// Data directory: a local path, or a file://, memory:// or s3://bucket/prefix URL
    /// (s3 uses the AWS_* environment variables; AWS_ENDPOINT_URL for an S3-compatible server).
    #[arg(long, env = "PROMOLENS_DATA", default_value = "./promolens-data")]
    pub data: String,
}

impl DataArgs {
    pub fn open(&self) -> anyhow::Result<Storage> {
        Ok(Storage::open(&self.data)?)
    }
}

/// The projects and keys of a data directory, each project's zone set in `zones`.
pub async fn registry(storage: &Storage, zones: &ProjectZones) -> anyhow::Result<Arc<Registry>> {
    Ok(Arc::new(
        Registry::open(storage.clone(), zones.clone()).await?,
    ))
}

/// The project, which must exist (the operator creates projects; nothing makes one silently).
pub async fn existing_project(
    storage: &Storage,
    zones: &ProjectZones,
    project: &str,
) -> anyhow::Result<promolens::access::registry::Project> {
    use anyhow::Context;
    promolens_schemas::event::validate_project_name(project)
        .map_err(|m| anyhow::anyhow!("--project: {m}"))?;
    registry(storage, zones)
        .await?
        .project(project)
        .with_context(|| {
            format!("create it first: promolens projects create {project} --tz <zone>")
        })
}

/// Zone of projects without a record (only partitions of projects that are known are written).
pub const DEFAULT_TZ: Tz = chrono_tz::Asia::Shanghai;
