//! The part of go.mod syntax (golang.org/x/mod/modfile) a proxy needs: the `module` directive
//! and the `require` directives.
//!
//! A `.mod` from an upstream is cached for ever, so it must be the go.mod of the module asked
//! for: an HTML page, a file cut short or a go.mod naming another module is refused before it
//! can poison the cache. Its `require` lines name what the go command will ask for next (the
//! proxy prefetches them); they are an upstream's bytes, so each is checked by the caller
//! before it is used. The lexer follows modfile's: `//` comments to the end of the line,
//! interpreted ("...") and raw (`...`) strings, and `verb ( ... )` blocks.

mod lax;
mod module_path;

pub use lax::{Retraction, lax_go_version, lax_retractions};
pub use module_path::{legacy_go_mod, module_path_lax};

/// Why a go.mod was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("go.mod: {0}")]
pub struct ModfileError(String);

fn bad(msg: impl Into<String>) -> ModfileError {
    ModfileError(msg.into())
}

/// The module path a go.mod declares (`module example.com/m`, quoted or not, in a block or
/// not). Exactly one `module` directive is allowed, as `modfile.Parse` requires.
pub fn module_path(go_mod: &[u8]) -> Result<String, ModfileError> {
    let text = std::str::from_utf8(go_mod).map_err(|e| bad(format!("not UTF-8: {e}")))?;
    let mut found: Option<String> = None;
    let mut in_module_block = false;
    let mut in_other_block = false;
    for (n, line) in text.lines().enumerate() {
        let tokens = tokens(line).map_err(|why| bad(format!("line {}: {why}", n + 1)))?;
        let Some((first, rest)) = tokens.split_first() else {
            continue;
        };
        if in_module_block || in_other_block {
            if first == ")" && rest.is_empty() {
                (in_module_block, in_other_block) = (false, false);
            } else if in_module_block {
                record(&mut found, &tokens, n)?;
            }
            continue;
        }
        match (first.as_str(), rest) {
            ("module", [open]) if open == "(" => in_module_block = true,
            ("module", args) => record(&mut found, args, n)?,
            (_, [.., open]) if open == "(" => in_other_block = true,
            _ => {}
        }
    }
    if in_module_block || in_other_block {
        return Err(bad("a block is not closed: the file is cut short"));
    }
    found.ok_or_else(|| bad("no module directive: not a go.mod file"))
}

/// Checks that `go_mod` declares `module`.
pub fn check_module(go_mod: &[u8], module: &str) -> Result<(), ModfileError> {
    let declared = module_path(go_mod)?;
    if declared != module {
        return Err(bad(format!(
            "declares module {declared:?}, not the requested {module:?}"
        )));
    }
    Ok(())
}

/// One `require` of a go.mod, as written: not checked (see [`requires`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Require {
    pub path: String,
    pub version: String,
}

/// The `require` directives of a go.mod, in file order, single-line (`require m v1.2.3`) and
/// block (`require ( ... )`) forms; a `// indirect` (any comment) is dropped with the rest of
/// the line's comment. Lazy, so a caller that wants only a few reads only that far. Lines of
/// other shapes are passed over; a line that does not lex (an unterminated string) or a file
/// that is not UTF-8 ends the list. The paths and versions are unchecked: the caller checks
/// each as it would check a client's request.
pub fn requires(go_mod: &[u8]) -> Requires<'_> {
    Requires {
        lines: std::str::from_utf8(go_mod).unwrap_or_default().lines(),
        block: Block::None,
    }
}

/// Iterator of [`requires`].
pub struct Requires<'a> {
    lines: std::str::Lines<'a>,
    block: Block,
}

/// The `verb ( ... )` block a line is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    None,
    Require,
    Other,
}

