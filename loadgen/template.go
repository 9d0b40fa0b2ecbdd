package loadgen

import (
	"encoding/binary"
	"math"
)

// template is a batch's request compressed once, snappy block format, with
// every sample's value and timestamp (and the tag between them) kept as
// literal bytes that no copy reads. A round then is a copy of the
// compressed bytes and a patch of each sample's 8+1+n bytes in place, so
// the compression (four fifths of building a request from scratch) runs
// once per batch rather than once per request. The result is the same
// byte stream a receiver decompresses; only the compression ratio differs
// a little from snappy's own encoder.
type template struct {
	comp  []byte  // compressed request
	slots []int32 // per sample, in send order: offset in comp of its value
	tsLen int     // varint length of every timestamp the template holds
}

// newTemplate compresses the batch's request for timestamps ts… (the
// values are placeholders, overwritten by every round).
func newTemplate(b *batch, ts int64, sps int) *template {
	var marks []int32
	raw := b.appendRequest(nil, ts, sps, nil, &marks)
	tsLen := uvarintLen(uint64(ts))
	varLen := 8 + 1 + tsLen
	variable := make([]bool, len(raw))
	for _, m := range marks {
		for i := range varLen {
			variable[m+int32(i)] = true
		}
	}
	t := &template{tsLen: tsLen, slots: make([]int32, 0, len(marks))}
	t.comp = binary.AppendUvarint(nil, uint64(len(raw)))

	const tableBits = 14
	var table [1 << tableBits]int32
	for i := range table {
		table[i] = -1
	}
	constant4 := func(p int) bool { return !variable[p] && !variable[p+1] && !variable[p+2] && !variable[p+3] }
	lit, next := 0, 0 // start of the pending literal; next mark to place
	emitLiteral := func(end int) {
		if end == lit {
			return
		}
		t.comp = appendLiteralTag(t.comp, end-lit)
		base := len(t.comp)
		for next < len(marks) && int(marks[next]) < end {
			t.slots = append(t.slots, int32(base+int(marks[next])-lit))
			next++
		}
		t.comp = append(t.comp, raw[lit:end]...)
	}
	for i := 0; i+4 <= len(raw); {
		if !constant4(i) {
			i++
			continue
		}
		w := binary.LittleEndian.Uint32(raw[i:])
		h := (w * 0x1e35a7bd) >> (32 - tableBits)
		c := int(table[h])
		table[h] = int32(i)
		if c < 0 || binary.LittleEndian.Uint32(raw[c:]) != w || !constant4(c) {
			i++
			continue
		}
		n := 4
		for i+n < len(raw) && !variable[i+n] && !variable[c+n] && raw[c+n] == raw[i+n] {
			n++
		}
		emitLiteral(i)
		t.comp = appendCopies(t.comp, i-c, n)
		i += n
		lit = i
	}
	emitLiteral(len(raw))
	return t
}

// fill writes one round into dst: the template with samples at
// timestamps ts… and values from vs. It reports false, writing nothing,
// when the timestamps' varint length differs from the template's (once in
// decades of milliseconds) so the caller rebuilds the template.
func (t *template) fill(dst []byte, b *batch, ts int64, sps int, vs *values) ([]byte, bool) {
	if uvarintLen(uint64(ts)) != t.tsLen || uvarintLen(uint64(ts+int64(sps)-1)) != t.tsLen {
		return dst, false
	}
	dst = append(dst[:0], t.comp...)
	s := 0
	for i := range b.consts {
		for k := range sps {
			p := t.slots[s]
			s++
			binary.LittleEndian.PutUint64(dst[p:], math.Float64bits(vs.next(b.first+i)))
			binary.PutUvarint(dst[p+9:], uint64(ts+int64(k)))
		}
	}
	return dst, true
}

// appendLiteralTag appends the snappy tag of a literal of n bytes.
func appendLiteralTag(dst []byte, n int) []byte {
	n--
	switch {
	case n < 60:
		return append(dst, byte(n)<<2)
	case n < 1<<8:
		return append(dst, 60<<2, byte(n))
	case n < 1<<16:
		return append(dst, 61<<2, byte(n), byte(n>>8))
	case n < 1<<24:
		return append(dst, 62<<2, byte(n), byte(n>>8), byte(n>>16))
	default:
		return append(dst, 63<<2, byte(n), byte(n>>8), byte(n>>16), byte(n>>24))
	}
}

// appendCopies appends snappy copies of n bytes from offset back, in
// pieces of at most 64 bytes (the longest one copy element holds).
func appendCopies(dst []byte, offset, n int) []byte {
	for n > 0 {
		l := min(n, 64)
		if n-l > 0 && n-l < 4 { // keep the last piece long enough for the 1-byte-offset form
			l = n - 4
		}
		switch {
		case l >= 4 && l <= 11 && offset < 2048:
			dst = append(dst, byte(offset>>8)<<5|byte(l-4)<<2|1, byte(offset))
		case offset < 1<<16:
			dst = append(dst, byte(l-1)<<2|2, byte(offset), byte(offset>>8))
		default:
			dst = append(dst, byte(l-1)<<2|3, byte(offset), byte(offset>>8), byte(offset>>16), byte(offset>>24))
		}
		n -= l
	}
	return dst
}
