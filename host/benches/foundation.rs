//! The foundation's speed figures, each beside DuckDB measured in the same run on the same machine.
//!
//! ```sh
//! cargo bench -p promolens --bench foundation -- [backfill|backfill-time|backfill-shuffled|live|query|query-short|query-year|all]
//! ```
//!
//! - `backfill`: NDJSON files from `promolens gen` through `promolens backfill` (validate,
//!   decode attribution, dedupe, Parquet) against DuckDB's plain
//!   `COPY (SELECT * FROM read_json(…)) TO … (FORMAT parquet)`; events/s and peak RSS of both,
//!   after checking (with DuckDB) that both kept the same events. Two shapes: ~1 GB in time
//!   order, and ~210 MB shuffled over 55 days with mixed `ts` forms.
//! - `live`: `promolens serve` with durable 2xx, 16 concurrent clients posting batches of 100;
//!   sustained events/s and p99 latency; beside it DuckDB committing one 100-row INSERT at a time
//!   to a file-backed database (its own durable insert path, no HTTP).
//! - `query`: the 7-day acquisition by `utm_source,utm_campaign` with first-touch `new_users`,
//!   promolens (DataFusion) and DuckDB on the same Parquet, hot, before and after compaction,
//!   over a short history (the shuffled 55 days) and a long one (10M events over a year); the
//!   answers are compared row by row before any time is printed.
//!
//! Needs the Python with DuckDB that `scripts/test` installs (`PROMOLENS_PYTHON`, default
//! `~/.cache/promolens/venv/bin/python`). Data is kept under the bench's target folder and reused.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod support;

use support::{PROMOLENS, measure, mib, operator, python, work_dir};

fn line_count(path: &Path) -> u64 {
    use std::io::BufRead;
    let file = std::fs::File::open(path).expect("open");
    std::io::BufReader::with_capacity(1 << 20, file)
        .split(b'\n')
        .count() as u64
}

/// The shapes of input the benches use, all from `promolens gen` with seed 42.
struct Corpus {
    file: &'static str,
    events: u64,
    users: u64,
    days: u32,
    order: &'static str,
}

/// ~1 GB in time order over 30 days, as one live sender's log.
const SORTED_1G: Corpus = Corpus {
    file: "events-1g.ndjson",
    events: 4_000_000,
    users: 800_000,
    days: 30,
    order: "time",
};
/// ~210 MB of 300,000 users over 55 days, shuffled, `ts` in mixed forms: a file gathered from
/// many senders and exports (the shape of issue 11's held-back corpus).
const SHUFFLED_55_DAYS: Corpus = Corpus {
    file: "events-shuffled-55d.ndjson",
    events: 930_000,
    users: 300_000,
    days: 55,
    order: "shuffled",
};
/// 10M events over a year, in time order: a long history.
const YEAR_10M: Corpus = Corpus {
    file: "events-10m-year.ndjson",
    events: 10_000_000,
    users: 2_000_000,
    days: 365,
    order: "time",
};

fn generate(corpus: &Corpus) -> PathBuf {
    let path = work_dir().join(corpus.file);
    if path.exists() {
        return path;
    }
    eprintln!("generating {} ({} events)…", path.display(), corpus.events);
    let tmp = path.with_extension("tmp.ndjson");
    let (took, _) = measure(Command::new(PROMOLENS).args([
        "gen",
        "--events",
        &corpus.events.to_string(),
        "--users",
        &corpus.users.to_string(),
        "--days",
        &corpus.days.to_string(),
        "--end",
        "2025-11-23",
        "--order",
        corpus.order,
        "--out",
        tmp.to_str().unwrap(),
    ]));
    std::fs::rename(&tmp, &path).expect("rename");
    eprintln!("  generated in {:.1} s", took.as_secs_f64());
    path
}

