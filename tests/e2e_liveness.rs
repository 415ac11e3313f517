//! End to end against the real llama-server: a backend busy generating for more clients than it
//! has slots still answers its health checks, so liveness probing never takes it for hung.
//! Run by `make e2e` (ignored by a plain `cargo test`: it needs the model).

mod common;

use common::{pid_of, real_backend, Options, TestServer, INFERENCE_KEY};
use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::json;
use std::time::{Duration, Instant};

const READY: Duration = Duration::from_secs(120);

/// How long the backend is kept busy: many probe periods.
const LOAD: Duration = Duration::from_secs(15);

/// Concurrent clients: four times the slots, more than llama-server's HTTP threads.
const CLIENTS: usize = 8;

/// Streams chat completions for `m` until `until`; returns the answers' statuses.
async fn keep_generating(base: String, until: Instant) -> Vec<StatusCode> {
    let client = reqwest::Client::new();
    let mut statuses = Vec::new();
    while Instant::now() < until {
        let resp = client
            .post(format!("{base}/v1/chat/completions"))
            .bearer_auth(INFERENCE_KEY)
            .json(&json!({
                "model": "m", "stream": true, "max_tokens": 48,
                "messages": [{"role": "user", "content": "Tell me a long story about a lighthouse."}]
            }))
            .send()
            .await
            .expect("answered");
        statuses.push(resp.status());
        let mut body = resp.bytes_stream();
        while let Some(chunk) = body.next().await {
            chunk.expect("stream");
        }
    }
    statuses
}

#[tokio::test]
#[ignore = "needs the real llama-server and model: make e2e"]
async fn a_busy_backend_is_never_declared_unresponsive() {
    let backend = real_backend();
    // Probes as tight as a test can make them: every second, two misses in a row are a hang.
    let opts = Options::real(&backend.server)
        .with_yaml("instances:\n  health_check_interval: 1\n  health_check_failures: 2\n");
    let server = TestServer::start(opts).await;
    let (code, created) = server
        .create(
            "m",
            json!({"model": backend.model, "ctx_size": 1024, "parallel": 2, "threads": 1}),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED, "{created}");
    let before = server.wait_status("m", "running", READY).await;

    let until = Instant::now() + LOAD;
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| tokio::spawn(keep_generating(server.base.clone(), until)))
        .collect();
    let mut answers = 0;
    for client in clients {
        let statuses = client.await.expect("client");
        assert!(
            statuses.iter().all(|s| *s == StatusCode::OK),
            "{statuses:?}"
        );
        answers += statuses.len();
    }
    assert!(answers >= CLIENTS, "only {answers} answers");

    let (_, after) = server.get("m").await;
    assert_eq!(after["status"], "running", "{after}");
    assert_eq!(
        pid_of(&after),
        pid_of(&before),
        "the busy backend was replaced"
    );
    let output = server.output.lock().map(|o| o.clone()).unwrap_or_default();
    assert!(
        !output.contains("missed a health check"),
        "a probe went unanswered under load:\n{output}"
    );
    let history = server.instance_history("m").await;
    assert!(
        history.iter().all(|h| h.event != "unresponsive"),
        "{history:#?}"
    );
}
