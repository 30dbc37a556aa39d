package e2e_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"orderpush/scripts/launch"
)

// bins are the services built once for the package by TestMain.
var bins launch.Binaries

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	root, err := launch.RepoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	dir, err := launch.TempDir()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	var flags []string
	if raceEnabled {
		flags = append(flags, "-race")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	if bins, err = launch.Build(ctx, root, dir, flags...); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: build the services:", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "e2e: built gateway and orderapi %v in %s\n", flags, time.Since(start).Round(time.Millisecond))
	return m.Run()
}
