package tsdb

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/gogo/protobuf/proto"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"
)

// checkFastV1 is the decoder's contract against gogo's Unmarshal on body:
// whenever the fast decoder accepts, gogo accepts too and both read the
// same series, labels and samples. It returns whether the fast path took it.
func checkFastV1(t testing.TB, body []byte) bool {
	t.Helper()
	var d fastV1
	fast := d.decodeV1(body)
	var want prompb.WriteRequest
	err := proto.Unmarshal(body, &want)
	if !fast {
		return false
	}
	require.NoError(t, err, "fast decoder accepted what gogo rejects: %x", body)
	require.Len(t, d.series, len(want.Timeseries))
	for i, ts := range want.Timeseries {
		require.Empty(t, ts.Histograms)
		require.Empty(t, ts.Exemplars)
		s := d.series[i]
		fl := d.labels[s.labelsFrom:s.labelsTo]
		require.Len(t, fl, len(ts.Labels), "series %d", i)
		for j, l := range ts.Labels {
			require.Equal(t, l.Name, str(body, fl[j].nameFrom, fl[j].nameTo), "series %d label %d", i, j)
			require.Equal(t, l.Value, str(body, fl[j].valueFrom, fl[j].valueTo), "series %d label %d", i, j)
		}
		fs := d.samples[s.samplesFrom:s.samplesTo]
		require.Len(t, fs, len(ts.Samples), "series %d", i)
		for j, smp := range ts.Samples {
			require.Equal(t, smp.Timestamp, fs[j].t)
			require.Equal(t, math.Float64bits(smp.Value), math.Float64bits(fs[j].v))
		}
	}
	require.Len(t, d.meta, len(want.Metadata))
	for i, m := range want.Metadata {
		got := d.meta[i]
		require.Equal(t, int32(m.Type), got.typ, "metadata %d", i)
		require.Equal(t, m.MetricFamilyName, str(body, got.familyFrom, got.familyTo), "metadata %d", i)
		require.Equal(t, m.Help, str(body, got.helpFrom, got.helpTo), "metadata %d", i)
		require.Equal(t, m.Unit, str(body, got.unitFrom, got.unitTo), "metadata %d", i)
	}
	return true
}

var decodeStrings = []string{"", "__name__", "a", "job", "instance", "node_cpu_seconds_total", "ünïcödé", "\xff\xfe", "x\x00y",
	string(make([]byte, 200)), "le", "0.5"}

func randString(r *rand.Rand) string {
	if r.IntN(4) == 0 {
		b := make([]byte, r.IntN(300))
		for i := range b {
			b[i] = byte(r.UintN(256))
		}
		return string(b)
	}
	return decodeStrings[r.IntN(len(decodeStrings))]
}

func randFloat(r *rand.Rand) float64 {
	switch r.IntN(5) {
	case 0:
		return math.NaN()
	case 1:
		return math.Float64frombits(0x7ff0000000000002) // stale-marker-like NaN payload
	case 2:
		return math.Inf(-1 + 2*r.IntN(2))
	default:
		return math.Float64frombits(r.Uint64())
	}
}

func randTimestamp(r *rand.Rand) int64 {
	switch r.IntN(4) {
	case 0:
		return -r.Int64() // ten-byte varints
	case 1:
		return int64(r.IntN(200))
	default:
		return r.Int64()
	}
}

