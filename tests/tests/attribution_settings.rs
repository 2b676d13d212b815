//! A project's attribution settings (`promolens settings`, `promolens reattribute`): parameter
//! aliases, normalisation and channel rules, checked against DuckDB over the raw NDJSON with
//! its own decoding of each launch (Python's `urllib`, written here, never promolens' decoder);
//! and `reattribute` killed at random points, then run again, against one clean run.

use std::process::{Command, Stdio};
use std::time::Duration;

use promolens_tests::{bin, percent_encode, promolens, python_json, stdout_of};
use serde_json::{Value, json};

/// 2025-10-01 00:00 +08:00.
const HISTORY_START: i64 = 1_759_248_000_000;

/// The settings under test (version 1).
fn settings() -> Value {
    json!({
        "lookback_days": 14,
        "aliases": {
            "utm_source": ["utm_source", "src", "_um_channel", "gio_utm_source"],
            "utm_campaign": ["utm_campaign", "mtm_campaign"],
        },
        "normalize": {
            "utm_source": {"trim": true, "lowercase": true,
                           "values": {"微信": "wechat", "weixin": "wechat"}},
        },
        "channel_rules": [
            {"channel": "partner_poster", "utm_medium": ["POSTER"], "utm_source": ["partner_a"]},
            {"channel": "shop_qr", "scene": [1011]},
        ],
    })
}

/// `count` launches of `users` users over `days` days from [`HISTORY_START`], in no order,
/// some sent twice: sources under every alias (sometimes two at once, sometimes inside a B
/// code's scene), spellings that normalisation merges, campaigns under an alias, code ids in
/// mixed case.
fn launches(seed: u64, count: usize, users: u64, days: u64, prefix: &str) -> Vec<String> {
    let mut state = seed;
    let mut next = |n: u64| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 11) % n
    };
    let source_keys = ["utm_source", "src", "_um_channel", "gio_utm_source", "from"];
    let sources = [
        "WeChat",
        " wechat ",
        "微信",
        "Weixin",
        "Partner_A",
        "gzh",
        "",
        "  ",
    ];
    let media = [
        Some("poster"),
        Some("Poster"),
        Some("cpc"),
        Some("menu"),
        None,
    ];
    let scenes = [Some(1047), Some(1011), Some(1007), None];
    let mut out = Vec::new();
    for i in 0..count {
        let mut query = serde_json::Map::new();
        let mut scene_pairs = Vec::new();
        for _ in 0..next(3) {
            let key = source_keys[next(5) as usize];
            let value = sources[next(8) as usize];
            if next(6) == 0 {
                scene_pairs.push(format!("{key}={}", percent_encode(value)));
            } else {
                query.insert(key.into(), json!(percent_encode(value)));
            }
        }
        if let Some(medium) = media[next(5) as usize] {
            query.insert("utm_medium".into(), json!(medium));
        }
        match next(4) {
            0 => {
                query.insert("utm_campaign".into(), json!("Spring"));
            }
            1 => {
                query.insert("mtm_campaign".into(), json!("1111"));
            }
            _ => {}
        }
        if next(5) == 0 {
            query.insert("c".into(), json!(["AbC1", "xyZ9"][next(2) as usize]));
        }
        if !scene_pairs.is_empty() {
            query.insert(
                "scene".into(),
                json!(percent_encode(&scene_pairs.join("&"))),
            );
        }
        let mut event = json!({
            "event_id": format!("{prefix}{i}"),
            "user_id": format!("u{}", next(users)),
            "ts": HISTORY_START + next(days * 86_400_000) as i64,
            "query": query,
        });
        if let Some(scene) = scenes[next(4) as usize] {
            event["scene"] = json!(scene);
        }
        let line = event.to_string();
        if i % 40 == 0 {
            out.push(line.clone());
        }
        out.push(line);
    }
    out
}

/// Each launch decoded in Python as the settings say (or as the defaults do: `settings` null),
/// then new users, users and launches by channel and source, by DuckDB.
const DUCKDB_DECODED: &str = r#"
import duckdb, json, sys
from urllib.parse import unquote
path, settings = sys.argv[1], json.loads(sys.argv[2])
aliases = (settings or {}).get('aliases', {})
norm = (settings or {}).get('normalize', {}).get('utm_source')
rules = (settings or {}).get('channel_rules', [])
def names(field):
    return aliases.get(field, [field])
