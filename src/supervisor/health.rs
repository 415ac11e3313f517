//! Polls a starting backend's `/health` until it answers 200.

use crate::proxy::{self, HttpClient};
use hyper::StatusCode;
use std::time::Duration;
use tokio::sync::mpsc;

/// Polls quickly at first (a user waits on this), then backs off to a few times a second.
/// Sends `generation` once the backend is healthy.
pub async fn probe_until_ready(
    client: HttpClient,
    port: u16,
    generation: u64,
    ready: mpsc::UnboundedSender<u64>,
) {
    let mut delay = Duration::from_millis(10);
    loop {
        if is_healthy(&client, port).await {
            let _ = ready.send(generation);
            return;
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(200));
    }
}

async fn is_healthy(client: &HttpClient, port: u16) -> bool {
    matches!(
        tokio::time::timeout(
            Duration::from_secs(2),
            proxy::get_status(client, port, "/health")
        )
        .await,
        Ok(Ok(StatusCode::OK))
    )
}
