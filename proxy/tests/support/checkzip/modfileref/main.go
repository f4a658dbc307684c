// Command modfileref prints golang.org/x/mod/modfile's reading of go.mod files the go command
// fetched from a repository, for proxy/tests/modfile_lax_reference.rs: modfile.ModulePath
// (how the go command's codeRepo.findDir tells whose go.mod it is) and the retract intervals
// modfile.ParseLax keeps (how codeRepo and @latest skip retracted versions).
//
// Each line of standard input is a JSON case {"data": base64 bytes}; one JSON answer line is
// printed for each: {"module": ..., "parsed": ..., "retract": [[low, high], ...]}.
package main

import (
	"bufio"
	"encoding/json"
	"os"

	"golang.org/x/mod/modfile"
)

type Case struct {
	Data []byte `json:"data"`
}

type Answer struct {
	Module  string      `json:"module"`
	Parsed  bool        `json:"parsed"`
	Retract [][2]string `json:"retract"`
}

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 64<<20)
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	enc := json.NewEncoder(out)
	for in.Scan() {
		var c Case
		if err := json.Unmarshal(in.Bytes(), &c); err != nil {
			panic(err)
		}
		a := Answer{Module: modfile.ModulePath(c.Data), Retract: [][2]string{}}
		if f, err := modfile.ParseLax("go.mod", c.Data, nil); err == nil {
			a.Parsed = true
			for _, r := range f.Retract {
				a.Retract = append(a.Retract, [2]string{r.Low, r.High})
			}
		}
		if err := enc.Encode(a); err != nil {
			panic(err)
		}
	}
	if err := in.Err(); err != nil {
		panic(err)
	}
}
