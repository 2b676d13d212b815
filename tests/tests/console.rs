//! The web console is served by the binary itself, at `/`, with nothing from elsewhere: the page,
//! its scripts and styles are embedded (`web/dist`), open without a key (they hold no data).

use promolens_tests::{Server, http_client, provision};

/// A server on a new data directory with project `demo` (the directory lives as long as it).
fn demo_server() -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    provision(data, "demo");
    let server = Server::start(data, &[], &[]);
    (dir, server)
}

#[test]
fn the_console_is_served_from_the_binary_with_nothing_from_elsewhere() {
    let (_dir, server) = demo_server();

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

#[test]
fn the_console_is_sent_gzipped_to_browsers_that_accept_it_and_plain_to_others() {
    use std::io::Read;
    let (_dir, server) = demo_server();
    let get = |path: &str, accept: Option<&str>| {
        let mut request = http_client().get(format!("{}{path}", server.url));
        if let Some(accept) = accept {
            request = request.header("accept-encoding", accept);
        }
        request.send().unwrap()
    };
    let html = get("/", None).text().unwrap();
    let script = html
        .split('"')
        .find(|s| s.starts_with("/assets/") && s.ends_with(".js"))
        .unwrap()
        .to_string();
    let plain = get(&script, None);
    assert_eq!(plain.headers().get("content-encoding"), None);
    assert_eq!(plain.headers()["vary"], "accept-encoding");
    let plain = plain.bytes().unwrap();

    for accept in ["gzip", "br, gzip;q=0.8", "*"] {
        let zipped = get(&script, Some(accept));
        assert_eq!(zipped.headers()["content-encoding"], "gzip", "{accept}");
        let zipped = zipped.bytes().unwrap();
        assert!(
            zipped.len() < plain.len() / 2,
            "{} of {}",
            zipped.len(),
            plain.len()
        );
        let mut unzipped = Vec::new();
        flate2::read::GzDecoder::new(&zipped[..])
            .read_to_end(&mut unzipped)
            .unwrap();
        assert_eq!(unzipped, plain, "{accept}");
    }
    for refused in ["gzip;q=0", "br", "identity"] {
        let response = get(&script, Some(refused));
        assert_eq!(
            response.headers().get("content-encoding"),
            None,
            "{refused}"
        );
        assert_eq!(response.bytes().unwrap(), plain, "{refused}");
    }
}
