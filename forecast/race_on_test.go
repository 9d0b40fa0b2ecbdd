//go:build race

package forecast

// raceEnabled: the race detector's instrumentation allocates and its
// sync.Pool drops items at random, so byte counts of allocations are not
// the program's.
const raceEnabled = true
