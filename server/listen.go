package server

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
)

// HealthyPath answers without credentials: liveness probes carry none.
const HealthyPath = "/-/healthy"

// ListenAndServe serves srv on every address in addrs until srv is shut
// down, when it returns http.ErrServerClosed. With a web configuration file
// (exporter-toolkit format; see WebConfig) it serves TLS if the file
// configures it and asks for basic auth on every path but /-/healthy if the
// file lists users; with webConfigFile "" it serves plain HTTP without
// authentication.
func ListenAndServe(logger *slog.Logger, reg prometheus.Registerer, srv *http.Server, addrs []string, webConfigFile string) error {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if len(addrs) == 0 {
		return errors.New("no listen address")
	}
	if srv.ErrorLog == nil {
		// The server's own errors (TLS handshakes that fail, for a client
		// without the CA or speaking plain HTTP) go to omen's log, not to
		// stderr in another format.
		srv.ErrorLog = slog.NewLogLogger(logger.With("component", "http").Handler(), slog.LevelWarn)
	}
	var conf *WebConfig
	if webConfigFile != "" {
		var err error
		if conf, err = LoadWebConfig(logger, webConfigFile); err != nil {
			return err
		}
		auth, err := NewBasicAuth(logger, reg, conf, HealthyPath)
		if err != nil {
			return err
		}
		srv.Handler = auth.Wrap(srv.Handler)
	}
	useTLS := conf != nil && conf.TLSEnabled()
	if useTLS {
		cfg, err := conf.tlsConfig()
		if err != nil {
			return err
		}
		if l, _ := conf.get(); l != nil && !l.cfg.HTTPConfig.HTTP2 {
			srv.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){}
		}
		srv.TLSConfig = cfg
	}

	listeners := make([]net.Listener, 0, len(addrs))
	for _, a := range addrs {
		l, err := net.Listen("tcp", a)
		if err != nil {
			for _, l := range listeners {
				_ = l.Close()
			}
			return fmt.Errorf("listen on %s: %w", a, err)
		}
		listeners = append(listeners, l)
	}
	errc := make(chan error, len(listeners))
	for _, l := range listeners {
		logger.Info("Listening on", "address", l.Addr().String(), "tls", useTLS,
			"basic_auth", conf != nil && hasUsers(conf))
		go func() {
			if useTLS {
				errc <- srv.ServeTLS(l, "", "")
				return
			}
			errc <- srv.Serve(l)
		}()
	}
	// The first to stop decides; on shutdown, all return ErrServerClosed.
	return <-errc
}

func hasUsers(c *WebConfig) bool {
	l, err := c.get()
	return err == nil && len(l.cfg.Users) > 0
}
