//! Instance churn, one cycle after another: create, chat, update (a restart), stream, stop, an
//! on-demand start by a chat, a crash loop (the stand-in's `--fake-crash-file`) until `failed`, a
//! start once the cause is gone, delete. Every call must succeed; the instance is broken on purpose
//! only while its crash file exists.

use crate::load::{Ctx, Shared};
use crate::tally::Kind;
use reqwest::Method;
use serde_json::json;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// How long a start, a stop or a crash loop may take.
const SETTLE: Duration = Duration::from_secs(60);

/// Churns until the phase ends; the last cycle finishes (its instance deleted) first.
pub async fn run(ctx: Arc<Ctx>) {
    let dir = std::env::temp_dir().join(format!("llamactl-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temp dir for crash files");
    let mut n = 0u64;
    while ctx.running() {
        let name = format!("churn-{}-{n}", ctx.phase);
        let crash_file = dir.join(&name);
        if let Err(why) = cycle(&ctx, &name, &crash_file).await {
            eprintln!("soak: churn {name}: {why}");
            Shared::count(&ctx.shared.churn_failures);
            ctx.shared
                .tally
                .note(format!("instance cycle {name}: {why}"));
            // Whatever state it is in, it goes.
            let _ = std::fs::remove_file(&crash_file);
            let path = format!("/api/v1/instances/{name}");
            ctx.call(
                Kind::Lifecycle,
                Some(&name),
                ctx.manage(Method::DELETE, &path),
            )
            .await;
        }
        n += 1;
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// One call that must answer `want`.
async fn expect(
    ctx: &Ctx,
    kind: Kind,
    name: &str,
    want: u16,
    req: reqwest::RequestBuilder,
) -> Result<(), String> {
    match ctx.call(kind, Some(name), req).await {
        Some((status, _)) if status == want => Ok(()),
        Some((status, body)) => Err(format!("expected {want}, got {status}: {body}")),
        None => Err("no answer".into()),
    }
}

async fn cycle(ctx: &Ctx, name: &str, crash_file: &Path) -> Result<(), String> {
    let path = format!("/api/v1/instances/{name}");
    let chat = |stream: bool| {
        let body = json!({"model": name, "stream": stream, "messages": [{"role": "user", "content": "hi"}]});
        ctx.infer(&ctx.client, "/v1/chat/completions", ctx.valid_key(true))
            .json(&body)
    };
    let create = json!({
        "model": "/m.gguf",
        "restart_delay": 1,
        "max_restarts": 1,
        "on_demand_start": true,
        // A chat may start it after an operator's stop too: that is the on-demand start tried.
        "on_demand_after_stop": true,
        "fake_crash_file": crash_file.display().to_string(),
    });
    let req = ctx.manage(Method::POST, &path).json(&create);
    expect(ctx, Kind::Lifecycle, name, 201, req).await?;
    ctx.wait_status(name, &["running"], SETTLE).await?;
    expect(ctx, Kind::Chat, name, 200, chat(false)).await?;

    let req = ctx
        .manage(Method::PUT, &path)
        .json(&json!({"ctx_size": 256}));
    expect(ctx, Kind::Lifecycle, name, 200, req).await?;
    ctx.wait_status(name, &["running"], SETTLE).await?;
    ctx.stream(Kind::ChatStream, name, chat(true)).await;

    let req = ctx.manage(Method::POST, &format!("{path}/stop"));
    expect(ctx, Kind::Lifecycle, name, 200, req).await?;
    ctx.wait_status(name, &["stopped"], SETTLE).await?;
    // Started on demand by the chat itself.
    expect(ctx, Kind::Chat, name, 200, chat(false)).await?;

    // A backend that dies as it starts: restarted once, then `failed`.
    ctx.shared.tally.fault_began(name);
    std::fs::write(crash_file, b"").map_err(|e| format!("write {}: {e}", crash_file.display()))?;
    let req = ctx.manage(Method::POST, &format!("{path}/restart"));
    let looped = async {
        expect(ctx, Kind::Lifecycle, name, 200, req).await?;
        ctx.wait_status(name, &["failed"], SETTLE).await
    }
    .await;
    let _ = std::fs::remove_file(crash_file);
    ctx.shared.tally.fault_ended(name);
    looped?;
    let req = ctx.manage(Method::POST, &format!("{path}/start"));
    expect(ctx, Kind::Lifecycle, name, 200, req).await?;
    ctx.wait_status(name, &["running"], SETTLE).await?;
    let logs = ctx.manage(Method::GET, &format!("{path}/logs?lines=20"));
    expect(ctx, Kind::Read, name, 200, logs).await?;

    let req = ctx.manage(Method::DELETE, &path);
    expect(ctx, Kind::Lifecycle, name, 204, req).await?;
    Shared::count(&ctx.shared.churns);
    Ok(())
}
