// The go toolchain's own code as the proxy tests' reference: the module zip checker (for
// tests/zip_reference.rs), the generator of the Unicode tables modfleet's zip check embeds
// (unicodetables/), x/mod's pseudo-versions and semver (pseudoref/, for
// tests/pseudo_reference.rs), and module zips created from Git repositories (createzip/, for
// tests/zip_create_reference.rs).
module modfleet.dev/proxy/tests/checkzip

go 1.26.0

require golang.org/x/mod v0.43.0
