//! Go's Unicode rules where module paths and file names depend on them: `unicode.SimpleFold`
//! (with `strings.EqualFold` and golang.org/x/mod/zip's `strToFold` built on it),
//! `unicode.IsLetter` and `unicode.IsPrint`.
//!
//! Rust's `to_lowercase()` and `is_alphabetic()` are different functions (full case mapping,
//! the Alphabetic property, and a newer Unicode version), so using them would accept zips the go
//! command rejects: `s.go` and `ſ.go` fold together in Go, `Ⅻ` is alphabetic but not a letter.
//! The tables are generated from the Go toolchain's `unicode` package
//! (`tests/support/checkzip/unicodetables`); `tests/zip_reference.rs` fails when they differ.

mod tables;

pub use tables::UNICODE_VERSION;

/// Go's `unicode.SimpleFold`: the next rune, upwards and wrapping around, in `c`'s case-folding
/// orbit (`k` → `K` (Kelvin sign) → `K` → `k`); `c` itself when it folds to nothing else.
pub fn simple_fold(c: char) -> char {
    let r = u32::from(c);
    match tables::SIMPLE_FOLD.binary_search_by_key(&r, |&(from, _)| from) {
        Ok(i) => char::from_u32(tables::SIMPLE_FOLD[i].1).expect("table holds runes"),
        Err(_) => c,
    }
}

/// The rune x/mod/zip's `strToFold` puts in place of `c`: the smallest rune of `c`'s orbit,
/// except that ASCII capitals become lowercase. Two strings are `strings.EqualFold` exactly when
/// their runes fold alike.
pub fn fold(c: char) -> char {
    if c.is_ascii() {
        return c.to_ascii_lowercase();
    }
    // SimpleFold climbs the orbit and wraps once to its smallest member.
    let mut r = c;
    loop {
        let next = simple_fold(r);
        if next <= r {
            r = next;
            break;
        }
        r = next;
    }
    r.to_ascii_lowercase()
}

/// Whether `s` needs [`fold`] at all (x/mod's fast path: ASCII without capitals).
pub fn is_folded_ascii(s: &str) -> bool {
    !s.bytes().any(|b| !b.is_ascii() || b.is_ascii_uppercase())
}

/// Go's `strings.EqualFold`: equal under simple Unicode case folding.
pub fn equal_fold(s: &str, t: &str) -> bool {
    let mut t_chars = t.chars();
    for sr in s.chars() {
        let Some(tr) = t_chars.next() else {
            return false;
        };
        if sr == tr {
            continue;
        }
        let (lo, hi) = if sr < tr { (sr, tr) } else { (tr, sr) };
        if hi.is_ascii() {
            if lo.is_ascii_uppercase() && hi == lo.to_ascii_lowercase() {
                continue;
            }
            return false;
        }
        // Walk lo's orbit upwards until it reaches hi or wraps.
        let mut r = simple_fold(lo);
        while r != lo && r < hi {
            r = simple_fold(r);
        }
        if r != hi {
            return false;
        }
    }
    t_chars.next().is_none()
}

/// Go's `unicode.IsLetter` (general category L).
pub fn is_letter(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_alphabetic();
    }
    in_ranges(&tables::LETTERS, c)
}

/// Go's `unicode.IsPrint`: letters, marks, numbers, punctuation, symbols and the ASCII space
/// (no other spaces, no control or format characters such as U+FEFF).
pub fn is_print(c: char) -> bool {
    if c.is_ascii() {
        return c == ' ' || c.is_ascii_graphic();
    }
    in_ranges(&tables::PRINTABLE, c)
}