def pick(pairs, field):
    # The preferred name present with a value; of one name, its first value.
    for name in names(field):
        for k, v in pairs:
            if k == name and v != '':
                return v
    return None
def normalise(value):
    if value is None or norm is None:
        return value
    value = value.strip() if norm.get('trim') else value
    value = value.lower() if norm.get('lowercase') else value
    merged = {k.strip().lower(): v for k, v in norm.get('values', {}).items()}
    return merged.get(value, value) if value != '' else None
scene_channel = {1047: 'mini_program_code', 1011: 'qr_code', 1007: 'shared_card'}
def channel(scene, medium, source):
    for rule in rules:
        if rule.get('scene') and scene not in rule['scene']: continue
        if rule.get('utm_medium') and (medium or '').lower() not in [m.lower() for m in rule['utm_medium']]: continue
        if rule.get('utm_source') and (source or '').lower() not in [s.lower() for s in rule['utm_source']]: continue
        return rule['channel']
    if (medium or '').lower() in ('cpc', 'ppc', 'cpm', 'paid', 'ad', 'ads'): return 'ads'
    if scene is None: return 'direct'
    return scene_channel.get(scene, 'other')
seen, rows = set(), []
for line in open(path, encoding='utf-8'):
    e = json.loads(line)
    if e['event_id'] in seen: continue
    seen.add(e['event_id'])
    query = [(k, unquote(v)) for k, v in e['query'].items()]
    inner = []
    for k, v in e['query'].items():
        if k == 'scene':
            for pair in unquote(v).split('&'):
                if '=' in pair:
                    a, b = pair.split('=', 1)
                    inner.append((a, unquote(b)))
    explicit = [(k, v) for k, v in query if k not in ('scene', 'q')]
    source = pick(explicit, 'utm_source') or pick(inner, 'utm_source')
    source = normalise(source)
    medium = pick(explicit, 'utm_medium') or pick(inner, 'utm_medium')
    campaign = pick(explicit, 'utm_campaign') or pick(inner, 'utm_campaign')
    code = pick(explicit, 'c') if True else None
    attributed = source is not None or code is not None
    rows.append((e['event_id'], e['user_id'], e['ts'], channel(e.get('scene'), medium, source),
                 source if attributed and source is not None else ('(not set)' if attributed else '(unattributed)'),
                 campaign if attributed and campaign is not None else ('(not set)' if attributed else '(unattributed)')))
con = duckdb.connect()
con.execute("CREATE TABLE l (event_id VARCHAR, user_id VARCHAR, ts BIGINT, channel VARCHAR, source VARCHAR, campaign VARCHAR)")
con.executemany("INSERT INTO l VALUES (?, ?, ?, ?, ?, ?)", rows)
out = {}
for dims in (['channel', 'source'], ['campaign']):
    d = ', '.join(dims)
    out[' '.join(dims)] = sorted([list(r) for r in con.execute(f"""
      WITH firsts AS (SELECT * FROM l QUALIFY row_number() OVER (PARTITION BY user_id ORDER BY ts, event_id) = 1)
      SELECT {d}, (SELECT count(*) FROM firsts f WHERE {' AND '.join(f'f.{x} = l.{x}' for x in dims)}),
             count(DISTINCT user_id), count(*)
      FROM l GROUP BY {d}""").fetchall()])
print(json.dumps(out))
"#;

/// promolens' answer by `dimensions` over the whole history: its rows as DuckDB's, and the
/// settings it names.
fn answer(data: &str, dimensions: &[&str], dir: &std::path::Path) -> (Vec<Value>, Value) {
    let spec = json!({"dimensions": dimensions,
                      "range": {"from": "2025-09-30", "to": "2025-12-31"}});
    let file = dir.join("spec.json");
    std::fs::write(&file, spec.to_string()).unwrap();
    let answer: Value = serde_json::from_str(&stdout_of(&promolens(&[
        "analyze",
        "--data",
        data,
        "--project",
        "shop",
        "--spec",
        file.to_str().unwrap(),
        "--format",
        "json",
    ])))
    .unwrap();
    let mut rows: Vec<Value> = answer["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let mut row: Vec<Value> = dimensions.iter().map(|d| r[*d].clone()).collect();
            row.extend([
                r["new_users"].clone(),
                r["users"].clone(),
                r["launches"].clone(),
            ]);
            Value::Array(row)
        })
        .collect();
    rows.sort_by_key(|r| r.to_string());
    (rows, answer["settings"].clone())
}

