//! Analysis specs (`promolens analyze`, `POST …/analyses:run`): each filter, time dimension,
//! range preset, returning users and the comparison with the previous period against DuckDB computing the same definitions over the raw NDJSON (first touch
//! over the whole history, filters on the first launch for new users, days in Asia/Shanghai).

use promolens_tests::{Server, percent_encode, promolens, python_json, stdout_of};
use serde_json::{Value, json};

/// 2025-11-24 10:00 in Shanghai: "last week" is 2025-11-17 to 2025-11-23.
const NOW: &str = "2025-11-24T10:00:00+08:00";
/// 2025-10-20 00:00 +08:00: the history starts here (five weeks).
const HISTORY_START: i64 = 1_760_889_600_000;

const SOURCES: [Option<&str>; 6] = [
    Some("gzh"),
    Some("shop"),
    Some("WeChat"),
    Some("微信"),
    Some("partner"),
    None,
];
const MEDIA: [Option<&str>; 4] = [Some("menu"), Some("poster"), Some("article"), None];
const PATHS: [&str; 3] = ["pages/index/index", "pages/shop/shop", "pages/活动/a"];

/// 4,000 launches of 600 users at any millisecond of five weeks (many across a Shanghai
/// midnight), in no order, some sent twice.
fn events() -> Vec<String> {
    let mut state: u64 = 0x5eed_1234;
    let mut next = |n: u64| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 11) % n
    };
    let span = 35 * 86_400_000;
    let mut out = Vec::new();
    for i in 0..4000 {
        let mut query = serde_json::Map::new();
        if let Some(source) = SOURCES[next(6) as usize] {
            query.insert("utm_source".into(), json!(percent_encode(source)));
        }
        if let Some(medium) = MEDIA[next(4) as usize] {
            query.insert("utm_medium".into(), json!(percent_encode(medium)));
        }
        let line = json!({
            "event_id": format!("e{i}"),
            "user_id": format!("u{}", next(600)),
            "ts": HISTORY_START + next(span) as i64,
            "scene": 1047,
            "path": PATHS[next(3) as usize],
            "query": query,
        })
        .to_string();
        if i % 50 == 0 {
            out.push(line.clone());
        }
        out.push(line);
    }
    out
}

/// Each case: the spec promolens runs, and the same question for DuckDB (dimensions, a filter
/// over the raw columns `src`, `med`, `path`, and the days).
fn cases() -> Vec<(Value, Value)> {
    vec![
        (
            json!({"metrics": ["new_users", "users", "launches", "returning_users"], "dimensions": ["day", "utm_source"],
                   "filters": [{"dimension": "utm_medium", "op": "in", "values": ["menu", "poster"]}],
                   "range": {"from": "2025-11-10", "to": "2025-11-23"}}),
            json!({"dims": ["day", "src"], "filter": "med IN ('menu', 'poster')", "from": "2025-11-10", "to": "2025-11-23"}),
        ),
        (
            json!({"metrics": ["new_users", "users", "launches", "returning_users"], "dimensions": ["week"],
                   "filters": [{"dimension": "utm_source", "op": "not_in", "values": ["gzh"]}],
                   "range": {"from": "2025-10-27", "to": "2025-11-23"}}),
            json!({"dims": ["week"], "filter": "(src IS NULL OR src NOT IN ('gzh'))", "from": "2025-10-27", "to": "2025-11-23"}),
        ),
        (
            json!({"metrics": ["new_users", "users", "launches", "returning_users"], "dimensions": ["utm_source"],
                   "filters": [{"dimension": "path", "op": "contains", "value": "活动"}],
                   "range": {"preset": "last_week"}}),
            json!({"dims": ["src"], "filter": "strpos(path, '活动') > 0", "from": "2025-11-17", "to": "2025-11-23"}),
        ),
        (
            json!({"metrics": ["new_users", "users", "launches", "returning_users"], "dimensions": ["utm_source", "month"],
                   "filters": [{"dimension": "utm_medium", "op": "is_null"}],
                   "range": {"past_days": 30}}),
            json!({"dims": ["src", "month"], "filter": "med IS NULL", "from": "2025-10-25", "to": "2025-11-23"}),
        ),
        (
            json!({"metrics": ["new_users", "users", "launches", "returning_users"], "dimensions": ["day"],
                   "filters": [{"dimension": "utm_source", "op": "equals", "value": "微信"}],
                   "range": {"preset": "yesterday"}}),
            json!({"dims": ["day"], "filter": "src = '微信'", "from": "2025-11-23", "to": "2025-11-23"}),
        ),
        (
            json!({"metrics": ["new_users", "users", "launches", "returning_users"], "dimensions": [],
                   "filters": [{"dimension": "utm_source", "op": "not_in", "values": ["gzh", "shop"]}],
                   "range": {"preset": "this_month"}}),
            json!({"dims": [], "filter": "(src IS NULL OR src NOT IN ('gzh', 'shop'))", "from": "2025-11-01", "to": "2025-11-24"}),
        ),
    ]
}

