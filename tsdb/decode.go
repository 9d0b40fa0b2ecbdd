package tsdb

import (
	"encoding/binary"
	"math"
	"unsafe"
)

// fastV1 is a remote-write 1.0 WriteRequest decoded without the generic
// protobuf unmarshal: labels are byte offsets into the decoded body and
// samples are plain pairs, in slices reused from request to request, so a
// steady stream of requests decodes without allocating.
//
// It covers only what Prometheus and vmagent send on their hot paths:
// series with labels and float samples, and the families' metadata (vmagent
// sends it with every scrape's samples). Anything else (histograms,
// exemplars, unknown fields, an unexpected wire type, malformed bytes) makes
// decodeV1 report false, and the handler falls back to the generic
// unmarshal, whose result and errors are then exactly those of before.
type fastV1 struct {
	series  []fastSeries
	labels  []fastLabel
	samples []fastSample
	meta    []fastMetaV1
}

// fastMetaV1 is one WriteRequest.metadata entry: its type as sent and its
// strings as offsets into the body.
type fastMetaV1 struct {
	typ                                                      int32
	familyFrom, familyTo, helpFrom, helpTo, unitFrom, unitTo int32
}

// fastSeries is one TimeSeries: index ranges into fastV1's labels and
// samples, and the span of the body its label fields cover.
type fastSeries struct {
	labelsFrom, labelsTo   int32
	samplesFrom, samplesTo int32
	// rawFrom:rawTo is the body from the first label field's tag to the end
	// of the last one. contiguous is false when sample fields sit between
	// label fields; such a series is never looked up in the ref cache.
	rawFrom, rawTo int32
	contiguous     bool
}

// fastLabel is a name and value as offsets into the body.
type fastLabel struct{ nameFrom, nameTo, valueFrom, valueTo int32 }

type fastSample struct {
	t  int64
	v  float64
	st int64 // a 2.0 sample's start timestamp, 0 if none
}

func (d *fastV1) reset() {
	d.series, d.labels, d.samples, d.meta = d.series[:0], d.labels[:0], d.samples[:0], d.meta[:0]
}

// Field tags (field number << 3 | wire type) of the messages decoded.
const (
	tagTimeSeries  = 1<<3 | 2 // WriteRequest.timeseries
	tagLabels      = 1<<3 | 2 // TimeSeries.labels
	tagSamples     = 2<<3 | 2 // TimeSeries.samples
	tagLabelName   = 1<<3 | 2 // Label.name
	tagLabelValue  = 2<<3 | 2 // Label.value
	tagSampleValue = 1<<3 | 1 // Sample.value, fixed64
	tagSampleTime  = 2<<3 | 0 // Sample.timestamp, varint
	tagMetadata    = 3<<3 | 2 // WriteRequest.metadata
	tagMetaType    = 1<<3 | 0 // MetricMetadata.type, varint
	tagMetaFamily  = 2<<3 | 2 // MetricMetadata.metric_family_name
	tagMetaHelp    = 4<<3 | 2 // MetricMetadata.help
	tagMetaUnit    = 5<<3 | 2 // MetricMetadata.unit
)

// maxFastBody keeps every offset within an int32.
const maxFastBody = math.MaxInt32

// uvarint reads a varint at b[i:], returning the value and the next index,
// or -1 when it is truncated or longer than 10 bytes (as gogo rejects).
func uvarint(b []byte, i int) (uint64, int) {
	// The one- and two-byte cases are nearly every tag and length.
	if i < len(b) && b[i] < 0x80 {
		return uint64(b[i]), i + 1
	}
	if i+1 < len(b) && b[i+1] < 0x80 {
		return uint64(b[i]&0x7f) | uint64(b[i+1])<<7, i + 2
	}
	if i >= len(b) {
		return 0, -1
	}
	v, n := binary.Uvarint(b[i:])
	if n <= 0 {
		return 0, -1
	}
	return v, i + n
}

// field reads a length-delimited field's length at b[i:] and returns the
// payload's bounds, or -1 if it does not fit in b[:end].
func field(b []byte, i, end int) (from, to int) {
	n, j := uvarint(b[:end], i)
	if j < 0 || n > uint64(end-j) {
		return -1, -1
	}
	return j, j + int(n)
}

// next reads a length-delimited field at b[i:end]: its tag and payload
// bounds, or from = -1 if it is malformed. Another wire type's tag is
// returned with from = -1 too; callers compare the tag first.
func next(b []byte, i, end int) (tag uint64, from, to int) {
	tag, j := uvarint(b[:end], i)
	if j < 0 || tag&7 != 2 {
		return tag, -1, -1
	}
	from, to = field(b, j, end)
	return tag, from, to
}

