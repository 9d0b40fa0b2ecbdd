package promdefault

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
)

// TestAdopt: a collector the default registry holds is put on reg, the
// very one (what it counts shows on reg), once however often adopted; a
// probe of a name it does not hold is taken back from it, and one of a
// name it holds otherwise described is an error.
func TestAdopt(t *testing.T) {
	held := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "promdefault_test_total", Help: "Held."}, []string{"a"})
	prometheus.MustRegister(held)
	t.Cleanup(func() { prometheus.Unregister(held) })
	probe := func(help string, labels ...string) prometheus.Collector {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: "promdefault_test_total", Help: help}, labels)
	}
	reg := prometheus.NewRegistry()
	for range 2 {
		ok, err := Adopt(reg, probe("Held.", "a"))
		require.NoError(t, err)
		require.True(t, ok)
	}
	held.WithLabelValues("x").Add(3)
	require.Equal(t, 3.0, testutil.ToFloat64(held.WithLabelValues("x")))
	n, err := testutil.GatherAndCount(reg, "promdefault_test_total")
	require.NoError(t, err)
	require.Equal(t, 1, n)

	_, err = Adopt(prometheus.NewRegistry(), probe("Other help.", "a"))
	require.Error(t, err)
	_, err = Adopt(prometheus.NewRegistry(), probe("Held.", "b"))
	require.Error(t, err)

	other := prometheus.NewCounter(prometheus.CounterOpts{Name: "promdefault_test_other_total", Help: "Not held."})
	ok, err := Adopt(reg, other)
	require.NoError(t, err)
	require.False(t, ok)
	require.True(t, prometheus.Register(other) == nil, "taken back from the default registry")
	prometheus.Unregister(other)

	ok, err = Adopt(nil, probe("Held.", "a"))
	require.NoError(t, err)
	require.False(t, ok)
}
