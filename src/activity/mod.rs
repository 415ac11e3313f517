//! The activity log: one record per inference request (who, which instance, how it went, the
//! tokens), handed to a [`Recorder`] on the request path and written to SQLite in batches off it.

mod recorder;
mod route;

pub use recorder::Recorder;
pub(crate) use route::classify;
pub use route::Route;

/// One inference request, as the activity log stores it.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Unix milliseconds when the request arrived.
    pub at_ms: i64,
    /// The stored API key that made it (`None` for config-file keys or with auth off).
    pub key_id: Option<String>,
    /// The caller's printable name (the key's name, `config-inference-key`, ...).
    pub key_name: String,
    /// The instance it went to.
    pub instance: String,
    /// What kind of request it was.
    pub route: Route,
    /// The status the client got.
    pub status: u16,
    /// Milliseconds from arrival to the last byte sent (or to the client leaving).
    pub duration_ms: u64,
    /// Milliseconds from arrival to the answer's head (`None` if none was sent).
    pub ttfb_ms: Option<u64>,
    /// Prompt tokens from the backend's `usage`/`timings` (`None` when the answer carried none).
    pub prompt_tokens: Option<u64>,
    /// Completion tokens, likewise.
    pub completion_tokens: Option<u64>,
    /// Whether the answer was streamed (server-sent events).
    pub streamed: bool,
    /// The client's address.
    pub client_addr: Option<std::net::IpAddr>,
}

#[cfg(test)]
impl Record {
    /// A streamed 200 chat completion by the stored key `key` to `instance` at `at_ms`, with 10
    /// prompt and 5 completion tokens: a starting point for tests.
    pub(crate) fn sample(at_ms: i64, key: &str, instance: &str) -> Record {
        Record {
            at_ms,
            key_id: Some(key.to_string()),
            key_name: format!("name-of-{key}"),
            instance: instance.to_string(),
            route: Route::ChatCompletions,
            status: 200,
            duration_ms: 120,
            ttfb_ms: Some(15),
            prompt_tokens: Some(10),
            completion_tokens: Some(5),
            streamed: true,
            client_addr: Some(std::net::IpAddr::from([127, 0, 0, 1])),
        }
    }
}
