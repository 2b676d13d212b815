//! Code management over HTTP, as the web console and scripts use it, on `serve --demo` (which
//! starts a WeChat stand-in and authorizes project `demo` against it).

use promolens_tests::Server;
use reqwest::blocking::Client;
use serde_json::{Value, json};

fn call(method: reqwest::Method, url: String, body: Option<Value>) -> (u16, Value) {
    let mut request = Client::new().request(method, url);
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
    let server = Server::start(
        dir.path().join("data").to_str().unwrap(),
        &["--demo", "--component-cache", cache.to_str().unwrap()],
        &[],
    );
    let codes = format!("{}/v1/projects/demo/codes", server.url);
    use reqwest::Method;

    let (status, answer) = call(
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

    // The live byte counter: 129 bytes inline, so the code will carry a reference.
    let long = "x".repeat(129 - "pages/a?utm_source=".len());
    let (status, preview) = call(
        Method::POST,
        format!("{codes}:preview"),
        Some(json!({"name": "Long", "kind": "A", "page": "pages/a", "utm_source": long})),
    );
    assert_eq!(status, 200, "{preview}");
    assert_eq!(preview["encoding"]["inline_bytes"], 129);
    assert_eq!(preview["encoding"]["by_reference"], true);

    let (status, code) = call(
        Method::POST,
        codes.clone(),
        Some(
            json!({"name": "Poster", "kind": "C", "page": "pages/index/index",
                    "utm_source": "poster", "utm_campaign": "双11"}),
        ),
    );
    assert_eq!(status, 201, "{code}");
    let id = code["id"].as_str().unwrap().to_string();
    let image = Client::new()
        .get(format!("{codes}/{id}/image"))
        .send()
        .unwrap();
    assert_eq!(image.status(), 200);
    assert_eq!(image.headers()["content-type"], "image/png");
    assert!(image.bytes().unwrap().starts_with(b"\x89PNG"));

    let (status, renamed) = call(
        Method::PATCH,
        format!("{codes}/{id}"),
        Some(json!({"name": "Poster, Nanjing Road"})),
    );
    assert_eq!(
        (status, renamed["name"].as_str()),
        (200, Some("Poster, Nanjing Road"))
    );
    let (status, _) = call(Method::DELETE, format!("{codes}/{id}"), None);
    assert_eq!(status, 200);
    let (status, gone) = call(Method::GET, format!("{codes}/{id}/image"), None);
    assert_eq!(status, 410, "{gone}");
    assert_eq!(gone["error"]["code"], "deleted");
    let (_, listed) = call(Method::GET, codes.clone(), None);
    assert_eq!(listed["codes"].as_array().unwrap().len(), 0);
    let (_, listed) = call(Method::GET, format!("{codes}?include_deleted=true"), None);
    assert_eq!(listed["codes"].as_array().unwrap().len(), 1);

    // Errors say which field and by how much.
    let (status, err) = call(
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
    let (status, err) = call(
        Method::GET,
        format!("{}/v1/projects/other/codes/zzzzzzzz", server.url),
        None,
    );
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    let (status, err) = call(
        Method::POST,
        format!("{}/v1/projects/other/codes", server.url),
        Some(json!({"name": "x", "kind": "A", "page": "pages/a"})),
    );
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (403, Some("not_authorized")),
        "{err}"
    );

    // A batch: each row answered, a bad one does not stop the others.
    let response = Client::new()
        .post(format!("{codes}:batch"))
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

    // The compiled component was cached for the next start.
    assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 1);
}
