package tsdb

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gogo/protobuf/proto"
	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"github.com/prometheus/prometheus/storage"
	"github.com/stretchr/testify/require"

	remoteapi "github.com/prometheus/client_golang/exp/api/remote"
)

const v2ContentType = "application/x-protobuf;proto=io.prometheus.write.v2.Request"

// recorder is an AppendableV2 that records every committed append. A
// reference it is given selects the series as the head's does, whatever
// the labels, so a wrong cached reference shows as a sample in the wrong
// series. Some timestamps fail, to exercise each reject and the fatal
// error. It keeps the labels and metadata it was given, as a storage may,
// so that kept() can tell whether any of them changed afterwards (they
// would if they pointed into a reused request buffer).
type recorder struct {
	byLabels map[string]storage.SeriesRef
	names    []string // by ref-1
	log      []string
	keptLs   []labels.Labels
	keptMd   []metadata.Metadata
	keptStr  []string // what they read as when appended
	app      recAppender
}

type recAppender struct {
	r       *recorder
	pending []string
}

func newRecorder() *recorder { return &recorder{byLabels: map[string]storage.SeriesRef{}} }

func (r *recorder) AppenderV2(context.Context) storage.AppenderV2 {
	r.app = recAppender{r: r}
	return &r.app
}

func (a *recAppender) Append(ref storage.SeriesRef, ls labels.Labels, st, t int64, v float64, h *histogram.Histogram, fh *histogram.FloatHistogram, opts storage.AppendV2Options) (storage.SeriesRef, error) {
	r := a.r
	switch {
	case t%1009 == 1:
		return 0, errors.New("disk full")
	case t%13 == 5:
		return 0, storage.ErrOutOfOrderSample
	case t%17 == 3:
		return 0, storage.ErrDuplicateSampleForTimestamp
	case t%23 == 7:
		return 0, storage.ErrTooOldSample
	}
	if ref == 0 || int(ref) > len(r.names) {
		var ok bool
		if ref, ok = r.byLabels[ls.String()]; !ok {
			r.names = append(r.names, ls.String())
			ref = storage.SeriesRef(len(r.names))
			r.byLabels[ls.String()] = ref
		}
	}
	kind := fmt.Sprintf("v=%x", math.Float64bits(v))
	if h != nil || fh != nil {
		kind = fmt.Sprintf("h=%v fh=%v", h, fh)
	}
	md := opts.Metadata
	s := fmt.Sprintf("%s ls=%s t=%d st=%d %s meta=%q/%q/%q", r.names[ref-1], ls, t, st, kind, md.Type, md.Help, md.Unit)
	a.pending = append(a.pending, s)
	r.keptLs, r.keptMd = append(r.keptLs, ls), append(r.keptMd, md)
	r.keptStr = append(r.keptStr, fmt.Sprintf("%s %q/%q/%q", ls, md.Type, md.Help, md.Unit))
	if t%19 == 2 {
		return ref, &storage.AppendPartialError{}
	}
	return ref, nil
}

// recorderOK is the first timestamp from t on that the recorder stores.
func recorderOK(t int64) int64 {
	for t%1009 == 1 || t%13 == 5 || t%17 == 3 || t%23 == 7 || t%19 == 2 {
		t++
	}
	return t
}

func (a *recAppender) Commit() error {
	a.r.log = append(a.r.log, a.pending...)
	a.pending = nil
	return nil
}

func (a *recAppender) Rollback() error {
	a.r.log = append(a.r.log, "rollback")
	a.pending = nil
	return nil
}

// kept checks that the labels and metadata the storage kept still read as
// they did when appended.
func (r *recorder) kept(t *testing.T) {
	t.Helper()
	for i, ls := range r.keptLs {
		md := r.keptMd[i]
		require.Equal(t, r.keptStr[i], fmt.Sprintf("%s %q/%q/%q", ls, md.Type, md.Help, md.Unit), "append %d", i)
	}
}

func postV2(t testing.TB, h http.Handler, raw []byte) *httptest.ResponseRecorder {
	t.Helper()
	return post(t, h, snappy.Encode(nil, raw), map[string]string{"Content-Type": v2ContentType})
}

