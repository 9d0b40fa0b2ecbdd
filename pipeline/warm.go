package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	config_util "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	promconfig "github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/storage/remote"
	"github.com/prometheus/prometheus/tsdb/chunkenc"

	"github.com/omen-sidecar/omen/detect"
)

// Warm starts by remote read run off the scorer workers: a new series
// scores at once from the TSDB's history alone and queues a request for the
// older one; backfillReaders goroutines send up to backfillBatch requests
// in one remote-read request (one query each, as Prometheus's
// ReadMultiple does), so a fresh deployment's burst of new series costs
// round trips by the batch, not by the series, and a slow upstream delays
// no scoring. Each worker then replays the history it gets into new models
// of its series, with what the TSDB took in since (rewarm).
const (
	backfillReaders = 4
	backfillBatch   = 64
	// remoteReadTimeout bounds one remote-read request of a batch.
	remoteReadTimeout = 30 * time.Second
)

// After a failed read the reads pause for a while (doubling from the
// first to the last, reset by a success) and the batch is queued again: an
// upstream that is down or slow is asked once per backoff, and its series
// get their history when it is back.
const (
	backfillBackoffFirst = 10 * time.Second
	backfillBackoffMax   = 5 * time.Minute
)

// backfill is the remote-read source of warm starts, shared by the workers.
type backfill struct {
	rr *readClient

	mu      sync.Mutex
	until   time.Time // no reads before
	backoff time.Duration
	queue   []bfReq // oldest first, from head on
	head    int
	max     int // requests queued at most
	// refusals counts whole batches refused in a row, answered the
	// requests answered (see refusedRead).
	refusals int
	answered uint64
	fresh    int // requests queued or being read, not yet answered or refused alone
	parked   []bfReq
	// ext holds the sets of label names the upstream's series had beyond
	// their requests' (keepOwn); extNames the upstream's external labels
	// as configured (name to value, "" for any), and then nothing is
	// learnt.
	ext      map[string]extSet
	extNames map[string]string
	maxAge   time.Duration // a learnt set not seen again for this long is forgotten
	now      func() time.Time
	pending  prometheus.Gauge // omen_warm_start_remote_read_pending; nil in tests of the queue alone
	notify   chan struct{}
	// dropped counts, by set of extra label names not yet known, the
	// histories keepOwn dropped with it, and keeps their requests (up to
	// maxLateReqs in all, lateReqs); once the set is learnt as the
	// upstream's external labels, notes has them, to be read again
	// (lateSets).
	dropped  map[string]lateSet
	lateReqs int
	notes    []lateSet
	// noAPI is the URL (redacted) of the upstream that said, before
	// answering any read, that it has no remote-read endpoint, once
	// warned of (warnPause).
	noAPI string
}

// lateSet is a set of external label names learnt after n series' histories
// came with it and were dropped, one of those series named; reqs are the
// requests kept to read again.
type lateSet struct {
	names   string
	n       int
	example string
	reqs    []bfReq
}

// maxLateReqs bounds the requests kept to read again once their set of
// extra labels is learnt: a deployment's first answers bring one metric
// name's series at most, but an upstream whose every series carries labels
// never learnt (a sibling's set) would keep them all.
const maxLateReqs = 1024

// bfReq asks for the history of the worker w's series s (labels ls) in
// [mint, maxt], at most n samples, the latest.
type bfReq struct {
	w          *worker
	s          *series
	ls         labels.Labels
	mint, maxt int64
	n          int
	// limit, if not 0, is the largest batch the request may go in: the
	// upstream refused one it was in (see refusedRead), when it had
	// answered answeredAt requests.
	limit      int
	refused    bool
	answeredAt uint64
	lone       uint8 // refusals alone
	// again: read again once its extra labels were learnt as the
	// upstream's external ones (see keepOwn), after its series had warmed
	// from local history.
	again bool
	// timeouts counts the reads that timed out with the request alone
	// while others were answered, slowAt the requests answered when its
	// latest read began (see slowAlone).
	timeouts uint8
	slowAt   uint64
}

// live reports whether r's series is still its worker's: one dropped
// meanwhile (deleted from the head, swept, deselected, retyped, rebuilt)
// is not read for.
func (r *bfReq) live() bool {
	r.w.mu.RLock()
	defer r.w.mu.RUnlock()
	return r.w.series[r.s.ref] == r.s
}

// bfResult is a request's history, oldest first.
type bfResult struct {
	bfReq
	older ring
	from  labels.Labels // the upstream series older is of
}

// URLReadConfig is the remote_read entry --backfill.remote-read-url
// stands for: Prometheus's defaults, but omen's shorter timeout.
func URLReadConfig(u string) (*promconfig.RemoteReadConfig, error) {
	pu, err := url.Parse(u)
	if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
		// Not quoted: a URL missing its scheme parses with the password
		// in it, unredacted.
		return nil, errors.New("backfill remote-read URL: want an absolute http(s) URL such as http://prometheus:9090/api/v1/read")
	}
	c := promconfig.DefaultRemoteReadConfig
	c.URL = &config_util.URL{URL: pu}
	c.RemoteTimeout = model.Duration(remoteReadTimeout)
	return &c, nil
}

func newBackfillFrom(c *promconfig.RemoteReadConfig, maxQueued int) (*backfill, error) {
	up, err := newUpstream(c)
	if err != nil {
		return nil, err
	}
	b := &backfill{
		rr: &readClient{}, max: max(1, maxQueued), notify: make(chan struct{}, 1),
		maxAge: DefaultOptions().BackfillMaxAge, now: time.Now,
	}
	b.rr.cur.Store(up)
	return b, nil
}

// readClient is the warm start's remote-read client, the readers' and the
// derived inputs' (historyQueryable): a reload that changes the
// upstream's credentials, TLS or headers swaps its upstream whole, and
// each read takes the one in force.
type readClient struct{ cur atomic.Pointer[rrUpstream] }

