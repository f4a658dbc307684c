//! Verification against a Go checksum database (sum.golang.org or one like it), the way the go
//! command verifies: signed tree notes ([`note`]), the transparency log and its tiles
//! ([`tlog`]), `h1:` hashes of zips and go.mod files ([`dirhash`]), and the [`Checker`] that
//! puts them together over the proxy's own `/sumdb/` proxying ([`SumdbSource`]).
//!
//! Module names follow golang.org/x/mod/sumdb's packages; their tests port that module's
//! vectors, and `tests/sumdb_reference.rs` checks the whole against the reference server
//! (`sumdb.NewTestServer`) and the real database.

pub mod client;
pub mod dirhash;
pub mod note;
pub mod path;
pub mod tlog;

pub use client::{
    Artifact, Checker, CheckerError, Limits, SourceError, SumdbError, SumdbSource, VerifiedRecord,
};

/// The verifier keys the go command knows by name, shared with the operator.
pub use modfleet_contract::defaults::known_sumdb_key as known_key;
