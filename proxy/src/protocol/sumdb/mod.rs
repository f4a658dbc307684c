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

/// The verifier keys the go command knows by name (`knownGOSUMDB` in
/// `cmd/go/internal/modfetch/key.go`): `GOSUMDB=sum.golang.org` means this key.
pub const KNOWN_KEYS: &[(&str, &str)] = &[(
    "sum.golang.org",
    "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8",
)];

/// The verifier key the go command uses for a database named `name`, if it knows one.
pub fn known_key(name: &str) -> Option<&'static str> {
    KNOWN_KEYS.iter().find(|(n, _)| *n == name).map(|(_, k)| *k)
}
