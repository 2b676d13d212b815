//! The doors: every route × every kind of caller gets the status the role table implies; a key of
//! one project reaches nothing of another (SQL included, whatever the statement says); keys are
//! revoked at once; invitations become one key once; every change lands in the audit log.

use promolens_tests::{Keys, Server, create_key, provision};
use reqwest::Method;
use serde_json::{Value, json};

/// The role table of the issue, written here independently of the code: what each role may do.
fn may(role: &str, permission: &str) -> bool {
    match role {
        "admin" => true,
        "marketer" => matches!(
            permission,
            "project" | "read_codes" | "write_codes" | "analyze"
        ),
        "analyst" => matches!(permission, "project" | "read_codes" | "analyze" | "sql"),
        "ingest" => matches!(permission, "project" | "events"),
        _ => false,
    }
}

/// Every route behind a door, with a request that reaches its handler, and what it needs.
fn routes() -> Vec<(Method, &'static str, Option<Value>, &'static str)> {
    let code = json!({"name": "M", "kind": "A", "page": "pages/a", "utm_source": "m"});
    vec![
        (Method::GET, "/v1/me", None, "project"),
        (Method::GET, "/v1/projects/demo", None, "project"),
        (
            Method::POST,
            "/v1/projects/demo/events",
            Some(json!([])),
            "events",
        ),
        (
            Method::GET,
            "/v1/projects/demo/acquisition?days=7",
            None,
            "analyze",
        ),
        (
            Method::POST,
            "/v1/projects/demo/analyses:run",
            Some(json!({"dimensions": ["day"]})),
            "analyze",
        ),
        (Method::GET, "/v1/projects/demo/analyses", None, "analyze"),
        (
            Method::POST,
            "/v1/projects/demo/analyses",
            Some(json!({"name": "", "spec": {}})),
            "analyze",
        ),
        (
            Method::GET,
            "/v1/projects/demo/analyses/codes-past-7-days",
            None,
            "analyze",
        ),
        (
            Method::PATCH,
            "/v1/projects/demo/analyses/no-such",
            Some(json!({"name": "n"})),
            "analyze",
        ),
        (
            Method::DELETE,
            "/v1/projects/demo/analyses/no-such",
            None,
            "analyze",
        ),
        (
            Method::POST,
            "/v1/projects/demo/analyses/codes-past-7-days/run",
            None,
            "analyze",
        ),
        (
            Method::POST,
            "/v1/sql",
            Some(json!({"sql": "SELECT 1 AS one"})),
            "sql",
        ),
        (
            Method::GET,
            "/v1/projects/demo/authorization",
            None,
            "read_codes",
        ),
        (
            Method::PUT,
            "/v1/projects/demo/authorization",
            Some(json!({})),
            "authorize",
        ),
        (Method::GET, "/v1/projects/demo/codes", None, "read_codes"),
        (
            Method::POST,
            "/v1/projects/demo/codes",
            Some(code.clone()),
            "write_codes",
        ),
        (
            Method::POST,
            "/v1/projects/demo/codes:preview",
            Some(code),
            "write_codes",
        ),
        (
            Method::POST,
            "/v1/projects/demo/codes:batch",
            None,
            "write_codes",
        ),
        (
            Method::GET,
            "/v1/projects/demo/codes/zzzzzzzz",
            None,
            "read_codes",
        ),
        (
            Method::GET,
            "/v1/projects/demo/codes/zzzzzzzz/image",
            None,
            "read_codes",
        ),
        (
            Method::PATCH,
            "/v1/projects/demo/codes/zzzzzzzz",
            Some(json!({"name": "n"})),
            "write_codes",
        ),
        (
            Method::DELETE,
            "/v1/projects/demo/codes/zzzzzzzz",
            None,
            "write_codes",
        ),
        (Method::GET, "/v1/projects/demo/keys", None, "keys"),
        (
            Method::POST,
            "/v1/projects/demo/keys",
            Some(json!({"role": "nobody"})),
            "keys",
        ),
        (
            Method::DELETE,
            "/v1/projects/demo/keys/0000000000000000",
            None,
            "keys",
        ),
        (Method::GET, "/v1/projects/demo/invitations", None, "keys"),
        (
            Method::POST,
            "/v1/projects/demo/invitations",
            Some(json!({"role": "nobody"})),
            "keys",
        ),
        (
            Method::DELETE,
            "/v1/projects/demo/invitations/0000000000000000",
            None,
            "keys",
        ),
        (Method::GET, "/v1/projects/demo/audit", None, "audit"),
        // Last: it takes the mini-program's authorization away.
        (
            Method::DELETE,
            "/v1/projects/demo/authorization",
            None,
            "authorize",
        ),
    ]
}

