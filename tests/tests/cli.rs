//! What a user meets at the edges: precise errors, read-only SQL, backfill's exit codes and
//! quarantine, body limits.

use promolens_tests::{Server, gzip, promolens, stdout_of};
use serde_json::Value;

const GOOD: &str =
    r#"{"event_id":"g1","user_id":"u1","ts":1763942400000,"query":{"utm_source":"gzh"}}"#;

/// `SELECT count(*) FROM launch_events` through the CLI.
fn stored_events(data: &str) -> u64 {
    let out = stdout_of(&promolens(&[
        "sql",
        "--data",
        data,
        "--format",
        "csv",
        "SELECT count(*) AS n FROM launch_events",
    ]));
    out.strip_prefix("n\n")
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("unexpected output {out:?}"))
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn sql_is_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    for (sql, what) in [
        (
            "CREATE EXTERNAL TABLE pw STORED AS CSV LOCATION '/etc/passwd'",
            "CreateExternalTable",
        ),
        (
            "COPY (SELECT 1) TO '/tmp/promolens-should-not-exist.csv'",
            "COPY",
        ),
        (
            "INSERT INTO launch_events SELECT * FROM launch_events",
            "Insert",
        ),
        ("DROP TABLE launch_events", "DropTable"),
        ("SET datafusion.execution.batch_size = 1", "SetVariable"),
    ] {
        let output = promolens(&["sql", "--data", data, sql]);
        assert!(!output.status.success(), "{sql} was allowed");
        let message = stderr(&output);
        assert!(
            message.contains("promolens SQL is read-only"),
            "{sql}: {message}"
        );
        assert!(message.contains(what), "{sql}: {message}");
    }
    assert!(!std::path::Path::new("/tmp/promolens-should-not-exist.csv").exists());
    assert_eq!(stored_events(data), 0);
}

#[test]
fn plans_name_files_within_the_data_directory_not_server_paths() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let data = data_dir.to_str().unwrap();
    let file = dir.path().join("events.ndjson");
    std::fs::write(&file, format!("{GOOD}\n")).unwrap();
    promolens_tests::backfill(data, "p", &file, &[]);
    let plan = stdout_of(&promolens(&[
        "sql",
        "--data",
        data,
        "EXPLAIN SELECT user_id FROM launch_events",
    ]));
    assert!(plan.contains("launch_events/project=p/dt="), "{plan}");
    let server_path = data_dir.canonicalize().unwrap();
    let server_path = server_path.to_str().unwrap().trim_start_matches('/');
    assert!(!plan.contains(server_path), "{plan}");
}

#[test]
fn backfill_quarantines_rejects_and_strict_fails() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let file = dir.path().join("events.ndjson");
    std::fs::write(
        &file,
        format!(
            "{GOOD}\n\n{{\"event_id\":\"b\",\"user_id\":\"u\",\"ts\":1763942400}}\n{}\nnot json\n",
            GOOD.replace("g1", "g2")
        ),
    )
    .unwrap();
    let file = file.to_str().unwrap();

    // Backfill refuses a project that does not exist, saying how to make it.
    let output = promolens(&["backfill", "--data", data, "--project", "p", file]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("promolens projects create p"),
        "{}",
        stderr(&output)
    );
    promolens_tests::ensure_project(data, "p");
    let output = promolens(&[
        "backfill",
        "--data",
        data,
        "--project",
        "p",
        "--strict",
        file,
    ]);
    assert_eq!(
        output.status.code(),
        Some(1),
        "--strict with rejects exits 1"
    );
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(
        out.contains("read 4 · accepted 2 · duplicates 0 · rejected 2"),
        "{out}"
    );
    let quarantine_path = out
        .lines()
        .find_map(|l| l.strip_prefix("rejected lines and their reasons: "))
        .expect("quarantine path printed");
    let quarantine = std::fs::read_to_string(quarantine_path).unwrap();
    let entries: Vec<Value> = quarantine
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["line"], 3);
    assert_eq!(entries[0]["field"], "ts");
    assert!(
        entries[0]["reason"]
            .as_str()
            .unwrap()
            .contains("looks like seconds")
    );
    assert_eq!(entries[1]["line"], 5);
    assert!(
        entries[1]["reason"]
            .as_str()
            .unwrap()
            .starts_with("invalid JSON")
    );
    assert_eq!(entries[1]["raw"], "not json");

    // Without --strict the run completed: exit 0; and nothing is stored twice.
    let out = stdout_of(&promolens(&[
        "backfill",
        "--data",
        data,
        "--project",
        "p",
        file,
    ]));
    assert!(
        out.contains("accepted 0 · duplicates 2 · rejected 2"),
        "{out}"
    );
    assert_eq!(stored_events(data), 2);
}

