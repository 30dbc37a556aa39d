// Package envscan reads from a binary's Go source the environment
// settings it reads and the HTTP paths it registers, so that deployment
// files (compose, Kubernetes) can be checked against the code rather than
// against a list kept by hand.
//
// A setting is an env-shaped string literal (upper case words joined by
// underscores) that is the first argument of a call
// (loader.String("GATEWAY_ADDR", ...), os.Getenv("X_Y")) or a constant's
// value; a one-word setting (MERCHANTS) counts only as the first argument
// of a settings loader or of os.Getenv/LookupEnv, where it cannot be an HTTP
// method or another upper-case word. A path is a string literal starting
// with "/" passed as the first or second argument of a call
// (e.GET("/readyz", ...), add(method, "/orders", ...)).
package envscan

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

// Binary is what deployment files must agree with.
type Binary struct {
	Settings map[string]bool
	Paths    map[string]bool
}

var (
	envName = regexp.MustCompile(`^[A-Z][A-Z0-9]*(_[A-Z0-9]+)+$`)
	oneWord = regexp.MustCompile(`^[A-Z]{4,}$`)
	// loaders are the calls whose first argument names a setting: the
	// pkg/config Loader's methods and the os package's.
	loaders = map[string]bool{"String": true, "Int": true, "Duration": true, "Addr": true, "Enum": true,
		"Rate": true, "Getenv": true, "LookupEnv": true}
)

// Read scans module (gateway or orderapi) and the shared pkg/ module under
// the repository root. Test files, test helper packages (directories whose
// name ends in "test") and the dashboard's files are not the binary.
func Read(root, module string) (Binary, error) {
	b := Binary{Settings: map[string]bool{}, Paths: map[string]bool{}}
	web := filepath.Join(root, "gateway", "web")
	fset := token.NewFileSet()
	for _, dir := range []string{filepath.Join(root, module), filepath.Join(root, "pkg")} {
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				if path == web || strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || strings.HasSuffix(d.Name(), "test") {
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
			b.Collect(f)
			return nil
		})
		if err != nil {
			return Binary{}, err
		}
	}
	return b, nil
}

// Collect adds the settings and paths of one file.
func (b Binary) Collect(f *ast.File) {
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
				if s, ok := str(n.Args[0]); ok {
					sel, isSel := n.Fun.(*ast.SelectorExpr)
					if envName.MatchString(s) || isSel && loaders[sel.Sel.Name] && oneWord.MatchString(s) {
						b.Settings[s] = true
					}
					if strings.HasPrefix(s, "/") {
						b.Paths[s] = true
					}
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
