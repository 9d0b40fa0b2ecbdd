package tsdb

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/prompb"
)

// maxFamilies bounds the metric families Metadata remembers: a sender with
// more is misbehaving, and the rest of omen does not depend on them.
const maxFamilies = 1 << 16

// Metadata keeps the latest type, help and unit of each metric family the
// senders described, and serves them as Prometheus's /api/v1/metadata. The
// API that omen takes from Prometheus reads metadata from scrape targets,
// which omen has none of, so it answered nothing; Grafana's metrics browser
// and query builder take their type and help hints from here. Remote-write
// 1.0 carries metadata per family in requests of their own (Prometheus
// sends them every minute), 2.0 per series: both are kept here, in memory,
// until the next sender's word.
type Metadata struct {
	mu sync.RWMutex
	m  map[string]metadata.Metadata
}

// NewMetadata returns an empty store.
func NewMetadata() *Metadata { return &Metadata{m: map[string]metadata.Metadata{}} }

// note records md for the family; empty metadata says nothing.
func (s *Metadata) note(family string, md metadata.Metadata) {
	if s == nil || family == "" || md == (metadata.Metadata{}) {
		return
	}
	s.mu.RLock()
	old, ok := s.m[family]
	n := len(s.m)
	s.mu.RUnlock()
	if ok && old == md || !ok && n >= maxFamilies {
		return
	}
	md.Help, md.Unit = strings.Clone(md.Help), strings.Clone(md.Unit)
	s.mu.Lock()
	s.m[strings.Clone(family)] = md
	s.mu.Unlock()
}

// noteV1 records a remote-write 1.0 request's metadata.
func (s *Metadata) noteV1(mds []prompb.MetricMetadata) {
	for _, m := range mds {
		s.note(m.MetricFamilyName, metadata.Metadata{
			Type: model.MetricType(strings.ToLower(prompb.MetricMetadata_MetricType_name[int32(m.Type)])), Help: m.Help, Unit: m.Unit,
		})
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
	s.note(name, md)
}

// ServeHTTP answers as Prometheus's /api/v1/metadata: ?metric= one
// family, ?limit= at most that many families.
func (s *Metadata) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	limit := -1
	if v := r.FormValue("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"status":"error","errorType":"bad_data","error":"limit must be a number"}`))
			return
		}
		limit = n
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
