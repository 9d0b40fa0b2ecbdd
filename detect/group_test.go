package detect

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// podVector is one step of a pod whose cpu and latency follow its traffic
// (a daily cycle with noise) and whose memory wanders on its own.
func podVector(rng *rand.Rand, i int, x []float64) {
	traffic := 100 + 40*math.Sin(2*math.Pi*float64(i)/2880) + 5*rng.NormFloat64()
	x[0] = 0.01*traffic + 0.02*rng.NormFloat64()  // cpu, cores
	x[1] = 500e6 + 5e6*rng.NormFloat64()          // memory, bytes
	x[2] = 0.002*traffic + 0.01*rng.NormFloat64() // latency, seconds
}

func mustGroup(t testing.TB, k int) *Group {
	g, err := NewGroup(k, 0, DefaultOptions())
	require.NoError(t, err)
	return g
}

const groupT0 = 1_600_000_000_000

func TestGroupScoresBrokenCorrelation(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	g := mustGroup(t, 3)
	x := make([]float64, 3)
	n, above := 20_000, 0
	for i := range n {
		podVector(rng, i, x)
		r := g.Update(groupT0+int64(i)*30_000, x)
		if i > 2000 && r.Score > 1 {
			above++
		}
	}
	// Normal data scores above 1 at about the false-alarm rate.
	require.LessOrEqual(t, above, int(3*DefaultOptions().FalseAlarmRate*float64(n)), "false alarms on normal data")
	require.True(t, g.Ready())

	// From the same state: latency up without traffic (cpu stays), and
	// both up as traffic does it, by the same share of their spread.
	saved, err := g.AppendBinary(nil)
	require.NoError(t, err)
	step := func(dcpu, dlat float64) GroupResult {
		h := mustGroup(t, 3)
		require.NoError(t, h.Restore(saved))
		traffic := 100 + 40*math.Sin(2*math.Pi*float64(n)/2880)
		return h.Update(groupT0+int64(n)*30_000, []float64{0.01*traffic + dcpu, 500e6, 0.002*traffic + dlat})
	}
	broken := step(0, 0.12)
	together := step(0.6, 0.12)
	t.Logf("false alarms %d of %d; latency alone %.2f, with cpu %.2f", above, n, broken.Score, together.Score)
	require.Greater(t, broken.Score, 1.0, "latency up alone")
	require.Equal(t, 2, broken.Member, "latency drove it")
	require.Less(t, together.Score, broken.Score, "cpu and latency up together, as with traffic, is less unusual")
}

func TestGroupSkips(t *testing.T) {
	g := mustGroup(t, 2)
	require.True(t, g.Update(groupT0, []float64{1, 2}).Member == -1)
	before, err := g.AppendBinary(nil)
	require.NoError(t, err)
	for _, tc := range []struct {
		name string
		t    int64
		x    []float64
	}{
		{"wrong length", groupT0 + 1000, []float64{1, 2, 3}},
		{"NaN", groupT0 + 1000, []float64{1, math.NaN()}},
		{"Inf", groupT0 + 1000, []float64{math.Inf(1), 1}},
		// A sentinel (Double.MAX_VALUE): a flat member's level went to
		// 7e305, and the member was blind for months.
		{"beyond float32", groupT0 + 1000, []float64{math.MaxFloat64, 1}},
		{"beyond float32, 1e39", groupT0 + 1000, []float64{1, -1e39}},
		{"same time", groupT0, []float64{1, 2}},
		{"earlier", groupT0 - 1000, []float64{1, 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, GroupResult{Member: -1}, g.Update(tc.t, tc.x))
			after, err := g.AppendBinary(nil)
			require.NoError(t, err)
			require.Equal(t, before, after, "state untouched")
		})
	}
}

