package main

import (
	"context"
	"os"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"golang.org/x/term"

	"github.com/omen-sidecar/omen/backtest"
	"github.com/omen-sidecar/omen/batch"
)

// registerBacktest adds `omen backtest`: the live scoring path over CSV files.
func registerBacktest(app *kingpin.Application, lc *logConfig) command {
	cl := app.Command("backtest", "Score CSV series (timestamp,value,...) with the anomaly detector; writes anomaly_score,yhat,yhat_lower,yhat_upper.")
	var cfg backtest.Config
	cl.Flag("input", "CSV file, folder searched recursively for .csv files (skipping hidden ones: .name), or - for standard input. "+csvInputHelp).Required().StringVar(&cfg.Input)
	cl.Flag("output", "Output folder; mirrors the input tree file for file. For a single input file or standard input, a name ending in .csv (not an existing folder) is the output file itself, and - is standard output (written as it goes, not whole or not at all as a file is).").Required().StringVar(&cfg.Output)
	cl.Flag("workers", "Files scored in parallel (0: one per CPU).").Default("0").IntVar(&cfg.Workers)
	detector := detectorFlags(cl)
	return command{clause: cl, run: func(ctx context.Context) error {
		logger := lc.logger()
		cfg.Input, cfg.Output = stdio(cfg.Input), stdio(cfg.Output)
		if err := checkStdin(cfg.Input); err != nil {
			return err
		}
		cfg.Logger = logger
		var err error
		if cfg.Detect, err = detector(); err != nil {
			return err
		}
		if term.IsTerminal(int(os.Stderr.Fd())) {
			cfg.Progress = batch.Bar(os.Stderr, "backtest")
		}
		start := time.Now()
		sum, err := backtest.Run(ctx, cfg)
		logger.Info("backtest done", "files", sum.Files, "failed", sum.Failed, "output", cfg.Output, "duration", time.Since(start).Round(time.Millisecond))
		return err
	}}
}
