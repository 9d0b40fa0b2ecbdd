package e2e

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/omen-sidecar/omen/pipeline"
)

// killMoment is when TestDurabilityRandomKills sends its SIGKILL.
type killMoment int

const (
	killIngest     killMoment = iota // a random moment of the stream
	killStartup                      // a random moment of the next start: WAL replay, snapshot restore
	killSnapshot                     // while the model snapshot's temporary file is written
	killReload                       // a random moment after a POST /-/reload
	killCompaction                   // while a head block is written, if one is within a few seconds
	killMoments
)

func (m killMoment) String() string {
	return [...]string{"ingest", "startup", "snapshot", "reload", "compaction"}[m]
}

// TestDurabilityRandomKills kills omen with SIGKILL again and again at
// random moments of each kind (killMoment) while a writer streams scored
// series to it, restarting it on the same storage each time. Every start
// must become ready by itself (no crash loop, no manual repair), restore
// the model snapshot or find none (never one it cannot read: the snapshot
// is renamed into place whole), and score again; at the end every
// acknowledged sample is read back. OMEN_KILLS sets the number of kills
// (5 by default, one of each kind, ~20 s; 60 took 150-220 s on 2 busy cores).
func TestDurabilityRandomKills(t *testing.T) {
	kills := 5
	if s := os.Getenv("OMEN_KILLS"); s != "" {
		n, err := strconv.Atoi(s)
		require.NoError(t, err, "OMEN_KILLS")
		kills = n
	}
	seed := time.Now().UnixNano()
	if s := os.Getenv("OMEN_KILLS_SEED"); s != "" {
		var err error
		seed, err = strconv.ParseInt(s, 10, 64)
		require.NoError(t, err, "OMEN_KILLS_SEED")
	}
	t.Logf("seed %d (OMEN_KILLS_SEED repeats the kills' timing)", seed)
	rnd := rand.New(rand.NewPCG(uint64(seed), 0))

	dir, port := t.TempDir(), freePort(t)
	cfgFile := filepath.Join(t.TempDir(), "omen.yml")
	configs := []string{"defaults: {direction: up}\n", "defaults: {direction: both}\n"}
	require.NoError(t, os.WriteFile(cfgFile, []byte(configs[0]), 0o644))
	args := []string{"--snapshot.interval=1s", "--config.file=" + cfgFile, "--web.enable-lifecycle"}
	snapTmp := filepath.Join(dir, pipeline.SnapshotFile+".tmp")

	// 8h of 2s rounds, at most a round per 2ms (0.25ms a kill in a long
	// run, so that the stream outlasts its kills: 60 kills took 150-220 s
	// on 2 busy cores): the head becomes compactable (more than 3h) after
	// 5400 rounds, ~11 s in (~80 s in a run of 60 kills), and again every
	// 2h of samples.
	w := newAckWriter("durability_kills", 120, 3, time.Now().Add(-8*time.Hour).UnixMilli(), 2000)
	w.rounds = 14400
	w.interval = max(2*time.Millisecond, time.Duration(kills)*250*time.Microsecond)
	all := int64(w.series * w.rounds)
	p := omenAt(t, dir, port, args...)
	p.WaitReady(60 * time.Second)
	w.start(p.URL)
	defer w.stop()

	var restored, fresh, caught [killMoments]int
	for kill := 0; kill < kills; kill++ {
		m := killMoment(kill % int(killMoments))
		if m != killStartup {
			before := w.ackedSamples()
			want := before + int64(w.series)*(1+rnd.Int64N(40))
			waitFor(t, 60*time.Second, "more samples acknowledged", func() bool {
				return w.ackedSamples() >= want || w.ackedSamples() == all
			})
			// Scores resume after each restart: this process scored.
			waitFor(t, 60*time.Second, "samples scored after the restart", func() bool {
				return metricsGauge(t, p.URL, "omen_samples_scored_total", "") > 0 || w.ackedSamples() == all
			})
		}
		hit := false
		switch m {
		case killIngest:
			time.Sleep(time.Duration(rnd.IntN(300)) * time.Millisecond)
			hit = true
		case killSnapshot:
			// A tight poll: at 120 series the file is written in a few ms.
			for deadline := time.Now().Add(10 * time.Second); !hit && time.Now().Before(deadline); {
				_, err := os.Stat(snapTmp)
				hit = err == nil
				if !hit {
					time.Sleep(100 * time.Microsecond)
				}
			}
		case killReload:
			require.NoError(t, os.WriteFile(cfgFile, []byte(configs[kill%2]), 0o644))
			go func() {
				resp, err := http.Post(p.URL+"/-/reload", "", nil)
				if err == nil {
					resp.Body.Close()
				}
			}()
			time.Sleep(time.Duration(rnd.IntN(30)) * time.Millisecond)
			hit = true
		case killStartup:
			// The previous kill's process is gone: this start is killed
			// at a random moment of its replay and restore.
			time.Sleep(time.Duration(rnd.IntN(500)) * time.Millisecond)
			hit = readyStatus(p.URL) != http.StatusOK
		case killCompaction:
			for deadline := time.Now().Add(5 * time.Second); !hit && time.Now().Before(deadline); time.Sleep(time.Millisecond) {
				hit = compactionInFlight(dir) != ""
			}
		}
		p.Kill()
		if hit {
			caught[m]++
		}
		t.Logf("kill %d (%s, caught: %v): %d samples acknowledged", kill+1, m, hit, w.ackedSamples())

		p = omenAt(t, dir, port, args...)
		if killMoment((kill+1)%int(killMoments)) == killStartup {
			continue // killed before it is ready
		}
		p.WaitReady(60 * time.Second)
		w.setURL(p.URL)
		switch {
		case p.logContains("Model snapshot restored"):
			restored[m]++
		case p.logContains("No model snapshot"):
			fresh[m]++
		default:
			b, _ := os.ReadFile(p.log)
			t.Fatalf("after the kill during %s the model snapshot was neither restored nor absent:\n%s", m, tail(b, 4000))
		}
		require.False(t, p.logContains("Model snapshot unusable"), "a SIGKILL left a snapshot omen cannot read")
	}
	if killMoment(kills%int(killMoments)) == killStartup {
		p.WaitReady(60 * time.Second)
	}
	before := w.ackedSamples()
	waitFor(t, 60*time.Second, "writes after the last restart", func() bool {
		return w.ackedSamples() > before || w.ackedSamples() == all
	})
	waitFor(t, 60*time.Second, "samples scored after the last restart", func() bool {
		return metricsGauge(t, p.URL, "omen_samples_scored_total", "") > 0 || w.ackedSamples() == all
	})
	if w.ackedSamples() == all {
		t.Logf("the stream ended before the last kills (a slow machine): the restarts after it were not checked for scores")
	}
	w.drain()
	t.Logf("kills by moment %v: caught in the act %v, snapshot restored after %v, none yet after %v; blocks %v",
		fmt.Sprint([...]string{"ingest", "startup", "snapshot", "reload", "compaction"}), caught, restored, fresh, blocks(dir))
	w.requireNoneLost(t, p.URL)
}