func TestGroupRestore(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	g := mustGroup(t, 3)
	x := make([]float64, 3)
	for i := range 500 {
		podVector(rng, i, x)
		g.Update(groupT0+int64(i)*30_000, x)
	}
	b, err := g.AppendBinary(nil)
	require.NoError(t, err)
	require.True(t, isGroup(b))

	h := mustGroup(t, 3)
	require.NoError(t, h.Restore(b))
	require.Equal(t, g.ms, h.ms)
	for i := 500; i < 700; i++ {
		podVector(rng, i, x)
		require.Equal(t, g.Update(groupT0+int64(i)*30_000, x), h.Update(groupT0+int64(i)*30_000, x))
	}

	bad := append([]byte(nil), b...)
	bad[len(bad)/2] ^= 1
	require.ErrorContains(t, mustGroup(t, 3).Restore(bad), "checksum")
	require.ErrorContains(t, mustGroup(t, 2).Restore(b), "2")
	o := DefaultOptions()
	o.FalseAlarmRate = 0.01
	other, err := NewGroup(3, 0, o)
	require.NoError(t, err)
	require.ErrorContains(t, other.Restore(b), "false-alarm rate")
	keyed, err := NewGroup(3, 7, DefaultOptions())
	require.NoError(t, err)
	require.ErrorContains(t, keyed.Restore(b), "other members", "members reordered or replaced")
	for _, damage := range []func(m *memberStats){
		func(m *memberStats) { m.Block = tailBlocks },
		func(m *memberStats) { m.Spread[1] = math.NaN() },
		func(m *memberStats) { m.Spread[0] = -1 },
		func(m *memberStats) { m.Peak[2][3] = float32(math.Inf(1)) },
		func(m *memberStats) { m.Typical[0] = -1 },
	} {
		saved := g.ms
		damage(&g.ms)
		db, err := g.AppendBinary(nil)
		g.ms = saved
		require.NoError(t, err)
		require.ErrorContains(t, mustGroup(t, 3).Restore(db), "invalid")
	}
	d := mustNew(t, DefaultOptions())
	db, err := d.MarshalBinary()
	require.NoError(t, err)
	require.False(t, isGroup(db))
	require.Error(t, mustGroup(t, 3).Restore(db))
}

// TestGroupRestoreVersion1: a state saved before the member stats (version
// 1) is taken, the stats learnt from there, the spread starting at the
// scale; an unknown version is refused.
func TestGroupRestoreVersion1(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	g := mustGroup(t, 3)
	x := make([]float64, 3)
	for i := range 500 {
		podVector(rng, i, x)
		g.Update(groupT0+int64(i)*30_000, x)
	}
	encode := func(version uint16, parts ...any) []byte {
		b := binary.LittleEndian.AppendUint16([]byte(groupMagic), version)
		w := toWire(g.opts)
		for _, v := range append([]any{&w}, parts...) {
			var err error
			b, err = binary.Append(b, binary.LittleEndian, v)
			require.NoError(t, err)
		}
		return binary.LittleEndian.AppendUint32(b, crc32.ChecksumIEEE(b))
	}
	h := mustGroup(t, 3)
	require.NoError(t, h.Restore(encode(1, &g.st)))
	require.Equal(t, g.st, h.st)
	for i := range 3 {
		require.Equal(t, g.st.Level[i].S, h.ms.Spread[i])
		require.Zero(t, h.ms.Typical[i])
	}
	podVector(rng, 500, x)
	require.True(t, h.Update(groupT0+500*30_000, x).Ready)
	require.ErrorContains(t, mustGroup(t, 3).Restore(encode(3, &g.st, &g.ms)), "version 3")
	require.ErrorContains(t, mustGroup(t, 3).Restore(encode(1, &g.st, &g.ms)), "bytes", "a version 1 state with member stats")
}

// TestGroupSparseMember: a mostly-0 member (errors, as a count or a rate)
// alarms the group no more often than the false-alarm rate, while a burst
// far above its usual errors still does. Its robust scale collapsed toward
// 0 and each error was 10⁶ scales out, against a calibration that learns
// deviations clipped at 8: the group alarmed at 4.7-8.3% of its
// evaluations for errors in 5-10% of them, 3.8% for one error every two
// hours in a rate over 5 minutes evaluated every 30 s, 1.3% for one every
// six (the member's own Detector 0.11-0.40%; see memberStats).
func TestGroupSparseMember(t *testing.T) {
	const n = 60_000
	poisson := func(l float64) func(rng *rand.Rand) float64 {
		return func(rng *rand.Rand) float64 {
			k, p := 0.0, rng.Float64()
			for e := math.Exp(-l); p > e; p *= rng.Float64() {
				k++
			}
			return k
		}
	}
	// rate(errors[5m]) evaluated every 30 s: an error counts for ten
	// evaluations.
	rate := func(every float64) func(rng *rand.Rand) float64 {
		var since []int
		return func(rng *rand.Rand) float64 {
			kept := since[:0]
			for _, s := range since {
				if s < 9 {
					kept = append(kept, s+1)
				}
			}
			since = kept
			if rng.Float64() < 1/every {
				since = append(since, 0)
			}
			return float64(len(since)) / 300 * (1 + 0.1*rng.Float64())
		}
	}
	for _, tc := range []struct {
		name   string
		errors func(rng *rand.Rand) float64
		burst  float64
	}{
		{"count, 10% of evaluations", poisson(0.1), 10},
		{"count, 5%", poisson(0.05), 10},
		{"count, 1%", poisson(0.01), 10},
		{"rate, one error in 2 h", rate(240), 10.0 / 300},
		{"rate, one in 6 h", rate(720), 10.0 / 300},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(3, 4))
			g := mustGroup(t, 4)
			x := make([]float64, 4)
			above := 0
			for i := range n {
				podVector(rng, i, x)
				x[3] = tc.errors(rng)
				if g.Update(groupT0+int64(i)*30_000, x).Score > 1 {
					above++
				}
			}
			podVector(rng, n, x)
			x[3] = tc.burst
			burst := g.Update(groupT0+n*30_000, x)
			t.Logf("%d of %d above 1; a burst: %.2f", above, n, burst.Undamped)
			require.LessOrEqual(t, float64(above), 2*g.opts.FalseAlarmRate*n)
			require.Greater(t, burst.Undamped, 1.0, "a burst of errors")
			require.Equal(t, 3, burst.Member)
		})
	}
}

