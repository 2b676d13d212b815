//! Rows, partitions and a store with hooks for the pipeline's unit tests.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
};

use arrow_array::{RecordBatch, StringArray, TimestampMillisecondArray};
use bytes::Bytes;

use crate::parquet_io::read_columns;
use crate::partition::PartitionKey;
use crate::record::RowsBuilder;

/// One batch of launches of project `p` at the given times (ms), event ids `e<i>` in order
/// from `first_id`.
pub fn launches(first_id: usize, times: &[i64]) -> RecordBatch {
    let mut rows = RowsBuilder::new("p", 0, false);
    for (i, t) in times.iter().enumerate() {
        let id = first_id + i;
        let line = format!(r#"{{"event_id":"e{id}","user_id":"u","ts":{t}}}"#);
        rows.push_json(&line, &Default::default()).unwrap();
    }
    rows.finish().unwrap().tables.remove(0).batch
}

/// One batch of core events (`purchase`) of project `p` at the given times (ms), event ids
/// `c<i>` in order from `first_id`.
pub fn core_events(first_id: usize, times: &[i64]) -> RecordBatch {
    let mut rows = RowsBuilder::new("p", 0, false);
    for (i, t) in times.iter().enumerate() {
        let id = first_id + i;
        let line = format!(r#"{{"event":"purchase","event_id":"c{id}","user_id":"u","ts":{t}}}"#);
        rows.push_json(&line, &Default::default()).unwrap();
    }
    rows.finish().unwrap().tables.remove(0).batch
}

/// Rows of project `p` from `ingestor`, one event per id at time `ts` (ms), user `u<id>`.
pub fn launch_rows(
    ingestor: &super::Ingestor,
    ts: i64,
    ids: &[impl AsRef<str>],
) -> crate::record::Rows {
    let mut rows = ingestor.rows("p");
    for id in ids {
        let id = id.as_ref();
        let line = format!(r#"{{"event_id":"{id}","user_id":"u{id}","ts":{ts}}}"#);
        rows.push_json(&line, &Default::default()).unwrap();
    }
    rows.finish().unwrap()
}

/// Partition `dt` of project `p`'s core events.
pub fn events_day(dt: &str) -> Arc<PartitionKey> {
    Arc::new(PartitionKey {
        table: crate::parquet_io::Table::Events,
        project: "p".into(),
        dt: dt.into(),
    })
}

/// Partition `dt` of project `p`.
pub fn day(dt: &str) -> Arc<PartitionKey> {
    Arc::new(PartitionKey {
        table: crate::parquet_io::Table::LaunchEvents,
        project: "p".into(),
        dt: dt.into(),
    })
}

/// The (text, time) pairs of two columns of a Parquet file, a string and a timestamp, in file
/// order.
pub fn text_and_time(file: Bytes, columns: [&str; 2]) -> Vec<(String, i64)> {
    let mut rows = Vec::new();
    for batch in read_columns(file, &columns).unwrap() {
        let texts = batch
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        let times = batch
            .column(1)
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
            .unwrap();
        for i in 0..batch.num_rows() {
            rows.push((texts.value(i).to_string(), times.value(i)));
        }
    }
    rows
}

/// (text, time) of every row of the Parquet files under `folder`, file by file in name order.
pub async fn stored_rows(
    storage: &crate::storage::Storage,
    folder: &str,
    columns: [&str; 2],
) -> Vec<(String, i64)> {
    use futures::TryStreamExt;
    use object_store::ObjectStoreExt;
    let mut files: Vec<_> = storage
        .store
        .list(Some(&storage.path(folder)))
        .try_collect()
        .await
        .unwrap();
    files.sort_by(|a, b| a.location.cmp(&b.location));
    let mut rows = Vec::new();
    for file in files {
        let bytes = storage
            .store
            .get(&file.location)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        rows.extend(text_and_time(bytes, columns));
    }
    rows
}

/// Every `event_id` stored in `launch_events`, sorted.
pub async fn stored_event_ids(storage: &crate::storage::Storage) -> Vec<String> {
    let rows = stored_rows(storage, "launch_events", ["event_id", "event_time"]).await;
    let mut ids: Vec<String> = rows.into_iter().map(|(id, _)| id).collect();
    ids.sort();
    ids
}

/// Runs before each put; an error fails the put.
pub type BeforePut = Box<dyn Fn(&Path) -> object_store::Result<()> + Send + Sync>;
/// Runs before each listing: the listing starts once the future is done; an error fails it.
pub type BeforeList =
    Box<dyn Fn(Option<&Path>) -> BoxFuture<'static, object_store::Result<()>> + Send + Sync>;

/// A store that runs hooks around puts and before lists (to fail them, watch them, hold them).
pub struct Hooked {
    inner: Arc<dyn ObjectStore>,
    pub before_put: BeforePut,
    /// After each put that succeeded.
    pub after_put: Box<dyn Fn(&Path) + Send + Sync>,
    pub before_list: BeforeList,
}

impl Hooked {
    /// Hooks that do nothing, to replace.
    pub fn new(inner: Arc<dyn ObjectStore>) -> Hooked {
        Hooked {
            inner,
            before_put: Box::new(|_| Ok(())),
            after_put: Box::new(|_| {}),
            before_list: Box::new(|_| Box::pin(async { Ok(()) })),
        }
    }
}

impl fmt::Debug for Hooked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hooked({})", self.inner)
    }
}

impl fmt::Display for Hooked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hooked({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for Hooked {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        (self.before_put)(location)?;
        let result = self.inner.put_opts(location, payload, opts).await?;
        (self.after_put)(location);
        Ok(result)
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let wait = (self.before_list)(prefix);
        let (inner, prefix) = (self.inner.clone(), prefix.cloned());
        futures::stream::once(wait)
            .flat_map(move |ready| match ready {
                Ok(()) => inner.list(prefix.as_ref()),
                Err(e) => futures::stream::once(async { Err(e) }).boxed(),
            })
            .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        (self.before_list)(prefix).await?;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}
