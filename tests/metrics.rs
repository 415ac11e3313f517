//! `/metrics`: counters move as requests, tokens, crashes and evictions happen; who may read it;
//! the request log line. The exposition is read with a real parser (`prometheus-parse`).

mod common;

use common::{eventually_async, Options, TestServer, ADMIN_KEY, INFERENCE_KEY};
use futures_util::StreamExt;
use prometheus_parse::{Sample, Scrape, Value};
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

/// The metrics, as `key` reads them (status, and the samples if 200).
async fn scrape_as(
    server: &TestServer,
    key: Option<&str>,
    accept: Option<&str>,
) -> (StatusCode, String, Vec<Sample>) {
    let mut req = reqwest::Client::new().get(format!("{}/metrics", server.base));
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    if let Some(accept) = accept {
        req = req.header("accept", accept);
    }
    let resp = req.send().await.expect("scrape");
    let status = resp.status();
    let content_type = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let text = resp.text().await.expect("body");
    if status != StatusCode::OK {
        return (status, content_type, Vec::new());
    }
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape =
        Scrape::parse(lines).unwrap_or_else(|e| panic!("unparsable exposition: {e}\n{text}"));
    (status, content_type, scrape.samples)
}

async fn scrape(server: &TestServer) -> Vec<Sample> {
    let (status, _, samples) = scrape_as(server, Some(ADMIN_KEY), None).await;
    assert_eq!(status, StatusCode::OK);
    samples
}

/// The value of the sample named `metric` whose labels include `labels`; 0 when there is none.
fn value(samples: &[Sample], metric: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .collect();
    assert!(
        found.len() <= 1,
        "{metric} {labels:?} matches {} samples",
        found.len()
    );
    match found.first().map(|s| &s.value) {
        None => 0.0,
        Some(Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v)) => *v,
        Some(Value::Histogram(buckets)) => buckets.last().map_or(0.0, |b| b.count),
        Some(other) => panic!("{metric}: unexpected {other:?}"),
    }
}

/// Reads a streamed answer to its end.
async fn drain(resp: reqwest::Response) -> String {
    let mut body = String::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        body.push_str(&String::from_utf8_lossy(&chunk.expect("chunk")));
    }
    body
}

