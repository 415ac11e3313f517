//! Requests wait their turn (issue 13): at `max_running_instances` a request for a stopped instance
//! waits for a busy one to drain instead of a 409, swaps are batched, and an instance's
//! `max_concurrent` queue serves by key priority, bounded by `max_queue` and `queue_timeout`, on
//! `/v1` and through the instance proxy alike (whose reads never wait).
//! Against the real server binary and the stand-in backend; order is read from what the backend
//! logged, never from timings.

mod common;

use common::{eventually_async, Options, TestServer, ADMIN_KEY, INFERENCE_KEY};
use prometheus_parse::{Sample, Scrape, Value as Metric};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

const READY: Duration = Duration::from_secs(30);

async fn create(server: &TestServer, name: &str, body: Value) {
    server.create_running(name, body, READY).await;
}

/// A chat request to `model` as `key`, tagged so the backend logs it, slowed by `delay` seconds.
async fn chat(
    server: &TestServer,
    key: &str,
    model: &str,
    tag: &str,
    delay: f64,
) -> (StatusCode, Value) {
    let body = json!({"model": model, "messages": [{"role": "user", "content": "hi"}],
                      "fake_tag": tag, "fake_delay": delay});
    server
        .call_as(Some(key), Method::POST, "/v1/chat/completions", Some(body))
        .await
}

fn spawn_chat(
    server: &Arc<TestServer>,
    key: &str,
    model: &str,
    tag: &str,
    delay: f64,
) -> tokio::task::JoinHandle<(StatusCode, Value)> {
    let (server, key, model, tag) = (
        server.clone(),
        key.to_string(),
        model.to_string(),
        tag.to_string(),
    );
    tokio::spawn(async move { chat(&server, &key, &model, &tag, delay).await })
}

/// A file the stand-in backend waits for before it answers a request that names it
/// (`fake_hold_file`): the test ends such a request when it chooses, not when a clock does.
struct Gate(tempfile::TempDir);

impl Gate {
    fn new() -> Gate {
        Gate(tempfile::tempdir().expect("temp dir"))
    }

    fn path(&self) -> String {
        self.0.path().join("open").to_string_lossy().into_owned()
    }

    /// Lets every request held by this gate be answered.
    fn open(&self) {
        std::fs::write(self.path(), b"").expect("open the gate");
    }
}

/// A native `POST /completion` through the instance proxy to `instance` as `key`, tagged so the
/// backend logs it, answered once the file `hold` (a [`Gate`]'s) exists, if one is given.
async fn proxied(
    server: &TestServer,
    key: &str,
    instance: &str,
    tag: &str,
    hold: Option<String>,
) -> (StatusCode, Value) {
    let mut body = json!({"prompt": "hi", "fake_tag": tag});
    if let Some(hold) = hold {
        body["fake_hold_file"] = json!(hold);
    }
    let path = format!("/api/v1/instances/{instance}/proxy/completion");
    server
        .call_as(Some(key), Method::POST, &path, Some(body))
        .await
}

fn spawn_proxied(
    server: &Arc<TestServer>,
    key: &str,
    instance: &str,
    tag: &str,
    gate: Option<&Gate>,
) -> tokio::task::JoinHandle<(StatusCode, Value)> {
    let (server, key, instance, tag) = (
        server.clone(),
        key.to_string(),
        instance.to_string(),
        tag.to_string(),
    );
    let hold = gate.map(Gate::path);
    tokio::spawn(async move { proxied(&server, &key, &instance, &tag, hold).await })
}

/// A chat request to `model` as the inference key, tagged, answered once `gate` opens.
fn spawn_held_chat(
    server: &Arc<TestServer>,
    model: &str,
    tag: &str,
    gate: &Gate,
) -> tokio::task::JoinHandle<(StatusCode, Value)> {
    let server = server.clone();
    let body = json!({"model": model, "messages": [{"role": "user", "content": "hi"}],
                      "fake_tag": tag, "fake_hold_file": gate.path()});
    tokio::spawn(async move {
        server
            .call_as(
                Some(INFERENCE_KEY),
                Method::POST,
                "/v1/chat/completions",
                Some(body),
            )
            .await
    })
}

