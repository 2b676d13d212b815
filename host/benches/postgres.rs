//! The PostgreSQL door's speed (issue 14), over the analysis bench's year (10M launches):
//!
//! ```sh
//! cargo bench -p promolens --bench postgres
//! ```
//!
//! A release `promolens serve --pg-listen` over the compacted data directory of the analysis
//! bench, queried from Python as a BI tool and a script do:
//! 1. a BI tool's analysis as SQL (30 days by day and four UTM dimensions: launches and users)
//!    over the PostgreSQL port (psycopg 3) and over HTTP (`POST /v1/sql`), hot, median of 5;
//!    both answers are compared row by row first. Goal: PostgreSQL within 1.2× of HTTP.
//! 2. a million rows streamed to psycopg through a server-side cursor (`itersize` 10,000), the
//!    rows counted and checked against a `count(*)` first. Goal: ≥ 500k rows/s.
//!
//! Needs the Python with DuckDB, psycopg and SQLAlchemy that `scripts/test` installs.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::Value;
use support::{PROMOLENS, operator, python, work_dir};

const CLIENTS: &str = r#"
import json, statistics, sys, time, urllib.request
import psycopg
http_url, pg_address, key = sys.argv[1], sys.argv[2], sys.argv[3]
host, port = pg_address.rsplit(':', 1)
SQL = """SELECT dt AS day, utm_source, utm_medium, utm_campaign, utm_content,
                count(*) AS launches, count(DISTINCT user_id) AS users
         FROM launch_events WHERE dt BETWEEN '2025-10-25' AND '2025-11-23'
         GROUP BY 1, 2, 3, 4, 5"""
def over_http():
    request = urllib.request.Request(http_url + '/v1/sql', data=json.dumps({'sql': SQL}).encode(),
        headers={'Authorization': 'Bearer ' + key, 'Content-Type': 'application/json'})
    answer = json.load(urllib.request.urlopen(request, timeout=600))
    return sorted(((r['day'], r['utm_source'], r['utm_medium'], r['utm_campaign'],
                    r['utm_content'], r['launches'], r['users']) for r in answer['rows']), key=repr)
conn = psycopg.connect(host=host, port=int(port), user='bench', password=key, dbname='bench',
                       sslmode='disable', autocommit=True)
def over_pg():
    return sorted((tuple(r) for r in conn.execute(SQL).fetchall()), key=repr)
def timed(run):
    times = []
    for i in range(6):
        started = time.perf_counter()
        rows = run()
        if i > 0:
            times.append(time.perf_counter() - started)
    return rows, statistics.median(times)
http_rows, http_s = timed(over_http)
pg_rows, pg_s = timed(over_pg)
assert http_rows == pg_rows, 'the two doors answered differently'
# A million rows through a server-side cursor.
MILLION = 'SELECT event_id, user_id, event_time, utm_source FROM launch_events LIMIT 1000000'
expected = conn.execute(f'SELECT count(*) FROM ({MILLION}) m').fetchone()[0]
assert expected == 1_000_000, expected
streamed = []
for _ in range(3):
    with psycopg.connect(host=host, port=int(port), user='bench', password=key, dbname='bench',
                         sslmode='disable') as streaming:
        started = time.perf_counter()
        with streaming.cursor(name='million') as cursor:
            cursor.itersize = 10000
            cursor.execute(MILLION)
            rows = sum(1 for _ in cursor)
        streamed.append(time.perf_counter() - started)
        assert rows == expected, rows
print(json.dumps({"rows": len(pg_rows), "http": http_s, "pg": pg_s,
                  "stream_rows": expected, "stream_s": statistics.median(streamed)}))
"#;

fn main() {
    let data = work_dir().join("analysis-data");
    assert!(
        data.join(".complete").exists(),
        "{} is missing: run `cargo bench -p promolens --bench analysis` once first",
        data.display()
    );
    let data = data.to_str().unwrap();
    let key = operator(&[
        "keys",
        "--data",
        data,
        "create",
        "--project",
        "bench",
        "--role",
        "analyst",
    ]);
    let mut server = Command::new(PROMOLENS)
        .args(["serve", "--data", data, "--listen", "127.0.0.1:0"])
        .args(["--pg-listen", "127.0.0.1:0", "--compact-seconds", "0"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("promolens serve");
    let mut lines = BufReader::new(server.stdout.take().expect("stdout")).lines();
    let (mut http, mut pg) = (None, None);
    while http.is_none() {
        let line = lines.next().expect("serve's output").expect("a line");
        if let Some(url) = line.strip_prefix("promolens listening on ") {
            http = Some(url.trim().to_string());
        }
        if let Some(rest) = line.strip_prefix("promolens PostgreSQL door on ") {
            pg = rest.split_whitespace().next().map(str::to_string);
        }
    }
    std::thread::spawn(move || for _ in lines {});
    let (http, pg) = (http.unwrap(), pg.expect("the PostgreSQL door"));
    let output = Command::new(python())
        .args(["-c", CLIENTS, &http, &pg, &key])
        .output()
        .expect("python");
    let _ = server.kill();
    let _ = server.wait();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let figures: Value = serde_json::from_slice(&output.stdout).expect("the figures");
    let (http_s, pg_s) = (
        figures["http"].as_f64().unwrap_or(f64::NAN),
        figures["pg"].as_f64().unwrap_or(f64::NAN),
    );
    println!(
        "A BI tool's analysis as SQL (30 days by day and 4 UTM dimensions, 10M launches over a \
         year; the same {} rows from both doors, hot, median of 5):",
        figures["rows"]
    );
    println!("  over HTTP (POST /v1/sql, JSON)      {http_s:>7.3} s");
    println!(
        "  over PostgreSQL (psycopg 3)         {pg_s:>7.3} s  ratio PostgreSQL/HTTP {:.2} (goal ≤ 1.20)",
        pg_s / http_s
    );
    let (rows, seconds) = (
        figures["stream_rows"].as_f64().unwrap_or(f64::NAN),
        figures["stream_s"].as_f64().unwrap_or(f64::NAN),
    );
    println!(
        "  {rows} rows to psycopg through a server-side cursor: {seconds:.2} s, {:.0} rows/s (goal ≥ 500000; median of 3)",
        rows / seconds
    );
}
