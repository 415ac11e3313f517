//! Issue 15, findings 1, 2, 3 and the redaction half of 6: the API never chooses what runs, option
//! values stay values, children get a clean environment, and secret-looking values stay hidden.

mod common;

use common::{pid_of, Options, TestServer, ADMIN_KEY, INFERENCE_KEY};
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

const READY: Duration = Duration::from_secs(15);

/// Writes an executable shell script.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let file = dir.join(name);
    std::fs::write(&file, format!("#!/bin/sh\n{body}\n")).expect("write script");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    file
}

/// The environment of a running instance's backend process, as `NAME=value` entries.
async fn backend_environ(server: &TestServer, name: &str) -> Vec<String> {
    let pid = pid_of(&server.wait_status(name, "running", READY).await);
    let raw = std::fs::read(format!("/proc/{pid}/environ")).expect("read environ");
    raw.split(|b| *b == 0)
        .filter(|e| !e.is_empty())
        .map(|e| String::from_utf8_lossy(e).into_owned())
        .collect()
}

#[tokio::test]
async fn children_start_from_a_clean_environment() {
    // Arrange: llamactl's own environment holds keys (the test's among them) and other settings.
    let mut opts = Options::fake()
        .with_env(
            "LLAMACTL_MANAGEMENT_KEYS",
            &format!("{ADMIN_KEY},env-management-key-value"),
        )
        .with_env(
            "LLAMACTL_INFERENCE_KEYS",
            &format!("{INFERENCE_KEY},env-inference-key-value"),
        )
        .with_env("LLAMACTL_ENABLE_SWAGGER", "false")
        .with_env("UNRELATED_SERVICE_SECRET", "not-for-backends");
    opts.backend_env = vec![("OPERATOR_VAR".into(), "from-operator".into())];
    let server = TestServer::start(opts).await;

    // Act
    let (code, body) = server
        .create(
            "m",
            json!({"model": "/m.gguf", "environment": {"OMP_NUM_THREADS": "3"}}),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    let environ = backend_environ(&server, "m").await;

    // Assert
    let text = environ.join("\n");
    assert!(!text.contains("LLAMACTL_"), "{text}");
    for key in [
        ADMIN_KEY,
        INFERENCE_KEY,
        "env-management-key-value",
        "env-inference-key-value",
    ] {
        assert!(!text.contains(key), "{key} reached the backend: {text}");
    }
    assert!(!text.contains("UNRELATED_SERVICE_SECRET"), "{text}");
    assert!(
        environ.contains(&"OPERATOR_VAR=from-operator".to_string()),
        "{text}"
    );
    assert!(environ.contains(&"OMP_NUM_THREADS=3".to_string()), "{text}");
    assert!(environ.iter().any(|e| e.starts_with("PATH=")), "{text}");
}

#[tokio::test]
async fn backend_queries_start_from_a_clean_environment_too() {
    let tmp = tempfile::tempdir().unwrap();
    let dump = script(tmp.path(), "env-dump", "env");
    let server = TestServer::start(Options::real(&dump.display().to_string()).with_env(
        "LLAMACTL_MANAGEMENT_KEYS",
        &format!("{ADMIN_KEY},env-management-key-value"),
    ))
    .await;
    let (code, body) = server
        .call(Method::GET, "/api/v1/server/version", None)
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let text = body.as_str().unwrap();
    assert!(text.contains("PATH="), "{text}");
    assert!(!text.contains("LLAMACTL_"), "{text}");
    assert!(!text.contains(ADMIN_KEY), "{text}");
}
