package prodstack_test

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"orderpush/pkg/config"
	"orderpush/scripts/launch"
	"orderpush/scripts/prodstack"
)

// The compose file cannot run here (no Docker engine), so these tests check
// it statically: its topology, and every setting against what the binaries
// really read. The process stack (stack_test.go) then runs every replica
// with the compose file's own settings.

func loadCompose(t *testing.T) (*prodstack.Compose, map[string]string) {
	t.Helper()
	root := launch.RepoRootT(t)
	env, err := prodstack.LoadEnvFile(filepath.Join(root, prodstack.EnvExamplePath))
	if err != nil {
		t.Fatal(err)
	}
	// .env.example ships without usable secrets; the operator fills these in.
	for k := range map[string]bool{"ORDERAPI_TOKEN": true, "POSTGRES_PASSWORD": true} {
		if env[k] != "" {
			t.Fatalf(".env.example ships a value for %s; it must hold no usable secret", k)
		}
	}
	env["ORDERAPI_TOKEN"], env["POSTGRES_PASSWORD"] = "a.service.token", "pw"
	c, err := prodstack.LoadCompose(root, env)
	if err != nil {
		t.Fatal(err)
	}
	return c, env
}

// TestComposeTokensAreEdDSA: the services hold only the public key, from a
// compose secret every one of them mounts; the gateways carry a service
// token; no JWT_SECRET anywhere (deploy/.env.example holds none).
func TestComposeTokensAreEdDSA(t *testing.T) {
	t.Parallel()
	c, env := loadCompose(t)
	if _, ok := env["JWT_SECRET"]; ok {
		t.Error(".env.example sets JWT_SECRET; the stack runs on EdDSA keys")
	}
	for _, kind := range []string{prodstack.KindGateway, prodstack.KindOrderAPI} {
		for _, name := range c.ServicesOf(kind) {
			svc := c.Services[name]
			if _, ok := svc.Environment["JWT_SECRET"]; ok {
				t.Errorf("%s: sets JWT_SECRET", name)
			}
			path := svc.Environment["JWT_PUBLIC_KEY_FILE"]
			mounted := false
			for _, sec := range svc.Secrets {
				if prodstack.SecretPath(sec) == path {
					mounted = c.Secrets[sec].File != ""
				}
			}
			if !mounted {
				t.Errorf("%s: JWT_PUBLIC_KEY_FILE %q is not a compose secret it mounts (secrets %v)", name, path, svc.Secrets)
			}
			if kind == prodstack.KindGateway && svc.Environment["ORDERAPI_TOKEN"] == "" {
				t.Errorf("%s: no ORDERAPI_TOKEN", name)
			}
		}
	}
	for name, sec := range c.Secrets {
		if strings.Contains(sec.File, "jwt.pem") && !strings.Contains(sec.File, "pub") {
			t.Errorf("secret %s mounts the private key %s", name, sec.File)
		}
	}
}

// listenPort is the port of a service's *_ADDR listen setting.
func listenPort(t *testing.T, name string, svc prodstack.Service) string {
	t.Helper()
	for k, v := range svc.Environment {
		if strings.HasSuffix(k, "_ADDR") {
			if host, port, err := net.SplitHostPort(v); err == nil && host == "" {
				return port
			}
		}
	}
	t.Fatalf("%s: no listen setting like GATEWAY_ADDR=:8080", name)
	return ""
}

