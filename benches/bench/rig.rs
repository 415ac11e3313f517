//! The set-up every scenario runs against: llamactl managing one llama-server instance with the real
//! model, and nginx and the Go proxy in front of that same llama-server.

use crate::bare_proxy::BareProxy;
use crate::client::{Req, Target};
use crate::goproxy::GoProxy;
use crate::llamactl::{self, Llamactl};
use crate::nginx::Nginx;
use crate::opts::Opts;
use crate::procs;
use crate::scenario::{Side, BASELINE, BASELINE_V1};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// The instance every scenario uses.
pub const INSTANCE: &str = "bench";
/// How long a model may take to load on a busy machine.
pub const READY: Duration = Duration::from_secs(120);

/// How a side reaches llama-server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// Straight to llama-server's port.
    Direct,
    /// Through nginx.
    Nginx,
    /// Through the Go reference proxy (`httputil.ReverseProxy`).
    GoProxy,
    /// Through the bare hyper proxy: hyper's server and client, nothing of llamactl's.
    Bare,
    /// Through llamactl's instance proxy, `/api/v1/instances/{name}/proxy<path>`.
    Proxy,
    /// Through the baseline llamactl's instance proxy (only with `BENCH_BASELINE`).
    Baseline,
    /// To the baseline llamactl's `/v1` routes (only with `BENCH_BASELINE`).
    BaselineV1,
    /// To llamactl at the path as written (the OpenAI-compatible `/v1/...` routes).
    Llamactl,
    /// Through the proxy of a llamactl with metering off (only for the metering scenario).
    Unmetered,
    /// To the `/v1` routes of a llamactl with metering off.
    UnmeteredV1,
}

impl Via {
    /// llamactl is the thing under test on this side (the others are yardsticks).
    pub fn is_llamactl(self) -> bool {
        matches!(
            self,
            Via::Proxy
                | Via::Llamactl
                | Via::Baseline
                | Via::BaselineV1
                | Via::Unmetered
                | Via::UnmeteredV1
        )
    }
}

/// llamactl, its instance and nginx; everything stops when this drops.
pub struct Rig {
    /// The settings.
    pub opts: Opts,
    /// llamactl (release build).
    pub llamactl: Llamactl,
    /// nginx in front of the instance's llama-server.
    pub nginx: Nginx,
    /// The Go proxy in front of the same llama-server, if it was built.
    pub goproxy: Option<GoProxy>,
    /// The bare hyper proxy in front of the same llama-server.
    pub bare: BareProxy,
    /// The instance's llama-server (fixed port, so it stays put across stop/start).
    pub backend: SocketAddr,
    /// Another llamactl build with its own instance, to compare with (`BENCH_BASELINE`).
    pub baseline: Option<Llamactl>,
    /// The same build with metering off, with its own instance (for the metering scenario).
    pub unmetered: Option<Llamactl>,
    // Last: dropped after the processes that use it have stopped.
    /// Temp dir for data, configs and logs.
    pub tmp: tempfile::TempDir,
}

/// The options the instance runs with; the bare llama-server of the cold-start scenario gets the same.
pub fn instance_options(opts: &Opts) -> Value {
    json!({
        "model": opts.model.display().to_string(),
        "ctx_size": 512,
        // One compute thread: the machine has two cores, and the proxy and client need one.
        "threads": 1,
        "restart_delay": 0,
    })
}

/// Starts the llamactl `binary` in `dir` with the instance on a fixed free port; waits until it runs.
async fn managed(opts: &Opts, binary: &Path, dir: &Path) -> (Llamactl, u16) {
    managed_with(opts, binary, dir, |yaml| yaml).await
}

/// [`managed`], with the config edited by `edit`.
async fn managed_with(
    opts: &Opts,
    binary: &Path,
    dir: &Path,
    edit: impl FnOnce(String) -> String,
) -> (Llamactl, u16) {
    let port = procs::free_port();
    let yaml = edit(Llamactl::config(dir, &opts.llama_server, [port, port]));
    let llamactl = Llamactl::start_yaml(binary, dir, &yaml);
    let mut body = instance_options(opts);
    body["port"] = json!(port);
    llamactl.create(INSTANCE, body).await;
    llamactl.wait_status(INSTANCE, "running", READY).await;
    (llamactl, port)
}

