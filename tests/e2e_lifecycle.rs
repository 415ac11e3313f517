//! End to end against the real llama-server and the Gemma 3 270M model: the whole instance
//! lifecycle, crash restart, and what happens to backends when llamactl is stopped or killed.
//! Run by `make test` (these are `#[ignore]`d so a plain `cargo test` does not need the model).

mod common;

use common::{
    backends_in_range, eventually, pid_of, process_alive, real_backend, Options, TestServer,
};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Generous: the model loads in about a second, but CI machines are shared and slow.
const READY: Duration = Duration::from_secs(120);

fn instance_body(model: &str) -> Value {
    json!({"model": model, "ctx_size": 512, "threads": 1, "restart_delay": 0})
}

async fn start_server() -> (TestServer, String) {
    let backend = real_backend();
    let server = TestServer::start(Options::real(&backend.server)).await;
    (server, backend.model)
}

/// Time from spawning llama-server directly until its /health answers 200, polled as llamactl does.
async fn direct_spawn_to_healthy(server: &str, model: &str, port: u16) -> Duration {
    let started = Instant::now();
    let mut child = std::process::Command::new(server)
        .args([
            "--model",
            model,
            "--ctx-size",
            "512",
            "--threads",
            "1",
            "--host",
            "127.0.0.1",
        ])
        .args(["--port", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn llama-server");
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/health");
    loop {
        if let Ok(resp) = client.get(&url).send().await {
            if resp.status() == StatusCode::OK {
                break;
            }
        }
        assert!(
            started.elapsed() < READY,
            "llama-server never became healthy"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = started.elapsed();
    let _ = child.kill();
    let _ = child.wait();
    took
}

#[tokio::test]
#[ignore = "needs the real llama-server and model: make test"]
async fn full_lifecycle_against_real_llama_server() {
    let (server, model) = start_server().await;
    let range = server.port_range();

    // create → running (and how long that takes next to llama-server's own start time)
    let t0 = Instant::now();
    let (code, created) = server.create("gemma", instance_body(&model)).await;
    assert_eq!(code, StatusCode::CREATED, "{created}");
    let running = server.wait_status("gemma", "running", READY).await;
    let via_llamactl = t0.elapsed();
    let direct = direct_spawn_to_healthy(&real_backend().server, &model, range[1]).await;
    eprintln!(
        "MEASURE create→running through llamactl: {} ms; llama-server spawn→healthy direct: {} ms",
        via_llamactl.as_millis(),
        direct.as_millis()
    );
    let first_pid = pid_of(&running);

    // proxy: /health and a real completion
    let (code, health) = server
        .call(Method::GET, "/api/v1/instances/gemma/proxy/health", None)
        .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(health["status"], "ok");
    let (code, completion) = server
        .call(
            Method::POST,
            "/api/v1/instances/gemma/proxy/completion",
            Some(json!({"prompt": "The capital of France is", "n_predict": 8, "temperature": 0})),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{completion}");
    assert!(
        completion["content"]
            .as_str()
            .is_some_and(|c| !c.is_empty()),
        "{completion}"
    );
    assert_eq!(completion["tokens_predicted"], 8);

    // chat through the proxy, OpenAI shape
    let (code, chat) = server
        .call(
            Method::POST,
            "/api/v1/instances/gemma/proxy/v1/chat/completions",
            Some(json!({"messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 4})),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{chat}");
    assert!(
        chat["choices"][0]["message"]["content"].is_string(),
        "{chat}"
    );

    // logs carry llama-server's own output
    let (code, logs) = server.logs("gemma", Some(200)).await;
    assert_eq!(code, StatusCode::OK);
    let logs = logs.as_str().unwrap();
    assert!(logs.contains("=== llamactl: starting 'gemma'"), "{logs}");
    assert!(
        logs.contains("loading model"),
        "llama-server output in the log: {logs}"
    );

    // update → restarted with the new options
    let (code, updated) = server.update("gemma", json!({"ctx_size": 1024})).await;
    assert_eq!(code, StatusCode::OK, "{updated}");
    let mut after_update = server.wait_status("gemma", "running", READY).await;
    while after_update.get("pid").and_then(Value::as_u64) == Some(first_pid) {
        after_update = server.wait_status("gemma", "running", READY).await;
    }
    assert!(!process_alive(first_pid), "old process gone after update");
    let (_, props) = server
        .call(Method::GET, "/api/v1/instances/gemma/proxy/props", None)
        .await;
    assert_eq!(
        props["default_generation_settings"]["n_ctx"], 1024,
        "{props}"
    );

    // stop → start → restart
    let (code, stopping) = server.op("gemma", "stop").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(stopping["status"], "stopping");
    server.wait_status("gemma", "stopped", READY).await;
    assert!(!process_alive(pid_of(&after_update)));
    let (code, _) = server
        .call(Method::GET, "/api/v1/instances/gemma/proxy/health", None)
        .await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);

    let (code, starting) = server.op("gemma", "start").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(starting["status"], "starting");
    let started = server.wait_status("gemma", "running", READY).await;

    let (code, restarting) = server.op("gemma", "restart").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(restarting["status"], "restarting");
    let restarted = server.wait_status("gemma", "running", READY).await;
    assert_ne!(pid_of(&started), pid_of(&restarted));
    assert_eq!(backends_in_range(&real_backend().server, range).len(), 1);

    // delete → process gone, instance gone
    assert_eq!(server.delete("gemma").await.0, StatusCode::NO_CONTENT);
    assert!(!process_alive(pid_of(&restarted)));
    assert_eq!(server.get("gemma").await.0, StatusCode::NOT_FOUND);
    assert!(backends_in_range(&real_backend().server, range).is_empty());
}

#[tokio::test]
#[ignore = "needs the real llama-server and model: make test"]
async fn killed_llama_server_is_restarted() {
    let (server, model) = start_server().await;
    server.create("crashy", instance_body(&model)).await;
    let first = server.wait_status("crashy", "running", READY).await;
    // SAFETY: signalling a process this test's server spawned.
    unsafe { libc::kill(pid_of(&first) as i32, libc::SIGKILL) };
    let deadline = Instant::now() + READY;
    let second = loop {
        let (_, v) = server.get("crashy").await;
        if v["status"] == "running"
            && v.get("pid")
                .and_then(Value::as_u64)
                .is_some_and(|p| p != pid_of(&first))
        {
            break v;
        }
        assert!(Instant::now() < deadline, "not restarted: {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(second["restarts"], 1);
    let (code, _) = server
        .call(Method::GET, "/api/v1/instances/crashy/proxy/health", None)
        .await;
    assert_eq!(code, StatusCode::OK);
}

#[tokio::test]
#[ignore = "needs the real llama-server and model: make test"]
async fn llamactl_stop_and_kill_never_leave_or_double_backends() {
    let (server, model) = start_server().await;
    let range = server.port_range();
    let llama = real_backend().server;
    for name in ["one", "two", "parked"] {
        server.create(name, instance_body(&model)).await;
        server.wait_status(name, "running", READY).await;
    }
    server.op("parked", "stop").await;
    server.wait_status("parked", "stopped", READY).await;
    assert_eq!(backends_in_range(&llama, range).len(), 2);

    // SIGKILL: the backends die with their parent, and a new server runs each exactly once.
    let mut server = server;
    server.signal_and_wait(libc::SIGKILL);
    eventually(
        "llama-servers die with a killed llamactl",
        Duration::from_secs(15),
        || backends_in_range(&llama, range).is_empty(),
    )
    .await;
    let mut server = server.restart().await;
    server.wait_status("one", "running", READY).await;
    server.wait_status("two", "running", READY).await;
    assert_eq!(
        server.status("parked").await,
        "stopped",
        "stopped instances stay stopped"
    );
    let live = backends_in_range(&llama, range);
    assert_eq!(
        live.len(),
        2,
        "exactly one llama-server per running instance: {live:?}"
    );

    // SIGTERM: every backend stopped, none left behind, clean exit.
    let status = server.signal_and_wait(libc::SIGTERM);
    assert!(status.success(), "{status:?}");
    assert!(
        backends_in_range(&llama, range).is_empty(),
        "no llama-server left after SIGTERM"
    );

    // And the desired state survived both: the same two come back.
    let server = server.restart().await;
    server.wait_status("one", "running", READY).await;
    server.wait_status("two", "running", READY).await;
    assert_eq!(server.status("parked").await, "stopped");
    assert_eq!(backends_in_range(&llama, range).len(), 2);
}

/// `logs?follow=true` on a stopped instance sees the real backend's startup lines once it starts.
#[tokio::test]
#[ignore = "needs the real llama-server and model: make test"]
async fn follow_sees_the_real_backends_startup_lines() {
    use futures_util::StreamExt;
    let (server, model) = start_server().await;
    let (code, v) = server.create("follow", instance_body(&model)).await;
    assert_eq!(code, StatusCode::CREATED, "{v}");
    server.wait_status("follow", "running", READY).await;
    server.op("follow", "stop").await;
    server.wait_status("follow", "stopped", READY).await;

    let resp = server
        .raw(
            Some(common::ADMIN_KEY),
            Method::GET,
            "/api/v1/instances/follow/logs?follow=true&lines=0",
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.bytes_stream();
    let (code, v) = server.op("follow", "start").await;
    assert_eq!(code, StatusCode::OK, "{v}");

    // The header llamactl writes, then llama-server's own lines up to its HTTP server listening.
    let deadline = Instant::now() + READY;
    let mut text = String::new();
    while !(text.contains("loading model") && text.contains("listening on")) {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, body.next()).await {
            Ok(Some(Ok(piece))) => text.push_str(&String::from_utf8_lossy(&piece)),
            other => panic!("no startup lines ({other:?}); got:\n{text}"),
        }
    }
    assert!(
        text.starts_with("=== llamactl: starting 'follow'"),
        "only what came after the follow began: {text}"
    );
    assert_eq!(text.matches("=== llamactl: starting").count(), 1, "{text}");
}
