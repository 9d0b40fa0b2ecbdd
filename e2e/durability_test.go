package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Why SIGKILL loses nothing that omen acknowledged: the write handler
// answers 2xx only after the TSDB appender's Commit returned, and Commit
// returns only after the transaction's WAL records were written to the
// current WAL segment with write(2) (tsdb/wlog flushes the page of the last
// record of every Log call). A write(2) that returned is in the kernel's
// page cache, which outlives the process: SIGKILL, a panic or an OOM kill
// cannot take it back, and the next start replays it. Power loss or a kernel
// crash is another matter: like Prometheus, the TSDB fsyncs a WAL segment
// only when it is complete (every 128 MiB by default), at checkpoints and on
// Close, so a machine crash can lose the acknowledged samples of the current
// segment that the kernel had not written back yet (typically the last ~30 s,
// the kernel's dirty-page expiry). These tests cover process death, which is
// what the page cache makes safe.

// TestDurabilityKillMidStream kills omen with SIGKILL three times while a
// writer streams to it, restarts it on the same storage each time, and
// reads every acknowledged sample back through remote read.
func TestDurabilityKillMidStream(t *testing.T) {
	// Scored series (no omen_ prefix): the pipeline's tap is in the path too.
	w := newAckWriter("durability_stream", 200, 4, time.Now().Add(-30*time.Minute).UnixMilli(), 100)
	p := stopMidStream(t, w, "SIGKILL", func(p *proc) { p.Kill() }) // with requests in flight
	require.Positive(t, w.conn.Load(), "the writer never saw omen down: the kills were not mid-stream")
	w.requireNoneLost(t, p.URL)
}

// TestDurabilitySIGTERMMidStream stops omen with SIGTERM three times while
// a writer streams to it, with no shutdown grace (--web.shutdown-grace=0s:
// the server's connections close at once, with requests in flight, the
// case where a request could be served after the storage began to close),
// restarts it on the same storage each time, and reads every acknowledged
// sample back: a shutdown refuses or drops a write (which the writer
// retries), never acknowledges one it then loses, and always exits
// cleanly.
func TestDurabilitySIGTERMMidStream(t *testing.T) {
	w := newAckWriter("durability_sigterm", 200, 8, time.Now().Add(-30*time.Minute).UnixMilli(), 100)
	p := stopMidStream(t, w, "SIGTERM", func(p *proc) {
		p.Stop()
		require.Zero(t, p.cmd.ProcessState.ExitCode(), "omen's exit after SIGTERM")
		require.False(t, p.logContains("\npanic: "), "omen panicked at its shutdown")
	}, "--web.shutdown-grace=0s")
	require.Positive(t, w.conn.Load()+w.refuse.Load(), "the writer never saw omen stop: the stops were not mid-stream")
	w.requireNoneLost(t, p.URL)
}

// stopMidStream starts omen with args, streams w to it, and three times
// stops it with stop (named how) once 20000 more samples were acknowledged
// and starts it again on the same storage; it stops w after 5000 more and
// returns the omen running then.
func stopMidStream(t *testing.T, w *ackWriter, how string, stop func(*proc), args ...string) *proc {
	t.Helper()
	dir, port := t.TempDir(), freePort(t)
	p := omenAt(t, dir, port, args...)
	p.WaitReady(60 * time.Second)
	w.rounds = 15000 // 25 minutes of 100ms rounds: never past "now"
	w.start(p.URL)
	defer w.stop()
	for n := 0; n < 3; n++ {
		before := w.ackedSamples()
		waitFor(t, 30*time.Second, "more samples acknowledged", func() bool { return w.ackedSamples() >= before+20000 })
		stop(p)
		t.Logf("%s %d after %d samples acknowledged", how, n+1, w.ackedSamples())
		p = omenAt(t, dir, port, args...)
		p.WaitReady(60 * time.Second)
	}
	before := w.ackedSamples()
	waitFor(t, 30*time.Second, "writes after the last restart", func() bool { return w.ackedSamples() >= before+5000 })
	w.stop()
	return p
}

// TestDurabilityKillDuringWALReplay fills the WAL, kills omen, and kills it
// again while the restart is still replaying that WAL (/-/ready answers 503
// and the TSDB has logged that it is replaying): a replay that is cut short
// must leave the WAL as it was, so the third start has every sample.
func TestDurabilityKillDuringWALReplay(t *testing.T) {
	dir, port, w := fillWALToReplay(t)
	for kill := 0; kill < 2; kill++ {
		p := omenAt(t, dir, port)
		started := time.Now()
		// kill 0 at the first chance, kill 1 a little further in.
		caught := awaitReplay(p, time.Duration(kill)*20*time.Millisecond, p.Kill)
		require.True(t, caught && !p.logContains("TSDB ready"),
			"omen finished replaying its WAL before it could be killed mid-replay; grow the WAL")
		t.Logf("kill %d: SIGKILL %s into the restart, during WAL replay", kill+1, time.Since(started).Round(time.Millisecond))
	}
	p := omenAt(t, dir, port)
	p.WaitReady(60 * time.Second)
	w.requireNoneLost(t, p.URL)
}

