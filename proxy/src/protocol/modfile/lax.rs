//! `modfile.ParseLax` as far as golang.org/x/mod/zip uses it: whether a go.mod parses, and the
//! version of its `go` directive (zip.go's `parseGoVers`). x/mod/zip picks its vendor rules by
//! that version, and a go.mod that does not parse counts as having none, so both must be Go's
//! exactly: the lexer and parser of modfile/read.go, then the checks modfile/rule.go's `add`
//! makes in lax mode (`go`, `module`, `require`, `ignore`; `retract` errors and every other
//! directive are ignored).

use super::super::module::{check_path_major, split_path_version};
use super::super::{semver, unicode};

/// The `go` directive's version when `go_mod` parses as `modfile.ParseLax` parses it: `None`
/// when it does not parse or has no `go` directive. A version like `1.21.3-custom` is
/// shortened to `1.21`, as lax parsing does.
pub fn lax_go_version(go_mod: &[u8]) -> Option<String> {
    parse_lax(go_mod)?.go
}

/// The `retract` directives `modfile.ParseLax` keeps (`retract v1.0.0`, `retract [v1.0.0,
/// v1.1.0]`, alone or in a block); none when the file does not parse, as the go command then
/// loads none. Malformed intervals are skipped, as lax mode does.
pub fn lax_retractions(go_mod: &[u8]) -> Vec<Retraction> {
    parse_lax(go_mod).map(|d| d.retract).unwrap_or_default()
}

/// A `retract` interval, its versions as written (`dontFixRetract`: not canonicalized).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retraction {
    pub low: String,
    pub high: String,
}

impl Retraction {
    /// Whether `v` is in the interval (by `semver.Compare`, as the go command checks).
    pub fn contains(&self, v: &str) -> bool {
        semver::compare(&self.low, v).is_le() && semver::compare(v, &self.high).is_le()
    }
}

/// `modfile.ParseLax`: what lax mode keeps of the file, `None` where it fails.
fn parse_lax(go_mod: &[u8]) -> Option<Directives> {
    let tokens = lex(go_mod)?;
    let stmts = Parser { tokens, at: 0 }.file()?;
    let mut state = Directives::default();
    for stmt in &stmts {
        match stmt {
            Stmt::Line(tokens) => state.add(tokens[0], &tokens[1..])?,
            Stmt::Block(header, lines) => {
                let [verb] = header.as_slice() else {
                    continue; // `verb x (`: an unknown block type, ignored in lax mode
                };
                if matches!(
                    *verb,
                    b"module"
                        | b"godebug"
                        | b"require"
                        | b"exclude"
                        | b"replace"
                        | b"retract"
                        | b"tool"
                        | b"ignore"
                ) {
                    for line in lines {
                        state.add(verb, line)?;
                    }
                }
            }
        }
    }
    Some(state)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Newline,
    /// A comment after a token on its line: ends the line (and consumed its newline).
    EolComment,
    /// A comment alone on its line (consumed its newline).
    Comment,
    /// `( ) [ ] { } ,`
    Punct(u8),
    /// A word, or a quoted string with its quotes.
    Text,
}

#[derive(Debug, Clone, Copy)]
struct Token<'a> {
    kind: Kind,
    text: &'a [u8],
}

impl Token<'_> {
    fn is_eol(&self) -> bool {
        matches!(self.kind, Kind::Newline | Kind::EolComment)
    }
}

/// The next rune as Go's `utf8.DecodeRune` reads it (invalid bytes are U+FFFD, one byte).
fn decode(b: &[u8]) -> (char, usize) {
    let len = match b[0] {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    };
    match b.get(..len).map(std::str::from_utf8) {
        Some(Ok(s)) => (s.chars().next().expect("one rune"), len),
        _ => ('\u{FFFD}', 1),
    }
}

/// modfile's `isIdent`: printable and not a space nor `()[]{},`.
fn is_ident(c: char) -> bool {
    !matches!(c, ' ' | '(' | ')' | '[' | ']' | '{' | '}' | ',') && unicode::is_print(c)
}