fn backfill_into(data: &Path, file: &Path) -> (Duration, u64) {
    let _ = std::fs::remove_dir_all(data);
    let data_dir = data.to_str().unwrap();
    operator(&["projects", "--data", data_dir, "create", "bench"]);
    measure(
        Command::new(PROMOLENS)
            .args([
                "backfill",
                "--data",
                data.to_str().unwrap(),
                "--project",
                "bench",
            ])
            .arg(file)
            .env("RUST_LOG", "warn")
            // Its summary and progress would interleave with the bench's table.
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()),
    )
}

/// Parquet files under `dir` and the partitions (folders) holding them.
fn files_and_partitions(dir: &Path) -> (usize, usize) {
    let mut files = 0;
    let mut partitions = std::collections::HashSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "parquet") {
                files += 1;
                partitions.insert(dir.clone());
            }
        }
    }
    (files, partitions.len())
}

/// Rows of `launch_events` in a data directory and in DuckDB's file, and a hash over their
/// `event_id`s, by DuckDB: both programs must have kept the same events.
fn same_events(data: &Path, theirs: &Path) -> (u64, u64) {
    let script = r#"
import duckdb, sys
ours = duckdb.sql(f"SELECT count(*), bit_xor(hash(event_id)) FROM read_parquet('{sys.argv[1]}/launch_events/**/*.parquet')").fetchone()
# DuckDB keeps retries and malformed-but-parseable lines: the distinct ids of valid events.
theirs = duckdb.sql(f"SELECT count(*), bit_xor(hash(event_id)) FROM (SELECT DISTINCT event_id FROM read_parquet('{sys.argv[2]}') WHERE user_id IS NOT NULL AND event_id NOT LIKE 'bad-%')").fetchone()
print(ours[0], theirs[0], ours[1] == theirs[1])
"#;
    let output = Command::new(python())
        .args(["-c", script])
        .arg(data)
        .arg(theirs)
        .output()
        .expect("python");
    let text = String::from_utf8_lossy(&output.stdout);
    let fields: Vec<&str> = text.split_whitespace().collect();
    assert!(
        fields.len() == 3 && fields[2] == "True",
        "promolens and DuckDB kept different events: {text} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    (
        fields[0].parse().unwrap_or(0),
        fields[1].parse().unwrap_or(0),
    )
}

fn bench_backfill(corpus: &Corpus) {
    let dir = work_dir();
    let file = generate(corpus);
    let size = std::fs::metadata(&file).expect("file").len();
    let lines = line_count(&file);
    let out = dir.join("duckdb-backfill.parquet");
    let script = "import duckdb, sys\n\
        duckdb.sql('SET enable_progress_bar=false')\n\
        duckdb.sql(f\"COPY (SELECT * FROM read_json('{sys.argv[1]}', format='newline_delimited', ignore_errors=true)) TO '{sys.argv[2]}' (FORMAT parquet, COMPRESSION zstd)\")";
    let rate = |d: Duration| lines as f64 / d.as_secs_f64();
    // The two programs alternate, several rounds: a shared machine's speed drifts by tens of
    // percent over minutes, so only times taken side by side are compared.
    let rounds: usize = std::env::var("PROMOLENS_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    println!(
        "backfill of {:.0} MiB, {lines} lines in {} order, {} days, {rounds} interleaved rounds:",
        mib(size),
        corpus.order,
        corpus.days
    );
    let data = dir.join("backfill-data");
    let mut ratios = Vec::new();
    for round in 1..=rounds {
        let (ours, our_rss) = backfill_into(&data, &file);
        let (theirs, their_rss) = measure(
            Command::new(python())
                .args(["-c", script])
                .arg(&file)
                .arg(&out),
        );
        if round == 1 {
            let (rows, distinct) = same_events(&data, &out);
            let (files, partitions) = files_and_partitions(&data.join("launch_events"));
            println!(
                "  same events kept: {rows} rows, {distinct} distinct valid ids in DuckDB's file; \
                 {files} Parquet files in {partitions} partitions"
            );
        }
        println!(
            "  {round}: promolens {:>6.2} s {:>8.0} events/s {:>4.0} MiB | DuckDB {:>6.2} s {:>8.0} events/s {:>4.0} MiB | ratio {:.2}",
            ours.as_secs_f64(),
            rate(ours),
            mib(our_rss),
            theirs.as_secs_f64(),
            rate(theirs),
            mib(their_rss),
            theirs.as_secs_f64() / ours.as_secs_f64()
        );
        ratios.push(theirs.as_secs_f64() / ours.as_secs_f64());
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "  ratio (promolens / DuckDB throughput): median {:.2}, range {:.2}–{:.2}",
        ratios[ratios.len() / 2],
        ratios[0],
        ratios[ratios.len() - 1]
    );
}

