package forecast

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestUnmarshalNextRelease: a model written by the next release, which
// adds a field at the end and keeps the version (see marshalVersion), is
// restored by this one with what it knows (a rollback keeps the forecaster
// warm) and forecasts exactly as the model that wrote it; an older
// version's encoding with bytes after it (never a later release's) is
// still refused.
func TestUnmarshalNextRelease(t *testing.T) {
	y := planted(1200, 0, 100, 0.01, 10, 1)
	m, _ := New(DefaultOptions())
	feed(m, y[:1100], 0)
	m.Forecast(nil, 48)
	feed(m, y[1100:1120], 1100*hourMs)
	b, err := m.MarshalBinary()
	require.NoError(t, err)
	field := []byte{0xde, 0xad, 0xbe, 0xef, 7, 7, 7, 7}
	next := append(append([]byte(nil), b...), field...)
	// Version 3 is version 4 without the seasons and their age.
	v3 := append([]byte(nil), b[:len(b)-2-4*len(m.seasons)]...)
	v3[3] = 3

	require.NoError(t, Readable(next))
	var r Model
	require.NoError(t, r.UnmarshalBinary(next))
	again, err := r.MarshalBinary()
	require.NoError(t, err)
	require.Equal(t, b, again)
	require.Equal(t, m.Forecast(nil, 48), r.Forecast(nil, 48))
	feed(m, y[1120:1180], 1120*hourMs)
	feed(&r, y[1120:1180], 1120*hourMs)
	require.Equal(t, m.Forecast(nil, 48), r.Forecast(nil, 48), "later")

	require.NoError(t, new(Model).UnmarshalBinary(v3))
	require.ErrorContains(t, new(Model).UnmarshalBinary(append(v3, field...)), "8 trailing bytes")
}
