//! Nothing the server writes holds a secret in clear: not the mini-program's AppSecret, not a
//! WeChat access token, not an API key — in the data directory, the write-ahead log, the plugin
//! cache or the server's own log (at debug level) — and no answer carries a token or a path.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use promolens_tests::{Server, provision};
use serde_json::{Value, json};

const SECRET_KEY: &str = "0f0e0d0c0b0a09080706050403020100000102030405060708090a0b0c0d0e0f";
/// `promolens standin`'s mini-program.
const APP_ID: &str = "wx0123456789abcdef";
const APP_SECRET: &str = "demo-secret";

fn files_under(dir: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files_under(&path, found);
        } else {
            found.push(path);
        }
    }
}

/// Whether `text` holds one of the stand-in's access tokens (`tok-<n>-<32 hex>`).
fn holds_a_token(text: &str) -> bool {
    text.match_indices("tok-").any(|(at, _)| {
        let rest = &text[at + 4..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        digits > 0
            && rest[digits..].starts_with('-')
            && rest[digits + 1..]
                .bytes()
                .take(32)
                .filter(u8::is_ascii_hexdigit)
                .count()
                == 32
    })
}

#[test]
fn no_secret_token_or_key_is_written_in_clear() {
    assert!(holds_a_token(&format!(
        "url?access_token=tok-12-{}&x",
        "ab".repeat(16)
    )));
    assert!(!holds_a_token("tok-12-short"));
    let (mut standin, wechat) = promolens_tests::standin(&[]);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let cache = dir.path().join("cache");
    let log = dir.path().join("server.log");
    let keys = provision(data, "shop");
    let server = Server::start_with_stderr(
        data,
        &["--flush-seconds", "0.05"],
        &[
            ("PROMOLENS_WECHAT_URL", wechat.as_str()),
            ("PROMOLENS_SECRET_KEY", SECRET_KEY),
            ("PROMOLENS_COMPONENT_CACHE", cache.to_str().unwrap()),
            ("RUST_LOG", "debug"),
        ],
        Stdio::from(std::fs::File::create(&log).unwrap()),
    );
    let call = |key: &str, method: reqwest::Method, path: &str, body: Option<Value>| {
        let mut request = promolens_tests::http_client()
            .request(method, format!("{}{path}", server.url))
            .bearer_auth(key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().unwrap();
        (response.status().as_u16(), response.text().unwrap())
    };
    use reqwest::Method;
    let (status, answer) = call(
        &keys.admin,
        Method::PUT,
        "/v1/projects/shop/authorization",
        Some(json!({"app_id": APP_ID, "secret": APP_SECRET})),
    );
    assert_eq!(status, 200, "{answer}");
    let mut answers = vec![answer];
    for kind in ["A", "B", "C"] {
        let (status, answer) = call(
            &keys.marketer,
            Method::POST,
            "/v1/projects/shop/codes",
            Some(
                json!({"name": kind, "kind": kind, "page": "pages/index/index", "utm_source": "s"}),
            ),
        );
        assert_eq!(status, 201, "{answer}");
        answers.push(answer);
    }
    let event = r#"{"event_id":"e1","user_id":"u","ts":1763942400000,"query":{"utm_source":"s"}}"#;
    assert_eq!(
        server.ingest("shop", event.as_bytes().to_vec(), false).0,
        200
    );
    // WeChat goes away: the failed call's answer names neither the URL nor its token.
    let _ = standin.kill();
    let _ = standin.wait();
    let (status, answer) = call(
        &keys.marketer,
        Method::POST,
        "/v1/projects/shop/codes",
        Some(json!({"name": "late", "kind": "B", "page": "pages/index/index"})),
    );
    assert!(status >= 500, "{status} {answer}");
    answers.push(answer);
    assert!(server.terminate().success());

    for answer in &answers {
        assert!(
            !holds_a_token(answer) && !answer.contains(APP_SECRET),
            "{answer}"
        );
        assert!(!answer.contains(data), "a server path in {answer}");
    }
    let mut files = Vec::new();
    for folder in [Path::new(data), cache.as_path()] {
        files_under(folder, &mut files);
    }
    files.push(log.clone());
    assert!(files.len() > 10, "{files:?}");
    let key_secrets: Vec<&str> = [&keys.admin, &keys.marketer, &keys.analyst, &keys.ingest]
        .iter()
        .map(|k| &k[21..])
        .collect();
    for file in &files {
        let text = String::from_utf8_lossy(&std::fs::read(file).unwrap()).into_owned();
        assert!(
            !text.contains(APP_SECRET),
            "the AppSecret in {}",
            file.display()
        );
        assert!(
            !holds_a_token(&text),
            "an access token in {}",
            file.display()
        );
        for secret in &key_secrets {
            assert!(!text.contains(secret), "an API key in {}", file.display());
        }
    }
    // The log is there and says something (the test would prove nothing on an empty log).
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("request"), "{logged}");
}
