package server

import (
	"bytes"
	"fmt"
	"html"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
)

// ExternalURL is --web.external-url as Prometheus computes it
// (cmd/prometheus/main.go, computeExternalURL): the URL users reach omen
// at, behind a reverse proxy or an ingress. Empty, it is
// http(s)://<hostname>:<port of listenAddr>, https when the web
// configuration serves TLS; a URL in quotes (a templated value quoted once
// too often) is refused; its path loses its trailing slashes and gains a
// leading one, so "" and "/" are both no path. hostname is os.Hostname
// outside tests.
func ExternalURL(u, listenAddr string, tls bool, hostname func() (string, error)) (*url.URL, error) {
	if u == "" {
		host, err := hostname()
		if err != nil {
			return nil, fmt.Errorf("--web.external-url: default from the hostname: %w", err)
		}
		_, port, err := net.SplitHostPort(listenAddr)
		if err != nil {
			return nil, fmt.Errorf("--web.external-url: default from --web.listen-address: %w", err)
		}
		scheme := "http"
		if tls {
			scheme = "https"
		}
		u = fmt.Sprintf("%s://%s/", scheme, net.JoinHostPort(host, port))
	}
	if strings.HasPrefix(u, `"`) || strings.HasPrefix(u, "'") || strings.HasSuffix(u, `"`) || strings.HasSuffix(u, "'") {
		return nil, fmt.Errorf("--web.external-url=%s: must not begin or end with quotes", u)
	}
	eu, err := url.Parse(u)
	if err != nil {
		return nil, fmt.Errorf("--web.external-url: %w", err)
	}
	p := strings.TrimRight(eu.Path, "/")
	if p != "" && !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	eu.Path = p
	eu.RawPath = ""
	return eu, nil
}

// DefaultHostname is the host of the default external URL.
func DefaultHostname() (string, error) { return os.Hostname() }

// RoutePrefix is --web.route-prefix as Prometheus computes it: the external
// URL's path when the flag is empty, always with one leading slash and no
// trailing one ("/" for none), whether given as "omen", "/omen/" or
// "/omen".
func RoutePrefix(flag string, external *url.URL) string {
	if flag == "" && external != nil {
		flag = external.Path
	}
	return "/" + strings.Trim(flag, "/")
}

// outsidePrefix is the answer to a path outside the route prefix: a
// remote_write or a probe that lacks the prefix sees why in its log, and
// behind a proxy that strips the path (every request outside), what to
// set.
func outsidePrefix(prefix string) string {
	return "404 page not found: omen serves under its route prefix " + prefix +
		" (--web.route-prefix; / behind a proxy that strips the path)"
}

// WithRoutePrefix serves h under prefix (from RoutePrefix), as Prometheus
// serves every route of its own under --web.route-prefix: a request for
// prefix+"/x" reaches h as "/x" (so h and its handler names in the
// request metrics stay those of a server at "/"); GET or HEAD "/" is
// redirected (302) to the prefix, as in Prometheus and Alertmanager, and
// the prefix without its trailing slash to the page at prefix+"/" (301,
// as Prometheus's router redirects it), whose URLs are relative; every
// other path outside the prefix, /-/healthy included, is a 404, as in
// Prometheus.
//
// The redirects of h to a path of its own lead under external, the path
// the clients reach omen at (the external URL's, as Prometheus's own
// redirects take it): the prefix itself where a proxy forwards the whole
// path, and a path omen never sees where a proxy strips it (prefix "/").
// With prefix "/" and no external path it returns h.
func WithRoutePrefix(prefix, external string, h http.Handler) http.Handler {
	if prefix == "" {
		prefix = "/"
	}
	if external = strings.TrimRight(external, "/"); external != "" {
		h = &redirectsUnder{h: h, path: external}
	}
	if prefix == "/" {
		return h
	}
	inner := http.StripPrefix(prefix, h)
	notFound := outsidePrefix(prefix)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		get := r.Method == http.MethodGet || r.Method == http.MethodHead
		switch p := r.URL.Path; {
		case strings.HasPrefix(p, prefix+"/"):
			inner.ServeHTTP(w, r)
		case p == "/" && get:
			http.Redirect(w, r, prefix+"/", http.StatusFound)
		case p == prefix && get:
			to := prefix + "/"
			if r.URL.RawQuery != "" {
				to += "?" + r.URL.RawQuery
			}
			http.Redirect(w, r, to, http.StatusMovedPermanently)
		default:
			http.Error(w, notFound, http.StatusNotFound)
		}
	})
}

// redirectsUnder is h with its redirects to a path of its own led under
// path (see prefixedRedirects).
type redirectsUnder struct {
	h    http.Handler
	path string
}

func (u *redirectsUnder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.h.ServeHTTP(&prefixedRedirects{ResponseWriter: w, prefix: u.path}, r)
}

// prefixedRedirects puts prefix, the path clients reach omen at, in front
// of the Location of h's redirects to a path of its own: the mux's to a
// subtree with its slash (/debug/pprof to /debug/pprof/) or to a cleaned
// path (/api//v1/query) took the client out of the prefix. Their body's link too: http.Redirect
// writes the URL it is given, without the prefix, into the short HTML page
// a GET's redirect carries for clients that do not follow the Location.
// Flush and Unwrap keep what the handlers below ask of the writer (a
// streamed remote read flushes; remote write sets its read deadline
// through http.ResponseController).
type prefixedRedirects struct {
	http.ResponseWriter
	prefix string
	// link: the body is a redirect's whose link is yet to gain the prefix.
	link bool
}

func (w *prefixedRedirects) WriteHeader(code int) {
	if code >= 300 && code < 400 {
		h := w.Header()
		// An absolute path, not a scheme-relative "//host/..." URL.
		if loc := h.Get("Location"); strings.HasPrefix(loc, "/") && !strings.HasPrefix(loc, "//") {
			h.Set("Location", w.prefix+loc)
			// A body of a length already said is left as it is.
			w.link = h.Get("Content-Length") == ""
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

// redirectLink is how http.Redirect's body begins (then the URL, escaped).
const redirectLink = `<a href="`

func (w *prefixedRedirects) Write(b []byte) (int, error) {
	if !w.link {
		return w.ResponseWriter.Write(b)
	}
	w.link = false
	rest, ok := bytes.CutPrefix(b, []byte(redirectLink))
	if !ok || !bytes.HasPrefix(rest, []byte("/")) || bytes.HasPrefix(rest, []byte("//")) {
		return w.ResponseWriter.Write(b)
	}
	// http.Redirect writes its body in one call: the link is all in b.
	out := make([]byte, 0, len(b)+2*len(w.prefix))
	out = append(append(append(out, redirectLink...), html.EscapeString(w.prefix)...), rest...)
	if _, err := w.ResponseWriter.Write(out); err != nil {
		return 0, err
	}
	return len(b), nil
}

func (w *prefixedRedirects) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *prefixedRedirects) Unwrap() http.ResponseWriter { return w.ResponseWriter }
