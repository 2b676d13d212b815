//! JSON records in the data directory (saved analyses, attribution settings): read one, with
//! "not there" as `None`, and object_store's errors as ours.

use object_store::ObjectStoreExt;
use object_store::path::Path;
use promolens_ingest::Storage;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// The record at `path`; `None` when there is none.
pub async fn read<T: DeserializeOwned>(storage: &Storage, path: &Path) -> Result<Option<T>> {
    let bytes = match storage.store.get(path).await {
        Ok(found) => found.bytes().await.map_err(storage_error)?,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(storage_error(e)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| Error::Storage(format!("reading {path}: {e}")))
}

pub fn storage_error(e: object_store::Error) -> Error {
    Error::Storage(e.to_string())
}
