//! The one error type of the host library.

use datafusion::arrow::error::ArrowError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The caller asked for something invalid (a bad dimension, window or time zone).
    #[error("{message}")]
    Invalid {
        message: String,
        field: Option<&'static str>,
    },
    /// The SQL is not a read-only query.
    #[error("promolens SQL is read-only: {0}")]
    ReadOnly(String),
    /// A query went over one of the SQL doors' limits ([`crate::sql::SqlLimits`]).
    #[error("{message}")]
    Limit {
        /// `statement_timeout`, `memory_limit` or `too_many_rows`.
        code: &'static str,
        message: String,
    },
    #[error("{0}")]
    Query(#[from] datafusion::error::DataFusionError),
    #[error(transparent)]
    Ingest(#[from] promolens_ingest::Error),
    /// No such project, key, invitation.
    #[error("{what} {name} does not exist")]
    NotFound { what: &'static str, name: String },
    /// No valid credential (a missing, unknown, revoked or expired key; a bad invitation).
    #[error("{0}")]
    Unauthenticated(String),
    /// A valid key that may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// It exists already.
    #[error("{0}")]
    Conflict(String),
    /// Reading or writing the data directory's records (projects, keys, audit log).
    #[error("storage: {0}")]
    Storage(String),
    /// The process could not be set up as configured (the metrics recorder, a listener).
    #[error("setting up: {0}")]
    Setup(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Error {
        Error::Invalid {
            message: message.into(),
            field: Some(field),
        }
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

impl From<ArrowError> for Error {
    fn from(e: ArrowError) -> Error {
        Error::Query(e.into())
    }
}
