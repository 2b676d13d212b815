//! Events in over HTTP and by backfill (duplicates, bad lines, gzip, both sides of a midnight in
//! Asia/Shanghai, users first seen before the window), numbers out — checked against DuckDB
//! computing the same definitions over the raw NDJSON, and DuckDB reading the Parquet layout.

use std::collections::BTreeSet;
use std::path::Path;

use promolens_tests::{Server, gzip, percent_encode as encode, promolens, python_json, stdout_of};
use serde_json::{Value, json};

/// 2025-11-17 00:00 and 2025-11-24 00:00 in Asia/Shanghai: the past 7 days on 2025-11-24.
const WINDOW_START: i64 = 1_763_308_800_000;
const WINDOW_END: i64 = 1_763_913_600_000;
const NOW: &str = "2025-11-24T10:00:00+08:00";
/// 2025-11-01 00:00 +08:00.
const HISTORY_START: i64 = 1_761_926_400_000;

fn launch(id: &str, user: &str, ts: i64, source: Option<&str>, campaign: Option<&str>) -> String {
    let mut query = serde_json::Map::new();
    if let Some(s) = source {
        query.insert("utm_source".into(), json!(encode(s)));
    }
    if let Some(c) = campaign {
        query.insert("utm_campaign".into(), json!(encode(c)));
    }
    json!({"event_id": id, "user_id": user, "ts": ts, "scene": 1047, "query": query, "launch_type": "cold"})
        .to_string()
}

/// The test's events, deterministic: 1500 random ones and the edge cases.
fn events() -> Vec<String> {
    let sources = [
        Some("gzh"),
        Some("公众号"),
        Some("partner"),
        Some("海报 A"),
        None,
    ];
    let campaigns = [Some("双11"), Some("spring"), None];
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let step = 24 * 86_400_000 / 1500;
    let mut out: Vec<String> = (0..1500)
        .map(|i: i64| {
            let ts = HISTORY_START + ((i * 7919) % 1500) * step + i % 997;
            let user = format!("u{}", next() % 200);
            let source = sources[(next() % 5) as usize];
            let campaign = campaigns[(next() % 3) as usize];
            launch(&format!("e{i}"), &user, ts, source, campaign)
        })
        .collect();
    // First touch one millisecond before the window (2025-11-16 23:59:59.999 +08:00), back at
    // the window's first millisecond through another source: a user, not a new user.
    out.push(launch(
        "edge-before",
        "edge1",
        WINDOW_START - 1,
        Some("gzh"),
        None,
    ));
    out.push(launch(
        "edge-start",
        "edge1",
        WINDOW_START,
        Some("partner"),
        Some("spring"),
    ));
    // Last millisecond of the window, and the first of today (outside).
    out.push(launch(
        "edge-end-in",
        "edge2",
        WINDOW_END - 1,
        Some("海报 A"),
        Some("双11"),
    ));
    out.push(launch(
        "edge-end-out",
        "edge3",
        WINDOW_END,
        Some("gzh"),
        Some("双11"),
    ));
    // Acquired long ago through a campaign, back in the window without parameters.
    out.push(launch(
        "old-1",
        "old",
        HISTORY_START + 3_600_000,
        Some("old_src"),
        None,
    ));
    out.push(launch(
        "old-2",
        "old",
        WINDOW_START + 86_400_000,
        None,
        None,
    ));
    out
}

const BAD_LINES: [&str; 3] = [
    r#"{"event_id":"bad-1","ts":1763308800000}"#,
    r#"{"event_id":"bad-2","user_id":"x","ts":"not a time"}"#,
    "{not json",
];

const DUCKDB_ACQUISITION: &str = r#"
import duckdb, json, sys
path, start, end = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
con = duckdb.connect()
con.execute(f"""
CREATE TABLE raw AS SELECT * FROM read_json('{path}', format = 'newline_delimited',
    columns = {{event_id: 'VARCHAR', user_id: 'VARCHAR', ts: 'BIGINT',
               query: 'STRUCT(utm_source VARCHAR, utm_campaign VARCHAR)'}});
CREATE TABLE ev AS
  SELECT event_id, user_id, ts,
         nullif(url_decode(query.utm_source), '') AS src,
         nullif(url_decode(query.utm_campaign), '') AS camp
  FROM raw QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY ts) = 1;
""")
rows = con.execute("""
WITH labelled AS (
    SELECT *, coalesce(src, '(unattributed)') AS s,
           CASE WHEN src IS NULL THEN '(unattributed)' ELSE coalesce(camp, '(not set)') END AS c
    FROM ev),
first_touch AS (SELECT user_id, min(ts) AS first_ts, arg_min(s, ts) AS s, arg_min(c, ts) AS c
                FROM labelled GROUP BY user_id),
active AS (SELECT s, c, count(DISTINCT user_id) AS users, count(*) AS launches
           FROM labelled WHERE ts >= $1 AND ts < $2 GROUP BY s, c),
fresh AS (SELECT s, c, count(*) AS new_users FROM first_touch
          WHERE first_ts >= $1 AND first_ts < $2 GROUP BY s, c)
SELECT active.s, active.c, coalesce(new_users, 0), users, launches
FROM active LEFT JOIN fresh ON active.s = fresh.s AND active.c = fresh.c
""", [start, end]).fetchall()
print(json.dumps(sorted(rows)))
"#;

const DUCKDB_PARQUET: &str = r#"
import duckdb, json, sys
glob = sys.argv[1] + '/launch_events/**/*.parquet'
con = duckdb.connect()
rows = con.execute(f"""
SELECT event_id, count(*) AS copies, any_value(dt)::VARCHAR AS dt, any_value(project) AS project
FROM read_parquet('{glob}', hive_partitioning = true) GROUP BY event_id
""").fetchall()
print(json.dumps({r[0]: [r[1], r[2], r[3]] for r in rows}))
"#;