fn expected(raw: &str, settings: &Value, key: &str) -> Vec<Value> {
    let all = python_json(DUCKDB_DECODED, &[raw, &settings.to_string()]);
    let mut rows = all[key].as_array().unwrap().clone();
    rows.sort_by_key(|r| r.to_string());
    rows
}

fn set_settings(data: &str, dir: &std::path::Path, from_version: u32) -> Value {
    let file = dir.join("settings.json");
    std::fs::write(&file, settings().to_string()).unwrap();
    serde_json::from_str(&stdout_of(&promolens(&[
        "settings",
        "--data",
        data,
        "--project",
        "shop",
        "set",
        file.to_str().unwrap(),
        "--version",
        &from_version.to_string(),
    ])))
    .unwrap()
}

/// DuckDB over the stored files: (rows, distinct event ids, the settings versions they carry).
const DUCKDB_STORED: &str = r#"
import duckdb, json, sys
glob = sys.argv[1] + '/launch_events/**/*.parquet'
con = duckdb.connect()
rows, ids = con.execute(f"SELECT count(*), count(DISTINCT event_id) FROM read_parquet('{glob}', union_by_name = true)").fetchone()
versions = [r[0] for r in con.execute(f"SELECT DISTINCT coalesce(settings_version, 0) FROM read_parquet('{glob}', union_by_name = true) ORDER BY 1").fetchall()]
print(json.dumps([rows, ids, versions]))
"#;

#[test]
fn aliases_normalisation_and_channel_rules_match_duckdb() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data").to_str().unwrap().to_string();
    let data = data.as_str();
    promolens_tests::provision(data, "shop");
    let raw = dir.path().join("events.ndjson");
    let lines = launches(0x5e77_1095, 3000, 400, 40, "e");
    std::fs::write(&raw, lines.join("\n") + "\n").unwrap();
    promolens_tests::backfill(data, "shop", &raw, &[]);
    let raw = raw.to_str().unwrap();

    // Version 0: the defaults decode, the default channels.
    let (ours, used) = answer(data, &["channel", "utm_source"], dir.path());
    assert_eq!(ours, expected(raw, &Value::Null, "channel source"));
    assert_eq!(used, json!({"version": 0, "decoded_with": [0]}));

    // Version 1: channel rules apply to every stored launch at once; aliases and normalisation
    // to stored launches only once they are decoded again, which the answer says.
    let saved = set_settings(data, dir.path(), 0);
    assert_eq!(saved["version"], 1);
    let rules_only = json!({"channel_rules": settings()["channel_rules"]});
    let (ours, used) = answer(data, &["channel", "utm_source"], dir.path());
    assert_eq!(ours, expected(raw, &rules_only, "channel source"));
    assert_eq!(used, json!({"version": 1, "decoded_with": [0]}));
    let stale = stdout_of(&promolens(&[
        "analyze",
        "--data",
        data,
        "--project",
        "shop",
        "--from",
        "2025-09-30",
        "--to",
        "2025-12-31",
    ]));
    assert!(stale.contains("launches decoded with version 0"), "{stale}");

    // Reattributed: every launch decoded with version 1.
    let summary = stdout_of(&promolens(&[
        "reattribute",
        "--data",
        data,
        "--project",
        "shop",
        "--from",
        "2025-09-01",
        "--grace-seconds",
        "0",
    ]));
    let days = std::fs::read_dir(format!("{data}/launch_events/project=shop"))
        .unwrap()
        .count();
    assert!(
        summary.contains(&format!("of {days} days again with settings version 1")),
        "{summary}"
    );
    let (ours, used) = answer(data, &["channel", "utm_source"], dir.path());
    assert_eq!(ours, expected(raw, &settings(), "channel source"));
    assert_eq!(used, json!({"version": 1, "decoded_with": [1]}));
    let (ours, _) = answer(data, &["utm_campaign"], dir.path());
    assert_eq!(ours, expected(raw, &settings(), "campaign"));
    let stored = python_json(DUCKDB_STORED, &[data]);
    let distinct = lines.iter().collect::<std::collections::HashSet<_>>().len();
    assert_eq!(stored, json!([distinct, distinct, [1]]));

    // Run again: nothing left to do.
    let again = stdout_of(&promolens(&[
        "reattribute",
        "--data",
        data,
        "--project",
        "shop",
        "--from",
        "2025-09-01",
    ]));
    assert!(again.contains("decoded 0 launches of 0 days"), "{again}");
    assert!(
        again.contains(&format!("({days} days were already at it)")),
        "{again}"
    );

    // New launches are decoded with the current version as they arrive.
    let later = dir.path().join("later.ndjson");
    let more = launches(0x1a7e, 300, 400, 40, "late");
    std::fs::write(&later, more.join("\n") + "\n").unwrap();
    promolens_tests::backfill(data, "shop", &later, &[]);
    let stored = python_json(DUCKDB_STORED, &[data]);
    assert_eq!(stored[2], json!([1]));

    // The multi-touch models take the project's lookback window unless a spec gives one.
    let spec = dir.path().join("linear.json");
    std::fs::write(
        &spec,
        json!({"metrics": ["new_users"], "attribution": {"model": "linear"}}).to_string(),
    )
    .unwrap();
    let linear: Value = serde_json::from_str(&stdout_of(&promolens(&[
        "analyze",
        "--data",
        data,
        "--project",
        "shop",
        "--spec",
        spec.to_str().unwrap(),
        "--format",
        "json",
    ])))
    .unwrap();
    assert_eq!(
        linear["attribution"],
        json!({"model": "linear", "lookback_days": 14})
    );

    // Stale edits are refused; every version stays readable.
    let conflict = promolens(&[
        "settings",
        "--data",
        data,
        "--project",
        "shop",
        "set",
        dir.path().join("settings.json").to_str().unwrap(),
        "--version",
        "0",
    ]);
    assert!(!conflict.status.success());
    assert!(
        String::from_utf8_lossy(&conflict.stderr).contains("at version 1, not 0"),
        "{}",
        String::from_utf8_lossy(&conflict.stderr)
    );
    let history: Value = serde_json::from_str(&stdout_of(&promolens(&[
        "settings",
        "--data",
        data,
        "--project",
        "shop",
        "history",
    ])))
    .unwrap();
    assert_eq!(history.as_array().unwrap().len(), 2);
    assert_eq!(history[1]["settings"], settings());
}

