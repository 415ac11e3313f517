//! A chat client: plain and streamed chats, through `/v1` and through the instance proxy, to the
//! stable instances, with the config file's inference key or a stored one, back to back.

use crate::load::{Ctx, STABLE};
use crate::tally::Kind;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::sync::Arc;

/// Chats until the phase ends; `seed` makes each client's mix its own and repeatable.
pub async fn run(ctx: Arc<Ctx>, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    while ctx.running() {
        let instance = STABLE[rng.gen_range(0..STABLE.len())];
        let key = ctx.valid_key(rng.gen_bool(0.5)).to_string();
        let streamed = rng.gen_bool(0.5);
        let body = json!({
            "model": instance,
            "stream": streamed,
            "max_tokens": rng.gen_range(2..12),
            "messages": [{"role": "user", "content": "how long is a piece of string?"}],
        });
        let path = if rng.gen_bool(0.5) {
            "/v1/chat/completions".to_string()
        } else {
            format!("/api/v1/instances/{instance}/proxy/v1/chat/completions")
        };
        let proxied = path.starts_with("/api/");
        let req = ctx.infer(&ctx.client, &path, &key).json(&body);
        match (streamed, proxied) {
            (false, false) => drop(ctx.call(Kind::Chat, Some(instance), req).await),
            (false, true) => drop(ctx.call(Kind::ProxyChat, Some(instance), req).await),
            (true, false) => ctx.stream(Kind::ChatStream, instance, req).await,
            (true, true) => ctx.stream(Kind::ProxyStream, instance, req).await,
        }
    }
}
