// Command checkzip prints the go command's verdict on module zips.
//
// Each line of standard input is "<module path>\t<version>\t<zip file>". For each, one
// line is printed: "ok" when the go command would accept the zip, else "error\t<reason>".
// Accepting means what `go mod download` does with a zip it fetched: golang.org/x/mod/zip's
// CheckZip (names, collisions, go.mod placement, size limits) must succeed, and so must
// dirhash.HashZip, which opens and reads every entry (sizes, CRCs, compression methods).
package main

import (
	"bufio"
	"fmt"
	"os"
	"strings"

	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb/dirhash"
	modzip "golang.org/x/mod/zip"
)

func verdict(mod module.Version, zipFile string) error {
	if _, err := modzip.CheckZip(mod, zipFile); err != nil {
		return err
	}
	_, err := dirhash.HashZip(zipFile, dirhash.Hash1)
	return err
}

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 64<<10), 1<<20)
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	for in.Scan() {
		fields := strings.Split(in.Text(), "\t")
		if len(fields) != 3 {
			fmt.Fprintf(os.Stderr, "checkzip: want <module>\\t<version>\\t<zip>, got %q\n", in.Text())
			os.Exit(2)
		}
		err := verdict(module.Version{Path: fields[0], Version: fields[1]}, fields[2])
		if err != nil {
			reason := strings.ReplaceAll(err.Error(), "\n", "; ")
			fmt.Fprintf(out, "error\t%s\n", reason)
		} else {
			fmt.Fprintln(out, "ok")
		}
	}
	if err := in.Err(); err != nil {
		fmt.Fprintf(os.Stderr, "checkzip: reading input: %v\n", err)
		os.Exit(2)
	}
}
