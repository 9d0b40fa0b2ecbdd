package tsdb

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/gogo/protobuf/proto"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"github.com/stretchr/testify/require"
)

// checkFastV2 is the decoder's contract against gogo's Unmarshal on body:
// whenever the fast decoder accepts, gogo accepts too and both read the
// same symbols, label references, samples and metadata. It returns whether
// the fast path took it.
func checkFastV2(t testing.TB, body []byte) bool {
	t.Helper()
	var d fastV2
	fast := d.decodeV2(body)
	var want writev2.Request
	err := proto.Unmarshal(body, &want)
	if !fast {
		return false
	}
	require.NoError(t, err, "fast decoder accepted what gogo rejects: %x", body)
	require.Len(t, d.symbols, len(want.Symbols))
	for i, s := range want.Symbols {
		require.Equal(t, s, d.sym(body, uint32(i)), "symbol %d", i)
	}
	require.Len(t, d.series, len(want.Timeseries))
	for i, ts := range want.Timeseries {
		require.Empty(t, ts.Histograms)
		require.Empty(t, ts.Exemplars)
		s := d.series[i]
		refs := d.refs[s.refsFrom:s.refsTo]
		if len(ts.LabelsRefs) == 0 {
			require.Empty(t, refs, "series %d", i)
		} else {
			require.Equal(t, ts.LabelsRefs, refs, "series %d", i)
		}
		fs := d.samples[s.samplesFrom:s.samplesTo]
		require.Len(t, fs, len(ts.Samples), "series %d", i)
		for j, smp := range ts.Samples {
			require.Equal(t, smp.Timestamp, fs[j].t)
			require.Equal(t, smp.StartTimestamp, fs[j].st)
			require.Equal(t, math.Float64bits(smp.Value), math.Float64bits(fs[j].v))
		}
		require.Equal(t, ts.Metadata.Type, s.meta.typ, "series %d", i)
		require.Equal(t, ts.Metadata.HelpRef, s.meta.help, "series %d", i)
		require.Equal(t, ts.Metadata.UnitRef, s.meta.unit, "series %d", i)
		// The metadata as appendV2 resolves it.
		md, err := ts.ToMetadata(want.Symbols)
		if gotErr := d.metadataError(body, s.meta); err != nil || gotErr != nil {
			require.Equal(t, err, gotErr, "series %d", i)
		} else {
			require.Equal(t, md.Type, metricType(s.meta.typ))
			require.Equal(t, md.Help, d.sym(body, s.meta.help))
			require.Equal(t, md.Unit, d.sym(body, s.meta.unit))
		}
	}
	return true
}

// v2Symbols are the strings random 2.0 requests draw labels and metadata
// from: valid names and values, and a few that labelChecker refuses.
var v2Symbols = []string{"__name__", "job", "instance", "le", "a", "node_cpu_seconds_total", "up", "api", "10.0.0.1:9100",
	"Total CPU seconds.", "seconds", "bytes", "ünïcödé", "0.5", "x\x00y", "\xff\xfe", "b-c", "zz", "Help with\nnewline."}

