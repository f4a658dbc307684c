//! modfleet-operator: reconciles `GoModuleProxy` objects into fleets of modfleet proxies.
//!
//! Layout: [`crd`] (the API), [`resources`] (pure builders of every child object),
//! [`children`] (the one list of child kinds; applies what is wanted, removes orphans),
//! [`apply`] (server-side apply, API call spans), [`error`] (what a reconcile fails with),
//! [`status`] (pure status computation, the [`conditions`] as types), [`controller`] (the
//! reconcile loop; [`rollout`] updates members one at a time), [`leader`] (Lease-based
//! leader election), [`metrics`] (served by [`admin`]), [`telemetry`], [`config`] (flags)
//! and [`run`] (wiring them together). [`fleet_health`] asks the members about their
//! upstreams (at pod IPs in the allowed [`cidr`] networks) and summarises what they say for
//! the status, with the fleet's [`operator_token`] when `spec.access` is set; [`peer_token`]
//! keeps the token the members send each other with peer fill; [`store_health`] sums up
//! what they say about the object store, [`peer_health`] whether they read their membership.
//! [`injection`]
//! decides which fleet a new Pod uses and builds the patch that sets `GOPROXY` in it.

pub mod admin;
pub mod apply;
pub mod children;
pub mod cidr;
pub mod conditions;
pub mod config;
pub mod controller;
pub mod crd;
pub mod crdgen;
pub mod error;
pub mod fleet_health;
pub mod generated_secret;
pub mod injection;
pub mod leader;
pub mod metrics;
pub mod operator_token;
pub mod peer_health;
pub mod peer_token;
pub mod resources;
pub mod rollout;
pub mod run;
pub mod status;
pub mod store_health;
pub mod telemetry;
pub mod webhook;

pub use error::Error;
