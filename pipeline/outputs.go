package pipeline

import (
	"math"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
)

// outputs appends a series' results to the TSDB through the untapped
// appendable, so they are never scored themselves.
type outputs struct {
	app storage.AppenderV2
	p   *Pipeline
}

var baseFamilies = [4]string{FamilyScore, FamilyYhat, FamilyYhatLower, FamilyYhatUpper}
var fcFamilies = [3]string{FamilyForecast, FamilyForecastLower, FamilyForecastUpper}

// write appends the results of the sample at pub.t.
func (o *outputs) write(s *series, pub *published) {
	vals := [4]float64{pub.score, pub.yhat, pub.lower, pub.upper}
	for i, v := range vals {
		if i > 0 && !pub.ready {
			break // no band before the warm-up ends
		}
		o.one(s, &s.outRef[i], baseFamilies[i], "", pub.t, v)
	}
	f := s.fc // read without the lock: only this worker writes it
	if f == nil || !f.isNew {
		return
	}
	for h := range f.horizons {
		if !f.ok[h] {
			continue
		}
		pt := f.pts[h]
		for j, v := range [3]float64{pt.Yhat, pt.Lower, pt.Upper} {
			o.one(s, &f.outRef[3*h+j], fcFamilies[j], f.hname[h], pub.t, v)
		}
	}
}

// one appends one value. The output's series ref is cached on the series,
// so in the steady state no labels are built: the head resolves the ref.
// A ref the head no longer knows (its series was garbage-collected) fails
// with an empty label set, and the append is retried with the labels.
func (o *outputs) one(s *series, ref *storage.SeriesRef, family, horizon string, t int64, v float64) {
	if math.IsNaN(v) || math.IsInf(v, 0) || !o.p.store[family] {
		return
	}
	var ls labels.Labels
	if *ref == 0 || o.p.fwd != nil {
		ls = s.outLabels(family, horizon)
	}
	r, err := o.app.Append(*ref, ls, 0, t, v, nil, nil, storage.AOptions{})
	if err != nil && *ref != 0 && ls.IsEmpty() {
		ls = s.outLabels(family, horizon)
		r, err = o.app.Append(0, ls, 0, t, v, nil, nil, storage.AOptions{})
	}
	if err != nil {
		o.p.m.outputErrors.Inc()
		*ref = 0
		return
	}
	*ref = r
	if o.p.fwd != nil {
		o.p.fwd.add(ls, t, v)
	}
}
