// Package forecastcli is the per-file logic of `omen forecast`: read one
// CSV series, feed it to a forecast.Model and write the forecast for the
// steps after its last point.
package forecastcli

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/omen-sidecar/omen/batch"
	"github.com/omen-sidecar/omen/csvio"
	"github.com/omen-sidecar/omen/forecast"
)

// Config is what every file is forecast with.
type Config struct {
	Horizon int              // steps to forecast
	Options forecast.Options // model options; MaxHorizon is raised to Horizon
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	if c.Horizon < 1 {
		return fmt.Errorf("horizon %d: want at least 1", c.Horizon)
	}
	// Said in terms of the horizon and history a user sets, not of the
	// MaxHorizon and MinSamples they are turned into.
	const maxHorizon = 1 << 16 // forecast.Options' bound on MaxHorizon
	if c.Horizon > maxHorizon {
		return fmt.Errorf("horizon %d: at most %d", c.Horizon, maxHorizon)
	}
	o := c.Options
	o.MaxHorizon = max(o.MaxHorizon, c.Horizon)
	if hist := cmp.Or(o.History, forecast.DefaultOptions().History); o.MinSamples == 0 && 2*o.MaxHorizon+32 > hist {
		// A model is Ready after 2·MaxHorizon+32 samples of its History.
		return fmt.Errorf("horizon %d: at most %d with history %d (a model fits on 2·horizon+32 samples); raise the history or shorten the horizon",
			c.Horizon, (hist-32)/2, hist)
	}
	return o.Validate()
}

// File forecasts the series in inPath and writes
// timestamp,yhat,yhat_lower,yhat_upper for the Horizon steps after its last
// point to outPath, creating its directory; outPath is written whole or not
// at all (see batch.WriteFile). Timestamps are written in the
// style of the input's first one: unix seconds if it was a number (not a
// YYYYMMDD date), RFC 3339 in UTC otherwise.
//
// Columns after the second that hold numbers in the first row are warned
// of on logger (nil: none), as series not forecast (see csvio.MoreSeries).
func File(ctx context.Context, logger *slog.Logger, inPath, outPath string, cfg Config) error {
	if err := ctx.Err(); err != nil {
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
	opts := cfg.Options
	opts.MaxHorizon = max(opts.MaxHorizon, cfg.Horizon)
	m, err := forecast.New(opts)
	if err != nil {
		return err
	}
	// The model keeps its History; the file is streamed through it, a row
	// in memory at a time, whatever its size.
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
			// refuses it): the model alone would take a row after an
			// earlier row's empty cell, at or before its time.
			m.Update(ts, v)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := r.CheckOrder(); err != nil {
		return err
	}
	if !m.Ready() {
		return fmt.Errorf("%s: %d usable samples, need at least %d to forecast", batch.Name(inPath), m.Count(), m.Options().MinSamples)
	}
	pts := m.Forecast(nil, cfg.Horizon)
	_, perr := strconv.ParseFloat(strings.TrimSpace(firstTs), 64)
	numeric := perr == nil && !csvio.IsCompactDate(firstTs)
	return writeFile(outPath, pts, numeric)
}

func writeFile(path string, pts []forecast.Point, numeric bool) error {
	return batch.WriteFile(path, func(w *bufio.Writer) error {
		w.WriteString("timestamp,yhat,yhat_lower,yhat_upper\n")
		for _, p := range pts {
			if numeric {
				w.WriteString(strconv.FormatFloat(float64(p.TsMillis)/1000, 'f', -1, 64))
			} else {
				w.WriteString(time.UnixMilli(p.TsMillis).UTC().Format(time.RFC3339Nano))
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
