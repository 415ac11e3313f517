//! A key's policy against the real server binary and the stand-in backend: `can_start`,
//! `can_evict`, instance patterns and route classes, each refused and allowed at `/v1`, the
//! instance proxy and `/v1/models`; a PATCH in force from the next request, in the history with its
//! actor; and `whoami`.

mod common;

use common::{Options, TestServer, INFERENCE_KEY};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

const READY: Duration = Duration::from_secs(15);

async fn running(server: &TestServer, name: &str) {
    let (code, created) = server
        .create(
            name,
            json!({"model": format!("/{name}.gguf"), "on_demand_after_stop": true}),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED, "{created}");
    server.wait_status(name, "running", READY).await;
}

async fn stopped(server: &TestServer, name: &str) {
    running(server, name).await;
    server.op(name, "stop").await;
    server.wait_status(name, "stopped", READY).await;
}

/// `POST /v1/chat/completions` for `model` with `key`.
async fn chat(server: &TestServer, key: &str, model: &str) -> (StatusCode, Value) {
    let body = json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
    server
        .call_as(Some(key), Method::POST, "/v1/chat/completions", Some(body))
        .await
}

/// `POST {path}` through the instance proxy of `instance` with `key`.
async fn proxied(server: &TestServer, key: &str, instance: &str, path: &str) -> StatusCode {
    let body = json!({"model": instance, "messages": [{"role": "user", "content": "hi"}],
                      "input": "hi"});
    let path = format!("/api/v1/instances/{instance}/proxy{path}");
    server
        .call_as(Some(key), Method::POST, &path, Some(body))
        .await
        .0
}

