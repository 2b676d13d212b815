//! Codes made through the real WeChat protocol against the local stand-in: the images are real
//! QR symbols of what was asked for, a scan decodes to the code's attribution, tokens are shared
//! and refreshed, transient failures retried, and WeChat's errcodes come back explained.

use std::sync::Arc;

use promolens::codes::credentials::{CredentialStore, Credentials};
use promolens::codes::records::RecordStore;
use promolens::codes::runtime::{Limits, PluginRuntime};
use promolens::codes::standin::{self, StandinConfig};
use promolens::codes::wechat::WechatClient;
use promolens::codes::{Code, CodeKind, CodeRequest, Codes, CodesError, PLUGIN_WASM, PluginError};
use promolens_schemas::decode_attribution;

const APP_ID: &str = "wx0123456789abcdef";

struct World {
    codes: Codes,
    standin: String,
    _dir: tempfile::TempDir,
}

async fn world(config: StandinConfig) -> World {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let standin = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(standin::serve(listener, config));
    let dir = tempfile::tempdir().unwrap();
    let storage = promolens_ingest::Storage::open(dir.path().to_str().unwrap()).unwrap();
    let credentials = Arc::new(CredentialStore::new(storage.clone(), Some([9; 32])));
    credentials
        .put(
            "shop",
            &Credentials {
                app_id: APP_ID.into(),
                secret: "demo-secret".into(),
            },
        )
        .await
        .unwrap();
    let codes = Codes::new(
        Arc::new(PluginRuntime::new(PLUGIN_WASM, None, Limits::default()).unwrap()),
        Arc::new(RecordStore::new(storage)),
        Arc::new(WechatClient::new(&standin, credentials).unwrap()),
    );
    codes.register_authorization("shop", APP_ID).await.unwrap();
    World {
        codes,
        standin,
        _dir: dir,
    }
}

fn request(kind: &str, page: &str, source: &str) -> CodeRequest {
    serde_json::from_value(serde_json::json!({
        "name": format!("{kind} code"), "kind": kind, "page": page,
        "utm": {"source": source, "medium": "poster", "campaign": "双11", "content": null, "term": null},
        "params": [],
        "image": {"width": 430, "auto_color": false, "line_color": null, "is_hyaline": false,
                  "env_version": null, "check_path": null}
    }))
    .unwrap()
}

/// The text of the QR symbol in a PNG.
fn scan(png: &[u8]) -> String {
    let image = image::load_from_memory(png).unwrap().to_luma8();
    let mut prepared = rqrr::PreparedImage::prepare(image);
    let grids = prepared.detect_grids();
    assert_eq!(grids.len(), 1, "one QR symbol");
    grids[0].decode().unwrap().1
}