async fn scrape(server: &TestServer) -> Vec<Sample> {
    let resp = reqwest::Client::new()
        .get(format!("{}/metrics", server.base))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .expect("scrape");
    assert_eq!(resp.status(), StatusCode::OK);
    let text = resp.text().await.expect("body");
    let lines = text.lines().map(|l| Ok(l.to_string()));
    Scrape::parse(lines)
        .unwrap_or_else(|e| panic!("unparsable exposition: {e}\n{text}"))
        .samples
}

/// The sample `metric` with `labels`; 0 when there is none (a histogram: its count).
fn value(samples: &[Sample], metric: &str, labels: &[(&str, &str)]) -> f64 {
    let found = samples
        .iter()
        .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)));
    match found.map(|s| &s.value) {
        None => 0.0,
        Some(Metric::Counter(v) | Metric::Gauge(v) | Metric::Untyped(v)) => *v,
        Some(Metric::Histogram(buckets)) => buckets.last().map_or(0.0, |b| b.count),
        Some(other) => panic!("{metric}: unexpected {other:?}"),
    }
}

async fn queue_length(server: &TestServer, instance: &str) -> f64 {
    let samples = scrape(server).await;
    value(
        &samples,
        "llamactl_instance_queue_length",
        &[("instance", instance)],
    )
}

/// How many requests for `instance` its queue refused for `reason`, as `/metrics` counts them.
async fn queue_refusals(server: &TestServer, instance: &str, reason: &str) -> f64 {
    let samples = scrape(server).await;
    value(
        &samples,
        "llamactl_instance_queue_refusals_total",
        &[("instance", instance), ("reason", reason)],
    )
}

/// Checks that `resp` is the answer of a full queue: 503, a `Retry-After` of at least a second,
/// and an error that names `max_queue`.
async fn assert_queue_full(resp: reqwest::Response) {
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let retry_after: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    let body: Value = resp.json().await.unwrap();
    assert!(error_of(&body).contains("max_queue"), "{body}");
}

/// Instance `q` with one place, and two inference keys for it, of low and of high priority.
async fn one_place_and_keys_of_low_and_high_priority(server: &TestServer) -> (String, String) {
    create(
        server,
        "q",
        json!({"model": "/q.gguf", "max_concurrent": 1}),
    )
    .await;
    let (low, _) = server
        .new_key(json!({"name": "batch", "kind": "inference", "priority": "low"}))
        .await;
    let (high, _) = server
        .new_key(json!({"name": "chat", "kind": "inference", "priority": "high"}))
        .await;
    (low, high)
}

/// Polls until `instance`'s queue holds `n` requests.
async fn wait_queued(server: &TestServer, instance: &str, n: f64) {
    eventually_async(&format!("{n} waiting for {instance}"), READY, || async {
        queue_length(server, instance).await == n
    })
    .await;
}

/// Polls until the backend of `instance` logged `serving <tag>`.
async fn wait_served(server: &TestServer, instance: &str, tag: &str) {
    eventually_async(&format!("{instance} serving {tag}"), READY, || async {
        served(server, instance).await.iter().any(|t| t == tag)
    })
    .await;
}

/// The tags the backend of `instance` logged, in the order it began serving them.
async fn served(server: &TestServer, instance: &str) -> Vec<String> {
    let (_, log) = server.logs(instance, None).await;
    log.as_str()
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.strip_prefix("serving "))
        .map(str::to_string)
        .collect()
}

/// What the backend of `instance` logged about tagged `POST`s, in order: `serving <tag>` as it
/// began one, `answered` as it began sending an answer (after the request's delay).
async fn backend_log(server: &TestServer, instance: &str) -> Vec<String> {
    let (_, log) = server.logs(instance, None).await;
    log.as_str()
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            if l.starts_with("serving ") {
                Some(l.to_string())
            } else if l.starts_with("request: \"POST ") {
                Some("answered".to_string())
            } else {
                None
            }
        })
        .collect()
}

