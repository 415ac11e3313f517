//! End to end against the real llama-server and the Gemma 3 270M model: with one slot and two
//! instances, concurrent requests alternating between them all wait their turn and are answered
//! (issue 13). Run by `make test` (`#[ignore]`d so a plain `cargo test` does not need the model).

mod common;

use common::{real_backend, Options, TestServer};
use reqwest::StatusCode;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// Generous: the model loads in about a second, but CI machines are shared and slow.
const READY: Duration = Duration::from_secs(120);

#[tokio::test]
#[ignore = "needs llama-server and the model: run with `make e2e`"]
async fn alternating_requests_through_one_slot_are_all_answered() {
    let backend = real_backend();
    let opts = Options::real(&backend.server).with_yaml("instances:\n  max_running_instances: 1\n");
    let server = Arc::new(TestServer::start(opts).await);
    for name in ["a", "b"] {
        let body = json!({"model": backend.model, "ctx_size": 512, "threads": 1});
        let (code, created) = server.create(name, body).await;
        assert_eq!(code, StatusCode::CREATED, "{created}");
        server.wait_status(name, "running", READY).await;
    }

    let requests: Vec<_> = (0..6)
        .map(|i| {
            let server = server.clone();
            let model = if i % 2 == 0 { "a" } else { "b" };
            tokio::spawn(async move {
                let extra = json!({"max_tokens": 4, "temperature": 0});
                tokio::time::timeout(READY * 2, server.chat(model, extra))
                    .await
                    .expect("answered in time")
            })
        })
        .collect();

    for (i, request) in requests.into_iter().enumerate() {
        let (code, answer) = request.await.unwrap();
        if code != StatusCode::OK {
            // What the instances went through says why.
            let (_, history) = server.history("limit=100").await;
            panic!("request {i}: {code} {answer}\nhistory: {history:#}");
        }
        assert!(answer["choices"][0].is_object(), "{answer}");
    }
}
