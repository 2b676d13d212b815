//! First touch is kept at ingest (`user_first_seen`): launches that arrive late still move a
//! user's first launch back, compaction merges the per-flush rows, and the table can be rebuilt
//! from the launches when it is missing.

use std::path::Path;

use promolens_tests::{promolens, stdout_of};
use serde_json::Value;

const NOW: &str = "2025-11-24T12:00:00+08:00";

fn backfill(data: &str, dir: &Path, name: &str, lines: &str) {
    let file = dir.join(name);
    std::fs::write(&file, lines).unwrap();
    promolens_tests::backfill(data, "p", &file, &[]);
}

/// `(utm_source, new_users, users)` rows of the past 7 days.
fn acquisition(data: &str) -> Vec<(String, u64, u64)> {
    let out = stdout_of(&promolens(&[
        "acquisition",
        "--data",
        data,
        "--project",
        "p",
        "--by",
        "utm_source",
        "--now",
        NOW,
        "--format",
        "json",
    ]));
    let rows: Vec<Value> = serde_json::from_str(&out).unwrap();
    rows.iter()
        .map(|r| {
            (
                r["utm_source"].as_str().unwrap().to_string(),
                r["new_users"].as_u64().unwrap(),
                r["users"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn first_seen_files(data: &Path) -> usize {
    std::fs::read_dir(data.join("user_first_seen/project=p"))
        .map(|dir| {
            dir.filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                name.to_string_lossy().ends_with(".parquet")
            })
            .count()
        })
        .unwrap_or(0)
}

#[test]
fn first_touch_follows_late_launches_compaction_and_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let data_path = dir.path().join("data");
    let data = data_path.to_str().unwrap();
    backfill(
        data,
        dir.path(),
        "week.ndjson",
        r#"{"event_id":"w1","user_id":"u1","ts":"2025-11-20T10:00:00+08:00","query":{"utm_source":"gzh"}}
{"event_id":"w2","user_id":"u2","ts":"2025-11-21T10:00:00+08:00","query":{"utm_source":"gzh"}}
{"event_id":"w3","user_id":"u3","ts":"2025-11-22T10:00:00+08:00","query":{"utm_source":"poster"}}
"#,
    );
    assert_eq!(
        acquisition(data),
        [("gzh".into(), 2, 2), ("poster".into(), 1, 1)]
    );

    // Last month's launches of u1 and u3 arrive afterwards, in another run.
    backfill(
        data,
        dir.path(),
        "october.ndjson",
        r#"{"event_id":"o1","user_id":"u1","ts":"2025-10-01T10:00:00+08:00"}
{"event_id":"o3","user_id":"u3","ts":"2025-10-02T10:00:00+08:00"}
"#,
    );
    let corrected = vec![("gzh".to_string(), 1, 2), ("poster".to_string(), 0, 1)];
    assert_eq!(acquisition(data), corrected);
    assert_eq!(first_seen_files(&data_path), 2, "one file per flush");

    // Compaction merges them into one row per user, with the earliest time.
    let out = stdout_of(&promolens(&[
        "compact",
        "--data",
        data,
        "--grace-seconds",
        "0",
    ]));
    assert!(out.contains("3 users first seen"), "{out}");
    assert_eq!(first_seen_files(&data_path), 1);
    let rows = stdout_of(&promolens(&[
        "sql",
        "--data",
        data,
        "--format",
        "csv",
        "SELECT user_id, CAST(first_time AS VARCHAR) AS t FROM user_first_seen ORDER BY user_id",
    ]));
    assert_eq!(
        rows,
        "user_id,t\nu1,2025-10-01T02:00:00Z\nu2,2025-11-21T02:00:00Z\nu3,2025-10-02T02:00:00Z\n"
    );
    assert_eq!(acquisition(data), corrected);

    // Without the table every user of the week looks new; a rebuild from the launches repairs it.
    std::fs::remove_dir_all(data_path.join("user_first_seen")).unwrap();
    assert_eq!(
        acquisition(data),
        [("gzh".into(), 2, 2), ("poster".into(), 1, 1)]
    );
    let out = stdout_of(&promolens(&[
        "compact",
        "--data",
        data,
        "--rebuild-first-seen",
    ]));
    assert!(
        out.contains("rebuilt user_first_seen of project p: 3 users"),
        "{out}"
    );
    assert_eq!(acquisition(data), corrected);
}