const DUCKDB: &str = r#"
import duckdb, json, sys
from datetime import datetime
from zoneinfo import ZoneInfo
path, cases = sys.argv[1], json.loads(sys.argv[2])
con = duckdb.connect()
con.execute(f"""
CREATE TABLE raw AS SELECT * FROM read_json('{path}', format = 'newline_delimited',
    columns = {{event_id: 'VARCHAR', user_id: 'VARCHAR', ts: 'BIGINT', path: 'VARCHAR',
               query: 'STRUCT(utm_source VARCHAR, utm_medium VARCHAR)'}});
CREATE TABLE ev AS
  SELECT event_id, user_id, ts, path,
         nullif(url_decode(query.utm_source), '') AS src,
         nullif(url_decode(query.utm_medium), '') AS med,
         timezone('Asia/Shanghai', to_timestamp(ts / 1000.0)) AS local
  FROM raw QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY ts) = 1;
CREATE TABLE labelled AS
  SELECT *, strftime(local, '%Y-%m-%d') AS day,
         strftime(date_trunc('week', local), '%Y-%m-%d') AS week,
         strftime(local, '%Y-%m') AS month,
         row_number() OVER (PARTITION BY user_id ORDER BY ts, event_id) = 1 AS first_launch,
         min(ts) OVER (PARTITION BY user_id) AS first_ts
  FROM ev;
""")
shanghai = ZoneInfo('Asia/Shanghai')
def ms(day, end=False):
    d = datetime.fromisoformat(day).replace(tzinfo=shanghai)
    return int(d.timestamp() * 1000) + (86_400_000 if end else 0)
answers = []
for case in cases:
    label = lambda d: d if d in ('day', 'week', 'month') else \
        f"CASE WHEN src IS NULL THEN '(unattributed)' ELSE coalesce({d}, '(not set)') END"
    dims = "".join(f"{label(d)} AS {d}, " for d in case["dims"])
    names = "".join(f"{d}, " for d in case["dims"])
    group = f"GROUP BY {', '.join(case['dims'])}" if case["dims"] else ""
    rows = con.execute(f"""
    WITH kept AS (SELECT {dims} user_id, first_launch, first_ts FROM labelled
                  WHERE ts >= $1 AND ts < $2 AND {case['filter']})
    SELECT {names} count(*) FILTER (WHERE first_launch), count(DISTINCT user_id), count(*),
           count(DISTINCT user_id) FILTER (WHERE first_ts < $1)
    FROM kept {group}
    """, [ms(case["from"]), ms(case["to"], end=True)]).fetchall()
    answers.append(sorted([list(r) for r in rows]))
print(json.dumps(answers))
"#;

/// `promolens analyze` of the spec in `file`, at [`NOW`], as JSON.
fn analyze(data: &str, file: &std::path::Path) -> Value {
    serde_json::from_str(&stdout_of(&promolens(&[
        "analyze",
        "--data",
        data,
        "--project",
        "shop",
        "--spec",
        file.to_str().unwrap(),
        "--now",
        NOW,
        "--format",
        "json",
    ])))
    .unwrap()
}

/// A project `shop` in a fresh data directory holding `lines` (backfilled), and the raw file.
struct Loaded {
    dir: tempfile::TempDir,
    data: String,
    raw: std::path::PathBuf,
}

impl Loaded {
    fn new(lines: &[String]) -> Loaded {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data").to_str().unwrap().to_string();
        promolens_tests::provision(&data, "shop");
        let raw = dir.path().join("events.ndjson");
        std::fs::write(&raw, lines.join("\n") + "\n").unwrap();
        stdout_of(&promolens(&[
            "backfill",
            "--data",
            &data,
            "--project",
            "shop",
            raw.to_str().unwrap(),
        ]));
        Loaded { dir, data, raw }
    }

    fn raw(&self) -> &str {
        self.raw.to_str().unwrap()
    }
}

/// The launches of [`events`] with the core events of [`core_events`] interleaved.
fn launches_and_core_events() -> Vec<String> {
    let mut lines = events();
    for (i, line) in core_events().into_iter().enumerate() {
        lines.insert((i * 7) % lines.len(), line);
    }
    lines
}

/// An answer's rows as `[dimension values…, new_users, users, launches, returning_users]`, sorted.
fn rows_of(spec: &Value, rows: &Value) -> Vec<Value> {
    let dims: Vec<&str> = spec["dimensions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap())
        .collect();
    let mut out: Vec<Value> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            let mut values: Vec<Value> = dims.iter().map(|d| row[*d].clone()).collect();
            values.extend(
                ["new_users", "users", "launches", "returning_users"].map(|m| row[m].clone()),
            );
            Value::Array(values)
        })
        .collect();
    out.sort_by_key(|r| r.to_string());
    out
}

