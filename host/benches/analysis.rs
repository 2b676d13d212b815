//! The analyst workbench's speed figure (issue 14), beside DuckDB measured in the same run:
//!
//! ```sh
//! cargo bench -p promolens --bench analysis
//! ```
//!
//! A 5-dimension (day, source, medium, campaign, content), 30-day, per-day analysis with two
//! core events (signups and purchases within 7 days of acquisition, the first-touch model)
//! over 10M launches spanning a year plus their signups and purchases (`promolens gen
//! --core-events`): promolens (the analysis spec, in this process, the session reused) against
//! the equivalent hand-written DuckDB SQL over the same Parquet, hot, median of 5. Both answers
//! are compared row by row before any time is printed.
//!
//! Needs the Python with DuckDB that `scripts/test` installs (`PROMOLENS_PYTHON`). The
//! generated file and the backfilled data are kept under the bench's target folder and reused.

mod support;

use std::process::Command;
use std::time::Instant;

use serde_json::{Value, json};
use support::{PROMOLENS, measure, operator, python, work_dir};

const EVENTS: u64 = 10_000_000;
const USERS: u64 = 2_000_000;
const DAYS: u32 = 365;
/// The moment the analysis runs at: its past 30 days end on 2025-11-23.
const NOW: &str = "2025-11-24T10:00:00+08:00";

const DUCKDB: &str = r#"
import duckdb, sys, time, statistics, json
data, start, end = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
con = duckdb.connect()
con.execute("SET enable_progress_bar = false")
con.execute(f"CREATE VIEW launch_events AS SELECT * FROM read_parquet('{data}/launch_events/**/*.parquet', hive_partitioning = true)")
con.execute(f"CREATE VIEW events AS SELECT * FROM read_parquet('{data}/events/**/*.parquet', hive_partitioning = true)")
week = 7 * 86_400_000
sql = f"""
WITH in_window AS (
  SELECT user_id, event_id, epoch_ms(event_time) AS t,
         (utm_source IS NOT NULL OR code_id IS NOT NULL) AS attributed,
         strftime(timezone('Asia/Shanghai', event_time), '%Y-%m-%d') AS day,
         utm_source AS d1, utm_medium AS d2, utm_campaign AS d3, utm_content AS d4
  FROM launch_events
  WHERE project = 'bench' AND epoch_ms(event_time) >= {start} AND epoch_ms(event_time) < {end}),
-- First touch: the user's first launch in the window, never seen before it.
first_touch AS (
  SELECT user_id, f.* FROM (
    SELECT user_id, arg_min({{'t': t, 'attributed': attributed, 'day': day, 'd1': d1, 'd2': d2, 'd3': d3, 'd4': d4}}, (t, event_id)) AS f
    FROM in_window w
    WHERE NOT EXISTS (SELECT 1 FROM launch_events h WHERE h.project = 'bench'
                      AND epoch_ms(h.event_time) < {start} AND h.user_id = w.user_id)
    GROUP BY user_id)),
converted AS (
  SELECT ft.attributed, ft.day, ft.d1, ft.d2, ft.d3, ft.d4,
         count(DISTINCT ft.user_id) FILTER (WHERE e.event = 'signup') AS signup_users,
         count(*) FILTER (WHERE e.event = 'signup') AS signup_count,
         count(DISTINCT ft.user_id) FILTER (WHERE e.event = 'purchase') AS purchase_users,
         count(*) FILTER (WHERE e.event = 'purchase') AS purchase_count,
         coalesce(sum(e.props_number['amount']) FILTER (WHERE e.event = 'purchase'), 0) AS purchase_value
  FROM first_touch ft JOIN events e ON e.user_id = ft.user_id
  WHERE e.project = 'bench' AND e.event IN ('signup', 'purchase')
    AND epoch_ms(e.event_time) >= ft.t AND epoch_ms(e.event_time) < ft.t + {week}
  GROUP BY ALL),
counts AS (
  SELECT attributed, day, d1, d2, d3, d4, 0 AS new_users, count(DISTINCT user_id) AS users, count(*) AS launches,
         0 AS signup_users, 0 AS signup_count, 0 AS purchase_users, 0 AS purchase_count, 0.0 AS purchase_value
  FROM in_window GROUP BY ALL
  UNION ALL
  SELECT attributed, day, d1, d2, d3, d4, count(*), 0, 0, 0, 0, 0, 0, 0.0 FROM first_touch GROUP BY ALL
  UNION ALL
  SELECT attributed, day, d1, d2, d3, d4, 0, 0, 0, signup_users, signup_count, purchase_users, purchase_count, purchase_value
  FROM converted)
SELECT day,
       CASE WHEN attributed THEN coalesce(d1, '(not set)') ELSE '(unattributed)' END,
       CASE WHEN attributed THEN coalesce(d2, '(not set)') ELSE '(unattributed)' END,
       CASE WHEN attributed THEN coalesce(d3, '(not set)') ELSE '(unattributed)' END,
       CASE WHEN attributed THEN coalesce(d4, '(not set)') ELSE '(unattributed)' END,
       sum(new_users), sum(users), sum(launches), sum(signup_users), sum(signup_count),
       sum(purchase_users), sum(purchase_count), round(sum(purchase_value), 6)
FROM counts GROUP BY ALL
"""
rows = con.execute(sql).fetchall()
times = []
for _ in range(5):
    t = time.perf_counter(); con.execute(sql).fetchall(); times.append(time.perf_counter() - t)
print(json.dumps({"seconds": statistics.median(times),
                  "rows": [[*r[:5], *[int(x) for x in r[5:12]], float(r[12])] for r in rows]}))
"#;

