//! Request paths under `/sumdb/<name>/` (the go command's checksum-database protocol as
//! golang.org/x/mod/sumdb serves it): `supported`, `latest`, `lookup/<module>@<version>` and
//! tiles, with `tlog.ParseTilePath`'s canonical form.

use crate::protocol::request::not_found;
use crate::protocol::{ModulePath, ProtocolError, Request, Version, quote};

/// Highest tile height accepted, as in `golang.org/x/mod/sumdb/tlog`.
const MAX_TILE_HEIGHT: u8 = 30;
/// Most `NNN` parts of a tile index (1000^6 keeps the index within an i64).
const MAX_TILE_INDEX_PARTS: usize = 6;

/// The part of a `/sumdb/<name>/...` request after the database name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SumdbPath {
    /// `supported`
    Supported,
    /// `latest`
    Latest,
    /// lookup/<escaped module>@<escaped version>; keep the escaped form for forwarding
    Lookup {
        module: ModulePath,
        version: Version,
    },
    /// tile/<H>/<L or "data">/<NNN path>[.p/<W>]; `partial` is Some(W) for .p/W
    Tile {
        height: u8,
        level: TileLevel,
        /// The x001/x234/567 parts, most significant first.
        index: Vec<u16>,
        partial: Option<u16>,
    },
}

/// The level of a tile: a hash level or the `data` tiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TileLevel {
    Level(u8),
    Data,
}

impl SumdbPath {
    /// The canonical path below `sumdb/<name>/`, e.g. `latest`,
    /// `lookup/github.com/!azure/x@v1.0.0`, `tile/8/0/x001/234.p/5`.
    pub fn as_upstream_path(&self) -> String {
        match self {
            Self::Supported => "supported".into(),
            Self::Latest => "latest".into(),
            Self::Lookup { module, version } => {
                format!("lookup/{}@{}", module.escaped(), version.escaped())
            }
            Self::Tile {
                height,
                level,
                index,
                partial,
            } => {
                let mut out = format!("tile/{height}/");
                match level {
                    TileLevel::Level(l) => out.push_str(&l.to_string()),
                    TileLevel::Data => out.push_str("data"),
                }
                for (i, part) in index.iter().enumerate() {
                    let x = if i + 1 < index.len() { "x" } else { "" };
                    out.push_str(&format!("/{x}{part:03}"));
                }
                if let Some(w) = partial {
                    out.push_str(&format!(".p/{w}"));
                }
                out
            }
        }
    }

    /// Only full tiles (no `.p/`) are immutable.
    pub fn is_immutable(&self) -> bool {
        matches!(self, Self::Tile { partial: None, .. })
    }
}

/// A checksum database name must look like a lowercase host name.
fn check_sumdb_name(name: &str) -> Result<(), ProtocolError> {
    let ok = name.len() <= 253
        && name.contains('.')
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(ProtocolError::bad_request(format!(
            "invalid checksum database name {}: want a lowercase host name like \"sum.golang.org\"",
            quote(name)
        )))
    }
}

/// `sumdb/<name>/supported|latest|lookup/<mod>@<ver>|tile/...` (without the
/// leading `sumdb`).
pub(crate) fn parse_sumdb(elems: &[&str], raw: &str) -> Result<Request, ProtocolError> {
    let [name, kind, rest @ ..] = elems else {
        return Err(not_found(raw));
    };
    match (*kind, rest.len()) {
        ("supported" | "latest", 0) | ("lookup" | "tile", 1..) => {}
        _ => return Err(not_found(raw)),
    }
    check_sumdb_name(name)?;
    let path = match *kind {
        "supported" => SumdbPath::Supported,
        "latest" => SumdbPath::Latest,
        "lookup" => {
            let target = rest.join("/");
            let Some((module, version)) = target.split_once('@') else {
                return Err(ProtocolError::bad_request(format!(
                    "invalid checksum database lookup {}: want lookup/<module>@<version>",
                    quote(&target)
                )));
            };
            let module = ModulePath::from_escaped(module)?;
            let version = Version::from_escaped(&module, version)?;
            SumdbPath::Lookup { module, version }
        }
        _ => parse_tile(rest).map_err(|why| {
            ProtocolError::bad_request(format!(
                "invalid tile path {}: {why} (want tile/<H>/<L or data>/<NNN path>[.p/<W>] \
                 in canonical form)",
                quote(&format!("tile/{}", rest.join("/")))
            ))
        })?,
    };
    Ok(Request::Sumdb {
        name: (*name).to_owned(),
        path,
    })
}

