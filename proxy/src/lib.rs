//! modfleet-proxy: a Go module proxy.
