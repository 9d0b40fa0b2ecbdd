package tsdb

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gogo/protobuf/proto"
	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/stretchr/testify/require"
)

// TestSubqueryGuard: subqueries whose step count would make Prometheus's
// engine allocate gigabytes (before --query.max-samples can act) get a 400
// naming the subquery; reasonable ones, and subqueries without a step
// (which dereferenced nil before NoStepSubqueryIntervalFn was set), work.
func TestSubqueryGuard(t *testing.T) {
	srv, _ := newTestAPI(t)
	for _, tc := range []struct {
		name, path string
		params     url.Values
		post       bool
		code       int
		errPart    string
		rawSuffix  string // appended to a GET's query string unencoded
	}{
		{"year at 1ms", "/api/v1/query", url.Values{"query": {"max_over_time(up[1y:1ms])"}}, false, 400, "would evaluate 3.15e+10 steps", ""},
		{"as POST form", "/api/v1/query", url.Values{"query": {"max_over_time(up[1y:1ms])"}}, true, 400, "more than the limit of 1000000", ""},
		{"nested inner too fine", "/api/v1/query", url.Values{"query": {"max_over_time(max_over_time(up[1m:1ms])[1y:1h])"}}, false, 400, "subquery up[1m:1ms]", ""},
		{"range query widens the span", "/api/v1/query_range", url.Values{"query": {"max_over_time(up[1m:1s])"}, "start": {"0"}, "end": {"1000000"}, "step": {"1000"}}, false, 400, "1e+06 steps", ""},
		{"range query under the limit", "/api/v1/query_range", url.Values{"query": {"max_over_time(up[1m:1s])"}, "start": {"0"}, "end": {"100000"}, "step": {"1000"}}, false, 200, "", ""},
		{"no step uses 1m", "/api/v1/query", url.Values{"query": {"max_over_time(requests_total[5m:])"}}, false, 200, "", ""},
		{"no step, long range", "/api/v1/query", url.Values{"query": {"max_over_time(requests_total[30d:])"}}, false, 200, "", ""},
		{"valid POST passes", "/api/v1/query", url.Values{"query": {"max_over_time(requests_total[1h:1m])"}}, true, 200, "", ""},
		{"parse error left to Prometheus", "/api/v1/query", url.Values{"query": {"max_over_time(up[1y:1ms]"}}, false, 400, "parse error", ""},
		// Prometheus reads NaN and -Inf as the far past (292 years back):
		// the guard must see the span Prometheus will evaluate.
		{"NaN start", "/api/v1/query_range", url.Values{"query": {"count_over_time(vector(1)[1h:1h])"}, "start": {"NaN"}, "end": {"0"}, "step": {"1e9"}}, false, 400, "would evaluate", ""},
		{"-Inf start", "/api/v1/query_range", url.Values{"query": {"count_over_time(vector(1)[1h:1h])"}, "start": {"-Inf"}, "end": {"0"}, "step": {"1e9"}}, false, 400, "would evaluate", ""},
		{"end before start left to Prometheus", "/api/v1/query_range", url.Values{"query": {"up"}, "start": {"10"}, "end": {"0"}, "step": {"1"}}, false, 400, "end timestamp must not be before start", ""},
		// A subquery pinned by @ is evaluated at one time, whatever the
		// span of the range query around it.
		{"pinned subquery in a long range query", "/api/v1/query_range", url.Values{"query": {"max_over_time(up[10m:1s] @ 100)"}, "start": {"0"}, "end": {"1036800"}, "step": {"3600"}}, false, 200, "", ""},
		{"inside a pinned subquery", "/api/v1/query_range", url.Values{"query": {"max_over_time(max_over_time(up[10m:1s])[20m:1m] @ 100)"}, "start": {"0"}, "end": {"1036800"}, "step": {"3600"}}, false, 200, "", ""},
		{"pinned, itself too fine", "/api/v1/query_range", url.Values{"query": {"max_over_time(up[1y:1ms] @ 100)"}, "start": {"0"}, "end": {"3600"}, "step": {"60"}}, false, 400, "would evaluate", ""},
		// Prometheus uses the pairs that parsed and ignores a bad one.
		{"malformed pair beside the query", "/api/v1/query", url.Values{"query": {"count_over_time(vector(1)[2000s:1ms])"}}, false, 400, "would evaluate 2e+06 steps", "&x=%zz"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var resp *http.Response
			var err error
			if tc.post {
				resp, err = http.Post(srv.URL+tc.path, "application/x-www-form-urlencoded", strings.NewReader(tc.params.Encode()))
			} else {
				resp, err = http.Get(srv.URL + tc.path + "?" + tc.params.Encode() + tc.rawSuffix)
			}
			require.NoError(t, err)
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			require.Equal(t, tc.code, resp.StatusCode, string(b))
			var r struct{ Status, ErrorType, Error string }
			require.NoError(t, json.Unmarshal(b, &r), string(b))
			if tc.code == 200 {
				require.Equal(t, "success", r.Status)
				return
			}
			require.Equal(t, "bad_data", r.ErrorType)
			require.Contains(t, r.Error, tc.errPart)
		})
	}
}

