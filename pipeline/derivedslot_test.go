package pipeline

import (
	"bytes"
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/omen-sidecar/omen/config"
	omentsdb "github.com/omen-sidecar/omen/tsdb"
)

// TestDerivedWaitedForQuerySlot: a derived input's evaluation that times
// out waiting for a query slot (--query.max-concurrency's, every one held
// by a slow user query) says so, and names the input. It logged only
// "context deadline exceeded", which did not tell an operator to raise the
// limit (or find the queries that held the slots).
func TestDerivedWaitedForQuerySlot(t *testing.T) {
	tr, err := omentsdb.NewQueryTracker(nil, t.TempDir(), 1)
	require.NoError(t, err)
	defer func() { require.NoError(t, tr.Close()) }()
	o := omentsdb.DefaultAPIOptions()
	o.Tracker = tr
	engine := omentsdb.NewEngine(nil, prometheus.NewRegistry(), o)
	cfg, err := config.Load([]byte("derived:\n  - {name: doubled, expr: level * 2, interval: 1s}\n"))
	require.NoError(t, err)
	e := newEnvEngine(t, "", cfg, engine, nil)
	e.ready(t) // Run logs until then
	var buf bytes.Buffer
	e.p.logger = slog.New(slog.NewTextHandler(&buf, nil))

	// The one slot, held as a slow query holds it.
	slot, err := tr.Insert(context.Background(), "slow_query")
	require.NoError(t, err)
	e.p.evalDerived(context.Background(), &cfg.Derived[0], t0)
	tr.Delete(slot)

	require.Equal(t, 1.0, testutil.ToFloat64(e.p.m.derivedErrs.WithLabelValues("doubled")))
	logs := buf.String()
	require.Contains(t, logs, `msg="Derived input: evaluation failed" name=doubled`)
	require.Contains(t, logs, "waiting for a query slot", logs)
	require.Contains(t, logs, "--query.max-concurrency", logs)
	require.Contains(t, logs, "context deadline exceeded", "the cause, still")

	// With the slot free, it evaluates.
	e.p.evalDerived(context.Background(), &cfg.Derived[0], t0.Add(time.Second))
	require.Equal(t, 1.0, testutil.ToFloat64(e.p.m.derivedErrs.WithLabelValues("doubled")))
}
