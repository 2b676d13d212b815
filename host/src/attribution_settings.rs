//! A project's attribution settings: which parameter names fill each UTM field (aliases), how
//! values are normalised, its channel rules, and the default lookback window of conversion
//! models. Shared by the CLI (`promolens settings …`) and the HTTP API
//! (`/v1/projects/{p}/settings`).
//!
//! Settings are versioned: each version is one record that is never overwritten,
//! `attribution_settings/project=P/<version>.json`, written create-only, so that two changes from
//! the same version cannot both succeed. The highest version is current. Version 0, never stored,
//! is the default every project starts with. New launches are decoded with the current version
//! (ingest holds it in [`Attributors`]); stored launches keep the version they were decoded with
//! until `promolens reattribute` decodes them again. Channel rules and the lookback window apply
//! at query time, to every stored day at once.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use object_store::{PutMode, PutOptions, PutPayload};
use promolens_ingest::{Attributors, Storage};
use promolens_schemas::attribution::{CODE_REF_KEY, UTM_KEYS};
use promolens_schemas::layout::project_dir;
use promolens_schemas::{Attributor, Normalizer};
use serde::{Deserialize, Serialize};

use crate::access::registry::OPERATOR;
use crate::access::{AuditLog, Outcome};
use crate::error::{Error, Result};
use crate::records::storage_error;

/// Folder of every version of every project's settings.
pub const ATTRIBUTION_SETTINGS: &str = "attribution_settings";

/// Most names one field may be read from, values one map or rule may list, rules a project has.
const MAX_LIST: usize = 100;
/// Longest parameter name, value or channel name, in bytes.
const MAX_TEXT_BYTES: usize = 256;

/// A project's attribution settings (DESIGN.md "Attribution settings").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttributionSettings {
    /// Days before a conversion in which a launch is credited by the multi-touch models, when an
    /// analysis does not say (1 to 365, default 30).
    #[serde(default = "default_lookback_days")]
    pub lookback_days: u32,
    /// Per UTM field (`utm_source` … `utm_term`), the query parameters it is read from, preferred
    /// first, e.g. `{"utm_source": ["utm_source", "src", "_um_channel", "gio_utm_source"]}`. A
    /// field not listed is read from its own key only. Applies to new launches, and to stored
    /// ones after `promolens reattribute`.
    #[serde(default)]
    pub aliases: BTreeMap<String, Vec<String>>,
    /// Per UTM field, how its values are normalised. Code ids (`c`) are never normalised.
    #[serde(default)]
    pub normalize: BTreeMap<String, Normalization>,
    /// Rules tried in order before the default channels; the first that matches names the
    /// launch's channel. Apply to every stored launch at once.
    #[serde(default)]
    pub channel_rules: Vec<ChannelRule>,
}

fn default_lookback_days() -> u32 {
    crate::acquisition::DEFAULT_LOOKBACK_DAYS
}

impl Default for AttributionSettings {
    fn default() -> Self {
        AttributionSettings {
            lookback_days: default_lookback_days(),
            aliases: BTreeMap::new(),
            normalize: BTreeMap::new(),
            channel_rules: Vec::new(),
        }
    }
}

/// How one field's values are normalised: trimmed, then lower-cased, then merged by `values`
/// (whose keys are compared trimmed and lower-cased the same way).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Normalization {
    #[serde(default)]
    pub trim: bool,
    #[serde(default)]
    pub lowercase: bool,
    /// Spellings merged into one value, e.g. `{"WeChat": "wechat", "微信": "wechat"}`.
    #[serde(default)]
    pub values: BTreeMap<String, String>,
}

/// A channel given by a project: launches that meet every condition given (each one of its
/// values) are in `channel`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelRule {
    /// 1 to 64 of `a-z`, `0-9`, `_`.
    pub channel: String,
    /// Scene values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scene: Vec<i32>,
    /// `utm_medium` values (compared case-insensitively).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub utm_medium: Vec<String>,
    /// `utm_source` values (compared case-insensitively).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub utm_source: Vec<String>,
}

