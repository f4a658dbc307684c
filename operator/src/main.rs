//! `modfleet-operator`: see `modfleet_operator::run`.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = modfleet_operator::config::Config::parse();
    modfleet_operator::telemetry::init(config.log_format);
    match modfleet_operator::run::run(config).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "modfleet-operator stopped");
            std::process::ExitCode::FAILURE
        }
    }
}
