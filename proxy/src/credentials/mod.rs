//! Secrets the proxy holds, read from files (mounted Kubernetes Secrets) and read again when
//! they change, so a rotated Secret needs no restart: the credentials sent to upstreams
//! ([`upstream`], with the go command's netrc rules in [`netrc`]). [`file`] is what any such
//! file gets: a bounded read and change detection; client identities for access control
//! belong beside `upstream` and read their files the same way.
//!
//! No secret byte leaves these types but into the `Authorization` header they build: their
//! `Debug` shows files and kinds only, errors name the file and the setting, never content.

pub mod file;
pub mod netrc;
pub mod upstream;

pub use upstream::{CredentialSource, CredentialsError, UpstreamCredentials, Username};
