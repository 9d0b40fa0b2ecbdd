package e2e

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gogo/protobuf/proto"
	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"github.com/stretchr/testify/require"
)

const (
	ctV1 = "application/x-protobuf"
	ctV2 = "application/x-protobuf;proto=io.prometheus.write.v2.Request"
)

// TestBadInput extends the lifecycle test's battery: every malformed
// request to the real binary gets a 4xx whose body names the problem, never
// a 5xx, and omen is healthy and still storing afterwards.
func TestBadInput(t *testing.T) {
	omen := startOmen(t, "", "--web.max-request-bytes=1MiB", "--write.max-series-per-request=100",
		"--write.max-labels-per-series=32", "--write.max-label-name-length=128", "--write.max-label-value-length=256")
	ms := time.Now().UnixMilli()

	v1 := func(ts ...prompb.TimeSeries) []byte {
		raw, err := proto.Marshal(&prompb.WriteRequest{Timeseries: ts})
		require.NoError(t, err)
		return snappy.Encode(nil, raw)
	}
	v2 := func(req *writev2.Request) []byte {
		raw, err := proto.Marshal(req)
		require.NoError(t, err)
		return snappy.Encode(nil, raw)
	}
	one := func(ls ...string) prompb.TimeSeries {
		ts := prompb.TimeSeries{Samples: []prompb.Sample{{Timestamp: ms, Value: 1}}}
		for i := 0; i < len(ls); i += 2 {
			ts.Labels = append(ts.Labels, prompb.Label{Name: ls[i], Value: ls[i+1]})
		}
		return ts
	}
	wide := []string{"__name__", "wide"}
	for i := 0; i < 40; i++ {
		wide = append(wide, fmt.Sprintf("l%02d", i), "v")
	}
	var manySeries []prompb.TimeSeries
	for i := 0; i < 101; i++ {
		manySeries = append(manySeries, one("__name__", "many", "i", fmt.Sprint(i)))
	}
	future := one("__name__", "future")
	future.Samples[0].Timestamp = time.Now().Add(24 * time.Hour).UnixMilli()
	huge := make([]byte, 2<<20) // random, so snappy cannot shrink it under 1MiB
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range huge {
		huge[i] = byte(rng.Uint32())
	}

	for _, tc := range []struct {
		name, method, contentType, encoding string
		body                                []byte
		code                                int
		want                                string
	}{
		{"GET", http.MethodGet, ctV1, "snappy", nil, 405, "use POST"},
		{"wrong content type", http.MethodPost, "text/plain", "snappy", v1(one("__name__", "a")), 415, "Content-Type"},
		{"unknown proto in content type", http.MethodPost, "application/x-protobuf;proto=foo.Bar", "snappy", v1(one("__name__", "a")), 415, "Content-Type"},
		{"gzip encoding", http.MethodPost, ctV1, "gzip", v1(one("__name__", "a")), 415, `Content-Encoding "gzip"`},
		{"empty body", http.MethodPost, ctV1, "snappy", nil, 400, "empty request body"},
		{"not snappy", http.MethodPost, ctV1, "snappy", []byte("this is not snappy at all"), 400, "snappy"},
		{"truncated snappy", http.MethodPost, ctV1, "snappy", v1(one("__name__", "a", "job", strings.Repeat("x", 200)))[:30], 400, "snappy"},
		{"snappy header claims 100MiB", http.MethodPost, ctV1, "snappy", append(binary.AppendUvarint(nil, 100<<20), 0, 'x'), 400, "header claims"},
		{"garbage protobuf", http.MethodPost, ctV1, "snappy", snappy.Encode(nil, []byte{0xff, 0xff, 0xff, 0xff}), 400, "decode remote-write 1.0"},
		{"garbage protobuf v2", http.MethodPost, ctV2, "snappy", snappy.Encode(nil, []byte{0xff, 0xff, 0xff, 0xff}), 400, "decode remote-write 2.0"},
		{"oversize body", http.MethodPost, ctV1, "snappy", snappy.Encode(nil, huge), 413, "exceeds the limit of 1048576 bytes"},
		{"too many series", http.MethodPost, ctV1, "snappy", v1(manySeries...), 400, "101 series, more than the limit of 100"},
		{"no labels", http.MethodPost, ctV1, "snappy", v1(one()), 400, "no __name__ label"},
		{"empty metric name", http.MethodPost, ctV1, "snappy", v1(one("__name__", "", "job", "a")), 400, "no __name__ label"}, // an empty value is no label
		{"empty label name", http.MethodPost, ctV1, "snappy", v1(one("__name__", "a", "", "x")), 400, "label"},
		{"invalid UTF-8 label value", http.MethodPost, ctV1, "snappy", v1(one("__name__", "a", "job", "\xff\xfe")), 400, "UTF-8"},
		{"invalid UTF-8 metric name", http.MethodPost, ctV1, "snappy", v1(one("__name__", "a\xff")), 400, "UTF-8"},
		{"duplicate label", http.MethodPost, ctV1, "snappy", v1(one("__name__", "a", "job", "1", "job", "2")), 400, "duplicate"},
		{"too many labels", http.MethodPost, ctV1, "snappy", v1(one(wide...)), 400, "more than 32 labels"},
		{"label name too long", http.MethodPost, ctV1, "snappy", v1(one("__name__", "a", strings.Repeat("n", 129), "v")), 400, "longer than 128 bytes"},
		{"label value too long", http.MethodPost, ctV1, "snappy", v1(one("__name__", "a", "job", strings.Repeat("v", 257))), 400, "longer than 256 bytes"},
		{"timestamp a day in the future", http.MethodPost, ctV1, "snappy", v1(future), 400, "future"},
		{"v2 symbol ref out of range", http.MethodPost, ctV2, "snappy", v2(&writev2.Request{Symbols: []string{"", "__name__", "a"},
			Timeseries: []writev2.TimeSeries{{LabelsRefs: []uint32{1, 99}, Samples: []writev2.Sample{{Value: 1, Timestamp: ms}}}}}), 400, "outside the symbols table"},
		{"v2 odd label refs", http.MethodPost, ctV2, "snappy", v2(&writev2.Request{Symbols: []string{"", "__name__", "a"},
			Timeseries: []writev2.TimeSeries{{LabelsRefs: []uint32{1, 2, 1}, Samples: []writev2.Sample{{Value: 1, Timestamp: ms}}}}}), 400, "label"},
		{"v2 help ref out of range", http.MethodPost, ctV2, "snappy", v2(&writev2.Request{Symbols: []string{"", "__name__", "a"},
			Timeseries: []writev2.TimeSeries{{LabelsRefs: []uint32{1, 2}, Samples: []writev2.Sample{{Value: 1, Timestamp: ms}}, Metadata: writev2.Metadata{HelpRef: 77}}}}), 400, "metadata"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := http.NewRequest(tc.method, omen.URL+"/api/v1/write", bytes.NewReader(tc.body))
			require.NoError(t, err)
			r.Header.Set("Content-Type", tc.contentType)
			r.Header.Set("Content-Encoding", tc.encoding)
			resp, err := http.DefaultClient.Do(r)
			require.NoError(t, err)
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			require.Equal(t, tc.code, resp.StatusCode, "body: %s", b)
			require.Contains(t, string(b), tc.want)
		})
	}

	// The query side: remote read with a regular expression that does not
	// compile (Prometheus's handler would answer 500), a subquery that
	// would make the engine allocate its steps (it would die of it), and
	// nonsense parameters.
	badRegex, err := proto.Marshal(&prompb.ReadRequest{Queries: []*prompb.Query{{EndTimestampMs: ms,
		Matchers: []*prompb.LabelMatcher{{Type: prompb.LabelMatcher_RE, Name: "job", Value: "(["}}}}})
	require.NoError(t, err)
	resp, err := http.Post(omen.URL+"/api/v1/read", ctV1, bytes.NewReader(snappy.Encode(nil, badRegex)))
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusBadRequest, resp.StatusCode, string(b))
	require.Contains(t, string(b), "invalid matcher")
	for q, want := range map[string]string{
		"max_over_time(up[1y:1ms])": "would evaluate",
		"sum(":                      "parse error",
		`{__name__=~"(["}`:          "error parsing regexp",
	} {
		_, err := apiGet(t, omen.URL, "/api/v1/query", url.Values{"query": {q}})
		require.ErrorContains(t, err, want, q)
	}
	_, err = apiGet(t, omen.URL, "/api/v1/query_range", url.Values{"query": {"up"}, "start": {"0"}, "end": {"1e9"}, "step": {"1"}})
	require.ErrorContains(t, err, "exceeded maximum resolution")

	// Still healthy, still storing, and not one 5xx on the write path.
	resp, err = http.Get(omen.URL + "/-/healthy")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	code, body := remoteWriteV1(t, omen.URL, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{one("__name__", "after_battery")}})
	require.Equal(t, http.StatusNoContent, code, body)
	res, err := query(t, omen.URL, "after_battery", time.UnixMilli(ms))
	require.NoError(t, err)
	require.Len(t, res, 1)
	// (/-/ready answered 503 while startOmen waited for the TSDB: that is
	// its job, not an answer to bad input.)
	fiveXX := regexp.MustCompile(`(?m)^omen_http_requests_total\{code="5\d\d",handler="/api.*$`)
	require.Empty(t, fiveXX.FindAllString(string(metricsText(t, omen.URL)), -1), "5xx answers")
}
