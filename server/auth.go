package server

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/omen-sidecar/omen/internal/spaced"
	"github.com/omen-sidecar/omen/internal/trunc"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/exporter-toolkit/web"
	"go.yaml.in/yaml/v2"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/time/rate"
)

// WebConfig is an exporter-toolkit web configuration file (the format of
// Prometheus's --web.config.file: tls_server_config, http_server_config,
// basic_auth_users with bcrypt hashes, rate_limit).
//
// exporter-toolkit's own server puts basic auth in front of every path, but
// /-/healthy must answer without credentials (liveness probes carry none), so
// omen parses the same file with the toolkit's exported types, builds TLS with
// the toolkit's ConfigToTLSConfig and does the basic auth itself.
//
// Like the toolkit, the file is checked again on every request and every new
// TLS connection: a changed file (by size or modification time, or by its
// bytes, compared at most once a second: a password rotated into a file of
// the same size with its modification time kept, by `cp -p`, `rsync -t` or
// a coarse clock, was not seen) is re-read,
// so users, passwords and certificates change without a restart or
// /-/reload. Unlike the toolkit, a file that no longer loads keeps the last
// good configuration in force (logged once per change) rather than answering
// every request 500, and so does one that would turn basic auth or TLS off
// (see weakens). Switching TLS on needs a restart, as with the toolkit. It is
// safe for concurrent use.
type WebConfig struct {
	path   string
	logger *slog.Logger

	mu      sync.Mutex
	stamp   fileStamp
	sum     [sha256.Size]byte // of the bytes last read
	checked time.Time         // when they were
	cur     *loadedWebConfig
}

// webConfigRecheck is how often an unchanged-looking file's bytes are
// compared with those last read.
const webConfigRecheck = time.Second

type fileStamp struct {
	size    int64
	modTime time.Time
}

// loadedWebConfig is one version of the file with the passwords verified
// against it. The cache lives and dies with the version, so it is bounded by
// the number of configured users and a changed hash is never satisfied by a
// stale entry.
type loadedWebConfig struct {
	cfg *web.Config
	mu  sync.RWMutex
	// verified maps user to the HMAC of the password that last matched
	// the user's bcrypt hash.
	verified map[string][sha256.Size]byte
	// dummy is compared against when the user is unknown, so that an
	// unknown user costs as much as a wrong password and timing does not
	// tell which users exist. It has the highest cost among the users'
	// hashes (see dummyHash): at bcrypt's default of 10 beside a user's
	// 12, a wrong password took four times an unknown user's.
	dummyOnce sync.Once
	dummy     []byte
}

// dummyHash returns l's dummy hash, made on the first call (costing one
// bcrypt at the users' cost, once per version of the file).
func (l *loadedWebConfig) dummyHash() []byte {
	l.dummyOnce.Do(func() {
		cost := bcrypt.MinCost
		for _, h := range l.cfg.Users {
			if c, err := bcrypt.Cost([]byte(h)); err == nil && c > cost {
				cost = c
			}
		}
		// A random password no request can know; rand.Read does not fail.
		pw := make([]byte, 16)
		_, _ = rand.Read(pw)
		h, err := bcrypt.GenerateFromPassword(pw, cost)
		if err != nil { // the cost comes from hashes bcrypt read: in range
			h, _ = bcrypt.GenerateFromPassword(pw, bcrypt.DefaultCost)
		}
		l.dummy = h
	})
	return l.dummy
}

// LoadWebConfig validates the file with exporter-toolkit's own checks (bcrypt
// hashes, allowed headers, certificate and key) and loads it.
func LoadWebConfig(logger *slog.Logger, path string) (*WebConfig, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	c := &WebConfig{path: path, logger: logger}
	if _, err := c.get(); err != nil {
		return nil, err
	}
	return c, nil
}

// get returns the configuration in force, re-reading the file if it changed.
func (c *WebConfig) get() (*loadedWebConfig, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fi, err := os.Stat(c.path)
	if err != nil {
		if c.cur != nil {
			if c.stamp != (fileStamp{}) {
				c.logger.Error("Web configuration file unreadable; keeping the previous one", "file", c.path, "err", err)
				c.stamp = fileStamp{}
			}
			return c.cur, nil
		}
		return nil, fmt.Errorf("web config: %w", err)
	}
	st := fileStamp{size: fi.Size(), modTime: fi.ModTime()}
	now := time.Now()
	if c.cur != nil && st == c.stamp && now.Sub(c.checked) < webConfigRecheck {
		return c.cur, nil
	}
	b, err := os.ReadFile(c.path)
	if err != nil && c.cur != nil {
		return c.cur, nil // unreadable between the stat and the read: the next request looks again
	}
	sum := sha256.Sum256(b)
	c.checked = now
	if c.cur != nil && st == c.stamp && sum == c.sum {
		return c.cur, nil
	}
	c.stamp, c.sum = st, sum
	cfg, err := readWebConfig(c.path)
	if err == nil && c.cur != nil {
		err = weakens(c.cur.cfg, cfg)
	}
	if err != nil {
		if c.cur != nil {
			c.logger.Error("Web configuration file invalid; keeping the previous one", "file", c.path, "err", err)
			return c.cur, nil
		}
		return nil, err
	}
	if c.cur != nil {
		c.logger.Info("Web configuration file reloaded", "file", c.path)
	}
	c.cur = &loadedWebConfig{cfg: cfg, verified: make(map[string][sha256.Size]byte, len(cfg.Users))}
	return c.cur, nil
}

