//! Real-world launches and the attribution columns they must decode to (DESIGN.md §4), plus a
//! property test: whatever UTM values a code carries, encoded the way each code kind encodes them,
//! decoding gives them back.

use promolens_schemas::percent::encode_uri_component;
use promolens_schemas::{AttributionStatus, CodeKind, decode_attribution};
use proptest::prelude::*;

struct Case {
    name: &'static str,
    scene: Option<i32>,
    query: &'static [(&'static str, &'static str)],
    /// source, medium, campaign, content, term
    utm: [Option<&'static str>; 5],
    code_id: Option<&'static str>,
    kind: Option<CodeKind>,
    status: AttributionStatus,
}

const N: Option<&str> = None;
use AttributionStatus::{BadPercentEncoding, BadUtf8, None as Nothing, Ok as Fine};
use CodeKind::{A, B, C, Link};

#[rustfmt::skip]
const CASES: &[Case] = &[
    Case { name: "explicit keys on an A code", scene: Some(1047), query: &[("utm_source", "gzh"), ("utm_campaign", "1111")], utm: [Some("gzh"), N, Some("1111"), N, N], code_id: N, kind: Some(A), status: Fine },
    Case { name: "Chinese value, percent-encoded", scene: Some(1047), query: &[("utm_source", "%E5%85%AC%E4%BC%97%E5%8F%B7")], utm: [Some("公众号"), N, N, N, N], code_id: N, kind: Some(A), status: Fine },
    Case { name: "Chinese value, raw", scene: Some(1048), query: &[("utm_source", "公众号")], utm: [Some("公众号"), N, N, N, N], code_id: N, kind: Some(A), status: Fine },
    Case { name: "plus stays plus (decodeURIComponent)", scene: Some(1047), query: &[("utm_source", "a"), ("utm_campaign", "a+b")], utm: [Some("a"), N, Some("a+b"), N, N], code_id: N, kind: Some(A), status: Fine },
    Case { name: "%20 is a space", scene: Some(1047), query: &[("utm_source", "a%20b")], utm: [Some("a b"), N, N, N, N], code_id: N, kind: Some(A), status: Fine },
    Case { name: "%2B is a plus", scene: Some(1047), query: &[("utm_source", "c%2B%2B")], utm: [Some("c++"), N, N, N, N], code_id: N, kind: Some(A), status: Fine },
    Case { name: "case is kept", scene: Some(1047), query: &[("utm_source", "GZH"), ("utm_medium", "Menu")], utm: [Some("GZH"), Some("Menu"), N, N, N], code_id: N, kind: Some(A), status: Fine },
    Case { name: "whitespace is kept", scene: Some(1047), query: &[("utm_source", " gzh ")], utm: [Some(" gzh "), N, N, N, N], code_id: N, kind: Some(A), status: Fine },
    Case { name: "empty value is null", scene: Some(1047), query: &[("utm_source", "")], utm: [N, N, N, N, N], code_id: N, kind: Some(A), status: Nothing },
    Case { name: "no parameters, not a code scene", scene: Some(1001), query: &[], utm: [N, N, N, N, N], code_id: N, kind: None, status: Nothing },
    Case { name: "A code without parameters", scene: Some(1047), query: &[("from", "menu")], utm: [N, N, N, N, N], code_id: N, kind: Some(A), status: Nothing },
    Case { name: "B scene, encoded once by WeChat", scene: Some(1047), query: &[("scene", "utm_source%3Dgzh%26utm_medium%3Dmenu")], utm: [Some("gzh"), Some("menu"), N, N, N], code_id: N, kind: Some(B), status: Fine },
    Case { name: "B scene carrying a code reference", scene: Some(1047), query: &[("scene", "c%3Dab12cd")], utm: [N, N, N, N, N], code_id: Some("ab12cd"), kind: Some(B), status: Fine },
    Case { name: "B scene of exactly 32 characters", scene: Some(1047), query: &[("scene", "c%3Dab12cd%26utm_source%3Dpartner_xyz1")], utm: [Some("partner_xyz1"), N, N, N, N], code_id: Some("ab12cd"), kind: Some(B), status: Fine },
    Case { name: "B scene not encoded (developer tools)", scene: Some(1047), query: &[("scene", "utm_source=gzh")], utm: [Some("gzh"), N, N, N, N], code_id: N, kind: Some(B), status: Fine },
    Case { name: "B scene double-encoded", scene: Some(1047), query: &[("scene", "utm_source%253Dgzh%2526utm_campaign%253Dx")], utm: [Some("gzh"), N, Some("x"), N, N], code_id: N, kind: Some(B), status: Fine },
    Case { name: "B scene with an encoded value inside", scene: Some(1047), query: &[("scene", "utm_source%3D%25E5%2585%25AC")], utm: [Some("公"), N, N, N, N], code_id: N, kind: Some(B), status: Fine },
    Case { name: "B scene that is a bare id", scene: Some(1047), query: &[("scene", "ab12")], utm: [N, N, N, N, N], code_id: N, kind: Some(B), status: Nothing },
    Case { name: "B scene from the album", scene: Some(1049), query: &[("scene", "utm_source%3Dposter")], utm: [Some("poster"), N, N, N, N], code_id: N, kind: Some(B), status: Fine },
    Case { name: "explicit beats scene, scene fills the rest", scene: Some(1047), query: &[("utm_source", "explicit"), ("scene", "utm_source%3Dscene%26utm_medium%3Dm")], utm: [Some("explicit"), Some("m"), N, N, N], code_id: N, kind: Some(B), status: Fine },
    Case { name: "empty explicit value is filled from scene", scene: Some(1047), query: &[("utm_source", ""), ("scene", "utm_source%3Dscene")], utm: [Some("scene"), N, N, N, N], code_id: N, kind: Some(B), status: Fine },
    Case { name: "first of duplicate keys in a scene wins", scene: Some(1047), query: &[("scene", "utm_source%3Da%26utm_source%3Db")], utm: [Some("a"), N, N, N, N], code_id: N, kind: Some(B), status: Fine },
    Case { name: "empty pairs in a scene are skipped", scene: Some(1047), query: &[("scene", "%26%26utm_source%3Da%26")], utm: [Some("a"), N, N, N, N], code_id: N, kind: Some(B), status: Fine },
    Case { name: "link QR code", scene: Some(1011), query: &[("q", "https%3A%2F%2Fexample.com%2Fp%3Futm_source%3Dposter%26utm_campaign%3Dspring"), ("scancode_time", "1763942400")], utm: [Some("poster"), N, Some("spring"), N, N], code_id: N, kind: Some(Link), status: Fine },
    Case { name: "link with a fragment", scene: Some(1011), query: &[("q", "https%3A%2F%2Fexample.com%2Fp%3Futm_source%3Dposter%23utm_medium%3Dfake")], utm: [Some("poster"), N, N, N, N], code_id: N, kind: Some(Link), status: Fine },
    Case { name: "link query is form-encoded: plus is a space", scene: Some(1012), query: &[("q", "https%3A%2F%2Fe.com%2F%3Futm_campaign%3Ddouble%2Beleven%26utm_source%3Dx")], utm: [Some("x"), N, Some("double eleven"), N, N], code_id: N, kind: Some(Link), status: Fine },
    Case { name: "link with a Chinese value", scene: Some(1011), query: &[("q", "https%3A%2F%2Fe.com%2F%3Futm_source%3D%25E6%25B5%25B7%25E6%258A%25A5")], utm: [Some("海报"), N, N, N, N], code_id: N, kind: Some(Link), status: Fine },
    Case { name: "link without a query", scene: Some(1011), query: &[("q", "https%3A%2F%2Fe.com%2Fp")], utm: [N, N, N, N, N], code_id: N, kind: Some(Link), status: Nothing },
    Case { name: "link with a code reference", scene: Some(1013), query: &[("q", "https%3A%2F%2Fe.com%2Fp%3Fc%3Dxyz")], utm: [N, N, N, N, N], code_id: Some("xyz"), kind: Some(Link), status: Fine },
    Case { name: "link value with an equals sign", scene: Some(1011), query: &[("q", "https%3A%2F%2Fe.com%2F%3Futm_source%3Ds%26utm_term%3Da%3Db")], utm: [Some("s"), N, N, N, Some("a=b")], code_id: N, kind: Some(Link), status: Fine },
    Case { name: "explicit beats link, link fills the rest", scene: Some(1011), query: &[("utm_source", "explicit"), ("q", "https%3A%2F%2Fe.com%2F%3Futm_source%3Dlink%26utm_campaign%3Dc")], utm: [Some("explicit"), N, Some("c"), N, N], code_id: N, kind: Some(Link), status: Fine },
    Case { name: "scene beats link", scene: Some(1047), query: &[("scene", "utm_source%3Dscene"), ("q", "https%3A%2F%2Fe.com%2F%3Futm_source%3Dlink%26utm_content%3Dk")], utm: [Some("scene"), N, N, Some("k"), N], code_id: N, kind: Some(B), status: Fine },
    Case { name: "C code with explicit keys", scene: Some(1011), query: &[("utm_source", "shop")], utm: [Some("shop"), N, N, N, N], code_id: N, kind: Some(C), status: Fine },
    Case { name: "C code, long-press", scene: Some(1012), query: &[("utm_source", "shop")], utm: [Some("shop"), N, N, N, N], code_id: N, kind: Some(C), status: Fine },
    Case { name: "C code, from the album", scene: Some(1013), query: &[], utm: [N, N, N, N, N], code_id: N, kind: Some(C), status: Nothing },
    Case { name: "bad escape keeps the raw text", scene: Some(1047), query: &[("utm_source", "50%off")], utm: [Some("50%off"), N, N, N, N], code_id: N, kind: Some(A), status: BadPercentEncoding },
    Case { name: "invalid UTF-8 keeps the raw text", scene: Some(1047), query: &[("utm_source", "%E5%85")], utm: [Some("%E5%85"), N, N, N, N], code_id: N, kind: Some(A), status: BadUtf8 },
    Case { name: "bad escape inside a scene value", scene: Some(1047), query: &[("scene", "utm_source=a%ZZ&utm_medium=m")], utm: [Some("a%ZZ"), Some("m"), N, N, N], code_id: N, kind: Some(B), status: BadPercentEncoding },
    Case { name: "undecodable link is kept, nothing parsed", scene: Some(1011), query: &[("q", "%E0%A4%A")], utm: [N, N, N, N, N], code_id: N, kind: Some(Link), status: BadPercentEncoding },
    Case { name: "garbage keys are ignored", scene: Some(1047), query: &[("", "x"), ("utm_source ", "y"), ("utm", "z")], utm: [N, N, N, N, N], code_id: N, kind: Some(A), status: Nothing },
    Case { name: "keys are case-sensitive", scene: Some(1047), query: &[("UTM_SOURCE", "x")], utm: [N, N, N, N, N], code_id: N, kind: Some(A), status: Nothing },
    Case { name: "explicit code reference", scene: Some(1047), query: &[("c", "k9")], utm: [N, N, N, N, N], code_id: Some("k9"), kind: Some(A), status: Fine },
    Case { name: "explicit code reference beats the scene's", scene: Some(1047), query: &[("c", "k9"), ("scene", "c%3Dother")], utm: [N, N, N, N, N], code_id: Some("k9"), kind: Some(B), status: Fine },
    Case { name: "medium without source", scene: Some(1047), query: &[("utm_medium", "m")], utm: [N, Some("m"), N, N, N], code_id: N, kind: Some(A), status: Fine },
    Case { name: "emoji", scene: Some(1047), query: &[("utm_source", "s"), ("utm_content", "%F0%9F%8E%89")], utm: [Some("s"), N, N, Some("🎉"), N], code_id: N, kind: Some(A), status: Fine },
    Case { name: "encoded ampersand inside a value", scene: Some(1047), query: &[("utm_campaign", "a%26b")], utm: [N, N, Some("a&b"), N, N], code_id: N, kind: Some(A), status: Fine },
    Case { name: "shared card (not a code scene) with UTM", scene: Some(1007), query: &[("utm_source", "friend")], utm: [Some("friend"), N, N, N, N], code_id: N, kind: None, status: Fine },
    Case { name: "no scene value at all", scene: None, query: &[("utm_source", "x"), ("utm_term", "t")], utm: [Some("x"), N, N, N, Some("t")], code_id: N, kind: None, status: Fine },
    Case { name: "all five fields", scene: Some(1047), query: &[("utm_source", "s"), ("utm_medium", "m"), ("utm_campaign", "c"), ("utm_content", "ct"), ("utm_term", "t")], utm: [Some("s"), Some("m"), Some("c"), Some("ct"), Some("t")], code_id: N, kind: Some(A), status: Fine },
];

#[test]
fn decodes_real_world_launches() {
    assert!(CASES.len() >= 40, "only {} cases", CASES.len());
    let mut failures = Vec::new();
    for case in CASES {
        let query: Vec<(String, String)> = case
            .query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let got = decode_attribution(case.scene, &query);
        let got_utm: Vec<Option<&str>> = got.utm.fields().iter().map(|f| f.as_deref()).collect();
        if got_utm != case.utm
            || got.code_id.as_deref() != case.code_id
            || got.code_kind != case.kind
            || got.status != case.status
        {
            failures.push(format!(
                "{}: got utm {:?} code {:?} kind {:?} status {:?}",
                case.name, got_utm, got.code_id, got.code_kind, got.status
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// Encodes like `url.searchParams`: form encoding of one component.
fn form_encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

fn utm_values() -> impl Strategy<Value = [Option<String>; 5]> {
    // Any text at all, as a marketer could type it into a form.
    proptest::array::uniform5(proptest::option::of("\\PC{1,12}"))
}

/// A B code's scene holds only WeChat's allowed characters, and `&`/`=` delimit pairs.
fn scene_values() -> impl Strategy<Value = [Option<String>; 5]> {
    proptest::array::uniform5(proptest::option::of("[0-9a-zA-Z!#$'()*+,/:;?@._~-]{1,4}"))
}

const KEYS: [&str; 5] = promolens_schemas::attribution::UTM_KEYS;

fn decoded(scene: i32, query: Vec<(String, String)>) -> (AttributionStatus, [Option<String>; 5]) {
    let got = decode_attribution(Some(scene), &query);
    (
        got.status,
        got.utm.fields().map(|f| f.as_deref().map(str::to_string)),
    )
}

fn ok_if_any(values: &[Option<String>; 5]) -> AttributionStatus {
    if values.iter().any(|v| v.is_some()) {
        AttributionStatus::Ok
    } else {
        AttributionStatus::None
    }
}

proptest! {
    #[test]
    fn a_and_c_codes_round_trip(values in utm_values()) {
        // The path `page?utm_source=<encodeURIComponent(v)>&…`: WeChat hands the query over as is.
        let query: Vec<(String, String)> = KEYS.iter().zip(&values)
            .filter_map(|(k, v)| v.as_ref().map(|v| (k.to_string(), encode_uri_component(v))))
            .collect();
        prop_assert_eq!(decoded(1047, query.clone()), (ok_if_any(&values), values.clone()));
        prop_assert_eq!(decoded(1011, query), (ok_if_any(&values), values));
    }

    #[test]
    fn b_codes_round_trip(values in scene_values()) {
        let scene: Vec<String> = KEYS.iter().zip(&values)
            .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
            .collect();
        // WeChat URL-encodes the scene before handing it to the mini-program.
        let query = vec![("scene".to_string(), encode_uri_component(&scene.join("&")))];
        prop_assert_eq!(decoded(1047, query), (ok_if_any(&values), values));
    }

    #[test]
    fn link_qr_codes_round_trip(values in utm_values(), fragment in proptest::option::of("[a-z=&]{0,8}")) {
        let params: Vec<String> = KEYS.iter().zip(&values)
            .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", form_encode(v))))
            .collect();
        let mut link = format!("https://example.com/landing?{}", params.join("&"));
        if let Some(f) = fragment {
            link.push('#');
            link.push_str(&f);
        }
        let query = vec![("q".to_string(), encode_uri_component(&link))];
        prop_assert_eq!(decoded(1011, query), (ok_if_any(&values), values));
    }
}

proptest! {
    /// A code made before codes carried their id is found again from its scans: the scan's page
    /// and query, in any order, encoded as in the path or already decoded, give the key of the
    /// code's path; another value gives another key.
    #[test]
    fn a_scan_gives_the_scan_key_of_the_code_it_came_from(
        values in utm_values(),
        extra in proptest::option::of("\\PC{1,8}"),
        reversed in any::<bool>(),
        other in "\\PC{1,6}",
    ) {
        use promolens_schemas::attribution::{path_scan_key, scan_key};
        let mut pairs: Vec<(String, String)> = KEYS.iter().zip(&values)
            .filter_map(|(k, v)| v.as_ref().map(|v| (k.to_string(), v.clone())))
            .collect();
        if let Some(extra) = extra {
            pairs.insert(0, ("id".to_string(), extra));
        }
        let encoded: Vec<String> = pairs.iter()
            .map(|(k, v)| format!("{k}={}", encode_uri_component(v)))
            .collect();
        let mut path = "pages/shop/index".to_string();
        if !encoded.is_empty() {
            path = format!("{path}?{}", encoded.join("&"));
        }
        let code_key = path_scan_key(&path);
        let mut launch: Vec<(String, String)> = pairs.iter()
            .map(|(k, v)| (k.clone(), encode_uri_component(v)))
            .collect();
        if reversed {
            launch.reverse();
        }
        let as_received = launch.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        prop_assert_eq!(&scan_key("pages/shop/index", as_received.clone()), &code_key);
        prop_assert_eq!(&scan_key("/pages/shop/index", as_received), &code_key);
        let plain = pairs.iter().filter(|(_, v)| !v.contains('%'))
            .map(|(k, v)| (k.as_str(), v.as_str()));
        if pairs.iter().all(|(_, v)| !v.contains('%')) {
            prop_assert_eq!(&scan_key("pages/shop/index", plain), &code_key);
        }
        let mut changed = launch.clone();
        changed.push(("utm_extra".to_string(), encode_uri_component(&other)));
        let changed = changed.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        prop_assert_ne!(&scan_key("pages/shop/index", changed), &code_key);
        prop_assert_ne!(&path_scan_key(&path.replace("pages/shop", "pages/shop2")), &code_key);
    }
}

/// A project's settings: aliases in order of preference, and normalisation of `utm_source`.
fn project_attributor() -> promolens_schemas::Attributor {
    let names = |list: &[&str]| list.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    promolens_schemas::Attributor::new(
        3,
        [
            names(&["utm_source", "src", "_um_channel", "gio_utm_source"]),
            names(&["utm_medium"]),
            names(&["utm_campaign", "mtm_campaign"]),
            names(&["utm_content", "chan_id"]),
            names(&[]),
        ],
        [
            Some(promolens_schemas::Normalizer::new(
                true,
                true,
                [("微信", "wechat"), (" WeiXin", "wechat")].map(|(a, b)| (a.into(), b.into())),
            )),
            None,
            None,
            None,
            None,
        ],
    )
}

#[test]
fn aliases_fill_fields_in_order_of_preference() {
    let attributor = project_attributor();
    let decode = |scene: i32, query: &[(&str, &str)]| {
        let got = attributor.decode(Some(scene), query);
        let utm = got.utm.fields().map(|f| f.as_deref().map(str::to_string));
        (utm, got.code_id.map(|c| c.into_owned()), got.status)
    };
    let s = |v: &str| Some(v.to_string());
    // The preferred name wins wherever it stands in the query.
    let (utm, _, status) = decode(1047, &[("src", "alias"), ("utm_source", "std")]);
    assert_eq!((utm[0].clone(), status), (s("std"), AttributionStatus::Ok));
    let (utm, ..) = decode(
        1047,
        &[("gio_utm_source", "third"), ("_um_channel", "second")],
    );
    assert_eq!(utm[0], s("second"));
    // Aliases are read inside a B code's scene and a link too; an explicit key still beats them.
    let (utm, ..) = decode(1047, &[("scene", "src%3Dposter%26mtm_campaign%3D1111")]);
    assert_eq!((utm[0].clone(), utm[2].clone()), (s("poster"), s("1111")));
    let (utm, ..) = decode(1011, &[("q", "https%3A%2F%2Fe.com%2F%3Fchan_id%3DK9")]);
    assert_eq!(utm[3], s("K9"));
    let (utm, ..) = decode(
        1047,
        &[("src", "explicit"), ("scene", "utm_source%3Dscene")],
    );
    assert_eq!(utm[0], s("explicit"));
    // A field with no names is never filled, not even by its own utm key.
    let (utm, _, status) = decode(1047, &[("utm_term", "t")]);
    assert_eq!((utm[4].clone(), status), (None, AttributionStatus::None));
    // Spellings merge after trimming and lower-casing; code ids keep their case.
    for raw in [" WeChat ", "wechat", "微信", "WEIXIN", "%E5%BE%AE%E4%BF%A1"] {
        let (utm, ..) = decode(1047, &[("utm_source", raw)]);
        assert_eq!(utm[0], s("wechat"), "{raw}");
    }
    let (utm, code, _) = decode(1047, &[("utm_source", "Poster"), ("c", "AbC9")]);
    assert_eq!((utm[0].clone(), code), (s("poster"), s("AbC9")));
    // Nothing left after trimming is no value.
    let (utm, _, status) = decode(1047, &[("utm_source", "%20%20")]);
    assert_eq!((utm[0].clone(), status), (None, AttributionStatus::None));
    assert_eq!(attributor.version(), 3);
}