// TestGroupSpikeKeepsMember: one spike, however far out, leaves its member
// scoring a later deviation as before it. The spread that floors a mostly-0
// member's scale learnt the spike unbounded (see groupSpreadClip): after one
// of 10⁵ scales a deviation of 12 scored 0.05-0.40 for 300 evaluations.
func TestGroupSpikeKeepsMember(t *testing.T) {
	for _, spike := range []float64{1e3, 1e5, 1e9} {
		for _, after := range []int{20, 300} {
			t.Run(fmt.Sprintf("spike %g, %d later", spike, after), func(t *testing.T) {
				g, gen, x := mustGroup(t, 3), gaussians(4, 3, 0), make([]float64, 3)
				i := 0
				next := func() {
					g.Update(groupT0+int64(i)*30_000, x)
					i++
				}
				for range 5000 {
					gen(x)
					next()
				}
				gen(x)
				x[2] = spike
				next()
				for range after {
					gen(x)
					next()
				}
				gen(x)
				x[2] = 12
				r := g.Update(groupT0+int64(i)*30_000, x)
				require.Greater(t, r.Undamped, 1.0, "12σ in the spiked member")
				require.Equal(t, 2, r.Member)
			})
		}
	}
}

// TestGroupDirectedPeaks: with "up", a member that dips far again and again
// (a queue drained every few minutes) keeps scoring its rises in full: its
// recurring peaks are learnt in the direction scored. Learnt both ways, the
// dips compressed its rises to 8/20 and a rise of 12 scales scored below 1.
func TestGroupDirectedPeaks(t *testing.T) {
	for _, tc := range []struct {
		dir  Direction
		sign float64
	}{{Up, 1}, {Down, -1}} {
		t.Run(tc.dir.String(), func(t *testing.T) {
			o := DefaultOptions()
			o.Direction = tc.dir
			g, err := NewGroup(3, 0, o)
			require.NoError(t, err)
			gen, x := gaussians(9, 3, 0), make([]float64, 3)
			for i := range 5000 {
				gen(x)
				if i%50 == 0 {
					x[2] = -tc.sign * 20 // against the direction scored
				}
				g.Update(groupT0+int64(i)*30_000, x)
			}
			gen(x)
			x[2] = tc.sign * 12
			r := g.Update(groupT0+5000*30_000, x)
			t.Logf("a rise of 12 after dips of 20 every 50: %.2f", r.Undamped)
			require.Greater(t, r.Undamped, 1.0)
			require.Equal(t, 2, r.Member)
		})
	}
}

// gaussians returns a generator of k standard normal members, the first
// two correlated by rho.
func gaussians(seed uint64, k int, rho float64) func(x []float64) {
	rng := rand.New(rand.NewPCG(seed, 11))
	return func(x []float64) {
		for i := range k {
			x[i] = rng.NormFloat64()
		}
		x[1] = rho*x[0] + math.Sqrt(1-rho*rho)*x[1]
	}
}

