package pipeline

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/stretchr/testify/require"

	"github.com/omen-sidecar/omen/backtest"
	"github.com/omen-sidecar/omen/csvio"
	"github.com/omen-sidecar/omen/detect"
)

// TestBacktestScoresAsLive: `omen backtest` over a gauge's samples
// written as CSV gives the anomaly_score and yhat that omen serve stores
// for them with the default configuration, sample for sample: what a user
// tries on an export is what they would get live.
func TestBacktestScoresAsLive(t *testing.T) {
	const n = 700
	vs := seasonal(n, 7)
	vs[500] += 60 // a spike
	for i := 600; i < 640; i++ {
		vs[i] += 25 // a level shift
	}
	e := newEnv(t, "", nil, nil)
	ls := labels.FromStrings("__name__", "temperature", "job", "a")
	e.feed(ls, model.MetricTypeGauge, vs)

	dir := t.TempDir()
	in, out := filepath.Join(dir, "in.csv"), filepath.Join(dir, "out.csv")
	var b strings.Builder
	b.WriteString("timestamp,value\n")
	for i, v := range vs {
		fmt.Fprintf(&b, "%s,%s\n", csvio.FormatFloat(float64(t0.UnixMilli()+int64(i)*stepMs)/1000), csvio.FormatFloat(v))
	}
	require.NoError(t, os.WriteFile(in, []byte(b.String()), 0o644))
	require.NoError(t, backtest.File(context.Background(), nil, in, out, detect.DefaultOptions(), nil))
	bt, err := csvio.ReadFile(out)
	require.NoError(t, err)
	require.Len(t, bt.Rows, n)

	for _, col := range []struct {
		name string
		i    int // its column in the backtest's output
	}{{"anomaly_score", 2}, {"yhat", 3}, {"yhat_lower", 4}, {"yhat_upper", 5}} {
		live := liveByTime(t, e, col.name)
		require.NotEmpty(t, live, col.name)
		above, matched := 0, 0
		for i, row := range bt.Rows {
			v, ok := live[bt.Times[i]]
			if !ok {
				// Stored live once a minute (--output.tsdb-interval)
				// and whenever above 1; no band before the warm-up.
				continue
			}
			matched++
			want, err := csvio.ParseValue(row[col.i])
			require.NoError(t, err)
			// Stored as computed; the tolerance is for float32 state
			// kept live beside float64 in the CSV's formatting.
			require.InDelta(t, want, v, 1e-6*max(1, math.Abs(want)), "%s at row %d", col.name, i)
			if col.name == "anomaly_score" && v > 1 {
				above++
			}
		}
		require.Greater(t, matched, n/8, "%s: samples compared", col.name)
		if col.name == "anomaly_score" {
			require.Positive(t, above, "the spike and shift score above 1")
		}
	}
}

// liveByTime returns the samples of name{for="temperature"} by timestamp.
func liveByTime(t *testing.T, e *env, name string) map[int64]float64 {
	t.Helper()
	qr, err := e.db.Querier(math.MinInt64, math.MaxInt64)
	require.NoError(t, err)
	defer qr.Close()
	out := map[int64]float64{}
	ss := qr.Select(context.Background(), true, nil, eq("__name__", name), eq("for", "temperature"))
	for ss.Next() {
		it := ss.At().Iterator(nil)
		for it.Next() == chunkenc.ValFloat {
			ts, v := it.At()
			out[ts] = v
		}
	}
	require.NoError(t, ss.Err())
	return out
}
