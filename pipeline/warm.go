package pipeline

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/url"
	"strings"
	"sync"
	"time"

	config_util "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/storage/remote"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
)

// remoteReadTimeout bounds one warm start's remote read. It runs on a
// scorer worker, so a slow upstream delays that shard (never ingest); a
// healthy Prometheus answers one series' day in milliseconds.
const remoteReadTimeout = 10 * time.Second

// After a failed read the backfill is skipped for a while (doubling from
// the first to the last, reset by a success): an upstream that is down or
// slow would otherwise cost every new series a timeout on its worker, in
// turn, while that worker's other series wait and its queue overflows.
const (
	backfillBackoffFirst = 10 * time.Second
	backfillBackoffMax   = 5 * time.Minute
)

// backfill is the remote-read source of warm starts, shared by the workers.
type backfill struct {
	rr  remote.ReadClient
	url *url.URL // for redacting errors, which quote it with its password

	mu      sync.Mutex
	until   time.Time // no reads before
	backoff time.Duration
}

func newBackfill(u string) (*backfill, error) {
	pu, err := url.Parse(u)
	if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
		// Not quoted: a URL missing its scheme parses with the password
		// in it, unredacted.
		return nil, errors.New("backfill remote-read URL: want an absolute http(s) URL such as http://prometheus:9090/api/v1/read")
	}
	c, err := remote.NewReadClient("omen-backfill", &remote.ClientConfig{
		URL:              &config_util.URL{URL: pu},
		Timeout:          model.Duration(remoteReadTimeout),
		HTTPClientConfig: config_util.DefaultHTTPClientConfig,
		ChunkedReadLimit: 50e6, // bytes per streamed frame, Prometheus's default
	})
	if err != nil {
		return nil, fmt.Errorf("backfill remote-read client: %s", redact(err, pu))
	}
	return &backfill{rr: c, url: pu}, nil
}

// redact returns err's text with u's password masked.
func redact(err error, u *url.URL) string {
	msg := err.Error()
	if _, ok := u.User.Password(); ok {
		msg = strings.ReplaceAll(msg, u.String(), u.Redacted())
	}
	return msg
}

// open reports whether a read may be tried now.
func (b *backfill) open(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return !now.Before(b.until)
}

// done records a read's outcome; it returns the time reads are skipped
// for after a failure, 0 after a success or if another worker's failure
// already closed the gate (so one outage logs once per backoff).
func (b *backfill) done(now time.Time, err error) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err == nil {
		b.backoff = 0
		return 0
	}
	if now.Before(b.until) {
		return 0
	}
	b.backoff = min(max(2*b.backoff, backfillBackoffFirst), backfillBackoffMax)
	b.until = now.Add(b.backoff)
	return b.backoff
}

// ring keeps the last cap(t) samples it is given, so a long history costs
// no more memory than the budget.
type ring struct {
	t []int64
	v []float64
	k int // samples added
}

func (r *ring) add(t int64, v float64) {
	if len(r.t) < cap(r.t) {
		r.t, r.v = append(r.t, t), append(r.v, v)
	} else if n := len(r.t); n > 0 {
		r.t[r.k%n], r.v[r.k%n] = t, v
	}
	r.k++
}

// each calls f on the kept samples, oldest first.
func (r *ring) each(f func(t int64, v float64)) {
	n := len(r.t)
	start := 0
	if r.k > n {
		start = r.k - n
	}
	for i := start; i < r.k; i++ {
		f(r.t[i%n], r.v[i%n])
	}
}

func (r *ring) len() int { return len(r.t) }

// first returns the oldest kept timestamp.
func (r *ring) first() (int64, bool) {
	if len(r.t) == 0 {
		return 0, false
	}
	if r.k > len(r.t) {
		return r.t[r.k%len(r.t)], true
	}
	return r.t[0], true
}

// read adds the float samples of the series in ss whose labels are ls:
// equality matchers also select series with more labels than ls, whose
// history must not train ls's models. Stale markers are not samples.
func (r *ring) read(ss storage.SeriesSet, ls labels.Labels) error {
	for ss.Next() {
		if !labels.Equal(ss.At().Labels(), ls) {
			continue
		}
		if err := r.readSeries(ss.At()); err != nil {
			return err
		}
	}
	return ss.Err()
}

// readUpstream is read for an upstream Prometheus, which adds its external
// labels to every series it returns: the input, whose external labels the
// shipped remote_write drops on the way to omen, comes back with them, and
// read found nothing. Of the series ss holds (every one has ls's labels:
// the matchers are equalities), the one with the fewest labels is ls's
// (ls itself, or ls plus the external labels, which every series returned
// carries alike); the first of equals (an HA pair's replicas) is taken.
func (r *ring) readUpstream(ss storage.SeriesSet) error {
	best := -1
	for ss.Next() {
		n := ss.At().Labels().Len()
		if best >= 0 && n >= best {
			continue
		}
		best = n
		r.t, r.v, r.k = r.t[:0], r.v[:0], 0
		if err := r.readSeries(ss.At()); err != nil {
			return err
		}
	}
	return ss.Err()
}

