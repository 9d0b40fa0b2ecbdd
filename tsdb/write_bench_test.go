package tsdb

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"github.com/gogo/protobuf/proto"
	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"github.com/prometheus/prometheus/util/compression"
	"github.com/stretchr/testify/require"

	"github.com/omen-sidecar/omen/loadgen"
)

// benchRequest is a remote-write 1.0 request like `omen loadgen`'s: n
// series of its label shapes (6 to 10 labels), starting at series first,
// one sample each.
func benchRequest(first, n int, ms int64) *prompb.WriteRequest {
	req := &prompb.WriteRequest{Timeseries: make([]prompb.TimeSeries, n)}
	for i := range n {
		pairs := loadgen.SeriesLabels(first + i)
		ts := &req.Timeseries[i]
		for j := 0; j < len(pairs); j += 2 {
			ts.Labels = append(ts.Labels, prompb.Label{Name: pairs[j], Value: pairs[j+1]})
		}
		ts.Samples = []prompb.Sample{{Timestamp: ms, Value: float64(i)}}
	}
	return req
}

// BenchmarkDecodeV1 decodes a 2000-series request: the fast decoder against
// gogo's generic Unmarshal into a reused WriteRequest (as the handler did).
// ns/op over 2000 is the cost per sample.
func BenchmarkDecodeV1(b *testing.B) {
	var d fastV1
	benchmarkDecode(b, benchRequest(0, 2000, time.Now().UnixMilli()), d.decodeV1, &prompb.WriteRequest{})
}

// BenchmarkDecodeV2 is BenchmarkDecodeV1 for a 2000-series 2.0 request.
func BenchmarkDecodeV2(b *testing.B) {
	var d fastV2
	benchmarkDecode(b, benchRequestV2(0, 2000, time.Now().UnixMilli()), d.decodeV2, &writev2.Request{})
}

