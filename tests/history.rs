//! The audit and lifecycle history against the real server binary: who did what, from where; it
//! outlives restarts and deleted instances; filters, paging, and the retention bound.

mod common;

use common::{Options, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

const READY: Duration = Duration::from_secs(15);

fn events(page: &Value) -> &Vec<Value> {
    page["events"].as_array().expect("events")
}

/// (event, actor) pairs, oldest first.
fn story(page: &Value) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = events(page)
        .iter()
        .map(|e| {
            (
                e["event"].as_str().unwrap().to_string(),
                e["actor"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    pairs.reverse();
    pairs
}

fn pair(event: &str, actor: &str) -> (String, String) {
    (event.to_string(), actor.to_string())
}

#[tokio::test]
async fn history_records_who_did_what_and_outlives_deletion_and_restarts() {
    let server = TestServer::start(Options::fake()).await;
    let (token, id) = server
        .new_key(json!({"name": "ops", "kind": "management"}))
        .await;
    let ops = Some(token.as_str());
    let (code, _) = server
        .call_as(
            ops,
            Method::POST,
            "/api/v1/instances/h",
            Some(json!({"model": "/m"})),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED);
    server.wait_status("h", "running", READY).await;
    server
        .call_as(ops, Method::POST, "/api/v1/instances/h/stop", None)
        .await;
    server.wait_status("h", "stopped", READY).await;
    let (code, _) = server
        .call_as(ops, Method::DELETE, "/api/v1/instances/h", None)
        .await;
    assert_eq!(code, StatusCode::NO_CONTENT);

    let expected = vec![
        pair("created", "ops"),
        pair("start_requested", "ops"),
        pair("ready", "system"),
        pair("stop_requested", "ops"),
        pair("stopped", "system"),
        pair("deleted", "ops"),
    ];
    let (code, page) = server
        .call(Method::GET, "/api/v1/instances/h/history", None)
        .await;
    assert_eq!(code, StatusCode::OK, "{page}");
    assert_eq!(story(&page), expected);
    let deleted = &events(&page)[0];
    assert_eq!(deleted["actor_key_id"], id.as_str());
    assert_eq!(deleted["client_addr"], "127.0.0.1");
    assert_eq!(deleted["instance"], "h");
    assert!(
        deleted["time"].as_str().unwrap().ends_with('Z'),
        "{deleted}"
    );
    let ready = events(&page)
        .iter()
        .find(|e| e["event"] == "ready")
        .unwrap();
    assert_eq!(ready["actor_key_id"], Value::Null);

    // The key's own story: its creation by the config key, then what it did.
    let (_, by_key) = server.history(&format!("key={id}")).await;
    let mut want = vec![pair("key_created", "config-management-key")];
    want.extend(expected.iter().filter(|(_, a)| a == "ops").cloned());
    assert_eq!(story(&by_key), want);

    let server = server.restart().await;
    let (code, page) = server
        .call(Method::GET, "/api/v1/instances/h/history", None)
        .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(story(&page), expected, "history changed across a restart");
    let (code, body) = server
        .call(Method::GET, "/api/v1/instances/never-existed/history", None)
        .await;
    assert_eq!(code, StatusCode::NOT_FOUND, "{body}");
    assert!(body["error"].is_string());
}

#[tokio::test]
async fn history_filters_and_pages_newest_first() {
    let server = TestServer::start(Options::fake()).await;
    for name in ["p1", "p2", "p3"] {
        let (code, _) = server.create(name, json!({"model": "/m"})).await;
        assert_eq!(code, StatusCode::CREATED);
    }
    // Once all are running no more events come, so the pages below see a still history.
    for name in ["p1", "p2", "p3"] {
        server.wait_status(name, "running", READY).await;
    }
    let (_, created) = server.history("event=created").await;
    let names: Vec<&str> = events(&created)
        .iter()
        .map(|e| e["instance"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["p3", "p2", "p1"]);
    let (_, p2) = server.history("instance=p2&event=start_requested").await;
    assert_eq!(events(&p2).len(), 1);

    // Walk every event two at a time: no repeats, nothing missed, newest first.
    let (_, all) = server.history("limit=1000").await;
    let all_ids: Vec<i64> = events(&all)
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    assert!(all_ids.windows(2).all(|w| w[0] > w[1]), "{all_ids:?}");
    let mut walked = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let query = match &cursor {
            Some(c) => format!("limit=2&cursor={c}"),
            None => "limit=2".to_string(),
        };
        let (code, page) = server.history(&query).await;
        assert_eq!(code, StatusCode::OK, "{page}");
        assert!(events(&page).len() <= 2);
        walked.extend(events(&page).iter().map(|e| e["id"].as_i64().unwrap()));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(walked, all_ids);

    // Time bounds: everything is after an old time and before a far one, nothing after the future.
    let (_, since_old) = server
        .history("since=2000-01-01T00:00:00Z&limit=1000")
        .await;
    assert_eq!(events(&since_old).len(), all_ids.len());
    let (_, until_far) = server.history("until=4102444800&limit=1000").await;
    assert_eq!(events(&until_far).len(), all_ids.len());
    let (_, future) = server.history("since=2100-01-01T00:00:00Z").await;
    assert!(events(&future).is_empty());
    assert_eq!(future["next_cursor"], Value::Null);

    for query in [
        "limit=0",
        "limit=1001",
        "limit=lots",
        "event=exploded",
        "since=yesterday",
        "until=2024-13-01T00:00:00Z",
        "cursor=abc",
        "cursor=-1",
        "instance=../etc",
        "colour=red",
    ] {
        let (code, body) = server.history(query).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert!(body["error"].is_string(), "{query}: {body}");
    }
    let (code, _) = server
        .call(
            Method::GET,
            "/api/v1/instances/p1/history?instance=p2",
            None,
        )
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn history_keeps_at_most_max_events() {
    let server = TestServer::start(Options::fake().with_yaml("history:\n  max_events: 5\n")).await;
    for name in ["r1", "r2", "r3", "r4"] {
        let (code, _) = server.create(name, json!({"model": "/m"})).await;
        assert_eq!(code, StatusCode::CREATED);
    }
    // Backends report ready in their own time; whenever we look, exactly the newest five are kept.
    let (_, page) = server.history("limit=1000").await;
    let ids: Vec<i64> = events(&page)
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids.len(), 5, "{page}");
    assert!(ids.windows(2).all(|w| w[0] == w[1] + 1), "{ids:?}");
    assert!(ids[4] > 1, "the oldest event is still there: {ids:?}");
    let (_, first) = server.history("instance=r1&event=created").await;
    assert!(events(&first).is_empty(), "{first}");
}
