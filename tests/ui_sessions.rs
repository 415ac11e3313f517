//! The dashboard's sign-in sessions, through HTTP as a browser sees them: a key exchanged once for
//! an HttpOnly, SameSite=Strict cookie; only the token's hash stored; sign-out guarded by the
//! session's CSRF token; the session gone when its key is revoked or its time is up.

mod common;

use common::{Options, TestServer, ADMIN_KEY};
use reqwest::header::{self, HeaderMap};
use reqwest::redirect::Policy;
use reqwest::{Response, StatusCode};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::time::Duration;

/// A browser: a cookie jar, and redirects left for the test to see.
struct Browser {
    client: reqwest::Client,
    base: String,
}

impl Browser {
    fn new(server: &TestServer) -> Self {
        Browser {
            client: reqwest::Client::builder()
                .cookie_store(true)
                .redirect(Policy::none())
                .build()
                .expect("client"),
            base: server.base.clone(),
        }
    }

    async fn get(&self, path: &str) -> Response {
        self.client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("GET")
    }

    async fn post_form(&self, path: &str, form: &[(&str, &str)], headers: HeaderMap) -> Response {
        self.client
            .post(format!("{}{path}", self.base))
            .headers(headers)
            .form(form)
            .send()
            .await
            .expect("POST")
    }

    async fn sign_in(&self, key: &str) -> Response {
        self.post_form("/sign-in", &[("key", key)], HeaderMap::new())
            .await
    }

    /// Signs in with a key that must work; returns the session cookie's whole `Set-Cookie` value.
    async fn signed_in(&self, key: &str) -> String {
        let resp = self.sign_in(key).await;
        assert_eq!(resp.status(), StatusCode::SEE_OTHER);
        assert_eq!(location(&resp), "/");
        set_cookie(&resp).expect("a session cookie")
    }

    /// The landing page's HTML; panics unless it is the signed-in page.
    async fn home(&self) -> String {
        let resp = self.get("/").await;
        assert_eq!(resp.status(), StatusCode::OK);
        resp.text().await.expect("body")
    }
}

