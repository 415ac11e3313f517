//! One phase of load (the warm-up, then the measured run): the workers, what they share, and the
//! calls they make through it, each counted in the tally.

use crate::llamactl::{ADMIN_KEY, INFERENCE_KEY};
use crate::opts::Opts;
use crate::tally::{Kind, Outcome, Tally};
use crate::{chat, churn, crashes, keys};
use futures_util::StreamExt;
use reqwest::{Method, RequestBuilder};
use serde_json::Value;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The instances that serve the chat load the whole time (and are crashed now and then).
pub const STABLE: [&str; 2] = ["soak-a", "soak-b"];

/// How long one request may take: an on-demand start waits for the backend to be ready.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// What every phase shares: the tally, the keys, and how much of each fault was made.
#[derive(Debug)]
pub struct Shared {
    /// Every answer.
    pub tally: Tally,
    /// A stored inference key made through the API at the start; valid throughout.
    pub stored_key: String,
    /// A stored key made and revoked through the API at the start.
    pub revoked_key: String,
    /// Backends killed with SIGKILL.
    pub kills: AtomicU64,
    /// Create → update → stop → on-demand start → crash loop → delete cycles finished.
    pub churns: AtomicU64,
    /// Cycles in which a call answered otherwise than it should, or a status never came.
    pub churn_failures: AtomicU64,
    /// Keys created, used and revoked through the API during the load.
    pub key_cycles: AtomicU64,
    /// The settings.
    pub opts: Opts,
}

impl Shared {
    /// Adds one to `counter`.
    pub fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// One phase's view: fresh clients (dropped with the phase, so their connections close) and the
/// moment the workers stop starting new work.
#[derive(Debug)]
pub struct Ctx {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// Requests from 127.0.0.1 with valid keys.
    pub client: reqwest::Client,
    /// Requests with bad keys, from 127.0.0.2: their failed-auth budget is not the valid
    /// clients' (a spent budget answers 429, which the soak counts as the 4xx it is).
    pub stranger: reqwest::Client,
    /// Across phases.
    pub shared: Arc<Shared>,
    /// Which phase (names churned instances apart).
    pub phase: &'static str,
    until: Instant,
}

fn client_from(ip: Ipv4Addr) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::V4(ip))
        .timeout(REQUEST_TIMEOUT)
        .build()
        .expect("an HTTP client")
}

impl Ctx {
    /// A phase against `base` that starts new work for `length`.
    pub fn new(base: &str, shared: Arc<Shared>, phase: &'static str, length: Duration) -> Ctx {
        Ctx {
            base: base.to_string(),
            client: client_from(Ipv4Addr::LOCALHOST),
            stranger: client_from(Ipv4Addr::new(127, 0, 0, 2)),
            shared,
            phase,
            until: Instant::now() + length,
        }
    }

    /// True until the phase's time is up.
    pub fn running(&self) -> bool {
        Instant::now() < self.until
    }

    /// Sleeps `pause`, or less if the phase ends first.
    pub async fn pause(&self, pause: Duration) {
        let left = self.until.saturating_duration_since(Instant::now());
        tokio::time::sleep(pause.min(left)).await;
    }

    /// A management request to `path` with the management key.
    pub fn manage(&self, method: Method, path: &str) -> RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(ADMIN_KEY)
    }

    /// An inference `POST` to `path` from `client` with `key`.
    pub fn infer(&self, client: &reqwest::Client, path: &str, key: &str) -> RequestBuilder {
        client.post(format!("{}{path}", self.base)).bearer_auth(key)
    }

    /// Sends `req` and reads its whole answer, counted as `kind` to `instance`; the status and the
    /// body as JSON (`Null` if it is not), or `None` if there was no answer.
    pub async fn call(
        &self,
        kind: Kind,
        instance: Option<&str>,
        req: RequestBuilder,
    ) -> Option<(u16, Value)> {
        let began = Instant::now();
        let answer = async {
            let resp = req.send().await.map_err(|e| format!("{e:#}"))?;
            let status = resp.status().as_u16();
            let text = resp.text().await.map_err(|e| format!("{e:#}"))?;
            Ok::<_, String>((status, text))
        };
        match answer.await {
            Ok((status, text)) => {
                let body = serde_json::from_str(&text).unwrap_or(Value::Null);
                let tally = &self.shared.tally;
                tally.record(kind, instance, began, Outcome::Status(status, text));
                Some((status, body))
            }
            Err(e) => {
                self.shared
                    .tally
                    .record(kind, instance, began, Outcome::Failed(e));
                None
            }
        }
    }

    /// Sends `req` and follows a streamed answer to its end, counted as `kind` to `instance`: a 200
    /// counts only if the stream ends with `[DONE]`.
    pub async fn stream(&self, kind: Kind, instance: &str, req: RequestBuilder) {
        let began = Instant::now();
        let outcome = async {
            let resp = req.send().await.map_err(|e| format!("{e:#}"))?;
            let status = resp.status().as_u16();
            if status != 200 {
                let text = resp.text().await.map_err(|e| format!("{e:#}"))?;
                return Ok(Outcome::Status(status, text));
            }
            // Only the end matters: keep enough of it to see a `[DONE]` split across reads.
            let (mut tail, mut bytes) = (Vec::new(), 0usize);
            let mut body = resp.bytes_stream();
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| format!("stream cut after {bytes} bytes: {e:#}"))?;
                bytes += chunk.len();
                tail.extend_from_slice(&chunk);
                let keep = tail.len().saturating_sub(64);
                tail.drain(..keep);
            }
            if String::from_utf8_lossy(&tail).contains("[DONE]") {
                Ok(Outcome::Status(status, String::new()))
            } else {
                Err(format!("stream of {bytes} bytes ended without [DONE]"))
            }
        };
        let outcome = outcome.await.unwrap_or_else(Outcome::Failed);
        self.shared
            .tally
            .record(kind, Some(instance), began, outcome);
    }

    /// Polls the instance until its status is one of `want`; its view, or why not.
    pub async fn wait_status(
        &self,
        name: &str,
        want: &[&str],
        timeout: Duration,
    ) -> Result<Value, String> {
        let path = format!("/api/v1/instances/{name}");
        let deadline = Instant::now() + timeout;
        let mut last = Value::Null;
        while Instant::now() < deadline {
            if let Some((200, view)) = self
                .call(Kind::Read, Some(name), self.manage(Method::GET, &path))
                .await
            {
                if want.iter().any(|w| view["status"] == *w) {
                    return Ok(view);
                }
                last = view;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!("{name} not {want:?} within {timeout:?}: {last}"))
    }

    /// The inference key the valid clients use, chosen by `pick`: the config file's or the stored.
    pub fn valid_key(&self, pick: bool) -> &str {
        if pick {
            INFERENCE_KEY
        } else {
            &self.shared.stored_key
        }
    }
}

/// Runs every worker of one phase until its time is up and each has finished what it began.
pub async fn run(ctx: Arc<Ctx>) {
    let mut workers = tokio::task::JoinSet::new();
    for n in 0..ctx.shared.opts.clients {
        workers.spawn(chat::run(ctx.clone(), n as u64));
    }
    workers.spawn(keys::run(ctx.clone()));
    workers.spawn(churn::run(ctx.clone()));
    workers.spawn(crashes::run(ctx.clone()));
    while let Some(done) = workers.join_next().await {
        if let Err(e) = done {
            panic!("a soak worker failed: {e}");
        }
    }
}
