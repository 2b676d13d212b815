//! The plugin's logic, natively, against an in-memory host: WeChat's limits at their boundaries,
//! the quota, authorization, the record lifecycle, batches, and a round trip through the launch
//! decoder that attributes scans.

use promolens_schemas::decode_attribution;

use crate::bindings::promolens::codes::host::WechatEndpoint;
use crate::bindings::promolens::codes::types::{
    BatchOutcome, CodeKind, CodeRequest, Error, ImageOptions, TooLong, Utm,
};
use crate::encoding::{self, PREVIEW_ID};
use crate::service::memory::MemoryHost;
use crate::service::{self, Host, QUOTA_LIMIT};

fn request(kind: CodeKind, page: &str, source: &str) -> CodeRequest {
    CodeRequest {
        name: "Poster".into(),
        kind,
        page: page.into(),
        utm: Utm {
            source: Some(source.into()),
            medium: None,
            campaign: None,
            content: None,
            term: None,
        },
        params: Vec::new(),
        image: ImageOptions {
            width: None,
            auto_color: false,
            line_color: None,
            is_hyaline: false,
            env_version: None,
            check_path: None,
        },
    }
}

/// `pages/a?utm_source=` is 19 bytes and `&c=ab12cd34` 11: a source of `n - 30` ASCII bytes
/// makes an `n`-byte path.
fn path_of_bytes(n: usize) -> CodeRequest {
    request(CodeKind::A, "pages/a", &"x".repeat(n - 30))
}

#[test]
fn a_path_of_128_bytes_with_its_id_is_inline_and_129_keeps_only_the_id() {
    for n in [127, 128] {
        let e = encoding::encode(&path_of_bytes(n), PREVIEW_ID).unwrap();
        assert_eq!(e.used, n as u32);
        assert!(!e.by_reference, "{n} bytes fit");
        assert_eq!(
            e.note,
            format!(
                "{n} of 128 bytes used (c={PREVIEW_ID} included), {} left",
                128 - n
            )
        );
        let e = encoding::encode(&path_of_bytes(n), "ab12cd34").unwrap();
        let path = e.path.unwrap();
        assert!(path.ends_with("&c=ab12cd34"), "{path}");
        assert_eq!(path.len(), n);
    }
    let e = encoding::encode(&path_of_bytes(129), "ab12cd34").unwrap();
    assert!(e.by_reference);
    assert_eq!(e.path.as_deref(), Some("pages/a?c=ab12cd34"));
    assert_eq!(e.used, 18);
    assert_eq!(e.inline_bytes, Some(129));
    assert!(
        e.note.contains("129 bytes, 1 over the 128-byte limit"),
        "{}",
        e.note
    );
}

#[test]
fn chinese_values_count_as_their_percent_encoded_bytes() {
    // 双 is 3 UTF-8 bytes, 9 bytes once percent-encoded (%E5%8F%8C).
    let e = encoding::encode(&request(CodeKind::C, "pages/a", "双11"), "ab12cd34").unwrap();
    assert_eq!(
        e.path.as_deref(),
        Some("pages/a?utm_source=%E5%8F%8C11&c=ab12cd34")
    );
    assert_eq!(e.used, 19 + 9 + 2 + 11);
    // Ten of them and eight letters: 19 + 90 + 8 + 11 = 128 bytes, inline.
    let e = encoding::encode(
        &request(
            CodeKind::C,
            "pages/a",
            &format!("{}xxxxxxxx", "双".repeat(10)),
        ),
        PREVIEW_ID,
    )
    .unwrap();
    assert_eq!((e.used, e.by_reference), (128, false));
    // Thirteen: 19 + 117 + 11 = 147 bytes, 19 over.
    let e = encoding::encode(
        &request(CodeKind::C, "pages/a", &"双".repeat(13)),
        PREVIEW_ID,
    )
    .unwrap();
    assert_eq!((e.inline_bytes, e.by_reference), (Some(147), true));
    assert!(e.note.contains("147 bytes, 19 over"), "{}", e.note);
}

#[test]
fn a_page_too_long_for_even_a_reference_says_by_how_much() {
    let mut long = request(CodeKind::A, &format!("pages/{}", "p".repeat(120)), "gzh");
    let err = encoding::encode(&long, PREVIEW_ID).unwrap_err();
    // `pages/ppp…?c=********`: 126 + 11 bytes.
    assert_eq!(
        err,
        Error::TooLong(TooLong {
            field: "page".into(),
            limit: 128,
            actual: 137,
            over: 9,
            unit: "bytes".into()
        })
    );
    // Without UTM values the id is still carried: `pages/` + 112 + `?c=********` is 129 bytes.
    long.utm.source = None;
    long.page = format!("pages/{}", "p".repeat(112));
    let err = encoding::encode(&long, PREVIEW_ID).unwrap_err();
    assert!(matches!(err, Error::TooLong(t) if t.actual == 129 && t.over == 1));
}

