//! The properties the fuzz targets check, as plain functions: `cargo +nightly fuzz run` drives
//! them with libFuzzer, and `cargo test` runs them over the seed corpus in `seeds/`, so the
//! targets build and hold in CI on a stable toolchain.

use modfleet_proxy::protocol::Request;

/// `Request::parse` never panics; refusals are 400 or 404 with a one-line reason; every
/// accepted request renders to a safe, relative, escaped path that parses back to the same
/// request.
pub fn parse_request(data: &[u8]) {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    for raw in [path.to_owned(), format!("/{path}")] {
        match Request::parse(&raw) {
            Ok(req) => check_round_trip(&req),
            Err(e) => {
                assert!(
                    matches!(e.status.as_u16(), 400 | 404),
                    "unexpected status {} for {raw:?}",
                    e.status
                );
                assert!(
                    !e.message.contains(['\n', '\r']),
                    "multi-line message for {raw:?}"
                );
            }
        }
    }
}

fn check_round_trip(req: &Request) {
    let p = req.escaped_path();
    assert!(!p.is_empty() && !p.starts_with('/'), "not relative: {p:?}");
    assert!(
        !p.contains('\\') && !p.contains('\0') && !p.contains('%'),
        "unsafe: {p:?}"
    );
    assert!(
        p.split('/').all(|e| !e.is_empty() && e != "." && e != ".."),
        "bad element in {p:?}"
    );
    let again = Request::parse(&format!("/{p}"))
        .unwrap_or_else(|e| panic!("escaped path {p:?} does not re-parse: {e}"));
    assert_eq!(&again, req, "round trip changed the request for {p:?}");
    assert_eq!(again.escaped_path(), p);
}
