package forecastcli

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// Summary counts the files of a Run.
type Summary struct {
	Files, Failed int
}

// Run forecasts input (a CSV file or a folder searched for .csv files) into
// output, mirroring the tree, with workers files in parallel. A file that
// fails is logged with its error and counted; the others go on. progress,
// if not nil, gets a line per finished file.
func Run(ctx context.Context, logger *slog.Logger, input, output string, workers int, progress io.Writer, cfg Config) (Summary, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	var files []string
	st, err := os.Stat(input)
	if err != nil {
		return Summary{}, fmt.Errorf("read input: %w", err)
	}
	root := input
	if !st.IsDir() {
		root = filepath.Dir(input)
		files = []string{input}
	} else {
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
			return Summary{}, fmt.Errorf("walk input: %w", err)
		}
	}
	if len(files) == 0 {
		return Summary{}, fmt.Errorf("%s: no .csv files found", input)
	}
	var (
		mu   sync.Mutex
		done int
		sum  = Summary{Files: len(files)}
		wg   sync.WaitGroup
		jobs = make(chan string)
	)
	for range max(1, workers) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for in := range jobs {
				rel, _ := filepath.Rel(root, in)
				err := File(ctx, in, filepath.Join(output, rel), cfg)
				mu.Lock()
				if err != nil {
					sum.Failed++
					logger.Error("forecast file", "file", in, "err", err)
				}
				done++
				if progress != nil {
					fmt.Fprintf(progress, "\r%d/%d files", done, len(files))
					if done == len(files) {
						fmt.Fprintln(progress)
					}
				}
				mu.Unlock()
			}
		}()
	}
	for _, f := range files {
		if ctx.Err() != nil {
			break
		}
		jobs <- f
	}
	close(jobs)
	wg.Wait()
	return sum, ctx.Err()
}
