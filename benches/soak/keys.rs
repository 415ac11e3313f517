//! Key checks: a valid stored key, a key that never existed and a revoked one, over and over; now
//! and then a key made through the API, used, revoked, and refused afterwards.

use crate::load::{Ctx, Shared};
use crate::tally::Kind;
use reqwest::Method;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// A key-shaped token that was never issued.
const UNKNOWN_KEY: &str = "sk-inference-000000000000000000000000000000000000";

/// Checks keys until the phase ends.
pub async fn run(ctx: Arc<Ctx>) {
    let models = format!("{}/v1/models", ctx.base);
    let mut round = 0u64;
    while ctx.running() {
        let stored = ctx.shared.stored_key.clone();
        let valid = ctx.client.get(&models).bearer_auth(&stored);
        ctx.call(Kind::ValidKey, None, valid).await;
        let unknown = ctx.stranger.get(&models).bearer_auth(UNKNOWN_KEY);
        ctx.call(Kind::InvalidKey, None, unknown).await;
        let revoked = ctx
            .stranger
            .get(&models)
            .bearer_auth(&ctx.shared.revoked_key);
        ctx.call(Kind::RevokedKey, None, revoked).await;
        if round.is_multiple_of(20) {
            key_cycle(&ctx, round).await;
        }
        round += 1;
        ctx.pause(Duration::from_millis(50)).await;
    }
}

/// Creates a key through the API, uses it, revokes it, and uses it again.
async fn key_cycle(ctx: &Ctx, round: u64) {
    let models = format!("{}/v1/models", ctx.base);
    let body = json!({"name": format!("soak-{}-{round}", ctx.phase), "kind": "inference"});
    let create = ctx.manage(Method::POST, "/api/v1/auth/keys").json(&body);
    let Some((201, made)) = ctx.call(Kind::KeyAdmin, None, create).await else {
        return;
    };
    let (Some(id), Some(secret)) = (made["id"].as_str(), made["key"].as_str()) else {
        return;
    };
    ctx.call(
        Kind::ValidKey,
        None,
        ctx.client.get(&models).bearer_auth(secret),
    )
    .await;
    let revoke = ctx.manage(Method::DELETE, &format!("/api/v1/auth/keys/{id}"));
    ctx.call(Kind::KeyAdmin, None, revoke).await;
    ctx.call(
        Kind::RevokedKey,
        None,
        ctx.stranger.get(&models).bearer_auth(secret),
    )
    .await;
    Shared::count(&ctx.shared.key_cycles);
}
