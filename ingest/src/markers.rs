//! Compaction markers, and the listing promolens' readers take through them (the reader's side
//! of the protocol in [`crate::compact`]): a marker `_compaction-<id>.json` names a merged output
//! and the inputs it replaces; once the output exists, the inputs are hidden.

use std::collections::HashSet;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use serde::{Deserialize, Serialize};

pub(crate) const MARKER_PREFIX: &str = "_compaction-";

/// The intent of one compaction, stored beside the files it concerns.
#[derive(Debug, Serialize, Deserialize)]
pub struct Marker {
    /// File name (in the same folder) of the merged file.
    pub output: String,
    /// File names (in the same folder) it replaces.
    pub inputs: Vec<String>,
}

pub(crate) fn file_name(path: &Path) -> &str {
    path.filename().unwrap_or_default()
}

pub(crate) fn is_marker(path: &Path) -> bool {
    let name = file_name(path);
    name.starts_with(MARKER_PREFIX) && name.ends_with(".json")
}

/// A data file of a table (not a marker, not a hidden or partial file).
pub(crate) fn is_data_file(path: &Path) -> bool {
    let name = file_name(path);
    name.ends_with(".parquet") && !name.starts_with(['_', '.'])
}

pub(crate) fn folder(path: &Path) -> Path {
    let mut parts: Vec<_> = path.parts().collect();
    parts.pop();
    Path::from_iter(parts)
}

pub(crate) async fn read_marker(
    store: &dyn ObjectStore,
    path: &Path,
) -> object_store::Result<Marker> {
    let bytes = store.get(path).await?.bytes().await?;
    serde_json::from_slice(&bytes).map_err(|e| object_store::Error::Generic {
        store: "promolens",
        source: Box::new(e),
    })
}

/// The listing of `prefix` as promolens' queries must see it: files replaced by a compaction whose
/// output exists are left out.
pub async fn visible_files(
    store: &dyn ObjectStore,
    prefix: Option<&Path>,
) -> object_store::Result<Vec<ObjectMeta>> {
    // A marker can vanish between the listing and its read when its compaction just finished:
    // then the listing is stale, and taking it again gives the settled state.
    let mut attempt = 0;
    'listing: loop {
        attempt += 1;
        let all: Vec<ObjectMeta> = store.list(prefix).try_collect().await?;
        let markers: Vec<&ObjectMeta> = all.iter().filter(|m| is_marker(&m.location)).collect();
        if markers.is_empty() {
            return Ok(all);
        }
        let present: HashSet<&Path> = all.iter().map(|m| &m.location).collect();
        let mut hidden = HashSet::new();
        for meta in markers {
            let marker = match read_marker(store, &meta.location).await {
                Ok(marker) => marker,
                Err(object_store::Error::NotFound { .. }) if attempt < 5 => continue 'listing,
                Err(e) => return Err(e),
            };
            let dir = folder(&meta.location);
            if present.contains(&dir.clone().join(marker.output.as_str())) {
                hidden.extend(marker.inputs.iter().map(|i| dir.clone().join(i.as_str())));
            }
        }
        return Ok(all
            .into_iter()
            .filter(|m| !hidden.contains(&m.location))
            .collect());
    }
}
