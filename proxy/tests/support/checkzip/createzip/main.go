// Command createzip prints golang.org/x/mod's answers about creating module zips from Git
// repositories, for proxy/tests/zip_create_reference.rs.
//
// Each line of standard input is a JSON case; one JSON answer line is printed for each. Ops:
//
//   - create: zip.CreateFromVCS(repo, rev, subdir) into the file out, which is `git archive`,
//     then zip.Create with the repository root's LICENSE added for a module in a subdirectory
//     without one: what the go command's codeRepo.Zip does. The answer has the h1: hash
//     (dirhash.HashZip), the entries in order, or the error and, for invalid files, each
//     file's path and reason.
//   - check: zip.CheckZip then dirhash.HashZip of the zip file zip (what `go mod download`
//     does with a zip it fetched).
//   - archive: the files x/mod's CreateFromVCS hands to Create (the same `git archive`, the
//     same filtering), with their kind, size and content: modfleet's side builds its zip from
//     exactly this input.
//   - gomod: the go version x/mod/zip takes from a root go.mod (parseGoVers: the go directive
//     of modfile.ParseLax, "" when it fails), and whether it selects the Go 1.24 vendor rules.
package main

import (
	"archive/zip"
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"go/version"
	"io"
	"os"
	"os/exec"
	"strings"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb/dirhash"
	modzip "golang.org/x/mod/zip"
)

type Case struct {
	Op      string `json:"op"`
	Repo    string `json:"repo"`
	Rev     string `json:"rev"`
	Subdir  string `json:"subdir"`
	Module  string `json:"module"`
	Version string `json:"version"`
	Out     string `json:"out"`
	Zip     string `json:"zip"`
	Data    []byte `json:"data"`
}

type Invalid struct {
	Path []byte `json:"path"`
	Err  string `json:"err"`
}

type Entry struct {
	Name []byte `json:"name"`
	Kind string `json:"kind"`
	Size int64  `json:"size"`
	Data []byte `json:"data"`
}

type Answer struct {
	Entries []Entry   `json:"entries"`
	H1      string    `json:"h1"`
	Names   [][]byte  `json:"names"`
	Err     string    `json:"err"`
	Invalid []Invalid `json:"invalid"`
	Go      string    `json:"go"`
	Go124   bool      `json:"go124"`
}

func create(c Case) (a Answer) {
	f, err := os.Create(c.Out)
	if err != nil {
		fmt.Fprintf(os.Stderr, "createzip: %v\n", err)
		os.Exit(2)
	}
	m := module.Version{Path: c.Module, Version: c.Version}
	err = modzip.CreateFromVCS(f, m, c.Repo, c.Rev, c.Subdir)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		a.Err = err.Error()
		var list modzip.FileErrorList
		if errors.As(err, &list) {
			for _, fe := range list {
				a.Invalid = append(a.Invalid, Invalid{Path: []byte(fe.Path), Err: fe.Err.Error()})
			}
		}
		return a
	}
	a.H1, err = dirhash.HashZip(c.Out, dirhash.Hash1)
	if err != nil {
		a.Err = "hashing: " + err.Error()
		return a
	}
	z, err := zip.OpenReader(c.Out)
	if err != nil {
		a.Err = "reading: " + err.Error()
		return a
	}
	defer z.Close()
	prefix := c.Module + "@" + c.Version + "/"
	for _, zf := range z.File {
		a.Names = append(a.Names, []byte(strings.TrimPrefix(zf.Name, prefix)))
	}
	return a
}

func check(c Case) (a Answer) {
	m := module.Version{Path: c.Module, Version: c.Version}
	if _, err := modzip.CheckZip(m, c.Zip); err != nil {
		a.Err = err.Error()
		return a
	}
	h1, err := dirhash.HashZip(c.Zip, dirhash.Hash1)
	if err != nil {
		a.Err = err.Error()
	}
	a.H1 = h1
	return a
}

// gomod is zip.go's parseGoVers and the comparison isVendoredPackage makes.
func gomod(c Case) (a Answer) {
	f, err := modfile.ParseLax("go.mod", c.Data, nil)
	if err == nil && f.Go != nil {
		a.Go = f.Go.Version
	}
	vers := version.Lang("go" + a.Go)
	a.Go124 = version.Compare(vers, "go1.24") >= 0
	return a
}

// archive is filesInGitRepo (x/mod/zip/zip.go) up to the root LICENSE, which the test adds.
func archive(c Case) (a Answer) {
	cmd := exec.Command("git", "-c", "core.autocrlf=input", "-c", "core.eol=lf", "archive", "--format=zip", c.Rev)
	if c.Subdir != "" {
		cmd.Args = append(cmd.Args, c.Subdir)
	}
	cmd.Dir = c.Repo
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		a.Err = fmt.Sprintf("git archive: %v: %s", err, stderr.String())
		return a
	}
	z, err := zip.NewReader(bytes.NewReader(out), int64(len(out)))
	if err != nil {
		a.Err = err.Error()
		return a
	}
	for _, zf := range z.File {
		if !strings.HasPrefix(zf.Name, c.Subdir) || strings.HasSuffix(zf.Name, "/") {
			continue
		}
		n := strings.TrimPrefix(strings.TrimPrefix(zf.Name, c.Subdir), "/")
		if n == "" {
			continue
		}
		mode := zf.FileInfo().Mode()
		e := Entry{Name: []byte(n), Size: int64(zf.UncompressedSize64), Kind: "file"}
		switch {
		case mode&os.ModeType == os.ModeSymlink:
			e.Kind = "symlink"
		case !mode.IsRegular():
			e.Kind = "irregular"
		case mode&0o111 != 0:
			e.Kind = "exec"
		}
		r, err := zf.Open()
		if err == nil {
			e.Data, err = io.ReadAll(r)
			r.Close()
		}
		if err != nil {
			a.Err = err.Error()
			return a
		}
		a.Entries = append(a.Entries, e)
	}
	return a
}

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 64<<10), 64<<20)
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	enc := json.NewEncoder(out)
	for in.Scan() {
		var c Case
		if err := json.Unmarshal(in.Bytes(), &c); err != nil {
			fmt.Fprintf(os.Stderr, "createzip: bad case: %v\n", err)
			os.Exit(2)
		}
		var a Answer
		switch c.Op {
		case "create":
			a = create(c)
		case "archive":
			a = archive(c)
		case "check":
			a = check(c)
		case "gomod":
			a = gomod(c)
		default:
			fmt.Fprintf(os.Stderr, "createzip: unknown op %q\n", c.Op)
			os.Exit(2)
		}
		if err := enc.Encode(a); err != nil {
			fmt.Fprintf(os.Stderr, "createzip: %v\n", err)
			os.Exit(2)
		}
	}
	if err := in.Err(); err != nil {
		fmt.Fprintf(os.Stderr, "createzip: reading input: %v\n", err)
		os.Exit(2)
	}
}
