package batch

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
)

func write(t *testing.T, path, s string) {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	require.NoError(t, os.WriteFile(path, []byte(s), 0o644))
}

// copyJob copies in to out, failing on files that contain "bad".
func copyJob(jobs *atomic.Int64) func() Job {
	return func() Job {
		jobs.Add(1)
		return func(_ context.Context, in, out string) error {
			b, err := os.ReadFile(in)
			if err != nil {
				return err
			}
			if bytes.Contains(b, []byte("bad")) {
				return errors.New("bad content")
			}
			if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
				return err
			}
			return os.WriteFile(out, b, 0o644)
		}
	}
}

func TestRun(t *testing.T) {
	in := t.TempDir()
	write(t, filepath.Join(in, "a.csv"), "a")
	write(t, filepath.Join(in, "sub", "b.CSV"), "b")
	write(t, filepath.Join(in, "sub", "c.csv"), "bad")
	write(t, filepath.Join(in, "notes.txt"), "ignored")

	for _, tc := range []struct {
		name    string
		input   string
		workers int
		want    []string // files expected under the output
		files   int
		failed  int
	}{
		{"folder", in, 2, []string{"a.csv", "sub/b.CSV"}, 3, 1},
		{"folder one worker", in, 1, []string{"a.csv", "sub/b.CSV"}, 3, 1},
		{"single file", filepath.Join(in, "sub", "b.CSV"), 0, []string{"b.CSV"}, 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := t.TempDir()
			var jobs atomic.Int64
			var calls []int
			s, err := Run(context.Background(), Options{Input: tc.input, Output: out, Workers: tc.workers,
				Progress: func(done, total int) { calls = append(calls, done); require.Equal(t, tc.files, total) }},
				copyJob(&jobs))
			require.Equal(t, Summary{Files: tc.files, Failed: tc.failed}, s)
			if tc.failed > 0 {
				require.ErrorContains(t, err, "c.csv: bad content")
			} else {
				require.NoError(t, err)
			}
			for _, w := range tc.want {
				require.FileExists(t, filepath.Join(out, w))
			}
			require.Len(t, calls, tc.files)
			require.Equal(t, tc.files, calls[len(calls)-1])
			require.LessOrEqual(t, int(jobs.Load()), max(tc.workers, 2))
		})
	}
}

func TestRunErrors(t *testing.T) {
	_, err := Run(context.Background(), Options{Input: filepath.Join(t.TempDir(), "missing")}, nil)
	require.ErrorContains(t, err, "input:")
	_, err = Run(context.Background(), Options{Input: t.TempDir()}, nil)
	require.ErrorContains(t, err, "no .csv files")

	in := t.TempDir()
	write(t, filepath.Join(in, "a.csv"), "a")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var jobs atomic.Int64
	_, err = Run(ctx, Options{Input: in, Output: t.TempDir()}, copyJob(&jobs))
	require.ErrorIs(t, err, context.Canceled)
}

func TestBar(t *testing.T) {
	var buf bytes.Buffer
	p := Bar(&buf, "backtest")
	for i := 1; i <= 3; i++ {
		p(i, 3)
	}
	require.True(t, strings.Contains(buf.String(), "3/3"), buf.String())
	require.Contains(t, buf.String(), "backtest")
}

// TestRunOutputApart: an output that would overwrite the inputs, or that a
// later run would read as inputs, is refused before anything is written; a
// file's results may go beside it in a subfolder.
func TestRunOutputApart(t *testing.T) {
	in := t.TempDir()
	write(t, filepath.Join(in, "a.csv"), "a")
	var jobs atomic.Int64
	for _, tc := range []struct {
		name, input, output, err string
	}{
		{"folder onto itself", in, in, "would overwrite"},
		{"file into its folder", filepath.Join(in, "a.csv"), in, "would overwrite"},
		{"inside the input folder", in, filepath.Join(in, "out"), "inside the input folder"},
		{"file's results in a subfolder", filepath.Join(in, "a.csv"), filepath.Join(in, "out"), ""},
		{"elsewhere", in, t.TempDir(), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Run(context.Background(), Options{Input: tc.input, Output: tc.output}, copyJob(&jobs))
			if tc.err == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.err)
		})
	}
	b, err := os.ReadFile(filepath.Join(in, "a.csv"))
	require.NoError(t, err)
	require.Equal(t, "a", string(b), "the input is untouched")
}

// TestWriteFile: the file appears whole, readable by others as os.Create
// makes it, or not at all; a failed write leaves the earlier file and no
// temporary one.
func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "r.csv")
	for _, tc := range []struct {
		name, body string
		err        error
		want       string
	}{
		{"first write", "one\n", nil, "one\n"},
		{"fails half way", "two", errors.New("input line 9: bad"), "one\n"},
		{"rewrite", "three\n", nil, "three\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := WriteFile(path, func(w *bufio.Writer) error {
				w.WriteString(tc.body)
				return tc.err
			})
			require.Equal(t, tc.err, err)
			b, rerr := os.ReadFile(path)
			require.NoError(t, rerr)
			require.Equal(t, tc.want, string(b))
			fi, serr := os.Stat(path)
			require.NoError(t, serr)
			require.Equal(t, os.FileMode(0o644), fi.Mode().Perm())
			entries, rerr := os.ReadDir(filepath.Dir(path))
			require.NoError(t, rerr)
			require.Len(t, entries, 1, "no temporary file left")
		})
	}
}