func TestComposeTopology(t *testing.T) {
	t.Parallel()
	c, _ := loadCompose(t)
	counts := map[string]int{}
	for _, s := range c.Services {
		counts[s.Kind()]++
	}
	want := map[string]int{
		prodstack.KindRedis: 1, prodstack.KindPostgres: 1, prodstack.KindNginx: 1,
		prodstack.KindGateway: 3, prodstack.KindOrderAPI: 2,
		prodstack.KindPrometheus: 1, prodstack.KindGrafana: 1, prodstack.KindCurl: 1,
	}
	for kind, n := range want {
		if counts[kind] != n {
			t.Errorf("%d %s services, want %d", counts[kind], kind, n)
		}
	}
	for kind := range counts {
		if _, ok := want[kind]; !ok {
			t.Errorf("unexpected service kind %q", kind)
		}
	}

	for name, s := range c.Services {
		if !slices.Contains([]string{"always", "unless-stopped", "on-failure"}, s.Restart) {
			t.Errorf("%s: restart policy %q", name, s.Restart)
		}
		oneShot := name == prodstack.MerchantsService // runs once and exits: nothing to check the health of
		if !oneShot && (s.Healthcheck == nil || len(s.Healthcheck.Test) < 2 || s.Healthcheck.Test[0] != "CMD") {
			t.Errorf("%s: want an exec-form health check [\"CMD\", ...], got %+v", name, s.Healthcheck)
		}
		if s.Image == "" {
			t.Errorf("%s: no image name", name)
		}
		for _, v := range s.Volumes {
			src, _, _ := strings.Cut(v, ":")
			if !strings.HasPrefix(src, ".") && !strings.HasPrefix(src, "/") {
				if _, ok := c.Volumes[src]; !ok {
					t.Errorf("%s: volume %s is not declared under volumes:", name, src)
				}
			}
		}
		optional := slices.Contains(s.Profiles, "observability")
		if (s.Kind() == prodstack.KindPrometheus || s.Kind() == prodstack.KindGrafana) != optional {
			t.Errorf("%s: profiles %v; Prometheus and Grafana, and only they, are the optional observability profile", name, s.Profiles)
		}
		for _, p := range s.Ports {
			if s.Kind() != prodstack.KindNginx && !(optional && strings.HasPrefix(p, "127.0.0.1:")) {
				t.Errorf("%s publishes %s: only nginx is the entry point (the observability profile on loopback)", name, p)
			}
		}
	}

	nodes := map[string]string{}
	for _, kind := range []string{prodstack.KindGateway, prodstack.KindOrderAPI} {
		for _, name := range c.ServicesOf(kind) {
			s := c.Services[name]
			port := listenPort(t, name, s)
			hc := s.Healthcheck.Test
			u, err := url.Parse(hc[len(hc)-1])
			if err != nil || u.Path != "/readyz" || u.Port() != port || u.Hostname() != "127.0.0.1" {
				t.Errorf("%s: health check %v, want http://127.0.0.1:%s/readyz", name, hc, port)
			}
			if depOK(s, "redis") == "" {
				t.Errorf("%s: must depend on redis being healthy", name)
			}
			if kind == prodstack.KindOrderAPI && depOK(s, "postgres") == "" {
				t.Errorf("%s: must depend on postgres being healthy", name)
			}
			if d, err := time.ParseDuration(s.StopGracePeriod); err != nil || d < 10*time.Second {
				t.Errorf("%s: stop_grace_period %q: a replica drains for up to 10 s", name, s.StopGracePeriod)
			}
			if !s.ReadOnly || !slices.Contains(s.CapDrop, "ALL") {
				t.Errorf("%s: want read_only and cap_drop ALL (static binary, nothing to write)", name)
			}
			if kind == prodstack.KindGateway {
				id := s.Environment["NODE_ID"]
				if id == "" || nodes[id] != "" {
					t.Errorf("%s: NODE_ID %q must be set and unique (also used by %q)", name, id, nodes[id])
				}
				nodes[id] = name
			}
		}
	}

	ng := c.Services[c.ServicesOf(prodstack.KindNginx)[0]]
	for _, name := range append(c.ServicesOf(prodstack.KindGateway), c.ServicesOf(prodstack.KindOrderAPI)...) {
		if ng.DependsOn[name].Condition != "service_healthy" {
			t.Errorf("nginx must depend on %s being healthy", name)
		}
	}
	listen := ng.Environment["NGINX_LISTEN"]
	if len(ng.Ports) != 1 || !strings.HasSuffix(ng.Ports[0], ":"+listen) {
		t.Errorf("nginx ports %v do not publish NGINX_LISTEN %q", ng.Ports, listen)
	}
	if hc := strings.Join(ng.Healthcheck.Test, " "); !strings.Contains(hc, "127.0.0.1:"+listen+"/nginx-health") {
		t.Errorf("nginx health check %q does not ask /nginx-health on its port", hc)
	}
}

