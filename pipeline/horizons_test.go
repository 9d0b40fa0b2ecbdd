package pipeline

import (
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/stretchr/testify/require"

	"github.com/omen-sidecar/omen/config"
)

// TestHorizonCache: selections with the same horizons get the same slices,
// equal to horizonsOf's; other horizons get their own; the cache holds a
// bounded number of selections, the oldest replaced.
func TestHorizonCache(t *testing.T) {
	sel := func(ds ...time.Duration) config.Scoring {
		var sc config.Scoring
		for _, d := range ds {
			sc.ForecastHorizons = append(sc.ForecastHorizons, model.Duration(d))
		}
		return sc
	}
	var c horizonCache
	a := sel(5*time.Minute, 15*time.Minute, 30*time.Minute)
	first := c.of(a)
	wantD, wantN := horizonsOf(a)
	require.Equal(t, &horizonSet{horizons: wantD, hname: wantN}, first)

	cases := []struct {
		name   string
		sc     config.Scoring
		shared bool // the slices of a's first call
	}{
		{"same horizons, another selection's copy", sel(5*time.Minute, 15*time.Minute, 30*time.Minute), true},
		{"another order", sel(15*time.Minute, 5*time.Minute, 30*time.Minute), false},
		{"fewer", sel(5 * time.Minute), false},
		{"the first again", a, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := c.of(tc.sc)
			wd, wn := horizonsOf(tc.sc)
			require.Equal(t, &horizonSet{horizons: wd, hname: wn}, got)
			require.Equal(t, tc.shared, got == first, "shared")
		})
	}

	// a, the two others and two more: a was the first in, and goes.
	for i := range 2 {
		c.of(sel(time.Duration(i+1) * time.Hour))
	}
	require.NotSame(t, first, c.of(a), "the oldest selection replaced")
	require.Len(t, c.e, 4)
}

// TestForecastersShareHorizons: the forecasters a worker makes for the
// series of one selection hold one copy of its horizons between them.
func TestForecastersShareHorizons(t *testing.T) {
	e := newEnv(t, "", nil, func(o *Options) { o.Workers = 1 })
	var ls []labels.Labels
	for i := range 3 {
		ls = append(ls, labels.FromStrings("__name__", "shared_gauge", "instance", fmt.Sprint(i)))
	}
	e.push(t0.UnixMilli(), model.MetricTypeGauge, ls, []float64{1, 2, 3})
	e.sync()
	var all []*series
	e.p.workers[0].view(func(s *series) { all = append(all, s) })
	require.Len(t, all, 3)
	for _, s := range all {
		require.NotNil(t, s.fc)
		require.NotEmpty(t, s.fc.horizons)
		require.Same(t, &all[0].fc.horizons[0], &s.fc.horizons[0])
		require.Same(t, &all[0].fc.hname[0], &s.fc.hname[0])
		require.Same(t, all[0].fc.horizonSet, s.fc.horizonSet)
	}
}
