package pipeline

// Run: go test -run '^$' -bench Incidents -benchtime 1x ./pipeline

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/omen-sidecar/omen/config"
	"github.com/omen-sidecar/omen/detect"
)

// incidentRun feeds n samples of gen, every interval, to a detector with
// the default options and the pipeline's incident bookkeeping (hold
// 5 minutes), and returns the incidents that opened from sample warm on,
// each as the length of its longest event (the most
// omen_incident_duration_seconds said while it was open). held is the anchor, what the rules before incidents alerted on: the
// spans of consecutive scores above 1 (anomaly_score > 1 held for the
// tier's for).
func incidentRun(tb testing.TB, gen func(i int) float64, interval time.Duration, n, warm int) (incidents, held []inc) {
	return incidentRunWith(tb, config0().Defaults, gen, interval, n, warm)
}

// incidentRunWith is incidentRun with the scoring options sc.
func incidentRunWith(tb testing.TB, sc config.Scoring, gen func(i int) float64, interval time.Duration, n, warm int) (incidents, held []inc) {
	d, err := detect.New(detectOptions(sc))
	if err != nil {
		tb.Fatal(err)
	}
	holdMs := (5 * time.Minute).Milliseconds()
	var p published
	var longest time.Duration // of the open incident's events
	heldFrom := int64(-1)
	for i := range n {
		t := int64(i) * interval.Milliseconds()
		r := d.Update(t, gen(i))
		if i < warm {
			continue
		}
		prev := p
		p.t = t
		incident(&p, t, r, holdMs, 0)
		if prev.since != 0 && p.since != prev.since {
			incidents = append(incidents, inc{longest, prev.peak})
			longest = 0
		}
		if p.since != 0 {
			longest = max(longest, p.duration())
		}
		switch {
		case r.Score > 1 && heldFrom < 0:
			heldFrom = t
		case r.Score <= 1 && heldFrom >= 0:
			held = append(held, inc{time.Duration(t-interval.Milliseconds()-heldFrom) * time.Millisecond, 1})
			heldFrom = -1
		}
	}
	if p.since != 0 {
		incidents = append(incidents, inc{longest, p.peak})
	}
	if heldFrom >= 0 {
		held = append(held, inc{time.Duration(int64(n-1)*interval.Milliseconds()-heldFrom) * time.Millisecond, 1})
	}
	return incidents, held
}

