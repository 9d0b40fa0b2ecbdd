package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"golang.org/x/term"

	"github.com/omen-sidecar/omen/backtest"
	"github.com/omen-sidecar/omen/batch"
	"github.com/omen-sidecar/omen/detect"
)

// registerBacktest adds `omen backtest`: the live scoring path over CSV files.
func registerBacktest(app *kingpin.Application, lc *logConfig) command {
	cl := app.Command("backtest", "Score CSV series (timestamp,value,...) with the anomaly detector; writes anomaly_score,yhat,yhat_lower,yhat_upper.")
	def := detect.DefaultOptions()
	var (
		cfg       backtest.Config
		direction string
		flatline  bool
	)
	cfg.Detect = def
	cl.Flag("input", "CSV file, folder searched recursively for .csv files (skipping hidden ones: .name), or - for standard input. "+csvInputHelp).Required().StringVar(&cfg.Input)
	cl.Flag("output", "Output folder; mirrors the input tree file for file. For a single input file or standard input, a name ending in .csv (not an existing folder) is the output file itself, and - is standard output (written as it goes, not whole or not at all as a file is).").Required().StringVar(&cfg.Output)
	cl.Flag("workers", "Files scored in parallel (0: one per CPU).").Default("0").IntVar(&cfg.Workers)
	cl.Flag("detect.direction", "Deviations that count: both, up or down.").Default(def.Direction.String()).EnumVar(&direction, "both", "up", "down")
	cl.Flag("detect.min-deviation-abs", "Deviations from yhat smaller than this never score above 1.").Default("0").Float64Var(&cfg.Detect.MinDeviationAbs)
	cl.Flag("detect.min-deviation-rel", "Deviations smaller than this fraction of |yhat| never score above 1.").Default("0").Float64Var(&cfg.Detect.MinDeviationRel)
	cl.Flag("detect.valid-min", "Values below this score as anomalous and are not learnt.").Default(fmt.Sprint(math.Inf(-1))).Float64Var(&cfg.Detect.ValidMin)
	cl.Flag("detect.valid-max", "Values above this score as anomalous and are not learnt.").Default(fmt.Sprint(math.Inf(1))).Float64Var(&cfg.Detect.ValidMax)
	cl.Flag("detect.warmup-samples", "Samples learnt before scoring starts.").Default(fmt.Sprint(def.WarmupSamples)).IntVar(&cfg.Detect.WarmupSamples)
	cl.Flag("detect.false-alarm-rate", "Per-sample budget of scores above 1 on normal data.").Default(fmt.Sprint(def.FalseAlarmRate)).Float64Var(&cfg.Detect.FalseAlarmRate)
	cl.Flag("detect.refractory-samples", "Samples after an alert during which weaker scores are damped.").Default(fmt.Sprint(def.RefractorySamples)).IntVar(&cfg.Detect.RefractorySamples)
	cl.Flag("detect.flatline", "Score a run of samples equal to the one before, rare for the series (a stuck value), above 1: a selection's flatline: true.").BoolVar(&flatline)
	cl.Flag("detect.members", "Bit set of detector members, for ablation (0: the default set).").Hidden().Default("0").IntVar(&cfg.Detect.Members)
	return command{clause: cl, run: func(ctx context.Context) error {
		logger := lc.logger()
		cfg.Input, cfg.Output = stdio(cfg.Input), stdio(cfg.Output)
		if err := checkStdin(cfg.Input); err != nil {
			return err
		}
		cfg.Logger = logger
		d, err := detect.ParseDirection(direction)
		if err != nil {
			return err
		}
		cfg.Detect.Direction = d
		if flatline {
			// As omen serve adds it to a selection's detector.
			if cfg.Detect.Members == 0 {
				cfg.Detect.Members = detect.MemberDefault
			}
			cfg.Detect.Members |= detect.MemberFlat
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
