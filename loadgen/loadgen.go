// Package loadgen drives a remote-write receiver (omen, Prometheus, or any
// other) with realistic series at a sustained rate and measures what it
// accepts.
//
// Series have 6 to 10 labels in the shapes node_exporter, cAdvisor,
// kube-state-metrics and instrumented services expose, 7 families of 12
// counters.
// Each worker owns a disjoint slice of the series and sends them in order,
// one round after another; a round's timestamps are the wall clock or, if a
// worker is faster than a millisecond per round (per sample of a series in
// a request, which are 1 ms apart), one past the previous round's, so a
// receiver never sees a sample out of order. A worker that keeps that pace
// runs ahead of the clock, and stops with an error at maxAhead.
//
// Requests are built ahead of the sender by a builder per worker, from
// label bytes encoded once and buffers reused, so that the generator costs
// far less CPU than the receiver it measures; Result reports its own CPU
// time so that claim can be checked.
package loadgen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/golang/snappy"
)

// Options configure a run. The zero value of a field means its default
// (DefaultOptions); Series and URL must be set.
type Options struct {
	URL              string
	Protocol         int           // 1: remote-write 1.0, 2: remote-write 2.0
	Series           int           // distinct series
	SamplesPerSeries int           // samples of each series in one request
	Batch            int           // samples per request at most (Prometheus's max_samples_per_send)
	Concurrency      int           // workers, each with one request in flight
	Duration         time.Duration // measured time; 0 with Rounds > 0: until Rounds are sent
	Rounds           int           // stop after this many rounds over all series (0: until Duration)
	Warmup           bool          // send one round first, unmeasured: it creates the series
	Timeout          time.Duration // per request
	Ahead            int           // requests each worker builds ahead of its sender
	Seed             uint64
	// Rate caps the samples/s sent, spread over the workers (0: as fast as
	// the receiver answers). The probe's latency is measured at a set rate.
	Rate float64
	// ProbeURL, if set, is omen's base URL: every ProbeEvery during the
	// measured phase a probe series' sample is written and the anomalies
	// API polled until it shows the sample scored (see runProbe).
	ProbeURL   string
	ProbeEvery time.Duration
	// DrainURL, if set, is omen's base URL: after the measured phase, one
	// more sample is written to each of the last drainSeries series and the
	// time until omen has scored them all is reported as DrainSeconds.
	// omen's scoring queues are FIFO, so by then it has scored every sample
	// sent before (samples it dropped from a full queue aside).
	DrainURL string
	// SampleInterval, if set, spaces the rounds' timestamps by it instead
	// of taking them from the clock, starting Backdate before the start:
	// hours of history at 15 s steps written in minutes, so that models
	// that need hours of sample time (forecasters, long windows) reach
	// their steady state in a benchmark. Rounds bounds how far it goes.
	SampleInterval time.Duration
	Backdate       time.Duration
	// StartTimestamps (remote-write 2.0 only) gives every counter sample a
	// start timestamp: 1 ms before the run's first sample, as a sender
	// that knows when its counters started (Prometheus 3 with created
	// timestamps, OpenTelemetry) sends it. Each run is then a counter
	// restart to the receiver, as it would be for a restarted exporter.
	StartTimestamps bool
	Now             func() time.Time // clock for sample timestamps
	Client          *http.Client     // nil: a keep-alive client sized to Concurrency
}

// DefaultOptions returns the defaults validate fills in.
func DefaultOptions() Options {
	return Options{
		Protocol:         1,
		SamplesPerSeries: 1,
		Batch:            2000,
		Concurrency:      4,
		Duration:         time.Minute,
		Timeout:          30 * time.Second,
		Ahead:            2,
		Seed:             1,
		ProbeEvery:       time.Second,
		Now:              time.Now,
	}
}

// maxSeries keeps every series' instance label distinct (see seriesLabels).
const maxSeries = 1 << 23