fn send(
    server: &Server,
    method: Method,
    path: &str,
    body: Option<&Value>,
    key: Option<&str>,
) -> (u16, Value) {
    let mut request =
        promolens_tests::http_client().request(method, format!("{}{path}", server.url));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().expect("request");
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

/// A key id, from its token `plk_<id>_<secret>`.
fn id_of(key: &str) -> &str {
    &key[4..20]
}

struct World {
    _dir: tempfile::TempDir,
    data: String,
    server: Server,
    demo: Keys,
    other: Keys,
    revoked: String,
    expired: String,
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data").to_str().unwrap().to_string();
    let demo = provision(&data, "demo");
    let other = provision(&data, "other");
    let revoked = create_key(&data, "demo", "admin");
    promolens_tests::stdout_of(&promolens_tests::promolens(&[
        "keys",
        "--data",
        &data,
        "revoke",
        "--project",
        "demo",
        id_of(&revoked),
    ]));
    // A key that expired: made with a lifetime, then its record aged by hand.
    let expired = promolens_tests::stdout_of(&promolens_tests::promolens(&[
        "keys",
        "--data",
        &data,
        "create",
        "--project",
        "demo",
        "--role",
        "admin",
        "--expires",
        "1h",
    ]))
    .trim()
    .to_string();
    let record = format!("{data}/access/keys/{}.json", id_of(&expired));
    let mut stored: Value = serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap();
    stored["expires_at"] = json!("2025-01-01T00:00:00Z");
    std::fs::write(&record, serde_json::to_vec(&stored).unwrap()).unwrap();
    let server = Server::start(&data, &["--demo", "--flush-seconds", "0.05"], &[]);
    World {
        _dir: dir,
        data,
        server,
        demo,
        other,
        revoked,
        expired,
    }
}

#[test]
fn every_route_answers_each_caller_as_the_role_table_says() {
    let w = world();
    let unknown = format!("plk_{}_{}", "0123456789abcdef", "ab".repeat(32));
    let mut checked = 0;
    for (method, path, body, permission) in routes() {
        let refused: [(&str, Option<&str>, u16); 6] = [
            ("no key", None, 401),
            ("a malformed key", Some("not-a-key"), 401),
            ("an unknown key", Some(&unknown), 401),
            ("a revoked key", Some(&w.revoked), 401),
            ("an expired key", Some(&w.expired), 401),
            ("another project's admin", Some(&w.other.admin), 403),
        ];
        for (who, key, status) in refused {
            // `/v1/me` and `/v1/sql` name no project: another project's key is simply its own.
            if status == 403 && !path.starts_with("/v1/projects/") {
                continue;
            }
            let (got, answer) = send(&w.server, method.clone(), path, body.as_ref(), key);
            assert_eq!(got, status, "{method} {path} with {who}: {answer}");
            let code = if status == 401 {
                "unauthenticated"
            } else {
                "forbidden"
            };
            assert_eq!(answer["error"]["code"], code, "{method} {path} with {who}");
            checked += 1;
        }
        for (role, key) in [
            ("ingest", &w.demo.ingest),
            ("analyst", &w.demo.analyst),
            ("marketer", &w.demo.marketer),
            ("admin", &w.demo.admin),
        ] {
            let (got, answer) = send(&w.server, method.clone(), path, body.as_ref(), Some(key));
            let refused = got == 401 || answer["error"]["code"] == "forbidden";
            assert_eq!(
                !refused,
                may(role, permission),
                "{method} {path} as {role}: {got} {answer}"
            );
            checked += 1;
        }
    }
    assert!(checked > 200, "{checked}");
    // The probes need no key.
    for path in ["/healthz", "/readyz"] {
        assert_eq!(
            send(&w.server, Method::GET, path, None, None).0,
            200,
            "{path}"
        );
    }
}

#[test]
fn a_key_of_one_project_reaches_nothing_of_another() {
    let w = world();
    let sql = |key: &str, statement: &str| {
        send(
            &w.server,
            Method::POST,
            "/v1/sql",
            Some(&json!({"sql": statement})),
            Some(key),
        )
    };
    // The demo events are in; ingest one event into `other` to have something of each.
    let event =
        r#"{"event_id":"o1","user_id":"u","ts":1763942400000,"query":{"utm_source":"other-only"}}"#;
    let (status, answer) = w.server.ingest("other", event.as_bytes().to_vec(), false);
    assert_eq!(status, 200, "{answer}");
    let count = |key: &str| {
        let (status, answer) = sql(key, "SELECT count(*) AS n FROM launch_events");
        assert_eq!(status, 200, "{answer}");
        answer["rows"][0]["n"].as_u64().unwrap()
    };
    let demo_events = promolens_tests::eventually(std::time::Duration::from_secs(30), || {
        (count(&w.other.analyst) == 1).then(|| count(&w.demo.analyst))
    });
    assert!(demo_events > 1000, "{demo_events}");

    // Statements that try to reach demo's rows with other's key.
    for statement in [
        "SELECT count(*) AS n FROM launch_events WHERE project = 'demo'",
        "SELECT count(*) AS n FROM promolens.public.launch_events WHERE project <> 'other'",
        "SELECT count(*) AS n FROM (SELECT * FROM launch_events UNION ALL SELECT * FROM launch_events) WHERE project = 'demo'",
        "SELECT count(*) AS n FROM user_first_seen WHERE project = 'demo'",
        "SELECT count(*) AS n FROM promo_codes WHERE project = 'demo'",
    ] {
        let (status, answer) = sql(&w.other.analyst, statement);
        assert_eq!(status, 200, "{statement}: {answer}");
        assert_eq!(answer["rows"][0]["n"], 0, "{statement}: {answer}");
    }
    for statement in [
        "SELECT * FROM promo_code_records",
        "SELECT * FROM audit_log",
        "CREATE EXTERNAL TABLE x STORED AS PARQUET LOCATION '/'",
        "SELECT * FROM 'launch_events/project=demo/'",
    ] {
        let (status, answer) = sql(&w.other.analyst, statement);
        assert!(
            status == 400 || status == 403,
            "{statement}: {status} {answer}"
        );
        assert!(!answer.to_string().contains(&w.data), "{answer}");
    }
    let (_, answer) = sql(
        &w.other.analyst,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1",
    );
    let names: Vec<&str> = answer["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["table_name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "acquisition_daily",
            "events",
            "first_touch",
            "launch_events",
            "promo_codes",
            "saved_analyses",
            "user_first_seen"
        ]
    );
    let (status, answer) = sql(&w.other.analyst, "EXPLAIN SELECT * FROM launch_events");
    assert_eq!(status, 200, "{answer}");
    let plan = answer.to_string();
    assert!(
        !plan.contains("project=demo") && !plan.contains(&w.data),
        "{plan}"
    );

    // Other doors of demo with other's keys, and the ingest key anywhere but events.
    let (status, _) =
        w.server
            .ingest_with("demo", &w.other.ingest, event.as_bytes().to_vec(), false);
    assert_eq!(status, 403);
    for path in [
        "/v1/projects/demo/codes",
        "/v1/projects/demo/acquisition?days=7",
    ] {
        assert_eq!(
            send(&w.server, Method::GET, path, None, Some(&w.other.admin)).0,
            403
        );
        assert_eq!(
            send(&w.server, Method::GET, path, None, Some(&w.demo.ingest)).0,
            403
        );
    }
    assert_eq!(sql(&w.demo.ingest, "SELECT 1").0, 403);
    // Whether another project exists is not for a key to learn: one that does not is refused
    // as one that does (403), not 404.
    for project in ["ghost", "other"] {
        let (status, answer) =
            w.server
                .ingest_with(project, &w.demo.ingest, event.as_bytes().to_vec(), false);
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (403, Some("forbidden")),
            "{project}"
        );
    }
}

