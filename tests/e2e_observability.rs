//! End to end with the real llama-server and model: the tokens llamactl meters (metrics, activity,
//! usage) equal what the backend itself reported in its answers (plain, streamed, native); the
//! exposition passes the Prometheus project's own parsers (Python `prometheus_client`, text and
//! OpenMetrics); the live event stream shows the real start.
//!
//! Ignored by default; `make e2e` runs it (see `e2e_openai.rs` for the variables).

mod common;

use common::{Options, TestServer, ADMIN_KEY, INFERENCE_KEY};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const LOAD: Duration = Duration::from_secs(120);

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run `make e2e`"))
}

/// Prompt and completion tokens the answer's own report says.
fn reported(answer: &Value) -> (u64, u64) {
    let usage = &answer["usage"];
    match (
        usage["prompt_tokens"].as_u64(),
        usage["completion_tokens"].as_u64(),
    ) {
        (Some(p), Some(c)) => (p, c),
        _ => (
            answer["tokens_evaluated"]
                .as_u64()
                .expect("tokens_evaluated"),
            answer["tokens_predicted"]
                .as_u64()
                .expect("tokens_predicted"),
        ),
    }
}

/// The last event of a stream that reports tokens.
fn last_report(stream: &str) -> Value {
    stream
        .split("\n\n")
        .filter_map(|event| event.trim().strip_prefix("data: "))
        .filter_map(|data| serde_json::from_str::<Value>(data).ok())
        .filter(|v| v.get("usage").is_some_and(|u| !u.is_null()) || v.get("timings").is_some())
        .last()
        .expect("a streamed event with usage or timings")
}

/// A sample's value in Prometheus text, by exact series (name and labels as printed).
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sample {series} in:\n{text}"))
}

#[tokio::test]
#[ignore = "needs llama-server and a model: make e2e"]
async fn metered_tokens_equal_the_backends_own_report() {
    let server = TestServer::start(Options::real(&env("LLAMACTL_TEST_LLAMA_SERVER"))).await;
    let model = env("LLAMACTL_TEST_MODEL");
    // Watch the live events from before the instance exists.
    let events = reqwest::Client::new()
        .get(format!("{}/api/v1/events?instance=gemma", server.base))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .expect("events");
    assert_eq!(events.status(), StatusCode::OK);
    let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = seen.clone();
    tokio::spawn(async move {
        use futures_util::StreamExt;
        let mut stream = events.bytes_stream();
        while let Some(Ok(chunk)) = stream.next().await {
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&chunk));
        }
    });
    let (code, body) = server
        .create(
            "gemma",
            json!({"model": model, "ctx_size": 512, "metrics": true}),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    server.wait_status("gemma", "running", LOAD).await;
    common::eventually("the event stream saw the start", LOAD, || {
        let seen = seen.lock().unwrap();
        let starting = seen.find("\"status\":\"starting\"");
        let running = seen.find("\"status\":\"running\"");
        matches!((starting, running), (Some(s), Some(r)) if s < r)
            && seen.contains("\"event\":\"ready\"")
    })
    .await;

    let mut prompt = 0;
    let mut completion = 0;
    // A plain chat answer: `usage`.
    let (code, answer) = server
        .chat("gemma", json!({"max_tokens": 8, "temperature": 0}))
        .await;
    assert_eq!(code, StatusCode::OK, "{answer}");
    let (p, c) = reported(&answer);
    assert!(p > 0 && c > 0, "{answer}");
    prompt += p;
    completion += c;

    // A streamed answer: its last event.
    let body = json!({
        "model": "gemma", "stream": true, "max_tokens": 8, "temperature": 0,
        "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "Count to five."}]
    });
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", server.base))
        .bearer_auth(INFERENCE_KEY)
        .json(&body)
        .send()
        .await
        .expect("stream");
    assert_eq!(resp.status(), StatusCode::OK);
    let text = resp.text().await.expect("stream body");
    let last = last_report(&text);
    let (p, c) = match last.get("usage").filter(|u| !u.is_null()) {
        Some(_) => reported(&last),
        None => (
            last["timings"]["prompt_n"].as_u64().unwrap(),
            last["timings"]["predicted_n"].as_u64().unwrap(),
        ),
    };
    prompt += p;
    completion += c;

    // llama-server's native completion, through the instance proxy.
    let (code, native) = server
        .call_as(
            Some(INFERENCE_KEY),
            Method::POST,
            "/api/v1/instances/gemma/proxy/completion",
            Some(json!({"prompt": "The sky is", "n_predict": 4})),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{native}");
    let (p, c) = reported(&native);
    prompt += p;
    completion += c;

    // The stream is counted once its last byte has gone; poll for it.
    let scrape = || async {
        let (code, text) = server.call(Method::GET, "/metrics", None).await;
        assert_eq!(code, StatusCode::OK);
        text.as_str().expect("text").to_string()
    };
    common::eventually_async("all three requests are counted", LOAD, || async {
        scrape().await.contains(
            "llamactl_instance_requests_total{instance=\"gemma\",route=\"chat_completions\",code=\"200\"} 2",
        )
    })
    .await;
    let text = scrape().await;
    assert_eq!(
        sample(
            &text,
            "llamactl_instance_prompt_tokens_total{instance=\"gemma\"}"
        ),
        prompt as f64
    );
    assert_eq!(
        sample(
            &text,
            "llamactl_instance_completion_tokens_total{instance=\"gemma\"}"
        ),
        completion as f64
    );
    assert_eq!(
        sample(
            &text,
            "llamactl_key_completion_tokens_total{key_id=\"\",key_name=\"config-inference-key\"}"
        ),
        completion as f64
    );

    // The activity record and the usage totals say the same.
    let (code, usage) = server
        .call(Method::GET, "/api/v1/usage?group_by=instance", None)
        .await;
    assert_eq!(code, StatusCode::OK, "{usage}");
    assert_eq!(usage["total"]["requests"], 3, "{usage}");
    assert_eq!(usage["total"]["prompt_tokens"], prompt, "{usage}");
    assert_eq!(usage["total"]["completion_tokens"], completion, "{usage}");
    let (code, activity) = server
        .call(Method::GET, "/api/v1/activity?instance=gemma", None)
        .await;
    assert_eq!(code, StatusCode::OK, "{activity}");
    let records = activity["records"].as_array().expect("records");
    assert_eq!(records.len(), 3, "{activity}");
    assert_eq!(
        records.iter().filter(|r| r["streamed"] == true).count(),
        1,
        "{activity}"
    );
    assert!(records.iter().all(|r| r["status"] == 200), "{activity}");

    // llama-server's own metrics (the instance runs with `metrics: true`) pass through.
    let (code, own) = server
        .call(Method::GET, "/metrics?instance=gemma", None)
        .await;
    assert_eq!(code, StatusCode::OK, "{own}");
    assert!(own.as_str().unwrap().contains("llamacpp:"), "{own}");

    // Both formats pass the Prometheus project's own parsers.
    let python = env("LLAMACTL_TEST_PYTHON");
    let check = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/metrics/parse_exposition.py");
    let run = Command::new(&python)
        .arg(&check)
        .arg(format!("{}/metrics", server.base))
        .env("LLAMACTL_KEY", ADMIN_KEY)
        .output()
        .expect("run the parser");
    assert!(
        run.status.success(),
        "the exposition does not parse:\n{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
}
