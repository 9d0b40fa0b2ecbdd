package pipeline

import (
	"context"
	"encoding/binary"
	"math"
	"math/bits"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/stretchr/testify/require"
)

// collidingValues returns two values a and b of n bytes (32 < n < 128)
// such that the label sets {__name__=nameA, label=a} and {__name__=nameB,
// label=b} (names of one length) differ and hash equally with labels.Hash,
// which is xxhash64 (seed 0) of the labels' encoding: a collision anyone
// can compute, as an upstream label (a request path, say) could carry.
// xxhash64 takes 32-byte stripes in four 8-byte lanes, each lane's state
// stepping as acc' = rotl(acc + x*prime2, 31) * prime1, which is
// invertible: a lane whose states differ after b's word x' in one stripe
// (and the names before it) is made equal by b's word
// y' = y + (acc - acc')/prime2 in the next. Candidates for x' are tried
// until y' is printable.
func collidingValues(t testing.TB, nameA, nameB, label string, n int) (string, string) {
	t.Helper()
	const prime1, prime2 uint64 = 11400714785074694791, 14029467366897019727
	round := func(acc, x uint64) uint64 { return bits.RotateLeft64(acc+x*prime2, 31) * prime1 }
	inv := prime2 // prime2's inverse mod 2^64 by Newton's iteration
	for range 6 {
		inv *= 2 - prime2*inv
	}
	// The stringlabels encoding: each string after its length (a byte
	// here). "__name__" sorts before any lower-case label.
	require.True(t, label > model.MetricNameLabel && len(nameA) == len(nameB) && len(nameA) < 128 && len(label) < 128 && n > 32 && n < 128)
	prefix := func(name string) string {
		return string(rune(len(model.MetricNameLabel))) + model.MetricNameLabel + string(rune(len(name))) + name +
			string(rune(len(label))) + label + string(rune(n))
	}
	pa, pb := prefix(nameA), prefix(nameB)
	da, db := []byte(pa+strings.Repeat("a", n)), []byte(pb+strings.Repeat("a", n))
	k := (len(pa) + 31) / 32 // the first stripe in the value: x' goes there, y' in the next
	require.LessOrEqual(t, 32*(k+2), len(da), "the value spans stripes %d and %d", k, k+1)
	state := func(d []byte) (v [4]uint64) {
		p1 := prime1
		v = [4]uint64{p1 + prime2, prime2, 0, -p1} // seed 0, mod 2^64
		for s := range k {
			for j := range v {
				v[j] = round(v[j], binary.LittleEndian.Uint64(d[32*s+8*j:]))
			}
		}
		return v
	}
	sa, sb := state(da), state(db)
	word := func(d []byte, s, j int) uint64 { return binary.LittleEndian.Uint64(d[32*s+8*j:]) }
	for j := range 4 {
		if sa[j] == sb[j] && (j > 0 || nameA != nameB) {
			continue // equal already; lane 0 differs for equal names
		}
		want := round(sa[j], word(da, k, j)) + word(da, k+1, j)*prime2
		found := false
		for c := uint64(0); !found && c < 1<<24; c++ {
			var x, y [8]byte
			for i := range x { // a printable candidate for x', not a's word
				x[i] = byte('C' + (c>>(3*i))&7)
			}
			binary.LittleEndian.PutUint64(y[:], (want-round(sb[j], binary.LittleEndian.Uint64(x[:])))*inv)
			if found = printable(y[:]); found {
				copy(db[32*k+8*j:], x[:])
				copy(db[32*(k+1)+8*j:], y[:])
			}
		}
		require.True(t, found, "no printable words for lane %d", j)
	}
	a, b := string(da[len(pa):]), string(db[len(pb):])
	la, lb := labels.FromStrings(model.MetricNameLabel, nameA, label, a), labels.FromStrings(model.MetricNameLabel, nameB, label, b)
	require.False(t, labels.Equal(la, lb))
	require.Equal(t, la.Hash(), lb.Hash(), "constructed to collide")
	return a, b
}

