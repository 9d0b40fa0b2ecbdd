package tsdb

import (
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
)

// HAOptions de-duplicate a pair (or more) of Prometheus replicas that
// scrape the same targets and all remote-write to omen, as Mimir's and
// Cortex's HA tracker does: the replicas of one cluster tell themselves
// apart by an external label (ReplicaLabel), and share another
// (ClusterLabel). Of each cluster only one replica's requests are stored,
// without the replica label, so each series is stored and scored once;
// the others' are answered 202 and dropped. When the elected replica has
// sent nothing for FailoverTimeout, the next replica to send is elected.
// Requests without the replica label are stored as they are; requests
// without the cluster label belong to one unnamed cluster, so a single HA
// pair may drop the cluster label on the way (its outputs then carry the
// labels its inputs have in Prometheus, which the generated alerts' and the
// dashboards' lookups need).
type HAOptions struct {
	// ReplicaLabel names the replica label; "" turns de-duplication off.
	ReplicaLabel string
	// ClusterLabel names the label the replicas of one cluster share.
	ClusterLabel string
	// FailoverTimeout: how long the elected replica may be silent before
	// another one is elected.
	FailoverTimeout time.Duration
	// MaxClusters bounds the clusters tracked; a request of one more is
	// refused (400).
	MaxClusters int
}

// DefaultHAOptions are Mimir's defaults, with de-duplication off.
func DefaultHAOptions() HAOptions {
	return HAOptions{ClusterLabel: "cluster", FailoverTimeout: 30 * time.Second, MaxClusters: 100}
}

// haTracker elects one replica per cluster. It is in memory: after a
// restart the first replica to send is elected, as after a failover.
type haTracker struct {
	opts     HAOptions
	logger   *slog.Logger
	mu       sync.Mutex
	clusters map[string]*haElected
	deduped  *prometheus.CounterVec
	changes  *prometheus.CounterVec
}

// haElected is a cluster's elected replica and when it last sent. The
// strings are copies: the request's may point into its body, which the
// next request reuses.
type haElected struct {
	cluster, replica string
	seen             time.Time
}

func newHATracker(logger *slog.Logger, reg prometheus.Registerer, opts HAOptions) *haTracker {
	f := promauto.With(reg)
	return &haTracker{
		opts: opts, logger: logger, clusters: map[string]*haElected{},
		deduped: f.NewCounterVec(prometheus.CounterOpts{
			Name: "omen_ha_deduplicated_samples_total",
			Help: "Samples, histograms included, dropped because a replica other than its cluster's elected one sent them.",
		}, []string{"cluster"}),
		changes: f.NewCounterVec(prometheus.CounterOpts{
			Name: "omen_ha_elected_replica_changes_total",
			Help: "Times another replica of a cluster was elected, its elected one having sent nothing for --write.ha-failover-timeout.",
		}, []string{"cluster"}),
	}
}

