package tsdb

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/grafana/regexp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/util/httputil"

	"github.com/omen-sidecar/omen/internal/trunc"
)

// Bounds on what Metadata keeps: the families (a sender with more is
// misbehaving, and nothing else in omen depends on them; beyond it new ones
// are counted in omen_metadata_families_dropped_total), and the help and
// unit strings (a request may decode to 128 MiB: one family's help must not
// pin that). 16 MiB at most in all.
const (
	maxFamilies = 1 << 14
	maxHelp     = 1 << 10
	maxUnit     = 64
)

// Metadata keeps the latest type, help and unit of each metric family the
// senders described, and serves them as Prometheus's /api/v1/metadata. The
// API that omen takes from Prometheus reads metadata from scrape targets,
// which omen has none of, so it answered nothing; Grafana's metrics browser
// and query builder take their type and help hints from here. Remote-write
// 1.0 carries metadata per family in requests of their own (Prometheus
// sends them every minute), 2.0 per series: both are kept here, in memory,
// until the next sender's word.
type Metadata struct {
	mu      sync.RWMutex
	m       map[string]metadata.Metadata
	cors    *regexp.Regexp
	dropped prometheus.Counter
	onTypes func(families []string, types []model.MetricType)
}

// OnTypes has fn called, once per request that declared any, with the
// families whose type a request declared anew, in the request's order (a
// family twice if two targets declare it two ways: Prometheus sends every
// target's metadata), and their types. The scorers type counters by it.
// Set it before serving.
func (s *Metadata) OnTypes(fn func(families []string, types []model.MetricType)) { s.onTypes = fn }

// typeNews are the declarations of one request that changed a family's
// type, for the OnTypes hook.
type typeNews struct {
	families []string
	types    []model.MetricType
}

// NewMetadata returns an empty store; its answers carry the CORS headers
// the rest of the API does (cors as APIOptions.CORSOrigin; nil: none).
func NewMetadata(reg prometheus.Registerer, cors *regexp.Regexp) *Metadata {
	return &Metadata{m: map[string]metadata.Metadata{}, cors: corsOrigin(cors),
		dropped: promauto.With(reg).NewCounter(prometheus.CounterOpts{
			Name: "omen_metadata_families_dropped_total",
			Help: "Metadata of new metric families not kept for /api/v1/metadata: the store is full.",
		})}
}

// note records md for the family, and its type in news if that is new.
// Empty metadata, or a type of unknown alone (a 2.0 series sent without
// metadata), says nothing: it must not replace what another sender said.
func (s *Metadata) note(family string, md metadata.Metadata, news *typeNews) {
	if s == nil || family == "" || md == (metadata.Metadata{}) || md == (metadata.Metadata{Type: model.MetricTypeUnknown}) {
		return
	}
	md.Help, md.Unit = trunc.UTF8(md.Help, maxHelp), trunc.UTF8(md.Unit, maxUnit)
	s.mu.RLock()
	old, ok := s.m[family]
	n := len(s.m)
	s.mu.RUnlock()
	if ok && old == md {
		return
	}
	if !ok && n >= maxFamilies {
		s.dropped.Inc()
		return
	}
	md.Help, md.Unit = strings.Clone(md.Help), strings.Clone(md.Unit)
	s.mu.Lock()
	s.m[strings.Clone(family)] = md
	s.mu.Unlock()
	if s.onTypes != nil && old.Type != md.Type {
		news.families, news.types = append(news.families, strings.Clone(family)), append(news.types, md.Type)
	}
}

// Own records the metadata of a family omen itself writes to its TSDB (its
// outputs), which no sender describes.
func (s *Metadata) Own(family string, md metadata.Metadata) {
	s.note(family, md, &typeNews{})
}