// TestQueryNesting: a query nested deeper than DefaultMaxQueryNesting gets
// Prometheus's 400 bad_data before it is parsed, on every endpoint that
// parses one (nested 100,000 deep, such a query killed omen, as it kills
// Prometheus 2.42, with a fatal stack overflow); one at the limit, and
// brackets and operators inside strings, matchers and comments, go through.
func TestQueryNesting(t *testing.T) {
	srv, _ := newTestAPI(t)
	nested := func(n int) string { return strings.Repeat("abs(", n) + "vector(1)" + strings.Repeat(")", n) }
	chain := func(n int) string { return "vector(1)" + strings.Repeat(" or vector(1)", n) }
	atLimit := nested(DefaultMaxQueryNesting - 1) // vector( is one more level
	over := nested(DefaultMaxQueryNesting)
	for _, tc := range []struct {
		name, path, query string
		code              int
		want              string
	}{
		{"instant query at the limit", "/api/v1/query", atLimit, 200, `"value"`},
		{"instant query over it", "/api/v1/query", over, 400, "nested 1001 deep"},
		{"range query over it", "/api/v1/query_range", over, 400, "more than the limit of 1000"},
		{"parse_query over it", "/api/v1/parse_query", over, 400, "nested 1001 deep"},
		{"query_exemplars over it", "/api/v1/query_exemplars", over, 400, "nested 1001 deep"},
		{"format_query at its limit", "/api/v1/format_query", nested(maxFormatNesting - 1), 200, `"status":"success"`},
		{"format_query over its limit", "/api/v1/format_query", nested(maxFormatNesting), 400, "nested 257 deep (brackets and operators), more than the limit of 256"},
		{"operator chain over it", "/api/v1/query", chain(DefaultMaxQueryNesting), 400, "nested 1001 deep"},
		{"operator chain at the limit", "/api/v1/query", chain(DefaultMaxQueryNesting - 1), 200, `"value"`},
		{"parentheses over it", "/api/v1/query", strings.Repeat("(", 1001) + "1" + strings.Repeat(")", 1001), 400, "nested 1001 deep"},
		{"unary minus over it", "/api/v1/query", strings.Repeat("-", 1001) + "1", 400, "nested 1001 deep"},
		{"brackets and operators in a string", "/api/v1/query",
			`count(up{job="` + strings.Repeat("(-[", 2000) + `"})`, 200, `"result":[]`},
		{"operators in matchers", "/api/v1/query",
			"count(up{" + strings.TrimSuffix(strings.Repeat(`job!="a",job!~"b",`, 1000), ",") + "})", 200, `"result":[]`},
		{"brackets in a comment", "/api/v1/query", "vector(1) # " + strings.Repeat("((", 2000) + "\n", 200, `"value"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			form := url.Values{"query": {tc.query}, "start": {"0"}, "end": {"60"}, "step": {"15"}}
			resp, err := http.Post(srv.URL+tc.path, "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
			require.NoError(t, err)
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			require.NoError(t, err)
			require.Equal(t, tc.code, resp.StatusCode, "%.300s", b)
			require.Contains(t, string(b), tc.want)
			if tc.code == 400 {
				require.Contains(t, string(b), `"errorType":"bad_data"`)
			}
		})
	}
}

// TestQueryMultipartForm: a query POSTed as multipart/form-data (curl -F)
// is read by the guard and by the API, as Prometheus reads it; the guard's
// ParseForm once left the API without it ("no expression found").
func TestQueryMultipartForm(t *testing.T) {
	srv, _ := newTestAPI(t)
	for _, tc := range []struct {
		query string
		code  int
		want  string
	}{
		{"max_over_time(up[1y:1ms])", 400, "would evaluate"},
		{"vector(1)", 200, `"result":[{"metric":{},"value"`},
	} {
		var body bytes.Buffer
		mw := multipart.NewWriter(&body)
		require.NoError(t, mw.WriteField("query", tc.query))
		require.NoError(t, mw.Close())
		resp, err := http.Post(srv.URL+"/api/v1/query", mw.FormDataContentType(), &body)
		require.NoError(t, err)
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		require.Equal(t, tc.code, resp.StatusCode, string(b))
		require.Contains(t, string(b), tc.want)
	}
}

// TestRemoteReadGuard: Prometheus's read handler answers 500 for a regular
// expression that does not compile and allocates what a snappy header
// claims; omen answers both 400 first. A valid request still works.
func TestRemoteReadGuard(t *testing.T) {
	srv, end := newTestAPI(t)
	read := func(t *testing.T, body []byte) (int, string) {
		t.Helper()
		resp, err := http.Post(srv.URL+"/api/v1/read", "application/x-protobuf", bytes.NewReader(body))
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, string(b)
	}
	encode := func(m ...*prompb.LabelMatcher) []byte {
		raw, err := proto.Marshal(&prompb.ReadRequest{Queries: []*prompb.Query{{
			StartTimestampMs: end.Add(-time.Hour).UnixMilli(), EndTimestampMs: end.UnixMilli(), Matchers: m}}})
		require.NoError(t, err)
		return snappy.Encode(nil, raw)
	}
	for _, tc := range []struct {
		name string
		body []byte
		code int
		want string
	}{
		{"bad regex", encode(&prompb.LabelMatcher{Type: prompb.LabelMatcher_RE, Name: "job", Value: "(["}), 400, "invalid matcher"},
		{"snappy header claims 30MiB", append(binary.AppendUvarint(nil, 30<<20), 0x00), 400, "header claims 31457280 decoded bytes from 5 compressed bytes"},
		{"not snappy", []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 400, "decode snappy"},
		{"garbage protobuf", snappy.Encode(nil, []byte{0xff, 0xff, 0xff}), 400, "decode read request"},
		{"valid", encode(&prompb.LabelMatcher{Type: prompb.LabelMatcher_RE, Name: "job", Value: "a|b"}), 200, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := read(t, tc.body)
			require.Equal(t, tc.code, code, body)
			require.Contains(t, body, tc.want)
		})
	}
}

// TestRemoteReadSampleLimitPerAnswer: --storage.remote.read-sample-limit
// bounds the samples of a whole non-streamed answer, as the README says,
// not of each of its queries: a request of many queries each under the
// limit held them all in memory at once (40 of 500,000 samples took RSS
// to 3.3 GiB). The seed has 82 samples of requests_total.
func TestRemoteReadSampleLimitPerAnswer(t *testing.T) {
	for _, tc := range []struct {
		name     string
		limit    int
		queries  int
		streamed bool
		code     int
		want     string
		samples  int // in a 200's answer, over its queries
	}{
		{"one query within", 100, 1, false, 200, "", 82},
		{"one query at the limit", 82, 1, false, 200, "", 82},
		{"one query over", 81, 1, false, 400, "exceeded sample limit", 0},
		{"two queries over together", 100, 2, false, 400, "exceeded sample limit (100) over the request's queries", 0},
		{"two queries within together", 164, 2, false, 200, "", 164},
		{"no limit", 0, 3, false, 200, "", 246},
		{"streamed is not bounded by it", 100, 2, true, 200, "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, end := newTestAPIWith(t, func(o *APIOptions) { o.RemoteReadSamples = tc.limit })
			req := &prompb.ReadRequest{}
			for range tc.queries {
				req.Queries = append(req.Queries, &prompb.Query{
					StartTimestampMs: end.Add(-time.Hour).UnixMilli(), EndTimestampMs: end.UnixMilli(),
					Matchers: []*prompb.LabelMatcher{{Type: prompb.LabelMatcher_EQ, Name: "__name__", Value: "requests_total"}}})
			}
			if tc.streamed {
				req.AcceptedResponseTypes = []prompb.ReadRequest_ResponseType{prompb.ReadRequest_STREAMED_XOR_CHUNKS}
			}
			raw, err := proto.Marshal(req)
			require.NoError(t, err)
			resp, err := http.Post(srv.URL+"/api/v1/read", "application/x-protobuf", bytes.NewReader(snappy.Encode(nil, raw)))
			require.NoError(t, err)
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			require.Equal(t, tc.code, resp.StatusCode, string(b))
			if tc.code != 200 {
				require.Contains(t, string(b), tc.want)
				return
			}
			if tc.streamed {
				require.Equal(t, "application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse", resp.Header.Get("Content-Type"))
				require.NotEmpty(t, b)
				return
			}
			dec, err := snappy.Decode(nil, b)
			require.NoError(t, err)
			var rr prompb.ReadResponse
			require.NoError(t, proto.Unmarshal(dec, &rr))
			require.Len(t, rr.Results, tc.queries)
			n := 0
			for _, res := range rr.Results {
				for _, ts := range res.Timeseries {
					n += len(ts.Samples)
				}
			}
			require.Equal(t, tc.samples, n)
		})
	}
}

// TestQueryLimits: --query.timeout and --query.max-samples reach the engine
// behind the API. A timeout of 1ns has passed before evaluation starts, so
// the outcome does not depend on the machine's speed.
func TestQueryLimits(t *testing.T) {
	s := openTestStorage(t)
	end := time.Now().Truncate(time.Second)
	seed(t, s, end)
	for _, tc := range []struct {
		name      string
		opts      func(*APIOptions)
		code      int
		errorType string
		want      string
	}{
		{"timeout", func(o *APIOptions) { o.QueryTimeout = time.Nanosecond }, 503, "timeout", "query timed out"},
		{"max samples", func(o *APIOptions) { o.MaxSamples = 1 }, 422, "execution", "query processing would load too many samples into memory"},
		{"neither", func(*APIOptions) {}, 200, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := DefaultAPIOptions()
			tc.opts(&o)
			h := NewAPI(nil, nil, nil, s, NewEngine(discard(), nil, o), o, func(f http.HandlerFunc) http.HandlerFunc { return f })
			srv := httptest.NewServer(h)
			defer srv.Close()
			code, r := getJSON(t, srv.URL+"/api/v1/query?"+url.Values{
				"query": {`sum_over_time(requests_total[10m])`}, "time": {strconv.FormatInt(end.Unix(), 10)}}.Encode())
			require.Equal(t, tc.code, code, r)
			if tc.code != 200 {
				require.Equal(t, tc.errorType, r["errorType"])
				require.Contains(t, r["error"], tc.want)
			}
		})
	}
}

// TestAPIBodyBounded: a request body to the query API beyond 8 MiB is
// refused (413) where it declares its length and cut off where it does not:
// a multipart form's file parts went to temporary files without bound.
func TestAPIBodyBounded(t *testing.T) {
	srv, _ := newTestAPI(t)
	for _, tc := range []struct {
		name    string
		chunked bool
		size    int
		code    int
	}{
		{"small upload", false, 1 << 10, 200},
		{"declared, too large", false, maxAPIRequestBytes + 1, 413},
		{"chunked, too large", true, maxAPIRequestBytes + 1, 413},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var body bytes.Buffer
			mw := multipart.NewWriter(&body)
			require.NoError(t, mw.WriteField("query", "vector(1)"))
			fw, err := mw.CreateFormFile("f", "big.bin")
			require.NoError(t, err)
			_, err = fw.Write(bytes.Repeat([]byte{'x'}, tc.size))
			require.NoError(t, err)
			require.NoError(t, mw.Close())
			var r io.Reader = &body
			if tc.chunked {
				r = io.MultiReader(&body) // no length: sent chunked
			}
			resp, err := http.Post(srv.URL+"/api/v1/query", mw.FormDataContentType(), r)
			require.NoError(t, err)
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			require.NoError(t, err)
			require.Equal(t, tc.code, resp.StatusCode, string(b))
		})
	}
}

// TestAPIFormErrorsReachHandlers: the body bound leaves the form to the
// handlers, which refuse a malformed one as Prometheus's do: read up front,
// its error was hidden, and a delete_series with a malformed start deleted
// from the beginning of time (204).
func TestAPIFormErrorsReachHandlers(t *testing.T) {
	srv, _ := newTestAPIWith(t, func(o *APIOptions) { o.EnableAdmin = true })
	resp, err := http.PostForm(srv.URL+"/api/v1/admin/tsdb/delete_series?match[]=requests_total&start=%zz", url.Values{})
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	code, out := getJSON(t, srv.URL+"/api/v1/series?match[]=requests_total")
	require.Equal(t, http.StatusOK, code)
	require.Len(t, out["data"], 2, "nothing deleted")
	code, _ = getJSON(t, srv.URL+"/api/v1/series?match[]=requests_total&x=%zz")
	require.Equal(t, http.StatusBadRequest, code)
}

// TestRemoteReadStopsWhenClientGoes: a non-streamed remote read stops
// iterating once its request's context is cancelled (the client went away),
// with or without --storage.remote.read-sample-limit. Prometheus's read
// handler never looks at the context while it copies samples, so a read of
// every series went on for 28 s (15 CPU-seconds) after its client had
// disconnected, holding a --storage.remote.read-concurrent-limit slot.
// The inner handler stands in for Prometheus's: it iterates through
// budgetQueryable with the request's context, which it cancels after a few
// samples as a disconnect does.
func TestRemoteReadStopsWhenClientGoes(t *testing.T) {
	const n = 20000 // samples of the one series, several check intervals
	s := openTestStorage(t)
	app := s.AppenderV2(context.Background())
	ls := labels.FromStrings("__name__", "big", "job", "a")
	var ref storage.SeriesRef
	for i := range n {
		var err error
		ref, err = app.Append(ref, ls, 0, int64(i)*1000, float64(i), nil, nil, storage.AppendV2Options{})
		require.NoError(t, err)
	}
	require.NoError(t, app.Commit())
	raw, err := proto.Marshal(&prompb.ReadRequest{Queries: []*prompb.Query{{
		StartTimestampMs: 0, EndTimestampMs: n * 1000,
		Matchers: []*prompb.LabelMatcher{{Type: prompb.LabelMatcher_EQ, Name: "__name__", Value: "big"}}}}})
	require.NoError(t, err)
	body := snappy.Encode(nil, raw)
	for _, tc := range []struct {
		name  string
		limit int
	}{
		{"no sample limit", 0},
		{"within the sample limit", 10 * n},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const before = 10 // samples read before the client goes
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var read int
			var iterErr error
			inner := http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
				q, err := budgetQueryable{s}.Querier(0, n*1000)
				require.NoError(t, err)
				defer q.Close()
				ss := q.Select(r.Context(), false, nil, labels.MustNewMatcher(labels.MatchEqual, "__name__", "big"))
				require.True(t, ss.Next())
				it := ss.At().Iterator(nil)
				for it.Next() != chunkenc.ValNone {
					if read++; read == before {
						cancel()
					}
				}
				iterErr = it.Err()
			})
			r := httptest.NewRequest(http.MethodPost, "/api/v1/read", bytes.NewReader(body)).WithContext(ctx)
			guardRemoteRead(inner, tc.limit).ServeHTTP(httptest.NewRecorder(), r)
			require.ErrorIs(t, iterErr, context.Canceled)
			require.LessOrEqual(t, read, before+readCancelCheckEvery, "samples read after the client went")
		})
	}
}
