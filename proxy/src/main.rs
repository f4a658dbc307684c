use std::process::ExitCode;

use clap::Parser;
use modfleet_proxy::config::{Cli, Config, Environment, Subcommands};
use modfleet_proxy::{app, hash_token_cmd, malloc, telemetry, verify_cmd};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // One TLS crypto provider for the process, whatever else was compiled in (see Cargo.toml).
    let _ = rustls::crypto::ring::default_provider().install_default();
    match cli.command {
        Some(Subcommands::Verify(args)) => verify_cmd::run(&args),
        Some(Subcommands::HashToken(args)) => hash_token_cmd::run(&args),
        None => {
            let config = match Config::load(&cli.serve, Environment::detect) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("modfleet-proxy: {e}");
                    return ExitCode::from(2);
                }
            };
            // Before the runtime's threads start (see the module).
            malloc::tune();
            let runtime = tokio::runtime::Runtime::new().expect("cannot start the tokio runtime");
            let telemetry = match runtime.block_on(async { telemetry::init(config.log_format) }) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("modfleet-proxy: {e}");
                    return ExitCode::from(2);
                }
            };
            let served = runtime.block_on(app::serve(config, telemetry.stats()));
            runtime.block_on(telemetry.shutdown());
            match served {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("modfleet-proxy: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
