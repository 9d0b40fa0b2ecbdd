package tsdb

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/storage"
	"github.com/stretchr/testify/require"
)

func TestWriteLimits(t *testing.T) {
	ms := time.Now().UnixMilli()
	s := openTestStorage(t)
	h := NewWriteHandler(nil, nil, s, WriteOptions{
		MaxSeriesPerRequest: 2,
		Labels:              LabelLimits{MaxLabels: 3, MaxNameLength: 10, MaxValueLength: 10},
	})
	for _, tc := range []struct {
		name string
		req  *prompb.WriteRequest
		want string
	}{
		{"series per request", &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
			series(ms, 1, "__name__", "a"), series(ms, 1, "__name__", "b"), series(ms, 1, "__name__", "c"),
		}}, "request has 3 series, more than the limit of 2"},
		{"labels per series", &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{series(ms, 1, "__name__", "a", "b", "1", "c", "1", "d", "1")}}, "more than 3 labels"},
		{"name length", &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{series(ms, 1, "__name__", "a", "bbbbbbbbbbbbbbbb", "1")}}, "longer than 10 bytes"},
		{"value length", &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{series(ms, 1, "__name__", strings.Repeat("a", 11))}}, "value longer than 10 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := post(t, h, v1Body(t, tc.req), nil)
			require.Equal(t, http.StatusBadRequest, w.Code)
			require.Contains(t, w.Body.String(), tc.want)
		})
	}
}

// TestWriteBodySizeBoundary: a body of exactly --web.max-request-bytes (or
// decoding to exactly the decoded limit) is taken, one byte more is a 413,
// whether the length is declared or the body is chunked. A chunked body
// one byte over read as a truncated request, a 400 "decode snappy" that
// said nothing of the limit.
func TestWriteBodySizeBoundary(t *testing.T) {
	body := v1Body(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{series(time.Now().UnixMilli(), 1, "__name__", "a")}})
	dlen, err := snappy.DecodedLen(body)
	require.NoError(t, err)
	n := int64(len(body))
	for _, tc := range []struct {
		name    string
		opts    WriteOptions
		chunked bool
		code    int
	}{
		{"declared at limit", WriteOptions{MaxRequestBytes: n}, false, http.StatusNoContent},
		{"declared over limit", WriteOptions{MaxRequestBytes: n - 1}, false, http.StatusRequestEntityTooLarge},
		{"chunked at limit", WriteOptions{MaxRequestBytes: n}, true, http.StatusNoContent},
		{"chunked over limit", WriteOptions{MaxRequestBytes: n - 1}, true, http.StatusRequestEntityTooLarge},
		{"decoded at limit", WriteOptions{MaxDecodedBytes: dlen}, false, http.StatusNoContent},
		{"decoded over limit", WriteOptions{MaxDecodedBytes: dlen - 1}, false, http.StatusRequestEntityTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := NewWriteHandler(nil, nil, openTestStorage(t), tc.opts)
			var rd io.Reader = bytes.NewReader(body)
			if tc.chunked {
				rd = struct{ io.Reader }{rd} // hides the length from httptest
			}
			r := httptest.NewRequest(http.MethodPost, "/api/v1/write", rd)
			r.Header.Set("Content-Encoding", "snappy")
			r.Header.Set("Content-Type", "application/x-protobuf")
			if tc.chunked {
				r.ContentLength = -1
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			require.Equal(t, tc.code, w.Code, w.Body.String())
		})
	}
}

// blockingAppendable holds every Commit until release is closed.
type blockingAppendable struct {
	storage.AppendableV2
	entered chan struct{}
	release chan struct{}
}

func (b blockingAppendable) AppenderV2(ctx context.Context) storage.AppenderV2 {
	return blockingAppender{b.AppendableV2.AppenderV2(ctx), b}
}

type blockingAppender struct {
	storage.AppenderV2
	b blockingAppendable
}

func (a blockingAppender) Commit() error {
	a.b.entered <- struct{}{}
	<-a.b.release
	return a.AppenderV2.Commit()
}

// whileHeld sends a second request while app holds the first (whose code
// first will carry) in its Commit, and returns the second's answer. A
// second request admitted reaches Commit too: that fails the test at once,
// where waiting for its answer hung until the test binary's timeout.
func whileHeld(t *testing.T, app blockingAppendable, first <-chan int, send func() *httptest.ResponseRecorder) *httptest.ResponseRecorder {
	t.Helper()
	second := make(chan *httptest.ResponseRecorder, 1)
	go func() { second <- send() }()
	select {
	case w := <-second:
		return w
	case <-app.entered:
		close(app.release)
		<-second
		<-first
		t.Fatal("a second request was admitted while the first held the bound")
		return nil
	}
}

