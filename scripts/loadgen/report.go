package loadgen

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Target is a figure from issue 6 that a metric must meet.
type Target struct {
	Op    string  `json:"op"` // "<=" or ">="
	Value float64 `json:"value"`
}

// Met reports whether v meets the target.
func (t *Target) Met(v float64) bool {
	if t == nil || math.IsNaN(v) {
		return false
	}
	if t.Op == "<=" {
		return v <= t.Value
	}
	return v >= t.Value
}

func (t *Target) String() string {
	if t == nil {
		return ""
	}
	return t.Op + " " + fmtNum(t.Value)
}

// Metric is one measured figure of one run.
type Metric struct {
	Scenario string  `json:"scenario"`
	Variant  string  `json:"variant,omitempty"` // redis, sqlite, postgres, ...
	Run      int     `json:"run"`
	Name     string  `json:"metric"`
	Value    float64 `json:"value"`
	Unit     string  `json:"unit"`
	// Floor is the same figure for the floor measured in the same run (same
	// unit), zero when the metric has none.
	Floor  float64 `json:"floor,omitempty"`
	Target *Target `json:"target,omitempty"`
	// RatioTarget bounds Value/Floor (e.g. p99 within 2x of the floor).
	RatioTarget *Target `json:"ratioTarget,omitempty"`
}

// Ratio is Value/Floor, or NaN without a floor.
func (m Metric) Ratio() float64 {
	if m.Floor == 0 {
		return math.NaN()
	}
	return m.Value / m.Floor
}

// Report is what one scenario run produced.
type Report struct {
	Scenario string
	Variant  string
	Run      int
	Started  time.Time
	Metrics  []Metric
	Notes    []string // facts worth reading next to the figures (errors, slipped schedule)
}

// Add appends a metric and returns it for chaining a floor or target.
func (r *Report) Add(name string, value float64, unit string) *Metric {
	r.Metrics = append(r.Metrics, Metric{Scenario: r.Scenario, Variant: r.Variant, Run: r.Run, Name: name, Value: value, Unit: unit})
	return &r.Metrics[len(r.Metrics)-1]
}

// Metric returns the metric called name (nil when absent).
func (r *Report) Metric(name string) *Metric {
	for i := range r.Metrics {
		if r.Metrics[i].Name == name {
			return &r.Metrics[i]
		}
	}
	return nil
}

// Notef records a note.
func (r *Report) Notef(format string, args ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

// AddLatency adds count, p50, p90, p99, p99.9 and max in milliseconds, with
// the floor's figures when floor is not nil.
func (r *Report) AddLatency(prefix string, s Summary, floor *Summary) {
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	add := func(name string, v, f time.Duration) *Metric {
		m := r.Add(prefix+name, ms(v), "ms")
		if floor != nil {
			m.Floor = ms(f)
		}
		return m
	}
	var f Summary
	if floor != nil {
		f = *floor
	}
	// A latency figure over no samples is no figure: fail the row.
	r.Add(prefix+"samples", float64(s.Count), "").Target = &Target{Op: ">=", Value: 1}
	add("p50", s.P50, f.P50)
	add("p90", s.P90, f.P90)
	add("p99", s.P99, f.P99)
	add("p99.9", s.P999, f.P999)
	add("max", s.Max, f.Max)
}

// AddDelivery adds the loss accounting.
func (r *Report) AddDelivery(prefix string, d Delivery) {
	r.Add(prefix+"expected", float64(d.Expected), "frames")
	r.Add(prefix+"received", float64(d.Received), "frames")
	r.Add(prefix+"lost", float64(d.Lost), "frames").Target = &Target{Op: "<=", Value: 0}
	r.Add(prefix+"dup_or_reordered", float64(d.Stale), "frames").Target = &Target{Op: "<=", Value: 0}
	if d.Extra > 0 {
		r.Add(prefix+"extra", float64(d.Extra), "frames")
	}
}

// WriteJSON writes one JSON object per metric, then one per note.
func WriteJSON(w io.Writer, r *Report) error {
	enc := json.NewEncoder(w)
	for _, m := range r.Metrics {
		if err := enc.Encode(m); err != nil {
			return err
		}
	}
	for _, n := range r.Notes {
		if err := enc.Encode(map[string]any{"scenario": r.Scenario, "variant": r.Variant, "run": r.Run, "note": n}); err != nil {
			return err
		}
	}
	return nil
}

// WriteTable prints one run's metrics as an aligned table.
func WriteTable(w io.Writer, r *Report) {
	name := r.Scenario
	if r.Variant != "" {
		name += "/" + r.Variant
	}
	fmt.Fprintf(w, "\n== %s (run %d)\n", name, r.Run)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "metric\tvalue\tunit\tfloor\tratio\ttarget\t\t")
	for _, m := range r.Metrics {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", m.Name, fmtNum(m.Value), m.Unit,
			fmtFloor(m.Floor), fmtRatio(m.Ratio()), targets(m.Target, m.RatioTarget), verdict(m.Target, m.RatioTarget, m.Value, m.Ratio()))
	}
	tw.Flush()
	for _, n := range r.Notes {
		fmt.Fprintf(w, "  note: %s\n", n)
	}
}

