package tsdb

import (
	"bytes"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"log/slog"
	"math"
	"mime"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gogo/protobuf/proto"
	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"github.com/prometheus/prometheus/storage"
	"google.golang.org/protobuf/encoding/protowire"

	remoteapi "github.com/prometheus/client_golang/exp/api/remote"

	"github.com/omen-sidecar/omen/internal/spaced"
	"github.com/omen-sidecar/omen/internal/trunc"
)

// WriteOptions limit what one remote-write request may carry.
type WriteOptions struct {
	// MaxRequestBytes bounds the compressed body; larger requests get 413.
	MaxRequestBytes int64
	// MaxDecodedBytes bounds the body after snappy decoding.
	MaxDecodedBytes int
	// MaxFutureDrift is how far past now a sample may be, as in Prometheus.
	MaxFutureDrift time.Duration
	// MaxInflightRequests and MaxInflightBytes bound the requests being
	// handled at once and their compressed bytes. Beyond them omen answers
	// 503 with Retry-After, which Prometheus retries (it drops 4xx, and
	// retries 429 only when configured to), instead of growing memory.
	MaxInflightRequests int
	MaxInflightBytes    int64
	// Limits on what one request may carry; beyond them, 400.
	MaxSeriesPerRequest int
	Labels              LabelLimits
	// SeriesCacheSize bounds the cache from a series' raw label bytes to
	// its head reference (refcache.go); 0 means the default, negative
	// disables the cache.
	SeriesCacheSize int
	// BodyTimeout bounds the time a request's body takes to arrive once it
	// holds an in-flight slot; a body that takes longer gets a retriable
	// 503. Prometheus gives up on a request after its remote_timeout (30 s
	// by default), so only a stalled or hostile client takes this long,
	// and it must not hold the slot any longer.
	BodyTimeout time.Duration
	// Metadata, if set, keeps the metric families' metadata the requests
	// carry, for /api/v1/metadata.
	Metadata *Metadata
	// HA de-duplicates replicas of one Prometheus (off unless its
	// ReplicaLabel is set; zero fields take DefaultHAOptions').
	HA HAOptions
	// OutOfOrderTimeWindow is the storage's: with one, the head judges
	// the order of a request's samples itself (see appendState.inOrder).
	OutOfOrderTimeWindow time.Duration
	// MaxHeadSeries bounds the series of the TSDB's head, as Mimir's
	// per-tenant series limit bounds an ingester's: once HeadSeries is at
	// it, a request's series the head does not hold are refused (400,
	// counted in omen_remote_write_series_refused_total), while the
	// samples of those it holds are appended as ever. A label explosion
	// upstream then costs a bounded head, not an OOM kill. The count is
	// the head's own (omen's output series included, which are never
	// refused: they are appended beside remote write, and --detect.max-series
	// and --forecast.max-series bound them; those that take the head past
	// the limit are counted, see Options.MaxHeadSeries), so room comes
	// back as the head drops series that stopped. Exact under concurrent
	// requests (see admit). 0: no bound.
	MaxHeadSeries int
	// HeadSeries returns the series in the head (Storage.HeadSeries);
	// without it MaxHeadSeries bounds nothing.
	HeadSeries func() uint64
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// DefaultWriteOptions match Prometheus's receiver.
func DefaultWriteOptions() WriteOptions {
	return WriteOptions{
		MaxRequestBytes: 32 << 20, MaxDecodedBytes: 128 << 20, MaxFutureDrift: 10 * time.Minute,
		MaxInflightRequests: 64, MaxInflightBytes: 256 << 20, MaxSeriesPerRequest: 1 << 20, BodyTimeout: time.Minute,
		Labels:          LabelLimits{MaxLabels: 64, MaxNameLength: 1024, MaxValueLength: 4096},
		SeriesCacheSize: 1 << 20,
	}
}

// Response headers of remote-write 2.0.
const (
	headerSamplesWritten    = "X-Prometheus-Remote-Write-Samples-Written"
	headerHistogramsWritten = "X-Prometheus-Remote-Write-Histograms-Written"
	headerExemplarsWritten  = "X-Prometheus-Remote-Write-Exemplars-Written"
)

// maxSnappyExpansion bounds snappy's decoded/encoded ratio (64/3, rounded up).
const maxSnappyExpansion = 22

// maxReportedErrors bounds the per-sample problems quoted in a 400 body,
// and maxProblemLen each one: a series' labels may hold up to
// LabelLimits.MaxValueLength bytes a value, which the sender has already.
const (
	maxReportedErrors = 5
	maxProblemLen     = 512
)

// maxUserAgentLen bounds the User-Agent a rejection's log line names the
// sender by (Prometheus's, vmagent's and the OpenTelemetry Collector's
// are under 100 bytes).
const maxUserAgentLen = 256

// WriteHandler receives remote-write 1.0 and 2.0 requests and appends them
// to a storage.AppendableV2.
//
// Unlike Prometheus's own receiver, a request with some bad series or samples
// stores the valid rest and answers 400 naming the problems (senders drop 4xx,
// and retrying could not fix them); only failures that a retry can fix (TSDB
// not ready, storage errors) are 5xx.
type WriteHandler struct {
	logger  *slog.Logger
	app     storage.AppendableV2
	opts    WriteOptions
	metrics *writeMetrics
	bufs    sync.Pool // *writeBuffers
	slots   chan struct{}
	bytes   atomic.Int64 // compressed bytes of the requests in flight
	refs    *refCache    // nil when disabled
	ha      *haTracker   // nil when HA de-duplication is off
	// pending counts the new series admitted under MaxHeadSeries and
	// not yet known to be in the head (see admit).
	pending atomic.Int64
	hash    func([]byte) uint64
	generic bool // always use the generic decoder: tests and benchmarks compare the paths
	// rejectLog, mediaLog and failLog space the warnings about rejected
	// requests (4xx but 415), ones of a Content-Type or Content-Encoding
	// omen does not read (415) and failed ones (5xx).
	rejectLog, mediaLog, failLog spaced.Log
}

// rejectLogEvery spaces the warnings about rejected requests: a sender
// retries nothing it got a 4xx for, but one bad series in every batch
// (a label value over the limit) is rejected at every send.
const rejectLogEvery = time.Minute

type writeBuffers struct {
	compressed, decoded []byte
	body                chargedReader
	charged             int64 // bytes in flight charged for this request
	v1                  prompb.WriteRequest
	v2                  writev2.Request
	builder             labels.ScratchBuilder
	exemplars           []exemplar.Exemplar
	fast                fastV1
	fast2               fastV2
	state               appendState
	// key is the scratch of a 2.0 series' ref-cache key; metas are the
	// metadata copied in this request, by their references.
	key   []byte
	metas map[fastMeta]*metadata.Metadata
	// The ref-cache lookups of a request's series, done before its
	// appends (see lookupV1): each series' hash, whether it is looked
	// up, and what was found.
	hashes []uint64
	use    []bool
	lookup refLookup
}

type writeMetrics struct {
	received *prometheus.CounterVec
	appended *prometheus.CounterVec
	// The children of received and appended, resolved once: a vector
	// lookup per series cost 5% of the handler's CPU.
	receivedFloat, receivedHist, receivedEx prometheus.Counter
	appendedFloat, appendedHist, appendedEx prometheus.Counter
	rejected                                *prometheus.CounterVec
	inflight                                prometheus.Gauge
	overloaded                              prometheus.Counter
	seriesRefused                           prometheus.Counter
	seriesLimit                             prometheus.Gauge
}

func newWriteMetrics(reg prometheus.Registerer) *writeMetrics {
	f := promauto.With(reg)
	m := &writeMetrics{
		received: f.NewCounterVec(prometheus.CounterOpts{
			Name: "omen_remote_write_samples_received_total",
			Help: "Samples received by remote write, by type (float, histogram, exemplar).",
		}, []string{"type"}),
		appended: f.NewCounterVec(prometheus.CounterOpts{
			Name: "omen_remote_write_samples_appended_total",
			Help: "Samples appended to the TSDB from remote write, by type.",
		}, []string{"type"}),
		rejected: f.NewCounterVec(prometheus.CounterOpts{
			Name: "omen_remote_write_samples_rejected_total",
			Help: "Samples rejected from remote write, by type and reason.",
		}, []string{"type", "reason"}),
		inflight: f.NewGauge(prometheus.GaugeOpts{
			Name: "omen_remote_write_requests_inflight",
			Help: "Remote-write requests being handled.",
		}),
		overloaded: f.NewCounter(prometheus.CounterOpts{
			Name: "omen_remote_write_overloaded_requests_total",
			Help: "Remote-write requests refused with 503 because too many requests or bytes were in flight.",
		}),
		seriesRefused: f.NewCounter(prometheus.CounterOpts{
			Name: "omen_remote_write_series_refused_total",
			Help: "New series refused by remote write because the TSDB's head was at --write.max-head-series, once per request that carried them; their samples are in omen_remote_write_samples_rejected_total{reason=\"series_limit\"}.",
		}),
		seriesLimit: f.NewGauge(prometheus.GaugeOpts{
			Name: "omen_tsdb_head_series_limit",
			Help: "The bound on the TSDB's head series (--write.max-head-series) past which remote write refuses new series; 0: none. Compare with omen_tsdb_head_series.",
		}),
	}
	m.receivedFloat, m.receivedHist, m.receivedEx = m.received.WithLabelValues("float"),
		m.received.WithLabelValues("histogram"), m.received.WithLabelValues("exemplar")
	m.appendedFloat, m.appendedHist, m.appendedEx = m.appended.WithLabelValues("float"),
		m.appended.WithLabelValues("histogram"), m.appended.WithLabelValues("exemplar")
	// Every rejection a sender can cause starts at 0: a counter that
	// appears at its first value hides that first burst from rate() and
	// increase(), and so from OmenSamplesRejected.
	for typ, reasons := range rejectReasons {
		for _, r := range reasons {
			m.rejected.WithLabelValues(typ, r)
		}
	}
	return m
}

// rejectReasons are the reasons appendState.reject counts, by sample type.
var rejectReasons = map[string][]string{
	"float":     {"invalid_labels", "invalid_metadata", "invalid_timestamp", "too_far_in_future", "out_of_order", "duplicate", "too_old", "ha_too_many_clusters", "series_limit"},
	"histogram": {"invalid_timestamp", "too_far_in_future", "out_of_order", "duplicate", "too_old", "invalid_histogram", "histograms_disabled", "series_limit"},
	"exemplar":  {"invalid", "unsupported", "too_far_in_future", "unknown_series", "series_limit"},
}

// StorageReopened forgets the series references the handler cached: the
// TSDB was reopened and numbers its series anew (see Storage.OnReopen).
func (h *WriteHandler) StorageReopened() { h.refs.reset() }

// SeriesDeleted is told the references of series the head dropped
// (Storage.OnSeriesDeleted). Under MaxHeadSeries the handler forgets its
// cached references then: the head's Append, given the reference of a
// series it dropped, creates the series anew from its labels, and a
// series that came back after hours away was created past the limit
// without the check of a new series (admit). Forgotten, every series is
// looked up in the head once more, a request's worth of misses after a
// compaction that dropped series (one every 2 hours at most).
func (h *WriteHandler) SeriesDeleted(refs []storage.SeriesRef) {
	if h.opts.MaxHeadSeries > 0 && len(refs) > 0 {
		h.refs.reset()
	}
}

// NewWriteHandler returns the remote-write handler.
func NewWriteHandler(logger *slog.Logger, reg prometheus.Registerer, app storage.AppendableV2, opts WriteOptions) *WriteHandler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	d := DefaultWriteOptions()
	if opts.MaxRequestBytes <= 0 {
		opts.MaxRequestBytes = d.MaxRequestBytes
	}
	if opts.MaxDecodedBytes <= 0 {
		opts.MaxDecodedBytes = d.MaxDecodedBytes
	}
	if opts.MaxFutureDrift <= 0 {
		opts.MaxFutureDrift = d.MaxFutureDrift
	}
	if opts.MaxInflightRequests <= 0 {
		opts.MaxInflightRequests = d.MaxInflightRequests
	}
	if opts.MaxInflightBytes <= 0 {
		opts.MaxInflightBytes = d.MaxInflightBytes
	}
	if opts.MaxSeriesPerRequest <= 0 {
		opts.MaxSeriesPerRequest = d.MaxSeriesPerRequest
	}
	if opts.BodyTimeout <= 0 {
		opts.BodyTimeout = d.BodyTimeout
	}
	if opts.Labels == (LabelLimits{}) {
		opts.Labels = d.Labels
	}
	if opts.SeriesCacheSize == 0 {
		opts.SeriesCacheSize = d.SeriesCacheSize
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	h := &WriteHandler{logger: logger, app: app, opts: opts, metrics: newWriteMetrics(reg),
		slots: make(chan struct{}, opts.MaxInflightRequests), refs: newRefCache(opts.SeriesCacheSize)}
	if ha := opts.HA; ha.ReplicaLabel != "" {
		dha := DefaultHAOptions()
		if ha.ClusterLabel == "" {
			ha.ClusterLabel = dha.ClusterLabel
		}
		if ha.FailoverTimeout <= 0 {
			ha.FailoverTimeout = dha.FailoverTimeout
		}
		if ha.MaxClusters <= 0 {
			ha.MaxClusters = dha.MaxClusters
		}
		h.ha = newHATracker(logger, reg, ha)
	}
	if opts.HeadSeries == nil {
		h.opts.MaxHeadSeries = 0 // nothing to count with: no bound
	}
	h.metrics.seriesLimit.Set(float64(max(h.opts.MaxHeadSeries, 0)))
	seed := maphash.MakeSeed()
	h.hash = func(b []byte) uint64 { return maphash.Bytes(seed, b) }
	h.bufs.New = func() any { return &writeBuffers{} }
	return h
}

// httpError is an error with the status it is answered with.
type httpError struct {
	code int
	msg  string
	// overload marks a 503 of the admission bounds, answered with
	// overloaded's Retry-After and counted with them.
	overload bool
}

func (e *httpError) Error() string { return e.msg }

func errorf(code int, format string, args ...any) *httpError {
	return &httpError{code: code, msg: fmt.Sprintf(format, args...)}
}

// protoMsg returns the message type a Content-Type names (1.0 if none).
// It is parsed as RFC 9110 has it first: remoteapi.ParseProtoMsg splits on
// ";" and "=" alone, so "application/x-protobuf; proto=…" (a space, or a
// quoted value, both valid) lost its proto, and a 2.0 body read as 1.0
// was answered 204 with nothing stored.
func protoMsg(ct string) (remoteapi.WriteMessageType, error) {
	if ct == "" {
		return remoteapi.WriteV1MessageType, nil
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return "", fmt.Errorf("%q: %w", ct, err)
	}
	norm := mt
	if p, ok := params["proto"]; ok {
		norm += ";proto=" + p
	}
	return remoteapi.ParseProtoMsg(norm)
}

func (h *WriteHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "remote write: method not allowed, use POST", http.StatusMethodNotAllowed)
		return
	}
	// A sender sending the wrong Content-Type or Content-Encoding gets
	// 415 at every send: logged as other rejections are (it was not
	// logged at all; Prometheus logs each as an error).
	msgType, err := protoMsg(r.Header.Get("Content-Type"))
	if err != nil {
		h.answer(w, r, &httpError{code: http.StatusUnsupportedMediaType, msg: shorten("unsupported Content-Type: " + err.Error())})
		return
	}
	if enc := r.Header.Get("Content-Encoding"); enc != "" && !strings.EqualFold(enc, "snappy") {
		h.answer(w, r, &httpError{code: http.StatusUnsupportedMediaType, msg: shorten(fmt.Sprintf("unsupported Content-Encoding %q, want snappy", enc))})
		return
	}

	// Admission: a bounded number of bytes in flight, charged as they
	// are read and decoded, and of requests being decoded and appended,
	// taken once the body is in. A request beyond them gets a retriable
	// answer. A slow client holds only what it has sent: when the slot
	// and its declared length were taken before the body, a few
	// connections trickling bytes refused every other write for the body
	// timeout, and a decoded body (up to ~20 times its compressed bytes)
	// was not charged at all.
	// Not every ResponseWriter has deadlines (httptest's): then none.
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(h.opts.BodyTimeout))
	b := h.bufs.Get().(*writeBuffers)
	defer h.putBuffers(b)
	b.charged = 0
	defer func() { h.bytes.Add(-b.charged) }()
	body, herr := h.readBody(r, b)
	var st writeStats
	if herr == nil {
		select {
		case h.slots <- struct{}{}:
			func() {
				// Deferred: a handler that panics (net/http recovers it)
				// must not keep its slot for good.
				h.metrics.inflight.Inc()
				defer func() { h.metrics.inflight.Dec(); <-h.slots }()
				st, herr = h.handle(r, msgType, body, b)
			}()
		default:
			herr = &httpError{code: http.StatusServiceUnavailable, msg: "too many concurrent requests", overload: true}
		}
	}
	if msgType == remoteapi.WriteV2MessageType {
		w.Header().Set(headerSamplesWritten, strconv.Itoa(st.floats))
		w.Header().Set(headerHistogramsWritten, strconv.Itoa(st.histograms))
		w.Header().Set(headerExemplarsWritten, strconv.Itoa(st.exemplars))
	}
	if herr != nil && herr.overload {
		h.overloaded(w, herr.msg)
		return
	}
	if herr != nil {
		h.answer(w, r, herr)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// answer answers r with herr, a rejection (4xx) or a failure (5xx, with
// Retry-After for a 503), and logs it as such.
func (h *WriteHandler) answer(w http.ResponseWriter, r *http.Request, herr *httpError) {
	if herr.code >= 500 {
		h.logFailed(r, herr)
		if herr.code == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", "5")
		}
	} else if herr.code == http.StatusUnsupportedMediaType {
		h.logUnsupported(r, herr)
	} else {
		h.logRejected(r, herr)
	}
	http.Error(w, "remote write: "+herr.msg, herr.code)
}

