package tsdb

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/gogo/protobuf/proto"
	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/timestamp"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/storage/remote"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
)

// DefaultSubqueryStep is the step of a subquery written without one
// (`x[1h:]`), Prometheus's default evaluation interval.
const DefaultSubqueryStep = time.Minute

// DefaultMaxSubquerySteps bounds the steps one subquery may evaluate. A
// month at a one-minute step is 43,200 steps and a year at 30s about a
// million; beyond that a subquery is a mistake or an attack.
const DefaultMaxSubquerySteps = 1_000_000

// guardSubqueries refuses, with Prometheus's 400 bad_data, a query whose
// subquery would evaluate more than maxSteps steps, before the engine sees
// it. Prometheus's engine allocates two int64 per subquery step up front,
// independent of --query.max-samples and of whether any series match, so
// `max_over_time(up[1y:1ms])` (31.5e9 steps, about 500 GB) would kill the
// process with an out-of-memory fatal error, which no recover catches.
// Queries the guard cannot parse go through unchanged for Prometheus to
// report. Before any parsing, it refuses a query nested deeper than
// DefaultMaxQueryNesting (see queryNesting), on every endpoint that parses
// one.
func guardSubqueries(next http.Handler, p parser.Parser, maxSteps int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ranged, evaluated bool
		switch r.URL.Path {
		case "/api/v1/query":
			evaluated = true
		case "/api/v1/query_range":
			ranged, evaluated = true, true
		case "/api/v1/format_query", "/api/v1/parse_query", "/api/v1/query_exemplars":
			// Parsed, not evaluated: only the nesting bound applies.
		default:
			next.ServeHTTP(w, r)
			return
		}
		// ParseForm keeps what it read in r.Form, where the API reads it
		// again, so a POST body is not lost. Its error is not checked:
		// Prometheus's handlers ignore it too and use the pairs that did
		// parse (url.ParseQuery keeps them), so the guard must look at
		// the same query; a bad pair (`&x=%zz`) once let any through.
		// ParseMultipartForm reads a multipart/form-data body too (it
		// calls ParseForm first): Prometheus's handlers read one, and
		// ParseForm alone left r.Form set without it, so the query went
		// unseen by the guard and by the API.
		var mbe *http.MaxBytesError
		if err := r.ParseMultipartForm(32 << 20); errors.As(err, &mbe) {
			// Cut off at limitAPIBody's bound: a 413, not a query read
			// from half a form ("no expression found").
			tooLarge(w)
			return
		}
		limit := DefaultMaxQueryNesting
		if r.URL.Path == "/api/v1/format_query" {
			limit = maxFormatNesting
		}
		if n := queryNesting(r.Form.Get("query")); n > limit {
			badData(w, fmt.Sprintf("query nested %d deep (brackets and operators), more than the limit of %d", n, limit))
			return
		}
		if !evaluated {
			next.ServeHTTP(w, r)
			return
		}
		expr, err := p.ParseExpr(r.Form.Get("query"))
		if err != nil {
			next.ServeHTTP(w, r)
			return
		}
		var span float64 // seconds between the query's first and last step
		if ranged {
			// Times read as Prometheus reads them, so that the span is the
			// one it would evaluate: it takes NaN and ±Inf, for instance,
			// as the far past. What it cannot read, or an end before the
			// start, it refuses itself.
			start, err1 := parseAPITime(r.Form.Get("start"))
			end, err2 := parseAPITime(r.Form.Get("end"))
			if err1 != nil || err2 != nil || end.Before(start) || timestamp.FromTime(end) < timestamp.FromTime(start) {
				next.ServeHTTP(w, r)
				return
			}
			// As the engine will see them: in milliseconds by
			// timestamp.FromTime, whose int64 arithmetic wraps for such
			// times as NaN gives; subtracted in floats, which do not.
			span = (float64(timestamp.FromTime(end)) - float64(timestamp.FromTime(start))) / 1000
		}
		if msg := subqueryTooLong(expr, span, maxSteps); msg != "" {
			badData(w, msg)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// badData answers as Prometheus's API answers a query it cannot run: 400,
// errorType bad_data.
func badData(w http.ResponseWriter, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusBadRequest)
	_, _ = fmt.Fprintf(w, `{"status":"error","errorType":"bad_data","error":%s}`, strconv.Quote(msg))
}

// DefaultMaxQueryNesting bounds queryNesting. Hand-written and generated
// queries nest a few dozen deep; the parser's cost grows with the square of
// the nesting (ParenExpr.Type and BinaryExpr.Type recurse through every
// level below, for every level), and so does the engine's.
const DefaultMaxQueryNesting = 1000

// maxFormatNesting is format_query's DefaultMaxQueryNesting. Prometheus's
// prettier indents each level's lines and copies every level's text into
// the one above, so its cost grows with the cube of the nesting: 400 deep
// took 0.6 s, 800 deep 8.4 s, 1000 deep 11 s.
const maxFormatNesting = 256

// queryNesting bounds from above how deep a query's syntax tree is: the
// deepest nesting of brackets plus the count of operators outside label
// matchers (a chain `a or b or c` is as deep as it is long), read with
// Prometheus's own lexer, which costs time linear in the query and skips
// strings and comments. It is checked before the query is parsed: neither
// the parser nor the engine bound their recursion, and Prometheus 2.42
// dies of a query nested 100,000 deep (`abs(abs(...up...))`, 500 KB of
// POST form) with "fatal error: stack overflow", which no recover catches,
// after a minute of CPU; 30,000 parentheses took the parser 17 s, uncancelled
// by --query.timeout. A lexing error ends the count: the parser stops there
// too, and reports it.
func queryNesting(q string) int {
	l := parser.Lex(q)
	var it parser.Item
	depth, deepest, ops, braces := 0, 0, 0, 0
	for {
		l.NextItem(&it)
		switch typ := it.Typ; {
		case typ == parser.EOF || typ == parser.ERROR:
			return deepest + ops
		case typ == parser.LEFT_PAREN || typ == parser.LEFT_BRACKET:
			depth++
			deepest = max(deepest, depth)
		case typ == parser.RIGHT_PAREN || typ == parser.RIGHT_BRACKET:
			depth--
		case typ == parser.LEFT_BRACE:
			braces++
		case typ == parser.RIGHT_BRACE:
			braces--
		case typ.IsOperator() && typ != parser.AT && braces == 0:
			// @ is a modifier, not a node: it nests nothing.
			ops++
		}
	}
}

// subqueryTooLong returns why expr is refused, or "". A subquery is
// evaluated once over its parent's whole span widened by its own range, so
// its span is the query's plus the ranges of it and every subquery around
// it; a subquery pinned by @ is evaluated at one time, so the spans around
// it stop there.
func subqueryTooLong(expr parser.Expr, span float64, maxSteps int64) string {
	var msg string
	parser.Inspect(expr, func(n parser.Node, path []parser.Node) error {
		sq, ok := n.(*parser.SubqueryExpr)
		if !ok || msg != "" {
			return nil
		}
		total, pinned := sq.Range.Seconds(), isPinned(sq)
		for i := len(path) - 1; i >= 0 && !pinned; i-- {
			if outer, ok := path[i].(*parser.SubqueryExpr); ok {
				total += outer.Range.Seconds()
				pinned = isPinned(outer)
			}
		}
		if !pinned {
			total += span
		}
		step := sq.Step
		if step <= 0 {
			step = DefaultSubqueryStep
		}
		if steps := total / step.Seconds(); steps > float64(maxSteps) {
			q := sq.String()
			if len(q) > 200 {
				q = q[:200] + "..."
			}
			msg = fmt.Sprintf("subquery %s would evaluate %.3g steps, more than the limit of %d: use a longer step or a shorter range",
				q, steps, maxSteps)
		}
		return nil
	})
	return msg
}

// isPinned reports whether a subquery is pinned to one time by @.
func isPinned(sq *parser.SubqueryExpr) bool { return sq.Timestamp != nil || sq.StartOrEnd != 0 }

// parseAPITime reads the API's time format (Unix seconds or RFC 3339)
// exactly as Prometheus's API does (web/api/v1's parseTime), including what
// it makes of NaN and ±Inf (int64 conversions of them) and its formatted
// minimum and maximum times.
func parseAPITime(s string) (time.Time, error) {
	if t, err := strconv.ParseFloat(s, 64); err == nil {
		s, ns := math.Modf(t)
		ns = math.Round(ns*1000) / 1000
		return time.Unix(int64(s), int64(ns*float64(time.Second))).UTC(), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	switch s {
	case minTimeFormatted:
		return minTime, nil
	case maxTimeFormatted:
		return maxTime, nil
	}
	return time.Time{}, fmt.Errorf("cannot parse %q to a valid timestamp", s)
}

// Prometheus's API's bounds (web/api/v1: MinTime, MaxTime), which it also
// accepts in their RFC 3339 form though time.Parse cannot read the years.
var (
	minTime          = time.Unix(math.MinInt64/1000+62135596801, 0).UTC()
	maxTime          = time.Unix(math.MaxInt64/1000-62135596801, 999999999).UTC()
	minTimeFormatted = minTime.Format(time.RFC3339Nano)
	maxTimeFormatted = maxTime.Format(time.RFC3339Nano)
)

// maxReadRequestBytes is Prometheus's limit on a remote-read request, before
// and after snappy decoding.
const maxReadRequestBytes = 32 << 20

// maxAPIRequestBytes bounds the body of a request to the query API other
// than a remote read (bounded by maxReadRequestBytes): a form of queries or
// matchers is a few kilobytes. Unbounded, a multipart form's file parts
// went to temporary files of any size (Prometheus's API does the same: 287
// MB of them for one request), and its other parts to memory.
const maxAPIRequestBytes = 8 << 20

// limitAPIBody refuses a larger body with a 413 at once where it declares
// its length, and cuts it off at the limit where it does not: the form
// parsers then fail on it (guardSubqueries answers a query's 413). The
// form is left to the handlers: parsed here, its errors were hidden from
// those that refuse them (a delete_series with a malformed start deleted
// from the beginning of time) and a multipart form was read by handlers
// that Prometheus does not let read one.
func limitAPIBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/v1/read" {
			next.ServeHTTP(w, r)
			return
		}
		if r.ContentLength > maxAPIRequestBytes {
			tooLarge(w)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxAPIRequestBytes)
		next.ServeHTTP(w, r)
	})
}

