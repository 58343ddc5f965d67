//! The `chronicle-replay` binary: parses the command line and hands it to
//! [`chronicle_replay::run`], which holds all the logic (see the library's docs for the
//! commands and exit codes).

use clap::Parser;
use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    // Usage errors exit with code 2 (clap's convention), `--help` and `--version` with 0.
    let cli = chronicle_replay::Cli::parse();

    // Diagnostics (RUST_LOG, default warnings only) go to stderr, never into the report.
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .try_init();

    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            let _ = writeln!(
                std::io::stderr(),
                "chronicle-replay: error: cannot start the async runtime: {error}"
            );
            return ExitCode::from(2);
        }
    };
    runtime.block_on(chronicle_replay::run(cli))
}
