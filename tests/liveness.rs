//! Faults a backend can have while it runs, injected into the stand-in: a hung process (SIGSTOP)
//! is killed and restarted; an answer that falls silent is ended (504 before its head, a last
//! `event: error` during a stream); a client that stops reading frees the backend.

mod common;

use common::{eventually_async, pid_of, Options, TestServer, INFERENCE_KEY};
use futures_util::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const READY: Duration = Duration::from_secs(30);

/// Probes every second, two misses make a hang.
const PROBES: &str = "instances:\n  health_check_interval: 1\n  health_check_failures: 2\n";

/// A server whose instance `m` runs (restarted at once after a crash or hang).
async fn one_running(opts: Options) -> TestServer {
    let server = TestServer::start(opts).await;
    let (code, created) = server
        .create("m", json!({"model": "/m.gguf", "restart_delay": 0}))
        .await;
    assert_eq!(code, StatusCode::CREATED, "{created}");
    server.wait_status("m", "running", READY).await;
    server
}

/// The value of `name{instance="m"}` in `/metrics`, 0 if absent.
async fn counter(server: &TestServer, name: &str) -> f64 {
    let (code, body) = server.call(Method::GET, "/metrics", None).await;
    assert_eq!(code, StatusCode::OK);
    let text = body.as_str().expect("text exposition");
    text.lines()
        .find(|l| l.starts_with(&format!("{name}{{")) && l.contains("instance=\"m\""))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

fn signal(pid: u64, sig: i32) {
    // SAFETY: signalling a backend this test started.
    let rc = unsafe { libc::kill(pid as i32, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig})");
}

#[tokio::test]
async fn a_hung_backend_is_killed_restarted_and_serves_again() {
    let server = one_running(Options::fake().with_yaml(PROBES)).await;
    let (_, before) = server.get("m").await;
    let hung = pid_of(&before);

    signal(hung, libc::SIGSTOP);
    let stopped_at = Instant::now();
    // A request sent to the hung backend waits on it, and is answered once it is killed.
    let waiting = {
        let base = server.base.clone();
        tokio::spawn(async move {
            let resp = reqwest::Client::new()
                .post(format!("{base}/v1/chat/completions"))
                .bearer_auth(INFERENCE_KEY)
                .json(&json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}))
                .send()
                .await
                .expect("answered");
            let status = resp.status();
            (
                status,
                resp.json::<serde_json::Value>().await.expect("json"),
            )
        })
    };

    // Two misses a second apart, a 1 s probe timeout each, a restart without delay: well under 30 s.
    let event = server.wait_event("m", "unresponsive", READY).await;
    assert!(event.detail.contains("/health"), "{event:?}");
    assert_eq!(event.actor, "system");
    let after = eventually_running_anew(&server, hung).await;
    let took = stopped_at.elapsed();
    assert!(took < Duration::from_secs(20), "restarted after {took:?}");
    assert!(!common::process_alive(hung), "the hung process is gone");
    assert_ne!(pid_of(&after), hung);

    let (status, body) = tokio::time::timeout(READY, waiting)
        .await
        .expect("the waiting request is answered, not left hanging")
        .expect("task");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        body["error"].as_str().unwrap_or("").contains("went down"),
        "{body}"
    );

    let (code, answer) = server.chat("m", json!({})).await;
    assert_eq!(code, StatusCode::OK, "{answer}");
    assert_eq!(
        counter(&server, "llamactl_instance_unresponsive_total").await,
        1.0
    );
    assert_eq!(
        counter(&server, "llamactl_instance_crashes_total").await,
        0.0
    );
}

