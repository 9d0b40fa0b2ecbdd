// Package e2e holds omen's end-to-end tests: the real omen binary against
// the real Prometheus (Debian's package), on loopback. They run in
// `make test` (OMEN_E2E=1, where a missing tool is a failure) and are
// skipped elsewhere when the tools are missing.
package e2e
