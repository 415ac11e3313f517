//! Measures (prints; asserts nothing about speed) the request rate of a cheap authenticated GET
//! with 1 and with 1,000 keys stored, with a config-file key, and with auth off.
//!
//! `cargo test --release --test bench_auth -- --ignored --nocapture`
//! (`LLAMACTL_BENCH_REQUESTS`, default 20000, sets the number of requests per measurement).

mod common;

use common::{Options, TestServer, ADMIN_KEY};
use llamactl::auth::hash::Hasher;
use llamactl::db::keys::KeyRow;
use llamactl::db::Db;
use reqwest::StatusCode;
use serde_json::json;
use std::time::{Duration, Instant};

/// Concurrent clients, each over its own keep-alive connection.
const TASKS: usize = 8;

/// The cheap authenticated route (stands in for `/v1/models`, which lives on another branch).
const PATH: &str = "/api/v1/version";

fn requests() -> usize {
    std::env::var("LLAMACTL_BENCH_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
}

/// Fires `total` GETs from `TASKS` tasks; returns requests per second. Every answer must be 200:
/// a valid key is never rate limited.
async fn rate(server: &TestServer, key: Option<&str>, total: usize) -> f64 {
    let url = format!("{}{PATH}", server.base);
    let per_task = total / TASKS;
    let started = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let url = url.clone();
            let key = key.map(String::from);
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut refused = 0usize;
                for _ in 0..per_task {
                    let mut req = client.get(&url);
                    if let Some(key) = &key {
                        req = req.bearer_auth(key);
                    }
                    let resp = req.send().await.expect("request");
                    if resp.status() != StatusCode::OK {
                        refused += 1;
                    }
                    let _ = resp.bytes().await;
                }
                refused
            })
        })
        .collect();
    let mut refused = 0;
    for task in tasks {
        refused += task.await.expect("task");
    }
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(refused, 0, "valid requests were refused (429?)");
    (per_task * TASKS) as f64 / secs
}

/// Time of one request.
async fn once(server: &TestServer, key: &str) -> Duration {
    let started = Instant::now();
    let (code, _) = server
        .call_as(Some(key), reqwest::Method::GET, PATH, None)
        .await;
    assert_eq!(code, StatusCode::OK);
    started.elapsed()
}

/// Stores `n` more keys directly (one hash shared by all: only the count matters here).
async fn seed_keys(server: &TestServer, n: usize) {
    let db = Db::open(&server.db_path()).await.expect("open db");
    let hash = Hasher::new().hash("unused-secret").await.expect("hash");
    let now = chrono::Utc::now().timestamp();
    for i in 0..n {
        let row = KeyRow {
            id: format!("seed{i:06}"),
            name: format!("seeded-{i}"),
            kind: if i % 2 == 0 {
                "inference"
            } else {
                "management"
            }
            .into(),
            secret_hash: hash.clone(),
            instances: None,
            created_at: now,
            created_by: "bench".into(),
            expires_at: None,
            last_used_at: None,
            revoked_at: None,
        };
        db.insert_key(&row).await.expect("insert key");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement, not a test: run with --ignored --nocapture"]
async fn measure_authenticated_request_rate() {
    let total = requests();
    let server = TestServer::start(Options::fake()).await;
    let (key, _) = server
        .new_key(json!({"name": "bench", "kind": "management"}))
        .await;
    let cold_one = once(&server, &key).await;
    let warm_one = once(&server, &key).await;
    let one_key = rate(&server, Some(&key), total).await;
    let config_key = rate(&server, Some(ADMIN_KEY), total).await;

    seed_keys(&server, 999).await;
    let (code, list) = server
        .call(reqwest::Method::GET, "/api/v1/auth/keys", None)
        .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(list.as_array().map(Vec::len), Some(1000));
    let thousand_keys = rate(&server, Some(&key), total).await;
    let (fresh, _) = server
        .new_key(json!({"name": "fresh", "kind": "management"}))
        .await;
    let cold_thousand = once(&server, &fresh).await;
    let warm_thousand = once(&server, &fresh).await;
    drop(server);

    let open =
        TestServer::start(Options::fake().with_env("LLAMACTL_REQUIRE_MANAGEMENT_AUTH", "false"))
            .await;
    let auth_off = rate(&open, None, total).await;

    println!("GET {PATH}, {total} requests from {TASKS} keep-alive clients:");
    println!("  stored key, 1 key stored       {one_key:>9.0} req/s");
    println!("  stored key, 1,000 keys stored  {thousand_keys:>9.0} req/s");
    println!("  config-file key                {config_key:>9.0} req/s");
    println!("  auth off                       {auth_off:>9.0} req/s");
    println!("first request with a new key (argon2 verify), then cached:");
    println!("  1 key stored       {cold_one:>10.2?}  then {warm_one:.2?}");
    println!("  1,000 keys stored  {cold_thousand:>10.2?}  then {warm_thousand:.2?}");
}
