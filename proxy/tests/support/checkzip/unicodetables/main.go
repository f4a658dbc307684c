// Command unicodetables prints the Rust source of the Unicode tables that modfleet's module
// zip check and zip creation (proxy/src/protocol/unicode.rs) need to decide exactly as
// golang.org/x/mod does: unicode.SimpleFold (for strings.EqualFold and x/mod/zip's strToFold),
// unicode.IsLetter (for module.CheckFilePath) and unicode.IsPrint (x/mod/modfile's lexer,
// which decides whether a go.mod parses and so which vendor rules a zip follows), taken from
// this Go toolchain's unicode package.
//
//	go run ./unicodetables > ../../../src/protocol/unicode/tables.rs
//
// proxy/tests/zip_reference.rs runs it and fails when the committed file differs.
package main

import (
	"bufio"
	"fmt"
	"os"
	"unicode"
)

type pair struct{ a, b rune }

func main() {
	var folds []pair
	for r := rune(0); r <= unicode.MaxRune; r++ {
		if f := unicode.SimpleFold(r); f != r {
			folds = append(folds, pair{r, f})
		}
	}
	letters := ranges(unicode.IsLetter)
	printable := ranges(unicode.IsPrint)

	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	fmt.Fprintf(w, `//! Generated from Go's unicode package (Unicode %s) by
//! proxy/tests/support/checkzip/unicodetables. Do not edit: regenerate with
//! `+"`cd proxy/tests/support/checkzip && go run ./unicodetables > ../../../src/protocol/unicode/tables.rs`"+`.
//! tests/zip_reference.rs fails when this file differs from what the local Go toolchain prints.

/// The Unicode version of the Go toolchain the tables come from.
pub const UNICODE_VERSION: &str = %q;
`, unicode.Version, unicode.Version)
	table(w, "`unicode.SimpleFold(r)` for every rune it does not map to itself, as (r, fold), sorted.",
		"SIMPLE_FOLD", folds)
	table(w, "Non-ASCII runes for which `unicode.IsLetter` is true, as inclusive ranges, sorted.",
		"LETTERS", letters)
	table(w, "Non-ASCII runes for which `unicode.IsPrint` is true, as inclusive ranges, sorted.",
		"PRINTABLE", printable)
}

// ranges lists the non-ASCII runes for which is is true as inclusive ranges.
func ranges(is func(rune) bool) []pair {
	var out []pair
	for r := rune(0x80); r <= unicode.MaxRune; r++ {
		if !is(r) {
			continue
		}
		if n := len(out); n > 0 && out[n-1].b == r-1 {
			out[n-1].b = r
		} else {
			out = append(out, pair{r, r})
		}
	}
	return out
}

func table(w *bufio.Writer, doc, name string, pairs []pair) {
	fmt.Fprintf(w, "\n/// %s\n#[rustfmt::skip]\npub static %s: [(u32, u32); %d] = [\n", doc, name, len(pairs))
	for i, p := range pairs {
		if i%5 == 0 {
			w.WriteString("   ")
		}
		fmt.Fprintf(w, " (0x%04X, 0x%04X),", p.a, p.b)
		if i%5 == 4 || i == len(pairs)-1 {
			w.WriteString("\n")
		}
	}
	w.WriteString("];\n")
}