/// The generated year, with signups and purchases, in time order.
fn generate() -> std::path::PathBuf {
    let path = work_dir().join("events-10m-year-core.ndjson");
    if path.exists() {
        return path;
    }
    eprintln!(
        "generating {} ({EVENTS} launches and their core events)…",
        path.display()
    );
    let tmp = path.with_extension("tmp.ndjson");
    let (took, _) = measure(Command::new(PROMOLENS).args([
        "gen",
        "--events",
        &EVENTS.to_string(),
        "--users",
        &USERS.to_string(),
        "--days",
        &DAYS.to_string(),
        "--end",
        "2025-11-23",
        "--core-events",
        "--out",
        tmp.to_str().unwrap(),
    ]));
    std::fs::rename(&tmp, &path).expect("rename");
    eprintln!("  generated in {:.1} s", took.as_secs_f64());
    path
}

/// The backfilled and compacted data directory (the state `serve` keeps), made once.
fn data() -> std::path::PathBuf {
    let data = work_dir().join("analysis-data");
    let done = data.join(".complete");
    if done.exists() {
        return data;
    }
    let file = generate();
    let _ = std::fs::remove_dir_all(&data);
    let data_dir = data.to_str().unwrap();
    operator(&["projects", "--data", data_dir, "create", "bench"]);
    let (took, _) = measure(
        Command::new(PROMOLENS)
            .args(["backfill", "--data", data_dir, "--project", "bench"])
            .arg(&file)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()),
    );
    eprintln!("  backfilled in {:.1} s", took.as_secs_f64());
    operator(&["compact", "--grace-seconds", "0", "--data", data_dir]);
    std::fs::write(&done, b"").expect("marker");
    data
}

/// A row: the five labels, then the eight figures (the value rounded to cents, as compared).
fn row_of(labels: [&Value; 5], figures: [&Value; 8]) -> (Vec<String>, Vec<i64>) {
    let labels = labels
        .iter()
        .map(|v| v.as_str().unwrap_or("?").to_string())
        .collect();
    let mut numbers: Vec<i64> = figures[..7]
        .iter()
        .map(|v| v.as_i64().unwrap_or(-1))
        .collect();
    numbers.push((figures[7].as_f64().unwrap_or(f64::NAN) * 100.0).round() as i64);
    (labels, numbers)
}

fn main() {
    let data = data();
    let spec: promolens::analysis::AnalysisSpec = serde_json::from_value(json!({
        "metrics": ["new_users", "users", "launches", "signup_users", "signup_count",
                    "purchase_users", "purchase_count", "purchase_value"],
        "dimensions": ["day", "utm_source", "utm_medium", "utm_campaign", "utm_content"],
        "range": {"past_days": 30},
    }))
    .expect("spec");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let storage = promolens_ingest::Storage::open(data.to_str().unwrap()).expect("storage");
    let ctx = runtime
        .block_on(promolens::tables::session(&storage))
        .expect("session");
    let query = spec
        .query(
            "bench",
            NOW.parse().expect("now"),
            chrono_tz::Asia::Shanghai,
            &Default::default(),
        )
        .expect("query");
    let mut times = Vec::new();
    let mut ours = Vec::new();
    for i in 0..6 {
        let started = Instant::now();
        let batches = runtime.block_on(spec.run(&query, &ctx)).expect("analysis");
        if i == 0 {
            ours = promolens::output::json_rows(&spec.project(&batches).expect("columns"))
                .expect("rows")
                .iter()
                .map(|r| {
                    let dims = [
                        "day",
                        "utm_source",
                        "utm_medium",
                        "utm_campaign",
                        "utm_content",
                    ];
                    let metrics = [
                        "new_users",
                        "users",
                        "launches",
                        "signup_users",
                        "signup_count",
                        "purchase_users",
                        "purchase_count",
                        "purchase_value",
                    ];
                    row_of(dims.map(|d| &r[d]), metrics.map(|m| &r[m]))
                })
                .collect::<Vec<_>>();
        } else {
            times.push(started.elapsed().as_secs_f64());
        }
    }
    ours.sort();
    let window = &query.window;
    let output = Command::new(python())
        .args(["-c", DUCKDB])
        .arg(&data)
        .arg(window.start_ms().to_string())
        .arg(window.end_ms().to_string())
        .output()
        .expect("python");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let duck: Value = serde_json::from_slice(&output.stdout).expect("DuckDB's answer");
    let mut theirs: Vec<(Vec<String>, Vec<i64>)> = duck["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            row_of(
                [&r[0], &r[1], &r[2], &r[3], &r[4]],
                [&r[5], &r[6], &r[7], &r[8], &r[9], &r[10], &r[11], &r[12]],
            )
        })
        .collect();
    theirs.sort();
    assert_eq!(
        ours.len(),
        theirs.len(),
        "promolens and DuckDB gave different rows"
    );
    for (a, b) in ours.iter().zip(&theirs) {
        assert_eq!(a, b, "promolens and DuckDB answered differently");
    }
    times.sort_by(f64::total_cmp);
    let ours_s = times[times.len() / 2];
    let theirs_s = duck["seconds"].as_f64().unwrap_or(f64::NAN);
    println!(
        "30-day per-day analysis by 5 dimensions with signups and purchases (first touch, 7 days), \
         {EVENTS} launches over {DAYS} days and their core events, compacted (hot, median of 5; \
         the same {} rows from both):",
        ours.len()
    );
    println!("  promolens (DataFusion)      {ours_s:>8.3} s");
    println!(
        "  DuckDB, hand-written SQL    {theirs_s:>8.3} s  ratio {:.2}",
        theirs_s / ours_s
    );
}