func benchmarkDecode(b *testing.B, msg proto.Message, fast func([]byte) bool, into proto.Message) {
	body, err := proto.Marshal(msg)
	require.NoError(b, err)
	b.Run("fast", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			if !fast(body) {
				b.Fatal("fell back")
			}
		}
	})
	b.Run("gogo", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			into.Reset()
			if err := proto.Unmarshal(body, into); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkWriteV1 is the whole handler on a real TSDB: snappy, decode,
// label handling, head append, WAL commit, with nSeries series written in
// 2000-series requests, one sample each, after a first round created them.
// decoder=fast/cache=on is the steady state of `omen serve`; cache=off
// pays label building, validation and the head's hash lookup per series;
// decoder=generic is the gogo path (histograms, exemplars).
func BenchmarkWriteV1(b *testing.B) {
	benchmarkWrite(b, "application/x-protobuf", func(first, n int, ms int64) benchReq {
		req := benchRequest(first, n, ms)
		return benchReq{msg: req, setTime: func(t int64) {
			for j := range req.Timeseries {
				req.Timeseries[j].Samples[0].Timestamp = t
			}
		}}
	})
}

// BenchmarkWriteV1VMAgent is BenchmarkWriteV1 as vmagent sends it: each
// series' labels in its order (the scraped ones, then the target's
// instance and job, so not sorted) and every family's metadata in each
// request. Such a series is ref-cached as a sorted one is, its hit checked
// by comparing its labels as a set (sameLabelSet): 2014 allocations a
// request and 1.76-2.00 µs CPU a sample before (it was not cached),
// 11 and 1.02-1.13 µs after, 10 000 series, old and new alternated.
//
//	go test -run '^$' -bench 'BenchmarkWriteV1(VMAgent)?$/decoder=fast/cache=on/series=10000' -count 6 ./tsdb
func BenchmarkWriteV1VMAgent(b *testing.B) {
	benchmarkWrite(b, "application/x-protobuf", func(first, n int, ms int64) benchReq {
		req := benchRequest(first, n, ms)
		for j := range req.Timeseries {
			ls := req.Timeseries[j].Labels
			var target []prompb.Label
			kept := ls[:0]
			for _, l := range ls {
				if l.Name == "instance" || l.Name == "job" {
					target = append(target, l)
				} else {
					kept = append(kept, l)
				}
			}
			req.Timeseries[j].Labels = append(kept, target...)
		}
		seen := map[string]bool{}
		for _, ts := range req.Timeseries {
			if name := ts.Labels[0].Value; !seen[name] {
				seen[name] = true
				req.Metadata = append(req.Metadata, prompb.MetricMetadata{Type: prompb.MetricMetadata_GAUGE, MetricFamilyName: name, Help: "What " + name + " measures."})
			}
		}
		return benchReq{msg: req, setTime: func(t int64) {
			for j := range req.Timeseries {
				req.Timeseries[j].Samples[0].Timestamp = t
			}
		}}
	})
}

// BenchmarkWriteV2 is BenchmarkWriteV1 in remote-write 2.0, as Prometheus 3
// sends it: a symbols table per request, and with every series its
// metadata (type, help and unit). decoder=generic is appendV2 on gogo's
// unmarshal, the only 2.0 path before fastV2.
func BenchmarkWriteV2(b *testing.B) {
	benchmarkWrite(b, v2ContentType, func(first, n int, ms int64) benchReq {
		req := benchRequestV2(first, n, ms)
		return benchReq{msg: req, setTime: func(t int64) {
			for j := range req.Timeseries {
				req.Timeseries[j].Samples[0].Timestamp = t
			}
		}}
	})
}

// benchReq is a request of a benchmark and how to move its samples' time.
type benchReq struct {
	msg     proto.Message
	setTime func(int64)
}

func benchmarkWrite(b *testing.B, contentType string, newReq func(first, n int, ms int64) benchReq) {
	const perReq = 2000
	for _, c := range []struct {
		name    string
		generic bool
		cache   int
		wal     compression.Type
		limit   bool
	}{
		{"decoder=fast/cache=on", false, 0, compression.None, false},
		// omen serve's default WAL, as Prometheus's.
		{"decoder=fast/cache=on/wal=snappy", false, 0, compression.Snappy, false},
		{"decoder=fast/cache=off", false, -1, compression.None, false},
		{"decoder=generic", true, -1, compression.None, false},
		// --write.max-head-series above the head: known series, which
		// the limit must not slow (a cache hit is never checked; a miss
		// asks the head's GetRef, then appends by reference).
		{"decoder=fast/cache=on/limit=on", false, 0, compression.None, true},
		{"decoder=fast/cache=off/limit=on", false, -1, compression.None, true},
	} {
		for _, nSeries := range []int{10000, 100000} {
			b.Run(fmt.Sprintf("%s/series=%d", c.name, nSeries), func(b *testing.B) {
				s := NewStorage(nil, nil, Options{Path: b.TempDir(), MaxExemplars: 1000, WALCompression: c.wal})
				require.NoError(b, s.Open())
				b.Cleanup(func() { require.NoError(b, s.Close()) })
				o := WriteOptions{SeriesCacheSize: c.cache, Metadata: NewMetadata(nil, nil)}
				if c.limit {
					o.MaxHeadSeries, o.HeadSeries = 2*nSeries, s.HeadSeries
				}
				h := NewWriteHandler(nil, nil, s, o)
				h.generic = c.generic
				// A round's requests are encoded with the timer stopped,
				// each round one millisecond later, so appends are in order.
				base := time.Now().Add(-time.Hour).UnixMilli()
				var reqs []benchReq
				for first := 0; first < nSeries; first += perReq {
					reqs = append(reqs, newReq(first, perReq, base))
				}
				bodies := make([][]byte, len(reqs))
				encode := func(round int64) {
					for i, pr := range reqs {
						pr.setTime(base + round)
						raw, err := proto.Marshal(pr.msg)
						require.NoError(b, err)
						bodies[i] = snappy.Encode(bodies[i][:0], raw)
					}
				}
				rdr := bytes.NewReader(nil)
				req := httptest.NewRequest(http.MethodPost, "/api/v1/write", rdr)
				req.Header.Set("Content-Encoding", "snappy")
				req.Header.Set("Content-Type", contentType)
				w := &discardWriter{h: http.Header{}}
				send := func(body []byte) {
					rdr.Reset(body)
					req.Body, req.ContentLength = noClose{rdr}, int64(len(body))
					w.code = 0
					h.ServeHTTP(w, req)
					if w.code != http.StatusNoContent {
						b.Fatalf("status %d", w.code)
					}
				}
				encode(0)
				for _, body := range bodies {
					send(body) // creates the series
				}
				round := int64(1)
				encode(round)
				b.ReportAllocs()
				b.ResetTimer()
				i := 0
				var cpu time.Duration // outside the encoding of the next round
				cpu0 := cpuTime()
				for b.Loop() {
					send(bodies[i])
					if i++; i == len(bodies) {
						b.StopTimer()
						cpu += cpuTime() - cpu0
						i, round = 0, round+1
						encode(round)
						cpu0 = cpuTime()
						b.StartTimer()
					}
				}
				cpu += cpuTime() - cpu0
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*perReq), "ns/sample")
				b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*perReq), "cpu-ns/sample")
			})
		}
	}
}

// cpuTime is the CPU time (user and system) of the whole process, the
// TSDB's and the garbage collector's goroutines included: on a machine
// shared with other work it moves less than the wall clock, which counts
// the time other processes held the cores.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

type noClose struct{ *bytes.Reader }

func (noClose) Close() error { return nil }

// discardWriter is a ResponseWriter that keeps only the status, so the
// benchmark measures the handler and not a recorder's buffers.
type discardWriter struct {
	h    http.Header
	code int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(code int)        { w.code = code }