/// modfile's lexer (`readToken`): `None` where it reports an error. The end of the input is
/// the end of the list.
fn lex(data: &[u8]) -> Option<Vec<Token<'_>>> {
    let mut tokens = Vec::new();
    let mut i = 0;
    // Whether a token was read on the current line: a comment then ends the line.
    let mut line_has_token = false;
    while i < data.len() {
        let rest = &data[i..];
        match rest[0] {
            b' ' | b'\t' | b'\r' => i += 1,
            b'/' if rest.starts_with(b"//") => {
                let end = rest
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(rest.len(), |n| n + 1);
                let kind = if line_has_token {
                    Kind::EolComment
                } else {
                    Kind::Comment
                };
                tokens.push(Token {
                    kind,
                    text: &rest[..end],
                });
                line_has_token = false;
                i += end;
            }
            b'/' if rest.starts_with(b"/*") => return None,
            b'\n' => {
                tokens.push(Token {
                    kind: Kind::Newline,
                    text: &rest[..1],
                });
                line_has_token = false;
                i += 1;
            }
            c @ (b'(' | b')' | b'[' | b']' | b'{' | b'}' | b',') => {
                tokens.push(Token {
                    kind: Kind::Punct(c),
                    text: &rest[..1],
                });
                line_has_token = true;
                i += 1;
            }
            quote @ (b'"' | b'`') => {
                let mut j = 1;
                loop {
                    match rest.get(j) {
                        None | Some(b'\n') => return None, // EOF or newline in string
                        Some(&c) if c == quote => break,
                        Some(b'\\') if quote == b'"' => {
                            j += 1;
                            if j >= rest.len() {
                                return None;
                            }
                            // The escaped rune, whatever it is (a newline too).
                            j += decode(&rest[j..]).1;
                        }
                        Some(_) => j += decode(&rest[j..]).1,
                    }
                }
                tokens.push(Token {
                    kind: Kind::Text,
                    text: &rest[..=j],
                });
                line_has_token = true;
                i += j + 1;
            }
            _ => {
                let mut j = 0;
                while j < rest.len() {
                    if rest[j..].starts_with(b"//") {
                        break;
                    }
                    if rest[j..].starts_with(b"/*") {
                        return None;
                    }
                    let (c, n) = decode(&rest[j..]);
                    if !is_ident(c) {
                        break;
                    }
                    j += n;
                }
                if j == 0 {
                    return None; // unexpected input character
                }
                tokens.push(Token {
                    kind: Kind::Text,
                    text: &rest[..j],
                });
                line_has_token = true;
                i += j;
            }
        }
    }
    Some(tokens)
}

/// A statement: a line of tokens, or `header (` + lines + `)`.
enum Stmt<'a> {
    Line(Vec<&'a [u8]>),
    Block(Vec<&'a [u8]>, Vec<Vec<&'a [u8]>>),
}

/// modfile's parser (`parseFile`, `parseStmt`, `parseLineBlock`, `parseLine`).
struct Parser<'a> {
    tokens: Vec<Token<'a>>,
    at: usize,
}

impl<'a> Parser<'a> {
    /// The next token; `None` at the end of the input (Go's `_EOF`, which is end-of-line too).
    fn peek(&self) -> Option<Token<'a>> {
        self.tokens.get(self.at).copied()
    }

    fn peek_is_eol(&self) -> bool {
        self.peek().is_none_or(|t| t.is_eol())
    }

    fn next(&mut self) -> Option<Token<'a>> {
        let t = self.peek();
        self.at += 1;
        t
    }

    fn file(mut self) -> Option<Vec<Stmt<'a>>> {
        let mut stmts = Vec::new();
        while let Some(t) = self.peek() {
            match t.kind {
                Kind::Newline | Kind::Comment => self.at += 1,
                _ => stmts.push(self.stmt()?),
            }
        }
        Some(stmts)
    }

    fn stmt(&mut self) -> Option<Stmt<'a>> {
        let first = self.next().expect("peeked");
        let mut tokens = vec![first.text];
        loop {
            let Some(t) = self.next() else {
                return Some(Stmt::Line(tokens));
            };
            if t.is_eol() {
                return Some(Stmt::Line(tokens));
            }
            if t.kind == Kind::Punct(b'(') {
                if self.peek_is_eol() {
                    return self.block(tokens);
                }
                if self.peek().is_some_and(|n| n.kind == Kind::Punct(b')')) {
                    let rparen = self.next().expect("peeked");
                    if self.peek_is_eol() {
                        self.at += 1; // empty block
                        return Some(Stmt::Block(tokens, Vec::new()));
                    }
                    tokens.extend([t.text, rparen.text]);
                    continue;
                }
            }
            tokens.push(t.text);
        }
    }

    fn block(&mut self, header: Vec<&'a [u8]>) -> Option<Stmt<'a>> {
        let mut lines = Vec::new();
        loop {
            let t = self.peek()?; // the end of the input inside a block is an error
            match t.kind {
                Kind::EolComment | Kind::Newline | Kind::Comment => self.at += 1,
                Kind::Punct(b')') => {
                    self.at += 1;
                    if !self.peek_is_eol() {
                        return None; // expected newline after closing paren
                    }
                    self.at += 1;
                    return Some(Stmt::Block(header, lines));
                }
                _ => {
                    let mut line = Vec::new();
                    while let Some(t) = self.next() {
                        if t.is_eol() {
                            break;
                        }
                        line.push(t.text);
                    }
                    lines.push(line);
                }
            }
        }
    }
}

