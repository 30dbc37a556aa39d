package envscan_test

import (
	"go/parser"
	"go/token"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"orderpush/pkg/config/envscan"
)

// root is the repository root, three levels above this package.
func root(t *testing.T) string {
	t.Helper()
	dir := filepath.Join("..", "..", "..")
	if _, err := os.Stat(filepath.Join(dir, "go.work")); err != nil {
		t.Fatalf("repository root: %v", err)
	}
	return dir
}

func TestReadFindsTheBinariesSettingsAndPaths(t *testing.T) {
	for module, want := range map[string]struct{ settings, paths []string }{
		// Shared loaders (pkg/config, pkg/logging), the module's own, and a
		// one-word setting.
		"orderapi": {[]string{"REDIS_URL", "JWT_SECRET", "JWT_PUBLIC_KEY_FILE", "LOG_LEVEL", "LOG_FORMAT", "ORDERAPI_ADDR", "MERCHANTS"},
			[]string{"/orders", "/readyz"}},
		"gateway": {[]string{"REDIS_URL", "JWT_SECRET", "NODE_ID", "GATEWAY_ADDR"}, []string{"/ws", "/readyz"}},
	} {
		b, err := envscan.Read(root(t), module)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range want.settings {
			if !b.Settings[s] {
				t.Errorf("%s: setting %s not found (found %v)", module, s, keys(b.Settings))
			}
		}
		for _, p := range want.paths {
			if !b.Paths[p] {
				t.Errorf("%s: path %s not found (found %v)", module, p, keys(b.Paths))
			}
		}
	}
}

func TestOneWordSettingsOnlyWhereALoaderReadsThem(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "x.go", `package x
const c = "ORDER_RATE"
func f() { l.Enum("MERCHANTS", "open"); req("PUT", "/x"); _ = "CORS"; os.Getenv("PPROF"); g("LONE_NAME") }`, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := envscan.Binary{Settings: map[string]bool{}, Paths: map[string]bool{}}
	b.Collect(f)
	if got, want := keys(b.Settings), []string{"LONE_NAME", "MERCHANTS", "ORDER_RATE", "PPROF"}; !slices.Equal(got, want) {
		t.Errorf("settings %v, want %v", got, want)
	}
	if got := keys(b.Paths); !slices.Equal(got, []string{"/x"}) {
		t.Errorf("paths %v, want [/x]", got)
	}
}

func keys(m map[string]bool) []string { return slices.Sorted(maps.Keys(m)) }