#[test]
fn keys_invitations_and_the_audit_log_over_http() {
    let w = world();
    let admin = Some(w.demo.admin.as_str());
    // A key made over HTTP works at once, is listed without its secret, and is refused at once
    // when revoked.
    let (status, made) = send(
        &w.server,
        Method::POST,
        "/v1/projects/demo/keys",
        Some(&json!({"role": "analyst", "label": "BI tool", "expires_in": "30d"})),
        admin,
    );
    assert_eq!(status, 201, "{made}");
    let token = made["token"].as_str().unwrap().to_string();
    let id = made["key"]["id"].as_str().unwrap().to_string();
    let (status, me) = send(&w.server, Method::GET, "/v1/me", None, Some(&token));
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["key"]["role"], "analyst");
    assert_eq!(me["project"]["tz"], "Asia/Shanghai");
    let (_, listed) = send(
        &w.server,
        Method::GET,
        "/v1/projects/demo/keys",
        None,
        admin,
    );
    let listed_text = listed.to_string();
    assert!(
        listed_text.contains(&id) && !listed_text.contains(&token[21..]),
        "{listed}"
    );
    assert!(!listed_text.contains("digest"), "{listed}");
    let (status, _) = send(
        &w.server,
        Method::DELETE,
        &format!("/v1/projects/demo/keys/{id}"),
        None,
        admin,
    );
    assert_eq!(status, 200);
    let (status, answer) = send(&w.server, Method::GET, "/v1/me", None, Some(&token));
    assert_eq!(
        (status, answer["error"]["message"].as_str()),
        (401, Some("this API key has been revoked"))
    );
    // Another project's key id cannot be revoked from here.
    let other_id = id_of(&w.other.analyst);
    let (status, _) = send(
        &w.server,
        Method::DELETE,
        &format!("/v1/projects/demo/keys/{other_id}"),
        None,
        admin,
    );
    assert_eq!(status, 404);

    // An invitation: accepted once without a key, for a key of the invited role.
    let (status, invited) = send(
        &w.server,
        Method::POST,
        "/v1/projects/demo/invitations",
        Some(&json!({"role": "marketer"})),
        admin,
    );
    assert_eq!(status, 201, "{invited}");
    let invitation = json!({"token": invited["token"], "label": "Zhang Min"});
    let (status, accepted) = send(
        &w.server,
        Method::POST,
        "/v1/invitations:accept",
        Some(&invitation),
        None,
    );
    assert_eq!(status, 201, "{accepted}");
    let marketer = accepted["token"].as_str().unwrap();
    let (status, me) = send(&w.server, Method::GET, "/v1/me", None, Some(marketer));
    assert_eq!(
        (status, me["key"]["role"].as_str()),
        (200, Some("marketer"))
    );
    let (status, again) = send(
        &w.server,
        Method::POST,
        "/v1/invitations:accept",
        Some(&invitation),
        None,
    );
    assert_eq!(status, 401, "{again}");
    assert!(
        again["error"]["message"]
            .as_str()
            .unwrap()
            .contains("used already")
    );

    // A change by the new marketer, then the audit log (newest first) and its SQL table.
    let (status, code) = send(
        &w.server,
        Method::POST,
        "/v1/projects/demo/codes",
        Some(
            &json!({"name": "Poster", "kind": "B", "page": "pages/index/index", "utm_source": "poster"}),
        ),
        Some(marketer),
    );
    assert_eq!(status, 201, "{code}");
    let (status, audit) = send(
        &w.server,
        Method::GET,
        "/v1/projects/demo/audit?limit=10",
        None,
        admin,
    );
    assert_eq!(status, 200, "{audit}");
    let records = audit["records"].as_array().unwrap();
    let actions: Vec<&str> = records
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions[..5],
        [
            "code.create",
            "invitation.accept",
            "invitation.create",
            "key.revoke",
            "key.create"
        ],
        "{audit}"
    );
    assert_eq!(records[0]["target"], code["id"]);
    assert_eq!(records[0]["key_id"], id_of(marketer));
    assert_eq!(records[0]["outcome"], "ok");
    assert!(!audit.to_string().contains(marketer));
    let (status, rows) = send(
        &w.server,
        Method::POST,
        "/v1/sql",
        Some(
            &json!({"sql": "SELECT action, count(*) AS n FROM audit_log WHERE action = 'key.create' GROUP BY action"}),
        ),
        admin,
    );
    assert_eq!(status, 200, "{rows}");
    assert!(rows["rows"][0]["n"].as_u64().unwrap() >= 1, "{rows}");
    // The operator's keys are in it too, as `operator`; nothing of `other`.
    let (_, rows) = send(
        &w.server,
        Method::POST,
        "/v1/sql",
        Some(
            &json!({"sql": "SELECT DISTINCT project, key_id FROM audit_log WHERE key_id = 'operator'"}),
        ),
        admin,
    );
    assert_eq!(
        rows["rows"],
        json!([{"project": "demo", "key_id": "operator"}]),
        "{rows}"
    );

    // Nothing stored under the data directory holds a key in clear.
    let mut stored = String::new();
    let mut stack = vec![std::path::PathBuf::from(&w.data)];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                stored.push_str(&String::from_utf8_lossy(&std::fs::read(&path).unwrap()));
            }
        }
    }
    for key in [&w.demo.admin, &w.demo.ingest, &token, &marketer.to_string()] {
        assert!(
            !stored.contains(&key[21..]),
            "a key's secret is stored in clear"
        );
    }
}

