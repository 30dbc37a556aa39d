// Package doccheck keeps the repository's documentation self-contained: a
// person who clones only this repository must find every document it points
// at. Check scans the text files of a checkout and reports
//
//   - references to places outside the repository (a parent directory's
//     design notes such as "../shared/...", or a workstation path);
//   - Markdown documents named in text or comments (FOO.md) that exist
//     nowhere in the repository;
//   - relative Markdown links whose target does not exist;
//   - citations of a section of PROTOCOL.md or ARCHITECTURE.md
//     (`PROTOCOL.md, "Merchant socket"`) naming a heading the document
//     does not have.
//
// The test of this package runs Check on the repository itself, so CI fails
// on any of these. Check is a pure function of the files under root.
package doccheck

import (
	"bufio"
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// Problem is one finding: where and what.
type Problem struct {
	File string // slash-separated, relative to the root
	Line int
	Msg  string
}

func (p Problem) String() string { return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.Msg) }

// skipDirs are never scanned: VCS data, installed packages, build and test
// output that is not part of the repository.
var skipDirs = map[string]bool{
	".git": true, "node_modules": true, "artifacts": true, "bin": true, "data": true,
}

// selfDir is this package, relative to the root; it is not scanned.
const selfDir = "scripts/doccheck"

// textExt are the file kinds scanned; others (images, sums) are skipped.
var textExt = map[string]bool{
	".go": true, ".md": true, ".sh": true, ".yml": true, ".yaml": true, ".json": true,
	".js": true, ".mjs": true, ".html": true, ".css": true, ".template": true, ".sql": true,
	".lua": true, ".txt": true, ".conf": true, ".example": true, ".toml": true, ".mod": true,
	".work": true, ".dockerignore": true, "": true,
}

// outside are substrings that only ever point outside the repository. They
// are assembled so this file does not match itself.
var outside = []string{
	".." + "/shared",
	"/work" + "/",
	"shared" + "/PROTOCOL.md",
	"shared" + "/DESIGN.md",
}

var (
	mdName = regexp.MustCompile(`\b[A-Z][A-Z0-9_-]*\.md\b`)
	mdLink = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	// The optional backslashes read the same citation inside a JSON string
	// (PROTOCOL.md \"Order API\").
	citation = regexp.MustCompile(`\b(PROTOCOL|ARCHITECTURE)\.md[^"\n]{0,3}"([^"\n]+?)\\?"`)
	heading  = regexp.MustCompile(`^#{1,6}\s+(.+?)\s*$`)
)

// cited are the documents whose sections code comments cite, relative to
// the root.
var cited = map[string]string{
	"PROTOCOL":     "pkg/wire/PROTOCOL.md",
	"ARCHITECTURE": "ARCHITECTURE.md",
}

// Check scans the repository at root and returns every problem found,
// sorted by file and line.
func Check(root string) ([]Problem, error) {
	files, err := textFiles(root)
	if err != nil {
		return nil, err
	}
	mdNames := map[string]bool{}
	for _, f := range files {
		if strings.HasSuffix(f, ".md") {
			mdNames[path.Base(f)] = true
		}
	}
	headings := map[string]map[string]bool{}
	for doc, rel := range cited {
		h, err := headingsOf(filepath.Join(root, filepath.FromSlash(rel)))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", rel, err)
		}
		headings[doc] = h
	}
	var out []Problem
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(f)))
		if err != nil {
			return nil, err
		}
		if bytes.IndexByte(b, 0) >= 0 {
			continue // binary
		}
		out = append(out, checkFile(root, f, b, mdNames, headings)...)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].File != out[j].File {
			return out[i].File < out[j].File
		}
		return out[i].Line < out[j].Line
	})
	return out, nil
}

func checkFile(root, f string, b []byte, mdNames map[string]bool, headings map[string]map[string]bool) []Problem {
	var out []Problem
	isMD := strings.HasSuffix(f, ".md")
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		for _, o := range outside {
			if strings.Contains(line, o) {
				out = append(out, Problem{f, n, fmt.Sprintf("points outside the repository (%q); cite pkg/wire/PROTOCOL.md or ARCHITECTURE.md", o)})
				break
			}
		}
		for _, name := range mdName.FindAllString(line, -1) {
			if !mdNames[name] {
				out = append(out, Problem{f, n, fmt.Sprintf("names %s, which is not in the repository", name)})
			}
		}
		for _, m := range citation.FindAllStringSubmatch(line, -1) {
			if !headings[m[1]][m[2]] {
				out = append(out, Problem{f, n, fmt.Sprintf("cites section %q of %s.md, which has no such heading", m[2], m[1])})
			}
		}
		if isMD {
			for _, m := range mdLink.FindAllStringSubmatch(line, -1) {
				if p := brokenLink(root, f, m[1]); p != "" {
					out = append(out, Problem{f, n, p})
				}
			}
		}
	}
	return out
}

// brokenLink reports a relative link whose target does not exist.
func brokenLink(root, from, link string) string {
	if strings.Contains(link, "://") || strings.HasPrefix(link, "mailto:") || strings.HasPrefix(link, "#") {
		return ""
	}
	target, _, _ := strings.Cut(link, "#")
	if target == "" {
		return ""
	}
	rel := path.Join(path.Dir(from), target)
	if rel == ".." || strings.HasPrefix(rel, "../") {
		return fmt.Sprintf("links to %s, outside the repository", link)
	}
	if _, err := os.Stat(filepath.Join(root, filepath.FromSlash(rel))); err != nil {
		return fmt.Sprintf("links to %s, which does not exist", link)
	}
	return ""
}

// headingsOf returns the Markdown headings of a file, without the #s.
func headingsOf(file string) (map[string]bool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	inCode := false
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "```") {
			inCode = !inCode
			continue
		}
		if m := heading.FindStringSubmatch(line); m != nil && !inCode {
			out[m[1]] = true
		}
	}
	return out, nil
}

// textFiles lists the scanned files under root, slash-separated and
// relative to it.
func textFiles(root string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p != root && skipDirs[d.Name()] {
				return filepath.SkipDir
			}
			// This package spells the patterns it looks for.
			if rel, _ := filepath.Rel(root, p); filepath.ToSlash(rel) == selfDir {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || !textExt[filepath.Ext(d.Name())] {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		out = append(out, filepath.ToSlash(rel))
		return nil
	})
	return out, err
}
