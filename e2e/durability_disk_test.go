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

// TestDiskFullKillRestart fills omen's file system while it streams and
// takes model snapshots every second, kills it while the disk is full,
// and starts it again on the full disk: the snapshots fail without taking
// the last good one, the start neither exits nor loops (it is alive and
// refuses writes with a retriable status), and once space is freed it
// becomes ready by itself, restores a snapshot, scores again, and every
// acknowledged sample is there.
func TestDiskFullKillRestart(t *testing.T) {
	dir := mountTmpfs(t, "64m")
	port := freePort(t)
	args := []string{"--snapshot.interval=1s"}
	p := omenAt(t, dir, port, args...)
	p.WaitReady(60 * time.Second)

	w := newAckWriter("durability_disk_kill", 200, 2, time.Now().Add(-30*time.Minute).UnixMilli(), 100)
	w.rounds = 15000
	w.start(p.URL)
	defer w.stop()
	waitFor(t, 30*time.Second, "a snapshot written", func() bool {
		return metricsGauge(t, p.URL, "omen_snapshot_last_success_timestamp_seconds", "") > 0
	})
	waitFor(t, 30*time.Second, "writes before the disk fills", func() bool { return w.ackedSamples() >= 20000 })
	snap := filepath.Join(dir, "omen-models.snap")

	filler := filepath.Join(dir, "filler")
	f, err := os.Create(filler)
	require.NoError(t, err)
	require.NoError(t, syscall.Fallocate(int(f.Fd()), 0, 0, freeBytes(t, dir)-1<<20))
	require.NoError(t, f.Close())
	out, _ := exec.Command("dd", "if=/dev/zero", "of="+filler+"2", "bs=4k").CombinedOutput()
	require.Zero(t, freeBytes(t, dir), "dd: %s", out)
	failed := metricsGauge(t, p.URL, "omen_snapshot_failures_total", "")
	waitFor(t, 30*time.Second, "a snapshot failing on the full disk", func() bool {
		return metricsGauge(t, p.URL, "omen_snapshot_failures_total", "") > failed
	})
	_, err = os.Stat(snap + ".tmp")
	require.ErrorIs(t, err, os.ErrNotExist, "a failed snapshot leaves no temporary file filling the disk")

	p.Kill()
	acked := w.ackedSamples()
	p = omenAt(t, dir, port, args...)
	alive := func() {
		select {
		case <-p.done:
			b, _ := os.ReadFile(p.log)
			t.Fatalf("omen exited on the full disk:\n%s", tail(b, 4000))
		default:
		}
	}
	// On the full disk: up, not ready, refusing writes with a status
	// Prometheus retries, for a while.
	waitFor(t, 60*time.Second, "omen answering on the full disk", func() bool {
		alive()
		return readyStatus(p.URL) != 0
	})
	refused := w.refuse.Load()
	waitFor(t, 30*time.Second, "writes refused with 5xx on the full disk", func() bool { return w.refuse.Load() > refused+5 })
	time.Sleep(3 * time.Second) // a while on the full disk, not a synchronisation
	alive()
	require.Equal(t, acked, w.ackedSamples(), "nothing acknowledged while the disk is full")
	require.Nil(t, w.bad.Load())

	require.NoError(t, os.Remove(filler))
	require.NoError(t, os.Remove(filler+"2"))
	p.WaitReady(60 * time.Second)
	waitFor(t, 30*time.Second, "writes acknowledged again", func() bool { return w.ackedSamples() >= acked+10000 })
	waitFor(t, 30*time.Second, "samples scored again", func() bool {
		return metricsGauge(t, p.URL, "omen_samples_scored_total", "") > 0
	})
	require.True(t, p.logContains("Model snapshot restored"), "the snapshot before the disk filled is restored")
	w.stop()
	w.requireNoneLost(t, p.URL)
}
