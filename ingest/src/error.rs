//! The one error type of the ingest crate.

use promolens_schemas::EventError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request body is larger than the configured limit (after decompression for gzip).
    #[error("body is over the {limit_bytes}-byte limit{detail}")]
    PayloadTooLarge {
        limit_bytes: usize,
        /// What was seen when the limit was hit (e.g. ", after gzip decompression").
        detail: &'static str,
    },
    /// The body as a whole cannot be read (bad gzip, not UTF-8, an unterminated JSON array).
    #[error("{0}")]
    BadBody(String),
    #[error("bad project name: {0}")]
    BadProject(String),
    #[error("unsupported data location `{url}`: {reason}")]
    BadDataUrl { url: String, reason: String },
    #[error("storage: {0}")]
    Storage(#[from] object_store::Error),
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("event rejected: {0}")]
    Event(#[from] EventError),
    /// Storage failed while the request waited on it (reading the event ids a partition holds,
    /// to dedupe against): nothing of the request was stored; a retry may succeed.
    #[error("storage is unavailable: {0}")]
    StorageUnavailable(String),
    /// The ingest pipeline has stopped (shutting down, or its writer thread failed).
    #[error("ingest pipeline is not running: {0}")]
    Stopped(String),
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}
