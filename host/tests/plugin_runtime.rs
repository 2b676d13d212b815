//! The plugin component under the host's wasmtime runtime: calls reach the plugin's logic and its
//! records land under the data directory, one project apart from another; a component that
//! loops, hoards memory, panics or reaches for WASI is stopped with a clear error in bounded
//! time while other calls keep being served; the compiled component is cached on disk.
//!
//! The misbehaving component is built by `scripts/test` (`--target wasm32-wasip2 --profile plugin`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use promolens::codes::imports::WechatGateway;
use promolens::codes::records::RecordStore;
use promolens::codes::runtime::{ComponentCache, Limits, PluginRuntime, SandboxError};
use promolens::codes::{
    CodeImage, CodeKind, CodeRequest, Codes, CodesError, PLUGIN_WASM, PluginError, WechatEndpoint,
};

/// A component built beside the plugin (the misbehaving one):
/// `<target>/wasm32-wasip2/plugin/<name>.wasm`. The plugin itself is the embedded [`PLUGIN_WASM`].
fn component(name: &str) -> Vec<u8> {
    let exe = std::env::current_exe().unwrap();
    // <target>/debug/deps/<test> → <target>
    let target = exe.ancestors().nth(3).unwrap().to_path_buf();
    let path: PathBuf = std::env::var_os("PROMOLENS_COMPONENTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| target.join("wasm32-wasip2/plugin"))
        .join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; build it with `cargo build -p {} --target wasm32-wasip2 --profile plugin` (scripts/test does)",
            path.display(),
            name.replace('_', "-")
        )
    })
}

/// Answers every call with the body it was sent, as an "image".
struct EchoWechat;

#[async_trait::async_trait]
impl WechatGateway for EchoWechat {
    async fn call(
        &self,
        _project: &str,
        _endpoint: WechatEndpoint,
        body: &str,
    ) -> Result<CodeImage, PluginError> {
        Ok(CodeImage {
            content_type: "image/png".into(),
            bytes: body.as_bytes().to_vec(),
        })
    }
}

fn codes(wasm: &[u8], data: &std::path::Path, limits: Limits) -> Codes {
    let runtime = PluginRuntime::new(wasm, None, limits).unwrap();
    let storage = promolens_ingest::Storage::open(data.to_str().unwrap()).unwrap();
    Codes::new(
        Arc::new(runtime),
        Arc::new(RecordStore::new(storage)),
        Arc::new(EchoWechat),
    )
}

