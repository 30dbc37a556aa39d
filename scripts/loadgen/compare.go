package loadgen

import (
	"fmt"
	"io"
	"math"
	"text/tabwriter"
)

// transportFigure is one line of the side-by-side table: a metric of a
// scenario, and the scenario's report variant for a transport.
type transportFigure struct {
	label, scenario, metric string
	variant                 func(transport string) string
}

// transportFigures are what differs between transports: the idle cost of
// a socket, the latency of frames straight to Redis, and fan-out; with the
// load generator's own cores, to show it was not the bottleneck.
func transportFigures(fanoutBatch bool) []transportFigure {
	idle := func(t string) string { return transportVariant("", t) }
	lat := func(t string) string { return transportVariant(ModeRedis, t) }
	fan := func(t string) string { return fanoutVariant(fanoutBatch, t) }
	return []transportFigure{
		{"idle: RSS per socket (KiB)", ScenarioIdle, "rss_per_socket", idle},
		{"idle: heap in use per socket (KiB)", ScenarioIdle, "heap_inuse_per_socket", idle},
		{"idle: stacks in use per socket (KiB)", ScenarioIdle, "stack_inuse_per_socket", idle},
		{"idle: goroutines per socket", ScenarioIdle, "goroutines_per_socket", idle},
		{"idle: connects/s", ScenarioIdle, "connects_per_s", idle},
		{"latency (redis): p50 (ms)", ScenarioLatency, "p50", lat},
		{"latency (redis): p99 (ms)", ScenarioLatency, "p99", lat},
		{"latency (redis): lost frames", ScenarioLatency, "lost", lat},
		{"latency (redis): load generator cores", ScenarioLatency, "loadgen_cpu_cores", lat},
		{"fanout: deliveries/s", ScenarioFanout, "deliveries_per_s", fan},
		{"fanout: gateway CPU per delivery (ns)", ScenarioFanout, "gateway_cpu_ns_per_delivery", fan},
		{"fanout: load generator cores", ScenarioFanout, "loadgen_cpu_cores", fan},
	}
}

// WriteTransports prints the transports' medians next to each other, each
// with its spread and its ratio to the first transport's median (ws in the
// bench). Figures a transport lacks print as "-".
func WriteTransports(w io.Writer, rows []Row, transports []string, fanoutBatch bool) {
	type key struct{ s, v, n string }
	byKey := map[key]Row{}
	for _, r := range rows {
		byKey[key{r.Scenario, r.Variant, r.Name}] = r
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "figure\t")
	for _, t := range transports {
		fmt.Fprintf(tw, "%s\tspread\tratio\t", t)
	}
	fmt.Fprintln(tw)
	for _, f := range transportFigures(fanoutBatch) {
		fmt.Fprintf(tw, "%s\t", f.label)
		base := math.NaN()
		for i, t := range transports {
			r, ok := byKey[key{f.scenario, f.variant(t), f.metric}]
			if !ok {
				fmt.Fprint(tw, "-\t\t\t")
				continue
			}
			if i == 0 {
				base = r.Median
			}
			spread := ""
			if r.Runs > 1 {
				spread = fmtNum(r.Lo) + ".." + fmtNum(r.Hi)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t", fmtNum(r.Median), spread, fmtRatio(r.Median/base))
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
}