#[test]
fn every_filter_time_dimension_and_preset_matches_duckdb() {
    let loaded = Loaded::new(&events());
    let (dir, data) = (&loaded.dir, loaded.data.as_str());
    let keys = promolens_tests::provision(data, "shop");

    let cases = cases();
    // And a comparison: last week beside the week before, by source.
    let compare =
        json!({"dimensions": ["utm_source"], "compare": true, "range": {"preset": "last_week"}});
    let this_week =
        json!({"dims": ["src"], "filter": "true", "from": "2025-11-17", "to": "2025-11-23"});
    let week_before =
        json!({"dims": ["src"], "filter": "true", "from": "2025-11-10", "to": "2025-11-16"});
    let mut questions: Vec<&Value> = cases.iter().map(|(_, q)| q).collect();
    questions.extend([&this_week, &week_before]);
    let expected = python_json(
        DUCKDB,
        &[loaded.raw(), &serde_json::to_string(&questions).unwrap()],
    );
    let mut answers = Vec::new();
    for (i, (spec, _)) in cases.iter().enumerate() {
        let file = dir.path().join(format!("spec{i}.json"));
        std::fs::write(&file, spec.to_string()).unwrap();
        let answer = analyze(data, &file);
        let ours = rows_of(spec, &answer["rows"]);
        assert!(!ours.is_empty(), "case {i} has no rows");
        assert_eq!(Value::Array(ours), expected[i], "case {i}: {spec}");
        answers.push(answer);
    }

    let file = dir.path().join("compare.json");
    std::fs::write(&file, compare.to_string()).unwrap();
    let compared = analyze(data, &file);
    assert_eq!(compared["previous_window"]["from"], "2025-11-10");
    // DuckDB's rows are [source, new users, users, launches].
    let duck = |i: usize, source: &Value, metric: usize| -> i64 {
        expected[i]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| &r[0] == source)
            .map_or(0, |r| r[metric].as_i64().unwrap())
    };
    let rows = compared["rows"].as_array().unwrap();
    let (this, before) = (cases.len(), cases.len() + 1);
    let sources: std::collections::BTreeSet<String> = (this..=before)
        .flat_map(|i| {
            expected[i]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r[0].to_string())
        })
        .collect();
    assert_eq!(
        rows.len(),
        sources.len(),
        "a row for every source of either week"
    );
    for row in rows {
        let source = &row["utm_source"];
        for (metric, column) in [("new_users", 1), ("users", 2), ("launches", 3)] {
            let (now, then) = (duck(this, source, column), duck(before, source, column));
            assert_eq!(row[metric], now, "{source} {metric}");
            assert_eq!(row[format!("{metric}_previous")], then, "{source} {metric}");
            let change = &row[format!("{metric}_change")];
            if then == 0 {
                assert!(change.is_null(), "{source} {metric}: {change}");
            } else {
                let want = (now - then) as f64 / then as f64;
                assert!(
                    (change.as_f64().unwrap() - want).abs() < 1e-9,
                    "{source} {metric}: {change}"
                );
            }
        }
    }

    // Over HTTP, the same answer; each row's drill-down is its values as filters and the next
    // dimension, and running it gives rows that add up to the row drilled into.
    let server = Server::start(data, &[], &[]);
    let client = promolens_tests::http_client();
    // The spec run over HTTP at NOW, answered as `format`.
    let post = |spec: &Value, format: &str| {
        client
            .post(format!(
                "{}/v1/projects/shop/analyses:run?format={format}&now={}",
                server.url,
                NOW.replace('+', "%2B")
            ))
            .bearer_auth(&keys.admin)
            .json(spec)
            .send()
            .unwrap()
    };
    let run = |spec: &Value| -> Value {
        let response = post(spec, "json");
        assert_eq!(response.status().as_u16(), 200);
        response.json().unwrap()
    };
    let (spec, _) = &cases[0];
    let over_http = run(spec);
    assert_eq!(over_http["rows"], answers[0]["rows"]);
    // As CSV: the dimensions and metrics of the same rows, in the same order.
    let csv = post(spec, "csv");
    assert!(
        csv.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let csv = csv.text().unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("day,utm_source,new_users,users,launches,returning_users")
    );
    let first = &over_http["rows"][0];
    assert_eq!(
        lines.next().unwrap(),
        format!(
            "{},{},{},{},{},{}",
            first["day"].as_str().unwrap(),
            first["utm_source"].as_str().unwrap(),
            first["new_users"],
            first["users"],
            first["launches"],
            first["returning_users"]
        )
    );
    assert_eq!(
        csv.lines().count(),
        over_http["rows"].as_array().unwrap().len() + 1
    );
    let row = over_http["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["utm_source"] == "shop")
        .unwrap();
    let drill = &row["drill_down"];
    // utm_medium is filtered already: the next is utm_campaign.
    assert_eq!(drill["dimensions"], json!(["utm_campaign"]));
    let drilled = run(drill);
    let total = |metric: &str| {
        drilled["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r[metric].as_i64().unwrap())
            .sum::<i64>()
    };
    assert_eq!(total("launches"), row["launches"].as_i64().unwrap());
    assert_eq!(total("new_users"), row["new_users"].as_i64().unwrap());
}

#[test]
fn a_bad_spec_names_its_part() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let keys = promolens_tests::provision(data, "shop");
    let server = Server::start(data, &[], &[]);
    let client = promolens_tests::http_client();
    for (spec, field, words) in [
        (
            json!({"dimensions": ["utm_foo"]}),
            "dimensions",
            "unknown dimension `utm_foo`",
        ),
        (
            json!({"filters": [{"dimension": "day", "op": "in", "values": []}]}),
            "filters",
            "1 to 1000 values, got 0",
        ),
        (
            json!({"range": {"past_days": 7, "preset": "today"}}),
            "range",
            "give one of",
        ),
        (json!({"range": {"past_days": 5000}}), "days", "1 to 1096"),
        (
            json!({"dimensions": ["day"], "compare": true}),
            "compare",
            "other than day, week and month",
        ),
        (
            json!({"metrics": ["purchase_users"], "core_events": [{"event": "purchase", "within_days": 400}]}),
            "core_events",
            "within_days of `purchase` must be 1 to 365, got 400",
        ),
        (
            json!({"metrics": ["new_users", "launch_users"]}),
            "core_events",
            "`launch` is not a core event",
        ),
        (
            json!({"metrics": ["purchase_count"], "dimensions": ["day"], "attribution": {"model": "linear"}}),
            "attribution",
            "split by day, week or month with the first-touch model",
        ),
        (
            json!({"metrics": ["purchase_count"], "attribution": {"model": "linear", "lookback_days": 0}}),
            "attribution",
            "lookback_days must be 1 to 365, got 0",
        ),
        (
            json!({"group": {"kind": "first_touch", "dimension": "day", "value": "2025-11-01"}}),
            "group",
            "a first-touch group names a dimension of launches",
        ),
    ] {
        let response = client
            .post(format!("{}/v1/projects/shop/analyses:run", server.url))
            .bearer_auth(&keys.admin)
            .json(&spec)
            .send()
            .unwrap();
        assert_eq!(response.status().as_u16(), 400, "{spec}");
        let error: Value = response.json().unwrap();
        assert_eq!(error["error"]["field"], field, "{spec}: {error}");
        assert!(
            error["error"]["message"].as_str().unwrap().contains(words),
            "{spec}: {error}"
        );
    }
    // An unknown operator or metric is refused by the JSON reader, naming it.
    for (spec, words) in [
        (
            json!({"filters": [{"dimension": "path", "op": "between"}]}),
            "between",
        ),
        (
            json!({"metrics": ["purchase_sum"]}),
            "unknown metric `purchase_sum`",
        ),
        (
            json!({"metrics": ["retained_d3"]}),
            "retained_d1, retained_d7 or retained_d30",
        ),
    ] {
        let response = client
            .post(format!("{}/v1/projects/shop/analyses:run", server.url))
            .bearer_auth(&keys.admin)
            .json(&spec)
            .send()
            .unwrap();
        assert_eq!(response.status().as_u16(), 400);
        let text = response.text().unwrap();
        assert!(text.contains(words), "{spec}: {text}");
    }
}