#[test]
fn acquisition_rejects_bad_arguments_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let output = promolens(&[
        "acquisition",
        "--data",
        data,
        "--project",
        "p",
        "--by",
        "utm_source,utm_sauce",
    ]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("unknown dimension `utm_sauce`"),
        "{}",
        stderr(&output)
    );
    let output = promolens(&[
        "acquisition",
        "--data",
        data,
        "--project",
        "p",
        "--tz",
        "Mars/Olympus",
    ]);
    assert!(
        stderr(&output).contains("unknown time zone `Mars/Olympus`"),
        "{}",
        stderr(&output)
    );
    // An empty project answers an empty, well-formed table.
    let out = stdout_of(&promolens(&[
        "acquisition",
        "--data",
        data,
        "--project",
        "p",
        "--now",
        "2025-11-24T00:00:00Z",
    ]));
    assert!(
        out.contains("utm_source | new_users | users | launches"),
        "{out}"
    );
}

#[test]
fn http_errors_say_what_and_by_how_much() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let keys = promolens_tests::provision(data.to_str().unwrap(), "p");
    let server = Server::start(data.to_str().unwrap(), &["--body-limit", "4096"], &[]);

    // Over the limit as sent.
    let (status, answer) = server.ingest("p", vec![b' '; 5000], false);
    assert_eq!(status, 413);
    assert_eq!(answer["error"]["code"], "payload_too_large");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("4096-byte limit"),
        "{answer}"
    );

    // A gzip bomb: small on the wire, over the limit once inflated.
    let bomb = gzip(&vec![b' '; 1_000_000]);
    assert!(bomb.len() < 4096);
    let (status, answer) = server.ingest("p", bomb, true);
    assert_eq!(status, 413, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("after gzip decompression"),
        "{answer}"
    );

    // Nothing valid: 400 with every line's reason.
    let (status, answer) = server.ingest("p", b"{\"user_id\":\"u\"}\n[1]\n".to_vec(), false);
    assert_eq!(status, 400);
    assert_eq!(answer["accepted"], 0);
    assert_eq!(answer["rejected"][0]["field"], "event_id");
    assert_eq!(answer["rejected"][1]["index"], 1);

    // An over-long query value: which field, the limit, and by how much.
    let long = format!(
        r#"{{"event_id":"l","user_id":"u","ts":1763942400000,"query":{{"utm_campaign":"{}"}}}}"#,
        "x".repeat(2100)
    );
    let (_, answer) = server.ingest("p", format!("{GOOD}\n{long}").into_bytes(), false);
    assert_eq!(answer["accepted"], 1);
    assert_eq!(
        answer["rejected"][0]["reason"],
        "field `query.utm_campaign` is 2100 bytes, over the 2048-byte limit by 52 bytes"
    );

    // A bad project name in the URL; a project that does not exist (refused as any other
    // project is: the key learns nothing of it).
    let (status, answer) =
        server.ingest_with("bad.name", &keys.ingest, GOOD.as_bytes().to_vec(), false);
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"]["field"], "project");
    let (status, answer) =
        server.ingest_with("nowhere", &keys.ingest, GOOD.as_bytes().to_vec(), false);
    assert_eq!(status, 403, "{answer}");
    assert_eq!(answer["error"]["code"], "forbidden");

    // Bad query arguments.
    let response = promolens_tests::http_client()
        .get(format!("{}/v1/projects/p/acquisition?by=nope", server.url))
        .bearer_auth(&keys.analyst)
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let answer: Value = response.json().unwrap();
    assert_eq!(answer["error"]["field"], "by");

    // Windows out of bounds, or not dates at all: a JSON error naming the parameter, never a
    // closed connection (`from=-262143-01-01` used to panic the handler) or axum's plain text.
    for (query, field, says) in [
        (
            "from=-262143-01-01&to=2025-01-01",
            "from",
            "outside the years 2000–2099",
        ),
        (
            "from=2025-01-01&to=%2B262142-01-01",
            "to",
            "outside the years 2000–2099",
        ),
        // `+` reads as a space in a query string: not a date.
        (
            "from=2025-01-01&to=+262142-01-01",
            "to",
            "bad query parameter: to:",
        ),
        (
            "from=2020-01-01&to=2025-01-01",
            "to",
            "is 1828 days, over the 1096-day (three-year) limit by 732",
        ),
        ("days=5000", "days", "days must be 1 to 1096"),
        (
            "days=7&now=1900-01-01T00:00:00Z",
            "now",
            "leaves the years 2000–2099",
        ),
        ("to=tomorrow&from=2025-01-01", "to", "bad query parameter"),
        ("days=-1", "days", "bad query parameter"),
    ] {
        let response = promolens_tests::http_client()
            .get(format!("{}/v1/projects/p/acquisition?{query}", server.url))
            .bearer_auth(&keys.analyst)
            .send()
            .unwrap();
        assert_eq!(response.status().as_u16(), 400, "{query}");
        let answer: Value = response.json().unwrap();
        assert_eq!(answer["error"]["field"], field, "{query}: {answer}");
        assert!(
            answer["error"]["message"].as_str().unwrap().contains(says),
            "{query}: {answer}"
        );
    }
    // And the server still answers.
    let response = promolens_tests::http_client()
        .get(format!("{}/v1/projects/p/acquisition?days=7", server.url))
        .bearer_auth(&keys.analyst)
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);

    // Unknown routes and methods: the JSON error too.
    let client = promolens_tests::http_client();
    for (request, status, code) in [
        (
            client.get(format!("{}/v2/nothing", server.url)),
            404,
            "not_found",
        ),
        (
            client.delete(format!("{}/v1/sql", server.url)),
            405,
            "method_not_allowed",
        ),
    ] {
        let response = request.send().unwrap();
        assert_eq!(response.status().as_u16(), status);
        let answer: Value = response.json().unwrap();
        assert_eq!(answer["error"]["code"], code, "{answer}");
    }

    let response = promolens_tests::http_client()
        .post(format!("{}/v1/sql", server.url))
        .bearer_auth(&keys.analyst)
        .json(&serde_json::json!({"sql": "SELECT nope FROM launch_events"}))
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);

    // Bodies that are not the JSON a route takes: the JSON error, never axum's plain text.
    for (content_type, body, status, code, field) in [
        ("application/json", "{\"sql\": ", 400, "bad_json", None),
        (
            "application/json",
            "{\"sql\": 5}",
            400,
            "bad_json",
            Some("sql"),
        ),
        ("application/json", "{}", 400, "bad_json", None),
        (
            "text/plain",
            "{\"sql\": \"SELECT 1\"}",
            415,
            "unsupported_media_type",
            None,
        ),
    ] {
        let response = promolens_tests::http_client()
            .post(format!("{}/v1/sql", server.url))
            .bearer_auth(&keys.analyst)
            .header("content-type", content_type)
            .body(body)
            .send()
            .unwrap();
        assert_eq!(response.status().as_u16(), status, "{body}");
        let answer: Value = response.json().expect("a JSON answer");
        assert_eq!(answer["error"]["code"], code, "{body}: {answer}");
        assert_eq!(answer["error"]["field"].as_str(), field, "{body}: {answer}");
    }
    assert!(server.terminate().success());
}

