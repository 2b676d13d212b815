//! Saved analyses (`promolens analyses …`, `/v1/projects/{p}/analyses`): the two a project
//! starts with, create / show / list / rename / update / delete, versions and conflicts, a run
//! by id giving what `analyses:run` gives for the same spec (with a "past 7 days" evaluated
//! against the day it runs), the CLI's run the same as HTTP's, and the `saved_analyses` table.

use promolens_tests::{Server, http_client, promolens, stdout_of};
use serde_json::{Value, json};

/// Launches of 40 users over the three weeks before 2025-11-24, one a day per user at most.
fn events() -> String {
    let mut out = String::new();
    for day in 0..21i64 {
        for user in 0..40 {
            if (user * 7 + day * 3) % 5 == 0 {
                continue;
            }
            let source = ["gzh", "shop", "poster"][(user % 3) as usize];
            let ts = 1_762_099_200_000 + day * 86_400_000 + user * 60_000;
            out.push_str(
                &json!({"event_id": format!("e{day}-{user}"), "user_id": format!("u{user}"), "ts": ts,
                        "scene": 1047, "query": {"utm_source": source}})
                .to_string(),
            );
            out.push('\n');
        }
    }
    out
}

#[test]
fn saved_analyses_are_versioned_and_run_like_their_spec() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let keys = promolens_tests::provision(data, "shop");
    let raw = dir.path().join("events.ndjson");
    std::fs::write(&raw, events()).unwrap();
    promolens_tests::backfill(data, "shop", &raw, &[]);
    let server = Server::start(data, &[], &[]);
    let client = http_client();
    let url = |path: &str| format!("{}/v1/projects/shop/analyses{path}", server.url);
    let call = |method: reqwest::Method, path: &str, body: Option<Value>, key: &str| {
        let mut request = client.request(method, url(path)).bearer_auth(key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().unwrap();
        let status = response.status().as_u16();
        let text = response.text().unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    };
    use reqwest::Method;

    // A new project starts with the code list's analysis and the headline.
    let (status, list) = call(Method::GET, "", None, &keys.analyst);
    assert_eq!(status, 200);
    let mut ids: Vec<&str> = list["analyses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, ["acquisition-past-7-days", "codes-past-7-days"]);

    // The headline: one row of totals, past 7 days against the day it runs. Run on two days,
    // it covers two windows, each what `analyses:run` answers for the same spec that day.
    for now in ["2025-11-20T12:00:00%2B08:00", "2025-11-21T12:00:00%2B08:00"] {
        let (status, by_id) = call(
            Method::POST,
            &format!("/acquisition-past-7-days/run?now={now}"),
            None,
            &keys.analyst,
        );
        assert_eq!(status, 200, "{by_id}");
        assert_eq!(by_id["saved_analysis"]["version"], 1);
        let spec = &by_id["spec"];
        let direct: Value = client
            .post(format!(
                "{}/v1/projects/shop/analyses:run?now={now}",
                server.url
            ))
            .bearer_auth(&keys.analyst)
            .json(spec)
            .send()
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(by_id["rows"], direct["rows"]);
        assert_eq!(by_id["window"], direct["window"]);
        assert_eq!(
            by_id["rows"].as_array().unwrap().len(),
            1,
            "one row of totals"
        );
        // The launches of the window, counted from the raw file.
        let (from, to) = (
            by_id["window"]["from"].as_str().unwrap().to_string(),
            by_id["window"]["to"].as_str().unwrap().to_string(),
        );
        let day_of = |ts: i64| {
            chrono::DateTime::from_timestamp_millis(ts)
                .unwrap()
                .with_timezone(&chrono_tz::Asia::Shanghai)
                .date_naive()
                .to_string()
        };
        let launches = events()
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["ts"]
                    .as_i64()
                    .unwrap()
            })
            .filter(|&ts| (from.clone()..=to.clone()).contains(&day_of(ts)))
            .count();
        assert_eq!(by_id["rows"][0]["launches"], launches);
    }

    // Create, then rename: version 2; the first version stays readable.
    let spec = json!({"metrics": ["new_users", "users"], "dimensions": ["utm_source"],
                      "range": {"from": "2025-11-03", "to": "2025-11-16"}});
    let (status, created) = call(
        Method::POST,
        "",
        Some(json!({"name": "By source", "spec": spec})),
        &keys.marketer,
    );
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["version"], 1);
    let (status, renamed) = call(
        Method::PATCH,
        &format!("/{id}"),
        Some(json!({"name": "Sources, two weeks", "version": 1})),
        &keys.analyst,
    );
    assert_eq!(status, 200, "{renamed}");
    assert_eq!(renamed["version"], 2);
    assert_eq!(renamed["spec"], created["spec"]);
    // A change made from version 1 again is refused: someone changed it since.
    let (status, conflict) = call(
        Method::PATCH,
        &format!("/{id}"),
        Some(json!({"spec": {"dimensions": ["day"]}, "version": 1})),
        &keys.analyst,
    );
    assert_eq!(status, 409, "{conflict}");
    assert!(
        conflict["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at version 2, not 1")
    );
    let (_, first) = call(
        Method::GET,
        &format!("/{id}?version=1"),
        None,
        &keys.analyst,
    );
    assert_eq!(first["name"], "By source");
    // A bad spec is refused before it is saved, naming its part.
    let (status, refused) = call(
        Method::PATCH,
        &format!("/{id}"),
        Some(json!({"spec": {"dimensions": ["utm_foo"]}})),
        &keys.analyst,
    );
    assert_eq!(status, 400);
    assert_eq!(refused["error"]["field"], "dimensions");

    // Run by id over HTTP and by the CLI: the same rows.
    let (_, over_http) = call(Method::POST, &format!("/{id}/run"), None, &keys.analyst);
    assert_eq!(over_http["saved_analysis"]["name"], "Sources, two weeks");
    let cli: Value = serde_json::from_str(&stdout_of(&promolens(&[
        "analyses",
        "--data",
        data,
        "--project",
        "shop",
        "run",
        &id,
        "--format",
        "json",
    ])))
    .unwrap();
    assert_eq!(cli["rows"], over_http["rows"]);
    assert!(over_http["rows"].as_array().unwrap().len() >= 3);

    // The table: current versions only.
    let rows = server.sql(
        "shop",
        "SELECT id, name, version FROM saved_analyses ORDER BY id",
    );
    let table: Vec<(String, String, i64)> = rows
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_string(),
                r["name"].as_str().unwrap().to_string(),
                r["version"].as_i64().unwrap(),
            )
        })
        .collect();
    assert!(table.contains(&(id.clone(), "Sources, two weeks".to_string(), 2)));
    assert_eq!(table.len(), 3);

    // Delete: gone from the list and the table; its versions stay.
    let (status, _) = call(Method::DELETE, &format!("/{id}"), None, &keys.marketer);
    assert_eq!(status, 204);
    let (status, _) = call(Method::GET, &format!("/{id}"), None, &keys.analyst);
    assert_eq!(status, 404);
    let (status, _) = call(
        Method::GET,
        &format!("/{id}?version=2"),
        None,
        &keys.analyst,
    );
    assert_eq!(status, 200);
    assert_eq!(server.sql("shop", "SELECT id FROM saved_analyses").len(), 2);
    // A group given by SQL runs the caller's SQL: an analyst's key may, a marketer's may not.
    let sql_group = json!({"dimensions": ["utm_source"], "range": {"from": "2025-11-03", "to": "2025-11-16"},
                           "group": {"kind": "sql", "predicate": "event = 'purchase'"}});
    for (key, status) in [(&keys.analyst, 200), (&keys.marketer, 403)] {
        let response = client
            .post(format!("{}/v1/projects/shop/analyses:run", server.url))
            .bearer_auth(key)
            .json(&sql_group)
            .send()
            .unwrap();
        assert_eq!(response.status().as_u16(), status);
    }
    // An ingest key reaches none of it.
    let (status, _) = call(Method::GET, "", None, &keys.ingest);
    assert_eq!(status, 403);
}
