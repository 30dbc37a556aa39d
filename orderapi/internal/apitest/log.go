package apitest

import (
	"log/slog"
	"os"
	"testing"
)

// testLogger writes the server's logs into the test's output, at warn and
// above unless ORDERAPI_TEST_LOG=debug.
func testLogger(t testing.TB) *slog.Logger {
	level := slog.LevelWarn
	if os.Getenv("ORDERAPI_TEST_LOG") == "debug" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: level}))
}
