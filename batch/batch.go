// Package batch runs a per-file job over a CSV file or a folder of them,
// files in parallel, mirroring the input tree into an output folder. It is
// the shared driver of `omen backtest` and `omen forecast`.
package batch

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/schollz/progressbar/v3"

	"github.com/omen-sidecar/omen/internal/atomicfile"
)

// Stdio, as Options.Input, is standard input and, as Options.Output,
// standard output: one series through a pipe. Standard output is written
// as the job goes, not whole or not at all as a file is (see WriteFile).
const Stdio = "-"

// Name is how errors and logs name the input or output path.
func Name(path string) string {
	if path == Stdio {
		return "stdin"
	}
	return path
}

// Open opens the input path, standard input for Stdio; the caller closes it.
func Open(path string) (io.ReadCloser, error) {
	if path == Stdio {
		return io.NopCloser(os.Stdin), nil
	}
	return os.Open(path)
}

// Options describe one run.
type Options struct {
	Input   string // a CSV file, a folder searched recursively for *.csv (see List), or Stdio
	Output  string // folder that mirrors Input's tree; for a file Input, may name the result file (see outputIsFile) or be Stdio
	Workers int    // files processed in parallel; 0 means one per CPU
	// Progress, if not nil, is told after each file, from one goroutine at
	// a time.
	Progress func(done, total int)
}

// Summary counts what a run did.
type Summary struct {
	Files, Failed int
}

// Job processes one file, in to out. Run calls newJob once per worker
// goroutine, so a Job may keep scratch state that is not safe for
// concurrent use.
type Job func(ctx context.Context, in, out string) error

