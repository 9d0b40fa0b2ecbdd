package tsdb

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

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

func TestWriteOverloadIsRetriable(t *testing.T) {
	ms := time.Now().UnixMilli()
	s := openTestStorage(t)
	app := blockingAppendable{AppendableV2: s, entered: make(chan struct{}, 1), release: make(chan struct{})}
	h := NewWriteHandler(nil, nil, app, WriteOptions{MaxInflightRequests: 1})
	body := v1Body(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{series(ms, 1, "__name__", "a")}})

	first := make(chan int)
	go func() { first <- post(t, h, body, nil).Code }()
	<-app.entered // the first request holds the only slot

	w := post(t, h, body, nil)
	require.Equal(t, http.StatusServiceUnavailable, w.Code, "Prometheus retries 5xx and drops 4xx")
	require.Equal(t, "1", w.Header().Get("Retry-After"))
	require.Contains(t, w.Body.String(), "overloaded")

	close(app.release)
	require.Equal(t, http.StatusNoContent, <-first)
	require.Equal(t, map[int64]float64{ms: 1}, samples(t, s, "a"))
}
