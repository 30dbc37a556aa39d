package e2e_test

import (
	"os"
	"testing"

	"orderpush/scripts/launch"
)

// bins are the services built once for the package by TestMain.
var bins launch.Binaries

func TestMain(m *testing.M) {
	var flags []string
	if raceEnabled {
		flags = append(flags, "-race")
	}
	os.Exit(launch.BuildMain(m, "e2e", &bins, flags...))
}
