//! What a client presents in `Authorization`: nothing, `Bearer TOKEN`, or `Basic` with the
//! identity as user and the token as password (what the go command sends from `.netrc`).
//! Every byte is hostile: the header is bounded before it is decoded, and nothing of it is
//! ever put into a message, a log line or a label.

use base64::Engine as _;
use http::HeaderMap;
use http::header::AUTHORIZATION;

/// Longest `Authorization` value read; a 46-character token, its Basic encoding and a long
/// identity fit many times over.
pub const MAX_HEADER_BYTES: usize = 1024;

/// The credentials of a request, not yet checked against the tokens files.
#[derive(PartialEq, Eq)]
pub enum Presented {
    None,
    Bearer(String),
    Basic { user: String, token: String },
}

impl std::fmt::Debug for Presented {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        match self {
            Presented::None => f.write_str("None"),
            Presented::Bearer(_) => f.write_str("Bearer(***)"),
            Presented::Basic { user, .. } => write!(f, "Basic({user:?}, ***)"),
        }
    }
}

/// Why the header cannot be read: a 401 whose reason says what to send instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("more than one Authorization header: send one")]
    Repeated,
    #[error("the Authorization header is longer than {MAX_HEADER_BYTES} bytes")]
    TooLong,
    #[error("the Authorization header is not Basic or Bearer: send one of them")]
    Scheme,
    #[error("the Authorization Basic value is not base64 of USER:TOKEN")]
    BasicEncoding,
    #[error("the Authorization token is empty or holds spaces or control characters")]
    Token,
}

/// Reads the one `Authorization` header of a request.
pub fn presented(headers: &HeaderMap) -> Result<Presented, Malformed> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(Presented::None);
    };
    if values.next().is_some() {
        return Err(Malformed::Repeated);
    }
    let value = value.as_bytes();
    if value.len() > MAX_HEADER_BYTES {
        return Err(Malformed::TooLong);
    }
    let value = std::str::from_utf8(value).map_err(|_| Malformed::Token)?;
    let (scheme, rest) = value.trim().split_once(' ').ok_or(Malformed::Scheme)?;
    let rest = rest.trim_start();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Ok(Presented::Bearer(token(rest)?.to_string()));
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(Malformed::Scheme);
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest)
        .map_err(|_| Malformed::BasicEncoding)?;
    let decoded = String::from_utf8(decoded).map_err(|_| Malformed::BasicEncoding)?;
    let (user, password) = decoded.split_once(':').ok_or(Malformed::BasicEncoding)?;
    Ok(Presented::Basic {
        user: user.to_string(),
        token: token(password)?.to_string(),
    })
}

/// A token as tokens are made: visible ASCII, no spaces.
fn token(s: &str) -> Result<&str, Malformed> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Malformed::Token);
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn with(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn basic(user: &str, password: &str) -> String {
        let pair = format!("{user}:{password}");
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    }

    #[test]
    fn bearer_and_basic_are_read() {
        assert_eq!(presented(&with(&[])), Ok(Presented::None));
        assert_eq!(
            presented(&with(&["Bearer mf_abc"])),
            Ok(Presented::Bearer("mf_abc".into()))
        );
        assert_eq!(
            presented(&with(&["bearer   mf_abc "])),
            Ok(Presented::Bearer("mf_abc".into()))
        );
        assert_eq!(
            presented(&with(&[&basic("ci", "mf_a:b")])),
            Ok(Presented::Basic {
                user: "ci".into(),
                token: "mf_a:b".into()
            })
        );
    }

    #[test]
    fn hostile_headers_are_malformed() {
        assert_eq!(
            presented(&with(&["Bearer a", "Bearer b"])),
            Err(Malformed::Repeated)
        );
        let long = format!("Bearer {}", "a".repeat(MAX_HEADER_BYTES));
        assert_eq!(presented(&with(&[&long])), Err(Malformed::TooLong));
        assert_eq!(presented(&with(&["Digest x=y"])), Err(Malformed::Scheme));
        assert_eq!(presented(&with(&["Bearer"])), Err(Malformed::Scheme));
        assert_eq!(
            presented(&with(&["Basic !!!"])),
            Err(Malformed::BasicEncoding)
        );
        let no_colon = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("justuser")
        );
        assert_eq!(
            presented(&with(&[&no_colon])),
            Err(Malformed::BasicEncoding)
        );
        assert_eq!(presented(&with(&[&basic("ci", "")])), Err(Malformed::Token));
        assert_eq!(
            presented(&with(&[&basic("ci", "a b")])),
            Err(Malformed::Token)
        );
        let mut h = HeaderMap::new();
        h.insert(
            AUTHORIZATION,
            HeaderValue::from_bytes(b"Bearer \xff\xfe").unwrap(),
        );
        assert_eq!(presented(&h), Err(Malformed::Token));
    }

    #[test]
    fn debug_never_shows_the_token() {
        let p = Presented::Basic {
            user: "ci".into(),
            token: "mf_secret".into(),
        };
        assert!(!format!("{p:?}").contains("secret"));
        assert!(!format!("{:?}", Presented::Bearer("mf_secret".into())).contains("secret"));
    }
}