// TestFastV2MatchesGeneric is the property test of the whole fast path:
// the same random requests (and random corruptions of them) sent to a
// handler on the generic path and to one on the fast path get the same
// answers (status, body, written headers), store the same samples in the
// same series with the same labels and metadata, and count the same
// received and rejected samples. Label strings get other references in
// every request, series recur across requests (ref-cache hits) with
// changing metadata, and one variant makes every cache key collide.
func TestFastV2MatchesGeneric(t *testing.T) {
	now := time.UnixMilli(1_700_000_000_000)
	for _, c := range []struct {
		name    string
		cache   int
		collide bool
		limits  LabelLimits
	}{
		{"cache", 0, false, LabelLimits{}},
		{"no cache", -1, false, LabelLimits{}},
		{"colliding keys", 0, true, LabelLimits{}},
		{"tight label limits", 0, false, LabelLimits{MaxLabels: 3, MaxNameLength: 8, MaxValueLength: 8}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(13, 17))
			opts := WriteOptions{SeriesCacheSize: c.cache, Labels: c.limits, MaxSeriesPerRequest: 8,
				Now: func() time.Time { return now }}
			gen, fast := newRecorder(), newRecorder()
			hg := NewWriteHandler(nil, nil, gen, opts)
			hg.generic = true
			hf := NewWriteHandler(nil, nil, fast, opts)
			if c.collide {
				hf.hash = func([]byte) uint64 { return 42 }
			}
			var d fastV2
			var took, stored int
			for i := range 1500 {
				req := randRequestV2(r, i%5 == 0, now.UnixMilli())
				body := encodeV2(r, req)
				for _, b := range [][]byte{body, mutate(r, body)} {
					if d.decodeV2(b) {
						took++
					}
					wg, wf := postV2(t, hg, b), postV2(t, hf, b)
					require.Equal(t, wg.Code, wf.Code, "request %d: %s", i, wg.Body.String())
					require.Equal(t, wg.Body.String(), wf.Body.String(), "request %d", i)
					for _, k := range []string{headerSamplesWritten, headerHistogramsWritten, headerExemplarsWritten} {
						require.Equal(t, wg.Header().Get(k), wf.Header().Get(k), "request %d: %s", i, k)
					}
					if wg.Header().Get(headerSamplesWritten) != "0" {
						stored++
					}
				}
				require.Equal(t, len(gen.log), len(fast.log), "request %d", i)
			}
			require.Equal(t, gen.log, fast.log)
			require.Equal(t, hg.Rejected(), hf.Rejected())
			m, mf := hg.metrics, hf.metrics
			for i, p := range [][2]float64{
				{testutil.ToFloat64(m.receivedFloat), testutil.ToFloat64(mf.receivedFloat)},
				{testutil.ToFloat64(m.receivedHist), testutil.ToFloat64(mf.receivedHist)},
				{testutil.ToFloat64(m.appendedFloat), testutil.ToFloat64(mf.appendedFloat)},
				{testutil.ToFloat64(m.appendedHist), testutil.ToFloat64(mf.appendedHist)},
			} {
				require.Equal(t, p[0], p[1], "counter %d", i)
			}
			gen.kept(t)
			fast.kept(t)
			// Neither the fast path nor the cache may be vacuous here.
			require.Greater(t, took, 1500, "requests the fast decoder took")
			require.Greater(t, stored, 600, "requests that stored samples")
			if c.cache == 0 {
				require.Positive(t, hf.refs.len())
			}
			t.Logf("fast decoder took %d of 3000 bodies; %d stored samples; %d appends", took, stored, len(fast.log))
		})
	}
}

