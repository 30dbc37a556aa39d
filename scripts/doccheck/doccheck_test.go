package doccheck_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"orderpush/scripts/doccheck"
	"orderpush/scripts/launch"
)

// TestRepository fails on any reference outside the repository, any
// document named that does not exist, any broken relative link and any
// citation of a section PROTOCOL.md or ARCHITECTURE.md does not have.
func TestRepository(t *testing.T) {
	root := launch.RepoRootT(t)
	problems, err := doccheck.Check(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Error(p)
	}
}

// TestCheckFindsEachKind builds a small tree with one problem of each kind
// next to correct uses, and expects exactly the problems.
func TestCheckFindsEachKind(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) {
		t.Helper()
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("pkg/wire/PROTOCOL.md", "# Title\n\n## Merchant socket\n\n```\n## Not a heading\n```\n")
	write("ARCHITECTURE.md", "# Architecture\n\n## How an order travels\n")
	write("README.md", strings.Join([]string{
		"See [the contract](pkg/wire/PROTOCOL.md#merchant-socket) and [design](ARCHITECTURE.md).", // ok
		"Old: [PROTOCOL.md](../shared/PROTOCOL.md).",                                              // outside + outside link
		"[gone](docs/missing.md) and [web](https://example.com/x.md) and [here](#top).",           // one broken
		"",
	}, "\n"))
	write("gateway/x.go", strings.Join([]string{
		"package x",
		`// PROTOCOL.md, "Merchant socket" and ARCHITECTURE.md "How an order travels" 6.`, // ok
		`// PROTOCOL.md "Not a heading"`,   // bad section
		`// the invariants of DESIGN.md 6`, // unknown document
		"// built on " + "/work" + "/main", // machine path
		"",
	}, "\n"))
	write("deploy/x.json", `{"description": "see PROTOCOL.md \"Merchant socket\" and PROTOCOL.md \"Nope\""}`+"\n")
	write("bin/ignored.go", "// ../"+"shared is ignored in build output\n")

	got, err := doccheck.Check(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"README.md:2: points outside",
		"README.md:2: links to ../shared/PROTOCOL.md, outside the repository",
		"README.md:3: links to docs/missing.md, which does not exist",
		`deploy/x.json:1: cites section "Nope"`,
		`gateway/x.go:3: cites section "Not a heading"`,
		"gateway/x.go:4: names DESIGN.md",
		"gateway/x.go:5: points outside",
	}
	var lines []string
	for _, p := range got {
		lines = append(lines, p.String())
	}
	if len(lines) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%s", len(lines), len(want), strings.Join(lines, "\n"))
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("problem %d = %q, want prefix %q", i, lines[i], w)
		}
	}
}