// decodeV1 decodes body into d. It reports false when the request needs
// the generic decoder: then d's content is meaningless.
func (d *fastV1) decodeV1(body []byte) bool {
	d.reset()
	if len(body) > maxFastBody {
		return false
	}
	for i := 0; i < len(body); {
		tag, from, to := next(body, i, len(body))
		if from < 0 {
			return false
		}
		switch tag {
		case tagTimeSeries:
			if !d.series1(body, from, to) {
				return false
			}
		case tagMetadata:
			if !d.metadata1(body, from, to) {
				return false
			}
		default:
			return false
		}
		i = to
	}
	return true
}

// metadata1 decodes one MetricMetadata from body[from:to]; as in protobuf,
// a repeated field's last value wins and a missing one is empty (type 0,
// UNKNOWN).
func (d *fastV1) metadata1(body []byte, from, to int) bool {
	f := int32(from)
	m := fastMetaV1{familyFrom: f, familyTo: f, helpFrom: f, helpTo: f, unitFrom: f, unitTo: f}
	for i := from; i < to; {
		tag, j := uvarint(body[:to], i)
		if j < 0 {
			return false
		}
		if tag == tagMetaType {
			v, k := uvarint(body[:to], j)
			if k < 0 {
				return false
			}
			m.typ, i = int32(v), k // gogo's enum decoding keeps the low 32 bits too
			continue
		}
		pf, pt := field(body, j, to)
		if pf < 0 {
			return false
		}
		switch tag {
		case tagMetaFamily:
			m.familyFrom, m.familyTo = int32(pf), int32(pt)
		case tagMetaHelp:
			m.helpFrom, m.helpTo = int32(pf), int32(pt)
		case tagMetaUnit:
			m.unitFrom, m.unitTo = int32(pf), int32(pt)
		default:
			return false
		}
		i = pt
	}
	d.meta = append(d.meta, m)
	return true
}

// series1 decodes one TimeSeries from body[from:to].
func (d *fastV1) series1(body []byte, from, to int) bool {
	s := fastSeries{
		labelsFrom: int32(len(d.labels)), samplesFrom: int32(len(d.samples)),
		rawFrom: -1, contiguous: true,
	}
	sawSample := false
	for i := from; i < to; {
		tag, pf, pt := next(body, i, to)
		if pf < 0 {
			return false
		}
		switch tag {
		case tagLabels:
			if s.rawFrom < 0 {
				s.rawFrom = int32(i)
			} else if sawSample {
				s.contiguous = false
			}
			s.rawTo = int32(pt)
			if !d.label(body, pf, pt) {
				return false
			}
		case tagSamples:
			if s.rawFrom >= 0 {
				sawSample = true
			}
			var ok bool
			if d.samples, ok = appendSample(d.samples, body, pf, pt, false); !ok {
				return false
			}
		default:
			// Exemplars, histograms, unknown fields, odd wire types.
			return false
		}
		i = pt
	}
	if s.rawFrom < 0 {
		s.rawFrom, s.rawTo = int32(from), int32(from)
	}
	s.labelsTo, s.samplesTo = int32(len(d.labels)), int32(len(d.samples))
	d.series = append(d.series, s)
	return true
}

// label decodes a Label; as in protobuf, a repeated field's last value wins
// and a missing one is empty.
func (d *fastV1) label(body []byte, from, to int) bool {
	var l fastLabel
	l.nameFrom, l.nameTo, l.valueFrom, l.valueTo = int32(from), int32(from), int32(from), int32(from)
	for i := from; i < to; {
		tag, pf, pt := next(body, i, to)
		if pf < 0 {
			return false
		}
		switch tag {
		case tagLabelName:
			l.nameFrom, l.nameTo = int32(pf), int32(pt)
		case tagLabelValue:
			l.valueFrom, l.valueTo = int32(pf), int32(pt)
		default:
			return false
		}
		i = pt
	}
	d.labels = append(d.labels, l)
	return true
}

// appendSample appends the Sample of either version in body[from:to] to
// dst, with a 2.0 sample's start timestamp (v2). It reports false for
// anything else.
func appendSample(dst []fastSample, body []byte, from, to int, v2 bool) ([]fastSample, bool) {
	var s fastSample
	for i := from; i < to; {
		tag, j := uvarint(body[:to], i)
		if j < 0 {
			return dst, false
		}
		switch {
		case tag == tagSampleValue:
			if to-j < 8 {
				return dst, false
			}
			s.v = math.Float64frombits(binary.LittleEndian.Uint64(body[j:]))
			i = j + 8
		case tag == tagSampleTime, v2 && tag == tagV2SampleStart:
			v, k := uvarint(body[:to], j)
			if k < 0 {
				return dst, false
			}
			if tag == tagSampleTime {
				s.t = int64(v)
			} else {
				s.st = int64(v)
			}
			i = k
		default:
			return dst, false
		}
	}
	return append(dst, s), true
}

// str returns body[from:to] as a string without copying. It is valid only
// while body is: use it for checks and comparisons, and copy (the label
// builder does) anything kept.
func str(body []byte, from, to int32) string {
	if from == to {
		return ""
	}
	return unsafe.String(&body[from], int(to-from))
}