// randRequestV2 is a random 2.0 request over a shuffled symbols table, so
// the same label strings have other references from request to request.
// With odd, it also carries what the fast decoder leaves to gogo. Most
// series are valid; some have odd, out-of-table or unsorted references,
// bad metadata references, or timestamps the handler rejects.
func randRequestV2(r *rand.Rand, odd bool, now int64) *writev2.Request {
	syms := append([]string(nil), v2Symbols...)
	r.Shuffle(len(syms), func(i, j int) { syms[i], syms[j] = syms[j], syms[i] })
	if r.IntN(4) == 0 {
		syms = syms[:1+r.IntN(len(syms))]
	}
	if r.IntN(20) != 0 {
		syms = append([]string{""}, syms...)
	}
	if r.IntN(10) == 0 {
		syms = append(syms, randString(r))
	}
	index := map[string]uint32{}
	for i, s := range syms {
		if _, ok := index[s]; !ok {
			index[s] = uint32(i)
		}
	}
	ref := func(s string) uint32 {
		if i, ok := index[s]; ok {
			return i
		}
		return uint32(r.IntN(len(syms)))
	}
	req := &writev2.Request{Symbols: syms}
	for range r.IntN(10) {
		var ts writev2.TimeSeries
		// Mostly sorted label names from the table, with __name__.
		ts.LabelsRefs = append(ts.LabelsRefs, ref("__name__"), ref([]string{"up", "node_cpu_seconds_total", "a"}[r.IntN(3)]))
		for _, n := range []string{"instance", "job", "le"} {
			if r.IntN(2) == 0 {
				ts.LabelsRefs = append(ts.LabelsRefs, ref(n), ref([]string{"api", "10.0.0.1:9100", "0.5", "b-c"}[r.IntN(4)]))
			}
		}
		switch r.IntN(12) {
		case 0:
			ts.LabelsRefs = append(ts.LabelsRefs, uint32(r.IntN(len(syms)+2)))
		case 1:
			ts.LabelsRefs = append(ts.LabelsRefs, uint32(r.IntN(len(syms)+2)), uint32(r.IntN(len(syms)+2)))
		case 2:
			r.Shuffle(len(ts.LabelsRefs)/2, func(i, j int) {
				ts.LabelsRefs[2*i], ts.LabelsRefs[2*j] = ts.LabelsRefs[2*j], ts.LabelsRefs[2*i]
				ts.LabelsRefs[2*i+1], ts.LabelsRefs[2*j+1] = ts.LabelsRefs[2*j+1], ts.LabelsRefs[2*i+1]
			})
		case 3:
			ts.LabelsRefs = nil
		}
		// A series without samples is refused (and takes the generic
		// path): now and then one, so the rest of a request is tested.
		n := 1 + r.IntN(3)
		if r.IntN(60) == 0 {
			n = 0
		}
		for range n {
			s := writev2.Sample{Timestamp: now - int64(r.IntN(3_600_000)), Value: randFloat(r)}
			switch r.IntN(8) {
			case 0:
				s.Timestamp = randTimestamp(r)
			case 1:
				s.StartTimestamp = s.Timestamp - 1000
			case 2:
				s.StartTimestamp = randTimestamp(r)
			}
			ts.Samples = append(ts.Samples, s)
		}
		if r.IntN(5) != 0 {
			ts.Metadata = writev2.Metadata{
				Type:    writev2.Metadata_MetricType(r.IntN(9)),
				HelpRef: ref([]string{"", "Total CPU seconds.", "Help with\nnewline."}[r.IntN(3)]),
				UnitRef: ref([]string{"", "seconds", "bytes"}[r.IntN(3)]),
			}
			switch r.IntN(15) {
			case 0:
				ts.Metadata.HelpRef = uint32(len(syms) + r.IntN(3))
			case 1:
				ts.Metadata.UnitRef = uint32(len(syms) + r.IntN(3))
			case 2:
				ts.Metadata.Type = writev2.Metadata_MetricType(-1 - r.Int32())
			}
		}
		if odd && r.IntN(3) == 0 {
			ts.Exemplars = append(ts.Exemplars, writev2.Exemplar{LabelsRefs: ts.LabelsRefs[:len(ts.LabelsRefs)&^1], Value: 1, Timestamp: now})
		}
		if odd && r.IntN(3) == 0 {
			ts.Histograms = append(ts.Histograms, writev2.Histogram{Count: &writev2.Histogram_CountInt{CountInt: 1}, Timestamp: now})
		}
		req.Timeseries = append(req.Timeseries, ts)
	}
	return req
}

