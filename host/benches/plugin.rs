//! The plugin under wasmtime, timed (issue 4's speed goals), beside the same logic called
//! natively in the same run:
//! - instantiation of a fresh instance from the warm pool (goal < 50 µs);
//! - `preview` through wasm on an instance (goal < 20 µs, and within 3× of native), for an A code
//!   (it reads the quota counter from the record store: both sides use the same store) and a B code
//!   (no host call: the plugin's logic and the component ABI alone);
//! - the same `preview` of a request refused at its first check (an empty name): the component
//!   boundary's own cost (the request lowered into the instance, an error lifted back) beside
//!   the native refusal;
//! - `create` through the host with WeChat excluded (a gateway that answers at once), records
//!   in memory: per call and calls/s on all cores.
//!
//! `cargo bench -p promolens --bench plugin [-- preview]` (a word runs only the parts whose name
//! contains it: `instantiation`, `preview`, `create`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use promolens::codes::imports::WechatGateway;
use promolens::codes::records::RecordStore;
use promolens::codes::runtime::{Limits, PluginRuntime};
use promolens::codes::{CodeImage, CodeRequest, Codes, PLUGIN_WASM, PluginError, WechatEndpoint};

struct Instant200;

#[async_trait::async_trait]
impl WechatGateway for Instant200 {
    async fn call(&self, _: &str, _: WechatEndpoint, _: &str) -> Result<CodeImage, PluginError> {
        Ok(CodeImage {
            content_type: "image/png".into(),
            bytes: vec![0x89, b'P', b'N', b'G'],
        })
    }
}

fn request() -> CodeRequest {
    request_of("A", "Poster")
}

/// The bench's request, as the host's type or the plugin's own (`native`): one definition for
/// both sides of the ratio.
fn request_of<R: serde::de::DeserializeOwned>(kind: &str, name: &str) -> R {
    serde_json::from_value(serde_json::json!({
        "name": name, "kind": kind, "page": "pages/index/index",
        "utm": {"source": "公众号", "medium": "article", "campaign": "双11", "content": null, "term": null},
        "params": [["id", "42"]],
        "image": {"width": 430, "auto_color": false, "line_color": null, "is_hyaline": false,
                  "env_version": null, "check_path": null}
    }))
    .expect("request")
}

/// The plugin's logic called natively, with the same record store the wasm host gives it.
mod native {
    use std::sync::Arc;

    use promolens::codes::records::RecordStore;
    use promolens_plugin::bindings::promolens::codes::host::{
        CodeImage, Level, Versioned, WechatEndpoint,
    };
    use promolens_plugin::bindings::promolens::codes::types::Error;
    use promolens_plugin::service::Host;
    use tokio::runtime::Handle;

    /// The imports as `host/src/codes/imports.rs` provides them, minus the component ABI.
    pub struct StoreHost {
        pub records: Arc<RecordStore>,
        pub handle: Handle,
        pub project: String,
    }

    fn host_error(e: impl std::fmt::Display) -> Error {
        Error::Host(e.to_string())
    }

    impl Host for StoreHost {
        fn wechat_call(&self, _: WechatEndpoint, _: &str) -> Result<CodeImage, Error> {
            Err(Error::Host("unused".into()))
        }
        fn store_get(&self, key: &str) -> Result<Option<Versioned>, Error> {
            let found = self
                .handle
                .block_on(self.records.get(&self.project, key))
                .map_err(host_error)?;
            Ok(found.map(|(value, version)| Versioned {
                value: value.to_vec(),
                version,
            }))
        }
        fn store_put(&self, _: &str, _: &[u8], _: Option<u64>) -> Result<u64, Error> {
            Err(Error::Host("unused".into()))
        }
        fn store_list(&self, prefix: &str) -> Result<Vec<String>, Error> {
            self.handle
                .block_on(self.records.list(&self.project, prefix))
                .map_err(host_error)
        }
        fn store_delete(&self, _: &str) -> Result<(), Error> {
            Err(Error::Host("unused".into()))
        }
        fn now_ms(&self) -> i64 {
            chrono::Utc::now().timestamp_millis()
        }
        fn new_id(&self) -> String {
            "ab12cd34".into()
        }
        fn log(&self, _: Level, _: &str) {}
    }
}

/// Microseconds per call of `call`, over `n` calls after 1,000 to warm up.
fn micros_per_call<E>(n: u32, mut call: impl FnMut() -> Result<(), E>) -> Result<f64, E> {
    for _ in 0..1000 {
        call()?;
    }
    let started = Instant::now();
    for _ in 0..n {
        call()?;
    }
    Ok(per_call(started.elapsed(), n))
}

