//! The HTTP API: the router, the layers every route shares, the JSON error and the extractors
//! whose rejections are that error. Handlers are thin: they parse, call the services the CLI
//! calls too (`promolens_ingest::receive`, `crate::acquisition`, `crate::sql`, `crate::codes`,
//! `crate::access`), and answer.

pub mod error;
pub mod events;
pub mod extract;

pub use error::ApiError;
pub use extract::{ApiJson, ApiQuery};
