//! Where the tables live: a local directory by default, or any object_store URL (`file://`,
//! `memory://`, `s3://bucket/prefix` with the usual `AWS_*` environment variables; `AWS_ENDPOINT`
//! or `AWS_ENDPOINT_URL` points it at an S3-compatible server).
//!
//! `store` is the unprefixed store of the URL's scheme and authority, so that DataFusion can be
//! handed the same store under the same URL; paths inside it are built with [`Storage::path`].

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::memory::InMemory;
use object_store::path::Path;
use url::Url;

use crate::durable_store::DurableLocalStore;
use crate::error::{Error, Result};

#[derive(Clone, Debug)]
pub struct Storage {
    pub store: Arc<dyn ObjectStore>,
    /// `scheme://authority/` of the store, the key DataFusion registers it under.
    pub store_url: Url,
    /// Path of the data directory inside the store.
    pub prefix: Path,
    /// The local directory when the data is on a local disk (the write-ahead log goes there).
    pub local_dir: Option<PathBuf>,
}

impl Storage {
    /// Opens `location`: a local path, or a `file://`, `memory://` or `s3://` URL.
    pub fn open(location: &str) -> Result<Storage> {
        let bad = |reason: String| Error::BadDataUrl {
            url: location.to_string(),
            reason,
        };
        if !location.contains("://") {
            return Self::local(FsPath::new(location));
        }
        let url = Url::parse(location).map_err(|e| bad(e.to_string()))?;
        match url.scheme() {
            "file" => {
                let path = url
                    .to_file_path()
                    .map_err(|()| bad("not an absolute file path".into()))?;
                Self::local(&path)
            }
            "memory" => Ok(Storage {
                store: Arc::new(InMemory::new()),
                store_url: Url::parse("memory://").map_err(|e| bad(e.to_string()))?,
                prefix: Path::from(url.path()),
                local_dir: None,
            }),
            "s3" | "s3a" => {
                let bucket = url
                    .host_str()
                    .ok_or_else(|| bad("no bucket name".into()))?
                    .to_string();
                let mut builder = AmazonS3Builder::from_env().with_bucket_name(&bucket);
                let endpoint = std::env::var("AWS_ENDPOINT")
                    .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
                    .ok();
                if let Some(endpoint) = endpoint {
                    if endpoint.starts_with("http://") {
                        builder = builder.with_allow_http(true);
                    }
                    builder = builder.with_endpoint(endpoint);
                }
                let store = builder.build()?;
                Ok(Storage {
                    store: Arc::new(store),
                    store_url: Url::parse(&format!("s3://{bucket}/"))
                        .map_err(|e| bad(e.to_string()))?,
                    prefix: Path::from(url.path()),
                    local_dir: None,
                })
            }
            other => Err(bad(format!(
                "scheme `{other}` is not supported: use a local path, file://, memory:// or s3://"
            ))),
        }
    }

    fn local(dir: &FsPath) -> Result<Storage> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating data directory {}", dir.display()), e))?;
        let dir = dir
            .canonicalize()
            .map_err(|e| Error::io(format!("resolving {}", dir.display()), e))?;
        let prefix = Path::from_absolute_path(&dir).map_err(|e| Error::BadDataUrl {
            url: dir.display().to_string(),
            reason: e.to_string(),
        })?;
        Ok(Storage {
            store: Arc::new(DurableLocalStore::new(dir.clone())),
            store_url: Url::parse("file:///").expect("static URL"),
            prefix,
            local_dir: Some(dir),
        })
    }

    /// `relative` (e.g. `launch_events/project=demo`) inside the data directory.
    pub fn path(&self, relative: &str) -> Path {
        relative
            .split('/')
            .filter(|p| !p.is_empty())
            .fold(self.prefix.clone(), |path, part| path.join(part))
    }
}
