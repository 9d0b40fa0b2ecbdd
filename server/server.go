// Package server assembles omen's HTTP surface: the lifecycle endpoints
// (/-/healthy, /-/ready, /-/reload), /metrics, remote write and read, the
// query API and whatever other components register, each instrumented with
// request metrics.
package server

import (
	"fmt"
	"net/http"
	"net/http/pprof"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"

	gregexp "github.com/grafana/regexp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/prometheus/util/httputil"
)

// Mux is an http.ServeMux whose handlers are instrumented by name.
type Mux struct {
	mux      *http.ServeMux
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// NewMux returns a Mux with request metrics registered on reg.
func NewMux(reg prometheus.Registerer) *Mux {
	f := promauto.With(reg)
	return &Mux{
		mux: http.NewServeMux(),
		requests: f.NewCounterVec(prometheus.CounterOpts{
			Name: "omen_http_requests_total",
			Help: "HTTP requests by handler and status code.",
		}, []string{"handler", "code"}),
		duration: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "omen_http_request_duration_seconds",
			Help:    "HTTP request latency by handler.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"handler"}),
	}
}

// Handle registers h for pattern (http.ServeMux syntax), instrumented under
// the handler label name.
func (m *Mux) Handle(pattern, name string, h http.Handler) {
	m.mux.Handle(pattern, m.instrument(name, h))
}

// instrument counts and times h's requests under the handler label name.
func (m *Mux) instrument(name string, h http.Handler) http.Handler {
	l := prometheus.Labels{"handler": name}
	return promhttp.InstrumentHandlerCounter(m.requests.MustCurryWith(l),
		promhttp.InstrumentHandlerDuration(m.duration.MustCurryWith(l), h))
}

// HandleAPI registers the query API h for pattern (which ends in a slash),
// instrumented under the handler label of each request's route, as
// Prometheus labels its own (/api/v1/query, /api/v1/read,
// /api/v1/label/:name/values): one label for the whole API lumped remote
// read together with Grafana's queries. The routes are a fixed set
// (APIRoutes); any other path is counted as pattern+"other".
func (m *Mux) HandleAPI(pattern string, h http.Handler) {
	byName := map[string]http.Handler{}
	for _, r := range append(APIRoutes[:len(APIRoutes):len(APIRoutes)], "other") {
		byName[pattern+r] = m.instrument(pattern+r, h)
	}
	m.mux.Handle(pattern, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		byName[pattern+apiRoute(strings.TrimPrefix(r.URL.Path, pattern))].ServeHTTP(w, r)
	}))
}

// APIRoutes are the routes of Prometheus's HTTP API (v1) below its prefix,
// with :name for a path parameter.
var APIRoutes = []string{
	"query", "query_range", "query_exemplars", "query_cost", "query_range_cost", "format_query", "parse_query",
	"series", "labels", "label/:name/values", "search/label_names", "search/label_values", "search/metric_names",
	"read", "metadata", "targets", "targets/metadata", "targets/relabel_steps", "scrape_pools", "scrape_pools/config",
	"rules", "alerts", "alertmanagers", "notifications", "notifications/live", "features", "openapi.yaml",
	"status/config", "status/flags", "status/runtimeinfo", "status/buildinfo", "status/tsdb",
	"status/tsdb/blocks", "status/walreplay", "status/self_metrics",
	"admin/tsdb/snapshot", "admin/tsdb/delete_series", "admin/tsdb/clean_tombstones",
}

// apiRoute names the route of an API path below its prefix: one of
// APIRoutes, or "other".
func apiRoute(p string) string {
	if name, ok := strings.CutPrefix(p, "label/"); ok && strings.HasSuffix(name, "/values") {
		return "label/:name/values"
	}
	for _, r := range APIRoutes {
		if p == r {
			return r
		}
	}
	return "other"
}

// HandleFunc is Handle for a function.
func (m *Mux) HandleFunc(pattern, name string, h http.HandlerFunc) { m.Handle(pattern, name, h) }

// HandlePprof mounts the Go profiler under /debug/pprof/.
func (m *Mux) HandlePprof() {
	m.mux.HandleFunc("/debug/pprof/", pprof.Index)
	m.mux.HandleFunc("/debug/pprof/cmdline", cmdline)
	m.mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	m.mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	m.mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
}

// cmdline is pprof.Cmdline with the passwords of URLs in the arguments
// hidden, as /api/v1/status/flags hides them.
func cmdline(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	args := make([]string, len(os.Args))
	for i, a := range os.Args {
		args[i] = RedactURLs(a)
	}
	_, _ = fmt.Fprint(w, strings.Join(args, "\x00"))
}

// urlToken matches what may be a URL with userinfo within a longer text.
// Commas are part of it: a password may hold one (url.Parse takes it), and
// a comma-separated list of URLs then reads as one token, whose userinfo
// runs to the last "@": masked whole, nothing shown.
var urlToken = regexp.MustCompile(`[a-zA-Z][a-zA-Z0-9+.-]*://[^\s\[\]]*@[^\s\[\]]*`)

