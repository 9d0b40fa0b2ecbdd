package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// soakEnv reads a duration from the environment, with a default.
func soakEnv(t *testing.T, name string, def time.Duration) time.Duration {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	require.NoError(t, err, "%s=%q", name, v)
	return d
}

// TestSoak is `make soak` (scripts/soak.sh), not part of make test: it
// measures the most samples/s the acknowledging writer gets through omen,
// then runs at half of that for SOAK_DURATION (10m) with a SIGKILL and
// restart every SOAK_KILL_EVERY (2m), and reports acknowledged versus
// read-back samples (which must be equal), omen's RSS over time, and the
// restarts. Lines starting with "SOAK" are the report.
//
// Timestamps advance by 5s per round, 100x faster or more than the wall
// clock at the rates this machine reaches, so that the head compacts a 2h
// block about every minute and the soak covers the TSDB's steady state
// (head compaction, WAL truncation, block compaction, retention), with kills
// landing in any of them, instead of a head that only grows.
func TestSoak(t *testing.T) {
	if os.Getenv("OMEN_SOAK") != "1" {
		t.Skip("the soak runs under make soak (OMEN_SOAK=1)")
	}
	duration := soakEnv(t, "SOAK_DURATION", 10*time.Minute)
	killEvery := soakEnv(t, "SOAK_KILL_EVERY", 2*time.Minute)
	measureFor := soakEnv(t, "SOAK_MEASURE", 30*time.Second)
	const series, workers = 10000, 5 // 2,000 samples per request, Prometheus's max_samples_per_send

	// 1. The maximum: the same writer at full speed against a fresh omen.
	rate, _ := strconv.ParseFloat(os.Getenv("SOAK_MAX_RATE"), 64)
	if rate == 0 {
		dir, port := t.TempDir(), freePort(t)
		p := omenAt(t, dir, port)
		p.WaitReady(60 * time.Second)
		m := newAckWriter("soak_measure", series, workers, time.Now().Add(-50*time.Minute).UnixMilli(), 100)
		m.start(p.URL)
		time.Sleep(5 * time.Second) // series created; the measured part appends to existing ones
		from, t0 := m.ackedSamples(), time.Now()
		time.Sleep(measureFor)
		rate = float64(m.ackedSamples()-from) / time.Since(t0).Seconds()
		m.stop()
		p.Kill()
		require.Nil(t, m.bad.Load())
	}
	target := rate / 2
	// Every worker sends its series/workers samples per round, all in
	// parallel: series samples per interval in total.
	interval := time.Duration(float64(time.Second) * float64(series) / target)
	rounds := int(duration/interval) + 1
	t.Logf("SOAK max %.0f samples/s measured (%d series, %d writers, %d samples per request); soak at half: %.0f samples/s for %s, SIGKILL every %s",
		rate, series, workers, series/workers, target, duration, killEvery)

	// 2. The soak.
	dir, port := t.TempDir(), freePort(t)
	var cur atomic.Pointer[proc]
	p := omenAt(t, dir, port)
	p.WaitReady(60 * time.Second)
	cur.Store(p)
	const step = 5000 // ms of sample time per round: a 5s scrape interval
	w := newAckWriter("soak_durability", series, workers, time.Now().Add(-time.Duration(rounds)*step*time.Millisecond-30*time.Minute).UnixMilli(), step)
	w.interval, w.rounds = interval, rounds
	start := time.Now()
	w.start(p.URL)

	type point struct {
		at                    time.Duration
		rss, anon, file, heap int64
		restarts              int
	}
	var (
		mu       sync.Mutex
		points   []point
		restarts int
		stopRSS  = make(chan struct{})
		rssDone  = make(chan struct{})
	)
	go func() {
		defer close(rssDone)
		for {
			pr := cur.Load()
			if m, err := procMem(pr.cmd.Process.Pid); err == nil {
				heap, _ := metricValue(pr.URL, "go_memstats_heap_inuse_bytes")
				mu.Lock()
				points = append(points, point{time.Since(start), m["VmRSS"], m["RssAnon"], m["RssFile"], int64(heap), restarts})
				mu.Unlock()
			}
			select {
			case <-stopRSS:
				return
			case <-time.After(10 * time.Second):
			}
		}
	}()

	var downtimes []time.Duration
	for next := start.Add(killEvery); next.Before(start.Add(duration)); next = next.Add(killEvery) {
		time.Sleep(time.Until(next))
		p.Kill()
		down := time.Now()
		mu.Lock()
		restarts++
		mu.Unlock()
		p = omenAt(t, dir, port)
		p.WaitReady(120 * time.Second)
		cur.Store(p)
		downtimes = append(downtimes, time.Since(down).Round(time.Millisecond))
		t.Logf("SOAK kill %d at %s: SIGKILL, ready again after %s; %d samples acknowledged so far",
			len(downtimes), time.Since(start).Round(time.Second), downtimes[len(downtimes)-1], w.ackedSamples())
	}
	time.Sleep(time.Until(start.Add(duration)))
	w.drain()
	close(stopRSS)
	<-rssDone
	elapsed := time.Since(start)
	require.Nil(t, w.bad.Load(), "a write was refused with 4xx")

	mu.Lock()
	t.Logf("SOAK RSS over time, sampled every 10s (MiB: time rss = anonymous + file-backed, Go heap in use):")
	line := ""
	for i, pt := range points {
		line += fmt.Sprintf("  %s %d=%d+%d,%d", pt.at.Round(time.Second), pt.rss>>20, pt.anon>>20, pt.file>>20, pt.heap>>20)
		if i%5 == 4 || i == len(points)-1 {
			t.Logf("SOAK %s", line)
			line = ""
		}
	}
	// The peak of each process's life: flat means no restart segment ends
	// much higher than the ones before it.
	peaks := make([]int64, restarts+1)
	for _, pt := range points {
		peaks[pt.restarts] = max(peaks[pt.restarts], pt.rss)
	}
	mu.Unlock()
	peakMiB := make([]int64, len(peaks))
	for i := range peaks {
		peakMiB[i] = peaks[i] >> 20
	}
	t.Logf("SOAK RSS peak per process (MiB): %v", peakMiB)
	t.Logf("SOAK restarts: %d (SIGKILL), time to ready after each: %v", restarts, downtimes)
	t.Logf("SOAK writer: %s in %s = %.0f samples/s", w, elapsed.Round(time.Second), float64(w.ackedSamples())/elapsed.Seconds())

	// 3. Read back every acknowledged sample.
	stored := w.requireNoneLostInWindows(t, p.URL, 2500)
	t.Logf("SOAK acknowledged %d, read back %d: %s", w.ackedSamples(), stored, map[bool]string{true: "EQUAL", false: "DIFFERENT"}[stored == w.ackedSamples()])
	require.Equal(t, w.ackedSamples(), stored)
}