#[test]
fn a_body_of_millions_of_bad_lines_gets_a_short_answer() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    promolens_tests::provision(data.to_str().unwrap(), "p");
    let server = Server::start(data.to_str().unwrap(), &[], &[]);
    // 4 MB of `1` lines, a few KB on the wire: every line a reject.
    let bomb = gzip("1\n".repeat(2_000_000).as_bytes());
    assert!(bomb.len() < 64 * 1024, "{} bytes", bomb.len());
    let (status, answer) = server.ingest("p", bomb, true);
    assert_eq!(status, 400);
    assert_eq!(answer["accepted"], 0);
    assert_eq!(answer["rejected_count"], 2_000_000);
    let listed = answer["rejected"].as_array().unwrap();
    assert_eq!(listed.len(), 100, "only the first rejects are listed");
    assert_eq!(listed[99]["index"], 99);
    assert!(answer.to_string().len() < 20_000);
    // The server is still there, and a good line among bad ones is kept.
    let (status, answer) = server.ingest("p", format!("1\n{GOOD}\n").into_bytes(), false);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["accepted"], 1);
    assert_eq!(answer["rejected_count"], 1);
    assert!(server.terminate().success());
}

#[test]
fn live_ingest_takes_times_near_the_clock_only() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    promolens_tests::provision(data, "p");
    let server = Server::start(data, &[], &[("PROMOLENS_MAX_EVENT_AGE_DAYS", "400")]);
    const DAY: i64 = 86_400_000;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let event = |id: usize, ts: i64| format!(r#"{{"event_id":"w{id}","user_id":"u","ts":{ts}}}"#);
    // A sender that lies about time: 10,000 events three days apart (82 years) in one request.
    let body: Vec<String> = (0..10_000)
        .map(|i| event(i, now - i as i64 * 3 * DAY))
        .collect();
    let (status, answer) = server.ingest("p", body.join("\n").into_bytes(), false);
    assert_eq!(status, 200, "{answer}");
    // Days 0, 3, …, 399 back: 134 events; the rest refused, each saying by how much.
    assert_eq!(answer["accepted"], 134, "{answer}");
    assert_eq!(answer["rejected_count"], 10_000 - 134);
    let first = &answer["rejected"][0];
    assert_eq!(
        (first["index"].as_u64(), first["field"].as_str()),
        (Some(134), Some("ts"))
    );
    let reason = first["reason"].as_str().unwrap();
    assert!(
        reason.contains("402.0 days before receipt, 2.0 over the 400-day limit")
            && reason.contains("promolens backfill"),
        "{reason}"
    );
    // A clock ahead: a day is allowed, not two.
    let (status, answer) = server.ingest(
        "p",
        format!(
            "{}\n{}",
            event(20_000, now + DAY / 2),
            event(20_001, now + 2 * DAY)
        )
        .into_bytes(),
        false,
    );
    assert_eq!(
        (status, answer["accepted"].as_u64()),
        (200, Some(1)),
        "{answer}"
    );
    assert!(
        answer["rejected"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("2.0 days after receipt, 1.0 over the 1-day limit"),
        "{answer}"
    );
    assert!(server.terminate().success());
    // At most 135 days were written (the window spans 401 days, one event every 3).
    let partitions = std::fs::read_dir(format!("{data}/launch_events/project=p"))
        .unwrap()
        .count();
    assert!(partitions <= 136, "{partitions} partitions");
}
