package tsdb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/alecthomas/units"
	"github.com/grafana/regexp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/common/route"
	"github.com/prometheus/common/version"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/rules"
	"github.com/prometheus/prometheus/scrape"
	"github.com/prometheus/prometheus/util/features"
	"github.com/prometheus/prometheus/util/notifications"
	apiv1 "github.com/prometheus/prometheus/web/api/v1"
)

// APIOptions configure the query API.
type APIOptions struct {
	QueryTimeout       time.Duration
	MaxSamples         int
	LookbackDelta      time.Duration
	MaxConcurrent      int // concurrent remote-read requests
	RemoteReadMaxBytes int // bytes per streamed remote-read frame
	RemoteReadSamples  int // sample limit of a SAMPLES remote-read response
	ListenAddress      string
	// Flags are the command line's flags and their values, served at
	// /api/v1/status/flags as Prometheus serves its own.
	Flags map[string]string
	// EnableAdmin serves Prometheus's admin endpoints under
	// /api/v1/admin/tsdb/: snapshot (a consistent copy of the blocks and,
	// unless skip_head, the head, for backups), delete_series and
	// clean_tombstones. Off by default, as in Prometheus: they write to
	// the storage and need no more than the API's authentication.
	EnableAdmin bool
	// Reloaded reports the last configuration reload's outcome and when the
	// configuration in force was loaded, for /api/v1/status/runtimeinfo;
	// nil: a success at start.
	Reloaded func() (ok bool, at time.Time)
	// Config is what /api/v1/status/config shows, in Prometheus's format:
	// omen has no Prometheus configuration, but its remote_write is one;
	// nil: empty.
	Config func() config.Config
	// RetentionSize is --storage.tsdb.retention.size, for runtimeinfo.
	RetentionSize int64
	// Features collects the features the engine has, served at
	// /api/v1/features as Prometheus 3 does (nil: that endpoint lists
	// none; it answered 500).
	Features features.Collector
	// Tracker, if not nil, bounds the queries the engine runs at once
	// (NewQueryTracker).
	Tracker promql.QueryTracker
	// CORSOrigin is the fully anchored pattern of the origins allowed to
	// read the API from a browser (Prometheus's --web.cors.origin); nil:
	// none.
	CORSOrigin *regexp.Regexp
	// MaxNotificationsSubscribers bounds the streams of
	// /api/v1/notifications/live open at once (Prometheus's
	// --web.max-notifications-subscribers): past it a subscription is
	// answered 204 at once. Each stream holds a connection, one of
	// --web.max-connections, while its client stays.
	MaxNotificationsSubscribers int
	// StreamsDone, closed, ends the streams of /api/v1/notifications/live
	// (the server shuts down); nil: they end when their clients go.
	StreamsDone <-chan struct{}
}

// NewQueryTracker returns the tracker that bounds the queries the engine
// runs at once to max (Prometheus's --query.max-concurrency): beyond it a
// query waits for a slot until its timeout. It logs, at start, the queries
// that were running when the process last stopped (a query that crashed
// it), from the file queries.active in dir. Close it at shutdown: queries
// still running then keep its file mapped until the last of them ends.
func NewQueryTracker(logger *slog.Logger, dir string, max int) (*QueryTracker, error) {
	if logger == nil {
		logger = discard()
	}
	if max < 1 {
		return nil, fmt.Errorf("query concurrency %d: want at least 1", max)
	}
	t, err := promql.NewActiveQueryTracker(dir, max, logger.With("component", "activeQueryTracker"))
	if err != nil {
		return nil, err
	}
	return &QueryTracker{t: t, logger: logger}, nil
}

// errTrackerClosed is Insert's error after Close.
var errTrackerClosed = errors.New("query tracker closed: shutting down")

// QueryTracker is Prometheus's ActiveQueryTracker, whose Close waits for
// the queries it admitted. That one unmaps its file at Close, and a query
// still running (a shutdown whose requests outlived their wait after being
// cancelled) wrote its slot there at its end: SIGSEGV. Safe for
// concurrent use.
type QueryTracker struct {
	t       *promql.ActiveQueryTracker
	logger  *slog.Logger
	mu      sync.Mutex
	running int  // Inserts begun and not yet Deleted
	closing bool // Close was called: the last Delete closes t
}

// GetMaxConcurrent is the tracker's number of slots.
func (q *QueryTracker) GetMaxConcurrent() int { return q.t.GetMaxConcurrent() }

// Insert waits for a slot as ActiveQueryTracker's does; after Close it
// refuses the query. A wait that ctx ended says it waited for a slot, with
// ctx's error wrapped: the engine passes it on as it is, and a derived
// input's evaluation whose slots were all held by slow queries logged only
// "context deadline exceeded", which did not point at the limit.
func (q *QueryTracker) Insert(ctx context.Context, query string) (int, error) {
	q.mu.Lock()
	if q.closing {
		q.mu.Unlock()
		return 0, errTrackerClosed
	}
	q.running++
	q.mu.Unlock()
	i, err := q.t.Insert(ctx, query)
	if err != nil {
		q.done()
		return i, fmt.Errorf("waiting for a query slot, all %d of --query.max-concurrency busy: %w", q.t.GetMaxConcurrent(), err)
	}
	return i, nil
}

