//! The end of a certificate's validity (`notAfter`), for the expiry gauge that alerts are
//! written against. Read straight from the DER (RFC 5280, 4.1): the few fields before
//! `validity` are skipped, nothing else is interpreted, so no X.509 crate is needed. The
//! certificate already passed rustls' parsing when this runs; anything unexpected is `None`.

/// `notAfter` of a DER certificate, in seconds since the Unix epoch.
pub fn not_after(cert_der: &[u8]) -> Option<i64> {
    let (tag, certificate, _) = tlv(cert_der)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, mut tbs, _) = tlv(certificate)?;
    if tag != SEQUENCE {
        return None;
    }
    // [0] EXPLICIT version, optional.
    if tbs.first() == Some(&0xa0) {
        tbs = tlv(tbs)?.2;
    }
    // serialNumber, signature, issuer.
    for want in [INTEGER, SEQUENCE, SEQUENCE] {
        let (tag, _, rest) = tlv(tbs)?;
        if tag != want {
            return None;
        }
        tbs = rest;
    }
    let (tag, validity, _) = tlv(tbs)?;
    if tag != SEQUENCE {
        return None;
    }
    let (_, _, rest) = tlv(validity)?; // notBefore
    let (tag, time, _) = tlv(rest)?;
    time_of(tag, time)
}

const INTEGER: u8 = 0x02;
const SEQUENCE: u8 = 0x30;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;

/// One DER element: its tag, its content and what follows it.
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let (bytes, after) = rest.split_at(count);
        rest = after;
        bytes.iter().fold(0usize, |n, &b| (n << 8) | usize::from(b))
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// UTCTime `YYMMDDHHMMSSZ` (years 1950-2049) or GeneralizedTime `YYYYMMDDHHMMSSZ`, the only
/// forms RFC 5280 allows.
fn time_of(tag: u8, text: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(text).ok()?.strip_suffix('Z')?;
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (year, rest) = match (tag, text.len()) {
        (UTC_TIME, 12) => {
            let yy: i64 = text[..2].parse().ok()?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, &text[2..])
        }
        (GENERALIZED_TIME, 14) => (text[..4].parse().ok()?, &text[4..]),
        _ => return None,
    };
    let field = |i: usize| rest[i..i + 2].parse::<i64>().ok();
    let (month, day) = (field(0)?, field(2)?);
    let (hour, minute, second) = (field(4)?, field(6)?, field(8)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    if second > 60 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A DER element with a definite length.
    fn der(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        if content.len() < 0x80 {
            out.push(content.len() as u8);
        } else {
            let len = (content.len() as u32).to_be_bytes();
            let skip = len.iter().take_while(|&&b| b == 0).count();
            out.push(0x80 | (4 - skip) as u8);
            out.extend_from_slice(&len[skip..]);
        }
        out.extend_from_slice(content);
        out
    }

    fn cert(version: bool, not_after: (u8, &str)) -> Vec<u8> {
        let mut tbs = Vec::new();
        if version {
            tbs.extend(der(0xa0, &der(INTEGER, &[2])));
        }
        tbs.extend(der(INTEGER, &[0x01, 0x02, 0x03]));
        tbs.extend(der(SEQUENCE, &der(0x06, &[0x2a; 8])));
        tbs.extend(der(SEQUENCE, &[0x31; 200])); // a long issuer: the long length form
        let mut validity = der(UTC_TIME, b"260101000000Z");
        validity.extend(der(not_after.0, not_after.1.as_bytes()));
        tbs.extend(der(SEQUENCE, &validity));
        tbs.extend(der(SEQUENCE, b"subject and the rest"));
        let mut c = der(SEQUENCE, &tbs);
        c.extend(der(SEQUENCE, b"signature algorithm"));
        der(SEQUENCE, &c)
    }

    #[test]
    fn not_after_in_both_time_forms() {
        // 2026-12-02T10:26:36Z and 2050-01-01T00:00:00Z (`date -u -d ... +%s`).
        assert_eq!(
            not_after(&cert(true, (UTC_TIME, "261202102636Z"))),
            Some(1_796_207_196)
        );
        assert_eq!(
            not_after(&cert(false, (GENERALIZED_TIME, "20500101000000Z"))),
            Some(2_524_608_000)
        );
        assert_eq!(
            not_after(&cert(true, (UTC_TIME, "700101000000Z"))),
            Some(0),
            "YY of 50 and more are 19YY"
        );
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }

    #[test]
    fn anything_unexpected_is_none() {
        assert_eq!(not_after(b""), None);
        assert_eq!(not_after(&cert(true, (UTC_TIME, "2612021026Z"))), None);
        assert_eq!(not_after(&cert(true, (UTC_TIME, "261302102636Z"))), None);
        assert_eq!(not_after(&cert(true, (0x04, "261202102636Z"))), None);
        let mut cut = cert(true, (UTC_TIME, "261202102636Z"));
        cut.truncate(40);
        assert_eq!(not_after(&cut), None);
        // A length that claims more than there is.
        assert_eq!(not_after(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff, 0x30]), None);
    }
}
