//! API keys against the real server binary: the key API, scoped auth, revocation, first boot,
//! failed-auth rate limiting, secrets never written, and the `llamactl keys` CLI.

mod common;

use common::{eventually_async, Options, TestServer, ADMIN_KEY, INFERENCE_KEY};
use reqwest::{header, Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

const READY: Duration = Duration::from_secs(15);

/// The token with its last character changed: well-formed, right id, wrong secret.
fn tamper(token: &str) -> String {
    let (head, last) = token.split_at(token.len() - 1);
    format!("{head}{}", if last == "Q" { "R" } else { "Q" })
}

/// A key's whole lifetime through the API, and every status code the key API answers with.
#[tokio::test]
async fn key_api_creates_lists_shows_and_revokes() {
    let server = TestServer::start(Options::fake()).await;
    // Config keys exist, so nothing was created on first boot.
    let (code, list) = server.call(Method::GET, "/api/v1/auth/keys", None).await;
    assert_eq!((code, list), (StatusCode::OK, json!([])));

    let (code, created) = server
        .create_key(json!({"name": "ops", "kind": "management"}))
        .await;
    assert_eq!(code, StatusCode::CREATED, "{created}");
    let token = created["key"].as_str().unwrap().to_string();
    let id = created["id"].as_str().unwrap().to_string();
    assert!(token.starts_with(&format!("llamactl_mk_{id}_")), "{token}");
    assert_eq!(created["name"], "ops");
    assert_eq!(created["kind"], "management");
    assert_eq!(created["status"], "active");
    assert_eq!(created["instances"], Value::Null);
    assert_eq!(created["created_by"], "config-management-key");

    // The new key works, through either header.
    let (code, _) = server
        .call_as(Some(&token), Method::GET, "/api/v1/instances", None)
        .await;
    assert_eq!(code, StatusCode::OK);
    let resp = reqwest::Client::new()
        .get(format!("{}/api/v1/auth/keys", server.base))
        .header("x-api-key", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    // Listed and shown, never with the secret or its hash; last use shows at once, though it is
    // written to the database only in batches.
    let (code, list) = server.call(Method::GET, "/api/v1/auth/keys", None).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(list.as_array().unwrap().len(), 1);
    let (code, shown) = server
        .call(Method::GET, &format!("/api/v1/auth/keys/{id}"), None)
        .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(shown["id"], id.as_str());
    assert!(shown["last_used_at"].is_i64(), "{shown}");
    assert_eq!(created["last_used_at"], Value::Null);
    for view in [&list[0], &shown] {
        let text = view.to_string();
        assert!(view.get("key").is_none(), "{text}");
        assert!(!text.contains("argon2"), "{text}");
        assert!(!text.contains(&token[token.len() - 40..]), "{text}");
    }

    // Unknown ids are 404 with the error body.
    for (method, path) in [
        (Method::GET, "/api/v1/auth/keys/nosuchkey0"),
        (Method::DELETE, "/api/v1/auth/keys/nosuchkey0"),
    ] {
        let (code, body) = server.call(method, path, None).await;
        assert_eq!(code, StatusCode::NOT_FOUND, "{path}");
        assert!(
            body["error"].as_str().unwrap().contains("not found"),
            "{body}"
        );
    }

    // Revoke: 204, then the key is refused and shown as revoked; revoking again changes nothing.
    assert_eq!(server.revoke_key(&id).await, StatusCode::NO_CONTENT);
    let (code, body) = server
        .call_as(Some(&token), Method::GET, "/api/v1/instances", None)
        .await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "API key revoked");
    let (_, shown) = server
        .call(Method::GET, &format!("/api/v1/auth/keys/{id}"), None)
        .await;
    assert_eq!(shown["status"], "revoked");
    assert!(shown["revoked_at"].is_i64(), "{shown}");
    assert_eq!(server.revoke_key(&id).await, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn bad_key_requests_are_400_with_the_reason() {
    let server = TestServer::start(Options::fake()).await;
    let cases = [
        (json!({"kind": "management"}), "name"),
        (json!({"name": "", "kind": "management"}), "1 to 64"),
        (json!({"name": "n"}), "kind"),
        (json!({"name": "n", "kind": "superuser"}), "unknown variant"),
        (
            json!({"name": "n", "kind": "management", "instances": ["a"]}),
            "only inference",
        ),
        (
            json!({"name": "n", "kind": "inference", "instances": []}),
            "at least one",
        ),
        (
            json!({"name": "n", "kind": "inference", "instances": ["a/b"]}),
            "invalid instance name",
        ),
        (
            json!({"name": "n", "kind": "inference", "expires_at": 1000}),
            "future",
        ),
        (
            json!({"name": "n", "kind": "inference", "expires_at": "tomorrow"}),
            "RFC 3339",
        ),
        (
            json!({"name": "n", "kind": "inference", "secret": "mine"}),
            "unknown field",
        ),
        (json!("n"), "invalid type"),
    ];
    for (body, want) in cases {
        let (code, answer) = server.create_key(body.clone()).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{body}: {answer}");
        let message = answer["error"].as_str().unwrap_or_default();
        assert!(message.contains(want), "{body}: {message}");
    }
    let (_, list) = server.call(Method::GET, "/api/v1/auth/keys", None).await;
    assert_eq!(list, json!([]), "a bad request created a key");
}

#[tokio::test]
async fn keys_are_checked_by_kind_on_every_route_group() {
    let server = TestServer::start(Options::fake()).await;
    server.create("k", json!({"model": "/m"})).await;
    server.wait_status("k", "running", READY).await;
    let (mgmt, _) = server
        .new_key(json!({"name": "m", "kind": "management"}))
        .await;
    let (inf, _) = server
        .new_key(json!({"name": "i", "kind": "inference"}))
        .await;
    let wrong_secret = tamper(&mgmt);
    let cases: &[(Option<&str>, &str, StatusCode)] = &[
        (None, "/api/v1/auth/keys", StatusCode::UNAUTHORIZED),
        (Some("nope"), "/api/v1/auth/keys", StatusCode::UNAUTHORIZED),
        (
            Some(&wrong_secret),
            "/api/v1/auth/keys",
            StatusCode::UNAUTHORIZED,
        ),
        (Some(&inf), "/api/v1/auth/keys", StatusCode::FORBIDDEN),
        (
            Some(INFERENCE_KEY),
            "/api/v1/auth/keys",
            StatusCode::FORBIDDEN,
        ),
        (Some(&inf), "/api/v1/history", StatusCode::FORBIDDEN),
        (Some(&mgmt), "/api/v1/auth/keys", StatusCode::OK),
        (Some(&mgmt), "/api/v1/history", StatusCode::OK),
        (
            Some(&inf),
            "/api/v1/instances/k/proxy/health",
            StatusCode::OK,
        ),
        (
            Some(&mgmt),
            "/api/v1/instances/k/proxy/health",
            StatusCode::OK,
        ),
        (
            Some(&wrong_secret),
            "/api/v1/instances/k/proxy/health",
            StatusCode::UNAUTHORIZED,
        ),
    ];
    for (key, path, want) in cases {
        let (code, body) = server.call_as(*key, Method::GET, path, None).await;
        assert_eq!(code, *want, "{key:?} {path}: {body}");
        if !code.is_success() {
            assert!(body["error"].is_string(), "{body}");
        }
    }
}

#[tokio::test]
async fn an_inference_key_limited_to_instances_gets_403_for_any_other() {
    let server = TestServer::start(Options::fake()).await;
    for name in ["a", "b"] {
        server.create(name, json!({"model": "/m"})).await;
    }
    for name in ["a", "b"] {
        server.wait_status(name, "running", READY).await;
    }
    let (code, created) = server
        .create_key(json!({"name": "only-a", "kind": "inference", "instances": ["a"]}))
        .await;
    assert_eq!(code, StatusCode::CREATED);
    assert_eq!(created["instances"], json!(["a"]));
    let only_a = created["key"].as_str().unwrap();
    let cases: &[(&str, &str, StatusCode)] = &[
        (only_a, "a", StatusCode::OK),
        (only_a, "b", StatusCode::FORBIDDEN),
        // Other names are refused without telling whether they exist.
        (only_a, "nonexistent", StatusCode::FORBIDDEN),
        (ADMIN_KEY, "b", StatusCode::OK),
        (INFERENCE_KEY, "b", StatusCode::OK),
    ];
    for (key, instance, want) in cases {
        let (code, body) = server
            .call_as(
                Some(key),
                Method::GET,
                &format!("/api/v1/instances/{instance}/proxy/health"),
                None,
            )
            .await;
        assert_eq!(code, *want, "{instance}: {body}");
        if *want == StatusCode::FORBIDDEN {
            assert!(body["error"].as_str().unwrap().contains(instance), "{body}");
        }
        // The same decision on the OpenAI-compatible route, where `model` names the instance.
        let chat = json!({"model": instance, "messages": [{"role": "user", "content": "hi"}]});
        let (code, body) = server
            .post_raw(
                Some(key),
                "/v1/chat/completions",
                &[],
                chat.to_string().into_bytes(),
            )
            .await;
        assert_eq!(code, *want, "/v1 {instance}: {body}");
    }
    // /v1/models lists only what the key may use.
    assert_eq!(model_ids(&server, only_a).await, vec!["a"]);
    assert_eq!(model_ids(&server, INFERENCE_KEY).await, vec!["a", "b"]);
    assert_eq!(model_ids(&server, ADMIN_KEY).await, vec!["a", "b"]);
}

/// The sorted ids `GET /v1/models` shows to `key`.
async fn model_ids(server: &TestServer, key: &str) -> Vec<String> {
    let (code, list) = server
        .call_as(Some(key), Method::GET, "/v1/models", None)
        .await;
    assert_eq!(code, StatusCode::OK, "{list}");
    let mut ids: Vec<String> = list["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|m| m["id"].as_str().expect("id").to_string())
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn revocation_takes_effect_on_the_next_request() {
    let server = TestServer::start(Options::fake()).await;
    for _ in 0..3 {
        let (token, id) = server
            .new_key(json!({"name": "short-lived", "kind": "management"}))
            .await;
        // Used twice, so it is certainly cached.
        for _ in 0..2 {
            let (code, _) = server
                .call_as(Some(&token), Method::GET, "/api/v1/version", None)
                .await;
            assert_eq!(code, StatusCode::OK);
        }
        assert_eq!(server.revoke_key(&id).await, StatusCode::NO_CONTENT);
        let (code, body) = server
            .call_as(Some(&token), Method::GET, "/api/v1/version", None)
            .await;
        assert_eq!(code, StatusCode::UNAUTHORIZED, "{body}");
    }
}

#[tokio::test]
async fn an_expired_key_is_refused_with_401() {
    let server = TestServer::start(Options::fake()).await;
    // Short, so the test is quick; nothing below depends on it being long enough.
    const LIFETIME_SECS: i64 = 5;
    let expires_at = chrono::Utc::now().timestamp() + LIFETIME_SECS;
    let (token, id) = server
        .new_key(json!({"name": "brief", "kind": "inference", "expires_at": expires_at}))
        .await;
    let (code, _) = server
        .call_as(
            Some(&token),
            Method::GET,
            "/api/v1/instances/x/proxy/health",
            None,
        )
        .await;
    // Judged only if the answer came before the expiry: a busy machine may take longer than the
    // key's lifetime to get here, and that says nothing about llamactl.
    if chrono::Utc::now().timestamp() < expires_at {
        assert_ne!(code, StatusCode::UNAUTHORIZED, "refused before expiry");
    }
    eventually_async("the key to expire", Duration::from_secs(30), || async {
        let (code, body) = server
            .call_as(
                Some(&token),
                Method::GET,
                "/api/v1/instances/x/proxy/health",
                None,
            )
            .await;
        code == StatusCode::UNAUTHORIZED && body["error"] == "API key expired"
    })
    .await;
    let (_, shown) = server
        .call(Method::GET, &format!("/api/v1/auth/keys/{id}"), None)
        .await;
    assert_eq!(shown["status"], "expired");
}

#[tokio::test]
async fn a_flood_of_wrong_keys_gets_429_while_valid_keys_keep_working() {
    // The default burst (10), and no refill during the test, so the count is exact.
    let opts = Options::fake().with_env("LLAMACTL_FAILED_AUTH_PERIOD", "3600");
    let server = TestServer::start(opts).await;
    let (stored, _) = server
        .new_key(json!({"name": "app", "kind": "management"}))
        .await;
    let (inference, _) = server
        .new_key(json!({"name": "i", "kind": "inference"}))
        .await;
    let well_formed_but_wrong = tamper(&stored);
    for attempt in 0..30 {
        let wrong = if attempt % 2 == 0 {
            "guess-1234"
        } else {
            well_formed_but_wrong.as_str()
        };
        let resp = server
            .raw(Some(wrong), Method::GET, "/api/v1/instances")
            .await;
        if attempt < 10 {
            assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "attempt {attempt}");
        } else {
            assert_eq!(
                resp.status(),
                StatusCode::TOO_MANY_REQUESTS,
                "attempt {attempt}"
            );
            let retry: u64 = resp.headers()[header::RETRY_AFTER]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!((1..=3601).contains(&retry), "Retry-After {retry}");
            let body: Value = resp.json().await.unwrap();
            assert!(
                body["error"].as_str().unwrap().contains("too many"),
                "{body}"
            );
        }
        // The same client with a valid key is never limited, nor is a key of the wrong kind.
        for key in [ADMIN_KEY, stored.as_str()] {
            let (code, _) = server
                .call_as(Some(key), Method::GET, "/api/v1/instances", None)
                .await;
            assert_eq!(code, StatusCode::OK, "attempt {attempt}");
        }
        let (code, _) = server
            .call_as(Some(&inference), Method::GET, "/api/v1/instances", None)
            .await;
        assert_eq!(code, StatusCode::FORBIDDEN, "attempt {attempt}");
    }
    // A missing key counts as a failure too.
    let (code, _) = server
        .call_as(None, Method::GET, "/api/v1/instances", None)
        .await;
    assert_eq!(code, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn a_created_secret_is_never_written_to_the_database_or_the_log() {
    let mut server = TestServer::start(Options::fake()).await;
    let (token, id) = server
        .new_key(json!({"name": "secret-test", "kind": "management"}))
        .await;
    let secret = token.rsplit('_').next().unwrap().to_string();
    assert_eq!(secret.len(), 40);
    for _ in 0..3 {
        let (code, _) = server
            .call_as(Some(&token), Method::GET, "/api/v1/instances", None)
            .await;
        assert_eq!(code, StatusCode::OK);
    }
    let (code, _) = server
        .call_as(
            Some(&token),
            Method::POST,
            "/api/v1/instances/s",
            Some(json!({"model": "/m"})),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED);

    let look = |when: &str, server: &TestServer| {
        let mut searched = Vec::new();
        let mut saw_id = false;
        for suffix in ["", "-wal", "-shm"] {
            let path = server.data_dir.join(format!("llamactl.db{suffix}"));
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            searched.push(path.display().to_string());
            let text = String::from_utf8_lossy(&bytes);
            saw_id |= text.contains(&id);
            assert!(
                !text.contains(&secret),
                "{when}: secret found in {}",
                path.display()
            );
        }
        assert!(!searched.is_empty(), "{when}: no database file found");
        assert!(
            saw_id,
            "{when}: key id not found, so the wrong files were searched"
        );
        for entry in walk(&server.data_dir) {
            let bytes = std::fs::read(&entry).unwrap_or_default();
            assert!(
                !String::from_utf8_lossy(&bytes).contains(&secret),
                "{when}: secret found in {}",
                entry.display()
            );
        }
        assert!(
            !server.output_text().contains(&secret),
            "{when}: secret in the server's log"
        );
    };
    look("while running", &server);
    // Stopping flushes last-use times and checkpoints the WAL into the main file.
    server.stop();
    look("after stop", &server);
    // Last use was kept in memory and written on the way down.
    let run = server.cli(&["keys", "list", "--json"]);
    let list: Value = serde_json::from_str(&run.stdout).unwrap_or_default();
    assert!(list[0]["last_used_at"].is_i64(), "{run:?}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[tokio::test]
async fn first_boot_creates_one_management_key_that_survives_a_restart() {
    // No management key in the file or the environment.
    let opts = Options::fake().with_env("LLAMACTL_MANAGEMENT_KEYS", "");
    let server = TestServer::start(opts).await;
    let output = server.output_text();
    // Written to a private file whose path is printed; the key itself is never printed.
    let file = server.data_dir.join("initial-management-key");
    let token = std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("no key file on first boot ({e}):\n{output}"))
        .trim()
        .to_string();
    assert!(token.starts_with("llamactl_mk_"), "{token}");
    assert!(output.contains(&file.display().to_string()), "{output}");
    assert!(!output.contains(&token), "{output}");
    let (code, list) = server
        .call_as(Some(&token), Method::GET, "/api/v1/auth/keys", None)
        .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["name"], "initial-management-key");
    assert_eq!(list[0]["created_by"], "system");
    // The file's key is gone here: only the printed one works.
    let (code, _) = server
        .call_as(Some(ADMIN_KEY), Method::GET, "/api/v1/auth/keys", None)
        .await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);

    let server = server.restart().await;
    let output = server.output_text();
    assert!(
        !output.contains("llamactl_mk_"),
        "a key was printed again:\n{output}"
    );
    let (code, list) = server
        .call_as(Some(&token), Method::GET, "/api/v1/auth/keys", None)
        .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
}

#[tokio::test]
async fn no_key_is_created_on_first_boot_when_management_auth_is_off() {
    let opts = Options::fake()
        .with_env("LLAMACTL_MANAGEMENT_KEYS", "")
        .with_env("LLAMACTL_REQUIRE_MANAGEMENT_AUTH", "false");
    let server = TestServer::start(opts).await;
    assert!(!server.output_text().contains("llamactl_mk_"));
    let (code, list) = server
        .call_as(None, Method::GET, "/api/v1/auth/keys", None)
        .await;
    assert_eq!((code, list), (StatusCode::OK, json!([])));
}

#[tokio::test]
async fn cli_creates_lists_and_revokes_keys_in_the_servers_database() {
    let mut server = TestServer::start(Options::fake()).await;

    // With the server stopped: the CLI works on the data dir alone.
    server.stop();
    let run = server.cli(&["keys", "create", "--name", "ops", "--kind", "management"]);
    assert!(run.ok, "{run:?}");
    let token = run.stdout.trim().to_string();
    assert!(token.starts_with("llamactl_mk_"), "{run:?}");
    assert!(run.stderr.contains("shown only this once"), "{run:?}");
    let server = server.restart().await;
    let (code, _) = server
        .call_as(Some(&token), Method::GET, "/api/v1/instances", None)
        .await;
    assert_eq!(code, StatusCode::OK, "a key created by the CLI is refused");

    // With the server running: create, list, and revoke.
    let run = server.cli(&[
        "keys",
        "create",
        "--name",
        "app",
        "--kind",
        "inference",
        "--instance",
        "m1",
        "--instance",
        "m2",
        "--expires-at",
        "2099-01-01T00:00:00Z",
    ]);
    assert!(run.ok, "{run:?}");
    let inference = run.stdout.trim().to_string();
    assert!(inference.starts_with("llamactl_ik_"), "{run:?}");

    let run = server.cli(&["keys", "list", "--json"]);
    assert!(run.ok, "{run:?}");
    let list: Value = serde_json::from_str(&run.stdout).unwrap();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["ops", "app"]);
    assert_eq!(list[1]["instances"], json!(["m1", "m2"]));
    assert!(list[0]["created_by"].as_str().unwrap().starts_with("cli:"));
    assert!(!run.stdout.contains(&token[token.len() - 40..]));
    let table = server.cli(&["keys", "list"]);
    assert!(
        table.ok && table.stdout.contains("ops") && table.stdout.contains("m1,m2"),
        "{table:?}"
    );

    let id = list[0]["id"].as_str().unwrap();
    let run = server.cli(&["keys", "revoke", id]);
    assert!(run.ok, "{run:?}");
    // The server notices a revocation by another process within a few seconds.
    eventually_async(
        "the server to refuse the revoked key",
        Duration::from_secs(10),
        || async {
            let (code, _) = server
                .call_as(Some(&token), Method::GET, "/api/v1/instances", None)
                .await;
            code == StatusCode::UNAUTHORIZED
        },
    )
    .await;

    let (_, history) = server.history(&format!("key={id}")).await;
    let events: Vec<(&str, &str)> = history["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["event"].as_str().unwrap(), e["actor"].as_str().unwrap()))
        .collect();
    assert_eq!(events.len(), 2, "{history}");
    assert_eq!(events[0].0, "key_revoked");
    assert_eq!(events[1].0, "key_created");
    assert!(
        events.iter().all(|(_, actor)| actor.starts_with("cli:")),
        "{history}"
    );

    // Mistakes are errors that say what is wrong.
    let run = server.cli(&["keys", "revoke", "nosuchkey0"]);
    assert!(!run.ok && run.stderr.contains("not found"), "{run:?}");
    let run = server.cli(&["keys", "create", "--name", "x", "--kind", "root"]);
    assert!(!run.ok && run.stderr.contains("'root'"), "{run:?}");
    let run = server.cli(&[
        "keys",
        "create",
        "--name",
        "x",
        "--kind",
        "management",
        "--instance",
        "m1",
    ]);
    assert!(!run.ok && run.stderr.contains("only inference"), "{run:?}");
}
