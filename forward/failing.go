package forward

import (
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// failingEvery is how often omen warns of each remote-write queue that
// failed to send in the while before: the prometheus module's own "Failed
// to send batch, retrying" is repeated at most once a minute across all
// its queues (its logger's Deduper keys on the message alone), so with two
// upstreams down, or one down and one refusing, only the first one's
// showed. The module's minute.
const failingEvery = time.Minute

// queueCounters are the module's per-queue counters the warning reports,
// by the name it gives them in its line.
var queueCounters = map[string]string{
	"prometheus_remote_storage_samples_retried_total": "samples_retried",
	"prometheus_remote_storage_samples_failed_total":  "samples_failed",
}

// tapRegisterer passes the remote storage's registrations on to next and
// keeps them on a registry of its own too, which the failing-queue
// warnings read: a Registerer cannot be gathered.
type tapRegisterer struct {
	next prometheus.Registerer // nil: none
	own  *prometheus.Registry
}

func newTapRegisterer(next prometheus.Registerer) *tapRegisterer {
	return &tapRegisterer{next: next, own: prometheus.NewRegistry()}
}

func (r *tapRegisterer) Register(c prometheus.Collector) error {
	if r.next != nil {
		if err := r.next.Register(c); err != nil {
			return err
		}
	}
	// Only the module's collectors come here, each registered and
	// unregistered on both as one: what next took, own takes.
	_ = r.own.Register(c)
	return nil
}

func (r *tapRegisterer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err) // as next's MustRegister: the module's metrics registered twice
		}
	}
}

func (r *tapRegisterer) Unregister(c prometheus.Collector) bool {
	r.own.Unregister(c)
	return r.next == nil || r.next.Unregister(c)
}

// failingQueues warns, every period, of each queue whose counters of
// retried or failed samples went up since the last look, naming
// its remote_name and url (redacted by the module) and what went up.
type failingQueues struct {
	logger *slog.Logger
	from   prometheus.Gatherer
	period time.Duration
	last   map[[2]string]map[string]float64 // per queue (remote_name, url), per counter
	done   chan struct{}
	wg     sync.WaitGroup
}

func startFailingQueues(logger *slog.Logger, from prometheus.Gatherer, period time.Duration) *failingQueues {
	q := &failingQueues{logger: logger, from: from, period: period, last: map[[2]string]map[string]float64{}, done: make(chan struct{})}
	q.look(false) // what the queues started with is not news
	q.wg.Add(1)
	go func() {
		defer q.wg.Done()
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				q.look(true)
			case <-q.done:
				return
			}
		}
	}()
	return q
}

func (q *failingQueues) stop() {
	close(q.done)
	q.wg.Wait()
}

// look reads the counters, warns (if warn) of the queues whose counters
// went up, and forgets the queues gone.
func (q *failingQueues) look(warn bool) {
	mfs, err := q.from.Gather()
	if err != nil {
		q.logger.Warn("Read the remote write queues' metrics", "err", err)
		return
	}
	now := map[[2]string]map[string]float64{}
	for _, mf := range mfs {
		key, ok := queueCounters[mf.GetName()]
		if !ok {
			continue
		}
		for _, m := range mf.GetMetric() {
			queue := queueOf(m)
			if now[queue] == nil {
				now[queue] = map[string]float64{}
			}
			now[queue][key] = m.GetCounter().GetValue()
		}
	}
	for queue, counts := range now {
		var attrs []any
		for _, key := range []string{"samples_retried", "samples_failed"} {
			if d := counts[key] - q.last[queue][key]; d > 0 {
				attrs = append(attrs, key, d)
			}
		}
		if warn && len(attrs) > 0 {
			q.logger.Warn("Remote write queue failing to send", append([]any{"remote_name", queue[0], "url", queue[1], "since", q.period}, attrs...)...)
		}
	}
	q.last = now
}

func queueOf(m *dto.Metric) [2]string {
	var q [2]string
	for _, lp := range m.GetLabel() {
		switch lp.GetName() {
		case "remote_name":
			q[0] = lp.GetValue()
		case "url":
			q[1] = lp.GetValue()
		}
	}
	return q
}