func TestWriteOverloadIsRetriable(t *testing.T) {
	ms := time.Now().UnixMilli()
	s := openTestStorage(t)
	app := blockingAppendable{AppendableV2: s, entered: make(chan struct{}, 1), release: make(chan struct{})}
	h := NewWriteHandler(nil, nil, app, WriteOptions{MaxInflightRequests: 1})
	body := v1Body(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{series(ms, 1, "__name__", "a")}})

	first := make(chan int, 1)
	go func() { first <- post(t, h, body, nil).Code }()
	<-app.entered // the first request holds the only slot

	w := whileHeld(t, app, first, func() *httptest.ResponseRecorder { return post(t, h, body, nil) })
	require.Equal(t, http.StatusServiceUnavailable, w.Code, "Prometheus retries 5xx and drops 4xx")
	require.Equal(t, "1", w.Header().Get("Retry-After"))
	require.Contains(t, w.Body.String(), "overloaded")

	close(app.release)
	require.Equal(t, http.StatusNoContent, <-first)
	require.Equal(t, map[int64]float64{ms: 1}, samples(t, s, "a"))
}

// TestWriteInflightBytes: the byte bound holds for bodies of known length
// and for chunked ones (unknown length), charged as they are read; they
// were charged nothing.
func TestWriteInflightBytes(t *testing.T) {
	ms := time.Now().UnixMilli()
	for _, chunked := range []bool{false, true} {
		t.Run(fmt.Sprint("chunked=", chunked), func(t *testing.T) {
			s := openTestStorage(t)
			app := blockingAppendable{AppendableV2: s, entered: make(chan struct{}, 1), release: make(chan struct{})}
			body := v1Body(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{series(ms, 1, "__name__", "a")}})
			dlen, err := snappy.DecodedLen(body)
			require.NoError(t, err)
			limit := int64(len(body)+dlen) + 10 // one body and its decoding fit, not a second body
			h := NewWriteHandler(nil, nil, app, WriteOptions{MaxInflightBytes: limit, MaxRequestBytes: 1 << 20})
			req := func() *http.Request {
				r := httptest.NewRequest(http.MethodPost, "/api/v1/write", bytes.NewReader(body))
				r.Header.Set("Content-Encoding", "snappy")
				r.Header.Set("Content-Type", "application/x-protobuf")
				if chunked {
					r.ContentLength = -1
				}
				return r
			}
			first := make(chan int, 1)
			go func() { w := httptest.NewRecorder(); h.ServeHTTP(w, req()); first <- w.Code }()
			<-app.entered // the first request holds its bytes

			w := whileHeld(t, app, first, func() *httptest.ResponseRecorder {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req())
				return w
			})
			require.Equal(t, http.StatusServiceUnavailable, w.Code, w.Body.String())
			require.Contains(t, w.Body.String(), "too many bytes in flight")

			close(app.release)
			require.Equal(t, http.StatusNoContent, <-first)
		})
	}
}

// TestWriteBodyTimeout: a client that sends headers and then stalls holds
// its in-flight slot only for BodyTimeout, and gets a retriable answer.
func TestWriteBodyTimeout(t *testing.T) {
	s := openTestStorage(t)
	h := NewWriteHandler(nil, nil, s, WriteOptions{MaxInflightRequests: 1, BodyTimeout: 300 * time.Millisecond})
	srv := httptest.NewServer(h)
	defer srv.Close()

	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	_, err = fmt.Fprintf(c, "POST /api/v1/write HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Encoding: snappy\r\nContent-Length: 100\r\n\r\n")
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	require.NoError(t, err, "answered once the body timed out")
	b, _ := io.ReadAll(resp.Body)
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, string(b))
	require.Contains(t, string(b), "not received within 300ms")

	// The slot is free again.
	ms := time.Now().UnixMilli()
	r, err := http.Post(srv.URL, "application/x-protobuf", bytes.NewReader(v1Body(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{series(ms, 1, "__name__", "a")}})))
	require.NoError(t, err)
	r.Body.Close()
	require.Equal(t, http.StatusNoContent, r.StatusCode)
}

