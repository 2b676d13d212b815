//! The OpenAPI document (`/openapi.json`) describes the server as it runs: schemathesis drives
//! every operation of it with a key of each role and finds no 5xx, no answer outside the
//! document (status, content type, schema), no invalid input accepted, and no request that the
//! role table forbids answered 2xx (the check in `tests/schemathesis/promolens_hooks.py`).

use std::path::Path;
use std::process::{Command, Stdio};

use promolens_tests::{Server, http_client, provision, python};
use serde_json::{Value, json};

fn get(url: &str, key: Option<&str>) -> (u16, Value) {
    let mut request = http_client().get(url);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().expect("GET");
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

fn post(url: &str, key: &str, body: Value) -> Value {
    let response = http_client()
        .post(url)
        .bearer_auth(key)
        .json(&body)
        .send()
        .expect("POST");
    assert!(
        response.status().is_success(),
        "{url}: {}",
        response.status()
    );
    response.json().expect("JSON")
}

#[test]
fn the_document_describes_every_route_its_roles_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    provision(data, "demo");
    let server = Server::start(data, &["--demo"], &[]);

    // Open, like the probes: it holds no secret and tools fetch it before they have a key.
    let (status, doc) = get(&format!("{}/openapi.json", server.url), None);
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    let mut operations = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            operations.push(format!("{} {path}", method.to_uppercase()));
            let responses = operation["responses"].as_object().unwrap();
            for status in ["500", "503"] {
                assert!(responses.contains_key(status), "{method} {path}: {status}");
            }
            let roles = &operation["security"][0]["api_key"];
            if roles.is_array() {
                for status in ["401", "403"] {
                    assert!(responses.contains_key(status), "{method} {path}: {status}");
                }
            }
            // Every error answer is the one error object (or, for events, the report that
            // lists why no event was valid).
            for (status, response) in responses {
                if status.starts_with('4') || status.starts_with('5') {
                    let schema = &response["content"]["application/json"]["schema"]["$ref"];
                    let error = ["#/components/schemas/Error", "#/components/schemas/Refused"];
                    assert!(
                        error.iter().any(|e| schema == e),
                        "{method} {path} {status}: {schema}"
                    );
                }
            }
        }
    }
    operations.sort();
    assert_eq!(operations.len(), 37, "{operations:#?}");
    // The same document without a server (the console's types are generated from it).
    let printed = promolens_tests::promolens(&["openapi"]);
    assert!(printed.status.success());
    let printed: Value = serde_json::from_slice(&printed.stdout).unwrap();
    assert_eq!(printed, doc);
    let code = &doc["paths"]["/v1/projects/{project}/codes"]["post"];
    assert_eq!(
        code["security"],
        json!([{"api_key": ["admin", "marketer"]}])
    );
    let sql = &doc["paths"]["/v1/sql"]["post"];
    assert_eq!(sql["security"], json!([{"api_key": ["admin", "analyst"]}]));
    let events = &doc["paths"]["/v1/projects/{project}/events"]["post"];
    assert_eq!(
        events["security"],
        json!([{"api_key": ["admin", "ingest"]}])
    );
    assert_eq!(doc["paths"]["/healthz"]["get"]["security"], json!([{}]));
    // Every figure depends on the attribution settings: administrators change them.
    let settings = &doc["paths"]["/v1/projects/{project}/settings"];
    assert_eq!(settings["put"]["security"], json!([{"api_key": ["admin"]}]));
    assert_eq!(
        settings["get"]["security"],
        json!([{"api_key": ["admin", "marketer", "analyst"]}])
    );

    // The page works on a closed network: its assets are served by the binary.
    let page = http_client()
        .get(format!("{}/docs/", server.url))
        .send()
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.text().unwrap().contains("swagger-ui"));
    let css = http_client()
        .get(format!("{}/docs/swagger-ui.css", server.url))
        .send()
        .unwrap();
    assert_eq!(css.status().as_u16(), 200);
}

/// schemathesis with the key of one role; panics with its report unless every check passed.
fn schemathesis(server: &Server, role: &str, key: &str, env: &[(&str, &str)]) {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemathesis");
    let seed = std::env::var("PROMOLENS_SCHEMATHESIS_SEED").unwrap_or_else(|_| "1".into());
    let output = Command::new(python())
        .args(["-m", "schemathesis.cli", "run"])
        .arg(format!("{}/openapi.json", server.url))
        .args(["--header", &format!("Authorization: Bearer {key}")])
        // Not checked: that every valid-looking request succeeds (a code's page or a key's
        // expiry can be well-formed and still refused), and that a deleted code is gone: its
        // deletion is soft by design (its record and scans stay; only its image goes).
        .args(["--checks", "all"])
        .args([
            "--exclude-checks",
            "positive_data_acceptance,use_after_free",
        ])
        .args(["--max-examples", "15", "--seed", &seed, "--no-color"])
        .current_dir(&config)
        .env("SCHEMATHESIS_HOOKS", "promolens_hooks")
        .env("PROMOLENS_ROLE", role)
        .envs(env.iter().copied())
        .output()
        .expect("running schemathesis (scripts/test installs it)");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "schemathesis with a key of role {role} failed:\n{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn schemathesis_finds_nothing_with_a_key_of_each_role() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let keys = provision(data, "demo");
    // Its log would hold a line for each of thousands of refused requests.
    let server = Server::start_with_stderr(data, &["--demo"], &[], Stdio::null());
    let project = format!("{}/v1/projects/demo", server.url);

    // What the admin's run may delete without ending the run early: a code, a key, an
    // invitation of their own (schemathesis takes ids from the answers it sees, too).
    let new_code = json!({"name": "schemathesis", "kind": "B", "page": "pages/index/index"});
    let code = post(&format!("{project}/codes"), &keys.admin, new_code);
    let spare_key = post(
        &format!("{project}/keys"),
        &keys.admin,
        json!({"role": "analyst"}),
    );
    let invitation = post(
        &format!("{project}/invitations"),
        &keys.admin,
        json!({"role": "analyst"}),
    );
    let env = [
        ("PROMOLENS_PROJECT", "demo"),
        ("PROMOLENS_CODE_ID", code["id"].as_str().unwrap()),
        ("PROMOLENS_KEY_ID", spare_key["key"]["id"].as_str().unwrap()),
        (
            "PROMOLENS_INVITATION_ID",
            invitation["invitation"]["id"].as_str().unwrap(),
        ),
    ];
    // The lesser roles first: the admin's run changes the project (it may revoke the
    // authorization, delete the code).
    for (role, key) in [
        ("ingest", &keys.ingest),
        ("analyst", &keys.analyst),
        ("marketer", &keys.marketer),
        ("admin", &keys.admin),
    ] {
        schemathesis(&server, role, key, &env);
    }

    // After all of it the server still answers and stores events.
    let (status, me) = get(&format!("{}/v1/me", server.url), Some(&keys.admin));
    assert_eq!(status, 200, "{me}");
    let event = json!({"event_id": "after-schemathesis", "user_id": "u1",
        "ts": chrono::Utc::now().timestamp_millis(), "scene": 1047});
    let report = post(&format!("{project}/events"), &keys.ingest, json!([event]));
    assert_eq!(report["accepted"], 1, "{report}");
}