// rrUpstream is a client made of a remote_read entry.
type rrUpstream struct {
	rc      remote.ReadClient
	cfg     *promconfig.RemoteReadConfig
	url     *url.URL      // for redacting errors, which quote it with its password
	timeout time.Duration // of one request
}

// newUpstream makes c's client with Prometheus's own remote-read client
// (common's NewClientFromConfig underneath): basic_auth, authorization,
// oauth2, tls_config, proxy and headers as in Prometheus, secret files
// read at each request. Nothing is dialled.
func newUpstream(c *promconfig.RemoteReadConfig) (*rrUpstream, error) {
	rc, err := remote.NewReadClient("omen-backfill", &remote.ClientConfig{
		URL:              c.URL,
		Timeout:          c.RemoteTimeout,
		HTTPClientConfig: c.HTTPClientConfig,
		Headers:          c.Headers,
		ChunkedReadLimit: c.ChunkedReadLimit, // bytes per streamed frame
	})
	if err != nil {
		return nil, fmt.Errorf("backfill remote-read client: %s", redact(err, c.URL.URL))
	}
	return &rrUpstream{rc: rc, cfg: c, url: c.URL.URL, timeout: time.Duration(c.RemoteTimeout)}, nil
}

func (c *readClient) Read(ctx context.Context, q *prompb.Query, sortSeries bool) (storage.SeriesSet, error) {
	return c.cur.Load().rc.Read(ctx, q, sortSeries)
}

func (c *readClient) ReadMultiple(ctx context.Context, qs []*prompb.Query, sortSeries bool) (storage.SeriesSet, error) {
	return c.cur.Load().rc.ReadMultiple(ctx, qs, sortSeries)
}

// up returns the upstream in force.
func (b *backfill) up() *rrUpstream { return b.rr.cur.Load() }

// redact returns err's text with u's password masked.
func redact(err error, u *url.URL) string {
	msg := err.Error()
	if _, ok := u.User.Password(); ok {
		msg = strings.ReplaceAll(msg, u.String(), u.Redacted())
	}
	return msg
}

// request queues rs, together (so that a reader takes them in one batch,
// not the first alone); it returns how many it queued, the first ones, if
// the queue fills.
func (b *backfill) request(rs ...bfReq) int {
	b.mu.Lock()
	n := max(0, min(len(rs), b.max-(len(b.queue)-b.head)))
	b.queue = append(b.queue, rs[:n]...)
	b.fresh += n
	b.mu.Unlock()
	b.wake()
	return n
}

func (b *backfill) wake() {
	select {
	case b.notify <- struct{}{}:
	default:
	}
}

// take waits until requests are queued and reads are not backing off, and
// returns up to k of them, oldest first; nil when ctx is done. The backoff
// is checked at least every backfillPoll, so a clock that jumps (tests)
// is followed.
func (b *backfill) take(ctx context.Context, now func() time.Time, k int) []bfReq {
	for {
		b.mu.Lock()
		wait := time.Duration(-1)
		if queued := len(b.queue) - b.head; queued > 0 {
			if wait = b.until.Sub(now()); wait <= 0 {
				// As many as k, while every request taken allows a
				// batch that large (see bfReq.limit): one that timed
				// out or was refused alone stays alone wherever it is
				// in the queue (a retried batch goes before it).
				n, most := 0, min(k, queued)
				for n < most {
					if l := b.queue[b.head+n].limit; l > 0 {
						if l <= n {
							break
						}
						most = min(most, l)
					}
					n++
				}
				out := slices.Clone(b.queue[b.head : b.head+n])
				clear(b.queue[b.head : b.head+n]) // their series may go
				b.head += n
				switch {
				case b.head == len(b.queue):
					b.queue, b.head = b.queue[:0], 0
				case b.head >= 1024 && b.head > len(b.queue)/2:
					n := copy(b.queue, b.queue[b.head:])
					clear(b.queue[n:]) // the moved requests' old copies
					b.queue, b.head = b.queue[:n], 0
				}
				more := len(b.queue) > b.head
				b.mu.Unlock()
				if more {
					b.wake() // another reader takes the next batch
				}
				// Not under mu: live takes the worker's lock.
				var gone []bfReq
				out = slices.DeleteFunc(out, func(r bfReq) bool {
					if r.live() {
						return false
					}
					if b.pending != nil {
						b.pending.Dec()
					}
					gone = append(gone, r)
					return true
				})
				b.settle(gone)
				if len(out) == 0 {
					continue
				}
				return out
			}
		}
		b.mu.Unlock()
		var timer <-chan time.Time
		if wait > 0 {
			timer = time.After(min(wait, backfillPoll))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-b.notify:
		case <-timer:
		}
	}
}

const backfillPoll = 100 * time.Millisecond

// pause closes the gate for the backoff after a refusal, logging once
// per backoff.
func (b *backfill) pause(now time.Time, logger *slog.Logger, err error) {
	if wait := b.done(now, err); wait > 0 {
		b.warnPause(logger, "Warm start by remote read refused; reads pause", err, "retry_in", wait)
	}
}

// warnPause logs that the reads pause after err: msg as a warning, with err
// and args. An upstream that has answered no read and says it has no
// remote-read endpoint (noRemoteRead) gets instead one warning that says
// so and what to do, and the pauses after it go to debug: asked again
// after every backoff for good, the generic warnings never named the cause.
func (b *backfill) warnPause(logger *slog.Logger, msg string, err error, args ...any) {
	up := b.up().url
	args = append([]any{"err", redact(err, up)}, args...)
	b.mu.Lock()
	none := b.answered == 0 && noRemoteRead(err)
	first := none && b.noAPI != up.Redacted()
	if first {
		b.noAPI = up.Redacted()
	}
	b.mu.Unlock()
	switch {
	case first:
		logger.Warn("The upstream does not serve Prometheus remote read (VictoriaMetrics has no remote-read API): new series score from local history alone. "+
			"Point --backfill.remote-read-url (or the remote_read entry) at a Prometheus, Thanos or Mimir that holds their history, or remove it; omen asks again after each backoff",
			append([]any{"url", up.Redacted()}, args...)...)
	case none:
		logger.Debug(msg, args...)
	default:
		logger.Warn(msg, args...)
	}
}