// maxAhead is how far a round's timestamps may run ahead of the clock.
// Prometheus rejects samples more than 10 minutes in the future.
const maxAhead = 5 * time.Minute

func (o *Options) validate() error {
	d := DefaultOptions()
	if o.Protocol == 0 {
		o.Protocol = d.Protocol
	}
	if o.SamplesPerSeries == 0 {
		o.SamplesPerSeries = d.SamplesPerSeries
	}
	if o.Batch == 0 {
		o.Batch = d.Batch
	}
	if o.Concurrency == 0 {
		o.Concurrency = d.Concurrency
	}
	if o.Duration == 0 && o.Rounds == 0 {
		o.Duration = d.Duration
	}
	if o.Timeout == 0 {
		o.Timeout = d.Timeout
	}
	if o.Ahead == 0 {
		o.Ahead = d.Ahead
	}
	if o.Now == nil {
		o.Now = d.Now
	}
	switch {
	case o.URL == "":
		return errors.New("no URL")
	case o.Protocol != 1 && o.Protocol != 2:
		return fmt.Errorf("protocol %d: want 1 or 2", o.Protocol)
	case o.Series < 1 || o.Series > maxSeries:
		return fmt.Errorf("series %d: want 1 to %d", o.Series, maxSeries)
	case o.SamplesPerSeries < 1 || o.SamplesPerSeries > 1000:
		return fmt.Errorf("samples per series %d: want 1 to 1000", o.SamplesPerSeries)
	case o.Batch < o.SamplesPerSeries:
		return fmt.Errorf("batch %d smaller than samples per series %d", o.Batch, o.SamplesPerSeries)
	case o.Concurrency < 1 || o.Concurrency > o.Series:
		return fmt.Errorf("concurrency %d: want 1 to the number of series (%d)", o.Concurrency, o.Series)
	case o.Rate < 0:
		return fmt.Errorf("rate %g: want >= 0", o.Rate)
	case o.ProbeURL != "" && o.ProbeEvery <= 0:
		return fmt.Errorf("probe interval %s: want > 0", o.ProbeEvery)
	case o.DrainURL != "" && o.Series < drainSeries:
		return fmt.Errorf("a drain check needs at least %d series", drainSeries)
	case o.ProbeURL != "" && o.Series <= o.Concurrency:
		return fmt.Errorf("a probe takes one of the %d series: want more than the %d workers", o.Series, o.Concurrency)
	case o.Duration < 0 || o.Rounds < 0 || o.Timeout < 0 || o.Ahead < 0 || o.SampleInterval < 0 || o.Backdate < 0:
		return errors.New("negative duration, rounds, timeout, ahead, sample interval or backdate")
	case o.Backdate > 0 && o.SampleInterval == 0:
		return errors.New("a backdate needs a sample interval")
	case o.StartTimestamps && o.Protocol != 2:
		return errors.New("start timestamps need remote-write 2.0 (protocol 2)")
	}
	return nil
}

// reqBuf is one request's body, owned by the builder until it is sent on
// ready and by the sender until it is returned on free.
type reqBuf struct {
	body    []byte
	samples int
}

// worker owns series [lo, hi): only it sends them, in order.
type worker struct {
	batches []*batch
	vals    *values
	last    int64 // last timestamp sent, ms
	stats   stats
	// With Options.SampleInterval: round n's timestamp is start + n*every.
	start, every, n int64
}

// nextRound returns the first timestamp of a new round.
func (w *worker) nextRound(now time.Time, sps int) (int64, error) {
	t := now.UnixMilli()
	if w.every > 0 {
		t = w.start + w.n*w.every
		w.n++
	}
	if t <= w.last {
		t = w.last + 1
	}
	if ahead := time.Duration(t-now.UnixMilli()) * time.Millisecond; ahead > maxAhead {
		// A round takes sps ms of timestamps (its samples are 1 ms apart):
		// a worker can send 1000/sps rounds a second and stay at the clock.
		return 0, fmt.Errorf("timestamps would run %v ahead of the clock: more than %g rounds/s per worker, each taking %d ms of timestamps; use more series, fewer workers or fewer samples per series",
			ahead, 1000/float64(sps), sps)
	}
	w.last = t + int64(sps) - 1
	return t, nil
}

