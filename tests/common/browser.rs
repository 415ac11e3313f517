//! Running the dashboard's browser scripts (`tests/browser/*.py`, Playwright for Python driving
//! Debian's headless Chromium) from a test; screenshots go to `target/browser-screenshots/`.

use std::path::PathBuf;
use std::process::Command;

/// Where the scripts write their screenshots.
pub fn screenshots() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/browser-screenshots")
}

/// Runs one script of `tests/browser/` with these variables; panics with its output if it fails.
/// The Python is `LLAMACTL_TEST_BROWSER_PYTHON`, else `LLAMACTL_TEST_PYTHON` (one with
/// Playwright: `make browser` and `make e2e` set it); the browser `LLAMACTL_TEST_CHROMIUM`, else
/// `/usr/bin/chromium`.
pub fn run_script(script: &str, env: &[(&str, &str)]) {
    let python = std::env::var("LLAMACTL_TEST_BROWSER_PYTHON")
        .or_else(|_| std::env::var("LLAMACTL_TEST_PYTHON"))
        .expect("LLAMACTL_TEST_PYTHON: a Python with Playwright (make browser sets it)");
    let chromium =
        std::env::var("LLAMACTL_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/browser")
        .join(script);
    let out = Command::new(python)
        .arg(&path)
        .envs(env.iter().copied())
        .env("CHROMIUM", chromium)
        .env("SCREENSHOTS", screenshots())
        .output()
        .expect("run the browser script");
    assert!(
        out.status.success(),
        "{script} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// [`run_script`] off the async runtime (the script drives a llamactl this test serves).
pub async fn browse(script: &'static str, env: &[(&str, &str)]) {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        run_script(script, &env)
    })
    .await
    .expect("browser script");
}
