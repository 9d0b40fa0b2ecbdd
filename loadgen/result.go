package loadgen

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// stats is one worker's record; only that worker writes it.
type stats struct {
	requests, samples, accepted int64
	errors                      map[string]int64
	latencies                   []time.Duration
	genErr                      error
}

func (st *stats) fail(class, msg string, s *sender) {
	if st.errors == nil {
		st.errors = map[string]int64{}
	}
	st.errors[class]++
	s.logOnce(class, msg)
}

func firstGenErr(all []stats) error {
	var errs []error
	for _, st := range all {
		errs = append(errs, st.genErr)
	}
	return errors.Join(errs...)
}

// Phase is what one phase (warm-up or measured) sent and got back.
type Phase struct {
	Seconds          float64 `json:"seconds"`
	Requests         int64   `json:"requests"`     // sent, answered or not
	Samples          int64   `json:"samples_sent"` // in the requests sent
	Accepted         int64   `json:"samples_accepted"`
	SamplesPerSecond float64 `json:"accepted_samples_per_second"`
	RequestsPerSec   float64 `json:"requests_per_second"`
	P50              float64 `json:"latency_p50_seconds"`
	P99              float64 `json:"latency_p99_seconds"`
	Max              float64 `json:"latency_max_seconds"` // latencies: of the answers and of the timeouts
	// Errors counts the requests not acknowledged by their HTTP status,
	// "timeout" (no answer within Options.Timeout) or "transport" (the
	// connection refused or broken). None is retried (see Run).
	Errors       map[string]int64 `json:"errors_by_status"`
	CPUSeconds   float64          `json:"generator_cpu_seconds"` // user+system of this process; 0 for the warm-up
	Probe        *ProbeResult     `json:"probe,omitempty"`
	DrainSeconds float64          `json:"drain_seconds,omitempty"` // see Options.DrainURL
}

// Result is the outcome of Run.
type Result struct {
	Protocol         int    `json:"protocol"`
	Series           int    `json:"series"`
	SamplesPerSeries int    `json:"samples_per_series"`
	Batch            int    `json:"batch"`
	Concurrency      int    `json:"concurrency"`
	Warmup           *Phase `json:"warmup,omitempty"`
	Measured         *Phase `json:"measured"`
}

func summarize(all []stats, elapsed, cpu time.Duration) *Phase {
	p := &Phase{Seconds: elapsed.Seconds(), CPUSeconds: cpu.Seconds(), Errors: map[string]int64{}}
	var lat []time.Duration
	for _, st := range all {
		p.Requests += st.requests
		p.Samples += st.samples
		p.Accepted += st.accepted
		for k, v := range st.errors {
			p.Errors[k] += v
		}
		lat = append(lat, st.latencies...)
	}
	if elapsed > 0 {
		p.SamplesPerSecond = float64(p.Accepted) / elapsed.Seconds()
		p.RequestsPerSec = float64(p.Requests) / elapsed.Seconds()
	}
	if len(lat) > 0 {
		slices.Sort(lat)
		p.P50 = quantile(lat, 0.50).Seconds()
		p.P99 = quantile(lat, 0.99).Seconds()
		p.Max = lat[len(lat)-1].Seconds()
	}
	return p
}

// quantile is the nearest-rank q-quantile of sorted d: the smallest value
// with at least q of the values at or below it.
func quantile(d []time.Duration, q float64) time.Duration {
	i := int(q*float64(len(d))+0.999999) - 1
	return d[min(max(i, 0), len(d)-1)]
}

// JSON is the result on one line, for scripts.
func (r *Result) JSON() string {
	b, err := json.Marshal(r)
	if err != nil { // cannot happen for these field types
		return fmt.Sprintf(`{"error":%q}`, err.Error())
	}
	return string(b)
}

// String is the result for people.
func (r *Result) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "remote-write %d.0, %d series, %d samples/series/request, batch %d samples, %d workers\n",
		r.Protocol, r.Series, r.SamplesPerSeries, r.Batch, r.Concurrency)
	if r.Warmup != nil {
		fmt.Fprintf(&b, "warm-up:  %s\n", r.Warmup.line())
	}
	fmt.Fprintf(&b, "measured: %s\n", r.Measured.line())
	m := r.Measured
	if m.DrainSeconds > 0 {
		fmt.Fprintf(&b, "scored everything sent %s after the load ended: %.0f samples/s accepted and scored\n",
			dur(m.DrainSeconds), float64(m.Accepted)/(m.Seconds+m.DrainSeconds))
	}
	if p := m.Probe; p != nil {
		fmt.Fprintf(&b, "probe: write acknowledged to its anomaly score published: p50 %s p99 %s max %s over %d probes, %d missed (polled every %s)\n",
			dur(p.P50), dur(p.P99), dur(p.Max), p.Probes, p.Missed, dur(p.PollGap))
	}
	if m.Seconds > 0 {
		per := 0.0
		if m.Samples > 0 {
			per = m.CPUSeconds / float64(m.Samples) * 1e9
		}
		fmt.Fprintf(&b, "generator CPU: %.2f s (%.2f cores, %.0f ns/sample sent)\n", m.CPUSeconds, m.CPUSeconds/m.Seconds, per)
	}
	return b.String()
}

func (p *Phase) line() string {
	codes := make([]string, 0, len(p.Errors))
	for k := range p.Errors {
		codes = append(codes, k)
	}
	slices.Sort(codes)
	errs := "none"
	if len(codes) > 0 {
		parts := make([]string, len(codes))
		for i, k := range codes {
			parts[i] = fmt.Sprintf("%s×%d", k, p.Errors[k])
		}
		errs = strings.Join(parts, " ")
	}
	return fmt.Sprintf("%.1f s, %.0f samples/s accepted (%d of %d), %.1f requests/s, latency p50 %s p99 %s max %s, errors: %s",
		p.Seconds, p.SamplesPerSecond, p.Accepted, p.Samples, p.RequestsPerSec,
		dur(p.P50), dur(p.P99), dur(p.Max), errs)
}

func dur(s float64) string {
	return time.Duration(s * float64(time.Second)).Round(10 * time.Microsecond).String()
}