// logRejected logs a rejected request: as a warning at most once per
// rejectLogEvery, with the count of those rejected since, and at debug
// otherwise. Prometheus counts every sample of a batch answered with a 4xx
// as failed and drops it, though omen stored all but the ones named: the
// reason belongs where an operator looks (it was at debug alone).
func (h *WriteHandler) logRejected(r *http.Request, herr *httpError) {
	h.logSpaced(&h.rejectLog, r, herr, "Remote write rejected", "Remote write rejected; the sender drops the request and counts all its samples failed (err says why, and what of it omen stored if anything)", "rejected_requests")
}

// logUnsupported logs a request of a Content-Type or Content-Encoding omen
// does not read (415), as logRejected does, but spaced on its own: it is
// a sender's configuration (a rotated one, a proxy that compresses), and
// a flood of 400s from another sender hid its first warning for up to
// rejectLogEvery. Nothing of such a request was read.
func (h *WriteHandler) logUnsupported(r *http.Request, herr *httpError) {
	h.logSpaced(&h.mediaLog, r, herr, "Remote write rejected", "Remote write rejected: its Content-Type or Content-Encoding is not one omen reads; nothing of it was read, and the sender drops it and counts all its samples failed", "rejected_requests")
}

// logFailed logs a request that failed with a 5xx, as logRejected does a
// rejected one: a cause lasts (a WAL replay at start, a full disk for
// hours) and every sender's every retry meets it, and each was a warning
// (4292 in a 3.6 s WAL replay, against a sender that did not back off).
func (h *WriteHandler) logFailed(r *http.Request, herr *httpError) {
	h.logSpaced(&h.failLog, r, herr, "Remote write failed; the sender will retry", "Remote write failed; the sender will retry", "failed_requests")
}

