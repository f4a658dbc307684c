//! What the go command reads from a go.mod it fetched from a repository, tolerantly:
//! `modfile.ModulePath` (the module path, "" when there is none: how `codeRepo.findDir`
//! decides whether a go.mod is the module's), the `retract` directives as `modfile.ParseLax`
//! keeps them (how `codeRepo` and `@latest` skip retracted versions), and `LegacyGoMod`, the
//! go.mod the go command makes up for a module without one.
//!
//! These read bytes from a Git repository: hostile. Nothing here allocates more than the
//! input's size, and a file that does not parse yields nothing rather than a guess.

use crate::protocol::semver;

/// `modfile.ModulePath`: the path of the first line that is `module PATH` (after dropping a
/// `//` comment and surrounding space), unquoted if quoted; `""` when there is none or the
/// quoted form is malformed. Tolerant of everything else in the file, as go's is.
pub fn module_path(go_mod: &[u8]) -> String {
    for line in go_mod.split(|&b| b == b'\n') {
        let line = match find(line, b"//") {
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
        if trimmed[0] == b'"' || trimmed[0] == b'`' {
            return go_unquote(trimmed)
                .map(|p| String::from_utf8_lossy(&p).into_owned())
                .unwrap_or_default();
        }
        return String::from_utf8_lossy(trimmed).into_owned();
    }
    String::new()
}

/// `LegacyGoMod`: `module PATH\n`, the path quoted only where go.mod syntax needs it.
pub fn legacy_go_mod(module: &str) -> Vec<u8> {
    format!("module {}\n", auto_quote(module)).into_bytes()
}

/// `modfile.AutoQuote`.
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
    // strconv.Quote; module paths that reach here are ASCII (CheckPath).
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

/// A `retract` interval, versions as written (`dontFixRetract`: not canonicalized).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retraction {
    pub low: String,
    pub high: String,
}

impl Retraction {
    /// Whether `v` is in the interval (`semver.Compare`, as the go command checks).
    pub fn contains(&self, v: &str) -> bool {
        semver::compare(&self.low, v).is_le() && semver::compare(v, &self.high).is_le()
    }
}

/// The `retract` directives `modfile.ParseLax` keeps: `retract v1.0.0`, `retract [v1.0.0,
/// v1.1.0]`, alone or in a `retract ( ... )` block. A file `ParseLax` refuses (a lexical error,
/// an unterminated block, a malformed `module`, `go` or `require` line) has none, as the go
/// command then loads none. Malformed intervals are skipped, as in lax mode.
pub fn retractions(go_mod: &[u8]) -> Vec<Retraction> {
    let Some(statements) = parse(go_mod) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut seen_module = false;
    let mut seen_go = false;
    for (verb, args) in statements {
        match verb.as_str() {
            "retract" => {
                if let Some(r) = version_interval(&args) {
                    out.push(r);
                }
            }
            "module" => {
                if seen_module || args.len() != 1 || parse_string(&args[0]).is_none() {
                    return Vec::new();
                }
                seen_module = true;
            }
            "go" => {
                if seen_go || args.len() != 1 || !lax_go_version(&args[0]) {
                    return Vec::new();
                }
                seen_go = true;
            }
            "require" if !require_ok(&args) => return Vec::new(),
            _ => {}
        }
    }
    out
}

/// `parseVersionInterval` with `dontFixRetract`.
fn version_interval(args: &[Token]) -> Option<Retraction> {
    match args {
        [v] if !v.punct => {
            let v = parse_string(v)?;
            Some(Retraction {
                low: v.clone(),
                high: v,
            })
        }
        // Trailing tokens after the interval are ignored in lax mode.
        [open, low, comma, high, close, ..]
            if open.is("[") && comma.is(",") && close.is("]") && !low.punct && !high.punct =>
        {
            Some(Retraction {
                low: parse_string(low)?,
                high: parse_string(high)?,
            })
        }
        [v, ..] if !v.punct && !v.is("[") => {
            let v = parse_string(v)?;
            Some(Retraction {
                low: v.clone(),
                high: v,
            })
        }
        _ => None,
    }
}

