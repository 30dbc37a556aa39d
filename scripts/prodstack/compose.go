package prodstack

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Paths of the deploy files, relative to the repository root.
const (
	ComposePath    = "deploy/docker-compose.yml"
	EnvExamplePath = "deploy/.env.example"
	DockerfilePath = "deploy/Dockerfile"
	TemplatePath   = "deploy/nginx/orderpush.conf.template"
)

// Compose is the part of a compose file this package understands. Unknown
// service keys are an error, so a typo in the file fails its test.
type Compose struct {
	Name     string             `yaml:"name"`
	Services map[string]Service `yaml:"services"`
	Volumes  map[string]any     `yaml:"volumes"`
	// Secrets are files compose mounts at /run/secrets/<name> in the
	// services that list them (the token public key).
	Secrets map[string]SecretFile `yaml:"secrets"`
	// Extensions holds the top-level keys that are not part of the model;
	// only x-* extension fields are allowed there.
	Extensions map[string]any `yaml:",inline"`
}

// Service is one compose service.
type Service struct {
	Image           string                `yaml:"image"`
	Build           *Build                `yaml:"build"`
	Entrypoint      []string              `yaml:"entrypoint"`
	Command         []string              `yaml:"command"`
	Environment     map[string]string     `yaml:"environment"`
	Ports           []string              `yaml:"ports"`
	Volumes         []string              `yaml:"volumes"`
	DependsOn       map[string]Dependency `yaml:"depends_on"`
	Healthcheck     *Healthcheck          `yaml:"healthcheck"`
	Restart         string                `yaml:"restart"`
	ReadOnly        bool                  `yaml:"read_only"`
	CapDrop         []string              `yaml:"cap_drop"`
	SecurityOpt     []string              `yaml:"security_opt"`
	StopGracePeriod string                `yaml:"stop_grace_period"`
	Secrets         []string              `yaml:"secrets"`
	// Profiles: a service with a profile runs only when it is asked for
	// (docker compose --profile observability up).
	Profiles []string `yaml:"profiles"`
}

// SecretFile is a top-level compose secret read from a file (relative to
// the compose file).
type SecretFile struct {
	File string `yaml:"file"`
}

// SecretPath is where compose mounts secret name inside a container.
func SecretPath(name string) string { return "/run/secrets/" + name }

// Build is a service's build section.
type Build struct {
	Context    string `yaml:"context"`
	Dockerfile string `yaml:"dockerfile"`
	Target     string `yaml:"target"`
}

// Dependency is one depends_on entry.
type Dependency struct {
	Condition string `yaml:"condition"`
}

// Healthcheck is a service's health check.
type Healthcheck struct {
	Test        []string `yaml:"test"`
	Interval    string   `yaml:"interval"`
	Timeout     string   `yaml:"timeout"`
	Retries     int      `yaml:"retries"`
	StartPeriod string   `yaml:"start_period"`
}

// Kinds of service, as Kind reports them.
const (
	KindGateway  = "gateway"
	KindOrderAPI = "orderapi"
	KindRedis    = "redis"
	KindPostgres = "postgres"
	KindNginx    = "nginx"
	// The observability profile.
	KindPrometheus = "prometheus"
	KindGrafana    = "grafana"
	// KindCurl is the one-shot that registers the demo merchants
	// (MerchantsService); the process stack does what it does itself.
	KindCurl = "curl"
)

// MerchantsService is the compose service that registers the merchants of
// its DEMO_MERCHANTS with PUT /api/merchants/{id} when the stack starts.
const MerchantsService = "merchants"