// logSpaced logs herr with warn as a warning if l says so, with the count
// of its kind since the last, and with debug at debug otherwise. Both name
// the sender of r (its address and User-Agent): with several senders, the
// reason alone did not say which one to fix.
func (h *WriteHandler) logSpaced(l *spaced.Log, r *http.Request, herr *httpError, debug, warn, count string) {
	n, now := l.Note(rejectLogEvery)
	// The User-Agent is the sender's, up to the server's 1 MiB of headers:
	// cut, so that the line stays one a log shipper takes.
	ua := trunc.UTF8(r.UserAgent(), maxUserAgentLen)
	if !now {
		h.logger.Debug(debug, "code", herr.code, "err", herr.msg, "remote", r.RemoteAddr, "user_agent", ua)
		return
	}
	h.logger.Warn(warn, "code", herr.code, "err", herr.msg, "remote", r.RemoteAddr, "user_agent", ua, count, n, "next_warning_in", rejectLogEvery)
}

func (h *WriteHandler) overloaded(w http.ResponseWriter, why string) {
	h.metrics.overloaded.Inc()
	w.Header().Set("Retry-After", "1")
	http.Error(w, "remote write: overloaded, retry later: "+why, http.StatusServiceUnavailable)
}

type writeStats struct{ floats, histograms, exemplars int }

// seriesLimit refuses a request of more than MaxSeriesPerRequest series
// whole, before anything of it is appended.
func (h *WriteHandler) seriesLimit(n int) *httpError {
	if n > h.opts.MaxSeriesPerRequest {
		return errorf(http.StatusBadRequest, "request has %d series, more than the limit of %d", n, h.opts.MaxSeriesPerRequest)
	}
	return nil
}

func (h *WriteHandler) handle(r *http.Request, msgType remoteapi.WriteMessageType, body []byte, b *writeBuffers) (writeStats, *httpError) {
	switch msgType {
	case remoteapi.WriteV1MessageType:
		if !h.generic && b.fast.decodeV1(body) {
			if herr := h.seriesLimit(len(b.fast.series)); herr != nil {
				return writeStats{}, herr
			}
			h.opts.Metadata.noteFastV1(body, b.fast.meta) // as the generic path below
			return h.withHA(func(q *haRequest) (writeStats, int) { return q.fastV1(&b.fast, body), len(b.fast.series) },
				func() (writeStats, *httpError) { return h.appendFastV1(r, b, body) })
		}
		// Histograms, exemplars or bytes the fast decoder does
		// not take: the generic path, which also words the decode errors.
		b.v1.Reset()
		if err := proto.Unmarshal(body, &b.v1); err != nil {
			return writeStats{}, errorf(http.StatusBadRequest, "decode remote-write 1.0 request: %v", err)
		}
		if herr := h.seriesLimit(len(b.v1.Timeseries)); herr != nil {
			return writeStats{}, herr
		}
		if len(b.v1.Timeseries) == 0 && len(b.v1.Metadata) == 0 && hasFields(body, 4, 5) {
			return writeStats{}, errorf(http.StatusBadRequest, "the body is a remote-write 2.0 request (symbols, timeseries), but its Content-Type says 1.0: send it with %q", "application/x-protobuf;proto=io.prometheus.write.v2.Request")
		}
		// 1.0 metadata is per family, not per series: not stored in the
		// TSDB, kept for /api/v1/metadata.
		h.opts.Metadata.noteV1(b.v1.Metadata)
		return h.withHA(func(q *haRequest) (dropped writeStats, left int) {
			b.v1.Timeseries, dropped = q.v1(b.v1.Timeseries)
			return dropped, len(b.v1.Timeseries)
		}, func() (writeStats, *httpError) { return h.appendV1(r, b) })
	default:
		if !h.generic && b.fast2.decodeV2(body) {
			if herr := h.seriesLimit(len(b.fast2.series)); herr != nil {
				return writeStats{}, herr
			}
			return h.withHA(func(q *haRequest) (writeStats, int) { return q.fastV2(&b.fast2, body), len(b.fast2.series) },
				func() (writeStats, *httpError) { return h.appendFastV2(r, b, body) })
		}
		b.v2.Reset()
		if err := proto.Unmarshal(body, &b.v2); err != nil {
			return writeStats{}, errorf(http.StatusBadRequest, "decode remote-write 2.0 request: %v", err)
		}
		if herr := h.seriesLimit(len(b.v2.Timeseries)); herr != nil {
			return writeStats{}, herr
		}
		if len(b.v2.Timeseries) == 0 && hasFields(body, 1, 3) {
			return writeStats{}, errorf(http.StatusBadRequest, "the body is a remote-write 1.0 request (timeseries, metadata), but its Content-Type says 2.0: send it with %q", "application/x-protobuf")
		}
		return h.withHA(func(q *haRequest) (dropped writeStats, left int) {
			b.v2.Timeseries, dropped = q.v2(b.v2.Timeseries, b.v2.Symbols)
			return dropped, len(b.v2.Timeseries)
		}, func() (writeStats, *httpError) { return h.appendV2(r, b) })
	}
}

// hasFields reports whether the top level of the protobuf message b has a
// field numbered a or c. Each version's fields are unknown to the other's
// schema, so a body of one version sent under the other's Content-Type (a
// proxy dropped or rewrote its proto= parameter) decodes as an empty
// request: answered 204, it stored nothing, and the sender dropped it.
func hasFields(b []byte, a, c protowire.Number) bool {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return false
		}
		if num == a || num == c {
			return true
		}
		b = b[n:]
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return false
		}
		b = b[n:]
	}
	return false
}

// withHA runs the HA pass over a decoded request (pass judges its series
// and returns what it dropped as another replica's and how many series
// are left), then appends what is left. A request of nothing but another
// replica's series is answered 202, as Mimir does, so the sender neither
// retries nor counts them as failed; series of one cluster too many are
// refused and the answer, a 400, names them, the rest stored.
func (h *WriteHandler) withHA(pass func(q *haRequest) (dropped writeStats, left int), appendFn func() (writeStats, *httpError)) (writeStats, *httpError) {
	if h.ha == nil {
		return appendFn()
	}
	q := h.ha.request(h.opts.Now())
	dropped, left := pass(q)
	var st writeStats
	var herr *httpError
	if left > 0 || q.refused > 0 {
		st, herr = appendFn()
	} else if dropped.floats+dropped.histograms > 0 {
		herr = &httpError{code: http.StatusAccepted, msg: "series of replica " + q.replica + " of HA cluster " + q.e.cluster +
			" dropped as duplicates: " + q.e.replica + " is the elected replica"}
	}
	if herr == nil || herr.code < 500 {
		st.floats, st.histograms, st.exemplars = st.floats+dropped.floats, st.histograms+dropped.histograms, st.exemplars+dropped.exemplars
	}
	if q.refused > 0 {
		h.metrics.rejected.WithLabelValues("float", "ha_too_many_clusters").Add(float64(q.refused))
		msg := fmt.Sprintf("%d sample(s) of HA cluster %q refused: more than %d clusters (--write.ha-max-clusters)", q.refused, q.refusedCluster, h.ha.opts.MaxClusters)
		switch {
		case herr == nil || herr.code == http.StatusAccepted:
			herr = errorf(http.StatusBadRequest, "%s", msg)
		case herr.code == http.StatusBadRequest:
			herr.msg += "; " + msg
		}
	}
	return st, herr
}

