package prodstack

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// templateVar matches ${NAME} references with an upper-case name: the
// template's own variables. nginx's variables are lower case ($host).
var templateVar = regexp.MustCompile(`\$\{([A-Z_][A-Z0-9_]*)\}`)

// TemplateVariables lists the ${NAME} variables a template uses, sorted.
func TemplateVariables(tmpl string) []string {
	seen := map[string]bool{}
	for _, m := range templateVar.FindAllStringSubmatch(tmpl, -1) {
		seen[m[1]] = true
	}
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// RenderTemplate does what the nginx image's envsubst step does with a
// filter: it replaces ${NAME} and $NAME for the names in vars and leaves
// every other $ alone. A ${NAME} of the template that vars does not give is
// an error, so a config never ships with a hole in it.
func RenderTemplate(tmpl string, vars map[string]string) (string, error) {
	var missing []string
	for _, name := range TemplateVariables(tmpl) {
		if _, ok := vars[name]; !ok {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return "", fmt.Errorf("nginx template: no value for %s", strings.Join(missing, ", "))
	}
	names := make([]string, 0, len(vars))
	for n := range vars {
		names = append(names, n)
	}
	// Longest first, so $NGINX_PORT_X is never cut at $NGINX_PORT.
	sort.Slice(names, func(i, j int) bool { return len(names[i]) > len(names[j]) })
	out := tmpl
	for _, n := range names {
		out = strings.ReplaceAll(out, "${"+n+"}", vars[n])
		out = replaceBare(out, n, vars[n])
	}
	return out, nil
}

// replaceBare replaces $name where the name is not followed by another name
// character.
func replaceBare(s, name, value string) string {
	var b strings.Builder
	ref := "$" + name
	for {
		i := strings.Index(s, ref)
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		end := i + len(ref)
		b.WriteString(s[:i])
		if end < len(s) && isNameChar(s[end]) {
			b.WriteString(ref)
		} else {
			b.WriteString(value)
		}
		s = s[end:]
	}
}

// UpstreamServers is the body of an upstream block: one server line per
// address.
func UpstreamServers(addrs []string) string {
	lines := make([]string, len(addrs))
	for i, a := range addrs {
		lines[i] = "server " + a + ";"
	}
	return strings.Join(lines, "\n    ")
}

// NginxBinary finds nginx: NGINX_BIN, else nginx on PATH, else Debian's
// /usr/sbin/nginx (not on a non-root PATH).
func NginxBinary() (string, error) {
	if p := os.Getenv("NGINX_BIN"); p != "" {
		return p, nil
	}
	if p, err := exec.LookPath("nginx"); err == nil {
		return p, nil
	}
	if _, err := os.Stat("/usr/sbin/nginx"); err == nil {
		return "/usr/sbin/nginx", nil
	}
	return "", errors.New("nginx not found: install it (apt-get install -y nginx; the README's test command does) or set NGINX_BIN")
}

// NginxVersion returns the version nginx -v prints, e.g. "1.22.1".
func NginxVersion(ctx context.Context, bin string) (string, error) {
	out, err := exec.CommandContext(ctx, bin, "-v").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s -v: %w: %s", bin, err, out)
	}
	s := strings.TrimSpace(string(out))
	i := strings.LastIndex(s, "nginx/")
	if i < 0 {
		return "", fmt.Errorf("%s -v: unexpected output %q", bin, s)
	}
	return strings.Fields(s[i+len("nginx/"):])[0], nil
}

// VersionAtLeast reports whether dotted version v is at least want.
func VersionAtLeast(v, want string) bool {
	a, b := strings.Split(v, "."), strings.Split(want, ".")
	for i := 0; i < len(b); i++ {
		var x, y int
		if i < len(a) {
			x, _ = strconv.Atoi(a[i])
		}
		y, _ = strconv.Atoi(b[i])
		if x != y {
			return x > y
		}
	}
	return true
}

// Nginx is a private nginx: its own prefix directory, pid file, temp paths
// and logs, never the system's.
type Nginx struct {
	Bin  string
	Dir  string // prefix; holds nginx.conf, site.conf, temp dirs
	Conf string // the main config file
}

// WriteNginx writes a main config that includes site (a rendered template)
// into dir and returns the Nginx that runs it.
func WriteNginx(bin, dir, site string) (*Nginx, error) {
	for _, d := range []string{"tmp/body", "tmp/proxy", "tmp/fastcgi", "tmp/uwsgi", "tmp/scgi", "logs"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, fmt.Errorf("nginx dir: %w", err)
		}
	}
	sitePath := filepath.Join(dir, "site.conf")
	if err := os.WriteFile(sitePath, []byte(site), 0o644); err != nil {
		return nil, fmt.Errorf("nginx site: %w", err)
	}
	n := &Nginx{Bin: bin, Dir: dir, Conf: filepath.Join(dir, "nginx.conf")}
	if err := os.WriteFile(n.Conf, []byte(mainConfig(dir, sitePath)), 0o644); err != nil {
		return nil, fmt.Errorf("nginx conf: %w", err)
	}
	return n, nil
}

// mainConfig is what the nginx image's own nginx.conf is to the compose
// stack: the frame around the shared site config.
func mainConfig(dir, site string) string {
	p := func(s string) string { return filepath.Join(dir, s) }
	return fmt.Sprintf(`# Generated by scripts/prodstack; the site config beside it is
# deploy/nginx/orderpush.conf.template, rendered.
daemon off;
# One process: it dies with the process that started it, where worker
# processes of a killed master would linger and keep the port.
master_process off;
pid %s;
error_log stderr notice;

events {
    worker_connections 4096;
}

http {
    client_body_temp_path %s;
    proxy_temp_path %s;
    fastcgi_temp_path %s;
    uwsgi_temp_path %s;
    scgi_temp_path %s;
    include %s;
}
`, p("nginx.pid"), p("tmp/body"), p("tmp/proxy"), p("tmp/fastcgi"), p("tmp/uwsgi"), p("tmp/scgi"), site)
}

// Args are the command-line arguments that run this config.
func (n *Nginx) Args() []string {
	return []string{"-p", n.Dir, "-c", n.Conf, "-e", "stderr"}
}

// Test runs nginx -t on the config and returns nginx's output on failure.
func (n *Nginx) Test(ctx context.Context) error {
	out, err := exec.CommandContext(ctx, n.Bin, append([]string{"-t"}, n.Args()...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("nginx -t %s: %w\n%s", n.Conf, err, out)
	}
	return nil
}