// printable reports whether b is printable ASCII that needs no escaping
// in the tests' YAML and PromQL strings, nor in a label_replace
// replacement ($).
func printable(b []byte) bool {
	for _, c := range b {
		if c < 0x21 || c > 0x7e || strings.IndexByte(`"'\$`, c) >= 0 {
			return false
		}
	}
	return true
}

// TestDerivedHashCollision: the pseudo series reference of a derived
// input's series (or group) is its labels' hash, which an upstream label
// can be made to collide (collidingValues). Series of a result whose
// labels collide must each keep their own model and outputs, or be
// refused, counted: never one's values scored in the other's models and
// written under its labels. Series a and b collide; a goes stale at step
// 5, and b is alone from then on.
func TestDerivedHashCollision(t *testing.T) {
	for _, tc := range []struct {
		name, yml string
		inputs    []string // metric names fed for each of a and b
	}{
		{"expression", "derived:\n  - {name: d, expr: 'x', interval: 1h}\n", []string{"x"}},
		{"group", "derived:\n  - {name: d, by: [path], interval: 1h, members: [{name: x, expr: x}, {name: y, expr: y}]}\n", []string{"x", "y"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := collidingValues(t, "d", "d", "path", 80)
			e, cfg := derivedEnv(t, tc.yml)
			for i := range 10 {
				ts := t0.UnixMilli() + int64(i)*stepMs
				var ls []labels.Labels
				var vs []float64
				for _, name := range tc.inputs {
					if i <= 5 {
						va := 1.0
						if i == 5 {
							va = math.Float64frombits(value.StaleNaN)
						}
						ls, vs = append(ls, labels.FromStrings("__name__", name, "path", a)), append(vs, va)
					}
					ls, vs = append(ls, labels.FromStrings("__name__", name, "path", b)), append(vs, 1000)
				}
				e.push(ts, model.MetricTypeGauge, ls, vs)
				e.p.evalDerived(context.Background(), &cfg.Derived[0], time.UnixMilli(ts))
			}
			e.sync()
			got := e.p.Anomalies([][]*labels.Matcher{{eq("__name__", "d")}})
			require.Len(t, got, 1, "a is gone")
			require.Equal(t, b, got[0].Labels["path"])
			if len(tc.inputs) == 1 {
				require.Equal(t, 1000.0, float64(got[0].Value))
			}
			require.Equal(t, 5, scores(t, e, "d", a), "a's outputs: its own 5 evaluations, none of b's")
			require.Equal(t, 4, scores(t, e, "d", b), "b's: from its first evaluation after a left (refused while a held the reference)")
			require.Equal(t, 6.0, testutil.ToFloat64(e.p.m.derivedErrs.WithLabelValues("d")), "b refused at each evaluation a held the reference")
		})
	}
}

// TestDerivedHashCollisionHistory: a derived input's series warm from the
// expression's history, looked up by their reference: of two series
// whose labels collide (see TestDerivedHashCollision), the one scored
// warms from its own history, not the other's.
func TestDerivedHashCollisionHistory(t *testing.T) {
	a, b := collidingValues(t, "d", "d", "path", 80)
	e, cfg := derivedEnv(t, "derived:\n  - {name: d, expr: 'x', interval: 15s}\n")
	const n = 100
	vs := seasonal(n+1, 4)
	// b first: the instant query's result is in the head's order, b's
	// first, and the range query's by labels, a's last, which took the
	// reference's history.
	in := []labels.Labels{labels.FromStrings("__name__", "x", "path", b), labels.FromStrings("__name__", "x", "path", a)}
	for i := range n + 1 {
		e.push(t0.UnixMilli()+int64(i)*stepMs, model.MetricTypeGauge, in, []float64{1e6 + vs[i], vs[i]})
	}
	e.sync()
	e.p.evalDerived(context.Background(), &cfg.Derived[0], time.UnixMilli(t0.UnixMilli()+n*stepMs))
	e.sync()
	got := e.p.Anomalies([][]*labels.Matcher{{eq("__name__", "d")}})
	require.Len(t, got, 1, "one of the two scored, the other refused")
	require.True(t, got[0].Ready, "warmed from the history")
	require.InDelta(t, float64(got[0].Value), float64(got[0].Yhat), 100, "expected from its own history: %v", got[0].Labels["path"])
	require.Less(t, got[0].Score, 1.0)
}

