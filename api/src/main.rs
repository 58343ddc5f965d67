//! The `chronicle` binary: a thin shell over [`chronicle_api::cli`].

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    chronicle_api::cli::main(chronicle_api::cli::Cli::parse()).await
}
