//! The OpenAI-compatible API against the real server binary with the stand-in backend: routing,
//! errors, streaming, on-demand starts, the running limit with LRU eviction, idle stops, and
//! upstream connection reuse.

mod common;

use common::{Options, TestServer, INFERENCE_KEY};
use futures_util::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::Duration;

const READY: Duration = Duration::from_secs(15);

/// Creates an instance and waits until it runs.
async fn running(server: &TestServer, name: &str, body: Value) {
    let (code, created) = server.create(name, body).await;
    assert_eq!(code, StatusCode::CREATED, "{created}");
    server.wait_status(name, "running", READY).await;
}

/// Creates an instance that requests may start again after an operator's stop, waits until it
/// runs, then stops it.
async fn stopped(server: &TestServer, name: &str, mut body: Value) {
    body["on_demand_after_stop"] = json!(true);
    running(server, name, body).await;
    server.op(name, "stop").await;
    server.wait_status(name, "stopped", READY).await;
}

fn error_of(body: &Value) -> &str {
    body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error body in {body}"))
}

fn count(history: &[common::HistoryEntry], event: &str) -> usize {
    history.iter().filter(|h| h.event == event).count()
}

#[tokio::test]
async fn models_lists_every_instance_in_openai_format() {
    let server = TestServer::start(Options::fake()).await;
    running(&server, "alpha", json!({"model": "/a.gguf"})).await;
    stopped(&server, "beta", json!({"model": "/b.gguf"})).await;

    let (code, list) = server
        .call_as(Some(INFERENCE_KEY), Method::GET, "/v1/models", None)
        .await;

    assert_eq!(code, StatusCode::OK, "{list}");
    assert_eq!(list["object"], "list");
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["alpha", "beta"], "stopped instances are listed too");
    for model in list["data"].as_array().unwrap() {
        assert_eq!(model["object"], "model");
        assert_eq!(model["owned_by"], "llamactl");
        assert!(model["created"].as_i64().unwrap() > 1_700_000_000);
    }
    let (code, body) = server.call_as(None, Method::GET, "/v1/models", None).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED, "{body}");
}

#[tokio::test]
async fn requests_are_routed_by_model_and_forwarded_byte_for_byte() {
    let server = TestServer::start(Options::fake()).await;
    running(&server, "m", json!({"model": "/m.gguf"})).await;
    // Odd spacing, key order and an escape: re-serialising would change any of them.
    let body =
        "{ \"zeta\": 1,\n  \"model\":\"m\", \"text\": \"caf\\u00e9\", \"alpha\": [1.50, 2] }";

    let (code, echo) = server
        .post_raw(
            Some(INFERENCE_KEY),
            "/v1/echo?q=1",
            &[
                ("x-api-key", "also-secret"),
                ("x-custom", "kept"),
                ("connection", "x-hop"),
                ("x-hop", "dropped"),
            ],
            body.as_bytes().to_vec(),
        )
        .await;

    assert_eq!(code, StatusCode::OK, "{echo}");
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["path"], "/v1/echo?q=1");
    assert_eq!(echo["body"], body, "the body arrives unchanged");
    let headers = echo["headers"].as_object().unwrap();
    assert_eq!(headers["x-custom"], "kept");
    for gone in ["authorization", "x-api-key", "x-hop"] {
        assert!(!headers.contains_key(gone), "{gone} forwarded: {headers:?}");
    }
}