func tooLarge(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusRequestEntityTooLarge)
	_, _ = fmt.Fprintf(w, `{"status":"error","errorType":"bad_data","error":"request body exceeds the limit of %d bytes"}`, maxAPIRequestBytes)
}

// guardRemoteRead checks a remote-read request before Prometheus's handler
// does: Prometheus answers 500 for a matcher whose regular expression does
// not compile, and allocates whatever decoded size (up to 32 MiB) the snappy
// header claims, however short the body. Both are a client's mistake, so
// they get a 400 here; a request that passes is handed on unchanged.
//
// With sampleLimit > 0 (--storage.remote.read-sample-limit) it also bounds
// the samples of the whole answer to a non-streamed read, where Prometheus
// bounds those of each of its queries: a request of 40 queries each
// within the limit took omen's RSS to 3.3 GiB (Prometheus 2.42's to 2.3),
// and one request may carry thousands. Prometheus's own client sends one
// query a request, for which nothing changes.
//
// Whatever the limit, a non-streamed read stops when its request's context
// ends (the client went away): Prometheus's handler copies every sample
// into the answer without looking at it, and a read of 240,000 series went
// on for 28 s at a core after its client had gone, holding one of
// --storage.remote.read-concurrent-limit's slots.
func guardRemoteRead(next http.Handler, sampleLimit int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/read" || r.Method != http.MethodPost {
			next.ServeHTTP(w, r)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, maxReadRequestBytes+1))
		if err != nil {
			http.Error(w, "remote read: read request body: "+err.Error(), http.StatusBadRequest)
			return
		}
		if msg := checkReadRequest(body); msg != "" {
			http.Error(w, "remote read: "+msg, http.StatusBadRequest)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		b := &readBudget{left: sampleLimit, limit: sampleLimit}
		r = r.WithContext(context.WithValue(r.Context(), readBudgetKey{}, b))
		next.ServeHTTP(&budgetWriter{ResponseWriter: w, b: b}, r)
	})
}