// readBody reads and snappy-decodes the body into b's buffers. The result is
// valid until b is reused.
func (h *WriteHandler) readBody(r *http.Request, b *writeBuffers) ([]byte, *httpError) {
	if r.ContentLength > h.opts.MaxRequestBytes {
		return nil, errorf(http.StatusRequestEntityTooLarge, "request body of %d bytes exceeds the limit of %d bytes", r.ContentLength, h.opts.MaxRequestBytes)
	}
	buf := bytes.NewBuffer(b.compressed[:0])
	// The reader lives in b: as a local it would escape, one allocation
	// per request.
	b.body = chargedReader{h: h, b: b, r: r.Body, left: h.opts.MaxRequestBytes + 1}
	n, err := buf.ReadFrom(&b.body)
	b.body.r = nil
	b.compressed = buf.Bytes()
	if err != nil {
		if herr, ok := err.(*httpError); ok {
			return nil, herr
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, errorf(http.StatusServiceUnavailable, "request body not received within %s", h.opts.BodyTimeout)
		}
		return nil, errorf(http.StatusBadRequest, "read request body: %v", err)
	}
	if n > h.opts.MaxRequestBytes {
		return nil, errorf(http.StatusRequestEntityTooLarge, "request body exceeds the limit of %d bytes", h.opts.MaxRequestBytes)
	}
	if n == 0 {
		return nil, errorf(http.StatusBadRequest, "empty request body")
	}
	dlen, err := snappy.DecodedLen(b.compressed)
	if err != nil {
		return nil, errorf(http.StatusBadRequest, "decode snappy: %v", err)
	}
	if dlen > h.opts.MaxDecodedBytes {
		return nil, errorf(http.StatusRequestEntityTooLarge, "decoded body of %d bytes exceeds the limit of %d bytes", dlen, h.opts.MaxDecodedBytes)
	}
	// Snappy's densest element is a 3-byte copy of 64 bytes, so a header
	// claiming more than 64/3 times the body is a lie; believing it would
	// let a few bytes allocate up to MaxDecodedBytes.
	if dlen > maxSnappyExpansion*len(b.compressed) {
		return nil, errorf(http.StatusBadRequest, "decode snappy: header claims %d decoded bytes, more than %d compressed bytes can hold", dlen, len(b.compressed))
	}
	if herr := h.charge(b, int64(dlen)); herr != nil {
		return nil, herr
	}
	if cap(b.decoded) < dlen {
		b.decoded = make([]byte, dlen)
	}
	out, err := snappy.Decode(b.decoded[:cap(b.decoded)], b.compressed)
	if err != nil {
		return nil, errorf(http.StatusBadRequest, "decode snappy: %v", err)
	}
	return out, nil
}

// errTooManyBytes refuses a request that would take the bytes in flight
// past MaxInflightBytes.
var errTooManyBytes = &httpError{code: http.StatusServiceUnavailable, msg: "too many bytes in flight", overload: true}

// charge adds n bytes of b's request to those in flight: over
// MaxInflightBytes it takes them back and refuses, unless the request is
// the only one in flight (a body that alone exceeds the bound is
// MaxRequestBytes's and MaxDecodedBytes's to refuse).
func (h *WriteHandler) charge(b *writeBuffers, n int64) *httpError {
	b.charged += n
	if t := h.bytes.Add(n); t > h.opts.MaxInflightBytes && t != b.charged {
		h.bytes.Add(-n)
		b.charged -= n
		return errTooManyBytes
	}
	return nil
}

// chargedReader reads a request body of at most left bytes, charging them
// to the bytes in flight as they come.
type chargedReader struct {
	h    *WriteHandler
	b    *writeBuffers
	r    io.Reader
	left int64
}

func (c *chargedReader) Read(p []byte) (int, error) {
	if c.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	if herr := c.h.charge(c.b, int64(n)); herr != nil {
		return n, herr
	}
	return n, err
}

// maxPooledBuffer bounds the buffers a request gives back to the pool: one
// large request (up to MaxDecodedBytes) kept its buffers' memory for as
// long as the pool kept them, as many times over as requests ran at once.
const maxPooledBuffer = 16 << 20

// maxPooledSeen bounds the seen table a request gives back (3 MiB; a
// request of a million series grew it to 96 MiB), and the ref-cache
// lookup's scratch (3 MiB).
const maxPooledSeen = 1 << 16

func (h *WriteHandler) putBuffers(b *writeBuffers) {
	// A request that panicked (net/http recovers it) gives back the room
	// it held for a new series, as it gives back its slot.
	b.state.settle()
	if cap(b.compressed) > maxPooledBuffer {
		b.compressed = nil
	}
	if cap(b.decoded) > maxPooledBuffer {
		b.decoded = nil
	}
	if len(b.state.seen) > maxPooledSeen {
		b.state.seen = nil
	}
	// The ref-cache lookup's scratch is 46 bytes a series: as the seen
	// table, it is not kept after a request of more series than that.
	if cap(b.lookup.ents) > maxPooledSeen {
		b.lookup, b.hashes, b.use = refLookup{}, nil, nil
	} else {
		b.lookup.release()
	}
	h.bufs.Put(b)
}

// appendState collects the outcome of one request's appends.
type appendState struct {
	h        *WriteHandler
	epoch    uint64 // the ref cache's when the request began
	app      storage.AppenderV2
	maxT     int64
	stats    writeStats
	problems []string
	nProblem int
	fatal    error
	// seen holds each series' newest sample in this request, for
	// inOrder: its slots are the request's where their gen is seenGen, so
	// a request starts with an empty table without clearing it. last is
	// the latest series looked up (a series' samples come together).
	seen    []seenSample
	seenGen uint32
	seenN   int
	last    *seenSample
	// getRef tells the series the head holds from new ones under
	// MaxHeadSeries (see admit); nil without the limit.
	getRef storage.GetRef
	// reserved is set while the request holds room in h.pending for a
	// new series admit let through (see settle).
	reserved bool
	// The new series refused at the limit: how many, their samples, the
	// head's series then, and the first one's labels, for the answer.
	limited, limitedSamples int
	limitHeld               uint64
	limitedFirst            string
}

// seenSample is a series' newest sample in a request: its time and value,
// or its histogram.
type seenSample struct {
	ref storage.SeriesRef
	gen uint32
	t   int64
	v   float64
	h   *histogram.Histogram
	fh  *histogram.FloatHistogram
}

// minSeen is the seen table's first size; it doubles when half full.
const minSeen = 1 << 10

// seenOf returns ref's slot in the request's table and whether it is new
// (its sample to be filled in).
func (a *appendState) seenOf(ref storage.SeriesRef) (*seenSample, bool) {
	if l := a.last; l != nil && l.ref == ref && l.gen == a.seenGen {
		return l, false
	}
	if 2*(a.seenN+1) > len(a.seen) {
		a.growSeen()
	}
	mask := uint64(len(a.seen) - 1)
	// Fibonacci hashing: head references are consecutive numbers.
	for i := (uint64(ref) * 0x9E3779B97F4A7C15) >> 32 & mask; ; i = (i + 1) & mask {
		sl := &a.seen[i]
		switch {
		case sl.gen != a.seenGen:
			*sl = seenSample{ref: ref, gen: a.seenGen}
			a.seenN++
			a.last = sl
			return sl, true
		case sl.ref == ref:
			a.last = sl
			return sl, false
		}
	}
}

// growSeen doubles the table, keeping this request's slots.
func (a *appendState) growSeen() {
	old := a.seen
	a.seen = make([]seenSample, max(minSeen, 2*len(old)))
	a.seenN, a.last = 0, nil
	gen := a.seenGen
	for i := range old {
		if o := &old[i]; o.gen == gen {
			sl, _ := a.seenOf(o.ref)
			*sl = *o
		}
	}
}

// resetSeen empties the table for a new request.
func (a *appendState) resetSeen() {
	a.seenGen++
	a.seenN, a.last = 0, nil
	if a.seenGen == 0 { // wrapped: slots of 2^32 requests ago would read as this one's
		clear(a.seen)
		a.seenGen = 1
	}
}

func (a *appendState) reject(typ, reason string, n int, format string, args ...any) {
	a.h.metrics.rejected.WithLabelValues(typ, reason).Add(float64(n))
	a.nProblem += n
	if len(a.problems) < maxReportedErrors {
		a.problems = append(a.problems, shorten(fmt.Sprintf(format, args...)))
	}
}

