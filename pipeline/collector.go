package pipeline

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
)

// accuracy keeps rolling forecast accuracy per input name and horizon:
//
//	MASE     = EWMA(|y − ŷ| / s), s = EWMA of |y_t − y_{t−1}| of the series
//	coverage = EWMA(1{lower ≤ y ≤ upper})
//
// with weight 1/n for the first 100 checks, then 1/100. Cardinality is that
// of input names × horizons; entries not updated for StaleAfter are dropped.
type accuracy struct {
	mu sync.Mutex
	m  map[accKey]*accVal
}

type accKey struct{ name, horizon string }

type accVal struct {
	n             int
	mase, covered float64
	lastSeen      int64
}

func (p *Pipeline) acc() *accuracy {
	p.accOnce.Do(func() { p.accuracy = &accuracy{m: map[accKey]*accVal{}} })
	return p.accuracy
}

func (a *accuracy) observe(name, horizon string, scaledErr float64, covered bool, nowMs int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	k := accKey{name, horizon}
	v := a.m[k]
	if v == nil {
		v = &accVal{}
		a.m[k] = v
	}
	v.n++
	w := max(1/float64(v.n), 1.0/100)
	c := 0.0
	if covered {
		c = 1
	}
	v.mase += w * (scaledErr - v.mase)
	v.covered += w * (c - v.covered)
	v.lastSeen = nowMs
}

func (a *accuracy) expire(cutMs int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for k, v := range a.m {
		if v.lastSeen < cutMs {
			delete(a.m, k)
		}
	}
}

var (
	descMASE = prometheus.NewDesc("omen_forecast_mase",
		"Rolling mean absolute scaled error of the forecasts, by input and horizon (scale: mean absolute change between samples).",
		[]string{"for", "horizon"}, nil)
	descCoverage = prometheus.NewDesc("omen_forecast_interval_coverage_ratio",
		"Rolling share of actuals inside the forecast interval, by input and horizon.",
		[]string{"for", "horizon"}, nil)
)

// collector emits the output families and the per-series self metrics
// from the workers' published state, copied under their read locks.
type collector struct{ p *Pipeline }

// Collector returns the collector of the output families (anomaly_score,
// yhat, ..., forecast_upper, limited by Options.Families and ScoreFloor),
// omen_model_ready per series and the forecast accuracy. It is unchecked:
// its series set changes as series come and go.
func (p *Pipeline) Collector() prometheus.Collector { return collector{p} }

func (collector) Describe(chan<- *prometheus.Desc) {}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	p := c.p
	for _, w := range p.workers {
		w.view(func(s *series) {
			ready := 0.0
			if s.pub.ready {
				ready = 1
			}
			emit(ch, "omen_model_ready", "Whether the series' detector has finished warming up (1) or not (0).", prometheus.GaugeValue, s, "", ready)
			if !s.pub.hasResult || s.pub.score < p.opts.ScoreFloor {
				return
			}
			vals := [4]float64{s.pub.score, s.pub.yhat, s.pub.lower, s.pub.upper}
			for i, v := range vals {
				if p.family[baseFamilies[i]] && (i == 0 || s.pub.ready) {
					emit(ch, baseFamilies[i], outputHelp[baseFamilies[i]], prometheus.GaugeValue, s, "", v)
				}
			}
			if f := s.fc; f != nil {
				for h := range f.horizons {
					if !f.ok[h] {
						continue
					}
					pt := f.pts[h]
					for j, v := range [3]float64{pt.Yhat, pt.Lower, pt.Upper} {
						if p.family[fcFamilies[j]] {
							emit(ch, fcFamilies[j], outputHelp[fcFamilies[j]], prometheus.GaugeValue, s, f.hname[h], v)
						}
					}
				}
			}
		})
	}
	a := p.acc()
	a.mu.Lock()
	defer a.mu.Unlock()
	for k, v := range a.m {
		ch <- prometheus.MustNewConstMetric(descMASE, prometheus.GaugeValue, v.mase, k.name, k.horizon)
		ch <- prometheus.MustNewConstMetric(descCoverage, prometheus.GaugeValue, v.covered, k.name, k.horizon)
	}
}

var outputHelp = map[string]string{
	FamilyScore:         "Anomaly score of the input named by `for`: >= 0, above 1 is anomalous.",
	FamilyYhat:          "Expected value of the input.",
	FamilyYhatLower:     "Lower end of the expected band of the input.",
	FamilyYhatUpper:     "Upper end of the expected band of the input.",
	FamilyForecast:      "Forecast of the input made now for now + horizon.",
	FamilyForecastLower: "Lower end of the forecast's prediction interval.",
	FamilyForecastUpper: "Upper end of the forecast's prediction interval.",
}

// emit sends one const gauge with the output labels of s (its input's
// minus __name__, plus for and horizon if set). Label names vary per
// series, so the Desc is built per metric; this is the scrape path, not
// the ingest path.
func emit(ch chan<- prometheus.Metric, name, help string, typ prometheus.ValueType, s *series, horizon string, v float64) {
	n := s.in.Len() + 1
	names := make([]string, 0, n)
	vals := make([]string, 0, n)
	s.in.Range(func(l labels.Label) {
		switch {
		case l.Name == labels.MetricName, l.Name == "for":
			return // for replaces an input label of that name, as in the TSDB
		case horizon != "" && l.Name == "horizon":
			return // so does the output's horizon
		}
		names, vals = append(names, l.Name), append(vals, l.Value)
	})
	names, vals = append(names, "for"), append(vals, s.name)
	if horizon != "" {
		names, vals = append(names, "horizon"), append(vals, horizon)
	}
	m, err := prometheus.NewConstMetric(prometheus.NewDesc(name, help, names, nil), typ, v, vals...)
	if err != nil {
		// Never an invalid metric: it would fail the whole scrape.
		return
	}
	ch <- m
}
