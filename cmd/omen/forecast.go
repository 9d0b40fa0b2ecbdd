package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/model"
	"golang.org/x/term"

	"github.com/omen-sidecar/omen/batch"
	"github.com/omen-sidecar/omen/config"
	"github.com/omen-sidecar/omen/forecast"
	"github.com/omen-sidecar/omen/forecastcli"
)

// csvInputHelp is what --input of backtest and forecast says of a file.
// Values are taken as they are: omen serve scores and forecasts a counter
// as its per-second rate, which these commands cannot tell from a file.
const csvInputHelp = "Fields separated by commas, or by semicolons or tabs if the header has no comma (a value's decimal mark may then be a comma). A header row, then rows whose first two columns are a timestamp and a value (an empty cell or NaN is a missing value); one series per file (of a column per series, as Grafana's Series joined by time writes, the second column is taken and the others with numbers are warned of), oldest first (a row at or before an earlier time is skipped; a file where half the rows are is refused). Timestamps: unix seconds (fractions allowed) or, for a number above 1e11 (which as seconds would be after the year 5000), unix milliseconds as Grafana's CSV export without formatted data writes them, from 1e14 microseconds and from 1e17 nanoseconds (as Telegraf and VictoriaMetrics can export them), RFC 3339 (a space may replace the T, as pandas writes), or YYYY-MM-DD[ HH:MM[:SS]] (a T may replace the space), YYYYMMDD, YYYYMMDDHHMM and YYYYMMDDHHMMSS with or without three digits of milliseconds after, read as UTC (ten digits are unix seconds, not YYYYMMDDHH). Values are taken as they are; omen serve scores and forecasts a counter as its per-second rate, so export rate(x[5m]) to match."

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
// under --input as omen serve would forecast it live, at its last row.
func registerForecast(app *kingpin.Application, lc *logConfig) command {
	cl := app.Command("forecast", "Forecast CSV series as omen serve forecasts a series live, at each file's last row: one timestamp,yhat,yhat_lower,yhat_upper file per input file, a row per horizon at the last row's time plus the horizon; timestamps in the input's unit (unix seconds, milli-, micro- or nanoseconds) if its are numbers, else RFC 3339 in UTC. "+forecastHowHelp)
	input := cl.Flag("input", "CSV file, folder searched recursively for .csv files (skipping hidden ones: .name), or - for standard input. "+csvInputHelp).Required().String()
	output := cl.Flag("output", "Folder for the forecasts; mirrors the input tree. For a single input file or standard input, a name ending in .csv (not an existing folder) is the forecast file itself, and - is standard output.").Required().String()
	horizons := cl.Flag("horizons", "Comma-separated horizons (Prometheus durations, at most "+fmt.Sprint(config.MaxForecastHorizons)+"), as forecast_horizons in omen serve's configuration: the longest sets the forecaster's steps and history.").Default(defaultHorizons()).String()
	every := cl.Flag("forecast.interval", "As omen serve's: the sample time between forecasts, when the model refits (every 64 of its steps, at the forecast after).").Default("1m").Duration()
	steps := cl.Flag("steps", "Instead of the live forecaster: a curve of this many steps of the series' own interval after its last row, from the forecast package's model on the raw rows with its defaults (not omen serve's forecasts; for benchmarks of the model, as make bench-m4). A file needs at least 2·steps+32 rows (64 at least), so steps are at most (history-32)/2. --horizons, --forecast.interval and the --detect.* flags are then not used.").Default("0").Int()
	history := cl.Flag("history", "With --steps: the most recent rows the model fits on.").Default(fmt.Sprint(forecast.DefaultOptions().History)).Int()
	workers := cl.Flag("workers", "Files forecast in parallel (0: one per CPU).").Default("0").Int()
	// The detector's: its scores clip what the forecaster learns, as a
	// selection's options set it live.
	detector := detectorFlags(cl)
	// The flags of the model's curve before omen forecast forecast as
	// live (2026-12-07): a script still giving them is told what became
	// of them, not "unknown flag".
	var oldHorizon, oldCoverage bool
	cl.Flag("horizon", "").Hidden().IsSetByUser(&oldHorizon).String()
	cl.Flag("coverage", "").Hidden().IsSetByUser(&oldCoverage).String()
	return command{clause: cl, run: func(ctx context.Context) error {
		if oldHorizon || oldCoverage {
			return errors.New("--horizon and --coverage were removed: omen forecast now forecasts as omen serve does, for --horizons (durations, as forecast_horizons), with its bands; --steps N gives the model's curve of N steps on the raw rows that --horizon N gave (its bands at 95%)")
		}
		*input, *output = stdio(*input), stdio(*output)
		if err := checkStdin(*input); err != nil {
			return err
		}
		hs, err := parseHorizons(*horizons)
		if err != nil {
			return err
		}
		if *every <= 0 {
			return fmt.Errorf("--forecast.interval=%s: want more than 0", *every)
		}
		det, err := detector()
		if err != nil {
			return err
		}
		cfg := forecastcli.Config{Horizons: hs, Every: *every, Detect: det, Steps: *steps, Curve: forecast.Options{History: *history}}
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

// forecastHowHelp says, in `omen forecast --help`, how a file is forecast.
const forecastHowHelp = "As live: rows are scored by the detector (the --detect.* flags, as omen backtest's and a selection's options in omen serve's configuration: direction, false_alarm_rate, min_deviation_abs and _rel, flatline), whose scores clip what the forecaster learns: a value scored above 1 is learnt as the nearer end of the band expected before it; rows faster than a 64th of the longest horizon (at least 4 minutes from a 1h horizon on) are averaged into steps; the forecaster holds 512 steps (768 where that holds two days), forecasts every --forecast.interval and refits every 64 steps; bands are widened by the spread within the steps and by a floor calibrated on the forecasts checked against the rows that came at their times. Only the refit phase, which live comes from the series, differs."

// defaultHorizons is omen serve's default forecast_horizons, comma-separated.
func defaultHorizons() string {
	var b strings.Builder
	for i, h := range config.Default().Defaults.ForecastHorizons {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(h.String())
	}
	return b.String()
}

// parseHorizons reads --horizons: Prometheus durations, comma-separated.
func parseHorizons(s string) ([]time.Duration, error) {
	var hs []time.Duration
	for f := range strings.SplitSeq(s, ",") {
		d, err := model.ParseDuration(strings.TrimSpace(f))
		if err != nil {
			return nil, fmt.Errorf("--horizons=%s: %w", s, err)
		}
		hs = append(hs, time.Duration(d))
	}
	return hs, nil
}
