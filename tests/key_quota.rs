//! A key's quotas against the real server binary and the stand-in backend: requests per minute
//! exact under 50 concurrent requests, token quotas overshooting by no more than the answers in
//! flight, `Retry-After` and every `x-ratelimit-*` header on 429s and 200s, usage on the key and in
//! whoami, counters that survive a restart, and answers cut before their usage charged an
//! estimate.
//!
//! Windows are fixed UTC minutes: a test that needs one minute's counts waits, before it starts,
//! until the current minute has room left for it (it never races the boundary).

mod common;

use common::{Options, TestServer, INFERENCE_KEY};
use futures_util::future::join_all;
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const READY: Duration = Duration::from_secs(15);

async fn running(server: &TestServer, name: &str) {
    server
        .create_running(name, json!({"model": format!("/{name}.gguf")}), READY)
        .await;
}

/// Waits, if need be, for the next UTC minute, so that `seconds` of work fit in one minute window.
async fn room_in_minute(seconds: u64) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let into = now.as_secs() % 60;
    if into + seconds >= 60 {
        let wait = Duration::from_secs(60 - into) - Duration::from_nanos(now.subsec_nanos() as u64);
        tokio::time::sleep(wait + Duration::from_millis(200)).await;
    }
}

/// An answer: status, headers, body.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    fn number(&self, name: &str) -> u64 {
        let value = self
            .header(name)
            .unwrap_or_else(|| panic!("no {name} in {:?}", self.headers));
        value.parse().unwrap_or_else(|_| panic!("{name}: {value}"))
    }
}

/// `POST path` with `key` and `body`, the whole answer read.
async fn post(server: &TestServer, key: &str, path: &str, body: &Value) -> Answer {
    let resp = reqwest::Client::new()
        .post(format!("{}{path}", server.base))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .expect("request");
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.text().await.expect("body");
    Answer {
        status,
        headers,
        body,
    }
}

/// A chat request for `model` costing 10 tokens (7 prompt + 3 completion); streamed if asked.
fn chat_body(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "max_tokens": 3, "fake_prompt_tokens": 7,
           "fake_completion_tokens": 3, "messages": [{"role": "user", "content": "hi"}]})
}

async fn chat(server: &TestServer, key: &str, stream: bool) -> Answer {
    post(server, key, "/v1/chat/completions", &chat_body("m", stream)).await
}

/// The seconds in a reset as OpenAI writes it (`250ms`, `45s`, `6m0s`, `13h2m5s`); `None` if it
/// is written otherwise.
fn reset_seconds(text: &str) -> Option<f64> {
    if let Some(ms) = text.strip_suffix("ms") {
        return ms.parse::<u64>().ok().map(|ms| ms as f64 / 1000.0);
    }
    let mut rest = text.strip_suffix('s')?;
    let mut seconds = 0;
    for (unit, scale) in [('h', 3600), ('m', 60)] {
        if let Some((n, tail)) = rest.split_once(unit) {
            seconds += n.parse::<u64>().ok()? * scale;
            rest = tail;
        }
    }
    Some((seconds + rest.parse::<u64>().ok()?) as f64)
}

/// True if `text` is a reset of at most `max` seconds, as OpenAI writes it.
fn is_reset(text: &str, max: f64) -> bool {
    reset_seconds(text).is_some_and(|s| s > 0.0 && s <= max)
}

/// The key resource.
async fn key_of(server: &TestServer, id: &str) -> Value {
    let (code, key) = server
        .call(Method::GET, &format!("/api/v1/auth/keys/{id}"), None)
        .await;
    assert_eq!(code, StatusCode::OK, "{key}");
    key
}

#[test]
fn resets_are_read_as_openai_writes_them() {
    let cases = [
        ("250ms", Some(0.25)),
        ("45s", Some(45.0)),
        ("6m0s", Some(360.0)),
        ("13h2m5s", Some(46925.0)),
        ("1h", None),
        ("s", None),
        ("5", None),
    ];
    for (text, want) in cases {
        assert_eq!(reset_seconds(text), want, "{text}");
    }
}

