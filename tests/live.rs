//! Live logs (`GET .../logs?follow=true`) and live events (`GET /api/v1/events`), against the real
//! binary with the stand-in backend.

mod common;

use common::{Options, TestServer, ADMIN_KEY, INFERENCE_KEY};
use futures_util::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::io::Write;
use std::pin::Pin;
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(30);

type Bytes = Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>;

/// A streamed answer read as it arrives.
struct Live {
    body: Bytes,
    text: String,
}

impl Live {
    async fn open(server: &TestServer, path: &str) -> Live {
        let resp = server.raw(Some(ADMIN_KEY), Method::GET, path).await;
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        Live {
            body: Box::pin(resp.bytes_stream()),
            text: String::new(),
        }
    }

    /// Reads until the text received so far contains `want`; fails after a generous deadline.
    async fn until(&mut self, want: &str) -> &str {
        let deadline = Instant::now() + LONG;
        while !self.text.contains(want) {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.body.next()).await {
                Ok(Some(Ok(piece))) => self.text.push_str(&String::from_utf8_lossy(&piece)),
                Ok(other) => panic!(
                    "stream ended ({other:?}) before {want:?}; got:\n{}",
                    self.text
                ),
                Err(_) => panic!("no {want:?} in time; got:\n{}", self.text),
            }
        }
        &self.text
    }

    /// Reads until the stream ends; fails if it does not within a generous deadline.
    async fn until_end(&mut self) {
        let deadline = Instant::now() + LONG;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.body.next()).await {
                Ok(Some(Ok(piece))) => self.text.push_str(&String::from_utf8_lossy(&piece)),
                Ok(_) => return,
                Err(_) => panic!("the stream did not end; got:\n{}", self.text),
            }
        }
    }

    /// The server-sent events received so far: (event, data).
    fn events(&self) -> Vec<(String, Value)> {
        self.text
            .split("\n\n")
            .filter_map(|block| {
                let mut name = None;
                let mut data = None;
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        name = Some(v.to_string());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data = serde_json::from_str(v).ok();
                    }
                }
                Some((name?, data?))
            })
            .collect()
    }

    /// Reads until an event matches `want`.
    async fn until_event(&mut self, what: &str, want: impl Fn(&str, &Value) -> bool) {
        let deadline = Instant::now() + LONG;
        while !self.events().iter().any(|(e, d)| want(e, d)) {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.body.next()).await {
                Ok(Some(Ok(piece))) => self.text.push_str(&String::from_utf8_lossy(&piece)),
                Ok(other) => panic!(
                    "stream ended ({other:?}) before {what}; got:\n{}",
                    self.text
                ),
                Err(_) => panic!("no {what} in time; got:\n{}", self.text),
            }
        }
    }
}

fn append(server: &TestServer, name: &str, text: &str) {
    let path = server.data_dir.join("logs").join(format!("{name}.log"));
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    f.write_all(text.as_bytes()).unwrap();
}

#[tokio::test]
async fn follow_streams_new_lines_across_a_restart_without_repeating_the_tail() {
    let server = TestServer::start(Options::fake()).await;
    let (code, v) = server.create("m", json!({"model": "/m"})).await;
    assert_eq!(code, StatusCode::CREATED, "{v}");
    server.wait_status("m", "running", LONG).await;
    append(&server, "m", "marker before follow\n");

    let mut live = Live::open(&server, "/api/v1/instances/m/logs?follow=true&lines=1").await;
    let tail = live.until("marker before follow\n").await.to_string();
    assert!(tail.starts_with("marker before follow\n"), "{tail}");

    append(&server, "m", "marker after follow\n");
    live.until("marker after follow\n").await;

    let (code, v) = server.op("m", "restart").await;
    assert_eq!(code, StatusCode::OK, "{v}");
    // The second run's header and its backend's first lines, from the same (appended) file.
    live.until("=== llamactl: starting 'm'").await;
    let text = live.until("fake llama-server starting").await.to_string();

    assert_eq!(text.matches("marker before follow").count(), 1, "{text}");
    assert_eq!(text.matches("marker after follow").count(), 1, "{text}");
    assert_eq!(
        text.matches("=== llamactl: starting 'm'").count(),
        1,
        "{text}"
    );
    let after = text.find("marker after follow").unwrap();
    assert!(
        text.find("=== llamactl: starting 'm'").unwrap() > after,
        "{text}"
    );
    // The plain read is unchanged by following.
    let (code, plain) = server.logs("m", Some(1)).await;
    assert_eq!(code, StatusCode::OK);
    assert!(plain.as_str().is_some_and(|t| t.ends_with('\n')), "{plain}");
}

#[tokio::test]
async fn follow_waits_for_a_stopped_instance_and_ends_when_it_is_deleted() {
    let server = TestServer::start(Options::fake()).await;
    server.create("s", json!({"model": "/m"})).await;
    server.wait_status("s", "running", LONG).await;
    server.op("s", "stop").await;
    server.wait_status("s", "stopped", LONG).await;

    let mut live = Live::open(&server, "/api/v1/instances/s/logs?follow=true&lines=0").await;
    server.op("s", "start").await;
    live.until("fake llama-server starting").await;

    let (code, _) = server.delete("s").await;
    assert_eq!(code, StatusCode::NO_CONTENT);
    live.until_end().await;
}

