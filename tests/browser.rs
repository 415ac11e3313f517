//! Browser tests: the dashboard in a real headless Chromium (Debian's `chromium`), driven by
//! Playwright for Python, against a llamactl this test starts with the stand-in backend.
//! Screenshots go to `target/browser-screenshots/`.
//!
//! Ignored by a plain `cargo test`: `make browser` (part of `make test`) installs Chromium and
//! Playwright and runs them with `LLAMACTL_TEST_PYTHON` (a Python with Playwright) and
//! `LLAMACTL_TEST_CHROMIUM` (the browser) set.

mod common;

use common::browser::{browse, screenshots};
use common::{Options, TestServer, ADMIN_KEY};
use serde_json::json;
use std::time::Duration;

/// How long an instance of the stand-in backend may take to run.
const READY: Duration = Duration::from_secs(20);

#[tokio::test]
#[ignore = "needs Chromium and Playwright: make browser"]
async fn sign_in_see_the_landing_page_sign_out_and_a_revoked_keys_session_is_gone() {
    let server = TestServer::start(Options::fake()).await;
    let (key, id) = server
        .new_key(json!({"name": "browser-test", "kind": "management"}))
        .await;
    browse(
        "sign_in.py",
        &[
            ("LLAMACTL_URL", &server.base),
            ("LLAMACTL_KEY", &key),
            ("LLAMACTL_KEY_ID", &id),
            ("LLAMACTL_ADMIN_KEY", ADMIN_KEY),
        ],
    )
    .await;
    for shot in ["sign-in.png", "sign-in-error.png"] {
        assert!(screenshots().join(shot).is_file(), "no screenshot {shot}");
    }
}

#[tokio::test]
#[ignore = "needs Chromium and Playwright: make browser"]
async fn instances_are_created_watched_live_stopped_and_a_refused_form_shows_the_error_at_its_field(
) {
    let server = TestServer::start(Options::fake()).await;
    let (key, _) = server
        .new_key(json!({"name": "operator", "kind": "management"}))
        .await;
    let ready = tempfile::tempdir().expect("temp dir");
    let ready_file = ready.path().join("ready");
    let ready_path = ready_file.display().to_string();
    browse(
        "instances.py",
        &[
            ("LLAMACTL_URL", &server.base),
            ("LLAMACTL_KEY", &key),
            ("READY_FILE", &ready_path),
        ],
    )
    .await;
    // What the page did is what the API sees.
    assert_eq!(server.status("web").await, "stopped");
    assert_eq!(server.get("bad").await.0.as_u16(), 404);
    for shot in [
        "instances.png",
        "instances-phone.png",
        "instance-new-error.png",
    ] {
        assert!(screenshots().join(shot).is_file(), "no screenshot {shot}");
    }
}

#[tokio::test]
#[ignore = "needs Chromium and Playwright: make browser"]
async fn one_instance_shows_its_command_definition_history_playground_and_live_log_and_is_edited() {
    let server = TestServer::start(Options::fake()).await;
    server
        .create_running(
            "chat",
            json!({"model": "/models/demo.gguf", "ctx_size": 512}),
            READY,
        )
        .await;
    let (key, _) = server
        .new_key(json!({"name": "operator", "kind": "management"}))
        .await;
    browse(
        "instance.py",
        &[
            ("LLAMACTL_URL", &server.base),
            ("LLAMACTL_KEY", &key),
            ("LLAMACTL_ADMIN_KEY", ADMIN_KEY),
            ("INSTANCE", "chat"),
        ],
    )
    .await;
    assert!(screenshots().join("instance.png").is_file());
    // The playground's chats went the /v1 way: recorded with the session's key.
    let (_, activity) = server.activity("instance=chat").await;
    let chats = activity["records"]
        .as_array()
        .map(|all| {
            all.iter()
                .filter(|r| r["key_name"] == "operator" && r["route"] == "chat_completions")
                .count()
        })
        .unwrap_or_default();
    assert_eq!(chats, 2, "{activity}");
}