// Run lists the files of o.Input and runs a Job on each. A failing file
// does not stop the others: the returned error joins every file's error
// and ctx's, if it was cancelled. A file's error is prefixed with its path
// unless it starts with it already, as csvio's "path:line: ..." do.
func Run(ctx context.Context, o Options, newJob func() Job) (Summary, error) {
	files, root, err := plan(o.Input, o.Output)
	if err != nil {
		return Summary{}, err
	}
	outPath := func(in string) string {
		rel, _ := filepath.Rel(root, in)
		return filepath.Join(o.Output, rel)
	}
	if o.Output == Stdio || outputIsFile(root != o.Input, o.Output) {
		outPath = func(string) string { return o.Output }
	}
	workers := o.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	workers = min(workers, len(files))

	jobs := make(chan string)
	var (
		mu   sync.Mutex
		errs []error
		sum  Summary
		wg   sync.WaitGroup
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			job := newJob()
			for in := range jobs {
				err := job(ctx, in, outPath(in))
				mu.Lock()
				sum.Files++
				if err != nil {
					sum.Failed++
					if name := Name(in); !strings.HasPrefix(err.Error(), name+":") {
						err = fmt.Errorf("%s: %w", name, err)
					}
					errs = append(errs, err)
				}
				if o.Progress != nil {
					o.Progress(sum.Files, len(files))
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
	if err := ctx.Err(); err != nil && !slices.ContainsFunc(errs, func(e error) bool { return errors.Is(e, err) }) {
		// Said once: by the files it stopped, or here if it stopped
		// none.
		errs = append(errs, err)
	}
	return sum, errors.Join(errs...)
}

// Check returns the error Run would return before starting on any file:
// an input with no .csv files, or an output that would overwrite the inputs
// or lie among them. A caller that reports file errors itself, and so
// drops Run's joined error, calls it first.
func Check(input, output string) error {
	_, _, err := plan(input, output)
	return err
}

// plan lists the files of input and checks that output is apart from them.
func plan(input, output string) (files []string, root string, err error) {
	files, root, err = List(input)
	if err != nil {
		return nil, "", err
	}
	switch {
	case output == Stdio && root == input:
		return nil, "", fmt.Errorf("output %s (standard output) takes one input file, not the folder %s", output, input)
	case output == Stdio:
		return files, root, nil
	case input == Stdio && !outputIsFile(true, output):
		return nil, "", fmt.Errorf("output %s: for standard input, want a file name ending in .csv or - (standard output)", output)
	case input == Stdio:
		return files, root, nil
	}
	if err := outputApart(root, output, root == input); err != nil {
		return nil, "", err
	}
	if outputIsFile(root != input, output) {
		if a, b := absPath(input), absPath(output); a != "" && a == b {
			return nil, "", fmt.Errorf("output %s is the input: the result would overwrite it", output)
		}
	}
	return files, root, nil
}

// outputIsFile reports whether output names the result file itself rather
// than a folder: for a single input file, a name ending in .csv that is not
// an existing folder. Made a folder, f.csv/a.csv surprised whoever asked
// for f.csv, and a later run over the parent would search it for inputs.
func outputIsFile(inputIsFile bool, output string) bool {
	if !inputIsFile || !strings.EqualFold(filepath.Ext(output), ".csv") {
		return false
	}
	fi, err := os.Stat(output)
	return err != nil || !fi.IsDir()
}

// absPath is filepath.Abs(p), or "" if it fails.
func absPath(p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		return ""
	}
	return a
}

// outputApart refuses an output folder that would overwrite the inputs
// (the input's own folder) or, for a folder of inputs, lie inside it, where
// the next run would take the results for inputs. folder says whether the
// input was a folder (root itself) or a file in root.
func outputApart(root, output string, folder bool) error {
	absRoot, err1 := filepath.Abs(root)
	absOut, err2 := filepath.Abs(output)
	if err1 != nil || err2 != nil {
		return nil // the writes report what is wrong with the paths
	}
	if absOut == absRoot {
		return fmt.Errorf("output %s is the inputs' folder: the results would overwrite them", output)
	}
	if rel, err := filepath.Rel(absRoot, absOut); folder && err == nil && !strings.HasPrefix(rel, "..") {
		return fmt.Errorf("output %s is inside the input folder %s: a later run would read the results as inputs", output, root)
	}
	return nil
}

// List returns Stdio for Stdio, else the .csv files under input, sorted, skipping files and
// folders whose names start with a dot, and the root their
// output paths are relative to: input itself for a folder, its parent for
// a single file.
func List(input string) (files []string, root string, err error) {
	if input == Stdio {
		return []string{Stdio}, "", nil
	}
	fi, err := os.Stat(input)
	if err != nil {
		return nil, "", fmt.Errorf("input: %w", err)
	}
	if !fi.IsDir() {
		return []string{input}, filepath.Dir(input), nil
	}
	// Walked through os.DirFS, which opens input as a folder even when it
	// is a symbolic link to one (data -> /mnt/exports): filepath.WalkDir
	// takes such a root for a file and lists nothing under it.
	err = fs.WalkDir(os.DirFS(input), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != "." && strings.HasPrefix(d.Name(), ".") {
			// Hidden: macOS's ._name.csv AppleDouble files, Jupyter's
			// .ipynb_checkpoints copies, .git, and the .name.tmp-* of a
			// WriteFile that was killed are not series to process.
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.Type()&(fs.ModeNamedPipe|fs.ModeSocket|fs.ModeDevice|fs.ModeIrregular) != 0 {
			return nil // opening a pipe with no writer blocks for ever
		}
		if !d.IsDir() && strings.EqualFold(path.Ext(p), ".csv") {
			files = append(files, filepath.Join(input, filepath.FromSlash(p)))
		}
		return nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("walk input %s: %w", input, err)
	}
	if len(files) == 0 {
		return nil, "", fmt.Errorf("input %s: no .csv files", input)
	}
	sort.Strings(files)
	return files, input, nil
}

// Bar returns a Progress func drawing a progress bar with an ETA on w, for
// a terminal. The bar is created at the first call, once the total is known.
func Bar(w io.Writer, what string) func(done, total int) {
	var bar *progressbar.ProgressBar
	return func(done, total int) {
		if bar == nil {
			bar = progressbar.NewOptions(total,
				progressbar.OptionSetWriter(w),
				progressbar.OptionSetDescription(what),
				progressbar.OptionShowCount(),
				progressbar.OptionSetItsString("files"),
				progressbar.OptionShowIts(),
				progressbar.OptionSetPredictTime(true),
				progressbar.OptionOnCompletion(func() { fmt.Fprintln(w) }),
			)
		}
		_ = bar.Set(done)
	}
}

// WriteFile writes path whole or not at all (atomicfile.Write): write
// fills a temporary file beside it, which is flushed, fsynced, closed and
// renamed to path, and the directory is fsynced after the rename: so
// neither a run stopped part way (an error in the input, Ctrl-C,
// a full disk) nor a crash of the machine just after it leaves a truncated
// or empty result that reads as a complete one (ext4 and XFS may commit a
// rename before the data). On an error before the rename the temporary
// file is removed and an earlier path is left as it was; one of the
// directory's fsync is reported with path written. The temporary name does
// not end in .csv, so a later run over the output never takes a leftover
// for an input. path's directory is created.
//
// Stdio is standard output, written as write goes: what a failing job
// wrote of it stays written, and the job's error says it failed.
func WriteFile(path string, write func(w *bufio.Writer) error) error {
	if path == Stdio {
		w := bufio.NewWriterSize(os.Stdout, 1<<16)
		if err := write(w); err != nil {
			_ = w.Flush() // what was written before the error, for the reader to see where it stopped
			return err
		}
		if err := w.Flush(); err != nil {
			return fmt.Errorf("write standard output: %w", err)
		}
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("create output directory: %w", err)
	}
	// A random temporary name (tmp ""): jobs write one directory at once.
	// The mode os.Create would give (0644 less the umask), not
	// os.CreateTemp's 0600, which made results other users could not read.
	return atomicfile.Write(path, "", 0o644, func(f *os.File) error {
		w := bufio.NewWriterSize(f, 1<<16)
		if err := write(w); err != nil {
			return err
		}
		if err := w.Flush(); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
		return nil
	})
}
