// Command pseudoref prints golang.org/x/mod's answers about pseudo-versions and semantic
// versions, for proxy/tests/pseudo_reference.rs.
//
// Each line of standard input is a JSON case; one JSON answer line is printed for each. Ops:
// pseudo (module.PseudoVersion), zero (ZeroPseudoVersion), iszero, is (IsPseudoVersion),
// base, rev, time (PseudoVersionBase/Rev/Time), pathmajor (PathMajorPrefix), semver (every
// semver function of v, and Compare/Max of v and w), and validate: the part of the go
// command's codeRepo.validatePseudoVersion (cmd/go/internal/modfetch/coderepo.go) that needs
// no repository history, copied here line for line since cmd/go's packages are internal.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"
)

type Case struct {
	Op          string   `json:"op"`
	V           string   `json:"v"`
	W           string   `json:"w"`
	Major       string   `json:"major"`
	Older       string   `json:"older"`
	Rev         string   `json:"rev"`
	Sec         int64    `json:"sec"`
	Nsec        int64    `json:"nsec"`
	Module      string   `json:"module"`
	PseudoMajor string   `json:"pseudo_major"`
	TagPrefix   string   `json:"tag_prefix"`
	Short       string   `json:"short"`
	Tags        []string `json:"tags"`
}

type Answer struct {
	Out        string `json:"out"`
	Bool       bool   `json:"bool"`
	Sec        int64  `json:"sec"`
	Err        string `json:"err"`
	Canonical  string `json:"canonical"`
	Major      string `json:"major"`
	MajorMinor string `json:"major_minor"`
	Prerelease string `json:"prerelease"`
	Build      string `json:"build"`
	Compare    int    `json:"compare"`
	Max        string `json:"max"`
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// validate is coderepo.go's validatePseudoVersion up to the tag lookup: it returns the base
// whose tag must be an ancestor, or "" when there is nothing more to check.
func validate(c Case) (base string, err error) {
	version := c.V
	defer func() {
		if err != nil {
			if _, ok := err.(*module.ModuleError); !ok {
				if _, ok := err.(*module.InvalidVersionError); !ok {
					err = &module.InvalidVersionError{Version: version, Pseudo: true, Err: err}
				}
				err = &module.ModuleError{Path: c.Module, Err: err}
			}
		}
	}()
	infoTime := time.Unix(c.Sec, c.Nsec)

	rev, err := module.PseudoVersionRev(version)
	if err != nil {
		return "", err
	}
	if rev != c.Short {
		switch {
		case strings.HasPrefix(rev, c.Short):
			return "", fmt.Errorf("revision is longer than canonical (expected %s)", c.Short)
		case strings.HasPrefix(c.Short, rev):
			return "", fmt.Errorf("revision is shorter than canonical (expected %s)", c.Short)
		default:
			return "", fmt.Errorf("does not match short name of revision (expected %s)", c.Short)
		}
	}

	t, err := module.PseudoVersionTime(version)
	if err != nil {
		return "", err
	}
	if !t.Equal(infoTime.Truncate(time.Second)) {
		return "", fmt.Errorf("does not match version-control timestamp (expected %s)", infoTime.UTC().Format(module.PseudoVersionTimestampFormat))
	}

	tagPrefix := c.TagPrefix
	base, err = module.PseudoVersionBase(strings.TrimSuffix(version, "+incompatible"))
	if err != nil {
		return "", err
	}
	if base == "" {
		if c.PseudoMajor == "" && semver.Major(version) == "v1" {
			return "", fmt.Errorf("major version without preceding tag must be v0, not v1")
		}
		return "", nil
	}
	for _, tag := range c.Tags {
		versionOnly := strings.TrimPrefix(tag, tagPrefix)
		if versionOnly == base {
			return "", fmt.Errorf("tag (%s) found on revision %s is already canonical, so should not be replaced with a pseudo-version derived from that tag", tag, rev)
		}
	}
	return base, nil
}

func pathMajor(v string) (out string, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = errors.New(fmt.Sprint(r))
		}
	}()
	return module.PathMajorPrefix(v), nil
}

func answer(c Case) (a Answer) {
	var err error
	switch c.Op {
	case "pseudo":
		a.Out = module.PseudoVersion(c.Major, c.Older, time.Unix(c.Sec, c.Nsec), c.Rev)
	case "zero":
		a.Out = module.ZeroPseudoVersion(c.Major)
	case "iszero":
		a.Bool = module.IsZeroPseudoVersion(c.V)
	case "is":
		a.Bool = module.IsPseudoVersion(c.V)
	case "base":
		a.Out, err = module.PseudoVersionBase(c.V)
	case "rev":
		a.Out, err = module.PseudoVersionRev(c.V)
	case "time":
		var t time.Time
		t, err = module.PseudoVersionTime(c.V)
		a.Sec = t.Unix()
	case "pathmajor":
		a.Out, err = pathMajor(c.V)
	case "semver":
		a.Bool = semver.IsValid(c.V)
		a.Canonical = semver.Canonical(c.V)
		a.Major = semver.Major(c.V)
		a.MajorMinor = semver.MajorMinor(c.V)
		a.Prerelease = semver.Prerelease(c.V)
		a.Build = semver.Build(c.V)
		a.Compare = semver.Compare(c.V, c.W)
		a.Max = semver.Max(c.V, c.W)
	case "validate":
		a.Out, err = validate(c)
	default:
		fmt.Fprintf(os.Stderr, "pseudoref: unknown op %q\n", c.Op)
		os.Exit(2)
	}
	a.Err = errString(err)
	return a
}

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 64<<10), 1<<20)
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	enc := json.NewEncoder(out)
	for in.Scan() {
		var c Case
		if err := json.Unmarshal(in.Bytes(), &c); err != nil {
			fmt.Fprintf(os.Stderr, "pseudoref: bad case %q: %v\n", in.Text(), err)
			os.Exit(2)
		}
		if err := enc.Encode(answer(c)); err != nil {
			fmt.Fprintf(os.Stderr, "pseudoref: %v\n", err)
			os.Exit(2)
		}
	}
	if err := in.Err(); err != nil {
		fmt.Fprintf(os.Stderr, "pseudoref: reading input: %v\n", err)
		os.Exit(2)
	}
}