fn per_call(total: Duration, n: u32) -> f64 {
    total.as_secs_f64() * 1e6 / f64::from(n)
}

fn main() {
    // `cargo bench` passes `--bench`; any other argument picks the parts to run.
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let runs = |part: &str| filter.as_deref().is_none_or(|f| part.contains(f));
    let runtime = tokio::runtime::Runtime::new().expect("tokio");
    let _guard = runtime.enter();
    let handle = runtime.handle().clone();
    let storage = promolens_ingest::Storage::open("memory://").expect("storage");
    let records = Arc::new(RecordStore::new(storage));
    let wechat: Arc<dyn WechatGateway> = Arc::new(Instant200);
    let plugin =
        Arc::new(PluginRuntime::new(PLUGIN_WASM, None, Limits::default()).expect("runtime"));
    let n = 20_000;
    println!(
        "plugin under wasmtime (release, {} cores):",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    if runs("instantiation") {
        // A store and an instance from the warm pool, nothing called.
        let instantiate = micros_per_call(n, || {
            plugin.call(
                "bench",
                records.clone(),
                wechat.clone(),
                handle.clone(),
                |_, _| Ok(()),
            )
        })
        .expect("instantiate");
        println!("  instantiation from the warm pool   {instantiate:>8.1} µs   (goal < 50)");
    }

    if runs("preview") {
        // Through wasm on one instance, and natively with the same store.
        let preview_wasm = |kind: &str, name: &str| {
            let request: CodeRequest = request_of(kind, name);
            plugin
                .call(
                    "bench",
                    records.clone(),
                    wechat.clone(),
                    handle.clone(),
                    |p, store| {
                        let codes = p.promolens_codes_codes();
                        micros_per_call(n, || {
                            let answer = codes.call_preview(&mut *store, &request)?;
                            assert_eq!(answer.is_ok(), !name.is_empty(), "preview: {answer:?}");
                            Ok(())
                        })
                    },
                )
                .expect("preview")
        };
        let host = native::StoreHost {
            records: records.clone(),
            handle: handle.clone(),
            project: "bench".into(),
        };
        let preview_native = |kind: &str, name: &str| {
            let request: promolens_plugin::bindings::promolens::codes::types::CodeRequest =
                request_of(kind, name);
            micros_per_call(n, || {
                let answer = promolens_plugin::service::preview(&host, &request);
                assert_eq!(answer.is_ok(), !name.is_empty());
                std::hint::black_box(answer).ok();
                Ok::<(), ()>(())
            })
            .expect("native")
        };
        for (label, kind, name) in [
            ("A (reads the quota)", "A", "Poster"),
            ("B (no host call)   ", "B", "Poster"),
            ("refused at once    ", "B", ""),
        ] {
            let (wasm, native) = (preview_wasm(kind, name), preview_native(kind, name));
            println!("  preview {label}, through wasm  {wasm:>8.1} µs   (goal < 20)");
            println!("  preview {label}, natively      {native:>8.1} µs");
            println!(
                "  preview {label}, wasm / native {:>8.2} ×    (goal ≤ 3)",
                wasm / native
            );
        }
    }

    if runs("create") {
        // Through the host: a fresh instance per call, records in memory, WeChat excluded.
        let codes = Codes::new(plugin.clone(), records.clone(), wechat.clone());
        runtime.block_on(async {
            codes
                .register_authorization("bench", "wx0123456789abcdef")
                .await
                .expect("authorize")
        });
        let started_one = Instant::now();
        for _ in 0..500 {
            runtime
                .block_on(codes.create("bench", request()))
                .expect("create");
        }
        let create_one = per_call(started_one.elapsed(), 500);
        let creates = 5_000u32;
        let started = Instant::now();
        runtime.block_on(async {
            let workers = 4;
            let mut tasks = Vec::new();
            for _ in 0..workers {
                let codes = codes.clone();
                tasks.push(tokio::spawn(async move {
                    for _ in 0..creates / workers {
                        codes.create("bench", request()).await.expect("create");
                    }
                }));
            }
            for task in tasks {
                task.await.expect("task");
            }
        });
        let per_second = f64::from(creates) / started.elapsed().as_secs_f64();
        println!(
            "  create, one at a time               {create_one:>8.1} µs per call (WeChat excluded)"
        );
        println!("  create, 4 concurrent callers        {per_second:>8.0} calls/s");
    }
}