// RedactURLs replaces the password of every URL in s as url.URL.Redacted
// does (net/url takes the userinfo up to the last "@", so a password may
// hold "@"); a token that does not parse is masked from "://" to its last
// "@".
func RedactURLs(s string) string {
	return urlToken.ReplaceAllStringFunc(s, func(tok string) string {
		if u, err := url.Parse(tok); err == nil && u.User != nil {
			return u.Redacted()
		}
		i, j := strings.Index(tok, "://"), strings.LastIndex(tok, "@")
		return tok[:i+3] + "xxxxx" + tok[j:]
	})
}

func (m *Mux) ServeHTTP(w http.ResponseWriter, r *http.Request) { m.mux.ServeHTTP(w, r) }

// notReady is the answer while the TSDB replays its WAL, the models are
// restored, or storage is failing.
const notReady = "omen is not ready: storage is opening or failing, or model state is being restored."

// Lifecycle serves /-/healthy, /-/ready, /-/reload and /-/quit.
type Lifecycle struct {
	Ready  func() bool
	Reload func() error
	// Quit starts a graceful shutdown, as SIGTERM does.
	Quit func()
	// Enabled: /-/reload reloads and /-/quit quits
	// (--web.enable-lifecycle); otherwise they answer 403, as
	// Prometheus's do, so that whoever reaches the port cannot reload the
	// configuration or stop omen unless asked for. SIGHUP always reloads.
	Enabled bool
}

// Register mounts the lifecycle endpoints on m.
func (lc Lifecycle) Register(m *Mux) {
	// GET (and HEAD) only, as in Prometheus: the mux answers 405 to the
	// rest.
	m.HandleFunc("GET /-/healthy", "/-/healthy", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("omen is Healthy.\n"))
	})
	m.HandleFunc("GET /-/ready", "/-/ready", func(w http.ResponseWriter, r *http.Request) {
		if !lc.Ready() {
			http.Error(w, notReady, http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("omen is Ready.\n"))
	})
	m.HandleFunc("/-/reload", "/-/reload", lc.action("reload", lc.Reload != nil, func(w http.ResponseWriter) {
		if err := lc.Reload(); err != nil {
			http.Error(w, "failed to reload config: "+err.Error(), http.StatusInternalServerError)
			return
		}
		_, _ = w.Write([]byte("config reloaded\n"))
	}))
	m.HandleFunc("/-/quit", "/-/quit", lc.action("quit", lc.Quit != nil, func(w http.ResponseWriter) {
		_, _ = w.Write([]byte("Requesting termination... Goodbye!\n"))
		lc.Quit()
	}))
}

// action serves a lifecycle endpoint that acts: POST or PUT only, and 403
// unless the lifecycle API is enabled and the action wired (can).
func (lc Lifecycle) action(verb string, can bool, do func(http.ResponseWriter)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost && r.Method != http.MethodPut {
			w.Header().Set("Allow", "POST, PUT")
			http.Error(w, "use POST or PUT to "+verb, http.StatusMethodNotAllowed)
			return
		}
		if !lc.Enabled || !can {
			http.Error(w, "Lifecycle API is not enabled.", http.StatusForbidden)
			return
		}
		do(w)
	}
}

// RequireReady wraps h so that it answers 503 until ready() holds, as
// Prometheus's API does while its TSDB opens.
func RequireReady(ready func() bool) func(http.HandlerFunc) http.HandlerFunc {
	return func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if !ready() {
				w.Header().Set("Retry-After", "5")
				http.Error(w, notReady, http.StatusServiceUnavailable)
				return
			}
			h(w, r)
		}
	}
}

// APIEndpoint serves h as Prometheus serves its API's endpoints: with the
// CORS headers the origins cors allows get (--web.cors.origin), 204 with
// them to a browser's preflight OPTIONS, and 405 with Allow to a method
// other than methods. (omen's own endpoints beside Prometheus's API had no
// CORS headers, so a Grafana panel or a page elsewhere could not read
// them, and answered OPTIONS and DELETE with their GET's body.)
func APIEndpoint(cors *gregexp.Regexp, h http.Handler, methods ...string) http.Handler {
	allow := strings.Join(append(slices.Clone(methods), http.MethodOptions), ", ")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if cors != nil {
			httputil.SetCORS(w, cors, r)
		}
		switch {
		case r.Method == http.MethodOptions:
			w.WriteHeader(http.StatusNoContent)
		case !slices.Contains(methods, r.Method):
			w.Header().Set("Allow", allow)
			http.Error(w, http.StatusText(http.StatusMethodNotAllowed), http.StatusMethodNotAllowed)
		default:
			h.ServeHTTP(w, r)
		}
	})
}