// weakens refuses, at runtime, a new version of the file that turns basic
// auth or TLS off. A file caught half-written (an editor truncates, then
// writes) reads as valid YAML with no users or no TLS, and adopting it would
// open the door until the write completes; turning either off takes a
// restart instead.
func weakens(old, cfg *web.Config) error {
	if len(old.Users) > 0 && len(cfg.Users) == 0 {
		return errors.New("basic_auth_users is now empty: turning authentication off needs a restart")
	}
	if old.TLSConfig.IsEnabled() && !cfg.TLSConfig.IsEnabled() {
		return errors.New("tls_server_config is now empty: turning TLS off needs a restart")
	}
	return nil
}

// readWebConfig reads the file as exporter-toolkit does (its defaults,
// strict YAML, relative paths against the file's directory) after the
// toolkit's Validate has accepted it.
func readWebConfig(path string) (*web.Config, error) {
	if err := web.Validate(path); err != nil {
		return nil, fmt.Errorf("web config %s: %w", path, err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("web config: %w", err)
	}
	cfg := &web.Config{
		TLSConfig:  web.TLSConfig{MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS13},
		HTTPConfig: web.HTTPConfig{HTTP2: true},
	}
	if err := yaml.UnmarshalStrict(b, cfg); err != nil {
		return nil, fmt.Errorf("web config %s: %w", path, err)
	}
	cfg.TLSConfig.SetDirectory(filepath.Dir(path))
	return cfg, nil
}

// TLSEnabled reports whether the file configures TLS.
func (c *WebConfig) TLSEnabled() bool {
	l, err := c.get()
	return err == nil && l.cfg.TLSConfig.IsEnabled()
}

// tlsConfig builds the server's TLS configuration with exporter-toolkit's
// ConfigToTLSConfig; it re-reads the file, and the toolkit the certificate
// and key, for every new connection.
func (c *WebConfig) tlsConfig() (*tls.Config, error) {
	l, err := c.get()
	if err != nil {
		return nil, err
	}
	cfg, err := web.ConfigToTLSConfig(&l.cfg.TLSConfig)
	if err != nil {
		return nil, fmt.Errorf("web config %s: %w", c.path, err)
	}
	cfg.NextProtos = []string{"http/1.1"}
	if l.cfg.HTTPConfig.HTTP2 {
		cfg.NextProtos = []string{"h2", "http/1.1"}
	}
	cfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		next, err := c.tlsConfig()
		if err != nil {
			c.logger.Error("Building TLS configuration for a new connection", "err", err)
		}
		return next, err
	}
	return cfg, nil
}

// BasicAuth is the authenticating middleware for a WebConfig.
type BasicAuth struct {
	conf     *WebConfig
	exempt   map[string]bool
	logger   *slog.Logger
	failures prometheus.Counter
	// macKey keys the HMAC under which verified passwords are cached, so
	// the cache holds neither plaintext nor a plain hash of a password.
	macKey [32]byte
	macs   sync.Pool // of hash.Hash, HMAC-SHA256 under macKey
	// bcryptMu runs one bcrypt comparison at a time: each costs tens of
	// milliseconds of CPU, and a flood of wrong passwords must not take
	// every core. Requests with a cached password never wait on it.
	bcryptMu sync.Mutex
	// limiter is the file's rate_limit, read once at start as the toolkit
	// does; nil when unset.
	limiter *rate.Limiter
	// refusedLog and limitedLog space the warnings about wrong
	// credentials (logRefused) and the rate limit (logLimited).
	refusedLog, limitedLog spaced.Log
}

// NewBasicAuth returns the middleware checking the basic_auth_users of conf
// on every path except the exempt ones (exact paths, such as /-/healthy).
func NewBasicAuth(logger *slog.Logger, reg prometheus.Registerer, conf *WebConfig, exempt ...string) (*BasicAuth, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	a := &BasicAuth{conf: conf, exempt: map[string]bool{}, logger: logger,
		failures: promauto.With(reg).NewCounter(prometheus.CounterOpts{
			Name: "omen_http_authentication_failures_total",
			Help: "HTTP requests refused with 401 because their basic-auth credentials were missing or wrong.",
		})}
	for _, p := range exempt {
		a.exempt[p] = true
	}
	if _, err := rand.Read(a.macKey[:]); err != nil {
		return nil, fmt.Errorf("basic auth: %w", err)
	}
	a.macs.New = func() any { return hmac.New(sha256.New, a.macKey[:]) }
	l, err := conf.get()
	if err != nil {
		return nil, err
	}
	if rl := l.cfg.RateLimiterConfig; rl.Interval != 0 {
		a.limiter = rate.NewLimiter(rate.Every(rl.Interval), rl.Burst)
		logger.Info("Rate limiter is enabled", "burst", rl.Burst, "interval", rl.Interval)
	}
	return a, nil
}

