//! Compaction merges a partition's small files while the server ingests and answers queries:
//! no query sees an event twice or loses one, and the partition ends as one file.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use promolens_tests::{Server, eventually, promolens, stdout_of};

fn batch(n: usize) -> Vec<u8> {
    (0..50)
        .map(|i| {
            format!(
                r#"{{"event_id":"b{n}-{i}","user_id":"u{i}","ts":{},"query":{{"utm_source":"s{}"}}}}"#,
                1_763_942_400_000i64 + (n * 50 + i) as i64 * 1000,
                i % 4
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
        .into_bytes()
}

fn data_files(dir: &std::path::Path) -> (usize, usize) {
    let mut data = 0;
    let mut markers = 0;
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".parquet") {
            data += 1;
        } else if name.starts_with("_compaction-") {
            markers += 1;
        }
    }
    (data, markers)
}

#[test]
fn queries_stay_exact_while_compaction_runs() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let data = data_dir.to_str().unwrap();
    promolens_tests::provision(data, "p");
    let server = Server::start(
        data,
        &["--flush-seconds", "0.05", "--compact-seconds", "0"],
        &[],
    );
    let sent = AtomicU64::new(0);
    let done = AtomicBool::new(false);

    std::thread::scope(|scope| {
        // The writer: 30 batches, one flush each, so the partition collects many small files.
        scope.spawn(|| {
            for n in 0..30 {
                let (status, answer) = server.ingest("p", batch(n), false);
                assert_eq!(status, 200, "{answer}");
                sent.fetch_add(50, Ordering::SeqCst);
                let expected = sent.load(Ordering::SeqCst);
                eventually(Duration::from_secs(20), || {
                    let rows = server.sql("p", "SELECT count(*) AS n FROM launch_events");
                    (rows[0]["n"].as_u64() >= Some(expected)).then_some(())
                });
            }
            done.store(true, Ordering::SeqCst);
        });
        // The compactor, as an operator would run it beside the server.
        scope.spawn(|| {
            while !done.load(Ordering::SeqCst) {
                stdout_of(&promolens(&[
                    "compact",
                    "--data",
                    data,
                    "--grace-seconds",
                    "1",
                ]));
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        // The reader: every answer exact.
        let mut last = 0;
        let mut checks = 0;
        while !done.load(Ordering::SeqCst) {
            let rows = server.sql(
                "p",
                "SELECT count(*) AS n, count(DISTINCT event_id) AS d FROM launch_events",
            );
            let n = rows[0]["n"].as_u64().unwrap();
            assert_eq!(Some(n), rows[0]["d"].as_u64(), "an event was counted twice");
            assert!(n >= last, "events went missing: {last} then {n}");
            assert!(
                n <= sent.load(Ordering::SeqCst),
                "more events than were sent"
            );
            last = n;
            checks += 1;
        }
        assert!(checks > 10, "the reader barely ran ({checks} queries)");
    });

    // Finish: replaced files go after the grace period; one file is left.
    std::thread::sleep(Duration::from_millis(1100));
    let out = stdout_of(&promolens(&[
        "compact",
        "--data",
        data,
        "--grace-seconds",
        "0",
    ]));
    assert!(out.starts_with("merged "), "{out}");
    stdout_of(&promolens(&[
        "compact",
        "--data",
        data,
        "--grace-seconds",
        "0",
    ]));
    let partition = data_dir.join("launch_events/project=p/dt=2025-11-24");
    assert_eq!(data_files(&partition), (1, 0));
    let rows = server.sql(
        "p",
        "SELECT count(*) AS n, count(DISTINCT event_id) AS d FROM launch_events",
    );
    assert_eq!(rows[0]["n"], 1500);
    assert_eq!(rows[0]["d"], 1500);
    assert!(server.terminate().success());
}