fn rows_of(answer: &Value) -> Vec<Value> {
    let mut rows: Vec<Value> = answer
        .as_array()
        .expect("array of rows")
        .iter()
        .map(|r| {
            json!([
                r["utm_source"],
                r["utm_campaign"],
                r["new_users"],
                r["users"],
                r["launches"]
            ])
        })
        .collect();
    rows.sort_by_key(|r| r.to_string());
    rows
}

fn write_lines(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

#[test]
fn acquisition_matches_duckdb_over_the_raw_events() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let data = data_dir.to_str().unwrap();
    let all = events();

    // Live: events 0..800 in batches of 100 (one gzip, one JSON array), each with a bad line.
    let keys = promolens_tests::provision(data, "shop");
    let server = Server::start(data, &["--flush-seconds", "0.2"], &[]);
    for (n, chunk) in all[..800].chunks(100).enumerate() {
        let mut lines = chunk.to_vec();
        // A JSON array must stay valid JSON as a whole: its bad element is a wrong event instead.
        let bad = if n == 5 {
            BAD_LINES[1]
        } else {
            BAD_LINES[n % 3]
        };
        lines.insert(7, bad.to_string());
        let (status, answer) = match n {
            3 => server.ingest("shop", gzip(lines.join("\n").as_bytes()), true),
            5 => server.ingest("shop", format!("[{}]", lines.join(",")).into_bytes(), false),
            _ => server.ingest("shop", lines.join("\n").into_bytes(), false),
        };
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["accepted"], 100, "{answer}");
        assert_eq!(answer["rejected"][0]["index"], 7, "{answer}");
    }
    assert!(server.terminate().success());

    // Backfill: 700.. (overlapping the live events) as .gz with bad lines, then a plain file
    // repeating live events.
    let mut backfill_lines = all[700..].to_vec();
    backfill_lines.insert(10, BAD_LINES[0].to_string());
    backfill_lines.insert(20, BAD_LINES[2].to_string());
    let gz_path = dir.path().join("history.ndjson.gz");
    std::fs::write(
        &gz_path,
        gzip((backfill_lines.join("\n") + "\n").as_bytes()),
    )
    .unwrap();
    let plain_path = dir.path().join("again.ndjson");
    write_lines(&plain_path, &all[..50]);
    let out = stdout_of(&promolens(&[
        "backfill",
        "--data",
        data,
        "--project",
        "shop",
        gz_path.to_str().unwrap(),
        plain_path.to_str().unwrap(),
    ]));
    let expected_new = all.len() - 800;
    assert!(
        out.contains(&format!(
            "accepted {expected_new} · duplicates 150 · rejected 2"
        )),
        "{out}"
    );

    // promolens' answer.
    let ours: Value = serde_json::from_str(&stdout_of(&promolens(&[
        "acquisition",
        "--data",
        data,
        "--project",
        "shop",
        "--by",
        "utm_source,utm_campaign",
        "--now",
        NOW,
        "--format",
        "json",
    ])))
    .unwrap();

    // DuckDB's, from the raw events (with their duplicates) and the same definitions.
    let raw = dir.path().join("raw.ndjson");
    let mut with_duplicates = all.clone();
    with_duplicates.extend_from_slice(&all[700..800]);
    with_duplicates.extend_from_slice(&all[..50]);
    write_lines(&raw, &with_duplicates);
    let theirs = python_json(
        DUCKDB_ACQUISITION,
        &[
            raw.to_str().unwrap(),
            &WINDOW_START.to_string(),
            &WINDOW_END.to_string(),
        ],
    );
    let mut theirs: Vec<Value> = theirs.as_array().unwrap().clone();
    theirs.sort_by_key(|r| r.to_string());
    assert_eq!(rows_of(&ours), theirs);

    // Spot checks that do not depend on either engine.
    let ours_rows = ours.as_array().unwrap();
    let row = |s: &str, c: &str| {
        ours_rows
            .iter()
            .find(|r| r["utm_source"] == s && r["utm_campaign"] == c)
            .cloned()
    };
    assert!(
        row("old_src", "(not set)").is_none(),
        "first touch before the window is not in it"
    );
    assert!(row("gzh", "双11").is_some());

    // The HTTP answer is the CLI's.
    let server = Server::start(data, &[], &[]);
    let http: Value = promolens_tests::http_client()
        .get(format!(
            "{}/v1/projects/shop/acquisition?by=utm_source,utm_campaign&now={}",
            server.url,
            encode(NOW)
        ))
        .bearer_auth(&keys.analyst)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(http["window"]["from"], "2025-11-17");
    assert_eq!(http["window"]["to"], "2025-11-23");
    assert_eq!(rows_of(&http["rows"]), rows_of(&ours));
    drop(server);

    // DuckDB reads the layout as is: every valid event exactly once, in the right day.
    let stored = python_json(DUCKDB_PARQUET, &[data]);
    let stored = stored.as_object().unwrap();
    let expected_ids: BTreeSet<String> = all
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["event_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        stored.keys().cloned().collect::<BTreeSet<_>>(),
        expected_ids
    );
    for (id, v) in stored {
        assert_eq!(v[0], 1, "{id} stored {} times", v[0]);
        assert_eq!(v[2], "shop");
    }
    assert_eq!(stored["edge-before"][1], "2025-11-16");
    assert_eq!(stored["edge-start"][1], "2025-11-17");
    assert_eq!(stored["edge-end-in"][1], "2025-11-23");
    assert_eq!(stored["edge-end-out"][1], "2025-11-24");
}