// Row is one metric over several runs: the median and the spread.
type Row struct {
	Scenario, Variant, Name, Unit string
	Runs                          int
	Median, Lo, Hi                float64
	FloorMedian                   float64
	RatioMedian                   float64
	Target, RatioTarget           *Target
}

// Aggregate groups metrics of repeated runs by scenario, variant and name, in
// first-seen order.
func Aggregate(ms []Metric) []Row {
	type key struct{ s, v, n string }
	idx := map[key]int{}
	var rows []Row
	vals := map[key][3][]float64{}
	for _, m := range ms {
		k := key{m.Scenario, m.Variant, m.Name}
		if _, ok := idx[k]; !ok {
			idx[k] = len(rows)
			rows = append(rows, Row{Scenario: m.Scenario, Variant: m.Variant, Name: m.Name, Unit: m.Unit, Target: m.Target, RatioTarget: m.RatioTarget})
		}
		v := vals[k]
		v[0] = append(v[0], m.Value)
		if m.Floor != 0 {
			v[1] = append(v[1], m.Floor)
			v[2] = append(v[2], m.Ratio())
		}
		vals[k] = v
	}
	for k, i := range idx {
		v := vals[k]
		rows[i].Runs = len(v[0])
		rows[i].Median, rows[i].Lo, rows[i].Hi = Median(v[0])
		rows[i].FloorMedian, rows[i].RatioMedian = math.NaN(), math.NaN()
		if len(v[1]) > 0 {
			rows[i].FloorMedian, _, _ = Median(v[1])
			rows[i].RatioMedian, _, _ = Median(v[2])
		}
	}
	return rows
}

// WriteSummary prints aggregated rows: the median of the runs with its
// spread, the floor, the ratio and the verdict against issue 6's targets.
func WriteSummary(w io.Writer, rows []Row) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tmetric\tmedian\tspread\tunit\tfloor\tratio\ttarget\t\t")
	for _, r := range rows {
		name := r.Scenario
		if r.Variant != "" {
			name += "/" + r.Variant
		}
		spread := ""
		if r.Runs > 1 {
			spread = fmtNum(r.Lo) + ".." + fmtNum(r.Hi)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", name, r.Name, fmtNum(r.Median), spread, r.Unit,
			fmtFloor(r.FloorMedian), fmtRatio(r.RatioMedian), targets(r.Target, r.RatioTarget), verdict(r.Target, r.RatioTarget, r.Median, r.RatioMedian))
	}
	tw.Flush()
}

func targets(t, rt *Target) string {
	var s []string
	if t != nil {
		s = append(s, t.String())
	}
	if rt != nil {
		s = append(s, "ratio "+rt.String())
	}
	return strings.Join(s, ", ")
}

func verdict(t, rt *Target, v, ratio float64) string {
	if t == nil && rt == nil {
		return ""
	}
	if (t == nil || t.Met(v)) && (rt == nil || rt.Met(ratio)) {
		return "met"
	}
	return "MISSED"
}

func fmtFloor(f float64) string {
	if f == 0 || math.IsNaN(f) {
		return ""
	}
	return fmtNum(f)
}

func fmtRatio(r float64) string {
	if math.IsNaN(r) || math.IsInf(r, 0) {
		return ""
	}
	return strconv.FormatFloat(r, 'f', 2, 64) + "x"
}

// fmtNum prints integers plainly and fractions with 3 significant decimals.
func fmtNum(v float64) string {
	switch {
	case math.IsNaN(v):
		return "-"
	case v == math.Trunc(v) && math.Abs(v) < 1e15:
		return strconv.FormatInt(int64(v), 10)
	case math.Abs(v) >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case math.Abs(v) >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	default:
		return strconv.FormatFloat(v, 'f', 3, 64)
	}
}
