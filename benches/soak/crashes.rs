//! Backend crashes: every `crash_every`, one stable instance's backend is killed with SIGKILL,
//! while the chat clients keep using it. From the kill until the instance serves again (plus a
//! second), answers from it may fail: those count as caused on purpose.

use crate::load::{Ctx, Shared, STABLE};
use crate::tally::Kind;
use reqwest::Method;
use std::sync::Arc;
use std::time::Duration;

/// How long an instance may take to be back after its backend was killed (it is restarted after
/// its `restart_delay`).
const BACK: Duration = Duration::from_secs(60);

/// Kills backends until the phase ends; the last one killed is running again when it returns.
pub async fn run(ctx: Arc<Ctx>) {
    let every = ctx.shared.opts.crash_every;
    let mut turn = 0;
    loop {
        ctx.pause(every).await;
        if !ctx.running() {
            return;
        }
        let name = STABLE[turn % STABLE.len()];
        turn += 1;
        if let Err(why) = crash(&ctx, name).await {
            panic!("soak: crashing {name}: {why}");
        }
    }
}

async fn crash(ctx: &Ctx, name: &str) -> Result<(), String> {
    let path = format!("/api/v1/instances/{name}");
    let view = match ctx
        .call(Kind::Read, Some(name), ctx.manage(Method::GET, &path))
        .await
    {
        Some((200, view)) => view,
        other => return Err(format!("cannot read the instance: {other:?}")),
    };
    let Some(pid) = view["pid"].as_u64().filter(|_| view["status"] == "running") else {
        return Ok(()); // Not running at the moment: nothing to kill this time.
    };
    ctx.shared.tally.fault_began(name);
    // SAFETY: sends a signal; the pid is the backend's, which llamactl has not reaped (it is
    // running), so it cannot have been reused.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    Shared::count(&ctx.shared.kills);
    let back = async {
        let deadline = std::time::Instant::now() + BACK;
        loop {
            let view = ctx.wait_status(name, &["running"], BACK).await?;
            if view["pid"].as_u64() != Some(pid) {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                return Err(format!("still the killed pid {pid}: {view}"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let back: Result<(), String> = back.await;
    // Requests that were under way when it came back end within a moment.
    tokio::time::sleep(Duration::from_secs(1)).await;
    ctx.shared.tally.fault_ended(name);
    back
}