#[tokio::test]
async fn requests_tokens_and_starts_are_counted_per_instance_and_key() {
    let server = TestServer::start(Options::fake()).await;
    let (code, _) = server.create("m", json!({"model": "/m.gguf"})).await;
    assert_eq!(code, StatusCode::CREATED);
    // An instance exists before anything happened to it: it has a status series and no traffic.
    let before = scrape(&server).await;
    assert_eq!(
        value(
            &before,
            "llamactl_instance_status",
            &[("instance", "m"), ("status", "running")]
        ) + value(
            &before,
            "llamactl_instance_status",
            &[("instance", "m"), ("status", "starting")]
        ),
        1.0
    );
    server.wait_status("m", "running", WAIT).await;
    server.op("m", "stop").await;
    server.wait_status("m", "stopped", WAIT).await;
    server
        .update("m", json!({"on_demand_after_stop": true}))
        .await;

    // Two plain answers (started on demand by the first) and one stream of 5 chunks.
    let (code, body) = server.chat("m", json!({"fake_prompt_tokens": 11})).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let (code, _) = server.chat("m", json!({"fake_completion_tokens": 4})).await;
    assert_eq!(code, StatusCode::OK);
    let stream = server.chat_stream("m", 5, 0.0).await;
    assert_eq!(stream.status(), StatusCode::OK);
    let text = drain(stream).await;
    assert!(text.contains("[DONE]"), "{text}");
    // One request the instance refuses: a management-only proxy route, answered 404 by the backend.
    let (code, _) = server
        .call(Method::GET, "/api/v1/instances/m/proxy/nothing-here", None)
        .await;
    assert_eq!(code, StatusCode::NOT_FOUND);

    let inst = [("instance", "m")];
    let chat = [
        ("instance", "m"),
        ("route", "chat_completions"),
        ("code", "200"),
    ];
    // The stream's exchange is counted when its last byte has gone, which can be a moment after the
    // client has read it.
    eventually_async("the stream is counted", WAIT, || async {
        value(
            &scrape(&server).await,
            "llamactl_instance_requests_total",
            &chat,
        ) == 3.0
    })
    .await;
    let after = scrape(&server).await;
    assert_eq!(
        value(
            &after,
            "llamactl_instance_requests_total",
            &[("instance", "m"), ("route", "read"), ("code", "404")]
        ),
        1.0
    );
    // The stand-in reports one prompt token per word ("hi") unless told, and one completion token
    // per plain answer or streamed chunk unless told.
    assert_eq!(
        value(&after, "llamactl_instance_prompt_tokens_total", &inst),
        11.0 + 1.0 + 1.0
    );
    assert_eq!(
        value(&after, "llamactl_instance_completion_tokens_total", &inst),
        1.0 + 4.0 + 5.0
    );
    assert_eq!(
        value(&after, "llamactl_instance_on_demand_starts_total", &inst),
        1.0
    );
    assert_eq!(
        value(&after, "llamactl_instance_start_duration_seconds", &inst),
        2.0,
        "two starts, two observations"
    );
    assert_eq!(
        value(
            &after,
            "llamactl_instance_request_duration_seconds",
            &[("instance", "m"), ("route", "chat_completions")]
        ),
        3.0
    );
    assert_eq!(
        value(
            &after,
            "llamactl_instance_time_to_first_byte_seconds",
            &[("instance", "m"), ("route", "chat_completions")]
        ),
        3.0
    );
    assert_eq!(
        value(
            &after,
            "llamactl_instance_status",
            &[("instance", "m"), ("status", "running")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &after,
            "llamactl_instance_status",
            &[("instance", "m"), ("status", "stopped")]
        ),
        0.0
    );
    assert_eq!(
        value(&after, "llamactl_instance_requests_in_flight", &inst),
        0.0
    );
    assert!(value(&after, "llamactl_instance_resident_memory_bytes", &inst) > 1_000_000.0);
    // Per key: the config inference key made the chats, the management key the proxy call.
    let inference = [("key_name", "config-inference-key")];
    assert_eq!(
        value(&after, "llamactl_key_requests_total", &inference),
        3.0
    );
    assert_eq!(
        value(&after, "llamactl_key_prompt_tokens_total", &inference),
        13.0
    );
    assert_eq!(
        value(&after, "llamactl_key_completion_tokens_total", &inference),
        10.0
    );
    assert_eq!(
        value(
            &after,
            "llamactl_key_requests_total",
            &[("key_name", "config-management-key")]
        ),
        1.0
    );
    // Server-wide figures.
    assert!(value(&after, "process_resident_memory_bytes", &[]) > 1_000_000.0);
    assert!(value(&after, "llamactl_open_connections", &[]) >= 1.0);
    assert_eq!(
        value(
            &after,
            "llamactl_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );

    // The activity record holds the three chats; the read is in the metrics only.
    let (code, activity) = server
        .call(Method::GET, "/api/v1/activity?instance=m", None)
        .await;
    assert_eq!(code, StatusCode::OK);
    let routes: Vec<&str> = activity["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["route"].as_str().unwrap())
        .collect();
    assert_eq!(routes, ["chat_completions"; 3], "{activity}");

    // A deleted instance takes its series with it.
    server.delete("m").await;
    let gone = scrape(&server).await;
    assert!(
        !gone.iter().any(|s| s.labels.get("instance") == Some("m")),
        "series of a deleted instance remain"
    );
    // The key's counts stay: they are about the key.
    assert_eq!(value(&gone, "llamactl_key_requests_total", &inference), 3.0);
}

#[tokio::test]
async fn crashes_restarts_and_evictions_are_counted() {
    let server = TestServer::start(
        Options::fake()
            .with_yaml("instances:\n  max_running_instances: 1\n  default_restart_delay: 0\n"),
    )
    .await;
    server
        .create(
            "crashy",
            json!({"model": "/m.gguf", "fake_crash_after_ms": 300, "max_restarts": 1}),
        )
        .await;
    eventually_async("a crash and a restart are counted", WAIT, || async {
        let s = scrape(&server).await;
        value(
            &s,
            "llamactl_instance_crashes_total",
            &[("instance", "crashy")],
        ) >= 1.0
            && value(
                &s,
                "llamactl_instance_restarts_total",
                &[("instance", "crashy")],
            ) >= 1.0
    })
    .await;
    server.wait_status("crashy", "failed", WAIT).await;
    server.delete("crashy").await;

    server.create("a", json!({"model": "/a.gguf"})).await;
    server.wait_status("a", "running", WAIT).await;
    server
        .create("b", json!({"model": "/b.gguf", "on_demand_start": true}))
        .await;
    // b was created while a runs at the limit: the create evicts a, or b waits stopped for a request.
    let (code, body) = server.chat("b", json!({})).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let s = scrape(&server).await;
    assert_eq!(
        value(
            &s,
            "llamactl_instance_evictions_total",
            &[("instance", "a")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &s,
            "llamactl_instance_evictions_total",
            &[("instance", "b")]
        ),
        0.0
    );
}

#[tokio::test]
async fn metrics_need_a_management_or_metrics_key_and_count_refusals() {
    let mut opts = Options::fake();
    opts.env.push((
        "LLAMACTL_METRICS_KEYS".into(),
        "prometheus-scrape-key".into(),
    ));
    let server = TestServer::start(opts).await;

    let (status, _, _) = scrape_as(&server, None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = scrape_as(&server, Some(INFERENCE_KEY), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, content_type, samples) =
        scrape_as(&server, Some("prometheus-scrape-key"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    assert_eq!(
        value(&samples, "llamactl_auth_failures_total", &[("code", "401")]),
        1.0
    );
    assert_eq!(
        value(&samples, "llamactl_auth_failures_total", &[("code", "403")]),
        1.0
    );
    // The metrics key reads metrics and nothing else.
    let (code, _) = server
        .call_as(
            Some("prometheus-scrape-key"),
            Method::GET,
            "/api/v1/instances",
            None,
        )
        .await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    let (code, _) = server
        .call_as(
            Some("prometheus-scrape-key"),
            Method::GET,
            "/v1/models",
            None,
        )
        .await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);

    // Prometheus asks for OpenMetrics and gets it.
    let (status, content_type, _) = scrape_as(
        &server,
        Some(ADMIN_KEY),
        Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
}

#[tokio::test]
async fn an_instances_own_metrics_pass_through() {
    let server = TestServer::start(Options::fake()).await;
    server.create("m", json!({"model": "/m.gguf"})).await;
    server.wait_status("m", "running", WAIT).await;
    let (code, body) = server.call(Method::GET, "/metrics?instance=m", None).await;
    assert_eq!(code, StatusCode::OK);
    assert!(
        body.as_str().unwrap().contains("fake_backend_requests 42"),
        "{body}"
    );
    let (code, _) = server
        .call(Method::GET, "/metrics?instance=nope", None)
        .await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    let (code, _) = server.call(Method::GET, "/metrics?instance=..", None).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    let (code, _) = server.call(Method::GET, "/metrics?bogus=1", None).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    server.op("m", "stop").await;
    server.wait_status("m", "stopped", WAIT).await;
    let (code, _) = server.call(Method::GET, "/metrics?instance=m", None).await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn metrics_can_be_turned_off() {
    let server = TestServer::start(Options::fake().with_yaml("log:\n  requests: false\n")).await;
    let mut opts_off = Options::fake();
    opts_off
        .env
        .push(("LLAMACTL_METRICS".into(), "false".into()));
    let off = TestServer::start(opts_off).await;
    let (code, _) = off.call(Method::GET, "/metrics", None).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    let (code, _) = server.call(Method::GET, "/metrics", None).await;
    assert_eq!(code, StatusCode::OK);
}

#[tokio::test]
async fn json_logs_carry_each_requests_key_instance_status_and_duration() {
    let mut opts = Options::fake();
    opts.env.push(("LLAMACTL_LOG_FORMAT".into(), "json".into()));
    let server = TestServer::start(opts).await;
    server.create("m", json!({"model": "/m.gguf"})).await;
    server.wait_status("m", "running", WAIT).await;
    let (code, _) = server.chat("m", json!({})).await;
    assert_eq!(code, StatusCode::OK);
    let (code, _) = server.chat("missing", json!({})).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    let lines = || -> Vec<serde_json::Value> {
        let output = server.output.lock().unwrap().clone();
        output
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect()
    };
    eventually_async("both request lines are logged", WAIT, || async {
        lines()
            .iter()
            .filter(|l| l["target"] == "llamactl::request")
            .count()
            == 2
    })
    .await;
    let requests: Vec<serde_json::Value> = lines()
        .into_iter()
        .filter(|l| l["target"] == "llamactl::request")
        .collect();
    let ok = requests
        .iter()
        .find(|l| l["instance"] == "m")
        .expect("line for m");
    assert_eq!(ok["status"], 200);
    assert_eq!(ok["key"], "config-inference-key");
    assert_eq!(ok["route"], "chat_completions");
    assert_eq!(ok["prompt_tokens"], 1);
    assert!(ok["duration_ms"].is_u64());
    assert!(ok.get("key_id").is_some());
    let missing = requests
        .iter()
        .find(|l| l["instance"] == "missing")
        .expect("line for missing");
    assert_eq!(missing["status"], 404);
    let output = server.output.lock().unwrap().clone();
    assert!(
        !output.contains(INFERENCE_KEY),
        "a key's secret reached the log"
    );
}

#[tokio::test]
async fn the_task_count_rises_with_open_streams_and_falls_back_when_they_end() {
    let server = TestServer::start(Options::fake()).await;
    let (code, _) = server.create("m", json!({"model": "/m.gguf"})).await;
    assert_eq!(code, StatusCode::CREATED);
    server.wait_status("m", "running", WAIT).await;
    let tasks = |samples: Vec<Sample>| value(&samples, "llamactl_tasks", &[]);
    let before = tasks(scrape(&server).await);
    assert!(before >= 1.0, "the main runtime's own tasks are counted");

    // Five slow streams, each on its own connection of a client dropped afterwards.
    let client = reqwest::Client::new();
    let body = json!({
        "model": "m", "stream": true, "max_tokens": 40, "fake_chunk_delay": 0.05,
        "messages": [{"role": "user", "content": "hi"}]
    });
    let mut streams = Vec::new();
    for _ in 0..5 {
        let resp = client
            .post(format!("{}/v1/chat/completions", server.base))
            .bearer_auth(INFERENCE_KEY)
            .json(&body)
            .send()
            .await
            .expect("streamed request");
        assert_eq!(resp.status(), StatusCode::OK);
        streams.push(resp);
    }
    let during = tasks(scrape(&server).await);
    assert!(
        during >= before + 5.0,
        "5 open streams, tasks {before} -> {during}"
    );

    for stream in streams {
        assert!(drain(stream).await.contains("[DONE]"));
    }
    drop(client);
    eventually_async("the tasks of the streams end", WAIT, || async {
        tasks(scrape(&server).await) <= before
    })
    .await;
}