// TestComposeRegistersItsMerchants: the order APIs take orders only for
// registered merchants, and the one-shot merchants service registers the
// demo ones through nginx with the gateways' service token once nginx is
// healthy (PUT is idempotent, so every "up" may run it again).
func TestComposeRegistersItsMerchants(t *testing.T) {
	t.Parallel()
	c, env := loadCompose(t)
	for _, name := range c.ServicesOf(prodstack.KindOrderAPI) {
		if got := c.Services[name].Environment["MERCHANTS"]; got != "registered" {
			t.Errorf("%s: MERCHANTS=%q, want registered", name, got)
		}
	}
	m, ok := c.Services[prodstack.MerchantsService]
	if !ok {
		t.Fatalf("no %s service", prodstack.MerchantsService)
	}
	ids, err := c.DemoMerchants()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ids, strings.Split(env["DEMO_MERCHANTS"], ",")) || !slices.Contains(ids, "m1") {
		t.Errorf("demo merchants %v, want deploy/.env.example's DEMO_MERCHANTS %q, with m1 (the README's examples)", ids, env["DEMO_MERCHANTS"])
	}
	if m.Environment["ORDERAPI_TOKEN"] != env["ORDERAPI_TOKEN"] {
		t.Errorf("%s: ORDERAPI_TOKEN %q, want the service token of deploy/.env", prodstack.MerchantsService, m.Environment["ORDERAPI_TOKEN"])
	}
	if depOK(m, "nginx") == "" {
		t.Errorf("%s must depend on nginx being healthy", prodstack.MerchantsService)
	}
	if m.Restart != "on-failure" || !m.ReadOnly || !slices.Contains(m.CapDrop, "ALL") {
		t.Errorf("%s: restart %q read_only %v cap_drop %v, want on-failure, read-only, ALL dropped", prodstack.MerchantsService, m.Restart, m.ReadOnly, m.CapDrop)
	}
	script := strings.Join(append(slices.Clone(m.Entrypoint), m.Command...), " ")
	ng := c.Services[c.ServicesOf(prodstack.KindNginx)[0]]
	for _, want := range []string{"$DEMO_MERCHANTS", "-X PUT", `"Authorization: Bearer $ORDERAPI_TOKEN"`,
		"http://nginx:" + ng.Environment["NGINX_LISTEN"] + "/api/merchants/$m", "curl -fsS"} {
		if !strings.Contains(script, want) {
			t.Errorf("%s runs %q: no %q", prodstack.MerchantsService, script, want)
		}
	}
}

// depOK returns dep when s depends on it being healthy, else "".
func depOK(s prodstack.Service, dep string) string {
	if s.DependsOn[dep].Condition == "service_healthy" {
		return dep
	}
	return ""
}

func TestComposeSettingsAreTheBinariesSettings(t *testing.T) {
	t.Parallel()
	root := launch.RepoRootT(t)
	c, env := loadCompose(t)
	settings := map[string]map[string]bool{
		prodstack.KindGateway:  binarySettings(t, root, "gateway"),
		prodstack.KindOrderAPI: binarySettings(t, root, "orderapi"),
	}
	for _, p := range settingProblems(c, env, settings) {
		t.Error(p)
	}

	// The check itself finds what it is for: an unknown variable, a missing
	// required one, a URL naming the wrong service.
	bad, _ := loadCompose(t)
	gw := bad.Services["gateway1"]
	gw.Environment["GATEWAY_QUEUE_SIZ"] = "10"
	delete(gw.Environment, "NODE_ID")
	gw.Environment["REDIS_URL"] = "redis://postgres:6379/0"
	problems := strings.Join(settingProblems(bad, env, settings), "\n")
	for _, want := range []string{"GATEWAY_QUEUE_SIZ is not a setting", "NODE_ID must be set", "REDIS_URL"} {
		if !strings.Contains(problems, want) {
			t.Errorf("a broken gateway1 is not reported for %q; problems:\n%s", want, problems)
		}
	}
}

