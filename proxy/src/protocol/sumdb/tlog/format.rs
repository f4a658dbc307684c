//! The text formats of the log (golang.org/x/mod/sumdb/tlog's note.go): the signed tree head
//! `go.sum database tree\nN\nhash\n` and a lookup's record `id\ntext\n\n`.

use super::{HASH_SIZE, Hash, TlogError};
use crate::protocol::sumdb::note::STD_BASE64;
use base64::Engine as _;

/// A tree head: the number of records and the root hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tree {
    pub n: u64,
    pub hash: Hash,
}

const TREE_PREFIX: &str = "go.sum database tree\n";

/// Longest tree text accepted (as in Go).
const MAX_TREE_TEXT: usize = 1_000_000;

/// The text a database signs for `tree`.
pub fn format_tree(tree: Tree) -> String {
    format!("{TREE_PREFIX}{}\n{}\n", tree.n, tree.hash)
}

/// Parses a tree head (Go's `tlog.ParseTree`); lines after the hash are ignored, for forward
/// compatibility.
pub fn parse_tree(text: &str) -> Result<Tree, TlogError> {
    let malformed = TlogError::Malformed("malformed tree note");
    if !text.starts_with(TREE_PREFIX)
        || text.bytes().filter(|&b| b == b'\n').count() < 3
        || text.len() > MAX_TREE_TEXT
    {
        return Err(malformed);
    }
    let mut lines = text.splitn(4, '\n');
    lines.next();
    let (Some(n), Some(hash)) = (lines.next(), lines.next()) else {
        return Err(malformed);
    };
    // Decimal, without sign or leading zeros (Go compares with FormatInt).
    let canonical =
        !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) && (n == "0" || !n.starts_with('0'));
    let n: u64 = match n.parse() {
        Ok(v) if canonical && v <= i64::MAX as u64 => v,
        _ => return Err(malformed),
    };
    let hash = STD_BASE64.decode(hash).map_err(|_| malformed.clone())?;
    if hash.len() != HASH_SIZE {
        return Err(malformed);
    }
    Ok(Tree {
        n,
        hash: Hash::from_slice(&hash).ok_or(malformed)?,
    })
}

/// Valid record text: UTF-8 without control characters but newline, no blank line, ending in
/// a newline.
fn is_valid_record_text(text: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(text) else {
        return false;
    };
    text.ends_with('\n') && !text.contains("\n\n") && !text.chars().any(|c| c < ' ' && c != '\n')
}

/// A record as a lookup serves it: the id, the text, a blank line.
pub fn format_record(id: u64, text: &[u8]) -> Result<Vec<u8>, TlogError> {
    if !is_valid_record_text(text) {
        return Err(TlogError::Malformed("malformed record data"));
    }
    let mut msg = format!("{id}\n").into_bytes();
    msg.extend_from_slice(text);
    msg.push(b'\n');
    Ok(msg)
}

/// Splits a lookup answer into the record id, the record text and what follows the blank line
/// (the signed tree note), as Go's `tlog.ParseRecord` does.
pub fn parse_record(msg: &[u8]) -> Result<(u64, &[u8], &[u8]), TlogError> {
    let malformed = TlogError::Malformed("malformed record data");
    let i = msg
        .iter()
        .position(|&b| b == b'\n')
        .ok_or(malformed.clone())?;
    let id = std::str::from_utf8(&msg[..i]).map_err(|_| malformed.clone())?;
    // strconv.ParseInt: an optional sign, decimal digits; negative ids are not records.
    let digits = id.strip_prefix('+').unwrap_or(id);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed);
    }
    let id: u64 = match digits.parse() {
        Ok(v) if v <= i64::MAX as u64 => v,
        _ => return Err(malformed),
    };
    let msg = &msg[i + 1..];
    let j = msg
        .windows(2)
        .position(|w| w == b"\n\n")
        .ok_or(malformed.clone())?;
    let (text, rest) = (&msg[..j + 1], &msg[j + 2..]);
    if !is_valid_record_text(text) {
        return Err(malformed);
    }
    Ok((id, text, rest))
}

#[cfg(test)]
mod tests {
    //! Vectors from golang.org/x/mod/sumdb/tlog's note_test.go.
    use super::super::record_hash;
    use super::*;

    const GOLDEN: &str =
        "go.sum database tree\n123456789012\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\n";

    #[test]
    fn tree_heads_format_and_parse() {
        let tree = Tree {
            n: 123456789012,
            hash: record_hash(b"hello world"),
        };
        assert_eq!(format_tree(tree), GOLDEN);
        assert_eq!(parse_tree(GOLDEN).unwrap(), tree);
        for bad in [
            format!("not-{GOLDEN}"),
            "go.sum database tree\n0xabcdef\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\n".into(),
            "go.sum database tree\n123456789012\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBTOOBIG=\n"
                .into(),
            "go.sum database tree\n0123\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\n".into(),
            "go.sum database tree\n+123\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\n".into(),
            "go.sum database tree\n-1\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\n".into(),
            "go.sum database tree\n123\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=".into(),
        ] {
            assert!(parse_tree(&bad).is_err(), "{bad:?}");
        }
        for good in [
            format!("{GOLDEN}JOE"),
            format!("{GOLDEN}JOE\n"),
            format!("{GOLDEN}{}", "JOE\n".repeat(1000)),
        ] {
            assert_eq!(parse_tree(&good).unwrap(), tree);
        }
        assert!(parse_tree(&format!("{GOLDEN}{}", "J".repeat(MAX_TREE_TEXT))).is_err());
    }

    #[test]
    fn records_format_and_parse() {
        assert_eq!(
            format_record(123456789012, b"hello, world\n").unwrap(),
            b"123456789012\nhello, world\n\n"
        );
        for bad in [
            &b""[..],
            b"hello\nworld",
            b"hello\n\nworld\n",
            b"hello\x01world\n",
        ] {
            assert!(format_record(1, bad).is_err(), "{bad:?}");
        }

        let (id, text, rest) =
            parse_record(b"123456789012\nhello, world\n\njunk on end\x01\xff").unwrap();
        assert_eq!(
            (id, text, rest),
            (
                123456789012,
                &b"hello, world\n"[..],
                &b"junk on end\x01\xff"[..]
            )
        );
        let (_, _, rest) = parse_record(b"123456789012\nhello, world\n\n").unwrap();
        assert!(rest.is_empty());
        for bad in [
            &b"not-123456789012\nhello, world\n\n"[..],
            b"123\nhello\x01world\n\n",
            b"123\nhello\xffworld\n\n",
            b"123\nhello world\n",
            b"0x123\nhello world\n\n",
            b"-1\nhello world\n\n",
            b"\nhello world\n\n",
        ] {
            assert!(parse_record(bad).is_err(), "{bad:?}");
        }
    }
}
