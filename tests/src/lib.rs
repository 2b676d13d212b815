//! Helpers for the end-to-end tests: the `promolens` binary as a user runs it (a server process,
//! CLI commands), and Python with DuckDB and moto as independent witnesses.
//!
//! Depends on no promolens crate on purpose: the tests see the product only from outside.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// The `promolens` binary of this build (`PROMOLENS_BIN` overrides).
pub fn bin() -> PathBuf {
    if let Some(path) = std::env::var_os("PROMOLENS_BIN") {
        return PathBuf::from(path);
    }
    // target/debug/deps/<test> → target/debug/promolens
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target directory");
    let bin = dir.join("promolens");
    assert!(
        bin.exists(),
        "{} not found: build it first (cargo build -p promolens), or set PROMOLENS_BIN",
        bin.display()
    );
    bin
}

/// Runs `promolens ARGS` to completion.
pub fn promolens(args: &[&str]) -> Output {
    promolens_with_env(args, &[])
}

pub fn promolens_with_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(bin())
        .args(args)
        .envs(env.iter().copied())
        .env("RUST_LOG", "warn")
        .output()
        .expect("running promolens")
}

/// stdout of a command that must succeed.
pub fn stdout_of(output: &Output) -> String {
    assert!(
        output.status.success(),
        "command failed ({}):\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The keys of one project, one per role.
#[derive(Clone, Debug)]
pub struct Keys {
    pub admin: String,
    pub marketer: String,
    pub analyst: String,
    pub ingest: String,
}

/// Projects made by this test process, and their keys, by (data directory, project).
static PROVISIONED: std::sync::Mutex<Vec<(String, String, Keys)>> =
    std::sync::Mutex::new(Vec::new());

/// Creates `project` in `data` (once) with a key of each role, as an operator does; its keys.
/// Call it before starting a server on `data`, which then knows the keys at once.
pub fn provision(data: &str, project: &str) -> Keys {
    provision_with_env(data, project, &[])
}

/// [`provision`] with environment variables (S3's credentials and endpoint).
pub fn provision_with_env(data: &str, project: &str, env: &[(&str, &str)]) -> Keys {
    let mut provisioned = PROVISIONED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, _, keys)) = provisioned
        .iter()
        .find(|(d, p, _)| d == data && p == project)
    {
        return keys.clone();
    }
    ensure_project_with_env(data, project, env);
    let key = |role: &str| create_key_with_env(data, project, role, env);
    let keys = Keys {
        admin: key("admin"),
        marketer: key("marketer"),
        analyst: key("analyst"),
        ingest: key("ingest"),
    };
    provisioned.push((data.to_string(), project.to_string(), keys.clone()));
    keys
}

/// `promolens projects create PROJECT` unless it exists (time zone Asia/Shanghai).
pub fn ensure_project(data: &str, project: &str) {
    ensure_project_with_env(data, project, &[]);
}

pub fn ensure_project_with_env(data: &str, project: &str, env: &[(&str, &str)]) {
    let shown = promolens_with_env(&["projects", "--data", data, "show", project], env);
    if !shown.status.success() {
        stdout_of(&promolens_with_env(
            &["projects", "--data", data, "create", project],
            env,
        ));
    }
}

/// `promolens keys create`: the new key.
pub fn create_key(data: &str, project: &str, role: &str) -> String {
    create_key_with_env(data, project, role, &[])
}

pub fn create_key_with_env(data: &str, project: &str, role: &str, env: &[(&str, &str)]) -> String {
    let out = stdout_of(&promolens_with_env(
        &[
            "keys",
            "--data",
            data,
            "create",
            "--project",
            project,
            "--role",
            role,
        ],
        env,
    ));
    out.trim().to_string()
}

/// The keys `provision` made for `project` in `data`.
pub fn keys_of(data: &str, project: &str) -> Keys {
    let provisioned = PROVISIONED.lock().unwrap_or_else(|e| e.into_inner());
    provisioned
        .iter()
        .find(|(d, p, _)| d == data && p == project)
        .map(|(_, _, keys)| keys.clone())
        .unwrap_or_else(|| panic!("provision({data}, {project}) before using its keys"))
}

/// A `promolens serve` process on a free loopback port.
pub struct Server {
    child: Option<Child>,
    pub url: String,
    pub data: String,
    /// The PostgreSQL door's address (`host:port`), when started with `--pg-listen`.
    pub pg: Option<String>,
}

impl Server {
    /// Starts `promolens serve --data DATA ARGS…` and waits until it listens.
    pub fn start(data: &str, args: &[&str], env: &[(&str, &str)]) -> Server {
        Server::start_with_stderr(data, args, env, Stdio::inherit())
    }