/// `require PATH VERSION` as lax mode checks it: a valid version for the path's major suffix.
fn require_ok(args: &[Token]) -> bool {
    let [path, version] = args else {
        return false;
    };
    let (Some(path), Some(version)) = (parse_string(path), parse_string(version)) else {
        return false;
    };
    let Some(v) = crate::protocol::canonical_version(&version) else {
        return false;
    };
    let major = match crate::protocol::module::split_path_version(&path) {
        Some((_, major)) => major,
        None => return false,
    };
    crate::protocol::module::match_path_major(&v, major)
}

/// `GoVersionRE` or `laxGoVersionRE`: `1.21`, `1.21.3`, `1.21rc1`, `v1.21beta`...: a
/// major and minor without leading zeros, then anything not starting with a digit (and not
/// nothing after a `v`).
fn lax_go_version(v: &Token) -> bool {
    let (s, v_prefix) = match v.text.strip_prefix('v') {
        Some(s) => (s, true),
        None => (v.text.as_str(), false),
    };
    let digits = |s: &str| -> Option<usize> {
        let n = s.bytes().take_while(u8::is_ascii_digit).count();
        (n > 0 && !(n > 1 && s.starts_with('0'))).then_some(n)
    };
    let Some(n) = digits(s) else { return false };
    if s.starts_with('0') {
        return false;
    }
    let Some(rest) = s[n..].strip_prefix('.') else {
        return false;
    };
    match digits(rest) {
        Some(m) => !(v_prefix && m == rest.len()),
        None => false,
    }
}

/// A token of go.mod syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Token {
    text: String,
    /// One of `( ) [ ] { } ,`.
    punct: bool,
}

impl Token {
    fn is(&self, p: &str) -> bool {
        self.punct && self.text == p
    }
}

/// `parseString`: a quoted token unquoted, a bare one as is.
fn parse_string(t: &Token) -> Option<String> {
    if t.punct {
        return None;
    }
    if t.text.starts_with('"') || t.text.starts_with('`') {
        return go_unquote(t.text.as_bytes()).map(|b| String::from_utf8_lossy(&b).into_owned());
    }
    Some(t.text.clone())
}

/// The file's statements, `(verb, args)`, block lines with the block's verb; `None` when
/// x/mod's parser would fail.
fn parse(go_mod: &[u8]) -> Option<Vec<(String, Vec<Token>)>> {
    let text = std::str::from_utf8(go_mod).ok()?;
    let lines = lex(text)?;
    let mut out = Vec::new();
    let mut block: Option<String> = None;
    for line in lines {
        let Some((first, rest)) = line.split_first() else {
            continue;
        };
        if let Some(verb) = &block {
            if first.is(")") {
                if !rest.is_empty() {
                    return None; // "expected newline after closing paren"
                }
                block = None;
            } else {
                out.push((verb.clone(), line.clone()));
            }
            continue;
        }
        if line.len() >= 2 && line[line.len() - 1].is("(") {
            // `verb (`: a block; `a b (` with more than one word is an unknown block type,
            // skipped in lax mode.
            let words = &line[..line.len() - 1];
            block = Some(match words {
                [w] if !w.punct => w.text.clone(),
                _ => String::new(),
            });
            continue;
        }
        out.push((first.text.clone(), rest.to_vec()));
    }
    if block.is_some() {
        return None; // unterminated block
    }
    Some(out)
}

