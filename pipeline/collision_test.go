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
// such that the label sets {__name__=name, label=a} and {__name__=name,
// label=b} hash equally with labels.Hash, which is xxhash64 (seed 0) of
// the labels' encoding: a collision anyone can compute, as an upstream
// label (a request path, say) could carry. xxhash64 takes 32-byte stripes
// in four 8-byte lanes, each lane's state stepping as
// acc' = rotl(acc + x*prime2, 31) * prime1, which is invertible: another
// word x' in one stripe is undone by the word y' = y + (acc - acc')/prime2
// of the same lane in the next. Candidates are tried until y' is ASCII.
func collidingValues(t testing.TB, name, label string, n int) (string, string) {
	t.Helper()
	const prime1, prime2 uint64 = 11400714785074694791, 14029467366897019727
	round := func(acc, x uint64) uint64 { return bits.RotateLeft64(acc+x*prime2, 31) * prime1 }
	// The stringlabels encoding: each string after its length (a byte
	// here). "__name__" sorts before any lower-case label.
	require.True(t, label > labels.MetricName && len(name) < 128 && len(label) < 128 && n > 32 && n < 128)
	prefix := string(rune(len(labels.MetricName))) + labels.MetricName + string(rune(len(name))) + name +
		string(rune(len(label))) + label + string(rune(n))
	// The first stripe whose lane 0 is in the value, and the next.
	k := (len(prefix) + 31) / 32
	require.LessOrEqual(t, 32*(k+1)+8, len(prefix)+n, "the value reaches lane 0 of stripe %d", k+1)
	data := []byte(prefix + strings.Repeat("a", n))
	p1 := prime1
	acc := p1 + prime2 // lane 0's initial state, seed 0 (mod 2^64)
	for s := range k {
		acc = round(acc, binary.LittleEndian.Uint64(data[32*s:]))
	}
	x := binary.LittleEndian.Uint64(data[32*k:])
	y := binary.LittleEndian.Uint64(data[32*(k+1):])
	want := round(acc, x) + y*prime2 // lane 0 before stripe k+1's rotation
	inv := prime2                    // prime2's inverse mod 2^64 by Newton's iteration
	for range 6 {
		inv *= 2 - prime2*inv
	}
	other := append([]byte(nil), data...)
	for c := uint64(0); c < 1<<24; c++ {
		var w [8]byte
		for i := range w { // a printable candidate for x
			w[i] = byte('A' + (c>>(3*i))&7)
		}
		x2 := binary.LittleEndian.Uint64(w[:])
		y2 := (want - round(acc, x2)) * inv
		var yb [8]byte
		binary.LittleEndian.PutUint64(yb[:], y2)
		if !printable(yb[:]) {
			continue
		}
		copy(other[32*k:], w[:])
		copy(other[32*(k+1):], yb[:])
		a, b := string(data[len(prefix):]), string(other[len(prefix):])
		la, lb := labels.FromStrings(labels.MetricName, name, label, a), labels.FromStrings(labels.MetricName, name, label, b)
		require.NotEqual(t, a, b)
		require.Equal(t, la.Hash(), lb.Hash(), "constructed to collide")
		return a, b
	}
	t.Fatal("no printable collision found")
	return "", ""
}

func printable(b []byte) bool {
	for _, c := range b {
		if c < 0x21 || c > 0x7e || c == '"' || c == '\\' || c == '\'' {
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
			a, b := collidingValues(t, "d", "path", 80)
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
			scores := func(path string) (n int) {
				for _, v := range query(t, e.db, eq("__name__", "anomaly_score"), eq("for", "d"), eq("path", path))[labels.FromStrings("__name__", "anomaly_score", "for", "d", "path", path).String()] {
					if !value.IsStaleNaN(v) {
						n++
					}
				}
				return n
			}
			require.Equal(t, 5, scores(a), "a's outputs: its own 5 evaluations, none of b's")
			require.Equal(t, 4, scores(b), "b's: from its first evaluation after a left (refused while a held the reference)")
			require.Equal(t, 6.0, testutil.ToFloat64(e.p.m.derivedErrs.WithLabelValues("d")), "b refused at each evaluation a held the reference")
		})
	}
}

// TestDerivedHashCollisionHistory: a derived input's series warm from the
// expression's history, looked up by their reference: of two series
// whose labels collide (see TestDerivedHashCollision), the one scored
// warms from its own history, not the other's.
func TestDerivedHashCollisionHistory(t *testing.T) {
	a, b := collidingValues(t, "d", "path", 80)
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
	a, b := collidingValues(t, "d", "path", 80)
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
