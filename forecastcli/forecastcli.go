// Package forecastcli is the per-file logic of `omen forecast`: read one
// CSV series, forecast it as omen serve's pipeline forecasts a series live
// (see internal/livefc) and write the forecast for each horizon after its
// last row.
package forecastcli

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"github.com/omen-sidecar/omen/batch"
	"github.com/omen-sidecar/omen/config"
	"github.com/omen-sidecar/omen/csvio"
	"github.com/omen-sidecar/omen/detect"
	"github.com/omen-sidecar/omen/forecast"
)

// Config is what every file is forecast with.
type Config struct {
	// Horizons are how far after a file's last row to forecast, as
	// forecast_horizons are live: they size the forecaster's steps and
	// history (see livefc.MinStep and livefc.OptionsFor).
	Horizons []time.Duration
	// Every is the sample time between forecasts, as omen serve's
	// --forecast.interval (0: its default, a minute): the model refits at
	// a forecast, so its fit at the last row depends on it.
	Every time.Duration
	// RefitPhase staggers the model's refits as a live series' ref does
	// (see forecast.Model.StaggerRefits; 0 for omen forecast).
	RefitPhase int
	// Detect are the options of the detector that scores the rows, whose
	// scores clip what the forecaster learns (see livefc.Learnable), as a
	// selection's options set them live; the zero value is
	// detect.DefaultOptions().
	Detect detect.Options

	// Steps, if above 0, forecasts instead a curve of Steps steps of the
	// series' own interval after its last row with the forecast package's
	// Model on the raw rows, options Curve (forecast's defaults where 0;
	// MaxHorizon raised to Steps): not the live forecaster, but the model
	// alone, for benchmarks of it (make bench-m4). Horizons and Every are
	// not used.
	Steps int
	Curve forecast.Options
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	if c.Steps != 0 {
		return c.validateCurve()
	}
	if len(c.Horizons) == 0 {
		return errors.New("no horizon: want at least one")
	}
	if len(c.Horizons) > config.MaxForecastHorizons {
		return fmt.Errorf("%d horizons: at most %d", len(c.Horizons), config.MaxForecastHorizons)
	}
	for i, h := range c.Horizons {
		if h <= 0 {
			return fmt.Errorf("horizon %s: want a positive duration", h)
		}
		if slices.Contains(c.Horizons[:i], h) {
			return fmt.Errorf("horizon %s given twice", h)
		}
	}
	return c.detect().Validate()
}

// validateCurve is Validate of a curve of Steps steps.
func (c Config) validateCurve() error {
	if c.Steps < 1 {
		return fmt.Errorf("steps %d: want at least 1", c.Steps)
	}
	// Said in terms of the steps and history a user sets, not of the
	// MaxHorizon and MinSamples they are turned into.
	const maxHorizon = 1 << 16 // forecast.Options' bound on MaxHorizon
	if c.Steps > maxHorizon {
		return fmt.Errorf("steps %d: at most %d", c.Steps, maxHorizon)
	}
	o := c.curveOptions()
	if hist := cmp.Or(o.History, forecast.DefaultOptions().History); o.MinSamples == 0 && 2*o.MaxHorizon+32 > hist {
		// A model is Ready after 2·MaxHorizon+32 samples of its History.
		return fmt.Errorf("steps %d: at most %d with history %d (a model fits on 2·steps+32 samples); raise the history or take fewer steps",
			c.Steps, (hist-32)/2, hist)
	}
	return o.Validate()
}

// curveOptions are the model options of a curve: Curve, its MaxHorizon
// raised to Steps.
func (c Config) curveOptions() forecast.Options {
	o := c.Curve
	o.MaxHorizon = max(o.MaxHorizon, c.Steps)
	return o
}

// every is Every, or omen serve's default.
func (c Config) every() time.Duration {
	if c.Every <= 0 {
		return time.Minute
	}
	return c.Every
}

// detect is Detect, or the default detector's options.
func (c Config) detect() detect.Options {
	if c.Detect == (detect.Options{}) {
		return detect.DefaultOptions()
	}
	return c.Detect
}