// admit decides the fate of a request whose first series has the given
// cluster and replica label values, at now, carrying st. strip: the
// request is stored without its replica label. herr: it is not stored (202
// for another replica's, 400 for one cluster too many).
func (t *haTracker) admit(cluster, replica string, st writeStats, now time.Time) (strip bool, herr *httpError) {
	if t == nil || replica == "" {
		return false, nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.clusters[cluster]
	switch {
	case e == nil:
		if len(t.clusters) >= t.opts.MaxClusters {
			return false, errorf(http.StatusBadRequest, "too many HA clusters: %q would be one more than the limit of %d (--write.ha-max-clusters)", cluster, t.opts.MaxClusters)
		}
		e = &haElected{cluster: strings.Clone(cluster), replica: strings.Clone(replica), seen: now}
		t.clusters[e.cluster] = e
		t.changes.WithLabelValues(e.cluster) // at 0, so increase() sees the first failover
		t.deduped.WithLabelValues(e.cluster)
		t.logger.Info("HA cluster elected a replica", "cluster", e.cluster, "replica", e.replica)
	case e.replica == replica:
		e.seen = now
	case now.Sub(e.seen) > t.opts.FailoverTimeout:
		t.logger.Warn("HA cluster failed over: its elected replica sent nothing for the failover timeout",
			"cluster", e.cluster, "from", e.replica, "to", replica, "silent", now.Sub(e.seen).Round(time.Second))
		e.replica, e.seen = strings.Clone(replica), now
		t.changes.WithLabelValues(e.cluster).Inc()
	default:
		// Mimir's answer: accepted, so the sender neither retries nor
		// counts the samples as failed.
		t.deduped.WithLabelValues(e.cluster).Add(float64(st.floats + st.histograms))
		return false, &httpError{code: http.StatusAccepted, msg: "replica " + replica + " of HA cluster " + cluster + " is not the elected one (" + e.replica + "): samples dropped as duplicates"}
	}
	return true, nil
}

// The HA labels of each decoded form's first series, and the stripping of
// the replica label from every series of an admitted request, in place, so
// the append paths (and the ref cache) see the labels as stored. The ref
// cache still hashes a 1.0 series' raw label bytes, replica label included:
// each replica's bytes map to the one stored series, and a hit is checked
// against the stripped labels.

// haV1 returns the cluster and replica of the first series of a generic
// 1.0 request, and what it carries.
func (t *haTracker) haV1(ts []prompb.TimeSeries) (cluster, replica string, st writeStats) {
	for i := range ts {
		st.floats, st.histograms, st.exemplars = st.floats+len(ts[i].Samples), st.histograms+len(ts[i].Histograms), st.exemplars+len(ts[i].Exemplars)
	}
	if len(ts) == 0 {
		return "", "", st
	}
	for _, l := range ts[0].Labels {
		switch l.Name {
		case t.opts.ClusterLabel:
			cluster = l.Value
		case t.opts.ReplicaLabel:
			replica = l.Value
		}
	}
	return cluster, replica, st
}

func (t *haTracker) stripV1(ts []prompb.TimeSeries) {
	for i := range ts {
		ls := ts[i].Labels[:0]
		for _, l := range ts[i].Labels {
			if l.Name != t.opts.ReplicaLabel {
				ls = append(ls, l)
			}
		}
		ts[i].Labels = ls
	}
}

func (t *haTracker) haFastV1(d *fastV1, body []byte) (cluster, replica string, st writeStats) {
	st.floats = len(d.samples)
	if len(d.series) == 0 {
		return "", "", st
	}
	s := d.series[0]
	for _, l := range d.labels[s.labelsFrom:s.labelsTo] {
		switch str(body, l.nameFrom, l.nameTo) {
		case t.opts.ClusterLabel:
			cluster = str(body, l.valueFrom, l.valueTo)
		case t.opts.ReplicaLabel:
			replica = str(body, l.valueFrom, l.valueTo)
		}
	}
	return cluster, replica, st
}

func (t *haTracker) stripFastV1(d *fastV1, body []byte) {
	for i := range d.series {
		s := &d.series[i]
		to := s.labelsFrom
		for _, l := range d.labels[s.labelsFrom:s.labelsTo] {
			if str(body, l.nameFrom, l.nameTo) != t.opts.ReplicaLabel {
				d.labels[to] = l
				to++
			}
		}
		s.labelsTo = to
	}
}

// haV2 reads the first series' labels through syms, skipping references
// outside the table (the append path refuses that series).
func (t *haTracker) haV2(ts []writev2.TimeSeries, syms []string) (cluster, replica string, st writeStats) {
	for i := range ts {
		st.floats, st.histograms, st.exemplars = st.floats+len(ts[i].Samples), st.histograms+len(ts[i].Histograms), st.exemplars+len(ts[i].Exemplars)
	}
	if len(ts) == 0 {
		return "", "", st
	}
	refs := ts[0].LabelsRefs
	for j := 0; j+1 < len(refs); j += 2 {
		if int(refs[j]) >= len(syms) || int(refs[j+1]) >= len(syms) {
			continue
		}
		switch syms[refs[j]] {
		case t.opts.ClusterLabel:
			cluster = syms[refs[j+1]]
		case t.opts.ReplicaLabel:
			replica = syms[refs[j+1]]
		}
	}
	return cluster, replica, st
}

func (t *haTracker) stripV2(ts []writev2.TimeSeries, syms []string) {
	for i := range ts {
		ts[i].LabelsRefs = stripRefs(ts[i].LabelsRefs, func(r uint32) (string, bool) {
			if int(r) >= len(syms) {
				return "", false
			}
			return syms[r], true
		}, t.opts.ReplicaLabel)
	}
}

func (t *haTracker) haFastV2(d *fastV2, body []byte) (cluster, replica string, st writeStats) {
	st.floats = len(d.samples)
	if len(d.series) == 0 {
		return "", "", st
	}
	s := d.series[0]
	refs := d.refs[s.refsFrom:s.refsTo]
	nsyms := uint32(len(d.symbols))
	for j := 0; j+1 < len(refs); j += 2 {
		if refs[j] >= nsyms || refs[j+1] >= nsyms {
			continue
		}
		switch d.sym(body, refs[j]) {
		case t.opts.ClusterLabel:
			cluster = d.sym(body, refs[j+1])
		case t.opts.ReplicaLabel:
			replica = d.sym(body, refs[j+1])
		}
	}
	return cluster, replica, st
}

func (t *haTracker) stripFastV2(d *fastV2, body []byte) {
	nsyms := uint32(len(d.symbols))
	sym := func(r uint32) (string, bool) {
		if r >= nsyms {
			return "", false
		}
		return d.sym(body, r), true
	}
	for i := range d.series {
		s := &d.series[i]
		kept := stripRefs(d.refs[s.refsFrom:s.refsTo], sym, t.opts.ReplicaLabel)
		s.refsTo = s.refsFrom + int32(len(kept))
	}
}

// stripRefs removes, in place, the name and value reference pairs whose
// name is replica; an odd tail or a reference sym cannot resolve is kept,
// for the append path to refuse.
func stripRefs(refs []uint32, sym func(uint32) (string, bool), replica string) []uint32 {
	out := refs[:0]
	j := 0
	for ; j+1 < len(refs); j += 2 {
		if name, ok := sym(refs[j]); ok && name == replica {
			continue
		}
		out = append(out, refs[j], refs[j+1])
	}
	return append(out, refs[j:]...)
}
