//! The `throughcare` binary: telemetry, then the command line.

use clap::Parser;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

fn main() -> std::process::ExitCode {
    let cli = throughcare::cli::Cli::parse();
    // The demo prints its own story; keep the server's log to warnings there.
    let default_level = match cli.command {
        throughcare::cli::Command::Demo { .. } => "warn",
        _ => "info",
    };
    // actix-http logs the requests it refuses itself (431, malformed framing) at ERROR: anyone
    // could flood the error log. They are left out of the log and counted in a metric instead.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(default_level))
        .add_directive(
            "actix_http::h1::dispatcher=off"
                .parse()
                .unwrap_or_else(|_| tracing::Level::INFO.into()),
        );
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(filter),
        )
        .with(throughcare::metrics::HttpRefusals)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: could not start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(throughcare::cli::run(cli)) {
        Ok(0) => std::process::ExitCode::SUCCESS,
        Ok(code) => std::process::ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
