//! Projects, keys and invitations, kept as small JSON files under `access/` in the data
//! directory (so that they live wherever the data lives, local or S3) and held in memory by the
//! server, which reads them again every few seconds to see what the operator's CLI changed.
//!
//! - `access/projects/<name>.json`: name, time zone, creation time;
//! - `access/keys/<id>.json`: project, role, label, digest, created, expiry, revocation;
//! - `access/invitations/<id>.json`: project, role, digest, expiry, who invited, when used.

use std::collections::HashMap;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use futures::TryStreamExt;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use promolens_ingest::{ProjectZones, Storage};
use serde::{Deserialize, Serialize};

use super::roles::Role;
use super::tokens::{self, TokenKind};
use crate::error::{Error, Result};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Project {
    pub name: String,
    /// IANA name of the zone of the project's calendar days.
    pub tz: String,
    pub created_at: DateTime<Utc>,
}

impl Project {
    pub fn zone(&self) -> Tz {
        self.tz.parse().unwrap_or(chrono_tz::UTC)
    }
}

/// A key as stored and listed: never the key itself.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyRecord {
    pub id: String,
    pub project: String,
    pub role: Role,
    pub label: Option<String>,
    /// Stored, never answered.
    #[serde(skip_serializing_if = "String::is_empty", default)]
    #[schema(ignore)]
    pub digest: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// Filled in lists from `access/last_used/` (see [`Registry::keys`]), never stored here.
    #[serde(default)]
    pub last_used_at: Option<DateTime<Utc>>,
}

impl KeyRecord {
    /// The record as answers show it: without the digest.
    pub fn public(&self) -> KeyRecord {
        KeyRecord {
            digest: String::new(),
            ..self.clone()
        }
    }
}

/// An invitation to the project (never its token).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Invitation {
    pub id: String,
    pub project: String,
    pub role: Role,
    /// Stored, never answered.
    #[serde(skip_serializing_if = "String::is_empty", default)]
    #[schema(ignore)]
    pub digest: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// The key that invited (`operator` from the CLI).
    pub invited_by: String,
    pub used_at: Option<DateTime<Utc>>,
    /// The key the invitation became.
    pub key_id: Option<String>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Who made a change: a key id, or the operator at the data directory.
pub const OPERATOR: &str = "operator";

/// How often the server reads `access/` again on its own.
pub const RELOAD_EVERY: Duration = Duration::from_secs(5);
/// A token the server does not know makes it read `access/keys/` again, at most this often
/// (a flood of made-up keys costs one listing a second, not one each).
const RELOAD_ON_MISS_AFTER: Duration = Duration::from_secs(1);
/// A key's last use is written back at most this often (reads keep the exact time).
const LAST_USED_WRITE_EVERY: chrono::TimeDelta = chrono::TimeDelta::hours(1);

const PROJECTS: &str = "access/projects";
const KEYS: &str = "access/keys";
const INVITATIONS: &str = "access/invitations";
const LAST_USED: &str = "access/last_used";

#[derive(Default)]
struct Loaded {
    projects: HashMap<String, Project>,
    keys: HashMap<String, KeyRecord>,
}

pub struct Registry {
    storage: Storage,
    zones: ProjectZones,
    loaded: RwLock<Loaded>,
    /// Last uses seen by this process, newer than the stored ones.
    last_used: Mutex<HashMap<String, DateTime<Utc>>>,
    last_reload: Mutex<Instant>,
    /// Invitations are used once: accepting is serialized in this process.
    accepting: tokio::sync::Mutex<()>,
    /// Files read by a reload, by location: a file whose listing (size, time, e-tag) has not
    /// changed is not read again at the next reload, every 5 s.
    fetched: Mutex<HashMap<String, (object_store::ObjectMeta, bytes::Bytes)>>,
}

/// Why a token was refused (the answer says so; the log names the key id, never the key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Missing,
    Malformed,
    Unknown,
    Revoked,
    Expired,
}

impl Refusal {
    pub fn message(self) -> &'static str {
        match self {
            Refusal::Missing => "this route needs an API key: `Authorization: Bearer plk_…`",
            Refusal::Malformed => "the API key is not of the form plk_<16 hex>_<64 hex>",
            Refusal::Unknown => "unknown API key",
            Refusal::Revoked => "this API key has been revoked",
            Refusal::Expired => "this API key has expired",
        }
    }
}

