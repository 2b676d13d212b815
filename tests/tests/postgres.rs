//! The PostgreSQL door (`serve --pg-listen`), driven by the real clients analysts use: `psql`,
//! psycopg 3 (a parameterised query, a server-side cursor over a million rows, a cancelled
//! statement) and SQLAlchemy's PostgreSQL dialect reflecting the tables as BI tools do. Figures are checked against DuckDB
//! over the raw NDJSON; keys, roles, read-only and every limit against their errors.

use std::process::Command;

use promolens_tests::{Server, http_client, provision, python_json};
use serde_json::{Value, json};

/// Launches of two projects: `shop` (whose rows a `shop` connection sees) and `other`.
fn launches(project: &str, count: usize) -> Vec<String> {
    let sources = ["gzh", "海报", "partner", ""];
    (0..count)
        .map(|i| {
            let mut query = serde_json::Map::new();
            let source = sources[(i * 7 + project.len()) % 4];
            if !source.is_empty() {
                query.insert(
                    "utm_source".into(),
                    json!(promolens_tests::percent_encode(source)),
                );
            }
            json!({
                "event_id": format!("{project}-{i}"),
                "user_id": format!("u{}", (i * 31) % (count / 3 + 1)),
                "ts": 1_763_395_200_000i64 + (i as i64 * 7_919_013) % (20 * 86_400_000),
                "scene": 1047,
                "query": query,
            })
            .to_string()
        })
        .collect()
}

struct Loaded {
    _dir: tempfile::TempDir,
    data: String,
    raw: String,
}

fn load() -> Loaded {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data").to_str().unwrap().to_string();
    let raw = dir.path().join("shop.ndjson");
    for (project, count) in [("shop", 3000), ("other", 500)] {
        provision(&data, project);
        let file = dir.path().join(format!("{project}.ndjson"));
        std::fs::write(&file, launches(project, count).join("\n") + "\n").unwrap();
        promolens_tests::backfill(&data, project, &file, &[]);
    }
    Loaded {
        data,
        raw: raw.to_str().unwrap().to_string(),
        _dir: dir,
    }
}

/// `psql -At -c SQL` as `user` with `password`: (success, stdout, stderr).
fn psql(server: &Server, user: &str, password: &str, sql: &str) -> (bool, String, String) {
    let (host, port) = server
        .pg
        .as_deref()
        .and_then(|a| a.rsplit_once(':'))
        .expect("the PostgreSQL door's address");
    let output = Command::new("psql")
        .arg(format!(
            "host={host} port={port} user={user} dbname={user} sslmode=disable connect_timeout=10"
        ))
        .args(["-X", "-At", "-c", sql])
        .env("PGPASSWORD", password)
        .output()
        .expect("psql (scripts/test installs postgresql-client)");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).trim().to_string(),
        String::from_utf8_lossy(&output.stderr).trim().to_string(),
    )
}

/// psql's answer to `sql`, which must succeed.
fn answered(server: &Server, user: &str, password: &str, sql: &str) -> String {
    let (ok, out, err) = psql(server, user, password, sql);
    assert!(ok, "{sql}: {err}");
    out
}

const DUCKDB_SHOP: &str = r#"
import duckdb, json, sys
con = duckdb.connect()
con.execute(f"""CREATE TABLE l AS SELECT event_id, user_id, ts,
    nullif(url_decode(query.utm_source), '') AS source
  FROM read_json('{sys.argv[1]}', format = 'newline_delimited',
       columns = {{event_id: 'VARCHAR', user_id: 'VARCHAR', ts: 'BIGINT',
                   query: 'STRUCT(utm_source VARCHAR)'}})""")
launches, users, ts_sum = con.execute(
    "SELECT count(*), count(DISTINCT user_id), sum(ts)::BIGINT FROM l").fetchone()
poster = con.execute("SELECT count(*) FROM l WHERE source = '海报'").fetchone()[0]
print(json.dumps({"launches": launches, "users": users, "poster": poster, "ts_sum": ts_sum}))
"#;

