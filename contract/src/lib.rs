//! What modfleet-proxy and modfleet-operator say to each other, defined once for both:
//!
//! - the proxy's config file ([`config`], with its value syntaxes in [`values`] and its
//!   defaults in [`defaults`]): the operator writes it into each fleet's ConfigMap, the proxy
//!   reads it with `--config`;
//! - who may use a member ([`access`]): the `tls` and `access` config keys and the tokens
//!   files that the proxy reads, its `hash-token` writes and the operator renders;
//! - the `/status` document ([`status`]): the proxy serves it on its admin port, the operator
//!   reads every member's into the fleet's `status.upstreams` and `UpstreamsHealthy`.
//!
//! A change here changes both sides at once; `operator/tests/proxy_accepts_config.rs` (the
//! proxy loads what the operator renders) and `operator/tests/reads_proxy_status.rs` (the
//! operator reads what a real proxy serves) check that each side reads what the other writes.

pub mod access;
pub mod config;
pub mod defaults;
pub mod status;
pub mod values;
