//! What the figures were measured on: CPU, cores, memory, kernel, versions, date.

use crate::opts::Opts;
use crate::rig::cores;
use std::process::Command;

fn first_line_of(program: &str, args: &[&str], prefix: &str) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .and_then(|out| {
            // nginx prints its version on stderr, llama-server on either.
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            text.lines()
                .find(|l| l.contains(prefix))
                .map(|l| l.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn memory_gib() -> f64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0 / 1024.0)
}

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// The Go proxy's line: its Go version, or that it was left out.
fn go_proxy(opts: &Opts) -> String {
    match opts.goproxy.as_deref().map(crate::goproxy::version) {
        Some(Some(go)) => format!("the Go proxy (`httputil.ReverseProxy`) built with {go}"),
        Some(None) => "the Go proxy (version unknown)".into(),
        None => "no Go proxy (Go not available)".into(),
    }
}

/// A few Markdown lines describing this run's machine, software and settings.
pub fn describe(opts: &Opts) -> String {
    let commit = first_line_of("git", &["rev-parse", "--short", "HEAD"], "");
    format!(
        "Measured {date} on {cpu}, {cores} cores, {mem:.0} GiB, Linux {kernel}.\n\
         llama-server `{llama}`, model `{model}` (ctx 512, 1 thread); {nginx} with {cores} worker \
         processes (llamactl also serves HTTP on {cores} threads); {go}; llamactl `{commit}`, \
         release build.\n\
         {rounds} rounds; in each, every side runs {window:.1} s after {warmup:.1} s of warm-up, in \
         rotating order. Figures are medians across rounds; ratios and differences are medians of \
         the per-round ones.\n",
        date = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        cpu = cpu_model(),
        cores = cores(),
        mem = memory_gib(),
        kernel = kernel(),
        llama = first_line_of(&opts.llama_server, &["--version"], "version"),
        model = opts
            .model
            .file_name()
            .map_or_else(String::new, |f| f.to_string_lossy().into_owned()),
        nginx = first_line_of(&opts.nginx, &["-v"], "nginx version")
            .trim_start_matches("nginx version: "),
        go = go_proxy(opts),
        rounds = opts.rounds,
        window = opts.window.as_secs_f64(),
        warmup = opts.warmup.as_secs_f64(),
    )
}