impl AttributionSettings {
    /// Refuses settings that would not decode or match as written, naming the part.
    pub fn check(&self) -> Result<()> {
        if !(1..=365).contains(&self.lookback_days) {
            return Err(Error::invalid(
                "lookback_days",
                format!("lookback_days must be 1 to 365, got {}", self.lookback_days),
            ));
        }
        let mut reader_of: HashMap<&str, &str> = HashMap::new();
        for (field, names) in &self.aliases {
            let at = format!("aliases.{field}");
            check_field(&at, field, "aliases")?;
            check_count(&at, names.len(), "aliases")?;
            for (i, name) in names.iter().enumerate() {
                let at = format!("{at}[{i}]");
                check_text(&at, name, "aliases")?;
                if [CODE_REF_KEY, "scene", "q"].contains(&name.as_str()) {
                    return Err(Error::invalid(
                        "aliases",
                        format!(
                            "{at}: `{name}` is read by the decoder itself (a code id, a B code's \
                             scene, a link QR code's link), not as a UTM field"
                        ),
                    ));
                }
                if let Some(other) = reader_of.insert(name, field)
                    && other != field
                {
                    return Err(Error::invalid(
                        "aliases",
                        format!("{at}: `{name}` already fills {other}; a name fills one field"),
                    ));
                } else if other_position(names, i) {
                    return Err(Error::invalid(
                        "aliases",
                        format!("{at}: `{name}` is listed twice"),
                    ));
                }
            }
        }
        for (field, normalization) in &self.normalize {
            let at = format!("normalize.{field}");
            if field == CODE_REF_KEY || field == "code_id" {
                return Err(Error::invalid(
                    "normalize",
                    format!("{at}: code ids are never normalised (their case is part of the id)"),
                ));
            }
            check_field(&at, field, "normalize")?;
            check_count(&at, normalization.values.len(), "normalize")?;
            for (from, to) in &normalization.values {
                check_text(&format!("{at}.values[{from:?}]"), from, "normalize")?;
                check_text(&format!("{at}.values[{from:?}]"), to, "normalize")?;
                if to.trim().is_empty() {
                    return Err(Error::invalid(
                        "normalize",
                        format!("{at}.values[{from:?}]: merge into a value, not an empty one"),
                    ));
                }
            }
        }
        check_count("channel_rules", self.channel_rules.len(), "channel_rules")?;
        for (i, rule) in self.channel_rules.iter().enumerate() {
            let at = format!("channel_rules[{i}]");
            rule.check(&at)?;
        }
        Ok(())
    }

    /// The attributor of these settings as `version`.
    pub fn attributor(&self, version: u32) -> Attributor {
        let aliases = UTM_KEYS.map(|key| {
            self.aliases
                .get(key)
                .cloned()
                .unwrap_or_else(|| vec![key.to_string()])
        });
        let normalizers = UTM_KEYS.map(|key| {
            self.normalize.get(key).map(|n| {
                Normalizer::new(
                    n.trim,
                    n.lowercase,
                    n.values.iter().map(|(a, b)| (a.clone(), b.clone())),
                )
            })
        });
        Attributor::new(version, aliases, normalizers)
    }
}

fn other_position(names: &[String], i: usize) -> bool {
    names[..i].contains(&names[i])
}

fn check_field(at: &str, field: &str, part: &'static str) -> Result<()> {
    if UTM_KEYS.contains(&field) {
        return Ok(());
    }
    Err(Error::invalid(
        part,
        format!(
            "{at}: `{field}` is not a UTM field; one of {}",
            UTM_KEYS.join(", ")
        ),
    ))
}

fn check_count(at: &str, count: usize, part: &'static str) -> Result<()> {
    if count > MAX_LIST {
        return Err(Error::invalid(
            part,
            format!(
                "{at}: at most {MAX_LIST} entries, got {count} ({} over)",
                count - MAX_LIST
            ),
        ));
    }
    Ok(())
}