/// Files of the launches as DuckDB reads them: each event's id and attribution columns.
const DUCKDB_SAME_ROWS: &str = r#"
import duckdb, json, sys
con = duckdb.connect()
def rows(data):
    return f"""SELECT event_id, user_id, event_time, code_id, utm_source, utm_medium, utm_campaign,
                      utm_content, utm_term, attribution, settings_version
               FROM read_parquet('{data}/launch_events/**/*.parquet', union_by_name = true)"""
a, b = sys.argv[1], sys.argv[2]
count_a, ids_a = con.execute(f"SELECT count(*), count(DISTINCT event_id) FROM ({rows(a)})").fetchone()
count_b = con.execute(f"SELECT count(*) FROM ({rows(b)})").fetchone()[0]
only_a = con.execute(f"SELECT count(*) FROM ({rows(a)} EXCEPT ALL {rows(b)})").fetchone()[0]
only_b = con.execute(f"SELECT count(*) FROM ({rows(b)} EXCEPT ALL {rows(a)})").fetchone()[0]
# Markers and staged outputs; not the local store's own temporary files (`<name>#<n>`), which a
# put killed midway leaves, which object_store never lists and no reader takes.
leftovers = con.execute(f"""SELECT count(*) FROM glob('{a}/launch_events/**/_compaction-*')
                           WHERE NOT regexp_matches(file, '#[0-9]+$')""").fetchone()[0]
print(json.dumps({"rows": count_a, "distinct_ids": ids_a, "clean_rows": count_b,
                  "only_interrupted": only_a, "only_clean": only_b, "markers_left": leftovers}))
"#;

