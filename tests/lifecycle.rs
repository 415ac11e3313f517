//! Supervisor behaviour against the real server binary with the stand-in backend: readiness,
//! failures, crash restarts, stop escalation, shutdown and restore.

mod common;

use common::{backends_in_range, eventually, pid_of, process_alive, Options, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::os::unix::process::CommandExt;
use std::time::Duration;

const READY: Duration = Duration::from_secs(15);

fn fake() -> String {
    common::fake_backend().display().to_string()
}

#[tokio::test]
async fn starting_becomes_running_only_when_health_answers() {
    let server = TestServer::start(Options::fake()).await;
    // Ready when the test says so, not after a delay a busy machine could overrun.
    let ready_file = server.data_dir.join("slow-ready");
    let (_, created) = server
        .create(
            "slow",
            json!({"model": "/m", "fake_ready_file": ready_file.display().to_string()}),
        )
        .await;
    assert_eq!(created["status"], "starting");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        server.status("slow").await,
        "starting",
        "not ready while /health is 503"
    );
    let (code, _) = server
        .call(Method::GET, "/api/v1/instances/slow/proxy/health", None)
        .await;
    assert_eq!(
        code,
        StatusCode::SERVICE_UNAVAILABLE,
        "proxy refuses until running"
    );
    std::fs::write(&ready_file, "").unwrap();
    server.wait_status("slow", "running", READY).await;
}

#[tokio::test]
async fn exit_before_ready_is_failed_with_the_reason() {
    let server = TestServer::start(Options::fake()).await;
    server
        .create(
            "broken",
            json!({"model": "/m", "fake_exit_before_ready": 7}),
        )
        .await;
    let inst = server.wait_status("broken", "failed", READY).await;
    let reason = inst["last_error"].as_str().unwrap();
    assert!(reason.contains("exited with code 7"), "{reason}");
    assert!(
        reason.contains("failed to load model"),
        "log tail quoted: {reason}"
    );
    assert!(inst.get("pid").is_none());
    // No restart loop for a start that never became ready.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(server.status("broken").await, "failed");
}

#[tokio::test]
async fn crashed_backend_is_restarted_then_given_up_on() {
    let server = TestServer::start(Options::fake()).await;
    let crash_file = server.data_dir.join("crash-now");
    server
        .create(
            "c",
            json!({"model": "/m", "restart_delay": 0, "max_restarts": 2,
                   "fake_crash_file": crash_file.display().to_string()}),
        )
        .await;
    let first = server.wait_status("c", "running", READY).await;
    let first_pid = pid_of(&first);

    // A crash while running: restarted with a new process.
    unsafe { libc::kill(first_pid as i32, libc::SIGKILL) };
    let mut second = server.wait_status("c", "running", READY).await;
    while pid_of(&second) == first_pid {
        second = server.wait_status("c", "running", READY).await;
    }
    assert_eq!(second["restarts"], 1);
    assert!(!process_alive(first_pid));

    // Now every restart crashes at once: after max_restarts in a row, failed.
    std::fs::write(&crash_file, "").unwrap();
    unsafe { libc::kill(pid_of(&second) as i32, libc::SIGKILL) };
    let failed = server.wait_status("c", "failed", READY).await;
    let reason = failed["last_error"].as_str().unwrap();
    assert!(reason.contains("giving up"), "{reason}");
    assert!(backends_in_range(&fake(), server.port_range()).is_empty());

    // A manual start resets the count and works again once the cause is gone.
    std::fs::remove_file(&crash_file).unwrap();
    let (code, _) = server.op("c", "start").await;
    assert_eq!(code, StatusCode::OK);
    server.wait_status("c", "running", READY).await;
}

#[tokio::test]
async fn without_auto_restart_a_crash_is_final() {
    let server = TestServer::start(Options::fake()).await;
    server
        .create(
            "n",
            json!({"model": "/m", "auto_restart": false, "fake_crash_after_ms": 400}),
        )
        .await;
    server.wait_status("n", "running", READY).await;
    let failed = server.wait_status("n", "failed", READY).await;
    assert!(failed["last_error"]
        .as_str()
        .unwrap()
        .contains("auto_restart is off"));
}

