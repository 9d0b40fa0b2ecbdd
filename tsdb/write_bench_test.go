package tsdb

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gogo/protobuf/proto"
	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
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
	body, err := proto.Marshal(benchRequest(0, 2000, time.Now().UnixMilli()))
	require.NoError(b, err)
	b.Run("fast", func(b *testing.B) {
		var d fastV1
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			if !d.decodeV1(body) {
				b.Fatal("fell back")
			}
		}
	})
	b.Run("gogo", func(b *testing.B) {
		var req prompb.WriteRequest
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			req.Reset()
			if err := proto.Unmarshal(body, &req); err != nil {
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
// decoder=generic is the gogo path (histograms, exemplars, metadata).
func BenchmarkWriteV1(b *testing.B) {
	const perReq = 2000
	for _, c := range []struct {
		name    string
		generic bool
		cache   int
	}{
		{"decoder=fast/cache=on", false, 0},
		{"decoder=fast/cache=off", false, -1},
		{"decoder=generic", true, -1},
	} {
		for _, nSeries := range []int{10000, 100000} {
			b.Run(fmt.Sprintf("%s/series=%d", c.name, nSeries), func(b *testing.B) {
				s := openTestStorage(b)
				h := NewWriteHandler(nil, nil, s, WriteOptions{SeriesCacheSize: c.cache})
				h.generic = c.generic
				// A round's requests are encoded with the timer stopped,
				// each round one millisecond later, so appends are in order.
				base := time.Now().Add(-time.Hour).UnixMilli()
				var reqs []*prompb.WriteRequest
				for first := 0; first < nSeries; first += perReq {
					reqs = append(reqs, benchRequest(first, perReq, base))
				}
				bodies := make([][]byte, len(reqs))
				encode := func(round int64) {
					for i, pr := range reqs {
						for j := range pr.Timeseries {
							pr.Timeseries[j].Samples[0].Timestamp = base + round
						}
						raw, err := proto.Marshal(pr)
						require.NoError(b, err)
						bodies[i] = snappy.Encode(bodies[i][:0], raw)
					}
				}
				rdr := bytes.NewReader(nil)
				req := httptest.NewRequest(http.MethodPost, "/api/v1/write", rdr)
				req.Header.Set("Content-Encoding", "snappy")
				req.Header.Set("Content-Type", "application/x-protobuf")
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
				for b.Loop() {
					send(bodies[i])
					if i++; i == len(bodies) {
						b.StopTimer()
						i, round = 0, round+1
						encode(round)
						b.StartTimer()
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*perReq), "ns/sample")
			})
		}
	}
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