/// Signups, purchases and shares of the launches' users (and of 100 users who never launched)
/// at any time of the five weeks and ten days after, some before a user's first launch, some
/// sent twice; amounts as integers, decimals, a text that is not a number, or missing. And
/// logins: 150 `$identify` linking anonymous ids to 40 login ids (so one person has several
/// devices), some ids linked twice to different logins (the first counts).
fn core_events() -> Vec<String> {
    let mut state: u64 = 0xc0e_7e57;
    let mut next = |n: u64| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 11) % n
    };
    let span = 45 * 86_400_000;
    let mut out = Vec::new();
    for i in 0..1500 {
        let event = ["signup", "purchase", "purchase", "share"][next(4) as usize];
        let amount = match next(5) {
            0 => json!(next(500)),
            1 | 2 => json!(next(100_000) as f64 / 100.0),
            3 => json!("12.5"),
            _ => Value::Null,
        };
        let mut props = serde_json::Map::new();
        if !amount.is_null() {
            props.insert("amount".into(), amount);
        }
        props.insert("sku".into(), json!(format!("S{}", next(9))));
        let line = json!({
            "event": event,
            "event_id": format!("c{i}"),
            "user_id": format!("u{}", next(700)),
            "ts": HISTORY_START + next(span) as i64,
            "props": props,
        })
        .to_string();
        if i % 40 == 0 {
            out.push(line.clone());
        }
        out.push(line);
    }
    for i in 0..150 {
        out.push(
            json!({
                "event": "$identify",
                "event_id": format!("id{i}"),
                "user_id": format!("u{}", next(700)),
                "ts": HISTORY_START + next(span) as i64,
                "props": {"login_id": format!("m{}", next(40))},
            })
            .to_string(),
        );
    }
    out
}

const DUCKDB_OUTCOMES: &str = r#"
import duckdb, json, sys
from datetime import datetime
from zoneinfo import ZoneInfo
path, now, question = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
con = duckdb.connect()
con.execute(f"""
CREATE TABLE raw AS SELECT * FROM read_json('{path}', format = 'newline_delimited',
    columns = {{event: 'VARCHAR', event_id: 'VARCHAR', user_id: 'VARCHAR', ts: 'BIGINT',
               query: 'STRUCT(utm_source VARCHAR)', props: 'JSON'}});
CREATE TABLE deduped AS SELECT * FROM raw
    QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY ts) = 1;
-- A person per login: each anonymous id's first login.
CREATE TABLE people AS
  SELECT user_id, 'login:' || first(json_extract_string(props, '$.login_id') ORDER BY ts, event_id) AS person
  FROM deduped WHERE event = '$identify' GROUP BY user_id;
CREATE TABLE once AS
  SELECT d.* REPLACE (coalesce(p.person, d.user_id) AS user_id)
  FROM deduped d LEFT JOIN people p USING (user_id);
CREATE TABLE launches AS
  SELECT user_id, ts, event_id, nullif(url_decode(query.utm_source), '') AS src,
         CAST(timezone('Asia/Shanghai', to_timestamp(ts / 1000.0)) AS DATE) AS day
  FROM once WHERE event IS NULL;
CREATE TABLE firsts AS
  SELECT user_id, ts AS first_ts, day AS first_day,
         CASE WHEN src IS NULL THEN '(unattributed)' ELSE src END AS source
  FROM launches QUALIFY row_number() OVER (PARTITION BY user_id ORDER BY ts, event_id) = 1;
CREATE TABLE core AS
  SELECT user_id, ts, event,
         CASE WHEN json_type(props, '$.amount') IN ('UBIGINT', 'BIGINT', 'DOUBLE')
              THEN CAST(json_extract(props, '$.amount') AS DOUBLE) END AS amount
  FROM once WHERE event IS NOT NULL AND event <> '$identify';
""")
shanghai = ZoneInfo('Asia/Shanghai')
def ms(day, end=False):
    d = datetime.fromisoformat(day).replace(tzinfo=shanghai)
    return int(d.timestamp() * 1000) + (86_400_000 if end else 0)
today = datetime.fromisoformat(now).astimezone(shanghai).date()
rows = {}
new = con.execute("SELECT source, count(*) FROM firsts WHERE first_ts >= $1 AND first_ts < $2 GROUP BY source",
                  [ms(question['from']), ms(question['to'], end=True)]).fetchall()
for source, n in new:
    rows[source] = {'new_users': n}
for event, within in question['events'].items():
    for source, users, count, value in con.execute("""
        SELECT f.source, count(DISTINCT f.user_id), count(*), coalesce(sum(c.amount), 0)
        FROM firsts f JOIN core c ON c.user_id = f.user_id AND c.event = $3
         AND c.ts >= f.first_ts AND c.ts < f.first_ts + $4 * 86400000
        WHERE f.first_ts >= $1 AND f.first_ts < $2 GROUP BY f.source""",
            [ms(question['from']), ms(question['to'], end=True), event, within]).fetchall():
        rows[source][f'{event}_users'] = users
        rows[source][f'{event}_count'] = count
        rows[source][f'{event}_value'] = value
