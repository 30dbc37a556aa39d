package token_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"orderpush/pkg/token"
)

// secretValue finds JWT_SECRET=value, JWT_SECRET: value, "JWT_SECRET":
// "value" (env files, compose and Kubernetes YAML, JSON, shell in docs).
var secretValue = regexp.MustCompile(`JWT_SECRET["']?[ \t]*[:=][ \t]*["']?([^\s"'` + "`" + `,;}|]+)`)

// shippedSecrets returns every JWT_SECRET value written in the shipped
// files under root (deploy/, Kubernetes manifests, every Markdown file and
// README, env examples), by file. Shell and compose expansions ($X,
// ${X:?...}, $(cmd)) and <placeholders in angle brackets> are not values.
func shippedSecrets(t *testing.T, root string) map[string][]string {
	t.Helper()
	found := map[string][]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			switch name {
			case ".git", "node_modules", "testdata", "artifacts", "bin":
				return filepath.SkipDir
			}
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		shipped := strings.HasPrefix(rel, "deploy"+string(filepath.Separator)) ||
			strings.Contains(rel, "k8s") ||
			strings.HasSuffix(name, ".md") || strings.HasPrefix(name, "README") ||
			strings.HasPrefix(name, ".env")
		if !shipped {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		text := string(b)
		for _, m := range secretValue.FindAllStringSubmatchIndex(text, -1) {
			v := text[m[2]:m[3]]
			inExpansion := m[0] > 0 && text[m[0]-1] == '{' // ${JWT_SECRET:?...}
			if inExpansion || strings.HasPrefix(v, "$") || strings.HasPrefix(v, "<") {
				continue
			}
			found[rel] = append(found[rel], v)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// TestShippedSecretsRefused: every JWT_SECRET value written anywhere in the
// repository's shipped files is refused by the services, so copying an
// example never yields a deployment anyone can forge tokens for. A new
// example value must be added to the placeholder list (secret.go).
func TestShippedSecretsRefused(t *testing.T) {
	t.Parallel()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.work")); err != nil {
		t.Fatalf("repository root not found at %s: %v", root, err)
	}
	for file, values := range shippedSecrets(t, root) {
		for _, v := range values {
			if token.CheckSecret([]byte(v)) == nil {
				t.Errorf("%s ships JWT_SECRET %q, which the services accept: add it to the placeholder list in pkg/token/secret.go", file, v)
			}
		}
	}
}

// TestShippedSecretsScanner: the scan finds values in every form it claims
// to, so the test above can fail.
func TestShippedSecretsScanner(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	files := map[string]string{
		"deploy/.env.example":        "JWT_SECRET=unlisted-example-value-0123456789abcdef\n",
		"deploy/compose.yml":         "  JWT_SECRET: \"yaml-value-0123456789abcdefghij\"\n  X: ${JWT_SECRET:?set it}\n",
		"deploy/k8s/secret.yaml":     "stringData:\n  JWT_SECRET: k8s-value-0123456789abcdefghijkl\n",
		"docs/guide.md":              "```\nexport JWT_SECRET='md-value-0123456789abcdefghijklmn'\nJWT_SECRET=$(openssl rand -hex 32)\nJWT_SECRET=<yours>\n```\n",
		"gateway/internal/x_test.go": "JWT_SECRET=not-shipped-0123456789abcdefghijkl\n",
	}
	for name, body := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got := shippedSecrets(t, root)
	want := map[string]string{
		filepath.Join("deploy", ".env.example"):       "unlisted-example-value-0123456789abcdef",
		filepath.Join("deploy", "compose.yml"):        "yaml-value-0123456789abcdefghij",
		filepath.Join("deploy", "k8s", "secret.yaml"): "k8s-value-0123456789abcdefghijkl",
		filepath.Join("docs", "guide.md"):             "md-value-0123456789abcdefghijklmn",
	}
	for file, v := range want {
		if len(got[file]) != 1 || got[file][0] != v {
			t.Errorf("%s: found %q, want [%q]", file, got[file], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("found %v, want only %v", got, want)
	}
}
