// The go toolchain's own module zip checker, for proxy/tests/zip_reference.rs, and the
// generator of the Unicode tables modfleet's zip check embeds (unicodetables/).
module modfleet.dev/proxy/tests/checkzip

go 1.26.0

require golang.org/x/mod v0.43.0