for n in question['retained']:
    for source, eligible, kept in con.execute("""
        SELECT f.source, count(*),
               count(*) FILTER (WHERE EXISTS (SELECT 1 FROM launches l WHERE l.user_id = f.user_id
                                               AND l.day = f.first_day + $3))
        FROM firsts f WHERE f.first_ts >= $1 AND f.first_ts < $2 AND f.first_day + $3 + 1 <= $4
        GROUP BY f.source""", [ms(question['from']), ms(question['to'], end=True), n, today]).fetchall():
        rows[source][f'retained_d{n}'] = kept / eligible
print(json.dumps(rows))
"#;

const DUCKDB_GROUPS: &str = r#"
import duckdb, json, sys
from datetime import datetime
from zoneinfo import ZoneInfo
path, frm, to = sys.argv[1], sys.argv[2], sys.argv[3]
con = duckdb.connect()
con.execute(f"""
CREATE TABLE raw AS SELECT * FROM read_json('{path}', format = 'newline_delimited',
    columns = {{event: 'VARCHAR', event_id: 'VARCHAR', user_id: 'VARCHAR', ts: 'BIGINT',
               query: 'STRUCT(utm_source VARCHAR)', props: 'JSON'}});
CREATE TABLE deduped AS SELECT * FROM raw
    QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY ts) = 1;
CREATE TABLE people AS
  SELECT user_id, 'login:' || first(json_extract_string(props, '$.login_id') ORDER BY ts, event_id) AS person
  FROM deduped WHERE event = '$identify' GROUP BY user_id;
CREATE TABLE once AS
  SELECT d.* REPLACE (coalesce(p.person, d.user_id) AS user_id)
  FROM deduped d LEFT JOIN people p USING (user_id);
CREATE TABLE launches AS
  SELECT user_id, ts, event_id,
         coalesce(nullif(url_decode(query.utm_source), ''), '(unattributed)') AS source
  FROM once WHERE event IS NULL;
CREATE TABLE firsts AS
  SELECT user_id, ts AS first_ts, source FROM launches
  QUALIFY row_number() OVER (PARTITION BY user_id ORDER BY ts, event_id) = 1;
CREATE TABLE core AS
  SELECT user_id, ts, event,
         CASE WHEN json_type(props, '$.amount') IN ('UBIGINT', 'BIGINT', 'DOUBLE')
              THEN CAST(json_extract(props, '$.amount') AS DOUBLE) END AS amount
  FROM once WHERE event IS NOT NULL AND event <> '$identify';
""")
shanghai = ZoneInfo('Asia/Shanghai')
def ms(day, end=False):
    d = datetime.fromisoformat(day).replace(tzinfo=shanghai)
    return int(d.timestamp() * 1000) + (86_400_000 if end else 0)
start, end = ms(frm), ms(to, end=True)
window = "ts >= $1 AND ts < $2"
groups = {
    'everyone': "SELECT DISTINCT user_id FROM launches",
    'new': "SELECT user_id FROM firsts WHERE first_ts >= $1 AND first_ts < $2",
    'returning': "SELECT user_id FROM firsts WHERE first_ts < $1",
    'did': f"SELECT DISTINCT user_id FROM core WHERE event = 'purchase' AND {window}",
    'did_not': f"SELECT user_id FROM firsts EXCEPT SELECT user_id FROM core WHERE event = 'purchase' AND {window}",
    'first_touch': "SELECT user_id FROM firsts WHERE source = 'gzh'",
    'sql': f"SELECT DISTINCT user_id FROM core WHERE event = 'purchase' AND amount >= 300 AND {window}",
}
answers = {}
for name, members in groups.items():
    rows = {}
    for source, users, count in con.execute(f"""
        SELECT source, count(DISTINCT user_id), count(*) FROM launches
        WHERE {window} AND user_id IN ({members}) AND $1 = $1 AND $2 = $2 GROUP BY source""", [start, end]).fetchall():
        rows[source] = [0, users, count]
    for source, new in con.execute(f"""
        SELECT source, count(*) FROM firsts
        WHERE first_ts >= $1 AND first_ts < $2 AND user_id IN ({members}) GROUP BY source""", [start, end]).fetchall():
        rows[source][0] = new
    answers[name] = rows
print(json.dumps(answers))
"#;

#[test]
fn user_groups_match_duckdb() {
    let loaded = Loaded::new(&launches_and_core_events());
    let (dir, data) = (&loaded.dir, loaded.data.as_str());
    let (from, to) = ("2025-11-03", "2025-11-16");
    let expected = python_json(DUCKDB_GROUPS, &[loaded.raw(), from, to]);
    let groups = [
        ("everyone", Value::Null),
        ("new", json!({"kind": "new"})),
        ("returning", json!({"kind": "returning"})),
        ("did", json!({"kind": "did", "event": "purchase"})),
        ("did_not", json!({"kind": "did_not", "event": "purchase"})),
        (
            "first_touch",
            json!({"kind": "first_touch", "dimension": "utm_source", "value": "gzh"}),
        ),
        (
            "sql",
            json!({"kind": "sql", "predicate": "event = 'purchase' AND props_number['amount'] >= 300"}),
        ),
    ];
    for (name, group) in groups {
        let mut spec = json!({"metrics": ["new_users", "users", "launches"], "dimensions": ["utm_source"],
                              "range": {"from": from, "to": to}});
        if !group.is_null() {
            spec["group"] = group;
        }
        let file = dir.path().join(format!("{name}.json"));
        std::fs::write(&file, spec.to_string()).unwrap();
        let answer = analyze(data, &file);
        let ours: std::collections::BTreeMap<String, Value> = answer["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let source = r["utm_source"].as_str().unwrap().to_string();
                (source, json!([r["new_users"], r["users"], r["launches"]]))
            })
            .collect();
        let want: std::collections::BTreeMap<String, Value> = expected[name]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        assert!(!want.is_empty(), "{name}: the group has users");
        assert_eq!(ours, want, "group {name}");
    }
}