impl Iterator for Requires<'_> {
    type Item = Require;

    fn next(&mut self) -> Option<Require> {
        for line in self.lines.by_ref() {
            let Ok(tokens) = tokens(line) else {
                // Cut short or not a go.mod: nothing after this line is trusted.
                self.lines = "".lines();
                return None;
            };
            let Some((first, rest)) = tokens.split_first() else {
                continue;
            };
            match self.block {
                Block::Require | Block::Other if first == ")" && rest.is_empty() => {
                    self.block = Block::None;
                }
                Block::Require => {
                    if let [path, version] = tokens.as_slice() {
                        return Some(require(path, version));
                    }
                }
                Block::Other => {}
                Block::None => match (first.as_str(), rest) {
                    ("require", [open]) if open == "(" => self.block = Block::Require,
                    ("require", [path, version]) => return Some(require(path, version)),
                    (_, [.., open]) if open == "(" => self.block = Block::Other,
                    _ => {}
                },
            }
        }
        None
    }
}

fn require(path: &str, version: &str) -> Require {
    Require {
        path: path.to_string(),
        version: version.to_string(),
    }
}

fn record(found: &mut Option<String>, args: &[String], n: usize) -> Result<(), ModfileError> {
    if found.is_some() {
        return Err(bad(format!("line {}: repeated module directive", n + 1)));
    }
    match args {
        [path] if !path.is_empty() => {
            *found = Some(path.clone());
            Ok(())
        }
        _ => Err(bad(format!("line {}: usage: module module/path", n + 1))),
    }
}