/// x/mod's lexer, one vector of tokens per line (comments dropped); `None` on a lexical
/// error.
fn lex(text: &str) -> Option<Vec<Vec<Token>>> {
    let mut lines = Vec::new();
    let mut line = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some(&(i, c)) = chars.peek() {
        let rest = &text[i..];
        match c {
            ' ' | '\t' | '\r' => {
                chars.next();
            }
            '\n' => {
                chars.next();
                lines.push(std::mem::take(&mut line));
            }
            _ if rest.starts_with("//") => {
                while chars.peek().is_some_and(|&(_, c)| c != '\n') {
                    chars.next();
                }
            }
            _ if rest.starts_with("/*") => return None,
            '(' | ')' | '[' | ']' | '{' | '}' | ',' => {
                chars.next();
                line.push(Token {
                    text: c.to_string(),
                    punct: true,
                });
            }
            '"' | '`' => {
                chars.next();
                let mut end = None;
                while let Some((j, d)) = chars.next() {
                    if d == '\n' {
                        return None;
                    }
                    if d == c {
                        end = Some(j + 1);
                        break;
                    }
                    if d == '\\' && c != '`' {
                        chars.next()?;
                    }
                }
                line.push(Token {
                    text: text[i..end?].to_string(),
                    punct: false,
                });
            }
            _ => {
                let mut end = i;
                while let Some(&(j, d)) = chars.peek() {
                    let ident = !matches!(d, ' ' | '(' | ')' | '[' | ']' | '{' | '}' | ',')
                        && !d.is_whitespace()
                        && is_print(d);
                    if !ident || text[j..].starts_with("//") {
                        break;
                    }
                    if text[j..].starts_with("/*") {
                        return None;
                    }
                    end = j + d.len_utf8();
                    chars.next();
                }
                if end == i {
                    return None; // "unexpected input character"
                }
                line.push(Token {
                    text: text[i..end].to_string(),
                    punct: false,
                });
            }
        }
    }
    lines.push(line);
    Some(lines)
}

/// Go's `unicode.IsPrint`, near enough for go.mod tokens: not a control, format or
/// separator character (space excepted).
fn is_print(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    !(c.is_control()
        || c.is_whitespace()
        || matches!(c, '\u{ad}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}'
            | '\u{2060}'..='\u{206f}' | '\u{feff}' | '\u{fff9}'..='\u{fffb}'))
}

