//! The `llamactl` binary: reads the configuration, installs logging, runs the server.

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "llamactl",
    version,
    about = "Runs many local llama-server instances behind one API"
)]
struct Cli {
    /// Configuration file (else LLAMACTL_CONFIG_PATH, else the usual places).
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let loaded = match llamactl::config::load(cli.config.as_deref()) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("llamactl: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("llamactl: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match &loaded.file {
            Some(file) => tracing::info!(file = %file.display(), "configuration loaded"),
            None => tracing::info!("no configuration file found; using defaults"),
        }
        let app = llamactl::Application::build(loaded.config).await?;
        tracing::info!("llamactl listening on http://{}", app.local_addr()?);
        app.run_until(llamactl::app::shutdown_signal()).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("llamactl: {e}");
            ExitCode::FAILURE
        }
    }
}
