package durabletest

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestStraceWorks: the probe that decides Check's skip refuses a strace
// that cannot trace, whatever it says, and takes one that does. The skip
// was taken only when strace's output said "ptrace": one that failed
// otherwise ("strace: exec: Operation not permitted") failed the test, and
// a failure of the traced write whose output said "ptrace" would have
// been skipped.
func TestStraceWorks(t *testing.T) {
	fake := func(script string) string {
		p := filepath.Join(t.TempDir(), "strace")
		require.NoError(t, os.WriteFile(p, []byte("#!/bin/sh\n"+script+"\n"), 0o755))
		return p
	}
	// The fakes are called as Works calls strace: -f -qq -o TRACE
	// -e trace=write BINARY -test.run=^$.
	for _, tc := range []struct {
		name, strace string
		works        bool
	}{
		{"ptrace denied", fake(`echo 'strace: attach: ptrace(PTRACE_SEIZE, 7): Operation not permitted' >&2; exit 1`), false},
		{"other wording", fake(`echo 'strace: exec: Operation not permitted' >&2; exit 1`), false},
		{"no trace written", fake(`exit 0`), false},
		{"traces nothing", fake(`t="$4"; shift 6; : >"$t"; exec "$@"`), false},
		{"traces", fake(`t="$4"; shift 6; echo '7 write(1, "PASS", 4) = 4' >"$t"; exec "$@"`), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Works(tc.strace, t.TempDir())
			require.Equal(t, tc.works, err == nil, "%v", err)
		})
	}
	if real, err := exec.LookPath("strace"); err == nil {
		t.Logf("the real strace: %v", Works(real, t.TempDir()))
	}
}

// TestVerify: the trace of a write made as atomicfile makes it passes;
// one without the temporary's fsync, or without the directory's, fails.
func TestVerify(t *testing.T) {
	for _, tc := range []struct {
		name              string
		syncFile, syncDir bool
		err               string // "": passes
	}{
		{"durable", true, true, ""},
		{"file not fsynced", false, true, "the temporary not fsynced"},
		{"directory not fsynced", true, false, "the directory not fsynced"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if o := os.Getenv(Env); o != "" {
				tmp := o + ".tmp"
				f, err := os.Create(tmp)
				require.NoError(t, err)
				_, err = f.WriteString("x")
				require.NoError(t, err)
				if tc.syncFile {
					require.NoError(t, f.Sync())
				}
				require.NoError(t, f.Close())
				require.NoError(t, os.Rename(tmp, o))
				if tc.syncDir {
					d, err := os.Open(filepath.Dir(o))
					require.NoError(t, err)
					require.NoError(t, d.Sync())
					require.NoError(t, d.Close())
				}
				return
			}
			out := filepath.Join(t.TempDir(), "f")
			err := verify(Trace(t, out), out, out+".tmp")
			if tc.err == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.err)
		})
	}
}
