//! Security at the HTTP edge and in what requests may make the supervisor do: an operator's stop
//! holds, a limited key never stops another team's instance, a failed start tells an inference
//! caller nothing about the host, and web pages (cross-origin, DNS rebinding, form posts) cannot
//! drive the API.

mod common;

use common::{Options, TestServer, ADMIN_KEY, INFERENCE_KEY};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

/// How long an instance of the stand-in backend may take to get where it is going.
const READY: Duration = Duration::from_secs(15);

fn chat_body(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})
}

fn error_of(body: &Value) -> String {
    body["error"].as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn an_operators_stop_holds_against_requests_unless_the_definition_allows_them() {
    let server = TestServer::start(Options::fake()).await;
    for name in ["held", "wakes"] {
        let mut body = json!({"model": "/m.gguf"});
        if name == "wakes" {
            body["on_demand_after_stop"] = json!(true);
        }
        server.create(name, body).await;
        server.wait_status(name, "running", READY).await;
        server.op(name, "stop").await;
        server.wait_status(name, "stopped", READY).await;
    }

    let (code, answer) = server.chat("held", json!({})).await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    assert!(
        error_of(&answer).contains("stopped by an operator"),
        "{answer}"
    );
    assert_eq!(server.status("held").await, "stopped", "nothing started");

    let (code, answer) = server.chat("wakes", json!({})).await;
    assert_eq!(code, StatusCode::OK, "{answer}");

    // The hold survives a restart of llamactl, and an operator's start lifts it.
    let server = server.restart().await;
    let (code, _) = server.chat("held", json!({})).await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    server.op("held", "start").await;
    server.wait_status("held", "running", READY).await;
    server.op("held", "stop").await;
    server.wait_status("held", "stopped", READY).await;
    let (code, _) = server.chat("held", json!({})).await;
    assert_eq!(
        code,
        StatusCode::SERVICE_UNAVAILABLE,
        "stopped again: held again"
    );
}

#[tokio::test]
async fn a_limited_key_never_evicts_an_instance_outside_its_list() {
    let server =
        TestServer::start(Options::fake().with_yaml("instances:\n  max_running_instances: 1\n"))
            .await;
    server
        .create(
            "mine",
            json!({"model": "/m.gguf", "on_demand_after_stop": true}),
        )
        .await;
    server.wait_status("mine", "running", READY).await;
    server.op("mine", "stop").await;
    server.wait_status("mine", "stopped", READY).await;
    server.create("theirs", json!({"model": "/t.gguf"})).await;
    server.wait_status("theirs", "running", READY).await;
    let (team_key, _) = server
        .new_key(json!({"name": "team", "kind": "inference", "instances": ["mine"]}))
        .await;

    let (code, answer) = server
        .call_as(
            Some(&team_key),
            Method::POST,
            "/v1/chat/completions",
            Some(chat_body("mine")),
        )
        .await;

    assert_eq!(code, StatusCode::CONFLICT, "{answer}");
    assert!(error_of(&answer).contains("may not stop"), "{answer}");
    assert_eq!(server.status("theirs").await, "running", "untouched");
    assert_eq!(server.status("mine").await, "stopped");
    assert!(server
        .instance_history("theirs")
        .await
        .iter()
        .all(|e| e.event != "evicted"));

    // A key that reaches every instance may make room.
    let (code, answer) = server
        .call_as(
            Some(INFERENCE_KEY),
            Method::POST,
            "/v1/chat/completions",
            Some(chat_body("mine")),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{answer}");
    assert_eq!(server.status("theirs").await, "stopped");
}

#[tokio::test]
async fn a_failed_start_tells_an_inference_caller_only_a_reference() {
    let server = TestServer::start(Options::fake()).await;
    let secret = "hf_do_not_show_me_0123456789";
    server
        .create(
            "broken",
            json!({"model": "/m.gguf", "fake_exit_before_ready": 1, "hf_token": secret}),
        )
        .await;
    server.wait_status("broken", "failed", READY).await;

    let (code, answer) = server.chat("broken", json!({})).await;

    // The same status as an operator gets (see error_story.rs), without the details.
    assert_eq!(code, StatusCode::INTERNAL_SERVER_ERROR, "{answer}");
    let shown = answer.to_string();
    assert!(!shown.contains(secret), "{shown}");
    assert!(!shown.contains("--"), "no command line: {shown}");
    assert!(!shown.contains("log lines"), "no log: {shown}");
    let message = error_of(&answer);
    let reference = message
        .split("reference ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap_or_else(|| panic!("no reference in {message}"))
        .to_string();
    assert_eq!(reference.len(), 12, "{message}");
    // The operator finds the full reason in llamactl's log by that reference.
    common::eventually(
        "the reference in llamactl's log",
        Duration::from_secs(10),
        || {
            server
                .output_text()
                .lines()
                .any(|l| l.contains(&reference) && l.contains("exited with code 1"))
        },
    )
    .await;

    // An operator asking the same sees the reason itself.
    let (code, answer) = server
        .call_as(
            Some(ADMIN_KEY),
            Method::POST,
            "/v1/chat/completions",
            Some(chat_body("broken")),
        )
        .await;
    assert_eq!(code, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(error_of(&answer).contains("exited with code 1"), "{answer}");
}

#[tokio::test]
async fn no_origin_is_allowed_cross_origin_by_default() {
    let server = TestServer::start(Options::fake()).await;
    let client = reqwest::Client::new();
    let url = format!("{}/api/v1/instances", server.base);

    let preflight = client
        .request(Method::OPTIONS, &url)
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type",
        )
        .send()
        .await
        .unwrap();
    let simple = client
        .get(&url)
        .header("origin", "https://evil.example")
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();

    for resp in [&preflight, &simple] {
        assert!(
            !resp.headers().contains_key("access-control-allow-origin"),
            "{:?}",
            resp.headers()
        );
    }
}

/// A server with the management API open, as the README allows on a trusted machine.
async fn open_server(extra: Options) -> TestServer {
    TestServer::start(Options {
        host: None,
        ..extra.with_env("LLAMACTL_REQUIRE_MANAGEMENT_AUTH", "false")
    })
    .await
}

#[tokio::test]
async fn with_auth_off_llamactl_listens_on_loopback_and_refuses_foreign_host_names() {
    let server = open_server(Options::fake().with_env("LLAMACTL_ALLOWED_HOSTS", "llm.test")).await;
    assert!(
        server.base.starts_with("http://127.0.0.1:"),
        "bound to {}",
        server.base
    );
    let port = server.base.rsplit(':').next().unwrap().to_string();
    let client = reqwest::Client::new();
    let get_as = |host: String| {
        client
            .get(format!("{}/api/v1/instances", server.base))
            .header("host", host)
            .send()
    };

    // What a DNS-rebinding page sends: its own name, now resolving to 127.0.0.1.
    let rebound = get_as(format!("evil.example:{port}")).await.unwrap();
    assert_eq!(rebound.status(), StatusCode::FORBIDDEN);
    let body: Value = rebound.json().await.unwrap();
    assert!(error_of(&body).contains("allowed_hosts"), "{body}");

    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("llm.test:{port}"),
    ] {
        let resp = get_as(host.clone()).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{host}");
    }
}

#[tokio::test]
async fn form_like_posts_that_any_web_page_could_send_are_refused() {
    let server = open_server(Options::fake()).await;
    let client = reqwest::Client::new();
    let post = |path: &str| client.post(format!("{}{path}", server.base));

    for (path, content_type) in [
        ("/api/v1/instances/x/start", None),
        ("/api/v1/instances/x", Some("text/plain")),
        (
            "/api/v1/instances/x",
            Some("application/x-www-form-urlencoded"),
        ),
        ("/v1/chat/completions", Some("text/plain")),
    ] {
        let mut req = post(path).body(r#"{"model": "/m.gguf"}"#);
        if let Some(content_type) = content_type {
            req = req.header("content-type", content_type);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(
            resp.status(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{path} {content_type:?}"
        );
        let body: Value = resp.json().await.unwrap();
        assert!(error_of(&body).contains("application/json"), "{body}");
        assert!(
            server.get("x").await.0 == StatusCode::NOT_FOUND,
            "nothing created"
        );
    }

    // What a script sends (and a browser only after asking) passes.
    let (code, _) = server.create("x", json!({"model": "/m.gguf"})).await;
    assert_eq!(code, StatusCode::CREATED);
    let resp = post("/api/v1/instances/x/stop")
        .header("x-requested-with", "curl")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn through_the_proxy_an_inference_key_reaches_only_inference_and_read_only_routes() {
    let server = TestServer::start(Options::fake()).await;
    server.create("p", json!({"model": "/m.gguf"})).await;
    server.wait_status("p", "running", READY).await;
    let send = |key: &'static str, method: Method, path: &str| {
        reqwest::Client::new()
            .request(
                method,
                format!("{}/api/v1/instances/p/proxy{path}", server.base),
            )
            .bearer_auth(key)
            .header("content-type", "application/json")
            .body("{}")
            .send()
    };

    for (method, path) in [
        (Method::POST, "/props"),
        (Method::POST, "/lora-adapters"),
        (Method::POST, "/slots/0?action=erase"),
        (Method::POST, "/v1/../props"),
        (Method::POST, "/echo"),
    ] {
        let resp = send(INFERENCE_KEY, method.clone(), path).await.unwrap();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{method} {path}");
        let body: Value = resp.json().await.unwrap();
        assert!(error_of(&body).contains("management key"), "{body}");
        // The proxy itself stays open to operators.
        let resp = send(ADMIN_KEY, method.clone(), path).await.unwrap();
        assert_ne!(resp.status(), StatusCode::FORBIDDEN, "{method} {path}");
    }
    for (method, path) in [
        (Method::GET, "/health"),
        (Method::GET, "/props"),
        (Method::POST, "/v1/chat/completions"),
    ] {
        let resp = send(INFERENCE_KEY, method.clone(), path).await.unwrap();
        assert_ne!(resp.status(), StatusCode::FORBIDDEN, "{method} {path}");
        assert_ne!(resp.status(), StatusCode::UNAUTHORIZED, "{method} {path}");
    }
}

/// With every route needing a key, a keyless form-like POST is refused for the missing key (401),
/// as any other keyless request; the form check only guards servers that take keyless requests.
#[tokio::test]
async fn with_auth_on_a_keyless_form_post_is_refused_for_its_missing_key() {
    let server = TestServer::start(Options::fake()).await;
    let client = reqwest::Client::new();
    for path in ["/api/v1/instances/x/start", "/v1/chat/completions"] {
        let resp = client
            .post(format!("{}{path}", server.base))
            .header("content-type", "text/plain")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
}

/// The proxy forwards what llama-server serves (GET, HEAD, POST) and answers any other method 405
/// with `Allow`, as the router does, without reaching the backend.
#[tokio::test]
async fn the_proxy_answers_other_methods_405_with_allow() {
    let server = TestServer::start(Options::fake()).await;
    server.create("p", json!({"model": "/m.gguf"})).await;
    server.wait_status("p", "running", READY).await;
    let client = reqwest::Client::new();
    let url = format!("{}/api/v1/instances/p/proxy/health", server.base);
    for method in [Method::PUT, Method::DELETE, Method::PATCH, Method::TRACE] {
        let resp = client
            .request(method.clone(), &url)
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(resp.headers()["allow"], "GET,HEAD,POST", "{method}");
    }
    let resp = client
        .get(&url)
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}