// Delete frees the slot of an admitted query.
func (q *QueryTracker) Delete(i int) {
	q.t.Delete(i)
	q.done()
}

func (q *QueryTracker) done() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.running--; q.running == 0 && q.closing {
		if err := q.t.Close(); err != nil {
			q.logger.Warn("Close the query tracker", "err", err)
		}
	}
}

// Close closes the tracker now or, with queries running, when the last of
// them ends (its error is then logged).
func (q *QueryTracker) Close() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closing {
		return nil
	}
	q.closing = true
	if q.running > 0 {
		return nil
	}
	return q.t.Close()
}

// DefaultAPIOptions are Prometheus's defaults.
func DefaultAPIOptions() APIOptions {
	return APIOptions{
		QueryTimeout: 2 * time.Minute, MaxSamples: 50000000, LookbackDelta: 5 * time.Minute,
		MaxConcurrent: 10, RemoteReadMaxBytes: 1048576, RemoteReadSamples: 50000000,
		MaxNotificationsSubscribers: 16,
	}
}

// NewEngine returns the PromQL engine used by the query API and by the
// pipeline's derived inputs.
func NewEngine(logger *slog.Logger, reg prometheus.Registerer, o APIOptions) *promql.Engine {
	if logger == nil {
		logger = discard()
	}
	return promql.NewEngine(promql.EngineOpts{
		Logger:               logger.With("component", "query engine"),
		Reg:                  reg,
		MaxSamples:           o.MaxSamples,
		Timeout:              o.QueryTimeout,
		LookbackDelta:        o.LookbackDelta,
		EnableAtModifier:     true,
		EnableNegativeOffset: true,
		// Unset, a subquery without a step (`x[1h:]`) dereferences nil.
		NoStepSubqueryIntervalFn: func(int64) int64 { return DefaultSubqueryStep.Milliseconds() },
		ActiveQueryTracker:       o.Tracker,
		FeatureRegistry:          o.Features,
	})
}

// NewAPI returns Prometheus's own HTTP API (query, query_range, series,
// labels, label values, metadata, status, remote read) over the embedded
// storage, mounted under /api/v1. Using Prometheus's implementation rather
// than a look-alike keeps its JSON shapes, error format and edge cases, so
// Grafana's Prometheus data source works unchanged.
//
// The scrape, rule and Alertmanager endpoints answer empty: omen has none.
// Remote write is served by WriteHandler, not by this API.
func NewAPI(logger *slog.Logger, reg prometheus.Registerer, gatherer prometheus.Gatherer, s *Storage, engine promql.QueryEngine, o APIOptions, ready func(http.HandlerFunc) http.HandlerFunc) http.Handler {
	if logger == nil {
		logger = discard()
	}
	if gatherer == nil {
		gatherer = prometheus.NewRegistry()
	}
	start := time.Now()
	flags := o.Flags
	if flags == nil {
		flags = map[string]string{}
	}
	promqlParser := parser.NewParser(parser.Options{})
	if o.MaxConcurrent <= 0 {
		// "No limit", as Prometheus's flag says; its read handler's gate
		// of 0 admitted no read at all.
		o.MaxConcurrent = 1 << 30
	}
	if o.Features == nil {
		o.Features = features.NewRegistry()
	}
	cwd, _ := os.Getwd()
	host, _ := os.Hostname()
	notes := notifications.NewNotifications(o.MaxNotificationsSubscribers, reg)
	api := apiv1.NewAPI(
		engine, budgetQueryable{s}, s, s,
		func(context.Context) apiv1.ScrapePoolsRetriever { return none{} },
		func(context.Context) apiv1.TargetRetriever { return none{} },
		func(context.Context) apiv1.AlertmanagerRetriever { return none{} },
		func() config.Config {
			if o.Config == nil {
				return config.Config{}
			}
			return o.Config()
		},
		flags,
		// Prometheus gives the external URL's host and scheme here
		// (web.go); the API reads them for one answer only, an active
		// target's globalUrl on /api/v1/targets, and omen has no targets
		// (none{}): nothing omen serves shows them, so the external URL,
		// computed only under --web.external-url or --web.route-prefix,
		// is not wanted here.
		apiv1.GlobalURLOptions{ListenAddress: o.ListenAddress, Host: o.ListenAddress, Scheme: "http"},
		ready,
		s,
		s.opts.Path,
		o.EnableAdmin,
		false, 0,
		logger.With("component", "api"),
		func(context.Context) apiv1.RulesRetriever { return none{} },
		o.RemoteReadSamples, o.MaxConcurrent, o.RemoteReadMaxBytes,
		false, // agent
		corsOrigin(o.CORSOrigin),
		func() (apiv1.RuntimeInfo, error) {
			ok, at := true, start
			if o.Reloaded != nil {
				ok, at = o.Reloaded()
			}
			return apiv1.RuntimeInfo{
				StartTime: start, CWD: cwd, Hostname: host, ServerTime: time.Now().UTC(),
				ReloadConfigSuccess: ok, LastConfigTime: at, GoroutineCount: runtime.NumGoroutine(),
				GOMAXPROCS: runtime.GOMAXPROCS(0), GOMEMLIMIT: debug.SetMemoryLimit(-1), GOGC: os.Getenv("GOGC"),
				StorageRetention: retention(retentionTime(s.opts.RetentionTime, o.RetentionSize), o.RetentionSize),
			}, nil
		},
		&apiv1.PrometheusVersion{
			Version: version.Version, Revision: version.Revision, Branch: version.Branch,
			BuildUser: version.BuildUser, BuildDate: version.BuildDate, GoVersion: version.GoVersion,
		},
		// None (omen has no rule manager or notifier), as an empty list:
		// Prometheus 3 answers "data":[], and null fails a client that
		// iterates it.
		// Prometheus's own list, which nothing adds to, gives both
		// (Get's copy is never nil). A live stream never sends, held
		// open as Prometheus 3's is with nothing to say: 200 (its
		// OpenAPI description's only answer), and 204 past
		// MaxNotificationsSubscribers, as Prometheus's. See endStreams
		// for its end.
		notes.Get, notes.Sub,
		gatherer, reg,
		nil,
		false, nil, // remote write receiver: WriteHandler serves it
		false, false, false,
		o.LookbackDelta,
		false, false,
		nil,
		o.Features,
		apiv1.OpenAPIOptions{Version: version.Version},
		promqlParser,
		false,
		o.QueryTimeout,
	)
	router := route.New()
	api.Register(router.WithPrefix("/api/v1"))
	return endStreams(limitAPIBody(guardRemoteRead(guardSubqueries(router, promqlParser, DefaultMaxSubquerySteps), o.RemoteReadSamples)), o.StreamsDone)
}