// TestWriteV2FastMetadataChanges: a series' cached metadata is replaced
// when it changes, and its strings do not alias the request buffer.
func TestWriteV2FastMetadataChanges(t *testing.T) {
	rec := newRecorder()
	now := time.UnixMilli(1_700_000_000_000)
	h := NewWriteHandler(nil, nil, rec, WriteOptions{Now: func() time.Time { return now }})
	for i, help := range []string{"First help.", "First help.", "Second help.", "", "Second help."} {
		req := &writev2.Request{Symbols: []string{"", help, "__name__", "m", "seconds"}, Timeseries: []writev2.TimeSeries{{
			LabelsRefs: []uint32{2, 3},
			Samples:    []writev2.Sample{{Value: float64(i), Timestamp: recorderOK(now.UnixMilli() - 100 + 100*int64(i))}},
			Metadata:   writev2.Metadata{Type: writev2.Metadata_METRIC_TYPE_GAUGE, HelpRef: 1, UnitRef: 4},
		}}}
		raw, err := proto.Marshal(req)
		require.NoError(t, err)
		var d fastV2
		require.True(t, d.decodeV2(raw))
		w := postV2(t, h, raw)
		require.Equal(t, http.StatusNoContent, w.Code, w.Body.String())
		require.Len(t, rec.keptMd, i+1)
		require.Equal(t, metadata.Metadata{Type: "gauge", Help: help, Unit: "seconds"}, rec.keptMd[i])
	}
	rec.kept(t)
	require.Equal(t, 1, h.refs.len())
}

// countingAppendable is a storage that allocates nothing: it hands out
// one reference per labels hash and counts the samples.
type countingAppendable struct {
	refs    map[uint64]storage.SeriesRef
	samples int
	app     countingAppender
}

type countingAppender struct{ c *countingAppendable }

func (c *countingAppendable) AppenderV2(context.Context) storage.AppenderV2 {
	c.app.c = c
	return &c.app
}

func (a *countingAppender) Append(ref storage.SeriesRef, ls labels.Labels, _, _ int64, _ float64, _ *histogram.Histogram, _ *histogram.FloatHistogram, _ storage.AppendV2Options) (storage.SeriesRef, error) {
	a.c.samples++
	if ref != 0 {
		return ref, nil
	}
	h := ls.Hash()
	if r, ok := a.c.refs[h]; ok {
		return r, nil
	}
	r := storage.SeriesRef(len(a.c.refs) + 1)
	a.c.refs[h] = r
	return r, nil
}

func (a *countingAppender) Commit() error   { return nil }
func (a *countingAppender) Rollback() error { return nil }

// benchRequestV2 is benchRequest as Prometheus 3 sends it in 2.0: a symbols
// table, and with every series its metadata (type, help and unit).
func benchRequestV2(first, n int, ms int64) *writev2.Request {
	st := writev2.NewSymbolTable()
	req := &writev2.Request{Timeseries: make([]writev2.TimeSeries, n)}
	for i, ts := range benchRequest(first, n, ms).Timeseries {
		b := labels.NewScratchBuilder(len(ts.Labels))
		for _, l := range ts.Labels {
			b.Add(l.Name, l.Value)
		}
		ls := b.Labels()
		req.Timeseries[i] = writev2.TimeSeries{
			LabelsRefs: st.SymbolizeLabels(ls, nil),
			Samples:    []writev2.Sample{{Value: ts.Samples[0].Value, Timestamp: ms}},
			Metadata: writev2.Metadata{Type: writev2.Metadata_METRIC_TYPE_COUNTER,
				HelpRef: st.Symbolize("Help text of " + ls.Get("__name__") + ", as a client library writes it."),
				UnitRef: st.Symbolize("seconds")},
		}
	}
	req.Symbols = st.Symbols()
	return req
}