/// A canonical decimal number (no sign, no leading zero) up to `max`.
fn parse_dec(s: &str, max: u32) -> Option<u32> {
    if s.is_empty() || s.len() > 10 || (s.len() > 1 && s.starts_with('0')) {
        return None;
    }
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u64>()
        .ok()
        .filter(|&n| n <= u64::from(max))
        .map(|n| n as u32)
}

/// Exactly three digits.
fn parse_nnn(s: &str) -> Option<u16> {
    if s.len() == 3 && s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse().ok()
    } else {
        None
    }
}

/// Go's `tlog.ParseTilePath` (elements after `tile`), including its check
/// that the path is the canonical rendering of the tile.
fn parse_tile(elems: &[&str]) -> Result<SumdbPath, String> {
    let [h, l, parts @ ..] = elems else {
        return Err("too few elements".into());
    };
    let height = parse_dec(h, u32::from(MAX_TILE_HEIGHT))
        .filter(|&h| h >= 1)
        .ok_or("height must be 1 to 30")? as u8;
    let level = if *l == "data" {
        TileLevel::Data
    } else {
        TileLevel::Level(parse_dec(l, 255).ok_or("level must be 0 to 255 or \"data\"")? as u8)
    };
    let mut parts: Vec<&str> = parts.to_vec();
    let mut partial = None;
    if parts.len() >= 2 && parts[parts.len() - 2].ends_with(".p") {
        let full = 1u32 << height;
        let w = parts
            .pop()
            .and_then(|w| parse_dec(w, full - 1))
            .filter(|&w| w >= 1)
            .ok_or("partial width must be 1 to 2^H-1")?;
        partial = Some(u16::try_from(w).map_err(|_| "partial width too large")?);
        let last = parts.len() - 1;
        parts[last] = parts[last].strip_suffix(".p").unwrap_or(parts[last]);
    }
    if parts.is_empty() || parts.len() > MAX_TILE_INDEX_PARTS {
        return Err("index must have 1 to 6 parts".into());
    }
    let mut index = Vec::with_capacity(parts.len());
    for (i, part) in parts.iter().enumerate() {
        let digits = if i + 1 < parts.len() {
            part.strip_prefix('x')
                .ok_or("index parts but the last need an 'x' prefix")?
        } else {
            part
        };
        index.push(parse_nnn(digits).ok_or("index parts must be three digits")?);
    }
    if index.len() > 1 && index[0] == 0 {
        return Err("leading x000 index part".into());
    }
    Ok(SumdbPath::Tile {
        height,
        level,
        index,
        partial,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::request::tests::{m, parse_err, parse_ok, v};
    use http::StatusCode;

    #[test]
    fn sumdb_routes() {
        let cases = [
            ("supported", SumdbPath::Supported, false),
            ("latest", SumdbPath::Latest, false),
            (
                "lookup/github.com/!azure/x@v1.0.0",
                SumdbPath::Lookup {
                    module: m("github.com/Azure/x"),
                    version: v("github.com/Azure/x", "v1.0.0"),
                },
                false,
            ),
            (
                "tile/8/0/x001/234.p/5",
                SumdbPath::Tile {
                    height: 8,
                    level: TileLevel::Level(0),
                    index: vec![1, 234],
                    partial: Some(5),
                },
                false,
            ),
            (
                "tile/8/1/000",
                SumdbPath::Tile {
                    height: 8,
                    level: TileLevel::Level(1),
                    index: vec![0],
                    partial: None,
                },
                true,
            ),
            (
                "tile/8/data/x002/x000/999",
                SumdbPath::Tile {
                    height: 8,
                    level: TileLevel::Data,
                    index: vec![2, 0, 999],
                    partial: None,
                },
                true,
            ),
            (
                "tile/8/data/000.p/255",
                SumdbPath::Tile {
                    height: 8,
                    level: TileLevel::Data,
                    index: vec![0],
                    partial: Some(255),
                },
                false,
            ),
            (
                "tile/1/0/001.p/1",
                SumdbPath::Tile {
                    height: 1,
                    level: TileLevel::Level(0),
                    index: vec![1],
                    partial: Some(1),
                },
                false,
            ),
        ];
        for (rest, want, immutable) in cases {
            let raw = format!("/sumdb/sum.golang.org/{rest}");
            let r = parse_ok(&raw);
            assert_eq!(
                r,
                Request::Sumdb {
                    name: "sum.golang.org".into(),
                    path: want.clone(),
                }
            );
            assert_eq!(want.as_upstream_path(), rest);
            assert_eq!(want.is_immutable(), immutable);
            assert_eq!(r.is_immutable(), immutable);
            assert_eq!(r.escaped_path(), format!("sumdb/sum.golang.org/{rest}"));
        }

        // 400: bad names, bad tiles, bad lookups.
        for bad in [
            "/sumdb/Sum.golang.org/latest",
            "/sumdb/localhost/latest",
            "/sumdb/-sum.golang.org/latest",
            "/sumdb/sum-.golang.org/latest",
            "/sumdb/sum..golang.org/latest",
            "/sumdb/sum.golang.org./latest",
            "/sumdb/sum_db.org/latest",
            "/sumdb/sum.golang.org/tile/8/0",
            "/sumdb/sum.golang.org/tile/8/0/1",
            "/sumdb/sum.golang.org/tile/8/0/0001",
            "/sumdb/sum.golang.org/tile/8/0/x001",
            "/sumdb/sum.golang.org/tile/8/0/001/002",
            "/sumdb/sum.golang.org/tile/8/0/x000/002",
            "/sumdb/sum.golang.org/tile/0/0/001",
            "/sumdb/sum.golang.org/tile/31/0/001",
            "/sumdb/sum.golang.org/tile/08/0/001",
            "/sumdb/sum.golang.org/tile/8/00/001",
            "/sumdb/sum.golang.org/tile/8/-1/001",
            "/sumdb/sum.golang.org/tile/8/256/001",
            "/sumdb/sum.golang.org/tile/8/0/001.p/0",
            "/sumdb/sum.golang.org/tile/8/0/001.p/256",
            "/sumdb/sum.golang.org/tile/8/0/001.p/05",
            "/sumdb/sum.golang.org/tile/8/0/001.p",
            "/sumdb/sum.golang.org/tile/8/0/x001/x002/x003/x004/x005/x006/007",
            "/sumdb/sum.golang.org/tile/20/0/001.p/70000",
            "/sumdb/sum.golang.org/tile/+8/0/001",
            "/sumdb/sum.golang.org/lookup/github.com/x/y",
            "/sumdb/sum.golang.org/lookup/github.com/X/y@v1.0.0",
            "/sumdb/sum.golang.org/lookup/github.com/x/y@v1.0",
            "/sumdb/sum.golang.org/lookup/github.com/x/y@v2.0.0",
            "/sumdb/sum.golang.org/lookup/github.com/x/y@v1.0.0/go.mod",
            "/sumdb/sum.golang.org/lookup/github.com/x/y@v1.0.0@v1.0.0",
        ] {
            assert_eq!(parse_err(bad).status, StatusCode::BAD_REQUEST, "{bad}");
        }
        // 404: no such sumdb route.
        for bad in [
            "/sumdb",
            "/sumdb/sum.golang.org",
            "/sumdb/sum.golang.org/foo",
            "/sumdb/sum.golang.org/supported/x",
            "/sumdb/sum.golang.org/latest/x",
            "/sumdb/sum.golang.org/lookup",
            "/sumdb/sum.golang.org/tile",
            "/sumdb/sum.golang.org/latest/",
        ] {
            assert_eq!(parse_err(bad).status, StatusCode::NOT_FOUND, "{bad}");
        }
    }
}
