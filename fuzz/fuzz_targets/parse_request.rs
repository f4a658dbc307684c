//! Fuzzes `Request::parse` (the properties are in `src/lib.rs`).
//!
//! Run with `cargo +nightly fuzz run parse_request` from the repository root; `cargo test` in
//! this directory runs the same check over the seed corpus.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| modfleet_proxy_fuzz::parse_request(data));