const DUCKDB_MODELS: &str = r#"
import duckdb, json, sys
from datetime import datetime
from zoneinfo import ZoneInfo
path, frm, to, lookback = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
con = duckdb.connect()
con.execute(f"""
CREATE TABLE raw AS SELECT * FROM read_json('{path}', format = 'newline_delimited',
    columns = {{event: 'VARCHAR', event_id: 'VARCHAR', user_id: 'VARCHAR', ts: 'BIGINT',
               query: 'STRUCT(utm_source VARCHAR)', props: 'JSON'}});
CREATE TABLE deduped AS SELECT * FROM raw
    QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY ts) = 1;
CREATE TABLE people AS
  SELECT user_id, 'login:' || first(json_extract_string(props, '$.login_id') ORDER BY ts, event_id) AS person
  FROM deduped WHERE event = '$identify' GROUP BY user_id;
CREATE TABLE once AS
  SELECT d.* REPLACE (coalesce(p.person, d.user_id) AS user_id)
  FROM deduped d LEFT JOIN people p USING (user_id);
CREATE TABLE touches AS
  SELECT user_id, ts, event_id, nullif(url_decode(query.utm_source), '') AS src
  FROM once WHERE event IS NULL;
""")
shanghai = ZoneInfo('Asia/Shanghai')
def ms(day, end=False):
    d = datetime.fromisoformat(day).replace(tzinfo=shanghai)
    return int(d.timestamp() * 1000) + (86_400_000 if end else 0)
credit = {
    'last_touch': "CASE WHEN pos = n THEN 1.0 ELSE 0.0 END",
    'last_non_direct': "CASE WHEN pos = coalesce(last_attributed, n) THEN 1.0 ELSE 0.0 END",
    'linear': "1.0 / n",
    'position_based': "CASE WHEN n = 1 THEN 1.0 WHEN n = 2 THEN 0.5 WHEN pos = 1 OR pos = n THEN 0.4 ELSE 0.2 / (n - 2) END",
}
answers = {}
for model, formula in credit.items():
    rows = con.execute(f"""
    WITH conversions AS (
        SELECT user_id, event_id AS conversion, ts AS at,
               CASE WHEN json_type(props, '$.amount') IN ('UBIGINT', 'BIGINT', 'DOUBLE')
                    THEN CAST(json_extract(props, '$.amount') AS DOUBLE) ELSE 0 END AS value,
               row_number() OVER (PARTITION BY user_id ORDER BY ts, event_id) = 1 AS first_of_user
        FROM once WHERE event = 'purchase' AND ts >= $1 AND ts < $2),
    paired AS (
        SELECT c.*, t.src, t.event_id AS touch,
               row_number() OVER (PARTITION BY c.conversion ORDER BY t.ts, t.event_id) AS pos,
               greatest(count(t.event_id) OVER (PARTITION BY c.conversion), 1) AS n
        FROM conversions c LEFT JOIN touches t
          ON t.user_id = c.user_id AND t.ts <= c.at AND t.ts >= c.at - $3 * 86400000),
    ranked AS (
        SELECT *, max(CASE WHEN src IS NOT NULL THEN pos END) OVER (PARTITION BY conversion) AS last_attributed
        FROM paired),
    credited AS (SELECT *, CAST({formula} AS DOUBLE) AS credit FROM ranked)
    SELECT coalesce(src, '(unattributed)'),
           sum(CASE WHEN first_of_user THEN credit ELSE 0 END), sum(credit), sum(credit * value)
    FROM credited GROUP BY 1
    """, [ms(frm), ms(to, end=True), lookback]).fetchall()
    answers[model] = {r[0]: [r[1], r[2], r[3]] for r in rows}
print(json.dumps(answers))
"#;

