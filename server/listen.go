package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/omen-sidecar/omen/internal/spaced"
)

// HealthyPath answers without credentials: liveness probes carry none.
const HealthyPath = "/-/healthy"

// Listeners are srv's listening sockets, ready to serve.
type Listeners struct {
	logger *slog.Logger
	srv    *http.Server
	ls     []net.Listener
	tls    bool
	auth   bool
}

// Listen prepares srv to serve on every address in addrs and opens them.
// With a web configuration file (exporter-toolkit format; see WebConfig)
// srv serves TLS if the file configures it and asks for basic auth on every
// path but /-/healthy if the file lists users (paths below the route
// prefix, when srv.Handler is later wrapped by WithRoutePrefix); with webConfigFile "" it
// serves plain HTTP without authentication. A bad file or an address in use
// is an error here, before anything else starts (a replay of the WAL
// first, then the error, repeated by every restart of a crash loop). With
// maxConns > 0, at most that many connections are open at once across all
// the listeners, as Prometheus's --web.max-connections: one more waits to
// be accepted until another closes, where a flood of them took every file
// descriptor.
func Listen(logger *slog.Logger, reg prometheus.Registerer, srv *http.Server, addrs []string, webConfigFile string, maxConns int) (*Listeners, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if len(addrs) == 0 {
		return nil, errors.New("no listen address")
	}
	if srv.ErrorLog == nil {
		// The server's own errors (TLS handshakes that fail, for a client
		// without the CA or speaking plain HTTP) go to omen's log, not to
		// stderr in another format; the failed client connections spaced
		// (see connErrorSpacer).
		srv.ErrorLog = slog.NewLogLogger(&connErrorSpacer{Handler: logger.With("component", "http").Handler()}, slog.LevelWarn)
	}
	// The http server's own messages are component=http (set above);
	// omen's about its listeners and their authentication are the web
	// server's, component=web as Prometheus's.
	logger = logger.With("component", "web")
	var conf *WebConfig
	if webConfigFile != "" {
		var err error
		if conf, err = LoadWebConfig(logger, webConfigFile); err != nil {
			return nil, err
		}
		auth, err := NewBasicAuth(logger, reg, conf, HealthyPath)
		if err != nil {
			return nil, err
		}
		srv.Handler = auth.Wrap(srv.Handler)
	}
	useTLS := conf != nil && conf.TLSEnabled()
	if useTLS {
		cfg, err := conf.tlsConfig()
		if err != nil {
			return nil, err
		}
		if l, _ := conf.get(); l != nil && !l.cfg.HTTPConfig.HTTP2 {
			srv.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){}
		}
		srv.TLSConfig = cfg
	}

	out := &Listeners{logger: logger, srv: srv, tls: useTLS, auth: conf != nil && hasUsers(conf)}
	var slots chan struct{}
	if maxConns > 0 {
		slots = make(chan struct{}, maxConns)
	}
	for _, a := range addrs {
		l, err := net.Listen("tcp", a)
		if err != nil {
			out.Close()
			return nil, fmt.Errorf("listen on %s: %w", a, err)
		}
		if slots != nil {
			l = &limitListener{Listener: l, slots: slots, done: make(chan struct{})}
		}
		out.ls = append(out.ls, l)
	}
	return out, nil
}

// Close closes the listeners (when Serve is never called).
func (ls *Listeners) Close() {
	for _, l := range ls.ls {
		_ = l.Close()
	}
}

// TLS reports whether the listeners serve TLS (the web configuration's
// tls_server_config), for the default external URL's scheme.
func (ls *Listeners) TLS() bool { return ls.tls }

// Serve serves until the server is shut down, when it returns
// http.ErrServerClosed.
func (ls *Listeners) Serve() error {
	errc := make(chan error, len(ls.ls))
	for _, l := range ls.ls {
		ls.logger.Info("Listening on", "address", l.Addr().String(), "tls", ls.tls, "basic_auth", ls.auth)
		go func() {
			if ls.tls {
				errc <- ls.srv.ServeTLS(l, "", "")
				return
			}
			errc <- ls.srv.Serve(l)
		}()
	}
	// The first to stop decides; on shutdown, all return ErrServerClosed.
	return <-errc
}

// connErrorLogEvery spaces the warnings about each kind of client
// connection that failed (see connErrorSpacer).
const connErrorLogEvery = time.Minute

// connErrorKinds are the HTTP server's messages that any client causes at
// will, one a connection, by their start: a failed TLS handshake (a load
// balancer's or a tcpSocket probe's connect-and-close, a port scanner, a
// client speaking plain HTTP) and an HTTP/2 connection that breaks the
// protocol (a bad preface, no SETTINGS in time, a bad frame).
var connErrorKinds = [...]string{"http: TLS handshake error", "http2: server", "timeout waiting for SETTINGS"}

// connErrorSpacer is the handler of the HTTP server's error log. Each
// failed connection of connErrorKinds was a warning, without limit (300
// connections, 300 lines), so that a flood filled the disk and the one
// that matters (every client refusing an expired certificate) drowned.
// Each kind is one warning per connErrorLogEvery, with the count since the
// last, and the rest at debug, as spaced.Log does the rejected remote
// writes. The server's other messages (a handler's panic) pass as they
// are.
type connErrorSpacer struct {
	slog.Handler
	logs [len(connErrorKinds)]spaced.Log
}

func (h *connErrorSpacer) Handle(ctx context.Context, r slog.Record) error {
	kind := -1
	for i, k := range connErrorKinds {
		if strings.HasPrefix(r.Message, k) {
			kind = i
			break
		}
	}
	if kind < 0 {
		return h.Handler.Handle(ctx, r)
	}
	n, warn := h.logs[kind].Note(connErrorLogEvery)
	if !warn {
		if !h.Handler.Enabled(ctx, slog.LevelDebug) {
			return nil
		}
		r.Level = slog.LevelDebug
		return h.Handler.Handle(ctx, r)
	}
	r = r.Clone() // its attributes may share storage with the caller's
	r.AddAttrs(slog.Int64("failures_since_last_warning", n), slog.Duration("next_warning_in", connErrorLogEvery))
	return h.Handler.Handle(ctx, r)
}

func hasUsers(c *WebConfig) bool {
	l, err := c.get()
	return err == nil && len(l.cfg.Users) > 0
}

// limitListener accepts a connection only while one of slots, shared by all
// the listeners, is free; the connection frees it when closed. (x/net's
// netutil.LimitListener counts per listener.)
type limitListener struct {
	net.Listener
	slots chan struct{}
	done  chan struct{} // closed by Close: an Accept waiting for a slot returns
	once  sync.Once
}

// Accept takes a connection, then waits for a slot: a listener waiting
// for a connection holds none (taken first, each idle listener held one,
// and one listener could hold them all while another's clients waited).
func (l *limitListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	select {
	case l.slots <- struct{}{}:
		return &limitConn{Conn: c, slots: l.slots}, nil
	case <-l.done:
		_ = c.Close()
		return nil, net.ErrClosed
	}
}

func (l *limitListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.Listener.Close()
}

type limitConn struct {
	net.Conn
	slots chan struct{}
	once  sync.Once
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { <-c.slots })
	return err
}
