package forecastcli

import (
	"context"
	"log/slog"

	"github.com/omen-sidecar/omen/batch"
)

// Summary counts the files of a Run.
type Summary = batch.Summary

// Run forecasts input (a CSV file or a folder searched for .csv files) into
// output, mirroring the tree, with workers files in parallel (0: one per
// CPU). A file that fails is logged with its error and counted; the others
// go on. progress, if not nil, is told after each file.
func Run(ctx context.Context, logger *slog.Logger, input, output string, workers int, progress func(done, total int), cfg Config) (Summary, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	// The per-file errors are logged here and counted, so batch.Run's
	// joined error is dropped; what it refuses before any file must not be.
	if err := batch.Check(input, output); err != nil {
		return Summary{}, err
	}
	sum, _ := batch.Run(ctx, batch.Options{Input: input, Output: output, Workers: workers, Progress: progress},
		func() batch.Job {
			return func(ctx context.Context, in, out string) error {
				err := File(ctx, logger, in, out, cfg)
				if err != nil {
					logger.Error("forecast file", "file", in, "err", err)
				}
				return err
			}
		})
	return sum, ctx.Err()
}
