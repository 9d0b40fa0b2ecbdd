package loadgen

import (
	"testing"

	"github.com/golang/snappy"
	"github.com/stretchr/testify/require"
)

// TestTemplateDecodesToTheEncodedRequest: a filled template decompresses
// (with the snappy decoder Prometheus uses) to exactly the request
// appendRequest encodes for the same timestamps and values, round after
// round, including across a change of the timestamps' varint length.
func TestTemplateDecodesToTheEncodedRequest(t *testing.T) {
	for _, tc := range []struct {
		name                  string
		protocol, series, sps int
		ts, st                int64
	}{
		{"v1/one", 1, 1, 1, 1_800_000_000_000, 0},
		{"v1", 1, 300, 1, 1_800_000_000_000, 0},
		{"v1/samples=5", 1, 64, 5, 1_800_000_000_000, 0},
		{"v2", 2, 300, 1, 1_800_000_000_000, 0},
		{"v2/samples=3", 2, 2000, 3, 1_800_000_000_000, 0},
		{"v2/start timestamps", 2, 300, 2, 1_800_000_000_000, 1_799_999_000_000},
		{"varint length changes", 1, 20, 2, 1<<35 - 3, 0},
		{"v2/start timestamps/varint length changes", 2, 20, 2, 1<<35 - 3, 1<<35 - 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sets := make([][]label, tc.series)
			counter := make([]bool, tc.series)
			for i := range sets {
				sets[i], counter[i] = seriesLabels(i + 7)
			}
			bt := newBatch(tc.protocol, 7, sets, counter, tc.st)
			bt.nSamples = tc.series * tc.sps
			w := &worker{vals: newValues(7, counter, 3)}
			ref := newValues(7, counter, 3)
			rb := &reqBuf{}
			for round := range 4 {
				ts := tc.ts + int64(round*tc.sps)
				w.build(rb, bt, ts, tc.sps)
				want := bt.appendRequest(nil, ts, tc.sps, ref, nil)
				got, err := snappy.Decode(nil, rb.body)
				require.NoError(t, err, "round %d", round)
				require.Equal(t, want, got, "round %d", round)
				// The literals kept for timestamps cost some ratio (the values
				// are incompressible either way): within 2× of snappy's encoder.
				require.Less(t, len(rb.body), len(snappy.Encode(nil, want))*2+64, "compresses")
			}
		})
	}
}
