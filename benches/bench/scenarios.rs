//! The scenarios, in the order they run. To add one, add an entry here:
//! - another route to compare: a `Side` in an existing entry, e.g.
//!   `Side { label: "llamactl /v1", via: Via::Llamactl }` (requests go to llamactl at the path as
//!   written, with the inference key);
//! - a load or streaming comparison: a `Scenario::Load` / `Scenario::Stream` entry;
//! - anything else: a function `fn(&Rig) -> BoxFuture<Vec<Row>>` in its own module, listed as
//!   `Scenario::Custom` (or `Scenario::Judged`, returning verdicts too). Scenarios that stop or restart the instance go after the load ones.

use crate::auth;
use crate::client::Req;
use crate::cold_start;
use crate::memory;
use crate::metering;
use crate::quota;
use crate::rig::Via;
use crate::rig::INSTANCE;
use crate::scenario::{Goal, Load, Scenario, Side, Stream, BARE, DIRECT, GO_PROXY, NGINX, PROXY};
use crate::streams;
use crate::swap;
use crate::swap_storm;
use serde_json::{json, Value};

/// A short chat request; `model` names the instance, so llamactl's `/v1` routing can use it too
/// (llama-server ignores it).
pub fn chat(max_tokens: u32, stream: bool) -> Value {
    json!({
        "model": INSTANCE,
        "messages": [{"role": "user", "content": "Name a colour."}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": stream,
    })
}

/// Through llamactl's OpenAI-compatible route, `model` picking the instance.
const V1: Side = Side {
    label: "llamactl /v1",
    via: Via::Llamactl,
};

/// Everything `make bench` measures.
pub fn all() -> Vec<Scenario> {
    vec![
        Scenario::Load(Load {
            name: "GET /health",
            req: Req::get("/health"),
            concurrency: &[1, 32],
            sides: vec![DIRECT, NGINX, GO_PROXY, BARE, PROXY],
            goal: Goal::NginxOrBetter,
        }),
        Scenario::Load(Load {
            name: "POST chat, max_tokens 1",
            req: Req::post_json("/v1/chat/completions", &chat(1, false)),
            concurrency: &[1, 8],
            // nginx shows what the extra hop itself costs a completion on this machine.
            sides: vec![DIRECT, NGINX, GO_PROXY, PROXY, V1],
            goal: Goal::OfDirect(0.98),
        }),
        Scenario::Stream(Stream {
            name: "streamed chat, max_tokens 32",
            req: Req::post_json("/v1/chat/completions", &chat(32, true)),
            sides: vec![DIRECT, PROXY, V1],
        }),
        Scenario::Judged(
            "streams: 100, 1,000 and 2,000 concurrent streamed chats",
            streams::concurrent,
        ),
        Scenario::Custom("metering: on vs off", metering::on_vs_off),
        Scenario::Custom(
            "auth: GET /v1/models, auth off / 1 key / 1,000 keys",
            auth::keys,
        ),
        Scenario::Custom(
            "quota: a key with limits and priority high vs a key without",
            quota::limited_vs_unlimited,
        ),
        Scenario::Custom("cold start", cold_start::api_start),
        Scenario::Custom("cold start, on-demand first request", cold_start::on_demand),
        Scenario::Custom(
            "swap: max_running_instances 1, request for the stopped instance",
            swap::swap,
        ),
        Scenario::Custom(
            "swap storm: max_running_instances 1, 16 concurrent requests alternating",
            swap_storm::storm,
        ),
        Scenario::Custom("memory and listing", memory::hundred_stopped),
    ]
}