// randRequest is a random WriteRequest; with odd, it also carries what the
// fast decoder leaves to gogo (histograms, exemplars), and metadata.
func randRequest(r *rand.Rand, odd bool) *prompb.WriteRequest {
	req := &prompb.WriteRequest{}
	for range r.IntN(12) {
		var ts prompb.TimeSeries
		for range r.IntN(12) {
			ts.Labels = append(ts.Labels, prompb.Label{Name: randString(r), Value: randString(r)})
		}
		for range r.IntN(5) {
			ts.Samples = append(ts.Samples, prompb.Sample{Timestamp: randTimestamp(r), Value: randFloat(r)})
		}
		if odd && r.IntN(3) == 0 {
			ts.Exemplars = append(ts.Exemplars, prompb.Exemplar{Labels: ts.Labels, Value: 1, Timestamp: 5})
		}
		if odd && r.IntN(3) == 0 {
			ts.Histograms = append(ts.Histograms, prompb.Histogram{Count: &prompb.Histogram_CountInt{CountInt: 1}, Timestamp: 7})
		}
		req.Timeseries = append(req.Timeseries, ts)
	}
	for range r.IntN(3) {
		// Types beyond the enum's too: gogo keeps them as sent.
		req.Metadata = append(req.Metadata, prompb.MetricMetadata{Type: prompb.MetricMetadata_MetricType(r.IntN(10)),
			MetricFamilyName: randString(r), Help: randString(r), Unit: randString(r)})
	}
	return req
}

// Hand-made encodings gogo accepts but proto.Marshal never writes.
func varint(b []byte, v uint64) []byte { return binary.AppendUvarint(b, v) }

func lenField(b []byte, tag uint64, payload []byte) []byte {
	return append(varint(varint(b, tag), uint64(len(payload))), payload...)
}

func labelMsg(fields ...[2]any) []byte {
	var b []byte
	for _, f := range fields {
		b = lenField(b, uint64(f[0].(int)), []byte(f[1].(string)))
	}
	return b
}

func sampleMsg(t int64, v float64) []byte {
	b := varint(nil, tagSampleValue)
	b = binary.LittleEndian.AppendUint64(b, math.Float64bits(v))
	return varint(varint(b, tagSampleTime), uint64(t))
}

func TestFastV1EdgeCases(t *testing.T) {
	name := labelMsg([2]any{tagLabelName, "__name__"}, [2]any{tagLabelValue, "up"})
	smp := sampleMsg(1000, 2.5)
	cases := []struct {
		name string
		body []byte
		fast bool // whether the fast path must take it
	}{
		{"empty request", nil, true},
		{"empty series", lenField(nil, tagTimeSeries, nil), true},
		{"empty label", lenField(nil, tagTimeSeries, lenField(nil, tagLabels, nil)), true},
		{"value before name", lenField(nil, tagTimeSeries, lenField(nil, tagLabels,
			labelMsg([2]any{tagLabelValue, "up"}, [2]any{tagLabelName, "__name__"}))), true},
		{"repeated name, last wins", lenField(nil, tagTimeSeries, lenField(nil, tagLabels,
			labelMsg([2]any{tagLabelName, "x"}, [2]any{tagLabelName, "__name__"}, [2]any{tagLabelValue, "up"}))), true},
		{"samples before labels", lenField(nil, tagTimeSeries, lenField(lenField(nil, tagSamples, smp), tagLabels, name)), true},
		{"labels and samples interleaved", lenField(nil, tagTimeSeries,
			lenField(lenField(lenField(nil, tagLabels, name), tagSamples, smp), tagLabels, labelMsg([2]any{tagLabelName, "z"}, [2]any{tagLabelValue, "1"}))), true},
		{"sample fields reversed", lenField(nil, tagTimeSeries, lenField(nil, tagSamples,
			append(varint(varint(nil, tagSampleTime), 5), append(varint(nil, tagSampleValue), 0, 0, 0, 0, 0, 0, 0xf0, 0x3f)...))), true},
		{"non-minimal varint tag", append([]byte{0x8a, 0x00}, varint(nil, 0)...), true},
		{"truncated length", []byte{0x0a, 0x05, 0x0a}, false},
		{"length overflows", []byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, false},
		{"unknown top-level field", lenField(nil, 2<<3|2, nil), false},
		{"metadata, empty", lenField(nil, 3<<3|2, nil), true},
		{"metadata, type twice", lenField(nil, 3<<3|2, []byte{1 << 3, 1, 1 << 3, 2}), true},
		{"metadata, unknown field", lenField(nil, 3<<3|2, lenField(nil, 3<<3|2, []byte("x"))), false},
		{"metadata, type not a varint", lenField(nil, 3<<3|2, lenField(nil, 1<<3|2, []byte("x"))), false},
		{"exemplar", lenField(nil, tagTimeSeries, lenField(nil, 3<<3|2, nil)), false},
		{"histogram", lenField(nil, tagTimeSeries, lenField(nil, 4<<3|2, nil)), false},
		{"wrong wire type for value", lenField(nil, tagTimeSeries, lenField(nil, tagSamples, varint(varint(nil, 1<<3|0), 1))), false},
		{"truncated double", lenField(nil, tagTimeSeries, lenField(nil, tagSamples, []byte{tagSampleValue, 0, 0})), false},
		{"group wire type", []byte{0x0b}, false},
		{"field zero", []byte{0x02, 0x00}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			require.Equal(t, c.fast, checkFastV1(t, c.body))
		})
	}
}