// admit decides whether a series the ref cache did not know may be
// appended under MaxHeadSeries, before its first sample is: it returns the
// head's reference of a series the head holds, or 0 for a new series while
// the head has room (the append creates it). A new series while the head
// holds MaxHeadSeries or more is refused, its nf float, nh histogram and
// ne exemplar samples counted, and admit returns false. Only series the
// cache missed come here, and only with the limit on (a.getRef): a known
// series' append costs what it did.
//
// The bound is exact under concurrent requests too. A new series takes
// its room first (h.pending, the series admitted and not yet seen in the
// head), then reads the head, and is admitted if the head and the room
// taken, its own included, fit the limit; the room is given back once an
// append returned the series' reference, or at the next admit or the
// request's end (settle). Of any two new series admitted, the one that
// took its room later counts the other: in pending while the other is
// not yet known to be in the head, in the head once it is. So the last
// admitted counts them all, and none is created past the limit. The
// price is a refusal or two too many near the limit while requests race
// there (room taken by series refused a moment later, or counted both in
// the head and in pending), which the next request gets; checked and
// appended one after the other, as before, requests appending at once
// each created one series past it (MaxInflightRequests - 1 in all, 7 of
// 8 racing requests, TestHeadSeriesLimitConcurrent).
func (a *appendState) admit(ls labels.Labels, nf, nh, ne int) (storage.SeriesRef, bool) {
	a.settle()
	if ref, _ := a.getRef.GetRef(ls, ls.Hash()); ref != 0 {
		return ref, true
	}
	taken := a.h.pending.Add(1)
	held := a.h.opts.HeadSeries()
	if held+uint64(taken) <= uint64(a.h.opts.MaxHeadSeries) {
		a.reserved = true
		return 0, true
	}
	a.h.pending.Add(-1)
	m := a.h.metrics
	m.seriesRefused.Inc()
	for _, r := range [...]struct {
		typ string
		n   int
	}{{"float", nf}, {"histogram", nh}, {"exemplar", ne}} {
		if r.n > 0 {
			m.rejected.WithLabelValues(r.typ, "series_limit").Add(float64(r.n))
		}
	}
	if a.limited == 0 {
		a.limitedFirst = shorten(ls.String())
	}
	a.limited++
	a.limitedSamples += nf + nh
	a.nProblem += nf + nh
	a.limitHeld = held
	return 0, false
}

// settle gives back the room admit took for a new series: it is in the
// head once an append returned its reference, and if none did (its
// samples all refused), it never will be by this request.
func (a *appendState) settle() {
	if a.reserved {
		a.reserved = false
		a.h.pending.Add(-1)
	}
}

// sample appends one float or histogram sample and classifies a failure.
// It returns the series ref for the next append of the same series. st is
// a 2.0 sample's start timestamp (0: none), which the head turns into a
// zero sample when Options.StartTimestampZeroIngestion is set, and the
// scorers use to tell a counter's reset.
func (a *appendState) sample(ref storage.SeriesRef, ls labels.Labels, st, t int64, v float64, hist *histogram.Histogram, fh *histogram.FloatHistogram, opts storage.AppendV2Options) storage.SeriesRef {
	typ := "float"
	if hist != nil || fh != nil {
		typ = "histogram"
	}
	if t <= 0 {
		a.reject(typ, "invalid_timestamp", 1, "series %s: timestamp %d is not after the Unix epoch", ls, t)
		return ref
	}
	if t > a.maxT {
		a.reject(typ, "too_far_in_future", 1, "series %s: timestamp %d is more than %s in the future", ls, t, a.h.opts.MaxFutureDrift)
		return ref
	}
	// As Prometheus's receiver: a schema reserved for finer exponential
	// buckets than the head stores (9 to 52) is reduced to the finest it
	// does, rather than the sample refused.
	if err := reduceReservedSchema(hist, fh); err != nil {
		a.reject(typ, "invalid_histogram", 1, "series %s: sample at %d: %v", ls, t, err)
		return ref
	}
	newRef, err := a.app.Append(ref, ls, st, t, v, hist, fh, opts)
	if a.reserved && newRef != 0 {
		a.settle() // in the head now, counted by it
	}
	if err != nil && !isPartial(err) {
		reason := rejectReason(err)
		if reason == "" {
			a.fatal = err
			return ref
		}
		a.reject(typ, reason, 1, "series %s: sample at %d: %v", ls, t, err)
		return ref
	}
	if !a.inOrder(newRef, typ, ls, t, v, hist, fh) {
		return newRef
	}
	if typ == "float" {
		a.stats.floats++
	} else {
		a.stats.histograms++
	}
	return newRef
}

// inOrder checks a sample the head took against the one before it in the
// request if both are of one series (the samples of a series' entry, or
// its entries back to back, as Prometheus sends them), and reports
// whether it counts as written. The head checks a request's samples
// against the stored ones as they are appended, but against each other
// only at commit, where it drops an older one or another value at the
// same time silently: the sender was told they were written. They are answered 400
// here instead, as they would be a request later; the head's commit drops
// them as before. With an out-of-order window the head keeps or drops an
// older one by its own newest time and out-of-order chunks, which this
// does not repeat: it is left to the head, as before. A repeat of the
// series' newest sample (same time, kind and value) is no error but is
// stored once, so it is not counted again. A series' samples are compared
// in entries apart too (Prometheus sends one sample per entry, a series'
// next several entries on): another sender's out-of-order ones there were
// dropped as silently.
func (a *appendState) inOrder(ref storage.SeriesRef, typ string, ls labels.Labels, t int64, v float64, hist *histogram.Histogram, fh *histogram.FloatHistogram) bool {
	if ref == 0 {
		return true
	}
	last, fresh := a.seenOf(ref)
	switch {
	case fresh || t > last.t:
		last.t, last.v, last.h, last.fh = t, v, hist, fh
		return true
	case t < last.t && a.h.opts.OutOfOrderTimeWindow == 0:
		a.reject(typ, "out_of_order", 1, "series %s: sample at %d: %v (older than one before it in the request)", ls, t, storage.ErrOutOfOrderSample)
		return false
	case t == last.t:
		// The same sample again is no error, but stored once it is not
		// counted written twice.
		if !last.same(v, hist, fh) {
			a.reject(typ, "duplicate", 1, "series %s: sample at %d: %v (another value earlier in the request)", ls, t, storage.ErrDuplicateSampleForTimestamp)
		}
		return false
	}
	return true
}

// same reports whether a sample is the series' newest in the request, of
// the same kind (a float and a histogram at one time are two samples, of
// which the head keeps one) and value: a repeat the head stores once,
// rightly.
func (l *seenSample) same(v float64, hist *histogram.Histogram, fh *histogram.FloatHistogram) bool {
	switch {
	case hist != nil:
		return l.h != nil && hist.Equals(l.h)
	case fh != nil:
		return l.fh != nil && fh.Equals(l.fh)
	}
	return l.h == nil && l.fh == nil && math.Float64bits(v) == math.Float64bits(l.v)
}

// isPartial reports whether err is a storage.AppendPartialError: the
// sample is stored. It is a function of its own so that the target of
// errors.As, which escapes, is allocated only for an error.
func isPartial(err error) bool {
	var partial *storage.AppendPartialError
	return errors.As(err, &partial)
}

// rejectReason names a client error the TSDB reports, or "" for errors a
// retry could fix.
func rejectReason(err error) string {
	switch {
	case errors.Is(err, storage.ErrOutOfOrderSample):
		return "out_of_order"
	case errors.Is(err, storage.ErrDuplicateSampleForTimestamp):
		return "duplicate"
	case errors.Is(err, storage.ErrOutOfBounds), errors.Is(err, storage.ErrTooOldSample):
		return "too_old"
	case errors.Is(err, storage.ErrNativeHistogramsDisabled):
		return "histograms_disabled"
	}
	var he histogram.Error
	if errors.As(err, &he) {
		return "invalid_histogram"
	}
	return ""
}

// exemplars appends a series' exemplars. ref is 0 when the entry had no
// sample appended: Prometheus's remote-write 1.0 sender puts every exemplar
// in an entry of its own, without samples, so the head finds the series by
// its labels (as Prometheus's receiver has it do). It reports whether the
// head has no such series, so that the exemplars were dropped for that.
func (a *appendState) exemplars(ref storage.SeriesRef, ls labels.Labels, ex []exemplar.Exemplar) (unknownSeries bool) {
	if len(ex) == 0 {
		return false
	}
	ea, ok := a.app.(storage.ExemplarAppenderV2)
	if !ok {
		a.reject("exemplar", "unsupported", len(ex), "series %s: exemplars not supported by the storage", ls)
		return false
	}
	if future := a.future(ex); future > 0 {
		// As Prometheus's receiver: an exemplar past the samples' limit
		// would sit ahead of every later one in the exemplar ring.
		a.h.metrics.rejected.WithLabelValues("exemplar", "too_far_in_future").Add(float64(future))
		kept := make([]exemplar.Exemplar, 0, len(ex)-future)
		for _, e := range ex {
			if e.Ts <= a.maxT {
				kept = append(kept, e)
			}
		}
		if ex = kept; len(ex) == 0 {
			return false
		}
	}
	if _, err := ea.AppendExemplars(ref, ls, ex); err != nil {
		var partial *storage.AppendPartialError
		if errors.As(err, &partial) {
			a.stats.exemplars += len(ex) - len(partial.ExemplarErrors)
			a.h.metrics.rejected.WithLabelValues("exemplar", "invalid").Add(float64(len(partial.ExemplarErrors)))
			return false
		}
		if errors.Is(err, storage.ErrNotFound) {
			a.h.metrics.rejected.WithLabelValues("exemplar", "unknown_series").Add(float64(len(ex)))
			return true
		}
		// Exemplars are auxiliary, as in Prometheus: a failure never fails the request.
		a.h.metrics.rejected.WithLabelValues("exemplar", "invalid").Add(float64(len(ex)))
		return false
	}
	a.stats.exemplars += len(ex)
	return false
}

