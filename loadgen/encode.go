package loadgen

import (
	"encoding/binary"
	"math"
)

// Protobuf wire tags used below (field number << 3 | wire type).
const (
	tagV1TimeSeries = 1<<3 | 2 // prometheus.WriteRequest.timeseries
	tagV2Symbols    = 4<<3 | 2 // io.prometheus.write.v2.Request.symbols
	tagV2TimeSeries = 5<<3 | 2 // io.prometheus.write.v2.Request.timeseries
	tagLabels       = 1<<3 | 2 // v1 TimeSeries.labels, v2 TimeSeries.labels_refs (packed)
	tagLabelName    = 1<<3 | 2 // v1 Label.name
	tagLabelValue   = 2<<3 | 2 // v1 Label.value
	tagSamples      = 2<<3 | 2 // TimeSeries.samples, in both versions
	tagSampleValue  = 1<<3 | 1 // Sample.value (fixed64)
	tagSampleTime   = 2<<3 | 0 // Sample.timestamp (varint)
	tagSampleStart  = 3<<3 | 0 // v2 Sample.start_timestamp (varint)
	tagV2Metadata   = 5<<3 | 2 // v2 TimeSeries.metadata
	tagV2MetaType   = 1<<3 | 0 // v2 Metadata.type
	v2TypeCounter   = 1        // Metadata_METRIC_TYPE_COUNTER
	v2TypeGauge     = 2        // Metadata_METRIC_TYPE_GAUGE
)

// batch is the part of one request that never changes between rounds: for
// remote-write 2.0 the symbols table, and per series the encoded labels (and
// v2 metadata). A round only appends samples, so building a request is a
// copy of these bytes plus 16 bytes per sample: no protobuf marshalling,
// no allocation once dst has grown.
type batch struct {
	prefix   []byte    // v2: the symbols field; v1: empty
	tsTag    byte      // tag of a TimeSeries in the request
	consts   [][]byte  // per series: labels (v1) or labels_refs and metadata (v2)
	first    int       // index of the batch's first series
	counter  []bool    // per series: a counter
	st       int64     // v2: the counters' start timestamp, 0 for none
	nSamples int       // samples of one request: len(consts) × samples per series
	tmpl     *template // the compressed request, made by the first build
}

// newBatch encodes the constant part of a request carrying series
// [first, first+len(sets)). With protocol 2 and st > 0 the counters'
// samples carry st as their start timestamp.
func newBatch(protocol, first int, sets [][]label, counter []bool, st int64) *batch {
	b := &batch{first: first, consts: make([][]byte, len(sets)), counter: counter}
	if protocol == 1 {
		b.tsTag = tagV1TimeSeries
		for i, ls := range sets {
			var c []byte
			for _, l := range ls {
				n := 1 + uvarintLen(uint64(len(l.name))) + len(l.name) + 1 + uvarintLen(uint64(len(l.value))) + len(l.value)
				c = append(c, tagLabels)
				c = binary.AppendUvarint(c, uint64(n))
				c = appendString(c, tagLabelName, l.name)
				c = appendString(c, tagLabelValue, l.value)
			}
			b.consts[i] = c
		}
		return b
	}
	b.tsTag = tagV2TimeSeries
	b.st = max(0, st)
	// Symbols are per request, as a sender's are: index 0 is "" by the spec.
	syms := map[string]uint32{"": 0}
	b.prefix = appendString(b.prefix, tagV2Symbols, "")
	ref := func(s string) uint32 {
		r, ok := syms[s]
		if !ok {
			r = uint32(len(syms))
			syms[s] = r
			b.prefix = appendString(b.prefix, tagV2Symbols, s)
		}
		return r
	}
	for i, ls := range sets {
		var refs []byte
		for _, l := range ls {
			refs = binary.AppendUvarint(refs, uint64(ref(l.name)))
			refs = binary.AppendUvarint(refs, uint64(ref(l.value)))
		}
		c := append([]byte{tagLabels}, binary.AppendUvarint(nil, uint64(len(refs)))...)
		c = append(c, refs...)
		typ := byte(v2TypeGauge)
		if counter[i] {
			typ = v2TypeCounter
		}
		c = append(c, tagV2Metadata, 2, tagV2MetaType, typ)
		b.consts[i] = c
	}
	return b
}

// appendRequest appends the uncompressed request for one round to dst:
// every series of the batch with sps samples at timestamps ts, ts+1, …
// (milliseconds), values from vs (nil: zeros). It allocates only when dst
// must grow.
// If marks is not nil, the offset in dst of each sample's value is appended
// to *marks (the value's 8 bytes, a tag and the timestamp follow).
func (b *batch) appendRequest(dst []byte, ts int64, sps int, vs *values, marks *[]int32) []byte {
	dst = append(dst, b.prefix...)
	// The sample messages' sizes depend only on the timestamps and on
	// whether the series carries a start timestamp.
	samplesLen, stLen := 0, 0
	for k := range sps {
		samplesLen += 2 + sampleLen(ts+int64(k))
	}
	if b.st > 0 {
		stLen = 1 + uvarintLen(uint64(b.st))
	}
	for i, c := range b.consts {
		withST := stLen > 0 && b.counter[i]
		n := samplesLen
		if withST {
			n += sps * stLen
		}
		dst = append(dst, b.tsTag)
		dst = binary.AppendUvarint(dst, uint64(len(c)+n))
		dst = append(dst, c...)
		for k := range sps {
			t := ts + int64(k)
			l := sampleLen(t)
			if withST {
				l += stLen
			}
			dst = append(dst, tagSamples, byte(l), tagSampleValue)
			if marks != nil {
				*marks = append(*marks, int32(len(dst)))
			}
			v := 0.0 // a template's placeholder
			if vs != nil {
				v = vs.next(b.first + i)
			}
			dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(v))
			dst = append(dst, tagSampleTime)
			dst = binary.AppendUvarint(dst, uint64(t))
			if withST {
				dst = append(dst, tagSampleStart)
				dst = binary.AppendUvarint(dst, uint64(b.st))
			}
		}
	}
	return dst
}

// sampleLen is the encoded size of a Sample message: value and timestamp,
// both always written (a zero value is valid protobuf either way).
func sampleLen(t int64) int { return 1 + 8 + 1 + uvarintLen(uint64(t)) }

func appendString(dst []byte, tag byte, s string) []byte {
	dst = append(dst, tag)
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}
