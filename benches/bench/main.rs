//! `make bench`: what llamactl costs in front of llama-server, next to nginx in front of the same
//! llama-server, measured in one run by one client. Prints one table and writes it into
//! `docs/benchmarks.md`. Scenarios are listed in `scenarios.rs`.
//!
//! Never a timed assertion: it measures and reports; the targets' verdicts are informational.

mod auth;
mod bare_proxy;
mod client;
mod cold_start;
mod generated;
mod goproxy;
mod llamactl;
mod load;
mod machine;
mod memory;
mod metering;
mod nginx;
mod open_files;
mod opts;
mod procs;
mod quota;
mod report;
mod rig;
mod scenario;
mod scenarios;
mod stand_in;
mod stats;
mod streams;
mod swap;
mod swap_storm;

use opts::Opts;
use report::Report;
use rig::Rig;
use std::process::ExitCode;

async fn run(opts: Opts) -> Report {
    let header = machine::describe(&opts);
    eprintln!("bench: starting llamactl, the instance, nginx and the Go proxy");
    let rig = Rig::up(opts).await;
    let mut report = Report::default();
    for scenario in scenarios::all() {
        if !rig.opts.wants(scenario.name()) {
            continue;
        }
        eprintln!("bench: == {}", scenario.name());
        scenario.run(&rig, &mut report).await;
    }
    let template = format!(
        "# Benchmarks\n\nRerun with `make bench`.\n\n{}\n",
        report::markers()
    );
    let out = rig.opts.out.clone();
    drop(rig);
    report
        .write(&out, &header, &template)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", out.display()));
    println!("\n{header}\n{}", report.markdown());
    eprintln!("bench: written to {}", out.display());
    report
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    // llamactl starts this same executable as the streams scenario's backend.
    if args.get(1).map(String::as_str) == Some(stand_in::ARG) {
        return stand_in::run(&args[2..]);
    }
    if args.get(1).map(String::as_str) == Some(bare_proxy::ARG) {
        return bare_proxy::run(&args[2..]);
    }
    // `cargo test --all-targets` runs bench targets without `--bench`: nothing to test here.
    if !args.iter().any(|a| a == "--bench") {
        println!("llamactl bench: not run under `cargo test`; use `make bench`");
        return ExitCode::SUCCESS;
    }
    let opts = Opts::from_env();
    // The streams scenario holds thousands of client sockets; what the bench starts inherits the
    // raised limit (except the llamactl that must show it raises its own).
    if let Err(e) = open_files::raise() {
        eprintln!("bench: cannot raise the open-file limit: {e}");
    }
    // One thread: the client costs one core at most, the same for every side.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        tokio::select! {
            _ = run(opts) => ExitCode::SUCCESS,
            _ = tokio::signal::ctrl_c() => {
                // Dropping the run drops the rig, which stops llamactl, nginx and llama-server.
                eprintln!("bench: interrupted; stopping everything it started");
                ExitCode::from(130)
            }
        }
    })
}
