// Command sumdbtest serves a checksum database for modfleet's tests (tests/sumdb_reference.rs):
// golang.org/x/mod/sumdb's reference server (NewServer over NewTestServer) on loopback, with the
// records the test gives and a signer key the test gives or a fresh one.
//
// Usage: sumdbtest -records FILE [-signer PRIVATE+KEY+...] [-name NAME]
//
// FILE has one module version per line, "path version h1:zip h1:gomod"; they are added to the
// log in order at start, so the tree is fixed before the first request. Unknown modules are 404.
// The first three lines of output are "signer KEY", "verifier KEY" and "addr HOST:PORT". The
// server exits when its standard input is closed, so a dying test leaves nothing behind.
package main

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strings"

	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb"
	"golang.org/x/mod/sumdb/note"
)

func main() {
	records := flag.String("records", "", "file of `path version h1:zip h1:gomod` lines")
	signer := flag.String("signer", "", "signer key; default: a fresh one")
	name := flag.String("name", "sum.test.example", "database name for a fresh key")
	flag.Parse()

	skey, vkey := *signer, ""
	if skey == "" {
		var err error
		skey, vkey, err = note.GenerateKey(rand.Reader, *name)
		if err != nil {
			log.Fatal(err)
		}
	} else {
		s, err := note.NewSigner(skey)
		if err != nil {
			log.Fatalf("-signer: %v", err)
		}
		vkey = verifierOf(skey, s)
	}

	data, err := os.ReadFile(*records)
	if err != nil {
		log.Fatal(err)
	}
	gosum := make(map[string][]byte)
	var order []module.Version
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) != 4 {
			log.Fatalf("bad record line %q: want path version h1:zip h1:gomod", line)
		}
		m := module.Version{Path: f[0], Version: f[1]}
		gosum[m.String()] = []byte(fmt.Sprintf("%s %s %s\n%s %s/go.mod %s\n", f[0], f[1], f[2], f[0], f[1], f[3]))
		order = append(order, m)
	}
	ts := sumdb.NewTestServer(skey, func(path, vers string) ([]byte, error) {
		if r, ok := gosum[path+"@"+vers]; ok {
			return r, nil
		}
		return nil, os.ErrNotExist
	})
	for _, m := range order {
		if _, err := ts.Lookup(context.Background(), m); err != nil {
			log.Fatalf("adding %v: %v", m, err)
		}
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	srv := sumdb.NewServer(ts)
	mux := http.NewServeMux()
	for _, p := range sumdb.ServerPaths {
		mux.Handle(p, srv)
	}
	fmt.Printf("signer %s\nverifier %s\naddr %s\n", skey, vkey, ln.Addr())
	os.Stdout.Sync()
	go func() {
		io.Copy(io.Discard, bufio.NewReader(os.Stdin))
		os.Exit(0)
	}()
	log.Fatal(http.Serve(ln, mux))
}

// verifierOf derives the verifier key of a signer key PRIVATE+KEY+name+hash+base64(1 || seed).
func verifierOf(skey string, s note.Signer) string {
	parts := strings.SplitN(skey, "+", 5)
	raw, err := base64.StdEncoding.DecodeString(parts[len(parts)-1])
	if err != nil || len(raw) != 1+ed25519.SeedSize {
		log.Fatalf("-signer: malformed key")
	}
	pub := ed25519.NewKeyFromSeed(raw[1:]).Public().(ed25519.PublicKey)
	vkey, err := note.NewEd25519VerifierKey(s.Name(), pub)
	if err != nil {
		log.Fatal(err)
	}
	return vkey
}
