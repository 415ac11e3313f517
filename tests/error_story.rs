//! One cause, one answer, on every route (the README's error table): a failed start is 500, an
//! instance that is not running 503, the running limit 409, a cold start that takes too long 503.
//! And I/O failures at startup name their path and operation.

mod common;

use common::{Options, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

const READY: Duration = Duration::from_secs(15);

/// One request of the table: what it is called in failures, the method, the path, the body.
struct Route {
    what: &'static str,
    method: Method,
    path: String,
    body: Option<Value>,
}

fn route(what: &'static str, method: Method, path: &str, body: Option<Value>) -> Route {
    Route {
        what,
        method,
        path: path.to_string(),
        body,
    }
}

/// The routes that start instance `name`, as an operator calls them.
fn starting_routes(name: &str) -> Vec<Route> {
    let chat = json!({"model": name, "messages": [{"role": "user", "content": "hi"}]});
    vec![
        route(
            "start",
            Method::POST,
            &format!("/api/v1/instances/{name}/start"),
            None,
        ),
        route(
            "restart",
            Method::POST,
            &format!("/api/v1/instances/{name}/restart"),
            None,
        ),
        route(
            "/v1 on demand",
            Method::POST,
            "/v1/chat/completions",
            Some(chat),
        ),
    ]
}

/// Sends each route and checks its status and that its message starts with `message`.
async fn expect_all(server: &TestServer, routes: Vec<Route>, want: StatusCode, message: &str) {
    for r in routes {
        let (code, body) = server.call(r.method, &r.path, r.body).await;
        assert_eq!(code, want, "{}: {body}", r.what);
        let error = body["error"].as_str().unwrap_or_default();
        assert!(error.contains(message), "{}: {body}", r.what);
    }
}

#[tokio::test]
async fn a_backend_that_cannot_be_spawned_is_500_on_every_route_that_starts() {
    let server = TestServer::start(Options::real("/nonexistent/llama-server")).await;

    let (code, body) = server.create("m", json!({"model": "/m.gguf"})).await;
    assert_eq!(code, StatusCode::INTERNAL_SERVER_ERROR, "create: {body}");
    assert!(body["error"]
        .as_str()
        .unwrap()
        .starts_with("failed to start instance 'm'"));

    expect_all(
        &server,
        starting_routes("m"),
        StatusCode::INTERNAL_SERVER_ERROR,
        "failed to start instance 'm'",
    )
    .await;
    // The proxy never starts anything: for it the instance is simply not running.
    let proxy = vec![route(
        "proxy",
        Method::GET,
        "/api/v1/instances/m/proxy/health",
        None,
    )];
    expect_all(
        &server,
        proxy,
        StatusCode::SERVICE_UNAVAILABLE,
        "is not running",
    )
    .await;
    // The definition stays, failed with the reason.
    let (_, inst) = server.get("m").await;
    assert_eq!(inst["status"], "failed", "{inst}");
}

#[tokio::test]
async fn a_backend_that_exits_before_ready_is_500_to_a_request_that_waits_for_it() {
    let server = TestServer::start(Options::fake()).await;
    server
        .create(
            "broken",
            json!({"model": "/m", "fake_exit_before_ready": 3}),
        )
        .await;
    server.wait_status("broken", "failed", READY).await;

    let chat = json!({"model": "broken", "messages": [{"role": "user", "content": "hi"}]});
    let routes = vec![route(
        "/v1 on demand",
        Method::POST,
        "/v1/chat/completions",
        Some(chat),
    )];
    expect_all(
        &server,
        routes,
        StatusCode::INTERNAL_SERVER_ERROR,
        "failed to start instance 'broken'",
    )
    .await;
}

#[tokio::test]
async fn an_instance_that_is_not_running_is_503_where_nothing_starts_it() {
    let server = TestServer::start(Options::fake()).await;
    server
        .create("cold", json!({"model": "/m", "on_demand_start": false}))
        .await;
    server.wait_status("cold", "running", READY).await;
    let (code, _) = server.op("cold", "stop").await;
    assert_eq!(code, StatusCode::OK);
    server.wait_status("cold", "stopped", READY).await;

    let chat = json!({"model": "cold", "messages": [{"role": "user", "content": "hi"}]});
    let routes = vec![
        route(
            "proxy",
            Method::GET,
            "/api/v1/instances/cold/proxy/health",
            None,
        ),
        route(
            "/v1, on-demand start off",
            Method::POST,
            "/v1/chat/completions",
            Some(chat),
        ),
    ];
    expect_all(
        &server,
        routes,
        StatusCode::SERVICE_UNAVAILABLE,
        "is not running",
    )
    .await;
}

#[tokio::test]
async fn the_running_limit_is_409_on_every_route_that_starts() {
    let opts = Options::fake()
        .with_yaml("instances:\n  max_running_instances: 1\n  enable_lru_eviction: false\n");
    let server = TestServer::start(opts).await;
    server.create("a", json!({"model": "/a"})).await;
    server.wait_status("a", "running", READY).await;
    let (code, body) = server.create("b", json!({"model": "/b"})).await;
    assert_eq!(code, StatusCode::CONFLICT, "{body}");
    // b could not be admitted beside a: it was refused before anything was stored.
    assert_eq!(server.get("b").await.0, StatusCode::NOT_FOUND);

    let mut routes = vec![route(
        "create",
        Method::POST,
        "/api/v1/instances/c",
        Some(json!({"model": "/c"})),
    )];
    // b, defined while a is stopped, then a started again.
    let (code, _) = server.op("a", "stop").await;
    assert_eq!(code, StatusCode::OK);
    server.wait_status("a", "stopped", READY).await;
    // A request may start it although an operator stopped it: the limit is what refuses.
    server
        .create("b", json!({"model": "/b", "on_demand_after_stop": true}))
        .await;
    server.wait_status("b", "running", READY).await;
    assert_eq!(server.op("b", "stop").await.0, StatusCode::OK);
    server.wait_status("b", "stopped", READY).await;
    assert_eq!(server.op("a", "start").await.0, StatusCode::OK);
    routes.extend(starting_routes("b"));
    expect_all(
        &server,
        routes,
        StatusCode::CONFLICT,
        "maximum number of running instances",
    )
    .await;
}

#[tokio::test]
async fn a_cold_start_that_takes_too_long_is_503() {
    let opts = Options::fake().with_yaml("instances:\n  on_demand_start_timeout: 1\n");
    let server = TestServer::start(opts).await;
    server
        .create("slow", json!({"model": "/m", "fake_ready_delay_ms": 60000}))
        .await;

    let chat = json!({"model": "slow", "messages": [{"role": "user", "content": "hi"}]});
    let routes = vec![route(
        "/v1 on demand",
        Method::POST,
        "/v1/chat/completions",
        Some(chat),
    )];
    expect_all(
        &server,
        routes,
        StatusCode::SERVICE_UNAVAILABLE,
        "did not become ready within 1 s",
    )
    .await;
}

#[test]
fn a_data_dir_that_cannot_be_created_names_its_path_and_the_operation() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain-file");
    std::fs::write(&file, "not a directory").unwrap();
    let data_dir = file.join("data");
    let config = dir.path().join("c.yaml");
    std::fs::write(
        &config,
        format!(
            "server:\n  port: 0\ndata_dir: {}\n",
            json!(data_dir.display().to_string())
        ),
    )
    .unwrap();

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_llamactl"))
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();

    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let want = format!(
        "cannot create data directory {}: Not a directory",
        data_dir.display()
    );
    assert!(stderr.contains(&want), "{stderr}");
}