fn request(kind: CodeKind, source: &str) -> CodeRequest {
    serde_json::from_value(serde_json::json!({
        "name": "Poster",
        "kind": match kind { CodeKind::A => "A", CodeKind::B => "B", CodeKind::C => "C" },
        "page": "pages/index/index",
        "utm": {"source": source, "medium": null, "campaign": "双11", "content": null, "term": null},
        "params": [],
        "image": {"width": null, "auto_color": false, "line_color": null, "is_hyaline": false,
                  "env_version": null, "check_path": null}
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn codes_live_in_the_data_directory_one_project_apart() {
    let dir = tempfile::tempdir().unwrap();
    let codes = codes(PLUGIN_WASM, dir.path(), Limits::default());
    let preview = codes
        .preview("shop", request(CodeKind::A, "gzh"))
        .await
        .unwrap();
    assert_eq!(
        preview.encoding.path.as_deref(),
        Some("pages/index/index?utm_source=gzh&utm_campaign=%E5%8F%8C11&c=********")
    );
    match codes.create("shop", request(CodeKind::A, "gzh")).await {
        Err(CodesError::Plugin(PluginError::NotAuthorized(_))) => {}
        other => panic!("{other:?}"),
    }
    codes
        .register_authorization("shop", "wx0123456789abcdef")
        .await
        .unwrap();
    let code = codes
        .create("shop", request(CodeKind::B, "gzh"))
        .await
        .unwrap();
    assert_eq!(code.encoding.scene, Some(format!("c={}", code.id)));
    assert!(
        dir.path()
            .join(format!("codes/codes/project=shop/{}", code.id))
            .exists()
    );
    assert_eq!(codes.list("shop", false).await.unwrap().len(), 1);
    assert!(codes.list("other", true).await.unwrap().is_empty());
    match codes.get("other", &code.id).await {
        Err(CodesError::Plugin(PluginError::NotFound(_))) => {}
        other => panic!("another project must not see the code: {other:?}"),
    }
    let image = codes.image("shop", &code.id).await.unwrap();
    assert!(String::from_utf8(image.bytes).unwrap().contains(&code.id));
    codes.rename("shop", &code.id, "Renamed").await.unwrap();
    codes.delete("shop", &code.id).await.unwrap();
    match codes.image("shop", &code.id).await {
        Err(CodesError::Plugin(PluginError::Deleted(m))) => assert!(m.contains("Renamed")),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_misbehaving_component_is_stopped_and_the_host_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        memory_bytes: 32 << 20,
        fuel: 200_000_000,
        instances: 8,
    };
    let bad = codes(&component("promolens_misbehave"), dir.path(), limits);
    let good = codes(PLUGIN_WASM, dir.path(), limits);

    let started = Instant::now();
    let (looped, hoarded, panicked, wasi, served) = tokio::join!(
        bad.preview("p", request(CodeKind::A, "x")),
        bad.create("p", request(CodeKind::A, "x")),
        bad.get("p", "abc"),
        bad.quota("p"),
        good.preview("p", request(CodeKind::C, "gzh")),
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "stopped in bounded time"
    );
    assert!(
        matches!(
            looped,
            Err(CodesError::Sandbox(SandboxError::CpuLimit {
                fuel: 200_000_000
            }))
        ),
        "{looped:?}"
    );
    match hoarded {
        Err(CodesError::Sandbox(e @ SandboxError::MemoryLimit { .. })) => {
            assert!(
                e.to_string().contains("memory limit (33554432 bytes)"),
                "{e}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(
            &panicked,
            Err(CodesError::Sandbox(SandboxError::Trapped(_)))
        ),
        "{panicked:?}"
    );
    assert!(
        matches!(&wasi, Err(CodesError::Sandbox(SandboxError::Trapped(m))) if m.contains("environment")),
        "a WASI import is not granted: {wasi:?}"
    );
    assert!(served.is_ok(), "{served:?}");
    // The same runtime serves the next call normally.
    assert!(bad.list("p", false).await.unwrap().is_empty());
}

#[test]
fn the_compiled_component_is_cached_by_hash_and_loaded_only_when_its_tag_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = PLUGIN_WASM;
    let cache = ComponentCache::open(dir.path().to_path_buf(), Some([1; 32])).unwrap();
    PluginRuntime::new(wasm, Some(&cache), Limits::default()).unwrap();
    let cached: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(cached.len(), 1, "{cached:?}");
    let name = cached[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(
        name.starts_with("plugin-") && name.ends_with(".cwasm"),
        "{name}"
    );
    let signed = std::fs::read(&cached[0]).unwrap();
    // Loaded again as it is.
    PluginRuntime::new(wasm, Some(&cache), Limits::default()).unwrap();
    assert_eq!(std::fs::read(&cached[0]).unwrap(), signed);
    // A damaged cache entry is compiled again, not trusted.
    std::fs::write(&cached[0], b"not a compiled component").unwrap();
    PluginRuntime::new(wasm, Some(&cache), Limits::default()).unwrap();
    assert_eq!(std::fs::read(&cached[0]).unwrap(), signed);
    // One byte of the compiled code changed (its tag kept): refused, compiled again.
    let mut tampered = signed.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    std::fs::write(&cached[0], &tampered).unwrap();
    PluginRuntime::new(wasm, Some(&cache), Limits::default()).unwrap();
    assert_eq!(std::fs::read(&cached[0]).unwrap(), signed);
    // A cache with another key (someone without PROMOLENS_SECRET_KEY wrote it) is not trusted.
    let other = ComponentCache::open(dir.path().to_path_buf(), Some([2; 32])).unwrap();
    PluginRuntime::new(wasm, Some(&other), Limits::default()).unwrap();
    assert_ne!(std::fs::read(&cached[0]).unwrap(), signed);
    // Without a configured key, the folder's own key (owner-only) signs.
    let own = tempfile::tempdir().unwrap();
    let cache = ComponentCache::open(own.path().to_path_buf(), None).unwrap();
    PluginRuntime::new(wasm, Some(&cache), Limits::default()).unwrap();
    let key = own.path().join(".key");
    assert_eq!(std::fs::read(&key).unwrap().len(), 32);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{mode:o}");
    }
}
