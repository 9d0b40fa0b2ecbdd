package pipeline

// Run: go test -run '^$' -bench Incidents -benchtime 1x ./pipeline

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/omen-sidecar/omen/detect"
)

// incidentRun feeds n samples of gen, every interval, to a detector with
// the default options and the pipeline's incident bookkeeping (hold
// 5 minutes), and returns the incidents that opened from sample warm on,
// each as the length of its event (omen_incident_duration_seconds at its
// end). held is the anchor, what the rules before incidents alerted on: the
// spans of consecutive scores above 1 (anomaly_score > 1 held for the
// tier's for).
func incidentRun(tb testing.TB, gen func(i int) float64, interval time.Duration, n, warm int) (incidents, held []time.Duration) {
	d, err := detect.New(detectOptions(config0().Defaults))
	if err != nil {
		tb.Fatal(err)
	}
	holdMs := (5 * time.Minute).Milliseconds()
	var p published
	heldFrom := int64(-1)
	for i := range n {
		t := int64(i) * interval.Milliseconds()
		r := d.Update(t, gen(i))
		if i < warm {
			continue
		}
		prev := p
		p.t = t
		incident(&p, t, r, holdMs)
		if prev.since != 0 && p.since != prev.since {
			incidents = append(incidents, time.Duration(prev.lastHot-prev.since)*time.Millisecond)
		}
		switch {
		case r.Score > 1 && heldFrom < 0:
			heldFrom = t
		case r.Score <= 1 && heldFrom >= 0:
			held = append(held, time.Duration(t-interval.Milliseconds()-heldFrom)*time.Millisecond)
			heldFrom = -1
		}
	}
	if p.since != 0 {
		incidents = append(incidents, time.Duration(p.lastHot-p.since)*time.Millisecond)
	}
	if heldFrom >= 0 {
		held = append(held, time.Duration(int64(n-1)*interval.Milliseconds()-heldFrom)*time.Millisecond)
	}
	return incidents, held
}

// BenchmarkIncidents measures what the generated alerts rest on: how often
// an incident whose event lasts 5 or 10 minutes (the default warning and
// critical tiers' for) happens on normal data, per series and day, and how
// often a lasting shift makes one, at scrape intervals of 1 s, 15 s and
// 60 s; and the same for events of 20 samples (5m at 15 s: the tier's for
// scaled to the interval). False ones: 200 000 samples of each kind of noise after 20 000 of
// warm-up; true ones: 20 series (seeds) with a shift held for 2 000
// samples after 5 000.
func BenchmarkIncidents(b *testing.B) {
	noises := []struct {
		name string
		gen  func(r *rand.Rand) func(i int) float64
	}{
		{"gauss", func(r *rand.Rand) func(int) float64 { return func(int) float64 { return 100 + r.NormFloat64() } }},
		{"lognormal", func(r *rand.Rand) func(int) float64 { return func(int) float64 { return math.Exp(r.NormFloat64()) } }},
		{"daily-sine", func(r *rand.Rand) func(int) float64 {
			return func(i int) float64 { return 100 + 10*math.Sin(2*math.Pi*float64(i)/288) + r.NormFloat64() }
		}},
		{"poisson3", func(r *rand.Rand) func(int) float64 { return func(int) float64 { return float64(poisson(r, 3)) } }},
		{"random-walk", func(r *rand.Rand) func(int) float64 {
			x := 100.0
			return func(int) float64 { x += r.NormFloat64(); return x }
		}},
	}
	for _, iv := range []time.Duration{time.Second, 15 * time.Second, time.Minute} {
		for _, nz := range noises {
			b.Run(fmt.Sprintf("interval=%s/false/%s", iv, nz.name), func(b *testing.B) {
				for range b.N {
					const n, warm = 220_000, 20_000
					got, held := incidentRun(b, nz.gen(rand.New(rand.NewPCG(1, 2))), iv, n, warm)
					days := float64(n-warm) * iv.Seconds() / 86400
					b.ReportMetric(float64(countAtLeast(held, 5*time.Minute))/days, "anchor-held-5m/day")
					b.ReportMetric(float64(len(got))/days, "incidents/day")
					b.ReportMetric(float64(countAtLeast(got, 5*time.Minute))/days, "5m-incidents/day")
					b.ReportMetric(float64(countAtLeast(got, 10*time.Minute))/days, "10m-incidents/day")
					b.ReportMetric(float64(countAtLeast(got, 20*iv))/days, "20-sample-incidents/day")
				}
			})
		}
		for _, shift := range []float64{5, 10, 20} {
			for _, amp := range []float64{0, 10} {
				b.Run(fmt.Sprintf("interval=%s/true/shift=%gσ/season=%g", iv, shift, amp), func(b *testing.B) {
					for range b.N {
						const seeds, at = 20, 5000
						var fired5, fired10, fired20s, held5 int
						for seed := range uint64(seeds) {
							r := rand.New(rand.NewPCG(seed, 2))
							gen := func(i int) float64 {
								v := 100 + amp*math.Sin(2*math.Pi*float64(i)/288) + r.NormFloat64()
								if i >= at {
									v += shift
								}
								return v
							}
							got, held := incidentRun(b, gen, iv, at+2000, at)
							if countAtLeast(held, 5*time.Minute) > 0 {
								held5++
							}
							if len(got) > 0 && got[0] >= 5*time.Minute {
								fired5++
							}
							if len(got) > 0 && got[0] >= 10*time.Minute {
								fired10++
							}
							if len(got) > 0 && got[0] >= 20*iv {
								fired20s++
							}
						}
						b.ReportMetric(float64(fired5)/seeds, "fired-5m")
						b.ReportMetric(float64(held5)/seeds, "anchor-held-5m")
						b.ReportMetric(float64(fired10)/seeds, "fired-10m")
						b.ReportMetric(float64(fired20s)/seeds, "fired-20-samples")
					}
				})
			}
		}
	}
}

func countAtLeast(ds []time.Duration, min time.Duration) int {
	n := 0
	for _, d := range ds {
		if d >= min {
			n++
		}
	}
	return n
}

// poisson draws from Poisson(l) by inversion.
func poisson(r *rand.Rand, l float64) int {
	k, p := 0, math.Exp(-l)
	s, u := p, r.Float64()
	for u > s {
		k++
		p *= l / float64(k)
		s += p
	}
	return k
}