/// One row of an acquisition answer: the two dimension labels and the three counts.
type AnswerRow = (String, String, i64, i64, i64);

fn our_rows(batches: &[datafusion::arrow::record_batch::RecordBatch]) -> Vec<AnswerRow> {
    let rows = promolens::output::json_rows(batches).expect("rows");
    let mut rows: Vec<AnswerRow> = rows
        .iter()
        .map(|r| {
            let text = |k: &str| r[k].as_str().unwrap_or_default().to_string();
            let number = |k: &str| r[k].as_i64().unwrap_or(-1);
            (
                text("utm_source"),
                text("utm_campaign"),
                number("new_users"),
                number("users"),
                number("launches"),
            )
        })
        .collect();
    rows.sort();
    rows
}

fn bench_query(corpus: &Corpus) {
    let dir = work_dir();
    let file = generate(corpus);
    let data = dir.join(format!(
        "query-data-{}",
        corpus.file.trim_end_matches(".ndjson")
    ));
    // Backfilled afresh every run: a run that ends compacted must not leave the next run's
    // "before compaction" round with compacted files.
    if data.exists() {
        std::fs::remove_dir_all(&data).expect("remove the previous run's data");
    }
    {
        let (took, rss) = backfill_into(&data, &file);
        eprintln!(
            "  backfilled {} events in {:.1} s (peak RSS {:.0} MiB)",
            corpus.events,
            took.as_secs_f64(),
            mib(rss)
        );
    }
    for compacted in [false, true] {
        if compacted {
            // The state `serve` keeps in the background: small files merged.
            let (took, _) = measure(Command::new(PROMOLENS).args([
                "compact",
                "--grace-seconds",
                "0",
                "--data",
                data.to_str().unwrap(),
            ]));
            eprintln!("  compacted in {:.1} s", took.as_secs_f64());
        }
        query_round(corpus, &data, compacted);
    }
}