/// Polls until `m` runs with a process other than `old`.
async fn eventually_running_anew(server: &TestServer, old: u64) -> serde_json::Value {
    let deadline = Instant::now() + READY;
    loop {
        let (_, v) = server.get("m").await;
        if v["status"] == "running" && pid_of(&v) != old {
            return v;
        }
        assert!(Instant::now() < deadline, "not running again: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_hung_backend_without_auto_restart_fails_with_the_reason() {
    let server = TestServer::start(Options::fake().with_yaml(PROBES)).await;
    let (code, _) = server
        .create("m", json!({"model": "/m.gguf", "auto_restart": false}))
        .await;
    assert_eq!(code, StatusCode::CREATED);
    let running = server.wait_status("m", "running", READY).await;
    signal(pid_of(&running), libc::SIGSTOP);

    let failed = server.wait_status("m", "failed", READY).await;
    let reason = failed["last_error"].as_str().unwrap_or_default();
    assert!(reason.contains("stopped answering /health"), "{failed}");
    assert!(!common::process_alive(pid_of(&running)));
}

#[tokio::test]
async fn a_backend_that_keeps_answering_its_health_checks_is_left_alone() {
    let server = one_running(Options::fake().with_yaml(PROBES)).await;
    let (_, before) = server.get("m").await;
    // A slow answer (the backend busy for 4 s) spans several probes.
    let (code, _) = server.chat("m", json!({"fake_delay": 4})).await;
    assert_eq!(code, StatusCode::OK);
    let (_, after) = server.get("m").await;
    assert_eq!(after["status"], "running");
    assert_eq!(pid_of(&after), pid_of(&before));
    let history = server.instance_history("m").await;
    assert!(
        history.iter().all(|h| h.event != "unresponsive"),
        "{history:#?}"
    );
}

/// A server whose backends may be quiet for one second in the middle of an answer.
fn quiet_limit_of_one_second() -> Options {
    Options::fake().with_env("LLAMACTL_STREAM_IDLE_TIMEOUT", "1")
}

#[tokio::test]
async fn a_backend_silent_before_its_answer_s_head_is_a_504() {
    let server = one_running(quiet_limit_of_one_second()).await;
    let (code, body) = server.chat("m", json!({"fake_delay": 30})).await;
    assert_eq!(code, StatusCode::GATEWAY_TIMEOUT, "{body}");
    let message = body["error"].as_str().unwrap_or_default();
    assert!(message.contains("stream_idle_timeout"), "{body}");
    assert_eq!(
        counter(&server, "llamactl_instance_stalled_answers_total").await,
        1.0
    );
    assert_eq!(server.status("m").await, "running");
}

#[tokio::test]
async fn a_stream_that_falls_silent_ends_with_an_error_event() {
    let server = one_running(quiet_limit_of_one_second()).await;
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", server.base))
        .bearer_auth(INFERENCE_KEY)
        .json(&json!({
            "model": "m", "stream": true, "max_tokens": 10, "fake_stall_after": 2,
            "messages": [{"role": "user", "content": "hi"}]
        }))
        .send()
        .await
        .expect("answered");
    assert_eq!(resp.status(), StatusCode::OK);
    let mut chunks = resp.bytes_stream();
    let mut text = String::new();
    let read = tokio::time::timeout(READY, async {
        while let Some(chunk) = chunks.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk.expect("a clean end")));
        }
    })
    .await;
    assert!(read.is_ok(), "the stream did not end: {text}");

    let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
    assert_eq!(events.len(), 3, "{text}");
    assert!(
        events[0].contains("tok0") && events[1].contains("tok1"),
        "{text}"
    );
    let data = events[2]
        .strip_prefix("event: error\ndata: ")
        .unwrap_or_else(|| panic!("last is not an error event: {text}"));
    let data: serde_json::Value = serde_json::from_str(data).expect("JSON data");
    assert!(
        data["error"]
            .as_str()
            .unwrap_or("")
            .contains("stream_idle_timeout"),
        "{data}"
    );
    assert_eq!(
        counter(&server, "llamactl_instance_stalled_answers_total").await,
        1.0
    );
}

#[tokio::test]
async fn a_client_that_stops_reading_gets_its_backend_request_cancelled() {
    // Only the instances' idle limit is short: the connection's own write limit stays 300 s.
    let server = one_running(quiet_limit_of_one_second()).await;
    let addr = server.base.trim_start_matches("http://").to_string();
    let mut deaf = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let body = json!({
        "model": "m", "stream": true, "max_tokens": 100000,
        "fake_chunk_delay": 0, "fake_chunk_bytes": 65536,
        "messages": [{"role": "user", "content": "hi"}]
    })
    .to_string();
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: llamactl\r\n\
         Authorization: Bearer {INFERENCE_KEY}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    deaf.write_all(request.as_bytes()).await.expect("send");
    let mut status = [0u8; 12];
    deaf.read_exact(&mut status).await.expect("answer begun");
    assert_eq!(&status, b"HTTP/1.1 200");

    // From here on nothing is read: the backend must see its request cancelled.
    eventually_async(
        "the backend logs its stream aborted",
        Duration::from_secs(60),
        || async {
            let (_, logs) = server.logs("m", Some(50)).await;
            logs.to_string().contains("stream aborted after")
        },
    )
    .await;
    drop(deaf);
    let (code, _) = server.chat("m", json!({})).await;
    assert_eq!(code, StatusCode::OK);
}
