//! Embeds the plugin component and the web console (`web/dist`) in the binary, so that
//! `promolens` is one file.
//!
//! `PROMOLENS_PLUGIN_WASM` names an already built component (scripts/test builds it once for
//! the tests and passes it here). Otherwise this builds `plugin/` for `wasm32-wasip2` with a
//! nested cargo in its own target dir: sharing the outer build's target dir would wait forever
//! on its lock, and the outer build's flags are for the host, not for wasm.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("manifest dir"));
    let root = manifest.parent().expect("workspace root").to_path_buf();
    for watched in [
        "plugin/src",
        "plugin/Cargo.toml",
        "schemas/src",
        "schemas/wit",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    println!("cargo:rerun-if-env-changed=PROMOLENS_PLUGIN_WASM");
    let wasm = match std::env::var_os("PROMOLENS_PLUGIN_WASM") {
        Some(path) => PathBuf::from(path),
        None => build_plugin(&root, &out),
    };
    println!("cargo:rerun-if-changed={}", wasm.display());
    std::fs::copy(&wasm, out.join("promolens_plugin.wasm"))
        .unwrap_or_else(|e| panic!("copying {}: {e}", wasm.display()));
    embed_console(&root.join("web/dist"), &out.join("console_assets.rs"));
}

/// Writes `CONSOLE_ASSETS` (of `api::console::Embedded`): each file of the built console (committed in `web/dist`), by its
/// path, with its media type, its bytes, and the same gzipped when that is smaller (scripts,
/// styles, the page; not images): compressed once here rather than on every request.
fn embed_console(dist: &Path, generated: &Path) {
    println!("cargo:rerun-if-changed={}", dist.display());
    let mut files = Vec::new();
    collect_files(dist, &mut files);
    files.sort();
    let gzipped_dir = generated.with_file_name("console_gzip");
    std::fs::create_dir_all(&gzipped_dir).expect("creating the folder of gzipped assets");
    let mut code = String::from("static CONSOLE_ASSETS: &[Embedded] = &[\n");
    for file in files {
        let name = file
            .strip_prefix(dist)
            .expect("under dist")
            .to_string_lossy()
            .replace('\\', "/");
        let media_type = match file.extension().and_then(|e| e.to_str()) {
            Some("html") => "text/html; charset=utf-8",
            Some("js") => "text/javascript; charset=utf-8",
            Some("css") => "text/css; charset=utf-8",
            Some("svg") => "image/svg+xml",
            Some("png") => "image/png",
            Some("ico") => "image/x-icon",
            Some("json") => "application/json",
            Some("woff2") => "font/woff2",
            _ => "application/octet-stream",
        };
        let bytes =
            std::fs::read(&file).unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
        let gzipped = gzip(&bytes);
        let gzipped = if gzipped.len() < bytes.len() * 9 / 10 {
            let path = gzipped_dir.join(format!("{}.gz", name.replace('/', "__")));
            std::fs::write(&path, gzipped).expect("writing a gzipped asset");
            format!("Some(include_bytes!({:?}))", path.display().to_string())
        } else {
            "None".to_string()
        };
        code.push_str(&format!(
            "    Embedded {{ path: {name:?}, media_type: {media_type:?}, bytes: include_bytes!({:?}), \
             gzipped: {gzipped} }},\n",
            file.display().to_string()
        ));
    }
    code.push_str("];\n");
    std::fs::write(generated, code).expect("writing the console's asset table");
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).expect("gzip in memory");
    encoder.finish().expect("gzip in memory")
}

fn collect_files(dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            println!("cargo:rerun-if-changed={}", path.display());
            collect_files(&path, files);
        } else {
            files.push(path);
        }
    }
}

fn build_plugin(root: &Path, out: &Path) -> PathBuf {
    let target_dir = out.join("plugin-target");
    let rustup_has_target = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l == "wasm32-wasip2")
        })
        .unwrap_or(true);
    if !rustup_has_target {
        let added = Command::new("rustup")
            .args(["target", "add", "wasm32-wasip2"])
            .status();
        assert!(
            added.is_ok_and(|s| s.success()),
            "the plugin needs the wasm32-wasip2 target: rustup target add wasm32-wasip2"
        );
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(root)
        .args([
            "build",
            "-p",
            "promolens-plugin",
            "--target",
            "wasm32-wasip2",
            "--profile",
            "plugin",
            "--locked",
        ])
        .env("CARGO_TARGET_DIR", &target_dir)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_MAKEFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .status()
        .expect("running cargo for the plugin");
    assert!(status.success(), "building the plugin component failed");
    target_dir.join("wasm32-wasip2/plugin/promolens_plugin.wasm")
}