// encodeV2 encodes req as proto.Marshal would, or, at random, in one of
// the other ways the protobuf rules allow and gogo reads the same: labels
// refs unpacked or split over fields, metadata split over messages,
// symbols after or between the series, sample fields reversed.
func encodeV2(r *rand.Rand, req *writev2.Request) []byte {
	if r.IntN(3) == 0 {
		b, err := proto.Marshal(req)
		if err != nil {
			panic(err)
		}
		return b
	}
	var syms, series [][]byte
	for _, s := range req.Symbols {
		syms = append(syms, lenField(nil, tagV2Symbols, []byte(s)))
	}
	for _, ts := range req.Timeseries {
		var parts [][]byte
		refs := ts.LabelsRefs
		for len(refs) > 0 {
			k := 1 + r.IntN(len(refs))
			if r.IntN(2) == 0 {
				for _, v := range refs[:k] {
					parts = append(parts, varint(varint(nil, tagV2Ref), uint64(v)))
				}
			} else {
				var p []byte
				for _, v := range refs[:k] {
					p = varint(p, uint64(v))
				}
				parts = append(parts, lenField(nil, tagV2RefsPacked, p))
			}
			refs = refs[k:]
		}
		for _, s := range ts.Samples {
			var p []byte
			fields := [][]byte{
				binary.LittleEndian.AppendUint64(varint(nil, tagSampleValue), math.Float64bits(s.Value)),
				varint(varint(nil, tagSampleTime), uint64(s.Timestamp)),
			}
			if s.StartTimestamp != 0 || r.IntN(4) == 0 {
				fields = append(fields, varint(varint(nil, tagV2SampleStart), uint64(s.StartTimestamp)))
			}
			r.Shuffle(len(fields), func(i, j int) { fields[i], fields[j] = fields[j], fields[i] })
			for _, f := range fields {
				p = append(p, f...)
			}
			parts = append(parts, lenField(nil, tagV2Samples, p))
		}
		m := ts.Metadata
		metaFields := [][]byte{
			varint(varint(nil, tagV2MetaType), uint64(int64(m.Type))),
			varint(varint(nil, tagV2MetaHelpRef), uint64(m.HelpRef)),
			varint(varint(nil, tagV2MetaUnitRef), uint64(m.UnitRef)),
		}
		if r.IntN(2) == 0 {
			for _, f := range metaFields {
				parts = append(parts, lenField(nil, tagV2Metadata, f))
			}
		} else {
			parts = append(parts, lenField(nil, tagV2Metadata, append(append(metaFields[0], metaFields[1]...), metaFields[2]...)))
		}
		for _, e := range ts.Exemplars {
			b, _ := proto.Marshal(&e)
			parts = append(parts, lenField(nil, 4<<3|2, b))
		}
		for _, h := range ts.Histograms {
			b, _ := proto.Marshal(&h)
			parts = append(parts, lenField(nil, 3<<3|2, b))
		}
		// Fields of different numbers in any order; the same number's
		// in theirs (a random merge of the per-field lists).
		if r.IntN(2) == 0 {
			parts = interleave(r, parts)
		}
		var p []byte
		for _, x := range parts {
			p = append(p, x...)
		}
		series = append(series, lenField(nil, tagV2TimeSeries, p))
	}
	var out []byte
	at := r.IntN(len(series) + 1)
	for _, s := range series[:at] {
		out = append(out, s...)
	}
	for _, s := range syms {
		out = append(out, s...)
	}
	for _, s := range series[at:] {
		out = append(out, s...)
	}
	return out
}

// interleave reorders the fields of a message at random, keeping the
// order of those of one field number.
func interleave(r *rand.Rand, parts [][]byte) [][]byte {
	byField := map[byte][][]byte{}
	var fields []byte
	for _, p := range parts {
		f := p[0] >> 3 // every tag here is one byte
		if _, ok := byField[f]; !ok {
			fields = append(fields, f)
		}
		byField[f] = append(byField[f], p)
	}
	out := make([][]byte, 0, len(parts))
	for len(out) < len(parts) {
		f := fields[r.IntN(len(fields))]
		if q := byField[f]; len(q) > 0 {
			out, byField[f] = append(out, q[0]), q[1:]
		}
	}
	return out
}