fn query_round(corpus: &Corpus, data: &Path, compacted: bool) {
    let (files, _) = files_and_partitions(&data.join("launch_events"));
    let now = "2025-11-24T10:00:00+08:00";
    // promolens: in this process, hot (files in the OS cache, the session reused), median of 5.
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let storage = promolens_ingest::Storage::open(data.to_str().unwrap()).expect("storage");
    let ctx = runtime
        .block_on(promolens::tables::session(&storage))
        .expect("session");
    let query = promolens::acquisition::AcquisitionQuery::acquisition(
        "bench",
        vec!["utm_source".into(), "utm_campaign".into()],
        promolens::acquisition::Window::past_days(
            now.parse().expect("now"),
            7,
            chrono_tz::Asia::Shanghai,
        )
        .expect("window"),
        &Default::default(),
    );
    let mut ours = Vec::new();
    let mut answer = Vec::new();
    for i in 0..6 {
        let started = Instant::now();
        let batches = runtime.block_on(query.run(&ctx)).expect("query");
        if i > 0 {
            ours.push(started.elapsed().as_secs_f64());
        } else {
            answer = our_rows(&batches);
        }
    }
    let script = r#"
import duckdb, sys, time, statistics, json
glob = sys.argv[1] + '/launch_events/**/*.parquet'
start, end = int(sys.argv[2]), int(sys.argv[3])
con = duckdb.connect()
con.execute("SET enable_progress_bar = false")
con.execute(f"CREATE VIEW launch_events AS SELECT * FROM read_parquet('{glob}', hive_partitioning = true)")
head = f"""
WITH launches AS (
  SELECT user_id, event_id, epoch_ms(event_time) AS t,
         (utm_source IS NOT NULL OR code_id IS NOT NULL) AS attributed,
         CASE WHEN utm_source IS NOT NULL OR code_id IS NOT NULL THEN utm_source END AS d0,
         CASE WHEN utm_source IS NOT NULL OR code_id IS NOT NULL THEN utm_campaign END AS d1
  FROM launch_events WHERE project = 'bench'),
in_window AS (SELECT * FROM launches WHERE t >= {start} AND t < {end}),
"""
tail = """
counts AS (
  SELECT attributed, d0, d1, 0 AS new_users, count(DISTINCT user_id) AS users, count(*) AS launches
  FROM in_window GROUP BY ALL
  UNION ALL
  SELECT attributed, d0, d1, count(*), 0, 0 FROM first_touch GROUP BY ALL)
SELECT attributed, d0, d1, sum(new_users), sum(users), sum(launches) FROM counts GROUP BY ALL ORDER BY 4 DESC
"""
# The formulation promolens runs: first touch in the window = launched in it, never before.
# (arg_min over a struct: arg_min of a nullable column would skip NULLs and mix rows.)
anti = head + f"""
first_touch AS (
  SELECT f.attributed, f.d0, f.d1 FROM (
    SELECT arg_min({{'attributed': attributed, 'd0': d0, 'd1': d1}}, (t, event_id)) AS f
    FROM in_window w
    WHERE NOT EXISTS (SELECT 1 FROM launch_events h WHERE h.project = 'bench'
                      AND epoch_ms(h.event_time) < {start} AND h.user_id = w.user_id)
    GROUP BY user_id)),
""" + tail
# The textbook one: every user's first launch over the whole history.
full = head + f"""
first_touch AS (
  SELECT f.attributed, f.d0, f.d1 FROM (
    SELECT min(t) AS first_t,
           arg_min({{'attributed': attributed, 'd0': d0, 'd1': d1}}, (t, event_id)) AS f
    FROM launches GROUP BY user_id) WHERE first_t >= {start} AND first_t < {end}),
""" + tail
out = {}
for name, sql in (("anti", anti), ("full", full)):
    rows = con.execute(sql).fetchall()
    times = []
    for _ in range(5):
        t = time.perf_counter(); con.execute(sql).fetchall(); times.append(time.perf_counter() - t)
    label = lambda attributed, d: d if attributed and d is not None else ('(not set)' if attributed else '(unattributed)')
    out[name] = {"seconds": statistics.median(times),
                 "rows": [[label(a, d0), label(a, d1), int(n), int(u), int(l)] for a, d0, d1, n, u, l in rows]}
print(json.dumps(out))
"#;
    let window = &query.window;
    let output = Command::new(python())
        .args(["-c", script])
        .arg(data)
        .arg(window.start_ms().to_string())
        .arg(window.end_ms().to_string())
        .output()
        .expect("python");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let duck: serde_json::Value = serde_json::from_slice(&output.stdout).expect("DuckDB's answer");
    for name in ["anti", "full"] {
        let mut theirs: Vec<AnswerRow> = duck[name]["rows"]
            .as_array()
            .expect("rows")
            .iter()
            .map(|r| {
                let text = |i: usize| r[i].as_str().unwrap_or_default().to_string();
                let number = |i: usize| r[i].as_i64().unwrap_or(-1);
                (text(0), text(1), number(2), number(3), number(4))
            })
            .collect();
        theirs.sort();
        assert_eq!(
            answer, theirs,
            "promolens and DuckDB ({name}) answered differently"
        );
    }
    ours.sort_by(f64::total_cmp);
    let ours = ours[ours.len() / 2];
    let seconds = |name: &str| duck[name]["seconds"].as_f64().unwrap_or(f64::NAN);
    println!(
        "7-day acquisition by utm_source,utm_campaign with first touch, {} events over {} days, \
         {files} files{} (hot, median of 5; the same {} rows from all three):",
        corpus.events,
        corpus.days,
        if compacted { ", compacted" } else { "" },
        answer.len()
    );
    println!("  promolens (DataFusion)               {ours:>8.3} s");
    println!(
        "  DuckDB, same formulation (anti-join) {:>8.3} s  ratio {:.2}",
        seconds("anti"),
        seconds("anti") / ours
    );
    println!(
        "  DuckDB, first touch over all history {:>8.3} s  ratio {:.2}",
        seconds("full"),
        seconds("full") / ours
    );
}