#[test]
fn psql_psycopg_and_sqlalchemy_see_their_project_only() {
    let loaded = load();
    let data = loaded.data.as_str();
    let expected = python_json(DUCKDB_SHOP, &[&loaded.raw]);
    let server = Server::start(data, &["--pg-listen", "127.0.0.1:0"], &[]);
    let shop = server.keys("shop");
    let other = server.keys("other");

    // psql: counts of this project's rows only, the views, the tables it lists.
    let out = answered(
        &server,
        "shop",
        &shop.analyst,
        "SELECT count(*), count(DISTINCT user_id) FROM launch_events",
    );
    assert_eq!(
        out,
        format!("{}|{}", expected["launches"], expected["users"])
    );
    let out = answered(
        &server,
        "shop",
        &shop.admin,
        "SELECT sum(new_users), sum(launches) FROM acquisition_daily",
    );
    assert_eq!(
        out,
        format!("{}|{}", expected["users"], expected["launches"])
    );
    let out = answered(
        &server,
        "shop",
        &shop.analyst,
        "SELECT count(*), count(DISTINCT user_id) FROM first_touch",
    );
    assert_eq!(out, format!("{}|{}", expected["users"], expected["users"]));
    let out = answered(&server, "shop", &shop.analyst, "\\dt");
    for table in [
        "events",
        "launch_events",
        "promo_codes",
        "saved_analyses",
        "user_first_seen",
    ] {
        assert!(
            out.contains(&format!("|{table}|table|")),
            "{table} in {out}"
        );
    }
    assert!(!out.contains("audit_log"), "an analyst's tables: {out}");

    // Who may come in: the user name is the project, the password a key of it that may run SQL.
    let refused = |user: &str, key: &str, words: &str| {
        let (ok, _, err) = psql(&server, user, key, "SELECT 1");
        assert!(!ok && err.contains(words), "{user}: {err}");
    };
    refused("shop", &shop.marketer, "a marketer key may not run SQL");
    refused("shop", &shop.ingest, "key may not run SQL");
    refused(
        "shop",
        &other.analyst,
        "this key belongs to project other, not shop",
    );
    refused("shop", "plk_0000000000000000_00", "is not of the form");
    refused(
        "shop",
        &format!("{}x", &shop.analyst[..shop.analyst.len() - 1]),
        "API key",
    );
    // Read-only, whatever the statement (DataFusion's `CREATE EXTERNAL TABLE`, which could read
    // any file the server can, does not even parse in PostgreSQL's dialect).
    for (statement, words) in [
        ("CREATE TABLE x (a INT)", "promolens SQL is read-only"),
        (
            "INSERT INTO launch_events SELECT * FROM launch_events",
            "promolens SQL is read-only",
        ),
        ("DROP VIEW first_touch", "promolens SQL is read-only"),
        (
            "COPY launch_events TO '/tmp/out.csv'",
            "promolens SQL is read-only",
        ),
        (
            "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '/etc/passwd'",
            "ERROR",
        ),
    ] {
        let (ok, _, err) = psql(&server, "shop", &shop.analyst, statement);
        assert!(!ok && err.contains(words), "{statement}: {err}");
    }

    // psycopg: a parameterised query; a server-side cursor over a million rows; SQLAlchemy's
    // reflection, as a BI tool's.
    let pg = server.pg.clone().unwrap();
    let clients = python_json(PSYCOPG_AND_SQLALCHEMY, &[&pg, &shop.analyst]);
    assert_eq!(clients["poster"], expected["poster"]);
    assert_eq!(clients["cursor_rows"], 1_002_000);
    assert_eq!(clients["cursor_ids"], expected["launches"]);
    // Each launch's time, read by psycopg from the cursor's text (to the millisecond, in UTC),
    // the same in all its copies, and the times of all launches as in the raw events.
    assert_eq!(clients["cursor_times_agree"], true);
    assert_eq!(clients["cursor_ts_sum"], expected["ts_sum"]);
    assert_eq!(
        clients["cancelled"],
        json!(["57014", "canceling statement due to user request", true])
    );
    assert_eq!(clients["after_cancel"], 42);
    assert_eq!(
        clients["tables"],
        json!([
            "events",
            "launch_events",
            "promo_codes",
            "saved_analyses",
            "user_first_seen"
        ])
    );
    assert_eq!(
        clients["views"],
        json!(["acquisition_daily", "first_touch"])
    );
    // The columns as DESIGN.md's storage layout lists them, the partition columns last.
    let file_columns = [
        "event_id",
        "user_id",
        "event_time",
        "received_at",
        "sent_at",
        "launch_type",
        "scene",
        "path",
        "query",
        "code_id",
        "code_kind",
        "utm_source",
        "utm_medium",
        "utm_campaign",
        "utm_content",
        "utm_term",
        "attribution",
        "props",
        "settings_version",
        "project",
        "dt",
    ];
    assert_eq!(clients["columns"], json!(file_columns));
}

