package prodstack_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"orderpush/scripts/launch"
	"orderpush/scripts/prodstack"
)

func nginxBin(t *testing.T) string {
	t.Helper()
	bin, err := prodstack.NginxBinary()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

func freePort(t *testing.T) string {
	t.Helper()
	p, err := launch.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return strconv.Itoa(p)
}

func TestRenderTemplate(t *testing.T) {
	t.Parallel()
	tmpl := "listen ${PORT};\nset $x $http_upgrade;\nroot $DIR/www;\nkeep $DIRECTORY ${OTHER_X};\n"
	got, err := prodstack.RenderTemplate(tmpl, map[string]string{"PORT": "8000", "DIR": "/srv", "OTHER_X": "y"})
	if err != nil {
		t.Fatal(err)
	}
	want := "listen 8000;\nset $x $http_upgrade;\nroot /srv/www;\nkeep $DIRECTORY y;\n"
	if got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	if _, err := prodstack.RenderTemplate(tmpl, map[string]string{"PORT": "1"}); err == nil || !strings.Contains(err.Error(), "OTHER_X") {
		t.Fatalf("missing variable: %v", err)
	}
	if vars := prodstack.TemplateVariables(tmpl); strings.Join(vars, ",") != "OTHER_X,PORT" {
		t.Fatalf("variables %v", vars)
	}
}

func TestInterpolate(t *testing.T) {
	t.Parallel()
	env := map[string]string{"SET": "v", "EMPTY": ""}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	cases := []struct{ in, want, err string }{
		{"plain", "plain", ""},
		{"$SET and ${SET}", "v and v", ""},
		{"$$SET costs $$5", "$SET costs $5", ""},
		{"${EMPTY:-d} ${EMPTY-d} ${UNSET:-d} ${UNSET-d}", "d  d d", ""},
		{"${SET:?need it}", "v", ""},
		{"${EMPTY:?need it}", "", "need it"},
		{"${UNSET?gone}", "", "gone"},
		{"${UNSET}", "", "not set"},
		{"${SET", "", "unterminated"},
		{"${1X}", "", "bad variable"},
		{"a $ b $", "a $ b $", ""},
	}
	for _, c := range cases {
		got, err := prodstack.Interpolate(c.in, lookup)
		switch {
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%q: error %v, want %q", c.in, err, c.err)
		case c.err == "" && (err != nil || got != c.want):
			t.Errorf("%q: got %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}

func TestLoadEnvFile(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), ".env")
	if err := os.WriteFile(p, []byte("# comment\n\nA=1\nB = \"two words\"\nC='x'\nD=\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	env, err := prodstack.LoadEnvFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if env["A"] != "1" || env["B"] != "two words" || env["C"] != "x" || env["D"] != "" || len(env) != 4 {
		t.Fatalf("env %v", env)
	}
	if err := os.WriteFile(p, []byte("not a setting\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := prodstack.LoadEnvFile(p); err == nil {
		t.Fatal("accepted a line without =")
	}
}

// TestNginxConfigOfTheProcessStack renders the template as Start does and
// runs nginx -t on it: a private prefix, pid and temp paths, never the
// system nginx's.
func TestNginxConfigOfTheProcessStack(t *testing.T) {
	t.Parallel()
	root := launch.RepoRootT(t)
	tmpl, err := os.ReadFile(filepath.Join(root, prodstack.TemplatePath))
	if err != nil {
		t.Fatal(err)
	}
	site, err := prodstack.RenderTemplate(string(tmpl), map[string]string{
		"NGINX_LISTEN":      "127.0.0.1:" + freePort(t),
		"NGINX_RESOLVER":    "127.0.0.1",
		"GATEWAY_UPSTREAM":  prodstack.UpstreamServers([]string{"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"}),
		"ORDERAPI_UPSTREAM": prodstack.UpstreamServers([]string{"127.0.0.1:4", "127.0.0.1:5"}),
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"proxy_set_header Upgrade $http_upgrade;",
		"proxy_set_header Connection $connection_upgrade;",
		"proxy_read_timeout 1h;",
		"server 127.0.0.1:3;",
		`"uri":"$uri"`,
	} {
		if !strings.Contains(site, want) {
			t.Errorf("rendered site lacks %q", want)
		}
	}
	var directives []string
	for _, line := range strings.Split(site, "\n") {
		if l := strings.TrimSpace(line); !strings.HasPrefix(l, "#") {
			directives = append(directives, l)
		}
	}
	code := strings.Join(directives, "\n")
	for _, bad := range []string{"$request_uri", "$request ", "$args", "$query_string", "ip_hash", "sticky", "hash $"} {
		if strings.Contains(code, bad) {
			t.Errorf("rendered site has %q (tokens in logs, or sticky sessions)", bad)
		}
	}
	n, err := prodstack.WriteNginx(nginxBin(t), t.TempDir(), site)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Test(t.Context()); err != nil {
		t.Fatal(err)
	}

	// And a broken config is reported with nginx's own words.
	broken, err := prodstack.WriteNginx(n.Bin, t.TempDir(), site+"\nnot_a_directive on;\n")
	if err != nil {
		t.Fatal(err)
	}
	err = broken.Test(t.Context())
	if err == nil || !strings.Contains(err.Error(), "not_a_directive") {
		t.Fatalf("nginx -t of a broken config: %v", err)
	}
}

func TestVersionAtLeast(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		v, want string
		ok      bool
	}{{"1.22.1", "1.27.3", false}, {"1.28.0", "1.27.3", true}, {"1.27.3", "1.27.3", true}, {"2.0", "1.27.3", true}, {"1.27", "1.27.3", false}} {
		if got := prodstack.VersionAtLeast(c.v, c.want); got != c.ok {
			t.Errorf("VersionAtLeast(%s, %s) = %v", c.v, c.want, got)
		}
	}
}
