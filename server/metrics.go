package server

import (
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
)

// MetricsHandler serves /metrics in the text format 0.0.4: the families g
// gathers, then whatever stream writes (families that are too many to build
// as client_golang metrics per scrape; their names must not be among g's).
// It gzips when the scraper accepts it (q-values read), as promhttp does,
// and says the answer varies with Accept-Encoding.
//
// Prometheus always asks for gzip, and at 100k scored series a scrape is
// ~700k lines, ~140 MB of text: compress/gzip's default level took 1.8 s of
// CPU for it, more than writing the text. klauspost/compress (already in
// the module graph through Prometheus) at its fastest level takes 0.32 s
// for a stream ~45% larger (24 against 17 MB), which a scrape within a
// cluster carries easily; the writers are pooled, as each holds ~1 MB.
func MetricsHandler(logger *slog.Logger, g prometheus.Gatherer, stream func(io.Writer) error) http.Handler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	format := expfmt.NewFormat(expfmt.TypeTextPlain)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mfs, err := g.Gather()
		if err != nil && len(mfs) == 0 {
			http.Error(w, "gather metrics: "+err.Error(), http.StatusInternalServerError)
			return
		}
		if err != nil {
			// As promhttp's ContinueOnError: serve what was gathered.
			logger.Warn("Gathering metrics", "err", err)
		}
		h := w.Header()
		h.Set("Content-Type", string(format))
		var out io.Writer = w
		h.Add("Vary", "Accept-Encoding")
		if acceptsGzip(r.Header.Values("Accept-Encoding")) {
			h.Set("Content-Encoding", "gzip")
			gz := gzipWriters.Get().(*gzip.Writer)
			gz.Reset(w)
			defer func() {
				if err := gz.Close(); err != nil {
					logger.Debug("Writing metrics", "err", err)
				}
				gzipWriters.Put(gz)
			}()
			out = gz
		}
		enc := expfmt.NewEncoder(out, format)
		for _, mf := range mfs {
			if err := enc.Encode(mf); err != nil {
				logger.Debug("Writing metrics", "err", err)
				return
			}
		}
		if stream != nil {
			if err := stream(out); err != nil {
				logger.Debug("Writing metrics", "err", err)
			}
		}
	})
}

// gzipWriters holds gzip writers at the fastest level between scrapes.
var gzipWriters = sync.Pool{New: func() any {
	gz, err := gzip.NewWriterLevel(nil, gzip.BestSpeed)
	if err != nil {
		panic(err) // BestSpeed is a valid level
	}
	return gz
}}

// acceptsGzip reports whether the Accept-Encoding header values allow gzip:
// named, or covered by "*", with a q-value above 0 (RFC 9110, 12.5.3), as
// promhttp's negotiation reads them. "gzip;q=0" refuses it.
func acceptsGzip(values []string) bool {
	gzipQ, starQ := -1.0, -1.0
	for _, v := range values {
		for _, part := range strings.Split(v, ",") {
			name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
			q := 1.0
			for _, p := range strings.Split(params, ";") {
				k, val, ok := strings.Cut(strings.TrimSpace(p), "=")
				if ok && strings.EqualFold(strings.TrimSpace(k), "q") {
					if f, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil {
						q = f
					}
				}
			}
			switch strings.ToLower(strings.TrimSpace(name)) {
			case "gzip", "x-gzip":
				gzipQ = max(gzipQ, q)
			case "*":
				starQ = max(starQ, q)
			}
		}
	}
	if gzipQ >= 0 {
		return gzipQ > 0
	}
	return starQ > 0
}