// TestWriteFastAllocs: in the steady state (buffers grown, ref cache warm,
// metadata unchanged), a request on either fast path allocates nothing from
// reading its body to committing, on a storage that allocates nothing.
func TestWriteFastAllocs(t *testing.T) {
	ms := time.Now().Add(-time.Minute).UnixMilli()
	v1, err := proto.Marshal(benchRequest(0, 500, ms))
	require.NoError(t, err)
	v2, err := proto.Marshal(benchRequestV2(0, 500, ms))
	require.NoError(t, err)
	for _, c := range []struct {
		name string
		typ  remoteapi.WriteMessageType
		body []byte
	}{
		{"v1", remoteapi.WriteV1MessageType, v1},
		{"v2", remoteapi.WriteV2MessageType, v2},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := &countingAppendable{refs: map[uint64]storage.SeriesRef{}}
			h := NewWriteHandler(nil, nil, s, WriteOptions{})
			body := snappy.Encode(nil, c.body)
			rdr := bytes.NewReader(body)
			req := httptest.NewRequest(http.MethodPost, "/api/v1/write", rdr)
			req.Body, req.ContentLength = noClose{rdr}, int64(len(body))
			b := &writeBuffers{}
			send := func() {
				rdr.Reset(body)
				b.charged = 0
				raw, herr := h.readBody(req, b)
				if herr != nil {
					t.Fatal(herr)
				}
				st, herr := h.handle(req, c.typ, raw, b)
				h.bytes.Add(-b.charged)
				if herr != nil || st.floats != 500 {
					t.Fatalf("stats %+v, error %v", st, herr)
				}
			}
			send()
			send()
			require.Equal(t, 500, h.refs.len())
			require.Zero(t, testing.AllocsPerRun(20, send))
		})
	}
}

// FuzzFastV2 checks the decoder against gogo on arbitrary bytes, and the
// fast handler against the generic one: the same answer and the same
// appends.
func FuzzFastV2(f *testing.F) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 10 {
		f.Add(encodeV2(r, randRequestV2(r, r.IntN(4) == 0, 1e12)))
	}
	now := time.UnixMilli(1e12)
	f.Fuzz(func(t *testing.T, body []byte) {
		checkFastV2(t, body)
		opts := WriteOptions{Now: func() time.Time { return now }}
		gen, fast := newRecorder(), newRecorder()
		hg := NewWriteHandler(nil, nil, gen, opts)
		hg.generic = true
		hf := NewWriteHandler(nil, nil, fast, opts)
		for range 2 { // the second time with a warm cache
			wg, wf := postV2(t, hg, body), postV2(t, hf, body)
			require.Equal(t, wg.Code, wf.Code)
			require.Equal(t, wg.Body.String(), wf.Body.String())
			require.Equal(t, wg.Header().Get(headerSamplesWritten), wf.Header().Get(headerSamplesWritten))
		}
		require.Equal(t, gen.log, fast.log)
	})
}

// TestWriteV2StartTimestamp checks that a 2.0 sample's start timestamp
// reaches the head on both decoding paths: stored as a zero sample before
// the counter's first sample with the created-timestamp-zero-ingestion
// feature (Options.StartTimestampZeroIngestion), ignored without it, and
// not repeated while it stays the same.
func TestWriteV2StartTimestamp(t *testing.T) {
	ms := time.Now().UnixMilli()
	start := ms - 10_000
	for _, tc := range []struct {
		name     string
		zero     bool
		generic  bool
		expected map[int64]float64
	}{
		{"fast path, feature on", true, false, map[int64]float64{start: 0, ms: 5, ms + 1000: 7}},
		{"generic path, feature on", true, true, map[int64]float64{start: 0, ms: 5, ms + 1000: 7}},
		{"fast path, feature off", false, false, map[int64]float64{ms: 5, ms + 1000: 7}},
		{"generic path, feature off", false, true, map[int64]float64{ms: 5, ms + 1000: 7}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := NewStorage(nil, nil, Options{Path: t.TempDir(), MinFreeBytes: -1, StartTimestampZeroIngestion: tc.zero})
			require.NoError(t, s.Open())
			defer func() { require.NoError(t, s.Close()) }()
			h := NewWriteHandler(nil, nil, s, DefaultWriteOptions())
			h.generic = tc.generic
			for _, smp := range []writev2.Sample{{Value: 5, Timestamp: ms, StartTimestamp: start}, {Value: 7, Timestamp: ms + 1000, StartTimestamp: start}} {
				st := writev2.NewSymbolTable()
				req := &writev2.Request{Timeseries: []writev2.TimeSeries{{
					LabelsRefs: st.SymbolizeLabels(labels.FromStrings("__name__", "jobs_total"), nil),
					Samples:    []writev2.Sample{smp},
					Metadata:   writev2.Metadata{Type: writev2.Metadata_METRIC_TYPE_COUNTER},
				}}}
				req.Symbols = st.Symbols()
				raw, err := proto.Marshal(req)
				require.NoError(t, err)
				w := postV2(t, h, raw)
				require.Equal(t, http.StatusNoContent, w.Code, w.Body.String())
				require.Equal(t, "1", w.Header().Get(headerSamplesWritten))
			}
			require.Equal(t, tc.expected, samples(t, s, "jobs_total"))
		})
	}
}