// readBudget is what is left of a remote read's sample limit (none with
// limit 0), shared by its queries, and whether its request's context has
// ended. The read handler runs them one after another, in the request's
// goroutine.
type readBudget struct {
	left, limit int
	exceeded    bool
	unchecked   int   // samples since the context was last looked at
	cancelled   error // the context's error, once seen
}

// readCancelCheckEvery is how many samples a remote read copies between
// looks at its context: a few milliseconds' work, and ctx.Err, which
// takes a lock, is not paid on every sample.
const readCancelCheckEvery = 4096

type readBudgetKey struct{}

var errReadBudget = errors.New("remote read: sample limit exceeded")

// budgetQueryable charges the samples that a remote read's queries
// iterate to the read's budget, when its context carries one, and stops
// them when that context ends; other queries are untouched. Streamed reads
// go through the chunk querier, which it leaves alone: their frames bound
// their memory, and a frame's write to a client that has gone fails.
type budgetQueryable struct {
	storage.SampleAndChunkQueryable
}

func (q budgetQueryable) Querier(mint, maxt int64) (storage.Querier, error) {
	inner, err := q.SampleAndChunkQueryable.Querier(mint, maxt)
	if err != nil {
		return nil, err
	}
	return budgetQuerier{inner}, nil
}

type budgetQuerier struct{ storage.Querier }

