//! REST API behaviour against the real server binary, with the stand-in backend.

mod common;

use common::{Options, TestServer, ADMIN_KEY, INFERENCE_KEY};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

const READY: Duration = Duration::from_secs(15);

#[tokio::test]
async fn version_is_plain_text_with_three_fields() {
    let server = TestServer::start(Options::fake()).await;
    let (code, body) = server.call(Method::GET, "/api/v1/version", None).await;
    assert_eq!(code, StatusCode::OK);
    let text = body.as_str().expect("plain text");
    assert!(text.starts_with("Version: "), "{text}");
    assert!(
        text.contains("\nCommit: ") && text.contains("\nBuild Time: "),
        "{text}"
    );
}

#[tokio::test]
async fn server_endpoints_return_the_backend_output() {
    let server = TestServer::start(Options::fake()).await;
    for (path, needle) in [
        ("/api/v1/server/help", "--port PORT"),
        ("/api/v1/server/version", "version: 0 (fake)"),
        ("/api/v1/server/devices", "Available devices"),
    ] {
        let (code, body) = server.call(Method::GET, path, None).await;
        assert_eq!(code, StatusCode::OK, "{path}");
        assert!(
            body.as_str().unwrap_or_default().contains(needle),
            "{path}: {body}"
        );
    }
}

