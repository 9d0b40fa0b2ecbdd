package backtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/omen-sidecar/omen/detect"
)

// Config is one backtest run.
type Config struct {
	Input   string // a CSV file or a folder searched recursively for *.csv
	Output  string // folder that mirrors Input's tree
	Workers int    // files scored in parallel; 0 means one per CPU
	// Progress, if not nil, is told after each file. It is called from
	// one goroutine at a time.
	Progress func(done, total int)
	Detect   detect.Options
}

// Summary counts what a run did.
type Summary struct {
	Files, Failed int
}

// Run scores every CSV under cfg.Input into cfg.Output, files in parallel.
// A bad file does not stop the others; the errors of all bad files are
// joined into the returned error.
func Run(ctx context.Context, cfg Config) (Summary, error) {
	if err := cfg.Detect.Validate(); err != nil {
		return Summary{}, err
	}
	files, single, err := list(cfg.Input)
	if err != nil {
		return Summary{}, err
	}
	workers := cfg.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	workers = min(workers, max(1, len(files)))

	jobs := make(chan string)
	var (
		mu   sync.Mutex
		errs []error
		done atomic.Int64
		wg   sync.WaitGroup
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sc := detect.NewScratch() // one per worker: Detectors run one at a time here
			for in := range jobs {
				out := filepath.Join(cfg.Output, filepath.Base(in))
				if !single {
					rel, _ := filepath.Rel(cfg.Input, in)
					out = filepath.Join(cfg.Output, rel)
				}
				err := File(ctx, in, out, cfg.Detect, sc)
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				}
				n := int(done.Add(1))
				if cfg.Progress != nil {
					cfg.Progress(n, len(files))
				}
				mu.Unlock()
			}
		}()
	}
feed:
	for _, f := range files {
		select {
		case jobs <- f:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	s := Summary{Files: int(done.Load()), Failed: len(errs)}
	if err := ctx.Err(); err != nil {
		errs = append(errs, err)
	}
	return s, errors.Join(errs...)
}

// list returns the CSV files under input, sorted, and whether input is a
// single file.
func list(input string) ([]string, bool, error) {
	fi, err := os.Stat(input)
	if err != nil {
		return nil, false, fmt.Errorf("input: %w", err)
	}
	if !fi.IsDir() {
		return []string{input}, true, nil
	}
	var files []string
	err = filepath.WalkDir(input, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.EqualFold(filepath.Ext(p), ".csv") {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("walk input: %w", err)
	}
	if len(files) == 0 {
		return nil, false, fmt.Errorf("input %s: no .csv files", input)
	}
	sort.Strings(files)
	return files, false, nil
}

// ProgressWriter returns a Progress func that redraws one status line on
// w, for a terminal.
func ProgressWriter(w io.Writer) func(done, total int) {
	return func(done, total int) {
		fmt.Fprintf(w, "\rbacktest: %d/%d files", done, total)
		if done == total {
			fmt.Fprintln(w)
		}
	}
}
