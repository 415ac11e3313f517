//! What `make soak` passes in, through the environment (so make variables reach it unchanged).

use std::path::PathBuf;
use std::time::Duration;

/// The soak's settings.
#[derive(Clone, Debug)]
pub struct Opts {
    /// Seconds of measured load (`SOAK_SECS`, default 300).
    pub duration: Duration,
    /// Seconds of load before the first figures are read (`SOAK_WARMUP`, default 180): caches,
    /// pools and allocator arenas fill up then, and are not a leak. Under this load llamactl's
    /// RSS climbs for about three minutes (16 → 20 MiB) and then levels off near 21 MiB (a
    /// 7-minute run, sampled every 5 s), so a shorter warm-up measures the filling, not a leak.
    pub warmup: Duration,
    /// Concurrent chat clients (`SOAK_CLIENTS`, default 8).
    pub clients: usize,
    /// Seconds between two backend crashes (`SOAK_CRASH_EVERY`, default 20).
    pub crash_every: Duration,
    /// The Markdown file the results go into (`SOAK_OUT`, default `docs/soak.md`).
    pub out: PathBuf,
    /// The interpreter that runs the stand-in backend (`SOAK_PYTHON`, default `python3`).
    pub python: String,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn number(name: &str, default: f64) -> f64 {
    var(name).map_or(default, |v| {
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v}: not a number"))
    })
}

impl Opts {
    /// Reads the environment; panics with the variable's name when a value does not parse.
    pub fn from_env() -> Opts {
        let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        Opts {
            duration: Duration::from_secs_f64(number("SOAK_SECS", 300.0)),
            warmup: Duration::from_secs_f64(number("SOAK_WARMUP", 180.0)),
            clients: number("SOAK_CLIENTS", 8.0).max(1.0) as usize,
            crash_every: Duration::from_secs_f64(number("SOAK_CRASH_EVERY", 20.0).max(1.0)),
            out: var("SOAK_OUT").map_or_else(|| manifest.join("docs/soak.md"), PathBuf::from),
            python: var("SOAK_PYTHON").unwrap_or_else(|| "python3".into()),
        }
    }

    /// The stand-in backend's script.
    pub fn fixture() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fake_llama_server.py")
    }
}