// TestWriteInflightBoundCoversDecodedBytes: a body's decoding, up to ~20
// times its compressed bytes, is charged too: 40 bodies of 6 MB that
// decode to 127 MiB each took the process to 4.9 GB under a bound of 256
// MiB.
func TestWriteInflightBoundCoversDecodedBytes(t *testing.T) {
	ms := time.Now().UnixMilli()
	s := openTestStorage(t)
	app := blockingAppendable{AppendableV2: s, entered: make(chan struct{}, 1), release: make(chan struct{})}
	var req prompb.WriteRequest
	pad := strings.Repeat("x", 3990)
	for i := range 2000 {
		req.Timeseries = append(req.Timeseries, series(ms, 1, "__name__", "a", "i", string(rune('a'+i%26))+pad, "n", strconv.Itoa(i)))
	}
	body := v1Body(t, &req) // 0.4 MB compressed, 8.1 MB decoded
	dlen, err := snappy.DecodedLen(body)
	require.NoError(t, err)
	limit := int64(4 << 20)
	require.Less(t, int64(2*len(body)), limit)
	require.Greater(t, int64(2*dlen), limit)
	h := NewWriteHandler(nil, nil, app, WriteOptions{MaxInflightBytes: limit})
	first := make(chan int, 1)
	go func() { first <- post(t, h, body, nil).Code }()
	<-app.entered
	w := whileHeld(t, app, first, func() *httptest.ResponseRecorder { return post(t, h, body, nil) })
	require.Equal(t, http.StatusServiceUnavailable, w.Code)
	require.Contains(t, w.Body.String(), "too many bytes in flight")
	close(app.release)
	require.Equal(t, http.StatusNoContent, <-first)
}

// TestWriteSlowBodiesDoNotStarveOthers: clients trickling their bodies hold
// neither a request slot nor more bytes than they sent: taken before the
// body, a few such connections refused every other write for the body
// timeout.
func TestWriteSlowBodiesDoNotStarveOthers(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts WriteOptions
		size int64
	}{
		{"slots", WriteOptions{MaxInflightRequests: 2}, 1000},
		{"declared bytes", WriteOptions{MaxInflightBytes: 1 << 20, MaxRequestBytes: 32 << 20}, 1 << 20},
		{"chunked", WriteOptions{MaxInflightBytes: 1 << 20, MaxRequestBytes: 32 << 20}, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openTestStorage(t)
			tc.opts.BodyTimeout = time.Minute
			h := NewWriteHandler(nil, nil, s, tc.opts)
			srv := httptest.NewServer(h)
			t.Cleanup(srv.Close)
			for range 2 {
				pr, pw := io.Pipe()
				t.Cleanup(func() { _ = pw.Close() })
				req, err := http.NewRequest(http.MethodPost, srv.URL, pr)
				require.NoError(t, err)
				req.ContentLength = tc.size
				req.Header.Set("Content-Encoding", "snappy")
				go func() { _, _ = pw.Write([]byte{0}) }()
				go func() {
					if r, err := http.DefaultClient.Do(req); err == nil {
						r.Body.Close()
					}
				}()
			}
			// Both slow bodies are in the handler, their first byte read:
			// a fixed wait let the probe pass before they arrived.
			require.Eventually(t, func() bool { return h.bytes.Load() == 2 }, 10*time.Second, time.Millisecond)
			body := v1Body(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{series(time.Now().UnixMilli(), 1, "__name__", "probe")}})
			resp, err := http.Post(srv.URL, "application/x-protobuf", bytes.NewReader(body))
			require.NoError(t, err)
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			require.Equal(t, http.StatusNoContent, resp.StatusCode, string(b))
		})
	}
}

// panickingAppendable's appenders panic at their first sample.
type panickingAppendable struct{ storage.AppendableV2 }

func (p panickingAppendable) AppenderV2(ctx context.Context) storage.AppenderV2 {
	return panickingAppender{p.AppendableV2.AppenderV2(ctx)}
}

type panickingAppender struct{ storage.AppenderV2 }

func (panickingAppender) Append(storage.SeriesRef, labels.Labels, int64, int64, float64, *histogram.Histogram, *histogram.FloatHistogram, storage.AOptions) (storage.SeriesRef, error) {
	panic("append")
}

// TestWriteAdmissionReleased: a request gives back its slot and its bytes
// however it ends, a panic (which net/http recovers) included; a refused
// charge is taken back at once.
func TestWriteAdmissionReleased(t *testing.T) {
	ms := time.Now().UnixMilli()
	h := NewWriteHandler(nil, nil, panickingAppendable{openTestStorage(t)}, WriteOptions{MaxInflightRequests: 1})
	body := v1Body(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{series(ms, 1, "__name__", "a")}})
	require.Panics(t, func() { post(t, h, body, nil) })
	require.Zero(t, h.bytes.Load())
	require.Empty(t, h.slots, "the slot is free again")

	h = NewWriteHandler(nil, nil, openTestStorage(t), WriteOptions{MaxInflightBytes: 100})
	h.bytes.Store(60)
	b := &writeBuffers{}
	require.NotNil(t, h.charge(b, 50))
	require.EqualValues(t, 60, h.bytes.Load())
	require.Zero(t, b.charged)
}
