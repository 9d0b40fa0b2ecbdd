// Package deploy holds no code: it is the folder of omen's deployment files
// (Kubernetes, Grafana, Alertmanager, Prometheus, Loki), and its tests check
// every one of them with the tool that consumes it (promtool, amtool,
// kustomize) or by decoding it into that tool's own types.
package deploy