// future counts the exemplars later than the samples' limit, maxT.
func (a *appendState) future(ex []exemplar.Exemplar) int {
	n := 0
	for _, e := range ex {
		if e.Ts > a.maxT {
			n++
		}
	}
	return n
}

// shorten cuts the middle out of a problem longer than maxProblemLen: its
// start names the series, its end the reason.
func shorten(msg string) string {
	if len(msg) <= maxProblemLen {
		return msg
	}
	half := maxProblemLen / 2
	return strings.ToValidUTF8(msg[:half], "") + " … " + strings.ToValidUTF8(msg[len(msg)-half:], "")
}

// finish commits and turns the outcome into the answer.
func (a *appendState) finish() (writeStats, *httpError) {
	a.settle()
	if a.fatal != nil {
		_ = a.app.Rollback()
		return writeStats{}, storageError(a.fatal)
	}
	if err := a.app.Commit(); err != nil {
		return writeStats{}, storageError(err)
	}
	m := a.h.metrics
	m.appendedFloat.Add(float64(a.stats.floats))
	if a.stats.histograms > 0 {
		m.appendedHist.Add(float64(a.stats.histograms))
	}
	if a.stats.exemplars > 0 {
		m.appendedEx.Add(float64(a.stats.exemplars))
	}
	if a.nProblem > 0 {
		more := ""
		if n := a.nProblem - a.limitedSamples - len(a.problems); n > 0 {
			more = fmt.Sprintf(" (and %d more)", n)
		}
		if a.limited > 0 {
			// One line for all the series the limit refused: named first,
			// as what the sender's operator has to act on.
			limit := fmt.Sprintf("%d new series refused: the head holds %d series, its limit (--write.max-head-series) is %d; the first: %s",
				a.limited, a.limitHeld, a.h.opts.MaxHeadSeries, a.limitedFirst)
			a.problems = append([]string{limit}, a.problems...)
		}
		return a.stats, errorf(http.StatusBadRequest, "%d sample(s) rejected, the rest stored: %s%s",
			a.nProblem, strings.Join(a.problems, "; "), more)
	}
	if len(a.problems) > 0 {
		// Only series without samples: nothing of theirs to count.
		return a.stats, errorf(http.StatusBadRequest, "request refused in part, the rest stored: %s", strings.Join(a.problems, "; "))
	}
	return a.stats, nil
}

func storageError(err error) *httpError {
	// Every storage failure that is not the client's fault is worth a retry:
	// the TSDB still opening, a full disk, a read-only path.
	return errorf(http.StatusServiceUnavailable, "store samples: %v", err)
}

// begin starts the request's transaction; its state lives in b, so that
// a request allocates none of its own.
func (h *WriteHandler) begin(r *http.Request, b *writeBuffers) *appendState {
	a := &b.state
	var epoch uint64
	if h.refs != nil {
		// Before the appender: see refCache.reset.
		epoch = h.refs.epoch.Load()
	}
	*a = appendState{
		h:        h,
		epoch:    epoch,
		app:      h.app.AppenderV2(r.Context()),
		maxT:     h.opts.Now().Add(h.opts.MaxFutureDrift).UnixMilli(),
		problems: a.problems[:0],
		seen:     a.seen,
		seenGen:  a.seenGen,
	}
	if h.opts.MaxHeadSeries > 0 {
		a.getRef, _ = a.app.(storage.GetRef)
	}
	a.resetSeen()
	return a
}

// count adds a request's received samples to the metrics, once per request.
func (m *writeMetrics) count(floats, hists, exemplars int) {
	m.receivedFloat.Add(float64(floats))
	if hists > 0 {
		m.receivedHist.Add(float64(hists))
	}
	if exemplars > 0 {
		m.receivedEx.Add(float64(exemplars))
	}
}

func (h *WriteHandler) appendV1(r *http.Request, b *writeBuffers) (writeStats, *httpError) {
	var nf, nh, ne int
	for i := range b.v1.Timeseries {
		ts := &b.v1.Timeseries[i]
		nf, nh, ne = nf+len(ts.Samples), nh+len(ts.Histograms), ne+len(ts.Exemplars)
	}
	h.metrics.count(nf, nh, ne)
	a := h.begin(r, b)
	lc := labelChecker{limits: h.opts.Labels}
	for i := range b.v1.Timeseries {
		ts := &b.v1.Timeseries[i]
		lc.reset()
		for _, l := range ts.Labels {
			lc.add(l.Name, l.Value)
		}
		if err := lc.check(); err != nil {
			n := len(ts.Samples) + len(ts.Histograms)
			a.reject("float", "invalid_labels", n, "series %d %s: %v", i, v1LabelsString(ts.Labels), err)
			continue
		}
		ls, err := lc.labels(ts.ToLabels(&b.builder, nil))
		if err != nil {
			n := len(ts.Samples) + len(ts.Histograms)
			a.reject("float", "invalid_labels", n, "series %d %s: %v", i, v1LabelsString(ts.Labels), err)
			continue
		}
		var ref storage.SeriesRef
		if a.getRef != nil && len(ts.Samples)+len(ts.Histograms) > 0 {
			var ok bool
			if ref, ok = a.admit(ls, len(ts.Samples), len(ts.Histograms), len(ts.Exemplars)); !ok {
				continue
			}
		}
		for _, s := range ts.Samples {
			ref = a.sample(ref, ls, 0, s.Timestamp, s.Value, nil, nil, storage.AppendV2Options{})
			if a.fatal != nil {
				return a.finish()
			}
		}
		for _, hp := range ts.Histograms {
			if hp.IsFloatHistogram() {
				ref = a.sample(ref, ls, 0, hp.Timestamp, 0, nil, hp.ToFloatHistogram(), storage.AppendV2Options{})
			} else {
				ref = a.sample(ref, ls, 0, hp.Timestamp, 0, hp.ToIntHistogram(), nil, storage.AppendV2Options{})
			}
			if a.fatal != nil {
				return a.finish()
			}
		}
		if len(ts.Exemplars) > 0 {
			b.exemplars = b.exemplars[:0]
			for _, e := range ts.Exemplars {
				b.exemplars = append(b.exemplars, e.ToExemplar(&b.builder, nil))
			}
			sortExemplars(b.exemplars)
			a.exemplars(ref, ls, b.exemplars)
		}
	}
	return a.finish()
}

func (h *WriteHandler) appendV2(r *http.Request, b *writeBuffers) (writeStats, *httpError) {
	syms := b.v2.Symbols
	if len(syms) > 0 && syms[0] != "" {
		return writeStats{}, errorf(http.StatusBadRequest, "symbols table must start with the empty string")
	}
	var nf, nh, ne int
	for i := range b.v2.Timeseries {
		ts := &b.v2.Timeseries[i]
		nf, nh, ne = nf+len(ts.Samples), nh+len(ts.Histograms), ne+len(ts.Exemplars)
	}
	h.metrics.count(nf, nh, ne)
	a := h.begin(r, b)
	lc := labelChecker{limits: h.opts.Labels}
	for i := range b.v2.Timeseries {
		ts := &b.v2.Timeseries[i]
		n := len(ts.Samples) + len(ts.Histograms)
		refs := ts.LabelsRefs
		if len(refs)%2 != 0 {
			a.reject("float", "invalid_labels", n, "series %d: odd number of label references", i)
			continue
		}
		lc.reset()
		bad := false
		for j := 0; j < len(refs); j += 2 {
			if int(refs[j]) >= len(syms) || int(refs[j+1]) >= len(syms) {
				bad = true
				break
			}
			lc.add(syms[refs[j]], syms[refs[j+1]])
		}
		if bad {
			a.reject("float", "invalid_labels", n, "series %d: label reference outside the symbols table (size %d)", i, len(syms))
			continue
		}
		if err := lc.check(); err != nil {
			a.reject("float", "invalid_labels", n, "series %d: %v", i, err)
			continue
		}
		// A help or unit reference outside the table is as malformed as a
		// label reference there: the series is refused, not stored with its
		// metadata silently dropped.
		md, err := ts.ToMetadata(syms)
		if err != nil {
			a.reject("float", "invalid_metadata", n, "series %d: metadata: %v", i, err)
			continue
		}
		ls, _ := ts.ToLabels(&b.builder, syms)
		if ls, err = lc.labels(ls); err != nil {
			a.reject("float", "invalid_labels", n, "series %d: %v", i, err)
			continue
		}
		if n == 0 && len(ts.Exemplars) == 0 {
			// A series that carries nothing is a sender's bug, not a
			// way to send metadata (answered 204, it went unnoticed):
			// the spec's MUST. One with exemplars alone is how
			// Prometheus's own 2.0 sender sends exemplars (an entry of
			// their own per series, queue_manager.go's
			// populateV2TimeSeries), stored as with 1.0; the reference
			// handler refuses it (prometheus#17857).
			a.reject("float", "empty_series", 0, "series %d %s: no samples, histograms or exemplars; a remote-write 2.0 series must carry at least one", i, ls)
			continue
		}
		var ref storage.SeriesRef
		if a.getRef != nil && n > 0 {
			var ok bool
			if ref, ok = a.admit(ls, len(ts.Samples), len(ts.Histograms), len(ts.Exemplars)); !ok {
				continue
			}
		}
		h.opts.Metadata.noteSeries(ls.Get(model.MetricNameLabel), md)
		opts := storage.AppendV2Options{Metadata: md}
		for _, s := range ts.Samples {
			ref = a.sample(ref, ls, s.StartTimestamp, s.Timestamp, s.Value, nil, nil, opts)
			if a.fatal != nil {
				return a.finish()
			}
		}
		for _, hp := range ts.Histograms {
			if hp.IsFloatHistogram() {
				ref = a.sample(ref, ls, hp.StartTimestamp, hp.Timestamp, 0, nil, hp.ToFloatHistogram(), opts)
			} else {
				ref = a.sample(ref, ls, hp.StartTimestamp, hp.Timestamp, 0, hp.ToIntHistogram(), nil, opts)
			}
			if a.fatal != nil {
				return a.finish()
			}
		}
		if len(ts.Exemplars) > 0 {
			b.exemplars = b.exemplars[:0]
			for _, e := range ts.Exemplars {
				ex, err := e.ToExemplar(&b.builder, syms)
				if err != nil {
					// Exemplars are auxiliary (see appendState.exemplars):
					// counted and left out (the written header reports it),
					// never failing a request whose samples were stored.
					a.h.metrics.rejected.WithLabelValues("exemplar", "invalid").Inc()
					continue
				}
				b.exemplars = append(b.exemplars, ex)
			}
			sortExemplars(b.exemplars)
			if a.exemplars(ref, ls, b.exemplars) && n == 0 {
				// Exemplars alone, of a series no sample of which was
				// ever stored: nothing of the entry could be kept, and
				// a 204 (with Exemplars-Written short) told the sender
				// it was. A 400 names it, as Prometheus's receiver does
				// for every such entry and the compliance suite expects
				// (exemplars_without_data); those of a stored series,
				// as Prometheus's sender sends them, are still kept.
				a.reject("exemplar", "unknown_series", 0, "series %d %s: exemplars without samples or histograms, of a series not stored", i, ls)
			}
		}
	}
	return a.finish()
}