// readSeries adds the float samples of one series.
func (r *ring) readSeries(s storage.Series) error {
	it := s.Iterator(nil)
	for vt := it.Next(); vt != chunkenc.ValNone; vt = it.Next() {
		if vt != chunkenc.ValFloat {
			continue
		}
		if t, v := it.At(); !value.IsStaleNaN(v) {
			r.add(t, v)
		}
	}
	return it.Err()
}

// warm replays the last BackfillMaxPoints samples before beforeMs (and
// within BackfillMaxAge) through the new series' models, without writing
// outputs: from the TSDB, and if that holds fewer, older ones from the
// backfill remote-read URL.
func (w *worker) warm(ctx context.Context, s *series, beforeMs int64) {
	p := w.p
	if isDerived(s) {
		w.warmDerived(s, beforeMs)
		return
	}
	n := p.opts.BackfillMaxPoints
	if n == 0 {
		return
	}
	mint := beforeMs - p.opts.BackfillMaxAge.Milliseconds()
	ms := equalMatchers(s.in)
	local := w.readLocal(ctx, s, ms, mint, beforeMs-1)
	var older ring
	if p.bf != nil && local.len() < n {
		if !p.bf.open(p.opts.Now()) {
			p.m.backfillSkipped.Inc()
		} else {
			end := beforeMs
			if t, ok := local.first(); ok {
				end = t
			}
			older = ring{t: make([]int64, 0, n-local.len()), v: make([]float64, 0, n-local.len())}
			err := w.remoteRead(ctx, &older, mint, end-1, ms)
			if wait := p.bf.done(p.opts.Now(), err); err != nil {
				p.m.backfillFailed.Inc()
				older = ring{}
				if wait > 0 {
					p.logger.Warn("Warm start by remote read failed; new series warm from local history alone for a while", "series", s.in.String(), "err", redact(err, p.bf.url), "retry_in", wait)
				}
			}
		}
	}
	replay := w.replayer(s)
	older.each(replay)
	local.each(replay)
	p.m.warmed.Add(float64(older.len() + local.len()))
	w.warmT, w.warmV = local.t[:0], local.v[:0] // reused by the next warm start
}

// catchUp replays through a series restored from the snapshot the samples
// the TSDB holds after the restored state's last one and before beforeMs:
// after a crash, those acknowledged since the last periodic snapshot, which
// the models would otherwise have missed (a graceful stop snapshots at the
// end, and Prometheus resends in order what it could not deliver). At most
// BackfillMaxPoints, the latest.
func (w *worker) catchUp(ctx context.Context, s *series, beforeMs int64) {
	p := w.p
	if isDerived(s) {
		w.warmDerived(s, beforeMs)
		return
	}
	from := s.det.LastTimestamp()
	if s.counter {
		from = max(from, s.prevT)
	}
	if p.opts.BackfillMaxPoints == 0 || isDerived(s) || from <= 0 || from >= beforeMs-1 {
		return
	}
	local := w.readLocal(ctx, s, equalMatchers(s.in), from+1, beforeMs-1)
	local.each(w.replayer(s))
	p.m.caughtUp.Add(float64(local.len()))
	w.warmT, w.warmV = local.t[:0], local.v[:0]
}

func equalMatchers(ls labels.Labels) []*labels.Matcher {
	ms := make([]*labels.Matcher, 0, ls.Len())
	ls.Range(func(l labels.Label) { ms = append(ms, labels.MustNewMatcher(labels.MatchEqual, l.Name, l.Value)) })
	return ms
}

// readLocal returns the last BackfillMaxPoints samples of s in [mint,
// maxt] from the TSDB, in the worker's reused buffers.
func (w *worker) readLocal(ctx context.Context, s *series, ms []*labels.Matcher, mint, maxt int64) ring {
	n := w.p.opts.BackfillMaxPoints
	local := ring{t: w.warmT[:0], v: w.warmV[:0]}
	if cap(local.t) < n {
		local.t, local.v = make([]int64, 0, n), make([]float64, 0, n)
	}
	local.t, local.v = local.t[:0:n], local.v[:0:n]
	if q, err := w.p.st.Querier(mint, maxt); err == nil {
		if err := local.read(q.Select(ctx, false, nil, ms...), s.in); err != nil {
			w.p.logger.Debug("Reading history from the TSDB", "series", s.in.String(), "err", err)
		}
		_ = q.Close()
	}
	return local
}

// replayer returns the function that feeds one history sample to s's
// models, as the live path would, without writing outputs.
func (w *worker) replayer(s *series) func(t int64, v float64) {
	so := w.p.stepOpts()
	return func(t int64, v float64) {
		if s.counter {
			r, ok := s.rate(0, t, v) // the history's zero samples, if stored, read as resets
			if !ok {
				return
			}
			v = r
		}
		if math.IsNaN(v) {
			return // as on the live path: the models skip NaNs
		}
		s.step(t, v, nil, &w.fcBuf, so)
	}
}

func (w *worker) remoteRead(ctx context.Context, r *ring, mint, maxt int64, ms []*labels.Matcher) error {
	if maxt < mint {
		return nil
	}
	q, err := remote.ToQuery(mint, maxt, ms, nil)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, remoteReadTimeout)
	defer cancel()
	ss, err := w.p.bf.rr.Read(ctx, q, false)
	if err != nil {
		return err
	}
	return r.readUpstream(ss)
}
