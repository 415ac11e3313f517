//! End to end in the browser with the real llama-server: an instance of the bundled model, a chat
//! in the dashboard's playground, and its tokens on the activity page.
//!
//! Ignored by default; `make e2e` runs it with LLAMACTL_TEST_LLAMA_SERVER, LLAMACTL_TEST_MODEL and
//! LLAMACTL_TEST_PYTHON (a Python with Playwright; LLAMACTL_TEST_BROWSER_PYTHON overrides it for
//! the browser) set, and Debian's chromium installed.

mod common;

use common::browser::browse;
use common::{real_backend, Options, TestServer};
use serde_json::json;
use std::time::Duration;

#[tokio::test]
#[ignore = "needs llama-server, a model, Chromium and Playwright: make e2e"]
async fn a_chat_in_the_playground_streams_an_answer_and_its_tokens_show_in_usage() {
    let backend = real_backend();
    let server = TestServer::start(Options::real(&backend.server)).await;
    server
        .create_running(
            "gemma",
            json!({"model": backend.model, "ctx_size": 512}),
            Duration::from_secs(120),
        )
        .await;
    let (key, _) = server
        .new_key(json!({"name": "operator", "kind": "management"}))
        .await;
    browse(
        "e2e_chat.py",
        &[
            ("LLAMACTL_URL", &server.base),
            ("LLAMACTL_KEY", &key),
            ("INSTANCE", "gemma"),
        ],
    )
    .await;
    let (_, usage) = server.usage("group_by=instance").await;
    assert!(
        usage["total"]["completion_tokens"].as_i64().unwrap_or(0) > 0,
        "{usage}"
    );
}