/// Splits a line into modfile tokens: words, `(`, `)`, and strings (unquoted), dropping a
/// `//` comment.
fn tokens(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = line.char_indices().peekable();
    while let Some(&(i, c)) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '/' if line[i..].starts_with("//") => break,
            '(' | ')' => {
                out.push(c.to_string());
                chars.next();
            }
            '"' => {
                chars.next();
                let mut s = String::new();
                loop {
                    match chars.next() {
                        None => return Err("unterminated string".into()),
                        Some((_, '"')) => break,
                        Some((_, '\\')) => match chars.next() {
                            Some((_, e @ ('\\' | '"'))) => s.push(e),
                            Some((_, 'n')) => s.push('\n'),
                            Some((_, 't')) => s.push('\t'),
                            _ => return Err("unsupported escape in string".into()),
                        },
                        Some((_, c)) => s.push(c),
                    }
                }
                out.push(s);
            }
            '`' => {
                chars.next();
                let mut s = String::new();
                loop {
                    match chars.next() {
                        None => return Err("unterminated raw string".into()),
                        Some((_, '`')) => break,
                        Some((_, c)) => s.push(c),
                    }
                }
                out.push(s);
            }
            _ => {
                let mut word = String::new();
                while let Some(&(j, c)) = chars.peek() {
                    if c.is_whitespace() || c == '(' || c == ')' || line[j..].starts_with("//") {
                        break;
                    }
                    word.push(c);
                    chars.next();
                }
                out.push(word);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_directives_in_their_forms() {
        for (text, want) in [
            ("module example.com/m\n", "example.com/m"),
            (
                "module example.com/m // comment\n\ngo 1.21\n",
                "example.com/m",
            ),
            (
                "// Deprecated: use v2\nmodule \"example.com/m\"\n",
                "example.com/m",
            ),
            ("module `example.com/m`\n", "example.com/m"),
            ("module (\n\texample.com/m\n)\n", "example.com/m"),
            (
                "go 1.22\n\nrequire (\n\tgolang.org/x/text v0.3.0 // indirect\n)\n\nmodule example.com/m\n",
                "example.com/m",
            ),
            ("module example.com/m", "example.com/m"),
        ] {
            assert_eq!(module_path(text.as_bytes()).unwrap(), want, "{text:?}");
        }
    }

    #[test]
    fn what_is_not_a_go_mod_is_refused() {
        for text in [
            "<!DOCTYPE html>\n<html><body>Sign in to the Wi-Fi</body></html>\n",
            "",
            "go 1.21\n",
            "module example.com/m\nmodule example.com/n\n",
            "module\n",
            "module a b\n",
            "module \"example.com/m\n",
            "module example.com/m\nrequire (\n\tgolang.org/x/text v0.3.0\n",
        ] {
            assert!(module_path(text.as_bytes()).is_err(), "{text:?}");
        }
        assert!(module_path(b"module \xff\n").is_err());
    }

    #[test]
    fn the_declared_module_must_be_the_requested_one() {
        check_module(b"module example.com/m\n", "example.com/m").unwrap();
        let e = check_module(b"module example.com/other\n", "example.com/m").unwrap_err();
        assert!(e.to_string().contains("example.com/other"), "{e}");
        assert!(check_module(b"module example.com/m/v2\n", "example.com/m").is_err());
    }

    fn all(text: &str) -> Vec<(String, String)> {
        requires(text.as_bytes())
            .map(|r| (r.path, r.version))
            .collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(p, v)| (p.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn requires_in_both_forms_comments_and_quotes() {
        let text = "module example.com/m\n\ngo 1.21\n\n\
            require example.com/a v1.0.0\n\
            require \"example.com/b\" `v1.2.3` // indirect\n\
            require (\n\
            \texample.com/c v0.1.0 // indirect\n\
            \t// example.com/commented v1.0.0\n\
            \n\
            \texample.com/d v2.0.0+incompatible\n\
            )\n\
            replace (\n\texample.com/a v1.0.0 => example.com/fork v1.0.1\n\texample.com/x v1.0.0\n)\n\
            exclude example.com/e v1.0.0\n\
            retract (\n\tv1.0.1\n)\n\
            require example.com/f v1.0.0 // the last one\n";
        assert_eq!(
            all(text),
            pairs(&[
                ("example.com/a", "v1.0.0"),
                ("example.com/b", "v1.2.3"),
                ("example.com/c", "v0.1.0"),
                ("example.com/d", "v2.0.0+incompatible"),
                ("example.com/f", "v1.0.0"),
            ])
        );
    }

    /// Whatever an upstream sends, the parser returns what is written and nothing else, and
    /// never more than is there; checking the paths and versions is the caller's.
    #[test]
    fn hostile_go_mods_yield_only_what_is_written() {
        // Shapes that are not `path version` are passed over.
        assert_eq!(
            all("require\nrequire a\nrequire a b c\nrequire (a v1.0.0)\nrequire x v1\n"),
            pairs(&[("x", "v1")]),
            "bad versions and paths come through as written, for the caller to refuse"
        );
        // `require (` with no close: the lines after it are requires until the end.
        assert_eq!(
            all("module m\nrequire (\n\ta v1.0.0\n\tb v1.0.0\n"),
            pairs(&[("a", "v1.0.0"), ("b", "v1.0.0")])
        );
        // An unterminated string ends the list: nothing after a line that does not lex.
        assert_eq!(
            all("require a v1.0.0\nrequire \"b v1.0.0\nrequire c v1.0.0\n"),
            pairs(&[("a", "v1.0.0")])
        );
        assert!(
            requires(b"require a v1.0.0\n\xff\n").next().is_none(),
            "not UTF-8"
        );
        assert!(all("<!DOCTYPE html>\n<html>require</html>\n").is_empty());
        // A huge line is one token pair at most, read once.
        let huge = format!("require example.com/{} v1.0.0\n", "a".repeat(1 << 20));
        let got = all(&huge);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0.len(), "example.com/".len() + (1 << 20));
        // Lazy: the first of a million requires without reading the rest.
        let many = "require example.com/m v1.0.0\n".repeat(1_000_000);
        assert_eq!(requires(many.as_bytes()).take(3).count(), 3);
        // A `)` alone closes only a block; other blocks' lines are not requires.
        assert_eq!(
            all(")\nreplace (\n\ta v1.0.0\n)\n)\nrequire b v1.0.0\n"),
            pairs(&[("b", "v1.0.0")])
        );
    }
}