// TestDurabilitySIGTERMDuringWALReplay: a SIGTERM while a restart replays
// the WAL ends omen at once and cleanly, without the rest of the replay
// (the TSDB's open heeds no cancellation, and the shutdown waited for all
// of it: minutes for a large WAL, past a pod's termination grace); the
// replay cut short leaves the WAL as it was, so the next start has every
// sample.
func TestDurabilitySIGTERMDuringWALReplay(t *testing.T) {
	dir, port, w := fillWALToReplay(t)
	p := omenAt(t, dir, port)
	require.True(t, awaitReplay(p, 0, p.Stop), "omen finished replaying its WAL before the SIGTERM; grow the WAL")
	require.Zero(t, p.cmd.ProcessState.ExitCode(), "a clean exit")
	require.False(t, p.logContains("TSDB ready"), "omen replayed the whole WAL before it exited")
	p = omenAt(t, dir, port)
	p.WaitReady(60 * time.Second)
	w.requireNoneLost(t, p.URL)
}

// TestDurabilityStopDuringWALReplayKeepsSnapshotCurrent: a graceful stop
// marks its final model snapshot current (see pipeline's writeMark), so
// that the next start resumes every restored series without reading its
// history again; a start stopped during its WAL replay, by a SIGTERM or a
// SIGKILL, took no sample, and leaves the mark as it found it: the start
// after it restores every series current, as it would have (after a
// SIGKILL the mark was gone: the start that read it had removed it before
// the TSDB opened). Once that start takes samples of the scored series the
// mark goes: killed then, the start after it catches them up
// (current=0).
func TestDurabilityStopDuringWALReplayKeepsSnapshotCurrent(t *testing.T) {
	restored := regexp.MustCompile(`msg="Model snapshot restored".* series=(\d+) current=(\d+)`)
	for _, tc := range []struct {
		name string
		kill bool
	}{
		{"SIGTERM", false},
		{"SIGKILL", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, port, _ := fillWALToReplay(t)
			p := omenAt(t, dir, port)
			p.WaitReady(120 * time.Second)
			// Scored series (no omen_ prefix), in the final snapshot.
			begin := time.Now().Add(-10 * time.Minute).UnixMilli()
			scored := newAckWriter("e2e_replay_scored", 20, 1, begin, 15000)
			scored.rounds = 20
			scored.start(p.URL)
			scored.wait(t, 60*time.Second)
			scored.stop()
			p.Stop()
			mark := filepath.Join(dir, "omen-models.snap.current")
			require.FileExists(t, mark, "a graceful stop marks its final snapshot current")

			p = omenAt(t, dir, port)
			stop := p.Stop
			if tc.kill {
				stop = p.Kill
			}
			require.True(t, awaitReplay(p, 0, stop), "omen finished replaying its WAL before it was stopped; grow the WAL")
			require.False(t, p.logContains("TSDB ready"), "omen replayed the whole WAL before it exited")
			require.FileExists(t, mark, "the start stopped during its WAL replay took no sample: the snapshot is as current as before")

			p = omenAt(t, dir, port)
			p.WaitReady(120 * time.Second)
			requireRestored(t, p, restored, "20", "20") // none reads its history again
			require.FileExists(t, mark, "no sample taken yet")

			// Samples of the scored series, after the snapshot's: the
			// mark goes before they are stored.
			later := newAckWriter("e2e_replay_scored", 20, 1, begin+20*15000, 15000)
			later.rounds = 4
			later.start(p.URL)
			later.wait(t, 60*time.Second)
			later.stop()
			require.NoFileExists(t, mark, "samples taken: the snapshot is no longer current")
			p.Kill()

			p = omenAt(t, dir, port)
			p.WaitReady(120 * time.Second)
			requireRestored(t, p, restored, "20", "0") // every one catches up
		})
	}
}

// requireRestored requires p to have logged its snapshot restored with
// series restored series, current of them current.
func requireRestored(t *testing.T, p *proc, restored *regexp.Regexp, series, current string) {
	t.Helper()
	b, err := os.ReadFile(p.log)
	require.NoError(t, err)
	m := restored.FindSubmatch(b)
	require.NotNil(t, m, "the snapshot restored")
	require.Equal(t, series, string(m[1]), "the scored series restored")
	require.Equal(t, current, string(m[2]), "the restored series current")
}

// fillWALToReplay starts omen in a new directory, has a writer fill its WAL
// with 4M acknowledged samples and kills omen, so that the next start on
// the directory and port it returns replays them, long enough to be caught.
func fillWALToReplay(t *testing.T) (dir string, port int, w *ackWriter) {
	t.Helper()
	dir, port = t.TempDir(), freePort(t)
	p := omenAt(t, dir, port)
	p.WaitReady(60 * time.Second)
	// omen_-prefixed series are not scored: the two cores go to the TSDB,
	// which is what these tests are about.
	w = newAckWriter("omen_e2e_replay", 10000, 4, time.Now().Add(-20*time.Minute).UnixMilli(), 1000)
	w.rounds = 400 // 4M samples
	w.start(p.URL)
	w.wait(t, 60*time.Second)
	w.stop()
	p.Kill()
	return dir, port, w
}

