package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/alecthomas/kingpin/v2"
	"golang.org/x/term"

	"github.com/omen-sidecar/omen/batch"
	"github.com/omen-sidecar/omen/forecast"
	"github.com/omen-sidecar/omen/forecastcli"
)

// csvInputHelp is what --input of backtest and forecast says of a file.
// Values are taken as they are: omen serve scores and forecasts a counter
// as its per-second rate, which these commands cannot tell from a file.
const csvInputHelp = "Fields separated by commas, or by semicolons or tabs if the header has no comma (a value's decimal mark may then be a comma). A header row, then rows whose first two columns are a timestamp and a value (an empty cell or NaN is a missing value); one series per file (of a column per series, as Grafana's Series joined by time writes, the second column is taken and the others with numbers are warned of), oldest first (a row at or before an earlier time is skipped; a file where half the rows are is refused). Timestamps: unix seconds (fractions allowed), RFC 3339 (a space may replace the T, as pandas writes), or YYYY-MM-DD[ HH:MM[:SS]] (a T may replace the space) and YYYYMMDD, read as UTC. Values are taken as they are; omen serve scores and forecasts a counter as its per-second rate, so export rate(x[5m]) to match."

// stdio returns batch.Stdio for the empty value kingpin gives a lone "-"
// after a flag (--input -), which no path is, else path.
func stdio(path string) string {
	if path == "" {
		return batch.Stdio
	}
	return path
}

// checkStdin refuses standard input as the input when it is a terminal:
// nothing is piped in, and a script's --input "$DIR" with DIR unset would
// wait for typing rather than fail.
func checkStdin(input string) error {
	if input == batch.Stdio && term.IsTerminal(int(os.Stdin.Fd())) {
		return errors.New("--input -: standard input is a terminal; pipe a CSV file in or give its path")
	}
	return nil
}

// registerForecast registers `omen forecast`: forecast every CSV series
// under --input for --horizon steps after its last point.
func registerForecast(app *kingpin.Application, lc *logConfig) command {
	cl := app.Command("forecast", "Forecast CSV series: one timestamp,yhat,yhat_lower,yhat_upper file per input file, for --horizon steps after its latest sample; timestamps in unix seconds if the input's are numbers, else RFC 3339 in UTC.")
	input := cl.Flag("input", "CSV file, folder searched recursively for .csv files (skipping hidden ones: .name), or - for standard input. "+csvInputHelp).Required().String()
	output := cl.Flag("output", "Folder for the forecasts; mirrors the input tree. For a single input file or standard input, a name ending in .csv (not an existing folder) is the forecast file itself, and - is standard output.").Required().String()
	horizon := cl.Flag("horizon", "Steps to forecast after the last input point; the step is inferred from the data. A file needs at least 2·horizon+32 samples (64 at least), so the horizon is at most (history-32)/2.").Default("48").Int()
	coverage := cl.Flag("coverage", "Nominal coverage of the prediction interval.").Default("0.95").Float64()
	history := cl.Flag("history", "Most recent samples each model fits on.").Default(fmt.Sprint(forecast.DefaultOptions().History)).Int()
	workers := cl.Flag("workers", "Files forecast in parallel (0: one per CPU).").Default("0").Int()
	return command{clause: cl, run: func(ctx context.Context) error {
		*input, *output = stdio(*input), stdio(*output)
		if err := checkStdin(*input); err != nil {
			return err
		}
		cfg := forecastcli.Config{Horizon: *horizon, Options: forecast.Options{Coverage: *coverage, History: *history}}
		if err := cfg.Validate(); err != nil {
			return err
		}
		var progress func(done, total int)
		if term.IsTerminal(int(os.Stderr.Fd())) {
			progress = batch.Bar(os.Stderr, "forecast")
		}
		sum, err := forecastcli.Run(ctx, lc.logger(), *input, *output, *workers, progress, cfg)
		if err != nil {
			return err
		}
		lc.logger().Info("forecast done", "files", sum.Files, "failed", sum.Failed)
		if sum.Failed > 0 {
			return fmt.Errorf("%d of %d files failed", sum.Failed, sum.Files)
		}
		return nil
	}}
}