// DemoMerchants are the merchant ids MerchantsService registers.
func (c *Compose) DemoMerchants() ([]string, error) {
	svc, ok := c.Services[MerchantsService]
	if !ok {
		return nil, fmt.Errorf("compose: no %s service", MerchantsService)
	}
	var ids []string
	for _, id := range strings.Split(svc.Environment["DEMO_MERCHANTS"], ",") {
		if id = strings.TrimSpace(id); id != "" {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("compose %s: DEMO_MERCHANTS is empty", MerchantsService)
	}
	return ids, nil
}

// Kind is the build target of a service built from this repository
// (gateway, orderapi), else the image name without registry and tag
// (redis, postgres, nginx).
func (s Service) Kind() string {
	if s.Build != nil && s.Build.Target != "" {
		return s.Build.Target
	}
	name := s.Image
	if i := strings.LastIndex(name, "/"); i >= 0 {
		name = name[i+1:]
	}
	name, _, _ = strings.Cut(name, ":")
	return name
}

// ServicesOf returns the names of the services of one kind, sorted.
func (c *Compose) ServicesOf(kind string) []string {
	var names []string
	for name, s := range c.Services {
		if s.Kind() == kind {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names
}

// LoadCompose reads the compose file under root, interpolating ${VAR}
// forms with env the way docker compose does (see Interpolate). An unset
// variable without a default is an error, not an empty string.
func LoadCompose(root string, env map[string]string) (*Compose, error) {
	path := filepath.Join(root, ComposePath)
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("compose: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("compose %s: %w", path, err)
	}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	if err := interpolateNode(&doc, lookup); err != nil {
		return nil, fmt.Errorf("compose %s: %w", path, err)
	}
	// Decode again from the interpolated text so unknown keys are caught
	// (a yaml.Node has no strict decode).
	text, err := yaml.Marshal(&doc)
	if err != nil {
		return nil, fmt.Errorf("compose %s: %w", path, err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(text))
	dec.KnownFields(true)
	var c Compose
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("compose %s: %w", path, err)
	}
	for k := range c.Extensions {
		if !strings.HasPrefix(k, "x-") {
			return nil, fmt.Errorf("compose %s: unknown top-level key %q", path, k)
		}
	}
	return &c, nil
}

// interpolateNode interpolates every scalar under n. Keys are left alone:
// compose interpolates values only.
func interpolateNode(n *yaml.Node, lookup func(string) (string, bool)) error {
	switch n.Kind {
	case yaml.ScalarNode:
		v, err := Interpolate(n.Value, lookup)
		if err != nil {
			return err
		}
		n.Value = v
	case yaml.MappingNode:
		for i := 1; i < len(n.Content); i += 2 {
			if err := interpolateNode(n.Content[i], lookup); err != nil {
				return fmt.Errorf("%s: %w", n.Content[i-1].Value, err)
			}
		}
	case yaml.DocumentNode, yaml.SequenceNode:
		for _, c := range n.Content {
			if err := interpolateNode(c, lookup); err != nil {
				return err
			}
		}
	}
	return nil
}

// Interpolate expands the compose forms $$, $NAME, ${NAME}, ${NAME:-default},
// ${NAME-default}, ${NAME:?message} and ${NAME?message}. ":" forms treat an
// empty value as unset. An unset variable without a default is an error.
func Interpolate(s string, lookup func(string) (string, bool)) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '$' || i+1 == len(s) {
			b.WriteByte(c)
			continue
		}
		switch next := s[i+1]; {
		case next == '$':
			b.WriteByte('$')
			i++
		case next == '{':
			end := strings.IndexByte(s[i:], '}')
			if end < 0 {
				return "", fmt.Errorf("unterminated ${ in %q", s)
			}
			v, err := expand(s[i+2:i+end], lookup)
			if err != nil {
				return "", err
			}
			b.WriteString(v)
			i += end
		case isNameStart(next):
			j := i + 1
			for j < len(s) && isNameChar(s[j]) {
				j++
			}
			v, err := expand(s[i+1:j], lookup)
			if err != nil {
				return "", err
			}
			b.WriteString(v)
			i = j - 1
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

func expand(expr string, lookup func(string) (string, bool)) (string, error) {
	j := 0
	for j < len(expr) && isNameChar(expr[j]) {
		j++
	}
	name, op := expr[:j], expr[j:]
	if name == "" || !isNameStart(name[0]) {
		return "", fmt.Errorf("bad variable reference ${%s}", expr)
	}
	v, set := lookup(name)
	switch {
	case op == "":
		if !set {
			return "", fmt.Errorf("variable %s is not set and has no default", name)
		}
		return v, nil
	case strings.HasPrefix(op, ":-"):
		if !set || v == "" {
			return op[2:], nil
		}
		return v, nil
	case strings.HasPrefix(op, "-"):
		if !set {
			return op[1:], nil
		}
		return v, nil
	case strings.HasPrefix(op, ":?"):
		if !set || v == "" {
			return "", fmt.Errorf("variable %s: %s", name, op[2:])
		}
		return v, nil
	case strings.HasPrefix(op, "?"):
		if !set {
			return "", fmt.Errorf("variable %s: %s", name, op[1:])
		}
		return v, nil
	}
	return "", fmt.Errorf("bad variable reference ${%s}", expr)
}

func isNameStart(c byte) bool { return c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' }
func isNameChar(c byte) bool  { return isNameStart(c) || c >= '0' && c <= '9' }

// LoadEnvFile reads a compose .env file: KEY=VALUE lines, # comments and
// blank lines ignored, one level of matching quotes around a value removed.
func LoadEnvFile(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("env file: %w", err)
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" || !isNameStart(k[0]) || strings.IndexFunc(k, func(r rune) bool { return r > 127 || !isNameChar(byte(r)) }) >= 0 {
			return nil, fmt.Errorf("env file %s:%d: want KEY=VALUE", path, n)
		}
		v = strings.TrimSpace(v)
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		}
		env[k] = v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("env file %s: %w", path, err)
	}
	if len(env) == 0 {
		return nil, errors.New("env file " + path + " sets nothing")
	}
	return env, nil
}
