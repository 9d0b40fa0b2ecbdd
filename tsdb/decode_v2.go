package tsdb

import (
	"github.com/prometheus/common/model"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
)

// fastV2 is a remote-write 2.0 Request decoded the way fastV1 decodes a 1.0
// one: symbols are byte offsets into the body, label references, samples
// and series are plain values in slices reused from request to request.
//
// It covers what Prometheus 3 sends for float series: the symbols table and
// series with label references (packed or not), float samples (with their
// start timestamp, passed to the head as appendV2 passes it) and metadata
// (type, help and unit references). Anything else (histograms, exemplars, unknown
// or reserved fields, an unexpected wire type, malformed bytes) makes
// decodeV2 report false, and the handler falls back to the generic
// unmarshal, whose result and errors are then exactly those of before.
type fastV2 struct {
	symbols []fastSymbol
	series  []fastSeriesV2
	refs    []uint32
	samples []fastSample
	// view is the symbols as strings into the body, made only to word a
	// metadata error as writev2 does (see metadataError).
	view []string
}

// fastSymbol is a symbol as offsets into the body.
type fastSymbol struct{ from, to int32 }

// fastSeriesV2 is one TimeSeries: index ranges into fastV2's refs and
// samples, and its metadata.
type fastSeriesV2 struct {
	refsFrom, refsTo       int32
	samplesFrom, samplesTo int32
	meta                   fastMeta
}

// fastMeta is a Metadata message as sent: the type and symbol references,
// which are checked against the table only when the series is appended.
type fastMeta struct {
	typ        writev2.Metadata_MetricType
	help, unit uint32
}

func (d *fastV2) reset() {
	d.symbols, d.series, d.refs, d.samples = d.symbols[:0], d.series[:0], d.refs[:0], d.samples[:0]
	if len(d.view) > 0 { // it points into the last body
		clear(d.view)
		d.view = d.view[:0]
	}
}

// Field tags of remote-write 2.0 (field number << 3 | wire type).
const (
	tagV2Symbols     = 4<<3 | 2 // Request.symbols
	tagV2TimeSeries  = 5<<3 | 2 // Request.timeseries
	tagV2RefsPacked  = 1<<3 | 2 // TimeSeries.labels_refs, packed
	tagV2Ref         = 1<<3 | 0 // TimeSeries.labels_refs, one unpacked
	tagV2Samples     = 2<<3 | 2 // TimeSeries.samples
	tagV2Metadata    = 5<<3 | 2 // TimeSeries.metadata
	tagV2SampleStart = 3<<3 | 0 // Sample.start_timestamp (value and timestamp as in 1.0)
	tagV2MetaType    = 1<<3 | 0 // Metadata.type
	tagV2MetaHelpRef = 3<<3 | 0 // Metadata.help_ref
	tagV2MetaUnitRef = 4<<3 | 0 // Metadata.unit_ref
)

// decodeV2 decodes body into d. It reports false when the request needs
// the generic decoder: then d's content is meaningless.
func (d *fastV2) decodeV2(body []byte) bool {
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
		case tagV2Symbols:
			d.symbols = append(d.symbols, fastSymbol{int32(from), int32(to)})
		case tagV2TimeSeries:
			if !d.series1(body, from, to) {
				return false
			}
		default:
			return false
		}
		i = to
	}
	return true
}

// series1 decodes one TimeSeries from body[from:to]. As in protobuf,
// repeated fields concatenate in order and a repeated metadata message
// merges into the one before.
func (d *fastV2) series1(body []byte, from, to int) bool {
	s := fastSeriesV2{refsFrom: int32(len(d.refs)), samplesFrom: int32(len(d.samples))}
	for i := from; i < to; {
		tag, j := uvarint(body[:to], i)
		if j < 0 {
			return false
		}
		switch tag {
		case tagV2RefsPacked:
			pf, pt := field(body, j, to)
			if pf < 0 {
				return false
			}
			for k := pf; k < pt; {
				v, n := uvarint(body[:pt], k)
				if n < 0 {
					return false
				}
				d.refs = append(d.refs, uint32(v)) // as gogo: the low 32 bits
				k = n
			}
			i = pt
		case tagV2Ref:
			v, n := uvarint(body[:to], j)
			if n < 0 {
				return false
			}
			d.refs = append(d.refs, uint32(v))
			i = n
		case tagV2Samples:
			// A sample's start timestamp is kept (appendSample), for
			// the head as appendV2 passes it.
			pf, pt := field(body, j, to)
			if pf < 0 {
				return false
			}
			var ok bool
			if d.samples, ok = appendSample(d.samples, body, pf, pt, true); !ok {
				return false
			}
			i = pt
		case tagV2Metadata:
			pf, pt := field(body, j, to)
			if pf < 0 || !s.meta.decode(body, pf, pt) {
				return false
			}
			i = pt
		default:
			// Histograms, exemplars, the reserved field 6, unknown
			// fields, odd wire types.
			return false
		}
	}
	if len(d.samples) == int(s.samplesFrom) {
		// No samples: refused by the generic path, which names it.
		return false
	}
	s.refsTo, s.samplesTo = int32(len(d.refs)), int32(len(d.samples))
	d.series = append(d.series, s)
	return true
}

// decode merges a Metadata message from body[from:to] into m.
func (m *fastMeta) decode(body []byte, from, to int) bool {
	for i := from; i < to; {
		tag, j := uvarint(body[:to], i)
		if j < 0 {
			return false
		}
		v, k := uvarint(body[:to], j)
		if k < 0 {
			return false
		}
		switch tag {
		case tagV2MetaType:
			m.typ = writev2.Metadata_MetricType(v) // as gogo: the low 32 bits
		case tagV2MetaHelpRef:
			m.help = uint32(v)
		case tagV2MetaUnitRef:
			m.unit = uint32(v)
		default:
			return false
		}
		i = k
	}
	return true
}

// sym returns symbol i (in range) as a string into body.
func (d *fastV2) sym(body []byte, i uint32) string {
	s := d.symbols[i]
	return str(body, s.from, s.to)
}

// metricType is the model type of a Metadata type, as ToMetadata maps it.
func metricType(t writev2.Metadata_MetricType) model.MetricType {
	md, _ := writev2.TimeSeries{Metadata: writev2.Metadata{Type: t}}.ToMetadata(oneEmptySymbol)
	return md.Type
}

var oneEmptySymbol = []string{""}

// metadataError is the error ToMetadata gives for m, nil when its
// references are within the table. Only a bad series pays for the view of
// the table it needs, once per request.
func (d *fastV2) metadataError(body []byte, m fastMeta) error {
	n := uint32(len(d.symbols))
	if m.help < n && m.unit < n {
		return nil
	}
	if len(d.view) != len(d.symbols) {
		d.view = d.view[:0]
		for i := range d.symbols {
			d.view = append(d.view, d.sym(body, uint32(i)))
		}
	}
	_, err := writev2.TimeSeries{Metadata: writev2.Metadata{Type: m.typ, HelpRef: m.help, UnitRef: m.unit}}.ToMetadata(d.view)
	return err
}
