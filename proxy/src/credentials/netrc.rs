//! netrc files as the go command reads them (`cmd/go/internal/auth/netrc.go`, `parseNetrc`),
//! quirks included, so a netrc file that works for `GOAUTH=netrc` works here the same way:
//!
//! - the text is split into lines, each line into whitespace-separated tokens read in pairs
//!   (`machine NAME`, `login NAME`, `password SECRET`; an odd last token is ignored); there
//!   is no quoting: a token is whatever lies between blanks;
//! - `machine` starts an entry; an entry counts once it has a machine, a login and a
//!   password (an entry missing one is dropped, and `login`/`password` without a `machine`
//!   before them belong to nothing);
//! - `macdef` skips the following lines up to an empty line;
//! - a line whose odd last token is `default` ends the file (the go command never uses the
//!   default entry); `default` inside a pair is ignored with the token after it;
//! - when a machine is listed twice, the first entry wins.

use std::fmt;

/// One complete `machine` entry.
#[derive(Clone, PartialEq, Eq)]
pub struct Entry {
    pub machine: String,
    pub login: String,
    pub password: String,
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("machine", &self.machine)
            .field("login", &self.login)
            .finish_non_exhaustive()
    }
}

/// The complete entries of a netrc file, in file order.
pub fn parse(data: &str) -> Vec<Entry> {
    let mut entries = Vec::new();
    let mut current = Partial::default();
    let mut in_macro = false;
    for line in data.split('\n') {
        if in_macro {
            // Only a truly empty line ends a macro (a CRLF file's "\r" is not one).
            if line.is_empty() {
                in_macro = false;
            }
            continue;
        }
        // Go's strings.Fields: split at Unicode white space, as `split_whitespace` does.
        let fields: Vec<&str> = line.split_whitespace().collect();
        let mut i = 0;
        while i + 1 < fields.len() {
            let value = fields[i + 1];
            match fields[i] {
                "machine" => {
                    current = Partial {
                        machine: value.to_string(),
                        ..Partial::default()
                    }
                }
                "login" => current.login = value.to_string(),
                "password" => current.password = value.to_string(),
                "macdef" => in_macro = true,
                // "default" here (and any other word) is skipped with its partner.
                _ => {}
            }
            if !current.machine.is_empty()
                && !current.login.is_empty()
                && !current.password.is_empty()
            {
                let done = std::mem::take(&mut current);
                entries.push(Entry {
                    machine: done.machine,
                    login: done.login,
                    password: done.password,
                });
            }
            i += 2;
        }
        if fields.get(i) == Some(&"default") {
            break;
        }
    }
    entries
}

/// The entry for `machine`: the first one listed.
pub fn find<'a>(entries: &'a [Entry], machine: &str) -> Option<&'a Entry> {
    entries.iter().find(|e| e.machine == machine)
}

#[derive(Default)]
struct Partial {
    machine: String,
    login: String,
    password: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(machine: &str, login: &str, password: &str) -> Entry {
        Entry {
            machine: machine.into(),
            login: login.into(),
            password: password.into(),
        }
    }

    /// The go command's own test data (`netrc_test.go`) and its expected entries.
    #[test]
    fn reads_what_the_go_command_reads() {
        let text = "
machine incomplete
password none

machine api.github.com
  login user
  password pwd

machine incomlete.host
  login justlogin

machine test.host
login user2
password pwd2

machine oneline login user3 password pwd3

machine ignore.host macdef ignore
  login nobody
  password nothing

machine hasmacro.too macdef ignore-next-lines login user4 password pwd4
  login nobody
  password nothing

default
login anonymous
password gopher@golang.org

machine after.default
login oops
password too-late-in-file
";
        assert_eq!(
            parse(text),
            [
                entry("api.github.com", "user", "pwd"),
                entry("test.host", "user2", "pwd2"),
                entry("oneline", "user3", "pwd3"),
                entry("hasmacro.too", "user4", "pwd4"),
            ]
        );
    }

    #[test]
    fn quirks_are_the_go_command_s() {
        // `default` inside a pair is skipped with its partner: the line goes on.
        let text = "default login anon password x\nmachine a.example login u password p\n";
        assert_eq!(parse(text), [entry("a.example", "u", "p")]);
        // An odd `default` at a line's end ends the file.
        let text =
            "machine a.example login u password p default\nmachine b.example login v password q\n";
        assert_eq!(parse(text), [entry("a.example", "u", "p")]);
        // No quoting: quotes are part of the token.
        let text = "machine a.example login \"u\" password \"p q\"\n";
        assert_eq!(parse(text), [entry("a.example", "\"u\"", "\"p")]);
        // Tabs, CRLF line ends; a CRLF file's macro never ends.
        let text = "machine\ta.example\r\nlogin u\r\npassword p\r\nmachine m macdef x\r\n\r\nmachine b.example login v password q\r\n";
        assert_eq!(parse(text), [entry("a.example", "u", "p")]);
        // The first entry of a machine listed twice wins; an entry carries across lines but
        // not across another `machine`.
        let entries =
            parse("machine h login first password 1\nmachine h login second password 2\n");
        assert_eq!(find(&entries, "h"), Some(&entry("h", "first", "1")));
        assert_eq!(
            parse("machine h login u\nmachine g password p\n"),
            Vec::<Entry>::new()
        );
    }

    #[test]
    fn debug_shows_no_password() {
        let shown = format!("{:?}", entry("h", "u", "s3cret"));
        assert!(!shown.contains("s3cret"), "{shown}");
    }
}