// settingProblems checks every replica's environment against the settings
// its binary reads and the services the compose file defines.
func settingProblems(c *prodstack.Compose, env map[string]string, settings map[string]map[string]bool) []string {
	var out []string
	fail := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	required := map[string][]string{
		prodstack.KindGateway:  {"JWT_PUBLIC_KEY_FILE", "REDIS_URL", "GATEWAY_ADDR", "NODE_ID", "ORDERAPI_URL", "ORDERAPI_TOKEN"},
		prodstack.KindOrderAPI: {"JWT_PUBLIC_KEY_FILE", "REDIS_URL", "ORDERAPI_ADDR", "DATABASE_URL"},
	}
	pg := c.Services[c.ServicesOf(prodstack.KindPostgres)[0]].Environment
	ngName := c.ServicesOf(prodstack.KindNginx)[0]
	ngListen := c.Services[ngName].Environment["NGINX_LISTEN"]
	redisName := c.ServicesOf(prodstack.KindRedis)[0]

	for _, kind := range sortedKeys(settings) {
		known := settings[kind]
		for _, name := range c.ServicesOf(kind) {
			e := c.Services[name].Environment
			for _, k := range sortedKeys(e) {
				if !known[k] {
					fail("%s: %s is not a setting of the %s binary (it reads %v)", name, k, kind, sortedKeys(known))
				}
			}
			for _, k := range required[kind] {
				if e[k] == "" {
					fail("%s: %s must be set", name, k)
				}
			}
			rc, err := config.ParseRedisURL(e["REDIS_URL"])
			if err != nil || rc.Single == nil || rc.Single.Addr != redisName+":6379" {
				fail("%s: REDIS_URL %q does not name the %s service: %v", name, e["REDIS_URL"], redisName, err)
			}
			switch kind {
			case prodstack.KindOrderAPI:
				u, err := url.Parse(e["DATABASE_URL"])
				if err != nil {
					fail("%s: DATABASE_URL: %v", name, err)
					continue
				}
				pw, _ := u.User.Password()
				if u.Scheme != "postgres" || u.Host != "postgres:5432" || u.User.Username() != pg["POSTGRES_USER"] ||
					pw != env["POSTGRES_PASSWORD"] || u.Path != "/"+pg["POSTGRES_DB"] {
					fail("%s: DATABASE_URL does not match the postgres service (user, password, database)", name)
				}
			case prodstack.KindGateway:
				u, err := url.Parse(e["ORDERAPI_URL"])
				if err != nil || u.Host != ngName+":"+ngListen || u.Path != "/api" {
					fail("%s: ORDERAPI_URL %q: want http://%s:%s/api (the balanced order API)", name, e["ORDERAPI_URL"], ngName, ngListen)
				}
			}
		}
	}
	return out
}

func TestLoadComposeRejectsUnknownKeys(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "deploy"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ yaml, want string }{
		{"services:\n  a:\n    image: x\n    helthcheck: {}\n", "helthcheck"},
		{"servics:\n  a:\n    image: x\n", "servics"},
		{"services:\n  a:\n    image: ${MISSING}\n", "MISSING"},
	} {
		if err := os.WriteFile(filepath.Join(root, prodstack.ComposePath), []byte(c.yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := prodstack.LoadCompose(root, map[string]string{}); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("compose with %s: error %v", c.want, err)
		}
	}
}