func sortExemplars(ex []exemplar.Exemplar) {
	for i := 1; i < len(ex); i++ {
		for j := i; j > 0 && ex[j].Ts < ex[j-1].Ts; j-- {
			ex[j], ex[j-1] = ex[j-1], ex[j]
		}
	}
}

func v1LabelsString(ls []prompb.Label) string {
	var sb strings.Builder
	sb.WriteByte('{')
	for i, l := range ls {
		if i > 0 {
			sb.WriteString(", ")
		}
		// Quoted where Prometheus's labels.String quotes it: raw, an
		// invalid name put its bytes in the answer, and a UTF-8 name
		// with quotes and commas read as more labels.
		if model.LegacyValidation.IsValidLabelName(l.Name) {
			sb.WriteString(l.Name)
		} else {
			sb.WriteString(strconv.Quote(l.Name))
		}
		sb.WriteByte('=')
		sb.WriteString(strconv.Quote(l.Value))
	}
	sb.WriteByte('}')
	return sb.String()
}

// Rejected returns the samples rejected so far, summed by reason over the
// sample types, for status pages.
func (h *WriteHandler) Rejected() map[string]float64 {
	out := map[string]float64{}
	ch := make(chan prometheus.Metric, 16)
	go func() { h.metrics.rejected.Collect(ch); close(ch) }()
	for m := range ch {
		var pb dto.Metric
		if err := m.Write(&pb); err != nil {
			continue
		}
		for _, lp := range pb.GetLabel() {
			if v := pb.GetCounter().GetValue(); lp.GetName() == "reason" && v > 0 {
				out[lp.GetValue()] += v
			}
		}
	}
	return out
}

// appendFastV1 appends a request decoded by fastV1. Per series, the hash of
// its raw label bytes is looked up in the ref cache; on a hit whose labels
// compare equal, the samples go to the cached reference with the cached
// (already validated) labels. Only a miss validates and builds labels, and
// its reference is cached once the head has the series.
func (h *WriteHandler) appendFastV1(r *http.Request, b *writeBuffers, body []byte) (writeStats, *httpError) {
	d := &b.fast
	h.metrics.count(len(d.samples), 0, 0)
	a := h.begin(r, b)
	if h.refs != nil {
		h.lookupV1(b, body, a.epoch)
	}
	lc := labelChecker{limits: h.opts.Labels}
	for i := range d.series {
		s := &d.series[i]
		fl := d.labels[s.labelsFrom:s.labelsTo]
		var (
			ref    storage.SeriesRef
			ls     labels.Labels
			hash   uint64
			cached bool
		)
		cacheable := h.refs != nil && s.contiguous
		if cacheable {
			hash = b.hashes[i]
			if b.lookup.found[i] != notFound {
				e := &b.lookup.ents[i]
				ref, ls, cached = e.ref, e.ls, true
			}
		}
		if !cached {
			lc.reset()
			for _, l := range fl {
				lc.add(str(body, l.nameFrom, l.nameTo), str(body, l.valueFrom, l.valueTo))
			}
			if err := lc.check(); err != nil {
				a.reject("float", "invalid_labels", int(s.samplesTo-s.samplesFrom), "series %d %s: %v", i, fastLabelsString(body, fl), err)
				continue
			}
			// The builder copies the bytes: ls outlives the body.
			b.builder.Reset()
			for _, l := range fl {
				b.builder.Add(str(body, l.nameFrom, l.nameTo), str(body, l.valueFrom, l.valueTo))
			}
			b.builder.Sort()
			var err error
			if ls, err = lc.labels(b.builder.Labels()); err != nil {
				a.reject("float", "invalid_labels", int(s.samplesTo-s.samplesFrom), "series %d %s: %v", i, fastLabelsString(body, fl), err)
				continue
			}
			// A series with an empty label value is not cached: its raw
			// labels are not its stored ones, so a lookup never matches.
			// One with its labels out of order is (vmagent puts a
			// target's job and instance last): lookupV1 compares them as
			// a set.
			cacheable = cacheable && !lc.empty
			if a.getRef != nil && s.samplesTo > s.samplesFrom {
				var ok bool
				if ref, ok = a.admit(ls, int(s.samplesTo-s.samplesFrom), 0, 0); !ok {
					continue
				}
			}
		}
		first := ref
		for _, smp := range d.samples[s.samplesFrom:s.samplesTo] {
			ref = a.sample(ref, ls, 0, smp.t, smp.v, nil, nil, storage.AppendV2Options{})
			if a.fatal != nil {
				return a.finish()
			}
		}
		if cacheable && ref != 0 && (!cached || ref != first) {
			h.refs.put(hash, a.epoch, refEntry{ref: ref, ls: ls})
		}
	}
	return a.finish()
}

// lookupV1 looks up a request's series in the ref cache before any of
// them is appended, in passes that each do one thing for all series:
// hash the raw labels, probe the cache (refCache.getAll), compare the
// entries' labels. Looked up one at a time between appends, every
// series' probe and its entry's labels were cache misses the CPU waited
// for one after the other; in passes of their own they overlap. A hit
// whose labels differ (a hash collision) is marked notFound: the series
// is then validated and appended by its labels, and its entry replaced.
//
// A series that comes twice in a request and is new misses both times
// (the first's entry is put after the lookups): it is appended by its
// labels twice, which the head resolves to the one series.
func (h *WriteHandler) lookupV1(b *writeBuffers, body []byte, epoch uint64) {
	d := &b.fast
	b.hashes = resize(b.hashes, len(d.series))
	b.use = resize(b.use, len(d.series))
	for i := range d.series {
		s := &d.series[i]
		if b.use[i] = s.contiguous; s.contiguous {
			b.hashes[i] = h.hash(body[s.rawFrom:s.rawTo])
		}
	}
	h.refs.getAll(b.hashes, b.use, epoch, &b.lookup)
	for i := range d.series {
		s := &d.series[i]
		if b.lookup.found[i] == notFound {
			continue
		}
		fl, ls := d.labels[s.labelsFrom:s.labelsTo], b.lookup.ents[i].ls
		if !sameLabels(body, fl, ls) && !sameLabelSet(body, fl, ls) {
			b.lookup.found[i] = notFound
		}
	}
}

// sameLabels reports whether the raw labels fl of body are exactly ls, in
// order: what makes a ref-cache hit safe under hash collisions.
func sameLabels(body []byte, fl []fastLabel, ls labels.Labels) bool {
	i, same := 0, true
	ls.Range(func(l labels.Label) {
		if !same {
			return
		}
		if i >= len(fl) || l.Name != str(body, fl[i].nameFrom, fl[i].nameTo) || l.Value != str(body, fl[i].valueFrom, fl[i].valueTo) {
			same = false
			return
		}
		i++
	})
	return same && i == len(fl)
}

