//! The `llamactl` binary: reads the configuration, installs logging, then serves or runs a command.

use clap::Parser;
use llamactl::cli::{Cli, Command};
use llamactl::config::LogFormat;
use std::process::ExitCode;

fn main() -> ExitCode {
    // Before anything is created: the database, logs and keys, and what backends write.
    llamactl::private_umask();
    // Before any thread: argon2's large blocks go back to the system instead of piling up.
    llamactl::memory::return_large_allocations();
    let cli = Cli::parse();
    let loaded = match llamactl::config::load(cli.config.as_deref()) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("llamactl: {e}");
            return ExitCode::from(2);
        }
    };
    install_logging(loaded.config.log.format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("llamactl: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Some(Command::Keys(cmd)) => {
                llamactl::cli::keys::run(cmd, &loaded.config, &mut std::io::stdout()).await
            }
            Some(Command::Backup { path }) => {
                llamactl::cli::backup::run(&path, &loaded.config, &mut std::io::stdout()).await
            }
            None => {
                match &loaded.file {
                    Some(file) => tracing::info!(file = %file.display(), "configuration loaded"),
                    None => tracing::info!("no configuration file found; using defaults"),
                }
                let app = llamactl::Application::build(loaded.config).await?;
                // Caught from here on: a stop sent right after the address is announced (a
                // supervisor or a test that is quick) is not lost.
                let stop = llamactl::app::shutdown_signal()?;
                tracing::info!("llamactl listening on http://{}", app.local_addr()?);
                app.run_until(stop).await
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("llamactl: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr in the configured format; `RUST_LOG` chooses what (default: `info`).
fn install_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        // One object per line, the event's fields flattened beside `message`, so a log pipeline
        // can filter on `status` or `instance` without parsing text.
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
    }
}