func TestComposeNginxRendersTheSharedTemplate(t *testing.T) {
	t.Parallel()
	root := launch.RepoRootT(t)
	c, _ := loadCompose(t)
	ngName := c.ServicesOf(prodstack.KindNginx)[0]
	ng := c.Services[ngName]
	tmpl, err := os.ReadFile(filepath.Join(root, prodstack.TemplatePath))
	if err != nil {
		t.Fatal(err)
	}
	vars := prodstack.TemplateVariables(string(tmpl))

	// The template is mounted where the image renders templates, under the
	// name that replaces its default site.
	mounted := false
	for _, v := range ng.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) >= 2 && filepath.Clean(filepath.Join(root, "deploy", parts[0])) == filepath.Join(root, prodstack.TemplatePath) {
			mounted = parts[1] == "/etc/nginx/templates/default.conf.template"
		}
	}
	if !mounted {
		t.Errorf("nginx volumes %v do not mount %s as /etc/nginx/templates/default.conf.template", ng.Volumes, prodstack.TemplatePath)
	}

	// The envsubst filter lets through exactly the template's variables.
	filter, err := regexp.Compile(ng.Environment["NGINX_ENVSUBST_FILTER"])
	if err != nil {
		t.Fatalf("NGINX_ENVSUBST_FILTER: %v", err)
	}
	for _, v := range vars {
		if !filter.MatchString(v) {
			t.Errorf("NGINX_ENVSUBST_FILTER leaves out template variable %s", v)
		}
		if _, ok := ng.Environment[v]; !ok {
			t.Errorf("nginx service does not set template variable %s", v)
		}
	}
	for _, k := range []string{"PATH", "HOSTNAME", "NGINX_VERSION", "host"} {
		if filter.MatchString(k) {
			t.Errorf("NGINX_ENVSUBST_FILTER lets %s through", k)
		}
	}

	site, err := prodstack.RenderTemplate(string(tmpl), ng.Environment)
	if err != nil {
		t.Fatal(err)
	}
	for upstream, kind := range map[string]string{"orderpush_gateway": prodstack.KindGateway, "orderpush_orderapi": prodstack.KindOrderAPI} {
		var want []string
		for _, name := range c.ServicesOf(kind) {
			want = append(want, name+":"+listenPort(t, name, c.Services[name]))
		}
		got := upstreamServers(t, site, upstream)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("upstream %s has servers %v, want exactly the %s services %v", upstream, got, kind, want)
		}
	}
	if !strings.Contains(site, "listen "+ng.Environment["NGINX_LISTEN"]+" default_server;") {
		t.Error("rendered site does not listen on NGINX_LISTEN")
	}

	// nginx -t on the compose rendering, with the service names pointed at
	// loopback (they resolve only inside Docker); "resolve" needs nginx
	// 1.27.3 (the image's 1.28 has it), so it is dropped for an older
	// local nginx.
	bin := nginxBin(t)
	ver, err := prodstack.NginxVersion(t.Context(), bin)
	if err != nil {
		t.Fatal(err)
	}
	local := site
	for name := range c.Services {
		local = strings.ReplaceAll(local, "server "+name+":", "server 127.0.0.1:")
	}
	if !prodstack.VersionAtLeast(ver, "1.27.3") {
		local = strings.ReplaceAll(local, " resolve;", ";")
	}
	local = strings.Replace(local, "listen "+ng.Environment["NGINX_LISTEN"]+" ", "listen 127.0.0.1:"+freePort(t)+" ", 1)
	n, err := prodstack.WriteNginx(bin, t.TempDir(), local)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Test(t.Context()); err != nil {
		t.Fatal(err)
	}
}

var serverLine = regexp.MustCompile(`^\s*server\s+([^\s;]+)`)

