//! Saved analyses: a name and an [`AnalysisSpec`], per project, versioned, shared by the CLI
//! (`promolens analyses …`) and the HTTP API (`/v1/projects/{p}/analyses`).
//!
//! Each analysis is one JSON record, `saved_analyses/project=P/<id>.json` (the table
//! `saved_analyses`), and each of its versions a record that is never overwritten,
//! `saved_analysis_versions/project=P/<id>/<version>.json`. A change writes its version first
//! with create-only semantics, so two writers of one version cannot both succeed: the second
//! gets a conflict, in one process or several. A spec is stored as it was saved; a range such as
//! `past_7_days` is evaluated against the day it is run.

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use promolens_ingest::Storage;
use promolens_schemas::layout::project_dir;
use serde::{Deserialize, Serialize};

use crate::analysis::{AnalysisSpec, Metric, Preset, Range};
use crate::error::{Error, Result};
use crate::records::storage_error;

/// Folder of the current records: the table `saved_analyses`.
pub const SAVED_ANALYSES: &str = "saved_analyses";
/// Folder of every version of every analysis.
pub const SAVED_ANALYSIS_VERSIONS: &str = "saved_analysis_versions";

/// The analysis behind the figures of the code list (each code's acquisition).
pub const CODES_LIST: &str = "codes-past-7-days";
/// The project's headline: its new users, users and launches, in total.
pub const HEADLINE: &str = "acquisition-past-7-days";

/// New users, users and launches over the past 7 days, split by `dimensions`.
fn past_7_days(dimensions: Vec<String>) -> AnalysisSpec {
    AnalysisSpec {
        metrics: vec![Metric::NewUsers, Metric::Users, Metric::Launches],
        core_events: Vec::new(),
        group: None,
        attribution: None,
        dimensions,
        filters: Vec::new(),
        range: Range {
            preset: Some(Preset::Past7Days),
            ..Range::default()
        },
        tz: None,
        compare: false,
    }
}

/// The spec of [`CODES_LIST`] as a project starts with it (and as the list runs for a project
/// that has none).
pub fn codes_list_spec() -> AnalysisSpec {
    past_7_days(vec!["code_id".to_string()])
}

/// The analyses a new project starts with: (id, name, spec).
pub fn defaults() -> [(&'static str, &'static str, AnalysisSpec); 2] {
    [
        (CODES_LIST, "Codes: past 7 days", codes_list_spec()),
        (
            HEADLINE,
            "Acquisition: past 7 days",
            past_7_days(Vec::new()),
        ),
    ]
}

/// A saved analysis, as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SavedAnalysis {
    /// 1 to 64 of `a-z`, `0-9`, `-`.
    pub id: String,
    pub name: String,
    pub spec: AnalysisSpec,
    /// 1 for a new analysis, one more at each change.
    pub version: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The key that made this version (`None` for the analyses a project starts with, and for
    /// the CLI, the operator's door).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_by: Option<String>,
}

/// Which saved analysis an answer comes from.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SavedRef {
    pub id: String,
    pub name: String,
    pub version: u64,
}

impl SavedAnalysis {
    pub fn reference(&self) -> SavedRef {
        SavedRef {
            id: self.id.clone(),
            name: self.name.clone(),
            version: self.version,
        }
    }
}

/// The stored form: the spec as JSON text, so that the table reads it as one column.
#[derive(Serialize, Deserialize)]
struct Record {
    id: String,
    name: String,
    spec: String,
    version: u64,
    created_at_ms: i64,
    updated_at_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    updated_by: Option<String>,
}

impl Record {
    fn of(analysis: &SavedAnalysis) -> Result<Record> {
        Ok(Record {
            id: analysis.id.clone(),
            name: analysis.name.clone(),
            spec: serde_json::to_string(&analysis.spec)
                .map_err(|e| Error::Storage(format!("encoding a spec: {e}")))?,
            version: analysis.version,
            created_at_ms: analysis.created_at.timestamp_millis(),
            updated_at_ms: analysis.updated_at.timestamp_millis(),
            updated_by: analysis.updated_by.clone(),
        })
    }

    fn into_analysis(self) -> Result<SavedAnalysis> {
        let time = |ms: i64| DateTime::from_timestamp_millis(ms).unwrap_or_default();
        Ok(SavedAnalysis {
            spec: serde_json::from_str(&self.spec).map_err(|e| {
                Error::Storage(format!("the stored spec of analysis {}: {e}", self.id))
            })?,
            id: self.id,
            name: self.name,
            version: self.version,
            created_at: time(self.created_at_ms),
            updated_at: time(self.updated_at_ms),
            updated_by: self.updated_by,
        })
    }
}

/// A change to a saved analysis: a new name, a new spec, or both.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Change {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub spec: Option<AnalysisSpec>,
    /// The version the change was made from: refused (409) when the analysis has changed since.
    #[serde(default)]
    pub version: Option<u64>,
}

/// The saved analyses of a data directory.
#[derive(Clone)]
pub struct SavedAnalyses {
    storage: Storage,
}

fn check_name(name: &str) -> Result<String> {
    let name = name.trim();
    let chars = name.chars().count();
    if chars == 0 || chars > 100 {
        return Err(Error::invalid(
            "name",
            format!("a name is 1 to 100 characters, got {chars}"),
        ));
    }
    Ok(name.to_string())
}

fn check_id(id: &str) -> Result<()> {
    if id.is_empty()
        || id.len() > 64
        || !id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(Error::NotFound {
            what: "analysis",
            name: id.chars().take(64).collect(),
        });
    }
    Ok(())
}

impl SavedAnalyses {
    pub fn new(storage: Storage) -> SavedAnalyses {
        SavedAnalyses { storage }
    }

