//! Issue 15, findings 1, 2, 3 and the redaction half of 6: the API never chooses what runs, option
//! values stay values, children get a clean environment, and secret-looking values stay hidden.

mod common;

use common::{fake_backend, pid_of, Options, TestServer, ADMIN_KEY, INFERENCE_KEY};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
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

/// The argv the stand-in backend of a running instance was started with (its `GET /args`, through
/// the instance proxy).
async fn backend_args(server: &TestServer, name: &str) -> Vec<String> {
    let (code, body) = server
        .call(
            Method::GET,
            &format!("/api/v1/instances/{name}/proxy/args"),
            None,
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    serde_json::from_value(body["args"].clone()).expect("args")
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

/// Asserts a create answers 400 with an error naming `needle`.
async fn assert_refused(server: &TestServer, name: &str, body: Value, needle: &str) {
    let (code, answer) = server.create(name, body.clone()).await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{body} -> {answer}");
    let error = answer["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(needle),
        "{body}: error {error:?} does not name {needle}"
    );
}

#[tokio::test]
async fn instance_path_cannot_choose_the_program() {
    // Arrange: the configured command is a bare name found on llamactl's own PATH; another program
    // of the same name waits in a directory an attacker would like to put first.
    let tmp = tempfile::tempdir().unwrap();
    let (good, somewhere) = (tmp.path().join("good"), tmp.path().join("somewhere"));
    std::fs::create_dir_all(&good).unwrap();
    std::fs::create_dir_all(&somewhere).unwrap();
    let fake = fake_backend().display().to_string();
    script(
        &good,
        "llama-server",
        &format!("exec python3 '{fake}' \"$@\""),
    );
    let marker = tmp.path().join("evil-ran");
    script(
        &somewhere,
        "llama-server",
        &format!("touch '{}'\nexec python3 '{fake}' \"$@\"", marker.display()),
    );
    let path = format!(
        "{}:{}",
        good.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let server = TestServer::start(Options::real("llama-server").with_env("PATH", &path)).await;

    // Act + Assert: the instance may not set PATH, on create or update.
    let evil =
        json!({"model": "/m.gguf", "environment": {"PATH": somewhere.display().to_string()}});
    assert_refused(&server, "evil", evil, "PATH").await;
    let (code, _) = server.create("ok", json!({"model": "/m.gguf"})).await;
    assert_eq!(code, StatusCode::CREATED);
    server.wait_status("ok", "running", READY).await;
    let (code, body) = server
        .update(
            "ok",
            json!({"environment": {"PATH": somewhere.display().to_string()}}),
        )
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"].as_str().unwrap().contains("PATH"), "{body}");

    // The program that runs is the one resolved at startup, and the other one never ran.
    let (code, version) = server
        .call(Method::GET, "/api/v1/server/version", None)
        .await;
    assert_eq!(code, StatusCode::OK, "{version}");
    assert!(!marker.exists(), "the program in the instance's PATH ran");
}

#[tokio::test]
async fn loader_and_option_variables_are_refused_by_name() {
    let server = TestServer::start(Options::fake()).await;
    for var in [
        "LD_PRELOAD",
        "LD_LIBRARY_PATH",
        "LLAMA_ARG_HOST",
        "LLAMA_ARG_PORT",
        "LLAMA_ARG_LOG_FILE",
        "PYTHONPATH",
        "HOME",
        "GGML_BACKEND_PATH",
        "AIP_HTTP_PORT",
    ] {
        let body = json!({"model": "/m.gguf", "environment": {var: "/tmp/x"}});
        assert_refused(&server, "m", body, var).await;
    }
    // GPU selection and tuning stay possible.
    let (code, body) = server
        .create(
            "m",
            json!({"model": "/m.gguf", "environment": {"CUDA_VISIBLE_DEVICES": "0", "GGML_CUDA_NO_PINNED": "1"}}),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn the_operators_variables_cannot_be_overridden_per_instance() {
    let mut opts = Options::fake();
    opts.backend_env = vec![("CUDA_VISIBLE_DEVICES".into(), "0".into())];
    let server = TestServer::start(opts).await;
    let body = json!({"model": "/m.gguf", "environment": {"CUDA_VISIBLE_DEVICES": "7"}});
    assert_refused(&server, "m", body, "CUDA_VISIBLE_DEVICES").await;
}

#[tokio::test]
async fn option_values_never_become_flags() {
    let server = TestServer::start(Options::fake()).await;
    for (body, option) in [
        (json!({"model": "/m.gguf", "alias": "--host"}), "alias"),
        (json!({"model": "/m.gguf", "alias": "-x"}), "alias"),
        (json!({"model": "--port"}), "model"),
        (
            json!({"model": "/m.gguf", "lora": ["a.gguf", "--x"]}),
            "lora",
        ),
        (
            json!({"model": "/m.gguf", "n_gpu_layers": "-1"}),
            "n_gpu_layers",
        ),
    ] {
        assert_refused(&server, "m", body, option).await;
    }

    // Negative numbers are rendered by llamactl and stay accepted; its own --host/--port come last.
    let (code, body) = server
        .create(
            "m",
            json!({"model": "/m.gguf", "n_gpu_layers": -1, "seed": -1, "alias": "a-b"}),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    let port = server.wait_status("m", "running", READY).await["port"]
        .as_u64()
        .unwrap();
    let args = backend_args(&server, "m").await;
    let tail = ["--host", "127.0.0.1", "--port", &port.to_string()];
    assert!(args.ends_with(&tail.map(String::from)), "{args:?}");
    let gpu = args.iter().position(|a| a == "--n-gpu-layers").unwrap();
    assert_eq!(args[gpu + 1], "-1", "{args:?}");
}

#[tokio::test]
async fn options_that_write_host_files_are_refused_or_confined() {
    let server = TestServer::start(Options::fake()).await;
    let db = server.db_path().display().to_string();
    for (body, option) in [
        (json!({"model": "/m.gguf", "log_file": db}), "log_file"),
        (json!({"model": "/m.gguf", "log-file": db}), "log-file"),
        (
            json!({"model": "/m.gguf", "log_prompts_dir": "/tmp"}),
            "log_prompts_dir",
        ),
        (json!({"model": "/m.gguf", "path": "/"}), "path"),
        (json!({"model": "/m.gguf", "tools": "all"}), "tools"),
        (
            json!({"model": "/m.gguf", "video_ffmpeg_dir": "/tmp"}),
            "video_ffmpeg_dir",
        ),
        (
            json!({"model": db, "model_url": "http://127.0.0.1:1/x.gguf"}),
            "model_url",
        ),
        (
            json!({"model": "/m.gguf", "slot_save_path": "/tmp"}),
            "slot_save_path",
        ),
        (
            json!({"model": "/m.gguf", "slot_save_path": "../.."}),
            "slot_save_path",
        ),
    ] {
        assert_refused(&server, "m", body, option).await;
    }

    // A relative slot directory is kept inside the instance's own directory under the data dir.
    let (code, body) = server
        .create("m", json!({"model": "/m.gguf", "slot_save_path": "kv"}))
        .await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    server.wait_status("m", "running", READY).await;
    let args = backend_args(&server, "m").await;
    let at = args.iter().position(|a| a == "--slot-save-path").unwrap();
    let dir = server.data_dir.join("slots").join("m").join("kv");
    assert_eq!(Path::new(&args[at + 1]), dir, "{args:?}");
    assert!(dir.is_dir(), "{} was not created", dir.display());
    let (code, _) = server.delete("m").await;
    assert_eq!(code, StatusCode::NO_CONTENT);
    assert!(!server.data_dir.join("slots").join("m").exists());
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

#[tokio::test]
async fn secret_looking_values_are_hidden_but_reach_the_backend() {
    let server = TestServer::start(Options::fake()).await;
    let secrets = ["hf_SECRETTOKEN123", "sk-SECRETAPIKEY456", "hf_ENVSECRET789"];
    let (code, created) = server
        .create(
            "m",
            json!({
                "model": "/m.gguf", "hf_token": secrets[0], "api_key": secrets[1],
                "environment": {"HF_TOKEN": secrets[2]}
            }),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED, "{created}");
    server.wait_status("m", "running", READY).await;

    // Shown nowhere: the answer, the view, the log (header and what the backend echoed), history.
    let (_, view) = server.get("m").await;
    assert_eq!(view["options"]["backend_options"]["hf_token"], "***");
    assert_eq!(view["options"]["environment"]["HF_TOKEN"], "***");
    let (_, logs) = server.logs("m", None).await;
    let history = format!("{:?}", server.instance_history("m").await);
    let (_, list) = server.call(Method::GET, "/api/v1/instances", None).await;
    for shown in [
        created.to_string(),
        view.to_string(),
        list.to_string(),
        logs.to_string(),
        history,
    ] {
        for secret in secrets {
            assert!(!shown.contains(secret), "{secret} shown in {shown}");
        }
    }
    let logs = logs.as_str().unwrap();
    assert!(logs.contains("--hf-token *** --api-key ***"), "{logs}");

    // The backend got the real values.
    let args = backend_args(&server, "m").await;
    assert!(args.contains(&secrets[0].to_string()), "{args:?}");
    assert!(args.contains(&secrets[1].to_string()), "{args:?}");

    // Sending the view back (as a GET-edit-PUT client does) keeps the secrets.
    let mut echoed = view["options"].clone();
    echoed["backend_options"]["ctx_size"] = json!(512);
    let (code, body) = server.update("m", echoed).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    server.wait_status("m", "running", READY).await;
    let args = backend_args(&server, "m").await;
    assert!(args.contains(&secrets[1].to_string()), "{args:?}");
    let environ = backend_environ(&server, "m").await;
    assert!(
        environ.contains(&format!("HF_TOKEN={}", secrets[2])),
        "{environ:?}"
    );
}

#[tokio::test]
async fn a_failure_reason_does_not_quote_secrets() {
    let server = TestServer::start(Options::fake()).await;
    let secret = "sk-SECRETAPIKEY456";
    let (code, body) = server
        .create(
            "m",
            json!({"model": "/m.gguf", "api_key": secret, "fake_exit_before_ready": 1}),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    let failed = server.wait_status("m", "failed", READY).await;
    let reason = failed["last_error"].as_str().unwrap();
    assert!(reason.contains("--api-key ***"), "{reason}");
    assert!(!reason.contains(secret), "{reason}");
    let history = format!("{:?}", server.instance_history("m").await);
    assert!(!history.contains(secret), "{history}");
}
