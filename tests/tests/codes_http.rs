//! Code management over HTTP, as the web console and scripts use it, on `serve --demo` (which
//! starts a WeChat stand-in and authorizes project `demo` against it).

use promolens_tests::Server;
use serde_json::{Value, json};

fn call(key: &str, method: reqwest::Method, url: String, body: Option<Value>) -> (u16, Value) {
    let mut request = promolens_tests::http_client()
        .request(method, url)
        .bearer_auth(key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().expect("request");
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

#[test]
fn codes_are_created_downloaded_renamed_and_softly_deleted_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("components");
    let data = dir.path().join("data");
    let keys = promolens_tests::provision(data.to_str().unwrap(), "demo");
    let key = keys.marketer;
    // A project whose mini-program is not authorized.
    let other = promolens_tests::provision(data.to_str().unwrap(), "other").marketer;
    let server = Server::start(
        data.to_str().unwrap(),
        &["--demo", "--component-cache", cache.to_str().unwrap()],
        &[],
    );
    let codes = format!("{}/v1/projects/demo/codes", server.url);
    use reqwest::Method;

    let (status, answer) = call(
        &key,
        Method::GET,
        format!("{}/v1/projects/demo/authorization", server.url),
        None,
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["authorization"]["app_id"], "wx0123456789abcdef");
    assert!(
        !answer.to_string().contains("secret"),
        "never returned: {answer}"
    );
    // Credentials WeChat refuses are the caller's to fix (400, naming the field), not a 5xx.
    let authorization = format!("{}/v1/projects/other/authorization", server.url);
    let other_admin = promolens_tests::create_key(data.to_str().unwrap(), "other", "admin");
    for (app_id, secret, field) in [
        ("wx0123456789abcdef", "wrong", "secret"),
        ("wx00000000000000ff", "wrong", "app_id"),
    ] {
        let body = json!({"app_id": app_id, "secret": secret});
        let (status, err) = call(&other_admin, Method::PUT, authorization.clone(), Some(body));
        assert_eq!(
            (
                status,
                err["error"]["code"].as_str(),
                err["error"]["field"].as_str()
            ),
            (400, Some("invalid_credentials"), Some(field)),
            "{err}"
        );
    }

    // The live byte counter: 129 bytes inline with the code's id, so it will carry only the id.
    let long = "x".repeat(129 - "pages/a?utm_source=".len() - "&c=********".len());
    let (status, preview) = call(
        &key,
        Method::POST,
        format!("{codes}:preview"),
        Some(json!({"name": "Long", "kind": "A", "page": "pages/a", "utm_source": long})),
    );
    assert_eq!(status, 200, "{preview}");
    assert_eq!(preview["encoding"]["inline_bytes"], 129);
    assert_eq!(preview["encoding"]["by_reference"], true);

    let (status, code) = call(
        &key,
        Method::POST,
        codes.clone(),
        Some(
            json!({"name": "Poster", "kind": "C", "page": "pages/index/index",
                    "utm_source": "poster", "utm_campaign": "双11"}),
        ),
    );
    assert_eq!(status, 201, "{code}");
    let id = code["id"].as_str().unwrap().to_string();
    let image = promolens_tests::http_client()
        .get(format!("{codes}/{id}/image"))
        .bearer_auth(&key)
        .send()
        .unwrap();
    assert_eq!(image.status(), 200);
    assert_eq!(image.headers()["content-type"], "image/png");
    assert!(image.bytes().unwrap().starts_with(b"\x89PNG"));

    let (status, renamed) = call(
        &key,
        Method::PATCH,
        format!("{codes}/{id}"),
        Some(json!({"name": "Poster, Nanjing Road"})),
    );
    assert_eq!(
        (status, renamed["name"].as_str()),
        (200, Some("Poster, Nanjing Road"))
    );
    let (status, _) = call(&key, Method::DELETE, format!("{codes}/{id}"), None);
    assert_eq!(status, 200);
    let (status, gone) = call(&key, Method::GET, format!("{codes}/{id}/image"), None);
    assert_eq!(status, 410, "{gone}");
    assert_eq!(gone["error"]["code"], "deleted");
    // Listed no more, unless deleted codes are asked for (the demo's own codes aside).
    let listed_here = |url: String| {
        let (_, listed) = call(&key, Method::GET, url, None);
        let codes = listed["codes"].as_array().unwrap().clone();
        codes.iter().filter(|c| c["id"] == json!(id)).count()
    };
    assert_eq!(listed_here(codes.clone()), 0);
    assert_eq!(listed_here(format!("{codes}?include_deleted=true")), 1);

    // Errors say which field and by how much.
    let (status, err) = call(
        &key,
        Method::POST,
        codes.clone(),
        Some(
            json!({"name": "B", "kind": "B", "page": "pages/a", "params": [["shop", "y".repeat(40)]]}),
        ),
    );
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"]["code"], "too_long");
    assert_eq!(err["error"]["field"], "scene");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("56 characters, 24 over the limit of 32"),
        "{err}"
    );
    // The same as numbers, for a form to say in its own language.
    assert_eq!(
        err["error"]["over_limit"],
        json!({"limit": 32, "actual": 56, "over": 24, "unit": "characters"})
    );
    // An id no record can have (upper case) is not found, as an unknown one is: it used to
    // reach the record store as a key it refuses, and came back 500.
    for (method, path) in [
        (Method::GET, "zzzzzzzz"),
        (Method::GET, "1P"),
        (Method::DELETE, "1P"),
        (Method::GET, "ABCDEFGH/image"),
    ] {
        let url = format!("{}/v1/projects/other/codes/{path}", server.url);
        let (status, err) = call(&other, method.clone(), url, None);
        assert_eq!(
            (status, err["error"]["code"].as_str()),
            (404, Some("not_found")),
            "{method} {path}: {err}"
        );
    }
    let (status, err) = call(
        &other,
        Method::POST,
        format!("{}/v1/projects/other/codes", server.url),
        Some(json!({"name": "x", "kind": "A", "page": "pages/a"})),
    );
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (403, Some("not_authorized")),
        "{err}"
    );
    // demo's key opens none of other's doors.
    let (status, err) = call(
        &key,
        Method::GET,
        format!("{}/v1/projects/other/codes", server.url),
        None,
    );
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (403, Some("forbidden")),
        "{err}"
    );

    // A batch: each row answered, a bad one does not stop the others.
    let response = promolens_tests::http_client()
        .post(format!("{codes}:batch"))
        .bearer_auth(&key)
        .header("content-type", "text/csv")
        .body("name,kind,page,utm_source\nShop 1,B,pages/shop,poster\nShop 2,Z,pages/shop,poster\nShop 3,A,pages/shop,poster\n")
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    let batch: Value = response.json().unwrap();
    assert_eq!(
        (batch["created"].as_u64(), batch["failed"].as_u64()),
        (Some(2), Some(1)),
        "{batch}"
    );
    assert_eq!(batch["rows"][1]["line"], 3);
    assert_eq!(batch["rows"][1]["error"]["field"], "kind");

    // The compiled component was cached for the next start, beside the key that signs it.
    let cached: Vec<String> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".cwasm"))
        .collect();
    assert_eq!(cached.len(), 1, "{cached:?}");
}