// Wrap returns h behind the configured headers, rate limit and basic auth.
func (a *BasicAuth) Wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l, err := a.conf.get()
		if err != nil {
			// Only before a first good load, which LoadWebConfig ensures.
			http.Error(w, "web configuration not loaded", http.StatusInternalServerError)
			return
		}
		exempt := a.exempt[r.URL.Path]
		if a.limiter != nil && !exempt && !a.limiter.Allow() {
			a.logLimited(r)
			http.Error(w, http.StatusText(http.StatusTooManyRequests), http.StatusTooManyRequests)
			return
		}
		for k, v := range l.cfg.HTTPConfig.Header {
			w.Header().Set(k, v)
		}
		if len(l.cfg.Users) == 0 || exempt || a.authenticated(l, r) {
			h.ServeHTTP(w, r)
			return
		}
		a.failures.Inc()
		a.logRefused(r)
		w.Header().Set("WWW-Authenticate", `Basic realm="omen", charset="UTF-8"`)
		http.Error(w, "401 Unauthorized: this endpoint needs basic-auth credentials", http.StatusUnauthorized)
	})
}

// refusedLogEvery spaces the warnings about requests refused for wrong
// credentials or over the rate limit.
const refusedLogEvery = time.Minute

// maxLoggedPath bounds the path a refusal's line names: the client chose
// it, up to the HTTP server's 1 MiB request line, and the rate_limit
// refuses before any credentials are asked.
const maxLoggedPath = 256

// loggedPath is r's path as the refusals log it, cut to maxLoggedPath
// bytes on a UTF-8 boundary.
func loggedPath(r *http.Request) string {
	return trunc.UTF8(r.URL.Path, maxLoggedPath)
}

// logRefused logs a request refused with a 401. One that came with
// credentials (a sender whose password was rotated, refused at every send
// and each batch lost) is a warning at most once per refusedLogEvery, with
// the count since: it was at debug alone, so nothing where an operator
// looks said why a sender failed. One without (a browser's request before
// its prompt) stays at debug. Neither the user name (often a mistyped
// password) nor anything else from the Authorization header is logged.
func (a *BasicAuth) logRefused(r *http.Request) {
	_, _, creds := r.BasicAuth()
	if creds {
		if n, warn := a.refusedLog.Note(refusedLogEvery); warn {
			a.logger.Warn("Request refused: wrong basic-auth user or password", "path", loggedPath(r), "remote", r.RemoteAddr,
				"refused_requests", n, "next_warning_in", refusedLogEvery)
			return
		}
	}
	if a.logger.Enabled(r.Context(), slog.LevelDebug) {
		a.logger.Debug("Unauthenticated request refused", "path", loggedPath(r), "remote", r.RemoteAddr, "credentials", creds)
	}
}

// logLimited logs a request refused with a 429 by the rate_limit: a
// sender that does not retry 429s (Prometheus by default, the
// OpenTelemetry Collector's exporter) drops its batch, and none was
// logged. A warning at most once per refusedLogEvery, with the count
// since; debug otherwise.
func (a *BasicAuth) logLimited(r *http.Request) {
	if n, warn := a.limitedLog.Note(refusedLogEvery); warn {
		a.logger.Warn("Request refused: over the web configuration's rate_limit (429)", "path", loggedPath(r), "remote", r.RemoteAddr,
			"refused_requests", n, "next_warning_in", refusedLogEvery)
		return
	}
	// Anyone reaching the port makes as many of these as it likes: their
	// arguments are boxed only when debug is on.
	if a.logger.Enabled(r.Context(), slog.LevelDebug) {
		a.logger.Debug("Request refused: over the web configuration's rate_limit (429)", "path", loggedPath(r), "remote", r.RemoteAddr)
	}
}

func (a *BasicAuth) authenticated(l *loadedWebConfig, r *http.Request) bool {
	user, pass, ok := r.BasicAuth()
	if !ok {
		return false
	}
	mac := a.macs.Get().(hash.Hash)
	mac.Reset()
	_, _ = io.WriteString(mac, pass)
	var sum [sha256.Size]byte
	mac.Sum(sum[:0])
	a.macs.Put(mac)

	hash, known := l.cfg.Users[user]
	if known {
		l.mu.RLock()
		cached, hit := l.verified[user]
		l.mu.RUnlock()
		if hit && hmac.Equal(cached[:], sum[:]) {
			return true
		}
	}
	a.bcryptMu.Lock()
	hb := []byte(hash)
	if !known {
		hb = l.dummyHash()
	}
	err := bcrypt.CompareHashAndPassword(hb, []byte(pass))
	a.bcryptMu.Unlock()
	if err != nil || !known {
		if err != nil && !errors.Is(err, bcrypt.ErrMismatchedHashAndPassword) {
			a.logger.Warn("Checking a basic-auth password", "err", err)
		}
		return false
	}
	l.mu.Lock()
	l.verified[user] = sum
	l.mu.Unlock()
	return true
}