// noRemoteRead reports whether err is an upstream's answer that it has no
// remote-read endpoint at the URL: 404 or 405, or VictoriaMetrics's 400
// "unsupported path requested" (measured with victoria-metrics v1.151.0).
func noRemoteRead(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "returned http status 404") || strings.Contains(msg, "returned http status 405") ||
		strings.Contains(msg, "returned http status 400") && strings.Contains(msg, "unsupported path requested")
}

// answers returns the number of requests answered so far.
func (b *backfill) answers() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.answered
}

// settle counts rs, answered, given up on or gone, off fresh. If that
// leaves only parked requests, they are queued again: nothing else would
// (a read answered, or a refusal while none is fresh), and they would wait
// for good.
func (b *backfill) settle(rs []bfReq) {
	b.mu.Lock()
	for _, r := range rs {
		if r.lone == 0 {
			b.fresh--
		}
	}
	unpark := b.fresh == 0 && len(b.parked) > 0
	if unpark {
		b.unparkLocked()
	}
	b.mu.Unlock()
	if unpark {
		b.wake()
	}
}

// requeue parks r, refused alone, until a read is answered or no request
// is left that may be (then it goes back to the queue and it reports
// true): parked, it is not sent again and again while others may yet be
// answered.
func (b *backfill) requeue(r bfReq) bool {
	b.mu.Lock()
	b.parked = append(b.parked, r)
	all := b.fresh == 0
	if all {
		b.unparkLocked()
	}
	b.mu.Unlock()
	b.wake()
	return all
}

// unparkLocked queues the parked requests again; mu must be held.
func (b *backfill) unparkLocked() {
	b.queue = append(b.queue, b.parked...)
	clear(b.parked)
	b.parked = b.parked[:0]
}

// retry puts rs back at the front of the queue, after a failed read.
func (b *backfill) retry(rs []bfReq) {
	b.mu.Lock()
	if b.head >= len(rs) {
		b.head -= len(rs)
		copy(b.queue[b.head:], rs)
	} else {
		b.queue = append(slices.Clone(rs), b.queue[b.head:]...)
		b.head = 0
	}
	b.mu.Unlock()
	b.wake()
}

// done records a read's outcome; it returns the time reads pause for after
// a failure, 0 after a success or if another reader's failure already
// paused them (so one outage logs once per backoff).
func (b *backfill) done(now time.Time, err error) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err == nil {
		b.backoff, b.refusals = 0, 0
		b.answered++
		b.unparkLocked() // their refusals may now be theirs alone
		return 0
	}
	if now.Before(b.until) {
		return 0
	}
	b.backoff = min(max(2*b.backoff, backfillBackoffFirst), backfillBackoffMax)
	b.until = now.Add(b.backoff)
	return b.backoff
}

// runBackfill is one reader: it reads batches of queued requests and
// hands each worker the histories of its series.
func (p *Pipeline) runBackfill(ctx context.Context) {
	for {
		reqs := p.bf.take(ctx, p.opts.Now, backfillBatch)
		if reqs == nil {
			return
		}
		if len(reqs) == 1 {
			reqs[0].slowAt = p.bf.answers() // see slowAlone
		}
		res, err := p.bf.read(ctx, reqs)
		if ctx.Err() != nil {
			return
		}
		if err != nil && refused(err) {
			r, giveUp := p.refusedRead(reqs, err)
			if !giveUp {
				continue
			}
			p.logRefusedSeries(r, err)
			res, err = []bfResult{{bfReq: r}}, nil
		} else if err != nil && p.slowAlone(reqs, err) {
			p.logger.Warn("Warm start by remote read timed out three times for this series alone while the upstream answered others; it warms from local history alone", "series", reqs[0].ls.String(), "timeout", p.bf.up().timeout)
			res, err = []bfResult{{bfReq: reqs[0]}}, nil
		} else if wait := p.bf.done(p.opts.Now(), err); err != nil {
			p.m.backfillFailed.Inc()
			if errors.Is(err, context.DeadlineExceeded) {
				// Too much history for one request's timeout, maybe;
				// one alone stays alone, not batched with the series
				// queued meanwhile, which would time out with it.
				halve(reqs)
				if len(reqs) == 1 {
					reqs[0].limit = 1
				}
			}
			p.bf.retry(reqs)
			if wait > 0 {
				p.bf.warnPause(p.logger, "Warm start by remote read failed; new series score from local history meanwhile and are read again after the backoff", err, "series", len(reqs), "retry_in", wait)
			}
			continue
		}
		p.bf.settle(reqs)
		p.readLateAgain()
		for i := 0; i < len(res); {
			w := res[i].w
			j := i + 1
			for j < len(res) && res[j].w == w {
				j++
			}
			select {
			case w.backfilled <- res[i:j]:
			case <-w.done:
			case <-ctx.Done():
				return
			}
			i = j
		}
	}
}

// readLateAgain queues again the requests whose histories were dropped
// before their extra labels were learnt as the upstream's external ones;
// the series beyond those kept, or beyond the queue's room, stay warmed
// from local history alone, and are counted and logged.
func (p *Pipeline) readLateAgain() {
	for _, l := range p.bf.lateSets() {
		n := p.bf.request(l.reqs...)
		p.m.backfillPending.Add(float64(n))
		if lost := l.n - n; lost > 0 {
			p.m.backfillUnconfirmed.Add(float64(lost))
			p.logger.Info("Warm start by remote read: these labels were learnt as the upstream's external labels after series had come with them; some of those series warm from local history alone. Name them with --backfill.external-label to warm every series from the upstream", "labels", l.names, "series", l.n, "not_read_again", lost, "example", l.example)
		} else {
			p.logger.Debug("Warm start by remote read: these labels were learnt as the upstream's external labels after series had come with them; those series are read again", "labels", l.names, "series", l.n)
		}
	}
}