fn location(resp: &Response) -> String {
    resp.headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

fn set_cookie(resp: &Response) -> Option<String> {
    resp.headers()
        .get(header::SET_COOKIE)
        .map(|v| v.to_str().expect("ascii").to_string())
}

/// The session token in a `Set-Cookie` value.
fn token_of(set_cookie: &str) -> String {
    set_cookie
        .split(';')
        .next()
        .and_then(|pair| pair.strip_prefix("llamactl_session="))
        .expect("llamactl_session cookie")
        .to_string()
}

/// `GET /` presenting this session token and nothing else (no jar): what the server says of it.
async fn home_with_token(server: &TestServer, token: &str) -> Response {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .expect("client")
        .get(format!("{}/", server.base))
        .header(header::COOKIE, format!("llamactl_session={token}"))
        .send()
        .await
        .expect("GET /")
}

/// The `csrf` field of the sign-out form on a page.
fn csrf_of(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("csrf field") + 19;
    page[at..].split('"').next().expect("value").to_string()
}

async fn session_rows(server: &TestServer) -> Vec<(Vec<u8>, Option<String>, String, i64)> {
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(server.db_path())
        .read_only(true);
    let pool = sqlx::SqlitePool::connect_with(options)
        .await
        .expect("open database");
    let rows: Vec<(Vec<u8>, Option<String>, String, i64)> =
        sqlx::query_as("SELECT token_hash, key_id, kind, expires_at - created_at FROM sessions")
            .fetch_all(&pool)
            .await
            .expect("read sessions");
    pool.close().await;
    rows
}

#[tokio::test]
async fn a_good_key_opens_a_session_and_a_bad_one_is_told_why() {
    let server = TestServer::start(Options::fake()).await;
    let browser = Browser::new(&server);

    let resp = browser.get("/").await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&resp), "/sign-in");

    for (key, status, shown) in [
        ("not-a-key", StatusCode::UNAUTHORIZED, "invalid API key"),
        ("", StatusCode::UNAUTHORIZED, "enter an API key"),
    ] {
        let resp = browser.sign_in(key).await;
        assert_eq!(resp.status(), status, "{key:?}");
        assert_eq!(set_cookie(&resp), None, "{key:?}");
        let page = resp.text().await.expect("body");
        assert!(
            page.contains(shown) && page.contains("name=\"key\""),
            "{page}"
        );
    }
    assert_eq!(browser.get("/").await.status(), StatusCode::SEE_OTHER);

    let (token, _) = server
        .new_key(json!({"name": "ops-laptop", "kind": "management"}))
        .await;
    let cookie = browser.signed_in(&token).await;
    let page = browser.home().await;
    assert!(
        page.contains("ops-laptop") && page.contains("management"),
        "{page}"
    );
    assert!(!page.contains(&token), "the key must not be in any page");
    // Signed in, the form sends you home.
    assert_eq!(location(&browser.get("/sign-in").await), "/");
    // The API takes keys only: the session cookie opens nothing there.
    let api = reqwest::Client::new()
        .get(format!("{}/api/v1/instances", server.base))
        .header(header::COOKIE, cookie.split(';').next().unwrap())
        .send()
        .await
        .expect("GET");
    assert_eq!(api.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_cookie_is_http_only_strict_and_pages_carry_the_security_headers() {
    let server = TestServer::start(Options::fake()).await;
    let browser = Browser::new(&server);
    let cookie = browser.signed_in(ADMIN_KEY).await;
    let attributes: Vec<&str> = cookie.split(';').map(str::trim).skip(1).collect();
    for want in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(attributes.contains(&want), "{cookie}");
    }
    assert!(
        !attributes.contains(&"Secure"),
        "plain HTTP by default: {cookie}"
    );
    assert!(token_of(&cookie).len() >= 43, "{cookie}");

    for path in ["/", "/sign-in"] {
        let resp = browser.get(path).await;
        let h = resp.headers();
        let csp = h[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(
            csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"),
            "{csp}"
        );
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert_eq!(h[header::REFERRER_POLICY], "no-referrer");
        assert_eq!(h[header::CACHE_CONTROL], "no-store");
    }
    let css = browser.get("/assets/app.css").await;
    assert_eq!(css.status(), StatusCode::OK);
    assert!(css.headers()[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/css"));

    let secure = TestServer::start(Options::fake().with_yaml("ui:\n  secure_cookie: true\n")).await;
    let cookie = Browser::new(&secure).signed_in(ADMIN_KEY).await;
    assert!(cookie.ends_with("; Secure"), "{cookie}");
}

#[tokio::test]
async fn only_the_hash_of_a_session_token_is_stored() {
    let server = TestServer::start(Options::fake()).await;
    let (key, id) = server
        .new_key(json!({"name": "k", "kind": "management"}))
        .await;
    let token = token_of(&Browser::new(&server).signed_in(&key).await);

    let rows = session_rows(&server).await;
    assert_eq!(rows.len(), 1);
    let (hash, key_id, kind, lifetime) = &rows[0];
    assert_eq!(hash.as_slice(), Sha256::digest(token.as_bytes()).as_slice());
    assert_eq!(key_id.as_deref(), Some(id.as_str()));
    assert_eq!((kind.as_str(), *lifetime), ("management", 43200));
    for file in ["llamactl.db", "llamactl.db-wal"] {
        let bytes = std::fs::read(server.data_dir.join(file)).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(&token), "session token in {file}");
    }
}

#[tokio::test]
async fn sign_out_needs_the_sessions_csrf_token_and_then_ends_it() {
    let server = TestServer::start(Options::fake()).await;
    let browser = Browser::new(&server);
    let token = token_of(&browser.signed_in(ADMIN_KEY).await);
    let csrf = csrf_of(&browser.home().await);

    let origin = |value: &'static str| {
        let mut h = HeaderMap::new();
        h.insert(header::ORIGIN, value.parse().unwrap());
        h
    };
    let cross_site = {
        let mut h = HeaderMap::new();
        h.insert("sec-fetch-site", "cross-site".parse().unwrap());
        h
    };
    let forged: [(&[(&str, &str)], HeaderMap); 4] = [
        (&[], HeaderMap::new()),
        (&[("csrf", "0000")], HeaderMap::new()),
        (&[("csrf", &csrf)], origin("http://evil.example")),
        (&[("csrf", &csrf)], cross_site),
    ];
    for (form, headers) in forged {
        let resp = browser.post_form("/sign-out", form, headers).await;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{form:?}");
        assert_eq!(
            home_with_token(&server, &token).await.status(),
            StatusCode::OK
        );
    }

    let resp = browser
        .post_form("/sign-out", &[("csrf", &csrf)], HeaderMap::new())
        .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&resp), "/sign-in");
    assert!(set_cookie(&resp).unwrap().contains("Max-Age=0"));
    // Gone on the server, not only forgotten by this browser.
    let replayed = home_with_token(&server, &token).await;
    assert_eq!(replayed.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&replayed), "/sign-in");
    assert!(session_rows(&server).await.is_empty());
}