impl Registry {
    /// Reads `access/` and sets each project's zone in `zones`.
    pub async fn open(storage: Storage, zones: ProjectZones) -> Result<Registry> {
        let registry = Registry {
            storage,
            zones,
            loaded: RwLock::default(),
            last_used: Mutex::default(),
            last_reload: Mutex::new(Instant::now()),
            accepting: tokio::sync::Mutex::new(()),
            fetched: Mutex::default(),
        };
        registry.reload().await?;
        Ok(registry)
    }

    pub fn zones(&self) -> &ProjectZones {
        &self.zones
    }

    /// Reads every project and key again.
    pub async fn reload(&self) -> Result<()> {
        let projects: Vec<Project> = self.read_all(PROJECTS).await?;
        let keys: Vec<KeyRecord> = self.read_all(KEYS).await?;
        self.read_last_uses().await?;
        for project in &projects {
            self.zones.set(&project.name, project.zone());
        }
        let loaded = Loaded {
            projects: projects.into_iter().map(|p| (p.name.clone(), p)).collect(),
            keys: keys.into_iter().map(|k| (k.id.clone(), k)).collect(),
        };
        *self.loaded.write().unwrap_or_else(|e| e.into_inner()) = loaded;
        *self.last_reload.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        Ok(())
    }

    /// Reads `access/` again every [`RELOAD_EVERY`] until the process ends.
    pub fn keep_fresh(self: &std::sync::Arc<Self>) {
        let registry = std::sync::Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(RELOAD_EVERY).await;
                let Some(registry) = registry.upgrade() else {
                    return;
                };
                if let Err(error) = registry.reload().await {
                    tracing::warn!(%error, "reading projects and keys again failed");
                }
            }
        });
    }

    /// The files under a folder of the data directory.
    async fn list(&self, folder: &str) -> Result<Vec<object_store::ObjectMeta>> {
        let prefix = self.storage.path(folder);
        self.storage
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(storage_error)
    }

    /// A file's bytes, `None` when it is gone.
    async fn get(&self, path: &object_store::path::Path) -> Result<Option<bytes::Bytes>> {
        match self.storage.store.get(path).await {
            Ok(r) => Ok(Some(r.bytes().await.map_err(storage_error)?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(storage_error(e)),
        }
    }

    async fn read_all<T: serde::de::DeserializeOwned>(&self, folder: &str) -> Result<Vec<T>> {
        let files = self.list(folder).await?;
        let mut records = Vec::with_capacity(files.len());
        for file in files {
            if !file.location.as_ref().ends_with(".json") {
                continue;
            }
            let Some(bytes) = self.fetch(&file).await? else {
                continue;
            };
            records.push(serde_json::from_slice(&bytes).map_err(|e| {
                Error::Storage(format!("{} is not a valid record: {e}", file.location))
            })?);
        }
        Ok(records)
    }

    /// A listed file's bytes: from the last reload when its listing is unchanged.
    async fn fetch(&self, file: &object_store::ObjectMeta) -> Result<Option<bytes::Bytes>> {
        let location = file.location.to_string();
        {
            let fetched = self.fetched.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((meta, bytes)) = fetched.get(&location)
                && (meta.size, meta.last_modified, &meta.e_tag)
                    == (file.size, file.last_modified, &file.e_tag)
            {
                return Ok(Some(bytes.clone()));
            }
        }
        let Some(bytes) = self.get(&file.location).await? else {
            return Ok(None);
        };
        let mut fetched = self.fetched.lock().unwrap_or_else(|e| e.into_inner());
        fetched.insert(location, (file.clone(), bytes.clone()));
        Ok(Some(bytes))
    }

    async fn read<T: serde::de::DeserializeOwned>(
        &self,
        path: &object_store::path::Path,
    ) -> Result<Option<T>> {
        let Some(bytes) = self.get(path).await? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::Storage(format!("{path} is not a valid record: {e}")))
    }

    async fn write<T: Serialize>(
        &self,
        folder: &str,
        id: &str,
        record: &T,
        create: bool,
    ) -> Result<()> {
        let path = self.storage.path(&format!("{folder}/{id}.json"));
        let bytes = serde_json::to_vec_pretty(record).map_err(|e| Error::Storage(e.to_string()))?;
        let mode = if create {
            PutMode::Create
        } else {
            PutMode::Overwrite
        };
        let options = PutOptions {
            mode,
            ..Default::default()
        };
        match self
            .storage
            .store
            .put_opts(&path, PutPayload::from(bytes), options)
            .await
        {
            Ok(_) => Ok(()),
            Err(object_store::Error::AlreadyExists { .. }) => {
                Err(Error::Conflict(format!("{folder}/{id} already exists")))
            }
            Err(e) => Err(storage_error(e)),
        }
    }

    // Projects.

    pub async fn create_project(&self, name: &str, tz: Tz) -> Result<Project> {
        promolens_schemas::event::validate_project_name(name)
            .map_err(|m| Error::invalid("project", m))?;
        let project = Project {
            name: name.to_string(),
            tz: tz.name().to_string(),
            created_at: Utc::now(),
        };
        self.write(PROJECTS, name, &project, true)
            .await
            .map_err(|e| match e {
                Error::Conflict(_) => Error::Conflict(format!("project {name} already exists")),
                other => other,
            })?;
        self.remember_project(project.clone());
        Ok(project)
    }

    /// Changes a project's time zone: days of events partitioned from now on.
    pub async fn set_project_tz(&self, name: &str, tz: Tz) -> Result<Project> {
        let mut project = self.project(name)?;
        project.tz = tz.name().to_string();
        self.write(PROJECTS, name, &project, false).await?;
        self.remember_project(project.clone());
        Ok(project)
    }

    fn remember_project(&self, project: Project) {
        self.zones.set(&project.name, project.zone());
        let mut loaded = self.loaded.write().unwrap_or_else(|e| e.into_inner());
        loaded.projects.insert(project.name.clone(), project);
    }

    /// The project, or 404.
    pub fn project(&self, name: &str) -> Result<Project> {
        let loaded = self.loaded.read().unwrap_or_else(|e| e.into_inner());
        loaded
            .projects
            .get(name)
            .cloned()
            .ok_or_else(|| Error::NotFound {
                what: "project",
                name: name.to_string(),
            })
    }

    pub fn projects(&self) -> Vec<Project> {
        let loaded = self.loaded.read().unwrap_or_else(|e| e.into_inner());
        let mut projects: Vec<Project> = loaded.projects.values().cloned().collect();
        projects.sort_by(|a, b| a.name.cmp(&b.name));
        projects
    }

    // Keys.

    /// A new key; the token is returned once and never stored.
    pub async fn create_key(
        &self,
        project: &str,
        role: Role,
        label: Option<String>,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<(KeyRecord, String)> {
        self.project(project)?;
        check_label(label.as_deref())?;
        let made = tokens::generate(TokenKind::Key);
        let record = KeyRecord {
            id: made.id,
            project: project.to_string(),
            role,
            label,
            digest: made.digest,
            created_at: Utc::now(),
            expires_at,
            revoked_at: None,
            last_used_at: None,
        };
        self.write(KEYS, &record.id, &record, true).await?;
        let mut loaded = self.loaded.write().unwrap_or_else(|e| e.into_inner());
        loaded.keys.insert(record.id.clone(), record.clone());
        Ok((record.public(), made.token))
    }

    /// The project's keys, oldest first, revoked ones included.
    pub fn keys(&self, project: &str) -> Vec<KeyRecord> {
        let last_used = self.last_used.lock().unwrap_or_else(|e| e.into_inner());
        let loaded = self.loaded.read().unwrap_or_else(|e| e.into_inner());
        let mut keys: Vec<KeyRecord> = loaded
            .keys
            .values()
            .filter(|k| k.project == project)
            .map(|k| KeyRecord {
                last_used_at: last_used.get(&k.id).copied(),
                ..k.public()
            })
            .collect();
        keys.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        keys
    }

    /// Revokes a key of `project` at once (this process refuses it from now on; other servers
    /// on the same data within [`RELOAD_EVERY`]).
    pub async fn revoke_key(&self, project: &str, id: &str) -> Result<KeyRecord> {
        let not_found = || Error::NotFound {
            what: "key",
            name: id.to_string(),
        };
        let mut record = {
            let loaded = self.loaded.read().unwrap_or_else(|e| e.into_inner());
            loaded.keys.get(id).cloned().ok_or_else(not_found)?
        };
        if record.project != project {
            return Err(not_found());
        }
        if record.revoked_at.is_none() {
            record.revoked_at = Some(Utc::now());
            self.write(KEYS, id, &record, false).await?;
            let mut loaded = self.loaded.write().unwrap_or_else(|e| e.into_inner());
            loaded.keys.insert(id.to_string(), record.clone());
        }
        Ok(record.public())
    }

    /// The key a bearer token is, if it is valid now.
    pub async fn authenticate(&self, token: &str) -> Result<KeyRecord, Refusal> {
        let id = tokens::id_of(TokenKind::Key, token).ok_or(Refusal::Malformed)?;
        let mut found = self.key(id);
        if found.is_none() && self.may_reload_on_miss() {
            if let Err(error) = self.reload().await {
                tracing::warn!(%error, "reading keys again failed");
            }
            found = self.key(id);
        }
        let mut record = found.ok_or(Refusal::Unknown)?;
        if !tokens::matches(token, &record.digest) {
            return Err(Refusal::Unknown);
        }
        let now = Utc::now();
        if record.revoked_at.is_some() {
            return Err(Refusal::Revoked);
        }
        if record.expires_at.is_some_and(|at| at <= now) {
            return Err(Refusal::Expired);
        }
        self.note_use(&record, now);
        record.digest.clear();
        Ok(record)
    }

    fn key(&self, id: &str) -> Option<KeyRecord> {
        let loaded = self.loaded.read().unwrap_or_else(|e| e.into_inner());
        loaded.keys.get(id).cloned()
    }

    fn may_reload_on_miss(&self) -> bool {
        let last = self.last_reload.lock().unwrap_or_else(|e| e.into_inner());
        last.elapsed() >= RELOAD_ON_MISS_AFTER
    }

    /// Remembers the use; writes it down when the one written is over an hour old. The time
    /// goes to a file of its own, `access/last_used/<id>`, never into the key's record, so that
    /// it cannot overwrite a revocation made meanwhile (by this process or the operator's CLI).
    fn note_use(&self, record: &KeyRecord, now: DateTime<Utc>) {
        let previous = {
            let mut last_used = self.last_used.lock().unwrap_or_else(|e| e.into_inner());
            last_used.insert(record.id.clone(), now)
        };
        if previous.is_some_and(|at| now - at < LAST_USED_WRITE_EVERY) {
            return;
        }
        let path = self.storage.path(&format!("{LAST_USED}/{}", record.id));
        let store = self.storage.store.clone();
        let id = record.id.clone();
        tokio::spawn(async move {
            let text = now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            if let Err(error) = store.put(&path, PutPayload::from(text.into_bytes())).await {
                tracing::warn!(%error, key_id = %id, "recording a key's last use failed");
            }
        });
    }

    /// The last uses written down (by any process), into this process's memory.
    async fn read_last_uses(&self) -> Result<()> {
        for file in self.list(LAST_USED).await? {
            let Some(id) = file.location.filename().map(str::to_string) else {
                continue;
            };
            let Some(bytes) = self.fetch(&file).await? else {
                continue;
            };
            let Some(at) = std::str::from_utf8(&bytes)
                .ok()
                .and_then(|t| DateTime::parse_from_rfc3339(t.trim()).ok())
            else {
                continue;
            };
            let at = at.with_timezone(&Utc);
            let mut last_used = self.last_used.lock().unwrap_or_else(|e| e.into_inner());
            let entry = last_used.entry(id).or_insert(at);
            *entry = (*entry).max(at);
        }
        Ok(())
    }

    // Invitations.

    /// A one-time invitation to a role of `project`; the token is returned once.
    pub async fn invite(
        &self,
        project: &str,
        role: Role,
        expires_at: DateTime<Utc>,
        invited_by: &str,
    ) -> Result<(Invitation, String)> {
        self.project(project)?;
        let made = tokens::generate(TokenKind::Invitation);
        let invitation = Invitation {
            id: made.id,
            project: project.to_string(),
            role,
            digest: made.digest,
            created_at: Utc::now(),
            expires_at,
            invited_by: invited_by.to_string(),
            used_at: None,
            key_id: None,
            revoked_at: None,
        };
        self.write(INVITATIONS, &invitation.id, &invitation, true)
            .await?;
        Ok((public_invitation(&invitation), made.token))
    }

    pub async fn invitations(&self, project: &str) -> Result<Vec<Invitation>> {
        let all: Vec<Invitation> = self.read_all(INVITATIONS).await?;
        let mut mine: Vec<Invitation> = all
            .iter()
            .filter(|i| i.project == project)
            .map(public_invitation)
            .collect();
        mine.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(mine)
    }

    pub async fn revoke_invitation(&self, project: &str, id: &str) -> Result<Invitation> {
        let path = self.storage.path(&format!("{INVITATIONS}/{id}.json"));
        let not_found = || Error::NotFound {
            what: "invitation",
            name: id.to_string(),
        };
        let mut invitation = match self.read::<Invitation>(&path).await? {
            Some(i) if i.project == project => i,
            _ => return Err(not_found()),
        };
        if invitation.revoked_at.is_none() && invitation.used_at.is_none() {
            invitation.revoked_at = Some(Utc::now());
            self.write(INVITATIONS, id, &invitation, false).await?;
        }
        Ok(public_invitation(&invitation))
    }

    /// Exchanges an invitation token for a new key of the invited role (once).
    pub async fn accept(
        &self,
        token: &str,
        label: Option<String>,
    ) -> Result<(Invitation, KeyRecord, String)> {
        let refused = |why: &str| Error::Unauthenticated(format!("invitation refused: {why}"));
        let id = tokens::id_of(TokenKind::Invitation, token)
            .ok_or_else(|| refused("not of the form pli_<16 hex>_<64 hex>"))?;
        let _one_at_a_time = self.accepting.lock().await;
        let path = self.storage.path(&format!("{INVITATIONS}/{id}.json"));
        let mut invitation: Invitation = self
            .read(&path)
            .await?
            .filter(|i: &Invitation| tokens::matches(token, &i.digest))
            .ok_or_else(|| refused("unknown invitation"))?;
        if invitation.used_at.is_some() {
            return Err(refused("this invitation has been used already"));
        }
        if invitation.revoked_at.is_some() {
            return Err(refused("this invitation has been revoked"));
        }
        if invitation.expires_at <= Utc::now() {
            return Err(refused("this invitation has expired"));
        }
        let (key, token) = self
            .create_key(&invitation.project, invitation.role, label, None)
            .await?;
        invitation.used_at = Some(Utc::now());
        invitation.key_id = Some(key.id.clone());
        self.write(INVITATIONS, id, &invitation, false).await?;
        Ok((public_invitation(&invitation), key, token))
    }
}

fn public_invitation(invitation: &Invitation) -> Invitation {
    Invitation {
        digest: String::new(),
        ..invitation.clone()
    }
}

fn check_label(label: Option<&str>) -> Result<()> {
    match label {
        Some(label) if label.chars().count() > 100 => Err(Error::invalid(
            "label",
            format!(
                "a label has at most 100 characters; this one has {}",
                label.chars().count()
            ),
        )),
        Some(label) if label.chars().any(char::is_control) => {
            Err(Error::invalid("label", "a label has no control characters"))
        }
        _ => Ok(()),
    }
}

fn storage_error(e: object_store::Error) -> Error {
    Error::Storage(e.to_string())
}

/// `30d`, `12h`, `90m`: a lifetime from now.
pub fn parse_lifetime(text: &str) -> std::result::Result<chrono::TimeDelta, String> {
    let bad = || format!("`{text}` is not a lifetime such as 30d, 12h or 90m");
    let unit_at = text.char_indices().last().map_or(0, |(at, _)| at);
    let (number, unit) = text.split_at(unit_at);
    let n: i64 = number.parse().map_err(|_| bad())?;
    if n <= 0 || n > 3650 * 24 * 60 {
        return Err(bad());
    }
    match unit {
        "d" if n <= 3650 => Ok(chrono::TimeDelta::days(n)),
        "h" if n <= 3650 * 24 => Ok(chrono::TimeDelta::hours(n)),
        "m" => Ok(chrono::TimeDelta::minutes(n)),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn registry() -> (tempfile::TempDir, Registry) {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path().to_str().unwrap()).unwrap();
        let registry = Registry::open(storage, ProjectZones::new(chrono_tz::UTC))
            .await
            .unwrap();
        (dir, registry)
    }

    #[tokio::test]
    async fn keys_are_stored_as_digests_and_refused_once_revoked_or_expired() {
        let (dir, registry) = registry().await;
        registry
            .create_project("shop", chrono_tz::Asia::Shanghai)
            .await
            .unwrap();
        assert!(matches!(
            registry.create_project("shop", chrono_tz::UTC).await,
            Err(Error::Conflict(_))
        ));
        assert_eq!(registry.zones().get("shop"), chrono_tz::Asia::Shanghai);
        let (record, token) = registry
            .create_key("shop", Role::Analyst, Some("bi".into()), None)
            .await
            .unwrap();
        assert_eq!(record.digest, "");
        let stored =
            std::fs::read_to_string(dir.path().join(format!("access/keys/{}.json", record.id)))
                .unwrap();
        assert!(!stored.contains(&token));
        assert!(stored.contains(&tokens::digest(&token)));

        let key = registry.authenticate(&token).await.unwrap();
        assert_eq!((key.role, key.project.as_str()), (Role::Analyst, "shop"));
        assert!(registry.keys("shop")[0].last_used_at.is_some());
        let forged = format!("{}0", &token[..token.len() - 1]);
        if forged != token {
            assert_eq!(registry.authenticate(&forged).await, Err(Refusal::Unknown));
        }
        registry.revoke_key("shop", &record.id).await.unwrap();
        assert_eq!(registry.authenticate(&token).await, Err(Refusal::Revoked));

        let (_, expired) = registry
            .create_key("shop", Role::Ingest, None, Some(Utc::now()))
            .await
            .unwrap();
        assert_eq!(registry.authenticate(&expired).await, Err(Refusal::Expired));
        assert!(matches!(
            registry.create_key("nope", Role::Admin, None, None).await,
            Err(Error::NotFound { .. })
        ));

        // Another process (the operator's CLI) sees the same keys.
        let again = Registry::open(
            Storage::open(dir.path().to_str().unwrap()).unwrap(),
            ProjectZones::new(chrono_tz::UTC),
        )
        .await
        .unwrap();
        assert_eq!(again.keys("shop").len(), 2);
        assert_eq!(again.authenticate(&token).await, Err(Refusal::Revoked));
    }

    #[tokio::test]
    async fn an_invitation_becomes_one_key_once() {
        let (_dir, registry) = registry().await;
        registry.create_project("p", chrono_tz::UTC).await.unwrap();
        let expires = Utc::now() + chrono::TimeDelta::days(7);
        let (invitation, token) = registry
            .invite("p", Role::Admin, expires, OPERATOR)
            .await
            .unwrap();
        let (used, key, key_token) = registry.accept(&token, None).await.unwrap();
        assert_eq!(used.key_id.as_deref(), Some(key.id.as_str()));
        assert_eq!(used.id, invitation.id);
        assert_eq!(key.role, Role::Admin);
        assert!(registry.authenticate(&key_token).await.is_ok());
        assert!(matches!(
            registry.accept(&token, None).await,
            Err(Error::Unauthenticated(m)) if m.contains("used already")
        ));
        let (second, token) = registry
            .invite("p", Role::Marketer, expires, OPERATOR)
            .await
            .unwrap();
        registry.revoke_invitation("p", &second.id).await.unwrap();
        assert!(registry.accept(&token, None).await.is_err());
        let (_, token) = registry
            .invite("p", Role::Marketer, Utc::now(), OPERATOR)
            .await
            .unwrap();
        assert!(matches!(
            registry.accept(&token, None).await,
            Err(Error::Unauthenticated(m)) if m.contains("expired")
        ));
    }

    #[test]
    fn lifetimes() {
        assert_eq!(parse_lifetime("30d"), Ok(chrono::TimeDelta::days(30)));
        assert_eq!(parse_lifetime("12h"), Ok(chrono::TimeDelta::hours(12)));
        for bad in [
            "", "d", "0d", "-1d", "30", "30y", "99999d", "Û0Î", "3é", "é",
        ] {
            assert!(parse_lifetime(bad).is_err(), "{bad}");
        }
    }
}