// refusedSeriesLogEvery spaces the warnings about series the upstream
// refuses alone.
const refusedSeriesLogEvery = time.Minute

// logRefusedSeries logs that the upstream refused r's series alone, which
// warms from local history: a warning at most once per
// refusedSeriesLogEvery, with the count since, and debug otherwise. Each
// was a warning, so a job whose queries the upstream will not answer
// logged one line for each of its series at once.
func (p *Pipeline) logRefusedSeries(r bfReq, err error) {
	msg := "Warm start by remote read refused; the series warms from local history alone"
	args := []any{"series", r.ls.String(), "err", redact(err, p.bf.up().url)}
	if n, warn := p.bfRefusedLog.Note(refusedSeriesLogEvery); warn {
		p.logger.Warn(msg, append(args, "refused_series", n, "next_warning_in", refusedSeriesLogEvery)...)
		return
	}
	p.logger.Debug(msg, args...)
}

// refusedRead handles reqs refused by the upstream (a limit, a series it
// cannot read), which is not an outage: the batch is split until the
// series it refuses is alone. That one is given up on (giveUp, with the
// request) once the upstream has answered other requests since it was
// first refused, or after three refusals alone if it ever answered any;
// else the upstream refuses everything (a wrong URL path, say), and the
// series waits aside. Once every request has been refused alone the reads
// pause as for an outage, and so they do after whole batches refused more
// than a few in a row: no storm of requests either way, and no pause while
// other requests may yet be answered.
func (p *Pipeline) refusedRead(reqs []bfReq, err error) (r bfReq, giveUp bool) {
	p.m.backfillFailed.Inc()
	answered := p.bf.answers()
	for i := range reqs {
		if !reqs[i].refused {
			reqs[i].refused, reqs[i].answeredAt = true, answered
		}
	}
	if len(reqs) > 1 {
		// Only whole batches count: the halves of one are refused in a
		// row while its refused series are found.
		if reqs[0].limit == 0 && !p.bf.refuse() {
			p.bf.pause(p.opts.Now(), p.logger, err)
		}
		halve(reqs)
		p.bf.retry(reqs)
		return bfReq{}, false
	}
	p.bf.settle(reqs) // fresh no more
	reqs[0].lone++    // so that the caller's settle does not count it again
	r = reqs[0]
	if answered > r.answeredAt || (answered > 0 && r.lone >= 3) {
		return r, true
	}
	r.limit = 1
	if p.bf.requeue(r) {
		p.bf.pause(p.opts.Now(), p.logger, err) // nothing left that may yet be answered
	}
	return bfReq{}, false
}

// slowAlone reports whether reqs is one request whose read has now timed
// out alone three times while the upstream answered others: too much
// history for one request's timeout, or a series the upstream chokes on,
// which would otherwise be retried after every backoff for good, each
// retry pausing every read. Its series warms from local history alone. A
// timeout while nothing else was answered (an outage, an upstream slow for
// everything) does not count, and its requests are retried as after one.
func (p *Pipeline) slowAlone(reqs []bfReq, err error) bool {
	if len(reqs) != 1 || !errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	r := &reqs[0]
	if p.bf.answers() == r.slowAt {
		return false
	}
	r.timeouts++
	if r.timeouts < 3 {
		return false
	}
	p.m.backfillFailed.Inc()
	return true
}

// halve limits the batches reqs go in again to half theirs, or less if
// one's limit is already smaller.
func halve(reqs []bfReq) {
	if len(reqs) < 2 {
		return
	}
	for i := range reqs {
		if l := (len(reqs) + 1) / 2; reqs[i].limit == 0 || reqs[i].limit > l {
			reqs[i].limit = l
		}
	}
}

// refuse counts a refused whole batch; false once there have been more in
// a row (no read answered between) than an upstream that answers anything
// gives.
func (b *backfill) refuse() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refusals++
	return b.refusals <= backfillMaxRefusals
}

// backfillMaxRefusals: whole batches refused in a row (none answered
// between) that mark an upstream refusing everything.
const backfillMaxRefusals = 8

// refused reports whether err is the upstream's answer that the request
// itself is wrong or too large (400, 413, 422), which sending it again
// will not change; other errors (the network, a timeout, 5xx, 401, 429)
// may pass, and are retried.
func refused(err error) bool {
	msg := err.Error()
	for _, code := range []string{"400", "413", "422"} {
		if strings.Contains(msg, "returned http status "+code) {
			return true
		}
	}
	return false
}

// read sends reqs in one remote-read request, one query each, and returns
// their histories, grouped by worker.
func (b *backfill) read(ctx context.Context, reqs []bfReq) ([]bfResult, error) {
	slices.SortStableFunc(reqs, func(x, y bfReq) int { return x.w.id - y.w.id })
	qs := make([]*prompb.Query, len(reqs))
	res := make([]bfResult, len(reqs))
	for i, r := range reqs {
		ms := equalMatchers(r.ls)
		for n, v := range b.extNames {
			if v != "" && !r.ls.Has(n) {
				// One source of many (Thanos, a Mimir tenant): not
				// another source's series. Or a Prometheus's own
				// external label, of which it rewrites an equality
				// matcher to n="" (and would miss a series that
				// stores the label itself, as federation does), but
				// not a regular expression.
				ms = append(ms, labels.MustNewMatcher(labels.MatchRegexp, n, "("+regexp.QuoteMeta(v)+")?"))
			}
		}
		q, err := remote.ToQuery(r.mint, r.maxt, ms, nil)
		if err != nil {
			return nil, err
		}
		qs[i] = q
		res[i] = bfResult{bfReq: r, older: ring{t: make([]int64, 0, r.n), v: make([]float64, 0, r.n)}}
	}
	up := b.up()
	ctx, cancel := context.WithTimeout(ctx, up.timeout)
	defer cancel()
	ss, err := up.rc.ReadMultiple(ctx, qs, false)
	if err != nil {
		return nil, err
	}
	var own func(ls, want labels.Labels) bool // nil: learnt (keepOwn)
	if b.extNames != nil {
		own = b.named
	}
	if err := readUpstream(ss, res, own); err != nil {
		return nil, err
	}
	if own == nil {
		b.keepOwn(res, b.now())
	}
	return res, nil
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
		if err := r.readSeries(ss.At(), math.MinInt64, math.MaxInt64); err != nil {
			return err
		}
	}
	return ss.Err()
}