// mutate returns a random corruption of body: truncated, bytes replaced,
// a bit flipped or junk inserted.
func mutate(r *rand.Rand, body []byte) []byte {
	m := append([]byte(nil), body...)
	switch r.IntN(4) {
	case 0:
		if len(m) > 0 {
			m = m[:r.IntN(len(m))]
		}
	case 1:
		for range 1 + r.IntN(3) {
			if len(m) > 0 {
				m[r.IntN(len(m))] = byte(r.UintN(256))
			}
		}
	case 2:
		if len(m) > 0 {
			m[r.IntN(len(m))] ^= 1 << r.UintN(8)
		}
	default:
		at := r.IntN(len(m) + 1)
		junk := make([]byte, 1+r.IntN(4))
		for j := range junk {
			junk[j] = byte(r.UintN(256))
		}
		m = append(m[:at:at], append(junk, body[at:]...)...)
	}
	return m
}

// TestFastV1MatchesGogo is the property test: on random requests and on
// random corruptions of them, the fast decoder either defers to gogo or
// reads exactly what gogo reads, and never accepts what gogo rejects.
func TestFastV1MatchesGogo(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	matchesGogo(t, r, 1000, checkFastV1, func(i int) ([]byte, bool) {
		req := randRequest(r, i%4 == 0)
		body, err := proto.Marshal(req)
		require.NoError(t, err)
		hasOdd := false
		for _, ts := range req.Timeseries {
			hasOdd = hasOdd || len(ts.Histograms) > 0 || len(ts.Exemplars) > 0
		}
		return body, !hasOdd
	})
}

// matchesGogo runs a decoder's property test: check (the decoder's
// contract against gogo) on 3000 random bodies from gen, which also says
// whether the fast path must take each, and on 5 random corruptions of
// each. Neither half may be vacuous: the fast path must take more than
// minTook of the bodies and some but not all of the corruptions.
func matchesGogo(t *testing.T, r *rand.Rand, minTook int, check func(testing.TB, []byte) bool, gen func(i int) ([]byte, bool)) {
	var took, mutatedTook, mutated int
	for i := range 3000 {
		body, wantFast := gen(i)
		fast := check(t, body)
		require.Equal(t, wantFast, fast, "request %d", i)
		if fast {
			took++
		}
		for range 5 {
			mutated++
			if check(t, mutate(r, body)) {
				mutatedTook++
			}
		}
	}
	require.Greater(t, took, minTook)
	require.Greater(t, mutatedTook, mutated/50, "corruptions the fast path took")
	require.Less(t, mutatedTook, mutated, "corruptions the fast path took")
	t.Logf("fast path took %d of 3000 requests and %d of %d corruptions", took, mutatedTook, mutated)
}

func FuzzFastV1(f *testing.F) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 20 {
		b, _ := proto.Marshal(randRequest(r, r.IntN(2) == 0))
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, body []byte) { checkFastV1(t, body) })
}
