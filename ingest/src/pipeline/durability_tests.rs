//! The order that makes a 2xx survive a power cut: a write-ahead log segment is deleted only
//! after every file of its flush is stored (and a local store's put returns only once the file is
//! fsynced, `durable_store`); a flush that cannot be stored deletes nothing, and the next start
//! stores its events from the log.

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};

use super::*;

/// A store that watches the write-ahead log while it stores, and can be made to fail.
#[derive(Debug)]
struct Watched {
    inner: Arc<dyn ObjectStore>,
    wal_dir: PathBuf,
    failing: AtomicBool,
    /// For each stored file: the log segments that existed once its put had returned.
    stored: Mutex<Vec<(String, Vec<u64>)>>,
}

impl fmt::Display for Watched {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Watched({})", self.inner)
    }
}

fn segments_in(dir: &std::path::Path) -> Vec<u64> {
    let mut found: Vec<u64> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            name.strip_prefix("wal-")?
                .strip_suffix(".log")?
                .parse()
                .ok()
        })
        .collect();
    found.sort_unstable();
    found
}

#[async_trait]
impl ObjectStore for Watched {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(object_store::Error::Generic {
                store: "Watched",
                source: "injected: the disk is gone".into(),
            });
        }
        let result = self.inner.put_opts(location, payload, opts).await?;
        let present = segments_in(&self.wal_dir);
        self.stored
            .lock()
            .unwrap()
            .push((location.to_string(), present));
        Ok(result)
    }

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
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

fn events(ids: std::ops::Range<usize>, ingestor: &Ingestor) -> LaunchRows {
    let mut rows = ingestor.rows("p");
    for id in ids {
        let line = format!(r#"{{"event_id":"e{id}","user_id":"u{id}","ts":1763942400000}}"#);
        rows.push_json(&line, &Default::default()).unwrap();
    }
    rows.finish().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_log_segment_is_deleted_before_its_files_are_stored_and_a_failed_flush_deletes_none() {
    let data = tempfile::tempdir().unwrap();
    let wal = tempfile::tempdir().unwrap();
    let local = Storage::open(data.path().to_str().unwrap()).unwrap();
    let watched = Arc::new(Watched {
        inner: local.store.clone(),
        wal_dir: wal.path().to_path_buf(),
        failing: AtomicBool::new(false),
        stored: Mutex::default(),
    });
    let storage = Storage {
        store: watched.clone(),
        ..local.clone()
    };
    let mut config = IngestConfig::new(chrono_tz::UTC);
    config.wal_dir = Some(wal.path().to_path_buf());
    config.flush_age = Duration::from_secs(3600);
    let ingestor = Ingestor::start(storage.clone(), config.clone())
        .await
        .unwrap();

    // A flush that stores: each of its files (launches and first-seen rows) was stored while
    // the segment holding its events (1) was still there; afterwards the segment is gone.
    ingestor.append(events(0..10, &ingestor)).await.unwrap();
    assert_eq!(segments_in(wal.path()), [1]);
    ingestor.flush().await.unwrap();
    let stored = std::mem::take(&mut *watched.stored.lock().unwrap());
    assert!(stored.len() >= 2, "{stored:?}");
    for (file, present) in &stored {
        assert!(
            present.contains(&1),
            "{file} was stored after its log segment was deleted"
        );
    }
    assert_eq!(segments_in(wal.path()), [2]);

    // The disk fails: the flush fails (after its retries) and its segment stays.
    watched.failing.store(true, Ordering::SeqCst);
    ingestor.append(events(10..20, &ingestor)).await.unwrap();
    assert!(ingestor.flush().await.is_err());
    assert!(
        segments_in(wal.path()).contains(&2),
        "the failed flush's segment was deleted"
    );
    drop(ingestor);

    // The next start (the disk back) stores the failed flush's events from the log, once.
    watched.failing.store(false, Ordering::SeqCst);
    let ingestor = Ingestor::start(storage.clone(), config).await.unwrap();
    ingestor.shutdown().await.unwrap();
    let expected: Vec<String> = {
        let mut ids: Vec<String> = (0..20).map(|id| format!("e{id}")).collect();
        ids.sort();
        ids
    };
    assert_eq!(testing::stored_event_ids(&local).await, expected);
    assert!(!segments_in(wal.path()).contains(&2));
}