// readUpstream adds to each result the samples of its series in ss, the
// series of all the batch's queries interleaved. An upstream Prometheus
// adds its external labels to every series it returns: the input, whose
// external labels the shipped remote_write drops on the way to omen, comes
// back with them. So a result takes, of the series that have all of its
// labels (equality matchers also select series with more), the one with
// the fewest (its own, or its own plus the external labels, which every
// series returned carries alike); the first of equals (an HA pair's
// replicas). If own is not nil, only of the series it says are a result's
// own.
func readUpstream(ss storage.SeriesSet, res []bfResult, own func(ls, want labels.Labels) bool) error {
	best := make([]int, len(res))
	var alt ring // an equal candidate, read to compare
	for ss.Next() {
		ls := ss.At().Labels()
		n := ls.Len()
		for i := range res {
			r := &res[i]
			if (best[i] > 0 && n > best[i]) || !hasAll(ls, r.ls) || (own != nil && !own(ls, r.ls)) {
				continue
			}
			if best[i] == n {
				// Of equals, the one with more samples in the request's
				// range: a series another request of the batch also
				// selected comes back once per query, clipped to the
				// union of the queries' ranges by some upstreams but not
				// to this request's; an HA pair's replicas, the first.
				if cap(alt.t) < r.n {
					alt = ring{t: make([]int64, 0, r.n), v: make([]float64, 0, r.n)}
				}
				alt.t, alt.v, alt.k = alt.t[:0:r.n], alt.v[:0:r.n], 0
				if err := alt.readSeries(ss.At(), r.mint, r.maxt); err != nil {
					return err
				}
				if alt.k > r.older.k {
					r.older, alt = alt, r.older
					r.from = ls
				}
				continue
			}
			best[i], r.from = n, ls
			r.older.t, r.older.v, r.older.k = r.older.t[:0], r.older.v[:0], 0
			if err := r.older.readSeries(ss.At(), r.mint, r.maxt); err != nil {
				return err
			}
		}
	}
	return ss.Err()
}

// keepOwn drops the histories of results whose series has labels beyond
// the request's other than the upstream's external labels. A new series
// has no history upstream, and its equality matchers then select only
// other series with more labels (errors_total{code="500"} those with a
// handler too), whose history is not its own. External labels are added
// alike to every series of a source: a set of extra label names is taken
// as external once it has come on the series of two metric names, each
// set apart (a Mimir tenant fed by Prometheus servers of different
// external labels has several); by name, as an HA pair's replicas differ
// in value. Until its set is known a series with extra labels warms from
// local history (a deployment's first answers have many metric names).
func (b *backfill) keepOwn(res []bfResult, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ext == nil {
		b.ext = map[string]extSet{}
	}
	b.expireLocked(now)
	seen := now.Unix()
	keys := make([]string, len(res))
	for i := range res {
		r := &res[i]
		if r.from.IsEmpty() {
			continue
		}
		keys[i] = extraKey(r.from, r.ls)
		e, ok := b.ext[keys[i]]
		switch name := family(r.ls.Get(model.MetricNameLabel)); {
		case keys[i] == "":
			// An exact match: the upstream adds no labels to some
			// series, so any set with labels beyond holds a sibling's.
			b.ext[""] = extSet{known: true, seen: seen}
		case !ok:
			if len(b.ext) >= maxExtSets {
				b.evictUnknown()
			}
			b.ext[keys[i]] = extSet{first: name, seen: seen}
		case !e.known && name != e.first:
			b.ext[keys[i]] = extSet{first: e.first, known: true, seen: seen}
			if d, ok := b.dropped[keys[i]]; ok {
				if !b.siblingSet(keys[i]) {
					b.notes = append(b.notes, d)
				}
				b.forgetDroppedLocked(keys[i])
			}
		default:
			e.seen = seen
			b.ext[keys[i]] = e
		}
		if keys[i] != "" {
			b.seenWithin(keys[i], seen)
		}
	}
	for i := range res {
		r := &res[i]
		if keys[i] != "" && !b.ownSet(keys[i]) {
			if !b.ext[keys[i]].known && !b.siblingSet(keys[i]) {
				b.noteDropped(keys[i], r.bfReq)
			}
			r.drop()
		}
	}
}

// noteDropped counts a history dropped with the set of extra label names
// key, not known yet, and keeps its request: if the set is learnt as the
// upstream's external labels later, the history was the series' own and
// is read again (a sibling's set, which never is, is not said). mu must
// be held.
func (b *backfill) noteDropped(key string, r bfReq) {
	if b.dropped == nil {
		b.dropped = map[string]lateSet{}
	}
	d, ok := b.dropped[key]
	if !ok && len(b.dropped) >= maxExtSets {
		// Room for it from the sets found to be siblings' since; else
		// the older ones stay (the upstream's own set comes with its
		// first series) and this one goes uncounted.
		for k := range b.dropped {
			if b.ext[k].known || b.siblingSet(k) {
				b.forgetDroppedLocked(k)
			}
		}
		if len(b.dropped) >= maxExtSets {
			return
		}
	}
	if !ok {
		d = lateSet{names: strings.ReplaceAll(key, "\xff", ","), example: r.ls.String()}
	}
	d.n++
	if b.lateReqs < maxLateReqs {
		// Asked afresh: what the last read of it learnt of refusals
		// and timeouts was of that read's batch.
		d.reqs = append(d.reqs, bfReq{w: r.w, s: r.s, ls: r.ls, mint: r.mint, maxt: r.maxt, n: r.n, again: true})
		b.lateReqs++
	}
	b.dropped[key] = d
}

