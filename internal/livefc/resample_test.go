package livefc

import (
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestResampler(t *testing.T) {
	tests := []struct {
		name      string
		minStepMs int64
		in        []tv
		want      []tv
		wantStep  int64     // Resampler.Step after the input
		wantMSD   []float64 // the steps' mean squared deviations, if checked
	}{
		{
			name: "1 s input, 28.125 s minimum: means of 29 samples", minStepMs: 28125,
			in: ramp(0, 1000, 100),
			// The first sample alone, then 1-29, 30-58, 59-87: 88-99
			// are open.
			want:     []tv{{0, 0}, {29000, 15}, {58000, 44}, {87000, 73}},
			wantStep: 29000,
			wantMSD:  []float64{0, 70, 70, 70}, // of 1..29 about 15: (29²-1)/12
		},
		{
			name: "15 s input, 28.125 s minimum: pairs", minStepMs: 28125,
			in:       ramp(0, 15000, 7),
			want:     []tv{{0, 0}, {30000, 1.5}, {60000, 3.5}, {90000, 5.5}},
			wantStep: 30000,
		},
		{
			name: "60 s input: passes through", minStepMs: 28125,
			in:       ramp(60000, 60000, 3),
			want:     []tv{{60000, 0}, {120000, 1}, {180000, 2}},
			wantStep: 60000,
		},
		{
			name: "out of order and repeated samples are ignored", minStepMs: 28125,
			in:       []tv{{60000, 0}, {60000, 9}, {120000, 1}, {90000, 9}, {180000, 2}},
			want:     []tv{{60000, 0}, {120000, 1}, {180000, 2}},
			wantStep: 60000,
		},
		{
			name: "a first interval that was a gap", minStepMs: 28125,
			in: []tv{{0, 1}, {600000, 2}, {615000, 4}, {630000, 6}, {645000, 8}, {660000, 10}},
			// 10m first, passed through; then 15 s: 30 s steps.
			want:     []tv{{0, 1}, {600000, 2}, {630000, 5}, {660000, 9}},
			wantStep: 30000,
		},
		{
			name: "a burst does not change the steps", minStepMs: 28125,
			// 60 s input, then a sample 8 ms after the one before (a
			// sender's retry, a restarted generator's first rounds): it
			// is averaged into the next step (a fixed step became
			// 28 128 ms, 3 516 intervals of 8 ms, for good, and the
			// forecaster, fed 60 s points, took each as after a gap
			// and published no forecast again). The retry is part of
			// its sample's instant: no interval of 8 ms or 59 992.
			in:       []tv{{0, 0}, {60000, 1}, {120000, 2}, {180000, 3}, {180008, 4}, {240000, 5}},
			want:     []tv{{0, 0}, {60000, 1}, {120000, 2}, {180000, 3}, {240000, 4.5}},
			wantStep: 60000,
		},
		{
			name: "a retry right after the first interval", minStepMs: 28125,
			// A fixed step re-estimated from the second interval became
			// 28 125 ms for good: no forecast again.
			in:       []tv{{0, 0}, {60000, 1}, {60005, 2}, {120000, 3}, {180000, 4}, {240000, 5}},
			want:     []tv{{0, 0}, {60000, 1}, {120000, 2.5}, {180000, 4}, {240000, 5}},
			wantStep: 60000,
		},
		{
			name: "10 s and 50 s in turn: a step a minute", minStepMs: 28125,
			// Each sample was a step: the forecaster, which takes its
			// points as evenly spaced, saw the input's minute as two
			// steps.
			in:       []tv{{0, 0}, {10000, 1}, {60000, 2}, {70000, 3}, {120000, 4}, {130000, 5}, {180000, 6}},
			want:     []tv{{0, 0}, {60000, 1.5}, {120000, 3.5}, {180000, 5.5}},
			wantStep: 50000,
		},
		{
			name: "a resend 5 ms after every sample: a step a minute", minStepMs: 28125,
			// Each resend is part of its sample's instant, so the
			// first is no step of its own (before instants, its 5 ms
			// made the interval 5 ms until the next minute).
			in:       []tv{{0, 0}, {5, 1}, {60000, 2}, {60005, 3}, {120000, 4}, {120005, 5}, {180000, 6}},
			want:     []tv{{0, 0}, {60000, 1.5}, {120000, 3.5}, {180000, 5.5}},
			wantStep: 60000,
		},
		{
			name: "bursts of three 2 ms apart, a minute apart: a step a minute", minStepMs: 28125,
			// The median interval was 2 ms, the step 28 126 ms, and each
			// burst a minute on a gap: two steps a minute.
			in: []tv{{0, 0}, {2, 0}, {4, 0}, {60000, 1}, {60002, 1}, {60004, 1}, {120000, 2}, {120002, 2},
				{120004, 2}, {180000, 3}, {180002, 3}, {180004, 3}, {240000, 4}},
			want:     []tv{{0, 0}, {60000, 1.0 / 3}, {120000, 4.0 / 3}, {180000, 7.0 / 3}, {240000, 10.0 / 3}},
			wantStep: 60000,
		},
		{
			name: "an interval of minStepMs a few ms off: every sample a step", minStepMs: 30000,
			// 30 s samples 3 ms early or late, a 32m horizon: with the
			// median interval 29 997 ms the step was two intervals, with
			// 30 003 one.
			in:       []tv{{0, 0}, {29997, 1}, {60000, 2}, {89997, 3}, {120000, 4}, {149997, 5}, {180000, 6}},
			want:     []tv{{0, 0}, {29997, 1}, {60000, 2}, {89997, 3}, {120000, 4}, {149997, 5}, {180000, 6}},
			wantStep: 30003,
		},
		{
			name: "1 s, 4 ms late: still 29 intervals", minStepMs: 28125,
			in:       ramp(0, 1004, 60),
			want:     []tv{{0, 0}, {29116, 15}, {58232, 44}},
			wantStep: 29116,
		},
		{
			name: "an interval that gets shorter is followed", minStepMs: 28125,
			// 60 s, then 15 s: pairs from the first 15 s interval on (a
			// step fixed at 60 s fed the forecaster 15 s points, and the
			// 30m horizon, 120 of them, was never forecast again; at 1 s
			// no horizon was).
			in: []tv{{0, 0}, {60000, 1}, {120000, 2}, {135000, 3}, {150000, 4}, {165000, 5},
				{180000, 6}, {195000, 7}, {210000, 8}, {225000, 9}, {240000, 10}},
			want:     []tv{{0, 0}, {60000, 1}, {120000, 2}, {150000, 3.5}, {180000, 5.5}, {210000, 7.5}, {240000, 9.5}},
			wantStep: 30000,
		},
		{
			name: "30 s then 15 s: pairs", minStepMs: 28125,
			// A 30 s step was kept, fed 15 s points: the 30m horizon
			// never came.
			in:       []tv{{0, 0}, {30000, 1}, {60000, 2}, {75000, 3}, {90000, 4}, {105000, 5}, {120000, 6}},
			want:     []tv{{0, 0}, {30000, 1}, {60000, 2}, {75000, 3}, {105000, 4.5}},
			wantStep: 30000,
		},
		{
			name: "an interval that gets longer is followed", minStepMs: 28125,
			// 1 s, then 60 s: each sample a step (a step fixed at 29 s
			// made every 60 s point one after a gap: no forecast).
			in:       append(ramp(0, 1000, 59), tv{118000, 59}, tv{178000, 60}, tv{238000, 61}),
			want:     []tv{{0, 0}, {29000, 15}, {58000, 44}, {118000, 59}, {178000, 60}, {238000, 61}},
			wantStep: 60000,
		},
		{
			name: "15 s then 60 s with jitter", minStepMs: 28125,
			// 59 and 61 s intervals: a 30 s step took every 61 s one as
			// a gap, half the forecasts lost.
			in:       []tv{{0, 0}, {15000, 1}, {30000, 2}, {45000, 3}, {104000, 4}, {165000, 5}, {224000, 6}, {285000, 7}},
			want:     []tv{{0, 0}, {30000, 1.5}, {45000, 3}, {104000, 4}, {165000, 5}, {224000, 6}, {285000, 7}},
			wantStep: 61000,
		},
		{
			name: "a gap closes the open step", minStepMs: 28125,
			in:       []tv{{0, 1}, {15000, 3}, {300000, 5}, {315000, 7}, {330000, 9}},
			want:     []tv{{0, 1}, {15000, 3}, {300000, 5}, {330000, 8}},
			wantStep: 30000,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := Resampler{MinStepMs: tc.minStepMs}
			var got []tv
			var msd []float64
			for _, p := range tc.in {
				out, n := r.Add(p.t, p.v)
				for _, o := range out[:n] {
					got, msd = append(got, tv{o.T, o.V}), append(msd, o.MSD)
				}
			}
			require.Equal(t, tc.want, got)
			if tc.wantMSD != nil {
				require.InDeltaSlice(t, tc.wantMSD, msd, 1e-9)
			}
			require.Equal(t, tc.wantStep, r.Step())
		})
	}
}