// BenchmarkIncidents measures what the generated alerts rest on: how often
// an incident whose event lasts 5 or 10 minutes (the default warning and
// critical tiers' for) happens on normal data, per series and day, and how
// often a lasting shift makes one that fires the warning (peak above 1,
// 5m) or the critical tier (peak above 2, 5m), at scrape intervals of 1 s,
// 15 s and 60 s; and the same for events of 20 samples (5m at 15 s: the
// tier's for scaled to the interval). False ones: 200 000 samples of each
// kind of noise after 20 000 of warm-up; true ones: 20 series (seeds) with
// a shift held for 2 000 samples after 5 000, on a flat series, on a
// daily cycle, and 60 samples after a glitch (the detector damps the
// follow-ups of an event for 100 samples); and 20 series stuck at their
// last value for 2 000 samples after 5 000 (a noisy gauge, a daily cycle,
// a rate). The anchor is the rule before incidents, anomaly_score > 1
// held for 5m.
func BenchmarkIncidents(b *testing.B) {
	for _, iv := range []time.Duration{time.Second, 15 * time.Second, time.Minute} {
		day := float64(24*time.Hour) / float64(iv) // samples a day
		cycle := func(i int) float64 { return 10 * math.Sin(2*math.Pi*float64(i)/day) }
		noises := []struct {
			name string
			gen  func(r *rand.Rand) func(i int) float64
		}{
			{"gauss", func(r *rand.Rand) func(int) float64 { return func(int) float64 { return 100 + r.NormFloat64() } }},
			{"lognormal", func(r *rand.Rand) func(int) float64 { return func(int) float64 { return math.Exp(r.NormFloat64()) } }},
			{"poisson3", func(r *rand.Rand) func(int) float64 { return func(int) float64 { return float64(poisson(r, 3)) } }},
			{"daily-cycle", func(r *rand.Rand) func(int) float64 {
				return func(i int) float64 { return 100 + cycle(i) + r.NormFloat64() }
			}},
			{"ar1-0.95", func(r *rand.Rand) func(int) float64 {
				x := 0.0
				return func(int) float64 { x = 0.95*x + r.NormFloat64(); return 100 + x }
			}},
			{"random-walk", func(r *rand.Rand) func(int) float64 {
				x := 100.0
				return func(int) float64 { x += r.NormFloat64(); return x }
			}},
		}
		for _, nz := range noises {
			b.Run(fmt.Sprintf("interval=%s/false/%s", iv, nz.name), func(b *testing.B) {
				for range b.N {
					const n, warm = 220_000, 20_000
					got, held := incidentRun(b, nz.gen(rand.New(rand.NewPCG(1, 2))), iv, n, warm)
					days := float64(n-warm) * iv.Seconds() / 86400
					b.ReportMetric(float64(len(got))/days, "incidents/day")
					b.ReportMetric(float64(countAtLeast(got, 5*time.Minute, 1))/days, "5m-incidents/day")
					b.ReportMetric(float64(countAtLeast(got, 5*time.Minute, 2))/days, "critical/day")
					b.ReportMetric(float64(countAtLeast(got, 10*time.Minute, 0))/days, "10m-incidents/day")
					b.ReportMetric(float64(countAtLeast(got, 20*iv, 0))/days, "20-sample-incidents/day")
					b.ReportMetric(float64(countAtLeast(held, 5*time.Minute, 0))/days, "anchor-held-5m/day")
				}
			})
		}
		for _, shift := range []float64{5, 10, 20} {
			for _, base := range []string{"flat", "daily-cycle", "after-glitch"} {
				b.Run(fmt.Sprintf("interval=%s/true/shift=%gσ/%s", iv, shift, base), func(b *testing.B) {
					for range b.N {
						const seeds, at = 20, 5000
						var warn, crit, twenty, held5 int
						for seed := range uint64(seeds) {
							r := rand.New(rand.NewPCG(seed, 2))
							gen := func(i int) float64 {
								v := 100 + r.NormFloat64()
								switch {
								case base == "daily-cycle":
									v += cycle(i)
								case base == "after-glitch" && i == at-60:
									v += 20
								}
								if i >= at {
									v += shift
								}
								return v
							}
							got, held := incidentRun(b, gen, iv, at+2000, at)
							warn += countAtLeast(got[:min(1, len(got))], 5*time.Minute, 1)
							crit += countAtLeast(got[:min(1, len(got))], 5*time.Minute, 2)
							twenty += countAtLeast(got[:min(1, len(got))], 20*iv, 1)
							held5 += min(1, countAtLeast(held, 5*time.Minute, 0))
						}
						b.ReportMetric(float64(warn)/seeds, "fired-warning")
						b.ReportMetric(float64(crit)/seeds, "fired-critical")
						b.ReportMetric(float64(twenty)/seeds, "fired-20-samples")
						b.ReportMetric(float64(held5)/seeds, "anchor-held-5m")
					}
				})
			}
		}
		// A series that stops moving: stuck at its last value (an
		// exporter serving a cached one) for 2 000 samples after 5 000,
		// with the defaults and with the opt-in flat member
		// (`flatline: true`).
		for _, cfg := range []struct {
			name string
			flat bool
		}{{"stuck", false}, {"stuck-flatline", true}} {
			sc := config0().Defaults
			sc.Flatline = cfg.flat
			for _, base := range []string{"gauss", "daily-cycle", "rate"} {
				b.Run(fmt.Sprintf("interval=%s/true/%s/%s", iv, cfg.name, base), func(b *testing.B) {
					for range b.N {
						const seeds, at = 20, 5000
						var warn, crit, twenty int
						for seed := range uint64(seeds) {
							r := rand.New(rand.NewPCG(seed, 2))
							var last float64
							gen := func(i int) float64 {
								if i >= at {
									return last
								}
								switch base {
								case "daily-cycle":
									last = 100 + cycle(i) + r.NormFloat64()
								case "rate": // rate(x[1m]) of ~3 events a second
									last = float64(poisson(r, 3*iv.Seconds())) / iv.Seconds()
								default:
									last = 100 + r.NormFloat64()
								}
								return last
							}
							got, _ := incidentRunWith(b, sc, gen, iv, at+2000, at)
							warn += countAtLeast(got[:min(1, len(got))], 5*time.Minute, 1)
							crit += countAtLeast(got[:min(1, len(got))], 5*time.Minute, 2)
							twenty += countAtLeast(got[:min(1, len(got))], 20*iv, 1)
						}
						b.ReportMetric(float64(warn)/seeds, "fired-warning")
						b.ReportMetric(float64(crit)/seeds, "fired-critical")
						b.ReportMetric(float64(twenty)/seeds, "fired-20-samples")
					}
				})
			}
		}
	}
}

// countAtLeast counts the incidents of at least d whose peak is above
// peak.
func countAtLeast(is []inc, d time.Duration, peak float64) int {
	n := 0
	for _, i := range is {
		if i.d >= d && i.peak > peak {
			n++
		}
	}
	return n
}

// inc is an incident as the benchmark sees it: its event's length and its
// peak score.
type inc struct {
	d    time.Duration
	peak float64
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