// build fills rb with the batch's request for the round at ts, from the
// batch's compressed template (made on first use).
func (w *worker) build(rb *reqBuf, b *batch, ts int64, sps int) {
	rb.samples = b.nSamples
	if b.tmpl != nil {
		var ok bool
		if rb.body, ok = b.tmpl.fill(rb.body, b, ts, sps, w.vals); ok {
			return
		}
	}
	b.tmpl = newTemplate(b, ts, sps)
	var ok bool
	if rb.body, ok = b.tmpl.fill(rb.body, b, ts, sps, w.vals); !ok {
		// The round's own timestamps straddle a varint length (once in
		// decades): encode and compress it the plain way.
		b.tmpl = nil
		rb.body = snappy.Encode(rb.body[:cap(rb.body)], b.appendRequest(nil, ts, sps, w.vals, nil))
	}
}

// Run sends load as configured until the duration passes, the rounds are
// sent or ctx is cancelled, and returns what was measured. Errors returned
// are about the configuration or the generator; the receiver's answers,
// failures included, are in the Result.
//
// A request that fails (a 5xx or 429, a timeout) is not retried, unlike
// Prometheus's remote write, which resends it with backoff: it counts
// under its status in the errors and its samples are lost, so the accepted
// rate is what the receiver took the first time, and the worker's next
// request follows at once (no backoff: a receiver that sheds load keeps
// getting the offered load).
func Run(ctx context.Context, logger *slog.Logger, opts Options) (*Result, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if err := opts.validate(); err != nil {
		return nil, fmt.Errorf("loadgen options: %w", err)
	}
	client := opts.Client
	if client == nil {
		client = &http.Client{Timeout: opts.Timeout, Transport: &http.Transport{
			MaxIdleConnsPerHost: opts.Concurrency,
			DisableCompression:  true,
		}}
		defer client.CloseIdleConnections()
	}
	s := &sender{opts: &opts, client: client, logger: logger, logged: map[string]bool{}}
	workers := newWorkers(&opts)

	res := &Result{Protocol: opts.Protocol, Series: opts.Series, SamplesPerSeries: opts.SamplesPerSeries,
		Batch: opts.Batch, Concurrency: opts.Concurrency}
	if opts.Warmup {
		start := time.Now()
		var wg sync.WaitGroup
		warm := make([]stats, len(workers))
		for i, w := range workers {
			wg.Go(func() {
				ts, err := w.nextRound(opts.Now(), opts.SamplesPerSeries)
				if err != nil {
					warm[i].genErr = err
					return
				}
				rb := &reqBuf{}
				for _, b := range w.batches {
					if ctx.Err() != nil {
						return
					}
					w.build(rb, b, ts, opts.SamplesPerSeries)
					s.send(ctx, rb, &warm[i])
				}
			})
		}
		wg.Wait()
		res.Warmup = summarize(warm, time.Since(start), 0)
		if err := firstGenErr(warm); err != nil {
			return res, err
		}
	}

	cpu0 := cpuTime()
	start := time.Now()
	lctx, cancel := context.WithCancel(ctx)
	if opts.Duration > 0 {
		lctx, cancel = context.WithTimeout(ctx, opts.Duration)
	}
	defer cancel()
	var (
		wg, pwg  sync.WaitGroup
		probe    *ProbeResult
		probeErr error
	)
	pctx, pcancel := context.WithCancel(lctx)
	defer pcancel()
	if opts.ProbeURL != "" {
		pwg.Go(func() { probe, probeErr = runProbe(pctx, &opts, client) })
	}
	for _, w := range workers {
		wg.Go(func() { w.run(ctx, lctx, s) })
	}
	wg.Wait()
	elapsed := time.Since(start)
	pcancel()
	pwg.Wait()
	all := make([]stats, len(workers))
	for i, w := range workers {
		all[i] = w.stats
	}
	res.Measured = summarize(all, elapsed, cpuTime()-cpu0)
	res.Measured.Probe = probe
	if opts.DrainURL != "" && ctx.Err() == nil {
		last := int64(0)
		for _, w := range workers {
			last = max(last, w.last)
		}
		if probe != nil {
			last = max(last, probe.lastT) // the probe series is among the drain's
		}
		d, err := drain(ctx, &opts, client, last)
		if err != nil {
			return res, err
		}
		res.Measured.DrainSeconds = d.Seconds()
	}
	// A fast round can put timestamps up to maxAhead past the clock. A run
	// that ended there must not leave them ahead: the next run against the
	// same receiver starts at the clock, and its samples would be refused
	// as out of order (bench-ingest runs rounds and a probe back to back).
	// A run the generator stopped there (genErr) waits too, and says why
	// first: its error came only after the wait, up to 5 minutes later.
	genErr := firstGenErr(all)
	if opts.SampleInterval == 0 {
		last := int64(0)
		for _, w := range workers {
			last = max(last, w.last)
		}
		if ahead := time.Duration(last+1-opts.Now().UnixMilli()) * time.Millisecond; ahead > 0 {
			if genErr != nil {
				logger.Error("Load stopped", "err", genErr)
			}
			logger.Info("Waiting for the clock to pass the last timestamp sent, so that a next run is not refused as out of order", "wait", ahead)
			select {
			case <-time.After(ahead):
			case <-ctx.Done():
			}
		}
	}
	if probeErr != nil {
		return res, probeErr
	}
	return res, genErr
}

