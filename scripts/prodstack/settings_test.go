package prodstack_test

import (
	"maps"
	"slices"
	"testing"

	"orderpush/pkg/config/envscan"
)

// binarySettings returns the environment variables a binary reads, from
// its source (pkg/config/envscan).
func binarySettings(t *testing.T, root, module string) map[string]bool {
	t.Helper()
	b, err := envscan.Read(root, module)
	if err != nil {
		t.Fatalf("scan %s: %v", module, err)
	}
	if len(b.Settings) == 0 {
		t.Fatalf("found no settings in %s: is the binary written yet?", module)
	}
	return b.Settings
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }
