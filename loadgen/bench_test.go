package loadgen

// Run: go test -run '^$' -bench . -benchmem -count=6 ./loadgen

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/stretchr/testify/require"
)

// BenchmarkBuild is the generator's cost per sample: filling one request
// of `batch` series from its compressed template, as a worker's builder
// does (template=false: encoding and snappy-compressing it from the
// prebuilt label bytes instead, what the template saves). It must stay far below a receiver's cost per
// sample, or the generator would measure itself.
func BenchmarkBuild(b *testing.B) {
	for _, protocol := range []int{1, 2} {
		for _, batchSize := range []int{500, 2000} {
			b.Run(fmt.Sprintf("protocol=%d/batch=%d/template=true", protocol, batchSize), func(b *testing.B) {
				bt, vs := benchBatch(protocol, batchSize)
				w := &worker{vals: vs}
				rb := &reqBuf{}
				ts := int64(1_800_000_000_000)
				w.build(rb, bt, ts, 1)
				b.ReportAllocs()
				b.ResetTimer()
				for i := range b.N {
					w.build(rb, bt, ts+int64(i), 1)
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batchSize), "ns/sample")
				b.ReportMetric(float64(len(rb.body))/float64(batchSize), "B/sample")
			})
			b.Run(fmt.Sprintf("protocol=%d/batch=%d/template=false", protocol, batchSize), func(b *testing.B) {
				bt, vs := benchBatch(protocol, batchSize)
				ts := int64(1_800_000_000_000)
				var raw, body []byte
				b.ReportAllocs()
				b.ResetTimer()
				for i := range b.N {
					raw = bt.appendRequest(raw[:0], ts+int64(i), 1, vs, nil)
					body = snappy.Encode(body[:cap(body)], raw)
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batchSize), "ns/sample")
				b.ReportMetric(float64(len(body))/float64(batchSize), "B/sample")
			})
		}
	}
}

func benchBatch(protocol, n int) (*batch, *values) {
	sets := make([][]label, n)
	counter := make([]bool, n)
	for i := range sets {
		sets[i], counter[i] = seriesLabels(i)
	}
	b := newBatch(protocol, 0, sets, counter, 0)
	b.nSamples = n
	return b, newValues(0, counter, 1)
}

// nullTransport answers every request 204 without a network, so that
// BenchmarkSend measures the sender alone.
type nullTransport struct{}

func (nullTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	_, _ = io.Copy(io.Discard, r.Body)
	_ = r.Body.Close()
	return &http.Response{StatusCode: http.StatusNoContent, Header: http.Header{}, Body: http.NoBody, Request: r}, nil
}

// BenchmarkSend is the sender's cost per request (the answer's cost
// included, from a transport that answers at once): what posting a built
// request adds to BenchmarkBuild's cost.
func BenchmarkSend(b *testing.B) {
	for _, protocol := range []int{1, 2} {
		b.Run(fmt.Sprintf("protocol=%d", protocol), func(b *testing.B) {
			o := Options{URL: "http://127.0.0.1:1/api/v1/write", Protocol: protocol, Series: 2000}
			require.NoError(b, o.validate())
			s := &sender{opts: &o, client: &http.Client{Transport: nullTransport{}}, logged: map[string]bool{}}
			rb := &reqBuf{body: make([]byte, 70_000), samples: 2000}
			var st stats
			st.latencies = make([]time.Duration, 0, b.N+1)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				s.send(context.Background(), rb, &st)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*rb.samples), "ns/sample")
		})
	}
}