// sameLabelSet reports whether the raw labels fl of body, in any order,
// are exactly ls: each raw label is one of ls, no two the same one, and as
// many. The ref cache's check for a sender that does not sort its labels
// (vmagent), whose entries hold them sorted; sameLabels fails on those at
// their first misplaced name. Quadratic in the labels, but a series has
// few: still a fraction of building, validating and looking them up in
// the head (BenchmarkWriteV1VMAgent).
func sameLabelSet(body []byte, fl []fastLabel, ls labels.Labels) bool {
	if len(fl) != ls.Len() || len(fl) > 64 {
		return false
	}
	var used uint64
	for _, f := range fl {
		name, value := str(body, f.nameFrom, f.nameTo), str(body, f.valueFrom, f.valueTo)
		j, found := 0, -1
		ls.Range(func(l labels.Label) {
			if found < 0 && l.Name == name && l.Value == value {
				found = j
			}
			j++
		})
		if found < 0 || used&(1<<found) != 0 {
			return false
		}
		used |= 1 << found
	}
	return true
}

func fastLabelsString(body []byte, fl []fastLabel) string {
	ls := make([]prompb.Label, len(fl))
	for i, l := range fl {
		ls[i] = prompb.Label{Name: string(body[l.nameFrom:l.nameTo]), Value: string(body[l.valueFrom:l.valueTo])}
	}
	return v1LabelsString(ls)
}

// appendFastV2 appends a request decoded by fastV2 with appendV2's results:
// the same checks in the same order, the same rejects and messages, the
// same labels and metadata. As appendFastV1 does, it looks each series up
// in the ref cache, under the hash of its label strings as resolved from
// the symbols (references are per request; the strings are what identify
// the series), and uses a hit only when those strings equal the cached
// labels. The metadata passed to the storage must outlive the body (the
// storage may keep its strings): it is copied once per request per distinct
// metadata, and kept in the cache entry, so that a steady stream of
// requests with unchanged metadata copies none.
func (h *WriteHandler) appendFastV2(r *http.Request, b *writeBuffers, body []byte) (writeStats, *httpError) {
	d := &b.fast2
	if len(d.symbols) > 0 && d.symbols[0].from != d.symbols[0].to {
		return writeStats{}, errorf(http.StatusBadRequest, "symbols table must start with the empty string")
	}
	h.metrics.count(len(d.samples), 0, 0)
	a := h.begin(r, b)
	if len(b.metas) > 0 {
		clear(b.metas)
	}
	if h.refs != nil {
		h.lookupV2(b, body, a.epoch)
	}
	lc := labelChecker{limits: h.opts.Labels}
	nsyms := uint32(len(d.symbols))
	for i := range d.series {
		s := &d.series[i]
		n := int(s.samplesTo - s.samplesFrom)
		refs := d.refs[s.refsFrom:s.refsTo]
		if len(refs)%2 != 0 {
			a.reject("float", "invalid_labels", n, "series %d: odd number of label references", i)
			continue
		}
		if !inTable(refs, nsyms) {
			a.reject("float", "invalid_labels", n, "series %d: label reference outside the symbols table (size %d)", i, len(d.symbols))
			continue
		}
		var (
			ref         storage.SeriesRef
			ls          labels.Labels
			hash        uint64
			e           refEntry
			cached      bool
			uncacheable bool
		)
		if h.refs != nil {
			hash = b.hashes[i]
			if b.lookup.found[i] != notFound {
				e = b.lookup.ents[i]
				ref, ls, cached = e.ref, e.ls, true
			}
		}
		if !cached {
			lc.reset()
			for j := 0; j < len(refs); j += 2 {
				lc.add(d.sym(body, refs[j]), d.sym(body, refs[j+1]))
			}
			if err := lc.check(); err != nil {
				a.reject("float", "invalid_labels", n, "series %d: %v", i, err)
				continue
			}
		}
		if err := d.metadataError(body, s.meta); err != nil {
			a.reject("float", "invalid_metadata", n, "series %d: metadata: %v", i, err)
			continue
		}
		if !cached {
			// The builder copies the bytes: ls outlives the body.
			b.builder.Reset()
			for j := 0; j < len(refs); j += 2 {
				b.builder.Add(d.sym(body, refs[j]), d.sym(body, refs[j+1]))
			}
			b.builder.Sort()
			var err error
			if ls, err = lc.labels(b.builder.Labels()); err != nil {
				a.reject("float", "invalid_labels", n, "series %d: %v", i, err)
				continue
			}
			uncacheable = !lc.raw() // see appendFastV1
			if a.getRef != nil && n > 0 {
				var ok bool
				if ref, ok = a.admit(ls, n, 0, 0); !ok {
					continue
				}
			}
		}
		typ, help, unit := metricType(s.meta.typ), d.sym(body, s.meta.help), d.sym(body, s.meta.unit)
		md := e.meta
		if !cached || md == nil || md.Type != typ || md.Help != help || md.Unit != unit {
			md = b.metadata(s.meta, typ, help, unit)
			h.opts.Metadata.noteSeries(ls.Get(model.MetricNameLabel), *md) // new series or new metadata only: off the hot path
		}
		opts := storage.AppendV2Options{Metadata: *md}
		first := ref
		for _, smp := range d.samples[s.samplesFrom:s.samplesTo] {
			ref = a.sample(ref, ls, smp.st, smp.t, smp.v, nil, nil, opts)
			if a.fatal != nil {
				return a.finish()
			}
		}
		if h.refs != nil && !uncacheable && ref != 0 && (!cached || ref != first || md != e.meta) {
			h.refs.put(hash, a.epoch, refEntry{ref: ref, ls: ls, meta: md})
		}
	}
	return a.finish()
}

// lookupV2 is lookupV1 for a 2.0 request: the key of a series is its
// label strings as resolved from the symbols, each followed by 0xff, which
// is in no valid UTF-8 string, so that the key of valid labels is
// unambiguous. A series whose references are odd in number or outside the
// table is not looked up: the appends reject it.
func (h *WriteHandler) lookupV2(b *writeBuffers, body []byte, epoch uint64) {
	d := &b.fast2
	nsyms := uint32(len(d.symbols))
	b.hashes = resize(b.hashes, len(d.series))
	b.use = resize(b.use, len(d.series))
	for i := range d.series {
		refs := d.refs[d.series[i].refsFrom:d.series[i].refsTo]
		if b.use[i] = len(refs)%2 == 0 && inTable(refs, nsyms); !b.use[i] {
			continue
		}
		b.key = b.key[:0]
		for _, sr := range refs {
			b.key = append(append(b.key, d.sym(body, sr)...), 0xff)
		}
		b.hashes[i] = h.hash(b.key)
	}
	h.refs.getAll(b.hashes, b.use, epoch, &b.lookup)
	for i := range d.series {
		if b.lookup.found[i] != notFound && !d.sameLabels(body, d.refs[d.series[i].refsFrom:d.series[i].refsTo], b.lookup.ents[i].ls) {
			b.lookup.found[i] = notFound
		}
	}
}

// inTable reports whether every symbol reference of refs is below nsyms.
func inTable(refs []uint32, nsyms uint32) bool {
	in := true
	for _, ref := range refs {
		in = in && ref < nsyms
	}
	return in
}

// metadata returns the metadata of references m, which resolve to typ,
// help and unit, with strings of its own, shared by the request's series.
func (b *writeBuffers) metadata(m fastMeta, typ model.MetricType, help, unit string) *metadata.Metadata {
	if md, ok := b.metas[m]; ok {
		return md
	}
	if b.metas == nil {
		b.metas = map[fastMeta]*metadata.Metadata{}
	}
	md := &metadata.Metadata{Type: typ, Help: strings.Clone(help), Unit: strings.Clone(unit)}
	b.metas[m] = md
	return md
}

// sameLabels reports whether the labels of refs (pairs within the table)
// are exactly ls, in order.
func (d *fastV2) sameLabels(body []byte, refs []uint32, ls labels.Labels) bool {
	i, same := 0, true
	ls.Range(func(l labels.Label) {
		if !same {
			return
		}
		if i+1 >= len(refs) || l.Name != d.sym(body, refs[i]) || l.Value != d.sym(body, refs[i+1]) {
			same = false
			return
		}
		i += 2
	})
	return same && i == len(refs)
}

// reduceReservedSchema reduces a histogram whose schema is reserved for
// exponential buckets finer than histogram.ExponentialSchemaMax to that
// schema, in place, as Prometheus's remote-write receiver does.
func reduceReservedSchema(h *histogram.Histogram, fh *histogram.FloatHistogram) error {
	if h != nil && histogram.IsExponentialSchemaReserved(h.Schema) && h.Schema > histogram.ExponentialSchemaMax {
		return h.ReduceResolution(histogram.ExponentialSchemaMax)
	}
	if fh != nil && histogram.IsExponentialSchemaReserved(fh.Schema) && fh.Schema > histogram.ExponentialSchemaMax {
		return fh.ReduceResolution(histogram.ExponentialSchemaMax)
	}
	return nil
}
