package pipeline

import (
	"context"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/storage"

	"github.com/omen-sidecar/omen/config"
)

// derivedRefBit marks the pseudo series refs of derived inputs, which have
// no TSDB series: the head's refs count up from 1 and never reach it.
const derivedRefBit storage.SeriesRef = 1 << 63

// runDerived evaluates the configured derived inputs, each every its
// interval, and scores each series of the result like an ingested one.
func (p *Pipeline) runDerived(ctx context.Context) {
	if p.engine == nil {
		return
	}
	next := map[string]time.Time{}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := p.opts.Now()
		cfg := p.cfg.Load()
		seen := make(map[string]bool, len(cfg.Derived))
		for i := range cfg.Derived {
			d := &cfg.Derived[i]
			seen[d.Name] = true
			due, ok := next[d.Name]
			if !ok {
				// First seen: evaluate one interval from now, so a
				// reload does not evaluate every input at once.
				next[d.Name] = now.Add(time.Duration(d.Interval))
				continue
			}
			if now.Before(due) {
				continue
			}
			next[d.Name] = now.Add(time.Duration(d.Interval))
			p.evalDerived(ctx, d, now)
		}
		for name := range next {
			if !seen[name] {
				delete(next, name)
			}
		}
	}
}

// evalDerived evaluates d at now. d is from the configuration the caller
// loaded: a reload during the query (which may run for d's interval) must
// not change which input is evaluated, nor index past a shorter list.
func (p *Pipeline) evalDerived(ctx context.Context, d *config.Derived, now time.Time) {
	qctx, cancel := context.WithTimeout(ctx, time.Duration(d.Interval))
	defer cancel()
	q, err := p.engine.NewInstantQuery(qctx, p.st, nil, d.Expr, now)
	if err != nil {
		p.m.derivedErrs.WithLabelValues(d.Name).Inc()
		p.logger.Warn("Derived input", "name", d.Name, "err", err)
		return
	}
	defer q.Close()
	res := q.Exec(qctx)
	if res.Err != nil {
		p.m.derivedErrs.WithLabelValues(d.Name).Inc()
		p.logger.Warn("Derived input", "name", d.Name, "err", res.Err)
		return
	}
	vec, err := res.Vector()
	if err != nil {
		if sc, serr := res.Scalar(); serr == nil {
			vec = promql.Vector{{T: sc.T, F: sc.V}}
		} else {
			p.m.derivedErrs.WithLabelValues(d.Name).Inc()
			p.logger.Warn("Derived input: want an instant vector or scalar", "name", d.Name, "err", err)
			return
		}
	}
	samples := make([]sample, 0, len(vec))
	for _, s := range vec {
		if s.H != nil {
			continue
		}
		b := labels.NewBuilder(s.Metric)
		b.Set(labels.MetricName, d.Name)
		ls := b.Labels()
		samples = append(samples, sample{
			ref: derivedRefBit | storage.SeriesRef(ls.Hash()>>1), ls: ls, t: now.UnixMilli(), v: s.F, derived: d,
		})
	}
	if len(samples) > 0 {
		p.dispatch(samples)
	}
}