// newWorkers splits the series into opts.Concurrency contiguous slices and
// each slice into requests of at most opts.Batch samples.
// With a probe, the last series is the probe's and no worker sends it.
func newWorkers(opts *Options) []*worker {
	perReq := max(1, opts.Batch/opts.SamplesPerSeries)
	workers := make([]*worker, opts.Concurrency)
	start := opts.Now().Add(-opts.Backdate).UnixMilli() // one for all, so series stay aligned
	var st int64
	if opts.StartTimestamps {
		st = start - 1 // every round's timestamps are at or after start
	}
	n := opts.Series
	if opts.ProbeURL != "" {
		n--
	}
	for wi := range workers {
		lo, hi := wi*n/opts.Concurrency, (wi+1)*n/opts.Concurrency
		counter := make([]bool, hi-lo)
		w := &worker{start: start, every: opts.SampleInterval.Milliseconds()}
		for first := lo; first < hi; first += perReq {
			end := min(first+perReq, hi)
			sets := make([][]label, end-first)
			for i := range sets {
				sets[i], counter[first-lo+i] = seriesLabels(first + i)
			}
			b := newBatch(opts.Protocol, first, sets, counter[first-lo:end-lo], st)
			b.nSamples = len(sets) * opts.SamplesPerSeries
			w.batches = append(w.batches, b)
		}
		w.vals = newValues(lo, counter, opts.Seed)
		workers[wi] = w
	}
	return workers
}

