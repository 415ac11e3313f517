//! The activity log and usage API against the real server binary: bad filters are 400s, only
//! management keys may read them, an empty log reads as empty, and the usage totals equal what the
//! backend's answers reported, streamed and not.

mod common;

use common::{Options, TestServer, INFERENCE_KEY};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const READY: Duration = Duration::from_secs(15);

fn error_of(body: &Value) -> &str {
    body["error"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn bad_filters_are_refused_with_400_and_say_why() {
    let server = TestServer::start(Options::fake()).await;
    let activity = [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=ten", "limit"),
        ("route=chat", "route"),
        ("status=99", "status"),
        ("status=600", "status"),
        ("status=ok", "status"),
        ("since=yesterday", "RFC 3339"),
        ("until=2030-02-30T00:00:00Z", "RFC 3339"),
        ("cursor=abc", "cursor"),
        ("cursor=5_0", "cursor"),
        ("instance=bad%20name", "name"),
        ("colour=blue", "colour"),
    ];
    for (query, says) in activity {
        let (code, body) = server.activity(query).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert!(error_of(&body).contains(says), "{query}: {body}");
    }
    let usage = [
        ("group_by=model", "model"),
        ("group_by=key,hour", "hour"),
        ("since=soon", "RFC 3339"),
        ("key=abc", "key"),
    ];
    for (query, says) in usage {
        let (code, body) = server.usage(query).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert!(error_of(&body).contains(says), "{query}: {body}");
    }
}

#[tokio::test]
async fn only_management_keys_may_read_activity_and_usage() {
    let server = TestServer::start(Options::fake()).await;
    let (stored, _) = server
        .new_key(json!({"name": "app", "kind": "inference"}))
        .await;
    for path in ["/api/v1/activity", "/api/v1/usage"] {
        for key in [INFERENCE_KEY, stored.as_str()] {
            let (code, body) = server.call_as(Some(key), Method::GET, path, None).await;
            assert_eq!(code, StatusCode::FORBIDDEN, "{path}: {body}");
        }
        let (code, _) = server.call_as(None, Method::GET, path, None).await;
        assert_eq!(code, StatusCode::UNAUTHORIZED, "{path}");
    }
}

#[tokio::test]
async fn an_empty_log_gives_an_empty_page_and_zero_totals() {
    let server = TestServer::start(Options::fake()).await;

    let (code, page) = server.activity("").await;
    assert_eq!(code, StatusCode::OK, "{page}");
    assert_eq!(page, json!({"records": [], "next_cursor": null}));

    let (code, usage) = server.usage("").await;
    assert_eq!(code, StatusCode::OK, "{usage}");
    assert_eq!(usage["groups"], json!([]));
    assert_eq!(
        usage["total"],
        json!({"requests": 0, "errors": 0, "prompt_tokens": 0, "completion_tokens": 0})
    );
    assert_eq!(usage["group_by"], json!(["key", "instance", "day"]));
    // The default range is the 30 days up to now.
    let time = |field: &str| {
        chrono::DateTime::parse_from_rfc3339(usage[field].as_str().unwrap())
            .unwrap()
            .timestamp_millis()
    };
    assert_eq!(time("until") - time("since"), 30 * 86_400_000);

    let (code, usage) = server
        .usage("since=2030-01-01T00:00:00Z&until=1893542400&group_by=")
        .await;
    assert_eq!(code, StatusCode::OK, "{usage}");
    assert_eq!(usage["since"], "2030-01-01T00:00:00.000Z");
    assert_eq!(usage["until"], "2030-01-02T00:00:00.000Z");
    assert_eq!(usage["group_by"], json!([]));

    // A range that ends before it starts holds nothing.
    let (code, usage) = server.usage("since=2000&until=1000").await;
    assert_eq!(code, StatusCode::OK, "{usage}");
    assert_eq!(usage["total"]["requests"], 0);
}

/// Prompt and completion tokens as an answer reported them: a plain answer's `usage`, or the
/// `usage` of a stream's last event.
fn reported_tokens(answer: &Value, streamed: bool) -> (i64, i64) {
    let usage = if streamed {
        let text = answer.as_str().expect("a stream is text");
        let last = text
            .lines()
            .filter_map(|line| line.strip_prefix("data: "))
            .filter_map(|data| serde_json::from_str::<Value>(data).ok())
            .find(|event| event.get("usage").is_some())
            .expect("a stream ends with its usage");
        last["usage"].clone()
    } else {
        answer["usage"].clone()
    };
    (
        usage["prompt_tokens"].as_i64().unwrap(),
        usage["completion_tokens"].as_i64().unwrap(),
    )
}

#[tokio::test]
async fn usage_totals_equal_the_sum_of_the_requests_made_streamed_and_not() {
    let server = TestServer::start(Options::fake()).await;
    let (stored, stored_id) = server
        .new_key(json!({"name": "app", "kind": "inference"}))
        .await;
    for name in ["u1", "u2"] {
        let (code, body) = server.create(name, json!({"model": "/m.gguf"})).await;
        assert_eq!(code, StatusCode::CREATED, "{body}");
        server.wait_status(name, "running", READY).await;
    }

    // (key name, instance) → (requests, prompt, completion), from what the answers said.
    let mut expected: BTreeMap<(String, String), (i64, i64, i64)> = BTreeMap::new();
    let mut streamed_count = 0;
    for i in 0..8 {
        let (key, key_name) = if i % 3 == 0 {
            (stored.as_str(), "app")
        } else {
            (INFERENCE_KEY, "config-inference-key")
        };
        let instance = if i % 2 == 0 { "u1" } else { "u2" };
        let streamed = i % 4 < 2;
        let words = vec!["word"; i + 1].join(" ");
        let body = json!({
            "model": instance, "stream": streamed, "max_tokens": i + 2, "fake_chunk_delay": 0.0,
            "messages": [{"role": "user", "content": words}]
        });
        let (code, answer) = server
            .post_raw(
                Some(key),
                "/v1/chat/completions",
                &[],
                serde_json::to_vec(&body).unwrap(),
            )
            .await;
        assert_eq!(code, StatusCode::OK, "{answer}");
        let (prompt, completion) = reported_tokens(&answer, streamed);
        let sums = expected
            .entry((key_name.to_string(), instance.to_string()))
            .or_default();
        *sums = (sums.0 + 1, sums.1 + prompt, sums.2 + completion);
        streamed_count += usize::from(streamed);
    }
    let requests: i64 = expected.values().map(|s| s.0).sum();
    let prompt: i64 = expected.values().map(|s| s.1).sum();
    let completion: i64 = expected.values().map(|s| s.2).sum();

    // A record is handed over as its answer ends, which may be just after the client read it.
    let deadline = Instant::now() + READY;
    let usage = loop {
        let (code, usage) = server.usage("group_by=key,instance").await;
        assert_eq!(code, StatusCode::OK, "{usage}");
        if usage["total"]["requests"] == json!(requests) {
            break usage;
        }
        assert!(
            Instant::now() < deadline,
            "not every request in the usage: {usage}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        usage["total"],
        json!({"requests": requests, "errors": 0, "prompt_tokens": prompt,
               "completion_tokens": completion})
    );
    let mut groups: BTreeMap<(String, String), (i64, i64, i64)> = BTreeMap::new();
    for group in usage["groups"].as_array().unwrap() {
        let key = &group["key"];
        let name = key["name"].as_str().unwrap().to_string();
        match name.as_str() {
            "app" => assert_eq!(key["id"], stored_id.as_str()),
            _ => assert_eq!(key["id"], Value::Null, "{group}"),
        }
        assert!(group.get("day").is_none(), "not grouped by day: {group}");
        let instance = group["instance"].as_str().unwrap().to_string();
        let sums = (
            group["requests"].as_i64().unwrap(),
            group["prompt_tokens"].as_i64().unwrap(),
            group["completion_tokens"].as_i64().unwrap(),
        );
        groups.insert((name, instance), sums);
    }
    assert_eq!(groups, expected);

    let (code, page) = server.activity("route=chat_completions&limit=1000").await;
    assert_eq!(code, StatusCode::OK, "{page}");
    let records = page["records"].as_array().unwrap();
    assert_eq!(records.len() as i64, requests, "{page}");
    let sum = |field: &str| -> i64 { records.iter().map(|r| r[field].as_i64().unwrap()).sum() };
    assert_eq!(
        (sum("prompt_tokens"), sum("completion_tokens")),
        (prompt, completion)
    );
    let streamed = records.iter().filter(|r| r["streamed"] == true).count();
    assert_eq!(streamed, streamed_count);
    for record in records {
        assert_eq!(record["status"], 200, "{record}");
        assert_eq!(record["client_addr"], "127.0.0.1", "{record}");
        assert!(record["ttfb_ms"].as_i64().unwrap() <= record["duration_ms"].as_i64().unwrap());
    }
    let (code, page) = server.activity(&format!("key={stored_id}")).await;
    assert_eq!(code, StatusCode::OK, "{page}");
    let by_key = page["records"].as_array().unwrap();
    assert_eq!(
        by_key.len(),
        3,
        "requests 0, 3 and 6 used the stored key: {page}"
    );
    assert!(by_key.iter().all(|r| r["key_name"] == "app"));
}
