package main

import (
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"

	"github.com/KimMachineGun/automemlimit/memlimit"
	"github.com/alecthomas/kingpin/v2"
)

// defaultGOGC is the garbage collector's target when GOGC is not set,
// Prometheus 3's own default: the heap grows 75% past the live data
// instead of 100%. omen's live heap is mostly long-lived models and the
// TSDB head, so the extra collections cost little and the peak RSS is
// lower.
const defaultGOGC = 75

// startGOGC is the target from the end of the models' snapshot restore
// until the start's burst of allocation is over (see memrelease.Settler):
// a restart at 100 000 series peaked at 2.17-2.46 GB of RSS at
// defaultGOGC, the heap grown to 1.75 times a live heap that held the
// snapshot's records beside the restored models. Not during the WAL replay
// and the restore, which /-/ready waits for: at 25 the replay's heap,
// growing from nothing, was collected ~3 times as often, the replay slowed
// by half; the restore took 3.1-5.5 s instead of 1.1-5.9 s.
const startGOGC = 25

type runtimeFlags struct {
	memlimit      bool
	memlimitRatio float64
	releaseFree   bool
	// settle: GOGC is omen's (not the environment's), startGOGC from the
	// restore (see restoring), defaultGOGC again once the start is over.
	settle bool
}

// registerRuntimeFlags adds Prometheus's Go runtime flags to cl.
func registerRuntimeFlags(cl *kingpin.CmdClause) *runtimeFlags {
	r := &runtimeFlags{}
	cl.Flag("auto-gomemlimit", "Set GOMEMLIMIT to the container's (cgroup) or the system's memory limit times --auto-gomemlimit.ratio, unless GOMEMLIMIT is set.").
		Default("true").BoolVar(&r.memlimit)
	cl.Flag("auto-gomemlimit.ratio", "Share of the detected memory limit given to GOMEMLIMIT.").
		Default("0.9").FloatVar(&r.memlimitRatio)
	cl.Flag("runtime.release-free-memory", "Give the free heap memory a burst of allocation leaves (the WAL replay, a sender catching up, history written at speed) back to the operating system once allocation is quiet again: one garbage collection, at most every 5 minutes. Without it Go keeps up to GOGC percent of the live heap resident.").
		Default("true").BoolVar(&r.releaseFree)
	return r
}

// apply sets GOGC (unless the environment does) and GOMEMLIMIT.
func (r *runtimeFlags) apply(logger *slog.Logger) error {
	if r.memlimitRatio <= 0 || r.memlimitRatio > 1 {
		return fmt.Errorf("--auto-gomemlimit.ratio %g: want greater than 0 and at most 1", r.memlimitRatio)
	}
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGOGC)
		r.settle = true
	}
	if !r.memlimit {
		return nil
	}
	if _, err := memlimit.Set(
		memlimit.WithRatio(r.memlimitRatio),
		memlimit.WithProvider(memlimit.ApplyFallback(memlimit.FromCgroup, memlimit.FromSystem)),
		memlimit.WithLogger(logger.With("component", "automemlimit")),
	); err != nil {
		logger.Warn("Could not set GOMEMLIMIT automatically", "err", err)
	}
	return nil
}

// restoring sets startGOGC, once the snapshot is restored, for the first
// rounds after it, unless GOGC is the environment's.
func (r *runtimeFlags) restoring() {
	if r.settle {
		debug.SetGCPercent(startGOGC)
	}
}