func (q budgetQuerier) Select(ctx context.Context, sortSeries bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	ss := q.Querier.Select(ctx, sortSeries, hints, ms...)
	if b, ok := ctx.Value(readBudgetKey{}).(*readBudget); ok {
		return budgetSeriesSet{ss, b, ctx}
	}
	return ss
}

type budgetSeriesSet struct {
	storage.SeriesSet
	b   *readBudget
	ctx context.Context
}

func (s budgetSeriesSet) At() storage.Series { return budgetSeries{s.SeriesSet.At(), s.b, s.ctx} }

type budgetSeries struct {
	storage.Series
	b   *readBudget
	ctx context.Context
}

func (s budgetSeries) Iterator(it chunkenc.Iterator) chunkenc.Iterator {
	if bi, ok := it.(*budgetIterator); ok {
		it = bi.Iterator
	}
	return &budgetIterator{s.Series.Iterator(it), s.b, s.ctx}
}

// budgetIterator stops at the first sample beyond the budget, with
// errReadBudget, and within readCancelCheckEvery samples of its context's
// end, with the context's error. Only Next is charged: the read handler
// does not Seek.
type budgetIterator struct {
	chunkenc.Iterator
	b   *readBudget
	ctx context.Context
}

func (i *budgetIterator) Next() chunkenc.ValueType {
	if i.b.exceeded || i.b.cancelled != nil {
		return chunkenc.ValNone
	}
	vt := i.Iterator.Next()
	if vt == chunkenc.ValNone {
		return vt
	}
	if i.b.limit > 0 {
		if i.b.left == 0 {
			i.b.exceeded = true
			return chunkenc.ValNone
		}
		i.b.left--
	}
	if i.b.unchecked++; i.b.unchecked >= readCancelCheckEvery {
		i.b.unchecked = 0
		if err := i.ctx.Err(); err != nil {
			i.b.cancelled = fmt.Errorf("remote read: %w", err)
			return chunkenc.ValNone
		}
	}
	return vt
}

func (i *budgetIterator) Err() error {
	switch {
	case i.b.exceeded:
		return errReadBudget
	case i.b.cancelled != nil:
		return i.b.cancelled
	}
	return i.Iterator.Err()
}

// budgetWriter answers a read stopped by its budget as Prometheus answers
// one over its limit, 400, where its handler would answer an iterator's
// error with 500.
type budgetWriter struct {
	http.ResponseWriter
	b        *readBudget
	replaced bool
}

func (w *budgetWriter) WriteHeader(code int) {
	if code != http.StatusInternalServerError || !w.b.exceeded {
		w.ResponseWriter.WriteHeader(code)
		return
	}
	w.replaced = true
	w.ResponseWriter.WriteHeader(http.StatusBadRequest)
	_, _ = fmt.Fprintf(w.ResponseWriter, "exceeded sample limit (%d) over the request's queries (--storage.remote.read-sample-limit)\n", w.b.limit)
}

func (w *budgetWriter) Write(p []byte) (int, error) {
	if w.replaced {
		return len(p), nil
	}
	return w.ResponseWriter.Write(p)
}

// Flush is the streamed response's: Prometheus's handler needs an
// http.Flusher.
func (w *budgetWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *budgetWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func checkReadRequest(body []byte) string {
	if len(body) > maxReadRequestBytes {
		return fmt.Sprintf("request body exceeds the limit of %d bytes", maxReadRequestBytes)
	}
	n, err := snappy.DecodedLen(body)
	if err != nil {
		return "decode snappy: " + err.Error()
	}
	if n > maxSnappyExpansion*len(body) || n > maxReadRequestBytes {
		return fmt.Sprintf("decode snappy: header claims %d decoded bytes from %d compressed bytes", n, len(body))
	}
	raw, err := snappy.Decode(nil, body)
	if err != nil {
		return "decode snappy: " + err.Error()
	}
	var req prompb.ReadRequest
	if err := proto.Unmarshal(raw, &req); err != nil {
		return "decode read request: " + err.Error()
	}
	for i, q := range req.Queries {
		if _, err := remote.FromLabelMatchers(q.Matchers); err != nil {
			return fmt.Sprintf("query %d: invalid matcher: %v", i, err)
		}
	}
	return ""
}
