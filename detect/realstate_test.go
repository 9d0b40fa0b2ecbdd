package detect

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// realInputs are series a real run can send, extreme ones included: the
// restore path's checks of saved state (tailsValid, Group.covValid) must
// take every state Update learns from them, or the series re-warms from
// history at every restart and loses its open incident.
func realInputs() map[string]func(i int, rng *rand.Rand) float64 {
	return map[string]func(i int, rng *rand.Rand) float64{
		"constant":         func(int, *rand.Rand) float64 { return 42 },
		"zero":             func(int, *rand.Rand) float64 { return 0 },
		"huge":             func(_ int, rng *rand.Rand) float64 { return 1e300 * (1 + rng.Float64()) },
		"huge-constant":    func(int, *rand.Rand) float64 { return 1e300 },
		"tiny":             func(_ int, rng *rand.Rand) float64 { return 1e-300 * (1 + rng.Float64()) },
		"subnormal":        func(_ int, rng *rand.Rand) float64 { return 5e-324 * float64(1+rng.IntN(3)) },
		"float32-edge":     func(_ int, rng *rand.Rand) float64 { return 3.4e38 * (0.5 + 0.5*rng.Float64()) },
		"alternating-huge": func(i int, _ *rand.Rand) float64 { return 3e38 * float64(1-2*(i%2)) },
		"alternating-sign": func(i int, rng *rand.Rand) float64 { return float64(1-2*(i%2)) * 1e300 * (1 + rng.Float64()) },
		"shift-1e12": func(i int, rng *rand.Rand) float64 {
			return 1 + rng.NormFloat64() + 1e12*float64((i/700)%2)
		},
		"shift-1e12-flat": func(i int, _ *rand.Rand) float64 { return 1e12 * float64((i/300)%2) },
		"spikes": func(i int, rng *rand.Rand) float64 {
			if i%97 == 0 {
				return 1e30
			}
			return rng.NormFloat64()
		},
		"nan-inf": func(i int, rng *rand.Rand) float64 {
			switch i % 11 {
			case 3:
				return math.NaN()
			case 5:
				return math.Inf(1)
			case 7:
				return math.Inf(-1)
			}
			return 10 + rng.NormFloat64()
		},
		"counter-reset-rate": func(i int, rng *rand.Rand) float64 {
			if i%200 == 0 {
				return -1e9 // a reset read as a rate
			}
			return 100 + rng.NormFloat64()
		},
		"flatline-then-noise": func(i int, rng *rand.Rand) float64 {
			if i < 1500 {
				return 7
			}
			return 7 + 1e-9*rng.NormFloat64()
		},
		"step-ramp": func(i int, _ *rand.Rand) float64 { return math.Pow(10, float64(i%600)/2) },
		"sine":      func(i int, rng *rand.Rand) float64 { return 10 + math.Sin(float64(i)/20) + 0.1*rng.NormFloat64() },
	}
}

// TestRealDetectorStatesRestore drives real Detectors (the default members
// and all) with realInputs for thousands of samples and restores their
// saved state at checkpoints: every state must be taken, and the restored
// detector must score as the original does afterwards.
func TestRealDetectorStatesRestore(t *testing.T) {
	all := DefaultOptions()
	all.Members = MemberAll
	for name, gen := range realInputs() {
		for _, o := range []Options{DefaultOptions(), all} {
			t.Run(name, func(t *testing.T) {
				d, err := New(o)
				require.NoError(t, err)
				rng := rand.New(rand.NewPCG(7, 8))
				const n, every = 4000, 500
				for i := range n {
					d.Update(int64(i)*15_000, gen(i, rng))
					if (i+1)%every != 0 {
						continue
					}
					b, err := d.MarshalBinary()
					require.NoError(t, err)
					r, err := New(o)
					require.NoError(t, err)
					require.NoError(t, r.Restore(b), "state after %d samples refused", i+1)
					// Both score the next samples alike (on copies, so
					// the run goes on from the original's state).
					var c Detector
					require.NoError(t, c.UnmarshalBinary(b))
					probe := rand.New(rand.NewPCG(uint64(i), 9))
					for j := range 20 {
						v := gen(i+1+j, probe)
						at := int64(i+1+j) * 15_000
						require.Equal(t, fmt.Sprintf("%+v", c.Update(at, v)), fmt.Sprintf("%+v", r.Update(at, v)), "restored detector scores differently") // NaN forecasts compare as text
					}
				}
			})
		}
	}
}