#[tokio::test]
async fn follow_refuses_bad_input_and_inference_keys() {
    let server = TestServer::start(Options::fake()).await;
    server.create("r", json!({"model": "/m"})).await;
    for (path, want) in [
        (
            "/api/v1/instances/r/logs?follow=yes",
            StatusCode::BAD_REQUEST,
        ),
        ("/api/v1/instances/r/logs?follow=1", StatusCode::BAD_REQUEST),
        (
            "/api/v1/instances/r/logs?follow=true&lines=-2",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/v1/instances/ghost/logs?follow=true",
            StatusCode::NOT_FOUND,
        ),
        ("/api/v1/events?instance=..", StatusCode::BAD_REQUEST),
        ("/api/v1/events?other=1", StatusCode::BAD_REQUEST),
    ] {
        let (code, body) = server.call(Method::GET, path, None).await;
        assert_eq!(code, want, "{path}: {body}");
        assert!(body["error"].is_string(), "{path}: {body}");
    }
    for path in ["/api/v1/instances/r/logs?follow=true", "/api/v1/events"] {
        let (code, body) = server
            .call_as(Some(INFERENCE_KEY), Method::GET, path, None)
            .await;
        assert_eq!(code, StatusCode::FORBIDDEN, "{path}: {body}");
        let (code, _) = server.call_as(None, Method::GET, path, None).await;
        assert_eq!(code, StatusCode::UNAUTHORIZED, "{path}");
    }
    // follow=false is the plain read.
    let (code, body) = server
        .call(
            Method::GET,
            "/api/v1/instances/r/logs?follow=false&lines=1",
            None,
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
}

/// Positions of each wanted (event, name) in the received events, in order; fails if one is
/// missing or out of order.
fn assert_in_order(events: &[(String, Value)], wanted: &[(&str, &str)], instance: &str) {
    let mut from = 0;
    for (kind, what) in wanted {
        let found = events[from..].iter().position(|(e, d)| {
            e == kind
                && match *kind {
                    "history" => d["event"] == *what,
                    _ => d["status"] == *what && d["instance"] == instance,
                }
        });
        match found {
            Some(at) => from += at + 1,
            None => panic!("no {kind} {what} after position {from} in {events:#?}"),
        }
    }
}

#[tokio::test]
async fn the_event_stream_sees_a_lifecycle_and_a_key_in_order() {
    let server = TestServer::start(Options::fake()).await;
    let mut all = Live::open(&server, "/api/v1/events").await;
    let mut only_e = Live::open(&server, "/api/v1/events?instance=e").await;

    let (_, key_id) = server
        .new_key(json!({"name": "watcher", "kind": "inference"}))
        .await;
    server.create("e", json!({"model": "/m"})).await;
    server.wait_status("e", "running", LONG).await;
    let (code, _) = server.op("e", "stop").await;
    assert_eq!(code, StatusCode::OK);
    all.until_event("stopped status", |e, d| {
        e == "status" && d["status"] == "stopped"
    })
    .await;

    let events = all.events();
    assert_in_order(
        &events,
        &[
            ("history", "key_created"),
            ("history", "created"),
            ("history", "start_requested"),
            ("status", "starting"),
            ("status", "running"),
            ("history", "stop_requested"),
            ("status", "stopping"),
            ("status", "stopped"),
        ],
        "e",
    );
    // A history event is the entry the history lists, under the same id.
    let (_, created) = events
        .iter()
        .find(|(e, d)| e == "history" && d["event"] == "key_created")
        .unwrap();
    assert_eq!(created["key_id"], key_id.as_str());
    let (_, page) = server
        .history(&format!("key={key_id}&event=key_created"))
        .await;
    assert_eq!(&page["events"][0], created);
    assert!(
        all.text.contains(&format!("id: {}\n", created["id"])),
        "{}",
        all.text
    );
    // A status event says what it was before, and when.
    let running = events
        .iter()
        .find(|(e, d)| e == "status" && d["status"] == "running")
        .map(|(_, d)| d.clone())
        .unwrap();
    assert_eq!(running["previous"], "starting");
    assert!(running["at_ms"].as_i64().is_some() && running["time"].is_string());

    // The filtered stream starts with the instance: the key came first and was left out.
    only_e
        .until_event("stopped status", |e, d| {
            e == "status" && d["status"] == "stopped"
        })
        .await;
    let filtered = only_e.events();
    assert!(
        filtered.iter().all(|(_, d)| d["instance"] == "e"),
        "{filtered:#?}"
    );
}

#[tokio::test]
async fn live_streams_end_when_the_server_shuts_down() {
    let mut server = TestServer::start(Options::fake()).await;
    server.create("z", json!({"model": "/m"})).await;
    server.wait_status("z", "running", LONG).await;
    let mut logs = Live::open(&server, "/api/v1/instances/z/logs?follow=true&lines=1").await;
    let mut events = Live::open(&server, "/api/v1/events").await;
    // Both answers have begun: the tail arrived, and an event did.
    logs.until("\n").await;
    server.op("z", "stop").await;
    events.until("event: status").await;

    let exit = server.signal_and_wait(libc::SIGTERM);
    assert!(exit.success(), "{exit:?}");
    logs.until_end().await;
    events.until_end().await;
    let output = server.output_text();
    assert!(
        !output.contains("did not finish in time"),
        "the shutdown waited for the live streams:\n{output}"
    );
}
