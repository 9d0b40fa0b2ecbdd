package server

import (
	"compress/gzip"
	"io"
	"log/slog"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
)

// MetricsHandler serves /metrics in the text format 0.0.4: the families g
// gathers, then whatever stream writes (families that are too many to build
// as client_golang metrics per scrape; their names must not be among g's).
// It gzips when the scraper accepts it, as promhttp does.
func MetricsHandler(logger *slog.Logger, g prometheus.Gatherer, stream func(io.Writer) error) http.Handler {
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
		if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			h.Set("Content-Encoding", "gzip")
			gz := gzip.NewWriter(w)
			defer gz.Close()
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