    fn current_path(&self, project: &str, id: &str) -> object_store::path::Path {
        self.storage.path(&format!(
            "{}/{id}.json",
            project_dir(SAVED_ANALYSES, project)
        ))
    }

    fn version_path(&self, project: &str, id: &str, version: u64) -> object_store::path::Path {
        self.storage.path(&format!(
            "{}/{id}/{version}.json",
            project_dir(SAVED_ANALYSIS_VERSIONS, project)
        ))
    }

    /// The project's analyses, the most recently changed first.
    pub async fn list(&self, project: &str) -> Result<Vec<SavedAnalysis>> {
        let folder = self.storage.path(&project_dir(SAVED_ANALYSES, project));
        let metas: Vec<object_store::ObjectMeta> = self
            .storage
            .store
            .list(Some(&folder))
            .try_collect()
            .await
            .map_err(storage_error)?;
        let mut analyses = Vec::with_capacity(metas.len());
        for meta in metas {
            if let Some(record) =
                crate::records::read::<Record>(&self.storage, &meta.location).await?
            {
                analyses.push(record.into_analysis()?);
            }
        }
        analyses.sort_by(|a, b| b.updated_at.cmp(&a.updated_at).then(a.id.cmp(&b.id)));
        Ok(analyses)
    }

    /// One analysis: its current version, or `version`.
    pub async fn get(
        &self,
        project: &str,
        id: &str,
        version: Option<u64>,
    ) -> Result<SavedAnalysis> {
        check_id(id)?;
        let path = match version {
            Some(v) => self.version_path(project, id, v),
            None => self.current_path(project, id),
        };
        let not_found = || Error::NotFound {
            what: "analysis",
            name: match version {
                Some(v) => format!("{id} version {v}"),
                None => id.to_string(),
            },
        };
        crate::records::read::<Record>(&self.storage, &path)
            .await?
            .ok_or_else(not_found)?
            .into_analysis()
    }

    /// Saves a new analysis (with `id`, or a fresh one).
    pub async fn create(
        &self,
        project: &str,
        id: Option<&str>,
        name: &str,
        spec: AnalysisSpec,
        by: Option<&str>,
    ) -> Result<SavedAnalysis> {
        let id = match id {
            Some(id) => {
                check_id(id).map_err(|_| {
                    Error::invalid("id", format!("`{id}`: an id is 1 to 64 of a-z, 0-9, -"))
                })?;
                id.to_string()
            }
            None => uuid::Uuid::new_v4().simple().to_string()[..12].to_string(),
        };
        spec.check(project)?;
        let now = Utc::now();
        let analysis = SavedAnalysis {
            id,
            name: check_name(name)?,
            spec,
            version: 1,
            created_at: now,
            updated_at: now,
            updated_by: by.map(str::to_string),
        };
        self.store(project, &analysis).await?;
        Ok(analysis)
    }

    /// Changes an analysis's name or spec: a new version.
    pub async fn update(
        &self,
        project: &str,
        id: &str,
        change: Change,
        by: Option<&str>,
    ) -> Result<SavedAnalysis> {
        let current = self.get(project, id, None).await?;
        if let Some(expected) = change.version
            && expected != current.version
        {
            return Err(Error::Conflict(format!(
                "analysis {id} is at version {}, not {expected}: it changed since it was read",
                current.version
            )));
        }
        if change.name.is_none() && change.spec.is_none() {
            return Err(Error::invalid("name", "change the name, the spec or both"));
        }
        if let Some(spec) = &change.spec {
            spec.check(project)?;
        }
        let next = SavedAnalysis {
            name: match &change.name {
                Some(name) => check_name(name)?,
                None => current.name.clone(),
            },
            spec: change.spec.unwrap_or(current.spec),
            version: current.version + 1,
            updated_at: Utc::now(),
            updated_by: by.map(str::to_string),
            ..current
        };
        self.store(project, &next).await?;
        Ok(next)
    }

    /// Removes an analysis (its versions stay, readable by version).
    pub async fn delete(&self, project: &str, id: &str) -> Result<SavedAnalysis> {
        let current = self.get(project, id, None).await?;
        self.storage
            .store
            .delete(&self.current_path(project, id))
            .await
            .map_err(storage_error)?;
        Ok(current)
    }

    /// The analyses a new project starts with ([`defaults`]), unless it has them.
    pub async fn create_defaults(&self, project: &str) -> Result<()> {
        for (id, name, spec) in defaults() {
            match self.create(project, Some(id), name, spec, None).await {
                Ok(_) | Err(Error::Conflict(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Writes a version (create-only: a version is written once), then the current record.
    async fn store(&self, project: &str, analysis: &SavedAnalysis) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(&Record::of(analysis)?)
            .map_err(|e| Error::Storage(format!("encoding analysis {}: {e}", analysis.id)))?;
        let create = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        let version = self.version_path(project, &analysis.id, analysis.version);
        match self
            .storage
            .store
            .put_opts(&version, PutPayload::from(bytes.clone()), create)
            .await
        {
            Ok(_) => {}
            Err(object_store::Error::AlreadyExists { .. }) => {
                return Err(Error::Conflict(if analysis.version == 1 {
                    format!("analysis {} exists already", analysis.id)
                } else {
                    format!(
                        "analysis {} changed meanwhile: version {} exists already",
                        analysis.id, analysis.version
                    )
                }));
            }
            Err(e) => return Err(storage_error(e)),
        }
        self.storage
            .store
            .put(
                &self.current_path(project, &analysis.id),
                PutPayload::from(bytes),
            )
            .await
            .map_err(storage_error)?;
        Ok(())
    }
}