// longest is the longest of the horizons.
func (c Config) longest() time.Duration { return slices.Max(c.Horizons) }

// File forecasts the series in inPath as omen serve would forecast it
// live with cfg's horizons at its last row, and writes
// timestamp,yhat,yhat_lower,yhat_upper for each horizon after that row to
// outPath, creating its directory; outPath is written whole or not at all
// (see batch.WriteFile). Rows are scored as omen serve scores them, with
// cfg.Detect (see Config), which the forecaster learns from (see
// livefc.Learnable); rows faster than the forecaster's
// minimum step for the longest horizon are averaged into steps (see
// livefc.Resampler), its history sized by it (livefc.OptionsFor), it
// forecasts every cfg.Every of rows (and refits at a forecast, every 64 of
// its steps), and the bands are widened by the spread within the steps
// and by each horizon's band floor, calibrated on those forecasts checked
// against the rows at their targets (livefc.Check). Only the refit phase,
// which live comes from the series' TSDB reference, is cfg.RefitPhase.
// With cfg.Steps, the forecast is instead the model's curve of that many
// steps (see Config). Timestamps are written in the style of the input's
// first one: in its unit if it was a number read as unix time (seconds,
// milli-, micro- or nanoseconds, see csvio.EpochUnit), RFC 3339 in UTC
// otherwise.
//
// Columns after the second that hold numbers in the first row are warned
// of on logger (nil: none), as series not forecast (see csvio.MoreSeries).
func File(ctx context.Context, logger *slog.Logger, inPath, outPath string, cfg Config) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	f, err := batch.Open(inPath)
	if err != nil {
		return err
	}
	defer f.Close()
	r, err := csvio.NewReader(f, batch.Name(inPath))
	if err != nil {
		return err
	}
	var fc forecaster
	if cfg.Steps != 0 {
		fc, err = newCurve(cfg)
	} else {
		fc, err = newLive(cfg)
	}
	if err != nil {
		return err
	}
	// The models keep their history; the file is streamed through them, a
	// row in memory at a time, whatever its size.
	var firstTs string
	err = r.Each(ctx, func(rec []string, ts int64, v float64) error {
		if firstTs == "" {
			firstTs = rec[0]
			if more := csvio.MoreSeries(r.Header, rec); more != "" && logger != nil {
				logger.Warn("only the second column is forecast: the columns after it are not, numbers or not; write one series per file",
					"file", batch.Name(inPath), "forecast", r.Header[1], "not_forecast", more)
			}
		}
		if r.InOrder() {
			// As `omen backtest` does and the live path must (the TSDB
			// refuses it): the models alone would take a row after an
			// earlier row's empty cell, at or before its time.
			fc.update(ts, v)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := r.CheckOrder(); err != nil {
		return err
	}
	pts, err := fc.forecast()
	if err != nil {
		return fmt.Errorf("%s: %w", batch.Name(inPath), err)
	}
	return writeFile(outPath, pts, csvio.EpochUnit(firstTs))
}

// writeFile writes pts with their timestamps in unit (see
// csvio.EpochUnit), the input's: unix seconds (fractional), milli-, micro-
// or nanoseconds; RFC 3339 in UTC for 0.
func writeFile(path string, pts []forecast.Point, unit time.Duration) error {
	return batch.WriteFile(path, func(w *bufio.Writer) error {
		w.WriteString("timestamp,yhat,yhat_lower,yhat_upper\n")
		for _, p := range pts {
			switch unit {
			case 0:
				w.WriteString(time.UnixMilli(p.TsMillis).UTC().Format(time.RFC3339Nano))
			case time.Second:
				w.WriteString(strconv.FormatFloat(float64(p.TsMillis)/1000, 'f', -1, 64))
			default:
				w.WriteString(strconv.FormatInt(p.TsMillis*int64(time.Millisecond/unit), 10))
			}
			for _, v := range []float64{p.Yhat, p.Lower, p.Upper} {
				w.WriteByte(',')
				w.WriteString(csvio.FormatFloat(v))
			}
			w.WriteByte('\n')
		}
		return nil // the bufio.Writer keeps its first error for WriteFile's Flush
	})
}