#[tokio::test]
async fn bad_requests_are_clear_errors() {
    let opts = Options::fake();
    let server = TestServer::start(opts).await;
    running(&server, "m", json!({"model": "/m.gguf"})).await;
    let cases: &[(&str, Option<&str>, &[u8], StatusCode)] = &[
        (
            "/v1/chat/completions",
            Some(INFERENCE_KEY),
            b"{not json",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/v1/chat/completions",
            Some(INFERENCE_KEY),
            b"[\"m\"]",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/v1/chat/completions",
            Some(INFERENCE_KEY),
            b"{\"messages\": []}",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/v1/completions",
            Some(INFERENCE_KEY),
            b"{\"model\": 3}",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/v1/embeddings",
            Some(INFERENCE_KEY),
            b"{\"model\": \"nope\"}",
            StatusCode::NOT_FOUND,
        ),
        (
            "/v1/chat/completions",
            None,
            b"{\"model\": \"m\"}",
            StatusCode::UNAUTHORIZED,
        ),
        (
            "/v1/chat/completions",
            Some("wrong"),
            b"{\"model\": \"m\"}",
            StatusCode::UNAUTHORIZED,
        ),
    ];
    for (path, key, body, want) in cases {
        let (code, answer) = server.post_raw(*key, path, &[], body.to_vec()).await;
        assert_eq!(
            code,
            *want,
            "{path} {}: {answer}",
            String::from_utf8_lossy(body)
        );
        assert!(!error_of(&answer).is_empty());
    }

    let (code, answer) = server.chat("nope", json!({})).await;
    assert!(
        error_of(&answer).contains("model 'nope' not found"),
        "{code} {answer}"
    );

    let (code, answer) = server
        .call_as(
            Some(INFERENCE_KEY),
            Method::GET,
            "/v1/chat/completions",
            None,
        )
        .await;
    assert_eq!(code, StatusCode::METHOD_NOT_ALLOWED, "{answer}");
    error_of(&answer);

    // Last: the server answers before reading the rest and closes that connection, which the
    // client's pool may only notice on its next request.
    let mut huge = b"{\"model\": \"m\", \"image\": \"".to_vec();
    huge.resize(33 * 1024 * 1024, b'A');
    huge.extend_from_slice(b"\"}");
    let (code, answer) = server
        .post_raw(Some(INFERENCE_KEY), "/v1/chat/completions", &[], huge)
        .await;
    assert_eq!(code, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
    error_of(&answer);
}

#[tokio::test]
async fn large_bodies_under_the_limit_are_forwarded() {
    let server = TestServer::start(Options::fake()).await;
    running(&server, "m", json!({"model": "/m.gguf"})).await;
    let image = "A".repeat(8 * 1024 * 1024);
    let body = json!({"model": "m", "image": image}).to_string();

    let (code, echo) = server
        .post_raw(
            Some(INFERENCE_KEY),
            "/v1/echo",
            &[],
            body.clone().into_bytes(),
        )
        .await;

    assert_eq!(code, StatusCode::OK);
    assert_eq!(echo["body"].as_str().map(str::len), Some(body.len()));
}

#[tokio::test]
async fn not_running_without_on_demand_is_503() {
    let server = TestServer::start(Options::fake()).await;
    stopped(
        &server,
        "manual",
        json!({"model": "/m.gguf", "on_demand_start": false}),
    )
    .await;

    let (code, answer) = server.chat("manual", json!({})).await;

    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    assert!(error_of(&answer).contains("on-demand start is disabled"));
    assert_eq!(server.status("manual").await, "stopped", "nothing started");
}

#[tokio::test]
async fn answers_stream_back_chunk_by_chunk() {
    let server = TestServer::start(Options::fake()).await;
    running(&server, "m", json!({"model": "/m.gguf"})).await;

    let resp = server.chat_stream("m", 4, 0.3).await;

    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let (pieces, text) = common::read_stream(resp).await;
    assert_eq!(
        text.matches("data: ").count(),
        6,
        "4 tokens, the usage event and [DONE]: {text}"
    );
    assert!(text.ends_with("data: [DONE]\n\n"));
    // 300 ms apart upstream: a proxy that buffered would deliver them as one.
    assert!(pieces >= 4, "arrived in {pieces} piece(s)");
}

#[tokio::test]
async fn concurrent_cold_requests_share_one_start() {
    let server = TestServer::start(Options::fake()).await;
    stopped(
        &server,
        "cold",
        json!({"model": "/m.gguf", "fake_ready_delay_ms": 800}),
    )
    .await;
    let before = server.instance_history("cold").await;

    let requests = (0..8).map(|_| server.chat("cold", json!({})));
    let answers = futures_util::future::join_all(requests).await;

    for (code, answer) in &answers {
        assert_eq!(*code, StatusCode::OK, "{answer}");
        assert_eq!(answer["object"], "chat.completion");
    }
    let after = server.instance_history("cold").await;
    let new = &after[before.len()..];
    assert_eq!(count(new, "start_requested"), 1, "{new:#?}");
    assert_eq!(count(new, "ready"), 1, "{new:#?}");
    let start = new.iter().find(|h| h.event == "start_requested").unwrap();
    assert_eq!(start.actor, "config-inference-key", "who started it");
    assert!(start.detail.contains("on demand"), "{start:?}");
    let range = server.port_range();
    assert_eq!(common::backends_in_range("fake_llama", range).len(), 1);
}

#[tokio::test]
async fn a_failed_on_demand_start_answers_every_waiter_with_the_reason() {
    let server = TestServer::start(Options::fake()).await;
    server
        .create(
            "broken",
            json!({"model": "/m", "fake_exit_before_ready": 7}),
        )
        .await;
    server.wait_status("broken", "failed", READY).await;

    // An operator's requests see the reason (an inference key gets a reference: security_http.rs).
    let body = json!({"model": "broken", "messages": [{"role": "user", "content": "hi"}]});
    let requests = (0..4).map(|_| {
        server.call_as(
            Some(common::ADMIN_KEY),
            Method::POST,
            "/v1/chat/completions",
            Some(body.clone()),
        )
    });
    let answers = futures_util::future::join_all(requests).await;

    for (code, answer) in &answers {
        assert_eq!(*code, StatusCode::INTERNAL_SERVER_ERROR, "{answer}");
        let reason = error_of(answer);
        assert!(reason.contains("failed to start"), "{reason}");
        assert!(reason.contains("exited with code 7"), "{reason}");
    }
}

#[tokio::test]
async fn a_cold_start_that_takes_too_long_is_503() {
    let opts = Options::fake().with_yaml("instances:\n  on_demand_start_timeout: 1\n");
    let server = TestServer::start(opts).await;
    server
        .create("slow", json!({"model": "/m", "fake_ready_delay_ms": 60000}))
        .await;

    let (code, answer) = server.chat("slow", json!({})).await;

    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    assert!(error_of(&answer).contains("did not become ready within 1 s"));
}

#[tokio::test]
async fn at_the_limit_the_least_recently_used_instance_is_evicted() {
    let opts = Options::fake().with_yaml("instances:\n  max_running_instances: 1\n");
    let server = TestServer::start(opts).await;
    stopped(&server, "a", json!({"model": "/a.gguf"})).await;
    stopped(&server, "b", json!({"model": "/b.gguf"})).await;

    assert_eq!(server.chat("a", json!({})).await.0, StatusCode::OK);
    let (code, answer) = server.chat("b", json!({})).await;

    assert_eq!(code, StatusCode::OK, "{answer}");
    assert_eq!(server.status("a").await, "stopped");
    let evicted = server.wait_event("a", "evicted", READY).await;
    assert!(evicted.detail.contains("make room for 'b'"), "{evicted:?}");
    assert!(
        evicted.detail.contains("least recently used"),
        "{evicted:?}"
    );
    assert_eq!(evicted.actor, "config-inference-key");

    // The API's start makes room the same way.
    let (code, view) = server.op("a", "start").await;
    assert_eq!(code, StatusCode::OK, "{view}");
    server.wait_status("a", "running", READY).await;
    assert_eq!(server.status("b").await, "stopped");

    // An evicted instance stays stopped across a restart of the server; it comes back on demand.
    let server = server.restart().await;
    server.wait_status("a", "running", READY).await;
    assert_eq!(server.status("b").await, "stopped");
    assert_eq!(server.chat("b", json!({})).await.0, StatusCode::OK);
}

/// A swap at the limit of one, the newcomer slow to load: the request waits and is answered, and
/// the history shows the old backend gone before the new one was started (the two never run at
/// once: the limit is about the memory of loaded models).
#[tokio::test]
async fn a_swap_stops_the_old_backend_before_it_starts_the_new_one() {
    let opts = Options::fake().with_yaml("instances:\n  max_running_instances: 1\n");
    let server = TestServer::start(opts).await;
    let slow = json!({"model": "/new.gguf", "fake_ready_delay_ms": 1500});
    stopped(&server, "new", slow).await;
    running(&server, "old", json!({"model": "/old.gguf"})).await;
    let old_pid = common::pid_of(&server.get("old").await.1);

    let (code, answer) = server.chat("new", json!({})).await;

    assert_eq!(code, StatusCode::OK, "{answer}");
    assert_eq!(server.status("new").await, "running");
    assert_eq!(server.status("old").await, "stopped");
    assert!(
        !common::process_alive(old_pid),
        "the evicted backend runs on"
    );
    // The swap's events, oldest first, from the last eviction on. The answer may come before
    // the history row of the start it waited for is stored: poll until that row is there.
    let swap_events = || async {
        let (_, page) = server.history("limit=1000").await;
        let mut swap: Vec<(String, String)> = page["events"]
            .as_array()
            .expect("events")
            .iter()
            .map(|e| {
                let field = |k: &str| e[k].as_str().unwrap_or_default().to_string();
                (field("instance"), field("event"))
            })
            .take_while(|(instance, event)| {
                (instance.as_str(), event.as_str()) != ("old", "evicted")
            })
            .collect();
        swap.reverse();
        swap
    };
    common::eventually_async(
        "the new instance's ready event",
        Duration::from_secs(30),
        || async {
            swap_events()
                .await
                .iter()
                .any(|(i, e)| i == "new" && e == "ready")
        },
    )
    .await;
    let swap = swap_events().await;
    let swap: Vec<(&str, &str)> = swap.iter().map(|(i, e)| (i.as_str(), e.as_str())).collect();
    assert_eq!(
        swap,
        [
            ("old", "stopped"),
            ("new", "start_requested"),
            ("new", "ready")
        ],
        "after 'old' was evicted"
    );
}

/// A busy instance is never stopped under a request: a request for another one waits for it to
/// finish (the API's own start, which does not wait, is refused), then takes its place.
#[tokio::test]
async fn an_instance_serving_a_request_is_not_evicted_and_the_newcomer_waits_for_it() {
    let opts = Options::fake().with_yaml("instances:\n  max_running_instances: 1\n");
    let server = std::sync::Arc::new(TestServer::start(opts).await);
    stopped(&server, "waiting", json!({"model": "/w.gguf"})).await;
    running(&server, "busy", json!({"model": "/b.gguf"})).await;

    // The first chunk is in: the request is mid-stream until the body is finished or dropped.
    let resp = server.chat_stream("busy", 400, 0.05).await;
    let mut stream = resp.bytes_stream();
    stream.next().await.expect("first chunk").expect("chunk");

    let waiter = {
        let server = server.clone();
        tokio::spawn(async move { server.chat("waiting", json!({})).await })
    };
    assert_eq!(server.op("waiting", "start").await.0, StatusCode::CONFLICT);
    assert_eq!(server.status("busy").await, "running");

    // The server learns of the hang-up on its next write to the client; then the waiter goes on.
    drop(stream);
    let (code, answer) = tokio::time::timeout(READY, waiter)
        .await
        .expect("the waiting request is answered once the busy instance is free")
        .unwrap();
    assert_eq!(code, StatusCode::OK, "{answer}");
    assert_eq!(server.status("busy").await, "stopped");
    let evicted = server.wait_event("busy", "evicted", READY).await;
    assert!(
        evicted.detail.contains("make room for 'waiting'"),
        "{evicted:?}"
    );
}

#[tokio::test]
async fn without_eviction_the_limit_is_a_409() {
    let opts = Options::fake()
        .with_yaml("instances:\n  max_running_instances: 1\n  enable_lru_eviction: false\n");
    let server = TestServer::start(opts).await;
    stopped(&server, "cold", json!({"model": "/c.gguf"})).await;
    running(&server, "idle", json!({"model": "/i.gguf"})).await;

    let (code, answer) = server.chat("cold", json!({})).await;

    assert_eq!(code, StatusCode::CONFLICT, "{answer}");
    assert!(error_of(&answer).contains("maximum number of running instances"));
    assert_eq!(server.status("idle").await, "running");
    assert_eq!(server.status("cold").await, "stopped");
}

#[tokio::test]
async fn idle_instances_are_stopped_and_come_back_on_demand() {
    let server = TestServer::start(Options::fake()).await;
    // 0.01 min = 0.6 s.
    running(
        &server,
        "idle",
        json!({"model": "/m.gguf", "idle_timeout": 0.01}),
    )
    .await;

    // A request longer than the timeout keeps it running: idleness counts from the last answer.
    let resp = server.chat_stream("idle", 30, 0.05).await;
    let mut stream = resp.bytes_stream();
    let mut text = String::new();
    let mut checked = false;
    while let Some(chunk) = stream.next().await {
        text.push_str(&String::from_utf8_lossy(&chunk.expect("chunk")));
        // 20 chunks 50 ms apart: a second in, longer than the timeout, still mid-request.
        if !checked && text.matches("data: ").count() >= 20 && !text.contains("[DONE]") {
            assert_eq!(server.status("idle").await, "running");
            checked = true;
        }
    }
    assert!(checked, "the stream arrived all at once: {text}");

    server.wait_status("idle", "stopped", READY).await;
    let stop = server.wait_event("idle", "idle_stopped", READY).await;
    assert_eq!(stop.actor, "system");
    assert!(stop.detail.contains("idle_timeout: 0.01 min"), "{stop:?}");

    let (code, answer) = server.chat("idle", json!({})).await;
    assert_eq!(code, StatusCode::OK, "{answer}");
}

#[tokio::test]
async fn a_client_that_goes_away_cancels_the_upstream_request() {
    let server = TestServer::start(Options::fake()).await;
    running(&server, "m", json!({"model": "/m.gguf"})).await;

    let resp = server.chat_stream("m", 1000, 0.02).await;
    let mut stream = resp.bytes_stream();
    stream.next().await.expect("first chunk").expect("chunk");
    drop(stream);

    let deadline = std::time::Instant::now() + READY;
    loop {
        let (_, log) = server.logs("m", None).await;
        let log = log.as_str().unwrap_or_default().to_string();
        if let Some(line) = log.lines().find(|l| l.contains("stream aborted after")) {
            let sent: usize = line
                .rsplit("after ")
                .next()
                .and_then(|s| s.split(' ').next())
                .and_then(|n| n.parse().ok())
                .unwrap();
            assert!(sent < 1000, "{line}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "backend never saw the client leave:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn upstream_connections_are_reused() {
    let server = TestServer::start(Options::fake()).await;
    running(&server, "m", json!({"model": "/m.gguf"})).await;

    let mut peers = HashSet::new();
    for _ in 0..10 {
        let (code, answer) = server.chat("m", json!({})).await;
        assert_eq!(code, StatusCode::OK, "{answer}");
        peers.insert(answer["peer"].as_u64().expect("peer port"));
    }
    for _ in 0..5 {
        let mut stream = server.chat_stream("m", 2, 0.0).await.bytes_stream();
        while stream.next().await.is_some() {}
    }
    let (_, answer) = server.chat("m", json!({})).await;
    peers.insert(answer["peer"].as_u64().expect("peer port"));

    // One pooled connection serves them all (a second may open if one is returned a moment late).
    assert!(
        peers.len() <= 2,
        "11 requests used {} connections",
        peers.len()
    );
}
