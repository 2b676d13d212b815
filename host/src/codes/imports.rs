//! The powers granted to one plugin call: the WIT `host` interface, bound to one project.

use std::sync::Arc;

use super::bindings::promolens::codes::host::{self, CodeImage, Level, Versioned, WechatEndpoint};
use super::bindings::promolens::codes::types::{self, Error};
use super::records::{RecordError, RecordStore};

/// Makes WeChat codes for a project (the host's WeChat client, or a test's stand-in).
#[async_trait::async_trait]
pub trait WechatGateway: Send + Sync {
    /// Calls `endpoint` with `body` for the mini-program authorized for `project`. Errors are
    /// the plugin's: `not-authorized` without credentials, `wechat` for an errcode, `host`.
    async fn call(
        &self,
        project: &str,
        endpoint: WechatEndpoint,
        body: &str,
    ) -> Result<CodeImage, Error>;
}

/// Caps an instance's linear memory, and remembers that it did.
pub struct MemoryLimiter {
    cap: usize,
    hit: bool,
}

impl MemoryLimiter {
    pub fn new(cap: usize) -> MemoryLimiter {
        MemoryLimiter { cap, hit: false }
    }

    pub fn hit(&self) -> bool {
        self.hit
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = desired <= self.cap;
        self.hit |= !allowed;
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// The store data of one call.
pub struct CallState {
    pub project: String,
    pub records: Arc<RecordStore>,
    pub wechat: Arc<dyn WechatGateway>,
    pub handle: tokio::runtime::Handle,
    pub limiter: MemoryLimiter,
}

fn record_error(e: RecordError) -> Error {
    match e {
        RecordError::Conflict(key) => Error::Conflict(format!("`{key}` changed concurrently")),
        other => Error::Host(other.to_string()),
    }
}

impl types::Host for CallState {}

impl host::Host for CallState {
    fn wechat_call(&mut self, endpoint: WechatEndpoint, body: String) -> Result<CodeImage, Error> {
        self.handle
            .block_on(self.wechat.call(&self.project, endpoint, &body))
    }

    fn store_get(&mut self, key: String) -> Result<Option<Versioned>, Error> {
        let found = self
            .handle
            .block_on(self.records.get(&self.project, &key))
            .map_err(record_error)?;
        Ok(found.map(|(value, version)| Versioned {
            value: value.to_vec(),
            version,
        }))
    }

    fn store_put(
        &mut self,
        key: String,
        value: Vec<u8>,
        expected: Option<u64>,
    ) -> Result<u64, Error> {
        self.records
            .put_blocking(&self.handle, &self.project, &key, value, expected)
            .map_err(record_error)
    }

    fn store_list(&mut self, prefix: String) -> Result<Vec<String>, Error> {
        self.handle
            .block_on(self.records.list(&self.project, &prefix))
            .map_err(record_error)
    }

    fn store_delete(&mut self, key: String) -> Result<(), Error> {
        self.handle
            .block_on(self.records.delete(&self.project, &key))
            .map_err(record_error)
    }

    fn now_ms(&mut self) -> i64 {
        chrono::Utc::now().timestamp_millis()
    }

    fn new_id(&mut self) -> String {
        // 8 base-36 digits of a random UUID: 2.8e12 ids, short enough for a B code's scene.
        const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
        let mut n = uuid::Uuid::new_v4().as_u128();
        (0..8)
            .map(|_| {
                let digit = ALPHABET[(n % 36) as usize] as char;
                n /= 36;
                digit
            })
            .collect()
    }

    fn log(&mut self, level: Level, message: String) {
        let project = self.project.as_str();
        match level {
            Level::Debug => tracing::debug!(target: "promolens::plugin", project, "{message}"),
            Level::Info => tracing::info!(target: "promolens::plugin", project, "{message}"),
            Level::Warn => tracing::warn!(target: "promolens::plugin", project, "{message}"),
            Level::Error => tracing::error!(target: "promolens::plugin", project, "{message}"),
        }
    }
}