#[test]
fn reattribute_killed_at_random_points_ends_as_one_clean_run() {
    let dir = tempfile::tempdir().unwrap();
    let interrupted = dir.path().join("interrupted").to_str().unwrap().to_string();
    let clean = dir.path().join("clean").to_str().unwrap().to_string();
    let raw = dir.path().join("events.ndjson");
    let lines = launches(0xc1ea4, 60_000, 5000, 90, "k");
    std::fs::write(&raw, lines.join("\n") + "\n").unwrap();
    for data in [&interrupted, &clean] {
        promolens_tests::provision(data, "shop");
        promolens_tests::backfill(data, "shop", &raw, &[]);
        set_settings(data, dir.path(), 0);
    }
    let reattribute = |data: &str| {
        let mut command = Command::new(bin());
        command
            .args(["reattribute", "--data", data, "--project", "shop"])
            .args(["--from", "2025-01-01", "--grace-seconds", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        command
    };
    assert!(reattribute(&clean).status().unwrap().success());

    // Killed at random moments; each run picks up where the last one died.
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("kill points seed {seed}");
    let mut state = seed | 1;
    let mut kills = 0;
    for _ in 0..6 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let after = Duration::from_millis(20 + state % 700);
        let mut child = reattribute(&interrupted).spawn().unwrap();
        std::thread::sleep(after);
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        let _ = child.wait();
    }
    assert!(reattribute(&interrupted).status().unwrap().success());
    assert!(kills > 0, "no run was interrupted (seed {seed})");
    eprintln!("{kills} runs killed");

    let compared = python_json(DUCKDB_SAME_ROWS, &[&interrupted, &clean]);
    let distinct = lines.iter().collect::<std::collections::HashSet<_>>().len();
    assert_eq!(
        compared,
        json!({"rows": distinct, "distinct_ids": distinct, "clean_rows": distinct,
               "only_interrupted": 0, "only_clean": 0, "markers_left": 0}),
        "seed {seed}"
    );
}

/// `reattribute` while compactions run on the same data directory (as `serve`'s background
/// compaction does): both replace a day's files, and no launch may be stored twice, lost, or
/// left decoded with the old settings. Two rounds: new launches in many small files per day,
/// new settings, then `reattribute` while a compactor loops.
#[test]
fn reattribute_while_compactions_run_stores_each_launch_once_at_the_new_version() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data").to_str().unwrap().to_string();
    promolens_tests::provision(&data, "shop");
    let mut distinct = std::collections::HashSet::new();
    for round in 0..2u32 {
        for chunk in 0..10 {
            let lines = launches(
                7 + u64::from(round) * 100 + chunk,
                1500,
                600,
                12,
                &format!("r{round}c{chunk}-"),
            );
            let raw = dir.path().join(format!("r{round}c{chunk}.ndjson"));
            std::fs::write(&raw, lines.join("\n") + "\n").unwrap();
            promolens_tests::backfill(&data, "shop", &raw, &[]);
            distinct.extend(lines);
        }
        set_settings(&data, dir.path(), round);

        let stop = Arc::new(AtomicBool::new(false));
        let passes = Arc::new(AtomicUsize::new(0));
        let compactor = {
            let (data, stop, passes) = (data.clone(), stop.clone(), passes.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let compacted = promolens(&[
                        "compact",
                        "--data",
                        &data,
                        "--project",
                        "shop",
                        "--min-files",
                        "2",
                        "--grace-seconds",
                        "1",
                    ]);
                    assert!(
                        compacted.status.success(),
                        "{}",
                        String::from_utf8_lossy(&compacted.stderr)
                    );
                    passes.fetch_add(1, Ordering::Relaxed);
                }
            })
        };
        let reattributed = promolens(&[
            "reattribute",
            "--data",
            &data,
            "--project",
            "shop",
            "--from",
            "2025-01-01",
            "--grace-seconds",
            "1",
        ]);
        stop.store(true, Ordering::Relaxed);
        compactor.join().expect("the compactor");
        assert!(
            reattributed.status.success(),
            "{}",
            String::from_utf8_lossy(&reattributed.stderr)
        );
        assert!(passes.load(Ordering::Relaxed) > 0);
        // Every replacement left is settled (nothing runs now), then DuckDB reads the files.
        let settled = promolens(&[
            "compact",
            "--data",
            &data,
            "--min-files",
            "1000000",
            "--grace-seconds",
            "0",
        ]);
        assert!(settled.status.success());
        let stored = python_json(DUCKDB_STORED, &[&data]);
        assert_eq!(
            stored,
            json!([distinct.len(), distinct.len(), [round + 1]]),
            "round {round}: [rows, distinct ids, settings versions]"
        );
    }
}
