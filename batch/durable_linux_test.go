package batch

import (
	"bufio"
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
// where ptrace is not allowed.
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
	dir := t.TempDir()
	out := filepath.Join(dir, "r.csv")
	trace := filepath.Join(t.TempDir(), "trace")
	cmd := exec.Command(strace, "-f", "-qq", "-o", trace, "-e", "trace=openat,write,fsync,fdatasync,close,rename,renameat,renameat2",
		os.Args[0], "-test.run=^TestWriteFileDurable$", "-test.count=1")
	cmd.Env = append(os.Environ(), writeFileHelperEnv+"="+out)
	if b, err := cmd.CombinedOutput(); err != nil {
		if strings.Contains(string(b), "ptrace") {
			t.Skipf("strace cannot trace here: %s", b)
		}
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
