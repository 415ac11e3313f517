//! llamactl's own figures, read from its `/metrics` as an operator's Prometheus would.

use std::collections::HashMap;

/// What a leak would show in.
#[derive(Clone, Copy, Debug, Default)]
pub struct Figures {
    /// `process_resident_memory_bytes`.
    pub rss: f64,
    /// `process_open_fds`.
    pub fds: f64,
    /// `llamactl_tasks`.
    pub tasks: f64,
    /// `llamactl_open_connections` (the scrape's own included).
    pub connections: f64,
}

/// The unlabelled samples of a Prometheus text exposition, by name.
fn samples(text: &str) -> HashMap<&str, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (name, value) = l.split_once(' ')?;
            if name.contains('{') {
                return None;
            }
            Some((name, value.trim().parse().ok()?))
        })
        .collect()
}

/// Reads the figures from `base` with the management `key`.
pub async fn read(client: &reqwest::Client, base: &str, key: &str) -> Result<Figures, String> {
    let resp = client
        .get(format!("{base}/metrics"))
        .bearer_auth(key)
        .send()
        .await
        .map_err(|e| format!("scrape: {e}"))?;
    let status = resp.status();
    let text = resp.text().await.map_err(|e| format!("scrape: {e}"))?;
    if !status.is_success() {
        return Err(format!("scrape: HTTP {status}: {text}"));
    }
    let s = samples(&text);
    let get = |name: &str| {
        s.get(name)
            .copied()
            .ok_or_else(|| format!("scrape: no {name} in /metrics"))
    };
    Ok(Figures {
        rss: get("process_resident_memory_bytes")?,
        fds: get("process_open_fds")?,
        tasks: get("llamactl_tasks")?,
        connections: get("llamactl_open_connections")?,
    })
}