/// Whether `c` is in one of the sorted inclusive `ranges`.
fn in_ranges(ranges: &[(u32, u32)], c: char) -> bool {
    let r = u32::from(c);
    let i = ranges.partition_point(|&(lo, _)| lo <= r);
    i > 0 && r <= ranges[i - 1].1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fold_str(s: &str) -> String {
        s.chars().map(fold).collect()
    }

    #[test]
    fn long_s_folds_with_s() {
        assert_eq!(simple_fold('S'), 's');
        assert_eq!(simple_fold('s'), 'ſ');
        assert_eq!(simple_fold('ſ'), 'S');
        for c in ['s', 'S', 'ſ'] {
            assert_eq!(fold(c), 's', "{c}");
        }
        assert!(equal_fold("s.go", "ſ.go"));
        assert!(equal_fold("ſ.go", "S.GO"));
        // Rust's lowercasing keeps them apart: the hole this module closes.
        assert_ne!("ſ".to_lowercase(), "s".to_lowercase());
    }

    #[test]
    fn kelvin_sign_folds_with_k() {
        let kelvin = '\u{212A}';
        assert_eq!(simple_fold('K'), 'k');
        assert_eq!(simple_fold('k'), kelvin);
        assert_eq!(simple_fold(kelvin), 'K');
        for c in ['k', 'K', kelvin] {
            assert_eq!(fold(c), 'k', "{c}");
        }
        assert!(equal_fold("K.go", "k.go"));
        assert!(equal_fold("\u{212A}", "K"));
    }

    #[test]
    fn sigma_forms_fold_together() {
        // Σ (U+03A3), σ (U+03C3), ς (U+03C2): one orbit, smallest Σ.
        for c in ['Σ', 'σ', 'ς'] {
            assert_eq!(fold(c), 'Σ', "{c}");
        }
        assert_eq!(simple_fold('Σ'), 'ς');
        assert_eq!(simple_fold('ς'), 'σ');
        assert_eq!(simple_fold('σ'), 'Σ');
        assert!(equal_fold("ς", "Σ") && equal_fold("σ", "ς"));
        assert_eq!(fold_str("ΣΑΣ"), fold_str("σας"));
    }

    #[test]
    fn dotted_capital_i_and_title_case() {
        // Simple folding leaves İ (U+0130) and ı (U+0131) alone, unlike full folding.
        assert_eq!(simple_fold('İ'), 'İ');
        assert_eq!(simple_fold('ı'), 'ı');
        assert!(!equal_fold("İ", "i") && !equal_fold("ı", "I"));
        // Title case ǅ joins Ǆ and ǆ.
        assert!(equal_fold("ǅ", "ǆ") && equal_fold("Ǆ", "ǅ"));
        assert_eq!(fold('ǅ'), 'Ǆ');
    }

    #[test]
    fn fold_agrees_with_equal_fold_on_every_orbit() {
        // For every rune with an orbit: all members fold alike and are EqualFold; a rune from
        // the next orbit is not.
        for &(from, _) in tables::SIMPLE_FOLD.iter() {
            let c = char::from_u32(from).unwrap();
            let mut r = simple_fold(c);
            let mut steps = 0;
            while r != c {
                assert_eq!(fold(r), fold(c), "{c:?} {r:?}");
                assert!(equal_fold(&c.to_string(), &r.to_string()), "{c:?} {r:?}");
                r = simple_fold(r);
                steps += 1;
                assert!(steps < 8, "orbit of {c:?} does not close");
            }
        }
        assert!(!equal_fold("a", "b") && !equal_fold("ab", "a") && !equal_fold("a", "ab"));
    }

    #[test]
    fn letters_are_go_letters() {
        for c in ['a', 'Z', 'é', 'ß', 'Ω', '日', 'ǅ', 'ʰ'] {
            assert!(is_letter(c), "{c}");
        }
        // Alphabetic in Rust, not letters in Go: numerals, circled letters, combining marks.
        for c in ['Ⅻ', 'Ⓐ', '\u{345}', '\u{301}', '1', '٣', '€', '✓', ' ', '_'] {
            assert!(!is_letter(c), "{c:?}");
        }
        assert!('Ⅻ'.is_alphabetic() && 'Ⓐ'.is_alphabetic());
        // Todhri (Unicode 16) is newer than Go's tables.
        assert_eq!(UNICODE_VERSION, "15.0.0");
        assert!(!is_letter('\u{105C0}'));
    }

    #[test]
    fn printable_is_go_printable() {
        for c in [' ', 'a', '~', 'é', '日', '€', '\u{FFFD}', '\u{301}', 'Ⅻ'] {
            assert!(is_print(c), "{c:?}");
        }
        for c in [
            '\t', '\n', '\u{7f}', '\u{85}', '\u{A0}', '\u{FEFF}', '\u{200B}', '\u{2028}',
            '\u{3000}', '\u{E000}',
        ] {
            assert!(!is_print(c), "{c:?}");
        }
    }
}