/// Starts the Go proxy in front of `upstream` if `make goproxy` built it (see
/// [`GoProxy::start`] for `soft_files`); otherwise says that its side is left out.
pub fn go_proxy(opts: &Opts, upstream: SocketAddr, soft_files: Option<u64>) -> Option<GoProxy> {
    match &opts.goproxy {
        Some(binary) => Some(GoProxy::start(binary, upstream, soft_files)),
        None => {
            eprintln!(
                "bench: no Go proxy (LLAMACTL_BENCH_GOPROXY unset or not built; `make goproxy` \
                 needs Go): the \"go proxy\" side is left out"
            );
            None
        }
    }
}

/// The CPU count, used for nginx's workers (llamactl's runtime starts as many threads).
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl Rig {
    /// Starts llamactl (and the baseline, if any) with the instance, then nginx and the Go proxy.
    pub async fn up(opts: Opts) -> Rig {
        let tmp = tempfile::Builder::new()
            .prefix("llamactl-bench-")
            .tempdir()
            .expect("temp dir");
        let (llamactl, port) =
            managed(&opts, &Llamactl::built(), &tmp.path().join("llamactl")).await;
        let baseline = match &opts.baseline {
            Some(binary) => Some(managed(&opts, binary, &tmp.path().join("baseline")).await.0),
            None => None,
        };
        let unmetered = match opts.wants("metering") {
            true => {
                let dir = tmp.path().join("unmetered");
                let off = |yaml: String| {
                    yaml.replacen("  port: 0\n", "  port: 0\n  metrics: false\n", 1)
                        + "log:\n  requests: false\nactivity:\n  enabled: false\n"
                };
                Some(managed_with(&opts, &Llamactl::built(), &dir, off).await.0)
            }
            false => None,
        };
        let backend: SocketAddr = format!("127.0.0.1:{port}")
            .parse()
            .expect("loopback address");
        let nginx = Nginx::start(&opts.nginx, &tmp.path().join("nginx"), backend, cores());
        let goproxy = go_proxy(&opts, backend, None);
        let bare = BareProxy::start(backend, None);
        Rig {
            opts,
            llamactl,
            nginx,
            goproxy,
            bare,
            backend,
            baseline,
            unmetered,
            tmp,
        }
    }

    /// The sides to measure for a scenario that lists `sides`: with a baseline, its proxy and its
    /// `/v1` join right after llamactl's own.
    pub fn sides(&self, sides: &[Side]) -> Vec<Side> {
        let mut out = Vec::new();
        for side in sides {
            if side.via == Via::GoProxy && self.goproxy.is_none() {
                continue;
            }
            out.push(*side);
            if self.baseline.is_some() {
                match side.via {
                    Via::Proxy => out.push(BASELINE),
                    Via::Llamactl => out.push(BASELINE_V1),
                    _ => {}
                }
            }
        }
        out
    }

    fn goproxy(&self) -> &GoProxy {
        self.goproxy
            .as_ref()
            .expect("go proxy side without the go proxy")
    }

    fn baseline(&self) -> &Llamactl {
        self.baseline
            .as_ref()
            .expect("baseline side without BENCH_BASELINE")
    }

    fn unmetered(&self) -> &Llamactl {
        self.unmetered
            .as_ref()
            .expect("metering side without the unmetered llamactl")
    }

    /// Where `req` goes on side `via`, with the inference key on llamactl's sides.
    pub fn target(&self, via: Via, req: &Req) -> Target {
        let proxied = || format!("/api/v1/instances/{INSTANCE}/proxy{}", req.path);
        let (addr, path) = match via {
            Via::Direct => (self.backend, req.path.clone()),
            Via::Nginx => (self.nginx.addr, req.path.clone()),
            Via::GoProxy => (self.goproxy().addr, req.path.clone()),
            Via::Bare => (self.bare.addr, req.path.clone()),
            Via::Proxy => (self.llamactl.addr, proxied()),
            Via::Baseline => (self.baseline().addr, proxied()),
            Via::BaselineV1 => (self.baseline().addr, req.path.clone()),
            Via::Llamactl => (self.llamactl.addr, req.path.clone()),
            Via::Unmetered => (self.unmetered().addr, proxied()),
            Via::UnmeteredV1 => (self.unmetered().addr, req.path.clone()),
        };
        side_target(via, addr, path, req.clone())
    }
}

/// `req` sent to `path` at `addr` by a side reaching it `via`: llamactl's sides present the
/// inference key, the others none.
pub fn side_target(via: Via, addr: SocketAddr, path: String, req: Req) -> Target {
    Target {
        addr,
        path,
        key: via
            .is_llamactl()
            .then(|| llamactl::INFERENCE_KEY.to_string()),
        req,
    }
}
