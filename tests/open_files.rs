//! File descriptors (issue 11, item 1): started with the soft open-file limit systemd gives a
//! service (1024), llamactl still holds more than a thousand connections; and when descriptors do
//! run out, extra connections are refused at once (not left hanging), counted, and service resumes
//! by itself once connections close. A backend gets the soft limit llamactl was started with.

mod common;

use common::{
    eventually_async, raise_own_open_files, version_request, whole_answer_head, Options,
    TestServer, ADMIN_KEY,
};
use prometheus_parse::{Scrape, Value};
use reqwest::StatusCode;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long one answer, or one refusal, may take on a busy machine.
const ANSWER: Duration = Duration::from_secs(30);
/// The hard limit systemd gives a service by default.
const SYSTEMD_HARD: u64 = 524_288;

/// What came back on a connection that asked for one answer.
#[derive(Debug, PartialEq)]
enum Outcome {
    /// A whole answer with this status line's code.
    Answered(u16),
    /// Closed (or reset) without a whole answer.
    Closed,
}

/// Sends one request on `conn` and reads its answer (a `Content-Length` body), or the close.
/// Panics if neither comes within [`ANSWER`]: a connection left hanging is the failure.
async fn ask(conn: &mut TcpStream) -> Outcome {
    if conn.write_all(&version_request()).await.is_err() {
        return Outcome::Closed;
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(ANSWER, conn.read(&mut buf))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "neither answered nor closed in {ANSWER:?}; got {:?}",
                    String::from_utf8_lossy(&got)
                )
            });
        let n = match n {
            Ok(0) | Err(_) => return Outcome::Closed,
            Ok(n) => n,
        };
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got);
        if let Some(head) = whole_answer_head(&text) {
            let code = head
                .split(' ')
                .nth(1)
                .and_then(|c| c.parse().ok())
                .expect("status code");
            return Outcome::Answered(code);
        }
    }
}

/// The value of `metric` with `labels` in the server's `/metrics`; 0 when absent.
async fn metric(server: &TestServer, metric: &str, labels: &[(&str, &str)]) -> f64 {
    let text = reqwest::Client::new()
        .get(format!("{}/metrics", server.base))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .expect("scrape body");
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("exposition");
    scrape
        .samples
        .iter()
        .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
            _ => panic!("{metric} is not a number"),
        })
        .unwrap_or(0.0)
}

/// How many descriptors the process `pid` holds now.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read the server's fds")
        .count()
}

#[tokio::test]
async fn started_with_a_soft_limit_of_1024_it_holds_1100_connections_at_once() {
    const CONNECTIONS: usize = 1100;
    // The test holds the client side of every connection itself.
    let (_, own_hard) = raise_own_open_files();
    let hard = own_hard.min(SYSTEMD_HARD);
    assert!(
        hard > 2 * CONNECTIONS as u64 + 200,
        "this host's hard open-file limit ({own_hard}) is too low for this test"
    );
    let opts = Options::fake()
        .with_open_file_limits(1024, hard)
        .with_env("LLAMACTL_KEEP_ALIVE_TIMEOUT", "600");
    let server = TestServer::start(opts).await;
    let addr = server.addr();

    // Every connection is opened and answered while all the earlier ones stay open.
    let mut held = Vec::with_capacity(CONNECTIONS);
    for batch in 0..CONNECTIONS / 100 {
        let connects = (0..100).map(|_| async {
            let mut conn = TcpStream::connect(addr).await.expect("connect");
            let outcome = ask(&mut conn).await;
            (conn, outcome)
        });
        for (conn, outcome) in futures_util::future::join_all(connects).await {
            assert_eq!(
                outcome,
                Outcome::Answered(200),
                "a connection of batch {batch} (with {} open) was not served",
                held.len()
            );
            held.push(conn);
        }
    }

    assert!(
        metric(&server, "llamactl_open_connections", &[]).await >= CONNECTIONS as f64,
        "the server does not hold them all at once"
    );
    // All still usable: a second request on each is answered.
    for (i, conn) in held.iter_mut().enumerate() {
        assert_eq!(ask(conn).await, Outcome::Answered(200), "connection {i}");
    }
    assert!(open_fds(server.pid()) > 1024);
    assert_eq!(
        metric(
            &server,
            "llamactl_accept_errors_total",
            &[("kind", "out_of_descriptors")]
        )
        .await,
        0.0
    );
}