// TestContentTypeParameters: the Content-Type is read as RFC 9110 has it
// (a space after ";", a quoted value, any case of the media type and the
// parameter's name). With a space, the 2.0 body was read as 1.0 and
// answered 204 with nothing stored.
func TestContentTypeParameters(t *testing.T) {
	now := time.Now()
	ms := now.UnixMilli()
	raw, err := proto.Marshal(&writev2.Request{
		Symbols:    []string{"", "__name__", "up"},
		Timeseries: []writev2.TimeSeries{{LabelsRefs: []uint32{1, 2}, Samples: []writev2.Sample{{Value: 1, Timestamp: ms}}}},
	})
	require.NoError(t, err)
	for _, tc := range []struct {
		ct   string
		code int
	}{
		{"application/x-protobuf;proto=io.prometheus.write.v2.Request", 204},
		{"application/x-protobuf; proto=io.prometheus.write.v2.Request", 204},
		{`application/x-protobuf;proto="io.prometheus.write.v2.Request"`, 204},
		{"Application/X-Protobuf; Proto=io.prometheus.write.v2.Request", 204},
		{"application/x-protobuf; proto=io.prometheus.write.v2.Request; charset=binary", 204},
		{"application/x-protobuf;;", 415},
		{"application/x-protobuf; proto=", 415},
	} {
		t.Run(tc.ct, func(t *testing.T) {
			s := openTestStorage(t)
			h := NewWriteHandler(nil, nil, s, WriteOptions{Now: func() time.Time { return now }})
			w := post(t, h, snappy.Encode(nil, raw), map[string]string{"Content-Type": tc.ct})
			require.Equal(t, tc.code, w.Code, w.Body.String())
			if tc.code == 204 {
				require.Equal(t, "1", w.Header().Get(headerSamplesWritten))
				require.Equal(t, map[int64]float64{ms: 1}, samples(t, s, "up"))
			}
		})
	}
}

// TestWriteV2SeriesWithoutSamples: a 2.0 series with neither samples,
// histograms nor exemplars is a 400 that names it (the spec's MUST); the
// request's other series are stored. It was a 204. One with exemplars
// alone, as Prometheus's 2.0 sender sends exemplars, is stored.
func TestWriteV2SeriesWithoutSamples(t *testing.T) {
	s := NewStorage(nil, nil, Options{Path: t.TempDir(), MinFreeBytes: -1})
	require.NoError(t, s.Open())
	defer func() { require.NoError(t, s.Close()) }()
	h := NewWriteHandler(nil, nil, s, WriteOptions{})
	now := time.Now().UnixMilli()
	req := &writev2.Request{Symbols: []string{"", "__name__", "good", "empty", "trace_id", "abc"}, Timeseries: []writev2.TimeSeries{
		{LabelsRefs: []uint32{1, 2}, Samples: []writev2.Sample{{Value: 1, Timestamp: now}}},
		{LabelsRefs: []uint32{1, 3}},
		{LabelsRefs: []uint32{1, 2}, Exemplars: []writev2.Exemplar{{LabelsRefs: []uint32{4, 5}, Value: 1, Timestamp: now}}},
	}}
	raw, err := proto.Marshal(req)
	require.NoError(t, err)
	w := postV2(t, h, raw)
	require.Equal(t, http.StatusBadRequest, w.Code)
	require.Contains(t, w.Body.String(), `series 1 {__name__="empty"}: no samples, histograms or exemplars`)
	require.Equal(t, "1", w.Header().Get(headerSamplesWritten))
	require.Equal(t, "1", w.Header().Get(headerExemplarsWritten), "the exemplar-only series is stored")

	req.Timeseries = append(req.Timeseries[:1], req.Timeseries[2:]...)
	req.Timeseries[0].Samples[0].Timestamp = now + 1
	req.Timeseries[1].Exemplars[0].Timestamp = now + 1
	raw, err = proto.Marshal(req)
	require.NoError(t, err)
	w = postV2(t, h, raw)
	require.Equal(t, http.StatusNoContent, w.Code, "a sample and an exemplar-only entry: %s", w.Body.String())
	require.Equal(t, "1", w.Header().Get(headerExemplarsWritten))
}

