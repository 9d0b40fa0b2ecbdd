// Package e2e holds omen's end-to-end tests: the real omen binary against
// the real Prometheus (Debian's package, and Prometheus 3 built by
// `make deps-prom3` for remote-write 2.0) and VictoriaMetrics' vmagent and
// victoria-metrics (built by `make deps-vm` from the module in
// victoriametrics/), and Debian's Alertmanager running the shipped
// configuration (alertmanager_test.go), on loopback. They run in
// `make test` (OMEN_E2E=1, where a missing tool is a failure) and are
// skipped elsewhere when the tools are missing. The tests with the real
// OpenTelemetry Collector (otelcol_test.go; its build, from the module in
// otelcol/, takes minutes) run in `make test-otelcol` alone; `make test`
// replays the requests they recorded (testdata/otelcol).
package e2e
