package server

import (
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/omen-sidecar/omen/config"
)

// ConfigLoader holds the configuration in force and re-reads it on
// /-/reload or SIGHUP. A file that does not load keeps the old
// configuration, and the error says why.
type ConfigLoader struct {
	logger *slog.Logger
	path   string
	// reloading serialises reloads; mu guards what readers see, and is
	// held only to swap it: a listener may take long (a remote-write queue
	// that changed flushes to a dead upstream for up to the flush
	// deadline), and /api/v1/status/config and runtimeinfo waited for it.
	reloading sync.Mutex
	mu        sync.RWMutex
	cfg       *config.Config
	listeners []func(*config.Config) error
	success   prometheus.Gauge
	successTS prometheus.Gauge
	now       func() time.Time
	lastOK    bool      // the last attempt's outcome
	loadedAt  time.Time // when cfg was loaded
}

// NewConfigLoader loads path (or the default config when path is empty).
func NewConfigLoader(logger *slog.Logger, reg prometheus.Registerer, path string) (*ConfigLoader, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	f := promauto.With(reg)
	l := &ConfigLoader{
		logger: logger, path: path, now: time.Now,
		success: f.NewGauge(prometheus.GaugeOpts{
			Name: "omen_config_last_reload_successful",
			Help: "Whether the last configuration reload attempt was successful.",
		}),
		successTS: f.NewGauge(prometheus.GaugeOpts{
			Name: "omen_config_last_reload_success_timestamp_seconds",
			Help: "Timestamp of the last successful configuration reload.",
		}),
	}
	cfg, err := l.load()
	if err != nil {
		return nil, err
	}
	l.cfg, l.lastOK, l.loadedAt = cfg, true, l.now()
	l.success.Set(1)
	l.successTS.Set(float64(l.loadedAt.Unix()))
	// Said at start as Prometheus says it ("Completed loading of
	// configuration file"): only reloads were logged, and an operator
	// could not tell from the logs which file, if any, omen started on.
	if path == "" {
		logger.Info("No configuration file (--config.file); scoring every series with the defaults")
	} else {
		logger.Info("Configuration loaded", append([]any{"file", path}, summary(cfg)...)...)
	}
	return l, nil
}

// summary gives the counts of what cfg configures, for the log lines that
// say it was loaded.
func summary(cfg *config.Config) []any {
	return []any{
		"include", len(cfg.Include), "exclude", len(cfg.Exclude), "overrides", len(cfg.Overrides),
		"derived", len(cfg.Derived), "remote_write", len(cfg.RemoteWrite), "remote_read", len(cfg.RemoteRead),
	}
}

func (l *ConfigLoader) load() (*config.Config, error) {
	if l.path == "" {
		return config.Default(), nil
	}
	return config.LoadFile(l.path)
}

// Config returns the configuration in force.
func (l *ConfigLoader) Config() *config.Config {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.cfg
}

// Reloaded reports whether the last load succeeded and when the
// configuration in force was loaded, as Prometheus's runtime information.
func (l *ConfigLoader) Reloaded() (ok bool, at time.Time) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.lastOK, l.loadedAt
}

// OnReload registers fn to be given every newly loaded configuration. An
// error from fn fails the reload and keeps the previous configuration, but
// the listeners are called in turn and one that failed does not undo those
// before it: a reload that must change nothing when it fails registers one
// listener that checks everything before it applies anything (see
// cmd/omen's reloadListener).
func (l *ConfigLoader) OnReload(fn func(*config.Config) error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.listeners = append(l.listeners, fn)
}

// Apply calls fn with the configuration in force, between reloads: a
// component that takes its first configuration while reloads may already
// run (the forwarding log, opened once the server answers) would otherwise
// apply a configuration older than a reload's that it raced.
func (l *ConfigLoader) Apply(fn func(*config.Config) error) error {
	l.reloading.Lock()
	defer l.reloading.Unlock()
	return fn(l.Config())
}

// Reload re-reads the file and applies it.
func (l *ConfigLoader) Reload() error {
	l.reloading.Lock()
	defer l.reloading.Unlock()
	l.mu.RLock()
	listeners := l.listeners
	l.mu.RUnlock()
	cfg, err := l.load()
	if err == nil {
		for _, fn := range listeners {
			if err = fn(cfg); err != nil {
				err = fmt.Errorf("apply config: %w", err)
				break
			}
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.lastOK = false
		l.success.Set(0)
		l.logger.Error("Configuration reload failed; keeping the previous configuration", "file", l.path, "err", err)
		return err
	}
	l.cfg, l.lastOK, l.loadedAt = cfg, true, l.now()
	l.success.Set(1)
	l.successTS.Set(float64(l.loadedAt.Unix()))
	l.logger.Info("Configuration reloaded", append([]any{"file", l.path}, summary(cfg)...)...)
	return nil
}
