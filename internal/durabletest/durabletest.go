// Package durabletest checks, under strace, that a test's file write is
// one a crash leaves whole: the temporary file fsynced after its last
// write and before its rename to the final name, and the directory
// fsynced after the rename, as Prometheus's tsdb/fileutil makes them.
// Without either a crash right after could leave the final name empty,
// partial or missing on ext4 or XFS, which write data back and commit
// renames on their own schedules. A real trace rather than a seam: what
// the kernel is asked is what counts.
package durabletest

import (
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

// Env names the variable that holds, in the traced child, the path the
// test writes (see Check).
const Env = "OMEN_DURABLETEST_OUT"

// Check runs the calling test again in a child of the test binary under
// strace, with Env set to out, and checks the child's write of out is
// durable (see the package's doc); tmp is the temporary file's path, or
// its prefix when it ends in "*". The test, seeing Env set, writes it and
// returns:
//
//	if out := os.Getenv(durabletest.Env); out != "" {
//		require.NoError(t, write(out))
//		return
//	}
//	durabletest.Check(t, out, tmp)
//
// Skipped without strace, or where strace cannot trace a run with nothing
// to fail (Works).
func Check(t *testing.T, out, tmp string) {
	t.Helper()
	require.NoError(t, verify(Trace(t, out), out, tmp))
}

// Trace runs the calling test again as Check does and returns the system
// calls strace saw.
func Trace(t *testing.T, out string) string {
	t.Helper()
	strace, err := exec.LookPath("strace")
	if err != nil {
		t.Skip("strace not found on PATH")
	}
	if err := Works(strace, t.TempDir()); err != nil {
		t.Skipf("strace cannot trace here: %v", err)
	}
	trace := filepath.Join(t.TempDir(), "trace")
	cmd := exec.Command(strace, "-f", "-qq", "-o", trace, "-e", "trace=openat,write,fsync,fdatasync,close,rename,renameat,renameat2",
		os.Args[0], "-test.run=^"+regexp.QuoteMeta(t.Name())+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), Env+"="+out)
	if b, err := cmd.CombinedOutput(); err != nil {
		// strace traced the probe: this is the write's failure (or the
		// child's), not the environment's.
		require.NoError(t, err, "%s", b)
	}
	b, err := os.ReadFile(trace)
	require.NoError(t, err)
	return string(b)
}

// verify checks, in trace, the calls of a durable write of out through
// the temporary tmp (a prefix if it ends in "*"), in order: the
// temporary's open, its last write, its fsync, its rename to out, the
// directory's open and fsync.
func verify(trace, out, tmp string) error {
	quoted := `"` + tmp + `"`
	if p, ok := strings.CutSuffix(tmp, "*"); ok {
		quoted = `"` + p
	}
	dir := filepath.Dir(out)
	var tmpFD, dirFD string
	synced, renamed, dirSynced := -1, -1, -1
	lastWrite := -1
	for i, c := range Syscalls(trace) {
		switch {
		case c.Name == "openat" && strings.Contains(c.Args, quoted) && renamed < 0:
			tmpFD = c.Ret
		case c.Name == "openat" && strings.Contains(c.Args, `"`+dir+`"`) && renamed >= 0:
			dirFD = c.Ret
		case c.Name == "write" && tmpFD != "" && synced < 0 && strings.HasPrefix(c.Args, tmpFD+","):
			lastWrite = i
		case c.Name == "write" && tmpFD != "" && synced >= 0 && renamed < 0 && strings.HasPrefix(c.Args, tmpFD+","):
			return fmt.Errorf("a write to the temporary after its fsync: %s\n%s", c.Line, trace)
		case (c.Name == "fsync" || c.Name == "fdatasync") && tmpFD != "" && renamed < 0 && c.Args == tmpFD:
			synced = i
		case strings.HasPrefix(c.Name, "rename") && strings.Contains(c.Args, `"`+out+`"`):
			renamed = i
		case c.Name == "fsync" && dirFD != "" && c.Args == dirFD:
			dirSynced = i
		}
	}
	switch {
	case tmpFD == "":
		return fmt.Errorf("the temporary file %s not opened:\n%s", tmp, trace)
	case lastWrite < 0:
		return fmt.Errorf("the temporary file not written:\n%s", trace)
	case renamed < 0:
		return fmt.Errorf("not renamed to %s:\n%s", out, trace)
	case synced < lastWrite || synced > renamed:
		return fmt.Errorf("the temporary not fsynced after its last write, before its rename:\n%s", trace)
	case dirSynced < renamed:
		return fmt.Errorf("the directory not fsynced after the rename:\n%s", trace)
	}
	return nil
}

// Works reports why strace at path cannot trace this test binary here
// (nil if it can): it traces the binary running no test, which must exit
// 0 and leave a traced write(2) of its "PASS" or warning in the trace,
// written in dir. Whatever the reason or its wording (ptrace denied by
// seccomp or a container's capabilities, Yama, a stub strace), Check
// skips on a strace that cannot trace a run with nothing to fail, and
// fails on one that traced this probe.
func Works(path, dir string) error {
	trace := filepath.Join(dir, "probe-trace")
	b, err := exec.Command(path, "-f", "-qq", "-o", trace, "-e", "trace=write", os.Args[0], "-test.run=^$").CombinedOutput()
	if err != nil {
		return fmt.Errorf("%w: %s", err, bytes.TrimSpace(b))
	}
	tb, err := os.ReadFile(trace)
	if err != nil {
		return fmt.Errorf("no trace: %w", err)
	}
	for _, c := range Syscalls(string(tb)) {
		if c.Name == "write" {
			return nil
		}
	}
	return fmt.Errorf("no write traced: %q", tb)
}

// Call is a system call strace traced: its name, arguments and result,
// and the line it was read from.
type Call struct{ Name, Args, Ret, Line string }

// straceLine matches a completed call of strace -f -o: "pid name(args) = ret".
var straceLine = regexp.MustCompile(`^(\d+)\s+(\w+)\((.*)\)\s+=\s+(-?\d+)`)

// Syscalls parses strace -f -o's output into the calls that completed,
// joining the halves strace splits when another thread's call comes in
// between ("<unfinished ...>", then "<... name resumed>").
func Syscalls(trace string) []Call {
	pending := map[string]string{} // pid: the unfinished half
	var calls []Call
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
		calls = append(calls, Call{Name: m[2], Args: m[3], Ret: m[4], Line: line})
	}
	return calls
}