/// The query a scan of `code` gives the mini-program, as WeChat gives it (DESIGN.md §2).
fn scan_query(code: &Value) -> Value {
    let encoding = &code["encoding"];
    match encoding["scene"].as_str() {
        Some(scene) => {
            // `query.scene` holds the scene URL-encoded.
            let encoded: String = url_encode(scene);
            json!({ "scene": encoded })
        }
        None => {
            let path = encoding["path"].as_str().unwrap();
            let query = path.split_once('?').map_or("", |(_, q)| q);
            let mut map = serde_json::Map::new();
            for pair in query.split('&').filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                map.insert(k.to_string(), json!(v));
            }
            Value::Object(map)
        }
    }
}

fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'-'
            | b'_'
            | b'.'
            | b'!'
            | b'~'
            | b'*'
            | b'\''
            | b'('
            | b')' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Rewrites a code's record as promolens made it before every code carried its id: an A or C
/// code whose UTM parameters fitted inline had a path without `c=<id>`. Returns that path.
fn make_legacy(data: &std::path::Path, code: &Value) -> String {
    let id = code["id"].as_str().unwrap();
    let record = data.join(format!("codes/codes/project=demo/{id}"));
    let mut stored: Value = serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap();
    let path = stored["encoding"]["path"].as_str().unwrap().to_string();
    let legacy = path.replace(&format!("&c={id}"), "");
    assert_ne!(legacy, path, "{path}");
    stored["encoding"]["path"] = json!(legacy);
    stored["encoding"]["used"] = json!(legacy.len());
    std::fs::write(&record, serde_json::to_vec(&stored).unwrap()).unwrap();
    legacy
}

