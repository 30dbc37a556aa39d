package prodstack_test

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"orderpush/scripts/launch"
	"orderpush/scripts/prodstack"
)

// stage is one FROM ... AS name section of a Dockerfile.
type stage struct {
	base  string
	lines []string // instructions after FROM, continuation lines joined
}

func parseDockerfile(t *testing.T, path string) (args map[string]string, stages map[string]*stage) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	args, stages = map[string]string{}, map[string]*stage{}
	var cur *stage
	var pending string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if pending == "" && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			pending += strings.TrimSuffix(line, "\\") + " "
			continue
		}
		line, pending = pending+line, ""
		fields := strings.Fields(line)
		switch strings.ToUpper(fields[0]) {
		case "ARG":
			if cur == nil {
				k, v, _ := strings.Cut(fields[1], "=")
				args[k] = v
				continue
			}
		case "FROM":
			if len(fields) != 4 || !strings.EqualFold(fields[2], "AS") {
				t.Fatalf("%s: want FROM <image> AS <name>: %q", path, line)
			}
			cur = &stage{base: fields[1]}
			stages[fields[3]] = cur
			continue
		}
		if cur == nil {
			t.Fatalf("%s: instruction before the first FROM: %q", path, line)
		}
		cur.lines = append(cur.lines, line)
	}
	return args, stages
}

func (s *stage) instr(name string) []string {
	var out []string
	for _, l := range s.lines {
		if f := strings.Fields(l); strings.EqualFold(f[0], name) {
			out = append(out, strings.TrimSpace(l[len(f[0]):]))
		}
	}
	return out
}

