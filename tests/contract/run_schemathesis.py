#!/usr/bin/env python3
"""Contract test: schemathesis against the OpenAPI document llamactl serves about itself.

Starts the built llamactl with the stand-in backend (tests/fixtures/fake_llama_server.py), Swagger on
and a management and an inference key in its config, creates one instance so that generated requests
also meet a running one, runs `st run` with every check on the document at /swagger/openapi.json,
stops the server, and exits with schemathesis' status (non-zero on any failure).

Settings (environment): LLAMACTL_BIN (target/debug/llamactl), SCHEMATHESIS (.venv/bin/st),
CONTRACT_MAX_EXAMPLES (test cases per operation and phase, 25), CONTRACT_SEED (a fixed seed, so a run
can be repeated; random if unset), CONTRACT_REPORT_DIR (where the JUnit report goes).
"""
import json, os, re, signal, subprocess, sys, tempfile, threading, time, urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ADMIN_KEY = "contract-management-key"
INFERENCE_KEY = "contract-inference-key"


def start_server(data_dir: Path) -> tuple[subprocess.Popen, str, list[str]]:
    """Runs llamactl on a free port; returns the process, its base URL and its collected stderr."""
    config = data_dir / "llamactl.yaml"
    # JSON is YAML: every string is quoted whatever it holds.
    config.write_text(
        "server:\n"
        "  host: 127.0.0.1\n"
        "  port: 0\n"
        "  enable_swagger: true\n"
        "backends:\n"
        "  llama-cpp:\n"
        f"    command: {json.dumps(sys.executable)}\n"
        f"    args: [{json.dumps(str(ROOT / 'tests/fixtures/fake_llama_server.py'))}]\n"
        f"data_dir: {json.dumps(str(data_dir))}\n"
        "auth:\n"
        f"  management_keys: [{ADMIN_KEY}]\n"
        f"  inference_keys: [{INFERENCE_KEY}]\n"
        # schemathesis' auth check expects 401 for every keyless request; the 429 that follows
        # repeated failures is documented and tested in tests/security_keys.rs.
        "  failed_auth_burst: 1000000\n"
        "instances:\n"
        "  port_range: [31000, 31999]\n"
        "  max_instances: 20\n"
        "  max_running_instances: 4\n"
    )
    binary = os.environ.get("LLAMACTL_BIN", str(ROOT / "target/debug/llamactl"))
    proc = subprocess.Popen(
        [binary, "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "RUST_LOG": "info", "NO_COLOR": "1"},
    )
    lines: list[str] = []
    found: list[str] = []
    ready = threading.Event()

    def drain():
        # Keeps reading to the end, so the server never blocks on a full pipe.
        for line in proc.stderr:
            lines.append(line)
            match = re.search(r"listening on (http://\S+)", line)
            if match and not found:
                found.append(match.group(1))
                ready.set()
        ready.set()

    threading.Thread(target=drain, daemon=True).start()
    if not ready.wait(60) or not found:
        proc.kill()
        sys.exit("llamactl did not start:\n" + "".join(lines))
    return proc, found[0], lines


def call(base: str, method: str, path: str, body=None) -> tuple[int, bytes]:
    request = urllib.request.Request(
        base + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {ADMIN_KEY}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def wait_running(base: str, name: str, deadline: float) -> None:
    while time.time() < deadline:
        code, body = call(base, "GET", f"/api/v1/instances/{name}")
        if code == 200 and json.loads(body)["status"] == "running":
            return
        time.sleep(0.2)
    sys.exit(f"instance {name} did not become running")


def main() -> int:
    st = os.environ.get("SCHEMATHESIS", str(ROOT / ".venv/bin/st"))
    examples = os.environ.get("CONTRACT_MAX_EXAMPLES", "25")
    report_dir = Path(os.environ.get("CONTRACT_REPORT_DIR", ROOT / "target/contract"))
    report_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="llamactl-contract-") as tmp:
        proc, base, log = start_server(Path(tmp))
        try:
            code, body = call(base, "POST", "/api/v1/instances/probe", {"model": "/m.gguf"})
            if code != 201:
                sys.exit(f"creating the probe instance: {code} {body!r}")
            wait_running(base, "probe", time.time() + 60)
            # Every check is on by default in schemathesis 4 (`--checks all` would also override the
            # per-operation exceptions in schemathesis.toml).
            command = [
                st, "--config-file", str(Path(__file__).with_name("schemathesis.toml")),
                "run", f"{base}/swagger/openapi.json",
                "--max-examples", examples,
                "--header", f"Authorization: Bearer {ADMIN_KEY}",
                # One worker: hypothesis describes strategies by parsing their source with `ast`,
                # which CPython 3.11 does not do safely from two threads at once ("AST constructor
                # recursion depth mismatch", a runtime error of the run, not of llamactl).
                "--workers", "1",
                "--request-timeout", "30",
                "--report", "junit",
                "--report-dir", str(report_dir),
                "--warnings", "off",
            ]
            if seed := os.environ.get("CONTRACT_SEED"):
                command += ["--seed", seed]
            print("+", " ".join(c if ADMIN_KEY not in c else "--header 'Authorization: ...'" for c in command), flush=True)
            started = time.time()
            status = subprocess.call(command)
            print(f"schemathesis finished in {time.time() - started:.0f} s with status {status}")
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.returncode not in (0, -signal.SIGTERM):
            print(f"llamactl exited with {proc.returncode}", file=sys.stderr)
            status = status or 1
        (report_dir / "llamactl.log").write_text("".join(log))
        return status


if __name__ == "__main__":
    sys.exit(main())