fn check_text(at: &str, text: &str, part: &'static str) -> Result<()> {
    if text.is_empty() || text.len() > MAX_TEXT_BYTES || text.chars().any(char::is_control) {
        return Err(Error::invalid(
            part,
            format!(
                "{at}: 1 to {MAX_TEXT_BYTES} bytes without control characters, got {} bytes",
                text.len()
            ),
        ));
    }
    Ok(())
}

impl ChannelRule {
    fn check(&self, at: &str) -> Result<()> {
        let name_ok = !self.channel.is_empty()
            && self.channel.len() <= 64
            && self
                .channel
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !name_ok {
            return Err(Error::invalid(
                "channel_rules",
                format!(
                    "{at}.channel: `{}` is not 1 to 64 of a-z, 0-9, _",
                    self.channel
                ),
            ));
        }
        if self.scene.is_empty() && self.utm_medium.is_empty() && self.utm_source.is_empty() {
            return Err(Error::invalid(
                "channel_rules",
                format!("{at}: give at least one of scene, utm_medium, utm_source"),
            ));
        }
        check_count(&format!("{at}.scene"), self.scene.len(), "channel_rules")?;
        for (part, values) in [
            ("utm_medium", &self.utm_medium),
            ("utm_source", &self.utm_source),
        ] {
            check_count(&format!("{at}.{part}"), values.len(), "channel_rules")?;
            for (i, value) in values.iter().enumerate() {
                check_text(&format!("{at}.{part}[{i}]"), value, "channel_rules")?;
            }
        }
        Ok(())
    }
}

/// One version of a project's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SettingsVersion {
    /// 0 for the defaults a project starts with, one more at each change.
    pub version: u32,
    pub settings: AttributionSettings,
    /// When this version was made (`None` for version 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<DateTime<Utc>>,
    /// The key that made it (`None` for version 0 and for the CLI, the operator's door).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_by: Option<String>,
}

impl Default for SettingsVersion {
    /// Version 0: the defaults every project starts with.
    fn default() -> SettingsVersion {
        SettingsVersion {
            version: 0,
            settings: AttributionSettings::default(),
            created_at: None,
            updated_by: None,
        }
    }
}

/// The settings of every project: read from the data directory, the current version of each
/// held in memory and in ingest's [`Attributors`].
pub struct SettingsStore {
    storage: Storage,
    audit: AuditLog,
    attributors: Arc<Attributors>,
    current: RwLock<HashMap<String, Arc<SettingsVersion>>>,
}

impl SettingsStore {
    /// A store that keeps `attributors` up to date with each project's current version.
    pub fn new(storage: Storage, attributors: Arc<Attributors>) -> SettingsStore {
        SettingsStore {
            audit: AuditLog::new(storage.clone()),
            storage,
            attributors,
            current: RwLock::default(),
        }
    }

    fn version_path(&self, project: &str, version: u32) -> object_store::path::Path {
        self.storage.path(&format!(
            "{}/{version:08}.json",
            project_dir(ATTRIBUTION_SETTINGS, project)
        ))
    }

    /// The current settings of `project` (as of the last read: [`SettingsStore::reload`], or
    /// the first use in this process).
    pub async fn current(&self, project: &str) -> Result<Arc<SettingsVersion>> {
        if let Some(held) = self.held(project) {
            return Ok(held);
        }
        let latest = self.latest_stored(project).await?;
        Ok(self.hold(project, latest))
    }

    fn held(&self, project: &str) -> Option<Arc<SettingsVersion>> {
        let current = self.current.read().unwrap_or_else(|e| e.into_inner());
        current.get(project).cloned()
    }

    /// Holds `settings` as `project`'s current version unless a newer one is held.
    fn hold(&self, project: &str, settings: SettingsVersion) -> Arc<SettingsVersion> {
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        if let Some(held) = current.get(project)
            && held.version >= settings.version
        {
            return held.clone();
        }
        let settings = Arc::new(settings);
        self.attributors.set(
            project,
            Arc::new(settings.settings.attributor(settings.version)),
        );
        current.insert(project.to_string(), settings.clone());
        settings
    }