/// The launch query a scan of `code` gives the mini-program, from the symbol's text: the query
/// of an A/C path as written, or `scene` URL-encoded for a B code.
fn launch_query(code: &Code, scanned: &str) -> Vec<(String, String)> {
    let (_, query) = scanned.split_once('?').unwrap_or((scanned, ""));
    match code.kind {
        CodeKind::B => {
            let scene = query.strip_prefix("scene=").unwrap();
            vec![(
                "scene".into(),
                promolens_schemas::percent::encode_uri_component(scene),
            )]
        }
        _ => query
            .split('&')
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

async fn stats(standin: &str) -> serde_json::Value {
    promolens::codes::wechat::use_ring_for_tls();
    reqwest::get(format!("{standin}/standin/stats"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn inject(standin: &str, errcodes: &[i32]) {
    inject_json(standin, serde_json::json!({ "errcodes": errcodes })).await;
}

async fn inject_json(standin: &str, body: serde_json::Value) {
    promolens::codes::wechat::use_ring_for_tls();
    reqwest::Client::new()
        .post(format!("{standin}/standin/fail"))
        .json(&body)
        .send()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_answer_is_not_sent_again_when_it_may_have_spent_quota() {
    let w = world(StandinConfig::default()).await;
    // An A code: WeChat made it, then the answer was lost. Sending it again would spend a
    // second code of the lifetime quota: the error says the outcome is unknown instead.
    inject_json(&w.standin, serde_json::json!({"lost_answers": 1})).await;
    let before = stats(&w.standin).await;
    let error = w
        .codes
        .create("shop", request("A", "pages/index/index", "lost"))
        .await
        .unwrap_err();
    let after = stats(&w.standin).await;
    assert_eq!(
        after["code_calls"].as_u64().unwrap() - before["code_calls"].as_u64().unwrap(),
        1
    );
    assert_eq!(after["quota_used"], 1, "one code spent, not two");
    let message = error.to_string();
    assert!(
        message.contains(promolens::codes::wechat::OUTCOME_UNKNOWN)
            && message.contains("A+C quota"),
        "{message}"
    );
    // A B code spends no quota: the same loss is retried and the code made.
    inject_json(&w.standin, serde_json::json!({"lost_answers": 1})).await;
    w.codes
        .create("shop", request("B", "pages/index/index", "lost"))
        .await
        .unwrap();
    assert_eq!(
        stats(&w.standin).await["code_calls"].as_u64().unwrap()
            - after["code_calls"].as_u64().unwrap(),
        2
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_b_and_c_images_are_qr_symbols_of_what_scans_decode_to() {
    let w = world(StandinConfig::default()).await;
    for (kind, scene) in [("A", 1047), ("B", 1048), ("C", 1011)] {
        let code = w
            .codes
            .create("shop", request(kind, "pages/index/index", "公众号"))
            .await
            .unwrap();
        let image = w.codes.image("shop", &code.id).await.unwrap();
        assert_eq!(image.content_type, "image/png");
        let scanned = scan(&image.bytes);
        let launch = launch_query(&code, &scanned);
        let attribution = decode_attribution(Some(scene), &launch);
        match code.kind {
            CodeKind::B => {
                assert_eq!(scanned, format!("pages/index/index?scene=c={}", code.id));
                assert_eq!(attribution.code_id.as_deref(), Some(code.id.as_str()));
            }
            _ => {
                assert_eq!(Some(scanned.as_str()), code.encoding.path.as_deref());
                assert_eq!(attribution.utm.source.as_deref(), Some("公众号"));
                assert_eq!(attribution.utm.campaign.as_deref(), Some("双11"));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_calls_share_one_token_and_a_rejected_token_is_refreshed_once() {
    let w = world(StandinConfig::default()).await;
    let calls = (0..8).map(|i| {
        let codes = w.codes.clone();
        async move {
            codes
                .create("shop", request("B", "pages/index/index", &format!("s{i}")))
                .await
        }
    });
    for outcome in futures::future::join_all(calls).await {
        outcome.unwrap();
    }
    assert_eq!(stats(&w.standin).await["token_fetches"], 1);
    // WeChat says the token is no longer valid, then is busy: refreshed, retried, done.
    inject(&w.standin, &[40001, -1]).await;
    w.codes
        .create("shop", request("A", "pages/index/index", "x"))
        .await
        .unwrap();
    assert_eq!(stats(&w.standin).await["token_fetches"], 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_token_is_replaced() {
    let w = world(StandinConfig {
        token_ttl: std::time::Duration::from_secs(1),
        ..StandinConfig::default()
    })
    .await;
    let req = || request("C", "pages/index/index", "x");
    w.codes.create("shop", req()).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    w.codes.create("shop", req()).await.unwrap();
    assert_eq!(stats(&w.standin).await["token_fetches"], 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn wechat_errcodes_come_back_explained() {
    let w = world(StandinConfig {
        quota: 2,
        ..StandinConfig::default()
    })
    .await;
    let wechat_error = |outcome: Result<Code, CodesError>| match outcome {
        Err(CodesError::Plugin(PluginError::Wechat(e))) => e,
        other => panic!("{other:?}"),
    };
    for _ in 0..2 {
        w.codes
            .create("shop", request("A", "pages/index/index", "x"))
            .await
            .unwrap();
    }
    // WeChat's own count is full (codes made outside promolens count there): its count is the
    // truth, the quota is exhausted here too, and WeChat is not asked again.
    let outcome = w
        .codes
        .create("shop", request("C", "pages/index/index", "x"))
        .await;
    match outcome {
        Err(CodesError::Plugin(PluginError::QuotaExhausted(q))) => {
            assert_eq!((q.used, q.limit, q.exhausted), (100_000, 100_000, true));
        }
        other => panic!("{other:?}"),
    }
    let quota = w.codes.quota("shop").await.unwrap();
    assert!(quota.exhausted && quota.used == quota.limit, "{quota:?}");
    let calls = stats(&w.standin).await["code_calls"].clone();
    let outcome = w
        .codes
        .create("shop", request("A", "pages/index/index", "x"))
        .await;
    assert!(
        matches!(
            outcome,
            Err(CodesError::Plugin(PluginError::QuotaExhausted(_)))
        ),
        "{outcome:?}"
    );
    assert_eq!(stats(&w.standin).await["code_calls"], calls);

    let e = wechat_error(
        w.codes
            .create("shop", request("B", "pages/draft/new", "x"))
            .await,
    );
    assert_eq!(e.errcode, 41030);
    assert!(e.meaning.contains("not published"));
    for errcode in [45009, 45063, 40097] {
        inject(&w.standin, &[errcode]).await;
        let e = wechat_error(
            w.codes
                .create("shop", request("B", "pages/index/index", "x"))
                .await,
        );
        assert_eq!(e.errcode, errcode);
        assert!(
            !e.meaning.contains("documentation"),
            "{errcode} has a meaning"
        );
    }
}

/// The real API is `https://`: the client must open a TLS session to it, not fail on the scheme.
/// A loopback listener records the first bytes the client sends for a token.
#[tokio::test(flavor = "multi_thread")]
async fn an_https_base_url_is_spoken_over_tls() {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("https://{}", listener.local_addr().unwrap());
    let first_bytes = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut head = [0u8; 3];
        socket.read_exact(&mut head).await.unwrap();
        head
    });
    let dir = tempfile::tempdir().unwrap();
    let storage = promolens_ingest::Storage::open(dir.path().to_str().unwrap()).unwrap();
    let credentials = Arc::new(CredentialStore::new(storage, Some([9; 32])));
    let client = WechatClient::new(&base, credentials).unwrap();
    let credentials = Credentials {
        app_id: APP_ID.into(),
        secret: "demo-secret".into(),
    };
    // The listener hangs up after the hello, so the call fails; what matters is what was sent.
    let answer = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        client.verify(&credentials).await
    })
    .await;
    assert!(matches!(answer, Ok(Err(_))), "{answer:?}");
    // A TLS handshake record (0x16) of version 3.x: a ClientHello, not plain HTTP.
    let head = tokio::time::timeout(std::time::Duration::from_secs(5), first_bytes)
        .await
        .expect("the client never connected")
        .unwrap();
    assert_eq!(head[..2], [0x16, 0x03], "first bytes {head:?}");
}