// forgetDroppedLocked forgets the histories dropped with key; mu must be
// held.
func (b *backfill) forgetDroppedLocked(key string) {
	b.lateReqs -= len(b.dropped[key].reqs)
	delete(b.dropped, key)
}

// lateSets returns, once each, the sets learnt as external labels after
// histories that came with them were dropped, with the requests to read
// again.
func (b *backfill) lateSets() []lateSet {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := b.notes
	b.notes = nil
	return out
}

// seenWithin marks the known sets that are part of key (but the exact
// matches') seen too: a sibling's series carries the external labels as
// well, and a sibling's set kept fresh by new series while the external
// set, refreshed only by series that have history upstream, expired would
// no longer be refused (ownSet). mu must be held.
func (b *backfill) seenWithin(key string, seen int64) {
	names := strings.Split(key, "\xff")
	for k, e := range b.ext {
		if e.known && k != "" && k != key && subset(strings.Split(k, "\xff"), names) {
			e.seen = seen
			b.ext[k] = e
		}
	}
}

// expireLocked forgets the sets not seen for maxAge: the upstream changed
// (external labels added, say), and an exact match or a smaller set learnt
// before would refuse every series' own history for good. A known set
// that an expired known set is part of goes with it (it was that one's
// sibling, see seenWithin). A set seen in the future (the clock was ahead)
// counts as seen now. mu must be held.
func (b *backfill) expireLocked(now time.Time) {
	at := now.Unix()
	var gone [][]string
	for k, e := range b.ext {
		if e.seen > at {
			e.seen = at
			b.ext[k] = e
		}
		// Compared in seconds: a seen time read from a damaged file,
		// centuries back, overflowed (at-seen)*time.Second to below
		// maxAge, and its set was kept for good.
		if e.seen < at-int64(b.maxAge/time.Second) {
			delete(b.ext, k)
			if e.known && k != "" {
				gone = append(gone, strings.Split(k, "\xff"))
			}
		}
	}
	for _, g := range gone {
		for k, e := range b.ext {
			if e.known && k != "" && subset(g, strings.Split(k, "\xff")) {
				delete(b.ext, k)
			}
		}
	}
}

// ownSet reports whether the extra label names key are the upstream's
// external ones: known, and no other known set a part of them (which
// would make key's series a sibling of those: {cluster, handler} when the
// upstream adds {cluster}; a tenant whose sources' external labels nest
// loses the larger set's histories to this).
func (b *backfill) ownSet(key string) bool {
	return b.ext[key].known && !b.siblingSet(key)
}

// siblingSet reports whether another known set (or the exact matches') is
// a part of key: key's series is then a sibling of those, its extra labels
// not all external. mu must be held.
func (b *backfill) siblingSet(key string) bool {
	names := strings.Split(key, "\xff")
	for k, e := range b.ext {
		if !e.known || k == key {
			continue
		}
		if k == "" {
			return true
		}
		sub := strings.Split(k, "\xff")
		if len(sub) < len(names) && subset(sub, names) {
			return true
		}
	}
	return false
}

// subset reports whether every name of a is in b.
func subset(a, b []string) bool {
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}

// evictUnknown forgets a set not yet known, to make room.
func (b *backfill) evictUnknown() {
	for k, e := range b.ext {
		if !e.known {
			delete(b.ext, k)
			return
		}
	}
}

// family is a metric's name without the suffixes of a histogram's or
// summary's series: their _count and _sum come in one batch with the same
// siblings, and count as one metric name.
func family(name string) string {
	for _, suf := range []string{"_bucket", "_count", "_sum", "_total", "_created"} {
		if n, ok := strings.CutSuffix(name, suf); ok {
			return n
		}
	}
	return name
}

// extSet is a set of label names seen beyond requests' labels: on the
// series of metric family first, and known once on another's too.
type extSet struct {
	first string
	known bool
	seen  int64 // unix seconds it last came
}

// maxExtSets bounds the sets of extra label names kept: siblings can
// bring many.
const maxExtSets = 256

// drop forgets r's history: another series'.
func (r *bfResult) drop() {
	r.older.t, r.older.v, r.older.k = r.older.t[:0], r.older.v[:0], 0
	r.from = labels.EmptyLabels()
}

// extraKey names, sorted and joined, the labels of ls that want lacks.
func extraKey(ls, want labels.Labels) string {
	var names []string
	ls.Range(func(l labels.Label) {
		if !want.Has(l.Name) {
			names = append(names, l.Name)
		}
	})
	return strings.Join(names, "\xff") // Range is in name order
}

// named reports whether every label of ls that want lacks is a configured
// external label, of its value if one is configured.
func (b *backfill) named(ls, want labels.Labels) bool {
	ok := true
	ls.Range(func(l labels.Label) {
		if v, named := b.extNames[l.Name]; ok && !want.Has(l.Name) {
			ok = named && (v == "" || v == l.Value)
		}
	})
	return ok
}

// externalNames parses configured external labels: names, or name=value
// pairs, comma separated.
func externalNames(in []string) (map[string]string, error) {
	in = splitCommas(in)
	if len(in) == 0 {
		return nil, nil
	}
	out := make(map[string]string, len(in))
	for _, x := range in {
		n, v, _ := strings.Cut(x, "=")
		if n = strings.TrimSpace(n); n == "" || !utf8.ValidString(x) || n == model.MetricNameLabel {
			return nil, fmt.Errorf("backfill external label %q: want a label name or name=value", x)
		}
		if _, dup := out[n]; dup {
			return nil, fmt.Errorf("backfill external label %q: named twice", n)
		}
		out[n] = strings.TrimSpace(v)
	}
	return out, nil
}

// hasAll reports whether ls has every label of want.
func hasAll(ls, want labels.Labels) bool {
	all := true
	want.Range(func(l labels.Label) { all = all && ls.Get(l.Name) == l.Value })
	return all
}

