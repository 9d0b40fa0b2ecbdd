// Package web serves omen's built-in page: the anomalies now, a chart of one
// series with its expected band, forecast cone and score, and omen's status.
//
// The page is static HTML, CSS and JavaScript embedded in the binary, with
// uPlot vendored from npm by scripts/build-ui.sh; nothing is fetched from
// elsewhere. It reads omen's own HTTP API (/api/v1/anomalies, /api/v1/query,
// /api/v1/query_range, /api/v1/labels, /api/v1/status/omen) through URLs
// relative to the page, so it keeps working when the server is mounted under a
// route prefix.
package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"time"
)

// StaticPrefix is the path under which the page's assets are served.
const StaticPrefix = "/ui/static/"

//go:embed static
var staticFS embed.FS

// Options configures the page.
type Options struct {
	// RefreshInterval is how often the page reloads the anomaly list and the
	// status panel.
	RefreshInterval time.Duration
	// Range is the time range the series chart opens with.
	Range time.Duration
}

// DefaultOptions returns the options New uses for zero fields.
func DefaultOptions() Options {
	return Options{RefreshInterval: 15 * time.Second, Range: 3 * time.Hour}
}

func (o *Options) validate() error {
	d := DefaultOptions()
	if o.RefreshInterval == 0 {
		o.RefreshInterval = d.RefreshInterval
	}
	if o.Range == 0 {
		o.Range = d.Range
	}
	if o.RefreshInterval < time.Second {
		return fmt.Errorf("refresh interval %s: must be at least 1s", o.RefreshInterval)
	}
	if o.Range < time.Minute {
		return fmt.Errorf("range %s: must be at least 1m", o.Range)
	}
	return nil
}

// New returns the handler for the page at "/" and its assets under
// StaticPrefix. Every other path is a 404, so the caller may mount it as the
// fallback of its mux. A nil logger discards.
func New(logger *slog.Logger, opts Options) (http.Handler, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if err := opts.validate(); err != nil {
		return nil, fmt.Errorf("web options: %w", err)
	}
	static, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, fmt.Errorf("open embedded assets: %w", err)
	}
	etags, err := hashFiles(static)
	if err != nil {
		return nil, err
	}
	index, err := renderIndex(static, opts, etags)
	if err != nil {
		return nil, err
	}

	mux := http.NewServeMux()
	files := http.StripPrefix(StaticPrefix, http.FileServerFS(static))
	mux.HandleFunc("GET "+StaticPrefix, func(w http.ResponseWriter, r *http.Request) {
		name := r.URL.Path[len(StaticPrefix):]
		tag, ok := etags[name]
		if !ok || name == "index.html" {
			// Directory listings, unknown files and the page's raw template.
			http.NotFound(w, r)
			return
		}
		setSecurityHeaders(w.Header())
		// Embedded files have no modification time; the content hash lets
		// browsers revalidate cheaply instead.
		w.Header().Set("ETag", tag)
		w.Header().Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		setSecurityHeaders(h)
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Cache-Control", "no-cache")
		if _, err := w.Write(index); err != nil {
			logger.Debug("write page", "err", err)
		}
	})
	return mux, nil
}

// setSecurityHeaders forbids anything the page does not load from omen itself.
// uPlot sets element styles from script, hence 'unsafe-inline' for styles only.
func setSecurityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
}

// hashFiles returns a strong ETag for every regular file in fsys, keyed by
// its slash-separated path.
func hashFiles(fsys fs.FS) (map[string]string, error) {
	tags := map[string]string{}
	err := fs.WalkDir(fsys, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(fsys, path)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		tags[path] = `"` + hex.EncodeToString(sum[:8]) + `"`
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("hash embedded assets: %w", err)
	}
	return tags, nil
}

// renderIndex fills the page template once: its inputs never change while
// the process runs.
func renderIndex(fsys fs.FS, opts Options, etags map[string]string) ([]byte, error) {
	tmpl, err := template.ParseFS(fsys, "index.html")
	if err != nil {
		return nil, fmt.Errorf("parse page template: %w", err)
	}
	asset := func(name string) (string, error) {
		tag, ok := etags[name]
		if !ok {
			return "", errors.New("no embedded asset " + name)
		}
		// Relative to the page, with the content hash so a new binary's
		// assets are never mixed with an old cached page.
		return StaticPrefix[1:] + name + "?v=" + tag[1:len(tag)-1], nil
	}
	var buf bytes.Buffer
	err = tmpl.Execute(&buf, struct {
		RefreshMillis int64
		RangeSeconds  int64
		Asset         func(string) (string, error)
	}{opts.RefreshInterval.Milliseconds(), int64(opts.Range / time.Second), asset})
	if err != nil {
		return nil, fmt.Errorf("render page: %w", err)
	}
	return buf.Bytes(), nil
}