// endStreams ends the requests of /api/v1/notifications/live when done is
// closed: the stream's handler returns only when its request's context is
// done, and an http.Server's Shutdown waits for it, its whole grace for a
// browser tab left open.
func endStreams(h http.Handler, done <-chan struct{}) http.Handler {
	if done == nil {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "/notifications/live") {
			h.ServeHTTP(w, r)
			return
		}
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		go func() {
			select {
			case <-done:
				cancel()
			case <-ctx.Done():
			}
		}()
		h.ServeHTTP(w, r.WithContext(ctx))
	})
}

func corsOrigin(re *regexp.Regexp) *regexp.Regexp {
	if re == nil {
		return regexp.MustCompile(`^$`)
	}
	return re
}

// CompileCORSOrigin anchors a --web.cors.origin pattern as Prometheus does.
func CompileCORSOrigin(pattern string) (*regexp.Regexp, error) {
	re, err := regexp.Compile("^(?:" + pattern + ")$")
	if err != nil {
		return nil, fmt.Errorf("--web.cors.origin %q: %w", pattern, err)
	}
	return re, nil
}

// retention words the retention as Prometheus's runtimeinfo does: "15d",
// "10GiB", or "15d or 10GiB".
func retention(t time.Duration, size int64) string {
	var parts []string
	if t != 0 {
		parts = append(parts, model.Duration(t).String())
	}
	if size != 0 {
		parts = append(parts, units.Base2Bytes(size).String())
	}
	return strings.Join(parts, " or ")
}

// none answers the API's scrape, rule and Alertmanager questions: omen has
// no targets, rules or Alertmanagers of its own. The lists and maps that
// the API encodes as they are come back empty, not nil, as Prometheus's
// scrape manager returns them: nil went out as JSON null
// ("scrapePools":null, "droppedTargetCounts":null), which Prometheus 2.42
// answers as [] (and omits), and which a client iterating them fails on.
type none struct{}

func (none) ScrapePools() []string                                 { return []string{} }
func (none) TargetsActive() map[string][]*scrape.Target            { return nil }
func (none) TargetsDropped() map[string][]*scrape.Target           { return nil }
func (none) TargetsDroppedCounts() map[string]int                  { return map[string]int{} }
func (none) ScrapePoolConfig(string) (*config.ScrapeConfig, error) { return nil, nil }
func (none) Alertmanagers() []*url.URL                             { return nil }
func (none) DroppedAlertmanagers() []*url.URL                      { return nil }
func (none) RuleGroups() []*rules.Group                            { return nil }
func (none) AlertingRules() []*rules.AlertingRule                  { return nil }
