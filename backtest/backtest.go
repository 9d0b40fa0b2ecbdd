// Package backtest runs the detector over a CSV series the way the live
// sidecar runs it over remote-written samples, and writes the scores.
package backtest

import (
	"bufio"
	"context"
	"encoding/csv"
	"fmt"

	"github.com/omen-sidecar/omen/batch"
	"github.com/omen-sidecar/omen/csvio"
	"github.com/omen-sidecar/omen/detect"
)

// OutputColumns are appended to the input's columns.
var OutputColumns = []string{"anomaly_score", "yhat", "yhat_lower", "yhat_upper"}

// File scores the series in inPath and writes it, with OutputColumns
// appended, to outPath, creating its directory; outPath is written whole or
// not at all (see batch.WriteFile). sc is borrowed for the
// run; nil means fresh buffers.
func File(ctx context.Context, inPath, outPath string, opts detect.Options, sc *detect.Scratch) error {
	s, err := csvio.ReadFile(inPath)
	if err != nil {
		return err
	}
	d, err := detect.NewWithScratch(opts, sc)
	if err != nil {
		return err
	}
	return batch.WriteFile(outPath, func(bw *bufio.Writer) error {
		if err := write(ctx, csv.NewWriter(bw), s, d); err != nil {
			return fmt.Errorf("%s: %w", outPath, err)
		}
		return nil
	})
}

func write(ctx context.Context, w *csv.Writer, s *csvio.Series, d *detect.Detector) error {
	header := append(append([]string(nil), s.Header...), OutputColumns...)
	if err := w.Write(header); err != nil {
		return err
	}
	width := len(s.Header)
	var rec []string
	var last int64
	for i, row := range s.Rows {
		if i%4096 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		// Pad short rows so that the appended columns line up.
		rec = append(rec[:0], row...)
		for len(rec) < width {
			rec = append(rec, "")
		}
		if i > 0 && s.Times[i] <= last {
			// The live path never scores it: the TSDB refuses a sample at
			// or before the series' latest as out of order or duplicate,
			// and the scorers take time forward only. Score 0, no band.
			rec = append(rec, "0", "", "", "")
		} else {
			last = s.Times[i]
			r := d.Update(s.Times[i], s.Values[i])
			rec = append(rec, csvio.FormatFloat(r.Score), csvio.FormatFloat(r.Yhat),
				csvio.FormatFloat(r.YhatLower), csvio.FormatFloat(r.YhatUpper))
		}
		if err := w.Write(rec); err != nil {
			return err
		}
	}
	w.Flush()
	return w.Error()
}
