//! A 2xx means durable: events acknowledged by the ingest endpoint survive a `kill -9` of the
//! server (nothing was flushed to Parquet yet) and are stored exactly once after the restart.

use std::collections::BTreeSet;
use std::time::Duration;

use promolens_tests::{Server, eventually, gzip};

fn event(id: &str, user: usize, ts: i64) -> String {
    format!(
        r#"{{"event_id":"{id}","user_id":"u{user}","ts":{ts},"scene":1047,"query":{{"utm_source":"gzh"}},"launch_type":"cold"}}"#
    )
}

#[test]
fn acknowledged_events_survive_kill_9_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    promolens_tests::provision(data, "durable");
    // Nothing reaches Parquet by size or age before the kill: only the write-ahead log holds them.
    let server = Server::start(
        data,
        &["--flush-seconds", "3600", "--flush-rows", "100000000"],
        &[],
    );

    // 8 concurrent clients, 10 batches of 50 each; every batch also repeats one event and has a
    // bad line, and odd clients send gzip.
    let url_server = &server;
    let acknowledged: BTreeSet<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|client| {
                scope.spawn(move || {
                    let mut ids = BTreeSet::new();
                    for batch in 0..10 {
                        let mut lines = Vec::new();
                        for i in 0..50 {
                            let id = format!("c{client}-b{batch}-e{i}");
                            lines.push(event(&id, client * 100 + i, 1_763_942_400_000 + i as i64));
                            ids.insert(id);
                        }
                        lines.push(lines[0].clone());
                        lines.push(r#"{"event_id":"broken","ts":1}"#.to_string());
                        let body = lines.join("\n").into_bytes();
                        let gz = client % 2 == 1;
                        let body = if gz { gzip(&body) } else { body };
                        let (status, answer) = url_server.ingest("durable", body, gz);
                        assert_eq!(status, 200, "{answer}");
                        assert_eq!(answer["accepted"], 50, "{answer}");
                        assert_eq!(answer["duplicates"], 1, "{answer}");
                        assert_eq!(answer["rejected"][0]["index"], 51, "{answer}");
                    }
                    ids
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert_eq!(acknowledged.len(), 4000);
    server.kill9();

    // Nothing had been written to Parquet before the kill.
    let parquet_files = walk(&dir.path().join("data/launch_events"));
    assert_eq!(
        parquet_files, 0,
        "a flush happened before the kill; the test proves nothing"
    );

    let server = Server::start(data, &["--flush-seconds", "0.2"], &[]);
    let stored: Vec<String> = eventually(Duration::from_secs(30), || {
        let rows = server.sql(
            "durable",
            "SELECT event_id FROM launch_events WHERE project = 'durable'",
        );
        (rows.len() >= acknowledged.len()).then(|| {
            rows.iter()
                .map(|r| r["event_id"].as_str().unwrap().to_string())
                .collect()
        })
    });
    assert_eq!(
        stored.len(),
        acknowledged.len(),
        "some event is stored twice"
    );
    let stored: BTreeSet<String> = stored.into_iter().collect();
    assert_eq!(stored, acknowledged);

    // Dedupe holds across the restart: the same batch again adds nothing.
    let again: Vec<String> = (0..50)
        .map(|i| event(&format!("c0-b0-e{i}"), i, 1_763_942_400_000 + i as i64))
        .collect();
    let (status, answer) = server.ingest("durable", again.join("\n").into_bytes(), false);
    assert_eq!(status, 200);
    assert_eq!(answer["accepted"], 0, "{answer}");
    assert_eq!(answer["duplicates"], 50, "{answer}");
    assert!(server.terminate().success());
}

fn walk(dir: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            let path = e.path();
            if path.is_dir() {
                walk(&path)
            } else {
                usize::from(path.extension().is_some_and(|x| x == "parquet"))
            }
        })
        .sum()
}