#[tokio::test]
async fn missing_backend_executable_is_a_clear_500() {
    let server = TestServer::start(Options::real("/nonexistent/llama-server")).await;
    let (code, body) = server
        .call(Method::GET, "/api/v1/server/version", None)
        .await;
    assert_eq!(code, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("/nonexistent/llama-server"),
        "{body}"
    );

    // Creating an instance is a failed start (500, as on every route: error_story.rs), but the
    // valid definition is kept and shows why it cannot run.
    let (code, body) = server.create("m", json!({"model": "/m.gguf"})).await;
    assert_eq!(code, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    let (_, inst) = server.get("m").await;
    assert_eq!(inst["status"], "failed");
    assert!(
        inst["last_error"].as_str().unwrap().contains("cannot run"),
        "{inst}"
    );
    let (code, body) = server.op("m", "start").await;
    assert_eq!(code, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("failed to start instance"),
        "{body}"
    );
}

#[tokio::test]
async fn crud_round_trip() {
    let server = TestServer::start(Options::fake()).await;
    let (code, created) = server
        .create("alpha", json!({"model": "/m.gguf", "ctx_size": 512}))
        .await;
    assert_eq!(code, StatusCode::CREATED, "{created}");
    assert_eq!(created["name"], "alpha");
    assert!(created["created"].as_i64().unwrap() > 1_700_000_000);
    assert_eq!(created["options"]["backend_options"]["ctx_size"], 512);
    assert!(matches!(
        created["status"].as_str(),
        Some("starting" | "running")
    ));

    let running = server.wait_status("alpha", "running", READY).await;
    let port = running["port"].as_u64().unwrap();
    assert!(
        (u64::from(server.port_range()[0])..=u64::from(server.port_range()[1])).contains(&port)
    );

    let (code, list) = server.call(Method::GET, "/api/v1/instances", None).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(list.as_array().unwrap().len(), 1);

    let (code, updated) = server
        .update("alpha", json!({"ctx_size": 1024, "auto_restart": false}))
        .await;
    assert_eq!(code, StatusCode::OK, "{updated}");
    assert_eq!(updated["options"]["backend_options"]["ctx_size"], 1024);
    assert_eq!(updated["options"]["backend_options"]["model"], "/m.gguf");
    assert_eq!(updated["options"]["auto_restart"], false);

    let (code, _) = server.delete("alpha").await;
    assert_eq!(code, StatusCode::NO_CONTENT);
    let (code, body) = server.get("alpha").await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert!(body["error"].as_str().unwrap().contains("alpha"));
}

#[tokio::test]
async fn structured_body_is_accepted() {
    let server = TestServer::start(Options::fake()).await;
    let (code, body) = server
        .create(
            "s",
            json!({"backend_type": "llama_cpp", "backend_options": {"model": "/m.gguf"}, "on_demand_start": false}),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    assert_eq!(
        body["options"]["backend_options"],
        json!({"model": "/m.gguf"})
    );
    assert_eq!(body["options"]["on_demand_start"], false);
}

#[tokio::test]
async fn bad_input_is_a_clear_4xx_and_creates_nothing() {
    let server = TestServer::start(Options::fake()).await;
    let range = server.port_range();
    let long_name = "x".repeat(65);
    let cases: Vec<(&str, Option<Value>, StatusCode)> = vec![
        ("bad%20name", Some(json!({})), StatusCode::BAD_REQUEST),
        ("x%2Fy", Some(json!({})), StatusCode::BAD_REQUEST),
        (&long_name, Some(json!({})), StatusCode::BAD_REQUEST),
        ("ok", Some(json!([1, 2])), StatusCode::BAD_REQUEST),
        (
            "ok",
            Some(json!({"backend_type": "tensorrt"})),
            StatusCode::BAD_REQUEST,
        ),
        (
            "ok",
            Some(json!({"model": {"nested": true}})),
            StatusCode::BAD_REQUEST,
        ),
        (
            "ok",
            Some(json!({"host": "0.0.0.0"})),
            StatusCode::BAD_REQUEST,
        ),
        ("ok", Some(json!({"port": 1})), StatusCode::BAD_REQUEST),
        (
            "ok",
            Some(json!({"port": range[1] as u64 + 1})),
            StatusCode::BAD_REQUEST,
        ),
        (
            "ok",
            Some(json!({"auto_restart": "sometimes"})),
            StatusCode::BAD_REQUEST,
        ),
        (
            "ok",
            Some(json!({"backend_options": {"model": "/m"}, "stray": 1})),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (name, body, want) in cases {
        let (code, resp) = server.create(name, body.clone().unwrap()).await;
        assert_eq!(code, want, "{name} {body:?}: {resp}");
        assert!(
            resp["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{resp}"
        );
    }
    let (_, list) = server.call(Method::GET, "/api/v1/instances", None).await;
    assert_eq!(list, json!([]), "nothing half-created");
    let db = std::fs::read_dir(server.data_dir.join("logs"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(db, 0, "no log files for rejected instances");
}

#[tokio::test]
async fn malformed_oversized_and_untyped_bodies_are_rejected() {
    let server = TestServer::start(Options::fake()).await;
    let client = reqwest::Client::new();
    let url = format!("{}/api/v1/instances/m", server.base);
    let send = |body: Vec<u8>, ctype: Option<&'static str>| {
        let mut req = client.post(&url).bearer_auth(ADMIN_KEY).body(body);
        if let Some(ctype) = ctype {
            req = req.header("content-type", ctype);
        }
        req.send()
    };
    let malformed = send(b"{\"model\": ".to_vec(), Some("application/json"))
        .await
        .unwrap();
    assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);
    let untyped = send(b"{}".to_vec(), None).await.unwrap();
    assert_eq!(untyped.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let mut big = b"{\"model\": \"".to_vec();
    big.extend(std::iter::repeat_n(b'a', 2 * 1024 * 1024));
    big.extend(b"\"}");
    let oversized = send(big, Some("application/json")).await.unwrap();
    assert_eq!(oversized.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = oversized.json().await.unwrap();
    assert!(body["error"].is_string());
    let (_, list) = server.call(Method::GET, "/api/v1/instances", None).await;
    assert_eq!(list, json!([]));
}

#[tokio::test]
async fn duplicates_and_unknown_instances() {
    let server = TestServer::start(Options::fake()).await;
    assert_eq!(
        server.create("d", json!({"model": "/m"})).await.0,
        StatusCode::CREATED
    );
    let (code, body) = server.create("d", json!({"model": "/other"})).await;
    assert_eq!(code, StatusCode::CONFLICT);
    assert!(body["error"].as_str().unwrap().contains("already exists"));
    for (method, path) in [
        (Method::GET, "/api/v1/instances/ghost"),
        (Method::PUT, "/api/v1/instances/ghost"),
        (Method::DELETE, "/api/v1/instances/ghost"),
        (Method::POST, "/api/v1/instances/ghost/start"),
        (Method::POST, "/api/v1/instances/ghost/stop"),
        (Method::POST, "/api/v1/instances/ghost/restart"),
        (Method::GET, "/api/v1/instances/ghost/logs"),
        (Method::GET, "/api/v1/instances/ghost/proxy/health"),
    ] {
        let body = (method == Method::PUT).then(|| json!({}));
        let (code, resp) = server.call(method.clone(), path, body).await;
        assert_eq!(code, StatusCode::NOT_FOUND, "{method} {path}: {resp}");
        assert!(resp["error"].is_string());
    }
}

#[tokio::test]
async fn fixed_ports_must_be_unique() {
    let server = TestServer::start(Options::fake()).await;
    let port = server.port_range()[0] + 3;
    assert_eq!(
        server
            .create("a", json!({"model": "/m", "port": port}))
            .await
            .0,
        StatusCode::CREATED
    );
    let (code, body) = server
        .create("b", json!({"model": "/m", "port": port}))
        .await;
    assert_eq!(code, StatusCode::CONFLICT, "{body}");
    let inst = server.wait_status("a", "running", READY).await;
    assert_eq!(inst["port"], port);
}

#[tokio::test]
async fn running_limit_is_a_409_and_leaves_nothing_behind() {
    let opts = Options::fake()
        .with_yaml("instances:\n  max_running_instances: 1\n  enable_lru_eviction: false\n");
    let server = TestServer::start(opts).await;
    assert_eq!(
        server.create("one", json!({"model": "/m"})).await.0,
        StatusCode::CREATED
    );
    let (code, body) = server.create("two", json!({"model": "/m"})).await;
    assert_eq!(code, StatusCode::CONFLICT, "{body}");
    assert_eq!(server.get("two").await.0, StatusCode::NOT_FOUND);

    server.op("one", "stop").await;
    server.wait_status("one", "stopped", READY).await;
    assert_eq!(
        server.create("two", json!({"model": "/m"})).await.0,
        StatusCode::CREATED
    );
    let (code, body) = server.op("one", "start").await;
    assert_eq!(code, StatusCode::CONFLICT, "{body}");
    assert!(body["error"].as_str().unwrap().contains("maximum"));
}

#[tokio::test]
async fn instance_count_limit_is_a_409() {
    let server =
        TestServer::start(Options::fake().with_yaml("instances:\n  max_instances: 1\n")).await;
    assert_eq!(
        server.create("one", json!({"model": "/m"})).await.0,
        StatusCode::CREATED
    );
    assert_eq!(
        server.create("two", json!({"model": "/m"})).await.0,
        StatusCode::CONFLICT
    );
}

#[tokio::test]
async fn logs_return_the_last_lines() {
    let server = TestServer::start(Options::fake()).await;
    server.create("l", json!({"model": "/m.gguf"})).await;
    server.wait_status("l", "running", READY).await;
    let (code, all) = server.logs("l", None).await;
    assert_eq!(code, StatusCode::OK);
    let all = all.as_str().unwrap().to_string();
    assert!(all.contains("=== llamactl: starting 'l'"), "{all}");
    assert!(
        all.contains("fake llama-server starting with --model /m.gguf"),
        "{all}"
    );
    let (_, minus_one) = server.logs("l", Some(-1)).await;
    assert_eq!(minus_one.as_str().unwrap(), all);
    let (_, one) = server.logs("l", Some(1)).await;
    assert_eq!(one.as_str().unwrap().lines().count(), 1);
    assert_eq!(
        one.as_str().unwrap().trim_end(),
        all.trim_end().lines().last().unwrap()
    );
    let (code, _) = server.logs("l", Some(-5)).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    let (code, _) = server
        .call(Method::GET, "/api/v1/instances/l/logs?lines=abc", None)
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn proxy_forwards_method_path_query_headers_and_body() {
    let server = TestServer::start(Options::fake()).await;
    server.create("p", json!({"model": "/m"})).await;
    server.wait_status("p", "running", READY).await;
    let resp = reqwest::Client::new()
        .post(format!(
            "{}/api/v1/instances/p/proxy/echo/deep?x=1&y=%20z",
            server.base
        ))
        .bearer_auth(ADMIN_KEY)
        .header("x-custom", "kept")
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "dropped")
        .body("payload bytes")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let echo: Value = resp.json().await.unwrap();
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["path"], "/echo/deep?x=1&y=%20z");
    assert_eq!(echo["body"], "payload bytes");
    assert_eq!(echo["headers"]["x-custom"], "kept");
    assert!(
        echo["headers"].get("x-hop").is_none(),
        "hop-by-hop header forwarded: {echo}"
    );
    assert!(
        echo["headers"].get("authorization").is_none(),
        "caller's key forwarded: {echo}"
    );

    let (code, health) = server
        .call(Method::GET, "/api/v1/instances/p/proxy/health", None)
        .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(health["status"], "ok");

    server.op("p", "stop").await;
    server.wait_status("p", "stopped", READY).await;
    let (code, body) = server
        .call(Method::GET, "/api/v1/instances/p/proxy/health", None)
        .await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body["error"].as_str().unwrap().contains("not running"));
}

#[tokio::test]
async fn keys_are_checked_per_route_group() {
    let server = TestServer::start(Options::fake()).await;
    server.create("k", json!({"model": "/m"})).await;
    server.wait_status("k", "running", READY).await;
    let cases: &[(Option<&str>, &str, StatusCode)] = &[
        (None, "/api/v1/instances", StatusCode::UNAUTHORIZED),
        (Some("wrong"), "/api/v1/instances", StatusCode::UNAUTHORIZED),
        (
            Some(INFERENCE_KEY),
            "/api/v1/instances",
            StatusCode::FORBIDDEN,
        ),
        (Some(ADMIN_KEY), "/api/v1/instances", StatusCode::OK),
        (
            None,
            "/api/v1/instances/k/proxy/health",
            StatusCode::UNAUTHORIZED,
        ),
        (
            Some("wrong"),
            "/api/v1/instances/k/proxy/health",
            StatusCode::UNAUTHORIZED,
        ),
        (
            Some(INFERENCE_KEY),
            "/api/v1/instances/k/proxy/health",
            StatusCode::OK,
        ),
        (
            Some(ADMIN_KEY),
            "/api/v1/instances/k/proxy/health",
            StatusCode::OK,
        ),
    ];
    for (key, path, want) in cases {
        let (code, body) = server.call_as(*key, Method::GET, path, None).await;
        assert_eq!(code, *want, "{key:?} {path}: {body}");
        if !code.is_success() {
            assert!(body["error"].is_string(), "{body}");
        }
    }
    let resp = reqwest::Client::new()
        .get(format!("{}/api/v1/instances", server.base))
        .header("x-api-key", ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn unknown_routes_are_404_with_the_error_body() {
    let server = TestServer::start(Options::fake()).await;
    let (code, body) = server.call(Method::GET, "/api/v1/nothing-here", None).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert!(body["error"].is_string());
}

#[tokio::test]
async fn swagger_is_off_by_default() {
    let server = TestServer::start(Options::fake()).await;
    let (code, _) = server
        .call(Method::GET, "/swagger/openapi.json", None)
        .await;
    assert_eq!(code, StatusCode::NOT_FOUND);
}

/// The served document and the router agree both ways: every documented operation is routed (not
/// the fallback's 404 or a 405), every method a documented path does not list is refused 405, and
/// every route of the API reference is documented. (The router registers each handler through its
/// annotation, so it cannot serve an annotated route the document lacks; these requests check the
/// routes served outside axum's table, the proxy and `POST /v1/*`, and the registration itself.)
#[tokio::test]
async fn swagger_documents_exactly_the_routes_that_exist() {
    let server =
        TestServer::start(Options::fake().with_env("LLAMACTL_ENABLE_SWAGGER", "true")).await;
    let (code, ui) = server.call_as(None, Method::GET, "/swagger/", None).await;
    assert_eq!(code, StatusCode::OK);
    assert!(
        ui.as_str().unwrap_or_default().contains("swagger-ui"),
        "{ui}"
    );
    let (code, doc) = server
        .call_as(None, Method::GET, "/swagger/openapi.json", None)
        .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().expect("paths");

    // The API reference's routes (docs: api-reference.md), each documented with its methods.
    let reference: &[(&str, &[&str])] = &[
        ("/api/v1/version", &["get"]),
        ("/api/v1/server/help", &["get"]),
        ("/api/v1/server/version", &["get"]),
        ("/api/v1/server/devices", &["get"]),
        ("/api/v1/instances", &["get"]),
        (
            "/api/v1/instances/{name}",
            &["get", "post", "put", "delete"],
        ),
        ("/api/v1/instances/{name}/start", &["post"]),
        ("/api/v1/instances/{name}/stop", &["post"]),
        ("/api/v1/instances/{name}/restart", &["post"]),
        ("/api/v1/instances/{name}/logs", &["get"]),
        ("/api/v1/instances/{name}/proxy/{rest}", &["get", "post"]),
        ("/api/v1/events", &["get"]),
        ("/v1/models", &["get"]),
        ("/v1/chat/completions", &["post"]),
        ("/v1/completions", &["post"]),
        ("/v1/embeddings", &["post"]),
        ("/v1/rerank", &["post"]),
        ("/v1/reranking", &["post"]),
    ];
    for (path, methods) in reference {
        for method in *methods {
            assert!(
                paths.get(*path).and_then(|p| p.get(*method)).is_some(),
                "{method} {path} is served but not documented"
            );
        }
    }

    let (code, _) = server
        .create("doc-probe", json!({"model": "/m.gguf"}))
        .await;
    assert_eq!(code, StatusCode::CREATED);
    server.wait_status("doc-probe", "running", READY).await;
    for (path, ops) in paths {
        let concrete = path
            .replace("{name}", "doc-probe")
            .replace("{id}", "doc-probe")
            .replace("{rest}", "health");
        let documented = ops.as_object().expect("operations");
        for method in [
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::PATCH,
        ] {
            let body = matches!(method, Method::POST | Method::PUT).then(|| json!({}));
            // The event stream never ends: only its status is read.
            let (code, resp) = if path == "/api/v1/events" && method == Method::GET {
                let live = server.raw(Some(ADMIN_KEY), method.clone(), &concrete).await;
                (live.status(), json!(null))
            } else {
                server.call(method.clone(), &concrete, body).await
            };
            if documented.contains_key(&method.as_str().to_lowercase()) {
                assert_ne!(
                    code,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path}: {resp}"
                );
                assert_ne!(
                    resp["error"], "no such route",
                    "{method} {path} is documented but not routed"
                );
            } else {
                assert_eq!(
                    code,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path} is served but not documented: {resp}"
                );
            }
        }
    }
}

/// What a browser sees: preflights and cross-origin answers carry CORS headers for allowed origins
/// only, on the API and through the proxy alike; every answer says it varies by `Origin`.
#[tokio::test]
async fn cors_answers_allowed_origins_only() {
    let server = TestServer::start(
        Options::fake().with_env("LLAMACTL_ALLOWED_ORIGINS", "https://ui.example"),
    )
    .await;
    let (code, _) = server.create("c", json!({"model": "/m.gguf"})).await;
    assert_eq!(code, StatusCode::CREATED);
    server.wait_status("c", "running", READY).await;

    let client = reqwest::Client::new();
    for path in ["/api/v1/instances", "/api/v1/instances/c/proxy/health"] {
        let url = format!("{}{path}", server.base);
        let preflight = client
            .request(Method::OPTIONS, &url)
            .header("origin", "https://ui.example")
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "authorization")
            .send()
            .await
            .unwrap();
        assert!(preflight.status().is_success(), "{path}: {preflight:?}");
        let h = preflight.headers();
        assert_eq!(h["access-control-allow-origin"], "https://ui.example");
        assert!(h.contains_key("access-control-allow-methods"), "{path}");
        assert!(h.contains_key("access-control-allow-headers"), "{path}");

        for (origin, allowed) in [
            (Some("https://ui.example"), true),
            (Some("https://evil.example"), false),
            (None, false),
        ] {
            let mut req = client.get(&url).bearer_auth(ADMIN_KEY);
            if let Some(origin) = origin {
                req = req.header("origin", origin);
            }
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status(), StatusCode::OK, "{path} {origin:?}");
            let h = resp.headers();
            assert_eq!(
                h.get("access-control-allow-origin")
                    .map(|v| v.to_str().unwrap()),
                allowed.then_some("https://ui.example"),
                "{path} {origin:?}"
            );
            let vary: Vec<_> = h.get_all("vary").iter().collect();
            assert!(
                vary.iter()
                    .any(|v| v.to_str().unwrap().to_lowercase().contains("origin")),
                "{path} {origin:?}: {vary:?}"
            );
        }
    }
}

/// An update valid on its own that clashes with the stored definition is a conflict with the
/// instance's state (409), not a bad request (400); one invalid on its own stays 400.
#[tokio::test]
async fn an_update_that_clashes_with_the_stored_definition_is_409() {
    let server = TestServer::start(Options::fake()).await;
    let (code, _) = server
        .create("c", json!({"model": "/m.gguf", "mmproj": "/p.gguf"}))
        .await;
    assert_eq!(code, StatusCode::CREATED);
    let (code, body) = server
        .update("c", json!({"mmproj_url": "https://example.invalid/p.gguf"}))
        .await;
    assert_eq!(code, StatusCode::CONFLICT, "{body}");
    assert!(body["error"].as_str().unwrap().contains("stored"), "{body}");
    let (code, _) = server
        .update(
            "c",
            json!({"model_url": "https://example.invalid/m.gguf", "model": "/x.gguf"}),
        )
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
}
