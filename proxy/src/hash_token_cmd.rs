//! `modfleet-proxy hash-token`: a new client token (or one read from standard input) and the
//! tokens-file line holding its hash. The token is printed once and never written anywhere
//! else; the line holds only the hash (`modfleet_contract::access`).

use std::io::{Read, Write};
use std::process::ExitCode;

use modfleet_contract::access::{MIN_TOKEN_LEN, TokenHash, TokenLine, check_name, generate_token};

use crate::access::presented::MAX_HEADER_BYTES;
use crate::config::HashTokenArgs;

/// Longest token `--stdin` takes: its Basic encoding with a long identity must fit in the
/// `Authorization` header the proxy reads.
const MAX_TOKEN_LEN: usize = MAX_HEADER_BYTES / 2;

/// Longest standard input read with `--stdin`.
const MAX_STDIN_BYTES: u64 = 4096;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum HashTokenError {
    #[error("--identity: {0}")]
    Identity(String),
    #[error("--groups: {0}")]
    Group(String),
    #[error(
        "the token on standard input is {0} characters long: use at least {MIN_TOKEN_LEN} (or \
         run without --stdin to generate one)"
    )]
    TooShort(usize),
    #[error(
        "the token on standard input holds spaces, control or non-ASCII characters: clients \
         send it in an HTTP header and a .netrc; use visible ASCII"
    )]
    Characters,
    #[error(
        "the token on standard input is {0} characters long: use at most {MAX_TOKEN_LEN} \
         (clients send it in an Authorization header, which this proxy reads up to \
         {MAX_HEADER_BYTES} bytes)"
    )]
    TooLong(usize),
    #[error("cannot read standard input: {0}")]
    Stdin(String),
}

/// What `hash-token` prints: for a generated token, the token and the line (with comments
/// saying what each is); for a given one, the line alone.
pub fn render(args: &HashTokenArgs, given: Option<&str>) -> Result<String, HashTokenError> {
    if let Some(identity) = &args.identity {
        check_name(identity).map_err(HashTokenError::Identity)?;
    }
    for g in &args.groups {
        check_name(g).map_err(HashTokenError::Group)?;
    }
    if args.identity.is_none() && !args.groups.is_empty() {
        return Err(HashTokenError::Group(
            "groups belong to an identity: pass --identity too".into(),
        ));
    }
    let token = match given {
        Some(token) => {
            if !token.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(HashTokenError::Characters);
            }
            if token.len() < MIN_TOKEN_LEN {
                return Err(HashTokenError::TooShort(token.len()));
            }
            if token.len() > MAX_TOKEN_LEN {
                return Err(HashTokenError::TooLong(token.len()));
            }
            token.to_string()
        }
        None => generate_token(),
    };
    let line = match &args.identity {
        Some(identity) => TokenLine::for_token(identity, &token, &args.groups).to_string(),
        None => TokenHash::of(&token).as_str().to_string(),
    };
    let what = if args.identity.is_some() {
        "# The line for a tokens file (access.tokensFiles):"
    } else {
        "# Its hash; a tokens-file line is `IDENTITY HASH [GROUP,...]` (pass --identity to get it):"
    };
    Ok(match given {
        Some(_) => format!("{line}\n"),
        None => format!(
            "# The token. Store it now: it is shown once, and the tokens file holds only its hash.\n\
             {token}\n{what}\n{line}\n"
        ),
    })
}

/// The first line of standard input, without its end.
fn read_stdin() -> Result<String, HashTokenError> {
    let mut bytes = Vec::new();
    std::io::stdin()
        .take(MAX_STDIN_BYTES)
        .read_to_end(&mut bytes)
        .map_err(|e| HashTokenError::Stdin(e.to_string()))?;
    let line = crate::credentials::file::first_line(&bytes);
    String::from_utf8(line.to_vec()).map_err(|_| HashTokenError::Characters)
}

pub fn run(args: &HashTokenArgs) -> ExitCode {
    let given = if args.stdin {
        match read_stdin() {
            Ok(t) => Some(t),
            Err(e) => {
                eprintln!("modfleet-proxy hash-token: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        None
    };
    match render(args, given.as_deref()) {
        Ok(out) => {
            let mut stdout = std::io::stdout().lock();
            if stdout
                .write_all(out.as_bytes())
                .and_then(|()| stdout.flush())
                .is_err()
            {
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("modfleet-proxy hash-token: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use modfleet_contract::access::parse_tokens_file;

    fn args(identity: Option<&str>, groups: &[&str]) -> HashTokenArgs {
        HashTokenArgs {
            identity: identity.map(str::to_string),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            stdin: false,
        }
    }

    #[test]
    fn a_generated_token_is_printed_once_with_its_line() {
        let out = render(&args(Some("ci"), &["builders"]), None).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 4, "{out}");
        assert!(lines[0].contains("Store it now"), "{out}");
        let token = lines[1];
        assert!(token.starts_with("mf_") && token.len() >= MIN_TOKEN_LEN);
        assert_eq!(out.matches(token).count(), 1);
        assert!(lines[2].starts_with('#'), "{out}");
        let parsed = parse_tokens_file(lines[3]).unwrap();
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0].identity, "ci");
        assert_eq!(parsed[0].groups, ["builders"]);
        assert_eq!(parsed[0].hash, TokenHash::of(token));
    }

    #[test]
    fn a_given_token_prints_the_line_alone() {
        let token = "x".repeat(MIN_TOKEN_LEN);
        let out = render(&args(Some("ci"), &[]), Some(&token)).unwrap();
        assert_eq!(out, format!("ci {}\n", TokenHash::of(&token).as_str()));
        let out = render(&args(None, &[]), Some(&token)).unwrap();
        assert_eq!(out, format!("{}\n", TokenHash::of(&token).as_str()));
    }

    #[test]
    fn weak_or_unusable_input_is_refused() {
        let short = "x".repeat(MIN_TOKEN_LEN - 1);
        assert_eq!(
            render(&args(Some("ci"), &[]), Some(&short)),
            Err(HashTokenError::TooShort(MIN_TOKEN_LEN - 1))
        );
        let long = "x".repeat(MAX_TOKEN_LEN + 1);
        assert_eq!(
            render(&args(Some("ci"), &[]), Some(&long)),
            Err(HashTokenError::TooLong(MAX_TOKEN_LEN + 1))
        );
        let spaced = format!("{} x", "x".repeat(MIN_TOKEN_LEN));
        assert_eq!(
            render(&args(Some("ci"), &[]), Some(&spaced)),
            Err(HashTokenError::Characters)
        );
        assert!(matches!(
            render(&args(Some("a b"), &[]), None),
            Err(HashTokenError::Identity(_))
        ));
        assert!(matches!(
            render(&args(Some("ci"), &["anonymous"]), None),
            Err(HashTokenError::Group(_))
        ));
        assert!(matches!(
            render(&args(None, &["ops"]), None),
            Err(HashTokenError::Group(_))
        ));
    }
}
