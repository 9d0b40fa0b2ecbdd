package pipeline

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// FuzzAnomaliesParams: whatever the query string or form body, the
// anomalies API answers 200 with a list no longer than its limit, or 400
// with Prometheus's error envelope saying what was wrong (bad_data and a
// message): a client's mistake is never a 5xx.
func FuzzAnomaliesParams(f *testing.F) {
	for _, s := range [][2]string{
		{"", ""}, {"limit=1", ""}, {"limit=0&match[]=load", ""}, {`match[]={job="spiky"}`, "limit=2"},
		{"limit=-1", ""}, {"limit=1e3", ""}, {"match[]={}", ""}, {`match[]={job=~".*"}`, ""},
		{`match[]=load{job=~"sp.+"}&match[]={__name__="load"}`, "match[]=x"}, {"%zz", ""}, {"", "limit=%"},
		{`match[]={job=~"(a|b)*c"}`, ""}, {`match[]=load offset 5m`, ""}, {`match[]={"utf8.name"="x"}`, ""},
	} {
		f.Add(s[0], s[1])
	}
	e, _ := apiEnv(f)
	h := e.p.AnomaliesHandler()
	f.Fuzz(func(t *testing.T, query, body string) {
		for _, r := range []*http.Request{
			httptest.NewRequest(http.MethodGet, "/api/v1/anomalies", nil),
			httptest.NewRequest(http.MethodPost, "/api/v1/anomalies", strings.NewReader(body)),
		} {
			r.URL.RawQuery = query
			if r.Method == http.MethodPost {
				r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			var got anomaliesEnvelope
			require.NoError(t, json.Unmarshal(w.Body.Bytes(), &got), "%d: %s", w.Code, w.Body.String())
			switch w.Code {
			case http.StatusOK:
				require.Equal(t, "success", got.Status)
				require.NotNil(t, got.Data.Anomalies)
				if n, err := strconv.Atoi(r.Form.Get("limit")); err == nil && n > 0 {
					require.LessOrEqual(t, len(got.Data.Anomalies), n)
				}
			case http.StatusBadRequest:
				require.Equal(t, "error", got.Status)
				require.Equal(t, "bad_data", got.ErrorType)
				require.NotEmpty(t, got.Error)
			default:
				t.Fatalf("status %d for a client's parameters %q, body %q: %s", w.Code, query, body, w.Body.String())
			}
		}
	})
}
