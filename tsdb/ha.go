package tsdb

import (
	"log/slog"
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
// (ClusterLabel). Of each cluster only one replica's series are stored,
// without the replica label (and without the cluster label if
// StripClusterLabel), so each series is stored and scored once; the
// others' are dropped (a request of nothing else is answered 202). When
// the elected replica has sent nothing for FailoverTimeout, the next
// replica to send is elected. A series without either label is stored as
// it is. Each series is judged by its own labels, not by the request's
// first: a target's own label named like ClusterLabel (Prometheus keeps a
// target's label over an external one) makes a cluster of its own, whose
// replicas are still told apart, instead of deciding other series' fate.
type HAOptions struct {
	// ReplicaLabel names the replica label; "" turns de-duplication off.
	ReplicaLabel string
	// ClusterLabel names the label the replicas of one cluster share.
	ClusterLabel string
	// StripClusterLabel stores the elected replica's series without the
	// cluster label too: for one HA pair whose outputs should carry the
	// labels its series have in Prometheus (the generated alerts'
	// annotations and the dashboards look them up there). Only for a
	// cluster label no target has.
	StripClusterLabel bool
	// FailoverTimeout: how long the elected replica may be silent before
	// another one is elected.
	FailoverTimeout time.Duration
	// MaxClusters bounds the clusters tracked; the series of one more are
	// refused (400 naming it), until a cluster has been idle for
	// haForgetAfter.
	MaxClusters int
}

// DefaultHAOptions are Mimir's defaults, with de-duplication off.
func DefaultHAOptions() HAOptions {
	return HAOptions{ClusterLabel: "cluster", FailoverTimeout: 30 * time.Second, MaxClusters: 100}
}

// haForgetAfter: a cluster that sent nothing for this long is forgotten
// when its slot is needed.
const haForgetAfter = time.Hour

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

// haVerdict is what becomes of a series.
type haVerdict uint8

const (
	haAsIs   haVerdict = iota // no HA labels: stored as sent
	haStore                   // the elected replica's: stored without the replica label
	haDrop                    // another replica's: dropped
	haRefuse                  // of one cluster too many: refused
)

// admit judges a series of cluster and replica at now. e is the cluster's
// entry (nil if refused).
func (t *haTracker) admit(cluster, replica string, now time.Time) (haVerdict, *haElected) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.clusters[cluster]
	switch {
	case e == nil:
		if len(t.clusters) >= t.opts.MaxClusters {
			for c, old := range t.clusters {
				if now.Sub(old.seen) > haForgetAfter {
					delete(t.clusters, c)
				}
			}
			if len(t.clusters) >= t.opts.MaxClusters {
				return haRefuse, nil
			}
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
		return haDrop, e
	}
	return haStore, e
}

// haRequest judges the series of one request, remembering the last
// cluster and replica seen: a request's series mostly share them, so the
// tracker's lock is taken about once a request.
type haRequest struct {
	t                *haTracker
	now              time.Time
	cluster, replica string // the last judged; may point into the body
	verdict          haVerdict
	e                *haElected
	judged           bool
	dropped          float64 // samples of e's cluster dropped, not yet counted
	refused          int     // samples refused
	refusedCluster   string
}

func (t *haTracker) request(now time.Time) *haRequest {
	return &haRequest{t: t, now: now}
}

// judge returns the verdict on a series with the given HA label values
// carrying n samples.
func (q *haRequest) judge(cluster, replica string, n int) haVerdict {
	if cluster == "" || replica == "" {
		return haAsIs
	}
	if !q.judged || cluster != q.cluster || replica != q.replica {
		q.flush()
		q.verdict, q.e = q.t.admit(cluster, replica, q.now)
		q.cluster, q.replica, q.judged = cluster, replica, true
	}
	switch q.verdict {
	case haDrop:
		q.dropped += float64(n)
	case haRefuse:
		if q.refused == 0 {
			q.refusedCluster = strings.Clone(cluster)
		}
		q.refused += n
	}
	return q.verdict
}

// sort judges a series carrying st: keep reports whether it stays in the
// request, strip whether its HA labels are to be stripped; what another
// replica sent is added to dropped.
func (q *haRequest) sort(cluster, replica string, st writeStats, dropped *writeStats) (keep, strip bool) {
	switch q.judge(cluster, replica, st.floats+st.histograms) {
	case haRefuse:
		return false, false
	case haDrop:
		dropped.floats, dropped.histograms, dropped.exemplars = dropped.floats+st.floats, dropped.histograms+st.histograms, dropped.exemplars+st.exemplars
		return false, false
	case haStore:
		return true, true
	}
	return true, false
}

// flush counts the dropped samples of the last judged cluster.
func (q *haRequest) flush() {
	if q.dropped > 0 && q.e != nil {
		q.t.deduped.WithLabelValues(q.e.cluster).Add(q.dropped)
	}
	q.dropped = 0
}

// strips reports whether the label name is removed from a stored series.
func (q *haRequest) strips(name string) bool {
	return name == q.t.opts.ReplicaLabel || (q.t.opts.StripClusterLabel && name == q.t.opts.ClusterLabel)
}

// The passes over each decoded form: judge every series by its own HA
// labels, strip the stored ones' in place and drop the others, so the
// append paths (and the ref cache) see the series as stored. The ref cache
// still hashes a 1.0 series' raw label bytes, replica label included: each
// replica's bytes map to the one stored series, and a hit is checked
// against the stripped labels. Each returns the stats of what it dropped as
// another replica's (reported written, as Cortex and Mimir do: they are
// their cluster's, stored from the elected replica, and a 2.0 sender told
// that none were written counts them as failed); refused series are
// counted in q.refused.

func (q *haRequest) v1(ts []prompb.TimeSeries) (kept []prompb.TimeSeries, dropped writeStats) {
	kept = ts[:0]
	for i := range ts {
		var cluster, replica string
		for _, l := range ts[i].Labels {
			switch l.Name {
			case q.t.opts.ClusterLabel:
				cluster = l.Value
			case q.t.opts.ReplicaLabel:
				replica = l.Value
			}
		}
		keep, strip := q.sort(cluster, replica, writeStats{len(ts[i].Samples), len(ts[i].Histograms), len(ts[i].Exemplars)}, &dropped)
		if !keep {
			continue
		}
		if strip {
			ls := ts[i].Labels[:0]
			for _, l := range ts[i].Labels {
				if !q.strips(l.Name) {
					ls = append(ls, l)
				}
			}
			ts[i].Labels = ls
		}
		kept = append(kept, ts[i])
	}
	q.flush()
	return kept, dropped
}

func (q *haRequest) fastV1(d *fastV1, body []byte) (dropped writeStats) {
	kept := d.series[:0]
	for _, s := range d.series {
		var cluster, replica string
		fl := d.labels[s.labelsFrom:s.labelsTo]
		for _, l := range fl {
			switch str(body, l.nameFrom, l.nameTo) {
			case q.t.opts.ClusterLabel:
				cluster = str(body, l.valueFrom, l.valueTo)
			case q.t.opts.ReplicaLabel:
				replica = str(body, l.valueFrom, l.valueTo)
			}
		}
		keep, strip := q.sort(cluster, replica, writeStats{floats: int(s.samplesTo - s.samplesFrom)}, &dropped)
		if !keep {
			continue
		}
		if strip {
			to := s.labelsFrom
			for _, l := range fl {
				if !q.strips(str(body, l.nameFrom, l.nameTo)) {
					d.labels[to] = l
					to++
				}
			}
			s.labelsTo = to
		}
		kept = append(kept, s)
	}
	d.series = kept
	q.flush()
	return dropped
}

// v2 reads labels through syms, skipping references outside the table
// (the append path refuses that series).
func (q *haRequest) v2(ts []writev2.TimeSeries, syms []string) (kept []writev2.TimeSeries, dropped writeStats) {
	sym := func(r uint32) (string, bool) {
		if int(r) >= len(syms) {
			return "", false
		}
		return syms[r], true
	}
	kept = ts[:0]
	for i := range ts {
		cluster, replica := q.haLabels(ts[i].LabelsRefs, sym)
		keep, strip := q.sort(cluster, replica, writeStats{len(ts[i].Samples), len(ts[i].Histograms), len(ts[i].Exemplars)}, &dropped)
		if !keep {
			continue
		}
		if strip {
			ts[i].LabelsRefs = q.stripRefs(ts[i].LabelsRefs, sym)
		}
		kept = append(kept, ts[i])
	}
	q.flush()
	return kept, dropped
}

func (q *haRequest) fastV2(d *fastV2, body []byte) (dropped writeStats) {
	nsyms := uint32(len(d.symbols))
	sym := func(r uint32) (string, bool) {
		if r >= nsyms {
			return "", false
		}
		return d.sym(body, r), true
	}
	kept := d.series[:0]
	for _, s := range d.series {
		refs := d.refs[s.refsFrom:s.refsTo]
		cluster, replica := q.haLabels(refs, sym)
		keep, strip := q.sort(cluster, replica, writeStats{floats: int(s.samplesTo - s.samplesFrom)}, &dropped)
		if !keep {
			continue
		}
		if strip {
			s.refsTo = s.refsFrom + int32(len(q.stripRefs(refs, sym)))
		}
		kept = append(kept, s)
	}
	d.series = kept
	q.flush()
	return dropped
}

// haLabels returns the cluster and replica of a series given by label
// references.
func (q *haRequest) haLabels(refs []uint32, sym func(uint32) (string, bool)) (cluster, replica string) {
	for j := 0; j+1 < len(refs); j += 2 {
		name, ok1 := sym(refs[j])
		value, ok2 := sym(refs[j+1])
		if !ok1 || !ok2 {
			continue
		}
		switch name {
		case q.t.opts.ClusterLabel:
			cluster = value
		case q.t.opts.ReplicaLabel:
			replica = value
		}
	}
	return cluster, replica
}

// stripRefs removes, in place, the name and value reference pairs of the
// labels stripped; an odd tail or a reference sym cannot resolve is kept,
// for the append path to refuse.
func (q *haRequest) stripRefs(refs []uint32, sym func(uint32) (string, bool)) []uint32 {
	out := refs[:0]
	j := 0
	for ; j+1 < len(refs); j += 2 {
		if name, ok := sym(refs[j]); ok && q.strips(name) {
			continue
		}
		out = append(out, refs[j], refs[j+1])
	}
	return append(out, refs[j:]...)
}