// upstreamServers returns the server addresses of one upstream block.
func upstreamServers(t *testing.T, site, name string) []string {
	t.Helper()
	start := strings.Index(site, "upstream "+name+" {")
	if start < 0 {
		t.Fatalf("no upstream %s in the rendered site", name)
	}
	body := site[start:]
	body = body[:strings.Index(body, "}")]
	var out []string
	for _, line := range strings.Split(body, ";") {
		if m := serverLine.FindStringSubmatch(line); m != nil {
			out = append(out, m[1])
		}
	}
	return out
}

// TestComposeObservability: the optional profile's Prometheus scrapes
// exactly the compose replicas on their listen ports and loads the rules;
// Grafana is provisioned with the data source and the dashboard.
func TestComposeObservability(t *testing.T) {
	t.Parallel()
	root := launch.RepoRootT(t)
	c, _ := loadCompose(t)
	prom := c.Services[c.ServicesOf(prodstack.KindPrometheus)[0]]
	graf := c.Services[c.ServicesOf(prodstack.KindGrafana)[0]]
	mounts := func(s prodstack.Service) map[string]string {
		out := map[string]string{}
		for _, v := range s.Volumes {
			parts := strings.Split(v, ":")
			if strings.HasPrefix(parts[0], ".") {
				src := filepath.Join(root, "deploy", parts[0])
				if _, err := os.Stat(src); err != nil {
					t.Errorf("mount source %s: %v", parts[0], err)
				}
				out[parts[1]] = src
			}
		}
		return out
	}
	pm := mounts(prom)
	cfgFile := pm["/etc/prometheus/prometheus.yml"]
	if cfgFile == "" || pm["/etc/prometheus/orderpush.rules.yml"] == "" {
		t.Fatalf("prometheus mounts %v: want its config and the rules next to it", prom.Volumes)
	}
	b, err := os.ReadFile(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	var pc struct {
		RuleFiles     []string `yaml:"rule_files"`
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal(b, &pc); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(pc.RuleFiles, []string{"orderpush.rules.yml"}) {
		t.Errorf("rule_files %v", pc.RuleFiles)
	}
	jobs := map[string]string{"orderpush-gateway": prodstack.KindGateway, "orderpush-orderapi": prodstack.KindOrderAPI}
	for _, sc := range pc.ScrapeConfigs {
		kind, ok := jobs[sc.JobName]
		if !ok {
			t.Errorf("unexpected job %s", sc.JobName)
			continue
		}
		delete(jobs, sc.JobName)
		var got, want []string
		for _, st := range sc.StaticConfigs {
			got = append(got, st.Targets...)
		}
		for _, name := range c.ServicesOf(kind) {
			want = append(want, name+":"+listenPort(t, name, c.Services[name]))
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("job %s scrapes %v, want the %s replicas %v", sc.JobName, got, kind, want)
		}
	}
	if len(jobs) > 0 {
		t.Errorf("prometheus.yml lacks jobs %v (the rules and the dashboard use these names)", jobs)
	}
	gm := mounts(graf)
	if gm["/etc/grafana/provisioning"] == "" || gm["/var/lib/grafana/dashboards/orderpush.json"] == "" {
		t.Errorf("grafana mounts %v: want the provisioning directory and the dashboard", graf.Volumes)
	}
	ds, err := os.ReadFile(filepath.Join(root, "deploy", "grafana", "provisioning", "datasources", "prometheus.yml"))
	if err != nil || !strings.Contains(string(ds), "url: http://"+c.ServicesOf(prodstack.KindPrometheus)[0]+":9090") {
		t.Errorf("the Grafana data source does not point at the prometheus service: %v", err)
	}
	dp, err := os.ReadFile(filepath.Join(root, "deploy", "grafana", "provisioning", "dashboards", "orderpush.yml"))
	if err != nil || !strings.Contains(string(dp), "path: /var/lib/grafana/dashboards") {
		t.Errorf("the dashboard provider does not read the mounted dashboard directory: %v", err)
	}
}