// run sends rounds until lctx ends or the rounds are done. Requests
// already in flight when lctx ends finish (under ctx) and count.
func (w *worker) run(ctx, lctx context.Context, s *sender) {
	sps := s.opts.SamplesPerSeries
	free := make(chan *reqBuf, s.opts.Ahead+1)
	for range s.opts.Ahead + 1 {
		free <- &reqBuf{}
	}
	ready := make(chan *reqBuf, s.opts.Ahead)
	go func() {
		defer close(ready)
		for round := 0; s.opts.Rounds == 0 || round < s.opts.Rounds; round++ {
			ts, err := w.nextRound(s.opts.Now(), sps)
			if err != nil {
				w.stats.genErr = err // read after ready is closed
				return
			}
			for _, b := range w.batches {
				var rb *reqBuf
				select {
				case rb = <-free:
				case <-lctx.Done():
					return
				}
				w.build(rb, b, ts, sps)
				select {
				case ready <- rb:
				case <-lctx.Done():
					return
				}
			}
		}
	}()
	// With a rate, each worker sends its share on a schedule: a request of
	// n samples is due n/rate seconds after the previous one.
	var next time.Time
	perWorker := s.opts.Rate / float64(s.opts.Concurrency)
	for rb := range ready {
		if perWorker > 0 {
			if next.IsZero() {
				next = time.Now()
			}
			if d := time.Until(next); d > 0 {
				select {
				case <-time.After(d):
				case <-lctx.Done():
				}
			}
			next = next.Add(time.Duration(float64(rb.samples) / perWorker * float64(time.Second)))
		}
		if lctx.Err() == nil {
			s.send(ctx, rb, &w.stats)
		}
		free <- rb
	}
}

// sender posts requests and records the answers.
type sender struct {
	opts   *Options
	client *http.Client
	logger *slog.Logger
	mu     sync.Mutex
	logged map[string]bool // error classes already logged once
}

func (s *sender) send(ctx context.Context, rb *reqBuf, st *stats) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.opts.URL, bytes.NewReader(rb.body))
	if err != nil {
		st.fail("request", err.Error(), s)
		return
	}
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("User-Agent", "omen-loadgen")
	if s.opts.Protocol == 1 {
		req.Header.Set("Content-Type", "application/x-protobuf")
		req.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	} else {
		req.Header.Set("Content-Type", "application/x-protobuf;proto=io.prometheus.write.v2.Request")
		req.Header.Set("X-Prometheus-Remote-Write-Version", "2.0.0")
	}
	t0 := time.Now()
	resp, err := s.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return // the run was stopped, not failed by the receiver
		}
		// Sent, unanswered: it counts among the requests and samples sent,
		// none of them accepted. A timeout's wait is a latency (a p99
		// without it would flatter the receiver); a refused or broken
		// connection's is not.
		st.requests++
		st.samples += int64(rb.samples)
		class := "transport"
		if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
			class = "timeout"
			st.latencies = append(st.latencies, time.Since(t0))
		}
		st.fail(class, err.Error(), s)
		return
	}
	var msg []byte
	if resp.StatusCode/100 != 2 {
		msg, _ = io.ReadAll(io.LimitReader(resp.Body, 512))
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close() // a response body's close error tells nothing more
	st.latencies = append(st.latencies, time.Since(t0))
	st.requests++
	st.samples += int64(rb.samples)
	written, told := int64(0), false
	if h := resp.Header.Get("X-Prometheus-Remote-Write-Samples-Written"); h != "" {
		if n, err := strconv.ParseInt(h, 10, 64); err == nil && n >= 0 {
			written, told = min(n, int64(rb.samples)), true
		}
	}
	if resp.StatusCode/100 != 2 {
		st.fail(strconv.Itoa(resp.StatusCode), string(bytes.TrimSpace(msg)), s)
		// A 400 for part of a request ("the rest stored") says in 2.0's
		// header how many samples were stored: those were accepted.
		if told && resp.StatusCode/100 == 4 {
			st.accepted += written
		}
		return
	}
	if !told {
		written = int64(rb.samples)
	}
	st.accepted += written
}

// logOnce logs the first error of each class, so a failing receiver says
// why without flooding the output.
func (s *sender) logOnce(class, msg string) {
	s.mu.Lock()
	first := !s.logged[class]
	s.logged[class] = true
	s.mu.Unlock()
	if first {
		s.logger.Warn("Remote write failed (logged once per status)", "status", class, "err", msg)
	}
}