#[tokio::test]
async fn out_of_descriptors_extra_connections_are_refused_and_service_resumes() {
    const LIMIT: u64 = 128;
    raise_own_open_files();
    // One client address: only the descriptor limit may stop it, not the per-client cap.
    let opts = Options::fake()
        .with_open_files(LIMIT)
        .with_env("LLAMACTL_MAX_CONNECTIONS_PER_CLIENT", "100000")
        .with_env("LLAMACTL_KEEP_ALIVE_TIMEOUT", "600");
    let server = TestServer::start(opts).await;
    let addr = server.addr();
    let idle = open_fds(server.pid());
    assert!(
        idle + 16 < LIMIT as usize,
        "{idle} descriptors open at rest"
    );

    // More connections than descriptors, one after another, each kept open once answered.
    let mut held = Vec::new();
    let mut refused = Vec::new();
    for _ in 0..LIMIT + 32 {
        let mut conn = TcpStream::connect(addr).await.expect("connect");
        match ask(&mut conn).await {
            Outcome::Answered(200) => held.push(conn),
            other => refused.push(other),
        }
    }
    eprintln!(
        "limit {LIMIT}, {idle} descriptors at rest: {} served and held, {} refused ({} with a 503)",
        held.len(),
        refused.len(),
        refused
            .iter()
            .filter(|o| **o == Outcome::Answered(503))
            .count()
    );
    assert!(held.len() > 16, "only {} served", held.len());
    assert!(
        refused.len() >= 32,
        "only {} of {} refused while {} are held",
        refused.len(),
        LIMIT + 32,
        held.len()
    );
    assert!(
        refused.contains(&Outcome::Answered(503)),
        "no refusal was a 503: {refused:?}"
    );
    assert!(
        refused
            .iter()
            .all(|o| matches!(o, Outcome::Answered(503) | Outcome::Closed)),
        "{refused:?}"
    );

    // Once the connections close, service resumes by itself: the refusals were counted and logged.
    drop(held);
    eventually_async("served again", ANSWER, || async {
        let Ok(mut conn) = TcpStream::connect(addr).await else {
            return false;
        };
        ask(&mut conn).await == Outcome::Answered(200)
    })
    .await;
    let counted = metric(
        &server,
        "llamactl_accept_errors_total",
        &[("kind", "out_of_descriptors")],
    )
    .await;
    assert!(counted >= 1.0, "refusals not counted: {counted}");
    assert!(
        server
            .output
            .lock()
            .unwrap()
            .contains("out of file descriptors"),
        "refusals not logged"
    );
    let (code, _) = server
        .call(reqwest::Method::GET, "/api/v1/version", None)
        .await;
    assert_eq!(code, StatusCode::OK);
}

#[tokio::test]
async fn a_backend_gets_the_soft_limit_llamactl_was_started_with() {
    let (_, own_hard) = raise_own_open_files();
    let hard = own_hard.min(SYSTEMD_HARD);
    assert!(
        hard > 1024,
        "this host's hard open-file limit ({own_hard}) is too low"
    );
    let server = TestServer::start(Options::fake().with_open_file_limits(1024, hard)).await;
    let (code, created) = server
        .create("a", serde_json::json!({"model": "/m.gguf"}))
        .await;
    assert_eq!(code, StatusCode::CREATED, "{created}");
    server.wait_status("a", "running", ANSWER).await;
    let (_, instance) = server
        .call(reqwest::Method::GET, "/api/v1/instances/a", None)
        .await;

    let limits_of = |pid: u64| {
        let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
        let line = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .expect("open files line")
            .to_string();
        line.split_whitespace()
            .skip(3)
            .take(2)
            .map(|n| n.parse::<u64>().expect("a number"))
            .collect::<Vec<_>>()
    };
    assert_eq!(limits_of(u64::from(server.pid())), [hard, hard], "llamactl");
    assert_eq!(
        limits_of(common::pid_of(&instance)),
        [1024, hard],
        "backend"
    );
}