const PSYCOPG_AND_SQLALCHEMY: &str = r#"
import json, sys
import psycopg, sqlalchemy
address, key = sys.argv[1], sys.argv[2]
host, port = address.rsplit(':', 1)
out = {}
with psycopg.connect(host=host, port=int(port), user='shop', password=key, dbname='shop',
                     sslmode='disable') as conn:
    out['poster'] = conn.execute(
        'SELECT count(*) FROM launch_events WHERE utm_source = %s', ['海报']).fetchone()[0]
    # 334 copies of the 3,000 launches: 1,002,000 rows, fetched 20,000 at a time.
    with conn.cursor(name='million') as cursor:
        cursor.itersize = 20000
        cursor.execute('SELECT l.event_id, l.event_time, g.value FROM launch_events l '
                       'CROSS JOIN generate_series(1, 334) g')
        rows, times, agree = 0, {}, True
        for event_id, event_time, _ in cursor:
            rows += 1
            ms = round(event_time.timestamp() * 1000)
            agree &= event_time.utcoffset().total_seconds() == 0 and times.setdefault(event_id, ms) == ms
    out['cursor_rows'] = rows
    out['cursor_ids'] = len(times)
    out['cursor_times_agree'] = agree
    out['cursor_ts_sum'] = sum(times.values())
    # A statement its client cancels (psql's Ctrl-C) ends at once with 57014, and the connection
    # goes on; the statement timeout is 120 s here.
    import threading, time
    timer = threading.Timer(0.5, conn.cancel_safe)
    started = time.monotonic()
    timer.start()
    try:
        conn.execute('SELECT count(*) FROM generate_series(1, 3000000000)')
        out['cancelled'] = 'not cancelled'
    except psycopg.errors.QueryCanceled as error:
        out['cancelled'] = [error.sqlstate, str(error).strip(), time.monotonic() - started < 20]
        conn.rollback()
    out['after_cancel'] = conn.execute('SELECT 41 + 1').fetchone()[0]
engine = sqlalchemy.create_engine(
    f'postgresql+psycopg://shop:{key}@{host}:{port}/shop?sslmode=disable')
inspector = sqlalchemy.inspect(engine)
out['tables'] = sorted(inspector.get_table_names())
out['views'] = sorted(inspector.get_view_names())
out['columns'] = [c['name'] for c in inspector.get_columns('launch_events')]
print(json.dumps(out))
"#;