// TestRealGroupStatesRestore is TestRealDetectorStatesRestore for Groups
// of 2 and 8 members, each member fed one of realInputs (shifted, so that
// members differ).
func TestRealGroupStatesRestore(t *testing.T) {
	for name, gen := range realInputs() {
		for _, k := range []int{2, 8} {
			t.Run(name, func(t *testing.T) {
				g, err := NewGroup(k, 1, DefaultOptions())
				require.NoError(t, err)
				rng := rand.New(rand.NewPCG(7, 8))
				x := make([]float64, k)
				fill := func(i int, rng *rand.Rand) {
					for j := range x {
						x[j] = gen(i+j*37, rng)
					}
					if j := i % k; i%5 == 0 {
						x[j] = -x[j] // members that move against each other
					}
				}
				const n, every = 4000, 500
				for i := range n {
					fill(i, rng)
					g.Update(groupT0+int64(i)*30_000, x)
					if (i+1)%every != 0 {
						continue
					}
					b, err := g.AppendBinary(nil)
					require.NoError(t, err)
					r, err := NewGroup(k, 1, DefaultOptions())
					require.NoError(t, err)
					require.NoError(t, r.Restore(b), "state after %d vectors refused", i+1)
					c, err := NewGroup(k, 1, DefaultOptions())
					require.NoError(t, err)
					require.NoError(t, c.Restore(b))
					probe := rand.New(rand.NewPCG(uint64(i), 9))
					for j := range 20 {
						fill(i+1+j, probe)
						at := groupT0 + int64(i+1+j)*30_000
						require.Equal(t, fmt.Sprintf("%+v", c.Update(at, x)), fmt.Sprintf("%+v", r.Update(at, x)), "restored group scores differently")
					}
				}
			})
		}
	}
}

// TestGroupCovarianceReachesItsBound drives groups whose members' deviations
// stay clipped at ±8 for long runs (ramps of ten decades, capped at 1e38,
// half the members mirrored), so that the learnt covariance goes to the
// edge of what Update can learn: an average, with weights in (0, 1], of
// products of deviations clipped at ±8 (clip8), so within ±64, and the
// diagonal, of squares, not below 0 (rounding keeps both: Cov + a(p-Cov)
// with a ≤ 1 lies between Cov and p up to an ulp). covValid must take
// every state on the way: the entries reach ±64 itself, so a tighter
// bound refuses real groups' states.
func TestGroupCovarianceReachesItsBound(t *testing.T) {
	for _, k := range []int{2, 8} {
		t.Run(fmt.Sprint("members=", k), func(t *testing.T) {
			g, err := NewGroup(k, 1, DefaultOptions())
			require.NoError(t, err)
			x := make([]float64, k)
			hi, lo := 0.0, 0.0
			for i := range 20_000 {
				v := min(math.Pow(10, float64(i%600)/2), 1e38)
				for j := range x {
					x[j] = v * float64(1-2*(j%2))
				}
				g.Update(groupT0+int64(i)*30_000, x)
				for p := range k * (k + 1) / 2 {
					hi, lo = max(hi, g.st.Cov[p]), min(lo, g.st.Cov[p])
				}
				if i%1000 == 999 {
					b, err := g.AppendBinary(nil)
					require.NoError(t, err)
					r, err := NewGroup(k, 1, DefaultOptions())
					require.NoError(t, err)
					require.NoError(t, r.Restore(b), "state after %d vectors refused (covariance in [%g, %g])", i+1, lo, hi)
				}
			}
			t.Logf("covariance entries in [%.17g, %.17g]", lo, hi)
			require.InDelta(t, 64, hi, 1e-6, "the covariance did not reach its bound: the test does not test it")
			require.InDelta(t, -64, lo, 1e-6, "the covariance did not reach its bound: the test does not test it")
		})
	}
}
