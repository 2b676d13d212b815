//! `/metrics`: what a Prometheus server scrapes, counted from the same events the log shows.

use std::time::Duration;

use promolens_tests::{Server, eventually, provision};

/// The value of one sample line `name{labels} value` (labels as the exporter orders them).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn scrape(server: &Server) -> String {
    let response = promolens_tests::http_client()
        .get(format!("{}/metrics", server.url))
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200, "no key needed");
    response.text().unwrap()
}

#[test]
fn metrics_count_events_requests_wal_syncs_and_flushes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    provision(data, "p");
    let server = Server::start(data, &["--flush-seconds", "0.05"], &[]);
    let event = |id: &str| format!(r#"{{"event_id":"{id}","user_id":"u","ts":1763942400000}}"#);
    let body = [event("a"), event("b"), event("c"), "not json".into()].join("\n");
    let (status, _) = server.ingest("p", body.into_bytes(), false);
    assert_eq!(status, 200);
    let (status, _) = server.ingest("p", event("a").into_bytes(), false);
    assert_eq!(status, 200);
    let (status, _) = server.ingest_with("p", "plk_nope", event("z").into_bytes(), false);
    assert_eq!(status, 401);

    let text = eventually(Duration::from_secs(20), || {
        let text = scrape(&server);
        sample(&text, "promolens_flushes_total")
            .is_some_and(|n| n >= 1.0)
            .then_some(text)
    });
    let events = |outcome: &str| {
        sample(
            &text,
            &format!("promolens_events_total{{outcome=\"{outcome}\"}}"),
        )
    };
    assert_eq!(events("accepted"), Some(3.0), "{text}");
    assert_eq!(events("duplicate"), Some(1.0), "{text}");
    assert_eq!(events("rejected"), Some(1.0), "{text}");
    let requests = |status: u16| {
        sample(
            &text,
            &format!(
                "promolens_http_requests_total{{method=\"POST\",route=\"/v1/projects/{{project}}/events\",status=\"{status}\"}}"
            ),
        )
    };
    assert_eq!(requests(200), Some(2.0), "{text}");
    assert_eq!(requests(401), Some(1.0), "{text}");
    // The accepted events were synced to the write-ahead log before the answer (the second
    // request, all duplicates, wrote nothing).
    assert!(
        sample(&text, "promolens_wal_syncs_total").is_some_and(|n| n >= 1.0),
        "{text}"
    );
    assert!(
        sample(&text, "promolens_files_written_total").is_some_and(|n| n >= 1.0),
        "{text}"
    );
    assert!(text.contains("promolens_wal_sync_seconds_bucket"), "{text}");
    // No project, key or event id in any label.
    assert!(
        !text.contains("project=\"p\"") && !text.contains("plk_"),
        "{text}"
    );
}
