// Package backtest runs the detector over a CSV series the way the live
// sidecar runs it over remote-written samples, and writes the scores.
package backtest

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"

	"github.com/omen-sidecar/omen/batch"
	"github.com/omen-sidecar/omen/csvio"
	"github.com/omen-sidecar/omen/detect"
)

// OutputColumns are appended to the input's columns.
var OutputColumns = []string{"anomaly_score", "yhat", "yhat_lower", "yhat_upper"}

// File scores the series in inPath and writes it, with OutputColumns
// appended, to outPath, creating its directory. The input is streamed, a
// row in memory at a time, and outPath is written whole or not at all (see
// batch.WriteFile): a bad row fails the file with its line, and no
// output. sc is borrowed for the run; nil means fresh buffers.
// Columns after the second that hold numbers in the first row are warned
// of on logger (nil: none), as series left unscored (see csvio.MoreSeries).
func File(ctx context.Context, logger *slog.Logger, inPath, outPath string, opts detect.Options, sc *detect.Scratch) error {
	f, err := batch.Open(inPath)
	if err != nil {
		return err
	}
	defer f.Close()
	r, err := csvio.NewReader(f, batch.Name(inPath))
	if err != nil {
		return err
	}
	d, err := detect.NewWithScratch(opts, sc)
	if err != nil {
		return err
	}
	return batch.WriteFile(outPath, func(bw *bufio.Writer) error {
		return write(ctx, bw, r, d, outPath, func(rec []string) {
			if more := csvio.MoreSeries(r.Header, rec); more != "" && logger != nil {
				logger.Warn("only the second column is scored: the columns after it are passed through, numbers or not; write one series per file",
					"file", batch.Name(inPath), "scored", r.Header[1], "unscored", more)
			}
		})
	})
}

// write scores r's rows into w, as encoding/csv's Writer would write them
// (see csvio.AppendField), a row at a time from one buffer; first is
// called with the first row.
func write(ctx context.Context, w *bufio.Writer, r *csvio.Reader, d *detect.Detector, outPath string, first func(rec []string)) error {
	var buf []byte
	writeRow := func(row []string, width int, tail func(b []byte) []byte) error {
		buf = buf[:0]
		for i, f := range row {
			if i > 0 {
				buf = append(buf, ',')
			}
			buf = csvio.AppendField(buf, f)
		}
		// Pad short rows so that the appended columns line up.
		for i := len(row); i < width; i++ {
			buf = append(buf, ',')
		}
		buf = append(tail(buf), '\n')
		if _, err := w.Write(buf); err != nil {
			return fmt.Errorf("write %s: %w", outPath, err)
		}
		return nil
	}
	err := writeRow(r.Header, 0, func(b []byte) []byte {
		for _, c := range OutputColumns {
			b = csvio.AppendField(append(b, ','), c)
		}
		return b
	})
	if err != nil {
		return err
	}
	width := len(r.Header)
	var res detect.Result
	skipped := func(b []byte) []byte {
		// The live path never scores it: the TSDB refuses a sample at or
		// before the series' latest as out of order or duplicate, and the
		// scorers take time forward only. Score 0, no band.
		return append(b, ",0,,,"...)
	}
	scored := func(b []byte) []byte {
		for _, v := range [...]float64{res.Score, res.Yhat, res.YhatLower, res.YhatUpper} {
			b = csvio.AppendFloat(append(b, ','), v)
		}
		return b
	}
	err = r.Each(ctx, func(row []string, ts int64, v float64) error {
		if first != nil {
			first(row)
			first = nil
		}
		if !r.InOrder() {
			return writeRow(row, width, skipped)
		}
		res = d.Update(ts, v)
		return writeRow(row, width, scored)
	})
	if err != nil {
		return err
	}
	return r.CheckOrder()
}