/// What lax mode keeps of the directives.
#[derive(Default)]
struct Directives {
    go: Option<String>,
    module: bool,
    retract: Vec<Retraction>,
}

impl Directives {
    /// rule.go's `add` in lax mode; `None` where it records an error.
    fn add(&mut self, verb: &[u8], args: &[&[u8]]) -> Option<()> {
        match verb {
            b"go" => {
                if self.go.is_some() {
                    return None; // repeated go statement
                }
                let [version] = args else {
                    return None;
                };
                self.go = Some(go_version_arg(version)?);
            }
            b"module" => {
                if std::mem::replace(&mut self.module, true) {
                    return None; // repeated module statement
                }
                let [path] = args else {
                    return None;
                };
                parse_string(path)?;
            }
            b"require" => {
                let [path, version] = args else {
                    return None;
                };
                let path = String::from_utf8_lossy(&parse_string(path)?).into_owned();
                let version = parse_string(version)?;
                let version = std::str::from_utf8(&version).ok()?;
                let canonical = super::super::canonical_version(version)?;
                let (_, path_major) = split_path_version(&path)?;
                let major = semver::major(&canonical).unwrap_or("");
                check_path_major(&canonical, major, semver::build(&canonical), path_major).ok()?;
            }
            b"ignore" => {
                let [path] = args else {
                    return None;
                };
                parse_string(path)?;
            }
            // `retract` errors are only reported for the main module: a malformed interval
            // is dropped.
            b"retract" => self.retract.extend(version_interval(args)),
            _ => {}
        }
        Some(())
    }
}

/// rule.go's `parseVersionInterval` with `dontFixRetract` (versions kept as written): `v` or
/// `[low, high]`; what follows is ignored in lax mode.
fn version_interval(args: &[&[u8]]) -> Option<Retraction> {
    let version = |t: &[u8]| String::from_utf8(parse_string(t)?).ok();
    match args {
        [] => None,
        [b"(", ..] => None,
        [b"[", low, b",", high, b"]", ..] => Some(Retraction {
            low: version(low)?,
            high: version(high)?,
        }),
        [b"[", ..] => None,
        [v, ..] => {
            let v = version(v)?;
            Some(Retraction {
                low: v.clone(),
                high: v,
            })
        }
    }
}

