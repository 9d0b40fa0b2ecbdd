// Command faultproxy stands between omen's remote write and its upstream
// and injects faults on command, for checking forwarding by hand:
//
//	go run ./scripts/faultproxy -listen 127.0.0.1:29910 -upstream http://127.0.0.1:29911
//	curl '127.0.0.1:29910/ctl?mode=503&retry_after=10'   # pass|close|429|503|400|hang|slow
//	curl '127.0.0.1:29910/ctl'                           # the counts so far, as JSON
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"io"
	"log"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
)

type event struct {
	At      time.Time `json:"at"`
	Mode    string    `json:"mode"`
	Status  int       `json:"status"`
	Samples int       `json:"samples"`
	MinT    int64     `json:"min_t"`
	MaxT    int64     `json:"max_t"`
	Attempt string    `json:"attempt"`
}

type proxy struct {
	upstream   string
	mu         sync.Mutex
	mode       string
	retryAfter string
	delay      time.Duration
	events     []event
	hang       chan struct{}
}

func (p *proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/ctl" {
		p.ctl(w, r)
		return
	}
	body, _ := io.ReadAll(r.Body)
	e := event{At: time.Now(), Attempt: r.Header.Get("Retry-Attempt")}
	if raw, err := snappy.Decode(nil, body); err == nil {
		var req prompb.WriteRequest
		if req.Unmarshal(raw) == nil {
			e.MinT = 1 << 62
			for _, ts := range req.Timeseries {
				for _, s := range ts.Samples {
					e.Samples++
					e.MinT, e.MaxT = min(e.MinT, s.Timestamp), max(e.MaxT, s.Timestamp)
				}
			}
		}
	}
	p.mu.Lock()
	e.Mode = p.mode
	ra, delay, hang := p.retryAfter, p.delay, p.hang
	p.mu.Unlock()
	switch e.Mode {
	case "close":
		if hj, ok := w.(http.Hijacker); ok {
			c, _, _ := hj.Hijack()
			c.Close()
		}
		e.Status = -1
	case "429", "503", "400", "500":
		if ra != "" {
			w.Header().Set("Retry-After", ra)
		}
		e.Status, _ = strconv.Atoi(e.Mode)
		http.Error(w, "faultproxy: "+e.Mode, e.Status)
	case "hang":
		select {
		case <-r.Context().Done():
		case <-hang:
		}
		e.Status = -2
	default:
		if e.Mode == "slow" {
			select {
			case <-r.Context().Done():
			case <-time.After(delay):
			}
		}
		req, _ := http.NewRequestWithContext(r.Context(), "POST", p.upstream+r.URL.Path, bytes.NewReader(body))
		req.Header = r.Header.Clone()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			e.Status = 502
			http.Error(w, err.Error(), 502)
		} else {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			e.Status = resp.StatusCode
			w.WriteHeader(resp.StatusCode)
			w.Write(b)
		}
	}
	p.mu.Lock()
	p.events = append(p.events, e)
	p.mu.Unlock()
}

func (p *proxy) ctl(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	defer p.mu.Unlock()
	q := r.URL.Query()
	if m := q.Get("mode"); m != "" {
		if p.mode == "hang" && m != "hang" {
			close(p.hang)
		}
		if m == "hang" && p.mode != "hang" {
			p.hang = make(chan struct{})
		}
		p.mode = m
		p.retryAfter = q.Get("retry_after")
		p.delay, _ = time.ParseDuration(q.Get("delay"))
		log.Printf("mode %s retry_after=%q delay=%s", m, p.retryAfter, p.delay)
	}
	if q.Get("events") != "" {
		_ = json.NewEncoder(w).Encode(p.events)
		return
	}
	counts := map[string]map[int]int{}
	samples := map[string]int{}
	for _, e := range p.events {
		if counts[e.Mode] == nil {
			counts[e.Mode] = map[int]int{}
		}
		counts[e.Mode][e.Status]++
		if e.Status/100 == 2 {
			samples[e.Mode] += e.Samples
		}
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"mode": p.mode, "requests": counts, "samples_2xx": samples, "events": len(p.events)})
}

func main() {
	listen := flag.String("listen", "127.0.0.1:29910", "address to listen on")
	upstream := flag.String("upstream", "http://127.0.0.1:29911", "upstream base URL")
	flag.Parse()
	p := &proxy{upstream: *upstream, mode: "pass", hang: make(chan struct{})}
	log.Fatal(http.ListenAndServe(*listen, p))
}
