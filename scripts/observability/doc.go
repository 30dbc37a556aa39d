// Package observability holds the tests of the monitoring files in deploy/:
// the Grafana dashboard (deploy/grafana) and the Prometheus configuration
// and alert rules (deploy/prometheus). Its helpers read metric names from
// PromQL and from a /metrics page.
package observability
