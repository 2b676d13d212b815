//! The plugin under wasmtime: one engine, the component compiled once (and cached on disk),
//! pre-instantiated, then one fresh instance per call from a pooling allocator, each under a
//! memory cap and a CPU budget (fuel). Nothing but our imports is linked: a WASI import the
//! component declares traps if called (no files, sockets, environment, clocks or randomness).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap};

use super::bindings::{Plugin, PluginPre};
use super::imports::{CallState, MemoryLimiter, WechatGateway};
use super::records::RecordStore;

/// What one call may use.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Linear memory of one instance, in bytes.
    pub memory_bytes: usize,
    /// Fuel (about one unit per wasm instruction) for one call: a CPU budget that time spent in
    /// host imports (WeChat, storage) does not use up.
    pub fuel: u64,
    /// Instances alive at once (calls in flight).
    pub instances: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            memory_bytes: 64 << 20,
            // A 1,000-row batch needs about a tenth of it.
            fuel: 2_000_000_000,
            instances: 64,
        }
    }
}

/// Why a call did not come back with the plugin's own answer.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("the plugin used up its CPU budget ({fuel} units of fuel) and was stopped")]
    CpuLimit { fuel: u64 },
    #[error("the plugin reached its memory limit ({limit_bytes} bytes) and was stopped")]
    MemoryLimit { limit_bytes: usize },
    #[error("the plugin trapped: {0}")]
    Trapped(String),
    #[error("loading the plugin: {0}")]
    Load(String),
}

pub struct PluginRuntime {
    engine: Engine,
    pre: PluginPre<CallState>,
    limits: Limits,
}

/// Where compiled components are kept, and the key their HMAC tags are made with.
///
/// A compiled component is native code that wasmtime loads with an `unsafe` deserialize: a file
/// in the cache is loaded only when its tag, over its name and bytes, verifies with this key.
/// Anything else (damaged, truncated, written by someone without the key, or a valid artefact
/// under another name) is compiled again.
pub struct ComponentCache {
    pub dir: PathBuf,
    key: [u8; 32],
}

type Tagger = hmac::Hmac<sha2::Sha256>;
const TAG_BYTES: usize = 32;

impl ComponentCache {
    /// `key`: `PROMOLENS_SECRET_KEY` when configured (then a writer must hold it); otherwise a
    /// random key kept in the folder itself (`.key`, readable by its owner only), which still
    /// refuses damaged files and files from another cache.
    pub fn open(dir: PathBuf, key: Option<[u8; 32]>) -> std::io::Result<ComponentCache> {
        let key = match key {
            Some(key) => key,
            None => folder_key(&dir)?,
        };
        Ok(ComponentCache { dir, key })
    }

    fn tag(&self, name: &str, bytes: &[u8]) -> Tagger {
        use hmac::Mac;
        let mut tagger = <Tagger as Mac>::new_from_slice(&self.key).expect("any key length");
        tagger.update(name.as_bytes());
        tagger.update(&[0]);
        tagger.update(bytes);
        tagger
    }

    /// The verified bytes of a cached file, or why not.
    fn read(&self, file: &Path) -> Result<Vec<u8>, String> {
        use hmac::Mac;
        let mut stored = std::fs::read(file).map_err(|e| e.to_string())?;
        if stored.len() < TAG_BYTES {
            return Err("shorter than its tag".into());
        }
        let bytes = stored.split_off(TAG_BYTES);
        let name = file_name(file);
        self.tag(&name, &bytes).verify_slice(&stored).map_err(|_| {
            "its tag does not verify (damaged, or not written with this key)".to_string()
        })?;
        Ok(bytes)
    }

    /// Writes `bytes` with its tag: to a temporary name, then renamed, so a concurrent reader
    /// never sees half a file.
    fn write(&self, file: &Path, bytes: &[u8]) -> std::io::Result<()> {
        use hmac::Mac;
        let tag = self.tag(&file_name(file), bytes).finalize().into_bytes();
        let partial = file.with_extension(format!("partial-{}", std::process::id()));
        let mut stored = Vec::with_capacity(TAG_BYTES + bytes.len());
        stored.extend_from_slice(&tag);
        stored.extend_from_slice(bytes);
        std::fs::create_dir_all(&self.dir)?;
        std::fs::write(&partial, &stored)?;
        std::fs::rename(&partial, file)
    }
}

