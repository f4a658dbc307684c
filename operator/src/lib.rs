//! modfleet-operator: reconciles `GoModuleProxy` objects into fleets of modfleet proxies.
//!
//! Layout: [`crd`] (the API), [`resources`] (pure builders of every child object),
//! [`apply`] (server-side apply + orphan deletion), [`status`] (pure condition computation),
//! [`controller`] (reconcile loop), [`leader`] (Lease-based leader election), [`metrics`],
//! [`telemetry`] and [`config`] (flags).

pub mod crd;
pub mod crdgen;
pub mod resources;