fn error_of(body: &Value) -> &str {
    body["error"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn sixteen_requests_alternating_between_two_models_in_one_slot_are_all_answered() {
    let opts = Options::fake().with_yaml("instances:\n  max_running_instances: 1\n");
    let server = Arc::new(TestServer::start(opts).await);
    create(&server, "a", json!({"model": "/a.gguf"})).await;
    // Creating b at the limit evicts the idle a: b is loaded, a dormant.
    create(&server, "b", json!({"model": "/b.gguf"})).await;

    // b is held busy, so that all 16 arrive before any swap can happen: the storm is then the
    // same however slowly the machine sends it.
    let blocker = spawn_chat(&server, INFERENCE_KEY, "b", "blocker", 300.0);
    wait_served(&server, "b", "blocker").await;
    let requests: Vec<_> = (0..16)
        .map(|i| {
            let model = if i % 2 == 0 { "a" } else { "b" };
            spawn_chat(&server, INFERENCE_KEY, model, &format!("r{i}"), 0.2)
        })
        .collect();
    // Every request for a waits: one for b to drain, the rest for their turn.
    wait_queued(&server, "a", 8.0).await;
    // The blocker's client leaves: b drains and the storm runs.
    blocker.abort();
    for (i, request) in requests.into_iter().enumerate() {
        let (code, answer) = request.await.unwrap();
        if code != StatusCode::OK {
            let (_, page) = server.history("limit=1000").await;
            panic!("request {i}: {code} {answer}; history: {page}");
        }
    }

    // Each model's requests were batched: a handful of swaps, not one per request.
    let samples = scrape(&server).await;
    let swaps: f64 = ["a", "b"]
        .iter()
        .map(|i| {
            value(
                &samples,
                "llamactl_instance_swaps_total",
                &[("instance", i)],
            )
        })
        .sum();
    let (_, page) = server.history("limit=1000").await;
    let evictions = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "evicted")
        .count();
    // To a with its 8, then back to b with those that waited for it (a third only if one of
    // b's requests was counted on b just before a's request began draining it). Only the one to
    // a if every request for b reached b before a's began draining it: b, busy but not limited,
    // answers them beside the blocker, and none is left to swap back for.
    assert!(
        (1.0..=3.0).contains(&swaps),
        "{swaps} swaps for 16 requests"
    );
    // One eviction was the create's, before the storm.
    assert!(evictions <= 5, "{evictions} evictions: {page}");
    assert_eq!(queue_length(&server, "a").await, 0.0);
    assert_eq!(queue_length(&server, "b").await, 0.0);
}

#[tokio::test]
async fn a_low_priority_key_waits_behind_high_priority_ones() {
    let server = Arc::new(TestServer::start(Options::fake()).await);
    let (low, high) = one_place_and_keys_of_low_and_high_priority(&server).await;

    let gate = Gate::new();
    let blocker = spawn_held_chat(&server, "q", "blocker", &gate);
    wait_served(&server, "q", "blocker").await;
    // The low one comes first, then two high ones: each known to wait before the next is sent.
    let mut waiting = vec![spawn_chat(&server, &low, "q", "low", 0.0)];
    wait_queued(&server, "q", 1.0).await;
    for (n, tag) in ["high-1", "high-2"].iter().enumerate() {
        waiting.push(spawn_chat(&server, &high, "q", tag, 0.0));
        wait_queued(&server, "q", n as f64 + 2.0).await;
    }

    gate.open();
    assert_eq!(blocker.await.unwrap().0, StatusCode::OK);
    for w in waiting {
        let (code, answer) = w.await.unwrap();
        assert_eq!(code, StatusCode::OK, "{answer}");
    }
    assert_eq!(
        served(&server, "q").await,
        ["blocker", "high-1", "high-2", "low"],
        "the order the backend began serving"
    );
    let samples = scrape(&server).await;
    assert_eq!(
        value(
            &samples,
            "llamactl_instance_queue_wait_seconds",
            &[("instance", "q")]
        ),
        3.0,
        "three requests waited"
    );
}

#[tokio::test]
async fn a_full_queue_answers_503_with_retry_after() {
    let server = Arc::new(TestServer::start(Options::fake()).await);
    let body = json!({"model": "/q.gguf", "max_concurrent": 1, "max_queue": 1});
    create(&server, "q", body).await;
    let gate = Gate::new();
    let blocker = spawn_held_chat(&server, "q", "blocker", &gate);
    wait_served(&server, "q", "blocker").await;
    let queued = spawn_chat(&server, INFERENCE_KEY, "q", "queued", 0.0);
    wait_queued(&server, "q", 1.0).await;

    let resp = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", server.base))
        .bearer_auth(INFERENCE_KEY)
        .json(&json!({"model": "q", "messages": []}))
        .send()
        .await
        .unwrap();

    assert_queue_full(resp).await;
    gate.open();
    assert_eq!(blocker.await.unwrap().0, StatusCode::OK);
    assert_eq!(queued.await.unwrap().0, StatusCode::OK);
    assert_eq!(queue_refusals(&server, "q", "full").await, 1.0);
}

#[tokio::test]
async fn a_proxied_inference_request_waits_for_the_one_place_then_is_answered() {
    let server = Arc::new(TestServer::start(Options::fake()).await);
    create(
        &server,
        "q",
        json!({"model": "/q.gguf", "max_concurrent": 1}),
    )
    .await;
    let gate = Gate::new();
    let first = spawn_proxied(&server, INFERENCE_KEY, "q", "first", Some(&gate));
    wait_served(&server, "q", "first").await;

    let second = spawn_proxied(&server, INFERENCE_KEY, "q", "second", None);
    // It waits in the instance's queue, counted as /v1's waiters are, while the first is held.
    wait_queued(&server, "q", 1.0).await;
    assert_eq!(served(&server, "q").await, ["first"]);
    gate.open();

    let (code, answer) = first.await.unwrap();
    assert_eq!(code, StatusCode::OK, "{answer}");
    let (code, answer) = second.await.unwrap();
    assert_eq!(code, StatusCode::OK, "{answer}");
    // The backend began the second only after it had answered the first: no overlap.
    assert_eq!(
        backend_log(&server, "q").await,
        ["serving first", "answered", "serving second", "answered"]
    );
    let samples = scrape(&server).await;
    assert_eq!(
        value(
            &samples,
            "llamactl_instance_queue_wait_seconds",
            &[("instance", "q")]
        ),
        1.0,
        "one request waited"
    );
    assert_eq!(queue_length(&server, "q").await, 0.0);
}

#[tokio::test]
async fn a_full_queue_answers_503_through_the_proxy_too() {
    let server = Arc::new(TestServer::start(Options::fake()).await);
    let body = json!({"model": "/q.gguf", "max_concurrent": 1, "max_queue": 1});
    create(&server, "q", body).await;
    let gate = Gate::new();
    let blocker = spawn_proxied(&server, INFERENCE_KEY, "q", "blocker", Some(&gate));
    wait_served(&server, "q", "blocker").await;
    let queued = spawn_proxied(&server, INFERENCE_KEY, "q", "queued", None);
    wait_queued(&server, "q", 1.0).await;

    let resp = reqwest::Client::new()
        .post(format!(
            "{}/api/v1/instances/q/proxy/completion",
            server.base
        ))
        .bearer_auth(INFERENCE_KEY)
        .json(&json!({"prompt": "hi", "fake_tag": "refused"}))
        .send()
        .await
        .unwrap();

    assert_queue_full(resp).await;
    gate.open();
    assert_eq!(blocker.await.unwrap().0, StatusCode::OK);
    assert_eq!(queued.await.unwrap().0, StatusCode::OK);
    assert_eq!(served(&server, "q").await, ["blocker", "queued"]);
    assert_eq!(queue_refusals(&server, "q", "full").await, 1.0);
}

#[tokio::test]
async fn a_health_check_through_the_proxy_does_not_queue_behind_inference() {
    let server = Arc::new(TestServer::start(Options::fake()).await);
    // No waiting room: a request that joined the queue would be refused at once.
    let body = json!({"model": "/q.gguf", "max_concurrent": 1, "max_queue": 0});
    create(&server, "q", body).await;
    let gate = Gate::new();
    let blocker = spawn_proxied(&server, INFERENCE_KEY, "q", "blocker", Some(&gate));
    wait_served(&server, "q", "blocker").await;
    let (code, answer) = proxied(&server, INFERENCE_KEY, "q", "refused", None).await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{answer}");

    let (code, answer) = server
        .call_as(
            Some(INFERENCE_KEY),
            Method::GET,
            "/api/v1/instances/q/proxy/health",
            None,
        )
        .await;

    assert_eq!(code, StatusCode::OK, "{answer}");
    assert_eq!(answer["status"], "ok");
    gate.open();
    assert_eq!(blocker.await.unwrap().0, StatusCode::OK);
    assert_eq!(
        queue_refusals(&server, "q", "full").await,
        1.0,
        "only the inference request was refused"
    );
}

#[tokio::test]
async fn proxied_requests_wait_by_key_priority() {
    let server = Arc::new(TestServer::start(Options::fake()).await);
    let (low, high) = one_place_and_keys_of_low_and_high_priority(&server).await;
    let gate = Gate::new();
    let blocker = spawn_proxied(&server, INFERENCE_KEY, "q", "blocker", Some(&gate));
    wait_served(&server, "q", "blocker").await;
    // The low one comes first, then a high one: each known to wait before the next is sent.
    let low = spawn_proxied(&server, &low, "q", "low", None);
    wait_queued(&server, "q", 1.0).await;
    let high = spawn_proxied(&server, &high, "q", "high", None);
    wait_queued(&server, "q", 2.0).await;

    gate.open();

    for request in [blocker, low, high] {
        let (code, answer) = request.await.unwrap();
        assert_eq!(code, StatusCode::OK, "{answer}");
    }
    assert_eq!(
        served(&server, "q").await,
        ["blocker", "high", "low"],
        "the order the backend began serving"
    );
}

#[tokio::test]
async fn v1_and_proxy_requests_share_the_same_places() {
    let server = Arc::new(TestServer::start(Options::fake()).await);
    create(
        &server,
        "q",
        json!({"model": "/q.gguf", "max_concurrent": 1}),
    )
    .await;
    let gate = Gate::new();
    let on_v1 = spawn_held_chat(&server, "q", "v1", &gate);
    wait_served(&server, "q", "v1").await;

    let on_proxy = spawn_proxied(&server, INFERENCE_KEY, "q", "proxy", None);
    wait_queued(&server, "q", 1.0).await;
    assert_eq!(served(&server, "q").await, ["v1"]);
    gate.open();

    assert_eq!(on_v1.await.unwrap().0, StatusCode::OK);
    let (code, answer) = on_proxy.await.unwrap();
    assert_eq!(code, StatusCode::OK, "{answer}");
    // The backend began the proxied request only after it had answered the /v1 one.
    assert_eq!(
        backend_log(&server, "q").await,
        ["serving v1", "answered", "serving proxy", "answered"]
    );
}

#[tokio::test]
async fn a_request_that_waits_past_queue_timeout_gets_503() {
    let server = Arc::new(TestServer::start(Options::fake()).await);
    let body = json!({"model": "/q.gguf", "max_concurrent": 1, "queue_timeout": 1});
    create(&server, "q", body).await;
    // The blocker holds the only place until the waiter has given up.
    let gate = Gate::new();
    let blocker = spawn_held_chat(&server, "q", "blocker", &gate);
    wait_served(&server, "q", "blocker").await;

    let (code, answer) = chat(&server, INFERENCE_KEY, "q", "late", 0.0).await;

    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    assert!(error_of(&answer).contains("queue_timeout"), "{answer}");
    assert!(!served(&server, "q").await.contains(&"late".to_string()));
    gate.open();
    assert_eq!(blocker.await.unwrap().0, StatusCode::OK);
    assert_eq!(queue_refusals(&server, "q", "timeout").await, 1.0);
}

#[tokio::test]
async fn a_waiter_that_disconnects_frees_its_place() {
    let server = Arc::new(TestServer::start(Options::fake()).await);
    let body = json!({"model": "/q.gguf", "max_concurrent": 1, "max_queue": 1});
    create(&server, "q", body).await;
    let gate = Gate::new();
    let blocker = spawn_held_chat(&server, "q", "blocker", &gate);
    wait_served(&server, "q", "blocker").await;

    // A client that gives up while it waits: its request is dropped with its connection.
    let gone = {
        let base = server.base.clone();
        tokio::spawn(async move {
            reqwest::Client::new()
                .post(format!("{base}/v1/chat/completions"))
                .bearer_auth(INFERENCE_KEY)
                .json(&json!({"model": "q", "messages": [], "fake_tag": "gone"}))
                .send()
                .await
        })
    };
    wait_queued(&server, "q", 1.0).await;
    gone.abort();
    wait_queued(&server, "q", 0.0).await;

    // Its place is free again: the next one waits (the queue holds one) and is answered.
    let next = spawn_chat(&server, INFERENCE_KEY, "q", "next", 0.0);
    wait_queued(&server, "q", 1.0).await;
    gate.open();
    let (code, answer) = next.await.unwrap();
    assert_eq!(code, StatusCode::OK, "{answer}");
    assert_eq!(blocker.await.unwrap().0, StatusCode::OK);
    assert!(!served(&server, "q").await.contains(&"gone".to_string()));
}

#[tokio::test]
async fn without_eviction_a_request_at_the_limit_is_409() {
    let opts = Options::fake()
        .with_yaml("instances:\n  max_running_instances: 1\n  enable_lru_eviction: false\n");
    let server = TestServer::start(opts).await;
    let cold = json!({"model": "/c.gguf", "on_demand_after_stop": true});
    create(&server, "cold", cold).await;
    server.op("cold", "stop").await;
    server.wait_status("cold", "stopped", READY).await;
    create(&server, "idle", json!({"model": "/i.gguf"})).await;

    let (code, answer) = chat(&server, INFERENCE_KEY, "cold", "cold", 0.0).await;

    assert_eq!(code, StatusCode::CONFLICT, "{answer}");
    assert_eq!(queue_refusals(&server, "cold", "eviction_off").await, 1.0);
}

#[tokio::test]
async fn a_slot_not_freed_within_the_start_timeout_is_409() {
    let opts = Options::fake()
        .with_yaml("instances:\n  max_running_instances: 1\n  on_demand_start_timeout: 1\n");
    let server = Arc::new(TestServer::start(opts).await);
    create(
        &server,
        "cold",
        json!({"model": "/c.gguf", "on_demand_after_stop": true}),
    )
    .await;
    server.op("cold", "stop").await;
    server.wait_status("cold", "stopped", READY).await;
    create(&server, "busy", json!({"model": "/b.gguf"})).await;
    let gate = Gate::new();
    let blocker = spawn_held_chat(&server, "busy", "blocker", &gate);
    wait_served(&server, "busy", "blocker").await;

    let (code, answer) = chat(&server, INFERENCE_KEY, "cold", "cold", 0.0).await;

    assert_eq!(code, StatusCode::CONFLICT, "{answer}");
    assert!(
        error_of(&answer).contains("on_demand_start_timeout"),
        "{answer}"
    );
    gate.open();
    assert_eq!(blocker.await.unwrap().0, StatusCode::OK);
    // The drain ended with the wait: the busy instance takes requests again.
    let (code, _) = chat(&server, INFERENCE_KEY, "busy", "after", 0.0).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(queue_refusals(&server, "cold", "no_room").await, 1.0);
}

#[tokio::test]
async fn queue_fields_are_validated_shown_and_kept() {
    let server = TestServer::start(Options::fake()).await;
    for bad in [
        json!({"model": "/m", "max_concurrent": 0}),
        json!({"model": "/m", "max_concurrent": -1}),
        json!({"model": "/m", "max_queue": "x"}),
        json!({"model": "/m", "queue_timeout": 0}),
        json!({"model": "/m", "queue_timeout": 1.5}),
    ] {
        let (code, body) = server.create("bad", bad.clone()).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert!(body["error"].is_string(), "{body}");
    }
    let fields = json!({"max_concurrent": 2, "max_queue": 5, "queue_timeout": 30});
    let mut body = json!({"model": "/m.gguf"});
    body.as_object_mut()
        .unwrap()
        .extend(fields.as_object().unwrap().clone());
    create(&server, "m", body).await;

    let shown = |v: &Value| {
        json!({"max_concurrent": v["options"]["max_concurrent"], "max_queue": v["options"]["max_queue"],
               "queue_timeout": v["options"]["queue_timeout"]})
    };
    assert_eq!(shown(&server.get("m").await.1), fields);
    let server = server.restart().await;
    assert_eq!(shown(&server.get("m").await.1), fields);
}