// tv is a resampler's input or output point without its spread.
type tv struct {
	t int64
	v float64
}

// ramp returns n points from t0 every step with values 0, 1, 2, ...
func ramp(t0, step int64, n int) []tv {
	out := make([]tv, n)
	for i := range out {
		out[i] = tv{t0 + int64(i)*step, float64(i)}
	}
	return out
}

// TestResamplerIntervalOfFastInput: an input faster than an instant
// (minStepMs/instantDiv, 879 ms at 28 125 ms) has its own interval, jitter
// and all, not the span of the samples that fill an instant: measured so,
// 200 ms ± 50 ms was 800-1 100 ms and 450 ms ± 20 ms 880-1 350 ms, and the
// steps, a whole number of that, wandered with it. A burst within an
// instant still records the interval between bursts (TestResampler).
func TestResamplerIntervalOfFastInput(t *testing.T) {
	for _, tc := range []struct {
		name          string
		every, jitter int64
	}{
		{"100 ms", 100, 0},
		{"200 ms ± 50 ms", 200, 50},
		{"450 ms ± 20 ms", 450, 20},
		{"500 ms ± 100 ms", 500, 100},
		{"870 ms ± 20 ms", 870, 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(3, 9))
			r := Resampler{MinStepMs: 28125}
			for i := range int64(3600) {
				tm := i*tc.every + rng.Int64N(2*tc.jitter+1) - tc.jitter
				r.Add(tm, 1)
				if i < 100 {
					continue // the first instants
				}
				// The median of three means of an instant's intervals,
				// each of which two jittered samples bound.
				require.InDelta(t, tc.every, r.Interval(), float64(2*tc.jitter)+1, "sample %d", i)
			}
		})
	}
}