#[tokio::test]
async fn stop_escalates_to_sigkill_for_a_backend_that_ignores_sigterm() {
    let server = TestServer::start(Options::fake()).await;
    server
        .create(
            "stubborn",
            json!({"model": "/m", "fake_ignore_sigterm": true}),
        )
        .await;
    let inst = server.wait_status("stubborn", "running", READY).await;
    let pid = pid_of(&inst);
    let (code, body) = server.op("stubborn", "stop").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(body["status"], "stopping");
    server
        .wait_status("stubborn", "stopped", Duration::from_secs(20))
        .await;
    assert!(!process_alive(pid));
}

#[tokio::test]
async fn restart_and_update_replace_the_process() {
    let server = TestServer::start(Options::fake()).await;
    server
        .create("r", json!({"model": "/m", "ctx_size": 256}))
        .await;
    let before = server.wait_status("r", "running", READY).await;
    let (code, body) = server.op("r", "restart").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(body["status"], "restarting");
    let after = server.wait_status("r", "running", READY).await;
    assert_ne!(pid_of(&before), pid_of(&after));
    assert!(!process_alive(pid_of(&before)));

    server.update("r", json!({"ctx_size": 1024})).await;
    let updated = server.wait_status("r", "running", READY).await;
    assert_ne!(pid_of(&updated), pid_of(&after));
    let (_, args) = server
        .call(Method::GET, "/api/v1/instances/r/proxy/args", None)
        .await;
    let args: Vec<&str> = args["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let at = args.iter().position(|a| *a == "--ctx-size").unwrap();
    assert_eq!(args[at + 1], "1024", "{args:?}");

    // Updating a stopped instance does not start it.
    server.op("r", "stop").await;
    server.wait_status("r", "stopped", READY).await;
    let (_, body) = server.update("r", json!({"ctx_size": 2048})).await;
    assert_eq!(body["status"], "stopped");
}

#[tokio::test]
async fn delete_ends_the_process_and_removes_the_log() {
    let server = TestServer::start(Options::fake()).await;
    server.create("d", json!({"model": "/m"})).await;
    let inst = server.wait_status("d", "running", READY).await;
    let log = server.data_dir.join("logs/d.log");
    assert!(log.exists());
    assert_eq!(server.delete("d").await.0, StatusCode::NO_CONTENT);
    assert!(!process_alive(pid_of(&inst)));
    assert!(!log.exists());
    // The name is free again.
    assert_eq!(
        server.create("d", json!({"model": "/m"})).await.0,
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn sigterm_stops_every_backend_and_restore_keeps_desired_state() {
    let server = TestServer::start(Options::fake()).await;
    let range = server.port_range();
    for name in ["up1", "up2", "down"] {
        server.create(name, json!({"model": "/m"})).await;
        server.wait_status(name, "running", READY).await;
    }
    server.op("down", "stop").await;
    server.wait_status("down", "stopped", READY).await;
    assert_eq!(backends_in_range(&fake(), range).len(), 2);

    let mut server = server;
    let status = server.signal_and_wait(libc::SIGTERM);
    assert!(status.success(), "clean exit: {status:?}");
    assert!(
        backends_in_range(&fake(), range).is_empty(),
        "no backend outlives the server"
    );

    let server = server.restart().await;
    server.wait_status("up1", "running", READY).await;
    server.wait_status("up2", "running", READY).await;
    assert_eq!(server.status("down").await, "stopped");
    assert_eq!(backends_in_range(&fake(), range).len(), 2);
    // Each was stopped by its own actor, which recorded it: the actors of instances created over
    // HTTP outlive the HTTP workers' runtimes.
    for name in ["up1", "up2"] {
        let events: Vec<String> = server
            .instance_history(name)
            .await
            .into_iter()
            .map(|e| e.event)
            .collect();
        assert_eq!(
            events.iter().filter(|e| *e == "stopped").count(),
            1,
            "{name}: {events:?}"
        );
    }
}

#[tokio::test]
async fn after_sigkill_of_the_server_each_instance_runs_exactly_once() {
    let mut server = TestServer::start(Options::fake()).await;
    let range = server.port_range();
    for name in ["a", "b"] {
        server.create(name, json!({"model": "/m"})).await;
        server.wait_status(name, "running", READY).await;
    }
    server.create("idle", json!({"model": "/m"})).await;
    server.wait_status("idle", "running", READY).await;
    server.op("idle", "stop").await;
    server.wait_status("idle", "stopped", READY).await;

    server.signal_and_wait(libc::SIGKILL);
    eventually(
        "backends die with their parent",
        Duration::from_secs(10),
        || backends_in_range(&fake(), range).is_empty(),
    )
    .await;

    let server = server.restart().await;
    server.wait_status("a", "running", READY).await;
    server.wait_status("b", "running", READY).await;
    assert_eq!(server.status("idle").await, "stopped");
    let live = backends_in_range(&fake(), range);
    assert_eq!(
        live.len(),
        2,
        "exactly one backend per running instance: {live:?}"
    );
}

#[tokio::test]
async fn a_backend_left_by_a_killed_predecessor_is_ended_on_boot() {
    // A process the server did not spawn (so no parent-death signal reaches it), recorded in the
    // database as an instance's child: what a predecessor killed mid-spawn could leave behind.
    let mut server = TestServer::start(Options::fake()).await;
    let range = server.port_range();
    server.create("o", json!({"model": "/m"})).await;
    server.wait_status("o", "running", READY).await;
    server.signal_and_wait(libc::SIGTERM);

    let stray_port = range[1];
    let mut stray = std::process::Command::new("python3")
        .arg(fake())
        .args(["--port", &stray_port.to_string(), "--host", "127.0.0.1"])
        .stdout(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let pid = stray.id();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let ticks: i64 = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .nth(19)
        .unwrap()
        .parse()
        .unwrap();
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    let db = server.data_dir.join("llamactl.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    sqlx::query(
        "UPDATE instances SET pid = ?, pid_start_ticks = ?, pid_boot_id = ? WHERE name = 'o'",
    )
    .bind(i64::from(pid))
    .bind(ticks)
    .bind(boot.trim())
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;

    let server = server.restart().await;
    let status = stray.wait().unwrap();
    assert!(!status.success(), "the stray was signalled: {status:?}");
    server.wait_status("o", "running", READY).await;
    assert_eq!(backends_in_range(&fake(), range).len(), 1);
}

#[tokio::test]
async fn a_recorded_pid_that_is_now_someone_else_is_left_alone() {
    let mut server = TestServer::start(Options::fake()).await;
    server.create("o", json!({"model": "/m"})).await;
    server.wait_status("o", "running", READY).await;
    server.signal_and_wait(libc::SIGTERM);

    // Our own test process, recorded with a wrong start time: a reused PID.
    let me = std::process::id();
    let db = server.data_dir.join("llamactl.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    sqlx::query(
        "UPDATE instances SET pid = ?, pid_start_ticks = 1, pid_boot_id = 'x' WHERE name = 'o'",
    )
    .bind(i64::from(me))
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    let server = server.restart().await;
    server.wait_status("o", "running", READY).await; // and this test process is still alive
}

#[tokio::test]
async fn a_second_server_on_the_same_data_dir_refuses_to_start() {
    let server = TestServer::start(Options::fake()).await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_llamactl"))
        .arg("--config")
        .arg(&server.config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another llamactl"), "{err}");
}

#[tokio::test]
async fn bad_config_is_a_startup_error_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.yaml");
    std::fs::write(&file, "server:\n  portt: 1\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_llamactl"))
        .arg("--config")
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("portt"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_llamactl"))
        .arg("--config")
        .arg(&file)
        .env("LLAMACTL_PORT", "eighty")
        .output()
        .unwrap();
    assert!(!out.status.success());
}