// TestDerivedHashCollisionIngested: a derived series is handed over to an
// ingested series of its name and labels (TestDerivedCollidesWithIngested),
// found by the labels' hash: one whose labels only hash as the ingested
// series' (see TestDerivedHashCollision) is scored, not refused.
func TestDerivedHashCollisionIngested(t *testing.T) {
	a, b := collidingValues(t, "d", "d", "path", 80)
	e, cfg := derivedEnv(t, "derived:\n  - {name: d, expr: 'label_replace(x, \"path\", \""+b+"\", \"\", \"\")', interval: 1h}\n")
	for i := range 3 {
		ts := t0.UnixMilli() + int64(i)*stepMs
		e.push(ts, model.MetricTypeGauge, []labels.Labels{
			labels.FromStrings("__name__", "d", "path", a), // ingested, scored
			labels.FromStrings("__name__", "x"),
		}, []float64{1, 1000})
		e.p.evalDerived(context.Background(), &cfg.Derived[0], time.UnixMilli(ts))
	}
	e.sync()
	got := map[string]float64{}
	for _, an := range e.p.Anomalies([][]*labels.Matcher{{eq("__name__", "d")}}) {
		got[an.Labels["path"]] = float64(an.Value)
	}
	require.Equal(t, map[string]float64{a: 1, b: 1000}, got)
	require.Zero(t, testutil.ToFloat64(e.p.m.derivedErrs.WithLabelValues("d")))
}

// TestDerivedHashCollisionAcrossInputs: series of two derived inputs'
// results whose labels collide (see TestDerivedHashCollision) meet in the
// worker only: the first keeps the reference while it is live, the other
// is refused, counted as its input's failure, and takes the reference once
// the first went stale.
func TestDerivedHashCollisionAcrossInputs(t *testing.T) {
	a, b := collidingValues(t, "d1", "d2", "path", 80)
	e, cfg := derivedEnv(t, "derived:\n  - {name: d1, expr: 'x', interval: 1h}\n  - {name: d2, expr: 'y', interval: 1h}\n")
	for i := range 10 {
		ts := t0.UnixMilli() + int64(i)*stepMs
		ls, vs := []labels.Labels{labels.FromStrings("__name__", "y", "path", b)}, []float64{1000}
		if i <= 5 {
			va := 1.0
			if i == 5 {
				va = math.Float64frombits(value.StaleNaN)
			}
			ls, vs = append(ls, labels.FromStrings("__name__", "x", "path", a)), append(vs, va)
		}
		e.push(ts, model.MetricTypeGauge, ls, vs)
		for j := range cfg.Derived {
			e.p.evalDerived(context.Background(), &cfg.Derived[j], time.UnixMilli(ts))
		}
	}
	e.sync()
	require.Empty(t, e.p.Anomalies([][]*labels.Matcher{{eq("__name__", "d1")}}), "a is gone")
	got := e.p.Anomalies([][]*labels.Matcher{{eq("__name__", "d2")}})
	require.Len(t, got, 1)
	require.Equal(t, b, got[0].Labels["path"])
	require.Equal(t, 1000.0, float64(got[0].Value))
	require.Equal(t, 5, scores(t, e, "d1", a), "a's outputs: its own 5 evaluations")
	require.Equal(t, 5, scores(t, e, "d2", b), "b's: once a had gone")
	require.Zero(t, testutil.ToFloat64(e.p.m.derivedErrs.WithLabelValues("d1")))
	require.Equal(t, 5.0, testutil.ToFloat64(e.p.m.derivedErrs.WithLabelValues("d2")), "b refused while a held the reference")
}

// scores counts the anomaly scores stored for the derived input name's
// series path, its staleness markers left out.
func scores(t *testing.T, e *env, name, path string) (n int) {
	t.Helper()
	out := query(t, e.db, eq("__name__", "anomaly_score"), eq("for", name), eq("path", path))
	for _, v := range out[labels.FromStrings("__name__", "anomaly_score", "for", name, "path", path).String()] {
		if !value.IsStaleNaN(v) {
			n++
		}
	}
	return n
}