// readSeries adds the float samples of one series in [mint, maxt]: an
// upstream answering several queries may send a series' samples of
// another query's range too.
func (r *ring) readSeries(s storage.Series, mint, maxt int64) error {
	it := s.Iterator(nil)
	for vt := it.Next(); vt != chunkenc.ValNone; vt = it.Next() {
		if vt != chunkenc.ValFloat {
			continue
		}
		if t, v := it.At(); t >= mint && t <= maxt && !value.IsStaleNaN(v) {
			r.add(t, v)
		}
	}
	return it.Err()
}

// warm replays the last BackfillMaxPoints samples before beforeMs (and
// within BackfillMaxAge) through the new series' models, without writing
// outputs: from the TSDB; if that holds fewer, it asks the backfill
// remote-read URL for older ones, which come later (rewarm). If a run
// before scored the input at or after beforeMs (see scoredUpTo), the
// replay goes up to its latest result stored, and the samples up to that
// are out of order for the models (series.outOfOrder).
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
	// A series new to the TSDB (most of a burst of new series) has
	// nothing to read (see freshness).
	var local ring
	read := !p.fresh.fresh(p.st, s.ref, mint, beforeMs, &w.chks)
	if read {
		local = w.readLocal(ctx, s, equalMatchers(s.in), mint, w.scoredUpTo(ctx, s, beforeMs))
	}
	if p.bf != nil && local.len() < n {
		end := beforeMs
		if t, ok := local.first(); ok {
			end = t
		}
		// Queued at the end of the batch (flushBackfill), once s is
		// the worker's: a reader checks that it still is.
		w.bfOut = append(w.bfOut, bfReq{w: w, s: s, ls: s.in, mint: mint, maxt: end - 1, n: n - local.len()})
		s.bfWait = true
	}
	local.each(w.replayer(s))
	p.m.warmed.Add(float64(local.len()))
	if read {
		w.warmT, w.warmV = local.t[:0], local.v[:0] // reused by the next warm start
	}
}

// scoredUpTo returns the time of the latest result stored for the input of
// s at or after from, or from-1 if there is none: a run before scored the
// input that far, and a series created at a sample up to there (a
// sender's resending after a restart, which the TSDB takes as an identical
// duplicate; older history its out-of-order window takes) is warmed up to
// it, so that those samples are out of order for its models, as for a
// series restored from the snapshot (series.outOfOrder reads the replay's
// latest result). Scored again, their results were refused as duplicates
// of the stored ones, or written among them. Staleness markers are no
// results: a reload that deselected the input wrote them at the wall
// clock's time.
func (w *worker) scoredUpTo(ctx context.Context, s *series, from int64) int64 {
	last := from - 1
	q, err := w.p.st.Querier(from, math.MaxInt64)
	if err != nil {
		return last
	}
	defer q.Close()
	err = storedOutputs(ctx, q, s.in, s.name, func(o storage.Series) {
		it := o.Iterator(nil)
		for it.Next() == chunkenc.ValFloat {
			if t, v := it.At(); t > last && !value.IsStaleNaN(v) {
				last = t
			}
		}
	})
	if err != nil {
		w.p.logger.Debug("Reading stored outputs", "series", s.in.String(), "err", err)
	}
	return last
}

// flushBackfill queues the requests of the batch's new series.
func (w *worker) flushBackfill() {
	if len(w.bfOut) == 0 {
		return
	}
	p := w.p
	n := p.bf.request(w.bfOut...)
	p.m.backfillPending.Add(float64(n))
	for _, r := range w.bfOut[n:] {
		r.s.bfWait = false
		p.m.backfillSkipped.Inc()
	}
	clear(w.bfOut) // their series may go
	w.bfOut = w.bfOut[:0]
}

// rewarm gives each series of rs, if still the one that asked and not
// dropped meanwhile, new models: its upstream history replayed, then what
// the TSDB holds since, up to its latest sample. Until now it scored from
// the TSDB's history alone. Its published results, incident and stored
// outputs' references carry over; the new models' results replace the
// old ones at once.
func (w *worker) rewarm(ctx context.Context, rs []bfResult) {
	p := w.p
	cfg := p.cfg.Load()
	defer p.m.backfillPending.Sub(float64(len(rs))) // after: tests wait for 0
	for i := range rs {
		r := &rs[i]
		s := r.s
		if w.series[s.ref] != s || (!s.bfWait && !r.again) {
			continue
		}
		s.bfWait = false
		sc, ok := scoringOf(cfg, s.in, s.name, false)
		if r.older.len() == 0 || !ok || s.rebuild {
			// Nothing upstream; or deselected, or awaiting new models
			// anyway, which reconfigure and the next sample see to.
			continue
		}
		var local ring
		if last := max(s.pub.t, s.prevT); last > r.maxt {
			local = w.readLocal(ctx, s, equalMatchers(s.in), r.maxt+1, last)
			w.warmT, w.warmV = local.t[:0], local.v[:0] // reused by the next read, after the replay
		}
		if local.k >= p.opts.BackfillMaxPoints {
			// It has seen as many samples since as a warm start
			// replays (the upstream was down for long): its models
			// learnt more than new ones would.
			continue
		}
		fresh := &series{ref: s.ref, name: s.name, in: s.in, counter: s.counter, utf8Names: s.utf8Names, labelBits: s.labelBits}
		if err := fresh.det.Init(detectOptions(sc), w.scratch); err != nil {
			continue
		}
		if s.fc != nil {
			fresh.fc = newFcStateOf(s.fc.horizonSet, s.ref)
		}
		replay := w.replayer(fresh)
		r.older.each(replay)
		local.each(replay)
		p.m.warmed.Add(float64(r.older.len()))
		w.mu.Lock()
		wasReady := s.pub.ready
		inc, stale, live, hotAt := s.pub.incidentState, s.pub.stale, s.pub.live, s.pub.hotAt
		s.det = fresh.det
		if f, nf := s.fc, fresh.fc; f != nil {
			// Field by field: the collector reads horizons and hname
			// (which never change) after its read lock, and outRef
			// stays the stored outputs'.
			f.m, f.pts, f.ok, f.pend, f.rs, f.within = nf.m, nf.pts, nf.ok, nf.pend, nf.rs, nf.within
			f.made, f.isNew = nf.made, nf.isNew
			if stale {
				f.made, f.isNew = 0, false // as markStale left it
			}
		}
		s.rateState = fresh.rateState
		s.absDif, s.nDif = fresh.absDif, fresh.nDif
		s.pub = fresh.pub
		s.pub.stale, s.pub.live = stale, live
		if inc.since != 0 || s.pub.since == 0 {
			// The live incident goes on; else the one the history
			// shows, if any.
			s.pub.incidentState, s.pub.hotAt = inc, hotAt
		}
		ready := s.pub.ready
		w.mu.Unlock()
		switch {
		case ready && !wasReady:
			p.warming.Add(-1)
		case !ready && wasReady:
			p.warming.Add(1)
		}
	}
}

