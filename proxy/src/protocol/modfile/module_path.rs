//! The module path as the go command reads it from a go.mod it fetched from a repository
//! (`modfile.ModulePath`: tolerant of everything else in the file; how `codeRepo.findDir`
//! decides whether a go.mod is the module's), and the go.mod it makes up for a module
//! without one (`LegacyGoMod`).

use crate::protocol::unicode::is_print;

/// `modfile.ModulePath`: the path of the first line that is `module PATH` (after dropping a
/// `//` comment and surrounding space), unquoted if quoted; `""` when there is none or the
/// quoted form is malformed.
pub fn module_path_lax(go_mod: &[u8]) -> String {
    for line in go_mod.split(|&b| b == b'\n') {
        let line = match line.windows(2).position(|w| w == b"//") {
            Some(i) => &line[..i],
            None => line,
        };
        let line = trim_space(line);
        let Some(rest) = line.strip_prefix(b"module") else {
            continue;
        };
        let trimmed = trim_space(rest);
        if trimmed.len() == rest.len() || trimmed.is_empty() {
            continue; // `modulex ...`, or `module` alone.
        }
        let path = match trimmed[0] {
            b'"' => super::lax::unquote(trimmed),
            b'`' => unquote_raw(trimmed),
            _ => Some(trimmed.to_vec()),
        };
        return path
            .map(|p| String::from_utf8_lossy(&p).into_owned())
            .unwrap_or_default();
    }
    String::new()
}

/// `strconv.Unquote` of a whole `` `...` `` literal: no backquote inside, `\r` dropped.
fn unquote_raw(s: &[u8]) -> Option<Vec<u8>> {
    let body = s.strip_prefix(b"`")?.strip_suffix(b"`")?;
    if body.contains(&b'`') {
        return None;
    }
    Some(body.iter().copied().filter(|&b| b != b'\r').collect())
}

/// `LegacyGoMod`: `module PATH\n`, the path quoted only where go.mod syntax needs it
/// (`modfile.AutoQuote`).
pub fn legacy_go_mod(module: &str) -> Vec<u8> {
    format!("module {}\n", auto_quote(module)).into_bytes()
}

/// `modfile.AutoQuote`: `MustQuote`'s cases quoted as `strconv.Quote` would (module paths
/// that reach here are ASCII: `module.CheckPath`).
fn auto_quote(s: &str) -> String {
    let must = s.is_empty()
        || s.contains("//")
        || s.contains("/*")
        || s.chars().any(|c| match c {
            ' ' | '"' | '\'' | '`' => true,
            '(' | ')' | '[' | ']' | '{' | '}' | ',' => s.len() > 1,
            c => !is_print(c),
        });
    if !must {
        return s.to_string();
    }
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if is_print(c) => out.push(c),
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

/// `bytes.TrimSpace`: Unicode white space off both ends.
fn trim_space(mut b: &[u8]) -> &[u8] {
    while let Some((c, n)) = edge_char(b, true)
        && c.is_whitespace()
    {
        b = &b[n..];
    }
    while let Some((c, n)) = edge_char(b, false)
        && c.is_whitespace()
    {
        b = &b[..b.len() - n];
    }
    b
}

/// The first (or last) character of `b` and its length, if it is valid UTF-8 there.
fn edge_char(b: &[u8], first: bool) -> Option<(char, usize)> {
    (1..=b.len().min(4)).find_map(|k| {
        let part = if first { &b[..k] } else { &b[b.len() - k..] };
        std::str::from_utf8(part)
            .ok()
            .and_then(|s| s.chars().next())
            .map(|c| (c, k))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_path_as_modfile_module_path_reads_it() {
        for (text, want) in [
            ("module example.com/m\n", "example.com/m"),
            ("  module   example.com/m  // c\n", "example.com/m"),
            ("go 1.21\nmodule \"example.com/q\"\n", "example.com/q"),
            ("module `example.com/r`\n", "example.com/r"),
            ("module \"example.com/\\x41\"\n", "example.com/A"),
            ("module \"bad\n", ""),
            ("modulex example.com/m\nmodule y.com/z\n", "y.com/z"),
            ("module\nmodule \n", ""),
            ("// module c.com/x\n", ""),
            ("module (\n\texample.com/m\n)\n", "("),
            ("", ""),
            ("<html>", ""),
            ("module a b\n", "a b"),
            ("\u{a0}module\u{a0}x.com/y\u{a0}\n", "x.com/y"),
        ] {
            assert_eq!(module_path_lax(text.as_bytes()), want, "{text:?}");
        }
        assert_eq!(module_path_lax(b"module x.com/\xff\n"), "x.com/\u{fffd}");
    }

    #[test]
    fn legacy_go_mod_is_one_module_line() {
        assert_eq!(legacy_go_mod("example.com/m"), b"module example.com/m\n");
        assert_eq!(legacy_go_mod("a b"), b"module \"a b\"\n");
        assert_eq!(legacy_go_mod("a//b"), b"module \"a//b\"\n");
    }
}
