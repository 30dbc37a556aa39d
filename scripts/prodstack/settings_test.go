package prodstack_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"orderpush/scripts/launch"
)

// envName is the shape of every setting of the binaries (PROTOCOL.md,
// "Running it"): upper case words joined by underscores.
var envName = regexp.MustCompile(`^[A-Z][A-Z0-9]*(_[A-Z0-9]+)+$`)

// oneWord is a setting without an underscore (MERCHANTS): counted only as
// the name argument of a settings loader or of os.Getenv, where it cannot
// be an HTTP method or another upper-case word.
var oneWord = regexp.MustCompile(`^[A-Z]{4,}$`)

// loaders are the calls whose first argument names a setting.
var loaders = map[string]bool{"String": true, "Int": true, "Duration": true, "Addr": true, "Enum": true,
	"Rate": true, "Getenv": true, "LookupEnv": true}

// binarySettings returns the environment variables a binary reads, from its
// source: every env-shaped string literal that is the first argument of a
// call (loader.String("GATEWAY_ADDR", ...), os.Getenv("X_Y")) or a constant,
// in the binary's module and in the shared pkg/ module (config, logging).
// Test files, test helper packages and the dashboard are not the binary.
func binarySettings(t *testing.T, root, module string) map[string]bool {
	t.Helper()
	found := map[string]bool{}
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
				if skip[path] || strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" {
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
			collectSettings(f, found)
			return nil
		})
		if err != nil {
			t.Fatalf("scan %s: %v", dir, err)
		}
	}
	if len(found) == 0 {
		t.Fatalf("found no settings in %s: is the binary written yet?", module)
	}
	return found
}

func collectSettings(f *ast.File, found map[string]bool) {
	lit := func(e ast.Expr, loader bool) {
		if b, ok := e.(*ast.BasicLit); ok && b.Kind == token.STRING {
			if s, err := strconv.Unquote(b.Value); err == nil && (envName.MatchString(s) || loader && oneWord.MatchString(s)) {
				found[s] = true
			}
		}
	}
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.CallExpr:
			if len(n.Args) > 0 {
				sel, ok := n.Fun.(*ast.SelectorExpr)
				lit(n.Args[0], ok && loaders[sel.Sel.Name])
			}
		case *ast.ValueSpec:
			for _, v := range n.Values {
				lit(v, false)
			}
		}
		return true
	})
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func TestBinarySettingsScannerSeesSharedLoaders(t *testing.T) {
	t.Parallel()
	root := launch.RepoRootT(t)
	if _, err := os.Stat(filepath.Join(root, "pkg", "config")); err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	fset := token.NewFileSet()
	for _, p := range []string{"pkg/config/config.go", "pkg/logging/logging.go"} {
		f, err := parser.ParseFile(fset, filepath.Join(root, p), nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		collectSettings(f, got)
	}
	for _, want := range []string{"REDIS_URL", "JWT_SECRET", "JWT_PUBLIC_KEY_FILE", "JWT_ISSUER", "JWT_AUDIENCE", "LOG_LEVEL", "LOG_FORMAT"} {
		if !got[want] {
			t.Errorf("scanner missed %s in the shared loaders (found %v)", want, sortedKeys(got))
		}
	}
	// One-word settings count only where a loader reads them.
	f, err := parser.ParseFile(fset, "x.go", `package x
func f() { l.Enum("MERCHANTS", "open"); req("PUT", "/x"); _ = "CORS" }`, 0)
	if err != nil {
		t.Fatal(err)
	}
	got = map[string]bool{}
	collectSettings(f, got)
	if !got["MERCHANTS"] || got["PUT"] || got["CORS"] {
		t.Errorf("one-word settings: got %v, want only MERCHANTS", sortedKeys(got))
	}
}