// requireNoneLostInWindows is requireNoneLostByQuery for writers with
// more samples than one query may load: it checks each series' count and
// sum over windows of perWindow rounds, and returns the samples stored.
func (w *ackWriter) requireNoneLostInWindows(t testing.TB, base string, perWindow int64) int64 {
	t.Helper()
	require.Equal(t, 1, w.spr)
	var maxN int64
	for i := 0; i < w.series; i++ {
		maxN = max(maxN, w.ackedOf(i))
	}
	require.Positive(t, maxN, "nothing was acknowledged")
	var total int64
	for a := int64(0); a < maxN; a += perWindow {
		b := min(a+perWindow, maxN) // rounds [a, b)
		counts, sums := w.countAndSum(t, base, w.t0+(a-1)*w.step, w.t0+(b-1)*w.step)
		for i := 0; i < w.series; i++ {
			hi := min(b, w.ackedOf(i))
			var c int64
			var sum float64
			for n := a; n < hi; n++ {
				c++
				sum += w.value(i, n)
			}
			require.Equal(t, float64(c), counts[i], "series %d rounds [%d,%d): samples stored vs acknowledged", i, a, b)
			require.Equal(t, sum, sums[i], "series %d rounds [%d,%d): sum of values stored vs acknowledged", i, a, b)
			total += int64(counts[i])
		}
	}
	return total
}

// metricsPage reads base's /metrics page.
func metricsPage(base string) (string, error) {
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(base + "/metrics")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// metricValue reads one unlabelled sample from a /metrics page.
func metricValue(base, name string) (float64, error) {
	page, err := metricsPage(base)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(page, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, fmt.Errorf("%s not on /metrics", name)
}
