package pipeline

import (
	"context"
	"math"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/storage/remote"
	"github.com/prometheus/prometheus/util/annotations"
)

// A derived input's history comes from the TSDB, and, with
// --backfill.remote-read-url, from the upstream for what is older than the
// TSDB's oldest sample: a new deployment's ingested series warm from the
// upstream, and an expression over them (an error ratio, a group of a
// pod's quantities) would otherwise have only the minutes omen has held,
// and learn its seasonality over days. The expression is evaluated by the
// query engine over the two merged, as Prometheus evaluates a query over
// its local storage and a remote read without read_recent: the upstream
// is asked only for the range before the TSDB's start, and its failure is
// a warning, leaving the TSDB's history.

// historyQueryable is what derived inputs' histories are evaluated over.
func (p *Pipeline) historyQueryable() storage.Queryable {
	if p.bf == nil {
		return p.st
	}
	start := func() (int64, error) { return math.MaxInt64, nil }
	if s, ok := p.st.(interface{ StartTime() (int64, error) }); ok {
		start = s.StartTime
	}
	return &mergedQueryable{
		local:    p.st,
		upstream: remote.NewSampleAndChunkQueryableClient(p.bf.rr, labels.EmptyLabels(), nil, false, start),
		bf:       p.bf,
	}
}

// mergedQueryable reads local, and the upstream as a secondary: its
// failures leave the query local's answer, and are kept for err.
type mergedQueryable struct {
	local, upstream storage.Queryable
	bf              *backfill
	failed          atomic.Pointer[error]
}

func (m *mergedQueryable) Querier(mint, maxt int64) (storage.Querier, error) {
	lq, err := m.local.Querier(mint, maxt)
	if err != nil {
		return nil, err
	}
	var uq storage.Querier
	if q, err := m.upstream.Querier(mint, maxt); err != nil {
		uq = failedQuerier{m.fail(err)}
	} else {
		strip, ms := m.bf.externalLabels()
		uq = &upstreamQuerier{Querier: q, strip: strip, ms: ms, m: m}
	}
	return storage.NewMergeQuerier([]storage.Querier{lq}, []storage.Querier{uq}, storage.ChainedSeriesMerge), nil
}

// fail keeps err, the upstream's, and returns it.
func (m *mergedQueryable) fail(err error) error {
	m.failed.Store(&err)
	return err
}

// err is the upstream's last failure, if any.
func (m *mergedQueryable) err() error {
	if e := m.failed.Load(); e != nil {
		return *e
	}
	return nil
}

// failedQuerier answers every Select with err, which a secondary's merge
// makes a warning.
type failedQuerier struct{ err error }

func (f failedQuerier) Select(context.Context, bool, *storage.SelectHints, ...*labels.Matcher) storage.SeriesSet {
	return storage.ErrSeriesSet(f.err)
}

func (f failedQuerier) LabelValues(context.Context, string, *storage.LabelHints, ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	return nil, nil, f.err
}

func (f failedQuerier) LabelNames(context.Context, *storage.LabelHints, ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	return nil, nil, f.err
}

func (f failedQuerier) Close() error { return nil }

// upstreamQuerier reads the upstream's series without the labels it adds
// to them (its external labels, as configured or learnt by the ingested
// series' warm starts), so that they join the TSDB's series of the same
// name and labels: a rate over the range where the upstream's history ends
// and the TSDB's begins is then over one series. Series the removal makes
// equal (the replicas of a pair) are merged.
type upstreamQuerier struct {
	storage.Querier
	strip []string
	ms    []*labels.Matcher
	m     *mergedQueryable
}

// ofSource reports whether ls, an upstream series, has the values
// configured for its external labels, if it has them: a Prometheus
// answers a matcher on its own external label with every series and adds
// the label after (see backfill.read).
func (u *upstreamQuerier) ofSource(ls labels.Labels) bool {
	for _, m := range u.ms {
		if v := ls.Get(m.Name); v != "" && !m.Matches(v) {
			return false
		}
	}
	return true
}

func (u *upstreamQuerier) Select(ctx context.Context, _ bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	if dl, ok := ctx.Deadline(); ok {
		// A third of the query's time is left to the TSDB's part: an
		// upstream that stalls costs the upstream's history, not the
		// TSDB's too.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Until(dl)*2/3)
		defer cancel() // every series is read below
	}
	ss := u.Querier.Select(ctx, true, hints, append(slices.Clip(ms), u.ms...)...)
	var all []storage.Series
	b := labels.NewBuilder(labels.EmptyLabels())
	for ss.Next() {
		s := ss.At()
		if !u.ofSource(s.Labels()) {
			continue
		}
		b.Reset(s.Labels())
		b.Del(u.strip...)
		all = append(all, relabelled{Series: s, ls: b.Labels()})
	}
	if err := ss.Err(); err != nil {
		return storage.ErrSeriesSet(u.m.fail(err))
	}
	slices.SortStableFunc(all, func(x, y storage.Series) int { return labels.Compare(x.Labels(), y.Labels()) })
	var out []storage.Series
	for i := 0; i < len(all); {
		j := i + 1
		for j < len(all) && labels.Equal(all[i].Labels(), all[j].Labels()) {
			j++
		}
		if j == i+1 {
			out = append(out, all[i])
		} else {
			out = append(out, storage.ChainedSeriesMerge(all[i:j]...))
		}
		i = j
	}
	return &listSeriesSet{s: out, i: -1, ws: ss.Warnings()}
}

// relabelled is a series under other labels.
type relabelled struct {
	storage.Series
	ls labels.Labels
}

func (r relabelled) Labels() labels.Labels { return r.ls }

// listSeriesSet is a sorted list of series.
type listSeriesSet struct {
	s  []storage.Series
	i  int
	ws annotations.Annotations
}

func (l *listSeriesSet) Next() bool                        { l.i++; return l.i < len(l.s) }
func (l *listSeriesSet) At() storage.Series                { return l.s[l.i] }
func (l *listSeriesSet) Err() error                        { return nil }
func (l *listSeriesSet) Warnings() annotations.Annotations { return l.ws }

// externalLabels returns the names of the labels the upstream adds to its
// series, and matchers for those configured with a value (one source of
// many: not another's series; see read).
func (b *backfill) externalLabels() (names []string, ms []*labels.Matcher) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.extNames != nil {
		for n, v := range b.extNames {
			names = append(names, n)
			if v != "" {
				ms = append(ms, labels.MustNewMatcher(labels.MatchRegexp, n, "("+regexp.QuoteMeta(v)+")?"))
			}
		}
		return names, ms
	}
	for k, x := range b.ext {
		if k != "" && x.known {
			for n := range strings.SplitSeq(k, "\xff") {
				if !slices.Contains(names, n) {
					names = append(names, n)
				}
			}
		}
	}
	return names, nil
}
