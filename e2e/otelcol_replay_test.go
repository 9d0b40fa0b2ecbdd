package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"github.com/stretchr/testify/require"
)

// TestOTelCollectorReplay replays into omen the requests the real
// collector's prometheusremotewrite exporter sent in TestOTelCollector
// (testdata/otelcol, made by make otelcol-fixtures: the collector's cold
// build takes minutes, too long for make test), in the order omen got
// them, headers and bodies as sent but for the timestamps, moved so that
// the last is now. omen must answer each 204 (a 4xx the exporter drops) and
// keep what TestOTelCollector checks.
func TestOTelCollectorReplay(t *testing.T) {
	for _, tc := range []struct {
		fixture string
		names   otelNames
		omen    []string
		ooo     bool // the fixture holds a series' samples out of order
	}{
		{fixture: "rw1", names: withSuffixes},
		{fixture: "rw2", names: withoutSuffixes},
		{fixture: "parallel-consumers", names: withSuffixes, omen: []string{"--storage.tsdb.out-of-order-time-window=30m"}, ooo: true},
	} {
		t.Run(tc.fixture, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata", "otelcol", tc.fixture+".json"))
			require.NoError(t, err)
			var reqs []capturedRequest
			require.NoError(t, json.Unmarshal(b, &reqs))
			end := time.Now().Truncate(time.Second)
			bodies, ooo := shiftRequests(t, reqs, end.UnixMilli())
			require.Equal(t, tc.ooo, ooo, "the fixture's samples out of order")

			omen := startOmen(t, t.TempDir(), tc.omen...)
			for i, r := range reqs {
				req, err := http.NewRequest(http.MethodPost, omen.URL+"/api/v1/write", bytes.NewReader(bodies[i]))
				require.NoError(t, err)
				req.Header = r.Header.Clone()
				resp, err := http.DefaultClient.Do(req)
				require.NoError(t, err)
				answer, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				require.Equal(t, http.StatusNoContent, resp.StatusCode, "request %d (%s): %s", i, r.Header.Get("Content-Type"), answer)
			}
			requireOTelStored(t, omen.URL, tc.names, 40, end)
		})
	}
}

// shiftRequests returns the requests' bodies with every timestamp moved by
// one offset, so that the latest is end; and whether a series' samples
// come out of order across them (as the exporter's parallel consumers
// send them).
func shiftRequests(t *testing.T, reqs []capturedRequest, end int64) (bodies [][]byte, ooo bool) {
	t.Helper()
	decoded := make([][]byte, len(reqs))
	latest := int64(0)
	for i, r := range reqs {
		var err error
		decoded[i], err = snappy.Decode(nil, r.Body)
		require.NoError(t, err)
	}
	// Two passes over each body: the first finds the latest timestamp,
	// the second moves them all.
	for pass := range 2 {
		delta := end - latest
		last := map[string]int64{}
		for i, r := range reqs {
			var out []byte
			var err error
			visit := func(series string, ts *int64) {
				if pass == 0 {
					latest = max(latest, *ts)
					if *ts < last[series] {
						ooo = true
					}
					last[series] = max(last[series], *ts)
					return
				}
				*ts += delta
			}
			if r.Header.Get("Content-Type") == "application/x-protobuf" {
				var wr prompb.WriteRequest
				require.NoError(t, wr.Unmarshal(decoded[i]))
				for j := range wr.Timeseries {
					key := string(mustJSON(t, wr.Timeseries[j].Labels))
					for k := range wr.Timeseries[j].Samples {
						visit(key, &wr.Timeseries[j].Samples[k].Timestamp)
					}
					for k := range wr.Timeseries[j].Histograms {
						visit(key, &wr.Timeseries[j].Histograms[k].Timestamp)
					}
				}
				out, err = wr.Marshal()
			} else {
				var wr writev2.Request
				require.NoError(t, wr.Unmarshal(decoded[i]))
				for j := range wr.Timeseries {
					var ls []string
					for _, ref := range wr.Timeseries[j].LabelsRefs {
						ls = append(ls, wr.Symbols[ref])
					}
					key := string(mustJSON(t, ls))
					for k := range wr.Timeseries[j].Samples {
						smp := &wr.Timeseries[j].Samples[k]
						visit(key, &smp.Timestamp)
						if pass == 1 && smp.StartTimestamp != 0 {
							smp.StartTimestamp += delta
						}
					}
					for k := range wr.Timeseries[j].Histograms {
						h := &wr.Timeseries[j].Histograms[k]
						visit(key, &h.Timestamp)
						if pass == 1 && h.StartTimestamp != 0 {
							h.StartTimestamp += delta
						}
					}
				}
				out, err = wr.Marshal()
			}
			require.NoError(t, err)
			if pass == 1 {
				bodies = append(bodies, snappy.Encode(nil, out))
			}
		}
	}
	return bodies, ooo
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b
}