// catchUp replays through a series restored from the snapshot the samples
// the TSDB holds after the restored state's last one and before beforeMs:
// after a crash, those acknowledged since the last periodic snapshot, which
// the models would otherwise have missed (a graceful stop snapshots at the
// end, and Prometheus resends in order what it could not deliver). At most
// BackfillMaxPoints, the latest.
func (w *worker) catchUp(ctx context.Context, s *series, beforeMs int64) {
	p := w.p
	// s may be the worker's already (its catch-up waited for its first
	// sample in order, see create): /metrics and the API read it under
	// the lock, so the models step under it (the TSDB is read without).
	if isDerived(s) {
		w.mu.Lock()
		w.warmDerived(s, beforeMs)
		w.mu.Unlock()
		return
	}
	from := s.learntUpTo()
	if p.opts.BackfillMaxPoints == 0 || isDerived(s) || from <= 0 || from >= beforeMs-1 {
		return
	}
	local := w.readLocal(ctx, s, equalMatchers(s.in), from+1, beforeMs-1)
	w.mu.Lock()
	local.each(w.replayer(s))
	if f := s.fc; f != nil {
		// The replay writes no outputs: the forecasts it made were
		// stored by no one, and the first of them (made at once, as
		// restore leaves no time of the last) set when the next was
		// due, up to --forecast.interval after the first live sample.
		// As after a graceful stop, the series forecasts, and stores
		// the forecast, at its first sample after the restart.
		f.made, f.isNew = 0, false
	}
	w.mu.Unlock()
	p.m.caughtUp.Add(float64(local.len()))
	w.warmT, w.warmV = local.t[:0], local.v[:0]
}

// warmForecaster replays s's history in the TSDB before beforeMs into a
// new forecaster and gives it to s in place of the one the sweep gave it
// (still empty: warmDue), so that it forecasts at once rather than after
// 192 steps (1.6 hours at 15 s). The detector is not stepped again, so
// each sample is learnt as it is: the full warm-up learns one scored above
// 1 as its band's nearer end, which needs the detector's result then.
func (w *worker) warmForecaster(ctx context.Context, s *series, beforeMs int64) {
	old := s.fc
	nf := w.replayForecaster(ctx, s, beforeMs)
	if nf == nil {
		return
	}
	// The replay's forecasts were stored by no one: the series forecasts,
	// and stores it, at this sample (as after a catch-up).
	nf.made, nf.isNew = 0, false
	nf.outRef = old.outRef
	w.mu.Lock()
	if s.fc == old {
		s.fc = nf
	}
	w.mu.Unlock()
}

// calibrateFloors gives the horizons of s's restored forecaster that the
// snapshot had no band floor of (floorsDue) the floors a replay of s's
// history in the TSDB before beforeMs calibrates (see warmForecaster),
// keeping the restored model and the other horizons' floors. A new
// horizon started at the floor's minimum, its bands too narrow until 70
// checks had raised it (6 to 20 hours at 5m to 30m), where a reload to
// the same horizons rebuilt the series from its history, calibrated
// (TestRestartCalibratesNewHorizons). Without history, or with
// --backfill.max-points 0, they calibrate on live checks.
func (w *worker) calibrateFloors(ctx context.Context, s *series, beforeMs int64) {
	f := s.fc
	due := f.floorsDue
	f.floorsDue = 0
	nf := w.replayForecaster(ctx, s, beforeMs)
	if nf == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for i := range f.horizons {
		if due&(1<<i) != 0 {
			f.pend[i].Floor = nf.pend[i].Floor
		}
	}
}

// replayForecaster returns a new forecaster of s's horizons that has
// learnt s's history in the TSDB before beforeMs (nil if none is made),
// its forecasts' checks calibrating its band floors.
func (w *worker) replayForecaster(ctx context.Context, s *series, beforeMs int64) *fcState {
	p := w.p
	if p.opts.BackfillMaxPoints == 0 {
		return nil
	}
	nf := newFcStateOf(s.fc.horizonSet, s.ref)
	if nf == nil {
		return nil
	}
	local := w.readLocal(ctx, s, equalMatchers(s.in), beforeMs-p.opts.BackfillMaxAge.Milliseconds(), beforeMs-1)
	var rs rateState // s's own is at its latest sample
	everyMs := p.stepOpts().forecastEveryMs
	local.each(func(t int64, v float64) {
		if s.counter && detect.Measured(v) {
			r, ok := rs.rate(0, t, v, s.det.Interval())
			if !ok {
				return
			}
			v = r
		}
		if detect.NoValue(v) {
			return
		}
		fv := math.NaN()
		if detect.Measured(v) {
			fv = v
		}
		nf.step(s, t, v, fv, nil, &w.fcBuf, everyMs)
	})
	p.m.warmed.Add(float64(local.len()))
	w.warmT, w.warmV = local.t[:0], local.v[:0]
	return nf
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
		if s.counter && detect.Measured(v) { // as on the live path
			r, ok := s.rate(0, t, v, s.det.Interval()) // the history's zero samples, if stored, read as resets
			if !ok {
				return
			}
			v = r
		}
		if detect.NoValue(v) {
			return // as on the live path: the models skip NaNs
		}
		s.step(t, v, nil, &w.fcBuf, so)
	}
}