fn file_name(file: &Path) -> String {
    file.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The cache folder's own key, made on first use.
fn folder_key(dir: &Path) -> std::io::Result<[u8; 32]> {
    let path = dir.join(".key");
    if let Ok(bytes) = std::fs::read(&path)
        && let Ok(key) = <[u8; 32]>::try_from(bytes.as_slice())
    {
        return Ok(key);
    }
    use chacha20poly1305::aead::OsRng;
    use chacha20poly1305::aead::rand_core::RngCore;
    let mut key = [0u8; 32];
    OsRng.fill_bytes(&mut key);
    std::fs::create_dir_all(dir)?;
    let partial = dir.join(format!(".key.partial-{}", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    std::io::Write::write_all(&mut options.open(&partial)?, &key)?;
    // Two processes starting at once: the first link wins (a link never replaces a file), and
    // the other reads the winner's key.
    if std::fs::hard_link(&partial, &path).is_err() {
        let _ = std::fs::remove_file(&partial);
        let bytes = std::fs::read(&path)?;
        return <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
            std::io::Error::other(format!("{} is not a 32-byte key", path.display()))
        });
    }
    let _ = std::fs::remove_file(&partial);
    Ok(key)
}

/// File name of the compiled component in the cache: the wasm's hash and everything about the
/// engine that makes compiled code incompatible (wasmtime's version among it).
fn cache_file(engine: &Engine, wasm: &[u8], dir: &Path) -> PathBuf {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    let engine_key = hasher.finish();
    let wasm_key = xxhash_rust::xxh3::xxh3_128(wasm);
    dir.join(format!("plugin-{wasm_key:032x}-{engine_key:016x}.cwasm"))
}

/// Compiles `wasm`, or loads what an earlier run compiled from the same bytes.
fn load_component(
    engine: &Engine,
    wasm: &[u8],
    cache: Option<&ComponentCache>,
) -> wasmtime::Result<Component> {
    let Some(cache) = cache else {
        return Component::new(engine, wasm);
    };
    let file = cache_file(engine, wasm, &cache.dir);
    if file.exists() {
        match cache.read(&file) {
            // SAFETY: the bytes verified against a tag that only a holder of the cache's key
            // can make, and this code tags only what `Component::serialize` gave it; wasmtime
            // further checks that they match this engine's version and settings.
            Ok(bytes) => match unsafe { Component::deserialize(engine, &bytes) } {
                Ok(component) => return Ok(component),
                Err(e) => {
                    tracing::warn!(error = %e, file = %file.display(), "cached plugin unusable; compiling")
                }
            },
            Err(why) => {
                tracing::warn!(file = %file.display(), "cached plugin refused: {why}; compiling")
            }
        }
    }
    let component = Component::new(engine, wasm)?;
    if let Err(e) = cache.write(&file, &component.serialize()?) {
        tracing::warn!(error = %e, dir = %cache.dir.display(), "could not cache the compiled plugin");
    }
    Ok(component)
}

impl PluginRuntime {
    /// Compiles (or loads from `cache_dir`) and links the component.
    pub fn new(
        wasm: &[u8],
        cache: Option<&ComponentCache>,
        limits: Limits,
    ) -> Result<PluginRuntime, SandboxError> {
        let load = |e: wasmtime::Error| SandboxError::Load(format!("{e:#}"));
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(limits.instances)
            .total_core_instances(limits.instances * 2)
            .total_memories(limits.instances * 2)
            .total_tables(limits.instances * 2)
            .max_memory_size(limits.memory_bytes);
        let mut config = Config::new();
        config
            .consume_fuel(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        if std::env::var_os("PROMOLENS_PLUGIN_PERFMAP").is_some() {
            // `perf report` then names the plugin's functions (/tmp/perf-<pid>.map).
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&config).map_err(load)?;
        let component = load_component(&engine, wasm, cache).map_err(load)?;
        let mut linker: Linker<CallState> = Linker::new(&engine);
        Plugin::add_to_linker::<CallState, HasSelf<CallState>>(&mut linker, |state| state)
            .map_err(load)?;
        linker
            .define_unknown_imports_as_traps(&component)
            .map_err(load)?;
        let pre =
            PluginPre::new(linker.instantiate_pre(&component).map_err(load)?).map_err(load)?;
        Ok(PluginRuntime {
            engine,
            pre,
            limits,
        })
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Runs `f` against a fresh instance for `project`. Blocking (imports wait on I/O through
    /// `handle`): call it from a blocking thread.
    pub fn call<R>(
        &self,
        project: &str,
        records: Arc<RecordStore>,
        wechat: Arc<dyn WechatGateway>,
        handle: tokio::runtime::Handle,
        f: impl FnOnce(&Plugin, &mut Store<CallState>) -> wasmtime::Result<R>,
    ) -> Result<R, SandboxError> {
        let state = CallState {
            project: project.to_string(),
            records,
            wechat,
            handle,
            limiter: MemoryLimiter::new(self.limits.memory_bytes),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limiter);
        let fuel = self.limits.fuel;
        store
            .set_fuel(fuel)
            .map_err(|e| SandboxError::Load(e.to_string()))?;
        let outcome = self
            .pre
            .instantiate(&mut store)
            .and_then(|plugin| f(&plugin, &mut store));
        outcome.map_err(|e| {
            if store.data().limiter.hit() {
                SandboxError::MemoryLimit {
                    limit_bytes: self.limits.memory_bytes,
                }
            } else if e.downcast_ref::<Trap>() == Some(&Trap::OutOfFuel) {
                SandboxError::CpuLimit { fuel }
            } else {
                SandboxError::Trapped(format!("{e:#}"))
            }
        })
    }
}
