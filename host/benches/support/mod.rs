//! What the bench binaries share: where their data lives, the Python with DuckDB, running a
//! command and measuring it.

#![allow(dead_code)] // Each bench uses its own part.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

pub const PROMOLENS: &str = env!("CARGO_BIN_EXE_promolens");

pub fn work_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("promolens-bench");
    std::fs::create_dir_all(&dir).expect("bench dir");
    dir
}

pub fn python() -> PathBuf {
    std::env::var_os("PROMOLENS_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default())
                .join(".cache/promolens/venv/bin/python")
        })
}

/// Runs a command to completion; returns wall time and peak RSS (bytes) of the process.
pub fn measure(command: &mut Command) -> (Duration, u64) {
    let started = Instant::now();
    let child = command.spawn().expect("spawn");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: plain syscall on our own child; rusage is written by the kernel.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let elapsed = started.elapsed();
    assert_eq!(waited, pid, "wait4 failed");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{command:?} failed with status {status}"
    );
    std::mem::forget(child);
    (elapsed, usage.ru_maxrss as u64 * 1024)
}

pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// `promolens ARGS` to completion, as the operator runs it (not measured); its stdout.
pub fn operator(args: &[&str]) -> String {
    let output = Command::new(PROMOLENS)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("promolens");
    assert!(
        output.status.success(),
        "promolens {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}
