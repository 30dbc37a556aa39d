package observability

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// metricName finds the series names of the services in PromQL: everything
// the binaries export starts with one of these prefixes; label names, functions
// and keywords do not.
var metricName = regexp.MustCompile(`\b(?:gateway|orderapi|go|process)_[a-z0-9_]+\b`)

// NamesIn returns the metric names an expression uses. Names Prometheus
// itself makes (up) are not returned.
func NamesIn(expr string) []string { return metricName.FindAllString(expr, -1) }

// DashboardExprs returns every query of a Grafana dashboard JSON, by panel
// title.
func DashboardExprs(path string) (map[string][]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	out := map[string][]string{}
	for _, p := range d.Panels {
		for _, t := range p.Targets {
			out[p.Title] = append(out[p.Title], t.Expr)
		}
	}
	return out, nil
}

// RuleExprs returns every expression of a Prometheus rules file, by rule
// (alert or record) name.
func RuleExprs(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var f struct {
		Groups []struct {
			Rules []struct {
				Alert  string `yaml:"alert"`
				Record string `yaml:"record"`
				Expr   string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	out := map[string]string{}
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			out[r.Alert+r.Record] = r.Expr
		}
	}
	return out, nil
}

// Exported reads a Prometheus text page and returns the series names it
// can hold: every family, and for histograms and summaries their _bucket,
// _sum and _count series.
func Exported(page string) map[string]bool {
	out := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(page))
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 4 && f[0] == "#" && f[1] == "TYPE":
			out[f[2]] = true
			if f[3] == "histogram" || f[3] == "summary" {
				out[f[2]+"_sum"], out[f[2]+"_count"] = true, true
			}
			if f[3] == "histogram" {
				out[f[2]+"_bucket"] = true
			}
		case len(f) >= 2 && !strings.HasPrefix(f[0], "#"):
			name, _, _ := strings.Cut(f[0], "{")
			out[name] = true
		}
	}
	return out
}

// Missing returns, sorted, the names used in exprs that exported lacks, as
// "where: name"; and an entry for every expression that names no metric at
// all (a typo in a prefix would otherwise pass).
func Missing(exprs map[string][]string, exported map[string]bool) []string {
	var out []string
	for where, list := range exprs {
		for _, e := range list {
			names := NamesIn(e)
			if len(names) == 0 && !strings.Contains(e, "up{") {
				out = append(out, fmt.Sprintf("%s: %q names no metric of the services", where, e))
			}
			for _, n := range names {
				if !exported[n] {
					out = append(out, fmt.Sprintf("%s: %s", where, n))
				}
			}
		}
	}
	sort.Strings(out)
	return out
}
