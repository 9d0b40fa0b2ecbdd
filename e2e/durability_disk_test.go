package e2e

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// mountTmpfs mounts a tmpfs of size bytes on a new directory, or skips the
// test where this machine does not allow it (not root, no CAP_SYS_ADMIN).
// The same property is then still tested in make test by
// tsdb.TestStorageFailureIsRetriableAndRecovers, which injects the errors
// at the storage layer.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "mnt")
	require.NoError(t, os.Mkdir(dir, 0o755))
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here (%v: %s); tsdb.TestStorageFailureIsRetriableAndRecovers covers the property by fault injection", err, out)
	}
	// Registered before omen starts, so it runs after omen is killed.
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

func freeBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	require.NoError(t, syscall.Statfs(dir, &st))
	return int64(st.Bavail) * st.Bsize
}

// TestDiskFull runs omen on a real 64 MiB tmpfs while a writer streams to
// it, then fills the file system: writes must get 503 with Retry-After
// (retriable), /-/ready must fail while omen stays alive, and once the space
// is freed omen must take writes again by itself. omen must also survive a
// truly full file system for a while. Afterwards, and after a
// SIGKILL and restart, every acknowledged sample is there.
func TestDiskFull(t *testing.T) {
	dir := mountTmpfs(t, "64m")
	port := freePort(t)
	p := omenAt(t, dir, port)
	p.WaitReady(60 * time.Second)

	w := newAckWriter("durability_disk", 200, 2, time.Now().Add(-30*time.Minute).UnixMilli(), 100)
	w.rounds = 15000
	w.start(p.URL)
	defer w.stop()
	waitFor(t, 30*time.Second, "writes before the disk fills", func() bool { return w.ackedSamples() >= 20000 })

	// Fill the file system to leave less than omen's reserve (5% of it).
	filler := filepath.Join(dir, "filler")
	f, err := os.Create(filler)
	require.NoError(t, err)
	free := freeBytes(t, dir)
	require.NoError(t, syscall.Fallocate(int(f.Fd()), 0, 0, free-1<<20))
	require.NoError(t, f.Close())
	t.Logf("filled: %d bytes free", freeBytes(t, dir))

	waitFor(t, 10*time.Second, "/-/ready to fail", func() bool { return readyStatus(p.URL) == http.StatusServiceUnavailable })
	refused := w.retry.Load()
	waitFor(t, 10*time.Second, "writes refused with 503 + Retry-After", func() bool { return w.retry.Load() > refused+5 })
	// Then take the last bytes too: a truly full file system, which omen
	// must survive (its reserve keeps it from writing head chunks there).
	out, _ := exec.Command("dd", "if=/dev/zero", "of="+filler+"2", "bs=4k").CombinedOutput()
	require.Zero(t, freeBytes(t, dir), "dd: %s", out)
	stalled := w.ackedSamples()
	time.Sleep(3 * time.Second)
	require.Equal(t, stalled, w.ackedSamples(), "nothing acknowledged while the disk is full")
	require.Equal(t, http.StatusServiceUnavailable, readyStatus(p.URL))
	resp, err := http.Get(p.URL + "/-/healthy")
	require.NoError(t, err, "omen must stay up while the disk is full")
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, string(metricsText(t, p.URL)), "omen_storage_writable 0")
	// Reads go on while writes are refused: everything acknowledged is
	// read back through remote read while the disk is full.
	w.requireNoneLost(t, p.URL)

	// Space returns: omen recovers without a restart.
	require.NoError(t, os.Remove(filler))
	require.NoError(t, os.Remove(filler+"2"))
	waitFor(t, 10*time.Second, "/-/ready after the space returned", func() bool { return readyStatus(p.URL) == http.StatusOK })
	waitFor(t, 30*time.Second, "writes acknowledged again", func() bool { return w.ackedSamples() >= stalled+10000 })
	require.Nil(t, w.bad.Load())
	w.stop()
	w.requireNoneLost(t, p.URL)

	p.Kill()
	p = omenAt(t, dir, port)
	p.WaitReady(60 * time.Second)
	w.requireNoneLost(t, p.URL)
}
