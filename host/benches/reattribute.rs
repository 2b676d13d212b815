//! `promolens reattribute` of a year against the backfill of the same events (issue 14), measured
//! in the same run:
//!
//! ```sh
//! cargo bench -p promolens --bench reattribute
//! ```
//!
//! The year of the analysis bench (10M launches over 365 days and their signups and purchases,
//! `promolens gen --core-events`, time-ordered NDJSON) goes to two data directories. In one,
//! the project's attribution settings (aliases, normalisation) are set first and the file is
//! backfilled: the launches are decoded with them as they arrive (timed: the backfill). In the
//! other, the file is backfilled with the defaults, the same settings are set, and every day is
//! decoded again (timed: reattribute). Before any time is printed, DuckDB checks that both
//! directories hold the same launches with the same attribution columns, each once.
//!
//! Needs the Python with DuckDB that `scripts/test` installs (`PROMOLENS_PYTHON`). The
//! generated file is the analysis bench's, kept under the bench's target folder and reused.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use support::{PROMOLENS, measure, operator, python, work_dir};

/// Settings that change stored values: aliases for three fields, normalisation of two.
fn settings() -> Value {
    json!({
        "aliases": {
            "utm_source": ["utm_source", "src", "_um_channel", "gio_utm_source"],
            "utm_medium": ["utm_medium", "gio_utm_medium"],
            "utm_campaign": ["utm_campaign", "mtm_campaign", "gio_utm_campaign"],
        },
        "normalize": {
            "utm_source": {"trim": true, "lowercase": true,
                           "values": {"微信": "wechat", "weixin": "wechat"}},
            "utm_medium": {"trim": true, "lowercase": true},
        },
    })
}

const DUCKDB_SAME: &str = r#"
import duckdb, json, sys
con = duckdb.connect()
con.execute("SET enable_progress_bar = false")
def rows(data):
    return f"""SELECT event_id, event_time, code_id, code_kind, utm_source, utm_medium, utm_campaign,
                      utm_content, utm_term, attribution, settings_version
               FROM read_parquet('{data}/launch_events/**/*.parquet')"""
a, b = sys.argv[1], sys.argv[2]
count_a, ids_a = con.execute(f"SELECT count(*), count(DISTINCT event_id) FROM ({rows(a)})").fetchone()
count_b = con.execute(f"SELECT count(*) FROM ({rows(b)})").fetchone()[0]
differ = con.execute(f"SELECT count(*) FROM (({rows(a)} EXCEPT ALL {rows(b)}) UNION ALL ({rows(b)} EXCEPT ALL {rows(a)}))").fetchone()[0]
print(json.dumps({"rows": count_a, "ids": ids_a, "other_rows": count_b, "differ": differ}))
"#;

/// The generated year (made by the analysis bench if it is not there yet).
fn year() -> std::path::PathBuf {
    let path = work_dir().join("events-10m-year-core.ndjson");
    assert!(
        path.exists(),
        "{} is missing: run `cargo bench -p promolens --bench analysis` once first",
        path.display()
    );
    path
}

fn fresh(name: &str) -> String {
    let dir = work_dir().join(name);
    let _ = std::fs::remove_dir_all(&dir);
    let dir = dir.to_str().unwrap().to_string();
    operator(&["projects", "--data", &dir, "create", "bench"]);
    dir
}

fn set_settings(data: &str) {
    let file = work_dir().join("reattribute-settings.json");
    std::fs::write(&file, settings().to_string()).expect("settings file");
    operator(&[
        "settings",
        "--data",
        data,
        "--project",
        "bench",
        "set",
        file.to_str().unwrap(),
        "--version",
        "0",
    ]);
}

fn backfill(data: &str, file: &Path) -> Duration {
    measure(
        Command::new(PROMOLENS)
            .args(["backfill", "--data", data, "--project", "bench"])
            .arg(file)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
    .0
}

fn main() {
    let file = year();
    // Decoded with the settings at ingest: the backfill.
    let at_ingest = fresh("reattribute-at-ingest");
    set_settings(&at_ingest);
    let backfill_took = backfill(&at_ingest, &file);
    // Decoded with the defaults, then again with the settings: reattribute.
    let again = fresh("reattribute-again");
    backfill(&again, &file);
    set_settings(&again);
    let (reattribute_took, peak) = measure(
        Command::new(PROMOLENS)
            .args(["reattribute", "--data", &again, "--project", "bench"])
            .args(["--from", "2020-01-01", "--grace-seconds", "0"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null()),
    );
    let output = Command::new(python())
        .args(["-c", DUCKDB_SAME, &at_ingest, &again])
        .output()
        .expect("python");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let same: Value = serde_json::from_slice(&output.stdout).expect("DuckDB's answer");
    let rows = same["rows"].as_u64().unwrap_or(0);
    assert!(rows > 0, "no launches stored: {same}");
    assert_eq!(
        same,
        json!({"rows": rows, "ids": rows, "other_rows": rows, "differ": 0}),
        "reattribute and the backfill with the settings stored different launches"
    );
    let (b, r) = (backfill_took.as_secs_f64(), reattribute_took.as_secs_f64());
    println!(
        "A year's launches decoded with new attribution settings ({rows} launches, 365 days; the \
         same rows from both, checked by DuckDB):"
    );
    println!(
        "  backfill of the NDJSON with the settings   {b:>7.1} s  ({:>9.0} launches/s)",
        rows as f64 / b
    );
    println!(
        "  reattribute of the stored days             {r:>7.1} s  ({:>9.0} launches/s, peak {:.0} MiB)  ratio {:.2}",
        rows as f64 / r,
        support::mib(peak),
        b / r
    );
}