// awaitReplay waits, for up to 60 s, until p replays its WAL (/-/ready
// answers 503, the TSDB has logged that it is replaying and not that it is
// ready), then, after delay, stops p with stop (which waits for the exit);
// it reports whether p was still replaying just before stop.
func awaitReplay(p *proc, delay time.Duration, stop func()) bool {
	for started := time.Now(); time.Since(started) < 60*time.Second; time.Sleep(2 * time.Millisecond) {
		if readyStatus(p.URL) == 503 && p.logContains("Replaying WAL") && !p.logContains("TSDB ready") {
			time.Sleep(delay)
			caught := !p.logContains("TSDB ready")
			stop()
			return caught
		}
	}
	return false
}

// TestDurabilityKillDuringCompaction streams samples spanning four hours,
// so that the head (2h blocks) becomes compactable once it spans more than
// 3h, and stops omen while the compactor is writing the block (its
// *.tmp-for-creation directory exists): with SIGKILL, or with SIGTERM, whose
// shutdown cancels the compaction rather than wait for the block (minutes
// for a large head) and exits cleanly. After the restart the writer
// finishes, everything acknowledged is there, and it is still there once the
// compaction has completed.
func TestDurabilityKillDuringCompaction(t *testing.T) {
	for _, tc := range []struct {
		name string
		sig  syscall.Signal
	}{{"SIGKILL", syscall.SIGKILL}, {"SIGTERM", syscall.SIGTERM}} {
		sig := tc.sig
		t.Run(tc.name, func(t *testing.T) {
			dir, port := t.TempDir(), freePort(t)
			p := omenAt(t, dir, port)
			p.WaitReady(60 * time.Second)

			w := newAckWriter("omen_e2e_compaction", 3000, 4, time.Now().Add(-4*time.Hour).UnixMilli(), 30000)
			w.rounds = 480 // 4h of 30s rounds: 1.44M samples
			w.start(p.URL)
			defer w.stop()

			// A tight poll: the block takes a few hundred milliseconds to write.
			var inFlight string
			for deadline := time.Now().Add(60 * time.Second); inFlight == ""; time.Sleep(time.Millisecond) {
				require.False(t, time.Now().After(deadline), "no head compaction started within 60s")
				inFlight = compactionInFlight(dir)
			}
			signalled := time.Now()
			require.NoError(t, p.cmd.Process.Signal(sig))
			select {
			case <-p.done:
			case <-time.After(60 * time.Second):
				t.Fatalf("omen did not exit within 60s of %s", sig)
			}
			t.Logf("%s while %s was being written, after %d samples acknowledged: exited in %s", sig, inFlight, w.ackedSamples(), time.Since(signalled).Round(time.Millisecond))
			if sig == syscall.SIGKILL {
				require.True(t, p.logContains("Replaying WAL"))
				_, err := os.Stat(filepath.Join(dir, inFlight))
				require.NoError(t, err, "SIGKILL should have caught the block half written")
			} else {
				require.Equal(t, 0, p.cmd.ProcessState.ExitCode())
				require.True(t, p.logContains("TSDB closed"), "the TSDB closed within --storage.tsdb.shutdown-timeout")
			}

			p = omenAt(t, dir, port)
			p.WaitReady(60 * time.Second)
			_, err := os.Stat(filepath.Join(dir, inFlight))
			require.ErrorIs(t, err, os.ErrNotExist, "the TSDB removes a half-written block on start")
			w.wait(t, 60*time.Second)
			w.requireNoneLost(t, p.URL)

			// The appends after the restart trigger the compaction again; once a
			// block is on disk, the same samples are read from it and the head.
			waitFor(t, 60*time.Second, "a persisted block", func() bool { return len(blocks(dir)) > 0 })
			t.Logf("blocks after restart: %v", blocks(dir))
			w.requireNoneLost(t, p.URL)
		})
	}
}

// compactionInFlight returns the name of a block directory the compactor is
// writing, or "".
func compactionInFlight(dir string) string {
	es, _ := os.ReadDir(dir)
	for _, e := range es {
		if e.IsDir() && strings.HasSuffix(e.Name(), ".tmp-for-creation") {
			return e.Name()
		}
	}
	return ""
}

// blocks lists the persisted blocks (directories with a meta.json).
func blocks(dir string) []string {
	var out []string
	es, _ := os.ReadDir(dir)
	for _, e := range es {
		if _, err := os.Stat(filepath.Join(dir, e.Name(), "meta.json")); e.IsDir() && err == nil && !strings.Contains(e.Name(), ".tmp") {
			out = append(out, e.Name())
		}
	}
	return out
}
