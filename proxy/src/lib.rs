//! modfleet-proxy: a Go module proxy (the GOPROXY protocol) with a verified, crash-safe disk
//! cache over several upstream proxies.
//!
//! Request path: [`server`] parses the URL with [`protocol`], [`fetch`] answers from the
//! [`cache`] or, on a miss, through one [`coalesce`]d fetch from the shared [`store`] (when one
//! is configured) and then the [`upstream`] pool, verifying what it stores. [`config`] merges flags, environment and the YAML file; [`app`] wires it up.

pub mod access;
pub mod app;
pub mod cache;
pub mod coalesce;
pub mod codehost;
pub mod coderepo;
pub mod config;
pub mod credentials;
pub mod fetch;
pub mod file_body;
pub mod hash_token_cmd;
pub mod listener;
pub mod liveness;
pub mod malloc;
pub mod metrics;
pub mod peers;
pub mod private_modules;
pub mod protocol;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod upstream;
pub mod verify_cmd;