#[test]
fn attribution_models_match_duckdb() {
    let loaded = Loaded::new(&launches_and_core_events());
    let (dir, data) = (&loaded.dir, loaded.data.as_str());
    let (from, to, lookback) = ("2025-11-03", "2025-11-16", 3);
    let expected = python_json(
        DUCKDB_MODELS,
        &[loaded.raw(), from, to, &lookback.to_string()],
    );
    for model in ["last_touch", "last_non_direct", "linear", "position_based"] {
        let spec = json!({"metrics": ["purchase_users", "purchase_count", "purchase_value"],
                          "dimensions": ["utm_source"], "range": {"from": from, "to": to},
                          "attribution": {"model": model, "lookback_days": lookback}});
        let file = dir.path().join(format!("{model}.json"));
        std::fs::write(&file, spec.to_string()).unwrap();
        let answer = analyze(data, &file);
        assert_eq!(
            answer["attribution"]["model"], model,
            "the answer states its model"
        );
        assert_eq!(answer["attribution"]["lookback_days"], lookback);
        let want = expected[model].as_object().unwrap();
        let mut total = 0.0;
        for (source, figures) in want {
            let row = answer["rows"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["utm_source"] == source.as_str())
                .unwrap_or_else(|| panic!("{model}: no row {source}: {answer}"));
            for (i, metric) in ["purchase_users", "purchase_count", "purchase_value"]
                .iter()
                .enumerate()
            {
                let (ours, theirs) = (row[metric].as_f64().unwrap(), figures[i].as_f64().unwrap());
                assert!(
                    (ours - theirs).abs() < 1e-5,
                    "{model} {source} {metric}: {ours} vs {theirs}"
                );
            }
            total += figures[1].as_f64().unwrap();
        }
        // Every conversion is credited once in all, whatever the model.
        let conversions: f64 = answer["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["purchase_count"].as_f64().unwrap())
            .sum();
        assert!(
            (conversions - total).abs() < 1e-5 && total > 20.0,
            "{model}: {conversions} vs {total}"
        );
    }
}

#[test]
fn core_events_and_retention_match_duckdb() {
    let loaded = Loaded::new(&launches_and_core_events());
    let (dir, data) = (&loaded.dir, loaded.data.as_str());
    let spec = json!({
        "metrics": ["new_users", "signup_users", "signup_count", "signup_value", "signup_rate", "purchase_users",
                    "purchase_count", "purchase_value", "purchase_rate", "retained_d1", "retained_d7",
                    "retained_d30"],
        "core_events": [{"event": "purchase", "within_days": 3}],
        "dimensions": ["utm_source"],
        "range": {"from": "2025-10-20", "to": "2025-11-16"},
    });
    let file = dir.path().join("spec.json");
    std::fs::write(&file, spec.to_string()).unwrap();
    let answer = analyze(data, &file);
    let question = json!({"from": "2025-10-20", "to": "2025-11-16",
                          "events": {"signup": 7, "purchase": 3}, "retained": [1, 7, 30]});
    let expected = python_json(
        DUCKDB_OUTCOMES,
        &[
            loaded.raw(),
            NOW,
            &serde_json::to_string(&question).unwrap(),
        ],
    );
    let rows = answer["rows"].as_array().unwrap();
    assert_eq!(rows.len(), expected.as_object().unwrap().len(), "{answer}");
    let close = |a: &Value, b: &Value| match (a.as_f64(), b.as_f64()) {
        (Some(a), Some(b)) => (a - b).abs() < 1e-6,
        _ => a == b,
    };
    let mut converted = 0;
    for row in rows {
        let source = row["utm_source"].as_str().unwrap();
        let want = &expected[source];
        let new_users = want["new_users"].as_i64().unwrap();
        assert_eq!(row["new_users"], new_users, "{source}");
        for event in ["signup", "purchase"] {
            for measure in ["users", "count", "value"] {
                let column = format!("{event}_{measure}");
                let expected = want.get(&column).cloned().unwrap_or(json!(0));
                assert!(
                    close(&row[&column], &expected),
                    "{source} {column}: {} vs {expected}",
                    row[&column]
                );
            }
            let users = want
                .get(format!("{event}_users"))
                .and_then(Value::as_i64)
                .unwrap_or(0);
            converted += users;
            let rate = row[format!("{event}_rate")].as_f64().unwrap();
            assert!(
                (rate - users as f64 / new_users as f64).abs() < 1e-9,
                "{source} {event}_rate"
            );
        }
        for n in [1, 7, 30] {
            let column = format!("retained_d{n}");
            let expected = want.get(&column).cloned().unwrap_or(Value::Null);
            assert!(
                close(&row[&column], &expected),
                "{source} {column}: {} vs {expected}",
                row[&column]
            );
        }
    }
    assert!(
        converted > 20,
        "the data has conversions to count: {converted}"
    );
}

/// 1,500 launches of 300 users over ten days from every kind of way in: scene values of each
/// channel, one WeChat does not list here, none at all, and paid media in any case.
fn launches_from_everywhere() -> Vec<String> {
    let mut state: u64 = 0xc4a7;
    let mut next = |n: u64| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 11) % n
    };
    let scenes = [
        Some(1047),
        Some(1011),
        Some(1013),
        Some(1007),
        Some(1035),
        Some(1058),
        Some(1037),
        Some(1005),
        Some(1045),
        Some(1089),
        Some(1001),
        Some(1999),
        None,
    ];
    let media = [None, Some("menu"), Some("CPC"), Some("paid")];
    let sources = [None, Some("gzh"), Some("shop")];
    (0..1500)
        .map(|i| {
            let mut query = serde_json::Map::new();
            if let Some(source) = sources[next(3) as usize] {
                query.insert("utm_source".into(), json!(source));
            }
            if let Some(medium) = media[next(4) as usize] {
                query.insert("utm_medium".into(), json!(medium));
            }
            let mut event = json!({
                "event_id": format!("ch{i}"),
                "user_id": format!("v{}", next(300)),
                "ts": 1_763_395_200_000i64 + next(10 * 86_400_000) as i64,
                "query": query,
            });
            if let Some(scene) = scenes[next(13) as usize] {
                event["scene"] = json!(scene);
            }
            event.to_string()
        })
        .collect()
}

const DUCKDB_CHANNELS: &str = r#"
import duckdb, json, sys
path = sys.argv[1]
# WeChat's scene values of the launches above, by channel (DESIGN.md "Channels").
channel_of_scene = {1047: 'mini_program_code', 1011: 'qr_code', 1013: 'qr_code', 1007: 'shared_card',
                    1035: 'official_account', 1058: 'official_account', 1037: 'mini_program',
                    1005: 'search', 1045: 'ads', 1089: 'recents', 1001: 'recents'}
