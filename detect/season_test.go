package detect

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestFullInterval: the threshold is ⌈¾·interval⌉ ms (interval - ⌊interval/4⌋),
// worked out by hand for each row.
func TestFullInterval(t *testing.T) {
	for _, tc := range []struct {
		elapsed, interval int64
		want              bool
	}{
		{15000, 15000, true},
		{11250, 15000, true},  // 15 s less a quarter: jitter tolerated
		{11249, 15000, false}, // 1 ms sooner: early
		{12000, 15000, true},  // 15 s lowered to 12 s: a full interval
		{10000, 15000, false}, // ... to 10 s: not
		{5000, 15000, false},  // ... to 5 s (a divisor): not
		{30000, 15000, true},  // a missed sample: more than one
		{3, 4, true},          // ⌈3⌉
		{2, 4, false},
		{3, 3, true}, // ⌊3/4⌋ = 0: the whole interval
		{2, 3, false},
		{1, 1, true},
		{0, 1, false},
		{0, 0, true}, // interval not known: any elapsed time
		{-1, 0, false},
	} {
		t.Run(fmt.Sprintf("elapsed=%d/interval=%d", tc.elapsed, tc.interval), func(t *testing.T) {
			require.Equal(t, tc.want, FullInterval(tc.elapsed, tc.interval))
		})
	}
}
