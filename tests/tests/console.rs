//! The web console is served by the binary itself, at `/`, with nothing from elsewhere: the page,
//! its scripts and styles are embedded (`web/dist`), open without a key (they hold no data).

use promolens_tests::{Server, http_client, provision};

#[test]
fn the_console_is_served_from_the_binary_with_nothing_from_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    provision(data, "demo");
    let server = Server::start(data, &[], &[]);

    let page = http_client().get(&server.url).send().unwrap();
    assert_eq!(page.status().as_u16(), 200);
    let policy = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(policy.contains("default-src 'self'"), "{policy}");
    let html = page.text().unwrap();
    // Every script and style the page loads is the server's own.
    let assets: Vec<&str> = html
        .split(['"', '\''])
        .filter(|s| s.starts_with("/assets/"))
        .collect();
    assert!(
        assets.iter().any(|a| a.ends_with(".js")),
        "no script in {html}"
    );
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "{html}"
    );
    let mut script = String::new();
    for asset in assets {
        let response = http_client()
            .get(format!("{}{asset}", server.url))
            .send()
            .unwrap();
        assert_eq!(response.status().as_u16(), 200, "{asset}");
        let immutable = response.headers()["cache-control"].to_str().unwrap();
        assert!(immutable.contains("immutable"), "{asset}: {immutable}");
        if asset.ends_with(".js") {
            script.push_str(&response.text().unwrap());
        }
    }
    // Both languages are in the bundle.
    for words in ["获客管理", "Acquisition management"] {
        assert!(script.contains(words), "{words}");
    }
    let missing = http_client()
        .get(format!("{}/assets/nothing.js", server.url))
        .send()
        .unwrap();
    assert_eq!(missing.status().as_u16(), 404);
}