#[test]
fn every_code_of_each_kind_gets_exactly_its_own_scans_even_after_delete() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let keys = promolens_tests::provision(data.to_str().unwrap(), "demo");
    let key = keys.marketer.clone();
    let server = Server::start(
        data.to_str().unwrap(),
        &["--demo", "--flush-seconds", "0.05"],
        &[],
    );
    use reqwest::Method;
    let codes = format!("{}/v1/projects/demo/codes", server.url);
    let create = |body: Value| {
        let (status, code) = call(&key, Method::POST, codes.clone(), Some(body));
        assert_eq!(status, 201, "{code}");
        code
    };
    let article = json!({"kind": "A", "page": "pages/index/index",
                         "utm_source": "e2e-gzh", "utm_campaign": "双11"});
    let with_name = |body: &Value, name: &str| {
        let mut body = body.clone();
        body["name"] = json!(name);
        body
    };
    // Two A codes with the same UTM values: only their ids tell their scans apart.
    let a1 = create(with_name(&article, "Article, top"));
    let a2 = create(with_name(&article, "Article, bottom"));
    assert_ne!(a1["encoding"]["path"], a2["encoding"]["path"]);
    assert_eq!(a1["encoding"]["by_reference"], false, "UTM values inline");
    let b = create(
        json!({"name": "Poster", "kind": "B", "page": "pages/index/index",
               "utm_source": "e2e-poster", "utm_campaign": "双11"}),
    );
    let c = create(
        json!({"name": "Counter", "kind": "C", "page": "pages/index/index",
               "utm_source": "e2e-counter", "params": [["shop", "42"]]}),
    );
    // Too long to carry inline: a C code with only its reference.
    let c_long = create(
        json!({"name": "Shop", "kind": "C", "page": "pages/index/index",
               "utm_source": "e2e-shop", "utm_campaign": "长".repeat(20)}),
    );
    assert_eq!(c_long["encoding"]["by_reference"], true);
    // A code made before codes carried their id, and one made after with the same parameters
    // (its path differs by the id).
    let mut old = create(
        json!({"name": "Old poster", "kind": "A", "page": "pages/shop/index",
               "utm_source": "e2e-old", "utm_medium": "poster", "params": [["shop", "7"]]}),
    );
    let legacy_path = make_legacy(&data, &old);
    old["encoding"]["path"] = json!(legacy_path);
    let (_, shown) = call(
        &key,
        Method::GET,
        format!("{codes}/{}", old["id"].as_str().unwrap()),
        None,
    );
    assert_eq!(shown["encoding"]["path"], legacy_path);
    let new = create(
        json!({"name": "New poster", "kind": "A", "page": "pages/shop/index",
               "utm_source": "e2e-old", "utm_medium": "poster", "params": [["shop", "7"]]}),
    );

    let yesterday = chrono::Utc::now().timestamp_millis() - 86_400_000;
    let scans = [
        (&a1, 1047, 5),
        (&a2, 1048, 4),
        (&b, 1048, 3),
        (&c, 1011, 2),
        (&c_long, 1012, 2),
        (&old, 1047, 3),
        (&new, 1049, 1),
    ];
    let mut lines = Vec::new();
    for (i, (code, scene, users)) in scans.iter().enumerate() {
        let path = code["page"].as_str().unwrap();
        for u in 0..*users {
            lines.push(
                json!({"event_id": format!("e2e-{i}-{u}"), "user_id": format!("e2e-u{i}-{u}"),
                "ts": yesterday, "scene": scene, "path": path, "query": scan_query(code)})
                .to_string(),
            );
        }
    }
    // Not a scan of the old code: the same page and parameters from a shared card (scene 1007),
    // and a scan with one parameter more.
    let mut other_query = scan_query(&old);
    lines.push(
        json!({"event_id": "e2e-card", "user_id": "e2e-card-user", "ts": yesterday,
               "scene": 1007, "path": "pages/shop/index", "query": other_query.clone()})
        .to_string(),
    );
    other_query["from"] = json!("x");
    lines.push(
        json!({"event_id": "e2e-more", "user_id": "e2e-more-user", "ts": yesterday,
               "scene": 1047, "path": "pages/shop/index", "query": other_query})
        .to_string(),
    );
    let (status, answer) = server.ingest("demo", lines.join("\n").into_bytes(), false);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["accepted"], 22, "{answer}");

    let acquisition = |by: &str| -> Vec<Value> {
        let (_, answer) = call(
            &key,
            Method::GET,
            format!("{}/v1/projects/demo/acquisition?by={by}&days=7", server.url),
            None,
        );
        answer["rows"].as_array().cloned().unwrap_or_default()
    };
    // This test's codes (the demo has codes and scans of its own).
    let labels: Vec<String> = scans
        .iter()
        .map(|(code, _, _)| {
            format!(
                "{} ({})",
                code["name"].as_str().unwrap(),
                code["id"].as_str().unwrap()
            )
        })
        .collect();
    let by_code = promolens_tests::eventually(std::time::Duration::from_secs(10), || {
        let rows = acquisition("code");
        let users: u64 = rows
            .iter()
            .filter(|r| {
                r["code"]
                    .as_str()
                    .is_some_and(|c| labels.iter().any(|l| l == c))
            })
            .map(|r| r["users"].as_u64().unwrap())
            .sum();
        (users == 20).then_some(rows)
    });
    let listed = call(&key, Method::GET, codes.clone(), None).1;
    for (code, _, users) in scans {
        let id = code["id"].as_str().unwrap();
        let label = format!("{} ({id})", code["name"].as_str().unwrap());
        let row = by_code
            .iter()
            .find(|r| r["code"] == label)
            .unwrap_or_else(|| panic!("no row for {label}: {by_code:?}"));
        let figures = json!({"new_users": users, "users": users, "launches": users});
        let counted = json!({"new_users": row["new_users"], "users": row["users"],
                             "launches": row["launches"]});
        assert_eq!(counted, figures, "{label}");
        let in_list = listed["codes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|listed| listed["id"] == id)
            .unwrap();
        assert_eq!(in_list["past_7_days"], figures, "{label} in the code list");
    }
    assert_eq!(listed["quota"]["exhausted"], false, "{}", listed["quota"]);

    // Source and campaign come from the codes' records where the scan carries only the id.
    let by_source = acquisition("utm_source,utm_campaign");
    let users_of = |source: &str| -> u64 {
        by_source
            .iter()
            .filter(|r| r["utm_source"] == source)
            .map(|r| r["users"].as_u64().unwrap())
            .sum()
    };
    assert_eq!(users_of("e2e-gzh"), 9);
    assert_eq!(users_of("e2e-poster"), 3);
    assert_eq!(users_of("e2e-shop"), 2);
    // The old code's 3 scans, the new one's, the shared card and the scan with more parameters.
    assert_eq!(users_of("e2e-old"), 6);

    // Deleted: no more downloads, but a printed copy's scans still count.
    let b_id = b["id"].as_str().unwrap();
    let (status, _) = call(&key, Method::DELETE, format!("{codes}/{b_id}"), None);
    assert_eq!(status, 200);
    let late = json!({"event_id": "e2e-late", "user_id": "e2e-late-user", "ts": yesterday,
        "scene": 1047, "query": scan_query(&b)});
    server.ingest("demo", late.to_string().into_bytes(), false);
    promolens_tests::eventually(std::time::Duration::from_secs(10), || {
        acquisition("code")
            .iter()
            .find(|r| r["code"] == format!("Poster ({b_id})") && r["users"].as_u64() == Some(4))?;
        Some(())
    });
}