con = duckdb.connect()
con.execute("CREATE TABLE scenes (scene INTEGER, channel VARCHAR)")
con.executemany("INSERT INTO scenes VALUES (?, ?)", list(channel_of_scene.items()))
con.execute(f"""
CREATE TABLE launches AS
  SELECT l.user_id, l.ts, l.event_id,
         CASE WHEN lower(l.query.utm_medium) IN ('cpc', 'ppc', 'cpm', 'paid', 'ad', 'ads') THEN 'ads'
              WHEN l.scene IS NULL THEN 'direct'
              ELSE coalesce(s.channel, 'other') END AS channel,
         coalesce(l.query.utm_source, '(unattributed)') AS source
  FROM read_json('{path}', format = 'newline_delimited',
       columns = {{event_id: 'VARCHAR', user_id: 'VARCHAR', ts: 'BIGINT', scene: 'INTEGER',
                  query: 'STRUCT(utm_source VARCHAR, utm_medium VARCHAR)'}}) l
  LEFT JOIN scenes s USING (scene)
""")
rows = con.execute("""
  WITH firsts AS (SELECT * FROM launches QUALIFY row_number() OVER (PARTITION BY user_id ORDER BY ts, event_id) = 1)
  SELECT l.channel, l.source, (SELECT count(*) FROM firsts f WHERE f.channel = l.channel AND f.source = l.source),
         count(DISTINCT l.user_id), count(*)
  FROM launches l GROUP BY 1, 2""").fetchall()
print(json.dumps(sorted([list(r) for r in rows])))
"#;

#[test]
fn channels_match_duckdb() {
    let loaded = Loaded::new(&launches_from_everywhere());
    let (dir, data) = (&loaded.dir, loaded.data.as_str());
    let spec = json!({"dimensions": ["channel", "utm_source"],
                      "range": {"from": "2025-11-17", "to": "2025-11-27"}});
    let file = dir.path().join("channels.json");
    std::fs::write(&file, spec.to_string()).unwrap();
    let answer = analyze(data, &file);
    let mut ours: Vec<Value> = answer["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            json!([
                r["channel"],
                r["utm_source"],
                r["new_users"],
                r["users"],
                r["launches"]
            ])
        })
        .collect();
    ours.sort_by_key(|r| r.to_string());
    let expected = python_json(DUCKDB_CHANNELS, &[loaded.raw()]);
    let mut theirs: Vec<Value> = expected.as_array().unwrap().clone();
    theirs.sort_by_key(|r| r.to_string());
    assert_eq!(ours, theirs);
    let channels: std::collections::BTreeSet<&str> =
        ours.iter().map(|r| r[0].as_str().unwrap()).collect();
    assert_eq!(
        channels.len(),
        10,
        "every channel, direct and other included: {channels:?}"
    );
}

/// Launches with `props` of every shape: strings (Chinese too), numbers, booleans, nested
/// objects, nulls, a missing key, no props at all.
fn launches_with_props() -> Vec<String> {
    let plans = [json!("gold"), json!("free"), json!("金卡"), Value::Null];
    (0..1500)
        .map(|i| {
            let source = ["gzh", "shop"][i % 2];
            let mut event = json!({
                "event_id": format!("p{i}"),
                "user_id": format!("w{}", (i * 13) % 400),
                "ts": 1_763_395_200_000i64 + (i as i64 * 4_000_000) % (10 * 86_400_000),
                "scene": 1047,
                "query": {"utm_source": source},
            });
            if i % 9 != 0 {
                let mut props = json!({"seats": i % 4, "trial": i % 3 == 0, "n": {"a": i % 2}});
                if i % 5 != 0 {
                    props["plan"] = plans[i % 4].clone();
                }
                event["props"] = props;
            }
            event.to_string()
        })
        .collect()
}

const DUCKDB_PROPS: &str = r#"
import duckdb, json, sys
con = duckdb.connect()
con.execute(f"""
CREATE TABLE ev AS SELECT event_id, user_id, ts,
       json_extract_string(props, '$.plan') AS plan, json_extract_string(props, '$.seats') AS seats
FROM read_json('{sys.argv[1]}', format = 'newline_delimited',
     columns = {{event_id: 'VARCHAR', user_id: 'VARCHAR', ts: 'BIGINT', props: 'JSON'}});
CREATE TABLE labelled AS SELECT *,
       row_number() OVER (PARTITION BY user_id ORDER BY ts, event_id) = 1 AS first_launch FROM ev;
""")
rows = con.execute("""
SELECT coalesce(plan, '(not set)'), count(*) FILTER (WHERE first_launch), count(DISTINCT user_id), count(*)
FROM labelled WHERE seats IN ('1', '2') GROUP BY 1""").fetchall()
print(json.dumps(sorted([list(r) for r in rows])))
"#;

#[test]
fn props_dimensions_match_duckdb() {
    let loaded = Loaded::new(&launches_with_props());
    let (dir, data) = (&loaded.dir, loaded.data.as_str());
    let spec = json!({"dimensions": ["props.plan"],
                      "filters": [{"dimension": "props.seats", "op": "in", "values": ["1", "2"]}],
                      "range": {"from": "2025-11-17", "to": "2025-11-30"}});
    let file = dir.path().join("props.json");
    std::fs::write(&file, spec.to_string()).unwrap();
    let answer = analyze(data, &file);
    let mut ours: Vec<Value> = answer["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| json!([r["props.plan"], r["new_users"], r["users"], r["launches"]]))
        .collect();
    ours.sort_by_key(|r| r.to_string());
    let theirs = python_json(DUCKDB_PROPS, &[loaded.raw()]);
    let mut theirs = theirs.as_array().unwrap().clone();
    theirs.sort_by_key(|r| r.to_string());
    assert_eq!(ours, theirs);
    // Seats 1 and 2 hold the plans `free` and `金卡` (and launches without a plan).
    assert_eq!(ours.len(), 3, "free, 金卡 and (not set): {ours:?}");
    // A key of other characters is no dimension.
    std::fs::write(&file, json!({"dimensions": ["props.a b"]}).to_string()).unwrap();
    let refused = promolens(&[
        "analyze",
        "--data",
        data,
        "--project",
        "shop",
        "--spec",
        file.to_str().unwrap(),
    ]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("props.<key>"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}