func TestDockerfileBuildsSmallStaticNonRootImages(t *testing.T) {
	t.Parallel()
	root := launch.RepoRootT(t)
	c, _ := loadCompose(t)
	args, stages := parseDockerfile(t, filepath.Join(root, prodstack.DockerfilePath))

	// The Go image matches the workspace's Go version.
	work, err := os.ReadFile(filepath.Join(root, "go.work"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(work)
	if m == nil || args["GO_VERSION"] != string(m[1]) {
		t.Errorf("ARG GO_VERSION=%q, go.work says go %s", args["GO_VERSION"], m[1])
	}
	build := stages["build"]
	if build == nil || !strings.HasPrefix(build.base, "golang:${GO_VERSION}") {
		t.Fatalf("no build stage FROM golang:${GO_VERSION}")
	}
	if env := strings.Join(build.instr("ENV"), " "); !strings.Contains(env, "CGO_ENABLED=0") {
		t.Error("the build stage does not set CGO_ENABLED=0 (static binaries)")
	}

	// Every COPY source from the context exists.
	for name, st := range stages {
		for _, cp := range st.instr("COPY") {
			if strings.HasPrefix(cp, "--from=") {
				continue
			}
			f := strings.Fields(cp)
			for _, src := range f[:len(f)-1] {
				if _, err := os.Stat(filepath.Join(root, src)); err != nil {
					t.Errorf("stage %s: COPY %s: %v", name, src, err)
				}
			}
		}
	}

	for _, target := range []string{prodstack.KindGateway, prodstack.KindOrderAPI} {
		st := stages[target]
		if st == nil {
			t.Errorf("no %s stage", target)
			continue
		}
		if !strings.HasPrefix(st.base, "gcr.io/distroless/static") && st.base != "scratch" {
			t.Errorf("%s: base %s: want distroless static or scratch (no shell)", target, st.base)
		}
		user := st.instr("USER")
		if len(user) != 1 || strings.HasPrefix(user[0], "0") || strings.HasPrefix(user[0], "root") {
			t.Errorf("%s: USER %v: want a non-root user", target, user)
		}
		entry := st.instr("ENTRYPOINT")
		if len(entry) != 1 || entry[0] != `["/usr/local/bin/`+target+`"]` {
			t.Errorf("%s: ENTRYPOINT %v: want the exec form of the binary", target, entry)
		}
		copies := strings.Join(st.instr("COPY"), "\n")
		for _, bin := range []string{"/usr/local/bin/" + target, "/usr/local/bin/healthcheck"} {
			if !strings.Contains(copies, bin) {
				t.Errorf("%s: nothing copied to %s", target, bin)
			}
		}
		// The compose services built from this target listen where the
		// image says and check health with the binary it ships.
		for _, name := range c.ServicesOf(target) {
			svc := c.Services[name]
			if svc.Build.Dockerfile != prodstack.DockerfilePath || filepath.Clean(filepath.Join(root, "deploy", svc.Build.Context)) != root {
				t.Errorf("%s: build %+v: want context .. and dockerfile %s", name, svc.Build, prodstack.DockerfilePath)
			}
			port := listenPort(t, name, svc)
			if expose := st.instr("EXPOSE"); len(expose) != 1 || expose[0] != port {
				t.Errorf("%s: EXPOSE %v, compose listens on %s", name, expose, port)
			}
			if svc.Healthcheck.Test[1] != "/usr/local/bin/healthcheck" {
				t.Errorf("%s: health check runs %s, the image has /usr/local/bin/healthcheck", name, svc.Healthcheck.Test[1])
			}
		}
		hc := strings.Join(st.instr("HEALTHCHECK"), " ")
		if !strings.Contains(hc, "/readyz") {
			t.Errorf("%s: HEALTHCHECK %q does not ask /readyz", target, hc)
		}
	}
	for _, pkg := range []string{"./gateway/cmd/gateway", "./orderapi/cmd/orderapi", "./scripts/cmd/healthcheck"} {
		found := false
		for _, st := range stages {
			for _, run := range st.instr("RUN") {
				found = found || strings.Contains(run, "go build") && strings.Contains(run, pkg)
			}
		}
		if !found {
			t.Errorf("no stage builds %s", pkg)
		}
	}
}

// TestDockerBuildContextHoldsEveryPackage checks that the files a binary is
// built from reach its build stage: every package of the repository it
// imports lies under a COPY of that stage's chain, the Dockerfile's ignore
// file lets every COPY source through, and no embedded file is one the
// ignore file drops. (Building the images needs Docker; this is what can go
// wrong without it showing here.)
func TestDockerBuildContextHoldsEveryPackage(t *testing.T) {
	t.Parallel()
	root := launch.RepoRootT(t)
	_, stages := parseDockerfile(t, filepath.Join(root, prodstack.DockerfilePath))
	ignore, err := os.ReadFile(filepath.Join(root, prodstack.DockerfilePath+".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	allowed := map[string]bool{}
	for _, line := range strings.Split(string(ignore), "\n") {
		if p, ok := strings.CutPrefix(strings.TrimSpace(line), "!"); ok {
			allowed[p] = true
		}
	}
	copied := func(stageNames ...string) []string {
		var srcs []string
		for _, name := range stageNames {
			st := stages[name]
			if st == nil {
				t.Fatalf("no stage %s", name)
			}
			for _, cp := range st.instr("COPY") {
				if strings.HasPrefix(cp, "--from=") {
					continue
				}
				f := strings.Fields(cp)
				for _, src := range f[:len(f)-1] {
					if !letThrough(allowed, src) {
						t.Errorf("stage %s copies %s, which %s.dockerignore does not let through", name, src, prodstack.DockerfilePath)
					}
					srcs = append(srcs, src)
				}
			}
		}
		return srcs
	}
	for pkg, chain := range map[string][]string{
		"./gateway/cmd/gateway":     {"build", "build-gateway"},
		"./orderapi/cmd/orderapi":   {"build", "build-orderapi"},
		"./scripts/cmd/healthcheck": {"build"},
	} {
		srcs := copied(chain...)
		cmd := exec.CommandContext(t.Context(), "go", "list", "-deps", "-f", "{{.Dir}}\t{{join .EmbedFiles \",\"}}", pkg)
		cmd.Dir = root
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			dir, embeds, _ := strings.Cut(line, "\t")
			rel, err := filepath.Rel(root, dir)
			if err != nil || strings.HasPrefix(rel, "..") {
				continue // the standard library or the module cache
			}
			in := false
			for _, src := range srcs {
				in = in || strings.HasPrefix(rel+"/", strings.TrimSuffix(src, "/")+"/")
			}
			if !in {
				t.Errorf("%s needs %s, which stages %v do not copy", pkg, rel, chain)
			}
			for _, e := range strings.Split(embeds, ",") {
				if strings.Contains("/"+e, "/testdata/") || strings.HasSuffix(e, "_test.go") || strings.Contains(e, "node_modules") {
					t.Errorf("%s embeds %s/%s, which the ignore file drops", pkg, rel, e)
				}
			}
		}
	}
}

// letThrough reports whether a "!path" or "!dir/**" line of the ignore file
// re-includes src.
func letThrough(allowed map[string]bool, src string) bool {
	src = strings.TrimSuffix(src, "/")
	if allowed[src] {
		return true
	}
	for p := range allowed {
		if dir, ok := strings.CutSuffix(p, "/**"); ok && (src == dir || strings.HasPrefix(src, dir+"/")) {
			return true
		}
	}
	return false
}