    /// The attributor of `project`'s current settings.
    pub async fn attributor(&self, project: &str) -> Result<Arc<Attributor>> {
        self.current(project).await?;
        Ok(self.attributors.current(project))
    }

    /// One version of `project`'s settings.
    pub async fn version(&self, project: &str, version: u32) -> Result<SettingsVersion> {
        if version == 0 {
            return Ok(SettingsVersion::default());
        }
        crate::records::read(&self.storage, &self.version_path(project, version))
            .await?
            .ok_or_else(|| Error::NotFound {
                what: "settings version",
                name: format!("{version} of project {project}"),
            })
    }

    /// Every stored version of `project`'s settings, oldest first (version 0 included).
    pub async fn history(&self, project: &str) -> Result<Vec<SettingsVersion>> {
        let mut versions = vec![SettingsVersion::default()];
        for version in self.stored_versions(project).await? {
            versions.push(self.version(project, version).await?);
        }
        Ok(versions)
    }

    /// Makes `settings` the project's next version; `expected` is the version the caller
    /// changed (a conflict when another change came first).
    pub async fn update(
        &self,
        project: &str,
        expected: u32,
        settings: AttributionSettings,
        by: Option<&str>,
    ) -> Result<SettingsVersion> {
        settings.check()?;
        let latest = self.latest_stored(project).await?;
        if latest.version != expected {
            return Err(conflict(project, latest.version, expected));
        }
        let next = SettingsVersion {
            version: expected + 1,
            settings,
            created_at: Some(Utc::now()),
            updated_by: by.map(str::to_string),
        };
        let bytes = serde_json::to_vec_pretty(&next)
            .map_err(|e| Error::Storage(format!("encoding settings of {project}: {e}")))?;
        let create = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self
            .storage
            .store
            .put_opts(
                &self.version_path(project, next.version),
                PutPayload::from(bytes),
                create,
            )
            .await
        {
            Ok(_) => {}
            Err(object_store::Error::AlreadyExists { .. }) => {
                return Err(conflict(project, next.version, expected));
            }
            Err(e) => return Err(storage_error(e)),
        }
        // Every figure depends on these: the change is in the audit log like a key's.
        self.audit
            .record(
                project,
                by.unwrap_or(OPERATOR),
                "settings.change",
                &format!("version {}", next.version),
                Outcome::Ok,
            )
            .await?;
        self.hold(project, next.clone());
        Ok(next)
    }

    /// Reads every project's current settings again (another process may have changed them).
    pub async fn reload(&self) -> Result<()> {
        let root = self.storage.path(ATTRIBUTION_SETTINGS);
        let metas: Vec<object_store::ObjectMeta> = self
            .storage
            .store
            .list(Some(&root))
            .try_collect()
            .await
            .map_err(storage_error)?;
        let mut latest: HashMap<String, u32> = HashMap::new();
        for meta in &metas {
            if let Some((project, version)) = parse_location(&meta.location) {
                let highest = latest.entry(project).or_default();
                *highest = (*highest).max(version);
            }
        }
        for (project, version) in latest {
            if self
                .held(&project)
                .is_some_and(|held| held.version >= version)
            {
                continue;
            }
            let settings = self.version(&project, version).await?;
            self.hold(&project, settings);
        }
        Ok(())
    }

    /// Reads the settings again every `every` until the process ends.
    pub fn keep_fresh(self: &Arc<Self>, every: std::time::Duration) {
        let store = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(store) = store.upgrade() else {
                    return;
                };
                if let Err(error) = store.reload().await {
                    tracing::warn!(%error, "reading attribution settings again failed");
                }
            }
        });
    }

    async fn stored_versions(&self, project: &str) -> Result<Vec<u32>> {
        let folder = self
            .storage
            .path(&project_dir(ATTRIBUTION_SETTINGS, project));
        let metas: Vec<object_store::ObjectMeta> = self
            .storage
            .store
            .list(Some(&folder))
            .try_collect()
            .await
            .map_err(storage_error)?;
        let mut versions: Vec<u32> = metas
            .iter()
            .filter_map(|m| parse_location(&m.location).map(|(_, v)| v))
            .collect();
        versions.sort_unstable();
        Ok(versions)
    }

    async fn latest_stored(&self, project: &str) -> Result<SettingsVersion> {
        match self.stored_versions(project).await?.last() {
            Some(&version) => self.version(project, version).await,
            None => Ok(SettingsVersion::default()),
        }
    }
}

