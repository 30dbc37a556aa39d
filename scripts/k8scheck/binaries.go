package k8scheck

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// Binary is what the manifests must agree with, read from a binary's
// source: the environment variables it reads and the HTTP paths it
// registers.
type Binary struct {
	Settings map[string]bool
	Paths    map[string]bool
}

// envName is the shape of every setting of the binaries: upper case words
// joined by underscores.
var envName = regexp.MustCompile(`^[A-Z][A-Z0-9]*(_[A-Z0-9]+)+$`)

// ReadBinary scans module (gateway or orderapi) and the shared pkg/ module
// under root. A setting is an env-shaped string literal that is the first
// argument of a call (loader.String("GATEWAY_ADDR", ...)) or a constant's
// value; a path is a string literal starting with "/" passed as the second
// argument of a call (e.GET("/readyz", ...), add(method, "/orders", ...)).
// Test files, test helpers and the dashboard's files are not the binary.
// This mirrors the scanner the compose tests use (scripts/prodstack).
func ReadBinary(root, module string) (Binary, error) {
	b := Binary{Settings: map[string]bool{}, Paths: map[string]bool{}}
	skip := map[string]bool{
		filepath.Join(root, "gateway", "web"):   true,
		filepath.Join(root, "pkg", "pgtest"):    true,
		filepath.Join(root, "pkg", "redistest"): true,
	}
	fset := token.NewFileSet()
	for _, dir := range []string{filepath.Join(root, module), filepath.Join(root, "pkg")} {
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				if skip[path] || strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || strings.HasSuffix(d.Name(), "test") {
					return filepath.SkipDir
				}
				return nil
			}
			if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return nil
			}
			f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
			if err != nil {
				return err
			}
			b.collect(f)
			return nil
		})
		if err != nil {
			return Binary{}, err
		}
	}
	return b, nil
}

func (b Binary) collect(f *ast.File) {
	str := func(e ast.Expr) (string, bool) {
		l, ok := e.(*ast.BasicLit)
		if !ok || l.Kind != token.STRING {
			return "", false
		}
		s, err := strconv.Unquote(l.Value)
		return s, err == nil
	}
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.CallExpr:
			if len(n.Args) > 0 {
				if s, ok := str(n.Args[0]); ok && envName.MatchString(s) {
					b.Settings[s] = true
				}
				if s, ok := str(n.Args[0]); ok && strings.HasPrefix(s, "/") {
					b.Paths[s] = true
				}
			}
			if len(n.Args) > 1 {
				if s, ok := str(n.Args[1]); ok && strings.HasPrefix(s, "/") {
					b.Paths[s] = true
				}
			}
		case *ast.ValueSpec:
			for _, v := range n.Values {
				if s, ok := str(v); ok && envName.MatchString(s) {
					b.Settings[s] = true
				}
			}
		}
		return true
	})
}