#[test]
fn b_codes_carry_a_reference_and_params_in_32_scene_characters() {
    let mut b = request(CodeKind::B, "pages/shop/index", "公众号");
    let e = encoding::encode(&b, "ab12cd34").unwrap();
    assert_eq!(e.scene.as_deref(), Some("c=ab12cd34"));
    assert_eq!(e.page.as_deref(), Some("pages/shop/index"));
    assert!(e.by_reference);
    // `c=ab12cd34` is 10 characters; `&shop=` 6 more: a 16-character value makes 32.
    b.params = vec![("shop".into(), "x".repeat(16))];
    let e = encoding::encode(&b, "ab12cd34").unwrap();
    assert_eq!((e.used, e.limit), (32, 32));
    b.params = vec![("shop".into(), "x".repeat(17))];
    let err = encoding::encode(&b, "ab12cd34").unwrap_err();
    assert!(
        matches!(&err, Error::TooLong(t) if t.field == "scene" && t.actual == 33 && t.over == 1 && t.unit == "characters"),
        "{err:?}"
    );
    b.params = vec![("shop".into(), "南京路".into())];
    let err = encoding::encode(&b, "ab12cd34").unwrap_err();
    assert!(
        matches!(&err, Error::InvalidField(f) if f.field == "params[0]" && f.reason.contains("`南`")),
        "{err:?}"
    );
}

#[test]
fn bad_requests_name_the_field() {
    type Spoil = fn(&mut CodeRequest);
    let cases: [(&str, Spoil); 6] = [
        ("name", |r| r.name = "  ".into()),
        ("page", |r| r.page = "/pages/a".into()),
        ("page", |r| r.page = "pages/a?x=1".into()),
        ("page", |r| r.page = "pages/购物".into()),
        ("params[0]", |r| {
            r.params = vec![("utm_source".into(), "x".into())]
        }),
        ("image.width", |r| r.image.width = Some(1281)),
    ];
    for (field, spoil) in cases {
        let mut r = request(CodeKind::A, "pages/a", "gzh");
        spoil(&mut r);
        match encoding::encode(&r, PREVIEW_ID) {
            Err(Error::InvalidField(f)) => assert_eq!(f.field, field, "{}", f.reason),
            other => panic!("{field}: {other:?}"),
        }
    }
}

#[test]
fn nothing_is_created_or_downloaded_before_authorization() {
    let host = MemoryHost::default();
    let r = request(CodeKind::A, "pages/a", "gzh");
    assert!(
        service::preview(&host, &r).is_ok(),
        "preview needs no authorization"
    );
    let err = service::create(&host, &r).unwrap_err();
    assert!(
        matches!(&err, Error::NotAuthorized(m) if m.contains("codes authorize")),
        "{err:?}"
    );
    assert!(host.calls.borrow().is_empty(), "WeChat was not called");
    let err = service::register_authorization(&host, "wx123").unwrap_err();
    assert!(matches!(err, Error::InvalidField(f) if f.field == "app_id"));
    service::register_authorization(&host, "wx0123456789abcdef").unwrap();
    let code = service::create(&host, &r).unwrap();
    service::revoke_authorization(&host).unwrap();
    assert!(matches!(
        service::image(&host, &code.id),
        Err(Error::NotAuthorized(_))
    ));
    assert_eq!(service::list(&host, false).unwrap().len(), 1, "codes stay");
}

