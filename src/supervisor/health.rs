//! Polls a starting backend's `/health` until it answers 200.

use crate::proxy::HttpClient;
use axum::body::Body;
use hyper::{Request, StatusCode};
use std::time::Duration;
use tokio::sync::mpsc;

/// Polls quickly at first, then every 50 ms: a user (or a cold inference request) waits on this,
/// and a `/health` call on loopback costs the backend next to nothing.
/// Sends `generation` once the backend is healthy.
pub async fn probe_until_ready(
    client: HttpClient,
    port: u16,
    generation: u64,
    ready: mpsc::UnboundedSender<u64>,
) {
    let uri = format!("http://127.0.0.1:{port}/health");
    let mut delay = Duration::from_millis(10);
    loop {
        if is_healthy(&client, &uri).await {
            let _ = ready.send(generation);
            return;
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(50));
    }
}

async fn is_healthy(client: &HttpClient, uri: &str) -> bool {
    let Ok(req) = Request::get(uri).body(Body::empty()) else {
        return false;
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), client.request(req)).await,
        Ok(Ok(resp)) if resp.status() == StatusCode::OK
    )
}
