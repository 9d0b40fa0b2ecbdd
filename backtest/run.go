package backtest

import (
	"context"
	"log/slog"

	"github.com/omen-sidecar/omen/batch"
	"github.com/omen-sidecar/omen/detect"
)

// Config is one backtest run.
type Config struct {
	Input   string // a CSV file or a folder searched recursively for *.csv
	Output  string // folder that mirrors Input's tree
	Workers int    // files scored in parallel; 0 means one per CPU
	// Progress, if not nil, is told after each file. It is called from
	// one goroutine at a time.
	Progress func(done, total int)
	Detect   detect.Options
	Logger   *slog.Logger // warnings about a file (see File); nil: none
}

// Summary counts what a run did.
type Summary = batch.Summary

// Run scores every CSV under cfg.Input into cfg.Output, files in parallel.
// A bad file does not stop the others; the errors of all bad files are
// joined into the returned error.
func Run(ctx context.Context, cfg Config) (Summary, error) {
	if err := cfg.Detect.Validate(); err != nil {
		return Summary{}, err
	}
	return batch.Run(ctx, batch.Options{Input: cfg.Input, Output: cfg.Output, Workers: cfg.Workers, Progress: cfg.Progress},
		func() batch.Job {
			sc := detect.NewScratch() // one per worker: Detectors run one at a time here
			return func(ctx context.Context, in, out string) error { return File(ctx, cfg.Logger, in, out, cfg.Detect, sc) }
		})
}