#[test]
fn an_ingest_key_over_its_rate_is_told_when_to_retry() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data").to_str().unwrap().to_string();
    let keys = provision(&data, "p");
    let other = create_key(&data, "p", "ingest");
    // One request a second, bursts of two: from a configuration file.
    let config = dir.path().join("promolens.toml");
    std::fs::write(&config, "ingest_rate_per_key = 1\nflush_seconds = 0.5\n").unwrap();
    let server = Server::start(&data, &["--config", config.to_str().unwrap()], &[]);
    let event = |n: usize| {
        format!(r#"{{"event_id":"r{n}","user_id":"u","ts":1763942400000}}"#).into_bytes()
    };
    let mut statuses = Vec::new();
    for n in 0..3 {
        statuses.push(server.ingest_with("p", &keys.ingest, event(n), false).0);
    }
    assert_eq!(statuses, [200, 200, 429]);
    let response = promolens_tests::http_client()
        .post(format!("{}/v1/projects/p/events", server.url))
        .bearer_auth(&keys.ingest)
        .body(event(9))
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 429);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    let answer: Value = response.json().unwrap();
    assert_eq!(answer["error"]["code"], "rate_limited");
    // Another key of the project has its own budget; other routes are not limited.
    assert_eq!(server.ingest_with("p", &other, event(3), false).0, 200);
    for _ in 0..5 {
        let (status, _) = send(&server, Method::GET, "/v1/me", None, Some(&keys.analyst));
        assert_eq!(status, 200);
    }
    // After the wait, the key sends again.
    std::thread::sleep(std::time::Duration::from_secs(retry_after));
    assert_eq!(
        server.ingest_with("p", &keys.ingest, event(4), false).0,
        200
    );
}