#[tokio::test]
#[ignore = "needs Chromium and Playwright: make browser"]
async fn one_instance_charts_its_requests_and_tokens_per_hour_and_day() {
    let server = TestServer::start(Options::fake()).await;
    server
        .create_running("chat", json!({"model": "/models/demo.gguf"}), READY)
        .await;
    let (app_key, _) = server
        .new_key(json!({"name": "app", "kind": "inference", "instances": ["chat"]}))
        .await;
    // Three chats with the configured inference key (7 + 3 tokens each), one with `app` (5 + 4).
    for _ in 0..3 {
        let (status, body) = server
            .chat(
                "chat",
                json!({"fake_prompt_tokens": 7, "fake_completion_tokens": 3}),
            )
            .await;
        assert_eq!(status.as_u16(), 200, "{body}");
    }
    let body = json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}],
        "fake_prompt_tokens": 5, "fake_completion_tokens": 4});
    let (status, answer) = server
        .call_as(
            Some(&app_key),
            reqwest::Method::POST,
            "/v1/chat/completions",
            Some(body),
        )
        .await;
    assert_eq!(status.as_u16(), 200, "{answer}");
    let (key, _) = server
        .new_key(json!({"name": "operator", "kind": "management"}))
        .await;
    browse(
        "instance_charts.py",
        &[
            ("LLAMACTL_URL", &server.base),
            ("LLAMACTL_KEY", &key),
            ("LLAMACTL_APP_KEY", &app_key),
            ("INSTANCE", "chat"),
            ("REQUESTS", "4"),
            ("PROMPT", "26"),
            ("COMPLETION", "13"),
            ("APP_PROMPT", "5"),
            ("APP_COMPLETION", "4"),
        ],
    )
    .await;
    for shot in ["instance-charts.png", "instance-charts-phone.png"] {
        assert!(screenshots().join(shot).is_file(), "no screenshot {shot}");
    }
}

#[tokio::test]
#[ignore = "needs Chromium and Playwright: make browser"]
async fn keys_are_created_shown_once_and_revoked_and_an_inference_key_sees_only_its_instances() {
    let server = TestServer::start(Options::fake()).await;
    for name in ["alpha", "beta"] {
        let (status, _) = server
            .create(name, json!({"model": "/models/demo.gguf"}))
            .await;
        assert_eq!(status.as_u16(), 201);
    }
    let (key, _) = server
        .new_key(json!({"name": "operator", "kind": "management"}))
        .await;
    browse(
        "keys.py",
        &[("LLAMACTL_URL", &server.base), ("LLAMACTL_KEY", &key)],
    )
    .await;
    // The page's revocation is the API's: the key is revoked there too.
    let (_, keys) = server
        .call(reqwest::Method::GET, "/api/v1/auth/keys", None)
        .await;
    let chat = keys
        .as_array()
        .and_then(|all| all.iter().find(|k| k["name"] == "chat-app"))
        .expect("the key made in the page");
    assert_eq!(chat["status"], "revoked");
    assert_eq!(chat["instances"], json!(["alpha"]));
}

#[tokio::test]
#[ignore = "needs Chromium and Playwright: make browser"]
async fn the_system_page_shows_versions_devices_running_against_the_limit_and_memory() {
    let server =
        TestServer::start(Options::fake().with_yaml("instances:\n  max_running_instances: 3\n"))
            .await;
    server
        .create_running("alpha", json!({"model": "/models/demo.gguf"}), READY)
        .await;
    let (key, _) = server
        .new_key(json!({"name": "operator", "kind": "management"}))
        .await;
    browse(
        "system.py",
        &[
            ("LLAMACTL_URL", &server.base),
            ("LLAMACTL_KEY", &key),
            ("INSTANCE", "alpha"),
        ],
    )
    .await;
}

#[tokio::test]
#[ignore = "needs Chromium and Playwright: make browser"]
async fn the_activity_page_lists_requests_and_sums_tokens_per_key_instance_and_day() {
    let server = TestServer::start(Options::fake()).await;
    server
        .create_running("alpha", json!({"model": "/models/demo.gguf"}), READY)
        .await;
    for _ in 0..3 {
        let (status, body) = server.chat("alpha", json!({"fake_prompt_tokens": 7})).await;
        assert_eq!(status.as_u16(), 200, "{body}");
    }
    let (key, _) = server
        .new_key(json!({"name": "operator", "kind": "management"}))
        .await;
    browse(
        "activity.py",
        &[
            ("LLAMACTL_URL", &server.base),
            ("LLAMACTL_KEY", &key),
            ("INSTANCE", "alpha"),
            ("REQUESTS", "3"),
            ("PROMPT", "7"),
        ],
    )
    .await;
}
