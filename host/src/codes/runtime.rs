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
    cache_dir: Option<&Path>,
) -> wasmtime::Result<Component> {
    let Some(dir) = cache_dir else {
        return Component::new(engine, wasm);
    };
    let file = cache_file(engine, wasm, dir);
    if file.exists() {
        // SAFETY: the file is one this code wrote into promolens' own cache folder from
        // `Component::serialize`; wasmtime checks that it matches this engine's version and
        // settings and refuses it otherwise (then it is compiled again below).
        match unsafe { Component::deserialize_file(engine, &file) } {
            Ok(component) => return Ok(component),
            Err(e) => {
                tracing::warn!(error = %e, file = %file.display(), "cached plugin unusable; compiling")
            }
        }
    }
    let component = Component::new(engine, wasm)?;
    let bytes = component.serialize()?;
    // Write then rename: a concurrent reader never sees half a file.
    let partial = file.with_extension(format!("partial-{}", std::process::id()));
    let stored = std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(&partial, &bytes))
        .and_then(|()| std::fs::rename(&partial, &file));
    if let Err(e) = stored {
        tracing::warn!(error = %e, dir = %dir.display(), "could not cache the compiled plugin");
    }
    Ok(component)
}

impl PluginRuntime {
    /// Compiles (or loads from `cache_dir`) and links the component.
    pub fn new(
        wasm: &[u8],
        cache_dir: Option<&Path>,
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
        let component = load_component(&engine, wasm, cache_dir).map_err(load)?;
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
