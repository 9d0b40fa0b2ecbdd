package forward

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"log/slog"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	promconfig "github.com/prometheus/prometheus/config"
	"go.yaml.in/yaml/v2"
)

// tailingFailed is the message the prometheus module's log reader (its WAL
// watcher) logs when it cannot go on reading the log: a segment deleted by
// a truncation before the reader got to it, a checkpoint it cannot read.
// It then starts again from the present, and skips whatever was logged
// before that and not yet read: that is the only trace of the loss, the
// module counting nothing (a 3 s outage across 10 truncations sent 150 of
// 1 460 outputs, with prometheus_remote_storage_samples_failed_total,
// _dropped and the watcher's metrics showing nothing amiss).
const tailingFailed = "error tailing WAL"

// skipCounter counts, per queue, the times its reader of the forwarding log
// started again from the present (omen_forward_backlog_skipped_total).
// The module gives it nothing but its log, so the counter is fed by the
// logger the module is given (see skipHandler).
type skipCounter struct {
	m *prometheus.CounterVec

	mu     sync.Mutex
	queues map[[2]string]bool // remote_name, url of the series exposed
}

func newSkipCounter(reg prometheus.Registerer) *skipCounter {
	return &skipCounter{
		m: promauto.With(reg).NewCounterVec(prometheus.CounterOpts{
			Name: "omen_forward_backlog_skipped_total",
			Help: "Times a remote-write queue's reader of the forwarding log could not go on (a segment truncated before it read it, as in an upstream outage longer than the log keeps) and started again from the present: the outputs logged before and not yet read are never forwarded.",
		}, []string{"remote_name", "url"}),
		queues: map[[2]string]bool{},
	}
}

// setQueues exposes a series at 0 for each queue of cfgs (so that
// increase() sees a first skip) and drops those of queues gone.
func (s *skipCounter) setQueues(cfgs []*promconfig.RemoteWriteConfig) {
	s.mu.Lock()
	defer s.mu.Unlock()
	keep := map[[2]string]bool{}
	for _, c := range cfgs {
		q := [2]string{queueName(c), c.URL.Redacted()}
		keep[q] = true
		s.m.WithLabelValues(q[0], q[1])
	}
	for q := range s.queues {
		if !keep[q] {
			s.m.DeleteLabelValues(q[0], q[1])
		}
	}
	s.queues = keep
}

func (s *skipCounter) skipped(name, url string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	// Only a queue in force: a reader's last words after its queue was
	// removed would bring its series back for good.
	if q := [2]string{name, url}; s.queues[q] {
		s.m.WithLabelValues(name, url).Inc()
	}
}

// queueName is the name the module gives c's queue (its remote_name
// label): c's name, else the start of the hash of its YAML.
func queueName(c *promconfig.RemoteWriteConfig) string {
	if c.Name != "" {
		return c.Name
	}
	b, err := yaml.Marshal(c)
	if err != nil {
		return ""
	}
	h := md5.Sum(b)
	return hex.EncodeToString(h[:])[:6]
}

// skipHandler is the log handler the module's remote storage writes to:
// it passes every record on to omen's, and counts the reader restarts of
// the queue whose logger it is (the module's queue logger carries
// remote_name and url). A restart is an error, and counted whatever the
// log level.
type skipHandler struct {
	next      slog.Handler
	skips     *skipCounter
	name, url string
}

func (h *skipHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelError || h.next.Enabled(ctx, l)
}

func (h *skipHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == tailingFailed && h.url != "" {
		h.skips.skipped(h.name, h.url)
	}
	if !h.next.Enabled(ctx, r.Level) {
		return nil
	}
	return h.next.Handle(ctx, r)
}

func (h *skipHandler) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.next = h.next.WithAttrs(as)
	for _, a := range as {
		switch a.Key {
		case "remote_name":
			c.name = a.Value.String()
		case "url":
			c.url = a.Value.String()
		}
	}
	return &c
}

func (h *skipHandler) WithGroup(name string) slog.Handler {
	c := *h
	c.next = h.next.WithGroup(name)
	return &c
}
