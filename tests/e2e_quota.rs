//! End to end with the real llama-server and the official OpenAI Python client: a key's token quota
//! refuses with a 429 the client raises as `openai.RateLimitError`, and the tokens charged to the
//! key are exactly what the backend reported in each answer's usage (plain and streamed).
//!
//! Ignored by default; `make e2e` runs it with LLAMACTL_TEST_LLAMA_SERVER, LLAMACTL_TEST_MODEL and
//! LLAMACTL_TEST_PYTHON set.

mod common;

use common::{Options, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

const LOAD: Duration = Duration::from_secs(120);

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run `make e2e`"))
}

#[tokio::test]
#[ignore = "needs llama-server and a model: make e2e"]
async fn the_openai_client_raises_rate_limit_error_and_the_key_is_charged_the_backends_usage() {
    let python = env("LLAMACTL_TEST_PYTHON");
    let server = TestServer::start(Options::real(&env("LLAMACTL_TEST_LLAMA_SERVER"))).await;
    let (code, created) = server
        .create(
            "gemma",
            json!({"model": env("LLAMACTL_TEST_MODEL"), "ctx_size": 512}),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED, "{created}");
    server.wait_status("gemma", "running", LOAD).await;
    // A day's budget: the test cannot straddle a minute window (it could straddle midnight UTC,
    // once a day, and would then fail loudly).
    let (token, id) = server
        .new_key(json!({"name": "app", "kind": "inference", "limits": {"tokens_per_day": 150}}))
        .await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/openai_client/quota.py");

    let run = tokio::process::Command::new(&python)
        .arg(&script)
        .env("OPENAI_BASE_URL", format!("{}/v1", server.base))
        .env("OPENAI_API_KEY", &token)
        .env("LLAMACTL_CHAT_MODEL", "gemma")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(300), run)
        .await
        .expect("the OpenAI client script finished within 5 minutes")
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    eprintln!("{report}");

    assert_eq!(report["status"], 429, "{report}");
    let headers = &report["headers"];
    assert!(
        headers["retry-after"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    assert_eq!(headers["x-ratelimit-limit-tokens"], "150", "{report}");
    assert_eq!(headers["x-ratelimit-remaining-tokens"], "0", "{report}");
    // The client hands over the body's `error`.
    assert!(
        report["error"]
            .as_str()
            .is_some_and(|e| e.contains("limits.tokens_per_day (150)")),
        "{report}"
    );
    let answered: Vec<u64> = report["answered"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_u64().unwrap())
        .collect();
    assert!(answered.len() >= 2, "{report}");
    let reported: u64 = answered.iter().sum();

    let (code, key) = server
        .call(Method::GET, &format!("/api/v1/auth/keys/{id}"), None)
        .await;
    assert_eq!(code, StatusCode::OK);
    let day = &key["usage"]["tokens_per_day"];
    assert_eq!(day["used"].as_u64(), Some(reported), "{key}");
    // Admitted only while tokens were left: the last answer began below the limit.
    let last = answered.last().copied().unwrap_or(0);
    assert!(reported >= 150 && reported - last < 150, "{answered:?}");
}