/// `strconv.Unquote` of a whole `"..."` or `` `...` `` string, as bytes.
fn go_unquote(s: &[u8]) -> Option<Vec<u8>> {
    let (&quote, body) = s.split_first()?;
    let body = body.strip_suffix(&[quote])?;
    if quote == b'`' {
        if body.contains(&b'`') {
            return None;
        }
        return Some(body.iter().copied().filter(|&b| b != b'\r').collect());
    }
    if quote != b'"' {
        return None;
    }
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        let b = body[i];
        match b {
            b'"' | b'\n' => return None,
            b'\\' => {
                let e = *body.get(i + 1)?;
                i += 2;
                let simple = match e {
                    b'a' => Some(7),
                    b'b' => Some(8),
                    b'f' => Some(12),
                    b'n' => Some(b'\n'),
                    b'r' => Some(b'\r'),
                    b't' => Some(b'\t'),
                    b'v' => Some(11),
                    b'\\' => Some(b'\\'),
                    b'"' => Some(b'"'),
                    _ => None,
                };
                if let Some(c) = simple {
                    out.push(c);
                    continue;
                }
                let hex = |n: usize, i: usize| -> Option<u32> {
                    let digits = body.get(i..i + n)?;
                    u32::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
                };
                match e {
                    b'x' => {
                        out.push(u8::try_from(hex(2, i)?).ok()?);
                        i += 2;
                    }
                    b'u' | b'U' => {
                        let n = if e == b'u' { 4 } else { 8 };
                        let c = char::from_u32(hex(n, i)?)?;
                        let mut buf = [0u8; 4];
                        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                        i += n;
                    }
                    b'0'..=b'7' => {
                        let digits = body.get(i - 1..i + 2)?;
                        let v = u32::from_str_radix(std::str::from_utf8(digits).ok()?, 8).ok()?;
                        out.push(u8::try_from(v).ok()?);
                        i += 2;
                    }
                    _ => return None,
                }
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    Some(out)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `bytes.TrimSpace` (Unicode white space at both ends).
fn trim_space(mut b: &[u8]) -> &[u8] {
    loop {
        match first_char(b) {
            Some((c, n)) if c.is_whitespace() => b = &b[n..],
            _ => break,
        }
    }
    loop {
        match last_char(b) {
            Some((c, n)) if c.is_whitespace() => b = &b[..b.len() - n],
            _ => break,
        }
    }
    b
}

fn first_char(b: &[u8]) -> Option<(char, usize)> {
    let n = b.len().min(4);
    (1..=n).find_map(|k| {
        std::str::from_utf8(&b[..k])
            .ok()
            .and_then(|s| s.chars().next())
            .map(|c| (c, k))
    })
}

fn last_char(b: &[u8]) -> Option<(char, usize)> {
    let n = b.len().min(4);
    (1..=n).find_map(|k| {
        std::str::from_utf8(&b[b.len() - k..])
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
            assert_eq!(module_path(text.as_bytes()), want, "{text:?}");
        }
        assert_eq!(module_path(b"module x.com/\xff\n"), "x.com/\u{fffd}");
    }

    #[test]
    fn legacy_go_mod_is_one_module_line() {
        assert_eq!(legacy_go_mod("example.com/m"), b"module example.com/m\n");
        assert_eq!(legacy_go_mod("a b"), b"module \"a b\"\n");
        assert_eq!(legacy_go_mod("a//b"), b"module \"a//b\"\n");
    }

    fn r(low: &str, high: &str) -> Retraction {
        Retraction {
            low: low.into(),
            high: high.into(),
        }
    }

    #[test]
    fn retractions_as_parse_lax_keeps_them() {
        let text = "module example.com/m\n\ngo 1.21\n\n\
            // Broken.\n\
            retract v1.0.1\n\
            retract [v1.1.0, v1.1.9] // A range.\n\
            retract (\n\tv1.2.0\n\t[v1.3.0, v1.3.5]\n\tnot-a-version\n\t[v1.4.0 v1.5.0]\n)\n\
            retract\n\
            require example.com/x v1.0.0\n\
            replace example.com/x => ../x\n\
            toolchain go1.22.0\n";
        assert_eq!(
            retractions(text.as_bytes()),
            [
                r("v1.0.1", "v1.0.1"),
                r("v1.1.0", "v1.1.9"),
                r("v1.2.0", "v1.2.0"),
                r("v1.3.0", "v1.3.5"),
                r("not-a-version", "not-a-version"),
            ]
        );
        assert!(r("v1.1.0", "v1.1.9").contains("v1.1.5"));
        assert!(r("v1.1.0", "v1.1.9").contains("v1.1.9"));
        assert!(!r("v1.1.0", "v1.1.9").contains("v1.2.0"));
        assert!(r("v1.1.0", "v1.1.9").contains("v1.1.1-0.20200101000000-abcdefabcdef"));
    }

    #[test]
    fn a_file_parse_lax_refuses_has_no_retractions() {
        for text in [
            "module m\nretract v1.0.0\nretract (\n\tv1.1.0\n",
            "module m\nretract v1.0.0\n/* c */\n",
            "module m\nretract v1.0.0\nmodule n\n",
            "module m\nretract v1.0.0\ngo one\n",
            "module m\nretract v1.0.0\ngo v1.21\n",
            "module m\nretract v1.0.0\nrequire x.com/y\n",
            "module m\nretract v1.0.0\nrequire x.com/y/v2 v1.0.0\n",
            "module m\nretract v1.0.0\nrequire x.com/y vx\n",
            "module m\nretract \"v1.0.0\n",
        ] {
            assert_eq!(retractions(text.as_bytes()), [], "{text:?}");
        }
        assert_eq!(
            retractions(b"module m\ngo 1.21.0\nretract \"v1.0.0\"\nrequire x.com/y v1.0\n(\n"),
            [r("v1.0.0", "v1.0.0")]
        );
        assert_eq!(retractions(b"\xff"), []);
        // A stray `)` is a statement of an unknown verb: ignored.
        assert_eq!(retractions(b"module m\nretract v1.0.0\n)\n").len(), 1);
    }

    #[test]
    fn unquote_as_strconv() {
        for (q, want) in [
            (&b"\"a\\tb\""[..], &b"a\tb"[..]),
            (b"\"\\u00e9\\101\\x42\"", "éAB".as_bytes()),
            (b"`a\r\\nb`", b"a\\nb"),
        ] {
            assert_eq!(go_unquote(q).as_deref(), Some(want), "{q:?}");
        }
        for bad in [
            &b"\"a"[..],
            b"\"\\q\"",
            b"\"a\nb\"",
            b"`a`b`",
            b"'a'",
            b"\"\\400\"",
        ] {
            assert_eq!(go_unquote(bad), None, "{bad:?}");
        }
    }
}