    /// [`Server::start`] with the server's log (stderr) sent to `stderr`.
    pub fn start_with_stderr(
        data: &str,
        args: &[&str],
        env: &[(&str, &str)],
        stderr: Stdio,
    ) -> Server {
        let mut child = Command::new(bin())
            .args(["serve", "--data", data, "--listen", "127.0.0.1:0"])
            .args(args)
            // The fixtures hold fixed dates (late 2025, checked against fixed answers): live
            // ingest's window around the clock would refuse them as time goes by. The test of
            // the window sets its own.
            .env("PROMOLENS_MAX_EVENT_AGE_DAYS", "36500")
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("starting promolens serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut pg = None;
        let url = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(url) = line.strip_prefix("promolens listening on ") {
                        break url.trim().to_string();
                    }
                    if let Some(rest) = line.strip_prefix("promolens PostgreSQL door on ") {
                        pg = rest.split_whitespace().next().map(str::to_string);
                    }
                }
                _ => panic!(
                    "promolens serve exited before listening: {:?}",
                    child.wait()
                ),
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Server {
            child: Some(child),
            url,
            data: data.to_string(),
            pg,
        }
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().expect("kill -9");
        child.wait().expect("reaping");
    }

    /// SIGTERM, then wait for the graceful exit.
    pub fn terminate(mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().expect("waiting") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "server did not stop within 60 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The keys of a project [`provision`]ed on this server's data.
    pub fn keys(&self, project: &str) -> Keys {
        keys_of(&self.data, project)
    }

    /// `POST /v1/sql` with the project's analyst key, returning the rows.
    pub fn sql(&self, project: &str, sql: &str) -> Vec<serde_json::Value> {
        let response = http_client()
            .post(format!("{}/v1/sql", self.url))
            .bearer_auth(self.keys(project).analyst)
            .json(&serde_json::json!({ "sql": sql }))
            .send()
            .expect("POST /v1/sql");
        let status = response.status();
        let body: serde_json::Value = response.json().expect("JSON answer");
        assert!(status.is_success(), "{status}: {body}");
        body["rows"].as_array().cloned().unwrap_or_default()
    }

    /// Posts a body to the project's ingest endpoint with its ingest key: (status, answer).
    pub fn ingest(&self, project: &str, body: Vec<u8>, gzip: bool) -> (u16, serde_json::Value) {
        let key = self.keys(project).ingest;
        self.ingest_with(project, &key, body, gzip)
    }

    /// Posts a body to the project's ingest endpoint with `key`: (status, answer).
    pub fn ingest_with(
        &self,
        project: &str,
        key: &str,
        body: Vec<u8>,
        gzip: bool,
    ) -> (u16, serde_json::Value) {
        let mut request = http_client()
            .post(format!("{}/v1/projects/{project}/events", self.url))
            .bearer_auth(key)
            .header("content-type", "application/x-ndjson");
        if gzip {
            request = request.header("content-encoding", "gzip");
        }
        let response = request.body(body).send().expect("POST events");
        let status = response.status().as_u16();
        (status, response.json().unwrap_or(serde_json::Value::Null))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `promolens backfill --data DATA --project PROJECT [EXTRA…] FILE` to completion (the project
/// created first if need be); its output.
pub fn backfill(data: &str, project: &str, file: &Path, extra: &[&str]) -> String {
    ensure_project(data, project);
    let file = file.to_str().expect("UTF-8 path");
    let mut args = vec!["backfill", "--data", data, "--project", project];
    args.extend_from_slice(extra);
    args.push(file);
    stdout_of(&promolens(&args))
}

/// `promolens standin ARGS…` (a local WeChat stand-in), running; and its URL.
pub fn standin(args: &[&str]) -> (Child, String) {
    let mut child = Command::new(bin())
        .arg("standin")
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting promolens standin");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("the stand-in's first line");
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"))
        .to_string();
    (child, url)
}

/// Polls `check` until it returns `Some`, for at most `timeout`.
pub fn eventually<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "condition not met within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `encodeURIComponent` as strict as can be (every byte but ASCII letters and digits), as a
/// launch's `query` carries its values.
pub fn percent_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).expect("gzip");
    encoder.finish().expect("gzip")
}

/// The Python with DuckDB and moto that `scripts/test` installs (`PROMOLENS_PYTHON`).
pub fn python() -> PathBuf {
    let python = std::env::var_os("PROMOLENS_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("python3"));
    let ok = Command::new(&python)
        .args(["-c", "import duckdb, moto"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{} lacks duckdb or moto: run the tests with scripts/test, or set PROMOLENS_PYTHON to a \
         Python with `pip install -r tests/requirements.txt`",
        python.display()
    );
    python
}

/// Runs a Python script (with DuckDB available) and parses its stdout as JSON.
pub fn python_json(script: &str, args: &[&str]) -> serde_json::Value {
    let output = Command::new(python())
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("running python");
    assert!(
        output.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("python printed JSON")
}

/// A TCP port free on loopback right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding a free port")
        .port()
}

/// An HTTP client for the tests. reqwest is built with rustls but no crypto provider of its own
/// (see `promolens::codes::wechat::use_ring_for_tls`): one must be installed before a client is made.
pub fn http_client() -> reqwest::blocking::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::blocking::Client::new()
}