// TestGroupFarMemberScores: one member far out scores above 1 whatever
// the group's size. With deviations clipped at 8 before the distance, one
// member alone could add at most 8 to it, and a group of 8 never alarmed.
func TestGroupFarMemberScores(t *testing.T) {
	for _, k := range []int{2, 4, MaxGroupMembers} {
		t.Run(fmt.Sprintf("members=%d", k), func(t *testing.T) {
			g, gen, x := mustGroup(t, k), gaussians(1, k, 0), make([]float64, k)
			for i := range 5000 {
				gen(x)
				g.Update(groupT0+int64(i)*30_000, x)
			}
			saved, err := g.AppendBinary(nil)
			require.NoError(t, err)
			at := func(sigmas float64) float64 {
				h := mustGroup(t, k)
				require.NoError(t, h.Restore(saved))
				y := make([]float64, k)
				y[k-1] = sigmas
				return h.Update(groupT0+5000*30_000, y).Score
			}
			far, twelve := at(1000), at(12)
			t.Logf("one member at 1000σ: %.2f, at 12σ: %.2f", far, twelve)
			require.Greater(t, far, 1.0)
			require.Greater(t, twelve, 1.0)
			require.Greater(t, far, twelve, "further scores higher")
		})
	}
}

// TestGroupFalseAlarms counts scores above 1 on normal vectors: at most
// about the false-alarm rate, also with "up" on members that move in
// opposite ways (calibrated on undirected distances, 5 times the rate).
func TestGroupFalseAlarms(t *testing.T) {
	const n = 100_000
	for _, tc := range []struct {
		name string
		k    int
		rho  float64
		dir  Direction
	}{
		{"independent", 4, 0, Both},
		{"correlated", 3, 0.95, Both},
		{"opposite, up", 2, -0.9, Up},
		{"opposite, down", 2, -0.9, Down},
		{"correlated, up", 2, 0.9, Up},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := DefaultOptions()
			o.Direction = tc.dir
			g, err := NewGroup(tc.k, 0, o)
			require.NoError(t, err)
			gen, x := gaussians(2, tc.k, tc.rho), make([]float64, tc.k)
			above := 0
			for i := range n {
				gen(x)
				if g.Update(groupT0+int64(i)*30_000, x).Score > 1 {
					above++
				}
			}
			t.Logf("%d of %d above 1", above, n)
			require.LessOrEqual(t, float64(above), 2*o.FalseAlarmRate*n)
		})
	}
}

// TestGroupFirstScore: a group's first score, on the vector that ends its
// warm-up, is calibrated like the rest. Its calibration starts after the
// warm-up, so the first score came when the tail had just its minimum of
// samples, whose quantile it read only at the next: against the
// placeholder 1, a distance of 1.65 scored above 1 (on Gaussian noise, 46
// of 200 new groups of 2 members, 118 of 4, 193 of 8), an alarm as each
// new pod's group became ready.
func TestGroupFirstScore(t *testing.T) {
	const groups = 200
	for _, k := range []int{2, 4, MaxGroupMembers} {
		t.Run(fmt.Sprintf("members=%d", k), func(t *testing.T) {
			above := 0
			for seed := range uint64(groups) {
				g, gen, x := mustGroup(t, k), gaussians(seed, k, 0), make([]float64, k)
				for i := 0; ; i++ {
					gen(x)
					if r := g.Update(groupT0+int64(i)*30_000, x); r.Ready {
						if r.Score > 1 {
							above++
						}
						break
					}
				}
			}
			require.Zero(t, above, "first scores above 1 of %d groups", groups)
		})
	}
}

func TestNewGroupBounds(t *testing.T) {
	for _, k := range []int{0, 1, MaxGroupMembers + 1} {
		_, err := NewGroup(k, 0, DefaultOptions())
		require.Error(t, err, "k=%d", k)
	}
}

func TestGroupUpdateAllocs(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	g := mustGroup(t, 4)
	x := make([]float64, 4)
	i := 0
	allocs := testing.AllocsPerRun(1000, func() {
		podVector(rng, i, x)
		x[3] = rng.Float64()
		g.Update(groupT0+int64(i)*30_000, x)
		i++
	})
	require.Zero(t, allocs)
}

func BenchmarkGroupUpdate(b *testing.B) {
	for _, k := range []int{2, 4, MaxGroupMembers} {
		b.Run("members="+string(rune('0'+k)), func(b *testing.B) {
			rng := rand.New(rand.NewPCG(9, 10))
			g := mustGroup(b, k)
			xs := make([][]float64, 1024)
			for i := range xs {
				xs[i] = make([]float64, k)
				for j := range k {
					xs[i][j] = rng.NormFloat64()
				}
			}
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				g.Update(groupT0+int64(i)*30_000, xs[i%len(xs)])
			}
		})
	}
}