fn bench_live() {
    let dir = work_dir();
    let data = dir.join("live-data");
    let _ = std::fs::remove_dir_all(&data);
    let data_dir = data.to_str().unwrap();
    operator(&["projects", "--data", data_dir, "create", "bench"]);
    // Every request carries the project's ingest key, as the mini-program SDK sends it.
    let key = operator(&[
        "keys",
        "--data",
        data_dir,
        "create",
        "--project",
        "bench",
        "--role",
        "ingest",
    ]);
    let mut server = Command::new(PROMOLENS)
        .args([
            "serve",
            "--data",
            data.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            // The per-key rate check runs on every request, set above what the bench sends
            // (one key here stands for every device of a mini-program).
            "--ingest-rate-per-key",
            "1000000",
            // Its events are of fixed dates (late 2025).
            "--max-event-age-days",
            "36500",
        ])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("serve");
    let url = {
        use std::io::BufRead;
        let stdout = server.stdout.take().expect("stdout");
        let mut lines = std::io::BufReader::new(stdout).lines();
        loop {
            let line = lines.next().expect("server line").expect("read");
            if let Some(url) = line.strip_prefix("promolens listening on ") {
                std::thread::spawn(move || for _ in lines {});
                break url.trim().to_string();
            }
        }
    };
    let duration = Duration::from_secs(20);
    let clients = 16;
    let started = Instant::now();
    let results: Vec<(u64, Vec<f64>)> = std::thread::scope(|scope| {
        (0..clients)
            .map(|c| {
                let url = url.clone();
                let key = key.clone();
                scope.spawn(move || {
                    promolens::codes::wechat::use_ring_for_tls();
                    let client = reqwest::blocking::Client::new();
                    let endpoint = format!("{url}/v1/projects/bench/events");
                    let mut accepted = 0u64;
                    let mut latencies = Vec::new();
                    let mut n = 0u64;
                    while started.elapsed() < duration {
                        let body: String = (0..100)
                            .map(|i| {
                                format!(
                                    "{{\"event_id\":\"c{c}-{n}-{i}\",\"user_id\":\"u{}\",\"ts\":{},\"scene\":1047,\"query\":{{\"utm_source\":\"gzh\",\"utm_campaign\":\"%E5%8F%8C11\"}},\"launch_type\":\"cold\"}}\n",
                                    (n * 100 + i) % 50_000,
                                    1_763_942_400_000u64 + n * 100 + i
                                )
                            })
                            .collect();
                        n += 1;
                        let t = Instant::now();
                        let response = client
                            .post(&endpoint)
                            .bearer_auth(&key)
                            .body(body)
                            .send()
                            .expect("post");
                        assert!(response.status().is_success());
                        latencies.push(t.elapsed().as_secs_f64());
                        accepted += 100;
                    }
                    (accepted, latencies)
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().expect("client"))
            .collect()
    });
    let elapsed = started.elapsed().as_secs_f64();
    let total: u64 = results.iter().map(|r| r.0).sum();
    let mut latencies: Vec<f64> = results.into_iter().flat_map(|r| r.1).collect();
    latencies.sort_by(f64::total_cmp);
    let p =
        |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)] * 1e3;
    let _ = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status();
    let _ = server.wait();
    let script = r#"
import duckdb, sys, time, os
path = sys.argv[1]
if os.path.exists(path): os.remove(path)
con = duckdb.connect(path)
con.execute("CREATE TABLE ev (event_id VARCHAR, user_id VARCHAR, ts BIGINT, scene INTEGER, utm_source VARCHAR, utm_campaign VARCHAR, launch_type VARCHAR)")
n = 0
t = time.perf_counter()
while time.perf_counter() - t < 20:
    # One multi-row INSERT per batch of 100, committed (durable in DuckDB's WAL) before the next.
    values = ",".join(f"('e{n + i}', 'u{(n + i) % 50000}', {1763942400000 + n + i}, 1047, 'gzh', '双11', 'cold')" for i in range(100))
    con.execute(f"INSERT INTO ev VALUES {values}")
    n += 100
print(round(n / (time.perf_counter() - t)))
"#;
    let output = Command::new(python())
        .args(["-c", script])
        .arg(dir.join("live.duckdb"))
        .output()
        .expect("python");
    let theirs = String::from_utf8_lossy(&output.stdout).trim().to_string();
    println!("live ingest, {clients} clients, batches of 100, durable 2xx, {elapsed:.0} s:");
    println!(
        "  promolens serve   {:>10.0} events/s  p50 {:.1} ms  p99 {:.1} ms",
        total as f64 / elapsed,
        p(0.5),
        p(0.99)
    );
    println!("  DuckDB, 1 connection, one committed INSERT per batch of 100: {theirs} rows/s");
    let door = door_seconds_per_request(data_dir, &key);
    let mean = latencies.iter().sum::<f64>() / latencies.len() as f64;
    println!(
        "  the door alone (key lookup, SHA-256, constant-time compare, rate check): {:.2} µs a request, {:.3}% of a request's mean {:.2} ms",
        door * 1e6,
        100.0 * door / mean,
        mean * 1e3
    );
}

/// What authentication adds to a request, measured in the same run (the server has no way to
/// turn its door off, on purpose): the guard's own work, on the key the clients sent.
fn door_seconds_per_request(data_dir: &str, key: &str) -> f64 {
    use promolens::access::{Registry, rate::RateLimiter};
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let storage = promolens_ingest::Storage::open(data_dir).expect("storage");
        let zones = promolens_ingest::ProjectZones::new(chrono_tz::UTC);
        let registry = Registry::open(storage, zones).await.expect("registry");
        let rate = RateLimiter::new(1e9, 2e9);
        let rounds = 200_000;
        let started = Instant::now();
        for _ in 0..rounds {
            let found = registry.authenticate(key).await.expect("the bench's key");
            assert!(rate.check(&found.id, Instant::now()).is_ok());
        }
        started.elapsed().as_secs_f64() / rounds as f64
    })
}

fn main() {
    let which: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let all = which.is_empty() || which.iter().any(|w| w == "all");
    let wants = |name: &str| all || which.iter().any(|w| w == name);
    if wants("backfill") || wants("backfill-time") {
        bench_backfill(&SORTED_1G);
    }
    if wants("backfill") || wants("backfill-shuffled") {
        bench_backfill(&SHUFFLED_55_DAYS);
    }
    if wants("live") {
        bench_live();
    }
    if wants("query") || wants("query-short") {
        bench_query(&SHUFFLED_55_DAYS);
    }
    if wants("query") || wants("query-year") {
        bench_query(&YEAR_10M);
    }
}
