package main

import (
	"io"
	"log/slog"
	"runtime/debug"
	"testing"

	"github.com/alecthomas/kingpin/v2"
	"github.com/stretchr/testify/require"
)

func TestRuntimeFlags(t *testing.T) {
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	tests := []struct {
		name     string
		args     []string
		gogcEnv  string
		wantErr  string
		wantGOGC int
		wantMem  bool // GOMEMLIMIT set below math.MaxInt64
		settle   bool // GOGC raised to defaultGOGC once the start is over
	}{
		{name: "defaults", wantGOGC: defaultGOGC, wantMem: true, settle: true},
		{name: "GOGC from the environment wins", gogcEnv: "120", wantGOGC: 120, wantMem: true},
		{name: "no memory limit", args: []string{"--no-auto-gomemlimit"}, wantGOGC: defaultGOGC, settle: true},
		{name: "bad ratio", args: []string{"--auto-gomemlimit.ratio=1.5"}, wantErr: "auto-gomemlimit.ratio"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// apply changes process-wide settings: restore them.
			oldGC := debug.SetGCPercent(100)
			oldMem := debug.SetMemoryLimit(1 << 62)
			t.Cleanup(func() { debug.SetGCPercent(oldGC); debug.SetMemoryLimit(oldMem) })
			t.Setenv("GOMEMLIMIT", "")
			if tc.gogcEnv != "" {
				t.Setenv("GOGC", tc.gogcEnv)
				debug.SetGCPercent(120) // what the runtime read from GOGC at start
			} else {
				t.Setenv("GOGC", "")
			}

			app := kingpin.New("omen", "")
			r := registerRuntimeFlags(app.Command("serve", "").Default())
			_, err := app.Parse(append([]string{"serve"}, tc.args...))
			require.NoError(t, err)
			err = r.apply(logger)
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.wantGOGC, debug.SetGCPercent(tc.wantGOGC))
			// The restore and the first rounds after it: startGOGC, then
			// defaultGOGC again (memrelease.Settler); the environment's
			// throughout.
			r.restoring()
			want := tc.wantGOGC
			if tc.settle {
				want = startGOGC
			}
			require.Equal(t, want, debug.SetGCPercent(want))
			limit := debug.SetMemoryLimit(-1)
			if tc.wantMem {
				require.Less(t, limit, int64(1<<62))
			} else {
				require.Equal(t, int64(1<<62), limit)
			}
		})
	}
}