// TestWriteV2ExemplarsOfUnknownSeries: a series of exemplars alone whose
// series the TSDB does not have (no sample of it ever came) is a 400 that
// names it, as the remote-write compliance suite's exemplars_without_data
// case requires (2xx only with the exemplar written) and Prometheus's
// receiver answers. It was a 204 with Exemplars-Written 0: the sender
// heard success for a request of which nothing was stored.
func TestWriteV2ExemplarsOfUnknownSeries(t *testing.T) {
	s := openTestStorage(t)
	h := NewWriteHandler(nil, prometheus.NewRegistry(), s, WriteOptions{})
	now := time.Now().UnixMilli()
	req := &writev2.Request{Symbols: []string{"", "__name__", "good", "orphan", "trace_id", "abc"}, Timeseries: []writev2.TimeSeries{
		{LabelsRefs: []uint32{1, 2}, Samples: []writev2.Sample{{Value: 1, Timestamp: now}}},
		{LabelsRefs: []uint32{1, 3}, Exemplars: []writev2.Exemplar{{LabelsRefs: []uint32{4, 5}, Value: 42, Timestamp: now}}},
	}}
	raw, err := proto.Marshal(req)
	require.NoError(t, err)
	w := postV2(t, h, raw)
	require.Equal(t, http.StatusBadRequest, w.Code, w.Body.String())
	require.Contains(t, w.Body.String(), `series 1 {__name__="orphan"}: exemplars without samples or histograms, of a series not stored`)
	require.Equal(t, "1", w.Header().Get(headerSamplesWritten), "the rest of the request is stored")
	require.Equal(t, "0", w.Header().Get(headerExemplarsWritten))
	require.Equal(t, 1.0, testutil.ToFloat64(h.metrics.rejected.WithLabelValues("exemplar", "unknown_series")))
}

// TestWriteVersionMismatchIsRefused: a body of one remote-write version
// under the other's Content-Type (a proxy dropped or rewrote proto=)
// decodes as an empty request: it was answered 204 and stored nothing.
func TestWriteVersionMismatchIsRefused(t *testing.T) {
	ms := time.Now().UnixMilli()
	v1, err := (&prompb.WriteRequest{Timeseries: []prompb.TimeSeries{series(ms, 1, "__name__", "mismatch")}}).Marshal()
	require.NoError(t, err)
	v2, err := (&writev2.Request{Symbols: []string{"", "__name__", "mismatch"},
		Timeseries: []writev2.TimeSeries{{LabelsRefs: []uint32{1, 2}, Samples: []writev2.Sample{{Value: 1, Timestamp: ms}}}}}).Marshal()
	require.NoError(t, err)
	const ct1, ct2 = "application/x-protobuf", "application/x-protobuf;proto=io.prometheus.write.v2.Request"
	for _, tc := range []struct {
		name, ct string
		body     []byte
		generic  bool
		want     string
	}{
		{"2.0 type, 1.0 body, fast", ct2, v1, false, "remote-write 1.0 request"},
		{"2.0 type, 1.0 body, generic", ct2, v1, true, "remote-write 1.0 request"},
		{"1.0 type, 2.0 body, fast", ct1, v2, false, "remote-write 2.0 request"},
		{"1.0 type, 2.0 body, generic", ct1, v2, true, "remote-write 2.0 request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openTestStorage(t)
			h := NewWriteHandler(nil, nil, s, WriteOptions{})
			h.generic = tc.generic
			w := post(t, h, snappy.Encode(nil, tc.body), map[string]string{"Content-Type": tc.ct})
			require.Equal(t, http.StatusBadRequest, w.Code, "stored: %v", samples(t, s, "mismatch"))
			require.Contains(t, w.Body.String(), tc.want)
		})
	}
}