// noteV1 records a remote-write 1.0 request's metadata.
func (s *Metadata) noteV1(mds []prompb.MetricMetadata) {
	var news typeNews
	for _, m := range mds {
		s.note(m.MetricFamilyName, metadata.Metadata{Type: v1Type(int32(m.Type)), Help: m.Help, Unit: m.Unit}, &news)
	}
	s.tell(news)
}

// noteFastV1 is noteV1 for fastV1's metadata, whose strings are body's
// (note copies what it keeps).
func (s *Metadata) noteFastV1(body []byte, mds []fastMetaV1) {
	if len(mds) == 0 {
		return
	}
	var news typeNews
	for _, m := range mds {
		s.note(str(body, m.familyFrom, m.familyTo), metadata.Metadata{
			Type: v1Type(m.typ), Help: str(body, m.helpFrom, m.helpTo), Unit: str(body, m.unitFrom, m.unitTo),
		}, &news)
	}
	s.tell(news)
}

// v1Type is a 1.0 metadata type's name in lower case (model's), "" for a
// value the enum does not name; without strings.ToLower's allocation per
// entry, as vmagent sends every family's with every scrape.
func v1Type(t int32) model.MetricType {
	switch prompb.MetricMetadata_MetricType(t) {
	case prompb.MetricMetadata_UNKNOWN:
		return model.MetricTypeUnknown
	case prompb.MetricMetadata_COUNTER:
		return model.MetricTypeCounter
	case prompb.MetricMetadata_GAUGE:
		return model.MetricTypeGauge
	case prompb.MetricMetadata_HISTOGRAM:
		return model.MetricTypeHistogram
	case prompb.MetricMetadata_GAUGEHISTOGRAM:
		return model.MetricTypeGaugeHistogram
	case prompb.MetricMetadata_SUMMARY:
		return model.MetricTypeSummary
	case prompb.MetricMetadata_INFO:
		return model.MetricTypeInfo
	case prompb.MetricMetadata_STATESET:
		return model.MetricTypeStateset
	}
	return ""
}

// tell passes the families typed anew to the OnTypes hook.
func (s *Metadata) tell(news typeNews) {
	if len(news.families) > 0 {
		s.onTypes(news.families, news.types)
	}
}

// noteSeries records the metadata of a 2.0 series named name: the family
// of a histogram's or summary's _bucket, _sum and _count series is the name
// without the suffix, as Prometheus lists it.
func (s *Metadata) noteSeries(name string, md metadata.Metadata) {
	if md.Type == model.MetricTypeHistogram || md.Type == model.MetricTypeGaugeHistogram || md.Type == model.MetricTypeSummary {
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			if f, ok := strings.CutSuffix(name, suf); ok {
				name = f
				break
			}
		}
	}
	var news typeNews
	s.note(name, md, &news)
	s.tell(news)
}

// ServeHTTP answers as Prometheus's /api/v1/metadata: ?metric= one
// family, ?limit= at most that many families (limit_per_metric is checked
// as Prometheus checks it; one entry per family is kept).
func (s *Metadata) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	httputil.SetCORS(w, s.cors, r)
	limit := -1
	for _, p := range []string{"limit", "limit_per_metric"} {
		v := r.FormValue(p)
		if v == "" {
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"status":"error","errorType":"bad_data","error":"` + p + ` must be a number"}`))
			return
		}
		if p == "limit" {
			limit = n
		}
	}
	type entry struct {
		Type model.MetricType `json:"type"`
		Help string           `json:"help"`
		Unit string           `json:"unit"`
	}
	data := map[string][]entry{}
	metric := r.FormValue("metric")
	s.mu.RLock()
	for name, md := range s.m {
		if metric != "" && name != metric {
			continue
		}
		if limit >= 0 && len(data) >= limit {
			break
		}
		data[name] = []entry{{md.Type, md.Help, md.Unit}}
	}
	s.mu.RUnlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(struct {
		Status string             `json:"status"`
		Data   map[string][]entry `json:"data"`
	}{"success", data})
}
