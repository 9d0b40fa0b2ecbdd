module github.com/omen-sidecar/omen/e2e/rwcompliance

go 1.26.8

require github.com/prometheus/complicance/remotewrite2 v0.0.0-20260806071727-67b8327a2e93

replace github.com/prometheus/complicance/remotewrite2 => github.com/prometheus/compliance/remotewrite/receiver v0.0.0-20260806071727-67b8327a2e93