/// The `go` directive's argument: `GoVersionRE`, else lax mode's `laxGoVersionRE` fix.
fn go_version_arg(arg: &[u8]) -> Option<String> {
    // ^([1-9][0-9]*)\.(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))?([a-z]+[0-9]+)?$
    let strict = || -> Option<()> {
        let rest = major(arg)?;
        let mut rest = number(rest.strip_prefix(b".")?)?;
        if let Some(r) = rest.strip_prefix(b".") {
            rest = number(r)?;
        }
        if rest.is_empty() {
            return Some(());
        }
        let letters = rest.iter().take_while(|b| b.is_ascii_lowercase()).count();
        let digits = rest[letters..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        (letters > 0 && digits > 0 && letters + digits == rest.len()).then_some(())
    };
    if strict().is_some() {
        return Some(String::from_utf8(arg.to_vec()).expect("ASCII"));
    }
    // ^v?(([1-9][0-9]*)\.(0|[1-9][0-9]*))([^0-9].*)$ keeps the first group.
    let body = arg.strip_prefix(b"v").unwrap_or(arg);
    let rest = number(major(body)?.strip_prefix(b".")?)?;
    if rest.is_empty() {
        return None;
    }
    let kept = &body[..body.len() - rest.len()];
    Some(String::from_utf8(kept.to_vec()).expect("ASCII"))
}

/// `[1-9][0-9]*` at the start of `s`, the whole run of digits: what follows it.
fn major(s: &[u8]) -> Option<&[u8]> {
    if s.first() == Some(&b'0') {
        return None;
    }
    number(s)
}

/// `(0|[1-9][0-9]*)` at the start of `s`, the whole run of digits: what follows it.
fn number(s: &[u8]) -> Option<&[u8]> {
    let n = s.iter().take_while(|b| b.is_ascii_digit()).count();
    if n == 0 || (s[0] == b'0' && n > 1) {
        return None;
    }
    Some(&s[n..])
}

/// rule.go's `parseString`: a `"`-quoted token is unquoted as Go's `strconv.Unquote` does;
/// any other token may not contain a quote character.
fn parse_string(token: &[u8]) -> Option<Vec<u8>> {
    if token.first() == Some(&b'"') {
        return unquote(token);
    }
    if token.iter().any(|b| matches!(b, b'"' | b'\'' | b'`')) {
        return None;
    }
    Some(token.to_vec())
}

/// `strconv.Unquote` of a double-quoted Go string literal (invalid UTF-8 passes through).
pub(super) fn unquote(s: &[u8]) -> Option<Vec<u8>> {
    let body = s.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        match body[i] {
            b'"' | b'\n' => return None,
            b'\\' => {
                let (c, used) = unquote_escape(&body[i + 1..])?;
                out.extend_from_slice(&c);
                i += 1 + used;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Some(out)
}

/// One escape after `\` in a double-quoted string: its bytes and the input it used.
fn unquote_escape(s: &[u8]) -> Option<(Vec<u8>, usize)> {
    let simple = |b: u8| Some((vec![b], 1));
    let hex = |n: usize| -> Option<u32> {
        let digits = s.get(1..=n)?;
        if !digits.iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
        u32::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
    };
    let rune = |v: u32, used: usize| -> Option<(Vec<u8>, usize)> {
        let c = char::from_u32(v)?; // not a surrogate, at most U+10FFFF
        Some((c.to_string().into_bytes(), used))
    };
    match *s.first()? {
        b'a' => simple(0x07),
        b'b' => simple(0x08),
        b'f' => simple(0x0c),
        b'n' => simple(b'\n'),
        b'r' => simple(b'\r'),
        b't' => simple(b'\t'),
        b'v' => simple(0x0b),
        b'\\' => simple(b'\\'),
        b'"' => simple(b'"'),
        b'x' => Some((vec![u8::try_from(hex(2)?).ok()?], 3)),
        b'u' => rune(hex(4)?, 5),
        b'U' => rune(hex(8)?, 9),
        b'0'..=b'7' => {
            let digits = s.get(..3)?;
            if !digits.iter().all(|b| (b'0'..=b'7').contains(b)) {
                return None;
            }
            let v = digits.iter().fold(0u32, |v, b| v * 8 + u32::from(b - b'0'));
            Some((vec![u8::try_from(v).ok()?], 3))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn go(text: &str) -> Option<String> {
        lax_go_version(text.as_bytes())
    }

    #[test]
    fn go_directives() {
        for (text, want) in [
            ("module m\ngo 1.24\n", Some("1.24")),
            ("go 1.24", Some("1.24")),
            ("module m\r\ngo 1.21.3\r\n", Some("1.21.3")),
            ("go 1.22rc1 // comment\n", Some("1.22rc1")),
            ("go 1.24.0-custom\n", Some("1.24")),
            ("go 1.24-x\n", Some("1.24")),
            ("go 1.24.0rc1\n", Some("1.24.0rc1")),
            ("module m\n", None),
            ("", None),
            ("go v1.24\n", None),
            ("go 1\n", None),
            ("go 0.5\n", None),
            ("go 0.5x\n", None),
            ("go 1.05\n", None),
            ("go 1.0x\n", Some("1.0")),
            ("go \"1.24\"\n", None),
            ("go 1.24 1.25\n", None),
            ("go 1.24\ngo 1.24\n", None),
            ("go (\n\t1.24\n)\n", None),
            ("unknown (\n\tgo 1.24\n)\ngo 1.23\n", Some("1.23")),
            ("replace x => y\nexclude a b c d\ngo 1.25\n", Some("1.25")),
            ("go 1.24\nrequire example.com/a v1.0.0\n", Some("1.24")),
            ("go 1.24\nrequire example.com/a v1.0\n", Some("1.24")),
            ("go 1.24\nrequire example.com/a master\n", None),
            ("go 1.24\nrequire example.com/a/v2 v1.0.0\n", None),
            ("go 1.24\nrequire example.com/a v2.0.0\n", None),
            (
                "go 1.24\nrequire example.com/a v2.0.0+incompatible\n",
                Some("1.24"),
            ),
            (
                "go 1.24\nrequire (\n\texample.com/a v1.0.0 // indirect\n)\n",
                Some("1.24"),
            ),
            ("go 1.24\nrequire (\n\texample.com/a\n)\n", None),
            (
                "go 1.24\nrequire \"example.com/a\" \"v1.0.0\"\n",
                Some("1.24"),
            ),
            ("go 1.24\nrequire `example.com/a` v1.0.0\n", None),
            ("go 1.24\nmodule a\nmodule b\n", None),
            ("go 1.24\nmodule \"a\\q\"\n", None),
            ("go 1.24\nmodule \"a\\u00e9\\x41\\101\"\n", Some("1.24")),
            ("go 1.24\nretract [v1.0.0 v2\n", Some("1.24")),
            ("go 1.24\nrequire (\n", None),
            ("go 1.24\nrequire (\n) x\n", None),
            ("go 1.24\nrequire ( )\n", Some("1.24")),
            ("go 1.24 /* c */\n", None),
            ("\u{feff}go 1.24\n", None),
            ("go 1.24\n\"unterminated\n", None),
            ("go 1.24\nx\u{0}y\n", None),
            ("go 1.24\nignore a b\n", None),
            ("go 1.24\ntool (\n\ta b\n)\n", Some("1.24")),
        ] {
            assert_eq!(go(text).as_deref(), want, "{text:?}");
        }
        assert_eq!(
            lax_go_version(b"go 1.24\nmodule \xff\n").as_deref(),
            Some("1.24")
        );
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
            retract (\n\tv1.2.0\n\t[v1.3.0, v1.3.5]\n\tnot-a-version\n\t[v1.4.0 v1.5.0]\n\t\"v1.6.0\"\n)\n\
            retract\n\
            require example.com/x v1.0.0\n\
            replace example.com/x => ../x\n";
        assert_eq!(
            lax_retractions(text.as_bytes()),
            [
                r("v1.0.1", "v1.0.1"),
                r("v1.1.0", "v1.1.9"),
                r("v1.2.0", "v1.2.0"),
                r("v1.3.0", "v1.3.5"),
                r("not-a-version", "not-a-version"),
                r("v1.6.0", "v1.6.0"),
            ]
        );
        assert!(r("v1.1.0", "v1.1.9").contains("v1.1.5"));
        assert!(r("v1.1.0", "v1.1.9").contains("v1.1.9"));
        assert!(!r("v1.1.0", "v1.1.9").contains("v1.2.0"));
        assert!(r("v1.1.0", "v1.1.9").contains("v1.1.1-0.20200101000000-abcdefabcdef"));
        // A file lax mode refuses has none.
        for text in [
            "module m\nretract v1.0.0\nretract (\n\tv1.1.0\n",
            "module m\nretract v1.0.0\nmodule n\n",
            "module m\nretract v1.0.0\nrequire x.com/y/v2 v1.0.0\n",
        ] {
            assert_eq!(lax_retractions(text.as_bytes()), [], "{text:?}");
        }
    }
}
