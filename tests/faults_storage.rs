//! Storage faults: a full disk under the data directory, a database locked by another process,
//! and `llamactl backup` taken while requests run (then restored into a new server).

mod common;

use common::{eventually_async, Options, TestServer, ADMIN_KEY, INFERENCE_KEY};
use reqwest::{header, Method, StatusCode};
use serde_json::{json, Value};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, SqliteConnection};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A small tmpfs, unmounted when dropped; `None` (with the reason printed) where the machine does
/// not allow mounting one.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        // SAFETY: geteuid only reads the process's effective user id.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: mounting a tmpfs needs root (CI runs as root)");
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let mounted = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .output();
        match mounted {
            Ok(out) if out.status.success() => Some(Tmpfs { dir }),
            Ok(out) => {
                eprintln!(
                    "skipped: cannot mount a tmpfs here: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("skipped: cannot run mount: {e}");
                None
            }
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Appends to `file` until the file system says it is full (ENOSPC).
fn fill(file: &Path) {
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .expect("open filler");
    let chunk = vec![0u8; 1 << 20];
    loop {
        if let Err(e) = out.write_all(&chunk) {
            assert_eq!(
                e.raw_os_error(),
                Some(libc::ENOSPC),
                "filling {file:?}: {e}"
            );
            return;
        }
    }
}

/// `POST /api/v1/instances/{name}` as the raw answer, for its headers.
async fn create_raw(server: &TestServer, name: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/api/v1/instances/{name}", server.base))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"model": "/m"}))
        .send()
        .await
        .expect("request")
}

fn names(list: &Value) -> Vec<String> {
    let mut names: Vec<String> = list
        .as_array()
        .expect("a list")
        .iter()
        .map(|i| i["name"].as_str().expect("name").to_string())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn a_full_disk_refuses_changes_with_507_keeps_serving_and_recovers_by_itself() {
    let Some(tmpfs) = Tmpfs::mount("24m") else {
        return;
    };
    let data = tmpfs.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let server = TestServer::start_in(&data, Options::fake()).await;
    let (code, body) = server
        .create("a", json!({"model": "/m", "restart_delay": 1}))
        .await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    let before = server
        .wait_status("a", "running", Duration::from_secs(20))
        .await;

    // Arrange: nothing left, not even the slack at the end of the backend's log.
    let filler = tmpfs.path().join("filler");
    fill(&filler);
    fill(&data.join("logs/a.log"));

    // Act + Assert: a create is refused, saying why and where, and leaves nothing behind.
    for name in ["b", "c"] {
        let (code, body) = server.create(name, json!({"model": "/m"})).await;
        assert_eq!(code, StatusCode::INSUFFICIENT_STORAGE, "{body}");
        let message = body["error"].as_str().expect("an error message");
        assert!(message.contains("no space left"), "{message}");
        assert!(
            message.contains(&data.display().to_string()),
            "names the directory: {message}"
        );
    }
    let (code, list) = server.call(Method::GET, "/api/v1/instances", None).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(names(&list), ["a"], "nothing half-created");
    assert_eq!(server.get("b").await.0, StatusCode::NOT_FOUND);
    assert!(!data.join("logs/b.log").exists());

    // Reads and inference go on.
    assert_eq!(server.get("a").await.0, StatusCode::OK);
    assert_eq!(server.history("limit=5").await.0, StatusCode::OK);
    for _ in 0..3 {
        let (code, body) = server.chat("a", json!({})).await;
        assert_eq!(code, StatusCode::OK, "inference on a full disk: {body}");
    }

    // A backend that crashes is restarted even though its log cannot grow.
    let pid = common::pid_of(&before) as i32;
    // SAFETY: signalling the test's own backend.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    eventually_async(
        "a restarted with a new process",
        Duration::from_secs(30),
        || async {
            let (_, v) = server.get("a").await;
            v["status"] == "running" && v["pid"].as_i64() != Some(i64::from(pid))
        },
    )
    .await;
    assert!(
        server
            .output_text()
            .contains("backend started without a log"),
        "the server says the backend's output is discarded"
    );
    let (code, body) = server.chat("a", json!({})).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(
        server
            .output_text()
            .matches("disk full: writes are refused")
            .count(),
        1,
        "logged once, not once per refused write"
    );

    // Space returns: the same create works, with no restart of llamactl.
    std::fs::remove_file(&filler).unwrap();
    let (code, body) = server.create("b", json!({"model": "/m"})).await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    server
        .wait_status("b", "running", Duration::from_secs(20))
        .await;
    drop(server);
}

/// A connection of its own to the server's database, as an operator's `sqlite3` shell is.
async fn other_connection(db: &Path) -> SqliteConnection {
    SqliteConnectOptions::new()
        .filename(db)
        .busy_timeout(Duration::from_secs(30))
        .connect()
        .await
        .expect("open the database from outside")
}

#[tokio::test]
async fn a_database_locked_by_another_process_answers_503_with_retry_after_then_works() {
    let server = TestServer::start(Options::fake()).await;
    assert_eq!(
        server.create("a", json!({"model": "/m"})).await.0,
        StatusCode::CREATED
    );
    let mut shell = other_connection(&server.db_path()).await;

    // A lock held longer than the busy timeout.
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut shell)
        .await
        .unwrap();
    assert_eq!(
        server.get("a").await.0,
        StatusCode::OK,
        "reads are not blocked"
    );
    let response = create_raw(&server, "b").await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let retry: u64 = response.headers()[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .expect("Retry-After in seconds");
    assert!(retry >= 1);
    let body: Value = response.json().await.unwrap();
    let message = body["error"].as_str().expect("an error message");
    assert!(message.contains("locked by another process"), "{message}");
    assert_eq!(
        server.get("b").await.0,
        StatusCode::NOT_FOUND,
        "nothing half-created"
    );

    // Released: the same request succeeds.
    sqlx::query("COMMIT").execute(&mut shell).await.unwrap();
    assert_eq!(
        server.create("b", json!({"model": "/m"})).await.0,
        StatusCode::CREATED
    );

    // A short lock is waited out.
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut shell)
        .await
        .unwrap();
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        sqlx::query("COMMIT").execute(&mut shell).await.unwrap();
    });
    let started = Instant::now();
    let (code, body) = server.create("c", json!({"model": "/m"})).await;
    assert_eq!(
        code,
        StatusCode::CREATED,
        "a short lock is waited out: {body}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "it did wait"
    );
    release.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_while_requests_run_holds_every_instance_and_key_and_restores() {
    let server = TestServer::start(Options::fake()).await;
    let instances = ["i0", "i1", "i2"];
    for name in instances {
        assert_eq!(
            server.create(name, json!({"model": "/m"})).await.0,
            StatusCode::CREATED
        );
    }
    let mut key_ids = Vec::new();
    for n in 0..3 {
        let (_, id) = server
            .new_key(json!({"name": format!("k{n}"), "kind": "inference"}))
            .await;
        key_ids.push(id);
    }
    server
        .wait_status("i0", "running", Duration::from_secs(20))
        .await;

    // Requests keep running meanwhile: inference, and instances coming and going.
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (base, stop) = (server.base.clone(), stop.clone());
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let _ = client
                    .post(format!("{base}/v1/chat/completions"))
                    .bearer_auth(INFERENCE_KEY)
                    .json(&json!({"model": "i0", "messages": [{"role": "user", "content": "hi"}]}))
                    .send()
                    .await;
                let churn = format!("{base}/api/v1/instances/churn{}", n % 2);
                let _ = client
                    .post(&churn)
                    .bearer_auth(ADMIN_KEY)
                    .json(&json!({"model": "/m"}))
                    .send()
                    .await;
                let _ = client.delete(&churn).bearer_auth(ADMIN_KEY).send().await;
                n += 1;
            }
            n
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;

    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("llamactl-backup.db");
    let copy_arg = copy.display().to_string();
    let run = tokio::task::block_in_place(|| server.cli(&["backup", &copy_arg]));
    stop.store(true, Ordering::Relaxed);
    let rounds = load.await.unwrap();
    assert!(run.ok, "{run:?}");
    assert!(run.stdout.contains("backed up"), "{run:?}");
    assert!(rounds > 0, "requests ran during the backup");
    let mode = std::fs::metadata(&copy).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the copy is private");

    // An existing file is never overwritten.
    let before = std::fs::read(&copy).unwrap();
    let again = tokio::task::block_in_place(|| server.cli(&["backup", &copy_arg]));
    assert!(!again.ok, "{again:?}");
    assert!(again.stderr.contains("exists"), "{again:?}");
    assert_eq!(std::fs::read(&copy).unwrap(), before);

    // Restore as the README says: the copy as the database of a (new) server.
    let restored_dir = tempfile::tempdir().unwrap();
    let restored_db: PathBuf = restored_dir.path().join("llamactl.db");
    std::fs::copy(&copy, &restored_db).unwrap();
    let restored = TestServer::start_in(restored_dir.path(), Options::fake()).await;
    let (code, list) = restored.call(Method::GET, "/api/v1/instances", None).await;
    assert_eq!(code, StatusCode::OK, "{list}");
    let restored_names = names(&list);
    for name in instances {
        assert!(
            restored_names.contains(&name.to_string()),
            "{name} in {restored_names:?}"
        );
    }
    let (code, keys) = restored.call(Method::GET, "/api/v1/auth/keys", None).await;
    assert_eq!(code, StatusCode::OK, "{keys}");
    let restored_keys: Vec<&str> = keys
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(|k| k["id"].as_str())
        .collect();
    for id in &key_ids {
        assert!(
            restored_keys.contains(&id.as_str()),
            "{id} in {restored_keys:?}"
        );
    }
}
