package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	config_util "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/storage/remote"
)

// Forwarding limits: a bounded queue, batches sent at this size or age,
// retries with exponential backoff for errors the client calls recoverable.
const (
	fwdQueue       = 100000
	fwdBatch       = 2000
	fwdFlushEvery  = 5 * time.Second
	fwdMaxAttempts = 8
	fwdMinBackoff  = 100 * time.Millisecond
	fwdMaxBackoff  = 10 * time.Second
)

type fwdSample struct {
	ls labels.Labels
	t  int64
	v  float64
}

// forwarder remote-writes the outputs upstream (Thanos Receive, Mimir,
// VictoriaMetrics) with the prometheus module's own write client.
type forwarder struct {
	logger  *slog.Logger
	clients []remote.WriteClient
	names   []string // the clients' URLs with any password masked, for metrics and logs
	queue   chan fwdSample
	sent    *prometheus.CounterVec
	failed  *prometheus.CounterVec
	dropped prometheus.Counter
}

func newForwarder(logger *slog.Logger, reg prometheus.Registerer, urls []string) (*forwarder, error) {
	f := &forwarder{logger: logger, queue: make(chan fwdSample, fwdQueue)}
	for i, u := range urls {
		pu, err := url.Parse(u)
		if err != nil || pu.Scheme == "" || pu.Host == "" {
			return nil, fmt.Errorf("remote-write URL %q: want an absolute http(s) URL", u)
		}
		c, err := remote.NewWriteClient(fmt.Sprintf("omen-%d", i), &remote.ClientConfig{
			URL:              &config_util.URL{URL: pu},
			Timeout:          model.Duration(30 * time.Second),
			HTTPClientConfig: config_util.DefaultHTTPClientConfig,
			RetryOnRateLimit: true,
		})
		if err != nil {
			return nil, fmt.Errorf("remote-write client for %s: %w", u, err)
		}
		f.clients = append(f.clients, c)
		f.names = append(f.names, pu.Redacted()) // a password in the URL works; it must not show
	}
	fa := promauto.With(reg)
	f.sent = fa.NewCounterVec(prometheus.CounterOpts{
		Name: "omen_remote_write_samples_sent_total", Help: "Output samples remote-written upstream, by endpoint.",
	}, []string{"url"})
	f.failed = fa.NewCounterVec(prometheus.CounterOpts{
		Name: "omen_remote_write_samples_failed_total", Help: "Output samples given up on after retries, by endpoint.",
	}, []string{"url"})
	f.dropped = fa.NewCounter(prometheus.CounterOpts{
		Name: "omen_remote_write_samples_dropped_total", Help: "Output samples dropped because the forwarding queue was full.",
	})
	return f, nil
}

// add queues a sample without blocking.
func (f *forwarder) add(ls labels.Labels, t int64, v float64) {
	select {
	case f.queue <- fwdSample{ls, t, v}:
	default:
		f.dropped.Inc()
	}
}

// fwdFinalTry bounds how long forwarding goes on once shutdown begins: the
// batch being sent or retried and what is queued get this long.
const fwdFinalTry = 5 * time.Second

func (f *forwarder) run(ctx context.Context) {
	tick := time.NewTicker(fwdFlushEvery)
	defer tick.Stop()
	buf := make([]fwdSample, 0, fwdBatch)
	// Sends do not stop the moment ctx does: a batch in flight or between
	// retries then had its last try cut short and was lost. They stop
	// fwdFinalTry after it, so an unreachable endpoint does not hold up
	// shutdown.
	sctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(fwdFinalTry, cancel) })
	defer stop()
	for {
		select {
		case s := <-f.queue:
			if buf = append(buf, s); len(buf) >= fwdBatch {
				f.flush(sctx, buf)
				buf = buf[:0]
			}
		case <-tick.C:
			if len(buf) > 0 {
				f.flush(sctx, buf)
				buf = buf[:0]
			}
		case <-ctx.Done():
			// One last try at what is queued, within fwdFinalTry.
			for {
				select {
				case s := <-f.queue:
					if buf = append(buf, s); len(buf) >= fwdBatch {
						f.flush(sctx, buf)
						buf = buf[:0]
					}
					continue
				default:
				}
				break
			}
			if len(buf) > 0 {
				f.flush(sctx, buf)
			}
			return
		}
	}
}

func (f *forwarder) flush(ctx context.Context, buf []fwdSample) {
	req := prompb.WriteRequest{Timeseries: make([]prompb.TimeSeries, 0, len(buf))}
	for _, s := range buf {
		ts := prompb.TimeSeries{Samples: []prompb.Sample{{Timestamp: s.t, Value: s.v}}}
		s.ls.Range(func(l labels.Label) { ts.Labels = append(ts.Labels, prompb.Label{Name: l.Name, Value: l.Value}) })
		req.Timeseries = append(req.Timeseries, ts)
	}
	raw, err := req.Marshal()
	if err != nil {
		f.logger.Error("Encoding remote write", "err", err)
		return
	}
	body := snappy.Encode(nil, raw)
	for i, c := range f.clients {
		if err := send(ctx, c, body); err != nil {
			f.failed.WithLabelValues(f.names[i]).Add(float64(len(buf)))
			f.logger.Warn("Remote write", "url", f.names[i], "err", err)
			continue
		}
		f.sent.WithLabelValues(f.names[i]).Add(float64(len(buf)))
	}
}

// send stores body, retrying recoverable errors with backoff.
func send(ctx context.Context, c remote.WriteClient, body []byte) error {
	backoff := fwdMinBackoff
	for attempt := 0; ; attempt++ {
		_, err := c.Store(ctx, body, attempt)
		var rec remote.RecoverableError
		if err == nil || !errors.As(err, &rec) || attempt+1 >= fwdMaxAttempts {
			return err
		}
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return ctx.Err()
		}
		backoff = min(2*backoff, fwdMaxBackoff)
	}
}