#[test]
fn every_sql_door_has_limits_with_clear_errors() {
    let loaded = load();
    let data = loaded.data.as_str();
    let server = Server::start(
        data,
        &[
            "--pg-listen",
            "127.0.0.1:0",
            "--pg-max-rows",
            "1000",
            "--http-sql-max-rows",
            "1000",
            "--sql-timeout-seconds",
            "2",
            "--sql-memory-mb",
            "16",
        ],
        &[],
    );
    let key = server.keys("shop").analyst;
    let http = |sql: &str| -> (u16, Value) {
        let response = http_client()
            .post(format!("{}/v1/sql", server.url))
            .bearer_auth(&key)
            .json(&json!({ "sql": sql }))
            .send()
            .expect("POST /v1/sql");
        (
            response.status().as_u16(),
            response.json().unwrap_or(Value::Null),
        )
    };
    let cases = [
        (
            "SELECT event_id FROM launch_events",
            "too_many_rows",
            "more than 1000 rows",
            "54000",
        ),
        (
            "SELECT count(*) FROM generate_series(1, 3000000000)",
            "statement_timeout",
            "longer than the 2 s limit (sql_timeout_seconds)",
            "57014",
        ),
        (
            "SELECT count(*) FROM generate_series(1, 3000000) a \
             JOIN generate_series(1, 3000000) b ON a.value = b.value",
            "memory_limit",
            "(16 MiB in all, sql_memory_mb)",
            "53200",
        ),
    ];
    for (sql, code, words, sqlstate) in cases {
        let (status, body) = http(sql);
        assert_eq!(status, 422, "{sql}: {body}");
        assert_eq!(body["error"]["code"], code, "{sql}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(words), "{sql}: {message}");
        let pg_words = if code == "too_many_rows" {
            "(pg_max_rows)"
        } else {
            words
        };
        let output = psql_with_state(&server, &key, sql);
        assert!(output.contains(pg_words), "{sql}: {output}");
        assert!(
            output.contains(sqlstate),
            "{sql}: SQLSTATE {sqlstate} in {output}"
        );
    }
    // A cursor's rows count together: the second FETCH of 600 crosses the 1,000 of pg_max_rows.
    let output = psql_with_state(
        &server,
        &key,
        "BEGIN; DECLARE c CURSOR FOR SELECT event_id FROM launch_events; \
         FETCH 600 FROM c; FETCH 600 FROM c",
    );
    assert!(
        output.contains("(pg_max_rows)") && output.contains("54000"),
        "{output}"
    );
    // Within the limits, the same server answers.
    let (status, body) = http("SELECT count(*) AS n FROM launch_events");
    assert_eq!((status, &body["rows"][0]["n"]), (200, &json!(3000)));
}

/// psql's error for `sql`, with its SQLSTATE (`\set VERBOSITY verbose`).
fn psql_with_state(server: &Server, key: &str, sql: &str) -> String {
    let (host, port) = server.pg.as_deref().unwrap().rsplit_once(':').unwrap();
    let output = Command::new("psql")
        .arg(format!(
            "host={host} port={port} user=shop dbname=shop sslmode=disable"
        ))
        .args(["-X", "-At", "-v", "VERBOSITY=verbose", "-c", sql])
        .env("PGPASSWORD", key)
        .output()
        .expect("psql");
    assert!(!output.status.success(), "{sql} should fail");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn with_a_certificate_only_tls_comes_in_and_a_bad_one_stops_the_start() {
    let loaded = load();
    let data = loaded.data.as_str();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));

    // A certificate that cannot be loaded: no server, never plain text instead.
    let missing = promolens_tests::promolens(&[
        "serve",
        "--data",
        data,
        "--listen",
        "127.0.0.1:0",
        "--pg-listen",
        "127.0.0.1:0",
        "--pg-tls-cert",
        cert.to_str().unwrap(),
        "--pg-tls-key",
        key.to_str().unwrap(),
    ]);
    assert!(!missing.status.success());
    let said = String::from_utf8_lossy(&missing.stderr);
    assert!(
        said.contains("the PostgreSQL door's TLS certificate") && said.contains("cert.pem"),
        "{said}"
    );

    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl (scripts/test installs it)");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let server = Server::start(
        data,
        &[
            "--pg-listen",
            "127.0.0.1:0",
            "--pg-tls-cert",
            cert.to_str().unwrap(),
            "--pg-tls-key",
            key.to_str().unwrap(),
        ],
        &[],
    );
    let analyst = server.keys("shop").analyst;
    let (host, port) = server.pg.as_deref().unwrap().rsplit_once(':').unwrap();
    let connect = |sslmode: &str| {
        Command::new("psql")
            .arg(format!(
                "host={host} port={port} user=shop dbname=shop sslmode={sslmode}"
            ))
            .args(["-X", "-At", "-c", "SELECT count(*) FROM launch_events"])
            .env("PGPASSWORD", &analyst)
            .output()
            .expect("psql")
    };
    let secure = connect("require");
    assert!(
        secure.status.success(),
        "{}",
        String::from_utf8_lossy(&secure.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&secure.stdout).trim(), "3000");
    let plain = connect("disable");
    assert!(!plain.status.success());
    let said = String::from_utf8_lossy(&plain.stderr);
    assert!(said.contains("accepts TLS connections only"), "{said}");
}
