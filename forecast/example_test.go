package forecast_test

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/omen-sidecar/omen/forecast"
)

// A request rate with a daily cycle and noise, sampled hourly for four
// weeks: the model finds the 24-sample season itself and forecasts the next
// day with 95% intervals.
func Example() {
	rng := rand.New(rand.NewPCG(1, 1))
	m, err := forecast.New(forecast.DefaultOptions())
	if err != nil {
		panic(err)
	}
	const hour = int64(3600_000)
	for i := range 24 * 28 {
		rate := 100 + 40*math.Sin(2*math.Pi*float64(i)/24) + 3*rng.NormFloat64()
		m.Update(int64(i)*hour, rate)
	}
	pts := m.Forecast(nil, 24)
	fmt.Println("step:", m.Step()/hour, "h; seasons:", m.Seasons())
	for _, p := range pts[:3] {
		fmt.Printf("t+%dh yhat %.1f in [%.1f, %.1f]\n", (p.TsMillis-int64(24*28-1)*hour)/hour, p.Yhat, p.Lower, p.Upper)
	}
	// Output:
	// step: 1 h; seasons: [24]
	// t+1h yhat 101.3 in [95.7, 111.4]
	// t+2h yhat 110.7 in [101.1, 121.7]
	// t+3h yhat 121.0 in [110.5, 133.0]
}

// Options that are out of range are reported all at once.
func ExampleOptions_Validate() {
	err := forecast.Options{Coverage: 2, MaxHorizon: -1}.Validate()
	fmt.Println(err)
	// Output:
	// coverage 2: want a value in (0, 1)
	// max horizon -1: want 1..65536
}

// A model's state survives a restart: the restored copy forecasts the same.
func ExampleModel_MarshalBinary() {
	m, _ := forecast.New(forecast.Options{})
	for i := range 500 {
		m.Update(int64(i)*60_000, 10+float64(i%12))
	}
	before := m.Forecast(nil, 3)
	b, _ := m.MarshalBinary()
	var r forecast.Model
	if err := r.UnmarshalBinary(b); err != nil {
		panic(err)
	}
	after := r.Forecast(nil, 3)
	fmt.Println(len(b) < 10_000, before[2] == after[2])
	// Output:
	// true true
}
