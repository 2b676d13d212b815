//! `promolens codes …` against `promolens standin`, as an operator runs them.

use promolens_tests::promolens_with_env;

const KEY: &str = "0f0e0d0c0b0a09080706050403020100000102030405060708090a0b0c0d0e0f";

#[test]
fn an_operator_authorizes_creates_downloads_and_deletes_codes() {
    let (mut standin, url) = promolens_tests::standin(&["--quota", "2"]);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    promolens_tests::ensure_project(data, "shop");
    let cache = dir.path().join("cache");
    let env = [
        ("PROMOLENS_WECHAT_URL", url.as_str()),
        ("PROMOLENS_SECRET_KEY", KEY),
        ("PROMOLENS_COMPONENT_CACHE", cache.to_str().unwrap()),
        ("RUST_LOG", "warn"),
    ];
    let codes = |args: &[&str]| {
        let mut all = vec!["codes", "--data", data, "--project", "shop"];
        all.extend_from_slice(args);
        let out = promolens_with_env(&all, &env);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    // A project that does not exist is refused, saying how to make it.
    let out = promolens_with_env(
        &["codes", "--data", data, "--project", "nowhere", "list"],
        &env,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("promolens projects create nowhere"),
        "{err}"
    );

    let (ok, _, err) = codes(&["create", "--name", "x", "--kind", "A", "--page", "pages/a"]);
    assert!(!ok && err.contains("authorize"), "{err}");
    let (ok, _, err) = codes(&[
        "authorize",
        "--app-id",
        "wx0123456789abcdef",
        "--secret",
        "wrong",
    ]);
    assert!(
        !ok && err.contains("40125"),
        "wrong credentials are refused: {err}"
    );
    let (ok, out, err) = codes(&[
        "authorize",
        "--app-id",
        "wx0123456789abcdef",
        "--secret",
        "demo-secret",
    ]);
    assert!(ok, "{err}");
    assert!(
        out.contains("authorized for mini-program wx0123456789abcdef"),
        "{out}"
    );

    let (ok, out, err) = codes(&[
        "create",
        "--name",
        "Poster",
        "--kind",
        "A",
        "--page",
        "pages/index/index",
        "--utm-source",
        "poster",
        "--param",
        "shop=42",
    ]);
    assert!(ok, "{err}");
    assert!(
        out.contains("pages/index/index?shop=42&utm_source=poster"),
        "{out}"
    );
    let id = out.split_whitespace().nth(1).unwrap().to_string();
    let png = dir.path().join("code.png");
    let (ok, _, err) = codes(&["download", &id, "--out", png.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(std::fs::read(&png).unwrap().starts_with(b"\x89PNG"));

    let (ok, out, _) = codes(&["preview", "--name", "p", "--kind", "B", "--page", "pages/a"]);
    assert!(ok);
    let preview: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(preview["encoding"]["limit"], 32);

    assert!(codes(&["rename", &id, "Poster, Nanjing Road"]).0);
    assert!(codes(&["delete", &id]).0);
    let (ok, _, err) = codes(&["download", &id]);
    assert!(!ok && err.contains("was deleted"), "{err}");
    let (_, out, _) = codes(&["list", "--all"]);
    assert!(
        out.contains("deleted") && out.contains("Poster, Nanjing Road"),
        "{out}"
    );

    // The stand-in's quota is 2 A/C codes: the second works, the third is WeChat's 45029, which
    // exhausts the quota here too.
    let csv = dir.path().join("shops.csv");
    std::fs::write(&csv, "name,kind,page,utm_source\nShop 1,C,pages/s,poster\nShop 2,C,pages/s,poster\nShop 3,B,pages/s,poster\n").unwrap();
    let (ok, out, err) = codes(&["batch", csv.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(
        out.contains("45029") && out.contains("2 created, 1 failed"),
        "{out}"
    );
    let (_, out, _) = codes(&["list"]);
    assert!(
        out.contains("100000 of 100000 used, 0 left: exhausted"),
        "{out}"
    );
    // Each change is in the audit log, as the operator's.
    let audit = promolens_tests::stdout_of(&promolens_tests::promolens(&[
        "sql",
        "--data",
        data,
        "--format",
        "csv",
        "SELECT action, key_id, count(*) AS n FROM audit_log WHERE project = 'shop' GROUP BY 1, 2 ORDER BY 1",
    ]));
    assert_eq!(
        audit.lines().collect::<Vec<_>>(),
        [
            "action,key_id,n",
            "authorization.set,operator,1",
            "code.create,operator,1",
            "code.delete,operator,1",
            "code.rename,operator,1",
            "codes.batch,operator,1",
            "project.create,operator,1",
        ],
        "{audit}"
    );

    let _ = standin.kill();
    let _ = standin.wait();
}
