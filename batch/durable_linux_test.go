package batch

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// writeFileHelperEnv names the output WriteFile writes when the test binary
// runs as TestWriteFileDurable's traced child.
const writeFileHelperEnv = "OMEN_BATCH_WRITEFILE_TRACED"

// TestWriteFileDurable runs WriteFile under strace and checks the system
// calls a crash leaves a whole file after, as Prometheus's tsdb/fileutil
// makes them: the temporary file fsynced after its last write and before
// its rename to the final name, and the directory fsynced after the rename
// (without either, a crash right after the run could leave the final name
// empty, partial or missing on ext4 or XFS, which write data back and
// commit renames on their own schedules). A real trace rather than a seam:
// what the kernel is asked is what counts. Skipped without strace, or
// where strace cannot trace a run with nothing to fail (straceWorks).
func TestWriteFileDurable(t *testing.T) {
	if out := os.Getenv(writeFileHelperEnv); out != "" {
		require.NoError(t, WriteFile(out, func(w *bufio.Writer) error {
			for range 1000 { // 26 kB: a write(2) or more
				w.WriteString("2026-12-07T06:00:00Z,1.5\n")
			}
			return nil
		}))
		return
	}
	strace, err := exec.LookPath("strace")
	if err != nil {
		t.Skip("strace not found on PATH")
	}
	if err := straceWorks(strace, t.TempDir()); err != nil {
		t.Skipf("strace cannot trace here: %v", err)
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "r.csv")
	trace := filepath.Join(t.TempDir(), "trace")
	cmd := exec.Command(strace, "-f", "-qq", "-o", trace, "-e", "trace=openat,write,fsync,fdatasync,close,rename,renameat,renameat2",
		os.Args[0], "-test.run=^TestWriteFileDurable$", "-test.count=1")
	cmd.Env = append(os.Environ(), writeFileHelperEnv+"="+out)
	if b, err := cmd.CombinedOutput(); err != nil {
		// strace traced the probe: this is WriteFile's failure (or the
		// helper's), not the environment's.
		require.NoError(t, err, "%s", b)
	}
	b, err := os.ReadFile(trace)
	require.NoError(t, err)
	calls := syscalls(string(b))

	// In order: the temporary's open, its last write, its fsync, its
	// rename to out, the directory's open and fsync.
	var tmpFD, dirFD string
	synced, renamed, dirSynced := -1, -1, -1
	lastWrite := -1
	for i, c := range calls {
		switch {
		case c.name == "openat" && strings.Contains(c.args, `"`+filepath.Join(dir, ".r.csv.tmp-")):
			tmpFD = c.ret
		case c.name == "openat" && c.args != "" && strings.Contains(c.args, `"`+dir+`"`) && renamed >= 0:
			dirFD = c.ret
		case c.name == "write" && tmpFD != "" && synced < 0 && strings.HasPrefix(c.args, tmpFD+","):
			lastWrite = i
		case c.name == "write" && tmpFD != "" && synced >= 0 && renamed < 0 && strings.HasPrefix(c.args, tmpFD+","):
			t.Fatalf("a write to the temporary after its fsync: %s", c.line)
		case (c.name == "fsync" || c.name == "fdatasync") && tmpFD != "" && renamed < 0 && c.args == tmpFD:
			synced = i
		case strings.HasPrefix(c.name, "rename") && strings.Contains(c.args, `"`+out+`"`):
			renamed = i
		case c.name == "fsync" && dirFD != "" && c.args == dirFD:
			dirSynced = i
		}
	}
	require.NotEmpty(t, tmpFD, "the temporary file opened:\n%s", b)
	require.GreaterOrEqual(t, lastWrite, 0, "written:\n%s", b)
	require.GreaterOrEqual(t, renamed, 0, "renamed to %s:\n%s", out, b)
	require.True(t, synced > lastWrite && synced < renamed, "the temporary fsynced after its last write, before its rename:\n%s", b)
	require.Greater(t, dirSynced, renamed, "the directory fsynced after the rename:\n%s", b)
}

// straceWorks reports why strace at path cannot trace this test binary
// here (nil if it can): it traces the binary running no test, which must
// exit 0 and leave a traced write(2) of its "PASS" or warning in the
// trace, written in dir. Whatever the reason or its wording (ptrace denied
// by seccomp or a container's capabilities, Yama, a stub strace), the
// test skips on a strace that cannot trace a run with nothing to fail,
// and fails on one that traced this probe.
func straceWorks(path, dir string) error {
	trace := filepath.Join(dir, "probe-trace")
	b, err := exec.Command(path, "-f", "-qq", "-o", trace, "-e", "trace=write", os.Args[0], "-test.run=^$").CombinedOutput()
	if err != nil {
		return fmt.Errorf("%w: %s", err, bytes.TrimSpace(b))
	}
	tb, err := os.ReadFile(trace)
	if err != nil {
		return fmt.Errorf("no trace: %w", err)
	}
	for _, c := range syscalls(string(tb)) {
		if c.name == "write" {
			return nil
		}
	}
	return fmt.Errorf("no write traced: %q", tb)
}

// TestStraceWorks: the probe that decides TestWriteFileDurable's skip
// refuses a strace that cannot trace, whatever it says, and takes one that
// does. The skip was taken only when strace's output said "ptrace": one
// that failed otherwise ("strace: exec: Operation not permitted") failed
// TestWriteFileDurable, and a failure of WriteFile's helper whose output
// said "ptrace" would have been skipped.
func TestStraceWorks(t *testing.T) {
	fake := func(script string) string {
		p := filepath.Join(t.TempDir(), "strace")
		require.NoError(t, os.WriteFile(p, []byte("#!/bin/sh\n"+script+"\n"), 0o755))
		return p
	}
	// The fakes are called as straceWorks calls strace: -f -qq -o TRACE
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
			err := straceWorks(tc.strace, t.TempDir())
			require.Equal(t, tc.works, err == nil, "%v", err)
		})
	}
	if real, err := exec.LookPath("strace"); err == nil {
		t.Logf("the real strace: %v", straceWorks(real, t.TempDir()))
	}
}

// call is a system call strace traced: its name, arguments and result.
type call struct{ name, args, ret, line string }

// straceLine matches a completed call of strace -f -o: "pid name(args) = ret".
var straceLine = regexp.MustCompile(`^(\d+)\s+(\w+)\((.*)\)\s+=\s+(-?\d+)`)

// syscalls parses strace -f -o's output into the calls that completed,
// joining the halves strace splits when another thread's call comes in
// between ("<unfinished ...>", then "<... name resumed>").
func syscalls(trace string) []call {
	pending := map[string]string{} // pid: the unfinished half
	var calls []call
	for _, line := range strings.Split(trace, "\n") {
		if i := strings.Index(line, " <unfinished ...>"); i >= 0 {
			pid, _, _ := strings.Cut(line, " ")
			pending[pid] = line[:i]
			continue
		}
		if i := strings.Index(line, " resumed>"); i >= 0 {
			pid, _, _ := strings.Cut(line, " ")
			line = pending[pid] + line[i+len(" resumed>"):]
			delete(pending, pid)
		}
		m := straceLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		calls = append(calls, call{name: m[2], args: m[3], ret: m[4], line: line})
	}
	return calls
}
