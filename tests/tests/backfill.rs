//! Backfill of files in no particular order: every event stored once, in its day, each day in one
//! file sorted by time, whatever the order of the lines and however small the buffer.

use std::path::Path;

use promolens_tests::python_json;

/// Midnight of 2025-11-01 in Asia/Shanghai (the default time zone), epoch ms.
const NOV_1: i64 = 1_761_926_400_000;
const DAY_MS: i64 = 86_400_000;

/// `days` days of `per_day` events each, in time order, one line each.
fn events(days: i64, per_day: i64) -> Vec<String> {
    (0..days * per_day)
        .map(|i| {
            let day = i / per_day;
            let ts = NOV_1 + day * DAY_MS + (i % per_day) * (DAY_MS / per_day);
            let ts = if i % 3 == 0 {
                // Some senders send RFC 3339 text.
                chrono::DateTime::from_timestamp_millis(ts)
                    .unwrap()
                    .with_timezone(&chrono_tz::Asia::Shanghai)
                    .to_rfc3339()
            } else {
                ts.to_string()
            };
            let ts = if ts.contains('T') {
                format!("\"{ts}\"")
            } else {
                ts
            };
            format!(
                r#"{{"event_id":"e{i}","user_id":"u{}","ts":{ts},"query":{{"utm_source":"s{}"}}}}"#,
                i % 97,
                i % 5
            )
        })
        .collect()
}

/// The lines in a fixed pseudo-random order, with retries (a line again, later) and a bad line.
fn shuffled(mut lines: Vec<String>) -> Vec<String> {
    let mut state = 42u64;
    for i in (1..lines.len()).rev() {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        lines.swap(i, (state >> 33) as usize % (i + 1));
    }
    let retries: Vec<String> = lines.iter().step_by(50).cloned().collect();
    lines.extend(retries);
    lines.insert(lines.len() / 2, "{not json".to_string());
    lines
}

const DUCKDB_LAYOUT: &str = r#"
import duckdb, json, sys
glob = sys.argv[1] + '/launch_events/**/*.parquet'
con = duckdb.connect()
con.execute("SET TimeZone = 'Asia/Shanghai'")
rows, ids = con.execute(f"SELECT count(*), count(DISTINCT event_id) FROM read_parquet('{glob}')").fetchone()
wrong_day = con.execute(f"""
SELECT count(*) FROM read_parquet('{glob}', hive_partitioning = true)
WHERE strftime(event_time, '%Y-%m-%d') <> dt::VARCHAR""").fetchone()[0]
out_of_order = con.execute(f"""
SELECT count(*) FROM (
  SELECT event_time < lag(event_time) OVER (PARTITION BY filename ORDER BY file_row_number) AS back
  FROM read_parquet('{glob}', filename = true, file_row_number = true))
WHERE back""").fetchone()[0]
files = con.execute(f"""
SELECT dt::VARCHAR, count(DISTINCT filename) FROM read_parquet('{glob}', hive_partitioning = true, filename = true)
GROUP BY dt ORDER BY dt""").fetchall()
print(json.dumps({"rows": rows, "ids": ids, "wrong_day": wrong_day, "out_of_order": out_of_order,
                  "files": [f[1] for f in files]}))
"#;

fn backfill(data: &str, file: &Path, buffer_rows: &str) -> String {
    promolens_tests::backfill(data, "p", file, &["--buffer-rows", buffer_rows])
}

#[test]
fn a_shuffled_file_makes_one_sorted_file_per_day_with_every_event_once() {
    let dir = tempfile::tempdir().unwrap();
    let data_path = dir.path().join("data");
    let data = data_path.to_str().unwrap();
    let all = events(6, 400);
    let file = dir.path().join("shuffled.ndjson");
    std::fs::write(&file, shuffled(all.clone()).join("\n") + "\n").unwrap();
    // 200 rows per flush: every flush brings each day a small piece.
    let out = backfill(data, &file, "200");
    assert!(
        out.contains("accepted 2400 · duplicates 48 · rejected 1"),
        "{out}"
    );
    let layout = python_json(DUCKDB_LAYOUT, &[data]);
    assert_eq!(layout["rows"], 2400, "{layout}");
    assert_eq!(layout["ids"], 2400, "{layout}");
    assert_eq!(layout["wrong_day"], 0, "{layout}");
    assert_eq!(layout["out_of_order"], 0, "{layout}");
    assert_eq!(
        layout["files"],
        serde_json::json!([1, 1, 1, 1, 1, 1]),
        "{layout}"
    );

    // Again: nothing is stored twice.
    let out = backfill(data, &file, "200");
    assert!(out.contains("accepted 0 · duplicates 2448"), "{out}");
    assert_eq!(python_json(DUCKDB_LAYOUT, &[data])["rows"], 2400);
}

#[test]
fn a_time_ordered_file_with_a_small_buffer_keeps_every_event_once_and_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let data_path = dir.path().join("data");
    let data = data_path.to_str().unwrap();
    let file = dir.path().join("ordered.ndjson");
    std::fs::write(&file, events(4, 300).join("\n") + "\n").unwrap();
    let out = backfill(data, &file, "128");
    assert!(
        out.contains("accepted 1200 · duplicates 0 · rejected 0"),
        "{out}"
    );
    let layout = python_json(DUCKDB_LAYOUT, &[data]);
    assert_eq!(layout["rows"], 1200, "{layout}");
    assert_eq!(layout["ids"], 1200, "{layout}");
    assert_eq!(layout["wrong_day"], 0, "{layout}");
    assert_eq!(layout["out_of_order"], 0, "{layout}");
    // Each day's pieces wait in the spill until the input moves on to the next day.
    assert_eq!(layout["files"], serde_json::json!([1, 1, 1, 1]), "{layout}");
}
