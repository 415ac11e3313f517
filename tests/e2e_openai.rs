//! End to end with the real llama-server and a small model: the official OpenAI Python client
//! through llamactl, and what the inference path costs (chunks, cold start), printed for the record.
//!
//! Ignored by default; `make e2e` runs them with LLAMACTL_TEST_LLAMA_SERVER, LLAMACTL_TEST_MODEL and
//! LLAMACTL_TEST_PYTHON (a python with the `openai` package) set.

mod common;

use common::{Options, TestServer, INFERENCE_KEY};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

/// A cold model load on a busy machine can be slow.
const LOAD: Duration = Duration::from_secs(120);

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: run `make e2e`, or set LLAMACTL_TEST_LLAMA_SERVER (llama-server), \
             LLAMACTL_TEST_MODEL (a .gguf) and LLAMACTL_TEST_PYTHON (python with `openai`)"
        )
    })
}

/// A llamactl whose backend is the real llama-server.
async fn real_server() -> TestServer {
    TestServer::start(Options::real(&env("LLAMACTL_TEST_LLAMA_SERVER"))).await
}

/// A small instance of the test model; `extra` adds options.
fn gemma(extra: Value) -> Value {
    let mut body = json!({"model": env("LLAMACTL_TEST_MODEL"), "ctx_size": 512});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    body
}

async fn create_running(server: &TestServer, name: &str, body: Value) -> Value {
    let (code, created) = server.create(name, body).await;
    assert_eq!(code, StatusCode::CREATED, "{created}");
    server.wait_status(name, "running", LOAD).await
}

#[tokio::test]
#[ignore = "needs llama-server and a model: make e2e"]
async fn the_official_openai_client_works_through_llamactl() {
    let python = env("LLAMACTL_TEST_PYTHON");
    let server = real_server().await;
    create_running(&server, "gemma", gemma(json!({}))).await;
    create_running(
        &server,
        "gemma-embed",
        gemma(json!({"embeddings": true, "pooling": "mean"})),
    )
    .await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/openai_client/test_openai.py");

    let run = tokio::process::Command::new(&python)
        .arg(&script)
        .env("OPENAI_BASE_URL", format!("{}/v1", server.base))
        .env("OPENAI_API_KEY", INFERENCE_KEY)
        .env("LLAMACTL_CHAT_MODEL", "gemma")
        .env("LLAMACTL_EMBED_MODEL", "gemma-embed")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(300), run)
        .await
        .expect("the OpenAI client script finished within 5 minutes")
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));

    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("{stdout}");
    // Copied out first: panicking with the lock held would poison it for the log reader.
    let server_log = server.output.lock().map(|o| o.clone()).unwrap_or_default();
    assert!(
        output.status.success(),
        "{} failed ({}):\n{stdout}\n{stderr}\nserver output:\n{server_log}",
        script.display(),
        output.status,
    );
}

/// Pieces read off the wire and SSE events (`data:` lines) of one streamed answer.
async fn count_stream(req: reqwest::RequestBuilder) -> (usize, usize) {
    let resp = req.send().await.expect("streamed request");
    assert_eq!(resp.status(), StatusCode::OK);
    let (pieces, text) = common::read_stream(resp).await;
    (pieces, text.matches("data: ").count())
}

/// Spawns llama-server directly and times spawn to the first `/health` 200.
async fn direct_spawn_to_healthy() -> Duration {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let started = Instant::now();
    let mut child = tokio::process::Command::new(env("LLAMACTL_TEST_LLAMA_SERVER"))
        .args(["--model", &env("LLAMACTL_TEST_MODEL"), "--ctx-size", "512"])
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn llama-server");
    let client = reqwest::Client::new();
    let health = format!("http://127.0.0.1:{port}/health");
    loop {
        let ok = client
            .get(&health)
            .send()
            .await
            .is_ok_and(|r| r.status() == StatusCode::OK);
        if ok {
            break;
        }
        assert!(
            started.elapsed() < LOAD,
            "llama-server never became healthy"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = started.elapsed();
    let _ = child.kill().await;
    took
}

#[tokio::test]
#[ignore = "needs llama-server and a model: make e2e"]
async fn measure_streaming_and_cold_start() {
    let server = real_server().await;
    let inst = create_running(&server, "gemma", gemma(json!({}))).await;
    let port = inst["port"].as_u64().expect("port");
    let request = json!({
        "model": "gemma", "stream": true, "temperature": 0, "seed": 42, "max_tokens": 32,
        "messages": [{"role": "user", "content": "Count from 1 to 20, separated by spaces."}]
    });
    let client = reqwest::Client::new();

    let direct = count_stream(
        client
            .post(format!("http://127.0.0.1:{port}/v1/chat/completions"))
            .json(&request),
    )
    .await;
    let proxied = count_stream(
        client
            .post(format!("{}/v1/chat/completions", server.base))
            .bearer_auth(INFERENCE_KEY)
            .json(&request),
    )
    .await;
    eprintln!(
        "streamed chat completion, 32 tokens max: direct {} SSE events in {} reads; \
         through llamactl {} SSE events in {} reads",
        direct.1, direct.0, proxied.1, proxied.0
    );
    assert!(direct.1 > 1 && proxied.1 > 1, "both streamed");

    // An operator's stop holds against requests, until the definition allows them to start it.
    server.op("gemma", "stop").await;
    server.wait_status("gemma", "stopped", LOAD).await;
    let (code, refused) = server.chat("gemma", json!({"max_tokens": 1})).await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .is_some_and(|e| e.contains("stopped by an operator")),
        "{refused}"
    );
    assert_eq!(server.status("gemma").await, "stopped");
    let (code, _) = server
        .call(
            Method::PUT,
            "/api/v1/instances/gemma",
            Some(json!({"on_demand_after_stop": true})),
        )
        .await;
    assert_eq!(code, StatusCode::OK);
    let started = Instant::now();
    let (code, answer) = server
        .chat("gemma", json!({"max_tokens": 1, "temperature": 0}))
        .await;
    let cold = started.elapsed();
    assert_eq!(code, StatusCode::OK, "{answer}");
    let ready = server.wait_event("gemma", "ready", LOAD).await;
    let direct_ready = direct_spawn_to_healthy().await;
    eprintln!(
        "cold start: first on-demand request answered in {} ms (1 token); llamactl's log: {}; \
         llama-server spawned directly was healthy in {} ms",
        cold.as_millis(),
        ready.detail,
        direct_ready.as_millis()
    );
}
