//! The plugin's record store: each project's records as objects under the data directory, so
//! that they live (and are backed up) with the tables, on a local disk or S3.
//!
//! A plugin key `<collection>/<name>` is stored at `codes/<collection>/project=<P>/<name>`, a
//! key `<name>` at `codes/state/project=<P>/<name>`: the project is in the path, never in the
//! plugin's hands, so a call for one project cannot reach another's records. The code records
//! (`codes/codes/project=P/<id>`, one JSON object each) are the table `promo_codes`.
//!
//! Versions for compare-and-set are the xxh3 hash of the stored bytes. Creation is atomic in the
//! store (`PutMode::Create`); replacing a record is compare-and-set under a lock of this process,
//! so one server manages a data directory's codes (as one compactor does its files).

use std::sync::Mutex;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use promolens_ingest::Storage;
use promolens_schemas::layout::project_dir;

/// Folder of all plugin records under the data directory.
pub const ROOT: &str = "codes";
/// The collection of code records: the table `promo_codes`.
pub const CODES: &str = "codes";

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("bad record key `{0}`: one or two segments of a-z 0-9 - _ . separated by /")]
    BadKey(String),
    #[error("record `{0}` changed since it was read")]
    Conflict(String),
    #[error("record storage: {0}")]
    Storage(#[from] object_store::Error),
}

pub struct RecordStore {
    storage: Storage,
    /// Serialises compare-and-set replacements (read, compare, write) within this process.
    replace: Mutex<()>,
}

fn version_of(bytes: &[u8]) -> u64 {
    // Never 0, so that a version is never mistaken for "absent" by a careless caller.
    xxhash_rust::xxh3::xxh3_64(bytes).max(1)
}

fn valid_segment(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
}

impl RecordStore {
    pub fn new(storage: Storage) -> RecordStore {
        RecordStore {
            storage,
            replace: Mutex::new(()),
        }
    }

    /// Where `key` of `project` lives.
    fn path(&self, project: &str, key: &str) -> Result<Path, RecordError> {
        let (collection, name) = match key.split_once('/') {
            Some((c, n)) => (c, n),
            None => ("state", key),
        };
        if !valid_segment(collection) || !valid_segment(name) {
            return Err(RecordError::BadKey(key.to_string()));
        }
        Ok(self.storage.path(&format!(
            "{}/{name}",
            project_dir(&format!("{ROOT}/{collection}"), project)
        )))
    }

    pub async fn get(&self, project: &str, key: &str) -> Result<Option<(Bytes, u64)>, RecordError> {
        let path = self.path(project, key)?;
        match self.storage.store.get(&path).await {
            Ok(result) => {
                let bytes = result.bytes().await?;
                let version = version_of(&bytes);
                Ok(Some((bytes, version)))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes `value` when the stored version is `expected` (`None`: only when absent).
    pub fn put_blocking(
        &self,
        handle: &tokio::runtime::Handle,
        project: &str,
        key: &str,
        value: Vec<u8>,
        expected: Option<u64>,
    ) -> Result<u64, RecordError> {
        let path = self.path(project, key)?;
        let version = version_of(&value);
        let store = &self.storage.store;
        match expected {
            None => {
                let options = PutOptions::from(PutMode::Create);
                match handle.block_on(store.put_opts(&path, PutPayload::from(value), options)) {
                    Ok(_) => Ok(version),
                    Err(object_store::Error::AlreadyExists { .. }) => {
                        Err(RecordError::Conflict(key.to_string()))
                    }
                    Err(e) => Err(e.into()),
                }
            }
            Some(expected) => {
                let _guard = self.replace.lock().unwrap_or_else(|e| e.into_inner());
                let current = handle.block_on(self.get(project, key))?;
                if current.map(|(_, v)| v) != Some(expected) {
                    return Err(RecordError::Conflict(key.to_string()));
                }
                handle.block_on(store.put(&path, PutPayload::from(value)))?;
                Ok(version)
            }
        }
    }

    /// Keys of `project` starting with `prefix` (`<collection>/` or a name), sorted.
    pub async fn list(&self, project: &str, prefix: &str) -> Result<Vec<String>, RecordError> {
        let (collection, name_prefix) = match prefix.split_once('/') {
            Some((c, n)) => (c, n),
            None => ("state", prefix),
        };
        if !valid_segment(collection) {
            return Err(RecordError::BadKey(prefix.to_string()));
        }
        let folder = self
            .storage
            .path(&project_dir(&format!("{ROOT}/{collection}"), project));
        let metas: Vec<_> = self.storage.store.list(Some(&folder)).try_collect().await?;
        let mut keys: Vec<String> = metas
            .iter()
            .filter_map(|m| m.location.filename())
            .filter(|name| name.starts_with(name_prefix))
            .map(|name| {
                if prefix.contains('/') {
                    format!("{collection}/{name}")
                } else {
                    name.to_string()
                }
            })
            .collect();
        keys.sort();
        Ok(keys)
    }

    pub async fn delete(&self, project: &str, key: &str) -> Result<(), RecordError> {
        let path = self.path(project, key)?;
        match self.storage.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread")]
    async fn projects_are_apart_and_replacing_needs_the_current_version() {
        let dir = tempfile::tempdir().unwrap();
        let store = RecordStore::new(Storage::open(dir.path().to_str().unwrap()).unwrap());
        let handle = tokio::runtime::Handle::current();
        let put = |project: &'static str, key: &'static str, value: &'static [u8], expected| {
            let (store, handle) = (&store, handle.clone());
            tokio::task::block_in_place(move || {
                store.put_blocking(&handle, project, key, value.to_vec(), expected)
            })
        };
        let v1 = put("x", "codes/ab12cd34", b"one", None).unwrap();
        assert!(matches!(
            put("x", "codes/ab12cd34", b"again", None),
            Err(RecordError::Conflict(_))
        ));
        assert!(matches!(
            put("x", "codes/ab12cd34", b"two", Some(v1 + 1)),
            Err(RecordError::Conflict(_))
        ));
        let v2 = put("x", "codes/ab12cd34", b"two", Some(v1)).unwrap();
        assert_ne!(v1, v2);
        put("y", "quota", b"{}", None).unwrap();
        assert_eq!(store.list("x", "codes/").await.unwrap(), ["codes/ab12cd34"]);
        assert!(store.list("y", "codes/").await.unwrap().is_empty());
        assert!(store.get("y", "codes/ab12cd34").await.unwrap().is_none());
        assert_eq!(store.list("y", "").await.unwrap(), ["quota"]);
        assert!(dir.path().join("codes/codes/project=x/ab12cd34").exists());
        for bad in ["../x", "codes/../../etc", "Codes/a", "a/b/c", ""] {
            assert!(
                matches!(store.get("x", bad).await, Err(RecordError::BadKey(_))),
                "{bad}"
            );
        }
    }
}