func TestFastV2EdgeCases(t *testing.T) {
	sym := func(s string) []byte { return lenField(nil, tagV2Symbols, []byte(s)) }
	ts := func(fields ...[]byte) []byte {
		var p []byte
		for _, f := range fields {
			p = append(p, f...)
		}
		return lenField(nil, tagV2TimeSeries, p)
	}
	packed := func(refs ...uint64) []byte {
		var p []byte
		for _, v := range refs {
			p = varint(p, v)
		}
		return lenField(nil, tagV2RefsPacked, p)
	}
	one := func(v uint64) []byte { return varint(varint(nil, tagV2Ref), v) }
	smp := lenField(nil, tagV2Samples, sampleMsg(1000, 2.5))
	meta := func(fields ...uint64) []byte {
		var p []byte
		for i := 0; i < len(fields); i += 2 {
			p = varint(varint(p, fields[i]), fields[i+1])
		}
		return lenField(nil, tagV2Metadata, p)
	}
	table := append(append(sym(""), sym("__name__")...), sym("up")...)
	cases := []struct {
		name string
		body []byte
		fast bool // whether the fast path must take it
	}{
		{"empty request", nil, true},
		{"only symbols", table, true},
		{"empty series", append(table, ts()...), false}, // no samples: the generic path refuses it, named
		{"packed refs", append(table, ts(packed(1, 2), smp)...), true},
		{"unpacked refs", append(table, ts(one(1), one(2), smp)...), true},
		{"packed and unpacked mixed", append(table, ts(one(1), packed(2), smp)...), true},
		{"empty packed refs", append(table, ts(packed(), smp)...), true},
		{"ref beyond 32 bits keeps the low bits", append(table, ts(packed(1<<32|1, 2), smp)...), true},
		{"symbols after series", append(ts(packed(1, 2), smp), table...), true},
		{"samples before refs", append(table, ts(smp, packed(1, 2))...), true},
		{"metadata", append(table, ts(packed(1, 2), smp, meta(tagV2MetaType, 1, tagV2MetaHelpRef, 2, tagV2MetaUnitRef, 0))...), true},
		{"metadata merged over two messages", append(table, ts(packed(1, 2), meta(tagV2MetaType, 1), smp, meta(tagV2MetaHelpRef, 2))...), true},
		{"metadata type out of enum", append(table, ts(packed(1, 2), smp, meta(tagV2MetaType, 1<<40|99))...), true},
		{"metadata ref out of table", append(table, ts(packed(1, 2), smp, meta(tagV2MetaHelpRef, 7))...), true},
		{"start timestamp", append(table, ts(packed(1, 2), lenField(nil, tagV2Samples,
			append(sampleMsg(1000, 1), varint(varint(nil, tagV2SampleStart), 900)...)))...), true},
		{"truncated packed refs", append(table, ts(append([]byte{tagV2RefsPacked, 2}, 0x81))...), false},
		{"packed varint runs past its field", append(table, lenField(nil, tagV2TimeSeries, []byte{tagV2RefsPacked, 1, 0x81, 0x01})...), false},
		{"reserved request field 1", lenField(nil, 1<<3|2, nil), false},
		{"unknown request field", lenField(nil, 6<<3|2, nil), false},
		{"histogram", append(table, ts(lenField(nil, 3<<3|2, nil))...), false},
		{"exemplar", append(table, ts(lenField(nil, 4<<3|2, nil))...), false},
		{"reserved series field 6", append(table, ts(lenField(nil, 6<<3|2, nil))...), false},
		{"unknown metadata field", append(table, ts(meta(2<<3|0, 1))...), false},
		{"unknown sample field", append(table, ts(lenField(nil, tagV2Samples, varint(varint(nil, 4<<3|0), 1)))...), false},
		{"symbols as varint", varint(varint(nil, 4<<3|0), 1), false},
		{"metadata type as length-delimited", append(table, ts(lenField(nil, tagV2Metadata, lenField(nil, 1<<3|2, nil)))...), false},
		{"eleven-byte varint", append(table, ts(append([]byte{tagV2Ref}, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01))...), false},
		{"truncated double", append(table, ts(lenField(nil, tagV2Samples, []byte{tagSampleValue, 0, 0}))...), false},
		{"group wire type", []byte{4<<3 | 3}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			require.Equal(t, c.fast, checkFastV2(t, c.body))
		})
	}
}

// TestFastV2MatchesGogo is the decoder's property test: on random requests
// in random encodings and on random corruptions of them, the fast decoder
// either defers to gogo or reads exactly what gogo reads.
func TestFastV2MatchesGogo(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 5))
	matchesGogo(t, r, 1500, checkFastV2, func(i int) ([]byte, bool) {
		req := randRequestV2(r, i%4 == 0, 1e12)
		hasOdd := false
		for _, ts := range req.Timeseries {
			// A series without samples is left to the generic path too.
			hasOdd = hasOdd || len(ts.Histograms) > 0 || len(ts.Exemplars) > 0 || len(ts.Samples) == 0
		}
		return encodeV2(r, req), !hasOdd
	})
}