#[tokio::test]
async fn requests_per_minute_admits_exactly_the_limit_of_50_concurrent_requests() {
    let server = TestServer::start(Options::fake()).await;
    running(&server, "m").await;
    let (token, id) = server
        .new_key(json!({"name": "app", "kind": "inference",
                        "limits": {"requests_per_minute": 10}}))
        .await;
    room_in_minute(20).await;

    let answers = join_all((0..50).map(|_| chat(&server, &token, false))).await;

    let (ok, refused): (Vec<&Answer>, Vec<&Answer>) =
        answers.iter().partition(|a| a.status == StatusCode::OK);
    assert_eq!(ok.len(), 10);
    assert_eq!(refused.len(), 40);
    assert!(refused
        .iter()
        .all(|a| a.status == StatusCode::TOO_MANY_REQUESTS));
    // Each admitted request was told what was left after it: 9, 8, ... 0, once each.
    let remaining: BTreeSet<u64> = ok
        .iter()
        .map(|a| a.number("x-ratelimit-remaining-requests"))
        .collect();
    assert_eq!(remaining, (0..10).collect());
    for a in &ok {
        assert_eq!(a.number("x-ratelimit-limit-requests"), 10);
        assert!(is_reset(
            a.header("x-ratelimit-reset-requests").unwrap(),
            60.0
        ));
        assert!(
            a.header("x-ratelimit-limit-tokens").is_none(),
            "no token limit"
        );
    }
    for a in &refused {
        let retry = a.number("retry-after");
        assert!((1..=60).contains(&retry), "{retry}");
        assert_eq!(a.number("x-ratelimit-limit-requests"), 10);
        assert_eq!(a.number("x-ratelimit-remaining-requests"), 0);
        let reset = a.header("x-ratelimit-reset-requests").unwrap();
        assert!(is_reset(reset, 60.0), "{reset}");
        let body: Value = serde_json::from_str(&a.body).unwrap();
        let error = body["error"].as_str().unwrap();
        assert!(error.contains("limits.requests_per_minute (10)"), "{error}");
    }

    // The proxy is counted against the same budget; listing models is not (it runs nothing).
    let proxied = post(
        &server,
        &token,
        "/api/v1/instances/m/proxy/v1/chat/completions",
        &chat_body("m", false),
    )
    .await;
    assert_eq!(proxied.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(proxied.number("x-ratelimit-remaining-requests"), 0);
    let (code, _) = server
        .call_as(Some(&token), Method::GET, "/v1/models", None)
        .await;
    assert_eq!(code, StatusCode::OK);

    // A configuration key has no limits, and no headers about them.
    let open = chat(&server, INFERENCE_KEY, false).await;
    assert_eq!(open.status, StatusCode::OK);
    assert!(open.header("x-ratelimit-limit-requests").is_none());

    // The key shows its usage; the refusals are counted by limit.
    let usage = &key_of(&server, &id).await["usage"]["requests_per_minute"];
    assert_eq!(
        (usage["used"].as_u64(), usage["remaining"].as_u64()),
        (Some(10), Some(0))
    );
    assert!(key_of(&server, &id).await["usage"]["tokens_per_day"].is_null());
    let (_, metrics) = server.call(Method::GET, "/metrics", None).await;
    let metrics = metrics.as_str().unwrap();
    assert!(
        metrics.contains("llamactl_quota_refusals_total{limit=\"requests_per_minute\"} 41"),
        "{metrics}"
    );
    assert!(!metrics.contains(&token[token.len() - 16..]));
}

#[tokio::test]
async fn a_token_quota_overshoots_by_at_most_the_answers_in_flight() {
    let server = TestServer::start(Options::fake()).await;
    running(&server, "m").await;
    let (token, id) = server
        .new_key(json!({"name": "app", "kind": "inference",
                        "limits": {"tokens_per_minute": 100}}))
        .await;
    room_in_minute(30).await;

    // Waves of 4 concurrent streamed answers of 10 tokens each, until one is refused.
    const WAVE: u64 = 4;
    let mut answered = 0;
    let refusal = loop {
        let wave = join_all((0..WAVE).map(|_| chat(&server, &token, true))).await;
        answered += wave.iter().filter(|a| a.status == StatusCode::OK).count() as u64;
        if let Some(refused) = wave
            .into_iter()
            .find(|a| a.status == StatusCode::TOO_MANY_REQUESTS)
        {
            break refused;
        }
        assert!(answered < 100, "never refused");
    };

    // Every answer was charged whole: what the backend reported, no more, no less...
    let key = key_of(&server, &id).await;
    let used = key["usage"]["tokens_per_minute"]["used"].as_u64().unwrap();
    assert_eq!(used, answered * 10, "{key}");
    // ...and requests were admitted only while tokens were left: the overshoot is at most one
    // answer per request in flight when the budget ran out.
    assert!(used >= 100, "{used}");
    assert!(used < 100 + WAVE * 10, "{used}");
    assert_eq!(key["usage"]["tokens_per_minute"]["remaining"], 0);

    assert_eq!(refusal.number("x-ratelimit-limit-tokens"), 100);
    assert_eq!(refusal.number("x-ratelimit-remaining-tokens"), 0);
    assert!(is_reset(
        refusal.header("x-ratelimit-reset-tokens").unwrap(),
        60.0
    ));
    assert!((1..=60).contains(&refusal.number("retry-after")));
    assert!(
        refusal.body.contains("limits.tokens_per_minute (100)"),
        "{}",
        refusal.body
    );
    // Refused from here on, on every path.
    assert_eq!(
        chat(&server, &token, false).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn token_headers_follow_the_tighter_limit_and_usage_is_shown_in_whoami() {
    let server = TestServer::start(Options::fake()).await;
    running(&server, "m").await;
    let (token, id) = server
        .new_key(json!({"name": "app", "kind": "inference",
                        "limits": {"requests_per_minute": 100, "tokens_per_minute": 1000,
                                   "tokens_per_day": 30}}))
        .await;
    room_in_minute(20).await;

    // The headers of an answer tell the standing at its admission (its own tokens are not known
    // yet); the day's budget, with less left, is the one shown.
    let first = chat(&server, &token, false).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert_eq!(first.number("x-ratelimit-limit-requests"), 100);
    assert_eq!(first.number("x-ratelimit-remaining-requests"), 99);
    assert_eq!(first.number("x-ratelimit-limit-tokens"), 30);
    assert_eq!(first.number("x-ratelimit-remaining-tokens"), 30);
    let second = chat(&server, &token, true).await;
    assert_eq!(second.number("x-ratelimit-remaining-tokens"), 20);
    assert_eq!(second.number("x-ratelimit-remaining-requests"), 98);
    let reset = second.header("x-ratelimit-reset-tokens").unwrap();
    // The day's reset, at midnight UTC.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let midnight = (now / 86_400 + 1) * 86_400;
    let to_midnight = reset_seconds(reset).unwrap_or_else(|| panic!("{reset}"));
    assert!(
        (to_midnight - (midnight - now) as f64).abs() <= 5.0,
        "{reset}"
    );

    let (code, whoami) = server
        .call_as(Some(&token), Method::GET, "/api/v1/auth/whoami", None)
        .await;
    assert_eq!(code, StatusCode::OK, "{whoami}");
    let day = &whoami["usage"]["tokens_per_day"];
    assert_eq!(
        (day["limit"].as_u64(), day["used"].as_u64()),
        (Some(30), Some(20)),
        "{whoami}"
    );
    assert_eq!(day["remaining"], 10);
    assert_eq!(day["resets_at"].as_i64(), Some(midnight), "{whoami}");
    assert_eq!(whoami["usage"]["requests_per_minute"]["used"], 2);
    assert_eq!(whoami["usage"]["tokens_per_minute"]["used"], 20);
    let key = key_of(&server, &id).await;
    assert_eq!(
        key["usage"]["tokens_per_day"],
        whoami["usage"]["tokens_per_day"]
    );
    // Keys without limits show no usage.
    let (_, open) = server
        .call_as(
            Some(INFERENCE_KEY),
            Method::GET,
            "/api/v1/auth/whoami",
            None,
        )
        .await;
    assert!(open["usage"].is_null(), "{open}");

    // 10 left: admitted, and charged whole; then refused until midnight UTC.
    assert_eq!(chat(&server, &token, false).await.status, StatusCode::OK);
    let refused = chat(&server, &token, false).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.body.contains("tokens_per_day"), "{}", refused.body);
    let retry = refused.number("retry-after") as i64;
    assert!((retry - (midnight - now)).abs() <= 5, "{retry}");
}

#[tokio::test]
async fn counters_survive_a_restart() {
    let server = TestServer::start(Options::fake()).await;
    running(&server, "m").await;
    let (token, id) = server
        .new_key(json!({"name": "app", "kind": "inference",
                        "limits": {"requests_per_minute": 3, "tokens_per_day": 25}}))
        .await;
    room_in_minute(40).await;
    for _ in 0..3 {
        assert_eq!(chat(&server, &token, false).await.status, StatusCode::OK);
    }
    let before = key_of(&server, &id).await["usage"].clone();
    assert_eq!(before["tokens_per_day"]["used"], 30, "{before}");

    let server = server.restart().await;

    let after = key_of(&server, &id).await["usage"].clone();
    assert_eq!(after["tokens_per_day"]["used"], 30, "{after}");
    assert_eq!(after["requests_per_minute"]["used"], 3, "{after}");
    server.wait_status("m", "running", READY).await;
    let refused = chat(&server, &token, false).await;
    assert_eq!(
        refused.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        refused.body
    );
    // Both are spent; the one told is the one to wait for (the day's).
    assert!(refused.body.contains("tokens_per_day"), "{}", refused.body);
}

#[tokio::test]
async fn counters_are_saved_while_the_server_runs_so_a_crash_keeps_them() {
    let mut server = TestServer::start(Options::fake()).await;
    running(&server, "m").await;
    let (token, id) = server
        .new_key(json!({"name": "app", "kind": "inference", "limits": {"tokens_per_day": 1000}}))
        .await;
    for _ in 0..2 {
        assert_eq!(chat(&server, &token, false).await.status, StatusCode::OK);
    }

    // The periodic save reaches the database without a shutdown: the CLI reads it from there.
    let saved = |server: &TestServer| {
        let run = server.cli(&["keys", "list", "--json"]);
        assert!(run.ok, "{}", run.stderr);
        let keys: Value = serde_json::from_str(&run.stdout).expect("JSON");
        keys.as_array()
            .unwrap()
            .iter()
            .find(|k| k["id"] == id.as_str())
            .map(|k| k["usage"]["tokens_per_day"]["used"].clone())
    };
    common::eventually("the counters saved", Duration::from_secs(20), || {
        saved(&server) == Some(json!(20))
    })
    .await;
    server.signal_and_wait(libc::SIGKILL);

    let server = server.restart().await;
    let usage = key_of(&server, &id).await["usage"].clone();
    assert_eq!(usage["tokens_per_day"]["used"], 20, "{usage}");
}

/// Tokens charged to key `id` today.
async fn used_today(server: &TestServer, id: &str) -> u64 {
    let key = key_of(server, id).await;
    key["usage"]["tokens_per_day"]["used"]
        .as_u64()
        .unwrap_or_else(|| panic!("{key}"))
}

/// The prompt estimate of a request with `body`: its bytes / 4, rounded up (as reqwest sends it).
fn prompt_estimate(body: &Value) -> u64 {
    serde_json::to_vec(body).unwrap().len().div_ceil(4) as u64
}

/// Sends the streamed chat `body` as `token` with `client`, checks it is answered 200, and reads
/// its events until `enough` holds for the text read; returns the answer, still open, and that text.
async fn stream_until(
    client: &reqwest::Client,
    server: &TestServer,
    token: &str,
    body: &Value,
    enough: impl Fn(&str) -> bool,
) -> (reqwest::Response, String) {
    let mut resp = client
        .post(format!("{}/v1/chat/completions", server.base))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::OK);
    let mut text = String::new();
    while !enough(&text) {
        let chunk = resp.chunk().await.expect("chunk").expect("more events");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    (resp, text)
}

#[tokio::test]
async fn a_stream_left_before_its_usage_is_charged_its_events_and_the_prompt_estimate() {
    let server = TestServer::start(Options::fake()).await;
    running(&server, "m").await;
    let (token, id) = server
        .new_key(json!({"name": "app", "kind": "inference", "limits": {"tokens_per_day": 100000}}))
        .await;
    // Run to its end, it would report 1000 + 200 tokens.
    let body = json!({"model": "m", "stream": true, "max_tokens": 200, "fake_chunk_delay": 0.05,
                      "fake_prompt_tokens": 1000,
                      "messages": [{"role": "user", "content": "tell me a long story"}]});
    let estimate = prompt_estimate(&body);

    // Read three events, then leave.
    let client = reqwest::Client::new();
    let (resp, text) = stream_until(&client, &server, &token, &body, |text| {
        text.matches("data:").count() >= 3
    })
    .await;
    let seen = text.matches("data:").count() as u64;
    drop(resp);
    drop(client);

    common::eventually_async(
        "the cut stream charged",
        Duration::from_secs(20),
        || async { used_today(&server, &id).await > 0 },
    )
    .await;
    let used = used_today(&server, &id).await;
    // The prompt estimate, and one token per event passed: at least those the client read, fewer
    // than the whole stream's.
    assert!(used >= estimate + seen, "{used} < {estimate} + {seen}");
    assert!(used < estimate + 200, "{used}: more than the events sent");

    // A stream read to its end is charged exactly what the backend reported.
    let whole = chat(&server, &token, true).await;
    assert_eq!(whole.status, StatusCode::OK, "{}", whole.body);
    assert_eq!(used_today(&server, &id).await, used + 10);
}

#[tokio::test]
async fn a_stream_is_charged_at_its_done_event_before_its_client_reads_it() {
    let server = TestServer::start(Options::fake()).await;
    running(&server, "m").await;
    let (token, id) = server
        .new_key(json!({"name": "app", "kind": "inference", "limits": {"tokens_per_day": 100000}}))
        .await;
    // The backend ends its body long after `data: [DONE]`: the charge must not wait for that, or
    // a client's next request, sent on [DONE], would be admitted before this one is charged.
    let mut body = chat_body("m", true);
    body["fake_end_delay"] = json!(30);
    let client = reqwest::Client::new();
    let (_resp, text) = stream_until(&client, &server, &token, &body, |text| {
        text.contains("data: [DONE]")
    })
    .await;
    // Read once, at once: no waiting for it.
    assert_eq!(used_today(&server, &id).await, 10, "{text}");
}

#[tokio::test]
async fn a_plain_answer_the_client_leaves_before_it_comes_is_charged_the_prompt_estimate() {
    let server = TestServer::start(Options::fake()).await;
    running(&server, "m").await;
    let (token, id) = server
        .new_key(
            json!({"name": "app", "kind": "inference", "limits": {"tokens_per_minute": 100000}}),
        )
        .await;
    room_in_minute(20).await;
    // Answered after 3 s, it would report 1000 + 1 tokens; the client gives up after 0.5 s.
    let body = json!({"model": "m", "fake_delay": 3, "fake_prompt_tokens": 1000,
                      "messages": [{"role": "user", "content": "hi"}]});
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let err = client
        .post(format!("{}/v1/chat/completions", server.base))
        .bearer_auth(&token)
        .json(&body)
        .send()
        .await
        .expect_err("the client gives up first");
    assert!(err.is_timeout(), "{err}");
    drop(client);

    let used = || async {
        key_of(&server, &id).await["usage"]["tokens_per_minute"]["used"]
            .as_u64()
            .unwrap()
    };
    common::eventually_async(
        "the cut answer charged",
        Duration::from_secs(20),
        || async { used().await > 0 },
    )
    .await;
    assert_eq!(used().await, prompt_estimate(&body));
    // Its answer, had it come later, is not charged again.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(used().await, prompt_estimate(&body));
}
