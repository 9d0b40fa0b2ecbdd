package trunc

import (
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

// TestUTF8: a cut within a multi-byte rune drops the rune, never leaving
// half of it; a string within the bound is returned as it is.
func TestUTF8(t *testing.T) {
	for _, tc := range []struct {
		name, s string
		n       int
		want    string
	}{
		{"within", "abc", 3, "abc"},
		{"empty", "", 0, ""},
		{"ascii", "abcdef", 4, "abcd"},
		{"on a boundary", "aé", 3, "aé"},
		{"within a rune", "aéb", 2, "a"},       // é is 2 bytes
		{"within a 4-byte rune", "a😀", 4, "a"}, // 😀 is 4 bytes
		{"zero", "abc", 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := UTF8(tc.s, tc.n)
			require.Equal(t, tc.want, got)
			require.LessOrEqual(t, len(got), tc.n)
			require.True(t, utf8.ValidString(got))
		})
	}
}
