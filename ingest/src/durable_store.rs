//! The local object store made durable: a put (or a copy or rename) returns only once the file
//! and every directory entry from it up to the data directory are fsynced.
//!
//! object_store's `LocalFileSystem` writes a temporary file and renames it into place, without
//! `fsync`: after a power cut the new file can be empty or missing although the put returned.
//! The pipeline deletes a write-ahead log segment once the Parquet files holding its events are
//! stored, and compaction deletes its inputs once its output is stored, so "stored" must mean
//! "on disk". (S3 and other object stores acknowledge a put only once it is durable.)

use std::fmt;
use std::fs::File;
use std::ops::Range;
use std::path::PathBuf;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};

#[derive(Debug)]
pub struct DurableLocalStore {
    inner: LocalFileSystem,
    /// The data directory: directories above it already exist and are not synced.
    root: PathBuf,
}

impl DurableLocalStore {
    /// The file system from `/`, syncing directories up to `root` (the data directory).
    pub fn new(root: PathBuf) -> DurableLocalStore {
        DurableLocalStore {
            inner: LocalFileSystem::new(),
            root,
        }
    }

    /// Fsyncs the file at `location`, then each directory from its folder up to the root: a new
    /// file's entry (and a new partition folder's) survives a power cut too.
    async fn sync(&self, location: &Path) -> Result<()> {
        let file = self.inner.path_to_filesystem(location)?;
        let root = self.root.clone();
        let synced = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            File::open(&file)?.sync_all()?;
            let mut dir = file.parent();
            while let Some(folder) = dir {
                File::open(folder)?.sync_all()?;
                if folder == root || !folder.starts_with(&root) {
                    break;
                }
                dir = folder.parent();
            }
            Ok(())
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        synced.map_err(|e| object_store::Error::Generic {
            store: "DurableLocalStore",
            source: Box::new(e),
        })
    }
}

impl fmt::Display for DurableLocalStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DurableLocalStore({})", self.root.display())
    }
}

#[async_trait]
impl ObjectStore for DurableLocalStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let result = self.inner.put_opts(location, payload, opts).await?;
        self.sync(location).await?;
        Ok(result)
    }

    /// Multipart uploads are not synced: promolens writes whole files with `put`.
    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await?;
        self.sync(to).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.inner.rename_opts(from, to, options).await?;
        self.sync(to).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;

    #[tokio::test]
    async fn puts_copies_and_renames_land_in_new_folders() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let store = DurableLocalStore::new(root.clone());
        let at = |relative: &str| Path::from_absolute_path(root.join(relative)).unwrap();
        let file = at("launch_events/project=p/dt=2025-11-24/part-1.parquet");
        store
            .put(&file, PutPayload::from_static(b"PAR1"))
            .await
            .unwrap();
        let copy = at("launch_events/project=p/dt=2025-11-25/part-2.parquet");
        store.copy(&file, &copy).await.unwrap();
        let moved = at("user_first_seen/project=p/part-3.parquet");
        store.rename(&copy, &moved).await.unwrap();
        let read = |p: &str| std::fs::read(root.join(p)).unwrap();
        assert_eq!(
            read("launch_events/project=p/dt=2025-11-24/part-1.parquet"),
            b"PAR1"
        );
        assert_eq!(read("user_first_seen/project=p/part-3.parquet"), b"PAR1");
        assert!(
            !root
                .join("launch_events/project=p/dt=2025-11-25/part-2.parquet")
                .exists()
        );
    }
}
