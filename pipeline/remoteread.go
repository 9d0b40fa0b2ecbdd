package pipeline

import (
	"fmt"
	"net/url"
	"reflect"

	"github.com/prometheus/client_golang/prometheus"
	promconfig "github.com/prometheus/prometheus/config"

	"github.com/omen-sidecar/omen/config"
	"github.com/omen-sidecar/omen/internal/promdefault"
)

// remoteRead returns the warm start's upstream under cfg: the
// configuration file's remote_read entry, which carries credentials, TLS
// and headers as Prometheus's does, or else --backfill.remote-read-url's;
// nil for none. Both may name the same upstream (the flag left in a pod
// spec while its credentials move to the file), and then the file's entry
// is used; two different upstreams are refused, as omen reads from one and
// neither could be said to win without surprising whoever set the other.
func (o *Options) remoteRead(cfg *config.Config) (*promconfig.RemoteReadConfig, error) {
	var file *promconfig.RemoteReadConfig
	if cfg != nil && len(cfg.RemoteRead) > 0 {
		file = cfg.RemoteRead[0]
	}
	if o.BackfillRemoteReadURL == "" {
		return file, nil
	}
	flag, err := URLReadConfig(o.BackfillRemoteReadURL)
	if err != nil {
		return nil, err
	}
	if file == nil {
		return flag, nil
	}
	if !sameUpstream(flag.URL.URL, file.URL.URL) {
		return nil, fmt.Errorf("remote_read url %s and --backfill.remote-read-url %s: two upstreams for the warm start; give one (the configuration file's remote_read takes credentials, TLS and headers)", file.URL.Redacted(), flag.URL.Redacted())
	}
	return file, nil
}

// nextUpstream returns the client to read from under cfg, or nil to keep
// the one in force (cfg's remote_read entry unchanged, secrets included:
// a password_file's content is read at each request anyway). An upstream
// added, removed or moved elsewhere is refused, the reload changing
// nothing: the warm-start readers start with omen, and the external
// labels learnt (ExtSetsFile) are the first upstream's.
func (p *Pipeline) nextUpstream(cfg *config.Config) (*rrUpstream, error) {
	rr, err := p.opts.remoteRead(cfg)
	if err != nil {
		return nil, err
	}
	switch {
	case p.bf == nil && rr == nil:
		return nil, nil
	case p.bf == nil:
		return nil, fmt.Errorf("remote_read %s: an upstream for the warm start given by a reload takes a restart", rr.URL.Redacted())
	case rr == nil:
		return nil, fmt.Errorf("remote_read: the warm start's upstream %s removed by a reload takes a restart", p.bf.up().url.Redacted())
	}
	cur := p.bf.up()
	if reflect.DeepEqual(cur.cfg, rr) {
		return nil, nil
	}
	if !sameUpstream(cur.url, rr.URL.URL) {
		return nil, fmt.Errorf("remote_read url %s: the warm start's upstream (%s) moved elsewhere by a reload takes a restart", rr.URL.Redacted(), cur.url.Redacted())
	}
	return newUpstream(rr)
}

// sameUpstream reports whether a and b name the same upstream: compared
// without their user information, as a flag's user:pass@ and a file's
// basic_auth are the same upstream's.
func sameUpstream(a, b *url.URL) bool {
	x, y := *a, *b
	x.User, y.User = nil, nil
	return x.String() == y.String()
}

// CheckUpstream fails where a start would fail on the remote_read entries
// rrs: the client cannot be made (a tls_config file missing or not a
// certificate). Secret files are read at each request, as in Prometheus,
// so a start does not look at them; `omen check config` does.
func CheckUpstream(rrs []*promconfig.RemoteReadConfig) error {
	for i, rr := range rrs {
		if _, err := newUpstream(rr); err != nil {
			return fmt.Errorf("remote_read[%d]: %w", i, err)
		}
	}
	return nil
}

// readClientMetrics are probes of the metrics of the module's remote-read
// client, which the warm start's upstream is read with: the module
// registers them on client_golang's default registry (in an init), and
// its client takes no registerer. Their names, help and labels are the
// module's (storage/remote/client.go), which a probe must match to be
// handed the module's collector (see promdefault.Adopt).
func readClientMetrics() []prometheus.Collector {
	const ns, sub = "prometheus", "remote_read_client"
	return []prometheus.Collector{
		prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "queries_total",
			Help: "The total number of remote read queries."},
			[]string{"remote_name", "url", "response_type", "code"}),
		prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "queries",
			Help: "The number of in-flight remote read queries."},
			[]string{"remote_name", "url"}),
		prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "request_duration_seconds",
			Help: "Histogram of the latency for remote read requests. Note that for streamed responses this is only the duration of the initial call and does not include the processing of the stream."},
			[]string{"remote_name", "url", "response_type"}),
	}
}

// adoptReadClientMetrics puts the module's remote-read client metrics on
// reg, as they are on Prometheus's /metrics: from the start, whether or
// not an upstream is configured (a reload may add one), each series there
// once a client of its upstream is made.
func adoptReadClientMetrics(reg prometheus.Registerer) error {
	for _, probe := range readClientMetrics() {
		if _, err := promdefault.Adopt(reg, probe); err != nil {
			return err
		}
	}
	return nil
}
