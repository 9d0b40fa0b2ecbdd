package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/pprof"

	"github.com/alecthomas/kingpin/v2"

	"github.com/omen-sidecar/omen/loadgen"
)

// registerLoadgen adds `omen loadgen`, the remote-write load generator of
// `make bench-ingest`.
func registerLoadgen(app *kingpin.Application, lc *logConfig) command {
	cl := app.Command("loadgen", "Send remote-write load to a receiver and report the accepted samples/s, latency and errors.")
	o := loadgen.DefaultOptions()
	cl.Flag("url", "Remote-write endpoint.").Default("http://127.0.0.1:9201/api/v1/write").StringVar(&o.URL)
	cl.Flag("protocol", "Remote-write protocol version: 1 (1.0, prometheus.WriteRequest) or 2 (2.0, io.prometheus.write.v2.Request).").
		Default("1").IntVar(&o.Protocol)
	cl.Flag("start-timestamps", "With --protocol=2: counters' samples carry a start timestamp, 1 ms before the run's first sample.").
		Default("false").BoolVar(&o.StartTimestamps)
	cl.Flag("series", "Active series.").Default("100000").IntVar(&o.Series)
	cl.Flag("samples-per-series", "Samples of each series in one request.").Default("1").IntVar(&o.SamplesPerSeries)
	cl.Flag("batch", "Samples per request at most (Prometheus's max_samples_per_send).").Default(fmt.Sprint(o.Batch)).IntVar(&o.Batch)
	cl.Flag("concurrency", "Workers, each owning a slice of the series with one request in flight.").
		Default(fmt.Sprint(o.Concurrency)).IntVar(&o.Concurrency)
	var durationSet bool
	cl.Flag("duration", "Measured time (after the warm-up).").Default(o.Duration.String()).IsSetByUser(&durationSet).DurationVar(&o.Duration)
	cl.Flag("rounds", "Stop after this many rounds over all series (0: run for --duration).").Default("0").IntVar(&o.Rounds)
	cl.Flag("warmup", "Send one unmeasured round first, so the measured rounds append to existing series.").
		Default("true").BoolVar(&o.Warmup)
	cl.Flag("timeout", "Per-request timeout.").Default(o.Timeout.String()).DurationVar(&o.Timeout)
	cl.Flag("ahead", "Requests each worker builds ahead of sending.").Default(fmt.Sprint(o.Ahead)).IntVar(&o.Ahead)
	cl.Flag("seed", "Seed of the sample values.").Default(fmt.Sprint(o.Seed)).Uint64Var(&o.Seed)
	cl.Flag("rate", "Samples/s to send at most, over all workers (0: as fast as the receiver answers).").Default("0").Float64Var(&o.Rate)
	cl.Flag("probe-url", "omen's base URL: during the measured phase, write a probe series every --probe-every and time from each write's acknowledgement to its score on /api/v1/anomalies.").
		StringVar(&o.ProbeURL)
	cl.Flag("drain-url", "omen's base URL: after the measured phase, time until omen has scored everything sent (a marker sample on the last 8 series, polled on /api/v1/anomalies).").
		StringVar(&o.DrainURL)
	cl.Flag("sample-interval", "Space the rounds' timestamps by this instead of taking them from the clock (0: the clock). With --backdate and --rounds, writes history: models reach hours of sample time in a short run.").
		DurationVar(&o.SampleInterval)
	cl.Flag("backdate", "With --sample-interval: the first round's timestamps are this long before now.").
		DurationVar(&o.Backdate)
	cl.Flag("probe-every", "Interval between probe writes.").Default(o.ProbeEvery.String()).DurationVar(&o.ProbeEvery)
	var cpuProfile string
	cl.Flag("cpuprofile", "Write the generator's own CPU profile of the run to this file.").StringVar(&cpuProfile)
	return command{clause: cl, run: func(ctx context.Context) error {
		if cpuProfile != "" {
			f, err := os.Create(cpuProfile)
			if err != nil {
				return fmt.Errorf("create CPU profile: %w", err)
			}
			if err := pprof.StartCPUProfile(f); err != nil {
				_ = f.Close()
				return fmt.Errorf("start CPU profile: %w", err)
			}
			defer func() {
				pprof.StopCPUProfile()
				if err := f.Close(); err != nil {
					fmt.Fprintf(os.Stderr, "omen loadgen: close CPU profile: %v\n", err)
				}
			}()
		}
		if o.Rounds > 0 && !durationSet {
			o.Duration = 0
		}
		res, err := loadgen.Run(ctx, lc.logger(), o)
		if res != nil && res.Measured != nil {
			// People read the summary; scripts read the last line.
			fmt.Fprint(os.Stdout, res.String())
			fmt.Fprintln(os.Stdout, res.JSON())
		}
		if err == nil && ctx.Err() != nil {
			// A script must not take an interrupted run's figures for a
			// whole one.
			return errors.New("interrupted: the figures above cover only the part of the run before the signal")
		}
		return err
	}}
}