#[test]
fn create_sends_wechat_the_encoded_payload_and_keeps_the_image() {
    let host = MemoryHost::authorized();
    let mut r = request(CodeKind::A, "pages/a", "gzh");
    r.image.width = Some(430);
    r.image.line_color = Some(crate::bindings::promolens::codes::types::Rgb { r: 1, g: 2, b: 3 });
    let code = service::create(&host, &r).unwrap();
    let (endpoint, body) = host.calls.borrow()[0].clone();
    assert_eq!(endpoint, WechatEndpoint::GetWxacode);
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        body["path"],
        format!("pages/a?utm_source=gzh&c={}", code.id)
    );
    assert_eq!(body["width"], 430);
    assert_eq!(
        body["line_color"],
        serde_json::json!({"r": 1, "g": 2, "b": 3})
    );
    let image = service::image(&host, &code.id).unwrap();
    assert_eq!(image.content_type, "image/png");
    assert_eq!(image.bytes.len() as u32, code.image_bytes);
    assert_eq!(
        host.calls.borrow().len(),
        1,
        "the download did not call WeChat"
    );

    let b = service::create(&host, &request(CodeKind::B, "pages/b", "gzh")).unwrap();
    let (endpoint, body) = host.calls.borrow()[1].clone();
    assert_eq!(endpoint, WechatEndpoint::GetWxacodeUnlimit);
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["scene"], format!("c={}", b.id));
    assert_eq!(body["page"], "pages/b");
    let c = service::create(&host, &request(CodeKind::C, "pages/c", "gzh")).unwrap();
    let (endpoint, body) = host.calls.borrow()[2].clone();
    assert_eq!(endpoint, WechatEndpoint::CreateWxaqrcode);
    let path = format!("pages/c?utm_source=gzh&c={}", c.id);
    assert_eq!(body, format!(r#"{{"path":"{path}"}}"#));
    assert_eq!(c.encoding.path.as_deref(), Some(path.as_str()));
}

#[test]
fn the_a_and_c_quota_warns_at_90_percent_and_refuses_at_the_limit_before_wechat() {
    let host = MemoryHost::authorized();
    host.set_quota_used(89_999);
    let r = request(CodeKind::A, "pages/a", "gzh");
    let preview = service::preview(&host, &r).unwrap();
    assert!(preview.quota.unwrap().warning, "the 90,000th code warns");
    host.set_quota_used(QUOTA_LIMIT - 1);
    service::create(&host, &r).unwrap();
    assert_eq!(service::quota(&host).unwrap().used, QUOTA_LIMIT);
    let calls = host.calls.borrow().len();
    let err = service::create(&host, &request(CodeKind::C, "pages/a", "gzh")).unwrap_err();
    assert!(
        matches!(&err, Error::QuotaExhausted(q) if q.used == QUOTA_LIMIT),
        "{err:?}"
    );
    assert_eq!(host.calls.borrow().len(), calls, "WeChat was not called");
    // B codes are unlimited.
    service::create(&host, &request(CodeKind::B, "pages/a", "gzh")).unwrap();
    assert!(
        host.logs
            .borrow()
            .iter()
            .any(|l| l.contains("100000 of 100000"))
    );
}

#[test]
fn wechat_answering_45029_exhausts_the_quota_for_preview_create_and_batch() {
    let host = MemoryHost::authorized();
    host.set_quota_used(12);
    host.fail_with.set(Some(45029));
    let r = request(CodeKind::A, "pages/a", "gzh");
    let err = service::create(&host, &r).unwrap_err();
    assert!(
        matches!(&err, Error::QuotaExhausted(q) if q.used == QUOTA_LIMIT && q.exhausted),
        "{err:?}"
    );
    // WeChat's count is the truth from now on: refused here, without asking WeChat again.
    host.fail_with.set(None);
    let calls = host.calls.borrow().len();
    let err = service::create(&host, &request(CodeKind::C, "pages/a", "gzh")).unwrap_err();
    assert!(matches!(err, Error::QuotaExhausted(_)), "{err:?}");
    assert_eq!(host.calls.borrow().len(), calls, "WeChat was not called");
    let quota = service::quota(&host).unwrap();
    assert_eq!((quota.used, quota.exhausted), (QUOTA_LIMIT, true));
    let preview = service::preview(&host, &r).unwrap().quota.unwrap();
    assert_eq!((preview.used, preview.exhausted), (QUOTA_LIMIT, true));
    let err = service::batch_create(&host, "name,kind,page\nx,A,pages/a\n").unwrap_err();
    assert!(matches!(err, Error::QuotaExhausted(_)), "{err:?}");
    assert!(service::list(&host, true).unwrap().is_empty());
    // B codes are unlimited, and a B code's 45029 (which WeChat never sends) is only an error.
    service::create(&host, &request(CodeKind::B, "pages/a", "gzh")).unwrap();
    assert!(host.logs.borrow().iter().any(|l| l.contains("45029")));
}

#[test]
fn a_new_id_that_already_names_a_code_is_a_conflict_naming_it() {
    let host = FixedId(MemoryHost::authorized(), "samesame");
    let r = request(CodeKind::A, "pages/a", "gzh");
    service::create(&host, &r).unwrap();
    let calls = host.0.calls.borrow().len();
    let err = service::create(&host, &r).unwrap_err();
    assert!(
        matches!(&err, Error::Conflict(m) if m.contains("samesame") && m.contains("`Poster`")),
        "{err:?}"
    );
    assert_eq!(host.0.calls.borrow().len(), calls, "WeChat was not called");
    assert_eq!(service::quota(&host).unwrap().used, 1, "no quota taken");
}

#[test]
fn a_wechat_refusal_gives_the_quota_back_and_explains_the_errcode() {
    let host = MemoryHost::authorized();
    host.fail_with.set(Some(41030));
    let err = service::create(&host, &request(CodeKind::A, "pages/a", "gzh")).unwrap_err();
    match err {
        Error::Wechat(w) => {
            assert_eq!(w.errcode, 41030);
            assert!(w.meaning.contains("not published"), "{}", w.meaning);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(service::quota(&host).unwrap().used, 0);
    assert!(service::list(&host, true).unwrap().is_empty());
}

#[test]
fn rename_changes_the_name_only_and_delete_is_soft() {
    let host = MemoryHost::authorized();
    let code = service::create(&host, &request(CodeKind::A, "pages/a", "gzh")).unwrap();
    let renamed = service::rename(&host, &code.id, "  Poster, Nanjing Road  ").unwrap();
    assert_eq!(renamed.name, "Poster, Nanjing Road");
    assert_eq!(
        (
            renamed.encoding.clone(),
            renamed.utm.clone(),
            renamed.created_at_ms
        ),
        (code.encoding.clone(), code.utm.clone(), code.created_at_ms)
    );
    let deleted = service::delete(&host, &code.id).unwrap();
    assert!(deleted.deleted_at_ms.is_some());
    let again = service::delete(&host, &code.id).unwrap();
    assert_eq!(
        again.deleted_at_ms, deleted.deleted_at_ms,
        "deleting twice is fine"
    );
    let err = service::image(&host, &code.id).unwrap_err();
    assert!(
        matches!(&err, Error::Deleted(m) if m.contains("scans still count")),
        "{err:?}"
    );
    assert!(service::list(&host, false).unwrap().is_empty());
    assert_eq!(service::list(&host, true).unwrap().len(), 1);
    assert_eq!(
        service::get(&host, &code.id).unwrap().name,
        "Poster, Nanjing Road"
    );
    assert!(matches!(
        service::get(&host, "../quota"),
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        service::rename(&host, "zzzzzzzz", "x"),
        Err(Error::NotFound(_))
    ));
}

#[test]
fn a_batch_of_200_shops_with_3_bad_rows_makes_197_codes() {
    let host = MemoryHost::authorized();
    let mut csv = String::from("name,kind,page,utm_source,utm_medium,utm_campaign,params\n");
    for i in 1..=200 {
        let row = match i {
            50 => "Shop 50,D,pages/shop,poster,offline,spring,id=50".to_string(),
            100 => "Shop 100,A,/pages/shop,poster,offline,spring,id=100".to_string(),
            150 => format!(
                "Shop 150,B,pages/shop,poster,offline,spring,id={}",
                "9".repeat(30)
            ),
            _ => format!(
                "Shop {i},{},pages/shop,poster,offline,spring,id={i}",
                ["A", "B", "C"][i % 3]
            ),
        };
        csv.push_str(&row);
        csv.push('\n');
    }
    let rows = service::batch_create(&host, &csv).unwrap();
    assert_eq!(rows.len(), 200);
    let bad: Vec<(u32, String)> = rows
        .iter()
        .filter_map(|r| match &r.outcome {
            BatchOutcome::Failed(e) => Some((r.line, format!("{e:?}"))),
            BatchOutcome::Created(_) => None,
        })
        .collect();
    assert_eq!(
        bad.iter().map(|(line, _)| *line).collect::<Vec<_>>(),
        [51, 101, 151],
        "lines count the header: {bad:?}"
    );
    assert!(bad[0].1.contains("kind"), "{}", bad[0].1);
    assert!(bad[1].1.contains("page"), "{}", bad[1].1);
    assert!(bad[2].1.contains("TooLong"), "{}", bad[2].1);
    assert_eq!(service::list(&host, false).unwrap().len(), 197);
    let a_and_c = (1..=200)
        .filter(|i| ![50, 100, 150].contains(i) && i % 3 != 1)
        .count() as u32;
    assert_eq!(service::quota(&host).unwrap().used, a_and_c);
}

#[test]
fn a_batch_over_the_quota_is_refused_before_any_code_is_made() {
    let host = MemoryHost::authorized();
    host.set_quota_used(QUOTA_LIMIT - 1);
    let csv = "name,kind,page,utm_source\none,A,pages/a,x\ntwo,C,pages/a,y\n";
    let err = service::batch_create(&host, csv).unwrap_err();
    assert!(matches!(err, Error::QuotaExhausted(_)), "{err:?}");
    assert!(host.calls.borrow().is_empty());
    let err = service::batch_create(&host, "name,page\nx,pages/a\n").unwrap_err();
    assert!(
        matches!(&err, Error::InvalidField(f) if f.reason.contains("no `kind` column")),
        "{err:?}"
    );
}

/// What the mini-program receives when a code is scanned, as WeChat gives it: for A and C the
/// query of the path as written; for B `query.scene` holding the scene URL-encoded.
fn launch_query(code: &crate::bindings::promolens::codes::types::Code) -> Vec<(String, String)> {
    match code.kind {
        CodeKind::A | CodeKind::C => {
            let path = code.encoding.path.as_deref().unwrap();
            let query = path.split_once('?').map_or("", |(_, q)| q);
            query
                .split('&')
                .filter_map(|p| p.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        }
        CodeKind::B => {
            let scene = code.encoding.scene.as_deref().unwrap();
            vec![(
                "scene".to_string(),
                promolens_schemas::percent::encode_uri_component(scene),
            )]
        }
    }
}

#[test]
fn scans_decode_to_the_code_parameters_or_its_reference() {
    let host = MemoryHost::authorized();
    let mut inline = request(CodeKind::A, "pages/a", "公众号 推文");
    inline.utm.campaign = Some("双11+".into());
    let code = service::create(&host, &inline).unwrap();
    let launch = launch_query(&code);
    let a = decode_attribution(Some(1047), &launch);
    assert_eq!(a.utm.source.as_deref(), Some("公众号 推文"));
    assert_eq!(a.utm.campaign.as_deref(), Some("双11+"));
    assert_eq!(
        a.code_id.as_deref(),
        Some(code.id.as_str()),
        "its own id too"
    );

    let long = request(CodeKind::C, "pages/a", &"长".repeat(20));
    let code = service::create(&host, &long).unwrap();
    assert!(code.encoding.by_reference);
    let launch = launch_query(&code);
    let a = decode_attribution(Some(1011), &launch);
    assert_eq!(a.code_id.as_deref(), Some(code.id.as_str()));

    let mut b = request(CodeKind::B, "pages/a", "gzh");
    b.params = vec![("shop".into(), "42".into())];
    let code = service::create(&host, &b).unwrap();
    let launch = launch_query(&code);
    let a = decode_attribution(Some(1047), &launch);
    assert_eq!(a.code_id.as_deref(), Some(code.id.as_str()));
}

#[test]
fn ids_from_the_host_are_checked() {
    let host = FixedId(MemoryHost::authorized(), "../quota");
    let err = service::create(&host, &request(CodeKind::B, "pages/a", "x")).unwrap_err();
    assert!(matches!(err, Error::Host(m) if m.contains("new-id gave")));
}

#[test]
fn an_id_no_record_can_have_is_not_found_for_every_operation() {
    let host = MemoryHost::authorized();
    for id in ["1P", "ABCDEFGH", "", "a/b", "../x", "é"] {
        let not_found = |e: Error| matches!(e, Error::NotFound(m) if m.contains("no code"));
        assert!(not_found(service::get(&host, id).unwrap_err()), "get {id}");
        assert!(
            not_found(service::delete(&host, id).unwrap_err()),
            "delete {id}"
        );
        assert!(
            not_found(service::rename(&host, id, "n").unwrap_err()),
            "rename {id}"
        );
        assert!(
            not_found(service::image(&host, id).unwrap_err()),
            "image {id}"
        );
    }
}

/// The in-memory host, except that `new-id` always gives the same text.
struct FixedId(MemoryHost, &'static str);

impl Host for FixedId {
    fn wechat_call(
        &self,
        e: WechatEndpoint,
        b: &str,
    ) -> Result<crate::bindings::promolens::codes::host::CodeImage, Error> {
        self.0.wechat_call(e, b)
    }
    fn store_get(
        &self,
        k: &str,
    ) -> Result<Option<crate::bindings::promolens::codes::host::Versioned>, Error> {
        self.0.store_get(k)
    }
    fn store_put(&self, k: &str, v: &[u8], e: Option<u64>) -> Result<u64, Error> {
        self.0.store_put(k, v, e)
    }
    fn store_list(&self, p: &str) -> Result<Vec<String>, Error> {
        self.0.store_list(p)
    }
    fn store_delete(&self, k: &str) -> Result<(), Error> {
        self.0.store_delete(k)
    }
    fn now_ms(&self) -> i64 {
        0
    }
    fn new_id(&self) -> String {
        self.1.into()
    }
    fn log(&self, l: crate::bindings::promolens::codes::host::Level, m: &str) {
        self.0.log(l, m)
    }
}
