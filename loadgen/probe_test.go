package loadgen

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// scorer fakes omen for the probe: the write endpoint is the test receiver,
// and a probe sample's score is published delay after it arrives, except a
// series' first sample: the probe series may be a counter, which omen
// scores from its second sample on (a rate needs two).
type scorer struct {
	rc    *receiver
	delay time.Duration
	mu    sync.Mutex
	at    map[string]map[int64]time.Time // series key, sample time -> when it arrived
}

func (sc *scorer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/api/v1/write" {
		sc.rc.ServeHTTP(w, r)
		sc.rc.mu.Lock()
		defer sc.rc.mu.Unlock()
		sc.mu.Lock()
		defer sc.mu.Unlock()
		for key, s := range sc.rc.series {
			for _, t := range s.ts {
				if _, ok := sc.at[key][t]; !ok {
					if sc.at[key] == nil {
						sc.at[key] = map[int64]time.Time{}
					}
					sc.at[key][t] = time.Now()
				}
			}
		}
		return
	}
	// The selector {a="b",c="d"} names the receiver's key a=b,c=d.
	sel := r.URL.Query().Get("match[]")
	key := strings.ReplaceAll(strings.Trim(sel, "{}"), `"`, "")
	sc.mu.Lock()
	var last, first int64
	for t := range sc.at[key] {
		if first == 0 || t < first {
			first = t
		}
	}
	for t, at := range sc.at[key] {
		if time.Since(at) >= sc.delay && t > last && t != first {
			last = t
		}
	}
	sc.mu.Unlock()
	type anomaly struct {
		Timestamp time.Time `json:"timestamp"`
	}
	list := []anomaly{}
	if last > 0 {
		list = append(list, anomaly{time.UnixMilli(last).UTC()})
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"status": "success", "data": map[string]any{"anomalies": list}})
}

// probeKey is the receiver's key of series 99, the probe of a 100-series run.
func probeKey() string {
	ls, _ := seriesLabels(99)
	var parts []string
	for _, l := range ls {
		parts = append(parts, l.name+"="+l.value)
	}
	return strings.Join(parts, ",")
}

func TestRunProbeAndRate(t *testing.T) {
	sc := &scorer{rc: &receiver{t: t, protocol: 1, series: map[string]*received{}}, delay: 50 * time.Millisecond, at: map[string]map[int64]time.Time{}}
	srv := httptest.NewServer(sc)
	defer srv.Close()
	res, err := Run(context.Background(), nil, Options{URL: srv.URL + "/api/v1/write", Series: 100, Batch: 50, Concurrency: 2,
		Duration: time.Second, Rate: 1000, ProbeURL: srv.URL, ProbeEvery: 100 * time.Millisecond, DrainURL: srv.URL})
	require.NoError(t, err)
	p := res.Measured.Probe
	require.NotNil(t, p)
	require.GreaterOrEqual(t, p.Probes, 5)
	require.Zero(t, p.Missed)
	require.GreaterOrEqual(t, p.P50, 0.045, "the fake publishes 50 ms after the write")
	require.Less(t, p.P99, 0.5)
	// The rate caps the load at 1000 samples/s, not as fast as loopback: in
	// the measured second each worker sends its first request at once and
	// the others on schedule, 50 samples a tenth of a second, so no more
	// than 1000 samples and one request a worker (2 x 50) over at least a
	// second. No lower bound: a loaded machine sent a third of that (325
	// samples/s, where the test asked for 700 or more).
	require.Positive(t, res.Measured.Accepted)
	require.LessOrEqual(t, res.Measured.SamplesPerSecond, 1100.0)
	// The drain check waits for its markers, published 50 ms after arrival.
	require.GreaterOrEqual(t, res.Measured.DrainSeconds, 0.045)
	require.Less(t, res.Measured.DrainSeconds, 5.0)
	// The workers leave the probe's series alone: only the probe writes it.
	sc.rc.mu.Lock()
	defer sc.rc.mu.Unlock()
	require.Len(t, sc.rc.series, 100)
	require.Len(t, sc.rc.series[probeKey()].ts, p.Probes+2) // the probes, an untimed first sample and the drain marker
}