async fn patch(server: &TestServer, id: &str, body: Value) -> Value {
    let (code, key) = server
        .call(
            Method::PATCH,
            &format!("/api/v1/auth/keys/{id}"),
            Some(body),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{key}");
    key
}

/// The sorted model ids `GET /v1/models` lists for `token`.
async fn models(server: &TestServer, token: &str) -> Vec<String> {
    let (code, list) = server
        .call_as(Some(token), Method::GET, "/v1/models", None)
        .await;
    assert_eq!(code, StatusCode::OK);
    let mut ids: Vec<String> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

fn error_of(body: &Value) -> &str {
    body["error"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn can_start_false_is_503_on_a_stopped_instance_until_patched() {
    let server = TestServer::start(Options::fake()).await;
    stopped(&server, "cold").await;
    let (token, id) = server
        .new_key(json!({"name": "app", "kind": "inference", "can_start": false}))
        .await;

    let (code, answer) = chat(&server, &token, "cold").await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    assert!(error_of(&answer).contains("can_start: false"), "{answer}");
    assert_eq!(server.status("cold").await, "stopped");

    // The same key may use a running instance; a PATCH is in force from the next request on.
    let shown = patch(&server, &id, json!({"can_start": true})).await;
    assert_eq!(shown["can_start"], true);
    let (code, answer) = chat(&server, &token, "cold").await;
    assert_eq!(code, StatusCode::OK, "{answer}");

    // The history has the change, by whom, before and after.
    let (_, history) = server.history(&format!("key={id}")).await;
    let updated = history["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"] == "key_updated")
        .unwrap_or_else(|| panic!("no key_updated in {history}"));
    assert_eq!(updated["actor"], "config-management-key", "{updated}");
    let detail: Value = serde_json::from_str(updated["detail"].as_str().unwrap()).unwrap();
    assert_eq!(detail["before"]["can_start"], false, "{detail}");
    assert_eq!(detail["after"]["can_start"], true, "{detail}");
    assert!(!updated.to_string().contains(&token[token.len() - 20..]));
}

#[tokio::test]
async fn can_evict_false_at_the_running_limit_is_409() {
    let opts = Options::fake().with_yaml("instances:\n  max_running_instances: 1\n");
    let server = TestServer::start(opts).await;
    stopped(&server, "b").await;
    running(&server, "a").await;
    let (token, id) = server
        .new_key(json!({"name": "app", "kind": "inference", "can_evict": false}))
        .await;

    let (code, answer) = chat(&server, &token, "b").await;
    assert_eq!(code, StatusCode::CONFLICT, "{answer}");
    assert!(error_of(&answer).contains("can_evict: false"), "{answer}");
    assert_eq!(server.status("a").await, "running");

    patch(&server, &id, json!({"can_evict": true})).await;
    let (code, answer) = chat(&server, &token, "b").await;
    assert_eq!(code, StatusCode::OK, "{answer}");
    assert_eq!(server.status("a").await, "stopped");
}

#[tokio::test]
async fn instance_patterns_scope_v1_the_proxy_and_the_model_list() {
    let server = TestServer::start(Options::fake()).await;
    for name in ["gemma-small", "gemma-big", "qwen"] {
        running(&server, name).await;
    }
    let (token, id) = server
        .new_key(json!({"name": "g", "kind": "inference", "instances": ["gemma-*"]}))
        .await;

    assert_eq!(models(&server, &token).await, ["gemma-big", "gemma-small"]);
    assert_eq!(chat(&server, &token, "gemma-big").await.0, StatusCode::OK);
    assert_eq!(chat(&server, &token, "qwen").await.0, StatusCode::FORBIDDEN);
    let path = "/v1/chat/completions";
    assert_eq!(
        proxied(&server, &token, "gemma-small", path).await,
        StatusCode::OK
    );
    assert_eq!(
        proxied(&server, &token, "qwen", path).await,
        StatusCode::FORBIDDEN
    );

    // Narrowed by a PATCH: in force at once, everywhere.
    patch(&server, &id, json!({"instances": ["qwen"]})).await;
    assert_eq!(models(&server, &token).await, ["qwen"]);
    assert_eq!(
        chat(&server, &token, "gemma-big").await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(chat(&server, &token, "qwen").await.0, StatusCode::OK);
    assert_eq!(
        proxied(&server, &token, "gemma-small", path).await,
        StatusCode::FORBIDDEN
    );

    // A bad pattern is a 400 that says why.
    let (code, body) = server
        .create_key(json!({"name": "x", "kind": "inference", "instances": ["gem/*"]}))
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        error_of(&body).contains("invalid instance pattern"),
        "{body}"
    );
}

#[tokio::test]
async fn route_classes_limit_v1_and_the_proxy() {
    let server = TestServer::start(Options::fake()).await;
    running(&server, "m").await;
    let (token, id) = server
        .new_key(json!({"name": "e", "kind": "inference", "routes": ["embeddings"]}))
        .await;

    let (code, answer) = chat(&server, &token, "m").await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{answer}");
    assert!(error_of(&answer).contains("chat requests"), "{answer}");
    assert_eq!(
        proxied(&server, &token, "m", "/v1/chat/completions").await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        proxied(&server, &token, "m", "/tokenize").await,
        StatusCode::FORBIDDEN
    );
    let (code, _) = server
        .call_as(
            Some(&token),
            Method::POST,
            "/v1/embeddings",
            Some(json!({"model": "m", "input": "hi"})),
        )
        .await;
    assert_ne!(code, StatusCode::FORBIDDEN);

    patch(&server, &id, json!({"routes": ["chat", "other"]})).await;
    assert_eq!(chat(&server, &token, "m").await.0, StatusCode::OK);
    assert_ne!(
        proxied(&server, &token, "m", "/tokenize").await,
        StatusCode::FORBIDDEN
    );
    let (code, _) = server
        .call_as(
            Some(&token),
            Method::POST,
            "/v1/embeddings",
            Some(json!({"model": "m", "input": "hi"})),
        )
        .await;
    assert_eq!(code, StatusCode::FORBIDDEN);

    // Management keys reach every route class: limiting one is refused.
    let (code, body) = server
        .create_key(json!({"name": "x", "kind": "management", "routes": ["chat"]}))
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test]
async fn whoami_tells_the_caller_its_key_and_policy() {
    let server = TestServer::start(Options::fake()).await;
    let (token, id) = server
        .new_key(json!({
            "name": "app", "kind": "inference", "instances": ["gemma-*"], "can_evict": false,
            "routes": ["chat"], "priority": "low",
            "limits": {"requests_per_minute": 60, "tokens_per_day": 100000}
        }))
        .await;

    let (code, me) = server
        .call_as(Some(&token), Method::GET, "/api/v1/auth/whoami", None)
        .await;
    assert_eq!(code, StatusCode::OK, "{me}");
    assert_eq!(
        me["key"],
        json!({"id": id, "name": "app", "kind": "inference"})
    );
    assert_eq!(me["management"], false);
    assert_eq!(me["instances"], json!(["gemma-*"]));
    assert_eq!(
        (me["can_start"].clone(), me["can_evict"].clone()),
        (json!(true), json!(false))
    );
    assert_eq!(me["routes"], json!(["chat"]));
    assert_eq!(me["priority"], "low");
    assert_eq!(
        me["limits"],
        json!({"requests_per_minute": 60, "tokens_per_minute": null, "tokens_per_day": 100000})
    );
    // The key resource shows the same policy.
    let (_, shown) = server
        .call(Method::GET, &format!("/api/v1/auth/keys/{id}"), None)
        .await;
    for field in [
        "instances",
        "can_start",
        "can_evict",
        "routes",
        "priority",
        "limits",
    ] {
        assert_eq!(shown[field], me[field], "{field}");
    }

    // A configuration key: everything allowed, no limits.
    let (code, me) = server
        .call_as(
            Some(INFERENCE_KEY),
            Method::GET,
            "/api/v1/auth/whoami",
            None,
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{me}");
    assert_eq!(me["key"]["id"], Value::Null);
    assert_eq!(me["key"]["kind"], "inference");
    assert_eq!(
        (me["instances"].clone(), me["routes"].clone()),
        (Value::Null, Value::Null)
    );
    assert_eq!(me["priority"], "normal");

    // Without a key: 401.
    let (code, _) = server
        .call_as(None, Method::GET, "/api/v1/auth/whoami", None)
        .await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_cli_changes_a_policy_and_the_running_server_follows() {
    let server = TestServer::start(Options::fake()).await;
    running(&server, "m").await;
    let (token, id) = server
        .new_key(json!({"name": "app", "kind": "inference"}))
        .await;
    assert_eq!(chat(&server, &token, "m").await.0, StatusCode::OK);

    let run = server.cli(&["keys", "update", &id, r#"{"routes": ["embeddings"]}"#]);
    assert!(run.ok, "{run:?}");
    assert!(run.stdout.contains("\"embeddings\""), "{run:?}");
    // Another process changed it: the server notices within its sync period.
    common::eventually_async("the CLI's change applies", READY, || async {
        chat(&server, &token, "m").await.0 == StatusCode::FORBIDDEN
    })
    .await;
    let (_, history) = server.history(&format!("key={id}")).await;
    assert_eq!(history["events"][0]["event"], "key_updated", "{history}");
    assert!(history["events"][0]["actor"]
        .as_str()
        .unwrap()
        .starts_with("cli:"));
}
