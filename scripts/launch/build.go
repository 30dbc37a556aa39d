package launch

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Binaries are the paths of the two built services.
type Binaries struct {
	Gateway  string
	OrderAPI string
}

// RepoRoot returns the directory holding go.work, walking up from the
// working directory (tests run in their package's directory).
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("repo root: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("repo root: no go.work above the working directory")
		}
		dir = parent
	}
}

// Build compiles gateway and orderapi into outDir with one `go build` in the
// workspace at root, as PROTOCOL.md's operator contract says. GOFLAGS and the
// rest of the environment are honoured; flags are added to the build command
// line (e.g. "-race").
func Build(ctx context.Context, root, outDir string, flags ...string) (Binaries, error) {
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return Binaries{}, fmt.Errorf("build: %w", err)
	}
	goBin, err := goTool()
	if err != nil {
		return Binaries{}, err
	}
	// A trailing separator makes go build treat -o as a directory even with
	// several packages.
	args := append([]string{"build", "-o", filepath.Clean(outDir) + string(filepath.Separator)}, flags...)
	args = append(args, "./gateway/cmd/gateway", "./orderapi/cmd/orderapi")
	cmd := exec.CommandContext(ctx, goBin, args...)
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		return Binaries{}, fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	b := Binaries{Gateway: filepath.Join(outDir, "gateway"), OrderAPI: filepath.Join(outDir, "orderapi")}
	for _, p := range []string{b.Gateway, b.OrderAPI} {
		if _, err := os.Stat(p); err != nil {
			return Binaries{}, fmt.Errorf("build: %w", err)
		}
	}
	return b, nil
}

// goTool finds the go command: PATH first (go test puts its own GOROOT/bin
// there), then GOROOT from the environment.
func goTool() (string, error) {
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	if root := os.Getenv("GOROOT"); root != "" {
		p := filepath.Join(root, "bin", "go")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", errors.New("build: go command not found on PATH")
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago. The
// caller's process binds it later, so another program could take it in
// between; on loopback in a test run that is rare enough.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
