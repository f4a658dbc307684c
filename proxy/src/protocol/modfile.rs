//! The part of go.mod syntax (golang.org/x/mod/modfile) a proxy needs: the `module` directive.
//!
//! A `.mod` from an upstream is cached for ever, so it must be the go.mod of the module asked
//! for: an HTML page, a file cut short or a go.mod naming another module is refused before it
//! can poison the cache. The lexer follows modfile's: `//` comments to the end of the line,
//! interpreted ("...") and raw (`...`) strings, and `verb ( ... )` blocks.

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
}
