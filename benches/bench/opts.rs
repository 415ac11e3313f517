//! What `make bench` passes in, through the environment (so make variables reach it unchanged).

use std::path::PathBuf;
use std::time::Duration;

/// The bench's settings.
#[derive(Clone, Debug)]
pub struct Opts {
    /// The llama-server executable (`LLAMACTL_BENCH_LLAMA_SERVER`).
    pub llama_server: String,
    /// The GGUF model (`LLAMACTL_BENCH_MODEL`).
    pub model: PathBuf,
    /// The nginx executable (`LLAMACTL_BENCH_NGINX`, default `nginx`).
    pub nginx: String,
    /// The Go reference proxy (`LLAMACTL_BENCH_GOPROXY`, built by `make goproxy`); None when unset
    /// or not built, and its side is left out.
    pub goproxy: Option<PathBuf>,
    /// Rounds per comparison; sides take turns in each (`BENCH_ROUNDS`, default 5).
    pub rounds: usize,
    /// Measured seconds per side and round (`BENCH_SECS`, default 3).
    pub window: Duration,
    /// Unmeasured seconds before each window (`BENCH_WARMUP`, default 0.5).
    pub warmup: Duration,
    /// Only scenarios whose name contains one of these comma-separated parts (`BENCH_ONLY`), for
    /// quick runs while developing.
    pub only: Option<String>,
    /// The Markdown file the results go into (`BENCH_OUT`, default `docs/benchmarks.md`).
    pub out: PathBuf,
    /// Another llamactl binary to compare with in the same run (`BENCH_BASELINE`), e.g. a copy of
    /// `target/release/llamactl` from before a change: it gets its own instance, and its proxy
    /// becomes one more side wherever the proxy is measured.
    pub baseline: Option<PathBuf>,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn secs(name: &str, default: f64) -> Duration {
    let value = var(name).map_or(default, |v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name}={v}: not a number of seconds"))
    });
    Duration::from_secs_f64(value)
}

impl Opts {
    /// Reads the environment; panics with the variable's name when something required is missing.
    pub fn from_env() -> Opts {
        let required = |name: &str| {
            var(name)
                .unwrap_or_else(|| panic!("{name} is not set (run the bench with `make bench`)"))
        };
        let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        Opts {
            llama_server: required("LLAMACTL_BENCH_LLAMA_SERVER"),
            model: PathBuf::from(required("LLAMACTL_BENCH_MODEL")),
            nginx: var("LLAMACTL_BENCH_NGINX").unwrap_or_else(|| "nginx".into()),
            goproxy: var("LLAMACTL_BENCH_GOPROXY")
                .map(PathBuf::from)
                .filter(|p| p.is_file()),
            rounds: var("BENCH_ROUNDS").map_or(5, |v| {
                v.parse()
                    .unwrap_or_else(|_| panic!("BENCH_ROUNDS={v}: not a count"))
            }),
            window: secs("BENCH_SECS", 3.0),
            warmup: secs("BENCH_WARMUP", 0.5),
            only: var("BENCH_ONLY"),
            out: var("BENCH_OUT")
                .map_or_else(|| manifest.join("docs/benchmarks.md"), PathBuf::from),
            baseline: var("BENCH_BASELINE").map(PathBuf::from),
        }
    }

    /// True if the scenario named `name` should run.
    pub fn wants(&self, name: &str) -> bool {
        self.only
            .as_deref()
            .is_none_or(|only| only.split(',').any(|part| name.contains(part.trim())))
    }
}
