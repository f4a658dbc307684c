//! `modfleet-operator`: see `modfleet_operator::run`.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = modfleet_operator::config::Config::parse();
    // One TLS crypto provider for the process, whatever else was compiled in (see Cargo.toml).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let telemetry = match modfleet_operator::telemetry::init(config.log_format) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("modfleet-operator: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let result = modfleet_operator::run::run(config).await;
    if let Err(e) = &result {
        tracing::error!(error = format!("{e:#}"), "modfleet-operator stopped");
    }
    telemetry.shutdown().await;
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(_) => std::process::ExitCode::FAILURE,
    }
}
