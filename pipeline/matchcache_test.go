package pipeline

import (
	"slices"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/stretchr/testify/require"
)

// TestAnomaliesMatchCache checks that a repeated selector is answered from
// the cache and that a series created after the cache entry is found: the
// worker's generation moved on, so its entry no longer applies.
func TestAnomaliesMatchCache(t *testing.T) {
	e := newEnv(t, "", nil, nil)
	ls := func(job string) labels.Labels { return labels.FromStrings("__name__", "load", "job", job) }
	pushAll := func(from, n int, jobs ...string) {
		for i := from; i < from+n; i++ {
			var lss []labels.Labels
			var vs []float64
			for _, j := range jobs {
				lss, vs = append(lss, ls(j)), append(vs, float64(100+i%7))
			}
			e.push(t0.UnixMilli()+int64(i)*stepMs, model.MetricTypeGauge, lss, vs)
		}
		e.sync()
	}
	jobs := func(list []Anomaly) []string {
		var js []string
		for _, a := range list {
			js = append(js, a.Labels["job"])
		}
		slices.Sort(js)
		return js
	}
	sel := [][]*labels.Matcher{{labels.MustNewMatcher(labels.MatchRegexp, "job", "a|b")}}
	key := matchKey(sel)
	cached := func() bool {
		for i, w := range e.p.workers {
			w.mu.RLock()
			_, ok := e.p.matches.get(key, i, w.gen)
			w.mu.RUnlock()
			if !ok {
				return false
			}
		}
		return true
	}

	pushAll(0, 10, "a", "c")
	require.False(t, cached())
	require.Equal(t, []string{"a"}, jobs(e.p.Anomalies(sel)))
	require.True(t, cached(), "the first answer is remembered for every worker")
	require.Equal(t, []string{"a"}, jobs(e.p.Anomalies(sel)), "and the second comes from it")

	pushAll(10, 10, "a", "b", "c")
	require.False(t, cached(), "a new series moves its worker's generation on")
	require.Equal(t, []string{"a", "b"}, jobs(e.p.Anomalies(sel)))
	require.Equal(t, []string{"a", "b", "c"}, jobs(e.p.Anomalies(nil)))
	_, ok := e.p.matches.m[""]
	require.False(t, ok, "no selector is not remembered")
}

func TestMatchKey(t *testing.T) {
	eq := func(n, v string) *labels.Matcher { return labels.MustNewMatcher(labels.MatchEqual, n, v) }
	tests := []struct {
		name string
		a, b [][]*labels.Matcher
		same bool
	}{
		{"same selectors", [][]*labels.Matcher{{eq("job", "a")}}, [][]*labels.Matcher{{eq("job", "a")}}, true},
		{"other value", [][]*labels.Matcher{{eq("job", "a")}}, [][]*labels.Matcher{{eq("job", "b")}}, false},
		{"one set of two against two sets of one", [][]*labels.Matcher{{eq("a", "1"), eq("b", "2")}}, [][]*labels.Matcher{{eq("a", "1")}, {eq("b", "2")}}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.same, matchKey(tc.a) == matchKey(tc.b))
		})
	}
	require.Empty(t, matchKey(nil))
}