// TestRunNamesFileOnce: Run prefixes a file's error with its path unless
// the error already starts with it, as csvio's "file:line: problem" do;
// the doubled "a.csv: a.csv:3: ..." reads as two files.
func TestRunNamesFileOnce(t *testing.T) {
	in := t.TempDir()
	a, b := filepath.Join(in, "a.csv"), filepath.Join(in, "b.csv")
	write(t, a, "a")
	write(t, b, "b")
	_, err := Run(context.Background(), Options{Input: in, Output: t.TempDir(), Workers: 1}, func() Job {
		return func(_ context.Context, f, _ string) error {
			if f == a {
				return fmt.Errorf("%s:3: value %q is not a number", f, "x")
			}
			return errors.New("create output: disk full")
		}
	})
	require.EqualError(t, err, a+`:3: value "x" is not a number`+"\n"+b+": create output: disk full")
}

// TestListSkipsHidden: files and folders whose names start with a dot are
// not inputs. A folder copied from macOS holds ._name.csv AppleDouble files
// (binary, so each failed the run), Jupyter keeps a copy of every CSV it
// opened in .ipynb_checkpoints (forecast twice over), and a run killed
// mid-write leaves .name.csv.tmp-* beside its outputs. An input named
// explicitly is read whatever its name.
func TestListSkipsHidden(t *testing.T) {
	root := filepath.Join(t.TempDir(), ".data")
	for _, f := range []string{"a.csv", "._a.csv", ".hidden.csv", ".ipynb_checkpoints/a-checkpoint.csv", "sub/.git/b.csv", "sub/c.csv"} {
		write(t, filepath.Join(root, f), "x")
	}
	for _, tc := range []struct {
		name, input string
		want        []string
	}{
		{"folder", root, []string{"a.csv", "sub/c.csv"}},
		{"hidden file named", filepath.Join(root, "._a.csv"), []string{"._a.csv"}},
		{"hidden folder named", filepath.Join(root, "sub", ".git"), []string{"b.csv"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files, base, err := List(tc.input)
			require.NoError(t, err)
			var rel []string
			for _, f := range files {
				r, err := filepath.Rel(base, f)
				require.NoError(t, err)
				rel = append(rel, filepath.ToSlash(r))
			}
			require.Equal(t, tc.want, rel)
		})
	}
}

// TestListSymlinkedFolder: an input that is a symbolic link to a folder
// (data -> /mnt/exports) is searched like the folder, and its files keep
// paths under the link, which the output mirrors.
func TestListSymlinkedFolder(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "real", "sub", "a.csv"), "x")
	link := filepath.Join(dir, "data")
	require.NoError(t, os.Symlink(filepath.Join(dir, "real"), link))
	files, root, err := List(link)
	require.NoError(t, err)
	require.Equal(t, link, root)
	require.Equal(t, []string{filepath.Join(link, "sub", "a.csv")}, files)
}

// TestRunCancelledOnce: a file stopped by the cancellation reports it, and
// Run does not add ctx's error a second time ("a.csv: context canceled"
// then "context canceled" on the next line); cancelled before any file
// started, Run still reports it.
func TestRunCancelledOnce(t *testing.T) {
	in := t.TempDir()
	write(t, filepath.Join(in, "a.csv"), "a")
	ctx, cancel := context.WithCancel(context.Background())
	_, err := Run(ctx, Options{Input: in, Output: t.TempDir(), Workers: 1}, func() Job {
		return func(ctx context.Context, _, _ string) error {
			cancel() // Ctrl-C while the file is processed
			return ctx.Err()
		}
	})
	require.ErrorIs(t, err, context.Canceled)
	require.Equal(t, 1, strings.Count(err.Error(), context.Canceled.Error()), err.Error())
}

// TestRunOutputFile: for a single input file, an output named *.csv is the
// result file itself (omen forecast --input a.csv --output f.csv), not a
// folder f.csv/ holding a.csv, which a later run over the parent would
// search and take a.csv in for an input. An existing folder so named is
// still a folder, and the input itself is refused.
func TestRunOutputFile(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in", "a.csv")
	write(t, in, "a")
	folder := filepath.Join(dir, "old.csv")
	require.NoError(t, os.MkdirAll(folder, 0o755))
	for _, tc := range []struct {
		name, output, want, err string
	}{
		{"file name", filepath.Join(dir, "out", "f.csv"), filepath.Join(dir, "out", "f.csv"), ""},
		{"upper case", filepath.Join(dir, "F.CSV"), filepath.Join(dir, "F.CSV"), ""},
		{"folder", filepath.Join(dir, "res"), filepath.Join(dir, "res", "a.csv"), ""},
		{"existing folder named .csv", folder, filepath.Join(folder, "a.csv"), ""},
		{"the input", in, "", "would overwrite"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var jobs atomic.Int64
			_, err := Run(context.Background(), Options{Input: in, Output: tc.output}, copyJob(&jobs))
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			fi, err := os.Stat(tc.want)
			require.NoError(t, err)
			require.True(t, fi.Mode().IsRegular(), "%s is the result file", tc.want)
		})
	}
	b, err := os.ReadFile(in)
	require.NoError(t, err)
	require.Equal(t, "a", string(b), "the input is untouched")
}