/// `(project, version)` of `…/attribution_settings/project=P/<version>.json`.
fn parse_location(location: &object_store::path::Path) -> Option<(String, u32)> {
    let parts: Vec<_> = location.parts().collect();
    let [.., project, file] = parts.as_slice() else {
        return None;
    };
    let project = project.as_ref().strip_prefix("project=")?;
    let version = file.as_ref().strip_suffix(".json")?.parse().ok()?;
    Some((project.to_string(), version))
}

fn conflict(project: &str, current: u32, expected: u32) -> Error {
    Error::Conflict(format!(
        "the settings of {project} are at version {current}, not {expected}: they changed since \
         they were read"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(json: &str) -> AttributionSettings {
        serde_json::from_str(json).expect("settings JSON")
    }

    #[test]
    fn each_refusal_names_its_part() {
        let refused = |json: &str, part: &str, words: &str| {
            let error = settings(json).check().expect_err(json);
            let Error::Invalid { field, message } = &error else {
                panic!("{error}")
            };
            assert_eq!(field, &Some(part), "{json}");
            assert!(message.contains(words), "{json}: {message}");
        };
        refused(r#"{"lookback_days": 0}"#, "lookback_days", "got 0");
        refused(
            r#"{"aliases": {"source": ["src"]}}"#,
            "aliases",
            "`source` is not a UTM field",
        );
        refused(
            r#"{"aliases": {"utm_source": ["src", "c"]}}"#,
            "aliases",
            "aliases.utm_source[1]",
        );
        refused(
            r#"{"aliases": {"utm_source": ["src"], "utm_medium": ["src"]}}"#,
            "aliases",
            "already fills utm_medium",
        );
        refused(
            r#"{"aliases": {"utm_source": ["a", "a"]}}"#,
            "aliases",
            "listed twice",
        );
        refused(
            r#"{"normalize": {"c": {"lowercase": true}}}"#,
            "normalize",
            "never normalised",
        );
        refused(
            r#"{"normalize": {"utm_source": {"values": {"x": " "}}}}"#,
            "normalize",
            "not an empty one",
        );
        refused(
            r#"{"channel_rules": [{"channel": "Poster", "scene": [1]}]}"#,
            "channel_rules",
            "channel_rules[0].channel",
        );
        refused(
            r#"{"channel_rules": [{"channel": "poster"}]}"#,
            "channel_rules",
            "at least one",
        );
        let many: Vec<String> = (0..101).map(|i| format!("n{i}")).collect();
        let json = serde_json::json!({"aliases": {"utm_term": many}}).to_string();
        refused(&json, "aliases", "got 101 (1 over)");
        assert!(serde_json::from_str::<AttributionSettings>(r#"{"alias": {}}"#).is_err());
        settings(
            r#"{"lookback_days": 14, "aliases": {"utm_source": ["utm_source", "src"]},
                "normalize": {"utm_source": {"trim": true, "lowercase": true, "values": {"微信": "wechat"}}},
                "channel_rules": [{"channel": "partner_poster", "scene": [1047], "utm_source": ["partner"]}]}"#,
        )
        .check()
        .expect("valid settings");
    }

    #[test]
    fn versions_are_found_by_location() {
        let path =
            object_store::path::Path::from("data/attribution_settings/project=p/00000012.json");
        assert_eq!(parse_location(&path), Some(("p".to_string(), 12)));
        let other = object_store::path::Path::from("attribution_settings/project=p/notes.txt");
        assert_eq!(parse_location(&other), None);
    }
}
