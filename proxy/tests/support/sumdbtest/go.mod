// The reference checksum database for tests/sumdb_reference.rs, built by that test.
module modfleet.test/sumdbtest

go 1.22.0

require golang.org/x/mod v0.22.0
