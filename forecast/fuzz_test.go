package forecast

import (
	"math"
	"testing"
)

// FuzzUnmarshal: whatever the bytes, UnmarshalBinary errs or gives a Model
// that forecasts; it never panics nor allocates what a damaged header
// claims (a model's size is bounded by Options.Validate).
func FuzzUnmarshal(f *testing.F) {
	m, _ := New(Options{MaxHorizon: 8, History: 64, MinSamples: 32, RefitEvery: 8})
	for i := range 80 {
		m.Update(int64(i)*60_000, 10+math.Sin(float64(i)/3))
	}
	m.Forecast(nil, 8)
	good, _ := m.MarshalBinary()
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Fuzz(func(t *testing.T, b []byte) {
		var r Model
		if r.UnmarshalBinary(b) != nil {
			return
		}
		for _, p := range r.Forecast(nil, r.opts.MaxHorizon) {
			if math.IsNaN(p.Yhat) {
				t.Fatalf("NaN forecast from a model that decoded: %+v", p)
			}
		}
	})
}
