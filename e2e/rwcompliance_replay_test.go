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

// The compliance suite's requests, as TestRWCompliance sent them, and what
// Prometheus 3 and omen answered: make rwcompliance-fixtures records them
// into testdata/rwcompliance, and TestRWComplianceReplay (make test, which
// does not build the suite) sends them to omen again.

type rwExchange struct {
	Case       string          `json:"case"`
	Request    capturedRequest `json:"request"`
	Prometheus rwAnswer        `json:"prometheus"`
	Omen       rwAnswer        `json:"omen"`
}

type rwExchanges struct {
	RecordedMs int64        `json:"recorded_ms"` // when the suite began: its timestamps are relative to it
	Exchanges  []rwExchange `json:"exchanges"`
}

// saveRWExchanges writes the cases' requests, in the order they were sent.
func saveRWExchanges(t *testing.T, dir string, at time.Time, names []string, cases map[string]map[string]*rwCase, rec *rwRecorder) {
	t.Helper()
	out := rwExchanges{RecordedMs: at.UnixMilli(), Exchanges: make([]rwExchange, len(rec.requests))}
	for _, n := range names {
		o := cases[n]["omen"]
		out.Exchanges[o.req] = rwExchange{Case: n, Request: rec.requests[o.req], Prometheus: cases[n]["prometheus"].answer, Omen: o.answer}
	}
	for i, e := range out.Exchanges {
		require.NotEmpty(t, e.Case, "request %d has no case", i)
	}
	b, err := json.MarshalIndent(out, "", " ")
	require.NoError(t, err)
	require.NoError(t, os.MkdirAll(dir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "exchanges.json"), append(b, '\n'), 0o644))
}

// shiftRW moves every timestamp of a snappy remote-write body (1.0 or 2.0
// by its Content-Type) by delta ms. A body the case made undecodable on
// purpose (bad snappy, bad protobuf, another encoding) is returned as it
// is: its answer does not depend on the time.
func shiftRW(r capturedRequest, delta int64) []byte {
	if r.Header.Get("Content-Encoding") != "snappy" {
		return r.Body
	}
	raw, err := snappy.Decode(nil, r.Body)
	if err != nil {
		return r.Body
	}
	var out []byte
	if r.Header.Get("Content-Type") == "application/x-protobuf" || r.Header.Get("Content-Type") == "application/x-protobuf;proto=prometheus.WriteRequest" {
		var wr prompb.WriteRequest
		if wr.Unmarshal(raw) != nil {
			return r.Body
		}
		for i := range wr.Timeseries {
			ts := &wr.Timeseries[i]
			for j := range ts.Samples {
				ts.Samples[j].Timestamp += delta
			}
			for j := range ts.Histograms {
				ts.Histograms[j].Timestamp += delta
			}
			for j := range ts.Exemplars {
				ts.Exemplars[j].Timestamp += delta
			}
		}
		out, err = wr.Marshal()
	} else {
		var wr writev2.Request
		if wr.Unmarshal(raw) != nil {
			return r.Body
		}
		shiftST := func(st *int64) {
			if *st != 0 {
				*st += delta
			}
		}
		for i := range wr.Timeseries {
			ts := &wr.Timeseries[i]
			for j := range ts.Samples {
				ts.Samples[j].Timestamp += delta
				shiftST(&ts.Samples[j].StartTimestamp)
			}
			for j := range ts.Histograms {
				ts.Histograms[j].Timestamp += delta
				shiftST(&ts.Histograms[j].StartTimestamp)
			}
			for j := range ts.Exemplars {
				ts.Exemplars[j].Timestamp += delta
			}
		}
		out, err = wr.Marshal()
	}
	if err != nil {
		return r.Body
	}
	return snappy.Encode(nil, out)
}

// TestRWComplianceReplay sends the suite's recorded requests to a fresh
// omen, in their order and moved to now, and requires each answer (status
// and Written headers) to be the one Prometheus 3 gave, but for
// rwSuiteDifferences, where it is omen's recorded one.
func TestRWComplianceReplay(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "rwcompliance", "exchanges.json"))
	require.NoError(t, err)
	var rec rwExchanges
	require.NoError(t, json.Unmarshal(b, &rec))
	require.Greater(t, len(rec.Exchanges), 100)

	om := startOmen(t, t.TempDir())
	delta := time.Now().UnixMilli() - rec.RecordedMs
	for i, e := range rec.Exchanges {
		req, err := http.NewRequest(http.MethodPost, om.URL+"/api/v1/write", bytes.NewReader(shiftRW(e.Request, delta)))
		require.NoError(t, err)
		req.Header = e.Request.Header.Clone()
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		want := e.Prometheus
		if _, ok := rwSuiteDifferences[e.Case]; ok {
			want = e.Omen
		}
		require.Equal(t, want, rwAnswerOf(resp), "request %d, %s: %s", i, e.Case, body)
	}
}
