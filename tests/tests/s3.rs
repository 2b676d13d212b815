//! Ingest and queries against a real S3-compatible server on loopback (moto's server mode): the
//! numbers are the same as with a local data directory.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use promolens_tests::{Server, eventually, free_port, promolens_with_env, python, stdout_of};

struct Moto(Child);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_moto() -> (Moto, String) {
    let port = free_port();
    let child = Command::new(python())
        .args([
            "-m",
            "moto.server",
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting moto's S3 server");
    let moto = Moto(child);
    let endpoint = format!("http://127.0.0.1:{port}");
    let client = promolens_tests::http_client();
    // S3 CreateBucket; moto answers once it is up.
    eventually(Duration::from_secs(30), || {
        client
            .put(format!("{endpoint}/promolens-test"))
            .send()
            .ok()
            .filter(|r| r.status().is_success())
    });
    (moto, endpoint)
}

fn events() -> String {
    (0..300)
        .map(|i| {
            format!(
                r#"{{"event_id":"s3-{i}","user_id":"u{}","ts":{},"scene":1047,"query":{{"scene":"utm_source%3Dpartner{}%26c%3Dk{}"}}}}"#,
                i % 37,
                1_763_308_800_000i64 + i * 1_800_000,
                i % 3,
                i % 5
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn s3_data_directory_gives_the_same_numbers_as_a_local_one() {
    let (_moto, endpoint) = start_moto();
    let env = [
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
    ];
    let dir = tempfile::tempdir().unwrap();
    let wal = dir.path().join("wal");
    let s3 = "s3://promolens-test/tenant-a";
    let local = dir.path().join("local");
    let local = local.to_str().unwrap();
    let body = events();
    let (live, backfilled) = body.split_at(body.len() / 2);
    let live = live.rsplit_once('\n').map(|(a, _)| a).unwrap_or(live);

    for (data, env) in [(s3, &env[..]), (local, &[][..])] {
        promolens_tests::provision_with_env(data, "p", env);
        let server = Server::start(
            data,
            &["--flush-seconds", "0.2", "--wal", wal.to_str().unwrap()],
            env,
        );
        let (status, answer) = server.ingest("p", live.as_bytes().to_vec(), false);
        assert_eq!(status, 200, "{answer}");
        let accepted = answer["accepted"].as_u64().unwrap();
        let rows = eventually(Duration::from_secs(30), || {
            let rows = server.sql("p", "SELECT count(*) AS n FROM launch_events");
            (rows[0]["n"].as_u64() == Some(accepted)).then_some(rows)
        });
        assert_eq!(rows[0]["n"].as_u64(), Some(accepted));
        assert!(server.terminate().success());
        let file = dir.path().join("all.ndjson");
        std::fs::write(&file, format!("{live}\n{backfilled}\n")).unwrap();
        let out = stdout_of(&promolens_with_env(
            &[
                "backfill",
                "--data",
                data,
                "--project",
                "p",
                file.to_str().unwrap(),
            ],
            env,
        ));
        assert!(out.contains(&format!("duplicates {accepted}")), "{out}");
    }

    let acquisition = |data: &str, env: &[(&str, &str)]| {
        stdout_of(&promolens_with_env(
            &[
                "acquisition",
                "--data",
                data,
                "--project",
                "p",
                "--by",
                "utm_source,code_id",
                "--from",
                "2025-11-17",
                "--to",
                "2025-11-23",
                "--format",
                "csv",
            ],
            env,
        ))
    };
    let on_s3 = acquisition(s3, &env);
    assert_eq!(on_s3, acquisition(local, &[]));
    assert!(on_s3.contains("partner0,k0,"), "{on_s3}");
    assert_eq!(on_s3.lines().count(), 1 + 15, "{on_s3}");

    // Compaction in the bucket (each output staged, then moved into place): the same numbers.
    let compacted = stdout_of(&promolens_with_env(
        &["compact", "--data", s3, "--grace-seconds", "0"],
        &env,
    ));
    assert!(!compacted.starts_with("merged 0 files"), "{compacted}");
    assert_eq!(acquisition(s3, &env), on_s3);

    // The files really are in the bucket, under the prefix and the hive layout.
    let listing = promolens_tests::http_client().get(format!("{endpoint}/promolens-test?list-type=2&prefix=tenant-a/launch_events/project=p/dt=2025-11-17/"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(listing.contains(".parquet</Key>"), "{listing}");
}