#[tokio::test]
async fn revoking_a_key_ends_its_sessions_and_a_session_carries_the_keys_current_access() {
    let server = TestServer::start(Options::fake()).await;
    let (key, id) = server
        .new_key(json!({"name": "chat-app", "kind": "inference", "instances": ["alpha"]}))
        .await;
    let (other, _) = server
        .new_key(json!({"name": "other", "kind": "management"}))
        .await;
    let browser = Browser::new(&server);
    let token = token_of(&browser.signed_in(&key).await);
    let other_token = token_of(&Browser::new(&server).signed_in(&other).await);
    let page = browser.home().await;
    assert!(
        page.contains("chat-app") && page.contains("inference") && page.contains("alpha"),
        "{page}"
    );
    // The session reads the key's access on each page: a policy change is in force at once.
    let (status, _) = server
        .call(
            reqwest::Method::PATCH,
            &format!("/api/v1/auth/keys/{id}"),
            Some(json!({"instances": ["beta-*"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let page = browser.home().await;
    assert!(page.contains("beta-*") && !page.contains("alpha"), "{page}");

    assert_eq!(server.revoke_key(&id).await, StatusCode::NO_CONTENT);
    let resp = browser.get("/").await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&resp), "/sign-in");
    assert_eq!(
        home_with_token(&server, &token).await.status(),
        StatusCode::SEE_OTHER
    );
    // Its row is gone; another key's session lives on.
    let rows = session_rows(&server).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(
        home_with_token(&server, &other_token).await.status(),
        StatusCode::OK
    );
    // And the revoked key cannot sign in again.
    assert_eq!(
        browser.sign_in(&key).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_session_ends_when_its_time_is_up() {
    let server = TestServer::start(Options::fake().with_yaml("ui:\n  session_ttl: 2\n")).await;
    let cookie = Browser::new(&server).signed_in(ADMIN_KEY).await;
    assert!(cookie.contains("Max-Age=2"), "{cookie}");
    let token = token_of(&cookie);
    assert_eq!(
        home_with_token(&server, &token).await.status(),
        StatusCode::OK
    );
    // The browser would drop the cookie by itself; the server must refuse it too.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let resp = home_with_token(&server, &token).await;
        if resp.status() == StatusCode::SEE_OTHER {
            assert_eq!(location(&resp), "/sign-in");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "session still open after 20 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn with_inference_open_the_dashboards_forms_work_and_other_sites_forms_are_still_refused() {
    // An open /v1 turns the browser guard's form rule on; the dashboard's forms are forms all
    // the same, and it refuses other sites' by itself.
    let server =
        TestServer::start(Options::fake().with_env("LLAMACTL_REQUIRE_INFERENCE_AUTH", "false"))
            .await;
    let browser = Browser::new(&server);
    browser.signed_in(ADMIN_KEY).await;
    let csrf = csrf_of(&browser.home().await);
    let create = |headers: HeaderMap, name: &'static str| {
        let csrf = csrf.clone();
        let browser = &browser;
        async move {
            browser
                .post_form(
                    "/instances/new",
                    &[("csrf", &csrf), ("name", name), ("model", "/m.gguf")],
                    headers,
                )
                .await
        }
    };
    let mut cross_site = HeaderMap::new();
    cross_site.insert("sec-fetch-site", "cross-site".parse().unwrap());
    assert_eq!(
        create(cross_site, "evil").await.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(server.get("evil").await.0, StatusCode::NOT_FOUND);
    let mut same = HeaderMap::new();
    same.insert("sec-fetch-site", "same-origin".parse().unwrap());
    let resp = create(same, "mine").await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(server.get("mine").await.0, StatusCode::OK);
    // The API keeps refusing form-like posts.
    let resp = reqwest::Client::new()
        .post(format!("{}/api/v1/instances/x", server.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("model=/m.gguf")
        .send()
        .await
        .expect("POST");
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[tokio::test]
async fn the_playground_counts_against_the_sessions_key_quota() {
    // A chat in the playground goes the /v1 way, so a limited key's quota admits and counts it:
    // its answer carries the key's x-ratelimit-* headers, this request counted.
    let server = TestServer::start(Options::fake()).await;
    let (code, created) = server
        .create(
            "alpha",
            json!({"model": "/alpha.gguf", "on_demand_start": true}),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED, "{created}");
    let (key, _) = server
        .new_key(
            json!({"name": "limited", "kind": "inference", "instances": ["alpha"],
            "limits": {"requests_per_minute": 1000}}),
        )
        .await;
    let browser = Browser::new(&server);
    browser.signed_in(&key).await;
    let csrf = csrf_of(&browser.home().await);
    let resp = browser
        .client
        .post(format!("{}/instances/alpha/chat", server.base))
        .header("x-csrf-token", &csrf)
        .header("content-type", "application/json")
        .body(json!({"messages": [{"role": "user", "content": "hi"}]}).to_string())
        .send()
        .await
        .expect("POST chat");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()
            .get("x-ratelimit-limit-requests")
            .and_then(|v| v.to_str().ok()),
        Some("1000"),
        "{:?}",
        resp.headers()
    );
    let remaining: u64 = resp
        .headers()
        .get("x-ratelimit-remaining-requests")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("remaining requests");
    assert!(remaining < 1000, "{remaining}");
    resp.bytes().await.expect("answer");
}

/// The bar titles of the chart `id` (`requests-24h`, `tokens-30d`, ...) in a page's HTML.
fn bar_titles(page: &str, id: &str) -> Vec<String> {
    let start = page
        .find(&format!("id=\"chart-{id}\""))
        .unwrap_or_else(|| panic!("no chart {id} in {page}"));
    let chart = &page[start..];
    let chart = &chart[..chart.find("</svg>").expect("the chart's end")];
    chart
        .split("<title>")
        .skip(1)
        .filter_map(|t| t.split("</title>").next())
        .map(String::from)
        .collect()
}

/// The sum of the first figure after `": "` in each title (`... UTC: 3 requests (...)` → 3).
fn summed(titles: &[String]) -> i64 {
    titles
        .iter()
        .filter_map(|t| {
            t.rsplit_once(": ")?
                .1
                .split(' ')
                .next()?
                .parse::<i64>()
                .ok()
        })
        .sum()
}

#[tokio::test]
async fn an_instances_page_charts_its_requests_and_tokens_per_hour_and_day_an_inference_key_only_its_own(
) {
    let server = TestServer::start(Options::fake()).await;
    let (code, created) = server
        .create("alpha", json!({"model": "/alpha.gguf"}))
        .await;
    assert_eq!(code, StatusCode::CREATED, "{created}");
    server
        .wait_status("alpha", "running", Duration::from_secs(20))
        .await;
    let (app_key, _) = server
        .new_key(json!({"name": "app", "kind": "inference", "instances": ["alpha"]}))
        .await;
    // Two chats with the config-file inference key (7 + 3 tokens each), one with `app` (5 + 4).
    for _ in 0..2 {
        let (code, body) = server
            .chat(
                "alpha",
                json!({"fake_prompt_tokens": 7, "fake_completion_tokens": 3}),
            )
            .await;
        assert_eq!(code, StatusCode::OK, "{body}");
    }
    let body = json!({"model": "alpha", "messages": [{"role": "user", "content": "hi"}],
        "fake_prompt_tokens": 5, "fake_completion_tokens": 4});
    let (code, answer) = server
        .call_as(
            Some(&app_key),
            reqwest::Method::POST,
            "/v1/chat/completions",
            Some(body),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{answer}");

    // An operator sees every key's requests: 3 requests, 19 + 10 tokens, in both periods.
    let operator = Browser::new(&server);
    operator.signed_in(ADMIN_KEY).await;
    let page = operator
        .get("/instances/alpha")
        .await
        .text()
        .await
        .expect("page");
    assert!(page.contains("id=\"usage-scope\">Every key"), "{page}");
    for period in ["24h", "30d"] {
        assert!(
            page.contains(&format!(
                "id=\"usage-summary-{period}\">3 requests, 29 tokens (19 prompt, 10 completion).<"
            )),
            "{period}: {page}"
        );
        let requests = bar_titles(&page, &format!("requests-{period}"));
        let tokens = bar_titles(&page, &format!("tokens-{period}"));
        assert_eq!(requests.len(), if period == "24h" { 24 } else { 30 });
        assert_eq!((summed(&requests), summed(&tokens)), (3, 29), "{period}");
    }
    let busiest = bar_titles(&page, "tokens-24h")
        .into_iter()
        .filter(|t| !t.contains(": 0 tokens"))
        .collect::<Vec<_>>();
    // The three chats fall in one hour unless the hour turned between them.
    if busiest.len() == 1 {
        assert!(
            busiest[0].ends_with(": 29 tokens (19 prompt, 10 completion)"),
            "{busiest:?}"
        );
    }

    let today = tokens_today_cell(&page);
    assert!(
        today == "29" || today == "0",
        "operator's tokens today: {today}"
    );
    // `app` sees only its own request on the same page.
    let app = Browser::new(&server);
    app.signed_in(&app_key).await;
    let page = app
        .get("/instances/alpha")
        .await
        .text()
        .await
        .expect("page");
    assert!(page.contains("id=\"usage-scope\">Your key"), "{page}");
    for period in ["24h", "30d"] {
        assert!(
            page.contains(&format!(
                "id=\"usage-summary-{period}\">1 request, 9 tokens (5 prompt, 4 completion).<"
            )),
            "{period}: {page}"
        );
        assert_eq!(summed(&bar_titles(&page, &format!("requests-{period}"))), 1);
        assert_eq!(summed(&bar_titles(&page, &format!("tokens-{period}"))), 9);
    }
    // Its row's "tokens today" counts its own key's too (0 only if midnight UTC passed since).
    let today = tokens_today_cell(&page);
    assert!(today == "9" || today == "0", "app's tokens today: {today}");
    // Nothing is styled inline (the CSP forbids it).
    assert!(!page.contains(" style="), "{page}");
}

/// The "Tokens today" cell of the (one) instance row on a page.
fn tokens_today_cell(page: &str) -> String {
    let marker = "data-label=\"Tokens today\">";
    let at = page.find(marker).expect("a tokens-today cell") + marker.len();
    page[at..].split('<').next().unwrap_or_default().to_string()
}
